//! Fetch: read the record from the owning department's source, keep only the granted
//! fields, mask what the agreement says to mask.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use connectors::{Connector, Dataset, Record};
use policy::{mask_value, FieldRule};
use tower::Service;
use tracing::Instrument as _;

use super::authorize::Authorized;
use super::{Answer, BoxFuture, LookupAnswer, Outcome};
use crate::audit::Decision;
use crate::error::ApiError;

/// A dataset's source and owner.
#[derive(Clone)]
pub struct Route {
    /// Owning department code.
    pub department: String,
    /// The connector serving it.
    pub connector: Arc<dyn Connector>,
}

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
        Box::pin(async move { Ok(fetch(&routes, a).await) })
    }
}

async fn fetch(routes: &HashMap<Dataset, Route>, a: Authorized) -> Outcome {
    let Authorized { call, grant } = a;
    let mut outcome = Outcome::error(ApiError::NotServed(call.dataset.to_string()));
    outcome.facts.agreement = Some(grant.agreement.clone());
    outcome.facts.decision = Some(Decision::Allow);
    let Some(route) = routes.get(&call.dataset) else {
        return outcome;
    };
    let span = tracing::info_span!("connector", connector = route.connector.name());
    let found = route
        .connector
        .lookup(call.dataset, &call.subject)
        .instrument(span)
        .await;
    let record = match found {
        Ok(Some(r)) => r,
        Ok(None) => {
            outcome.result = Err(ApiError::NotFound {
                dataset: call.dataset.to_string(),
            });
            return outcome;
        }
        Err(e) => {
            outcome.result = Err(e.into());
            return outcome;
        }
    };
    let (record, masked) = filter(record, &grant.fields);
    outcome.facts.fields = grant.fields.iter().map(|f| f.name.clone()).collect();
    outcome.result = Ok(Answer::Lookup(LookupAnswer {
        request_id: call.meta.id.clone(),
        dataset: call.dataset,
        subject: call.subject,
        record,
        masked,
        department: route.department.clone(),
        connector: route.connector.name().to_owned(),
        fetched_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        agreement: grant.agreement,
    }));
    outcome
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
