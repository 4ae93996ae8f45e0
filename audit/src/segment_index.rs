//! The SQLite search index, built per sealed segment off the commit path.
//!
//! A group commit appends records with only their `seq`, `hash` and `record`. Once
//! `audit_index_segment.records` records lie past the last indexed segment, the
//! writer thread indexes them in one transaction after answering the batch: the
//! entries (time, operator, subject, case id of each record) sorted, under the
//! segment's first seq, so the insert appends to the end of one B-tree instead of
//! dirtying a random page of three per record. Search reads the index for indexed
//! segments and scans the records past them ([`search`]); `audit verify` checks
//! every indexed segment against its records (`verify/index.rs`).
//!
//! Measured with `audit_write_bench` (BENCHMARKS.md): indexes on the commit path cost
//! most of the writer's CPU once subjects are spread.

use std::path::Path;

use rusqlite::ToSql;

use super::multi_insert::insert_rows;

use super::batch::search_columns;
use super::chain::AuditEntry;
use super::error::AuditError;

/// The search columns the index holds, by their place in
/// [`crate::SEARCH_COLUMN_NAMES`]: time, operator, subject, case_id.
pub(crate) const INDEXED: [usize; 4] = [0, 2, 4, 6];

/// The indexed values of one record, in the order of [`INDEXED`].
pub(crate) type Keys = [Option<String>; 4];

/// The indexed values of `e`.
pub(crate) fn keys_of(e: &AuditEntry) -> Keys {
    let c = search_columns(e);
    INDEXED.map(|k| c[k].map(str::to_owned))
}

/// Records committed past the last indexed segment, as the writer saw them go by: a
/// segment is indexed from here when they cover it, without reading it back.
#[derive(Default)]
pub(crate) struct Unindexed {
    rows: Vec<(i64, Keys)>,
    /// The last seq of the next segment to index, as the last look found it: until
    /// the head reaches it there is nothing to index, and no need to ask the store.
    due: Option<i64>,
}

impl Unindexed {
    /// Records `seq..` of a committed batch.
    pub(crate) fn push(&mut self, first: i64, entries: &[AuditEntry]) {
        let contiguous = self.rows.last().is_none_or(|(s, _)| *s + 1 == first);
        if !contiguous {
            // Another process appended in between: those are read back when due.
            self.rows.clear();
        }
        self.rows
            .extend((first..).zip(entries).map(|(seq, e)| (seq, keys_of(e))));
    }

    /// Whether a segment may be complete once the head is `head` (unknown until
    /// [`index_sealed`] has looked).
    pub(crate) fn may_be_due(&self, head: i64) -> bool {
        self.due.is_none_or(|last| head >= last)
    }

    /// The keys of `first..=last`, if held.
    fn take(&mut self, first: i64, last: i64) -> Option<Vec<(i64, Keys)>> {
        let start = self.rows.iter().position(|(s, _)| *s == first)?;
        let end = start + usize::try_from(last - first).ok()?;
        let held = self.rows.get(end).is_some_and(|(s, _)| *s == last);
        if !held {
            return None;
        }
        let out: Vec<_> = self.rows.drain(..=end).skip(start).collect();
        Some(out)
    }
}

fn store_err(e: rusqlite::Error) -> AuditError {
    AuditError::Store(format!("search index: {e}"))
}

/// Index every complete segment not yet indexed in the state database at `path`:
/// what the writer does after its commits, for a store written by an older version or
/// by a writer that stopped before indexing. Returns the segments indexed.
pub fn index_sealed_segments(path: &Path) -> Result<usize, AuditError> {
    let mut conn = rusqlite::Connection::open(path).map_err(store_err)?;
    conn.set_prepared_statement_cache_capacity(super::multi_insert::STATEMENT_CACHE);
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(store_err)?;
    index_sealed(&mut conn, &mut Unindexed::default())
}

/// Index every complete segment past the last indexed one, each in its own
/// transaction, taking keys from `held` where it covers them.
pub(crate) fn index_sealed(
    conn: &mut rusqlite::Connection,
    held: &mut Unindexed,
) -> Result<usize, AuditError> {
    let size: i64 = conn
        .prepare_cached("SELECT records FROM audit_index_segment WHERE id = 1")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(store_err)?;
    let mut done = 0;
    held.due = None;
    loop {
        // Each bound on its own: SQLite answers MIN or MAX alone from the B-tree's
        // edge, but scans the table for both in one SELECT.
        let (indexed, lowest, head): (Option<i64>, Option<i64>, Option<i64>) = conn
            .prepare_cached(
                "SELECT (SELECT MAX(last_seq) FROM audit_segment), (SELECT MIN(seq) FROM audit_log), (SELECT MAX(seq) FROM audit_log)",
            )
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
            .map_err(store_err)?;
        let (Some(lowest), Some(head)) = (lowest, head) else {
            return Ok(done);
        };
        let first = indexed.map_or(lowest, |i| (i + 1).max(lowest));
        let last = first + size - 1;
        if head < last {
            held.due = Some(last);
            return Ok(done);
        }
        // Immediate: the bounds read above stay true until the segment is committed.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(store_err)?;
        let moved: Option<i64> = tx
            .prepare_cached("SELECT MAX(last_seq) FROM audit_segment")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(store_err)?;
        if moved != indexed {
            continue;
        }
        let keys = match held.take(first, last) {
            Some(k) => k,
            None => read_keys(&tx, first, last)?,
        };
        let mut entries: Vec<(usize, &str, i64)> = keys
            .iter()
            .flat_map(|(seq, k)| {
                INDEXED
                    .iter()
                    .zip(k)
                    .filter_map(move |(col, v)| Some((*col, v.as_deref()?, *seq)))
            })
            .collect();
        // In key order, the B-tree fills page after page.
        entries.sort_unstable();
        let entries: Vec<(i64, &str, i64)> = entries
            .into_iter()
            .map(|(col, value, seq)| (i64::try_from(col).unwrap_or(i64::MAX), value, seq))
            .collect();
        let rows: Vec<[&dyn ToSql; 4]> = entries
            .iter()
            .map(|(col, value, seq)| [&first as &dyn ToSql, col, value, seq])
            .collect();
        insert_rows(&tx, "INSERT INTO audit_index (seg, col, value, seq)", &rows)
            .map_err(store_err)?;
        tx.prepare_cached("INSERT INTO audit_segment (first_seq, last_seq) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute([first, last]))
            .map_err(store_err)?;
        tx.commit().map_err(store_err)?;
        done += 1;
    }
}

/// The keys of records `first..=last`, read from their records (a segment the
/// writer did not see go by).
fn read_keys(
    conn: &rusqlite::Connection,
    first: i64,
    last: i64,
) -> Result<Vec<(i64, Keys)>, AuditError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, record FROM audit_log WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq",
        )
        .map_err(store_err)?;
    let mut rows = stmt.query([first, last]).map_err(store_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(store_err)? {
        let seq: i64 = r.get(0).map_err(store_err)?;
        let record: String = r.get(1).map_err(store_err)?;
        // A record that is no audit entry has no entries; `audit verify` names it.
        let keys = serde_json::from_str::<AuditEntry>(&record)
            .map(|e| keys_of(&e))
            .unwrap_or_default();
        out.push((seq, keys));
    }
    Ok(out)
}
