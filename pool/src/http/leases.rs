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
    DatasetOutcome, DatasetView, ExtendDatasetRequest, HeartbeatAnswer, HeartbeatBatchAnswer,
    HeartbeatBatchRequest, HeartbeatBatchResult, HeartbeatRequest, LeaseGranted, LeaseList,
    LeaseRequest, LeaseView, Problem, ReleaseAnswer, ReleaseRequest, ReleasedDataset,
};

use stockroom_protocol::pool_config::Role;

use super::AppState;
use super::problem::{ApiError, Body, Ci, LeaseCaller, parse_json};
use crate::service::{ServiceError, redact};

#[utoipa::path(
    post,
    path = "/api/v1/leases",
    tag = "leases",
    summary = "Lease every item atomically, or nothing",
    description = "201 with a new lease; 200 with the same lease (and a fresh lease_token) when the idempotency_key of an active lease is repeated with the same request. Role ci.",
    request_body(content = LeaseRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Leased", body = LeaseGranted),
        (status = 200, description = "The same idempotency_key while the lease is active: the same lease", body = LeaseGranted),
        (status = 400, description = "…/invalid-request: the body is not JSON, or a query parameter is malformed", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "…/unauthorized: no token, or one the pool does not know", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "…/forbidden: the token's role may not do this, or a cross-site request to a pool without tokens", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "…/idempotency-conflict: the same idempotency_key with another request, or from another live process", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "…/too-large: the body is over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "…/invalid-request: the body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "…/unknown-state (with known_states), or …/invalid-request: JSON of the wrong shape or values", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "…/generator-failed: the generator could not make it", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "…/store-full: the pool's store cannot write", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "…/no-stock: not enough stock by wait_seconds (with shortfall); nothing is held", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds after which to ask again"))),
    ),
    security(("bearer" = []))
)]
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

