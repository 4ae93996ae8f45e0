//! Witnesses' cosignatures as the log keeps them, and how far they vouch for it.
//!
//! The gateway submits its checkpoints to its witnesses ([`crate::witness`]) and keeps
//! every cosigned checkpoint in `audit_cosignature`. `tongban audit verify` asks
//! [`witnessed`]: for each witness, the largest tree it cosigned whose cosignature and
//! log signature hold and whose root is the stored tree's root at that size. A store
//! rewritten after a witness cosigned no longer has that root: the cosignature then
//! names the size where history changed.

use crate::error::AuditError;
use crate::store::AuditStore;
use crate::tlog::checkpoint::SignedCheckpoint;
use crate::tlog::cosignature::cosigned_at;
use crate::tlog::note::Verifier;
use crate::tlog::tree::{self, KnownHashes};

impl AuditStore {
    /// Keep `note`, the checkpoint of `size` records cosigned by `witness`.
    pub async fn add_cosignature(
        &self,
        witness: &str,
        size: u64,
        note: &str,
    ) -> Result<(), AuditError> {
        let size = i64::try_from(size).map_err(|_| AuditError::Store("tree size".into()))?;
        match self {
            Self::Sqlite(p) => {
                sqlx::query(
                    "INSERT OR REPLACE INTO audit_cosignature (witness, size, note) VALUES (?1, ?2, ?3)",
                )
                .bind(witness)
                .bind(size)
                .bind(note)
                .execute(p)
                .await?;
            }
            Self::Postgres(p) => {
                sqlx::query(
                    "INSERT INTO audit_cosignature (witness, size, note) VALUES ($1, $2, $3) \
                     ON CONFLICT (witness, size) DO UPDATE SET note = EXCLUDED.note",
                )
                .bind(witness)
                .bind(size)
                .bind(note)
                .execute(p)
                .await?;
            }
        }
        Ok(())
    }

    /// The largest tree size each witness cosigned, by witness name.
    pub async fn cosigned_sizes(&self) -> Result<Vec<(String, u64)>, AuditError> {
        let sql = "SELECT witness, MAX(size) FROM audit_cosignature GROUP BY witness";
        let rows: Vec<(String, i64)> = match self {
            Self::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await?,
            Self::Postgres(p) => sqlx::query_as(sql).fetch_all(p).await?,
        };
        Ok(rows
            .into_iter()
            .map(|(w, s)| (w, u64::try_from(s).unwrap_or(0)))
            .collect())
    }

    /// The cosigned checkpoints of `witness`, largest first.
    pub async fn cosignatures(&self, witness: &str) -> Result<Vec<(u64, String)>, AuditError> {
        let rows: Vec<(i64, String)> = match self {
            Self::Sqlite(p) => sqlx::query_as(
                "SELECT size, note FROM audit_cosignature WHERE witness = ?1 ORDER BY size DESC",
            )
            .bind(witness)
            .fetch_all(p)
            .await?,
            Self::Postgres(p) => sqlx::query_as(
                "SELECT size, note FROM audit_cosignature WHERE witness = $1 ORDER BY size DESC",
            )
            .bind(witness)
            .fetch_all(p)
            .await?,
        };
        Ok(rows
            .into_iter()
            .map(|(s, n)| (u64::try_from(s).unwrap_or(0), n))
            .collect())
    }
}

/// How far one witness vouches for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Witnessed {
    /// The witness cosigned the tree of `size` records (at unix `time`), and the store
    /// holds that tree.
    Upto {
        /// Tree size.
        size: u64,
        /// Unix seconds of the cosignature.
        time: u64,
    },
    /// Nothing this witness cosigned is stored.
    Never,
    /// The witness cosigned a tree of `size` records that the store no longer holds:
    /// history was rewritten at or before that size.
    Contradicted {
        /// The size cosigned.
        size: u64,
        /// What differs.
        reason: String,
    },
}

