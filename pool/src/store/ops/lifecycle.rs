//! Lifecycle calls owed by datasets (docs/generators.md, "Lifecycle calls"):
//! claiming the due ones, recording each outcome in the dataset's history,
//! starting verifications and discarding stock that no longer holds.
//!
//! What a dataset owes is decided where it settles (release, discard,
//! recycle: [`crate::store::rules::lifecycle_after`]); the calls themselves are
//! made by the supply, outside any transaction.

use stockroom_protocol::DatasetStatus;
use stockroom_protocol::generator::LifecycleCall;

use super::{Change, Work};
use crate::store::rules::{lifecycle_after, lifecycle_retry_at, parse_lifecycle, reasons};
use crate::store::tx::{DatasetRef, Tx};
use crate::store::{LifecycleOutcome, LifecycleTask, StoreResult};

/// Sets what a dataset owes after settling in `to`, and answers the status
/// it takes meanwhile (see [`lifecycle_after`]).
pub(crate) async fn owe_after<T: Tx>(
    tx: &T,
    seq: i64,
    to: DatasetStatus,
    lifecycle: &str,
    now_ms: i64,
) -> StoreResult<(DatasetStatus, Option<LifecycleCall>)> {
    let (status, owed) = lifecycle_after(to, &parse_lifecycle(lifecycle));
    if let Some(call) = owed {
        tx.set_pending(seq, Some(&pending_text(call, now_ms)), Some(now_ms), 0)
            .await?;
    }
    Ok((status, owed))
}

/// The stored form of an owed call, `CALL:STEP`: the step (when it was
/// owed, in hex ms, and 64 random bits) makes the request id, the same on
/// every retry of it.
fn pending_text(call: LifecycleCall, now_ms: i64) -> String {
    format!(
        "{}:{now_ms:x}-{}",
        call.as_str(),
        crate::ids::request_suffix()
    )
}

fn pending_call(text: &str) -> Option<LifecycleCall> {
    text.split(':').next()?.parse().ok()
}

/// Takes up to `limit` due calls; each stays claimed for `hold_ms` (another
/// replica takes it only once that passed: the call timed out or this
/// process died).
pub(crate) async fn claim<T: Tx>(
    tx: &T,
    now_ms: i64,
    limit: u32,
    hold_ms: i64,
) -> StoreResult<Vec<LifecycleTask>> {
    let mut out = Vec::new();
    for row in tx.pending_due(now_ms, limit).await? {
        let Some(call) = pending_call(&row.pending) else {
            tx.set_pending(row.seq, None, None, 0).await?;
            continue;
        };
        tx.set_pending(
            row.seq,
            Some(&row.pending),
            Some(now_ms.saturating_add(hold_ms)),
            row.attempts,
        )
        .await?;
        out.push(LifecycleTask {
            call,
            request_id: format!("{}:{}", row.raw.id, row.pending),
            attempts: row.attempts,
            status: crate::store::rows::parse_status(&row.raw.status)?,
            lifecycle: parse_lifecycle(&row.raw.lifecycle),
            dataset: row.raw.dataset()?,
        });
    }
    Ok(out)
}

