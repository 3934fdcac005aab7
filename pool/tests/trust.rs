//! Leases only their holder can touch, and the hardening of docs/pool.md
//! (sections "Cross-site protection", "Lease tokens: only the holder
//! touches a lease", "Idempotency: a key is bound to its request" and
//! "Metrics"): lease tokens, idempotency bound to the request, registration
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

/// Finding 3: registration applies the checks of a generator's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_applies_the_answer_checks() {
    let dir = tempfile::tempdir().unwrap();
    let pool = tokens_pool(dir.path());
    let base = json!({"type": "customer", "state": "active", "data": {"customer_id": "C1", "password": "x"}});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, says) in [
        (with("entities", json!(["d:1", "d:1"])), "listed twice"),
        (with("entities", json!(["C1042"])), "kind:id"),
        (with("entities", json!([":1"])), "kind:id"),
        (with("secret_fields", json!(["pin"])), "secret field `pin`"),
        (with("data", json!([1, 2])), "JSON object"),
    ] {
        let (s, v) = pool
            .admin("POST", "/api/v1/datasets", Some(body.clone()))
            .await;
        assert_eq!((s, kind(&v)), (422, "invalid-request"), "{body}: {v}");
        assert!(v["detail"].as_str().unwrap().contains(says), "{body}: {v}");
        // A list with one bad dataset registers nothing.
        let (s, _) = pool
            .admin("POST", "/api/v1/datasets", Some(json!([ds(9), body])))
            .await;
        assert_eq!(s, 422);
    }
    let (_, v) = pool.ci("GET", "/api/v1/datasets", None).await;
    assert_eq!(v["datasets"].as_array().unwrap().len(), 0, "{v}");
    register(&pool, 1).await;
    let (s, v) = pool
        .ci("POST", "/api/v1/leases", Some(lease_body(None, "a")))
        .await;
    assert_eq!(s, 201, "{v}");
}

