//! `GET /admin/v1/usage?from=&to=`: usage and evaluation figures computed from the
//! audit records ([`audit::usage_report`]), per agreement, consumer, provider and
//! matter, by day — what `tongban report usage --format json` prints.
//!
//! Who sees what: an `auditor` sees every access; a `dept-admin` sees its own
//! department's use (its systems as consumers) and the use of the datasets its
//! department provides, nothing of other departments' use of other datasets. Any
//! other caller is refused (403), audited like every request.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use audit::{usage_report, AuditStore, Decision, Filter, Scope, UsageQuery};
use http::{Request, StatusCode};
use policy::Authorizer;
use serde_json::{json, Value};
use tower::util::BoxCloneSyncService;

use super::admin::{AUDITOR, DEPT_ADMIN};
use super::route::RouteService;
use super::{Answer, Outcome, Principal};
use crate::config::Config;
use crate::error::ApiError;

/// The usage endpoint.
pub const USAGE: &str = "/admin/v1/usage";

/// The usage service over `store`; `providers` maps each dataset to the department
/// providing it.
pub fn usage_service<B: Send + 'static>(
    store: AuditStore,
    authorizer: Arc<Authorizer>,
    providers: Arc<HashMap<String, String>>,
) -> RouteService<B> {
    BoxCloneSyncService::new(tower::service_fn(move |req: Request<B>| {
        let (store, authorizer, providers) = (
            store.clone(),
            Arc::clone(&authorizer),
            Arc::clone(&providers),
        );
        let principal = req.extensions().get::<Principal>().cloned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        async move {
            let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            let o = answer(&store, &authorizer, &providers, principal.as_ref(), &params).await;
            Ok::<_, Infallible>(o)
        }
    }))
}

/// `GET /admin/v1/usage` for `principal` with the query `params`: the report in the
/// caller's scope, or its refusal, the query in the record's `detail`. The
/// console's usage page calls this too.
pub(crate) async fn answer(
    store: &AuditStore,
    authorizer: &Authorizer,
    providers: &HashMap<String, String>,
    principal: Option<&Principal>,
    params: &[(String, String)],
) -> Outcome {
    let asked: serde_json::Map<String, Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.chars().take(64).collect())))
        .collect();
    let mut o = match scope(authorizer, principal) {
        None => {
            let mut o = Outcome::error(ApiError::RoleRequired(DEPT_ADMIN));
            o.facts.decision = Some(Decision::Deny);
            o
        }
        Some(scope) => usage(store, providers, scope, params).await,
    };
    o.facts.merge_detail(json!({"usage_query": asked}));
    o
}

/// Dataset → the department providing it, from the config: records name the
/// dataset, and usage is grouped by its provider.
pub fn providers(config: &Config) -> HashMap<String, String> {
    config
        .datasets
        .iter()
        .map(|d| (d.dataset.to_string(), d.department.clone()))
        .collect()
}

/// What the caller may see: everything for an auditor, its department for a
/// dept-admin, nothing otherwise.
fn scope(authorizer: &Authorizer, principal: Option<&Principal>) -> Option<Scope> {
    let p = principal?;
    let uri = p.identity.as_uri();
    if authorizer.has_role(uri, AUDITOR) {
        Some(Scope::All)
    } else if authorizer.has_role(uri, DEPT_ADMIN) {
        Some(Scope::Department(p.identity.department().to_owned()))
    } else {
        None
    }
}

/// The range of `params` (`from`, `to`; nothing else is taken).
pub fn range(params: &[(String, String)]) -> Result<Filter, String> {
    let mut f = Filter::default();
    for (k, v) in params {
        match k.as_str() {
            "from" | "to" => f.set(k, v)?,
            other => {
                return Err(format!(
                    "{}: unknown parameter (this endpoint takes from, to)",
                    other.chars().take(64).collect::<String>()
                ))
            }
        }
    }
    Ok(f)
}

async fn usage(
    store: &AuditStore,
    providers: &HashMap<String, String>,
    scope: Scope,
    params: &[(String, String)],
) -> Outcome {
    let range = match range(params) {
        Ok(r) => r,
        Err(e) => return Outcome::error(ApiError::BadRequest(e)),
    };
    let query = UsageQuery {
        range,
        scope,
        providers: providers.clone(),
    };
    match usage_report(store, &query).await {
        Ok(report) => {
            let body = serde_json::to_value(&report).unwrap_or(Value::Null);
            let mut o = Outcome::answer(Answer::Json {
                status: StatusCode::OK,
                body,
            });
            o.facts.decision = Some(Decision::Allow);
            o
        }
        Err(e) => Outcome::error(ApiError::Internal(format!("usage report: {e}"))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn params(q: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }

    #[test]
    fn the_range_takes_from_and_to_only() {
        let f = range(&params("from=2026-12-01&to=2026-12-02")).unwrap();
        assert_eq!(f.from.as_deref(), Some("2026-11-30T16:00:00.000000Z"));
        assert_eq!(f.to.as_deref(), Some("2026-12-02T16:00:00.000000Z"));
        assert!(range(&params("from=yesterday"))
            .unwrap_err()
            .starts_with("from: "));
        assert!(range(&params("subject=x"))
            .unwrap_err()
            .starts_with("subject: unknown parameter"));
    }
}
