//! `pool-bench`: lease-cycle throughput and acquire latency of the real
//! `stockroom-pool` binary over loopback (see docs/benchmarks.md, "Pool").
//!
//! For every stock size in `--ready`: the release pool binary is started on a
//! fresh SQLite file, seeded with that many reusable ready datasets through
//! `POST /api/v1/datasets` (large lists, see `pool.rs`), and for every
//! client count in `--clients` that many concurrent simulated CI jobs each
//! loop over one lease cycle: `POST /leases` (1 item, count 1), heartbeat,
//! release `passed` (the dataset goes back to `ready`, so stock never drains).
//! Every configuration runs `--warmup` unmeasured, then `--duration` measured.
//!
//! Checked while running: every call answers as expected (201/200/200, the
//! released dataset is `ready` again), and no dataset is held by two clients
//! at once (a shared map of held dataset ids: inserted when the lease answer
//! arrives, removed just before the release is sent). After each
//! configuration the catalog must show `n` ready and 0 leased. Any error is
//! counted and shown in the row; the exit code is 1 if there was any.
//!
//! With `--store postgres://…` the same runs against PostgreSQL: per
//! `--replicas` count a fresh database, that many pool replicas on it (client
//! `i` talks to replica `i % R`), and with `--raw-sql` the ceiling — the
//! store's lease-cycle statements sent straight through tokio-postgres on as
//! many connections as the replicas have (see `pg.rs`).

mod http;
mod pg;
mod pool;
mod sys;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::http::{ClientKind, Http};
use crate::pg::{RawVariant, ServerUrl};
use crate::sys::CpuSnapshot;

#[derive(Debug, Parser)]
#[command(
    name = "pool-bench",
    about = "Lease-cycle throughput and acquire latency of stockroom-pool over loopback"
)]
struct Args {
    /// The pool binary to benchmark (build it with `cargo build --release -p stockroom-pool`).
    #[arg(long, default_value = "target/release/stockroom-pool")]
    pool_bin: PathBuf,
    /// Concurrent clients, one configuration each.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    clients: Vec<usize>,
    /// Ready datasets in stock; each size gets a fresh store and pool.
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    ready: Vec<u64>,
    /// Measured time per configuration.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured time before each configuration's measurement.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// HTTP client: reqwest (what the sidecar uses) or a minimal raw HTTP/1.1 client.
    #[arg(long, value_enum, default_value = "reqwest")]
    client: ClientKind,
    /// Datasets per `POST /api/v1/datasets` request when seeding (bodies must stay under 1 MiB).
    #[arg(long, default_value_t = 2_000)]
    seed_batch: u64,
    /// STOCKROOM_LOG of the pool (its log goes to pool.log in the work directory).
    #[arg(long, default_value = "info")]
    pool_log: String,
    /// Where the temporary store directories go (default: the system temp directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep stores in DIR/ready-N/ (created if missing, never deleted) and
    /// reuse them: seeding only tops the stock up to N, so a 1 000 000 store is
    /// seeded once and later runs need a quiet machine only while they measure.
    #[arg(long, value_name = "DIR")]
    store_dir: Option<PathBuf>,
    /// Keep the store directories (and pool.log) instead of deleting them.
    #[arg(long)]
    keep: bool,
    /// Print one JSON object per configuration instead of Markdown rows.
    #[arg(long)]
    json: bool,
    /// PostgreSQL server instead of SQLite: `postgres://USER@HOST:PORT[/ADMIN_DB]`.
    /// Every configuration gets a fresh database `stockroom_bench_<pid>_<n>`
    /// (created through ADMIN_DB, default `postgres`; dropped afterwards
    /// unless --keep).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// PostgreSQL: pool replicas sharing the database, one configuration each;
    /// client i talks to replica i % R.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    replicas: Vec<usize>,
    /// PostgreSQL: `pool_size` of each replica's store URL (its connections).
    #[arg(long, default_value_t = 16)]
    pg_pool_size: usize,
    /// PostgreSQL: after each replica count, the raw-SQL ceiling on
    /// R × --pg-pool-size connections (default variant: prepared).
    #[arg(long, value_delimiter = ',', num_args = 0..=1, default_missing_value = "prepared")]
    raw_sql: Vec<RawVariant>,
    /// PostgreSQL: only the raw-SQL ceiling, no pool rows (needs --raw-sql).
    #[arg(long)]
    raw_sql_only: bool,
    /// PostgreSQL: sample pg_stat_activity of the bench database every 20 ms
    /// while measuring and print what the backends did (stderr).
    #[arg(long)]
    pg_activity: bool,
    /// PostgreSQL: `VACUUM ANALYZE` the bench database before each client
    /// count (clears the dead row versions earlier counts left when the
    /// server's autovacuum is off; but statistics taken while no lease
    /// exists can give the ceiling's prepared statements worse generic plans).
    #[arg(long)]
    pg_vacuum: bool,
}

/// What one simulated CI job measured.
#[derive(Default)]
pub(crate) struct ClientResult {
    acquire_us: Vec<u32>,
    heartbeat_us: Vec<u32>,
    release_us: Vec<u32>,
    cycles: u64,
    errors: BTreeMap<String, u64>,
}

