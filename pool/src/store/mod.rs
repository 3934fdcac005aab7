//! Storage: the semantic operations of the pool, one trait every backend implements.
//!
//! Each method is one atomic operation of docs/pool.md (lease, heartbeat,
//! release, expire, register, discard, recycle) or a read. Exclusivity is the
//! backend's job, enforced inside its transaction by the database itself (an
//! `entity_holds` table keyed by entity), never by a process-local lock, so it
//! holds across restarts and across replicas sharing one PostgreSQL database.
//!
//! Semantic refusals (no stock, lease gone, wrong status) are `Ok` values of
//! small enums, so a backend can commit side effects that come with them (a
//! heartbeat that finds its lease overdue expires it and answers `Gone`).
//! `Err(StoreError)` is only for the store failing.
//!
//! Time is passed in (`now_ms`, milliseconds since the Unix epoch) so the
//! shared [`conformance`] suite can test TTLs without sleeping.

pub mod conformance;
mod error;
mod ops;
pub mod postgres;
mod rows;
pub mod rules;
mod sessions;
pub mod sqlite;
mod tx;

pub use error::{CorruptData, DriverError, StoreError, StoreResult};
pub use rules::heartbeat_interval_seconds;
pub use sessions::SessionRow;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use stockroom_protocol::api::{
    DatasetView, HistoryEntry, Holder, LeaseGranted, LeaseItem, LeaseView, NewDataset,
    ReleaseAnswer, StockCounts, StockSettings,
};
use stockroom_protocol::pool_config::StoreUrl;
use stockroom_protocol::{Attributes, Dataset, DatasetStatus, LeaseStatus, Outcome};

/// A boxed future, so the trait stays object safe (`Arc<dyn Store>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One lease attempt, already validated and capped by the leasing layer.
#[derive(Debug, Clone)]
pub struct LeaseAttempt {
    pub holder: Holder,
    /// At least one item: an attempt without items is refused as a bug (to
    /// look an idempotency key up, see [`Store::find_by_idempotency_key`]).
    pub items: Vec<LeaseItem>,
    pub ttl_ms: i64,
    pub idempotency_key: Option<String>,
    pub now_ms: i64,
}

/// What one item lacked when a lease could not be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemShortfall {
    pub name: String,
    pub wanted: u32,
    /// Matching datasets that are ready and whose entities are free.
    pub available: u64,
    /// Ready datasets of the state (whatever the filter).
    pub ready: u64,
    pub generating: u64,
    /// Datasets of the state that could still become ready for this item
    /// (ready + generating + leased, matching the filter); below `wanted`
    /// the request cannot be satisfied by waiting alone.
    pub potential: u64,
}

/// Answer to [`Store::lease`].
#[derive(Debug, Clone)]
pub enum LeaseResult {
    /// A new lease (HTTP 201).
    Granted(LeaseGranted),
    /// The active lease of the same idempotency key (HTTP 200).
    Existing(LeaseGranted),
    /// Not enough stock; nothing was held.
    NoStock(Vec<ItemShortfall>),
}

/// Answer to [`Store::heartbeat`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeartbeatResult {
    Extended { expires_at_ms: i64, ttl_ms: i64 },
    Gone(LeaseStatus),
    NotFound,
}

/// Answer to [`Store::release`].
#[derive(Debug, Clone, PartialEq)]
pub enum ReleaseResult {
    Released(ReleaseAnswer),
    /// A repeated release: the first answer again.
    AlreadyReleased(ReleaseAnswer),
    /// The lease expired first; its datasets were quarantined then.
    Expired,
    NotFound,
}

/// A lease the reaper expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredLease {
    pub lease_id: String,
    pub dataset_ids: Vec<String>,
}

/// Answer to [`Store::discard`] and [`Store::recycle`].
#[derive(Debug, Clone, PartialEq)]
pub enum SettleResult {
    Done(Box<DatasetView>),
    /// The dataset is in a status the operation does not apply to.
    WrongStatus(DatasetStatus),
    NotFound,
}

/// `GET /datasets` filter.
#[derive(Debug, Clone, Default)]
pub struct DatasetFilter {
    pub type_name: Option<String>,
    pub state: Option<String>,
    pub status: Option<DatasetStatus>,
    pub limit: u32,
}

/// A quarantined dataset as the quarantine page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantinedDataset {
    /// With its full history.
    pub view: DatasetView,
    /// The job that failed it: its last lease's `details_url`, else the
    /// lease holder's `url`.
    pub failing_job: Option<String>,
}

/// Counts and stock settings per `(type, state)`.
pub type StockTable = BTreeMap<(String, String), StockCounts>;

