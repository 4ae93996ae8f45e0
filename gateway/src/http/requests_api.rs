//! The access-request API, for identities holding the `dept-admin` role:
//!
//! | request | does |
//! |---|---|
//! | `POST /admin/v1/requests` | file a request for a system of the caller's department |
//! | `GET /admin/v1/requests[?state=&provider=&consumer=&dataset=&overdue=]` | the requests the caller's department filed or reviews |
//! | `GET /admin/v1/requests/{id}` | one request with its history |
//! | `POST /admin/v1/requests/{id}/approve` | approve, optionally narrowed (provider only) |
//! | `POST /admin/v1/requests/{id}/refuse` | refuse with a reason (provider only) |
//! | `POST /admin/v1/requests/{id}/withdraw` | withdraw while submitted (requester's department only) |
//!
//! Every call is audited like any request, the transition in the record's `detail`
//! (`access_request`), an approval's agreement change beside it (`policy_change`).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use http::{Method, Request, StatusCode};
use http_body::Body;
use policy::{AccessRequest, Narrowing, RequestFilter, RequestState, RequestTerms};
use serde_json::{json, Value};
use tower::util::BoxCloneSyncService;

use super::admin::{admin, denied, json_answer};
use super::body::{read_json, BodyLimits};
use super::route::RouteService;
use super::{Outcome, Principal};
use crate::agreements::change_detail;
use crate::error::ApiError;
use crate::requests::{event_json, request_json, Actor, Requests};

/// Access requests, and one request (and its transitions) below it.
pub const REQUESTS: &str = "/admin/v1/requests";

/// The access-request service.
pub fn requests_service<B>(requests: Arc<Requests>, limits: BodyLimits) -> RouteService<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    BoxCloneSyncService::new(tower::service_fn(move |req: Request<B>| {
        let requests = Arc::clone(&requests);
        async move { Ok::<_, Infallible>(handle(&requests, limits, req).await) }
    }))
}

/// What a path below the collection names.
enum Target {
    Collection,
    One(String),
    Step(String, Step),
}

/// A review step on one request; the console's forms take the same steps.
#[derive(Clone, Copy)]
pub(crate) enum Step {
    /// Approve, optionally narrowed (provider only).
    Approve,
    /// Refuse with a reason (provider only).
    Refuse,
    /// Withdraw while submitted (requester's department only).
    Withdraw,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Step::Approve => "approve",
            Step::Refuse => "refuse",
            Step::Withdraw => "withdraw",
        }
    }
}

fn target(path: &str) -> Option<Target> {
    let rest = path.strip_prefix(REQUESTS)?;
    let parts: Vec<&str> = rest.split('/').skip(1).collect();
    match parts.as_slice() {
        [] => Some(Target::Collection),
        [id] if !id.is_empty() => Some(Target::One((*id).to_owned())),
        [id, step] if !id.is_empty() => {
            let step = match *step {
                "approve" => Step::Approve,
                "refuse" => Step::Refuse,
                "withdraw" => Step::Withdraw,
                _ => return None,
            };
            Some(Target::Step((*id).to_owned(), step))
        }
        _ => None,
    }
}

