//! Leases: acquire (with validation, caps and waiting), heartbeat, release,
//! extend, and the reads of leases.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use stockroom_protocol::api::{
    DatasetOutcome, HeartbeatAnswer, HeartbeatBatchItem, LeaseGranted, LeaseList, LeaseRequest,
    LeaseView, ReleaseAnswer, ReleasedDataset, Shortfall,
};
use stockroom_protocol::{LeaseStatus, Outcome};

use super::{PoolService, ServiceError, ServiceResult};
use crate::metrics::Metrics;
use crate::store::{
    DatasetReleaseResult, ExtendResult, Extension, HeartbeatResult, HolderProof, ItemShortfall,
    LeaseAttempt, LeaseResult, Release, ReleaseResult,
};
use crate::time::rfc3339;
use crate::waiting::Need;

/// Largest `count` of one item (one constant in protocol, docs/manifest.md).
pub const MAX_COUNT: u32 = stockroom_protocol::api::MAX_COUNT;
/// Most items in one lease request.
pub const MAX_ITEMS: usize = 100;
/// Most leases in one heartbeat batch.
pub const MAX_HEARTBEAT_BATCH: usize = 1000;

/// A lease answer: new (HTTP 201), or the active lease of the same
/// idempotency key (HTTP 200).
#[derive(Debug)]
pub struct Leased {
    pub granted: LeaseGranted,
    pub new: bool,
}

/// A release answer: the first (`first`), or the same answer again.
#[derive(Debug)]
pub struct Released {
    pub answer: ReleaseAnswer,
    pub first: bool,
}

/// Checks a lease request; the error is the reason.
fn validate(req: &LeaseRequest) -> ServiceResult<()> {
    let invalid = |m: String| Err(ServiceError::Invalid(m));
    if req.items.is_empty() {
        return invalid("items must list at least one dataset".into());
    }
    if req.items.len() > MAX_ITEMS {
        return invalid(format!(
            "at most {MAX_ITEMS} items per lease, found {}",
            req.items.len()
        ));
    }
    let mut names = HashSet::new();
    for item in &req.items {
        if item.name.is_empty() || item.type_name.is_empty() || item.state.is_empty() {
            return invalid("every item needs a non-empty name, type and state".into());
        }
        if !names.insert(item.name.as_str()) {
            return invalid(format!("item name {:?} is used twice", item.name));
        }
        if item.count == 0 || item.count > MAX_COUNT {
            return invalid(format!(
                "item {:?}: count must be from 1 to {MAX_COUNT}, found {}",
                item.name, item.count
            ));
        }
    }
    if req.ttl_seconds == Some(0) {
        return invalid("ttl_seconds must be at least 1".into());
    }
    if req
        .idempotency_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 512)
    {
        return invalid("idempotency_key must be 1 to 512 characters".into());
    }
    Ok(())
}

/// What a caller shows to act on a lease (docs/pool.md, "Lease tokens").
#[derive(Clone, PartialEq, Eq)]
pub enum Proof {
    /// The `Stockroom-Lease-Token` header, when sent.
    Token(Option<String>),
    /// The web page's session that took the lease (the page keeps which
    /// leases a session took; the cookie is the proof).
    TakenHere,
    /// A caller with an admin token: may release any lease, nothing more.
    Admin,
}

/// What a caller wants to do to a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseAct {
    Heartbeat,
    Release,
    Extend,
}

/// Never shows the token.
impl std::fmt::Debug for Proof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Proof::Token(Some(_)) => f.write_str("Token(***)"),
            Proof::Token(None) => f.write_str("Token(none)"),
            Proof::TakenHere => f.write_str("TakenHere"),
            Proof::Admin => f.write_str("Admin"),
        }
    }
}

impl Proof {
    /// What the store checks, in the operation's own transaction, for `act`:
    /// the token against the stored hash; the page's session that took the
    /// lease; an admin, who may release any lease and do nothing more.
    fn for_act(&self, act: LeaseAct) -> HolderProof {
        match self {
            Proof::Admin if act == LeaseAct::Release => HolderProof::Anyone,
            Proof::Admin => HolderProof::Refused,
            Proof::TakenHere => HolderProof::Anyone,
            Proof::Token(Some(token)) => HolderProof::Token(token.clone()),
            Proof::Token(None) => HolderProof::Refused,
        }
    }
}

