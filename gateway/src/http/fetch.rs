//! Fetch: read the record from the owning department's source through its resilience
//! layers, check an e-licence's issuer signature on the record as the source gave it,
//! then keep only the granted fields and mask what the agreement says to mask.
//!
//! The innermost service of the lookup path (see [`super::lookup`]), which the
//! lookup endpoint and every bundle item go through.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use audit::Decision;
use connectors::{Dataset, Key, Query, Record, Verification};
use policy::{mask_value, FieldRule, Grant};
use serde_json::{json, Value};
use tower::Service;
use tracing::Instrument as _;

use super::authorize::Authorized;
use super::{Answer, BoxFuture, LookupAnswer, Outcome};
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
    let dataset = query.dataset.clone();
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
    let called = std::time::Instant::now();
    let answered = route.source.call(query).instrument(span).await;
    // What usage reports give as source latency and availability.
    outcome.facts.source_us = Some(u64::try_from(called.elapsed().as_micros()).unwrap_or(u64::MAX));
    let record = match answered {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http::StatusCode;
    use policy::FieldGrant;
    use tower::ServiceExt as _;

    use super::*;
    use crate::http::test_support::{asked, lookup_call, Fixture, COUNTER};

    use FieldRule::{Full, Masked};

    /// A dataset and a subject of it.
    type Subject<'a> = (&'a str, &'a str);

    /// `subject` fetched under a grant of `fields` by the fixture's
    /// population agreement.
    async fn fetched(f: &Fixture, subject: Subject<'_>, fields: &[(&str, FieldRule)]) -> Outcome {
        let grant = Grant {
            agreement: "hrss-population".into(),
            provider: "sz-psb".into(),
            fields: fields
                .iter()
                .map(|&(name, rule)| FieldGrant {
                    name: name.to_owned(),
                    rule,
                })
                .collect(),
            limits: Default::default(),
        };
        let call = lookup_call(COUNTER, asked(subject.0, subject.1));
        Fetch::new(f.routes().await)
            .oneshot(Authorized { call, grant })
            .await
            .unwrap()
    }

    fn record(o: &Outcome) -> &LookupAnswer {
        match &o.result {
            Ok(Answer::Lookup(l)) => l,
            other => panic!("{other:?}"),
        }
    }

    /// Whatever the source said, the access was allowed, under that agreement.
    fn assert_allowed(o: &Outcome) {
        assert_eq!(o.facts.decision, Some(Decision::Allow));
        assert_eq!(o.facts.agreement.as_deref(), Some("hrss-population"));
    }

    #[tokio::test]
    async fn a_record_keeps_only_the_granted_fields_masked_as_granted() {
        let f = Fixture::new().await;
        let resident = ("population", &*f.samples.residents[0]);
        let full = fetched(&f, resident, &[("household_address", Full)]).await;
        let address = record(&full).record["household_address"].clone();
        assert!(address.as_str().is_some_and(|a| !a.is_empty()), "{address}");

        let o = fetched(
            &f,
            resident,
            &[("name", Full), ("household_address", Masked)],
        )
        .await;
        let l = record(&o);
        let keys: Vec<&str> = l.record.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert!(keys.contains(&"name") && keys.contains(&"household_address"));
        assert_eq!(l.record["household_address"], mask_value(&address));
        assert_ne!(l.record["household_address"], address);
        assert_eq!(l.masked, vec!["household_address".to_owned()]);
        assert_eq!((&*l.department, &*l.connector), ("sz-psb", "population-db"));
        assert_eq!(l.subject, resident.1);
        assert_eq!(l.agreement, "hrss-population");
        assert_allowed(&o);
        assert_eq!(o.facts.fields, vec!["name", "household_address"]);
    }

    #[tokio::test]
    async fn an_unknown_subject_is_404_and_still_an_allowed_access() {
        let f = Fixture::new().await;
        let absent = ("population", &*f.samples.absent_resident);
        let o = fetched(&f, absent, &[("name", Full)]).await;
        assert!(
            matches!(o.result, Err(ApiError::NotFound { .. })),
            "{:?}",
            o.result
        );
        assert_eq!(o.status(), StatusCode::NOT_FOUND);
        assert_allowed(&o);
        assert!(o.facts.fields.is_empty(), "nothing was returned");
        assert!(o.facts.source_us.is_some(), "the source was asked");
    }

    #[tokio::test]
    async fn a_dataset_without_a_source_here_is_not_served() {
        let f = Fixture::new().await;
        let licence = ("e_license", &*f.samples.license_ids[0]);
        let o = fetched(&f, licence, &[("status", Full)]).await;
        let Err(e @ ApiError::NotServed(_)) = &o.result else {
            panic!("{:?}", o.result)
        };
        assert_eq!(e.slug(), "dataset-not-served");
        assert_allowed(&o);
        assert_eq!(o.facts.source_us, None, "no source was asked");
    }
}
