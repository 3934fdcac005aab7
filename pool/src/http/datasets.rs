//! `/datasets`: inspect, register by hand, discard, recycle; `/catalog` and `/stock`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use stockroom_protocol::DatasetStatus;
use stockroom_protocol::api::{
    Catalog, DatasetList, DatasetView, ProblemKind, RegisterDatasets, StockSettings,
};

use super::AppState;
use super::problem::{Admin, ApiError, Body, Ci};
use crate::store::{DatasetFilter, SettleResult};
use crate::time::now_ms;

fn redact(mut v: DatasetView) -> DatasetView {
    v.dataset = v.dataset.redacted();
    v
}

pub async fn list(
    State(app): State<AppState>,
    Ci(_): Ci,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<DatasetList>, ApiError> {
    let status = match q.get("status") {
        Some(s) => Some(s.parse::<DatasetStatus>().map_err(ApiError::bad_request)?),
        None => None,
    };
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<u32>()
            .map_err(|_| ApiError::bad_request(format!("limit must be a number, found {l:?}")))?,
        None => 100,
    }
    .clamp(1, 1000);
    let filter = DatasetFilter {
        type_name: q.get("type").cloned(),
        state: q.get("state").cloned(),
        status,
        limit,
    };
    let datasets = app
        .store
        .list_datasets(filter)
        .await?
        .into_iter()
        .map(redact)
        .collect();
    Ok(Json(DatasetList { datasets }))
}

pub async fn get(
    State(app): State<AppState>,
    Ci(_): Ci,
    Path(id): Path<String>,
) -> Result<Json<DatasetView>, ApiError> {
    match app.store.get_dataset(id.clone()).await? {
        Some(v) => Ok(Json(redact(v))),
        None => Err(ApiError::new(
            ProblemKind::NotFound,
            format!("no dataset {id}"),
        )),
    }
}

pub async fn register(
    State(app): State<AppState>,
    Admin(caller): Admin,
    Body(body): Body<RegisterDatasets>,
) -> Result<Response, ApiError> {
    let datasets = body.into_vec();
    if datasets.is_empty() {
        return Err(ApiError::new(
            ProblemKind::InvalidRequest,
            "the list of datasets is empty",
        ));
    }
    for (i, d) in datasets.iter().enumerate() {
        if d.type_name.is_empty() || d.state.is_empty() {
            return Err(ApiError::new(
                ProblemKind::InvalidRequest,
                format!("dataset {i}: type and state must not be empty"),
            ));
        }
        if !d.data.is_object() {
            return Err(ApiError::new(
                ProblemKind::InvalidRequest,
                format!("dataset {i}: data must be a JSON object"),
            ));
        }
        if d.entities.iter().any(String::is_empty) {
            return Err(ApiError::new(
                ProblemKind::InvalidRequest,
                format!("dataset {i}: entities must not be empty strings"),
            ));
        }
    }
    let views = app.store.register(datasets, caller.name, now_ms()).await?;
    app.queue.notify();
    tracing::info!(datasets = views.len(), "datasets registered by hand");
    let list = DatasetList {
        datasets: views.into_iter().map(redact).collect(),
    };
    Ok((StatusCode::CREATED, Json(list)).into_response())
}

fn settled(id: &str, r: SettleResult, what: &str) -> Result<Json<DatasetView>, ApiError> {
    match r {
        SettleResult::Done(v) => Ok(Json(redact(*v))),
        SettleResult::WrongStatus(s) => Err(ApiError::new(
            ProblemKind::Conflict,
            format!("dataset {id} is {s}; only {what} datasets can be settled so"),
        )),
        SettleResult::NotFound => Err(ApiError::new(
            ProblemKind::NotFound,
            format!("no dataset {id}"),
        )),
    }
}

pub async fn discard(
    State(app): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<Json<DatasetView>, ApiError> {
    let r = app.store.discard(id.clone(), caller.name, now_ms()).await?;
    settled(&id, r, "quarantined, ready or failed")
}

pub async fn recycle(
    State(app): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<Json<DatasetView>, ApiError> {
    let r = app.store.recycle(id.clone(), caller.name, now_ms()).await?;
    app.queue.notify();
    settled(&id, r, "quarantined")
}

/// The catalog, plus `problems`: what is wrong in the generators' capabilities.
pub async fn catalog(
    State(app): State<AppState>,
    Ci(_): Ci,
) -> Result<Json<serde_json::Value>, ApiError> {
    let stock = app.store.stock().await?;
    let catalog: Catalog = app.catalog.build(&stock);
    let mut value = serde_json::to_value(&catalog).map_err(|e| {
        tracing::error!(error = %e, "cannot serialise the catalog");
        ApiError::new(ProblemKind::Internal, "cannot serialise the catalog")
    })?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("problems".into(), serde_json::json!(app.supply.problems()));
    }
    Ok(Json(value))
}

pub async fn set_stock(
    State(app): State<AppState>,
    Admin(_): Admin,
    Path((type_name, state)): Path<(String, String)>,
    Body(settings): Body<StockSettings>,
) -> Result<Json<StockSettings>, ApiError> {
    if settings.min_ready > settings.max_ready {
        return Err(ApiError::new(
            ProblemKind::InvalidRequest,
            format!(
                "max_ready ({}) is below min_ready ({})",
                settings.max_ready, settings.min_ready
            ),
        ));
    }
    app.store.set_stock(type_name, state, settings).await?;
    app.supply.poke();
    Ok(Json(settings))
}
