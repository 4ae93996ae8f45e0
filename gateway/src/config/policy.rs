//! The `[policy]` part of the config: the time zone of hours of service and quota
//! days, how often to look for agreement changes made elsewhere, how many decision
//! engines to keep built, and the catalogue of known matters — each a code, or a
//! table giving its display names and how long its accesses are withheld from the
//! citizen they concern.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_inline_default::serde_inline_default;

use super::schema::Spanned;
use super::{Checker, ConfigError};

/// Sharing-agreement settings.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Zone of hours of service and of quota days, a UTC offset (default `+08:00`).
    pub time_zone: ::policy::TimeZone,
    /// How often (ms) to look in the state database for changes made by the CLI or
    /// another gateway; a change takes effect within this interval.
    pub sync_interval_ms: u64,
    /// Most (consumer identity, dataset) decision engines kept built.
    pub decision_cache: usize,
    /// The matters agreements may name; an agreement naming another is refused.
    pub matters: Vec<String>,
    /// What the config says of each matter beyond its code (every matter has an
    /// entry; display names empty when not given).
    pub matter_info: BTreeMap<String, MatterInfo>,
}

/// A matter's display names and disclosure delay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatterInfo {
    /// Chinese display name (empty: none given).
    pub display_zh: String,
    /// English display name (empty: none given).
    pub display_en: String,
    /// Days its accesses are withheld from the citizen they concern (0: shown at once).
    pub disclose_after_days: u32,
}

/// A matter as written: its code alone, or a table.
#[derive(Deserialize, Serialize, JsonSchema, Clone)]
#[serde(untagged)]
pub(super) enum RawMatter {
    /// `"social-insurance-enrollment"`.
    Code(String),
    /// `{ name = "…", display_zh = "…", display_en = "…", disclose_after_days = 90 }`.
    Table(RawMatterTable),
}

/// A matter with its display names and disclosure delay.
#[derive(Deserialize, Serialize, JsonSchema, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatterTable {
    /// The matter code agreements and requests name.
    name: String,
    /// Chinese display name (the citizen portal shows it).
    #[serde(default)]
    display_zh: String,
    /// English display name.
    #[serde(default)]
    display_en: String,
    /// Days an access under this matter (an investigation, say) is withheld from the
    /// citizen it concerns: shown from the start of the day (CST) this many days
    /// after the access; until then the citizen is told how many are withheld and
    /// from when the first will be shown.
    #[serde(default)]
    disclose_after_days: u32,
}

impl RawMatter {
    fn code(&self) -> &str {
        match self {
            RawMatter::Code(c) => c,
            RawMatter::Table(t) => &t.name,
        }
    }
}

/// `[policy]` as written.
#[serde_inline_default]
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    /// Zone of hours of service and of quota days: a UTC offset like `+08:00`, or
    /// `UTC`.
    #[serde_inline_default(Spanned::default_value("+08:00".to_owned()))]
    time_zone: Spanned<String>,
    /// How often (ms, 10-60000) to look in the state database for agreement changes
    /// made by the CLI or another gateway; a change takes effect within this interval.
    #[serde_inline_default(Spanned::default_value(250))]
    sync_interval_ms: Spanned<u64>,
    /// Most (consumer identity, dataset) decision engines kept built.
    #[serde_inline_default(Spanned::default_value(1024))]
    decision_cache: Spanned<usize>,
    /// The matters (purposes) agreements may name; an agreement naming another is
    /// refused. Each is a code, or a table: `name` (the code), `display_zh` and
    /// `display_en` (what the citizen portal shows), and `disclose_after_days` (how many
    /// days its accesses — an investigation's, say — are withheld from the citizen
    /// they concern; default 0).
    #[serde_inline_default(Spanned::default_value(
        ::policy::DEFAULT_MATTERS.iter().map(|m| RawMatter::Code((*m).to_owned())).collect()
    ))]
    matters: Spanned<Vec<RawMatter>>,
}

super::schema::default_from_serde!(RawPolicy);

