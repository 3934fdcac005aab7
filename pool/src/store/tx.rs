//! The data primitives a backend offers inside one transaction. The
//! operations of the pool ([`super::ops`]) are written once over this trait;
//! a backend implements it with its own SQL and nothing else.
//!
//! Locking words (`lock`, "candidates") matter only to backends with
//! concurrent writers: PostgreSQL takes `FOR UPDATE` (and `SKIP LOCKED` for
//! candidates) where asked; SQLite's single writer needs no row locks and
//! ignores them.

use stockroom_protocol::api::{HistoryEntry, StockSettings};
use stockroom_protocol::{DatasetStatus, OnFailure};

use super::rows::{LeaseRow, RawDataset};
use super::sessions::SessionRow;
use super::{DatasetFilter, StoreResult};

/// `seq, id, type, state, status` of a dataset.
#[derive(Debug, Clone)]
pub(crate) struct DatasetRef {
    pub seq: i64,
    pub id: String,
    pub type_name: String,
    pub state: String,
    pub status: DatasetStatus,
}

/// A ready dataset that may be picked.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub seq: i64,
    pub id: String,
    /// JSON text (parsed only when a filter has more than one attribute).
    pub attributes: String,
    /// JSON text.
    pub entities: String,
    pub updated_at: i64,
}

/// A dataset of a lease being released.
#[derive(Debug, Clone)]
pub(crate) struct ReleaseRow {
    pub name: String,
    pub on_failure: OnFailure,
    pub dataset: DatasetRef,
    pub reusable: bool,
    /// The lifecycle calls it was made with, comma-separated.
    pub lifecycle: String,
}

/// A dataset owing a lifecycle call that is due.
pub(crate) struct PendingRow {
    pub seq: i64,
    /// `cleanup`, `reset` or `verify`.
    pub pending: String,
    pub attempts: i64,
    pub raw: RawDataset,
}

/// A dataset as handed out by a lease: its item and index there.
pub(crate) struct LeaseItemRow {
    pub name: String,
    pub index: u32,
    pub raw: RawDataset,
}

/// A dataset row to insert.
pub(crate) struct NewRow<'a> {
    pub id: &'a str,
    pub type_name: &'a str,
    pub state: &'a str,
    pub status: DatasetStatus,
    pub attributes: String,
    pub data: String,
    pub secret_fields: String,
    pub entities: String,
    pub reusable: bool,
    pub now_ms: i64,
    /// `generating` rows: the generator and the request sent.
    pub generator: Option<&'a str>,
    pub request: Option<String>,
    /// The lifecycle calls of its state, comma-separated.
    pub lifecycle: String,
}

/// One dataset of a new lease.
pub(crate) struct NewLeaseItem<'a> {
    pub lease_id: &'a str,
    pub dataset_id: &'a str,
    pub name: &'a str,
    pub index: u32,
    /// Order in the lease answer.
    pub pos: i64,
    pub on_failure: OnFailure,
}

/// Ready datasets of `(type, state)` (with the `first` attribute when
/// given) after `cursor` in insertion order, at most `batch`.
pub(crate) struct CandidateQuery<'a> {
    pub type_name: &'a str,
    pub state: &'a str,
    pub first: Option<(&'a str, &'a str)>,
    pub cursor: i64,
    pub batch: i64,
}

/// One attribute of a dataset of `(type, state)`.
#[derive(Clone, Copy)]
pub(crate) struct Attr<'a> {
    pub type_name: &'a str,
    pub state: &'a str,
    pub name: &'a str,
    pub value: &'a str,
}

/// A row's new status (`ready` clears its lease), time and lease.
pub(crate) struct RowStatus<'a> {
    pub seq: i64,
    pub to: DatasetStatus,
    pub lease_id: Option<&'a str>,
    pub now_ms: i64,
}

/// A lease row to insert.
pub(crate) struct NewLease<'a> {
    pub id: &'a str,
    pub holder_json: String,
    pub holder_label: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub ttl_ms: i64,
    pub created_at: i64,
    pub expires_at: i64,
    /// Hex SHA-256 of the lease token.
    pub token_hash: &'a str,
    /// Hex SHA-256 of what the request asked.
    pub request_hash: &'a str,
}

/// One history line.
pub(crate) struct NewHistory<'a> {
    pub dataset_id: &'a str,
    pub at: i64,
    pub from: Option<DatasetStatus>,
    pub to: DatasetStatus,
    pub lease_id: Option<&'a str>,
    pub holder: Option<&'a str>,
    pub reason: &'a str,
}

/// The end state of a released lease.
pub(crate) struct LeaseEnd<'a> {
    pub id: &'a str,
    pub now_ms: i64,
    pub outcome: &'a str,
    pub reason: Option<&'a str>,
    pub details_url: Option<&'a str>,
    pub answer_json: String,
}

