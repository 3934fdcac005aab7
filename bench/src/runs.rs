//! The runs: per stock size a seeded pool (SQLite) or per replica count a
//! fresh database with its pools and raw-SQL ceilings (PostgreSQL), and per
//! client count one measured configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::args::Args;
use crate::client::{Holders, run_client};
use crate::http::Http;
use crate::pg::{self, RawVariant, ServerUrl};
use crate::pool;
use crate::report::{PgSetup, Row, emit, side_by_side};
use crate::sys::{self, CpuSnapshot};

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

pub(crate) async fn run(args: &Args) -> Result<bool, String> {
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
