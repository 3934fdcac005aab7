//! The fault suite of issue 13: what an attack on the pool found, kept
//! fixed (docs/pool.md, sections "Cross-site protection", "Lease tokens:
//! only the holder touches a lease", "Idempotency: a key is bound to its
//! request" and the API notes on a full store; docs/generators.md, "Health").
//! Real `stockroom` and `stockroom-pool` binaries on loopback, each case
//! bounded by deadlines.
//!
//! - three parallel `stockroom run` of one Jenkins build without shard
//!   variables: one lease, the others exit 78 with advice (finding 1);
//! - a lease taken over with a known id: 403, nothing changed (finding 2);
//! - a duplicate-entity registration: 422, the state still served (finding 3);
//! - a cross-site POST of a registration and of a lease, and a rebinding
//!   Host, on a tokenless pool (finding 4);
//! - a generator that accepts `generate` and never answers: a waiting lease
//!   ends after its `timeout` with `generator-failed`, the pool answering
//!   all along (finding 5);
//! - a full store (SQLite on a small tmpfs): 507 and `/readyz` 503, then
//!   recovery once space is freed (finding 8).
//!
//! The full-store case mounts its tmpfs itself: run the suite as root or
//! with passwordless `sudo` (`sudo -n mount`). Without either it fails and
//! says so; it never skips (docs/pool.md, "Store").
//!
//! Needs `cargo build -p stockroom -p stockroom-pool` first.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stockroom_e2e::{
    HangingGenerator, Pool, helper, http, http_raw, stockroom, wait_for, wait_for_file,
};

const CI_TOKEN: &str = "ci-fault-token";
const ADMIN_TOKEN: &str = "admin-fault-token";

fn sha256_hex(text: &str) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

fn tokens_config() -> String {
    format!(
        "reaper_interval = \"200ms\"\n[[tokens]]\nname = \"ci\"\nrole = \"ci\"\nsha256 = \"{}\"\n\n[[tokens]]\nname = \"ops\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
        sha256_hex(CI_TOKEN),
        sha256_hex(ADMIN_TOKEN)
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn kind(v: &Value) -> &str {
    v["type"]
        .as_str()
        .unwrap_or("")
        .rsplit('/')
        .next()
        .unwrap_or("")
}

fn customers(n: usize, prefix: &str) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                json!({"type": "customer", "state": "active",
                       "data": {"customer_id": format!("{prefix}{i}"), "password": "hunter2"},
                       "secret_fields": ["password"], "entities": [format!("customer:{prefix}{i}")]})
            })
            .collect(),
    )
}

fn write_manifest(dir: &Path, pool: &Pool) {
    std::fs::write(
        dir.join("stockroom.toml"),
        format!(
            "version = 1\npool = \"{}\"\nacquire_timeout = \"5s\"\n[[dataset]]\nname = \"buyer\"\ntype = \"customer\"\nstate = \"active\"\n",
            pool.url()
        ),
    )
    .expect("write the manifest");
}

/// `stockroom run` as one stage of Jenkins build #41 of job `shop/e2e`,
/// with no shard variables: every such process computes the same key.
fn jenkins_run(dir: &Path, token: Option<&str>, cmd: &[&str]) -> Command {
    let mut c = stockroom(dir);
    c.env("JENKINS_URL", "https://jenkins.example.test/")
        .env("JOB_NAME", "shop/e2e")
        .env("BUILD_NUMBER", "41")
        .env(
            "BUILD_URL",
            "https://jenkins.example.test/job/shop/job/e2e/41/",
        )
        .env("STOCKROOM_RETRY_FOR", "2s")
        .arg("run")
        .arg("--")
        .args(cmd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = token {
        c.env("STOCKROOM_TOKEN", t);
    }
    c
}

fn active_leases(pool: &Pool, token: Option<&str>) -> Vec<Value> {
    let (s, v) = pool.request("GET", "/api/v1/leases?status=active", None, token);
    assert_eq!(s, 200, "{v}");
    v["leases"].as_array().cloned().unwrap_or_default()
}

fn dataset_status(pool: &Pool, id: &str, token: Option<&str>) -> String {
    let (s, v) = pool.request("GET", &format!("/api/v1/datasets/{id}"), None, token);
    assert_eq!(s, 200, "{v}");
    v["status"].as_str().unwrap_or("").to_string()
}

/// One POST with these headers (the pool's own `Host` unless given).
fn post(pool: &Pool, path: &str, headers: &[(&str, &str)], body: &Value) -> (u16, String, Value) {
    let mut h: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        h.push(("Host".into(), pool.addr.clone()));
    }
    http_raw(&pool.addr, "POST", path, &h, body.to_string().as_bytes())
}

