//! The pool's rules that do not need the database: status transitions of a
//! release, history reasons, the heartbeat interval. Both backends reach
//! these only through [`super::ops`].

use sha2::{Digest, Sha256};
use stockroom_protocol::api::{Holder, LeaseItem};
use stockroom_protocol::generator::LifecycleCall;
use stockroom_protocol::{DatasetStatus, OnFailure, Outcome};

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the store keeps of a lease token: its hex SHA-256, never the token.
pub fn lease_token_hash(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// Whether `token` is the one whose hash is `stored_hash`, comparing in
/// time independent of where they differ.
pub fn lease_token_matches(stored_hash: &str, token: &str) -> bool {
    let given = lease_token_hash(token);
    let (a, b) = (given.as_bytes(), stored_hash.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who may act on a lease, checked against its stored token hash inside the
/// operation's own transaction (docs/pool.md, "Lease tokens"), so a check
/// costs no round trip of its own and cannot go stale before the write.
#[derive(Clone, PartialEq, Eq)]
pub enum HolderProof {
    /// The caller is trusted for this act (the page's session that took the
    /// lease, an admin releasing it, or a check already made).
    Anyone,
    /// The `Stockroom-Lease-Token` the caller sent.
    Token(String),
    /// The caller sent nothing that could prove it holds the lease.
    Refused,
}

impl HolderProof {
    /// Whether this proof admits a lease whose token hash is `stored_hash`
    /// (`None` for a lease older than tokens: only `Anyone` may act on it).
    pub fn admits(&self, stored_hash: Option<&str>) -> bool {
        match self {
            Self::Anyone => true,
            Self::Token(token) => stored_hash.is_some_and(|h| lease_token_matches(h, token)),
            Self::Refused => false,
        }
    }
}

/// Never shows the token (it is a secret of the lease's holder).
impl std::fmt::Debug for HolderProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anyone => f.write_str("Anyone"),
            Self::Token(_) => f.write_str("Token(***)"),
            Self::Refused => f.write_str("Refused"),
        }
    }
}

/// What an idempotency key is bound to: the hex SHA-256 of the request's
/// holder (its `url` aside, its `instance` included), items and TTL. The same
/// key with another fingerprint is a conflict (docs/pool.md, "Idempotency").
pub fn request_fingerprint(
    holder: &Holder,
    items: &[LeaseItem],
    ttl_seconds: Option<u64>,
) -> String {
    let holder = Holder {
        url: None,
        ..holder.clone()
    };
    let bound = serde_json::json!({"holder": holder, "items": items, "ttl_seconds": ttl_seconds});
    sha256_hex(bound.to_string().as_bytes())
}

/// How often a holder should heartbeat a lease of `ttl_ms`: three beats per
/// TTL, at least one second apart.
pub fn heartbeat_interval_seconds(ttl_ms: i64) -> u64 {
    (ttl_ms / 3000).max(1) as u64
}

/// Where a leased dataset goes when its lease is released: `passed` (or an
/// item with `on_failure = release`) → `consumed`, or `ready` again when the
/// dataset is reusable; any other outcome → `quarantined`.
///
/// `unused` (no test code saw the dataset) → `ready`, whatever the state.
pub fn released_status(outcome: Outcome, on_failure: OnFailure, reusable: bool) -> DatasetStatus {
    if outcome == Outcome::Unused {
        return DatasetStatus::Ready;
    }
    let keep = outcome == Outcome::Passed || on_failure == OnFailure::Release;
    match (keep, reusable) {
        (true, true) => DatasetStatus::Ready,
        (true, false) => DatasetStatus::Consumed,
        (false, _) => DatasetStatus::Quarantined,
    }
}

/// The lifecycle calls stored with a dataset (`cleanup,reset,verify`).
pub fn parse_lifecycle(text: &str) -> Vec<LifecycleCall> {
    text.split(',').filter_map(|w| w.parse().ok()).collect()
}