/// Records what a lifecycle call did. False when the dataset no longer owes it.
pub(crate) async fn finish<T: Tx>(
    tx: &T,
    id: &str,
    outcome: &LifecycleOutcome,
    now_ms: i64,
) -> StoreResult<bool> {
    let mut w = Work::new(tx);
    let Some(d) = tx.dataset_ref(id, true).await? else {
        return Ok(false);
    };
    let (lifecycle, pending) = tx.lifecycle_of(d.seq).await?;
    let Some(pending) = pending.filter(|p| pending_call(p) == Some(outcome.call())) else {
        return Ok(false);
    };
    let by = outcome.generator();
    let change = |to: DatasetStatus, reason: String| {
        let d: &DatasetRef = &d;
        (
            d.seq,
            d.id.clone(),
            d.type_name.clone(),
            d.state.clone(),
            d.status,
            to,
            reason,
        )
    };
    let mut moved = None;
    match outcome {
        LifecycleOutcome::Postponed {
            attempts, until_ms, ..
        } => {
            // Not tried (its generator is backing off): not an attempt.
            tx.set_pending(d.seq, Some(&pending), Some(*until_ms), *attempts)
                .await?;
        }
        LifecycleOutcome::Cleaned { .. } => {
            tx.set_pending(d.seq, None, None, 0).await?;
            w.note(
                id,
                d.status,
                None,
                Some(by),
                &reasons::cleaned_up(by),
                now_ms,
            )
            .await?;
        }
        LifecycleOutcome::CleanupFailed {
            attempts, error, ..
        } => {
            let attempt = attempts + 1;
            let retry = lifecycle_retry_at(LifecycleCall::Cleanup, attempt, now_ms);
            match retry {
                Some(at) => {
                    tx.set_pending(d.seq, Some(&pending), Some(at), attempt)
                        .await?
                }
                None => tx.set_pending(d.seq, None, None, attempt).await?,
            }
            let reason = reasons::cleanup_failed(by, attempt, error, retry.is_some());
            w.note(id, d.status, None, Some(by), &reason, now_ms)
                .await?;
        }
        LifecycleOutcome::Reset {
            data,
            secret_fields,
            entities,
            ..
        } => {
            tx.set_pending(d.seq, None, None, 0).await?;
            tx.set_extended(crate::store::tx::ExtendedRow {
                seq: d.seq,
                to_state: &d.state,
                data: serde_json::to_string(data)?,
                secret_fields: serde_json::to_string(secret_fields)?,
                entities: serde_json::to_string(entities)?,
                now_ms,
            })
            .await?;
            moved = Some(change(DatasetStatus::Ready, reasons::reset_done(by)));
        }
        LifecycleOutcome::ResetFailed { error, .. } => {
            tx.set_pending(d.seq, None, None, 0).await?;
            moved = Some(change(
                DatasetStatus::Quarantined,
                reasons::reset_failed(by, error),
            ));
        }
        LifecycleOutcome::Verified {
            valid: true,
            reason,
            ..
        } => {
            tx.set_pending(d.seq, None, None, 0).await?;
            moved = Some(change(
                DatasetStatus::Ready,
                reasons::verified(by, reason.as_deref()),
            ));
        }
        LifecycleOutcome::Verified {
            valid: false,
            reason,
            ..
        } => {
            tx.set_pending(d.seq, None, None, 0).await?;
            // Gone from the system under test, or changed: discarded, and
            // cleaned up where the generator offers it.
            let (_, owed) =
                owe_after(tx, d.seq, DatasetStatus::Discarded, &lifecycle, now_ms).await?;
            moved = Some(change(
                DatasetStatus::Discarded,
                reasons::with_lifecycle(&reasons::invalid(by, reason.as_deref()), owed),
            ));
        }
        LifecycleOutcome::VerifyFailed {
            attempts, error, ..
        } => {
            let attempt = attempts + 1;
            let retry = lifecycle_retry_at(LifecycleCall::Verify, attempt, now_ms);
            let reason = reasons::verify_failed(by, attempt, error, retry.is_some());
            match retry {
                Some(at) => {
                    tx.set_pending(d.seq, Some(&pending), Some(at), attempt)
                        .await?;
                    w.note(id, d.status, None, Some(by), &reason, now_ms)
                        .await?;
                }
                None => {
                    tx.set_pending(d.seq, None, None, attempt).await?;
                    moved = Some(change(DatasetStatus::Quarantined, reason));
                }
            }
        }
    }
    if let Some((seq, id, type_name, state, from, to, reason)) = moved {
        w.change(Change {
            seq,
            id: &id,
            type_name: &type_name,
            state: &state,
            from: Some(from),
            to,
            lease_id: None,
            holder: Some(by),
            reason: &reason,
            now_ms,
        })
        .await?;
    }
    w.finish().await?;
    Ok(true)
}

/// Moves up to `limit` ready datasets of a state, ready since before
/// `before_ms`, to `generating` with a verify owed (never leased meanwhile).
pub(crate) async fn start_verify<T: Tx>(
    tx: &T,
    type_name: &str,
    state: &str,
    before_ms: i64,
    limit: u32,
    why: &str,
    now_ms: i64,
) -> StoreResult<u64> {
    let mut w = Work::new(tx);
    let rows = tx.stale_ready(type_name, state, before_ms, limit).await?;
    let reason = reasons::verify_started(why);
    for (d, _) in &rows {
        let pending = pending_text(LifecycleCall::Verify, now_ms);
        tx.set_pending(d.seq, Some(&pending), Some(now_ms), 0)
            .await?;
        w.change(Change {
            seq: d.seq,
            id: &d.id,
            type_name,
            state,
            from: Some(DatasetStatus::Ready),
            to: DatasetStatus::Generating,
            lease_id: None,
            holder: Some(reasons::POOL),
            reason: &reason,
            now_ms,
        })
        .await?;
    }
    w.finish().await?;
    Ok(rows.len() as u64)
}

/// Discards up to `limit` ready datasets of a state with `why` (cleanup is
/// owed where they offer it).
pub(crate) async fn discard_ready<T: Tx>(
    tx: &T,
    type_name: &str,
    state: &str,
    limit: u32,
    why: &str,
    now_ms: i64,
) -> StoreResult<u64> {
    let mut w = Work::new(tx);
    let rows = tx.stale_ready(type_name, state, i64::MAX, limit).await?;
    for (d, lifecycle) in &rows {
        let (to, owed) = owe_after(tx, d.seq, DatasetStatus::Discarded, lifecycle, now_ms).await?;
        w.change(Change {
            seq: d.seq,
            id: &d.id,
            type_name,
            state,
            from: Some(DatasetStatus::Ready),
            to,
            lease_id: None,
            holder: Some(reasons::POOL),
            reason: &reasons::with_lifecycle(why, owed),
            now_ms,
        })
        .await?;
    }
    w.finish().await?;
    Ok(rows.len() as u64)
}
