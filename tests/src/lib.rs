//! Harness for Stockroom's end-to-end tests: finds the real binaries, runs a
//! real pool on port 0 (its `--ready-file` says when it listens: no sleeps),
//! talks plain HTTP to it, relays to it through a port that outlives a
//! restart, records the requests a client sends it through a proxy, and waits on conditions with deadlines (files helper programs
//! write, lines on a child's stderr, answers of the pool).
//!
//! The tests need the binaries built first:
//! `cargo build -p stockroom -p stockroom-pool` (`cargo test --workspace` does it).

mod bins;
mod generator;
mod http;
mod pool;
mod recorder;
mod relay;
mod wait;

pub use bins::{helper, pool_bin, stockroom, stockroom_bin, target_dir};
pub use generator::HangingGenerator;
pub use http::{http, http_raw};
pub use pool::{DemoPool, Pool};
pub use recorder::{Recorded, Recorder};
pub use relay::Relay;
pub use wait::{StderrLines, wait_for, wait_for_file};
