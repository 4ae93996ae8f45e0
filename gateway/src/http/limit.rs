//! Limit: a bound on requests in flight across all connections. Beyond it a request
//! is answered 503 at once rather than queued, and — being an outcome — audited.

use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tower::{Layer, Service};

use super::{take_ready, BoxFuture, Outcome};
use crate::error::ApiError;

/// Sheds requests beyond the permits of a shared semaphore.
#[derive(Clone)]
pub struct ShedLayer {
    permits: Arc<Semaphore>,
}

impl ShedLayer {
    /// Share `permits` across every connection's stack.
    pub fn new(permits: Arc<Semaphore>) -> Self {
        Self { permits }
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Shed {
            inner,
            permits: Arc::clone(&self.permits),
        }
    }
}

/// See [`ShedLayer`].
#[derive(Clone)]
pub struct Shed<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S, R> Service<R> for Shed<S>
where
    S: Service<R, Response = Outcome, Error = std::convert::Infallible> + Clone + Send + 'static,
    S::Future: Send,
    R: Send + 'static,
{
    type Response = Outcome;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Outcome>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            return Box::pin(std::future::ready(Ok(Outcome::error(ApiError::Overloaded))));
        };
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move {
            let outcome = inner.call(req).await;
            drop(permit);
            outcome
        })
    }
}
