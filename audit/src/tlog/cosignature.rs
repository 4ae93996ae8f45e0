//! Witness cosignatures (c2sp.org/tlog-cosignature/v1).
//!
//! A witness signs `cosignature/v1\ntime <unix seconds>\n` followed by the checkpoint
//! text, with a key whose id has type `0x04`; the signature line carries the 8-byte
//! big-endian time before the Ed25519 signature.

use ring::signature::{Ed25519KeyPair, KeyPair as _};

use super::note::{key_id, signature_line, Note, NoteError, Signature, Verifier, TYPE_COSIGNATURE};

/// What a witness signs for `checkpoint` (a checkpoint's text) at `time`.
pub fn message(checkpoint: &str, time: u64) -> String {
    format!("cosignature/v1\ntime {time}\n{checkpoint}")
}

/// A witness's cosignature line for `checkpoint`'s text at `time`.
pub fn cosign(name: &str, key: &Ed25519KeyPair, checkpoint: &str, time: u64) -> String {
    let signature = key.sign(message(checkpoint, time).as_bytes());
    let mut bytes = time.to_be_bytes().to_vec();
    bytes.extend_from_slice(signature.as_ref());
    let id = key_id(name, TYPE_COSIGNATURE, key.public_key().as_ref());
    signature_line(name, &id, &bytes)
}

/// The verifier of `name`'s cosignatures with `key`.
pub fn verifier(name: &str, key: &Ed25519KeyPair) -> Result<Verifier, NoteError> {
    Verifier::new(name, TYPE_COSIGNATURE, key.public_key().as_ref())
}

/// The time of `witness`'s valid cosignature on `note`, if it carries one.
pub fn cosigned_at(note: &Note, witness: &Verifier) -> Result<u64, NoteError> {
    let mut found = false;
    for s in note.by(witness) {
        found = true;
        if let Some(time) = check(note, witness, s) {
            return Ok(time);
        }
    }
    Err(if found {
        NoteError::BadSignature(witness.name.clone())
    } else {
        NoteError::Unsigned(witness.name.clone())
    })
}

fn check(note: &Note, witness: &Verifier, s: &Signature) -> Option<u64> {
    let (time, signature) = s.bytes.split_first_chunk::<8>()?;
    let time = u64::from_be_bytes(*time);
    witness
        .verify_bytes(message(&note.text, time).as_bytes(), signature)
        .ok()
        .map(|()| time)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::note::tests::{new_key, TEXT};
    use super::super::note::NoteSigner;
    use super::*;

    #[test]
    fn a_cosignature_verifies_with_its_time_and_not_as_a_log_signature() {
        let (log_key, witness_key) = (new_key(), new_key());
        let log = NoteSigner::new("tongban.test/audit", &log_key).unwrap();
        let note = log.sign(TEXT).unwrap();
        let cosigned = format!(
            "{note}{}",
            cosign("witness.test", &witness_key, TEXT, 1_790_000_000)
        );
        let parsed = Note::parse(&cosigned).unwrap();
        parsed.verify(&log.verifier()).unwrap();
        let witness = verifier("witness.test", &witness_key).unwrap();
        assert_eq!(cosigned_at(&parsed, &witness), Ok(1_790_000_000));
        // The same key as a plain note signer is another key id: not a cosignature.
        let plain = NoteSigner::new("witness.test", &witness_key).unwrap();
        let signed = format!("{note}{}", plain.signature_line(TEXT));
        assert!(cosigned_at(&Note::parse(&signed).unwrap(), &witness).is_err());
    }

    #[test]
    fn a_cosignature_on_another_checkpoint_does_not_verify() {
        let (log_key, witness_key) = (new_key(), new_key());
        let log = NoteSigner::new("log", &log_key).unwrap();
        let other = TEXT.replace("\n3\n", "\n4\n");
        let note = format!(
            "{}{}",
            log.sign(TEXT).unwrap(),
            cosign("w", &witness_key, &other, 5)
        );
        let witness = verifier("w", &witness_key).unwrap();
        assert_eq!(
            cosigned_at(&Note::parse(&note).unwrap(), &witness),
            Err(NoteError::BadSignature("w".into()))
        );
    }
}
