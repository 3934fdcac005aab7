//! The sidecar's own failures, each with what to do about it.
//!
//! Every command returns `Result<Exit, Error>`; which code a failure exits
//! with is decided in one place, [`crate::exit::Exit::code`].

use stockroom_protocol::manifest::ManifestError;

/// A failure of the sidecar itself (not of the wrapped command).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Wrong command line.
    #[error("{0}")]
    Usage(String),
    /// The manifest is invalid; each line names `file:line:column`.
    #[error("the manifest is invalid:\n{0}")]
    BadManifest(String),
    /// The pool could not be reached within the retry bound.
    #[error("failed to reach the pool at {pool} after {attempts} attempt(s) in {waited}: {last}")]
    PoolUnreachable {
        pool: String,
        attempts: u32,
        waited: String,
        last: String,
    },
    /// Stock did not appear within `acquire_timeout`.
    #[error(
        "failed to lease: not enough stock within {timeout} (acquire_timeout); nothing is held. Shortfall: {shortfall}"
    )]
    NoStock { timeout: String, shortfall: String },
    /// 401/403 from the pool.
    #[error("the pool at {pool} rejected the token ({status}): {detail}")]
    TokenRejected {
        pool: String,
        status: u16,
        detail: String,
    },
    /// Any other configuration problem; the message names the setting.
    #[error("{0}")]
    Config(String),
    /// A bug or an impossible state.
    #[error("{0}")]
    Internal(String),
}

impl From<ManifestError> for Error {
    fn from(e: ManifestError) -> Self {
        match e {
            ManifestError::Read { path, source } => Error::Config(format!(
                "failed to read the manifest {}: {source}. Pass --manifest PATH or set STOCKROOM_MANIFEST, or create ./stockroom.toml",
                path.display()
            )),
            invalid @ ManifestError::Invalid(_) => Error::BadManifest(invalid.to_string()),
        }
    }
}

impl Error {
    /// What the user should do about it.
    pub fn advice(&self) -> String {
        match self {
            Error::Usage(_) => "Run `stockroom help <command>` for the usage.".into(),
            Error::BadManifest(_) => {
                "Fix the manifest at the position(s) shown; `stockroom check --manifest PATH` validates it without a pool.".into()
            }
            Error::PoolUnreachable { pool, .. } => format!(
                "Check --pool / STOCKROOM_POOL / `pool` in the manifest (now {pool}), that the pool runs (`curl {pool}/healthz`), and the network between this job and the pool; --retry-for sets how long to retry."
            ),
            Error::NoStock { .. } => "Raise min_ready for the states in the shortfall on the pool (`PUT /api/v1/stock/TYPE/STATE`), check their generators with `stockroom catalog`, or raise `acquire_timeout` in the manifest.".into(),
            Error::TokenRejected { .. } => {
                "Set STOCKROOM_TOKEN (or --token-file PATH) to a token with role `ci` that the pool lists in its [[tokens]].".into()
            }
            Error::Config(_) => "Fix the setting named above and try again.".into(),
            Error::Internal(_) => "This is a bug in stockroom: please report it with the log above.".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Exit;

    #[test]
    fn unreadable_manifest_is_configuration_and_invalid_is_bad_manifest() {
        let read = ManifestError::Read {
            path: "nope.toml".into(),
            source: std::io::ErrorKind::NotFound.into(),
        };
        assert_eq!(Exit::from(Error::from(read)).code(), 78);
        let bad = stockroom_protocol::manifest::Manifest::parse(
            std::path::Path::new("m.toml"),
            "version = 2\n",
        )
        .expect_err("version 2 is invalid");
        let err = Error::from(bad);
        assert!(err.to_string().contains("m.toml:1:"), "{err}");
        assert_eq!(Exit::from(err).code(), 65);
    }
}
