//! Checking an answer's receipt offline: with only the `audit` member of an answer and
//! the gateway's public key, that the record it carries is leaf `index` of a tree
//! whose checkpoint the gateway signed.
//!
//! 1. `checkpoint` is a signed note; its text is `origin`, `size`, `base64(root)`,
//!    one per line. A signature line named `origin` by the gateway's Ed25519 key
//!    (key id `SHA-256(origin ‖ 0x0A ‖ 0x01 ‖ key)[..4]`) verifies over the text.
//! 2. The leaf is `SHA-256(0x00 ‖ JCS(record))`: `record` is the record's JSON
//!    object, and the record was written canonical, so its canonical JSON is the
//!    exact bytes the gateway hashed. (Receipts of earlier versions held the bytes
//!    as a string; those are hashed as given.)
//! 3. `index < size`, and `inclusion` (base64 hashes, leaf upwards) proves the leaf at
//!    `index` in the tree of `size` with that root (RFC 9162 §2.1.3.2).
//! 4. The record's own `seq` is `index + 1`, and so is the receipt's `seq`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;

use crate::tlog::note::{Note, Verifier, TYPE_ED25519};
use crate::tlog::tree::{self, Hash};

impl crate::log::Receipt {
    /// Write the receipt as an answer carries it, the JSON of [`Self::to_json`]
    /// (members in the same order), straight into `out`: no document is built, and
    /// the record is copied in as it is.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{{\"checkpoint\":");
        out.extend_from_slice(self.checkpoint.json().as_bytes());
        out.extend_from_slice(b",\"hash\":");
        crate::canonical::write_str(out, &self.hash);
        out.extend_from_slice(b",\"inclusion\":[");
        let mut buf = [0u8; 44];
        for (i, h) in self.inclusion.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            if let Ok(n) = b64.encode_slice(h.0, &mut buf) {
                out.extend_from_slice(&buf[..n]);
            }
            out.push(b'"');
        }
        let _ = write!(out, "],\"index\":{},\"record\":", self.index);
        // The record is canonical JSON: it goes in as the object it is, unescaped.
        out.extend_from_slice(self.record.as_bytes());
        let _ = write!(out, ",\"seq\":{}}}", self.seq);
    }
}

/// Why a receipt does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// A member is missing or of the wrong type.
    #[error("the receipt's {0} is missing or malformed")]
    Malformed(&'static str),
    /// The checkpoint is not signed by the gateway's key.
    #[error("the checkpoint: {0}")]
    Checkpoint(String),
    /// The inclusion proof does not lead to the checkpoint's root.
    #[error("record {index} is not proven in the tree of {size} records: {reason}")]
    NotIncluded {
        /// The leaf index claimed.
        index: u64,
        /// The tree size of the checkpoint.
        size: u64,
        /// What failed.
        reason: String,
    },
    /// The record's sequence number is not the receipt's.
    #[error("the record's seq {record} is not the receipt's {receipt}")]
    Seq {
        /// In the record.
        record: i64,
        /// In the receipt (index + 1).
        receipt: i64,
    },
}

/// A receipt that checked: where the record is, in which signed tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Included {
    /// The log's origin.
    pub origin: String,
    /// The record's leaf index.
    pub index: u64,
    /// The size of the signed tree that includes it.
    pub size: u64,
    /// The record's canonical JSON.
    pub record: String,
}

/// Check `receipt` (an answer's `audit` member) against the gateway's Ed25519
/// `public_key`.
pub fn check_receipt(receipt: &Value, public_key: &[u8]) -> Result<Included, ReceiptError> {
    let text = |k: &'static str| {
        receipt
            .get(k)
            .and_then(Value::as_str)
            .ok_or(ReceiptError::Malformed(k))
    };
    let record = match receipt.get("record") {
        Some(Value::Object(r)) => String::from_utf8(
            crate::canonical::map_to_vec(r).map_err(|_| ReceiptError::Malformed("record"))?,
        )
        .map_err(|_| ReceiptError::Malformed("record"))?,
        // A receipt of an earlier version: the record's bytes as a string.
        Some(Value::String(r)) => r.clone(),
        _ => return Err(ReceiptError::Malformed("record")),
    };
    let record = record.as_str();
    let note =
        Note::parse(text("checkpoint")?).map_err(|e| ReceiptError::Checkpoint(e.to_string()))?;
    let mut lines = note.text.lines();
    let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
        return Err(ReceiptError::Checkpoint(
            "not origin, size and root hash".into(),
        ));
    };
    let size: u64 = size
        .parse()
        .map_err(|_| ReceiptError::Checkpoint(format!("size {size:?} is not a number")))?;
    let root = hash_of(root).ok_or_else(|| ReceiptError::Checkpoint("bad root hash".into()))?;
    let key = Verifier::new(origin, TYPE_ED25519, public_key)
        .map_err(|e| ReceiptError::Checkpoint(e.to_string()))?;
    note.verify(&key)
        .map_err(|e| ReceiptError::Checkpoint(e.to_string()))?;

    let index = receipt
        .get("index")
        .and_then(Value::as_u64)
        .ok_or(ReceiptError::Malformed("index"))?;
    let proof = receipt
        .get("inclusion")
        .and_then(Value::as_array)
        .ok_or(ReceiptError::Malformed("inclusion"))?
        .iter()
        .map(|h| h.as_str().and_then(hash_of))
        .collect::<Option<Vec<Hash>>>()
        .ok_or(ReceiptError::Malformed("inclusion"))?;
    let not_included = |reason: String| ReceiptError::NotIncluded {
        index,
        size,
        reason,
    };
    if index >= size {
        return Err(not_included("the index is beyond the tree".into()));
    }
    tree::check_inclusion(
        &proof,
        size,
        root,
        index,
        tree::leaf_hash(record.as_bytes()),
    )
    .map_err(|e| not_included(e.to_string()))?;

    let expected = i64::try_from(index).map_or(i64::MAX, |i| i + 1);
    let in_record = serde_json::from_str::<Value>(record)
        .ok()
        .and_then(|r| r.get("seq").and_then(Value::as_i64))
        .ok_or(ReceiptError::Malformed("record"))?;
    let in_receipt = receipt
        .get("seq")
        .and_then(Value::as_i64)
        .ok_or(ReceiptError::Malformed("seq"))?;
    for seq in [in_record, in_receipt] {
        if seq != expected {
            return Err(ReceiptError::Seq {
                record: seq,
                receipt: expected,
            });
        }
    }
    Ok(Included {
        origin: origin.to_owned(),
        index,
        size,
        record: record.to_owned(),
    })
}

fn hash_of(b64: &str) -> Option<Hash> {
    B64.decode(b64).ok()?.try_into().ok().map(Hash)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::batch_note::BatchNote;
    use crate::log::Receipt;
    use crate::tlog::tree::Hash;

    #[test]
    fn the_receipt_written_straight_is_its_json() {
        let r = Receipt {
            seq: 42,
            hash: "ab".repeat(32),
            record: "{\"a\":\"张\\n\\\"\",\"seq\":42}".into(),
            index: 41,
            checkpoint: BatchNote::from("o\n42\nAAAA=\n\n— o x\n"),
            inclusion: vec![Hash([1; 32]), Hash([0xfe; 32])],
        };
        let mut out = Vec::new();
        r.write_json(&mut out);
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed, r.to_json());
        let empty = Receipt {
            inclusion: Vec::new(),
            ..r
        };
        let mut out = Vec::new();
        empty.write_json(&mut out);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&out).unwrap(),
            empty.to_json()
        );
    }
}
