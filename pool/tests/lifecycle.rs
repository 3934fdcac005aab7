//! Lifecycle calls (docs/generators.md, "Lifecycle calls") against a real
//! generator process on loopback (pool/tests/lifecycle/generator.py): reset
//! after a passed lease and on recycle, verify on demand and of old stock,
//! cleanup with retries, bad (malformed, slow, huge) answers recorded as
//! failures, a generator that never answers them backed off, and stock
//! verified or discarded when the generator's capabilities change. The last
//! test walks one demo customer through the whole lifecycle with the real
//! `stockroom-pool` binary and the demo shop's HTTP generators.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap should fail loudly

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use common::until;
use serde_json::{Value, json};
use stockroom_pool::Pool;
use stockroom_pool::service::ManualClock;
use stockroom_protocol::HumanDuration;
use stockroom_protocol::pool_config::{
    GeneratorConfig, GeneratorEndpoint, PoolConfig, StockConfig, StoreUrl,
};
use tokio::sync::oneshot;

/// The generator script, killed when dropped.
struct Generator {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Drop for Generator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Generator {
    async fn start(dir: &Path) -> Generator {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lifecycle/generator.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(dir)
            .spawn()
            .unwrap();
        let port_file = dir.join("port");
        until("the generator's port file", || async { port_file.exists() }).await;
        let port = std::fs::read_to_string(&port_file).unwrap();
        Generator {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir: dir.to_path_buf(),
        }
    }

    fn misbehave(&self, modes: Value) {
        std::fs::write(self.dir.join("mode.json"), modes.to_string()).unwrap();
    }

    /// Replaces the capabilities it answers (whole, so no read sees half).
    fn answer_capabilities(&self, caps: &Value) {
        let tmp = self.dir.join("caps.json.tmp");
        std::fs::write(&tmp, caps.to_string()).unwrap();
        std::fs::rename(tmp, self.dir.join("caps.json")).unwrap();
    }

