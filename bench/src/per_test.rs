//! `pool-bench per-test`: what isolated state costs per test (docs/benchmarks.md,
//! "Per-test isolation"), side by side in one run on one machine, for
//! `--tests` tests at each `--workers` count:
//!
//! 1. `agent+reserve`: take + done through a real `stockroom agent` whose
//!    reserve holds every test's dataset (one lease up front);
//! 2. `agent`: take + done through the agent without a reserve (each take
//!    leases from the pool, each done releases);
//! 3. `pool`: lease + release straight against the pool (with its lease token);
//! 4. `pg-template`: `CREATE DATABASE … TEMPLATE` (a small schema, 1 000 rows)
//!    then `DROP DATABASE`, on `--postgres` (skipped without it);
//! 5. `generator-chain`: the demo's generator chain replayed per test
//!    (customer new → verify-email → add-card → order placed), the demo
//!    services in-process at `--chain-latency` per call, `--chain-tests` tests.
//!
//! A test's time is from its first request to the answer of its last. The
//! pool, the agent and the clients share the machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::pg::{self, ServerUrl};
use crate::pool::{self, PoolProcess};
use crate::report::quantile_ms;
use crate::sys;

#[derive(Debug, Args)]
pub(crate) struct PerTestArgs {
    /// The sidecar binary (build it with `cargo build --release -p stockroom`).
    #[arg(long, default_value = "target/release/stockroom")]
    pub(crate) stockroom_bin: PathBuf,
    /// Tests per configuration.
    #[arg(long, default_value_t = 1000)]
    pub(crate) tests: usize,
    /// Concurrent workers, one configuration each.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    pub(crate) workers: Vec<usize>,
    /// PostgreSQL server for the template-clone approach: `postgres://USER@HOST:PORT[/ADMIN_DB]`.
    #[arg(long, value_name = "URL")]
    pub(crate) postgres: Option<String>,
    /// Connections the template-clone workers share (PostgreSQL's max_connections is shared).
    #[arg(long, default_value_t = 16)]
    pub(crate) pg_connections: usize,
    /// Rows of the template's table.
    #[arg(long, default_value_t = 1000)]
    pub(crate) template_rows: u32,
    /// Tests of the generator chain per configuration (each takes 4 × --chain-latency).
    #[arg(long, default_value_t = 128)]
    pub(crate) chain_tests: usize,
    /// Latency of each demo generator call (the demo's default).
    #[arg(long, default_value = "150ms", value_parser = humantime::parse_duration)]
    pub(crate) chain_latency: Duration,
}

/// One approach at one worker count.
struct Measured {
    approach: &'static str,
    workers: usize,
    tests: usize,
    /// Per test, microseconds, sorted.
    micros: Vec<u32>,
    seconds: f64,
    errors: usize,
    first_error: Option<String>,
    pool_requests_per_test: Option<f64>,
}

impl Measured {
    fn p(&self, q: f64) -> f64 {
        quantile_ms(&self.micros, q)
    }

    fn per_s(&self) -> f64 {
        self.tests as f64 / self.seconds
    }
}

/// Runs `tests` calls of `one` on `workers` concurrent tasks.
async fn measure<F, Fut>(
    workers: usize,
    tests: usize,
    one: F,
) -> (Vec<u32>, f64, usize, Option<String>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let one = Arc::new(one);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (one, next) = (Arc::clone(&one), Arc::clone(&next));
        tasks.spawn(async move {
            let mut micros = Vec::new();
            let mut errors = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= tests {
                    break;
                }
                let t0 = Instant::now();
                match one(i).await {
                    Ok(()) => {
                        micros.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX))
                    }
                    Err(e) => errors.push(e),
                }
            }
            (micros, errors)
        });
    }
    let mut all = Vec::with_capacity(tests);
    let mut errors = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (m, e) = done
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| (Vec::new(), vec![e]));
        all.extend(m);
        errors.extend(e);
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort_unstable();
    (all, seconds, errors.len(), errors.into_iter().next())
}

