//! A witness (c2sp.org/tlog-witness): it follows logs, and cosigns a log's checkpoint
//! only once it has checked that the log's tree of that checkpoint extends the one it
//! cosigned before. Whoever holds a gateway's key and its database can rewrite
//! history and sign it again, but not without the witnesses, who refuse a tree that
//! does not extend the last one they saw (a fork).
//!
//! The log submits `add-checkpoint` requests, each a text body:
//!
//! ```text
//! old <size the log believes the witness last cosigned>
//! <consistency proof from that size, one base64 hash a line>
//!
//! <the checkpoint, a signed note>
//! ```
//!
//! and gets back the witness's cosignature line (c2sp.org/tlog-cosignature) or a
//! refusal ([`WitnessError`]). What the witness cosigned last, per log, is on disk
//! (written and synced before the cosignature is returned), so a restart never
//! forgets a tree it vouched for.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::signature::Ed25519KeyPair;
use serde::{Deserialize, Serialize};

use crate::tlog::checkpoint::SignedCheckpoint;
use crate::tlog::cosignature::cosign;
use crate::tlog::note::{Verifier, TYPE_ED25519};
use crate::tlog::tree::{self, Hash};

/// Why a witness refused a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    /// The request body is not an add-checkpoint request.
    #[error("malformed add-checkpoint request: {0}")]
    Malformed(String),
    /// The checkpoint's origin is not a log this witness follows.
    #[error("unknown log {0:?}")]
    UnknownLog(String),
    /// The checkpoint is not signed by the log's key.
    #[error("the checkpoint of {0} is not signed by its key")]
    Unsigned(String),
    /// The log's idea of what the witness last cosigned is wrong: it should retry
    /// from `latest` (HTTP 409 with the size as body).
    #[error("the witness last cosigned size {latest} of {origin}, not {claimed}")]
    Conflict {
        /// The log.
        origin: String,
        /// The size the request started from.
        claimed: u64,
        /// The size the witness last cosigned.
        latest: u64,
    },
    /// The checkpoint does not extend the tree the witness cosigned: a rewritten
    /// history, or a proof that does not hold.
    #[error("FORK: the checkpoint of size {size} of {origin} does not extend the tree of size {latest} this witness cosigned: {reason}")]
    Fork {
        /// The log.
        origin: String,
        /// The size the witness cosigned.
        latest: u64,
        /// The size of the refused checkpoint.
        size: u64,
        /// What did not hold.
        reason: String,
    },
    /// The witness could not keep its state.
    #[error("witness state {path}: {reason}")]
    State {
        /// The state file.
        path: String,
        /// What failed.
        reason: String,
    },
}

/// A log the witness follows: the checkpoints' origin and the key that signs them.
#[derive(Debug, Clone)]
pub struct FollowedLog {
    /// The log's verifier (its name is the checkpoints' origin).
    pub verifier: Verifier,
}

impl FollowedLog {
    /// The log named `origin` whose checkpoints `public_key` (Ed25519) signs.
    pub fn new(origin: &str, public_key: &[u8]) -> Result<Self, WitnessError> {
        Verifier::new(origin, TYPE_ED25519, public_key)
            .map(|verifier| Self { verifier })
            .map_err(|e| WitnessError::Malformed(e.to_string()))
    }
}

/// What a witness last cosigned of one log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cosigned {
    /// Tree size.
    pub size: u64,
    /// Root hash, standard base64.
    pub root: String,
    /// Unix seconds of the cosignature.
    pub time: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    logs: BTreeMap<String, Cosigned>,
}

/// A witness: its name and key, the logs it follows and what it cosigned of each.
pub struct Witness {
    name: String,
    key: Ed25519KeyPair,
    logs: BTreeMap<String, FollowedLog>,
    path: PathBuf,
    state: Mutex<State>,
}

