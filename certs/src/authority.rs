//! A certificate authority that issues Tongban server and client certificates.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use crate::{CertError, Identity};

/// How long a CA created by [`Authority::create`] is valid.
const CA_VALID_DAYS: i64 = 3650;

/// How far back `notBefore` is set, so that peers whose clocks run a little
/// behind accept a certificate issued a moment ago.
const CLOCK_SKEW: Duration = Duration::minutes(5);

/// Key algorithm for new keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum KeyAlg {
    /// ECDSA on NIST P-256 with SHA-256: accepted by every TLS client.
    #[default]
    EcdsaP256,
    /// Ed25519: small and fast, but not supported by every TLS client.
    Ed25519,
}

impl KeyAlg {
    /// The rcgen signature algorithm for keys of this kind.
    fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlg::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlg::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    /// The name used in configuration and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlg::EcdsaP256 => "ecdsa-p256",
            KeyAlg::Ed25519 => "ed25519",
        }
    }
}

impl FromStr for KeyAlg {
    type Err = CertError;

    /// Parses `ecdsa-p256` (or `p256`) and `ed25519`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ecdsa-p256" | "p256" => Ok(KeyAlg::EcdsaP256),
            "ed25519" => Ok(KeyAlg::Ed25519),
            other => Err(CertError::Generate(format!(
                "unknown key algorithm `{other}` (expected ecdsa-p256 or ed25519)"
            ))),
        }
    }
}

impl fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A PEM certificate and its PEM (PKCS#8) private key.
#[derive(Clone, PartialEq, Eq)]
pub struct CertifiedKey {
    /// The certificate, PEM encoded.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM encoded.
    pub key_pem: String,
}

impl fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[private key elided]")
            .finish()
    }
}

/// A root certificate authority (self-signed) able to issue server and client
/// certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    leaf_alg: KeyAlg,
}

/// Which input of [`Authority::from_pem`] is at fault.
enum Part {
    Cert,
    Key,
    Mismatch,
}

impl Authority {
    /// Creates a self-signed CA valid for about ten years, with basic constraints
    /// `CA:true, pathlen:0` and key usages keyCertSign, cRLSign and digitalSignature.
    pub fn create(common_name: &str, alg: KeyAlg) -> Result<Self, CertError> {
        if common_name.trim().is_empty() {
            return Err(CertError::Generate("CA common name is empty".into()));
        }
        let mut params = leaf_params(common_name, CA_VALID_DAYS)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate_for(alg.rcgen())?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
            leaf_alg: KeyAlg::default(),
        })
    }

    /// Re-loads a CA from its certificate and PKCS#8 private key PEM, to issue more
    /// certificates. Checks that the certificate is a CA and that the key is its key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        Self::parse(cert_pem, key_pem).map_err(|(part, reason)| match part {
            Part::Cert => CertError::Ca(format!("certificate: {reason}")),
            Part::Key => CertError::Ca(format!("private key: {reason}")),
            Part::Mismatch => CertError::Ca(reason),
        })
    }

    /// Like [`Authority::from_pem`], reading both files; errors name the file at fault.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, CertError> {
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| CertError::io(p, e));
        let (cert_pem, key_pem) = (read(cert)?, read(key)?);
        Self::parse(&cert_pem, &key_pem).map_err(|(part, reason)| match part {
            Part::Cert => CertError::pem(cert, reason),
            Part::Key => CertError::pem(key, reason),
            Part::Mismatch => CertError::KeyMismatch {
                key: key.to_path_buf(),
                cert: cert.to_path_buf(),
            },
        })
    }

    /// Issues certificates with keys of `alg` from now on (default ECDSA P-256,
    /// whatever the CA's own key is).
    pub fn with_leaf_alg(mut self, alg: KeyAlg) -> Self {
        self.leaf_alg = alg;
        self
    }

    /// The CA's own certificate and private key PEM, to write to disk.
    pub fn certified(&self) -> CertifiedKey {
        CertifiedKey {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.issuer.key().serialize_pem(),
        }
    }

    /// The CA certificate, DER encoded.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Issues a server certificate for the given DNS names and IP addresses:
    /// extended key usage serverAuth only, key usage digitalSignature.
    pub fn issue_server(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        valid_days: u32,
    ) -> Result<CertifiedKey, CertError> {
        let first = dns_names
            .first()
            .cloned()
            .or_else(|| ips.first().map(IpAddr::to_string))
            .ok_or_else(|| {
                CertError::Generate("a server certificate needs a DNS name or an IP".into())
            })?;
        let mut params = leaf_params(&first, days(valid_days)?)?;
        for name in dns_names {
            let ia5 = name
                .clone()
                .try_into()
                .map_err(|e| CertError::Generate(format!("DNS name `{name}` is not valid: {e}")))?;
            params.subject_alt_names.push(SanType::DnsName(ia5));
        }
        params
            .subject_alt_names
            .extend(ips.iter().copied().map(SanType::IpAddress));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// Issues a client certificate for `identity`: its only subject alternative
    /// name is the identity URI; extended key usage clientAuth only, key usage
    /// digitalSignature. `common_name` is for humans reading the certificate;
    /// when empty the identity URI is used.
    pub fn issue_client(
        &self,
        identity: &Identity,
        common_name: &str,
        valid_days: u32,
    ) -> Result<CertifiedKey, CertError> {
        let cn = if common_name.trim().is_empty() {
            identity.as_uri()
        } else {
            common_name
        };
        let mut params = leaf_params(cn, days(valid_days)?)?;
        let uri = identity
            .as_uri()
            .to_owned()
            .try_into()
            .map_err(|e| CertError::Generate(format!("identity URI: {e}")))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    /// Signs an end-entity certificate for a fresh key.
    fn sign(&self, mut params: CertificateParams) -> Result<CertifiedKey, CertError> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate_for(self.leaf_alg.rcgen())?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Parses and cross-checks a CA certificate and key; the error says which part is wrong.
    fn parse(cert_pem: &str, key_pem: &str) -> Result<Self, (Part, String)> {
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| (Part::Cert, pem_reason("certificate", e)))?;
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| (Part::Key, format!("not a usable PKCS#8 private key: {e}")))?;
        check_ca(&cert_der, &key)?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| (Part::Cert, format!("not a usable CA certificate: {e}")))?;
        let leaf_alg = KeyAlg::default();
        Ok(Self {
            issuer,
            cert_pem: String::from_utf8_lossy(&pem_encode(&cert_der)).into_owned(),
            cert_der,
            leaf_alg,
        })
    }
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authority")
            .field("fingerprint", &crate::fingerprint(&self.cert_der))
            .field("leaf_alg", &self.leaf_alg)
            .finish_non_exhaustive()
    }
}