/// Every request of the bench has a deadline: a hung call fails its test instead of the run.
fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

async fn post_json(
    client: &reqwest::Client,
    url: &str,
    auth: Option<&str>,
    lease_token: Option<&str>,
    body: &Value,
) -> Result<Value, String> {
    let mut req = client.post(url).json(body);
    if let Some(a) = auth {
        req = req.bearer_auth(a);
    }
    if let Some(t) = lease_token {
        req = req.header("Stockroom-Lease-Token", t);
    }
    let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "{url}: {status} {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("{url}: {e}"))
}

fn str_of(v: &Value, k: &str) -> Result<String, String> {
    v.get(k)
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or_else(|| format!("no {k} in {v}"))
}

/// A real `stockroom agent` against `pool_url`.
struct AgentProcess {
    child: tokio::process::Child,
    url: String,
    token: String,
}

impl AgentProcess {
    async fn start(
        bin: &Path,
        pool_url: &str,
        dir: &Path,
        n: usize,
    ) -> Result<AgentProcess, String> {
        let ready = dir.join(format!("agent-{n}.json"));
        let log = std::fs::File::create(dir.join(format!("agent-{n}.log")))
            .map_err(|e| format!("agent log: {e}"))?;
        let child = tokio::process::Command::new(bin)
            .args(["agent", "--ignore-stdin", "--ready-file"])
            .arg(&ready)
            .env_remove("STOCKROOM_TOKEN")
            .env("STOCKROOM_POOL", pool_url)
            .env("STOCKROOM_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready)
                && let Ok(v) = serde_json::from_str::<Value>(&text)
            {
                return Ok(AgentProcess {
                    child,
                    url: str_of(&v, "url")?,
                    token: str_of(&v, "token")?,
                });
            }
            if Instant::now() >= deadline {
                return Err("the agent wrote no ready file within 20 s".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGTERM (it releases what it holds), then waits for exit 0.
    async fn stop(mut self) -> Result<(), String> {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix_kill(pid);
        }
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .map_err(|_| "the agent did not exit within 60 s of SIGTERM".to_string())?
            .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("the agent exited with {status}"))
        }
    }
}

fn nix_kill(pid: i32) -> nix::Result<()> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
}

async fn agent_run(
    a: &PerTestArgs,
    pool_url: &str,
    dir: &Path,
    n: usize,
    workers: usize,
    reserve: bool,
) -> Result<Measured, String> {
    let agent = AgentProcess::start(&a.stockroom_bin, pool_url, dir, n).await?;
    let client = http_client()?;
    let (url, token) = (agent.url.clone(), agent.token.clone());
    if reserve {
        let answer = post_json(
            &client,
            &format!("{url}/v1/reserve"),
            Some(&token),
            None,
            &json!({"items": [{"type": pool::TYPE, "state": pool::STATE, "count": a.tests}]}),
        )
        .await?;
        if answer["reserved"][0]["count"].as_u64() != Some(a.tests as u64) {
            return Err(format!("the reserve fell short: {answer}"));
        }
    }
    let (c, u, t) = (client.clone(), url.clone(), token.clone());
    let (micros, seconds, errors, first_error) = measure(workers, a.tests, move |i| {
        let (client, url, token) = (c.clone(), u.clone(), t.clone());
        async move {
            let take = post_json(
                &client,
                &format!("{url}/v1/take"),
                Some(&token),
                None,
                &json!({"test": format!("bench::test_{i}"), "worker": "w",
                        "items": [{"type": pool::TYPE, "state": pool::STATE}]}),
            )
            .await?;
            let id = str_of(&take, "take_id")?;
            post_json(
                &client,
                &format!("{url}/v1/takes/{id}/done"),
                Some(&token),
                None,
                &json!({"outcome": "passed"}),
            )
            .await
            .map(|_| ())
        }
    })
    .await;
    let listing: Value = client
        .get(format!("{url}/v1/takes"))
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let from_reserve = listing["takes"]
        .as_array()
        .map_or(0, |t| t.iter().filter(|t| t["source"] == "reserve").count());
    // + 1: the final release when it stops.
    let requests = listing["pool_requests"].as_u64().unwrap_or(0) + 1;
    agent.stop().await?;
    if reserve && from_reserve != a.tests {
        return Err(format!(
            "only {from_reserve} of {} takes came from the reserve",
            a.tests
        ));
    }
    Ok(Measured {
        approach: if reserve { "agent+reserve" } else { "agent" },
        workers,
        tests: a.tests,
        micros,
        seconds,
        errors,
        first_error,
        pool_requests_per_test: Some(requests as f64 / a.tests as f64),
    })
}

