//! The stock policy (docs/pool.md, "Stock"): how much of each state
//! pre-generation keeps, and in which order it makes it.
//!
//! Pure: fed by counts, the leases seen, lead times and the time now, it
//! starts nothing itself. [`crate::supply::Supply`] applies it to the store
//! and the generators, the catalog shows its [`StockTarget`]s, and
//! `pool-bench simulate` drives the same functions on a simulated clock.
//!
//! The rule, `demand` policy (the default):
//! - `ready + generating` never stays below `min_ready`, nor goes above
//!   `max_ready`.
//! - Between them the target is the largest burst of leases seen within the
//!   last [`DEMAND_WINDOW`] that the generators could not have remade while
//!   it came in (see [`peak`]), plus [`HEADROOM_PERCENT`]. A steady stream
//!   of `r` leases a second gives about `r × lead time`; 100 leases at once
//!   give 100. Old leases leave the window, so the target falls back to
//!   `min_ready` when demand stops.
//! - Refills go first to states that leases wait for, then to the largest
//!   relative deficit (`(target − have) / target`), one call at a time, so no
//!   state fills up while another has nothing; each generator's free
//!   `concurrency` bounds the calls.
//!
//! The `static` policy (before this one, kept for comparison): below
//! `min_ready` a state is filled to `max_ready`, then left alone until it
//! falls below `min_ready` again; states are served in name order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

pub use stockroom_protocol::api::StockTarget;
pub use stockroom_protocol::pool_config::StockPolicy;

/// How long a lease counts as demand.
pub const DEMAND_WINDOW: Duration = Duration::from_secs(600);
/// Stock kept above the peak demand, in percent of it.
pub const HEADROOM_PERCENT: u64 = 20;
/// Leases remembered per state at most (the oldest are forgotten first).
pub const MAX_SEEN_PER_STATE: usize = 100_000;

/// `(type, state)`.
pub type StateKey = (String, String);

/// Leases seen per state: when each dataset was asked for (ms).
///
/// Kept in memory by each pool process: with several replicas, each
/// follows the demand it serves itself.
#[derive(Debug, Clone)]
pub struct DemandLog {
    window_ms: i64,
    seen: BTreeMap<StateKey, VecDeque<i64>>,
}

impl Default for DemandLog {
    fn default() -> Self {
        DemandLog::new(DEMAND_WINDOW)
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl DemandLog {
    pub fn new(window: Duration) -> DemandLog {
        DemandLog {
            window_ms: ms(window).max(1),
            seen: BTreeMap::new(),
        }
    }

    pub fn window(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.window_ms).unwrap_or(0))
    }

    /// `count` datasets of a state were leased by a request asked for at
    /// `asked_ms` (a request that waited is counted when it was asked for:
    /// that is when the demand arrived).
    pub fn record(&mut self, type_name: &str, state: &str, asked_ms: i64, count: u32) {
        let seen = self
            .seen
            .entry((type_name.to_string(), state.to_string()))
            .or_default();
        // Requests that waited are granted out of order: keep the times sorted.
        let at = seen.partition_point(|t| *t <= asked_ms);
        for _ in 0..count {
            seen.insert(at, asked_ms);
        }
        while seen.len() > MAX_SEEN_PER_STATE {
            seen.pop_front();
        }
    }

    /// The lease times of a state within the window ending at `now_ms`, in order.
    pub fn seen(&mut self, type_name: &str, state: &str, now_ms: i64) -> &[i64] {
        let since = now_ms.saturating_sub(self.window_ms);
        let key = (type_name.to_string(), state.to_string());
        match self.seen.get_mut(&key) {
            Some(seen) => {
                while seen.front().is_some_and(|t| *t <= since) {
                    seen.pop_front();
                }
                seen.make_contiguous()
            }
            None => &[],
        }
    }
}

/// The largest burst in `seen` (sorted lease times, ms) that generators
/// remaking `per_second` datasets a second, each taking `lead_ms`, could
/// not have kept up with: the most, over every span of the leases, of
/// `leases in the span − per_second × (span − lead time)`, the second term
/// never below zero (nothing is remade sooner than one lead time).
///
/// Stock of that size serves the same burst again without a wait.
pub fn peak(seen: &[i64], lead_ms: i64, per_second: f64) -> u64 {
    let per_ms = per_second.max(0.0) / 1000.0;
    let lead_ms = lead_ms.max(0);
    let mut best = 0.0_f64;
    // `first`: the first lease within one lead time before lease `j`.
    let mut first = 0usize;
    // The most of `per_ms × t_i − i` over the leases before `first`.
    let mut before = f64::NEG_INFINITY;
    for (j, &t) in seen.iter().enumerate() {
        while t - seen[first] > lead_ms {
            before = before.max(per_ms * seen[first] as f64 - first as f64);
            first += 1;
        }
        // Spans within one lead time: all of their leases count.
        best = best.max((j - first + 1) as f64);
        // Longer spans: the leases minus what was remade after one lead time.
        if before.is_finite() {
            best = best.max((j + 1) as f64 - per_ms * (t - lead_ms) as f64 + before);
        }
    }
    best.ceil() as u64
}

