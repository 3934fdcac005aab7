//! Which of the parallel copies of a job this is.
//!
//! Sources, first match wins:
//! 1. the `--shard-index` / `--shard-total` flags;
//! 2. `STOCKROOM_SHARD_INDEX` / `STOCKROOM_SHARD_TOTAL`;
//! 3. the detected CI's own variables (GitLab `CI_NODE_INDEX`/`CI_NODE_TOTAL`,
//!    Azure `SYSTEM_JOBPOSITIONINPHASE`/`SYSTEM_TOTALJOBSINPHASE`, both 1-based;
//!    CircleCI `CIRCLE_NODE_INDEX`/`CIRCLE_NODE_TOTAL`, Buildkite
//!    `BUILDKITE_PARALLEL_JOB`/`BUILDKITE_PARALLEL_JOB_COUNT`, both 0-based);
//! 4. a single shard, `0/1`.
//!
//! Each source is a unit: it gives both index and total, or neither. An index
//! from one source is never paired with a total from another — half a pair is
//! an error naming what is missing, because mixing sources (an index flag with
//! a total the CI meant for another job) silently hands two jobs the same
//! shard. One exception, for the CI's own variables only: GitLab and Azure set
//! the total to `1` on jobs that are not parallel and leave the index out,
//! which reads as shard `0/1`.
//!
//! The sidecar should not bind the flags to the `STOCKROOM_SHARD_*` variables
//! in its argument parser (e.g. clap's `env`), so that errors name the place
//! the value really came from.

use std::fmt;

use crate::env::EnvSource;
use crate::error::CiError;
use crate::provider::Provider;

/// 0-based shard index, overriding the CI's.
pub const STOCKROOM_SHARD_INDEX: &str = "STOCKROOM_SHARD_INDEX";
/// Number of shards, overriding the CI's.
pub const STOCKROOM_SHARD_TOTAL: &str = "STOCKROOM_SHARD_TOTAL";
/// How errors name the flags.
pub const SHARD_INDEX_FLAG: &str = "--shard-index";
pub const SHARD_TOTAL_FLAG: &str = "--shard-total";

/// One of `total` parallel copies of a job; `index` is 0-based and below `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    pub index: u32,
    pub total: u32,
}

impl Shard {
    /// A job that is not split.
    pub const SINGLE: Shard = Shard { index: 0, total: 1 };
}

impl Default for Shard {
    fn default() -> Self {
        Shard::SINGLE
    }
}

impl fmt::Display for Shard {
    /// `index/total`, 0-based: `0/4` is the first of four.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.total)
    }
}

/// Whether a CI counts its index from 0 or from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexBase {
    ZeroBased,
    OneBased,
}

impl IndexBase {
    fn first(self) -> u32 {
        match self {
            IndexBase::ZeroBased => 0,
            IndexBase::OneBased => 1,
        }
    }
}

/// The pair of variables through which a CI tells a job its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardVariables {
    pub index: &'static str,
    pub total: &'static str,
    pub base: IndexBase,
}

/// Where a resolved shard came from, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSource {
    Flags,
    StockroomEnv,
    Ci {
        provider: Provider,
        variables: ShardVariables,
    },
    Default,
}

/// A shard and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedShard {
    pub shard: Shard,
    pub source: ShardSource,
}

/// The job's shard: flags, then `STOCKROOM_SHARD_*`, then the CI's variables,
/// then `0/1`. See the module docs for how pairs are treated.
pub fn resolve_shard(
    flag_index: Option<u32>,
    flag_total: Option<u32>,
    env: &impl EnvSource,
) -> Result<Shard, CiError> {
    resolve_shard_with_source(flag_index, flag_total, env).map(|resolved| resolved.shard)
}

