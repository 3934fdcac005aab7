//! A generator client with its health: held back while failing, every call
//! timed and counted, every answer checked against the contract.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stockroom_protocol::api::GeneratorHealth;
use stockroom_protocol::generator::{
    Capabilities, ExtendAnswer, ExtendRequest, ExtensionSpec, GenerateAnswer, GenerateRequest,
    ProducedState,
};

use crate::client::{AnyGenerator, GeneratorClient};
use crate::error::{ErrorKind, GeneratorError, Operation};
use crate::health::{HealthPolicy, HealthTracker};
use crate::validate::{Violation, validate_extend_answer, validate_generate_answer};

pub struct TrackedGenerator<C = AnyGenerator> {
    client: C,
    health: Mutex<HealthTracker>,
    clock: MonotonicClock,
}

/// Where a tracked generator reads the time for its health gate; tests
/// inject one they move by hand.
pub type MonotonicClock = Arc<dyn Fn() -> Instant + Send + Sync>;

impl<C: std::fmt::Debug> std::fmt::Debug for TrackedGenerator<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackedGenerator")
            .field("client", &self.client)
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

impl<C: GeneratorClient> TrackedGenerator<C> {
    pub fn new(client: C, policy: HealthPolicy) -> Self {
        let health = Mutex::new(HealthTracker::new(client.name(), policy));
        TrackedGenerator {
            client,
            health,
            clock: Arc::new(Instant::now),
        }
    }

    /// With a given health tracker (a seeded one) and clock, for tests.
    pub fn with_tracker(client: C, tracker: HealthTracker, clock: MonotonicClock) -> Self {
        TrackedGenerator {
            client,
            health: Mutex::new(tracker),
            clock,
        }
    }

    pub fn name(&self) -> &str {
        self.client.name()
    }

    pub fn client(&self) -> &C {
        &self.client
    }

    fn with_health<T>(&self, f: impl FnOnce(&mut HealthTracker) -> T) -> T {
        // A panic while holding this lock cannot leave the tracker half-updated
        // in a harmful way, so a poisoned lock is still used.
        let mut guard = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    pub fn health(&self) -> GeneratorHealth {
        self.with_health(|h| h.snapshot())
    }

    /// Whether a call would go out now (not held back by backoff), for
    /// callers that would rather plan around a failing generator than ask it.
    pub fn ready_to_call(&self) -> bool {
        let now = (self.clock)();
        self.with_health(|h| h.gate(Operation::Generate, now).is_ok())
    }

    /// Median latency of recent successful calls of `operation`, for the planner.
    pub fn median_latency(&self, operation: Operation) -> Option<Duration> {
        self.with_health(|h| h.median_latency(operation))
    }

    pub(crate) async fn run<T>(
        &self,
        operation: Operation,
        call: impl Future<Output = Result<T, GeneratorError>>,
        check: impl FnOnce(&T) -> Result<(), Violation>,
    ) -> Result<T, GeneratorError> {
        let now = (self.clock)();
        if let Err(wait) = self.with_health(|h| h.gate(operation, now)) {
            return Err(GeneratorError::new(
                self.name(),
                operation,
                ErrorKind::BackingOff(wait),
            ));
        }
        let started = Instant::now();
        let outcome = call.await.and_then(|answer| match check(&answer) {
            Ok(()) => Ok(answer),
            Err(v) => Err(GeneratorError::new(
                self.name(),
                operation,
                ErrorKind::ContractViolation(v.to_string()),
            )),
        });
        let latency = started.elapsed();
        match &outcome {
            Ok(_) => self.with_health(|h| h.record_success(operation, latency)),
            Err(e) => {
                tracing::warn!(generator = %self.name(), %operation, error = %e.kind, "generator call failed");
                let now = (self.clock)();
                self.with_health(|h| h.record_failure(operation, latency, &e.to_string(), now));
            }
        }
        outcome
    }

    pub async fn capabilities(&self) -> Result<Capabilities, GeneratorError> {
        self.run(Operation::Capabilities, self.client.capabilities(), |_| {
            Ok(())
        })
        .await
    }

    /// Generates and checks the answer against `spec` (the state's entry in
    /// the catalog graph, see [`crate::StateInfo::as_produced_state`]).
    pub async fn generate(
        &self,
        spec: &ProducedState,
        request: &GenerateRequest,
    ) -> Result<GenerateAnswer, GeneratorError> {
        self.run(Operation::Generate, self.client.generate(request), |a| {
            validate_generate_answer(spec, request, a)
        })
        .await
    }

    /// Extends and checks that the new data holds `target_fields` (the target
    /// state's fields) and the extension's own.
    pub async fn extend(
        &self,
        extension: &ExtensionSpec,
        target_fields: &[String],
        request: &ExtendRequest,
    ) -> Result<ExtendAnswer, GeneratorError> {
        self.run(Operation::Extend, self.client.extend(request), |a| {
            validate_extend_answer(extension, target_fields, a)
        })
        .await
    }
}
