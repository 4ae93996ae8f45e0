//! The Tongban trust layer: a certificate authority that issues server and
//! client certificates, the caller [`Identity`] read from a client certificate,
//! and rustls server and client configurations for mutual TLS.
//!
//! Everything here uses rustls' *ring* crypto provider ([`ring_provider`]); no
//! OpenSSL and no aws-lc.

mod authority;
mod error;
mod files;
mod identity;
mod tls;

pub use authority::{Authority, CertifiedKey, KeyAlg};
pub use error::CertError;
pub use files::{load_certs, load_key, write_private_pem, write_public_pem};
pub use identity::{identity_from_cert, Identity, URI_PREFIX};
pub use tls::{client_config, ring_provider, server_config, SERVER_ALPN};

/// Lowercase hex SHA-256 of a DER certificate, as recorded in the audit log.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, der))
}
