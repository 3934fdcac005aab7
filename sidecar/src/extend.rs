//! `stockroom extend NAME EXTENSION`: advances a leased dataset by a
//! generator extension just in time, and rewrites the datasets file
//! atomically so the tests read the new data.

use std::path::PathBuf;

use stockroom_protocol::api::ProblemKind;
use stockroom_protocol::datasets_file::{DatasetsEntry, DatasetsFile};

use crate::ci::EnvSource;
use crate::cli::{Common, ExtendArgs};
use crate::client::{ClientError, PoolClient};
use crate::config;
use crate::errors::Error;
use crate::exit::Exit;
use crate::inject;
use crate::lease::{LeaseToken, TokenFile};
use crate::start_stop;

pub const LEASE_ID_VAR: &str = "STOCKROOM_LEASE_ID";
pub const DATASETS_FILE_VAR: &str = "STOCKROOM_DATASETS_FILE";

/// The lease this job holds and where to reach it.
#[derive(Debug, Clone)]
pub struct Located {
    pub lease_id: String,
    /// From the state file of `start`, or the token file of `run`.
    pub lease_token: Option<LeaseToken>,
    pub pool: String,
    pub datasets_file: Option<PathBuf>,
    pub heartbeat_pid: Option<u32>,
    /// The CA file `start` recorded, if any.
    pub ca_file: Option<PathBuf>,
}

/// Finds the lease: the state file of `start`, else `STOCKROOM_LEASE_ID`
/// (inside `run`, or after `start` exported it) with the pool from flags,
/// environment or manifest.
pub fn locate_lease(common: &Common, env: &impl EnvSource) -> Result<Option<Located>, Error> {
    let dir = start_stop::state_dir(common, env)?;
    if let Some(state) = start_stop::read_state(&dir)? {
        return Ok(Some(Located {
            lease_id: state.lease_id,
            lease_token: state.lease_token,
            pool: state.pool,
            datasets_file: Some(state.datasets_file),
            heartbeat_pid: state.heartbeat_pid,
            ca_file: state.ca_file,
        }));
    }
    let Some(lease_id) = env.get(LEASE_ID_VAR) else {
        return Ok(None);
    };
    let manifest_path = config::manifest_path(common, env);
    let manifest = if manifest_path.exists() {
        Some(config::load_manifest(common, env)?)
    } else {
        None
    };
    let pool = config::require_pool(common, env, manifest.as_ref())?;
    Ok(Some(Located {
        lease_id,
        lease_token: TokenFile::read(env)?,
        pool,
        datasets_file: env.get(DATASETS_FILE_VAR).map(PathBuf::from),
        heartbeat_pid: None,
        ca_file: None,
    }))
}

pub fn no_lease_error(common: &Common, env: &impl EnvSource) -> Error {
    let dir = config::state_dir(common, env);
    Error::Config(format!(
        "no lease found: no `stockroom start` state in {} and no {LEASE_ID_VAR}; run this inside `stockroom run`, after `stockroom start`, or pass --state-dir",
        dir.display()
    ))
}

pub async fn extend(
    common: &Common,
    args: &ExtendArgs,
    env: &impl EnvSource,
) -> Result<Exit, Error> {
    let Some(located) = locate_lease(common, env)? else {
        return Err(no_lease_error(common, env));
    };
    let Some(path) = located.datasets_file.clone() else {
        return Err(Error::Config(format!(
            "{DATASETS_FILE_VAR} is not set; `extend` needs the datasets file to find {}",
            args.name
        )));
    };
    let mut file: DatasetsFile = std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
        .map_err(|e| {
            Error::Config(format!(
                "failed to read the datasets file {}: {e}",
                path.display()
            ))
        })?;
    inject::register_secrets(&file);
    let (name, index) = split_name(&args.name);
    let known = file.datasets.keys().cloned().collect::<Vec<_>>().join(", ");
    let entry = file.datasets.get_mut(name).ok_or_else(|| {
        Error::Usage(format!(
            "no dataset named {name:?} in this lease; its names are: {known}"
        ))
    })?;
    let target = match (entry, index) {
        (DatasetsEntry::One(d), None | Some(0)) => d.as_mut(),
        (DatasetsEntry::Many(list), Some(i)) => {
            let len = list.len();
            list.get_mut(i).ok_or_else(|| {
                Error::Usage(format!(
                    "{name} has {len} dataset(s); use {name}.0 to {name}.{}",
                    len.saturating_sub(1)
                ))
            })?
        }
        (DatasetsEntry::Many(list), None) if list.len() == 1 => &mut list[0],
        (DatasetsEntry::Many(list), None) => {
            return Err(Error::Usage(format!(
                "{name} is a list of {}; name one, such as {name}.0",
                list.len()
            )));
        }
        (DatasetsEntry::One(_), Some(i)) => {
            return Err(Error::Usage(format!(
                "{name} is a single dataset; there is no {name}.{i}"
            )));
        }
    };
    let tls = config::tls(common, env, located.ca_file.as_deref());
    let client = PoolClient::new(&located.pool, config::token(common, env)?, &tls)?
        .holding(located.lease_token.clone());
    let before = format!("{}/{}", target.type_name, target.state);
    let updated = client
        .extend(&located.lease_id, &target.id, &args.extension)
        .await
        .map_err(|e| match e.kind() {
            Some(ProblemKind::UnknownState) => {
                unknown_extension(&args.name, &args.extension, &before, &e)
            }
            Some(ProblemKind::InvalidRequest | ProblemKind::NotFound) => Error::Usage(format!(
                "failed to extend {} by {:?}: {e}",
                args.name, args.extension
            )),
            _ => e.into_error(&located.pool),
        })?;
    crate::redact::register(updated.secret_values());
    *target = updated.clone();
    inject::write_datasets_file(&path, &file)?;
    tracing::info!(
        "extended {} ({}) by {}: {before} -> {}/{}; {} rewritten (variables already set in running processes keep their old values)",
        args.name,
        updated.id,
        args.extension,
        updated.type_name,
        updated.state,
        path.display()
    );
    if common.json {
        let value = serde_json::to_string(&updated.redacted()).unwrap_or_default();
        crate::redact::print_stdout(&format!("{value}\n"));
    }
    Ok(Exit::Success)
}

/// No generator offers `extension` from the dataset's state: a usage error
/// (64) that lists the extensions the pool knows from that state.
fn unknown_extension(name: &str, extension: &str, from: &str, error: &ClientError) -> Error {
    let known = match error {
        ClientError::Problem { problem, .. } => problem.known_states.clone(),
        _ => None,
    };
    let known = match known {
        Some(list) if list.is_empty() => "none".to_string(),
        Some(list) => list.join(", "),
        None => format!("(the pool did not say: {error})"),
    };
    Error::Usage(format!(
        "unknown extension {extension:?} for {name} ({from}): no generator offers it from this state. Known extensions from {from}: {known}; `stockroom catalog` lists every extension"
    ))
}

/// `orders.1` or `orders[1]` → (`orders`, Some(1)); `buyer` → (`buyer`, None).
fn split_name(name: &str) -> (&str, Option<usize>) {
    let trimmed = name.trim_end_matches(']');
    for sep in ['.', '['] {
        if let Some((base, idx)) = trimmed.rsplit_once(sep)
            && let Ok(i) = idx.parse()
        {
            return (base, Some(i));
        }
    }
    (name, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_may_carry_an_index() {
        assert_eq!(split_name("buyer"), ("buyer", None));
        assert_eq!(split_name("orders.1"), ("orders", Some(1)));
        assert_eq!(split_name("orders[2]"), ("orders", Some(2)));
    }
}
