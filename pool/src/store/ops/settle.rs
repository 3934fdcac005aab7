//! Settling a dataset by hand (discard, recycle) and erasing old data.

use stockroom_protocol::DatasetStatus;

use super::lifecycle::owe_after;
use super::{Change, Work, dataset_with_history};
use crate::store::rules::{DISCARDABLE, RECYCLABLE, reasons};
use crate::store::tx::Tx;
use crate::store::{SettleResult, StoreResult};

/// `quarantined`, `ready` or `failed` → `discarded`, by hand.
pub(crate) async fn discard<T: Tx>(
    tx: &T,
    id: &str,
    by: &str,
    now_ms: i64,
) -> StoreResult<SettleResult> {
    let to = DatasetStatus::Discarded;
    settle(tx, id, DISCARDABLE, to, by, reasons::DISCARDED, now_ms).await
}

/// `quarantined` → `ready`, by hand.
pub(crate) async fn recycle<T: Tx>(
    tx: &T,
    id: &str,
    by: &str,
    now_ms: i64,
) -> StoreResult<SettleResult> {
    let to = DatasetStatus::Ready;
    settle(tx, id, RECYCLABLE, to, by, reasons::RECYCLED, now_ms).await
}

/// Moves a dataset to `to` when its status is one of `allowed`.
async fn settle<T: Tx>(
    tx: &T,
    id: &str,
    allowed: &[DatasetStatus],
    to: DatasetStatus,
    by: &str,
    reason: &str,
    now_ms: i64,
) -> StoreResult<SettleResult> {
    let mut w = Work::new(tx);
    let Some(d) = tx.dataset_ref(id, true).await? else {
        return Ok(SettleResult::NotFound);
    };
    if !allowed.contains(&d.status) {
        return Ok(SettleResult::WrongStatus(d.status));
    }
    // Cleanup after a discard, a reset before a recycled dataset is leased.
    let (lifecycle, _) = tx.lifecycle_of(d.seq).await?;
    let (to, owed) = owe_after(tx, d.seq, to, &lifecycle, now_ms).await?;
    let reason = reasons::with_lifecycle(reason, owed);
    w.change(Change {
        seq: d.seq,
        id,
        type_name: &d.type_name,
        state: &d.state,
        from: Some(d.status),
        to,
        lease_id: None,
        holder: Some(by),
        reason: &reason,
        now_ms,
    })
    .await?;
    let out = match dataset_with_history(tx, id).await? {
        Some(v) => SettleResult::Done(Box::new(v)),
        None => SettleResult::NotFound,
    };
    w.finish().await?;
    Ok(out)
}

/// Erases the data of up to 1 000 datasets consumed before `before_ms`.
pub(crate) async fn purge_consumed<T: Tx>(tx: &T, before_ms: i64, now_ms: i64) -> StoreResult<u64> {
    let w = Work::new(tx);
    let ids = tx.consumed_before(before_ms, 1000).await?;
    for id in &ids {
        tx.erase_data(id, now_ms).await?;
        w.note(
            id,
            DatasetStatus::Consumed,
            None,
            Some(reasons::POOL),
            reasons::DATA_ERASED,
            now_ms,
        )
        .await?;
    }
    w.finish().await?;
    Ok(ids.len() as u64)
}
