//! Why a request would be allowed or denied: the decision, and for every candidate
//! agreement the condition it meets or fails.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::agreement::Condition;
use crate::decision::{Decision, Question};
use crate::engine::Evaluation;
use crate::schedule::Clock;
use crate::{Agreement, Effect};

/// A decision with its reasons.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// Consumer identity asked about.
    pub consumer: String,
    /// Its roles, as `role:<name>`.
    pub roles: Vec<String>,
    /// Dataset.
    pub dataset: String,
    /// Matter.
    pub matter: String,
    /// Fields asked for (`None` = all granted).
    pub fields: Option<Vec<String>>,
    /// The moment, in UTC and local time.
    pub clock: Clock,
    /// The decision, as a lookup would get it (limits included once
    /// [`crate::Meter::explain`] has looked at the counters).
    pub decision: Decision,
    /// Every agreement naming the consumer (or a role of it) for the dataset.
    pub candidates: Vec<CandidateCheck>,
    /// Store version of the agreement set.
    pub version: i64,
    /// Counted limits of the allowing agreement and their use so far.
    pub usage: Vec<LimitUsage>,
}

/// One candidate agreement and how it fares.
#[derive(Debug, Clone)]
pub struct CandidateCheck {
    /// The agreement.
    pub agreement: Arc<Agreement>,
    /// The first condition it fails, if any.
    pub failed: Option<Condition>,
    /// A field asked for that it does not grant.
    pub missing_field: Option<String>,
    /// What that means, in words.
    pub detail: String,
}

/// A counted limit and its use in the current window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitUsage {
    /// `daily_quota` or `operator_rate`.
    pub limit: &'static str,
    /// What it allows per window, e.g. `500/day` or `30/min`.
    pub allows: String,
    /// The most per window.
    pub max: u32,
    /// Used so far in this window.
    pub used: i64,
    /// The window, e.g. `2026-06-01`.
    pub window: String,
}

impl Condition {
    /// `matter`, `validity`, `day` or `hours`.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Matter => "matter",
            Condition::Validity => "validity",
            Condition::Day => "day",
            Condition::Hours => "hours",
        }
    }
}

/// A moment as people read it, `YYYY-MM-DDTHH:MM:SSZ` (whole seconds, UTC).
fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl CandidateCheck {
    /// `a`, which the decision found failing `failed` first.
    fn of(a: &Arc<Agreement>, failed: Option<Condition>, q: &Question<'_>, clock: &Clock) -> Self {
        let missing_field = match (failed, a.effect, q.fields) {
            (None, Effect::Allow, Some(asked)) => a.missing_field(asked).cloned(),
            _ => None,
        };
        let detail = match (failed, &missing_field) {
            (Some(Condition::Matter), _) => format!(
                "matter {} is not one of: {}",
                q.matter,
                a.matters.join(", ")
            ),
            (Some(Condition::Validity), _) => format!(
                "valid {} to {}; {} is {}",
                stamp(a.valid_from),
                stamp(a.valid_until),
                stamp(clock.at),
                if clock.at < a.valid_from {
                    "before it"
                } else {
                    "after it"
                }
            ),
            (Some(Condition::Day | Condition::Hours), _) => format!(
                "serves {}; it is {} now",
                a.schedule_text(),
                clock.describe()
            ),
            (None, Some(field)) => format!("does not grant field {field}"),
            (None, None) if a.effect == Effect::Deny => "explicitly denies this access".into(),
            (None, None) => {
                let granted: Vec<String> = a
                    .fields
                    .iter()
                    .map(|(f, r)| format!("{f} ({})", r.as_str()))
                    .collect();
                format!("covers it; grants {}", granted.join(", "))
            }
        };
        Self {
            agreement: Arc::clone(a),
            failed,
            missing_field,
            detail,
        }
    }

    /// Whether it meets every condition (and grants every field asked).
    pub fn covers(&self) -> bool {
        self.failed.is_none() && self.missing_field.is_none()
    }
}

