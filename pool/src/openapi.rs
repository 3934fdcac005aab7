//! `GET /api/v1/openapi.json`, derived from the code, not kept by hand.
//!
//! Body schemas come from the protocol crate's own types (`ToSchema`
//! behind its `openapi` feature, so the sidecar never builds utoipa): fields
//! that are not optional are `required`, enums list their values, `where` and
//! `attributes` are maps of attribute values. Each handler in `http/*.rs`
//! carries its own `#[utoipa::path]` with every answer it can give (the
//! errors as `application/problem+json`). A test checks that every route the
//! router serves is described, with its method.

use serde_json::Value;
use stockroom_protocol::api::{
    Catalog, DatasetList, DatasetOutcome, DatasetView, ExtendDatasetRequest, HeartbeatAnswer,
    HeartbeatBatchAnswer, HeartbeatBatchRequest, HeartbeatRequest, LeaseGranted, LeaseList,
    LeaseRequest, LeaseView, Problem, RefreshAnswer, RegisterDatasets, ReleaseAnswer,
    ReleaseRequest, ReleasedDataset, StockSettings, VerifyStarted,
};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::http::{datasets, leases, ops};

/// The media type of every error answer, for the annotations.
pub const PROBLEM: &str = "application/problem+json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Stockroom pool API",
        description = "Isolated, business-valid test data for parallel CI jobs (docs/pool.md). Every error is application/problem+json whose `type` names its kind.",
    ),
    paths(
        datasets::catalog,
        leases::create,
        leases::list,
        leases::get,
        leases::heartbeat,
        leases::release,
        leases::release_dataset,
        leases::heartbeat_batch,
        leases::extend,
        datasets::list,
        datasets::register,
        datasets::get,
        datasets::discard,
        datasets::recycle,
        datasets::set_stock,
        datasets::verify_stock,
        ops::refresh_generators,
        ops::openapi,
    ),
    components(schemas(
        Problem, Catalog, LeaseRequest, LeaseGranted, LeaseList, LeaseView, HeartbeatRequest,
        HeartbeatAnswer, ReleaseRequest, ReleaseAnswer, ExtendDatasetRequest, DatasetView,
        DatasetList, RegisterDatasets, StockSettings, RefreshAnswer, DatasetOutcome,
        ReleasedDataset, HeartbeatBatchRequest, HeartbeatBatchAnswer, VerifyStarted,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "catalog", description = "What the pool can hand out"),
        (name = "leases", description = "Leasing datasets for a CI job"),
        (name = "datasets", description = "Inspecting and settling datasets"),
        (name = "admin", description = "Stock settings and generators (role admin)"),
    )
)]
pub struct ApiDoc;

/// `Authorization: Bearer TOKEN`, the scheme every route but this one names.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token of the pool's [[tokens]] (role ci or admin); none when the pool has no tokens",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null)
}

/// Example bodies, built from the protocol types.
pub mod examples {
    use serde_json::{Value, json};
    use stockroom_protocol::api::*;
    use stockroom_protocol::generator::LifecycleCall;
    use stockroom_protocol::{Dataset, DatasetStatus, LeaseStatus, OnFailure, Outcome};

    fn to(v: impl serde::Serialize) -> Value {
        serde_json::to_value(v).unwrap_or(Value::Null)
    }

    fn dataset() -> Dataset {
        Dataset {
            id: "ds_0123456789abcdef0123".into(),
            type_name: "customer".into(),
            state: "active".into(),
            attributes: [("country".to_string(), "DE".into())].into_iter().collect(),
            data: json!({"customer_id": "C1042", "password": "[redacted]"}),
            secret_fields: vec!["password".into()],
            entities: vec!["customer:C1042".into()],
            inputs: Default::default(),
        }
    }

    fn holder() -> Holder {
        Holder {
            ci: Some("gitlab".into()),
            repository: Some("shop/web".into()),
            run_id: Some("8812".into()),
            attempt: Some("1".into()),
            job: Some("e2e".into()),
            shard_index: Some(0),
            shard_total: Some(4),
            url: Some("https://ci.example/8812".into()),
            git_ref: Some("main".into()),
            instance: None,
            ..Holder::default()
        }
    }

    fn leased() -> LeasedDataset {
        LeasedDataset {
            name: "buyer".into(),
            index: 0,
            count: 1,
            dataset: dataset(),
        }
    }