/// Finding 1: three parallel runs of one Jenkins build without shard
/// variables never share a lease: one runs, the others exit 78 with advice.
#[test]
fn parallel_runs_with_one_key_never_share_a_lease() {
    let pool = Pool::start();
    pool.seed(customers(3, "J"));
    let dir = tempfile::tempdir().expect("tempdir");
    write_manifest(dir.path(), &pool);
    let dump = dir.path().join("first.json");
    let go = dir.path().join("go");
    let first = jenkins_run(
        dir.path(),
        None,
        &[
            helper("dump_env").to_str().expect("utf8"),
            dump.to_str().expect("utf8"),
            "--wait-for",
            go.to_str().expect("utf8"),
        ],
    )
    .spawn()
    .expect("spawn the first run");
    assert!(
        wait_for_file(&dump, Duration::from_secs(30)),
        "the first run's command never started"
    );

    // Two more, while the first holds its lease.
    let others: Vec<_> = (0..2)
        .map(|i| {
            let ran = dir.path().join(format!("ran-{i}"));
            jenkins_run(dir.path(), None, &["touch", ran.to_str().expect("utf8")])
                .spawn()
                .expect("spawn a parallel run")
        })
        .collect();
    for (i, child) in others.into_iter().enumerate() {
        let out = child.wait_with_output().expect("wait");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "run {i}: {err}");
        for advice in [
            "--shard-index",
            "--shard-total",
            "STOCKROOM_IDEMPOTENCY_KEY",
        ] {
            assert!(err.contains(advice), "run {i} names {advice}: {err}");
        }
        assert!(
            !dir.path().join(format!("ran-{i}")).exists(),
            "run {i}'s command ran"
        );
    }
    let leases = active_leases(&pool, None);
    assert_eq!(leases.len(), 1, "one lease: {leases:?}");
    let held = leases[0]["datasets"][0]["id"]
        .as_str()
        .expect("dataset")
        .to_string();
    std::fs::write(&go, "").expect("go");
    let out = first.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(dataset_status(&pool, &held, None), "consumed");
    // Only the first lease ever touched a dataset.
    let (_, all) = pool.request("GET", "/api/v1/leases", None, None);
    assert_eq!(all["leases"].as_array().map(Vec::len), Some(1), "{all}");
}

