use futures_util::TryStreamExt as _;
use serde::Deserialize;
use sqlx::SqliteConnection;

use super::chain::{chain_hash, GENESIS};
use super::log::AuditError;

/// The first place the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFailure {
    /// Sequence number of the first bad record.
    pub seq: i64,
    /// What is wrong with it.
    pub reason: String,
}

/// Result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked before stopping.
    pub records: u64,
    /// Last good sequence number and hash.
    pub head: (i64, String),
    /// The first break, if any.
    pub failure: Option<VerifyFailure>,
}

#[derive(Deserialize)]
struct Head<'a> {
    seq: i64,
    #[serde(borrow)]
    prev_hash: &'a str,
}

/// Walk the whole chain in sequence order and report the first break.
pub async fn verify_chain(conn: &mut SqliteConnection) -> Result<VerifyReport, AuditError> {
    let mut rows = sqlx::query_as::<_, (i64, String, String)>(
        "SELECT seq, hash, record FROM audit_log ORDER BY seq",
    )
    .fetch(&mut *conn);
    let mut expected_seq = 1;
    let mut prev = GENESIS.to_owned();
    let mut records = 0;
    while let Some((seq, hash, record)) = rows.try_next().await? {
        if let Err(reason) = check_row(expected_seq, &prev, seq, &hash, &record) {
            return Ok(VerifyReport {
                records,
                head: (expected_seq - 1, prev),
                failure: Some(VerifyFailure {
                    seq: seq.min(expected_seq),
                    reason,
                }),
            });
        }
        records += 1;
        expected_seq = seq + 1;
        prev = hash;
    }
    Ok(VerifyReport {
        records,
        head: (expected_seq - 1, prev),
        failure: None,
    })
}

fn check_row(
    expected_seq: i64,
    prev: &str,
    seq: i64,
    hash: &str,
    record: &str,
) -> Result<(), String> {
    if seq != expected_seq {
        return Err(format!(
            "expected record {expected_seq}, found {seq}: records are missing"
        ));
    }
    let head: Head<'_> =
        serde_json::from_str(record).map_err(|e| format!("record is not valid JSON: {e}"))?;
    if head.seq != seq {
        return Err(format!("record says seq {}, stored as {seq}", head.seq));
    }
    if head.prev_hash != prev {
        return Err("prev_hash does not match the previous record's hash".into());
    }
    if chain_hash(prev, record.as_bytes()) != hash {
        return Err("record content does not match its hash (edited)".into());
    }
    Ok(())
}
