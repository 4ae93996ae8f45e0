//! The admin API, for identities holding the `dept-admin` role — each for its own
//! department's datasets only:
//!
//! | request | does |
//! |---|---|
//! | `GET /admin/v1/agreements[?dataset=&consumer=]` | the department's agreements, with versions |
//! | `GET /admin/v1/agreements/{id}` | one agreement |
//! | `GET /admin/v1/agreements/{id}/history` | its versions: who, when, before → after |
//! | `POST /admin/v1/agreements` | create (409 if the id exists) |
//! | `PUT /admin/v1/agreements/{id}` | create or replace |
//! | `DELETE /admin/v1/agreements/{id}` | revoke |
//! | `GET /admin/v1/explain?consumer=&dataset=&matter=[&field=…][&at=][&operator=]` | why a lookup would be allowed or denied |
//! | `GET /admin/v1/roles[?identity=&role=]` | every role binding |
//! | `POST /admin/v1/roles` | bind a role to an identity of the caller's department |
//! | `DELETE /admin/v1/roles?identity=&role=` | take it away |
//!
//! A change is stored with its before and after, applied to this gateway before the
//! answer leaves (every other gateway follows within its sync interval), and
//! audited like every request, the change in the record's `detail`.

use std::convert::Infallible;
use std::sync::Arc;

use audit::Decision;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body::Body;
use policy::{Action, Agreement, Edit, Question, Refusal, RoleBinding};
use serde_json::{json, Value};
use tower::util::BoxCloneSyncService;

use super::body::{read_json, BodyLimits};
use super::citizen::CITIZEN_PORTAL;
use super::route::RouteService;
use super::{Answer, Outcome, Principal};
use crate::agreements::{change_detail, checked_grant, owner_guard, role_detail, Grantor};
use crate::error::ApiError;
use crate::policy_sync::PolicyService;

/// Agreements, and one agreement below it.
pub const AGREEMENTS: &str = "/admin/v1/agreements";
/// Why a lookup would be allowed or denied.
pub const EXPLAIN: &str = "/admin/v1/explain";
/// Role bindings.
pub const ROLES: &str = "/admin/v1/roles";
/// The role the admin API requires.
pub const DEPT_ADMIN: &str = "dept-admin";
/// The role only the operator binds (with `tongban policy bind`): it reads every
/// department's audit records.
pub const AUDITOR: &str = "auditor";

/// The agreements service.
pub fn agreements_service<B>(policy: Arc<PolicyService>, limits: BodyLimits) -> RouteService<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    BoxCloneSyncService::new(tower::service_fn(move |req: Request<B>| {
        let policy = Arc::clone(&policy);
        async move { Ok::<_, Infallible>(agreements(&policy, limits, req).await) }
    }))
}

/// The explain service.
pub fn explain_service<B: Send + 'static>(policy: Arc<PolicyService>) -> RouteService<B> {
    BoxCloneSyncService::new(tower::service_fn(move |req: Request<B>| {
        let policy = Arc::clone(&policy);
        let principal = req.extensions().get::<Principal>().cloned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        async move { Ok::<_, Infallible>(explain(&policy, principal.as_ref(), &query).await) }
    }))
}

/// The role bindings service.
pub fn roles_service<B>(policy: Arc<PolicyService>, limits: BodyLimits) -> RouteService<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    BoxCloneSyncService::new(tower::service_fn(move |req: Request<B>| {
        let policy = Arc::clone(&policy);
        async move { Ok::<_, Infallible>(roles(&policy, limits, req).await) }
    }))
}

/// A dept-admin: its identity and department.
pub(crate) struct Admin {
    /// Its identity URI.
    pub(crate) uri: String,
    /// Its department code.
    pub(crate) department: String,
}