async fn pool_run(a: &PerTestArgs, pool_url: &str, workers: usize) -> Result<Measured, String> {
    let client = http_client()?;
    let base = pool_url.to_string();
    let (micros, seconds, errors, first_error) = measure(workers, a.tests, move |i| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let g = post_json(
                &client,
                &format!("{base}/api/v1/leases"),
                None,
                None,
                &json!({"holder": {"job": "bench", "test": format!("bench::test_{i}")},
                        "items": [{"name": "d", "type": pool::TYPE, "state": pool::STATE}]}),
            )
            .await?;
            let id = str_of(&g, "lease_id")?;
            let token = g
                .get("lease_token")
                .and_then(Value::as_str)
                .map(String::from);
            post_json(
                &client,
                &format!("{base}/api/v1/leases/{id}/release"),
                None,
                token.as_deref(),
                &json!({"outcome": "passed"}),
            )
            .await
            .map(|_| ())
        }
    })
    .await;
    Ok(Measured {
        approach: "pool",
        workers,
        tests: a.tests,
        micros,
        seconds,
        errors,
        first_error,
        pool_requests_per_test: Some(2.0),
    })
}

/// A template database with a small schema and `rows` rows; no connection
/// stays open to it (CREATE DATABASE … TEMPLATE needs none).
async fn make_template(server: &ServerUrl, name: &str, rows: u32) -> Result<(), String> {
    pg::create_db(server, name).await?;
    let (client, conn) = tokio_postgres::connect(&server.db_url(name), tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("template: {e}"))?;
    let task = tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, country text NOT NULL, \
               created_at timestamptz NOT NULL DEFAULT now());
             CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers (id), \
               total_cents integer NOT NULL, status text NOT NULL);
             CREATE INDEX orders_customer ON orders (customer_id);
             INSERT INTO customers (id, email, country) \
               SELECT i, 'c' || i || '@example.invalid', CASE WHEN i % 2 = 0 THEN 'DE' ELSE 'US' END \
               FROM generate_series(1, {rows}) AS i;"
        ))
        .await
        .map_err(|e| format!("template schema: {e}"))?;
    drop(client);
    let _ = task.await;
    Ok(())
}

async fn pg_run(
    a: &PerTestArgs,
    server: &ServerUrl,
    template: &str,
    workers: usize,
) -> Result<Measured, String> {
    let conns = workers.min(a.pg_connections).max(1);
    let db = pg::build_pool(&server.admin_url(), conns)?;
    let template = template.to_string();
    let prefix = format!("sr_bench_t_{}_{workers}", std::process::id());
    let (micros, seconds, errors, first_error) = measure(workers, a.tests, move |i| {
        let (db, template, prefix) = (db.clone(), template.clone(), prefix.clone());
        async move {
            let conn = db.get().await.map_err(|e| format!("connection: {e}"))?;
            let name = format!("{prefix}_{i}");
            conn.batch_execute(&format!(
                "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
            ))
            .await
            .map_err(|e| format!("create: {e}"))?;
            conn.batch_execute(&format!("DROP DATABASE \"{name}\""))
                .await
                .map_err(|e| format!("drop: {e}"))
        }
    })
    .await;
    Ok(Measured {
        approach: "pg-template",
        workers,
        tests: a.tests,
        micros,
        seconds,
        errors,
        first_error,
        pool_requests_per_test: None,
    })
}

