//! `/datasets`: inspect, register by hand, discard, recycle; `/catalog` and
//! `/stock`. Thin: each handler parses, calls the pool service, and answers.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use stockroom_protocol::DatasetStatus;
use stockroom_protocol::api::{
    Catalog, DatasetList, DatasetView, Problem, RegisterDatasets, StockSettings,
};

use super::AppState;
use super::leases::limit;
use super::problem::{Admin, ApiError, Body, Ci};
use crate::service::{Settle, redact};
use crate::store::DatasetFilter;
use stockroom_protocol::pool_config::Role;

#[utoipa::path(
    get,
    path = "/api/v1/datasets",
    tag = "datasets",
    summary = "Datasets, secrets redacted",
    params(
        ("type" = Option<String>, Query, description = "Only datasets of this type"),
        ("state" = Option<String>, Query, description = "Only datasets in this state"),
        ("status" = Option<stockroom_protocol::DatasetStatus>, Query, description = "Only datasets in this status"),
        ("limit" = Option<u32>, Query, description = "At most this many (1 to 1000, values outside are clamped; default 100)"),
    ),
    responses(
        (status = 200, description = "The datasets", body = DatasetList),
        (status = 400, description = "…/invalid-request: the body is not JSON, or a query parameter is malformed", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "…/unauthorized: no token, or one the pool does not know", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "…/forbidden: the token's role may not do this, or a cross-site request to a pool without tokens", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(app): State<AppState>,
    Ci(caller): Ci,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<DatasetList>, ApiError> {
    let status = match q.get("status") {
        Some(s) => Some(s.parse::<DatasetStatus>().map_err(ApiError::bad_request)?),
        None => None,
    };
    let filter = DatasetFilter {
        type_name: q.get("type").cloned(),
        state: q.get("state").cloned(),
        status,
        limit: limit(&q)?,
    };
    let mut datasets = app.service.datasets(filter).await?;
    if caller.role < Role::Admin {
        datasets.iter_mut().for_each(redact::summarize_view);
    }
    Ok(Json(DatasetList { datasets }))
}

#[utoipa::path(
    get,
    path = "/api/v1/datasets/{id}",
    tag = "datasets",
    summary = "One dataset with its history, secrets redacted",
    params(("id" = String, Path, description = "The dataset id")),
    responses(
        (status = 200, description = "The dataset", body = DatasetView),
        (status = 401, description = "…/unauthorized: no token, or one the pool does not know", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "…/forbidden: the token's role may not do this, or a cross-site request to a pool without tokens", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "…/not-found: no such lease or dataset", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(app): State<AppState>,
    Ci(caller): Ci,
    Path(id): Path<String>,
) -> Result<Json<DatasetView>, ApiError> {
    let mut view = app.service.dataset(id).await?;
    if caller.role < Role::Admin {
        redact::summarize_view(&mut view);
    }
    Ok(Json(view))
}

#[utoipa::path(
    post,
    path = "/api/v1/datasets",
    tag = "admin",
    summary = "Register datasets by hand (one or a list), ready at once",
    description = "A static pool: shared sandboxes, fixed test accounts. Entities must be unique and of the form kind:id, secret_fields must name fields of data. Role admin.",
    request_body(content = RegisterDatasets, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered, in the order given", body = DatasetList),
        (status = 400, description = "…/invalid-request: the body is not JSON, or a query parameter is malformed", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "…/unauthorized: no token, or one the pool does not know", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "…/forbidden: the token's role may not do this, or a cross-site request to a pool without tokens", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "…/too-large: the body is over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "…/invalid-request: the body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "…/invalid-request: JSON of the wrong shape or values", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "…/store-full: the pool's store cannot write", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn register(
    State(app): State<AppState>,
    Admin(caller): Admin,
    Body(body): Body<RegisterDatasets>,
) -> Result<Response, ApiError> {
    let datasets = app.service.register(body.into_vec(), caller.name).await?;
    Ok((StatusCode::CREATED, Json(DatasetList { datasets })).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/datasets/{id}/discard",
    tag = "admin",
    summary = "Settle a quarantined (or ready, failed) dataset as discarded",
    params(("id" = String, Path, description = "The dataset id")),
    responses(
        (status = 200, description = "Discarded", body = DatasetView),
        (status = 401, description = "…/unauthorized: no token, or one the pool does not know", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "…/forbidden: the token's role may not do this, or a cross-site request to a pool without tokens", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "…/not-found: no such lease or dataset", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "…/conflict: the dataset is not in a status this action settles", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "…/store-full: the pool's store cannot write", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn discard(
    State(app): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<Json<DatasetView>, ApiError> {
    Ok(Json(
        app.service.settle(id, Settle::Discard, caller.name).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/datasets/{id}/recycle",
    tag = "admin",
    summary = "Return a quarantined dataset to ready",
    params(("id" = String, Path, description = "The dataset id")),
    responses(
        (status = 200, description = "Ready again", body = DatasetView),
        (status = 401, description = "…/unauthorized: no token, or one the pool does not know", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "…/forbidden: the token's role may not do this, or a cross-site request to a pool without tokens", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "…/not-found: no such lease or dataset", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "…/conflict: the dataset is not in a status this action settles", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "…/store-full: the pool's store cannot write", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn recycle(
    State(app): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<Json<DatasetView>, ApiError> {
    Ok(Json(
        app.service.settle(id, Settle::Recycle, caller.name).await?,
    ))
}

/// `POST /stock/{type}/{state}/verify`: verify every ready dataset of a state.
#[utoipa::path(
    post,
    path = "/api/v1/stock/{type}/{state}/verify",
    tag = "admin",
    summary = "Verify every ready dataset of a state with its generator; invalid ones are discarded with the reason",
    params(("type" = String, Path, description = "The dataset type"), ("state" = String, Path, description = "The state")),
    responses(
        (status = 200, description = "How many ready datasets are being verified", body = stockroom_protocol::api::VerifyStarted),
        (status = 401, description = "…/unauthorized: no token, or one the pool does not know", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "…/forbidden: the token's role may not do this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "…/not-found: no such state", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "…/unknown-state or …/invalid-request: the state has no verify lifecycle", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "…/store-full: the pool's store cannot write", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn verify_stock(
    State(app): State<AppState>,
    Admin(caller): Admin,
    Path((type_name, state)): Path<(String, String)>,
) -> Result<Json<stockroom_protocol::api::VerifyStarted>, ApiError> {
    Ok(Json(
        app.service
            .verify_stock(type_name, state, caller.name)
            .await?,
    ))
}

/// The catalog, with `problems`: what is wrong in the generators' capabilities.
#[utoipa::path(
    get,
    path = "/api/v1/catalog",
    tag = "catalog",
    summary = "Every type and state with attributes, fields, production and stock counts",
    responses(
        (status = 200, description = "The catalog", body = Catalog),
        (status = 401, description = "…/unauthorized: no token, or one the pool does not know", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "…/forbidden: the token's role may not do this, or a cross-site request to a pool without tokens", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn catalog(
    State(app): State<AppState>,
    Ci(caller): Ci,
) -> Result<Json<Catalog>, ApiError> {
    let mut catalog = app.service.catalog().await?;
    if caller.role < Role::Admin {
        redact::summarize_catalog(&mut catalog);
    }
    Ok(Json(catalog))
}

#[utoipa::path(
    put,
    path = "/api/v1/stock/{type}/{state}",
    tag = "admin",
    summary = "Set min_ready and max_ready of a state; takes effect at once",
    params(("type" = String, Path, description = "The dataset type"), ("state" = String, Path, description = "The state")),
    request_body(content = StockSettings, content_type = "application/json"),
    responses(
        (status = 200, description = "The settings now in force", body = StockSettings),
        (status = 400, description = "…/invalid-request: the body is not JSON, or a query parameter is malformed", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "…/unauthorized: no token, or one the pool does not know", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "…/forbidden: the token's role may not do this, or a cross-site request to a pool without tokens", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "…/not-found: no such lease or dataset", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "…/too-large: the body is over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "…/invalid-request: the body is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "…/unknown-state (with known_states), or …/invalid-request: JSON of the wrong shape or values", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "…/store-full: the pool's store cannot write", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn set_stock(
    State(app): State<AppState>,
    Admin(_): Admin,
    Path((type_name, state)): Path<(String, String)>,
    Body(settings): Body<StockSettings>,
) -> Result<Json<StockSettings>, ApiError> {
    Ok(Json(
        app.service.set_stock(type_name, state, settings).await?,
    ))
}
