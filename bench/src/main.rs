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

mod http;
mod pool;
mod sys;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::http::{ClientKind, Http};
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
}

/// What one simulated CI job measured.
#[derive(Default)]
struct ClientResult {
    acquire_us: Vec<u32>,
    heartbeat_us: Vec<u32>,
    release_us: Vec<u32>,
    cycles: u64,
    errors: BTreeMap<String, u64>,
}

impl ClientResult {
    fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }
}

/// Shared by the clients of one configuration: who holds which dataset.
#[derive(Default)]
struct Holders {
    held: Mutex<HashMap<String, usize>>,
    double_leases: AtomicU64,
}

fn micros(d: Duration) -> u32 {
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
        if let Ok(mut held) = holders.held.lock()
            && let Some(other) = held.insert(dataset_id.clone(), index)
        {
            holders.double_leases.fetch_add(1, Ordering::Relaxed);
            r.error(format!(
                "double lease: {dataset_id} handed to client {index} while client {other} held it"
            ));
        }
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

        // Release: forget the hold first, so the next holder never races our removal.
        if let Ok(mut held) = holders.held.lock()
            && held.get(&dataset_id) == Some(&index)
        {
            held.remove(&dataset_id);
        }
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

/// One configuration's figures.
struct Row {
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
        (self.cpu.machine - self.cpu.pool - self.cpu.bench).max(0.0) / self.seconds
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
        format!(
            "pool-bench: ready {} clients {}: cores used: pool {:.2} ({}), bench {:.2}, other {:.2}",
            self.ready,
            self.clients,
            self.cpu.pool / self.seconds,
            threads.join(", "),
            self.cpu.bench / self.seconds,
            self.other_cores()
        )
    }

    fn markdown_header() -> &'static str {
        "| ready | clients | client | cycles/s | acquire p50 | acquire p99 | acquire max | heartbeat p50 | release p50 | errors | pool CPU/cycle | bench CPU/cycle | other CPU | load1 | rustc |\n\
         |---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
    }

    fn markdown(&self) -> String {
        let errors = if self.error_count() == 0 {
            "0".to_string()
        } else {
            format!(
                "**{}** ({} double leases)",
                self.error_count(),
                self.double_leases
            )
        };
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
        json!({
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
        })
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

async fn run_configuration(
    args: &Args,
    p: &pool::PoolProcess,
    ready: u64,
    clients: usize,
) -> Result<Row, String> {
    let rustc_before = sys::rustc_count();
    let holders = Arc::new(Holders::default());
    // Connections are made by the first request, before the measurement starts.
    let start = Instant::now() + Duration::from_millis(100);
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let mut tasks = Vec::with_capacity(clients);
    for i in 0..clients {
        let http = Http::new(args.client, p.addr)?;
        let holders = Arc::clone(&holders);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start).await;
            run_client(i, http, measure_from, end, holders).await
        }));
    }
    let pid = p.pid;
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from).await;
        let a = CpuSnapshot::take(pid);
        tokio::time::sleep_until(end).await;
        let b = CpuSnapshot::take(pid);
        (a.until(&b), sys::loadavg1().unwrap_or(f64::NAN))
    });
    let mut row = Row {
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
    // Nothing may stay leased, and the stock is whole again.
    let (r, l) = stock_counts(&Http::new(args.client, p.addr)?).await?;
    if r != ready || l != 0 {
        *row.errors
            .entry(format!(
                "after the run: {r} ready, {l} leased (expected {ready}, 0)"
            ))
            .or_default() += 1;
    }
    Ok(row)
}

async fn run(args: &Args) -> Result<bool, String> {
    if !args.pool_bin.is_file() {
        return Err(format!(
            "{} not found; build it with `cargo build --release -p stockroom-pool` or pass --pool-bin",
            args.pool_bin.display()
        ));
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
        for &clients in &args.clients {
            let row = run_configuration(args, &p, ready, clients).await?;
            if row.error_count() > 0 {
                clean = false;
                eprintln!("pool-bench: errors: {:?}", row.errors);
            }
            eprintln!("{}", row.cpu_line());
            if args.json {
                println!("{}", row.json());
            } else {
                println!("{}", row.markdown());
            }
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
    fn quantiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(quantile_ms(&v, 0.5), 50.0);
        assert_eq!(quantile_ms(&v, 0.99), 99.0);
        assert_eq!(quantile_ms(&v, 1.0), 100.0);
        assert!(quantile_ms(&[], 0.5).is_nan());
    }

    #[test]
    fn problem_kind_names_the_type() {
        let body = br#"{"type":"https://stockroom.dev/problems/no-stock","status":503}"#;
        assert_eq!(problem_kind(503, body), "503 no-stock");
        assert_eq!(problem_kind(500, b"oops"), "500");
    }
}
