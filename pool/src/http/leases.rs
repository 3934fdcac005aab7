//! `/leases`: acquire, inspect, heartbeat, release, extend.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use stockroom_protocol::api::{
    ExtendDatasetRequest, HeartbeatAnswer, HeartbeatRequest, LeaseList, LeaseRequest, ProblemKind,
    ReleaseRequest,
};
use stockroom_protocol::{LeaseStatus, Outcome};

use super::AppState;
use super::problem::{ApiError, Body, Ci, parse_json};
use crate::leasing::{self, Acquired};
use crate::metrics::Metrics;
use crate::store::{ExtendResult, HeartbeatResult, ReleaseResult};
use crate::time::{now_ms, rfc3339};

pub async fn create(
    State(app): State<AppState>,
    Ci(_): Ci,
    Body(req): Body<LeaseRequest>,
) -> Result<Response, ApiError> {
    leasing::validate(&req).map_err(|m| ApiError::new(ProblemKind::InvalidRequest, m))?;
    let wanted = req
        .items
        .iter()
        .map(|i| (i.type_name.clone(), i.state.clone()))
        .collect();
    if let Some((unknown, known)) = app.unknown_states(&wanted).await? {
        let mut e = ApiError::new(
            ProblemKind::UnknownState,
            format!(
                "the pool knows no {}; see known_states or GET /api/v1/catalog",
                unknown.join(", ")
            ),
        );
        e.problem.known_states = Some(known.iter().map(|(t, s)| format!("{t}/{s}")).collect());
        return Err(e);
    }
    let ttl = leasing::ttl_ms(&app.config, req.ttl_seconds);
    let wait = Duration::from_secs(req.wait_seconds.unwrap_or(0)).min(app.config.max_wait.0);
    let outcome = leasing::acquire(
        &app.store,
        &app.queue,
        &app.metrics,
        app.shutdown.clone(),
        req,
        ttl,
        wait,
        Some(&app.supply),
    )
    .await?;
    match outcome {
        Acquired::New(g) => {
            tracing::info!(lease_id = %g.lease_id, datasets = g.datasets.len(), "lease granted");
            Ok((StatusCode::CREATED, Json(g)).into_response())
        }
        Acquired::Existing(g) => Ok((StatusCode::OK, Json(g)).into_response()),
        Acquired::NoStock {
            shortfall,
            queued_behind,
        } => {
            let detail = if queued_behind {
                "not enough stock for this request: earlier waiting requests for the same states are served first"
            } else {
                "not enough stock for this request; nothing is held"
            };
            let mut e = ApiError::new(ProblemKind::NoStock, detail);
            e.problem.shortfall = Some(shortfall);
            e.retry_after = Some(5);
            Err(e)
        }
        Acquired::ShuttingDown => {
            let mut e = ApiError::new(
                ProblemKind::Unavailable,
                "the pool is shutting down; retry shortly",
            );
            e.retry_after = Some(2);
            Err(e)
        }
    }
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
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<u32>()
            .map_err(|_| ApiError::bad_request(format!("limit must be a number, found {l:?}")))?,
        None => 100,
    }
    .clamp(1, 1000);
    let mut leases = app.store.list_leases(status, limit).await?;
    for l in &mut leases {
        for d in &mut l.datasets {
            d.dataset = d.dataset.redacted();
        }
    }
    Ok(Json(LeaseList { leases }))
}

pub async fn get(
    State(app): State<AppState>,
    Ci(_): Ci,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(mut lease) = app.store.get_lease(id.clone()).await? else {
        return Err(ApiError::new(
            ProblemKind::NotFound,
            format!("no lease {id}"),
        ));
    };
    for d in &mut lease.datasets {
        d.dataset = d.dataset.redacted();
    }
    Ok(Json(lease).into_response())
}

fn gone(id: &str, detail: String) -> ApiError {
    let mut e = ApiError::new(ProblemKind::LeaseGone, detail);
    e.problem.lease_id = Some(id.to_string());
    e
}

