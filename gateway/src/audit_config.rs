//! The audit crate's settings, built from the gateway's config (which stays the one
//! place settings are read and checked).

use std::time::Duration;

use audit::{AuditSettings, Database};

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
