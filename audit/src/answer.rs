//! Binding an answer to its audit record: the record of every answered request holds
//! `answer_sha256`, the SHA-256 of the answer's RFC 8785 canonical JSON without its
//! `audit` member (the receipt, which cannot be known before the record is
//! committed). With the receipt's proof that the record is in a signed tree, the
//! answer a caller holds is evidence of its own access.
//!
//! Checking an answer (one JSON object with an `audit` member):
//!
//! 1. Check the receipt ([`crate::check_receipt`]): the record is leaf `index` of a
//!    tree whose checkpoint the gateway's key signed.
//! 2. Remove `audit` from the answer, canonicalize the rest (RFC 8785) and hash it
//!    with SHA-256; the lowercase hex must equal the record's `answer_sha256`.

use serde_json::{Map, Value};

use crate::canonical::{map_to_vec, CanonicalError};
use crate::receipt::{check_receipt, Included, ReceiptError};

/// The member of an answer that holds its receipt, outside what the digest covers.
pub const RECEIPT_MEMBER: &str = "audit";

/// SHA-256 (lowercase hex) of canonical JSON bytes, as records hold it.
pub fn answer_sha256(canonical: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical);
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// The canonical JSON an answer's digest covers: the object without its receipt.
pub fn canonical_answer(answer: &Map<String, Value>) -> Result<Vec<u8>, CanonicalError> {
    if answer.contains_key(RECEIPT_MEMBER) {
        let mut bare = answer.clone();
        bare.remove(RECEIPT_MEMBER);
        map_to_vec(&bare)
    } else {
        map_to_vec(answer)
    }
}

/// Why an answer is not bound to a proven record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// Not a JSON object, or without a receipt.
    #[error("the answer is not a JSON object with an `audit` receipt")]
    NoReceipt,
    /// The receipt does not check.
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
    /// The answer has no canonical form.
    #[error("the answer has no canonical JSON: {0}")]
    Canonical(String),
    /// The record binds another answer (or none).
    #[error("audit record {seq} binds answer {recorded}, not this answer ({actual})")]
    NotBound {
        /// The record's sequence number.
        seq: i64,
        /// `answer_sha256` in the record (`none` when absent).
        recorded: String,
        /// The digest of the answer held.
        actual: String,
    },
}

/// Check that `answer` is bound to an audit record proven in a checkpoint signed by
/// the Ed25519 `public_key`.
pub fn check_answer(answer: &Value, public_key: &[u8]) -> Result<Included, AnswerError> {
    let object = answer.as_object().ok_or(AnswerError::NoReceipt)?;
    let receipt = object.get(RECEIPT_MEMBER).ok_or(AnswerError::NoReceipt)?;
    let included = check_receipt(receipt, public_key)?;
    let canonical = canonical_answer(object).map_err(|e| AnswerError::Canonical(e.to_string()))?;
    let actual = answer_sha256(&canonical);
    let record: Value = serde_json::from_str(&included.record)
        .map_err(|_| AnswerError::Receipt(ReceiptError::Malformed("record")))?;
    let recorded = record.get("answer_sha256").and_then(Value::as_str);
    if recorded != Some(actual.as_str()) {
        return Err(AnswerError::NotBound {
            seq: record
                .get("seq")
                .and_then(Value::as_i64)
                .unwrap_or_default(),
            recorded: recorded.unwrap_or("none").to_owned(),
            actual,
        });
    }
    Ok(included)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_digest_ignores_the_receipt_and_member_order() {
        let a = json!({"b": 1, "a": "张三", "audit": {"seq": 1}});
        let b = json!({"a": "张三", "b": 1});
        let digest = |v: &Value| answer_sha256(&canonical_answer(v.as_object().unwrap()).unwrap());
        assert_eq!(digest(&a), digest(&b));
        assert_eq!(
            String::from_utf8(canonical_answer(a.as_object().unwrap()).unwrap()).unwrap(),
            r#"{"a":"张三","b":1}"#
        );
        assert_ne!(digest(&b), digest(&json!({"a": "张三", "b": 2})));
    }
}
