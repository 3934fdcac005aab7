//! Advancing a leased dataset to another state (an extension).

use stockroom_protocol::DatasetStatus;

use super::heartbeat::{Refusal, live_lease};
use super::{Work, dataset_with_history};
use crate::store::rows::parse_entities;
use crate::store::rules::reasons;
use crate::store::tx::{ExtendedRow, Tx};
use crate::store::{ExtendResult, Extension, StoreResult};

pub(crate) async fn extend_leased<T: Tx>(
    tx: &T,
    x: &Extension,
    now_ms: i64,
) -> StoreResult<ExtendResult> {
    let mut w = Work::new(tx);
    let out = extend_in(&mut w, x, now_ms).await?;
    w.finish().await?;
    Ok(out)
}

async fn extend_in<T: Tx>(
    w: &mut Work<'_, T>,
    x: &Extension,
    now_ms: i64,
) -> StoreResult<ExtendResult> {
    let lease = match live_lease(w, &x.lease_id, &x.proof, now_ms).await? {
        Ok(lease) => lease,
        Err(Refusal::NotFound) => return Ok(ExtendResult::NotFound),
        Err(Refusal::NotHolder) => return Ok(ExtendResult::NotLeaseHolder),
        Err(Refusal::Gone(status)) => return Ok(ExtendResult::Gone(status)),
    };
    let tx = w.tx;
    let Some(d) = tx.dataset_ref(&x.dataset_id, true).await? else {
        return Ok(ExtendResult::NotFound);
    };
    let Some(raw) = tx.dataset(&x.dataset_id).await? else {
        return Ok(ExtendResult::NotFound);
    };
    if d.status != DatasetStatus::Leased
        || raw.lease_id.as_deref() != Some(x.lease_id.as_str())
        || d.state != x.from_state
    {
        return Ok(ExtendResult::NotHolder);
    }
    let old = parse_entities(&raw.entities)?;
    for e in x.entities.iter().filter(|e| !old.contains(e)) {
        match tx.entity_holder(e).await? {
            Some(l) if l != x.lease_id => return Ok(ExtendResult::EntityHeld(e.clone())),
            Some(_) => {}
            None => tx.hold_entity(e, &x.lease_id, &x.dataset_id).await?,
        }
    }
    tx.set_extended(ExtendedRow {
        seq: d.seq,
        to_state: &x.to_state,
        data: serde_json::to_string(&x.data)?,
        secret_fields: serde_json::to_string(&x.secret_fields)?,
        entities: serde_json::to_string(&x.entities)?,
        now_ms,
    })
    .await?;
    w.count(&d.type_name, &d.state, DatasetStatus::Leased, -1);
    w.count(&d.type_name, &x.to_state, DatasetStatus::Leased, 1);
    w.know(&d.type_name, &x.to_state);
    w.note(
        &x.dataset_id,
        DatasetStatus::Leased,
        Some(&x.lease_id),
        Some(&lease.holder_label),
        &reasons::extended(&x.reason, &d.type_name, &d.state, &x.to_state),
        now_ms,
    )
    .await?;
    match dataset_with_history(tx, &x.dataset_id).await? {
        Some(v) => Ok(ExtendResult::Done(Box::new(v))),
        None => Ok(ExtendResult::NotFound),
    }
}
