//! The embedded SQLite backend (`store = "sqlite://PATH"`), the default.
//!
//! - One writer thread owns the only write connection; every semantic
//!   operation is a closure sent to it. SQLite serialises writes anyway, and a
//!   single owner avoids `SQLITE_BUSY` storms. The writer drains whatever is
//!   queued, runs each operation in its own `SAVEPOINT` inside one
//!   `BEGIN IMMEDIATE` transaction, commits once (group commit), and only then
//!   answers the callers: an answer always describes committed state.
//! - Reads run on a small pool of reader threads with their own connections
//!   (WAL lets them read while the writer writes).
//! - WAL, `synchronous = NORMAL` (a crash loses no committed transaction that
//!   reached the WAL; a power cut may lose the last few), `busy_timeout` 5 s.
//! - Checkpoints run off the writer's path (see [`checkpointer_loop`]): the
//!   writer never copies the WAL into the database file or waits for an
//!   `fsync` inside a commit, except for a short catch-up when the WAL is
//!   due to restart.
//! - Migrations are embedded and applied at open, tracked by `PRAGMA user_version`.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use stockroom_protocol::api::{
    DatasetView, HistoryEntry, Holder, LeaseGranted, LeaseItem, LeaseView, LeasedDataset,
    NewDataset, ReleaseAnswer, ReleasedDataset, StockSettings,
};
use stockroom_protocol::{Attributes, Dataset, DatasetStatus, LeaseStatus, OnFailure, Outcome};
use tokio::sync::oneshot;

use super::{
    BoxFuture, DatasetFilter, ExpiredLease, ExtendResult, Extension, Generated, HeartbeatResult,
    InputPick, ItemShortfall, LeaseAttempt, LeaseResult, NewGeneration, ReleaseResult,
    SettleResult, StockTable, Store, StoreError, StoreResult,
};
use crate::ids;
use crate::time::rfc3339;

const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_generations.sql"),
];
const READERS: usize = 2;
const MAX_BATCH: usize = 256;
/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// WAL frames (pages) past which the writer finishes a checkpoint itself, so
/// that its next transaction starts the WAL over (about 16 MiB of WAL).
const WAL_RESTART_FRAMES: i64 = 4096;

/// When the WAL is copied into the database file and restarted.
#[derive(Debug, Clone, Copy)]
struct WalPolicy {
    checkpoint_every: Duration,
    restart_frames: i64,
}

impl Default for WalPolicy {
    fn default() -> Self {
        WalPolicy {
            checkpoint_every: CHECKPOINT_EVERY,
            restart_frames: WAL_RESTART_FRAMES,
        }
    }
}
/// The WAL file is truncated to this size when it restarts.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
type WriteJob = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// The SQLite store. Dropping it stops its threads once queued work is done.
pub struct SqliteStore {
    writer: mpsc::Sender<WriteJob>,
    readers: mpsc::Sender<ReadJob>,
    /// Dropped with the store: the checkpointer stops when it disconnects.
    _checkpointer: mpsc::Sender<()>,
}

fn open_connection(path: &Path) -> StoreResult<Connection> {
    let err = |e: rusqlite::Error| StoreError::Open {
        url: format!("sqlite://{}", path.display()),
        message: e.to_string(),
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; \
         PRAGMA temp_store = MEMORY; PRAGMA cache_size = -32768;",
    )
    .map_err(err)?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let version: usize =
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Query(format!(
            "the database has schema version {version}, newer than this pool knows ({}); upgrade stockroom-pool",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
    }
    Ok(())
}

/// Runs one statement that returns no rows through the statement cache
/// (transaction control included: parsed once per connection, not per call).
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// `PRAGMA wal_checkpoint(PASSIVE)`: (could not finish, WAL frames, frames copied).
fn checkpoint_passive(conn: &Connection) -> rusqlite::Result<(bool, i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get::<_, i64>(0)? != 0, r.get(1)?, r.get(2)?))
    })
}

/// Copies the WAL into the database file every `checkpoint_every`, on its
/// own connection, so that the writer does not (its automatic checkpoint is
/// off): a checkpoint `fsync`s the WAL and the database file, which in a
/// commit would stall every operation queued behind it.
///
/// A PASSIVE checkpoint never waits for the writer, but it also never
/// catches up with one that keeps appending, and SQLite only starts the WAL
/// over when a write transaction begins with every frame copied. So once the
/// WAL holds `restart_frames`, this asks the writer (through `restart`)
/// to run one more PASSIVE checkpoint between two batches: it only has the
/// frames written since this one to copy, and its next transaction restarts
/// the WAL. The WAL stays bounded under any load.
fn checkpointer_loop(
    conn: Connection,
    policy: WalPolicy,
    restart: Arc<AtomicBool>,
    stop: mpsc::Receiver<()>,
) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(policy.checkpoint_every) {
        match checkpoint_passive(&conn) {
            Ok((_, frames, copied)) => {
                if frames >= policy.restart_frames {
                    restart.store(true, Ordering::Release);
                }
                tracing::trace!(frames, copied, "checkpoint");
            }
            Err(e) => tracing::warn!(error = %e, "background checkpoint failed"),
        }
    }
}

/// The writer's half of the WAL restart (see [`checkpointer_loop`]).
fn finish_checkpoint(conn: &Connection, restart: &AtomicBool) {
    if !restart.swap(false, Ordering::AcqRel) {
        return;
    }
    match checkpoint_passive(conn) {
        Ok((busy, frames, copied)) if busy || copied < frames => {
            // A reader still uses old frames (or the checkpointer is busy): next batch.
            restart.store(true, Ordering::Release);
        }
        Ok((_, frames, _)) => tracing::debug!(frames, "WAL copied; it restarts"),
        Err(e) => tracing::warn!(error = %e, "checkpoint before a WAL restart failed"),
    }
}

fn writer_loop(conn: Connection, jobs: mpsc::Receiver<WriteJob>, restart: Arc<AtomicBool>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = exec_cached(&conn, "BEGIN IMMEDIATE") {
            let msg = e.to_string();
            for job in batch {
                // Run nothing; answer every caller with the failure.
                drop(job);
                tracing::error!(error = %msg, "cannot begin a store transaction");
            }
            continue;
        }
        let mut replies = Vec::with_capacity(batch.len());
        for job in batch {
            if let Err(e) = exec_cached(&conn, "SAVEPOINT op") {
                tracing::error!(error = %e, "cannot open a savepoint");
                continue;
            }
            let ran = std::panic::catch_unwind(AssertUnwindSafe(|| job(&conn)));
            let ok = match &ran {
                Ok((ok, _)) => *ok,
                Err(_) => false,
            };
            let end = if ok {
                exec_cached(&conn, "RELEASE op")
            } else {
                exec_cached(&conn, "ROLLBACK TO op").and_then(|()| exec_cached(&conn, "RELEASE op"))
            };
            if let Err(e) = end {
                tracing::error!(error = %e, "cannot close a savepoint");
            }
            match ran {
                Ok((_, reply)) => replies.push(reply),
                Err(_) => tracing::error!("a store operation panicked; it was rolled back"),
            }
        }
        let commit = exec_cached(&conn, "COMMIT").map_err(|e| e.to_string());
        if commit.is_err() {
            let _ = exec_cached(&conn, "ROLLBACK");
        }
        for reply in replies {
            reply(commit.clone());
        }
        finish_checkpoint(&conn, &restart);
    }
}

