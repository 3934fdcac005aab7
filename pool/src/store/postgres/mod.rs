//! The PostgreSQL backend (`store = "postgres://USER@HOST:PORT/DB?pool_size=N"`):
//! several pool replicas, one truth.
//!
//! - Every semantic operation is one transaction (READ COMMITTED) on a pooled
//!   connection (`deadpool-postgres`, size `pool_size`, default 16), running
//!   the shared operation ([`crate::store::ops`]) over this backend's
//!   primitives ([`tx::PgTx`], statements in [`statements`]). An answer
//!   always describes committed state.
//! - Leasing locks the rows it picks with `FOR UPDATE SKIP LOCKED`: a replica
//!   never waits on datasets another replica is leasing, it takes the next ones.
//! - Entity isolation is the primary key of `entity_holds`: two transactions
//!   that pick datasets sharing an entity cannot both commit; the loser gets a
//!   unique violation, is rolled back whole and retried (and then skips the
//!   held entity).
//! - The cap of [`super::Store::begin_generation`] is checked under a transaction
//!   advisory lock per `(type, state)`, so N replicas never make N× the stock.
//! - The reaper's `expire_due` takes due leases `FOR UPDATE SKIP LOCKED` and
//!   re-checks their status under the lock: a lease is expired exactly once.
//! - Counts per status live in `status_counts`, spread over slots so that
//!   replicas do not queue on one row (see the 0002 migration).
//! - A transaction that fails on a serialization failure, a deadlock, a
//!   unique violation or a dropped connection is rolled back and retried
//!   after a jittered delay (up to [`CONTENTION_ATTEMPTS`] times for a lost
//!   race, [`ATTEMPTS`] for a lost connection); a failed `COMMIT` is never
//!   retried (its outcome is unknown).
//! - Migrations are embedded and applied under a session advisory lock, so
//!   replicas starting together apply them once.
//! - TLS to the database is not supported yet (`NoTls`): keep the database on
//!   loopback or a trusted network.

mod conn;
pub mod statements;

pub use conn::pool as connection_pool;
mod tx;

use std::time::Duration;

use deadpool_postgres::Pool;
use stockroom_protocol::backoff::BackoffPolicy;
use stockroom_protocol::pool_config::StoreUrl;
use tokio_postgres::error::SqlState;

use self::tx::PgTx;
use super::error::connection_lost;
use super::{DriverError, StoreError, StoreResult};
use crate::ids;

/// Attempts of one operation whose connection was lost (first try included).
const ATTEMPTS: usize = 5;
/// Attempts of one operation that lost a race to a concurrent transaction
/// (a unique violation on an entity two leases picked at once, a
/// serialization failure, a deadlock). Each retry sees the winner's commit
/// and skips what it took, but under many concurrent leases a retry may lose
/// the next race too; jittered delays keep the losers from retrying in
/// lockstep, and this budget makes a refused lease (500) unheard of.
const CONTENTION_ATTEMPTS: usize = 16;
/// The delays between attempts: full jitter, 2 ms doubling up to 64 ms.
const RETRY_BACKOFF: BackoffPolicy =
    BackoffPolicy::full_jitter(Duration::from_millis(2), Duration::from_millis(64));
/// The `application_name` prefix of this pool's connections.
const APP_PREFIX: &str = "stockroom-pool:";

/// How often waiters of this replica re-try while any wait: stock released
/// through another replica is seen within this time.
pub const WAKE_INTERVAL: Duration = Duration::from_millis(250);

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    /// This replica's name, on its connections' `application_name` and on
    /// the `generating` rows it owns.
    replica: String,
}

/// How many attempts a transaction that failed with `e` gets in all (it
/// was rolled back for sure); 1 when it must not run again.
fn attempts_for(e: &StoreError) -> usize {
    let Some(e) = e.postgres() else { return 1 };
    if connection_lost(e) {
        return ATTEMPTS;
    }
    match e.code() {
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::UNIQUE_VIOLATION =>
        {
            CONTENTION_ATTEMPTS
        }
        _ => 1,
    }
}

impl PostgresStore {
    /// Connects, runs the migrations (once across replicas) and builds the pool.
    pub async fn open(url: &StoreUrl) -> StoreResult<PostgresStore> {
        let replica = ids::replica_tag();
        let (cfg, size) = conn::config(url, &format!("{APP_PREFIX}{replica}"))?;
        conn::migrate(&cfg).await?;
        Ok(PostgresStore {
            pool: conn::pool(cfg, size)?,
            replica,
        })
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => StoreError::from(e),
            deadpool_postgres::PoolError::Closed => StoreError::Closed,
            other => StoreError::Connect(DriverError::Pool(other.to_string())),
        })
    }
}

/// Runs `$body` (an expression over `$tx: &PgTx`) in one transaction,
/// retrying the whole transaction when it was rolled back for a retriable
/// reason. A failed `COMMIT` has an unknown outcome: never retried.
macro_rules! in_tx {
    ($self:ident, |$tx:ident| $body:expr) => {
        Box::pin(async move {
            let mut attempt = 0usize;
            let mut backoff = RETRY_BACKOFF.start();
            loop {
                attempt += 1;
                let mut committing = false;
                let run: StoreResult<_> = async {
                    let mut client = $self.client().await?;
                    let pg = client.transaction().await?;
                    let value = {
                        let $tx = &PgTx {
                            tx: &pg,
                            replica: &$self.replica,
                        };
                        $body.await?
                    };
                    committing = true;
                    pg.commit().await?;
                    Ok(value)
                }
                .await;
                match run {
                    Ok(v) => break Ok(v),
                    Err(e) if !committing && attempt < attempts_for(&e) => {
                        tracing::debug!(attempt, error = %e, "store transaction rolled back; retrying");
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                    Err(e) => break Err(e),
                }
            }
        })
    };
}

/// Runs a read-only `$body` on a connection outside any transaction: under
/// READ COMMITTED each statement of a transaction sees its own snapshot
/// anyway, so BEGIN and COMMIT would add two round trips and nothing else.
/// Retried like a transaction when the connection was lost.
macro_rules! in_read {
    ($self:ident, |$tx:ident| $body:expr) => {
        Box::pin(async move {
            let mut attempt = 0usize;
            let mut backoff = RETRY_BACKOFF.start();
            loop {
                attempt += 1;
                let run: StoreResult<_> = async {
                    let client = $self.client().await?;
                    let $tx = &PgTx {
                        tx: &client,
                        replica: &$self.replica,
                    };
                    $body.await
                }
                .await;
                match run {
                    Ok(v) => break Ok(v),
                    Err(e) if attempt < attempts_for(&e) => {
                        tracing::debug!(attempt, error = %e, "store read failed; retrying");
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                    Err(e) => break Err(e),
                }
            }
        })
    };
}

super::ops::store_over_ops!(PostgresStore, in_tx, in_read, {
    fn wake_interval(&self) -> Option<Duration> {
        Some(WAKE_INTERVAL)
    }
});

#[cfg(test)]
mod tests {
    use super::conn::split_url;

    #[test]
    fn pool_size_is_taken_from_the_url() {
        let (base, n) = split_url("postgres://u@h/db?pool_size=4&sslmode=disable").expect("url");
        assert_eq!(base, "postgres://u@h/db?sslmode=disable");
        assert_eq!(n, 4);
        let (base, n) = split_url("postgres://u@h/db").expect("url");
        assert_eq!((base.as_str(), n), ("postgres://u@h/db", 16));
        assert!(split_url("postgres://u@h/db?pool_size=0").is_err());
    }
}