async fn handle<B>(requests: &Requests, limits: BodyLimits, req: Request<B>) -> Outcome
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let who = match admin(&requests.policy, req.extensions().get::<Principal>()) {
        Ok(a) => Actor::admin(&a.uri, &a.department),
        Err(e) => return denied(e),
    };
    let Some(target) = target(req.uri().path()) else {
        return Outcome::error(ApiError::NoRoute(
            req.uri().path().chars().take(128).collect(),
        ));
    };
    let method = req.method().clone();
    let wrong = |allow: Vec<Method>| {
        Outcome::error(ApiError::Method {
            method: method.to_string(),
            allow,
        })
    };
    match (&target, req.method()) {
        (Target::Collection, &Method::GET) => {
            let query = req.uri().query().unwrap_or_default().to_owned();
            list(requests, &who, &query).await
        }
        (Target::Collection, &Method::POST) => {
            let (parts, body) = req.into_parts();
            match read_json::<RequestTerms, _>(&parts.headers, body, &limits, "an access request")
                .await
            {
                Ok(terms) => file(requests, &who, terms).await,
                Err(e) => Outcome::error(e),
            }
        }
        (Target::One(id), &Method::GET) => show(requests, &who, id).await,
        (Target::Step(id, step), &Method::POST) => {
            let (id, step) = (id.clone(), *step);
            let (parts, body) = req.into_parts();
            let what = match step {
                Step::Approve => {
                    "a narrowing {\"fields\": …, \"daily_quota\": …} ({} approves as asked)"
                }
                Step::Refuse => "{\"reason\": …}",
                Step::Withdraw => "{\"reason\": …} (optional; {} is enough)",
            };
            match read_json::<Value, _>(&parts.headers, body, &limits, what).await {
                Ok(v) => decide(requests, &who, &id, step, v).await,
                Err(e) => Outcome::error(e),
            }
        }
        (Target::Collection, _) => wrong(vec![Method::GET, Method::POST]),
        (Target::One(_), _) => wrong(vec![Method::GET]),
        (Target::Step(..), _) => wrong(vec![Method::POST]),
    }
}

/// Facts every answer about one request records.
fn about(mut o: Outcome, action: &str, id: &str, r: Option<&AccessRequest>) -> Outcome {
    let mut detail = json!({"action": action, "id": id});
    if let Some(r) = r {
        detail["state"] = json!(r.state);
        detail["provider"] = json!(r.provider);
        detail["consumer_department"] = json!(r.consumer_department);
        if let Some(a) = &r.agreement {
            detail["agreement"] = json!(a);
            o.facts.agreement = Some(a.clone());
        }
        o.facts.dataset = Some(r.terms.dataset.clone());
    }
    o.facts.merge_detail(json!({"access_request": detail}));
    o
}

/// An error answered; a refusal on permission grounds recorded as a deny.
fn failed(e: ApiError) -> Outcome {
    match e {
        e @ ApiError::Refused(policy::Refusal::NotPermitted(_)) => denied(e),
        e => Outcome::error(e),
    }
}

async fn file(requests: &Requests, who: &Actor, terms: RequestTerms) -> Outcome {
    let dataset = terms.dataset.clone();
    match requests.file(who, terms).await {
        Ok(filed) => {
            let r = &filed.request;
            let mut o = json_answer(StatusCode::CREATED, request_json(r, Utc::now()));
            if let Some(Some(applied)) = filed.approval.as_ref().map(|a| &a.applied) {
                let id = r.agreement.clone().unwrap_or_default();
                o.facts.detail = Some(change_detail(&id, applied));
            }
            about(o, "file", &r.id, Some(r))
        }
        Err(e) => {
            let mut o = failed(e);
            o.facts.dataset = Some(dataset);
            about(o, "file", "", None)
        }
    }
}

/// `GET /admin/v1/requests?…`: the requests `who`'s department filed or reviews,
/// the query's filters in the record's `detail` (the console's list calls this).
pub(crate) async fn list(requests: &Requests, who: &Actor, query: &str) -> Outcome {
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let asked: serde_json::Map<String, Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut o = listed(requests, who, &param).await;
    o.facts.detail = Some(json!({"request_list": asked}));
    o
}

async fn listed(
    requests: &Requests,
    who: &Actor,
    param: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Outcome {
    let state = match param("state").map(|s| s.parse::<RequestState>()) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(m)) => return Outcome::error(ApiError::BadRequest(format!("state: {m}"))),
    };
    let overdue = match param("overdue").as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Outcome::error(ApiError::BadRequest(format!(
                "overdue: {other:?} is neither true nor false"
            )))
        }
    };
    let filter = filter_of(
        state,
        param("provider"),
        param("consumer"),
        param("dataset"),
    );
    let consumer_identity = param("consumer").filter(|c| c.starts_with("urn:"));
    match requests.list(who, filter, overdue).await {
        Ok(items) => {
            let now = Utc::now();
            let items: Vec<Value> = items
                .iter()
                .filter(|r| {
                    consumer_identity
                        .as_ref()
                        .is_none_or(|c| &r.terms.consumer == c)
                })
                .map(|r| request_json(r, now))
                .collect();
            json_answer(StatusCode::OK, json!({"requests": items}))
        }
        Err(e) => failed(e),
    }
}

