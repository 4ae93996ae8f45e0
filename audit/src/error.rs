//! What can go wrong with the audit log.

/// Audit failures. Any of them means the request must not be answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    /// The store refused or failed the write.
    #[error("audit store: {0}")]
    Store(String),
    /// The writer task is gone (shutting down).
    #[error("audit writer stopped")]
    Closed,
}

impl From<sqlx::Error> for AuditError {
    fn from(e: sqlx::Error) -> Self {
        AuditError::Store(e.to_string())
    }
}
