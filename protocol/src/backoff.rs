//! Retry backoff with jitter, written once for every retry loop of both
//! programs (docs/sidecar.md "Retries", docs/generators.md "Health"): the
//! sidecar's calls to the pool, its wait for stock and heartbeats, the pool's
//! HTTP generator client and the generator health gate.
//!
//! The `n`-th delay (from 0) is drawn uniformly from
//! `[ceiling·(1 − jitter), ceiling]` where `ceiling = min(max, first·2ⁿ)`.
//! `jitter = 1` is "full jitter": after a pool restart, hundreds of shards
//! that failed at the same instant retry spread over the whole interval
//! instead of in lockstep. A smaller jitter keeps a floor under each delay
//! (the health gate, which must really back off to its cap).
//!
//! The random source is a small seeded generator ([`fastrand`]); tests pass a
//! seed, programs get one from the process's random state.

use std::time::Duration;

/// How delays grow and how much of each is random.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// The ceiling of the first delay.
    pub first: Duration,
    /// The largest ceiling.
    pub max: Duration,
    /// Share of each delay that is random, 0 to 1 (1: full jitter).
    pub jitter: f64,
}

impl BackoffPolicy {
    /// Full jitter between `first` and `max`.
    pub const fn full_jitter(first: Duration, max: Duration) -> BackoffPolicy {
        BackoffPolicy {
            first,
            max,
            jitter: 1.0,
        }
    }

    /// The same growth with another share of randomness (clamped to 0..=1).
    pub fn with_jitter(self, jitter: f64) -> BackoffPolicy {
        BackoffPolicy {
            jitter: if jitter.is_nan() {
                1.0
            } else {
                jitter.clamp(0.0, 1.0)
            },
            ..self
        }
    }

    /// The ceiling of delay number `n` (0-based): `min(max, first·2ⁿ)`.
    pub fn ceiling(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }

    /// The smallest delay number `n` can be.
    pub fn floor(&self, n: u32) -> Duration {
        self.ceiling(n).mul_f64(1.0 - self.jitter)
    }

    /// A fresh sequence with a random seed.
    pub fn start(self) -> Backoff {
        Backoff {
            policy: self,
            n: 0,
            rng: fastrand::Rng::new(),
        }
    }

    /// A fresh sequence whose draws are fixed by `seed` (tests).
    pub fn start_seeded(self, seed: u64) -> Backoff {
        Backoff {
            policy: self,
            n: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }
}

/// One sequence of delays: [`Backoff::next_delay`] after each failure,
/// [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    n: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// The delay before the next attempt; each call moves one step on.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.policy.ceiling(self.n);
        self.n = self.n.saturating_add(1);
        let random = ceiling.mul_f64(self.policy.jitter * self.rng.f64());
        ceiling.saturating_sub(random)
    }

    /// Back to the first delay (the random source goes on).
    pub fn reset(&mut self) {
        self.n = 0;
    }

    /// Delays handed out since the last reset.
    pub fn steps(&self) -> u32 {
        self.n
    }

    pub fn policy(&self) -> BackoffPolicy {
        self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn every_delay_lies_between_its_floor_and_its_ceiling() {
        for jitter in [0.0, 0.2, 0.5, 1.0] {
            let policy = BackoffPolicy::full_jitter(ms(100), ms(5_000)).with_jitter(jitter);
            for seed in 0..200 {
                let mut b = policy.start_seeded(seed);
                for n in 0..12 {
                    let d = b.next_delay();
                    assert!(d <= policy.ceiling(n), "{d:?} > ceiling {n}");
                    assert!(d >= policy.floor(n), "{d:?} < floor {n} (jitter {jitter})");
                }
            }
        }
        let p = BackoffPolicy::full_jitter(ms(100), ms(700));
        let ceilings: Vec<u128> = (0..5).map(|n| p.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, vec![100, 200, 400, 700, 700]);
        assert_eq!(p.ceiling(500), ms(700), "no overflow");
    }

    #[test]
    fn without_jitter_the_sequence_doubles_and_reset_starts_over() {
        let mut b = BackoffPolicy::full_jitter(ms(200), ms(700))
            .with_jitter(0.0)
            .start_seeded(1);
        let d: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(d, vec![200, 400, 700, 700]);
        assert_eq!(b.steps(), 4);
        b.reset();
        assert_eq!(b.next_delay(), ms(200));
    }

    #[test]
    fn full_jitter_spreads_clients_that_failed_together() {
        // 500 shards fail at the same instant (a pool restart): their first
        // retries must not land together. Seeds stand for the clients.
        let policy = BackoffPolicy::full_jitter(ms(1_000), ms(30_000));
        let mut buckets = [0usize; 10];
        for seed in 0..500 {
            let d = policy.start_seeded(seed).next_delay();
            buckets[(d.as_millis() as usize / 100).min(9)] += 1;
        }
        // Every tenth of the first interval gets some, none gets most.
        assert!(
            buckets.iter().all(|&n| (20..=90).contains(&n)),
            "{buckets:?}"
        );
        // The same seed gives the same sequence.
        let a: Vec<Duration> = {
            let mut b = policy.start_seeded(42);
            (0..5).map(|_| b.next_delay()).collect()
        };
        let mut b = policy.start_seeded(42);
        assert_eq!(a, (0..5).map(|_| b.next_delay()).collect::<Vec<_>>());
    }
}