/// The store filter of a list: `consumer` is a department code, or an identity
/// (whose department is filtered here, the identity itself by the caller).
pub fn filter_of(
    state: Option<RequestState>,
    provider: Option<String>,
    consumer: Option<String>,
    dataset: Option<String>,
) -> RequestFilter {
    let consumer_department = consumer.map(|c| {
        c.parse::<certs::Identity>()
            .map(|i| i.department().to_owned())
            .unwrap_or(c)
    });
    RequestFilter {
        state,
        provider,
        consumer_department,
        party: None,
        dataset,
    }
}

/// `GET /admin/v1/requests/{id}`: one request with its history (the console's
/// request page calls this).
pub(crate) async fn show(requests: &Requests, who: &Actor, id: &str) -> Outcome {
    match requests.show(who, id).await {
        Ok((r, history)) => {
            let mut body = request_json(&r, Utc::now());
            body["history"] = history.iter().map(event_json).collect();
            about(json_answer(StatusCode::OK, body), "show", id, Some(&r))
        }
        Err(e) => about(failed(e), "show", id, None),
    }
}

/// `POST /admin/v1/requests/{id}/{step}` with its JSON `body` (the console's forms
/// build the same body and call this).
pub(crate) async fn decide(
    requests: &Requests,
    who: &Actor,
    id: &str,
    step: Step,
    body: Value,
) -> Outcome {
    // A request that is not there is 404 whatever the body says.
    if let Err(e) = requests.pending(id).await {
        return about(failed(e), step.as_str(), id, None);
    }
    let result = match step {
        Step::Approve => match serde_json::from_value::<Narrowing>(body) {
            Ok(n) => requests
                .approve(who, id, &n)
                .await
                .map(|a| (a.request, a.applied)),
            Err(e) => Err(ApiError::BadRequest(format!(
                "body is not a narrowing: {e}"
            ))),
        },
        Step::Refuse => match reason(&body, true) {
            Ok(r) => requests
                .refuse(who, id, &r.unwrap_or_default())
                .await
                .map(|r| (r, None)),
            Err(e) => Err(e),
        },
        Step::Withdraw => match reason(&body, false) {
            Ok(r) => requests.withdraw(who, id, r).await.map(|r| (r, None)),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok((r, applied)) => {
            let mut o = json_answer(StatusCode::OK, request_json(&r, Utc::now()));
            if let (Some(applied), Some(agreement)) = (&applied, &r.agreement) {
                o.facts.detail = Some(change_detail(agreement, applied));
            }
            about(o, step.as_str(), id, Some(&r))
        }
        Err(e) => about(failed(e), step.as_str(), id, None),
    }
}

/// `{"reason": "…"}`, the only member; required for a refusal. A body of another
/// shape is malformed (400).
fn reason(body: &Value, required: bool) -> Result<Option<String>, ApiError> {
    let malformed = |m: &str| Err(ApiError::BadRequest(m.to_owned()));
    let Some(o) = body.as_object() else {
        return malformed("the body must be a JSON object");
    };
    if let Some(k) = o.keys().find(|k| *k != "reason") {
        return Err(ApiError::BadRequest(format!(
            "{k}: unknown member; only reason is read"
        )));
    }
    match o.get("reason") {
        Some(Value::String(s)) => Ok(Some(s.clone())),
        None if !required => Ok(None),
        None => malformed("reason: say why the request is refused"),
        Some(_) => malformed("reason: must be a string"),
    }
}
