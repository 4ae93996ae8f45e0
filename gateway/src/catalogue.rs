//! The catalogue (政务信息资源目录): what this gateway shares, and what a caller may
//! ask of it today — served as `GET /v1/catalogue` and printed by `tongban
//! catalogue`, from the same function so that both say the same.
//!
//! ```text
//!  config [[datasets]] ─┐
//!  [policy] matters    ─┼─▶ Catalogue::new (once) ─▶ datasets, matters, bundles
//!  [[bundles]]         ─┘
//!  agreements held by the caller (identity or role) ─▶ for_caller (per request):
//!      fields (closed ones never), matters, validity, hours, today's quota use
//! ```
//!
//! Like X-Road's `listMethods` / `allowedMethods`: the first part is the same for
//! everyone, the second is the caller's own, so a department learns what it may ask
//! for without reading agreements it does not hold.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use policy::{Agreement, Condition, Effect, PolicyError, SharingClass};
use serde_json::{json, Value};

use crate::config::{Config, DatasetConfig};
use crate::policy_sync::PolicyService;

/// The part of the catalogue that is the same for every caller, built once.
#[derive(Debug, Clone)]
pub struct Catalogue {
    public: Arc<Value>,
}

impl Catalogue {
    /// The datasets, matters and bundles of `config`.
    pub fn new(config: &Config) -> Self {
        let datasets: Vec<Value> = config.datasets.iter().map(dataset_json).collect();
        let names = crate::http::citizen::Names::of(config);
        let matters: Vec<Value> = config
            .policy
            .matters
            .iter()
            .map(|m| names.matter(m))
            .collect();
        let bundles: Vec<Value> = config
            .bundles
            .iter()
            .map(|b| {
                let mut datasets: Vec<&str> = b.items.iter().map(|i| i.dataset.as_str()).collect();
                datasets.dedup();
                json!({"name": b.name, "description": b.description, "datasets": datasets})
            })
            .collect();
        Self {
            public: Arc::new(json!({
                "node": config.node,
                "datasets": datasets,
                "matters": matters,
                "bundles": bundles,
            })),
        }
    }

    /// The part every caller sees.
    pub fn public(&self) -> Value {
        (*self.public).clone()
    }

