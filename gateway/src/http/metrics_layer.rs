//! Metrics: count every answered request by route, dataset, decision and status,
//! and its latency. Sits right above the audit layer, so it sees what was recorded.

use std::sync::Arc;
use std::task::{Context, Poll};

use audit::Decision;
use connectors::ErrorOrigin;
use http::Request;
use opentelemetry::KeyValue;
use tower::{Layer, Service};

use super::audit_layer::Audited;
use super::{take_ready, BoxFuture, Principal, RequestMeta};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Routes counted under their own name; anything else is `other`, so that the label
/// stays bounded whatever paths clients send.
const ROUTES: &[&str] = &[
    "/v1/lookup",
    "/v1/bundle",
    "/v1/catalogue",
    "/.well-known/jwks.json",
    "/openapi.json",
    "/admin/v1/agreements",
    "/admin/v1/explain",
    "/audit/v1/records",
];

/// Records request metrics into a [`Metrics`].
#[derive(Clone)]
pub struct MetricsLayer {
    metrics: Metrics,
    datasets: Arc<[String]>,
}

impl MetricsLayer {
    /// Count into `metrics`, labelling lookups of `datasets` (the configured ones;
    /// any other name a client sends is `none`, so that the label stays bounded).
    pub fn new(metrics: Metrics, datasets: impl IntoIterator<Item = String>) -> Self {
        Self {
            metrics,
            datasets: datasets.into_iter().collect(),
        }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Measure<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Measure {
            inner,
            metrics: self.metrics.clone(),
            datasets: Arc::clone(&self.datasets),
        }
    }
}

/// See [`MetricsLayer`].
#[derive(Clone)]
pub struct Measure<S> {
    inner: S,
    metrics: Metrics,
    datasets: Arc<[String]>,
}

impl<S, B> Service<Request<B>> for Measure<S>
where
    S: Service<Request<B>, Response = Audited, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Audited;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Audited>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let route = route_label(req.uri().path());
        let started = req.extensions().get::<RequestMeta>().map(|m| m.started);
        let identity = req
            .extensions()
            .get::<Principal>()
            .map(|p| p.identity.as_uri().to_owned());
        let mut inner = take_ready(&mut self.inner);
        let metrics = self.metrics.clone();
        let datasets = Arc::clone(&self.datasets);
        Box::pin(async move {
            let audited = inner.call(req).await?;
            let o = &audited.outcome;
            let dataset = o
                .facts
                .dataset
                .as_deref()
                .and_then(|d| datasets.iter().find(|x| *x == d))
                .map_or("none", String::as_str);
            let decision = o.facts.decision.unwrap_or(match &o.result {
                Ok(_) => Decision::Allow,
                Err(ApiError::Forbidden(_)) => Decision::Deny,
                Err(_) => Decision::Error,
            });
            let seconds = started
                .map(|s| s.elapsed().as_secs_f64())
                .unwrap_or_default();
            metrics.request(
                route,
                dataset,
                decision.as_str(),
                o.status().as_u16(),
                seconds,
            );
            if let Err(ApiError::ShareExceeded { what, .. }) = &o.result {
                metrics.share_refusals.add(
                    1,
                    &[
                        KeyValue::new("identity", identity.unwrap_or_default()),
                        KeyValue::new("kind", *what),
                    ],
                );
            }
            if let Err(ApiError::Upstream { origin, .. }) = &o.result {
                metrics.connector_errors.add(
                    1,
                    &[
                        KeyValue::new("dataset", dataset.to_owned()),
                        KeyValue::new("kind", origin_label(*origin)),
                    ],
                );
            }
            Ok(audited)
        })
    }
}

fn route_label(path: &str) -> &'static str {
    ROUTES
        .iter()
        .find(|r| path == **r || (path.starts_with(**r) && path[r.len()..].starts_with('/')))
        .copied()
        .unwrap_or("other")
}

fn origin_label(o: ErrorOrigin) -> &'static str {
    match o {
        ErrorOrigin::Unavailable => "unavailable",
        ErrorOrigin::Timeout => "timeout",
        ErrorOrigin::Upstream => "bad-answer",
        ErrorOrigin::Internal => "internal",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http::StatusCode;
    use policy::Denial;
    use serde_json::json;
    use tower::ServiceExt as _;

    use super::*;
    use crate::http::test_support::{meta, recorder};
    use crate::http::{Answer, Outcome};

    /// A request for `path` whose audited outcome is `outcome`, through a metrics
    /// layer counting into `metrics`.
    async fn measure(metrics: &Metrics, path: &str, outcome: Outcome) {
        let audited = Audited {
            rendered: crate::http::render::rendered(&outcome, "r"),
            outcome,
            receipt: None,
            request_id: "r".into(),
        };
        let (inner, _) = recorder(move |_: &Request<()>| audited.clone());
        let mut req = Request::builder().uri(path).body(()).unwrap();
        req.extensions_mut().insert(meta());
        MetricsLayer::new(
            metrics.clone(),
            ["population", "legal_person"].map(str::to_owned),
        )
        .layer(inner)
        .oneshot(req)
        .await
        .unwrap();
    }

    fn of(dataset: &str, result: Result<Answer, ApiError>) -> Outcome {
        let mut o = Outcome {
            facts: Default::default(),
            result,
            page: None,
        };
        o.facts.dataset = Some(dataset.into());
        o
    }

    #[tokio::test]
    async fn answers_are_counted_by_route_dataset_decision_and_status() {
        let metrics = Metrics::default();
        let ok = || {
            Ok(Answer::Json {
                status: StatusCode::OK,
                body: json!({}),
            })
        };
        measure(&metrics, "/v1/lookup", of("population", ok())).await;
        measure(&metrics, "/v1/lookup", of("population", ok())).await;
        let denied = ApiError::Forbidden(Denial::NoAgreement {
            consumer: "c".into(),
            dataset: "population".into(),
        });
        measure(&metrics, "/v1/lookup", of("population", Err(denied))).await;
        let timeout = ApiError::Upstream {
            origin: ErrorOrigin::Timeout,
            message: "slow".into(),
        };
        measure(&metrics, "/v1/lookup", of("legal_person", Err(timeout))).await;
        // A dataset name the client made up is not a label value.
        measure(
            &metrics,
            "/no/such/path",
            of("people", Err(ApiError::NoRoute("x".into()))),
        )
        .await;

        let text = metrics.render_prometheus();
        for line in [
            "tongban_requests_total{dataset=\"population\",decision=\"allow\",route=\"/v1/lookup\",status=\"200\"} 2",
            "tongban_requests_total{dataset=\"population\",decision=\"deny\",route=\"/v1/lookup\",status=\"403\"} 1",
            "tongban_requests_total{dataset=\"legal_person\",decision=\"error\",route=\"/v1/lookup\",status=\"504\"} 1",
            "tongban_requests_total{dataset=\"none\",decision=\"error\",route=\"other\",status=\"404\"} 1",
            "tongban_connector_errors_total{dataset=\"legal_person\",kind=\"timeout\"} 1",
            "tongban_request_duration_seconds_count{route=\"/v1/lookup\"} 4",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn routes_are_bounded() {
        assert_eq!(route_label("/v1/lookup"), "/v1/lookup");
        assert_eq!(
            route_label("/admin/v1/agreements/abc"),
            "/admin/v1/agreements"
        );
        assert_eq!(route_label("/admin/v1/agreementsX"), "other");
        assert_eq!(route_label("/etc/passwd"), "other");
    }
}
