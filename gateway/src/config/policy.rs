//! The `[policy]` part of the config: the time zone of hours of service and quota
//! days, how often to look for agreement changes made elsewhere, how many decision
//! engines to keep built, and the catalogue of known matters.

use schemars::JsonSchema;
use serde::Deserialize;
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
    /// refused.
    #[serde_inline_default(Spanned::default_value(
        ::policy::DEFAULT_MATTERS.iter().map(|m| (*m).to_owned()).collect()
    ))]
    matters: Spanned<Vec<String>>,
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
        let bad = m.get_ref().iter().find(|x| {
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
        Ok(PolicyConfig {
            time_zone,
            sync_interval_ms: *ms.get_ref(),
            decision_cache: *n.get_ref(),
            matters: m.get_ref().clone(),
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
