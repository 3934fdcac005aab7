//! The PostgreSQL data primitives ([`Tx`]) inside one READ COMMITTED
//! transaction. Rows an operation decides on are locked (`FOR UPDATE`);
//! candidates for leasing are locked and skipped by others (`SKIP LOCKED`).

use deadpool_postgres::GenericClient;
use stockroom_protocol::DatasetStatus;
use stockroom_protocol::api::{HistoryEntry, StockSettings};
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql};

use super::APP_PREFIX;
use super::statements as sql;
use crate::store::rows::{
    LeaseRow, RawDataset, dataset_filter_sql, parse_on_failure, parse_status,
};
use crate::store::sessions::{SessionRow, parse_role};
use crate::store::tx::{
    Attr, Candidate, CandidateQuery, CountKey, DatasetRef, ExtendedRow, GeneratedRow, LeaseEnd,
    LeaseItemRow, NewHistory, NewLease, NewLeaseItem, NewRow, PendingRow, QuarantinedRow,
    ReleaseRow, RowStatus, Tx,
};
use crate::store::{DatasetFilter, StoreResult};
use crate::time::rfc3339;

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The primitives over a client: a transaction for writes, the plain
/// connection for reads (one statement, one round trip, no BEGIN/COMMIT).
pub(super) struct PgTx<'a, C: GenericClient> {
    pub tx: &'a C,
    /// This replica's name (on its `generating` rows).
    pub replica: &'a str,
}

fn get<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> StoreResult<T> {
    Ok(row.try_get(i)?)
}

fn to_u64(n: i64) -> u64 {
    n.max(0) as u64
}

fn raw_dataset(row: &Row, at: usize) -> StoreResult<RawDataset> {
    Ok(RawDataset {
        id: get(row, at)?,
        type_name: get(row, at + 1)?,
        state: get(row, at + 2)?,
        status: get(row, at + 3)?,
        attributes: get(row, at + 4)?,
        data: get(row, at + 5)?,
        secret_fields: get(row, at + 6)?,
        entities: get(row, at + 7)?,
        lease_id: get(row, at + 8)?,
        error: get(row, at + 9)?,
        created_at: get(row, at + 10)?,
        updated_at: get(row, at + 11)?,
        inputs: get(row, at + 12)?,
        lifecycle: get(row, at + 13)?,
    })
}

fn lease_row(r: &Row) -> StoreResult<LeaseRow> {
    Ok(LeaseRow {
        id: get(r, 0)?,
        status: get(r, 1)?,
        holder: get(r, 2)?,
        holder_label: get(r, 3)?,
        ttl_ms: get(r, 4)?,
        created_at: get(r, 5)?,
        expires_at: get(r, 6)?,
        ended_at: get(r, 7)?,
        outcome: get(r, 8)?,
        reason: get(r, 9)?,
        details_url: get(r, 10)?,
        answer: get(r, 11)?,
        token_hash: get(r, 12)?,
        request_hash: get(r, 13)?,
    })
}

fn dataset_ref(r: &Row) -> StoreResult<DatasetRef> {
    Ok(DatasetRef {
        seq: get(r, 0)?,
        id: get(r, 1)?,
        type_name: get(r, 2)?,
        state: get(r, 3)?,
        status: parse_status(&get::<String>(r, 4)?)?,
    })
}

fn history_entry(r: &Row, at: usize) -> StoreResult<HistoryEntry> {
    let from: Option<String> = get(r, at + 1)?;
    Ok(HistoryEntry {
        at: rfc3339(get(r, at)?),
        from: from.as_deref().map(parse_status).transpose()?,
        to: parse_status(&get::<String>(r, at + 2)?)?,
        lease_id: get(r, at + 3)?,
        holder: get(r, at + 4)?,
        reason: get(r, at + 5)?,
    })
}

