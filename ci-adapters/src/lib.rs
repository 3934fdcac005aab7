//! Reads the CI environment a `stockroom` sidecar runs in, and writes what
//! later CI steps need.
//!
//! - [`Provider::detect`] and [`CiContext::read`]: which CI (GitHub Actions,
//!   GitLab CI, Jenkins, CircleCI, Buildkite, Azure Pipelines, or generic),
//!   the job's identity for the lease holder, the outcome the CI reports, and
//!   an idempotency key per job shard.
//! - [`resolve_shard`]: the job's shard from flags, `STOCKROOM_SHARD_*` or
//!   the CI's own parallelism variables.
//! - Output channels for the variables of docs/sidecar.md: [`GithubFile`]
//!   (`$GITHUB_ENV`, `$GITHUB_OUTPUT`, masks first), [`write_dotenv`]
//!   (GitLab dotenv reports) and [`shell_exports`].
//!
//! Everything reads the environment through [`EnvSource`], so tests pass a
//! map and never touch the process environment. Every variable name is a
//! constant in [`providers`] or next to the code that reads it.

pub mod context;
pub mod dotenv;
pub mod env;
pub mod error;
pub mod github;
pub mod provider;
pub mod providers;
pub mod shard;
pub mod shell;
pub mod vars;

pub use context::{
    CiContext, JobIdentity, MAX_IDEMPOTENCY_KEY_LEN, STOCKROOM_IDEMPOTENCY_KEY, parse_outcome_word,
};
pub use dotenv::{DotenvWritten, render_dotenv, write_dotenv};
pub use env::{EnvSource, ProcessEnv};
pub use error::CiError;
pub use github::{
    GithubFile, GithubFileKind, GithubPaths, add_mask_lines, append_step_summary, github_paths,
    write_masks,
};
pub use provider::Provider;
pub use shard::{
    IndexBase, ResolvedShard, STOCKROOM_SHARD_INDEX, STOCKROOM_SHARD_TOTAL, Shard, ShardSource,
    ShardVariables, resolve_shard, resolve_shard_with_source,
};
pub use shell::{shell_exports, shell_quote};
pub use vars::ExportVar;

#[cfg(test)]
pub(crate) mod test_env {
    use std::collections::BTreeMap;

    /// A table row's environment.
    pub(crate) type Pairs = &'static [(&'static str, &'static str)];

    /// An environment holding exactly `pairs`.
    pub(crate) fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }
}
