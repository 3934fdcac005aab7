//! The embedded SQLite backend (`store = "sqlite://PATH"`), the default.
//!
//! - One writer thread owns the only write connection; every semantic
//!   operation is a closure sent to it. SQLite serialises writes anyway, and a
//!   single owner avoids `SQLITE_BUSY` storms. The writer drains whatever is
//!   queued, runs each operation in its own `SAVEPOINT` inside one
//!   `BEGIN IMMEDIATE` transaction, commits once (group commit), and only then
//!   answers the callers: an answer always describes committed state.
//! - The operations themselves are the shared ones ([`crate::store::ops`])
//!   over this backend's primitives ([`tx::SqliteTx`]). Those never wait, so
//!   the writer runs each operation's future to completion in one poll
//!   ([`run_now`]); it never blocks on anything but SQLite.
//! - Reads run on a small pool of reader threads with their own connections
//!   (WAL lets them read while the writer writes).
//! - WAL, `synchronous = NORMAL` (a crash loses no committed transaction that
//!   reached the WAL; a power cut may lose the last few), `busy_timeout` 5 s.
//! - Checkpoints run off the writer's path (see [`conn::checkpointer_loop`]):
//!   the writer never copies the WAL into the database file or waits for an
//!   `fsync` inside a commit, except for a short catch-up when the WAL is
//!   due to restart.
//! - Migrations are embedded and applied at open, tracked by `PRAGMA user_version`.

mod conn;
mod tx;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};

use rusqlite::Connection;
use tokio::sync::oneshot;

use self::conn::{
    CheckpointAsk, WAL_SIZE_LIMIT, WalPolicy, checkpointer_loop, exec_cached, finish_checkpoint,
    migrate, open_connection,
};
use self::tx::SqliteTx;
use super::{BoxFuture, StoreError, StoreResult};

const READERS: usize = 2;
const MAX_BATCH: usize = 256;

/// Runs a future whose every await is ready at once (the SQLite primitives
/// do their work synchronously) with one poll. `Pending` would mean an
/// operation waits on something other than SQLite: a bug, reported as such.
fn run_now<T>(fut: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => Err(StoreError::bug(
            "a SQLite store operation waited on something other than SQLite",
        )),
    }
}

/// A copy of a commit's error for each caller of the batch (the driver's
/// error is not `Clone`; its code, and so its classification, is kept).
fn copy_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(format!("commit failed: {other}")),
        ),
    }
}

