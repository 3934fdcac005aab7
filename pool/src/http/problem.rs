//! `application/problem+json` errors, request-body parsing and the role extractors.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use stockroom_protocol::api::{
    LEASE_TOKEN_HEADER, MAX_BODY_BYTES, PROBLEM_CONTENT_TYPE, Problem, ProblemKind,
};
use stockroom_protocol::pool_config::Role;

use super::AppState;
use crate::auth::Caller;
use crate::service::{Proof, ServiceError};
use crate::store::StoreError;

/// An error answer: a problem, and a `Retry-After` for 503s.
#[derive(Debug)]
pub struct ApiError {
    pub problem: Box<Problem>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> ApiError {
        ApiError {
            problem: Box::new(Problem::new(kind, detail)),
            retry_after: None,
        }
    }

    /// A malformed request: 400, kind `invalid-request`.
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(ProblemKind::InvalidRequest, detail);
        e.problem.status = 400;
        e
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        tracing::error!(error = %e, "store failure");
        if matches!(e, StoreError::Full(_)) {
            let mut a = ApiError::new(
                ProblemKind::StoreFull,
                "the pool's store is full (no space left); nothing was changed. Retry later; \
                 the pool's operators must free space (the error is in the pool's log)",
            );
            a.retry_after = Some(30);
            return a;
        }
        if e.is_unavailable() {
            // The database is down or unreachable: worth a retry, not a bug report.
            let mut a = ApiError::new(
                ProblemKind::Unavailable,
                "the pool's database is unreachable; retry shortly (the error is in the pool's log)",
            );
            a.retry_after = Some(2);
            return a;
        }
        ApiError::new(
            ProblemKind::Internal,
            "the pool's store failed; the error is in the pool's log",
        )
    }
}

/// The one mapping from a refused or failed pool operation to its answer.
impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        let detail = e.to_string();
        match e {
            ServiceError::Invalid(_) => ApiError::new(ProblemKind::InvalidRequest, detail),
            ServiceError::UnknownState { known, .. } => {
                let mut a = ApiError::new(ProblemKind::UnknownState, detail);
                a.problem.known_states = Some(known);
                a
            }
            ServiceError::NotFound(_) => ApiError::new(ProblemKind::NotFound, detail),
            ServiceError::LeaseGone { lease_id, .. } => {
                let mut a = ApiError::new(ProblemKind::LeaseGone, detail);
                a.problem.lease_id = Some(lease_id);
                a
            }
            ServiceError::NotHolder(_) => ApiError::new(ProblemKind::NotHolder, detail),
            ServiceError::IdempotencyConflict(_) => {
                ApiError::new(ProblemKind::IdempotencyConflict, detail)
            }
            ServiceError::WrongStatus { .. } => ApiError::new(ProblemKind::Conflict, detail),
            ServiceError::UnknownExtension { known, .. } => {
                let mut a = ApiError::new(ProblemKind::UnknownState, detail);
                a.problem.known_states = Some(known);
                a
            }
            ServiceError::GeneratorFailed { generator, .. } => {
                let mut a = ApiError::new(ProblemKind::GeneratorFailed, detail);
                a.problem.generator = Some(generator);
                a
            }
            ServiceError::NoStock {
                shortfall,
                queued_behind,
            } => {
                let mut detail = if queued_behind {
                    "not enough stock for this request: earlier waiting requests for the same states are served first".to_string()
                } else {
                    "not enough stock for this request; nothing is held".to_string()
                };
                for s in shortfall.iter().filter(|s| s.entities_held > 0) {
                    detail.push_str(&format!(
                        "; {}: {} ready dataset(s) match but share entities with other active leases, so they \
                         cannot be handed out until those leases end",
                        s.name, s.entities_held
                    ));
                }
                let mut a = ApiError::new(ProblemKind::NoStock, detail);
                a.problem.shortfall = Some(shortfall);
                a.retry_after = Some(5);
                a
            }
            ServiceError::ShuttingDown => {
                let mut a = ApiError::new(ProblemKind::Unavailable, detail);
                a.retry_after = Some(2);
                a
            }
            ServiceError::Store(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.problem).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// A JSON request body: 413 over 1 MiB, 400 when it is not JSON, 422 when
/// it is JSON of the wrong shape; the problem's detail says why.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    ProblemKind::TooLarge,
                    format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
                )
            } else {
                ApiError::bad_request(format!("cannot read the request body: {e}"))
            }
        })?;
        parse_json(&bytes).map(Body)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::new(
            ProblemKind::InvalidRequest,
            format!("the JSON body does not fit: {e}"),
        ),
        _ => ApiError::bad_request(format!("the body is not valid JSON: {e}")),
    })
}

fn authorize(parts: &Parts, state: &AppState, role: Role) -> Result<Caller, ApiError> {
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    state
        .tokens
        .check(header, role)
        .map_err(|(kind, detail)| ApiError::new(kind, detail))
}

/// A caller with at least role `ci`.
pub struct Ci(pub Caller);
/// A caller with at least role `ci`, and what it shows to act on a lease:
/// the `Stockroom-Lease-Token` header, or (without one) an admin token.
/// Checked by the store inside each lease operation (`Proof::for_act`).
pub struct LeaseCaller(pub Caller, pub Proof);
/// A caller with role `admin`.
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Ci {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authorize(parts, state, Role::Ci).map(Ci)
    }
}

impl FromRequestParts<AppState> for LeaseCaller {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = authorize(parts, state, Role::Ci)?;
        let token = parts
            .headers
            .get(LEASE_TOKEN_HEADER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string());
        let proof = match token {
            Some(t) => Proof::Token(Some(t)),
            // Only a configured admin token: a pool without tokens makes every
            // caller admin, and that must not release others' leases.
            None if state.tokens.enabled() && caller.role == Role::Admin => Proof::Admin,
            None => Proof::Token(None),
        };
        Ok(LeaseCaller(caller, proof))
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authorize(parts, state, Role::Admin).map(Admin)
    }
}
