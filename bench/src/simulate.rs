//! `pool-bench simulate`: a day of CI against a generator of fixed capacity,
//! static stock policy against demand-following (docs/benchmarks.md,
//! "Issue 16: stock that follows demand").
//!
//! A discrete-event simulation in compressed time: no pool process, no
//! sleeps. The decisions are the pool's own code, `stockroom_pool::
//! stock_policy` ([`assess`] and [`refills`], what `Supply::replenish` calls,
//! fed the same way), driven by a simulated clock. Around them the simulation
//! models what the pool's store, wait queue and generators do:
//!
//! - one generator, `--concurrency` calls at once, `--call` per call; the
//!   three states `user/registered`, `user/with-articles` (made from a
//!   `user/registered`: taken from stock when one is ready, else made first,
//!   two calls) and `article/published`;
//! - pre-generation passes after every change (a lease, a finished call) and
//!   every 500 ms, as the pool's replenisher is woken; a call starts only
//!   with a free slot; `max_ready` caps `ready + generating` as the store does;
//! - leases are all-or-nothing and served first come, first served (every
//!   job needs `article/published`, so every waiter competes with the
//!   others); a lease that falls short asks for its shortfall just in time
//!   (`Supply::on_shortfall`: what is missing minus what is generating) and
//!   counts as waiting for the policy; demand is recorded when a lease is
//!   granted, at the time it was asked for;
//! - leased datasets are consumed (never come back).
//!
//! Time to data: from a job's arrival until its lease is granted.
//! Over-generation: datasets made but never leased by the end of the day
//! (ready or generating then), as % of those leased. Calls per leased:
//! generator calls (inputs made for composed states included) over leased.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::time::Duration;

use clap::Args;
use stockroom_pool::stock_policy::{DemandLog, StateKey, StateNow, StockPolicy, assess, refills};

#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// `min_ready,max_ready` pairs (the same for every state), one comparison each.
    #[arg(long, value_delimiter = ';', default_value = "10,100;10,300;10,1000")]
    pub(crate) stock: Vec<String>,
    /// How long one generator call takes.
    #[arg(long, default_value = "150ms", value_parser = humantime::parse_duration)]
    pub(crate) call: Duration,
    /// Calls the generator takes at once.
    #[arg(long, default_value_t = 4)]
    pub(crate) concurrency: usize,
    /// Seed of the day's arrivals (the same for every policy).
    #[arg(long, default_value_t = 16)]
    pub(crate) seed: u64,
}

const REGISTERED: usize = 0;
const WITH_ARTICLES: usize = 1;
const ARTICLE: usize = 2;
const STATES: [(&str, &str); 3] = [
    ("user", "registered"),
    ("user", "with-articles"),
    ("article", "published"),
];
const GENERATOR: &str = "conduit";
/// How often the pool's replenisher looks without being woken.
const PASS_EVERY_MS: i64 = 500;

/// splitmix64: the day is the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// One CI job: when it arrives and what it leases.
#[derive(Debug, Clone)]
struct Job {
    arrive_ms: i64,
    items: Vec<(usize, u32)>,
}

/// The day: a busy morning, a quiet spell, a calmer afternoon, then nothing
/// for the last hour. Bursts of jobs arrive within 2 s of each other.
fn day(seed: u64) -> Vec<Job> {
    let mut rng = Rng(seed);
    let hour = 3_600_000_i64;
    let mut jobs = Vec::new();
    let burst = |rng: &mut Rng, at: i64, n: u64, jobs: &mut Vec<Job>| {
        for _ in 0..n {
            let arrive_ms = at + rng.range(0, 2_000) as i64;
            // Each job needs three datasets, from a mix of the states.
            let items = match rng.range(0, 9) {
                0..=4 => vec![(REGISTERED, 2), (ARTICLE, 1)],
                5..=7 => vec![(REGISTERED, 1), (WITH_ARTICLES, 1), (ARTICLE, 1)],
                _ => vec![(WITH_ARTICLES, 2), (ARTICLE, 1)],
            };
            jobs.push(Job { arrive_ms, items });
        }
    };
    // 0–3 h: bursts of 30–100 jobs every 3–6 minutes.
    let mut t = 60_000;
    while t < 3 * hour {
        let n = rng.range(30, 100);
        burst(&mut rng, t, n, &mut jobs);
        t += rng.range(180, 360) as i64 * 1000;
    }
    // 3–4.5 h: quiet, one job every 5–10 minutes.
    while t < 4 * hour + hour / 2 {
        burst(&mut rng, t, 1, &mut jobs);
        t += rng.range(300, 600) as i64 * 1000;
    }
    // 4.5–8 h: bursts of 30–60 jobs every 4–8 minutes.
    while t < 8 * hour {
        let n = rng.range(30, 60);
        burst(&mut rng, t, n, &mut jobs);
        t += rng.range(240, 480) as i64 * 1000;
    }
    jobs.sort_by_key(|j| j.arrive_ms);
    jobs
}

