//! Operations endpoints outside the API prefix, and the API description.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use stockroom_protocol::api::{Problem, RefreshAnswer};
use stockroom_protocol::pool_config::Role;

use super::AppState;
use super::problem::{Admin, ApiError};

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready once the store is open (the server only starts then), until shutdown
/// begins. Problems in the generators' capabilities follow as `problem:` lines
/// (the pool still serves what works).
pub async fn readyz(State(app): State<AppState>) -> Response {
    if app.service.shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else if !app.service.writes_ok().await {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "store full: writes fail (no space left); ready again once a write succeeds\n",
        )
            .into_response()
    } else {
        let mut body = String::from("ready\n");
        for p in app.service.problems() {
            body.push_str(&format!("problem: {p}\n"));
        }
        body.into_response()
    }
}

/// `POST /api/v1/generators/refresh` (admin): reload capabilities now.
#[utoipa::path(
    post,
    path = "/api/v1/generators/refresh",
    tag = "admin",
    summary = "Reload every generator's capabilities now (an addition to the contract)",
    responses(
        (status = 200, description = "Each generator's result and the catalog problems", body = RefreshAnswer),
        (status = 401, description = "…/unauthorized: no token, or one the pool does not know", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "…/forbidden: the token's role may not do this, or a cross-site request to a pool without tokens", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn refresh_generators(
    State(app): State<AppState>,
    Admin(_): Admin,
) -> Json<RefreshAnswer> {
    Json(app.service.refresh_generators().await)
}

/// `GET /metrics`: a `ci` token is needed when tokens are configured,
/// unless `metrics_public = true` (docs/pool.md, "Metrics").
pub async fn metrics(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !app.service.config().metrics_public {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        app.tokens
            .check(auth, Role::Ci)
            .map_err(|(kind, detail)| ApiError::new(kind, detail))?;
    }
    let text = app.service.metrics_text().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "catalog",
    summary = "This API description (no token needed)",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)),
    security(())
)]
pub async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}
