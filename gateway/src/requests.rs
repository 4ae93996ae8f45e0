//! Access requests and their review: the one path the admin API
//! (`/admin/v1/requests…`), `tongban request …` and the demo take.
//!
//! ```text
//!  consumer's dept-admin ── file ──▶ submitted ──▶ (open fields only, dataset in
//!                                        │          [requests] auto_approve_open:
//!                                        │          approved at once by the rule)
//!  provider's dept-admin ── approve ─────┼──▶ approved: checked_grant + one transaction
//!                           (narrowed)   │     writing the agreement and the request
//!                        ── refuse ──────┼──▶ refused (reason)
//!  consumer's dept-admin ── withdraw ────┼──▶ withdrawn
//!  validity asked has ended, unreviewed ─┴──▶ expired
//! ```
//!
//! Approval grants through [`crate::agreements::checked_grant`], the check the
//! admin API's agreement writes take, with the reviewer's certificate identity as
//! approver, and the store writes the agreement through the same versioned edit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use policy::{
    AccessRequest, Agreement, Applied, Edit, FieldRule, Narrowing, PolicyError, RequestEvent,
    RequestFilter, RequestRefusal, RequestState, RequestTerms, SharingClass, WorkingDays,
};
use serde_json::{json, Value};

use crate::agreements::{
    change_detail, checked_grant, owner_guard, ChangeAudit, ChangeRecord, Grantor, ManageError,
};
use crate::config::{Config, RequestsConfig};
use crate::error::ApiError;
use crate::policy_sync::PolicyService;

/// Who acts on a request as the approver of auto-approved requests.
pub const AUTO_APPROVER: &str = "system:auto-approve-open";
/// Who expires requests whose asked validity ended unreviewed.
pub const EXPIRER: &str = "system:validity-ended";

/// Who acts: an identity and its department, or the operator (the CLI), who may act
/// for any department.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Identity URI, `cli:<name>` or `system:<rule>`.
    pub uri: String,
    /// Its department; `None` for the operator.
    pub department: Option<String>,
}

impl Actor {
    /// A dept-admin, as its certificate names it.
    pub fn admin(uri: &str, department: &str) -> Self {
        Self {
            uri: uri.to_owned(),
            department: Some(department.to_owned()),
        }
    }

    /// The operator, as `cli:<name>`.
    pub fn operator(name: &str) -> Self {
        Self {
            uri: format!("cli:{name}"),
            department: None,
        }
    }

    fn is_of(&self, department: &str) -> bool {
        self.department.as_deref().is_none_or(|d| d == department)
    }
}

/// An approval: the request after, and the agreement change it made (`None` when the
/// agreement renewed already said exactly that).
#[derive(Debug, Clone)]
pub struct Approval {
    /// The request, approved.
    pub request: AccessRequest,
    /// The agreement's change.
    pub applied: Option<Applied>,
}

/// A filing: the request, and its approval when a rule approved it at once.
#[derive(Debug, Clone)]
pub struct Filed {
    /// The request as filed (or as approved).
    pub request: AccessRequest,
    /// The automatic approval, if any.
    pub approval: Option<Approval>,
}

/// Access requests over the gateway's policy: filing, review, lists, the overdue
/// count per provider.
pub struct Requests {
    /// The store, authorizer and catalogue agreements are granted through.
    pub policy: Arc<PolicyService>,
    config: RequestsConfig,
    calendar: WorkingDays,
    overdue: Arc<Mutex<Vec<(String, i64)>>>,
}

impl Requests {
    /// Requests under `config`'s `[requests]`, over `policy`.
    pub fn new(policy: Arc<PolicyService>, config: &Config) -> Self {
        Self {
            policy,
            calendar: WorkingDays {
                holidays: config.requests.holidays.clone(),
                working_weekends: config.requests.working_weekends.clone(),
                time_zone: config.policy.time_zone,
            },
            config: config.requests.clone(),
            overdue: Arc::default(),
        }
    }

    /// The overdue counts per provider as last computed, for the metrics gauge.
    pub fn overdue_gauge(&self) -> Arc<Mutex<Vec<(String, i64)>>> {
        Arc::clone(&self.overdue)
    }

    /// Count the overdue requests per provider now (what `/metrics` shows).
    pub async fn refresh_overdue(&self) -> Result<(), ApiError> {
        let counts = self
            .policy
            .store
            .overdue_requests(Utc::now())
            .await
            .map_err(policy_error)?;
        if let Ok(mut g) = self.overdue.lock() {
            *g = counts;
        }
        Ok(())
    }

