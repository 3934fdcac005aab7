//! The catalog graph: every type and state the generators can make, and how.
//!
//! Built from all generators' capabilities. A state comes into existence in
//! one of two ways:
//! - a generator lists it in `produces` (it can then `generate` it, from its
//!   `requires` if any) — at most one generator may claim a state;
//! - an extension names it as `to` and nobody produces it: the state is then
//!   *derived* from the extension's `from` state (its fields plus the
//!   extension's fields, the same attributes and secret fields), as with
//!   `customer/active-with-payment` in docs/generators.md's example.
//!
//! Problems are collected, not stopped at, so one bad generator does not hide
//! the others: [`CatalogGraph::build_lenient`] returns the usable graph (the
//! offending claims, extensions and routes left out) together with every
//! problem; [`CatalogGraph::build`] refuses the whole graph if there is any.
//! Which to use is the caller's choice: the pool may serve what works and
//! report the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use stockroom_protocol::api::{
    Catalog, CatalogState, CatalogType, GeneratorHealth, Production, StockCounts,
};
use stockroom_protocol::attributes::AttrValue;
use stockroom_protocol::generator::{
    Capabilities, ExtensionSpec, LifecycleCall, ProducedState, Requirement,
};

/// One way a state is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `generator` creates it, given one ready dataset per requirement.
    Generate {
        generator: String,
        requires: Vec<Requirement>,
    },
    /// `generator`'s `extension` advances a dataset of state `from` (same type) to it.
    Extend {
        generator: String,
        extension: String,
        from: String,
    },
}

impl Route {
    pub fn generator(&self) -> &str {
        match self {
            Route::Generate { generator, .. } | Route::Extend { generator, .. } => generator,
        }
    }

    fn to_production(&self) -> Production {
        match self.clone() {
            Route::Generate {
                generator,
                requires,
            } => Production::Generate {
                generator,
                requires,
            },
            Route::Extend {
                generator,
                extension,
                from,
            } => Production::Extend {
                generator,
                from,
                extension,
            },
        }
    }
}

/// Everything known about one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateInfo {
    pub type_name: String,
    pub state: String,
    pub description: Option<String>,
    pub attributes: BTreeMap<String, Vec<AttrValue>>,
    pub fields: Vec<String>,
    pub secret_fields: Vec<String>,
    pub reusable: bool,
    /// The lifecycle calls its datasets get (docs/generators.md); a state
    /// derived by an extension inherits those of the state it comes from.
    pub lifecycle: Vec<LifecycleCall>,
    /// The generator that answers them: the one that declared the state, or
    /// for a derived state the one that declared its origin.
    pub lifecycle_by: Option<String>,
    /// The generator whose `produces` declares it; `None` for a derived state.
    pub declared_by: Option<String>,
    /// Every usable way to make it: the generate route first, then extensions.
    pub routes: Vec<Route>,
}

impl StateInfo {
    /// The state as a `produces` entry, for [`crate::validate_generate_answer`].
    pub fn as_produced_state(&self) -> ProducedState {
        ProducedState {
            type_name: self.type_name.clone(),
            state: self.state.clone(),
            description: self.description.clone(),
            attributes: self.attributes.clone(),
            fields: self.fields.clone(),
            secret_fields: self.secret_fields.clone(),
            requires: self.requires().to_vec(),
            reusable: self.reusable,
            lifecycle: self.lifecycle.clone(),
        }
    }

    /// What the generate route needs as inputs (empty without one).
    pub fn requires(&self) -> &[Requirement] {
        self.routes
            .iter()
            .find_map(|r| match r {
                Route::Generate { requires, .. } => Some(requires.as_slice()),
                Route::Extend { .. } => None,
            })
            .unwrap_or(&[])
    }

