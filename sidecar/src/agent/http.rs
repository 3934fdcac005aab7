//! The agent's HTTP face (docs/per-test.md): four routes, loopback peers
//! only, the per-run bearer token on every request, problem+json errors with
//! the pool's `type` URIs.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use stockroom_protocol::api::{PROBLEM_CONTENT_TYPE, Problem, ProblemKind};

use super::core::{Agent, AgentError};
use crate::client::ClientError;

/// Largest request body the agent reads.
const MAX_BODY: usize = 1024 * 1024;

fn problem_response(problem: Problem, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
    );
    if let Some(secs) = retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        headers.insert(header::RETRY_AFTER, v);
    }
    response
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        let detail = self.to_string();
        let simple = |kind| problem_response(Problem::new(kind, detail.clone()), None);
        match self {
            AgentError::Unauthorized => simple(ProblemKind::Unauthorized),
            AgentError::NotLoopback => simple(ProblemKind::Forbidden),
            AgentError::NotFound(_) => simple(ProblemKind::NotFound),
            AgentError::Invalid(_) => simple(ProblemKind::InvalidRequest),
            AgentError::Closing => problem_response(
                Problem::new(ProblemKind::Unavailable, detail.clone()),
                Some(1),
            ),
            AgentError::Internal(_) => simple(ProblemKind::Internal),
            // The pool's own refusal, as the pool gave it (unknown-state with
            // known_states, no-stock with shortfall, …).
            AgentError::Pool(ClientError::Problem {
                problem,
                retry_after,
                ..
            }) => problem_response(*problem, retry_after.map(|d| d.as_secs())),
            AgentError::Pool(e @ ClientError::Unreachable { .. }) => problem_response(
                Problem::new(
                    ProblemKind::Unavailable,
                    format!("the agent could not reach the pool: {e}"),
                ),
                Some(2),
            ),
            AgentError::Pool(e) => problem_response(
                Problem::new(
                    ProblemKind::Unavailable,
                    format!("the pool's answer was unusable: {e}"),
                ),
                Some(2),
            ),
        }
    }
}

/// Loopback peers with the agent token only, before any route runs.
async fn guard(
    State(agent): State<Arc<Agent>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if !peer.ip().is_loopback() {
        tracing::warn!("agent: refused a request from {peer}: not loopback");
        return AgentError::NotLoopback.into_response();
    }
    let offered = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match offered {
        Some(token) if agent.token_matches(token) => next.run(request).await,
        _ => AgentError::Unauthorized.into_response(),
    }
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, AgentError> {
    if body.len() > MAX_BODY {
        return Err(AgentError::Invalid(format!(
            "request body over {MAX_BODY} bytes"
        )));
    }
    serde_json::from_slice(body)
        .map_err(|e| AgentError::Invalid(format!("the request body is not valid: {e}")))
}

async fn reserve(State(agent): State<Arc<Agent>>, body: Bytes) -> Response {
    match async { agent.reserve(parse(&body)?).await }.await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn take(State(agent): State<Arc<Agent>>, body: Bytes) -> Response {
    match async { agent.take(parse(&body)?).await }.await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn done(
    State(agent): State<Arc<Agent>>,
    Path(take_id): Path<String>,
    body: Bytes,
) -> Response {
    match async { agent.done(&take_id, parse(&body)?).await }.await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn list(State(agent): State<Arc<Agent>>) -> Response {
    axum::Json(agent.list()).into_response()
}

async fn not_found() -> Response {
    AgentError::NotFound(
        "no such agent route: POST /v1/reserve, POST /v1/take, POST /v1/takes/{take_id}/done, GET /v1/takes"
            .into(),
    )
    .into_response()
}

async fn wrong_method() -> Response {
    let mut p = Problem::new(
        ProblemKind::InvalidRequest,
        "method not allowed on this agent route",
    );
    p.status = 405;
    problem_response(p, None)
}

pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/v1/reserve", post(reserve))
        .route("/v1/take", post(take))
        .route("/v1/takes/{take_id}/done", post(done))
        .route("/v1/takes", get(list))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(Arc::clone(&agent), guard))
        .with_state(agent)
}
