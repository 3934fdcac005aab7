//! `stockroom-pool generator-check`: runs one or more generators through
//! every call the pool would make and reports each way they break the
//! protocol of docs/generators.md, with what to fix.
//!
//! It speaks to them with the pool's own clients (`stockroom_generators`:
//! the same process groups, timeouts and size limits), checks answers with
//! the pool's own validation, builds the same catalog graph and makes inputs
//! for `requires` by the planner's routes, in dependency order. So a
//! generator that passes here behaves in the pool. On top of what the pool
//! enforces it looks for what the pool cannot see from one answer: secrets
//! not declared or not marked, log lines on stdout, a success answered to a
//! request for an undeclared state, missing stderr on failure, slow calls.
//!
//! Every call has a time limit (`--timeout`), so the check never hangs.

mod findings;
mod lifecycle;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use stockroom_generators::graph::GraphError;
use stockroom_generators::planner::{Goal, PlanContext, PlanStep, plan};
use stockroom_generators::{
    AnyGenerator, CatalogGraph, CommandGenerator, ErrorKind, GeneratorClient, GeneratorError,
    HttpGenerator, RetryPolicy, validate_extend_answer, validate_generate_answer,
};
use stockroom_protocol::attributes::Attributes;
use stockroom_protocol::dataset::Dataset;
use stockroom_protocol::exit_codes;
use stockroom_protocol::generator::{
    Capabilities, ExtendRequest, ExtensionSpec, GenerateRequest, ProducedState,
};

pub use findings::{Entry, Finding, Level, Report};
use findings::{broken_promise, call_failed, human};

/// One generator to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A command and its arguments (the request goes on stdin).
    Command(Vec<String>),
    /// The base URL of an HTTP generator.
    Url(String),
}

impl Target {
    /// Splits a `--command` value the way a shell would (`python3 "my gen.py"`).
    pub fn command(line: &str) -> Result<Target, String> {
        match shlex::split(line) {
            Some(argv) if !argv.is_empty() => Ok(Target::Command(argv)),
            Some(_) => Err("--command is empty; give the program and its arguments, e.g. --command \"python3 gen.py\"".to_string()),
            None => Err(format!("--command {line:?} has an unbalanced quote")),
        }
    }

    fn label(&self) -> String {
        match self {
            Target::Command(argv) => format!(
                "command `{}`",
                shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "))
            ),
            Target::Url(url) => format!("HTTP {url}"),
        }
    }
}

/// What to check and how patiently.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub targets: Vec<Target>,
    /// Longest one call may take; longer is a violation (and the call is stopped).
    pub timeout: Duration,
    /// A call slower than this is a violation too.
    pub slow: Duration,
}

/// The exit code for a report: 0 only when there is no violation.
pub fn exit_code(report: &Report) -> i32 {
    if report.violations() == 0 {
        exit_codes::pool::OK
    } else {
        exit_codes::pool::CHECK_FAILED
    }
}

/// A state name never declared by anyone, to see how a generator refuses.
const UNDECLARED_TYPE: &str = "stockroom-check";
const UNDECLARED_STATE: &str = "not-declared";

/// Runs the whole check.
pub async fn run(options: &CheckOptions) -> Report {
    let mut checker = Checker::new(options);
    checker.capabilities().await;
    checker.graph();
    checker.generate_every_state().await;
    checker.run_every_extension().await;
    checker.probe_attributes().await;
    checker.probe_refusals().await;
    // Last: cleanup removes the datasets the calls above were made on.
    checker.run_every_lifecycle_call().await;
    checker.report
}

type Key = (String, String);

struct Checker<'a> {
    options: &'a CheckOptions,
    clients: Vec<AnyGenerator>,
    command_mode: Vec<bool>,
    capabilities: Vec<Option<Capabilities>>,
    graph: CatalogGraph,
    /// One good dataset per state, made during the check, used as inputs and sources.
    made: BTreeMap<Key, Dataset>,
    /// States that could not be made, with why.
    unmakeable: BTreeMap<Key, String>,
    /// Extensions already run, by (type, name).
    extended: BTreeSet<Key>,
    next_id: u64,
    report: Report,
}

