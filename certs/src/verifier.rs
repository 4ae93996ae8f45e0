//! The gateway's client-certificate verifier, and why a handshake was refused.
//!
//! webpki checks the chain to a trusted CA, the validity period, the clientAuth
//! extended key usage (when the extension is present) and the CRLs. Around it,
//! Tongban adds its own rules, so that a certificate failing them never reaches
//! HTTP: the extended key usage must be present and name clientAuth, a key usage
//! (when present) must allow digitalSignature, and there must be exactly one
//! well-formed `urn:tongban:` URI SAN.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, ExtendedKeyPurpose,
    OtherError, SignatureScheme,
};

use crate::identity_from_cert;

/// Wraps webpki's verifier with Tongban's rules for client certificates.
#[derive(Debug)]
pub(crate) struct TongbanClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl TongbanClientVerifier {
    pub(crate) fn new(inner: Arc<dyn ClientCertVerifier>) -> Self {
        Self { inner }
    }
}

impl ClientCertVerifier for TongbanClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        // Trust first: an unknown, expired or revoked certificate is reported as such,
        // whatever else is wrong with it.
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        check_client_leaf(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A client certificate that chains to a trusted CA but carries no usable identity.
#[derive(Debug)]
struct NoIdentity(String);

impl fmt::Display for NoIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no usable identity: {}", self.0)
    }
}

impl std::error::Error for NoIdentity {}

/// Tongban's own rules for a client certificate that webpki accepted.
fn check_client_leaf(der: &[u8]) -> Result<(), Error> {
    let (_, x509) = x509_parser::parse_x509_certificate(der)
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let client_auth = x509
        .extended_key_usage()
        .ok()
        .flatten()
        .is_some_and(|e| e.value.client_auth);
    let signs = match x509.key_usage() {
        Ok(Some(ku)) => ku.value.digital_signature(),
        Ok(None) => true,
        Err(_) => false,
    };
    if !client_auth || !signs {
        return Err(Error::InvalidCertificate(
            CertificateError::InvalidPurposeContext {
                required: ExtendedKeyPurpose::ClientAuth,
                presented: Vec::new(),
            },
        ));
    }
    identity_from_cert(der).map_err(|e| {
        Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(NoIdentity(
            e.to_string(),
        )))))
    })?;
    Ok(())
}

/// Why the gateway refused a TLS handshake: a small fixed set of reasons to count
/// and search logs by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HandshakeRefusal {
    /// The client presented no certificate.
    NoCertificate,
    /// The certificate does not chain to a trusted CA.
    UnknownCa,
    /// The certificate (or one above it) has expired.
    Expired,
    /// The certificate (or one above it) is not valid yet.
    NotYetValid,
    /// A CRL revokes the certificate (or one above it).
    Revoked,
    /// No listed CRL covers the certificate's issuer, or a CRL is unusable.
    RevocationUnknown,
    /// Not a client certificate: no clientAuth extended key usage, or a key usage
    /// without digitalSignature (e.g. a server certificate).
    WrongKeyUsage,
    /// No (or more than one, or a malformed) `urn:tongban:` URI SAN.
    NoIdentity,
    /// Any other problem with the certificate (bad signature, bad encoding, ...).
    BadCertificate,
    /// The client aborted with an alert, e.g. because it does not trust our certificate.
    ClientAlert,
    /// A TLS protocol failure (no common version or cipher suite, not TLS at all, ...).
    Protocol,
    /// The handshake took too long.
    Timeout,
    /// The connection closed or reset during the handshake.
    Closed,
}

impl HandshakeRefusal {
    /// Every reason, for exporting counters.
    pub const ALL: [HandshakeRefusal; 13] = [
        Self::NoCertificate,
        Self::UnknownCa,
        Self::Expired,
        Self::NotYetValid,
        Self::Revoked,
        Self::RevocationUnknown,
        Self::WrongKeyUsage,
        Self::NoIdentity,
        Self::BadCertificate,
        Self::ClientAlert,
        Self::Protocol,
        Self::Timeout,
        Self::Closed,
    ];

    /// The kebab-case name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoCertificate => "no-certificate",
            Self::UnknownCa => "unknown-ca",
            Self::Expired => "expired",
            Self::NotYetValid => "not-yet-valid",
            Self::Revoked => "revoked",
            Self::RevocationUnknown => "revocation-unknown",
            Self::WrongKeyUsage => "wrong-key-usage",
            Self::NoIdentity => "no-identity",
            Self::BadCertificate => "bad-certificate",
            Self::ClientAlert => "client-alert",
            Self::Protocol => "protocol",
            Self::Timeout => "timeout",
            Self::Closed => "closed",
        }
    }

    /// Position in [`HandshakeRefusal::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Classifies a rustls error raised while accepting a connection.
    pub fn from_rustls(e: &Error) -> Self {
        match e {
            Error::NoCertificatesPresented => Self::NoCertificate,
            Error::InvalidCertificate(c) => Self::from_certificate_error(c),
            Error::InvalidCertRevocationList(_) => Self::RevocationUnknown,
            Error::AlertReceived(_) => Self::ClientAlert,
            _ => Self::Protocol,
        }
    }

    /// Classifies the I/O error tokio-rustls returns from a failed accept.
    pub fn from_io(e: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
            return Self::from_rustls(tls);
        }
        match e.kind() {
            ErrorKind::TimedOut => Self::Timeout,
            ErrorKind::UnexpectedEof
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe => Self::Closed,
            _ => Self::Protocol,
        }
    }

    fn from_certificate_error(c: &CertificateError) -> Self {
        match c {
            CertificateError::UnknownIssuer => Self::UnknownCa,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => Self::Expired,
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                Self::NotYetValid
            }
            CertificateError::Revoked => Self::Revoked,
            CertificateError::UnknownRevocationStatus
            | CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. } => Self::RevocationUnknown,
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                Self::WrongKeyUsage
            }
            CertificateError::Other(OtherError(inner))
                if inner.downcast_ref::<NoIdentity>().is_some() =>
            {
                Self::NoIdentity
            }
            _ => Self::BadCertificate,
        }
    }
}

impl fmt::Display for HandshakeRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_indexed_in_order() {
        for (i, r) in HandshakeRefusal::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn io_errors_classify() {
        let wrapped = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            Error::InvalidCertificate(CertificateError::Revoked),
        );
        assert_eq!(
            HandshakeRefusal::from_io(&wrapped),
            HandshakeRefusal::Revoked
        );
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert_eq!(HandshakeRefusal::from_io(&eof), HandshakeRefusal::Closed);
        let none = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            Error::NoCertificatesPresented,
        );
        assert_eq!(
            HandshakeRefusal::from_io(&none),
            HandshakeRefusal::NoCertificate
        );
    }

    #[test]
    fn missing_identity_is_its_own_reason() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["svc.example".into()]).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.self_signed(&key).unwrap();
        let e = check_client_leaf(cert.der()).unwrap_err();
        assert_eq!(
            HandshakeRefusal::from_rustls(&e),
            HandshakeRefusal::NoIdentity
        );

        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![rcgen::SanType::URI(
            "urn:tongban:sz-hrss:counter-01".try_into().unwrap(),
        )];
        let no_eku = params.self_signed(&key).unwrap();
        let e = check_client_leaf(no_eku.der()).unwrap_err();
        assert_eq!(
            HandshakeRefusal::from_rustls(&e),
            HandshakeRefusal::WrongKeyUsage
        );
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let good = params.self_signed(&key).unwrap();
        check_client_leaf(good.der()).unwrap();
    }
}
