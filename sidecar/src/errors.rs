//! The sidecar's own failures and the one place that turns them into exit codes.
//!
//! Every command returns `Result<i32, Error>`: `Ok(code)` is the code to exit
//! with (the wrapped command's own, for `run`), `Err` one of the failures
//! below. [`report`] prints the failure as one paragraph that says what to do
//! and picks the sysexits code (CONTRACT §5); nothing else ends the process.

use std::io::Write;
use std::process::ExitCode;

use stockroom_protocol::exit_codes;
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
    /// The exit code of this failure (sysexits, `stockroom_protocol::exit_codes`).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => exit_codes::USAGE,
            Error::BadManifest(_) => exit_codes::BAD_MANIFEST,
            Error::PoolUnreachable { .. } => exit_codes::POOL_UNREACHABLE,
            Error::NoStock { .. } => exit_codes::NO_STOCK,
            Error::TokenRejected { .. } => exit_codes::TOKEN_REJECTED,
            Error::Config(_) => exit_codes::CONFIG,
            Error::Internal(_) => exit_codes::SOFTWARE,
        }
    }

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

/// Prints `err` (secrets redacted) and returns its exit code.
pub fn report(err: &Error) -> ExitCode {
    let text = format!("stockroom: error: {err}\n{}\n", err.advice());
    let mut stderr = std::io::stderr().lock();
    // Nothing more can be done if stderr is gone.
    let _ = stderr.write_all(crate::redact::redact(&text).as_bytes());
    exit(err.exit_code())
}

/// The process exit code for `code` (0–255; anything else is a bug and becomes 70).
pub fn exit(code: i32) -> ExitCode {
    match u8::try_from(code) {
        Ok(c) => ExitCode::from(c),
        Err(_) => ExitCode::from(exit_codes::SOFTWARE as u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_maps_to_its_sysexits_code_and_says_what_to_do() {
        let cases = [
            (Error::Usage("x".into()), 64),
            (Error::BadManifest("m:1:1: x".into()), 65),
            (
                Error::PoolUnreachable {
                    pool: "http://p".into(),
                    attempts: 3,
                    waited: "1s".into(),
                    last: "refused".into(),
                },
                69,
            ),
            (
                Error::NoStock {
                    timeout: "1s".into(),
                    shortfall: "buyer".into(),
                },
                75,
            ),
            (
                Error::TokenRejected {
                    pool: "http://p".into(),
                    status: 401,
                    detail: "no".into(),
                },
                77,
            ),
            (Error::Config("c".into()), 78),
            (Error::Internal("i".into()), 70),
        ];
        for (err, code) in cases {
            assert_eq!(err.exit_code(), code, "{err}");
            assert!(!err.advice().is_empty());
        }
    }

    #[test]
    fn unreadable_manifest_is_configuration_and_invalid_is_bad_manifest() {
        let read = ManifestError::Read {
            path: "nope.toml".into(),
            source: std::io::ErrorKind::NotFound.into(),
        };
        assert_eq!(Error::from(read).exit_code(), 78);
        let bad = stockroom_protocol::manifest::Manifest::parse(
            std::path::Path::new("m.toml"),
            "version = 2\n",
        )
        .expect_err("version 2 is invalid");
        let err = Error::from(bad);
        assert_eq!(err.exit_code(), 65);
        assert!(err.to_string().contains("m.toml:1:"), "{err}");
    }
}