/// Finding 2: another job's `ci` token and a lease id from the list grant
/// nothing: heartbeat, release and extend are 403 and change nothing.
#[test]
fn a_lease_taken_over_with_a_known_id_is_refused() {
    let pool = Pool::start_with_config(Some(&tokens_config()));
    let (s, v) = pool.request(
        "POST",
        "/api/v1/datasets",
        Some(&customers(1, "T")),
        Some(ADMIN_TOKEN),
    );
    assert_eq!(s, 201, "{v}");
    let dir = tempfile::tempdir().expect("tempdir");
    write_manifest(dir.path(), &pool);
    let dump = dir.path().join("env.json");
    let go = dir.path().join("go");
    let job = jenkins_run(
        dir.path(),
        Some(CI_TOKEN),
        &[
            helper("dump_env").to_str().expect("utf8"),
            dump.to_str().expect("utf8"),
            "--wait-for",
            go.to_str().expect("utf8"),
        ],
    )
    .spawn()
    .expect("spawn the job");
    assert!(
        wait_for_file(&dump, Duration::from_secs(30)),
        "the job never started"
    );

    // The attacker: a ci token of its own and the public list of leases.
    let leases = active_leases(&pool, Some(CI_TOKEN));
    assert_eq!(leases.len(), 1);
    let id = leases[0]["lease_id"].as_str().expect("id").to_string();
    let ds = leases[0]["datasets"][0]["id"]
        .as_str()
        .expect("dataset")
        .to_string();
    assert_eq!(leases[0]["datasets"][0]["data"]["password"], "[redacted]");
    let bearer = format!("Bearer {CI_TOKEN}");
    let auth = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    for (path, body) in [
        (
            format!("/api/v1/leases/{id}/heartbeat"),
            json!({"ttl_seconds": 1}),
        ),
        (
            format!("/api/v1/leases/{id}/release"),
            json!({"outcome": "failed", "reason": "taken over"}),
        ),
        (
            format!("/api/v1/leases/{id}/datasets/{ds}/extend"),
            json!({"extension": "add-card"}),
        ),
    ] {
        let (s, head, v) = post(&pool, &path, &auth, &body);
        assert_eq!((s, kind(&v)), (403, "not-holder"), "{path}: {v}");
        assert!(head.contains("application/problem+json"), "{head}");
        assert!(!v.to_string().contains("hunter2"), "{v}");
    }
    assert_eq!(dataset_status(&pool, &ds, Some(CI_TOKEN)), "leased");
    assert_eq!(active_leases(&pool, Some(CI_TOKEN)).len(), 1);
    // The holder ends it as it should.
    std::fs::write(&go, "").expect("go");
    let out = job.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(dataset_status(&pool, &ds, Some(CI_TOKEN)), "consumed");
    let (_, v) = pool.request("GET", &format!("/api/v1/leases/{id}"), None, Some(CI_TOKEN));
    assert_eq!(v["outcome"], "passed", "{v}");
}

