//! What auditors and monitors follow the log with: the latest signed checkpoint,
//! inclusion and consistency proofs read from the stored tree, and the records'
//! exact bytes to recompute the tree from. Served by the auditor API and printed by
//! `tongban audit checkpoint|prove|consistency`.

use futures_util::TryStreamExt as _;

use crate::chain::Row;
use crate::error::AuditError;
use crate::store::AuditStore;
use crate::tlog::tree::{self, Hash, KnownHashes};

/// Most records one [`AuditStore::entries`] call returns.
pub const MAX_ENTRIES: usize = 1000;

/// Why a proof or a range of records cannot be given.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FollowError {
    /// An argument that is never valid (`old` 0, `from` below 1, `limit` outside
    /// 1 to [`MAX_ENTRIES`]), named.
    #[error("{parameter}: {reason}")]
    Argument {
        /// The parameter (`old`, `from`, `limit`).
        parameter: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A well-formed number beyond what the log holds now (an index not in the tree,
    /// a size beyond the stored tree, records archived), named.
    #[error("{parameter}: {reason}")]
    Beyond {
        /// The parameter (`index`, `size`, `old`, `from`).
        parameter: &'static str,
        /// What is out of reach.
        reason: String,
    },
    /// The store failed, or lacks a stored hash the proof needs.
    #[error(transparent)]
    Store(#[from] AuditError),
}

fn argument(parameter: &'static str, reason: String) -> FollowError {
    FollowError::Argument { parameter, reason }
}

fn beyond(parameter: &'static str, reason: String) -> FollowError {
    FollowError::Beyond { parameter, reason }
}

/// A proof and the tree size it is for.
#[derive(Debug, Clone, PartialEq)]
pub struct Proof {
    /// The tree size the proof leads to.
    pub size: u64,
    /// The proof's hashes, in RFC 9162 order.
    pub hashes: Vec<Hash>,
}

impl Proof {
    /// The hashes in standard base64 (as receipts and the auditor API give them).
    pub fn base64(&self) -> Vec<String> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        self.hashes.iter().map(|h| b64.encode(h.0)).collect()
    }
}

impl AuditStore {
    /// `size`, or the size of the stored tree when `None`; it must not exceed the
    /// stored tree.
    async fn proof_size(&self, size: Option<u64>) -> Result<u64, FollowError> {
        let stored = self.tree_size().await?;
        match size {
            None => Ok(stored),
            Some(s) if s > stored => Err(beyond(
                "size",
                format!("{s} is beyond the stored tree of {stored} records"),
            )),
            Some(s) => Ok(s),
        }
    }

    /// The stored hashes at `indexes`, all of them, held for a proof.
    async fn known(&self, indexes: &[u64]) -> Result<KnownHashes, FollowError> {
        let mut known = KnownHashes::default();
        for (i, h) in self.tree_hashes(indexes).await? {
            known.insert(i, h);
        }
        Ok(known)
    }

    /// The inclusion proof of leaf `index` (record `index + 1`) in the tree of `size`
    /// records (default: the stored tree).
    pub async fn inclusion_proof(
        &self,
        index: u64,
        size: Option<u64>,
    ) -> Result<Proof, FollowError> {
        let size = self.proof_size(size).await?;
        if index >= size {
            return Err(beyond(
                "index",
                format!("{index} is not a leaf of the tree of {size} records"),
            ));
        }
        let known = self.known(&tree::inclusion_needs(size, index)).await?;
        let hashes = tree::prove_inclusion(size, index, &known)
            .map_err(|e| AuditError::Store(format!("audit tree: {e}")))?;
        Ok(Proof { size, hashes })
    }

    /// The consistency proof from the tree of `old` records to the tree of `size`
    /// (default: the stored tree).
    pub async fn consistency_proof(
        &self,
        old: u64,
        size: Option<u64>,
    ) -> Result<Proof, FollowError> {
        let size = self.proof_size(size).await?;
        if old == 0 {
            return Err(argument("old", "0 is not a tree size".into()));
        }
        if old > size {
            return Err(beyond(
                "old",
                format!("{old} is larger than the tree of {size} records"),
            ));
        }
        let known = self.known(&tree::consistency_needs(size, old)).await?;
        let hashes = tree::prove_consistency(size, old, &known)
            .map_err(|e| AuditError::Store(format!("audit tree: {e}")))?;
        Ok(Proof { size, hashes })
    }

    /// Up to `limit` (1 to [`MAX_ENTRIES`]) records from `from` on, each with its
    /// exact stored bytes (the tree's leaf is `SHA-256(0x00 ‖ record)`). Records moved
    /// to archive files are not served: asking for them is an error naming where the
    /// stored ones begin.
    pub async fn entries(&self, from: i64, limit: usize) -> Result<Vec<Row>, FollowError> {
        if from < 1 {
            return Err(argument("from", format!("{from} is not a sequence number")));
        }
        if !(1..=MAX_ENTRIES).contains(&limit) {
            return Err(argument(
                "limit",
                format!("{limit} is not a number from 1 to {MAX_ENTRIES}"),
            ));
        }
        let Some((first, _)) = self.bounds().await? else {
            return Ok(Vec::new());
        };
        if from < first {
            return Err(beyond(
                "from",
                format!("records before {first} were moved to archive files"),
            ));
        }
        let to = from.saturating_add(i64::try_from(limit).unwrap_or(1) - 1);
        Ok(self.rows(from, to).try_collect().await?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::tlog::checkpoint::SignedCheckpoint;
    use crate::{AuditEntry, AuditLog, Database};

    #[tokio::test]
    async fn proofs_from_the_store_check_against_the_signed_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::Sqlite(dir.path().join("state.db"));
        let signer = crate::log::tests::test_signer();
        let settings = crate::log::tests::settings(5);
        let log = AuditLog::open(&db, Arc::clone(&signer), settings)
            .await
            .unwrap();
        assert_eq!(log.latest_checkpoint().await.unwrap(), None);
        let mut notes = Vec::new();
        for i in 0..23 {
            let r = log
                .append(AuditEntry {
                    request_id: format!("r{i}"),
                    ..Default::default()
                })
                .await
                .unwrap();
            let latest = log.latest_checkpoint().await.unwrap().unwrap();
            assert_eq!(latest, *r.checkpoint, "the last note signed");
            notes.push(SignedCheckpoint::parse(&latest).unwrap());
        }
        let store = log.store();
        let records: Vec<Row> = store.entries(1, 100).await.unwrap();
        assert_eq!(records.len(), 23);
        assert_eq!(store.entries(21, 2).await.unwrap().len(), 2);
        for n in &notes {
            n.verify(signer.public_key()).unwrap();
            for index in [0, n.size / 2, n.size - 1] {
                let p = store.inclusion_proof(index, Some(n.size)).await.unwrap();
                let leaf = tree::leaf_hash(records[index as usize].record.as_bytes());
                tree::check_inclusion(&p.hashes, n.size, n.root, index, leaf).unwrap();
                let other = tree::leaf_hash(b"not the record");
                assert!(tree::check_inclusion(&p.hashes, n.size, n.root, index, other).is_err());
            }
            let last = notes.last().unwrap();
            let p = store.consistency_proof(n.size, None).await.unwrap();
            assert_eq!(p.size, 23);
            tree::check_consistency(&p.hashes, 23, last.root, n.size, n.root).unwrap();
            if n.size > 1 {
                // The proof of another old size does not fit this one.
                let q = store.consistency_proof(n.size - 1, None).await.unwrap();
                assert!(tree::check_consistency(&q.hashes, 23, last.root, n.size, n.root).is_err());
            }
        }
        // Out of range, named.
        for (e, parameter) in [
            (store.inclusion_proof(23, None).await.err(), "index"),
            (store.inclusion_proof(0, Some(24)).await.err(), "size"),
            (store.consistency_proof(0, None).await.err(), "old"),
            (store.consistency_proof(5, Some(4)).await.err(), "old"),
            (store.entries(0, 10).await.err(), "from"),
            (store.entries(1, 0).await.err(), "limit"),
            (store.entries(1, MAX_ENTRIES + 1).await.err(), "limit"),
        ] {
            match e {
                Some(
                    FollowError::Argument { parameter: p, .. }
                    | FollowError::Beyond { parameter: p, .. },
                ) => assert_eq!(p, parameter),
                other => panic!("{parameter}: {other:?}"),
            }
        }
        // Stored notes: the latest is the one a reopened log starts from.
        log.close().await;
        let stored = store.latest_note().await.unwrap().unwrap();
        assert_eq!(
            SignedCheckpoint::parse(&stored).unwrap().size,
            23,
            "sealed at close"
        );
        let cps = store.checkpoints(1, 23).await.unwrap();
        assert!(cps.iter().all(|c| c.format() == "note"), "{cps:?}");
    }
}