/// The end of the simulated day.
const DAY_END_MS: i64 = 9 * 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Arrive(usize),
    /// A call for this state finished.
    Done(usize),
    Pass,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    ready: u64,
    generating: u64,
}

struct Sim {
    policy: StockPolicy,
    min: u32,
    max: u32,
    call_ms: i64,
    concurrency: usize,
    now: i64,
    seq: u64,
    events: BinaryHeap<Reverse<(i64, u64, Ev)>>,
    counts: [Counts; 3],
    inflight: usize,
    max_inflight: usize,
    demand: DemandLog,
    filling: BTreeSet<StateKey>,
    jobs: Vec<Job>,
    /// Arrived, not yet granted, in arrival order.
    queue: VecDeque<usize>,
    /// Jobs whose last attempt fell short.
    short: BTreeSet<usize>,
    waited_ms: Vec<i64>,
    calls: u64,
    leased: u64,
    /// Ready datasets (all states) × milliseconds, for the mean.
    ready_ms: u128,
}

/// What one policy did over the day.
pub(crate) struct Outcome {
    pub(crate) policy: StockPolicy,
    pub(crate) min: u32,
    pub(crate) max: u32,
    pub(crate) jobs: usize,
    pub(crate) p50_s: f64,
    pub(crate) p95_s: f64,
    pub(crate) max_s: f64,
    pub(crate) leased: u64,
    pub(crate) left: u64,
    pub(crate) calls: u64,
    pub(crate) max_inflight: usize,
    /// Ready datasets held in the system under test, on average over the day.
    pub(crate) mean_ready: f64,
}

impl Outcome {
    pub(crate) fn over_generation_percent(&self) -> f64 {
        100.0 * self.left as f64 / self.leased.max(1) as f64
    }

    pub(crate) fn calls_per_leased(&self) -> f64 {
        self.calls as f64 / self.leased.max(1) as f64
    }
}

fn key(i: usize) -> StateKey {
    (STATES[i].0.to_string(), STATES[i].1.to_string())
}

fn index(k: &StateKey) -> usize {
    STATES
        .iter()
        .position(|(t, s)| *t == k.0 && *s == k.1)
        .unwrap_or(REGISTERED)
}

impl Sim {
    fn at(&mut self, t: i64, ev: Ev) {
        self.seq += 1;
        self.events.push(Reverse((t, self.seq, ev)));
    }

    /// The route's cost now, as the planner estimates it.
    fn lead_ms(&self, i: usize) -> i64 {
        if i == WITH_ARTICLES && self.counts[REGISTERED].ready == 0 {
            2 * self.call_ms
        } else {
            self.call_ms
        }
    }

    /// Starts one call for state `i` if a slot is free and `max_ready`
    /// allows (the store refuses the generating row beyond it).
    fn start(&mut self, i: usize) -> bool {
        if self.inflight >= self.concurrency {
            return false;
        }
        let c = self.counts[i];
        if c.ready + c.generating >= u64::from(self.max) {
            return false;
        }
        self.inflight += 1;
        self.max_inflight = self.max_inflight.max(self.inflight);
        self.counts[i].generating += 1;
        self.calls += 1;
        let mut took = self.call_ms;
        if i == WITH_ARTICLES {
            if self.counts[REGISTERED].ready > 0 {
                // Its input comes from stock.
                self.counts[REGISTERED].ready -= 1;
            } else {
                // Its input is made first, within the same slot.
                self.calls += 1;
                took += self.call_ms;
            }
        }
        self.at(self.now + took, Ev::Done(i));
        true
    }

