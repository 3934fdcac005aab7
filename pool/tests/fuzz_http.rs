//! The pool's real HTTP handlers with random bodies (issue 13, "fuzz the API
//! bodies"): the real binary on loopback, a real lease to act on, and for
//! every body-taking route a bounded number of random JSON values (shaped
//! like API bodies: the API's own keys, wrong types, huge numbers) and raw
//! byte strings. Never a 5xx other than a documented 503, never a panic in
//! the log, and every error a problem+json whose `status` is the answer's.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};
use stockroom_protocol::api::{LEASE_TOKEN_HEADER, Problem};

/// Random values for each route.
const CASES: usize = 500;

fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("holder".to_string()),
        Just("items".to_string()),
        Just("type".to_string()),
        Just("state".to_string()),
        Just("where".to_string()),
        Just("count".to_string()),
        Just("name".to_string()),
        Just("outcome".to_string()),
        Just("ttl_seconds".to_string()),
        Just("idempotency_key".to_string()),
        Just("data".to_string()),
        Just("entities".to_string()),
        Just("secret_fields".to_string()),
        Just("attributes".to_string()),
        Just("min_ready".to_string()),
        Just("max_ready".to_string()),
        Just("extension".to_string()),
        Just("reason".to_string()),
        "[a-z_]{1,10}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        prop_oneof![
            Just("passed".to_string()),
            Just("customer".to_string()),
            Just("active".to_string()),
            Just("customer:C1".to_string()),
            ".{0,12}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..7)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `CASES` bodies: mostly JSON, some raw bytes (not UTF-8, truncated JSON).
fn bodies(seed_runner: &mut TestRunner) -> Vec<Vec<u8>> {
    let json = json_value();
    let raw = proptest::collection::vec(any::<u8>(), 0..64);
    (0..CASES)
        .map(|i| {
            if i % 5 == 4 {
                raw.new_tree(seed_runner).unwrap().current()
            } else {
                let mut v = json.new_tree(seed_runner).unwrap().current();
                // A lease request that happens to be valid must not wait for stock.
                if let Some(o) = v.as_object_mut()
                    && o.contains_key("wait_seconds")
                {
                    o.insert("wait_seconds".into(), json!(0));
                }
                serde_json::to_vec(&v).unwrap()
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bodies_get_problem_answers_never_server_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pool = start(
        dir.path(),
        &dir.path().join("pool.db"),
        &config_with_tokens(""),
    );
    let seed: Vec<Value> = (0..20)
        .map(|n| {
            json!({"type": "customer", "state": "active", "data": {"customer_id": format!("C{n}")},
                   "entities": [format!("customer:C{n}")]})
        })
        .collect();
    assert_eq!(
        pool.admin("POST", "/api/v1/datasets", Some(json!(seed)))
            .await
            .0,
        201
    );
    let (status, lease) = pool
        .ci(
            "POST",
            "/api/v1/leases",
            Some(json!({"ttl_seconds": 600, "items": [{"name": "b", "type": "customer", "state": "active"}]})),
        )
        .await;
    assert_eq!(status, 201, "{lease}");
    let lease_id = lease["lease_id"].as_str().unwrap().to_string();
    let lease_token = lease["lease_token"].as_str().unwrap().to_string();
    let dataset_id = lease["datasets"][0]["id"].as_str().unwrap().to_string();

    let routes = [
        ("POST", "/api/v1/leases".to_string(), CI_TOKEN),
        (
            "POST",
            format!("/api/v1/leases/{lease_id}/heartbeat"),
            CI_TOKEN,
        ),
        (
            "POST",
            format!("/api/v1/leases/{lease_id}/datasets/{dataset_id}/extend"),
            CI_TOKEN,
        ),
        ("POST", "/api/v1/datasets".to_string(), ADMIN_TOKEN),
        (
            "PUT",
            "/api/v1/stock/customer/active".to_string(),
            ADMIN_TOKEN,
        ),
        // Last: a valid random release would end the lease the others use.
        (
            "POST",
            format!("/api/v1/leases/{lease_id}/release"),
            CI_TOKEN,
        ),
    ];
    let mut runner = TestRunner::deterministic();
    let mut counts = std::collections::BTreeMap::<u16, usize>::new();
    let mut sent = 0usize;
    for (method, path, token) in &routes {
        for body in bodies(&mut runner) {
            let resp = pool
                .http
                .request(method.parse().unwrap(), pool.url(path))
                .bearer_auth(token)
                .header(LEASE_TOKEN_HEADER, &lease_token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            sent += 1;
            let status = resp.status().as_u16();
            *counts.entry(status).or_default() += 1;
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let text = resp.text().await.unwrap();
            let shown = String::from_utf8_lossy(&body);
            assert!(
                status < 500 || status == 503 || status == 507,
                "{method} {path} answered {status} to {shown}: {text}"
            );
            if status >= 400 {
                assert_eq!(
                    content_type, "application/problem+json",
                    "{method} {path} {status} to {shown}: {text}"
                );
                let problem: Problem = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{method} {path}: not a problem ({e}): {text}"));
                assert_eq!(problem.status, status, "{text}");
                assert!(problem.kind().is_some(), "{text}");
            }
        }
    }
    let log = pool.process.log();
    assert!(!log.contains("panicked"), "the pool panicked:\n{log}");
    println!(
        "random bodies: {sent} requests over {} routes, answers by status: {counts:?}",
        routes.len()
    );
}
