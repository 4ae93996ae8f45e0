//! Checkpoints, stored beside the chain and copied to a file outside it, so that a
//! chain cut short or rewritten after the seal is detected even by someone who
//! recomputed every hash.
//!
//! Since migration 0004 a checkpoint is the C2SP signed note of the Merkle tree that
//! a batch's receipts carry ([`Seal::Note`]): its root covers every record up to its
//! size. Before, the writer signed a JWS [`Checkpoint`] of the chain head
//! ([`Seal::Jws`]); stores and checkpoint files holding those keep verifying.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::signing::{Signer, SigningError};

/// The `kind` member of every JWS checkpoint, so a checkpoint signature can never be
/// mistaken for a signed lookup answer made with the same key.
pub const CHECKPOINT_KIND: &str = "tongban-audit-checkpoint";

/// The `kind` member of a signed note's line in the checkpoint file.
pub const NOTE_KIND: &str = "tongban-audit-note";

/// A checkpoint as the store and the checkpoint file keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The sealed head: a note's tree size, which is the seq of its last record.
    pub seq: i64,
    /// Chain hash of record `seq`. A JWS signs it; a note does not (its root covers
    /// the records themselves), so for a note it only says where the chain stood.
    pub hash: String,
    /// The signature.
    pub seal: Seal,
}

/// What signs a stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seal {
    /// The C2SP signed note of the tree of `seq` records (since migration 0004).
    Note(String),
    /// A JWS of the chain head, as written before.
    Jws(Checkpoint),
}

/// The checkpoint file's line of a note.
#[derive(Serialize, Deserialize)]
struct NoteLine {
    kind: String,
    seq: i64,
    hash: String,
    note: String,
}

impl StoredCheckpoint {
    /// The signed note of the tree of `seq` records, whose last record has `hash`.
    pub fn note(seq: i64, hash: &str, note: &str) -> Self {
        Self {
            seq,
            hash: hash.to_owned(),
            seal: Seal::Note(note.to_owned()),
        }
    }

    /// The store's `format` column: `note` or `jws`.
    pub fn format(&self) -> &'static str {
        match self.seal {
            Seal::Note(_) => "note",
            Seal::Jws(_) => "jws",
        }
    }

    /// The store's `checkpoint` column: the note's text, or the JWS checkpoint's JSON.
    pub fn text(&self) -> String {
        match &self.seal {
            Seal::Note(n) => n.clone(),
            Seal::Jws(c) => c.to_json(),
        }
    }

    /// A stored row: `format` tells a note from a JWS (rows from before 0004).
    pub fn from_row(seq: i64, hash: String, text: &str, format: &str) -> Result<Self, String> {
        let seal = match format {
            "note" => Seal::Note(text.to_owned()),
            "jws" => Seal::Jws(serde_json::from_str(text).map_err(|e| e.to_string())?),
            other => return Err(format!("unknown checkpoint format {other:?}")),
        };
        Ok(Self { seq, hash, seal })
    }

    /// One JSON line for the checkpoint file: a JWS checkpoint as before, a note as
    /// `{"kind":"tongban-audit-note","seq":…,"hash":…,"note":…}`.
    pub fn to_json(&self) -> String {
        match &self.seal {
            Seal::Jws(c) => c.to_json(),
            // Serializing strings and an integer cannot fail.
            Seal::Note(n) => serde_json::to_string(&NoteLine {
                kind: NOTE_KIND.into(),
                seq: self.seq,
                hash: self.hash.clone(),
                note: n.clone(),
            })
            .unwrap_or_default(),
        }
    }

    /// Read a line written by [`StoredCheckpoint::to_json`].
    pub fn from_json(line: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        if v.get("kind").and_then(Value::as_str) == Some(NOTE_KIND) {
            let n: NoteLine = serde_json::from_value(v).map_err(|e| e.to_string())?;
            return Ok(Self::note(n.seq, &n.hash, &n.note));
        }
        let c: Checkpoint = serde_json::from_value(v).map_err(|e| e.to_string())?;
        Ok(Self {
            seq: c.seq,
            hash: c.hash.clone(),
            seal: Seal::Jws(c),
        })
    }
}

