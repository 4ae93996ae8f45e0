//! Verification: the chain record by record, then the signed checkpoints against it.
//!
//! The chain alone catches an edited, deleted, inserted or reordered record; the
//! checkpoints catch what the chain cannot — a tail cut off, or a chain rewritten with
//! recomputed hashes — up to the last checkpoint. Records after the last checkpoint
//! are reported as unsealed. Every stored row's search columns, which search and the
//! reports read and the hash does not cover, are checked against its record
//! ([`columns`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::TryStreamExt as _;
use ring::digest::{Context, SHA256};
use serde_json::Value;
use sqlx::SqliteConnection;

use super::archive::read_archive;
use super::chain::GENESIS;
use super::checkpoint::Checkpoint;
use super::error::AuditError;
use super::store::AuditStore;
use canonical::Canonical;
use columns::{Columns, Stored};

mod canonical;
mod columns;
mod failure;
mod sqlite_scan;

pub use failure::VerifyFailure;

/// Result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Records checked before stopping.
    pub records: u64,
    /// Last good sequence number and hash.
    pub head: (i64, String),
    /// The first break, if any.
    pub failure: Option<VerifyFailure>,
    /// Signed checkpoints checked.
    pub checkpoints: usize,
    /// Highest sequence number sealed by a valid checkpoint.
    pub sealed: i64,
    /// Records read from archive files.
    pub archived: u64,
}

/// What to verify and against which keys.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// First sequence number (default: the start of the chain).
    pub from: Option<i64>,
    /// Last sequence number (default: the end).
    pub to: Option<i64>,
    /// JWKS of the keys trusted to sign checkpoints.
    pub jwks: Value,
    /// Checkpoints kept outside the store.
    pub external: Vec<Checkpoint>,
    /// Where relative archive file names are found.
    pub archive_dir: Option<std::path::PathBuf>,
}

/// Checks consecutive records: `seq` follows, the record is canonical JSON naming the
/// previous hash and its own seq, and its stored hash is SHA-256 over the previous
/// hash and its bytes.
#[derive(Debug, Clone)]
pub struct ChainChecker {
    expected: i64,
    prev: [u8; 64],
    checked: u64,
    canonical: Canonical,
}

impl ChainChecker {
    /// Start at `first_seq`, whose `prev_hash` must be `anchor`.
    pub fn new(first_seq: i64, anchor: &str) -> Self {
        let mut prev = [b'0'; 64];
        if anchor.len() == 64 {
            prev.copy_from_slice(anchor.as_bytes());
        }
        Self {
            expected: first_seq,
            prev,
            checked: 0,
            canonical: Canonical::default(),
        }
    }

    /// The next sequence number expected.
    pub fn expected(&self) -> i64 {
        self.expected
    }

    /// Records checked so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// The last good hash (the anchor before any record).
    pub fn prev_hash(&self) -> String {
        String::from_utf8_lossy(&self.prev).into_owned()
    }

    /// Check one record.
    pub fn check(&mut self, seq: i64, hash: &str, record: &[u8]) -> Result<(), VerifyFailure> {
        self.check_bytes(seq, hash.as_bytes(), record, None)
    }

