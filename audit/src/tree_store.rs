//! The Merkle tree's stored hashes, `audit_tree (idx, hash)`: tlog's stored-hash index
//! and the 32-byte hash. Written by the writers in each batch's transaction; read for
//! a writer's frontier, for proofs, and to catch up a log from before the tree.

use futures_util::TryStreamExt as _;

use crate::error::AuditError;
use crate::frontier::{leaves, Frontier, CATCH_UP_CHUNK};
use crate::store::AuditStore;
use crate::tlog::tree::{self, Hash};

fn to_hash(idx: i64, bytes: &[u8]) -> Result<(u64, Hash), AuditError> {
    let hash: [u8; 32] = bytes.try_into().map_err(|_| {
        AuditError::Store(format!(
            "audit_tree row {idx} holds {} bytes, not a SHA-256",
            bytes.len()
        ))
    })?;
    let idx = u64::try_from(idx)
        .map_err(|_| AuditError::Store(format!("audit_tree has a negative index {idx}")))?;
    Ok((idx, Hash(hash)))
}

fn to_idx(i: u64) -> Result<i64, AuditError> {
    i64::try_from(i).map_err(|_| AuditError::Store(format!("tree index {i} out of range")))
}

/// Read the stored hashes at `indexes` on a PostgreSQL connection (those present).
pub(crate) async fn read_pg(
    conn: &mut sqlx::PgConnection,
    indexes: &[u64],
) -> Result<Vec<(u64, Hash)>, AuditError> {
    let idx = indexes
        .iter()
        .map(|i| to_idx(*i))
        .collect::<Result<Vec<_>, _>>()?;
    let rows: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT idx, hash FROM audit_tree WHERE idx = ANY($1)")
            .bind(idx)
            .fetch_all(&mut *conn)
            .await?;
    rows.iter().map(|(i, h)| to_hash(*i, h)).collect()
}

/// Insert stored hashes on a PostgreSQL connection, one statement.
pub(crate) async fn insert_pg(
    conn: &mut sqlx::PgConnection,
    stored: &[(u64, Hash)],
) -> Result<(), AuditError> {
    if stored.is_empty() {
        return Ok(());
    }
    let idx = stored
        .iter()
        .map(|(i, _)| to_idx(*i))
        .collect::<Result<Vec<_>, _>>()?;
    let hashes: Vec<Vec<u8>> = stored.iter().map(|(_, h)| h.0.to_vec()).collect();
    // Another gateway catching up the same log writes the same hashes.
    sqlx::query(
        "INSERT INTO audit_tree (idx, hash) SELECT * FROM UNNEST($1::bigint[], $2::bytea[]) \
         ON CONFLICT (idx) DO NOTHING",
    )
    .bind(idx)
    .bind(hashes)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl AuditStore {
    /// The stored tree hashes at `indexes` (those present), in no particular order.
    pub async fn tree_hashes(&self, indexes: &[u64]) -> Result<Vec<(u64, Hash)>, AuditError> {
        match self {
            Self::Postgres(p) => read_pg(&mut *p.acquire().await?, indexes).await,
            Self::Sqlite(p) => {
                let mut out = Vec::with_capacity(indexes.len());
                let mut conn = p.acquire().await?;
                for i in indexes {
                    let row: Option<Vec<u8>> =
                        sqlx::query_scalar("SELECT hash FROM audit_tree WHERE idx = ?1")
                            .bind(to_idx(*i)?)
                            .fetch_optional(&mut *conn)
                            .await?;
                    if let Some(h) = row {
                        out.push(to_hash(to_idx(*i)?, &h)?);
                    }
                }
                Ok(out)
            }
        }
    }

    /// The stored hashes with indexes in `range`, in index order, as stored (`verify`
    /// compares them byte for byte).
    pub(crate) async fn tree_rows(
        &self,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<(i64, Vec<u8>)>, AuditError> {
        let (lo, hi) = (to_idx(range.start)?, to_idx(range.end)?);
        Ok(match self {
            Self::Sqlite(p) => {
                sqlx::query_as(
                    "SELECT idx, hash FROM audit_tree WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
                )
                .bind(lo)
                .bind(hi)
                .fetch_all(p)
                .await?
            }
            Self::Postgres(p) => {
                sqlx::query_as(
                    "SELECT idx, hash FROM audit_tree WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                )
                .bind(lo)
                .bind(hi)
                .fetch_all(p)
                .await?
            }
        })
    }

    /// How many records the stored tree covers.
    pub async fn tree_size(&self) -> Result<u64, AuditError> {
        let sql = "SELECT MAX(idx) FROM audit_tree";
        let max: Option<i64> = match self {
            Self::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await?,
            Self::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await?,
        };
        Ok(tree::size_of(max.and_then(|m| u64::try_from(m).ok())))
    }

    async fn insert_tree(&self, stored: &[(u64, Hash)]) -> Result<(), AuditError> {
        match self {
            Self::Postgres(p) => insert_pg(&mut *p.acquire().await?, stored).await,
            Self::Sqlite(p) => {
                let mut tx = p.begin().await?;
                for (i, h) in stored {
                    sqlx::query("INSERT OR IGNORE INTO audit_tree (idx, hash) VALUES (?1, ?2)")
                        .bind(to_idx(*i)?)
                        .bind(h.0.to_vec())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }
        }
    }

    /// Add to the tree the records it does not cover yet (a log written before the
    /// tree existed): how many. Idempotent; two processes doing it at once write the
    /// same hashes.
    pub async fn catch_up_tree(&self) -> Result<u64, AuditError> {
        let size = self.tree_size().await?;
        let Some((first, head)) = self.bounds().await? else {
            return Ok(0);
        };
        let next = i64::try_from(size).unwrap_or(i64::MAX).saturating_add(1);
        if next > head {
            return Ok(0);
        }
        if next < first {
            return Err(AuditError::Store(format!(
                "the audit tree covers records up to {size}, but records {next}..{first} were \
                 archived before the tree existed; restore them from their archive files"
            )));
        }
        let mut frontier = Frontier::default();
        frontier.restart(size, self.tree_hashes(&tree::frontier(size)).await?);
        let mut rows = self.rows(next, head);
        let mut expected = next;
        let mut chunk = Vec::new();
        loop {
            let row = rows.try_next().await?;
            if let Some(r) = &row {
                if r.seq != expected {
                    return Err(AuditError::Store(format!(
                        "record {expected} is missing while catching up the audit tree"
                    )));
                }
                expected += 1;
            }
            let last = row.is_none();
            if let Some(r) = row {
                chunk.push(r.record);
            }
            if chunk.len() as i64 >= CATCH_UP_CHUNK || (last && !chunk.is_empty()) {
                let stored = frontier.catch_up(&chunk)?;
                self.insert_tree(&stored).await?;
                chunk.clear();
            }
            if last {
                break;
            }
        }
        Ok(leaves(head) - size)
    }
}
