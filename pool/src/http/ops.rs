//! Operations endpoints outside the API prefix, and the API description.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::AppState;
use super::problem::ApiError;

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready once the store is open (the server only starts then), until shutdown begins.
pub async fn readyz(State(app): State<AppState>) -> Response {
    if *app.shutdown.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

pub async fn metrics(State(app): State<AppState>) -> Result<Response, ApiError> {
    let active = app.store.active_lease_count().await?;
    let stock = app.store.stock().await?;
    let text = app.metrics.render(active, app.queue.len(), &stock);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

pub async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

pub async fn index() -> Html<&'static str> {
    Html(include_str!("index.html"))
}
