//! The sidecar's side of the trust findings (docs/sidecar.md "TLS" and
//! "Retries"), with the real `stockroom` binary:
//!
//! - an `https://` pool behind a CA made here is refused with advice (exit 78)
//!   until `--ca-file` / `STOCKROOM_CA_FILE` names the CA, then reached;
//! - a release that hangs never outlasts `--retry-for`;
//! - the private temp dir of the datasets file is 0700;
//! - manifest gaps: not UTF-8 (65, positioned), malformed pool URLs and a
//!   dataset named `lease` (65, positioned) in `check`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stockroom_e2e::{Pool, stockroom};

mod tls;
use tls::{make_pki, start_tls_proxy};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const MANIFEST_TAIL: &str =
    "[[dataset]]\nname = \"buyer\"\ntype = \"customer\"\nstate = \"active\"\n";

#[test]
fn an_https_pool_behind_a_company_ca_needs_the_ca_file_and_is_then_reached() {
    let pool = Pool::start();
    let pki = make_pki();
    let port = start_tls_proxy(&pki, pool.addr.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("company-ca.pem");
    std::fs::write(&ca, &pki.ca_pem).expect("write CA");
    let url = format!("https://localhost:{port}");

    // Without the CA: a clear configuration error, at once (no retrying).
    let started = Instant::now();
    let out = stockroom(dir.path())
        .args(["catalog", "--pool", &url])
        .output()
        .expect("run");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("does not trust"), "{err}");
    assert!(err.contains("--ca-file"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "no retries");

    // With --ca-file, and with STOCKROOM_CA_FILE: reached.
    let out = stockroom(dir.path())
        .args(["catalog", "--json", "--pool", &url, "--ca-file"])
        .arg(&ca)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let catalog: serde_json::Value = serde_json::from_slice(&out.stdout).expect("catalog JSON");
    assert!(catalog.get("types").is_some(), "{catalog}");

    // A whole run (lease, heartbeat, release) through the proxy.
    pool.seed(
        json!({"type": "customer", "state": "active", "data": {"customer_id": "C1"},
                     "entities": ["customer:C1"]}),
    );
    std::fs::write(
        dir.path().join("stockroom.toml"),
        format!("version = 1\npool = \"{url}\"\nacquire_timeout = \"5s\"\n{MANIFEST_TAIL}"),
    )
    .expect("manifest");
    let out = stockroom(dir.path())
        .env("STOCKROOM_CA_FILE", &ca)
        .args(["run", "--", "sh", "-c", "test -n \"$STOCKROOM_BUYER_ID\""])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // A CA file that holds no certificate is named in a configuration error.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").expect("write");
    let out = stockroom(dir.path())
        .args(["catalog", "--pool", &url, "--ca-file"])
        .arg(&junk)
        .output()
        .expect("run");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("junk.pem"), "{err}");
}

/// A pool-like server on loopback: it grants the lease, answers heartbeats,
/// and never answers a release (it reads the request and holds the
/// connection open). Counts the releases it received.
fn start_hanging_release_pool() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let releases = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&releases);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || serve_pool_like(conn, &counter));
        }
    });
    (format!("http://{addr}"), releases)
}

