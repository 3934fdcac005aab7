//! The agent's request and answer bodies (docs/per-test.md).

use serde::{Deserialize, Serialize};
use stockroom_protocol::api::{LeasedDataset, ReleasedDataset, Shortfall};
use stockroom_protocol::{Attributes, Outcome};

fn one() -> u32 {
    1
}

/// What to lease ahead: one kind of dataset, `count` of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReserveItem {
    #[serde(rename = "type")]
    pub type_name: String,
    pub state: String,
    #[serde(default, rename = "where")]
    pub where_: Attributes,
    #[serde(default = "one")]
    pub count: u32,
}

/// `POST /v1/reserve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReserveRequest {
    pub items: Vec<ReserveItem>,
    /// How long the pool may wait for stock (default 0: what is there now).
    #[serde(default)]
    pub wait_seconds: Option<u64>,
}

/// Answer to a reserve: what was leased ahead (best effort) and what was not.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReserveAnswer {
    pub reserved: Vec<ReserveItem>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shortfall: Vec<Shortfall>,
}

/// One named item of a take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TakeItem {
    /// Defaults to the type.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub type_name: String,
    pub state: String,
    #[serde(default, rename = "where")]
    pub where_: Attributes,
    #[serde(default = "one")]
    pub count: u32,
}

impl TakeItem {
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.type_name)
    }
}

/// `POST /v1/take`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TakeRequest {
    #[serde(default)]
    pub test: Option<String>,
    #[serde(default)]
    pub worker: Option<String>,
    #[serde(default)]
    pub wait_seconds: Option<u64>,
    pub items: Vec<TakeItem>,
}

/// Answer to a take.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TakeAnswer {
    pub take_id: String,
    pub datasets: Vec<LeasedDataset>,
}

/// `POST /v1/takes/{take_id}/done`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoneRequest {
    pub outcome: Outcome,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Answer to `done`: what became (or becomes at the end of the run) of each dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DoneAnswer {
    pub take_id: String,
    pub outcome: Outcome,
    pub datasets: Vec<ReleasedDataset>,
}

/// One dataset of a take in `GET /v1/takes` (no data: ids and kinds only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TakenView {
    pub name: String,
    pub index: u32,
    pub id: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub state: String,
    pub lease_id: String,
}

/// One take in `GET /v1/takes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TakeView {
    pub take_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// `reserve` (served locally) or `pool` (leased on demand).
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub datasets: Vec<TakenView>,
}

/// A lease the agent holds, in `GET /v1/takes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldView {
    pub lease_id: String,
    /// `reserve`, or the take id it was leased for.
    #[serde(rename = "for")]
    pub for_: String,
    pub datasets: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<String>,
}

/// Reserved datasets not taken, per kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReservedCount {
    #[serde(rename = "type")]
    pub type_name: String,
    pub state: String,
    pub count: u32,
}

/// `GET /v1/takes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TakesAnswer {
    pub takes: Vec<TakeView>,
    pub reserved: Vec<ReservedCount>,
    /// Leases the agent holds at the pool.
    pub leases: Vec<HeldView>,
    /// Calls the agent made to the pool so far (leases, releases, heartbeats, catalog).
    pub pool_requests: u64,
}
