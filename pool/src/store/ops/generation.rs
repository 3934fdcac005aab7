//! The steps of a generation: begin (under the stock cap), take inputs from
//! stock, complete or fail.

use std::collections::HashSet;

use stockroom_protocol::api::{DatasetView, LeaseItem};
use stockroom_protocol::{Dataset, DatasetStatus, OnFailure};

use super::lease::pick;
use super::{Change, Work, dataset_with_history};
use crate::ids;
use crate::store::rows::parse_entities;
use crate::store::rules::{lifecycle_text, reasons};
use crate::store::tx::{Attr, GeneratedRow, NewHistory, NewRow, Tx};
use crate::store::{Generated, InputPick, NewGeneration, StoreResult};

pub(crate) async fn begin<T: Tx>(
    tx: &T,
    g: &NewGeneration,
    now_ms: i64,
) -> StoreResult<Option<String>> {
    let mut w = Work::new(tx);
    if let Some(cap) = g.cap {
        // One start per (type, state) at a time across writers; the count
        // then sees every committed start before it, in one snapshot (a
        // generation completing meanwhile is counted once, never zero times).
        tx.lock_generation_cap(&g.type_name, &g.state).await?;
        let have = tx
            .count(
                (&g.type_name, &g.state),
                &[DatasetStatus::Ready, DatasetStatus::Generating],
            )
            .await?;
        tracing::debug!(type_name = %g.type_name, state = %g.state, have, cap, "generation cap check");
        if have >= cap {
            return Ok(None);
        }
    }
    let id = ids::dataset_id();
    tx.insert_dataset(NewRow {
        id: &id,
        type_name: &g.type_name,
        state: &g.state,
        status: DatasetStatus::Generating,
        attributes: "{}".into(),
        data: "null".into(),
        secret_fields: "[]".into(),
        entities: "[]".into(),
        reusable: g.reusable,
        now_ms,
        generator: Some(&g.generator),
        request: Some(serde_json::to_string(&g.request)?),
        lifecycle: lifecycle_text(&g.lifecycle),
    })
    .await?;
    w.count(&g.type_name, &g.state, DatasetStatus::Generating, 1);
    w.know(&g.type_name, &g.state);
    tx.insert_history(NewHistory {
        dataset_id: &id,
        at: now_ms,
        from: None,
        to: DatasetStatus::Generating,
        lease_id: None,
        holder: Some(&g.generator),
        reason: &reasons::generation_started(&g.generator, &g.request),
    })
    .await?;
    w.finish().await?;
    Ok(Some(id))
}

pub(crate) async fn take_input<T: Tx>(
    tx: &T,
    p: &InputPick,
    now_ms: i64,
) -> StoreResult<Option<Dataset>> {
    let mut w = Work::new(tx);
    match tx.dataset_ref(&p.part_of, true).await? {
        Some(d) if d.status == DatasetStatus::Generating => {}
        _ => return Ok(None),
    }
    let item = LeaseItem {
        name: p.input_name.clone(),
        type_name: p.type_name.clone(),
        state: p.state.clone(),
        where_: p.where_.clone(),
        count: 1,
        on_failure: OnFailure::Quarantine,
    };
    let Some(picked) = pick(tx, &item, &mut HashSet::new(), &mut HashSet::new(), &mut 0)
        .await?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let now = tx
        .clock_floor(&[picked.updated_at], &picked.entities, now_ms)
        .await?;
    tx.set_part_of(picked.seq, &p.part_of).await?;
    w.change(Change {
        seq: picked.seq,
        id: &picked.id,
        type_name: &p.type_name,
        state: &p.state,
        from: Some(DatasetStatus::Ready),
        to: DatasetStatus::Composed,
        lease_id: None,
        holder: Some(reasons::POOL),
        reason: &reasons::taken_as_input(&p.input_name, &p.part_of),
        now_ms: now,
    })
    .await?;
    w.note(
        &p.part_of,
        DatasetStatus::Generating,
        None,
        Some(reasons::POOL),
        &reasons::part_taken(&p.input_name, &picked.id, &p.type_name, &p.state),
        now,
    )
    .await?;
    let dataset = tx.dataset_by_seq(picked.seq).await?.dataset()?;
    w.finish().await?;
    Ok(Some(dataset))
}

