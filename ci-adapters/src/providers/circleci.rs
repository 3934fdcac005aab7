//! CircleCI.

use crate::context::JobIdentity;
use crate::env::EnvSource;
use crate::shard::{IndexBase, ShardVariables};

/// `true` in every CircleCI job.
pub const CIRCLECI: &str = "CIRCLECI";
pub const CIRCLE_PROJECT_USERNAME: &str = "CIRCLE_PROJECT_USERNAME";
pub const CIRCLE_PROJECT_REPONAME: &str = "CIRCLE_PROJECT_REPONAME";
/// A UUID; a workflow re-run gets a new one.
pub const CIRCLE_WORKFLOW_ID: &str = "CIRCLE_WORKFLOW_ID";
/// Unique per job run; shared by the parallel containers of one job.
pub const CIRCLE_BUILD_NUM: &str = "CIRCLE_BUILD_NUM";
pub const CIRCLE_JOB: &str = "CIRCLE_JOB";
pub const CIRCLE_BUILD_URL: &str = "CIRCLE_BUILD_URL";
pub const CIRCLE_BRANCH: &str = "CIRCLE_BRANCH";
pub const CIRCLE_TAG: &str = "CIRCLE_TAG";
/// 0-based.
pub const CIRCLE_NODE_INDEX: &str = "CIRCLE_NODE_INDEX";
pub const CIRCLE_NODE_TOTAL: &str = "CIRCLE_NODE_TOTAL";

pub(crate) const SHARD_VARIABLES: ShardVariables = ShardVariables {
    index: CIRCLE_NODE_INDEX,
    total: CIRCLE_NODE_TOTAL,
    base: IndexBase::ZeroBased,
};

pub(crate) fn detect(env: &impl EnvSource) -> bool {
    super::is_true(env, CIRCLECI)
}

pub(crate) fn job_identity(env: &impl EnvSource) -> JobIdentity {
    JobIdentity {
        repository: super::joined(
            env.get(CIRCLE_PROJECT_USERNAME),
            env.get(CIRCLE_PROJECT_REPONAME),
        ),
        run_id: env.get(CIRCLE_WORKFLOW_ID),
        attempt: env.get(CIRCLE_BUILD_NUM),
        job: env.get(CIRCLE_JOB),
        instance: None,
        url: env.get(CIRCLE_BUILD_URL),
        git_ref: super::first_of(env, &[CIRCLE_BRANCH, CIRCLE_TAG]),
    }
}
