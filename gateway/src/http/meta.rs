//! The first layer: a request id, the clock, and the request span.

use std::task::{Context, Poll};
use std::time::Instant;

use chrono::{DateTime, Utc};
use http::Request;
use tower::{Layer, Service};
use tracing::Instrument as _;

use super::{take_ready, BoxFuture};

/// Set on every request by [`MetaLayer`].
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// UUID v7, returned to the caller and written to the audit log.
    pub id: String,
    /// When the request was received, for latency.
    pub started: Instant,
    /// Wall-clock receipt time.
    pub received_at: DateTime<Utc>,
}

/// Stamps each request with a [`RequestMeta`] and runs it in a `request` span.
#[derive(Debug, Clone, Default)]
pub struct MetaLayer;

impl<S> Layer<S> for MetaLayer {
    type Service = Meta<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Meta { inner }
    }
}

/// See [`MetaLayer`].
#[derive(Debug, Clone)]
pub struct Meta<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for Meta<S>
where
    S: Service<Request<B>, Response = R, Error = std::convert::Infallible> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    R: 'static,
{
    type Response = R;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let meta = RequestMeta {
            id: uuid::Uuid::now_v7().to_string(),
            started: Instant::now(),
            received_at: Utc::now(),
        };
        let span = tracing::info_span!(
            "request",
            request_id = %meta.id,
            method = %req.method(),
            path = %req.uri().path(),
        );
        req.extensions_mut().insert(meta);
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move { inner.call(req).await }.instrument(span))
    }
}