fn not_holder(id: &str) -> ServiceError {
    ServiceError::NotHolder(format!(
        "this request does not prove it holds lease {id}: send the lease_token of the POST /api/v1/leases \
         answer in the Stockroom-Lease-Token header (an admin token may release any lease without it)"
    ))
}

fn public_shortfall(s: &[ItemShortfall]) -> Vec<Shortfall> {
    s.iter()
        .map(|s| Shortfall {
            name: s.name.clone(),
            wanted: s.wanted,
            ready: s.ready,
            generating: s.generating,
            generator: None,
            down: None,
            entities_held: s.entities_held,
        })
        .collect()
}

fn key_conflict() -> ServiceError {
    ServiceError::IdempotencyConflict(
        "this idempotency_key has an active lease for another request or another process; nothing is held. \
         Two processes computed the same key: give each its own shard (--shard-index/--shard-total) or \
         its own STOCKROOM_IDEMPOTENCY_KEY"
            .into(),
    )
}

fn no_lease(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("no lease {id}"))
}

fn gone(id: &str, status: LeaseStatus, detail: String) -> ServiceError {
    ServiceError::LeaseGone {
        lease_id: id.to_string(),
        status,
        detail,
    }
}

impl PoolService {
    /// That a caller holds a lease, checked on its own, before work that
    /// must not start for anyone else (an extension's generator call).
    /// Heartbeat, release and the extension's write check the same
    /// [`Proof::for_act`] inside their own transaction instead. `NotFound`
    /// when there is no such lease; never says more about the token.
    pub async fn check_holder(&self, id: &str, proof: &Proof, act: LeaseAct) -> ServiceResult<()> {
        let Some(stored) = self.store().lease_token_hash(id.to_string()).await? else {
            return Err(no_lease(id));
        };
        if proof.for_act(act).admits(stored.as_deref()) {
            Ok(())
        } else {
            Err(not_holder(id))
        }
    }

    /// TTL in milliseconds: asked (or the default), capped by `max_lease_ttl`.
    pub fn ttl_ms(&self, asked_seconds: Option<u64>) -> i64 {
        let cfg = self.config();
        let asked = asked_seconds.map_or(cfg.default_lease_ttl.0, Duration::from_secs);
        asked
            .min(cfg.max_lease_ttl.0)
            .as_millis()
            .min(i64::MAX as u128) as i64
    }

    /// Leases every item atomically, or nothing, waiting up to
    /// `wait_seconds` (capped by `max_wait`) for stock, first come first
    /// served (see `waiting`). A request that finds no stock asks the supply
    /// to make its shortfall just in time.
    pub async fn lease(&self, req: LeaseRequest) -> ServiceResult<Leased> {
        let result = self.lease_now(req).await;
        self.observe_write(&result);
        result
    }

