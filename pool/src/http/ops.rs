//! Operations endpoints outside the API prefix, and the API description.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use stockroom_protocol::api::{Problem, RefreshAnswer};

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

pub async fn metrics(State(app): State<AppState>) -> Result<Response, ApiError> {
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
