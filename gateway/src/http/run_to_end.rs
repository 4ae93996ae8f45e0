//! A future that runs to its end even when its caller stops waiting.
//!
//! A request that has read a record from a source must reach its audit record even if
//! the client hangs up and hyper drops the request's future. Spawning every request
//! as a task of its own guarantees that, at the price of a task, a wake-up and often a
//! hop between threads per request. Here the work is polled in place and becomes a
//! task only when it is dropped unfinished: the rare case pays, the common one does
//! not.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::FutureExt as _;

/// What [`RunToEnd`] resolves to: the work's output, or the panic it ended in.
pub type Ended<T> = Result<T, Box<dyn std::any::Any + Send>>;

type Work<T> = Pin<Box<dyn Future<Output = Ended<T>> + Send>>;

/// Polls `work` in place; dropped before it is done, hands it to the runtime to finish.
pub struct RunToEnd<T: Send + 'static> {
    work: Option<Work<T>>,
}

impl<T: Send + 'static> RunToEnd<T> {
    /// Run `work` to its end. A panic in it ends it with `Err`, as a task's would.
    pub fn new(work: impl Future<Output = T> + Send + 'static) -> Self {
        Self {
            work: Some(Box::pin(AssertUnwindSafe(work).catch_unwind())),
        }
    }
}

impl<T: Send + 'static> Future for RunToEnd<T> {
    type Output = Ended<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ended<T>> {
        let Some(work) = self.work.as_mut() else {
            // Polled again after it was done: nothing more will come.
            return Poll::Pending;
        };
        let out = std::task::ready!(work.as_mut().poll(cx));
        self.work = None;
        Poll::Ready(out)
    }
}

impl<T: Send + 'static> Drop for RunToEnd<T> {
    fn drop(&mut self) {
        if let Some(work) = self.work.take() {
            // Outside a runtime (it is shutting down) there is nowhere to finish.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(work);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::RunToEnd;

    #[tokio::test]
    async fn finished_in_place_it_gives_the_output() {
        let out = RunToEnd::new(async { 7 }).await;
        assert!(matches!(out, Ok(7)));
    }

    #[tokio::test]
    async fn dropped_unfinished_it_still_runs_to_the_end() {
        let done = Arc::new(AtomicBool::new(false));
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let work = {
            let done = Arc::clone(&done);
            RunToEnd::new(async move {
                let _ = wait.await;
                done.store(true, Ordering::SeqCst);
            })
        };
        // The caller gives up after one poll.
        let gave_up = tokio::time::timeout(Duration::from_millis(10), work).await;
        assert!(gave_up.is_err());
        assert!(!done.load(Ordering::SeqCst));
        go.send(()).ok();
        for _ in 0..100 {
            if done.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the dropped work never finished");
    }

    #[tokio::test]
    async fn a_panic_ends_it_with_an_error() {
        let out = RunToEnd::new(async {
            if true {
                panic!("boom");
            }
        })
        .await;
        assert!(out.is_err());
    }
}
