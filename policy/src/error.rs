use std::path::PathBuf;

use crate::request_state::RequestState;

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
    /// An agreement file has a syntax error or a bad field: `file:line: message`.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line, when known.
        line: Option<usize>,
        /// What is wrong, naming the agreement and field.
        message: String,
    },
    /// An agreement breaks a rule of the model or of the catalogue.
    #[error("agreement {id}: {field}: {message}")]
    Invalid {
        /// The agreement id.
        id: String,
        /// The field at fault (`matters`, `fields.ethnicity`, …).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// An access request or its review breaks a rule; names the field.
    #[error("{field}: {message}")]
    BadRequest {
        /// The field at fault (`fields.ethnicity`, `valid_until`, …).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// An access request could not be acted on.
    #[error("{0}")]
    Request(#[from] RequestRefusal),
    /// A role binding names a bad identity or role.
    #[error("role binding: {field}: {message}")]
    BadBinding {
        /// `identity` or `role`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A change was refused: the agreement exists (create) or does not (revoke), or
    /// the caller's guard refused it.
    #[error("{0}")]
    Refused(Refusal),
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

/// Why a change to the store was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Create of an id that exists.
    #[error("agreement {0} already exists")]
    Exists(String),
    /// Update or revoke of an id that does not exist.
    #[error("no agreement {0}")]
    Missing(String),
    /// The caller may not make this change (e.g. another department's dataset).
    #[error("{0}")]
    NotPermitted(String),
    /// Unbinding a role the identity does not hold.
    #[error("{identity} does not hold role {role}")]
    NoBinding {
        /// The identity.
        identity: String,
        /// The role.
        role: String,
    },
}

/// Why a request could not be acted on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestRefusal {
    /// No request with that id.
    #[error("no access request {0}")]
    Missing(String),
    /// It is no longer submitted: approved, refused, withdrawn or expired.
    #[error("access request {id} is {state}; only a submitted request can be {verb}")]
    NotPending {
        /// The request.
        id: String,
        /// Where it stands.
        state: RequestState,
        /// What was tried (`approved`, `refused`, `withdrawn`).
        verb: &'static str,
    },
}