/// One HTTP/1.1 request with exactly these headers (Host included) and body.
fn raw(
    pool: &Pool,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for (k, v) in headers {
        req.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    raw_bytes(pool, &req)
}

/// Sends `req` as it is on a connection of its own; the answer's status,
/// lowercased head and body.
fn raw_bytes(pool: &Pool, req: &[u8]) -> (u16, String, String) {
    use std::io::{Read, Write};
    let addr = pool.base.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    // The pool may answer (and close) before reading a large body.
    let _ = s.write_all(req);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn assert_problem(
    what: &str,
    (status, head, body): (u16, String, String),
    want: u16,
    kind_slug: &str,
) {
    assert_eq!(status, want, "{what}: {head}\n{body}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "{what}: {head}"
    );
    let v: Value =
        serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{what}: {e}: {body:?}"));
    assert_eq!(kind(&v), kind_slug, "{what}: {v}");
    assert_eq!(v["status"], want, "{what}: {v}");
}

/// Finding 4: a pool without tokens refuses cross-site use and foreign Hosts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokenless_pool_refuses_cross_site_requests_and_foreign_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let pool = start(dir.path(), &dir.path().join("p.db"), "");
    let addr = pool.base.trim_start_matches("http://").to_string();
    let port = addr.rsplit_once(':').unwrap().1.to_string();
    let body = serde_json::to_vec(&ds(1)).unwrap();
    let json = ("Content-Type", "application/json");
    let evil_host = format!("evil.example:{port}");
    let localhost = format!("localhost:{port}");
    for (what, headers, want) in [
        (
            "text/plain",
            vec![("Host", addr.as_str()), ("Content-Type", "text/plain")],
            415,
        ),
        ("no content type", vec![("Host", addr.as_str())], 415),
        (
            "foreign Origin",
            vec![
                ("Host", addr.as_str()),
                json,
                ("Origin", "http://evil.example"),
            ],
            403,
        ),
        (
            "Sec-Fetch-Site",
            vec![
                ("Host", addr.as_str()),
                json,
                ("Sec-Fetch-Site", "cross-site"),
            ],
            403,
        ),
        (
            "rebinding Host",
            vec![("Host", evil_host.as_str()), json],
            403,
        ),
    ] {
        let kind_slug = if want == 415 {
            "invalid-request"
        } else {
            "forbidden"
        };
        assert_problem(
            what,
            raw(&pool, "POST", "/api/v1/datasets", &headers, &body),
            want,
            kind_slug,
        );
    }
    // A lease (it would drain stock for its TTL) is refused the same way.
    let lease = serde_json::to_vec(&lease_body(None, "page")).unwrap();
    for (what, headers) in [
        (
            "lease from a foreign Origin",
            vec![
                ("Host", addr.as_str()),
                json,
                ("Origin", "http://evil.example"),
            ],
        ),
        (
            "lease with Sec-Fetch-Site",
            vec![
                ("Host", addr.as_str()),
                json,
                ("Sec-Fetch-Site", "cross-site"),
            ],
        ),
        (
            "lease through a rebinding Host",
            vec![("Host", evil_host.as_str()), json],
        ),
    ] {
        assert_problem(
            what,
            raw(&pool, "POST", "/api/v1/leases", &headers, &lease),
            403,
            "forbidden",
        );
    }
    // A rebinding Host reads nothing either.
    assert_problem(
        "GET with a foreign Host",
        raw(
            &pool,
            "GET",
            "/api/v1/leases",
            &[("Host", evil_host.as_str())],
            b"",
        ),
        403,
        "forbidden",
    );
    let (_, v) = pool.admin("GET", "/api/v1/datasets", None).await;
    assert_eq!(
        v["datasets"].as_array().unwrap().len(),
        0,
        "nothing was registered: {v}"
    );
    // The pool's own origin, by address or by name, is served.
    let own = format!("http://{addr}");
    let (s, _, b) = raw(
        &pool,
        "POST",
        "/api/v1/datasets",
        &[("Host", addr.as_str()), json, ("Origin", own.as_str())],
        &body,
    );
    assert_eq!(s, 201, "{b}");
    let (s, _, b) = raw(
        &pool,
        "GET",
        "/api/v1/catalog",
        &[
            ("Host", localhost.as_str()),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        b"",
    );
    assert_eq!(s, 200, "a cross-site GET (a link) reads: {b}");
}

/// Findings 7 and 12: every error is problem+json; /metrics needs a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_problem_json_and_metrics_need_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let pool = tokens_pool(dir.path());
    let addr = pool.base.trim_start_matches("http://").to_string();
    let bearer = format!("Bearer {CI_TOKEN}");
    let auth = [
        ("Host", addr.as_str()),
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let big = vec![b' '; 1024 * 1024 + 10];
    assert_problem(
        "heartbeat over 1 MiB",
        raw(
            &pool,
            "POST",
            "/api/v1/leases/lease_x/heartbeat",
            &auth,
            &big,
        ),
        413,
        "too-large",
    );
    assert_problem(
        "lease over 1 MiB",
        raw(&pool, "POST", "/api/v1/leases", &auth, &big),
        413,
        "too-large",
    );
    assert_problem(
        "bad UTF-8 in a path",
        raw(&pool, "GET", "/api/v1/leases/%FF%FE", &auth, b""),
        400,
        "invalid-request",
    );
    let long = format!("/api/v1/leases/{}", "a".repeat(20_000));
    assert_problem(
        "414",
        raw(&pool, "GET", &long, &auth, b""),
        414,
        "invalid-request",
    );
    // Past the HTTP server's own limits, refused before any route: still
    // problem+json (pool/src/http/wire.rs).
    let longer = format!("/api/v1/leases/{}", "a".repeat(70_000));
    assert_problem(
        "a URI over 64 KiB",
        raw(&pool, "GET", &longer, &auth, b""),
        414,
        "invalid-request",
    );
    let huge = "h".repeat(500_000);
    assert_problem(
        "a head over the server's buffer",
        raw(&pool, "GET", "/api/v1/catalog", &[("X-Huge", &huge)], b""),
        431,
        "too-large",
    );
    assert_problem(
        "a malformed header",
        raw_bytes(
            &pool,
            b"GET /api/v1/catalog HTTP/1.1\r\nno colon here\r\n\r\n",
        ),
        400,
        "invalid-request",
    );
    assert_problem(
        "a malformed request line",
        raw_bytes(&pool, b"GET\x01 / HTTP/1.1\r\n\r\n"),
        400,
        "invalid-request",
    );
    assert_problem(
        "unknown route",
        raw(&pool, "GET", "/api/v1/nope", &auth, b""),
        404,
        "not-found",
    );
    assert_problem(
        "wrong method",
        raw(&pool, "DELETE", "/api/v1/catalog", &auth, b""),
        405,
        "invalid-request",
    );
    assert_problem(
        "bad query",
        raw(&pool, "GET", "/api/v1/datasets?limit=x", &auth, b""),
        400,
        "invalid-request",
    );
    assert_problem(
        "metrics without a token",
        raw(&pool, "GET", "/metrics", &[("Host", addr.as_str())], b""),
        401,
        "unauthorized",
    );
    let (s, _, text) = raw(&pool, "GET", "/metrics", &auth, b"");
    assert_eq!(s, 200);
    assert!(text.contains("stockroom_leases_active"), "{text}");

    let public = start(
        dir.path(),
        &dir.path().join("q.db"),
        &config_with_tokens("metrics_public = true"),
    );
    let (s, _, text) = raw(
        &public,
        "GET",
        "/metrics",
        &[("Host", public.base.trim_start_matches("http://"))],
        b"",
    );
    assert_eq!(s, 200, "metrics_public: {text}");
}

/// Finding 11 (the pool's parts): a generator's error text reaches `ci`
/// tokens as a short redacted summary, `admin` tokens in full; a shortfall
/// says when ready datasets are blocked by entities held elsewhere; the
/// count cap is the manifest's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_errors_are_summarised_for_ci_and_shortfalls_name_held_entities() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("gen.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\ncase \"$1\" in\ncapabilities) echo '{\"produces\": [{\"type\": \"broken\", \"state\": \"s\", \"fields\": [\"id\"]}]}' ;;\n\
         *) echo 'login to the shop failed: password=hunter2 user=bob' >&2; echo 'Traceback line 2' >&2; exit 1 ;;\nesac\n",
    )
    .unwrap();
    let extra = format!(
        "[[generators]]\nname = \"broken\"\ncommand = [\"sh\", \"{}\"]\n\n[[stock]]\ntype = \"broken\"\nstate = \"s\"\nmin_ready = 1\nmax_ready = 1\n",
        script.display()
    );
    let pool = start(
        dir.path(),
        &dir.path().join("p.db"),
        &config_with_tokens(&extra),
    );
    until("a failed generation", || async {
        let (_, v) = pool
            .admin("GET", "/api/v1/datasets?status=failed", None)
            .await;
        v["datasets"].as_array().is_some_and(|d| !d.is_empty())
    })
    .await;
    let (_, full) = pool
        .admin("GET", "/api/v1/datasets?status=failed", None)
        .await;
    let id = full["datasets"][0]["id"].as_str().unwrap().to_string();
    assert!(
        full.to_string().contains("hunter2"),
        "admin sees the full text: {full}"
    );
    for path in [
        "/api/v1/datasets?status=failed".to_string(),
        format!("/api/v1/datasets/{id}"),
        "/api/v1/catalog".to_string(),
    ] {
        let (s, v) = pool.ci("GET", &path, None).await;
        assert_eq!(s, 200, "{v}");
        let text = v.to_string();
        assert!(!text.contains("hunter2"), "{path}: {text}");
        assert!(!text.contains("Traceback"), "{path}: {text}");
    }
    let (_, v) = pool
        .ci("GET", &format!("/api/v1/datasets/{id}"), None)
        .await;
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("password=[redacted]") && error.chars().count() < 300,
        "{error}"
    );

    // Two ready datasets sharing one entity: the second is blocked, and the 503 says why.
    for n in ["a", "b"] {
        let body = json!({"type": "customer", "state": "shared", "data": {"n": n}, "entities": ["customer:S"]});
        let (s, v) = pool.admin("POST", "/api/v1/datasets", Some(body)).await;
        assert_eq!(s, 201, "{v}");
    }
    let item = |count: u32| json!({"holder": {"job": "t"}, "items": [{"name": "c", "type": "customer", "state": "shared", "count": count}]});
    let (s, v) = pool.ci("POST", "/api/v1/leases", Some(item(1))).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = pool.ci("POST", "/api/v1/leases", Some(item(1))).await;
    assert_eq!((s, kind(&v)), (503, "no-stock"), "{v}");
    assert_eq!(v["shortfall"][0]["ready"], 1, "{v}");
    assert_eq!(v["shortfall"][0]["entities_held"], 1, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("share entities with other active leases"),
        "{v}"
    );

    let (s, v) = pool
        .ci(
            "POST",
            "/api/v1/leases",
            Some(item(stockroom_protocol::api::MAX_COUNT + 1)),
        )
        .await;
    assert_eq!((s, kind(&v)), (422, "invalid-request"), "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("from 1 to 1000"),
        "{v}"
    );
}
