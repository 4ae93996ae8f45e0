//! Plain-HTTP/1.1 listeners (the ops endpoints, the witness): one accept loop, with a
//! bound on the time a request's head may take, until told to stop.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Time for a request's head to arrive.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve each request on `listener` with `handle` until `stop` flips (or its sender
/// goes away).
pub async fn serve<H, F>(listener: TcpListener, mut stop: watch::Receiver<bool>, handle: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
    F: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let handle = handle.clone();
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEAD_TIMEOUT)
                        .serve_connection(TokioIo::new(tcp), hyper::service::service_fn(handle))
                        .await;
                });
            }
            _ = stop.changed() => break,
        }
    }
}
