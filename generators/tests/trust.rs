//! Findings 5 and 11 of issue 13 against real HTTP generators on loopback:
//! a generator whose `generate` always hangs backs off to a minute and turns
//! unavailable, whatever its capabilities say; a redirect is never followed
//! with the request body.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap should fail loudly

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::json;
use stockroom_generators::{
    ErrorKind, GeneratorClient, HealthPolicy, HealthTracker, HttpGenerator, MonotonicClock,
    TrackedGenerator,
};
use stockroom_protocol::generator::{GenerateRequest, ProducedState};

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

/// A clock the test moves by hand.
#[derive(Clone)]
struct ManualClock {
    start: Instant,
    offset: Arc<Mutex<Duration>>,
}

impl ManualClock {
    fn new() -> ManualClock {
        ManualClock {
            start: Instant::now(),
            offset: Arc::default(),
        }
    }

    fn set(&self, offset: Duration) {
        *self.offset.lock().unwrap() = offset;
    }

    fn as_clock(&self) -> MonotonicClock {
        let me = self.clone();
        Arc::new(move || me.start + *me.offset.lock().unwrap())
    }
}

const TICK: Duration = Duration::from_millis(500);

/// What the pool does each tick (500 ms): it refreshes capabilities (here
/// every 2 s, more often than the pool's 30 s, as the attack saw) and, when
/// the health gate lets it, asks for a dataset. Records when calls went out.
async fn simulate(
    g: &TrackedGenerator<HttpGenerator>,
    spec: &ProducedState,
    clock: &ManualClock,
    ticks: std::ops::Range<u32>,
    calls_at: &mut Vec<Duration>,
) {
    for n in ticks {
        let now = TICK * n;
        clock.set(now);
        if n % 4 == 0 {
            g.capabilities().await.unwrap();
        }
        if g.ready_to_call() {
            let err = g.generate(spec, &request()).await.unwrap_err();
            assert!(matches!(err.kind, ErrorKind::Timeout(_)), "{err}");
            calls_at.push(now);
        }
    }
}

/// A real generator that answers capabilities and hangs on every generate,
/// called as the pool would over five simulated minutes.
#[tokio::test]
async fn a_generator_that_always_times_out_backs_off_to_a_minute_and_is_unavailable() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let app = Router::new()
        .route(
            "/capabilities",
            get(|| async {
                axum::Json(json!({"produces": [{"type": "customer", "state": "active",
                    "fields": ["customer_id"]}]}))
            }),
        )
        .route(
            "/generate",
            post(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async {
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    "never"
                }
            }),
        );
    let url = serve(app).await;
    let clock = ManualClock::new();
    let client = HttpGenerator::new("hangs", &url, Duration::from_millis(50), 4);
    let g = TrackedGenerator::with_tracker(
        client,
        HealthTracker::seeded("hangs", HealthPolicy::default(), 7),
        clock.as_clock(),
    );
    let spec: ProducedState = serde_json::from_value(json!({"type": "customer", "state": "active",
                                       "fields": ["customer_id"]}))
    .unwrap();

    let tick = TICK;
    let mut calls_at = Vec::new();
    // The first simulated minute.
    simulate(&g, &spec, &clock, 0..120, &mut calls_at).await;
    let first_minute = hits.load(Ordering::SeqCst);
    assert!(!g.health().available, "unavailable after 3 failures");
    assert_eq!(calls_at.len(), first_minute);
    assert_eq!(&calls_at[..3], &[Duration::ZERO, tick, tick * 2]);
    // Waits of at least 0.8·(1, 2, 4, 8, 16, 32) s after the third failure:
    // at most 9 calls in the minute (before the fix: one every 2 s, ~60).
    assert!((6..=9).contains(&first_minute), "{calls_at:?}");
    // The gaps grow until they reach the cap.
    let gaps: Vec<Duration> = calls_at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[2..].windows(2).all(|w| w[1] >= w[0]), "{gaps:?}");

    // Four more minutes: about one call a minute (each wait 48 to 60 s).
    simulate(&g, &spec, &clock, 120..600, &mut calls_at).await;
    let later = hits.load(Ordering::SeqCst) - first_minute;
    assert!((3..=6).contains(&later), "{later} calls: {calls_at:?}");
    let last_gap = calls_at[calls_at.len() - 1] - calls_at[calls_at.len() - 2];
    assert!(last_gap >= Duration::from_secs(48), "{calls_at:?}");
    assert!(!g.health().available);
}

#[tokio::test]
async fn a_redirect_is_a_generator_error_and_the_body_is_not_sent_on() {
    let moved = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&moved);
    let app = Router::new()
        .route(
            "/generate",
            post(|| async {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, "/elsewhere/generate?sig=abc")],
                )
                    .into_response()
            }),
        )
        .route(
            "/elsewhere/generate",
            post(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { axum::Json(json!({"data": {}})) }
            }),
        );
    let g = HttpGenerator::new("moved", &serve(app).await, Duration::from_secs(10), 1);
    let err = g.generate(&request()).await.unwrap_err();
    let ErrorKind::HttpStatus { status, body } = &err.kind else {
        panic!("unexpected {err}");
    };
    assert_eq!(*status, 307);
    assert!(body.contains("not followed"), "{body}");
    assert!(body.contains("/elsewhere/generate"), "{body}");
    assert!(!body.contains("sig=abc"), "{body}");
    assert_eq!(
        moved.load(Ordering::SeqCst),
        0,
        "the body went nowhere else"
    );
}
