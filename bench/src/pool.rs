//! A real `stockroom-pool` process on a temporary SQLite file (or, with
//! `--store postgres://…`, on a PostgreSQL database: see `pg.rs`), seeded with
//! ready datasets once it listens.
//!
//! Seeding uses the public admin API, `POST /api/v1/datasets` with a list of
//! `batch` datasets per request (kept under the 1 MiB body limit), a few
//! requests in flight at once. Each request is one `Store::register` call,
//! i.e. one savepoint in the SQLite writer's group commit, so the rows are
//! exactly what the pool writes for any registration (dataset, attribute,
//! history row, status counts). The pool library has no bulk-SQL path, and
//! going through HTTP keeps the bench independent of the library's Rust API.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stockroom_testkit::PoolCommand;

/// Type and state of the benchmark's datasets.
pub const TYPE: &str = "bench-account";
pub const STATE: &str = "ready-to-use";

fn dataset(i: u64) -> Value {
    json!({
        "type": TYPE,
        "state": STATE,
        "attributes": {"tier": "basic"},
        "data": {"login": format!("bench-{i}@example.invalid"), "password": "not-a-secret"},
        "secret_fields": ["password"],
        "entities": [format!("bench-account:{i}")],
        // Released `passed`, a reusable dataset goes back to `ready`: the stock
        // never drains, so every run leases from exactly `n` ready datasets.
        "reusable": true,
    })
}

/// Registers datasets `from..n` (reusable, ready) through `POST /api/v1/datasets`.
pub async fn seed(addr: SocketAddr, from: u64, n: u64, batch: u64) -> Result<Duration, String> {
    const IN_FLIGHT: u64 = 4;
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let url = format!("http://{addr}/api/v1/datasets");
    let mut next = from;
    while next < n {
        let mut requests = Vec::new();
        for _ in 0..IN_FLIGHT {
            if next >= n {
                break;
            }
            let k = batch.min(n - next);
            let body = Value::Array((next..next + k).map(dataset).collect());
            next += k;
            let request = client.post(&url).json(&body).send();
            requests.push(async move {
                let resp = request.await.map_err(|e| format!("seeding: {e}"))?;
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                if status.as_u16() != 201 {
                    return Err(format!(
                        "seeding: POST /api/v1/datasets answered {status}: {text}"
                    ));
                }
                Ok::<(), String>(())
            });
        }
        for r in futures_join(requests).await {
            r?;
        }
    }
    Ok(started.elapsed())
}

/// Awaits every future concurrently (a tiny `join_all` on tokio tasks).
async fn futures_join<F>(futures: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out
}

/// A running pool process (started through `stockroom-testkit`, which
/// every test starts the pool with too); stopped with SIGTERM on
/// [`PoolProcess::stop`], killed if dropped.
pub struct PoolProcess {
    process: stockroom_testkit::PoolProcess,
    pub pid: u32,
    pub addr: SocketAddr,
}

/// How long a pool may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(20);

impl PoolProcess {
    /// Starts `bin` on `db`, logging to `dir/pool.log`, and waits for its ready file.
    pub async fn start(
        bin: &Path,
        db: &Path,
        dir: &Path,
        log_filter: &str,
    ) -> Result<PoolProcess, String> {
        Self::start_store(bin, &format!("sqlite://{}", db.display()), dir, log_filter).await
    }

    /// Starts `bin` on the store URL `store` (SQLite or PostgreSQL), logging
    /// to `dir/pool.log`, and waits for its ready file.
    pub async fn start_store(
        bin: &Path,
        store: &str,
        dir: &Path,
        log_filter: &str,
    ) -> Result<PoolProcess, String> {
        let command = PoolCommand::new(bin, dir)
            .store(store)
            .env("STOCKROOM_LOG", log_filter)
            .env_remove("STOCKROOM_LOG_FORMAT")
            .fresh_log();
        let process = tokio::task::spawn_blocking(move || command.spawn())
            .await
            .map_err(|e| format!("the pool start-up task failed: {e}"))?
            .map_err(|e| e.to_string())?;
        Ok(PoolProcess {
            pid: process.pid(),
            addr: process.addr(),
            process,
        })
    }

    /// SIGTERM, then waits for the exit (SIGKILL after 20 s).
    pub async fn stop(self) -> Result<(), String> {
        let mut process = self.process;
        let stopped = tokio::task::spawn_blocking(move || process.stop(STOP_GRACE))
            .await
            .map_err(|e| format!("the pool stop task failed: {e}"))?;
        match stopped {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(format!("the pool exited with {status}")),
            Err(e) => Err(e.to_string()),
        }
    }
}