impl ClientResult {
    pub(crate) fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }
}

/// Shared by the clients of one configuration: who holds which dataset.
#[derive(Default)]
pub(crate) struct Holders {
    pub(crate) held: Mutex<HashMap<String, usize>>,
    pub(crate) double_leases: AtomicU64,
}

impl Holders {
    /// Client `index` was just handed `dataset_id`: a double lease if
    /// another client still holds it (counted and recorded in `r`).
    pub(crate) fn take(&self, dataset_id: &str, index: usize, r: &mut ClientResult) {
        if let Ok(mut held) = self.held.lock()
            && let Some(other) = held.insert(dataset_id.to_string(), index)
        {
            self.double_leases.fetch_add(1, Ordering::Relaxed);
            r.error(format!(
                "double lease: {dataset_id} handed to client {index} while client {other} held it"
            ));
        }
    }

    /// Client `index` is about to release `dataset_id`: forget the hold
    /// first, so the next holder never races the removal.
    pub(crate) fn give_back(&self, dataset_id: &str, index: usize) {
        if let Ok(mut held) = self.held.lock()
            && held.get(dataset_id) == Some(&index)
        {
            held.remove(dataset_id);
        }
    }
}

pub(crate) fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// The problem `type` of an error answer (its last path segment), or the status.
fn problem_kind(status: u16, body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("type")
                .and_then(Value::as_str)
                .map(|t| t.rsplit('/').next().unwrap_or(t).to_string())
        })
        .map_or_else(|| format!("{status}"), |k| format!("{status} {k}"))
}