/// The caller, if it holds the dept-admin role (403 `role-required` otherwise).
pub(crate) fn admin(
    policy: &PolicyService,
    principal: Option<&Principal>,
) -> Result<Admin, ApiError> {
    let principal =
        principal.ok_or_else(|| ApiError::Internal("principal missing from request".into()))?;
    let uri = principal.identity.as_uri();
    if !policy.authorizer.has_role(uri, DEPT_ADMIN) {
        return Err(ApiError::RoleRequired(DEPT_ADMIN));
    }
    Ok(Admin {
        uri: uri.to_owned(),
        department: principal.identity.department().to_owned(),
    })
}

impl Admin {
    /// A dept-admin acts on its own department's datasets only.
    fn may_manage(
        &self,
        policy: &PolicyService,
        provider: &str,
        dataset: &str,
    ) -> Result<(), ApiError> {
        self.grantor()
            .may_grant(&policy.catalogue, provider, dataset)
            .map_err(ApiError::Refused)
    }

    fn grantor(&self) -> Grantor<'_> {
        Grantor {
            uri: &self.uri,
            department: &self.department,
        }
    }
}

impl Admin {
    /// A dept-admin binds and unbinds roles of its own department's identities only
    /// (a department decides which of its systems are counters and who administers
    /// it, never another's), never `auditor` or `citizen-portal` (they read every
    /// department's records or any citizen's access list: the operator grants
    /// them), and does not take away its own dept-admin role
    /// (another admin of the department, or the operator, can).
    fn may_bind(&self, b: &RoleBinding, action: Action) -> Result<(), ApiError> {
        let refuse = |why: String| Err(ApiError::Refused(Refusal::NotPermitted(why)));
        let department = b
            .identity
            .parse::<certs::Identity>()
            .map(|i| i.department().to_owned())
            .map_err(|e| {
                ApiError::BadRequest(format!(
                    "identity: {:?} is not an identity: {e}",
                    b.identity
                ))
            })?;
        if department != self.department {
            return refuse(format!(
                "{} is a dept-admin of {}; {} belongs to {department}, whose dept-admins manage its roles",
                self.uri, self.department, b.identity
            ));
        }
        if b.role == AUDITOR {
            return refuse(format!(
                "the {AUDITOR} role reads every department's audit records; the operator binds it with `tongban policy bind`"
            ));
        }
        if b.role == CITIZEN_PORTAL {
            return refuse(format!(
                "the {CITIZEN_PORTAL} role reads any citizen's access list; the operator binds it with `tongban policy bind`"
            ));
        }
        if action == Action::Unbind && b.role == DEPT_ADMIN && b.identity == self.uri {
            return refuse(format!(
                "{} may not remove its own {DEPT_ADMIN} role; another {DEPT_ADMIN} of {} or the operator can",
                self.uri, self.department
            ));
        }
        Ok(())
    }
}

/// A bad agreement: 400 naming the member at fault when the rule names one.
fn invalid(e: policy::PolicyError) -> ApiError {
    match &e {
        policy::PolicyError::Invalid { field, .. } => ApiError::InvalidField {
            field: field.clone(),
            detail: e.to_string(),
        },
        _ => ApiError::BadRequest(e.to_string()),
    }
}

/// A refusal on policy grounds: recorded as a deny.
pub(crate) fn denied(e: ApiError) -> Outcome {
    let mut o = Outcome::error(e);
    o.facts.decision = Some(Decision::Deny);
    o
}

/// A JSON answer, recorded as allowed.
pub(crate) fn json_answer(status: StatusCode, body: Value) -> Outcome {
    let mut o = Outcome::answer(Answer::Json { status, body });
    o.facts.decision = Some(Decision::Allow);
    o
}

