//! The auditor API: `GET /audit/v1/records` searches the access log, paginated, and
//! `GET /audit/v1/records/{seq}` returns one record. Only identities holding the
//! `auditor` role get answers; every call — refused or not — is itself audited with
//! its filters in the record's `detail`.
//!
//! Query parameters: `from`, `to` (RFC 3339 or a CST date), `consumer`, `operator`,
//! `dataset`, `subject`, `matter`, `case_id`, `decision`, `limit` (1–1000, default
//! 100) and `after` (a sequence number: the page after it). The answer is
//! `{"records": [...], "count": n, "next": "<path of the next page>" | null}`.

use std::convert::Infallible;
use std::sync::Arc;

use audit::{AuditStore, Decision, Filter};
use http::{Request, StatusCode};
use policy::Authorizer;
use serde_json::{json, Map, Value};
use tower::util::BoxCloneSyncService;

use super::route::RouteService;
use super::{Answer, Outcome, Principal};
use crate::error::ApiError;

/// The records endpoint (and, below it, one record by sequence number).
pub const RECORDS: &str = "/audit/v1/records";

/// The role the auditor API requires.
pub const AUDITOR_ROLE: &str = "auditor";

const MAX_LIMIT: usize = 1000;

/// The records service over `store`, role checks by `authorizer`.
pub fn records_service<B: Send + 'static>(
    store: AuditStore,
    authorizer: Arc<Authorizer>,
) -> RouteService<B> {
    BoxCloneSyncService::new(tower::service_fn(move |req: Request<B>| {
        let (store, authorizer) = (store.clone(), Arc::clone(&authorizer));
        let principal = req.extensions().get::<Principal>().cloned();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        async move { Ok::<_, Infallible>(records(&store, &authorizer, principal, &path, &query).await) }
    }))
}

/// A parsed request: filters and page.
struct Search {
    filter: Filter,
    after: i64,
    limit: usize,
}

async fn records(
    store: &AuditStore,
    authorizer: &Authorizer,
    principal: Option<Principal>,
    path: &str,
    query: &str,
) -> Outcome {
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    // What was asked is recorded whatever happens next.
    let asked: Map<String, Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let detail = json!({"audit_search": asked});
    let mut outcome = answer(store, authorizer, principal, path, &params).await;
    outcome.facts.detail = Some(detail);
    outcome
}

async fn answer(
    store: &AuditStore,
    authorizer: &Authorizer,
    principal: Option<Principal>,
    path: &str,
    params: &[(String, String)],
) -> Outcome {
    let is_auditor = principal
        .as_ref()
        .is_some_and(|p| authorizer.has_role(p.identity.as_uri(), AUDITOR_ROLE));
    if !is_auditor {
        let mut o = Outcome::error(ApiError::RoleRequired(AUDITOR_ROLE));
        o.facts.decision = Some(Decision::Deny);
        return o;
    }
    let result = match path.strip_prefix(RECORDS).and_then(|r| r.strip_prefix('/')) {
        Some(seq) => one(store, seq).await,
        None => match parse(params) {
            Ok(search) => page(store, &search, params).await,
            Err(e) => Err(ApiError::BadRequest(e)),
        },
    };
    let mut o = match result {
        Ok(body) => Outcome::answer(Answer::Json {
            status: StatusCode::OK,
            body,
        }),
        Err(e) => Outcome::error(e),
    };
    o.facts.decision = Some(Decision::Allow);
    o
}

fn parse(params: &[(String, String)]) -> Result<Search, String> {
    let mut s = Search {
        filter: Filter::default(),
        after: 0,
        limit: 100,
    };
    for (k, v) in params {
        match k.as_str() {
            "after" => {
                s.after = v
                    .parse()
                    .map_err(|_| format!("after: {v:?} is not a sequence number"))?
            }
            "limit" => {
                s.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| format!("limit: {v:?} is not a number from 1 to {MAX_LIMIT}"))?
            }
            name => s.filter.set(name, v)?,
        }
    }
    Ok(s)
}

async fn page(
    store: &AuditStore,
    s: &Search,
    params: &[(String, String)],
) -> Result<Value, ApiError> {
    let rows = store
        .search(&s.filter, s.after, s.limit)
        .await
        .map_err(|e| ApiError::Internal(format!("audit search: {e}")))?;
    let next = match rows.last() {
        Some(last) if rows.len() == s.limit => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in params.iter().filter(|(k, _)| k != "after") {
                q.append_pair(k, v);
            }
            q.append_pair("after", &last.seq.to_string());
            Value::String(format!("{RECORDS}?{}", q.finish()))
        }
        _ => Value::Null,
    };
    let records: Vec<Value> = rows.iter().map(|r| with_hash(&r.record, &r.hash)).collect();
    Ok(json!({"count": records.len(), "records": records, "next": next}))
}

async fn one(store: &AuditStore, seq: &str) -> Result<Value, ApiError> {
    let n: i64 = seq
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{seq:?} is not a sequence number")))?;
    let row = store
        .search(&Filter::default(), n - 1, 1)
        .await
        .map_err(|e| ApiError::Internal(format!("audit search: {e}")))?
        .into_iter()
        .find(|r| r.seq == n)
        .ok_or_else(|| ApiError::NoRoute(format!("{RECORDS}/{n} (no such record)")))?;
    Ok(with_hash(&row.record, &row.hash))
}

/// The record as stored, with its chain hash beside it.
fn with_hash(record: &str, hash: &str) -> Value {
    let mut v: Value = serde_json::from_str(record).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("hash".into(), Value::String(hash.to_owned()));
    }
    v
}
