//! Signed checkpoints: the gateway's Ed25519 key seals the head of the chain every N
//! records or T seconds, so that a chain cut short or rewritten after the seal is
//! detected even by someone who recomputed every hash.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::signing::{Signer, SigningError};

/// The `kind` member of every checkpoint, so a checkpoint signature can never be
/// mistaken for a signed lookup answer made with the same key.
pub const CHECKPOINT_KIND: &str = "tongban-audit-checkpoint";

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
/// outside the store). A missing file reads as none; a malformed line is an error
/// naming the line.
pub fn read_checkpoint_file(path: &Path) -> Result<Vec<Checkpoint>, String> {
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
        match serde_json::from_str::<Checkpoint>(line) {
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
