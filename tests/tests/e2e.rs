//! End-to-end tests: the real `stockroom` and `stockroom-pool` binaries and
//! small helper programs (`src/bin/*`).
//!
//! They need the binaries built first: `cargo build -p stockroom -p stockroom-pool`
//! (`cargo test --workspace` builds them). Helpers are built with this package.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use stockroom_e2e::{Pool, Relay, StderrLines, helper, stockroom, wait_for, wait_for_file};

const SECRET: &str = "hunter2-very-secret";

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Upper bound of every wait on a condition: generous, since it only ends a
/// test that already failed.
const WAIT_CAP: Duration = Duration::from_secs(60);

fn manifest(pool: &Pool, extra: &str) -> String {
    manifest_at(&pool.url(), extra)
}

fn manifest_at(pool_url: &str, extra: &str) -> String {
    format!(
        "version = 1\npool = \"{pool_url}\"\nacquire_timeout = \"2s\"\n{extra}\n[[dataset]]\nname = \"buyer\"\ntype = \"customer\"\nstate = \"active\"\n"
    )
}

/// A pool timestamp (RFC 3339) as a point in time.
fn instant(value: &Value) -> std::time::SystemTime {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {value}"));
    humantime::parse_rfc3339_weak(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn seed_customers(pool: &Pool, n: usize) {
    let items: Vec<Value> = (0..n)
        .map(|i| {
            json!({"type": "customer", "state": "active", "attributes": {"country": "DE"},
                   "data": {"customer_id": format!("C{i}"), "email": format!("c{i}@x.test"), "password": SECRET},
                   "secret_fields": ["password"], "entities": [format!("customer:C{i}")]})
        })
        .collect();
    pool.seed(Value::Array(items));
}

fn active_leases(pool: &Pool) -> Vec<Value> {
    let (status, body) = pool.request("GET", "/api/v1/leases?status=active", None, None);
    assert_eq!(status, 200, "{body}");
    body["leases"].as_array().cloned().unwrap_or_default()
}

fn dataset_status(pool: &Pool, id: &str) -> String {
    let (_, body) = pool.request("GET", &format!("/api/v1/datasets/{id}"), None, None);
    body["status"].as_str().unwrap_or_default().to_string()
}

fn assert_no_secret(output: &Output) {
    assert!(
        !text(&output.stdout).contains(SECRET),
        "secret on stdout:\n{}",
        text(&output.stdout)
    );
    assert!(
        !text(&output.stderr).contains(SECRET),
        "secret on stderr:\n{}",
        text(&output.stderr)
    );
}

// ---------------------------------------------------------------- no pool

#[test]
fn help_and_version_exit_zero_and_usage_errors_exit_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = stockroom(dir.path()).arg("--help").output().expect("run");
    assert_eq!(out.status.code(), Some(0));
    for word in [
        "run", "start", "stop", "extend", "status", "catalog", "check",
    ] {
        assert!(text(&out.stdout).contains(word), "{word} missing from help");
    }
    let out = stockroom(dir.path())
        .arg("--version")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).starts_with("stockroom "),
        "{}",
        text(&out.stdout)
    );
    let out = stockroom(dir.path())
        .args(["run", "true"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    let out = stockroom(dir.path())
        .args(["--token", "x", "status"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn offline_check_accepts_a_valid_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "m.toml",
        "version = 1\n[[dataset]]\nname = \"buyer\"\ntype = \"customer\"\nstate = \"active\"\n",
    );
    let out = stockroom(dir.path())
        .args(["check", "--manifest", "m.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = stockroom(dir.path())
        .args(["check", "--manifest", "m.toml", "--json"])
        .output()
        .expect("run");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["valid"], true);
}

#[test]
fn offline_check_rejects_a_bad_manifest_with_its_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "m.toml",
        "version = 1\n[[dataset]]\nname = \"buyer\"\ntype = \"customer\"\nstate = \"active\"\ncolour = \"red\"\n",
    );
    let out = stockroom(dir.path())
        .args(["check", "--manifest", "m.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(65));
    let err = text(&out.stderr);
    assert!(err.contains("m.toml:6:1"), "{err}");
    assert!(err.contains("colour"), "{err}");
    // STOCKROOM_MANIFEST is the fallback; a missing file is a configuration error.
    let out = stockroom(dir.path())
        .arg("check")
        .env("STOCKROOM_MANIFEST", "m.toml")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(65));
    let out = stockroom(dir.path()).arg("check").output().expect("run");
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
}

#[test]
fn run_validates_the_manifest_before_any_network_call_and_an_absent_pool_gives_69() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "bad.toml",
        "version = 1\npool = \"http://127.0.0.1:9\"\n[[dataset]]\nname = \"Buyer\"\ntype = \"customer\"\nstate = \"active\"\n",
    );
    let out = stockroom(dir.path())
        .args(["run", "--manifest", "bad.toml", "--", "true"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(65), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("bad.toml:4:8"),
        "{}",
        text(&out.stderr)
    );

    write(
        dir.path(),
        "ok.toml",
        "version = 1\npool = \"http://127.0.0.1:9\"\n[[dataset]]\nname = \"buyer\"\ntype = \"customer\"\nstate = \"active\"\n",
    );
    let out = stockroom(dir.path())
        .args([
            "run",
            "--manifest",
            "ok.toml",
            "--retry-for",
            "1s",
            "--",
            "true",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("healthz"),
        "{}",
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------- with the real pool

/// `stockroom run` in `dir` against `pool`, returning the child handle.
fn spawn_run(dir: &Path, args: &[&str], cmd: &[&str]) -> std::process::Child {
    stockroom(dir)
        .arg("run")
        .args(args)
        .arg("--")
        .args(cmd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stockroom run")
}

fn read_dump(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("dump")).expect("dump json")
}

fn only_dataset_id(pool: &Pool) -> String {
    let (_, body) = pool.request(
        "GET",
        "/api/v1/datasets?type=customer&state=active",
        None,
        None,
    );
    body["datasets"][0]["id"]
        .as_str()
        .expect("a dataset")
        .to_string()
}

#[test]
fn run_injects_the_datasets_releases_as_passed_and_prints_no_secret() {
    let pool = Pool::start();
    seed_customers(&pool, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "stockroom.toml", &manifest(&pool, ""));
    let dump = dir.path().join("env.json");
    let out = stockroom(dir.path())
        .args(["run", "--shard-index", "1", "--shard-total", "3", "--"])
        .arg(helper("dump_env"))
        .arg(&dump)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_no_secret(&out);
    let v = read_dump(&dump);
    let env = &v["env"];
    assert_eq!(env["STOCKROOM_BUYER_CUSTOMER_ID"], "C0");
    assert_eq!(env["STOCKROOM_BUYER_EMAIL"], "c0@x.test");
    assert_eq!(
        env["STOCKROOM_BUYER_PASSWORD"], SECRET,
        "secrets are injected like the others"
    );
    assert_eq!(env["STOCKROOM_SHARD_INDEX"], "1");
    assert_eq!(env["STOCKROOM_SHARD_TOTAL"], "3");
    assert!(
        env["STOCKROOM_LEASE_ID"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(v["datasets_file_mode"], 0o600);
    let file: Value =
        serde_json::from_str(v["datasets_file"].as_str().expect("file")).expect("json");
    assert_eq!(file["datasets"]["buyer"]["data"]["customer_id"], "C0");
    assert_eq!(file["shard"], json!({"index": 1, "total": 3}));
    let path = env["STOCKROOM_DATASETS_FILE"].as_str().expect("path");
    assert!(
        !Path::new(path).exists(),
        "the private datasets file is removed at exit"
    );
    assert_eq!(dataset_status(&pool, &only_dataset_id(&pool)), "consumed");
    assert!(active_leases(&pool).is_empty());
}

#[test]
fn exit_codes_and_signals_pass_through_and_failures_quarantine() {
    let pool = Pool::start();
    seed_customers(&pool, 2);
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "stockroom.toml", &manifest(&pool, ""));
    let out = stockroom(dir.path())
        .args(["run", "--"])
        .arg(helper("exit_with"))
        .arg("3")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_no_secret(&out);
    let out = stockroom(dir.path())
        .args(["run", "--"])
        .arg(helper("die_by_signal"))
        .arg("9")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    let (_, body) = pool.request("GET", "/api/v1/datasets?status=quarantined", None, None);
    assert_eq!(body["datasets"].as_array().map(Vec::len), Some(2), "{body}");
}

#[test]
fn sigterm_reaches_the_whole_group_gives_143_and_quarantines() {
    let pool = Pool::start();
    seed_customers(&pool, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "stockroom.toml", &manifest(&pool, ""));
    let marks = dir.path().join("marks");
    std::fs::create_dir(&marks).expect("mkdir");
    let child = spawn_run(
        dir.path(),
        &["--grace", "5s"],
        &[
            helper("spawn_grandchild").to_str().expect("utf8"),
            marks.to_str().expect("utf8"),
        ],
    );
    assert!(
        wait_for_file(&marks.join("ready"), Duration::from_secs(20)),
        "helper never got ready"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));
    assert!(
        marks.join("grandchild-got-term").exists(),
        "the grandchild did not get SIGTERM"
    );
    assert_no_secret(&out);
    assert_eq!(
        dataset_status(&pool, &only_dataset_id(&pool)),
        "quarantined"
    );
}

#[test]
fn a_command_ignoring_sigterm_is_killed_after_the_grace_period() {
    let pool = Pool::start();
    seed_customers(&pool, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "stockroom.toml", &manifest(&pool, ""));
    let marks = dir.path().join("marks");
    std::fs::create_dir(&marks).expect("mkdir");
    // The grace only bounds how long the helper may take to record the
    // forwarded SIGTERM before the SIGKILL; generous for a busy machine.
    let child = spawn_run(
        dir.path(),
        &["--grace", "5s"],
        &[
            helper("ignore_sigterm").to_str().expect("utf8"),
            marks.to_str().expect("utf8"),
        ],
    );
    assert!(wait_for_file(&marks.join("ready"), Duration::from_secs(20)));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        std::fs::read_to_string(marks.join("term-count"))
            .ok()
            .as_deref(),
        Some("1"),
        "SIGTERM was forwarded"
    );
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("SIGKILL"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        dataset_status(&pool, &only_dataset_id(&pool)),
        "quarantined"
    );
}

#[test]
fn the_pool_killed_and_restarted_mid_run_does_not_disturb_the_command() {
    let mut pool = Pool::start();
    seed_customers(&pool, 1);
    // The restarted pool listens on a new port; the running sidecar keeps
    // the relay's address, which the harness holds throughout.
    let relay = Relay::start(&pool.addr);
    let dir = tempfile::tempdir().expect("tempdir");
    // A 30 s TTL heartbeats every 10 s: the first heartbeat after the kill
    // fails, and a retry reaches the restarted pool long before the TTL ends.
    write(
        dir.path(),
        "stockroom.toml",
        &manifest_at(&relay.url(), "lease_ttl = \"30s\""),
    );
    let dump = dir.path().join("env.json");
    let go = dir.path().join("go");
    let mut child = spawn_run(
        dir.path(),
        &[],
        &[
            helper("dump_env").to_str().expect("utf8"),
            dump.to_str().expect("utf8"),
            "--wait-for",
            go.to_str().expect("utf8"),
        ],
    );
    let mut stderr = StderrLines::read(child.stderr.take().expect("piped stderr"));
    assert!(wait_for_file(&dump, WAIT_CAP), "the command never ran");
    relay.cut();
    pool.kill();
    stderr.wait_for(WAIT_CAP, |l| l.contains("failed to heartbeat"));
    pool.restart();
    relay.point_to(&pool.addr);
    stderr.wait_for(WAIT_CAP, |l| l.contains("the pool answers again"));
    std::fs::write(&go, "").expect("go");
    let out = child.wait_with_output().expect("wait");
    let err = stderr.all();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("released lease"), "{err}");
    assert!(!err.contains("LEASE LOST"), "{err}");
    assert_eq!(dataset_status(&pool, &only_dataset_id(&pool)), "consumed");
}

#[test]
fn a_pool_down_at_the_end_keeps_the_commands_exit_code() {
    let mut pool = Pool::start();
    seed_customers(&pool, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "stockroom.toml", &manifest(&pool, ""));
    let dump = dir.path().join("env.json");
    let go = dir.path().join("go");
    let child = spawn_run(
        dir.path(),
        &["--retry-for", "1s"],
        &[
            helper("dump_env").to_str().expect("utf8"),
            dump.to_str().expect("utf8"),
            "--wait-for",
            go.to_str().expect("utf8"),
            "--exit",
            "7",
        ],
    );
    assert!(wait_for_file(&dump, Duration::from_secs(20)));
    pool.kill();
    std::fs::write(&go, "").expect("go");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("failed to release lease"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_lost_lease_is_reported_loudly_and_fail_stops_the_command() {
    let pool = Pool::start();
    seed_customers(&pool, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "stockroom.toml",
        &manifest(&pool, "lease_ttl = \"3s\""),
    );
    let dump = dir.path().join("env.json");
    let go = dir.path().join("never");
    let child = spawn_run(
        dir.path(),
        &["--on-lease-lost", "fail", "--grace", "2s"],
        &[
            helper("dump_env").to_str().expect("utf8"),
            dump.to_str().expect("utf8"),
            "--wait-for",
            go.to_str().expect("utf8"),
        ],
    );
    assert!(wait_for_file(&dump, Duration::from_secs(20)));
    let env = &read_dump(&dump)["env"];
    let lease = env["STOCKROOM_LEASE_ID"]
        .as_str()
        .expect("lease")
        .to_string();
    // The command's own processes hold the lease token (a private file the
    // sidecar names, never the token itself in the environment).
    let token_file = env["STOCKROOM_LEASE_TOKEN_FILE"]
        .as_str()
        .expect("token file");
    let token = std::fs::read_to_string(token_file).expect("read the lease token");
    let (status, _, body) = stockroom_e2e::http_raw(
        &pool.addr,
        "POST",
        &format!("/api/v1/leases/{lease}/release"),
        &[
            ("Host".into(), pool.addr.clone()),
            ("Content-Type".into(), "application/json".into()),
            ("Stockroom-Lease-Token".into(), token.trim().to_string()),
        ],
        json!({"outcome": "cancelled"}).to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let out = child.wait_with_output().expect("wait");
    let err = text(&out.stderr);
    // 79 whatever the stopped command gave (docs/sidecar.md, exit codes).
    assert_eq!(out.status.code(), Some(79), "{err}");
    assert!(err.contains("LEASE LOST") && err.contains(&lease), "{err}");
    assert!(
        err.contains("--on-lease-lost=fail: stopping the command"),
        "{err}"
    );
    assert_no_secret(&out);
}

#[test]
fn not_enough_stock_waits_then_exits_75_with_the_shortfall() {
    let pool = Pool::start();
    seed_customers(&pool, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let text_m = manifest(&pool, "")
        .replace("acquire_timeout = \"2s\"", "acquire_timeout = \"1s\"")
        + "count = 2\n";
    write(dir.path(), "stockroom.toml", &text_m);
    let out = stockroom(dir.path())
        .args(["run", "--", "true"])
        .output()
        .expect("run");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(err.contains("buyer: 1 of 2 ready"), "{err}");
    assert!(active_leases(&pool).is_empty());
}

#[test]
fn sigterm_while_waiting_for_stock_ends_the_wait_and_holds_nothing() {
    let pool = Pool::start();
    seed_customers(&pool, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let text_m = manifest(&pool, "")
        .replace("acquire_timeout = \"2s\"", "acquire_timeout = \"60s\"")
        + "count = 2\n";
    write(dir.path(), "stockroom.toml", &text_m);
    let marker = dir.path().join("command-ran");
    let child = spawn_run(
        dir.path(),
        &[],
        &["touch", marker.to_str().expect("utf-8 path")],
    );
    wait_for(
        "the pool to report the request as waiting for stock",
        WAIT_CAP,
        || {
            let (_, metrics) = pool.request("GET", "/metrics", None, None);
            metrics
                .as_str()
                .is_some_and(|m| m.contains("stockroom_acquire_waiting 1"))
                .then_some(())
        },
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let out = child.wait_with_output().expect("wait");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(err.contains("while waiting for stock"), "{err}");
    assert!(!marker.exists(), "the command must not run after a cancel");
    assert!(active_leases(&pool).is_empty());
}

#[test]
fn a_rejected_token_exits_77_and_is_never_printed() {
    let token = "the-right-token-123";
    let digest = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s '{token}' | sha256sum"))
        .output()
        .expect("sha256sum");
    let digest = text(&digest.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string();
    let pool = Pool::start_with_config(Some(&format!(
        "[[tokens]]\nname = \"ci\"\nrole = \"ci\"\nsha256 = \"{digest}\"\n"
    )));
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "stockroom.toml", &manifest(&pool, ""));
    let wrong = "wrong-token-456";
    let out = stockroom(dir.path())
        .args(["run", "--", "true"])
        .env("STOCKROOM_TOKEN", wrong)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(77), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains(wrong));
    write(dir.path(), "token", token);
    let out = stockroom(dir.path())
        .args(["catalog", "--token-file", "token"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains(token) && !text(&out.stdout).contains(token));
}

#[test]
fn a_dropped_response_is_retried_with_the_same_key_and_leases_once() {
    let pool = Pool::start();
    seed_customers(&pool, 2);
    // A proxy that forwards the first lease request but drops its answer.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let proxy_addr = listener.local_addr().expect("addr").to_string();
    let upstream = pool.addr.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut dropped = false;
        for conn in listener.incoming() {
            let Ok(mut client) = conn else { continue };
            let mut buf = vec![0u8; 65536];
            let mut request = Vec::new();
            // Read headers and body (Content-Length).
            while let Ok(n) = client.read(&mut buf) {
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
            }
            let is_lease = String::from_utf8_lossy(&request).starts_with("POST /api/v1/leases ");
            let Ok(mut up) = std::net::TcpStream::connect(&upstream) else {
                continue;
            };
            // Force one request per upstream connection.
            let text =
                String::from_utf8_lossy(&request).replacen("\r\n", "\r\nConnection: close\r\n", 1);
            let _ = up.write_all(text.as_bytes());
            let mut answer = Vec::new();
            let _ = up.read_to_end(&mut answer);
            if is_lease && !dropped {
                dropped = true; // the pool granted the lease; the client never hears of it
                continue;
            }
            let _ = client.write_all(&answer);
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "stockroom.toml", &manifest(&pool, ""));
    let dump = dir.path().join("env.json");
    let go = dir.path().join("go");
    let child = stockroom(dir.path())
        .args(["run", "--pool", &format!("http://{proxy_addr}"), "--"])
        .arg(helper("dump_env"))
        .arg(&dump)
        .arg("--wait-for")
        .arg(&go)
        .env("STOCKROOM_IDEMPOTENCY_KEY", "e2e-dropped-response")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    assert!(wait_for_file(&dump, Duration::from_secs(30)));
    let leases = active_leases(&pool);
    assert_eq!(leases.len(), 1, "leased twice: {leases:?}");
    std::fs::write(&go, "").expect("go");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (_, ready) = pool.request("GET", "/api/v1/datasets?status=ready", None, None);
    assert_eq!(
        ready["datasets"].as_array().map(Vec::len),
        Some(1),
        "one dataset must stay in stock: {ready}"
    );
}

#[test]
fn start_and_stop_in_separate_processes() {
    let pool = Pool::start();
    seed_customers(&pool, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let ttl = Duration::from_secs(6);
    write(
        dir.path(),
        "stockroom.toml",
        &manifest(&pool, "lease_ttl = \"6s\""),
    );
    let state = dir.path().join("state");
    let dotenv = dir.path().join("vars.env");
    let out = stockroom(dir.path())
        .args(["start", "--format", "shell", "--dotenv"])
        .arg(&dotenv)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .expect("start");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains(SECRET));
    let exports = text(&out.stdout);
    assert!(
        exports.contains("export STOCKROOM_BUYER_CUSTOMER_ID='C0'"),
        "{exports}"
    );
    assert!(
        std::fs::read_to_string(&dotenv)
            .expect("dotenv")
            .contains("STOCKROOM_BUYER_EMAIL=c0@x.test")
    );
    let recorded: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("state.json")).expect("state"))
            .expect("json");
    let pid = recorded["heartbeat_pid"].as_u64().expect("pid") as i32;
    let alive = |pid: i32| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    assert!(alive(pid));
    // Only the background heartbeat can keep the lease past its first
    // expiry: wait for a heartbeat the pool accepted after that moment (its
    // new expiry minus the TTL), the lease active all along.
    let lease = recorded["lease_id"].as_str().expect("lease_id").to_string();
    let first_expiry = instant(&recorded["expires_at"]);
    wait_for(
        "a heartbeat past the lease's first expiry",
        WAIT_CAP,
        || {
            let (status, body) =
                pool.request("GET", &format!("/api/v1/leases/{lease}"), None, None);
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["status"], "active", "the lease was lost: {body}");
            (instant(&body["expires_at"]) - ttl > first_expiry).then_some(())
        },
    );
    let out = stockroom(dir.path())
        .args(["status", "--json", "--state-dir"])
        .arg(&state)
        .output()
        .expect("status");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_no_secret(&out);
    let status: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(status["status"], "active", "{status}");
    assert_eq!(status["heartbeat_running"], true);

    let out = stockroom(dir.path())
        .args(["stop", "--outcome", "passed", "--state-dir"])
        .arg(&state)
        .output()
        .expect("stop");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_no_secret(&out);
    // The release is logged once, where it happened, not again by the summary.
    let stop_log = text(&out.stderr);
    let about_the_lease: Vec<&str> = stop_log.lines().filter(|l| l.contains(&lease)).collect();
    assert_eq!(about_the_lease.len(), 1, "{stop_log}");
    assert!(
        about_the_lease[0].contains(&format!("released lease {lease} as passed")),
        "{stop_log}"
    );
    assert!(!state.join("state.json").exists());
    assert!(!state.join("datasets.json").exists());
    // The heartbeat was a child of `start`, now reparented; it is gone or a zombie of init.
    wait_for("the heartbeat process to end", WAIT_CAP, || {
        let zombie_or_gone = !alive(pid)
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.contains(") Z "));
        zombie_or_gone.then_some(())
    });
    assert_eq!(dataset_status(&pool, &only_dataset_id(&pool)), "consumed");
    // Idempotent: again, and without any start.
    let out = stockroom(dir.path())
        .args(["stop", "--state-dir"])
        .arg(&state)
        .output()
        .expect("stop");
    assert_eq!(out.status.code(), Some(0));
    let out = stockroom(dir.path())
        .args(["stop", "--state-dir"])
        .arg(dir.path().join("never"))
        .output()
        .expect("stop");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn catalog_and_check_against_the_live_catalog() {
    let pool = Pool::start();
    seed_customers(&pool, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "stockroom.toml", &manifest(&pool, ""));
    let out = stockroom(dir.path())
        .arg("catalog")
        .output()
        .expect("catalog");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("customer/active"),
        "{}",
        text(&out.stdout)
    );
    let out = stockroom(dir.path())
        .args(["catalog", "--json"])
        .output()
        .expect("catalog");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v["types"].as_array().is_some_and(|t| !t.is_empty()));
    let out = stockroom(dir.path()).arg("check").output().expect("check");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    write(
        dir.path(),
        "stockroom.toml",
        &manifest(&pool, "").replace("state = \"active\"", "state = \"retired\""),
    );
    let out = stockroom(dir.path()).arg("check").output().expect("check");
    assert_eq!(out.status.code(), Some(65), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("stockroom.toml:8:9: unknown state \"retired\""),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn start_on_github_masks_first_exports_to_github_env_and_stop_writes_the_summary() {
    let pool = Pool::start();
    seed_customers(&pool, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "stockroom.toml", &manifest(&pool, ""));
    let gh = |cmd: &mut std::process::Command| {
        cmd.env("GITHUB_ACTIONS", "true")
            .env("GITHUB_RUN_ID", "42")
            .env("GITHUB_REPOSITORY", "shop/web")
            .env("GITHUB_JOB", "e2e")
            .env("GITHUB_ENV", dir.path().join("github_env"))
            .env("GITHUB_OUTPUT", dir.path().join("github_output"))
            .env("GITHUB_STEP_SUMMARY", dir.path().join("summary.md"))
            .env("RUNNER_TEMP", dir.path());
    };
    let mut start = stockroom(dir.path());
    start.arg("start");
    gh(&mut start);
    let out = start.output().expect("start");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("::add-mask::{SECRET}")),
        "{}",
        text(&out.stdout)
    );
    assert!(!text(&out.stderr).contains(SECRET));
    let env_file = std::fs::read_to_string(dir.path().join("github_env")).expect("GITHUB_ENV");
    assert!(
        env_file.contains("STOCKROOM_BUYER_PASSWORD<<") && env_file.contains(SECRET),
        "{env_file}"
    );
    assert!(
        std::fs::read_to_string(dir.path().join("github_output"))
            .expect("output")
            .contains("lease-id<<")
    );
    assert!(
        dir.path().join("stockroom").join("state.json").exists(),
        "state under $RUNNER_TEMP/stockroom"
    );
    let mut stop = stockroom(dir.path());
    stop.args(["stop", "--outcome", "failed"]);
    gh(&mut stop);
    let out = stop.output().expect("stop");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_no_secret(&out);
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).expect("summary");
    assert!(
        summary.contains("failed") && summary.contains("buyer") && summary.contains("quarantined"),
        "{summary}"
    );
    assert!(!summary.contains(SECRET));
}
