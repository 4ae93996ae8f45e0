//! `[[departments]]`: the departments' codes with their display names, which the
//! citizen portal shows beside each access (a code without an entry is shown as it
//! is).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::schema::Spanned;
use super::{Checker, ConfigError};

/// A department's display names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DepartmentNames {
    /// Chinese display name.
    pub display_zh: String,
    /// English display name (empty: none given).
    pub display_en: String,
}

/// `[[departments]]` as written.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDepartment {
    /// The department code of its identities (`urn:tongban:<code>:<system>`).
    code: Spanned<String>,
    /// Chinese display name.
    display_zh: String,
    /// English display name.
    #[serde(default)]
    display_en: String,
}

impl Checker<'_> {
    pub(super) fn departments(
        &self,
        raw: &[RawDepartment],
    ) -> Result<BTreeMap<String, DepartmentNames>, ConfigError> {
        let mut out = BTreeMap::new();
        for d in raw {
            let code = d.code.get_ref();
            if certs::Identity::new(code, "x").is_err() {
                return Err(self.err(
                    d.code.span(),
                    format!("departments.code: {code:?} is not a department code"),
                ));
            }
            let names = DepartmentNames {
                display_zh: d.display_zh.clone(),
                display_en: d.display_en.clone(),
            };
            if out.insert(code.clone(), names).is_some() {
                return Err(self.err(
                    d.code.span(),
                    format!("departments.code: {code:?} is listed twice"),
                ));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    const BASE: &str = crate::config::test_files::head!();

    fn parse(text: &str) -> Result<crate::config::Config, String> {
        let d = crate::config::test_files::dir_with(&[]);
        crate::config::test_files::parse_in(&d, &format!("{BASE}\n{text}"))
    }

    #[test]
    fn departments_have_display_names_and_errors_name_the_line() {
        let c = parse(
            "[[departments]]\ncode = \"sz-psb\"\ndisplay_zh = \"深圳市公安局\"\ndisplay_en = \"Public Security\"\n",
        )
        .unwrap();
        assert_eq!(c.departments["sz-psb"].display_zh, "深圳市公安局");
        assert!(parse("").unwrap().departments.is_empty());
        let twice = "[[departments]]\ncode = \"a\"\ndisplay_zh = \"甲\"\n[[departments]]\ncode = \"a\"\ndisplay_zh = \"乙\"\n";
        let err = parse(twice).unwrap_err();
        assert!(
            err.contains(":16: departments.code: \"a\" is listed twice"),
            "{err}"
        );
        let err = parse("[[departments]]\ncode = \"A B\"\ndisplay_zh = \"甲\"\n").unwrap_err();
        assert!(err.contains(":13: departments.code"), "{err}");
    }
}
