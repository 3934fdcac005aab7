//! Any other CI, or a laptop: the job describes itself through
//! `STOCKROOM_CI_*` variables, all optional. They are read only when no known
//! CI is detected.
//!
//! The `CI_` infix keeps them apart from the dataset variables of docs/sidecar.md
//! (`STOCKROOM_<DATASET>_<FIELD>`), so a dataset named `run` cannot be
//! mistaken for the run id of a nested `stockroom` invocation.

use crate::context::JobIdentity;
use crate::env::EnvSource;

pub const STOCKROOM_CI_REPOSITORY: &str = "STOCKROOM_CI_REPOSITORY";
/// Without it, no idempotency key is made (it would collide across runs).
pub const STOCKROOM_CI_RUN_ID: &str = "STOCKROOM_CI_RUN_ID";
pub const STOCKROOM_CI_ATTEMPT: &str = "STOCKROOM_CI_ATTEMPT";
pub const STOCKROOM_CI_JOB: &str = "STOCKROOM_CI_JOB";
pub const STOCKROOM_CI_URL: &str = "STOCKROOM_CI_URL";
pub const STOCKROOM_CI_REF: &str = "STOCKROOM_CI_REF";

pub(crate) fn job_identity(env: &impl EnvSource) -> JobIdentity {
    JobIdentity {
        repository: env.get(STOCKROOM_CI_REPOSITORY),
        run_id: env.get(STOCKROOM_CI_RUN_ID),
        attempt: env.get(STOCKROOM_CI_ATTEMPT),
        job: env.get(STOCKROOM_CI_JOB),
        instance: None,
        url: env.get(STOCKROOM_CI_URL),
        git_ref: env.get(STOCKROOM_CI_REF),
    }
}
