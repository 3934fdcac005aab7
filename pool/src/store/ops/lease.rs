//! Leasing: every item atomically or nothing, the oldest matching ready
//! datasets whose entities are free; and the idempotency-key lookup.

use std::collections::HashSet;

use stockroom_protocol::api::LeaseItem;
use stockroom_protocol::{Attributes, DatasetStatus, LeaseStatus};

use super::heartbeat::expire_lease;
use super::{Change, Work, granted};
use crate::ids;
use crate::store::rows::{LeaseRow, parse_entities};
use crate::store::rules::{lease_token_hash, reasons};
use crate::store::tx::{Attr, CandidateQuery, NewLease, NewLeaseItem, Tx};
use crate::store::{ItemShortfall, LeaseAttempt, LeaseResult, StoreError, StoreResult};

/// A ready dataset chosen for an item.
pub(crate) struct Picked {
    pub seq: i64,
    pub id: String,
    pub entities: Vec<String>,
    pub updated_at: i64,
}

/// The active lease of an idempotency key: the same request again gets it
/// with a fresh token (only the token's hash is kept, so the first cannot be
/// answered again), another request a conflict. One found overdue is
/// expired (as the reaper would) and answers `None`.
async fn active_by_key<T: Tx>(
    w: &mut Work<'_, T>,
    key: &str,
    fingerprint: &str,
    now_ms: i64,
) -> StoreResult<Option<LeaseResult>> {
    let Some(lease) = w.tx.active_lease_by_key(key).await? else {
        return Ok(None);
    };
    if lease.expires_at <= now_ms {
        expire_lease(w, &lease, now_ms).await?;
        return Ok(None);
    }
    // A lease older than fingerprints is bound to nothing: never handed out again.
    if lease.request_hash.as_deref() != Some(fingerprint) {
        return Ok(Some(LeaseResult::KeyConflict));
    }
    let token = ids::lease_token();
    w.tx.set_lease_token(&lease.id, &lease_token_hash(&token))
        .await?;
    let mut answer = granted(w.tx, &lease).await?;
    answer.lease_token = Some(token);
    Ok(Some(LeaseResult::Existing(answer)))
}

pub(crate) async fn find_by_idempotency_key<T: Tx>(
    tx: &T,
    key: &str,
    fingerprint: &str,
    now_ms: i64,
) -> StoreResult<Option<LeaseResult>> {
    let mut w = Work::new(tx);
    let found = active_by_key(&mut w, key, fingerprint, now_ms).await?;
    w.finish().await?;
    Ok(found)
}

/// The token hash of a lease (`Some(None)`: a lease older than tokens).
pub(crate) async fn token_hash<T: Tx>(tx: &T, id: &str) -> StoreResult<Option<Option<String>>> {
    Ok(tx.find_lease(id, false).await?.map(|l| l.token_hash))
}

pub(crate) async fn lease<T: Tx>(tx: &T, a: &LeaseAttempt) -> StoreResult<LeaseResult> {
    if a.items.is_empty() {
        return Err(StoreError::bug(
            "a lease attempt without items (look keys up with find_by_idempotency_key)",
        ));
    }
    let mut w = Work::new(tx);
    match lease_in(&mut w, a).await? {
        Leased::Answer(out) => {
            w.finish().await?;
            Ok(out)
        }
        Leased::New(lease, token) => {
            // The read-back and the bookkeeping in one round trip where the
            // backend pipelines (neither depends on the other).
            let (granted, finished) = tokio::join!(granted(tx, &lease), w.finish());
            finished?;
            let mut granted = granted?;
            granted.lease_token = Some(token);
            Ok(LeaseResult::Granted(granted))
        }
    }
}

/// What [`lease_in`] did: answered, or inserted a new lease to hand out.
enum Leased {
    Answer(LeaseResult),
    /// The row and its token (handed out once, stored as a hash).
    New(LeaseRow, String),
}

