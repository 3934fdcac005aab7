//! Who the job is: the identity shown in the lease holder, the outcome the CI
//! reports, and the idempotency key that makes a retried lease request safe.

use stockroom_protocol::Outcome;
use stockroom_protocol::api::Holder;

use crate::env::EnvSource;
use crate::provider::Provider;
use crate::providers::{azure, buildkite, circleci, generic, github, gitlab, jenkins};
use crate::shard::Shard;

/// Overrides the computed idempotency key, verbatim. It must then be unique
/// per job shard: two shards with the same key get the same lease.
pub const STOCKROOM_IDEMPOTENCY_KEY: &str = "STOCKROOM_IDEMPOTENCY_KEY";

/// Longest computed idempotency key.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;

/// Where a part of the key longer than this is shortened to a prefix and a hash.
const MAX_KEY_PART_LEN: usize = 56;
const SHORTENED_PREFIX_LEN: usize = 32;

/// The job as its CI names it. Every field is optional: a missing variable
/// is `None`, never an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobIdentity {
    pub repository: Option<String>,
    pub run_id: Option<String>,
    pub attempt: Option<String>,
    pub job: Option<String>,
    /// Tells apart jobs running at once that share run, attempt and job name
    /// (GitHub matrix legs: `RUNNER_NAME`; Buildkite: `BUILDKITE_JOB_ID`;
    /// Azure: `SYSTEM_JOBID`). Only used in the idempotency key.
    pub instance: Option<String>,
    pub url: Option<String>,
    pub git_ref: Option<String>,
}

/// What the sidecar knows about the CI job it runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiContext {
    pub provider: Provider,
    pub job: JobIdentity,
    /// How the job ended, when the CI says so in the environment (GitLab's
    /// `CI_JOB_STATUS` in `after_script`, Azure's `AGENT_JOBSTATUS`).
    pub outcome: Option<Outcome>,
    /// `STOCKROOM_IDEMPOTENCY_KEY`, when set.
    pub explicit_idempotency_key: Option<String>,
}

impl CiContext {
    /// Read the detected CI's variables. Never fails; what is missing is `None`.
    pub fn read(env: &impl EnvSource) -> CiContext {
        let provider = Provider::detect(env);
        let (job, outcome) = match provider {
            Provider::GitHubActions => (github::job_identity(env), None),
            Provider::GitLabCi => (gitlab::job_identity(env), gitlab::outcome(env)),
            Provider::Jenkins => (jenkins::job_identity(env), None),
            Provider::CircleCi => (circleci::job_identity(env), None),
            Provider::Buildkite => (buildkite::job_identity(env), None),
            Provider::AzurePipelines => (azure::job_identity(env), azure::outcome(env)),
            Provider::Generic => (generic::job_identity(env), None),
        };
        CiContext {
            provider,
            job,
            outcome,
            explicit_idempotency_key: env.get(STOCKROOM_IDEMPOTENCY_KEY),
        }
    }

    /// The lease holder for the pool (docs/pool.md), `ci` being the provider name.
    pub fn holder(&self, shard: Shard) -> Holder {
        Holder {
            ci: Some(self.provider.name().to_string()),
            repository: self.job.repository.clone(),
            run_id: self.job.run_id.clone(),
            attempt: self.job.attempt.clone(),
            job: self.job.job.clone(),
            shard_index: Some(shard.index),
            shard_total: Some(shard.total),
            url: self.job.url.clone(),
            git_ref: self.job.git_ref.clone(),
            instance: None,
            ..Holder::default()
        }
    }

