//! The pool's support for per-test leasing (docs/per-test.md) over real
//! loopback HTTP: a dataset settled early, per-dataset outcomes in a
//! release, the batch heartbeat, each for the lease's holder only (its
//! lease token), and `holder.test`/`holder.worker` in the views.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use stockroom_protocol::api::LEASE_TOKEN_HEADER;

fn kind(v: &Value) -> &str {
    v["type"].as_str().unwrap_or("").rsplit('/').next().unwrap()
}

async fn post(pool: &Pool, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = pool
        .http
        .post(pool.url(path))
        .bearer_auth(CI_TOKEN)
        .json(&body);
    if let Some(t) = token {
        req = req.header(LEASE_TOKEN_HEADER, t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_release_per_dataset_outcomes_and_batch_heartbeat_need_the_lease_token() {
    let dir = tempfile::tempdir().unwrap();
    let pool = start(
        dir.path(),
        &dir.path().join("p.db"),
        &config_with_tokens(""),
    );
    let items: Vec<Value> = (0..4)
        .map(|n| json!({"type": "customer", "state": "active", "data": {"n": n}, "entities": [format!("customer:P{n}")]}))
        .collect();
    let (s, v) = pool
        .admin("POST", "/api/v1/datasets", Some(Value::Array(items)))
        .await;
    assert_eq!(s, 201, "{v}");
    let lease = json!({"holder": {"ci": "github", "job": "e2e", "test": "tests/test_cart.py::test_pay", "worker": "gw1"},
                       "items": [{"name": "buyer", "type": "customer", "state": "active", "count": 3}]});
    let (s, g) = post(&pool, "/api/v1/leases", None, lease).await;
    assert_eq!(s, 201, "{g}");
    let id = g["lease_id"].as_str().unwrap().to_string();
    let token = g["lease_token"].as_str().unwrap().to_string();
    let ds: Vec<String> = g["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();

    let early = format!("/api/v1/leases/{id}/datasets/{}/release", ds[0]);
    let body = json!({"outcome": "failed", "reason": "AssertionError", "test": "tests/test_cart.py::test_pay"});
    for wrong in [None, Some("lt_wrong")] {
        let (s, v) = post(&pool, &early, wrong, body.clone()).await;
        assert_eq!((s, kind(&v)), (403, "not-holder"), "{v}");
    }
    let (s, v) = post(&pool, &early, Some(&token), body.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "quarantined");
    let (s, v) = post(&pool, &early, Some(&token), json!({"outcome": "passed"})).await;
    assert_eq!(
        (s, &v["status"]),
        (200, &json!("quarantined")),
        "a repeat answers the status: {v}"
    );
    let (s, v) = post(
        &pool,
        &format!("/api/v1/leases/{id}/datasets/ds_nope/release"),
        Some(&token),
        body.clone(),
    )
    .await;
    assert_eq!((s, kind(&v)), (403, "not-holder"), "{v}");
    let (s, v) = post(&pool, &early, Some(&token), json!({"outcome": "maybe"})).await;
    assert_eq!(s, 422, "{v}");

    // The batch: each lease with its own token; a wrong one fails alone.
    let (s, v) = post(&pool, "/api/v1/leases/heartbeat", None,
        json!({"leases": [{"lease_id": id, "lease_token": token}, {"lease_id": id, "lease_token": "lt_wrong"},
                          {"lease_id": "lease_nope"}]})).await;
    assert_eq!(s, 200, "{v}");
    let results = v["leases"].as_array().unwrap();
    assert!(
        results[0]["expires_at"].is_string() && results[0]["problem"].is_null(),
        "{v}"
    );
    assert_eq!(kind(&results[1]["problem"]), "not-holder", "{v}");
    assert_eq!(kind(&results[2]["problem"]), "not-found", "{v}");

    // The views show the test and worker; the dataset's history the test and reason.
    let (s, view) = pool.ci("GET", &format!("/api/v1/leases/{id}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(view["holder"]["test"], "tests/test_cart.py::test_pay");
    assert_eq!(view["holder"]["worker"], "gw1");
    let (_, d) = pool
        .ci("GET", &format!("/api/v1/datasets/{}", ds[0]), None)
        .await;
    let last = d["history"].as_array().unwrap().last().unwrap().clone();
    assert!(
        last["reason"].as_str().unwrap().contains("AssertionError"),
        "{last}"
    );
    assert!(
        last["holder"]
            .as_str()
            .unwrap()
            .contains("test tests/test_cart.py::test_pay"),
        "{last}"
    );

    // The pages: the quarantine names the test, the lease page shows test
    // and worker, the active leases group a job's per-test takes.
    let second = json!({"holder": {"ci": "github", "job": "e2e", "test": "tests/test_cart.py::test_refund", "worker": "gw2"},
                        "items": [{"name": "buyer", "type": "customer", "state": "active"}]});
    let (s, g2) = post(&pool, "/api/v1/leases", None, second).await;
    assert_eq!(s, 201, "{g2}");
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = no_redirect
        .post(pool.url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status().as_u16(), 303);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = |path: String| {
        let req = no_redirect
            .get(pool.url(&path))
            .header("cookie", cookie.clone());
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    let quarantine = page("/ui/quarantine".into()).await;
    assert!(
        quarantine.contains("<td class=\"test\"><code>tests/test_cart.py::test_pay</code></td>"),
        "{quarantine}"
    );
    assert!(quarantine.contains("AssertionError"), "{quarantine}");
    let lease_page = page(format!("/ui/leases/{id}")).await;
    assert!(
        lease_page.contains("tests/test_cart.py::test_pay") && lease_page.contains("gw1"),
        "{lease_page}"
    );
    let leases = page("/ui/leases".into()).await;
    assert!(leases.contains("2 leases (its per-test takes)"), "{leases}");
    assert!(
        leases.contains("tests/test_cart.py::test_refund"),
        "{leases}"
    );

    // The release: per-dataset outcomes, the rest the lease's.
    let release = format!("/api/v1/leases/{id}/release");
    let body = json!({"outcome": "passed", "datasets": {ds[1].clone(): {"outcome": "unused"}}});
    let (s, v) = post(&pool, &release, None, body.clone()).await;
    assert_eq!((s, kind(&v)), (403, "not-holder"), "{v}");
    let (s, v) = post(
        &pool,
        &release,
        Some(&token),
        json!({"outcome": "passed", "datasets": {"ds_stranger": {"outcome": "failed"}}}),
    )
    .await;
    assert_eq!((s, kind(&v)), (422, "invalid-request"), "{v}");
    let (s, v) = post(&pool, &release, Some(&token), body).await;
    assert_eq!(s, 200, "{v}");
    let status: Vec<&str> = v["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["quarantined", "ready", "consumed"], "{v}");
    let (s, v) = post(&pool, &early, Some(&token), json!({"outcome": "passed"})).await;
    assert_eq!((s, kind(&v)), (410, "lease-gone"), "{v}");

    // Both routes are in the API description.
    let (_, api) = pool.ci("GET", "/api/v1/openapi.json", None).await;
    let paths = api["paths"].as_object().unwrap();
    assert!(
        paths.contains_key("/api/v1/leases/{id}/datasets/{dataset_id}/release"),
        "{:?}",
        paths.keys()
    );
    assert!(paths.contains_key("/api/v1/leases/heartbeat"));
}