    /// Waiting leases try in arrival order; the first that falls short asks
    /// for its shortfall just in time and holds the others back.
    fn serve(&mut self) {
        while let Some(&j) = self.queue.front() {
            let items = self.jobs[j].items.clone();
            let fits = items
                .iter()
                .all(|(i, n)| self.counts[*i].ready >= u64::from(*n));
            if fits {
                for (i, n) in &items {
                    self.counts[*i].ready -= u64::from(*n);
                    let (t, s) = STATES[*i];
                    self.demand.record(t, s, self.jobs[j].arrive_ms, *n);
                    self.leased += u64::from(*n);
                }
                self.waited_ms.push(self.now - self.jobs[j].arrive_ms);
                self.short.remove(&j);
                self.queue.pop_front();
                continue;
            }
            self.short.insert(j);
            for (i, n) in items {
                let c = self.counts[i];
                let missing = u64::from(n).saturating_sub(c.ready);
                let need = missing.saturating_sub(c.generating);
                for _ in 0..need {
                    if !self.start(i) {
                        break;
                    }
                }
            }
            break;
        }
    }

    /// One pass of pre-generation: the pool's policy decides.
    fn pass(&mut self) {
        let mut waiting = [0u64; 3];
        for j in &self.short {
            for (i, n) in &self.jobs[*j].items {
                waiting[*i] += u64::from(*n);
            }
        }
        let states: Vec<StateNow> = (0..3)
            .map(|i| StateNow {
                key: key(i),
                generator: GENERATOR.to_string(),
                concurrency: self.concurrency,
                lead_time: Duration::from_millis(self.lead_ms(i) as u64),
                ready: self.counts[i].ready,
                generating: self.counts[i].generating,
                min_ready: self.min,
                max_ready: self.max,
                waiting: waiting[i],
            })
            .collect();
        let assessed = assess(
            self.policy,
            &states,
            &mut self.demand,
            self.now,
            &self.filling,
        );
        let candidates: Vec<_> = assessed.into_iter().map(|(c, _)| c).collect();
        let free = BTreeMap::from([(
            GENERATOR.to_string(),
            self.concurrency.saturating_sub(self.inflight),
        )]);
        for k in refills(self.policy, &candidates, &free, &mut self.filling) {
            self.start(index(&k));
        }
    }

    fn run(mut self) -> Outcome {
        for j in 0..self.jobs.len() {
            let t = self.jobs[j].arrive_ms;
            self.at(t, Ev::Arrive(j));
        }
        let mut t = 0;
        while t <= DAY_END_MS {
            self.at(t, Ev::Pass);
            t += PASS_EVERY_MS;
        }
        while let Some(Reverse((t, _, ev))) = self.events.pop() {
            if t > DAY_END_MS {
                break;
            }
            let ready: u64 = self.counts.iter().map(|c| c.ready).sum();
            self.ready_ms += u128::from(ready) * u128::from((t - self.now) as u64);
            self.now = t;
            match ev {
                Ev::Arrive(j) => self.queue.push_back(j),
                Ev::Done(i) => {
                    self.counts[i].generating -= 1;
                    self.counts[i].ready += 1;
                    self.inflight -= 1;
                }
                Ev::Pass => {}
            }
            // Whatever changed: waiters try, then the replenisher looks.
            self.serve();
            self.pass();
        }
        let mut waited = self.waited_ms.clone();
        waited.sort_unstable();
        let q = |p: f64| -> f64 {
            if waited.is_empty() {
                return 0.0;
            }
            let at = ((waited.len() as f64 * p).ceil() as usize).clamp(1, waited.len()) - 1;
            waited[at] as f64 / 1000.0
        };
        Outcome {
            policy: self.policy,
            min: self.min,
            max: self.max,
            jobs: self.waited_ms.len(),
            p50_s: q(0.50),
            p95_s: q(0.95),
            max_s: waited.last().map_or(0.0, |m| *m as f64 / 1000.0),
            leased: self.leased,
            left: self.counts.iter().map(|c| c.ready + c.generating).sum(),
            calls: self.calls,
            max_inflight: self.max_inflight,
            mean_ready: self.ready_ms as f64 / DAY_END_MS as f64,
        }
    }
}

