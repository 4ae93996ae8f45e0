//! A circuit breaker as a tower layer.
//!
//! ```text
//!            N consecutive failures                cool-down over: one probe
//!  Closed ─────────────────────────▶ Open ─────────────────────────────▶ HalfOpen
//!    ▲                                 ▲                                   │
//!    │ probe succeeds                  └────────── probe fails ────────────┤
//!    └─────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! While open, calls fail at once with [`BreakerOpen`] (converted into the inner
//! service's error type), so a department that is down costs the gateway nothing and
//! gets no traffic until the cool-down ends. In half-open state exactly one call goes
//! through as a probe; the others keep failing fast until it answers. Which errors count
//! as failures is the caller's choice (a bad answer from a live source, say, should not
//! open the breaker); any other outcome counts as a success.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, Service};

/// The error of a call refused because the breaker is open.
#[derive(Debug, Clone, thiserror::Error)]
#[error("circuit breaker open: {failures} consecutive failures, retrying after the cool-down")]
pub struct BreakerOpen {
    /// The consecutive failures that opened it.
    pub failures: u32,
}

/// The breaker's state, as `/readyz` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail fast until the cool-down ends.
    Open,
    /// One probe call is (or may be) in flight; the rest fail fast.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half-open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct Shared {
    phase: Phase,
    /// Consecutive failures (reset by any success).
    failures: u32,
}

/// Shared state of one breaker; clones see the same breaker. Also what `/readyz`
/// reads.
#[derive(Debug, Clone)]
pub struct Breaker {
    shared: Arc<Mutex<Shared>>,
    threshold: u32,
    cooldown: Duration,
}

/// Layer wrapping a service in a [`Breaker`]; `is_failure` says which errors count.
pub struct BreakerLayer<E> {
    breaker: Breaker,
    is_failure: fn(&E) -> bool,
}

/// See [`BreakerLayer`].
pub struct BreakerService<S, E> {
    inner: S,
    breaker: Breaker,
    is_failure: fn(&E) -> bool,
}

// By hand: a derive would ask `E: Clone`, which a function pointer does not need.
impl<E> Clone for BreakerLayer<E> {
    fn clone(&self) -> Self {
        BreakerLayer {
            breaker: self.breaker.clone(),
            is_failure: self.is_failure,
        }
    }
}

impl<S: Clone, E> Clone for BreakerService<S, E> {
    fn clone(&self) -> Self {
        BreakerService {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
            is_failure: self.is_failure,
        }
    }
}

/// What a call was admitted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Normal,
    Probe,
}

/// Puts the breaker back to "a probe may go" if a probe's future is dropped before it
/// finished, so a cancelled probe cannot leave the breaker half-open for ever.
struct ProbeGuard {
    breaker: Breaker,
    armed: bool,
}