impl Witness {
    /// A witness named `name` signing with `key`, following `logs`, its state in the
    /// file at `path` (created when missing).
    pub fn open(
        name: &str,
        key: Ed25519KeyPair,
        logs: Vec<FollowedLog>,
        path: &Path,
    ) -> Result<Self, WitnessError> {
        let state_error = |reason: String| WitnessError::State {
            path: path.display().to_string(),
            reason,
        };
        crate::tlog::cosignature::verifier(name, &key)
            .map_err(|e| WitnessError::Malformed(format!("witness name {name:?}: {e}")))?;
        let state = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| state_error(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(state_error(e.to_string())),
        };
        Ok(Self {
            name: name.to_owned(),
            key,
            logs: logs
                .into_iter()
                .map(|l| (l.verifier.name.clone(), l))
                .collect(),
            path: path.to_owned(),
            state: Mutex::new(state),
        })
    }

    /// The witness's name (its cosignatures' key name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier of its cosignatures (its `vkey` is what logs configure).
    pub fn verifier(&self) -> Verifier {
        use ring::signature::KeyPair as _;
        // The name was checked when the witness was opened.
        Verifier {
            name: self.name.clone(),
            kind: crate::tlog::note::TYPE_COSIGNATURE,
            public_key: self.key.public_key().as_ref().to_vec(),
        }
    }

    /// What it last cosigned of each log, by origin.
    pub fn status(&self) -> BTreeMap<String, Cosigned> {
        self.lock().logs.clone()
    }

    /// What it last cosigned of the log `origin`.
    pub fn cosigned(&self, origin: &str) -> Option<Cosigned> {
        self.lock().logs.get(origin).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock left the state as it was on disk or newer.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handle an add-checkpoint request `body` at unix time `now`: the cosignature
    /// line for its checkpoint, once the state says so on disk.
    pub fn add_checkpoint(&self, body: &str, now: u64) -> Result<String, WitnessError> {
        let request = AddCheckpoint::parse(body)?;
        let checkpoint = SignedCheckpoint::parse(&request.checkpoint)
            .map_err(|e| WitnessError::Malformed(e.to_string()))?;
        let (origin, size, root) = (checkpoint.origin.as_str(), checkpoint.size, checkpoint.root);
        let note = &checkpoint.note;
        let log = self
            .logs
            .get(origin)
            .ok_or_else(|| WitnessError::UnknownLog(origin.to_owned()))?;
        note.verify(&log.verifier)
            .map_err(|_| WitnessError::Unsigned(origin.to_owned()))?;

        let mut state = self.lock();
        let (latest, latest_root) = match state.logs.get(origin) {
            Some(c) => (c.size, hash_of(&c.root)?),
            None => (0, tree::EMPTY_HASH),
        };
        if request.old != latest {
            return Err(WitnessError::Conflict {
                origin: origin.to_owned(),
                claimed: request.old,
                latest,
            });
        }
        let fork = |reason: String| WitnessError::Fork {
            origin: origin.to_owned(),
            latest,
            size,
            reason,
        };
        if size < latest {
            return Err(fork("the tree is smaller than the one cosigned".into()));
        }
        if latest == 0 {
            if !request.proof.is_empty() {
                return Err(WitnessError::Malformed(
                    "a consistency proof from the empty tree".into(),
                ));
            }
        } else if size == latest {
            if root != latest_root {
                return Err(fork("same size, another root".into()));
            }
        } else {
            tree::check_consistency(&request.proof, size, root, latest, latest_root)
                .map_err(|e| fork(e.to_string()))?;
        }
        let mut next = State {
            logs: state.logs.clone(),
        };
        next.logs.insert(
            origin.to_owned(),
            Cosigned {
                size,
                root: B64.encode(root.0),
                time: now,
            },
        );
        self.persist(&next)?;
        *state = next;
        Ok(cosign(&self.name, &self.key, &note.text, now))
    }

    /// Write `state` beside the file, sync it, and rename it over the file.
    fn persist(&self, state: &State) -> Result<(), WitnessError> {
        let state_error = |e: std::io::Error| WitnessError::State {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        };
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| WitnessError::State {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        let tmp = self.path.with_extension("tmp");
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp).map_err(state_error)?;
            f.write_all(&bytes).map_err(state_error)?;
            f.sync_all().map_err(state_error)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(state_error)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(state_error)?;
        }
        Ok(())
    }
}

