//! A generator service on loopback, as a team would run one (docs/generators.md):
//! it answers `GET /capabilities` with one state, `customer/active`, and
//! accepts every `POST /generate` without ever answering it: it holds the
//! connection until the pool gives up and closes it. Plain HTTP/1.1 with
//! keep-alive, one thread per connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// The capabilities it answers.
pub const CAPABILITIES: &str =
    r#"{"produces": [{"type": "customer", "state": "active", "fields": ["customer_id"]}]}"#;

pub struct HangingGenerator {
    /// `host:port` it listens on.
    pub addr: String,
    generates: Arc<AtomicUsize>,
    arrived: mpsc::Receiver<()>,
}

impl HangingGenerator {
    pub fn start() -> HangingGenerator {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the generator");
        let addr = listener.local_addr().expect("addr").to_string();
        let generates = Arc::new(AtomicUsize::new(0));
        let (tx, arrived) = mpsc::channel();
        let counter = Arc::clone(&generates);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (counter, tx) = (Arc::clone(&counter), tx.clone());
                std::thread::spawn(move || serve(conn, &counter, &tx));
            }
        });
        HangingGenerator {
            addr,
            generates,
            arrived,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many `generate` requests arrived so far.
    pub fn generates(&self) -> usize {
        self.generates.load(Ordering::SeqCst)
    }

    /// Waits until the next `generate` request arrives (it is then held);
    /// `false` if none came within `timeout`.
    pub fn wait_for_generate(&self, timeout: Duration) -> bool {
        self.arrived.recv_timeout(timeout).is_ok()
    }
}

fn serve(conn: TcpStream, generates: &AtomicUsize, arrived: &mpsc::Sender<()>) {
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut conn = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if request_line.starts_with("POST /generate ") {
            generates.fetch_add(1, Ordering::SeqCst);
            let _ = arrived.send(());
            // Never answer: read until the pool closes the connection.
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
            return;
        }
        let (status, body) = if request_line.starts_with("GET /capabilities ") {
            ("200 OK", CAPABILITIES)
        } else {
            ("404 Not Found", r#"{"error": "no such route"}"#)
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if conn.write_all(head.as_bytes()).is_err() || conn.write_all(body.as_bytes()).is_err() {
            return;
        }
    }
}
