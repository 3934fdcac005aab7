//! The real `stockroom-pool` on loopback, started through the shared
//! launcher (`stockroom-testkit`): port 0, a ready file, stderr in
//! `DIR/pool.log`.

use std::ffi::OsStr;
use std::io::BufRead;
use std::process::ChildStdout;

use serde_json::Value;
use stockroom_testkit::{PoolCommand, PoolProcess};

use crate::bins::pool_bin;
use crate::http::http;

/// A real `stockroom-pool` with an SQLite store in a temp dir.
pub struct Pool {
    process: Option<PoolProcess>,
    command: PoolCommand,
    /// Where the pool listens now; a restart changes it.
    pub addr: String,
    pub dir: tempfile::TempDir,
}

impl Pool {
    pub fn start() -> Pool {
        Pool::start_with_config(None)
    }

    /// With a `stockroom-pool.toml` (tokens).
    pub fn start_with_config(config_text: Option<&str>) -> Pool {
        Pool::start_with_env(config_text, &[])
    }

    /// With a `stockroom-pool.toml` and these environment variables set
    /// (`Some`) or removed from what the pool inherits (`None`).
    pub fn start_with_env(config_text: Option<&str>, env: &[(&str, Option<&OsStr>)]) -> Pool {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut command = PoolCommand::new(pool_bin(), dir.path())
            .store(format!("sqlite://{}", dir.path().join("pool.db").display()))
            .env("STOCKROOM_LOG", "info");
        for &(key, value) in env {
            command = match value {
                Some(v) => command.env(key, v),
                None => command.env_remove(key),
            };
        }
        if let Some(text) = config_text {
            let path = dir.path().join("stockroom-pool.toml");
            std::fs::write(&path, text).expect("write pool config");
            command = command.config(path);
        }
        Pool::launch(command, dir)
    }

    /// On a store URL of the caller's (a database on a small file system).
    pub fn start_on_store(store: &str) -> Pool {
        let dir = tempfile::tempdir().expect("tempdir");
        let command = PoolCommand::new(pool_bin(), dir.path())
            .store(store)
            .env("STOCKROOM_LOG", "info");
        Pool::launch(command, dir)
    }

    fn launch(command: PoolCommand, dir: tempfile::TempDir) -> Pool {
        let mut pool = Pool {
            process: None,
            command,
            addr: String::new(),
            dir,
        };
        pool.spawn();
        pool
    }

    fn spawn(&mut self) {
        let process = self.command.spawn().unwrap_or_else(|e| panic!("{e}"));
        self.addr = process.addr().to_string();
        self.process = Some(process);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything every start of this pool wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.command.log_path()).unwrap_or_default()
    }

    /// SIGKILL: the pool vanishes without a goodbye.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// Starts again on the same store, on a new port: the old one was freed
    /// by the kill and may belong to anything by now. A client that must
    /// keep its address across the restart goes through a [`crate::Relay`].
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Registers datasets by hand (`POST /api/v1/datasets`).
    pub fn seed(&self, body: Value) -> Value {
        let (status, answer) = self.request("POST", "/api/v1/datasets", Some(&body), None);
        assert!(
            (200..300).contains(&status),
            "seeding failed: {status} {answer}"
        );
        answer
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        http(&self.addr, method, path, body, token)
    }
}

/// `stockroom-pool demo`: three real generator services (customers, payments,
/// orders) on loopback and a pool that keeps their states in stock, with its
/// SQLite store in a temp dir. Each generator call takes `latency`. It is a
/// [`Pool`] otherwise (address, requests, log).
pub struct DemoPool {
    pool: Pool,
    /// Line 1 of the demo's stdout (`Stockroom demo pool: http://ADDR …`).
    pub banner: String,
}

impl DemoPool {
    /// Starts the demo with a low generator latency such as `"20ms"`.
    pub fn start(latency: &str) -> DemoPool {
        let dir = tempfile::tempdir().expect("tempdir");
        let command = PoolCommand::new(pool_bin(), dir.path())
            .leading_args(["demo", "--latency", latency])
            .store(format!("sqlite://{}", dir.path().join("demo.db").display()))
            .env("STOCKROOM_LOG", "info")
            .stdout_piped();
        let mut pool = Pool::launch(command, dir);
        // The banner follows the ready file. The rest of stdout is drained by
        // a thread: a closed pipe would make the pool's next println fail.
        let stdout: ChildStdout = pool
            .process
            .as_mut()
            .and_then(PoolProcess::take_stdout)
            .expect("piped stdout");
        let mut stdout = std::io::BufReader::new(stdout);
        let mut banner = String::new();
        stdout.read_line(&mut banner).expect("demo stdout");
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        DemoPool {
            pool,
            banner: banner.trim_end().to_string(),
        }
    }
}

impl std::ops::Deref for DemoPool {
    type Target = Pool;

    fn deref(&self) -> &Pool {
        &self.pool
    }
}
