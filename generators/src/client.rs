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
    serde_json::from_slice(body)
        .map_err(|e| limits.error(operation, ErrorKind::Malformed(describe_json_error(&e))))
}

/// Serialises a request body; our own types always serialise.
pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

/// Answers larger than this are refused as malformed.
pub(crate) const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