impl Explanation {
    /// The explanation of `evaluation`, the decision made over `candidates`.
    pub(crate) fn new(
        q: &Question<'_>,
        clock: Clock,
        evaluation: Evaluation,
        candidates: &[Arc<Agreement>],
        roles: Vec<String>,
        version: i64,
    ) -> Self {
        Self {
            consumer: q.consumer.to_owned(),
            roles,
            dataset: q.dataset.to_owned(),
            matter: q.matter.to_owned(),
            fields: q.fields.map(<[String]>::to_vec),
            candidates: candidates
                .iter()
                .zip(evaluation.checks)
                .map(|(a, failed)| CandidateCheck::of(a, failed, q, &clock))
                .collect(),
            clock,
            decision: evaluation.decision,
            version,
            usage: Vec::new(),
        }
    }

    /// `allow` or `deny`.
    pub fn verdict(&self) -> &'static str {
        match self.decision {
            Decision::Allow(_) => "allow",
            Decision::Deny(_) => "deny",
        }
    }

    /// The explanation as JSON (the admin API's `/admin/v1/explain` answer).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "decision": self.verdict(),
            "consumer": self.consumer,
            "roles": self.roles,
            "dataset": self.dataset,
            "matter": self.matter,
            "fields_asked": self.fields,
            "at": stamp(self.clock.at),
            "local_time": self.clock.describe(),
            "policy_version": self.version,
            "candidates": self.candidates.iter().map(|c| json!({
                "agreement": c.agreement.id,
                "consumer": c.agreement.consumer,
                "effect": c.agreement.effect.as_str(),
                "covers": c.covers(),
                "failed": c.failed.map(Condition::as_str)
                    .or(c.missing_field.as_ref().map(|_| "fields")),
                "detail": c.detail,
            })).collect::<Vec<_>>(),
            "limits": self.usage.iter().map(|u| json!({
                "limit": u.limit, "allows": u.allows, "max": u.max,
                "used": u.used, "window": u.window,
            })).collect::<Vec<_>>(),
        });
        match &self.decision {
            Decision::Allow(g) => {
                v["agreement"] = json!(g.agreement);
                v["fields"] = g
                    .fields
                    .iter()
                    .map(|f| json!({"name": f.name, "rule": f.rule.as_str()}))
                    .collect();
                v["message"] = json!(format!("allowed by agreement {}", g.agreement));
            }
            Decision::Deny(d) => {
                v["reason"] = json!(d.code());
                v["agreement"] = json!(d.agreement());
                v["message"] = json!(d.to_string());
            }
        }
        v
    }

    /// The explanation for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let fields = self
            .fields
            .as_ref()
            .map(|f| format!(", fields {}", f.join(", ")))
            .unwrap_or_default();
        let roles = if self.roles.is_empty() {
            String::new()
        } else {
            format!(" (roles: {})", self.roles.join(", "))
        };
        out.push_str(&format!(
            "{}{roles} asks {} for matter {}{fields}\nat {} ({}), policy version {}\n\n",
            self.consumer,
            self.dataset,
            self.matter,
            stamp(self.clock.at),
            self.clock.describe(),
            self.version
        ));
        match &self.decision {
            Decision::Allow(g) => {
                let granted: Vec<String> = g
                    .fields
                    .iter()
                    .map(|f| format!("{} ({})", f.name, f.rule.as_str()))
                    .collect();
                out.push_str(&format!(
                    "ALLOW by agreement {}: {}\n",
                    g.agreement,
                    granted.join(", ")
                ));
            }
            Decision::Deny(d) => {
                out.push_str(&format!("DENY [{}]: {d}\n", d.code()));
            }
        }
        for u in &self.usage {
            out.push_str(&format!(
                "  {} {}: {} used in window {}\n",
                u.limit, u.allows, u.used, u.window
            ));
        }
        if self.candidates.is_empty() {
            out.push_str("\nNo agreement names this consumer or its roles for this dataset.\n");
        } else {
            out.push_str("\nCandidate agreements:\n");
            for c in &self.candidates {
                let mark = if c.covers() { "ok  " } else { "FAIL" };
                let what = c
                    .failed
                    .map(Condition::as_str)
                    .or(c.missing_field.as_ref().map(|_| "fields"))
                    .unwrap_or(c.agreement.effect.as_str());
                out.push_str(&format!(
                    "  {mark} {} ({} for {}) {what}: {}\n",
                    c.agreement.id,
                    c.agreement.effect.as_str(),
                    c.agreement.consumer,
                    c.detail
                ));
            }
        }
        out
    }
}
