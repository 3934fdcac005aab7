//! `pool-bench`'s command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::http::ClientKind;
use crate::pg::RawVariant;

#[derive(Debug, Parser)]
#[command(
    name = "pool-bench",
    about = "Lease-cycle throughput and acquire latency of stockroom-pool over loopback"
)]
pub(crate) struct Args {
    /// `per-test`: the per-test isolation benchmark; without: the lease-cycle benchmark.
    #[command(subcommand)]
    pub(crate) command: Option<BenchCommand>,
    /// The pool binary to benchmark (build it with `cargo build --release -p stockroom-pool`).
    #[arg(long, default_value = "target/release/stockroom-pool")]
    pub(crate) pool_bin: PathBuf,
    /// Concurrent clients, one configuration each.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    pub(crate) clients: Vec<usize>,
    /// Ready datasets in stock; each size gets a fresh store and pool.
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    pub(crate) ready: Vec<u64>,
    /// Measured time per configuration.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) duration: Duration,
    /// Unmeasured time before each configuration's measurement.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub(crate) warmup: Duration,
    /// HTTP client: reqwest (what the sidecar uses) or a minimal raw HTTP/1.1 client.
    #[arg(long, value_enum, default_value = "reqwest")]
    pub(crate) client: ClientKind,
    /// Datasets per `POST /api/v1/datasets` request when seeding (bodies must stay under 1 MiB).
    #[arg(long, default_value_t = 2_000)]
    pub(crate) seed_batch: u64,
    /// STOCKROOM_LOG of the pool (its log goes to pool.log in the work directory).
    #[arg(long, default_value = "info")]
    pub(crate) pool_log: String,
    /// Where the temporary store directories go (default: the system temp directory).
    #[arg(long)]
    pub(crate) work_dir: Option<PathBuf>,
    /// Keep stores in DIR/ready-N/ (created if missing, never deleted) and
    /// reuse them: seeding only tops the stock up to N, so a 1 000 000 store is
    /// seeded once and later runs need a quiet machine only while they measure.
    #[arg(long, value_name = "DIR")]
    pub(crate) store_dir: Option<PathBuf>,
    /// Keep the store directories (and pool.log) instead of deleting them.
    #[arg(long)]
    pub(crate) keep: bool,
    /// Print one JSON object per configuration instead of Markdown rows.
    #[arg(long)]
    pub(crate) json: bool,
    /// PostgreSQL server instead of SQLite: `postgres://USER@HOST:PORT[/ADMIN_DB]`.
    /// Every configuration gets a fresh database `stockroom_bench_<pid>_<n>`
    /// (created through ADMIN_DB, default `postgres`; dropped afterwards
    /// unless --keep).
    #[arg(long, value_name = "URL")]
    pub(crate) store: Option<String>,
    /// PostgreSQL: pool replicas sharing the database, one configuration each;
    /// client i talks to replica i % R.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub(crate) replicas: Vec<usize>,
    /// PostgreSQL: `pool_size` of each replica's store URL (its connections).
    #[arg(long, default_value_t = 16)]
    pub(crate) pg_pool_size: usize,
    /// PostgreSQL: after each replica count, the raw-SQL ceiling on
    /// R × --pg-pool-size connections (default variant: prepared).
    #[arg(long, value_delimiter = ',', num_args = 0..=1, default_missing_value = "prepared")]
    pub(crate) raw_sql: Vec<RawVariant>,
    /// PostgreSQL: only the raw-SQL ceiling, no pool rows (needs --raw-sql).
    #[arg(long)]
    pub(crate) raw_sql_only: bool,
    /// PostgreSQL: sample pg_stat_activity of the bench database every 20 ms
    /// while measuring and print what the backends did (stderr).
    #[arg(long)]
    pub(crate) pg_activity: bool,
    /// PostgreSQL: `VACUUM ANALYZE` the bench database before each client
    /// count (clears the dead row versions earlier counts left when the
    /// server's autovacuum is off; but statistics taken while no lease
    /// exists can give the ceiling's prepared statements worse generic plans).
    #[arg(long)]
    pub(crate) pg_vacuum: bool,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum BenchCommand {
    /// What isolated state costs per test: the agent with and without a reserve, a lease
    /// straight against the pool, a PostgreSQL template clone, the demo's generator chain
    PerTest(crate::per_test::PerTestArgs),
    /// A simulated day of CI against a generator of fixed capacity: the static stock
    /// policy against demand-following, in compressed time (the pool's policy code on a
    /// simulated clock)
    Simulate(crate::simulate::SimulateArgs),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_flags_parse() {
        let a = Args::try_parse_from([
            "pool-bench",
            "--store",
            "postgres://postgres@127.0.0.1:5432",
            "--replicas",
            "1,2",
            "--raw-sql",
        ])
        .expect("parses");
        assert_eq!(a.replicas, vec![1, 2]);
        assert_eq!(a.raw_sql, vec![RawVariant::Prepared]);
        assert_eq!(a.pg_pool_size, 16);
        assert!(!a.pg_vacuum && !a.pg_activity && !a.raw_sql_only);
        let a = Args::try_parse_from([
            "pool-bench",
            "--raw-sql",
            "per-call,with-stock",
            "--pg-pool-size",
            "8",
        ])
        .expect("parses");
        assert_eq!(a.raw_sql, vec![RawVariant::PerCall, RawVariant::WithStock]);
        assert_eq!(a.pg_pool_size, 8);
        // SQLite defaults are unchanged.
        let a = Args::try_parse_from(["pool-bench"]).expect("parses");
        assert!(a.store.is_none() && a.raw_sql.is_empty());
        assert_eq!(a.replicas, vec![1]);
        assert_eq!(a.clients, vec![1, 16, 64, 256]);
    }
}
