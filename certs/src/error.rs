//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while creating, issuing, loading or using certificates.
///
/// Errors that concern a file name it first, e.g.
/// `pki/ca.pem: no certificate found` or
/// `pki/a.key: key does not match certificate pki/a.pem`.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A file was read but does not hold what it should (no PEM item, bad DER, not a CA, ...).
    #[error("{}: {reason}", path.display())]
    Pem {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with its content.
        reason: String,
    },
    /// A private key does not belong to the certificate it is paired with.
    #[error("{}: key does not match certificate {}", key.display(), cert.display())]
    KeyMismatch {
        /// The private key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// A CA certificate or key given as PEM text is unusable.
    #[error("CA: {0}")]
    Ca(String),
    /// Key or certificate generation failed, or its parameters are invalid.
    #[error("generating certificate: {0}")]
    Generate(String),
    /// An identity is malformed, or a certificate does not carry exactly one.
    #[error("identity: {0}")]
    Identity(String),
    /// A TLS configuration could not be built.
    #[error("TLS: {0}")]
    Tls(String),
    /// A request that cannot be carried out as asked (a CA directory that already
    /// holds a CA, an unknown serial, a file that would be overwritten, ...).
    #[error("{0}")]
    Usage(String),
    /// The issued-certificate index of a CA directory does not parse.
    #[error("{}: {reason}", path.display())]
    Index {
        /// The index file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Another process holds the CA directory's lock.
    #[error("{}: the CA directory is locked by another tongban certs command; if none is running, remove this file", path.display())]
    Busy {
        /// The lock file.
        path: PathBuf,
    },
}

impl CertError {
    /// Whether the error is the caller's input (a malformed or missing file, a key
    /// that does not match, a bad identity or argument), as opposed to a failure
    /// while carrying out a valid request (a full disk, a busy lock).
    pub fn is_bad_input(&self) -> bool {
        use std::io::ErrorKind;
        match self {
            Self::Io { source, .. } => matches!(
                source.kind(),
                ErrorKind::NotFound
                    | ErrorKind::PermissionDenied
                    | ErrorKind::InvalidData
                    | ErrorKind::InvalidInput
                    | ErrorKind::IsADirectory
                    | ErrorKind::NotADirectory
            ),
            Self::Busy { .. } => false,
            _ => true,
        }
    }

    /// An [`CertError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A [`CertError::Pem`] for `path`.
    pub(crate) fn pem(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Pem {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl From<rcgen::Error> for CertError {
    fn from(e: rcgen::Error) -> Self {
        Self::Generate(e.to_string())
    }
}