impl<'a> Checker<'a> {
    fn new(options: &'a CheckOptions) -> Checker<'a> {
        let labels: Vec<String> = options.targets.iter().map(Target::label).collect();
        // One attempt per call: the check wants to see each failure, not retries hiding it.
        let single = RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        };
        let clients = options
            .targets
            .iter()
            .zip(&labels)
            .map(|(t, label)| match t {
                Target::Command(argv) => AnyGenerator::Command(CommandGenerator::new(
                    label,
                    argv.clone(),
                    options.timeout,
                    1,
                )),
                Target::Url(url) => AnyGenerator::Http(
                    HttpGenerator::new(label, url, options.timeout, 1).with_retry(single),
                ),
            })
            .collect();
        Checker {
            options,
            clients,
            command_mode: options
                .targets
                .iter()
                .map(|t| matches!(t, Target::Command(_)))
                .collect(),
            capabilities: vec![None; options.targets.len()],
            graph: CatalogGraph::default(),
            made: BTreeMap::new(),
            unmakeable: BTreeMap::new(),
            extended: BTreeSet::new(),
            next_id: 0,
            report: Report {
                generators: labels,
                entries: Vec::new(),
            },
        }
    }

    fn label(&self, i: usize) -> &str {
        &self.report.generators[i]
    }

    fn index_of(&self, label: &str) -> Option<usize> {
        self.report.generators.iter().position(|l| l == label)
    }

    fn next_request_id(&mut self) -> String {
        self.next_id += 1;
        format!("check-{}", self.next_id)
    }

    /// Runs one call with a guard on top of the client's own time limit, so
    /// that nothing (not even a pipe held open) can make the check hang.
    async fn timed<T>(
        &self,
        call: impl Future<Output = Result<T, GeneratorError>>,
    ) -> (Duration, Result<T, ErrorKind>) {
        let started = Instant::now();
        let guard = self.options.timeout + Duration::from_secs(5);
        let result = match tokio::time::timeout(guard, call).await {
            Ok(r) => r.map_err(|e| e.kind),
            Err(_) => Err(ErrorKind::Timeout(self.options.timeout)),
        };
        (started.elapsed(), result)
    }

    /// A violation for a slow call (a timed-out one is reported as such instead).
    fn slow<T>(&self, elapsed: Duration, result: &Result<T, ErrorKind>) -> Option<Finding> {
        let timed_out = matches!(result, Err(ErrorKind::Timeout(_)));
        (elapsed > self.options.slow && !timed_out).then(|| {
            Finding::violation(
                format!(
                    "took {}, more than --slow {}",
                    human(elapsed),
                    human(self.options.slow)
                ),
                "slow calls refill stock slowly and make just-in-time leases wait; \
                 make the call faster, or raise --slow if this is as fast as the real system gets",
            )
        })
    }

    fn push(
        &mut self,
        generator: Option<usize>,
        what: String,
        elapsed: Option<Duration>,
        findings: Vec<Finding>,
        note: Option<String>,
    ) {
        self.report.entries.push(Entry {
            generator,
            what,
            elapsed,
            findings,
            note,
        });
    }

    async fn capabilities(&mut self) {
        for i in 0..self.clients.len() {
            let (elapsed, result) = self.timed(self.clients[i].capabilities()).await;
            let mut findings: Vec<Finding> = self.slow(elapsed, &result).into_iter().collect();
            let note = match result {
                Ok(caps) => {
                    findings.extend(check_capabilities(&caps));
                    let lifecycle = caps
                        .produces
                        .iter()
                        .filter(|p| !p.lifecycle.is_empty())
                        .count();
                    let note = format!(
                        "{} state{}, {} extension{}{}",
                        caps.produces.len(),
                        if caps.produces.len() == 1 { "" } else { "s" },
                        caps.extensions.len(),
                        if caps.extensions.len() == 1 { "" } else { "s" },
                        if lifecycle > 0 {
                            format!(", lifecycle calls on {lifecycle}")
                        } else {
                            String::new()
                        }
                    );
                    self.capabilities[i] = Some(caps);
                    Some(note)
                }
                Err(kind) => {
                    findings.push(call_failed(&kind, self.command_mode[i]));
                    None
                }
            };
            self.push(
                Some(i),
                "capabilities".into(),
                Some(elapsed),
                findings,
                note,
            );
        }
    }