async fn lease_in<T: Tx>(w: &mut Work<'_, T>, a: &LeaseAttempt) -> StoreResult<Leased> {
    if let Some(key) = &a.idempotency_key
        && let Some(answer) = active_by_key(w, key, &a.fingerprint, a.now_ms).await?
    {
        return Ok(Leased::Answer(answer));
    }
    let mut taken = HashSet::new();
    let mut entities_taken = HashSet::new();
    let mut picks = Vec::with_capacity(a.items.len());
    let mut short = Vec::new();
    for item in &a.items {
        let mut held = 0;
        let got = pick(w.tx, item, &mut taken, &mut entities_taken, &mut held).await?;
        if got.len() < item.count as usize {
            let mut s = shortfall(w.tx, item, got.len()).await?;
            s.entities_held = held;
            short.push(s);
        }
        picks.push(got);
    }
    if !short.is_empty() {
        return Ok(Leased::Answer(LeaseResult::NoStock(short)));
    }
    let id = ids::lease_id();
    let token = ids::lease_token();
    let token_hash = lease_token_hash(&token);
    // Entities first: their key is the exclusivity. With concurrent writers a
    // concurrent holder makes an insert wait for it and then fail (the
    // attempt is retried) or, when that holder was releasing, succeed once
    // the release commits.
    for p in picks.iter().flatten() {
        for e in &p.entities {
            w.tx.hold_entity(e, &id, &p.id).await?;
        }
    }
    // Read after the holds are ours: sees every release they waited for.
    let updated: Vec<i64> = picks.iter().flatten().map(|p| p.updated_at).collect();
    let entities: Vec<String> = picks
        .iter()
        .flatten()
        .flat_map(|p| p.entities.iter().cloned())
        .collect();
    let now = w.tx.clock_floor(&updated, &entities, a.now_ms).await?;
    let label = a.holder.label();
    let holder_json = serde_json::to_string(&a.holder)?;
    // A unique violation here (a concurrent lease of the same key) rolls the
    // attempt back; a retry then finds that lease and answers `Existing`.
    w.tx.insert_lease(NewLease {
        id: &id,
        holder_json: holder_json.clone(),
        holder_label: &label,
        idempotency_key: a.idempotency_key.as_deref(),
        ttl_ms: a.ttl_ms,
        created_at: now,
        expires_at: now + a.ttl_ms,
        token_hash: &token_hash,
        request_hash: &a.fingerprint,
    })
    .await?;
    let mut pos = 0i64;
    let tx = w.tx;
    for (item, got) in a.items.iter().zip(&picks) {
        for (idx, p) in got.iter().enumerate() {
            // The lease row exists now; the dataset's change and its lease
            // item depend only on it: pipelined where the backend can.
            let change = w.change(Change {
                seq: p.seq,
                id: &p.id,
                type_name: &item.type_name,
                state: &item.state,
                from: Some(DatasetStatus::Ready),
                to: DatasetStatus::Leased,
                lease_id: Some(&id),
                holder: Some(&label),
                reason: reasons::LEASED,
                now_ms: now,
            });
            let lease_item = tx.insert_lease_item(NewLeaseItem {
                lease_id: &id,
                dataset_id: &p.id,
                name: &item.name,
                index: idx as u32,
                pos,
                on_failure: item.on_failure,
            });
            tokio::try_join!(change, lease_item)?;
            pos += 1;
        }
    }
    // The row as just inserted: no need to read it back.
    Ok(Leased::New(
        LeaseRow {
            id,
            status: LeaseStatus::Active.as_str().to_string(),
            holder: holder_json,
            holder_label: label,
            ttl_ms: a.ttl_ms,
            created_at: now,
            expires_at: now + a.ttl_ms,
            ended_at: None,
            outcome: None,
            reason: None,
            details_url: None,
            answer: None,
            token_hash: Some(token_hash),
            request_hash: Some(a.fingerprint.clone()),
        },
        token,
    ))
}

/// Whether a dataset's attributes match every `where` pair.
fn matches(where_: &Attributes, attributes: &Attributes) -> bool {
    where_.iter().all(|(k, v)| attributes.get(k) == Some(v))
}

/// Picks up to `item.count` ready datasets matching the item, oldest first,
/// skipping those taken by earlier items of this lease or whose entities are
/// held (and, on a backend that locks candidates, those other writers hold).
pub(crate) async fn pick<T: Tx>(
    tx: &T,
    item: &LeaseItem,
    taken: &mut HashSet<i64>,
    entities_taken: &mut HashSet<String>,
    held: &mut u64,
) -> StoreResult<Vec<Picked>> {
    let want = item.count as usize;
    // Fetch what is needed (plus one where fetching locks nothing); widen
    // only when candidates were skipped.
    let first_batch = if T::LOCKS_CANDIDATES {
        want.max(1)
    } else {
        want + 1
    };
    let mut batch = first_batch.min(1024) as i64;
    let mut out = Vec::with_capacity(want);
    let mut cursor = 0i64;
    let first = item
        .where_
        .iter()
        .next()
        .map(|(k, v)| (k.as_str(), v.as_str()));
    loop {
        let rows = tx
            .candidates(CandidateQuery {
                type_name: &item.type_name,
                state: &item.state,
                first,
                cursor,
                batch,
            })
            .await?;
        let full = rows.len() as i64 == batch;
        for c in rows {
            cursor = c.seq;
            if taken.contains(&c.seq) {
                continue;
            }
            if item.where_.len() > 1 {
                let attrs: Attributes = serde_json::from_str(&c.attributes)?;
                if !matches(&item.where_, &attrs) {
                    continue;
                }
            }
            let entities = parse_entities(&c.entities)?;
            let mut free = true;
            for e in &entities {
                if entities_taken.contains(e) || tx.entity_holder(e).await?.is_some() {
                    free = false;
                    break;
                }
            }
            if !free {
                *held += 1;
                continue;
            }
            taken.insert(c.seq);
            entities_taken.extend(entities.iter().cloned());
            out.push(Picked {
                seq: c.seq,
                id: c.id,
                entities,
                updated_at: c.updated_at,
            });
            if out.len() == want {
                return Ok(out);
            }
        }
        if !full {
            return Ok(out);
        }
        batch = (batch * 8).min(1024);
    }
}

/// What an item lacked, for the 503 and for supply.
async fn shortfall<T: Tx>(
    tx: &T,
    item: &LeaseItem,
    available: usize,
) -> StoreResult<ItemShortfall> {
    let (t, s) = (item.type_name.as_str(), item.state.as_str());
    let ready = tx.count((t, s), &[DatasetStatus::Ready]).await?;
    let generating = tx.count((t, s), &[DatasetStatus::Generating]).await?;
    let potential = match item.where_.iter().next() {
        None => ready + generating + tx.count((t, s), &[DatasetStatus::Leased]).await?,
        Some((name, value)) => {
            tx.potential_with(Attr {
                type_name: t,
                state: s,
                name,
                value: value.as_str(),
            })
            .await?
        }
    };
    Ok(ItemShortfall {
        name: item.name.clone(),
        wanted: item.count,
        entities_held: 0,
        available: available as u64,
        ready,
        generating,
        potential,
    })
}
