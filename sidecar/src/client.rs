//! The pool's HTTP API (docs/pool.md) as the sidecar calls it.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use stockroom_protocol::api::{
    API_PREFIX, Catalog, DatasetOutcome, ExtendDatasetRequest, HeartbeatAnswer,
    HeartbeatBatchAnswer, HeartbeatBatchRequest, HeartbeatRequest, LEASE_TOKEN_HEADER,
    LeaseGranted, LeaseRequest, LeaseView, Problem, ProblemKind, ReleaseAnswer, ReleaseRequest,
    ReleasedDataset,
};
use stockroom_protocol::backoff::{Backoff, BackoffPolicy};
use stockroom_protocol::dataset::Dataset;

use crate::config::Token;
use crate::errors::Error;

/// How long a connection attempt may take before the pool counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time for a request beyond any server-side wait it asked for.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a call to the pool failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer at all: refused, reset, timed out, DNS.
    #[error("failed to reach the pool at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// An `application/problem+json` answer.
    #[error("the pool answered {status} {}{}", problem.title, detail_suffix(&problem.detail))]
    Problem {
        status: u16,
        problem: Box<Problem>,
        retry_after: Option<Duration>,
    },
    /// A non-success answer that is not a problem document.
    #[error("the pool answered {status} at {url}: {body}")]
    Http {
        status: u16,
        url: String,
        body: String,
    },
    /// A success answer that does not parse.
    #[error("failed to read the pool's answer from {url}: {message}")]
    Decode { url: String, message: String },
    /// The pool's TLS certificate is not trusted: retrying cannot help.
    #[error(
        "the pool at {url} presented a TLS certificate this job does not trust ({message}). If the pool's certificate comes from a company CA, pass --ca-file PATH or set STOCKROOM_CA_FILE to that CA's PEM file (the system's roots, SSL_CERT_FILE, and the public web roots are trusted already)"
    )]
    Tls { url: String, message: String },
    /// No answer within the time left for this attempt (`--retry-for`).
    #[error("no answer from the pool within {}", humantime::format_duration(*.after))]
    TimedOut { after: Duration },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl ClientError {
    /// The problem kind, from the body's `type` or, lacking one, the status.
    pub fn kind(&self) -> Option<ProblemKind> {
        match self {
            ClientError::Problem {
                problem, status, ..
            } => problem.kind().or_else(|| kind_from_status(*status)),
            ClientError::Http { status, .. } => kind_from_status(*status),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Problem { status, .. } | ClientError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Worth retrying: no answer, or the pool (or a proxy before it) is
    /// momentarily unable to serve. `no-stock` is handled by the caller.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } | ClientError::TimedOut { .. } => true,
            ClientError::Problem { .. } | ClientError::Http { .. } => match self.kind() {
                Some(ProblemKind::Unavailable | ProblemKind::Internal) => true,
                Some(_) => false,
                None => self.status().is_some_and(|s| s >= 500 && s != 501),
            },
            ClientError::Decode { .. } | ClientError::Tls { .. } => false,
        }
    }

    /// The sidecar failure this becomes when it ends a command.
    pub fn into_error(self, pool: &str) -> Error {
        match self.kind() {
            Some(ProblemKind::Unauthorized | ProblemKind::Forbidden) => Error::TokenRejected {
                pool: pool.to_string(),
                status: self.status().unwrap_or(401),
                detail: match &self {
                    ClientError::Problem { problem, .. } => problem.detail.clone(),
                    other => other.to_string(),
                },
            },
            _ if matches!(self, ClientError::Unreachable { .. }) || self.is_transient() => {
                Error::PoolUnreachable {
                    pool: pool.to_string(),
                    attempts: 1,
                    waited: "0s".into(),
                    last: self.to_string(),
                }
            }
            _ => Error::Config(format!("failed to use the pool at {pool}: {self}")),
        }
    }
}

fn kind_from_status(status: u16) -> Option<ProblemKind> {
    Some(match status {
        401 => ProblemKind::Unauthorized,
        403 => ProblemKind::Forbidden,
        404 => ProblemKind::NotFound,
        410 => ProblemKind::LeaseGone,
        413 => ProblemKind::TooLarge,
        422 => ProblemKind::InvalidRequest,
        500 => ProblemKind::Internal,
        503 => ProblemKind::Unavailable,
        _ => return None,
    })
}

/// Text of an error and its causes (reqwest hides "connection refused" in a source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        cur = s.source();
    }
    text
}

/// Which roots the client trusts besides the system's and the web PKI's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// PEM file of extra CA certificates (`--ca-file`, `STOCKROOM_CA_FILE`).
    pub ca_file: Option<PathBuf>,
}

