//! The SQLite search index, built per sealed segment off the commit path.
//!
//! A group commit appends records with only their `seq`, `hash` and `record`. Once
//! `audit_index_segment.records` records lie past the last indexed segment, the
//! writer thread indexes them after answering each batch, [`STEP_ENTRIES`] entries a
//! step: the entries (time, operator, subject, case id of each record) sorted, under
//! the segment's first seq, so the inserts append to the end of one B-tree instead of
//! dirtying a random page of three per record. The last step lists the segment.
//! Search reads the index for listed segments and scans the records past them
//! ([`search`]); `audit verify` checks every listed segment against its records
//! (`verify/index.rs`).
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
    /// The segment being indexed, when a step left some of its entries for the next.
    current: Option<Segment>,
}

/// A complete segment's entries in key order, and how far they are written.
struct Segment {
    first: i64,
    last: i64,
    /// `MAX(last_seq)` of the listed segments when this one was begun: if another
    /// process lists one meanwhile, this one is dropped and looked at again.
    listed: Option<i64>,
    entries: Vec<(i64, String, i64)>,
    written: usize,
}

/// Most index entries one step writes. A whole segment in one transaction held the
/// writer thread (and the next batch's requests) for ~12 ms every 4,096 records: most
/// of the open-loop p99 at a quarter of nginx's rate (docs/performance.md). A step
/// after each commit is a sixteenth of that pause, and a segment is still indexed
/// long before the next one is complete.
pub(crate) const STEP_ENTRIES: usize = 1024;

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
        self.current.is_some() || self.due.is_none_or(|last| head >= last)
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

/// Index every complete segment past the last indexed one, taking keys from `held`
/// where it covers them. Returns the segments indexed.
pub(crate) fn index_sealed(
    conn: &mut rusqlite::Connection,
    held: &mut Unindexed,
) -> Result<usize, AuditError> {
    let mut done = 0;
    loop {
        match index_step(conn, held, usize::MAX)? {
            Step::Idle => return Ok(done),
            Step::Listed => done += 1,
            Step::Wrote => {}
        }
    }
}

/// What one [`index_step`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// No complete segment waits.
    Idle,
    /// Wrote entries of a segment; more remain.
    Wrote,
    /// Wrote a segment's last entries and listed it as indexed.
    Listed,
}