    async fn lease_now(&self, req: LeaseRequest) -> ServiceResult<Leased> {
        validate(&req)?;
        let wanted: BTreeSet<(String, String)> = req
            .items
            .iter()
            .map(|i| (i.type_name.clone(), i.state.clone()))
            .collect();
        self.check_known(&wanted).await?;
        let fingerprint =
            crate::store::rules::request_fingerprint(&req.holder, &req.items, req.ttl_seconds);
        // The instance binds the key; it is never stored or shown.
        let holder = stockroom_protocol::api::Holder {
            instance: None,
            ..req.holder.clone()
        };
        let ttl_ms = self.ttl_ms(req.ttl_seconds);
        let wait = Duration::from_secs(req.wait_seconds.unwrap_or(0)).min(self.config().max_wait.0);
        let store = self.store();
        let queue = self.queue();
        let metrics = self.metrics();
        let mut shutdown = self.shutdown_signal();
        let deadline = tokio::time::Instant::now() + wait;
        let started = Instant::now();
        // Demand counts from when it was asked for, even if the lease waits.
        let asked_ms = self.now_ms();
        let needs = req
            .items
            .iter()
            .map(|i| Need {
                type_name: i.type_name.clone(),
                state: i.state.clone(),
                where_: i.where_.clone(),
                count: i.count,
            })
            .collect();
        let mut changed = queue.subscribe();
        let ticket = queue.join(needs);
        let mut last_short: Option<Vec<ItemShortfall>> = None;
        let mut queued_behind: bool;
        loop {
            changed.borrow_and_update();
            if ticket.may_try() {
                let attempt = LeaseAttempt {
                    holder: holder.clone(),
                    items: req.items.clone(),
                    ttl_ms,
                    idempotency_key: req.idempotency_key.clone(),
                    fingerprint: fingerprint.clone(),
                    now_ms: self.now_ms(),
                };
                match store.lease(attempt).await? {
                    LeaseResult::Granted(granted) => {
                        self.supply().record_leases(&req.items, asked_ms);
                        self.stock_taken();
                        Metrics::inc(&metrics.leases_granted, 1);
                        metrics.observe_acquire(started.elapsed());
                        tracing::info!(lease_id = %granted.lease_id, datasets = granted.datasets.len(), "lease granted");
                        return Ok(Leased { granted, new: true });
                    }
                    LeaseResult::Existing(granted) => {
                        return Ok(Leased {
                            granted,
                            new: false,
                        });
                    }
                    LeaseResult::KeyConflict => return Err(key_conflict()),
                    LeaseResult::NoStock(short) => {
                        // A state no route can make now, and too little of it
                        // coming: fail early, naming the generator and why.
                        for s in &short {
                            let Some(item) = req.items.iter().find(|i| i.name == s.name) else {
                                continue;
                            };
                            if s.available + s.generating >= u64::from(s.wanted) {
                                continue;
                            }
                            if let Some((generator, why)) =
                                self.supply().unmakeable(&item.type_name, &item.state)
                            {
                                Metrics::inc(&metrics.acquire_no_stock, 1);
                                return Err(ServiceError::GeneratorFailed {
                                    detail: format!(
                                        "no route can make {}/{} for item {:?} now: generator {generator:?} is down ({why}); \
                                         fix or restart it, or lease what is in stock",
                                        item.type_name, item.state, item.name
                                    ),
                                    generator,
                                });
                            }
                        }
                        let satisfiable = short.iter().all(|s| s.potential >= u64::from(s.wanted));
                        ticket.set_blocking(satisfiable);
                        self.supply().on_shortfall(&req.items, &short);
                        last_short = Some(short);
                        queued_behind = false;
                    }
                }
            } else {
                // Not our turn: an earlier waiter for the same states goes
                // first, but a retry of a lease already granted is answered.
                if let Some(key) = &req.idempotency_key {
                    match store
                        .find_by_idempotency_key(key.clone(), fingerprint.clone(), self.now_ms())
                        .await?
                    {
                        Some(LeaseResult::Existing(granted)) => {
                            return Ok(Leased {
                                granted,
                                new: false,
                            });
                        }
                        Some(_) => return Err(key_conflict()),
                        None => {}
                    }
                }
                queued_behind = true;
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = shutdown.wait_for(|s| *s) => return Err(ServiceError::ShuttingDown),
            }
        }
        drop(ticket);
        Metrics::inc(&metrics.acquire_no_stock, 1);
        let shortfall = match last_short {
            Some(s) => public_shortfall(&s),
            None => {
                // Never tried (queued behind earlier waiters): the states' counts.
                let stock = self.stock().await?;
                req.items
                    .iter()
                    .map(|i| {
                        let c = stock
                            .get(&(i.type_name.clone(), i.state.clone()))
                            .cloned()
                            .unwrap_or_default();
                        Shortfall {
                            name: i.name.clone(),
                            wanted: i.count,
                            ready: c.ready,
                            generating: c.generating,
                            generator: None,
                            down: None,
                            entities_held: 0,
                        }
                    })
                    .collect()
            }
        };
        // Each wanted state's generator and whether it is down.
        let shortfall = shortfall
            .into_iter()
            .map(|mut s| {
                if let Some(item) = req.items.iter().find(|i| i.name == s.name)
                    && let Some((generator, down)) =
                        self.supply().generator_status(&item.type_name, &item.state)
                {
                    s.generator = Some(generator);
                    s.down = down;
                }
                s
            })
            .collect();
        Err(ServiceError::NoStock {
            shortfall,
            queued_behind,
        })
    }

    /// Extends an active lease to now + TTL (the asked TTL, capped, or the
    /// lease's own). A lease found past its expiry is expired on the spot.
    pub async fn heartbeat(
        &self,
        id: String,
        proof: &Proof,
        ttl_seconds: Option<u64>,
    ) -> ServiceResult<HeartbeatAnswer> {
        let result = self.heartbeat_now(id, proof, ttl_seconds).await;
        self.observe_write(&result);
        result
    }