impl Tls {
    /// The CA certificates of `ca_file`, each a root to trust.
    fn roots(&self) -> Result<Vec<reqwest::Certificate>, Error> {
        let Some(path) = &self.ca_file else {
            return Ok(Vec::new());
        };
        let what = format!(
            "the CA file {} (--ca-file / STOCKROOM_CA_FILE)",
            path.display()
        );
        let pem = std::fs::read(path)
            .map_err(|e| Error::Config(format!("failed to read {what}: {e}")))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::Config(format!("failed to read {what}: {}", error_chain(&e))))?;
        if certs.is_empty() {
            return Err(Error::Config(format!(
                "{what} holds no certificate: expected PEM text with \"-----BEGIN CERTIFICATE-----\" blocks"
            )));
        }
        Ok(certs)
    }
}

/// The rustls error under a transport failure, if a certificate is what
/// failed. Payloads of `io::Error`s are searched too (`io::Error::source`
/// skips its own payload, and hyper wraps one `io::Error` in another).
fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(rustls_error) = e.downcast_ref::<rustls::Error>() {
        return matches!(
            rustls_error,
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
        )
        .then(|| rustls_error.to_string());
    }
    if let Some(payload) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        && let Some(found) = tls_failure(payload)
    {
        return Some(found);
    }
    e.source().and_then(tls_failure)
}

/// A client of one pool.
#[derive(Clone)]
pub struct PoolClient {
    base: String,
    http: reqwest::Client,
    token: Option<Token>,
    /// Sent with every call of a client made by [`PoolClient::holding`].
    lease_token: Option<crate::lease::LeaseToken>,
}

impl PoolClient {
    /// A client trusting the system's roots, the web PKI and `tls`'s CA file.
    pub fn new(base: &str, token: Option<Token>, tls: &Tls) -> Result<PoolClient, Error> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("stockroom/", env!("CARGO_PKG_VERSION")));
        for root in tls.roots()? {
            builder = builder.add_root_certificate(root);
        }
        let http = builder.build().map_err(|e| {
            Error::Internal(format!(
                "failed to build the HTTP client: {}",
                error_chain(&e)
            ))
        })?;
        Ok(PoolClient {
            base: base.trim_end_matches('/').to_string(),
            http,
            token,
            lease_token: None,
        })
    }

    /// This client acting as the holder of one lease: its calls carry the
    /// lease token in the `Stockroom-Lease-Token` header.
    pub fn holding(&self, lease_token: Option<crate::lease::LeaseToken>) -> PoolClient {
        PoolClient {
            lease_token,
            ..self.clone()
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let url = format!("{}{API_PREFIX}{path}", self.base);
        let mut request = self.http.request(method, &url).timeout(timeout);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        if let Some(lease_token) = &self.lease_token {
            request = request.header(LEASE_TOKEN_HEADER, lease_token.expose());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| match tls_failure(&e) {
            Some(message) => ClientError::Tls {
                url: self.base.clone(),
                message,
            },
            None => ClientError::Unreachable {
                url: url.clone(),
                message: error_chain(&e),
            },
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                message: error_chain(&e),
            })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
                url,
                message: e.to_string(),
            });
        }
        match serde_json::from_slice::<Problem>(&bytes) {
            Ok(problem) => Err(ClientError::Problem {
                status: status.as_u16(),
                problem: Box::new(problem),
                retry_after,
            }),
            Err(_) => Err(ClientError::Http {
                status: status.as_u16(),
                url,
                body: String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
            }),
        }
    }

    /// `POST /leases`; the server may hold the request up to `wait_seconds`.
    pub async fn lease(&self, request: &LeaseRequest) -> Result<LeaseGranted, ClientError> {
        let wait = Duration::from_secs(request.wait_seconds.unwrap_or(0));
        self.call(
            Method::POST,
            "/leases",
            Some(request),
            wait + REQUEST_TIMEOUT,
        )
        .await
    }

    pub async fn heartbeat(&self, lease_id: &str) -> Result<HeartbeatAnswer, ClientError> {
        let path = format!("/leases/{}/heartbeat", encode(lease_id));
        self.call(
            Method::POST,
            &path,
            Some(&HeartbeatRequest::default()),
            REQUEST_TIMEOUT,
        )
        .await
    }

    pub async fn release(
        &self,
        lease_id: &str,
        request: &ReleaseRequest,
    ) -> Result<ReleaseAnswer, ClientError> {
        let path = format!("/leases/{}/release", encode(lease_id));
        self.call(Method::POST, &path, Some(request), REQUEST_TIMEOUT)
            .await
    }

    /// `POST /leases/{id}/datasets/{dataset_id}/release`: settles one
    /// dataset early (a client made by [`PoolClient::holding`]).
    pub async fn release_dataset(
        &self,
        lease_id: &str,
        dataset_id: &str,
        outcome: &DatasetOutcome,
    ) -> Result<ReleasedDataset, ClientError> {
        let path = format!(
            "/leases/{}/datasets/{}/release",
            encode(lease_id),
            encode(dataset_id)
        );
        self.call(Method::POST, &path, Some(outcome), REQUEST_TIMEOUT)
            .await
    }

    /// `POST /leases/heartbeat`: every listed lease in one call.
    pub async fn heartbeat_batch(
        &self,
        request: &HeartbeatBatchRequest,
    ) -> Result<HeartbeatBatchAnswer, ClientError> {
        self.call(
            Method::POST,
            "/leases/heartbeat",
            Some(request),
            REQUEST_TIMEOUT,
        )
        .await
    }

    pub async fn lease_view(&self, lease_id: &str) -> Result<LeaseView, ClientError> {
        let path = format!("/leases/{}", encode(lease_id));
        self.call::<(), _>(Method::GET, &path, None, REQUEST_TIMEOUT)
            .await
    }

    /// Extensions call a generator, which may take a while.
    pub async fn extend(
        &self,
        lease_id: &str,
        dataset_id: &str,
        extension: &str,
    ) -> Result<Dataset, ClientError> {
        let path = format!(
            "/leases/{}/datasets/{}/extend",
            encode(lease_id),
            encode(dataset_id)
        );
        let body = ExtendDatasetRequest {
            extension: extension.to_string(),
        };
        self.call(Method::POST, &path, Some(&body), Duration::from_secs(300))
            .await
    }

    pub async fn catalog(&self) -> Result<Catalog, ClientError> {
        self.call::<(), _>(Method::GET, "/catalog", None, REQUEST_TIMEOUT)
            .await
    }
}