/// A generation about to start: becomes a `generating` row.
#[derive(Debug, Clone)]
pub struct NewGeneration {
    pub type_name: String,
    pub state: String,
    /// The generator that will be called (kept with the row, and with a failure).
    pub generator: String,
    /// The request as sent (inputs redacted), kept with a failure.
    pub request: serde_json::Value,
    pub reusable: bool,
    /// Refuse (`None`) when ready + generating of the state already reach this.
    pub cap: Option<u64>,
}

/// What a successful generation produced.
#[derive(Debug, Clone)]
pub struct Generated {
    pub attributes: Attributes,
    pub data: serde_json::Value,
    pub secret_fields: Vec<String>,
    pub entities: Vec<String>,
    /// History reason, e.g. `generated by "customers"`.
    pub reason: String,
    /// `Some(parent)`: the dataset is an input of `parent` and goes straight to
    /// `composed`; `None`: it becomes `ready` stock.
    pub part_of: Option<String>,
}

/// An input taken from stock for a generation.
#[derive(Debug, Clone)]
pub struct InputPick {
    /// The `generating` dataset the input becomes part of.
    pub part_of: String,
    pub input_name: String,
    pub type_name: String,
    pub state: String,
    pub where_: Attributes,
}

/// A leased dataset advanced by an extension.
#[derive(Debug, Clone)]
pub struct Extension {
    pub lease_id: String,
    pub dataset_id: String,
    /// The state the dataset must be in now.
    pub from_state: String,
    pub to_state: String,
    pub data: serde_json::Value,
    pub secret_fields: Vec<String>,
    pub entities: Vec<String>,
    /// History reason, e.g. `extended by add-card of "payments"`.
    pub reason: String,
}

/// Answer to [`Store::extend_leased`].
#[derive(Debug, Clone)]
pub enum ExtendResult {
    Done(Box<DatasetView>),
    Gone(LeaseStatus),
    NotFound,
    /// The dataset is not held by this lease (or not in `from_state`).
    NotHolder,
    /// A new entity is held by another active lease.
    EntityHeld(String),
}

