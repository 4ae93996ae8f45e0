//! The auditor API: `GET /audit/v1/records` searches the access log, paginated, and
//! `GET /audit/v1/records/{seq}` returns one record. Only identities holding the
//! `auditor` role get answers; every call — refused or not — is itself audited with
//! its filters (or parameters) in the record's `detail`.
//!
//! Auditors and monitors follow the Merkle tree with `GET /audit/v1/checkpoint` (the
//! latest signed note, `text/plain`), `/audit/v1/proof/inclusion?index=N&size=S`,
//! `/audit/v1/proof/consistency?old=M&size=N` (size defaults to the stored tree) and
//! `/audit/v1/entries?from=SEQ&limit=K` (the records' exact bytes, to recompute the
//! tree): see [`log_service`].
//!
//! Query parameters: `from`, `to` (RFC 3339 or a CST date), `consumer`, `operator`,
//! `dataset`, `subject`, `matter`, `case_id`, `decision`, `limit` (1–1000, default
//! 100) and `after` (a sequence number: the page after it). The answer is
//! `{"records": [...], "count": n, "next": "<path of the next page>" | null}`.

use std::convert::Infallible;
use std::sync::Arc;

use audit::{AuditLog, AuditStore, Decision, Filter, FollowError, Proof};
use http::{Request, StatusCode};
use policy::Authorizer;
use serde_json::{json, Map, Value};
use tower::util::BoxCloneSyncService;

use super::route::RouteService;
use super::{Answer, Outcome, Principal};
use crate::error::ApiError;

/// The records endpoint (and, below it, one record by sequence number).
pub const RECORDS: &str = "/audit/v1/records";

/// The latest signed checkpoint.
pub const CHECKPOINT: &str = "/audit/v1/checkpoint";
/// Inclusion proofs.
pub const INCLUSION: &str = "/audit/v1/proof/inclusion";
/// Consistency proofs.
pub const CONSISTENCY: &str = "/audit/v1/proof/consistency";
/// The records' exact bytes, by range.
pub const ENTRIES: &str = "/audit/v1/entries";

/// The role the auditor API requires.
pub const AUDITOR_ROLE: &str = "auditor";

/// Records per entries page unless `limit` says otherwise.
const ENTRIES_LIMIT: usize = 100;

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

