//! The resilience layers every connector gets, the same way, whatever its kind.
//!
//! ```text
//!  lookup ─▶ load-shed ─▶ concurrency limit ─▶ circuit breaker ─▶ time-out ─▶ retry ─▶ connector
//!            503 when       max_in_flight        503 while open     504         transient
//!            full                                                               failures only
//! ```
//!
//! - **load-shed + concurrency limit**: at most `max_in_flight` lookups wait on one
//!   source; more are refused at once (503) instead of queueing behind a slow
//!   department and holding the caller's connection.
//! - **circuit breaker**: after `breaker_failures` consecutive outages (unreachable or
//!   timed out) calls fail fast (503) for `breaker_cooldown_ms`, then one probe decides.
//!   Shed calls never reach it, so the gateway's own limit cannot open it.
//! - **time-out**: the whole lookup, retries included, gets `timeout_ms`; then 504.
//! - **retry**: transient failures only, with a budget ([`retry`]).
//!
//! Every error leaves as a [`ConnectorError`] whose origin the gateway maps to a
//! status in one place (`error.rs`): time-out → 504, unavailable or breaker open → 503,
//! bad answer → 502.

pub mod breaker;
pub mod retry;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use connectors::{Connector, ConnectorError, Query, Record};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt as _};

pub use breaker::{Breaker, BreakerLayer, BreakerOpen, BreakerState};
pub use retry::RetryTransient;

use crate::config::ResilienceConfig;

/// A connector behind its layers, as the request path calls it.
pub type ConnectorService = BoxCloneSyncService<Query, Option<Record>, ConnectorError>;

/// A connector with its resilience layers; clones share the layers' state (breaker,
/// permits, retry budget).
#[derive(Clone)]
pub struct Guarded {
    connector: Arc<dyn Connector>,
    service: ConnectorService,
    breaker: Breaker,
    timeout: Duration,
}

/// The innermost service: one call of the connector.
#[derive(Clone)]
struct Leaf {
    connector: Arc<dyn Connector>,
}

impl From<BreakerOpen> for ConnectorError {
    fn from(open: BreakerOpen) -> Self {
        ConnectorError::Unavailable(open.to_string())
    }
}

impl Service<Query> for Leaf {
    type Response = Option<Record>;
    type Error = ConnectorError;
    type Future = futures_util::future::BoxFuture<'static, Result<Option<Record>, ConnectorError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, query: Query) -> Self::Future {
        let connector = Arc::clone(&self.connector);
        Box::pin(async move { query.run(connector.as_ref()).await })
    }
}

impl Guarded {
    /// Wraps `connector` in the layers configured by `config`.
    pub fn new(connector: Arc<dyn Connector>, config: &ResilienceConfig) -> Self {
        let timeout = Duration::from_millis(config.timeout_ms);
        let breaker = Breaker::new(
            config.breaker_failures,
            Duration::from_millis(config.breaker_cooldown_ms),
        );
        let name: Arc<str> = Arc::from(connector.name());
        let describe = Describe {
            name,
            timeout_ms: config.timeout_ms,
            max_in_flight: config.max_in_flight,
        };
        let outer = describe.clone();
        let service = ServiceBuilder::new()
            .map_err(move |e: BoxError| outer.classify(e))
            .load_shed()
            .concurrency_limit(config.max_in_flight)
            .layer(BreakerLayer::new(breaker.clone(), counts_against_breaker))
            .map_err(move |e: BoxError| describe.classify(e))
            .timeout(timeout)
            .retry(RetryTransient::new(
                config.retries,
                config.retry_budget_percent,
            ))
            .service(Leaf {
                connector: Arc::clone(&connector),
            });
        Guarded {
            connector,
            service: BoxCloneSyncService::new(service),
            breaker,
            timeout,
        }
    }

    /// The connector's name.
    pub fn name(&self) -> &str {
        self.connector.name()
    }

    /// Runs `query` through the layers.
    pub async fn call(&self, query: Query) -> Result<Option<Record>, ConnectorError> {
        self.service.clone().oneshot(query).await
    }

    /// The connector's own probe, bounded by the lookup time-out. It bypasses the
    /// breaker: `/readyz` reports what the source says now.
    pub async fn health(&self) -> Result<(), ConnectorError> {
        match tokio::time::timeout(self.timeout, self.connector.health()).await {
            Ok(result) => result,
            Err(_) => Err(ConnectorError::Timeout(format!(
                "connector {}: health probe unanswered after {} ms",
                self.connector.name(),
                self.timeout.as_millis()
            ))),
        }
    }

