//! Starts the real `stockroom-pool` binary on port 0 and talks HTTP to it.
#![allow(dead_code, clippy::unwrap_used)]

mod fresh_db;

#[allow(unused_imports)] // only the PostgreSQL-backed tests use it
pub use fresh_db::FreshDb;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

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

pub struct Pool {
    pub child: Child,
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

/// Starts the pool with `config` text on any store URL (several may run at once).
pub fn start_store(dir: &Path, store: &str, config: &str) -> Pool {
    static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let cfg = dir.join(format!("pool-{n}.toml"));
    std::fs::write(&cfg, config).unwrap();
    let ready = dir.join(format!("ready-{}-{n}", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let mut child = Command::new(env!("CARGO_BIN_EXE_stockroom-pool"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--store",
        ])
        .arg(store)
        .arg("--ready-file")
        .arg(&ready)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the log line, then for the ready file written right after it.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening on")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(());
            }
            if std::env::var_os("POOL_TEST_LOG").is_some() {
                eprintln!("pool: {line}");
            }
        }
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the pool did not start");
    let addr = loop {
        if let Ok(a) = std::fs::read_to_string(&ready) {
            break a;
        }
        std::thread::yield_now();
    };
    Pool {
        child,
        base: format!("http://{addr}"),
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
        let mut req = self.http.request(method.parse().unwrap(), self.url(path));
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

    pub fn kill9(&mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
