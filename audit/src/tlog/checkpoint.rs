//! C2SP tlog-checkpoints (c2sp.org/tlog-checkpoint): a signed note whose text is the
//! log's origin, the tree size and the base64 root hash, one per line (extension
//! lines may follow; they are ignored here).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::note::{Note, NoteError, Verifier, TYPE_ED25519};
use super::tree::Hash;

/// A checkpoint as read from its signed note.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedCheckpoint {
    /// The log's name: the first line, and the name of the key that signs it.
    pub origin: String,
    /// The tree size.
    pub size: u64,
    /// The root hash of the tree of `size` leaves.
    pub root: Hash,
    /// The whole note, signatures included.
    pub note: Note,
}

/// The text of a checkpoint: origin, size, base64 root, each on its line.
pub fn body(origin: &str, size: u64, root: &Hash) -> String {
    format!("{origin}\n{size}\n{}\n", B64.encode(root.0))
}

impl SignedCheckpoint {
    /// Parse a signed note holding a checkpoint (signatures are not checked here).
    pub fn parse(note: &str) -> Result<Self, NoteError> {
        let note = Note::parse(note)?;
        let mut lines = note.text.lines();
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(NoteError::Malformed(
                "a checkpoint is origin, size and root hash",
            ));
        };
        // The size is decimal without a leading zero, as the spec writes it.
        let size = size
            .parse::<u64>()
            .ok()
            .filter(|n| n.to_string() == size)
            .ok_or(NoteError::Malformed("the checkpoint size is not a number"))?;
        let root = B64
            .decode(root)
            .ok()
            .and_then(|r| <[u8; 32]>::try_from(r).ok())
            .map(Hash)
            .ok_or(NoteError::Malformed(
                "the checkpoint root is not a base64 SHA-256",
            ))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            note,
        })
    }

    /// Check the Ed25519 signature named after the origin by `public_key`.
    pub fn verify(&self, public_key: &[u8]) -> Result<(), NoteError> {
        self.note
            .verify(&Verifier::new(&self.origin, TYPE_ED25519, public_key)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tlog::note::tests::new_key;
    use crate::tlog::note::NoteSigner;
    use ring::signature::KeyPair as _;

    #[test]
    fn a_signed_checkpoint_parses_and_verifies_and_a_changed_one_does_not() {
        let key = new_key();
        let text = body("tongban.test/audit", 7, &Hash([7; 32]));
        let note = NoteSigner::new("tongban.test/audit", &key)
            .unwrap()
            .sign(&text)
            .unwrap();
        let c = SignedCheckpoint::parse(&note).unwrap();
        assert_eq!(
            (c.origin.as_str(), c.size, c.root),
            ("tongban.test/audit", 7, Hash([7; 32]))
        );
        c.verify(key.public_key().as_ref()).unwrap();
        let other = new_key();
        assert!(c.verify(other.public_key().as_ref()).is_err());
        let moved = SignedCheckpoint::parse(&note.replacen("\n7\n", "\n8\n", 1)).unwrap();
        assert!(moved.verify(key.public_key().as_ref()).is_err());
        for bad in ["\n7\n", "\n07\n", "\n-1\n"] {
            let text = note.replacen("\n7\n", &bad.replace('7', "x"), 1);
            assert!(SignedCheckpoint::parse(&text).is_err(), "{bad}");
        }
        assert!(SignedCheckpoint::parse(&note.replacen("\n7\n", "\n07\n", 1)).is_err());
    }
}
