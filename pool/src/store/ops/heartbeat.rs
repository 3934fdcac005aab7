//! Keeping a lease alive, and its end when it is not.

use stockroom_protocol::{DatasetStatus, LeaseStatus};

use super::{Change, Work};
use crate::store::rows::LeaseRow;
use crate::store::rules::{HolderProof, reasons};
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

/// Why an operation on a lease does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    NotFound,
    /// The proof does not admit the lease: nothing is changed, not even an
    /// overdue lease expired (that is the reaper's or its holder's doing).
    NotHolder,
    /// No longer active (an overdue one is expired on the spot).
    Gone(LeaseStatus),
}

/// The (locked) lease, if `proof` admits it; `None` when there is none.
pub(crate) async fn held_lease<T: Tx>(
    tx: &T,
    id: &str,
    proof: &HolderProof,
) -> StoreResult<Result<LeaseRow, Refusal>> {
    Ok(match tx.find_lease(id, true).await? {
        None => Err(Refusal::NotFound),
        Some(lease) if !proof.admits(lease.token_hash.as_deref()) => Err(Refusal::NotHolder),
        Some(lease) => Ok(lease),
    })
}

/// The lease, if `proof` admits it and it is active and not yet due; a due
/// one is expired on the spot.
pub(crate) async fn live_lease<T: Tx>(
    w: &mut Work<'_, T>,
    id: &str,
    proof: &HolderProof,
    now_ms: i64,
) -> StoreResult<Result<LeaseRow, Refusal>> {
    let lease = match held_lease(w.tx, id, proof).await? {
        Ok(lease) => lease,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let status = lease.status()?;
    if status != LeaseStatus::Active {
        return Ok(Err(Refusal::Gone(status)));
    }
    if lease.expires_at <= now_ms {
        expire_lease(w, &lease, now_ms).await?;
        return Ok(Err(Refusal::Gone(LeaseStatus::Expired)));
    }
    Ok(Ok(lease))
}

pub(crate) async fn heartbeat<T: Tx>(
    tx: &T,
    id: &str,
    proof: &HolderProof,
    ttl_ms: Option<i64>,
    now_ms: i64,
) -> StoreResult<HeartbeatResult> {
    let mut w = Work::new(tx);
    let out = match live_lease(&mut w, id, proof, now_ms).await? {
        Err(Refusal::NotFound) => HeartbeatResult::NotFound,
        Err(Refusal::NotHolder) => HeartbeatResult::NotHolder,
        Err(Refusal::Gone(status)) => HeartbeatResult::Gone(status),
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
