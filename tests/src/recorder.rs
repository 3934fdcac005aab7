//! A recording proxy in front of the pool: it forwards every connection and
//! notes each HTTP request that passes (when its head arrived, its method,
//! path and body), so a test can count the calls a client made, such as
//! the agent's heartbeats (docs/per-test.md).
//!
//! Requests are read off the client's side of each connection as they are
//! forwarded: heads up to the blank line, then `Content-Length` bytes of
//! body (the sidecar's client sends no chunked request bodies). Answers are
//! copied back untouched.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

use crate::relay::copy;

/// One request as it passed the proxy.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// When its head had fully arrived.
    pub at: Instant,
    pub method: String,
    /// The request target (`/api/v1/leases/heartbeat`).
    pub path: String,
    pub body: Vec<u8>,
}

impl Recorded {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

pub struct Recorder {
    addr: String,
    log: Arc<Mutex<Vec<Recorded>>>,
    stopping: Arc<AtomicBool>,
}

impl Recorder {
    /// Binds a port on loopback and forwards each connection to `target`.
    pub fn start(target: &str) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the recorder");
        let addr = listener.local_addr().expect("recorder address").to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let (to, into, stop) = (target.to_string(), Arc::clone(&log), Arc::clone(&stopping));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(upstream) = TcpStream::connect(&to) else {
                    drop(client);
                    continue;
                };
                let (Ok(client_w), Ok(upstream_w)) = (client.try_clone(), upstream.try_clone())
                else {
                    continue;
                };
                let log = Arc::clone(&into);
                std::thread::spawn(move || forward_recording(client, upstream_w, &log));
                std::thread::spawn(move || copy(upstream, client_w));
            }
        });
        Recorder {
            addr,
            log,
            stopping,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in the order their heads arrived.
    pub fn requests(&self) -> Vec<Recorded> {
        let mut all = self.log.lock().expect("recorder log").clone();
        all.sort_by_key(|r| r.at);
        all
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees `stopping`.
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Copies the client's bytes upstream, noting each request in them.
fn forward_recording(mut from: TcpStream, mut to: TcpStream, log: &Mutex<Vec<Recorded>>) {
    let mut reader = Requests::default();
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        for request in reader.feed(&buf[..n]) {
            if let Ok(mut log) = log.lock() {
                log.push(request);
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

/// A head that arrived, waiting for its body.
struct Pending {
    at: Instant,
    method: String,
    path: String,
    length: usize,
}

/// Splits one connection's bytes into requests.
#[derive(Default)]
struct Requests {
    buf: Vec<u8>,
    pending: Option<Pending>,
}

impl Requests {
    fn feed(&mut self, bytes: &[u8]) -> Vec<Recorded> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            if self.pending.is_none() {
                let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    return out;
                };
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                let mut lines = head.lines();
                let mut first = lines.next().unwrap_or_default().split_whitespace();
                let method = first.next().unwrap_or_default().to_string();
                let path = first.next().unwrap_or_default().to_string();
                let length = lines
                    .filter_map(|l| l.split_once(':'))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse().ok())
                    .unwrap_or(0);
                self.pending = Some(Pending {
                    at: Instant::now(),
                    method,
                    path,
                    length,
                });
            }
            let Some(pending) = self.pending.take_if(|p| self.buf.len() >= p.length) else {
                return out;
            };
            let body = self.buf.drain(..pending.length).collect();
            out.push(Recorded {
                at: pending.at,
                method: pending.method,
                path: pending.path,
                body,
            });
        }
    }
}