/// Finding 3: a registration with a repeated entity is refused, and the
/// state's good datasets keep being leased.
#[test]
fn a_duplicate_entity_registration_is_refused_and_the_state_still_served() {
    let pool = Pool::start();
    pool.seed(customers(1, "D"));
    let bad = json!({"type": "customer", "state": "active", "data": {"customer_id": "X"},
                     "entities": ["customer:X", "customer:X"]});
    let (s, _, v) = post(
        &pool,
        "/api/v1/datasets",
        &[("Content-Type", "application/json")],
        &bad,
    );
    assert_eq!((s, kind(&v)), (422, "invalid-request"), "{v}");
    assert!(v["detail"].as_str().unwrap_or("").contains("twice"), "{v}");
    let dir = tempfile::tempdir().expect("tempdir");
    write_manifest(dir.path(), &pool);
    let out: Output = stockroom(dir.path())
        .args(["run", "--", "true"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// Finding 4: a web page of another site cannot use a tokenless pool.
#[test]
fn a_cross_site_post_on_a_tokenless_pool_is_refused() {
    let pool = Pool::start();
    let body = customers(1, "X");
    let port = pool
        .addr
        .rsplit_once(':')
        .map(|(_, p)| p)
        .unwrap_or("")
        .to_string();
    let evil_host = format!("evil.example:{port}");
    for (what, headers, want) in [
        (
            "a simple form-like POST",
            vec![("Content-Type", "text/plain")],
            415,
        ),
        (
            "another Origin",
            vec![
                ("Content-Type", "application/json"),
                ("Origin", "https://evil.example"),
            ],
            403,
        ),
        (
            "Sec-Fetch-Site",
            vec![
                ("Content-Type", "application/json"),
                ("Sec-Fetch-Site", "cross-site"),
            ],
            403,
        ),
        (
            "DNS rebinding",
            vec![
                ("Content-Type", "application/json"),
                ("Host", evil_host.as_str()),
            ],
            403,
        ),
    ] {
        let (s, head, v) = post(&pool, "/api/v1/datasets", &headers, &body);
        assert_eq!(s, want, "{what}: {v}");
        assert!(head.contains("application/problem+json"), "{what}: {head}");
    }
    let (_, v) = pool.request("GET", "/api/v1/datasets", None, None);
    assert_eq!(
        v["datasets"].as_array().map(Vec::len),
        Some(0),
        "nothing registered: {v}"
    );
}

/// Finding 4, "drains stock": a cross-site `POST /api/v1/leases` on a
/// tokenless pool is refused like a registration and holds nothing; the
/// same request from the pool's own origin is granted.
#[test]
fn a_cross_site_lease_on_a_tokenless_pool_is_refused_and_holds_nothing() {
    let pool = Pool::start();
    let seeded = pool.seed(customers(1, "L"));
    let id = seeded["datasets"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("registered id: {seeded}"))
        .to_string();
    let body = json!({"holder": {"ci": "local", "run_id": "1", "job": "page", "shard_index": 0,
                                 "shard_total": 1, "url": "https://evil.example/"},
                      "ttl_seconds": 86400,
                      "items": [{"name": "buyer", "type": "customer", "state": "active"}]});
    let port = pool
        .addr
        .rsplit_once(':')
        .map(|(_, p)| p)
        .unwrap_or("")
        .to_string();
    let evil_host = format!("evil.example:{port}");
    for (what, headers, want) in [
        (
            "a simple text/plain POST",
            vec![("Content-Type", "text/plain")],
            415,
        ),
        (
            "another Origin",
            vec![
                ("Content-Type", "application/json"),
                ("Origin", "https://evil.example"),
            ],
            403,
        ),
        (
            "Sec-Fetch-Site: cross-site",
            vec![
                ("Content-Type", "application/json"),
                ("Sec-Fetch-Site", "cross-site"),
            ],
            403,
        ),
        (
            "Sec-Fetch-Site: same-site",
            vec![
                ("Content-Type", "application/json"),
                ("Sec-Fetch-Site", "same-site"),
            ],
            403,
        ),
        (
            "DNS rebinding",
            vec![
                ("Content-Type", "application/json"),
                ("Host", evil_host.as_str()),
            ],
            403,
        ),
    ] {
        let (s, head, v) = post(&pool, "/api/v1/leases", &headers, &body);
        assert_eq!(s, want, "{what}: {v}");
        assert!(head.contains("application/problem+json"), "{what}: {head}");
        assert!(v.get("lease_token").is_none(), "{what}: {v}");
        assert!(!v.to_string().contains("hunter2"), "{what}: {v}");
    }
    assert!(active_leases(&pool, None).is_empty(), "nothing leased");
    let (_, all) = pool.request("GET", "/api/v1/leases", None, None);
    assert_eq!(all["leases"].as_array().map(Vec::len), Some(0), "{all}");
    assert_eq!(dataset_status(&pool, &id, None), "ready");

    // The very same request from the pool's own origin is a lease: the
    // refusals above were the guard's, not a bad body's.
    let own = pool.url();
    let (s, _, v) = post(
        &pool,
        "/api/v1/leases",
        &[
            ("Content-Type", "application/json"),
            ("Origin", own.as_str()),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        &body,
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["datasets"][0]["id"], id.as_str(), "{v}");
    assert_eq!(dataset_status(&pool, &id, None), "leased");
}

fn lease_waiting(type_name: &str, state: &str, wait_seconds: u64) -> Value {
    json!({"holder": {"ci": "local", "run_id": "5", "job": "e2e"},
           "ttl_seconds": 60, "wait_seconds": wait_seconds,
           "items": [{"name": "buyer", "type": type_name, "state": state}]})
}

/// Finding 5 through the pool binary: a generator that accepts `generate`
/// and never answers. A lease waiting 60 s for its state ends after the
/// generator's `timeout` (one call per failure until the health gate opens
/// after 3) with 502 `generator-failed` naming it and the timeout, not at
/// the end of its wait; the pool answers other requests while the call
/// hangs; once the generator is unavailable, the next lease fails at once
/// without calling it.
#[test]
fn a_hanging_generator_fails_a_waiting_lease_after_its_timeout_and_the_pool_stays_responsive() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    const OPEN_AFTER: usize = 3; // docs/generators.md, "Health"
    let generator = HangingGenerator::start();
    let pool = Pool::start_with_config(Some(&format!(
        "[[generators]]\nname = \"hangs\"\nurl = \"{}\"\ntimeout = \"2s\"\n",
        generator.url()
    )));
    wait_for(
        "the generator's state in the catalog",
        Duration::from_secs(30),
        || {
            let (_, v) = pool.request("GET", "/api/v1/catalog", None, None);
            let types = v["types"].as_array()?;
            types
                .iter()
                .filter(|t| t["type"] == "customer")
                .flat_map(|t| t["states"].as_array().cloned().unwrap_or_default())
                .any(|st| st["state"] == "active" && st["available"] == true)
                .then_some(())
        },
    );
    // Registered stock of another state, leased while the generator hangs.
    pool.seed(
        json!({"type": "order", "state": "placed", "data": {"order_id": "O1"},
                     "entities": ["order:O1"]}),
    );

    let addr = pool.addr.clone();
    let started = Instant::now();
    let waiting = std::thread::spawn(move || {
        let answer = http(
            &addr,
            "POST",
            "/api/v1/leases",
            Some(&lease_waiting("customer", "active", 60)),
            None,
        );
        (answer, started.elapsed())
    });
    assert!(
        generator.wait_for_generate(Duration::from_secs(30)),
        "the waiting lease never made the pool call the generator: {}",
        pool.log()
    );
    // The call hangs now; the pool answers meanwhile.
    assert_eq!(pool.request("GET", "/healthz", None, None).0, 200);
    assert_eq!(readyz(&pool), 200);
    let (s, v) = pool.request("GET", "/api/v1/catalog", None, None);
    assert_eq!(s, 200, "{v}");
    let (s, v) = pool.request(
        "POST",
        "/api/v1/leases",
        Some(&lease_waiting("order", "placed", 0)),
        None,
    );
    assert_eq!(s, 201, "a lease of registered stock during the hang: {v}");
    assert!(
        !waiting.is_finished(),
        "the checks above ran while the generator held the pool's call"
    );

    let ((status, problem), took) = waiting.join().expect("the waiting lease");
    assert_eq!(
        (status, kind(&problem)),
        (502, "generator-failed"),
        "{problem}\n{}",
        pool.log()
    );
    let detail = problem["detail"].as_str().unwrap_or("");
    for part in ["customer/active", "\"hangs\"", "timed out after 2000ms"] {
        assert!(detail.contains(part), "the detail names {part}: {detail}");
    }
    let calls = generator.generates();
    eprintln!("{calls} generate calls; the waiting lease ended after {took:?}");
    assert!(
        (1..=OPEN_AFTER).contains(&calls),
        "{calls} generate calls for one lease: {}",
        pool.log()
    );
    assert!(took >= TIMEOUT * calls as u32, "{took:?} for {calls} calls");
    assert!(
        took < TIMEOUT * OPEN_AFTER as u32 + Duration::from_secs(15),
        "the lease ended with its generator's timeout, not its 60 s wait: {took:?}"
    );
    // Each call left a failed row with its error; nothing was leased.
    let (_, failed) = pool.request("GET", "/api/v1/datasets?status=failed", None, None);
    let failed = failed["datasets"].as_array().cloned().unwrap_or_default();
    assert_eq!(failed.len(), calls, "{failed:?}");
    let (_, v) = pool.request("GET", "/api/v1/catalog", None, None);
    let health = v["generators"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["name"] == "hangs").cloned())
        .unwrap_or_else(|| panic!("the generator's health: {v}"));
    assert_eq!(health["available"], false, "{health}");
    assert!(
        health["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("timed out"),
        "{health}"
    );

    // Unavailable now: the next waiting lease fails at once, calling nothing.
    let again = Instant::now();
    let (s, v) = pool.request(
        "POST",
        "/api/v1/leases",
        Some(&lease_waiting("customer", "active", 60)),
        None,
    );
    assert_eq!((s, kind(&v)), (502, "generator-failed"), "{v}");
    assert!(again.elapsed() < TIMEOUT, "{:?}", again.elapsed());
    assert_eq!(generator.generates(), calls, "no call for the second lease");
}

/// A small tmpfs mounted for one test (as root, else with `sudo -n`),
/// unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
    sudo: bool,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let parent = tempfile::tempdir().expect("tempdir");
        let path = parent.path().join("store");
        std::fs::create_dir(&path).expect("mount point");
        let opts = format!("size={size},mode=0777");
        let args = [
            "-t",
            "tmpfs",
            "-o",
            opts.as_str(),
            "tmpfs",
            path.to_str().expect("utf8"),
        ];
        let direct = Command::new("mount")
            .args(args)
            .status()
            .is_ok_and(|s| s.success());
        let sudo = !direct
            && Command::new("sudo")
                .arg("-n")
                .arg("mount")
                .args(args)
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            direct || sudo,
            "the full-store test mounts a small tmpfs: run it as root or with passwordless sudo"
        );
        Tmpfs {
            path,
            sudo,
            _parent: parent,
        }
    }

    fn free_bytes(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.path).expect("statvfs");
        s.blocks_available() as u64 * s.fragment_size() as u64
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let mut c = if self.sudo {
            let mut c = Command::new("sudo");
            c.args(["-n", "umount", "-l"]);
            c
        } else {
            let mut c = Command::new("umount");
            c.arg("-l");
            c
        };
        let _ = c.arg(&self.path).status();
    }
}

