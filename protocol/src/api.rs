//! Bodies of the pool's HTTP API (docs/pool.md), prefix `/api/v1`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::attributes::{AttrValue, Attributes};
use crate::dataset::{Dataset, DatasetStatus, LeaseStatus, OnFailure, Outcome};

/// The path prefix of every API route.
pub const API_PREFIX: &str = "/api/v1";
/// The media type of every error answer.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";
/// Where problem `type` URIs start; the kind follows, e.g. `…/unknown-state`.
pub const PROBLEM_TYPE_BASE: &str = "https://stockroom.dev/problems/";
/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The header that proves a client holds a lease (docs/pool.md, "Lease
/// tokens"): the `lease_token` of the `POST /leases` answer.
pub const LEASE_TOKEN_HEADER: &str = "Stockroom-Lease-Token";
/// Largest `count` of one lease item: the manifest and the pool's API
/// refuse more (docs/manifest.md, docs/pool.md); one constant for both.
pub const MAX_COUNT: u32 = 1000;

/// Who holds a lease: the CI job shard, for people reading the pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Holder {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_total: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// The test that took the datasets of a per-test lease (docs/per-test.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    /// The test runner's worker that took them (`gw1` under pytest-xdist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// A random value per client process (the sidecar sends one): part of
    /// what binds an idempotency key to its request, so a second process
    /// that computes the same key is refused. Never stored or shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

impl Holder {
    /// The same holder without the per-test part (`test`, `worker`): the CI
    /// job whose takes a per-test lease belongs to.
    pub fn job_only(&self) -> Holder {
        Holder {
            test: None,
            worker: None,
            ..self.clone()
        }
    }

    /// The test named at the end of a [`Holder::label`] (` test T`), as the
    /// history keeps it.
    pub fn test_in_label(label: &str) -> Option<&str> {
        label
            .rfind(" test ")
            .map(|i| &label[i + " test ".len()..])
            .or_else(|| label.strip_prefix("test "))
    }

    /// A short human label: `gitlab shop/web#8812 e2e [0/4]`.
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        if let Some(ci) = &self.ci {
            parts.push(ci.clone());
        }
        match (&self.repository, &self.run_id) {
            (Some(r), Some(id)) => parts.push(format!("{r}#{id}")),
            (Some(r), None) => parts.push(r.clone()),
            (None, Some(id)) => parts.push(format!("#{id}")),
            (None, None) => {}
        }
        if let Some(job) = &self.job {
            parts.push(job.clone());
        }
        if let (Some(i), Some(t)) = (self.shard_index, self.shard_total) {
            parts.push(format!("[{i}/{t}]"));
        }
        if let Some(worker) = &self.worker {
            parts.push(format!("worker {worker}"));
        }
        if let Some(test) = &self.test {
            parts.push(format!("test {test}"));
        }
        if parts.is_empty() {
            "unknown holder".to_string()
        } else {
            parts.join(" ")
        }
    }
}

fn default_count() -> u32 {
    1
}

/// One named item of a lease request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LeaseItem {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub state: String,
    #[serde(default, rename = "where", skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, AttrValue>))]
    pub where_: Attributes,
    #[serde(default = "default_count")]
    pub count: u32,
    #[serde(default)]
    pub on_failure: OnFailure,
}

/// `POST /leases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    #[serde(default)]
    pub holder: Holder,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub items: Vec<LeaseItem>,
}

/// A dataset as handed out in a lease: which item it answers, its index
/// there, and how many datasets that item asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeasedDataset {
    pub name: String,
    pub index: u32,
    /// How many datasets the item `name` asked for (and got): `index` runs
    /// from 0 to `count - 1`. Absent in answers of older pools: read as 1.
    #[serde(default = "one")]
    pub count: u32,
    #[serde(flatten)]
    pub dataset: Dataset,
}

fn one() -> u32 {
    1
}

