//! The issued-certificate index of a CA directory: one JSON file, rewritten
//! whole (temporary file, fsync, rename) on every change, so that it is either the
//! old or the new version after a crash, never half of each.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::files::write_atomically;
use crate::{CertError, CertInfo, CertKind, RevocationReason, Revoked};

/// Format version written into new indexes.
const VERSION: u32 = 1;

/// The issued-certificate index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    /// Format version.
    pub version: u32,
    /// Number the next CRL will carry (CRL numbers only grow).
    pub next_crl_number: u64,
    /// Every certificate issued, oldest first.
    pub certificates: Vec<IndexEntry>,
}

/// One issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexEntry {
    /// Serial number, lowercase hex.
    pub serial: String,
    /// `server`, `client` or `ca`.
    pub kind: CertKind,
    /// Subject distinguished name.
    pub subject: String,
    /// The `urn:tongban:` identity of a client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// DNS names of a server certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// IP addresses of a server certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// When it was issued (or first recorded).
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// SHA-256 of the DER certificate.
    pub fingerprint: String,
    /// Where the certificate was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Set once revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
}

/// When and why a certificate was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Why.
    pub reason: RevocationReason,
}

/// Where a certificate stands at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Valid, more than 30 days left.
    Valid,
    /// Valid, expires within 30 days.
    ExpiresSoon,
    /// Not valid yet.
    NotYetValid,
    /// Past its end of validity.
    Expired,
    /// Revoked.
    Revoked(RevocationReason),
}

/// How close to expiry a certificate is reported as expiring soon.
pub const EXPIRY_WARNING: Duration = Duration::days(30);

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Status::Revoked(r) => format!("revoked ({r})"),
            Status::Valid => "valid".into(),
            Status::ExpiresSoon => "expires-soon".into(),
            Status::NotYetValid => "not-yet-valid".into(),
            Status::Expired => "expired".into(),
        };
        f.pad(&text)
    }
}

impl IndexEntry {
    /// An entry for a certificate just issued (or found), written to `file`.
    pub fn new(info: &CertInfo, file: Option<&Path>) -> Self {
        Self {
            serial: info.serial.clone(),
            kind: info.kind,
            subject: info.subject.clone(),
            identity: info.identity.as_ref().map(ToString::to_string),
            dns: info.dns_names.clone(),
            ips: info.ip_addresses.iter().map(ToString::to_string).collect(),
            not_before: info.not_before,
            not_after: info.not_after,
            issued_at: OffsetDateTime::now_utc(),
            fingerprint: info.fingerprint.clone(),
            file: file.map(|f| f.display().to_string()),
            revoked: None,
        }
    }

    /// Its status at `now`.
    pub fn status(&self, now: OffsetDateTime) -> Status {
        if let Some(r) = self.revoked {
            Status::Revoked(r.reason)
        } else if now < self.not_before {
            Status::NotYetValid
        } else if now > self.not_after {
            Status::Expired
        } else if self.not_after - now < EXPIRY_WARNING {
            Status::ExpiresSoon
        } else {
            Status::Valid
        }
    }

    /// What a person would call it: identity, DNS names or IPs, else the subject.
    pub fn label(&self) -> String {
        if let Some(id) = &self.identity {
            return id.clone();
        }
        let names: Vec<&str> = self
            .dns
            .iter()
            .chain(self.ips.iter())
            .map(String::as_str)
            .collect();
        if names.is_empty() {
            self.subject.clone()
        } else {
            names.join(",")
        }
    }
}

impl Default for Index {
    fn default() -> Self {
        Self {
            version: VERSION,
            next_crl_number: 1,
            certificates: Vec::new(),
        }
    }
}

impl Index {
    /// Reads an index; a missing file is an empty index.
    pub fn load(path: &Path) -> Result<Self, CertError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(CertError::io(path, e)),
        };
        let index: Self = serde_json::from_str(&text).map_err(|e| CertError::Index {
            path: path.to_owned(),
            reason: format!("line {} column {}: {e}", e.line(), e.column()),
        })?;
        if index.version != VERSION {
            return Err(CertError::Index {
                path: path.to_owned(),
                reason: format!(
                    "version {} is not supported (expected {VERSION})",
                    index.version
                ),
            });
        }
        Ok(index)
    }

    /// Writes the index atomically.
    pub fn save(&self, path: &Path) -> Result<(), CertError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| CertError::Index {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        text.push('\n');
        write_atomically(path, &text, 0o644)
    }

    /// The entry with this serial (normalized hex).
    pub fn find(&self, serial: &str) -> Option<&IndexEntry> {
        self.certificates.iter().find(|e| e.serial == serial)
    }

    /// The revoked certificates, for a CRL.
    pub fn revoked(&self) -> Vec<Revoked> {
        self.certificates
            .iter()
            .filter_map(|e| {
                e.revoked.map(|r| Revoked {
                    serial: e.serial.clone(),
                    at: r.at,
                    reason: r.reason,
                })
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(serial: &str, days_left: i64) -> IndexEntry {
        let now = OffsetDateTime::now_utc();
        IndexEntry {
            serial: serial.into(),
            kind: CertKind::Client,
            subject: "CN=x".into(),
            identity: Some("urn:tongban:a:b".into()),
            dns: vec![],
            ips: vec![],
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(days_left),
            issued_at: now,
            fingerprint: "00".into(),
            file: None,
            revoked: None,
        }
    }

    #[test]
    fn round_trips_and_reports_status() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        assert_eq!(Index::load(&path).unwrap(), Index::default());
        let mut index = Index::default();
        index.certificates.push(entry("01", 100));
        index.certificates.push(entry("02", 10));
        index.certificates.push(entry("03", -1));
        index.certificates[0].revoked = Some(Revocation {
            at: OffsetDateTime::now_utc(),
            reason: RevocationReason::Superseded,
        });
        index.save(&path).unwrap();
        let back = Index::load(&path).unwrap();
        let now = OffsetDateTime::now_utc();
        let status: Vec<String> = back
            .certificates
            .iter()
            .map(|e| e.status(now).to_string())
            .collect();
        assert_eq!(status, ["revoked (superseded)", "expires-soon", "expired"]);
        assert_eq!(back.revoked().len(), 1);
        assert_eq!(back.find("02").unwrap().label(), "urn:tongban:a:b");
    }

    #[test]
    fn malformed_index_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        std::fs::write(&path, "{\n  \"version\": 1,\n  oops\n}").unwrap();
        let e = Index::load(&path).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: line 3", path.display())), "{e}");
    }
}