async fn run_client(
    index: usize,
    mut http: Http,
    measure_from: Instant,
    end: Instant,
    holders: Arc<Holders>,
) -> ClientResult {
    let mut r = ClientResult::default();
    let lease_body = serde_json::to_vec(&json!({
        "holder": {"ci": "bench", "repository": "stockroom/pool-bench", "job": "pool-bench",
                   "run_id": index.to_string()},
        "ttl_seconds": 120,
        "items": [{"name": "account", "type": pool::TYPE, "state": pool::STATE, "count": 1}],
    }))
    .unwrap_or_default();
    let release_body = br#"{"outcome":"passed"}"#;
    while Instant::now() < end {
        // Acquire.
        let t0 = Instant::now();
        let answer = http.post("/api/v1/leases", &lease_body).await;
        let t1 = Instant::now();
        let (lease_id, dataset_id) = match answer {
            Ok((201, body)) => {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let lease = v.get("lease_id").and_then(Value::as_str);
                let ds = v.pointer("/datasets/0/id").and_then(Value::as_str);
                let count = v
                    .get("datasets")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                match (lease, ds, count) {
                    (Some(l), Some(d), 1) => (l.to_string(), d.to_string()),
                    _ => {
                        r.error("acquire: malformed 201 answer".into());
                        continue;
                    }
                }
            }
            Ok((status, body)) => {
                r.error(format!("acquire: {}", problem_kind(status, &body)));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(e) => {
                r.error(format!("acquire: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if t0 >= measure_from && t1 < end {
            r.acquire_us.push(micros(t1 - t0));
        }
        holders.take(&dataset_id, index, &mut r);
        let mut ok = true;

        // Heartbeat.
        let t2 = Instant::now();
        let answer = http
            .post(&format!("/api/v1/leases/{lease_id}/heartbeat"), b"{}")
            .await;
        let t3 = Instant::now();
        match answer {
            Ok((200, _)) => {
                if t2 >= measure_from && t3 < end {
                    r.heartbeat_us.push(micros(t3 - t2));
                }
            }
            Ok((status, body)) => {
                ok = false;
                r.error(format!("heartbeat: {}", problem_kind(status, &body)));
            }
            Err(e) => {
                ok = false;
                r.error(format!("heartbeat: {e}"));
            }
        }

        // Release: forget the hold first (see `Holders::give_back`).
        holders.give_back(&dataset_id, index);
        let t4 = Instant::now();
        let answer = http
            .post(&format!("/api/v1/leases/{lease_id}/release"), release_body)
            .await;
        let t5 = Instant::now();
        match answer {
            Ok((200, body)) => {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if v.pointer("/datasets/0/status").and_then(Value::as_str) != Some("ready") {
                    ok = false;
                    r.error("release: dataset not back to ready".into());
                }
                if t4 >= measure_from && t5 < end {
                    r.release_us.push(micros(t5 - t4));
                }
            }
            Ok((status, body)) => {
                ok = false;
                r.error(format!("release: {}", problem_kind(status, &body)));
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

/// The `p`-quantile (0..=1) of sorted samples, in milliseconds.
fn quantile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

/// What a PostgreSQL configuration ran: pool replicas or a raw-SQL variant.
#[derive(Debug, Clone, PartialEq)]
struct PgSetup {
    /// `pool ×R` or the raw-SQL variant's name.
    label: String,
    /// Pool replicas (0 for the raw-SQL ceiling).
    replicas: usize,
    /// Database connections at most: R × pool_size, or the ceiling's pool size.
    conns: usize,
    /// The bench database.
    db: String,
}

/// One configuration's figures.
struct Row {
    /// PostgreSQL mode: what ran (None: SQLite, the original table).
    setup: Option<PgSetup>,
    ready: u64,
    clients: usize,
    client: ClientKind,
    seconds: f64,
    cycles: u64,
    acquire: Vec<u32>,
    heartbeat: Vec<u32>,
    release: Vec<u32>,
    errors: BTreeMap<String, u64>,
    double_leases: u64,
    cpu: CpuSnapshot,
    load1: f64,
    rustc: (usize, usize),
    /// PostgreSQL: `pg_stat_database` counts per cycle over the measurement.
    db_stats: Option<pg::DbStats>,
}

impl Row {
    fn cycles_per_s(&self) -> f64 {
        self.cycles as f64 / self.seconds
    }
    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
    fn per_cycle_us(&self, cpu_seconds: f64) -> f64 {
        cpu_seconds * 1e6 / self.cycles.max(1) as f64
    }
    fn other_cores(&self) -> f64 {
        (self.cpu.machine - self.cpu.pool - self.cpu.bench - self.cpu.postgres).max(0.0)
            / self.seconds
    }

    /// Cores used by each pool thread name over the measurement.
    fn thread_cores(&self) -> BTreeMap<String, f64> {
        self.cpu
            .pool_threads
            .iter()
            .map(|(k, v)| (k.clone(), v / self.seconds))
            .collect()
    }

    /// One line for stderr: where the CPU went.
    fn cpu_line(&self) -> String {
        let threads: Vec<String> = self
            .thread_cores()
            .iter()
            .filter(|(_, c)| **c >= 0.005)
            .map(|(k, c)| format!("{k} {c:.2}"))
            .collect();
        let postgres = match &self.setup {
            None => String::new(),
            Some(s) => format!(
                ", postgres {:.2} (backends of {} {:.2}, other postgres processes {:.2})",
                self.cpu.postgres / self.seconds,
                s.db,
                self.cpu.postgres_ours / self.seconds,
                (self.cpu.postgres - self.cpu.postgres_ours) / self.seconds
            ),
        };
        let setup = self.setup.as_ref().map_or(String::new(), |s| {
            format!("{} ({} conns) ", s.label, s.conns)
        });
        format!(
            "pool-bench: {setup}ready {} clients {}: cores used: pool {:.2} ({}), bench {:.2}{postgres}, other {:.2}",
            self.ready,
            self.clients,
            self.cpu.pool / self.seconds,
            threads.join(", "),
            self.cpu.bench / self.seconds,
            self.other_cores()
        )
    }

    fn pg_markdown_header() -> &'static str {
        "| setup | db conns | ready | clients | cycles/s | acquire p50 | acquire p99 | acquire max | heartbeat p50 | release p50 | errors | pool CPU/cycle | postgres CPU/cycle | bench CPU/cycle | other CPU | load1 | rustc |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"
    }

    fn errors_cell(&self) -> String {
        if self.error_count() == 0 {
            "0".to_string()
        } else {
            format!(
                "**{}** ({} double leases)",
                self.error_count(),
                self.double_leases
            )
        }
    }

    fn pg_markdown(&self, s: &PgSetup) -> String {
        format!(
            "| {} | {} | {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.1} ms | {:.2} ms | {:.2} ms | {} | {:.0} µs | {:.0} µs | {:.0} µs | {:.2} cores | {:.2} | {}/{} |",
            s.label,
            s.conns,
            self.ready,
            self.clients,
            self.cycles_per_s(),
            quantile_ms(&self.acquire, 0.50),
            quantile_ms(&self.acquire, 0.99),
            quantile_ms(&self.acquire, 1.0),
            quantile_ms(&self.heartbeat, 0.50),
            quantile_ms(&self.release, 0.50),
            self.errors_cell(),
            self.per_cycle_us(self.cpu.pool),
            self.per_cycle_us(self.cpu.postgres),
            self.per_cycle_us(self.cpu.bench),
            self.other_cores(),
            self.load1,
            self.rustc.0,
            self.rustc.1,
        )
    }

    fn markdown_header() -> &'static str {
        "| ready | clients | client | cycles/s | acquire p50 | acquire p99 | acquire max | heartbeat p50 | release p50 | errors | pool CPU/cycle | bench CPU/cycle | other CPU | load1 | rustc |\n\
         |---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
    }

    fn markdown(&self) -> String {
        if let Some(s) = &self.setup {
            return self.pg_markdown(s);
        }
        let errors = self.errors_cell();
        format!(
            "| {} | {} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.1} ms | {:.2} ms | {:.2} ms | {} | {:.0} µs | {:.0} µs | {:.2} cores | {:.2} | {}/{} |",
            self.ready,
            self.clients,
            self.client.name(),
            self.cycles_per_s(),
            quantile_ms(&self.acquire, 0.50),
            quantile_ms(&self.acquire, 0.99),
            quantile_ms(&self.acquire, 1.0),
            quantile_ms(&self.heartbeat, 0.50),
            quantile_ms(&self.release, 0.50),
            errors,
            self.per_cycle_us(self.cpu.pool),
            self.per_cycle_us(self.cpu.bench),
            self.other_cores(),
            self.load1,
            self.rustc.0,
            self.rustc.1,
        )
    }

    fn json(&self) -> Value {
        let ms = |v: &[u32], p| quantile_ms(v, p);
        let mut out = json!({
            "ready": self.ready,
            "clients": self.clients,
            "client": self.client.name(),
            "seconds": self.seconds,
            "cycles": self.cycles,
            "cycles_per_s": self.cycles_per_s(),
            "acquire_ms": {"p50": ms(&self.acquire, 0.5), "p90": ms(&self.acquire, 0.9),
                           "p99": ms(&self.acquire, 0.99), "max": ms(&self.acquire, 1.0),
                           "samples": self.acquire.len()},
            "heartbeat_ms": {"p50": ms(&self.heartbeat, 0.5), "p99": ms(&self.heartbeat, 0.99)},
            "release_ms": {"p50": ms(&self.release, 0.5), "p99": ms(&self.release, 0.99)},
            "errors": self.errors,
            "double_leases": self.double_leases,
            "cpu_seconds": {"pool": self.cpu.pool, "bench": self.cpu.bench,
                            "machine_busy": self.cpu.machine, "cpus": sys::cpus()},
            "cpu_us_per_cycle": {"pool": self.per_cycle_us(self.cpu.pool),
                                 "bench": self.per_cycle_us(self.cpu.bench)},
            "pool_thread_cpu_cores": self.thread_cores(),
            "other_cpu_cores": self.other_cores(),
            "loadavg1": self.load1,
            "rustc_processes": [self.rustc.0, self.rustc.1],
        });
        if let (Some(s), Some(o)) = (&self.setup, out.as_object_mut()) {
            o.insert("setup".into(), json!(s.label));
            o.insert("replicas".into(), json!(s.replicas));
            o.insert("db_connections".into(), json!(s.conns));
            o.insert("database".into(), json!(s.db));
            o.insert(
                "postgres_cpu_seconds".into(),
                json!({"all": self.cpu.postgres, "backends_of_the_bench_db": self.cpu.postgres_ours}),
            );
            o.insert(
                "postgres_cpu_us_per_cycle".into(),
                json!(self.per_cycle_us(self.cpu.postgres)),
            );
            if let Some(d) = &self.db_stats {
                o.insert(
                    "pg_stat_database_per_cycle".into(),
                    json!({"commits": d.commits, "rollbacks": d.rollbacks,
                           "tup_returned": d.returned, "tup_fetched": d.fetched,
                           "tup_written": d.written}),
                );
            }
        }
        out
    }
}

/// The catalog's `(ready, leased)` counts of the benchmark state.
async fn stock_counts(http: &Http) -> Result<(u64, u64), String> {
    let (status, body) = http.get("/api/v1/catalog").await?;
    if status != 200 {
        return Err(format!("GET /api/v1/catalog answered {status}"));
    }
    let v: Value = serde_json::from_slice(&body).map_err(|e| format!("catalog: {e}"))?;
    let stock = v
        .get("types")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| t.get("type").and_then(Value::as_str) == Some(pool::TYPE))
        .flat_map(|t| {
            t.get("states")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .find(|s| s.get("state").and_then(Value::as_str) == Some(pool::STATE))
        .and_then(|s| s.get("stock"))
        .ok_or_else(|| format!("the catalog has no {}/{}", pool::TYPE, pool::STATE))?;
    let n = |k: &str| stock.get(k).and_then(Value::as_u64).unwrap_or(0);
    Ok((n("ready"), n("leased")))
}

/// What the clients of one configuration talk to.
enum Target {
    /// Pool processes over HTTP: client `i` talks to `addrs[i % addrs.len()]`.
    Pools {
        addrs: Vec<SocketAddr>,
        pids: Vec<u32>,
    },
    /// The raw-SQL ceiling: the store's statements on a connection pool.
    Raw {
        db: deadpool_postgres::Pool,
        variant: RawVariant,
        /// The bench database's URL (for the final counts).
        url: String,
    },
}

/// Numbers the raw-SQL runs of this process, so their lease ids never repeat.
static RAW_RUNS: AtomicU64 = AtomicU64::new(0);

async fn run_configuration(
    args: &Args,
    target: &Target,
    setup: Option<PgSetup>,
    server: Option<&ServerUrl>,
    ready: u64,
    clients: usize,
) -> Result<Row, String> {
    if let (Some(s), Some(server)) = (&setup, server)
        && args.pg_vacuum
    {
        pg::vacuum(&server.db_url(&s.db)).await?;
    }
    let rustc_before = sys::rustc_count();
    let holders = Arc::new(Holders::default());
    // Connections are made by the first request, before the measurement starts.
    let start = Instant::now() + Duration::from_millis(100);
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let mut tasks = Vec::with_capacity(clients);
    let run_no = RAW_RUNS.fetch_add(1, Ordering::Relaxed);
    for i in 0..clients {
        let holders = Arc::clone(&holders);
        match target {
            Target::Pools { addrs, .. } => {
                let addr = addrs
                    .get(i % addrs.len().max(1))
                    .copied()
                    .ok_or("no pool address")?;
                let http = Http::new(args.client, addr)?;
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep_until(start).await;
                    run_client(i, http, measure_from, end, holders).await
                }));
            }
            Target::Raw { db, variant, .. } => {
                let (db, variant) = (db.clone(), *variant);
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep_until(start).await;
                    pg::run_raw_client(i, run_no, db, variant, measure_from, end, holders).await
                }));
            }
        }
    }
    let pids = match target {
        Target::Pools { pids, .. } => pids.clone(),
        Target::Raw { .. } => Vec::new(),
    };
    let pg_db = setup.as_ref().map(|s| s.db.clone());
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from).await;
        let a = CpuSnapshot::take(&pids, pg_db.as_deref());
        tokio::time::sleep_until(end).await;
        let b = CpuSnapshot::take(&pids, pg_db.as_deref());
        (a.until(&b), sys::loadavg1().unwrap_or(f64::NAN))
    });
    let activity = match (&setup, server) {
        (Some(s), Some(server)) if args.pg_activity => {
            Some(tokio::spawn(pg::ActivitySampler::run(
                server.db_url(&s.db),
                s.db.clone(),
                Duration::from_millis(20),
                measure_from,
                end,
            )))
        }
        _ => None,
    };
    let stats = match (&setup, server) {
        (Some(s), Some(server)) => {
            let (url, db) = (server.db_url(&s.db), s.db.clone());
            Some(tokio::spawn(async move {
                tokio::time::sleep_until(measure_from).await;
                let a = pg::DbStats::take(&url, &db).await?;
                tokio::time::sleep_until(end).await;
                let b = pg::DbStats::take(&url, &db).await?;
                Ok::<_, String>((a, b))
            }))
        }
        _ => None,
    };
    let mut row = Row {
        setup,
        ready,
        clients,
        client: args.client,
        seconds: args.duration.as_secs_f64(),
        cycles: 0,
        acquire: Vec::new(),
        heartbeat: Vec::new(),
        release: Vec::new(),
        errors: BTreeMap::new(),
        double_leases: 0,
        cpu: CpuSnapshot::default(),
        load1: f64::NAN,
        rustc: (rustc_before, 0),
        db_stats: None,
    };
    for t in tasks {
        let r = t.await.map_err(|e| format!("a client task failed: {e}"))?;
        row.cycles += r.cycles;
        row.acquire.extend(r.acquire_us);
        row.heartbeat.extend(r.heartbeat_us);
        row.release.extend(r.release_us);
        for (k, n) in r.errors {
            *row.errors.entry(k).or_default() += n;
        }
    }
    (row.cpu, row.load1) = sampler
        .await
        .map_err(|e| format!("the CPU sampler failed: {e}"))?;
    row.rustc.1 = sys::rustc_count();
    row.double_leases = holders.double_leases.load(Ordering::Relaxed);
    row.acquire.sort_unstable();
    row.heartbeat.sort_unstable();
    row.release.sort_unstable();
    if let Some(s) = stats {
        match s.await {
            Ok(Ok((a, b))) => row.db_stats = Some(a.per_cycle(&b, row.cycles)),
            Ok(Err(e)) => eprintln!("pool-bench: pg_stat_database: {e}"),
            Err(e) => eprintln!("pool-bench: pg_stat_database reader failed: {e}"),
        }
    }
    if let Some(a) = activity {
        match a.await {
            Ok(Ok((counts, samples))) => {
                eprintln!(
                    "pool-bench: pg_stat_activity, {samples} samples (average client backends per state):"
                );
                for l in pg::activity_lines(&counts, samples) {
                    eprintln!("{l}");
                }
            }
            Ok(Err(e)) => eprintln!("pool-bench: activity sampler: {e}"),
            Err(e) => eprintln!("pool-bench: activity sampler failed: {e}"),
        }
    }
    // Nothing may stay leased, and the stock is whole again.
    let after = match target {
        Target::Pools { addrs, .. } => {
            let addr = addrs.first().copied().ok_or("no pool address")?;
            let (r, l) = stock_counts(&Http::new(args.client, addr)?).await?;
            (r == ready && l == 0).then_some(()).ok_or(format!(
                "after the run: {r} ready, {l} leased (expected {ready}, 0)"
            ))
        }
        Target::Raw { url, .. } => {
            let (r, l, a, h) = pg::sql_counts(url).await?;
            (r == ready && l == 0 && a == 0 && h == 0)
                .then_some(())
                .ok_or(format!(
                    "after the run: {r} ready, {l} leased, {a} active leases, {h} entity holds (expected {ready}, 0, 0, 0)"
                ))
        }
    };
    if let Err(e) = after {
        *row.errors.entry(e).or_default() += 1;
    }
    Ok(row)
}

