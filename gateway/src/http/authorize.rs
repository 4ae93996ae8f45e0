//! Authorize: the sharing agreement decides (default deny).

use std::sync::Arc;
use std::task::{Context, Poll};

use policy::{Authorizer, Decision as Verdict, Grant, Question};
use tower::{Layer, Service};
use tracing::Instrument as _;

use super::parse::LookupCall;
use super::{take_ready, BoxFuture, Outcome};
use crate::audit::Decision;
use crate::error::ApiError;

/// A lookup that an agreement allows, with the fields it may return.
#[derive(Debug, Clone)]
pub struct Authorized {
    /// The validated call.
    pub call: LookupCall,
    /// Agreement and fields.
    pub grant: Grant,
}

/// Asks the [`Authorizer`] about every lookup; refuses with 403 and the reason.
#[derive(Clone)]
pub struct AuthorizeLayer {
    authorizer: Arc<Authorizer>,
}

impl AuthorizeLayer {
    /// Decide with `authorizer`.
    pub fn new(authorizer: Arc<Authorizer>) -> Self {
        Self { authorizer }
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            authorizer: Arc::clone(&self.authorizer),
        }
    }
}

/// See [`AuthorizeLayer`].
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    authorizer: Arc<Authorizer>,
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
        let verdict = tracing::info_span!("policy", dataset = %call.dataset).in_scope(|| {
            self.authorizer.decide(&Question {
                consumer: call.principal.identity.as_uri(),
                dataset: call.dataset.as_str(),
                matter: &call.matter,
                fields: call.fields.as_deref(),
                at: call.meta.received_at,
            })
        });
        match verdict {
            Ok(Verdict::Allow(grant)) => {
                let mut inner = take_ready(&mut self.inner);
                Box::pin(
                    async move { inner.call(Authorized { call, grant }).await }.in_current_span(),
                )
            }
            Ok(Verdict::Deny(denial)) => {
                let mut o = Outcome::error(ApiError::Forbidden(denial.clone()));
                o.facts.decision = Some(Decision::Deny);
                o.facts.agreement = match &denial {
                    policy::Denial::ExplicitDeny { agreement }
                    | policy::Denial::NotInForce { agreement }
                    | policy::Denial::FieldNotAllowed { agreement, .. } => Some(agreement.clone()),
                    _ => None,
                };
                Box::pin(std::future::ready(Ok(o)))
            }
            Err(e) => {
                let o = Outcome::error(ApiError::Internal(format!("policy engine: {e}")));
                Box::pin(std::future::ready(Ok(o)))
            }
        }
    }
}
