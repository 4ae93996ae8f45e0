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
const CA_VALID_DAYS: u32 = 3650;

/// How far back `notBefore` is set, so that peers whose clocks run a little
/// behind accept a certificate issued a moment ago.
const CLOCK_SKEW: Duration = Duration::minutes(5);

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First moment of validity.
    pub not_before: OffsetDateTime,
    /// Last moment of validity.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From a few minutes ago (for peers whose clocks run behind) for `days` days.
    pub fn days(days: u32) -> Result<Self, CertError> {
        if days == 0 {
            return Err(CertError::Generate(
                "validity must be at least one day".into(),
            ));
        }
        let now = OffsetDateTime::now_utc();
        Ok(Self {
            not_before: now - CLOCK_SKEW,
            not_after: now + Duration::days(i64::from(days)),
        })
    }

    /// An explicit window; `not_after` must come after `not_before`.
    pub fn between(
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Self, CertError> {
        if not_after <= not_before {
            return Err(CertError::Generate(format!(
                "not-after {not_after} is not after not-before {not_before}"
            )));
        }
        Ok(Self {
            not_before,
            not_after,
        })
    }
}

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

/// A certificate authority — a self-signed root or an intermediate signed by
/// one — able to issue server and client certificates, intermediate CAs (a root
/// only) and CRLs.
pub struct Authority {
    pub(crate) issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    leaf_alg: KeyAlg,
    /// Whether this CA may sign CA certificates (basic constraints allow a path below it).
    signs_cas: bool,
    /// Certificates sent along with every certificate this CA issues: itself and
    /// the intermediates above it when it is not a root (never the root).
    chain: Vec<CertificateDer<'static>>,
}

/// Which input of [`Authority::from_pem`] is at fault.
enum Part {
    Cert,
    Key,
    Mismatch,
}

impl Authority {
    /// Creates a self-signed root CA valid for about ten years, with basic
    /// constraints `CA:true, pathlen:1` (it may sign one level of intermediate
    /// CAs) and key usages keyCertSign, cRLSign and digitalSignature.
    pub fn create(common_name: &str, alg: KeyAlg) -> Result<Self, CertError> {
        Self::create_root(common_name, alg, &Validity::days(CA_VALID_DAYS)?)
    }

