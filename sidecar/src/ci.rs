//! The CI adapter (`stockroom-ci`) as the sidecar uses it.

pub use stockroom_ci::{
    CiContext, CiError, EnvSource, ExportVar, GithubFile, ProcessEnv, Provider, ResolvedShard,
    Shard, ShardSource, github_paths, resolve_shard_with_source, shell_exports, write_dotenv,
    write_masks,
};

use crate::cli::Common;
use crate::errors::Error;

/// The job's shard: flags, then `STOCKROOM_SHARD_*`, then the CI's own variables, then 0/1.
pub fn shard(common: &Common, env: &impl EnvSource) -> Result<Shard, Error> {
    resolved_shard(common, env).map(|resolved| resolved.shard)
}

/// [`shard`], also saying which source decided.
pub fn resolved_shard(common: &Common, env: &impl EnvSource) -> Result<ResolvedShard, Error> {
    resolve_shard_with_source(common.shard_index, common.shard_total, env).map_err(|e| {
        match (common.shard_index, common.shard_total) {
            (Some(_), _) | (_, Some(_)) => Error::Usage(e.to_string()),
            _ => Error::Config(e.to_string()),
        }
    })
}

/// A CI adapter failure while exporting: a configuration problem.
pub fn ci_error(e: CiError) -> Error {
    Error::Config(e.to_string())
}
