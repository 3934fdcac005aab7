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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentConfig;
    use crate::client::PoolClient;
    use axum::extract::connect_info::MockConnectInfo;
    use stockroom_protocol::api::Holder;

    /// Serves `router(agent)` as if every request came from `peer`.
    async fn serve_as(agent: Arc<Agent>, peer: SocketAddr) -> SocketAddr {
        let app = router(agent).layer(MockConnectInfo(peer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app.into_make_service()).await;
        });
        addr
    }

    #[tokio::test]
    async fn non_loopback_peers_and_requests_without_the_token_are_refused() {
        let config = AgentConfig {
            client: PoolClient::new("http://127.0.0.1:9", None, &Default::default())
                .expect("client"),
            holder: Holder::default(),
            ttl_seconds: None,
            retry_for: std::time::Duration::from_secs(1),
            details_url: None,
        };
        let agent = Arc::new(Agent::new(config).expect("agent"));
        let token = agent.token().to_string();
        let http = reqwest::Client::new();
        let get = |addr: SocketAddr, token: Option<String>| {
            let mut req = http.get(format!("http://{addr}/v1/takes"));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            async move {
                let resp = req.send().await.expect("send");
                let status = resp.status().as_u16();
                let kind = resp
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                (status, kind, body)
            }
        };
        let remote = serve_as(Arc::clone(&agent), SocketAddr::from(([10, 1, 2, 3], 4242))).await;
        let (status, kind, body) = get(remote, Some(token.clone())).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(kind.as_deref(), Some(PROBLEM_CONTENT_TYPE));
        assert_eq!(body["type"], ProblemKind::Forbidden.uri());

        let local = serve_as(Arc::clone(&agent), SocketAddr::from(([127, 0, 0, 1], 4242))).await;
        let (status, _, body) = get(local, None).await;
        assert_eq!(
            (status, &body["type"]),
            (401, &serde_json::json!(ProblemKind::Unauthorized.uri()))
        );
        let (status, _, _) = get(local, Some(format!("{token}x"))).await;
        assert_eq!(status, 401);
        let (status, _, body) = get(local, Some(token)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["takes"], serde_json::json!([]));
        assert!(!agent.token_matches(""));
    }
}