async fn agreements<B>(policy: &PolicyService, limits: BodyLimits, req: Request<B>) -> Outcome
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let admin = match admin(policy, req.extensions().get::<Principal>()) {
        Ok(a) => a,
        Err(e) => return denied(e),
    };
    let rest = req
        .uri()
        .path()
        .strip_prefix(AGREEMENTS)
        .unwrap_or_default();
    let id = rest.strip_prefix('/').unwrap_or(rest).to_owned();
    if let (Some(id), &Method::GET) = (id.strip_suffix(HISTORY), req.method()) {
        if !id.is_empty() && !id.contains('/') {
            return history(policy, &admin, id).await;
        }
    }
    if id.contains('/') {
        return Outcome::error(ApiError::NoRoute(
            req.uri().path().chars().take(128).collect(),
        ));
    }
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or_default().to_owned();
    match (method, id.is_empty()) {
        (Method::GET, true) => list(policy, &admin, &query).await,
        (Method::GET, false) => get(policy, &admin, &id).await,
        (Method::POST, true) => match body(req, limits, None).await {
            Ok(a) => change(policy, &admin, Edit::Create(a)).await,
            Err(e) => Outcome::error(e),
        },
        (Method::PUT, false) => match body(req, limits, Some(&id)).await {
            Ok(a) => change(policy, &admin, Edit::Put(a)).await,
            Err(e) => Outcome::error(e),
        },
        (Method::DELETE, false) => change(policy, &admin, Edit::Revoke(id)).await,
        (m, collection) => {
            // The collection and one agreement serve different methods.
            let allow = if collection {
                vec![Method::GET, Method::POST]
            } else {
                vec![Method::GET, Method::PUT, Method::DELETE]
            };
            Outcome::error(ApiError::Method {
                method: m.to_string(),
                allow,
            })
        }
    }
}

/// `…/agreements/{id}/history`: every version of one agreement.
const HISTORY: &str = "/history";

/// Versions of agreement `id`, newest first, each with who, when, before and after.
/// Only the provider's dept-admins see them; another department's agreement (or
/// one never stored) is 404 alike, as for `GET` of one agreement.
pub(crate) async fn history(policy: &PolicyService, admin: &Admin, id: &str) -> Outcome {
    let entries = match policy.store.history(Some(id), 1000).await {
        Ok(h) => h,
        Err(e) => return Outcome::error(ApiError::Internal(e.to_string())),
    };
    let entries: Vec<_> = entries
        .into_iter()
        .filter(|h| h.kind == "agreement")
        .collect();
    let provider = entries
        .iter()
        .find_map(|h| h.after.as_ref().or(h.before.as_ref()))
        .and_then(|a| a.get("provider").and_then(Value::as_str).map(str::to_owned));
    let mut o = match provider {
        None => return Outcome::error(ApiError::Refused(Refusal::Missing(id.to_owned()))),
        Some(p) if p != admin.department => {
            let mut o = denied(ApiError::Refused(Refusal::Missing(id.to_owned())));
            o.facts.detail = Some(json!({"agreement_of": p}));
            return o;
        }
        Some(_) => json_answer(
            StatusCode::OK,
            json!({
                "id": id,
                "history": entries.iter().map(|h| json!({
                    "version": h.version,
                    "action": h.action.as_str(),
                    "actor": h.actor,
                    "at": h.at,
                    "before": h.before,
                    "after": h.after,
                })).collect::<Vec<_>>(),
            }),
        ),
    };
    o.facts.agreement = Some(id.to_owned());
    o
}

fn stored_json(s: &policy::StoredAgreement) -> Value {
    json!({
        "agreement": s.agreement,
        "version": s.version,
        "updated_at": s.updated_at,
        "updated_by": s.updated_by,
    })
}

pub(crate) async fn list(policy: &PolicyService, admin: &Admin, query: &str) -> Outcome {
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (dataset, consumer) = (param("dataset"), param("consumer"));
    let stored = match policy.store.list().await {
        Ok(s) => s,
        Err(e) => return Outcome::error(ApiError::Internal(e.to_string())),
    };
    let items: Vec<Value> = stored
        .iter()
        .filter(|s| s.agreement.provider == admin.department)
        .filter(|s| dataset.is_none_or(|d| s.agreement.dataset == d))
        .filter(|s| consumer.is_none_or(|c| s.agreement.consumer == c))
        .map(stored_json)
        .collect();
    let mut o = json_answer(
        StatusCode::OK,
        json!({"agreements": items, "policy_version": policy.authorizer.version()}),
    );
    o.facts.detail = Some(json!({"policy_list": {"dataset": dataset, "consumer": consumer}}));
    o
}