/// Datasets a second one generator can make for one state: its concurrency
/// over the lead time, shared evenly by the `sharing` states it is making
/// for (at least one).
pub fn per_second(concurrency: usize, lead: Duration, sharing: usize) -> f64 {
    let lead_s = lead.as_secs_f64().max(0.001);
    concurrency.max(1) as f64 / lead_s / sharing.max(1) as f64
}

/// What the policy knows about one state's demand.
#[derive(Debug, Clone, Copy)]
pub struct Demand<'a> {
    /// Lease times within the window (ms), in order.
    pub seen: &'a [i64],
    pub window: Duration,
    /// How long making one dataset of the state takes now.
    pub lead_time: Duration,
    /// Datasets a second its generator can make for it ([`per_second`]).
    pub per_second: f64,
}

fn words(d: Duration) -> String {
    stockroom_protocol::HumanDuration(d).to_string()
}

/// The target of one state now, and why. `filling`: the `static` policy's
/// memory (the state fell below `min_ready` and is being filled to `max_ready`).
pub fn target(
    policy: StockPolicy,
    min_ready: u32,
    max_ready: u32,
    demand: &Demand<'_>,
    filling: bool,
) -> StockTarget {
    let max_ready = max_ready.max(min_ready);
    let lead_time_ms = u64::try_from(demand.lead_time.as_millis()).unwrap_or(u64::MAX);
    let seen = demand.seen.len() as u64;
    let window = words(demand.window);
    let lead = words(demand.lead_time);
    let (target, why) = match policy {
        StockPolicy::Static => {
            let t = if filling { max_ready } else { min_ready };
            let why = if filling {
                format!(
                    "static policy: fell below min_ready {min_ready}, filling to max_ready {max_ready}"
                )
            } else {
                format!(
                    "static policy: refills to max_ready {max_ready} once below min_ready {min_ready}"
                )
            };
            (t, why)
        }
        StockPolicy::Demand => {
            let p = peak(demand.seen, ms(demand.lead_time), demand.per_second);
            let want = p + (p * HEADROOM_PERCENT).div_ceil(100);
            let t = u32::try_from(want)
                .unwrap_or(u32::MAX)
                .clamp(min_ready, max_ready);
            let why = if seen == 0 {
                format!("no leases in the last {window}: min_ready {min_ready}")
            } else {
                let bound = if u64::from(t) < want {
                    format!(", capped at max_ready {max_ready}")
                } else if u64::from(t) > want {
                    format!(", raised to min_ready {min_ready}")
                } else {
                    String::new()
                };
                format!(
                    "{seen} leased in the last {window}; up to {p} came faster than the generator remakes them \
                     ({lead} each, {:.1}/s): {p} + {HEADROOM_PERCENT}% headroom{bound}",
                    demand.per_second
                )
            };
            (t, why)
        }
    };
    StockTarget {
        target,
        demand: seen,
        demand_window_seconds: demand.window.as_secs(),
        lead_time_ms,
        why,
    }
}

/// One state pre-generation may refill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub key: StateKey,
    /// The generator its cheapest route calls first now.
    pub generator: String,
    pub ready: u64,
    pub generating: u64,
    pub min_ready: u32,
    pub max_ready: u32,
    /// Its [`target`] now.
    pub target: u32,
    /// Datasets wanted by leases waiting for it (they go first).
    pub waiting: u64,
}

impl Candidate {
    fn have(&self) -> u64 {
        self.ready + self.generating
    }
}

/// One state as the supply sees it now, before the policy decides.
#[derive(Debug, Clone, PartialEq)]
pub struct StateNow {
    pub key: StateKey,
    /// The generator its cheapest route calls first now.
    pub generator: String,
    /// That generator's `concurrency`.
    pub concurrency: usize,
    /// How long making one takes now (the route's estimated cost).
    pub lead_time: Duration,
    pub ready: u64,
    pub generating: u64,
    pub min_ready: u32,
    pub max_ready: u32,
    /// Datasets wanted by leases waiting for it.
    pub waiting: u64,
}

