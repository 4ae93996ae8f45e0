//! The outcome of each `tongban audit verify` run, kept beside the log so that the
//! health API and the console can say when the log was last verified and how that
//! went. A row is outside the tree and anyone who can write the database can forge
//! one: it tells an officer when to run `verify` again, it vouches for nothing.

use serde::Serialize;

use crate::error::AuditError;
use crate::store::AuditStore;

/// One finished `audit verify` run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyRun {
    /// When it finished (RFC 3339, UTC).
    pub finished_at: String,
    /// Whether every check passed.
    pub ok: bool,
    /// Records it verified.
    pub records: i64,
    /// The head it reached (or the record where it stopped).
    pub head_seq: i64,
    /// Its first line of output: `OK: …` or `FAILED: …`.
    pub summary: String,
}

impl AuditStore {
    /// Keep `run` as the latest verify run.
    pub async fn add_verify_run(&self, run: &VerifyRun) -> Result<(), AuditError> {
        match self {
            Self::Sqlite(p) => {
                sqlx::query(
                    "INSERT INTO audit_verify_run (finished_at, ok, records, head_seq, summary) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .bind(&run.finished_at)
                .bind(run.ok)
                .bind(run.records)
                .bind(run.head_seq)
                .bind(&run.summary)
                .execute(p)
                .await?;
            }
            Self::Postgres(p) => {
                sqlx::query(
                    "INSERT INTO audit_verify_run (finished_at, ok, records, head_seq, summary) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&run.finished_at)
                .bind(run.ok)
                .bind(run.records)
                .bind(run.head_seq)
                .bind(&run.summary)
                .execute(p)
                .await?;
            }
        }
        Ok(())
    }

    /// The latest verify run, if any was recorded.
    pub async fn last_verify_run(&self) -> Result<Option<VerifyRun>, AuditError> {
        let sql = "SELECT finished_at, ok, records, head_seq, summary FROM audit_verify_run \
                   ORDER BY id DESC LIMIT 1";
        let row: Option<(String, bool, i64, i64, String)> = match self {
            Self::Sqlite(p) => sqlx::query_as(sql).fetch_optional(p).await?,
            Self::Postgres(p) => sqlx::query_as(sql).fetch_optional(p).await?,
        };
        Ok(
            row.map(|(finished_at, ok, records, head_seq, summary)| VerifyRun {
                finished_at,
                ok,
                records,
                head_seq,
                summary,
            }),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::Database;

    #[tokio::test]
    async fn the_latest_run_is_the_last_added() {
        let dir = tempfile::tempdir().unwrap();
        let store = AuditStore::open(&Database::Sqlite(dir.path().join("state.db")))
            .await
            .unwrap();
        assert_eq!(store.last_verify_run().await.unwrap(), None);
        let mut run = VerifyRun {
            finished_at: "2026-12-05T10:00:00Z".into(),
            ok: true,
            records: 10,
            head_seq: 10,
            summary: "OK: audit chain verified: 10 records".into(),
        };
        store.add_verify_run(&run).await.unwrap();
        run.ok = false;
        run.summary = "FAILED: audit chain broken at seq 4".into();
        store.add_verify_run(&run).await.unwrap();
        assert_eq!(store.last_verify_run().await.unwrap(), Some(run));
    }
}