    /// The circuit breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

/// What the breaker counts: the source could not be reached or did not answer in
/// time. A bad answer comes from a live source and does not count.
fn counts_against_breaker(e: &ConnectorError) -> bool {
    matches!(
        e,
        ConnectorError::Unavailable(_) | ConnectorError::Timeout(_)
    )
}

/// Turns the layers' boxed errors back into connector errors that name the source.
#[derive(Clone)]
struct Describe {
    name: Arc<str>,
    timeout_ms: u64,
    max_in_flight: usize,
}

impl Describe {
    fn classify(&self, e: BoxError) -> ConnectorError {
        let e = match e.downcast::<ConnectorError>() {
            Ok(c) => return *c,
            Err(e) => e,
        };
        let name = &self.name;
        if e.is::<tower::timeout::error::Elapsed>() {
            ConnectorError::Timeout(format!(
                "connector {name}: no answer within {} ms",
                self.timeout_ms
            ))
        } else if e.is::<tower::load_shed::error::Overloaded>() {
            ConnectorError::Unavailable(format!(
                "connector {name}: {} lookups already in flight; shed",
                self.max_in_flight
            ))
        } else {
            ConnectorError::Unavailable(format!("connector {name}: {e}"))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use connectors::Dataset;

    use super::*;

    /// A source whose behaviour the test sets: answer, fail, or hang.
    #[derive(Default)]
    struct Scripted {
        down: AtomicBool,
        hang: AtomicBool,
        calls: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Connector for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }

        async fn lookup(&self, _: &Dataset, _: &str) -> Result<Option<Record>, ConnectorError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if self.down.load(Ordering::SeqCst) {
                return Err(ConnectorError::Unavailable("refused".into()));
            }
            Ok(Some(Record::new()))
        }
    }

    fn config() -> ResilienceConfig {
        ResilienceConfig {
            timeout_ms: 500,
            max_in_flight: 2,
            retries: 1,
            retry_budget_percent: 100,
            breaker_failures: 2,
            breaker_cooldown_ms: 1000,
        }
    }

    fn query() -> Query {
        Query::subject(Dataset::new("population"), "11010519491231002X")
    }

    #[tokio::test(start_paused = true)]
    async fn slow_source_times_out_and_counts_against_the_breaker() {
        let source = Arc::new(Scripted::default());
        source.hang.store(true, Ordering::SeqCst);
        let g = Guarded::new(source.clone(), &config());
        let e = g.call(query()).await.unwrap_err();
        assert!(matches!(e, ConnectorError::Timeout(_)), "{e:?}");
        assert!(e.to_string().contains("500 ms"), "{e}");
        assert_eq!(
            source.calls.load(Ordering::SeqCst),
            1,
            "time-outs are not retried"
        );
        let _ = g.call(query()).await;
        assert_eq!(g.breaker().state(), BreakerState::Open);
        let e = g.call(query()).await.unwrap_err();
        assert!(e.to_string().contains("circuit breaker open"), "{e}");
        assert_eq!(source.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn outage_opens_then_recovery_closes() {
        let source = Arc::new(Scripted::default());
        let g = Guarded::new(source.clone(), &config());
        assert!(g.call(query()).await.unwrap().is_some());
        source.down.store(true, Ordering::SeqCst);
        for _ in 0..2 {
            let e = g.call(query()).await.unwrap_err();
            assert!(matches!(e, ConnectorError::Unavailable(_)));
        }
        assert_eq!(g.breaker().state(), BreakerState::Open);
        source.down.store(false, Ordering::SeqCst);
        assert!(
            g.call(query()).await.is_err(),
            "still open during the cool-down"
        );
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert!(g.call(query()).await.unwrap().is_some());
        assert_eq!(g.breaker().state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn lookups_beyond_max_in_flight_are_shed() {
        let source = Arc::new(Scripted::default());
        source.hang.store(true, Ordering::SeqCst);
        let g = Guarded::new(source.clone(), &config());
        let (a, b) = (g.clone(), g.clone());
        let hung = [
            tokio::spawn(async move { a.call(query()).await }),
            tokio::spawn(async move { b.call(query()).await }),
        ];
        while source.calls.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        let e = g.call(query()).await.unwrap_err();
        assert!(e.to_string().contains("shed"), "{e}");
        assert_eq!(
            g.breaker().failures(),
            0,
            "shedding is not the source's failure"
        );
        for h in hung {
            assert!(h.await.unwrap().is_err());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn health_is_bounded_by_the_timeout() {
        struct Stuck;
        #[async_trait::async_trait]
        impl Connector for Stuck {
            fn name(&self) -> &str {
                "stuck"
            }
            async fn lookup(&self, _: &Dataset, _: &str) -> Result<Option<Record>, ConnectorError> {
                Ok(None)
            }
            async fn health(&self) -> Result<(), ConnectorError> {
                std::future::pending().await
            }
        }
        let g = Guarded::new(Arc::new(Stuck), &config());
        assert!(matches!(g.health().await, Err(ConnectorError::Timeout(_))));
    }
}
