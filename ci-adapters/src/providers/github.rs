//! GitHub Actions.
//!
//! GitHub has no shard variables: matrix jobs pass `--shard-index` and
//! `--shard-total` (or `STOCKROOM_SHARD_*`) themselves. The job outcome is
//! not in the environment either; the Action's post step passes `job.status`.

use crate::context::JobIdentity;
use crate::env::EnvSource;

/// `true` in every GitHub Actions step.
pub const GITHUB_ACTIONS: &str = "GITHUB_ACTIONS";
/// `owner/repo`.
pub const GITHUB_REPOSITORY: &str = "GITHUB_REPOSITORY";
/// Unique across GitHub; stays the same when a run is re-run.
pub const GITHUB_RUN_ID: &str = "GITHUB_RUN_ID";
/// 1 for the first attempt, 2 for the first re-run, …
pub const GITHUB_RUN_ATTEMPT: &str = "GITHUB_RUN_ATTEMPT";
/// The job's id in the workflow file; the same for every leg of a matrix.
pub const GITHUB_JOB: &str = "GITHUB_JOB";
/// `https://github.com`, or the GitHub Enterprise Server address.
pub const GITHUB_SERVER_URL: &str = "GITHUB_SERVER_URL";
/// `refs/heads/main`, `refs/pull/7/merge`, …
pub const GITHUB_REF: &str = "GITHUB_REF";
/// The runner's name. A runner runs one job at a time, so this tells apart
/// matrix legs (and callers of one reusable workflow) running at once,
/// which share run id, attempt and `GITHUB_JOB`.
pub const RUNNER_NAME: &str = "RUNNER_NAME";
/// File command: variables for later steps.
pub const GITHUB_ENV: &str = "GITHUB_ENV";
/// File command: step outputs.
pub const GITHUB_OUTPUT: &str = "GITHUB_OUTPUT";
/// File command: state shared between an action's main and post steps.
pub const GITHUB_STATE: &str = "GITHUB_STATE";
/// File command: Markdown shown on the run's summary page.
pub const GITHUB_STEP_SUMMARY: &str = "GITHUB_STEP_SUMMARY";

pub(crate) fn detect(env: &impl EnvSource) -> bool {
    super::is_true(env, GITHUB_ACTIONS)
}

pub(crate) fn job_identity(env: &impl EnvSource) -> JobIdentity {
    let repository = env.get(GITHUB_REPOSITORY);
    let run_id = env.get(GITHUB_RUN_ID);
    let attempt = env.get(GITHUB_RUN_ATTEMPT);
    let url = match (env.get(GITHUB_SERVER_URL), &repository, &run_id) {
        (Some(server), Some(repository), Some(run_id)) => {
            let mut url = format!(
                "{}/{repository}/actions/runs/{run_id}",
                server.trim_end_matches('/')
            );
            if let Some(attempt) = &attempt {
                url.push_str("/attempts/");
                url.push_str(attempt);
            }
            Some(url)
        }
        _ => None,
    };
    JobIdentity {
        repository,
        run_id,
        attempt,
        job: env.get(GITHUB_JOB),
        instance: env.get(RUNNER_NAME),
        url,
        git_ref: env.get(GITHUB_REF),
    }
}
