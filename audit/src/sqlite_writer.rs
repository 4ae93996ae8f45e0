//! The SQLite half of the audit writer: one OS thread owning one rusqlite connection.
//!
//! A group commit is several statements (begin, read the head, insert, commit). Run
//! through sqlx, each statement is a round trip to sqlx's worker thread, and on a
//! busy core those hand-offs cost more than the inserts. Here a whole batch crosses
//! to the thread once and its result comes back once; the statements are prepared
//! once and reused from rusqlite's cache.
//!
//! Copying the WAL back into the database file (a checkpoint) happens on a second
//! thread with its own connection. Left to SQLite, it runs inside whichever commit
//! crosses the WAL threshold, and every request of that batch waits a few
//! milliseconds more: most of the latency tail under load.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, OptionalExtension as _, ToSql, TransactionBehavior};
use tokio::sync::oneshot;

use super::batch::{chain, state_of, AuditSettings, ChainState, Prepared};
use super::batch::{ARCHIVED, HEAD, SEALED};
use super::chain::AuditEntry;
use super::error::AuditError;
use super::frontier::behind;
use super::multi_insert::{insert_rows, STATEMENT_CACHE};
use super::segment_index::{index_sealed, index_step, Unindexed, STEP_ENTRIES};
use super::tlog::tree::Hash;
use crate::signing::Signer;

impl From<rusqlite::Error> for AuditError {
    fn from(e: rusqlite::Error) -> Self {
        AuditError::Store(e.to_string())
    }
}

type Reply<T> = oneshot::Sender<Result<T, AuditError>>;

enum Job {
    /// Read the head, the last archive and the last seal.
    ReadState(Reply<ChainState>),
    /// Chain `entries` onto the head (`cached`, unless another process moved it)
    /// and commit them, sealing when due.
    Append {
        cached: ChainState,
        entries: Vec<AuditEntry>,
        time_due: bool,
        reply: Reply<(Prepared, ChainState)>,
    },
}

/// Handle to the writer thread; the thread ends when the handle is dropped.
pub(super) struct SqliteWriter {
    jobs: std_mpsc::Sender<Job>,
    /// Told once both threads have ended and closed their connections.
    stopped: oneshot::Receiver<()>,
}

impl SqliteWriter {
    /// Open the state database at `path` (its tables already exist) and start the
    /// thread, which seals checkpoints with `signer`.
    pub(super) fn start(
        path: &Path,
        signer: Arc<Signer>,
        settings: AuditSettings,
    ) -> Result<Self, AuditError> {
        let conn = open(path)?;
        // Only a safety net: the checkpointer below normally keeps the WAL far smaller.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_SAFETY_NET_PAGES)?;
        let checkpointer = open(path)?;
        let (committed, commits) = std_mpsc::sync_channel(1);
        let committed = Committed {
            signal: committed,
            pending: Arc::new(AtomicBool::new(false)),
        };
        let pending = Arc::clone(&committed.pending);
        let (jobs, rx) = std_mpsc::channel();
        let (stopped_tx, stopped) = oneshot::channel();
        let spawn = |name: &str| std::thread::Builder::new().name(name.into());
        let checkpoints = spawn("tongban-audit-ckpt")
            .spawn(move || checkpoint_wal(&checkpointer, &commits, &pending))
            .map_err(|e| AuditError::Store(format!("cannot start the WAL checkpointer: {e}")))?;
        spawn("tongban-audit")
            .spawn(move || {
                run(conn, &rx, &committed, &signer, &settings);
                // The checkpointer copies what is left, closes its connection, ends.
                drop(committed);
                let _ = checkpoints.join();
                let _ = stopped_tx.send(());
            })
            .map_err(|e| AuditError::Store(format!("cannot start the audit writer: {e}")))?;
        Ok(Self { jobs, stopped })
    }

    /// Stop both threads once the jobs handed in are done, and wait until their
    /// connections are closed (the database may be copied or removed next).
    pub(super) async fn stop(self) {
        drop(self.jobs);
        let _ = self.stopped.await;
    }

    pub(super) async fn read_state(&self) -> Result<ChainState, AuditError> {
        self.ask(Job::ReadState).await
    }

    pub(super) async fn append(
        &self,
        cached: ChainState,
        entries: Vec<AuditEntry>,
        time_due: bool,
    ) -> Result<(Prepared, ChainState), AuditError> {
        self.ask(|reply| Job::Append {
            cached,
            entries,
            time_due,
            reply,
        })
        .await
    }

