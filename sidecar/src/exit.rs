//! How an invocation ended, and the one place that turns that into the
//! process's exit code (docs/sidecar.md, "Exit codes"; the values are the
//! documented constants of `stockroom_protocol::exit_codes`).
//!
//! Every command returns `Result<Exit, Error>`; `main` turns an `Err` into
//! [`Exit::Failed`] and calls [`Exit::finish`], which prints what the user
//! must read and returns the code. Nothing else ends the process.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitCode, ExitStatus};

use nix::sys::signal::Signal;
use stockroom_protocol::exit_codes;

use crate::errors::Error;

/// Everything that decides the exit code of one invocation.
#[derive(Debug)]
pub enum Exit {
    /// The step worked (`start`, `stop`, `check`, `status`, …).
    Success,
    /// The command line did not parse, or asked for `--help`/`--version`;
    /// clap's own text is what gets printed.
    CommandLine(clap::Error),
    /// The wrapped command exited with this code.
    CommandExited(i32),
    /// The wrapped command was killed by this signal number.
    CommandKilled(i32),
    /// The sidecar received this signal before the command started.
    Interrupted(Signal),
    /// The command after `--` does not exist.
    CommandNotFound,
    /// The command after `--` exists but cannot be executed.
    CommandNotExecutable,
    /// The pool ended the lease while the command ran and
    /// `--on-lease-lost=fail` stopped the command.
    LeaseLost,
    /// A failure of the sidecar itself.
    Failed(Error),
}

impl From<Error> for Exit {
    fn from(e: Error) -> Self {
        Exit::Failed(e)
    }
}