    /// A key that is the same for every lease request of one job shard and
    /// different for any other, so a request retried after a lost answer
    /// returns the same lease instead of holding a second one.
    ///
    /// `STOCKROOM_IDEMPOTENCY_KEY` wins, verbatim. Otherwise the key is
    /// `provider:run:attempt:job:shard_index`, where
    /// - `run` is the run id, prefixed by `repository#` when the CI's run ids
    ///   are not unique across projects (Jenkins, generic);
    /// - `attempt` is `1` when the CI does not say;
    /// - `job` is the job name, followed by `@instance` when the CI tells
    ///   concurrent jobs of one name apart (see [`JobIdentity::instance`]).
    ///
    /// Each piece is percent-encoded (everything but `A-Za-z0-9-._/`), so
    /// `:`, `#` and `@` only ever appear as separators and keys are
    /// unambiguous. A part longer than 56 characters becomes its first 32
    /// characters, `~` and a 64-bit hash of the whole part, which keeps the key
    /// within [`MAX_IDEMPOTENCY_KEY_LEN`].
    ///
    /// `None` when the run id is unknown: a key without a run would collide
    /// across runs and hand one run's lease to another.
    pub fn idempotency_key(&self, shard: Shard) -> Option<String> {
        if let Some(key) = &self.explicit_idempotency_key {
            return Some(key.clone());
        }
        let run_id = self.job.run_id.as_deref()?;
        let run = match (&self.job.repository, self.provider.run_id_is_global()) {
            (Some(repository), false) => format!("{}#{}", escape(repository), escape(run_id)),
            _ => escape(run_id),
        };
        let attempt = escape(self.job.attempt.as_deref().unwrap_or("1"));
        let mut job = escape(self.job.job.as_deref().unwrap_or(""));
        if let Some(instance) = &self.job.instance {
            job.push('@');
            job.push_str(&escape(instance));
        }
        let parts = [
            self.provider.name().to_string(),
            run,
            attempt,
            job,
            shard.index.to_string(),
        ];
        let key = parts.map(|part| shorten(&part)).join(":");
        debug_assert!(key.len() <= MAX_IDEMPOTENCY_KEY_LEN, "{key}");
        Some(key)
    }
}

/// Map a word a CI uses for a job's end to an outcome; case and surrounding
/// whitespace do not matter.
///
/// | words | outcome |
/// |---|---|
/// | `passed`, `success` (GitHub, GitLab, Jenkins), `succeeded`, `succeededwithissues` (Azure) | passed |
/// | `failed` (GitLab, Azure), `failure` (GitHub, Jenkins), `unstable` (Jenkins: tests failed) | failed |
/// | `cancelled` (GitHub), `canceled` (GitLab, Azure), `canceling`, `cancelling`, `aborted` (Jenkins) | cancelled |
///
/// Anything else (`skipped`, `running`, …) is `None`.
pub fn parse_outcome_word(word: &str) -> Option<Outcome> {
    match word.trim().to_ascii_lowercase().as_str() {
        "passed" | "success" | "succeeded" | "succeededwithissues" => Some(Outcome::Passed),
        "failed" | "failure" | "unstable" => Some(Outcome::Failed),
        "cancelled" | "canceled" | "cancelling" | "canceling" | "aborted" => {
            Some(Outcome::Cancelled)
        }
        _ => None,
    }
}