fn readyz(pool: &Pool) -> u16 {
    pool.request("GET", "/readyz", None, None).0
}

/// Finding 8: a full store answers 507 `store-full` (not 500), `/readyz`
/// turns 503 while writes fail, and both recover once space is freed.
#[test]
fn a_full_store_answers_507_and_recovers_once_space_is_freed() {
    let fs = Tmpfs::mount("6m");
    let db = fs.path.join("pool.db");
    let mut pool = Pool::start_on_store(&format!("sqlite://{}", db.display()));
    pool.seed(customers(2, "F"));
    assert_eq!(readyz(&pool), 200);
    // Leave the store a little room, then fill it with registrations.
    let filler = fs.path.join("filler");
    let room = 192 * 1024;
    let fill = fs.free_bytes().saturating_sub(room);
    std::fs::write(&filler, vec![0u8; fill as usize]).expect("filler");
    let payload = "x".repeat(60 * 1024);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut full = None;
    for i in 0..200 {
        assert!(Instant::now() < deadline, "the store never filled up");
        let body = json!({"type": "blob", "state": "big", "data": {"n": i, "payload": payload}});
        let (s, v) = pool.request("POST", "/api/v1/datasets", Some(&body), None);
        match s {
            201 => continue,
            _ => {
                full = Some((s, v));
                break;
            }
        }
    }
    let (s, v) = full.expect("a write failed before 200 registrations");
    eprintln!("the store filled up: {s} {v}");
    assert_eq!((s, kind(&v)), (507, "store-full"), "{v}");
    assert_eq!(readyz(&pool), 503, "/readyz while writes fail");
    let (s, _) = pool.request("GET", "/api/v1/catalog", None, None);
    assert_eq!(s, 200, "reads still work");

    std::fs::remove_file(&filler).expect("free the space");
    let deadline = Instant::now() + Duration::from_secs(30);
    while readyz(&pool) != 200 {
        assert!(
            Instant::now() < deadline,
            "/readyz never recovered: {}",
            pool.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (s, v) = pool.request("POST", "/api/v1/datasets", Some(&customers(1, "G")), None);
    assert_eq!(s, 201, "writes work again: {v}");
    let dir = tempfile::tempdir().expect("tempdir");
    write_manifest(dir.path(), &pool);
    let out = stockroom(dir.path())
        .args(["run", "--", "true"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    pool.kill();
}
