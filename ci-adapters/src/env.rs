//! Where configuration comes from: a small trait so that code reads the
//! environment through a value, and tests pass a map instead of mutating the
//! process environment (which is racy across threads and banned by clippy).

use std::collections::{BTreeMap, HashMap};

/// A read-only source of environment variables.
///
/// Every implementation treats an empty value as unset: CI systems often
/// define a variable with an empty value instead of leaving it out, and an
/// empty run id or shard number is never meaningful.
pub trait EnvSource {
    /// The value of `key`, or `None` when it is unset, empty or not UTF-8.
    fn get(&self, key: &str) -> Option<String>;
}

/// The environment of the current process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var_os(key)
            .and_then(|value| value.into_string().ok())
            .filter(|value| !value.is_empty())
    }
}

impl EnvSource for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key)
            .filter(|value| !value.is_empty())
            .cloned()
    }
}

impl EnvSource for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        BTreeMap::get(self, key)
            .filter(|value| !value.is_empty())
            .cloned()
    }
}

impl<T: EnvSource + ?Sized> EnvSource for &T {
    fn get(&self, key: &str) -> Option<String> {
        (**self).get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(env: &impl EnvSource, key: &str) -> Option<String> {
        env.get(key)
    }

    #[test]
    fn maps_treat_empty_values_as_unset() {
        let pairs = [("SET", "value"), ("EMPTY", "")];
        let hash: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let tree: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();

        for (label, env) in [
            ("hash", &hash as &dyn EnvSource),
            ("tree", &tree as &dyn EnvSource),
        ] {
            assert_eq!(lookup(&env, "SET").as_deref(), Some("value"), "{label}");
            assert_eq!(lookup(&env, "EMPTY"), None, "{label}");
            assert_eq!(lookup(&env, "MISSING"), None, "{label}");
        }
    }

    #[test]
    fn references_read_through() {
        let tree: BTreeMap<String, String> = [("K".to_string(), "v".to_string())].into();
        let by_ref = &tree;
        assert_eq!(lookup(&by_ref, "K").as_deref(), Some("v"));
        assert_eq!(lookup(&&by_ref, "K").as_deref(), Some("v"));
    }

    #[test]
    fn process_env_reads_the_real_environment() {
        // Compare with std directly instead of setting anything.
        let path = std::env::var("PATH").ok().filter(|p| !p.is_empty());
        assert_eq!(ProcessEnv.get("PATH"), path);
        assert_eq!(ProcessEnv.get("STOCKROOM_CI_TEST_SURELY_UNSET_9F3A"), None);
    }
}
