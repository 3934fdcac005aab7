//! The two HTTP clients the bench can drive the pool with.
//!
//! - `reqwest`: what the sidecar uses; one `reqwest::Client` (one keep-alive
//!   connection) per simulated CI job.
//! - `raw`: a minimal HTTP/1.1 keep-alive client on a `TcpStream` (one request
//!   in flight, `content-length` bodies only). It costs far less CPU than
//!   reqwest, so on a machine where the bench and the pool share the cores
//!   more of the CPU goes to the pool; comparing both shows how much of a
//!   figure is the client's.

use std::net::SocketAddr;
use std::time::Duration;

use stockroom_protocol::api::LEASE_TOKEN_HEADER;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Which client library drives the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientKind {
    Reqwest,
    Raw,
}

impl ClientKind {
    pub fn name(self) -> &'static str {
        match self {
            ClientKind::Reqwest => "reqwest",
            ClientKind::Raw => "raw",
        }
    }
}

/// One simulated CI job's connection to the pool.
pub enum Http {
    Reqwest {
        client: reqwest::Client,
        base: String,
    },
    Raw {
        addr: SocketAddr,
        conn: Option<BufReader<TcpStream>>,
        head: String,
        body: Vec<u8>,
    },
}

const TIMEOUT: Duration = Duration::from_secs(30);

impl Http {
    pub fn new(kind: ClientKind, addr: SocketAddr) -> Result<Http, String> {
        Ok(match kind {
            ClientKind::Reqwest => Http::Reqwest {
                client: reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .tcp_nodelay(true)
                    .timeout(TIMEOUT)
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {e}"))?,
                base: format!("http://{addr}"),
            },
            ClientKind::Raw => Http::Raw {
                addr,
                conn: None,
                head: String::with_capacity(256),
                body: Vec::with_capacity(4096),
            },
        })
    }

    /// `POST path` with a JSON body, and the lease's token when acting on a
    /// lease (docs/pool.md, "Lease tokens"); the status and the body of the answer.
    pub async fn post(
        &mut self,
        path: &str,
        json: &[u8],
        lease_token: Option<&str>,
    ) -> Result<(u16, Vec<u8>), String> {
        match self {
            Http::Reqwest { client, base } => {
                let mut req = client
                    .post(format!("{base}{path}"))
                    .header("content-type", "application/json");
                if let Some(t) = lease_token {
                    req = req.header(LEASE_TOKEN_HEADER, t);
                }
                let resp = req
                    .body(json.to_vec())
                    .send()
                    .await
                    .map_err(|e| format!("transport: {e}"))?;
                let status = resp.status().as_u16();
                let body = resp.bytes().await.map_err(|e| format!("transport: {e}"))?;
                Ok((status, body.to_vec()))
            }
            Http::Raw {
                addr,
                conn,
                head,
                body,
            } => {
                let result = tokio::time::timeout(
                    TIMEOUT,
                    raw_post(*addr, conn, head, body, (path, lease_token), json),
                )
                .await
                .map_err(|_| "transport: timed out".to_string())
                .and_then(|r| r.map_err(|e| format!("transport: {e}")));
                if result.is_err() {
                    // Start over on a fresh connection next time.
                    *conn = None;
                }
                result
            }
        }
    }

    /// `GET path`; the status and the body (used outside the measured loop).
    pub async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), String> {
        let (client, base) = match self {
            Http::Reqwest { client, base } => (client.clone(), base.clone()),
            Http::Raw { addr, .. } => (
                reqwest::Client::builder()
                    .timeout(TIMEOUT)
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {e}"))?,
                format!("http://{addr}"),
            ),
        };
        let resp = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .map_err(|e| format!("transport: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| format!("transport: {e}"))?;
        Ok((status, body.to_vec()))
    }
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

async fn raw_post(
    addr: SocketAddr,
    conn: &mut Option<BufReader<TcpStream>>,
    line: &mut String,
    out: &mut Vec<u8>,
    (path, lease_token): (&str, Option<&str>),
    json: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let stream = match conn {
        Some(s) => s,
        None => {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            conn.insert(BufReader::with_capacity(16 * 1024, s))
        }
    };
    out.clear();
    let token = lease_token
        .map(|t| format!("{LEASE_TOKEN_HEADER}: {t}\r\n"))
        .unwrap_or_default();
    out.extend_from_slice(
        format!(
            "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n{token}content-length: {}\r\n\r\n",
            json.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(json);
    stream.get_mut().write_all(out).await?;

    line.clear();
    if stream.read_line(line).await? == 0 {
        return Err(invalid("connection closed before the answer".into()));
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {line:?}")))?;
    let mut length: Option<usize> = None;
    let mut close = false;
    loop {
        line.clear();
        if stream.read_line(line).await? == 0 {
            return Err(invalid("connection closed in the headers".into()));
        }
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else {
            return Err(invalid(format!("bad header {h:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse()
                    .map_err(|_| invalid(format!("bad content-length {value:?}")))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(invalid(format!(
                "transfer-encoding {value} is not supported by the raw client"
            )));
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    let mut body = vec![0u8; length.unwrap_or(0)];
    stream.read_exact(&mut body).await?;
    if close {
        *conn = None;
    }
    Ok((status, body))
}