    /// The catalog graph of every generator that answered, as the pool builds it.
    fn graph(&mut self) {
        let caps: Vec<(String, Capabilities)> = self
            .capabilities
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.clone().map(|c| (self.label(i).to_string(), c)))
            .collect();
        let (graph, problems) = CatalogGraph::build_lenient(caps);
        for problem in problems {
            let (generator, finding) = match &problem {
                GraphError::UnknownRequiredState { generator, .. }
                | GraphError::UnknownExtensionSource { generator, .. } => (
                    self.index_of(generator),
                    Finding::warning(
                        problem.to_string(),
                        "no checked generator makes it, so what depends on it is not checked; \
                         pass the generator that makes it too (another --command or --url)",
                    ),
                ),
                _ => (
                    None,
                    Finding::violation(
                        problem.to_string(),
                        "each state and extension may be declared by one generator only, and states \
                         must not be made from each other in a circle",
                    ),
                ),
            };
            self.push(generator, "catalog graph".into(), None, vec![finding], None);
        }
        self.graph = graph;
    }

    fn declared_states(&self) -> Vec<(usize, ProducedState)> {
        self.capabilities
            .iter()
            .enumerate()
            .flat_map(|(i, c)| {
                c.iter()
                    .flat_map(move |c| c.produces.iter().map(move |p| (i, p.clone())))
            })
            .collect()
    }

    /// Calls `generate` for every declared state (even where an extension
    /// would be the cheaper route), its inputs made first.
    async fn generate_every_state(&mut self) {
        for (i, p) in self.declared_states() {
            let label = self.label(i).to_string();
            // A state claimed twice is reported by the graph; only its first claim is used.
            if self.graph.producer(&p.type_name, &p.state) != Some(label.as_str()) {
                continue;
            }
            let mut inputs = BTreeMap::new();
            let mut missing = None;
            for r in &p.requires {
                match self.make(&r.type_name, &r.state).await {
                    Some(ds) => {
                        inputs.insert(r.name.clone(), ds);
                    }
                    None => {
                        missing = Some(format!(
                            "its input `{}` ({}/{}) could not be made",
                            r.name, r.type_name, r.state
                        ));
                        break;
                    }
                }
            }
            let what = format!("generate {}/{}", p.type_name, p.state);
            match missing {
                Some(why) => self.skip(&label, what, &why),
                None => {
                    self.generate(&label, &p.type_name, &p.state, Attributes::new(), inputs)
                        .await;
                }
            }
        }
    }

    /// One dataset of a state, made by the planner's route (inputs and
    /// sources first), or None with the reason recorded.
    async fn make(&mut self, type_name: &str, state: &str) -> Option<Dataset> {
        let key = (type_name.to_string(), state.to_string());
        if let Some(ds) = self.made.get(&key) {
            return Some(ds.clone());
        }
        if self.unmakeable.contains_key(&key) {
            return None;
        }
        let made = &self.made;
        let ready =
            |t: &str, s: &str| u64::from(made.contains_key(&(t.to_string(), s.to_string())));
        let ctx = PlanContext {
            ready: &ready,
            latency: &|_, _| None,
            available: &|_| true,
            unknown_latency: Duration::from_secs(1),
        };
        let step = match plan(&self.graph, type_name, state, Goal::Produce, &ctx) {
            Ok(step) => step,
            Err(e) => {
                self.unmakeable.insert(key, e.to_string());
                return None;
            }
        };
        Box::pin(self.execute(step)).await
    }

    async fn execute(&mut self, step: PlanStep) -> Option<Dataset> {
        match step {
            PlanStep::TakeReady { type_name, state } => {
                let key = (type_name, state);
                match self.made.get(&key) {
                    Some(ds) => Some(ds.clone()),
                    None => Box::pin(self.make(&key.0, &key.1)).await,
                }
            }
            PlanStep::Generate {
                generator,
                type_name,
                state,
                inputs,
                ..
            } => {
                let mut given = BTreeMap::new();
                for (name, input) in inputs {
                    let (t, s) = step_state(&input);
                    match Box::pin(self.execute(input)).await {
                        Some(ds) => {
                            given.insert(name, ds);
                        }
                        None => {
                            let why = format!("its input `{name}` ({t}/{s}) could not be made");
                            self.skip(&generator, format!("generate {type_name}/{state}"), &why);
                            self.unmakeable.insert((type_name, state), why);
                            return None;
                        }
                    }
                }
                self.generate(&generator, &type_name, &state, Attributes::new(), given)
                    .await
            }
            PlanStep::Extend {
                generator,
                extension,
                type_name,
                state,
                source,
                ..
            } => {
                let (from_type, from_state) = step_state(&source);
                let Some(source) = Box::pin(self.execute(*source)).await else {
                    let why = format!("its source {from_type}/{from_state} could not be made");
                    self.skip(
                        &generator,
                        format!("extend {from_type}/{from_state} with {extension:?}"),
                        &why,
                    );
                    self.unmakeable.insert((type_name, state), why);
                    return None;
                };
                self.extend(&generator, &extension, source).await
            }
        }
    }

    fn skip(&mut self, generator: &str, what: String, why: &str) {
        let i = self.index_of(generator);
        self.push(i, what, None, Vec::new(), Some(format!("not run: {why}")));
    }

    /// Calls `generate`, checks the answer, and keeps the dataset.
    async fn generate(
        &mut self,
        generator: &str,
        type_name: &str,
        state: &str,
        attributes: Attributes,
        inputs: BTreeMap<String, Dataset>,
    ) -> Option<Dataset> {
        let i = self.index_of(generator)?;
        let spec = self.graph.state(type_name, state)?.as_produced_state();
        let request = GenerateRequest {
            request_id: self.next_request_id(),
            type_name: type_name.to_string(),
            state: state.to_string(),
            attributes,
            inputs,
        };
        let what = if request.attributes.is_empty() {
            format!("generate {type_name}/{state}")
        } else {
            let asked: Vec<String> = request
                .attributes
                .iter()
                .map(|(k, v)| format!("{k} = {v}"))
                .collect();
            format!("generate {type_name}/{state} where {}", asked.join(", "))
        };
        let (elapsed, result) = self.timed(self.clients[i].generate(&request)).await;
        let mut findings: Vec<Finding> = self.slow(elapsed, &result).into_iter().collect();
        let answer = match result {
            Ok(answer) => answer,
            Err(kind) => {
                findings.push(call_failed(&kind, self.command_mode[i]));
                self.push(Some(i), what, Some(elapsed), findings, None);
                self.unmakeable
                    .insert((type_name.into(), state.into()), "it failed".into());
                return None;
            }
        };
        if let Err(v) = validate_generate_answer(&spec, &request, &answer) {
            findings.extend(v.problems.iter().map(|p| broken_promise(p)));
        }
        findings.extend(secret_findings(
            &answer.data,
            &answer.secret_fields,
            &spec.secret_fields,
            &[],
        ));
        if answer.entities.is_empty() {
            findings.push(Finding::warning(
                "the answer lists no entities",
                "list the records a test may change (`customer:C1042`), so that two CI jobs never get the same ones",
            ));
        }
        let broken = findings.iter().any(|f| f.level == Level::Violation);
        self.push(Some(i), what, Some(elapsed), findings, None);
        let mut entities = answer.entities.clone();
        for input in request.inputs.values() {
            entities.extend(input.entities.iter().cloned());
        }
        let dataset = Dataset {
            id: request.request_id.clone(),
            type_name: type_name.to_string(),
            state: state.to_string(),
            attributes: answer.attributes,
            data: answer.data,
            secret_fields: answer.secret_fields,
            entities,
            inputs: request.inputs,
        };
        let key = (type_name.to_string(), state.to_string());
        if broken && !dataset.data.is_object() {
            self.unmakeable
                .insert(key, "its answer broke the contract".into());
            return None;
        }
        // Even a dataset whose answer broke a promise serves as a source, so
        // that the calls built on it are checked too (the pool would not stock it).
        self.made.entry(key).or_insert_with(|| dataset.clone());
        Some(dataset)
    }

    /// Calls `extend` on `source`, checks the answer, and keeps the result.
    async fn extend(
        &mut self,
        generator: &str,
        extension: &str,
        source: Dataset,
    ) -> Option<Dataset> {
        let i = self.index_of(generator)?;
        let info = self.graph.extension(&source.type_name, extension)?.clone();
        let target_fields = self
            .graph
            .state(&source.type_name, &info.spec.to)
            .map(|s| (s.fields.clone(), s.secret_fields.clone()))
            .unwrap_or_default();
        self.extended
            .insert((source.type_name.clone(), extension.to_string()));
        let request = ExtendRequest {
            request_id: self.next_request_id(),
            extension: extension.to_string(),
            dataset: source.clone(),
        };
        let what = format!(
            "extend {}/{} with {extension:?} (to {})",
            source.type_name, source.state, info.spec.to
        );
        let (elapsed, result) = self.timed(self.clients[i].extend(&request)).await;
        let mut findings: Vec<Finding> = self.slow(elapsed, &result).into_iter().collect();
        let target = (source.type_name.clone(), info.spec.to.clone());
        let answer = match result {
            Ok(answer) => answer,
            Err(kind) => {
                findings.push(call_failed(&kind, self.command_mode[i]));
                self.push(Some(i), what, Some(elapsed), findings, None);
                self.unmakeable
                    .insert(target, "the extension failed".into());
                return None;
            }
        };
        if let Err(v) = validate_extend_answer(&info.spec, &target_fields.0, &answer) {
            findings.extend(v.problems.iter().map(|p| broken_promise(p)));
        }
        findings.extend(secret_findings(
            &answer.data,
            &answer.secret_fields,
            &target_fields.1,
            &source.secret_fields,
        ));
        self.push(Some(i), what, Some(elapsed), findings, None);
        if !answer.data.is_object() {
            self.unmakeable
                .insert(target, "its answer broke the contract".into());
            return None;
        }
        let dataset = Dataset {
            id: request.request_id,
            state: info.spec.to.clone(),
            data: answer.data,
            secret_fields: answer.secret_fields,
            entities: answer.entities,
            ..source
        };
        self.made.entry(target).or_insert_with(|| dataset.clone());
        Some(dataset)
    }

    async fn run_every_extension(&mut self) {
        let extensions: Vec<(String, ExtensionSpec)> = self
            .capabilities
            .iter()
            .enumerate()
            .flat_map(|(i, c)| {
                let label = self.label(i).to_string();
                c.iter().flat_map(move |c| {
                    c.extensions.clone().into_iter().map({
                        let label = label.clone();
                        move |e| (label.clone(), e)
                    })
                })
            })
            .collect();
        for (generator, ext) in extensions {
            if self
                .extended
                .contains(&(ext.type_name.clone(), ext.name.clone()))
            {
                continue;
            }
            // Only the first offer of a name is in the graph (a duplicate is reported there).
            if self
                .graph
                .extension(&ext.type_name, &ext.name)
                .is_none_or(|e| e.generator != generator)
            {
                continue;
            }
            match self.make(&ext.type_name, &ext.from).await {
                Some(source) => {
                    self.extend(&generator, &ext.name, source).await;
                }
                None => {
                    let why = self
                        .unmakeable
                        .get(&(ext.type_name.clone(), ext.from.clone()))
                        .cloned()
                        .unwrap_or_default();
                    self.skip(
                        &generator,
                        format!("extend {}/{} with {:?}", ext.type_name, ext.from, ext.name),
                        &format!("no {}/{} could be made ({why})", ext.type_name, ext.from),
                    );
                }
            }
        }
    }

    /// For every state with declared attribute values: one more generation
    /// asking for the first value of each, which must be echoed.
    async fn probe_attributes(&mut self) {
        for (i, p) in self.declared_states() {
            let wanted: Attributes = p
                .attributes
                .iter()
                .filter_map(|(name, values)| values.first().map(|v| (name.clone(), v.clone())))
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let mut inputs = BTreeMap::new();
            let mut complete = true;
            for r in &p.requires {
                match self.make(&r.type_name, &r.state).await {
                    Some(ds) => {
                        inputs.insert(r.name.clone(), ds);
                    }
                    None => complete = false,
                }
            }
            if complete && self.graph.producer(&p.type_name, &p.state) == Some(self.label(i)) {
                let label = self.label(i).to_string();
                self.generate(&label, &p.type_name, &p.state, wanted, inputs)
                    .await;
            }
        }
    }

    /// Asks each generator for a state nobody declares: it must refuse, the
    /// way the pool can tell (non-zero exit with a reason on stderr, or 4xx).
    async fn probe_refusals(&mut self) {
        for i in 0..self.clients.len() {
            if self.capabilities[i].is_none() {
                continue;
            }
            let request = GenerateRequest {
                request_id: self.next_request_id(),
                type_name: UNDECLARED_TYPE.to_string(),
                state: UNDECLARED_STATE.to_string(),
                attributes: Attributes::new(),
                inputs: BTreeMap::new(),
            };
            let (elapsed, result) = self.timed(self.clients[i].generate(&request)).await;
            let mut findings: Vec<Finding> = self.slow(elapsed, &result).into_iter().collect();
            match result {
                Ok(_) => findings.push(Finding::violation(
                    "answered with success for a state it does not declare",
                    "refuse requests for undeclared states: exit non-zero with the reason on stderr, \
                     or answer HTTP 4xx (422), so that a mistake shows instead of wrong data",
                )),
                Err(ErrorKind::ExitStatus { stderr, .. }) if stderr.trim().is_empty() => {
                    findings.push(Finding::violation(
                        "refused, but wrote nothing to stderr",
                        "write the reason to stderr: the pool keeps it with the failure for whoever has to fix it",
                    ))
                }
                Err(ErrorKind::HttpStatus { status, .. }) if status >= 500 => {
                    findings.push(Finding::warning(
                        format!("refused with HTTP {status}"),
                        "answer a request it cannot serve with 4xx (422): the pool retries 5xx",
                    ))
                }
                Err(ErrorKind::ExitStatus { .. }) | Err(ErrorKind::HttpStatus { .. }) => {}
                Err(ErrorKind::Malformed(text)) if self.command_mode[i] => {
                    findings.push(Finding::violation(
                        format!("exited 0 without a valid answer ({text})"),
                        "a refusal must exit non-zero, with the reason on stderr",
                    ))
                }
                Err(kind) => findings.push(call_failed(&kind, self.command_mode[i])),
            }
            self.push(
                Some(i),
                format!(
                    "generate {UNDECLARED_TYPE}/{UNDECLARED_STATE} (undeclared: must be refused)"
                ),
                Some(elapsed),
                findings,
                None,
            );
        }
    }
}