fn reader_loop(conn: Connection, jobs: Arc<Mutex<mpsc::Receiver<ReadJob>>>) {
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        job(&conn);
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database file and runs its migrations.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        SqliteStore::open_with(path, WalPolicy::default())
    }

    fn open_with(path: &Path, policy: WalPolicy) -> StoreResult<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                url: format!("sqlite://{}", path.display()),
                message: format!("cannot create directory {}: {e}", dir.display()),
            })?;
        }
        let mut conn = open_connection(path)?;
        migrate(&mut conn)?;
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {WAL_SIZE_LIMIT};"
        ))?;
        let restart = Arc::new(AtomicBool::new(false));
        let checkpoint_conn = open_connection(path)?;
        let (checkpointer, stop_rx) = mpsc::channel::<()>();
        let flag = Arc::clone(&restart);
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || checkpointer_loop(checkpoint_conn, policy, flag, stop_rx))
            .map_err(|e| StoreError::Query(format!("cannot start the checkpoint thread: {e}")))?;
        let (writer, write_rx) = mpsc::channel::<WriteJob>();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(conn, write_rx, restart))
            .map_err(|e| StoreError::Query(format!("cannot start the writer thread: {e}")))?;
        let (readers, read_rx) = mpsc::channel::<ReadJob>();
        let read_rx = Arc::new(Mutex::new(read_rx));
        for i in 0..READERS {
            let conn = open_connection(path)?;
            let rx = Arc::clone(&read_rx);
            std::thread::Builder::new()
                .name(format!("store-reader-{i}"))
                .spawn(move || reader_loop(conn, rx))
                .map_err(|e| StoreError::Query(format!("cannot start a reader thread: {e}")))?;
        }
        Ok(SqliteStore {
            writer,
            readers,
            _checkpointer: checkpointer,
        })
    }

    fn write<T, F>(&self, op: F) -> BoxFuture<'_, StoreResult<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: WriteJob = Box::new(move |conn| {
            let result = op(conn);
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit| {
                let _ = tx.send(match commit {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Query(format!("commit failed: {e}"))),
                });
            });
            (ok, reply)
        });
        let sent = self.writer.send(job);
        Box::pin(async move {
            sent.map_err(|_| StoreError::Closed)?;
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn read<T, F>(&self, op: F) -> BoxFuture<'_, StoreResult<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = tx.send(op(conn));
        });
        let sent = self.readers.send(job);
        Box::pin(async move {
            sent.map_err(|_| StoreError::Closed)?;
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }
}

// ---------------------------------------------------------------- helpers

use super::rows::{DS_COLS, RawDataset, parse_lease_status, parse_status};

fn bump(
    conn: &Connection,
    type_name: &str,
    state: &str,
    status: DatasetStatus,
    delta: i64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO status_counts (type, state, status, n) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (type, state, status) DO UPDATE SET n = n + excluded.n",
    )?
    .execute(params![type_name, state, status.as_str(), delta])?;
    Ok(())
}

/// One status change: the row, the counts and the history, together.
struct Change<'a> {
    seq: i64,
    id: &'a str,
    type_name: &'a str,
    state: &'a str,
    from: Option<DatasetStatus>,
    to: DatasetStatus,
    lease_id: Option<&'a str>,
    holder: Option<&'a str>,
    reason: &'a str,
    now_ms: i64,
}

fn change(conn: &Connection, c: Change<'_>) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE datasets SET status = ?1, updated_at = ?2, \
         lease_id = CASE WHEN ?1 = 'ready' THEN NULL ELSE COALESCE(?3, lease_id) END WHERE seq = ?4",
    )?
    .execute(params![c.to.as_str(), c.now_ms, c.lease_id, c.seq])?;
    if let Some(from) = c.from {
        bump(conn, c.type_name, c.state, from, -1)?;
    }
    bump(conn, c.type_name, c.state, c.to, 1)?;
    conn.prepare_cached(
        "INSERT INTO history (dataset_id, at, from_status, to_status, lease_id, holder, reason) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        c.id,
        c.now_ms,
        c.from.map(DatasetStatus::as_str),
        c.to.as_str(),
        c.lease_id,
        c.holder,
        c.reason
    ])?;
    Ok(())
}

fn count_of(
    conn: &Connection,
    type_name: &str,
    state: &str,
    status: DatasetStatus,
) -> StoreResult<u64> {
    let n: Option<i64> = conn
        .prepare_cached(
            "SELECT n FROM status_counts WHERE type = ?1 AND state = ?2 AND status = ?3",
        )?
        .query_row(params![type_name, state, status.as_str()], |r| r.get(0))
        .optional()?;
    Ok(n.unwrap_or(0).max(0) as u64)
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
    })
}

fn history_of(conn: &Connection, id: &str) -> StoreResult<Vec<HistoryEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, from_status, to_status, lease_id, holder, reason FROM history WHERE dataset_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (at, from, to, lease_id, holder, reason) = row?;
        out.push(HistoryEntry {
            at: rfc3339(at),
            from: from.as_deref().map(parse_status).transpose()?,
            to: parse_status(&to)?,
            lease_id,
            holder,
            reason,
        });
    }
    Ok(out)
}

fn dataset_with_history(conn: &Connection, id: &str) -> StoreResult<Option<DatasetView>> {
    let raw = conn
        .prepare_cached(&format!("SELECT {DS_COLS} FROM datasets d WHERE d.id = ?1"))?
        .query_row([id], |r| raw_dataset(r, 0))
        .optional()?;
    let Some(raw) = raw else { return Ok(None) };
    let mut view = raw.view()?;
    view.history = history_of(conn, id)?;
    Ok(Some(view))
}

struct LeaseRow {
    id: String,
    status: String,
    holder: String,
    holder_label: String,
    ttl_ms: i64,
    created_at: i64,
    expires_at: i64,
    ended_at: Option<i64>,
    outcome: Option<String>,
    reason: Option<String>,
    details_url: Option<String>,
    answer: Option<String>,
}

const LEASE_COLS: &str = "id, status, holder, holder_label, ttl_ms, created_at, expires_at, ended_at, outcome, reason, details_url, answer";

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
    })
}

fn find_lease(conn: &Connection, id: &str) -> StoreResult<Option<LeaseRow>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {LEASE_COLS} FROM leases WHERE id = ?1"))?
        .query_row([id], lease_row)
        .optional()?)
}

fn lease_datasets(conn: &Connection, lease_id: &str) -> StoreResult<Vec<LeasedDataset>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT li.name, li.idx, {DS_COLS} FROM lease_items li JOIN datasets d ON d.id = li.dataset_id \
         WHERE li.lease_id = ?1 ORDER BY li.pos"
    ))?;
    let rows = stmt.query_map([lease_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            raw_dataset(r, 2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, idx, raw) = row?;
        out.push(LeasedDataset {
            name,
            index: idx as u32,
            dataset: raw.dataset()?,
        });
    }
    Ok(out)
}

