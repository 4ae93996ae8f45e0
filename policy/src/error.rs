use std::path::PathBuf;

/// Everything that can go wrong loading, storing or evaluating agreements.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// An agreement file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An agreement file is not valid TOML or has a bad field; the message carries line
    /// and column.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong and where.
        message: String,
    },
    /// An agreement breaks a rule of the model (e.g. empty matters).
    #[error("agreement {id}: {message}")]
    Invalid {
        /// The agreement id.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// The agreement database failed.
    #[error("agreement store: {0}")]
    Store(#[from] sqlx::Error),
    /// A stored agreement could not be decoded.
    #[error("agreement store: stored agreement {id} is unreadable: {message}")]
    Corrupt {
        /// The agreement id.
        id: String,
        /// Decoder message.
        message: String,
    },
    /// casbin refused the model or a policy line.
    #[error("policy engine: {0}")]
    Engine(#[from] casbin::Error),
}
