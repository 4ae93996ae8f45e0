//! Verification: the chain record by record, the Merkle tree recomputed from the
//! records, then the signed checkpoints against both.
//!
//! The chain alone catches an edited, deleted, inserted or reordered record; the
//! checkpoints catch what the chain cannot — a tail cut off, or a chain rewritten with
//! recomputed hashes — up to the last checkpoint: a signed note's root must be the
//! recomputed tree's at its size ([`tree`]), a JWS checkpoint's hash (stores from
//! before notes) the chain's. Every stored `audit_tree` hash, from which proofs are
//! served, must be the recomputed one. Records after the last checkpoint are reported
//! as unsealed. What search and the reports read besides the records, which the hash
//! does not cover, is checked against them too: on SQLite the search index of every
//! indexed segment ([`index`]), on PostgreSQL every stored row's search columns
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
use super::checkpoint::{Seal, StoredCheckpoint};
use super::error::AuditError;
use super::store::AuditStore;
use super::tlog::checkpoint::SignedCheckpoint;
use super::tlog::note::NoteError;
use canonical::Canonical;
use columns::{Columns, Stored};
use tree::TreeCheck;

mod canonical;
mod columns;
mod failure;
mod index;
mod sqlite_scan;
mod tree;

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
    /// JWS checkpoints checked (written before checkpoints became signed notes).
    pub checkpoints: usize,
    /// Signed notes (tree checkpoints) whose signature checked.
    pub notes: usize,
    /// Highest sequence number sealed: by a JWS checkpoint whose hash the chain met,
    /// or by a signed note whose root the recomputed tree met.
    pub sealed: i64,
    /// Records read from archive files.
    pub archived: u64,
    /// The Merkle tree recomputed from the records; `None` when the walk started
    /// where no stored tree frontier anchors it.
    pub tree: Option<TreeReport>,
}

/// What the tree check covered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TreeReport {
    /// Leaves recomputed from the records.
    pub leaves: u64,
    /// `audit_tree` rows found equal to the recomputed hashes.
    pub rows: u64,
    /// Largest tree size whose signed note's root the recomputed root met.
    pub sealed: u64,
    /// When the stored tree stops short of the records (not yet caught up by the
    /// writer), the number of records it covers.
    pub stored_to: Option<u64>,
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
    pub external: Vec<StoredCheckpoint>,
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
const INDEXED_ROWS: &str = "SELECT seq, hash, record FROM audit_log ORDER BY seq";

/// Columns read as owned text, borrowed for the check.
fn stored_columns(columns: &Option<[Option<String>; 8]>) -> Option<Columns<'_>> {
    let columns = columns.as_ref()?;
    Some(std::array::from_fn(|k| match &columns[k] {
        Some(t) => Stored::Text(t.as_bytes()),
        None => Stored::Null,
    }))
}