fn escape(piece: &str) -> String {
    let mut out = String::with_capacity(piece.len());
    for byte in piece.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn shorten(part: &str) -> String {
    if part.len() <= MAX_KEY_PART_LEN {
        return part.to_string();
    }
    // Escaped parts are ASCII; never cut through a `%XX` sequence.
    let mut cut = SHORTENED_PREFIX_LEN;
    if let Some(percent) = part[cut - 2..cut].find('%') {
        cut = cut - 2 + percent;
    }
    format!("{}~{:016x}", &part[..cut], fnv1a64(part.as_bytes()))
}

/// FNV-1a: enough to tell apart long names that share a prefix; the key is
/// not a security boundary (the unguessable lease id is).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_env::{Pairs, env};

    fn identity(
        repository: &str,
        run_id: &str,
        attempt: &str,
        job: &str,
        url: &str,
        git_ref: &str,
    ) -> JobIdentity {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        JobIdentity {
            repository: some(repository),
            run_id: some(run_id),
            attempt: some(attempt),
            job: some(job),
            instance: None,
            url: some(url),
            git_ref: some(git_ref),
        }
    }

    struct Case {
        name: &'static str,
        env: &'static [(&'static str, &'static str)],
        provider: Provider,
        identity: JobIdentity,
        outcome: Option<Outcome>,
        key_for_shard_1: Option<&'static str>,
    }

    fn cases() -> Vec<Case> {
        vec![
            Case {
                name: "github",
                env: &[
                    ("GITHUB_ACTIONS", "true"),
                    ("GITHUB_REPOSITORY", "shop/web"),
                    ("GITHUB_RUN_ID", "9912345678"),
                    ("GITHUB_RUN_ATTEMPT", "2"),
                    ("GITHUB_JOB", "e2e"),
                    ("GITHUB_SERVER_URL", "https://github.com"),
                    ("GITHUB_REF", "refs/heads/main"),
                    ("RUNNER_NAME", "GitHub Actions 1000001234"),
                ],
                provider: Provider::GitHubActions,
                identity: JobIdentity {
                    instance: Some("GitHub Actions 1000001234".into()),
                    ..identity(
                        "shop/web",
                        "9912345678",
                        "2",
                        "e2e",
                        "https://github.com/shop/web/actions/runs/9912345678/attempts/2",
                        "refs/heads/main",
                    )
                },
                outcome: None,
                key_for_shard_1: Some("github:9912345678:2:e2e@GitHub%20Actions%201000001234:1"),
            },
            Case {
                name: "gitlab",
                env: &[
                    ("GITLAB_CI", "true"),
                    ("CI_PROJECT_PATH", "shop/web"),
                    ("CI_PIPELINE_ID", "8812"),
                    ("CI_JOB_ID", "440021"),
                    ("CI_JOB_NAME", "e2e 2/4"),
                    (
                        "CI_JOB_URL",
                        "https://gitlab.example.test/shop/web/-/jobs/440021",
                    ),
                    ("CI_COMMIT_REF_NAME", "main"),
                    ("CI_JOB_STATUS", "failed"),
                ],
                provider: Provider::GitLabCi,
                identity: identity(
                    "shop/web",
                    "8812",
                    "440021",
                    "e2e 2/4",
                    "https://gitlab.example.test/shop/web/-/jobs/440021",
                    "main",
                ),
                outcome: Some(Outcome::Failed),
                key_for_shard_1: Some("gitlab:8812:440021:e2e%202/4:1"),
            },
            Case {
                name: "jenkins",
                env: &[
                    ("JENKINS_URL", "https://jenkins.example.test/"),
                    ("JOB_NAME", "shop/web/main"),
                    ("JOB_BASE_NAME", "main"),
                    ("BUILD_NUMBER", "57"),
                    ("BUILD_ID", "57"),
                    ("STAGE_NAME", "e2e shard 1"),
                    (
                        "BUILD_URL",
                        "https://jenkins.example.test/job/shop/job/web/job/main/57/",
                    ),
                    ("BRANCH_NAME", "main"),
                    ("GIT_BRANCH", "origin/main"),
                ],
                provider: Provider::Jenkins,
                identity: identity(
                    "shop/web/main",
                    "57",
                    "",
                    "e2e shard 1",
                    "https://jenkins.example.test/job/shop/job/web/job/main/57/",
                    "main",
                ),
                outcome: None,
                key_for_shard_1: Some("jenkins:shop/web/main#57:1:e2e%20shard%201:1"),
            },
            Case {
                name: "circleci",
                env: &[
                    ("CIRCLECI", "true"),
                    ("CIRCLE_PROJECT_USERNAME", "shop"),
                    ("CIRCLE_PROJECT_REPONAME", "web"),
                    ("CIRCLE_WORKFLOW_ID", "6a9b1f1e-3c1d-4f6e-9d0a-2b7c8e9f0a1b"),
                    ("CIRCLE_BUILD_NUM", "3141"),
                    ("CIRCLE_JOB", "e2e"),
                    ("CIRCLE_BUILD_URL", "https://circleci.com/gh/shop/web/3141"),
                    ("CIRCLE_BRANCH", "main"),
                ],
                provider: Provider::CircleCi,
                identity: identity(
                    "shop/web",
                    "6a9b1f1e-3c1d-4f6e-9d0a-2b7c8e9f0a1b",
                    "3141",
                    "e2e",
                    "https://circleci.com/gh/shop/web/3141",
                    "main",
                ),
                outcome: None,
                key_for_shard_1: Some("circleci:6a9b1f1e-3c1d-4f6e-9d0a-2b7c8e9f0a1b:3141:e2e:1"),
            },
            Case {
                name: "buildkite",
                env: &[
                    ("BUILDKITE", "true"),
                    ("BUILDKITE_ORGANIZATION_SLUG", "shop"),
                    ("BUILDKITE_PIPELINE_SLUG", "web"),
                    ("BUILDKITE_BUILD_ID", "0190c6a2-1111-2222-3333-444455556666"),
                    ("BUILDKITE_RETRY_COUNT", "0"),
                    ("BUILDKITE_STEP_KEY", "e2e"),
                    ("BUILDKITE_LABEL", ":test_tube: e2e"),
                    ("BUILDKITE_JOB_ID", "0190c6a2-aaaa"),
                    (
                        "BUILDKITE_BUILD_URL",
                        "https://buildkite.com/shop/web/builds/77",
                    ),
                    ("BUILDKITE_BRANCH", "main"),
                ],
                provider: Provider::Buildkite,
                identity: JobIdentity {
                    instance: Some("0190c6a2-aaaa".into()),
                    ..identity(
                        "shop/web",
                        "0190c6a2-1111-2222-3333-444455556666",
                        "1",
                        "e2e",
                        "https://buildkite.com/shop/web/builds/77",
                        "main",
                    )
                },
                outcome: None,
                key_for_shard_1: Some(
                    "buildkite:0190c6a2-1111-2222-3333-444455556666:1:e2e@0190c6a2-aaaa:1",
                ),
            },
            Case {
                name: "azure",
                env: &[
                    ("TF_BUILD", "True"),
                    ("BUILD_REPOSITORY_NAME", "shop/web"),
                    ("BUILD_BUILDID", "1207"),
                    ("SYSTEM_JOBATTEMPT", "1"),
                    ("SYSTEM_JOBDISPLAYNAME", "E2E linux"),
                    ("SYSTEM_JOBNAME", "e2e"),
                    ("SYSTEM_JOBID", "12f1170f-54f2-53f3-20dd-22fc7dff55f9"),
                    ("SYSTEM_COLLECTIONURI", "https://dev.azure.com/shop/"),
                    ("SYSTEM_TEAMPROJECT", "Web Shop"),
                    ("BUILD_SOURCEBRANCH", "refs/heads/main"),
                    ("AGENT_JOBSTATUS", "SucceededWithIssues"),
                ],
                provider: Provider::AzurePipelines,
                identity: JobIdentity {
                    instance: Some("12f1170f-54f2-53f3-20dd-22fc7dff55f9".into()),
                    ..identity(
                        "shop/web",
                        "1207",
                        "1",
                        "E2E linux",
                        "https://dev.azure.com/shop/Web%20Shop/_build/results?buildId=1207",
                        "refs/heads/main",
                    )
                },
                outcome: Some(Outcome::Passed),
                key_for_shard_1: Some(
                    "azure:1207:1:E2E%20linux@12f1170f-54f2-53f3-20dd-22fc7dff55f9:1",
                ),
            },
            Case {
                name: "generic with STOCKROOM_CI_*",
                env: &[
                    ("STOCKROOM_CI_REPOSITORY", "shop/web"),
                    ("STOCKROOM_CI_RUN_ID", "r-5"),
                    ("STOCKROOM_CI_JOB", "e2e"),
                    ("STOCKROOM_CI_URL", "https://ci.example.test/r-5"),
                    ("STOCKROOM_CI_REF", "main"),
                ],
                provider: Provider::Generic,
                identity: identity(
                    "shop/web",
                    "r-5",
                    "",
                    "e2e",
                    "https://ci.example.test/r-5",
                    "main",
                ),
                outcome: None,
                key_for_shard_1: Some("generic:shop/web#r-5:1:e2e:1"),
            },
            Case {
                name: "generic with nothing",
                env: &[],
                provider: Provider::Generic,
                identity: JobIdentity::default(),
                outcome: None,
                key_for_shard_1: None,
            },
        ]
    }

    #[test]
    fn reads_identity_outcome_and_key_per_provider() {
        let shard = Shard { index: 1, total: 4 };
        for case in cases() {
            let context = CiContext::read(&env(case.env));
            assert_eq!(context.provider, case.provider, "{}", case.name);
            assert_eq!(context.job, case.identity, "{}", case.name);
            assert_eq!(context.outcome, case.outcome, "{}", case.name);
            let key = context.idempotency_key(shard);
            assert_eq!(key.as_deref(), case.key_for_shard_1, "{}", case.name);
        }
    }

    #[test]
    fn fallback_variables() {
        let cases: &[(&str, Pairs, JobIdentity)] = &[
            (
                "github without attempt links the run",
                &[
                    ("GITHUB_ACTIONS", "true"),
                    ("GITHUB_REPOSITORY", "shop/web"),
                    ("GITHUB_RUN_ID", "5"),
                    ("GITHUB_SERVER_URL", "https://ghe.example.test/"),
                ],
                identity(
                    "shop/web",
                    "5",
                    "",
                    "",
                    "https://ghe.example.test/shop/web/actions/runs/5",
                    "",
                ),
            ),
            (
                "github without server url has no link",
                &[
                    ("GITHUB_ACTIONS", "true"),
                    ("GITHUB_REPOSITORY", "shop/web"),
                    ("GITHUB_RUN_ID", "5"),
                ],
                identity("shop/web", "5", "", "", "", ""),
            ),
            (
                "jenkins: BUILD_ID, JOB_BASE_NAME, GIT_BRANCH",
                &[
                    ("JENKINS_HOME", "/var/jenkins_home"),
                    ("JOB_NAME", "web"),
                    ("JOB_BASE_NAME", "web"),
                    ("BUILD_ID", "12"),
                    ("GIT_BRANCH", "origin/dev"),
                ],
                identity("web", "12", "", "web", "", "origin/dev"),
            ),
            (
                "circleci: tag build, repository name only",
                &[
                    ("CIRCLECI", "true"),
                    ("CIRCLE_PROJECT_REPONAME", "web"),
                    ("CIRCLE_TAG", "v1.2.0"),
                ],
                identity("web", "", "", "", "", "v1.2.0"),
            ),
            (
                "buildkite: label, pipeline only, retried twice",
                &[
                    ("BUILDKITE", "true"),
                    ("BUILDKITE_PIPELINE_SLUG", "web"),
                    ("BUILDKITE_LABEL", "e2e"),
                    ("BUILDKITE_RETRY_COUNT", "2"),
                ],
                identity("web", "", "3", "e2e", "", ""),
            ),
            (
                "azure: job name, collection uri without slash",
                &[
                    ("TF_BUILD", "True"),
                    ("BUILD_BUILDID", "9"),
                    ("SYSTEM_JOBNAME", "e2e"),
                    ("SYSTEM_COLLECTIONURI", "https://dev.azure.com/shop"),
                    ("SYSTEM_TEAMPROJECT", "web"),
                ],
                identity(
                    "",
                    "9",
                    "",
                    "e2e",
                    "https://dev.azure.com/shop/web/_build/results?buildId=9",
                    "",
                ),
            ),
        ];
        for (name, pairs, expected) in cases {
            assert_eq!(&CiContext::read(&env(pairs)).job, expected, "{name}");
        }
    }

    #[test]
    fn outcome_from_ci_status_variables() {
        let cases: &[(&str, &str, &str, Option<Outcome>)] = &[
            (
                "GITLAB_CI",
                "CI_JOB_STATUS",
                "success",
                Some(Outcome::Passed),
            ),
            (
                "GITLAB_CI",
                "CI_JOB_STATUS",
                "failed",
                Some(Outcome::Failed),
            ),
            (
                "GITLAB_CI",
                "CI_JOB_STATUS",
                "canceled",
                Some(Outcome::Cancelled),
            ),
            (
                "GITLAB_CI",
                "CI_JOB_STATUS",
                "cancelled",
                Some(Outcome::Cancelled),
            ),
            ("GITLAB_CI", "CI_JOB_STATUS", "running", None),
            (
                "TF_BUILD",
                "AGENT_JOBSTATUS",
                "Succeeded",
                Some(Outcome::Passed),
            ),
            (
                "TF_BUILD",
                "AGENT_JOBSTATUS",
                "SucceededWithIssues",
                Some(Outcome::Passed),
            ),
            (
                "TF_BUILD",
                "AGENT_JOBSTATUS",
                "Failed",
                Some(Outcome::Failed),
            ),
            (
                "TF_BUILD",
                "AGENT_JOBSTATUS",
                "Canceled",
                Some(Outcome::Cancelled),
            ),
            // Only the detected CI's variable counts.
            ("GITHUB_ACTIONS", "CI_JOB_STATUS", "failed", None),
            ("GITHUB_ACTIONS", "AGENT_JOBSTATUS", "Failed", None),
        ];
        for (marker, variable, word, expected) in cases {
            let marker_value = if *marker == "TF_BUILD" {
                "True"
            } else {
                "true"
            };
            let context = CiContext::read(&env(&[(marker, marker_value), (variable, word)]));
            assert_eq!(context.outcome, *expected, "{marker} {variable}={word}");
        }
    }

    #[test]
    fn outcome_words() {
        let cases: &[(&str, Option<Outcome>)] = &[
            ("passed", Some(Outcome::Passed)),
            ("success", Some(Outcome::Passed)),
            ("SUCCESS", Some(Outcome::Passed)),
            ("Succeeded", Some(Outcome::Passed)),
            ("SucceededWithIssues", Some(Outcome::Passed)),
            ("failed", Some(Outcome::Failed)),
            ("failure", Some(Outcome::Failed)),
            ("FAILURE", Some(Outcome::Failed)),
            ("UNSTABLE", Some(Outcome::Failed)),
            ("cancelled", Some(Outcome::Cancelled)),
            ("canceled", Some(Outcome::Cancelled)),
            ("Canceled", Some(Outcome::Cancelled)),
            ("ABORTED", Some(Outcome::Cancelled)),
            (" success\n", Some(Outcome::Passed)),
            ("skipped", None),
            ("", None),
            ("pass", None),
        ];
        for (word, expected) in cases {
            assert_eq!(parse_outcome_word(word), *expected, "{word:?}");
        }
    }

    #[test]
    fn holder_carries_identity_and_shard() {
        let context = CiContext::read(&env(&[
            ("GITLAB_CI", "true"),
            ("CI_PROJECT_PATH", "shop/web"),
            ("CI_PIPELINE_ID", "8812"),
            ("CI_JOB_ID", "440021"),
            ("CI_JOB_NAME", "e2e"),
            ("CI_JOB_URL", "https://gitlab.example.test/j/440021"),
            ("CI_COMMIT_REF_NAME", "main"),
        ]));
        let holder = context.holder(Shard { index: 2, total: 4 });
        assert_eq!(
            holder,
            Holder {
                ci: Some("gitlab".into()),
                repository: Some("shop/web".into()),
                run_id: Some("8812".into()),
                attempt: Some("440021".into()),
                job: Some("e2e".into()),
                shard_index: Some(2),
                shard_total: Some(4),
                url: Some("https://gitlab.example.test/j/440021".into()),
                git_ref: Some("main".into()),
                instance: None,
                ..Holder::default()
            }
        );
        let generic = CiContext::read(&env(&[])).holder(Shard::SINGLE);
        assert_eq!(generic.ci.as_deref(), Some("generic"));
        assert_eq!(generic.run_id, None);
    }

    fn context_with(provider: Provider, job: JobIdentity) -> CiContext {
        CiContext {
            provider,
            job,
            outcome: None,
            explicit_idempotency_key: None,
        }
    }

    #[test]
    fn key_defaults_attempt_and_separates_shards() {
        let context = context_with(
            Provider::GitHubActions,
            JobIdentity {
                run_id: Some("77".into()),
                job: Some("e2e".into()),
                ..JobIdentity::default()
            },
        );
        assert_eq!(
            context
                .idempotency_key(Shard { index: 0, total: 2 })
                .as_deref(),
            Some("github:77:1:e2e:0")
        );
        assert_eq!(
            context
                .idempotency_key(Shard { index: 1, total: 2 })
                .as_deref(),
            Some("github:77:1:e2e:1")
        );
    }

    #[test]
    fn key_parts_are_escaped_so_keys_are_unambiguous() {
        // Joined naively with ':', both would read `x:a:b:c:d:0`.
        let first = context_with(
            Provider::Generic,
            JobIdentity {
                run_id: Some("a:b".into()),
                attempt: Some("c".into()),
                job: Some("d".into()),
                ..JobIdentity::default()
            },
        );
        let second = context_with(
            Provider::Generic,
            JobIdentity {
                run_id: Some("a".into()),
                attempt: Some("b:c".into()),
                job: Some("d".into()),
                ..JobIdentity::default()
            },
        );
        let shard = Shard::SINGLE;
        let (a, b) = (
            first.idempotency_key(shard).unwrap(),
            second.idempotency_key(shard).unwrap(),
        );
        assert_ne!(a, b);
        assert_eq!(a, "generic:a%3Ab:c:d:0");
        for key in [&a, &b] {
            assert_eq!(key.matches(':').count(), 4, "{key}");
        }
        // `@` and `#` in names cannot fake an instance or a scope either.
        let faked = context_with(
            Provider::Generic,
            JobIdentity {
                run_id: Some("r".into()),
                job: Some("e2e@runner".into()),
                ..JobIdentity::default()
            },
        );
        assert_eq!(
            faked.idempotency_key(shard).as_deref(),
            Some("generic:r:1:e2e%40runner:0")
        );
    }

    #[test]
    fn concurrent_jobs_sharing_run_and_job_name_get_distinct_keys() {
        // GitHub matrix legs: same run, attempt and GITHUB_JOB, different runners.
        let leg = |runner: &str| {
            CiContext::read(&env(&[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_RUN_ID", "100"),
                ("GITHUB_RUN_ATTEMPT", "1"),
                ("GITHUB_JOB", "e2e"),
                ("RUNNER_NAME", runner),
            ]))
            .idempotency_key(Shard::SINGLE)
        };
        assert_ne!(leg("GitHub Actions 1"), leg("GitHub Actions 2"));
        // Jenkins build numbers count per job: two jobs' build 57 differ.
        let build = |job_name: &str| {
            CiContext::read(&env(&[
                ("JENKINS_URL", "https://jenkins.example.test/"),
                ("JOB_NAME", job_name),
                ("BUILD_NUMBER", "57"),
                ("STAGE_NAME", "e2e"),
            ]))
            .idempotency_key(Shard::SINGLE)
        };
        assert_ne!(build("shop/web"), build("shop/api"));
    }

    #[test]
    fn long_parts_are_shortened_but_stay_distinct() {
        let long_job = |suffix: &str| {
            context_with(
                Provider::GitLabCi,
                JobIdentity {
                    run_id: Some("1".repeat(150)),
                    attempt: Some("9".repeat(150)),
                    job: Some(format!(
                        "{}{suffix}",
                        "é: very long matrix job name ".repeat(20)
                    )),
                    ..JobIdentity::default()
                },
            )
            .idempotency_key(Shard {
                index: 4_000_000_000,
                total: 4_000_000_001,
            })
            .unwrap()
        };
        let (a, b) = (long_job("A"), long_job("B"));
        assert_ne!(a, b);
        for key in [&a, &b] {
            assert!(
                key.len() <= MAX_IDEMPOTENCY_KEY_LEN,
                "{} chars: {key}",
                key.len()
            );
            assert!(key.starts_with("gitlab:"), "{key}");
            assert!(key.ends_with(":4000000000"), "{key}");
            assert_eq!(key.matches(':').count(), 4, "{key}");
        }
        // Deterministic: the same job always gets the same key.
        assert_eq!(a, long_job("A"));
    }

    #[test]
    fn shortening_never_splits_an_escape() {
        // `%C3%A9` sequences straddle every possible cut position.
        for pad in 0..6 {
            let piece = format!("{}{}", "x".repeat(pad), "é".repeat(40));
            let short = shorten(&escape(&piece));
            let prefix = short.split('~').next().unwrap();
            let bytes = prefix.as_bytes();
            for (i, byte) in bytes.iter().enumerate() {
                if *byte == b'%' {
                    assert!(i + 2 < bytes.len(), "cut inside an escape: {short}");
                }
            }
        }
    }

    #[test]
    fn explicit_key_wins_verbatim() {
        let context = CiContext::read(&env(&[
            ("GITLAB_CI", "true"),
            ("CI_PIPELINE_ID", "8812"),
            ("STOCKROOM_IDEMPOTENCY_KEY", "my-own:key"),
        ]));
        assert_eq!(
            context.idempotency_key(Shard::SINGLE).as_deref(),
            Some("my-own:key")
        );
        // Even without a run id.
        let bare = CiContext::read(&env(&[("STOCKROOM_IDEMPOTENCY_KEY", "k1")]));
        assert_eq!(bare.idempotency_key(Shard::SINGLE).as_deref(), Some("k1"));
    }
}