pub(crate) async fn get(policy: &PolicyService, admin: &Admin, id: &str) -> Outcome {
    match policy.store.get(id).await {
        Ok(Some(s)) => {
            // Another department's agreement is answered as if missing, so its ids
            // cannot be probed; the record says deny.
            if admin
                .may_manage(policy, &s.agreement.provider, &s.agreement.dataset)
                .is_err()
            {
                let mut o = denied(ApiError::Refused(Refusal::Missing(id.to_owned())));
                o.facts.detail = Some(json!({"agreement_of": s.agreement.provider}));
                return o;
            }
            let mut o = json_answer(StatusCode::OK, stored_json(&s));
            o.facts.agreement = Some(id.to_owned());
            o.facts.dataset = Some(s.agreement.dataset);
            o
        }
        Ok(None) => Outcome::error(ApiError::Refused(Refusal::Missing(id.to_owned()))),
        Err(e) => Outcome::error(ApiError::Internal(e.to_string())),
    }
}

/// Read an agreement from the body; on PUT the path names the id (the body may
/// leave it out, but may not contradict it).
async fn body<B>(
    req: Request<B>,
    limits: BodyLimits,
    path_id: Option<&str>,
) -> Result<Agreement, ApiError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let (parts, body) = req.into_parts();
    let mut v: Value = read_json(&parts.headers, body, &limits, "JSON").await?;
    if let (Some(id), Some(obj)) = (path_id, v.as_object_mut()) {
        match obj.get("id").and_then(Value::as_str) {
            None => {
                obj.insert("id".into(), json!(id));
            }
            Some(given) if given != id => {
                return Err(ApiError::BadRequest(format!(
                    "id: the body says {given:?} but the path says {id:?}"
                )))
            }
            Some(_) => {}
        }
    }
    serde_json::from_value(v)
        .map_err(|e| ApiError::BadRequest(format!("body is not an agreement: {e}")))
}

pub(crate) async fn change(policy: &PolicyService, admin: &Admin, edit: Edit) -> Outcome {
    let (id, dataset) = match &edit {
        Edit::Create(a) | Edit::Put(a) | Edit::Update(a) => (a.id.clone(), Some(a.dataset.clone())),
        Edit::Revoke(id) => (id.clone(), None),
    };
    let mut o = checked_change(policy, admin, edit).await;
    o.facts.agreement = Some(id);
    if o.facts.dataset.is_none() {
        o.facts.dataset = dataset;
    }
    o
}

/// Fill in the approver and check permission, then the agreement itself: the check
/// every grant takes, access-request approvals included.
#[allow(clippy::result_large_err)] // the error is the outcome to answer with
fn prepare(policy: &PolicyService, admin: &Admin, a: Agreement) -> Result<Agreement, Outcome> {
    checked_grant(&policy.catalogue, &admin.grantor(), a).map_err(|e| match e {
        policy::PolicyError::Refused(r) => denied(ApiError::Refused(r)),
        e => Outcome::error(invalid(e)),
    })
}

