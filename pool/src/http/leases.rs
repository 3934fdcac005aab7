//! `/leases`: acquire, inspect, heartbeat, release, extend. Thin: each
//! handler parses, calls the pool service, and answers.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use stockroom_protocol::LeaseStatus;
use stockroom_protocol::api::{
    DatasetView, ExtendDatasetRequest, HeartbeatAnswer, HeartbeatRequest, LeaseList, LeaseRequest,
    LeaseView, ReleaseAnswer, ReleaseRequest,
};

use super::AppState;
use super::problem::{ApiError, Body, Ci, LeaseCaller, parse_json};

pub async fn create(
    State(app): State<AppState>,
    Ci(_): Ci,
    Body(req): Body<LeaseRequest>,
) -> Result<Response, ApiError> {
    let leased = app.service.lease(req).await?;
    let status = if leased.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(leased.granted)).into_response())
}

/// `?limit=` of a list: 1 to 1000, 100 when absent.
pub(super) fn limit(q: &HashMap<String, String>) -> Result<u32, ApiError> {
    Ok(match q.get("limit") {
        Some(l) => l
            .parse::<u32>()
            .map_err(|_| ApiError::bad_request(format!("limit must be a number, found {l:?}")))?,
        None => 100,
    }
    .clamp(1, 1000))
}

pub async fn list(
    State(app): State<AppState>,
    Ci(_): Ci,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<LeaseList>, ApiError> {
    let status = match q.get("status") {
        Some(s) => Some(s.parse::<LeaseStatus>().map_err(ApiError::bad_request)?),
        None => None,
    };
    Ok(Json(app.service.leases(status, limit(&q)?).await?))
}

pub async fn get(
    State(app): State<AppState>,
    Ci(_): Ci,
    Path(id): Path<String>,
) -> Result<Json<LeaseView>, ApiError> {
    Ok(Json(app.service.lease_view(id).await?))
}

pub async fn heartbeat(
    State(app): State<AppState>,
    LeaseCaller(_, proof): LeaseCaller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<HeartbeatAnswer>, ApiError> {
    let req: HeartbeatRequest = if body.iter().all(u8::is_ascii_whitespace) {
        HeartbeatRequest::default()
    } else {
        parse_json(&body)?
    };
    Ok(Json(
        app.service.heartbeat(id, &proof, req.ttl_seconds).await?,
    ))
}

pub async fn release(
    State(app): State<AppState>,
    LeaseCaller(_, proof): LeaseCaller,
    Path(id): Path<String>,
    Body(req): Body<ReleaseRequest>,
) -> Result<Json<ReleaseAnswer>, ApiError> {
    let released = app
        .service
        .release(id, &proof, req.outcome, req.reason, req.details_url)
        .await?;
    Ok(Json(released.answer))
}

/// Advances a leased dataset by an extension, for the lease's holder (its
/// token is the proof).
pub async fn extend(
    State(app): State<AppState>,
    LeaseCaller(_, proof): LeaseCaller,
    Path((id, dataset_id)): Path<(String, String)>,
    Body(req): Body<ExtendDatasetRequest>,
) -> Result<Json<DatasetView>, ApiError> {
    Ok(Json(
        app.service
            .extend(id, &proof, dataset_id, req.extension)
            .await?,
    ))
}