    async fn heartbeat_now(
        &self,
        id: String,
        proof: &Proof,
        ttl_seconds: Option<u64>,
    ) -> ServiceResult<HeartbeatAnswer> {
        if ttl_seconds == Some(0) {
            return Err(ServiceError::Invalid(
                "ttl_seconds must be at least 1".into(),
            ));
        }
        let ttl = ttl_seconds.map(|s| self.ttl_ms(Some(s)));
        match self
            .store()
            .heartbeat(
                id.clone(),
                proof.for_act(LeaseAct::Heartbeat),
                ttl,
                self.now_ms(),
            )
            .await?
        {
            HeartbeatResult::Extended {
                expires_at_ms,
                ttl_ms,
            } => Ok(HeartbeatAnswer {
                lease_id: id,
                expires_at: rfc3339(expires_at_ms),
                heartbeat_interval_seconds: crate::store::heartbeat_interval_seconds(ttl_ms),
            }),
            HeartbeatResult::Gone(status) => {
                if status == LeaseStatus::Expired {
                    self.leases_expired(1);
                }
                Err(gone(
                    &id,
                    status,
                    format!("lease {id} is {status}; its datasets can no longer be used"),
                ))
            }
            HeartbeatResult::NotFound => Err(no_lease(&id)),
            HeartbeatResult::NotHolder => Err(not_holder(&id)),
        }
    }

    /// Leases expired (by the reaper or found overdue): their entities are free.
    fn leases_expired(&self, n: u64) {
        if n > 0 {
            Metrics::inc(&self.metrics().leases_expired, n);
            self.stock_freed();
        }
    }

    /// Ends a lease with an outcome (see `Store::release`). Idempotent.
    pub async fn release(
        &self,
        id: String,
        proof: &Proof,
        outcome: Outcome,
        reason: Option<String>,
        details_url: Option<String>,
    ) -> ServiceResult<Released> {
        self.release_each(id, proof, outcome, reason, details_url, BTreeMap::new())
            .await
    }

    /// [`Self::release`] with per-dataset outcomes (see `Store::release_each`).
    pub async fn release_each(
        &self,
        id: String,
        proof: &Proof,
        outcome: Outcome,
        reason: Option<String>,
        details_url: Option<String>,
        datasets: BTreeMap<String, DatasetOutcome>,
    ) -> ServiceResult<Released> {
        let result = self
            .release_each_now(id, proof, outcome, reason, details_url, datasets)
            .await;
        self.observe_write(&result);
        result
    }

    async fn release_each_now(
        &self,
        id: String,
        proof: &Proof,
        outcome: Outcome,
        reason: Option<String>,
        details_url: Option<String>,
        datasets: BTreeMap<String, DatasetOutcome>,
    ) -> ServiceResult<Released> {
        match self
            .store()
            .release_each(
                Release {
                    lease_id: id.clone(),
                    proof: proof.for_act(LeaseAct::Release),
                    outcome,
                    reason,
                    details_url,
                    datasets,
                },
                self.now_ms(),
            )
            .await?
        {
            ReleaseResult::Released(answer) => {
                Metrics::inc(&self.metrics().leases_released, 1);
                self.stock_freed();
                tracing::info!(lease_id = %id, %outcome, "lease released");
                Ok(Released {
                    answer,
                    first: true,
                })
            }
            ReleaseResult::AlreadyReleased(answer) => Ok(Released {
                answer,
                first: false,
            }),
            ReleaseResult::Expired => {
                self.stock_freed();
                Err(gone(
                    &id,
                    LeaseStatus::Expired,
                    format!(
                        "lease {id} expired before this release; its datasets were quarantined at expiry. Treat this as final."
                    ),
                ))
            }
            ReleaseResult::NotFound => Err(no_lease(&id)),
            ReleaseResult::NotHolder => Err(not_holder(&id)),
            ReleaseResult::NotInLease(ids) => Err(ServiceError::Invalid(format!(
                "lease {id} holds no dataset {}; list only its own datasets in `datasets`",
                ids.join(", ")
            ))),
        }
    }

    /// Settles one dataset of an active lease early with its own outcome
    /// (see `Store::release_dataset`); the lease goes on for the others.
    /// Repeating it answers the dataset's status again.
    pub async fn release_dataset(
        &self,
        lease_id: String,
        proof: &Proof,
        dataset_id: String,
        outcome: DatasetOutcome,
    ) -> ServiceResult<ReleasedDataset> {
        let result = self
            .release_dataset_now(lease_id, proof, dataset_id, outcome)
            .await;
        self.observe_write(&result);
        result
    }