fn hex_into(bytes: &[u8], out: &mut [u8; 64]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate().take(32) {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
}

/// Walk the whole chain of a SQLite state database and report the first break (no checkpoints; see [`verify`] for the full check).
pub async fn verify_chain(conn: &mut SqliteConnection) -> Result<VerifyReport, AuditError> {
    let mut rows = sqlx::query(INDEXED_ROWS).fetch(&mut *conn);
    let mut checker = ChainChecker::new(1, GENESIS);
    let mut failure = None;
    while let Some(row) = rows.try_next().await? {
        let r = super::store::indexed_row(&row)?;
        if let Err(f) = checker.check_bytes(
            r.row.seq,
            r.row.hash.as_bytes(),
            r.row.record.as_bytes(),
            None,
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
    let (seals, notes) = seals(store, opts, lo, hi, &mut failures).await?;
    let bounds = store.bounds().await?;
    let in_range = |a: &&super::store::ArchiveEntry| a.to_seq >= lo && a.from_seq <= hi;

    // The tree is recomputed from where the walk starts.
    let first_walked = match archives.iter().find(in_range) {
        Some(a) => Some(a.from_seq),
        None => bounds.map(|(first, _)| lo.max(first)),
    };
    let notes_checked = notes.len();
    let mut tree = match first_walked {
        Some(first) => tree_at(store, first - 1, notes).await?,
        None => None,
    };

    // Where the walk starts, and the hash it is anchored on.
    let mut checker: Option<ChainChecker> = None;
    let mut report = VerifyReport::default();
    let mut leaves = Vec::new();
    for (i, a) in archives.iter().enumerate().filter(|(_, a)| in_range(a)) {
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
                    leaves.push(tree::leaf_hash(r.record.as_bytes()));
                    if leaves.len() >= FEED {
                        failures.extend(feed(store, &mut tree, &mut leaves).await?);
                    }
                    report.archived += 1;
                }
            }
            Err(e) => failures.push(VerifyFailure {
                seq: a.from_seq,
                reason: format!("archive {}: {e}", path.display()),
            }),
        }
        // The leaves before a chain failure are still checked: a tree failure
        // among them comes first.
        failures.extend(feed(store, &mut tree, &mut leaves).await?);
        if !failures.is_empty() {
            break;
        }
    }
    let mut walked_to_end = false;
    if failures.is_empty() {
        if let Some((first, last)) = bounds {
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
                let end = hi.min(last);
                let walk = walk(
                    store,
                    c,
                    end,
                    &seals,
                    tree.take(),
                    &mut progress,
                    report.archived,
                );
                let (walked, failure, t) = walk.await?;
                failures.extend(failure);
                c = walked;
                tree = t;
                walked_to_end = end == last;
                // The records are sound: now what search reads of them.
                if let (true, AuditStore::Sqlite(pool)) = (failures.is_empty(), store) {
                    failures.extend(index::check(pool, start, end).await?);
                }
            }
            checker = Some(c);
        } else {
            walked_to_end = true;
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
                    "the log ends at seq {last}, but {} seals seq {seq}: records {}..{seq} were truncated",
                    seal.by, last + 1
                ),
            });
        }
    }
    // So do stored tree hashes beyond the last record, unless records were appended
    // meanwhile.
    if let Some(t) = tree
        .as_ref()
        .filter(|t| walked_to_end && t.stored_end.is_none())
    {
        let stored = store.tree_size().await?;
        if failures.is_empty() && stored > t.size() && store.bounds().await? == bounds {
            failures.push(VerifyFailure {
                seq: last + 1,
                reason: format!(
                    "the log ends at seq {last}, but audit_tree holds the hashes of {stored} records: records {}..={stored} were truncated",
                    last + 1
                ),
            });
        }
    }
    report.records = checker.checked();
    report.head = (last, checker.prev_hash());
    report.checkpoints = seals.values().filter(|s| s.hash.is_some()).count();
    report.notes = notes_checked;
    let jws_sealed = seals
        .range(..=last)
        .rfind(|(_, s)| s.hash.is_some())
        .map(|(s, _)| *s)
        .unwrap_or(0);
    report.tree = tree.map(|t| TreeReport {
        leaves: t.leaves,
        rows: t.rows,
        sealed: t.sealed,
        stored_to: t.stored_end.map(size_of_stored),
    });
    let tree_sealed = report.tree.as_ref().map_or(0, |t| t.sealed);
    report.sealed = jws_sealed.max(i64::try_from(tree_sealed).unwrap_or(i64::MAX));
    report.failure = failures.into_iter().min_by_key(|f| f.seq);
    progress(report.records);
    Ok(report)
}

/// Leaves handed to the tree check at a time, outside the SQLite scan.
const FEED: usize = 16_384;

/// The records a stored tree covers when its first missing index is `end`.
fn size_of_stored(end: u64) -> u64 {
    crate::tlog::tree::size_of(end.checked_sub(1))
}

/// The tree check starting after record `size`: from the stored frontier of that
/// tree (trusted as the walk's anchor hash is), or none when it is not stored.
async fn tree_at(
    store: &AuditStore,
    size: i64,
    notes: BTreeMap<u64, tree::SignedRoot>,
) -> Result<Option<TreeCheck>, AuditError> {
    let size = u64::try_from(size).unwrap_or(0);
    let indexes = crate::tlog::tree::frontier(size);
    let stored: BTreeMap<u64, _> = store.tree_hashes(&indexes).await?.into_iter().collect();
    let frontier: Option<Vec<_>> = indexes.iter().map(|i| stored.get(i).copied()).collect();
    Ok(frontier.map(|f| TreeCheck::new(size, f, notes)))
}