async fn checked_change(policy: &PolicyService, admin: &Admin, edit: Edit) -> Outcome {
    let prepared = match edit {
        Edit::Create(a) => prepare(policy, admin, a).map(Edit::Create),
        Edit::Put(a) => prepare(policy, admin, a).map(Edit::Put),
        Edit::Update(a) => prepare(policy, admin, a).map(Edit::Update),
        revoke => Ok(revoke),
    };
    let edit = match prepared {
        Ok(e) => e,
        Err(o) => return o,
    };
    let guard = owner_guard(admin.department.clone(), matches!(edit, Edit::Revoke(_)));
    let id = match &edit {
        Edit::Create(a) | Edit::Put(a) | Edit::Update(a) => a.id.clone(),
        Edit::Revoke(id) => id.clone(),
    };
    match policy.store.edit(edit, &admin.uri, guard).await {
        Ok(Some(applied)) => {
            // This gateway obeys the change before answering; others follow.
            if let Err(e) = policy.refresh().await {
                tracing::warn!(error = %e, "applying an agreement change locally failed; the sync task retries");
            }
            let status = match applied.action {
                policy::Action::Create => StatusCode::CREATED,
                _ => StatusCode::OK,
            };
            let mut o = json_answer(
                status,
                json!({
                    "action": applied.action.as_str(),
                    "agreement": applied.after.as_ref().or(applied.before.as_ref()),
                    "version": applied.version,
                }),
            );
            o.facts.detail = Some(change_detail(&id, &applied));
            o
        }
        Ok(None) => {
            let current = policy.store.get(&id).await.ok().flatten();
            json_answer(
                StatusCode::OK,
                json!({
                    "action": "unchanged",
                    "agreement": current.as_ref().map(|s| &s.agreement),
                    "version": current.as_ref().map(|s| s.version),
                }),
            )
        }
        Err(policy::PolicyError::Refused(r @ Refusal::NotPermitted(_))) => {
            denied(ApiError::Refused(r))
        }
        Err(policy::PolicyError::Refused(r)) => {
            let mut o = Outcome::error(ApiError::Refused(r));
            // Another department's agreement: the caller learns no more than for a
            // missing id, the record says whose it was.
            if let Ok(Some(s)) = policy.store.get(&id).await {
                if s.agreement.provider != admin.department {
                    o.facts.decision = Some(Decision::Deny);
                    o.facts.detail = Some(json!({"agreement_of": s.agreement.provider}));
                }
            }
            o
        }
        Err(e @ policy::PolicyError::Invalid { .. }) => Outcome::error(invalid(e)),
        Err(e) => Outcome::error(ApiError::Internal(e.to_string())),
    }
}

pub(crate) async fn explain(
    policy: &PolicyService,
    principal: Option<&Principal>,
    query: &str,
) -> Outcome {
    let admin = match admin(policy, principal) {
        Ok(a) => a,
        Err(e) => return denied(e),
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let asked: serde_json::Map<String, Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut o = explained(policy, &admin, &params).await;
    o.facts.detail = Some(json!({"policy_explain": asked}));
    o
}

async fn explained(policy: &PolicyService, admin: &Admin, params: &[(String, String)]) -> Outcome {
    let one = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (Some(consumer), Some(dataset), Some(matter)) =
        (one("consumer"), one("dataset"), one("matter"))
    else {
        return Outcome::error(ApiError::BadRequest(
            "consumer, dataset and matter are required (field, at and operator are optional)"
                .into(),
        ));
    };
    let fields: Vec<String> = params
        .iter()
        .filter(|(n, _)| n == "field")
        .map(|(_, v)| v.clone())
        .collect();
    let at = match one("at") {
        None => chrono::Utc::now(),
        Some(t) => match chrono::DateTime::parse_from_rfc3339(&t) {
            Ok(t) => t.with_timezone(&chrono::Utc),
            Err(e) => {
                return Outcome::error(ApiError::BadRequest(format!(
                    "at: {t:?} is not an RFC 3339 time: {e}"
                )))
            }
        },
    };
    if let Some(owner) = policy.catalogue.provider_of(&dataset) {
        if let Err(e) = admin.may_manage(policy, owner, &dataset) {
            return denied(e);
        }
    }
    let q = Question {
        consumer: &consumer,
        dataset: &dataset,
        matter: &matter,
        fields: (!fields.is_empty()).then_some(fields.as_slice()),
        at,
    };
    let mut e = match policy.authorizer.explain(&q) {
        Ok(e) => e,
        Err(e) => return Outcome::error(ApiError::Internal(e.to_string())),
    };
    if let Err(err) = policy
        .meter
        .explain(&mut e, one("operator").as_deref())
        .await
    {
        return Outcome::error(ApiError::Internal(err.to_string()));
    }
    let mut o = json_answer(StatusCode::OK, e.to_json());
    o.facts.dataset = Some(dataset);
    o.facts.matter = Some(matter);
    o
}

async fn roles<B>(policy: &PolicyService, limits: BodyLimits, req: Request<B>) -> Outcome
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let admin = match admin(policy, req.extensions().get::<Principal>()) {
        Ok(a) => a,
        Err(e) => return denied(e),
    };
    let params: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match req.method().clone() {
        Method::GET => list_roles(policy, param("identity"), param("role")).await,
        Method::POST => match binding_body(req, limits).await {
            Ok(b) => role_change(policy, &admin, b, Action::Bind).await,
            Err(e) => Outcome::error(e),
        },
        Method::DELETE => match (param("identity"), param("role")) {
            (Some(identity), Some(role)) => {
                role_change(
                    policy,
                    &admin,
                    RoleBinding { identity, role },
                    Action::Unbind,
                )
                .await
            }
            _ => Outcome::error(ApiError::BadRequest(
                "identity and role are required: DELETE /admin/v1/roles?identity=…&role=…".into(),
            )),
        },
        m => Outcome::error(ApiError::Method {
            method: m.to_string(),
            allow: vec![Method::GET, Method::POST, Method::DELETE],
        }),
    }
}

