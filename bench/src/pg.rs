//! PostgreSQL mode of `pool-bench` (see docs/benchmarks.md, "Pool on PostgreSQL").
//!
//! - [`ServerUrl`]: the `--store postgres://…` server URL, turned into one
//!   fresh database per configuration (`stockroom_bench_<pid>_<n>`, created
//!   and dropped here) and into the store URL the pool replicas get.
//! - [`run_raw`]: the raw-SQL ceiling — C tasks doing the statements of
//!   `pool/src/store/postgres/statements.rs` (imported, not copied) for one lease cycle (`lease_tx`,
//!   `heartbeat_tx`, `release_tx` for one item of count 1, one entity, no
//!   idempotency key) in the same three READ COMMITTED transactions, straight
//!   through tokio-postgres + deadpool-postgres: no HTTP, no JSON bodies, no
//!   axum, no retry loop, no `Store` trait.
//! - [`ActivitySampler`]: `pg_stat_activity` of the bench database sampled
//!   during the measurement (what the backends were doing: on CPU, waiting on
//!   a lock or on I/O, or idle in a transaction waiting for their client).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::{Pool, Transaction};
use serde_json::json;
use tokio::time::Instant;
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use crate::{ClientResult, Holders, micros, pool};

/// A PostgreSQL server given as `postgres://USER@HOST:PORT[/ADMIN_DB][?PARAMS]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// `postgres://USER@HOST:PORT`, without a path.
    authority: String,
    /// The database to connect to for `CREATE`/`DROP DATABASE` (default `postgres`).
    admin_db: String,
    /// Connection parameters (`key=value`), passed on to every URL built.
    params: Vec<String>,
}

impl ServerUrl {
    pub fn parse(url: &str) -> Result<ServerUrl, String> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| format!("--store {url:?}: expected postgres://USER@HOST:PORT"))?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, q),
            None => (rest, ""),
        };
        let (host, db) = match rest.split_once('/') {
            Some((h, d)) => (h, d),
            None => (rest, ""),
        };
        if host.is_empty() {
            return Err(format!("--store {url:?}: no host"));
        }
        let mut params = Vec::new();
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            if kv.starts_with("pool_size=") {
                return Err(format!(
                    "--store {url:?}: give the pool size with --pg-pool-size, not in the URL"
                ));
            }
            params.push(kv.to_string());
        }
        Ok(ServerUrl {
            authority: format!("postgres://{host}"),
            admin_db: if db.is_empty() {
                "postgres".to_string()
            } else {
                db.to_string()
            },
            params,
        })
    }

    fn url(&self, db: &str, extra: Option<String>) -> String {
        let params: Vec<String> = self.params.iter().cloned().chain(extra).collect();
        if params.is_empty() {
            format!("{}/{db}", self.authority)
        } else {
            format!("{}/{db}?{}", self.authority, params.join("&"))
        }
    }

    /// The URL of the admin database (for `CREATE`/`DROP DATABASE`).
    pub fn admin_url(&self) -> String {
        self.url(&self.admin_db, None)
    }

    /// A connection URL of database `db` (for the bench's own connections).
    pub fn db_url(&self, db: &str) -> String {
        self.url(db, None)
    }

    /// The `--store` URL of a pool replica on database `db`.
    pub fn store_url(&self, db: &str, pool_size: usize) -> String {
        self.url(db, Some(format!("pool_size={pool_size}")))
    }
}

/// The name of the `n`-th database of this bench process.
pub fn db_name(pid: u32, n: u32) -> String {
    format!("stockroom_bench_{pid}_{n}")
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// `CREATE DATABASE name` (`name` is ours: lowercase letters, digits, `_`).
pub async fn create_db(server: &ServerUrl, name: &str) -> Result<(), String> {
    check_name(name)?;
    let c = connect(&server.admin_url()).await?;
    c.batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .map_err(|e| format!("CREATE DATABASE {name}: {e}"))
}

/// `DROP DATABASE IF EXISTS name WITH (FORCE)`.
pub async fn drop_db(server: &ServerUrl, name: &str) -> Result<(), String> {
    check_name(name)?;
    let c = connect(&server.admin_url()).await?;
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .map_err(|e| format!("DROP DATABASE {name}: {e}"))
}

fn check_name(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Ok(())
    } else {
        Err(format!("not a database name the bench makes: {name:?}"))
    }
}

