//! Route: which endpoint a request is for. Every route answers with an [`Outcome`],
//! so unknown paths are audited like everything else.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request};
use serde_json::Value;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt as _};

use super::{Answer, BoxFuture, Outcome};
use crate::error::ApiError;

/// The lookup path.
pub const LOOKUP: &str = "/v1/lookup";
/// The signing key set.
pub const JWKS: &str = "/.well-known/jwks.json";

/// Dispatches counter API requests.
pub struct Router<B> {
    lookup: BoxCloneSyncService<Request<B>, Outcome, Infallible>,
    jwks: Arc<Value>,
}

impl<B> Router<B> {
    /// Route lookups to `lookup`, serve `jwks` as the key set.
    pub fn new(lookup: BoxCloneSyncService<Request<B>, Outcome, Infallible>, jwks: Value) -> Self {
        Self {
            lookup,
            jwks: Arc::new(jwks),
        }
    }
}

impl<B> Clone for Router<B> {
    fn clone(&self) -> Self {
        Self {
            lookup: self.lookup.clone(),
            jwks: Arc::clone(&self.jwks),
        }
    }
}

impl<B: Send + 'static> Service<Request<B>> for Router<B> {
    type Response = Outcome;
    type Error = Infallible;
    type Future = BoxFuture<Outcome>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let path = req.uri().path();
        let method = req.method();
        let answer = |r: Result<Answer, ApiError>| -> Self::Future {
            Box::pin(std::future::ready(Ok(Outcome {
                facts: Default::default(),
                result: r,
            })))
        };
        match (path, method) {
            (LOOKUP, &Method::POST) => Box::pin(self.lookup.clone().oneshot(req)),
            (JWKS, &Method::GET) => answer(Ok(Answer::Json(self.jwks.as_ref().clone()))),
            (LOOKUP, m) | (JWKS, m) => answer(Err(ApiError::Method(m.to_string()))),
            (p, _) => {
                let p: String = p.chars().take(128).collect();
                answer(Err(ApiError::NoRoute(p)))
            }
        }
    }
}
