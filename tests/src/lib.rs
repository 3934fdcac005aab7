//! Harness for Stockroom's end-to-end tests: finds the real binaries, runs a
//! real pool on port 0 (its `--ready-file` says when it listens: no sleeps),
//! talks plain HTTP to it, and waits for files helper programs write.
//!
//! The tests need the binaries built first:
//! `cargo build -p stockroom -p stockroom-pool` (`cargo test --workspace` does it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The target profile directory (`target/debug`): the test executable lives in `deps/` below it.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    let dir = if deps.ends_with("deps") {
        deps.parent().expect("profile dir")
    } else {
        deps
    };
    dir.to_path_buf()
}

fn binary(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build -p stockroom -p stockroom-pool`",
        path.display()
    );
    path
}

pub fn stockroom_bin() -> PathBuf {
    binary("stockroom")
}

pub fn pool_bin() -> PathBuf {
    binary("stockroom-pool")
}

/// `stockroom` with a clean environment (no CI variables leak in from the host).
pub fn stockroom(dir: &Path) -> Command {
    let mut cmd = Command::new(stockroom_bin());
    cmd.env_clear()
        .current_dir(dir)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("TMPDIR", dir)
        .env("STOCKROOM_LOG", "info")
        .stdin(Stdio::null());
    cmd
}

/// Waits until `path` exists (a helper or the pool writes it when ready).
pub fn wait_for_file(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    path.exists()
}

/// A real `stockroom-pool` on loopback with an SQLite store in a temp dir.
pub struct Pool {
    child: Option<Child>,
    pub addr: String,
    pub dir: tempfile::TempDir,
    config: Option<PathBuf>,
}

impl Pool {
    pub fn start() -> Pool {
        Pool::start_with_config(None)
    }

    /// With a `stockroom-pool.toml` (tokens).
    pub fn start_with_config(config_text: Option<&str>) -> Pool {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config_text.map(|text| {
            let path = dir.path().join("stockroom-pool.toml");
            std::fs::write(&path, text).expect("write pool config");
            path
        });
        let mut pool = Pool {
            child: None,
            addr: String::new(),
            dir,
            config,
        };
        pool.spawn("127.0.0.1:0");
        pool
    }

    fn spawn(&mut self, listen: &str) {
        let ready = self.dir.path().join("ready");
        let _ = std::fs::remove_file(&ready);
        let store = format!("sqlite://{}", self.dir.path().join("pool.db").display());
        let mut cmd = Command::new(pool_bin());
        cmd.arg("--listen")
            .arg(listen)
            .arg("--store")
            .arg(&store)
            .arg("--ready-file")
            .arg(&ready);
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("pool.log"))
            .expect("pool log");
        cmd.env("STOCKROOM_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        let mut child = cmd.spawn().expect("start stockroom-pool");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("stockroom-pool exited with {status}; log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "stockroom-pool did not get ready; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.addr = std::fs::read_to_string(&ready)
            .expect("ready file")
            .trim()
            .to_string();
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pool.log")).unwrap_or_default()
    }

    /// SIGKILL: the pool vanishes without a goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same address and store.
    pub fn restart(&mut self) {
        self.kill();
        let addr = self.addr.clone();
        self.spawn(&addr);
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

impl Drop for Pool {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `stockroom-pool demo`: three real generator services (customers, payments,
/// orders) on loopback and a pool that keeps their states in stock, with its
/// SQLite store in a temp dir. Each generator call takes `latency`.
pub struct DemoPool {
    child: Option<Child>,
    pub addr: String,
    /// Line 1 of the demo's stdout (`Stockroom demo pool: http://ADDR …`).
    pub banner: String,
    pub dir: tempfile::TempDir,
}

impl DemoPool {
    /// Starts the demo with a low generator latency such as `"20ms"`.
    pub fn start(latency: &str) -> DemoPool {
        use std::io::BufRead;
        let dir = tempfile::tempdir().expect("tempdir");
        let ready = dir.path().join("ready");
        let store = format!("sqlite://{}", dir.path().join("demo.db").display());
        let log = std::fs::File::create(dir.path().join("pool.log")).expect("pool log");
        let mut child = Command::new(pool_bin())
            .args(["demo", "--listen", "127.0.0.1:0", "--latency", latency])
            .arg("--store")
            .arg(&store)
            .arg("--ready-file")
            .arg(&ready)
            .env("STOCKROOM_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start stockroom-pool demo");
        let mut demo = DemoPool {
            child: None,
            addr: String::new(),
            banner: String::new(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "stockroom-pool demo exited with {status}; log:\n{}",
                    demo.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "stockroom-pool demo did not get ready; log:\n{}",
                demo.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        demo.addr = std::fs::read_to_string(&ready)
            .expect("ready file")
            .trim()
            .to_string();
        // The banner follows the ready file. The rest of stdout is drained by
        // a thread: a closed pipe would make the pool's next println fail.
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut banner = String::new();
        stdout.read_line(&mut banner).expect("demo stdout");
        demo.banner = banner.trim_end().to_string();
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        demo.child = Some(child);
        demo
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pool.log")).unwrap_or_default()
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

impl Drop for DemoPool {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A minimal HTTP/1.1 client (one request per connection).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).expect("connect to the pool");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let body_text = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body_text.len()
    );
    if body.is_some() {
        request.push_str("Content-Type: application/json\r\n");
    }
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body_text);
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// The path of a helper program of this package.
pub fn helper(name: &str) -> PathBuf {
    binary(name)
}
