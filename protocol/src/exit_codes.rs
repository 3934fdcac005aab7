//! The exit codes of Stockroom's programs, documented in one place: the
//! sidecar's at the top level (docs/sidecar.md, "Exit codes"), the pool's in
//! [`pool`] (docs/pool.md).
//!
//! The sidecar exits with the wrapped command's own code (128 + N when the
//! command died by signal N, 126/127 when it could not be started, as a shell
//! does). Its own failures use the BSD `sysexits.h` values below, so a CI log
//! tells a data problem from a test failure; [`LEASE_LOST`] has no sysexits
//! value that fits and takes the first one after them.

/// Success: the command ran and exited 0 (or, for `start`/`stop`/`check`, the step worked).
pub const OK: i32 = 0;
/// Command-line usage error: an unknown flag, a missing `--`, conflicting options,
/// an unknown dataset or extension for `extend`.
/// What to do: read `stockroom help <command>`.
pub const USAGE: i32 = 64;
/// The manifest is invalid; the message names `file:line:column`.
/// What to do: fix the manifest at that position; `stockroom check` validates it.
pub const BAD_MANIFEST: i32 = 65;
/// The pool could not be reached after retries (or `stop` could not release).
/// What to do: check `--pool`/`STOCKROOM_POOL`, that the pool runs, and the network.
pub const POOL_UNREACHABLE: i32 = 69;
/// An internal error of Stockroom itself (a bug). What to do: report it with the log.
pub const SOFTWARE: i32 = 70;
/// Stock was not available within `acquire_timeout`; nothing is held.
/// What to do: raise `min_ready` for the states in the shortfall, or `acquire_timeout`.
pub const NO_STOCK: i32 = 75;
/// The pool rejected the token (401/403).
/// What to do: set `STOCKROOM_TOKEN` (or `--token-file`) to a token with role `ci`.
pub const TOKEN_REJECTED: i32 = 77;
/// Any other configuration error (no pool, unreadable token file, unknown state, ...).
/// What to do: read the message; it names the setting.
pub const CONFIG: i32 = 78;
/// The pool ended the lease while the command ran (HTTP 410 to a heartbeat) and
/// `--on-lease-lost=fail` stopped the command: its datasets may be in another
/// job's hands, so its results cannot be trusted.
/// What to do: rerun the job; if it recurs, look for pool outages longer than `lease_ttl`.
pub const LEASE_LOST: i32 = 79;
/// The command was found but could not be executed (permissions, not a program).
/// What to do: check the command after `--` is an executable file.
pub const NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
/// What to do: check the command after `--` and `PATH`.
pub const NOT_FOUND: i32 = 127;

/// The code a shell reports for a process killed by `signal`.
pub const fn for_signal(signal: i32) -> i32 {
    128 + signal
}

/// Every code the sidecar picks itself (not the command's own), with what it
/// means, for `--help`, docs and tests.
pub const OWN_CODES: &[(i32, &str)] = &[
    (USAGE, "usage error"),
    (BAD_MANIFEST, "invalid manifest"),
    (POOL_UNREACHABLE, "pool unreachable"),
    (SOFTWARE, "internal error"),
    (NO_STOCK, "no stock within acquire_timeout"),
    (TOKEN_REJECTED, "token rejected"),
    (CONFIG, "configuration error"),
    (LEASE_LOST, "lease lost with --on-lease-lost=fail"),
    (NOT_EXECUTABLE, "command not executable"),
    (NOT_FOUND, "command not found"),
];

/// The exit codes of `stockroom-pool`. It runs until stopped, so each code
/// says why it could not start or keep serving.
pub mod pool {
    /// Serving ended on request (SIGTERM/SIGINT) after draining.
    pub const OK: i32 = 0;
    /// Bad command-line flags. What to do: read `stockroom-pool --help`.
    pub const USAGE: i32 = 64;
    /// The store was reached but migrating or reading it failed (a failed
    /// migration, a schema from a newer pool, corrupt data).
    /// What to do: inspect the database; the message names the step and the database's error.
    pub const STORE_FAILED: i32 = 65;
    /// The database cannot be reached (refused, DNS, timeout, authentication pending).
    /// What to do: retry when it is up; a supervisor may simply restart the pool.
    pub const STORE_UNAVAILABLE: i32 = 69;
    /// The pool cannot listen or serve (address in use, permission denied on the port).
    /// What to do: free the address or pick another `listen`.
    pub const IO: i32 = 74;
    /// Invalid configuration: `stockroom-pool.toml`, a flag's value, the store
    /// URL, or an unreadable `password_file`.
    /// What to do: fix the setting named in the message.
    pub const CONFIG: i32 = 78;
    /// `stockroom-pool generator-check` found at least one violation of the
    /// generator protocol. What to do: fix what its report lists under `fix:`.
    pub const CHECK_FAILED: i32 = 1;

    /// Every failure code of the pool, with what it means.
    pub const OWN_CODES: &[(i32, &str)] = &[
        (USAGE, "usage error"),
        (
            STORE_FAILED,
            "store reached but migrating or reading it failed",
        ),
        (STORE_UNAVAILABLE, "store unreachable"),
        (IO, "cannot listen or serve"),
        (CONFIG, "configuration error"),
        (CHECK_FAILED, "generator-check found violations"),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distinct(codes: &[(i32, &str)]) -> bool {
        let mut values: Vec<i32> = codes.iter().map(|(c, _)| *c).collect();
        values.sort_unstable();
        values.dedup();
        values.len() == codes.len()
    }

    #[test]
    fn the_sidecars_codes_are_distinct_and_never_collide_with_signal_codes() {
        assert!(distinct(OWN_CODES), "{OWN_CODES:?}");
        assert!(
            OWN_CODES.iter().all(|(c, _)| (64..=127).contains(c)),
            "{OWN_CODES:?}"
        );
        assert_eq!(for_signal(1), 129, "the smallest signal code is above 127");
        assert_eq!(for_signal(15), 143);
        assert_eq!(for_signal(9), 137);
    }

    #[test]
    fn the_pools_codes_are_distinct_failures() {
        assert!(distinct(pool::OWN_CODES), "{:?}", pool::OWN_CODES);
        assert!(pool::OWN_CODES.iter().all(|(c, _)| *c != pool::OK));
        assert_ne!(pool::STORE_UNAVAILABLE, pool::CONFIG);
        assert_ne!(pool::STORE_UNAVAILABLE, pool::STORE_FAILED);
    }
}
