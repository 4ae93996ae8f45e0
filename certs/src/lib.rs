//! The Tongban trust layer: a certificate authority that issues server and client
//! certificates (a root, or an intermediate under one), revokes them and publishes
//! CRLs; a CA directory with a durable issued-certificate index for operators; the
//! caller [`Identity`] read from a client certificate; and rustls server and client
//! configurations for mutual TLS, whose client verifier checks chain, validity,
//! key usage, CRLs and identity.
//!
//! Everything here uses rustls' *ring* crypto provider ([`ring_provider`]); no
//! OpenSSL and no aws-lc.

mod authority;
mod ca_dir;
mod error;
mod files;
mod identity;
mod index;
mod info;
mod revocation;
mod tls;
mod verifier;

pub use authority::{Authority, CertifiedKey, KeyAlg, Validity};
pub use ca_dir::{
    CaDir, CrlWritten, InitOptions, IssueRequest, Issued, Revoked as RevokedCert, Subject, CA_CERT,
    CA_KEY, CHAIN, CRL, INDEX,
};
pub use error::CertError;
pub use files::{load_certs, load_key, write_private_pem, write_public_pem};
pub use identity::{identity_from_cert, Identity, URI_PREFIX};
pub use index::{Index, IndexEntry, Revocation, Status, EXPIRY_WARNING};
pub use info::{not_after, parse_serial, rfc3339, serial_hex, CertInfo, CertKind, CrlInfo};
pub use revocation::{RevocationReason, Revoked};
pub use tls::{
    client_config, ring_provider, server_config, server_trust, ServerTlsFiles, ServerTrust,
    UnknownRevocation, SERVER_ALPN,
};
pub use verifier::HandshakeRefusal;

/// The `time` crate, whose `OffsetDateTime` and `Duration` this API uses.
pub use time;

/// Lowercase hex SHA-256 of a DER certificate, as recorded in the audit log.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, der))
}
