//! SQLite connections: opening, migrations, and the WAL checkpoints that run
//! off the writer's path.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::store::{DriverError, StoreError, StoreResult};

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_initial.sql"),
    include_str!("../migrations/0002_generations.sql"),
    include_str!("../migrations/0003_known_states_sessions.sql"),
    include_str!("../migrations/0004_lease_tokens.sql"),
    include_str!("../migrations/0005_lifecycle.sql"),
];
/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// WAL frames (pages) past which the writer finishes a checkpoint itself, so
/// that its next transaction starts the WAL over (about 16 MiB of WAL).
const WAL_RESTART_FRAMES: i64 = 4096;
/// The WAL file is truncated to this size when it restarts.
pub(super) const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// When the WAL is copied into the database file and restarted.
#[derive(Debug, Clone, Copy)]
pub(super) struct WalPolicy {
    pub checkpoint_every: Duration,
    pub restart_frames: i64,
}

impl Default for WalPolicy {
    fn default() -> Self {
        WalPolicy {
            checkpoint_every: CHECKPOINT_EVERY,
            restart_frames: WAL_RESTART_FRAMES,
        }
    }
}

pub(super) fn open_connection(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Connect(e.into()))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; \
         PRAGMA temp_store = MEMORY; PRAGMA cache_size = -32768;",
    )
    // A file that opens but is not a database is a store failure (exit 65:
    // inspect the file), not a database that is down.
    .map_err(StoreError::from)?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

pub(super) fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let run = |conn: &mut Connection| -> StoreResult<()> {
        let version: usize =
            conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
        if version > MIGRATIONS.len() {
            return Err(StoreError::Migrate(DriverError::message(format!(
                "the database has schema version {version}, newer than this pool knows ({}); upgrade stockroom-pool",
                MIGRATIONS.len()
            ))));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
            tx.commit()?;
        }
        Ok(())
    };
    run(conn).map_err(StoreError::in_migration)
}

/// Runs one statement that returns no rows through the statement cache
/// (transaction control included: parsed once per connection, not per call).
pub(super) fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// `PRAGMA wal_checkpoint(PASSIVE)`: (could not finish, WAL frames, frames copied).
pub(super) fn checkpoint_passive(conn: &Connection) -> rusqlite::Result<(bool, i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get::<_, i64>(0)? != 0, r.get(1)?, r.get(2)?))
    })
}

/// A request for one checkpoint now, answered when it is done (tests drive
/// the checkpointer with these instead of waiting for its timer).
pub(super) type CheckpointAsk = oneshot::Sender<()>;

/// Copies the WAL into the database file every `checkpoint_every` (or when
/// asked), on its own connection, so that the writer does not (its automatic
/// checkpoint is off): a checkpoint `fsync`s the WAL and the database file,
/// which in a commit would stall every operation queued behind it.
///
/// A PASSIVE checkpoint never waits for the writer, but it also never
/// catches up with one that keeps appending, and SQLite only starts the WAL
/// over when a write transaction begins with every frame copied. So once the
/// WAL holds `restart_frames`, this asks the writer (through `restart`)
/// to run one more PASSIVE checkpoint between two batches: it only has the
/// frames written since this one to copy, and its next transaction restarts
/// the WAL. The WAL stays bounded under any load.
pub(super) fn checkpointer_loop(
    conn: Connection,
    policy: WalPolicy,
    restart: Arc<AtomicBool>,
    asks: mpsc::Receiver<CheckpointAsk>,
) {
    loop {
        let ask = match asks.recv_timeout(policy.checkpoint_every) {
            Ok(ask) => Some(ask),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            // The store is gone.
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        match checkpoint_passive(&conn) {
            Ok((_, frames, copied)) => {
                if frames >= policy.restart_frames {
                    restart.store(true, Ordering::Release);
                }
                tracing::trace!(frames, copied, "checkpoint");
            }
            Err(e) => tracing::warn!(error = %e, "background checkpoint failed"),
        }
        if let Some(ask) = ask {
            let _ = ask.send(());
        }
    }
}

/// The writer's half of the WAL restart (see [`checkpointer_loop`]).
pub(super) fn finish_checkpoint(conn: &Connection, restart: &AtomicBool) {
    if !restart.swap(false, Ordering::AcqRel) {
        return;
    }
    match checkpoint_passive(conn) {
        Ok((busy, frames, copied)) if busy || copied < frames => {
            // A reader still uses old frames (or the checkpointer is busy): next batch.
            restart.store(true, Ordering::Release);
        }
        Ok((_, frames, _)) => tracing::debug!(frames, "WAL copied; it restarts"),
        Err(e) => tracing::warn!(error = %e, "checkpoint before a WAL restart failed"),
    }
}
