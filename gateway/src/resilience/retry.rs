//! Retries of transient failures, within a budget.
//!
//! A lookup is a read, so any attempt may be repeated; but only a failure that another
//! attempt may cure is retried — the source refused the connection, reset it, or said
//! it is briefly unavailable ([`ConnectorError::is_transient`]). Time-outs are not
//! retried (the time-out sits outside this layer and covers every attempt), nor are
//! bad answers. Retries draw on a [`TpsBudget`] shared by every lookup of the source,
//! so a failing source sees at most `retry_budget_percent` extra traffic rather than
//! `retries` times its load. Attempts are spaced by a short jittered exponential
//! back-off.

use std::sync::Arc;
use std::time::Duration;

use connectors::{ConnectorError, Query, Record};
use tower::retry::backoff::{
    Backoff as _, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff as _,
};
use tower::retry::budget::{Budget as _, TpsBudget};
use tower::retry::Policy;
use tower::util::rng::HasherRng;

/// Shortest pause before a retry.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause before a retry.
const BACKOFF_MAX: Duration = Duration::from_millis(200);
/// How long a deposit in the budget counts.
const BUDGET_TTL: Duration = Duration::from_secs(10);
/// Retries per second allowed however little traffic there is.
const BUDGET_MIN_PER_SEC: u32 = 1;

/// The retry policy of one source; clones share its budget. Tower clones the policy
/// for every call, so the attempt count and back-off below are per call.
#[derive(Clone)]
pub struct RetryTransient {
    budget: Arc<TpsBudget>,
    remaining: u32,
    deposited: bool,
    /// `None` only if tower refused the back-off constants; a fixed pause is used then.
    maker: Option<ExponentialBackoffMaker>,
    backoff: Option<ExponentialBackoff>,
}

impl RetryTransient {
    /// Up to `retries` retries per lookup, and at most `budget_percent` % of lookups
    /// (0–1000) retried across the source.
    pub fn new(retries: u32, budget_percent: u32) -> Self {
        let ratio = f32::from(u16::try_from(budget_percent.min(1000)).unwrap_or(1000)) / 100.0;
        RetryTransient {
            budget: Arc::new(TpsBudget::new(BUDGET_TTL, BUDGET_MIN_PER_SEC, ratio)),
            remaining: retries,
            deposited: false,
            maker: ExponentialBackoffMaker::new(
                BACKOFF_MIN,
                BACKOFF_MAX,
                1.0,
                HasherRng::default(),
            )
            .ok(),
            backoff: None,
        }
    }

    fn next_pause(&mut self) -> tokio::time::Sleep {
        if self.backoff.is_none() {
            self.backoff = self.maker.as_mut().map(|m| m.make_backoff());
        }
        match self.backoff.as_mut() {
            Some(b) => b.next_backoff(),
            None => tokio::time::sleep(BACKOFF_MIN),
        }
    }
}

impl Policy<Query, Option<Record>, ConnectorError> for RetryTransient {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _req: &mut Query,
        result: &mut Result<Option<Record>, ConnectorError>,
    ) -> Option<Self::Future> {
        // Every lookup earns the budget its share, once, whatever its result.
        if !self.deposited {
            self.deposited = true;
            self.budget.deposit();
        }
        match result {
            Err(e) if e.is_transient() && self.remaining > 0 => {
                if !self.budget.withdraw() {
                    tracing::debug!("retry budget exhausted; not retrying");
                    return None;
                }
                self.remaining -= 1;
                tracing::debug!(error = %e, "retrying a transient failure");
                Some(self.next_pause())
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &Query) -> Option<Query> {
        Some(req.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use connectors::Dataset;
    use tower::{ServiceBuilder, ServiceExt as _};

    use super::*;

    /// A source failing its first `failures` calls with `error`, then answering.
    fn flaky(
        failures: usize,
        error: fn() -> ConnectorError,
        calls: Arc<AtomicUsize>,
    ) -> impl tower::Service<
        Query,
        Response = Option<Record>,
        Error = ConnectorError,
        Future = impl Send,
    > + Clone {
        tower::service_fn(move |_q: Query| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < failures {
                    Err(error())
                } else {
                    Ok(Some(Record::new()))
                }
            }
        })
    }

    fn query() -> Query {
        Query::subject(Dataset::new("population"), "11010519491231002X")
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_up_to_the_limit() {
        let calls = Arc::new(AtomicUsize::new(0));
        let unavailable = || ConnectorError::Unavailable("refused".into());
        let svc = ServiceBuilder::new()
            .retry(RetryTransient::new(2, 20))
            .service(flaky(2, unavailable, Arc::clone(&calls)));
        assert!(svc.clone().oneshot(query()).await.unwrap().is_some());
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = Arc::new(AtomicUsize::new(0));
        let svc = ServiceBuilder::new()
            .retry(RetryTransient::new(2, 20))
            .service(flaky(5, unavailable, Arc::clone(&calls)));
        assert!(svc.oneshot(query()).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3, "one try and two retries");
    }

    #[tokio::test(start_paused = true)]
    async fn other_failures_are_not_retried() {
        let errors: [fn() -> ConnectorError; 3] = [
            || ConnectorError::Query("garbage".into()),
            || ConnectorError::Timeout("slow".into()),
            || ConnectorError::Config("no binding".into()),
        ];
        for error in errors {
            let calls = Arc::new(AtomicUsize::new(0));
            let svc = ServiceBuilder::new()
                .retry(RetryTransient::new(3, 100))
                .service(flaky(1, error, Arc::clone(&calls)));
            assert!(svc.oneshot(query()).await.is_err());
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_caps_retries_across_lookups() {
        // 0 %: only the floor of one retry per second; a second failing lookup in the
        // same instant gets no retry.
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = ServiceBuilder::new()
            .retry(RetryTransient::new(5, 0))
            .service(flaky(
                usize::MAX,
                || ConnectorError::Unavailable("down".into()),
                Arc::clone(&calls),
            ));
        let mut total_retries = 0;
        for _ in 0..10 {
            let before = calls.load(Ordering::SeqCst);
            assert!(svc.clone().oneshot(query()).await.is_err());
            total_retries += calls.load(Ordering::SeqCst) - before - 1;
        }
        assert!(
            total_retries < 10 * 5,
            "the budget allowed {total_retries} retries of 50 asked"
        );
    }
}
