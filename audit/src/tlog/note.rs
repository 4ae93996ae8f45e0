//! Signed notes (c2sp.org/signed-note) with Ed25519 keys.
//!
//! A note is a UTF-8 text ending in a newline, a blank line, then one line per
//! signature: `— <key name> <base64(key id ‖ signature)>`. The key id is the first
//! four bytes of `SHA-256(key name ‖ 0x0A ‖ type ‖ public key)`, type `0x01` for an
//! Ed25519 signature of the text and `0x04` for a witness cosignature
//! (c2sp.org/tlog-cosignature). Verifiers skip signatures by keys they do not know.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};

/// Signature type of an Ed25519 note signature.
pub const TYPE_ED25519: u8 = 0x01;
/// Signature type of a witness cosignature (c2sp.org/tlog-cosignature).
pub const TYPE_COSIGNATURE: u8 = 0x04;

/// The signature line prefix: U+2014 EM DASH and a space.
const DASH: &str = "\u{2014} ";

/// Why a note or a key could not be read or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The text does not follow the signed-note format.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// A key name that the format does not allow (empty, or with a space or `+`).
    #[error("key name {0:?} is not a valid note key name (non-empty, no spaces, no '+')")]
    KeyName(String),
    /// A verifier key string that does not parse.
    #[error("verifier key {0:?} is not `<name>+<key id hex>+<base64(type ‖ public key)>`")]
    VerifierKey(String),
    /// No signature by the expected key.
    #[error("the note carries no signature by {0}")]
    Unsigned(String),
    /// A signature by the expected key that does not verify.
    #[error("the signature by {0} does not verify")]
    BadSignature(String),
}

/// The key id of `public_key` named `name`, for signatures of type `kind`.
pub fn key_id(name: &str, kind: u8, public_key: &[u8]) -> [u8; 4] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[kind]);
    ctx.update(public_key);
    let digest = ctx.finish();
    let mut id = [0u8; 4];
    id.copy_from_slice(&digest.as_ref()[..4]);
    id
}

fn check_name(name: &str) -> Result<(), NoteError> {
    let bad = name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+');
    if bad {
        Err(NoteError::KeyName(name.to_owned()))
    } else {
        Ok(())
    }
}

/// A public key that verifies notes: its name, signature type and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    /// The key's name, as it appears on signature lines.
    pub name: String,
    /// [`TYPE_ED25519`] or [`TYPE_COSIGNATURE`].
    pub kind: u8,
    /// The 32-byte Ed25519 public key.
    pub public_key: Vec<u8>,
}

impl Verifier {
    /// A verifier of `kind` signatures by `public_key` named `name`.
    pub fn new(name: &str, kind: u8, public_key: &[u8]) -> Result<Self, NoteError> {
        check_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            kind,
            public_key: public_key.to_vec(),
        })
    }

    /// Parse the verifier key string `<name>+<key id hex>+<base64(type ‖ key)>`, the
    /// form Go's `sumdb/note` and C2SP tools print and take.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let bad = || NoteError::VerifierKey(vkey.to_owned());
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let raw = B64.decode(key).map_err(|_| bad())?;
        let (&kind, public_key) = raw.split_first().ok_or_else(bad)?;
        if public_key.len() != 32 || ![TYPE_ED25519, TYPE_COSIGNATURE].contains(&kind) {
            return Err(bad());
        }
        let verifier = Self::new(name, kind, public_key)?;
        if hex::encode(verifier.key_id()) != id {
            return Err(bad());
        }
        Ok(verifier)
    }

    /// The verifier key string (see [`Verifier::parse`]).
    pub fn to_vkey(&self) -> String {
        let mut raw = vec![self.kind];
        raw.extend_from_slice(&self.public_key);
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id()),
            B64.encode(raw)
        )
    }

    /// This key's id.
    pub fn key_id(&self) -> [u8; 4] {
        key_id(&self.name, self.kind, &self.public_key)
    }

    /// Check that `message` was signed by this key with `signature`.
    pub fn verify_bytes(&self, message: &[u8], signature: &[u8]) -> Result<(), NoteError> {
        UnparsedPublicKey::new(&ED25519, &self.public_key)
            .verify(message, signature)
            .map_err(|_| NoteError::BadSignature(self.name.clone()))
    }
}

/// A signer of notes: a name and an Ed25519 key pair.
pub struct NoteSigner<'k> {
    name: String,
    key: &'k Ed25519KeyPair,
}

impl<'k> NoteSigner<'k> {
    /// A signer named `name` with `key`.
    pub fn new(name: &str, key: &'k Ed25519KeyPair) -> Result<Self, NoteError> {
        check_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key,
        })
    }

    /// The verifier of this signer's [`TYPE_ED25519`] signatures.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            kind: TYPE_ED25519,
            public_key: self.key.public_key().as_ref().to_vec(),
        }
    }

    /// The signature line of `text` (a note body ending in a newline).
    pub fn signature_line(&self, text: &str) -> String {
        let signature = self.key.sign(text.as_bytes());
        let id = self.verifier().key_id();
        signature_line(&self.name, &id, signature.as_ref())
    }

    /// `text` signed: the whole note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        Ok(format!("{text}\n{}", self.signature_line(text)))
    }
}

/// One signature line: `— name base64(id ‖ signature)\n`.
pub fn signature_line(name: &str, id: &[u8; 4], signature: &[u8]) -> String {
    let mut raw = id.to_vec();
    raw.extend_from_slice(signature);
    format!("{DASH}{name} {}\n", B64.encode(raw))
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed("the text must end with a newline"));
    }
    if text.contains("\n\n") || text.starts_with('\n') {
        return Err(NoteError::Malformed(
            "the text must not contain a blank line",
        ));
    }
    Ok(())
}

