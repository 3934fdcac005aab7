//! Which CI system the job runs on.

use std::fmt;

use crate::env::EnvSource;
use crate::providers::{azure, buildkite, circleci, github, gitlab, jenkins};
use crate::shard::ShardVariables;

/// A CI system Stockroom knows how to read. A closed set: anything else is
/// [`Provider::Generic`], configured through `STOCKROOM_CI_*` variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    GitHubActions,
    GitLabCi,
    Jenkins,
    CircleCi,
    Buildkite,
    AzurePipelines,
    Generic,
}

impl Provider {
    /// Every provider, in detection order.
    pub const ALL: [Provider; 7] = [
        Provider::GitHubActions,
        Provider::GitLabCi,
        Provider::Buildkite,
        Provider::CircleCi,
        Provider::AzurePipelines,
        Provider::Jenkins,
        Provider::Generic,
    ];

    /// Find the CI system from its marker variables.
    ///
    /// The marker of each system is checked in a fixed order; Jenkins comes
    /// last among the real systems because its markers (`JENKINS_URL`,
    /// `JENKINS_HOME`, `BUILD_ID` with `JOB_NAME`) are the weakest and may
    /// leak into agent images used by other systems.
    pub fn detect(env: &impl EnvSource) -> Provider {
        if github::detect(env) {
            Provider::GitHubActions
        } else if gitlab::detect(env) {
            Provider::GitLabCi
        } else if buildkite::detect(env) {
            Provider::Buildkite
        } else if circleci::detect(env) {
            Provider::CircleCi
        } else if azure::detect(env) {
            Provider::AzurePipelines
        } else if jenkins::detect(env) {
            Provider::Jenkins
        } else {
            Provider::Generic
        }
    }

    /// The short name used in the lease holder (`ci`) and the idempotency key.
    pub fn name(self) -> &'static str {
        match self {
            Provider::GitHubActions => "github",
            Provider::GitLabCi => "gitlab",
            Provider::Jenkins => "jenkins",
            Provider::CircleCi => "circleci",
            Provider::Buildkite => "buildkite",
            Provider::AzurePipelines => "azure",
            Provider::Generic => "generic",
        }
    }

    /// The variables through which this CI tells a job its place among
    /// parallel copies, if it has any.
    pub fn shard_variables(self) -> Option<ShardVariables> {
        match self {
            Provider::GitLabCi => Some(gitlab::SHARD_VARIABLES),
            Provider::AzurePipelines => Some(azure::SHARD_VARIABLES),
            Provider::CircleCi => Some(circleci::SHARD_VARIABLES),
            Provider::Buildkite => Some(buildkite::SHARD_VARIABLES),
            Provider::GitHubActions | Provider::Jenkins | Provider::Generic => None,
        }
    }

    /// Whether this CI's run id is unique across projects. When it is not
    /// (Jenkins build numbers count per job), the idempotency key is scoped
    /// by the repository so two projects never share a lease.
    pub fn run_id_is_global(self) -> bool {
        match self {
            Provider::Jenkins | Provider::Generic => false,
            Provider::GitHubActions
            | Provider::GitLabCi
            | Provider::CircleCi
            | Provider::Buildkite
            | Provider::AzurePipelines => true,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_env::env;

    #[test]
    fn detects_each_ci_from_its_marker() {
        let cases: &[(&[(&str, &str)], Provider)] = &[
            (&[("GITHUB_ACTIONS", "true")], Provider::GitHubActions),
            (&[("GITLAB_CI", "true")], Provider::GitLabCi),
            (
                &[("JENKINS_URL", "https://ci.example.test/")],
                Provider::Jenkins,
            ),
            (&[("JENKINS_HOME", "/var/jenkins_home")], Provider::Jenkins),
            (
                &[("BUILD_ID", "17"), ("JOB_NAME", "shop/web")],
                Provider::Jenkins,
            ),
            (&[("CIRCLECI", "true")], Provider::CircleCi),
            (&[("BUILDKITE", "true")], Provider::Buildkite),
            (&[("TF_BUILD", "True")], Provider::AzurePipelines),
            // Not markers on their own, or switched off.
            (&[("BUILD_ID", "17")], Provider::Generic),
            (&[("GITHUB_ACTIONS", "false")], Provider::Generic),
            (&[("GITLAB_CI", "")], Provider::Generic),
            (&[("CI", "true")], Provider::Generic),
            (&[], Provider::Generic),
            // A Jenkins agent image running a GitHub job is still GitHub.
            (
                &[
                    ("JENKINS_HOME", "/var/jenkins_home"),
                    ("GITHUB_ACTIONS", "true"),
                ],
                Provider::GitHubActions,
            ),
            // Azure sets BUILD_BUILDID, not BUILD_ID: never mistaken for Jenkins.
            (
                &[
                    ("TF_BUILD", "True"),
                    ("BUILD_BUILDID", "42"),
                    ("JOB_NAME", "x"),
                ],
                Provider::AzurePipelines,
            ),
        ];
        for (pairs, expected) in cases {
            assert_eq!(Provider::detect(&env(pairs)), *expected, "{pairs:?}");
        }
    }

    #[test]
    fn names_are_the_contract_names() {
        let names: Vec<&str> = Provider::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(
            names,
            [
                "github",
                "gitlab",
                "buildkite",
                "circleci",
                "azure",
                "jenkins",
                "generic"
            ]
        );
        assert_eq!(Provider::AzurePipelines.to_string(), "azure");
    }
}