fn serve_pool_like(conn: TcpStream, releases: &std::sync::atomic::AtomicUsize) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut conn = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let answer = if request_line.contains("/release") {
            releases.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // Hang: hold the connection until the client gives up.
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
            return;
        } else if request_line.starts_with("POST /api/v1/leases ") {
            json!({"lease_id": "lease_hang", "lease_token": "t".repeat(32),
                   "expires_at": "2099-01-01T00:00:00Z",
                   "heartbeat_interval_seconds": 30,
                   "datasets": [{"name": "buyer", "index": 0, "id": "ds_1", "type": "customer",
                                 "state": "active", "attributes": {}, "data": {"customer_id": "C1"},
                                 "secret_fields": [], "entities": ["customer:C1"]}]})
        } else {
            json!({"lease_id": "lease_hang", "expires_at": "2099-01-01T00:00:00Z",
                   "heartbeat_interval_seconds": 30})
        };
        let body = answer.to_string();
        let status = if request_line.starts_with("POST /api/v1/leases ") {
            "201 Created"
        } else {
            "200 OK"
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if conn.write_all(head.as_bytes()).is_err() || conn.write_all(body.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn a_release_that_hangs_never_outlasts_retry_for() {
    let (url, releases) = start_hanging_release_pool();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("stockroom.toml"),
        format!("version = 1\npool = \"{url}\"\n{MANIFEST_TAIL}"),
    )
    .expect("manifest");
    let marker = dir.path().join("ran");
    let started = Instant::now();
    let out = stockroom(dir.path())
        .args(["run", "--retry-for", "3s", "--", "touch"])
        .arg(&marker)
        .output()
        .expect("run");
    let took = started.elapsed();
    let err = text(&out.stderr);
    assert!(marker.exists(), "the command ran: {err}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "the command's code stands: {err}"
    );
    assert!(
        releases.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "a release was sent: {err}"
    );
    // 3 s of retrying plus start-up and the command; one attempt alone used to take 15 s.
    assert!(took < Duration::from_secs(6), "took {took:?}: {err}");
    assert!(err.contains("failed to release"), "{err}");
}

#[test]
fn the_private_temp_dir_of_the_datasets_file_is_0700() {
    let pool = Pool::start();
    pool.seed(
        json!({"type": "customer", "state": "active", "data": {"customer_id": "C1"},
                     "entities": ["customer:C1"]}),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("stockroom.toml"),
        format!(
            "version = 1\npool = \"{}\"\nacquire_timeout = \"5s\"\n{MANIFEST_TAIL}",
            pool.url()
        ),
    )
    .expect("manifest");
    let report = dir.path().join("modes");
    let script = format!(
        "stat -c '%a' \"$(dirname \"$STOCKROOM_DATASETS_FILE\")\" \"$STOCKROOM_DATASETS_FILE\" > {}",
        report.display()
    );
    let out = stockroom(dir.path())
        .args(["run", "--", "sh", "-c", &script])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let modes = std::fs::read_to_string(&report).expect("modes");
    assert_eq!(modes.split_whitespace().collect::<Vec<_>>(), ["700", "600"]);
}

fn check(dir: &Path, manifest: &[u8]) -> (Option<i32>, String) {
    std::fs::write(dir.join("m.toml"), manifest).expect("write");
    let out = stockroom(dir)
        .args(["check", "--offline", "--manifest", "m.toml"])
        .output()
        .expect("run");
    (out.status.code(), text(&out.stderr))
}

#[test]
fn check_rejects_manifest_gaps_with_their_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut latin1 = b"version = 1\n# Stra".to_vec();
    latin1.push(0xdf); // a Latin-1 sharp s
    latin1.extend_from_slice(b"e\n");
    latin1.extend_from_slice(MANIFEST_TAIL.as_bytes());
    let (code, err) = check(dir.path(), &latin1);
    assert_eq!(code, Some(65), "{err}");
    assert!(err.contains("m.toml:2:7"), "{err}");
    assert!(err.contains("UTF-8"), "{err}");

    for bad in ["http://[::1", "http://a b", "http://127.0.0.1:99999"] {
        let (code, err) = check(
            dir.path(),
            format!("version = 1\npool = \"{bad}\"\n{MANIFEST_TAIL}").as_bytes(),
        );
        assert_eq!(code, Some(65), "{bad}: {err}");
        assert!(err.contains("m.toml:2:8"), "{bad}: {err}");
    }
    let (code, err) = check(
        dir.path(),
        b"version = 1\n[[dataset]]\nname = \"lease\"\ntype = \"customer\"\nstate = \"active\"\n",
    );
    assert_eq!(code, Some(65), "{err}");
    assert!(err.contains("m.toml:3:8"), "{err}");
    assert!(err.contains("STOCKROOM_LEASE_ID"), "{err}");

    // --pool and STOCKROOM_POOL get the same check (78: a setting, not the manifest).
    let out = stockroom(dir.path())
        .env("STOCKROOM_POOL", "http://a b")
        .args(["catalog"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
}
