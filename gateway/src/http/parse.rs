//! Parse: turn a `/v1/lookup` HTTP request into a [`LookupRequest`] for the lookup
//! path, or refuse it with 400.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::Request;
use http_body::Body;
use tower::{Layer, Service};

use super::body::read_json;
use super::lookup::{Asked, LookupRequest};
use super::{take_ready, BoxFuture, Outcome, Principal, RequestMeta};
use crate::error::ApiError;

/// The header naming the clerk at the counter.
pub const OPERATOR_HEADER: &str = "x-operator-id";

/// Parses lookup requests.
#[derive(Debug, Clone)]
pub struct ParseLayer {
    max_body: usize,
}

impl ParseLayer {
    /// Accept bodies up to `max_body` bytes.
    pub fn new(max_body: usize) -> Self {
        Self { max_body }
    }
}

impl<S> Layer<S> for ParseLayer {
    type Service = Parse<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Parse {
            inner,
            max_body: self.max_body,
        }
    }
}

/// See [`ParseLayer`].
#[derive(Debug, Clone)]
pub struct Parse<S> {
    inner: S,
    max_body: usize,
}

impl<S, B> Service<Request<B>> for Parse<S>
where
    S: Service<LookupRequest, Response = Outcome, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    type Response = Outcome;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Outcome>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let max_body = self.max_body;
        Box::pin(async move {
            match parse(req, max_body).await {
                Ok(lookup) => inner.call(lookup).await,
                Err(refusal) => Ok(*refusal),
            }
        })
    }
}

async fn parse<B>(req: Request<B>, max_body: usize) -> Result<LookupRequest, Box<Outcome>>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let refuse = |e| Box::new(Outcome::error(e));
    let (parts, body) = req.into_parts();
    let (meta, principal) = caller(&parts).map_err(refuse)?;
    let asked: Asked = read_json(body, max_body, "a lookup request")
        .await
        .map_err(refuse)?;
    match operator(&parts.headers) {
        Ok(operator) => Ok(LookupRequest {
            meta,
            principal,
            operator,
            asked,
        }),
        Err(e) => Err(Box::new(asked.describe(Outcome::error(e)))),
    }
}

/// The request's envelope and caller, put there by the layers above.
pub fn caller(parts: &http::request::Parts) -> Result<(RequestMeta, Principal), ApiError> {
    let meta = parts.extensions.get::<RequestMeta>().cloned();
    let principal = parts.extensions.get::<Principal>().cloned();
    match (meta, principal) {
        (Some(meta), Some(principal)) => Ok((meta, principal)),
        _ => Err(ApiError::Internal(
            "request meta or principal missing from request".into(),
        )),
    }
}

/// The operator id: present, 1–64 visible ASCII characters.
pub fn operator(headers: &http::HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(OPERATOR_HEADER)
        .ok_or_else(|| ApiError::Operator("X-Operator-Id header is required on lookups".into()))?;
    let s = value
        .to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::Operator("X-Operator-Id must be 1-64 visible ASCII characters".into())
        })?;
    Ok(s.to_owned())
}