    pub fn lease_request() -> Value {
        to(LeaseRequest {
            holder: holder(),
            ttl_seconds: Some(120),
            wait_seconds: Some(60),
            idempotency_key: Some("gitlab:8812:1:e2e:0".into()),
            items: vec![LeaseItem {
                name: "buyer".into(),
                type_name: "customer".into(),
                state: "active".into(),
                where_: dataset().attributes,
                count: 1,
                on_failure: OnFailure::Quarantine,
            }],
        })
    }

    pub fn lease_granted() -> Value {
        to(LeaseGranted {
            lease_id: "lease_0123456789abcdef0123456789abcdef".into(),
            lease_token: Some(
                "lt_5f0c2a4e9b7d13c86a2e4f10d9b8c7a65f0c2a4e9b7d13c86a2e4f10d9b8c7a6".into(),
            ),
            expires_at: "2025-01-01T00:02:00.000Z".into(),
            heartbeat_interval_seconds: 40,
            datasets: vec![leased()],
        })
    }

    pub fn lease_view() -> Value {
        to(LeaseView {
            lease_id: "lease_0123456789abcdef0123456789abcdef".into(),
            status: LeaseStatus::Released,
            holder: holder(),
            created_at: "2025-01-01T00:00:00.000Z".into(),
            expires_at: "2025-01-01T00:02:00.000Z".into(),
            ended_at: Some("2025-01-01T00:01:00.000Z".into()),
            outcome: Some(Outcome::Passed),
            reason: Some("tests passed".into()),
            details_url: Some("https://ci.example/8812".into()),
            datasets: vec![leased()],
        })
    }

    pub fn lease_list() -> Value {
        json!({"leases": [lease_view()]})
    }

    pub fn heartbeat_request() -> Value {
        to(HeartbeatRequest {
            ttl_seconds: Some(120),
        })
    }

    pub fn heartbeat_answer() -> Value {
        to(HeartbeatAnswer {
            lease_id: "lease_0123456789abcdef0123456789abcdef".into(),
            expires_at: "2025-01-01T00:02:00.000Z".into(),
            heartbeat_interval_seconds: 40,
        })
    }

    pub fn release_request() -> Value {
        to(ReleaseRequest {
            outcome: Outcome::Failed,
            reason: Some("3 tests failed".into()),
            details_url: Some("https://ci.example/8812".into()),
            datasets: Default::default(),
        })
    }

    pub fn dataset_release_request() -> Value {
        to(DatasetOutcome {
            outcome: Outcome::Failed,
            reason: Some("AssertionError: cart total".into()),
            test: Some("tests/test_cart.py::test_pay[DE]".into()),
        })
    }

    pub fn dataset_release_answer() -> Value {
        to(ReleasedDataset {
            id: "ds_0123456789abcdef".into(),
            name: "buyer".into(),
            status: DatasetStatus::Quarantined,
        })
    }

    pub fn heartbeat_batch_request() -> Value {
        to(HeartbeatBatchRequest {
            leases: vec![HeartbeatBatchItem {
                lease_id: "lease_0123456789abcdef0123456789abcdef".into(),
                lease_token: Some("lt_0123456789abcdef0123456789abcdef".into()),
            }],
        })
    }

    pub fn heartbeat_batch_answer() -> Value {
        to(HeartbeatBatchAnswer {
            leases: vec![HeartbeatBatchResult {
                lease_id: "lease_0123456789abcdef0123456789abcdef".into(),
                expires_at: Some("2025-01-01T00:02:00.000Z".into()),
                heartbeat_interval_seconds: Some(40),
                problem: None,
            }],
        })
    }

    pub fn release_answer() -> Value {
        to(ReleaseAnswer {
            lease_id: "lease_0123456789abcdef0123456789abcdef".into(),
            status: LeaseStatus::Released,
            outcome: Some(Outcome::Failed),
            datasets: vec![ReleasedDataset {
                id: dataset().id,
                name: "buyer".into(),
                status: DatasetStatus::Quarantined,
            }],
        })
    }

    pub fn extend_request() -> Value {
        to(ExtendDatasetRequest {
            extension: "add-card".into(),
        })
    }

    pub fn dataset_view() -> Value {
        to(DatasetView {
            dataset: dataset(),
            status: DatasetStatus::Ready,
            created_at: "2025-01-01T00:00:00.000Z".into(),
            updated_at: "2025-01-01T00:00:00.000Z".into(),
            lease_id: Some("lease_0123456789abcdef0123456789abcdef".into()),
            error: Some("".into()),
            history: vec![HistoryEntry {
                at: "2025-01-01T00:00:00.000Z".into(),
                from: Some(DatasetStatus::Quarantined),
                to: DatasetStatus::Ready,
                lease_id: Some("lease_0123456789abcdef0123456789abcdef".into()),
                holder: Some("ops".into()),
                reason: "recycled by hand".into(),
            }],
        })
    }

