//! One module per CI system: the names of the variables it sets (as
//! constants), how to recognise it, and how to read a job's identity from it.

pub mod azure;
pub mod buildkite;
pub mod circleci;
pub mod generic;
pub mod github;
pub mod gitlab;
pub mod jenkins;

use crate::env::EnvSource;

/// Whether `key` is set to `true`, in any letter case (Azure says `True`).
fn is_true(env: &impl EnvSource, key: &str) -> bool {
    env.get(key)
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
}

/// The first of `keys` that is set.
fn first_of(env: &impl EnvSource, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|key| env.get(key))
}

/// `owner/name` when both are known, else whichever is.
fn joined(owner: Option<String>, name: Option<String>) -> Option<String> {
    match (owner, name) {
        (Some(owner), Some(name)) => Some(format!("{owner}/{name}")),
        (None, name) => name,
        (owner, None) => owner,
    }
}
