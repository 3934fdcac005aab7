//! The pool service behind both adapters: an operation done through the
//! HTTP API or the web page fires the same side effects (waiters woken,
//! stock asked for), and the injected clock drives lease expiry without
//! sleeping. In-process pool on a real SQLite file, real HTTP on loopback.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use stockroom_pool::Pool;
use stockroom_pool::service::{Clock, ManualClock, PoolService, SystemClock};
use stockroom_protocol::pool_config::PoolConfig;

struct Running {
    base: String,
    service: PoolService,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(clock: Arc<dyn Clock>) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stockroom-pool.toml");
    // No tokens: every caller is admin, on the API and the page alike. The
    // reaper stays out of the way: expiry here is driven by the clock.
    let text = format!(
        "store = \"sqlite://{}\"\nreaper_interval = \"1h\"\n",
        dir.path().join("pool.db").display()
    );
    let config = PoolConfig::parse(&path, &text).unwrap();
    let pool = Pool::start_with_clock(config, clock).await.unwrap();
    let service = pool.service().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(pool.serve(listener, async move {
        let _ = stopped.await;
    }));
    Running {
        base,
        service,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _dir: dir,
        _stop: stop,
    }
}

impl Running {
    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let req = self.http.request(
            method.parse().unwrap(),
            format!("{}/api/v1{path}", self.base),
        );
        let mut req = common::with_lease_token(req, path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        common::remember_lease_token(&value);
        (status, value)
    }

    /// A web-page session of the open pool: its cookie and CSRF token.
    async fn page_session(&self) -> (String, String) {
        let resp = self
            .http
            .get(format!("{}/", self.base))
            .send()
            .await
            .unwrap();
        let cookie = resp.headers()[SET_COOKIE].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_string();
        let page = resp.text().await.unwrap();
        let marker = "name=\"csrf\" value=\"";
        let at = page.find(marker).unwrap() + marker.len();
        (cookie, page[at..at + 64].to_string())
    }

    async fn page_settle(&self, id: &str, action: &str) -> u16 {
        let (cookie, csrf) = self.page_session().await;
        self.http
            .post(format!("{}/ui/datasets/{id}/{action}", self.base))
            .header(COOKIE, cookie)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("csrf={csrf}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Registers one dataset of `state` and quarantines it through a failed lease.
    async fn quarantined(&self, state: &str) -> String {
        let (s, v) = self
            .api(
                "POST",
                "/datasets",
                Some(json!({"type": "customer", "state": state, "data": {"n": 1}})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let id = v["datasets"][0]["id"].as_str().unwrap().to_string();
        let lease = self.lease(state, 0).await;
        assert_eq!(lease.0, 201, "{}", lease.1);
        let lease_id = lease.1["lease_id"].as_str().unwrap().to_string();
        let (s, v) = self
            .api(
                "POST",
                &format!("/leases/{lease_id}/release"),
                Some(json!({"outcome": "failed", "reason": "broken"})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(self.status_of(&id).await, "quarantined");
        id
    }

    async fn lease(&self, state: &str, wait_seconds: u64) -> (u16, Value) {
        self.api(
            "POST",
            "/leases",
            Some(
                json!({"holder": {"ci": "test"}, "wait_seconds": wait_seconds, "ttl_seconds": 5,
                        "items": [{"name": "c", "type": "customer", "state": state}]}),
            ),
        )
        .await
    }

    async fn status_of(&self, id: &str) -> String {
        let (_, v) = self.api("GET", &format!("/datasets/{id}"), None).await;
        v["status"].as_str().unwrap_or_default().to_string()
    }
}

#[tokio::test]
async fn settling_through_the_api_or_the_page_wakes_waiters_and_asks_for_stock() {
    let pool = start(Arc::new(SystemClock)).await;
    for via in ["api", "page"] {
        for (action, after) in [("discard", "discarded"), ("recycle", "ready")] {
            let id = pool.quarantined(&format!("{via}-{action}")).await;
            let mut woken = pool.service.queue().subscribe();
            woken.borrow_and_update();
            let asked = pool.service.supply().replenish_requests();
            match via {
                "api" => {
                    let (s, v) = pool
                        .api("POST", &format!("/datasets/{id}/{action}"), None)
                        .await;
                    assert_eq!(s, 200, "{v}");
                }
                _ => assert_eq!(pool.page_settle(&id, action).await, 303),
            }
            assert_eq!(pool.status_of(&id).await, after, "{action} via {via}");
            assert!(
                woken.has_changed().unwrap(),
                "{action} via {via} did not wake the waiters"
            );
            assert!(
                pool.service.supply().replenish_requests() > asked,
                "{action} via {via} did not ask for stock"
            );
        }
    }
}

#[tokio::test]
async fn a_recycle_on_the_page_serves_a_lease_that_waits_for_it() {
    let pool = Arc::new(start(Arc::new(SystemClock)).await);
    let id = pool.quarantined("waited-for").await;
    let waiter = {
        let pool = Arc::clone(&pool);
        tokio::spawn(async move { pool.lease("waited-for", 30).await })
    };
    let queue = pool.service.queue().clone();
    common::until("the lease request to wait for stock", || {
        let waiting = queue.len() == 1;
        async move { waiting }
    })
    .await;
    assert_eq!(pool.page_settle(&id, "recycle").await, 303);
    let (status, granted) = waiter.await.unwrap();
    assert_eq!(status, 201, "{granted}");
    assert_eq!(granted["datasets"][0]["id"], id.as_str());
}

#[tokio::test]
async fn the_injected_clock_expires_a_lease_without_waiting_for_it() {
    let clock = ManualClock::new(1_800_000_000_000);
    let pool = start(Arc::new(clock.clone())).await;
    let (s, _) = pool
        .api(
            "POST",
            "/datasets",
            Some(json!({"type": "customer", "state": "timed", "data": {}})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, lease) = pool.lease("timed", 0).await;
    assert_eq!(s, 201, "{lease}");
    let lease_id = lease["lease_id"].as_str().unwrap();
    let dataset = lease["datasets"][0]["id"].as_str().unwrap();

    // Within the TTL a heartbeat extends it...
    clock.advance(4_000);
    let (s, v) = pool
        .api("POST", &format!("/leases/{lease_id}/heartbeat"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    // ...past it the lease is expired on the spot and its dataset quarantined.
    clock.advance(5_001);
    let (s, v) = pool
        .api("POST", &format!("/leases/{lease_id}/heartbeat"), None)
        .await;
    assert_eq!(s, 410, "{v}");
    assert_eq!(v["lease_id"], lease_id);
    assert_eq!(pool.status_of(dataset).await, "quarantined");
    let metrics = pool.service.metrics_text().await.unwrap();
    assert!(
        metrics.contains("stockroom_leases_expired_total 1"),
        "{metrics}"
    );
}