/// 201 (new) or 200 (same idempotency key) answer to `POST /leases`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseGranted {
    pub lease_id: String,
    /// The proof of holding this lease, sent back in the
    /// `Stockroom-Lease-Token` header of heartbeat, release and extend. Only
    /// in this answer (a repeated idempotent answer carries a fresh one and
    /// the earlier one stops working); the pool keeps only its hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_token: Option<String>,
    pub expires_at: String,
    pub heartbeat_interval_seconds: u64,
    pub datasets: Vec<LeasedDataset>,
}

/// Optional body of `POST /leases/{id}/heartbeat`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

/// Answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatAnswer {
    pub lease_id: String,
    pub expires_at: String,
    pub heartbeat_interval_seconds: u64,
}

/// `POST /leases/{id}/release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details_url: Option<String>,
    /// Per-dataset outcomes by dataset id; datasets not listed take `outcome`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub datasets: BTreeMap<String, DatasetOutcome>,
}

/// How one dataset of a lease ended: in a release's `datasets`, and the body
/// of `POST /leases/{id}/datasets/{dataset_id}/release` (docs/per-test.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DatasetOutcome {
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The test that used the dataset, for its history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
}

/// One lease of a `POST /leases/heartbeat` batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBatchItem {
    pub lease_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_token: Option<String>,
}

/// `POST /leases/heartbeat`: extends every listed lease, each on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBatchRequest {
    pub leases: Vec<HeartbeatBatchItem>,
}

/// One lease's result in a heartbeat batch: extended (`expires_at` and
/// `heartbeat_interval_seconds`), or the `problem` a single heartbeat of it
/// would have answered (`…/lease-gone`, `…/not-found`, `…/not-holder`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatBatchResult {
    pub lease_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

/// Answer to `POST /leases/heartbeat`, in the order asked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatBatchAnswer {
    pub leases: Vec<HeartbeatBatchResult>,
}

/// What became of one dataset at release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleasedDataset {
    pub id: String,
    pub name: String,
    pub status: DatasetStatus,
}

/// Answer to a release (the same on every repeat: release is idempotent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseAnswer {
    pub lease_id: String,
    pub status: LeaseStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    pub datasets: Vec<ReleasedDataset>,
}

/// A lease as shown by `GET /leases` and `GET /leases/{id}` (secrets redacted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseView {
    pub lease_id: String,
    pub status: LeaseStatus,
    pub holder: Holder,
    pub created_at: String,
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details_url: Option<String>,
    pub datasets: Vec<LeasedDataset>,
}

/// `GET /leases` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseList {
    pub leases: Vec<LeaseView>,
}

/// `POST /leases/{id}/datasets/{dataset_id}/extend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExtendDatasetRequest {
    pub extension: String,
}

/// One recorded status change of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryEntry {
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DatasetStatus>,
    pub to: DatasetStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    pub reason: String,
}

/// A dataset as shown by `GET /datasets` and `GET /datasets/{id}` (secrets redacted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatasetView {
    #[serde(flatten)]
    pub dataset: Dataset,
    pub status: DatasetStatus,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Only in `GET /datasets/{id}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
}

/// `GET /datasets` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatasetList {
    pub datasets: Vec<DatasetView>,
}

/// One dataset registered by hand with `POST /datasets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewDataset {
    #[serde(rename = "type")]
    pub type_name: String,
    pub state: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, AttrValue>))]
    pub attributes: Attributes,
    #[serde(default = "crate::dataset::empty_object")]
    pub data: Value,
    #[serde(default)]
    pub secret_fields: Vec<String>,
    #[serde(default)]
    pub entities: Vec<String>,
    /// Whether a `passed` release returns the dataset to `ready` (a shared
    /// sandbox or fixed account) instead of `consumed`. Default: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reusable: bool,
}

/// `POST /datasets` accepts one dataset or a list of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum RegisterDatasets {
    Many(Vec<NewDataset>),
    One(NewDataset),
}

