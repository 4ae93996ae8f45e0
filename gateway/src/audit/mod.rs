//! The audit log: every request that reaches the HTTP layer, hash-chained, committed
//! before its response leaves.
//!
//! Record `n` stores its canonical JSON (RFC 8785) holding `seq` and `prev_hash`, and
//! `hash = SHA-256(prev_hash ‖ canonical JSON)` in lowercase hex, `prev_hash` of the
//! first record being 64 zeros. Editing, deleting, inserting or reordering a row breaks
//! the chain at that row, which `verify` names.

mod chain;
mod log;
mod verify;

pub use chain::{chain_hash, AuditEntry, Decision, GENESIS};
pub use log::{state_db_options, AuditError, AuditLog, Receipt};
pub use verify::{verify_chain, VerifyFailure, VerifyReport};
