//! GitLab CI.

use stockroom_protocol::Outcome;

use crate::context::{JobIdentity, parse_outcome_word};
use crate::env::EnvSource;
use crate::shard::{IndexBase, ShardVariables};

/// `true` in every GitLab CI job.
pub const GITLAB_CI: &str = "GITLAB_CI";
/// `group/subgroup/project`.
pub const CI_PROJECT_PATH: &str = "CI_PROJECT_PATH";
/// Unique across the GitLab instance.
pub const CI_PIPELINE_ID: &str = "CI_PIPELINE_ID";
/// Unique per job, and a retried job gets a new one: used as the attempt so a
/// retry takes a fresh lease.
pub const CI_JOB_ID: &str = "CI_JOB_ID";
/// Includes the `parallel` position (`e2e 2/4`) or matrix values (`e2e: [de]`).
pub const CI_JOB_NAME: &str = "CI_JOB_NAME";
pub const CI_JOB_URL: &str = "CI_JOB_URL";
pub const CI_COMMIT_REF_NAME: &str = "CI_COMMIT_REF_NAME";
/// `success`, `failed` or `canceled`; set in `after_script`.
pub const CI_JOB_STATUS: &str = "CI_JOB_STATUS";
/// 1-based; only set when the job uses `parallel`.
pub const CI_NODE_INDEX: &str = "CI_NODE_INDEX";
/// Number of parallel copies; `1` when the job does not use `parallel`.
pub const CI_NODE_TOTAL: &str = "CI_NODE_TOTAL";

pub(crate) const SHARD_VARIABLES: ShardVariables = ShardVariables {
    index: CI_NODE_INDEX,
    total: CI_NODE_TOTAL,
    base: IndexBase::OneBased,
};

pub(crate) fn detect(env: &impl EnvSource) -> bool {
    super::is_true(env, GITLAB_CI)
}

pub(crate) fn job_identity(env: &impl EnvSource) -> JobIdentity {
    JobIdentity {
        repository: env.get(CI_PROJECT_PATH),
        run_id: env.get(CI_PIPELINE_ID),
        attempt: env.get(CI_JOB_ID),
        job: env.get(CI_JOB_NAME),
        instance: None,
        url: env.get(CI_JOB_URL),
        git_ref: env.get(CI_COMMIT_REF_NAME),
    }
}

pub(crate) fn outcome(env: &impl EnvSource) -> Option<Outcome> {
    env.get(CI_JOB_STATUS)
        .and_then(|word| parse_outcome_word(&word))
}