/// Hand `leaves` to the tree check with the stored hashes they produce.
async fn feed(
    store: &AuditStore,
    tree: &mut Option<TreeCheck>,
    leaves: &mut Vec<crate::tlog::tree::Hash>,
) -> Result<Option<VerifyFailure>, AuditError> {
    let Some(t) = tree.as_mut() else {
        leaves.clear();
        return Ok(None);
    };
    if leaves.is_empty() {
        return Ok(None);
    }
    let rows = store.tree_rows(t.rows_for(leaves.len() as u64)).await?;
    let result = t.add(leaves, &rows);
    leaves.clear();
    Ok(result.err())
}

/// Below this many records one sequential walk; above, [`PARTS`] at once.
const PARALLEL_FROM: i64 = 100_000;
/// Ranges read and checked at once, each on its own pooled connection.
const PARTS: i64 = 4;
/// How often the progress callback hears of the walk.
const TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// What a walk of the store gives back: where the chain stopped, its first failure
/// (or the tree's), and the tree check carried on.
type Walked = (ChainChecker, Option<VerifyFailure>, Option<TreeCheck>);

/// Check records `c.expected()..=end` of the store: a SQLite file through
/// [`sqlite_scan`], anything else with [`walk_parts`].
async fn walk(
    store: &AuditStore,
    c: ChainChecker,
    end: i64,
    seals: &BTreeMap<i64, Sealed>,
    tree: Option<TreeCheck>,
    progress: &mut impl FnMut(u64),
    base: u64,
) -> Result<Walked, AuditError> {
    match store {
        AuditStore::Sqlite(pool) => match sqlite_scan::file_of(pool) {
            Some(path) => walk_sqlite(path, c, end, seals, tree, progress, base).await,
            // An in-memory database is only reachable through its own pool.
            None => walk_parts(store, c, end, 1, seals, tree, progress, base).await,
        },
        AuditStore::Postgres(_) => {
            let parts = if end - c.expected() + 1 >= PARALLEL_FROM {
                PARTS
            } else {
                1
            };
            walk_parts(store, c, end, parts, seals, tree, progress, base).await
        }
    }
}