/// Answers one caller once the batch's `COMMIT` is done (with its error, if any).
type Reply = Box<dyn FnOnce(Option<&rusqlite::Error>) + Send>;
type WriteJob = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// The SQLite store. Dropping it stops its threads once queued work is done.
pub struct SqliteStore {
    writer: mpsc::Sender<WriteJob>,
    readers: mpsc::Sender<ReadJob>,
    /// Dropped with the store: the checkpointer stops when it disconnects.
    /// (Tests also send it asks for a checkpoint.)
    #[cfg_attr(not(test), expect(dead_code, reason = "held for its drop"))]
    checkpointer: mpsc::Sender<CheckpointAsk>,
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
        let commit = exec_cached(&conn, "COMMIT");
        if commit.is_err() {
            let _ = exec_cached(&conn, "ROLLBACK");
        }
        for reply in replies {
            reply(commit.as_ref().err());
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
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Connect(e.into()))?;
        }
        let mut conn = open_connection(path)?;
        migrate(&mut conn)?;
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {WAL_SIZE_LIMIT};"
        ))?;
        let restart = Arc::new(AtomicBool::new(false));
        let checkpoint_conn = open_connection(path)?;
        let (checkpointer, asks) = mpsc::channel::<CheckpointAsk>();
        let flag = Arc::clone(&restart);
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || checkpointer_loop(checkpoint_conn, policy, flag, asks))
            .map_err(|e| StoreError::Connect(e.into()))?;
        let (writer, write_rx) = mpsc::channel::<WriteJob>();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(conn, write_rx, restart))
            .map_err(|e| StoreError::Connect(e.into()))?;
        let (readers, read_rx) = mpsc::channel::<ReadJob>();
        let read_rx = Arc::new(Mutex::new(read_rx));
        for i in 0..READERS {
            let conn = open_connection(path)?;
            let rx = Arc::clone(&read_rx);
            std::thread::Builder::new()
                .name(format!("store-reader-{i}"))
                .spawn(move || reader_loop(conn, rx))
                .map_err(|e| StoreError::Connect(e.into()))?;
        }
        Ok(SqliteStore {
            writer,
            readers,
            checkpointer,
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
                    None => result,
                    Some(e) => Err(StoreError::from(copy_error(e))),
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
    /// Runs one checkpoint now and waits for it (tests drive the WAL with it).
    #[cfg(test)]
    async fn checkpoint_now(&self) {
        let (ask, done) = oneshot::channel();
        self.checkpointer.send(ask).expect("checkpointer alive");
        done.await.expect("checkpoint done");
    }
}

/// Runs a shared operation (an expression over the transaction `$tx`) on the
/// writer, inside its group commit.
macro_rules! write_op {
    ($self:ident, |$tx:ident| $body:expr) => {
        $self.write(move |conn| {
            let $tx = &SqliteTx { conn };
            run_now($body)
        })
    };
}

/// Runs a shared read on a reader, in one read transaction (one snapshot).
macro_rules! read_op {
    ($self:ident, |$tx:ident| $body:expr) => {
        $self.read(move |conn| {
            exec_cached(conn, "BEGIN")?;
            let $tx = &SqliteTx { conn };
            let out = run_now($body);
            exec_cached(conn, "COMMIT")?;
            out
        })
    };
}

crate::store::ops::store_over_ops!(SqliteStore, write_op, read_op, {});

#[cfg(test)]
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use serde_json::json;
    use stockroom_protocol::api::NewDataset;

    use super::SqliteStore;
    use super::conn::{WalPolicy, checkpoint_passive, finish_checkpoint, open_connection};
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

    /// Registers 1 600 datasets of 4 KiB one after the other (each its own
    /// commit), asking for a checkpoint after every `every` of them when
    /// `Some`; returns the largest WAL file seen and checks every dataset is
    /// there. Sequential writes and explicit checkpoints: the same frames are
    /// written whatever the machine's load, nothing depends on a timer.
    async fn register_with_checkpoints(every: Option<usize>) -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool.db");
        // The timer never fires during the test: only asked checkpoints run.
        let policy = WalPolicy {
            checkpoint_every: Duration::from_secs(3600),
            restart_frames: 64,
        };
        let store = SqliteStore::open_with(&path, policy).unwrap();
        let mut max = 0;
        for i in 0..1600 {
            let d = NewDataset {
                type_name: "blob".into(),
                state: "big".into(),
                attributes: Default::default(),
                data: json!({ "pad": "x".repeat(4000), "i": i }),
                secret_fields: Vec::new(),
                entities: Vec::new(),
                reusable: false,
            };
            store.register(vec![d], "test".into(), 0).await.unwrap();
            max = max.max(wal_len(&path));
            if every.is_some_and(|n| (i + 1) % n == 0) {
                store.checkpoint_now().await;
            }
        }
        let stock = store.stock().await.unwrap();
        assert_eq!(stock[&("blob".into(), "big".into())].ready, 1600);
        max
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_stays_bounded_under_continuous_writes() {
        // Control: without checkpoints the writes grow the WAL past 6 MiB
        // (1 600 datasets of more than a page each).
        let unbounded = register_with_checkpoints(None).await;
        assert!(unbounded > 6 << 20, "control WAL only {unbounded} bytes");
        // A checkpoint every 16 datasets (past 64 frames, so the writer is
        // asked to restart the WAL): the WAL never holds more than about two
        // rounds of frames, well under 2 MiB. Broken checkpoints or restarts
        // let it grow like the control.
        let bounded = register_with_checkpoints(Some(16)).await;
        eprintln!("largest WAL: {bounded} bytes with checkpoints, {unbounded} without");
        assert!(
            bounded < 2 << 20,
            "WAL reached {bounded} bytes with checkpoints, {unbounded} without"
        );
    }
}