    fn from_declaration(generator: &str, p: &ProducedState) -> StateInfo {
        StateInfo {
            type_name: p.type_name.clone(),
            state: p.state.clone(),
            description: p.description.clone(),
            attributes: p.attributes.clone(),
            fields: p.fields.clone(),
            secret_fields: p.secret_fields.clone(),
            reusable: p.reusable,
            lifecycle: p.lifecycle.clone(),
            lifecycle_by: (!p.lifecycle.is_empty()).then(|| generator.to_string()),
            declared_by: Some(generator.to_string()),
            routes: Vec::new(),
        }
    }
}

/// An extension and the generator that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionInfo {
    pub generator: String,
    pub spec: ExtensionSpec,
}

/// One problem found while building the graph.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("state {type_name}/{state} is claimed by more than one generator ({}); only the first is used", generators.join(", "))]
    DuplicateState {
        type_name: String,
        state: String,
        generators: Vec<String>,
    },
    #[error("extension {extension:?} of type {type_name} is offered by more than one generator ({}); only the first is used", generators.join(", "))]
    DuplicateExtension {
        type_name: String,
        extension: String,
        generators: Vec<String>,
    },
    #[error(
        "extension {extension:?} of generator {generator:?} starts from unknown state {type_name}/{state}; no generator produces it"
    )]
    UnknownExtensionSource {
        generator: String,
        extension: String,
        type_name: String,
        state: String,
    },
    #[error("state {type_name}/{state} of generator {generator:?} requires {:?} = {}/{}, which is unknown", requirement.name, requirement.type_name, requirement.state)]
    UnknownRequiredState {
        generator: String,
        type_name: String,
        state: String,
        requirement: Requirement,
    },
    #[error(
        "state {type_name}/{state} of generator {generator:?} names requirement {name:?} twice"
    )]
    DuplicateRequirementName {
        generator: String,
        type_name: String,
        state: String,
        name: String,
    },
    #[error("states depend on each other in a cycle: {}; the route closing it ({closing}) is left out", path.join(" is made from "))]
    Cycle {
        /// `type/state` names, the first repeated at the end.
        path: Vec<String>,
        /// The route of the cycle's last state that was left out to break it.
        closing: Route,
    },
}

type Key = (String, String);

fn key(type_name: &str, state: &str) -> Key {
    (type_name.to_string(), state.to_string())
}

/// Every type and state, how each is made, and the extensions between them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogGraph {
    states: BTreeMap<Key, StateInfo>,
    /// By (type, extension name).
    extensions: BTreeMap<Key, ExtensionInfo>,
    generators: Vec<String>,
}

impl CatalogGraph {
    /// The whole graph, or every problem found.
    pub fn build(
        capabilities: Vec<(String, Capabilities)>,
    ) -> Result<CatalogGraph, Vec<GraphError>> {
        let (graph, problems) = CatalogGraph::build_lenient(capabilities);
        if problems.is_empty() {
            Ok(graph)
        } else {
            Err(problems)
        }
    }

