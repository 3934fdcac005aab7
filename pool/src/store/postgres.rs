//! The PostgreSQL backend (`store = "postgres://USER@HOST:PORT/DB?pool_size=N"`):
//! several pool replicas, one truth.
//!
//! - Every semantic operation is one transaction (READ COMMITTED) on a pooled
//!   connection (`deadpool-postgres`, size `pool_size`, default 16). An answer
//!   always describes committed state.
//! - Leasing locks the rows it picks with `FOR UPDATE SKIP LOCKED`: a replica
//!   never waits on datasets another replica is leasing, it takes the next ones.
//! - Entity isolation is the primary key of `entity_holds`: two transactions
//!   that pick datasets sharing an entity cannot both commit; the loser gets a
//!   unique violation, is rolled back whole and retried (and then skips the
//!   held entity).
//! - The cap of [`Store::begin_generation`] is checked under a transaction
//!   advisory lock per `(type, state)`, so N replicas never make N× the stock.
//! - The reaper's `expire_due` takes due leases `FOR UPDATE SKIP LOCKED` and
//!   re-checks their status under the lock: a lease is expired exactly once.
//! - A transaction that fails on a serialization failure, a deadlock, a
//!   unique violation or a dropped connection is rolled back and retried (a
//!   few times); a failed `COMMIT` is never retried (its outcome is unknown).
//! - Migrations are embedded and applied under a session advisory lock, so
//!   replicas starting together apply them once.
//! - TLS to the database is not supported yet (`NoTls`): keep the database on
//!   loopback or a trusted network.

use std::collections::HashSet;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Transaction};
use stockroom_protocol::api::{
    DatasetView, HistoryEntry, Holder, LeaseGranted, LeaseItem, LeaseView, LeasedDataset,
    NewDataset, ReleaseAnswer, ReleasedDataset, StockSettings,
};
use stockroom_protocol::{Attributes, Dataset, DatasetStatus, LeaseStatus, OnFailure, Outcome};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::{
    BoxFuture, DatasetFilter, ExpiredLease, ExtendResult, Extension, Generated, HeartbeatResult,
    InputPick, ItemShortfall, LeaseAttempt, LeaseResult, NewGeneration, ReleaseResult,
    SettleResult, StockTable, Store, StoreError, StoreResult,
};
use crate::ids;
use crate::time::rfc3339;

const MIGRATIONS: &[&str] = &[include_str!("migrations/postgres/0001_initial.sql")];
/// The session advisory lock held while migrating (any constant shared by all replicas).
const MIGRATION_LOCK: i64 = 0x5354_4f43_4b52_4f4f; // "STOCKROO"
const DEFAULT_POOL_SIZE: usize = 16;
/// Attempts of one operation (first try included).
const ATTEMPTS: usize = 5;
const APP_PREFIX: &str = "stockroom-pool:";

/// Errors inside one transaction: the database's (classified for retries) or ours.
enum PgError {
    Db(tokio_postgres::Error),
    Store(StoreError),
}

type PgResult<T> = Result<T, PgError>;

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        PgError::Db(e)
    }
}
impl From<serde_json::Error> for PgError {
    fn from(e: serde_json::Error) -> Self {
        PgError::Store(e.into())
    }
}
impl From<StoreError> for PgError {
    fn from(e: StoreError) -> Self {
        PgError::Store(e)
    }
}

fn connection_lost(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(c) => {
            c.code().starts_with("08")
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
        }
        // No SQLSTATE: an I/O error of the socket.
        None => true,
    }
}

impl PgError {
    /// Whether the whole transaction may run again: it was rolled back for sure.
    fn retriable(&self) -> bool {
        match self {
            PgError::Db(e) => {
                connection_lost(e)
                    || matches!(
                        e.code(),
                        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
                            || *c == SqlState::T_R_DEADLOCK_DETECTED
                            || *c == SqlState::UNIQUE_VIOLATION
                    )
            }
            PgError::Store(_) => false,
        }
    }

    fn into_store(self) -> StoreError {
        match self {
            PgError::Db(e) => StoreError::Query(db_message(&e)),
            PgError::Store(e) => e,
        }
    }
}

fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: Pool,
    /// This replica's name, on its connections' `application_name` and on
    /// the `generating` rows it owns.
    replica: String,
}

/// `pool_size=N` is ours; every other query parameter goes to libpq-style parsing.
fn split_url(url: &str) -> StoreResult<(String, usize)> {
    let open_err = |message: String| StoreError::Open {
        url: url.to_string(),
        message,
    };
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
                    open_err(format!("pool_size must be a positive number, not {v:?}"))
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

impl PostgresStore {
    /// Connects, runs the migrations (once across replicas) and builds the pool.
    pub async fn open(url: &str) -> StoreResult<PostgresStore> {
        let open_err = |message: String| StoreError::Open {
            url: url.to_string(),
            message,
        };
        let (base, size) = split_url(url)?;
        let mut cfg: tokio_postgres::Config = base
            .parse()
            .map_err(|e: tokio_postgres::Error| open_err(e.to_string()))?;
        let replica = ids::replica_tag();
        cfg.application_name(format!("{APP_PREFIX}{replica}"));
        cfg.connect_timeout(Duration::from_secs(10));
        migrate(&cfg)
            .await
            .map_err(|e| open_err(e.into_store().to_string()))?;
        let mgr = Manager::from_config(
            cfg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(size)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| open_err(e.to_string()))?;
        Ok(PostgresStore { pool, replica })
    }

    async fn client(&self) -> PgResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => PgError::Db(e),
            other => PgError::Store(StoreError::Query(format!(
                "no database connection: {other}"
            ))),
        })
    }
}