    /// Like [`Authority::create`], valid for `validity`.
    pub fn create_root(
        common_name: &str,
        alg: KeyAlg,
        validity: &Validity,
    ) -> Result<Self, CertError> {
        let params = ca_params(common_name, 1, validity)?;
        let key = KeyPair::generate_for(alg.rcgen())?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
            leaf_alg: KeyAlg::default(),
            signs_cas: true,
            chain: Vec::new(),
        })
    }

    /// Creates an intermediate CA signed by this one (`CA:true, pathlen:0`: it
    /// issues end-entity certificates only). Certificates it issues carry the
    /// intermediate chain, so peers need to trust only the root.
    pub fn issue_intermediate(
        &self,
        common_name: &str,
        alg: KeyAlg,
        validity: &Validity,
    ) -> Result<Self, CertError> {
        if !self.signs_cas {
            return Err(CertError::Usage(
                "this CA's basic constraints (pathlen:0) do not allow it to sign CA certificates"
                    .into(),
            ));
        }
        let mut params = ca_params(common_name, 0, validity)?;
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate_for(alg.rcgen())?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.chain.iter().cloned());
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
            leaf_alg: self.leaf_alg,
            signs_cas: false,
            chain,
        })
    }

    /// Tells a CA loaded from files which certificates stand above it (its issuer,
    /// that one's issuer, …, up to the root), so that what it issues carries the
    /// chain. Self-signed certificates (the root) are not sent to peers.
    pub fn with_parents(mut self, parents: Vec<CertificateDer<'static>>) -> Self {
        self.chain.clear();
        if !is_self_signed(&self.cert_der) {
            self.chain.push(self.cert_der.clone());
        }
        self.chain
            .extend(parents.into_iter().filter(|c| !is_self_signed(c)));
        self
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

    /// Issues certificates with keys of `alg` from now on.
    pub(crate) fn set_leaf_alg(&mut self, alg: KeyAlg) {
        self.leaf_alg = alg;
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
        self.issue_server_with(dns_names, ips, &Validity::days(valid_days)?)
    }

    /// [`Authority::issue_server`] with an explicit validity window.
    pub fn issue_server_with(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        validity: &Validity,
    ) -> Result<CertifiedKey, CertError> {
        let first = dns_names
            .first()
            .cloned()
            .or_else(|| ips.first().map(IpAddr::to_string))
            .ok_or_else(|| {
                CertError::Generate("a server certificate needs a DNS name or an IP".into())
            })?;
        let mut params = leaf_params(&first, validity)?;
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
        self.issue_client_with(identity, common_name, &Validity::days(valid_days)?)
    }

    /// [`Authority::issue_client`] with an explicit validity window.
    pub fn issue_client_with(
        &self,
        identity: &Identity,
        common_name: &str,
        validity: &Validity,
    ) -> Result<CertifiedKey, CertError> {
        let cn = if common_name.trim().is_empty() {
            identity.as_uri()
        } else {
            common_name
        };
        let mut params = leaf_params(cn, validity)?;
        let uri = identity
            .as_uri()
            .to_owned()
            .try_into()
            .map_err(|e| CertError::Generate(format!("identity URI: {e}")))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    /// Signs an end-entity certificate for a fresh key; the PEM carries the chain.
    fn sign(&self, mut params: CertificateParams) -> Result<CertifiedKey, CertError> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate_for(self.leaf_alg.rcgen())?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let mut cert_pem = cert.pem();
        for c in &self.chain {
            cert_pem.push_str(&String::from_utf8_lossy(&pem_encode(c)));
        }
        Ok(CertifiedKey {
            cert_pem,
            key_pem: key.serialize_pem(),
        })
    }

    /// Whether this CA is a self-signed root.
    pub fn is_root(&self) -> bool {
        is_self_signed(&self.cert_der)
    }

    /// The certificates sent along with those this CA issues (itself and the
    /// intermediates above it; empty for a root).
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// Parses and cross-checks a CA certificate and key; the error says which part is wrong.
    fn parse(cert_pem: &str, key_pem: &str) -> Result<Self, (Part, String)> {
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| (Part::Cert, pem_reason("certificate", e)))?;
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| (Part::Key, format!("not a usable PKCS#8 private key: {e}")))?;
        let signs_cas = check_ca(&cert_der, &key)?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| (Part::Cert, format!("not a usable CA certificate: {e}")))?;
        let leaf_alg = KeyAlg::default();
        let chain = if is_self_signed(&cert_der) {
            Vec::new()
        } else {
            vec![cert_der.clone()]
        };
        Ok(Self {
            issuer,
            cert_pem: String::from_utf8_lossy(&pem_encode(&cert_der)).into_owned(),
            cert_der,
            leaf_alg,
            signs_cas,
            chain,
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

/// Parameters common to every certificate: subject CN, validity, random serial.
fn leaf_params(common_name: &str, validity: &Validity) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

/// Parameters of a CA certificate allowing `path_len` CA levels below it.
fn ca_params(
    common_name: &str,
    path_len: u8,
    validity: &Validity,
) -> Result<CertificateParams, CertError> {
    if common_name.trim().is_empty() {
        return Err(CertError::Generate("CA common name is empty".into()));
    }
    let mut params = leaf_params(common_name, validity)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// Whether a certificate names itself as its issuer (a root).
pub(crate) fn is_self_signed(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der)
        .is_ok_and(|(_, c)| c.subject().as_raw() == c.issuer().as_raw())
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

/// Checks that `der` is a CA certificate allowed to sign certificates, whose public
/// key is `key`'s; answers whether it may also sign CA certificates.
fn check_ca(der: &[u8], key: &KeyPair) -> Result<bool, (Part, String)> {
    let (_, x509) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| (Part::Cert, format!("not a valid certificate: {e}")))?;
    let constraints = x509.basic_constraints().ok().flatten().map(|bc| bc.value);
    if !constraints.is_some_and(|bc| bc.ca) {
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
    Ok(constraints.is_some_and(|bc| bc.path_len_constraint.is_none_or(|n| n > 0)))
}

/// The reason a PEM item could not be read.
fn pem_reason(what: &str, e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::NoItemsFound => format!("no {what} found"),
        other => format!("bad PEM: {other}"),
    }
}

/// PEM-encodes a certificate (64-column base64, trailing newline).
pub(crate) fn pem_encode(der: &[u8]) -> Vec<u8> {
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
