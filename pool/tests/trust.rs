//! Leases only their holder can touch, and the hardening of docs/pool.md
//! ("Trust"): lease tokens, idempotency bound to the request, registration
//! checks, cross-site protection, problem+json from every layer, metrics
//! behind a token. Against the real binary over loopback HTTP.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use stockroom_protocol::api::LEASE_TOKEN_HEADER;

fn kind(v: &Value) -> &str {
    v["type"].as_str().unwrap_or("").rsplit('/').next().unwrap()
}

fn ds(n: u32) -> Value {
    json!({"type": "customer", "state": "active", "data": {"customer_id": format!("C{n}"), "password": "hunter2"},
           "secret_fields": ["password"], "entities": [format!("customer:C{n}")]})
}

fn lease_body(key: Option<&str>, instance: &str) -> Value {
    let mut b = json!({"holder": {"ci": "jenkins", "run_id": "7", "job": "e2e", "shard_index": 0, "shard_total": 1,
                                  "instance": instance, "url": "https://ci.example/7"},
                       "ttl_seconds": 60, "items": [{"name": "buyer", "type": "customer", "state": "active"}]});
    if let Some(k) = key {
        b["idempotency_key"] = json!(k);
    }
    b
}

/// A request with an explicit lease token header (or none), never the remembered one.
async fn with_token(
    pool: &Pool,
    bearer: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut req = pool
        .http
        .post(pool.url(path))
        .bearer_auth(bearer)
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

fn tokens_pool(dir: &std::path::Path) -> Pool {
    start(dir, &dir.join("p.db"), &config_with_tokens(""))
}

async fn register(pool: &Pool, n: u32) {
    let (s, v) = pool.admin("POST", "/api/v1/datasets", Some(ds(n))).await;
    assert_eq!(s, 201, "{v}");
}

/// Finding 2: a known lease id no longer grants anything; the token does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_id_alone_cannot_heartbeat_release_or_extend() {
    let dir = tempfile::tempdir().unwrap();
    let pool = tokens_pool(dir.path());
    register(&pool, 1).await;
    let (s, g) = pool
        .ci("POST", "/api/v1/leases", Some(lease_body(None, "a")))
        .await;
    assert_eq!(s, 201, "{g}");
    let id = g["lease_id"].as_str().unwrap();
    let token = g["lease_token"].as_str().unwrap();
    assert!(token.len() >= 32, "at least 128 random bits: {token}");
    let ds_id = g["datasets"][0]["id"].as_str().unwrap();

    // Nowhere else: not in the lease, the list, the datasets or the page.
    for path in [
        format!("/api/v1/leases/{id}"),
        "/api/v1/leases?status=active".to_string(),
        format!("/api/v1/datasets/{ds_id}"),
        "/api/v1/datasets".to_string(),
    ] {
        let (s, v) = pool.ci("GET", &path, None).await;
        assert_eq!(s, 200, "{path}: {v}");
        assert!(!v.to_string().contains(token), "{path} shows the token");
        assert!(v.get("lease_token").is_none());
    }
    let page = pool
        .http
        .get(pool.url(&format!("/ui/leases/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains(token), "the page shows the token");

    let heartbeat = format!("/api/v1/leases/{id}/heartbeat");
    let release = format!("/api/v1/leases/{id}/release");
    let extend = format!("/api/v1/leases/{id}/datasets/{ds_id}/extend");
    let wrong = "lt_0000000000000000000000000000000000000000000000000000000000000000";
    for (path, body) in [
        (&heartbeat, json!({})),
        (&release, json!({"outcome": "failed"})),
        (&extend, json!({"extension": "add-card"})),
    ] {
        for t in [None, Some(wrong), Some("")] {
            let (s, v) = with_token(&pool, CI_TOKEN, path, t, body.clone()).await;
            assert_eq!((s, kind(&v)), (403, "not-holder"), "{path} with {t:?}: {v}");
            assert!(!v.to_string().contains(token));
        }
    }
    // An admin token may release without it, but not heartbeat or extend.
    let (s, v) = with_token(&pool, ADMIN_TOKEN, &heartbeat, None, json!({})).await;
    assert_eq!((s, kind(&v)), (403, "not-holder"), "{v}");
    // Nothing changed: the lease is active and its dataset leased.
    let (_, v) = pool.ci("GET", &format!("/api/v1/leases/{id}"), None).await;
    assert_eq!(v["status"], "active");
    let (_, v) = pool
        .ci("GET", &format!("/api/v1/datasets/{ds_id}"), None)
        .await;
    assert_eq!(v["status"], "leased");

    // The holder's token works.
    let (s, v) = with_token(&pool, CI_TOKEN, &heartbeat, Some(token), json!({})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = with_token(
        &pool,
        ADMIN_TOKEN,
        &release,
        None,
        json!({"outcome": "passed"}),
    )
    .await;
    assert_eq!(s, 200, "an admin ends any lease: {v}");
    let (s, v) = with_token(
        &pool,
        CI_TOKEN,
        &release,
        Some(token),
        json!({"outcome": "passed"}),
    )
    .await;
    assert_eq!(s, 200, "a repeated release by the holder: {v}");
    let (s, v) = pool
        .ci(
            "POST",
            "/api/v1/leases/lease_nope/release",
            Some(json!({"outcome": "passed"})),
        )
        .await;
    assert_eq!((s, kind(&v)), (404, "not-found"), "{v}");
    assert!(
        !pool.process.log().contains(token),
        "the log shows the token"
    );
}

/// Finding 1: an idempotency key is bound to its request and its process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_is_bound_to_its_request() {
    let dir = tempfile::tempdir().unwrap();
    let pool = tokens_pool(dir.path());
    register(&pool, 1).await;
    register(&pool, 2).await;
    let (s, first) = pool
        .ci(
            "POST",
            "/api/v1/leases",
            Some(lease_body(Some("jenkins:7:1:e2e:0"), "proc-a")),
        )
        .await;
    assert_eq!(s, 201, "{first}");
    let id = first["lease_id"].as_str().unwrap();
    let token = first["lease_token"].as_str().unwrap().to_string();

    // The same process retrying (url aside) gets the same lease and a fresh token.
    let mut retry = lease_body(Some("jenkins:7:1:e2e:0"), "proc-a");
    retry["holder"]["url"] = json!("https://ci.example/7/console");
    let (s, again) = pool.ci("POST", "/api/v1/leases", Some(retry)).await;
    assert_eq!((s, again["lease_id"].as_str()), (200, Some(id)), "{again}");
    let fresh = again["lease_token"].as_str().unwrap();
    assert_ne!(fresh, token);
    let heartbeat = format!("/api/v1/leases/{id}/heartbeat");
    let (s, _) = with_token(&pool, CI_TOKEN, &heartbeat, Some(&token), json!({})).await;
    assert_eq!(s, 403, "the earlier token stopped working");
    let (s, _) = with_token(&pool, CI_TOKEN, &heartbeat, Some(fresh), json!({})).await;
    assert_eq!(s, 200);

    // Another process with the same key, other items, another TTL: 409, nothing held.
    let mut other_items = lease_body(Some("jenkins:7:1:e2e:0"), "proc-a");
    other_items["items"][0]["count"] = json!(2);
    let mut other_ttl = lease_body(Some("jenkins:7:1:e2e:0"), "proc-a");
    other_ttl["ttl_seconds"] = json!(61);
    let mut other_holder = lease_body(Some("jenkins:7:1:e2e:0"), "proc-a");
    other_holder["holder"]["job"] = json!("other");
    for body in [
        lease_body(Some("jenkins:7:1:e2e:0"), "proc-b"),
        other_items,
        other_ttl,
        other_holder,
    ] {
        let (s, v) = pool.ci("POST", "/api/v1/leases", Some(body)).await;
        assert_eq!((s, kind(&v)), (409, "idempotency-conflict"), "{v}");
        assert!(
            v.get("lease_id").is_none() && v.get("datasets").is_none(),
            "{v}"
        );
        assert!(
            v["detail"]
                .as_str()
                .unwrap()
                .contains("STOCKROOM_IDEMPOTENCY_KEY")
        );
    }
    let (_, v) = pool.ci("GET", "/api/v1/leases?status=active", None).await;
    assert_eq!(v["leases"].as_array().unwrap().len(), 1, "{v}");
    // The instance is never shown.
    assert!(!v.to_string().contains("proc-a"), "{v}");
}