/// How far `witness` vouches for the log of `store`, whose checkpoints `log` signs:
/// the largest cosigned checkpoint whose signatures hold, checked against the stored
/// tree. Rows whose signatures do not hold are skipped (they vouch for nothing).
pub async fn witnessed(
    store: &AuditStore,
    log: &Verifier,
    witness: &Verifier,
) -> Result<Witnessed, AuditError> {
    let stored = store.tree_size().await?;
    for (size, text) in store.cosignatures(&witness.name).await? {
        let Ok(checkpoint) = SignedCheckpoint::parse(&text) else {
            continue;
        };
        if checkpoint.note.verify(log).is_err() || checkpoint.size != size {
            continue;
        }
        let Ok(time) = cosigned_at(&checkpoint.note, witness) else {
            continue;
        };
        let root = checkpoint.root;
        if size > stored {
            return Ok(Witnessed::Contradicted {
                size,
                reason: format!("the store holds a tree of only {stored} records"),
            });
        }
        let mut known = KnownHashes::default();
        for (i, h) in store.tree_hashes(&tree::root_needs(size)).await? {
            known.insert(i, h);
        }
        let ours =
            tree::root(size, &known).map_err(|e| AuditError::Store(format!("audit tree: {e}")))?;
        return Ok(if ours == root {
            Witnessed::Upto { size, time }
        } else {
            Witnessed::Contradicted {
                size,
                reason: "the stored tree of that size has another root".into(),
            }
        });
    }
    Ok(Witnessed::Never)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::log::tests::test_signer;
    use crate::tlog::cosignature::verifier;
    use crate::tlog::note::tests::new_key;
    use crate::tlog::note::TYPE_ED25519;
    use crate::witness::{AddCheckpoint, FollowedLog, Witness};
    use crate::{AuditEntry, AuditLog, AuditSettings, Database};

    const ORIGIN: &str = "tongban.test/audit";

    #[tokio::test]
    async fn a_cosigned_tree_vouches_until_the_store_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::Sqlite(dir.path().join("state.db"));
        let signer = test_signer();
        let settings = AuditSettings {
            node: "gw-test".into(),
            origin: ORIGIN.into(),
            batch_max: 8,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(3600),
            checkpoint_file: None,
            metrics: None,
        };
        let log = AuditLog::open(&db, std::sync::Arc::clone(&signer), settings)
            .await
            .unwrap();
        let mut last = None;
        for i in 0..3 {
            let entry = AuditEntry {
                request_id: format!("r{i}"),
                ..AuditEntry::default()
            };
            last = Some(log.append(entry).await.unwrap());
        }
        let receipt = last.unwrap();
        let log_key = Verifier::new(ORIGIN, TYPE_ED25519, signer.public_key()).unwrap();
        let witness_key = new_key();
        let witness_verifier = verifier("witness.test", &witness_key).unwrap();
        let w = Witness::open(
            "witness.test",
            witness_key,
            vec![FollowedLog::new(ORIGIN, signer.public_key()).unwrap()],
            &dir.path().join("witness.json"),
        )
        .unwrap();
        let store = log.store().clone();
        assert_eq!(
            witnessed(&store, &log_key, &witness_verifier)
                .await
                .unwrap(),
            Witnessed::Never
        );

        let request = AddCheckpoint {
            old: 0,
            proof: Vec::new(),
            checkpoint: receipt.checkpoint.to_string(),
        };
        let line = w.add_checkpoint(&request.body(), 1_790_000_000).unwrap();
        let cosigned = format!("{}{line}", receipt.checkpoint.text());
        store
            .add_cosignature("witness.test", 3, &cosigned)
            .await
            .unwrap();
        // A row whose cosignature does not hold vouches for nothing.
        store
            .add_cosignature("witness.test", 2, &receipt.checkpoint)
            .await
            .unwrap();
        assert_eq!(
            store.cosigned_sizes().await.unwrap(),
            vec![("witness.test".to_owned(), 3)]
        );
        assert_eq!(
            witnessed(&store, &log_key, &witness_verifier)
                .await
                .unwrap(),
            Witnessed::Upto {
                size: 3,
                time: 1_790_000_000
            }
        );

        // History rewritten under the cosigned size (the node over records 1 and 2):
        // the stored root differs.
        let AuditStore::Sqlite(pool) = &store else {
            panic!("sqlite")
        };
        sqlx::query("UPDATE audit_tree SET hash = zeroblob(32) WHERE idx = 2")
            .execute(pool)
            .await
            .unwrap();
        assert!(matches!(
            witnessed(&store, &log_key, &witness_verifier)
                .await
                .unwrap(),
            Witnessed::Contradicted { size: 3, .. }
        ));
    }
}