/// Every state's target and refill candidate now: the one computation
/// behind the catalog's `target`, pre-generation and `pool-bench simulate`.
/// A generator's capacity is shared by the states with demand it makes.
pub fn assess(
    policy: StockPolicy,
    states: &[StateNow],
    demand: &mut DemandLog,
    now_ms: i64,
    filling: &BTreeSet<StateKey>,
) -> Vec<(Candidate, StockTarget)> {
    let window = demand.window();
    let mut sharing: BTreeMap<&str, usize> = BTreeMap::new();
    for st in states {
        if !demand.seen(&st.key.0, &st.key.1, now_ms).is_empty() {
            *sharing.entry(st.generator.as_str()).or_default() += 1;
        }
    }
    states
        .iter()
        .map(|st| {
            let shared = sharing.get(st.generator.as_str()).copied().unwrap_or(1);
            let d = Demand {
                seen: demand.seen(&st.key.0, &st.key.1, now_ms),
                window,
                lead_time: st.lead_time,
                per_second: per_second(st.concurrency, st.lead_time, shared),
            };
            let t = target(
                policy,
                st.min_ready,
                st.max_ready,
                &d,
                filling.contains(&st.key),
            );
            let candidate = Candidate {
                key: st.key.clone(),
                generator: st.generator.clone(),
                ready: st.ready,
                generating: st.generating,
                min_ready: st.min_ready,
                max_ready: st.max_ready,
                target: t.target,
                waiting: st.waiting,
            };
            (candidate, t)
        })
        .collect()
}

/// Whether `a/b > c/d` (all small, no division).
fn more(a: u64, b: u64, c: u64, d: u64) -> bool {
    u128::from(a) * u128::from(d.max(1)) > u128::from(c) * u128::from(b.max(1))
}

