//! The citizen API, for the government portal: `GET /citizen/v1/accesses?subject=…`
//! answers "who looked at my records, and why?" for identities holding the
//! `citizen-portal` role. The portal authenticates the citizen; the gateway trusts the
//! portal's identity for the subject it names, and records every query — refused or
//! not — naming that subject, so an officer's subject report shows the portal's
//! queries too.
//!
//! The answer lists every lookup and bundle item that named the subject, refusals
//! included as attempts, with the departments' and matters' display names from the
//! config, read through the audit subject search that `audit verify` vouches for.
//! Portal queries are not accesses to records and are not listed. An access under a
//! matter with `disclose_after_days` is withheld until that many days after it; the
//! answer then says how many are withheld and the day the first will be shown.
//!
//! Query parameters: `subject` (a resident ID number, GB 11643), `after` (a sequence
//! number: the page after it), `limit` (1–200, default 50).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;

use audit::{citizen_page, Access, AuditStore, CitizenPage, Decision, Disclosure};
use http::{Request, StatusCode};
use policy::Authorizer;
use serde_json::{json, Value};
use tower::util::BoxCloneSyncService;

use super::route::RouteService;
use super::{Answer, Outcome, Principal};
use crate::config::{Config, DepartmentNames, MatterInfo};
use crate::error::ApiError;

/// The accesses endpoint.
pub const ACCESSES: &str = "/citizen/v1/accesses";
/// The role the citizen API requires. Like `auditor`, only the operator binds it
/// (`tongban policy bind`): it reads any citizen's access list.
pub const CITIZEN_PORTAL: &str = "citizen-portal";

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 200;

/// What the answers name beside codes, and how long each matter is withheld.
#[derive(Debug, Clone, Default)]
pub struct Names {
    /// Department code → display names.
    pub departments: BTreeMap<String, DepartmentNames>,
    /// Matter code → display names and disclosure delay.
    pub matters: BTreeMap<String, MatterInfo>,
}

impl Names {
    /// The names of `config`.
    pub fn of(config: &Config) -> Self {
        Self {
            departments: config.departments.clone(),
            matters: config.policy.matter_info.clone(),
        }
    }

    fn delays(&self) -> HashMap<String, u32> {
        self.matters
            .iter()
            .filter(|(_, m)| m.disclose_after_days > 0)
            .map(|(code, m)| (code.clone(), m.disclose_after_days))
            .collect()
    }

    /// `{"code", "display_zh", "display_en"}` of a department (codes without an entry
    /// are shown as the code).
    pub fn department(&self, code: &str) -> Value {
        let n = self.departments.get(code);
        named(
            code,
            n.map(|n| n.display_zh.as_str()),
            n.map(|n| n.display_en.as_str()),
        )
    }

    /// The same for a matter.
    pub fn matter(&self, code: &str) -> Value {
        let m = self.matters.get(code);
        named(
            code,
            m.map(|m| m.display_zh.as_str()),
            m.map(|m| m.display_en.as_str()),
        )
    }
}

fn named(code: &str, zh: Option<&str>, en: Option<&str>) -> Value {
    let or_code = |n: Option<&str>| n.filter(|n| !n.is_empty()).unwrap_or(code).to_owned();
    json!({"code": code, "display_zh": or_code(zh), "display_en": or_code(en)})
}

/// The accesses service over `store`, role checks by `authorizer`.
pub fn accesses_service<B: Send + 'static>(
    store: AuditStore,
    authorizer: Arc<Authorizer>,
    names: Arc<Names>,
) -> RouteService<B> {
    BoxCloneSyncService::new(tower::service_fn(move |req: Request<B>| {
        let (store, authorizer, names) =
            (store.clone(), Arc::clone(&authorizer), Arc::clone(&names));
        let principal = req.extensions().get::<Principal>().cloned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        async move {
            Ok::<_, Infallible>(accesses(&store, &authorizer, &names, principal, &query).await)
        }
    }))
}

/// A parsed query.
#[derive(Debug, PartialEq, Eq)]
struct Query {
    subject: String,
    after: i64,
    limit: usize,
}

async fn accesses(
    store: &AuditStore,
    authorizer: &Authorizer,
    names: &Names,
    principal: Option<Principal>,
    query: &str,
) -> Outcome {
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let asked: serde_json::Map<String, Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.chars().take(64).collect())))
        .collect();
    let parsed = parse(&params);
    let mut o = answer(store, authorizer, names, principal.as_ref(), &parsed).await;
    // Who was asked about, whatever the answer: the subject's own report can show it.
    if let Ok(q) = &parsed {
        o.facts.subject = Some(q.subject.clone());
    }
    o.facts.merge_detail(json!({"citizen_query": asked}));
    o
}

async fn answer(
    store: &AuditStore,
    authorizer: &Authorizer,
    names: &Names,
    principal: Option<&Principal>,
    parsed: &Result<Query, ApiError>,
) -> Outcome {
    let is_portal =
        principal.is_some_and(|p| authorizer.has_role(p.identity.as_uri(), CITIZEN_PORTAL));
    if !is_portal {
        let mut o = Outcome::error(ApiError::RoleRequired(CITIZEN_PORTAL));
        o.facts.decision = Some(Decision::Deny);
        return o;
    }
    let q = match parsed {
        Ok(q) => q,
        Err(e) => return Outcome::error(e.clone()),
    };
    let disclosure = Disclosure {
        delays: names.delays(),
        today: None,
    };
    let page = match citizen_page(store, &q.subject, &disclosure, q.after, q.limit).await {
        Ok(p) => p,
        Err(e) => return Outcome::error(ApiError::Internal(format!("citizen accesses: {e}"))),
    };
    let shown = page.accesses.len();
    let withheld = page.withheld.count;
    let mut o = Outcome::answer(Answer::Json {
        status: StatusCode::OK,
        body: body(q, &page, names),
    });
    o.facts.decision = Some(Decision::Allow);
    o.facts.detail = Some(json!({"shown": shown, "withheld": withheld}));
    o
}