/// Write at most `budget` entries of the next complete segment not yet indexed, in
/// one transaction; the one that writes its last entries also lists it in
/// `audit_segment`, from which moment search reads it through the index. Until then
/// search scans its records, and `audit verify` checks only listed segments.
pub(crate) fn index_step(
    conn: &mut rusqlite::Connection,
    held: &mut Unindexed,
    budget: usize,
) -> Result<Step, AuditError> {
    let mut segment = match held.current.take() {
        Some(s) => s,
        None => match next_segment(conn, held)? {
            Some(s) => s,
            None => return Ok(Step::Idle),
        },
    };
    // Immediate: what is read below stays true until the entries are committed.
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(store_err)?;
    let listed: Option<i64> = tx
        .prepare_cached("SELECT MAX(last_seq) FROM audit_segment")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(store_err)?;
    if listed != segment.listed {
        // Another process indexed meanwhile; look again next time.
        return Ok(Step::Wrote);
    }
    let end = segment
        .entries
        .len()
        .min(segment.written.saturating_add(budget));
    let rows: Vec<[&dyn ToSql; 4]> = segment.entries[segment.written..end]
        .iter()
        .map(|(col, value, seq)| [&segment.first as &dyn ToSql, col, value, seq])
        .collect();
    // OR IGNORE: a step that ran before a crash, or another process indexing the
    // same segment, wrote some of these already; they are the same entries.
    insert_rows(
        &tx,
        "INSERT OR IGNORE INTO audit_index (seg, col, value, seq)",
        &rows,
    )
    .map_err(store_err)?;
    let finished = end == segment.entries.len();
    if finished {
        tx.prepare_cached("INSERT INTO audit_segment (first_seq, last_seq) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute([segment.first, segment.last]))
            .map_err(store_err)?;
    }
    tx.commit().map_err(store_err)?;
    if finished {
        return Ok(Step::Listed);
    }
    segment.written = end;
    held.current = Some(segment);
    Ok(Step::Wrote)
}

/// The next complete segment past the listed ones, its entries in key order; `None`
/// (and `held.due` set) while the head has not reached its end.
fn next_segment(
    conn: &rusqlite::Connection,
    held: &mut Unindexed,
) -> Result<Option<Segment>, AuditError> {
    let size: i64 = conn
        .prepare_cached("SELECT records FROM audit_index_segment WHERE id = 1")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(store_err)?;
    held.due = None;
    // Each bound on its own: SQLite answers MIN or MAX alone from the B-tree's
    // edge, but scans the table for both in one SELECT.
    let (listed, lowest, head): (Option<i64>, Option<i64>, Option<i64>) = conn
        .prepare_cached(
            "SELECT (SELECT MAX(last_seq) FROM audit_segment), (SELECT MIN(seq) FROM audit_log), (SELECT MAX(seq) FROM audit_log)",
        )
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
        .map_err(store_err)?;
    let (Some(lowest), Some(head)) = (lowest, head) else {
        return Ok(None);
    };
    let first = listed.map_or(lowest, |i| (i + 1).max(lowest));
    let last = first + size - 1;
    if head < last {
        held.due = Some(last);
        return Ok(None);
    }
    let keys = match held.take(first, last) {
        Some(k) => k,
        None => read_keys(conn, first, last)?,
    };
    let mut entries: Vec<(i64, String, i64)> = keys
        .into_iter()
        .flat_map(|(seq, k)| {
            INDEXED.iter().zip(k).filter_map(move |(col, v)| {
                Some((i64::try_from(*col).unwrap_or(i64::MAX), v?, seq))
            })
        })
        .collect();
    // In key order, the B-tree fills page after page.
    entries.sort_unstable();
    Ok(Some(Segment {
        first,
        last,
        listed,
        entries,
        written: 0,
    }))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::chained_store::chained_store;
    use crate::AuditStore;

    /// A store of `n` chained records in segments of 8, its file.
    async fn store(dir: &Path, n: i64) -> std::path::PathBuf {
        let entries: Vec<AuditEntry> = (1..=n)
            .map(|seq| AuditEntry {
                time: format!("2026-12-06T01:{:02}:00.000000Z", seq % 60),
                subject: Some(format!("S{}", seq % 5)),
                operator: (seq % 2 == 0).then(|| format!("clerk-{}", seq % 3)),
                ..AuditEntry::default()
            })
            .collect();
        let store = chained_store(dir, &entries).await;
        let AuditStore::Sqlite(pool) = &store else {
            unreachable!()
        };
        sqlx::query("UPDATE audit_index_segment SET records = 8")
            .execute(pool)
            .await
            .unwrap();
        pool.close().await;
        dir.join("state.db")
    }

    fn listed(conn: &rusqlite::Connection) -> Vec<(i64, i64)> {
        conn.prepare("SELECT first_seq, last_seq FROM audit_segment ORDER BY first_seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn entries(conn: &rusqlite::Connection) -> Vec<(i64, i64, String, i64)> {
        conn.prepare("SELECT seg, col, value, seq FROM audit_index ORDER BY seg, col, value, seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Written a few entries at a time, across a restart that forgets how far it got,
    /// a segment ends up with exactly the entries one transaction would have written,
    /// and is listed only once they are all there.
    #[tokio::test]
    async fn a_segment_indexed_in_steps_matches_one_indexed_at_once() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let at_once = store(a.path(), 20).await;
        let mut conn = rusqlite::Connection::open(&at_once).unwrap();
        assert_eq!(
            index_sealed(&mut conn, &mut Unindexed::default()).unwrap(),
            2
        );
        let want = entries(&conn);
        // 8 records, each with a time and a subject and half with an operator: 20
        // entries per segment.
        assert_eq!(want.len(), 40);

        let stepped = store(b.path(), 20).await;
        let mut conn = rusqlite::Connection::open(&stepped).unwrap();
        let mut held = Unindexed::default();
        for _ in 0..3 {
            assert_eq!(index_step(&mut conn, &mut held, 6).unwrap(), Step::Wrote);
            assert!(listed(&conn).is_empty(), "listed before its last entries");
        }
        // A restart: the next writer holds nothing and starts the segment over.
        let mut held = Unindexed::default();
        let mut steps = Vec::new();
        loop {
            match index_step(&mut conn, &mut held, 6).unwrap() {
                Step::Idle => break,
                s => steps.push(s),
            }
        }
        assert_eq!(steps.iter().filter(|s| **s == Step::Listed).count(), 2);
        assert_eq!(listed(&conn), [(1, 8), (9, 16)]);
        assert_eq!(entries(&conn), want);
        // Records 17..=20 are no complete segment: due once the head reaches 24.
        assert!(!held.may_be_due(23));
        assert!(held.may_be_due(24));
    }
}
