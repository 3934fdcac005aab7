//! `GET /api/v1/openapi.json`, generated from the code, not kept by hand.
//!
//! Paths, methods, roles, summaries and error kinds come from the route table
//! that also builds the router (`http::api_routes`), so a route cannot exist
//! without being described. Body schemas are inferred from example values
//! built with the protocol crate's own types (`examples`), so a field added to
//! a type shows up here on the next build. Limitation: an inferred schema
//! lists the properties an example fills and marks none as required.

use serde_json::{Map, Value, json};
use stockroom_protocol::api::{API_PREFIX, PROBLEM_CONTENT_TYPE};

use crate::http::api_routes;

fn schema_of(v: &Value) -> Value {
    match v {
        Value::Null => json!({"nullable": true}),
        Value::Bool(_) => json!({"type": "boolean"}),
        Value::Number(n) if n.is_f64() => json!({"type": "number"}),
        Value::Number(_) => json!({"type": "integer"}),
        Value::String(_) => json!({"type": "string"}),
        Value::Array(items) => {
            json!({"type": "array", "items": items.first().map_or(json!({}), schema_of)})
        }
        Value::Object(map) => {
            let props: Map<String, Value> =
                map.iter().map(|(k, v)| (k.clone(), schema_of(v))).collect();
            json!({"type": "object", "properties": props})
        }
    }
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (doc, _) in api_routes() {
        let mut op = Map::new();
        op.insert("summary".into(), json!(doc.summary));
        if let Some(role) = doc.role {
            op.insert("security".into(), json!([{"bearer": []}]));
            op.insert("x-stockroom-role".into(), json!(role.as_str()));
        }
        let params: Vec<Value> = doc
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if let Some(req) = doc.request {
            let example = req();
            op.insert(
                "requestBody".into(),
                json!({"content": {"application/json": {"schema": schema_of(&example), "example": example}}}),
            );
        }
        let mut responses = Map::new();
        match doc.response {
            Some((status, body)) => {
                let example = body();
                responses.insert(
                    status.to_string(),
                    json!({"description": "success", "content": {"application/json": {"schema": schema_of(&example), "example": example}}}),
                );
            }
            None => {
                responses.insert("200".into(), json!({"description": "success"}));
            }
        }
        for kind in doc.errors {
            let entry = responses
                .entry(kind.status().to_string())
                .or_insert_with(|| json!({"description": "", "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}));
            let d = entry["description"].as_str().unwrap_or("").to_string();
            let uri = kind.uri();
            entry["description"] = json!(if d.is_empty() {
                uri
            } else {
                format!("{d}, {uri}")
            });
        }
        let path = format!("{API_PREFIX}{}", doc.path);
        let item = paths.entry(path).or_insert_with(|| json!({}));
        item[doc.method] = Value::Object(op);
        item[doc.method]["responses"] = Value::Object(responses);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Stockroom pool API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Problem": schema_of(&examples::problem())},
        },
    })
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
                reason: "recycled by admin".into(),
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
mod tests {
    #[test]
    fn every_route_is_described_with_its_errors() {
        let doc = super::document();
        let paths = doc["paths"].as_object().unwrap();
        assert_eq!(paths.len(), 16);
        assert!(doc["paths"]["/api/v1/generators/refresh"]["post"].is_object());
        assert!(doc["paths"]["/api/v1/leases/heartbeat"]["post"].is_object());
        assert!(
            doc["paths"]["/api/v1/leases/{id}/datasets/{dataset_id}/release"]["post"]["requestBody"]
                .is_object()
        );
        assert!(
            doc["paths"]["/api/v1/leases"]["post"]["responses"]["503"]["description"]
                .as_str()
                .unwrap()
                .contains("no-stock")
        );
        assert!(doc["paths"]["/api/v1/datasets"]["post"]["requestBody"].is_object());
        assert!(doc["paths"]["/api/v1/leases"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]["items"].is_object());
    }
}
