//! Supply: the generators behind the pool (docs/generators.md).
//!
//! - Capabilities are loaded at start and refreshed (every
//!   [`REFRESH_EVERY`], every second while some generator has never answered,
//!   and on `POST /api/v1/generators/refresh`). A generator that is down keeps
//!   its last capabilities; one that never answered contributes no states, and
//!   configured states nobody can make show as unavailable.
//! - The catalog graph is rebuilt leniently from all answers; its problems
//!   (a state claimed twice, unknown states, cycles) are logged at warn and
//!   exposed in the catalog's `problems`.
//! - Pre-generation follows the stock policy ([`crate::stock_policy`]): a
//!   target per state between `min_ready` and `max_ready` from the leases the
//!   service records here ([`Supply::record_leases`]), refills to states that
//!   leases wait for first, then by relative deficit, launching no more calls
//!   than each generator's free concurrency; a `generating` row is written
//!   before each call and the store refuses it once ready + generating reach
//!   `max_ready`. A call decided on counts as generating from the decision
//!   until its row is written, so no pass and no waiter asks for it twice. Settings are read from the store on every pass, so a change
//!   counts at once.
//! - Just in time: a lease that finds no stock asks for at most its shortfall,
//!   made by the planner's cheapest route (`stockroom_generators::plan`).
//! - A call that fails leaves the row `failed` with its error; the generator's
//!   health gate then holds calls back, and the planner routes around it.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::json;
use stockroom_generators::client::AnyGenerator;
use stockroom_generators::{
    CatalogGraph, Goal, HealthPolicy, Operation, PlanContext, PlanStep, TrackedGenerator, plan,
};
use stockroom_protocol::api::{CatalogState, GeneratorHealth, LeaseItem, StockCounts};
use stockroom_protocol::generator::{
    Capabilities, ExtendRequest, GenerateRequest, LifecycleCall, LifecycleRequest,
};
use stockroom_protocol::pool_config::{GeneratorConfig, StockConfig};
use stockroom_protocol::{Attributes, Dataset};
use tokio::sync::Notify;

use crate::catalog::CatalogSource;
use crate::service::Clock;
use crate::stock_policy::{self, Candidate, DemandLog, StateKey, StockPolicy, StockTarget};
use crate::store::{
    Generated, InputPick, ItemShortfall, LifecycleOutcome, LifecycleTask, NewGeneration,
    StockTable, Store, StoreError,
};
use crate::waiting::WaitQueue;

/// How often capabilities are refreshed when every generator has answered.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// How often stock is looked at, besides the wake-ups from leases and stock changes.
pub const REPLENISH_EVERY: Duration = Duration::from_millis(500);
/// The cost the planner assumes for a generator with no measured latency.
pub const UNKNOWN_LATENCY: Duration = Duration::from_secs(1);
/// The reason given to generations a restart interrupted.
pub const RESTART_REASON: &str = "pool restarted during generation";

/// What the pool knows from the last capabilities of each generator.
#[derive(Default)]
struct View {
    graph: CatalogGraph,
    /// Last good capabilities, by generator.
    caps: BTreeMap<String, Capabilities>,
    /// Why the last capabilities call failed, by generator.
    errors: BTreeMap<String, String>,
    problems: Vec<String>,
}

/// The answer of a refresh (`POST /api/v1/generators/refresh`).
pub type RefreshReport = stockroom_protocol::api::RefreshAnswer;
use stockroom_protocol::api::RefreshedGenerator;

/// Why a dataset was not made.
#[derive(Debug, Clone)]
pub enum MakeError {
    /// The state's stock reached `max_ready`; nothing was started.
    Capped,
    /// Nothing could be started (no route, the store failed).
    NotStarted(String),
    /// A generation started and failed; its row is `failed`.
    Failed { generator: String, error: String },
}

impl std::fmt::Display for MakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MakeError::Capped => f.write_str("stock of the state is at max_ready"),
            MakeError::NotStarted(why) => f.write_str(why),
            MakeError::Failed { error, .. } => f.write_str(error),
        }
    }
}

impl From<StoreError> for MakeError {
    fn from(e: StoreError) -> Self {
        MakeError::NotStarted(e.to_string())
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The generators of a running pool.
pub struct Supply {
    store: Arc<dyn Store>,
    queue: WaitQueue,
    clock: Arc<dyn Clock>,
    generators: Vec<Arc<TrackedGenerator>>,
    concurrency: BTreeMap<String, usize>,
    configured_stock: Vec<(String, String)>,
    view: RwLock<Arc<View>>,
    /// Calls in flight per generator (started by this pool).
    inflight: Mutex<BTreeMap<String, usize>>,
    /// Just-in-time generations in flight per (type, state, where).
    jit: Mutex<BTreeMap<(String, String, String), u64>>,
    /// Generations decided on whose `generating` row is not written yet, per
    /// state. The store's counts cannot see them, so a pass or a waiter's
    /// retry in that window would ask for them again and overshoot.
    unwritten: Mutex<BTreeMap<StateKey, u64>>,
    /// A consistent cut of `unwritten` and the store's counts: writing a
    /// decided-on row and uncounting it hold this shared; reading both for a
    /// pass holds it exclusively, so a row is never counted twice or missed.
    counting: tokio::sync::RwLock<()>,
    refresh_lock: tokio::sync::Mutex<()>,
    wake: Notify,
    /// How often replenishment was asked for (`poke`), for metrics and tests.
    replenish_requests: std::sync::atomic::AtomicU64,
    /// How much stock to keep (`stock_policy` of the config).
    policy: StockPolicy,
    /// The `static` policy's states being filled from below `min_ready` up to `max_ready`.
    filling: Mutex<BTreeSet<(String, String)>>,
    /// Leases seen per state, in this process (docs/pool.md, "Stock").
    demand: Mutex<DemandLog>,
    /// `verify_after` of configured stock (docs/generators.md, "Lifecycle calls").
    verify_after: BTreeMap<(String, String), Duration>,
    /// How long a claimed lifecycle call is held: the longest call can take.
    lifecycle_hold: Duration,
}

/// Counts a call in flight for its lifetime.
struct InFlight<'a> {
    supply: &'a Supply,
    generator: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut m = self.supply.lock_inflight();
        if let Some(n) = m.get_mut(&self.generator) {
            *n = n.saturating_sub(1);
        }
        drop(m);
        // A slot came free: the replenisher may start another call.
        self.supply.wake.notify_one();
    }
}

