//! What a certificate or a CRL says, read with x509-parser: for the issued-certificate
//! index, `certs list`, revocation by file and expiry warnings.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{parse_x509_certificate, parse_x509_crl};

use crate::{fingerprint, identity_from_cert, load_certs, CertError, Identity};

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertKind {
    /// A CA certificate (root or intermediate).
    Ca,
    /// A TLS server certificate (extended key usage serverAuth).
    Server,
    /// A TLS client certificate (extended key usage clientAuth).
    Client,
    /// Anything else (no or other extended key usages).
    Other,
}

impl CertKind {
    /// `ca`, `server`, `client` or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            CertKind::Ca => "ca",
            CertKind::Server => "server",
            CertKind::Client => "client",
            CertKind::Other => "other",
        }
    }
}

impl fmt::Display for CertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The facts of one certificate that operators and the gateway look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Serial number: lowercase hex, without leading zero bytes.
    pub serial: String,
    /// Subject distinguished name, e.g. `CN=counter-a`.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// The `urn:tongban:` identity, when the certificate carries exactly one.
    pub identity: Option<Identity>,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP address subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// What it is for.
    pub kind: CertKind,
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
    /// DER of the subject name, to match CRLs and issuers exactly.
    pub(crate) subject_raw: Vec<u8>,
    /// DER of the issuer name.
    pub(crate) issuer_raw: Vec<u8>,
}

impl CertInfo {
    /// Reads a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, x509) =
            parse_x509_certificate(der).map_err(|e| format!("not a valid certificate: {e}"))?;
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        if let Ok(Some(san)) = x509.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => dns_names.push((*d).to_owned()),
                    GeneralName::IPAddress(b) => ip_addresses.extend(ip_from_bytes(b)),
                    _ => {}
                }
            }
        }
        let eku = x509.extended_key_usage().ok().flatten().map(|e| e.value);
        let kind = if x509.is_ca() {
            CertKind::Ca
        } else if eku.is_some_and(|e| e.client_auth) {
            CertKind::Client
        } else if eku.is_some_and(|e| e.server_auth) {
            CertKind::Server
        } else {
            CertKind::Other
        };
        Ok(Self {
            serial: serial_hex(x509.raw_serial()),
            subject: x509.subject().to_string(),
            issuer: x509.issuer().to_string(),
            identity: identity_from_cert(der).ok(),
            dns_names,
            ip_addresses,
            not_before: x509.validity().not_before.to_datetime(),
            not_after: x509.validity().not_after.to_datetime(),
            kind,
            fingerprint: fingerprint(der),
            subject_raw: x509.subject().as_raw().to_vec(),
            issuer_raw: x509.issuer().as_raw().to_vec(),
        })
    }

    /// Reads the first certificate of a PEM file; errors name the file.
    pub fn load(path: &Path) -> Result<Self, CertError> {
        let certs = load_certs(path)?;
        let first = certs
            .first()
            .ok_or_else(|| CertError::pem(path, "no certificate found"))?;
        Self::from_der(first).map_err(|reason| CertError::pem(path, reason))
    }

    /// What a person would call it: the identity, else the first DNS name or IP,
    /// else the subject.
    pub fn label(&self) -> String {
        if let Some(id) = &self.identity {
            return id.to_string();
        }
        if let Some(d) = self.dns_names.first() {
            return d.clone();
        }
        if let Some(ip) = self.ip_addresses.first() {
            return ip.to_string();
        }
        self.subject.clone()
    }

    /// Whether it is a self-signed root.
    pub fn is_self_signed(&self) -> bool {
        self.subject_raw == self.issuer_raw
    }

    /// Whether `issuer` issued it (by name).
    pub fn is_issued_by(&self, issuer: &CertInfo) -> bool {
        self.issuer_raw == issuer.subject_raw
    }

    /// Whether it stops being valid within `window` of `now` (or already has).
    pub fn expires_within(&self, window: Duration, now: OffsetDateTime) -> bool {
        self.not_after - now < window
    }
}

/// The facts of one certificate revocation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlInfo {
    /// Issuer distinguished name.
    pub issuer: String,
    /// When it was issued.
    pub this_update: OffsetDateTime,
    /// When the next one is promised, if said.
    pub next_update: Option<OffsetDateTime>,
    /// Its sequence number, if it carries one that fits in 64 bits.
    pub crl_number: Option<u64>,
    /// Serials it revokes (lowercase hex).
    pub revoked: Vec<String>,
    /// DER of the issuer name.
    pub(crate) issuer_raw: Vec<u8>,
}

impl CrlInfo {
    /// Reads a DER CRL.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, crl) = parse_x509_crl(der).map_err(|e| format!("not a valid CRL: {e}"))?;
        Ok(Self {
            issuer: crl.issuer().to_string(),
            this_update: crl.last_update().to_datetime(),
            next_update: crl.next_update().map(|t| t.to_datetime()),
            crl_number: crl.crl_number().and_then(|n| n.to_string().parse().ok()),
            revoked: crl
                .iter_revoked_certificates()
                .map(|r| serial_hex(r.raw_serial()))
                .collect(),
            issuer_raw: crl.issuer().as_raw().to_vec(),
        })
    }

    /// Whether `ca` issued it (by name).
    pub fn is_issued_by(&self, ca: &CertInfo) -> bool {
        self.issuer_raw == ca.subject_raw
    }

    /// Whether it revokes `cert`: same issuer (by name), and the serial listed.
    pub fn revokes(&self, cert: &CertInfo) -> bool {
        self.issuer_raw == cert.issuer_raw && self.revoked.contains(&cert.serial)
    }

    /// Whether its next update is past at `now` (a stale list).
    pub fn is_stale(&self, now: OffsetDateTime) -> bool {
        self.next_update.is_some_and(|t| t < now)
    }
}