/// `VACUUM ANALYZE` of the whole database (outside any measurement).
pub async fn vacuum(url: &str) -> Result<(), String> {
    connect(url)
        .await?
        .batch_execute("VACUUM ANALYZE")
        .await
        .map_err(|e| format!("VACUUM ANALYZE: {e}"))
}

/// `(ready, leased, active leases, entity holds)` of the bench's type/state, read with SQL.
pub async fn sql_counts(url: &str) -> Result<(u64, u64, u64, u64), String> {
    let c = connect(url).await?;
    let row = c
        .query_one(
            "SELECT \
               (SELECT count(*) FROM datasets WHERE type = $1 AND state = $2 AND status = 'ready'), \
               (SELECT count(*) FROM datasets WHERE type = $1 AND state = $2 AND status = 'leased'), \
               (SELECT count(*) FROM leases WHERE status = 'active'), \
               (SELECT count(*) FROM entity_holds)",
            &[&pool::TYPE, &pool::STATE],
        )
        .await
        .map_err(|e| format!("counting: {e}"))?;
    let n = |i: usize| -> Result<u64, String> {
        row.try_get::<_, i64>(i)
            .map(|v| v.max(0) as u64)
            .map_err(|e| format!("counting: {e}"))
    };
    Ok((n(0)?, n(1)?, n(2)?, n(3)?))
}

/// Counters of `pg_stat_database` for one database: transactions committed
/// and rolled back, rows returned by scans, rows fetched by index, rows
/// written. Backends flush them about once a second, so a 10 s delta is
/// good to roughly 10 %.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DbStats {
    pub commits: f64,
    pub rollbacks: f64,
    pub returned: f64,
    pub fetched: f64,
    pub written: f64,
}

impl DbStats {
    pub async fn take(url: &str, db: &str) -> Result<DbStats, String> {
        let c = connect(url).await?;
        let r = c
            .query_one(
                "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, \
                 tup_inserted + tup_updated + tup_deleted FROM pg_stat_database WHERE datname = $1",
                &[&db],
            )
            .await
            .map_err(|e| format!("pg_stat_database: {e}"))?;
        let n = |i: usize| -> Result<f64, String> { Ok(get::<i64>(&r, i)? as f64) };
        Ok(DbStats {
            commits: n(0)?,
            rollbacks: n(1)?,
            returned: n(2)?,
            fetched: n(3)?,
            written: n(4)?,
        })
    }

    /// The counts from `self` to `later`, divided by `cycles`.
    pub fn per_cycle(&self, later: &DbStats, cycles: u64) -> DbStats {
        let k = cycles.max(1) as f64;
        DbStats {
            commits: (later.commits - self.commits) / k,
            rollbacks: (later.rollbacks - self.rollbacks) / k,
            returned: (later.returned - self.returned) / k,
            fetched: (later.fetched - self.fetched) / k,
            written: (later.written - self.written) / k,
        }
    }

    pub fn line(&self) -> String {
        format!(
            "per cycle: {:.1} transactions committed, {:.2} rolled back, {:.0} rows returned by scans, {:.0} fetched by index, {:.1} written",
            self.commits, self.rollbacks, self.returned, self.fetched, self.written
        )
    }
}

/// How the ceiling sends its statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum RawVariant {
    /// Each statement prepared once per connection (deadpool's statement
    /// cache), then Bind/Execute only: the best the driver does. The ceiling.
    Prepared,
    /// Each statement sent as text, as the store does (`tx.query(&str, …)`:
    /// tokio-postgres prepares an unnamed statement, one more round trip).
    PerCall,
    /// `prepared` plus, before each lease, the pool's per-lease known-states
    /// read (`Store::stock()`: its three SELECTs, in their own transaction).
    WithStock,
}

impl RawVariant {
    pub fn name(self) -> &'static str {
        match self {
            RawVariant::Prepared => "raw SQL",
            RawVariant::PerCall => "raw SQL per-call",
            RawVariant::WithStock => "raw SQL + stock()",
        }
    }
}