    pub fn dataset_list() -> Value {
        json!({"datasets": [dataset_view()]})
    }

    pub fn register_request() -> Value {
        let d = dataset();
        to(RegisterDatasets::One(NewDataset {
            type_name: d.type_name,
            state: d.state,
            attributes: d.attributes,
            data: d.data,
            secret_fields: d.secret_fields,
            entities: d.entities,
            reusable: true,
        }))
    }

    pub fn verify_started() -> Value {
        to(VerifyStarted {
            type_name: "customer".into(),
            state: "active".into(),
            verifying: 12,
        })
    }

    pub fn stock_settings() -> Value {
        to(StockSettings {
            min_ready: 20,
            max_ready: 100,
        })
    }

    pub fn catalog() -> Value {
        to(Catalog {
            types: vec![CatalogType {
                type_name: "customer".into(),
                states: vec![CatalogState {
                    state: "active".into(),
                    description: Some("verified customer".into()),
                    attributes: [("country".to_string(), vec!["DE".into()])]
                        .into_iter()
                        .collect(),
                    fields: vec!["customer_id".into()],
                    secret_fields: vec!["password".into()],
                    reusable: false,
                    produced_by: vec![Production::Registered],
                    lifecycle: vec![LifecycleCall::Cleanup, LifecycleCall::Verify],
                    available: true,
                    stock: StockCounts {
                        min_ready: Some(20),
                        max_ready: Some(100),
                        target: Some(stockroom_protocol::api::StockTarget {
                            target: 36,
                            demand: 75,
                            demand_window_seconds: 600,
                            lead_time_ms: 150,
                            why: "75 leased in the last 10m; up to 30 came faster than the generator \
                                  remakes them (150ms each, 26.7/s): 30 + 20% headroom"
                                .into(),
                        }),
                        ..StockCounts::default()
                    },
                }],
            }],
            generators: vec![GeneratorHealth {
                name: "customers".into(),
                available: true,
                last_error: Some("".into()),
                failure_rate: Some(0.0),
                median_latency_ms: Some(12),
            }],
            problems: Vec::new(),
        })
    }

    pub fn problem() -> Value {
        let mut p = Problem::new(ProblemKind::NoStock, "not enough stock");
        p.known_states = Some(vec!["customer/active".into()]);
        p.shortfall = Some(vec![Shortfall {
            name: "buyer".into(),
            wanted: 1,
            ready: 0,
            generating: 2,
            generator: Some("customers".into()),
            down: Some("connection refused".into()),
            entities_held: 0,
        }]);
        p.lease_id = Some("lease_…".into());
        p.generator = Some("customers".into());
        to(p)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::Value;

    use crate::http::api_routes;

    #[test]
    fn every_route_is_described_with_its_method() {
        let doc = super::document();
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        for (route, _) in api_routes() {
            let path = format!("/api/v1{}", route.path);
            assert!(
                doc["paths"][&path][route.method].is_object(),
                "{} {path} is not described",
                route.method
            );
        }
    }

    #[test]
    fn schemas_carry_required_fields_enums_and_attribute_maps() {
        let doc = super::document();
        let schemas = &doc["components"]["schemas"];
        let required = |name: &str| -> Vec<String> {
            schemas[name]["required"]
                .as_array()
                .unwrap_or_else(|| panic!("{name} has no required list: {}", schemas[name]))
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(required("LeaseRequest"), ["items"]);
        assert!(required("LeaseItem").contains(&"type".to_string()));
        assert_eq!(required("ReleaseRequest"), ["outcome"]);
        let outcome: Vec<&str> = schemas["Outcome"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            outcome.contains(&"passed") && outcome.contains(&"cancelled"),
            "{outcome:?}"
        );
        // `where` is a map of attribute values, not a fixed set of keys.
        let where_ = &schemas["LeaseItem"]["properties"]["where"];
        assert!(where_["additionalProperties"].is_object(), "{where_}");
        // The 200 of a repeated idempotent lease, and every error as a problem.
        let create = &doc["paths"]["/api/v1/leases"]["post"]["responses"];
        for status in [
            "200", "201", "400", "401", "403", "409", "413", "415", "422", "503", "507",
        ] {
            assert!(create[status].is_object(), "POST /leases lacks {status}");
        }
        assert!(create["503"]["content"]["application/problem+json"].is_object());
        let list: &Value = &doc["paths"]["/api/v1/datasets"]["get"]["parameters"];
        let names: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["type", "state", "status", "limit"]);
    }
}