/// [`resolve_shard`], also saying which source decided.
pub fn resolve_shard_with_source(
    flag_index: Option<u32>,
    flag_total: Option<u32>,
    env: &impl EnvSource,
) -> Result<ResolvedShard, CiError> {
    let flags = Pair {
        index_name: SHARD_INDEX_FLAG,
        total_name: SHARD_TOTAL_FLAG,
        base: IndexBase::ZeroBased,
    };
    if let Some(shard) = flags.complete(flag_index, flag_total)? {
        return Ok(ResolvedShard {
            shard,
            source: ShardSource::Flags,
        });
    }

    let stockroom = Pair {
        index_name: STOCKROOM_SHARD_INDEX,
        total_name: STOCKROOM_SHARD_TOTAL,
        base: IndexBase::ZeroBased,
    };
    let (index, total) = stockroom.read(env)?;
    if let Some(shard) = stockroom.complete(index, total)? {
        return Ok(ResolvedShard {
            shard,
            source: ShardSource::StockroomEnv,
        });
    }

    let provider = Provider::detect(env);
    if let Some(variables) = provider.shard_variables() {
        let ci = Pair {
            index_name: variables.index,
            total_name: variables.total,
            base: variables.base,
        };
        let (index, total) = ci.read(env)?;
        // A non-parallel GitLab or Azure job: total 1 and no index.
        let index = match (index, total) {
            (None, Some(1)) => Some(variables.base.first()),
            _ => index,
        };
        if let Some(shard) = ci.complete(index, total)? {
            return Ok(ResolvedShard {
                shard,
                source: ShardSource::Ci {
                    provider,
                    variables,
                },
            });
        }
    }

    Ok(ResolvedShard {
        shard: Shard::SINGLE,
        source: ShardSource::Default,
    })
}

/// One source's index and total, with the names errors use for them.
struct Pair {
    index_name: &'static str,
    total_name: &'static str,
    base: IndexBase,
}

impl Pair {
    fn read(&self, env: &impl EnvSource) -> Result<(Option<u32>, Option<u32>), CiError> {
        let index = env
            .get(self.index_name)
            .map(|value| parse_number(self.index_name, &value))
            .transpose()?;
        let total = env
            .get(self.total_name)
            .map(|value| parse_number(self.total_name, &value))
            .transpose()?;
        Ok((index, total))
    }

    /// `None` when neither is given; an error when only one is or they do
    /// not fit together.
    fn complete(&self, index: Option<u32>, total: Option<u32>) -> Result<Option<Shard>, CiError> {
        let (index, total) = match (index, total) {
            (None, None) => return Ok(None),
            (Some(index), Some(total)) => (index, total),
            (Some(_), None) => {
                return Err(CiError::ShardHalfGiven {
                    given: self.index_name.to_string(),
                    missing: self.total_name.to_string(),
                });
            }
            (None, Some(_)) => {
                return Err(CiError::ShardHalfGiven {
                    given: self.total_name.to_string(),
                    missing: self.index_name.to_string(),
                });
            }
        };
        if total == 0 {
            return Err(CiError::ShardTotalZero {
                name: self.total_name.to_string(),
            });
        }
        if self.base == IndexBase::OneBased && index == 0 {
            return Err(CiError::ShardIndexZeroOneBased {
                name: self.index_name.to_string(),
            });
        }
        let first = self.base.first();
        let zero_based = index - first;
        if zero_based >= total {
            return Err(CiError::ShardIndexOutOfRange {
                index_name: self.index_name.to_string(),
                index,
                total_name: self.total_name.to_string(),
                total,
                first: u64::from(first),
                last: u64::from(total) - 1 + u64::from(first),
            });
        }
        Ok(Some(Shard {
            index: zero_based,
            total,
        }))
    }
}

