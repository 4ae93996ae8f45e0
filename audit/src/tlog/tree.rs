//! The audit log's Merkle tree (RFC 9162 §2.1): leaf `SHA-256(0x00 ‖ record)`,
//! node `SHA-256(0x01 ‖ left ‖ right)`, proofs of inclusion and consistency.
//!
//! The tree math is `tlog_tiles` (Cloudflare's port of Go's `sumdb/tlog`, the code
//! behind Go's checksum database): hashes are kept under its stored-hash index, about
//! two per record, so any proof reads `O(log n)` stored hashes. A writer holds only
//! the tree's frontier (the roots of its complete subtrees, at most 64 hashes): with
//! it and a batch's leaves it computes, in memory, the hashes to store, the new root
//! and every new leaf's inclusion proof.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use tlog_tiles::tlog::{self, HashReader};

pub use tlog_tiles::tlog::{Hash, EMPTY_HASH};

/// Why a tree operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// Stored hashes the operation needs and was not given (their stored indexes).
    #[error("the tree hashes at stored indexes {0:?} are needed and were not loaded")]
    Missing(Vec<u64>),
    /// A proof that does not verify, or arguments outside the tree.
    #[error("{0}")]
    Tlog(#[from] tlog::Error),
}

/// The leaf hash of a record: `SHA-256(0x00 ‖ bytes)`.
pub fn leaf_hash(record: &[u8]) -> Hash {
    tlog::record_hash(record)
}

/// A hash from its standard base64 (as receipts, proofs and checkpoints give it).
pub fn hash_from_base64(b64: &str) -> Option<Hash> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    bytes.try_into().ok().map(Hash)
}

/// The stored indexes of the tree's frontier at `size`: what a writer must hold to
/// append at `size` (and what [`root`] reads).
pub fn frontier(size: u64) -> Vec<u64> {
    if size == 0 {
        Vec::new()
    } else {
        tlog::sub_tree_index(0, size, Vec::new())
    }
}

/// Where record `n`'s stored hashes begin.
pub fn stored_index(n: u64) -> u64 {
    tlog::stored_hash_index(0, n)
}

/// Stored hashes held in memory, by stored index; reading one not held records it as
/// missing, for the caller to load and try again.
#[derive(Debug, Default, Clone)]
pub struct KnownHashes {
    hashes: HashMap<u64, Hash>,
}

/// [`KnownHashes`] as tlog reads them during one operation, noting what it lacked.
struct Reader<'a> {
    hashes: &'a HashMap<u64, Hash>,
    missing: RefCell<BTreeSet<u64>>,
}

impl KnownHashes {
    /// Hold `hash` at stored index `index`.
    pub fn insert(&mut self, index: u64, hash: Hash) {
        self.hashes.insert(index, hash);
    }

    /// The highest stored index held.
    pub fn max_index(&self) -> Option<u64> {
        self.hashes.keys().max().copied()
    }

    /// Keep only the hashes at `indexes`.
    pub fn retain(&mut self, indexes: &[u64]) {
        let keep: BTreeSet<u64> = indexes.iter().copied().collect();
        self.hashes.retain(|i, _| keep.contains(i));
    }

    /// Of `indexes`, those not held.
    pub fn lacking(&self, indexes: &[u64]) -> Vec<u64> {
        indexes
            .iter()
            .copied()
            .filter(|i| !self.hashes.contains_key(i))
            .collect()
    }

    /// Run `op` over these hashes; [`TreeError::Missing`] names the indexes it lacked.
    fn with<T>(
        &self,
        op: impl FnOnce(&Reader<'_>) -> Result<T, tlog::Error>,
    ) -> Result<T, TreeError> {
        let reader = Reader {
            hashes: &self.hashes,
            missing: RefCell::default(),
        };
        let out = op(&reader);
        let missing: Vec<u64> = reader.missing.into_inner().into_iter().collect();
        match out {
            Err(_) if !missing.is_empty() => Err(TreeError::Missing(missing)),
            other => Ok(other?),
        }
    }
}

impl HashReader for Reader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        let mut out = Vec::with_capacity(indexes.len());
        let mut missing = self.missing.borrow_mut();
        for i in indexes {
            match self.hashes.get(i) {
                Some(h) => out.push(*h),
                None => {
                    missing.insert(*i);
                }
            }
        }
        if missing.is_empty() {
            Ok(out)
        } else {
            Err(tlog::Error::IndexesNotInTree)
        }
    }
}

