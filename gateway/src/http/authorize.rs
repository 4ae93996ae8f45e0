//! Authorize: the sharing agreement decides (default deny), then the allowing
//! agreement's daily quota and the operator's rate are charged.

use std::sync::Arc;
use std::task::{Context, Poll};

use policy::{Decision as Verdict, Grant, Question};
use tower::{Layer, Service};
use tracing::Instrument as _;

use super::lookup::LookupCall;
use super::{take_ready, BoxFuture, Outcome};
use crate::audit::Decision;
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