    /// `(call, request_id)` of every call made for dataset `id`.
    fn calls_for(&self, id: &str) -> Vec<(String, String)> {
        std::fs::read_to_string(self.dir.join("requests.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["id"] == id)
            .map(|v| {
                (
                    v["call"].as_str().unwrap().to_string(),
                    v["request_id"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

/// Polls `check` until it answers `Some`; panics naming `what` after the
/// common wait cap.
async fn poll<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + common::WAIT_CAP;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct TestPool {
    base: String,
    http: reqwest::Client,
    clock: ManualClock,
    _stop: oneshot::Sender<()>,
}

impl TestPool {
    async fn start(dir: &Path, generator: &Generator, stock: Vec<StockConfig>) -> TestPool {
        let mut g =
            GeneratorConfig::new("accounts", GeneratorEndpoint::Http(generator.url.clone()));
        g.timeout = HumanDuration(Duration::from_secs(2));
        // Enough for every call a test makes at once (a backed-off generator
        // is one whose calls all failed together).
        g.concurrency = 8;
        let cfg = PoolConfig {
            listen: "127.0.0.1:0".into(),
            store: StoreUrl::parse(&format!("sqlite://{}", dir.join("pool.db").display())).unwrap(),
            generators: vec![g],
            stock,
            ..PoolConfig::default()
        };
        let clock = ManualClock::new(1_800_000_000_000);
        let pool = Pool::start_with_clock(cfg, Arc::new(clock.clone()))
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(pool.serve(listener, async {
            let _ = stopped.await;
        }));
        TestPool {
            base,
            http: reqwest::Client::new(),
            clock,
            _stop: stop,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Releases a lease as its holder (with its lease token).
    async fn release(&self, lease: &Value, outcome: &str) -> (u16, Value) {
        let lid = lease["lease_id"].as_str().unwrap();
        let resp = self
            .http
            .post(format!("{}/api/v1/leases/{lid}/release", self.base))
            .header(
                stockroom_protocol::api::LEASE_TOKEN_HEADER,
                lease["lease_token"].as_str().unwrap(),
            )
            .json(&json!({"outcome": outcome}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn dataset(&self, id: &str) -> Value {
        self.call("GET", &format!("/api/v1/datasets/{id}"), None)
            .await
            .1
    }

    async fn ready_id(&self, state: &str) -> String {
        poll(&format!("a ready account/{state}"), || async {
            let (_, list) = self
                .call(
                    "GET",
                    &format!("/api/v1/datasets?type=account&state={state}&status=ready"),
                    None,
                )
                .await;
            list["datasets"]
                .as_array()
                .and_then(|d| d.first())
                .map(|d| d["id"].as_str().unwrap().to_string())
        })
        .await
    }

    /// Leases that very dataset (the only ready one) and releases it with `outcome`.
    async fn lease_and_release(&self, state: &str, id: &str, outcome: &str) {
        let (s, lease) = self
            .call(
                "POST",
                "/api/v1/leases",
                Some(json!({"holder": {"job": "t"}, "wait_seconds": 10,
                "items": [{"name": "a", "type": "account", "state": state}]})),
            )
            .await;
        assert_eq!(s, 201, "{lease}");
        assert_eq!(lease["datasets"][0]["id"], id, "{lease}");
        let (s, released) = self.release(&lease, outcome).await;
        assert_eq!(s, 200, "{released}");
    }

    async fn until_history(&self, id: &str, needle: &str) -> Value {
        let deadline = tokio::time::Instant::now() + common::WAIT_CAP - Duration::from_secs(1);
        poll(&format!("{id}'s history to say {needle:?}"), || async {
            let view = self.dataset(id).await;
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{id}'s history never said {needle:?}:\n{}",
                    history_lines(&view).join("\n")
                );
            }
            history_lines(&view)
                .join("\n")
                .contains(needle)
                .then_some(view)
        })
        .await
    }

    async fn until_status(&self, id: &str, status: &str) -> Value {
        poll(&format!("{id} to be {status}"), || async {
            let view = self.dataset(id).await;
            (view["status"] == status).then_some(view)
        })
        .await
    }
}

fn stock(state: &str, min: u32, max: u32, verify_after: Option<u64>) -> StockConfig {
    let mut s = StockConfig::new("account", state, min, max);
    s.verify_after = verify_after.map(HumanDuration::from_secs);
    s
}

fn history_lines(view: &Value) -> Vec<String> {
    view["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{} → {}: {}",
                h["from"].as_str().unwrap_or("-"),
                h["to"].as_str().unwrap_or("?"),
                h["reason"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reusable_dataset_is_reset_after_a_pass_and_on_recycle_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let generator = Generator::start(dir.path()).await;
    let pool = TestPool::start(
        dir.path(),
        &generator,
        vec![stock("shared", 1, 1, Some(600))],
    )
    .await;
    let id = pool.ready_id("shared").await;

    // generate → lease → passed → reset → ready
    pool.lease_and_release("shared", &id, "passed").await;
    let view = pool.until_history(&id, "reset by generator").await;
    assert_eq!(view["status"], "ready", "{view}");
    assert_eq!(
        view["data"]["resets"], 1,
        "the reset's data replaced the old"
    );
    // → lease → failed → quarantined → recycle → (reset) → ready
    pool.lease_and_release("shared", &id, "failed").await;
    pool.until_status(&id, "quarantined").await;
    let (s, recycled) = pool
        .call("POST", &format!("/api/v1/datasets/{id}/recycle"), None)
        .await;
    assert_eq!(s, 200, "{recycled}");
    assert_eq!(
        recycled["status"], "generating",
        "not leasable before its reset: {recycled}"
    );
    let view = pool.until_status(&id, "ready").await;
    assert_eq!(view["data"]["resets"], 2, "{view}");
    // → verify (asked for by an admin)
    let (s, started) = pool
        .call("POST", "/api/v1/stock/account/shared/verify", None)
        .await;
    // The failed lease left the state below min_ready: a second one was made.
    assert_eq!(s, 200, "{started}");
    assert!(started["verifying"].as_u64() >= Some(1), "{started}");
    pool.until_history(&id, "still valid").await;
    pool.until_status(&id, "ready").await;
    // Stock older than verify_after is verified before it is leased.
    pool.clock.advance(601_000);
    pool.until_history(&id, "ready for longer than verify_after")
        .await;
    let view = pool.until_status(&id, "ready").await;
    let lines = history_lines(&view);
    eprintln!("history of {id}:\n  {}", lines.join("\n  "));
    let order = [
        "generation started",
        "generated by",
        "leased",
        "passed; reset before",
        "reset by generator",
        "leased",
        "failed",
        "recycled by",
        "reset by generator",
        "verify started: asked for",
        "still valid",
        "verify_after",
        "still valid",
    ];
    let mut at = 0;
    for want in order {
        let found = lines[at..].iter().position(|l| l.contains(want));
        assert!(
            found.is_some(),
            "{want:?} after line {at} in:\n{}",
            lines.join("\n")
        );
        at += found.unwrap_or(0) + 1;
    }
    // Every call carried a request id; distinct steps had distinct ones.
    let calls = generator.calls_for(&id);
    let resets: Vec<&String> = calls
        .iter()
        .filter(|(c, _)| c == "reset")
        .map(|(_, r)| r)
        .collect();
    assert_eq!(resets.len(), 2, "{calls:?}");
    assert!(
        resets.iter().all(|r| r.starts_with(&id)) && resets[0] != resets[1],
        "{calls:?}"
    );
    assert!(calls.iter().all(|(_, r)| !r.is_empty()), "{calls:?}");

    // Invalid: discarded with the reason, then cleaned up.
    generator.misbehave(json!({"verify": "invalid"}));
    pool.call("POST", "/api/v1/stock/account/shared/verify", None)
        .await;
    let view = pool.until_history(&id, "cleanup: removed").await;
    assert_eq!(view["status"], "discarded");
    assert!(
        view["history"].to_string().contains("the user was deleted"),
        "{view}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_lifecycle_answers_are_recorded_failures_and_cleanup_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let generator = Generator::start(dir.path()).await;
    let pool = TestPool::start(
        dir.path(),
        &generator,
        vec![stock("shared", 1, 1, None), stock("single", 2, 2, None)],
    )
    .await;

    // A malformed reset answer quarantines: never handed out in an unknown state.
    let shared = pool.ready_id("shared").await;
    generator.misbehave(json!({"reset": "malformed"}));
    pool.lease_and_release("shared", &shared, "passed").await;
    let view = pool.until_status(&shared, "quarantined").await;
    let lines = history_lines(&view).join("\n");
    assert!(
        lines.contains("reset via generator \"accounts\" failed: answer is malformed"),
        "{lines}"
    );

    // Cleanup failing (HTTP 500) is retried with backoff and never blocks leasing.
    generator.misbehave(json!({"cleanup": "500"}));
    let single = pool.ready_id("single").await;
    let (s, lease) = pool
        .call(
            "POST",
            "/api/v1/leases",
            Some(json!({"holder": {"job": "t"}, "wait_seconds": 10,
            "items": [{"name": "a", "type": "account", "state": "single", "count": 2}]})),
        )
        .await;
    assert_eq!(s, 201, "{lease}");
    let (s, _) = pool.release(&lease, "passed").await;
    assert_eq!(s, 200);
    pool.until_history(
        &single,
        "cleanup attempt 1 via generator \"accounts\" failed (retried later)",
    )
    .await;
    let (s, again) = pool
        .call(
            "POST",
            "/api/v1/leases",
            Some(json!({"holder": {"job": "t2"}, "wait_seconds": 20,
            "items": [{"name": "a", "type": "account", "state": "single"}]})),
        )
        .await;
    assert_eq!(s, 201, "leasing goes on while cleanup fails: {again}");
    generator.misbehave(json!({}));
    until("the cleanup to be retried and succeed", || async {
        pool.clock.advance(2_000);
        history_lines(&pool.dataset(&single).await)
            .join("\n")
            .contains("cleanup: removed")
    })
    .await;
    let cleanups: Vec<String> = generator
        .calls_for(&single)
        .into_iter()
        .filter(|(c, _)| c == "cleanup")
        .map(|(_, r)| r)
        .collect();
    assert!(cleanups.len() >= 2, "{cleanups:?}");
    assert!(
        cleanups.iter().all(|r| *r == cleanups[0]),
        "one step, one request id: {cleanups:?}"
    );

    // A huge verify answer, then a slow one: failures, retried, then quarantined.
    let (s, _) = pool
        .call("POST", &format!("/api/v1/datasets/{shared}/discard"), None)
        .await;
    assert_eq!(s, 200);
    let fresh = pool.ready_id("shared").await;
    generator.misbehave(json!({"verify": "huge"}));
    pool.call("POST", "/api/v1/stock/account/shared/verify", None)
        .await;
    pool.until_history(&fresh, "answer is larger than").await;
    generator.misbehave(json!({"verify": "slow"}));
    let view = poll("the verify to give up", || async {
        pool.clock.advance(5_000);
        let view = pool.dataset(&fresh).await;
        (view["status"] == "quarantined").then_some(view)
    })
    .await;
    let text = history_lines(&view).join("\n");
    assert!(text.contains("timed out after 2000ms"), "{text}");
    assert!(text.contains("its state is unknown"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_down_generator_is_named_in_the_shortfall_and_fails_a_lease_early() {
    let dir = tempfile::tempdir().unwrap();
    let mut generator = Generator::start(dir.path()).await;
    let pool = TestPool::start(dir.path(), &generator, vec![stock("single", 0, 5, None)]).await;
    poll("the generator's capabilities", || async {
        let c = pool.call("GET", "/api/v1/catalog", None).await.1;
        c["types"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
            .then_some(())
    })
    .await;
    generator.misbehave(json!({"generate": "slow"}));
    let item = json!([{"name": "a", "type": "account", "state": "single"}]);
    let (s, p) = pool
        .call(
            "POST",
            "/api/v1/leases",
            Some(json!({"holder": {"job": "t"}, "wait_seconds": 0, "items": item})),
        )
        .await;
    assert_eq!(s, 503, "{p}");
    assert_eq!(p["shortfall"][0]["generator"], "accounts", "{p}");
    assert!(p["shortfall"][0].get("down").is_none(), "up: {p}");

    // The generator dies: the lease fails early, naming it and why.
    let _ = generator.child.kill();
    let _ = generator.child.wait();
    let started = std::time::Instant::now();
    let (s, p) = pool
        .call(
            "POST",
            "/api/v1/leases",
            Some(json!({"holder": {"job": "t"}, "wait_seconds": 50, "items": item})),
        )
        .await;
    assert_eq!(s, 502, "{p}");
    assert!(
        p["type"].as_str().unwrap().ends_with("/generator-failed"),
        "{p}"
    );
    assert_eq!(p["generator"], "accounts", "{p}");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("is down") && detail.contains("connect"),
        "{detail}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "early, not after wait_seconds"
    );
}

/// The accounts generator's capabilities: `(state, fields, lifecycle)`.
fn account_caps(states: &[(&str, &[&str], &[&str])]) -> Value {
    let produces: Vec<Value> = states
        .iter()
        .map(|(state, fields, lifecycle)| {
            json!({"type": "account", "state": state, "fields": fields,
                   "secret_fields": ["password"], "lifecycle": lifecycle})
        })
        .collect();
    json!({ "produces": produces })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changed_capabilities_verify_or_discard_the_stock_made_under_the_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let generator = Generator::start(dir.path()).await;
    const ACCOUNT: &[&str] = &["user", "password"];
    generator.answer_capabilities(&account_caps(&[
        ("grows", ACCOUNT, &["cleanup", "verify"]),
        ("gains-reset", ACCOUNT, &["cleanup", "verify"]),
        ("loses-verify", ACCOUNT, &["verify"]),
    ]));
    let pool = TestPool::start(
        dir.path(),
        &generator,
        ["grows", "gains-reset", "loses-verify"]
            .into_iter()
            .map(|s| stock(s, 1, 1, None))
            .collect(),
    )
    .await;
    let grows = pool.ready_id("grows").await;
    let gains_reset = pool.ready_id("gains-reset").await;
    let loses_verify = pool.ready_id("loses-verify").await;

    // The generator is upgraded under the ready stock, and the pool refreshes.
    generator.answer_capabilities(&account_caps(&[
        (
            "grows",
            &["user", "password", "email"],
            &["cleanup", "verify"],
        ),
        ("gains-reset", ACCOUNT, &["cleanup", "reset", "verify"]),
        ("loses-verify", ACCOUNT, &[]),
    ]));
    let (s, refreshed) = pool.call("POST", "/api/v1/generators/refresh", None).await;
    assert_eq!(s, 200, "{refreshed}");

    // A newly promised field it lacks: discarded (verify cannot add a field),
    // then cleaned up as its lifecycle still says.
    let view = pool.until_history(&grows, "cleanup: removed").await;
    assert_eq!(view["status"], "discarded", "{view}");
    let lines = history_lines(&view);
    assert!(
        lines.iter().any(|l| l.starts_with("ready → discarded: ")
            && l.contains(
                "capabilities changed: the state now promises field(s) email it was not made with"
            )),
        "{}",
        lines.join("\n")
    );
    // Its replacement is made under the new promise.
    let fresh = poll("a new account/grows with an email", || async {
        let (_, list) = pool
            .call(
                "GET",
                "/api/v1/datasets?type=account&state=grows&status=ready",
                None,
            )
            .await;
        list["datasets"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["id"] != grows.as_str()).cloned())
    })
    .await;
    assert!(fresh["data"]["email"].is_string(), "{fresh}");

    // A changed lifecycle that still offers verify: verified, ready again.
    let view = pool.until_history(&gains_reset, "still valid").await;
    let view = if view["status"] == "ready" {
        view
    } else {
        pool.until_status(&gains_reset, "ready").await
    };
    let lines = history_lines(&view);
    assert!(
        lines.iter().any(|l| l
            == "ready → generating: verify started: capabilities changed: lifecycle cleanup, verify → cleanup, reset, verify"),
        "{}",
        lines.join("\n")
    );
    assert_eq!(
        generator
            .calls_for(&gains_reset)
            .iter()
            .filter(|(c, r)| c == "verify" && !r.is_empty())
            .count(),
        1
    );

    // A lifecycle without verify can no longer tell: discarded, and with no
    // cleanup offered, never called again.
    let view = pool.until_status(&loses_verify, "discarded").await;
    let lines = history_lines(&view);
    assert_eq!(
        lines.last().map(String::as_str),
        Some("ready → discarded: capabilities changed: lifecycle verify → none"),
        "{}",
        lines.join("\n")
    );
    assert!(
        generator
            .calls_for(&loses_verify)
            .iter()
            .all(|(c, _)| c == "generate"),
        "{:?}",
        generator.calls_for(&loses_verify)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reset_that_never_answers_quarantines_and_bad_cleanup_answers_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let generator = Generator::start(dir.path()).await;
    let pool = TestPool::start(
        dir.path(),
        &generator,
        vec![stock("shared", 1, 1, None), stock("single", 2, 2, None)],
    )
    .await;

    // A reset past the generator's timeout: quarantined, never ready unreset.
    let shared = pool.ready_id("shared").await;
    generator.misbehave(json!({"reset": "slow"}));
    pool.lease_and_release("shared", &shared, "passed").await;
    let view = pool.until_status(&shared, "quarantined").await;
    let last = history_lines(&view).pop().unwrap();
    assert!(
        last.starts_with("generating → quarantined: reset via generator \"accounts\" failed: ")
            && last.contains("timed out after 2000ms"),
        "{last}"
    );

    // A huge cleanup answer, then a malformed one: recorded attempts, retried,
    // and the dataset stays consumed (never back in stock).
    let single = pool.ready_id("single").await;
    generator.misbehave(json!({"cleanup": "huge"}));
    pool.lease_and_release("single", &single, "passed").await;
    pool.until_history(
        &single,
        "cleanup attempt 1 via generator \"accounts\" failed (retried later): ",
    )
    .await;
    generator.misbehave(json!({"cleanup": "malformed"}));
    let view = poll("a second cleanup attempt", || async {
        pool.clock.advance(1_500);
        let view = pool.dataset(&single).await;
        history_lines(&view)
            .join("\n")
            .contains("cleanup attempt 2")
            .then_some(view)
    })
    .await;
    let lines = history_lines(&view).join("\n");
    assert!(lines.contains("larger than"), "{lines}");
    assert!(lines.contains("answer is malformed"), "{lines}");
    assert_eq!(view["status"], "consumed", "{view}");
    generator.misbehave(json!({}));
    until("the cleanup to succeed at last", || async {
        pool.clock.advance(5_000);
        history_lines(&pool.dataset(&single).await)
            .join("\n")
            .contains("cleanup: removed")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_generator_that_never_answers_lifecycle_calls_is_backed_off_like_a_failing_generate() {
    let dir = tempfile::tempdir().unwrap();
    let generator = Generator::start(dir.path()).await;
    let pool = TestPool::start(dir.path(), &generator, vec![stock("single", 6, 6, None)]).await;
    let ids: Vec<String> = poll("six ready account/single", || async {
        let (_, list) = pool
            .call(
                "GET",
                "/api/v1/datasets?type=account&state=single&status=ready",
                None,
            )
            .await;
        let ids: Vec<String> = list["datasets"]
            .as_array()?
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_string())
            .collect();
        (ids.len() == 6).then_some(ids)
    })
    .await;

    // Every verify times out at once: six failures in a row.
    generator.misbehave(json!({"verify": "slow"}));
    let (s, started) = pool
        .call("POST", "/api/v1/stock/account/single/verify", None)
        .await;
    assert_eq!(
        (s, started["verifying"].as_u64()),
        (200, Some(6)),
        "{started}"
    );
    for id in &ids {
        pool.until_history(
            id,
            "verify attempt 1 via generator \"accounts\" failed (retried later): ",
        )
        .await;
    }
    // The generator is backed off for all its calls, generate included: a
    // lease that needs a generation fails early, naming it and why.
    let (_, catalog) = pool.call("GET", "/api/v1/catalog", None).await;
    let health = catalog["generators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "accounts")
        .unwrap()
        .clone();
    assert_eq!(health["available"], false, "{health}");
    assert!(
        health["last_error"].as_str().unwrap().contains("timed out"),
        "{health}"
    );
    let (s, p) = pool
        .call(
            "POST",
            "/api/v1/leases",
            Some(json!({"holder": {"job": "t"}, "wait_seconds": 30,
                "items": [{"name": "a", "type": "account", "state": "shared"}]})),
        )
        .await;
    assert_eq!(s, 502, "{p}");
    assert_eq!(p["generator"], "accounts", "{p}");
    assert!(p["detail"].as_str().unwrap().contains("timed out"), "{p}");

    // Calls owed while it is backed off wait without using up their attempts
    // (3 for verify): the clock runs far past every retry, and once the
    // generator answers again every dataset is verified, none quarantined.
    generator.misbehave(json!({}));
    for id in &ids {
        let view = poll(&format!("{id} verified at last"), || async {
            pool.clock.advance(2_000);
            let view = pool.dataset(id).await;
            (view["status"] != "generating").then_some(view)
        })
        .await;
        let lines = history_lines(&view);
        assert_eq!(view["status"], "ready", "{}", lines.join("\n"));
        assert!(
            lines.last().unwrap().contains("still valid"),
            "{}",
            lines.join("\n")
        );
    }
}

/// `(from, to, reason)` of each history line.
fn history_of(view: &Value) -> Vec<(String, String, String)> {
    view["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["from"].as_str().unwrap_or("-").to_string(),
                h["to"].as_str().unwrap_or("?").to_string(),
                h["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The whole lifecycle of one reusable dataset, through the real
/// `stockroom-pool` binary and the demo shop's real HTTP generators: generate
/// → lease → passed → reset → ready → lease → failed → quarantined → recycle
/// → reset → ready → verify → ready, while the shop follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_demo_customer_walks_the_whole_lifecycle_through_the_pool_binary() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = stockroom_generators::start_demo_shop(Duration::from_millis(10))
        .await
        .unwrap();
    let shop = demo.serve_shop_api("127.0.0.1:0").await.unwrap();
    // customer/returning is the demo's reusable state; one in stock at a time.
    let pool = common::start(
        dir.path(),
        &dir.path().join("pool.db"),
        &format!(
            "[[generators]]\nname = \"customers\"\nurl = \"{}\"\n\n\
             [[stock]]\ntype = \"customer\"\nstate = \"returning\"\nmin_ready = 1\nmax_ready = 1\n",
            demo.customers_url
        ),
    );
    let http = reqwest::Client::new();
    let post = |url: String, body: Value| {
        let http = http.clone();
        async move {
            let resp = http.post(url).json(&body).send().await.unwrap();
            resp.status().as_u16()
        }
    };
    let view_of = |id: String| {
        let pool = &pool;
        async move {
            pool.call("GET", &format!("/api/v1/datasets/{id}"), None, None)
                .await
                .1
        }
    };
    let id: String = poll("a ready customer/returning", || async {
        let (_, list, _) = pool
            .call(
                "GET",
                "/api/v1/datasets?type=customer&state=returning&status=ready",
                None,
                None,
            )
            .await;
        list["datasets"][0]["id"].as_str().map(str::to_string)
    })
    .await;
    let settled = |needle: &'static str, count: usize| {
        let id = id.clone();
        let view_of = &view_of;
        async move {
            poll(
                &format!("{id}'s history to say {needle:?} {count} time(s)"),
                || async {
                    let view = view_of(id.clone()).await;
                    let said = history_of(&view)
                        .iter()
                        .filter(|(_, _, r)| r.contains(needle))
                        .count();
                    (said == count && view["status"] != "generating").then_some(view)
                },
            )
            .await
        }
    };
    let lease = || {
        let pool = &pool;
        let id = id.clone();
        async move {
            let (s, lease, _) = pool
                .call(
                    "POST",
                    "/api/v1/leases",
                    None,
                    Some(json!({"holder": {"job": "lifecycle"}, "wait_seconds": 10,
                        "items": [{"name": "login", "type": "customer", "state": "returning"}]})),
                )
                .await;
            assert_eq!(s, 201, "{lease}");
            let leased = lease["datasets"][0].clone();
            assert_eq!(leased["id"], id.as_str(), "{lease}");
            (lease, leased)
        }
    };
    let release = |lease: Value, outcome: &'static str| {
        let pool = &pool;
        async move {
            let lid = lease["lease_id"].as_str().unwrap().to_string();
            let (s, r, _) = pool
                .call(
                    "POST",
                    &format!("/api/v1/leases/{lid}/release"),
                    None,
                    Some(json!({"outcome": outcome})),
                )
                .await;
            assert_eq!(s, 200, "{r}");
        }
    };

    // The test changes the password, and passes: reset brings the stored one back.
    let (l, leased) = lease().await;
    let customer = leased["data"]["customer_id"].as_str().unwrap().to_string();
    let login = json!({"email": leased["data"]["email"], "password": leased["data"]["password"]});
    assert_eq!(
        post(
            format!("{shop}/shop/customers/{customer}/password"),
            json!({"password": "changed by a test"})
        )
        .await,
        200
    );
    assert_eq!(post(format!("{shop}/shop/login"), login.clone()).await, 401);
    release(l, "passed").await;
    let view = settled("reset by generator", 1).await;
    assert_eq!(view["status"], "ready", "{view}");
    assert_eq!(post(format!("{shop}/shop/login"), login.clone()).await, 200);

    // Failed: quarantined for a person, who recycles it: reset again.
    let (l, _) = lease().await;
    assert_eq!(
        post(
            format!("{shop}/shop/customers/{customer}/password"),
            json!({"password": "changed again"})
        )
        .await,
        200
    );
    release(l, "failed").await;
    let view = view_of(id.clone()).await;
    assert_eq!(view["status"], "quarantined", "{view}");
    let (s, recycled, _) = pool
        .call(
            "POST",
            &format!("/api/v1/datasets/{id}/recycle"),
            None,
            None,
        )
        .await;
    assert_eq!(s, 200, "{recycled}");
    settled("reset by generator", 2).await;
    assert_eq!(post(format!("{shop}/shop/login"), login.clone()).await, 200);

    // Verified on demand: still valid.
    let (s, started, _) = pool
        .call(
            "POST",
            "/api/v1/stock/customer/returning/verify",
            None,
            None,
        )
        .await;
    assert_eq!(s, 200, "{started}");
    let view = settled("still valid", 1).await;
    assert_eq!(view["status"], "ready", "{view}");

    eprintln!(
        "history of {id}:\n{}",
        serde_json::to_string_pretty(&view["history"]).unwrap()
    );
    let chain: Vec<(String, String)> = history_of(&view)
        .into_iter()
        .map(|(f, t, _)| (f, t))
        .collect();
    let want: Vec<(String, String)> = [
        ("-", "generating"),
        ("generating", "ready"),
        ("ready", "leased"),
        ("leased", "generating"),
        ("generating", "ready"),
        ("ready", "leased"),
        ("leased", "quarantined"),
        ("quarantined", "generating"),
        ("generating", "ready"),
        ("ready", "generating"),
        ("generating", "ready"),
    ]
    .iter()
    .map(|(f, t)| (f.to_string(), t.to_string()))
    .collect();
    assert_eq!(chain, want, "{}", history_lines(&view).join("\n"));
    let reasons: Vec<String> = history_of(&view).into_iter().map(|(_, _, r)| r).collect();
    let by = "generator \"customers\"";
    let starts = [
        format!("generation started via {by}; request: "),
        format!("generated by {by}"),
        "leased".to_string(),
        "lease released: passed; reset before it is leased again".to_string(),
        format!("reset by {by}: back at its state's start"),
        "leased".to_string(),
        "lease released: failed".to_string(),
        "recycled by hand; reset before it is leased again".to_string(),
        format!("reset by {by}: back at its state's start"),
        "verify started: asked for by ".to_string(),
        format!("verify: still valid, says {by}"),
    ];
    for (reason, start) in reasons.iter().zip(&starts) {
        assert!(
            reason.starts_with(start.as_str()),
            "{reason:?} should start with {start:?}"
        );
    }
    demo.shutdown().await;
}
