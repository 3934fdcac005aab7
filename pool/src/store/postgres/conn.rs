//! PostgreSQL connections: the store URL, the connection pool and the
//! migrations (applied once across replicas).

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use stockroom_protocol::pool_config::StoreUrl;
use tokio_postgres::NoTls;

use crate::store::{DriverError, StoreError, StoreResult};

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/0001_initial.sql"),
    include_str!("../migrations/postgres/0002_counts_sessions.sql"),
    include_str!("../migrations/postgres/0003_lease_tokens.sql"),
    include_str!("../migrations/postgres/0004_lifecycle.sql"),
];
/// The session advisory lock held while migrating (any constant shared by all replicas).
const MIGRATION_LOCK: i64 = 0x5354_4f43_4b52_4f4f; // "STOCKROO"
const DEFAULT_POOL_SIZE: usize = 16;

/// `pool_size=N` is ours; every other query parameter goes to libpq-style parsing.
pub(super) fn split_url(url: &str) -> StoreResult<(String, usize)> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b.to_string(), q),
        None => (url.to_string(), ""),
    };
    let mut size = DEFAULT_POOL_SIZE;
    let mut rest = Vec::new();
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        match kv.split_once('=') {
            Some(("pool_size", v)) => {
                size = v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    StoreError::Config(format!("pool_size must be a positive number, not {v:?}"))
                })?;
            }
            _ => rest.push(kv),
        }
    }
    let base = if rest.is_empty() {
        base
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((base, size))
}

/// The driver's configuration of a store URL, and the pool size.
pub(super) fn config(
    url: &StoreUrl,
    application_name: &str,
) -> StoreResult<(tokio_postgres::Config, usize)> {
    let (base, size) = split_url(url.expose_url())?;
    // The driver's message names the bad part, never the password.
    let mut cfg: tokio_postgres::Config = base
        .parse()
        .map_err(|e: tokio_postgres::Error| StoreError::Config(e.to_string()))?;
    if cfg.get_password().is_none()
        && let Some(p) = url.expose_password()
    {
        cfg.password(p);
    }
    cfg.application_name(application_name);
    cfg.connect_timeout(Duration::from_secs(10));
    Ok((cfg, size))
}

/// The connection pool of one replica: `size` connections, statements
/// cached per connection (also what `pool-bench`'s raw-SQL ceiling uses).
pub fn pool(cfg: tokio_postgres::Config, size: usize) -> StoreResult<Pool> {
    let mgr = Manager::from_config(
        cfg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(size)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(10)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Config(e.to_string()))
}

/// Applies the migrations this database lacks, under a session advisory
/// lock so that replicas starting together apply them once.
pub(super) async fn migrate(cfg: &tokio_postgres::Config) -> StoreResult<()> {
    // A dedicated connection: the session lock goes with it, whatever happens.
    let (mut client, conn) = cfg
        .connect(NoTls)
        .await
        .map_err(|e| StoreError::Connect(e.into()))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let result = async {
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS stockroom_schema (version BIGINT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            )
            .await?;
        let version: i64 = client
            .query_one("SELECT COALESCE(max(version), 0) FROM stockroom_schema", &[])
            .await?
            .try_get(0)?;
        let version = version.max(0) as usize;
        if version > MIGRATIONS.len() {
            return Err(StoreError::Migrate(DriverError::message(format!(
                "the database has schema version {version}, newer than this pool knows ({}); upgrade stockroom-pool",
                MIGRATIONS.len()
            ))));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = client.transaction().await?;
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO stockroom_schema (version) VALUES ($1)",
                &[&((i + 1) as i64)],
            )
            .await?;
            tx.commit().await?;
        }
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await?;
        Ok(())
    }
    .await
    .map_err(StoreError::in_migration);
    drop(client);
    let _ = driver.await;
    result
}
