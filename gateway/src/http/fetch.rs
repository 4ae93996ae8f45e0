//! Fetch: read the record from the owning department's source through its resilience
//! layers, check an e-licence's issuer signature on the record as the source gave it,
//! then keep only the granted fields and mask what the agreement says to mask.
//!
//! The innermost service of the lookup path (see [`super::lookup`]), which the
//! lookup endpoint and every bundle item go through.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use connectors::{Dataset, Key, Query, Record, Verification};
use policy::{mask_value, FieldRule, Grant};
use serde_json::{json, Value};
use tower::Service;
use tracing::Instrument as _;

use super::authorize::Authorized;
use super::{Answer, BoxFuture, LookupAnswer, Outcome};
use crate::audit::Decision;
use crate::error::ApiError;
use crate::sources::Route;

/// The innermost service: one connector call per allowed lookup.
#[derive(Clone)]
pub struct Fetch {
    routes: Arc<HashMap<Dataset, Route>>,
}

impl Fetch {
    /// Serve the datasets in `routes`.
    pub fn new(routes: Arc<HashMap<Dataset, Route>>) -> Self {
        Self { routes }
    }
}

impl Service<Authorized> for Fetch {
    type Response = Outcome;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Outcome>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, a: Authorized) -> Self::Future {
        let routes = Arc::clone(&self.routes);
        Box::pin(async move {
            let Authorized { call, grant } = a;
            Ok(fetch(&routes, &call.meta.id, call.query, grant).await)
        })
    }
}

/// Fetches `query`, which `grant` allows, and shapes the answer. The outcome carries
/// the allow decision, the agreement and, for e-licences, the verification in
/// `facts.detail`; errors keep the connector's message for the audit record.
async fn fetch(
    routes: &HashMap<Dataset, Route>,
    request_id: &str,
    query: Query,
    grant: Grant,
) -> Outcome {
    let dataset = query.dataset;
    let mut outcome = Outcome::error(ApiError::NotServed(dataset.to_string()));
    outcome.facts.agreement = Some(grant.agreement.clone());
    outcome.facts.decision = Some(Decision::Allow);
    if let Key::Holder { license_type, .. } = &query.key {
        outcome.facts.detail = Some(json!({"license_type": license_type}));
    }
    let Some(route) = routes.get(&dataset) else {
        return outcome;
    };
    let span = tracing::info_span!("connector", connector = route.source.name());
    let subject = query.key.subject().to_owned();
    let record = match route.source.call(query).instrument(span).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            outcome.result = Err(ApiError::NotFound {
                dataset: dataset.to_string(),
            });
            return outcome;
        }
        Err(e) => {
            outcome.result = Err(e.into());
            return outcome;
        }
    };
    // The signature covers the record as issued: check it before anything is
    // filtered or masked away.
    let verification = route.issuer_keys.as_ref().map(|keys| keys.verify(&record));
    if let Some(v) = &verification {
        outcome.facts.merge_detail(verification_facts(v));
    }
    let (record, masked) = filter(record, &grant.fields);
    outcome.facts.fields = grant.fields.iter().map(|f| f.name.clone()).collect();
    outcome.result = Ok(Answer::Lookup(LookupAnswer {
        request_id: request_id.to_owned(),
        dataset,
        subject,
        record,
        masked,
        department: route.department.clone(),
        connector: route.source.name().to_owned(),
        fetched_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        agreement: grant.agreement,
        verification,
    }));
    outcome
}

/// `{"verified": …, "verification_error": …}` as the answer and the audit show it.
pub fn verification_facts(v: &Verification) -> Value {
    match v.error() {
        None => json!({"verified": true}),
        Some(reason) => json!({"verified": false, "verification_error": reason}),
    }
}

/// Keep exactly the granted fields, masking those granted `masked`. A granted field
/// the source lacks is returned as null, so the answer's shape follows the agreement.
fn filter(mut source: Record, fields: &[policy::FieldGrant]) -> (Record, Vec<String>) {
    let mut out = Record::new();
    let mut masked = Vec::new();
    for f in fields {
        let value = source.remove(&f.name).unwrap_or(serde_json::Value::Null);
        let value = match f.rule {
            FieldRule::Full => value,
            FieldRule::Masked => {
                masked.push(f.name.clone());
                mask_value(&value)
            }
        };
        out.insert(f.name.clone(), value);
    }
    (out, masked)
}