    /// [`ChainChecker::check`] on the stored hash's bytes, and of a stored row (not an
    /// archived or exported record) its search `columns` too.
    fn check_bytes(
        &mut self,
        seq: i64,
        hash: &[u8],
        record: &[u8],
        columns: Option<&Columns<'_>>,
    ) -> Result<(), VerifyFailure> {
        let fail = |seq: i64, reason: String| VerifyFailure { seq, reason };
        if seq != self.expected {
            return Err(if seq > self.expected {
                fail(
                    self.expected,
                    format!(
                        "record {} is missing (the next stored record is {seq}): deleted",
                        self.expected
                    ),
                )
            } else {
                fail(
                    seq,
                    format!(
                        "record {seq} appears again after {}: inserted or reordered",
                        self.expected - 1
                    ),
                )
            });
        }
        // Hashing the stored bytes as they are is sound only for canonical ones.
        let head = self.canonical.check(record).map_err(|e| {
            fail(
                seq,
                format!(
                    "record is not RFC 8785 canonical JSON ({} at byte {}): edited",
                    e.what, e.at
                ),
            )
        })?;
        let (Some(rec_seq), Some(rec_prev)) = (head.seq, head.prev_hash) else {
            return Err(fail(
                seq,
                "record is not a chained audit record (no seq/prev_hash)".into(),
            ));
        };
        if rec_seq != seq {
            return Err(fail(
                seq,
                format!("record says seq {rec_seq}, stored as {seq}: reordered"),
            ));
        }
        if rec_prev != self.prev {
            return Err(fail(
                seq,
                "prev_hash does not match the previous record's hash: a record before it was deleted, inserted or reordered".into(),
            ));
        }
        let mut ctx = Context::new(&SHA256);
        ctx.update(&self.prev);
        ctx.update(record);
        let mut hex_buf = [0u8; 64];
        hex_into(ctx.finish().as_ref(), &mut hex_buf);
        if hash != hex_buf {
            return Err(fail(
                seq,
                "record content does not match its hash: edited".into(),
            ));
        }
        // After the hash: an edited record is named as edited, not as mis-indexed.
        if let Some(stored) = columns {
            columns::check(seq, record, &head, stored)?;
        }
        self.prev = hex_buf;
        self.expected = seq + 1;
        self.checked += 1;
        Ok(())
    }
}

/// Every stored row with its search columns, as [`super::store::indexed_row`] reads it.
const INDEXED_ROWS: &str = "SELECT seq, hash, record, time, consumer, operator, dataset, subject, matter, case_id, decision FROM audit_log ORDER BY seq";

/// Columns read as owned text, borrowed for the check.
fn stored_columns(columns: &[Option<String>; 8]) -> Columns<'_> {
    std::array::from_fn(|k| match &columns[k] {
        Some(t) => Stored::Text(t.as_bytes()),
        None => Stored::Null,
    })
}