fn parse(params: &[(String, String)]) -> Result<Query, ApiError> {
    let bad = |m: String| Err(ApiError::BadRequest(m));
    let mut subject = None;
    let mut q = Query {
        subject: String::new(),
        after: 0,
        limit: DEFAULT_LIMIT,
    };
    for (k, v) in params {
        match k.as_str() {
            "subject" => subject = Some(v.clone()),
            "after" => match v.parse::<i64>() {
                Ok(n) if n >= 0 => q.after = n,
                _ => return bad(format!("after: {v:?} is not a sequence number")),
            },
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => q.limit = n,
                _ => {
                    return bad(format!(
                        "limit: {v:?} is not a number from 1 to {MAX_LIMIT}"
                    ))
                }
            },
            other => {
                return bad(format!(
                    "{}: unknown parameter (this endpoint takes subject, after, limit)",
                    other.chars().take(64).collect::<String>()
                ))
            }
        }
    }
    let Some(subject) = subject else {
        return bad("subject: required (the citizen's resident ID number)".into());
    };
    connectors::ids::check_resident_id(&subject).map_err(|error| ApiError::InvalidIdentifier {
        kind: "resident ID number (GB 11643)".into(),
        subject: subject.chars().take(64).collect(),
        error,
    })?;
    q.subject = subject;
    Ok(q)
}

fn body(q: &Query, page: &CitizenPage, names: &Names) -> Value {
    let accesses: Vec<Value> = page.accesses.iter().map(|a| access(a, names)).collect();
    let next = page.next_after.map(|after| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        s.append_pair("subject", &q.subject);
        s.append_pair("after", &after.to_string());
        s.append_pair("limit", &q.limit.to_string());
        format!("{ACCESSES}?{}", s.finish())
    });
    let w = &page.withheld;
    let notice = w.earliest_disclosure.as_ref().map(|day| {
        json!({
            "zh": format!("另有 {} 次查询因办理事项的需要暂不公开，最早将于 {day} 公开。", w.count),
            "en": format!("{} further access(es) are withheld for now; the first will be shown on {day}.", w.count),
        })
    });
    json!({
        "subject": q.subject,
        "generated_at": chrono::Utc::now()
            .with_timezone(&audit::cst())
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "accesses": accesses,
        "count": accesses.len(),
        "total": page.total,
        "withheld": {"count": w.count, "earliest_disclosure": w.earliest_disclosure, "notice": notice},
        "next": next,
    })
}

fn access(a: &Access, names: &Names) -> Value {
    let outcome = match a.decision {
        Decision::Allow if !a.fields.is_empty() => "disclosed",
        Decision::Allow => "nothing-disclosed",
        Decision::Deny => "refused",
        Decision::Error => "failed",
    };
    json!({
        "seq": a.seq,
        "time": a.time,
        "department": names.department(&a.department),
        "system": a.system,
        "operator": a.operator,
        "matter": a.matter.as_deref().map(|m| names.matter(m)),
        "case_id": a.case_id,
        "dataset": a.dataset,
        "fields": a.fields,
        "decision": a.decision,
        "outcome": outcome,
        "attempt": a.fields.is_empty(),
        "status": a.status,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parsed(q: &str) -> Result<Query, ApiError> {
        let params: Vec<(String, String)> =
            form_urlencoded::parse(q.as_bytes()).into_owned().collect();
        parse(&params)
    }

    #[test]
    fn the_query_is_checked_and_errors_name_the_parameter() {
        assert_eq!(
            parsed("subject=110101199003074573&after=7&limit=2").unwrap(),
            Query {
                subject: "110101199003074573".into(),
                after: 7,
                limit: 2
            }
        );
        for (q, want) in [
            ("", "subject: required"),
            ("subject=110101199003074573&limit=0", "limit: "),
            ("subject=110101199003074573&after=-1", "after: "),
            (
                "subject=110101199003074573&colour=red",
                "colour: unknown parameter",
            ),
        ] {
            let e = parsed(q).unwrap_err();
            assert!(e.to_string().starts_with(want), "{q}: {e}");
        }
        let e = parsed("subject=110101199003074572").unwrap_err();
        assert_eq!(e.slug(), "invalid-identifier");
        assert!(e.to_string().starts_with("subject "), "{e}");
        assert_eq!(e.extension().map(|(k, _)| k), Some("rule"));
    }

    #[test]
    fn names_fall_back_to_the_code() {
        let mut names = Names::default();
        names.departments.insert(
            "sz-psb".into(),
            DepartmentNames {
                display_zh: "公安局".into(),
                display_en: String::new(),
            },
        );
        assert_eq!(
            names.department("sz-psb"),
            json!({"code": "sz-psb", "display_zh": "公安局", "display_en": "sz-psb"})
        );
        assert_eq!(names.matter("x")["display_zh"], "x");
    }
}