    /// File a request as `actor`; approved at once when it asks only for `open`
    /// fields of a dataset in `[requests] auto_approve_open`.
    pub async fn file(&self, actor: &Actor, terms: RequestTerms) -> Result<Filed, ApiError> {
        let now = Utc::now();
        // Permission first: another department learns nothing about why its request
        // would have been bad.
        if let Some(department) = terms.consumer_department() {
            if !actor.is_of(&department) {
                return Err(not_permitted(format!(
                    "{} files requests for its own department's systems only; {} is of {department}",
                    actor.uri, terms.consumer
                )));
            }
        }
        terms.validate(now).map_err(policy_error)?;
        let consumer_department = terms
            .consumer_department()
            .ok_or_else(|| invalid("consumer", "not an identity".into()))?;
        let provider = self.check_terms(&terms).await?;
        let request = AccessRequest {
            id: uuid::Uuid::now_v7().to_string(),
            state: RequestState::Submitted,
            provider,
            consumer_department,
            requester: actor.uri.clone(),
            review_by: self.calendar.deadline(now, self.config.review_working_days),
            submitted_at: now,
            terms,
            decided_at: None,
            decided_by: None,
            reason: None,
            agreement: None,
        };
        self.policy
            .store
            .file_request(&request, &actor.uri)
            .await
            .map_err(policy_error)?;
        let approval = if self.auto_approves(&request) {
            let system = Actor::admin(AUTO_APPROVER, &request.provider);
            match self
                .approve(&system, &request.id, &Narrowing::default())
                .await
            {
                Ok(a) => Some(a),
                Err(e) => {
                    // The request stays submitted for a person to review.
                    tracing::warn!(request = %request.id, error = %e, "automatic approval failed; the request waits for review");
                    None
                }
            }
        } else {
            None
        };
        self.refresh_overdue().await?;
        let request = match &approval {
            Some(a) => a.request.clone(),
            None => request,
        };
        Ok(Filed { request, approval })
    }

    /// What filing checks against the world: the dataset is served (its provider is
    /// returned), fields and matters exist, no field is closed, and a renewal names
    /// an agreement of the same consumer and dataset.
    async fn check_terms(&self, t: &RequestTerms) -> Result<String, ApiError> {
        let catalogue = &self.policy.catalogue;
        let provider = catalogue.provider_of(&t.dataset).ok_or_else(|| {
            invalid(
                "dataset",
                format!("{:?} is not a dataset this gateway serves", t.dataset),
            )
        })?;
        // The agreement it would become, checked as every agreement is.
        let draft = Agreement {
            id: "draft".into(),
            provider: provider.to_owned(),
            consumer: t.consumer.clone(),
            dataset: t.dataset.clone(),
            matters: t.matters.clone(),
            valid_from: t.valid_from,
            valid_until: t.valid_until,
            hours: None,
            days: None,
            daily_quota: t.daily_quota,
            operator_rate: None,
            approver: "draft".into(),
            effect: policy::Effect::Allow,
            request: None,
            fields: t.fields.clone(),
        };
        crate::agreements::check(&draft, catalogue).map_err(policy_error)?;
        if let Some(id) = &t.renews {
            let renewed = self.policy.store.get(id).await.map_err(policy_error)?;
            let fits = renewed.as_ref().is_some_and(|s| {
                s.agreement.consumer == t.consumer && s.agreement.dataset == t.dataset
            });
            if !fits {
                return Err(invalid(
                    "renews",
                    format!("no agreement {id} grants {} to {}", t.dataset, t.consumer),
                ));
            }
        }
        Ok(provider.to_owned())
    }

    fn auto_approves(&self, r: &AccessRequest) -> bool {
        self.config.auto_approve_open.contains(&r.terms.dataset)
            && r.terms.fields.keys().all(|f| {
                self.policy.catalogue.class_of(&r.terms.dataset, f) == Some(SharingClass::Open)
            })
    }

    /// Approve request `id` as `actor`, narrowed by `narrowing`: the agreement it
    /// grants (or the one it renews, replaced) is checked as every grant is and
    /// written with the request's new state in one transaction.
    pub async fn approve(
        &self,
        actor: &Actor,
        id: &str,
        narrowing: &Narrowing,
    ) -> Result<Approval, ApiError> {
        let r = self.pending(id).await?;
        if !actor.is_of(&r.provider) {
            return Err(self.not_reviewer(actor, &r));
        }
        let mut grant = r.grant(narrowing, &actor.uri).map_err(policy_error)?;
        let edit = match &r.terms.renews {
            None => Edit::Create(grant),
            Some(renewed) => {
                // Hours, days and the operator rate are the provider's terms, kept.
                if let Some(old) = self.policy.store.get(renewed).await.map_err(policy_error)? {
                    grant.hours = old.agreement.hours;
                    grant.days = old.agreement.days;
                    grant.operator_rate = old.agreement.operator_rate;
                }
                Edit::Update(grant)
            }
        };
        let edit = match edit {
            Edit::Create(a) => Edit::Create(self.checked(&r, a)?),
            Edit::Update(a) => Edit::Update(self.checked(&r, a)?),
            other => other,
        };
        let guard = owner_guard(r.provider.clone(), false);
        let (request, applied) = self
            .policy
            .store
            .approve_request(id, &actor.uri, edit, guard)
            .await
            .map_err(policy_error)?;
        // This gateway obeys the agreement before answering; others follow.
        if let Err(e) = self.policy.refresh().await {
            tracing::warn!(error = %e, "applying an approved agreement locally failed; the sync task retries");
        }
        self.refresh_overdue().await?;
        Ok(Approval { request, applied })
    }