fn hex_into(bytes: &[u8], out: &mut [u8; 64]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate().take(32) {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
}

/// Walk the whole chain of a SQLite state database, search columns included, and
/// report the first break (no checkpoints; see [`verify`] for the full check).
pub async fn verify_chain(conn: &mut SqliteConnection) -> Result<VerifyReport, AuditError> {
    let mut rows = sqlx::query(INDEXED_ROWS).fetch(&mut *conn);
    let mut checker = ChainChecker::new(1, GENESIS);
    let mut failure = None;
    while let Some(row) = rows.try_next().await? {
        let r = super::store::indexed_row(&row)?;
        let columns = stored_columns(&r.columns);
        if let Err(f) = checker.check_bytes(
            r.row.seq,
            r.row.hash.as_bytes(),
            r.row.record.as_bytes(),
            Some(&columns),
        ) {
            failure = Some(f);
            break;
        }
    }
    Ok(VerifyReport {
        records: checker.checked(),
        head: (checker.expected() - 1, checker.prev_hash()),
        failure,
        ..VerifyReport::default()
    })
}

/// Verify the chain (archives, then the store) and every checkpoint; `progress` is
/// called with the number of records checked so far, now and then.
///
/// `tongban audit archive` may move records out of the store while this runs: the
/// walk then finds them neither in the archives it listed nor in the store. So a
/// failure is only reported once the list of archives is the same as when the walk
/// began; otherwise the chain is verified again against the new list.
pub async fn verify(
    store: &AuditStore,
    opts: &VerifyOptions,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, AuditError> {
    const ATTEMPTS: usize = 3;
    let mut attempt = 1;
    loop {
        let archives = store.archives().await?;
        let report = verify_once(store, opts, &archives, &mut progress).await?;
        if report.failure.is_none() || attempt == ATTEMPTS || store.archives().await? == archives {
            return Ok(report);
        }
        tracing::info!(
            attempt,
            "records were archived while verifying; verifying again"
        );
        attempt += 1;
    }
}

/// One walk, over `archives` as listed at its start, then the store.
async fn verify_once(
    store: &AuditStore,
    opts: &VerifyOptions,
    archives: &[super::store::ArchiveEntry],
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, AuditError> {
    let lo = opts.from.unwrap_or(1).max(1);
    let hi = opts.to.unwrap_or(i64::MAX);
    let mut failures: Vec<VerifyFailure> = Vec::new();
    let seals = seals(store, opts, lo, hi, &mut failures).await?;
    let bounds = store.bounds().await?;

    // Where the walk starts, and the hash it is anchored on.
    let mut checker: Option<ChainChecker> = None;
    let mut report = VerifyReport::default();
    for (i, a) in archives
        .iter()
        .enumerate()
        .filter(|(_, a)| a.to_seq >= lo && a.from_seq <= hi)
    {
        let anchor = if i == 0 {
            GENESIS.to_owned()
        } else {
            archives[i - 1].last_hash.clone()
        };
        let c = checker.get_or_insert_with(|| ChainChecker::new(a.from_seq, &anchor));
        let path = match &opts.archive_dir {
            Some(dir) => dir.join(&a.file),
            None => a.file.clone().into(),
        };
        match read_archive(&path, &a.sha256) {
            Ok(rows) => {
                for r in rows {
                    let r = match r {
                        Ok(r) => r,
                        Err(e) => {
                            failures.push(VerifyFailure {
                                seq: c.expected(),
                                reason: format!("archive {e}"),
                            });
                            break;
                        }
                    };
                    if r.seq > hi {
                        break;
                    }
                    // Archived records have left the table: no columns to check.
                    if let Err(f) = check_sealed(
                        c,
                        r.seq,
                        r.hash.as_bytes(),
                        r.record.as_bytes(),
                        None,
                        &seals,
                    ) {
                        failures.push(f);
                        break;
                    }
                    report.archived += 1;
                }
            }
            Err(e) => failures.push(VerifyFailure {
                seq: a.from_seq,
                reason: format!("archive {}: {e}", path.display()),
            }),
        }
        if !failures.is_empty() {
            break;
        }
    }
    if failures.is_empty() {
        if let Some((first, _)) = bounds {
            let start = lo.max(first);
            let mut c = match checker.take() {
                Some(c) => c,
                None if start == 1 => ChainChecker::new(1, GENESIS),
                None => match anchor_of(store, archives, start).await? {
                    Some(anchor) => ChainChecker::new(start, &anchor),
                    None => {
                        failures.push(VerifyFailure {
                            seq: lo.max(1),
                            reason: format!("records {}..{} are missing: deleted from the start of the log, and no archive holds them", lo.max(1), first - 1),
                        });
                        ChainChecker::new(start, GENESIS)
                    }
                },
            };
            if failures.is_empty() {
                let end = hi.min(bounds.map(|(_, last)| last).unwrap_or(hi));
                let (walked, failure) =
                    walk(store, c, end, &seals, &mut progress, report.archived).await?;
                failures.extend(failure);
                c = walked;
            }
            checker = Some(c);
        }
    }
    let checker = checker.unwrap_or_else(|| ChainChecker::new(lo, GENESIS));
    let last = checker.expected() - 1;
    // A checkpoint beyond the last record seals records that are gone.
    let beyond = if last < hi {
        seals.range(last + 1..=hi).next()
    } else {
        None
    };
    if let Some((&seq, seal)) = beyond {
        if failures.is_empty() {
            failures.push(VerifyFailure {
                seq: last + 1,
                reason: format!(
                    "the log ends at seq {last}, but a checkpoint signed by {} at {} seals seq {seq}: records {}..{seq} were truncated",
                    seal.node, seal.time, last + 1
                ),
            });
        }
    }
    report.records = checker.checked();
    report.head = (last, checker.prev_hash());
    report.checkpoints = seals.len();
    report.sealed = seals
        .range(..=last)
        .next_back()
        .map(|(s, _)| *s)
        .unwrap_or(0);
    report.failure = failures.into_iter().min_by_key(|f| f.seq);
    progress(report.records);
    Ok(report)
}

/// Below this many records one sequential walk; above, [`PARTS`] at once.
const PARALLEL_FROM: i64 = 100_000;
/// Ranges read and checked at once, each on its own pooled connection.
const PARTS: i64 = 4;
/// How often the progress callback hears of the walk.
const TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// Check records `c.expected()..=end` of the store: a SQLite file through
/// [`sqlite_scan`], anything else with [`walk_parts`].
async fn walk(
    store: &AuditStore,
    c: ChainChecker,
    end: i64,
    seals: &BTreeMap<i64, Checkpoint>,
    progress: &mut impl FnMut(u64),
    base: u64,
) -> Result<(ChainChecker, Option<VerifyFailure>), AuditError> {
    match store {
        AuditStore::Sqlite(pool) => match sqlite_scan::file_of(pool) {
            Some(path) => walk_sqlite(path, c, end, seals, progress, base).await,
            // An in-memory database is only reachable through its own pool.
            None => walk_parts(store, c, end, 1, seals, progress, base).await,
        },
        AuditStore::Postgres(_) => {
            let parts = if end - c.expected() + 1 >= PARALLEL_FROM {
                PARTS
            } else {
                1
            };
            walk_parts(store, c, end, parts, seals, progress, base).await
        }
    }
}

/// [`sqlite_scan::check_range`] on a blocking thread, reporting progress meanwhile.
async fn walk_sqlite(
    path: std::path::PathBuf,
    c: ChainChecker,
    end: i64,
    seals: &BTreeMap<i64, Checkpoint>,
    progress: &mut impl FnMut(u64),
    base: u64,
) -> Result<(ChainChecker, Option<VerifyFailure>), AuditError> {
    let seals = Arc::new(seals.clone());
    let counter = Arc::new(AtomicU64::new(0));
    let mut task = tokio::task::spawn_blocking({
        let (seals, counter) = (Arc::clone(&seals), Arc::clone(&counter));
        move || sqlite_scan::check_range(&path, c, end, &seals, &counter)
    });
    let mut tick = tokio::time::interval(TICK);
    let result = loop {
        tokio::select! {
            r = &mut task => break r,
            _ = tick.tick() => progress(base + counter.load(Ordering::Relaxed)),
        }
    };
    result.map_err(|e| AuditError::Store(format!("verify task: {e}")))?
}

/// Check records `c.expected()..=end` of the store, cut into `parts` ranges read and
/// checked at once; part k starts from the stored hash of the
/// record before it, which part k-1 proves (its last record must hash to exactly that),
/// so the first failure found is the one a single sequential walk would find.
async fn walk_parts(
    store: &AuditStore,
    c: ChainChecker,
    end: i64,
    parts: i64,
    seals: &BTreeMap<i64, Checkpoint>,
    progress: &mut impl FnMut(u64),
    base: u64,
) -> Result<(ChainChecker, Option<VerifyFailure>), AuditError> {
    let start = c.expected();
    let size = ((end - start + 1).max(1) + parts - 1) / parts;
    let seals = Arc::new(seals.clone());
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let mut checker = Some(c);
    for k in 0..parts {
        let (a, b) = (start + k * size, (start + (k + 1) * size - 1).min(end));
        if a > end {
            break;
        }
        let part = match checker.take() {
            Some(first) => first,
            // A missing anchor makes this part fail at its start; the part before
            // reports the missing record, which comes first.
            None => ChainChecker::new(a, &store.hash_of(a - 1).await?.unwrap_or_default()),
        };
        let (store, seals, counter) = (store.clone(), Arc::clone(&seals), Arc::clone(&counter));
        tasks.push((
            b,
            tokio::spawn(async move { walk_part(&store, part, b, &seals, &counter).await }),
        ));
    }
    let mut tick = tokio::time::interval(TICK);
    let mut results = Vec::new();
    for (b, mut task) in tasks {
        let result = loop {
            tokio::select! {
                r = &mut task => break r,
                _ = tick.tick() => progress(base + counter.load(Ordering::Relaxed)),
            }
        };
        let (part, failure) =
            result.map_err(|e| AuditError::Store(format!("verify task: {e}")))??;
        // A part that ran out before its end lost its last records.
        let failure = failure.or_else(|| {
            (part.expected() <= b && b < end).then(|| VerifyFailure {
                seq: part.expected(),
                reason: format!("record {} is missing: deleted", part.expected()),
            })
        });
        let stop = failure.is_some();
        results.push((part, failure));
        if stop {
            break;
        }
    }
    let checked: u64 = results.iter().map(|(p, _)| p.checked()).sum();
    let (mut last, failure) = results
        .pop()
        .unwrap_or_else(|| (ChainChecker::new(start, GENESIS), None));
    last.checked = checked;
    Ok((last, failure))
}

async fn walk_part(
    store: &AuditStore,
    mut c: ChainChecker,
    end: i64,
    seals: &BTreeMap<i64, Checkpoint>,
    counter: &AtomicU64,
) -> Result<(ChainChecker, Option<VerifyFailure>), AuditError> {
    let mut rows = store.indexed_rows(c.expected(), end);
    while let Some(r) = rows.try_next().await? {
        let columns = stored_columns(&r.columns);
        let (seq, hash, record) = (r.row.seq, r.row.hash.as_bytes(), r.row.record.as_bytes());
        if let Err(f) = check_sealed(&mut c, seq, hash, record, Some(&columns), seals) {
            return Ok((c, Some(f)));
        }
        if c.checked().is_multiple_of(4096) {
            counter.fetch_add(4096, Ordering::Relaxed);
        }
    }
    Ok((c, None))
}

/// The valid checkpoints in range, by seq, from the store and the external copies.
/// A bad signature or two disagreeing seals are failures at their seq.
async fn seals(
    store: &AuditStore,
    opts: &VerifyOptions,
    lo: i64,
    hi: i64,
    failures: &mut Vec<VerifyFailure>,
) -> Result<BTreeMap<i64, Checkpoint>, AuditError> {
    let mut out: BTreeMap<i64, Checkpoint> = BTreeMap::new();
    let stored = store.checkpoints(lo, hi).await?;
    let external = opts
        .external
        .iter()
        .filter(|c| c.seq >= lo && c.seq <= hi)
        .cloned();
    for c in stored.into_iter().chain(external) {
        if let Err(e) = c.verify(&opts.jwks) {
            failures.push(VerifyFailure {
                seq: c.seq,
                reason: format!("the checkpoint sealing seq {} does not verify: {e}", c.seq),
            });
            continue;
        }
        match out.get(&c.seq) {
            Some(have) if have.hash != c.hash => failures.push(VerifyFailure {
                seq: c.seq,
                reason: format!(
                    "two valid checkpoints seal seq {} with different hashes",
                    c.seq
                ),
            }),
            Some(_) => {}
            None => {
                out.insert(c.seq, c);
            }
        }
    }
    Ok(out)
}

/// Check a record (and a stored row's search columns) and, when a checkpoint seals
/// it, its hash against the seal.
fn check_sealed(
    c: &mut ChainChecker,
    seq: i64,
    hash: &[u8],
    record: &[u8],
    columns: Option<&Columns<'_>>,
    seals: &BTreeMap<i64, Checkpoint>,
) -> Result<(), VerifyFailure> {
    c.check_bytes(seq, hash, record, columns)?;
    if let Some(seal) = seals.get(&seq) {
        if seal.hash.as_bytes() != hash {
            let previous = seals.range(..seq).next_back().map(|(s, _)| *s).unwrap_or(0);
            return Err(VerifyFailure {
                seq: previous + 1,
                reason: format!(
                    "record {} does not match the checkpoint signed by {} at {}: records {}..{} were rewritten (hashes recomputed) after sealing",
                    seq, seal.node, seal.time, previous + 1, seq
                ),
            });
        }
    }
    Ok(())
}

/// The hash record `start` must chain onto: the stored hash of `start - 1`, or the
/// last hash of the archive ending there.
async fn anchor_of(
    store: &AuditStore,
    archives: &[super::store::ArchiveEntry],
    start: i64,
) -> Result<Option<String>, AuditError> {
    if let Some(a) = archives.iter().find(|a| a.to_seq == start - 1) {
        return Ok(Some(a.last_hash.clone()));
    }
    store.hash_of(start - 1).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Database;
    use crate::{seal_entry, AuditEntry};

    /// A store of `n` chained records.
    async fn store(dir: &std::path::Path, n: i64) -> (AuditStore, sqlx::SqlitePool) {
        let db = dir.join("state.db");
        let store = AuditStore::open(&Database::Sqlite(db.clone()))
            .await
            .unwrap();
        let AuditStore::Sqlite(pool) = &store else {
            unreachable!()
        };
        let mut tx = pool.begin().await.unwrap();
        let mut prev = GENESIS.to_owned();
        for seq in 1..=n {
            // Every other record without an operator: NULL columns are checked too.
            let e = AuditEntry {
                time: format!("2026-11-28T01:{:02}:00.000000Z", seq % 60),
                request_id: format!("r{seq}"),
                subject: Some(format!("S{seq}")),
                operator: (seq % 2 == 0).then(|| format!("clerk-{}", seq % 3)),
                decision: crate::Decision::Allow,
                ..AuditEntry::default()
            };
            let (record, hash) = seal_entry(seq, &prev, &e).unwrap();
            let mut q = sqlx::query("INSERT INTO audit_log (seq, hash, record, time, consumer, operator, dataset, subject, matter, case_id, decision) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)")
                .bind(seq)
                .bind(&hash)
                .bind(record);
            for c in crate::search_columns(&e) {
                q = q.bind(c);
            }
            q.execute(&mut *tx).await.unwrap();
            prev = hash;
        }
        tx.commit().await.unwrap();
        let pool = pool.clone();
        (store, pool)
    }

    /// How a walk reads the store.
    #[derive(Debug, Clone, Copy)]
    enum Reader {
        /// The sqlx stream cut into this many parts (the PostgreSQL way).
        Parts(i64),
        /// The rusqlite scan of the file.
        Scan,
    }

    async fn walk_with(store: &AuditStore, end: i64, how: Reader) -> (i64, u64, Option<i64>) {
        let none = BTreeMap::new();
        let c = ChainChecker::new(1, GENESIS);
        let (c, f) = match how {
            Reader::Parts(parts) => walk_parts(store, c, end, parts, &none, &mut |_| {}, 0).await,
            Reader::Scan => walk(store, c, end, &none, &mut |_| {}, 0).await,
        }
        .unwrap();
        (c.expected(), c.checked(), f.map(|f| f.seq))
    }

    /// Apply `sql` to a fresh store of `n` records in `dir`.
    async fn tampered(dir: &std::path::Path, n: i64, sql: &str) -> AuditStore {
        std::fs::create_dir(dir).unwrap();
        let (store, pool) = store(dir, n).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&pool)
            .await
            .unwrap();
        store
    }

    #[tokio::test]
    async fn every_reader_finds_the_failure_a_sequential_walk_finds() {
        let dir = tempfile::tempdir().unwrap();
        let (intact, _) = store(dir.path(), 40).await;
        for how in [Reader::Parts(4), Reader::Scan] {
            assert_eq!(walk_with(&intact, 40, how).await, (41, 40, None), "{how:?}");
        }
        // Parts are 1-10, 11-20, 21-30, 31-40, the scan's chunks (in tests) 1-16, 17-32,
        // 33-41: tamper at and around the boundaries.
        let cases = [
            ("DELETE FROM audit_log WHERE seq = 16", Some(16)),
            ("DELETE FROM audit_log WHERE seq = 17", Some(17)),
            ("DELETE FROM audit_log WHERE seq >= 17 AND seq <= 32", Some(17)),
            ("UPDATE audit_log SET seq = -1 WHERE seq = 16; UPDATE audit_log SET seq = 16 WHERE seq = 17; UPDATE audit_log SET seq = 17 WHERE seq = -1", Some(16)),
            ("UPDATE audit_log SET hash = 'x' WHERE seq = 32", Some(32)),
            ("DELETE FROM audit_log WHERE seq = 10", Some(10)),
            ("DELETE FROM audit_log WHERE seq = 11", Some(11)),
            ("UPDATE audit_log SET record = replace(record, '\"r25\"', '\"x25\"') WHERE seq = 25", Some(25)),
            ("UPDATE audit_log SET seq = -1 WHERE seq = 20; UPDATE audit_log SET seq = 20 WHERE seq = 21; UPDATE audit_log SET seq = 21 WHERE seq = -1", Some(20)),
            ("INSERT INTO audit_log (seq, hash, record) SELECT 41, hash, record FROM audit_log WHERE seq = 3", Some(41)),
            // The end of the log is the checkpoints' business.
            ("DELETE FROM audit_log WHERE seq = 40", None),
        ];
        for (i, (sql, want)) in cases.into_iter().enumerate() {
            let store = tampered(&dir.path().join(i.to_string()), 40, sql).await;
            for how in [Reader::Parts(1), Reader::Parts(4), Reader::Scan] {
                let (_, _, got) = walk_with(&store, 41, how).await;
                assert_eq!(got, want, "{how:?}: {sql}");
            }
        }
    }

    #[tokio::test]
    async fn the_scan_counts_every_record_and_stops_at_the_first_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let (intact, _) = store(dir.path(), 1300).await;
        assert_eq!(
            walk_with(&intact, 1300, Reader::Scan).await,
            (1301, 1300, None)
        );
        // The last record of a chunk, the first of the next, one inside, the very last.
        for seq in [512, 513, 700, 1300] {
            let sql = format!("UPDATE audit_log SET record = replace(record, '\"r{seq}\"', '\"x{seq}\"') WHERE seq = {seq}");
            let store = tampered(&dir.path().join(seq.to_string()), 1300, &sql).await;
            let checked = u64::try_from(seq - 1).unwrap();
            assert_eq!(
                walk_with(&store, 1300, Reader::Scan).await,
                (seq, checked, Some(seq))
            );
        }
    }

    /// A record with a matching hash that is not canonical JSON was not written by the
    /// gateway (here: the unsealed last record re-spelled, its hash recomputed).
    #[tokio::test]
    async fn a_record_that_is_not_canonical_fails_even_with_a_matching_hash() {
        let dir = tempfile::tempdir().unwrap();
        let respell = [
            // Whitespace.
            ("{", "{ "),
            // A member twice: readers disagree on which one counts.
            ("\"status\":0,", "\"status\":0,\"status\":200,"),
            // An escape the writer never uses.
            ("\"r40\"", "\"\\u0072\u{34}0\""),
            ("\"status\":0", "\"status\":0.0"),
        ];
        for (i, (from, to)) in respell.into_iter().enumerate() {
            let sub = dir.path().join(i.to_string());
            std::fs::create_dir(&sub).unwrap();
            let (store, pool) = store(&sub, 40).await;
            let (prev, record): (String, String) = sqlx::query_as(
                "SELECT (SELECT hash FROM audit_log WHERE seq = 39), record FROM audit_log WHERE seq = 40",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            let forged = record.replacen(from, to, 1);
            assert_ne!(forged, record, "{from}");
            sqlx::query("UPDATE audit_log SET record = ?1, hash = ?2 WHERE seq = 40")
                .bind(&forged)
                .bind(crate::chain_hash(&prev, forged.as_bytes()))
                .execute(&pool)
                .await
                .unwrap();
            for how in [Reader::Parts(1), Reader::Scan] {
                assert_eq!(
                    walk_with(&store, 40, how).await,
                    (40, 39, Some(40)),
                    "{how:?}: {forged}"
                );
            }
            let mut c = ChainChecker::new(1, GENESIS);
            let rows: Vec<(i64, String, String)> =
                sqlx::query_as("SELECT seq, hash, record FROM audit_log ORDER BY seq")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            let failure = rows
                .iter()
                .find_map(|(seq, hash, record)| c.check(*seq, hash, record.as_bytes()).err())
                .unwrap();
            assert!(failure.reason.contains("canonical"), "{failure:?}");
        }
    }

    /// The search columns are outside the hash: every reader checks each row's against
    /// its record and names the record and the column.
    #[tokio::test]
    async fn every_reader_names_a_search_column_that_disagrees_with_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("UPDATE audit_log SET subject = 'S99' WHERE seq = 17", 17, "column subject says \"S99\" but the record says \"S17\""),
            ("UPDATE audit_log SET operator = NULL WHERE seq = 32", 32, "column operator is NULL but the record says \"clerk-2\""),
            ("UPDATE audit_log SET operator = 'clerk-0' WHERE seq = 33", 33, "column operator says \"clerk-0\" but the record has none"),
            ("UPDATE audit_log SET decision = 'deny' WHERE seq = 5", 5, "column decision says \"deny\" but the record says \"allow\""),
            ("UPDATE audit_log SET time = '2026-01-01T00:00:00.000000Z' WHERE seq = 40", 40, "column time says"),
            ("UPDATE audit_log SET case_id = x'41' WHERE seq = 1", 1, "column case_id holds a blob"),
            // A record edited and its column with it: named as edited.
            ("UPDATE audit_log SET subject = 'S99', record = replace(record, '\"S20\"', '\"S99\"') WHERE seq = 20", 20, "edited"),
        ];
        for (i, (sql, seq, want)) in cases.into_iter().enumerate() {
            let store = tampered(&dir.path().join(i.to_string()), 40, sql).await;
            for how in [Reader::Parts(1), Reader::Parts(4), Reader::Scan] {
                // The sqlx reader decodes text only: a blob is a store error there.
                if sql.contains("x'41'") && matches!(how, Reader::Parts(_)) {
                    continue;
                }
                let (expected, checked, got) = walk_with(&store, 40, how).await;
                assert_eq!((expected, got), (seq, Some(seq)), "{how:?}: {sql}");
                assert_eq!(checked, u64::try_from(seq - 1).unwrap(), "{how:?}: {sql}");
            }
            let report = verify(&store, &VerifyOptions::default(), |_| {})
                .await
                .unwrap();
            let f = report.failure.unwrap();
            assert_eq!(f.seq, seq, "{sql}");
            assert!(f.reason.contains(want), "{sql}: {}", f.reason);
            let AuditStore::Sqlite(pool) = &store else {
                unreachable!()
            };
            let mut conn = pool.acquire().await.unwrap();
            if !sql.contains("x'41'") {
                let f = verify_chain(&mut conn).await.unwrap().failure.unwrap();
                assert!(f.reason.contains(want), "{sql}: {}", f.reason);
            }
        }
    }

    #[tokio::test]
    async fn the_scan_names_a_record_of_the_wrong_type() {
        let dir = tempfile::tempdir().unwrap();
        let store = tampered(
            &dir.path().join("t"),
            20,
            "UPDATE audit_log SET record = 12 WHERE seq = 12",
        )
        .await;
        assert_eq!(
            walk_with(&store, 20, Reader::Scan).await,
            (12, 11, Some(12))
        );
    }
}