/// The stored form of [`parse_lifecycle`].
pub fn lifecycle_text(calls: &[LifecycleCall]) -> String {
    calls
        .iter()
        .map(|c| c.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// What a dataset that settles in `to` owes its generator
/// (docs/generators.md, "Lifecycle calls"), and the status it takes meanwhile:
/// - `consumed` or `discarded` with `cleanup` → `cleanup` (status unchanged);
/// - `ready` again (a reusable state after a passed lease, or a recycle) with
///   `reset` → `generating` until the reset answers (then `ready`, or
///   `quarantined` when it fails), so it is never leased unreset.
pub fn lifecycle_after(
    to: DatasetStatus,
    lifecycle: &[LifecycleCall],
) -> (DatasetStatus, Option<LifecycleCall>) {
    match to {
        DatasetStatus::Consumed | DatasetStatus::Discarded
            if lifecycle.contains(&LifecycleCall::Cleanup) =>
        {
            (to, Some(LifecycleCall::Cleanup))
        }
        DatasetStatus::Ready if lifecycle.contains(&LifecycleCall::Reset) => {
            (DatasetStatus::Generating, Some(LifecycleCall::Reset))
        }
        _ => (to, None),
    }
}

/// How many times a failed cleanup is tried again before it is given up
/// (with a history line saying so).
pub const CLEANUP_ATTEMPTS: i64 = 8;
/// How many times a verify that failed (no verdict) is tried before the
/// dataset is quarantined: its state is unknown.
pub const VERIFY_ATTEMPTS: i64 = 3;

/// When a failed lifecycle call is tried again after `attempts` failures
/// (1 s after the first, doubling, at most 5 min); `None`: not again. A failed reset is
/// never retried: the dataset is quarantined for a person.
pub fn lifecycle_retry_at(call: LifecycleCall, attempts: i64, now_ms: i64) -> Option<i64> {
    let limit = match call {
        LifecycleCall::Cleanup => CLEANUP_ATTEMPTS,
        LifecycleCall::Verify => VERIFY_ATTEMPTS,
        LifecycleCall::Reset => return None,
    };
    if attempts >= limit {
        return None;
    }
    let wait = 1000i64
        .saturating_mul(1 << (attempts - 1).clamp(0, 20))
        .min(300_000);
    Some(now_ms.saturating_add(wait))
}

/// Statuses a dataset may be discarded from.
pub const DISCARDABLE: &[DatasetStatus] = &[
    DatasetStatus::Quarantined,
    DatasetStatus::Ready,
    DatasetStatus::Failed,
];
/// Statuses a dataset may be recycled (made ready again) from.
pub const RECYCLABLE: &[DatasetStatus] = &[DatasetStatus::Quarantined];

/// History reasons and lease texts, each written once.
pub mod reasons {
    use stockroom_protocol::Outcome;
    use stockroom_protocol::generator::LifecycleCall;

    pub const LEASED: &str = "leased";
    pub const LEASE_EXPIRED: &str = "lease expired without heartbeat";
    /// The `reason` of an expired lease row.
    pub const LEASE_ROW_EXPIRED: &str = "expired without heartbeat";
    pub const REGISTERED: &str = "registered by hand";
    /// Discard and recycle are admin actions; `holder` names who (on a
    /// pool without tokens, `anonymous`).
    pub const DISCARDED: &str = "discarded by hand";
    pub const RECYCLED: &str = "recycled by hand";
    pub const DATA_ERASED: &str = "data erased after consumed_retention";
    /// Who did what the pool did by itself.
    pub const POOL: &str = "pool";

    pub fn released(outcome: Outcome, reason: Option<&str>) -> String {
        match reason {
            Some(r) => format!("lease released: {outcome} ({r})"),
            None => format!("lease released: {outcome}"),
        }
    }

    /// A dataset settled with its own outcome: at its lease's release
    /// (`early` false) or before it (`POST …/datasets/{id}/release`).
    pub fn dataset_released(
        outcome: Outcome,
        reason: Option<&str>,
        test: Option<&str>,
        early: bool,
    ) -> String {
        let mut text = if early {
            format!("released early: {outcome}")
        } else {
            format!("lease released: {outcome}")
        };
        if let Some(test) = test {
            text.push_str(&format!(", test {test}"));
        }
        if let Some(r) = reason {
            text.push_str(&format!(" ({r})"));
        }
        text
    }

    pub fn generation_started(generator: &str, request: &serde_json::Value) -> String {
        format!("generation started via generator {generator:?}; request: {request}")
    }

    pub fn taken_as_input(input: &str, parent: &str) -> String {
        format!("taken from stock as input {input:?} of {parent}")
    }

    pub fn part_taken(input: &str, id: &str, type_name: &str, state: &str) -> String {
        format!("part {input:?}: {id} ({type_name}/{state}) taken from stock")
    }

    pub fn made_as_part(reason: &str, parent: &str) -> String {
        format!("{reason}; made as a part of {parent}")
    }

    pub fn part_made(id: &str, type_name: &str, state: &str) -> String {
        format!("part: {id} ({type_name}/{state}) made for it")
    }

    pub fn generation_failed(error: &str) -> String {
        format!("generation failed: {error}")
    }

    pub fn parent_failed(parent: &str) -> String {
        format!("the generation it was a part of ({parent}) failed")
    }

    pub fn input_of_failed(parent: &str) -> String {
        format!("input of failed generation {parent}; the generator may have changed it")
    }

    pub fn extended(reason: &str, type_name: &str, from: &str, to: &str) -> String {
        format!("{reason}: {type_name}/{from} → {type_name}/{to}")
    }

    /// The status a settling dataset took, said with what it owes.
    pub fn with_lifecycle(reason: &str, owed: Option<LifecycleCall>) -> String {
        match owed {
            Some(LifecycleCall::Reset) => format!("{reason}; reset before it is leased again"),
            Some(LifecycleCall::Cleanup) => format!("{reason}; cleanup requested"),
            Some(LifecycleCall::Verify) => format!("{reason}; verify requested"),
            None => reason.to_string(),
        }
    }

    pub fn cleaned_up(by: &str) -> String {
        format!("cleanup: removed from the system under test by generator {by:?}")
    }

    pub fn cleanup_failed(by: &str, attempt: i64, error: &str, retry: bool) -> String {
        let next = if retry { "retried later" } else { "given up" };
        format!("cleanup attempt {attempt} via generator {by:?} failed ({next}): {error}")
    }

    pub fn reset_done(by: &str) -> String {
        format!("reset by generator {by:?}: back at its state's start")
    }

    pub fn reset_failed(by: &str, error: &str) -> String {
        format!("reset via generator {by:?} failed: {error}")
    }

    pub fn verify_started(why: &str) -> String {
        format!("verify started: {why}")
    }

    pub fn verified(by: &str, reason: Option<&str>) -> String {
        match reason {
            Some(r) => format!("verify: still valid, says generator {by:?} ({r})"),
            None => format!("verify: still valid, says generator {by:?}"),
        }
    }

    pub fn invalid(by: &str, reason: Option<&str>) -> String {
        format!(
            "verify: no longer valid, says generator {by:?}: {}",
            reason.unwrap_or("no reason given")
        )
    }

    pub fn verify_failed(by: &str, attempt: i64, error: &str, retry: bool) -> String {
        let next = if retry {
            "retried later"
        } else {
            "quarantined: its state is unknown"
        };
        format!("verify attempt {attempt} via generator {by:?} failed ({next}): {error}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_rule() {
        use DatasetStatus::*;
        let cases = [
            (Outcome::Passed, OnFailure::Quarantine, false, Consumed),
            (Outcome::Passed, OnFailure::Quarantine, true, Ready),
            (Outcome::Failed, OnFailure::Quarantine, true, Quarantined),
            (Outcome::Failed, OnFailure::Release, false, Consumed),
            (Outcome::Failed, OnFailure::Release, true, Ready),
            (Outcome::Unused, OnFailure::Quarantine, false, Ready),
            (Outcome::Unused, OnFailure::Quarantine, true, Ready),
        ];
        for (outcome, on_failure, reusable, want) in cases {
            assert_eq!(released_status(outcome, on_failure, reusable), want);
        }
    }

    #[test]
    fn the_lifecycle_rule() {
        use DatasetStatus::*;
        use LifecycleCall::*;
        let all = [Cleanup, Reset, Verify];
        assert_eq!(lifecycle_after(Consumed, &all), (Consumed, Some(Cleanup)));
        assert_eq!(lifecycle_after(Discarded, &all), (Discarded, Some(Cleanup)));
        assert_eq!(lifecycle_after(Ready, &all), (Generating, Some(Reset)));
        assert_eq!(lifecycle_after(Ready, &[Cleanup]), (Ready, None));
        assert_eq!(lifecycle_after(Quarantined, &all), (Quarantined, None));
        assert_eq!(lifecycle_after(Consumed, &[]), (Consumed, None));
        assert_eq!(parse_lifecycle(&lifecycle_text(&all)), all);
        assert!(parse_lifecycle("").is_empty());
        assert_eq!(lifecycle_retry_at(Cleanup, 0, 0), Some(1000));
        assert_eq!(lifecycle_retry_at(Cleanup, 1, 0), Some(1000));
        assert_eq!(lifecycle_retry_at(Cleanup, 3, 0), Some(4000));
        assert_eq!(lifecycle_retry_at(Cleanup, CLEANUP_ATTEMPTS, 0), None);
        assert_eq!(lifecycle_retry_at(Reset, 0, 0), None);
        assert_eq!(lifecycle_retry_at(Verify, VERIFY_ATTEMPTS, 0), None);
    }

    #[test]
    fn three_heartbeats_per_ttl() {
        assert_eq!(heartbeat_interval_seconds(120_000), 40);
        assert_eq!(heartbeat_interval_seconds(500), 1);
    }
}