    fn checked(&self, r: &AccessRequest, a: Agreement) -> Result<Agreement, ApiError> {
        let approver = a.approver.clone();
        let who = Grantor {
            uri: &approver,
            department: &r.provider,
        };
        checked_grant(&self.policy.catalogue, &who, a).map_err(policy_error)
    }

    /// Refuse request `id` as `actor`, saying why.
    pub async fn refuse(
        &self,
        actor: &Actor,
        id: &str,
        reason: &str,
    ) -> Result<AccessRequest, ApiError> {
        if reason.trim().is_empty() || reason.chars().count() > policy::MAX_REQUEST_TEXT {
            return Err(invalid(
                "reason",
                format!(
                    "say why the request is refused (1-{} characters)",
                    policy::MAX_REQUEST_TEXT
                ),
            ));
        }
        let r = self.pending(id).await?;
        if !actor.is_of(&r.provider) {
            return Err(self.not_reviewer(actor, &r));
        }
        let reason = reason.to_owned();
        self.decided(id, RequestState::Refused, "refuse", actor, Some(reason))
            .await
    }

    /// Withdraw request `id` as `actor` (of the requesting department), optionally
    /// saying why.
    pub async fn withdraw(
        &self,
        actor: &Actor,
        id: &str,
        reason: Option<String>,
    ) -> Result<AccessRequest, ApiError> {
        if reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > policy::MAX_REQUEST_TEXT)
        {
            return Err(invalid(
                "reason",
                format!("at most {} characters", policy::MAX_REQUEST_TEXT),
            ));
        }
        let r = self.pending(id).await?;
        if !actor.is_of(&r.consumer_department) {
            return Err(not_permitted(format!(
                "{} may not withdraw a request of {}: only its dept-admins may",
                actor.uri, r.consumer_department
            )));
        }
        self.decided(id, RequestState::Withdrawn, "withdraw", actor, reason)
            .await
    }

    async fn decided(
        &self,
        id: &str,
        to: RequestState,
        action: &str,
        actor: &Actor,
        reason: Option<String>,
    ) -> Result<AccessRequest, ApiError> {
        let r = self
            .policy
            .store
            .decide_request(id, to, action, &actor.uri, |r| r.reason = reason)
            .await
            .map_err(policy_error)?;
        self.refresh_overdue().await?;
        Ok(r)
    }

    /// Request `id`, expired first if its asked validity has ended; 404 when there
    /// is none.
    pub async fn pending(&self, id: &str) -> Result<AccessRequest, ApiError> {
        self.expire_lapsed().await?;
        self.policy
            .store
            .request(id)
            .await
            .map_err(policy_error)?
            .ok_or_else(|| ApiError::Request(RequestRefusal::Missing(id.to_owned())))
    }

    fn not_reviewer(&self, actor: &Actor, r: &AccessRequest) -> ApiError {
        not_permitted(format!(
            "{} may not review a request to {}: only {}'s dept-admins review requests for {}",
            actor.uri, r.provider, r.provider, r.terms.dataset
        ))
    }

    /// Move every submitted request whose asked validity has ended to `expired`.
    pub async fn expire_lapsed(&self) -> Result<Vec<AccessRequest>, ApiError> {
        let store = &self.policy.store;
        let ids = store
            .lapsed_requests(Utc::now())
            .await
            .map_err(policy_error)?;
        let mut expired = Vec::new();
        for id in ids {
            match store
                .decide_request(&id, RequestState::Expired, "expire", EXPIRER, |_| {})
                .await
            {
                Ok(r) => expired.push(r),
                // Decided meanwhile, by a reviewer or another gateway: nothing to do.
                Err(PolicyError::Request(_)) => {}
                Err(e) => return Err(policy_error(e)),
            }
        }
        Ok(expired)
    }

    /// The requests `actor` is a party to (all, for the operator) that `filter`
    /// picks; `overdue` keeps only overdue (or only not overdue) ones.
    pub async fn list(
        &self,
        actor: &Actor,
        mut filter: RequestFilter,
        overdue: Option<bool>,
    ) -> Result<Vec<AccessRequest>, ApiError> {
        self.expire_lapsed().await?;
        filter.party = actor.department.clone();
        let now = Utc::now();
        let all = self
            .policy
            .store
            .requests(&filter)
            .await
            .map_err(policy_error)?;
        self.refresh_overdue().await?;
        Ok(all
            .into_iter()
            .filter(|r| overdue.is_none_or(|o| r.overdue(now) == o))
            .collect())
    }

    /// One request `actor` is a party to, with its history; another department's is
    /// not there for it.
    pub async fn show(
        &self,
        actor: &Actor,
        id: &str,
    ) -> Result<(AccessRequest, Vec<RequestEvent>), ApiError> {
        let r = self.pending(id).await?;
        if !(actor.is_of(&r.provider) || actor.is_of(&r.consumer_department)) {
            return Err(ApiError::Request(RequestRefusal::Missing(id.to_owned())));
        }
        let history = self
            .policy
            .store
            .request_history(id)
            .await
            .map_err(policy_error)?;
        Ok((r, history))
    }
}

