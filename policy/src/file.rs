//! Agreement files: `[[agreement]]` tables in TOML. Every error names the file, the
//! line and the field.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::{Agreement, Catalogue, PolicyError};

/// A TOML file of agreements, with where each key of each agreement was written.
#[derive(Debug, Clone, Default)]
pub struct AgreementFile {
    /// The file, for errors.
    pub path: PathBuf,
    /// The agreements, in file order.
    pub agreements: Vec<Agreement>,
    /// Per agreement: the line of its table and of each of its keys.
    lines: Vec<KeyLines>,
}

#[derive(Debug, Clone, Default)]
struct KeyLines {
    table: usize,
    keys: HashMap<String, usize>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Typed {
    #[serde(default)]
    agreement: Vec<Agreement>,
}

// The same file read again for positions only (the typed pass has already refused
// anything malformed): once for the keys of each agreement, once for its fields.
#[derive(Deserialize)]
struct KeyPositions {
    #[serde(default)]
    agreement: Vec<Spanned<BTreeMap<Spanned<String>, IgnoredAny>>>,
}

#[derive(Deserialize)]
struct FieldPositions {
    #[serde(default)]
    agreement: Vec<FieldKeys>,
}

#[derive(Deserialize)]
struct FieldKeys {
    #[serde(default)]
    fields: BTreeMap<Spanned<String>, IgnoredAny>,
}

impl AgreementFile {
    /// Parse agreements from TOML text and check each on its own (ids unique within
    /// the file); `path` names the source in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, PolicyError> {
        let typed: Typed = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            let source_line = line
                .and_then(|l| text.lines().nth(l - 1))
                .map(|s| format!("`{}`: ", s.trim()))
                .unwrap_or_default();
            PolicyError::Parse {
                path: path.to_owned(),
                line,
                message: format!("{source_line}{}", e.message().trim()),
            }
        })?;
        let lines = positions(text);
        let file = Self {
            path: path.to_owned(),
            agreements: typed.agreement,
            lines,
        };
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, a) in file.agreements.iter().enumerate() {
            a.validate().map_err(|e| file.locate(i, e))?;
            if let Some(first) = seen.insert(&a.id, i) {
                let first_line = file.lines.get(first).map(|l| l.table).unwrap_or(0);
                return Err(file.locate(
                    i,
                    PolicyError::Invalid {
                        id: a.id.clone(),
                        field: "id".into(),
                        message: format!("is used twice in this file (first at line {first_line})"),
                    },
                ));
            }
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

    /// Check every agreement against the catalogue: unknown dataset, field or
    /// matter, or a provider other than the dataset's, is an error at its line.
    pub fn check(&self, catalogue: &Catalogue) -> Result<(), PolicyError> {
        for (i, a) in self.agreements.iter().enumerate() {
            catalogue.check(a).map_err(|e| self.locate(i, e))?;
        }
        Ok(())
    }

    /// Render agreements as an agreement file.
    pub fn render(agreements: &[Agreement]) -> Result<String, PolicyError> {
        toml::to_string_pretty(&Typed {
            agreement: agreements.to_vec(),
        })
        .map_err(|e| PolicyError::Corrupt {
            id: String::new(),
            message: e.to_string(),
        })
    }

    /// Turn an error about agreement `i` into one naming this file and the line of
    /// the field at fault.
    fn locate(&self, i: usize, e: PolicyError) -> PolicyError {
        let PolicyError::Invalid { id, field, message } = e else {
            return e;
        };
        let line = self.lines.get(i).map(|l| {
            l.keys
                .get(&field)
                .or_else(|| field.split('.').next().and_then(|top| l.keys.get(top)))
                .copied()
                .unwrap_or(l.table)
        });
        PolicyError::Parse {
            path: self.path.clone(),
            line,
            message: format!("agreement {id}: {field}: {message}"),
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Lines of each agreement's table and keys (`fields.<name>` for granted fields).
fn positions(text: &str) -> Vec<KeyLines> {
    let (Ok(keys), Ok(fields)) = (
        toml::from_str::<KeyPositions>(text),
        toml::from_str::<FieldPositions>(text),
    ) else {
        return Vec::new();
    };
    keys.agreement
        .iter()
        .zip(fields.agreement.iter())
        .map(|(table, granted)| {
            let mut keys: HashMap<String, usize> = table
                .get_ref()
                .keys()
                .map(|k| (k.get_ref().clone(), line_of(text, k.span().start)))
                .collect();
            let first = keys
                .values()
                .min()
                .copied()
                .unwrap_or_else(|| line_of(text, table.span().start));
            for k in granted.fields.keys() {
                keys.insert(
                    format!("fields.{}", k.get_ref()),
                    line_of(text, k.span().start),
                );
            }
            KeyLines { table: first, keys }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::catalogue::DEFAULT_MATTERS;

    /// A file every check accepts; the fuzz properties edit it too.
    pub(super) const GOOD: &str = r#"
[[agreement]]
id = "hrss-population-2026"
provider = "sz-psb"
consumer = "urn:tongban:sz-hrss:counter-01"
dataset = "population"
matters = ["social-insurance-enrollment"]
valid_from = "2026-01-01T00:00:00Z"
valid_until = "2027-12-31T23:59:59Z"
hours = "08:30-17:30"
daily_quota = 500
approver = "urn:tongban:sz-psb:admin-01"
[agreement.fields]
name = "full"
household_address = "masked"
"#;

    fn err(text: &str) -> String {
        AgreementFile::parse(Path::new("a.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn parses_a_good_file_and_round_trips() {
        let f = AgreementFile::parse(Path::new("a.toml"), GOOD).unwrap();
        assert_eq!(f.agreements.len(), 1);
        let a = &f.agreements[0];
        assert_eq!(a.fields["household_address"], crate::FieldRule::Masked);
        assert_eq!(a.hours.unwrap().to_string(), "08:30-17:30");
        assert_eq!(a.daily_quota, Some(500));
        let text = AgreementFile::render(&f.agreements).unwrap();
        let back = AgreementFile::parse(Path::new("b.toml"), &text).unwrap();
        assert_eq!(back.agreements, f.agreements);
    }

    #[test]
    fn syntax_and_type_errors_name_file_line_and_field() {
        let e = err(&GOOD.replace("\"masked\"", "\"partial\""));
        assert!(e.starts_with("a.toml:15:"), "{e}");
        assert!(e.contains("household_address"), "{e}");
        let e = err(&GOOD.replace("08:30-17:30", "half past eight"));
        assert!(e.starts_with("a.toml:10:"), "{e}");
        assert!(e.contains("hours"), "{e}");
        let e = err(&GOOD.replace("daily_quota", "daily_qouta"));
        assert!(e.starts_with("a.toml:11:"), "{e}");
        assert!(e.contains("daily_qouta"), "{e}");
    }

    #[test]
    fn rule_errors_name_file_line_and_field() {
        let e = err(&GOOD.replace("urn:tongban:sz-hrss:counter-01", "counter-01"));
        assert!(
            e.starts_with("a.toml:5: agreement hrss-population-2026: consumer:"),
            "{e}"
        );
        let e = err(&GOOD.replace("2027-12-31T23:59:59Z", "2025-12-31T23:59:59Z"));
        assert!(e.starts_with("a.toml:9: "), "{e}");
        assert!(e.contains("valid_until: is before valid_from"), "{e}");
        let twice = format!("{GOOD}{}", GOOD.replace("[[agreement]]", "\n[[agreement]]"));
        let e = err(&twice);
        assert!(
            e.contains("a.toml:19: agreement hrss-population-2026: id: is used twice"),
            "{e}"
        );
    }

    #[test]
    fn catalogue_errors_name_the_line() {
        let cat = Catalogue::new(DEFAULT_MATTERS.iter().copied()).with_dataset(
            "population",
            ["name", "household_address"],
            Some("sz-psb"),
        );
        let f = AgreementFile::parse(
            Path::new("a.toml"),
            &GOOD.replace("name = \"full\"", "shoe_size = \"full\""),
        )
        .unwrap();
        let e = f.check(&cat).unwrap_err().to_string();
        assert!(
            e.starts_with("a.toml:14: agreement hrss-population-2026: fields.shoe_size:"),
            "{e}"
        );
        let f = AgreementFile::parse(
            Path::new("a.toml"),
            &GOOD.replace("[\"social-insurance-enrollment\"]", "[\"marketing\"]"),
        )
        .unwrap();
        let e = f.check(&cat).unwrap_err().to_string();
        assert!(
            e.starts_with("a.toml:7: agreement hrss-population-2026: matters: unknown matter"),
            "{e}"
        );
        let f = AgreementFile::parse(
            Path::new("a.toml"),
            &GOOD.replace("\"population\"", "\"people\""),
        )
        .unwrap();
        let e = f.check(&cat).unwrap_err().to_string();
        assert!(e.starts_with("a.toml:6: "), "{e}");
    }
}

/// Property tests: any text, and a good file with a line or value replaced by any
/// text, is parsed or refused with an error naming the file (and a line when the
/// text was TOML), never a panic.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod fuzz {
    use chrono::{TimeZone as _, Utc};
    use proptest::prelude::*;

    use super::tests::GOOD;
    use super::*;
    use crate::schedule::{Clock, TimeZone};

    /// A value as TOML might hold it: strings of any text, numbers, arrays, dates.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\PC{0,30}".prop_map(|s| format!("{s:?}")),
            "[0-9:-]{0,12}".prop_map(|s| format!("{s:?}")),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| n.to_string()),
            "\\PC{0,30}",
            proptest::collection::vec("\\PC{0,12}", 0..3).prop_map(|v| format!("{v:?}")),
            Just("1979-05-27T07:32:00Z".to_owned()),
        ]
    }

    /// `GOOD` with line `i` replaced: its value by `v`, or the whole line by `v`.
    fn edited(i: usize, v: &str, whole: bool) -> String {
        let mut lines: Vec<String> = GOOD.lines().map(str::to_owned).collect();
        let i = i % lines.len();
        lines[i] = match lines[i].split_once(" = ") {
            Some((key, _)) if !whole => format!("{key} = {v}"),
            _ => v.to_owned(),
        };
        lines.join("\n")
    }

    fn parsed_or_named(text: &str) -> Result<(), TestCaseError> {
        match AgreementFile::parse(Path::new("a.toml"), text) {
            Ok(file) => {
                let clock = Clock::new(
                    Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap(),
                    TimeZone::default(),
                );
                for a in &file.agreements {
                    let _ = a.unmet("social-insurance-enrollment", &clock);
                }
            }
            Err(e) => {
                let shown = e.to_string();
                let line = shown
                    .strip_prefix("a.toml:")
                    .and_then(|rest| rest.split_once(':'));
                prop_assert!(
                    line.is_some_and(|(n, _)| n.parse::<usize>().is_ok()),
                    "{}",
                    shown
                );
            }
        }
        Ok(())
    }

    #[test]
    fn the_good_file_parses() {
        AgreementFile::parse(Path::new("a.toml"), GOOD).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_text_is_parsed_or_refused_naming_file_and_line(text in "\\PC{0,300}") {
            parsed_or_named(&text)?;
        }

        #[test]
        fn a_good_file_with_one_line_changed_is_parsed_or_refused_naming_its_line(
            i in any::<usize>(),
            v in value(),
            whole in any::<bool>(),
        ) {
            parsed_or_named(&edited(i, &v, whole))?;
        }
    }
}