fn step_state(step: &PlanStep) -> (String, String) {
    match step {
        PlanStep::TakeReady { type_name, state }
        | PlanStep::Generate {
            type_name, state, ..
        }
        | PlanStep::Extend {
            type_name, state, ..
        } => (type_name.clone(), state.clone()),
    }
}

/// What the capabilities promise that cannot work.
fn check_capabilities(caps: &Capabilities) -> Vec<Finding> {
    let mut findings = Vec::new();
    if caps.produces.is_empty() && caps.extensions.is_empty() {
        findings.push(Finding::violation(
            "declares no states and no extensions",
            "list what the generator makes under `produces` (and `extensions`)",
        ));
    }
    for p in &caps.produces {
        let name = format!("{}/{}", p.type_name, p.state);
        if p.type_name.is_empty() || p.state.is_empty() || name.matches('/').count() != 1 {
            findings.push(Finding::violation(
                format!("state {name:?} needs a type and a state name without `/`"),
                "name states like `customer` / `active`",
            ));
        }
        if p.fields.is_empty() {
            findings.push(Finding::warning(
                format!("{name} promises no fields"),
                "list the fields every answer's data holds under `fields`: the pool then rejects answers without them",
            ));
        }
    }
    findings
}

/// Secrets the answer does not declare, and declared ones it does not mark.
fn secret_findings(
    data: &serde_json::Value,
    answered: &[String],
    declared: &[String],
    inherited: &[String],
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for s in answered {
        if !declared.contains(s) && !inherited.contains(s) {
            findings.push(Finding::violation(
                format!("secret field `{s}` is not declared in the state's secret_fields"),
                "declare every secret field in capabilities (`secret_fields`), so users and the pool know it is secret",
            ));
        }
    }
    for s in declared.iter().chain(inherited) {
        if !answered.contains(s) && stockroom_generators::validate::lookup_path(data, s).is_some() {
            findings.push(Finding::violation(
                format!("declared secret field `{s}` is in data but not in the answer's secret_fields"),
                "list it in the answer's secret_fields too, or its value is shown in logs and pages",
            ));
        }
    }
    findings
}
