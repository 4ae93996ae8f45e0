//! Authorize: the sharing agreement decides (default deny), then the allowing
//! agreement's daily quota and the operator's rate are charged.

use std::sync::Arc;
use std::task::{Context, Poll};

use audit::Decision;
use policy::{Decision as Verdict, Grant, Question};
use tower::{Layer, Service};
use tracing::Instrument as _;

use super::lookup::LookupCall;
use super::{take_ready, BoxFuture, Outcome};
use crate::error::ApiError;
use crate::policy_sync::PolicyService;

/// A lookup that an agreement allows, with the fields it may return.
#[derive(Debug, Clone)]
pub struct Authorized {
    /// The validated call.
    pub call: LookupCall,
    /// Agreement and fields.
    pub grant: Grant,
}

/// Asks the policy about every lookup; refuses with 403 (429 for a counted limit)
/// and the reason.
#[derive(Clone)]
pub struct AuthorizeLayer {
    policy: Arc<PolicyService>,
}

impl AuthorizeLayer {
    /// Decide and count with `policy`.
    pub fn new(policy: Arc<PolicyService>) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            policy: Arc::clone(&self.policy),
        }
    }
}

/// See [`AuthorizeLayer`].
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    policy: Arc<PolicyService>,
}

impl<S> Service<LookupCall> for Authorize<S>
where
    S: Service<Authorized, Response = Outcome, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Outcome;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Outcome>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: LookupCall) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let policy = Arc::clone(&self.policy);
        let span = tracing::info_span!("policy", dataset = %call.query.dataset);
        Box::pin(
            async move {
                let verdict = policy
                    .authorize(
                        &Question {
                            consumer: call.principal.identity.as_uri(),
                            dataset: call.query.dataset.as_str(),
                            matter: &call.matter,
                            fields: call.fields.as_deref(),
                            at: call.meta.received_at,
                        },
                        &call.operator,
                    )
                    .instrument(span)
                    .await;
                match verdict {
                    Ok(Verdict::Allow(grant)) => inner.call(Authorized { call, grant }).await,
                    Ok(Verdict::Deny(denial)) => {
                        let mut o = Outcome::error(ApiError::Forbidden(denial.clone()));
                        o.facts.decision = Some(Decision::Deny);
                        o.facts.agreement = denial.agreement().map(str::to_owned);
                        Ok(o)
                    }
                    Err(e) => Ok(Outcome::error(ApiError::Internal(format!(
                        "policy engine: {e}"
                    )))),
                }
            }
            .in_current_span(),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http::StatusCode;
    use policy::{FieldGrant, FieldRule};
    use serde_json::json;
    use tower::ServiceExt as _;

    use super::*;
    use crate::http::lookup::LookupCall;
    use crate::http::test_support::{
        asked, lookup_call, recorder, Fixture, Seen, COUNTER, RESIDENT,
    };
    use crate::http::Answer;

    /// An authorize layer deciding with the fixture's policy, over a recorder that
    /// answers 200.
    async fn authorizer(
        f: &Fixture,
    ) -> (
        impl Service<LookupCall, Response = Outcome, Error = std::convert::Infallible> + Clone,
        Seen<Authorized>,
    ) {
        let (inner, seen) = recorder(|_: &Authorized| {
            Outcome::answer(Answer::Json {
                status: StatusCode::OK,
                body: json!({}),
            })
        });
        (AuthorizeLayer::new(f.policy().await).layer(inner), seen)
    }

    fn population(fields: &[&str]) -> LookupCall {
        let mut a = asked("population", RESIDENT);
        a.fields = Some(fields.iter().map(|f| (*f).to_owned()).collect());
        lookup_call(COUNTER, a)
    }

    #[tokio::test]
    async fn an_allowed_lookup_passes_with_its_grant() {
        let f = Fixture::new().await;
        let (svc, seen) = authorizer(&f).await;
        let outcome = svc
            .oneshot(population(&["name", "household_address"]))
            .await
            .unwrap();
        assert_eq!(outcome.status(), StatusCode::OK);
        let [a] = &seen.take()[..] else {
            panic!("one allowed call expected")
        };
        assert_eq!(a.grant.agreement, "hrss-population");
        assert_eq!(
            a.grant.fields,
            vec![
                FieldGrant {
                    name: "name".into(),
                    rule: FieldRule::Full
                },
                FieldGrant {
                    name: "household_address".into(),
                    rule: FieldRule::Masked
                },
            ]
        );
        assert_eq!(a.call.query.key.subject(), RESIDENT);
    }

    #[tokio::test]
    async fn a_denied_lookup_is_403_with_the_deny_decision_and_its_agreement() {
        let f = Fixture::new().await;
        let (svc, seen) = authorizer(&f).await;
        // A field the agreement does not grant: refused under that agreement.
        let o = svc
            .clone()
            .oneshot(population(&["name", "sex"]))
            .await
            .unwrap();
        let Err(ApiError::Forbidden(denial)) = &o.result else {
            panic!("{:?}", o.result)
        };
        assert_eq!(denial.code(), "field-not-allowed");
        assert_eq!(o.status(), StatusCode::FORBIDDEN);
        assert_eq!(o.facts.decision, Some(Decision::Deny));
        assert_eq!(o.facts.agreement.as_deref(), Some("hrss-population"));
        // A consumer no agreement names: refused under none.
        let other = lookup_call(("sz-civil", "counter-01"), asked("population", RESIDENT));
        let o = svc.oneshot(other).await.unwrap();
        let Err(ApiError::Forbidden(denial)) = &o.result else {
            panic!("{:?}", o.result)
        };
        assert_eq!(denial.code(), "no-agreement");
        assert_eq!(o.facts.decision, Some(Decision::Deny));
        assert_eq!(o.facts.agreement, None);
        assert!(seen.take().is_empty());
    }

    #[tokio::test]
    async fn a_used_up_quota_is_429_under_its_agreement() {
        let f = Fixture::new().await;
        let (svc, seen) = authorizer(&f).await;
        let company = || {
            let mut a = asked("legal_person", "91350100M000100Y43");
            a.matter = "company-opening".into();
            lookup_call(COUNTER, a)
        };
        // The agreement allows one a day.
        let first = svc.clone().oneshot(company()).await.unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        let second = svc.oneshot(company()).await.unwrap();
        let Err(e @ ApiError::Forbidden(denial)) = &second.result else {
            panic!("{:?}", second.result)
        };
        assert_eq!(denial.code(), "daily-quota-exhausted");
        assert_eq!(e.slug(), "limit-reached");
        assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(second.facts.decision, Some(Decision::Deny));
        assert_eq!(second.facts.agreement.as_deref(), Some("hrss-legal-person"));
        assert_eq!(seen.take().len(), 1);
    }
}
