//! The crate's one error type. Messages are lowercase and say what to do,
//! because they end up in CI logs read by someone who did not write the job.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while reading a CI environment or writing
/// variables for later steps.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CiError {
    /// A shard variable holds something other than a whole number.
    #[error(
        "{name} is {value:?}, which is not a shard number; set it to a whole number such as 0 or 4, or unset it"
    )]
    ShardNotANumber { name: String, value: String },

    /// Only one half of a shard pair was given in one place.
    #[error(
        "{given} is set but {missing} is not; a shard needs both an index and a total from the same place, so set both or neither (flags: --shard-index N --shard-total M, 0-based)"
    )]
    ShardHalfGiven { given: String, missing: String },

    /// A shard total of zero.
    #[error(
        "{name} is 0, but the shard total is the number of parallel jobs and must be at least 1; fix {name} or leave sharding off"
    )]
    ShardTotalZero { name: String },

    /// A 1-based CI index variable holding 0.
    #[error(
        "{name} is 0, but this variable counts from 1; check the job's parallel settings, or pass --shard-index and --shard-total (0-based) explicitly"
    )]
    ShardIndexZeroOneBased { name: String },

    /// An index that does not fit the total.
    #[error(
        "{index_name} is {index}, which is out of range for {total_name} = {total}: it must be between {first} and {last}; fix the index or raise the total"
    )]
    ShardIndexOutOfRange {
        index_name: String,
        index: u32,
        total_name: String,
        total: u32,
        first: u64,
        last: u64,
    },

    /// A variable name that the target format cannot hold.
    #[error("cannot write variable {name:?} to {target}: {reason}")]
    InvalidVariableName {
        name: String,
        target: &'static str,
        reason: &'static str,
    },

    /// A value GitLab's dotenv report cannot carry unchanged.
    #[error(
        "cannot write {name} to the dotenv file: {reason}; read this value from the datasets JSON file ($STOCKROOM_DATASETS_FILE) instead, or use --format shell"
    )]
    DotenvValue { name: String, reason: &'static str },

    /// A value no environment variable can hold.
    #[error(
        "cannot export {name}: its value contains a NUL byte, which no environment variable can hold; read it from the datasets JSON file ($STOCKROOM_DATASETS_FILE) instead"
    )]
    NulInValue { name: String },

    /// No heredoc delimiter could be found that is absent from the value.
    #[error(
        "could not pick a heredoc delimiter for {name} that its value does not contain; read this value from the datasets JSON file ($STOCKROOM_DATASETS_FILE) instead"
    )]
    DelimiterCollision { name: String },

    /// The operating system's random source failed.
    #[error("could not read random bytes from the operating system: {detail}")]
    Random { detail: String },

    /// A GitHub Actions file command variable is not set.
    #[error(
        "{variable} is not set, so there is no file to write to; run this inside a GitHub Actions step, or use --dotenv PATH or --format shell"
    )]
    MissingGithubFile { variable: &'static str },

    /// Writing `::add-mask::` commands failed; nothing secret was written.
    #[error(
        "could not write ::add-mask:: commands ({source}), so no secret was written anywhere; check that stdout is writable"
    )]
    MaskOutput {
        #[source]
        source: io::Error,
    },

    /// A file could not be read or written.
    #[error("could not {action} {path}: {source}; check that the path exists and is writable")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl CiError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        CiError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
