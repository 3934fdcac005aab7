//! The generator protocol (docs/generators.md), spoken over HTTP or by a local command.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::attributes::{AttrValue, Attributes};
use crate::dataset::Dataset;

/// A dataset another state is built from: supplied to `generate` as `inputs[name]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub state: String,
}

/// One state a generator can create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducedState {
    #[serde(rename = "type")]
    pub type_name: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Attribute name to allowed values.
    #[serde(default)]
    pub attributes: BTreeMap<String, Vec<AttrValue>>,
    /// Fields every answer's `data` must carry.
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default)]
    pub secret_fields: Vec<String>,
    #[serde(default)]
    pub requires: Vec<Requirement>,
    /// A reusable state goes back to `ready` after a passed run.
    #[serde(default)]
    pub reusable: bool,
    /// The lifecycle calls the generator answers for datasets of this state
    /// (docs/generators.md, "Lifecycle calls").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lifecycle: Vec<LifecycleCall>,
}

/// A call the pool makes on a dataset already generated (docs/generators.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LifecycleCall {
    /// The dataset was consumed or discarded: remove it from the system under test.
    Cleanup,
    /// Bring a used dataset back to its state's start.
    Reset,
    /// Say whether the dataset still holds in the system under test.
    Verify,
}

impl LifecycleCall {
    pub const ALL: &'static [LifecycleCall] = &[
        LifecycleCall::Cleanup,
        LifecycleCall::Reset,
        LifecycleCall::Verify,
    ];

    /// The word in capabilities, the HTTP path (`POST {url}/WORD`) and the
    /// command's argument (`CMD WORD`).
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleCall::Cleanup => "cleanup",
            LifecycleCall::Reset => "reset",
            LifecycleCall::Verify => "verify",
        }
    }
}

impl std::fmt::Display for LifecycleCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LifecycleCall {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        LifecycleCall::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                format!("unknown lifecycle call {s:?}; expected one of: cleanup, reset, verify")
            })
    }
}

/// One step that advances a dataset from one state of a type to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `GET {url}/capabilities` / `CMD capabilities`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    #[serde(default)]
    pub produces: Vec<ProducedState>,
    #[serde(default)]
    pub extensions: Vec<ExtensionSpec>,
}

/// `POST {url}/generate` / `CMD generate` (request on stdin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// The same on every retry of this generation step, so a generator can
    /// tell a retry from a new request (idempotency).
    #[serde(default)]
    pub request_id: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub state: String,
    #[serde(default)]
    pub attributes: Attributes,
    #[serde(default)]
    pub inputs: BTreeMap<String, Dataset>,
}

/// The answer to `generate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateAnswer {
    #[serde(default)]
    pub attributes: Attributes,
    pub data: Value,
    #[serde(default)]
    pub secret_fields: Vec<String>,
    #[serde(default)]
    pub entities: Vec<String>,
}

/// `POST {url}/extend` / `CMD extend` (request on stdin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtendRequest {
    /// The same on every retry of this extension step.
    #[serde(default)]
    pub request_id: String,
    pub extension: String,
    pub dataset: Dataset,
}

/// The answer to `extend`: `data` replaces the old data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtendAnswer {
    pub data: Value,
    #[serde(default)]
    pub secret_fields: Vec<String>,
    #[serde(default)]
    pub entities: Vec<String>,
}

/// `POST {url}/cleanup|reset|verify` / `CMD cleanup|reset|verify` (request on stdin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleRequest {
    /// The same on every retry of this step.
    pub request_id: String,
    pub dataset: Dataset,
}

/// The answer to `reset`: the dataset as it is again at its state's start
/// (`data` replaces the old data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResetAnswer {
    pub data: Value,
    #[serde(default)]
    pub secret_fields: Vec<String>,
    #[serde(default)]
    pub entities: Vec<String>,
}

/// The answer to `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyAnswer {
    pub valid: bool,
    /// Why it no longer holds (or any note when it does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The answer to `cleanup`: any JSON object (its content is ignored).
pub type CleanupAnswer = serde_json::Map<String, Value>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn capabilities_of_the_contract_parse() {
        let caps: Capabilities = serde_json::from_value(json!({
            "produces": [{"type": "customer", "state": "active", "description": "verified customer",
                          "attributes": {"country": ["DE", "US"]}, "fields": ["customer_id", "email"],
                          "secret_fields": ["password"], "requires": [], "reusable": false}],
            "extensions": [{"name": "add-card", "type": "customer", "from": "active",
                            "to": "active-with-payment", "fields": ["payment_method_id"]}]
        }))
        .unwrap();
        assert_eq!(caps.produces[0].attributes["country"].len(), 2);
        assert_eq!(caps.extensions[0].to, "active-with-payment");
        assert!(caps.produces[0].lifecycle.is_empty());
    }

    #[test]
    fn lifecycle_words_and_bodies_parse() {
        let state: ProducedState = serde_json::from_value(json!({
            "type": "customer", "state": "active", "lifecycle": ["cleanup", "reset", "verify"]
        }))
        .unwrap();
        assert_eq!(state.lifecycle, LifecycleCall::ALL);
        assert!(
            serde_json::from_value::<ProducedState>(
                json!({"type": "c", "state": "s", "lifecycle": ["Cleanup"]})
            )
            .is_err()
        );
        assert_eq!("verify".parse::<LifecycleCall>(), Ok(LifecycleCall::Verify));
        let request: LifecycleRequest = serde_json::from_value(json!({
            "request_id": "r1", "dataset": {"id": "ds_1", "type": "customer", "state": "active"}
        }))
        .unwrap();
        assert_eq!(request.dataset.id, "ds_1");
        let verdict: VerifyAnswer =
            serde_json::from_value(json!({"valid": false, "reason": "gone"})).unwrap();
        assert!(!verdict.valid);
        let reset: ResetAnswer = serde_json::from_value(json!({"data": {"a": 1}})).unwrap();
        assert!(reset.entities.is_empty());
        let generate: GenerateRequest =
            serde_json::from_value(json!({"type": "c", "state": "s"})).unwrap();
        assert_eq!(generate.request_id, "");
    }
}