/// New data of a generated dataset.
pub(crate) struct GeneratedRow<'a> {
    pub seq: i64,
    pub attributes: String,
    pub data: String,
    pub secret_fields: String,
    pub entities: String,
    pub part_of: Option<&'a str>,
    /// JSON of the inputs it was built from.
    pub inputs: String,
}

/// New state and data of an extended leased dataset.
pub(crate) struct ExtendedRow<'a> {
    pub seq: i64,
    pub to_state: &'a str,
    pub data: String,
    pub secret_fields: String,
    pub entities: String,
    pub now_ms: i64,
}

/// A count change of one `(type, state, status)`.
pub(crate) type CountKey = (String, String, DatasetStatus);

/// A quarantined dataset with its last lease's links.
pub(crate) struct QuarantinedRow {
    pub raw: RawDataset,
    pub details_url: Option<String>,
    /// JSON of the last lease's holder.
    pub holder_json: Option<String>,
}

/// Data primitives of one transaction. See the module docs.
#[allow(async_fn_in_trait)] // crate-private, used generically only
pub(crate) trait Tx {
    /// Whether picked candidates stay locked (and hidden from other writers)
    /// until commit: then fetch no more than needed.
    const LOCKS_CANDIDATES: bool;

    // ----- leases
    async fn find_lease(&self, id: &str, lock: bool) -> StoreResult<Option<LeaseRow>>;
    async fn active_lease_by_key(&self, key: &str) -> StoreResult<Option<LeaseRow>>;
    async fn lease_items(&self, lease_id: &str) -> StoreResult<Vec<LeaseItemRow>>;
    async fn insert_lease(&self, lease: NewLease<'_>) -> StoreResult<()>;
    /// Replaces a lease's token hash (a repeated idempotent answer's fresh token).
    async fn set_lease_token(&self, id: &str, token_hash: &str) -> StoreResult<()>;
    async fn insert_lease_item(&self, item: NewLeaseItem<'_>) -> StoreResult<()>;
    async fn set_lease_expired(&self, id: &str, now_ms: i64, reason: &str) -> StoreResult<()>;
    async fn set_lease_expiry(&self, id: &str, expires_at: i64, ttl_ms: i64) -> StoreResult<()>;
    async fn set_lease_released(&self, end: LeaseEnd<'_>) -> StoreResult<()>;
    /// Datasets still `leased` by the lease, locked, in lease order.
    async fn leased_by(&self, lease_id: &str) -> StoreResult<Vec<DatasetRef>>;
    /// Every dataset of the lease with its item, locked, in lease order.
    async fn release_rows(&self, lease_id: &str) -> StoreResult<Vec<ReleaseRow>>;
    /// Active leases due at `now_ms`, oldest due first, locked (others skipped).
    async fn due_leases(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<LeaseRow>>;
    async fn list_lease_rows(&self, status: Option<&str>, limit: u32)
    -> StoreResult<Vec<LeaseRow>>;
    async fn active_lease_count(&self) -> StoreResult<u64>;

    // ----- entities
    async fn entity_holder(&self, entity: &str) -> StoreResult<Option<String>>;
    async fn hold_entity(&self, entity: &str, lease_id: &str, dataset_id: &str) -> StoreResult<()>;
    async fn free_entities(&self, lease_id: &str, now_ms: i64) -> StoreResult<()>;
    /// Frees the entities one dataset of the lease holds (a per-dataset release).
    async fn free_dataset_entities(
        &self,
        lease_id: &str,
        dataset_id: &str,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// The earliest time a transaction taking these datasets may record
    /// (see the PostgreSQL backend); `now_ms` where writes are serialised.
    async fn clock_floor(
        &self,
        updated_at: &[i64],
        entities: &[String],
        now_ms: i64,
    ) -> StoreResult<i64>;

    // ----- picking
    /// Ready datasets matching the query (see [`CandidateQuery`]).
    async fn candidates(&self, q: CandidateQuery<'_>) -> StoreResult<Vec<Candidate>>;
    /// Datasets of `(type, state)` with the attribute, ready, generating or leased.
    async fn potential_with(&self, attr: Attr<'_>) -> StoreResult<u64>;
    /// Datasets of `(type, state)` in any of `statuses`, from the counts, read
    /// in one statement.
    async fn count(&self, of: (&str, &str), statuses: &[DatasetStatus]) -> StoreResult<u64>;
    /// Serialises generation starts of one `(type, state)` across writers.
    async fn lock_generation_cap(&self, type_name: &str, state: &str) -> StoreResult<()>;

    // ----- datasets
    async fn dataset_ref(&self, id: &str, lock: bool) -> StoreResult<Option<DatasetRef>>;
    async fn dataset(&self, id: &str) -> StoreResult<Option<RawDataset>>;
    async fn dataset_by_seq(&self, seq: i64) -> StoreResult<RawDataset>;
    async fn history(&self, id: &str) -> StoreResult<Vec<HistoryEntry>>;
    async fn list_datasets(&self, filter: &DatasetFilter) -> StoreResult<Vec<RawDataset>>;
    /// Returns the new row's `seq`.
    async fn insert_dataset(&self, row: NewRow<'_>) -> StoreResult<i64>;
    async fn insert_attr(&self, attr: Attr<'_>, seq: i64) -> StoreResult<()>;
    async fn set_status(&self, s: RowStatus<'_>) -> StoreResult<()>;
    async fn insert_history(&self, h: NewHistory<'_>) -> StoreResult<()>;
    async fn set_part_of(&self, seq: i64, parent: &str) -> StoreResult<()>;
    /// Entities (JSON text) of the parts of `parent`, in insertion order.
    async fn parts_entities(&self, parent: &str) -> StoreResult<Vec<String>>;
    /// Parts of `parent` still `composed` or `generating`, locked.
    async fn open_parts(&self, parent: &str) -> StoreResult<Vec<DatasetRef>>;
    async fn set_generated(&self, row: GeneratedRow<'_>) -> StoreResult<()>;
    async fn set_error(&self, seq: i64, error: &str) -> StoreResult<()>;
    async fn set_extended(&self, row: ExtendedRow<'_>) -> StoreResult<()>;
    /// `generating` rows [`super::Store::fail_all_generating`] may fail.
    async fn generating_to_fail(&self) -> StoreResult<Vec<String>>;
    /// Consumed datasets last changed before `before_ms` whose data is still
    /// there, locked (others skipped), at most `limit`.
    async fn consumed_before(&self, before_ms: i64, limit: u32) -> StoreResult<Vec<String>>;
    async fn erase_data(&self, id: &str, now_ms: i64) -> StoreResult<()>;
    async fn quarantined(&self, limit: u32) -> StoreResult<Vec<QuarantinedRow>>;
    /// The histories of `ids`, each oldest first (dataset id, entry).
    async fn histories(&self, ids: &[String]) -> StoreResult<Vec<(String, HistoryEntry)>>;

    // ----- lifecycle calls
    /// Sets (or with `None` clears) the lifecycle call a dataset owes.
    async fn set_pending(
        &self,
        seq: i64,
        pending: Option<&str>,
        due_ms: Option<i64>,
        attempts: i64,
    ) -> StoreResult<()>;
    /// Datasets whose lifecycle call is due at `now_ms`, soonest first,
    /// locked (others skipped), at most `limit`.
    async fn pending_due(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<PendingRow>>;
    /// Ready datasets of `(type, state)` ready since before `before_ms`, in
    /// insertion order, locked (others skipped), with their lifecycle.
    async fn stale_ready(
        &self,
        type_name: &str,
        state: &str,
        before_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<(DatasetRef, String)>>;
    /// The lifecycle calls a dataset was made with and the call it owes.
    async fn lifecycle_of(&self, seq: i64) -> StoreResult<(String, Option<String>)>;

    // ----- stock
    /// Adds the deltas to the counts, in one statement, keys in order.
    async fn apply_counts(&self, deltas: &[(CountKey, i64)]) -> StoreResult<()>;
    /// Records `(type, state)` pairs as known (kept forever).
    async fn know_states(&self, states: &[(String, String)]) -> StoreResult<()>;
    async fn counts(&self) -> StoreResult<Vec<(CountKey, u64)>>;
    async fn known_states(&self) -> StoreResult<Vec<(String, String)>>;
    async fn stock_settings(&self) -> StoreResult<Vec<(String, String, StockSettings)>>;
    async fn set_stock(
        &self,
        type_name: &str,
        state: &str,
        settings: &StockSettings,
    ) -> StoreResult<()>;

    // ----- web sessions
    async fn put_session(&self, s: &SessionRow) -> StoreResult<()>;
    async fn get_session(&self, id_hash: &str) -> StoreResult<Option<SessionRow>>;
    async fn touch_session(&self, id_hash: &str, now_ms: i64) -> StoreResult<()>;
    async fn delete_session(&self, id_hash: &str) -> StoreResult<()>;
    /// Deletes sessions last seen before `before_ms`.
    async fn purge_sessions(&self, before_ms: i64) -> StoreResult<()>;
    async fn set_session_leases(&self, id_hash: &str, leases_json: &str) -> StoreResult<()>;
}
