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
}

impl CertError {
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