/// A deadpool of `size` connections to `url`, built by the store's own code.
pub fn build_pool(url: &str, size: usize) -> Result<Pool, String> {
    let cfg: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| format!("{url}: {e}"))?;
    stockroom_pool::store::postgres::connection_pool(cfg, size)
        .map_err(|e| format!("cannot build the connection pool: {e}"))
}

// The statements the store runs for this cycle, from the store itself.
use stockroom_pool::store::postgres::statements::{
    APPLY_COUNTS, CHANGE, END_LEASE, ENTITY_HOLDER, FIND_LEASE, FIND_LEASE_FOR_UPDATE,
    FREE_ENTITIES, HEARTBEAT, HISTORY, HOLD, INSERT_LEASE, INSERT_LEASE_ITEM, LEASE_DATASETS,
    NOT_BEFORE, PICK, RELEASE_ITEMS, STOCK,
};

/// The count deltas of one status change of the bench's state, as the store
/// writes them right before its commit (one statement, keys in order).
async fn apply_counts(tx: &Transaction<'_>, p: bool, from: &str, to: &str) -> Result<(), String> {
    let mut keys = [(from, -1i64), (to, 1i64)];
    keys.sort();
    let types = [pool::TYPE, pool::TYPE];
    let states = [pool::STATE, pool::STATE];
    let statuses = [keys[0].0, keys[1].0];
    let ns = [keys[0].1, keys[1].1];
    query(
        tx,
        p,
        APPLY_COUNTS,
        &[&&types[..], &&states[..], &&statuses[..], &&ns[..]],
    )
    .await?;
    Ok(())
}

