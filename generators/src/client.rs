//! One trait over both kinds of generator, and the choice between them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use stockroom_protocol::generator::{
    Capabilities, ExtendAnswer, ExtendRequest, GenerateAnswer, GenerateRequest,
};
use stockroom_protocol::pool_config::{GeneratorConfig, GeneratorEndpoint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::command::CommandGenerator;
use crate::error::{ErrorKind, GeneratorError, Operation, describe_json_error};
use crate::http::HttpGenerator;

/// The generator protocol (docs/generators.md), whatever carries it.
///
/// Answers are parsed but not checked against the generator's promises; see
/// [`crate::validate`] and [`crate::TrackedGenerator`] for that.
pub trait GeneratorClient: Send + Sync {
    /// The generator's name from the pool config.
    fn name(&self) -> &str;
    fn capabilities(&self) -> impl Future<Output = Result<Capabilities, GeneratorError>> + Send;
    fn generate(
        &self,
        request: &GenerateRequest,
    ) -> impl Future<Output = Result<GenerateAnswer, GeneratorError>> + Send;
    fn extend(
        &self,
        request: &ExtendRequest,
    ) -> impl Future<Output = Result<ExtendAnswer, GeneratorError>> + Send;
}

/// Either kind of generator, chosen from its `[[generators]]` entry.
#[derive(Debug, Clone)]
pub enum AnyGenerator {
    Http(HttpGenerator),
    Command(CommandGenerator),
}

impl AnyGenerator {
    pub fn from_config(config: &GeneratorConfig) -> AnyGenerator {
        let timeout = config.timeout.as_duration();
        let concurrency = config.concurrency.max(1) as usize;
        match &config.endpoint {
            GeneratorEndpoint::Http(url) => {
                AnyGenerator::Http(HttpGenerator::new(&config.name, url, timeout, concurrency))
            }
            GeneratorEndpoint::Command(argv) => AnyGenerator::Command(
                CommandGenerator::new(&config.name, argv.clone(), timeout, concurrency)
                    .with_env(config.env.clone(), config.cwd.clone()),
            ),
        }
    }
}

impl GeneratorClient for AnyGenerator {
    fn name(&self) -> &str {
        match self {
            AnyGenerator::Http(g) => g.name(),
            AnyGenerator::Command(g) => g.name(),
        }
    }

    async fn capabilities(&self) -> Result<Capabilities, GeneratorError> {
        match self {
            AnyGenerator::Http(g) => g.capabilities().await,
            AnyGenerator::Command(g) => g.capabilities().await,
        }
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<GenerateAnswer, GeneratorError> {
        match self {
            AnyGenerator::Http(g) => g.generate(request).await,
            AnyGenerator::Command(g) => g.generate(request).await,
        }
    }

    async fn extend(&self, request: &ExtendRequest) -> Result<ExtendAnswer, GeneratorError> {
        match self {
            AnyGenerator::Http(g) => g.extend(request).await,
            AnyGenerator::Command(g) => g.extend(request).await,
        }
    }
}

/// What both transports share: a name, a time limit per call and a bound on
/// calls in flight.
#[derive(Debug, Clone)]
pub(crate) struct CallLimits {
    pub name: Arc<str>,
    pub timeout: Duration,
    pub slots: Arc<Semaphore>,
}

impl CallLimits {
    pub fn new(name: &str, timeout: Duration, concurrency: usize) -> Self {
        CallLimits {
            name: Arc::from(name),
            timeout,
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// Waits for a free slot. Time spent queued here is not part of the
    /// call's timeout: it says nothing about the generator.
    pub async fn slot(&self) -> OwnedSemaphorePermit {
        // The semaphore is never closed, so acquiring cannot fail.
        match Arc::clone(&self.slots).acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("generator semaphore is never closed"),
        }
    }

    pub fn error(&self, operation: Operation, kind: ErrorKind) -> GeneratorError {
        GeneratorError::new(self.name.as_ref(), operation, kind)
    }
}

/// Parses an answer body, describing (never echoing) what was wrong.
pub(crate) fn decode<T: DeserializeOwned>(
    limits: &CallLimits,
    operation: Operation,
    body: &[u8],
) -> Result<T, GeneratorError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(limits.error(
            operation,
            ErrorKind::Malformed("answer is empty".to_string()),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let mut what = describe_json_error(&e);
        if let Some(hint) = text_beside_json(body) {
            what.push_str("; ");
            what.push_str(&hint);
        }
        limits.error(operation, ErrorKind::Malformed(what))
    })
}

/// When an answer is not JSON but one of its lines is, the rest is most
/// likely log output written to stdout instead of stderr: say so, counting
/// the other lines without showing them (they may hold secrets).
fn text_beside_json(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let json_line = lines.iter().position(|l| {
        let l = l.trim();
        l.starts_with('{') && serde_json::from_str::<serde_json::Value>(l).is_ok()
    })?;
    let others = lines.len() - 1;
    (others > 0).then(|| {
        format!(
            "besides a JSON line (line {} of {}) the answer holds {others} other line{} of text: \
             log output on stdout? Keep stdout for the answer alone and log to stderr",
            json_line + 1,
            lines.len(),
            if others == 1 { "" } else { "s" }
        )
    })
}

/// Serialises a request body; our own types always serialise.
pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

/// Answers larger than this are refused as malformed.
pub(crate) const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_beside_a_json_answer_are_named_as_such_without_their_text() {
        let body = b"connecting to the shop at db-secret-host\n{\"data\": {}}\n";
        let hint = text_beside_json(body).unwrap_or_default();
        assert!(hint.contains("line 2 of 2"), "{hint}");
        assert!(
            hint.contains("1 other line of text: log output on stdout?"),
            "{hint}"
        );
        assert!(!hint.contains("db-secret-host"), "{hint}");
        assert_eq!(text_beside_json(b"{\"data\": {}}"), None);
        assert_eq!(text_beside_json(b"garbage"), None);
    }
}