impl Breaker {
    /// Opens after `threshold` consecutive failures (at least 1), probes after
    /// `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            shared: Arc::new(Mutex::new(Shared {
                phase: Phase::Closed,
                failures: 0,
            })),
            threshold: threshold.max(1),
            cooldown,
        }
    }

    /// The state now. An open breaker whose cool-down is over reports half-open: the
    /// next call will be the probe.
    pub fn state(&self) -> BreakerState {
        match self.lock().phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { until } if Instant::now() < until => BreakerState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Consecutive failures seen.
    pub fn failures(&self) -> u32 {
        self.lock().failures
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding this lock leaves plain data behind; keep using it.
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn admit(&self) -> Result<Admission, BreakerOpen> {
        let mut s = self.lock();
        let failures = s.failures;
        match s.phase {
            Phase::Closed => Ok(Admission::Normal),
            Phase::Open { until } if Instant::now() < until => Err(BreakerOpen { failures }),
            Phase::Open { .. } | Phase::HalfOpen { probing: false } => {
                s.phase = Phase::HalfOpen { probing: true };
                Ok(Admission::Probe)
            }
            Phase::HalfOpen { probing: true } => Err(BreakerOpen { failures }),
        }
    }

    fn record(&self, admission: Admission, failed: bool) {
        let mut s = self.lock();
        if failed {
            s.failures = s.failures.saturating_add(1);
            let trips = admission == Admission::Probe
                || (matches!(s.phase, Phase::Closed) && s.failures >= self.threshold);
            if trips {
                s.phase = Phase::Open {
                    until: Instant::now() + self.cooldown,
                };
                tracing::warn!(failures = s.failures, "circuit breaker open");
            }
        } else {
            if !matches!(s.phase, Phase::Closed) && admission == Admission::Probe {
                tracing::info!("circuit breaker closed: the probe succeeded");
            }
            s.failures = 0;
            if admission == Admission::Probe || matches!(s.phase, Phase::Closed) {
                s.phase = Phase::Closed;
            }
        }
    }

    fn probe_abandoned(&self) {
        let mut s = self.lock();
        if matches!(s.phase, Phase::HalfOpen { probing: true }) {
            s.phase = Phase::HalfOpen { probing: false };
        }
    }
}

impl<E> BreakerLayer<E> {
    /// Wrap services in `breaker`, counting errors for which `is_failure` is true.
    pub fn new(breaker: Breaker, is_failure: fn(&E) -> bool) -> Self {
        BreakerLayer {
            breaker,
            is_failure,
        }
    }
}

impl<S, E> Layer<S> for BreakerLayer<E> {
    type Service = BreakerService<S, E>;

    fn layer(&self, inner: S) -> Self::Service {
        BreakerService {
            inner,
            breaker: self.breaker.clone(),
            is_failure: self.is_failure,
        }
    }
}

impl<S, Req, E> Service<Req> for BreakerService<S, E>
where
    S: Service<Req, Error = E>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    E: From<BreakerOpen> + Send + 'static,
{
    type Response = S::Response;
    type Error = E;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, E>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let admission = match self.breaker.admit() {
            Ok(a) => a,
            Err(open) => return Box::pin(std::future::ready(Err(E::from(open)))),
        };
        let future = self.inner.call(req);
        let breaker = self.breaker.clone();
        let is_failure = self.is_failure;
        Box::pin(async move {
            let mut guard = ProbeGuard {
                breaker: breaker.clone(),
                armed: admission == Admission::Probe,
            };
            let result = future.await;
            guard.armed = false;
            let failed = result.as_ref().err().is_some_and(is_failure);
            breaker.record(admission, failed);
            result
        })
    }
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if self.armed {
            self.breaker.probe_abandoned();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use tower::{ServiceBuilder, ServiceExt as _};

    use super::*;

    #[derive(Debug, PartialEq)]
    enum TestError {
        Down,
        BadAnswer,
        Open,
    }

    impl From<BreakerOpen> for TestError {
        fn from(_: BreakerOpen) -> Self {
            TestError::Open
        }
    }

    type TestService = tower::util::BoxCloneService<u32, u32, TestError>;

    /// An upstream that is up or down at the test's command and counts its calls,
    /// behind a breaker that opens after 3 failures for 10 s.
    #[derive(Clone)]
    struct Upstream {
        down: Arc<AtomicBool>,
        calls: Arc<AtomicUsize>,
        breaker: Breaker,
    }

    impl Upstream {
        fn new() -> Self {
            Upstream {
                down: Arc::default(),
                calls: Arc::default(),
                breaker: Breaker::new(3, Duration::from_secs(10)),
            }
        }

        fn service(&self) -> TestService {
            let me = self.clone();
            let inner = tower::service_fn(move |x: u32| {
                me.calls.fetch_add(1, Ordering::SeqCst);
                let down = me.down.load(Ordering::SeqCst);
                async move {
                    match (down, x) {
                        (true, _) => Err(TestError::Down),
                        (false, 0) => Err(TestError::BadAnswer),
                        (false, x) => Ok(x),
                    }
                }
            });
            let layer =
                BreakerLayer::new(self.breaker.clone(), |e: &TestError| *e == TestError::Down);
            tower::util::BoxCloneService::new(ServiceBuilder::new().layer(layer).service(inner))
        }
    }

    async fn call<S>(svc: &S, x: u32) -> Result<u32, TestError>
    where
        S: Service<u32, Response = u32, Error = TestError> + Clone,
    {
        svc.clone().oneshot(x).await
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_probes_after_cooldown_and_closes() {
        let up = Upstream::new();
        let svc = up.service();
        let breaker = up.breaker.clone();
        assert_eq!(call(&svc, 1).await, Ok(1));
        up.down.store(true, Ordering::SeqCst);
        for _ in 0..3 {
            assert_eq!(call(&svc, 1).await, Err(TestError::Down));
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        // Open: fails fast, the upstream sees nothing.
        let before = up.calls.load(Ordering::SeqCst);
        assert_eq!(call(&svc, 1).await, Err(TestError::Open));
        assert_eq!(up.calls.load(Ordering::SeqCst), before);

        // After the cool-down one probe goes through; it fails: open again.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert_eq!(call(&svc, 1).await, Err(TestError::Down));
        assert_eq!(up.calls.load(Ordering::SeqCst), before + 1);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(call(&svc, 1).await, Err(TestError::Open));

        // The upstream returns; the next probe closes the breaker.
        up.down.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(call(&svc, 2).await, Ok(2));
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.failures(), 0);
        assert_eq!(call(&svc, 3).await, Ok(3));
    }

    #[tokio::test(start_paused = true)]
    async fn errors_not_counted_and_successes_reset_the_count() {
        let up = Upstream::new();
        let svc = up.service();
        let breaker = up.breaker.clone();
        up.down.store(true, Ordering::SeqCst);
        for _ in 0..2 {
            assert_eq!(call(&svc, 1).await, Err(TestError::Down));
        }
        up.down.store(false, Ordering::SeqCst);
        // A bad answer is not an outage: it resets the count.
        assert_eq!(call(&svc, 0).await, Err(TestError::BadAnswer));
        up.down.store(true, Ordering::SeqCst);
        for _ in 0..2 {
            assert_eq!(call(&svc, 1).await, Err(TestError::Down));
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(call(&svc, 1).await, Err(TestError::Down));
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn one_probe_at_a_time_and_a_dropped_probe_frees_the_slot() {
        let breaker = Breaker::new(1, Duration::from_secs(1));
        let gate = Arc::new(tokio::sync::Notify::new());
        let g = Arc::clone(&gate);
        let inner = tower::service_fn(move |fail: bool| {
            let g = Arc::clone(&g);
            async move {
                if fail {
                    Err(TestError::Down)
                } else {
                    g.notified().await;
                    Ok::<u32, TestError>(1)
                }
            }
        });
        let svc = ServiceBuilder::new()
            .layer(BreakerLayer::new(breaker.clone(), |e: &TestError| {
                *e == TestError::Down
            }))
            .service(inner);
        assert_eq!(svc.clone().oneshot(true).await, Err(TestError::Down));
        assert_eq!(breaker.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(2)).await;

        // The probe hangs; a second call meanwhile fails fast.
        let probe = tokio::spawn(svc.clone().oneshot(false));
        tokio::task::yield_now().await;
        assert_eq!(svc.clone().oneshot(false).await, Err(TestError::Open));
        // The probe is abandoned (its caller went away): the next call may probe.
        probe.abort();
        let _ = probe.await;
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        let next = tokio::spawn(svc.clone().oneshot(false));
        tokio::task::yield_now().await;
        gate.notify_one();
        assert_eq!(next.await.unwrap(), Ok(1));
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