/// The pool's storage. See the module docs for the rules every backend keeps.
pub trait Store: Send + Sync + 'static {
    /// Leases every item atomically, or nothing. Picks the oldest ready
    /// datasets that match `where` and whose entities are free of active
    /// leases (and distinct within the lease); with an idempotency key that
    /// has an active lease, answers that lease instead. `attempt.items` must
    /// not be empty.
    fn lease(&self, attempt: LeaseAttempt) -> BoxFuture<'_, StoreResult<LeaseResult>>;

    /// The active lease of an idempotency key, if any. One found past its
    /// expiry is expired on the spot (as the reaper would) and answers `None`.
    fn find_by_idempotency_key(
        &self,
        key: String,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Option<LeaseGranted>>>;

    /// Extends an active, unexpired lease to `now + ttl`. An active lease found
    /// past its expiry is expired on the spot (as the reaper would).
    fn heartbeat(
        &self,
        lease_id: String,
        ttl_ms: Option<i64>,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<HeartbeatResult>>;

    /// Ends a lease with an outcome: `passed` (or `on_failure = release`) →
    /// `consumed`, or `ready` when the dataset is reusable; otherwise
    /// `quarantined`. Idempotent.
    fn release(
        &self,
        lease_id: String,
        outcome: Outcome,
        reason: Option<String>,
        details_url: Option<String>,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<ReleaseResult>>;

    /// Expires up to `limit` active leases whose time is up; their datasets
    /// become `quarantined` ("lease expired without heartbeat").
    fn expire_due(&self, now_ms: i64, limit: u32) -> BoxFuture<'_, StoreResult<Vec<ExpiredLease>>>;

    /// Registers datasets by hand, `ready` at once. `by` names who did it, for the history.
    fn register(
        &self,
        datasets: Vec<NewDataset>,
        by: String,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<DatasetView>>>;

    /// `quarantined`, `ready` or `failed` → `discarded`.
    fn discard(
        &self,
        id: String,
        by: String,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<SettleResult>>;

    /// `quarantined` → `ready`.
    fn recycle(
        &self,
        id: String,
        by: String,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<SettleResult>>;

    /// One dataset with its full history, secrets not yet redacted.
    fn get_dataset(&self, id: String) -> BoxFuture<'_, StoreResult<Option<DatasetView>>>;

    /// Datasets in insertion order, without history, secrets not yet redacted.
    fn list_datasets(&self, filter: DatasetFilter) -> BoxFuture<'_, StoreResult<Vec<DatasetView>>>;

    /// The history of one dataset, oldest first.
    fn history(&self, id: String) -> BoxFuture<'_, StoreResult<Vec<HistoryEntry>>>;

    /// One lease with its datasets, secrets not yet redacted.
    fn get_lease(&self, id: String) -> BoxFuture<'_, StoreResult<Option<LeaseView>>>;

    /// Leases, newest first, optionally of one status, at most `limit`.
    fn list_leases(
        &self,
        status: Option<LeaseStatus>,
        limit: u32,
    ) -> BoxFuture<'_, StoreResult<Vec<LeaseView>>>;

    /// How many leases are active.
    fn active_lease_count(&self) -> BoxFuture<'_, StoreResult<u64>>;

    /// Counts per status and stock settings of every `(type, state)` the store knows.
    fn stock(&self) -> BoxFuture<'_, StoreResult<StockTable>>;

    /// Sets `min_ready`/`max_ready` of one state.
    fn set_stock(
        &self,
        type_name: String,
        state: String,
        settings: StockSettings,
    ) -> BoxFuture<'_, StoreResult<()>>;

    /// Erases the data of datasets consumed before `before_ms` (keeping the
    /// row, its metadata and its history, plus a history line saying so).
    /// Returns how many were erased.
    fn purge_consumed(&self, before_ms: i64, now_ms: i64) -> BoxFuture<'_, StoreResult<u64>>;

    /// Inserts a `generating` row (it counts toward `generating` and against
    /// `max_ready`), or answers `None` when `cap` is already reached by
    /// ready + generating datasets of the state. Returns the new dataset id.
    fn begin_generation(
        &self,
        generation: NewGeneration,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Option<String>>>;

    /// Takes the oldest ready dataset matching `where` whose entities are free
    /// and makes it a part of a `generating` dataset: `composed`, never
    /// leasable on its own again. `None` when there is none.
    fn take_input(
        &self,
        pick: InputPick,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Option<Dataset>>>;

    /// `generating` → `ready` (or `composed` into `part_of`) with the answer;
    /// its entities become the union of the answer's and its parts'. `None`
    /// when the row is no longer `generating` (marked failed meanwhile).
    fn complete_generation(
        &self,
        id: String,
        generated: Generated,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Option<DatasetView>>>;

    /// `generating` → `failed` with the error (the generator and request
    /// stay on the row); its parts taken from stock become `quarantined`
    /// (the generator may have changed them). False when not `generating`.
    fn fail_generation(
        &self,
        id: String,
        error: String,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<bool>>;

    /// Marks every `generating` row `failed` with `reason` (at start: nothing
    /// survives a restart silently). Returns how many.
    fn fail_all_generating(&self, reason: String, now_ms: i64) -> BoxFuture<'_, StoreResult<u64>>;

    /// Advances a dataset held by an active lease to another state with new
    /// data (state, data, secrets, entities and history change together; new
    /// entities are held by the lease).
    fn extend_leased(
        &self,
        extension: Extension,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<ExtendResult>>;

    /// Quarantined datasets in insertion order, at most `limit`, each with
    /// its full history and failing job, in a constant number of queries.
    fn list_quarantined(&self, limit: u32) -> BoxFuture<'_, StoreResult<Vec<QuarantinedDataset>>>;

    /// Stores a new web session (or replaces one with the same `id_hash`).
    fn put_session(&self, session: SessionRow) -> BoxFuture<'_, StoreResult<()>>;

    /// The session of a cookie hash, its `last_seen_ms` refreshed to `now_ms`;
    /// `None` when unknown or idle for longer than `idle_ms` (idle sessions
    /// are deleted on the way, so the table never grows without bound).
    fn get_session(
        &self,
        id_hash: String,
        now_ms: i64,
        idle_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Option<SessionRow>>>;

    /// Signs a session out.
    fn delete_session(&self, id_hash: String) -> BoxFuture<'_, StoreResult<()>>;

    /// Remembers a lease taken through the page in this session.
    fn add_session_lease(
        &self,
        id_hash: String,
        lease_id: String,
    ) -> BoxFuture<'_, StoreResult<()>>;

    /// How often this replica's waiters must re-try on their own, when stock
    /// can also grow through other processes sharing the database (`None`: the
    /// process sees every change itself, its own events wake the waiters).
    fn wake_interval(&self) -> Option<std::time::Duration> {
        None
    }
}

/// Opens the backend named by a store URL (`sqlite://PATH`, or
/// `postgres://…` / `postgresql://…`), chosen once from the scheme.
pub async fn open(url: &StoreUrl) -> StoreResult<std::sync::Arc<dyn Store>> {
    match url.sqlite_path() {
        Some(path) => Ok(std::sync::Arc::new(sqlite::SqliteStore::open(path)?)),
        None => Ok(std::sync::Arc::new(
            postgres::PostgresStore::open(url).await?,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_unavailable_and_hides_the_password() {
        let url = StoreUrl::parse("postgres://bob:hunter2@127.0.0.1:1/db").expect("url");
        let Err(e) = open(&url).await else {
            panic!("nothing listens on port 1");
        };
        assert!(e.is_unavailable(), "{e:?}");
        assert!(matches!(e, StoreError::Connect(_)), "{e:?}");
        for shown in [
            e.to_string(),
            format!("{e:?}"),
            format!("{url:?}"),
            url.to_string(),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }
}
