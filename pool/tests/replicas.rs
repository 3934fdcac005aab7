//! Several real `stockroom-pool` processes on one PostgreSQL database: concurrent
//! leasing across replicas, a replica killed mid-load, every database backend
//! terminated, pre-generation by all replicas at once. STOCKROOM_TEST_POSTGRES
//! names an admin URL (each test makes and drops its own database); without
//! it each test fails under CI=true and says it did not run elsewhere.
#![allow(clippy::unwrap_used, clippy::panic, clippy::manual_is_multiple_of)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use stockroom_pool::time::parse_rfc3339;

/// Upper bound of every polling loop (never a readiness sleep).
const CAP: Duration = Duration::from_secs(40);

fn seed(n: usize) -> Value {
    let list: Vec<Value> = (0..n)
        .map(|i| {
            // Neighbours share a customer: entity isolation is exercised across replicas.
            json!({"type": "customer", "state": "a",
                   "attributes": {"country": if i % 3 == 0 { "DE" } else { "US" }},
                   "data": {"n": i}, "entities": [format!("customer:{}", i / 2)], "reusable": i % 4 == 0})
        })
        .collect();
    Value::Array(list)
}

/// One HTTP call that may find its replica dead: `None` then.
async fn try_ci(
    pool: &Pool,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let req = pool
        .http
        .request(method.parse().unwrap(), pool.url(path))
        .bearer_auth(CI_TOKEN);
    let mut req = common::with_lease_token(req, path);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.ok()?;
    let status = resp.status().as_u16();
    let text = resp.text().await.ok()?;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    common::remember_lease_token(&value);
    Some((status, value))
}

/// The store URL of a replica: 8 connections each, so that the tests of this
/// file running together (six replicas) stay well under PostgreSQL's default
/// `max_connections = 100`, beside the other suites sharing the server. An
/// exhausted server answers `too many clients`, which the pool rightly
/// reports as an unavailable database (503).
fn replica_url(db: &FreshDb) -> String {
    format!("{}?pool_size=8", db.url)
}

/// Leases on one replica, heartbeats and releases through the next one.
async fn client(pools: Arc<Vec<Pool>>, k: usize, rounds: usize) -> Vec<String> {
    let mut leases = Vec::new();
    for r in 0..rounds {
        let x = k * 31 + r * 7;
        let a = &pools[x % pools.len()];
        let b = &pools[(x + 1) % pools.len()];
        let mut items = vec![json!({"name": "one", "type": "customer", "state": "a"})];
        if x % 3 == 0 {
            items[0]["where"] = json!({"country": "DE"});
        }
        if x % 4 == 0 {
            items.push(json!({"name": "two", "type": "customer", "state": "a", "count": 2, "on_failure": "release"}));
        }
        let body = json!({"holder": {"job": format!("c{k}")}, "ttl_seconds": 30, "wait_seconds": 0, "items": items});
        let Some((s, g)) = try_ci(a, "POST", "/api/v1/leases", Some(body)).await else {
            continue; // a killed replica
        };
        if s != 201 {
            assert_eq!(s, 503, "{g}");
            continue;
        }
        let id = g["lease_id"].as_str().unwrap().to_string();
        leases.push(id.clone());
        let outcome = ["passed", "failed", "cancelled"][x % 3];
        for p in [b, a, &pools[0]] {
            if let Some((s, v)) =
                try_ci(p, "POST", &format!("/api/v1/leases/{id}/heartbeat"), None).await
            {
                assert_eq!(s, 200, "{v}");
                break;
            }
        }
        for p in [b, a, &pools[0]] {
            if let Some((s, v)) = try_ci(
                p,
                "POST",
                &format!("/api/v1/leases/{id}/release"),
                Some(json!({"outcome": outcome})),
            )
            .await
            {
                assert_eq!(s, 200, "{v}");
                break;
            }
        }
    }
    leases
}