async fn migrate(cfg: &tokio_postgres::Config) -> PgResult<()> {
    // A dedicated connection: the session lock goes with it, whatever happens.
    let (mut client, conn) = cfg.connect(NoTls).await?;
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
            return Err(PgError::Store(StoreError::Query(format!(
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
    .await;
    drop(client);
    let _ = driver.await;
    result
}

/// Runs `$body` (an expression using `$tx: &Transaction`) in one transaction,
/// retrying the whole transaction when it was rolled back for a retriable reason.
macro_rules! in_tx {
    ($self:ident, |$tx:ident| $body:expr) => {{
        let mut attempt = 0usize;
        loop {
            attempt += 1;
            let run: PgResult<_> = async {
                let mut client = $self.client().await?;
                let $tx = client.transaction().await?;
                let value = { $body }.await?;
                // A failed COMMIT has an unknown outcome: never retried.
                $tx.commit().await.map_err(|e| {
                    PgError::Store(StoreError::Query(format!(
                        "commit failed: {}",
                        db_message(&e)
                    )))
                })?;
                Ok(value)
            }
            .await;
            match run {
                Ok(v) => break Ok(v),
                Err(e) if attempt < ATTEMPTS && e.retriable() => {
                    tokio::time::sleep(Duration::from_millis(5 * attempt as u64)).await;
                }
                Err(e) => break Err(e.into_store()),
            }
        }
    }};
}

// ---------------------------------------------------------------- statements

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Statements through the connection's statement cache (deadpool keeps one
/// per connection): each is parsed and planned once per connection, then
/// costs one round trip. A `&str` handed to tokio-postgres is prepared anew
/// on every call: one more round trip per statement.
trait CachedStatements {
    async fn query_cached(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, tokio_postgres::Error>;
    async fn query_one_cached(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Row, tokio_postgres::Error>;
    async fn query_opt_cached(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, tokio_postgres::Error>;
    async fn execute_cached(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<u64, tokio_postgres::Error>;
}

impl CachedStatements for Transaction<'_> {
    async fn query_cached(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let st = self.prepare_cached(sql).await?;
        self.query(&st, params).await
    }
    async fn query_one_cached(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Row, tokio_postgres::Error> {
        let st = self.prepare_cached(sql).await?;
        self.query_one(&st, params).await
    }
    async fn query_opt_cached(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let st = self.prepare_cached(sql).await?;
        self.query_opt(&st, params).await
    }
    async fn execute_cached(
        &self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<u64, tokio_postgres::Error> {
        let st = self.prepare_cached(sql).await?;
        self.execute(&st, params).await
    }
}

// ---------------------------------------------------------------- helpers

use super::rows::{DS_COLS, RawDataset, parse_lease_status, parse_status};

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> PgResult<T> {
    Ok(row.try_get(i)?)
}

struct Change<'a> {
    seq: i64,
    id: &'a str,
    from: Option<DatasetStatus>,
    to: DatasetStatus,
    lease_id: Option<&'a str>,
    holder: Option<&'a str>,
    reason: &'a str,
    now_ms: i64,
}

async fn change(tx: &Transaction<'_>, c: Change<'_>) -> PgResult<()> {
    tx.execute_cached(
        "UPDATE datasets SET status = $1, updated_at = $2, \
         lease_id = CASE WHEN $1 = 'ready' THEN NULL ELSE COALESCE($3, lease_id) END WHERE seq = $4",
        &[&c.to.as_str(), &c.now_ms, &c.lease_id, &c.seq],
    )
    .await?;
    tx.execute_cached(
        "INSERT INTO history (dataset_id, at, from_status, to_status, lease_id, holder, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &c.id,
            &c.now_ms,
            &c.from.map(DatasetStatus::as_str),
            &c.to.as_str(),
            &c.lease_id,
            &c.holder,
            &c.reason,
        ],
    )
    .await?;
    Ok(())
}

async fn count_of(
    tx: &Transaction<'_>,
    type_name: &str,
    state: &str,
    status: DatasetStatus,
) -> PgResult<u64> {
    let row = tx
        .query_one_cached(
            "SELECT count(*) FROM datasets WHERE type = $1 AND state = $2 AND status = $3",
            &[&type_name, &state, &status.as_str()],
        )
        .await?;
    Ok(get::<i64>(&row, 0)?.max(0) as u64)
}

async fn know_state(tx: &Transaction<'_>, type_name: &str, state: &str) -> PgResult<()> {
    tx.execute_cached(
        "INSERT INTO known_states (type, state) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&type_name, &state],
    )
    .await?;
    Ok(())
}

fn raw_dataset(row: &Row, at: usize) -> PgResult<RawDataset> {
    Ok(RawDataset {
        id: get(row, at)?,
        type_name: get(row, at + 1)?,
        state: get(row, at + 2)?,
        status: get(row, at + 3)?,
        attributes: get(row, at + 4)?,
        data: get(row, at + 5)?,
        secret_fields: get(row, at + 6)?,
        entities: get(row, at + 7)?,
        lease_id: get(row, at + 8)?,
        error: get(row, at + 9)?,
        created_at: get(row, at + 10)?,
        updated_at: get(row, at + 11)?,
    })
}

async fn history_of(tx: &Transaction<'_>, id: &str) -> PgResult<Vec<HistoryEntry>> {
    let rows = tx
        .query_cached(
            "SELECT at, from_status, to_status, lease_id, holder, reason FROM history WHERE dataset_id = $1 ORDER BY seq",
            &[&id],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let from: Option<String> = get(r, 1)?;
        let to: String = get(r, 2)?;
        out.push(HistoryEntry {
            at: rfc3339(get(r, 0)?),
            from: from.as_deref().map(parse_status).transpose()?,
            to: parse_status(&to)?,
            lease_id: get(r, 3)?,
            holder: get(r, 4)?,
            reason: get(r, 5)?,
        });
    }
    Ok(out)
}

async fn dataset_with_history(tx: &Transaction<'_>, id: &str) -> PgResult<Option<DatasetView>> {
    let row = tx
        .query_opt_cached(
            &format!("SELECT {DS_COLS} FROM datasets d WHERE d.id = $1"),
            &[&id],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut view = raw_dataset(&row, 0)?.view()?;
    view.history = history_of(tx, id).await?;
    Ok(Some(view))
}

struct LeaseRow {
    id: String,
    status: String,
    holder: String,
    holder_label: String,
    ttl_ms: i64,
    created_at: i64,
    expires_at: i64,
    ended_at: Option<i64>,
    outcome: Option<String>,
    reason: Option<String>,
    details_url: Option<String>,
    answer: Option<String>,
}

const LEASE_COLS: &str = "id, status, holder, holder_label, ttl_ms, created_at, expires_at, ended_at, outcome, reason, details_url, answer";

fn lease_row(r: &Row) -> PgResult<LeaseRow> {
    Ok(LeaseRow {
        id: get(r, 0)?,
        status: get(r, 1)?,
        holder: get(r, 2)?,
        holder_label: get(r, 3)?,
        ttl_ms: get(r, 4)?,
        created_at: get(r, 5)?,
        expires_at: get(r, 6)?,
        ended_at: get(r, 7)?,
        outcome: get(r, 8)?,
        reason: get(r, 9)?,
        details_url: get(r, 10)?,
        answer: get(r, 11)?,
    })
}

/// The lease row, locked for the rest of the transaction.
async fn find_lease_for_update(tx: &Transaction<'_>, id: &str) -> PgResult<Option<LeaseRow>> {
    tx.query_opt_cached(
        &format!("SELECT {LEASE_COLS} FROM leases WHERE id = $1 FOR UPDATE"),
        &[&id],
    )
    .await?
    .as_ref()
    .map(lease_row)
    .transpose()
}

async fn find_lease(tx: &Transaction<'_>, id: &str) -> PgResult<Option<LeaseRow>> {
    tx.query_opt_cached(
        &format!("SELECT {LEASE_COLS} FROM leases WHERE id = $1"),
        &[&id],
    )
    .await?
    .as_ref()
    .map(lease_row)
    .transpose()
}

async fn lease_datasets(tx: &Transaction<'_>, lease_id: &str) -> PgResult<Vec<LeasedDataset>> {
    let rows = tx
        .query_cached(
            &format!(
                "SELECT li.name, li.idx, {DS_COLS} FROM lease_items li JOIN datasets d ON d.id = li.dataset_id \
                 WHERE li.lease_id = $1 ORDER BY li.pos"
            ),
            &[&lease_id],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(LeasedDataset {
            name: get(r, 0)?,
            index: get::<i64>(r, 1)? as u32,
            dataset: raw_dataset(r, 2)?.dataset()?,
        });
    }
    Ok(out)
}

async fn granted(tx: &Transaction<'_>, lease: &LeaseRow) -> PgResult<LeaseGranted> {
    Ok(LeaseGranted {
        lease_id: lease.id.clone(),
        expires_at: rfc3339(lease.expires_at),
        heartbeat_interval_seconds: super::sqlite::heartbeat_interval_seconds(lease.ttl_ms),
        datasets: lease_datasets(tx, &lease.id).await?,
    })
}

async fn lease_view(tx: &Transaction<'_>, lease: LeaseRow) -> PgResult<LeaseView> {
    let holder: Holder = serde_json::from_str(&lease.holder)?;
    Ok(LeaseView {
        datasets: lease_datasets(tx, &lease.id).await?,
        lease_id: lease.id,
        status: parse_lease_status(&lease.status)?,
        holder,
        created_at: rfc3339(lease.created_at),
        expires_at: rfc3339(lease.expires_at),
        ended_at: lease.ended_at.map(rfc3339),
        outcome: lease
            .outcome
            .as_deref()
            .map(str::parse::<Outcome>)
            .transpose()
            .map_err(|e| PgError::Store(StoreError::Query(e)))?,
        reason: lease.reason,
        details_url: lease.details_url,
    })
}

/// Moves a (locked) lease to `expired` and quarantines its datasets.
async fn expire_lease(
    tx: &Transaction<'_>,
    lease: &LeaseRow,
    now_ms: i64,
) -> PgResult<Vec<String>> {
    let rows = tx
        .query_cached(
            "SELECT d.seq, d.id FROM lease_items li JOIN datasets d ON d.id = li.dataset_id \
             WHERE li.lease_id = $1 AND d.status = 'leased' AND d.lease_id = $1 ORDER BY li.pos FOR UPDATE OF d",
            &[&lease.id],
        )
        .await?;
    let mut ids = Vec::with_capacity(rows.len());
    for r in &rows {
        let seq: i64 = get(r, 0)?;
        let id: String = get(r, 1)?;
        change(
            tx,
            Change {
                seq,
                id: &id,
                from: Some(DatasetStatus::Leased),
                to: DatasetStatus::Quarantined,
                lease_id: Some(&lease.id),
                holder: Some(&lease.holder_label),
                reason: "lease expired without heartbeat",
                now_ms,
            },
        )
        .await?;
        ids.push(id);
    }
    free_entities(tx, &lease.id, now_ms).await?;
    tx.execute_cached(
        "UPDATE leases SET status = 'expired', ended_at = $2, reason = 'expired without heartbeat' WHERE id = $1",
        &[&lease.id, &now_ms],
    )
    .await?;
    Ok(ids)
}

/// Frees a lease's entities, remembering when (see `entity_released`).
async fn free_entities(tx: &Transaction<'_>, lease_id: &str, now: i64) -> PgResult<()> {
    tx.execute_cached(
        "WITH gone AS (DELETE FROM entity_holds WHERE lease_id = $1 RETURNING entity) \
         INSERT INTO entity_released (entity, at) SELECT entity, $2 FROM gone \
         ON CONFLICT (entity) DO UPDATE SET at = GREATEST(entity_released.at, excluded.at)",
        &[&lease_id, &now],
    )
    .await?;
    Ok(())
}

/// The earliest time a transaction taking `picks` may record: not before the
/// picked datasets last changed nor before their entities were last freed
/// (another replica may have committed those after this request read its clock).
async fn not_before(tx: &Transaction<'_>, picks: &[&Picked], now: i64) -> PgResult<i64> {
    let mut floor = now;
    let mut entities: Vec<String> = Vec::new();
    for p in picks {
        floor = floor.max(p.updated_at);
        entities.extend(p.entities.iter().cloned());
    }
    if !entities.is_empty() {
        let row = tx
            .query_one_cached(
                "SELECT COALESCE(max(at), 0) FROM entity_released WHERE entity = ANY($1)",
                &[&entities],
            )
            .await?;
        floor = floor.max(get::<i64>(&row, 0)?);
    }
    Ok(floor)
}

struct Picked {
    seq: i64,
    id: String,
    entities: Vec<String>,
    updated_at: i64,
}

async fn entity_held(tx: &Transaction<'_>, entity: &str) -> PgResult<bool> {
    Ok(tx
        .query_opt_cached("SELECT 1 FROM entity_holds WHERE entity = $1", &[&entity])
        .await?
        .is_some())
}

/// Picks and locks up to `item.count` ready datasets matching the item, oldest
/// first, skipping rows another transaction holds (`SKIP LOCKED`), those taken
/// by earlier items of this lease and those whose entities are held.
async fn pick(
    tx: &Transaction<'_>,
    item: &LeaseItem,
    taken: &mut HashSet<i64>,
    entities_taken: &mut HashSet<String>,
) -> PgResult<Vec<Picked>> {
    let want = item.count as usize;
    // Every row fetched stays locked until the transaction ends, and other
    // replicas skip it: fetch what is needed and widen only when candidates
    // were skipped (taken by an earlier item, other attributes, held entities).
    let mut batch = want.clamp(1, 1024) as i64;
    let mut out = Vec::with_capacity(want);
    let mut cursor = 0i64;
    let first = item.where_.iter().next();
    loop {
        let rows = match first {
            None => {
                tx.query_cached(
                    "SELECT seq, id, attributes, entities, updated_at FROM datasets \
                     WHERE type = $1 AND state = $2 AND status = 'ready' AND seq > $3 ORDER BY seq LIMIT $4 \
                     FOR UPDATE SKIP LOCKED",
                    &[&item.type_name, &item.state, &cursor, &batch],
                )
                .await?
            }
            Some((name, value)) => {
                tx.query_cached(
                    "SELECT d.seq, d.id, d.attributes, d.entities, d.updated_at FROM dataset_attrs a JOIN datasets d ON d.seq = a.seq \
                     WHERE a.type = $1 AND a.state = $2 AND a.name = $5 AND a.value = $6 AND a.seq > $3 \
                     AND d.status = 'ready' AND d.type = $1 AND d.state = $2 ORDER BY a.seq LIMIT $4 \
                     FOR UPDATE OF d SKIP LOCKED",
                    &[&item.type_name, &item.state, &cursor, &batch, name, &value.as_str()],
                )
                .await?
            }
        };
        let full = rows.len() as i64 == batch;
        for r in &rows {
            let seq: i64 = get(r, 0)?;
            let id: String = get(r, 1)?;
            let attributes: String = get(r, 2)?;
            let entities: String = get(r, 3)?;
            let updated_at: i64 = get(r, 4)?;
            cursor = seq;
            if taken.contains(&seq) {
                continue;
            }
            if item.where_.len() > 1 {
                let attrs: Attributes = serde_json::from_str(&attributes)?;
                if !item.where_.iter().all(|(k, v)| attrs.get(k) == Some(v)) {
                    continue;
                }
            }
            let entities: Vec<String> = if entities == "[]" {
                Vec::new()
            } else {
                serde_json::from_str(&entities)?
            };
            let mut free = true;
            for e in &entities {
                if entities_taken.contains(e) || entity_held(tx, e).await? {
                    free = false;
                    break;
                }
            }
            if !free {
                continue;
            }
            taken.insert(seq);
            entities_taken.extend(entities.iter().cloned());
            out.push(Picked {
                seq,
                id,
                entities,
                updated_at,
            });
            if out.len() == want {
                return Ok(out);
            }
        }
        if !full {
            return Ok(out);
        }
        batch = (batch * 8).min(1024);
    }
}

async fn shortfall(
    tx: &Transaction<'_>,
    item: &LeaseItem,
    available: usize,
) -> PgResult<ItemShortfall> {
    let ready = count_of(tx, &item.type_name, &item.state, DatasetStatus::Ready).await?;
    let generating = count_of(tx, &item.type_name, &item.state, DatasetStatus::Generating).await?;
    let potential = match item.where_.iter().next() {
        None => {
            ready
                + generating
                + count_of(tx, &item.type_name, &item.state, DatasetStatus::Leased).await?
        }
        Some((name, value)) => {
            let row = tx
                .query_one_cached(
                    "SELECT count(*) FROM dataset_attrs a JOIN datasets d ON d.seq = a.seq \
                     WHERE a.type = $1 AND a.state = $2 AND a.name = $3 AND a.value = $4 \
                     AND d.status IN ('ready', 'generating', 'leased')",
                    &[&item.type_name, &item.state, name, &value.as_str()],
                )
                .await?;
            get::<i64>(&row, 0)?.max(0) as u64
        }
    };
    Ok(ItemShortfall {
        name: item.name.clone(),
        wanted: item.count,
        available: available as u64,
        ready,
        generating,
        potential,
    })
}

async fn lease_tx(tx: &Transaction<'_>, a: &LeaseAttempt) -> PgResult<LeaseResult> {
    let now = a.now_ms;
    if let Some(key) = &a.idempotency_key {
        let existing = tx
            .query_opt_cached(
                &format!(
                    "SELECT {LEASE_COLS} FROM leases WHERE idempotency_key = $1 AND status = 'active' FOR UPDATE"
                ),
                &[key],
            )
            .await?;
        if let Some(row) = existing {
            let lease = lease_row(&row)?;
            if lease.expires_at > now {
                return Ok(LeaseResult::Existing(granted(tx, &lease).await?));
            }
            expire_lease(tx, &lease, now).await?;
        }
    }
    if a.items.is_empty() {
        return Ok(LeaseResult::NoStock(Vec::new()));
    }
    let mut taken = HashSet::new();
    let mut entities_taken = HashSet::new();
    let mut picks = Vec::with_capacity(a.items.len());
    let mut short = Vec::new();
    for item in &a.items {
        let got = pick(tx, item, &mut taken, &mut entities_taken).await?;
        if got.len() < item.count as usize {
            short.push(shortfall(tx, item, got.len()).await?);
        }
        picks.push(got);
    }
    if !short.is_empty() {
        return Ok(LeaseResult::NoStock(short));
    }
    let id = ids::lease_id();
    // Entities first: the primary key is the exclusivity. A concurrent holder
    // makes an insert wait for it and then fail (the attempt is retried) or,
    // when that holder was just releasing, succeed once the release commits.
    for p in picks.iter().flatten() {
        for e in &p.entities {
            tx.execute_cached(
                "INSERT INTO entity_holds (entity, lease_id, dataset_id) VALUES ($1, $2, $3)",
                &[e, &id, &p.id],
            )
            .await?;
        }
    }
    // Read after the holds are ours: sees every release they waited for.
    let all: Vec<&Picked> = picks.iter().flatten().collect();
    let now = not_before(tx, &all, now).await?;
    let label = a.holder.label();
    let expires_at = now + a.ttl_ms;
    // A unique violation here (a concurrent lease of the same key) rolls the
    // attempt back; the retry then finds that lease and answers `Existing`.
    tx.execute_cached(
        "INSERT INTO leases (id, status, holder, holder_label, idempotency_key, ttl_ms, created_at, expires_at) \
         VALUES ($1, 'active', $2, $3, $4, $5, $6, $7)",
        &[
            &id,
            &serde_json::to_string(&a.holder)?,
            &label,
            &a.idempotency_key,
            &a.ttl_ms,
            &now,
            &expires_at,
        ],
    )
    .await?;
    let mut pos = 0i64;
    for (item, got) in a.items.iter().zip(&picks) {
        for (idx, p) in got.iter().enumerate() {
            change(
                tx,
                Change {
                    seq: p.seq,
                    id: &p.id,
                    from: Some(DatasetStatus::Ready),
                    to: DatasetStatus::Leased,
                    lease_id: Some(&id),
                    holder: Some(&label),
                    reason: "leased",
                    now_ms: now,
                },
            )
            .await?;
            tx.execute_cached(
                "INSERT INTO lease_items (lease_id, dataset_id, name, idx, pos, on_failure) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&id, &p.id, &item.name, &(idx as i64), &pos, &item.on_failure.as_str()],
            )
            .await?;
            pos += 1;
        }
    }
    let lease = find_lease(tx, &id)
        .await?
        .ok_or_else(|| PgError::Store(StoreError::Query("a new lease vanished".into())))?;
    Ok(LeaseResult::Granted(granted(tx, &lease).await?))
}

async fn heartbeat_tx(
    tx: &Transaction<'_>,
    id: &str,
    ttl_ms: Option<i64>,
    now: i64,
) -> PgResult<HeartbeatResult> {
    let Some(lease) = find_lease_for_update(tx, id).await? else {
        return Ok(HeartbeatResult::NotFound);
    };
    let status = parse_lease_status(&lease.status)?;
    if status != LeaseStatus::Active {
        return Ok(HeartbeatResult::Gone(status));
    }
    if lease.expires_at <= now {
        expire_lease(tx, &lease, now).await?;
        return Ok(HeartbeatResult::Gone(LeaseStatus::Expired));
    }
    let ttl = ttl_ms.unwrap_or(lease.ttl_ms);
    let expires_at = now + ttl;
    tx.execute_cached(
        "UPDATE leases SET expires_at = $2, ttl_ms = $3 WHERE id = $1",
        &[&id, &expires_at, &ttl],
    )
    .await?;
    Ok(HeartbeatResult::Extended {
        expires_at_ms: expires_at,
        ttl_ms: ttl,
    })
}

async fn release_tx(
    tx: &Transaction<'_>,
    id: &str,
    outcome: Outcome,
    reason: &Option<String>,
    details_url: &Option<String>,
    now: i64,
) -> PgResult<ReleaseResult> {
    let Some(lease) = find_lease_for_update(tx, id).await? else {
        return Ok(ReleaseResult::NotFound);
    };
    match parse_lease_status(&lease.status)? {
        LeaseStatus::Released => {
            let answer = lease.answer.as_deref().ok_or_else(|| {
                PgError::Store(StoreError::Query("released lease lacks its answer".into()))
            })?;
            return Ok(ReleaseResult::AlreadyReleased(serde_json::from_str(
                answer,
            )?));
        }
        LeaseStatus::Expired => return Ok(ReleaseResult::Expired),
        LeaseStatus::Active if lease.expires_at <= now => {
            expire_lease(tx, &lease, now).await?;
            return Ok(ReleaseResult::Expired);
        }
        LeaseStatus::Active => {}
    }
    let rows = tx
        .query_cached(
            "SELECT li.name, li.on_failure, d.seq, d.id, d.reusable, d.status \
             FROM lease_items li JOIN datasets d ON d.id = li.dataset_id WHERE li.lease_id = $1 ORDER BY li.pos \
             FOR UPDATE OF d",
            &[&id],
        )
        .await?;
    let why = match reason {
        Some(r) => format!("lease released: {outcome} ({r})"),
        None => format!("lease released: {outcome}"),
    };
    let mut datasets = Vec::with_capacity(rows.len());
    for r in &rows {
        let name: String = get(r, 0)?;
        let on_failure: String = get(r, 1)?;
        let seq: i64 = get(r, 2)?;
        let ds_id: String = get(r, 3)?;
        let reusable: bool = get(r, 4)?;
        let status: String = get(r, 5)?;
        let on_failure: OnFailure = on_failure
            .parse()
            .map_err(|e| PgError::Store(StoreError::Query(e)))?;
        let current = parse_status(&status)?;
        let to = if current != DatasetStatus::Leased {
            current
        } else {
            let keep = outcome == Outcome::Passed || on_failure == OnFailure::Release;
            let to = match (keep, reusable) {
                (true, true) => DatasetStatus::Ready,
                (true, false) => DatasetStatus::Consumed,
                (false, _) => DatasetStatus::Quarantined,
            };
            change(
                tx,
                Change {
                    seq,
                    id: &ds_id,
                    from: Some(DatasetStatus::Leased),
                    to,
                    lease_id: Some(id),
                    holder: Some(&lease.holder_label),
                    reason: &why,
                    now_ms: now,
                },
            )
            .await?;
            to
        };
        datasets.push(ReleasedDataset {
            id: ds_id,
            name,
            status: to,
        });
    }
    free_entities(tx, id, now).await?;
    let answer = ReleaseAnswer {
        lease_id: id.to_string(),
        status: LeaseStatus::Released,
        outcome: Some(outcome),
        datasets,
    };
    tx.execute_cached(
        "UPDATE leases SET status = 'released', ended_at = $2, outcome = $3, reason = $4, details_url = $5, answer = $6 \
         WHERE id = $1",
        &[&id, &now, &outcome.as_str(), reason, details_url, &serde_json::to_string(&answer)?],
    )
    .await?;
    Ok(ReleaseResult::Released(answer))
}

async fn register_tx(
    tx: &Transaction<'_>,
    datasets: &[NewDataset],
    by: &str,
    now: i64,
) -> PgResult<Vec<DatasetView>> {
    let mut out = Vec::with_capacity(datasets.len());
    for d in datasets {
        let id = ids::dataset_id();
        let row = tx
            .query_one_cached(
                "INSERT INTO datasets (id, type, state, status, attributes, data, secret_fields, entities, reusable, \
                 created_at, updated_at) VALUES ($1, $2, $3, 'ready', $4, $5, $6, $7, $8, $9, $9) RETURNING seq",
                &[
                    &id,
                    &d.type_name,
                    &d.state,
                    &serde_json::to_string(&d.attributes)?,
                    &serde_json::to_string(&d.data)?,
                    &serde_json::to_string(&d.secret_fields)?,
                    &serde_json::to_string(&d.entities)?,
                    &d.reusable,
                    &now,
                ],
            )
            .await?;
        let seq: i64 = get(&row, 0)?;
        know_state(tx, &d.type_name, &d.state).await?;
        for (name, value) in &d.attributes {
            tx.execute_cached(
                "INSERT INTO dataset_attrs (type, state, name, value, seq) VALUES ($1, $2, $3, $4, $5)",
                &[&d.type_name, &d.state, name, &value.as_str(), &seq],
            )
            .await?;
        }
        tx.execute_cached(
            "INSERT INTO history (dataset_id, at, from_status, to_status, lease_id, holder, reason) \
             VALUES ($1, $2, NULL, 'ready', NULL, $3, 'registered by hand')",
            &[&id, &now, &by],
        )
        .await?;
        let created_at = rfc3339(now);
        out.push(DatasetView {
            dataset: Dataset {
                id: id.clone(),
                type_name: d.type_name.clone(),
                state: d.state.clone(),
                attributes: d.attributes.clone(),
                data: d.data.clone(),
                secret_fields: d.secret_fields.clone(),
                entities: d.entities.clone(),
            },
            status: DatasetStatus::Ready,
            created_at: created_at.clone(),
            updated_at: created_at,
            lease_id: None,
            error: None,
            history: vec![HistoryEntry {
                at: rfc3339(now),
                from: None,
                to: DatasetStatus::Ready,
                lease_id: None,
                holder: Some(by.to_string()),
                reason: "registered by hand".to_string(),
            }],
        });
    }
    Ok(out)
}

/// `(seq, type, state, status)` of a dataset, its row locked.
async fn row_of(
    tx: &Transaction<'_>,
    id: &str,
) -> PgResult<Option<(i64, String, String, DatasetStatus)>> {
    let row = tx
        .query_opt_cached(
            "SELECT seq, type, state, status FROM datasets WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?;
    match row {
        None => Ok(None),
        Some(r) => {
            let status: String = get(&r, 3)?;
            Ok(Some((
                get(&r, 0)?,
                get(&r, 1)?,
                get(&r, 2)?,
                parse_status(&status)?,
            )))
        }
    }
}

async fn settle_tx(
    tx: &Transaction<'_>,
    id: &str,
    allowed: &[DatasetStatus],
    to: DatasetStatus,
    by: &str,
    reason: &str,
    now: i64,
) -> PgResult<SettleResult> {
    let Some((seq, _, _, status)) = row_of(tx, id).await? else {
        return Ok(SettleResult::NotFound);
    };
    if !allowed.contains(&status) {
        return Ok(SettleResult::WrongStatus(status));
    }
    change(
        tx,
        Change {
            seq,
            id,
            from: Some(status),
            to,
            lease_id: None,
            holder: Some(by),
            reason,
            now_ms: now,
        },
    )
    .await?;
    match dataset_with_history(tx, id).await? {
        Some(v) => Ok(SettleResult::Done(Box::new(v))),
        None => Ok(SettleResult::NotFound),
    }
}

// ---------------------------------------------------------------- generations

async fn note(
    tx: &Transaction<'_>,
    id: &str,
    status: DatasetStatus,
    by: Option<&str>,
    reason: &str,
    now: i64,
) -> PgResult<()> {
    tx.execute_cached(
        "INSERT INTO history (dataset_id, at, from_status, to_status, lease_id, holder, reason) \
         VALUES ($1, $2, $3, $3, NULL, $4, $5)",
        &[&id, &now, &status.as_str(), &by, &reason],
    )
    .await?;
    Ok(())
}

async fn begin_generation_tx(
    tx: &Transaction<'_>,
    g: &NewGeneration,
    owner: &str,
    now: i64,
) -> PgResult<Option<String>> {
    if let Some(cap) = g.cap {
        // One generation start per (type, state) at a time across all
        // replicas: the count below sees every committed start before it.
        let key = format!("stockroom-generation:{}/{}", g.type_name, g.state);
        tx.execute_cached(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&key],
        )
        .await?;
        // One statement, one snapshot: a generation completing meanwhile
        // (generating → ready) is counted once, never zero times.
        let row = tx
            .query_one_cached(
                "SELECT count(*) FROM datasets WHERE type = $1 AND state = $2 AND status IN ('ready', 'generating')",
                &[&g.type_name, &g.state],
            )
            .await?;
        let have = get::<i64>(&row, 0)?.max(0) as u64;
        tracing::debug!(state = %key, have, cap, owner, "generation cap check");
        if have >= cap {
            return Ok(None);
        }
    }
    know_state(tx, &g.type_name, &g.state).await?;
    let id = ids::dataset_id();
    tx.execute_cached(
        "INSERT INTO datasets (id, type, state, status, attributes, data, secret_fields, entities, reusable, \
         created_at, updated_at, generator, request, owner) \
         VALUES ($1, $2, $3, 'generating', '{}', 'null', '[]', '[]', $4, $5, $5, $6, $7, $8)",
        &[
            &id,
            &g.type_name,
            &g.state,
            &g.reusable,
            &now,
            &g.generator,
            &serde_json::to_string(&g.request)?,
            &owner,
        ],
    )
    .await?;
    tx.execute_cached(
        "INSERT INTO history (dataset_id, at, from_status, to_status, lease_id, holder, reason) \
         VALUES ($1, $2, NULL, 'generating', NULL, $3, $4)",
        &[
            &id,
            &now,
            &g.generator,
            &format!(
                "generation started via generator {:?}; request: {}",
                g.generator, g.request
            ),
        ],
    )
    .await?;
    Ok(Some(id))
}

async fn take_input_tx(tx: &Transaction<'_>, p: &InputPick, now: i64) -> PgResult<Option<Dataset>> {
    match row_of(tx, &p.part_of).await? {
        Some((_, _, _, DatasetStatus::Generating)) => {}
        _ => return Ok(None),
    }
    let item = LeaseItem {
        name: p.input_name.clone(),
        type_name: p.type_name.clone(),
        state: p.state.clone(),
        where_: p.where_.clone(),
        count: 1,
        on_failure: OnFailure::Quarantine,
    };
    let Some(picked) = pick(tx, &item, &mut HashSet::new(), &mut HashSet::new())
        .await?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let now = not_before(tx, &[&picked], now).await?;
    tx.execute_cached(
        "UPDATE datasets SET part_of = $2 WHERE seq = $1",
        &[&picked.seq, &p.part_of],
    )
    .await?;
    change(
        tx,
        Change {
            seq: picked.seq,
            id: &picked.id,
            from: Some(DatasetStatus::Ready),
            to: DatasetStatus::Composed,
            lease_id: None,
            holder: Some("pool"),
            reason: &format!(
                "taken from stock as input {:?} of {}",
                p.input_name, p.part_of
            ),
            now_ms: now,
        },
    )
    .await?;
    note(
        tx,
        &p.part_of,
        DatasetStatus::Generating,
        Some("pool"),
        &format!(
            "part {:?}: {} ({}/{}) taken from stock",
            p.input_name, picked.id, p.type_name, p.state
        ),
        now,
    )
    .await?;
    let row = tx
        .query_one_cached(
            &format!("SELECT {DS_COLS} FROM datasets d WHERE d.seq = $1"),
            &[&picked.seq],
        )
        .await?;
    Ok(Some(raw_dataset(&row, 0)?.dataset()?))
}

async fn complete_generation_tx(
    tx: &Transaction<'_>,
    id: &str,
    g: &Generated,
    now: i64,
) -> PgResult<Option<DatasetView>> {
    let Some((seq, type_name, state, DatasetStatus::Generating)) = row_of(tx, id).await? else {
        return Ok(None);
    };
    let mut entities = g.entities.clone();
    let parts = tx
        .query_cached(
            "SELECT entities FROM datasets WHERE part_of = $1 ORDER BY seq",
            &[&id],
        )
        .await?;
    for r in &parts {
        let part: String = get(r, 0)?;
        for e in serde_json::from_str::<Vec<String>>(&part)? {
            if !entities.contains(&e) {
                entities.push(e);
            }
        }
    }
    tx.execute_cached(
        "UPDATE datasets SET attributes = $2, data = $3, secret_fields = $4, entities = $5, part_of = $6, owner = NULL WHERE seq = $1",
        &[
            &seq,
            &serde_json::to_string(&g.attributes)?,
            &serde_json::to_string(&g.data)?,
            &serde_json::to_string(&g.secret_fields)?,
            &serde_json::to_string(&entities)?,
            &g.part_of,
        ],
    )
    .await?;
    for (name, value) in &g.attributes {
        tx.execute_cached(
            "INSERT INTO dataset_attrs (type, state, name, value, seq) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[&type_name, &state, name, &value.as_str(), &seq],
        )
        .await?;
    }
    let to = if g.part_of.is_some() {
        DatasetStatus::Composed
    } else {
        DatasetStatus::Ready
    };
    let reason = match &g.part_of {
        Some(parent) => format!("{}; made as a part of {parent}", g.reason),
        None => g.reason.clone(),
    };
    change(
        tx,
        Change {
            seq,
            id,
            from: Some(DatasetStatus::Generating),
            to,
            lease_id: None,
            holder: Some("pool"),
            reason: &reason,
            now_ms: now,
        },
    )
    .await?;
    if let Some(parent) = &g.part_of {
        note(
            tx,
            parent,
            DatasetStatus::Generating,
            Some("pool"),
            &format!("part: {id} ({type_name}/{state}) made for it"),
            now,
        )
        .await?;
    }
    dataset_with_history(tx, id).await
}

/// Fails a generation and, depth first, the generations that were parts of it.
async fn fail_generation_tx(
    tx: &Transaction<'_>,
    id: &str,
    error: &str,
    now: i64,
) -> PgResult<bool> {
    let mut stack = vec![(id.to_string(), error.to_string())];
    let mut first = None;
    while let Some((id, error)) = stack.pop() {
        let failed = fail_one(tx, &id, &error, now, &mut stack).await?;
        first.get_or_insert(failed);
    }
    Ok(first.unwrap_or(false))
}

async fn fail_one(
    tx: &Transaction<'_>,
    id: &str,
    error: &str,
    now: i64,
    stack: &mut Vec<(String, String)>,
) -> PgResult<bool> {
    let Some((seq, _, _, DatasetStatus::Generating)) = row_of(tx, id).await? else {
        return Ok(false);
    };
    tx.execute_cached(
        "UPDATE datasets SET error = $2, owner = NULL WHERE seq = $1",
        &[&seq, &error],
    )
    .await?;
    change(
        tx,
        Change {
            seq,
            id,
            from: Some(DatasetStatus::Generating),
            to: DatasetStatus::Failed,
            lease_id: None,
            holder: Some("pool"),
            reason: &format!("generation failed: {error}"),
            now_ms: now,
        },
    )
    .await?;
    let parts = tx
        .query_cached(
            "SELECT seq, id, status FROM datasets WHERE part_of = $1 AND status IN ('composed', 'generating') \
             ORDER BY seq FOR UPDATE",
            &[&id],
        )
        .await?;
    let mut nested = Vec::new();
    for r in &parts {
        let pseq: i64 = get(r, 0)?;
        let pid: String = get(r, 1)?;
        let pstatus: String = get(r, 2)?;
        let from = parse_status(&pstatus)?;
        if from == DatasetStatus::Generating {
            nested.push((
                pid,
                format!("the generation it was a part of ({id}) failed"),
            ));
            continue;
        }
        change(
            tx,
            Change {
                seq: pseq,
                id: &pid,
                from: Some(from),
                to: DatasetStatus::Quarantined,
                lease_id: None,
                holder: Some("pool"),
                reason: &format!(
                    "input of failed generation {id}; the generator may have changed it"
                ),
                now_ms: now,
            },
        )
        .await?;
    }
    // Keep the SQLite backend's order: nested parts in insertion order.
    nested.reverse();
    stack.extend(nested);
    Ok(true)
}

async fn extend_leased_tx(tx: &Transaction<'_>, x: &Extension, now: i64) -> PgResult<ExtendResult> {
    let Some(lease) = find_lease_for_update(tx, &x.lease_id).await? else {
        return Ok(ExtendResult::NotFound);
    };
    let status = parse_lease_status(&lease.status)?;
    if status != LeaseStatus::Active {
        return Ok(ExtendResult::Gone(status));
    }
    if lease.expires_at <= now {
        expire_lease(tx, &lease, now).await?;
        return Ok(ExtendResult::Gone(LeaseStatus::Expired));
    }
    let row = tx
        .query_opt_cached(
            "SELECT seq, type, state, status, lease_id, entities FROM datasets WHERE id = $1 FOR UPDATE",
            &[&x.dataset_id],
        )
        .await?;
    let Some(row) = row else {
        return Ok(ExtendResult::NotFound);
    };
    let seq: i64 = get(&row, 0)?;
    let type_name: String = get(&row, 1)?;
    let state: String = get(&row, 2)?;
    let dstatus: String = get(&row, 3)?;
    let held_by: Option<String> = get(&row, 4)?;
    let old_entities: String = get(&row, 5)?;
    if dstatus != "leased"
        || held_by.as_deref() != Some(x.lease_id.as_str())
        || state != x.from_state
    {
        return Ok(ExtendResult::NotHolder);
    }
    let old: Vec<String> = serde_json::from_str(&old_entities)?;
    for e in x.entities.iter().filter(|e| !old.contains(e)) {
        let holder = tx
            .query_opt_cached("SELECT lease_id FROM entity_holds WHERE entity = $1", &[e])
            .await?;
        match holder {
            Some(r) => {
                let l: String = get(&r, 0)?;
                if l != x.lease_id {
                    return Ok(ExtendResult::EntityHeld(e.clone()));
                }
            }
            None => {
                tx.execute_cached(
                    "INSERT INTO entity_holds (entity, lease_id, dataset_id) VALUES ($1, $2, $3)",
                    &[e, &x.lease_id, &x.dataset_id],
                )
                .await?;
            }
        }
    }
    tx.execute_cached(
        "UPDATE datasets SET state = $2, data = $3, secret_fields = $4, entities = $5, updated_at = $6 WHERE seq = $1",
        &[
            &seq,
            &x.to_state,
            &serde_json::to_string(&x.data)?,
            &serde_json::to_string(&x.secret_fields)?,
            &serde_json::to_string(&x.entities)?,
            &now,
        ],
    )
    .await?;
    know_state(tx, &type_name, &x.to_state).await?;
    tx.execute_cached(
        "UPDATE dataset_attrs SET state = $2 WHERE seq = $1",
        &[&seq, &x.to_state],
    )
    .await?;
    tx.execute_cached(
        "INSERT INTO history (dataset_id, at, from_status, to_status, lease_id, holder, reason) \
         VALUES ($1, $2, 'leased', 'leased', $3, $4, $5)",
        &[
            &x.dataset_id,
            &now,
            &x.lease_id,
            &lease.holder_label,
            &format!(
                "{}: {type_name}/{state} → {type_name}/{}",
                x.reason, x.to_state
            ),
        ],
    )
    .await?;
    match dataset_with_history(tx, &x.dataset_id).await? {
        Some(v) => Ok(ExtendResult::Done(Box::new(v))),
        None => Ok(ExtendResult::NotFound),
    }
}

fn fill_count(counts: &mut stockroom_protocol::api::StockCounts, status: DatasetStatus, n: u64) {
    match status {
        DatasetStatus::Ready => counts.ready = n,
        DatasetStatus::Generating => counts.generating = n,
        DatasetStatus::Leased => counts.leased = n,
        DatasetStatus::Quarantined => counts.quarantined = n,
        DatasetStatus::Consumed => counts.consumed = n,
        DatasetStatus::Failed => counts.failed = n,
        DatasetStatus::Discarded => counts.discarded = n,
        DatasetStatus::Composed => {}
    }
}

impl Store for PostgresStore {
    fn lease(&self, attempt: LeaseAttempt) -> BoxFuture<'_, StoreResult<LeaseResult>> {
        Box::pin(async move { in_tx!(self, |tx| lease_tx(&tx, &attempt)) })
    }

    fn heartbeat(
        &self,
        lease_id: String,
        ttl_ms: Option<i64>,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<HeartbeatResult>> {
        Box::pin(async move { in_tx!(self, |tx| heartbeat_tx(&tx, &lease_id, ttl_ms, now_ms)) })
    }

    fn release(
        &self,
        lease_id: String,
        outcome: Outcome,
        reason: Option<String>,
        details_url: Option<String>,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<ReleaseResult>> {
        Box::pin(async move {
            in_tx!(self, |tx| release_tx(
                &tx,
                &lease_id,
                outcome,
                &reason,
                &details_url,
                now_ms
            ))
        })
    }

    fn expire_due(&self, now_ms: i64, limit: u32) -> BoxFuture<'_, StoreResult<Vec<ExpiredLease>>> {
        Box::pin(async move {
            in_tx!(self, |tx| async {
                // SKIP LOCKED + the status re-check under the row lock: two
                // replicas' reapers never expire one lease twice.
                let rows = tx
                    .query_cached(
                        &format!(
                            "SELECT {LEASE_COLS} FROM leases WHERE status = 'active' AND expires_at <= $1 \
                             ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED"
                        ),
                        &[&now_ms, &i64::from(limit)],
                    )
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    let lease = lease_row(r)?;
                    let dataset_ids = expire_lease(&tx, &lease, now_ms).await?;
                    out.push(ExpiredLease {
                        lease_id: lease.id,
                        dataset_ids,
                    });
                }
                PgResult::Ok(out)
            })
        })
    }

    fn register(
        &self,
        datasets: Vec<NewDataset>,
        by: String,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<DatasetView>>> {
        Box::pin(async move { in_tx!(self, |tx| register_tx(&tx, &datasets, &by, now_ms)) })
    }

    fn discard(
        &self,
        id: String,
        by: String,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<SettleResult>> {
        Box::pin(async move {
            in_tx!(self, |tx| settle_tx(
                &tx,
                &id,
                &[
                    DatasetStatus::Quarantined,
                    DatasetStatus::Ready,
                    DatasetStatus::Failed,
                ],
                DatasetStatus::Discarded,
                &by,
                "discarded by admin",
                now_ms,
            ))
        })
    }

    fn recycle(
        &self,
        id: String,
        by: String,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<SettleResult>> {
        Box::pin(async move {
            in_tx!(self, |tx| settle_tx(
                &tx,
                &id,
                &[DatasetStatus::Quarantined],
                DatasetStatus::Ready,
                &by,
                "recycled by admin",
                now_ms,
            ))
        })
    }

    fn get_dataset(&self, id: String) -> BoxFuture<'_, StoreResult<Option<DatasetView>>> {
        Box::pin(async move { in_tx!(self, |tx| dataset_with_history(&tx, &id)) })
    }

    fn list_datasets(&self, filter: DatasetFilter) -> BoxFuture<'_, StoreResult<Vec<DatasetView>>> {
        Box::pin(async move {
            in_tx!(self, |tx| async {
                let mut sql = format!("SELECT {DS_COLS} FROM datasets d WHERE 1 = 1");
                let mut args: Vec<String> = Vec::new();
                if let Some(t) = &filter.type_name {
                    args.push(t.clone());
                    sql.push_str(&format!(" AND d.type = ${}", args.len()));
                }
                if let Some(s) = &filter.state {
                    args.push(s.clone());
                    sql.push_str(&format!(" AND d.state = ${}", args.len()));
                }
                if let Some(s) = filter.status {
                    args.push(s.as_str().to_string());
                    sql.push_str(&format!(" AND d.status = ${}", args.len()));
                }
                // The limit is a parameter too: one cached statement per filter shape.
                sql.push_str(&format!(" ORDER BY d.seq LIMIT ${}", args.len() + 1));
                let limit = i64::from(filter.limit);
                let mut params: Vec<&(dyn ToSql + Sync)> =
                    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
                params.push(&limit);
                let rows = tx.query_cached(&sql, &params).await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    out.push(raw_dataset(r, 0)?.view()?);
                }
                PgResult::Ok(out)
            })
        })
    }

    fn history(&self, id: String) -> BoxFuture<'_, StoreResult<Vec<HistoryEntry>>> {
        Box::pin(async move { in_tx!(self, |tx| history_of(&tx, &id)) })
    }

    fn get_lease(&self, id: String) -> BoxFuture<'_, StoreResult<Option<LeaseView>>> {
        Box::pin(async move {
            in_tx!(self, |tx| async {
                match find_lease(&tx, &id).await? {
                    Some(l) => lease_view(&tx, l).await.map(Some),
                    None => PgResult::Ok(None),
                }
            })
        })
    }

    fn list_leases(
        &self,
        status: Option<LeaseStatus>,
        limit: u32,
    ) -> BoxFuture<'_, StoreResult<Vec<LeaseView>>> {
        Box::pin(async move {
            in_tx!(self, |tx| async {
                let limit = i64::from(limit);
                let rows = match status {
                    Some(s) => {
                        tx.query_cached(
                            &format!(
                                "SELECT {LEASE_COLS} FROM leases WHERE status = $1 ORDER BY created_at DESC LIMIT $2"
                            ),
                            &[&s.as_str(), &limit],
                        )
                        .await?
                    }
                    None => {
                        tx.query_cached(
                            &format!("SELECT {LEASE_COLS} FROM leases ORDER BY created_at DESC LIMIT $1"),
                            &[&limit],
                        )
                        .await?
                    }
                };
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    out.push(lease_view(&tx, lease_row(r)?).await?);
                }
                PgResult::Ok(out)
            })
        })
    }

    fn active_lease_count(&self) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            in_tx!(self, |tx| async {
                let row = tx
                    .query_one_cached("SELECT count(*) FROM leases WHERE status = 'active'", &[])
                    .await?;
                PgResult::Ok(get::<i64>(&row, 0)?.max(0) as u64)
            })
        })
    }

    fn stock(&self) -> BoxFuture<'_, StoreResult<StockTable>> {
        Box::pin(async move {
            in_tx!(self, |tx| async {
                let mut table = StockTable::new();
                let rows = tx
                    .query_cached(
                        "SELECT type, state, status, count(*) FROM datasets GROUP BY type, state, status",
                        &[],
                    )
                    .await?;
                for r in &rows {
                    let status: String = get(r, 2)?;
                    let n: i64 = get(r, 3)?;
                    let counts = table.entry((get(r, 0)?, get(r, 1)?)).or_default();
                    fill_count(counts, parse_status(&status)?, n.max(0) as u64);
                }
                let rows = tx
                    .query_cached("SELECT type, state FROM known_states", &[])
                    .await?;
                for r in &rows {
                    table.entry((get(r, 0)?, get(r, 1)?)).or_default();
                }
                let rows = tx
                    .query_cached(
                        "SELECT type, state, min_ready, max_ready FROM stock_settings",
                        &[],
                    )
                    .await?;
                for r in &rows {
                    let counts = table.entry((get(r, 0)?, get(r, 1)?)).or_default();
                    counts.min_ready = Some(get::<i64>(r, 2)?.clamp(0, u32::MAX as i64) as u32);
                    counts.max_ready = Some(get::<i64>(r, 3)?.clamp(0, u32::MAX as i64) as u32);
                }
                PgResult::Ok(table)
            })
        })
    }

    fn set_stock(
        &self,
        type_name: String,
        state: String,
        settings: StockSettings,
    ) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            in_tx!(self, |tx| async {
                tx.execute_cached(
                    "INSERT INTO stock_settings (type, state, min_ready, max_ready) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (type, state) DO UPDATE SET min_ready = excluded.min_ready, max_ready = excluded.max_ready",
                    &[
                        &type_name,
                        &state,
                        &i64::from(settings.min_ready),
                        &i64::from(settings.max_ready),
                    ],
                )
                .await?;
                PgResult::Ok(())
            })
        })
    }

    fn purge_consumed(&self, before_ms: i64, now_ms: i64) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            in_tx!(self, |tx| async {
                let rows = tx
                    .query_cached(
                        "SELECT id FROM datasets WHERE status = 'consumed' AND updated_at < $1 AND data != 'null' \
                         LIMIT 1000 FOR UPDATE SKIP LOCKED",
                        &[&before_ms],
                    )
                    .await?;
                for r in &rows {
                    let id: String = get(r, 0)?;
                    tx.execute_cached(
                        "UPDATE datasets SET data = 'null', updated_at = $2 WHERE id = $1",
                        &[&id, &now_ms],
                    )
                    .await?;
                    tx.execute_cached(
                        "INSERT INTO history (dataset_id, at, from_status, to_status, lease_id, holder, reason) \
                         VALUES ($1, $2, 'consumed', 'consumed', NULL, 'pool', 'data erased after consumed_retention')",
                        &[&id, &now_ms],
                    )
                    .await?;
                }
                PgResult::Ok(rows.len() as u64)
            })
        })
    }

    fn begin_generation(
        &self,
        generation: NewGeneration,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Option<String>>> {
        Box::pin(async move {
            in_tx!(self, |tx| begin_generation_tx(
                &tx,
                &generation,
                &self.replica,
                now_ms
            ))
        })
    }

    fn take_input(
        &self,
        pick: InputPick,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Option<Dataset>>> {
        Box::pin(async move { in_tx!(self, |tx| take_input_tx(&tx, &pick, now_ms)) })
    }

    fn complete_generation(
        &self,
        id: String,
        generated: Generated,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Option<DatasetView>>> {
        Box::pin(async move {
            in_tx!(self, |tx| complete_generation_tx(
                &tx, &id, &generated, now_ms
            ))
        })
    }

    fn fail_generation(
        &self,
        id: String,
        error: String,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(async move { in_tx!(self, |tx| fail_generation_tx(&tx, &id, &error, now_ms)) })
    }

    /// Fails the `generating` rows of this replica and of replicas that are
    /// gone (no connection with their `application_name` is open): the
    /// generations of live replicas are theirs to finish.
    fn fail_all_generating(&self, reason: String, now_ms: i64) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            in_tx!(self, |tx| async {
                let rows = tx
                    .query_cached(
                        "SELECT d.id FROM datasets d WHERE d.status = 'generating' AND (d.owner IS NULL OR d.owner = $1 \
                         OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.application_name = $2 || d.owner)) \
                         ORDER BY d.seq",
                        &[&self.replica, &APP_PREFIX],
                    )
                    .await?;
                let mut n = 0;
                for r in &rows {
                    let id: String = get(r, 0)?;
                    if fail_generation_tx(&tx, &id, &reason, now_ms).await? {
                        n += 1;
                    }
                }
                PgResult::Ok(n)
            })
        })
    }

    fn extend_leased(
        &self,
        extension: Extension,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<ExtendResult>> {
        Box::pin(async move { in_tx!(self, |tx| extend_leased_tx(&tx, &extension, now_ms)) })
    }

    fn wake_interval(&self) -> Option<Duration> {
        Some(WAKE_INTERVAL)
    }
}

/// How often waiters of this replica re-try while any wait: stock released
/// through another replica is seen within this time.
pub const WAKE_INTERVAL: Duration = Duration::from_millis(250);

#[cfg(test)]
mod tests {
    use super::split_url;

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
