//! The shared types of Stockroom's external contract (docs/architecture.md and the docs it links).
//!
//! Both programs — the `stockroom` sidecar and the `stockroom-pool` server —
//! speak through these types, so a change here is a change of the contract.

pub mod api;
pub mod attributes;
pub mod backoff;
pub mod dataset;
pub mod datasets_file;
pub mod duration;
pub mod env_names;
pub mod exit_codes;
pub mod generator;
pub mod manifest;
pub mod pool_config;
pub mod position;

pub use attributes::{AttrValue, Attributes};
pub use dataset::{Dataset, DatasetStatus, LeaseStatus, OnFailure, Outcome};
pub use duration::HumanDuration;
pub use position::{SourceError, SourcePosition};