    async fn release_dataset_now(
        &self,
        lease_id: String,
        proof: &Proof,
        dataset_id: String,
        outcome: DatasetOutcome,
    ) -> ServiceResult<ReleasedDataset> {
        let id = lease_id;
        match self
            .store()
            .release_dataset(
                id.clone(),
                proof.for_act(LeaseAct::Release),
                dataset_id.clone(),
                outcome.clone(),
                self.now_ms(),
            )
            .await?
        {
            DatasetReleaseResult::Released(released) => {
                self.stock_freed();
                tracing::info!(lease_id = %id, %dataset_id, outcome = %outcome.outcome, "dataset released early");
                Ok(released)
            }
            DatasetReleaseResult::AlreadySettled(released) => Ok(released),
            DatasetReleaseResult::NotInLease => Err(ServiceError::NotHolder(format!(
                "dataset {dataset_id} is not part of lease {id}"
            ))),
            DatasetReleaseResult::Gone(status) => {
                if status == LeaseStatus::Expired {
                    self.leases_expired(1);
                }
                Err(gone(
                    &id,
                    status,
                    format!("lease {id} is {status}; its datasets were settled with it"),
                ))
            }
            DatasetReleaseResult::NotFound => Err(no_lease(&id)),
            DatasetReleaseResult::NotHolder => Err(not_holder(&id)),
        }
    }

    /// Heartbeats every listed lease, each on its own (one failing does not
    /// fail the others): one call per interval for a holder of many leases.
    pub async fn heartbeat_batch(
        &self,
        leases: Vec<HeartbeatBatchItem>,
    ) -> ServiceResult<Vec<(String, ServiceResult<HeartbeatAnswer>)>> {
        if leases.len() > MAX_HEARTBEAT_BATCH {
            return Err(ServiceError::Invalid(format!(
                "at most {MAX_HEARTBEAT_BATCH} leases per heartbeat batch, found {}",
                leases.len()
            )));
        }
        let mut out = Vec::with_capacity(leases.len());
        for item in leases {
            // Each lease proves its holder on its own (docs/pool.md "Lease tokens").
            let proof = Proof::Token(item.lease_token);
            let result = self.heartbeat(item.lease_id.clone(), &proof, None).await;
            out.push((item.lease_id, result));
        }
        Ok(out)
    }

    /// Expires every lease whose time is up, in batches; returns how many.
    pub async fn expire_due(&self) -> ServiceResult<u64> {
        const BATCH: u32 = 500;
        let mut total = 0;
        loop {
            let expired = self.store().expire_due(self.now_ms(), BATCH).await?;
            for e in &expired {
                tracing::warn!(lease_id = %e.lease_id, datasets = e.dataset_ids.len(),
                    "lease expired without heartbeat; its datasets are quarantined");
            }
            self.leases_expired(expired.len() as u64);
            total += expired.len() as u64;
            if expired.len() < BATCH as usize {
                return Ok(total);
            }
        }
    }

    /// One lease, secrets redacted.
    pub async fn lease_view(&self, id: String) -> ServiceResult<LeaseView> {
        let mut lease = self.lease_with_secrets(id).await?;
        for d in &mut lease.datasets {
            d.dataset = d.dataset.redacted();
        }
        Ok(lease)
    }

    /// One lease with its secrets: only for its holder (the web page's
    /// session that took it).
    pub async fn lease_with_secrets(&self, id: String) -> ServiceResult<LeaseView> {
        self.store()
            .get_lease(id.clone())
            .await?
            .ok_or_else(|| no_lease(&id))
    }

    /// Leases, newest first, optionally of one status, secrets redacted.
    pub async fn leases(
        &self,
        status: Option<LeaseStatus>,
        limit: u32,
    ) -> ServiceResult<LeaseList> {
        let mut leases = self.store().list_leases(status, limit).await?;
        for l in &mut leases {
            for d in &mut l.datasets {
                d.dataset = d.dataset.redacted();
            }
        }
        Ok(LeaseList { leases })
    }