impl Exit {
    /// How a command that ran ended, from its wait status.
    pub fn from_status(status: ExitStatus) -> Exit {
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::CommandExited(code),
            (None, Some(signal)) => Exit::CommandKilled(signal),
            // `wait` reports only exited or killed children; anything else is a bug.
            (None, None) => Exit::Failed(Error::Internal(format!(
                "the command ended with neither an exit code nor a signal ({status:?})"
            ))),
        }
    }

    /// How a command that could not be started ends, as a shell says it.
    pub fn from_spawn_error(e: &std::io::Error) -> Exit {
        if e.kind() == std::io::ErrorKind::NotFound {
            Exit::CommandNotFound
        } else {
            Exit::CommandNotExecutable
        }
    }

    /// The exit code: the one mapping from outcomes to codes.
    pub fn code(&self) -> i32 {
        match self {
            Exit::Success => exit_codes::OK,
            Exit::CommandLine(e) if e.use_stderr() => exit_codes::USAGE,
            Exit::CommandLine(_) => exit_codes::OK,
            Exit::CommandExited(code) => *code,
            Exit::CommandKilled(signal) => exit_codes::for_signal(*signal),
            Exit::Interrupted(signal) => exit_codes::for_signal(*signal as i32),
            Exit::CommandNotFound => exit_codes::NOT_FOUND,
            Exit::CommandNotExecutable => exit_codes::NOT_EXECUTABLE,
            Exit::LeaseLost => exit_codes::LEASE_LOST,
            Exit::Failed(e) => match e {
                Error::Usage(_) => exit_codes::USAGE,
                Error::BadManifest(_) => exit_codes::BAD_MANIFEST,
                Error::PoolUnreachable { .. } => exit_codes::POOL_UNREACHABLE,
                Error::NoStock { .. } => exit_codes::NO_STOCK,
                Error::TokenRejected { .. } => exit_codes::TOKEN_REJECTED,
                Error::Config(_) => exit_codes::CONFIG,
                Error::Internal(_) => exit_codes::SOFTWARE,
            },
        }
    }

    /// Prints what this end leaves to say (a failure as one paragraph with
    /// what to do, secrets redacted; clap's usage or help) and returns the
    /// process exit code.
    pub fn finish(self) -> ExitCode {
        match &self {
            Exit::Failed(err) => {
                let text = format!("stockroom: error: {err}\n{}\n", err.advice());
                // Nothing more can be done if stderr is gone.
                let _ = std::io::stderr()
                    .lock()
                    .write_all(crate::redact::redact(&text).as_bytes());
            }
            Exit::CommandLine(e) => {
                // Printing help or a usage error can only fail if stdout/stderr is gone.
                let _ = e.print();
            }
            _ => {}
        }
        // Codes outside 0–255 cannot be reported; only a bug produces one.
        ExitCode::from(u8::try_from(self.code()).unwrap_or(exit_codes::SOFTWARE as u8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use stockroom_protocol::exit_codes::*;

    fn every_failure() -> Vec<Error> {
        vec![
            Error::Usage("x".into()),
            Error::BadManifest("m:1:1: x".into()),
            Error::PoolUnreachable {
                pool: "http://p".into(),
                attempts: 3,
                waited: "1s".into(),
                last: "refused".into(),
            },
            Error::NoStock {
                timeout: "1s".into(),
                shortfall: "buyer".into(),
            },
            Error::TokenRejected {
                pool: "http://p".into(),
                status: 401,
                detail: "no".into(),
            },
            Error::Config("c".into()),
            Error::Internal("i".into()),
        ]
    }

    #[test]
    fn each_outcome_maps_to_its_documented_code() {
        let usage = crate::cli::Cli::try_parse_from(["stockroom", "--no-such-flag"])
            .expect_err("an unknown flag is a usage error");
        let help = crate::cli::Cli::try_parse_from(["stockroom", "--help"])
            .expect_err("clap reports --help as an early exit");
        let cases = [
            (Exit::Success, OK),
            (Exit::CommandLine(usage), USAGE),
            (Exit::CommandLine(help), OK),
            (Exit::CommandExited(0), 0),
            (Exit::CommandExited(3), 3),
            (Exit::CommandKilled(15), 143),
            (Exit::CommandKilled(9), 137),
            (Exit::Interrupted(Signal::SIGINT), 130),
            (Exit::CommandNotFound, NOT_FOUND),
            (Exit::CommandNotExecutable, NOT_EXECUTABLE),
            (Exit::LeaseLost, LEASE_LOST),
        ];
        for (exit, code) in cases {
            assert_eq!(exit.code(), code, "{exit:?}");
        }
        let failures: Vec<(Exit, i32)> = every_failure()
            .into_iter()
            .zip([
                USAGE,
                BAD_MANIFEST,
                POOL_UNREACHABLE,
                NO_STOCK,
                TOKEN_REJECTED,
                CONFIG,
                SOFTWARE,
            ])
            .map(|(e, code)| (Exit::from(e), code))
            .collect();
        for (exit, code) in failures {
            assert_eq!(exit.code(), code, "{exit:?}");
        }
        assert_eq!(
            (NOT_EXECUTABLE, NOT_FOUND),
            (126, 127),
            "as a shell reports them"
        );
    }

    #[test]
    fn every_own_code_comes_from_some_outcome_and_every_outcome_code_is_listed() {
        let mut exits = vec![
            Exit::CommandNotFound,
            Exit::CommandNotExecutable,
            Exit::LeaseLost,
        ];
        exits.extend(every_failure().into_iter().map(Exit::Failed));
        let produced: Vec<i32> = exits.iter().map(Exit::code).collect();
        for (code, meaning) in OWN_CODES {
            assert!(
                produced.contains(code),
                "{code} ({meaning}) is listed but no outcome gives it"
            );
        }
        for code in produced {
            assert!(
                OWN_CODES.iter().any(|(c, _)| *c == code),
                "{code} is missing from OWN_CODES"
            );
        }
    }

    #[test]
    fn wait_statuses_and_spawn_errors_read_as_a_shell_reads_them() {
        // Raw wait statuses: exit code in the high byte, signal in the low bits.
        assert_eq!(Exit::from_status(ExitStatus::from_raw(3 << 8)).code(), 3);
        assert_eq!(Exit::from_status(ExitStatus::from_raw(0)).code(), 0);
        assert_eq!(Exit::from_status(ExitStatus::from_raw(15)).code(), 143);
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(Exit::from_spawn_error(&missing).code(), NOT_FOUND);
        assert_eq!(Exit::from_spawn_error(&denied).code(), NOT_EXECUTABLE);
    }

    #[test]
    fn every_failure_says_what_to_do() {
        for err in every_failure() {
            assert!(!err.advice().is_empty(), "{err}");
        }
    }
}
