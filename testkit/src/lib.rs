//! Starting the real `stockroom-pool` binary for tests and benchmarks, in one
//! place: it listens on port 0 (`--listen 127.0.0.1:0`), says where through
//! its `--ready-file`, and its stderr goes to a log file whose tail every
//! start-up error quotes. Nothing here sleeps and hopes: waits poll a
//! condition and give up at a deadline.
//!
//! Used by `pool/tests/common`, the end-to-end harness (`tests/src/lib.rs`)
//! and `pool-bench` (`bench/src/pool.rs`). It does not depend on
//! `stockroom-pool`: it runs the binary, so nothing is compiled twice.

mod launch;
mod wait;

pub use launch::{LaunchError, PoolCommand, PoolProcess};
pub use wait::{POLL, poll_until};
