//! The auditor API's reports, for identities holding the `auditor` role (the
//! console's officer pages show these answers, nothing more):
//!
//! | request | answers |
//! |---|---|
//! | `GET /audit/v1/subjects/{subject}[?from=&to=]` | the citizen's access report: every access to records about the subject |
//! | `GET /audit/v1/anomalies[?from=&to=&…]` | the anomaly rules' findings (`[audit.anomaly]`), each with its records |
//! | `GET /audit/v1/stats[?from=&to=]` | lookups per hour by decision, denials by reason, top operators (default: the last 24 hours) |
//! | `GET /audit/v1/health` | the latest signed checkpoint, the stored tree, how far each witness cosigned, archives |
//!
//! Each call is audited with its parameters in the record's `detail`, refusals too.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use audit::{AnomalyRules, AuditLog, AuditStore, Decision, Filter, StoredRecord};
use http::{Request, StatusCode};
use policy::Authorizer;
use serde_json::{json, Map, Value};
use tower::util::BoxCloneSyncService;

use super::audit_api::refused;
use super::route::RouteService;
use super::{Answer, Outcome, Principal};
use crate::error::ApiError;

/// A citizen's access report, below it the subject.
pub const SUBJECTS: &str = "/audit/v1/subjects";
/// The anomaly report.
pub const ANOMALIES: &str = "/audit/v1/anomalies";
/// Counts for charts.
pub const STATS: &str = "/audit/v1/stats";
/// The log's health.
pub const HEALTH: &str = "/audit/v1/health";

/// Records one stats answer reads at most; beyond, it says `truncated`.
const STATS_SCAN: usize = 200_000;

/// What the report endpoints read.
#[derive(Clone)]
pub struct Reports {
    /// The audit log (its store, its latest checkpoint).
    pub log: AuditLog,
    /// Who holds the auditor role.
    pub authorizer: Arc<Authorizer>,
    /// The anomaly rules of the config.
    pub rules: Arc<AnomalyRules>,
}

/// The report endpoints ([`SUBJECTS`], [`ANOMALIES`], [`STATS`], [`HEALTH`]).
pub fn reports_service<B: Send + 'static>(reports: Reports) -> RouteService<B> {
    BoxCloneSyncService::new(tower::service_fn(move |req: Request<B>| {
        let reports = reports.clone();
        let principal = req.extensions().get::<Principal>().cloned();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        async move { Ok::<_, Infallible>(reports.answer(principal.as_ref(), &path, &query).await) }
    }))
}

impl Reports {
    /// The answer to `path?query` for `principal`, audited facts filled in.
    pub async fn answer(&self, principal: Option<&Principal>, path: &str, query: &str) -> Outcome {
        let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let asked: Map<String, Value> = params
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let subject = path
            .strip_prefix(SUBJECTS)
            .and_then(|r| r.strip_prefix('/'))
            .map(str::to_owned);
        let mut o = match refused(&self.authorizer, principal) {
            Some(refusal) => refusal,
            None => {
                let mut o = match self.report(path, subject.as_deref(), &params).await {
                    Ok(body) => Outcome::answer(Answer::Json {
                        status: StatusCode::OK,
                        body,
                    }),
                    Err(e) => Outcome::error(e),
                };
                o.facts.decision = Some(Decision::Allow);
                o
            }
        };
        o.facts.subject = subject;
        o.facts.detail = Some(json!({"audit_report": {"path": path, "asked": asked}}));
        o
    }

