//! Stockroom's generators: the clients that call them (HTTP services and local
//! commands, docs/generators.md), the checks their answers must pass, the catalog
//! graph built from their capabilities, their health, the planner that picks
//! the cheapest way to make a dataset, and the demo shop.
//!
//! See `docs/generators.md` for writing a generator.

#![forbid(unsafe_code)]

pub mod client;
pub mod command;
pub mod demo;
pub mod error;
pub mod graph;
pub mod health;
pub mod http;
pub mod lifecycle;
pub mod planner;
pub mod tracked;
pub mod validate;

pub use client::{AnyGenerator, GeneratorClient};
pub use command::CommandGenerator;
pub use demo::{DEFAULT_DEMO_LATENCY, DEFAULT_SHOP_LISTEN, DemoShop, Shop, start_demo_shop};
pub use error::{ErrorKind, ExitOutcome, GeneratorError, Operation};
pub use graph::{CatalogGraph, ExtensionInfo, GraphError, Route, StateInfo};
pub use health::{HealthPolicy, HealthTracker};
pub use http::{HttpGenerator, RetryPolicy};
pub use planner::{Goal, PlanContext, PlanError, PlanStep, plan};
pub use tracked::{MonotonicClock, TrackedGenerator};
pub use validate::{
    Violation, validate_extend_answer, validate_generate_answer, validate_reset_answer,
};
