//! The Merkle tree recomputed from the records as `verify` walks them, checked
//! against the stored tree and the signed notes.
//!
//! The walk hands the records' leaf hashes over in order, a chunk at a time. The tree
//! is kept as its frontier (the roots of its complete subtrees, largest first), the
//! way a binary counter carries: adding leaf `n` emits exactly the hashes tlog stores
//! for record `n` — the leaf, then one interior node per trailing one bit of `n` —
//! under consecutive stored indexes. So the stored tree, read in index order, is
//! compared hash for hash with what the records give: a changed `audit_tree` row (which
//! would serve false proofs) is named by its index and record. When the tree reaches
//! the size of a signed note, its root must be the note's; that makes every note
//! consistent with the next, since both are roots of one recomputed tree.

use std::collections::BTreeMap;
use std::ops::Range;

use ring::digest::{Context, SHA256};

use super::failure::VerifyFailure;
use crate::tlog::tree::{stored_index, Hash};

/// Leaf hash `SHA-256(0x00 ‖ record)` (RFC 9162 §2.1.1).
pub(crate) fn leaf_hash(record: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0]);
    ctx.update(record);
    digest(ctx)
}

/// Interior node `SHA-256(0x01 ‖ left ‖ right)`.
fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[1]);
    ctx.update(&left.0);
    ctx.update(&right.0);
    digest(ctx)
}

fn digest(ctx: Context) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Hash(out)
}

/// A signed note's root, to meet when the tree reaches its size.
#[derive(Debug, Clone)]
pub(crate) struct SignedRoot {
    /// The root hash the note signs.
    pub(crate) root: Hash,
    /// Who signed it, for messages.
    pub(crate) origin: String,
}

/// The tree recomputed so far and what it was checked against.
#[derive(Debug, Clone)]
pub(crate) struct TreeCheck {
    /// Roots of the complete subtrees, largest (leftmost) first.
    frontier: Vec<Hash>,
    /// Leaves added.
    size: u64,
    /// Signed roots by tree size.
    notes: BTreeMap<u64, SignedRoot>,
    /// Leaves recomputed by this walk.
    pub(crate) leaves: u64,
    /// Stored hashes compared.
    pub(crate) rows: u64,
    /// Largest note size whose root matched.
    pub(crate) sealed: u64,
    /// The first stored index missing, when the stored tree stops short of the
    /// records (a log the writer has not caught up yet).
    pub(crate) stored_end: Option<u64>,
}

impl TreeCheck {
    /// Continue the tree of `size` leaves whose frontier is `frontier` (empty at 0).
    pub(crate) fn new(size: u64, frontier: Vec<Hash>, notes: BTreeMap<u64, SignedRoot>) -> Self {
        Self {
            frontier,
            size,
            notes,
            leaves: 0,
            rows: 0,
            sealed: 0,
            stored_end: None,
        }
    }

    /// Leaves in the tree so far.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The stored indexes the next `n` leaves produce: what to read from `audit_tree`
    /// for [`TreeCheck::add`].
    pub(crate) fn rows_for(&self, n: u64) -> Range<u64> {
        stored_index(self.size)..stored_index(self.size + n)
    }

    /// The current root (RFC 9162 MTH of the leaves so far).
    fn root(&self) -> Option<Hash> {
        let mut it = self.frontier.iter().rev();
        let mut h = *it.next()?;
        for left in it {
            h = node_hash(left, &h);
        }
        Some(h)
    }

    /// Add the next `leaves`; `stored` holds the `audit_tree` rows of
    /// [`TreeCheck::rows_for`]`(leaves.len())`, in index order.
    pub(crate) fn add(
        &mut self,
        leaves: &[Hash],
        stored: &[(i64, Vec<u8>)],
    ) -> Result<(), VerifyFailure> {
        let mut rows = stored.iter().peekable();
        let mut next = stored_index(self.size);
        for leaf in leaves {
            let n = self.size;
            let seq = i64::try_from(n + 1).unwrap_or(i64::MAX);
            let mut h = *leaf;
            let mut level = 0;
            loop {
                // The stored row at `next`, if the stored tree has it.
                let row = rows.next_if(|(i, _)| u64::try_from(*i).ok() == Some(next));
                match row {
                    Some((_, bytes)) => {
                        if let Some(end) = self.stored_end {
                            return Err(VerifyFailure {
                                seq,
                                reason: format!(
                                    "audit_tree row {end} is missing, yet row {next} exists: stored tree hashes were deleted"
                                ),
                            });
                        }
                        if bytes.as_slice() != h.0 {
                            return Err(VerifyFailure {
                                seq,
                                reason: format!(
                                    "audit_tree row {next} (record {seq}, level {level}) holds {} but the records give {}: a changed stored hash serves false proofs",
                                    hex::encode(bytes),
                                    hex::encode(h.0)
                                ),
                            });
                        }
                        self.rows += 1;
                    }
                    None => {
                        self.stored_end.get_or_insert(next);
                    }
                }
                next += 1;
                if (n >> level) & 1 == 0 {
                    break;
                }
                let Some(left) = self.frontier.pop() else {
                    break;
                };
                h = node_hash(&left, &h);
                level += 1;
            }
            self.frontier.push(h);
            self.size += 1;
            self.leaves += 1;
            self.check_note()?;
        }
        Ok(())
    }

