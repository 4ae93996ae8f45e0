use serde::{Deserialize, Serialize};

use crate::canonical::{canonical, write_str, write_value, CanonicalError, Members, Unsupported};

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
    /// SHA-256 (lowercase hex) of the answer sent, as [`crate::answer_sha256`]
    /// computes it: what binds the answer a caller holds to this record.
    pub answer_sha256: Option<String>,
    /// allow / deny / error.
    pub decision: Decision,
    /// Why, for anything but a plain allow.
    pub reason: Option<String>,
    /// HTTP status sent.
    pub status: u16,
    /// Microseconds from receipt to the audit write.
    pub latency_us: u64,
    /// Microseconds the owning department's source took to answer or fail, for a
    /// lookup or bundle item that called one; absent otherwise, and from records
    /// written before it was recorded (so their canonical form is unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_us: Option<u64>,
    /// Extra facts of non-lookup requests (e.g. an agreement's before and after).
    pub detail: Option<serde_json::Value>,
}

/// One stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Sequence number.
    pub seq: i64,
    /// Chain hash.
    pub hash: String,
    /// Canonical JSON the hash covers.
    pub record: String,
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

/// Canonical JSON of the audit record of `entry` at `seq` after `prev_hash`: the
/// entry's members plus `seq` and `prev_hash`, as the chain hashes and stores it.
pub(crate) fn audit_record(
    seq: i64,
    prev_hash: &str,
    e: &AuditEntry,
) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(768);
    match write_audit_record(&mut out, seq, prev_hash, e) {
        Ok(()) => Ok(out),
        Err(Unsupported) => canonical(&Chained {
            seq,
            prev_hash,
            entry: e,
        }),
    }
}

/// Members in UTF-16 order of their names, as JCS sorts them. Every name here is
/// ASCII, where that is byte order; a new member must keep the order (the tests
/// compare with the reference canonicalizer).
fn write_audit_record(
    out: &mut Vec<u8>,
    seq: i64,
    prev_hash: &str,
    e: &AuditEntry,
) -> Result<(), Unsupported> {
    let mut o = Members::open(out);
    o.key("agreement").opt_str(e.agreement.as_deref());
    o.key("answer_sha256").opt_str(e.answer_sha256.as_deref());
    o.key("case_id").opt_str(e.case_id.as_deref());
    o.key("cert_fingerprint")
        .opt_str(e.cert_fingerprint.as_deref());
    o.key("consumer").opt_str(e.consumer.as_deref());
    o.key("dataset").opt_str(e.dataset.as_deref());
    o.key("decision").str(e.decision.as_str());
    match &e.detail {
        Some(v) => write_value(o.key("detail").out, v)?,
        None => o.key("detail").null(),
    }
    o.key("fields");
    o.out.push(b'[');
    for (i, f) in e.fields.iter().enumerate() {
        if i > 0 {
            o.out.push(b',');
        }
        write_str(o.out, f);
    }
    o.out.push(b']');
    o.key("latency_us").uint(e.latency_us)?;
    o.key("matter").opt_str(e.matter.as_deref());
    o.key("method").str(&e.method);
    o.key("node").str(&e.node);
    o.key("operator").opt_str(e.operator.as_deref());
    o.key("path").str(&e.path);
    o.key("prev_hash").str(prev_hash);
    o.key("reason").opt_str(e.reason.as_deref());
    o.key("request_id").str(&e.request_id);
    o.key("seq").int(seq)?;
    if let Some(us) = e.source_us {
        o.key("source_us").uint(us)?;
    }
    o.key("status").uint(u64::from(e.status))?;
    o.key("subject").opt_str(e.subject.as_deref());
    o.key("time").str(&e.time);
    o.close();
    Ok(())
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
) -> Result<(String, String), CanonicalError> {
    let record = audit_record(seq, prev_hash, entry)?;
    let hash = chain_hash(prev_hash, &record);
    // The writers emit UTF-8 only; a failure here is a bug in them.
    let record = String::from_utf8(record).map_err(|e| CanonicalError::new(e.to_string()))?;
    Ok((record, hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::tests::{awkward, reference};
    use serde_json::json;

    fn full_entry(text: &str) -> AuditEntry {
        let s = || Some(text.to_owned());
        AuditEntry {
            time: "2026-11-28T20:00:00.123456Z".into(),
            request_id: text.into(),
            node: "gw-1".into(),
            consumer: s(),
            cert_fingerprint: s(),
            operator: s(),
            method: "POST".into(),
            path: text.into(),
            matter: s(),
            case_id: s(),
            dataset: s(),
            subject: s(),
            fields: vec![text.into(), "name".into()],
            agreement: s(),
            answer_sha256: s(),
            decision: Decision::Deny,
            reason: s(),
            status: 403,
            latency_us: 1234,
            source_us: Some(987),
            detail: Some(json!({"b": [1, -2, null, true], "a": {text: text}})),
        }
    }

    #[test]
    fn audit_records_match_the_reference_canonicalizer() {
        for text in awkward() {
            let e = full_entry(&text);
            for (seq, prev) in [(1, "00"), (9_007_199_254_740_992, "ab")] {
                let ours = audit_record(seq, prev, &e).expect("canonical");
                let want = reference(&Chained {
                    seq,
                    prev_hash: prev,
                    entry: &e,
                });
                assert_eq!(String::from_utf8(ours).expect("utf-8"), want, "{text:?}");
            }
        }
        let empty = AuditEntry::default();
        let ours = audit_record(7, "x", &empty).expect("canonical");
        let want = reference(&Chained {
            seq: 7,
            prev_hash: "x",
            entry: &empty,
        });
        assert_eq!(String::from_utf8(ours).expect("utf-8"), want);
    }

    #[test]
    fn numbers_beyond_exact_integers_fall_back_to_the_reference() {
        let mut e = full_entry("n");
        e.latency_us = u64::MAX;
        e.source_us = Some(u64::MAX);
        e.detail = Some(json!({"f": 1.5, "big": u64::MAX, "neg": i64::MIN, "e": 1e21}));
        let ours = audit_record(i64::MAX, "p", &e).expect("canonical");
        let want = reference(&Chained {
            seq: i64::MAX,
            prev_hash: "p",
            entry: &e,
        });
        assert_eq!(String::from_utf8(ours).expect("utf-8"), want);
    }
}