impl<C: GenericClient> PgTx<'_, C> {
    /// Statements go through the connection's statement cache (deadpool
    /// keeps one per connection): parsed and planned once per connection,
    /// then one round trip each.
    async fn query(&self, text: &str, params: Params<'_>) -> StoreResult<Vec<Row>> {
        let st = self.tx.prepare_cached(text).await?;
        Ok(self.tx.query(&st, params).await?)
    }

    async fn query_one(&self, text: &str, params: Params<'_>) -> StoreResult<Row> {
        let st = self.tx.prepare_cached(text).await?;
        Ok(self.tx.query_one(&st, params).await?)
    }

    async fn query_opt(&self, text: &str, params: Params<'_>) -> StoreResult<Option<Row>> {
        let st = self.tx.prepare_cached(text).await?;
        Ok(self.tx.query_opt(&st, params).await?)
    }

    async fn execute(&self, text: &str, params: Params<'_>) -> StoreResult<u64> {
        let st = self.tx.prepare_cached(text).await?;
        Ok(self.tx.execute(&st, params).await?)
    }

    async fn leases(&self, text: &str, params: Params<'_>) -> StoreResult<Vec<LeaseRow>> {
        self.query(text, params)
            .await?
            .iter()
            .map(lease_row)
            .collect()
    }

    async fn refs(&self, text: &str, params: Params<'_>) -> StoreResult<Vec<DatasetRef>> {
        self.query(text, params)
            .await?
            .iter()
            .map(dataset_ref)
            .collect()
    }

    async fn strings(&self, text: &str, params: Params<'_>) -> StoreResult<Vec<String>> {
        self.query(text, params)
            .await?
            .iter()
            .map(|r| get(r, 0))
            .collect()
    }
}

