//! Datasets as the connectors see them: a name, and the kind of identifier that keys
//! its records.
//!
//! Which datasets exist is configuration (the gateway's `[[datasets]]`), not code: a
//! [`Dataset`] is just a name, and a [`SubjectKind`] says how its subjects are
//! checked — one of the three national identifier standards, or a pattern the
//! operator declares for a dataset keyed by something else.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use crate::ids::{self, IdError};

/// A dataset's name, e.g. `population`: cheap to clone (lookups carry it through
/// retries) and usable as a map key looked up by `&str`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dataset(Arc<str>);

/// Longest identifier a pattern-keyed dataset accepts, so that a declared pattern
/// never runs over an unbounded input.
pub const MAX_PATTERN_SUBJECT: usize = 128;

/// How the subjects of a dataset are identified, and so checked before anything else
/// happens.
#[derive(Debug, Clone)]
pub enum SubjectKind {
    /// Resident ID number, GB 11643 (`resident_id`).
    ResidentId,
    /// Unified social credit code, GB 32100 (`credit_code`).
    CreditCode,
    /// E-license identifier, GB/T 36904 (`license_id`). Only these datasets are also
    /// looked up by holder and licence type.
    LicenseId,
    /// An identifier the operator declares: the whole subject must match.
    Pattern(SubjectPattern),
}

/// A declared identifier pattern (a `regex` anchored at both ends).
#[derive(Debug, Clone)]
pub struct SubjectPattern {
    source: String,
    regex: regex::Regex,
}

/// A pattern that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("subject pattern {pattern:?}: {reason}")]
pub struct BadPattern {
    /// The pattern as written.
    pub pattern: String,
    /// Why it was refused.
    pub reason: String,
}

impl Dataset {
    /// The dataset called `name`.
    pub fn new(name: &str) -> Self {
        Self(Arc::from(name))
    }

    /// Its name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Dataset {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Dataset {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl serde::Serialize for Dataset {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Dataset {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|s| Self(Arc::from(s)))
    }
}

impl SubjectKind {
    /// The config's word for each built-in kind (`pattern` takes a pattern).
    pub const NAMES: [&'static str; 4] = ["resident_id", "credit_code", "license_id", "pattern"];

    /// A built-in kind by its config word; `None` for `pattern` and anything else.
    pub fn builtin(name: &str) -> Option<Self> {
        match name {
            "resident_id" => Some(Self::ResidentId),
            "credit_code" => Some(Self::CreditCode),
            "license_id" => Some(Self::LicenseId),
            _ => None,
        }
    }

    /// Its config word: `resident_id`, `credit_code`, `license_id` or `pattern`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ResidentId => "resident_id",
            Self::CreditCode => "credit_code",
            Self::LicenseId => "license_id",
            Self::Pattern(_) => "pattern",
        }
    }

    /// What the identifier is, for people: `resident ID number (GB 11643)`.
    pub fn describe(&self) -> String {
        match self {
            Self::ResidentId => "resident ID number (GB 11643)".to_owned(),
            Self::CreditCode => "unified social credit code (GB 32100)".to_owned(),
            Self::LicenseId => "e-license identifier (GB/T 36904)".to_owned(),
            Self::Pattern(p) => format!("identifier matching {}", p.as_str()),
        }
    }

    /// The declared pattern, for [`SubjectKind::Pattern`].
    pub fn pattern(&self) -> Option<&str> {
        match self {
            Self::Pattern(p) => Some(p.as_str()),
            _ => None,
        }
    }

    /// Whether records are also found by holder and licence type (e-licences).
    pub fn has_holders(&self) -> bool {
        matches!(self, Self::LicenseId)
    }

    /// Checks `subject` with the standard's rules (length, characters, birth date,
    /// check character), or against the declared pattern.
    pub fn validate(&self, subject: &str) -> Result<(), IdError> {
        match self {
            Self::ResidentId => ids::check_resident_id(subject),
            Self::CreditCode => ids::check_credit_code(subject),
            Self::LicenseId => ids::check_license_id(subject),
            Self::Pattern(p) => p.check(subject),
        }
    }
}

impl SubjectPattern {
    /// Compiles `pattern`; it must match a whole identifier, so it is anchored at
    /// both ends whether or not it says so.
    pub fn new(pattern: &str) -> Result<Self, BadPattern> {
        let bad = |reason: String| BadPattern {
            pattern: pattern.to_owned(),
            reason,
        };
        if pattern.trim().is_empty() {
            return Err(bad("is empty".to_owned()));
        }
        let regex = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(1 << 20)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            source: pattern.to_owned(),
            regex,
        })
    }

    /// The pattern as declared.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    fn check(&self, subject: &str) -> Result<(), IdError> {
        let found = subject.chars().count();
        if found == 0 || found > MAX_PATTERN_SUBJECT {
            return Err(IdError::Format(format!(
                "must be 1-{MAX_PATTERN_SUBJECT} characters, got {found}"
            )));
        }
        if self.regex.is_match(subject) {
            Ok(())
        } else {
            Err(IdError::Pattern(self.source.clone()))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_and_borrow_as_str() {
        let d = Dataset::new("population");
        assert_eq!(d.as_str(), "population");
        assert_eq!(d.to_string(), "population");
        let mut m = std::collections::HashMap::new();
        m.insert(d.clone(), 1);
        assert_eq!(m.get("population"), Some(&1));
        assert_eq!(Dataset::from("population"), d);
    }

    #[test]
    fn subjects_are_validated_by_kind() {
        let kind = |n: &str| SubjectKind::builtin(n).unwrap();
        assert!(kind("resident_id").validate("11010519491231002X").is_ok());
        assert!(kind("resident_id").validate("91350100M000100Y43").is_err());
        assert!(kind("credit_code").validate("91350100M000100Y43").is_ok());
        assert!(kind("license_id")
            .validate("1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U")
            .is_ok());
        assert!(SubjectKind::builtin("pattern").is_none());
        assert!(kind("license_id").has_holders() && !kind("resident_id").has_holders());
        for n in &SubjectKind::NAMES[..3] {
            assert_eq!(kind(n).name(), *n);
        }
    }

    #[test]
    fn a_declared_pattern_matches_whole_identifiers_only() {
        let p = SubjectKind::Pattern(SubjectPattern::new("SI[0-9]{6}").unwrap());
        assert!(p.validate("SI123456").is_ok());
        for bad in ["SI12345", "xSI123456", "SI1234567", ""] {
            let e = p.validate(bad).unwrap_err();
            assert!(matches!(e.rule(), "pattern" | "format"), "{bad}: {e}");
        }
        assert_eq!(p.validate("SI12345").unwrap_err().rule(), "pattern");
        assert_eq!(p.pattern(), Some("SI[0-9]{6}"));
        let long = "S".repeat(MAX_PATTERN_SUBJECT + 1);
        let wide = SubjectKind::Pattern(SubjectPattern::new("S+").unwrap());
        assert_eq!(wide.validate(&long).unwrap_err().rule(), "format");
        assert!(SubjectPattern::new("(").is_err());
        assert!(SubjectPattern::new(" ").is_err());
    }
}
