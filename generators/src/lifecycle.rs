//! The lifecycle calls of docs/generators.md ("Lifecycle calls"): `cleanup`,
//! `reset` and `verify` of a dataset already generated, over HTTP
//! (`POST {url}/cleanup|reset|verify`) or as a command (`CMD cleanup|reset|verify`,
//! the request on stdin).
//!
//! They go through the same transport as `generate` (one call's timeout,
//! retries of what says nothing was done, the answer size cap) and the same
//! health gate: a generator that keeps failing them is backed off like one
//! that keeps failing `generate`. A malformed, slow or huge answer is a
//! failed call, never a dataset in an unknown state.

use serde::de::DeserializeOwned;
use stockroom_protocol::generator::{
    CleanupAnswer, LifecycleCall, LifecycleRequest, ResetAnswer, VerifyAnswer,
};

use crate::client::{AnyGenerator, GeneratorClient, encode};
use crate::error::{ErrorKind, GeneratorError, Operation, describe_json_error};
use crate::tracked::TrackedGenerator;
use crate::validate::{Violation, validate_reset_answer};

impl AnyGenerator {
    /// Sends one lifecycle call and parses its answer (unchecked).
    pub async fn lifecycle<T: DeserializeOwned>(
        &self,
        call: LifecycleCall,
        request: &LifecycleRequest,
    ) -> Result<T, GeneratorError> {
        let operation = Operation::from(call);
        let body = Some(encode(request));
        let answer = match self {
            AnyGenerator::Http(g) => g.call(operation, body).await?,
            AnyGenerator::Command(g) => g.call(operation, body).await?,
        };
        let fail =
            |why: String| GeneratorError::new(self.name(), operation, ErrorKind::Malformed(why));
        if answer.iter().all(u8::is_ascii_whitespace) {
            return Err(fail("answer is empty".to_string()));
        }
        serde_json::from_slice(&answer).map_err(|e| fail(describe_json_error(&e)))
    }
}

impl TrackedGenerator<AnyGenerator> {
    /// `cleanup`: the dataset was consumed or discarded; any JSON object answers it.
    pub async fn cleanup(&self, request: &LifecycleRequest) -> Result<(), GeneratorError> {
        self.run(
            Operation::Cleanup,
            self.client()
                .lifecycle::<CleanupAnswer>(LifecycleCall::Cleanup, request),
            |_| Ok(()),
        )
        .await
        .map(drop)
    }

    /// `reset`: the dataset back at its state's start; the answer must still
    /// carry the state's promised `fields`.
    pub async fn reset(
        &self,
        fields: &[String],
        request: &LifecycleRequest,
    ) -> Result<ResetAnswer, GeneratorError> {
        self.run(
            Operation::Reset,
            self.client()
                .lifecycle::<ResetAnswer>(LifecycleCall::Reset, request),
            |a| validate_reset_answer(fields, a),
        )
        .await
    }

    /// `verify`: whether the dataset still holds in the system under test.
    /// An answer of `valid: false` is a successful call.
    pub async fn verify(&self, request: &LifecycleRequest) -> Result<VerifyAnswer, GeneratorError> {
        self.run(
            Operation::Verify,
            self.client()
                .lifecycle::<VerifyAnswer>(LifecycleCall::Verify, request),
            |a: &VerifyAnswer| match &a.reason {
                Some(r) if r.len() > MAX_REASON_BYTES => Err(Violation {
                    problems: vec![format!("reason is longer than {MAX_REASON_BYTES} bytes")],
                }),
                _ => Ok(()),
            },
        )
        .await
    }
}

/// Longest `reason` a verify answer may give (it is kept in the history).
pub const MAX_REASON_BYTES: usize = 2000;
