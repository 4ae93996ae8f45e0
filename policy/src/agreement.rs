use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::PolicyError;

/// How a field may be returned under an agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldRule {
    /// The value as the source holds it.
    Full,
    /// The value masked (see [`crate::mask_value`]).
    Masked,
}

/// Whether an agreement grants or explicitly forbids access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Grants access (the usual case).
    #[default]
    Allow,
    /// Forbids access; overrides any allowing agreement.
    Deny,
}

impl Effect {
    /// The casbin effect token.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

/// A sharing agreement: what a provider department lets one consumer do with one dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agreement {
    /// Stable identifier, e.g. `hrss-population-2026`.
    pub id: String,
    /// Department code of the dataset's owner, e.g. `sz-psb`.
    pub provider: String,
    /// Consumer identity URI (`urn:tongban:<dept>:<system>`) or `role:<name>`.
    pub consumer: String,
    /// Dataset name, e.g. `population`.
    pub dataset: String,
    /// Matters (purposes) the data may be used for.
    pub matters: Vec<String>,
    /// Fields granted and how; a field absent here is refused.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldRule>,
    /// Start of validity.
    pub valid_from: DateTime<Utc>,
    /// End of validity (inclusive).
    pub valid_until: DateTime<Utc>,
    /// Who approved it, for the record.
    pub approver: String,
    /// Allow (default) or an explicit deny.
    #[serde(default)]
    pub effect: Effect,
}

impl Agreement {
    /// Check the rules every agreement must keep.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let invalid = |message: &str| PolicyError::Invalid {
            id: self.id.clone(),
            message: message.to_owned(),
        };
        if self.id.is_empty() || !self.id.chars().all(is_token_char) {
            return Err(invalid(
                "id must be non-empty lowercase letters, digits, '-' or '_'",
            ));
        }
        if !self.consumer.starts_with("urn:tongban:") && !self.consumer.starts_with("role:") {
            return Err(invalid(
                "consumer must be an identity urn:tongban:<dept>:<system> or role:<name>",
            ));
        }
        if self.matters.is_empty() {
            return Err(invalid("matters must name at least one matter"));
        }
        if self.matters.iter().any(|m| m.is_empty() || m.contains(',')) {
            return Err(invalid("a matter must be non-empty and contain no ','"));
        }
        if self.effect == Effect::Allow && self.fields.is_empty() {
            return Err(invalid(
                "an allowing agreement must grant at least one field",
            ));
        }
        if self.valid_until < self.valid_from {
            return Err(invalid("valid_until is before valid_from"));
        }
        Ok(())
    }

    /// Whether `at` lies within the validity window.
    pub fn in_force(&self, at: DateTime<Utc>) -> bool {
        self.valid_from <= at && at <= self.valid_until
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
}

/// A TOML file of agreements: `[[agreement]]` tables.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgreementFile {
    /// The agreements, in file order.
    #[serde(default, rename = "agreement")]
    pub agreements: Vec<Agreement>,
}

impl AgreementFile {
    /// Parse agreements from TOML text; `path` names the source in errors, which carry
    /// line, column and field.
    pub fn parse(path: &Path, text: &str) -> Result<Self, PolicyError> {
        let file: AgreementFile = toml::from_str(text).map_err(|e| PolicyError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        for a in &file.agreements {
            a.validate().map_err(|e| PolicyError::Parse {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        }
        Ok(file)
    }

    /// Read and parse an agreement file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Render as TOML.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[agreement]]
id = "hrss-population-2026"
provider = "sz-psb"
consumer = "urn:tongban:sz-hrss:counter-01"
dataset = "population"
matters = ["social-insurance-enrollment"]
valid_from = "2026-01-01T00:00:00Z"
valid_until = "2027-12-31T23:59:59Z"
approver = "sz-psb:admin-01"
[agreement.fields]
name = "full"
household_address = "masked"
"#;

    #[test]
    fn parses_a_good_file() {
        let f = AgreementFile::parse(Path::new("a.toml"), GOOD).unwrap();
        assert_eq!(f.agreements.len(), 1);
        assert_eq!(
            f.agreements[0].fields["household_address"],
            FieldRule::Masked
        );
        assert_eq!(f.agreements[0].effect, Effect::Allow);
    }

    #[test]
    fn bad_field_value_names_file_line_and_field() {
        let bad = GOOD.replace("\"masked\"", "\"partial\"");
        let err = AgreementFile::parse(Path::new("a.toml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("a.toml:"), "{err}");
        assert!(err.contains("line 13"), "{err}");
        assert!(err.contains("household_address"), "{err}");
    }

    #[test]
    fn consumer_must_be_an_identity_or_role() {
        let bad = GOOD.replace("urn:tongban:sz-hrss:counter-01", "counter-01");
        let err = AgreementFile::parse(Path::new("a.toml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("consumer must be"), "{err}");
    }

    #[test]
    fn window_must_be_ordered() {
        let bad = GOOD.replace("2027-12-31T23:59:59Z", "2025-12-31T23:59:59Z");
        let err = AgreementFile::parse(Path::new("a.toml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("valid_until is before valid_from"), "{err}");
    }
}