/// Property tests: whatever an export or archive holds (any seq, hash and bytes, or
/// well-sealed records at any seq), the chain check refuses or accepts, never panics.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;
    use crate::{seal_entry, AuditEntry};

    #[derive(Debug, Clone)]
    enum Step {
        /// The next record, sealed right.
        Sealed,
        /// Anything.
        Raw(i64, String, Vec<u8>),
    }

    fn seq() -> impl Strategy<Value = i64> {
        prop_oneof![any::<i64>(), Just(i64::MAX), Just(i64::MIN), -3i64..3]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            Just(Step::Sealed),
            (
                seq(),
                "[0-9a-f]{0,64}",
                proptest::collection::vec(any::<u8>(), 0..80)
            )
                .prop_map(|(s, h, r)| Step::Raw(s, h, r)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_records_are_checked_without_panic(
            first in seq(),
            anchor in prop_oneof![Just(GENESIS.to_owned()), "[0-9a-f]{0,70}"],
            steps in proptest::collection::vec(step(), 1..5),
        ) {
            let mut checker = ChainChecker::new(first, &anchor);
            for step in steps {
                let (seq, hash, record) = match step {
                    Step::Sealed => {
                        let (record, hash) = seal_entry(
                            checker.expected(),
                            &checker.prev_hash(),
                            &AuditEntry::default(),
                        )
                        .unwrap();
                        (checker.expected(), hash, record.into_bytes())
                    }
                    Step::Raw(seq, hash, record) => (seq, hash, record),
                };
                let _ = checker.check(seq, &hash, &record);
            }
        }
    }
}
