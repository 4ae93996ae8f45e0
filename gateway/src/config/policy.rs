//! The `[policy]` part of the config: the time zone of hours of service and quota
//! days, how often to look for agreement changes made elsewhere, how many decision
//! engines to keep built, and the catalogue of known matters.

use serde::Deserialize;
use toml::Spanned;

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

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            time_zone: ::policy::TimeZone::default(),
            sync_interval_ms: default_sync_interval(),
            decision_cache: default_decision_cache(),
            matters: ::policy::DEFAULT_MATTERS
                .iter()
                .map(|m| (*m).to_owned())
                .collect(),
        }
    }
}

fn default_sync_interval() -> u64 {
    250
}
fn default_decision_cache() -> usize {
    1024
}

/// `[policy]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    #[serde(default)]
    time_zone: Option<Spanned<String>>,
    #[serde(default)]
    sync_interval_ms: Option<Spanned<u64>>,
    #[serde(default)]
    decision_cache: Option<Spanned<usize>>,
    #[serde(default)]
    matters: Option<Spanned<Vec<String>>>,
}

impl Checker<'_> {
    pub(super) fn policy(&self, raw: &RawPolicy) -> Result<PolicyConfig, ConfigError> {
        let mut p = PolicyConfig::default();
        if let Some(tz) = &raw.time_zone {
            p.time_zone = tz
                .get_ref()
                .parse()
                .map_err(|e| self.err(tz.span(), format!("policy.time_zone: {e}")))?;
        }
        if let Some(ms) = &raw.sync_interval_ms {
            if !(10..=60_000).contains(ms.get_ref()) {
                return Err(self.err(
                    ms.span(),
                    "policy.sync_interval_ms: must be 10-60000 (changes take effect within it)"
                        .into(),
                ));
            }
            p.sync_interval_ms = *ms.get_ref();
        }
        if let Some(n) = &raw.decision_cache {
            if *n.get_ref() == 0 {
                return Err(self.err(n.span(), "policy.decision_cache: must be at least 1".into()));
            }
            p.decision_cache = *n.get_ref();
        }
        if let Some(m) = &raw.matters {
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
                    format!("policy.matters: {bad:?} is not a matter code (1-64 of A-Z a-z 0-9 - _ . /)"),
                ));
            }
            if m.get_ref().is_empty() {
                return Err(self.err(m.span(), "policy.matters: name at least one matter".into()));
            }
            p.matters = m.get_ref().clone();
        }
        Ok(p)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::config::Config;

    const BASE: &str = r#"node = "gw-1"
listen = "127.0.0.1:8443"
ops_listen = "127.0.0.1:9090"
state_db = "state.db"
signing_key = "signing.pem"

[tls]
cert = "server.pem"
key = "server.key"
client_cas = ["ca.pem"]
"#;

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