pub(crate) fn heartbeat_interval_seconds(ttl_ms: i64) -> u64 {
    (ttl_ms / 3000).max(1) as u64
}

fn granted(conn: &Connection, lease: &LeaseRow) -> StoreResult<LeaseGranted> {
    Ok(LeaseGranted {
        lease_id: lease.id.clone(),
        expires_at: rfc3339(lease.expires_at),
        heartbeat_interval_seconds: heartbeat_interval_seconds(lease.ttl_ms),
        datasets: lease_datasets(conn, &lease.id)?,
    })
}

fn lease_view(conn: &Connection, lease: LeaseRow) -> StoreResult<LeaseView> {
    let holder: Holder = serde_json::from_str(&lease.holder)?;
    Ok(LeaseView {
        datasets: lease_datasets(conn, &lease.id)?,
        lease_id: lease.id,
        status: parse_lease_status(&lease.status)?,
        holder,
        created_at: rfc3339(lease.created_at),
        expires_at: rfc3339(lease.expires_at),
        ended_at: lease.ended_at.map(rfc3339),
        outcome: lease
            .outcome
            .as_deref()
            .map(str::parse::<Outcome>)
            .transpose()
            .map_err(StoreError::Query)?,
        reason: lease.reason,
        details_url: lease.details_url,
    })
}

