//! What a store failure is: a typed cause that keeps the driver's error
//! (and so the SQLSTATE) as its source. Semantic refusals are not errors (see
//! the module docs of [`super`]).
//!
//! Messages are lowercase fragments that read after "failed to lease: ".
//! No variant carries the store URL: a password must never reach a log.

use tokio_postgres::error::SqlState;

/// The driver-level cause of a [`StoreError`].
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// Shown with the server's message and SQLSTATE (the driver alone says
    /// only "db error"); never the `detail`, which may quote stored values.
    #[error("{}", postgres_text(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// The connection pool gave up (timeout, closed) without a database error.
    #[error("{0}")]
    Pool(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A condition the pool itself detected (a schema newer than it knows…).
    #[error("{0}")]
    Detected(String),
}

fn postgres_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

impl DriverError {
    /// Our own description of what went wrong, with no driver error behind it.
    pub fn message(text: impl Into<String>) -> DriverError {
        DriverError::Detected(text.into())
    }

    fn postgres(&self) -> Option<&tokio_postgres::Error> {
        match self {
            DriverError::Postgres(e) => Some(e),
            _ => None,
        }
    }
}

/// Data read back from the store that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum CorruptData {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A stored word (a status, an outcome) this pool does not know.
    #[error("{0}")]
    Value(String),
}

/// The store failed (I/O, corruption, a closed worker); never a semantic refusal.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached, refused us, or dropped the connection.
    #[error("cannot reach the database: {0}")]
    Connect(#[source] DriverError),
    /// The schema could not be brought to this pool's version.
    #[error("cannot migrate the database schema: {0}")]
    Migrate(#[source] DriverError),
    /// A statement failed.
    #[error("store query failed: {0}")]
    Query(#[source] DriverError),
    /// A constraint the caller violated (a duplicate key…), after any retries.
    #[error("store constraint violated: {0}")]
    Conflict(#[source] DriverError),
    /// No space left: `SQLITE_FULL`, PostgreSQL `53100 disk_full`.
    #[error("the database is full: {0}")]
    Full(#[source] DriverError),
    /// Stored data does not parse (a bug or a hand-edited database).
    #[error("stored data is malformed: {0}")]
    Corrupt(#[source] CorruptData),
    /// The store URL or one of its settings is malformed (bad configuration,
    /// not an unavailable database). Never holds the URL itself.
    #[error("invalid store setting: {0}")]
    Config(String),
    /// The store was shut down (its worker threads or pool are gone).
    #[error("store is shut down")]
    Closed,
}

impl StoreError {
    /// An error the pool itself detected in a query's answer.
    pub fn bug(text: impl Into<String>) -> StoreError {
        StoreError::Query(DriverError::message(text))
    }

    /// A stored word that does not parse.
    pub fn corrupt(text: impl Into<String>) -> StoreError {
        StoreError::Corrupt(CorruptData::Value(text.into()))
    }

    /// Whether the database is unavailable (down, unreachable, out of
    /// connections, shut down) rather than misconfigured or broken: worth an
    /// exit code of its own and a retry later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Connect(_) | StoreError::Closed)
    }

    /// The PostgreSQL SQLSTATE behind this error, if any (e.g. `"53100"`).
    pub fn sqlstate(&self) -> Option<&str> {
        self.postgres().and_then(|e| e.code()).map(SqlState::code)
    }

    /// The PostgreSQL driver error behind this error, if any.
    pub(crate) fn postgres(&self) -> Option<&tokio_postgres::Error> {
        match self {
            StoreError::Connect(d)
            | StoreError::Migrate(d)
            | StoreError::Query(d)
            | StoreError::Conflict(d)
            | StoreError::Full(d) => d.postgres(),
            StoreError::Corrupt(_) | StoreError::Config(_) | StoreError::Closed => None,
        }
    }

    /// The same cause, reported as a migration failure (a connection that
    /// failed stays a [`StoreError::Connect`]).
    pub(crate) fn in_migration(self) -> StoreError {
        match self {
            StoreError::Query(d) | StoreError::Conflict(d) => StoreError::Migrate(d),
            other => other,
        }
    }
}

/// Whether a PostgreSQL error means the connection is gone (or never was).
pub(crate) fn connection_lost(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(c) => {
            c.code().starts_with("08")
                || c.code().starts_with("28")
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::TOO_MANY_CONNECTIONS
                || *c == SqlState::INVALID_CATALOG_NAME
        }
        // No SQLSTATE: an I/O error of the socket.
        None => true,
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        if connection_lost(&e) {
            return StoreError::Connect(e.into());
        }
        match e.code() {
            Some(c) if *c == SqlState::DISK_FULL => StoreError::Full(e.into()),
            Some(c) if c.code().starts_with("23") => StoreError::Conflict(e.into()),
            _ => StoreError::Query(e.into()),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::Full(e.into()),
            Some(ErrorCode::ConstraintViolation) => StoreError::Conflict(e.into()),
            Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
                StoreError::Connect(e.into())
            }
            // The file opened but holds no database (or a damaged one): the
            // store is reached and broken, not down.
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                StoreError::Query(e.into())
            }
            _ => StoreError::Query(e.into()),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(CorruptData::Json(e))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_causes_are_classified_and_kept() {
        let conn = rusqlite::Connection::open_in_memory().expect("memory db");
        conn.execute_batch("CREATE TABLE t (x INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);")
            .expect("schema");
        let dup = conn
            .execute("INSERT INTO t VALUES (1)", [])
            .map_err(StoreError::from)
            .expect_err("duplicate");
        assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");
        assert!(std::error::Error::source(&dup).is_some());
        assert!(!dup.is_unavailable());
        let bad = conn
            .execute("SELECT nope FROM t", [])
            .map_err(StoreError::from)
            .expect_err("bad query");
        assert!(matches!(bad, StoreError::Query(_)), "{bad:?}");
        assert!(bad.to_string().starts_with("store query failed: "));
    }
}
