//! The Tongban identity carried in a client certificate's URI SAN.

use std::fmt;
use std::str::FromStr;

use crate::CertError;

/// The URI prefix every Tongban identity starts with.
pub const URI_PREFIX: &str = "urn:tongban:";

/// Longest allowed department code or system id.
const MAX_PART_LEN: usize = 64;

/// A Tongban identity: the URI SAN `urn:tongban:<dept-code>:<system-id>`,
/// e.g. `urn:tongban:sz-hrss:counter-01`.
///
/// Department code and system id are 1 to 64 lowercase ASCII letters, digits and
/// `-`, neither starting nor ending with `-`. With the `serde` feature it
/// serializes as its URI string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    uri: String,
    /// Byte index in `uri` of the `:` between department and system.
    split: usize,
}

impl Identity {
    /// Builds an identity from its two parts, checking both.
    pub fn new(department: &str, system: &str) -> Result<Self, CertError> {
        check_part("department code", department)?;
        check_part("system id", system)?;
        let uri = format!("{URI_PREFIX}{department}:{system}");
        Ok(Self {
            split: URI_PREFIX.len() + department.len(),
            uri,
        })
    }

    /// The department code, e.g. `sz-hrss`.
    pub fn department(&self) -> &str {
        &self.uri[URI_PREFIX.len()..self.split]
    }

    /// The system id within the department, e.g. `counter-01`.
    pub fn system(&self) -> &str {
        &self.uri[self.split + 1..]
    }

    /// The full URI, e.g. `urn:tongban:sz-hrss:counter-01`.
    pub fn as_uri(&self) -> &str {
        &self.uri
    }
}

impl FromStr for Identity {
    type Err = CertError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(CertError::Identity("empty identity".into()));
        }
        let rest = s.strip_prefix(URI_PREFIX).ok_or_else(|| {
            CertError::Identity(format!("`{s}` does not start with `{URI_PREFIX}`"))
        })?;
        let mut parts = rest.split(':');
        let department = parts.next().unwrap_or_default();
        let system = parts.next().ok_or_else(|| {
            CertError::Identity(format!(
                "`{s}` has no system id (expected {URI_PREFIX}<dept-code>:<system-id>)"
            ))
        })?;
        if parts.next().is_some() {
            return Err(CertError::Identity(format!(
                "`{s}` has too many parts (expected {URI_PREFIX}<dept-code>:<system-id>)"
            )));
        }
        Self::new(department, system)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Identity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.uri)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Identity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Reads the identity from a DER client certificate: its single `urn:tongban:`
/// URI subject alternative name.
///
/// Fails when the certificate does not parse, has no such URI, has several, or
/// the URI is malformed. Other SANs (DNS names, other URIs) are ignored.
pub fn identity_from_cert(der: &[u8]) -> Result<Identity, CertError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CertError::Identity(format!("certificate does not parse: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| CertError::Identity(format!("malformed subjectAltName: {e}")))?
        .ok_or_else(|| {
            CertError::Identity(format!(
                "certificate has no subjectAltName (expected one {URI_PREFIX} URI)"
            ))
        })?;
    let mut uris = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri)
                if uri
                    .get(..URI_PREFIX.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(URI_PREFIX)) =>
            {
                Some(*uri)
            }
            _ => None,
        });
    let uri = uris
        .next()
        .ok_or_else(|| CertError::Identity(format!("certificate has no {URI_PREFIX} URI SAN")))?;
    if uris.next().is_some() {
        return Err(CertError::Identity(format!(
            "certificate has several {URI_PREFIX} URI SANs; exactly one is allowed"
        )));
    }
    uri.parse()
}

/// Checks one part (department code or system id) against the identity rules.
fn check_part(what: &str, part: &str) -> Result<(), CertError> {
    let fail = |why: String| Err(CertError::Identity(format!("{what} `{part}` {why}")));
    if part.is_empty() {
        return Err(CertError::Identity(format!("{what} is empty")));
    }
    if part.len() > MAX_PART_LEN {
        return fail(format!("is longer than {MAX_PART_LEN} characters"));
    }
    if let Some(c) = part
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return fail(format!(
            "contains {c:?} (allowed: lowercase letters a-z, digits, '-')"
        ));
    }
    if part.starts_with('-') || part.ends_with('-') {
        return fail("starts or ends with '-'".into());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        s.parse::<Identity>().unwrap_err().to_string()
    }

    #[test]
    fn parses_the_uri_form() {
        let id: Identity = "urn:tongban:sz-hrss:counter-01".parse().unwrap();
        assert_eq!(id.department(), "sz-hrss");
        assert_eq!(id.system(), "counter-01");
        assert_eq!(id.as_uri(), "urn:tongban:sz-hrss:counter-01");
        assert_eq!(id.to_string(), "urn:tongban:sz-hrss:counter-01");
        assert_eq!(id, Identity::new("sz-hrss", "counter-01").unwrap());
    }

    #[test]
    fn rejects_wrong_scheme() {
        assert!(err("urn:other:sz-hrss:counter-01").contains("does not start with"));
        assert!(err("https://sz-hrss/counter-01").contains("does not start with"));
        assert!(err("URN:TONGBAN:sz-hrss:counter-01").contains("does not start with"));
    }

    #[test]
    fn rejects_missing_part() {
        assert!(err("urn:tongban:sz-hrss").contains("no system id"));
        assert!(err("urn:tongban:sz-hrss:").contains("system id is empty"));
        assert!(err("urn:tongban::counter-01").contains("department code is empty"));
    }

    #[test]
    fn rejects_uppercase() {
        let e = err("urn:tongban:SZ-hrss:counter-01");
        assert!(e.contains("department code `SZ-hrss` contains 'S'"), "{e}");
        assert!(err("urn:tongban:sz-hrss:Counter-01").contains("system id"));
    }

    #[test]
    fn rejects_extra_part() {
        assert!(err("urn:tongban:sz-hrss:counter-01:x").contains("too many parts"));
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(err(""), "identity: empty identity");
    }

    #[test]
    fn rejects_bad_characters_and_lengths() {
        assert!(err("urn:tongban:-sz:counter").contains("starts or ends with '-'"));
        assert!(err("urn:tongban:sz:counter-").contains("starts or ends with '-'"));
        assert!(err("urn:tongban:sz_hrss:counter").contains("'_'"));
        assert!(err("urn:tongban:sz hrss:counter").contains("' '"));
        assert!(err("urn:tongban:深圳:counter").contains("'深'"));
        let long = "a".repeat(65);
        assert!(err(&format!("urn:tongban:{long}:x")).contains("longer than 64"));
        let max = "a".repeat(64);
        assert!(format!("urn:tongban:{max}:{max}")
            .parse::<Identity>()
            .is_ok());
        assert!("urn:tongban:a:0".parse::<Identity>().is_ok());
    }
}
