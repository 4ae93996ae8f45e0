use serde::{Deserialize, Serialize};

/// `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The decision an audit record reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Access allowed and answered.
    Allow,
    /// Access refused by policy.
    Deny,
    /// The request was rejected or failed before or after the decision.
    #[default]
    Error,
}

impl Decision {
    /// The name used in records and filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Error => "error",
        }
    }
}

impl std::str::FromStr for Decision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Decision::Allow),
            "deny" => Ok(Decision::Deny),
            "error" => Ok(Decision::Error),
            other => Err(format!("{other:?} is not one of allow, deny, error")),
        }
    }
}

/// What one request did, as the audit log records it. `seq` and `prev_hash` are
/// added by the writer when the record joins the chain.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditEntry {
    /// RFC 3339 UTC time the request was received.
    pub time: String,
    /// The request id returned to the caller.
    pub request_id: String,
    /// Gateway node name.
    pub node: String,
    /// Authenticated consumer identity.
    pub consumer: Option<String>,
    /// SHA-256 fingerprint of the client certificate.
    pub cert_fingerprint: Option<String>,
    /// Clerk named in `X-Operator-Id`.
    pub operator: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Matter named in the request.
    pub matter: Option<String>,
    /// Case id named in the request.
    pub case_id: Option<String>,
    /// Dataset asked for.
    pub dataset: Option<String>,
    /// Subject identifier asked for.
    pub subject: Option<String>,
    /// Fields returned (empty when nothing was returned).
    pub fields: Vec<String>,
    /// Agreement that allowed (or explicitly denied) it.
    pub agreement: Option<String>,
    /// allow / deny / error.
    pub decision: Decision,
    /// Why, for anything but a plain allow.
    pub reason: Option<String>,
    /// HTTP status sent.
    pub status: u16,
    /// Microseconds from receipt to the audit write.
    pub latency_us: u64,
    /// Extra facts of non-lookup requests (e.g. an agreement's before and after).
    pub detail: Option<serde_json::Value>,
}

/// A record as stored: the entry with its place in the chain.
#[derive(Debug, Clone, Deserialize)]
pub struct StoredRecord {
    /// Sequence number.
    pub seq: i64,
    /// Hash of the record before it.
    pub prev_hash: String,
    /// What the request did.
    #[serde(flatten)]
    pub entry: AuditEntry,
}

#[derive(Serialize)]
pub(crate) struct Chained<'a> {
    pub seq: i64,
    pub prev_hash: &'a str,
    #[serde(flatten)]
    pub entry: &'a AuditEntry,
}

/// `SHA-256(prev_hash ‖ record)` as lowercase hex.
pub fn chain_hash(prev_hash: &str, record: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(prev_hash.as_bytes());
    ctx.update(record);
    hex::encode(ctx.finish().as_ref())
}

/// The canonical JSON and chain hash of `entry` placed at `seq` after `prev_hash` —
/// what the writer stores. Public for tools that build logs (benchmarks, tests).
pub fn seal_entry(
    seq: i64,
    prev_hash: &str,
    entry: &AuditEntry,
) -> Result<(String, String), crate::signing::SigningError> {
    let record = crate::canonical::audit_record(seq, prev_hash, entry)?;
    let hash = chain_hash(prev_hash, &record);
    let record = String::from_utf8(record)
        .map_err(|e| crate::signing::SigningError::Canonical(e.to_string()))?;
    Ok((record, hash))
}
