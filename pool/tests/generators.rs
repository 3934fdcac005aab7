//! The pool with real generators: HTTP services on loopback (the demo shop and
//! small test services) and real command generators (shell scripts), some of
//! which hang, crash, print garbage, lie about fields or answer slowly.
//! Readiness is polled with a cap, never slept for.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use stockroom_generators::start_demo_shop;
use stockroom_pool::Pool;
use stockroom_protocol::HumanDuration;
use stockroom_protocol::pool_config::{
    GeneratorConfig, GeneratorEndpoint, PoolConfig, StockConfig,
};
use tokio::sync::oneshot;

use common::{WAIT_CAP as CAP, until};

struct TestPool {
    base: String,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

impl TestPool {
    async fn start(generators: Vec<GeneratorConfig>, stock: Vec<StockConfig>) -> TestPool {
        let dir = tempfile::tempdir().unwrap();
        let cfg = PoolConfig {
            listen: "127.0.0.1:0".into(),
            store: stockroom_protocol::pool_config::StoreUrl::parse(&format!(
                "sqlite://{}",
                dir.path().join("pool.db").display()
            ))
            .unwrap(),
            generators,
            stock,
            ..PoolConfig::default()
        };
        let pool = Pool::start(cfg).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(pool.serve(listener, async {
            let _ = stopped.await;
        }));
        TestPool {
            base,
            http: reqwest::Client::new(),
            _stop: stop,
            _dir: dir,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        common::call_json(&self.http, &self.base, method, path, body).await
    }

    async fn catalog(&self) -> Value {
        self.call("GET", "/api/v1/catalog", None).await.1
    }

    async fn lease(&self, items: Value, wait: u64) -> (u16, Value) {
        self.call(
            "POST",
            "/api/v1/leases",
            Some(json!({"holder": {"job": "t"}, "wait_seconds": wait, "items": items})),
        )
        .await
    }
}

fn state_of<'a>(catalog: &'a Value, t: &str, s: &str) -> Option<&'a Value> {
    catalog["types"]
        .as_array()?
        .iter()
        .find(|x| x["type"] == t)?["states"]
        .as_array()?
        .iter()
        .find(|x| x["state"] == s)
}

fn count(catalog: &Value, t: &str, s: &str, status: &str) -> u64 {
    state_of(catalog, t, s)
        .and_then(|x| x["stock"][status].as_u64())
        .unwrap_or(0)
}

fn generator<'a>(catalog: &'a Value, name: &str) -> &'a Value {
    catalog["generators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .unwrap()
}

fn stock(t: &str, s: &str, min: u32, max: u32) -> StockConfig {
    StockConfig {
        type_name: t.into(),
        state: s.into(),
        min_ready: min,
        max_ready: max,
        verify_after: None,
    }
}

fn http_gen(name: &str, url: &str) -> GeneratorConfig {
    GeneratorConfig {
        name: name.into(),
        endpoint: GeneratorEndpoint::Http(url.into()),
        timeout: HumanDuration::from_secs(10),
        concurrency: 4,
        env: Default::default(),
        cwd: None,
    }
}

/// A command generator: a shell script answering `capabilities` with `caps`
/// and `generate` by running `generate` (the request is on stdin).
fn cmd_gen(
    dir: &Path,
    name: &str,
    caps: &Value,
    generate: &str,
    timeout_ms: u64,
) -> GeneratorConfig {
    let path = dir.join(format!("{name}.sh"));
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n  capabilities) printf '%s' '{}' ;;\n  generate) cat >/dev/null; {generate} ;;\n  *) echo \"unknown command $1\" >&2; exit 2 ;;\nesac\n",
        caps
    );
    std::fs::write(&path, script).unwrap();
    GeneratorConfig {
        name: name.into(),
        endpoint: GeneratorEndpoint::Command(vec!["sh".into(), path.display().to_string()]),
        timeout: HumanDuration(Duration::from_millis(timeout_ms)),
        concurrency: 2,
        env: Default::default(),
        cwd: None,
    }
}