/// Prints a row as configured; false when it had errors.
fn emit(args: &Args, row: &Row) -> bool {
    let clean = row.error_count() == 0;
    if !clean {
        eprintln!("pool-bench: errors: {:?}", row.errors);
    }
    eprintln!("{}", row.cpu_line());
    if let Some(s) = &row.db_stats {
        eprintln!("pool-bench: pg_stat_database {}", s.line());
    }
    if args.json {
        println!("{}", row.json());
    } else {
        println!("{}", row.markdown());
    }
    clean
}

async fn run(args: &Args) -> Result<bool, String> {
    if !args.pool_bin.is_file() {
        return Err(format!(
            "{} not found; build it with `cargo build --release -p stockroom-pool` or pass --pool-bin",
            args.pool_bin.display()
        ));
    }
    if let Some(url) = &args.store {
        return run_pg(args, &ServerUrl::parse(url)?).await;
    }
    if args.replicas != [1]
        || !args.raw_sql.is_empty()
        || args.raw_sql_only
        || args.pg_activity
        || args.pg_vacuum
    {
        return Err(
            "--replicas, --raw-sql, --raw-sql-only, --pg-activity and --pg-vacuum need --store postgres://…"
                .into(),
        );
    }
    let tmp = match &args.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir(),
    };
    let mut clean = true;
    if !args.json {
        println!("{}", Row::markdown_header());
    }
    for &ready in &args.ready {
        let (dir, kept) = match &args.store_dir {
            Some(base) => {
                let d = base.join(format!("ready-{ready}"));
                std::fs::create_dir_all(&d)
                    .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
                (None, d)
            }
            None => {
                let d = tempfile::Builder::new()
                    .prefix("pool-bench-")
                    .tempdir_in(&tmp)
                    .map_err(|e| format!("cannot create a directory in {}: {e}", tmp.display()))?;
                let path = d.path().to_path_buf();
                (Some(d), path)
            }
        };
        let db = kept.join("pool.db");
        let _ = std::fs::remove_file(kept.join("ready"));
        let p = pool::PoolProcess::start(&args.pool_bin, &db, &kept, &args.pool_log).await?;
        eprintln!(
            "pool-bench: pool pid {} on {}, store {}",
            p.pid,
            p.addr,
            db.display()
        );
        let have = match stock_counts(&Http::new(args.client, p.addr)?).await {
            Ok((r, 0)) if r <= ready => r,
            Ok((r, l)) => {
                return Err(format!(
                    "{} holds {r} ready and {l} leased datasets; expected at most {ready}, 0",
                    db.display()
                ));
            }
            // A new store does not know the state yet.
            Err(_) => 0,
        };
        let took = pool::seed(p.addr, have, ready, args.seed_batch.max(1)).await?;
        eprintln!(
            "pool-bench: seeded {} reusable ready datasets in {:.1} s ({have} were there)",
            ready - have,
            took.as_secs_f64()
        );
        let (r, l) = stock_counts(&Http::new(args.client, p.addr)?).await?;
        if r != ready || l != 0 {
            return Err(format!(
                "after seeding the catalog shows {r} ready, {l} leased; expected {ready}, 0"
            ));
        }
        let target = Target::Pools {
            addrs: vec![p.addr],
            pids: vec![p.pid],
        };
        for &clients in &args.clients {
            let row = run_configuration(args, &target, None, None, ready, clients).await?;
            clean &= emit(args, &row);
        }
        let stopped = p.stop().await;
        if let Some(d) = dir
            && args.keep
        {
            eprintln!("pool-bench: kept {}", d.keep().display());
        }
        stopped?;
    }
    Ok(clean)
}

