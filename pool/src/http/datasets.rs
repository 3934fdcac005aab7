//! `/datasets`: inspect, register by hand, discard, recycle; `/catalog` and
//! `/stock`. Thin: each handler parses, calls the pool service, and answers.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use stockroom_protocol::DatasetStatus;
use stockroom_protocol::api::{Catalog, DatasetList, DatasetView, RegisterDatasets, StockSettings};

use super::AppState;
use super::leases::limit;
use super::problem::{Admin, ApiError, Body, Ci};
use crate::service::{Settle, redact};
use crate::store::DatasetFilter;
use stockroom_protocol::pool_config::Role;

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

pub async fn register(
    State(app): State<AppState>,
    Admin(caller): Admin,
    Body(body): Body<RegisterDatasets>,
) -> Result<Response, ApiError> {
    let datasets = app.service.register(body.into_vec(), caller.name).await?;
    Ok((StatusCode::CREATED, Json(DatasetList { datasets })).into_response())
}

pub async fn discard(
    State(app): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<Json<DatasetView>, ApiError> {
    Ok(Json(
        app.service.settle(id, Settle::Discard, caller.name).await?,
    ))
}

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