/// Every binding: a provider granting to `role:<name>` sees whom the grant reaches.
pub(crate) async fn list_roles(
    policy: &PolicyService,
    identity: Option<String>,
    role: Option<String>,
) -> Outcome {
    let bindings = match policy.store.roles().await {
        Ok(b) => b,
        Err(e) => return Outcome::error(ApiError::Internal(e.to_string())),
    };
    let items: Vec<Value> = bindings
        .iter()
        .filter(|b| identity.as_ref().is_none_or(|i| &b.identity == i))
        .filter(|b| role.as_ref().is_none_or(|r| &b.role == r))
        .map(|b| json!({"identity": b.identity, "role": b.role}))
        .collect();
    let mut o = json_answer(
        StatusCode::OK,
        json!({"roles": items, "policy_version": policy.authorizer.version()}),
    );
    o.facts.detail = Some(json!({"role_list": {"identity": identity, "role": role}}));
    o
}

async fn binding_body<B>(req: Request<B>, limits: BodyLimits) -> Result<RoleBinding, ApiError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        identity: String,
        role: String,
    }
    let (parts, body) = req.into_parts();
    let b: Body = read_json(
        &parts.headers,
        body,
        &limits,
        "a role binding {\"identity\": …, \"role\": …}",
    )
    .await?;
    Ok(RoleBinding {
        identity: b.identity,
        role: b.role,
    })
}

pub(crate) async fn role_change(
    policy: &PolicyService,
    admin: &Admin,
    binding: RoleBinding,
    action: Action,
) -> Outcome {
    let mut o = checked_role_change(policy, admin, &binding, action).await;
    if o.facts.detail.is_none() {
        // Refused or unchanged: the attempt is on record, naming what it was about.
        o.facts.detail = Some(json!({"role_binding": {
            "action": action.as_str(), "identity": binding.identity, "role": binding.role,
        }}));
    }
    o
}

