//! Choosing the cheapest way to get one dataset of a state.
//!
//! How it decides:
//! - Cost is estimated time: a ready dataset costs nothing; a `generate` or
//!   `extend` costs the generator's recent median latency for that operation
//!   (or [`PlanContext::unknown_latency`] when it has no successful call yet),
//!   plus the cost of what it starts from. Inputs of a `generate` are counted
//!   one after another (their costs add up): a pessimistic but simple bound.
//! - Every route of the state is tried: its `extend` routes from a source
//!   state, which is itself taken from stock or made recursively, and its
//!   `generate` route with every requirement taken from stock or made
//!   recursively. The cheapest wins; on a tie, ready beats extend beats
//!   generate, then the catalog's route order decides.
//! - A ready dataset is used at most once per plan: stock is counted down as
//!   a plan takes from it, so two requirements of the same state need two.
//! - Routes through generators that are not available are skipped.
//! - The graph is free of cycles, but a state already being planned on the
//!   current path is never entered again, so a bad graph cannot loop.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::error::Operation;
use crate::graph::{CatalogGraph, Route};

/// What the planner knows of the world; the pool fills it from its store and
/// its generators' health.
pub struct PlanContext<'a> {
    /// Ready datasets of a (type, state).
    pub ready: &'a dyn Fn(&str, &str) -> u64,
    /// Recent median latency of (generator, operation), if measured.
    pub latency: &'a dyn Fn(&str, Operation) -> Option<Duration>,
    /// Whether a generator may be used now.
    pub available: &'a dyn Fn(&str) -> bool,
    /// The guess for a generator with no measured latency.
    pub unknown_latency: Duration,
}

/// Whether a ready dataset of the asked state itself may be the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// One dataset for a client: stock of the state itself is the best answer.
    Obtain,
    /// A new dataset (stock replenishment): the state itself must be made.
    Produce,
}

/// One step of a plan; sources come first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanStep {
    TakeReady {
        type_name: String,
        state: String,
    },
    Generate {
        generator: String,
        type_name: String,
        state: String,
        /// One step per requirement, by requirement name.
        inputs: Vec<(String, PlanStep)>,
        cost: Duration,
    },
    Extend {
        generator: String,
        extension: String,
        type_name: String,
        state: String,
        source: Box<PlanStep>,
        cost: Duration,
    },
}

impl PlanStep {
    /// Estimated time of this step and all it depends on.
    pub fn cost(&self) -> Duration {
        match self {
            PlanStep::TakeReady { .. } => Duration::ZERO,
            PlanStep::Generate { cost, .. } | PlanStep::Extend { cost, .. } => *cost,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            PlanStep::TakeReady { .. } => 0,
            PlanStep::Extend { .. } => 1,
            PlanStep::Generate { .. } => 2,
        }
    }

    fn fmt_indented(&self, f: &mut fmt::Formatter<'_>, depth: usize) -> fmt::Result {
        let pad = "  ".repeat(depth);
        match self {
            PlanStep::TakeReady { type_name, state } => {
                writeln!(f, "{pad}take a ready {type_name}/{state}")
            }
            PlanStep::Generate {
                generator,
                type_name,
                state,
                inputs,
                cost,
            } => {
                writeln!(
                    f,
                    "{pad}generate {type_name}/{state} with {generator} (~{}ms)",
                    cost.as_millis()
                )?;
                for (name, step) in inputs {
                    writeln!(f, "{pad}  input {name}:")?;
                    step.fmt_indented(f, depth + 2)?;
                }
                Ok(())
            }
            PlanStep::Extend {
                generator,
                extension,
                type_name,
                state,
                source,
                cost,
            } => {
                writeln!(
                    f,
                    "{pad}extend to {type_name}/{state} by {extension} of {generator} (~{}ms)",
                    cost.as_millis()
                )?;
                source.fmt_indented(f, depth + 1)
            }
        }
    }
}

