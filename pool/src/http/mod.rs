//! The HTTP API (docs/pool.md) on axum: routes, shared state, serving and
//! graceful shutdown. Every route of `/api/v1` is declared once in
//! [`api_routes`], which both builds the router and feeds `openapi`.

pub mod datasets;
pub mod guard;
pub mod leases;
pub mod ops;
pub mod problem;
pub mod wire;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodRouter, get, post, put};
use serde_json::Value;
use stockroom_protocol::api::{API_PREFIX, MAX_BODY_BYTES, ProblemKind};
use stockroom_protocol::pool_config::Role;

use crate::auth::Tokens;
use crate::openapi::examples as ex;
use crate::service::PoolService;
use problem::ApiError;

/// What every handler shares: the pool service and the tokens that guard it.
#[derive(Clone)]
pub struct AppState {
    pub service: PoolService,
    pub tokens: Arc<Tokens>,
}

/// One API route: its documentation and its handler.
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub role: Option<Role>,
    pub summary: &'static str,
    pub request: Option<fn() -> Value>,
    pub response: Option<(u16, fn() -> Value)>,
    pub errors: &'static [ProblemKind],
}

const AUTH: &[ProblemKind] = &[ProblemKind::Unauthorized, ProblemKind::Forbidden];

/// Every route under `/api/v1`, declared once.
pub fn api_routes() -> Vec<(RouteDoc, MethodRouter<AppState>)> {
    use ProblemKind as K;
    vec![
        (
            RouteDoc {
                method: "get",
                path: "/catalog",
                role: Some(Role::Ci),
                summary: "Every type and state with stock counts",
                request: None,
                response: Some((200, ex::catalog)),
                errors: AUTH,
            },
            get(datasets::catalog),
        ),
        (
            RouteDoc {
                method: "post",
                path: "/leases",
                role: Some(Role::Ci),
                summary: "Lease every item atomically, or nothing (201 new, 200 same idempotency key)",
                request: Some(ex::lease_request),
                response: Some((201, ex::lease_granted)),
                errors: &[
                    K::InvalidRequest,
                    K::UnknownState,
                    K::NoStock,
                    K::TooLarge,
                    K::Unauthorized,
                    K::Forbidden,
                ],
            },
            post(leases::create),
        ),
        (
            RouteDoc {
                method: "get",
                path: "/leases",
                role: Some(Role::Ci),
                summary: "Leases (?status=active&limit=), secrets redacted",
                request: None,
                response: Some((200, ex::lease_list)),
                errors: AUTH,
            },
            get(leases::list),
        ),
        (
            RouteDoc {
                method: "get",
                path: "/leases/{id}",
                role: Some(Role::Ci),
                summary: "One lease, secrets redacted",
                request: None,
                response: Some((200, ex::lease_view)),
                errors: &[K::NotFound, K::Unauthorized],
            },
            get(leases::get),
        ),
        (
            RouteDoc {
                method: "post",
                path: "/leases/{id}/heartbeat",
                role: Some(Role::Ci),
                summary: "Extend a lease; 410 once expired or released",
                request: Some(ex::heartbeat_request),
                response: Some((200, ex::heartbeat_answer)),
                errors: &[K::LeaseGone, K::NotFound, K::Unauthorized],
            },
            post(leases::heartbeat),
        ),
        (
            RouteDoc {
                method: "post",
                path: "/leases/{id}/release",
                role: Some(Role::Ci),
                summary: "End a lease with an outcome; idempotent",
                request: Some(ex::release_request),
                response: Some((200, ex::release_answer)),
                errors: &[
                    K::LeaseGone,
                    K::NotFound,
                    K::InvalidRequest,
                    K::Unauthorized,
                ],
            },
            post(leases::release),
        ),
        (
            RouteDoc {
                method: "post",
                path: "/leases/{id}/datasets/{dataset_id}/release",
                role: Some(Role::Ci),
                summary: "Settle one dataset of a lease early with its own outcome; the lease goes on",
                request: Some(ex::dataset_release_request),
                response: Some((200, ex::dataset_release_answer)),
                errors: &[
                    K::LeaseGone,
                    K::NotFound,
                    K::NotHolder,
                    K::InvalidRequest,
                    K::Unauthorized,
                ],
            },
            post(leases::release_dataset),
        ),
        (
            RouteDoc {
                method: "post",
                path: "/leases/heartbeat",
                role: Some(Role::Ci),
                summary: "Heartbeat many leases in one call; each gets its own result",
                request: Some(ex::heartbeat_batch_request),
                response: Some((200, ex::heartbeat_batch_answer)),
                errors: &[K::InvalidRequest, K::Unauthorized],
            },
            post(leases::heartbeat_batch),
        ),
        (
            RouteDoc {
                method: "post",
                path: "/leases/{id}/datasets/{dataset_id}/extend",
                role: Some(Role::Ci),
                summary: "Advance a leased dataset by a generator extension",
                request: Some(ex::extend_request),
                response: Some((200, ex::dataset_view)),
                errors: &[
                    K::LeaseGone,
                    K::NotFound,
                    K::NotHolder,
                    K::InvalidRequest,
                    K::UnknownState,
                    K::GeneratorFailed,
                ],
            },
            post(leases::extend),
        ),
        (
            RouteDoc {
                method: "get",
                path: "/datasets",
                role: Some(Role::Ci),
                summary: "Datasets (?type=&state=&status=&limit=), secrets redacted",
                request: None,
                response: Some((200, ex::dataset_list)),
                errors: AUTH,
            },
            get(datasets::list),
        ),
        (
            RouteDoc {
                method: "post",
                path: "/datasets",
                role: Some(Role::Admin),
                summary: "Register datasets by hand (one or a list), ready at once",
                request: Some(ex::register_request),
                response: Some((201, ex::dataset_list)),
                errors: &[
                    K::InvalidRequest,
                    K::TooLarge,
                    K::Unauthorized,
                    K::Forbidden,
                ],
            },
            post(datasets::register),
        ),
        (
            RouteDoc {
                method: "get",
                path: "/datasets/{id}",
                role: Some(Role::Ci),
                summary: "One dataset with its history, secrets redacted",
                request: None,
                response: Some((200, ex::dataset_view)),
                errors: &[K::NotFound, K::Unauthorized],
            },
            get(datasets::get),
        ),
        (
            RouteDoc {
                method: "post",
                path: "/datasets/{id}/discard",
                role: Some(Role::Admin),
                summary: "Settle a quarantined (or ready, failed) dataset as discarded",
                request: None,
                response: Some((200, ex::dataset_view)),
                errors: &[K::NotFound, K::Conflict, K::Forbidden],
            },
            post(datasets::discard),
        ),
        (
            RouteDoc {
                method: "post",
                path: "/datasets/{id}/recycle",
                role: Some(Role::Admin),
                summary: "Return a quarantined dataset to ready",
                request: None,
                response: Some((200, ex::dataset_view)),
                errors: &[K::NotFound, K::Conflict, K::Forbidden],
            },
            post(datasets::recycle),
        ),
        (
            RouteDoc {
                method: "put",
                path: "/stock/{type}/{state}",
                role: Some(Role::Admin),
                summary: "Set min_ready/max_ready of a state",
                request: Some(ex::stock_settings),
                response: Some((200, ex::stock_settings)),
                errors: &[K::InvalidRequest, K::Forbidden],
            },
            put(datasets::set_stock),
        ),
        (
            RouteDoc {
                method: "post",
                path: "/stock/{type}/{state}/verify",
                role: Some(Role::Admin),
                summary: "Verify every ready dataset of a state with its generator before it is leased again; invalid ones are discarded with the reason",
                request: None,
                response: Some((200, ex::verify_started)),
                errors: &[K::InvalidRequest, K::Forbidden],
            },
            post(datasets::verify_stock),
        ),
        (
            RouteDoc {
                method: "post",
                path: "/generators/refresh",
                role: Some(Role::Admin),
                summary: "Reload every generator's capabilities now; answers each generator's result and the catalog problems (an addition to the contract)",
                request: None,
                response: Some((200, refresh_example)),
                errors: &[K::Unauthorized, K::Forbidden],
            },
            post(ops::refresh_generators),
        ),
        (
            RouteDoc {
                method: "get",
                path: "/openapi.json",
                role: None,
                summary: "This API description",
                request: None,
                response: None,
                errors: &[],
            },
            get(ops::openapi),
        ),
    ]
}

fn refresh_example() -> Value {
    serde_json::json!({
        "generators": [{"name": "customers", "ok": true, "produces": ["customer/new", "customer/active"],
                        "extensions": ["verify-email"]},
                       {"name": "payments", "ok": false, "error": "capabilities via generator \"payments\": could not connect: connection refused",
                        "produces": [], "extensions": []}],
        "problems": ["state customer/active is claimed by more than one generator (customers, legacy); only the first is used"]
    })
}

async fn not_found() -> ApiError {
    ApiError::new(
        ProblemKind::NotFound,
        "no such route; see /api/v1/openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    let mut e = ApiError::new(
        ProblemKind::InvalidRequest,
        "this route does not take that method; see /api/v1/openapi.json",
    );
    e.problem.status = 405;
    e
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let mut api = Router::new();
    for (doc, handler) in api_routes() {
        api = api.route(doc.path, handler);
    }
    Router::new()
        .nest(API_PREFIX, api)
        .merge(crate::ui::routes(&state))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .with_state(state)
}