    async fn report(
        &self,
        path: &str,
        subject: Option<&str>,
        params: &[(String, String)],
    ) -> Result<Value, ApiError> {
        let store = self.log.store();
        let internal = |e: audit::AuditError| ApiError::Internal(format!("audit report: {e}"));
        match (path, subject) {
            (HEALTH, _) => {
                filter(params, &[])?;
                self.health().await.map_err(internal)
            }
            (STATS, _) => {
                let mut f = filter(params, &["from", "to"])?;
                if f.from.is_none() {
                    let day_ago = chrono::Utc::now() - chrono::Duration::hours(24);
                    f.from = Some(day_ago.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
                }
                stats(store, &f).await.map_err(internal)
            }
            (ANOMALIES, _) => {
                let f = filter(params, FILTERS)?;
                let found = audit::anomalies(store, &f, &self.rules)
                    .await
                    .map_err(internal)?;
                Ok(json!({"anomalies": found}))
            }
            (_, Some(subject)) if !subject.is_empty() && !subject.contains('/') => {
                let f = filter(params, &["from", "to"])?;
                let report = audit::subject_report(store, subject, &f)
                    .await
                    .map_err(internal)?;
                serde_json::to_value(report).map_err(|e| ApiError::Internal(e.to_string()))
            }
            _ => Err(ApiError::NoRoute(path.chars().take(128).collect())),
        }
    }

    async fn health(&self) -> Result<Value, audit::AuditError> {
        let store = self.log.store();
        let note = self.log.latest_checkpoint().await?;
        let checkpoint = note.as_deref().map(|n| {
            let mut lines = n.lines();
            let (origin, size, root) = (lines.next(), lines.next(), lines.next());
            json!({
                "origin": origin,
                "size": size.and_then(|s| s.parse::<u64>().ok()),
                "root": root,
                "note": n,
            })
        });
        let bounds = store.bounds().await?;
        let witnesses: Vec<Value> = store
            .cosigned_sizes()
            .await?
            .into_iter()
            .map(|(name, size)| json!({"witness": name, "cosigned_size": size}))
            .collect();
        let archives: Vec<Value> = store
            .archives()
            .await?
            .into_iter()
            .map(|a| json!({"from_seq": a.from_seq, "to_seq": a.to_seq, "file": a.file, "sha256": a.sha256}))
            .collect();
        Ok(json!({
            "checkpoint": checkpoint,
            "tree_size": store.tree_size().await?,
            "records": bounds.map(|(first, last)| json!({"first": first, "last": last})),
            "witnesses": witnesses,
            "archives": archives,
            "last_verify": store.last_verify_run().await?,
        }))
    }
}

/// The search filters the anomaly report takes.
const FILTERS: &[&str] = &[
    "from", "to", "consumer", "operator", "dataset", "subject", "matter", "case_id", "decision",
];

/// A filter of the parameters, each of which must be one of `allowed`.
fn filter(params: &[(String, String)], allowed: &[&str]) -> Result<Filter, ApiError> {
    let mut f = Filter::default();
    for (k, v) in params {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "{k}: unknown parameter (this endpoint takes {})",
                if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        f.set(k, v).map_err(ApiError::BadRequest)?;
    }
    Ok(f)
}

/// Counts of the lookups (`/v1/lookup` and bundle items) in `f`'s range.
async fn stats(store: &AuditStore, f: &Filter) -> Result<Value, audit::AuditError> {
    let mut per_hour: BTreeMap<String, [u64; 3]> = BTreeMap::new();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut operators: BTreeMap<(String, String), u64> = BTreeMap::new();
    let (mut after, mut read, mut lookups) = (0, 0, 0u64);
    loop {
        let rows = store.search(f, after, 5_000).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        read += rows.len();
        for r in rows {
            let Ok(rec) = serde_json::from_str::<StoredRecord>(&r.record) else {
                continue;
            };
            let e = rec.entry;
            if !matches!(e.path.as_str(), "/v1/lookup" | "/v1/bundle") || e.dataset.is_none() {
                continue;
            }
            lookups += 1;
            let hour = local_hour(&e.time);
            let slot = match e.decision {
                Decision::Allow => 0,
                Decision::Deny => 1,
                Decision::Error => 2,
            };
            per_hour.entry(hour).or_default()[slot] += 1;
            if e.decision == Decision::Deny {
                let reason = e.reason.as_deref().unwrap_or("-");
                let code = reason.split(':').next().unwrap_or(reason).trim();
                *reasons.entry(code.to_owned()).or_default() += 1;
            }
            let who = (
                e.consumer.unwrap_or_default(),
                e.operator.unwrap_or_default(),
            );
            *operators.entry(who).or_default() += 1;
        }
        if read >= STATS_SCAN {
            break;
        }
    }
    let mut top: Vec<_> = operators.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(10);
    let mut denials: Vec<_> = reasons.into_iter().collect();
    denials.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(json!({
        "from": f.from,
        "to": f.to,
        "lookups": lookups,
        "truncated": read >= STATS_SCAN,
        "per_hour": per_hour.into_iter().map(|(hour, [allow, deny, error])| json!({
            "hour": hour, "allow": allow, "deny": deny, "error": error,
        })).collect::<Vec<_>>(),
        "denials_by_reason": denials.into_iter().map(|(reason, count)| json!({
            "reason": reason, "count": count,
        })).collect::<Vec<_>>(),
        "top_operators": top.into_iter().map(|((consumer, operator), count)| json!({
            "consumer": consumer, "operator": operator, "count": count,
        })).collect::<Vec<_>>(),
    }))
}

/// `2026-12-05T08` in China Standard Time, the hour a record's UTC time falls in.
fn local_hour(time: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(time)
        .map(|t| {
            t.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap_or(*t.offset()))
                .format("%Y-%m-%dT%H")
                .to_string()
        })
        .unwrap_or_else(|_| time.chars().take(13).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hours_are_china_standard_time() {
        assert_eq!(local_hour("2026-12-05T17:30:00.000001Z"), "2026-12-06T01");
        assert_eq!(local_hour("garbage-but-long"), "garbage-but-l");
    }

    #[test]
    fn a_parameter_the_endpoint_does_not_take_is_named() {
        let p = vec![("subject".to_owned(), "x".to_owned())];
        let e = filter(&p, &["from", "to"]).unwrap_err();
        assert!(
            e.to_string().starts_with("subject: unknown parameter"),
            "{e}"
        );
        let p = vec![("from".to_owned(), "yesterday".to_owned())];
        assert!(filter(&p, &["from"])
            .unwrap_err()
            .to_string()
            .starts_with("from:"));
    }
}
