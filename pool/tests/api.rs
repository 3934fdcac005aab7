//! API tests against the real binary: every endpoint and every error kind.
#![allow(clippy::unwrap_used, clippy::manual_is_multiple_of)]

mod common;

use common::*;
use serde_json::{Value, json};

fn ds(state: &str, entities: &[&str], country: &str) -> Value {
    json!({"type": "customer", "state": state, "attributes": {"country": country},
           "data": {"customer_id": "C1", "password": "hunter2"}, "secret_fields": ["password"], "entities": entities})
}

fn lease_body(items: Value) -> Value {
    json!({"holder": {"ci": "gitlab", "run_id": "1", "job": "e2e"}, "ttl_seconds": 60, "items": items})
}

fn kind(v: &Value) -> &str {
    v["type"].as_str().unwrap_or("").rsplit('/').next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_roles_and_operations_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let pool = start(
        dir.path(),
        &dir.path().join("p.db"),
        &config_with_tokens(""),
    );
    let (s, v, h) = pool.call("GET", "/api/v1/catalog", None, None).await;
    assert_eq!((s, kind(&v)), (401, "unauthorized"));
    assert_eq!(h["content-type"], "application/problem+json");
    let (s, v, _) = pool
        .call("GET", "/api/v1/catalog", Some("wrong"), None)
        .await;
    assert_eq!((s, kind(&v)), (401, "unauthorized"));
    let (s, v) = pool
        .ci("POST", "/api/v1/datasets", Some(ds("active", &[], "DE")))
        .await;
    assert_eq!((s, kind(&v)), (403, "forbidden"));
    let (s, v) = pool
        .ci(
            "PUT",
            "/api/v1/stock/customer/active",
            Some(json!({"min_ready": 1, "max_ready": 2})),
        )
        .await;
    assert_eq!((s, kind(&v)), (403, "forbidden"));
    let (s, v) = pool
        .admin(
            "PUT",
            "/api/v1/stock/customer/active",
            Some(json!({"min_ready": 1, "max_ready": 2})),
        )
        .await;
    assert_eq!((s, v["max_ready"].as_u64()), (200, Some(2)));
    let (s, v) = pool
        .admin(
            "PUT",
            "/api/v1/stock/customer/active",
            Some(json!({"min_ready": 3, "max_ready": 2})),
        )
        .await;
    assert_eq!((s, kind(&v)), (422, "invalid-request"));
    let (s, v) = pool.ci("GET", "/api/v1/catalog", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["types"][0]["states"][0]["stock"]["min_ready"], 1);
    let (s, v, _) = pool.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, 200);
    assert!(v["paths"]["/api/v1/leases/{id}/heartbeat"]["post"].is_object());
    for path in ["/healthz", "/readyz", "/"] {
        assert_eq!(pool.call("GET", path, None, None).await.0, 200, "{path}");
    }
    let (s, _, _) = pool.call("GET", "/metrics", None, None).await;
    assert_eq!(s, 401, "metrics need a token when tokens are configured");
    let (s, v, _) = pool.call("GET", "/metrics", Some(CI_TOKEN), None).await;
    assert_eq!(s, 200);
    let text = v.as_str().unwrap();
    assert!(
        text.contains("stockroom_leases_granted_total 0")
            && text.contains("stockroom_acquire_seconds_bucket")
    );
    let (s, v, _) = pool.call("GET", "/nope", None, None).await;
    assert_eq!((s, kind(&v)), (404, "not-found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_lifecycle_with_history_and_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let pool = start(
        dir.path(),
        &dir.path().join("p.db"),
        &config_with_tokens(""),
    );
    let (s, v) = pool
        .admin(
            "POST",
            "/api/v1/datasets",
            Some(json!([
                ds("active", &["customer:1"], "DE"),
                ds("active", &["customer:1"], "US"),
                ds("active", &["customer:2"], "US")
            ])),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["datasets"][0]["data"]["password"], "[redacted]");

    // Malformed bodies.
    let resp = pool
        .http
        .post(pool.url("/api/v1/leases"))
        .bearer_auth(CI_TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let p: Value = resp.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("not valid JSON"));
    let (s, v) = pool
        .ci(
            "POST",
            "/api/v1/leases",
            Some(json!({"items": [{"name": "a"}]})),
        )
        .await;
    assert_eq!((s, kind(&v)), (422, "invalid-request"));
    assert!(
        v["detail"].as_str().unwrap().contains("missing field"),
        "{v}"
    );
    let (s, v) = pool
        .ci("POST", "/api/v1/leases", Some(json!({"items": []})))
        .await;
    assert_eq!((s, kind(&v)), (422, "invalid-request"));
    let big = "x".repeat(1024 * 1024 + 10);
    let resp = pool
        .http
        .post(pool.url("/api/v1/leases"))
        .bearer_auth(CI_TOKEN)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(kind(&resp.json::<Value>().await.unwrap()), "too-large");

    // Unknown state.
    let (s, v) = pool
        .ci(
            "POST",
            "/api/v1/leases",
            Some(lease_body(
                json!([{"name": "b", "type": "customer", "state": "nope"}]),
            )),
        )
        .await;
    assert_eq!((s, kind(&v)), (422, "unknown-state"));
    assert_eq!(v["known_states"], json!(["customer/active"]));
    // A request naming a known and an unknown state names only the unknown
    // one; a state is known from its first dataset on (a refusal is not
    // remembered by the pool's cache of known states).
    let (s, v) = pool
        .ci(
            "POST",
            "/api/v1/leases",
            Some(lease_body(json!([
                {"name": "a", "type": "customer", "state": "active"},
                {"name": "b", "type": "customer", "state": "later"}
            ]))),
        )
        .await;
    assert_eq!((s, kind(&v)), (422, "unknown-state"));
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("knows no customer/later;"),
        "{v}"
    );
    let (s, v) = pool
        .admin("POST", "/api/v1/datasets", Some(ds("later", &[], "FR")))
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, g) = pool
        .ci(
            "POST",
            "/api/v1/leases",
            Some(lease_body(
                json!([{"name": "b", "type": "customer", "state": "later"}]),
            )),
        )
        .await;
    assert_eq!(s, 201, "{g}");
    let later = g["lease_id"].as_str().unwrap();
    let (s, v) = pool
        .ci(
            "POST",
            &format!("/api/v1/leases/{later}/release"),
            Some(json!({"outcome": "passed"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // Lease with a where filter; real data in the 201.
    let (s, g) = pool.ci("POST", "/api/v1/leases", Some(lease_body(json!([{"name": "b", "type": "customer", "state": "active", "where": {"country": "US"}}])))).await;
    assert_eq!(s, 201, "{g}");
    let lease = g["lease_id"].as_str().unwrap().to_string();
    assert_eq!(g["datasets"][0]["data"]["password"], "hunter2");
    assert_eq!(g["datasets"][0]["attributes"]["country"], "US");
    assert_eq!(g["heartbeat_interval_seconds"], 20);
    let leased_id = g["datasets"][0]["id"].as_str().unwrap().to_string();
    // The DE dataset shares customer:1 with the leased US one: no stock for two.
    let (s, v, h) = pool
        .call(
            "POST",
            "/api/v1/leases",
            Some(CI_TOKEN),
            Some(lease_body(
                json!([{"name": "b", "type": "customer", "state": "active", "count": 2}]),
            )),
        )
        .await;
    assert_eq!((s, kind(&v)), (503, "no-stock"));
    assert_eq!(v["shortfall"][0]["wanted"], 2);
    assert_eq!(h["retry-after"], "5");

    // Inspect: redacted.
    let (s, v) = pool
        .ci("GET", &format!("/api/v1/leases/{lease}"), None)
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("active")));
    assert_eq!(v["datasets"][0]["data"]["password"], "[redacted]");
    let (_, v) = pool.ci("GET", "/api/v1/leases?status=active", None).await;
    assert_eq!(v["leases"].as_array().unwrap().len(), 1);
    let (s, _) = pool.ci("GET", "/api/v1/leases?status=bogus", None).await;
    assert_eq!(s, 400);
    let (s, v) = pool.ci("GET", "/api/v1/leases/lease_nope", None).await;
    assert_eq!((s, kind(&v)), (404, "not-found"));

    // Heartbeat, with and without a body.
    let (s, v) = pool
        .ci("POST", &format!("/api/v1/leases/{lease}/heartbeat"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = pool
        .ci(
            "POST",
            &format!("/api/v1/leases/{lease}/heartbeat"),
            Some(json!({"ttl_seconds": 30})),
        )
        .await;
    assert_eq!(
        (s, v["heartbeat_interval_seconds"].as_u64()),
        (200, Some(10))
    );

    // Extend: no generator offers extensions yet.
    let (s, v) = pool
        .ci(
            "POST",
            &format!("/api/v1/leases/{lease}/datasets/ds_other/extend"),
            Some(json!({"extension": "x"})),
        )
        .await;
    assert_eq!((s, kind(&v)), (403, "not-holder"));
    let (s, _) = pool
        .ci(
            "POST",
            &format!("/api/v1/leases/{lease}/datasets/{leased_id}/extend"),
            Some(json!({"extension": "x"})),
        )
        .await;
    assert_eq!(s, 422);

    // Idempotency.
    let mut body = lease_body(
        json!([{"name": "c", "type": "customer", "state": "active", "where": {"country": "US"}}]),
    );
    body["idempotency_key"] = json!("k-1");
    let (s1, g1) = pool.ci("POST", "/api/v1/leases", Some(body.clone())).await;
    let (s2, g2) = pool.ci("POST", "/api/v1/leases", Some(body.clone())).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(g1["lease_id"], g2["lease_id"]);

    // Release: failed quarantines; repeat is idempotent; heartbeat is then 410.
    let rel =
        json!({"outcome": "failed", "reason": "2 tests failed", "details_url": "https://ci/1"});
    let (s, a1) = pool
        .ci(
            "POST",
            &format!("/api/v1/leases/{lease}/release"),
            Some(rel.clone()),
        )
        .await;
    assert_eq!(
        (s, a1["datasets"][0]["status"].as_str()),
        (200, Some("quarantined"))
    );
    let (s, a2) = pool
        .ci(
            "POST",
            &format!("/api/v1/leases/{lease}/release"),
            Some(json!({"outcome": "passed"})),
        )
        .await;
    assert_eq!((s, &a2), (200, &a1));
    let (s, v) = pool
        .ci("POST", &format!("/api/v1/leases/{lease}/heartbeat"), None)
        .await;
    assert_eq!((s, kind(&v)), (410, "lease-gone"));
    let (s, _) = pool
        .ci(
            "POST",
            &format!("/api/v1/leases/{lease}/release"),
            Some(json!({"outcome": "bogus"})),
        )
        .await;
    assert_eq!(s, 422);
    let (s, v) = pool
        .ci(
            "POST",
            "/api/v1/leases/lease_nope/release",
            Some(json!({"outcome": "passed"})),
        )
        .await;
    assert_eq!((s, kind(&v)), (404, "not-found"));

    // History of the quarantined dataset, then admin recycle and discard.
    let (s, v) = pool
        .ci("GET", &format!("/api/v1/datasets/{leased_id}"), None)
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("quarantined")));
    let hist = v["history"].as_array().unwrap();
    assert_eq!(
        hist.iter()
            .map(|h| h["to"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["ready", "leased", "quarantined"]
    );
    assert_eq!(hist[1]["lease_id"], json!(lease));
    assert!(
        hist[2]["reason"]
            .as_str()
            .unwrap()
            .contains("2 tests failed")
    );
    assert!(hist[1]["holder"].as_str().unwrap().contains("gitlab"));
    let (s, v) = pool
        .ci(
            "POST",
            &format!("/api/v1/datasets/{leased_id}/recycle"),
            None,
        )
        .await;
    assert_eq!((s, kind(&v)), (403, "forbidden"));
    let (s, v) = pool
        .admin(
            "POST",
            &format!("/api/v1/datasets/{leased_id}/recycle"),
            None,
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ready")));
    let (s, v) = pool
        .admin(
            "POST",
            &format!("/api/v1/datasets/{leased_id}/recycle"),
            None,
        )
        .await;
    assert_eq!((s, kind(&v)), (409, "conflict"));
    let (s, v) = pool
        .admin(
            "POST",
            &format!("/api/v1/datasets/{leased_id}/discard"),
            None,
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("discarded")));
    let (s, _) = pool
        .admin("POST", "/api/v1/datasets/ds_nope/discard", None)
        .await;
    assert_eq!(s, 404);
    let (s, v) = pool
        .ci(
            "GET",
            "/api/v1/datasets?status=discarded&type=customer",
            None,
        )
        .await;
    assert_eq!((s, v["datasets"].as_array().unwrap().len()), (200, 1));
    let (s, _) = pool.ci("GET", "/api/v1/datasets?status=nope", None).await;
    assert_eq!(s, 400);

    // Release of an expired lease: 410 saying the datasets were quarantined.
    let mut short = lease_body(
        json!([{"name": "d", "type": "customer", "state": "active", "where": {"country": "DE"}}]),
    );
    short["ttl_seconds"] = json!(1);
    let (s, g) = pool.ci("POST", "/api/v1/leases", Some(short)).await;
    assert_eq!(s, 201, "{g}");
    let id = g["lease_id"].as_str().unwrap();
    // The pool's own reaper (100 ms interval) expires it once the 1 s TTL is past.
    until("the reaper to expire the lease", || async {
        let (_, v) = pool.ci("GET", &format!("/api/v1/leases/{id}"), None).await;
        v["status"] == "expired"
    })
    .await;
    let (s, v) = pool
        .ci(
            "POST",
            &format!("/api/v1/leases/{id}/release"),
            Some(json!({"outcome": "passed"})),
        )
        .await;
    assert_eq!((s, kind(&v)), (410, "lease-gone"));
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("quarantined at expiry")
    );
    let (_, v, _) = pool.call("GET", "/metrics", Some(CI_TOKEN), None).await;
    assert!(
        v.as_str()
            .unwrap()
            .contains("stockroom_leases_expired_total 1"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_served_first_come_first_served() {
    let dir = tempfile::tempdir().unwrap();
    let pool = std::sync::Arc::new(start(
        dir.path(),
        &dir.path().join("p.db"),
        &config_with_tokens(""),
    ));
    let mut reusable = ds("shared", &[], "DE");
    reusable["reusable"] = json!(true);
    pool.admin(
        "POST",
        "/api/v1/datasets",
        Some(json!([reusable.clone(), reusable])),
    )
    .await;
    let item = |n: u32| {
        lease_body(json!([{"name": "s", "type": "customer", "state": "shared", "count": n}]))
    };
    let (_, a) = pool.ci("POST", "/api/v1/leases", Some(item(2))).await;
    let mut big_body = item(2);
    big_body["wait_seconds"] = json!(30);
    let p = pool.clone();
    let big = tokio::spawn(async move { p.ci("POST", "/api/v1/leases", Some(big_body)).await });
    // The big waiter is queued once the pool reports it waiting.
    wait_for_metric(&pool, "stockroom_acquire_waiting 1").await;
    let mut small_body = item(1);
    small_body["wait_seconds"] = json!(30);
    let p = pool.clone();
    let small = tokio::spawn(async move { p.ci("POST", "/api/v1/leases", Some(small_body)).await });
    wait_for_metric(&pool, "stockroom_acquire_waiting 2").await;
    // An unsatisfiable waiter (wants more than exist) does not block a request for another state.
    let mut huge = item(5);
    huge["wait_seconds"] = json!(1);
    let (s, v) = pool.ci("POST", "/api/v1/leases", Some(huge)).await;
    assert_eq!((s, kind(&v)), (503, "no-stock"));
    let lease = a["lease_id"].as_str().unwrap();
    pool.ci(
        "POST",
        &format!("/api/v1/leases/{lease}/release"),
        Some(json!({"outcome": "passed"})),
    )
    .await;
    let (s, g) = big.await.unwrap();
    assert_eq!(
        s, 201,
        "the earlier, larger request gets both datasets: {g}"
    );
    assert_eq!(g["datasets"].as_array().unwrap().len(), 2);
    assert!(!small.is_finished());
    let big_id = g["lease_id"].as_str().unwrap();
    pool.ci(
        "POST",
        &format!("/api/v1/leases/{big_id}/release"),
        Some(json!({"outcome": "passed"})),
    )
    .await;
    let (s, _) = small.await.unwrap();
    assert_eq!(s, 201);
}

async fn wait_for_metric(pool: &Pool, line: &str) {
    until(&format!("metric {line:?}"), || async {
        let (_, v, _) = pool.call("GET", "/metrics", Some(CI_TOKEN), None).await;
        v.as_str().unwrap().lines().any(|l| l == line)
    })
    .await;
}

#[test]
fn bad_config_exits_78_with_a_position_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "listen = \"127.0.0.1:0\"\nreaper_intervl = \"1s\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stockroom-pool"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:2:1") && err.contains("reaper_intervl"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stockroom-pool"))
        .args(["--listen", "0.0.0.0:0", "--store"])
        .arg(format!("sqlite://{}", dir.path().join("x.db").display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without tokens"));
    assert!(
        !dir.path().join("x.db").exists(),
        "nothing is opened before the config is valid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_pool_gracefully_even_with_a_long_poll() {
    let dir = tempfile::tempdir().unwrap();
    let mut pool = start(
        dir.path(),
        &dir.path().join("p.db"),
        &config_with_tokens(""),
    );
    pool.admin("POST", "/api/v1/datasets", Some(ds("active", &[], "DE")))
        .await;
    pool.ci(
        "POST",
        "/api/v1/leases",
        Some(lease_body(
            json!([{"name": "a", "type": "customer", "state": "active"}]),
        )),
    )
    .await;
    let mut body = lease_body(json!([{"name": "a", "type": "customer", "state": "active"}]));
    body["wait_seconds"] = json!(600);
    let req = pool
        .http
        .post(pool.url("/api/v1/leases"))
        .bearer_auth(CI_TOKEN)
        .json(&body)
        .send();
    let waiter = tokio::spawn(req);
    wait_for_metric(&pool, "stockroom_acquire_waiting 1").await;
    let status = pool.terminate();
    assert!(status.success(), "{status:?}");
    let resp = waiter.await.unwrap().unwrap();
    assert_eq!(resp.status(), 503);
}