/// One signature of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The signing key's name.
    pub name: String,
    /// The signing key's id.
    pub key_id: [u8; 4],
    /// What follows the id: the Ed25519 signature (for a cosignature, the timestamp
    /// first).
    pub bytes: Vec<u8>,
}

/// A note as read: its text and its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending in a newline.
    pub text: String,
    /// Every signature line, in order.
    pub signatures: Vec<Signature>,
}

impl Note {
    /// Parse a signed note.
    pub fn parse(note: &str) -> Result<Self, NoteError> {
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let text = &note[..=split];
        check_text(text)?;
        let lines = &note[split + 2..];
        if !lines.ends_with('\n') {
            return Err(NoteError::Malformed(
                "the last signature line has no newline",
            ));
        }
        let mut signatures = Vec::new();
        for line in lines.lines() {
            let rest = line.strip_prefix(DASH).ok_or(NoteError::Malformed(
                "a signature line must start with '— '",
            ))?;
            let (name, sig) = rest.split_once(' ').ok_or(NoteError::Malformed(
                "a signature line is '— <name> <signature>'",
            ))?;
            check_name(name)?;
            let raw = B64
                .decode(sig)
                .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
            if raw.len() < 5 {
                return Err(NoteError::Malformed(
                    "a signature is shorter than its key id",
                ));
            }
            let mut key_id = [0u8; 4];
            key_id.copy_from_slice(&raw[..4]);
            signatures.push(Signature {
                name: name.to_owned(),
                key_id,
                bytes: raw[4..].to_vec(),
            });
        }
        if signatures.is_empty() {
            return Err(NoteError::Malformed("a note has at least one signature"));
        }
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The signatures by `verifier`'s key (name and id both match).
    pub fn by<'a>(&'a self, verifier: &'a Verifier) -> impl Iterator<Item = &'a Signature> {
        let id = verifier.key_id();
        self.signatures
            .iter()
            .filter(move |s| s.name == verifier.name && s.key_id == id)
    }

    /// Check the text's Ed25519 signature by `verifier` (type [`TYPE_ED25519`]).
    pub fn verify(&self, verifier: &Verifier) -> Result<(), NoteError> {
        let mut found = false;
        for s in self.by(verifier) {
            found = true;
            if verifier
                .verify_bytes(self.text.as_bytes(), &s.bytes)
                .is_ok()
            {
                return Ok(());
            }
        }
        if found {
            Err(NoteError::BadSignature(verifier.name.clone()))
        } else {
            Err(NoteError::Unsigned(verifier.name.clone()))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// A fresh Ed25519 key pair.
    pub(crate) fn new_key() -> Ed25519KeyPair {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap()
    }

    /// A checkpoint's text.
    pub(crate) const TEXT: &str =
        "tongban.test/audit\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";

    #[test]
    fn a_signed_note_verifies_and_any_change_breaks_it() {
        let key = new_key();
        let signer = NoteSigner::new("tongban.test/audit", &key).unwrap();
        let note = signer.sign(TEXT).unwrap();
        assert!(note.starts_with(TEXT));
        let parsed = Note::parse(&note).unwrap();
        assert_eq!(parsed.text, TEXT);
        parsed.verify(&signer.verifier()).unwrap();

        let changed = note.replacen("\n3\n", "\n4\n", 1);
        assert_eq!(
            Note::parse(&changed).unwrap().verify(&signer.verifier()),
            Err(NoteError::BadSignature("tongban.test/audit".into()))
        );
        let other = new_key();
        let stranger = NoteSigner::new("tongban.test/audit", &other).unwrap();
        assert_eq!(
            parsed.verify(&stranger.verifier()),
            Err(NoteError::Unsigned("tongban.test/audit".into()))
        );
    }

    #[test]
    fn verifier_keys_round_trip_and_refuse_a_wrong_id() {
        let key = new_key();
        let v = NoteSigner::new("example.com/log", &key).unwrap().verifier();
        let vkey = v.to_vkey();
        assert!(vkey.starts_with("example.com/log+"));
        assert_eq!(Verifier::parse(&vkey).unwrap(), v);
        let wrong = vkey.replacen("example.com/log+", "example.com/other+", 1);
        assert!(Verifier::parse(&wrong).is_err());
        assert!(Verifier::parse("no-plus-signs").is_err());
    }

    #[test]
    fn the_key_id_is_the_c2sp_one() {
        // Go's sumdb/note test vector: "PeterNeumann" and its key, key id c74f20a3.
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let v = Verifier::parse(vkey).unwrap();
        assert_eq!(hex::encode(v.key_id()), "c74f20a3");
        assert_eq!(v.to_vkey(), vkey);
    }

    #[test]
    fn malformed_notes_are_refused() {
        for bad in [
            "",
            "text\n",
            "text\n\n",
            "text\n\n— name\n",
            "text\n\n- name AAAAAAAA\n",
            "text\n\n— name !!!!\n",
            "text\n\n— name AAAA\n",
            "text\n\n— name AAAAAAAA",
        ] {
            assert!(Note::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_signatures_are_skipped() {
        let key = new_key();
        let signer = NoteSigner::new("log", &key).unwrap();
        let other = new_key();
        let witness = NoteSigner::new("witness", &other).unwrap();
        let note = format!(
            "{TEXT}\n{}{}",
            witness.signature_line(TEXT),
            signer.signature_line(TEXT)
        );
        Note::parse(&note)
            .unwrap()
            .verify(&signer.verifier())
            .unwrap();
    }
}