/// [`sqlite_scan::check_range`] on a blocking thread, reporting progress meanwhile.
async fn walk_sqlite(
    path: std::path::PathBuf,
    c: ChainChecker,
    end: i64,
    seals: &BTreeMap<i64, Sealed>,
    tree: Option<TreeCheck>,
    progress: &mut impl FnMut(u64),
    base: u64,
) -> Result<Walked, AuditError> {
    let seals = Arc::new(seals.clone());
    let counter = Arc::new(AtomicU64::new(0));
    let mut task = tokio::task::spawn_blocking({
        let (seals, counter) = (Arc::clone(&seals), Arc::clone(&counter));
        move || sqlite_scan::check_range(&path, c, end, &seals, tree, &counter)
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
#[allow(clippy::too_many_arguments)]
async fn walk_parts(
    store: &AuditStore,
    c: ChainChecker,
    end: i64,
    parts: i64,
    seals: &BTreeMap<i64, Sealed>,
    mut tree: Option<TreeCheck>,
    progress: &mut impl FnMut(u64),
    base: u64,
) -> Result<Walked, AuditError> {
    let start = c.expected();
    let size = ((end - start + 1).max(1) + parts - 1) / parts;
    let seals = Arc::new(seals.clone());
    let counter = Arc::new(AtomicU64::new(0));
    let leaves = tree.is_some();
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
            tokio::spawn(async move { walk_part(&store, part, b, &seals, leaves, &counter).await }),
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
        let (part, failure, mut part_leaves) =
            result.map_err(|e| AuditError::Store(format!("verify task: {e}")))??;
        // A part that ran out before its end lost its last records.
        let failure = failure.or_else(|| {
            (part.expected() <= b && b < end).then(|| VerifyFailure {
                seq: part.expected(),
                reason: format!("record {} is missing: deleted", part.expected()),
            })
        });
        // The leaves come before the part's own failure: a tree failure among them
        // is the earlier one.
        let failure = feed(store, &mut tree, &mut part_leaves).await?.or(failure);
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
    Ok((last, failure, tree))
}

/// One part: its checker, its first failure and, when asked, its records' leaves.
type Part = (
    ChainChecker,
    Option<VerifyFailure>,
    Vec<crate::tlog::tree::Hash>,
);

async fn walk_part(
    store: &AuditStore,
    mut c: ChainChecker,
    end: i64,
    seals: &BTreeMap<i64, Sealed>,
    leaves: bool,
    counter: &AtomicU64,
) -> Result<Part, AuditError> {
    let mut rows = store.indexed_rows(c.expected(), end);
    let mut out = Vec::new();
    while let Some(r) = rows.try_next().await? {
        let columns = stored_columns(&r.columns);
        let (seq, hash, record) = (r.row.seq, r.row.hash.as_bytes(), r.row.record.as_bytes());
        if let Err(f) = check_sealed(&mut c, seq, hash, record, columns.as_ref(), seals) {
            return Ok((c, Some(f), out));
        }
        if leaves {
            out.push(tree::leaf_hash(record));
        }
        if c.checked().is_multiple_of(4096) {
            counter.fetch_add(4096, Ordering::Relaxed);
        }
    }
    Ok((c, None, out))
}

/// A valid checkpoint: what it seals and who signed it.
#[derive(Debug, Clone)]
pub(crate) struct Sealed {
    /// The chain hash a JWS checkpoint signs; a note signs a tree root instead, which
    /// the tree check meets.
    pub(crate) hash: Option<String>,
    /// Who signed it and when, for messages.
    pub(crate) by: String,
}

/// The valid checkpoints in range, by seq, from the store and the external copies,
/// and the roots the signed notes among them sign, by tree size. A bad signature or
/// two disagreeing seals are failures at their seq.
async fn seals(
    store: &AuditStore,
    opts: &VerifyOptions,
    lo: i64,
    hi: i64,
    failures: &mut Vec<VerifyFailure>,
) -> Result<(BTreeMap<i64, Sealed>, BTreeMap<u64, tree::SignedRoot>), AuditError> {
    let mut out: BTreeMap<i64, Sealed> = BTreeMap::new();
    let mut roots: BTreeMap<u64, tree::SignedRoot> = BTreeMap::new();
    let keys: Vec<Vec<u8>> = crate::signing::public_keys(&opts.jwks)
        .into_iter()
        .map(|(_, key)| key)
        .collect();
    let stored = store.checkpoints(lo, hi).await?;
    let external = opts
        .external
        .iter()
        .filter(|c| c.seq >= lo && c.seq <= hi)
        .cloned();
    for c in stored.into_iter().chain(external) {
        let fail = |reason: String| VerifyFailure { seq: c.seq, reason };
        let sealed = match &c.seal {
            Seal::Jws(jws) => match jws.verify(&opts.jwks) {
                Ok(_) => Sealed {
                    hash: Some(c.hash.clone()),
                    by: format!("a checkpoint signed by {} at {}", jws.node, jws.time),
                },
                Err(e) => {
                    failures.push(fail(format!(
                        "the checkpoint sealing seq {} does not verify: {e}",
                        c.seq
                    )));
                    continue;
                }
            },
            Seal::Note(text) => match check_note(text, c.seq, &keys) {
                Ok(signed) => {
                    let size = u64::try_from(c.seq).unwrap_or(0);
                    if roots.get(&size).is_some_and(|r| r.root != signed.root) {
                        failures.push(fail(format!(
                            "two valid signed notes of tree size {} hold different roots: the log forked",
                            c.seq
                        )));
                        continue;
                    }
                    let by = format!(
                        "the signed note of tree size {} by {}",
                        c.seq, signed.origin
                    );
                    roots.insert(size, signed);
                    Sealed { hash: None, by }
                }
                Err(e) => {
                    failures.push(fail(format!(
                        "the signed note of tree size {} does not verify: {e}",
                        c.seq
                    )));
                    continue;
                }
            },
        };
        match out.get(&c.seq) {
            Some(have)
                if have.hash.is_some() && sealed.hash.is_some() && have.hash != sealed.hash =>
            {
                failures.push(fail(format!(
                    "two valid checkpoints seal seq {} with different hashes",
                    c.seq
                )))
            }
            // A JWS's signed hash is the stronger statement about the chain: keep it.
            Some(have) if have.hash.is_some() => {}
            _ => {
                out.insert(c.seq, sealed);
            }
        }
    }
    Ok((out, roots))
}

/// A signed note checked: a checkpoint of tree size `seq`, signed under its origin
/// by one of `keys`.
fn check_note(text: &str, seq: i64, keys: &[Vec<u8>]) -> Result<tree::SignedRoot, String> {
    let c = SignedCheckpoint::parse(text).map_err(|e| e.to_string())?;
    if i64::try_from(c.size).ok() != Some(seq) {
        return Err(format!(
            "it is stored at seq {seq} but is of tree size {}",
            c.size
        ));
    }
    let mut last = format!("no trusted key signs it as {}", c.origin);
    for key in keys {
        match c.verify(key) {
            Ok(()) => {
                return Ok(tree::SignedRoot {
                    root: c.root,
                    origin: c.origin,
                })
            }
            Err(e @ NoteError::BadSignature(_)) => last = e.to_string(),
            Err(_) => {}
        }
    }
    Err(last)
}

/// Check a record (and a stored row's search columns) and, when a JWS checkpoint
/// seals it, its hash against the seal.
fn check_sealed(
    c: &mut ChainChecker,
    seq: i64,
    hash: &[u8],
    record: &[u8],
    columns: Option<&Columns<'_>>,
    seals: &BTreeMap<i64, Sealed>,
) -> Result<(), VerifyFailure> {
    c.check_bytes(seq, hash, record, columns)?;
    if let Some(seal) = seals.get(&seq) {
        if seal.hash.as_ref().is_some_and(|h| h.as_bytes() != hash) {
            let previous = seals.range(..seq).next_back().map(|(s, _)| *s).unwrap_or(0);
            return Err(VerifyFailure {
                seq: previous + 1,
                reason: format!(
                    "record {} does not match {}: records {}..{} were rewritten (hashes recomputed) after sealing",
                    seq, seal.by, previous + 1, seq
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
    use crate::AuditEntry;

    /// A store of `n` chained records.
    async fn store(dir: &std::path::Path, n: i64) -> (AuditStore, sqlx::SqlitePool) {
        let db = dir.join("state.db");
        // Every other record without an operator: NULL columns are checked too.
        let entries: Vec<AuditEntry> = (1..=n)
            .map(|seq| AuditEntry {
                time: format!("2026-11-28T01:{:02}:00.000000Z", seq % 60),
                request_id: format!("r{seq}"),
                subject: Some(format!("S{seq}")),
                operator: (seq % 2 == 0).then(|| format!("clerk-{}", seq % 3)),
                decision: crate::Decision::Allow,
                ..AuditEntry::default()
            })
            .collect();
        let store = crate::chained_store::chained_store(dir, &entries).await;
        let AuditStore::Sqlite(pool) = &store else {
            unreachable!()
        };
        // Segments of 8: records 1..=40 are five indexed segments, the rest a tail.
        sqlx::query("UPDATE audit_index_segment SET records = 8")
            .execute(pool)
            .await
            .unwrap();
        // The tree as the writer would have stored it.
        store.catch_up_tree().await.unwrap();
        crate::index_sealed_segments(&db).unwrap();
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
        let (c, f, _) = walk_tree(store, end, how).await;
        (c.expected(), c.checked(), f.map(|f| f.seq))
    }

    /// A walk from the start with the tree checked.
    async fn walk_tree(store: &AuditStore, end: i64, how: Reader) -> Walked {
        let none = BTreeMap::new();
        let c = ChainChecker::new(1, GENESIS);
        let tree = Some(TreeCheck::new(0, Vec::new(), BTreeMap::new()));
        match how {
            Reader::Parts(parts) => {
                walk_parts(store, c, end, parts, &none, tree, &mut |_| {}, 0).await
            }
            Reader::Scan => walk(store, c, end, &none, tree, &mut |_| {}, 0).await,
        }
        .unwrap()
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

    /// The search index is outside the hash: verify checks every indexed segment's
    /// entries against its records and names the record and the column.
    #[tokio::test]
    async fn verify_names_a_search_index_entry_that_disagrees_with_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("UPDATE audit_index SET value = 'S99' WHERE col = 4 AND seq = 17", 17, "record 17: the search index says subject \"S99\" but the record says \"S17\""),
            ("DELETE FROM audit_index WHERE col = 2 AND seq = 32", 32, "record 32 is missing from the search index (operator \"clerk-2\")"),
            ("INSERT INTO audit_index (seg, col, value, seq) VALUES (33, 2, 'clerk-0', 33)", 33, "the search index says operator \"clerk-0\" but the record has none"),
            ("UPDATE audit_index SET value = '2026-01-01T00:00:00.000000Z' WHERE col = 0 AND seq = 40", 40, "the search index says time \"2026-01-01T00:00:00.000000Z\""),
            ("UPDATE audit_index SET seq = 12 WHERE col = 4 AND seq = 11", 11, "record 11 is missing from the search index (subject \"S11\")"),
            ("UPDATE audit_segment SET first_seq = 8 WHERE first_seq = 9", 8, "overlap"),
            // A record edited and its entry with it: named as edited.
            ("UPDATE audit_index SET value = 'S99' WHERE col = 4 AND seq = 20; UPDATE audit_log SET record = replace(record, '\"S20\"', '\"S99\"') WHERE seq = 20", 20, "edited"),
        ];
        for (i, (sql, seq, want)) in cases.into_iter().enumerate() {
            let store = tampered(&dir.path().join(i.to_string()), 40, sql).await;
            let report = verify(&store, &VerifyOptions::default(), |_| {})
                .await
                .unwrap();
            let f = report.failure.unwrap();
            assert_eq!(f.seq, seq, "{sql}");
            assert!(f.reason.contains(want), "{sql}: {}", f.reason);
        }
        // Untouched, the index agrees.
        std::fs::create_dir(dir.path().join("ok")).unwrap();
        let (store, _) = store(&dir.path().join("ok"), 43).await;
        let report = verify(&store, &VerifyOptions::default(), |_| {})
            .await
            .unwrap();
        assert_eq!(report.failure, None);
    }

    /// Search reads the index for indexed segments and the records past them, pages
    /// across both, and finds what a tampered entry hides only by verify's naming it.
    #[tokio::test]
    async fn search_reads_indexed_segments_and_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pool) = store(dir.path(), 45).await;
        let find =
            |conditions: &'static [(&'static str, &'static str)], after: i64, limit: usize| {
                let store = store.clone();
                async move {
                    let mut f = crate::Filter::default();
                    for (k, v) in conditions {
                        f.set(k, v).unwrap();
                    }
                    let rows = store.search(&f, after, limit).await.unwrap();
                    rows.iter().map(|r| r.seq).collect::<Vec<_>>()
                }
            };
        assert_eq!(find(&[("subject", "S3")], 0, 10).await, vec![3]);
        assert_eq!(
            find(&[("subject", "S44")], 0, 10).await,
            vec![44],
            "the tail"
        );
        // Operator clerk-1: even seq with seq % 3 == 1.
        let all = vec![4, 10, 16, 22, 28, 34, 40];
        assert_eq!(find(&[("operator", "clerk-1")], 0, 100).await, all);
        assert_eq!(
            find(&[("operator", "clerk-1")], 0, 3).await,
            vec![4, 10, 16]
        );
        assert_eq!(
            find(&[("operator", "clerk-1")], 16, 3).await,
            vec![22, 28, 34]
        );
        assert_eq!(
            find(&[("operator", "clerk-1"), ("subject", "S28")], 0, 9).await,
            vec![28]
        );
        // Minute 59 is seq 59 % 60: none; minutes 40..=44 span the last segment and the tail.
        const RANGE: &[(&str, &str)] = &[
            ("from", "2026-11-28T01:40:00Z"),
            ("to", "2026-11-28T01:44:30Z"),
        ];
        assert_eq!(find(RANGE, 0, 10).await, vec![40, 41, 42, 43, 44]);
        assert_eq!(
            find(&[("decision", "allow")], 38, 3).await,
            vec![39, 40, 41]
        );
        // An entry moved to another subject hides the record from search.
        sqlx::query("UPDATE audit_index SET value = 'S99' WHERE col = 4 AND seq = 3")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(find(&[("subject", "S3")], 0, 10).await, Vec::<i64>::new());
        assert_eq!(
            find(&[("subject", "S99")], 0, 10).await,
            Vec::<i64>::new(),
            "rechecked against the record"
        );
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