/// A certificate's end of validity alone: what the handshake path needs, cheaper
/// than a whole [`CertInfo`].
pub fn not_after(der: &[u8]) -> Option<OffsetDateTime> {
    parse_x509_certificate(der)
        .ok()
        .map(|(_, x509)| x509.validity().not_after.to_datetime())
}

/// A serial number as lowercase hex without leading zero bytes (DER adds one to
/// keep a number positive; people and CRLs do not care).
pub fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode(&raw[start..])
}

/// Normalizes a serial typed by a person: hex digits with optional `0x` prefix
/// and `:` separators, any case, leading zeros dropped.
pub fn parse_serial(text: &str) -> Result<String, CertError> {
    let digits: String = text
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(CertError::Usage(format!(
            "`{text}` is neither a certificate file nor a serial number (hex digits, e.g. 4f1c…)"
        )));
    }
    let trimmed = digits.trim_start_matches('0');
    let trimmed = if trimmed.is_empty() { "0" } else { trimmed };
    // Whole bytes, as `serial_hex` prints them.
    Ok(if trimmed.len() % 2 == 1 {
        format!("0{trimmed}")
    } else {
        trimmed.to_owned()
    })
}

/// Formats a time as RFC 3339 (UTC, seconds).
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn serials_normalize() {
        assert_eq!(serial_hex(&[0, 0x81, 0x02]), "8102");
        assert_eq!(serial_hex(&[0]), "00");
        assert_eq!(parse_serial("0x00:81:02").unwrap(), "8102");
        assert_eq!(parse_serial("4A3B").unwrap(), "4a3b");
        assert_eq!(parse_serial("abc").unwrap(), "0abc");
        assert!(parse_serial("zz").is_err());
        assert!(parse_serial("").is_err());
    }

    #[test]
    fn rfc3339_is_utc_seconds() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
    }
}

/// Property tests: any bytes, and real certificates and CRLs with bytes changed, cut
/// or inserted, are read or refused, never a panic.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod fuzz {
    use std::sync::OnceLock;

    use proptest::prelude::*;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};

    use super::*;
    use crate::{Authority, KeyAlg, RevocationReason, Revoked};

    /// A client certificate and a CRL listing one serial, signed once for all cases.
    fn real() -> &'static (Vec<u8>, Vec<u8>) {
        static REAL: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
        REAL.get_or_init(|| {
            let ca = Authority::create("Fuzz CA", KeyAlg::EcdsaP256).unwrap();
            let identity = Identity::new("sz-hrss", "counter-01").unwrap();
            let leaf = ca.issue_client(&identity, "", 30).unwrap();
            let cert = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap();
            let revoked = [Revoked {
                serial: "4a3b".into(),
                at: OffsetDateTime::now_utc(),
                reason: RevocationReason::KeyCompromise,
            }];
            let pem = ca.crl(&revoked, 7, Duration::days(7)).unwrap();
            let crl = CertificateRevocationListDer::from_pem_slice(pem.as_bytes()).unwrap();
            (cert.to_vec(), crl.to_vec())
        })
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Set(usize, u8),
        Cut(usize),
        Insert(usize, u8),
    }

    fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
        let one = prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
            any::<usize>().prop_map(Mutation::Cut),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        ];
        proptest::collection::vec(one, 1..6)
    }

    fn mutated(der: &[u8], mutations: &[Mutation]) -> Vec<u8> {
        let mut out = der.to_vec();
        for m in mutations {
            let len = out.len().max(1);
            match *m {
                Mutation::Set(i, b) => {
                    if let Some(x) = out.get_mut(i % len) {
                        *x = b;
                    }
                }
                Mutation::Cut(i) => out.truncate(i % len),
                Mutation::Insert(i, b) => out.insert((i % len).min(out.len()), b),
            }
        }
        out
    }

    fn read_all(bytes: &[u8]) {
        let _ = CertInfo::from_der(bytes);
        let _ = identity_from_cert(bytes);
        let _ = CrlInfo::from_der(bytes);
    }

    #[test]
    fn the_real_ones_read() {
        let (cert, crl) = real();
        let info = CertInfo::from_der(cert).unwrap();
        assert_eq!(info.kind, CertKind::Client);
        assert_eq!(
            identity_from_cert(cert).unwrap().as_uri(),
            "urn:tongban:sz-hrss:counter-01"
        );
        assert_eq!(CrlInfo::from_der(crl).unwrap().revoked, vec!["4a3b"]);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            read_all(&bytes);
        }

        #[test]
        fn a_changed_certificate_never_panics(m in mutations()) {
            read_all(&mutated(&real().0, &m));
        }

        #[test]
        fn a_changed_crl_never_panics(m in mutations()) {
            read_all(&mutated(&real().1, &m));
        }
    }
}