    /// At a signed note's size, its root must be the recomputed one.
    fn check_note(&mut self) -> Result<(), VerifyFailure> {
        let Some(note) = self.notes.get(&self.size) else {
            return Ok(());
        };
        if self.root() == Some(note.root) {
            self.sealed = self.size;
            return Ok(());
        }
        let from = self.sealed + 1;
        Err(VerifyFailure {
            seq: i64::try_from(from).unwrap_or(i64::MAX),
            reason: format!(
                "the Merkle root of records 1..={} is not the one the signed note of tree size {} by {} holds: records {from}..={} were changed after it was signed (or the note was)",
                self.size, self.size, note.origin, self.size
            ),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tlog::tree::{self, KnownHashes};

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("r{i}").as_bytes()))
            .collect()
    }

    /// The stored rows tlog writes for `leaves`, as `audit_tree` holds them.
    fn stored(leaves: &[Hash]) -> (Vec<(i64, Vec<u8>)>, Vec<Hash>) {
        let mut known = KnownHashes::default();
        let mut roots = Vec::new();
        let mut rows = Vec::new();
        for (i, l) in leaves.iter().enumerate() {
            let a = tree::append(i as u64, &[*l], &mut known).unwrap();
            rows.extend(a.stored.iter().map(|(i, h)| (*i as i64, h.0.to_vec())));
            roots.push(a.root);
        }
        (rows, roots)
    }

    #[test]
    fn recomputes_tlogs_stored_hashes_and_roots_in_any_chunks() {
        assert_eq!(leaf_hash(b"x"), tree::leaf_hash(b"x"));
        let l = leaves(100);
        let (rows, roots) = stored(&l);
        let notes: BTreeMap<u64, SignedRoot> = [7u64, 64, 100]
            .into_iter()
            .map(|s| {
                (
                    s,
                    SignedRoot {
                        root: roots[s as usize - 1],
                        origin: "log".into(),
                    },
                )
            })
            .collect();
        for chunk in [1, 3, 16, 100] {
            let mut t = TreeCheck::new(0, Vec::new(), notes.clone());
            for c in l.chunks(chunk) {
                let r = t.rows_for(c.len() as u64);
                let part: Vec<_> = rows
                    .iter()
                    .filter(|(i, _)| r.contains(&(*i as u64)))
                    .cloned()
                    .collect();
                t.add(c, &part).unwrap();
            }
            assert_eq!(
                (t.size(), t.rows, t.sealed, t.stored_end),
                (100, rows.len() as u64, 100, None)
            );
            assert_eq!(t.root(), Some(roots[99]));
        }
    }

    #[test]
    fn names_a_changed_row_a_hole_and_a_wrong_root() {
        let l = leaves(40);
        let (rows, roots) = stored(&l);
        let run = |rows: &[(i64, Vec<u8>)], notes: BTreeMap<u64, SignedRoot>| {
            let mut t = TreeCheck::new(0, Vec::new(), notes);
            t.add(&l, rows).map(|()| t)
        };
        // Row 30 is the level-4 node completed by leaf 15 (record 16): stored indexes
        // 26..=30 are leaf 15's.
        let mut changed = rows.clone();
        let at = changed.iter().position(|(i, _)| *i == 30).unwrap();
        changed[at].1[0] ^= 1;
        let f = run(&changed, BTreeMap::new()).err().unwrap();
        assert!(f.reason.contains("audit_tree row 30"), "{}", f.reason);
        assert_eq!(f.seq, 16);
        let mut holed = rows.clone();
        holed.remove(at);
        let f = run(&holed, BTreeMap::new()).err().unwrap();
        assert!(f.reason.contains("row 30 is missing"), "{}", f.reason);
        // A stored tree that stops short is not a failure: it is caught up later.
        let t = run(&rows[..at], BTreeMap::new()).unwrap();
        assert_eq!(t.stored_end, Some(30));
        let wrong = [(
            20,
            SignedRoot {
                root: roots[18],
                origin: "log".into(),
            },
        )]
        .into();
        let f = run(&rows, wrong).err().unwrap();
        assert_eq!(f.seq, 1);
        assert!(f.reason.contains("tree size 20"), "{}", f.reason);
    }
}