pub async fn heartbeat(
    State(app): State<AppState>,
    Ci(_): Ci,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<HeartbeatAnswer>, ApiError> {
    let req: HeartbeatRequest = if body.iter().all(u8::is_ascii_whitespace) {
        HeartbeatRequest::default()
    } else {
        parse_json(&body)?
    };
    if req.ttl_seconds == Some(0) {
        return Err(ApiError::new(
            ProblemKind::InvalidRequest,
            "ttl_seconds must be at least 1",
        ));
    }
    let ttl = req
        .ttl_seconds
        .map(|s| leasing::ttl_ms(&app.config, Some(s)));
    match app.store.heartbeat(id.clone(), ttl, now_ms()).await? {
        HeartbeatResult::Extended {
            expires_at_ms,
            ttl_ms,
        } => Ok(Json(HeartbeatAnswer {
            lease_id: id,
            expires_at: rfc3339(expires_at_ms),
            heartbeat_interval_seconds: crate::store::heartbeat_interval_seconds(ttl_ms),
        })),
        HeartbeatResult::Gone(status) => {
            if status == LeaseStatus::Expired {
                Metrics::inc(&app.metrics.leases_expired, 1);
                app.queue.notify();
            }
            Err(gone(
                &id,
                format!("lease {id} is {status}; its datasets can no longer be used"),
            ))
        }
        HeartbeatResult::NotFound => Err(ApiError::new(
            ProblemKind::NotFound,
            format!("no lease {id}"),
        )),
    }
}

pub async fn release(
    State(app): State<AppState>,
    Ci(_): Ci,
    Path(id): Path<String>,
    Body(req): Body<ReleaseRequest>,
) -> Result<Response, ApiError> {
    let outcome: Outcome = req.outcome;
    match app
        .store
        .release(id.clone(), outcome, req.reason, req.details_url, now_ms())
        .await?
    {
        ReleaseResult::Released(answer) => {
            Metrics::inc(&app.metrics.leases_released, 1);
            app.queue.notify();
            tracing::info!(lease_id = %id, %outcome, "lease released");
            Ok(Json(answer).into_response())
        }
        ReleaseResult::AlreadyReleased(answer) => Ok(Json(answer).into_response()),
        ReleaseResult::Expired => {
            app.queue.notify();
            Err(gone(
                &id,
                format!(
                    "lease {id} expired before this release; its datasets were quarantined at expiry. Treat this as final."
                ),
            ))
        }
        ReleaseResult::NotFound => Err(ApiError::new(
            ProblemKind::NotFound,
            format!("no lease {id}"),
        )),
    }
}

/// Advances a leased dataset by an extension, for the lease's holder (the
/// lease id in the path is the proof). The generator is called outside any
/// store transaction; only a valid answer changes the dataset.
pub async fn extend(
    State(app): State<AppState>,
    Ci(_): Ci,
    Path((id, dataset_id)): Path<(String, String)>,
    Body(req): Body<ExtendDatasetRequest>,
) -> Result<Response, ApiError> {
    let Some(lease) = app.store.get_lease(id.clone()).await? else {
        return Err(ApiError::new(
            ProblemKind::NotFound,
            format!("no lease {id}"),
        ));
    };
    if lease.status != LeaseStatus::Active {
        return Err(gone(&id, format!("lease {id} is {}", lease.status)));
    }
    let Some(held) = lease
        .datasets
        .iter()
        .find(|d| d.dataset.id == dataset_id)
        .map(|d| d.dataset.clone())
    else {
        return Err(ApiError::new(
            ProblemKind::NotHolder,
            format!("dataset {dataset_id} is not part of lease {id}"),
        ));
    };
    let graph = app.supply.graph();
    let from_here: Vec<String> = graph
        .extensions_from(&held.type_name, &held.state)
        .iter()
        .map(|e| e.spec.name.clone())
        .collect();
    let Some(ext) = graph
        .extension(&held.type_name, &req.extension)
        .filter(|e| e.spec.from == held.state)
        .cloned()
    else {
        let mut e = ApiError::new(
            ProblemKind::UnknownState,
            format!(
                "no generator offers extension {:?} from {}/{}; known extensions from this state: {}",
                req.extension,
                held.type_name,
                held.state,
                if from_here.is_empty() {
                    "none".to_string()
                } else {
                    from_here.join(", ")
                }
            ),
        );
        e.problem.known_states = Some(from_here);
        return Err(e);
    };
    let target_fields = graph
        .state(&held.type_name, &ext.spec.to)
        .map(|s| s.fields.clone())
        .unwrap_or_default();
    let answer = app
        .supply
        .extend(&ext.generator, &ext.spec, &target_fields, held.clone())
        .await
        .map_err(|err| {
            let mut e = ApiError::new(
                ProblemKind::GeneratorFailed,
                format!("{err}; dataset {dataset_id} is unchanged and still leased"),
            );
            e.problem.generator = Some(ext.generator.clone());
            e
        })?;
    let change = crate::store::Extension {
        lease_id: id.clone(),
        dataset_id: dataset_id.clone(),
        from_state: held.state.clone(),
        to_state: ext.spec.to.clone(),
        data: answer.data,
        secret_fields: answer.secret_fields,
        entities: answer.entities,
        reason: format!(
            "extended by {:?} of generator {:?}",
            ext.spec.name, ext.generator
        ),
    };
    match app.store.extend_leased(change, now_ms()).await? {
        ExtendResult::Done(view) => {
            tracing::info!(lease_id = %id, %dataset_id, extension = %ext.spec.name, "dataset extended");
            Ok(Json(*view).into_response())
        }
        ExtendResult::Gone(status) => Err(gone(&id, format!("lease {id} is {status}"))),
        ExtendResult::NotFound => Err(ApiError::new(
            ProblemKind::NotFound,
            format!("no lease {id} or dataset {dataset_id}"),
        )),
        ExtendResult::NotHolder => Err(ApiError::new(
            ProblemKind::NotHolder,
            format!(
                "dataset {dataset_id} is no longer held by lease {id} in state {}",
                held.state
            ),
        )),
        ExtendResult::EntityHeld(entity) => {
            let mut e = ApiError::new(
                ProblemKind::GeneratorFailed,
                format!(
                    "the extension answered entity {entity:?}, which another active lease holds; the dataset is unchanged"
                ),
            );
            e.problem.generator = Some(ext.generator.clone());
            Err(e)
        }
    }
}