    /// The usable part of the graph and every problem found. Generators are
    /// taken in the given order (the config's): the first claim of a state or
    /// extension wins.
    pub fn build_lenient(
        capabilities: Vec<(String, Capabilities)>,
    ) -> (CatalogGraph, Vec<GraphError>) {
        let mut problems = Vec::new();
        let mut graph = CatalogGraph {
            generators: capabilities.iter().map(|(name, _)| name.clone()).collect(),
            ..CatalogGraph::default()
        };

        // Claims of states.
        let mut claimants: BTreeMap<Key, Vec<String>> = BTreeMap::new();
        let mut declarations: Vec<(String, ProducedState)> = Vec::new();
        for (generator, caps) in &capabilities {
            for p in &caps.produces {
                let k = key(&p.type_name, &p.state);
                let who = claimants.entry(k.clone()).or_default();
                who.push(generator.clone());
                if who.len() == 1 {
                    graph
                        .states
                        .insert(k, StateInfo::from_declaration(generator, p));
                    declarations.push((generator.clone(), p.clone()));
                }
            }
        }
        for ((type_name, state), generators) in claimants {
            if generators.len() > 1 {
                problems.push(GraphError::DuplicateState {
                    type_name,
                    state,
                    generators,
                });
            }
        }

        // Claims of extensions.
        let mut ext_claimants: BTreeMap<Key, Vec<String>> = BTreeMap::new();
        for (generator, caps) in &capabilities {
            for e in &caps.extensions {
                let k = key(&e.type_name, &e.name);
                let who = ext_claimants.entry(k.clone()).or_default();
                who.push(generator.clone());
                if who.len() == 1 {
                    graph.extensions.insert(
                        k,
                        ExtensionInfo {
                            generator: generator.clone(),
                            spec: e.clone(),
                        },
                    );
                }
            }
        }
        for ((type_name, extension), generators) in ext_claimants {
            if generators.len() > 1 {
                problems.push(GraphError::DuplicateExtension {
                    type_name,
                    extension,
                    generators,
                });
            }
        }

        // Derived states, until nothing new appears (an extension may start
        // from a state that is itself derived).
        loop {
            let mut derived = Vec::new();
            for ext in graph.extensions.values() {
                let s = &ext.spec;
                let to = key(&s.type_name, &s.to);
                if graph.states.contains_key(&to)
                    || derived
                        .iter()
                        .any(|d: &StateInfo| (d.type_name.clone(), d.state.clone()) == to)
                {
                    continue;
                }
                if let Some(from) = graph.states.get(&key(&s.type_name, &s.from)) {
                    let mut fields = from.fields.clone();
                    fields.extend(
                        s.fields
                            .iter()
                            .filter(|f| !from.fields.contains(f))
                            .cloned(),
                    );
                    derived.push(StateInfo {
                        type_name: s.type_name.clone(),
                        state: s.to.clone(),
                        description: s.description.clone(),
                        attributes: from.attributes.clone(),
                        fields,
                        secret_fields: from.secret_fields.clone(),
                        reusable: false,
                        lifecycle: from.lifecycle.clone(),
                        lifecycle_by: from.lifecycle_by.clone(),
                        declared_by: None,
                        routes: Vec::new(),
                    });
                }
            }
            if derived.is_empty() {
                break;
            }
            for d in derived {
                graph.states.insert(key(&d.type_name, &d.state), d);
            }
        }

        // Generate routes, with their requirements checked.
        for (generator, p) in &declarations {
            let mut ok = true;
            let mut names = BTreeSet::new();
            for r in &p.requires {
                if !names.insert(r.name.as_str()) {
                    ok = false;
                    problems.push(GraphError::DuplicateRequirementName {
                        generator: generator.clone(),
                        type_name: p.type_name.clone(),
                        state: p.state.clone(),
                        name: r.name.clone(),
                    });
                }
                if !graph.states.contains_key(&key(&r.type_name, &r.state)) {
                    ok = false;
                    problems.push(GraphError::UnknownRequiredState {
                        generator: generator.clone(),
                        type_name: p.type_name.clone(),
                        state: p.state.clone(),
                        requirement: r.clone(),
                    });
                }
            }
            if ok && let Some(info) = graph.states.get_mut(&key(&p.type_name, &p.state)) {
                info.routes.push(Route::Generate {
                    generator: generator.clone(),
                    requires: p.requires.clone(),
                });
            }
        }

        // Extension routes.
        let mut unusable = Vec::new();
        for (k, ext) in &graph.extensions {
            let s = &ext.spec;
            if !graph.states.contains_key(&key(&s.type_name, &s.from)) {
                problems.push(GraphError::UnknownExtensionSource {
                    generator: ext.generator.clone(),
                    extension: s.name.clone(),
                    type_name: s.type_name.clone(),
                    state: s.from.clone(),
                });
                unusable.push(k.clone());
            }
        }
        for k in unusable {
            graph.extensions.remove(&k);
        }
        let routes: Vec<(Key, Route)> = graph
            .extensions
            .values()
            .map(|e| {
                let route = Route::Extend {
                    generator: e.generator.clone(),
                    extension: e.spec.name.clone(),
                    from: e.spec.from.clone(),
                };
                (key(&e.spec.type_name, &e.spec.to), route)
            })
            .collect();
        for (k, route) in routes {
            if let Some(info) = graph.states.get_mut(&k) {
                info.routes.push(route);
            }
        }

        while let Some((path, owner, index)) = graph.find_cycle() {
            let Some(info) = graph.states.get_mut(&owner) else {
                break;
            };
            let closing = info.routes.remove(index);
            if let Route::Extend { extension, .. } = &closing {
                graph.extensions.remove(&key(&owner.0, extension));
            }
            problems.push(GraphError::Cycle { path, closing });
        }
        (graph, problems)
    }