impl<C: GenericClient> Tx for PgTx<'_, C> {
    const LOCKS_CANDIDATES: bool = true;

    async fn find_lease(&self, id: &str, lock: bool) -> StoreResult<Option<LeaseRow>> {
        let text = if lock {
            sql::FIND_LEASE_FOR_UPDATE
        } else {
            sql::FIND_LEASE
        };
        self.query_opt(text, &[&id])
            .await?
            .as_ref()
            .map(lease_row)
            .transpose()
    }

    async fn active_lease_by_key(&self, key: &str) -> StoreResult<Option<LeaseRow>> {
        self.query_opt(sql::ACTIVE_LEASE_BY_KEY, &[&key])
            .await?
            .as_ref()
            .map(lease_row)
            .transpose()
    }

    async fn lease_items(&self, lease_id: &str) -> StoreResult<Vec<LeaseItemRow>> {
        self.query(sql::LEASE_DATASETS, &[&lease_id])
            .await?
            .iter()
            .map(|r| {
                Ok(LeaseItemRow {
                    name: get(r, 0)?,
                    index: get::<i64>(r, 1)? as u32,
                    raw: raw_dataset(r, 2)?,
                })
            })
            .collect()
    }

    async fn insert_lease(&self, l: NewLease<'_>) -> StoreResult<()> {
        self.execute(
            sql::INSERT_LEASE,
            &[
                &l.id,
                &l.holder_json,
                &l.holder_label,
                &l.idempotency_key,
                &l.ttl_ms,
                &l.created_at,
                &l.expires_at,
                &l.token_hash,
                &l.request_hash,
            ],
        )
        .await?;
        Ok(())
    }

    async fn set_lease_token(&self, id: &str, token_hash: &str) -> StoreResult<()> {
        self.execute(sql::SET_LEASE_TOKEN, &[&id, &token_hash])
            .await?;
        Ok(())
    }

    async fn insert_lease_item(&self, i: NewLeaseItem<'_>) -> StoreResult<()> {
        self.execute(
            sql::INSERT_LEASE_ITEM,
            &[
                &i.lease_id,
                &i.dataset_id,
                &i.name,
                &i64::from(i.index),
                &i.pos,
                &i.on_failure.as_str(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn set_lease_expired(&self, id: &str, now_ms: i64, reason: &str) -> StoreResult<()> {
        self.execute(sql::EXPIRE_LEASE, &[&id, &now_ms, &reason])
            .await?;
        Ok(())
    }

    async fn set_lease_expiry(&self, id: &str, expires_at: i64, ttl_ms: i64) -> StoreResult<()> {
        self.execute(sql::HEARTBEAT, &[&id, &expires_at, &ttl_ms])
            .await?;
        Ok(())
    }

    async fn set_lease_released(&self, e: LeaseEnd<'_>) -> StoreResult<()> {
        self.execute(
            sql::END_LEASE,
            &[
                &e.id,
                &e.now_ms,
                &e.outcome,
                &e.reason,
                &e.details_url,
                &e.answer_json,
            ],
        )
        .await?;
        Ok(())
    }

    async fn leased_by(&self, lease_id: &str) -> StoreResult<Vec<DatasetRef>> {
        self.refs(sql::LEASED_BY, &[&lease_id]).await
    }

    async fn release_rows(&self, lease_id: &str) -> StoreResult<Vec<ReleaseRow>> {
        self.query(sql::RELEASE_ITEMS, &[&lease_id])
            .await?
            .iter()
            .map(|r| {
                Ok(ReleaseRow {
                    dataset: dataset_ref(r)?,
                    name: get(r, 5)?,
                    on_failure: parse_on_failure(&get::<String>(r, 6)?)?,
                    reusable: get(r, 7)?,
                    lifecycle: get(r, 8)?,
                })
            })
            .collect()
    }

    async fn due_leases(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<LeaseRow>> {
        self.leases(sql::DUE_LEASES, &[&now_ms, &i64::from(limit)])
            .await
    }

    async fn list_lease_rows(
        &self,
        status: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<LeaseRow>> {
        let limit = i64::from(limit);
        match status {
            Some(s) => self.leases(sql::LIST_LEASES_OF_STATUS, &[&s, &limit]).await,
            None => self.leases(sql::LIST_LEASES, &[&limit]).await,
        }
    }

    async fn active_lease_count(&self) -> StoreResult<u64> {
        Ok(to_u64(get(
            &self.query_one(sql::ACTIVE_LEASE_COUNT, &[]).await?,
            0,
        )?))
    }

    async fn entity_holder(&self, entity: &str) -> StoreResult<Option<String>> {
        self.query_opt(sql::ENTITY_HOLDER, &[&entity])
            .await?
            .map(|r| get(&r, 0))
            .transpose()
    }

    async fn hold_entity(&self, entity: &str, lease_id: &str, dataset_id: &str) -> StoreResult<()> {
        self.execute(sql::HOLD, &[&entity, &lease_id, &dataset_id])
            .await?;
        Ok(())
    }

    /// Also remembers when each entity was freed: `entity_released` exists
    /// only here, because only here can another replica commit a release
    /// "after" a request that read its clock earlier (see [`Tx::clock_floor`]).
    async fn free_dataset_entities(
        &self,
        lease_id: &str,
        dataset_id: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.execute(
            sql::FREE_DATASET_ENTITIES,
            &[&lease_id, &now_ms, &dataset_id],
        )
        .await?;
        Ok(())
    }

    async fn free_entities(&self, lease_id: &str, now_ms: i64) -> StoreResult<()> {
        self.execute(sql::FREE_ENTITIES, &[&lease_id, &now_ms])
            .await?;
        Ok(())
    }

    /// Not before the picked datasets last changed nor before their entities
    /// were last freed: another replica may have committed those after this
    /// request read its clock, and history must never run backwards.
    async fn clock_floor(
        &self,
        updated_at: &[i64],
        entities: &[String],
        now_ms: i64,
    ) -> StoreResult<i64> {
        let mut floor = updated_at.iter().copied().fold(now_ms, i64::max);
        if !entities.is_empty() {
            let row = self.query_one(sql::NOT_BEFORE, &[&entities]).await?;
            floor = floor.max(get::<i64>(&row, 0)?);
        }
        Ok(floor)
    }

    async fn candidates(&self, q: CandidateQuery<'_>) -> StoreResult<Vec<Candidate>> {
        let (type_name, state, cursor, batch) = (q.type_name, q.state, q.cursor, q.batch);
        let rows = match q.first {
            None => {
                self.query(sql::PICK, &[&type_name, &state, &cursor, &batch])
                    .await?
            }
            Some((name, value)) => {
                self.query(
                    sql::PICK_WITH_ATTR,
                    &[&type_name, &state, &cursor, &batch, &name, &value],
                )
                .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(Candidate {
                    seq: get(r, 0)?,
                    id: get(r, 1)?,
                    attributes: get(r, 2)?,
                    entities: get(r, 3)?,
                    updated_at: get(r, 4)?,
                })
            })
            .collect()
    }

    async fn potential_with(&self, a: Attr<'_>) -> StoreResult<u64> {
        let row = self
            .query_one(
                sql::POTENTIAL_WITH,
                &[&a.type_name, &a.state, &a.name, &a.value],
            )
            .await?;
        Ok(to_u64(get(&row, 0)?))
    }

    async fn count(&self, of: (&str, &str), statuses: &[DatasetStatus]) -> StoreResult<u64> {
        let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        let row = self
            .query_one(sql::COUNT, &[&of.0, &of.1, &statuses])
            .await?;
        Ok(to_u64(get(&row, 0)?))
    }

    /// A transaction advisory lock per `(type, state)`: N replicas never make
    /// N× the stock.
    async fn lock_generation_cap(&self, type_name: &str, state: &str) -> StoreResult<()> {
        let key = format!("stockroom-generation:{type_name}/{state}");
        self.execute(sql::LOCK_GENERATION_CAP, &[&key]).await?;
        Ok(())
    }

    async fn dataset_ref(&self, id: &str, lock: bool) -> StoreResult<Option<DatasetRef>> {
        let text = if lock {
            sql::DATASET_REF_FOR_UPDATE
        } else {
            sql::DATASET_REF
        };
        self.query_opt(text, &[&id])
            .await?
            .as_ref()
            .map(dataset_ref)
            .transpose()
    }

    async fn dataset(&self, id: &str) -> StoreResult<Option<RawDataset>> {
        self.query_opt(sql::DATASET, &[&id])
            .await?
            .map(|r| raw_dataset(&r, 0))
            .transpose()
    }

    async fn dataset_by_seq(&self, seq: i64) -> StoreResult<RawDataset> {
        raw_dataset(&self.query_one(sql::DATASET_BY_SEQ, &[&seq]).await?, 0)
    }

    async fn history(&self, id: &str) -> StoreResult<Vec<HistoryEntry>> {
        self.query(sql::HISTORY_OF, &[&id])
            .await?
            .iter()
            .map(|r| history_entry(r, 0))
            .collect()
    }

    async fn list_datasets(&self, filter: &DatasetFilter) -> StoreResult<Vec<RawDataset>> {
        let (mut text, args) = dataset_filter_sql(filter, |n| format!("${n}"));
        // The limit is a parameter too: one cached statement per filter shape.
        text.push_str(&format!(" LIMIT ${}", args.len() + 1));
        let limit = i64::from(filter.limit);
        let mut params: Vec<&(dyn ToSql + Sync)> =
            args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        params.push(&limit);
        self.query(&text, &params)
            .await?
            .iter()
            .map(|r| raw_dataset(r, 0))
            .collect()
    }

    async fn insert_dataset(&self, d: NewRow<'_>) -> StoreResult<i64> {
        // The replica running a generation owns its row (see `generating_to_fail`).
        let owner = (d.status == DatasetStatus::Generating).then_some(self.replica);
        let row = self
            .query_one(
                sql::INSERT_DATASET,
                &[
                    &d.id,
                    &d.type_name,
                    &d.state,
                    &d.status.as_str(),
                    &d.attributes,
                    &d.data,
                    &d.secret_fields,
                    &d.entities,
                    &d.reusable,
                    &d.now_ms,
                    &d.generator,
                    &d.request,
                    &owner,
                    &d.lifecycle,
                ],
            )
            .await?;
        get(&row, 0)
    }

    async fn insert_attr(&self, a: Attr<'_>, seq: i64) -> StoreResult<()> {
        self.execute(
            sql::INSERT_ATTR,
            &[&a.type_name, &a.state, &a.name, &a.value, &seq],
        )
        .await?;
        Ok(())
    }

    async fn set_status(&self, s: RowStatus<'_>) -> StoreResult<()> {
        self.execute(
            sql::CHANGE,
            &[&s.to.as_str(), &s.now_ms, &s.lease_id, &s.seq],
        )
        .await?;
        Ok(())
    }

    async fn insert_history(&self, h: NewHistory<'_>) -> StoreResult<()> {
        self.execute(
            sql::HISTORY,
            &[
                &h.dataset_id,
                &h.at,
                &h.from.map(DatasetStatus::as_str),
                &h.to.as_str(),
                &h.lease_id,
                &h.holder,
                &h.reason,
            ],
        )
        .await?;
        Ok(())
    }

    async fn set_part_of(&self, seq: i64, parent: &str) -> StoreResult<()> {
        self.execute(sql::SET_PART_OF, &[&seq, &parent]).await?;
        Ok(())
    }

    async fn parts_entities(&self, parent: &str) -> StoreResult<Vec<String>> {
        self.strings(sql::PARTS_ENTITIES, &[&parent]).await
    }

    async fn open_parts(&self, parent: &str) -> StoreResult<Vec<DatasetRef>> {
        self.refs(sql::OPEN_PARTS, &[&parent]).await
    }

    async fn set_generated(&self, g: GeneratedRow<'_>) -> StoreResult<()> {
        self.execute(
            sql::SET_GENERATED,
            &[
                &g.seq,
                &g.attributes,
                &g.data,
                &g.secret_fields,
                &g.entities,
                &g.part_of,
                &g.inputs,
            ],
        )
        .await?;
        Ok(())
    }

    async fn set_error(&self, seq: i64, error: &str) -> StoreResult<()> {
        self.execute(sql::SET_ERROR, &[&seq, &error]).await?;
        Ok(())
    }

    async fn set_extended(&self, x: ExtendedRow<'_>) -> StoreResult<()> {
        self.execute(
            sql::SET_EXTENDED,
            &[
                &x.seq,
                &x.to_state,
                &x.data,
                &x.secret_fields,
                &x.entities,
                &x.now_ms,
            ],
        )
        .await?;
        self.execute(sql::SET_ATTRS_STATE, &[&x.seq, &x.to_state])
            .await?;
        Ok(())
    }

    /// The generations of live replicas are theirs to finish.
    async fn generating_to_fail(&self) -> StoreResult<Vec<String>> {
        self.strings(sql::GENERATING_TO_FAIL, &[&self.replica, &APP_PREFIX])
            .await
    }

    async fn set_pending(
        &self,
        seq: i64,
        pending: Option<&str>,
        due_ms: Option<i64>,
        attempts: i64,
    ) -> StoreResult<()> {
        self.execute(sql::SET_PENDING, &[&seq, &pending, &due_ms, &attempts])
            .await?;
        Ok(())
    }

    async fn pending_due(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<PendingRow>> {
        self.query(sql::PENDING_DUE, &[&now_ms, &i64::from(limit)])
            .await?
            .iter()
            .map(|r| {
                Ok(PendingRow {
                    seq: get(r, 0)?,
                    pending: get(r, 1)?,
                    attempts: get(r, 2)?,
                    raw: raw_dataset(r, 3)?,
                })
            })
            .collect()
    }

    async fn stale_ready(
        &self,
        type_name: &str,
        state: &str,
        before_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<(DatasetRef, String)>> {
        self.query(
            sql::STALE_READY,
            &[&type_name, &state, &before_ms, &i64::from(limit)],
        )
        .await?
        .iter()
        .map(|r| Ok((dataset_ref(r)?, get(r, 5)?)))
        .collect()
    }

    async fn lifecycle_of(&self, seq: i64) -> StoreResult<(String, Option<String>)> {
        let row = self.query_one(sql::LIFECYCLE_OF, &[&seq]).await?;
        Ok((get(&row, 0)?, get(&row, 1)?))
    }

    async fn consumed_before(&self, before_ms: i64, limit: u32) -> StoreResult<Vec<String>> {
        self.strings(sql::CONSUMED_BEFORE, &[&before_ms, &i64::from(limit)])
            .await
    }

    async fn erase_data(&self, id: &str, now_ms: i64) -> StoreResult<()> {
        self.execute(sql::ERASE_DATA, &[&id, &now_ms]).await?;
        Ok(())
    }

    async fn quarantined(&self, limit: u32) -> StoreResult<Vec<QuarantinedRow>> {
        self.query(sql::QUARANTINED, &[&i64::from(limit)])
            .await?
            .iter()
            .map(|r| {
                Ok(QuarantinedRow {
                    raw: raw_dataset(r, 0)?,
                    details_url: get(r, 14)?,
                    holder_json: get(r, 15)?,
                })
            })
            .collect()
    }

    async fn histories(&self, ids: &[String]) -> StoreResult<Vec<(String, HistoryEntry)>> {
        self.query(sql::HISTORIES, &[&ids])
            .await?
            .iter()
            .map(|r| Ok((get(r, 0)?, history_entry(r, 1)?)))
            .collect()
    }

    async fn apply_counts(&self, deltas: &[(CountKey, i64)]) -> StoreResult<()> {
        let types: Vec<&str> = deltas.iter().map(|((t, _, _), _)| t.as_str()).collect();
        let states: Vec<&str> = deltas.iter().map(|((_, s, _), _)| s.as_str()).collect();
        let statuses: Vec<&str> = deltas.iter().map(|((_, _, st), _)| st.as_str()).collect();
        let ns: Vec<i64> = deltas.iter().map(|(_, n)| *n).collect();
        self.execute(sql::APPLY_COUNTS, &[&types, &states, &statuses, &ns])
            .await?;
        Ok(())
    }

    async fn know_states(&self, states: &[(String, String)]) -> StoreResult<()> {
        let types: Vec<&str> = states.iter().map(|(t, _)| t.as_str()).collect();
        let names: Vec<&str> = states.iter().map(|(_, s)| s.as_str()).collect();
        self.execute(sql::KNOW_STATES, &[&types, &names]).await?;
        Ok(())
    }

    async fn counts(&self) -> StoreResult<Vec<(CountKey, u64)>> {
        self.query(sql::COUNTS, &[])
            .await?
            .iter()
            .map(|r| {
                let status = parse_status(&get::<String>(r, 2)?)?;
                Ok(((get(r, 0)?, get(r, 1)?, status), to_u64(get(r, 3)?)))
            })
            .collect()
    }

    async fn known_states(&self) -> StoreResult<Vec<(String, String)>> {
        self.query(sql::KNOWN_STATES, &[])
            .await?
            .iter()
            .map(|r| Ok((get(r, 0)?, get(r, 1)?)))
            .collect()
    }

    async fn stock_settings(&self) -> StoreResult<Vec<(String, String, StockSettings)>> {
        let clamp = |n: i64| n.clamp(0, i64::from(u32::MAX)) as u32;
        self.query(sql::STOCK_SETTINGS, &[])
            .await?
            .iter()
            .map(|r| {
                Ok((
                    get(r, 0)?,
                    get(r, 1)?,
                    StockSettings {
                        min_ready: clamp(get(r, 2)?),
                        max_ready: clamp(get(r, 3)?),
                    },
                ))
            })
            .collect()
    }

    async fn set_stock(&self, type_name: &str, state: &str, s: &StockSettings) -> StoreResult<()> {
        self.execute(
            sql::SET_STOCK,
            &[
                &type_name,
                &state,
                &i64::from(s.min_ready),
                &i64::from(s.max_ready),
            ],
        )
        .await?;
        Ok(())
    }

    async fn put_session(&self, s: &SessionRow) -> StoreResult<()> {
        self.execute(
            sql::PUT_SESSION,
            &[
                &s.id_hash,
                &s.caller_name,
                &s.role.as_str(),
                &s.csrf,
                &serde_json::to_string(&s.leases)?,
                &s.last_seen_ms,
            ],
        )
        .await?;
        Ok(())
    }

    async fn get_session(&self, id_hash: &str) -> StoreResult<Option<SessionRow>> {
        let Some(r) = self.query_opt(sql::GET_SESSION, &[&id_hash]).await? else {
            return Ok(None);
        };
        Ok(Some(SessionRow {
            id_hash: get(&r, 0)?,
            caller_name: get(&r, 1)?,
            role: parse_role(&get::<String>(&r, 2)?)?,
            csrf: get(&r, 3)?,
            leases: serde_json::from_str(&get::<String>(&r, 4)?)?,
            last_seen_ms: get(&r, 5)?,
        }))
    }

    async fn touch_session(&self, id_hash: &str, now_ms: i64) -> StoreResult<()> {
        self.execute(sql::TOUCH_SESSION, &[&id_hash, &now_ms])
            .await?;
        Ok(())
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        self.execute(sql::DELETE_SESSION, &[&id_hash]).await?;
        Ok(())
    }

    async fn purge_sessions(&self, before_ms: i64) -> StoreResult<()> {
        self.execute(sql::PURGE_SESSIONS, &[&before_ms]).await?;
        Ok(())
    }

    async fn set_session_leases(&self, id_hash: &str, leases_json: &str) -> StoreResult<()> {
        self.execute(sql::SET_SESSION_LEASES, &[&id_hash, &leases_json])
            .await?;
        Ok(())
    }
}