/// An add-checkpoint request.
#[derive(Debug, Clone, PartialEq)]
pub struct AddCheckpoint {
    /// The size the log believes the witness last cosigned.
    pub old: u64,
    /// The consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The checkpoint, a signed note.
    pub checkpoint: String,
}

impl AddCheckpoint {
    /// The request's body.
    pub fn body(&self) -> String {
        let mut out = format!("old {}\n", self.old);
        for h in &self.proof {
            out.push_str(&B64.encode(h.0));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parse a request's body.
    pub fn parse(body: &str) -> Result<Self, WitnessError> {
        let malformed = |what: &str| WitnessError::Malformed(what.to_owned());
        let (head, checkpoint) = body
            .split_once("\n\n")
            .ok_or_else(|| malformed("no blank line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| malformed("the first line is not `old <size>`"))?;
        let proof = lines
            .map(|l| hash_of(l).map_err(|_| malformed("a proof line is not a base64 hash")))
            .collect::<Result<Vec<_>, _>>()?;
        if proof.len() > 63 {
            return Err(malformed("a consistency proof of more than 63 hashes"));
        }
        Ok(Self {
            old,
            proof,
            checkpoint: checkpoint.to_owned(),
        })
    }
}

fn hash_of(b64: &str) -> Result<Hash, WitnessError> {
    B64.decode(b64)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(Hash)
        .ok_or_else(|| WitnessError::Malformed(format!("{b64:?} is not a base64 SHA-256 hash")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::rc::Rc;

    use ring::signature::KeyPair as _;

    use super::*;
    use crate::tlog::checkpoint::body as checkpoint_text;
    use crate::tlog::cosignature::{cosigned_at, verifier};
    use crate::tlog::note::tests::new_key;
    use crate::tlog::note::NoteSigner;
    use crate::tlog::tree::KnownHashes;

    const ORIGIN: &str = "tongban.test/audit";

    /// A log of `n` records `r0…`, able to sign checkpoints and prove consistency.
    struct Log {
        key: Rc<Ed25519KeyPair>,
        known: KnownHashes,
        size: u64,
    }

    impl Log {
        fn new() -> Self {
            Self::signed_by(Rc::new(new_key()))
        }

        /// Another log under the same key: what the key holder can make.
        fn signed_by(key: Rc<Ed25519KeyPair>) -> Self {
            Self {
                key,
                known: KnownHashes::default(),
                size: 0,
            }
        }

        fn grow(&mut self, records: &[&str]) {
            let leaves: Vec<Hash> = records
                .iter()
                .map(|r| tree::leaf_hash(r.as_bytes()))
                .collect();
            // Every stored hash kept, as the store keeps them, for proofs of any size.
            tree::extend(self.size, &leaves, &mut self.known).unwrap();
            self.size += leaves.len() as u64;
        }

        fn checkpoint(&self) -> String {
            let root = tree::root(self.size, &self.known).unwrap();
            NoteSigner::new(ORIGIN, &self.key)
                .unwrap()
                .sign(&checkpoint_text(ORIGIN, self.size, &root))
                .unwrap()
        }

        fn request(&self, old: u64) -> String {
            let proof = if old == 0 || old == self.size {
                Vec::new()
            } else {
                tree::prove_consistency(self.size, old, &self.known).unwrap()
            };
            AddCheckpoint {
                old,
                proof,
                checkpoint: self.checkpoint(),
            }
            .body()
        }

        fn followed(&self) -> FollowedLog {
            FollowedLog::new(ORIGIN, self.key.public_key().as_ref()).unwrap()
        }
    }

    fn witness(log: &Log, dir: &Path) -> (Witness, Verifier) {
        let key = new_key();
        let v = verifier("witness.test", &key).unwrap();
        let w = Witness::open(
            "witness.test",
            key,
            vec![log.followed()],
            &dir.join("w.json"),
        )
        .unwrap();
        (w, v)
    }

    #[test]
    fn a_growing_log_is_cosigned_and_the_state_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::new();
        log.grow(&["r0", "r1", "r2"]);
        let (w, v) = witness(&log, dir.path());
        let line = w.add_checkpoint(&log.request(0), 1_790_000_000).unwrap();
        let cosigned =
            crate::tlog::note::Note::parse(&format!("{}{line}", log.checkpoint())).unwrap();
        assert_eq!(cosigned_at(&cosigned, &v).unwrap(), 1_790_000_000);

        log.grow(&["r3", "r4"]);
        w.add_checkpoint(&log.request(3), 1_790_000_005).unwrap();
        assert_eq!(w.cosigned(ORIGIN).map(|c| c.size), Some(5));
        // The same checkpoint again is fine (the log retries).
        w.add_checkpoint(&log.request(5), 1_790_000_006).unwrap();

        // A restarted witness remembers size 5: a log claiming 3 is told so.
        let key = new_key();
        let again = Witness::open(
            "witness.test",
            key,
            vec![log.followed()],
            &dir.path().join("w.json"),
        )
        .unwrap();
        assert!(matches!(
            again.add_checkpoint(&log.request(3), 1_790_000_010),
            Err(WitnessError::Conflict {
                latest: 5,
                claimed: 3,
                ..
            })
        ));
    }

    #[test]
    fn a_rewritten_history_is_refused_as_a_fork() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::new();
        log.grow(&["r0", "r1", "r2", "r3"]);
        let (w, _) = witness(&log, dir.path());
        w.add_checkpoint(&log.request(0), 1).unwrap();

        // The key holder rewrites record 2 and re-signs a longer tree.
        let mut forged = Log::signed_by(Rc::clone(&log.key));
        forged.grow(&["r0", "r1", "r2-rewritten", "r3", "r4"]);
        let refused = w.add_checkpoint(&forged.request(4), 2);
        assert!(
            matches!(
                refused,
                Err(WitnessError::Fork {
                    latest: 4,
                    size: 5,
                    ..
                })
            ),
            "{refused:?}"
        );
        // Same size, another root.
        let mut same = Log::signed_by(Rc::clone(&log.key));
        same.grow(&["r0", "r1", "r2-rewritten", "r3"]);
        assert!(matches!(
            same_size(&w, &same),
            Err(WitnessError::Fork { .. })
        ));
        // Nothing was cosigned past the honest tree.
        assert_eq!(w.cosigned(ORIGIN).map(|c| c.size), Some(4));
    }

    fn same_size(w: &Witness, log: &Log) -> Result<String, WitnessError> {
        w.add_checkpoint(&log.request(4), 3)
    }

    #[test]
    fn unknown_logs_other_keys_and_bad_bodies_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::new();
        log.grow(&["r0"]);
        let (w, _) = witness(&log, dir.path());
        let mut stranger = Log::new();
        stranger.grow(&["r0"]);
        assert!(matches!(
            w.add_checkpoint(&stranger.request(0), 1),
            Err(WitnessError::Unsigned(_))
        ));
        for body in ["", "old x\n\n", "old 0\nnot-base64\n\nx", "old 0\n"] {
            assert!(
                matches!(w.add_checkpoint(body, 1), Err(WitnessError::Malformed(_))),
                "{body:?}"
            );
        }
        assert!(w.cosigned(ORIGIN).is_none());
    }

    #[test]
    fn a_request_body_round_trips() {
        let r = AddCheckpoint {
            old: 7,
            proof: vec![Hash([1; 32]), Hash([2; 32])],
            checkpoint: "o\n9\nAAAA\n\n— o x\n".into(),
        };
        assert_eq!(AddCheckpoint::parse(&r.body()).unwrap(), r);
    }
}