fn parse_number(name: &str, value: &str) -> Result<u32, CiError> {
    let digits = value.trim();
    let not_a_number = || CiError::ShardNotANumber {
        name: name.to_string(),
        value: value.to_string(),
    };
    // `u32::from_str` would also take `+3`.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_number());
    }
    digits.parse().map_err(|_| not_a_number())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_env::{Pairs, env};

    fn shard(index: u32, total: u32) -> Shard {
        Shard { index, total }
    }

    #[test]
    fn ci_variables_are_normalised_to_zero_based() {
        let cases: &[(&str, Pairs, Shard)] = &[
            (
                "gitlab 1-based",
                &[
                    ("GITLAB_CI", "true"),
                    ("CI_NODE_INDEX", "3"),
                    ("CI_NODE_TOTAL", "4"),
                ],
                shard(2, 4),
            ),
            (
                "gitlab last",
                &[
                    ("GITLAB_CI", "true"),
                    ("CI_NODE_INDEX", "4"),
                    ("CI_NODE_TOTAL", "4"),
                ],
                shard(3, 4),
            ),
            (
                "gitlab not parallel: total 1, no index",
                &[("GITLAB_CI", "true"), ("CI_NODE_TOTAL", "1")],
                shard(0, 1),
            ),
            (
                "azure 1-based",
                &[
                    ("TF_BUILD", "True"),
                    ("SYSTEM_JOBPOSITIONINPHASE", "1"),
                    ("SYSTEM_TOTALJOBSINPHASE", "3"),
                ],
                shard(0, 3),
            ),
            (
                "azure not parallel",
                &[
                    ("TF_BUILD", "True"),
                    ("SYSTEM_JOBPOSITIONINPHASE", "1"),
                    ("SYSTEM_TOTALJOBSINPHASE", "1"),
                ],
                shard(0, 1),
            ),
            (
                "circleci 0-based",
                &[
                    ("CIRCLECI", "true"),
                    ("CIRCLE_NODE_INDEX", "0"),
                    ("CIRCLE_NODE_TOTAL", "2"),
                ],
                shard(0, 2),
            ),
            (
                "circleci last",
                &[
                    ("CIRCLECI", "true"),
                    ("CIRCLE_NODE_INDEX", "1"),
                    ("CIRCLE_NODE_TOTAL", "2"),
                ],
                shard(1, 2),
            ),
            (
                "buildkite 0-based",
                &[
                    ("BUILDKITE", "true"),
                    ("BUILDKITE_PARALLEL_JOB", "5"),
                    ("BUILDKITE_PARALLEL_JOB_COUNT", "6"),
                ],
                shard(5, 6),
            ),
            (
                "github has none: another CI's variables are ignored",
                &[
                    ("GITHUB_ACTIONS", "true"),
                    ("CI_NODE_INDEX", "3"),
                    ("CI_NODE_TOTAL", "4"),
                ],
                shard(0, 1),
            ),
            (
                "jenkins has none",
                &[
                    ("JENKINS_URL", "https://j.test/"),
                    ("CIRCLE_NODE_INDEX", "1"),
                    ("CIRCLE_NODE_TOTAL", "2"),
                ],
                shard(0, 1),
            ),
            (
                "gitlab variables outside gitlab are ignored",
                &[("CI_NODE_INDEX", "3"), ("CI_NODE_TOTAL", "4")],
                shard(0, 1),
            ),
        ];
        for (name, pairs, expected) in cases {
            let resolved = resolve_shard_with_source(None, None, &env(pairs)).unwrap();
            assert_eq!(resolved.shard, *expected, "{name}");
        }
    }

    #[test]
    fn precedence_is_flags_then_stockroom_env_then_ci() {
        let everything = env(&[
            ("GITLAB_CI", "true"),
            ("CI_NODE_INDEX", "1"),
            ("CI_NODE_TOTAL", "2"),
            ("STOCKROOM_SHARD_INDEX", "2"),
            ("STOCKROOM_SHARD_TOTAL", "3"),
        ]);
        let from_flags = resolve_shard_with_source(Some(4), Some(5), &everything).unwrap();
        assert_eq!(from_flags.shard, shard(4, 5));
        assert_eq!(from_flags.source, ShardSource::Flags);

        let from_env = resolve_shard_with_source(None, None, &everything).unwrap();
        assert_eq!(from_env.shard, shard(2, 3));
        assert_eq!(from_env.source, ShardSource::StockroomEnv);

        let ci_only = env(&[
            ("GITLAB_CI", "true"),
            ("CI_NODE_INDEX", "1"),
            ("CI_NODE_TOTAL", "2"),
        ]);
        let from_ci = resolve_shard_with_source(None, None, &ci_only).unwrap();
        assert_eq!(from_ci.shard, shard(0, 2));
        assert!(
            matches!(
                from_ci.source,
                ShardSource::Ci {
                    provider: Provider::GitLabCi,
                    ..
                }
            ),
            "{:?}",
            from_ci.source
        );

        let nothing = resolve_shard_with_source(None, None, &env(&[])).unwrap();
        assert_eq!(
            nothing,
            ResolvedShard {
                shard: Shard::SINGLE,
                source: ShardSource::Default
            }
        );
        assert_eq!(
            resolve_shard(None, None, &env(&[])).unwrap(),
            Shard::default()
        );
    }

    #[test]
    fn flags_win_even_over_broken_lower_sources() {
        // Flags decide before the environment is read at all.
        let broken = env(&[
            ("STOCKROOM_SHARD_INDEX", "x"),
            ("STOCKROOM_SHARD_TOTAL", "0"),
        ]);
        assert_eq!(
            resolve_shard(Some(1), Some(2), &broken).unwrap(),
            shard(1, 2)
        );
    }

    #[test]
    fn every_error_names_its_source() {
        type Check = fn(&CiError) -> bool;
        /// (case, --shard-index, --shard-total, environment, variant, words the message holds)
        type Row = (
            &'static str,
            Option<u32>,
            Option<u32>,
            Pairs,
            Check,
            &'static [&'static str],
        );
        let cases: &[Row] = &[
            (
                "index flag without total flag",
                Some(1),
                None,
                &[],
                |e| matches!(e, CiError::ShardHalfGiven { .. }),
                &["--shard-index", "--shard-total"],
            ),
            (
                "total flag without index flag",
                None,
                Some(4),
                &[],
                |e| matches!(e, CiError::ShardHalfGiven { .. }),
                &["--shard-total is set", "--shard-index is not"],
            ),
            (
                "index flag with total from env is not mixed",
                Some(1),
                None,
                &[("STOCKROOM_SHARD_TOTAL", "4")],
                |e| matches!(e, CiError::ShardHalfGiven { .. }),
                &["--shard-index"],
            ),
            (
                "flag total zero",
                Some(0),
                Some(0),
                &[],
                |e| matches!(e, CiError::ShardTotalZero { .. }),
                &["--shard-total is 0"],
            ),
            (
                "flag index equal to total",
                Some(4),
                Some(4),
                &[],
                |e| matches!(e, CiError::ShardIndexOutOfRange { .. }),
                &["--shard-index is 4", "--shard-total = 4", "between 0 and 3"],
            ),
            (
                "env not a number",
                None,
                None,
                &[
                    ("STOCKROOM_SHARD_INDEX", "two"),
                    ("STOCKROOM_SHARD_TOTAL", "4"),
                ],
                |e| matches!(e, CiError::ShardNotANumber { .. }),
                &["STOCKROOM_SHARD_INDEX", "\"two\""],
            ),
            (
                "env signed number",
                None,
                None,
                &[
                    ("STOCKROOM_SHARD_INDEX", "1"),
                    ("STOCKROOM_SHARD_TOTAL", "+4"),
                ],
                |e| matches!(e, CiError::ShardNotANumber { .. }),
                &["STOCKROOM_SHARD_TOTAL"],
            ),
            (
                "env number too large",
                None,
                None,
                &[
                    ("STOCKROOM_SHARD_INDEX", "1"),
                    ("STOCKROOM_SHARD_TOTAL", "99999999999"),
                ],
                |e| matches!(e, CiError::ShardNotANumber { .. }),
                &["STOCKROOM_SHARD_TOTAL"],
            ),
            (
                "env index only",
                None,
                None,
                &[("STOCKROOM_SHARD_INDEX", "1")],
                |e| matches!(e, CiError::ShardHalfGiven { .. }),
                &[
                    "STOCKROOM_SHARD_INDEX is set",
                    "STOCKROOM_SHARD_TOTAL is not",
                ],
            ),
            (
                "env total zero",
                None,
                None,
                &[
                    ("STOCKROOM_SHARD_INDEX", "0"),
                    ("STOCKROOM_SHARD_TOTAL", "0"),
                ],
                |e| matches!(e, CiError::ShardTotalZero { .. }),
                &["STOCKROOM_SHARD_TOTAL is 0"],
            ),
            (
                "env index out of range",
                None,
                None,
                &[
                    ("STOCKROOM_SHARD_INDEX", "5"),
                    ("STOCKROOM_SHARD_TOTAL", "2"),
                ],
                |e| matches!(e, CiError::ShardIndexOutOfRange { .. }),
                &["STOCKROOM_SHARD_INDEX is 5", "between 0 and 1"],
            ),
            (
                "gitlab 1-based index 0",
                None,
                None,
                &[
                    ("GITLAB_CI", "true"),
                    ("CI_NODE_INDEX", "0"),
                    ("CI_NODE_TOTAL", "4"),
                ],
                |e| matches!(e, CiError::ShardIndexZeroOneBased { .. }),
                &["CI_NODE_INDEX is 0", "counts from 1"],
            ),
            (
                "azure 1-based index above total",
                None,
                None,
                &[
                    ("TF_BUILD", "True"),
                    ("SYSTEM_JOBPOSITIONINPHASE", "4"),
                    ("SYSTEM_TOTALJOBSINPHASE", "3"),
                ],
                |e| matches!(e, CiError::ShardIndexOutOfRange { .. }),
                &["SYSTEM_JOBPOSITIONINPHASE is 4", "between 1 and 3"],
            ),
            (
                "circleci not a number",
                None,
                None,
                &[
                    ("CIRCLECI", "true"),
                    ("CIRCLE_NODE_INDEX", "1"),
                    ("CIRCLE_NODE_TOTAL", "two"),
                ],
                |e| matches!(e, CiError::ShardNotANumber { .. }),
                &["CIRCLE_NODE_TOTAL"],
            ),
            (
                "buildkite index without count",
                None,
                None,
                &[("BUILDKITE", "true"), ("BUILDKITE_PARALLEL_JOB", "1")],
                |e| matches!(e, CiError::ShardHalfGiven { .. }),
                &[
                    "BUILDKITE_PARALLEL_JOB is set",
                    "BUILDKITE_PARALLEL_JOB_COUNT is not",
                ],
            ),
            (
                "gitlab total above 1 without index",
                None,
                None,
                &[("GITLAB_CI", "true"), ("CI_NODE_TOTAL", "3")],
                |e| matches!(e, CiError::ShardHalfGiven { .. }),
                &["CI_NODE_TOTAL is set", "CI_NODE_INDEX is not"],
            ),
            (
                "gitlab total zero",
                None,
                None,
                &[
                    ("GITLAB_CI", "true"),
                    ("CI_NODE_INDEX", "1"),
                    ("CI_NODE_TOTAL", "0"),
                ],
                |e| matches!(e, CiError::ShardTotalZero { .. }),
                &["CI_NODE_TOTAL is 0"],
            ),
        ];
        for (name, index, total, pairs, check, needles) in cases {
            let error = resolve_shard(*index, *total, &env(pairs)).unwrap_err();
            assert!(check(&error), "{name}: wrong variant {error:?}");
            let message = error.to_string();
            for needle in *needles {
                assert!(
                    message.contains(needle),
                    "{name}: {message:?} lacks {needle:?}"
                );
            }
        }
    }

    #[test]
    fn display_is_zero_based_pair() {
        assert_eq!(shard(0, 4).to_string(), "0/4");
    }
}
