//! A TCP relay in front of the pool: a port the harness holds for a whole
//! test, forwarding each connection to wherever the pool listens now.
//!
//! A killed pool frees its port, and anything may take it before a restart
//! could bind it again, so a restarted pool listens on a new port 0. A
//! client that must keep one address across the restart (a running
//! `stockroom run`, which read its manifest once) is pointed at the relay
//! instead. While the relay has no target (the pool is down) it accepts and
//! at once closes each connection, as a load balancer with no backend would:
//! the client sees a failed request and retries.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub struct Relay {
    addr: String,
    target: Arc<Mutex<Option<String>>>,
    stopping: Arc<AtomicBool>,
}

impl Relay {
    /// Binds a port on loopback and relays to `target`.
    pub fn start(target: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let addr = listener.local_addr().expect("relay address").to_string();
        let target = Arc::new(Mutex::new(Some(target.to_string())));
        let stopping = Arc::new(AtomicBool::new(false));
        let (to, stop) = (Arc::clone(&target), Arc::clone(&stopping));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let upstream = to.lock().map(|t| t.clone()).unwrap_or_default();
                match upstream.and_then(|a| TcpStream::connect(a).ok()) {
                    Some(upstream) => pipe(client, upstream),
                    None => drop(client),
                }
            }
        });
        Relay {
            addr,
            target,
            stopping,
        }
    }

    /// `127.0.0.1:PORT`, the same for the relay's whole life.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Relays new connections to `target` from now on.
    pub fn point_to(&self, target: &str) {
        *self.target.lock().expect("relay target") = Some(target.to_string());
    }

    /// Closes new connections at once (the pool is down) until [`Relay::point_to`].
    pub fn cut(&self) {
        *self.target.lock().expect("relay target") = None;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees `stopping`.
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Copies both ways until either side closes.
fn pipe(client: TcpStream, upstream: TcpStream) {
    let (Ok(client_w), Ok(upstream_w)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    std::thread::spawn(move || copy(client, upstream_w));
    std::thread::spawn(move || copy(upstream, client_w));
}

pub(crate) fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
