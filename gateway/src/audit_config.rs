//! The audit crate's settings, built from the gateway's config (which stays the one
//! place settings are read and checked).

use std::time::Duration;

use audit::{AnomalyRules, AuditSettings, Database};

use crate::config::{Config, StateDb};

/// How the audit writer of a gateway with config `c` batches and seals; no commit
/// observer (the server adds its metrics).
pub fn settings(c: &Config) -> AuditSettings {
    AuditSettings {
        node: c.node.clone(),
        origin: origin(c),
        batch_max: c.audit.batch_max.max(1),
        checkpoint_every: i64::try_from(c.audit.checkpoint_every.max(1)).unwrap_or(i64::MAX),
        checkpoint_interval: Duration::from_secs(c.audit.checkpoint_interval_secs.max(1)),
        checkpoint_file: c.audit.checkpoint_file.clone(),
        metrics: None,
    }
}

/// The log's origin: `[audit] origin`, or `tongban.<node>/audit` with any character
/// a key name may not hold (space, `+`) replaced by `-`.
pub fn origin(c: &Config) -> String {
    if !c.audit.origin.is_empty() {
        return c.audit.origin.clone();
    }
    let node: String = c
        .node
        .chars()
        .map(|ch| {
            if ch.is_whitespace() || ch == '+' {
                '-'
            } else {
                ch
            }
        })
        .collect();
    format!("tongban.{node}/audit")
}

/// Where the audit store of a state database lives.
pub fn database(db: &StateDb) -> Database {
    match db {
        StateDb::Sqlite(path) => Database::Sqlite(path.clone()),
        StateDb::Postgres(url) => Database::Postgres(url.clone()),
    }
}

/// The anomaly report's thresholds from `[audit.anomaly]`, the revoked certificates
/// from `revoked` or the configured certificate index (the CLI's `audit report` and
/// the auditor API's anomalies share them).
pub fn anomaly_rules(
    c: &Config,
    revoked: Option<&std::path::Path>,
) -> Result<AnomalyRules, String> {
    let a = &c.audit.anomaly;
    let mut rules = AnomalyRules {
        operator_lookups_per_hour: a.operator_lookups_per_hour,
        service_hours: a.service_minutes()?,
        subjects_per_case: a.subjects_per_case,
        denials_burst: a.denials_burst.max(1),
        denials_window_secs: i64::try_from(a.denials_window_secs).unwrap_or(i64::MAX),
        revoked: Default::default(),
    };
    if let Some(index) = revoked.or(a.revoked_index.as_deref()) {
        let text =
            std::fs::read_to_string(index).map_err(|e| format!("{}: {e}", index.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not JSON: {e}", index.display()))?;
        rules.revoked = audit::revoked_from_index(&v);
    }
    Ok(rules)
}
