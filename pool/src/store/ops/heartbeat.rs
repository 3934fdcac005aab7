//! Keeping a lease alive, and its end when it is not.

use stockroom_protocol::{DatasetStatus, LeaseStatus};

use super::{Change, Work};
use crate::store::rows::LeaseRow;
use crate::store::rules::reasons;
use crate::store::tx::Tx;
use crate::store::{ExpiredLease, HeartbeatResult, StoreResult};

/// Moves a (locked) lease to `expired` and quarantines its datasets.
pub(crate) async fn expire_lease<T: Tx>(
    w: &mut Work<'_, T>,
    lease: &LeaseRow,
    now_ms: i64,
) -> StoreResult<Vec<String>> {
    let rows = w.tx.leased_by(&lease.id).await?;
    for d in &rows {
        w.change(Change {
            seq: d.seq,
            id: &d.id,
            type_name: &d.type_name,
            state: &d.state,
            from: Some(DatasetStatus::Leased),
            to: DatasetStatus::Quarantined,
            lease_id: Some(&lease.id),
            holder: Some(&lease.holder_label),
            reason: reasons::LEASE_EXPIRED,
            now_ms,
        })
        .await?;
    }
    w.tx.free_entities(&lease.id, now_ms).await?;
    w.tx.set_lease_expired(&lease.id, now_ms, reasons::LEASE_ROW_EXPIRED)
        .await?;
    Ok(rows.into_iter().map(|d| d.id).collect())
}

/// The lease, if active and not yet due; a due one is expired on the spot.
pub(crate) async fn live_lease<T: Tx>(
    w: &mut Work<'_, T>,
    id: &str,
    now_ms: i64,
) -> StoreResult<Result<LeaseRow, Option<LeaseStatus>>> {
    let Some(lease) = w.tx.find_lease(id, true).await? else {
        return Ok(Err(None));
    };
    let status = lease.status()?;
    if status != LeaseStatus::Active {
        return Ok(Err(Some(status)));
    }
    if lease.expires_at <= now_ms {
        expire_lease(w, &lease, now_ms).await?;
        return Ok(Err(Some(LeaseStatus::Expired)));
    }
    Ok(Ok(lease))
}

pub(crate) async fn heartbeat<T: Tx>(
    tx: &T,
    id: &str,
    ttl_ms: Option<i64>,
    now_ms: i64,
) -> StoreResult<HeartbeatResult> {
    let mut w = Work::new(tx);
    let out = match live_lease(&mut w, id, now_ms).await? {
        Err(None) => HeartbeatResult::NotFound,
        Err(Some(status)) => HeartbeatResult::Gone(status),
        Ok(lease) => {
            let ttl = ttl_ms.unwrap_or(lease.ttl_ms);
            let expires_at = now_ms + ttl;
            tx.set_lease_expiry(id, expires_at, ttl).await?;
            HeartbeatResult::Extended {
                expires_at_ms: expires_at,
                ttl_ms: ttl,
            }
        }
    };
    w.finish().await?;
    Ok(out)
}

/// Expires up to `limit` due leases (each exactly once across writers: the
/// backend locks them and skips those locked by others).
pub(crate) async fn expire_due<T: Tx>(
    tx: &T,
    now_ms: i64,
    limit: u32,
) -> StoreResult<Vec<ExpiredLease>> {
    let mut w = Work::new(tx);
    let due = tx.due_leases(now_ms, limit).await?;
    let mut out = Vec::with_capacity(due.len());
    for lease in due {
        let dataset_ids = expire_lease(&mut w, &lease, now_ms).await?;
        out.push(ExpiredLease {
            lease_id: lease.id,
            dataset_ids,
        });
    }
    w.finish().await?;
    Ok(out)
}
