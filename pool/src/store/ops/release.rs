//! Ending a lease with an outcome (idempotent), each dataset with its own
//! outcome when given, and settling one dataset of a lease early.

use stockroom_protocol::api::{DatasetOutcome, ReleaseAnswer, ReleasedDataset};
use stockroom_protocol::{DatasetStatus, LeaseStatus};

use super::heartbeat::{Refusal, expire_lease, held_lease, live_lease};
use super::lifecycle::owe_after;
use super::{Change, Work};
use crate::store::rules::{HolderProof, reasons, released_status};
use crate::store::tx::{LeaseEnd, Tx};
use crate::store::{DatasetReleaseResult, Release, ReleaseResult, StoreError, StoreResult};

pub(crate) async fn release<T: Tx>(
    tx: &T,
    release: &Release,
    now_ms: i64,
) -> StoreResult<ReleaseResult> {
    let mut w = Work::new(tx);
    match release_in(&mut w, release, now_ms).await? {
        Released::Answer(out) => {
            w.finish().await?;
            Ok(out)
        }
        Released::Ended(answer, end) => {
            // The lease's end, its entities freed and the bookkeeping in one
            // round trip where the backend pipelines (none depends on another).
            let (ended, freed, finished) = tokio::join!(
                tx.set_lease_released(end),
                tx.free_entities(&release.lease_id, now_ms),
                w.finish()
            );
            ended?;
            freed?;
            finished?;
            Ok(ReleaseResult::Released(answer))
        }
    }
}

/// What [`release_in`] did: answered, or released the datasets and left the
/// lease row's end and its entities' freeing to write.
enum Released<'a> {
    Answer(ReleaseResult),
    Ended(ReleaseAnswer, LeaseEnd<'a>),
}

async fn release_in<'a, T: Tx>(
    w: &mut Work<'_, T>,
    release: &'a Release,
    now_ms: i64,
) -> StoreResult<Released<'a>> {
    let Release {
        lease_id: id,
        proof,
        outcome,
        reason,
        details_url,
        datasets,
    } = release;
    let (id, outcome) = (id.as_str(), *outcome);
    let (reason, details_url) = (reason.as_deref(), details_url.as_deref());
    let lease = match held_lease(w.tx, id, proof).await? {
        Ok(lease) => lease,
        Err(Refusal::NotHolder) => return Ok(Released::Answer(ReleaseResult::NotHolder)),
        Err(_) => return Ok(Released::Answer(ReleaseResult::NotFound)),
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
    let strangers: Vec<String> = datasets
        .keys()
        .filter(|k| !rows.iter().any(|r| &r.dataset.id == *k))
        .cloned()
        .collect();
    if !strangers.is_empty() {
        return Ok(Released::Answer(ReleaseResult::NotInLease(strangers)));
    }
    let outcomes = datasets;
    let mut datasets = Vec::with_capacity(rows.len());
    for r in rows {
        let d = &r.dataset;
        // A dataset no longer leased (settled early, or by hand meanwhile) keeps its status.
        let to = if d.status != DatasetStatus::Leased {
            d.status
        } else {
            let own = outcomes.get(&d.id);
            let own_why = own.map(|o| {
                reasons::dataset_released(o.outcome, o.reason.as_deref(), o.test.as_deref(), false)
            });
            let why = own_why.as_deref().unwrap_or(&why);
            let holder = holder_with_test(&lease.holder_label, own.and_then(|o| o.test.as_deref()));
            let outcome = own.map_or(outcome, |o| o.outcome);
            let settled = released_status(outcome, r.on_failure, r.reusable);
            // A reset owed keeps it out of stock until the generator answers.
            let (to, owed) = owe_after(w.tx, d.seq, settled, &r.lifecycle, now_ms).await?;
            let reason = reasons::with_lifecycle(why, owed);
            w.change(Change {
                seq: d.seq,
                id: &d.id,
                type_name: &d.type_name,
                state: &d.state,
                from: Some(DatasetStatus::Leased),
                to,
                lease_id: Some(id),
                holder: Some(&holder),
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
    // Its entities are freed with the lease's end (`release`).
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

/// Settles one dataset of an active lease with its own outcome; the lease
/// goes on for the others. A dataset already settled answers its status.
pub(crate) async fn release_dataset<T: Tx>(
    tx: &T,
    lease_id: &str,
    proof: &HolderProof,
    dataset_id: &str,
    outcome: &DatasetOutcome,
    now_ms: i64,
) -> StoreResult<DatasetReleaseResult> {
    let mut w = Work::new(tx);
    let out = release_dataset_in(&mut w, lease_id, proof, dataset_id, outcome, now_ms).await?;
    // Also when refused: a lease found overdue was expired on the way.
    w.finish().await?;
    Ok(out)
}

async fn release_dataset_in<T: Tx>(
    w: &mut Work<'_, T>,
    lease_id: &str,
    proof: &HolderProof,
    dataset_id: &str,
    outcome: &DatasetOutcome,
    now_ms: i64,
) -> StoreResult<DatasetReleaseResult> {
    let lease = match live_lease(w, lease_id, proof, now_ms).await? {
        Ok(lease) => lease,
        Err(Refusal::NotFound) => return Ok(DatasetReleaseResult::NotFound),
        Err(Refusal::NotHolder) => return Ok(DatasetReleaseResult::NotHolder),
        Err(Refusal::Gone(status)) => return Ok(DatasetReleaseResult::Gone(status)),
    };
    let rows = w.tx.release_rows(lease_id).await?;
    let Some(r) = rows.into_iter().find(|r| r.dataset.id == dataset_id) else {
        return Ok(DatasetReleaseResult::NotInLease);
    };
    if r.dataset.status != DatasetStatus::Leased {
        return Ok(DatasetReleaseResult::AlreadySettled(ReleasedDataset {
            status: r.dataset.status,
            id: r.dataset.id,
            name: r.name,
        }));
    }
    let d = &r.dataset;
    let settled = released_status(outcome.outcome, r.on_failure, r.reusable);
    let (to, owed) = owe_after(w.tx, d.seq, settled, &r.lifecycle, now_ms).await?;
    let why = reasons::with_lifecycle(
        &reasons::dataset_released(
            outcome.outcome,
            outcome.reason.as_deref(),
            outcome.test.as_deref(),
            true,
        ),
        owed,
    );
    let holder = holder_with_test(&lease.holder_label, outcome.test.as_deref());
    w.change(Change {
        seq: d.seq,
        id: &d.id,
        type_name: &d.type_name,
        state: &d.state,
        from: Some(DatasetStatus::Leased),
        to,
        lease_id: Some(lease_id),
        holder: Some(&holder),
        reason: &why,
        now_ms,
    })
    .await?;
    w.tx.free_dataset_entities(lease_id, dataset_id, now_ms)
        .await?;
    Ok(DatasetReleaseResult::Released(ReleasedDataset {
        id: r.dataset.id.clone(),
        name: r.name,
        status: to,
    }))
}

/// The history's holder of a dataset settled for one test: the lease's
/// holder and the test (a reserve lease's holder names no test).
fn holder_with_test(label: &str, test: Option<&str>) -> String {
    match test {
        Some(test) if !label.contains(&format!("test {test}")) => format!("{label} test {test}"),
        _ => label.to_string(),
    }
}