/// A batch appended: the hashes to store, the new tree, each new leaf's proof.
#[derive(Debug, Clone)]
pub struct Appended {
    /// `(stored index, hash)` to store, in index order.
    pub stored: Vec<(u64, Hash)>,
    /// The tree's size after the batch.
    pub size: u64,
    /// Its root hash.
    pub root: Hash,
    /// The inclusion proof of each appended leaf in the tree of `size`, in order.
    pub proofs: Vec<Vec<Hash>>,
}

/// Add `leaves` to the tree of `size` whose frontier `known` holds: the hashes to
/// store. `known` also keeps them (call [`KnownHashes::retain`] with the new
/// frontier to drop the rest).
pub fn extend(
    size: u64,
    leaves: &[Hash],
    known: &mut KnownHashes,
) -> Result<Vec<(u64, Hash)>, TreeError> {
    let mut stored = Vec::with_capacity(leaves.len() * 2);
    for (n, leaf) in (size..).zip(leaves) {
        let hashes = known.with(|k| tlog::stored_hashes_for_record_hash(n, *leaf, k))?;
        for (i, h) in (stored_index(n)..).zip(hashes) {
            known.insert(i, h);
            stored.push((i, h));
        }
    }
    Ok(stored)
}

/// The number of records in a tree whose highest stored index is `max` (stored
/// hashes are written a record at a time, so the highest completes the last one).
pub fn size_of(max: Option<u64>) -> u64 {
    max.map_or(0, |i| {
        let (level, n) = tlog::split_stored_hash_index(i);
        (n + 1) << level
    })
}

/// Append `leaves` to the tree of `size` whose frontier `known` holds; `known` then
/// holds the new tree's frontier.
///
/// One pass over the batch's part of the tree, level by level: each new node is
/// hashed once, and every proof is read off those levels and the old frontier
/// (asking `tlog` for each proof re-hashed the tree's right edge once per leaf).
pub fn append(size: u64, leaves: &[Hash], known: &mut KnownHashes) -> Result<Appended, TreeError> {
    let new_size = size + leaves.len() as u64;
    if leaves.is_empty() {
        let root = root(size, known)?;
        return Ok(Appended {
            stored: Vec::new(),
            size,
            root,
            proofs: Vec::new(),
        });
    }
    let old = OldFrontier::of(size, known)?;
    let levels = Levels::build(size, new_size, leaves, &old);
    let stored = levels.stored(size, new_size);
    let proofs = (size..new_size)
        .map(|n| levels.proof(n, new_size, &old))
        .collect();
    let root = levels.root();
    for (i, h) in &stored {
        known.insert(*i, *h);
    }
    known.retain(&frontier(new_size));
    Ok(Appended {
        stored,
        size: new_size,
        root,
        proofs,
    })
}

/// The complete subtrees left of a batch (the old tree's frontier), by level: the one
/// at level `j` exists when bit `j` of the old size is set.
struct OldFrontier {
    by_level: [Option<Hash>; 64],
}

impl OldFrontier {
    fn of(size: u64, known: &KnownHashes) -> Result<Self, TreeError> {
        let mut by_level = [None; 64];
        let mut missing = Vec::new();
        for (level, slot) in by_level.iter_mut().enumerate() {
            if (size >> level) & 1 == 1 {
                let index = tlog::stored_hash_index(level as u8, (size >> level) - 1);
                match known.hashes.get(&index) {
                    Some(h) => *slot = Some(*h),
                    None => missing.push(index),
                }
            }
        }
        if missing.is_empty() {
            Ok(Self { by_level })
        } else {
            missing.sort_unstable();
            Err(TreeError::Missing(missing))
        }
    }
}

/// The nodes of the new tree that cover the batch: at level `j`, nodes
/// `first >> j ..= (size - 1) >> j`, each over its leaves clipped to the tree (RFC
/// 9162's tree is the complete binary tree with a node whose right half is empty
/// taking its left child's hash).
struct Levels {
    first: u64,
    levels: Vec<Vec<Hash>>,
}

impl Levels {
    fn build(first: u64, size: u64, leaves: &[Hash], old: &OldFrontier) -> Self {
        let mut levels = vec![leaves.to_vec()];
        let mut level = 0usize;
        while (size - 1) >> level > 0 {
            let below = &levels[level];
            let (lo, hi) = (first >> (level + 1), (size - 1) >> (level + 1));
            let mut up = Vec::with_capacity((hi - lo + 1) as usize);
            for i in lo..=hi {
                let (l, r) = (2 * i, 2 * i + 1);
                let left = if l < first >> level {
                    // Complete and left of the batch: the old frontier's node.
                    old.by_level[level].unwrap_or(EMPTY_HASH)
                } else {
                    below[(l - (first >> level)) as usize]
                };
                let node = if r << level < size {
                    tlog::node_hash(left, below[(r - (first >> level)) as usize])
                } else {
                    left
                };
                up.push(node);
            }
            levels.push(up);
            level += 1;
        }
        Self { first, levels }
    }

