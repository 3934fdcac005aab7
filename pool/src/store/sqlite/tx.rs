//! The SQLite data primitives ([`Tx`]) on one connection: the writer's
//! inside its group-commit transaction, or a reader's. No row locks: the
//! single writer serialises every write, so `lock` is ignored.

use rusqlite::{Connection, OptionalExtension, params};
use stockroom_protocol::DatasetStatus;
use stockroom_protocol::api::{HistoryEntry, StockSettings};

use crate::store::rows::{
    DS_COLS, LEASE_COLS, LeaseRow, RawDataset, dataset_filter_sql, parse_on_failure, parse_status,
};
use crate::store::sessions::{SessionRow, parse_role};
use crate::store::tx::{
    Attr, Candidate, CandidateQuery, CountKey, DatasetRef, ExtendedRow, GeneratedRow, LeaseEnd,
    LeaseItemRow, NewHistory, NewLease, NewLeaseItem, NewRow, PendingRow, QuarantinedRow,
    ReleaseRow, RowStatus, Tx,
};
use crate::store::{DatasetFilter, StoreResult};
use crate::time::rfc3339;

pub(super) struct SqliteTx<'c> {
    pub conn: &'c Connection,
}

fn raw_dataset(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<RawDataset> {
    Ok(RawDataset {
        id: row.get(at)?,
        type_name: row.get(at + 1)?,
        state: row.get(at + 2)?,
        status: row.get(at + 3)?,
        attributes: row.get(at + 4)?,
        data: row.get(at + 5)?,
        secret_fields: row.get(at + 6)?,
        entities: row.get(at + 7)?,
        lease_id: row.get(at + 8)?,
        error: row.get(at + 9)?,
        created_at: row.get(at + 10)?,
        updated_at: row.get(at + 11)?,
        inputs: row.get(at + 12)?,
        lifecycle: row.get(at + 13)?,
    })
}

fn lease_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LeaseRow> {
    Ok(LeaseRow {
        id: r.get(0)?,
        status: r.get(1)?,
        holder: r.get(2)?,
        holder_label: r.get(3)?,
        ttl_ms: r.get(4)?,
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
        ended_at: r.get(7)?,
        outcome: r.get(8)?,
        reason: r.get(9)?,
        details_url: r.get(10)?,
        answer: r.get(11)?,
        token_hash: r.get(12)?,
        request_hash: r.get(13)?,
    })
}

type RefCols = (i64, String, String, String, String);

fn ref_cols(r: &rusqlite::Row<'_>) -> rusqlite::Result<RefCols> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn dataset_ref((seq, id, type_name, state, status): RefCols) -> StoreResult<DatasetRef> {
    Ok(DatasetRef {
        seq,
        id,
        type_name,
        state,
        status: parse_status(&status)?,
    })
}

/// `at, from_status, to_status, lease_id, holder, reason` of a history row.
type HistoryCols = (
    i64,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    String,
);

fn history_cols(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<HistoryCols> {
    Ok((
        r.get(at)?,
        r.get(at + 1)?,
        r.get(at + 2)?,
        r.get(at + 3)?,
        r.get(at + 4)?,
        r.get(at + 5)?,
    ))
}

fn history_entry(
    (at, from, to, lease_id, holder, reason): HistoryCols,
) -> StoreResult<HistoryEntry> {
    Ok(HistoryEntry {
        at: rfc3339(at),
        from: from.as_deref().map(parse_status).transpose()?,
        to: parse_status(&to)?,
        lease_id,
        holder,
        reason,
    })
}

fn to_u64(n: i64) -> u64 {
    n.max(0) as u64
}

fn session_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, String, String, String, String, i64)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

impl Tx for SqliteTx<'_> {
    const LOCKS_CANDIDATES: bool = false;

    async fn find_lease(&self, id: &str, _lock: bool) -> StoreResult<Option<LeaseRow>> {
        Ok(self
            .conn
            .prepare_cached(&format!("SELECT {LEASE_COLS} FROM leases WHERE id = ?1"))?
            .query_row([id], lease_row)
            .optional()?)
    }

    async fn active_lease_by_key(&self, key: &str) -> StoreResult<Option<LeaseRow>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {LEASE_COLS} FROM leases WHERE idempotency_key = ?1 AND status = 'active'"
            ))?
            .query_row([key], lease_row)
            .optional()?)
    }

    async fn lease_items(&self, lease_id: &str) -> StoreResult<Vec<LeaseItemRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT li.name, li.idx, {DS_COLS} FROM lease_items li JOIN datasets d ON d.id = li.dataset_id \
             WHERE li.lease_id = ?1 ORDER BY li.pos"
        ))?;
        let rows = stmt.query_map([lease_id], |r| {
            Ok(LeaseItemRow {
                name: r.get(0)?,
                index: r.get::<_, i64>(1)? as u32,
                raw: raw_dataset(r, 2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn insert_lease(&self, l: NewLease<'_>) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO leases (id, status, holder, holder_label, idempotency_key, ttl_ms, created_at, expires_at, \
                 token_hash, request_hash) VALUES (?1, 'active', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                l.id,
                l.holder_json,
                l.holder_label,
                l.idempotency_key,
                l.ttl_ms,
                l.created_at,
                l.expires_at,
                l.token_hash,
                l.request_hash
            ])?;
        Ok(())
    }

    async fn set_lease_token(&self, id: &str, token_hash: &str) -> StoreResult<()> {
        self.conn
            .prepare_cached("UPDATE leases SET token_hash = ?2 WHERE id = ?1")?
            .execute(params![id, token_hash])?;
        Ok(())
    }

    async fn insert_lease_item(&self, i: NewLeaseItem<'_>) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO lease_items (lease_id, dataset_id, name, idx, pos, on_failure) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![i.lease_id, i.dataset_id, i.name, i.index, i.pos, i.on_failure.as_str()])?;
        Ok(())
    }

    async fn set_lease_expired(&self, id: &str, now_ms: i64, reason: &str) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE leases SET status = 'expired', ended_at = ?2, reason = ?3 WHERE id = ?1",
            )?
            .execute(params![id, now_ms, reason])?;
        Ok(())
    }

    async fn set_lease_expiry(&self, id: &str, expires_at: i64, ttl_ms: i64) -> StoreResult<()> {
        self.conn
            .prepare_cached("UPDATE leases SET expires_at = ?2, ttl_ms = ?3 WHERE id = ?1")?
            .execute(params![id, expires_at, ttl_ms])?;
        Ok(())
    }

    async fn set_lease_released(&self, e: LeaseEnd<'_>) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE leases SET status = 'released', ended_at = ?2, outcome = ?3, reason = ?4, details_url = ?5, \
                 answer = ?6 WHERE id = ?1",
            )?
            .execute(params![e.id, e.now_ms, e.outcome, e.reason, e.details_url, e.answer_json])?;
        Ok(())
    }

    async fn leased_by(&self, lease_id: &str) -> StoreResult<Vec<DatasetRef>> {
        let rows: Vec<RefCols> = self
            .conn
            .prepare_cached(
                "SELECT d.seq, d.id, d.type, d.state, d.status FROM lease_items li JOIN datasets d ON d.id = li.dataset_id \
                 WHERE li.lease_id = ?1 AND d.status = 'leased' AND d.lease_id = ?1 ORDER BY li.pos",
            )?
            .query_map([lease_id], ref_cols)?
            .collect::<Result<_, _>>()?;
        rows.into_iter().map(dataset_ref).collect()
    }

    async fn release_rows(&self, lease_id: &str) -> StoreResult<Vec<ReleaseRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.seq, d.id, d.type, d.state, d.status, li.name, li.on_failure, d.reusable, d.lifecycle \
             FROM lease_items li JOIN datasets d ON d.id = li.dataset_id WHERE li.lease_id = ?1 ORDER BY li.pos",
        )?;
        let rows: Vec<(RefCols, String, String, bool, String)> = stmt
            .query_map([lease_id], |r| {
                Ok((ref_cols(r)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?))
            })?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(d, name, on_failure, reusable, lifecycle)| {
                Ok(ReleaseRow {
                    name,
                    on_failure: parse_on_failure(&on_failure)?,
                    dataset: dataset_ref(d)?,
                    reusable,
                    lifecycle,
                })
            })
            .collect()
    }

    async fn due_leases(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<LeaseRow>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {LEASE_COLS} FROM leases WHERE status = 'active' AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2"
            ))?
            .query_map(params![now_ms, limit], lease_row)?
            .collect::<Result<_, _>>()?)
    }

    async fn list_lease_rows(
        &self,
        status: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<LeaseRow>> {
        Ok(match status {
            Some(s) => self
                .conn
                .prepare_cached(&format!(
                    "SELECT {LEASE_COLS} FROM leases WHERE status = ?1 ORDER BY created_at DESC LIMIT ?2"
                ))?
                .query_map(params![s, limit], lease_row)?
                .collect::<Result<_, _>>()?,
            None => self
                .conn
                .prepare_cached(&format!(
                    "SELECT {LEASE_COLS} FROM leases ORDER BY created_at DESC LIMIT ?1"
                ))?
                .query_map(params![limit], lease_row)?
                .collect::<Result<_, _>>()?,
        })
    }

    async fn active_lease_count(&self) -> StoreResult<u64> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM leases WHERE status = 'active'")?
            .query_row([], |r| r.get(0))?;
        Ok(to_u64(n))
    }

    async fn entity_holder(&self, entity: &str) -> StoreResult<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT lease_id FROM entity_holds WHERE entity = ?1")?
            .query_row([entity], |r| r.get(0))
            .optional()?)
    }

    async fn hold_entity(&self, entity: &str, lease_id: &str, dataset_id: &str) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO entity_holds (entity, lease_id, dataset_id) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![entity, lease_id, dataset_id])?;
        Ok(())
    }

    async fn free_dataset_entities(
        &self,
        lease_id: &str,
        dataset_id: &str,
        _now_ms: i64,
    ) -> StoreResult<()> {
        self.conn
            .prepare_cached("DELETE FROM entity_holds WHERE lease_id = ?1 AND dataset_id = ?2")?
            .execute([lease_id, dataset_id])?;
        Ok(())
    }

    async fn free_entities(&self, lease_id: &str, _now_ms: i64) -> StoreResult<()> {
        self.conn
            .prepare_cached("DELETE FROM entity_holds WHERE lease_id = ?1")?
            .execute([lease_id])?;
        Ok(())
    }

    async fn clock_floor(&self, _: &[i64], _: &[String], now_ms: i64) -> StoreResult<i64> {
        // One writer, one clock: nothing can have committed "after" now.
        Ok(now_ms)
    }

    async fn candidates(&self, q: CandidateQuery<'_>) -> StoreResult<Vec<Candidate>> {
        let map = |r: &rusqlite::Row<'_>| {
            Ok(Candidate {
                seq: r.get(0)?,
                id: r.get(1)?,
                attributes: r.get(2)?,
                entities: r.get(3)?,
                updated_at: r.get(4)?,
            })
        };
        Ok(match q.first {
            None => self
                .conn
                .prepare_cached(
                    "SELECT seq, id, attributes, entities, updated_at FROM datasets \
                     WHERE type = ?1 AND state = ?2 AND status = 'ready' AND seq > ?3 ORDER BY seq LIMIT ?4",
                )?
                .query_map(params![q.type_name, q.state, q.cursor, q.batch], map)?
                .collect::<Result<_, _>>()?,
            Some((name, value)) => self
                .conn
                .prepare_cached(
                    "SELECT d.seq, d.id, d.attributes, d.entities, d.updated_at FROM dataset_attrs a \
                     JOIN datasets d ON d.seq = a.seq \
                     WHERE a.type = ?1 AND a.state = ?2 AND a.name = ?5 AND a.value = ?6 AND a.seq > ?3 \
                     AND d.status = 'ready' ORDER BY a.seq LIMIT ?4",
                )?
                .query_map(
                    params![q.type_name, q.state, q.cursor, q.batch, name, value],
                    map,
                )?
                .collect::<Result<_, _>>()?,
        })
    }

    async fn potential_with(&self, a: Attr<'_>) -> StoreResult<u64> {
        let n: i64 = self
            .conn
            .prepare_cached(
                "SELECT count(*) FROM dataset_attrs a JOIN datasets d ON d.seq = a.seq \
                 WHERE a.type = ?1 AND a.state = ?2 AND a.name = ?3 AND a.value = ?4 \
                 AND d.status IN ('ready', 'generating', 'leased')",
            )?
            .query_row(params![a.type_name, a.state, a.name, a.value], |r| r.get(0))?;
        Ok(to_u64(n))
    }

    async fn count(&self, of: (&str, &str), statuses: &[DatasetStatus]) -> StoreResult<u64> {
        let mut total = 0;
        for status in statuses {
            let n: Option<i64> = self
                .conn
                .prepare_cached(
                    "SELECT n FROM status_counts WHERE type = ?1 AND state = ?2 AND status = ?3",
                )?
                .query_row(params![of.0, of.1, status.as_str()], |r| r.get(0))
                .optional()?;
            total += to_u64(n.unwrap_or(0));
        }
        Ok(total)
    }

    async fn lock_generation_cap(&self, _: &str, _: &str) -> StoreResult<()> {
        // The single writer already runs one operation at a time.
        Ok(())
    }

    async fn dataset_ref(&self, id: &str, _lock: bool) -> StoreResult<Option<DatasetRef>> {
        self.conn
            .prepare_cached("SELECT seq, id, type, state, status FROM datasets WHERE id = ?1")?
            .query_row([id], ref_cols)
            .optional()?
            .map(dataset_ref)
            .transpose()
    }

    async fn dataset(&self, id: &str) -> StoreResult<Option<RawDataset>> {
        Ok(self
            .conn
            .prepare_cached(&format!("SELECT {DS_COLS} FROM datasets d WHERE d.id = ?1"))?
            .query_row([id], |r| raw_dataset(r, 0))
            .optional()?)
    }

    async fn dataset_by_seq(&self, seq: i64) -> StoreResult<RawDataset> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {DS_COLS} FROM datasets d WHERE d.seq = ?1"
            ))?
            .query_row([seq], |r| raw_dataset(r, 0))?)
    }

    async fn history(&self, id: &str) -> StoreResult<Vec<HistoryEntry>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT at, from_status, to_status, lease_id, holder, reason FROM history WHERE dataset_id = ?1 ORDER BY seq",
        )?;
        let rows: Vec<HistoryCols> = stmt
            .query_map([id], |r| history_cols(r, 0))?
            .collect::<Result<_, _>>()?;
        rows.into_iter().map(history_entry).collect()
    }

    async fn list_datasets(&self, filter: &DatasetFilter) -> StoreResult<Vec<RawDataset>> {
        let (mut sql, args) = dataset_filter_sql(filter, |n| format!("?{n}"));
        sql.push_str(&format!(" LIMIT {}", filter.limit));
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
            raw_dataset(r, 0)
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn insert_dataset(&self, d: NewRow<'_>) -> StoreResult<i64> {
        self.conn
            .prepare_cached(
                "INSERT INTO datasets (id, type, state, status, attributes, data, secret_fields, entities, reusable, \
                 created_at, updated_at, generator, request, lifecycle) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12, ?13)",
            )?
            .execute(params![
                d.id,
                d.type_name,
                d.state,
                d.status.as_str(),
                d.attributes,
                d.data,
                d.secret_fields,
                d.entities,
                d.reusable,
                d.now_ms,
                d.generator,
                d.request,
                d.lifecycle
            ])?;
        Ok(self.conn.last_insert_rowid())
    }

    async fn insert_attr(&self, a: Attr<'_>, seq: i64) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO dataset_attrs (type, state, name, value, seq) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![a.type_name, a.state, a.name, a.value, seq])?;
        Ok(())
    }

    async fn set_status(&self, s: RowStatus<'_>) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE datasets SET status = ?1, updated_at = ?2, \
                 lease_id = CASE WHEN ?1 = 'ready' THEN NULL ELSE COALESCE(?3, lease_id) END WHERE seq = ?4",
            )?
            .execute(params![s.to.as_str(), s.now_ms, s.lease_id, s.seq])?;
        Ok(())
    }

    async fn insert_history(&self, h: NewHistory<'_>) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO history (dataset_id, at, from_status, to_status, lease_id, holder, reason) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                h.dataset_id,
                h.at,
                h.from.map(DatasetStatus::as_str),
                h.to.as_str(),
                h.lease_id,
                h.holder,
                h.reason
            ])?;
        Ok(())
    }

    async fn set_part_of(&self, seq: i64, parent: &str) -> StoreResult<()> {
        self.conn
            .prepare_cached("UPDATE datasets SET part_of = ?2 WHERE seq = ?1")?
            .execute(params![seq, parent])?;
        Ok(())
    }

    async fn parts_entities(&self, parent: &str) -> StoreResult<Vec<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT entities FROM datasets WHERE part_of = ?1 ORDER BY seq")?
            .query_map([parent], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    async fn open_parts(&self, parent: &str) -> StoreResult<Vec<DatasetRef>> {
        let rows: Vec<RefCols> = self
            .conn
            .prepare_cached(
                "SELECT seq, id, type, state, status FROM datasets WHERE part_of = ?1 \
                 AND status IN ('composed', 'generating') ORDER BY seq",
            )?
            .query_map([parent], ref_cols)?
            .collect::<Result<_, _>>()?;
        rows.into_iter().map(dataset_ref).collect()
    }

    async fn set_generated(&self, g: GeneratedRow<'_>) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE datasets SET attributes = ?2, data = ?3, secret_fields = ?4, entities = ?5, part_of = ?6, inputs = ?7 \
                 WHERE seq = ?1",
            )?
            .execute(params![g.seq, g.attributes, g.data, g.secret_fields, g.entities, g.part_of, g.inputs])?;
        Ok(())
    }

    async fn set_error(&self, seq: i64, error: &str) -> StoreResult<()> {
        self.conn
            .prepare_cached("UPDATE datasets SET error = ?2 WHERE seq = ?1")?
            .execute(params![seq, error])?;
        Ok(())
    }

    async fn set_extended(&self, x: ExtendedRow<'_>) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE datasets SET state = ?2, data = ?3, secret_fields = ?4, entities = ?5, updated_at = ?6 \
                 WHERE seq = ?1",
            )?
            .execute(params![x.seq, x.to_state, x.data, x.secret_fields, x.entities, x.now_ms])?;
        self.conn
            .prepare_cached("UPDATE dataset_attrs SET state = ?2 WHERE seq = ?1")?
            .execute(params![x.seq, x.to_state])?;
        Ok(())
    }

    async fn generating_to_fail(&self) -> StoreResult<Vec<String>> {
        // One process owns the file: every generation left is from a previous run.
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id FROM datasets WHERE status = 'generating' AND pending IS NULL ORDER BY seq",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    async fn set_pending(
        &self,
        seq: i64,
        pending: Option<&str>,
        due_ms: Option<i64>,
        attempts: i64,
    ) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE datasets SET pending = ?2, pending_due = ?3, pending_attempts = ?4 WHERE seq = ?1",
            )?
            .execute(params![seq, pending, due_ms, attempts])?;
        Ok(())
    }

    async fn pending_due(&self, now_ms: i64, limit: u32) -> StoreResult<Vec<PendingRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT d.seq, d.pending, d.pending_attempts, {DS_COLS} FROM datasets d \
             WHERE d.pending IS NOT NULL AND d.pending_due <= ?1 ORDER BY d.pending_due LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![now_ms, limit], |r| {
            Ok(PendingRow {
                seq: r.get(0)?,
                pending: r.get(1)?,
                attempts: r.get(2)?,
                raw: raw_dataset(r, 3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn stale_ready(
        &self,
        type_name: &str,
        state: &str,
        before_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<(DatasetRef, String)>> {
        let rows: Vec<(RefCols, String)> = self
            .conn
            .prepare_cached(
                "SELECT seq, id, type, state, status, lifecycle FROM datasets \
                 WHERE type = ?1 AND state = ?2 AND status = 'ready' AND updated_at < ?3 ORDER BY seq LIMIT ?4",
            )?
            .query_map(params![type_name, state, before_ms, limit], |r| {
                Ok((ref_cols(r)?, r.get(5)?))
            })?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(d, lifecycle)| Ok((dataset_ref(d)?, lifecycle)))
            .collect()
    }

    async fn lifecycle_of(&self, seq: i64) -> StoreResult<(String, Option<String>)> {
        Ok(self
            .conn
            .prepare_cached("SELECT lifecycle, pending FROM datasets WHERE seq = ?1")?
            .query_row([seq], |r| Ok((r.get(0)?, r.get(1)?)))?)
    }

    async fn consumed_before(&self, before_ms: i64, limit: u32) -> StoreResult<Vec<String>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id FROM datasets WHERE status = 'consumed' AND updated_at < ?1 AND data != 'null' \
                 ORDER BY seq LIMIT ?2",
            )?
            .query_map(params![before_ms, limit], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    async fn erase_data(&self, id: &str, now_ms: i64) -> StoreResult<()> {
        self.conn
            .prepare_cached("UPDATE datasets SET data = 'null', updated_at = ?2 WHERE id = ?1")?
            .execute(params![id, now_ms])?;
        Ok(())
    }

    async fn quarantined(&self, limit: u32) -> StoreResult<Vec<QuarantinedRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {DS_COLS}, l.details_url, l.holder FROM datasets d LEFT JOIN leases l ON l.id = d.lease_id \
             WHERE d.status = 'quarantined' ORDER BY d.seq LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit], |r| {
            Ok(QuarantinedRow {
                raw: raw_dataset(r, 0)?,
                details_url: r.get(14)?,
                holder_json: r.get(15)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn histories(&self, ids: &[String]) -> StoreResult<Vec<(String, HistoryEntry)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT dataset_id, at, from_status, to_status, lease_id, holder, reason FROM history \
             WHERE dataset_id IN (SELECT value FROM json_each(?1)) ORDER BY seq",
        )?;
        let rows: Vec<(String, HistoryCols)> = stmt
            .query_map([serde_json::to_string(ids)?], |r| {
                Ok((r.get(0)?, history_cols(r, 1)?))
            })?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(id, h)| Ok((id, history_entry(h)?)))
            .collect()
    }

    async fn apply_counts(&self, deltas: &[(CountKey, i64)]) -> StoreResult<()> {
        // One writer: no lock to keep short, one cached upsert per key.
        let mut stmt = self.conn.prepare_cached(
            "INSERT INTO status_counts (type, state, status, n) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (type, state, status) DO UPDATE SET n = n + excluded.n",
        )?;
        for ((t, s, status), n) in deltas {
            stmt.execute(params![t, s, status.as_str(), n])?;
        }
        Ok(())
    }

    async fn know_states(&self, states: &[(String, String)]) -> StoreResult<()> {
        let mut stmt = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO known_states (type, state) VALUES (?1, ?2)")?;
        for (t, s) in states {
            stmt.execute(params![t, s])?;
        }
        Ok(())
    }

    async fn counts(&self) -> StoreResult<Vec<(CountKey, u64)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT type, state, status, n FROM status_counts")?;
        let rows: Vec<(String, String, String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(t, s, status, n)| Ok(((t, s, parse_status(&status)?), to_u64(n))))
            .collect()
    }

    async fn known_states(&self) -> StoreResult<Vec<(String, String)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT type, state FROM known_states")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?)
    }

    async fn stock_settings(&self) -> StoreResult<Vec<(String, String, StockSettings)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT type, state, min_ready, max_ready FROM stock_settings")?
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    StockSettings {
                        min_ready: r.get(2)?,
                        max_ready: r.get(3)?,
                    },
                ))
            })?
            .collect::<Result<_, _>>()?)
    }

    async fn set_stock(&self, type_name: &str, state: &str, s: &StockSettings) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO stock_settings (type, state, min_ready, max_ready) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (type, state) DO UPDATE SET min_ready = excluded.min_ready, max_ready = excluded.max_ready",
            )?
            .execute(params![type_name, state, s.min_ready, s.max_ready])?;
        Ok(())
    }

    async fn put_session(&self, s: &SessionRow) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO sessions (id_hash, caller_name, role, csrf, leases, last_seen_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                s.id_hash,
                s.caller_name,
                s.role.as_str(),
                s.csrf,
                serde_json::to_string(&s.leases)?,
                s.last_seen_ms
            ])?;
        Ok(())
    }

    async fn get_session(&self, id_hash: &str) -> StoreResult<Option<SessionRow>> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT id_hash, caller_name, role, csrf, leases, last_seen_ms FROM sessions WHERE id_hash = ?1",
            )?
            .query_row([id_hash], session_row)
            .optional()?;
        row.map(|(id_hash, caller_name, role, csrf, leases, last_seen_ms)| {
            Ok(SessionRow {
                id_hash,
                caller_name,
                role: parse_role(&role)?,
                csrf,
                leases: serde_json::from_str(&leases)?,
                last_seen_ms,
            })
        })
        .transpose()
    }

    async fn touch_session(&self, id_hash: &str, now_ms: i64) -> StoreResult<()> {
        self.conn
            .prepare_cached("UPDATE sessions SET last_seen_ms = ?2 WHERE id_hash = ?1")?
            .execute(params![id_hash, now_ms])?;
        Ok(())
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        self.conn
            .prepare_cached("DELETE FROM sessions WHERE id_hash = ?1")?
            .execute([id_hash])?;
        Ok(())
    }

    async fn purge_sessions(&self, before_ms: i64) -> StoreResult<()> {
        self.conn
            .prepare_cached("DELETE FROM sessions WHERE last_seen_ms < ?1")?
            .execute([before_ms])?;
        Ok(())
    }

    async fn set_session_leases(&self, id_hash: &str, leases_json: &str) -> StoreResult<()> {
        self.conn
            .prepare_cached("UPDATE sessions SET leases = ?2 WHERE id_hash = ?1")?
            .execute(params![id_hash, leases_json])?;
        Ok(())
    }
}