async fn checked_role_change(
    policy: &PolicyService,
    admin: &Admin,
    b: &RoleBinding,
    action: Action,
) -> Outcome {
    // Well-formed first (a bad identity has no department to check), then allowed.
    if let Err(e) = b.validate() {
        return Outcome::error(ApiError::BadRequest(e.to_string()));
    }
    if let Err(e) = admin.may_bind(b, action) {
        return denied(e);
    }
    let changed = match action {
        Action::Unbind => {
            policy
                .store
                .unbind_role_by(&b.identity, &b.role, &admin.uri)
                .await
        }
        _ => {
            policy
                .store
                .bind_role_by(&b.identity, &b.role, &admin.uri)
                .await
        }
    };
    let version = match changed {
        Ok(Some(v)) => v,
        Ok(None) if action == Action::Unbind => {
            return Outcome::error(ApiError::Refused(Refusal::NoBinding {
                identity: b.identity.clone(),
                role: b.role.clone(),
            }))
        }
        Ok(None) => {
            return json_answer(
                StatusCode::OK,
                json!({"action": "unchanged", "identity": b.identity, "role": b.role,
                       "version": null}),
            )
        }
        Err(e) => return Outcome::error(ApiError::Internal(e.to_string())),
    };
    // This gateway obeys the change before answering; others follow.
    if let Err(e) = policy.refresh().await {
        tracing::warn!(error = %e, "applying a role change locally failed; the sync task retries");
    }
    let status = match action {
        Action::Bind => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    let mut o = json_answer(
        status,
        json!({"action": action.as_str(), "identity": b.identity, "role": b.role,
               "version": version}),
    );
    o.facts.detail = Some(role_detail(&b.identity, &b.role, action, version));
    o
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tower::ServiceExt as _;

    use super::*;
    use crate::http::test_support::{principal, stamped, Fixture};

    /// A dept-admin of sz-amr, which provides `hrss-legal-person` and not
    /// `hrss-population` (sz-psb's).
    const AMR_ADMIN: (&str, &str) = ("sz-amr", "admin-01");

    async fn policy_with_amr_admin(f: &Fixture) -> Arc<PolicyService> {
        let policy = f.policy().await;
        policy
            .store
            .bind_role_by("urn:tongban:sz-amr:admin-01", DEPT_ADMIN, "test")
            .await
            .unwrap();
        policy.refresh().await.unwrap();
        policy
    }

    async fn call(policy: &Arc<PolicyService>, method: Method, path: &str, body: &str) -> Outcome {
        let mut req = stamped(method, path, false, body.to_owned());
        req.extensions_mut().insert(principal(AMR_ADMIN));
        agreements_service(
            Arc::clone(policy),
            crate::http::test_support::body_limits(4096),
        )
        .oneshot(req)
        .await
        .unwrap()
    }

    fn slug(o: &Outcome) -> &'static str {
        o.result.as_ref().err().map(ApiError::slug).unwrap_or("ok")
    }

    #[tokio::test]
    async fn another_departments_agreement_cannot_be_told_from_a_missing_one() {
        let f = Fixture::new().await;
        let policy = policy_with_amr_admin(&f).await;
        let own = call(
            &policy,
            Method::GET,
            "/admin/v1/agreements/hrss-legal-person",
            "",
        )
        .await;
        assert_eq!(own.status(), StatusCode::OK);
        for method in [Method::GET, Method::DELETE] {
            for id in ["hrss-population", "no-such-agreement"] {
                let o = call(&policy, method.clone(), &format!("{AGREEMENTS}/{id}"), "").await;
                assert_eq!(
                    (o.status(), slug(&o)),
                    (StatusCode::NOT_FOUND, "no-such-agreement"),
                    "{method} {id}"
                );
                let existing = id == "hrss-population";
                assert_eq!(
                    o.facts.decision == Some(Decision::Deny),
                    existing,
                    "the record tells a probe from a miss: {method} {id}"
                );
                if existing {
                    let of = o.facts.detail.as_ref().map(|d| d["agreement_of"].clone());
                    assert_eq!(of, Some(json!("sz-psb")), "{method}");
                }
                let detail = o.result.unwrap_err().to_string();
                assert!(!detail.contains("sz-psb"), "{detail}");
            }
        }
        // Writing over its id is refused as for any taken id, naming no one.
        let over = json!({
            "id": "hrss-population", "provider": "sz-amr", "dataset": "legal_person",
            "consumer": "urn:tongban:sz-hrss:counter-01", "matters": ["company-opening"],
            "fields": {"name": "full"},
            "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2099-12-31T23:59:59Z",
        });
        let o = call(
            &policy,
            Method::PUT,
            "/admin/v1/agreements/hrss-population",
            &over.to_string(),
        )
        .await;
        assert_eq!(
            (o.status(), slug(&o)),
            (StatusCode::CONFLICT, "agreement-exists")
        );
        let kept = policy.store.get("hrss-population").await.unwrap().unwrap();
        assert_eq!(kept.agreement.provider, "sz-psb", "untouched");
    }
}
