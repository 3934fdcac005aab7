//! The agent's operations: reserve, take, done, list and the end of the run,
//! over the [`Book`] and the pool. Pool calls happen outside the book's
//! lock; a take that must lease from the pool runs in its own task, so a
//! test process that dies mid-take cannot make the agent lose the lease.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use stockroom_protocol::api::{
    DatasetOutcome, HeartbeatBatchItem, HeartbeatBatchRequest, Holder, LeaseGranted, LeaseItem,
    LeaseRequest, ProblemKind, ReleaseRequest, ReleasedDataset, Shortfall,
};
use stockroom_protocol::{DatasetStatus, OnFailure, Outcome};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::book::{Book, Done, Held, Purpose, Reserved, Take, Taken};
use super::wire::{
    DoneAnswer, DoneRequest, ReserveAnswer, ReserveItem, ReserveRequest, TakeAnswer, TakeRequest,
    TakesAnswer,
};
use crate::client::{ClientError, PoolClient, retry_backoff, retry_transient};
use crate::lease::LeaseToken;
use stockroom_protocol::backoff::Backoff;

/// Most items in one reserve or take, and the largest count of one item (the pool's caps).
const MAX_ITEMS: usize = 100;
const MAX_COUNT: u32 = 10_000;
/// How long a take waits for stock when it does not say.
pub const DEFAULT_TAKE_WAIT: Duration = Duration::from_secs(60);
/// How long one lease request of a waiting take asks the pool to hold it:
/// short, so the end of the run never waits long for a take in flight.
const TAKE_POLL: Duration = Duration::from_secs(2);
/// How long `done` retries an unreachable pool before leaving the outcome
/// for the end of the run.
const DONE_RETRY: Duration = Duration::from_secs(5);
/// How long the end of the run waits for takes still asking the pool.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(10);
/// How often an ongoing heartbeat outage is logged again.
const OUTAGE_LOG_EVERY: Duration = Duration::from_secs(30);

/// Why an agent request was refused or failed; `agent/http.rs` turns each
/// into a problem+json answer.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("missing or wrong agent token: send `Authorization: Bearer $STOCKROOM_AGENT_TOKEN`")]
    Unauthorized,
    #[error("the agent serves only processes on this machine (loopback)")]
    NotLoopback,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the run is ending; the agent takes no new requests")]
    Closing,
    #[error(transparent)]
    Pool(#[from] ClientError),
    #[error("{0}")]
    Internal(String),
}

/// What the agent is set up with.
#[derive(Clone)]
pub struct AgentConfig {
    pub client: PoolClient,
    /// The job's holder; each take's lease adds its test and worker.
    pub holder: Holder,
    pub ttl_seconds: Option<u64>,
    /// How long an unreachable pool is retried for a lease or the final release.
    pub retry_for: Duration,
    /// Sent with every release (the CI job's page).
    pub details_url: Option<String>,
}

/// How the end of the run settled what the agent held.
#[derive(Debug, Clone, Default)]
pub struct Settlement {
    pub takes: usize,
    /// Test ids whose `done` said `failed`, first failure first.
    pub failed_tests: Vec<String>,
    /// Every dataset the agent held: id, final status (`None`: unknown,
    /// the release failed or the lease was lost) and the test that took it.
    pub datasets: Vec<(String, Option<DatasetStatus>, Option<String>)>,
    /// Leases that could not be released (they expire and quarantine).
    pub unreleased: Vec<String>,
    pub pool_requests: u64,
}

pub struct Agent {
    config: AgentConfig,
    book: Mutex<Book>,
    token: String,
    catalog_read: AtomicBool,
    in_flight_ended: Notify,
    pool_requests: AtomicU64,
    failed_tests: Mutex<Vec<String>>,
}

