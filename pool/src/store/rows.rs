//! What both backends read back the same way: dataset and lease rows as
//! stored text, turned into the contract's types. Each backend only knows how
//! to read the columns of its own driver's row into [`RawDataset`] and
//! [`LeaseRow`].

use stockroom_protocol::api::DatasetView;
use stockroom_protocol::{Dataset, DatasetStatus, LeaseStatus, OnFailure, Outcome};

use super::{StoreError, StoreResult};
use crate::time::rfc3339;

/// The dataset columns every query selects, in [`RawDataset`]'s order.
pub const DS_COLS: &str = "d.id, d.type, d.state, d.status, d.attributes, d.data, d.secret_fields, d.entities, d.lease_id, d.error, d.created_at, d.updated_at, d.inputs, d.lifecycle";

/// The lease columns every query selects, in [`LeaseRow`]'s order.
pub const LEASE_COLS: &str = "id, status, holder, holder_label, ttl_ms, created_at, expires_at, ended_at, outcome, reason, details_url, answer, token_hash, request_hash";

/// A dataset row as stored: JSON columns as text, times in ms since the epoch.
pub(crate) struct RawDataset {
    pub id: String,
    pub type_name: String,
    pub state: String,
    pub status: String,
    pub attributes: String,
    pub data: String,
    pub secret_fields: String,
    pub entities: String,
    pub lease_id: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// JSON of the inputs (`{}` unless composed).
    pub inputs: String,
    /// The lifecycle calls it was made with, comma-separated.
    pub lifecycle: String,
}

impl RawDataset {
    pub fn dataset(&self) -> StoreResult<Dataset> {
        Ok(Dataset {
            id: self.id.clone(),
            type_name: self.type_name.clone(),
            state: self.state.clone(),
            attributes: serde_json::from_str(&self.attributes)?,
            data: serde_json::from_str(&self.data)?,
            secret_fields: serde_json::from_str(&self.secret_fields)?,
            entities: serde_json::from_str(&self.entities)?,
            inputs: serde_json::from_str(&self.inputs)?,
        })
    }

    pub fn view(&self) -> StoreResult<DatasetView> {
        Ok(DatasetView {
            dataset: self.dataset()?,
            status: parse_status(&self.status)?,
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
            lease_id: self.lease_id.clone(),
            error: self.error.clone(),
            history: Vec::new(),
        })
    }
}

/// A lease row as stored.
pub(crate) struct LeaseRow {
    pub id: String,
    pub status: String,
    pub holder: String,
    pub holder_label: String,
    pub ttl_ms: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub ended_at: Option<i64>,
    pub outcome: Option<String>,
    pub reason: Option<String>,
    pub details_url: Option<String>,
    pub answer: Option<String>,
    /// Hex SHA-256 of the lease token (`None` for leases older than tokens).
    pub token_hash: Option<String>,
    /// Hex SHA-256 of what the request asked (see `rules::request_fingerprint`).
    pub request_hash: Option<String>,
}

impl LeaseRow {
    pub fn status(&self) -> StoreResult<LeaseStatus> {
        parse_lease_status(&self.status)
    }

    pub fn outcome(&self) -> StoreResult<Option<Outcome>> {
        self.outcome
            .as_deref()
            .map(str::parse::<Outcome>)
            .transpose()
            .map_err(StoreError::corrupt)
    }
}

pub(crate) fn parse_status(s: &str) -> StoreResult<DatasetStatus> {
    s.parse().map_err(StoreError::corrupt)
}

pub(crate) fn parse_lease_status(s: &str) -> StoreResult<LeaseStatus> {
    s.parse().map_err(StoreError::corrupt)
}

pub(crate) fn parse_on_failure(s: &str) -> StoreResult<OnFailure> {
    s.parse().map_err(StoreError::corrupt)
}

/// Entities as stored (JSON text); the common empty list without parsing.
/// A dataset's entities, each once: a row stored with a repeated entity
/// (registered before registration was checked) must never make a lease of
/// its state fail on the entity's key.
pub(crate) fn parse_entities(text: &str) -> StoreResult<Vec<String>> {
    if text == "[]" {
        return Ok(Vec::new());
    }
    let mut entities: Vec<String> = serde_json::from_str(text)?;
    let mut seen = std::collections::HashSet::with_capacity(entities.len());
    entities.retain(|e| seen.insert(e.clone()));
    Ok(entities)
}

/// The `SELECT` of a `GET /datasets` filter in insertion order (without its
/// `LIMIT`), with `placeholder(n)` for the n-th argument, and the arguments.
pub(crate) fn dataset_filter_sql(
    filter: &super::DatasetFilter,
    placeholder: impl Fn(usize) -> String,
) -> (String, Vec<String>) {
    let mut text = format!("SELECT {DS_COLS} FROM datasets d WHERE 1 = 1");
    let mut args: Vec<String> = Vec::new();
    for (column, value) in [
        ("type", filter.type_name.clone()),
        ("state", filter.state.clone()),
        ("status", filter.status.map(|s| s.as_str().to_string())),
    ] {
        if let Some(v) = value {
            args.push(v);
            text.push_str(&format!(" AND d.{column} = {}", placeholder(args.len())));
        }
    }
    text.push_str(" ORDER BY d.seq");
    (text, args)
}