    /// Advances a leased dataset by an extension, for the lease's holder.
    /// The generator is called outside any store transaction; only a valid
    /// answer changes the dataset. Answers the dataset with its secrets (the
    /// caller holds the lease).
    pub async fn extend(
        &self,
        lease_id: String,
        proof: &Proof,
        dataset_id: String,
        extension: String,
    ) -> ServiceResult<stockroom_protocol::api::DatasetView> {
        let id = lease_id;
        self.check_holder(&id, proof, LeaseAct::Extend).await?;
        let lease = self.lease_with_secrets(id.clone()).await?;
        if lease.status != LeaseStatus::Active {
            return Err(gone(
                &id,
                lease.status,
                format!("lease {id} is {}", lease.status),
            ));
        }
        let Some(held) = lease
            .datasets
            .iter()
            .find(|d| d.dataset.id == dataset_id)
            .map(|d| d.dataset.clone())
        else {
            return Err(ServiceError::NotHolder(format!(
                "dataset {dataset_id} is not part of lease {id}"
            )));
        };
        let graph = self.supply().graph();
        let from_here: Vec<String> = graph
            .extensions_from(&held.type_name, &held.state)
            .iter()
            .map(|e| e.spec.name.clone())
            .collect();
        let Some(ext) = graph
            .extension(&held.type_name, &extension)
            .filter(|e| e.spec.from == held.state)
            .cloned()
        else {
            return Err(ServiceError::UnknownExtension {
                detail: format!(
                    "no generator offers extension {:?} from {}/{}; known extensions from this state: {}",
                    extension,
                    held.type_name,
                    held.state,
                    if from_here.is_empty() {
                        "none".to_string()
                    } else {
                        from_here.join(", ")
                    }
                ),
                known: from_here,
            });
        };
        let target_fields = graph
            .state(&held.type_name, &ext.spec.to)
            .map(|s| s.fields.clone())
            .unwrap_or_default();
        let answer = self
            .supply()
            .extend(&ext.generator, &ext.spec, &target_fields, held.clone())
            .await
            .map_err(|err| ServiceError::GeneratorFailed {
                generator: ext.generator.clone(),
                detail: format!("{err}; dataset {dataset_id} is unchanged and still leased"),
            })?;
        let change = Extension {
            lease_id: id.clone(),
            proof: proof.for_act(LeaseAct::Extend),
            dataset_id: dataset_id.clone(),
            from_state: held.state.clone(),
            to_state: ext.spec.to.clone(),
            data: answer.data,
            secret_fields: answer.secret_fields,
            entities: answer.entities,
            reason: format!(
                "extended by {:?} of generator {:?}",
                ext.spec.name, ext.generator
            ),
        };
        match self.store().extend_leased(change, self.now_ms()).await? {
            ExtendResult::Done(view) => {
                tracing::info!(lease_id = %id, %dataset_id, extension = %ext.spec.name, "dataset extended");
                Ok(*view)
            }
            ExtendResult::Gone(status) => Err(gone(&id, status, format!("lease {id} is {status}"))),
            ExtendResult::NotLeaseHolder => Err(not_holder(&id)),
            ExtendResult::NotFound => Err(ServiceError::NotFound(format!(
                "no lease {id} or dataset {dataset_id}"
            ))),
            ExtendResult::NotHolder => Err(ServiceError::NotHolder(format!(
                "dataset {dataset_id} is no longer held by lease {id} in state {}",
                held.state
            ))),
            ExtendResult::EntityHeld(entity) => Err(ServiceError::GeneratorFailed {
                generator: ext.generator.clone(),
                detail: format!(
                    "the extension answered entity {entity:?}, which another active lease holds; the dataset is unchanged"
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockroom_protocol::api::{Holder, LeaseItem};

    fn request(items: Vec<LeaseItem>) -> LeaseRequest {
        LeaseRequest {
            holder: Holder::default(),
            ttl_seconds: None,
            wait_seconds: None,
            idempotency_key: None,
            items,
        }
    }

    fn item(name: &str, count: u32) -> LeaseItem {
        LeaseItem {
            name: name.into(),
            type_name: "customer".into(),
            state: "active".into(),
            where_: Default::default(),
            count,
            on_failure: Default::default(),
        }
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let msg = |r: LeaseRequest| match validate(&r) {
            Err(ServiceError::Invalid(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert!(msg(request(vec![])).contains("at least one"));
        assert!(msg(request(vec![item("a", 1), item("a", 1)])).contains("used twice"));
        assert!(msg(request(vec![item("a", 0)])).contains("count must be from 1"));
        assert!(msg(request(vec![item("a", MAX_COUNT + 1)])).contains("count must be from 1"));
        let mut r = request(vec![item("a", 1)]);
        r.idempotency_key = Some(String::new());
        assert!(msg(r).contains("idempotency_key"));
        assert!(validate(&request(vec![item("a", 1), item("b", MAX_COUNT)])).is_ok());
    }
}