/// Starts `replicas` pool processes on database `db` (each in `dir/replica-K`)
/// and seeds `ready` datasets through the first.
async fn start_seeded(
    args: &Args,
    server: &ServerUrl,
    db: &str,
    replicas: usize,
    ready: u64,
    dir: &std::path::Path,
) -> Result<Vec<pool::PoolProcess>, String> {
    let store = server.store_url(db, args.pg_pool_size);
    let mut procs = Vec::with_capacity(replicas);
    for k in 0..replicas {
        let d = dir.join(format!("replica-{k}"));
        std::fs::create_dir_all(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        let p = pool::PoolProcess::start_store(&args.pool_bin, &store, &d, &args.pool_log).await?;
        eprintln!(
            "pool-bench: replica {k} pid {} on {}, store {store}",
            p.pid, p.addr
        );
        procs.push(p);
    }
    let first = procs.first().ok_or("no replica")?.addr;
    let took = pool::seed(first, 0, ready, args.seed_batch.max(1)).await?;
    eprintln!(
        "pool-bench: seeded {ready} reusable ready datasets in {:.1} s",
        took.as_secs_f64()
    );
    let (r, l) = stock_counts(&Http::new(args.client, first)?).await?;
    if r != ready || l != 0 {
        return Err(format!(
            "after seeding the catalog shows {r} ready, {l} leased; expected {ready}, 0"
        ));
    }
    Ok(procs)
}

async fn stop_all(procs: Vec<pool::PoolProcess>) -> Result<(), String> {
    let mut result = Ok(());
    for p in procs {
        if let Err(e) = p.stop().await {
            result = Err(e);
        }
    }
    result
}

/// Runs `target` at every `--clients` count; false if any row had errors.
async fn every_client_count(
    args: &Args,
    target: &Target,
    setup: &PgSetup,
    server: &ServerUrl,
    ready: u64,
    rows: &mut Vec<Row>,
) -> Result<bool, String> {
    let mut clean = true;
    for &clients in &args.clients {
        let row = run_configuration(
            args,
            target,
            Some(setup.clone()),
            Some(server),
            ready,
            clients,
        )
        .await?;
        clean &= emit(args, &row);
        rows.push(row);
    }
    Ok(clean)
}

/// One PostgreSQL configuration on its fresh database: `replicas` pools, or
/// (with `variant`) the raw-SQL ceiling on `replicas × pool_size` connections.
async fn pg_configuration(
    args: &Args,
    server: &ServerUrl,
    db: &str,
    ready: u64,
    replicas: usize,
    variant: Option<RawVariant>,
    rows: &mut Vec<Row>,
) -> Result<bool, String> {
    let tmp = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("pool-bench-pg-")
        .tempdir_in(&tmp)
        .map_err(|e| format!("cannot create a directory in {}: {e}", tmp.display()))?;
    let conns = replicas * args.pg_pool_size;
    let result = async {
        let mut clean = true;
        match variant {
            None => {
                let procs = start_seeded(args, server, db, replicas, ready, dir.path()).await?;
                let target = Target::Pools {
                    addrs: procs.iter().map(|p| p.addr).collect(),
                    pids: procs.iter().map(|p| p.pid).collect(),
                };
                let setup = PgSetup {
                    label: format!("pool ×{replicas}"),
                    replicas,
                    conns,
                    db: db.to_string(),
                };
                clean &= every_client_count(args, &target, &setup, server, ready, rows).await?;
                stop_all(procs).await?;
            }
            Some(variant) => {
                // Seeded through one replica (the rows the pool writes), which then stops.
                let procs = start_seeded(args, server, db, 1, ready, dir.path()).await?;
                stop_all(procs).await?;
                let url = server.db_url(db);
                let target = Target::Raw {
                    db: pg::build_pool(&url, conns)?,
                    variant,
                    url,
                };
                let setup = PgSetup {
                    label: variant.name().to_string(),
                    replicas: 0,
                    conns,
                    db: db.to_string(),
                };
                clean &= every_client_count(args, &target, &setup, server, ready, rows).await?;
                if let Target::Raw { db, .. } = target {
                    db.close();
                }
            }
        }
        Ok::<bool, String>(clean)
    }
    .await;
    if args.keep {
        eprintln!(
            "pool-bench: kept database {db} and {}",
            dir.keep().display()
        );
    } else if let Err(e) = pg::drop_db(server, db).await {
        eprintln!("pool-bench: {e}");
    }
    result
}

/// `--store postgres://…`: pools ×R and the raw-SQL ceiling, each on a fresh database.
async fn run_pg(args: &Args, server: &ServerUrl) -> Result<bool, String> {
    if args.store_dir.is_some() {
        return Err("--store-dir is for SQLite; PostgreSQL runs use fresh databases".into());
    }
    if args.replicas.contains(&0) || args.pg_pool_size == 0 {
        return Err("--replicas and --pg-pool-size must be positive".into());
    }
    if args.raw_sql_only && args.raw_sql.is_empty() {
        return Err("--raw-sql-only needs --raw-sql".into());
    }
    if !args.json {
        println!("{}", Row::pg_markdown_header());
    }
    let mut clean = true;
    let mut rows = Vec::new();
    let mut n = 0u32;
    let mut variants = args.raw_sql.clone();
    variants.sort();
    variants.dedup();
    for &ready in &args.ready {
        for &replicas in &args.replicas {
            let runs = (!args.raw_sql_only)
                .then_some(None)
                .into_iter()
                .chain(variants.iter().map(|v| Some(*v)));
            for variant in runs {
                n += 1;
                let db = pg::db_name(std::process::id(), n);
                pg::create_db(server, &db).await?;
                eprintln!("pool-bench: database {db}");
                clean &= pg_configuration(args, server, &db, ready, replicas, variant, &mut rows)
                    .await?;
            }
        }
    }
    if !args.json {
        let summary = side_by_side(&rows);
        if !summary.is_empty() {
            println!();
            println!("{summary}");
        }
    }
    Ok(clean)
}

/// Pool ×R next to the ceiling on the same number of connections, per client count.
fn side_by_side(rows: &[Row]) -> String {
    let mut out = vec![
        "| ready | replicas | db conns | clients | pool cycles/s | ceiling cycles/s | pool / ceiling | pool acquire p50 | ceiling acquire p50 | pool acquire p99 | ceiling acquire p99 | ≥ 50 % |".to_string(),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|".to_string(),
    ];
    for p in rows {
        let Some(ps) = p.setup.as_ref().filter(|s| s.replicas > 0) else {
            continue;
        };
        // The ceiling: prepared statements if run, else the first variant run.
        let ceiling = rows
            .iter()
            .filter(|c| {
                c.ready == p.ready
                    && c.clients == p.clients
                    && c.setup
                        .as_ref()
                        .is_some_and(|cs| cs.replicas == 0 && cs.conns == ps.conns)
            })
            .min_by_key(|c| {
                c.setup
                    .as_ref()
                    .map(|cs| cs.label != RawVariant::Prepared.name())
            });
        let Some(c) = ceiling else { continue };
        let ratio = p.cycles_per_s() / c.cycles_per_s();
        out.push(format!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} % | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
            p.ready,
            ps.replicas,
            ps.conns,
            p.clients,
            p.cycles_per_s(),
            c.cycles_per_s(),
            ratio * 100.0,
            quantile_ms(&p.acquire, 0.5),
            quantile_ms(&c.acquire, 0.5),
            quantile_ms(&p.acquire, 0.99),
            quantile_ms(&c.acquire, 0.99),
            if ratio >= 0.5 { "met" } else { "**not met**" },
        ));
    }
    if out.len() == 2 {
        String::new()
    } else {
        out.join("\n")
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("pool-bench: the run had errors; its figures do not count");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("pool-bench: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dataset_handed_to_a_second_holder_is_a_double_lease() {
        let holders = Holders::default();
        let mut r = ClientResult::default();
        holders.take("ds_a", 1, &mut r);
        holders.take("ds_b", 2, &mut r);
        assert!(r.errors.is_empty());
        holders.take("ds_a", 3, &mut r);
        assert_eq!(holders.double_leases.load(Ordering::Relaxed), 1);
        assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
        // Client 1 giving back what client 3 now holds does not clear 3's hold.
        holders.give_back("ds_a", 1);
        holders.take("ds_a", 4, &mut r);
        assert_eq!(holders.double_leases.load(Ordering::Relaxed), 2);
        // Given back by its holder, the next holder is fine.
        holders.give_back("ds_b", 2);
        holders.take("ds_b", 5, &mut r);
        assert_eq!(holders.double_leases.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(quantile_ms(&v, 0.5), 50.0);
        assert_eq!(quantile_ms(&v, 0.99), 99.0);
        assert_eq!(quantile_ms(&v, 1.0), 100.0);
        assert!(quantile_ms(&[], 0.5).is_nan());
    }

    #[test]
    fn postgres_flags_parse() {
        let a = Args::try_parse_from([
            "pool-bench",
            "--store",
            "postgres://postgres@127.0.0.1:5432",
            "--replicas",
            "1,2",
            "--raw-sql",
        ])
        .expect("parses");
        assert_eq!(a.replicas, vec![1, 2]);
        assert_eq!(a.raw_sql, vec![RawVariant::Prepared]);
        assert_eq!(a.pg_pool_size, 16);
        assert!(!a.pg_vacuum && !a.pg_activity && !a.raw_sql_only);
        let a = Args::try_parse_from([
            "pool-bench",
            "--raw-sql",
            "per-call,with-stock",
            "--pg-pool-size",
            "8",
        ])
        .expect("parses");
        assert_eq!(a.raw_sql, vec![RawVariant::PerCall, RawVariant::WithStock]);
        assert_eq!(a.pg_pool_size, 8);
        // SQLite defaults are unchanged.
        let a = Args::try_parse_from(["pool-bench"]).expect("parses");
        assert!(a.store.is_none() && a.raw_sql.is_empty());
        assert_eq!(a.replicas, vec![1]);
        assert_eq!(a.clients, vec![1, 16, 64, 256]);
    }

    fn row(setup: Option<PgSetup>, clients: usize, cycles: u64, acquire: Vec<u32>) -> Row {
        Row {
            setup,
            ready: 10,
            clients,
            client: ClientKind::Reqwest,
            seconds: 10.0,
            cycles,
            acquire,
            heartbeat: Vec::new(),
            release: Vec::new(),
            errors: BTreeMap::new(),
            double_leases: 0,
            cpu: CpuSnapshot::default(),
            load1: 0.0,
            rustc: (0, 0),
            db_stats: None,
        }
    }

    fn setup(label: &str, replicas: usize, conns: usize) -> Option<PgSetup> {
        Some(PgSetup {
            label: label.into(),
            replicas,
            conns,
            db: "d".into(),
        })
    }

    #[test]
    fn side_by_side_pairs_pools_with_the_ceiling_on_as_many_connections() {
        let rows = vec![
            row(setup("pool ×1", 1, 16), 64, 6_000, vec![1000, 2000]),
            row(setup("pool ×2", 2, 32), 64, 4_000, vec![1000]),
            row(setup("raw SQL per-call", 0, 16), 64, 9_000, vec![500]),
            row(setup("raw SQL", 0, 16), 64, 10_000, vec![500]),
            row(setup("raw SQL", 0, 32), 64, 10_000, vec![500]),
        ];
        let t = side_by_side(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(
            lines[2].starts_with("| 10 | 1 | 16 | 64 | 600 | 1000 | 60 % | 1.00 ms | 0.50 ms | 2.00 ms | 0.50 ms | met |"),
            "{t}"
        );
        assert!(
            lines[3].contains("| 40 % |") && lines[3].ends_with("**not met** |"),
            "{t}"
        );
        assert!(side_by_side(&rows[..2]).is_empty());
    }

    #[test]
    fn problem_kind_names_the_type() {
        let body = br#"{"type":"https://stockroom.dev/problems/no-stock","status":503}"#;
        assert_eq!(problem_kind(503, body), "503 no-stock");
        assert_eq!(problem_kind(500, b"oops"), "500");
    }
}
