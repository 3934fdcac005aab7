//! Azure Pipelines. Azure exposes its variables upper-cased with `.`
//! replaced by `_`: `Build.BuildId` is `BUILD_BUILDID`.

use stockroom_protocol::Outcome;

use crate::context::{JobIdentity, parse_outcome_word};
use crate::env::EnvSource;
use crate::shard::{IndexBase, ShardVariables};

/// `True` in every Azure Pipelines job.
pub const TF_BUILD: &str = "TF_BUILD";
pub const BUILD_REPOSITORY_NAME: &str = "BUILD_REPOSITORY_NAME";
/// Unique within the organization (collection).
pub const BUILD_BUILDID: &str = "BUILD_BUILDID";
/// 1 for the first attempt of the job.
pub const SYSTEM_JOBATTEMPT: &str = "SYSTEM_JOBATTEMPT";
pub const SYSTEM_JOBDISPLAYNAME: &str = "SYSTEM_JOBDISPLAYNAME";
pub const SYSTEM_JOBNAME: &str = "SYSTEM_JOBNAME";
/// A GUID per job; tells apart matrix legs and parallel copies.
pub const SYSTEM_JOBID: &str = "SYSTEM_JOBID";
/// `https://dev.azure.com/org/`, with the trailing slash.
pub const SYSTEM_COLLECTIONURI: &str = "SYSTEM_COLLECTIONURI";
pub const SYSTEM_TEAMPROJECT: &str = "SYSTEM_TEAMPROJECT";
pub const BUILD_SOURCEBRANCH: &str = "BUILD_SOURCEBRANCH";
/// `Succeeded`, `SucceededWithIssues`, `Failed` or `Canceled`.
pub const AGENT_JOBSTATUS: &str = "AGENT_JOBSTATUS";
/// 1-based; `1` when the job is not parallel.
pub const SYSTEM_JOBPOSITIONINPHASE: &str = "SYSTEM_JOBPOSITIONINPHASE";
/// `1` when the job is not parallel.
pub const SYSTEM_TOTALJOBSINPHASE: &str = "SYSTEM_TOTALJOBSINPHASE";

pub(crate) const SHARD_VARIABLES: ShardVariables = ShardVariables {
    index: SYSTEM_JOBPOSITIONINPHASE,
    total: SYSTEM_TOTALJOBSINPHASE,
    base: IndexBase::OneBased,
};

pub(crate) fn detect(env: &impl EnvSource) -> bool {
    super::is_true(env, TF_BUILD)
}

pub(crate) fn job_identity(env: &impl EnvSource) -> JobIdentity {
    let run_id = env.get(BUILD_BUILDID);
    let url = match (
        env.get(SYSTEM_COLLECTIONURI),
        env.get(SYSTEM_TEAMPROJECT),
        &run_id,
    ) {
        (Some(collection), Some(project), Some(run_id)) => Some(format!(
            "{}/{}/_build/results?buildId={run_id}",
            collection.trim_end_matches('/'),
            encode_path_segment(&project)
        )),
        _ => None,
    };
    JobIdentity {
        repository: env.get(BUILD_REPOSITORY_NAME),
        run_id,
        attempt: env.get(SYSTEM_JOBATTEMPT),
        job: super::first_of(env, &[SYSTEM_JOBDISPLAYNAME, SYSTEM_JOBNAME]),
        instance: env.get(SYSTEM_JOBID),
        url,
        git_ref: env.get(BUILD_SOURCEBRANCH),
    }
}

pub(crate) fn outcome(env: &impl EnvSource) -> Option<Outcome> {
    env.get(AGENT_JOBSTATUS)
        .and_then(|word| parse_outcome_word(&word))
}

/// Project names may hold spaces (`My Project`); a link needs them encoded.
fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
