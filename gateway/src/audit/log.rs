use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions as _, Connection as _, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::chain::{chain_hash, Chained, GENESIS};
use super::AuditEntry;
use crate::signing::canonical;

/// Where a record landed in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Sequence number.
    pub seq: i64,
    /// Chain hash of the record.
    pub hash: String,
}

/// Audit failures. Any of them means the request must not be answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    /// The store refused or failed the write.
    #[error("audit store: {0}")]
    Store(String),
    /// The writer task is gone (shutting down).
    #[error("audit writer stopped")]
    Closed,
}

impl From<sqlx::Error> for AuditError {
    fn from(e: sqlx::Error) -> Self {
        AuditError::Store(e.to_string())
    }
}

/// Appends records to the chain with group commit: requests that arrive while a
/// commit is running wait and are committed together in the next transaction, so a
/// durable commit (fsync) is paid once per batch, not per request.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Pending>,
}

struct Pending {
    entry: AuditEntry,
    reply: oneshot::Sender<Result<Receipt, AuditError>>,
}

pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    record TEXT NOT NULL)";

/// Connection options for the state database: WAL, and `synchronous=FULL` so a
/// commit is on disk when it returns.
pub fn state_db_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5))
        .log_statements(tracing::log::LevelFilter::Trace)
}

impl AuditLog {
    /// Open the audit table in the SQLite database at `path` and start the writer.
    pub async fn open(path: &Path, batch_max: usize) -> Result<Self, AuditError> {
        let mut conn = state_db_options(path).connect().await?;
        sqlx::query(SCHEMA).execute(&mut conn).await?;
        let head = read_head(&mut conn).await?;
        let (tx, rx) = mpsc::channel(batch_max.max(1) * 4);
        tokio::spawn(writer(conn, rx, head, batch_max.max(1)));
        Ok(Self { tx })
    }

    /// Append `entry` and wait until it is durably committed.
    pub async fn append(&self, entry: AuditEntry) -> Result<Receipt, AuditError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { entry, reply })
            .await
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }
}

async fn read_head(conn: &mut SqliteConnection) -> Result<(i64, String), AuditError> {
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    Ok(head.unwrap_or((0, GENESIS.to_owned())))
}

async fn writer(
    mut conn: SqliteConnection,
    mut rx: mpsc::Receiver<Pending>,
    mut head: (i64, String),
    batch_max: usize,
) {
    let mut batch = Vec::with_capacity(batch_max);
    while rx.recv_many(&mut batch, batch_max).await > 0 {
        match commit(&mut conn, &head, &batch).await {
            Ok(receipts) => {
                if let Some(last) = receipts.last() {
                    head = (last.seq, last.hash.clone());
                }
                for (p, r) in batch.drain(..).zip(receipts) {
                    let _ = p.reply.send(Ok(r));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = batch.len(), "audit commit failed; refusing the batch");
                for p in batch.drain(..) {
                    let _ = p.reply.send(Err(e.clone()));
                }
                // The transaction rolled back; re-read the head in case the store
                // moved under us.
                if let Ok(h) = read_head(&mut conn).await {
                    head = h;
                }
            }
        }
    }
}

async fn commit(
    conn: &mut SqliteConnection,
    head: &(i64, String),
    batch: &[Pending],
) -> Result<Vec<Receipt>, AuditError> {
    let mut tx = conn.begin().await?;
    let (mut seq, mut prev) = head.clone();
    let mut receipts = Vec::with_capacity(batch.len());
    for p in batch {
        seq += 1;
        let record = canonical(&Chained {
            seq,
            prev_hash: &prev,
            entry: &p.entry,
        })
        .map_err(|e| AuditError::Store(e.to_string()))?;
        let hash = chain_hash(&prev, &record);
        let text = String::from_utf8(record).map_err(|e| AuditError::Store(e.to_string()))?;
        sqlx::query("INSERT INTO audit_log (seq, hash, record) VALUES (?1, ?2, ?3)")
            .bind(seq)
            .bind(&hash)
            .bind(text)
            .execute(&mut *tx)
            .await?;
        receipts.push(Receipt {
            seq,
            hash: hash.clone(),
        });
        prev = hash;
    }
    tx.commit().await?;
    Ok(receipts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::audit::verify_chain;

    #[tokio::test]
    async fn appends_chain_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let log = AuditLog::open(&path, 8).await.unwrap();
        let mut handles = Vec::new();
        for i in 0..50 {
            let log = log.clone();
            handles.push(tokio::spawn(async move {
                let entry = AuditEntry {
                    request_id: format!("r{i}"),
                    status: 200,
                    ..Default::default()
                };
                log.append(entry).await.unwrap()
            }));
        }
        let mut seqs: Vec<i64> = Vec::new();
        for h in handles {
            seqs.push(h.await.unwrap().seq);
        }
        seqs.sort();
        assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
        let mut conn = state_db_options(&path).connect().await.unwrap();
        let report = verify_chain(&mut conn).await.unwrap();
        assert_eq!(report.records, 50);
        assert!(report.failure.is_none());

        // A reopened log continues the chain.
        drop(log);
        let log = AuditLog::open(&path, 8).await.unwrap();
        let r = log.append(AuditEntry::default()).await.unwrap();
        assert_eq!(r.seq, 51);
        let report = verify_chain(&mut conn).await.unwrap();
        assert!(report.failure.is_none());
    }

    #[tokio::test]
    async fn failed_commit_is_reported_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let log = AuditLog::open(&path, 8).await.unwrap();
        log.append(AuditEntry::default()).await.unwrap();
        let mut conn = state_db_options(&path).connect().await.unwrap();
        sqlx::query("CREATE TRIGGER refuse BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'refused'); END")
            .execute(&mut conn)
            .await
            .unwrap();
        assert!(matches!(
            log.append(AuditEntry::default()).await,
            Err(AuditError::Store(_))
        ));
        sqlx::query("DROP TRIGGER refuse")
            .execute(&mut conn)
            .await
            .unwrap();
        assert_eq!(log.append(AuditEntry::default()).await.unwrap().seq, 2);
        assert!(verify_chain(&mut conn).await.unwrap().failure.is_none());
    }
}
