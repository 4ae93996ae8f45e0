//! The audit log: every request that reaches the HTTP layer, hash-chained, committed
//! before its response leaves, sealed by signed checkpoints.
//!
//! Record `n` stores its canonical JSON (RFC 8785) holding `seq` and `prev_hash`, and
//! `hash = SHA-256(prev_hash ‖ canonical JSON)` in lowercase hex, `prev_hash` of the
//! first record being 64 zeros. Editing, deleting, inserting or reordering a row breaks
//! the chain at that row, which `verify` names. Each record is also a leaf of an RFC
//! 9162 Merkle tree; every batch signs a C2SP note of the tree with the gateway's
//! Ed25519 key, and every N records or T seconds that note is kept as a checkpoint
//! ([`StoredCheckpoint`]) beside the chain and in a file outside it, so that a cut-off
//! tail or a chain rewritten with recomputed hashes is caught too. Stores sealed
//! before that hold JWS [`Checkpoint`]s of the head, which still verify. A record binds
//! the answer it was written for (`answer_sha256`, [`check_answer`]); witnesses
//! ([`witness`]) cosign checkpoints that extend what they cosigned, and [`witnessed`]
//! says how far they vouch for a store.
//!
//! ```text
//!  AuditLog::append ─▶ writer task (group commit) ─▶ AuditStore (SQLite | PostgreSQL)
//!                         └─ every N records / T s: the batch's note ─▶ store + checkpoint file
//!  verify · search · export · subject · citizen · usage · report · archive · proofs ─▶ AuditStore
//! ```
//!
//! This crate knows nothing of HTTP or of the gateway's config: the gateway builds
//! [`AuditSettings`] and [`Database`] from its config and counts commits through a
//! [`CommitObserver`].

mod answer;
mod archive;
mod batch;
mod batch_note;
pub mod canonical;
mod chain;
#[cfg(test)]
mod chained_store;
mod checkpoint;
mod cosignatures;
mod error;
mod export;
mod follow;
mod frontier;
mod log;
mod multi_insert;
mod receipt;
mod report;
mod search;
mod segment_index;
mod segment_search;
// The gateway's one Ed25519 key seals checkpoints and signs answers; it lives here,
// below both users, so the gateway takes it from audit and never the other way.
pub mod signing;
mod sqlite_writer;
mod store;
mod subject;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod tlog;
mod tree_store;
mod usage;
mod verify;
mod verify_runs;
pub mod witness;

pub use answer::{answer_sha256, canonical_answer, check_answer, AnswerError, RECEIPT_MEMBER};
pub use archive::{archive, read_archive};
pub use batch::{search_columns, AuditSettings, CommitObserver, SEARCH_COLUMN_NAMES};
pub use batch_note::BatchNote;
pub use chain::{chain_hash, seal_entry, AuditEntry, Decision, Row, StoredRecord, GENESIS};
pub use checkpoint::{
    merge_jwks, read_checkpoint_file, Checkpoint, Seal, StoredCheckpoint, CHECKPOINT_KIND,
};
pub use cosignatures::{witnessed, Witnessed};
pub use error::AuditError;
pub use export::{
    export, parse_line, ExportContext, ExportLine, ExportSummary, Format, EXPORT_FORMAT,
};
pub use follow::{FollowError, Proof, MAX_ENTRIES};
pub use log::{AuditLog, Receipt};
pub use receipt::{check_receipt, Included, ReceiptError};
pub use report::{anomalies, revoked_from_index, Anomaly, AnomalyRules};
pub use search::{cst, parse_time, Filter};
pub use segment_index::index_sealed_segments;
pub use store::{state_db_options, ArchiveEntry, AuditStore, Database};
pub use subject::{
    citizen_page, subject_report, Access, CitizenPage, Disclosure, SubjectReport, Withheld,
};
/// A C2SP tlog-checkpoint body (origin, size, base64 root), as notes sign it.
pub use tlog::checkpoint::body as checkpoint_text;
pub use usage::{
    department_of, is_access, usage_report, Figures, Scope, Series, Tally, UsageQuery, UsageReport,
    BUNDLE_PATH, DIMENSIONS, LOOKUP_PATH,
};
pub use verify::{
    verify, verify_chain, ChainChecker, TreeReport, VerifyFailure, VerifyOptions, VerifyReport,
};
pub use verify_runs::VerifyRun;