/// Append a step taken outside HTTP (the CLI, the demo) to the audit chain, as
/// `tongban policy` changes are: the transition, and an approval's agreement change.
pub async fn record_step(
    audit: &ChangeAudit<'_>,
    actor: &str,
    action: &str,
    r: &AccessRequest,
    applied: Option<&Applied>,
) -> Result<(), ManageError> {
    let mut detail = match (applied, &r.agreement) {
        (Some(a), Some(id)) => change_detail(id, a),
        _ => json!({}),
    };
    detail["access_request"] = json!({
        "action": action, "id": r.id, "state": r.state, "provider": r.provider,
        "consumer_department": r.consumer_department, "agreement": r.agreement,
    });
    let command = format!("tongban request {action}");
    let change = ChangeRecord {
        command: &command,
        version: applied.map_or(0, |a| a.version),
        agreement: r.agreement.as_deref(),
        dataset: Some(r.terms.dataset.clone()),
        detail,
    };
    audit.record(actor, change).await.map(|_| ())
}

/// A request as the API and `--format json` show it: as kept, with `overdue`.
pub fn request_json(r: &AccessRequest, now: DateTime<Utc>) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut v {
        o.insert("overdue".into(), Value::Bool(r.overdue(now)));
    }
    v
}

/// A history entry as shown: who, when, the state before → after, and the request
/// before and after.
pub fn event_json(e: &RequestEvent) -> Value {
    let state = |v: &Option<Value>| v.as_ref().map(|v| v["state"].clone());
    json!({
        "seq": e.seq, "action": e.action, "actor": e.actor, "at": e.at,
        "from": state(&e.before), "to": state(&e.after),
        "before": e.before, "after": e.after,
    })
}

/// Parse `name=full|masked` pairs (the CLI's `--field`).
pub fn field_rules(pairs: &[String]) -> Result<BTreeMap<String, FieldRule>, ApiError> {
    pairs
        .iter()
        .map(|p| {
            let (name, rule) = p.split_once('=').unwrap_or((p.as_str(), "full"));
            let rule = match rule {
                "full" => FieldRule::Full,
                "masked" => FieldRule::Masked,
                other => {
                    return Err(invalid(
                        &format!("fields.{name}"),
                        format!("{other:?} is neither full nor masked"),
                    ))
                }
            };
            Ok((name.to_owned(), rule))
        })
        .collect()
}

fn invalid(field: &str, message: String) -> ApiError {
    ApiError::Invalid {
        field: field.to_owned(),
        message,
    }
}

fn not_permitted(why: String) -> ApiError {
    ApiError::Refused(policy::Refusal::NotPermitted(why))
}

/// The one mapping of policy errors to request answers: a bad field names it, a
/// refusal keeps its status, a store failure is internal.
pub fn policy_error(e: PolicyError) -> ApiError {
    match e {
        PolicyError::BadRequest { field, message }
        | PolicyError::Invalid { field, message, .. } => ApiError::Invalid { field, message },
        PolicyError::Request(r) => ApiError::Request(r),
        PolicyError::Refused(r) => ApiError::Refused(r),
        e => ApiError::Internal(e.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cli_field_rules() {
        let rules = field_rules(&["name".into(), "household_address=masked".into()]).unwrap();
        assert_eq!(rules["name"], FieldRule::Full);
        assert_eq!(rules["household_address"], FieldRule::Masked);
        match field_rules(&["name=blurred".into()]) {
            Err(ApiError::Invalid { field, .. }) => assert_eq!(field, "fields.name"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn operators_act_for_every_department_admins_for_their_own() {
        let op = Actor::operator("ops");
        assert_eq!(op.uri, "cli:ops");
        assert!(op.is_of("sz-psb"));
        let a = Actor::admin("urn:tongban:sz-psb:admin-01", "sz-psb");
        assert!(a.is_of("sz-psb") && !a.is_of("sz-hf"));
    }
}