pub(crate) async fn complete<T: Tx>(
    tx: &T,
    id: &str,
    g: &Generated,
    now_ms: i64,
) -> StoreResult<Option<DatasetView>> {
    let mut w = Work::new(tx);
    let Some(d) = tx.dataset_ref(id, true).await? else {
        return Ok(None);
    };
    if d.status != DatasetStatus::Generating {
        return Ok(None);
    }
    // Its entities: the answer's and those of its parts.
    let mut entities = g.entities.clone();
    for part in tx.parts_entities(id).await? {
        for e in parse_entities(&part)? {
            if !entities.contains(&e) {
                entities.push(e);
            }
        }
    }
    tx.set_generated(GeneratedRow {
        seq: d.seq,
        attributes: serde_json::to_string(&g.attributes)?,
        data: serde_json::to_string(&g.data)?,
        secret_fields: serde_json::to_string(&g.secret_fields)?,
        entities: serde_json::to_string(&entities)?,
        part_of: g.part_of.as_deref(),
        inputs: serde_json::to_string(&g.inputs)?,
    })
    .await?;
    for (name, value) in &g.attributes {
        let attr = Attr {
            type_name: &d.type_name,
            state: &d.state,
            name,
            value: value.as_str(),
        };
        tx.insert_attr(attr, d.seq).await?;
    }
    let (to, reason) = match &g.part_of {
        Some(parent) => (
            DatasetStatus::Composed,
            reasons::made_as_part(&g.reason, parent),
        ),
        None => (DatasetStatus::Ready, g.reason.clone()),
    };
    w.change(Change {
        seq: d.seq,
        id,
        type_name: &d.type_name,
        state: &d.state,
        from: Some(DatasetStatus::Generating),
        to,
        lease_id: None,
        holder: Some(reasons::POOL),
        reason: &reason,
        now_ms,
    })
    .await?;
    if let Some(parent) = &g.part_of {
        w.note(
            parent,
            DatasetStatus::Generating,
            None,
            Some(reasons::POOL),
            &reasons::part_made(id, &d.type_name, &d.state),
            now_ms,
        )
        .await?;
    }
    let view = dataset_with_history(tx, id).await?;
    w.finish().await?;
    Ok(view)
}

pub(crate) async fn fail<T: Tx>(tx: &T, id: &str, error: &str, now_ms: i64) -> StoreResult<bool> {
    let mut w = Work::new(tx);
    let failed = fail_in(&mut w, id, error, now_ms).await?;
    w.finish().await?;
    Ok(failed)
}

/// Fails every `generating` row the backend says is this process's to fail.
pub(crate) async fn fail_all<T: Tx>(tx: &T, reason: &str, now_ms: i64) -> StoreResult<u64> {
    let mut w = Work::new(tx);
    let mut n = 0;
    for id in tx.generating_to_fail().await? {
        if fail_in(&mut w, &id, reason, now_ms).await? {
            n += 1;
        }
    }
    w.finish().await?;
    Ok(n)
}

/// Fails a generation and, depth first in insertion order, the generations
/// that were parts of it; its parts taken from stock become `quarantined`.
async fn fail_in<T: Tx>(
    w: &mut Work<'_, T>,
    id: &str,
    error: &str,
    now_ms: i64,
) -> StoreResult<bool> {
    let mut stack = vec![(id.to_string(), error.to_string())];
    let mut first = None;
    while let Some((id, error)) = stack.pop() {
        let failed = fail_one(w, &id, &error, now_ms, &mut stack).await?;
        first.get_or_insert(failed);
    }
    Ok(first.unwrap_or(false))
}

async fn fail_one<T: Tx>(
    w: &mut Work<'_, T>,
    id: &str,
    error: &str,
    now_ms: i64,
    stack: &mut Vec<(String, String)>,
) -> StoreResult<bool> {
    let Some(d) = w.tx.dataset_ref(id, true).await? else {
        return Ok(false);
    };
    if d.status != DatasetStatus::Generating {
        return Ok(false);
    }
    w.tx.set_error(d.seq, error).await?;
    w.change(Change {
        seq: d.seq,
        id,
        type_name: &d.type_name,
        state: &d.state,
        from: Some(DatasetStatus::Generating),
        to: DatasetStatus::Failed,
        lease_id: None,
        holder: Some(reasons::POOL),
        reason: &reasons::generation_failed(error),
        now_ms,
    })
    .await?;
    let mut nested = Vec::new();
    for part in w.tx.open_parts(id).await? {
        if part.status == DatasetStatus::Generating {
            nested.push((part.id, reasons::parent_failed(id)));
            continue;
        }
        w.change(Change {
            seq: part.seq,
            id: &part.id,
            type_name: &part.type_name,
            state: &part.state,
            from: Some(part.status),
            to: DatasetStatus::Quarantined,
            lease_id: None,
            holder: Some(reasons::POOL),
            reason: &reasons::input_of_failed(id),
            now_ms,
        })
        .await?;
    }
    // Popped last first: reversed, the nested parts fail in insertion order.
    nested.reverse();
    stack.extend(nested);
    Ok(true)
}