impl fmt::Display for PlanStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_indented(f, 0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("state {0} is unknown")]
    UnknownState(String),
    #[error("no route makes {0} with the generators available now")]
    NoRoute(String),
}

type Key = (String, String);

struct Planner<'g, 'c> {
    graph: &'g CatalogGraph,
    ctx: &'c PlanContext<'c>,
}

impl Planner<'_, '_> {
    fn latency(&self, generator: &str, op: Operation) -> Duration {
        (self.ctx.latency)(generator, op).unwrap_or(self.ctx.unknown_latency)
    }

    fn best(
        &self,
        k: &Key,
        allow_ready: bool,
        taken: &mut BTreeMap<Key, u64>,
        path: &mut Vec<Key>,
    ) -> Option<PlanStep> {
        if path.contains(k) {
            return None;
        }
        let (type_name, state) = (k.0.as_str(), k.1.as_str());
        let used = taken.get(k).copied().unwrap_or(0);
        if allow_ready && (self.ctx.ready)(type_name, state) > used {
            taken.insert(k.clone(), used + 1);
            return Some(PlanStep::TakeReady {
                type_name: type_name.to_string(),
                state: state.to_string(),
            });
        }
        path.push(k.clone());
        let mut chosen: Option<(PlanStep, BTreeMap<Key, u64>)> = None;
        for route in self.graph.routes(type_name, state) {
            if !(self.ctx.available)(route.generator()) {
                continue;
            }
            let mut trial = taken.clone();
            let Some(step) = self.route_step(type_name, state, route, &mut trial, path) else {
                continue;
            };
            let better = chosen
                .as_ref()
                .is_none_or(|(best, _)| (step.cost(), step.rank()) < (best.cost(), best.rank()));
            if better {
                chosen = Some((step, trial));
            }
        }
        path.pop();
        let (step, trial) = chosen?;
        *taken = trial;
        Some(step)
    }

    fn route_step(
        &self,
        type_name: &str,
        state: &str,
        route: &Route,
        taken: &mut BTreeMap<Key, u64>,
        path: &mut Vec<Key>,
    ) -> Option<PlanStep> {
        match route {
            Route::Extend {
                generator,
                extension,
                from,
            } => {
                let source =
                    self.best(&(type_name.to_string(), from.clone()), true, taken, path)?;
                Some(PlanStep::Extend {
                    generator: generator.clone(),
                    extension: extension.clone(),
                    type_name: type_name.to_string(),
                    state: state.to_string(),
                    cost: source.cost() + self.latency(generator, Operation::Extend),
                    source: Box::new(source),
                })
            }
            Route::Generate {
                generator,
                requires,
            } => {
                let mut cost = self.latency(generator, Operation::Generate);
                let mut inputs = Vec::with_capacity(requires.len());
                for r in requires {
                    let step =
                        self.best(&(r.type_name.clone(), r.state.clone()), true, taken, path)?;
                    cost += step.cost();
                    inputs.push((r.name.clone(), step));
                }
                Some(PlanStep::Generate {
                    generator: generator.clone(),
                    type_name: type_name.to_string(),
                    state: state.to_string(),
                    inputs,
                    cost,
                })
            }
        }
    }
}

/// The cheapest plan for one dataset of `type_name/state`.
pub fn plan(
    graph: &CatalogGraph,
    type_name: &str,
    state: &str,
    goal: Goal,
    ctx: &PlanContext<'_>,
) -> Result<PlanStep, PlanError> {
    let name = format!("{type_name}/{state}");
    if graph.state(type_name, state).is_none() {
        return Err(PlanError::UnknownState(name));
    }
    let planner = Planner { graph, ctx };
    let k = (type_name.to_string(), state.to_string());
    planner
        .best(
            &k,
            goal == Goal::Obtain,
            &mut BTreeMap::new(),
            &mut Vec::new(),
        )
        .ok_or(PlanError::NoRoute(name))
}
