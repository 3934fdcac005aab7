//! Health of one generator: recent failures and latencies, and a gate that
//! holds calls back while it keeps failing (docs/generators.md "Health").
//!
//! Failures are counted in two streaks: the work (`generate`, `extend`) and
//! `capabilities`. A success ends only its own streak: a generator that
//! answers its capabilities but whose every `generate` times out keeps
//! backing off (finding 5 of issue 13). After `open_after` consecutive
//! failures of a streak the gate closes for a wait drawn from the shared
//! backoff ([`stockroom_protocol::backoff`]): ceiling
//! `base · 2^(failures − open_after)` up to `max`, less up to `jitter` of it,
//! so that the pool's calls to a generator that is back do not come in
//! lockstep. One call is then let through; its failure closes the gate for
//! longer. Work is held back while either streak is open, `capabilities`
//! only by its own. Time is passed in, so the logic is tested without sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use stockroom_protocol::api::GeneratorHealth;
use stockroom_protocol::backoff::{Backoff, BackoffPolicy};

use crate::error::Operation;

/// Longest `last_error` kept for the catalog.
const LAST_ERROR_CHARS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthPolicy {
    /// How many recent calls the failure rate and medians are taken over.
    pub window: usize,
    /// Consecutive failures after which calls are held back.
    pub open_after: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Share of each wait that is random (0 to 1).
    pub jitter: f64,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            window: 20,
            open_after: 3,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            jitter: 0.2,
        }
    }
}

impl HealthPolicy {
    fn backoff(&self) -> BackoffPolicy {
        BackoffPolicy::full_jitter(self.base_backoff, self.max_backoff).with_jitter(self.jitter)
    }
}

#[derive(Debug, Clone, Copy)]
struct Call {
    operation: Operation,
    ok: bool,
    latency: Duration,
}

/// Consecutive failures of one kind of call, and when the gate opens again.
#[derive(Debug, Clone)]
struct Streak {
    failures: u32,
    open_at: Option<Instant>,
    backoff: Backoff,
}

impl Streak {
    fn new(backoff: Backoff) -> Streak {
        Streak {
            failures: 0,
            open_at: None,
            backoff,
        }
    }

    fn success(&mut self) {
        self.failures = 0;
        self.open_at = None;
        self.backoff.reset();
    }

    fn failure(&mut self, open_after: u32, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= open_after {
            self.open_at = Some(now + self.backoff.next_delay());
        }
    }

    fn wait(&self, now: Instant) -> Option<Duration> {
        self.open_at.filter(|at| *at > now).map(|at| at - now)
    }
}

#[derive(Debug, Clone)]
pub struct HealthTracker {
    name: String,
    policy: HealthPolicy,
    recent: VecDeque<Call>,
    work: Streak,
    capabilities: Streak,
    last_error: Option<String>,
}

impl HealthTracker {
    pub fn new(name: &str, policy: HealthPolicy) -> Self {
        HealthTracker::with_backoffs(
            name,
            policy,
            policy.backoff().start(),
            policy.backoff().start(),
        )
    }

    /// With the random waits fixed by `seed` (tests).
    pub fn seeded(name: &str, policy: HealthPolicy, seed: u64) -> Self {
        HealthTracker::with_backoffs(
            name,
            policy,
            policy.backoff().start_seeded(seed),
            policy.backoff().start_seeded(seed.wrapping_add(1)),
        )
    }

    fn with_backoffs(name: &str, policy: HealthPolicy, work: Backoff, caps: Backoff) -> Self {
        HealthTracker {
            name: name.to_string(),
            policy,
            recent: VecDeque::with_capacity(policy.window),
            work: Streak::new(work),
            capabilities: Streak::new(caps),
            last_error: None,
        }
    }

    fn streak(&mut self, operation: Operation) -> &mut Streak {
        match operation {
            Operation::Capabilities => &mut self.capabilities,
            _ => &mut self.work,
        }
    }

    fn push(&mut self, call: Call) {
        if self.recent.len() == self.policy.window.max(1) {
            self.recent.pop_front();
        }
        self.recent.push_back(call);
    }

    /// A success ends the streak of its own kind only.
    pub fn record_success(&mut self, operation: Operation, latency: Duration) {
        self.push(Call {
            operation,
            ok: true,
            latency,
        });
        self.streak(operation).success();
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
        let open_after = self.policy.open_after;
        self.streak(operation).failure(open_after, now);
        self.last_error = Some(truncate(error, LAST_ERROR_CHARS));
    }