/// Moves a lease to `expired` and quarantines its datasets.
fn expire_lease(conn: &Connection, lease: &LeaseRow, now_ms: i64) -> StoreResult<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.seq, d.id, d.type, d.state FROM lease_items li JOIN datasets d ON d.id = li.dataset_id \
         WHERE li.lease_id = ?1 AND d.status = 'leased' AND d.lease_id = ?1 ORDER BY li.pos",
    )?;
    let rows: Vec<(i64, String, String, String)> = stmt
        .query_map([&lease.id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    for (seq, id, type_name, state) in &rows {
        change(
            conn,
            Change {
                seq: *seq,
                id,
                type_name,
                state,
                from: Some(DatasetStatus::Leased),
                to: DatasetStatus::Quarantined,
                lease_id: Some(&lease.id),
                holder: Some(&lease.holder_label),
                reason: "lease expired without heartbeat",
                now_ms,
            },
        )?;
    }
    conn.prepare_cached("DELETE FROM entity_holds WHERE lease_id = ?1")?
        .execute([&lease.id])?;
    conn.prepare_cached(
        "UPDATE leases SET status = 'expired', ended_at = ?2, reason = 'expired without heartbeat' WHERE id = ?1",
    )?
    .execute(params![lease.id, now_ms])?;
    Ok(rows.into_iter().map(|(_, id, _, _)| id).collect())
}

struct Picked {
    seq: i64,
    id: String,
    entities: Vec<String>,
}

fn entity_held(conn: &Connection, entity: &str) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM entity_holds WHERE entity = ?1")?
        .query_row([entity], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Picks up to `item.count` ready datasets matching the item, oldest first,
/// skipping those taken by earlier items of this lease or whose entities are held.
fn pick(
    conn: &Connection,
    item: &LeaseItem,
    taken: &mut HashSet<i64>,
    entities_taken: &mut HashSet<String>,
) -> StoreResult<Vec<Picked>> {
    let want = item.count as usize;
    // Fetch what is needed plus one; widen only when candidates were skipped
    // (taken by an earlier item, other attributes, held entities).
    let mut batch = (want + 1).min(1024) as i64;
    let check_attrs = item.where_.len() > 1;
    let mut out = Vec::with_capacity(want);
    let mut cursor = 0i64;
    let first = item.where_.iter().next();
    loop {
        let rows: Vec<(i64, String, String, String)> = match first {
            None => conn
                .prepare_cached(
                    "SELECT seq, id, attributes, entities FROM datasets \
                     WHERE type = ?1 AND state = ?2 AND status = 'ready' AND seq > ?3 ORDER BY seq LIMIT ?4",
                )?
                .query_map(params![item.type_name, item.state, cursor, batch], |r| {
                    Ok((r.get(0)?, r.get(1)?, if check_attrs { r.get(2)? } else { String::new() }, r.get(3)?))
                })?
                .collect::<Result<_, _>>()?,
            Some((name, value)) => conn
                .prepare_cached(
                    "SELECT d.seq, d.id, d.attributes, d.entities FROM dataset_attrs a JOIN datasets d ON d.seq = a.seq \
                     WHERE a.type = ?1 AND a.state = ?2 AND a.name = ?5 AND a.value = ?6 AND a.seq > ?3 \
                     AND d.status = 'ready' ORDER BY a.seq LIMIT ?4",
                )?
                .query_map(params![item.type_name, item.state, cursor, batch, name, value.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?, if check_attrs { r.get(2)? } else { String::new() }, r.get(3)?))
                })?
                .collect::<Result<_, _>>()?,
        };
        let full = rows.len() as i64 == batch;
        for (seq, id, attributes, entities) in rows {
            cursor = seq;
            if taken.contains(&seq) {
                continue;
            }
            if check_attrs {
                let attrs: Attributes = serde_json::from_str(&attributes)?;
                if !item.where_.iter().all(|(k, v)| attrs.get(k) == Some(v)) {
                    continue;
                }
            }
            let entities: Vec<String> = if entities == "[]" {
                Vec::new()
            } else {
                serde_json::from_str(&entities)?
            };
            let mut free = true;
            for e in &entities {
                if entities_taken.contains(e) || entity_held(conn, e)? {
                    free = false;
                    break;
                }
            }
            if !free {
                continue;
            }
            taken.insert(seq);
            entities_taken.extend(entities.iter().cloned());
            out.push(Picked { seq, id, entities });
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

fn shortfall(conn: &Connection, item: &LeaseItem, available: usize) -> StoreResult<ItemShortfall> {
    let ready = count_of(conn, &item.type_name, &item.state, DatasetStatus::Ready)?;
    let generating = count_of(
        conn,
        &item.type_name,
        &item.state,
        DatasetStatus::Generating,
    )?;
    let potential = match item.where_.iter().next() {
        None => {
            ready
                + generating
                + count_of(conn, &item.type_name, &item.state, DatasetStatus::Leased)?
        }
        Some((name, value)) => {
            let n: i64 = conn
                .prepare_cached(
                    "SELECT count(*) FROM dataset_attrs a JOIN datasets d ON d.seq = a.seq \
                     WHERE a.type = ?1 AND a.state = ?2 AND a.name = ?3 AND a.value = ?4 \
                     AND d.status IN ('ready', 'generating', 'leased')",
                )?
                .query_row(
                    params![item.type_name, item.state, name, value.as_str()],
                    |r| r.get(0),
                )?;
            n.max(0) as u64
        }
    };
    Ok(ItemShortfall {
        name: item.name.clone(),
        wanted: item.count,
        available: available as u64,
        ready,
        generating,
        potential,
    })
}

fn lease_tx(conn: &Connection, a: &LeaseAttempt) -> StoreResult<LeaseResult> {
    let now = a.now_ms;
    if let Some(key) = &a.idempotency_key {
        let existing = conn
            .prepare_cached(&format!(
                "SELECT {LEASE_COLS} FROM leases WHERE idempotency_key = ?1 AND status = 'active'"
            ))?
            .query_row([key], lease_row)
            .optional()?;
        if let Some(lease) = existing {
            if lease.expires_at > now {
                return Ok(LeaseResult::Existing(granted(conn, &lease)?));
            }
            expire_lease(conn, &lease, now)?;
        }
    }
    if a.items.is_empty() {
        // A lookup of the idempotency key only (see `Store::lease`).
        return Ok(LeaseResult::NoStock(Vec::new()));
    }
    let mut taken = HashSet::new();
    let mut entities_taken = HashSet::new();
    let mut picks = Vec::with_capacity(a.items.len());
    let mut short = Vec::new();
    for item in &a.items {
        let got = pick(conn, item, &mut taken, &mut entities_taken)?;
        if got.len() < item.count as usize {
            short.push(shortfall(conn, item, got.len())?);
        }
        picks.push(got);
    }
    if !short.is_empty() {
        return Ok(LeaseResult::NoStock(short));
    }
    let id = ids::lease_id();
    let label = a.holder.label();
    let expires_at = now + a.ttl_ms;
    conn.prepare_cached(
        "INSERT INTO leases (id, status, holder, holder_label, idempotency_key, ttl_ms, created_at, expires_at) \
         VALUES (?1, 'active', ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![id, serde_json::to_string(&a.holder)?, label, a.idempotency_key, a.ttl_ms, now, expires_at])?;
    let mut pos = 0i64;
    for (item, got) in a.items.iter().zip(&picks) {
        for (idx, p) in got.iter().enumerate() {
            change(
                conn,
                Change {
                    seq: p.seq,
                    id: &p.id,
                    type_name: &item.type_name,
                    state: &item.state,
                    from: Some(DatasetStatus::Ready),
                    to: DatasetStatus::Leased,
                    lease_id: Some(&id),
                    holder: Some(&label),
                    reason: "leased",
                    now_ms: now,
                },
            )?;
            conn.prepare_cached(
                "INSERT INTO lease_items (lease_id, dataset_id, name, idx, pos, on_failure) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![id, p.id, item.name, idx as i64, pos, item.on_failure.as_str()])?;
            pos += 1;
            for e in &p.entities {
                conn.prepare_cached(
                    "INSERT INTO entity_holds (entity, lease_id, dataset_id) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![e, id, p.id])?;
            }
        }
    }
    let lease =
        find_lease(conn, &id)?.ok_or_else(|| StoreError::Query("a new lease vanished".into()))?;
    Ok(LeaseResult::Granted(granted(conn, &lease)?))
}

fn heartbeat_tx(
    conn: &Connection,
    id: &str,
    ttl_ms: Option<i64>,
    now: i64,
) -> StoreResult<HeartbeatResult> {
    let Some(lease) = find_lease(conn, id)? else {
        return Ok(HeartbeatResult::NotFound);
    };
    let status = parse_lease_status(&lease.status)?;
    if status != LeaseStatus::Active {
        return Ok(HeartbeatResult::Gone(status));
    }
    if lease.expires_at <= now {
        expire_lease(conn, &lease, now)?;
        return Ok(HeartbeatResult::Gone(LeaseStatus::Expired));
    }
    let ttl = ttl_ms.unwrap_or(lease.ttl_ms);
    let expires_at = now + ttl;
    conn.prepare_cached("UPDATE leases SET expires_at = ?2, ttl_ms = ?3 WHERE id = ?1")?
        .execute(params![id, expires_at, ttl])?;
    Ok(HeartbeatResult::Extended {
        expires_at_ms: expires_at,
        ttl_ms: ttl,
    })
}

fn release_tx(
    conn: &Connection,
    id: &str,
    outcome: Outcome,
    reason: Option<String>,
    details_url: Option<String>,
    now: i64,
) -> StoreResult<ReleaseResult> {
    let Some(lease) = find_lease(conn, id)? else {
        return Ok(ReleaseResult::NotFound);
    };
    match parse_lease_status(&lease.status)? {
        LeaseStatus::Released => {
            let answer = lease
                .answer
                .as_deref()
                .ok_or_else(|| StoreError::Query("released lease lacks its answer".into()))?;
            return Ok(ReleaseResult::AlreadyReleased(serde_json::from_str(
                answer,
            )?));
        }
        LeaseStatus::Expired => return Ok(ReleaseResult::Expired),
        LeaseStatus::Active if lease.expires_at <= now => {
            expire_lease(conn, &lease, now)?;
            return Ok(ReleaseResult::Expired);
        }
        LeaseStatus::Active => {}
    }
    let mut stmt = conn.prepare_cached(
        "SELECT li.name, li.on_failure, d.seq, d.id, d.type, d.state, d.reusable, d.status \
         FROM lease_items li JOIN datasets d ON d.id = li.dataset_id WHERE li.lease_id = ?1 ORDER BY li.pos",
    )?;
    #[allow(clippy::type_complexity)]
    let rows: Vec<(String, String, i64, String, String, String, bool, String)> = stmt
        .query_map([id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    let why = match &reason {
        Some(r) => format!("lease released: {outcome} ({r})"),
        None => format!("lease released: {outcome}"),
    };
    let mut datasets = Vec::with_capacity(rows.len());
    for (name, on_failure, seq, ds_id, type_name, state, reusable, status) in rows {
        let on_failure: OnFailure = on_failure.parse().map_err(StoreError::Query)?;
        let current = parse_status(&status)?;
        let to = if current != DatasetStatus::Leased {
            current
        } else {
            let keep = outcome == Outcome::Passed || on_failure == OnFailure::Release;
            let to = match (keep, reusable) {
                (true, true) => DatasetStatus::Ready,
                (true, false) => DatasetStatus::Consumed,
                (false, _) => DatasetStatus::Quarantined,
            };
            change(
                conn,
                Change {
                    seq,
                    id: &ds_id,
                    type_name: &type_name,
                    state: &state,
                    from: Some(DatasetStatus::Leased),
                    to,
                    lease_id: Some(id),
                    holder: Some(&lease.holder_label),
                    reason: &why,
                    now_ms: now,
                },
            )?;
            to
        };
        datasets.push(ReleasedDataset {
            id: ds_id,
            name,
            status: to,
        });
    }
    conn.prepare_cached("DELETE FROM entity_holds WHERE lease_id = ?1")?
        .execute([id])?;
    let answer = ReleaseAnswer {
        lease_id: id.to_string(),
        status: LeaseStatus::Released,
        outcome: Some(outcome),
        datasets,
    };
    conn.prepare_cached(
        "UPDATE leases SET status = 'released', ended_at = ?2, outcome = ?3, reason = ?4, details_url = ?5, answer = ?6 \
         WHERE id = ?1",
    )?
    .execute(params![id, now, outcome.as_str(), reason, details_url, serde_json::to_string(&answer)?])?;
    Ok(ReleaseResult::Released(answer))
}

fn register_tx(
    conn: &Connection,
    datasets: Vec<NewDataset>,
    by: &str,
    now: i64,
) -> StoreResult<Vec<DatasetView>> {
    let mut out = Vec::with_capacity(datasets.len());
    for d in datasets {
        let id = ids::dataset_id();
        conn.prepare_cached(
            "INSERT INTO datasets (id, type, state, status, attributes, data, secret_fields, entities, reusable, \
             created_at, updated_at) VALUES (?1, ?2, ?3, 'ready', ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        )?
        .execute(params![
            id,
            d.type_name,
            d.state,
            serde_json::to_string(&d.attributes)?,
            serde_json::to_string(&d.data)?,
            serde_json::to_string(&d.secret_fields)?,
            serde_json::to_string(&d.entities)?,
            d.reusable,
            now
        ])?;
        let seq = conn.last_insert_rowid();
        for (name, value) in &d.attributes {
            conn.prepare_cached("INSERT INTO dataset_attrs (type, state, name, value, seq) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![d.type_name, d.state, name, value.as_str(), seq])?;
        }
        bump(conn, &d.type_name, &d.state, DatasetStatus::Ready, 1)?;
        conn.prepare_cached(
            "INSERT INTO history (dataset_id, at, from_status, to_status, lease_id, holder, reason) \
             VALUES (?1, ?2, NULL, 'ready', NULL, ?3, 'registered by hand')",
        )?
        .execute(params![id, now, by])?;
        let created_at = rfc3339(now);
        out.push(DatasetView {
            dataset: Dataset {
                id: id.clone(),
                type_name: d.type_name,
                state: d.state,
                attributes: d.attributes,
                data: d.data,
                secret_fields: d.secret_fields,
                entities: d.entities,
            },
            status: DatasetStatus::Ready,
            created_at: created_at.clone(),
            updated_at: created_at,
            lease_id: None,
            error: None,
            history: vec![HistoryEntry {
                at: rfc3339(now),
                from: None,
                to: DatasetStatus::Ready,
                lease_id: None,
                holder: Some(by.to_string()),
                reason: "registered by hand".to_string(),
            }],
        });
    }
    Ok(out)
}

fn settle_tx(
    conn: &Connection,
    id: &str,
    allowed: &[DatasetStatus],
    to: DatasetStatus,
    by: &str,
    reason: &str,
    now: i64,
) -> StoreResult<SettleResult> {
    let row: Option<(i64, String, String, String)> = conn
        .prepare_cached("SELECT seq, type, state, status FROM datasets WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    let Some((seq, type_name, state, status)) = row else {
        return Ok(SettleResult::NotFound);
    };
    let status = parse_status(&status)?;
    if !allowed.contains(&status) {
        return Ok(SettleResult::WrongStatus(status));
    }
    change(
        conn,
        Change {
            seq,
            id,
            type_name: &type_name,
            state: &state,
            from: Some(status),
            to,
            lease_id: None,
            holder: Some(by),
            reason,
            now_ms: now,
        },
    )?;
    match dataset_with_history(conn, id)? {
        Some(v) => Ok(SettleResult::Done(Box::new(v))),
        None => Ok(SettleResult::NotFound),
    }
}

// ---------------------------------------------------------------- generations

fn note(
    conn: &Connection,
    id: &str,
    status: DatasetStatus,
    by: Option<&str>,
    reason: &str,
    now: i64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO history (dataset_id, at, from_status, to_status, lease_id, holder, reason) \
         VALUES (?1, ?2, ?3, ?3, NULL, ?4, ?5)",
    )?
    .execute(params![id, now, status.as_str(), by, reason])?;
    Ok(())
}

/// `(seq, type, state, status)` of a dataset.
fn row_of(
    conn: &Connection,
    id: &str,
) -> StoreResult<Option<(i64, String, String, DatasetStatus)>> {
    let row: Option<(i64, String, String, String)> = conn
        .prepare_cached("SELECT seq, type, state, status FROM datasets WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    row.map(|(seq, t, s, st)| Ok((seq, t, s, parse_status(&st)?)))
        .transpose()
}

fn begin_generation_tx(
    conn: &Connection,
    g: &NewGeneration,
    now: i64,
) -> StoreResult<Option<String>> {
    if let Some(cap) = g.cap {
        let have = count_of(conn, &g.type_name, &g.state, DatasetStatus::Ready)?
            + count_of(conn, &g.type_name, &g.state, DatasetStatus::Generating)?;
        if have >= cap {
            return Ok(None);
        }
    }
    let id = ids::dataset_id();
    conn.prepare_cached(
        "INSERT INTO datasets (id, type, state, status, attributes, data, secret_fields, entities, reusable, \
         created_at, updated_at, generator, request) VALUES (?1, ?2, ?3, 'generating', '{}', 'null', '[]', '[]', ?4, ?5, ?5, ?6, ?7)",
    )?
    .execute(params![id, g.type_name, g.state, g.reusable, now, g.generator, serde_json::to_string(&g.request)?])?;
    bump(conn, &g.type_name, &g.state, DatasetStatus::Generating, 1)?;
    conn.prepare_cached(
        "INSERT INTO history (dataset_id, at, from_status, to_status, lease_id, holder, reason) \
         VALUES (?1, ?2, NULL, 'generating', NULL, ?3, ?4)",
    )?
    .execute(params![
        id,
        now,
        g.generator,
        format!(
            "generation started via generator {:?}; request: {}",
            g.generator, g.request
        )
    ])?;
    Ok(Some(id))
}

fn take_input_tx(conn: &Connection, p: &InputPick, now: i64) -> StoreResult<Option<Dataset>> {
    match row_of(conn, &p.part_of)? {
        Some((_, _, _, DatasetStatus::Generating)) => {}
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
    let Some(picked) = pick(conn, &item, &mut HashSet::new(), &mut HashSet::new())?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    conn.prepare_cached("UPDATE datasets SET part_of = ?2 WHERE seq = ?1")?
        .execute(params![picked.seq, p.part_of])?;
    change(
        conn,
        Change {
            seq: picked.seq,
            id: &picked.id,
            type_name: &p.type_name,
            state: &p.state,
            from: Some(DatasetStatus::Ready),
            to: DatasetStatus::Composed,
            lease_id: None,
            holder: Some("pool"),
            reason: &format!(
                "taken from stock as input {:?} of {}",
                p.input_name, p.part_of
            ),
            now_ms: now,
        },
    )?;
    note(
        conn,
        &p.part_of,
        DatasetStatus::Generating,
        Some("pool"),
        &format!(
            "part {:?}: {} ({}/{}) taken from stock",
            p.input_name, picked.id, p.type_name, p.state
        ),
        now,
    )?;
    let raw = conn
        .prepare_cached(&format!(
            "SELECT {DS_COLS} FROM datasets d WHERE d.seq = ?1"
        ))?
        .query_row([picked.seq], |r| raw_dataset(r, 0))?;
    Ok(Some(raw.dataset()?))
}

fn complete_generation_tx(
    conn: &Connection,
    id: &str,
    g: &Generated,
    now: i64,
) -> StoreResult<Option<DatasetView>> {
    let Some((seq, type_name, state, DatasetStatus::Generating)) = row_of(conn, id)? else {
        return Ok(None);
    };
    let mut entities = g.entities.clone();
    let parts: Vec<String> = conn
        .prepare_cached("SELECT entities FROM datasets WHERE part_of = ?1 ORDER BY seq")?
        .query_map([id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for part in parts {
        for e in serde_json::from_str::<Vec<String>>(&part)? {
            if !entities.contains(&e) {
                entities.push(e);
            }
        }
    }
    conn.prepare_cached(
        "UPDATE datasets SET attributes = ?2, data = ?3, secret_fields = ?4, entities = ?5, part_of = ?6 WHERE seq = ?1",
    )?
    .execute(params![
        seq,
        serde_json::to_string(&g.attributes)?,
        serde_json::to_string(&g.data)?,
        serde_json::to_string(&g.secret_fields)?,
        serde_json::to_string(&entities)?,
        g.part_of
    ])?;
    for (name, value) in &g.attributes {
        conn.prepare_cached("INSERT OR IGNORE INTO dataset_attrs (type, state, name, value, seq) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![type_name, state, name, value.as_str(), seq])?;
    }
    let to = if g.part_of.is_some() {
        DatasetStatus::Composed
    } else {
        DatasetStatus::Ready
    };
    let reason = match &g.part_of {
        Some(parent) => format!("{}; made as a part of {parent}", g.reason),
        None => g.reason.clone(),
    };
    change(
        conn,
        Change {
            seq,
            id,
            type_name: &type_name,
            state: &state,
            from: Some(DatasetStatus::Generating),
            to,
            lease_id: None,
            holder: Some("pool"),
            reason: &reason,
            now_ms: now,
        },
    )?;
    if let Some(parent) = &g.part_of {
        note(
            conn,
            parent,
            DatasetStatus::Generating,
            Some("pool"),
            &format!("part: {id} ({type_name}/{state}) made for it"),
            now,
        )?;
    }
    dataset_with_history(conn, id)
}

fn fail_generation_tx(conn: &Connection, id: &str, error: &str, now: i64) -> StoreResult<bool> {
    let Some((seq, type_name, state, DatasetStatus::Generating)) = row_of(conn, id)? else {
        return Ok(false);
    };
    conn.prepare_cached("UPDATE datasets SET error = ?2 WHERE seq = ?1")?
        .execute(params![seq, error])?;
    change(
        conn,
        Change {
            seq,
            id,
            type_name: &type_name,
            state: &state,
            from: Some(DatasetStatus::Generating),
            to: DatasetStatus::Failed,
            lease_id: None,
            holder: Some("pool"),
            reason: &format!("generation failed: {error}"),
            now_ms: now,
        },
    )?;
    let parts: Vec<(i64, String, String, String, String)> = conn
        .prepare_cached("SELECT seq, id, type, state, status FROM datasets WHERE part_of = ?1 AND status IN ('composed', 'generating')")?
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<Result<_, _>>()?;
    for (pseq, pid, ptype, pstate, pstatus) in parts {
        let from = parse_status(&pstatus)?;
        if from == DatasetStatus::Generating {
            fail_generation_tx(
                conn,
                &pid,
                &format!("the generation it was a part of ({id}) failed"),
                now,
            )?;
            continue;
        }
        change(
            conn,
            Change {
                seq: pseq,
                id: &pid,
                type_name: &ptype,
                state: &pstate,
                from: Some(from),
                to: DatasetStatus::Quarantined,
                lease_id: None,
                holder: Some("pool"),
                reason: &format!(
                    "input of failed generation {id}; the generator may have changed it"
                ),
                now_ms: now,
            },
        )?;
    }
    Ok(true)
}

fn extend_leased_tx(conn: &Connection, x: &Extension, now: i64) -> StoreResult<ExtendResult> {
    let Some(lease) = find_lease(conn, &x.lease_id)? else {
        return Ok(ExtendResult::NotFound);
    };
    let status = parse_lease_status(&lease.status)?;
    if status != LeaseStatus::Active {
        return Ok(ExtendResult::Gone(status));
    }
    if lease.expires_at <= now {
        expire_lease(conn, &lease, now)?;
        return Ok(ExtendResult::Gone(LeaseStatus::Expired));
    }
    let row: Option<(i64, String, String, String, Option<String>, String)> = conn
        .prepare_cached(
            "SELECT seq, type, state, status, lease_id, entities FROM datasets WHERE id = ?1",
        )?
        .query_row([&x.dataset_id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .optional()?;
    let Some((seq, type_name, state, dstatus, held_by, old_entities)) = row else {
        return Ok(ExtendResult::NotFound);
    };
    if dstatus != "leased"
        || held_by.as_deref() != Some(x.lease_id.as_str())
        || state != x.from_state
    {
        return Ok(ExtendResult::NotHolder);
    }
    let old: Vec<String> = serde_json::from_str(&old_entities)?;
    for e in x.entities.iter().filter(|e| !old.contains(e)) {
        let holder: Option<String> = conn
            .prepare_cached("SELECT lease_id FROM entity_holds WHERE entity = ?1")?
            .query_row([e], |r| r.get(0))
            .optional()?;
        match holder {
            Some(l) if l != x.lease_id => return Ok(ExtendResult::EntityHeld(e.clone())),
            Some(_) => {}
            None => {
                conn.prepare_cached(
                    "INSERT INTO entity_holds (entity, lease_id, dataset_id) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![e, x.lease_id, x.dataset_id])?;
            }
        }
    }
    conn.prepare_cached(
        "UPDATE datasets SET state = ?2, data = ?3, secret_fields = ?4, entities = ?5, updated_at = ?6 WHERE seq = ?1",
    )?
    .execute(params![
        seq,
        x.to_state,
        serde_json::to_string(&x.data)?,
        serde_json::to_string(&x.secret_fields)?,
        serde_json::to_string(&x.entities)?,
        now
    ])?;
    conn.prepare_cached("UPDATE dataset_attrs SET state = ?2 WHERE seq = ?1")?
        .execute(params![seq, x.to_state])?;
    bump(conn, &type_name, &state, DatasetStatus::Leased, -1)?;
    bump(conn, &type_name, &x.to_state, DatasetStatus::Leased, 1)?;
    conn.prepare_cached(
        "INSERT INTO history (dataset_id, at, from_status, to_status, lease_id, holder, reason) \
         VALUES (?1, ?2, 'leased', 'leased', ?3, ?4, ?5)",
    )?
    .execute(params![
        x.dataset_id,
        now,
        x.lease_id,
        lease.holder_label,
        format!(
            "{}: {type_name}/{state} → {type_name}/{}",
            x.reason, x.to_state
        )
    ])?;
    match dataset_with_history(conn, &x.dataset_id)? {
        Some(v) => Ok(ExtendResult::Done(Box::new(v))),
        None => Ok(ExtendResult::NotFound),
    }
}

impl Store for SqliteStore {
    fn lease(&self, attempt: LeaseAttempt) -> BoxFuture<'_, StoreResult<LeaseResult>> {
        self.write(move |conn| lease_tx(conn, &attempt))
    }

    fn heartbeat(
        &self,
        lease_id: String,
        ttl_ms: Option<i64>,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<HeartbeatResult>> {
        self.write(move |conn| heartbeat_tx(conn, &lease_id, ttl_ms, now_ms))
    }

    fn release(
        &self,
        lease_id: String,
        outcome: Outcome,
        reason: Option<String>,
        details_url: Option<String>,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<ReleaseResult>> {
        self.write(move |conn| release_tx(conn, &lease_id, outcome, reason, details_url, now_ms))
    }

    fn expire_due(&self, now_ms: i64, limit: u32) -> BoxFuture<'_, StoreResult<Vec<ExpiredLease>>> {
        self.write(move |conn| {
            let due: Vec<LeaseRow> = conn
                .prepare_cached(&format!(
                    "SELECT {LEASE_COLS} FROM leases WHERE status = 'active' AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2"
                ))?
                .query_map(params![now_ms, limit], lease_row)?
                .collect::<Result<_, _>>()?;
            let mut out = Vec::with_capacity(due.len());
            for lease in due {
                let dataset_ids = expire_lease(conn, &lease, now_ms)?;
                out.push(ExpiredLease { lease_id: lease.id, dataset_ids });
            }
            Ok(out)
        })
    }

    fn register(
        &self,
        datasets: Vec<NewDataset>,
        by: String,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<DatasetView>>> {
        self.write(move |conn| register_tx(conn, datasets, &by, now_ms))
    }

    fn discard(
        &self,
        id: String,
        by: String,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<SettleResult>> {
        self.write(move |conn| {
            settle_tx(
                conn,
                &id,
                &[
                    DatasetStatus::Quarantined,
                    DatasetStatus::Ready,
                    DatasetStatus::Failed,
                ],
                DatasetStatus::Discarded,
                &by,
                "discarded by admin",
                now_ms,
            )
        })
    }

    fn recycle(
        &self,
        id: String,
        by: String,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<SettleResult>> {
        self.write(move |conn| {
            settle_tx(
                conn,
                &id,
                &[DatasetStatus::Quarantined],
                DatasetStatus::Ready,
                &by,
                "recycled by admin",
                now_ms,
            )
        })
    }

    fn get_dataset(&self, id: String) -> BoxFuture<'_, StoreResult<Option<DatasetView>>> {
        self.read(move |conn| {
            exec_cached(conn, "BEGIN")?;
            let out = dataset_with_history(conn, &id);
            exec_cached(conn, "COMMIT")?;
            out
        })
    }

    fn list_datasets(&self, filter: DatasetFilter) -> BoxFuture<'_, StoreResult<Vec<DatasetView>>> {
        self.read(move |conn| {
            let mut sql = format!("SELECT {DS_COLS} FROM datasets d WHERE 1 = 1");
            let mut args: Vec<String> = Vec::new();
            if let Some(t) = filter.type_name {
                args.push(t);
                sql.push_str(&format!(" AND d.type = ?{}", args.len()));
            }
            if let Some(s) = filter.state {
                args.push(s);
                sql.push_str(&format!(" AND d.state = ?{}", args.len()));
            }
            if let Some(s) = filter.status {
                args.push(s.as_str().to_string());
                sql.push_str(&format!(" AND d.status = ?{}", args.len()));
            }
            sql.push_str(&format!(" ORDER BY d.seq LIMIT {}", filter.limit));
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
                raw_dataset(r, 0)
            })?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row?.view()?);
            }
            Ok(out)
        })
    }

    fn history(&self, id: String) -> BoxFuture<'_, StoreResult<Vec<HistoryEntry>>> {
        self.read(move |conn| history_of(conn, &id))
    }

    fn get_lease(&self, id: String) -> BoxFuture<'_, StoreResult<Option<LeaseView>>> {
        self.read(move |conn| {
            exec_cached(conn, "BEGIN")?;
            let out = match find_lease(conn, &id) {
                Ok(Some(l)) => lease_view(conn, l).map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            };
            exec_cached(conn, "COMMIT")?;
            out
        })
    }

    fn list_leases(
        &self,
        status: Option<LeaseStatus>,
        limit: u32,
    ) -> BoxFuture<'_, StoreResult<Vec<LeaseView>>> {
        self.read(move |conn| {
            exec_cached(conn, "BEGIN")?;
            let out = (|| {
                let rows: Vec<LeaseRow> = match status {
                    Some(s) => conn
                        .prepare_cached(&format!(
                            "SELECT {LEASE_COLS} FROM leases WHERE status = ?1 ORDER BY created_at DESC LIMIT ?2"
                        ))?
                        .query_map(params![s.as_str(), limit], lease_row)?
                        .collect::<Result<_, _>>()?,
                    None => conn
                        .prepare_cached(&format!("SELECT {LEASE_COLS} FROM leases ORDER BY created_at DESC LIMIT ?1"))?
                        .query_map(params![limit], lease_row)?
                        .collect::<Result<_, _>>()?,
                };
                rows.into_iter().map(|l| lease_view(conn, l)).collect::<StoreResult<Vec<_>>>()
            })();
            exec_cached(conn, "COMMIT")?;
            out
        })
    }

    fn active_lease_count(&self) -> BoxFuture<'_, StoreResult<u64>> {
        self.read(|conn| {
            let n: i64 = conn
                .prepare_cached("SELECT count(*) FROM leases WHERE status = 'active'")?
                .query_row([], |r| r.get(0))?;
            Ok(n.max(0) as u64)
        })
    }

    fn stock(&self) -> BoxFuture<'_, StoreResult<StockTable>> {
        self.read(|conn| {
            exec_cached(conn, "BEGIN")?;
            let out = (|| {
                let mut table = StockTable::new();
                let mut stmt =
                    conn.prepare_cached("SELECT type, state, status, n FROM status_counts")?;
                let rows = stmt.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })?;
                for row in rows {
                    let (t, s, status, n) = row?;
                    let counts = table.entry((t, s)).or_default();
                    let n = n.max(0) as u64;
                    match parse_status(&status)? {
                        DatasetStatus::Ready => counts.ready = n,
                        DatasetStatus::Generating => counts.generating = n,
                        DatasetStatus::Leased => counts.leased = n,
                        DatasetStatus::Quarantined => counts.quarantined = n,
                        DatasetStatus::Consumed => counts.consumed = n,
                        DatasetStatus::Failed => counts.failed = n,
                        DatasetStatus::Discarded => counts.discarded = n,
                        DatasetStatus::Composed => {}
                    }
                }
                let mut stmt = conn.prepare_cached(
                    "SELECT type, state, min_ready, max_ready FROM stock_settings",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, u32>(2)?,
                        r.get::<_, u32>(3)?,
                    ))
                })?;
                for row in rows {
                    let (t, s, min, max) = row?;
                    let counts = table.entry((t, s)).or_default();
                    counts.min_ready = Some(min);
                    counts.max_ready = Some(max);
                }
                Ok(table)
            })();
            exec_cached(conn, "COMMIT")?;
            out
        })
    }

    fn set_stock(
        &self,
        type_name: String,
        state: String,
        settings: StockSettings,
    ) -> BoxFuture<'_, StoreResult<()>> {
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO stock_settings (type, state, min_ready, max_ready) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (type, state) DO UPDATE SET min_ready = excluded.min_ready, max_ready = excluded.max_ready",
            )?
            .execute(params![type_name, state, settings.min_ready, settings.max_ready])?;
            Ok(())
        })
    }

    fn purge_consumed(&self, before_ms: i64, now_ms: i64) -> BoxFuture<'_, StoreResult<u64>> {
        self.write(move |conn| {
            let ids: Vec<String> = conn
                .prepare_cached(
                    "SELECT id FROM datasets WHERE status = 'consumed' AND updated_at < ?1 AND data != 'null' LIMIT 1000",
                )?
                .query_map([before_ms], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for id in &ids {
                conn.prepare_cached("UPDATE datasets SET data = 'null', updated_at = ?2 WHERE id = ?1")?
                    .execute(params![id, now_ms])?;
                conn.prepare_cached(
                    "INSERT INTO history (dataset_id, at, from_status, to_status, lease_id, holder, reason) \
                     VALUES (?1, ?2, 'consumed', 'consumed', NULL, 'pool', 'data erased after consumed_retention')",
                )?
                .execute(params![id, now_ms])?;
            }
            Ok(ids.len() as u64)
        })
    }

    fn begin_generation(
        &self,
        generation: NewGeneration,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Option<String>>> {
        self.write(move |conn| begin_generation_tx(conn, &generation, now_ms))
    }

    fn take_input(
        &self,
        pick: InputPick,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Option<Dataset>>> {
        self.write(move |conn| take_input_tx(conn, &pick, now_ms))
    }

    fn complete_generation(
        &self,
        id: String,
        generated: Generated,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Option<DatasetView>>> {
        self.write(move |conn| complete_generation_tx(conn, &id, &generated, now_ms))
    }

    fn fail_generation(
        &self,
        id: String,
        error: String,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        self.write(move |conn| fail_generation_tx(conn, &id, &error, now_ms))
    }

    fn fail_all_generating(&self, reason: String, now_ms: i64) -> BoxFuture<'_, StoreResult<u64>> {
        self.write(move |conn| {
            let ids: Vec<String> = conn
                .prepare_cached("SELECT id FROM datasets WHERE status = 'generating' ORDER BY seq")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut n = 0;
            for id in &ids {
                if fail_generation_tx(conn, id, &reason, now_ms)? {
                    n += 1;
                }
            }
            Ok(n)
        })
    }

    fn extend_leased(
        &self,
        extension: Extension,
        now_ms: i64,
    ) -> BoxFuture<'_, StoreResult<ExtendResult>> {
        self.write(move |conn| extend_leased_tx(conn, &extension, now_ms))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use serde_json::json;
    use stockroom_protocol::api::NewDataset;

    use super::{SqliteStore, WalPolicy, checkpoint_passive, finish_checkpoint, open_connection};
    use crate::store::Store;

    fn blob_rows(conn: &rusqlite::Connection, n: usize) {
        for _ in 0..n {
            conn.execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                .unwrap();
        }
    }

    #[test]
    fn the_writers_checkpoint_lets_the_wal_start_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let conn = open_connection(&path).unwrap();
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (x BLOB);")
            .unwrap();
        blob_rows(&conn, 50);

        // Not asked: nothing happens, the flag stays down.
        let restart = AtomicBool::new(false);
        finish_checkpoint(&conn, &restart);
        blob_rows(&conn, 1);
        let reader = open_connection(&path).unwrap();
        let (_, frames, _) = checkpoint_passive(&reader).unwrap();
        assert!(frames > 50, "the WAL keeps growing: {frames} frames");

        // A reader holding a snapshot in the middle of the WAL: not every
        // frame can be copied, so the request stays pending.
        reader
            .execute_batch("BEGIN; SELECT count(*) FROM t;")
            .unwrap();
        blob_rows(&conn, 5);
        restart.store(true, Ordering::Release);
        finish_checkpoint(&conn, &restart);
        assert!(restart.load(Ordering::Acquire), "retried after the reader");
        reader.execute_batch("COMMIT").unwrap();

        // Asked with no reader in the way: every frame is copied and the
        // next write transaction starts the WAL over.
        finish_checkpoint(&conn, &restart);
        assert!(!restart.load(Ordering::Acquire));
        blob_rows(&conn, 1);
        let (_, frames, _) = checkpoint_passive(&reader).unwrap();
        assert!(frames <= 3, "the WAL started over: {frames} frames");
        let n: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 57, "no row lost");
    }

    fn wal_len(path: &std::path::Path) -> u64 {
        std::fs::metadata(path.with_extension("db-wal"))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// 16 writers registering 4 KiB datasets without pause; returns the
    /// largest WAL file seen and checks that every dataset is there.
    async fn register_under_load(policy: WalPolicy) -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool.db");
        let store = Arc::new(SqliteStore::open_with(&path, policy).unwrap());
        let max = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = Vec::new();
        for t in 0..16 {
            let store = Arc::clone(&store);
            let max = Arc::clone(&max);
            let path = path.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..100 {
                    let d = NewDataset {
                        type_name: "blob".into(),
                        state: "big".into(),
                        attributes: Default::default(),
                        data: json!({ "pad": "x".repeat(4000), "t": t, "i": i }),
                        secret_fields: Vec::new(),
                        entities: Vec::new(),
                        reusable: false,
                    };
                    store.register(vec![d], "test".into(), 0).await.unwrap();
                    max.fetch_max(wal_len(&path), Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let stock = store.stock().await.unwrap();
        assert_eq!(stock[&("blob".into(), "big".into())].ready, 1600);
        max.load(Ordering::Relaxed)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_wal_stays_bounded_under_continuous_writes() {
        // Control: with checkpoints held off, the same writes grow the WAL
        // past 6 MiB (1 600 datasets of more than a page each).
        let unbounded = register_under_load(WalPolicy {
            checkpoint_every: Duration::from_secs(3600),
            restart_frames: 64,
        })
        .await;
        assert!(unbounded > 6 << 20, "control WAL only {unbounded} bytes");
        // Checkpoints every 5 ms, restart past 64 frames (256 KiB): the WAL
        // stays a fraction of that, whatever the scheduling.
        let bounded = register_under_load(WalPolicy {
            checkpoint_every: Duration::from_millis(5),
            restart_frames: 64,
        })
        .await;
        eprintln!("largest WAL: {bounded} bytes with checkpoints, {unbounded} without");
        assert!(
            bounded < unbounded / 2,
            "WAL reached {bounded} bytes with checkpoints, {unbounded} without"
        );
    }
}
