//! `pool-bench`: lease-cycle throughput and acquire latency of the real
//! `stockroom-pool` binary over loopback (see docs/benchmarks.md, "Pool").
//!
//! For every stock size in `--ready`: the release pool binary is started on a
//! fresh SQLite file, seeded with that many reusable ready datasets through
//! `POST /api/v1/datasets` (large lists, see `pool.rs`), and for every
//! client count in `--clients` that many concurrent simulated CI jobs each
//! loop over one lease cycle: `POST /leases` (1 item, count 1), heartbeat,
//! release `passed` (the dataset goes back to `ready`, so stock never drains).
//! Every configuration runs `--warmup` unmeasured, then `--duration` measured.
//!
//! Checked while running: every call answers as expected (201/200/200, the
//! released dataset is `ready` again), and no dataset is held by two clients
//! at once (a shared map of held dataset ids: inserted when the lease answer
//! arrives, removed just before the release is sent). After each
//! configuration the catalog must show `n` ready and 0 leased. Any error is
//! counted and shown in the row; the exit code is 1 if there was any.
//!
//! With `--store postgres://…` the same runs against PostgreSQL: per
//! `--replicas` count a fresh database, that many pool replicas on it (client
//! `i` talks to replica `i % R`), and with `--raw-sql` the ceiling — the
//! store's lease-cycle statements sent straight through tokio-postgres on as
//! many connections as the replicas have (see `pg.rs`).
//!
//! `pool-bench per-test`: what isolated state costs per test — the agent with
//! and without a reserve, a lease straight against the pool, a PostgreSQL
//! template clone, the demo's generator chain (see `per_test.rs`).
//!
//! `pool-bench simulate`: a simulated day of CI, the static stock policy
//! against demand-following, on the pool's own policy code (see `simulate.rs`).

mod args;
mod client;
mod http;
mod per_test;
mod pg;
mod pool;
mod report;
mod runs;
mod simulate;
mod sys;

use std::process::ExitCode;

use clap::Parser;

// What `pg.rs`'s raw-SQL clients share with the HTTP clients.
pub(crate) use crate::client::{ClientResult, Holders, micros};

#[tokio::main]
async fn main() -> ExitCode {
    let args = args::Args::parse();
    let result = match &args.command {
        Some(args::BenchCommand::PerTest(per_test)) => {
            per_test::run(&args.pool_bin, per_test).await
        }
        Some(args::BenchCommand::Simulate(sim)) => simulate::run(sim),
        None => runs::run(&args).await,
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("pool-bench: the run had errors; its figures do not count");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("pool-bench: {e}");
            ExitCode::from(2)
        }
    }
}
