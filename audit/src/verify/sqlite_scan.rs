//! The SQLite store read for `audit verify`: the range is cut into chunks, and one
//! thread per core takes the next chunk, steps a rusqlite statement over it and
//! checks each row where SQLite holds it; the calling thread takes the results in
//! chunk order.
//!
//! sqlx hands every row from its worker thread to the caller through a channel, as
//! owned strings; for a million-row scan that hand-off and those allocations cost
//! more than the hashing. Here a row's text is borrowed from SQLite where the
//! statement holds it and checked on the spot: no allocation, no hand-off per row.
//! Each chunk is a read of its own; records appended meanwhile lie beyond `end`.
//!
//! Chunks are checked independently: each starts from the *stored* hash of the row
//! before it. If the chunk before holds no failure, its last record hashed to exactly
//! that stored hash, so a chunk sees what one sequential walk would see at that point;
//! if it does hold one, that failure comes first. Taking results in chunk order
//! therefore names the same first bad record as a sequential walk.
//!
//! Each chunk also gives its records' leaf hashes back; the calling thread hands them
//! to the tree check in chunk order, with the `audit_tree` rows they produce.
//!
//! rusqlite and sqlx share one `libsqlite3-sys`, so one SQLite library is linked.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension as _};

use super::tree::{leaf_hash, TreeCheck};
use super::{check_sealed, ChainChecker, Sealed, VerifyFailure, Walked};
use crate::error::AuditError;
use crate::tlog::tree::Hash;

/// Records per chunk: enough that a chunk's query and anchor cost nothing in
/// comparison, few enough that the threads share the work evenly.
#[cfg(not(test))]
const CHUNK: i64 = 16_384;
/// Small in tests, so that small logs cross chunk boundaries.
#[cfg(test)]
const CHUNK: i64 = 16;
/// Checking threads, at most.
const MAX_THREADS: usize = 8;
/// Records between looks at the progress counter and the stop flag.
const STRIDE: u64 = 1024;
/// Map this much of the file instead of copying pages through `read()`.
const MMAP_BYTES: i64 = 1 << 30;

/// One checked chunk: the checker where it stopped, the first failure in it and the
/// leaf hashes of the records before that failure (when the tree is checked).
type Checked = Result<(ChainChecker, Option<VerifyFailure>, Vec<Hash>), AuditError>;

/// The file behind a SQLite pool, when there is one to open a second time.
pub(super) fn file_of(pool: &sqlx::SqlitePool) -> Option<PathBuf> {
    let path = pool.connect_options().get_filename().to_path_buf();
    path.is_file().then_some(path)
}

/// Check records `c.expected()..=end` of the SQLite file at `path`, and the tree on
/// them when `tree` is given, counting checked records into `counter`. Returns the
/// checker, the first failure, if any, and the tree check.
pub(super) fn check_range(
    path: &Path,
    c: ChainChecker,
    end: i64,
    seals: &BTreeMap<i64, Sealed>,
    tree: Option<TreeCheck>,
    counter: &AtomicU64,
) -> Result<Walked, AuditError> {
    let start = c.expected();
    let chunks = (end - start + CHUNK) / CHUNK;
    if chunks <= 0 {
        return Ok((c, None, tree));
    }
    let tree = match tree {
        Some(t) => Some((t, open(path)?)),
        None => None,
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get().min(MAX_THREADS))
        .min(usize::try_from(chunks).unwrap_or(1));
    let range = Range {
        start,
        end,
        first: (c.expected, c.prev),
        leaves: tree.is_some(),
    };
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let (done_tx, done_rx) = channel();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let done = done_tx.clone();
            let (range, next, stop) = (&range, &next, &stop);
            s.spawn(move || check_chunks(path, range, seals, next, stop, counter, &done));
        }
        drop(done_tx);
        let result = in_order(c, &range, chunks, tree, &done_rx);
        // The threads still at work finish their chunk and take no other.
        stop.store(true, Ordering::Relaxed);
        result
    })
}

/// Take the checked chunks, which arrive in any order, in chunk order until the first
/// failure, merging them into `c` as one sequential walk would have left it, and
/// their leaves into the tree check (whose stored rows `tree`'s connection reads).
fn in_order(
    mut c: ChainChecker,
    range: &Range,
    chunks: i64,
    mut tree: Option<(TreeCheck, Connection)>,
    done: &Receiver<(i64, Checked)>,
) -> Result<Walked, AuditError> {
    let mut early = HashMap::new();
    let mut total = c.checked;
    for k in 0..chunks {
        let (part, failure, leaves) = loop {
            if let Some(r) = early.remove(&k) {
                break r;
            }
            // Chunks are taken in order and every taken one is answered, so this only
            // fails if a thread died.
            let (i, r) = done
                .recv()
                .map_err(|_| AuditError::Store("audit verify: a reader thread died".into()))?;
            early.insert(i, r);
        }?;
        total += part.checked;
        c = part;
        c.checked = total;
        // A chunk that ran out before its end lost its last records.
        let last = range.chunk(k).1;
        let failure = failure.or_else(|| {
            (c.expected() <= last && last < range.end).then(|| VerifyFailure {
                seq: c.expected(),
                reason: format!("record {} is missing: deleted", c.expected()),
            })
        });
        // The leaves come before the chunk's own failure: a tree failure among them
        // is the earlier one.
        let failure = match tree.as_mut() {
            Some((t, conn)) => {
                let rows = stored_rows(conn, t.rows_for(leaves.len() as u64))?;
                t.add(&leaves, &rows).err().or(failure)
            }
            None => failure,
        };
        if failure.is_some() {
            return Ok((c, failure, tree.map(|(t, _)| t)));
        }
    }
    Ok((c, None, tree.map(|(t, _)| t)))
}