#[utoipa::path(
    get,
    path = "/api/v1/leases",
    tag = "leases",
    summary = "Leases with holder and datasets, secrets redacted",
    params(
        ("status" = Option<stockroom_protocol::LeaseStatus>, Query, description = "Only leases in this status"),
        ("limit" = Option<u32>, Query, description = "At most this many (1 to 1000, values outside are clamped; default 100)"),
    ),
    responses(
        (status = 200, description = "The leases, newest first", body = LeaseList),
        (status = 400, description = "…/invalid-request: the body is not JSON, or a query parameter is malformed", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "…/unauthorized: no token, or one the pool does not know", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "…/forbidden: the token's role may not do this, or a cross-site request to a pool without tokens", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
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

#[utoipa::path(
    get,
    path = "/api/v1/leases/{id}",
    tag = "leases",
    summary = "One lease, secrets redacted",
    params(("id" = String, Path, description = "The lease id")),
    responses(
        (status = 200, description = "The lease", body = LeaseView),
        (status = 401, description = "…/unauthorized: no token, or one the pool does not know", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "…/forbidden: the token's role may not do this, or a cross-site request to a pool without tokens", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "…/not-found: no such lease or dataset", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(app): State<AppState>,
    Ci(_): Ci,
    Path(id): Path<String>,
) -> Result<Json<LeaseView>, ApiError> {
    Ok(Json(app.service.lease_view(id).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/leases/{id}/heartbeat",
    tag = "leases",
    summary = "Extend a lease; 410 once expired or released",
    params(("id" = String, Path, description = "The lease id"), ("Stockroom-Lease-Token" = String, Header, description = "The lease_token of the POST /leases answer (docs/pool.md, Lease tokens)")),
    request_body(content = Option<HeartbeatRequest>, description = "Optional: another ttl_seconds", content_type = "application/json"),
    responses(
        (status = 200, description = "Extended", body = HeartbeatAnswer),
        (status = 400, description = "…/invalid-request: the body is not JSON, or a query parameter is malformed", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "…/unauthorized: no token, or one the pool does not know", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "…/not-holder: no or a wrong Stockroom-Lease-Token; …/forbidden: the token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "…/not-found: no such lease or dataset", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "…/lease-gone: the lease expired or was released", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "…/too-large: the body is over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "…/invalid-request: the body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "…/invalid-request: JSON of the wrong shape or values", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "…/store-full: the pool's store cannot write", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
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

#[utoipa::path(
    post,
    path = "/api/v1/leases/{id}/release",
    tag = "leases",
    summary = "End a lease with an outcome; idempotent",
    description = "passed: consumed (ready again for a reusable state); failed, cancelled: quarantined unless on_failure = release. The same answer on every repeat. An admin may release without the lease token.",
    params(("id" = String, Path, description = "The lease id"), ("Stockroom-Lease-Token" = String, Header, description = "The lease_token of the POST /leases answer (docs/pool.md, Lease tokens)")),
    request_body(content = ReleaseRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Released (or already released with this outcome)", body = ReleaseAnswer),
        (status = 400, description = "…/invalid-request: the body is not JSON, or a query parameter is malformed", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "…/unauthorized: no token, or one the pool does not know", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "…/not-holder: no or a wrong Stockroom-Lease-Token; …/forbidden: the token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "…/not-found: no such lease or dataset", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "…/lease-gone: the lease expired or was released", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "…/too-large: the body is over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "…/invalid-request: the body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "…/invalid-request: JSON of the wrong shape or values", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "…/store-full: the pool's store cannot write", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn release(
    State(app): State<AppState>,
    LeaseCaller(_, proof): LeaseCaller,
    Path(id): Path<String>,
    Body(req): Body<ReleaseRequest>,
) -> Result<Json<ReleaseAnswer>, ApiError> {
    let released = app
        .service
        .release_each(
            id,
            &proof,
            req.outcome,
            req.reason,
            req.details_url,
            req.datasets,
        )
        .await?;
    Ok(Json(released.answer))
}

/// Settles one dataset of a lease early (docs/per-test.md), for the lease's holder.
#[utoipa::path(
    post,
    path = "/api/v1/leases/{id}/datasets/{dataset_id}/release",
    tag = "leases",
    summary = "Settle one dataset of a lease early; the lease goes on for the others",
    description = "docs/per-test.md. Outcome passed, failed, cancelled or unused (ready again).",
    params(("id" = String, Path, description = "The lease id"), ("dataset_id" = String, Path, description = "A dataset of the lease"), ("Stockroom-Lease-Token" = String, Header, description = "The lease_token of the POST /leases answer (docs/pool.md, Lease tokens)")),
    request_body(content = DatasetOutcome, content_type = "application/json"),
    responses(
        (status = 200, description = "What became of the dataset", body = ReleasedDataset),
        (status = 400, description = "…/invalid-request: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "…/unauthorized: no token, or one the pool does not know", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "…/not-holder: no or a wrong Stockroom-Lease-Token; …/forbidden: the token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "…/not-found: no such lease, or the dataset is not one of its", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "…/conflict: the dataset was already settled otherwise", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "…/lease-gone: the lease expired or was released", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "…/too-large: the body is over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "…/invalid-request: the body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "…/invalid-request: JSON of the wrong shape or values", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "…/store-full: the pool's store cannot write", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn release_dataset(
    State(app): State<AppState>,
    LeaseCaller(_, proof): LeaseCaller,
    Path((id, dataset_id)): Path<(String, String)>,
    Body(req): Body<DatasetOutcome>,
) -> Result<Json<ReleasedDataset>, ApiError> {
    Ok(Json(
        app.service
            .release_dataset(id, &proof, dataset_id, req)
            .await?,
    ))
}

/// Heartbeats many leases in one call; each lease gets its own result.
#[utoipa::path(
    post,
    path = "/api/v1/leases/heartbeat",
    tag = "leases",
    summary = "Heartbeat many leases in one call; each lease gets its own result",
    description = "Each entry carries its lease's lease_token; a lease that is gone, unknown or not held gets a problem in its own result, not an error of the call.",
    request_body(content = HeartbeatBatchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "One result per lease, in the order asked", body = HeartbeatBatchAnswer),
        (status = 400, description = "…/invalid-request: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "…/unauthorized: no token, or one the pool does not know", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "…/forbidden: the token's role may not do this, or a cross-site request to a pool without tokens", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "…/too-large: the body is over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "…/invalid-request: the body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "…/invalid-request: JSON of the wrong shape or values", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "…/store-full: the pool's store cannot write", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn heartbeat_batch(
    State(app): State<AppState>,
    Ci(_): Ci,
    Body(req): Body<HeartbeatBatchRequest>,
) -> Result<Json<HeartbeatBatchAnswer>, ApiError> {
    let results = app.service.heartbeat_batch(req.leases).await?;
    let leases = results
        .into_iter()
        .map(|(lease_id, result)| match result {
            Ok(answer) => HeartbeatBatchResult {
                lease_id,
                expires_at: Some(answer.expires_at),
                heartbeat_interval_seconds: Some(answer.heartbeat_interval_seconds),
                problem: None,
            },
            Err(e) => HeartbeatBatchResult {
                lease_id,
                expires_at: None,
                heartbeat_interval_seconds: None,
                problem: Some(*ApiError::from(e).problem),
            },
        })
        .collect();
    Ok(Json(HeartbeatBatchAnswer { leases }))
}

/// Advances a leased dataset by an extension, for the lease's holder (its
/// token is the proof).
#[utoipa::path(
    post,
    path = "/api/v1/leases/{id}/datasets/{dataset_id}/extend",
    tag = "leases",
    summary = "Advance a leased dataset by a generator extension",
    params(("id" = String, Path, description = "The lease id"), ("dataset_id" = String, Path, description = "A dataset of the lease"), ("Stockroom-Lease-Token" = String, Header, description = "The lease_token of the POST /leases answer (docs/pool.md, Lease tokens)")),
    request_body(content = ExtendDatasetRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The updated dataset", body = DatasetView),
        (status = 400, description = "…/invalid-request: the body is not JSON, or a query parameter is malformed", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "…/unauthorized: no token, or one the pool does not know", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "…/not-holder: no or a wrong Stockroom-Lease-Token; …/forbidden: the token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "…/not-found: no such lease or dataset", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "…/lease-gone: the lease expired or was released", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "…/too-large: the body is over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "…/invalid-request: the body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "…/unknown-state (with known_states), or …/invalid-request: JSON of the wrong shape or values", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "…/generator-failed: the generator could not make it", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "…/store-full: the pool's store cannot write", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn extend(
    State(app): State<AppState>,
    LeaseCaller(caller, proof): LeaseCaller,
    Path((id, dataset_id)): Path<(String, String)>,
    Body(req): Body<ExtendDatasetRequest>,
) -> Result<Json<DatasetView>, ApiError> {
    Ok(Json(
        app.service
            .extend(id, &proof, dataset_id, req.extension)
            .await
            .map_err(|e| match e {
                // A generator's own words, summarised for a `ci` token.
                ServiceError::GeneratorFailed { generator, detail }
                    if caller.role < Role::Admin =>
                {
                    ServiceError::GeneratorFailed {
                        generator,
                        detail: redact::error_summary(&detail),
                    }
                }
                e => e,
            })?,
    ))
}
