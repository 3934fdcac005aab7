//! The generator protocol (docs/generators.md), spoken over HTTP or by a local command.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::attributes::{AttrValue, Attributes};
use crate::dataset::Dataset;

/// A dataset another state is built from: supplied to `generate` as `inputs[name]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    }
}