/// The `audit_tree` rows in `range`, in index order.
fn stored_rows(
    conn: &Connection,
    range: std::ops::Range<u64>,
) -> Result<Vec<(i64, Vec<u8>)>, AuditError> {
    let err = |e: rusqlite::Error| AuditError::Store(format!("reading audit_tree: {e}"));
    let bound = |i: u64| i64::try_from(i).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare_cached(
            "SELECT idx, hash FROM audit_tree WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map([bound(range.start), bound(range.end)], |r| {
            Ok((r.get::<_, i64>(0)?, text(r.get_ref(1)).to_vec()))
        })
        .map_err(err)?;
    rows.collect::<Result<_, _>>().map_err(err)
}

/// The records to check and where the first of them is anchored.
struct Range {
    start: i64,
    end: i64,
    /// Expected seq and previous hash of the first record.
    first: (i64, [u8; 64]),
    /// Whether chunks give their records' leaf hashes back.
    leaves: bool,
}

impl Range {
    /// First and last seq of chunk `k`.
    fn chunk(&self, k: i64) -> (i64, i64) {
        let a = self.start + k * CHUNK;
        (a, (a + CHUNK - 1).min(self.end))
    }
}

/// Take chunks until none is left or the walk has stopped, sending each result with
/// its chunk number.
fn check_chunks(
    path: &Path,
    range: &Range,
    seals: &BTreeMap<i64, Sealed>,
    next: &AtomicU64,
    stop: &AtomicBool,
    counter: &AtomicU64,
    done: &Sender<(i64, Checked)>,
) {
    let conn = match open(path) {
        Ok(conn) => conn,
        Err(e) => {
            let k = i64::try_from(next.fetch_add(1, Ordering::Relaxed)).unwrap_or(i64::MAX);
            let _ = done.send((k, Err(e)));
            return;
        }
    };
    loop {
        let k = i64::try_from(next.fetch_add(1, Ordering::Relaxed)).unwrap_or(i64::MAX);
        let (a, b) = range.chunk(k);
        if a > range.end || stop.load(Ordering::Relaxed) {
            return;
        }
        let result = check_chunk(&conn, range, (a, b), seals, stop, counter);
        let failed = !matches!(result, Ok((_, None, _)));
        if done.send((k, result)).is_err() || failed {
            return;
        }
    }
}

/// Check records `a..=b`, from the stored hash of `a - 1` (or the range's anchor).
fn check_chunk(
    conn: &Connection,
    range: &Range,
    (a, b): (i64, i64),
    seals: &BTreeMap<i64, Sealed>,
    stop: &AtomicBool,
    counter: &AtomicU64,
) -> Checked {
    let err = |e: rusqlite::Error| AuditError::Store(format!("reading the audit log: {e}"));
    let mut c = if a == range.start {
        checker_at(range.first)
    } else {
        // A missing anchor makes this chunk fail at its start; the chunk before
        // reports the missing record, which comes first.
        let mut anchor = [b'0'; 64];
        let stored: Option<Vec<u8>> = conn
            .prepare_cached("SELECT hash FROM audit_log WHERE seq = ?1")
            .and_then(|mut s| {
                s.query_row([a - 1], |r| Ok(text(r.get_ref(0)).to_vec()))
                    .optional()
            })
            .map_err(err)?;
        if let Some(h) = stored.as_deref().and_then(|h| h.get(..64)) {
            anchor.copy_from_slice(h);
        }
        checker_at((a, anchor))
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, hash, record FROM audit_log WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq",
        )
        .map_err(err)?;
    let mut rows = stmt.query([a, b]).map_err(err)?;
    let mut unreported = 0;
    let mut leaves = Vec::new();
    while let Some(row) = rows.next().map_err(err)? {
        let seq = row.get::<_, i64>(0).map_err(err)?;
        let hash = text(row.get_ref(1));
        let record = text(row.get_ref(2));
        // The search index is checked apart, segment by segment (`verify/index.rs`).
        if let Err(f) = check_sealed(&mut c, seq, hash, record, None, seals) {
            return Ok((c, Some(f), leaves));
        }
        if range.leaves {
            leaves.push(leaf_hash(record));
        }
        unreported += 1;
        if unreported == STRIDE {
            counter.fetch_add(unreported, Ordering::Relaxed);
            unreported = 0;
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
    }
    counter.fetch_add(unreported, Ordering::Relaxed);
    Ok((c, None, leaves))
}

/// A checker for the record `expected` chaining onto `prev`.
fn checker_at((expected, prev): (i64, [u8; 64])) -> ChainChecker {
    ChainChecker {
        expected,
        prev,
        checked: 0,
        canonical: Default::default(),
    }
}

pub(super) fn open(path: &Path) -> Result<Connection, AuditError> {
    let err = |e: rusqlite::Error| AuditError::Store(format!("{}: {e}", path.display()));
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    conn.execute_batch(&format!("PRAGMA mmap_size = {MMAP_BYTES}"))
        .map_err(err)?;
    Ok(conn)
}

/// A column's bytes as stored. A value of another type (a tampered row) reads as no
/// bytes, which the checker then names as not canonical or not matching its hash.
fn text(v: rusqlite::Result<ValueRef<'_>>) -> &[u8] {
    match v {
        Ok(ValueRef::Text(t) | ValueRef::Blob(t)) => t,
        _ => &[],
    }
}
