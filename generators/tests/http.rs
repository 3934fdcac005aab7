//! HTTP generators against tiny real servers on loopback.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap should fail loudly

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use common::PATIENCE;
use serde_json::json;
use stockroom_generators::{ErrorKind, GeneratorClient, HttpGenerator, Operation, RetryPolicy};
use stockroom_protocol::generator::GenerateRequest;
use tokio::sync::Notify;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn request() -> GenerateRequest {
    serde_json::from_value(json!({"type": "customer", "state": "active"})).unwrap()
}

fn answer() -> serde_json::Value {
    json!({"data": {"customer_id": "C1042"}, "entities": ["customer:C1042"]})
}

fn quick_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        first_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
    }
}

#[tokio::test]
async fn server_errors_are_retried_until_the_generator_recovers() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let app = Router::new().route(
        "/generate",
        post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    (StatusCode::SERVICE_UNAVAILABLE, "warming up".to_string()).into_response()
                } else {
                    axum::Json(answer()).into_response()
                }
            }
        }),
    );
    let g =
        HttpGenerator::new("flaky", &serve(app).await, PATIENCE, 1).with_retry(quick_retries(5));
    let got = g.generate(&request()).await.unwrap();
    assert_eq!(got.data["customer_id"], "C1042");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn server_errors_stop_after_the_last_attempt_with_the_body_excerpt() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let app = Router::new().route(
        "/generate",
        post(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { (StatusCode::BAD_GATEWAY, "upstream customer api is down") }
        }),
    );
    let g = HttpGenerator::new("down", &serve(app).await, PATIENCE, 1).with_retry(quick_retries(3));
    let err = g.generate(&request()).await.unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::HttpStatus {
            status: 502,
            body: "upstream customer api is down".to_string()
        }
    );
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert!(
        err.to_string()
            .contains("got HTTP status 502: upstream customer api is down"),
        "{err}"
    );
}

#[tokio::test]
async fn a_refusal_is_not_retried() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let app = Router::new().route(
        "/generate",
        post(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "country XX is not supported",
                )
            }
        }),
    );
    let g =
        HttpGenerator::new("picky", &serve(app).await, PATIENCE, 1).with_retry(quick_retries(5));
    let err = g.generate(&request()).await.unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::HttpStatus { status: 422, .. }),
        "{err}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_generator_that_is_down_then_comes_up_is_reached() {
    // Find a free port, then leave it closed for a while.
    let port = {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let up = Arc::new(Notify::new());
    let started = Arc::clone(&up);
    tokio::spawn(async move {
        started.notified().await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let app = Router::new().route(
            "/capabilities",
            get(|| async { axum::Json(json!({"produces": []})) }),
        );
        axum::serve(listener, app).await.unwrap();
    });
    let retry = RetryPolicy {
        max_attempts: 50,
        first_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(100),
    };
    let g = HttpGenerator::new("late", &format!("http://127.0.0.1:{port}"), PATIENCE, 1)
        .with_retry(retry);

    // With one attempt, the refused connection is a connect error.
    let once = g.clone().with_retry(quick_retries(1));
    let err = once.capabilities().await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Connect(_)), "{err}");
    assert_eq!(err.operation, Operation::Capabilities);

    let call = tokio::spawn(async move { g.capabilities().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    up.notify_one();
    let caps = call.await.unwrap().unwrap();
    assert!(caps.produces.is_empty());
}

#[tokio::test]
async fn a_slow_generator_times_out_and_a_fast_enough_one_answers() {
    let app = Router::new()
        .route(
            "/generate",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(600)).await;
                axum::Json(answer())
            }),
        )
        .route(
            "/extend",
            post(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                axum::Json(answer())
            }),
        );
    let url = serve(app).await;
    let g = HttpGenerator::new("slow", &url, Duration::from_secs(1), 1);
    let err = g.generate(&request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout(Duration::from_secs(1)));

    let patient = HttpGenerator::new("slow", &url, PATIENCE, 1);
    let ext = serde_json::from_value(json!({"extension": "verify-email",
        "dataset": {"id": "d1", "type": "customer", "state": "new"}}))
    .unwrap();
    assert_eq!(
        patient.extend(&ext).await.unwrap().data["customer_id"],
        "C1042"
    );
}

#[tokio::test]
async fn malformed_answers_are_reported_without_their_values() {
    let app = Router::new().route(
        "/generate",
        post(|| async { axum::Json(json!({"data": {}, "entities": "hunter2"})) }),
    );
    let g = HttpGenerator::new("odd", &serve(app).await, PATIENCE, 1);
    let err = g.generate(&request()).await.unwrap_err();
    let ErrorKind::Malformed(reason) = &err.kind else {
        panic!("unexpected {err}")
    };
    assert!(reason.contains("invalid type"), "{reason}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn no_more_calls_are_in_flight_than_the_concurrency_allows() {
    const LIMIT: usize = 3;
    struct Counts {
        now: AtomicUsize,
        peak: AtomicUsize,
        changed: Notify,
    }
    let counts = Arc::new(Counts {
        now: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        changed: Notify::new(),
    });
    let c = Arc::clone(&counts);
    let app = Router::new().route(
        "/generate",
        post(move || {
            let c = Arc::clone(&c);
            async move {
                let n = c.now.fetch_add(1, Ordering::SeqCst) + 1;
                c.peak.fetch_max(n, Ordering::SeqCst);
                c.changed.notify_waiters();
                // Hold the first calls until the limit is reached once (or a
                // long while passed), so that a missing limit would show.
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    while c.peak.load(Ordering::SeqCst) < LIMIT {
                        let wait = c.changed.notified();
                        if c.peak.load(Ordering::SeqCst) >= LIMIT {
                            break;
                        }
                        wait.await;
                    }
                })
                .await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                c.now.fetch_sub(1, Ordering::SeqCst);
                c.changed.notify_waiters();
                axum::Json(answer())
            }
        }),
    );
    let g = Arc::new(HttpGenerator::new(
        "busy",
        &serve(app).await,
        PATIENCE,
        LIMIT,
    ));
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let g = Arc::clone(&g);
            tokio::spawn(async move { g.generate(&request()).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(counts.peak.load(Ordering::SeqCst), LIMIT);
}
