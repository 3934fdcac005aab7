//! Lifecycle calls (docs/generators.md, "Lifecycle calls") against a real
//! generator process on loopback (pool/tests/lifecycle/generator.py): reset
//! after a passed lease and on recycle, verify on demand and of old stock,
//! cleanup with retries, and bad answers recorded as failures.
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
        self.call_holding(method, path, body, None).await
    }

    /// [`Self::call`] proving it holds a lease with the lease's token.
    async fn call_holding(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        lease_token: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(token) = lease_token {
            req = req.header(stockroom_protocol::api::LEASE_TOKEN_HEADER, token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
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
        let lid = lease["lease_id"].as_str().unwrap();
        let (s, released) = self
            .call_holding(
                "POST",
                &format!("/api/v1/leases/{lid}/release"),
                Some(json!({"outcome": outcome})),
                lease["lease_token"].as_str(),
            )
            .await;
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
    let lid = lease["lease_id"].as_str().unwrap();
    let (s, released) = pool
        .call_holding(
            "POST",
            &format!("/api/v1/leases/{lid}/release"),
            Some(json!({"outcome": "passed"})),
            lease["lease_token"].as_str(),
        )
        .await;
    assert_eq!(s, 200, "{released}");
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
