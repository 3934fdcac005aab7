//! Jenkins.
//!
//! Jenkins has no shard variables (the Jenkinsfile passes `--shard-index`
//! and `--shard-total`) and no outcome in the environment (the pipeline's
//! `post` block passes `--outcome`). Build numbers count per job, so the
//! idempotency key is scoped by `JOB_NAME`.

use crate::context::JobIdentity;
use crate::env::EnvSource;

pub const JENKINS_URL: &str = "JENKINS_URL";
pub const JENKINS_HOME: &str = "JENKINS_HOME";
/// The job's full name, folders included: `shop/web/main`.
pub const JOB_NAME: &str = "JOB_NAME";
/// The last segment of `JOB_NAME`.
pub const JOB_BASE_NAME: &str = "JOB_BASE_NAME";
pub const BUILD_NUMBER: &str = "BUILD_NUMBER";
/// The same as `BUILD_NUMBER` on current Jenkins; older ones used a timestamp.
pub const BUILD_ID: &str = "BUILD_ID";
/// The enclosing `stage`; tells apart parallel stages of one build.
pub const STAGE_NAME: &str = "STAGE_NAME";
pub const BUILD_URL: &str = "BUILD_URL";
/// Multibranch pipelines.
pub const BRANCH_NAME: &str = "BRANCH_NAME";
/// The Git plugin: `origin/main`.
pub const GIT_BRANCH: &str = "GIT_BRANCH";

pub(crate) fn detect(env: &impl EnvSource) -> bool {
    env.get(JENKINS_URL).is_some()
        || env.get(JENKINS_HOME).is_some()
        || (env.get(BUILD_ID).is_some() && env.get(JOB_NAME).is_some())
}

pub(crate) fn job_identity(env: &impl EnvSource) -> JobIdentity {
    JobIdentity {
        repository: env.get(JOB_NAME),
        run_id: super::first_of(env, &[BUILD_NUMBER, BUILD_ID]),
        attempt: None,
        job: super::first_of(env, &[STAGE_NAME, JOB_BASE_NAME]),
        instance: None,
        url: env.get(BUILD_URL),
        git_ref: super::first_of(env, &[BRANCH_NAME, GIT_BRANCH]),
    }
}
