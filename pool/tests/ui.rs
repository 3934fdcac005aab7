//! The web page's server side over plain HTTP against the real binary:
//! sign-in cookie flags, escaping, CSRF refusal, admin-only settling.
#![allow(clippy::unwrap_used)]

mod common;

use common::{ADMIN_TOKEN, CI_TOKEN, Pool, config_with_tokens};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use serde_json::{Value, json};

const EVIL: &str = "<img src=x onerror=alert(1)>";

fn start() -> (tempfile::TempDir, Pool) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pool.db");
    let pool = common::start(dir.path(), &db, &config_with_tokens(""));
    (dir, pool)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", stockroom_pool::ui::pages::url_part(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Signs in; returns the `Cookie` header value and the page's CSRF token.
async fn sign_in(pool: &Pool, token: &str) -> (String, String) {
    let http = client();
    let resp = http
        .post(pool.url("/ui/login"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&[("token", token)]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let set = resp.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(set.contains("Path=/"), "{set}");
    assert!(
        !set.contains(token),
        "the token itself must not be the cookie"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let page = get(pool, &cookie, "/").await.1;
    assert!(!page.contains(token), "the token must never be in the page");
    (cookie, csrf_of(&page))
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    page[at..at + 64].to_string()
}

async fn get(pool: &Pool, cookie: &str, path: &str) -> (u16, String) {
    let resp = client()
        .get(pool.url(path))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn post(
    pool: &Pool,
    cookie: &str,
    path: &str,
    origin: Option<&str>,
    pairs: &[(&str, &str)],
) -> (u16, Option<String>) {
    let mut req = client()
        .post(pool.url(path))
        .header(COOKIE, cookie)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(pairs));
    if let Some(o) = origin {
        req = req.header(ORIGIN, o);
    }
    let resp = req.send().await.unwrap();
    let loc = resp
        .headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap().to_string());
    (resp.status().as_u16(), loc)
}

/// Registers one dataset and quarantines it through a failed lease.
async fn quarantined(pool: &Pool, state: &str) -> String {
    let (s, v) = pool
        .admin(
            "POST",
            "/api/v1/datasets",
            Some(json!({"type": "customer", "state": state, "data": {"email": EVIL, "password": "hunter2"},
                        "secret_fields": ["password"]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["datasets"][0]["id"].as_str().unwrap().to_string();
    let (s, v) = pool
        .ci(
            "POST",
            "/api/v1/leases",
            Some(
                json!({"holder": {"ci": "test", "url": "https://ci.example/job/1"},
                        "items": [{"name": "c", "type": "customer", "state": state}]}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let lease = v["lease_id"].as_str().unwrap();
    let (s, _) = pool
        .ci(
            "POST",
            &format!("/api/v1/leases/{lease}/release"),
            Some(json!({"outcome": "failed", "reason": "broken <b>data</b>"})),
        )
        .await;
    assert_eq!(s, 200);
    id
}

async fn status_of(pool: &Pool, id: &str) -> String {
    let (_, v): (u16, Value) = pool
        .ci("GET", &format!("/api/v1/datasets/{id}"), None)
        .await;
    v["status"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_session_and_pages_need_it() {
    let (_dir, pool) = start();
    let resp = client().get(pool.url("/")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers()[LOCATION], "/ui/login");
    let login = client().get(pool.url("/ui/login")).send().await.unwrap();
    assert_eq!(login.status().as_u16(), 200);
    let csp = login.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    let bad = client()
        .post(pool.url("/ui/login"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("token=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 401);
    assert!(bad.headers().get(SET_COOKIE).is_none());
    let (cookie, _) = sign_in(&pool, CI_TOKEN).await;
    let (s, page) = get(&pool, &cookie, "/").await;
    assert_eq!(s, 200);
    assert!(page.contains("Signed in as <b>ci</b>"));
    let (s, _) = get(&pool, "stockroom_session=forged", "/ui/leases").await;
    assert_eq!(s, 303, "an unknown session id is not signed in");
    for asset in ["/ui/assets/app.css", "/ui/assets/app.js"] {
        let r = client().get(pool.url(asset)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{asset}");
    }
}

#[tokio::test]
async fn text_from_the_store_is_escaped() {
    let (_dir, pool) = start();
    let id = quarantined(&pool, "evil<script>").await;
    let (cookie, _) = sign_in(&pool, CI_TOKEN).await;
    for path in ["/", "/ui/quarantine", &format!("/ui/datasets/{id}")] {
        let (s, page) = get(&pool, &cookie, path).await;
        assert_eq!(s, 200, "{path}");
        assert!(!page.contains("<script>"), "{path}: raw state name");
        assert!(!page.contains("<b>data</b>"), "{path}: raw reason");
        assert!(!page.contains("<img src=x"), "{path}: raw data");
        assert!(!page.contains("hunter2"), "{path}: secret shown");
    }
    let (_, page) = get(&pool, &cookie, &format!("/ui/datasets/{id}")).await;
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    let (_, page) = get(&pool, &cookie, "/ui/quarantine").await;
    assert!(page.contains("broken &lt;b&gt;data&lt;/b&gt;"));
    assert!(page.contains("href=\"https://ci.example/job/1\""));
}

#[tokio::test]
async fn posts_need_the_csrf_token_and_the_same_origin() {
    let (_dir, pool) = start();
    pool.admin(
        "POST",
        "/api/v1/datasets",
        Some(
            json!([{"type": "customer", "state": "new", "data": {"n": 1}},
                    {"type": "customer", "state": "new", "data": {"n": 2}}]),
        ),
    )
    .await;
    let (cookie, csrf) = sign_in(&pool, CI_TOKEN).await;
    let lease = [("state", "customer/new"), ("count", "1"), ("ttl", "60")];
    let (s, _) = post(&pool, &cookie, "/ui/lease", None, &lease).await;
    assert_eq!(s, 403, "no CSRF token");
    let mut with = lease.to_vec();
    with.push(("csrf", "0000"));
    let (s, _) = post(&pool, &cookie, "/ui/lease", None, &with).await;
    assert_eq!(s, 403, "wrong CSRF token");
    with.pop();
    with.push(("csrf", &csrf));
    let (s, _) = post(
        &pool,
        &cookie,
        "/ui/lease",
        Some("http://evil.example"),
        &with,
    )
    .await;
    assert_eq!(s, 403, "another origin");
    let (_, v) = pool.ci("GET", "/api/v1/leases?status=active", None).await;
    assert_eq!(
        v["leases"].as_array().unwrap().len(),
        0,
        "nothing was leased"
    );
    let origin = pool.base.clone();
    let (s, loc) = post(&pool, &cookie, "/ui/lease", Some(&origin), &with).await;
    assert_eq!(s, 303);
    let loc = loc.unwrap();
    assert!(loc.starts_with("/ui/leases/"), "{loc}");
    let (s, page) = get(&pool, &cookie, "/ui/leases").await;
    assert_eq!(s, 200);
    assert!(page.contains("web #ci by hand"), "the holder label");
    let release = format!("{loc}/release");
    let (s, _) = post(
        &pool,
        &cookie,
        &release,
        None,
        &[("csrf", &csrf), ("outcome", "passed")],
    )
    .await;
    assert_eq!(s, 303);
    let (_, v) = pool.ci("GET", "/api/v1/leases?status=active", None).await;
    assert_eq!(v["leases"].as_array().unwrap().len(), 0, "released");
}

#[tokio::test]
async fn settling_is_for_admin_sessions_only() {
    let (_dir, pool) = start();
    let id = quarantined(&pool, "new").await;
    let (ci_cookie, ci_csrf) = sign_in(&pool, CI_TOKEN).await;
    let (_, page) = get(&pool, &ci_cookie, "/ui/quarantine").await;
    assert!(page.contains(&id));
    assert!(
        !page.contains(&format!("/ui/datasets/{id}/discard")),
        "no admin buttons for ci"
    );
    for action in ["discard", "recycle"] {
        let (s, _) = post(
            &pool,
            &ci_cookie,
            &format!("/ui/datasets/{id}/{action}"),
            None,
            &[("csrf", &ci_csrf)],
        )
        .await;
        assert_eq!(s, 403, "{action} as ci");
    }
    assert_eq!(status_of(&pool, &id).await, "quarantined");
    let (admin_cookie, admin_csrf) = sign_in(&pool, ADMIN_TOKEN).await;
    let (s, _) = post(
        &pool,
        &admin_cookie,
        &format!("/ui/datasets/{id}/discard"),
        None,
        &[("csrf", &ci_csrf)],
    )
    .await;
    assert_eq!(s, 403, "another session's CSRF token");
    let (s, loc) = post(
        &pool,
        &admin_cookie,
        &format!("/ui/datasets/{id}/discard"),
        None,
        &[("csrf", &admin_csrf)],
    )
    .await;
    assert_eq!(s, 303);
    assert!(loc.unwrap().starts_with("/ui/quarantine?settled="));
    assert_eq!(status_of(&pool, &id).await, "discarded");
    let (s, _) = post(
        &pool,
        &admin_cookie,
        "/ui/logout",
        None,
        &[("csrf", &admin_csrf)],
    )
    .await;
    assert_eq!(s, 303);
    let (s, _) = get(&pool, &admin_cookie, "/").await;
    assert_eq!(s, 303, "signed out");
}
