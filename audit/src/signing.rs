//! Response signatures: JWS compact serialization, EdDSA (Ed25519), detached payload.
//!
//! The payload is the RFC 8785 canonical JSON of the response body without its
//! `signature` member. It is left out of the compact form (`header..signature`,
//! RFC 7515 appendix F) because anyone can rebuild it from the body: take the body,
//! drop `signature`, canonicalize, base64url-encode, put it between the two dots and
//! verify with any JWS library.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use rustls_pki_types::pem::PemObject as _;
use serde_json::{json, Map, Value};
use std::path::Path;

use crate::canonical::{canonical, map_to_vec, CanonicalError};

/// Signing and verification failures.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// The key file is unreadable or not an Ed25519 PKCS#8 key.
    #[error("{path}: {reason}")]
    Key {
        /// Key file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The document to verify is malformed.
    #[error("malformed signed document: {0}")]
    Malformed(String),
    /// The signature does not verify.
    #[error("signature does not verify: {0}")]
    Invalid(String),
    /// Canonicalization failed.
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    /// The system's random source failed.
    #[error("key generation failed: {0}")]
    KeyGeneration(String),
}

/// Signs response bodies with the gateway's Ed25519 key.
pub struct Signer {
    key: Ed25519KeyPair,
    kid: String,
    header_b64: String,
}

impl Signer {
    /// Load a PKCS#8 PEM Ed25519 key.
    pub fn load(path: &Path) -> Result<Self, SigningError> {
        let err = |reason: String| SigningError::Key {
            path: path.display().to_string(),
            reason,
        };
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_file(path)
            .map_err(|e| err(format!("not a PKCS#8 PEM private key: {e}")))?;
        Self::from_pkcs8(der.secret_pkcs8_der()).map_err(|e| err(e.to_string()))
    }

    /// Build from PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, SigningError> {
        let key =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|e| SigningError::Key {
                path: "<pkcs8>".into(),
                reason: format!("not an Ed25519 key: {e}"),
            })?;
        let kid = key_id(key.public_key().as_ref());
        let header = json!({"alg": "EdDSA", "kid": kid});
        let header_b64 = B64.encode(header.to_string());
        Ok(Self {
            key,
            kid,
            header_b64,
        })
    }

    /// Generate a fresh key as PKCS#8 PEM.
    pub fn generate_pem() -> Result<String, SigningError> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|e| SigningError::KeyGeneration(e.to_string()))?;
        Ok(pem("PRIVATE KEY", doc.as_ref()))
    }

    /// Key id (first 16 hex digits of SHA-256 of the public key).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key pair, for signing notes (checkpoints) with it.
    pub fn key_pair(&self) -> &Ed25519KeyPair {
        &self.key
    }

    /// The key pair itself (a witness signs with it).
    pub fn into_key_pair(self) -> Ed25519KeyPair {
        self.key
    }

    /// Raw 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    /// The JWKS document with this key.
    pub fn jwks(&self) -> Value {
        jwks_of(self.public_key(), &self.kid)
    }

    /// Sign `body` (which must not hold `signature`) and return it with `signature` added.
    pub fn sign(&self, mut body: Map<String, Value>) -> Result<Map<String, Value>, SigningError> {
        let payload = map_to_vec(&body)?;
        let signing_input = format!("{}.{}", self.header_b64, B64.encode(&payload));
        let sig = self.key.sign(signing_input.as_bytes());
        let jws = format!("{}..{}", self.header_b64, B64.encode(sig.as_ref()));
        body.insert("signature".into(), Value::String(jws));
        Ok(body)
    }
}

/// A JWKS document holding one Ed25519 public key.
pub fn jwks_of(public_key: &[u8], kid: &str) -> Value {
    json!({"keys": [{
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
        "kid": kid, "x": B64.encode(public_key),
    }]})
}

/// The key id of a public key.
pub fn key_id(public_key: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    hex::encode(&digest.as_ref()[..8])
}

/// The Ed25519 public key with id `kid` in a JWKS document.
pub fn public_key_of(jwks: &Value, kid: &str) -> Result<Vec<u8>, SigningError> {
    let x = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid))
        .and_then(|k| k["x"].as_str())
        .ok_or_else(|| SigningError::Invalid(format!("no key with kid {kid:?} in the JWKS")))?;
    B64.decode(x)
        .map_err(|_| SigningError::Malformed("JWKS key is not base64url".into()))
}

/// Every Ed25519 public key of a JWKS document, with its key id.
pub fn public_keys(jwks: &Value) -> Vec<(String, Vec<u8>)> {
    jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|k| k["kty"] == "OKP" && k["crv"] == "Ed25519")
        .filter_map(|k| {
            let x = B64.decode(k["x"].as_str()?).ok()?;
            Some((k["kid"].as_str().unwrap_or_default().to_owned(), x))
        })
        .collect()
}

/// Verify a signed response body against the keys of a JWKS document. Returns the
/// key id that verified it.
pub fn verify(document: &Value, jwks: &Value) -> Result<String, SigningError> {
    let mut body = document
        .as_object()
        .cloned()
        .ok_or_else(|| SigningError::Malformed("not a JSON object".into()))?;
    let jws = match body.remove("signature") {
        Some(Value::String(s)) => s,
        _ => return Err(SigningError::Malformed("no \"signature\" string".into())),
    };
    let mut parts = jws.split('.');
    let (Some(header_b64), Some(""), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SigningError::Malformed(
            "signature is not a detached JWS (header..signature)".into(),
        ));
    };
    let header: Value = B64
        .decode(header_b64)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or_else(|| SigningError::Malformed("JWS header is not base64url JSON".into()))?;
    if header["alg"] != "EdDSA" {
        return Err(SigningError::Invalid(format!(
            "unsupported alg {}",
            header["alg"]
        )));
    }
    let kid = header["kid"].as_str().unwrap_or_default().to_owned();
    let public = public_key_of(jwks, &kid)?;
    let sig = B64
        .decode(sig_b64)
        .map_err(|_| SigningError::Malformed("JWS signature is not base64url".into()))?;
    let payload = canonical(&body)?;
    let input = format!("{header_b64}.{}", B64.encode(&payload));
    UnparsedPublicKey::new(&ED25519, &public)
        .verify(input.as_bytes(), &sig)
        .map_err(|_| SigningError::Invalid("the content does not match the signature".into()))?;
    Ok(kid)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        let pem = Signer::generate_pem().unwrap();
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).unwrap();
        Signer::from_pkcs8(der.secret_pkcs8_der()).unwrap()
    }

    #[test]
    fn signs_and_verifies() {
        let s = signer();
        let body = json!({"record": {"name": "张三"}, "audit": {"seq": 1}});
        let signed = Value::Object(s.sign(body.as_object().unwrap().clone()).unwrap());
        assert_eq!(verify(&signed, &s.jwks()).unwrap(), s.kid());
    }

    #[test]
    fn one_changed_byte_fails() {
        let s = signer();
        let body = json!({"record": {"name": "张三"}});
        let mut signed = Value::Object(s.sign(body.as_object().unwrap().clone()).unwrap());
        signed["record"]["name"] = json!("张四");
        assert!(matches!(
            verify(&signed, &s.jwks()),
            Err(SigningError::Invalid(_))
        ));
    }

    #[test]
    fn other_key_fails() {
        let s = signer();
        let other = signer();
        let body = json!({"a": 1});
        let signed = Value::Object(s.sign(body.as_object().unwrap().clone()).unwrap());
        assert!(verify(&signed, &other.jwks()).is_err());
    }
}
