//! A record's verification status, as an auditor following the log would find it:
//! the record's exact bytes (the entries API), its inclusion proof (the proof API)
//! in the tree of the latest signed checkpoint, checked with the gateway's public
//! key as a receipt is checked offline (`audit::check_receipt`).

use serde_json::json;

use crate::console::Console;

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    /// Proven in the signed tree of `size` records.
    Verified { size: u64 },
    /// Newer than the latest signed checkpoint: the next one will cover it.
    Pending,
    /// Moved to an archive file (`tongban audit verify` checks archives).
    Archived,
    /// The proof does not hold: the record, the tree or the checkpoint was altered.
    Failed(String),
}

impl Status {
    /// The catalogue key of its label.
    pub(crate) fn key(&self) -> &'static str {
        match self {
            Status::Verified { .. } => "proof.verified",
            Status::Pending => "proof.pending",
            Status::Archived => "proof.archived",
            Status::Failed(_) => "proof.failed",
        }
    }

    /// The CSS class of its badge.
    pub(crate) fn class(&self) -> &'static str {
        match self {
            Status::Verified { .. } => "ok",
            Status::Pending | Status::Archived => "wait",
            Status::Failed(_) => "bad",
        }
    }

    /// What else to say: the tree size, or why it failed.
    pub(crate) fn detail(&self) -> String {
        match self {
            Status::Verified { size } => size.to_string(),
            Status::Failed(why) => why.clone(),
            _ => String::new(),
        }
    }
}

/// The latest signed checkpoint, read once per page.
pub(crate) struct Checker<'a> {
    console: &'a Console,
    note: Option<(String, u64)>,
}

impl<'a> Checker<'a> {
    pub(crate) async fn latest(console: &'a Console) -> Checker<'a> {
        let note = console.audit.latest_checkpoint().await.ok().flatten();
        let note = note.and_then(|n| {
            let size = n.lines().nth(1)?.parse().ok()?;
            Some((n, size))
        });
        Self { console, note }
    }

    /// The status of record `seq`.
    pub(crate) async fn status(&self, seq: i64) -> Status {
        let Some((note, size)) = &self.note else {
            return Status::Pending;
        };
        let Ok(index) = u64::try_from(seq - 1) else {
            return Status::Failed(format!("{seq} is not a sequence number"));
        };
        if index >= *size {
            return Status::Pending;
        }
        let store = self.console.audit.store();
        let record = match store.entries(seq, 1).await {
            Ok(rows) => match rows.into_iter().next() {
                Some(r) if r.seq == seq => r.record,
                _ => return Status::Failed(format!("record {seq} is missing")),
            },
            Err(audit::FollowError::Beyond { .. }) => return Status::Archived,
            Err(e) => return Status::Failed(e.to_string()),
        };
        let proof = match store.inclusion_proof(index, Some(*size)).await {
            Ok(p) => p,
            Err(e) => return Status::Failed(e.to_string()),
        };
        let receipt = json!({
            "record": record,
            "checkpoint": note,
            "index": index,
            "seq": seq,
            "inclusion": proof.base64(),
        });
        match audit::check_receipt(&receipt, &self.console.public_key) {
            Ok(included) => Status::Verified {
                size: included.size,
            },
            Err(e) => Status::Failed(e.to_string()),
        }
    }
}