async fn chain_run(
    a: &PerTestArgs,
    urls: &(String, String, String),
    workers: usize,
) -> Result<Measured, String> {
    let client = http_client()?;
    let urls = urls.clone();
    let tests = a.chain_tests;
    let (micros, seconds, errors, first_error) = measure(workers, tests, move |_| {
        let (client, (customers, payments, orders)) = (client.clone(), urls.clone());
        async move {
            let step = |prev: &Value, state: &str, answer: &Value| {
                let mut d = prev.clone();
                d["state"] = json!(state);
                for k in ["data", "secret_fields", "entities"] {
                    if let Some(v) = answer.get(k) {
                        d[k] = v.clone();
                    }
                }
                d
            };
            let attrs = json!({"country": "DE"});
            let a = post_json(&client, &format!("{customers}/generate"), None, None,
                &json!({"type": "customer", "state": "new", "attributes": attrs, "inputs": {}})).await?;
            let c = step(&json!({"id": "replay", "type": "customer", "attributes": attrs}), "new", &a);
            let b = post_json(&client, &format!("{customers}/extend"), None, None,
                &json!({"extension": "verify-email", "dataset": c})).await?;
            let c = step(&c, "active", &b);
            let b = post_json(&client, &format!("{payments}/extend"), None, None,
                &json!({"extension": "add-card", "dataset": c})).await?;
            let c = step(&c, "active-with-payment", &b);
            post_json(&client, &format!("{orders}/generate"), None, None,
                &json!({"type": "order", "state": "placed", "attributes": attrs, "inputs": {"customer": c}}))
                .await
                .map(|_| ())
        }
    })
    .await;
    Ok(Measured {
        approach: "generator-chain",
        workers,
        tests,
        micros,
        seconds,
        errors,
        first_error,
        pool_requests_per_test: None,
    })
}

fn progress(r: &Measured) {
    eprintln!(
        "pool-bench per-test: {} at {} workers: p50 {:.3} ms, p99 {:.3} ms, {:.0} tests/s, {} error(s)",
        r.approach,
        r.workers,
        r.p(0.5),
        r.p(0.99),
        r.per_s(),
        r.errors
    );
}

fn print_table(rows: &[Measured]) {
    println!(
        "| approach | workers | tests | p50 ms | p99 ms | tests/s | p50 ÷ (1) | p99 ÷ (1) | pool requests/test | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let base = rows
            .iter()
            .find(|b| b.approach == "agent+reserve" && b.workers == r.workers);
        let ratio = |f: &dyn Fn(&Measured) -> f64| {
            base.map_or("–".to_string(), |b| format!("{:.1}×", f(r) / f(b)))
        };
        println!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.0} | {} | {} | {} | {} |",
            r.approach,
            r.workers,
            r.tests,
            r.p(0.50),
            r.p(0.99),
            r.per_s(),
            ratio(&|m| m.p(0.50)),
            ratio(&|m| m.p(0.99)),
            r.pool_requests_per_test
                .map_or("–".to_string(), |p| format!("{p:.3}")),
            r.errors,
        );
        if let Some(e) = &r.first_error {
            eprintln!(
                "pool-bench per-test: {} at {} workers: first error: {e}",
                r.approach, r.workers
            );
        }
    }
}