/// The generations to start now, in order, one entry per call: `free` is
/// each generator's free concurrency; `filling` is the `static` policy's
/// memory between passes (states filling up to `max_ready`).
pub fn refills(
    policy: StockPolicy,
    candidates: &[Candidate],
    free: &BTreeMap<String, usize>,
    filling: &mut BTreeSet<StateKey>,
) -> Vec<StateKey> {
    let mut used: BTreeMap<&str, usize> = BTreeMap::new();
    let slot = |g: &str, used: &BTreeMap<&str, usize>| -> bool {
        free.get(g).copied().unwrap_or(0) > used.get(g).copied().unwrap_or(0)
    };
    let mut out = Vec::new();
    match policy {
        StockPolicy::Static => {
            let mut sorted: Vec<&Candidate> = candidates.iter().collect();
            sorted.sort_by(|a, b| a.key.cmp(&b.key));
            for c in sorted {
                let have = c.have();
                if have < u64::from(c.min_ready) {
                    filling.insert(c.key.clone());
                }
                if have >= u64::from(c.max_ready) {
                    filling.remove(&c.key);
                }
                if !filling.contains(&c.key) {
                    continue;
                }
                let mut want = u64::from(c.max_ready).saturating_sub(have);
                while want > 0 && slot(&c.generator, &used) {
                    *used.entry(&c.generator).or_default() += 1;
                    out.push(c.key.clone());
                    want -= 1;
                }
            }
        }
        StockPolicy::Demand => {
            filling.clear();
            // Per candidate: its goal and deficit. Leases that wait get their
            // shortfall made just in time (`Supply::on_shortfall`); here their
            // states only go first, so nothing is made twice for them.
            let plans: Vec<(u64, u64)> = candidates
                .iter()
                .map(|c| {
                    let have = c.have();
                    let room = u64::from(c.max_ready).saturating_sub(have);
                    let goal = u64::from(c.target.clamp(c.min_ready, c.max_ready.max(c.min_ready)));
                    (goal, goal.saturating_sub(have).min(room))
                })
                .collect();
            let mut given = vec![0u64; candidates.len()];
            loop {
                let mut best: Option<usize> = None;
                for (i, c) in candidates.iter().enumerate() {
                    let (goal, deficit) = plans[i];
                    if given[i] >= deficit || !slot(&c.generator, &used) {
                        continue;
                    }
                    let Some(b) = best else {
                        best = Some(i);
                        continue;
                    };
                    let (bgoal, bdeficit) = plans[b];
                    let better = match (c.waiting > 0, candidates[b].waiting > 0) {
                        (true, false) => true,
                        (false, true) => false,
                        _ => more(deficit - given[i], goal, bdeficit - given[b], bgoal),
                    };
                    if better {
                        best = Some(i);
                    }
                }
                let Some(i) = best else { break };
                given[i] += 1;
                *used.entry(&candidates[i].generator).or_default() += 1;
                out.push(candidates[i].key.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> StateKey {
        ("user".to_string(), s.to_string())
    }

    fn cand(state: &str, ready: u64, min: u32, max: u32, target: u32) -> Candidate {
        Candidate {
            key: key(state),
            generator: "shop".into(),
            ready,
            generating: 0,
            min_ready: min,
            max_ready: max,
            target,
            waiting: 0,
        }
    }

    fn free(n: usize) -> BTreeMap<String, usize> {
        BTreeMap::from([("shop".to_string(), n)])
    }

    fn demand(seen: &[i64]) -> Demand<'_> {
        Demand {
            seen,
            window: DEMAND_WINDOW,
            lead_time: Duration::from_millis(150),
            per_second: 20.0,
        }
    }

    #[test]
    fn a_burst_counts_whole_and_a_steady_stream_counts_over_one_lead_time() {
        assert_eq!(peak(&[], 150, 20.0), 0);
        let burst = vec![1_000; 100];
        assert_eq!(peak(&burst, 150, 20.0), 100);
        // 10 a second for 60 s, 150 ms each at 20/s: ~2 within a lead time.
        let steady: Vec<i64> = (0..600).map(|i| i * 100).collect();
        assert_eq!(peak(&steady, 150, 20.0), 2);
        // 100 over 2 s at 20/s: 40 are remade meanwhile (after the first 150 ms).
        let spread: Vec<i64> = (0..100).map(|i| i * 20).collect();
        let p = peak(&spread, 150, 20.0);
        assert!((60..=65).contains(&p), "{p}");
        // Faster than the generators for long: it all piles up.
        let flood: Vec<i64> = (0..1000).map(|i| i * 10).collect();
        assert!(peak(&flood, 150, 20.0) > 790);
    }

    #[test]
    fn peak_matches_the_definition_on_small_cases() {
        let cases: [&[i64]; 4] = [
            &[0, 0, 5, 400, 401, 402, 1000],
            &[0, 100, 200, 300, 400, 500],
            &[7],
            &[0, 0, 0, 3000, 3000, 3000, 3000],
        ];
        for seen in cases {
            for (lead, rate) in [(0, 5.0), (150, 10.0), (1000, 1.0), (50, 0.0)] {
                let mut brute = 0.0_f64;
                for i in 0..seen.len() {
                    for j in i..seen.len() {
                        let span = (seen[j] - seen[i] - lead).max(0) as f64;
                        brute = brute.max((j - i + 1) as f64 - rate / 1000.0 * span);
                    }
                }
                assert_eq!(
                    peak(seen, lead, rate),
                    brute.ceil() as u64,
                    "{seen:?} {lead} {rate}"
                );
            }
        }
    }

    #[test]
    fn the_target_follows_demand_within_min_and_max() {
        let none = target(StockPolicy::Demand, 3, 50, &demand(&[]), false);
        assert_eq!(none.target, 3);
        assert!(none.why.contains("no leases"), "{}", none.why);
        let burst = vec![0; 20];
        let t = target(StockPolicy::Demand, 3, 50, &demand(&burst), false);
        assert_eq!((t.target, t.demand, t.lead_time_ms), (24, 20, 150));
        assert_eq!(t.demand_window_seconds, 600);
        assert!(t.why.contains("20 leased in the last 10m"), "{}", t.why);
        let big = vec![0; 100];
        let capped = target(StockPolicy::Demand, 3, 50, &demand(&big), false);
        assert_eq!(capped.target, 50);
        assert!(
            capped.why.contains("capped at max_ready 50"),
            "{}",
            capped.why
        );
        // New bounds count at once: they are arguments, nothing is cached.
        assert_eq!(
            target(StockPolicy::Demand, 30, 60, &demand(&burst), false).target,
            30
        );
        assert_eq!(
            target(StockPolicy::Demand, 3, 10, &demand(&burst), false).target,
            10
        );
    }

    #[test]
    fn demand_leaves_the_window_and_the_target_falls_back() {
        let mut log = DemandLog::new(Duration::from_secs(60));
        log.record("user", "new", 1_000, 20);
        log.record("user", "new", 500, 1);
        assert_eq!(log.seen("user", "new", 2_000).len(), 21);
        assert_eq!(log.seen("user", "new", 2_000)[0], 500, "kept in order");
        let t = target(
            StockPolicy::Demand,
            2,
            40,
            &demand(log.seen("user", "new", 2_000)),
            false,
        );
        assert_eq!(t.target, 24, "the 20 at once, with headroom");
        assert_eq!(log.seen("user", "new", 60_600).len(), 20);
        let later = log.seen("user", "new", 61_001);
        assert!(later.is_empty());
        assert_eq!(
            target(StockPolicy::Demand, 2, 40, &demand(later), false).target,
            2
        );
        assert!(log.seen("user", "other", 0).is_empty());
    }

    #[test]
    fn static_fills_to_max_only_after_falling_below_min() {
        let mut filling = BTreeSet::new();
        let c = cand("new", 5, 3, 10, 3);
        assert!(
            refills(
                StockPolicy::Static,
                std::slice::from_ref(&c),
                &free(4),
                &mut filling
            )
            .is_empty()
        );
        let low = cand("new", 2, 3, 10, 3);
        assert_eq!(
            refills(StockPolicy::Static, &[low], &free(4), &mut filling).len(),
            4
        );
        // Still filling above min_ready, until max_ready.
        assert_eq!(
            refills(StockPolicy::Static, &[c], &free(4), &mut filling).len(),
            4
        );
        let full = cand("new", 10, 3, 10, 3);
        assert!(refills(StockPolicy::Static, &[full], &free(4), &mut filling).is_empty());
        assert!(filling.is_empty());
    }

    #[test]
    fn demand_refills_to_its_target_and_keeps_min_ready() {
        let mut filling = BTreeSet::new();
        let c = cand("new", 5, 3, 40, 12);
        assert_eq!(
            refills(StockPolicy::Demand, &[c], &free(100), &mut filling).len(),
            7
        );
        let mut coming = cand("new", 5, 3, 40, 12);
        coming.generating = 7;
        assert!(refills(StockPolicy::Demand, &[coming], &free(100), &mut filling).is_empty());
        // A target below min_ready (no demand) still keeps min_ready.
        let empty = cand("new", 0, 3, 40, 0);
        assert_eq!(
            refills(StockPolicy::Demand, &[empty], &free(100), &mut filling).len(),
            3
        );
        // Never past max_ready.
        let over = cand("new", 39, 3, 40, 99);
        assert_eq!(
            refills(StockPolicy::Demand, &[over], &free(100), &mut filling).len(),
            1
        );
    }

    #[test]
    fn no_state_starves_another_and_waiters_come_first() {
        let mut filling = BTreeSet::new();
        let plain = cand("registered", 0, 2, 40, 40);
        let composed = cand("with-articles", 0, 2, 40, 20);
        let order = refills(
            StockPolicy::Demand,
            &[plain.clone(), composed.clone()],
            &free(6),
            &mut filling,
        );
        let n = |s: &str| order.iter().filter(|k| k.1 == s).count();
        assert_eq!(order.len(), 6, "concurrency bounds the calls");
        // By relative deficit: 40 of 40 and 20 of 20 missing share the slots.
        assert_eq!((n("registered"), n("with-articles")), (4, 2), "{order:?}");
        assert_eq!(order[1], key("with-articles"), "{order:?}");
        // The static policy fills in name order: the composed state gets nothing.
        let mut filling = BTreeSet::new();
        let order = refills(
            StockPolicy::Static,
            &[plain.clone(), composed.clone()],
            &free(6),
            &mut filling,
        );
        assert!(order.iter().all(|k| k.1 == "registered"), "{order:?}");
        // A state leases wait for goes first, even with the smaller deficit.
        let mut waited = cand("with-articles", 18, 2, 40, 20);
        waited.waiting = 20;
        let order = refills(
            StockPolicy::Demand,
            &[plain, waited],
            &free(2),
            &mut filling,
        );
        assert_eq!(order, vec![key("with-articles"), key("with-articles")]);
    }

    #[test]
    fn each_generator_has_its_own_slots() {
        let mut filling = BTreeSet::new();
        let mut other = cand("other", 0, 0, 10, 10);
        other.generator = "second".into();
        let mine = cand("new", 0, 0, 10, 10);
        let free = BTreeMap::from([("shop".to_string(), 1), ("second".to_string(), 3)]);
        let order = refills(StockPolicy::Demand, &[mine, other], &free, &mut filling);
        let n = |s: &str| order.iter().filter(|k| k.1 == s).count();
        assert_eq!((n("new"), n("other")), (1, 3));
    }
}