/// Decrements the in-flight count however the take ends.
struct InFlight<'a>(&'a Agent);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.book().in_flight -= 1;
        self.0.in_flight_ended.notify_waiters();
    }
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() {
        // No OS randomness: mix time and a counter (ids only need uniqueness here;
        // the agent token is refused below instead).
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mix = nanos ^ u128::from(COUNTER.fetch_add(1, Ordering::Relaxed)) << 64;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (mix >> ((i % 16) * 8)) as u8;
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The lease token of a lease answer (docs/pool.md "Lease tokens").
fn lease_token_of(granted: &LeaseGranted) -> Option<LeaseToken> {
    LeaseToken::of(granted)
}

fn validate_counts<'a>(counts: impl Iterator<Item = (&'a str, u32)>) -> Result<(), AgentError> {
    let mut n = 0;
    for (name, count) in counts {
        n += 1;
        if count == 0 || count > MAX_COUNT {
            return Err(AgentError::Invalid(format!(
                "item {name:?}: count must be from 1 to {MAX_COUNT}, found {count}"
            )));
        }
    }
    if n == 0 {
        return Err(AgentError::Invalid(
            "items must list at least one dataset".into(),
        ));
    }
    if n > MAX_ITEMS {
        return Err(AgentError::Invalid(format!(
            "at most {MAX_ITEMS} items, found {n}"
        )));
    }
    Ok(())
}

