//! The command line (docs/sidecar.md).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use stockroom_protocol::{HumanDuration, Outcome, exit_codes};

/// The command line with the exit codes appended to the help.
pub fn command() -> clap::Command {
    Cli::command().after_help(exit_codes_help())
}

/// Parses `args` (the program name first) with [`command`]'s help.
pub fn parse(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
) -> Result<Cli, clap::Error> {
    let mut command = command();
    let mut matches = command.try_get_matches_from_mut(args)?;
    Cli::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut command))
}

/// The help's list of exit codes, from the documented constants.
fn exit_codes_help() -> String {
    let own: Vec<String> = exit_codes::OWN_CODES
        .iter()
        .map(|(code, meaning)| format!("{code} {meaning}"))
        .collect();
    format!(
        "Exit codes: the wrapped command's own (128 + N when signal N killed it); otherwise {}.",
        own.join(", ")
    )
}

/// Leases isolated test datasets from a Stockroom pool for one CI job.
///
/// The token comes only from STOCKROOM_TOKEN or --token-file.
#[derive(Debug, Parser)]
#[command(
    name = "stockroom",
    version = env!("STOCKROOM_VERSION"),
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Clone, Default, Args)]
pub struct Common {
    /// The manifest [default: $STOCKROOM_MANIFEST, else ./stockroom.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
    /// The pool's URL [default: $STOCKROOM_POOL, else `pool` in the manifest]
    #[arg(long, global = true, value_name = "URL")]
    pub pool: Option<String>,
    /// Read the pool token from this file instead of $STOCKROOM_TOKEN
    #[arg(long, global = true, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// This job's 0-based shard index [default: $STOCKROOM_SHARD_INDEX, else the CI's]
    #[arg(long, global = true, value_name = "N")]
    pub shard_index: Option<u32>,
    /// The number of shards [default: $STOCKROOM_SHARD_TOTAL, else the CI's, else 1]
    #[arg(long, global = true, value_name = "M")]
    pub shard_total: Option<u32>,
    /// Where `start` keeps its state [default: $STOCKROOM_STATE_DIR, $RUNNER_TEMP/stockroom, else ./.stockroom]
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Machine-readable output on stdout (secrets redacted)
    #[arg(long, global = true)]
    pub json: bool,
    /// PEM file of extra CA certificates to trust for an https:// pool [default: $STOCKROOM_CA_FILE]
    #[arg(long, global = true, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// How long to retry an unreachable pool at start and for the release [default: $STOCKROOM_RETRY_FOR, else 30s]
    #[arg(long, global = true, value_name = "DURATION")]
    pub retry_for: Option<HumanDuration>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Lease the datasets, run COMMAND with them, then release (passed) or quarantine (failed, cancelled)
    Run(RunArgs),
    /// Lease and keep the lease alive in the background, for a separate setup step
    Start(StartArgs),
    /// End what `start` began: stop the heartbeat, release or quarantine, summarize
    Stop(StopArgs),
    /// Advance a leased dataset by a generator extension and rewrite the datasets file
    Extend(ExtendArgs),
    /// Show the lease this job holds
    Status,
    /// Show the pool's catalog: types, states, stock
    Catalog,
    /// Validate the manifest (offline without a pool; against the live catalog with one)
    Check(CheckArgs),
    /// Serve the per-test agent on its own (for a test-runner plugin on a laptop), until SIGTERM, SIGINT or stdin EOF
    Agent(AgentArgs),
    /// Internal: keeps a `start` lease alive
    #[command(hide = true)]
    Heartbeat,
}

/// What to do when the pool says the lease is gone (expired or released) during `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnLeaseLost {
    /// Log a loud warning and let the command finish
    Warn,
    /// Stop the command (SIGTERM, then SIGKILL after --grace) and fail
    Fail,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// How long the command's process group has between SIGTERM (or a forwarded signal) and SIGKILL
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub grace: HumanDuration,
    /// What to do when the lease is lost while the command runs
    #[arg(long, value_enum, default_value_t = OnLeaseLost::Warn, value_name = "WHAT")]
    pub on_lease_lost: OnLeaseLost,
    /// The quarantine reason to record instead of the failing tests or the exit code
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// The link to record with the release instead of the CI job's page
    #[arg(long, value_name = "URL")]
    pub details_url: Option<String>,
    /// The command to run, after `--`
    #[arg(last = true, required = true, num_args = 1.., value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// How `start` prints the variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// `export NAME='value'` lines for `eval "$(stockroom start --format shell)"`
    Shell,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Also write the variables to this dotenv file (mode 0600)
    #[arg(long, value_name = "PATH")]
    pub dotenv: Option<PathBuf>,
    /// Print the variables on stdout in this format
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<ExportFormat>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// How the job ended [default: the CI's job status, else failed]
    #[arg(long, value_name = "passed|failed|cancelled")]
    pub outcome: Option<Outcome>,
    /// The quarantine reason to record instead of the failing tests
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// The link to record with the release instead of the CI job's page
    #[arg(long, value_name = "URL")]
    pub details_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExtendArgs {
    /// The manifest name of the dataset (`buyer`; `orders.1` for the second of a list)
    pub name: String,
    /// The extension to apply, as listed by `stockroom catalog` (`add-card`)
    pub extension: String,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Once listening, write {"url": ..., "token": ...} here (mode 0600, atomically); without it, print `export` lines
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Keep running when stdin reaches EOF (end only on SIGTERM or SIGINT)
    #[arg(long)]
    pub ignore_stdin: bool,
    /// The link to record with each release [default: the CI job's page]
    #[arg(long, value_name = "URL")]
    pub details_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Validate the manifest alone, without asking a pool
    #[arg(long)]
    pub offline: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn the_help_lists_every_own_exit_code() {
        let help = command().render_help().to_string();
        for (code, meaning) in exit_codes::OWN_CODES {
            assert!(help.contains(&format!("{code} {meaning}")), "{help}");
        }
        let parsed = parse(["stockroom", "run", "--", "true"]).expect("parses");
        assert!(matches!(parsed.command, Command::Run(_)));
        let usage = parse(["stockroom", "run"]).expect_err("run needs a command");
        assert!(usage.use_stderr());
    }

    #[test]
    fn run_needs_the_double_dash_and_keeps_the_command_verbatim() {
        let cli = Cli::try_parse_from([
            "stockroom",
            "run",
            "--grace",
            "2s",
            "--",
            "npm",
            "--flag",
            "-x",
        ])
        .expect("parses");
        match cli.command {
            Command::Run(args) => {
                assert_eq!(args.command, vec!["npm", "--flag", "-x"]);
                assert_eq!(args.grace.as_duration().as_secs(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["stockroom", "run"]).is_err());
        assert!(Cli::try_parse_from(["stockroom", "stop", "--outcome", "canceled"]).is_err());
        assert!(Cli::try_parse_from(["stockroom", "--token", "x", "status"]).is_err());
    }
}
