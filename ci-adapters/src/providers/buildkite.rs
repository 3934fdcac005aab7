//! Buildkite.

use crate::context::JobIdentity;
use crate::env::EnvSource;
use crate::shard::{IndexBase, ShardVariables};

/// `true` in every Buildkite job.
pub const BUILDKITE: &str = "BUILDKITE";
pub const BUILDKITE_ORGANIZATION_SLUG: &str = "BUILDKITE_ORGANIZATION_SLUG";
pub const BUILDKITE_PIPELINE_SLUG: &str = "BUILDKITE_PIPELINE_SLUG";
/// A UUID, unique per build.
pub const BUILDKITE_BUILD_ID: &str = "BUILDKITE_BUILD_ID";
/// 0 for the first try, 1 for the first retry, …
pub const BUILDKITE_RETRY_COUNT: &str = "BUILDKITE_RETRY_COUNT";
pub const BUILDKITE_STEP_KEY: &str = "BUILDKITE_STEP_KEY";
pub const BUILDKITE_LABEL: &str = "BUILDKITE_LABEL";
/// A UUID, unique per job; tells apart matrix jobs that share a step key.
pub const BUILDKITE_JOB_ID: &str = "BUILDKITE_JOB_ID";
pub const BUILDKITE_BUILD_URL: &str = "BUILDKITE_BUILD_URL";
pub const BUILDKITE_BRANCH: &str = "BUILDKITE_BRANCH";
/// 0-based; only set when the step has `parallelism`.
pub const BUILDKITE_PARALLEL_JOB: &str = "BUILDKITE_PARALLEL_JOB";
pub const BUILDKITE_PARALLEL_JOB_COUNT: &str = "BUILDKITE_PARALLEL_JOB_COUNT";

pub(crate) const SHARD_VARIABLES: ShardVariables = ShardVariables {
    index: BUILDKITE_PARALLEL_JOB,
    total: BUILDKITE_PARALLEL_JOB_COUNT,
    base: IndexBase::ZeroBased,
};

pub(crate) fn detect(env: &impl EnvSource) -> bool {
    super::is_true(env, BUILDKITE)
}

pub(crate) fn job_identity(env: &impl EnvSource) -> JobIdentity {
    JobIdentity {
        repository: super::joined(
            env.get(BUILDKITE_ORGANIZATION_SLUG),
            env.get(BUILDKITE_PIPELINE_SLUG),
        ),
        run_id: env.get(BUILDKITE_BUILD_ID),
        attempt: env
            .get(BUILDKITE_RETRY_COUNT)
            .map(|count| one_based_attempt(&count)),
        job: super::first_of(env, &[BUILDKITE_STEP_KEY, BUILDKITE_LABEL]),
        instance: env.get(BUILDKITE_JOB_ID),
        url: env.get(BUILDKITE_BUILD_URL),
        git_ref: env.get(BUILDKITE_BRANCH),
    }
}

/// Buildkite counts retries from 0; every other CI counts attempts from 1,
/// and so does the holder a person reads in the pool.
fn one_based_attempt(retry_count: &str) -> String {
    match retry_count.trim().parse::<u64>() {
        Ok(count) => count.saturating_add(1).to_string(),
        Err(_) => retry_count.to_string(),
    }
}