/// Parameters common to every certificate: subject CN, validity from a few minutes
/// ago for `valid_days`, random serial.
fn leaf_params(common_name: &str, valid_days: i64) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + Duration::days(valid_days);
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

/// `valid_days` as a positive day count.
fn days(valid_days: u32) -> Result<i64, CertError> {
    if valid_days == 0 {
        return Err(CertError::Generate(
            "validity must be at least one day".into(),
        ));
    }
    Ok(i64::from(valid_days))
}

/// A random positive 128-bit serial number (RFC 5280 asks for unpredictable serials).
fn random_serial() -> Result<SerialNumber, CertError> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CertError::Generate("no randomness for a serial number".into()))?;
    // Positive, and always 16 bytes long once DER encoded.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Checks that `der` is a CA certificate allowed to sign certificates, whose public key is `key`'s.
fn check_ca(der: &[u8], key: &KeyPair) -> Result<(), (Part, String)> {
    let (_, x509) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| (Part::Cert, format!("not a valid certificate: {e}")))?;
    let is_ca = x509
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err((
            Part::Cert,
            "not a CA certificate (basicConstraints CA:false)".into(),
        ));
    }
    let can_sign = match x509.key_usage() {
        Ok(Some(ku)) => ku.value.key_cert_sign(),
        Ok(None) => true,
        Err(e) => return Err((Part::Cert, format!("malformed key usage: {e}"))),
    };
    if !can_sign {
        return Err((Part::Cert, "key usage does not allow keyCertSign".into()));
    }
    if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err((
            Part::Mismatch,
            "private key does not match the CA certificate".into(),
        ));
    }
    Ok(())
}

/// The reason a PEM item could not be read.
fn pem_reason(what: &str, e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::NoItemsFound => format!("no {what} found"),
        other => format!("bad PEM: {other}"),
    }
}

/// PEM-encodes a certificate (64-column base64, trailing newline).
fn pem_encode(der: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    for line in b64.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(b"-----END CERTIFICATE-----\n");
    out
}