    /// The catalogue as `identity` sees it at `at`: everything, plus `caller` with
    /// the agreements it holds and what each allows now. `identity` `None`: the
    /// public part only.
    pub async fn for_caller(
        &self,
        policy: &PolicyService,
        identity: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Value, PolicyError> {
        let mut doc = (*self.public).clone();
        if let Some(identity) = identity {
            doc["caller"] = caller(policy, identity, at).await?;
        }
        Ok(doc)
    }
}

fn dataset_json(d: &DatasetConfig) -> Value {
    let fields: Vec<Value> = d
        .fields
        .iter()
        .map(|f| {
            json!({"name": f.name, "type": f.kind.as_str(), "class": f.class,
                   "description": f.description})
        })
        .collect();
    let mut subject = json!({"kind": d.subject.name(), "description": d.subject.describe()});
    if let Some(p) = d.subject.pattern() {
        subject["pattern"] = json!(p);
    }
    json!({
        "name": d.dataset.as_str(),
        "description": d.description,
        "department": d.department,
        "subject": subject,
        "by_holder": d.holder_query.is_some() || d.holder_path.is_some(),
        "fields": fields,
    })
}

/// `identity`'s roles and every agreement it holds, directly or through a role.
async fn caller(
    policy: &PolicyService,
    identity: &str,
    at: DateTime<Utc>,
) -> Result<Value, PolicyError> {
    let mut agreements = Vec::new();
    for a in policy.authorizer.held_by(identity) {
        agreements.push(held(policy, &a, identity, at).await?);
    }
    Ok(json!({
        "identity": identity,
        "roles": policy.authorizer.roles_of(identity),
        "agreements": agreements,
    }))
}

/// One agreement and what it allows `identity` at `at`: its fields (a closed one is
/// never answered, so never listed), matters, window, hours and today's quota, and
/// `state` — `active` when a lookup under it would pass now.
async fn held(
    policy: &PolicyService,
    a: &Agreement,
    identity: &str,
    at: DateTime<Utc>,
) -> Result<Value, PolicyError> {
    let clock = policy::Clock::new(at, policy.authorizer.settings().time_zone);
    let quota = policy.meter.daily_usage(a, identity, at).await?;
    let fields: serde_json::Map<String, Value> = a
        .fields
        .iter()
        .filter(|(f, _)| policy.catalogue.class_of(&a.dataset, f) != Some(SharingClass::Closed))
        .map(|(f, rule)| (f.clone(), json!(rule.as_str())))
        .collect();
    // Every condition but the matter holds for any of its matters alike.
    let unmet = a
        .matters
        .first()
        .and_then(|m| a.unmet(m, &clock))
        .filter(|c| *c != Condition::Matter);
    let state = match (a.effect, unmet) {
        (Effect::Deny, _) => "deny",
        (_, Some(Condition::Validity)) if at < a.valid_from => "not-yet-valid",
        (_, Some(Condition::Validity)) => "expired",
        (_, Some(_)) => "outside-hours",
        (_, None) if quota.as_ref().is_some_and(|q| q.used >= i64::from(q.max)) => {
            "quota-exhausted"
        }
        (_, None) => "active",
    };
    let rfc3339 = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    Ok(json!({
        "id": a.id,
        "dataset": a.dataset,
        "provider": a.provider,
        "consumer": a.consumer,
        "effect": a.effect.as_str(),
        "state": state,
        "matters": a.matters,
        "fields": fields,
        "valid_from": rfc3339(a.valid_from),
        "valid_until": rfc3339(a.valid_until),
        "schedule": a.schedule_text(),
        "daily_quota": quota.map(|q| json!({
            "max": q.max, "used": q.used,
            "remaining": (i64::from(q.max) - q.used).max(0), "day": q.window,
        })),
        "operator_rate": a.operator_rate.map(|r| r.to_string()),
    }))
}

/// The catalogue as text, for `tongban catalogue`.
pub fn to_text(doc: &Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    for d in doc["datasets"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{}  ({}; by {}){}",
            text(&d["name"]),
            text(&d["department"]),
            text(&d["subject"]["description"]),
            match d["description"].as_str() {
                Some(s) if !s.is_empty() => format!("\n  {s}"),
                _ => String::new(),
            }
        );
        for f in d["fields"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {:<26} {:<9} {:<12} {}",
                text(&f["name"]),
                text(&f["type"]),
                text(&f["class"]),
                text(&f["description"])
            );
        }
        out.push('\n');
    }
    let matters: Vec<String> = doc["matters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| text(&m["code"]))
        .collect();
    let _ = writeln!(out, "matters: {}", matters.join(", "));
    if let Some(c) = doc.get("caller") {
        let roles: Vec<String> = c["roles"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect();
        let _ = writeln!(
            out,
            "\n{} (roles: {})",
            text(&c["identity"]),
            if roles.is_empty() {
                "none".to_owned()
            } else {
                roles.join(", ")
            }
        );
        let held = c["agreements"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if held.is_empty() {
            out.push_str("  holds no agreement\n");
        }
        for a in held {
            let fields: Vec<String> = a["fields"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(f, r)| format!("{f}={}", r.as_str().unwrap_or_default()))
                .collect();
            let matters: Vec<String> = a["matters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            let quota = match &a["daily_quota"] {
                Value::Null => String::new(),
                q => format!("; quota {}/{} used today", q["used"], q["max"]),
            };
            let _ = writeln!(
                out,
                "  {} [{}] {} from {}, until {}; {}{quota}\n    matters: {}\n    fields: {}",
                text(&a["id"]),
                text(&a["state"]),
                text(&a["dataset"]),
                text(&a["provider"]),
                text(&a["valid_until"]),
                text(&a["schedule"]),
                matters.join(", "),
                fields.join(", ")
            );
        }
    }
    out
}