/// A generator slot taken before a call is spawned, so that passes running
/// before the call starts see it taken; given back on drop.
struct Slot {
    supply: Arc<Supply>,
    generator: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.supply.lock_inflight();
        if let Some(n) = m.get_mut(&self.generator) {
            *n = n.saturating_sub(1);
        }
        drop(m);
        self.supply.wake.notify_one();
    }
}

/// Counts a just-in-time generation for a lease item for its lifetime;
/// `unwritten` until the call's row is written.
struct JitGuard {
    supply: Arc<Supply>,
    key: (String, String, String),
    unwritten: Option<Unwritten>,
}

/// A generation decided on (a slot taken, a shortfall asked for) whose
/// `generating` row is not written yet; uncounted on drop.
struct Unwritten {
    supply: Arc<Supply>,
    key: StateKey,
}

impl Drop for Unwritten {
    fn drop(&mut self) {
        let mut m = self.supply.lock_unwritten();
        if let Some(n) = m.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

/// What the caller of [`Supply::make`] took before spawning it: the top
/// generator's slot and the generation's count as not yet written.
struct Launch {
    slot: Slot,
    unwritten: Option<Unwritten>,
}

impl Drop for JitGuard {
    fn drop(&mut self) {
        let mut m = self.supply.lock_jit();
        if let Some(n) = m.get_mut(&self.key) {
            *n = n.saturating_sub(1);
        }
    }
}

fn top_generator(step: &PlanStep) -> Option<&str> {
    match step {
        PlanStep::TakeReady { .. } => None,
        PlanStep::Generate { generator, .. } | PlanStep::Extend { generator, .. } => {
            Some(generator)
        }
    }
}

/// Why `POST /stock/{type}/{state}/verify` did nothing.
#[derive(Debug, thiserror::Error)]
pub enum VerifyAllError {
    #[error("no generator offers verify for this state")]
    NotOffered,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A state whose promises changed under its ready stock.
struct StateChange {
    type_name: String,
    state: String,
    /// Whether verifying can tell (else the stock is discarded).
    verify_can_settle: bool,
    why: String,
}

/// States present in both graphs whose fields grew or whose lifecycle changed.
fn changed_states(old: &CatalogGraph, new: &CatalogGraph) -> Vec<StateChange> {
    let mut out = Vec::new();
    for key in new.known_states() {
        let Some((t, s)) = key
            .split_once('/')
            .map(|(t, s)| (t.to_string(), s.to_string()))
        else {
            continue;
        };
        let (Some(before), Some(after)) = (old.state(&t, &s), new.state(&t, &s)) else {
            continue;
        };
        let added: Vec<&String> = after
            .fields
            .iter()
            .filter(|f| !before.fields.contains(f))
            .collect();
        if !added.is_empty() {
            let names: Vec<&str> = added.iter().map(|f| f.as_str()).collect();
            out.push(StateChange {
                type_name: t,
                state: s,
                verify_can_settle: false,
                why: format!(
                    "capabilities changed: the state now promises field(s) {} it was not made with",
                    names.join(", ")
                ),
            });
        } else if before.lifecycle != after.lifecycle {
            let words = |l: &[LifecycleCall]| {
                if l.is_empty() {
                    "none".to_string()
                } else {
                    l.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
                }
            };
            out.push(StateChange {
                type_name: t,
                state: s,
                verify_can_settle: after.lifecycle.contains(&LifecycleCall::Verify),
                why: format!(
                    "capabilities changed: lifecycle {} → {}",
                    words(&before.lifecycle),
                    words(&after.lifecycle)
                ),
            });
        }
    }
    out
}

fn humantime_ms(d: Duration) -> String {
    stockroom_protocol::HumanDuration(d).to_string()
}

fn reasons_pool() -> &'static str {
    "pool"
}

/// The attributes of `attrs` that a state declares.
fn declared(graph: &CatalogGraph, type_name: &str, state: &str, attrs: &Attributes) -> Attributes {
    match graph.state(type_name, state) {
        Some(info) => attrs
            .iter()
            .filter(|(k, _)| info.attributes.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        None => Attributes::new(),
    }
}

impl Supply {
    pub fn new(
        store: Arc<dyn Store>,
        queue: WaitQueue,
        clock: Arc<dyn Clock>,
        generators: &[GeneratorConfig],
        stock: &[StockConfig],
        policy: StockPolicy,
    ) -> Supply {
        Supply {
            store,
            queue,
            clock,
            generators: generators
                .iter()
                .map(|c| {
                    Arc::new(TrackedGenerator::new(
                        AnyGenerator::from_config(c),
                        HealthPolicy::default(),
                    ))
                })
                .collect(),
            concurrency: generators
                .iter()
                .map(|c| (c.name.clone(), c.concurrency.max(1) as usize))
                .collect(),
            configured_stock: stock
                .iter()
                .map(|s| (s.type_name.clone(), s.state.clone()))
                .collect(),
            view: RwLock::default(),
            inflight: Mutex::default(),
            jit: Mutex::default(),
            unwritten: Mutex::default(),
            counting: tokio::sync::RwLock::new(()),
            refresh_lock: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            replenish_requests: Default::default(),
            policy,
            filling: Mutex::default(),
            demand: Mutex::default(),
            verify_after: stock
                .iter()
                .filter_map(|s| {
                    s.verify_after
                        .map(|d| ((s.type_name.clone(), s.state.clone()), d.as_duration()))
                })
                .collect(),
            // Retries fit in one timeout; the margin covers the store writes.
            lifecycle_hold: generators
                .iter()
                .map(|c| c.timeout.as_duration())
                .max()
                .unwrap_or(Duration::ZERO)
                + Duration::from_secs(30),
        }
    }

    fn lock_inflight(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, usize>> {
        self.inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_jit(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String, String), u64>> {
        self.jit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_unwritten(&self) -> std::sync::MutexGuard<'_, BTreeMap<StateKey, u64>> {
        self.unwritten
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one generation of `key` as decided on until its row is written.
    fn unwritten(self: &Arc<Self>, key: &StateKey) -> Unwritten {
        *self.lock_unwritten().entry(key.clone()).or_default() += 1;
        Unwritten {
            supply: Arc::clone(self),
            key: key.clone(),
        }
    }

    /// The store's stock with the generations decided on but not yet
    /// written counted as generating. A count too high would end the
    /// `static` policy's filling early, one too low would overshoot: no
    /// decided-on row is written while both are read.
    async fn stock_with_unwritten(&self) -> Result<StockTable, StoreError> {
        let _cut = self.counting.write().await;
        let unwritten = self.lock_unwritten().clone();
        let mut stock = self.store.stock().await?;
        for (key, n) in unwritten {
            if let Some(counts) = stock.get_mut(&key) {
                counts.generating += n;
            }
        }
        Ok(stock)
    }

    fn lock_filling(&self) -> std::sync::MutexGuard<'_, BTreeSet<(String, String)>> {
        self.filling
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_demand(&self) -> std::sync::MutexGuard<'_, DemandLog> {
        self.demand
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn view(&self) -> Arc<View> {
        match self.view.read() {
            Ok(v) => Arc::clone(&v),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    fn generator(&self, name: &str) -> Option<&Arc<TrackedGenerator>> {
        self.generators.iter().find(|g| g.name() == name)
    }

    /// Whether any generators are configured.
    pub fn is_empty(&self) -> bool {
        self.generators.is_empty()
    }

    /// The current catalog graph.
    pub fn graph(&self) -> CatalogGraph {
        self.view().graph.clone()
    }

    /// Problems found in the generators' capabilities, as sentences.
    pub fn problems(&self) -> Vec<String> {
        self.view().problems.clone()
    }

    /// Says that stock may need replenishing now (a lease drained it, a setting changed).
    pub fn poke(&self) {
        self.replenish_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// How many times replenishment was asked for since start.
    pub fn replenish_requests(&self) -> u64 {
        self.replenish_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn free_slots(&self, generator: &str) -> usize {
        let limit = self.concurrency.get(generator).copied().unwrap_or(1);
        let used = self.lock_inflight().get(generator).copied().unwrap_or(0);
        limit.saturating_sub(used)
    }

    /// Takes one of a generator's `concurrency` slots, if one is free.
    fn take_slot(self: &Arc<Self>, generator: &str) -> Option<Slot> {
        let limit = self.concurrency.get(generator).copied().unwrap_or(1);
        let mut m = self.lock_inflight();
        let used = m.entry(generator.to_string()).or_default();
        if *used >= limit {
            return None;
        }
        *used += 1;
        Some(Slot {
            supply: Arc::clone(self),
            generator: generator.to_string(),
        })
    }

    /// A generator the planner may use: it has answered capabilities and is
    /// not held back by its health gate.
    fn usable(&self, view: &View, name: &str) -> bool {
        view.caps.contains_key(name) && self.generator(name).is_some_and(|g| g.ready_to_call())
    }

    /// Asks every generator for its capabilities and rebuilds the graph.
    pub async fn refresh(&self) -> RefreshReport {
        let _one_at_a_time = self.refresh_lock.lock().await;
        let mut tasks = tokio::task::JoinSet::new();
        for (i, g) in self.generators.iter().enumerate() {
            let g = Arc::clone(g);
            tasks.spawn(async move { (i, g.capabilities().await) });
        }
        let mut answers = Vec::with_capacity(self.generators.len());
        while let Some(joined) = tasks.join_next().await {
            if let Ok(answer) = joined {
                answers.push(answer);
            }
        }
        answers.sort_by_key(|(i, _)| *i);
        let old = self.view();
        let mut caps = old.caps.clone();
        let mut errors = BTreeMap::new();
        for (i, answer) in answers {
            let name = self.generators[i].name().to_string();
            match answer {
                Ok(c) => {
                    if !caps.contains_key(&name) {
                        tracing::info!(generator = %name, states = c.produces.len(),
                            extensions = c.extensions.len(), "generator answered its capabilities");
                    }
                    caps.insert(name, c);
                }
                Err(e) => {
                    if !old.errors.contains_key(&name) {
                        tracing::warn!(generator = %name, error = %e,
                            "cannot load capabilities; its states are unavailable until it answers");
                    }
                    errors.insert(name, e.to_string());
                }
            }
        }
        let ordered: Vec<(String, Capabilities)> = self
            .generators
            .iter()
            .filter_map(|g| {
                caps.get(g.name())
                    .map(|c| (g.name().to_string(), c.clone()))
            })
            .collect();
        let (graph, graph_errors) = CatalogGraph::build_lenient(ordered);
        let problems: Vec<String> = graph_errors.iter().map(ToString::to_string).collect();
        for p in problems.iter().filter(|p| !old.problems.contains(p)) {
            tracing::warn!(problem = %p, "generator capabilities conflict");
        }
        let report = RefreshReport {
            generators: self
                .generators
                .iter()
                .map(|g| {
                    let name = g.name().to_string();
                    let c = caps.get(&name);
                    RefreshedGenerator {
                        ok: !errors.contains_key(&name),
                        error: errors.get(&name).cloned(),
                        produces: c.map_or_else(Vec::new, |c| {
                            c.produces
                                .iter()
                                .map(|p| format!("{}/{}", p.type_name, p.state))
                                .collect()
                        }),
                        extensions: c.map_or_else(Vec::new, |c| {
                            c.extensions.iter().map(|e| e.name.clone()).collect()
                        }),
                        name,
                    }
                })
                .collect(),
            problems: problems.clone(),
        };
        let changed = changed_states(&old.graph, &graph);
        let view = View {
            graph,
            caps,
            errors,
            problems,
        };
        for change in changed {
            self.on_capabilities_changed(change).await;
        }
        match self.view.write() {
            Ok(mut v) => *v = Arc::new(view),
            Err(p) => *p.into_inner() = Arc::new(view),
        }
        self.wake.notify_one();
        // New states may serve waiting leases.
        self.queue.notify();
        report
    }

    /// The generator that makes a state (its first route's) and, when it is
    /// down (failing, backing off, or never answered), why: for the 503
    /// `shortfall` and the sidecar's progress lines.
    pub fn generator_status(
        &self,
        type_name: &str,
        state: &str,
    ) -> Option<(String, Option<String>)> {
        let view = self.view();
        let info = view.graph.state(type_name, state)?;
        let name = info.routes.first().map(|r| match r {
            stockroom_generators::Route::Generate { generator, .. }
            | stockroom_generators::Route::Extend { generator, .. } => generator.clone(),
        })?;
        let health = self.health().into_iter().find(|h| h.name == name)?;
        let down = (!health.available).then(|| {
            health
                .last_error
                .unwrap_or_else(|| "not answering".to_string())
        });
        Some((name, down))
    }

    /// When no route can make a state now because its generators are down:
    /// the generator to name and why (a lease then fails early with
    /// `generator-failed` instead of waiting). `None` when it can be made,
    /// or when no generator offers it at all (registered stock).
    pub fn unmakeable(&self, type_name: &str, state: &str) -> Option<(String, String)> {
        let view = self.view();
        view.graph.state(type_name, state)?;
        let health = self.health();
        let up = |name: &str| {
            health
                .iter()
                .find(|h| h.name == name)
                .is_none_or(|h| h.available)
        };
        if view.graph.can_make(type_name, state, &up) {
            return None;
        }
        let (generator, down) = self.generator_status(type_name, state)?;
        let why = down.unwrap_or_else(|| "a generator it needs is down".to_string());
        Some((generator, why))
    }

    /// Health of every generator, in config order. One that never answered
    /// its capabilities is unavailable.
    pub fn health(&self) -> Vec<GeneratorHealth> {
        let view = self.view();
        self.generators
            .iter()
            .map(|g| {
                let mut h = g.health();
                if !view.caps.contains_key(g.name()) {
                    h.available = false;
                    if let Some(e) = view.errors.get(g.name()) {
                        h.last_error = Some(e.clone());
                    }
                }
                h
            })
            .collect()
    }

    fn plan_for(
        &self,
        view: &View,
        stock: &StockTable,
        type_name: &str,
        state: &str,
        goal: Goal,
    ) -> Option<PlanStep> {
        let ready = |t: &str, s: &str| {
            stock
                .get(&(t.to_string(), s.to_string()))
                .map_or(0, |c| c.ready)
        };
        let latency = |g: &str, op: Operation| self.generator(g).and_then(|g| g.median_latency(op));
        let available = |g: &str| self.usable(view, g);
        let ctx = PlanContext {
            ready: &ready,
            latency: &latency,
            available: &available,
            unknown_latency: UNKNOWN_LATENCY,
        };
        plan(&view.graph, type_name, state, goal, &ctx).ok()
    }

    /// The cheapest plan to get one dataset of a state now (for inspection and tests).
    pub async fn plan(&self, type_name: &str, state: &str, goal: Goal) -> Option<PlanStep> {
        let stock = self.store.stock().await.ok()?;
        self.plan_for(&self.view(), &stock, type_name, state, goal)
    }

    /// Makes one dataset by `step`. With `part_of`, the dataset becomes a
    /// part of that generating dataset (input name given); otherwise it is stock.
    /// `launch`: what the caller took for it (the top generator's slot,
    /// [`Supply::take_slot`], and its not-yet-written count, given back once
    /// the row is written or refused); without it the call is counted here.
    fn make<'a>(
        &'a self,
        view: &'a View,
        step: &'a PlanStep,
        attrs: Attributes,
        cap: Option<u64>,
        part_of: Option<String>,
        launch: Option<Launch>,
    ) -> BoxFuture<'a, Result<Dataset, MakeError>> {
        Box::pin(async move {
            let (slot, mut unwritten) = match launch {
                Some(Launch { slot, unwritten }) => (Some(slot), unwritten),
                None => (None, None),
            };
            let (generator_name, type_name, state) = match step {
                PlanStep::TakeReady { .. } => {
                    return Err(MakeError::NotStarted(
                        "a ready dataset is taken, not made".into(),
                    ));
                }
                PlanStep::Generate {
                    generator,
                    type_name,
                    state,
                    ..
                }
                | PlanStep::Extend {
                    generator,
                    type_name,
                    state,
                    ..
                } => (generator, type_name, state),
            };
            let Some(info) = view.graph.state(type_name, state) else {
                return Err(MakeError::NotStarted(format!(
                    "state {type_name}/{state} is unknown"
                )));
            };
            let Some(generator) = self.generator(generator_name) else {
                return Err(MakeError::NotStarted(format!(
                    "generator {generator_name:?} is not configured"
                )));
            };
            let attrs = declared(&view.graph, type_name, state, &attrs);
            let request_summary = match step {
                PlanStep::Extend {
                    extension, source, ..
                } => json!({"extend": extension, "type": type_name, "to": state,
                            "from": match source.as_ref() {
                                PlanStep::TakeReady { state, .. }
                                | PlanStep::Generate { state, .. }
                                | PlanStep::Extend { state, .. } => state.clone(),
                            },
                            "attributes": attrs}),
                _ => json!({"type": type_name, "state": state, "attributes": attrs,
                            "inputs": info.requires().iter().map(|r| r.name.clone()).collect::<Vec<_>>()}),
            };
            let cut = if unwritten.is_some() {
                Some(self.counting.read().await)
            } else {
                None
            };
            let begun = self
                .store
                .begin_generation(
                    NewGeneration {
                        type_name: type_name.clone(),
                        state: state.clone(),
                        generator: generator_name.clone(),
                        request: request_summary,
                        reusable: info.reusable,
                        cap,
                        lifecycle: info.lifecycle.clone(),
                    },
                    self.clock.now_ms(),
                )
                .await;
            // Written or refused: the store's counts tell from here on.
            drop(unwritten.take());
            drop(cut);
            let Some(id) = begun? else {
                return Err(MakeError::Capped);
            };
            // `slot` (held to the end) or this counts the call in flight.
            let _inflight = slot.is_none().then(|| {
                *self
                    .lock_inflight()
                    .entry(generator_name.clone())
                    .or_default() += 1;
                InFlight {
                    supply: self,
                    generator: generator_name.clone(),
                }
            });
            let outcome = self.call(view, step, &id, &attrs, generator).await;
            let (generated, error) = match outcome {
                Ok(g) => (Some(g), None),
                Err(e) => (None, Some(e)),
            };
            if let Some(error) = error {
                tracing::warn!(dataset_id = %id, generator = %generator_name,
                    state = %format!("{type_name}/{state}"), %error, "generation failed");
                self.store
                    .fail_generation(id.clone(), error.clone(), self.clock.now_ms())
                    .await?;
                return Err(MakeError::Failed {
                    generator: generator_name.clone(),
                    error,
                });
            }
            let Some(mut generated) = generated else {
                return Err(MakeError::NotStarted("nothing was generated".into()));
            };
            generated.part_of = part_of;
            let is_stock = generated.part_of.is_none();
            match self
                .store
                .complete_generation(id.clone(), generated, self.clock.now_ms())
                .await?
            {
                Some(view) => {
                    if is_stock {
                        self.queue.notify();
                    }
                    Ok(view.dataset)
                }
                None => Err(MakeError::NotStarted(format!(
                    "generation {id} was marked failed while running"
                ))),
            }
        })
    }

    /// The generator call of one step, its inputs first. `Err` is the
    /// failure text kept with the failed row.
    async fn call(
        &self,
        view: &View,
        step: &PlanStep,
        id: &str,
        attrs: &Attributes,
        generator: &TrackedGenerator,
    ) -> Result<Generated, String> {
        match step {
            PlanStep::TakeReady { .. } => Err("nothing to call".into()),
            PlanStep::Generate {
                type_name,
                state,
                inputs,
                ..
            } => {
                let Some(info) = view.graph.state(type_name, state) else {
                    return Err(format!("state {type_name}/{state} is unknown"));
                };
                let requires = info.requires();
                let mut datasets = BTreeMap::new();
                for (name, input_step) in inputs {
                    let Some(r) = requires.iter().find(|r| &r.name == name) else {
                        return Err(format!("input {name:?} is not required"));
                    };
                    let ds = self
                        .input(view, id, name, &r.type_name, &r.state, input_step, attrs)
                        .await
                        .map_err(|e| {
                            format!(
                                "input {name:?} ({}/{}) could not be made: {e}",
                                r.type_name, r.state
                            )
                        })?;
                    datasets.insert(name.clone(), ds);
                }
                let request = GenerateRequest {
                    // The generating row's id: the same on every retry of this call.
                    request_id: id.to_string(),
                    type_name: type_name.clone(),
                    state: state.clone(),
                    attributes: attrs.clone(),
                    inputs: datasets.clone(),
                };
                let answer = generator
                    .generate(&info.as_produced_state(), &request)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Generated {
                    attributes: answer.attributes,
                    data: answer.data,
                    secret_fields: answer.secret_fields,
                    entities: answer.entities,
                    reason: format!("generated by generator {:?}", generator.name()),
                    part_of: None,
                    inputs: datasets,
                })
            }
            PlanStep::Extend {
                extension,
                type_name,
                state,
                source,
                ..
            } => {
                let Some(ext) = view.graph.extension(type_name, extension) else {
                    return Err(format!("extension {extension:?} of {type_name} is unknown"));
                };
                let target_fields = view
                    .graph
                    .state(type_name, state)
                    .map(|s| s.fields.clone())
                    .unwrap_or_default();
                let src = self
                    .input(view, id, "source", type_name, &ext.spec.from, source, attrs)
                    .await
                    .map_err(|e| {
                        format!(
                            "source {type_name}/{} could not be made: {e}",
                            ext.spec.from
                        )
                    })?;
                let source_id = src.id.clone();
                let attributes = src.attributes.clone();
                let request = ExtendRequest {
                    request_id: id.to_string(),
                    extension: extension.clone(),
                    dataset: src,
                };
                let answer = generator
                    .extend(&ext.spec, &target_fields, &request)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Generated {
                    attributes,
                    data: answer.data,
                    secret_fields: answer.secret_fields,
                    entities: answer.entities,
                    reason: format!(
                        "made from {source_id} by extension {extension:?} of generator {:?}",
                        generator.name()
                    ),
                    part_of: None,
                    inputs: Default::default(),
                })
            }
        }
    }

    /// One input of a generation: from stock where the plan says so (and
    /// stock still has one), else made for it.
    #[allow(clippy::too_many_arguments)]
    async fn input(
        &self,
        view: &View,
        parent: &str,
        name: &str,
        type_name: &str,
        state: &str,
        step: &PlanStep,
        attrs: &Attributes,
    ) -> Result<Dataset, MakeError> {
        let where_ = declared(&view.graph, type_name, state, attrs);
        if matches!(step, PlanStep::TakeReady { .. }) {
            let pick = InputPick {
                part_of: parent.to_string(),
                input_name: name.to_string(),
                type_name: type_name.to_string(),
                state: state.to_string(),
                where_: where_.clone(),
            };
            if let Some(ds) = self.store.take_input(pick, self.clock.now_ms()).await? {
                return Ok(ds);
            }
            // Stock ran out (or none matches the filter) since planning: make one.
            let stock = self.store.stock().await?;
            let Some(made) = self.plan_for(view, &stock, type_name, state, Goal::Produce) else {
                return Err(MakeError::NotStarted(format!(
                    "no route makes {type_name}/{state} with the generators available now"
                )));
            };
            return self
                .make(view, &made, where_, None, Some(parent.to_string()), None)
                .await;
        }
        self.make(view, step, where_, None, Some(parent.to_string()), None)
            .await
    }

    /// A lease was granted: its items count as demand for their states, at
    /// the time the request was asked for.
    pub fn record_leases(&self, items: &[LeaseItem], asked_ms: i64) {
        let mut demand = self.lock_demand();
        for i in items {
            demand.record(&i.type_name, &i.state, asked_ms, i.count);
        }
    }

    /// The stock policy's view of every state with stock settings that a
    /// generator can make now: its candidate for refills, the step that
    /// makes one, and its target (one computation for the catalog and for
    /// pre-generation).
    fn policy_inputs(
        &self,
        view: &View,
        stock: &StockTable,
    ) -> Vec<(Candidate, PlanStep, StockTarget)> {
        let waiting = self.queue.waiting_by_state();
        let mut states = Vec::new();
        let mut steps = Vec::new();
        for ((type_name, state), counts) in stock {
            let (Some(min), Some(max)) = (counts.min_ready, counts.max_ready) else {
                continue;
            };
            if view.graph.state(type_name, state).is_none() {
                continue;
            }
            let Some(step) = self.plan_for(view, stock, type_name, state, Goal::Produce) else {
                continue;
            };
            let Some(generator) = top_generator(&step).map(str::to_string) else {
                continue;
            };
            let key: StateKey = (type_name.clone(), state.clone());
            states.push(stock_policy::StateNow {
                concurrency: self.concurrency.get(&generator).copied().unwrap_or(1),
                generator,
                lead_time: match step.cost() {
                    Duration::ZERO => UNKNOWN_LATENCY,
                    d => d,
                },
                ready: counts.ready,
                generating: counts.generating,
                min_ready: min,
                max_ready: max,
                waiting: waiting.get(&key).copied().unwrap_or(0),
                key,
            });
            steps.push(step);
        }
        let filling = self.lock_filling().clone();
        let assessed = stock_policy::assess(
            self.policy,
            &states,
            &mut self.lock_demand(),
            self.clock.now_ms(),
            &filling,
        );
        assessed
            .into_iter()
            .zip(steps)
            .map(|((c, t), step)| (c, step, t))
            .collect()
    }

    /// Fills in each state's `target` (what the stock policy aims for now and why).
    pub fn annotate(&self, stock: &mut StockTable) {
        if self.generators.is_empty() {
            return;
        }
        let view = self.view();
        for (c, _, target) in self.policy_inputs(&view, stock) {
            if let Some(counts) = stock.get_mut(&c.key) {
                counts.target = Some(target);
            }
        }
    }

    /// One replenishment pass: the stock policy says which states to refill
    /// and in which order, within the generators' free concurrency.
    pub async fn replenish(self: &Arc<Self>) {
        if self.generators.is_empty() {
            // Nothing could make stock: spare the store the count of every state.
            return;
        }
        let Ok(stock) = self.stock_with_unwritten().await else {
            return;
        };
        let view = self.view();
        let inputs = self.policy_inputs(&view, &stock);
        let free: BTreeMap<String, usize> = self
            .generators
            .iter()
            .map(|g| (g.name().to_string(), self.free_slots(g.name())))
            .collect();
        let candidates: Vec<Candidate> = inputs.iter().map(|(c, _, _)| c.clone()).collect();
        let launches = {
            let mut filling = self.lock_filling();
            stock_policy::refills(self.policy, &candidates, &free, &mut filling)
        };
        for key in launches {
            let Some((c, step, _)) = inputs.iter().find(|(c, _, _)| c.key == key) else {
                continue;
            };
            // Taken and counted now, not when the task runs: the next pass sees them.
            let Some(slot) = self.take_slot(&c.generator) else {
                continue;
            };
            let launch = Launch {
                slot,
                unwritten: Some(self.unwritten(&key)),
            };
            let supply = Arc::clone(self);
            let view = Arc::clone(&view);
            let step = step.clone();
            let cap = Some(u64::from(c.max_ready));
            tokio::spawn(async move {
                let result = supply
                    .make(&view, &step, Attributes::new(), cap, None, Some(launch))
                    .await;
                if let Err(e @ (MakeError::NotStarted(_) | MakeError::Failed { .. })) = result {
                    tracing::debug!(error = %e, "pre-generation did not add stock");
                }
            });
        }
    }

    /// A lease found no stock: make at most its shortfall just in time, by
    /// the cheapest route, within `max_ready` and free concurrency.
    pub fn on_shortfall(self: &Arc<Self>, items: &[LeaseItem], short: &[ItemShortfall]) {
        if self.generators.is_empty() {
            return;
        }
        for s in short {
            let Some(item) = items.iter().find(|i| i.name == s.name) else {
                continue;
            };
            let missing = u64::from(s.wanted).saturating_sub(s.available);
            if missing == 0 {
                continue;
            }
            let key = (
                item.type_name.clone(),
                item.state.clone(),
                serde_json::to_string(&item.where_).unwrap_or_default(),
            );
            let state: StateKey = (item.type_name.clone(), item.state.clone());
            let in_flight = if item.where_.is_empty() {
                // Any dataset of the state serves: the store's generating
                // ones and those decided on but not written yet.
                s.generating + self.lock_unwritten().get(&state).copied().unwrap_or(0)
            } else {
                self.lock_jit().get(&key).copied().unwrap_or(0)
            };
            let need = missing.saturating_sub(in_flight);
            if need == 0 {
                continue;
            }
            let supply = Arc::clone(self);
            let item = item.clone();
            // Count them now so a quick retry does not ask again.
            *self.lock_jit().entry(key.clone()).or_default() += need;
            let guards: Vec<JitGuard> = (0..need)
                .map(|_| JitGuard {
                    supply: Arc::clone(self),
                    key: key.clone(),
                    unwritten: Some(self.unwritten(&state)),
                })
                .collect();
            tokio::spawn(async move { supply.produce_for(item, guards).await });
        }
    }

    async fn produce_for(self: Arc<Self>, item: LeaseItem, guards: Vec<JitGuard>) {
        let Ok(stock) = self.store.stock().await else {
            return;
        };
        let view = self.view();
        if view.graph.state(&item.type_name, &item.state).is_none() {
            return;
        }
        let cap = stock
            .get(&(item.type_name.clone(), item.state.clone()))
            .and_then(|c| c.max_ready)
            .map(u64::from);
        let mut tasks = tokio::task::JoinSet::new();
        for mut guard in guards {
            let Some(step) =
                self.plan_for(&view, &stock, &item.type_name, &item.state, Goal::Produce)
            else {
                tracing::warn!(state = %format!("{}/{}", item.type_name, item.state),
                    "a lease waits for a state no available generator can make now");
                return;
            };
            let Some(g) = top_generator(&step) else {
                return;
            };
            let Some(slot) = self.take_slot(g) else {
                break;
            };
            tracing::info!(state = %format!("{}/{}", item.type_name, item.state), plan = %step.to_string().trim_end(),
                "making a dataset just in time for a waiting lease");
            let supply = Arc::clone(&self);
            let view = Arc::clone(&view);
            let attrs = item.where_.clone();
            let launch = Launch {
                slot,
                unwritten: guard.unwritten.take(),
            };
            tasks.spawn(async move {
                let _guard = guard;
                supply
                    .make(&view, &step, attrs, cap, None, Some(launch))
                    .await
            });
        }
        while tasks.join_next().await.is_some() {}
        // Whatever happened, waiters should look again (and may ask again).
        self.queue.notify();
    }

    /// Stock made under old promises: re-verified where the new capabilities
    /// offer `verify`, else discarded; a newly promised field it lacks always
    /// discards it. The reason goes to each dataset's history.
    async fn on_capabilities_changed(&self, change: StateChange) {
        let now = self.clock.now_ms();
        let (t, s) = (change.type_name.clone(), change.state.clone());
        let result = if change.verify_can_settle {
            self.store
                .start_verify(t, s, i64::MAX, u32::MAX, change.why.clone(), now)
                .await
        } else {
            self.store
                .discard_ready(t, s, u32::MAX, change.why.clone(), now)
                .await
        };
        match result {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(state = %format!("{}/{}", change.type_name, change.state), datasets = n,
                verifying = change.verify_can_settle, why = %change.why, "capabilities changed under ready stock")
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not settle stock after a capabilities change")
            }
        }
    }

    /// `POST /api/v1/stock/{type}/{state}/verify`: every ready dataset of the
    /// state is verified before it is leased again. Returns how many.
    pub async fn verify_all(
        &self,
        type_name: &str,
        state: &str,
        by: &str,
    ) -> Result<u64, VerifyAllError> {
        let offers = self
            .view()
            .graph
            .state(type_name, state)
            .is_some_and(|i| i.lifecycle.contains(&LifecycleCall::Verify));
        if !offers {
            return Err(VerifyAllError::NotOffered);
        }
        let n = self
            .store
            .start_verify(
                type_name.to_string(),
                state.to_string(),
                i64::MAX,
                u32::MAX,
                format!("asked for by {by}"),
                self.clock.now_ms(),
            )
            .await?;
        self.wake.notify_one();
        Ok(n)
    }

    /// One pass of lifecycle work: stock older than `verify_after` starts
    /// verifying, then due calls are claimed (within free concurrency) and
    /// made, each outcome recorded by the store.
    pub async fn lifecycle_pass(self: &Arc<Self>) {
        if self.generators.is_empty() {
            return;
        }
        let view = self.view();
        let now = self.clock.now_ms();
        for ((t, s), after) in &self.verify_after {
            let offers = view
                .graph
                .state(t, s)
                .is_some_and(|i| i.lifecycle.contains(&LifecycleCall::Verify));
            if !offers {
                continue;
            }
            let before = now.saturating_sub(i64::try_from(after.as_millis()).unwrap_or(i64::MAX));
            let why = format!(
                "ready for longer than verify_after ({})",
                humantime_ms(*after)
            );
            if let Err(e) = self
                .store
                .start_verify(t.clone(), s.clone(), before, 100, why, now)
                .await
            {
                tracing::warn!(error = %e, "could not start verifying old stock");
            }
        }
        let free: usize = self
            .generators
            .iter()
            .map(|g| self.free_slots(g.name()))
            .sum();
        if free == 0 {
            return;
        }
        let hold = i64::try_from(self.lifecycle_hold.as_millis()).unwrap_or(i64::MAX);
        let tasks = match self
            .store
            .claim_lifecycle(now, u32::try_from(free).unwrap_or(u32::MAX), hold)
            .await
        {
            Ok(tasks) => tasks,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim lifecycle calls");
                return;
            }
        };
        for task in tasks {
            let supply = Arc::clone(self);
            let view = Arc::clone(&view);
            tokio::spawn(async move { supply.run_lifecycle(&view, task).await });
        }
    }

    /// Makes one lifecycle call and records what it did.
    async fn run_lifecycle(&self, view: &View, task: LifecycleTask) {
        let d = &task.dataset;
        let info = view.graph.state(&d.type_name, &d.state);
        let by = info
            .filter(|i| i.lifecycle.contains(&task.call))
            .and_then(|i| i.lifecycle_by.clone());
        let generator = by.as_deref().and_then(|name| self.generator(name));
        let outcome = match (generator, info) {
            (Some(g), Some(_)) if !g.ready_to_call() => LifecycleOutcome::Postponed {
                generator: g.name().to_string(),
                call: task.call,
                attempts: task.attempts,
                until_ms: self.clock.now_ms() + 1000,
            },
            (Some(g), Some(info)) => {
                let name = g.name().to_string();
                *self.lock_inflight().entry(name.clone()).or_default() += 1;
                let _inflight = InFlight {
                    supply: self,
                    generator: name.clone(),
                };
                let request = LifecycleRequest {
                    request_id: task.request_id.clone(),
                    dataset: task.dataset.clone(),
                };
                match task.call {
                    LifecycleCall::Cleanup => match g.cleanup(&request).await {
                        Ok(()) => LifecycleOutcome::Cleaned { generator: name },
                        Err(e) => LifecycleOutcome::CleanupFailed {
                            generator: name,
                            attempts: task.attempts,
                            error: e.kind.to_string(),
                        },
                    },
                    LifecycleCall::Reset => match g.reset(&info.fields, &request).await {
                        Ok(a) => LifecycleOutcome::Reset {
                            generator: name,
                            data: a.data,
                            secret_fields: a.secret_fields,
                            entities: a.entities,
                        },
                        Err(e) => LifecycleOutcome::ResetFailed {
                            generator: name,
                            error: e.kind.to_string(),
                        },
                    },
                    LifecycleCall::Verify => match g.verify(&request).await {
                        Ok(v) => LifecycleOutcome::Verified {
                            generator: name,
                            valid: v.valid,
                            reason: v.reason,
                        },
                        Err(e) => LifecycleOutcome::VerifyFailed {
                            generator: name,
                            attempts: task.attempts,
                            error: e.kind.to_string(),
                        },
                    },
                }
            }
            _ => {
                let error = format!(
                    "no generator offers {} for {}/{} now",
                    task.call, d.type_name, d.state
                );
                let generator = by.unwrap_or_else(|| reasons_pool().to_string());
                match task.call {
                    LifecycleCall::Cleanup => LifecycleOutcome::CleanupFailed {
                        generator,
                        attempts: task.attempts,
                        error,
                    },
                    LifecycleCall::Reset => LifecycleOutcome::ResetFailed { generator, error },
                    LifecycleCall::Verify => LifecycleOutcome::VerifyFailed {
                        generator,
                        attempts: task.attempts,
                        error,
                    },
                }
            }
        };
        let settles = !matches!(
            outcome,
            LifecycleOutcome::Cleaned { .. }
                | LifecycleOutcome::CleanupFailed { .. }
                | LifecycleOutcome::Postponed { .. }
        );
        match self
            .store
            .finish_lifecycle(d.id.clone(), outcome, self.clock.now_ms())
            .await
        {
            Ok(_) if settles => {
                // Ready again (or out of stock for good): waiters and the
                // replenisher look again.
                self.queue.notify();
                self.wake.notify_one();
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(dataset_id = %d.id, error = %e, "could not record a lifecycle outcome")
            }
        }
    }

    /// Runs the refresh and replenish loops until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        let refresher = {
            let supply = Arc::clone(&self);
            tokio::spawn(async move {
                loop {
                    let missing = supply.view().caps.len() < supply.generators.len();
                    tokio::time::sleep(if missing {
                        Duration::from_secs(1)
                    } else {
                        REFRESH_EVERY
                    })
                    .await;
                    supply.refresh().await;
                }
            })
        };
        struct AbortOnDrop(tokio::task::JoinHandle<()>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let _refresher = AbortOnDrop(refresher);
        loop {
            // Resets and verifies first: they bring stock back at little cost.
            self.lifecycle_pass().await;
            self.replenish().await;
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(REPLENISH_EVERY) => {}
            }
        }
    }
}

impl CatalogSource for Supply {
    fn states(&self) -> Vec<(String, CatalogState)> {
        let view = self.view();
        let health = self.health();
        let catalog = view
            .graph
            .to_catalog(|_, _| StockCounts::default(), &health);
        let mut out: Vec<(String, CatalogState)> = catalog
            .types
            .into_iter()
            .flat_map(|t| {
                let type_name = t.type_name;
                t.states.into_iter().map(move |s| (type_name.clone(), s))
            })
            .collect();
        // Configured states no generator offers (yet): unavailable, not "registered".
        let known: BTreeSet<(String, String)> = out
            .iter()
            .map(|(t, s)| (t.clone(), s.state.clone()))
            .collect();
        if !self.generators.is_empty() {
            for (t, s) in &self.configured_stock {
                if !known.contains(&(t.clone(), s.clone())) {
                    out.push((
                        t.clone(),
                        CatalogState {
                            state: s.clone(),
                            description: None,
                            attributes: BTreeMap::new(),
                            fields: Vec::new(),
                            secret_fields: Vec::new(),
                            reusable: false,
                            produced_by: Vec::new(),
                            lifecycle: Vec::new(),
                            available: false,
                            stock: StockCounts::default(),
                        },
                    ));
                }
            }
        }
        out
    }

    fn generators(&self) -> Vec<GeneratorHealth> {
        self.health()
    }
}

impl Supply {
    /// Calls an extension on a dataset (for `POST /leases/{id}/datasets/{id}/extend`).
    pub async fn extend(
        &self,
        generator: &str,
        spec: &stockroom_protocol::generator::ExtensionSpec,
        target_fields: &[String],
        dataset: Dataset,
    ) -> Result<stockroom_protocol::generator::ExtendAnswer, stockroom_generators::GeneratorError>
    {
        let Some(g) = self.generator(generator) else {
            return Err(stockroom_generators::GeneratorError::new(
                generator,
                Operation::Extend,
                stockroom_generators::ErrorKind::Connect("generator is not configured".into()),
            ));
        };
        let request = ExtendRequest {
            request_id: format!(
                "{}:{}:{}",
                dataset.id,
                spec.name,
                crate::ids::request_suffix()
            ),
            extension: spec.name.clone(),
            dataset,
        };
        g.extend(spec, target_fields, &request).await
    }
}