fn print_goals(rows: &[Measured]) {
    let find = |approach: &str, w: usize| {
        rows.iter()
            .find(|r| r.approach == approach && r.workers == w)
    };
    if let Some(r) = find("agent+reserve", 64) {
        println!(
            "- goal (1) p99 ≤ 2 ms at 64 workers: {:.3} ms — {}",
            r.p(0.99),
            if r.p(0.99) <= 2.0 { "met" } else { "not met" }
        );
        if let Some(pg) = find("pg-template", 64).or_else(|| find("pg-template", 1)) {
            let x = pg.p(0.5) / r.p(0.5);
            println!(
                "- goal (1) ≥ 100× faster than (4) at p50 ({} workers): {x:.0}× — {}",
                pg.workers,
                if x >= 100.0 { "met" } else { "not met" }
            );
        }
        println!(
            "- goal pool requests per test ≤ 0.1 with a reserve: {:.3} — {}",
            r.pool_requests_per_test.unwrap_or(f64::NAN),
            if r.pool_requests_per_test.is_some_and(|p| p <= 0.1) {
                "met"
            } else {
                "not met"
            }
        );
    }
    for w in [1, 8, 64] {
        if let (Some(agent), Some(pool)) = (find("agent", w), find("pool", w)) {
            let x = agent.p(0.5) / pool.p(0.5);
            println!(
                "- goal (2) within 3× of (3) at {w} workers (p50): {x:.1}× — {}",
                if x <= 3.0 { "met" } else { "not met" }
            );
        }
    }
}

pub(crate) async fn run(pool_bin: &Path, a: &PerTestArgs) -> Result<bool, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    eprintln!(
        "pool-bench per-test: {} cpus, load {:.2}; {} tests at {:?} workers",
        sys::cpus(),
        sys::loadavg1().unwrap_or(f64::NAN),
        a.tests,
        a.workers
    );
    let pool =
        PoolProcess::start(pool_bin, &dir.path().join("pool.db"), dir.path(), "warn").await?;
    let pool_url = format!("http://{}", pool.addr);
    // Reusable: released `passed`, a dataset is ready again, so every
    // configuration finds the same stock.
    pool::seed(pool.addr, 0, a.tests as u64 + 200, 2_000).await?;
    let mut rows = Vec::new();
    let mut n = 0;
    for &w in &a.workers {
        n += 1;
        rows.push(agent_run(a, &pool_url, dir.path(), n, w, true).await?);
        n += 1;
        rows.push(agent_run(a, &pool_url, dir.path(), n, w, false).await?);
        rows.push(pool_run(a, &pool_url, w).await?);
    }
    pool.stop().await?;
    if let Some(url) = &a.postgres {
        let server = ServerUrl::parse(url)?;
        let template = format!("sr_bench_tpl_{}", std::process::id());
        make_template(&server, &template, a.template_rows).await?;
        let mut result = Ok(());
        for &w in &a.workers {
            match pg_run(a, &server, &template, w).await {
                Ok(r) => rows.push(r),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        pg::drop_db(&server, &template).await?;
        result?;
    } else {
        eprintln!("pool-bench per-test: no --postgres: the template-clone approach is skipped");
    }
    let demo = stockroom_generators::start_demo_shop(a.chain_latency)
        .await
        .map_err(|e| format!("demo services: {e}"))?;
    let urls = (
        demo.customers_url.clone(),
        demo.payments_url.clone(),
        demo.orders_url.clone(),
    );
    for &w in &a.workers {
        rows.push(chain_run(a, &urls, w).await?);
    }
    // Dropped, not shut down gracefully: that would wait for the clients'
    // idle keep-alive connections.
    drop(demo);
    rows.iter().for_each(progress);
    rows.sort_by_key(|r| (r.workers, order(r.approach)));
    print_table(&rows);
    println!();
    print_goals(&rows);
    eprintln!(
        "pool-bench per-test: load {:.2} at the end",
        sys::loadavg1().unwrap_or(f64::NAN)
    );
    Ok(rows.iter().all(|r| r.errors == 0))
}

fn order(approach: &str) -> usize {
    [
        "agent+reserve",
        "agent",
        "pool",
        "pg-template",
        "generator-chain",
    ]
    .iter()
    .position(|a| *a == approach)
    .unwrap_or(9)
}