impl RegisterDatasets {
    pub fn into_vec(self) -> Vec<NewDataset> {
        match self {
            RegisterDatasets::Many(v) => v,
            RegisterDatasets::One(d) => vec![d],
        }
    }
}

/// `PUT /stock/{type}/{state}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StockSettings {
    pub min_ready: u32,
    pub max_ready: u32,
}

/// Answer to `POST /stock/{type}/{state}/verify` (admin): how many ready
/// datasets are now being verified (each outcome goes to its history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyStarted {
    #[serde(rename = "type")]
    pub type_name: String,
    pub state: String,
    pub verifying: u64,
}

/// How many datasets of one state are in each status, and the stock targets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StockCounts {
    pub ready: u64,
    pub generating: u64,
    pub leased: u64,
    pub quarantined: u64,
    pub consumed: u64,
    pub failed: u64,
    pub discarded: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ready: Option<u32>,
    /// What the stock policy aims for now and why (docs/pool.md, "Stock").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<StockTarget>,
}

/// The stock a state's policy aims for now: `ready + generating` is kept at
/// `target`, which lies between `min_ready` and `max_ready` and follows the
/// leases seen over the generation lead time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StockTarget {
    pub target: u32,
    /// Datasets of this state leased over the last `demand_window_seconds`.
    pub demand: u64,
    pub demand_window_seconds: u64,
    /// How long one dataset of this state takes to make, lately (ms).
    pub lead_time_ms: u64,
    /// The same in words, e.g. "37 leased in the last 10m; up to 20 came
    /// faster than the generator remakes them (150ms each, 26.7/s): 20 + 20%
    /// headroom".
    pub why: String,
}

/// How a state is produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Production {
    /// A generator creates it, from the required inputs if any.
    Generate {
        generator: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        requires: Vec<crate::generator::Requirement>,
    },
    /// An extension advances a dataset of state `from` to this one.
    Extend {
        generator: String,
        from: String,
        extension: String,
    },
    /// Only registered by hand (`POST /datasets`).
    Registered,
}

/// Health of one generator, for the catalog.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GeneratorHealth {
    pub name: String,
    pub available: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median_latency_ms: Option<u64>,
}

/// One state of a type in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CatalogState {
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Attribute name to its allowed values (empty list: any value).
    #[serde(default)]
    pub attributes: BTreeMap<String, Vec<AttrValue>>,
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default)]
    pub secret_fields: Vec<String>,
    #[serde(default)]
    pub reusable: bool,
    #[serde(default)]
    pub produced_by: Vec<Production>,
    /// The lifecycle calls its datasets get (cleanup, reset, verify).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lifecycle: Vec<crate::generator::LifecycleCall>,
    /// False when every generator that produces it is down.
    pub available: bool,
    pub stock: StockCounts,
}

/// One type in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CatalogType {
    #[serde(rename = "type")]
    pub type_name: String,
    pub states: Vec<CatalogState>,
}

/// `GET /catalog`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Catalog {
    pub types: Vec<CatalogType>,
    #[serde(default)]
    pub generators: Vec<GeneratorHealth>,
    /// What is wrong in the generators' capabilities (the pool still serves what works).
    #[serde(default)]
    pub problems: Vec<String>,
}

/// One generator's part of a refresh answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshedGenerator {
    pub name: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `type/state` it produces and extensions it offers, from its last good answer.
    #[serde(default)]
    pub produces: Vec<String>,
    #[serde(default)]
    pub extensions: Vec<String>,
}

/// `POST /generators/refresh`: each generator's answer, and the problems found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshAnswer {
    pub generators: Vec<RefreshedGenerator>,
    #[serde(default)]
    pub problems: Vec<String>,
}

impl Catalog {
    pub fn find(&self, type_name: &str, state: &str) -> Option<&CatalogState> {
        self.types
            .iter()
            .find(|t| t.type_name == type_name)
            .and_then(|t| t.states.iter().find(|s| s.state == state))
    }

