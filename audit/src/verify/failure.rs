//! What `verify` reports: the first bad record. Its own module, so the checks under
//! `verify/` name it without importing `verify` back.

/// The first place the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFailure {
    /// Sequence number of the first bad record.
    pub seq: i64,
    /// What is wrong with it.
    pub reason: String,
}