/// Simulates the day under one policy.
pub(crate) fn simulate(
    policy: StockPolicy,
    min: u32,
    max: u32,
    call: Duration,
    concurrency: usize,
    seed: u64,
) -> Outcome {
    let jobs = day(seed);
    Sim {
        policy,
        min,
        max,
        call_ms: i64::try_from(call.as_millis()).unwrap_or(i64::MAX).max(1),
        concurrency: concurrency.max(1),
        now: 0,
        seq: 0,
        events: BinaryHeap::new(),
        counts: [Counts::default(); 3],
        inflight: 0,
        max_inflight: 0,
        demand: DemandLog::default(),
        filling: BTreeSet::new(),
        jobs,
        queue: VecDeque::new(),
        short: BTreeSet::new(),
        waited_ms: Vec::new(),
        calls: 0,
        leased: 0,
        ready_ms: 0,
    }
    .run()
}

fn parse_pair(text: &str) -> Result<(u32, u32), String> {
    let (a, b) = text
        .split_once(',')
        .ok_or_else(|| format!("--stock wants MIN,MAX pairs separated by ';', found {text:?}"))?;
    let min: u32 = a
        .trim()
        .parse()
        .map_err(|e| format!("min_ready {a:?}: {e}"))?;
    let max: u32 = b
        .trim()
        .parse()
        .map_err(|e| format!("max_ready {b:?}: {e}"))?;
    if min > max {
        return Err(format!("max_ready {max} is below min_ready {min}"));
    }
    Ok((min, max))
}

/// Runs every comparison and prints the Markdown table.
pub(crate) fn run(args: &SimulateArgs) -> Result<bool, String> {
    let pairs: Vec<(u32, u32)> = args
        .stock
        .iter()
        .map(|s| parse_pair(s))
        .collect::<Result<_, _>>()?;
    let jobs = day(args.seed);
    let datasets: u32 = jobs.iter().flat_map(|j| &j.items).map(|(_, n)| n).sum();
    println!(
        "Simulated day: {} jobs ({datasets} datasets), 1 generator × {} at {} per call (~{:.0}/s), seed {}",
        jobs.len(),
        args.concurrency,
        stockroom_protocol::HumanDuration(args.call),
        args.concurrency as f64 / args.call.as_secs_f64().max(0.001),
        args.seed
    );
    println!();
    println!(
        "| policy | min_ready | max_ready | p50 time to data | p95 | max | over-generation | calls per leased | mean ready | most calls at once |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut ok = true;
    for (min, max) in pairs {
        for policy in [StockPolicy::Static, StockPolicy::Demand] {
            let o = simulate(policy, min, max, args.call, args.concurrency, args.seed);
            if o.jobs != jobs.len() || o.max_inflight > args.concurrency {
                eprintln!(
                    "pool-bench simulate: {} jobs of {} served, {} calls at once (concurrency {})",
                    o.jobs,
                    jobs.len(),
                    o.max_inflight,
                    args.concurrency
                );
                ok = false;
            }
            println!(
                "| {} | {} | {} | {:.2} s | {:.2} s | {:.2} s | {:.1} % ({} left of {} leased) | {:.2} | {:.0} | {} |",
                o.policy.as_str(),
                o.min,
                o.max,
                o.p50_s,
                o.p95_s,
                o.max_s,
                o.over_generation_percent(),
                o.left,
                o.leased,
                o.calls_per_leased(),
                o.mean_ready,
                o.max_inflight
            );
        }
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_is_the_same_for_every_policy_and_every_job_is_served() {
        assert_eq!(day(16).len(), day(16).len());
        let jobs = day(16).len();
        for policy in [StockPolicy::Static, StockPolicy::Demand] {
            let o = simulate(policy, 10, 100, Duration::from_millis(150), 4, 16);
            assert_eq!(o.jobs, jobs);
            assert!(o.max_inflight <= 4);
            assert!(
                o.calls as f64 >= o.leased as f64,
                "every leased dataset was made"
            );
        }
    }
}
