//! A pool that answers the three calls `stockroom run` makes (lease,
//! heartbeat, release) with canned answers built from the protocol's own
//! types, over real HTTP on a port of its own. It lets these tests reach
//! every exit code of `run` in a fraction of a second; the end-to-end tests
//! in `tests/` run the same paths against the real pool.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use stockroom_protocol::api::{
    API_PREFIX, HeartbeatAnswer, LEASE_TOKEN_HEADER, LeaseGranted, LeasedDataset,
    PROBLEM_CONTENT_TYPE, Problem, ProblemKind, ReleaseAnswer, Shortfall,
};
use stockroom_protocol::{Dataset, LeaseStatus};

pub const LEASE_ID: &str = "lease_stub";
/// The `lease_token` of the stub's lease answer.
pub const LEASE_TOKEN: &str = "lt_stub0123456789abcdef0123456789abcdef";

/// What the stub answers to `POST /leases`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseAnswer {
    /// One dataset `buyer` (customer/active).
    Grant,
    /// 503 `no-stock`, at once, with a shortfall.
    NoStock,
    /// 401 `unauthorized`.
    RejectToken,
    /// 409 `idempotency-conflict`: another process holds the key's lease.
    KeyConflict,
}

/// What the stub answers to heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatAnswerKind {
    Alive,
    /// 410 `lease-gone`: the lease is lost.
    Gone,
}

/// One request the stub received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub body: Value,
    /// The `Stockroom-Lease-Token` header, if sent.
    pub lease_token: Option<String>,
}

pub struct StubPool {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl StubPool {
    /// Listens on a fresh port; the accept thread ends with the test process.
    pub fn start(lease: LeaseAnswer, heartbeat: HeartbeatAnswerKind) -> StubPool {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stub pool");
        let addr = listener.local_addr().expect("stub pool address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = Arc::clone(&log);
                std::thread::spawn(move || serve(stream, lease, heartbeat, &log));
            }
        });
        StubPool { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests so far whose path ends with `suffix`.
    pub fn seen(&self, suffix: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .expect("stub pool log")
            .iter()
            .filter(|s| s.path.ends_with(suffix))
            .cloned()
            .collect()
    }
}

fn serve(
    stream: TcpStream,
    lease: LeaseAnswer,
    heartbeat: HeartbeatAnswerKind,
    log: &Mutex<Vec<Seen>>,
) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut length = 0usize;
    let mut lease_token = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() {
            return;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case(LEASE_TOKEN_HEADER) {
                lease_token = Some(value.trim().to_string());
            }
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    log.lock().expect("stub pool log").push(Seen {
        path: path.clone(),
        body,
        lease_token,
    });
    let (status, content_type, answer) = answer(&method, &path, lease, heartbeat);
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        if status < 300 { "OK" } else { "Error" },
        answer.len()
    );
    let mut stream = reader.into_inner();
    // A sidecar that gave up on the answer is not this stub's problem.
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(answer.as_bytes());
}

fn answer(
    method: &str,
    path: &str,
    lease: LeaseAnswer,
    heartbeat: HeartbeatAnswerKind,
) -> (u16, &'static str, String) {
    let leases = format!("{API_PREFIX}/leases");
    match (method, path) {
        ("POST", p) if p == leases => match lease {
            LeaseAnswer::Grant => json(&granted()),
            LeaseAnswer::NoStock => problem(Problem {
                shortfall: Some(vec![Shortfall {
                    name: "buyer".into(),
                    wanted: 1,
                    ready: 0,
                    generating: 0,
                    generator: None,
                    down: None,
                    entities_held: 0,
                }]),
                ..Problem::new(ProblemKind::NoStock, "not enough stock")
            }),
            LeaseAnswer::RejectToken => {
                problem(Problem::new(ProblemKind::Unauthorized, "unknown token"))
            }
            LeaseAnswer::KeyConflict => problem(Problem::new(
                ProblemKind::IdempotencyConflict,
                "this idempotency_key has an active lease for another request or another process",
            )),
        },
        ("POST", p) if p.ends_with("/heartbeat") => match heartbeat {
            HeartbeatAnswerKind::Alive => json(&HeartbeatAnswer {
                lease_id: LEASE_ID.into(),
                expires_at: "2099-01-01T00:00:00Z".into(),
                heartbeat_interval_seconds: 1,
            }),
            HeartbeatAnswerKind::Gone => problem(Problem {
                lease_id: Some(LEASE_ID.into()),
                ..Problem::new(ProblemKind::LeaseGone, "the lease was released")
            }),
        },
        ("POST", p) if p.ends_with("/release") => json(&ReleaseAnswer {
            lease_id: LEASE_ID.into(),
            status: LeaseStatus::Released,
            outcome: None,
            datasets: Vec::new(),
        }),
        _ => problem(Problem::new(
            ProblemKind::NotFound,
            format!("no route {method} {path}"),
        )),
    }
}

fn json(value: &impl serde::Serialize) -> (u16, &'static str, String) {
    let text = serde_json::to_string(value).expect("encode an answer");
    (200, "application/json", text)
}

fn problem(problem: Problem) -> (u16, &'static str, String) {
    let text = serde_json::to_string(&problem).expect("encode a problem");
    (problem.status, PROBLEM_CONTENT_TYPE, text)
}

fn granted() -> LeaseGranted {
    LeaseGranted {
        lease_id: LEASE_ID.into(),
        lease_token: Some(LEASE_TOKEN.into()),
        expires_at: "2099-01-01T00:00:00Z".into(),
        heartbeat_interval_seconds: 1,
        datasets: vec![LeasedDataset {
            name: "buyer".into(),
            index: 0,
            count: 1,
            dataset: Dataset {
                id: "ds_1".into(),
                type_name: "customer".into(),
                state: "active".into(),
                attributes: Default::default(),
                data: serde_json::json!({"customer_id": "C1"}),
                secret_fields: Vec::new(),
                entities: Vec::new(),
                inputs: Default::default(),
            },
        }],
    }
}
