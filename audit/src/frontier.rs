//! The Merkle tree as the writer holds it: the records' tree up to the head, known by
//! its frontier, enough to append a batch, sign its checkpoint and prove each of its
//! records without reading the store.
//!
//! Record `seq` is leaf `seq - 1`; the tree of a log whose head is `seq` has `seq`
//! leaves. Its stored hashes live in `audit_tree` (tlog's stored-hash index), written
//! in the transaction of the records they cover. A log from before the tree (or a
//! store another writer moved) is caught up from its records when the writer next
//! appends: [`Frontier::lacking`] names what to read, [`Frontier::catch_up`] adds it.

use crate::error::AuditError;
use crate::signing::Signer;
use crate::tlog::note::NoteSigner;
use crate::tlog::tree::{self, Hash, KnownHashes};

/// Records read at a time when a tree is caught up from its records.
pub(super) const CATCH_UP_CHUNK: i64 = 16_384;

/// The tree's frontier as the writer holds it.
#[derive(Debug, Clone, Default)]
pub(super) struct Frontier {
    /// Leaves of the tree the frontier is complete for (`None`: not loaded yet).
    size: Option<u64>,
    known: KnownHashes,
}

/// What appending a batch made: the hashes to store, and the signed checkpoint and
/// inclusion proofs its records' receipts carry.
#[derive(Debug, Clone)]
pub(super) struct TreeBatch {
    /// `(stored index, hash)` for `audit_tree`.
    pub(super) stored: Vec<(u64, Hash)>,
    /// The checkpoint of that tree as a signed note.
    pub(super) note: crate::batch_note::BatchNote,
    /// Each record's inclusion proof in that tree, in batch order.
    pub(super) proofs: Vec<Vec<Hash>>,
}

fn tree_error(e: tree::TreeError) -> AuditError {
    AuditError::Store(format!("audit tree: {e}"))
}

impl Frontier {
    /// The stored indexes to read from `audit_tree` before appending onto a log whose
    /// head is `head`; empty once the frontier held is complete for it.
    pub(super) fn lacking(&mut self, head: i64) -> Vec<u64> {
        let size = leaves(head);
        if self.size == Some(size) {
            return Vec::new();
        }
        let frontier = tree::frontier(size);
        let lacking = self.known.lacking(&frontier);
        if lacking.is_empty() {
            self.known.retain(&frontier);
            self.size = Some(size);
        }
        lacking
    }

    /// Take the stored hashes read for [`Frontier::lacking`]; true once the frontier
    /// of `head`'s tree is complete. False means the tree is behind the records:
    /// [`Frontier::catch_up`] them.
    pub(super) fn hold(&mut self, head: i64, read: impl IntoIterator<Item = (u64, Hash)>) -> bool {
        for (i, h) in read {
            self.known.insert(i, h);
        }
        let size = leaves(head);
        let frontier = tree::frontier(size);
        if self.known.lacking(&frontier).is_empty() {
            self.known.retain(&frontier);
            self.size = Some(size);
            true
        } else {
            false
        }
    }

    /// Start again from the stored tree of `size` leaves, whose frontier hashes are
    /// `read` (to catch up a tree that is behind its records).
    pub(super) fn restart(&mut self, size: u64, read: impl IntoIterator<Item = (u64, Hash)>) {
        self.known = KnownHashes::default();
        for (i, h) in read {
            self.known.insert(i, h);
        }
        self.size = Some(size);
    }

    /// Add the stored `records` (the next ones, in order) to the tree: the hashes to
    /// store.
    pub(super) fn catch_up(&mut self, records: &[String]) -> Result<Vec<(u64, Hash)>, AuditError> {
        let size = self
            .size
            .ok_or_else(|| AuditError::Store("audit tree: caught up before it was read".into()))?;
        let leaves: Vec<Hash> = records
            .iter()
            .map(|r| tree::leaf_hash(r.as_bytes()))
            .collect();
        let stored = tree::extend(size, &leaves, &mut self.known).map_err(tree_error)?;
        let new_size = size + leaves.len() as u64;
        self.known.retain(&tree::frontier(new_size));
        self.size = Some(new_size);
        Ok(stored)
    }

    /// Append a batch's `records` and sign the new tree's checkpoint as `origin`.
    pub(super) fn append(
        &mut self,
        records: &[&str],
        signer: &Signer,
        origin: &str,
    ) -> Result<TreeBatch, AuditError> {
        let size = self
            .size
            .ok_or_else(|| AuditError::Store("audit tree: appended before it was read".into()))?;
        let leaves: Vec<Hash> = records
            .iter()
            .map(|r| tree::leaf_hash(r.as_bytes()))
            .collect();
        let appended = tree::append(size, &leaves, &mut self.known).map_err(tree_error)?;
        self.size = Some(appended.size);
        let text = crate::tlog::checkpoint::body(origin, appended.size, &appended.root);
        let note = NoteSigner::new(origin, signer.key_pair())
            .and_then(|s| s.sign(&text))
            .map_err(|e| AuditError::Store(format!("audit checkpoint: {e}")))?;
        Ok(TreeBatch {
            stored: appended.stored,
            note: crate::batch_note::BatchNote::new(&note),
            proofs: appended.proofs,
        })
    }
}

/// The error when the stored tree stops short of the records: a writer that does not
/// keep the tree appended meanwhile.
pub(super) fn behind(head: i64) -> AuditError {
    AuditError::Store(format!(
        "the audit tree is behind its records (head {head}): a writer without the tree \
         appended; restart the gateway to catch the tree up"
    ))
}

/// The leaves of the tree of a log whose head is `head`.
pub(super) fn leaves(head: i64) -> u64 {
    u64::try_from(head).unwrap_or(0)
}