    async fn ask<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, AuditError> {
        let (reply, rx) = oneshot::channel();
        self.jobs.send(job(reply)).map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }
}

/// WAL, and `synchronous=FULL` so a commit is on disk when it returns. Statement
/// journals (a multi-row statement's undo pages) stay in memory rather than in a
/// temporary file.
fn open(path: &Path) -> Result<rusqlite::Connection, AuditError> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(AuditError::Store(format!(
            "{}: cannot switch to WAL (journal mode is {mode})",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// WAL pages after which a commit checkpoints by itself, should the checkpointer
/// fall behind (32 MiB at 4 KiB pages).
const WAL_SAFETY_NET_PAGES: i64 = 8192;

/// How long the checkpointer lets commits accumulate: pages rewritten by several
/// commits (the last, partly filled page of the table and of each index) are copied
/// once. Under steady load the WAL file still grows to the safety-net size: only a
/// writer rewinds the WAL, and only once every frame is copied, which the writer's
/// own checkpoint there ensures (a short one by then: most frames are copied).
const CHECKPOINT_AFTER: Duration = Duration::from_millis(250);

/// The writer's side of the checkpointer's wake-up: one signal per checkpoint, not
/// one per commit. Waking the checkpointer on every commit only to wait again cost
/// two context switches per batch on the core the requests run on.
struct Committed {
    signal: std_mpsc::SyncSender<()>,
    /// Set by the first commit after a checkpoint began; cleared by the checkpointer
    /// just before its next checkpoint, which covers every commit up to then.
    pending: Arc<AtomicBool>,
}

impl Committed {
    fn tell(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            // Full means a signal is already waiting; either way a checkpoint runs.
            let _ = self.signal.try_send(());
        }
    }
}

/// Copy committed WAL frames into the database file some time after commits, until
/// the writer is gone (then once more, at once). PASSIVE never blocks the writer or
/// readers.
fn checkpoint_wal(
    conn: &rusqlite::Connection,
    commits: &std_mpsc::Receiver<()>,
    pending: &AtomicBool,
) {
    while commits.recv().is_ok() {
        // Let commits accumulate for CHECKPOINT_AFTER; they do not signal meanwhile.
        // The writer hanging up ends the wait at once.
        let stopping = matches!(
            commits.recv_timeout(CHECKPOINT_AFTER),
            Err(std_mpsc::RecvTimeoutError::Disconnected)
        );
        // Before copying: a commit from here on signals again.
        pending.store(false, Ordering::Release);
        checkpoint_once(conn);
        if stopping {
            return;
        }
    }
}

fn checkpoint_once(conn: &rusqlite::Connection) {
    let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    });
    match result {
        Ok((wal, copied)) => tracing::trace!(wal, copied, "audit WAL checkpoint"),
        Err(e) => {
            tracing::warn!(error = %e, "audit WAL checkpoint failed; the writer's own checkpoints take over")
        }
    }
}

fn run(
    mut conn: rusqlite::Connection,
    jobs: &std_mpsc::Receiver<Job>,
    committed: &Committed,
    signer: &Signer,
    settings: &AuditSettings,
) {
    let mut unindexed = Unindexed::default();
    // Segments left unindexed by an older version or a stop before indexing.
    index_segments(&mut conn, &mut unindexed);
    while let Ok(job) = jobs.recv() {
        match job {
            Job::ReadState(reply) => {
                let _ = reply.send(read_state(&conn));
            }
            Job::Append {
                cached,
                entries,
                time_due,
                reply,
            } => {
                let result = append(&mut conn, &cached, &entries, time_due, signer, settings);
                let (first, last) = match &result {
                    Ok((p, _)) => (p.rows.first().map(|r| r.seq), p.rows.last().map(|r| r.seq)),
                    Err(_) => (None, None),
                };
                if result.is_ok() {
                    committed.tell();
                }
                let _ = reply.send(result);
                // After the answer: the batch's requests do not wait for the index,
                // and the next batch waits for one step of it at most.
                if let (Some(first), Some(last)) = (first, last) {
                    unindexed.push(first, &entries);
                    // Most commits complete no segment: then not even the bounds
                    // are read.
                    if unindexed.may_be_due(last) {
                        index_one_step(&mut conn, &mut unindexed);
                    }
                }
            }
        }
    }
}

/// Index the segments that are complete. A failure only delays indexing: search scans
/// what is not indexed, and the next commit tries again.
fn index_segments(conn: &mut rusqlite::Connection, unindexed: &mut Unindexed) {
    if let Err(e) = index_sealed(conn, unindexed) {
        tracing::warn!(error = %e, "audit search index not built; search scans the records meanwhile");
    }
}

