//! Reads: leases, datasets, stock and the quarantine page.

use std::collections::HashMap;

use stockroom_protocol::DatasetStatus;
use stockroom_protocol::LeaseStatus;
use stockroom_protocol::api::{Holder, LeaseView, StockCounts};

use super::lease_view;
use crate::store::tx::Tx;
use crate::store::{DatasetFilter, QuarantinedDataset, StockTable, StoreResult};
use stockroom_protocol::api::DatasetView;

pub(crate) async fn get_lease<T: Tx>(tx: &T, id: &str) -> StoreResult<Option<LeaseView>> {
    match tx.find_lease(id, false).await? {
        Some(l) => Ok(Some(lease_view(tx, l).await?)),
        None => Ok(None),
    }
}

pub(crate) async fn list_leases<T: Tx>(
    tx: &T,
    status: Option<LeaseStatus>,
    limit: u32,
) -> StoreResult<Vec<LeaseView>> {
    let rows = tx
        .list_lease_rows(status.map(LeaseStatus::as_str), limit)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for l in rows {
        out.push(lease_view(tx, l).await?);
    }
    Ok(out)
}

fn set_count(counts: &mut StockCounts, status: DatasetStatus, n: u64) {
    match status {
        DatasetStatus::Ready => counts.ready = n,
        DatasetStatus::Generating => counts.generating = n,
        DatasetStatus::Leased => counts.leased = n,
        DatasetStatus::Quarantined => counts.quarantined = n,
        DatasetStatus::Consumed => counts.consumed = n,
        DatasetStatus::Failed => counts.failed = n,
        DatasetStatus::Discarded => counts.discarded = n,
        // Parts of another dataset are not stock.
        DatasetStatus::Composed => {}
    }
}

/// Counts and settings of every `(type, state)` ever seen.
pub(crate) async fn stock<T: Tx>(tx: &T) -> StoreResult<StockTable> {
    let mut table = StockTable::new();
    for (t, s) in tx.known_states().await? {
        table.entry((t, s)).or_default();
    }
    for ((t, s, status), n) in tx.counts().await? {
        set_count(table.entry((t, s)).or_default(), status, n);
    }
    for (t, s, settings) in tx.stock_settings().await? {
        let counts = table.entry((t, s)).or_default();
        counts.min_ready = Some(settings.min_ready);
        counts.max_ready = Some(settings.max_ready);
    }
    Ok(table)
}

/// Quarantined datasets in insertion order, with full history and the job that
/// failed them: a constant number of queries whatever `limit`.
pub(crate) async fn list_quarantined<T: Tx>(
    tx: &T,
    limit: u32,
) -> StoreResult<Vec<QuarantinedDataset>> {
    let rows = tx.quarantined(limit).await?;
    let ids: Vec<String> = rows.iter().map(|r| r.raw.id.clone()).collect();
    let mut histories: HashMap<String, Vec<_>> = HashMap::new();
    if !ids.is_empty() {
        for (id, entry) in tx.histories(&ids).await? {
            histories.entry(id).or_default().push(entry);
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let mut view = r.raw.view()?;
        view.history = histories.remove(&view.dataset.id).unwrap_or_default();
        let holder_url = match &r.holder_json {
            Some(json) => serde_json::from_str::<Holder>(json)?.url,
            None => None,
        };
        out.push(QuarantinedDataset {
            view,
            failing_job: r.details_url.or(holder_url),
        });
    }
    Ok(out)
}

/// Datasets in insertion order, without history.
pub(crate) async fn list_datasets<T: Tx>(
    tx: &T,
    filter: &DatasetFilter,
) -> StoreResult<Vec<DatasetView>> {
    tx.list_datasets(filter)
        .await?
        .iter()
        .map(|r| r.view())
        .collect()
}