/// Runs `sql` prepared (cached per connection) or as text, like the store.
async fn query(
    tx: &Transaction<'_>,
    prepared: bool,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, String> {
    let r = if prepared {
        let st = tx.prepare_cached(sql).await.map_err(|e| db_err(sql, &e))?;
        tx.query(&st, params).await
    } else {
        tx.query(sql, params).await
    };
    r.map_err(|e| db_err(sql, &e))
}

fn db_err(sql: &str, e: &tokio_postgres::Error) -> String {
    let what: String = sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    match e.as_db_error() {
        Some(d) => format!("{what}: {} ({})", d.message(), d.code().code()),
        None => format!("{what}: {e}"),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A bijection on u64 (splitmix64's finaliser): distinct inputs, distinct ids.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A lease id shaped like the pool's (`lease_` + 12 hex digits of ms + 32 hex),
/// unique per (run, task, cycle).
pub fn lease_id(run: u64, task: usize, n: u64) -> String {
    let ms = now_ms() as u64 & 0xffff_ffff_ffff;
    let a = mix((run << 48) ^ ((task as u64) << 32) ^ n);
    format!("lease_{ms:012x}{a:016x}{:016x}", mix(a))
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    i: usize,
) -> Result<T, String> {
    row.try_get(i).map_err(|e| format!("column {i}: {e}"))
}

struct Cycle<'a> {
    prepared: bool,
    holder: &'a str,
    label: &'a str,
    lease_id: String,
}

/// The lease transaction: `(dataset id)` of the granted lease.
async fn lease_tx(tx: &Transaction<'_>, c: &Cycle<'_>) -> Result<String, String> {
    let p = c.prepared;
    // LIMIT 1: the store's `pick` fetches `count` rows (1 here) and widens
    // only when candidates are skipped, which never happens in this bench.
    let rows = query(tx, p, PICK, &[&pool::TYPE, &pool::STATE, &0i64, &1i64]).await?;
    let mut picked = None;
    for r in &rows {
        let seq: i64 = get(r, 0)?;
        let id: String = get(r, 1)?;
        let entities: String = get(r, 3)?;
        let updated_at: i64 = get(r, 4)?;
        let entities: Vec<String> =
            serde_json::from_str(&entities).map_err(|e| format!("entities: {e}"))?;
        let mut free = true;
        for e in &entities {
            if !query(tx, p, ENTITY_HOLDER, &[e]).await?.is_empty() {
                free = false;
                break;
            }
        }
        if free {
            picked = Some((seq, id, entities, updated_at));
            break;
        }
    }
    let Some((seq, ds_id, entities, updated_at)) = picked else {
        return Err("no stock".into());
    };
    let id = &c.lease_id;
    for e in &entities {
        query(tx, p, HOLD, &[e, id, &ds_id]).await?;
    }
    let mut now = now_ms().max(updated_at);
    let row = query(tx, p, NOT_BEFORE, &[&entities]).await?;
    if let Some(r) = row.first() {
        now = now.max(get::<i64>(r, 0)?);
    }
    let ttl: i64 = 120_000;
    let key: Option<String> = None;
    // As the pool stores them: hex SHA-256 of the token and of the request
    // (fixed stand-ins here; the ceiling measures the SQL, not the hashing).
    let token_hash = "0".repeat(64);
    let request_hash = "1".repeat(64);
    query(
        tx,
        p,
        INSERT_LEASE,
        &[
            id,
            &c.holder,
            &c.label,
            &key,
            &ttl,
            &now,
            &(now + ttl),
            &token_hash,
            &request_hash,
        ],
    )
    .await?;
    let lease: Option<&str> = Some(id);
    query(tx, p, CHANGE, &[&"leased", &now, &lease, &seq]).await?;
    query(
        tx,
        p,
        HISTORY,
        &[
            &ds_id,
            &now,
            &Some("ready"),
            &"leased",
            &lease,
            &Some(c.label),
            &"leased",
        ],
    )
    .await?;
    query(
        tx,
        p,
        INSERT_LEASE_ITEM,
        &[id, &ds_id, &"account", &0i64, &0i64, &"quarantine"],
    )
    .await?;
    if query(tx, p, FIND_LEASE, &[id]).await?.is_empty() {
        return Err("a new lease vanished".into());
    }
    let got = query(tx, p, LEASE_DATASETS, &[id]).await?;
    if got.len() != 1 {
        return Err(format!("the new lease has {} datasets", got.len()));
    }
    apply_counts(tx, p, "ready", "leased").await?;
    Ok(ds_id)
}

async fn heartbeat_tx(tx: &Transaction<'_>, c: &Cycle<'_>) -> Result<(), String> {
    let p = c.prepared;
    let id = &c.lease_id;
    let rows = query(tx, p, FIND_LEASE_FOR_UPDATE, &[id]).await?;
    let r = rows.first().ok_or("heartbeat: lease not found")?;
    let status: String = get(r, 1)?;
    let ttl: i64 = get(r, 4)?;
    let expires: i64 = get(r, 6)?;
    let now = now_ms();
    if status != "active" || expires <= now {
        return Err(format!("heartbeat: lease {status}"));
    }
    query(tx, p, HEARTBEAT, &[id, &(now + ttl), &ttl]).await?;
    Ok(())
}

async fn release_tx(tx: &Transaction<'_>, c: &Cycle<'_>) -> Result<(), String> {
    let p = c.prepared;
    let id = &c.lease_id;
    let rows = query(tx, p, FIND_LEASE_FOR_UPDATE, &[id]).await?;
    let r = rows.first().ok_or("release: lease not found")?;
    let status: String = get(r, 1)?;
    let label: String = get(r, 3)?;
    if status != "active" {
        return Err(format!("release: lease {status}"));
    }
    let now = now_ms();
    let items = query(tx, p, RELEASE_ITEMS, &[id]).await?;
    let why = "lease released: passed";
    let mut datasets = Vec::with_capacity(items.len());
    for r in &items {
        let seq: i64 = get(r, 0)?;
        let ds_id: String = get(r, 1)?;
        let status: String = get(r, 4)?;
        let name: String = get(r, 5)?;
        let reusable: bool = get(r, 7)?;
        if status != "leased" || !reusable {
            return Err(format!("release: dataset {status}, reusable {reusable}"));
        }
        let lease: Option<&str> = Some(id);
        query(tx, p, CHANGE, &[&"ready", &now, &lease, &seq]).await?;
        query(
            tx,
            p,
            HISTORY,
            &[
                &ds_id,
                &now,
                &Some("leased"),
                &"ready",
                &lease,
                &Some(label.as_str()),
                &why,
            ],
        )
        .await?;
        datasets.push(json!({"id": ds_id, "name": name, "status": "ready"}));
    }
    query(tx, p, FREE_ENTITIES, &[id, &now]).await?;
    let answer = json!({"lease_id": id, "status": "released", "outcome": "passed",
                        "datasets": datasets})
    .to_string();
    let none: Option<String> = None;
    query(
        tx,
        p,
        END_LEASE,
        &[id, &now, &"passed", &none, &none, &answer],
    )
    .await?;
    apply_counts(tx, p, "leased", "ready").await?;
    Ok(())
}

/// One transaction on a pooled connection; commits when `body` succeeds.
macro_rules! in_tx {
    ($pool:expr, |$tx:ident| $body:expr) => {{
        async {
            let mut client = $pool
                .get()
                .await
                .map_err(|e| format!("no database connection: {e}"))?;
            let $tx = client
                .transaction()
                .await
                .map_err(|e| format!("BEGIN: {e}"))?;
            let value = $body.await?;
            $tx.commit().await.map_err(|e| format!("COMMIT: {e}"))?;
            Ok::<_, String>(value)
        }
        .await
    }};
}

async fn stock_tx(tx: &Transaction<'_>) -> Result<(), String> {
    for sql in STOCK {
        query(tx, true, sql, &[]).await?;
    }
    Ok(())
}

/// One simulated CI job of the ceiling: lease → heartbeat → release, as transactions.
#[allow(clippy::too_many_arguments)]
pub async fn run_raw_client(
    index: usize,
    run: u64,
    db: Pool,
    variant: RawVariant,
    measure_from: Instant,
    end: Instant,
    holders: Arc<Holders>,
) -> ClientResult {
    let mut r = ClientResult::default();
    let holder = json!({"ci": "bench", "repository": "stockroom/pool-bench", "job": "pool-bench",
                        "run_id": index.to_string()})
    .to_string();
    let label = format!("bench stockroom/pool-bench#{index}");
    let mut n = 0u64;
    while Instant::now() < end {
        n += 1;
        let c = Cycle {
            prepared: variant != RawVariant::PerCall,
            holder: &holder,
            label: &label,
            lease_id: lease_id(run, index, n),
        };
        // Acquire (with the pool's known-states read first, in WithStock).
        let t0 = Instant::now();
        if variant == RawVariant::WithStock
            && let Err(e) = in_tx!(db, |tx| stock_tx(&tx))
        {
            r.error(format!("stock: {e}"));
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let dataset_id = match in_tx!(db, |tx| lease_tx(&tx, &c)) {
            Ok(d) => d,
            Err(e) => {
                r.error(format!("acquire: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let t1 = Instant::now();
        if t0 >= measure_from && t1 < end {
            r.acquire_us.push(micros(t1 - t0));
        }
        holders.take(&dataset_id, index, &mut r);
        let mut ok = true;
        let t2 = Instant::now();
        match in_tx!(db, |tx| heartbeat_tx(&tx, &c)) {
            Ok(()) => {
                let t3 = Instant::now();
                if t2 >= measure_from && t3 < end {
                    r.heartbeat_us.push(micros(t3 - t2));
                }
            }
            Err(e) => {
                ok = false;
                r.error(format!("heartbeat: {e}"));
            }
        }
        holders.give_back(&dataset_id, index);
        let t4 = Instant::now();
        let answer = in_tx!(db, |tx| release_tx(&tx, &c));
        let t5 = Instant::now();
        match answer {
            Ok(()) => {
                if t4 >= measure_from && t5 < end {
                    r.release_us.push(micros(t5 - t4));
                }
            }
            Err(e) => {
                ok = false;
                r.error(format!("release: {e}"));
            }
        }
        if ok && t5 >= measure_from && t5 < end {
            r.cycles += 1;
        }
    }
    r
}

/// Samples `pg_stat_activity` of one database every `every` during a window.
pub struct ActivitySampler;

impl ActivitySampler {
    /// Counts of `(state, wait event, statement start)` over the samples in
    /// `from..end`, and the number of samples.
    pub async fn run(
        url: String,
        db: String,
        every: Duration,
        from: Instant,
        end: Instant,
    ) -> Result<(BTreeMap<String, u64>, u64), String> {
        let c = connect(&url).await?;
        let st = c
            .prepare(
                "SELECT coalesce(state, '?'), coalesce(wait_event_type || ':' || wait_event, 'CPU'), \
                 left(regexp_replace(query, '\\s+', ' ', 'g'), 48) \
                 FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() \
                 AND backend_type = 'client backend'",
            )
            .await
            .map_err(|e| format!("pg_stat_activity: {e}"))?;
        let mut out = BTreeMap::new();
        let mut samples = 0u64;
        tokio::time::sleep_until(from).await;
        let mut tick = tokio::time::interval(every);
        while Instant::now() < end {
            tick.tick().await;
            let rows = c
                .query(&st, &[&db])
                .await
                .map_err(|e| format!("pg_stat_activity: {e}"))?;
            samples += 1;
            for r in &rows {
                let state: String = get(r, 0)?;
                let wait: String = get(r, 1)?;
                let key = match state.as_str() {
                    "active" => {
                        let q: String = get(r, 2)?;
                        format!("active {wait} | {q}")
                    }
                    "idle in transaction" => format!("idle in transaction {wait}"),
                    other => other.to_string(),
                };
                *out.entry(key).or_default() += 1;
            }
        }
        Ok((out, samples))
    }
}

/// The activity counts as stderr lines, largest first: average backends per state.
pub fn activity_lines(counts: &BTreeMap<String, u64>, samples: u64) -> Vec<String> {
    let mut v: Vec<(&String, &u64)> = counts.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .take(16)
        .map(|(k, n)| format!("  {:6.2} backends  {k}", **n as f64 / samples.max(1) as f64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_become_database_urls() {
        let s = ServerUrl::parse("postgres://postgres@127.0.0.1:5432").expect("parses");
        assert_eq!(s.admin_url(), "postgres://postgres@127.0.0.1:5432/postgres");
        assert_eq!(
            s.store_url("stockroom_bench_1_2", 16),
            "postgres://postgres@127.0.0.1:5432/stockroom_bench_1_2?pool_size=16"
        );
        let s = ServerUrl::parse("postgresql://u@h:1/admin?connect_timeout=5").expect("parses");
        assert_eq!(s.admin_url(), "postgres://u@h:1/admin?connect_timeout=5");
        assert_eq!(s.db_url("x"), "postgres://u@h:1/x?connect_timeout=5");
        assert_eq!(
            s.store_url("x", 4),
            "postgres://u@h:1/x?connect_timeout=5&pool_size=4"
        );
    }

    #[test]
    fn bad_server_urls_are_refused() {
        assert!(ServerUrl::parse("sqlite:///tmp/x.db").is_err());
        assert!(ServerUrl::parse("postgres:///db").is_err());
        assert!(ServerUrl::parse("postgres://h/db?pool_size=3").is_err());
    }

    #[test]
    fn only_bench_database_names_are_created_or_dropped() {
        assert!(check_name(&db_name(42, 1)).is_ok());
        assert!(check_name("x; DROP DATABASE postgres").is_err());
        assert!(check_name("Upper").is_err());
        assert!(check_name("").is_err());
    }

    #[test]
    fn lease_ids_are_unique_and_shaped_like_the_pools() {
        let mut seen = std::collections::HashSet::new();
        for task in 0..64 {
            for n in 0..64 {
                let id = lease_id(7, task, n);
                assert_eq!(id.len(), "lease_".len() + 12 + 32);
                assert!(id.starts_with("lease_"));
                assert!(seen.insert(id[18..].to_string()));
            }
        }
    }

    #[test]
    fn db_stats_are_per_cycle() {
        let a = DbStats::default();
        let b = DbStats {
            commits: 300.0,
            rollbacks: 0.0,
            returned: 1000.0,
            fetched: 2000.0,
            written: 700.0,
        };
        let d = a.per_cycle(&b, 100);
        assert_eq!(d.commits, 3.0);
        assert_eq!(d.fetched, 20.0);
        assert!(
            d.line()
                .starts_with("per cycle: 3.0 transactions committed")
        );
    }

    #[test]
    fn activity_lines_are_averages_largest_first() {
        let mut m = BTreeMap::new();
        m.insert("idle".to_string(), 10);
        m.insert("active CPU | SELECT".to_string(), 30);
        let lines = activity_lines(&m, 10);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("3.00 backends  active CPU"));
        assert!(lines[1].contains("1.00 backends  idle"));
    }
}
