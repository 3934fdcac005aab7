//! Health of one generator: recent failures and latencies, and a gate that
//! holds calls back while it keeps failing.
//!
//! The gate: after `open_after` consecutive failures, the next call waits
//! `base · 2^(failures − open_after)` (at most `cap`) after the last failure.
//! One call is then let through; a success resets everything, a failure
//! doubles the wait. Time is passed in, so the logic is tested without sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use stockroom_protocol::api::GeneratorHealth;

use crate::error::Operation;

/// Longest `last_error` kept for the catalog.
const LAST_ERROR_CHARS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// How many recent calls the failure rate and medians are taken over.
    pub window: usize,
    /// Consecutive failures after which calls are held back.
    pub open_after: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            window: 20,
            open_after: 3,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Call {
    operation: Operation,
    ok: bool,
    latency: Duration,
}

#[derive(Debug, Clone)]
pub struct HealthTracker {
    name: String,
    policy: HealthPolicy,
    recent: VecDeque<Call>,
    consecutive_failures: u32,
    last_failure_at: Option<Instant>,
    last_error: Option<String>,
}

impl HealthTracker {
    pub fn new(name: &str, policy: HealthPolicy) -> Self {
        HealthTracker {
            name: name.to_string(),
            policy,
            recent: VecDeque::with_capacity(policy.window),
            consecutive_failures: 0,
            last_failure_at: None,
            last_error: None,
        }
    }

    fn push(&mut self, call: Call) {
        if self.recent.len() == self.policy.window.max(1) {
            self.recent.pop_front();
        }
        self.recent.push_back(call);
    }

    pub fn record_success(&mut self, operation: Operation, latency: Duration) {
        self.push(Call {
            operation,
            ok: true,
            latency,
        });
        self.consecutive_failures = 0;
        self.last_failure_at = None;
    }

    /// `error` is the failure's message; it must not hold data values
    /// ([`crate::GeneratorError`]'s messages do not).
    pub fn record_failure(
        &mut self,
        operation: Operation,
        latency: Duration,
        error: &str,
        now: Instant,
    ) {
        self.push(Call {
            operation,
            ok: false,
            latency,
        });
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.last_failure_at = Some(now);
        self.last_error = Some(truncate(error, LAST_ERROR_CHARS));
    }

    /// `Ok` when a call may go out now, else how long to wait.
    pub fn gate(&self, now: Instant) -> Result<(), Duration> {
        let (Some(at), true) = (
            self.last_failure_at,
            self.consecutive_failures >= self.policy.open_after,
        ) else {
            return Ok(());
        };
        let exponent = self.consecutive_failures - self.policy.open_after;
        let factor = 1u32.checked_shl(exponent).unwrap_or(u32::MAX);
        let wait = self
            .policy
            .base_backoff
            .saturating_mul(factor)
            .min(self.policy.max_backoff);
        let open_at = at + wait;
        if now >= open_at {
            Ok(())
        } else {
            Err(open_at - now)
        }
    }

    /// Failing too often to count on: the gate is or was just closed.
    pub fn available(&self) -> bool {
        self.consecutive_failures < self.policy.open_after
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Share of failed calls among the recent ones.
    pub fn failure_rate(&self) -> Option<f64> {
        if self.recent.is_empty() {
            return None;
        }
        Some(self.recent.iter().filter(|c| !c.ok).count() as f64 / self.recent.len() as f64)
    }

    /// Median latency of the recent successful calls of one operation.
    pub fn median_latency(&self, operation: Operation) -> Option<Duration> {
        median(
            self.recent
                .iter()
                .filter(|c| c.ok && c.operation == operation)
                .map(|c| c.latency),
        )
    }

    /// Median latency of the recent successful generate and extend calls.
    pub fn median_work_latency(&self) -> Option<Duration> {
        median(
            self.recent
                .iter()
                .filter(|c| c.ok && c.operation != Operation::Capabilities)
                .map(|c| c.latency),
        )
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    pub fn snapshot(&self) -> GeneratorHealth {
        GeneratorHealth {
            name: self.name.clone(),
            available: self.available(),
            last_error: self.last_error.clone(),
            failure_rate: self.failure_rate(),
            median_latency_ms: self
                .median_work_latency()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

fn median(values: impl Iterator<Item = Duration>) -> Option<Duration> {
    let mut v: Vec<Duration> = values.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2
    })
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rates_and_medians_cover_only_the_window() {
        let now = Instant::now();
        let mut h = HealthTracker::new(
            "g",
            HealthPolicy {
                window: 4,
                ..HealthPolicy::default()
            },
        );
        assert_eq!(h.failure_rate(), None);
        h.record_failure(Operation::Generate, ms(5), "boom", now);
        for latency in [10, 30, 20] {
            h.record_success(Operation::Generate, ms(latency));
        }
        assert_eq!(h.failure_rate(), Some(0.25));
        assert_eq!(h.median_latency(Operation::Generate), Some(ms(20)));
        h.record_success(Operation::Extend, ms(100));
        // The failure fell out of the window; the last error is still reported.
        assert_eq!(h.failure_rate(), Some(0.0));
        assert_eq!(h.median_latency(Operation::Extend), Some(ms(100)));
        assert_eq!(h.median_work_latency(), Some(ms(25)));
        let snap = h.snapshot();
        assert!(snap.available);
        assert_eq!(snap.last_error.as_deref(), Some("boom"));
        assert_eq!(snap.median_latency_ms, Some(25));
    }

    #[test]
    fn the_gate_backs_off_exponentially_and_a_success_reopens_it() {
        let t0 = Instant::now();
        let policy = HealthPolicy {
            window: 10,
            open_after: 2,
            base_backoff: ms(100),
            max_backoff: ms(350),
        };
        let mut h = HealthTracker::new("g", policy);
        h.record_failure(Operation::Generate, ms(1), "e", t0);
        assert_eq!(h.gate(t0), Ok(()));
        assert!(h.available());
        h.record_failure(Operation::Generate, ms(1), "e", t0);
        assert!(!h.available());
        assert_eq!(h.gate(t0), Err(ms(100)));
        assert_eq!(h.gate(t0 + ms(100)), Ok(()));
        h.record_failure(Operation::Generate, ms(1), "e", t0 + ms(100));
        assert_eq!(h.gate(t0 + ms(100)), Err(ms(200)));
        h.record_failure(Operation::Generate, ms(1), "e", t0 + ms(300));
        assert_eq!(h.gate(t0 + ms(300)), Err(ms(350)), "capped");
        h.record_success(Operation::Generate, ms(1));
        assert_eq!(h.gate(t0 + ms(300)), Ok(()));
        assert!(h.available());
        assert_eq!(h.consecutive_failures(), 0);
    }
}
