//! Revocation: reasons (RFC 5280 §5.3.1) and certificate revocation lists signed by a CA.

use std::fmt;
use std::str::FromStr;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::{Authority, CertError};

/// Why a certificate was revoked; the CRL carries it as the reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevocationReason {
    /// No reason given.
    Unspecified,
    /// Its private key was (or may have been) disclosed.
    KeyCompromise,
    /// The issuing CA's key was compromised.
    CaCompromise,
    /// The holder moved to another department or system.
    AffiliationChanged,
    /// Replaced by a new certificate.
    Superseded,
    /// The system it identified is retired.
    CessationOfOperation,
    /// The holder is no longer allowed what it was issued for.
    PrivilegeWithdrawn,
}

impl RevocationReason {
    /// Every reason, in the order `--help` lists them.
    pub const ALL: [RevocationReason; 7] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::CaCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
        Self::PrivilegeWithdrawn,
    ];

    /// The kebab-case name used on the command line and in the index.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "key-compromise",
            Self::CaCompromise => "ca-compromise",
            Self::AffiliationChanged => "affiliation-changed",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessation-of-operation",
            Self::PrivilegeWithdrawn => "privilege-withdrawn",
        }
    }

    fn rcgen(self) -> rcgen::RevocationReason {
        use rcgen::RevocationReason as R;
        match self {
            Self::Unspecified => R::Unspecified,
            Self::KeyCompromise => R::KeyCompromise,
            Self::CaCompromise => R::CaCompromise,
            Self::AffiliationChanged => R::AffiliationChanged,
            Self::Superseded => R::Superseded,
            Self::CessationOfOperation => R::CessationOfOperation,
            Self::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
        }
    }
}

impl FromStr for RevocationReason {
    type Err = CertError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|r| r.as_str()).collect();
                CertError::Usage(format!(
                    "unknown revocation reason `{s}` (one of: {})",
                    names.join(", ")
                ))
            })
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One revoked certificate, as it goes into a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// Serial number, lowercase hex.
    pub serial: String,
    /// When it was revoked.
    pub at: OffsetDateTime,
    /// Why.
    pub reason: RevocationReason,
}

impl Authority {
    /// Signs a CRL listing `revoked`, numbered `crl_number`, issued now and
    /// promising the next one within `next_update`.
    pub fn crl(
        &self,
        revoked: &[Revoked],
        crl_number: u64,
        next_update: Duration,
    ) -> Result<String, CertError> {
        if next_update <= Duration::ZERO {
            return Err(CertError::Generate(
                "CRL next-update must be in the future".into(),
            ));
        }
        let now = OffsetDateTime::now_utc();
        let revoked_certs = revoked
            .iter()
            .map(|r| {
                let bytes = hex::decode(&r.serial).map_err(|e| {
                    CertError::Generate(format!("serial `{}` is not hex: {e}", r.serial))
                })?;
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&bytes),
                    revocation_time: r.at,
                    reason_code: Some(r.reason.rcgen()),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, CertError>>()?;
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update: now + next_update,
            crl_number: SerialNumber::from(crl_number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{CrlInfo, KeyAlg};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateRevocationListDer;

    #[test]
    fn reasons_round_trip() {
        for r in RevocationReason::ALL {
            assert_eq!(r.as_str().parse::<RevocationReason>().unwrap(), r);
        }
        let e = "lost".parse::<RevocationReason>().unwrap_err().to_string();
        assert!(e.contains("key-compromise"), "{e}");
    }

    #[test]
    fn crl_lists_serials_and_next_update() {
        let ca = Authority::create("CRL CA", KeyAlg::EcdsaP256).unwrap();
        let revoked = [Revoked {
            serial: "4a3b".into(),
            at: OffsetDateTime::now_utc(),
            reason: RevocationReason::KeyCompromise,
        }];
        let pem = ca.crl(&revoked, 7, Duration::days(7)).unwrap();
        let der = CertificateRevocationListDer::from_pem_slice(pem.as_bytes()).unwrap();
        let info = CrlInfo::from_der(&der).unwrap();
        assert_eq!(info.revoked, vec!["4a3b".to_owned()]);
        assert_eq!(info.crl_number, Some(7));
        let left = info.next_update.unwrap() - info.this_update;
        assert_eq!(left.whole_days(), 7);
        assert!(ca.crl(&revoked, 8, Duration::ZERO).is_err());
    }
}
