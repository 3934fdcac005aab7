//! The stock policy over real HTTP (docs/pool.md, "Stock"): a pool on
//! loopback with the demo shop's HTTP generators and a manual clock. The
//! catalog's `target` rises with the leases seen, stock follows it, and the
//! target falls back to `min_ready` once the leases leave the demand window
//! (the clock is moved, never slept for).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::{get, post};

use serde_json::{Value, json};
use stockroom_generators::start_demo_shop;
use stockroom_pool::Pool;
use stockroom_pool::service::ManualClock;
use stockroom_pool::stock_policy::DEMAND_WINDOW;
use stockroom_protocol::HumanDuration;
use stockroom_protocol::pool_config::{
    GeneratorConfig, GeneratorEndpoint, PoolConfig, StockConfig, StockPolicy, StoreUrl,
};
use tokio::sync::oneshot;

use common::until;

struct TestPool {
    base: String,
    http: reqwest::Client,
    clock: ManualClock,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

impl TestPool {
    async fn start(policy: StockPolicy, min: u32, max: u32) -> (TestPool, impl Drop) {
        let shop = start_demo_shop(Duration::from_millis(5)).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cfg = PoolConfig {
            listen: "127.0.0.1:0".into(),
            store: StoreUrl::parse(&format!(
                "sqlite://{}",
                dir.path().join("pool.db").display()
            ))
            .unwrap(),
            generators: shop.generator_configs(),
            stock: vec![StockConfig::new("customer", "new", min, max)],
            stock_policy: policy,
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
        let pool = TestPool {
            base,
            http: reqwest::Client::new(),
            clock,
            _stop: stop,
            _dir: dir,
        };
        (pool, shop)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        common::call_json(&self.http, &self.base, method, path, body).await
    }

    /// `customer/new`'s stock in the catalog.
    async fn stock(&self) -> Value {
        let (status, c) = self.call("GET", "/api/v1/catalog", None).await;
        assert_eq!(status, 200, "{c}");
        c["types"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "customer")
            .unwrap()["states"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["state"] == "new")
            .unwrap()["stock"]
            .clone()
    }

    async fn lease(&self, count: u32) {
        let (status, body) = self
            .call(
                "POST",
                "/api/v1/leases",
                Some(json!({"holder": {"job": "burst"}, "wait_seconds": 30,
                    "items": [{"name": "c", "type": "customer", "state": "new", "count": count}]})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let id = body["lease_id"].as_str().unwrap().to_string();
        let (status, body) = self
            .call(
                "POST",
                &format!("/api/v1/leases/{id}/release"),
                Some(json!({"outcome": "passed"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

fn have(stock: &Value) -> u64 {
    stock["ready"].as_u64().unwrap() + stock["generating"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_target_rises_with_demand_and_falls_back_when_it_stops() {
    let (pool, _shop) = TestPool::start(StockPolicy::Demand, 2, 40).await;
    until("min_ready is in stock", || async {
        pool.stock().await["ready"].as_u64() >= Some(2)
    })
    .await;
    let quiet = pool.stock().await;
    assert_eq!(quiet["target"]["target"], 2, "{quiet}");
    assert_eq!(quiet["target"]["demand"], 0, "{quiet}");
    assert_eq!(
        quiet["target"]["demand_window_seconds"],
        DEMAND_WINDOW.as_secs(),
        "{quiet}"
    );
    assert!(
        quiet["target"]["why"]
            .as_str()
            .unwrap()
            .contains("no leases"),
        "{quiet}"
    );

    // A burst: 10 asked for at once (the manual clock stands still).
    pool.lease(10).await;
    let busy = pool.stock().await;
    let t = &busy["target"];
    assert_eq!(t["demand"], 10, "{busy}");
    assert_eq!(t["target"], 12, "10 at once + 20% headroom: {busy}");
    assert!(t["lead_time_ms"].as_u64().unwrap() > 0, "{busy}");
    let why = t["why"].as_str().unwrap();
    assert!(why.contains("10 leased in the last 10m"), "{why}");
    assert!(why.contains("20% headroom"), "{why}");
    until("stock rises to the target", || async {
        pool.stock().await["ready"].as_u64() >= Some(12)
    })
    .await;
    assert!(have(&pool.stock().await) <= 12, "not past the target");
    // The web page's catalog shows the same target and why.
    let page = pool
        .http
        .get(format!("{}/", pool.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("target 12 (min 2, max 40)"), "{page}");
    assert!(page.contains("10 leased in the last 10m"), "{page}");

    // Another burst later, inside the window: the larger one counts.
    pool.clock.advance(60_000);
    pool.lease(5).await;
    let t = pool.stock().await["target"].clone();
    assert_eq!(
        (t["demand"].as_u64(), t["target"].as_u64()),
        (Some(15), Some(12)),
        "{t}"
    );

    // max_ready set lower takes effect at once.
    let (status, body) = pool
        .call(
            "PUT",
            "/api/v1/stock/customer/new",
            Some(json!({"min_ready": 2, "max_ready": 8})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let capped = pool.stock().await;
    assert_eq!(capped["target"]["target"], 8, "{capped}");
    assert!(
        capped["target"]["why"]
            .as_str()
            .unwrap()
            .contains("capped at max_ready 8"),
        "{capped}"
    );
    let (status, body) = pool
        .call(
            "PUT",
            "/api/v1/stock/customer/new",
            Some(json!({"min_ready": 2, "max_ready": 40})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // The first burst leaves the window: only the second one counts.
    pool.clock
        .advance(DEMAND_WINDOW.as_millis() as i64 - 60_000 + 1);
    let t = pool.stock().await["target"].clone();
    assert_eq!(
        (t["demand"].as_u64(), t["target"].as_u64()),
        (Some(5), Some(6)),
        "{t}"
    );
    // Then the second: back to min_ready.
    pool.clock.advance(60_000);
    let calm = pool.stock().await;
    assert_eq!(calm["target"]["target"], 2, "{calm}");
    assert_eq!(calm["target"]["demand"], 0, "{calm}");
    // Stock already made stays (it is leased later); nothing more is made.
    assert!(have(&calm) <= 12, "{calm}");
}

/// `PUT /api/v1/stock/{type}/{state}` takes effect at once the other way
/// too: a raised `max_ready` lets stock follow a demand it capped, and a
/// raised `min_ready` is filled to even with no demand (docs/pool.md, "Stock").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raising_max_ready_or_min_ready_takes_effect_at_once() {
    let (pool, _shop) = TestPool::start(StockPolicy::Demand, 2, 10).await;
    until("min_ready is in stock", || async {
        pool.stock().await["ready"].as_u64() >= Some(2)
    })
    .await;
    // A burst of 10 would want 12, but max_ready caps it at 10.
    pool.lease(10).await;
    let capped = pool.stock().await;
    assert_eq!(capped["target"]["target"], 10, "{capped}");
    assert!(
        capped["target"]["why"]
            .as_str()
            .unwrap()
            .contains("capped at max_ready 10"),
        "{capped}"
    );
    until("stock reaches the capped target", || async {
        pool.stock().await["ready"].as_u64() >= Some(10)
    })
    .await;

    // max_ready raised: the target is the demand's at once, and stock follows.
    let (status, body) = pool
        .call(
            "PUT",
            "/api/v1/stock/customer/new",
            Some(json!({"min_ready": 2, "max_ready": 20})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let raised = pool.stock().await;
    assert_eq!(raised["target"]["target"], 12, "{raised}");
    assert_eq!(raised["target"]["demand"], 10, "{raised}");
    until("stock rises to the raised target", || async {
        pool.stock().await["ready"].as_u64() >= Some(12)
    })
    .await;

    // The burst leaves the window: the target falls to min_ready, which,
    // raised, is the target at once and is filled to.
    pool.clock.advance(DEMAND_WINDOW.as_millis() as i64 + 1);
    let calm = pool.stock().await;
    assert_eq!(
        (
            calm["target"]["demand"].as_u64(),
            calm["target"]["target"].as_u64()
        ),
        (Some(0), Some(2)),
        "{calm}"
    );
    let (status, body) = pool
        .call(
            "PUT",
            "/api/v1/stock/customer/new",
            Some(json!({"min_ready": 15, "max_ready": 20})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let floor = pool.stock().await;
    assert_eq!(floor["target"]["target"], 15, "{floor}");
    until("stock rises to the raised min_ready", || async {
        pool.stock().await["ready"].as_u64() >= Some(15)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_static_policy_fills_to_max_and_says_so() {
    let (pool, _shop) = TestPool::start(StockPolicy::Static, 2, 6).await;
    until("filled to max_ready", || async {
        pool.stock().await["ready"].as_u64() >= Some(6)
    })
    .await;
    let full = pool.stock().await;
    assert_eq!(full["target"]["target"], 2, "{full}");
    assert!(
        full["target"]["why"]
            .as_str()
            .unwrap()
            .starts_with("static policy"),
        "{full}"
    );
    // Leasing 3 leaves 3, above min_ready: the static policy refills nothing.
    pool.lease(3).await;
    let after = pool.stock().await;
    assert_eq!(have(&after), 3, "{after}");
}

/// A test generator of two states that records the state of each call in
/// order and the most calls it had in flight at once.
#[derive(Clone, Default)]
struct Recorder {
    inflight: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    calls: Arc<Mutex<Vec<String>>>,
}

async fn recorder_caps() -> Json<Value> {
    Json(json!({"produces": [
        {"type": "app", "state": "article", "fields": ["id"]},
        {"type": "app", "state": "user", "fields": ["id"]}]}))
}

async fn recorder_generate(State(r): State<Recorder>, Json(req): Json<Value>) -> Json<Value> {
    let now = r.inflight.fetch_add(1, Ordering::SeqCst) + 1;
    r.most.fetch_max(now, Ordering::SeqCst);
    let state = req["state"].as_str().unwrap_or("?").to_string();
    let n = {
        let mut calls = r.calls.lock().unwrap();
        calls.push(state.clone());
        calls.len()
    };
    // The generator's own latency, so that calls overlap.
    tokio::time::sleep(Duration::from_millis(20)).await;
    r.inflight.fetch_sub(1, Ordering::SeqCst);
    let id = format!("{state}-{n}");
    Json(json!({"data": {"id": id}, "entities": [format!("app:{id}")]}))
}

async fn start_recorder(
    policy: StockPolicy,
) -> (Recorder, String, oneshot::Sender<()>, tempfile::TempDir) {
    let r = Recorder::default();
    let app = axum::Router::new()
        .route("/capabilities", get(recorder_caps))
        .route("/generate", post(recorder_generate))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let cfg = PoolConfig {
        listen: "127.0.0.1:0".into(),
        store: StoreUrl::parse(&format!(
            "sqlite://{}",
            dir.path().join("pool.db").display()
        ))
        .unwrap(),
        generators: vec![GeneratorConfig {
            name: "app".into(),
            endpoint: GeneratorEndpoint::Http(url),
            timeout: HumanDuration::from_secs(10),
            concurrency: 2,
            env: Default::default(),
            cwd: None,
        }],
        stock: vec![
            StockConfig::new("app", "article", 8, 40),
            StockConfig::new("app", "user", 8, 40),
        ],
        stock_policy: policy,
        ..PoolConfig::default()
    };
    let pool = Pool::start(cfg).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(pool.serve(listener, async {
        let _ = stopped.await;
    }));
    (r, base, stop, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refills_share_the_generator_and_never_exceed_its_concurrency() {
    let (r, base, _stop, _dir) = start_recorder(StockPolicy::Demand).await;
    let http = reqwest::Client::new();
    until("both states at min_ready", || async {
        r.calls.lock().unwrap().len() >= 16
    })
    .await;
    {
        let calls = r.calls.lock().unwrap();
        let first: Vec<&str> = calls.iter().take(6).map(String::as_str).collect();
        let n = |s: &str| first.iter().filter(|c| **c == s).count();
        assert!(
            n("article") >= 2 && n("user") >= 2,
            "fair from the start: {first:?}"
        );
    }
    // A burst of 12 leases at once, 2 users each: waiters, just in time and
    // refills all compete for the 2 slots.
    let mut leases = Vec::new();
    for i in 0..12 {
        let (http, base) = (http.clone(), base.clone());
        leases.push(tokio::spawn(async move {
            let resp = http
                .post(format!("{base}/api/v1/leases"))
                .json(
                    &json!({"holder": {"job": format!("burst-{i}")}, "wait_seconds": 30,
                    "items": [{"name": "u", "type": "app", "state": "user", "count": 2}]}),
                )
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            assert_eq!(status, 201, "{body}");
        }));
    }
    for l in leases {
        l.await.unwrap();
    }
    assert!(
        r.most.load(Ordering::SeqCst) <= 2,
        "{} calls at once with concurrency 2",
        r.most.load(Ordering::SeqCst)
    );
    assert_eq!(r.most.load(Ordering::SeqCst), 2, "the calls did overlap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_static_policy_fills_one_state_before_the_other() {
    // What demand-following fixes (issue 16: "plain users filled to 40
    // before any user/with-articles was made"): static serves states in name order.
    let (r, _base, _stop, _dir) = start_recorder(StockPolicy::Static).await;
    until("both states filled", || async {
        r.calls.lock().unwrap().len() >= 80
    })
    .await;
    let calls = r.calls.lock().unwrap();
    let first_user = calls.iter().position(|c| c == "user").unwrap();
    assert!(
        first_user >= 30,
        "users only once articles are nearly full: {calls:?}"
    );
}