/// The invariants of docs/pool.md, replayed from leases and histories.
async fn check_invariants(pool: &Pool, registered: &[String], lease_ids: &[String]) {
    let mut spans: HashMap<String, Vec<(i64, i64, String)>> = HashMap::new();
    for id in lease_ids {
        let (s, v) = pool.ci("GET", &format!("/api/v1/leases/{id}"), None).await;
        assert_eq!(s, 200);
        let start = parse_rfc3339(v["created_at"].as_str().unwrap()).unwrap();
        let end = v["ended_at"]
            .as_str()
            .and_then(parse_rfc3339)
            .unwrap_or(i64::MAX);
        for d in v["datasets"].as_array().unwrap() {
            spans
                .entry(format!("ds {}", d["id"].as_str().unwrap()))
                .or_default()
                .push((start, end, id.clone()));
            for e in d["entities"].as_array().unwrap() {
                spans
                    .entry(format!("entity {}", e.as_str().unwrap()))
                    .or_default()
                    .push((start, end, id.clone()));
            }
        }
    }
    for (key, mut s) in spans {
        s.sort();
        for w in s.windows(2) {
            assert!(
                w[0].1 <= w[1].0,
                "{key} held by two active leases: {:?} and {:?}",
                w[0],
                w[1]
            );
        }
    }
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
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_database_through_a_kill_and_a_database_outage() {
    let Some(db) =
        FreshDb::create("replicas_share_one_database_through_a_kill_and_a_database_outage").await
    else {
        return;
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with_tokens("");
    let url = replica_url(&db);
    let pools = Arc::new(vec![
        start_store(dir.path(), &url, &cfg),
        start_store(dir.path(), &url, &cfg),
        start_store(dir.path(), &url, &cfg),
    ]);
    let (s, v) = pools[0]
        .admin("POST", "/api/v1/datasets", Some(seed(240)))
        .await;
    assert_eq!(s, 201, "{v}");
    let registered: Vec<String> = v["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();

    // Leases made on replica 2, which is about to die.
    let mut held = Vec::new();
    for _ in 0..3 {
        let (s, g) = pools[2]
            .ci("POST", "/api/v1/leases", Some(json!({"ttl_seconds": 600, "items": [{"name": "x", "type": "customer", "state": "a"}]})))
            .await;
        assert_eq!(s, 201, "{g}");
        held.push(g["lease_id"].as_str().unwrap().to_string());
    }

    // Concurrent leasing on all three; replica 2 is killed mid-load.
    let load: Vec<_> = (0..24)
        .map(|k| tokio::spawn(client(pools.clone(), k, 12)))
        .collect();
    let pid = nix::unistd::Pid::from_raw(pools[2].pid() as i32);
    // Mid-load: once the other replicas have granted something.
    let deadline = Instant::now() + CAP;
    loop {
        let (_, v) = pools[0].ci("GET", "/api/v1/leases?limit=100", None).await;
        // The kill only has to land mid-load; past the deadline it lands
        // anyway, and the lease count asserted below decides.
        if v["leases"].as_array().unwrap().len() > held.len() + 10 || Instant::now() > deadline {
            break;
        }
        // Each round is an HTTP call, so this polls rather than spins.
        tokio::task::yield_now().await;
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let mut leases = Vec::new();
    for t in load {
        leases.extend(t.await.unwrap());
    }
    assert!(
        leases.len() > 20,
        "enough leases were granted: {}",
        leases.len()
    );

    // The database drops every connection; the live replicas recover.
    let terminated = db.terminate_all_backends().await;
    assert!(terminated > 0, "the replicas had connections to terminate");
    let more: Vec<_> = (100..106)
        .map(|k| tokio::spawn(client(pools.clone(), k, 4)))
        .collect();
    for t in more {
        leases.extend(t.await.unwrap());
    }
    // A lease made on the dead replica heartbeats and releases through a live one.
    for id in &held {
        let (s, v) = pools[0]
            .ci("POST", &format!("/api/v1/leases/{id}/heartbeat"), None)
            .await;
        assert_eq!(s, 200, "a lease of the dead replica still heartbeats: {v}");
        let (s, v) = pools[1]
            .ci(
                "POST",
                &format!("/api/v1/leases/{id}/release"),
                Some(json!({"outcome": "passed"})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["status"], "released");
    }

    // Waiters are served across replicas: stock released through replica 1
    // reaches a request waiting on replica 0.
    let (s, v) = pools[0]
        .admin(
            "POST",
            "/api/v1/datasets",
            Some(json!({"type": "customer", "state": "w", "data": {}, "entities": ["w:1"], "reusable": true})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, g) = pools[1]
        .ci("POST", "/api/v1/leases", Some(json!({"ttl_seconds": 60, "items": [{"name": "w", "type": "customer", "state": "w"}]})))
        .await;
    assert_eq!(s, 201, "{g}");
    let first = g["lease_id"].as_str().unwrap().to_string();
    let waiter = {
        let pools = pools.clone();
        tokio::spawn(async move {
            pools[0]
                .ci("POST", "/api/v1/leases", Some(json!({"ttl_seconds": 60, "wait_seconds": 30, "items": [{"name": "w", "type": "customer", "state": "w"}]})))
                .await
        })
    };
    // Release once the waiter is queued on replica 0 (its metrics say so), bounded.
    let deadline = Instant::now() + CAP;
    loop {
        let (_, v, _) = pools[0].call("GET", "/metrics", Some(CI_TOKEN), None).await;
        let text = v.as_str().unwrap_or_default().to_string();
        let waiting = text
            .lines()
            .find_map(|l| l.strip_prefix("stockroom_acquire_waiting "))
            .and_then(|n| n.trim().parse::<u64>().ok());
        if waiting.is_some_and(|n| n >= 1) {
            break;
        }
        assert!(Instant::now() < deadline, "the waiter never queued: {text}");
        // Each round is an HTTP call, so this polls rather than spins.
        tokio::task::yield_now().await;
    }
    let (s, _) = pools[1]
        .ci(
            "POST",
            &format!("/api/v1/leases/{first}/release"),
            Some(json!({"outcome": "passed"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, g) = waiter.await.unwrap();
    assert_eq!(
        s, 201,
        "the waiter on replica 0 got the dataset released on replica 1: {g}"
    );
    leases.push(first);
    leases.push(g["lease_id"].as_str().unwrap().to_string());
    leases.extend(held);

    check_invariants(&pools[0], &registered, &leases).await;
    drop(pools);
    db.drop_db().await;
    assert!(started.elapsed() < Duration::from_secs(120));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_pre_generate_together_without_overshooting_max_ready() {
    let Some(db) =
        FreshDb::create("replicas_pre_generate_together_without_overshooting_max_ready").await
    else {
        return;
    };
    let shop = stockroom_generators::start_demo_shop(Duration::from_millis(20))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (min, max) = (6u64, 9u64);
    let extra = format!(
        "[[generators]]\nname = \"customers\"\nurl = \"{}\"\nconcurrency = 4\n\n[[stock]]\ntype = \"customer\"\nstate = \"active\"\nmin_ready = {min}\nmax_ready = {max}\n",
        shop.customers_url
    );
    let cfg = config_with_tokens(&extra);
    let url = replica_url(&db);
    let pools = vec![
        start_store(dir.path(), &url, &cfg),
        start_store(dir.path(), &url, &cfg),
        start_store(dir.path(), &url, &cfg),
    ];
    let probe = FreshDb::connect(&db.url).await;
    // ready + generating never exceeds max_ready, whichever replica generates.
    let stock = || async {
        let rows = probe
            .query(
                "SELECT status, count(*) FROM datasets WHERE type = 'customer' AND state = 'active' GROUP BY status",
                &[],
            )
            .await
            .unwrap();
        let mut m: HashMap<String, i64> = HashMap::new();
        for r in rows {
            m.insert(r.get(0), r.get(1));
        }
        m
    };
    let deadline = Instant::now() + CAP;
    let mut leased = 0u64;
    loop {
        let m = stock().await;
        let ready = *m.get("ready").unwrap_or(&0) as u64;
        let generating = *m.get("generating").unwrap_or(&0) as u64;
        if ready + generating > max {
            let rows = probe
                .query(
                    "SELECT d.id, h.at, h.from_status, h.to_status, h.reason FROM datasets d \
                     JOIN history h ON h.dataset_id = d.id WHERE d.type = 'customer' ORDER BY h.seq",
                    &[],
                )
                .await
                .unwrap();
            let lines: Vec<String> = rows
                .iter()
                .map(|r| {
                    format!(
                        "{} {} {:?} {} {}",
                        r.get::<_, String>(0),
                        r.get::<_, i64>(1),
                        r.get::<_, Option<String>>(2),
                        r.get::<_, String>(3),
                        r.get::<_, String>(4)
                    )
                })
                .collect();
            panic!(
                "stock overshot max_ready {max}: {m:?}\n{}",
                lines.join("\n")
            );
        }
        assert_eq!(m.get("failed"), None, "no generation failed: {m:?}");
        if ready >= min && leased >= 12 {
            break;
        }
        assert!(Instant::now() < deadline, "stock never refilled: {m:?}");
        if ready > 0 && leased < 12 {
            // Take stock through every replica so all three refill at once.
            let p = &pools[leased as usize % pools.len()];
            let (s, g) = p
                .ci("POST", "/api/v1/leases", Some(json!({"ttl_seconds": 60, "items": [{"name": "c", "type": "customer", "state": "active"}]})))
                .await;
            if s == 201 {
                leased += 1;
                let id = g["lease_id"].as_str().unwrap();
                let (s, _) = pools[(leased as usize + 1) % pools.len()]
                    .ci(
                        "POST",
                        &format!("/api/v1/leases/{id}/release"),
                        Some(json!({"outcome": "passed"})),
                    )
                    .await;
                assert_eq!(s, 200);
            }
        } else {
            // The poll interval of this deadline loop while the stock refills.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Every dataset ever generated is accounted for: the leased ones plus stock within max.
    let m = stock().await;
    let total: i64 = m.values().sum();
    assert!(
        total as u64 <= leased + max,
        "replicas generated more than was taken plus max_ready: {m:?}, leased {leased}"
    );
    drop(pools);
    shop.shutdown().await;
    db.drop_db().await;
}

/// The rule every PostgreSQL test follows (see common/fresh_db.rs).
#[test]
fn a_missing_postgres_url_fails_in_ci_and_skips_elsewhere() {
    assert_eq!(
        admin_url("t", Some("postgres://a@h/db".into()), true).as_deref(),
        Some("postgres://a@h/db")
    );
    assert_eq!(admin_url("t", None, false), None);
    let in_ci = std::panic::catch_unwind(|| admin_url("t", None, true));
    let message = in_ci.expect_err("fails under CI");
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("CI=true") && message.contains("set STOCKROOM_TEST_POSTGRES="),
        "{message}"
    );
}