impl Agent {
    pub fn new(config: AgentConfig) -> Result<Agent, AgentError> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw)
            .map_err(|e| AgentError::Internal(format!("failed to make the agent token: {e}")))?;
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        crate::redact::register([token.clone()]);
        Ok(Agent {
            config,
            book: Mutex::new(Book::default()),
            token,
            catalog_read: AtomicBool::new(false),
            in_flight_ended: Notify::new(),
            pool_requests: AtomicU64::new(0),
            failed_tests: Mutex::new(Vec::new()),
        })
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Constant-time comparison with the agent token.
    pub fn token_matches(&self, offered: &str) -> bool {
        let (a, b) = (offered.as_bytes(), self.token.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic elsewhere must not take the whole agent down with it.
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn counted(&self) {
        self.pool_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Leases `items` at the pool, an unreachable pool retried for `retry_for`.
    async fn lease(
        &self,
        holder: Holder,
        items: Vec<LeaseItem>,
        wait: Duration,
    ) -> Result<LeaseGranted, ClientError> {
        let request = LeaseRequest {
            holder,
            ttl_seconds: self.config.ttl_seconds,
            wait_seconds: Some(wait.as_secs()),
            idempotency_key: Some(format!("agent:{}", random_hex(16))),
            items,
        };
        retry_transient(self.config.retry_for, || {
            self.counted();
            self.config.client.lease(&request)
        })
        .await
        .map_err(|(e, _)| e)
    }

    /// Records a new lease; its datasets are listed in lease order.
    fn hold(book: &mut Book, granted: &LeaseGranted, purpose: Purpose) {
        book.leases.insert(
            granted.lease_id.clone(),
            Held {
                lease_id: granted.lease_id.clone(),
                lease_token: lease_token_of(granted),
                purpose,
                heartbeat_interval_seconds: granted.heartbeat_interval_seconds,
                dataset_ids: granted
                    .datasets
                    .iter()
                    .map(|d| d.dataset.id.clone())
                    .collect(),
                pending: BTreeMap::new(),
                settled: HashSet::new(),
                lost: None,
            },
        );
    }

    /// Reads which states are reusable, once (best effort: without it a
    /// `passed` dataset is reported `consumed`).
    async fn read_catalog(&self) {
        if self.catalog_read.swap(true, Ordering::AcqRel) {
            return;
        }
        self.counted();
        match self.config.client.catalog().await {
            Ok(catalog) => {
                let reusable = catalog
                    .types
                    .iter()
                    .flat_map(|t| {
                        t.states
                            .iter()
                            .filter(|s| s.reusable)
                            .map(move |s| (t.type_name.clone(), s.state.clone()))
                    })
                    .collect();
                self.book().reusable = reusable;
            }
            Err(e) => {
                tracing::debug!("agent: failed to read the catalog: {e}");
                self.catalog_read.store(false, Ordering::Release);
            }
        }
    }

    pub async fn reserve(&self, request: ReserveRequest) -> Result<ReserveAnswer, AgentError> {
        validate_counts(
            request
                .items
                .iter()
                .map(|i| (i.type_name.as_str(), i.count)),
        )?;
        if self.book().closed {
            return Err(AgentError::Closing);
        }
        self.read_catalog().await;
        let wait = Duration::from_secs(request.wait_seconds.unwrap_or(0));
        let item = |i: &ReserveItem, n: usize, count: u32| LeaseItem {
            name: format!("reserve{n}"),
            type_name: i.type_name.clone(),
            state: i.state.clone(),
            where_: i.where_.clone(),
            count,
            on_failure: OnFailure::Quarantine,
        };
        // Everything in one lease when the stock is there; else item by item,
        // each as many as there are.
        let all: Vec<LeaseItem> = request
            .items
            .iter()
            .enumerate()
            .map(|(n, i)| item(i, n, i.count))
            .collect();
        match self.lease(self.config.holder.clone(), all, wait).await {
            Ok(granted) => {
                self.add_reserve(&granted)?;
                return Ok(ReserveAnswer {
                    reserved: request.items,
                    shortfall: Vec::new(),
                });
            }
            Err(e) if e.kind() == Some(ProblemKind::NoStock) => {}
            Err(e) => return Err(e.into()),
        }
        let mut answer = ReserveAnswer {
            reserved: Vec::new(),
            shortfall: Vec::new(),
        };
        for (n, wanted) in request.items.iter().enumerate() {
            let mut count = wanted.count;
            let mut got = 0;
            let mut last: Option<Shortfall> = None;
            for _ in 0..2 {
                match self
                    .lease(
                        self.config.holder.clone(),
                        vec![item(wanted, n, count)],
                        Duration::ZERO,
                    )
                    .await
                {
                    Ok(granted) => {
                        self.add_reserve(&granted)?;
                        got = count;
                        break;
                    }
                    Err(e) if e.kind() == Some(ProblemKind::NoStock) => {
                        let short = shortfall_of(&e).into_iter().next();
                        let ready = short.as_ref().map_or(0, |s| s.ready);
                        last = short;
                        match u32::try_from(ready) {
                            Ok(r) if r > 0 && r < count => count = r,
                            _ => break,
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if got > 0 {
                answer.reserved.push(ReserveItem {
                    count: got,
                    ..wanted.clone()
                });
            }
            if got < wanted.count {
                answer.shortfall.push(Shortfall {
                    name: format!("{}/{}", wanted.type_name, wanted.state),
                    wanted: wanted.count,
                    ready: last.as_ref().map_or(0, |s| s.ready),
                    generating: last.as_ref().map_or(0, |s| s.generating),
                    generator: last.as_ref().and_then(|s| s.generator.clone()),
                    down: last.as_ref().and_then(|s| s.down.clone()),
                    entities_held: last.as_ref().map_or(0, |s| s.entities_held),
                });
            }
        }
        tracing::info!(
            "agent: reserved {} of {} dataset kind(s) fully",
            answer.reserved.len(),
            request.items.len()
        );
        Ok(answer)
    }

    fn add_reserve(&self, granted: &LeaseGranted) -> Result<(), AgentError> {
        let mut book = self.book();
        Self::hold(&mut book, granted, Purpose::Reserve);
        for d in &granted.datasets {
            book.reserve.push(Reserved {
                lease_id: granted.lease_id.clone(),
                dataset: d.dataset.clone(),
            });
        }
        let closed = book.closed;
        drop(book);
        if closed {
            // Ended meanwhile: the end's settlement already ran without it.
            return Err(AgentError::Closing);
        }
        Ok(())
    }

    pub async fn take(self: &Arc<Self>, request: TakeRequest) -> Result<TakeAnswer, AgentError> {
        validate_counts(request.items.iter().map(|i| (i.name(), i.count)))?;
        let mut names = HashSet::new();
        for item in &request.items {
            if !names.insert(item.name()) {
                return Err(AgentError::Invalid(format!(
                    "item name {:?} is used twice; give each item its own `name`",
                    item.name()
                )));
            }
        }
        let take_id = format!("tk_{}", random_hex(16));
        {
            let mut book = self.book();
            if book.closed {
                return Err(AgentError::Closing);
            }
            if let Some(datasets) = book.take_from_reserve(&request.items) {
                let answer = TakeAnswer {
                    take_id: take_id.clone(),
                    datasets: datasets.iter().map(|t| t.leased.clone()).collect(),
                };
                book.takes.insert(
                    take_id.clone(),
                    Take {
                        id: take_id,
                        test: request.test,
                        worker: request.worker,
                        own_lease: None,
                        datasets,
                        done: None,
                    },
                );
                return Ok(answer);
            }
            book.in_flight += 1;
        }
        // Its own task: the lease is recorded even if the asking test dies.
        let agent = Arc::clone(self);
        tokio::spawn(async move { agent.take_from_pool(take_id, request).await })
            .await
            .map_err(|e| AgentError::Internal(format!("the take failed: {e}")))?
    }

    async fn take_from_pool(
        &self,
        take_id: String,
        request: TakeRequest,
    ) -> Result<TakeAnswer, AgentError> {
        let _in_flight = InFlight(self);
        let holder = Holder {
            test: request.test.clone(),
            worker: request.worker.clone(),
            ..self.config.holder.clone()
        };
        let items: Vec<LeaseItem> = request
            .items
            .iter()
            .map(|i| LeaseItem {
                name: i.name().to_string(),
                type_name: i.type_name.clone(),
                state: i.state.clone(),
                where_: i.where_.clone(),
                count: i.count,
                on_failure: OnFailure::Quarantine,
            })
            .collect();
        let wait = request
            .wait_seconds
            .map_or(DEFAULT_TAKE_WAIT, Duration::from_secs);
        let deadline = Instant::now() + wait;
        let granted = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let asked_at = Instant::now();
            match self
                .lease(holder.clone(), items.clone(), remaining.min(TAKE_POLL))
                .await
            {
                Ok(granted) => break granted,
                Err(e) if e.kind() == Some(ProblemKind::NoStock) => {
                    if self.book().closed || Instant::now() >= deadline {
                        return Err(e.into());
                    }
                    // A pool that answered at once (it did not wait) is not hammered.
                    if asked_at.elapsed() < Duration::from_millis(500) {
                        let pause = Duration::from_millis(500)
                            .min(deadline.saturating_duration_since(Instant::now()));
                        tokio::time::sleep(pause).await;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        };
        if self.book().closed {
            // The run ended while the pool answered: nobody saw these.
            self.release_now(&granted, Outcome::Unused, "the run ended during the take")
                .await;
            return Err(AgentError::Closing);
        }
        let mut book = self.book();
        Self::hold(&mut book, &granted, Purpose::Take(take_id.clone()));
        let datasets: Vec<Taken> = granted
            .datasets
            .iter()
            .map(|d| Taken {
                lease_id: granted.lease_id.clone(),
                leased: d.clone(),
            })
            .collect();
        book.takes.insert(
            take_id.clone(),
            Take {
                id: take_id.clone(),
                test: request.test,
                worker: request.worker,
                own_lease: Some(granted.lease_id.clone()),
                datasets,
                done: None,
            },
        );
        Ok(TakeAnswer {
            take_id,
            datasets: granted.datasets,
        })
    }

    async fn release_now(&self, granted: &LeaseGranted, outcome: Outcome, reason: &str) {
        let request = ReleaseRequest {
            outcome,
            reason: Some(reason.to_string()),
            details_url: self.config.details_url.clone(),
            datasets: BTreeMap::new(),
        };
        let client = self.config.client.holding(lease_token_of(granted));
        let result = retry_transient(self.config.retry_for, || {
            self.counted();
            client.release(&granted.lease_id, &request)
        })
        .await;
        if let Err((e, _)) = result {
            tracing::warn!(
                "agent: failed to release lease {}: {e}; it expires after its TTL",
                granted.lease_id
            );
        }
    }

    pub async fn done(
        &self,
        take_id: &str,
        request: DoneRequest,
    ) -> Result<DoneAnswer, AgentError> {
        let outcome = request.outcome;
        let (take, held) = {
            let mut book = self.book();
            let Some(take) = book.takes.get(take_id) else {
                return Err(AgentError::NotFound(format!(
                    "this agent has no take {take_id}: take ids are per run (GET /v1/takes lists this run's)"
                )));
            };
            if let Some(done) = &take.done {
                // Repeating `done` is harmless: the first answer again.
                return Ok(answer(take_id, done));
            }
            let statuses = take
                .datasets
                .iter()
                .map(|t| {
                    (
                        t.leased.dataset.id.clone(),
                        t.leased.name.clone(),
                        book.status_for(&t.leased.dataset, outcome),
                    )
                })
                .collect();
            let take = book
                .takes
                .get_mut(take_id)
                .ok_or_else(|| AgentError::Internal(format!("take {take_id} vanished")))?;
            take.done = Some(Done {
                outcome,
                reason: request.reason.clone(),
                statuses,
            });
            let take = take.clone();
            let held = take
                .own_lease
                .as_ref()
                .and_then(|l| book.leases.get(l).cloned());
            if take.own_lease.is_none() && outcome == Outcome::Unused {
                // Still ours and never seen: it serves the next take.
                for t in &take.datasets {
                    book.reserve.push(Reserved {
                        lease_id: t.lease_id.clone(),
                        dataset: t.leased.dataset.clone(),
                    });
                }
            }
            (take, held)
        };
        if outcome == Outcome::Failed
            && let Some(test) = &take.test
        {
            let mut failed = self.failed_tests.lock().unwrap_or_else(|p| p.into_inner());
            if !failed.contains(test) {
                failed.push(test.clone());
            }
        }
        let dataset_outcome = DatasetOutcome {
            outcome,
            reason: request.reason.clone(),
            test: take.test.clone(),
        };
        let statuses = match (&take.own_lease, held) {
            (Some(lease_id), Some(held)) => {
                self.done_own_lease(lease_id, &held, &take, &dataset_outcome)
                    .await
            }
            (Some(_), None) => None,
            (None, _) => match outcome {
                Outcome::Unused => None,
                Outcome::Passed => {
                    let mut book = self.book();
                    for t in &take.datasets {
                        if let Some(h) = book.leases.get_mut(&t.lease_id) {
                            h.pending
                                .insert(t.leased.dataset.id.clone(), dataset_outcome.clone());
                        }
                    }
                    None
                }
                Outcome::Failed | Outcome::Cancelled => {
                    Some(self.done_early(&take, &dataset_outcome).await)
                }
            },
        };
        let mut book = self.book();
        let take = book
            .takes
            .get_mut(take_id)
            .ok_or_else(|| AgentError::Internal(format!("take {take_id} vanished")))?;
        let done = take
            .done
            .as_mut()
            .ok_or_else(|| AgentError::Internal(format!("take {take_id} lost its outcome")))?;
        if let Some(statuses) = statuses {
            for (id, status) in statuses {
                if let Some(s) = done.statuses.iter_mut().find(|s| s.0 == id) {
                    s.2 = status;
                }
            }
        }
        Ok(answer(take_id, done))
    }

    /// `done` of a take with its own lease: the lease is released with the
    /// outcome now; if the pool cannot be reached, at the end of the run.
    async fn done_own_lease(
        &self,
        lease_id: &str,
        held: &Held,
        take: &Take,
        outcome: &DatasetOutcome,
    ) -> Option<Vec<(String, DatasetStatus)>> {
        let request = ReleaseRequest {
            outcome: outcome.outcome,
            reason: outcome.reason.clone(),
            details_url: self.config.details_url.clone(),
            datasets: BTreeMap::new(),
        };
        let client = self.config.client.holding(held.lease_token.clone());
        let result = retry_transient(DONE_RETRY, || {
            self.counted();
            client.release(lease_id, &request)
        })
        .await;
        let mut book = self.book();
        match result {
            Ok(answer) => {
                book.leases.remove(lease_id);
                Some(
                    answer
                        .datasets
                        .into_iter()
                        .map(|d| (d.id, d.status))
                        .collect(),
                )
            }
            Err((e, _)) if e.kind() == Some(ProblemKind::LeaseGone) => {
                tracing::error!(
                    "agent: lease {lease_id} of take {} had ended at the pool: {e}",
                    take.id
                );
                book.leases.remove(lease_id);
                None
            }
            Err((e, _)) => {
                tracing::warn!(
                    "agent: failed to release lease {lease_id} of take {} now ({e}); it is released at the end of the run",
                    take.id
                );
                if let Some(h) = book.leases.get_mut(lease_id) {
                    for t in &take.datasets {
                        h.pending
                            .insert(t.leased.dataset.id.clone(), outcome.clone());
                    }
                }
                None
            }
        }
    }

    /// A failed or cancelled take of reserved datasets: each is settled at
    /// once, so the quarantine shows it (with its test) while the run goes on.
    async fn done_early(
        &self,
        take: &Take,
        outcome: &DatasetOutcome,
    ) -> Vec<(String, DatasetStatus)> {
        let mut out = Vec::new();
        for t in &take.datasets {
            let id = &t.leased.dataset.id;
            let token = self
                .book()
                .leases
                .get(&t.lease_id)
                .and_then(|h| h.lease_token.clone());
            let client = self.config.client.holding(token);
            let result = retry_transient(DONE_RETRY, || {
                self.counted();
                client.release_dataset(&t.lease_id, id, outcome)
            })
            .await;
            let mut book = self.book();
            let Some(held) = book.leases.get_mut(&t.lease_id) else {
                continue;
            };
            match result {
                Ok(released) => {
                    held.settled.insert(id.clone());
                    out.push((id.clone(), released.status));
                }
                Err((e, _)) => {
                    tracing::warn!(
                        "agent: failed to settle dataset {id} now ({e}); it is settled at the end of the run"
                    );
                    held.pending.insert(id.clone(), outcome.clone());
                }
            }
        }
        out
    }

    pub fn list(&self) -> TakesAnswer {
        let book = self.book();
        let mut takes: Vec<_> = book.takes.values().map(Take::view).collect();
        takes.sort_by(|a, b| a.take_id.cmp(&b.take_id));
        TakesAnswer {
            takes,
            reserved: book.reserved_counts(),
            leases: book.leases.values().map(Held::view).collect(),
            pool_requests: self.pool_requests.load(Ordering::Relaxed),
        }
    }

    /// Ends the run: no new requests; takes still asking the pool finish (or
    /// are given back); every lease is released, each dataset with its own
    /// outcome (`run_outcome` for takes not done, `unused` for reserved
    /// datasets never taken).
    pub async fn finish(&self, run_outcome: Outcome, run_reason: &str) -> Settlement {
        self.book().closed = true;
        let deadline = Instant::now() + IN_FLIGHT_GRACE;
        loop {
            let waiting = self.in_flight_ended.notified();
            if self.book().in_flight == 0 || Instant::now() >= deadline {
                break;
            }
            let _ = tokio::time::timeout_at(deadline, waiting).await;
        }
        let finals = self.book().final_outcomes(run_outcome, run_reason);
        let mut settlement = Settlement::default();
        let mut releases = tokio::task::JoinSet::new();
        for (held, outcomes) in finals {
            let request = ReleaseRequest {
                outcome: run_outcome,
                reason: Some(run_reason.to_string()),
                details_url: self.config.details_url.clone(),
                datasets: outcomes,
            };
            let client = self.config.client.holding(held.lease_token.clone());
            let retry_for = self.config.retry_for;
            self.counted();
            releases.spawn(async move {
                let result =
                    retry_transient(retry_for, || client.release(&held.lease_id, &request)).await;
                (held, result)
            });
        }
        let mut statuses: BTreeMap<String, DatasetStatus> = BTreeMap::new();
        while let Some(joined) = releases.join_next().await {
            let Ok((held, result)) = joined else { continue };
            match result {
                Ok(answer) => {
                    for d in answer.datasets {
                        statuses.insert(d.id, d.status);
                    }
                }
                Err((e, attempts)) => {
                    tracing::error!(
                        "agent: failed to release lease {} after {attempts} attempt(s): {e}. The pool expires it after its TTL and quarantines what it still holds",
                        held.lease_id
                    );
                    settlement.unreleased.push(held.lease_id.clone());
                }
            }
        }
        let book = self.book();
        settlement.takes = book.takes.len();
        for take in book.takes.values() {
            for t in &take.datasets {
                let id = &t.leased.dataset.id;
                let status = statuses.get(id).copied().or_else(|| {
                    take.done
                        .as_ref()
                        .and_then(|d| d.statuses.iter().find(|s| &s.0 == id))
                        .map(|s| s.2)
                });
                if !settlement.datasets.iter().any(|(i, _, _)| i == id) {
                    settlement
                        .datasets
                        .push((id.clone(), status, take.test.clone()));
                }
            }
        }
        for held in book.leases.values() {
            for id in &held.dataset_ids {
                if !settlement.datasets.iter().any(|(i, _, _)| i == id) {
                    settlement
                        .datasets
                        .push((id.clone(), statuses.get(id).copied(), None));
                }
            }
        }
        drop(book);
        settlement.failed_tests = self
            .failed_tests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        settlement.pool_requests = self.pool_requests.load(Ordering::Relaxed);
        settlement
    }

    /// One heartbeat call per interval for every lease the agent holds; a
    /// lease the pool says is gone is reported loudly and not beaten again.
    pub async fn keep_alive(&self) {
        let mut backoff: Option<Backoff> = None;
        let mut failing_since: Option<Instant> = None;
        let mut last_warned: Option<Instant> = None;
        loop {
            let interval = {
                let book = self.book();
                book.leases
                    .values()
                    .filter(|h| h.lost.is_none())
                    .map(|h| h.heartbeat_interval_seconds.max(1))
                    .min()
                    .unwrap_or(1)
            };
            let pause = match &mut backoff {
                Some(b) => b.next_delay(),
                None => Duration::from_secs(interval),
            };
            tokio::time::sleep(pause).await;
            let leases: Vec<HeartbeatBatchItem> = self
                .book()
                .leases
                .values()
                .filter(|h| h.lost.is_none())
                .map(|h| HeartbeatBatchItem {
                    lease_id: h.lease_id.clone(),
                    lease_token: h.lease_token.as_ref().map(|t| t.expose().to_string()),
                })
                .collect();
            if leases.is_empty() {
                continue;
            }
            self.counted();
            match self
                .config
                .client
                .heartbeat_batch(&HeartbeatBatchRequest { leases })
                .await
            {
                Ok(answer) => {
                    if let Some(since) = failing_since.take() {
                        tracing::info!(
                            "agent: the pool answers heartbeats again after {}s",
                            since.elapsed().as_secs()
                        );
                    }
                    backoff = None;
                    last_warned = None;
                    let mut book = self.book();
                    for r in answer.leases {
                        let Some(held) = book.leases.get_mut(&r.lease_id) else {
                            continue;
                        };
                        match r.problem {
                            Some(problem) => {
                                tracing::error!(
                                    "agent: LEASE LOST: the pool no longer holds lease {} for this job ({}: {}); the tests that took its datasets may see them change",
                                    r.lease_id,
                                    problem.title,
                                    problem.detail
                                );
                                held.lost = Some(problem.detail);
                            }
                            None => {
                                if let Some(s) = r.heartbeat_interval_seconds {
                                    held.heartbeat_interval_seconds = s;
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if last_warned.is_none_or(|t| t.elapsed() >= OUTAGE_LOG_EVERY) {
                        tracing::warn!(
                            "agent: failed to heartbeat for {}s: {e}; the tests go on and the heartbeat is retried",
                            since.elapsed().as_secs()
                        );
                        last_warned = Some(Instant::now());
                    }
                    backoff.get_or_insert_with(|| retry_backoff(Duration::from_secs(interval)));
                }
            }
        }
    }
}

fn answer(take_id: &str, done: &Done) -> DoneAnswer {
    DoneAnswer {
        take_id: take_id.to_string(),
        outcome: done.outcome,
        datasets: done
            .statuses
            .iter()
            .map(|(id, name, status)| ReleasedDataset {
                id: id.clone(),
                name: name.clone(),
                status: *status,
            })
            .collect(),
    }
}

fn shortfall_of(e: &ClientError) -> Vec<Shortfall> {
    match e {
        ClientError::Problem { problem, .. } => problem.shortfall.clone().unwrap_or_default(),
        _ => Vec::new(),
    }
}
