//! Every operation of the pool, written once over the [`Tx`] primitives.
//!
//! An operation runs inside the backend's transaction. Status changes go
//! through [`Work::change`] (row, history and count delta together); the
//! count deltas and newly seen states are written by [`Work::finish`] in one
//! statement each, keys sorted, right before the backend commits: the hot
//! count rows stay locked for the shortest time and two transactions never
//! lock them in opposite orders.

pub(crate) mod extend;
pub(crate) mod generation;
pub(crate) mod heartbeat;
pub(crate) mod lease;
pub(crate) mod lifecycle;
pub(crate) mod reads;
pub(crate) mod register;
pub(crate) mod release;
pub(crate) mod sessions;
pub(crate) mod settle;

use std::collections::{BTreeMap, BTreeSet};

use stockroom_protocol::DatasetStatus;
use stockroom_protocol::api::{DatasetView, LeaseGranted, LeaseView, LeasedDataset};

use super::StoreResult;
use super::rows::LeaseRow;
use super::rules::heartbeat_interval_seconds;
use super::tx::{CountKey, NewHistory, RowStatus, Tx};
use crate::time::rfc3339;

/// One operation's transaction and the bookkeeping it owes at the end.
pub(crate) struct Work<'t, T: Tx> {
    pub tx: &'t T,
    deltas: BTreeMap<CountKey, i64>,
    states: BTreeSet<(String, String)>,
}

/// One status change: the row, the counts and the history, together.
pub(crate) struct Change<'a> {
    pub seq: i64,
    pub id: &'a str,
    pub type_name: &'a str,
    pub state: &'a str,
    pub from: Option<DatasetStatus>,
    pub to: DatasetStatus,
    pub lease_id: Option<&'a str>,
    pub holder: Option<&'a str>,
    pub reason: &'a str,
    pub now_ms: i64,
}

impl<'t, T: Tx> Work<'t, T> {
    pub fn new(tx: &'t T) -> Self {
        Work {
            tx,
            deltas: BTreeMap::new(),
            states: BTreeSet::new(),
        }
    }

    /// Counts one dataset more (`delta` 1) or less (-1) in a status.
    pub fn count(&mut self, type_name: &str, state: &str, status: DatasetStatus, delta: i64) {
        let key = (type_name.to_string(), state.to_string(), status);
        *self.deltas.entry(key).or_insert(0) += delta;
    }

    /// Records that a dataset entered `(type, state)` (kept forever, so the
    /// state is listed in stock even once it is empty). Only a new row or an
    /// extension brings a dataset into a state; status changes keep it there.
    pub fn know(&mut self, type_name: &str, state: &str) {
        self.states
            .insert((type_name.to_string(), state.to_string()));
    }

    pub async fn change(&mut self, c: Change<'_>) -> StoreResult<()> {
        if let Some(from) = c.from {
            self.count(c.type_name, c.state, from, -1);
        }
        self.count(c.type_name, c.state, c.to, 1);
        // The row and its history line do not depend on each other: one
        // round trip where the backend pipelines. A failure of the first
        // (sent first, answered first) is the one reported.
        tokio::try_join!(
            self.tx.set_status(RowStatus {
                seq: c.seq,
                to: c.to,
                lease_id: c.lease_id,
                now_ms: c.now_ms,
            }),
            self.tx.insert_history(NewHistory {
                dataset_id: c.id,
                at: c.now_ms,
                from: c.from,
                to: c.to,
                lease_id: c.lease_id,
                holder: c.holder,
                reason: c.reason,
            })
        )?;
        Ok(())
    }

    /// A history line that changes no status.
    pub async fn note(
        &self,
        id: &str,
        status: DatasetStatus,
        lease_id: Option<&str>,
        holder: Option<&str>,
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.tx
            .insert_history(NewHistory {
                dataset_id: id,
                at: now_ms,
                from: Some(status),
                to: status,
                lease_id,
                holder,
                reason,
            })
            .await
    }