impl Checker<'_> {
    pub(super) fn policy(&self, raw: &RawPolicy) -> Result<PolicyConfig, ConfigError> {
        let tz = &raw.time_zone;
        let time_zone = tz
            .get_ref()
            .parse()
            .map_err(|e| self.err(tz.span(), format!("policy.time_zone: {e}")))?;
        let ms = &raw.sync_interval_ms;
        if !(10..=60_000).contains(ms.get_ref()) {
            return Err(self.err(
                ms.span(),
                "policy.sync_interval_ms: must be 10-60000 (changes take effect within it)".into(),
            ));
        }
        let n = &raw.decision_cache;
        if *n.get_ref() == 0 {
            return Err(self.err(n.span(), "policy.decision_cache: must be at least 1".into()));
        }
        let m = &raw.matters;
        let codes: Vec<String> = m.get_ref().iter().map(|x| x.code().to_owned()).collect();
        let bad = codes.iter().find(|x| {
            x.is_empty()
                || x.len() > 64
                || !x
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        });
        if let Some(bad) = bad {
            return Err(self.err(
                m.span(),
                format!(
                    "policy.matters: {bad:?} is not a matter code (1-64 of A-Z a-z 0-9 - _ . /)"
                ),
            ));
        }
        if m.get_ref().is_empty() {
            return Err(self.err(m.span(), "policy.matters: name at least one matter".into()));
        }
        let mut matter_info = BTreeMap::new();
        for x in m.get_ref() {
            let info = match x {
                RawMatter::Code(_) => MatterInfo::default(),
                RawMatter::Table(t) => MatterInfo {
                    display_zh: t.display_zh.clone(),
                    display_en: t.display_en.clone(),
                    disclose_after_days: t.disclose_after_days,
                },
            };
            if matter_info.insert(x.code().to_owned(), info).is_some() {
                return Err(self.err(
                    m.span(),
                    format!("policy.matters: {:?} is named twice", x.code()),
                ));
            }
        }
        Ok(PolicyConfig {
            time_zone,
            sync_interval_ms: *ms.get_ref(),
            decision_cache: *n.get_ref(),
            matters: codes,
            matter_info,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::config::Config;

    const BASE: &str = crate::config::test_files::head!();

    fn parse(policy: &str) -> Result<Config, String> {
        let d = crate::config::test_files::dir_with(&[]);
        crate::config::test_files::parse_in(&d, &format!("{BASE}\n{policy}"))
    }

    #[test]
    fn defaults_and_settings() {
        let c = parse("").unwrap();
        assert_eq!(c.policy.time_zone.to_string(), "+08:00");
        assert_eq!(c.policy.sync_interval_ms, 250);
        assert!(c
            .policy
            .matters
            .iter()
            .any(|m| m == "social-insurance-enrollment"));
        let c =
            parse("[policy]\ntime_zone = \"UTC\"\nsync_interval_ms = 100\nmatters = [\"a-1\"]\n")
                .unwrap();
        assert_eq!(c.policy.time_zone.0.local_minus_utc(), 0);
        assert_eq!(c.policy.sync_interval_ms, 100);
        assert_eq!(c.policy.matters, ["a-1"]);
    }

    #[test]
    fn a_matter_may_be_a_table_with_display_names_and_a_delay() {
        let c = parse(
            "[policy]\nmatters = [\"a-1\", { name = \"inv\", display_zh = \"调查\", display_en = \"Investigation\", disclose_after_days = 90 }]\n",
        )
        .unwrap();
        assert_eq!(c.policy.matters, ["a-1", "inv"]);
        let inv = &c.policy.matter_info["inv"];
        assert_eq!((&*inv.display_zh, inv.disclose_after_days), ("调查", 90));
        assert_eq!(c.policy.matter_info["a-1"], super::MatterInfo::default());
        let err = parse("[policy]\nmatters = [\"a-1\", { name = \"a-1\" }]\n").unwrap_err();
        assert!(
            err.contains(":13: policy.matters: \"a-1\" is named twice"),
            "{err}"
        );
        let err = parse("[policy]\nmatters = [{ name = \"b\", colour = 1 }]\n").unwrap_err();
        assert!(err.contains(":13:"), "{err}");
    }

    #[test]
    fn errors_name_line_and_key() {
        let cases = [
            (
                "[policy]\ntime_zone = \"Asia/Shanghai\"\n",
                ":13: policy.time_zone: \"Asia/Shanghai\" is not a UTC offset",
            ),
            (
                "[policy]\nsync_interval_ms = 5\n",
                ":13: policy.sync_interval_ms",
            ),
            (
                "[policy]\nmatters = [\"a b\"]\n",
                ":13: policy.matters: \"a b\"",
            ),
            ("[policy]\nspeed = 1\n", ":13: unknown field `speed`"),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "want {want:?} in {err}");
        }
    }
}
