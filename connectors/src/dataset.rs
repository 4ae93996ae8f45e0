//! The datasets Tongban shares, their fields and their subject identifiers.

use std::fmt;
use std::str::FromStr;

use crate::ids::{self, IdError};

/// A dataset a counter system can ask for. Serialized as `population`,
/// `legal_person` or `e_license`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dataset {
    /// Household registration records, keyed by resident ID number (GB 11643).
    Population,
    /// Registered legal persons, keyed by unified social credit code (GB 32100).
    LegalPerson,
    /// Electronic licences and certificates, keyed by e-license identifier (GB/T 36904).
    ELicense,
}

/// A dataset name that is not one of [`Dataset::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dataset {name:?}; known datasets: population, legal_person, e_license")]
pub struct UnknownDataset {
    /// The name that was given.
    pub name: String,
}

const POPULATION_FIELDS: &[&str] = &[
    "name",
    "sex",
    "birth_date",
    "ethnicity",
    "household_address",
    "registration_authority",
    "status",
];

const LEGAL_PERSON_FIELDS: &[&str] = &[
    "name",
    "entity_type",
    "legal_representative",
    "legal_representative_id",
    "registered_capital",
    "established_on",
    "registered_address",
    "status",
    "business_scope",
];

const E_LICENSE_FIELDS: &[&str] = &[
    "license_type",
    "holder_id",
    "holder_name",
    "issuer",
    "issued_on",
    "valid_until",
    "status",
    "content",
    "issuer_signature",
    "file_sha256",
];

impl Dataset {
    /// Every dataset, in a stable order.
    pub const ALL: [Dataset; 3] = [Dataset::Population, Dataset::LegalPerson, Dataset::ELicense];

    /// The dataset's wire name: `population`, `legal_person` or `e_license`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Dataset::Population => "population",
            Dataset::LegalPerson => "legal_person",
            Dataset::ELicense => "e_license",
        }
    }

    /// The fields a record of this dataset can carry, in display order.
    pub fn fields(&self) -> &'static [&'static str] {
        match self {
            Dataset::Population => POPULATION_FIELDS,
            Dataset::LegalPerson => LEGAL_PERSON_FIELDS,
            Dataset::ELicense => E_LICENSE_FIELDS,
        }
    }

    /// Whether `field` is one of [`Dataset::fields`].
    pub fn has_field(&self, field: &str) -> bool {
        self.fields().contains(&field)
    }

    /// Validates a subject identifier for this dataset: a resident ID number for
    /// `population`, a credit code for `legal_person`, an e-license identifier for
    /// `e_license`.
    pub fn validate_subject(&self, subject: &str) -> Result<(), IdError> {
        match self {
            Dataset::Population => ids::check_resident_id(subject),
            Dataset::LegalPerson => ids::check_credit_code(subject),
            Dataset::ELicense => ids::check_license_id(subject),
        }
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dataset {
    type Err = UnknownDataset;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dataset::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownDataset { name: s.to_owned() })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in Dataset::ALL {
            assert_eq!(d.as_str().parse::<Dataset>().unwrap(), d);
            assert_eq!(d.to_string(), d.as_str());
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.as_str()));
            assert_eq!(serde_json::from_str::<Dataset>(&json).unwrap(), d);
        }
    }

    #[test]
    fn unknown_dataset_names_the_known_ones() {
        let e = "tax".parse::<Dataset>().unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("\"tax\"") && msg.contains("legal_person"),
            "{msg}"
        );
    }

    #[test]
    fn subjects_are_validated_per_dataset() {
        assert!(Dataset::Population
            .validate_subject("11010519491231002X")
            .is_ok());
        assert!(Dataset::Population
            .validate_subject("91350100M000100Y43")
            .is_err());
        assert!(Dataset::LegalPerson
            .validate_subject("91350100M000100Y43")
            .is_ok());
        assert!(Dataset::ELicense
            .validate_subject(
                "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U"
            )
            .is_ok());
    }

    #[test]
    fn fields() {
        assert_eq!(Dataset::Population.fields().len(), 7);
        assert!(Dataset::LegalPerson.has_field("legal_representative_id"));
        assert!(Dataset::ELicense.has_field("issuer_signature"));
        assert!(!Dataset::ELicense.has_field("name"));
    }
}