    /// Every `type/state` known, for "unknown state" messages.
    pub fn known_states(&self) -> Vec<String> {
        self.types
            .iter()
            .flat_map(|t| {
                t.states
                    .iter()
                    .map(move |s| format!("{}/{}", t.type_name, s.state))
            })
            .collect()
    }
}

/// What the pool lacked for one item when a lease could not be served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Shortfall {
    pub name: String,
    pub wanted: u32,
    pub ready: u64,
    pub generating: u64,
    /// The generator that makes this state (the first route's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
    /// Why that generator is down right now (e.g. "connection refused").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<String>,
    /// Ready datasets that match but whose entities another active lease
    /// holds (they count in `ready` yet cannot be handed out now).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub entities_held: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The kinds of error, named in a problem's `type` so clients never guess
/// from a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    UnknownState,
    NoStock,
    LeaseGone,
    NotHolder,
    InvalidRequest,
    Unauthorized,
    Forbidden,
    TooLarge,
    GeneratorFailed,
    NotFound,
    Conflict,
    Internal,
    Unavailable,
    IdempotencyConflict,
    StoreFull,
}

impl ProblemKind {
    pub const ALL: &'static [ProblemKind] = &[
        ProblemKind::UnknownState,
        ProblemKind::NoStock,
        ProblemKind::LeaseGone,
        ProblemKind::NotHolder,
        ProblemKind::InvalidRequest,
        ProblemKind::Unauthorized,
        ProblemKind::Forbidden,
        ProblemKind::TooLarge,
        ProblemKind::GeneratorFailed,
        ProblemKind::NotFound,
        ProblemKind::Conflict,
        ProblemKind::Internal,
        ProblemKind::Unavailable,
        ProblemKind::IdempotencyConflict,
        ProblemKind::StoreFull,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            ProblemKind::UnknownState => "unknown-state",
            ProblemKind::NoStock => "no-stock",
            ProblemKind::LeaseGone => "lease-gone",
            ProblemKind::NotHolder => "not-holder",
            ProblemKind::InvalidRequest => "invalid-request",
            ProblemKind::Unauthorized => "unauthorized",
            ProblemKind::Forbidden => "forbidden",
            ProblemKind::TooLarge => "too-large",
            ProblemKind::GeneratorFailed => "generator-failed",
            ProblemKind::NotFound => "not-found",
            ProblemKind::Conflict => "conflict",
            ProblemKind::Internal => "internal",
            ProblemKind::Unavailable => "unavailable",
            ProblemKind::IdempotencyConflict => "idempotency-conflict",
            ProblemKind::StoreFull => "store-full",
        }
    }

    pub fn uri(self) -> String {
        format!("{PROBLEM_TYPE_BASE}{}", self.slug())
    }

    pub fn from_uri(uri: &str) -> Option<ProblemKind> {
        let slug = uri.rsplit('/').next()?;
        ProblemKind::ALL.iter().copied().find(|k| k.slug() == slug)
    }

    pub fn title(self) -> &'static str {
        match self {
            ProblemKind::UnknownState => "Unknown type or state",
            ProblemKind::NoStock => "Not enough stock",
            ProblemKind::LeaseGone => "Lease expired or released",
            ProblemKind::NotHolder => "Not the holder of this lease",
            ProblemKind::InvalidRequest => "Invalid request",
            ProblemKind::Unauthorized => "Missing or unknown token",
            ProblemKind::Forbidden => "Token lacks the needed role",
            ProblemKind::TooLarge => "Request body too large",
            ProblemKind::GeneratorFailed => "Generator failed",
            ProblemKind::NotFound => "Not found",
            ProblemKind::Conflict => "Conflict",
            ProblemKind::Internal => "Internal error",
            ProblemKind::Unavailable => "Service unavailable",
            ProblemKind::IdempotencyConflict => "Idempotency key used for another request",
            ProblemKind::StoreFull => "The pool's store is full",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ProblemKind::UnknownState => 422,
            ProblemKind::NoStock => 503,
            ProblemKind::LeaseGone => 410,
            ProblemKind::NotHolder => 403,
            ProblemKind::InvalidRequest => 422,
            ProblemKind::Unauthorized => 401,
            ProblemKind::Forbidden => 403,
            ProblemKind::TooLarge => 413,
            ProblemKind::GeneratorFailed => 502,
            ProblemKind::NotFound => 404,
            ProblemKind::Conflict => 409,
            ProblemKind::Internal => 500,
            ProblemKind::Unavailable => 503,
            ProblemKind::IdempotencyConflict => 409,
            ProblemKind::StoreFull => 507,
        }
    }
}

