//! Ending a lease with an outcome (idempotent).

use stockroom_protocol::api::{ReleaseAnswer, ReleasedDataset};
use stockroom_protocol::{DatasetStatus, LeaseStatus, Outcome};

use super::heartbeat::expire_lease;
use super::lifecycle::owe_after;
use super::{Change, Work};
use crate::store::rules::{reasons, released_status};
use crate::store::tx::{LeaseEnd, Tx};
use crate::store::{ReleaseResult, StoreError, StoreResult};

pub(crate) async fn release<T: Tx>(
    tx: &T,
    id: &str,
    outcome: Outcome,
    reason: Option<&str>,
    details_url: Option<&str>,
    now_ms: i64,
) -> StoreResult<ReleaseResult> {
    let mut w = Work::new(tx);
    match release_in(&mut w, id, outcome, reason, details_url, now_ms).await? {
        Released::Answer(out) => {
            w.finish().await?;
            Ok(out)
        }
        Released::Ended(answer, end) => {
            // The lease's end and the bookkeeping in one round trip where the
            // backend pipelines (neither depends on the other).
            let (ended, finished) = tokio::join!(tx.set_lease_released(end), w.finish());
            ended?;
            finished?;
            Ok(ReleaseResult::Released(answer))
        }
    }
}

/// What [`release_in`] did: answered, or released the datasets and left the
/// lease row's end to write.
enum Released<'a> {
    Answer(ReleaseResult),
    Ended(ReleaseAnswer, LeaseEnd<'a>),
}

async fn release_in<'a, T: Tx>(
    w: &mut Work<'_, T>,
    id: &'a str,
    outcome: Outcome,
    reason: Option<&'a str>,
    details_url: Option<&'a str>,
    now_ms: i64,
) -> StoreResult<Released<'a>> {
    let Some(lease) = w.tx.find_lease(id, true).await? else {
        return Ok(Released::Answer(ReleaseResult::NotFound));
    };
    match lease.status()? {
        LeaseStatus::Released => {
            let answer = lease
                .answer
                .as_deref()
                .ok_or_else(|| StoreError::corrupt("a released lease lacks its answer"))?;
            let answer = serde_json::from_str(answer)?;
            return Ok(Released::Answer(ReleaseResult::AlreadyReleased(answer)));
        }
        LeaseStatus::Expired => return Ok(Released::Answer(ReleaseResult::Expired)),
        LeaseStatus::Active if lease.expires_at <= now_ms => {
            expire_lease(w, &lease, now_ms).await?;
            return Ok(Released::Answer(ReleaseResult::Expired));
        }
        LeaseStatus::Active => {}
    }
    let why = reasons::released(outcome, reason);
    let rows = w.tx.release_rows(id).await?;
    let mut datasets = Vec::with_capacity(rows.len());
    for r in rows {
        let d = &r.dataset;
        // A dataset no longer leased (settled by hand meanwhile) keeps its status.
        let to = if d.status != DatasetStatus::Leased {
            d.status
        } else {
            let settled = released_status(outcome, r.on_failure, r.reusable);
            // A reset owed keeps it out of stock until the generator answers.
            let (to, owed) = owe_after(w.tx, d.seq, settled, &r.lifecycle, now_ms).await?;
            let reason = reasons::with_lifecycle(&why, owed);
            w.change(Change {
                seq: d.seq,
                id: &d.id,
                type_name: &d.type_name,
                state: &d.state,
                from: Some(DatasetStatus::Leased),
                to,
                lease_id: Some(id),
                holder: Some(&lease.holder_label),
                reason: &reason,
                now_ms,
            })
            .await?;
            to
        };
        datasets.push(ReleasedDataset {
            id: r.dataset.id,
            name: r.name,
            status: to,
        });
    }
    w.tx.free_entities(id, now_ms).await?;
    let answer = ReleaseAnswer {
        lease_id: id.to_string(),
        status: LeaseStatus::Released,
        outcome: Some(outcome),
        datasets,
    };
    let end = LeaseEnd {
        id,
        now_ms,
        outcome: outcome.as_str(),
        reason,
        details_url,
        answer_json: serde_json::to_string(&answer)?,
    };
    Ok(Released::Ended(answer, end))
}