    /// Node `i` at `level`, which is in the batch's part or is the old frontier's.
    fn node(&self, level: usize, i: u64, old: &OldFrontier) -> Hash {
        let lo = self.first >> level;
        if i < lo {
            old.by_level[level].unwrap_or(EMPTY_HASH)
        } else {
            self.levels[level][(i - lo) as usize]
        }
    }

    fn root(&self) -> Hash {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or(EMPTY_HASH)
    }

    /// RFC 9162 inclusion proof of leaf `n` in the tree of `size`: the sibling at each
    /// level, leaf first, skipping levels where the sibling is past the tree's end.
    fn proof(&self, n: u64, size: u64, old: &OldFrontier) -> Vec<Hash> {
        let height = self.levels.len() - 1;
        let mut proof = Vec::with_capacity(height);
        for level in 0..height {
            let sibling = (n >> level) ^ 1;
            if sibling << level < size {
                proof.push(self.node(level, sibling, old));
            }
        }
        proof
    }

    /// The hashes `tlog` stores for records `first..size`: each record's leaf, then
    /// the complete subtrees it completes, at consecutive stored indexes.
    fn stored(&self, first: u64, size: u64) -> Vec<(u64, Hash)> {
        let mut out = Vec::with_capacity(2 * (size - first) as usize);
        for n in first..size {
            let mut index = stored_index(n);
            let mut level = 0usize;
            loop {
                let i = n >> level;
                out.push((index, self.levels[level][(i - (first >> level)) as usize]));
                index += 1;
                // Record n completes the node above when it ends a right child.
                if ((n + 1) >> level) & 1 == 1 || level + 1 >= self.levels.len() {
                    break;
                }
                level += 1;
            }
        }
        out
    }
}

/// The root of the tree of `size` from the stored hashes `known` holds.
pub fn root(size: u64, known: &KnownHashes) -> Result<Hash, TreeError> {
    known.with(|k| tlog::tree_hash(size, k))
}

/// The inclusion proof of leaf `index` in the tree of `size`.
pub fn prove_inclusion(size: u64, index: u64, known: &KnownHashes) -> Result<Vec<Hash>, TreeError> {
    known.with(|k| tlog::prove_record(size, index, k))
}

/// The consistency proof from the tree of `old` to the tree of `size`.
pub fn prove_consistency(size: u64, old: u64, known: &KnownHashes) -> Result<Vec<Hash>, TreeError> {
    known.with(|k| tlog::prove_tree(size, old, k))
}

/// Check that `leaf` is leaf `index` of the tree of `size` with root `root`.
pub fn check_inclusion(
    proof: &[Hash],
    size: u64,
    root: Hash,
    index: u64,
    leaf: Hash,
) -> Result<(), TreeError> {
    Ok(tlog::check_record(
        &proof.to_vec(),
        size,
        root,
        index,
        leaf,
    )?)
}

/// Check that the tree of `old` with root `old_root` is a prefix of the tree of `size`
/// with root `root`.
pub fn check_consistency(
    proof: &[Hash],
    size: u64,
    root: Hash,
    old: u64,
    old_root: Hash,
) -> Result<(), TreeError> {
    Ok(tlog::check_tree(
        &proof.to_vec(),
        size,
        root,
        old,
        old_root,
    )?)
}

/// The indexes of the stored hashes an inclusion proof of `index` in the tree of
/// `size` reads, to load them before [`prove_inclusion`].
pub fn inclusion_needs(size: u64, index: u64) -> Vec<u64> {
    let probe = KnownHashes::default();
    match probe.with(|k| tlog::prove_record(size, index, k)) {
        Err(TreeError::Missing(m)) => m,
        _ => Vec::new(),
    }
}

/// The indexes of the stored hashes the root of the tree of `size` is made of.
pub fn root_needs(size: u64) -> Vec<u64> {
    let probe = KnownHashes::default();
    match probe.with(|k| tlog::tree_hash(size, k)) {
        Err(TreeError::Missing(m)) => m,
        _ => Vec::new(),
    }
}

