//! The issuer signature of an e-licence, checked before anything is filtered or masked.
//!
//! Every e-licence carries `issuer_signature`: an Ed25519 signature, base64url without
//! padding, by the issuing department over [`license_signing_input`] of the record (the
//! RFC 8785 canonical JSON of its other fields). The gateway holds the public keys of
//! the issuers it trusts ([`IssuerKeys`]) and reports for every licence whether the
//! signature holds ([`Verification`]); a licence whose signature fails is still
//! returned, flagged, so that a counter can see it and an officer can follow it up.
//!
//! [`license_signing_input`]: crate::demo::license_signing_input

use base64::Engine as _;
use ring::signature::{UnparsedPublicKey, ED25519};

use crate::demo::license_signing_input;
use crate::{ConnectorError, Record};

/// Raw Ed25519 public keys of the issuers whose licences verify.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IssuerKeys {
    keys: Vec<[u8; 32]>,
}

/// Whether a licence's issuer signature holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The signature verifies against one of the trusted issuer keys.
    Verified,
    /// It does not; the reason is safe to show to the caller (it names no key).
    Failed(String),
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| encode(k)))
            .finish()
    }
}

impl IssuerKeys {
    /// Keys from raw 32-byte Ed25519 public keys.
    pub fn new<K: AsRef<[u8]>>(keys: &[K]) -> Result<Self, ConnectorError> {
        let keys = keys
            .iter()
            .map(|k| {
                <[u8; 32]>::try_from(k.as_ref()).map_err(|_| {
                    ConnectorError::Config(format!(
                        "an Ed25519 public key has 32 bytes, got {}",
                        k.as_ref().len()
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(IssuerKeys { keys })
    }

    /// Keys written as base64url (padding optional), as the config holds them.
    pub fn from_base64url<S: AsRef<str>>(keys: &[S]) -> Result<Self, ConnectorError> {
        let raw = keys
            .iter()
            .map(|k| {
                let k = k.as_ref().trim().trim_end_matches('=');
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(k)
                    .map_err(|e| ConnectorError::Config(format!("{k:?} is not base64url: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(&raw)
    }

    /// No key configured: every licence is reported unverified.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys as base64url without padding, the form the config takes.
    pub fn to_base64url(&self) -> Vec<String> {
        self.keys.iter().map(|k| encode(k)).collect()
    }

    /// Checks `record`'s `issuer_signature` over every signed field. Call it on the
    /// record as the source returned it, before fields are filtered or masked.
    pub fn verify(&self, record: &Record) -> Verification {
        match self.check(record) {
            Ok(()) => Verification::Verified,
            Err(reason) => Verification::Failed(reason),
        }
    }

    fn check(&self, record: &Record) -> Result<(), String> {
        if self.keys.is_empty() {
            return Err("no issuer public key is configured for this dataset".to_owned());
        }
        let signature = match record.get("issuer_signature") {
            Some(serde_json::Value::String(s)) => s,
            Some(serde_json::Value::Null) | None => {
                return Err("the record carries no issuer_signature".to_owned())
            }
            Some(_) => return Err("issuer_signature is not a string".to_owned()),
        };
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature.trim_end_matches('='))
            .map_err(|_| "issuer_signature is not base64url".to_owned())?;
        let input = license_signing_input(record).map_err(|e| match e {
            ConnectorError::Data(m) => m,
            other => other.to_string(),
        })?;
        let verifies = |key: &[u8; 32]| {
            UnparsedPublicKey::new(&ED25519, key)
                .verify(&input, &signature)
                .is_ok()
        };
        if self.keys.iter().any(verifies) {
            Ok(())
        } else {
            Err(
                "issuer_signature does not verify against any trusted issuer key: the \
                 record was altered or signed by an unknown issuer"
                    .to_owned(),
            )
        }
    }
}

impl Verification {
    /// `true` for [`Verification::Verified`].
    pub fn is_verified(&self) -> bool {
        matches!(self, Verification::Verified)
    }

    /// The reason of a failure.
    pub fn error(&self) -> Option<&str> {
        match self {
            Verification::Verified => None,
            Verification::Failed(reason) => Some(reason),
        }
    }
}

fn encode(key: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    use super::*;

    fn key_pair(seed: u8) -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
    }

    fn signed(key: &Ed25519KeyPair) -> Record {
        let mut r = Record::new();
        for f in [
            "license_type",
            "holder_id",
            "holder_name",
            "issuer",
            "issued_on",
            "status",
            "content",
            "file_sha256",
        ] {
            r.insert(
                f.to_owned(),
                serde_json::Value::String(format!("{f}-value")),
            );
        }
        r.insert("valid_until".to_owned(), serde_json::Value::Null);
        let sig = key.sign(&license_signing_input(&r).unwrap());
        r.insert(
            "issuer_signature".to_owned(),
            serde_json::Value::String(encode(sig.as_ref())),
        );
        r
    }

    #[test]
    fn good_signature_verifies_with_any_trusted_key() {
        let (a, b) = (key_pair(1), key_pair(2));
        let keys = IssuerKeys::new(&[b.public_key().as_ref(), a.public_key().as_ref()]).unwrap();
        assert_eq!(keys.verify(&signed(&a)), Verification::Verified);
        let round = IssuerKeys::from_base64url(&keys.to_base64url()).unwrap();
        assert_eq!(round, keys);
    }

    #[test]
    fn failures_name_the_reason() {
        let a = key_pair(1);
        let keys = IssuerKeys::new(&[a.public_key().as_ref()]).unwrap();
        let mut tampered = signed(&a);
        tampered.insert("holder_name".into(), "someone else".into());
        let mut missing_field = signed(&a);
        missing_field.remove("content");
        let mut no_sig = signed(&a);
        no_sig.remove("issuer_signature");
        let mut garbage = signed(&a);
        garbage.insert("issuer_signature".into(), "!!".into());
        let cases = [
            (tampered, "does not verify"),
            (missing_field, "content"),
            (no_sig, "no issuer_signature"),
            (garbage, "not base64url"),
        ];
        for (record, want) in cases {
            let v = keys.verify(&record);
            assert!(!v.is_verified());
            assert!(v.error().unwrap().contains(want), "{v:?}");
        }
        // Signed by an issuer we do not trust.
        let other = IssuerKeys::new(&[key_pair(9).public_key().as_ref()]).unwrap();
        assert!(!other.verify(&signed(&a)).is_verified());
        let none = IssuerKeys::default();
        assert!(none
            .verify(&signed(&a))
            .error()
            .unwrap()
            .contains("no issuer public key"));
    }

    #[test]
    fn bad_keys_are_config_errors() {
        assert!(IssuerKeys::new(&[[0u8; 31]]).is_err());
        assert!(IssuerKeys::from_base64url(&["***"]).is_err());
        assert!(IssuerKeys::from_base64url(&["AAAA"]).is_err());
    }
}