/// Percent-encodes a path segment (ids are URL-safe in practice; be safe anyway).
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The sidecar's retry delays: full jitter from 200 ms up to `cap`
/// (docs/sidecar.md "Retries"), so that shards failing together after a pool
/// restart do not retry together.
pub fn retry_backoff(cap: Duration) -> Backoff {
    BackoffPolicy::full_jitter(FIRST_RETRY, cap).start()
}

/// The ceiling of the first retry delay.
const FIRST_RETRY: Duration = Duration::from_millis(200);
/// The first attempt of a retried call gets at least this long, even when
/// `--retry-for` is shorter.
const MIN_FIRST_ATTEMPT: Duration = Duration::from_secs(1);

/// Calls `f` until it succeeds, fails for good, or `bound` has passed;
/// transient failures are retried with backoff. No attempt outlasts the time
/// left of `bound` (docs/sidecar.md "Retries"). Returns the last error and
/// the number of attempts.
pub async fn retry_transient<T, F, Fut>(bound: Duration, f: F) -> Result<T, (ClientError, u32)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    retry_transient_with(bound, retry_backoff(Duration::from_secs(5)), f).await
}

/// [`retry_transient`] with a given delay sequence (tests seed it).
pub async fn retry_transient_with<T, F, Fut>(
    bound: Duration,
    mut backoff: Backoff,
    mut f: F,
) -> Result<T, (ClientError, u32)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let started = tokio::time::Instant::now();
    let deadline = started + bound.max(MIN_FIRST_ATTEMPT);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let result = match tokio::time::timeout(left, f()).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::TimedOut {
                after: started.elapsed(),
            }),
        };
        match result {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() => {
                let delay = backoff.next_delay();
                if tokio::time::Instant::now() + delay >= deadline {
                    return Err((e, attempts));
                }
                tracing::debug!("attempt {attempts} failed ({e}); retrying in {delay:?}");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err((e, attempts)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_classified_by_type_then_status() {
        let p = |kind| ClientError::Problem {
            status: 503,
            problem: Box::new(Problem::new(kind, "x")),
            retry_after: None,
        };
        assert_eq!(p(ProblemKind::NoStock).kind(), Some(ProblemKind::NoStock));
        assert!(!p(ProblemKind::NoStock).is_transient());
        assert!(p(ProblemKind::Unavailable).is_transient());
        let http = ClientError::Http {
            status: 410,
            url: "u".into(),
            body: String::new(),
        };
        assert_eq!(http.kind(), Some(ProblemKind::LeaseGone));
        let bad_gateway = ClientError::Http {
            status: 502,
            url: "u".into(),
            body: String::new(),
        };
        assert!(bad_gateway.is_transient());
        let unauthorized = ClientError::Http {
            status: 401,
            url: "u".into(),
            body: String::new(),
        };
        assert_eq!(
            crate::exit::Exit::from(unauthorized.into_error("http://p")).code(),
            77
        );
    }

    #[test]
    fn retry_delays_are_jittered_below_their_cap_and_segments_are_encoded() {
        let mut b = retry_backoff(Duration::from_millis(700));
        for ceiling in [200, 400, 700, 700] {
            assert!(b.next_delay() <= Duration::from_millis(ceiling));
        }
        assert_eq!(encode("l_1-a.b"), "l_1-a.b");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }
}
