//! Starts the real `stockroom-pool` binary on port 0 and talks HTTP to it.
#![allow(dead_code, clippy::unwrap_used)]

mod fresh_db;

#[allow(unused_imports)] // only the PostgreSQL-backed tests use them
pub use fresh_db::{FreshDb, admin_url};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use stockroom_testkit::{PoolCommand, PoolProcess};

/// The lease tokens of every lease these tests took, by lease id (ids are
/// unique, so one map serves every pool and replica of a test binary).
static LEASE_TOKENS: std::sync::Mutex<BTreeMap<String, String>> =
    std::sync::Mutex::new(BTreeMap::new());

/// Remembers the `lease_token` of a `POST /leases` answer.
pub fn remember_lease_token(answer: &Value) {
    if let (Some(id), Some(token)) = (answer["lease_id"].as_str(), answer["lease_token"].as_str()) {
        LEASE_TOKENS
            .lock()
            .unwrap()
            .insert(id.to_string(), token.to_string());
    }
}

/// The remembered token of the lease a path like `…/leases/{id}/heartbeat` acts on.
pub fn lease_token_for(path: &str) -> Option<String> {
    let (_, rest) = path.split_once("/leases/")?;
    let (id, _) = rest.split_once('/')?;
    LEASE_TOKENS.lock().unwrap().get(id).cloned()
}

/// Adds the `Stockroom-Lease-Token` of the lease `path` acts on, when known
/// (the holder's proof, as the sidecar sends it).
pub fn with_lease_token(req: reqwest::RequestBuilder, path: &str) -> reqwest::RequestBuilder {
    match lease_token_for(path) {
        Some(t) => req.header(stockroom_protocol::api::LEASE_TOKEN_HEADER, t),
        None => req,
    }
}

/// One call as a test client would make it: with the lease token of the
/// lease `path` acts on (when known); the status and the answer as JSON (or
/// its text); a new lease's token remembered.
pub async fn call_json(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let req = http.request(method.parse().unwrap(), format!("{base}{path}"));
    let mut req = with_lease_token(req, path);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    remember_lease_token(&value);
    (status, value)
}

pub const CI_TOKEN: &str = "ci-secret-token";
pub const ADMIN_TOKEN: &str = "admin-secret-token";

pub fn sha(token: &str) -> String {
    stockroom_pool::auth::digest_hex(token)
}

pub fn config_with_tokens(extra: &str) -> String {
    format!(
        "reaper_interval = \"100ms\"\nshutdown_grace = \"5s\"\n{extra}\n[[tokens]]\nname = \"ci\"\nrole = \"ci\"\nsha256 = \"{}\"\n\n[[tokens]]\nname = \"ops\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
        sha(CI_TOKEN),
        sha(ADMIN_TOKEN)
    )
}

/// Upper bound of every wait on a condition: generous, since it only ends a
/// test that already failed.
pub const WAIT_CAP: Duration = Duration::from_secs(60);

/// Polls `check` until it holds; panics naming `what` after [`WAIT_CAP`].
pub async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT_CAP;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up after {WAIT_CAP:?} waiting for {what}"
        );
        // The poll interval of a wait with a deadline.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct Pool {
    pub process: PoolProcess,
    pub base: String,
    pub db: PathBuf,
    pub http: reqwest::Client,
}

/// Starts the pool with `config` text on `db`; returns once the ready file names its address.
pub fn start(dir: &Path, db: &Path, config: &str) -> Pool {
    let mut pool = start_store(dir, &format!("sqlite://{}", db.display()), config);
    pool.db = db.to_path_buf();
    pool
}

/// Starts the pool with `config` text on any store URL (several may run at
/// once in one `dir`: each gets its own config, ready file and log).
pub fn start_store(dir: &Path, store: &str, config: &str) -> Pool {
    static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let cfg = dir.join(format!("pool-{n}.toml"));
    std::fs::write(&cfg, config).unwrap();
    let process = PoolCommand::new(env!("CARGO_BIN_EXE_stockroom-pool"), dir)
        .label(format!("pool-{n}"))
        .config(cfg)
        .store(store)
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    Pool {
        base: process.base_url(),
        process,
        db: PathBuf::new(),
        http: reqwest::Client::new(),
    }
}

impl Pool {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let req = self.http.request(method.parse().unwrap(), self.url(path));
        let mut req = with_lease_token(req, path);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        remember_lease_token(&value);
        (status, value, headers)
    }

    pub async fn ci(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (s, v, _) = self.call(method, path, Some(CI_TOKEN), body).await;
        (s, v)
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (s, v, _) = self.call(method, path, Some(ADMIN_TOKEN), body).await;
        (s, v)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// SIGKILL, reaped.
    pub fn kill9(&mut self) {
        self.process.kill().unwrap_or_else(|e| panic!("{e}"));
    }

    /// SIGTERM and the exit status (a generous grace: a graceful stop is asserted, not timed).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.process
            .stop(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// POOL_TEST_LOG=1 prints each pool's stderr when its test is done.
impl Drop for Pool {
    fn drop(&mut self) {
        if std::env::var_os("POOL_TEST_LOG").is_some() {
            for line in self.process.log().lines() {
                eprintln!("pool {}: {line}", self.process.pid());
            }
        }
    }
}
