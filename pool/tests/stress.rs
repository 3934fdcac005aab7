//! Concurrency stress and crash tests: many clients against the real binary,
//! then a checker replays the recorded history and asserts the invariants of
//! docs/pool.md.
#![allow(clippy::unwrap_used, clippy::manual_is_multiple_of)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use common::*;
use serde_json::{Value, json};
use stockroom_pool::time::parse_rfc3339;

const STATES: [&str; 2] = ["a", "b"];

fn seed(n: usize) -> Value {
    let list: Vec<Value> = (0..n)
        .map(|i| {
            // Overlapping entities: neighbours share a customer.
            json!({"type": "customer", "state": STATES[i % 2], "attributes": {"country": if i % 3 == 0 { "DE" } else { "US" }},
                   "data": {"n": i}, "entities": [format!("customer:{}", i / 2), format!("order:{i}")], "reusable": i % 5 == 0})
        })
        .collect();
    Value::Array(list)
}

async fn client(pool: Arc<Pool>, k: usize, rounds: usize) -> Vec<String> {
    let mut leases = Vec::new();
    for r in 0..rounds {
        let x = k * 31 + r * 7;
        let mut items = vec![json!({"name": "one", "type": "customer", "state": STATES[x % 2]})];
        if x % 3 == 0 {
            items[0]["where"] = json!({"country": "DE"});
        }
        if x % 4 == 0 {
            items.push(json!({"name": "two", "type": "customer", "state": STATES[(x + 1) % 2], "count": 2, "on_failure": "release"}));
        }
        let ttl = if x % 10 == 0 { 1 } else { 30 };
        let body = json!({"holder": {"job": format!("c{k}")}, "ttl_seconds": ttl, "wait_seconds": if x % 2 == 0 { 1 } else { 0 }, "items": items});
        let (s, g) = pool.ci("POST", "/api/v1/leases", Some(body)).await;
        if s != 201 {
            assert_eq!(s, 503, "{g}");
            continue;
        }
        let id = g["lease_id"].as_str().unwrap().to_string();
        leases.push(id.clone());
        if ttl == 1 {
            continue; // abandoned: the reaper expires it
        }
        let (s, _) = pool
            .ci("POST", &format!("/api/v1/leases/{id}/heartbeat"), None)
            .await;
        assert_eq!(s, 200);
        let outcome = ["passed", "failed", "cancelled"][x % 3];
        let (s, v) = pool
            .ci(
                "POST",
                &format!("/api/v1/leases/{id}/release"),
                Some(json!({"outcome": outcome})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    leases
}

struct Lease {
    start: i64,
    end: i64,
    datasets: Vec<(String, Vec<String>)>,
}

/// Replays leases and histories; panics on any broken invariant.
async fn check_invariants(pool: &Pool, registered: &[String], lease_ids: &[String]) {
    let mut leases = Vec::new();
    for id in lease_ids {
        let (s, v) = pool.ci("GET", &format!("/api/v1/leases/{id}"), None).await;
        assert_eq!(s, 200);
        let start = parse_rfc3339(v["created_at"].as_str().unwrap()).unwrap();
        let end = v["ended_at"]
            .as_str()
            .and_then(parse_rfc3339)
            .unwrap_or(i64::MAX);
        let datasets = v["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["id"].as_str().unwrap().to_string(),
                    d["entities"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e.as_str().unwrap().to_string())
                        .collect(),
                )
            })
            .collect();
        leases.push(Lease {
            start,
            end,
            datasets,
        });
    }
    // No dataset and no entity in two overlapping leases.
    let mut by_key: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    for l in &leases {
        for (d, ents) in &l.datasets {
            by_key
                .entry(format!("ds {d}"))
                .or_default()
                .push((l.start, l.end));
            for e in ents {
                by_key
                    .entry(format!("entity {e}"))
                    .or_default()
                    .push((l.start, l.end));
            }
        }
    }
    for (key, mut spans) in by_key {
        spans.sort();
        for w in spans.windows(2) {
            assert!(
                w[0].1 <= w[1].0,
                "{key} held by two active leases: {:?} and {:?}",
                w[0],
                w[1]
            );
        }
    }
    // Every dataset is in exactly one status, the last of its history; histories are consistent.
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for id in registered {
        let (s, v) = pool
            .ci("GET", &format!("/api/v1/datasets/{id}"), None)
            .await;
        assert_eq!(s, 200, "dataset {id} vanished");
        let hist = v["history"].as_array().unwrap();
        assert_eq!(hist.last().unwrap()["to"], v["status"], "{id}");
        let mut prev: Option<&str> = None;
        let mut consumed = false;
        for h in hist {
            assert_eq!(h["from"].as_str(), prev, "{id}: history is a chain");
            let to = h["to"].as_str().unwrap();
            assert!(!(consumed && to == "leased"), "{id} leased after consumed");
            if to == "leased" {
                assert_eq!(prev, Some("ready"), "{id}");
            }
            consumed |= to == "consumed";
            prev = Some(to);
        }
        *counts
            .entry(v["status"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let (_, cat) = pool.ci("GET", "/api/v1/catalog", None).await;
    let mut total = 0;
    for st in cat["types"][0]["states"].as_array().unwrap() {
        for k in [
            "ready",
            "leased",
            "quarantined",
            "consumed",
            "discarded",
            "generating",
            "failed",
        ] {
            total += st["stock"][k].as_u64().unwrap();
        }
    }
    assert_eq!(
        total,
        registered.len() as u64,
        "status counts add up to every dataset: {counts:?}"
    );
}

async fn register(pool: &Pool, n: usize) -> Vec<String> {
    let (s, v) = pool.admin("POST", "/api/v1/datasets", Some(seed(n))).await;
    assert_eq!(s, 201);
    v["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_clients_never_break_the_invariants() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Arc::new(start(
        dir.path(),
        &dir.path().join("p.db"),
        &config_with_tokens(""),
    ));
    let registered = register(&pool, 400).await;
    let tasks: Vec<_> = (0..200)
        .map(|k| tokio::spawn(client(pool.clone(), k, 6)))
        .collect();
    let mut leases = Vec::new();
    for t in tasks {
        leases.extend(t.await.unwrap());
    }
    assert!(
        leases.len() > 100,
        "enough leases were granted: {}",
        leases.len()
    );
    // The abandoned leases expire (reaper every 100 ms).
    until("every abandoned lease to expire", || async {
        let (_, v) = pool.ci("GET", "/api/v1/leases?status=active", None).await;
        v["leases"].as_array().unwrap().is_empty()
    })
    .await;
    check_invariants(&pool, &registered, &leases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_then_restart_keeps_the_invariants_and_active_leases() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let pool = Arc::new(start(dir.path(), &db, &config_with_tokens("")));
    let registered = register(&pool, 300).await;
    // Leases that stay active across the crash.
    let mut held = Vec::new();
    for _ in 0..5 {
        let (s, g) = pool.ci("POST", "/api/v1/leases", Some(json!({"ttl_seconds": 600, "items": [{"name": "x", "type": "customer", "state": "a"}]}))).await;
        assert_eq!(s, 201);
        held.push(g["lease_id"].as_str().unwrap().to_string());
    }
    let load: Vec<_> = (0..50)
        .map(|k| tokio::spawn(client(pool.clone(), k, 1000)))
        .collect();
    wait_for_granted(&pool, 50).await;
    let pid = nix::unistd::Pid::from_raw(pool.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    for t in load {
        // Clients see connection errors (panics in their tasks) once the pool is gone.
        let _ = t.await;
    }
    drop(pool);
    let pool = start(dir.path(), &db, &config_with_tokens(""));
    for id in &held {
        let (s, v) = pool
            .ci("POST", &format!("/api/v1/leases/{id}/heartbeat"), None)
            .await;
        assert_eq!(
            s, 200,
            "an active lease still heartbeats after the crash: {v}"
        );
    }
    let (_, v) = pool.ci("GET", "/api/v1/leases?limit=1000", None).await;
    let all: Vec<String> = v["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["lease_id"].as_str().unwrap().to_string())
        .collect();
    check_invariants(&pool, &registered, &all).await;
}

async fn wait_for_granted(pool: &Pool, n: u64) {
    until(&format!("{n} leases granted under load"), || async {
        let (_, v, _) = pool.call("GET", "/metrics", Some(CI_TOKEN), None).await;
        let granted = v
            .as_str()
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("stockroom_leases_granted_total "))
            .unwrap()
            .parse::<u64>()
            .unwrap();
        granted >= n
    })
    .await;
}
