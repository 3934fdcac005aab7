//! Why a pool operation was refused or failed. The HTTP API turns each into a
//! problem+json answer and the web page into a message, each in one place
//! (`http::problem`, `ui`), so the two cannot disagree on what happened.

use stockroom_protocol::api::Shortfall;
use stockroom_protocol::{DatasetStatus, LeaseStatus};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is well-formed JSON but not a valid request (422).
    #[error("{0}")]
    Invalid(String),
    /// A `type/state` the pool does not know; `known` lists what it knows.
    #[error("the pool knows no {}; see known_states or GET /api/v1/catalog", unknown.join(", "))]
    UnknownState {
        unknown: Vec<String>,
        known: Vec<String>,
    },
    /// No lease, dataset or extension of that id.
    #[error("{0}")]
    NotFound(String),
    /// The lease exists but is no longer active.
    #[error("{detail}")]
    LeaseGone {
        lease_id: String,
        status: LeaseStatus,
        detail: String,
    },
    /// The dataset is not held by this lease (any more), or the caller did
    /// not prove it holds the lease (its token missing or wrong).
    #[error("{0}")]
    NotHolder(String),
    /// The idempotency key has an active lease for another request or
    /// another process (docs/pool.md, "Idempotency").
    #[error("{0}")]
    IdempotencyConflict(String),
    /// The dataset is in a status the operation does not apply to.
    #[error("{detail}")]
    WrongStatus {
        status: DatasetStatus,
        detail: String,
    },
    /// No generator offers that extension from the dataset's state.
    #[error("{detail}")]
    UnknownExtension { detail: String, known: Vec<String> },
    /// A generator failed or answered something unusable; nothing changed.
    #[error("{detail}")]
    GeneratorFailed { generator: String, detail: String },
    /// Not enough stock within the wait; nothing is held.
    #[error("not enough stock for this request; nothing is held")]
    NoStock {
        shortfall: Vec<Shortfall>,
        /// Earlier waiters for the same states were served first.
        queued_behind: bool,
    },
    /// Shutdown began while the request waited.
    #[error("the pool is shutting down; retry shortly")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type ServiceResult<T> = Result<T, ServiceError>;
