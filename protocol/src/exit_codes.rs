//! The sidecar's exit codes (CONTRACT §5), documented in one place.
//!
//! The sidecar exits with the wrapped command's own code (128 + N when the
//! command died by signal N). Its own failures use the BSD `sysexits.h`
//! values below, so a CI log tells a data problem from a test failure.

/// Success: the command ran and exited 0 (or, for `start`/`stop`/`check`, the step worked).
pub const OK: i32 = 0;
/// Command-line usage error: an unknown flag, a missing `--`, conflicting options.
/// What to do: read `stockroom help <command>`.
pub const USAGE: i32 = 64;
/// The manifest is invalid; the message names `file:line:column`.
/// What to do: fix the manifest at that position; `stockroom check` validates it.
pub const BAD_MANIFEST: i32 = 65;
/// An internal error of Stockroom itself (a bug). What to do: report it with the log.
pub const SOFTWARE: i32 = 70;
/// The pool could not be reached after retries.
/// What to do: check `--pool`/`STOCKROOM_POOL`, that the pool runs, and the network.
pub const POOL_UNREACHABLE: i32 = 69;
/// Stock was not available within `acquire_timeout`; nothing is held.
/// What to do: raise `min_ready` for the states in the shortfall, or `acquire_timeout`.
pub const NO_STOCK: i32 = 75;
/// The pool rejected the token (401/403).
/// What to do: set `STOCKROOM_TOKEN` (or `--token-file`) to a token with role `ci`.
pub const TOKEN_REJECTED: i32 = 77;
/// Any other configuration error (unknown state, unreadable token file, bad pool config, ...).
/// What to do: read the message; it names the setting.
pub const CONFIG: i32 = 78;

/// The code a shell reports for a process killed by `signal`.
pub const fn for_signal(signal: i32) -> i32 {
    128 + signal
}

/// Every code the sidecar may use for its own failures, with its name, for docs and tests.
pub const OWN_CODES: &[(i32, &str)] = &[
    (USAGE, "usage"),
    (BAD_MANIFEST, "bad manifest"),
    (POOL_UNREACHABLE, "pool unreachable"),
    (SOFTWARE, "internal error"),
    (NO_STOCK, "stock not available"),
    (TOKEN_REJECTED, "token rejected"),
    (CONFIG, "configuration error"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_codes_are_distinct_and_never_collide_with_signal_codes() {
        let mut codes: Vec<i32> = OWN_CODES.iter().map(|(c, _)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), OWN_CODES.len());
        assert!(codes.iter().all(|c| (64..=78).contains(c)));
        assert_eq!(for_signal(15), 143);
        assert_eq!(for_signal(9), 137);
    }
}
