//! A generator reached over HTTP: `GET {url}/capabilities`, `POST {url}/generate`,
//! `POST {url}/extend`.

use std::time::Duration;

use stockroom_protocol::backoff::BackoffPolicy;
use stockroom_protocol::generator::{
    Capabilities, ExtendAnswer, ExtendRequest, GenerateAnswer, GenerateRequest,
};
use tokio::time::Instant;

use crate::client::{CallLimits, GeneratorClient, MAX_ANSWER_BYTES, decode, encode};
use crate::error::{ErrorKind, GeneratorError, Operation};

/// How failed attempts are retried within one call.
///
/// Only failures that say nothing was done are retried: the connection could
/// not be made, or the service answered 5xx. A 4xx is the generator refusing
/// the request and is never retried. All attempts share the call's timeout.
/// The waits come from the shared backoff with full jitter
/// ([`stockroom_protocol::backoff`]), so that calls failing together (a
/// generator restarting) are not retried together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    /// The ceiling of the wait before the second attempt; doubled for each later one.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The backoff of one call.
    pub fn backoff(&self) -> BackoffPolicy {
        BackoffPolicy::full_jitter(self.first_backoff, self.max_backoff)
    }
}

/// Longest excerpt of an error body kept with an [`ErrorKind::HttpStatus`].
const BODY_EXCERPT_BYTES: usize = 1024;

#[derive(Debug, Clone)]
pub struct HttpGenerator {
    limits: CallLimits,
    base_url: String,
    retry: RetryPolicy,
    http: reqwest::Client,
}

impl HttpGenerator {
    pub fn new(name: &str, base_url: &str, timeout: Duration, concurrency: usize) -> Self {
        // Redirects are not followed: a POST body is never re-sent elsewhere
        // (a 307 would), and a redirect is reported as the generator's error.
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("stockroom-pool/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        HttpGenerator {
            limits: CallLimits::new(name, timeout, concurrency),
            base_url: base_url.trim_end_matches('/').to_string(),
            retry: RetryPolicy::default(),
            http,
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// One call with its retries (lifecycle calls use it too, see
    /// [`crate::lifecycle`]): `POST {url}/OPERATION`, or `GET` without a body.
    pub(crate) async fn call(
        &self,
        operation: Operation,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, GeneratorError> {
        let _slot = self.limits.slot().await;
        let deadline = Instant::now() + self.limits.timeout;
        let url = format!("{}/{}", self.base_url, operation.as_str());
        let mut backoff = self.retry.backoff().start();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (kind, retryable) = match tokio::time::timeout_at(
                deadline,
                self.attempt(&url, body.as_deref()),
            )
            .await
            {
                Err(_) => (ErrorKind::Timeout(self.limits.timeout), false),
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(failure)) => failure,
            };
            let pause = backoff.next_delay();
            if !retryable
                || attempt >= self.retry.max_attempts
                || Instant::now() + pause >= deadline
            {
                return Err(self.limits.error(operation, kind));
            }
            tracing::debug!(generator = %self.limits.name, %operation, attempt, error = %kind, "retrying generator call");
            tokio::time::sleep(pause).await;
        }
    }

    /// One request; on failure, the error and whether another attempt may help.
    async fn attempt(&self, url: &str, body: Option<&[u8]>) -> Result<Vec<u8>, (ErrorKind, bool)> {
        let request = match body {
            None => self.http.get(url),
            Some(body) => self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec()),
        };
        let mut response = request.send().await.map_err(|e| transport_error(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut bytes = Vec::new();
        let limit = if status.is_success() {
            MAX_ANSWER_BYTES
        } else {
            BODY_EXCERPT_BYTES
        };
        while let Some(chunk) = response.chunk().await.map_err(|e| transport_error(&e))? {
            if bytes.len() + chunk.len() > limit {
                if status.is_success() {
                    return Err((
                        ErrorKind::Malformed(format!("answer is larger than {limit} bytes")),
                        false,
                    ));
                }
                bytes.extend_from_slice(&chunk[..limit - bytes.len()]);
                break;
            }
            bytes.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok(bytes);
        }
        if status.is_redirection() {
            let location = response_location(&headers);
            return Err((
                ErrorKind::HttpStatus {
                    status: status.as_u16(),
                    body: format!(
                        "the generator answered a redirect{location}, which is not followed (a request body is never re-sent elsewhere); set its url in [[generators]] to the address that answers"
                    ),
                },
                false,
            ));
        }
        let body = String::from_utf8_lossy(&bytes).into_owned();
        Err((
            ErrorKind::HttpStatus {
                status: status.as_u16(),
                body,
            },
            status.is_server_error(),
        ))
    }
}

/// ` to LOCATION` when a redirect names where (without its query).
fn response_location(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|l| format!(" to {}", l.split('?').next().unwrap_or_default()))
        .unwrap_or_default()
}

/// Describes a transport failure with its causes, without the URL.
fn transport_error(err: &reqwest::Error) -> (ErrorKind, bool) {
    let mut text = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        source = e.source();
    }
    // reqwest names the URL in its top-level message; it is known from the config.
    let text = text.replace(
        &format!(
            " for url ({})",
            err.url().map(|u| u.as_str()).unwrap_or_default()
        ),
        "",
    );
    (ErrorKind::Connect(text), err.is_connect())
}

impl GeneratorClient for HttpGenerator {
    fn name(&self) -> &str {
        &self.limits.name
    }

    async fn capabilities(&self) -> Result<Capabilities, GeneratorError> {
        let body = self.call(Operation::Capabilities, None).await?;
        decode(&self.limits, Operation::Capabilities, &body)
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<GenerateAnswer, GeneratorError> {
        let body = self
            .call(Operation::Generate, Some(encode(request)))
            .await?;
        decode(&self.limits, Operation::Generate, &body)
    }

    async fn extend(&self, request: &ExtendRequest) -> Result<ExtendAnswer, GeneratorError> {
        let body = self.call(Operation::Extend, Some(encode(request))).await?;
        decode(&self.limits, Operation::Extend, &body)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_jittered_under_a_doubling_ceiling() {
        let p = RetryPolicy {
            max_attempts: 10,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
        };
        for seed in 0..50 {
            let mut b = p.backoff().start_seeded(seed);
            for ceiling in [100, 200, 400, 700, 700] {
                assert!(b.next_delay() <= Duration::from_millis(ceiling));
            }
        }
    }
}