/// [`index_segments`], one step of at most [`STEP_ENTRIES`] entries.
fn index_one_step(conn: &mut rusqlite::Connection, unindexed: &mut Unindexed) {
    if let Err(e) = index_step(conn, unindexed, STEP_ENTRIES) {
        tracing::warn!(error = %e, "audit search index not built; search scans the records meanwhile");
    }
}

/// The `(seq, hash)` row `sql` selects, if any.
fn seq_and_hash(
    conn: &rusqlite::Connection,
    sql: &str,
) -> Result<Option<(i64, String)>, AuditError> {
    Ok(conn
        .prepare_cached(sql)?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// The stored tree hashes at `indexes` that exist.
fn read_tree(conn: &rusqlite::Connection, indexes: &[u64]) -> Result<Vec<(u64, Hash)>, AuditError> {
    let mut select = conn.prepare_cached("SELECT hash FROM audit_tree WHERE idx = ?1")?;
    let mut out = Vec::with_capacity(indexes.len());
    for &idx in indexes {
        let hash: Option<Vec<u8>> = select
            .query_row([i64::try_from(idx).unwrap_or(i64::MAX)], |r| r.get(0))
            .optional()?;
        if let Some(h) = hash.and_then(|h| <[u8; 32]>::try_from(h).ok()) {
            out.push((idx, Hash(h)));
        }
    }
    Ok(out)
}

fn read_state(conn: &rusqlite::Connection) -> Result<ChainState, AuditError> {
    let head = seq_and_hash(conn, HEAD)?;
    let archived = seq_and_hash(conn, ARCHIVED)?;
    let sealed: Option<i64> = conn.prepare_cached(SEALED)?.query_row([], |r| r.get(0))?;
    Ok(state_of(head, archived, sealed))
}

/// Only the record: its search entries are written when its segment is complete
/// ([`super::segment_index`]).
const INSERT_ROW: &str = "INSERT INTO audit_log (seq, hash, record)";
const INSERT_TREE: &str = "INSERT INTO audit_tree (idx, hash)";
const INSERT_CHECKPOINT: &str =
    "INSERT INTO audit_checkpoint (seq, hash, checkpoint, format) VALUES (?1, ?2, ?3, ?4)";

/// One transaction: take the write lock, read the head, chain, insert, commit.
fn append(
    conn: &mut rusqlite::Connection,
    cached: &ChainState,
    entries: &[AuditEntry],
    time_due: bool,
    signer: &Signer,
    settings: &AuditSettings,
) -> Result<(Prepared, ChainState), AuditError> {
    // IMMEDIATE takes the write lock now, so the head read below stays the head
    // until commit. Another process (a `tongban policy` command) may have appended
    // since the last batch: then re-read the whole state.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let head = seq_and_hash(&tx, HEAD)?;
    let moved = head.is_some_and(|(seq, hash)| !cached.is_head(seq, &hash));
    let mut current = if moved {
        read_state(&tx)?
    } else {
        cached.clone()
    };
    let lacking = current.tree.lacking(current.seq);
    if !lacking.is_empty() {
        let read = read_tree(&tx, &lacking)?;
        if !current.tree.hold(current.seq, read) {
            return Err(behind(current.seq));
        }
    }
    let p = chain(&mut current, entries, time_due, signer, settings)?;
    let rows: Vec<[&dyn ToSql; 3]> = p
        .rows
        .iter()
        .map(|r| [&r.seq as &dyn ToSql, &r.hash, &r.record])
        .collect();
    insert_rows(&tx, INSERT_ROW, &rows)?;
    let tree: Vec<(i64, &[u8])> = p
        .tree
        .stored
        .iter()
        .map(|(idx, hash)| (i64::try_from(*idx).unwrap_or(i64::MAX), &hash.0[..]))
        .collect();
    let tree_rows: Vec<[&dyn ToSql; 2]> = tree
        .iter()
        .map(|(idx, hash)| [idx as &dyn ToSql, hash])
        .collect();
    insert_rows(&tx, INSERT_TREE, &tree_rows)?;
    if let Some(c) = &p.checkpoint {
        tx.prepare_cached(INSERT_CHECKPOINT)?.execute(params![
            c.seq,
            c.hash,
            c.text(),
            c.format()
        ])?;
    }
    tx.commit()?;
    let state = current.after(&p);
    Ok((p, state))
}