pub(crate) async fn records(
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

/// The refusal of a caller without the auditor role, if it is one.
pub(crate) fn refused(authorizer: &Authorizer, principal: Option<&Principal>) -> Option<Outcome> {
    let is_auditor =
        principal.is_some_and(|p| authorizer.has_role(p.identity.as_uri(), AUDITOR_ROLE));
    if is_auditor {
        return None;
    }
    let mut o = Outcome::error(ApiError::RoleRequired(AUDITOR_ROLE));
    o.facts.decision = Some(Decision::Deny);
    Some(o)
}

async fn answer(
    store: &AuditStore,
    authorizer: &Authorizer,
    principal: Option<Principal>,
    path: &str,
    params: &[(String, String)],
) -> Outcome {
    if let Some(refusal) = refused(authorizer, principal.as_ref()) {
        return refusal;
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

/// The log endpoints ([`CHECKPOINT`], [`INCLUSION`], [`CONSISTENCY`], [`ENTRIES`])
/// over `log`, role checks by `authorizer`. The checkpoint is the latest this
/// gateway's writer signed (or the latest stored before it signed any); proofs and
/// entries are read from the store.
pub fn log_service<B: Send + 'static>(
    log: AuditLog,
    authorizer: Arc<Authorizer>,
) -> RouteService<B> {
    BoxCloneSyncService::new(tower::service_fn(move |req: Request<B>| {
        let (log, authorizer) = (log.clone(), Arc::clone(&authorizer));
        let principal = req.extensions().get::<Principal>().cloned();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        async move {
            let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            let asked: Map<String, Value> = params
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let mut outcome = match refused(&authorizer, principal.as_ref()) {
                Some(refusal) => refusal,
                None => {
                    let mut o = match follow(&log, &path, &params).await {
                        Ok(answer) => Outcome::answer(answer),
                        Err(e) => Outcome::error(e),
                    };
                    o.facts.decision = Some(Decision::Allow);
                    o
                }
            };
            outcome.facts.detail = Some(json!({"audit_follow": asked}));
            Ok::<_, Infallible>(outcome)
        }
    }))
}

async fn follow(
    log: &AuditLog,
    path: &str,
    params: &[(String, String)],
) -> Result<Answer, ApiError> {
    let store = log.store();
    let json = |body: Value| Answer::Json {
        status: StatusCode::OK,
        body,
    };
    match path {
        CHECKPOINT => {
            Query::parse(params, &[])?;
            let note = log
                .latest_checkpoint()
                .await
                .map_err(|e| ApiError::Internal(format!("audit checkpoint: {e}")))?
                .ok_or_else(|| {
                    ApiError::NoRoute(format!("{CHECKPOINT} (no checkpoint signed yet)"))
                })?;
            Ok(Answer::Text {
                status: StatusCode::OK,
                content_type: "text/plain; charset=utf-8",
                body: note,
            })
        }
        INCLUSION => {
            let q = Query::parse(params, &["index", "size"])?;
            let index = q.required("index")?;
            let p = store
                .inclusion_proof(index, q.number("size")?)
                .await
                .map_err(|e| follow_error(path, e))?;
            Ok(json(
                json!({"index": index, "size": p.size, "inclusion": hashes(&p)}),
            ))
        }
        CONSISTENCY => {
            let q = Query::parse(params, &["old", "size"])?;
            let old = q.required("old")?;
            let p = store
                .consistency_proof(old, q.number("size")?)
                .await
                .map_err(|e| follow_error(path, e))?;
            Ok(json(
                json!({"old": old, "size": p.size, "consistency": hashes(&p)}),
            ))
        }
        _ => {
            let q = Query::parse(params, &["from", "limit"])?;
            let from = i64::try_from(q.required("from")?)
                .map_err(|_| ApiError::BadRequest("from: not a sequence number".into()))?;
            let limit = match q.number("limit")? {
                Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
                None => ENTRIES_LIMIT,
            };
            let rows = store
                .entries(from, limit)
                .await
                .map_err(|e| follow_error(path, e))?;
            let next = match rows.last() {
                Some(last) if rows.len() == limit => {
                    Value::String(format!("{ENTRIES}?from={}&limit={limit}", last.seq + 1))
                }
                _ => Value::Null,
            };
            let entries: Vec<Value> = rows
                .iter()
                .map(|r| json!({"seq": r.seq, "record": r.record}))
                .collect();
            Ok(json(json!({"entries": entries, "next": next})))
        }
    }
}

/// A proof's hashes in standard base64, as receipts carry them.
fn hashes(p: &Proof) -> Vec<String> {
    p.base64()
}

/// A malformed number is a 400; a well-formed one beyond what the log holds now is
/// a 404, as a record that does not exist is (both name the parameter first).
fn follow_error(path: &str, e: FollowError) -> ApiError {
    match e {
        FollowError::Argument { .. } => ApiError::BadRequest(e.to_string()),
        FollowError::Beyond { .. } => ApiError::NoRoute(format!("{path} ({e})")),
        FollowError::Store(e) => ApiError::Internal(format!("audit proof: {e}")),
    }
}

/// The query of a log endpoint: only the parameters it takes, each a number.
struct Query<'a> {
    params: &'a [(String, String)],
}

impl<'a> Query<'a> {
    fn parse(params: &'a [(String, String)], allowed: &[&str]) -> Result<Self, ApiError> {
        if let Some((k, _)) = params.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            return Err(ApiError::BadRequest(format!(
                "{k}: unknown parameter (this endpoint takes {})",
                if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        Ok(Self { params })
    }

    /// The parameter `name` as a number, if given (the last one, if repeated).
    fn number(&self, name: &'static str) -> Result<Option<u64>, ApiError> {
        match self.params.iter().rev().find(|(k, _)| k == name) {
            None => Ok(None),
            Some((_, v)) => v.parse().map(Some).map_err(|_| {
                ApiError::BadRequest(format!("{name}: {v:?} is not a non-negative integer"))
            }),
        }
    }

    fn required(&self, name: &'static str) -> Result<u64, ApiError> {
        self.number(name)?
            .ok_or_else(|| ApiError::BadRequest(format!("{name}: required")))
    }
}
