//! One group commit, whichever store takes it: the chain's head as the writer sees
//! it, the batch chained onto it, and the checkpoint that seals it when one is due:
//! the batch's signed note, the one its receipts carry.
//! Both writers (SQLite on its own thread, PostgreSQL on the pool) build their
//! transaction from these.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::chain::{seal_entry, AuditEntry, GENESIS};
use super::checkpoint::StoredCheckpoint;
use super::error::AuditError;
use super::frontier::{Frontier, TreeBatch};
use super::signing::Signer;

/// How the writer batches and seals.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// This gateway's node name.
    pub node: String,
    /// The log's name: the origin line of its checkpoints and the name of the key
    /// that signs them (c2sp.org/tlog-checkpoint).
    pub origin: String,
    /// Most records per group commit.
    pub batch_max: usize,
    /// Seal the head at least every this many records.
    pub checkpoint_every: i64,
    /// … and at least this often while records are unsealed.
    pub checkpoint_interval: Duration,
    /// Copy of every checkpoint this node writes, outside the store.
    pub checkpoint_file: Option<PathBuf>,
    /// Where batch sizes, commit times and failures are counted.
    pub metrics: Option<Arc<dyn CommitObserver>>,
}

/// Told about every group commit: the gateway counts batch sizes, commit times and
/// failures with it (its metrics implement this).
pub trait CommitObserver: std::fmt::Debug + Send + Sync {
    /// A group commit of `records` records ended after `took`; `ok` says whether it
    /// was committed (a failed one refused all its records).
    fn commit(&self, records: usize, took: Duration, ok: bool);
}

/// The chain's head and its last seal, as the writer sees them.
#[derive(Debug, Clone)]
pub(super) struct ChainState {
    /// The head's sequence number.
    pub(super) seq: i64,
    /// The head's hash.
    pub(super) hash: String,
    /// The last sealed sequence number.
    pub(super) sealed: i64,
    /// The Merkle tree of the records up to the head, as far as the writer holds it.
    pub(super) tree: Frontier,
}

impl ChainState {
    /// Whether `(seq, hash)` is this state's head.
    pub(super) fn is_head(&self, seq: i64, hash: &str) -> bool {
        self.seq == seq && self.hash == hash
    }

    /// The state once `p` is committed on top of this one.
    pub(super) fn after(mut self, p: &Prepared) -> ChainState {
        if let Some(last) = p.rows.last() {
            self.seq = last.seq;
            self.hash = last.hash.clone();
        }
        if let Some(c) = &p.checkpoint {
            self.sealed = c.seq;
        }
        self
    }
}

/// A record ready to insert; its search columns are its entry's
/// ([`search_columns`]), the entry at the same place in the batch.
pub(super) struct NewRow {
    pub(super) seq: i64,
    pub(super) hash: String,
    pub(super) record: String,
}

/// The search columns of `audit_log`, in order: indexed copies of these members of
/// each record. They are outside the hash, so `audit verify` checks every stored row's
/// columns against its record.
pub const SEARCH_COLUMN_NAMES: [&str; 8] = [
    "time", "consumer", "operator", "dataset", "subject", "matter", "case_id", "decision",
];

/// The values an entry's row holds in its search columns, in the order of
/// [`SEARCH_COLUMN_NAMES`]: what the writers store, and what `audit verify` expects.
pub fn search_columns(e: &AuditEntry) -> [Option<&str>; 8] {
    [
        Some(e.time.as_str()),
        e.consumer.as_deref(),
        e.operator.as_deref(),
        e.dataset.as_deref(),
        e.subject.as_deref(),
        e.matter.as_deref(),
        e.case_id.as_deref(),
        Some(e.decision.as_str()),
    ]
}

/// A batch chained onto the head and appended to the tree, and the checkpoint
/// to store when one is due (the tree's note).
pub(super) struct Prepared {
    pub(super) rows: Vec<NewRow>,
    pub(super) checkpoint: Option<StoredCheckpoint>,
    /// The tree's new hashes, its signed checkpoint and the records' proofs.
    pub(super) tree: TreeBatch,
}

pub(super) const HEAD: &str = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";
pub(super) const SEALED: &str = "SELECT MAX(seq) FROM audit_checkpoint";
pub(super) const ARCHIVED: &str =
    "SELECT to_seq, last_hash FROM audit_archive ORDER BY to_seq DESC LIMIT 1";

/// The head is the last stored record, or — when everything was archived — the last
/// archived one.
pub(super) fn state_of(
    head: Option<(i64, String)>,
    archived: Option<(i64, String)>,
    sealed: Option<i64>,
) -> ChainState {
    let (seq, hash) = head.or(archived).unwrap_or_else(|| (0, GENESIS.to_owned()));
    ChainState {
        seq,
        hash,
        sealed: sealed.unwrap_or(0),
        tree: Frontier::default(),
    }
}

/// Chain `entries` onto `head` and append them to its tree (whose frontier `head`
/// must hold), and seal the new head when a checkpoint is due.
pub(super) fn chain(
    head: &mut ChainState,
    entries: &[AuditEntry],
    time_due: bool,
    signer: &Signer,
    settings: &AuditSettings,
) -> Result<Prepared, AuditError> {
    let (mut seq, mut prev) = (head.seq, head.hash.clone());
    let mut rows = Vec::with_capacity(entries.len());
    for e in entries {
        seq += 1;
        let (record, hash) =
            seal_entry(seq, &prev, e).map_err(|e| AuditError::Store(e.to_string()))?;
        rows.push(NewRow {
            seq,
            hash: hash.clone(),
            record,
        });
        prev = hash;
    }
    let records: Vec<&str> = rows.iter().map(|r| r.record.as_str()).collect();
    let tree = head.tree.append(&records, signer, &settings.origin)?;
    // Every batch signs its tree; every so often that note is also kept as a
    // checkpoint, in the store and outside it.
    let unsealed = seq - head.sealed;
    let due = unsealed >= settings.checkpoint_every || (time_due && unsealed > 0);
    let checkpoint = due.then(|| StoredCheckpoint::note(seq, &prev, &tree.note));
    Ok(Prepared {
        rows,
        checkpoint,
        tree,
    })
}