/// A signed statement "the chain's record `seq` has hash `hash`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Always [`CHECKPOINT_KIND`].
    pub kind: String,
    /// Sequence number of the sealed head.
    pub seq: i64,
    /// Chain hash of that record.
    pub hash: String,
    /// RFC 3339 UTC time of sealing.
    pub time: String,
    /// Gateway that sealed it.
    pub node: String,
    /// Key id of the signing key (also in the JWS header).
    pub kid: String,
    /// JWS compact, EdDSA, detached payload: the canonical JSON of every other member.
    pub signature: String,
}

impl Checkpoint {
    /// Seal `seq`/`hash` with `signer`.
    pub fn sign(signer: &Signer, seq: i64, hash: &str, node: &str) -> Result<Self, SigningError> {
        let mut body = Map::new();
        body.insert("kind".into(), CHECKPOINT_KIND.into());
        body.insert("seq".into(), seq.into());
        body.insert("hash".into(), hash.into());
        body.insert(
            "time".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        body.insert("node".into(), node.into());
        body.insert("kid".into(), signer.kid().into());
        let signed = signer.sign(body)?;
        serde_json::from_value(Value::Object(signed))
            .map_err(|e| SigningError::Malformed(e.to_string()))
    }

    /// Check the signature against the keys of a JWKS document; returns the key id.
    pub fn verify(&self, jwks: &Value) -> Result<String, SigningError> {
        if self.kind != CHECKPOINT_KIND {
            return Err(SigningError::Malformed(format!(
                "kind {:?} is not {CHECKPOINT_KIND}",
                self.kind
            )));
        }
        let doc = serde_json::to_value(self).map_err(|e| SigningError::Malformed(e.to_string()))?;
        crate::signing::verify(&doc, jwks)
    }

    /// One JSON line.
    pub fn to_json(&self) -> String {
        // Serializing a struct of strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Read a checkpoint file (one JSON checkpoint per line, as the gateway appends them
/// outside the store: [`StoredCheckpoint::to_json`]). A missing file reads as none; a
/// malformed line is an error naming the line.
pub fn read_checkpoint_file(path: &Path) -> Result<Vec<StoredCheckpoint>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        // A crash can leave a torn last line; anything torn before the end is damage.
        match StoredCheckpoint::from_json(line) {
            Ok(c) => out.push(c),
            Err(_) if i + 1 == text.lines().count() && !text.ends_with('\n') => {}
            Err(e) => {
                return Err(format!(
                    "{}:{}: not a checkpoint: {e}",
                    path.display(),
                    i + 1
                ))
            }
        }
    }
    Ok(out)
}

/// A JWKS document holding every key of `docs`.
pub fn merge_jwks(docs: &[Value]) -> Value {
    let keys: Vec<Value> = docs
        .iter()
        .filter_map(|d| d["keys"].as_array())
        .flatten()
        .cloned()
        .collect();
    serde_json::json!({ "keys": keys })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    pub(crate) fn signer() -> Signer {
        use rustls_pki_types::pem::PemObject as _;
        let pem = Signer::generate_pem().unwrap();
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).unwrap();
        Signer::from_pkcs8(der.secret_pkcs8_der()).unwrap()
    }

    #[test]
    fn notes_and_jws_checkpoints_round_trip_through_a_file_line_and_a_row() {
        let s = signer();
        let jws = Checkpoint::sign(&s, 42, &"ab".repeat(32), "gw-1").unwrap();
        let old = StoredCheckpoint::from_json(&jws.to_json()).unwrap();
        assert_eq!((old.seq, old.format()), (42, "jws"));
        let note = StoredCheckpoint::note(
            7,
            &"cd".repeat(32),
            "log\n7\nAAAA\n\n\u{2014} log AAAAAAAA\n",
        );
        for c in [old, note] {
            assert_eq!(StoredCheckpoint::from_json(&c.to_json()).unwrap(), c);
            let row = StoredCheckpoint::from_row(c.seq, c.hash.clone(), &c.text(), c.format());
            assert_eq!(row.unwrap(), c);
        }
        assert!(StoredCheckpoint::from_row(1, String::new(), "x", "other").is_err());
    }

    #[test]
    fn signs_and_verifies_and_detects_changes() {
        let s = signer();
        let c = Checkpoint::sign(&s, 42, &"ab".repeat(32), "gw-1").unwrap();
        assert_eq!(c.verify(&s.jwks()).unwrap(), s.kid());
        let mut moved = c.clone();
        moved.seq = 41;
        assert!(moved.verify(&s.jwks()).is_err());
        assert!(c.verify(&signer().jwks()).is_err());
    }
}