    /// Writes the bookkeeping: call last, right before the commit.
    pub async fn finish(self) -> StoreResult<()> {
        if !self.states.is_empty() {
            let states: Vec<_> = self.states.into_iter().collect();
            self.tx.know_states(&states).await?;
        }
        let deltas: Vec<_> = self.deltas.into_iter().filter(|(_, n)| *n != 0).collect();
        if !deltas.is_empty() {
            self.tx.apply_counts(&deltas).await?;
        }
        Ok(())
    }
}

/// The datasets of a lease, each with how many its item asked for.
pub(crate) async fn leased_datasets<T: Tx>(
    tx: &T,
    lease_id: &str,
) -> StoreResult<Vec<LeasedDataset>> {
    let rows = tx.lease_items(lease_id).await?;
    let mut per_item: BTreeMap<&str, u32> = BTreeMap::new();
    for r in &rows {
        *per_item.entry(r.name.as_str()).or_insert(0) += 1;
    }
    rows.iter()
        .map(|r| {
            Ok(LeasedDataset {
                name: r.name.clone(),
                index: r.index,
                count: per_item.get(r.name.as_str()).copied().unwrap_or(1),
                dataset: r.raw.dataset()?,
            })
        })
        .collect()
}

pub(crate) async fn granted<T: Tx>(tx: &T, lease: &LeaseRow) -> StoreResult<LeaseGranted> {
    Ok(LeaseGranted {
        lease_id: lease.id.clone(),
        lease_token: None,
        expires_at: rfc3339(lease.expires_at),
        heartbeat_interval_seconds: heartbeat_interval_seconds(lease.ttl_ms),
        datasets: leased_datasets(tx, &lease.id).await?,
    })
}

pub(crate) async fn lease_view<T: Tx>(tx: &T, lease: LeaseRow) -> StoreResult<LeaseView> {
    Ok(LeaseView {
        datasets: leased_datasets(tx, &lease.id).await?,
        status: lease.status()?,
        outcome: lease.outcome()?,
        holder: serde_json::from_str(&lease.holder)?,
        created_at: rfc3339(lease.created_at),
        expires_at: rfc3339(lease.expires_at),
        ended_at: lease.ended_at.map(rfc3339),
        lease_id: lease.id,
        reason: lease.reason,
        details_url: lease.details_url,
    })
}

pub(crate) async fn dataset_with_history<T: Tx>(
    tx: &T,
    id: &str,
) -> StoreResult<Option<DatasetView>> {
    let Some(raw) = tx.dataset(id).await? else {
        return Ok(None);
    };
    let mut view = raw.view()?;
    view.history = tx.history(id).await?;
    Ok(Some(view))
}