fn produces(t: &str, s: &str, extra: Value) -> Value {
    let mut p = json!({"type": t, "state": s, "fields": ["id"]});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn misbehaving_command_generators_leave_failed_datasets_never_stock() {
    let dir = tempfile::tempdir().unwrap();
    let one = |s: &str, extra: Value| json!({"produces": [produces("cmd", s, extra)]});
    let good = "printf '{\"data\":{\"id\":\"%s\"},\"entities\":[\"cmd:%s\"]}' $$ $$";
    let gens = vec![
        cmd_gen(
            dir.path(),
            "garbage",
            &one("garbage", json!({})),
            "echo 'this is not json'",
            10_000,
        ),
        cmd_gen(
            dir.path(),
            "crash",
            &one("crash", json!({})),
            "echo 'boom: database unreachable' >&2; exit 3",
            10_000,
        ),
        cmd_gen(
            dir.path(),
            "liar",
            &one("liar", json!({})),
            "printf '{\"data\":{\"other\":1}}'",
            10_000,
        ),
        cmd_gen(
            dir.path(),
            "badattr",
            &one("badattr", json!({"attributes": {"country": ["DE"]}})),
            "printf '{\"attributes\":{\"country\":\"XX\"},\"data\":{\"id\":1}}'",
            10_000,
        ),
        // Hangs far past its 500 ms timeout: the pool must give up on it.
        cmd_gen(dir.path(), "hang", &one("hang", json!({})), "sleep 30", 500),
        cmd_gen(
            dir.path(),
            "slow",
            &one("slow", json!({})),
            // Slow, yet far inside its 10 s timeout: the pool must wait for it.
            &format!("sleep 0.3; {good}"),
            10_000,
        ),
    ];
    let states = ["garbage", "crash", "liar", "badattr", "hang", "slow"];
    let pool = TestPool::start(gens, states.iter().map(|s| stock("cmd", s, 1, 1)).collect()).await;

    until(
        "every bad generator failed once and the slow one stocked",
        || async {
            let c = pool.catalog().await;
            states[..5]
                .iter()
                .all(|s| count(&c, "cmd", s, "failed") >= 1)
                && count(&c, "cmd", "slow", "ready") == 1
        },
    )
    .await;
    let c = pool.catalog().await;
    for s in &states[..5] {
        assert_eq!(count(&c, "cmd", s, "ready"), 0, "{s} never stocked");
    }
    let expect = [
        ("garbage", "answer is malformed"),
        ("crash", "exit code 3"),
        ("liar", "promised field `id` is missing"),
        ("badattr", "country"),
        ("hang", "timed out"),
    ];
    for (s, text) in expect {
        let (_, list) = pool
            .call(
                "GET",
                &format!("/api/v1/datasets?type=cmd&state={s}&status=failed"),
                None,
            )
            .await;
        let d = &list["datasets"][0];
        let id = d["id"].as_str().unwrap();
        let err = d["error"].as_str().unwrap();
        assert!(err.contains(text), "{s}: {err}");
        assert!(
            err.contains(&format!("generator \"{s}\"")),
            "{s}: the error names the generator: {err}"
        );
        let (_, full) = pool
            .call("GET", &format!("/api/v1/datasets/{id}"), None)
            .await;
        let reasons: Vec<&str> = full["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["reason"].as_str().unwrap())
            .collect();
        assert!(
            reasons[0].contains("request:") && reasons[0].contains(s),
            "the request is kept: {reasons:?}"
        );
        assert!(
            reasons.last().unwrap().starts_with("generation failed"),
            "{reasons:?}"
        );
    }
    let (_, crash) = pool
        .call("GET", "/api/v1/datasets?state=crash&status=failed", None)
        .await;
    assert!(
        crash["datasets"][0]["error"]
            .as_str()
            .unwrap()
            .contains("boom"),
        "stderr is kept"
    );
    // A failing generator backs off instead of being hammered.
    until("the crashing generator is held back", || async {
        let c = pool.catalog().await;
        generator(&c, "crash")["available"] == false
            && state_of(&c, "cmd", "crash").unwrap()["available"] == false
    })
    .await;
    let c = pool.catalog().await;
    assert!(generator(&c, "crash")["failure_rate"].as_f64().unwrap() > 0.5);
    assert_eq!(generator(&c, "slow")["available"], true);
}

/// A test HTTP generator that can be switched down (503 for everything).
#[derive(Clone)]
struct Toggle {
    up: Arc<AtomicBool>,
}

async fn toggle_caps(State(t): State<Toggle>) -> Response {
    if !t.up.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    Json(json!({"produces": [{"type": "flaky", "state": "ok", "fields": ["id"]}]})).into_response()
}

async fn toggle_generate(State(t): State<Toggle>) -> Response {
    if !t.up.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    Json(json!({"data": {"id": id}, "entities": [format!("flaky:{id}")]})).into_response()
}

async fn start_toggle(up: bool) -> (String, Toggle) {
    let t = Toggle {
        up: Arc::new(AtomicBool::new(up)),
    };
    let app = axum::Router::new()
        .route("/capabilities", get(toggle_caps))
        .route("/generate", post(toggle_generate))
        .with_state(t.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_generator_down_at_start_is_unavailable_then_used_once_it_answers() {
    let (url, toggle) = start_toggle(false).await;
    let dir = tempfile::tempdir().unwrap();
    let other = cmd_gen(
        dir.path(),
        "steady",
        &json!({"produces": [produces("steady", "ok", json!({}))]}),
        "printf '{\"data\":{\"id\":1}}'",
        10_000,
    );
    let pool = TestPool::start(
        vec![http_gen("flaky", &url), other],
        vec![stock("flaky", "ok", 2, 3)],
    )
    .await;
    let c = pool.catalog().await;
    assert_eq!(generator(&c, "flaky")["available"], false);
    assert!(
        generator(&c, "flaky")["last_error"]
            .as_str()
            .unwrap()
            .contains("503")
    );
    assert_eq!(state_of(&c, "flaky", "ok").unwrap()["available"], false);
    assert_eq!(
        state_of(&c, "steady", "ok").unwrap()["available"],
        true,
        "the others are served"
    );
    let (status, body) = pool
        .lease(json!([{"name": "f", "type": "flaky", "state": "ok"}]), 0)
        .await;
    assert_eq!(status, 503, "{body}");

    toggle.up.store(true, Ordering::SeqCst);
    let (status, report) = pool.call("POST", "/api/v1/generators/refresh", None).await;
    assert_eq!(status, 200, "{report}");
    let flaky = report["generators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "flaky")
        .unwrap();
    assert_eq!(flaky["ok"], true, "{report}");
    assert_eq!(flaky["produces"], json!(["flaky/ok"]));
    until("the recovered generator fills its stock", || async {
        let c = pool.catalog().await;
        count(&c, "flaky", "ok", "ready") >= 2
    })
    .await;
    let c = pool.catalog().await;
    assert_eq!(state_of(&c, "flaky", "ok").unwrap()["available"], true);
    assert!(count(&c, "flaky", "ok", "ready") + count(&c, "flaky", "ok", "generating") <= 3);
    let (status, body) = pool
        .lease(json!([{"name": "f", "type": "flaky", "state": "ok"}]), 0)
        .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_capabilities_are_reported_in_the_catalog_and_readyz() {
    let dir = tempfile::tempdir().unwrap();
    let ok = "printf '{\"data\":{\"id\":1}}'";
    let a = json!({"produces": [
        produces("x", "dup", json!({})),
        produces("x", "needs-ghost", json!({"requires": [{"name": "g", "type": "x", "state": "ghost"}]})),
        produces("x", "one", json!({"requires": [{"name": "t", "type": "x", "state": "two"}]})),
        produces("x", "two", json!({"requires": [{"name": "o", "type": "x", "state": "one"}]})),
    ]});
    let b = json!({"produces": [produces("x", "dup", json!({}))]});
    let pool = TestPool::start(
        vec![
            cmd_gen(dir.path(), "first", &a, ok, 10_000),
            cmd_gen(dir.path(), "second", &b, ok, 10_000),
        ],
        Vec::new(),
    )
    .await;
    let c = pool.catalog().await;
    let problems: Vec<String> = c["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("x/dup is claimed by more than one generator (first, second)")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("ghost") && p.contains("unknown")),
        "{problems:?}"
    );
    assert!(problems.iter().any(|p| p.contains("cycle")), "{problems:?}");
    let text = pool
        .http
        .get(format!("{}/readyz", pool.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.starts_with("ready\n") && text.contains("problem: state x/dup"),
        "{text}"
    );
    assert!(
        state_of(&c, "x", "dup").is_some(),
        "the first claim is still served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stock_stays_within_bounds_under_concurrent_leasing() {
    let shop = start_demo_shop(Duration::from_millis(10)).await.unwrap();
    let pool = Arc::new(
        TestPool::start(
            shop.generator_configs(),
            vec![stock("customer", "new", 3, 6)],
        )
        .await,
    );
    until("warm", || async {
        count(&pool.catalog().await, "customer", "new", "ready") >= 3
    })
    .await;
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (pool, done) = (Arc::clone(&pool), Arc::clone(&done));
        tokio::spawn(async move {
            let mut samples = 0;
            while !done.load(Ordering::SeqCst) {
                let c = pool.catalog().await;
                let n = count(&c, "customer", "new", "ready")
                    + count(&c, "customer", "new", "generating");
                assert!(n <= 6, "ready + generating = {n} > max_ready");
                samples += 1;
            }
            samples
        })
    };
    let mut leases = Vec::new();
    for _ in 0..16 {
        let pool = Arc::clone(&pool);
        leases.push(tokio::spawn(async move {
            let (status, body) = pool
                .lease(
                    json!([{"name": "c", "type": "customer", "state": "new"}]),
                    30,
                )
                .await;
            assert_eq!(status, 201, "{body}");
            let id = body["lease_id"].as_str().unwrap().to_string();
            let (s, _) = pool
                .call(
                    "POST",
                    &format!("/api/v1/leases/{id}/release"),
                    Some(json!({"outcome": "passed"})),
                )
                .await;
            assert_eq!(s, 200);
        }));
    }
    for l in leases {
        l.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    assert!(sampler.await.unwrap() > 0);
    until("refilled to min_ready", || async {
        count(&pool.catalog().await, "customer", "new", "ready") >= 3
    })
    .await;
    let c = pool.catalog().await;
    assert!(count(&c, "customer", "new", "ready") <= 6);
    assert_eq!(count(&c, "customer", "new", "consumed"), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn composition_extension_route_and_the_extend_endpoint() {
    let shop = start_demo_shop(Duration::from_millis(20)).await.unwrap();
    let pool = TestPool::start(shop.generator_configs(), Vec::new()).await;

    // The extension route: a ready customer/new is extended rather than a
    // customer/active generated (equal unmeasured costs: extend wins the tie).
    let (s, reg) = pool
        .call(
            "POST",
            "/api/v1/datasets",
            Some(json!({"type": "customer", "state": "new", "attributes": {"country": "FR"},
                        "data": {"customer_id": "C9", "email": "c9@x.test", "password": "pw", "country": "FR"},
                        "secret_fields": ["password"], "entities": ["customer:C9"]})),
        )
        .await;
    assert_eq!(s, 201, "{reg}");
    let (s, lease) = pool.lease(json!([{"name": "c", "type": "customer", "state": "active", "where": {"country": "FR"}}]), 30).await;
    assert_eq!(s, 201, "{lease}");
    let active = &lease["datasets"][0];
    assert!(
        active["entities"]
            .as_array()
            .unwrap()
            .contains(&json!("customer:C9")),
        "{active}"
    );
    let (_, full) = pool
        .call(
            "GET",
            &format!("/api/v1/datasets/{}", active["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert!(
        full["history"].to_string().contains("verify-email"),
        "{full}"
    );

    // Composition across two services: order/placed needs a customer with a
    // card (customers → payments), made just in time.
    let (s, lease) = pool
        .lease(
            json!([{"name": "o", "type": "order", "state": "placed", "where": {"country": "DE"}}]),
            30,
        )
        .await;
    assert_eq!(s, 201, "{lease}");
    let order = &lease["datasets"][0];
    assert_eq!(order["attributes"]["country"], "DE");
    let entities = order["entities"].to_string();
    for kind in ["order:", "customer:", "payment_method:"] {
        assert!(entities.contains(kind), "entities are unioned: {entities}");
    }
    let (_, composed) = pool
        .call("GET", "/api/v1/datasets?status=composed", None)
        .await;
    assert!(!composed["datasets"].as_array().unwrap().is_empty());
    let (_, full) = pool
        .call(
            "GET",
            &format!("/api/v1/datasets/{}", order["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert!(full["history"].to_string().contains("part"), "{full}");

    // Extend, for the holder only.
    let (lid, did) = (
        lease["lease_id"].as_str().unwrap(),
        order["id"].as_str().unwrap(),
    );
    let path = format!("/api/v1/leases/{lid}/datasets/{did}/extend");
    let (s, paid) = pool
        .call("POST", &path, Some(json!({"extension": "pay"})))
        .await;
    assert_eq!(s, 200, "{paid}");
    assert_eq!(paid["state"], "paid");
    assert!(paid["data"]["payment_id"].is_string());
    let (s, e) = pool
        .call("POST", &path, Some(json!({"extension": "teleport"})))
        .await;
    assert_eq!(
        (s, e["known_states"].clone()),
        (422, json!(["ship"])),
        "{e}"
    );
    assert!(e["type"].as_str().unwrap().ends_with("unknown-state"));
    let other = lease_of_active(&pool, lid).await;
    let (s, e) = pool
        .call(
            "POST",
            &format!("/api/v1/leases/{other}/datasets/{did}/extend"),
            Some(json!({"extension": "ship"})),
        )
        .await;
    assert_eq!(s, 403, "{e}");
    // The generator fails: 502, the dataset stays leased and unchanged.
    shop.shutdown().await;
    let (s, e) = pool
        .call("POST", &path, Some(json!({"extension": "ship"})))
        .await;
    assert_eq!(s, 502, "{e}");
    assert_eq!(e["generator"], "orders");
    let (_, after) = pool
        .call("GET", &format!("/api/v1/datasets/{did}"), None)
        .await;
    assert_eq!(
        (after["state"].clone(), after["status"].clone()),
        (json!("paid"), json!("leased"))
    );
}

async fn lease_of_active(pool: &TestPool, not: &str) -> String {
    let (_, l) = pool.call("GET", "/api/v1/leases?status=active", None).await;
    l["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["lease_id"].as_str().unwrap().to_string())
        .find(|id| id != not)
        .unwrap()
}

#[test]
fn the_demo_starts_warms_and_serves_the_example_manifest() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let mut pool =
        stockroom_testkit::PoolCommand::new(env!("CARGO_BIN_EXE_stockroom-pool"), dir.path())
            .leading_args(["demo", "--latency", "10ms"])
            .stdout_piped()
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
    let addr = pool.addr();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let base = format!("http://{addr}");
        until("the demo warms", || async {
            let c: Value = http.get(format!("{base}/api/v1/catalog")).send().await.unwrap().json().await.unwrap();
            count(&c, "customer", "active-with-payment", "ready") >= 5 && count(&c, "order", "placed", "ready") >= 5
        })
        .await;
        // The example manifest's items (a DE buyer may still be made just in time).
        let resp = http
            .post(format!("{base}/api/v1/leases"))
            .json(&json!({"holder": {"job": "demo"}, "wait_seconds": 30, "items": [
                {"name": "buyer", "type": "customer", "state": "active-with-payment", "where": {"country": "DE"}},
                {"name": "orders", "type": "order", "state": "placed", "count": 2}]}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["datasets"].as_array().unwrap().len(), 3);
        // The leased buyer lives in the shop, and its stored password logs in.
        let shop = pool.shop_url().expect("the demo's --shop-url-file").to_string();
        assert!(shop.starts_with("http://127.0.0.1:") && !shop.ends_with('\n'), "{shop:?}");
        let buyer = &body["datasets"][0];
        assert_eq!(buyer["name"], "buyer");
        let id = buyer["data"]["customer_id"].as_str().unwrap();
        let c: Value = http.get(format!("{shop}/shop/customers/{id}")).send().await.unwrap().json().await.unwrap();
        assert_eq!((c["has_card"].as_bool(), c["status"].as_str()), (Some(true), Some("active")), "{c}");
        let login = http.post(format!("{shop}/shop/login"))
            .json(&json!({"email": buyer["data"]["email"], "password": buyer["data"]["password"]}))
            .send().await.unwrap();
        assert_eq!(login.status().as_u16(), 200);
        // A placed order from stock is an open order in the shop.
        let order = &body["datasets"][1];
        let oid = order["data"]["order_id"].as_str().unwrap();
        let o: Value = http.get(format!("{shop}/shop/orders/{oid}")).send().await.unwrap().json().await.unwrap();
        assert_eq!(o["status"], "placed", "{o}");
    });
    let status = pool.stop(CAP).unwrap_or_else(|e| panic!("{e}"));
    let mut out = String::new();
    pool.take_stdout()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        out.contains(&format!(
            "STOCKROOM_POOL=http://{addr} stockroom run --manifest examples/stockroom.toml -- env"
        )),
        "{out}"
    );
    assert!(
        out.contains("Shop API (the system under test): http://127.0.0.1:"),
        "{out}"
    );
}

/// A test HTTP generator of two states: `account/held`, whose `generate` is
/// never answered (it stays generating), and `account/broken`, whose
/// `generate` answers 500 once a `held` call has arrived (so that one is
/// in flight before the generator is down).
#[derive(Clone)]
struct Brittle {
    held_arrived: tokio::sync::watch::Sender<bool>,
}

async fn brittle_caps() -> Json<Value> {
    Json(json!({"produces": [
        {"type": "account", "state": "held", "fields": ["id"]},
        {"type": "account", "state": "broken", "fields": ["id"]},
    ]}))
}

async fn brittle_generate(State(b): State<Brittle>, Json(req): Json<Value>) -> Response {
    if req["state"] == "held" {
        b.held_arrived.send_replace(true);
        std::future::pending::<()>().await;
    }
    let mut arrived = b.held_arrived.subscribe();
    let _ = arrived.wait_for(|a| *a).await;
    (StatusCode::INTERNAL_SERVER_ERROR, "database unreachable").into_response()
}

/// A wanted state whose only generator is down while one of it is still
/// generating: not failed early (that one may yet come), but the 503's
/// shortfall names the generator and why it is down (docs/pool.md, `POST
/// /leases`), which the sidecar shows in its progress line.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_down_generator_is_named_with_why_in_the_503_shortfall() {
    let (held_arrived, _) = tokio::sync::watch::channel(false);
    let app = axum::Router::new()
        .route("/capabilities", get(brittle_caps))
        .route("/generate", post(brittle_generate))
        .with_state(Brittle { held_arrived });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut g = http_gen("brittle", &url);
    // Longer than the test: the held call neither times out nor fails.
    g.timeout = HumanDuration::from_secs(600);
    let pool = TestPool::start(
        vec![g],
        vec![
            stock("account", "held", 1, 1),
            stock("account", "broken", 3, 3),
        ],
    )
    .await;
    until(
        "the failing generates to mark the generator down",
        || async {
            let c = pool.catalog().await;
            generator(&c, "brittle")["available"] == false
        },
    )
    .await;
    let c = pool.catalog().await;
    assert_eq!(count(&c, "account", "held", "generating"), 1, "{c}");

    let (status, p) = pool
        .lease(
            json!([{"name": "a", "type": "account", "state": "held"}]),
            0,
        )
        .await;
    assert_eq!(status, 503, "{p}");
    assert!(p["type"].as_str().unwrap().ends_with("/no-stock"), "{p}");
    let short = &p["shortfall"][0];
    assert_eq!(short["name"], "a", "{p}");
    assert_eq!(
        (short["ready"].as_u64(), short["generating"].as_u64()),
        (Some(0), Some(1)),
        "{p}"
    );
    assert_eq!(short["generator"], "brittle", "{p}");
    let down = short["down"]
        .as_str()
        .unwrap_or_else(|| panic!("no `down` in {p}"));
    assert!(
        down.contains("got HTTP status 500") && down.contains("database unreachable"),
        "why it is down: {down}"
    );
}

/// A test HTTP generator that records the `request_id` of every `generate`
/// it is sent and answers the first one 500 (nothing done: retried).
#[derive(Clone, Default)]
struct Recorder {
    ids: Arc<std::sync::Mutex<Vec<String>>>,
}

async fn recorder_caps() -> Json<Value> {
    Json(json!({"produces": [{"type": "account", "state": "new", "fields": ["id"]}]}))
}

async fn recorder_generate(State(r): State<Recorder>, Json(req): Json<Value>) -> Response {
    let id = req["request_id"].as_str().unwrap_or("").to_string();
    let first = {
        let mut ids = r.ids.lock().unwrap();
        ids.push(id.clone());
        ids.len() == 1
    };
    if first {
        return (StatusCode::INTERNAL_SERVER_ERROR, "try again").into_response();
    }
    Json(json!({"data": {"id": id}, "entities": [format!("account:{id}")]})).into_response()
}

/// `generate` carries a `request_id` (docs/generators.md): the same on the
/// retry after a 5xx, so a generator can tell a retry from a new request,
/// and a different one for each generation (the dataset's id).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generate_carries_one_request_id_per_generation_kept_on_a_retry() {
    let recorder = Recorder::default();
    let app = axum::Router::new()
        .route("/capabilities", get(recorder_caps))
        .route("/generate", post(recorder_generate))
        .with_state(recorder.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let pool = TestPool::start(
        vec![http_gen("recorder", &url)],
        vec![stock("account", "new", 2, 2)],
    )
    .await;
    until("two ready account/new", || async {
        count(&pool.catalog().await, "account", "new", "ready") == 2
    })
    .await;
    let ids = recorder.ids.lock().unwrap().clone();
    assert_eq!(
        ids.len(),
        3,
        "one failed call, its retry, one more: {ids:?}"
    );
    assert!(ids.iter().all(|id| !id.is_empty()), "{ids:?}");
    assert_eq!(
        ids.iter().filter(|id| **id == ids[0]).count(),
        2,
        "the 500'd call was retried with its request_id: {ids:?}"
    );
    let (_, list) = pool
        .call(
            "GET",
            "/api/v1/datasets?type=account&state=new&status=ready",
            None,
        )
        .await;
    let mut ready: Vec<String> = list["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    ready.sort();
    let mut sent = ids;
    sent.sort();
    sent.dedup();
    assert_eq!(
        sent, ready,
        "each generation its own request_id, the id of the dataset it made"
    );
}
