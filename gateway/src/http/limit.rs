//! Limit: bounds on requests in flight, per client identity and across all
//! connections. Beyond them a request is answered at once rather than queued (429 for
//! an identity over its share, 503 for the gateway), and — being an outcome —
//! audited.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use tokio::sync::Semaphore;
use tower::{Layer, Service};

use super::identity::Principal;
use super::{take_ready, BoxFuture, Outcome};
use crate::error::ApiError;
use crate::shares::Shares;

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

/// Holds each request to its identity's share of requests in flight, so that one
/// client cannot take the gateway-wide permits the others need. On a connection
/// that is itself beyond its identity's share of connections, every request is
/// refused.
#[derive(Clone)]
pub struct IdentityShareLayer {
    requests: Arc<Shares>,
    over_connections: Option<usize>,
}

impl IdentityShareLayer {
    /// Take from `requests`; `over_connections` is the connection share when this
    /// connection is beyond it.
    pub fn new(requests: Arc<Shares>, over_connections: Option<usize>) -> Self {
        Self {
            requests,
            over_connections,
        }
    }
}

impl<S> Layer<S> for IdentityShareLayer {
    type Service = IdentityShare<S>;
    fn layer(&self, inner: S) -> Self::Service {
        IdentityShare {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`IdentityShareLayer`].
#[derive(Clone)]
pub struct IdentityShare<S> {
    inner: S,
    layer: IdentityShareLayer,
}

impl<S, B> Service<Request<B>> for IdentityShare<S>
where
    S: Service<Request<B>, Response = Outcome, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Outcome;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Outcome>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let refuse = |what, limit| {
            let e = ApiError::ShareExceeded { what, limit };
            Box::pin(std::future::ready(Ok(Outcome::error(e)))) as Self::Future
        };
        if let Some(limit) = self.layer.over_connections {
            return refuse("connections", limit);
        }
        let identity = req
            .extensions()
            .get::<Principal>()
            .map_or("", |p| p.identity.as_uri());
        let Some(share) = self.layer.requests.try_take(identity) else {
            return refuse("requests", self.layer.requests.limit());
        };
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move {
            let outcome = inner.call(req).await;
            drop(share);
            outcome
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use futures_util::FutureExt as _;
    use http::StatusCode;
    use serde_json::json;
    use tower::ServiceExt as _;

    use super::*;
    use crate::http::audit_layer::Envelope;
    use crate::http::test_support::stamped;
    use crate::http::Answer;

    #[tokio::test]
    async fn beyond_the_permits_a_request_is_an_overloaded_outcome() {
        // The inner service holds each request until the gate lets it through.
        let gate = Arc::new(Semaphore::new(0));
        let reached = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let inner = {
            let (gate, reached) = (Arc::clone(&gate), Arc::clone(&reached));
            tower::service_fn(move |_: ()| {
                reached.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let gate = Arc::clone(&gate);
                async move {
                    gate.acquire().await.unwrap().forget();
                    Ok::<_, std::convert::Infallible>(Outcome::answer(Answer::Json {
                        status: StatusCode::OK,
                        body: json!({}),
                    }))
                }
            })
        };
        let permits = Arc::new(Semaphore::new(1));
        let mut shed = ShedLayer::new(Arc::clone(&permits)).layer(inner);

        // The first request takes the only permit and waits inside.
        let first = shed.ready().await.unwrap().call(());
        // The second is answered at once, without waiting for the first.
        let second = shed
            .ready()
            .await
            .unwrap()
            .call(())
            .now_or_never()
            .expect("shed at once, not queued")
            .unwrap();
        let Err(e @ ApiError::Overloaded) = &second.result else {
            panic!("{:?}", second.result)
        };
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.slug(), "overloaded");
        assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 0);
        // An outcome like any other, so the audit layer records it.
        let record = Envelope::of(&stamped(http::Method::POST, "/v1/lookup", true, ""), "gw")
            .record(&second);
        assert_eq!(record.status, 503);
        assert_eq!(
            record.reason.as_deref(),
            Some(&*ApiError::Overloaded.to_string())
        );

        // Once the first is answered its permit is back.
        gate.add_permits(1);
        assert_eq!(first.await.unwrap().status(), StatusCode::OK);
        assert_eq!(permits.available_permits(), 1);
        assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 1);
        gate.add_permits(1);
        let third = shed.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(third.status(), StatusCode::OK);
        assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