    /// `Ok` when a call of `operation` may go out now, else how long to wait.
    pub fn gate(&self, operation: Operation, now: Instant) -> Result<(), Duration> {
        let wait = match operation {
            Operation::Capabilities => self.capabilities.wait(now),
            _ => self.work.wait(now).max(self.capabilities.wait(now)),
        };
        match wait {
            Some(w) => Err(w),
            None => Ok(()),
        }
    }

    /// Failing too often to count on: a streak reached `open_after`.
    pub fn available(&self) -> bool {
        self.work.failures < self.policy.open_after
            && self.capabilities.failures < self.policy.open_after
    }

    /// The longer of the two streaks.
    pub fn consecutive_failures(&self) -> u32 {
        self.work.failures.max(self.capabilities.failures)
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

    fn exact(open_after: u32, base: u64, max: u64) -> HealthPolicy {
        HealthPolicy {
            window: 10,
            open_after,
            base_backoff: ms(base),
            max_backoff: ms(max),
            jitter: 0.0,
        }
    }

    #[test]
    fn the_gate_backs_off_exponentially_and_a_success_reopens_it() {
        let t0 = Instant::now();
        let mut h = HealthTracker::new("g", exact(2, 100, 350));
        let g = Operation::Generate;
        h.record_failure(g, ms(1), "e", t0);
        assert_eq!(h.gate(g, t0), Ok(()));
        assert!(h.available());
        h.record_failure(g, ms(1), "e", t0);
        assert!(!h.available());
        assert_eq!(h.gate(g, t0), Err(ms(100)));
        assert_eq!(h.gate(g, t0 + ms(100)), Ok(()));
        h.record_failure(g, ms(1), "e", t0 + ms(100));
        assert_eq!(h.gate(g, t0 + ms(100)), Err(ms(200)));
        h.record_failure(g, ms(1), "e", t0 + ms(300));
        assert_eq!(h.gate(g, t0 + ms(300)), Err(ms(350)), "capped");
        h.record_success(g, ms(1));
        assert_eq!(h.gate(g, t0 + ms(300)), Ok(()));
        assert!(h.available());
        assert_eq!(h.consecutive_failures(), 0);
    }

    #[test]
    fn a_capabilities_success_does_not_end_the_work_streak() {
        let t0 = Instant::now();
        let mut h = HealthTracker::new("g", exact(3, 1_000, 60_000));
        for i in 0..3 {
            h.record_failure(Operation::Generate, ms(1), "timed out", t0 + ms(i));
        }
        assert!(!h.available());
        h.record_success(Operation::Capabilities, ms(1));
        assert!(!h.available(), "still unavailable");
        assert!(h.gate(Operation::Generate, t0 + ms(2)).is_err());
        assert_eq!(h.gate(Operation::Capabilities, t0), Ok(()));
        // Failing capabilities hold the work back as well.
        let mut h = HealthTracker::new("g", exact(1, 1_000, 60_000));
        h.record_failure(Operation::Capabilities, ms(1), "refused", t0);
        assert_eq!(h.gate(Operation::Generate, t0), Err(ms(1_000)));
        h.record_success(Operation::Extend, ms(1));
        assert_eq!(h.gate(Operation::Generate, t0), Err(ms(1_000)));
    }

    #[test]
    fn jittered_waits_stay_between_their_floor_and_their_ceiling() {
        let policy = HealthPolicy::default();
        for seed in 0..100 {
            let t0 = Instant::now();
            let mut h = HealthTracker::seeded("g", policy, seed);
            let mut now = t0;
            for failure in 1..=12u32 {
                h.record_failure(Operation::Generate, ms(1), "e", now);
                if failure < policy.open_after {
                    assert_eq!(h.gate(Operation::Generate, now), Ok(()));
                    continue;
                }
                let wait = h.gate(Operation::Generate, now).unwrap_err();
                let ceiling = policy.backoff().ceiling(failure - policy.open_after);
                assert!(
                    wait <= ceiling && wait >= ceiling.mul_f64(0.8),
                    "{wait:?} vs {ceiling:?}"
                );
                now += wait;
            }
            // At the cap, a wait is at least 48 s of the 60.
            assert!(h.gate(Operation::Generate, now).is_ok());
        }
    }
}