/// An `application/problem+json` error body (RFC 9457) with Stockroom's extra fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    #[serde(default)]
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_states: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortfall: Option<Vec<Shortfall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
}

impl Problem {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Problem {
            type_uri: kind.uri(),
            title: kind.title().to_string(),
            status: kind.status(),
            detail: detail.into(),
            known_states: None,
            shortfall: None,
            lease_id: None,
            generator: None,
        }
    }

    pub fn kind(&self) -> Option<ProblemKind> {
        ProblemKind::from_uri(&self.type_uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lease_request_of_the_contract_parses_with_defaults() {
        let req: LeaseRequest = serde_json::from_value(json!({
            "holder": {"ci": "gitlab", "repository": "shop/web", "run_id": "8812", "attempt": "1",
                       "job": "e2e", "shard_index": 0, "shard_total": 4, "url": "https://x"},
            "ttl_seconds": 120, "wait_seconds": 60, "idempotency_key": "gitlab:8812:1:e2e:0",
            "items": [{"name": "buyer", "type": "customer", "state": "active-with-payment",
                       "where": {"country": "DE"}, "count": 1, "on_failure": "quarantine"},
                      {"name": "o", "type": "order", "state": "placed"}]
        }))
        .unwrap();
        assert_eq!(req.items[0].where_["country"].as_str(), "DE");
        assert_eq!(req.items[1].count, 1);
        assert_eq!(req.items[1].on_failure, OnFailure::Quarantine);
        assert_eq!(req.holder.label(), "gitlab shop/web#8812 e2e [0/4]");
        let mut per_test = req.holder.clone();
        per_test.worker = Some("gw1".into());
        per_test.test = Some("tests/a.py::t[x y]".into());
        let label = per_test.label();
        assert_eq!(
            label,
            "gitlab shop/web#8812 e2e [0/4] worker gw1 test tests/a.py::t[x y]"
        );
        assert_eq!(Holder::test_in_label(&label), Some("tests/a.py::t[x y]"));
        assert_eq!(Holder::test_in_label("gitlab e2e"), None);
        assert_eq!(per_test.job_only(), req.holder);
        let bad = serde_json::from_value::<LeaseRequest>(json!({"items": [], "bogus": 1}));
        assert!(bad.unwrap_err().to_string().contains("bogus"));
    }

    #[test]
    fn problem_kinds_round_trip_through_their_uri() {
        for k in ProblemKind::ALL {
            assert_eq!(ProblemKind::from_uri(&k.uri()), Some(*k));
        }
        let p = Problem::new(ProblemKind::LeaseGone, "lease l1 expired");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "https://stockroom.dev/problems/lease-gone");
        assert_eq!(v["status"], 410);
        assert!(v.get("shortfall").is_none());
    }

    #[test]
    fn register_accepts_one_or_many() {
        let one: RegisterDatasets =
            serde_json::from_value(json!({"type": "customer", "state": "active"})).unwrap();
        assert_eq!(one.into_vec().len(), 1);
        let many: RegisterDatasets = serde_json::from_value(json!([
            {"type": "customer", "state": "active"}, {"type": "customer", "state": "active"}
        ]))
        .unwrap();
        assert_eq!(many.into_vec().len(), 2);
    }
}