    /// The states a route needs first.
    fn route_sources(type_name: &str, route: &Route) -> Vec<Key> {
        match route {
            Route::Generate { requires, .. } => requires
                .iter()
                .map(|r| key(&r.type_name, &r.state))
                .collect(),
            Route::Extend { from, .. } => vec![key(type_name, from)],
        }
    }

    /// A cycle as its path, and the state and route index that close it.
    fn find_cycle(&self) -> Option<(Vec<String>, Key, usize)> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Open,
            Done,
        }
        fn visit(
            graph: &CatalogGraph,
            node: &Key,
            marks: &mut BTreeMap<Key, Mark>,
            stack: &mut Vec<Key>,
        ) -> Option<(Vec<String>, Key, usize)> {
            marks.insert(node.clone(), Mark::Open);
            stack.push(node.clone());
            let info = graph.states.get(node)?;
            for (index, route) in info.routes.iter().enumerate() {
                for source in CatalogGraph::route_sources(&node.0, route) {
                    match marks.get(&source) {
                        Some(Mark::Open) => {
                            let start = stack.iter().position(|k| *k == source).unwrap_or(0);
                            let mut path: Vec<String> = stack[start..]
                                .iter()
                                .map(|(t, s)| format!("{t}/{s}"))
                                .collect();
                            path.push(format!("{}/{}", source.0, source.1));
                            return Some((path, node.clone(), index));
                        }
                        Some(Mark::Done) => {}
                        None => {
                            if let Some(found) = visit(graph, &source, marks, stack) {
                                return Some(found);
                            }
                        }
                    }
                }
            }
            stack.pop();
            marks.insert(node.clone(), Mark::Done);
            None
        }
        let mut marks = BTreeMap::new();
        for node in self.states.keys() {
            if !marks.contains_key(node)
                && let Some(found) = visit(self, node, &mut marks, &mut Vec::new())
            {
                return Some(found);
            }
        }
        None
    }

    /// The generators the graph was built from, in config order.
    pub fn generators(&self) -> &[String] {
        &self.generators
    }

    pub fn state(&self, type_name: &str, state: &str) -> Option<&StateInfo> {
        self.states.get(&key(type_name, state))
    }

    /// Every state, ordered by type then state.
    pub fn states(&self) -> impl Iterator<Item = &StateInfo> {
        self.states.values()
    }

    /// Every `type/state`, for "unknown state" messages.
    pub fn known_states(&self) -> Vec<String> {
        self.states
            .keys()
            .map(|(t, s)| format!("{t}/{s}"))
            .collect()
    }

    /// Every usable way to make a state (empty when unknown).
    pub fn routes(&self, type_name: &str, state: &str) -> &[Route] {
        self.state(type_name, state)
            .map_or(&[], |s| s.routes.as_slice())
    }

    /// The generator that creates a state directly, if one does.
    pub fn producer(&self, type_name: &str, state: &str) -> Option<&str> {
        self.routes(type_name, state).iter().find_map(|r| match r {
            Route::Generate { generator, .. } => Some(generator.as_str()),
            Route::Extend { .. } => None,
        })
    }

    /// What the generate route of a state needs as inputs.
    pub fn requires(&self, type_name: &str, state: &str) -> &[Requirement] {
        self.state(type_name, state)
            .map_or(&[], StateInfo::requires)
    }

    /// An extension by its name, as a client asks for it (`{"extension": "add-card"}`).
    pub fn extension(&self, type_name: &str, name: &str) -> Option<&ExtensionInfo> {
        self.extensions.get(&key(type_name, name))
    }

    /// Extensions that lead into a state.
    pub fn extensions_into(&self, type_name: &str, state: &str) -> Vec<&ExtensionInfo> {
        self.extensions
            .values()
            .filter(|e| e.spec.type_name == type_name && e.spec.to == state)
            .collect()
    }

    /// Extensions that start from a state.
    pub fn extensions_from(&self, type_name: &str, state: &str) -> Vec<&ExtensionInfo> {
        self.extensions
            .values()
            .filter(|e| e.spec.type_name == type_name && e.spec.from == state)
            .collect()
    }

    /// Whether a state can be made at all when only the generators for which
    /// `generator_up` holds are used.
    pub fn can_make(
        &self,
        type_name: &str,
        state: &str,
        generator_up: &dyn Fn(&str) -> bool,
    ) -> bool {
        fn go(
            g: &CatalogGraph,
            k: &Key,
            up: &dyn Fn(&str) -> bool,
            seen: &mut BTreeSet<Key>,
        ) -> bool {
            if !seen.insert(k.clone()) {
                return false;
            }
            let ok = g.states.get(k).is_some_and(|info| {
                info.routes.iter().any(|r| {
                    up(r.generator())
                        && CatalogGraph::route_sources(&k.0, r)
                            .iter()
                            .all(|src| go(g, src, up, &mut seen.clone()))
                })
            });
            seen.remove(k);
            ok
        }
        go(
            self,
            &key(type_name, state),
            generator_up,
            &mut BTreeSet::new(),
        )
    }

    /// The catalog of `GET /catalog`. A state is `available` when some route
    /// to it uses only generators that are available (a generator missing
    /// from `health` counts as available), recursively through its sources.
    pub fn to_catalog(
        &self,
        stock: impl Fn(&str, &str) -> StockCounts,
        health: &[GeneratorHealth],
    ) -> Catalog {
        let up = |name: &str| {
            health
                .iter()
                .find(|h| h.name == name)
                .is_none_or(|h| h.available)
        };
        let mut types: Vec<CatalogType> = Vec::new();
        for ((type_name, state), info) in &self.states {
            let entry = CatalogState {
                state: state.clone(),
                description: info.description.clone(),
                attributes: info.attributes.clone(),
                fields: info.fields.clone(),
                secret_fields: info.secret_fields.clone(),
                reusable: info.reusable,
                produced_by: info.routes.iter().map(Route::to_production).collect(),
                lifecycle: info.lifecycle.clone(),
                available: self.can_make(type_name, state, &up),
                stock: stock(type_name, state),
            };
            match types.last_mut() {
                Some(t) if t.type_name == *type_name => t.states.push(entry),
                _ => types.push(CatalogType {
                    type_name: type_name.clone(),
                    states: vec![entry],
                }),
            }
        }
        let generators = self
            .generators
            .iter()
            .map(|name| {
                health
                    .iter()
                    .find(|h| h.name == *name)
                    .cloned()
                    .unwrap_or_else(|| GeneratorHealth {
                        name: name.clone(),
                        available: true,
                        ..GeneratorHealth::default()
                    })
            })
            .collect();
        Catalog {
            types,
            generators,
            problems: Vec::new(),
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Generate { generator, .. } => write!(f, "generate by {generator}"),
            Route::Extend {
                generator,
                extension,
                from,
            } => {
                write!(f, "extension {extension} of {generator} from {from}")
            }
        }
    }
}