/// The [`Store`](super::Store) of a backend, every method one shared
/// operation: `$write!(self, |tx| op)` runs `op` in a write transaction,
/// `$read!(self, |tx| op)` as a read (on PostgreSQL outside a transaction). `$extra` holds the methods a
/// backend overrides.
macro_rules! store_over_ops {
    ($store:ty, $write:ident, $read:ident, { $($extra:tt)* }) => {
    impl $crate::store::Store for $store {
        fn lease(&self, attempt: $crate::store::LeaseAttempt) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<$crate::store::LeaseResult>> {
            $write!(self, |tx| $crate::store::ops::lease::lease(tx, &attempt))
        }

        fn find_by_idempotency_key(
            &self,
            key: String,
            fingerprint: String,
            now_ms: i64,
        ) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<Option<$crate::store::LeaseResult>>> {
            $write!(self, |tx| $crate::store::ops::lease::find_by_idempotency_key(tx, &key, &fingerprint, now_ms))
        }

        fn lease_token_hash(&self, lease_id: String) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<Option<Option<String>>>> {
            $read!(self, |tx| $crate::store::ops::lease::token_hash(tx, &lease_id))
        }

        fn heartbeat(
            &self,
            lease_id: String,
            proof: $crate::store::HolderProof,
            ttl_ms: Option<i64>,
            now_ms: i64,
        ) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<$crate::store::HeartbeatResult>> {
            $write!(self, |tx| $crate::store::ops::heartbeat::heartbeat(tx, &lease_id, &proof, ttl_ms, now_ms))
        }

        fn release_each(
            &self,
            release: $crate::store::Release,
            now_ms: i64,
        ) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<$crate::store::ReleaseResult>> {
            $write!(self, |tx| $crate::store::ops::release::release(tx, &release, now_ms))
        }

        fn release_dataset(
            &self,
            lease_id: String,
            proof: $crate::store::HolderProof,
            dataset_id: String,
            outcome: ::stockroom_protocol::api::DatasetOutcome,
            now_ms: i64,
        ) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<$crate::store::DatasetReleaseResult>> {
            $write!(self, |tx| $crate::store::ops::release::release_dataset(
                tx,
                &lease_id,
                &proof,
                &dataset_id,
                &outcome,
                now_ms
            ))
        }

        fn expire_due(&self, now_ms: i64, limit: u32) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<Vec<$crate::store::ExpiredLease>>> {
            $write!(self, |tx| $crate::store::ops::heartbeat::expire_due(tx, now_ms, limit))
        }

        fn register(
            &self,
            datasets: Vec<::stockroom_protocol::api::NewDataset>,
            by: String,
            now_ms: i64,
        ) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<Vec<::stockroom_protocol::api::DatasetView>>> {
            $write!(self, |tx| $crate::store::ops::register::register(tx, &datasets, &by, now_ms))
        }

        fn discard(
            &self,
            id: String,
            by: String,
            now_ms: i64,
        ) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<$crate::store::SettleResult>> {
            $write!(self, |tx| $crate::store::ops::settle::discard(tx, &id, &by, now_ms))
        }

        fn recycle(
            &self,
            id: String,
            by: String,
            now_ms: i64,
        ) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<$crate::store::SettleResult>> {
            $write!(self, |tx| $crate::store::ops::settle::recycle(tx, &id, &by, now_ms))
        }

        fn get_dataset(&self, id: String) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<Option<::stockroom_protocol::api::DatasetView>>> {
            $read!(self, |tx| $crate::store::ops::dataset_with_history(tx, &id))
        }

        fn list_datasets(&self, filter: $crate::store::DatasetFilter) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<Vec<::stockroom_protocol::api::DatasetView>>> {
            $read!(self, |tx| $crate::store::ops::reads::list_datasets(tx, &filter))
        }

        fn history(&self, id: String) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<Vec<::stockroom_protocol::api::HistoryEntry>>> {
            $read!(self, |tx| $crate::store::tx::Tx::history(tx, &id))
        }

        fn get_lease(&self, id: String) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<Option<::stockroom_protocol::api::LeaseView>>> {
            $read!(self, |tx| $crate::store::ops::reads::get_lease(tx, &id))
        }

        fn list_leases(
            &self,
            status: Option<::stockroom_protocol::LeaseStatus>,
            limit: u32,
        ) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<Vec<::stockroom_protocol::api::LeaseView>>> {
            $read!(self, |tx| $crate::store::ops::reads::list_leases(tx, status, limit))
        }

        fn active_lease_count(&self) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<u64>> {
            $read!(self, |tx| $crate::store::tx::Tx::active_lease_count(tx))
        }

        fn stock(&self) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<$crate::store::StockTable>> {
            $read!(self, |tx| $crate::store::ops::reads::stock(tx))
        }

        fn set_stock(
            &self,
            type_name: String,
            state: String,
            settings: ::stockroom_protocol::api::StockSettings,
        ) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<()>> {
            $write!(self, |tx| $crate::store::tx::Tx::set_stock(tx, &type_name, &state, &settings))
        }

        fn purge_consumed(&self, before_ms: i64, now_ms: i64) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<u64>> {
            $write!(self, |tx| $crate::store::ops::settle::purge_consumed(tx, before_ms, now_ms))
        }

        fn begin_generation(
            &self,
            generation: $crate::store::NewGeneration,
            now_ms: i64,
        ) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<Option<String>>> {
            $write!(self, |tx| $crate::store::ops::generation::begin(tx, &generation, now_ms))
        }

        fn take_input(
            &self,
            pick: $crate::store::InputPick,
            now_ms: i64,
        ) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<Option<::stockroom_protocol::Dataset>>> {
            $write!(self, |tx| $crate::store::ops::generation::take_input(tx, &pick, now_ms))
        }

        fn complete_generation(
            &self,
            id: String,
            generated: $crate::store::Generated,
            now_ms: i64,
        ) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<Option<::stockroom_protocol::api::DatasetView>>> {
            $write!(self, |tx| $crate::store::ops::generation::complete(tx, &id, &generated, now_ms))
        }

        fn fail_generation(
            &self,
            id: String,
            error: String,
            now_ms: i64,
        ) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<bool>> {
            $write!(self, |tx| $crate::store::ops::generation::fail(tx, &id, &error, now_ms))
        }

        fn fail_all_generating(&self, reason: String, now_ms: i64) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<u64>> {
            $write!(self, |tx| $crate::store::ops::generation::fail_all(tx, &reason, now_ms))
        }

        fn extend_leased(
            &self,
            extension: $crate::store::Extension,
            now_ms: i64,
        ) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<$crate::store::ExtendResult>> {
            $write!(self, |tx| $crate::store::ops::extend::extend_leased(tx, &extension, now_ms))
        }

        fn list_quarantined(
            &self,
            limit: u32,
        ) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<Vec<$crate::store::QuarantinedDataset>>> {
            $read!(self, |tx| $crate::store::ops::reads::list_quarantined(tx, limit))
        }

        fn put_session(&self, session: $crate::store::SessionRow) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<()>> {
            $write!(self, |tx| $crate::store::tx::Tx::put_session(tx, &session))
        }

        fn get_session(
            &self,
            id_hash: String,
            now_ms: i64,
            idle_ms: i64,
        ) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<Option<$crate::store::SessionRow>>> {
            $write!(self, |tx| $crate::store::ops::sessions::get(tx, &id_hash, now_ms, idle_ms))
        }

        fn delete_session(&self, id_hash: String) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<()>> {
            $write!(self, |tx| $crate::store::tx::Tx::delete_session(tx, &id_hash))
        }

        fn add_session_lease(
            &self,
            id_hash: String,
            lease_id: String,
        ) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<()>> {
            $write!(self, |tx| $crate::store::ops::sessions::add_lease(tx, &id_hash, &lease_id))
        }
        fn claim_lifecycle(
            &self,
            now_ms: i64,
            limit: u32,
            hold_ms: i64,
        ) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<Vec<$crate::store::LifecycleTask>>> {
            $write!(self, |tx| $crate::store::ops::lifecycle::claim(tx, now_ms, limit, hold_ms))
        }

        fn finish_lifecycle(
            &self,
            id: String,
            outcome: $crate::store::LifecycleOutcome,
            now_ms: i64,
        ) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<bool>> {
            $write!(self, |tx| $crate::store::ops::lifecycle::finish(tx, &id, &outcome, now_ms))
        }

        fn start_verify(
            &self,
            type_name: String,
            state: String,
            before_ms: i64,
            limit: u32,
            why: String,
            now_ms: i64,
        ) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<u64>> {
            $write!(self, |tx| $crate::store::ops::lifecycle::start_verify(tx, &type_name, &state, before_ms, limit, &why, now_ms))
        }

        fn discard_ready(
            &self,
            type_name: String,
            state: String,
            limit: u32,
            why: String,
            now_ms: i64,
        ) -> $crate::store::BoxFuture<'_, $crate::store::StoreResult<u64>> {
            $write!(self, |tx| $crate::store::ops::lifecycle::discard_ready(tx, &type_name, &state, limit, &why, now_ms))
        }
            $($extra)*
        }
    };
}
pub(crate) use store_over_ops;