/// The indexes of the stored hashes a consistency proof from `old` to `size` reads.
pub fn consistency_needs(size: u64, old: u64) -> Vec<u64> {
    let probe = KnownHashes::default();
    match probe.with(|k| tlog::prove_tree(size, old, k)) {
        Err(TreeError::Missing(m)) => m,
        _ => Vec::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn leaf(i: u64) -> Hash {
        leaf_hash(format!("record {i}").as_bytes())
    }

    /// RFC 9162's MTH, written out from its definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => EMPTY_HASH,
            1 => leaves[0],
            n => {
                // The largest power of two smaller than n.
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                tlog::node_hash(mth(&leaves[..k]), mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn the_empty_and_one_leaf_trees_are_rfc_9162s() {
        assert_eq!(
            EMPTY_HASH.0.to_vec(),
            ring::digest::digest(&ring::digest::SHA256, b"").as_ref()
        );
        let mut known = KnownHashes::default();
        let a = append(0, &[leaf(0)], &mut known).unwrap();
        assert_eq!(a.root, leaf(0));
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(b"record 0");
        assert_eq!(
            leaf(0).0.to_vec(),
            ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Batches of any sizes, appended with only the frontier held, give RFC 9162's
        /// root and proofs that check; a full store gives consistency proofs.
        #[test]
        fn batches_match_the_definition(batches in proptest::collection::vec(1usize..40, 1..12)) {
            let mut known = KnownHashes::default();
            let mut by_tlog = KnownHashes::default();
            let mut all = KnownHashes::default();
            let mut leaves = Vec::new();
            let mut roots = vec![EMPTY_HASH];
            for b in batches {
                let size = leaves.len() as u64;
                let new: Vec<Hash> = (size..size + b as u64).map(leaf).collect();
                leaves.extend_from_slice(&new);
                let a = append(size, &new, &mut known).unwrap();
                // The hashes stored are the ones tlog stores, record by record.
                let stored = extend(size, &new, &mut by_tlog).unwrap();
                by_tlog.retain(&frontier(a.size));
                prop_assert_eq!(&a.stored, &stored);
                prop_assert_eq!(a.size, leaves.len() as u64);
                prop_assert_eq!(a.root, mth(&leaves));
                for (i, proof) in (size..).zip(&a.proofs) {
                    check_inclusion(proof, a.size, a.root, i, leaves[i as usize]).unwrap();
                    prop_assert!(check_inclusion(proof, a.size, a.root, i, leaf(9_999)).is_err());
                }
                for (i, h) in &a.stored {
                    all.insert(*i, *h);
                }
                prop_assert!(known.lacking(&frontier(a.size)).is_empty());
                let max = all.max_index();
                prop_assert_eq!(size_of(max), a.size);
                roots.push(a.root);
            }
            let size = leaves.len() as u64;
            let root = *roots.last().unwrap();
            prop_assert_eq!(super::root(size, &all).unwrap(), root);
            for old in 1..=size {
                let proof = prove_consistency(size, old, &all).unwrap();
                check_consistency(&proof, size, root, old, mth(&leaves[..old as usize])).unwrap();
                prop_assert!(consistency_needs(size, old).iter().all(|i| all.lacking(&[*i]).is_empty()));
            }
            for i in 0..size {
                let proof = prove_inclusion(size, i, &all).unwrap();
                check_inclusion(&proof, size, root, i, leaves[i as usize]).unwrap();
            }
        }
    }

    #[test]
    fn a_rewritten_history_is_not_consistent() {
        let mut known = KnownHashes::default();
        let leaves: Vec<Hash> = (0..10).map(leaf).collect();
        let old = append(0, &leaves[..6], &mut known).unwrap();
        let mut all = KnownHashes::default();
        let mut forked = leaves.clone();
        forked[3] = leaf(333);
        let mut k2 = KnownHashes::default();
        let fork = append(0, &forked, &mut k2).unwrap();
        for (i, h) in fork.stored {
            all.insert(i, h);
        }
        let proof = prove_consistency(10, 6, &all).unwrap();
        assert!(check_consistency(&proof, 10, fork.root, 6, old.root).is_err());
    }

    #[test]
    fn missing_hashes_are_named() {
        let known = KnownHashes::default();
        let needs = inclusion_needs(10, 3);
        assert!(!needs.is_empty());
        match prove_inclusion(10, 3, &known) {
            Err(TreeError::Missing(m)) => assert_eq!(m, needs),
            other => panic!("{other:?}"),
        }
    }
}
