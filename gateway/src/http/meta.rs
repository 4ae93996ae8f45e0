//! The first layer: a request id, the clock, and the request span — which joins the
//! caller's trace when the request carries a W3C `traceparent` header.

use std::task::{Context, Poll};
use std::time::Instant;

use chrono::{DateTime, Utc};
use http::{HeaderMap, Request};
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tower::{Layer, Service};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

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
        if req.headers().contains_key("traceparent") {
            let caller = TraceContextPropagator::new().extract(&TraceHeaders(req.headers()));
            // Fails only when no OpenTelemetry layer is installed: nothing to join then.
            let _ = span.set_parent(caller);
        }
        req.extensions_mut().insert(meta);
        let mut inner = take_ready(&mut self.inner);
        Box::pin(async move { inner.call(req).await }.instrument(span))
    }
}

/// The W3C trace-context headers (`traceparent`, `tracestate`) of a request.
struct TraceHeaders<'a>(&'a HeaderMap);

impl Extractor for TraceHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::convert::Infallible;

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
    use tower::ServiceExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// The spans a request through [`MetaLayer`] exports, with or without a
    /// `traceparent`.
    async fn exported(traceparent: Option<&str>) -> Vec<SpanData> {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let _guard = tracing::subscriber::set_default(subscriber);
        let inner = tower::service_fn(|_: Request<()>| async {
            tracing::info_span!("policy").in_scope(|| ());
            Ok::<_, Infallible>(())
        });
        let mut req = Request::builder().uri("/v1/lookup");
        if let Some(tp) = traceparent {
            req = req.header("traceparent", tp);
        }
        MetaLayer
            .layer(inner)
            .oneshot(req.body(()).unwrap())
            .await
            .unwrap();
        provider.force_flush().unwrap();
        exporter.get_finished_spans().unwrap()
    }

    #[tokio::test]
    async fn every_request_gets_its_own_v7_id() {
        let (inner, seen) = crate::http::test_support::recorder(|_: &Request<()>| ());
        let svc = MetaLayer.layer(inner);
        for _ in 0..2 {
            svc.clone().oneshot(Request::new(())).await.unwrap();
        }
        let ids: Vec<uuid::Uuid> = seen
            .take()
            .iter()
            .map(|r| {
                r.extensions()
                    .get::<RequestMeta>()
                    .unwrap()
                    .id
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(ids.len(), 2);
        assert!(ids.iter().all(|id| id.get_version_num() == 7), "{ids:?}");
        assert_ne!(ids[0], ids[1]);
    }

    #[tokio::test]
    async fn the_request_span_joins_the_callers_trace() {
        let spans = exported(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ))
        .await;
        let request = spans.iter().find(|s| s.name == "request").unwrap();
        assert_eq!(
            request.span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(request.parent_span_id.to_string(), "00f067aa0ba902b7");
        let policy = spans.iter().find(|s| s.name == "policy").unwrap();
        assert_eq!(
            policy.span_context.trace_id(),
            request.span_context.trace_id()
        );
        assert_eq!(policy.parent_span_id, request.span_context.span_id());

        // Without one (or with a malformed one) the request starts a trace of its own.
        for tp in [None, Some("00-not-a-trace-01")] {
            let spans = exported(tp).await;
            let request = spans.iter().find(|s| s.name == "request").unwrap();
            assert_ne!(
                request.span_context.trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
            assert_eq!(
                request.parent_span_id,
                opentelemetry::trace::SpanId::INVALID
            );
        }
    }
}
