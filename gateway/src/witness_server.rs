//! The witness's HTTP side (c2sp.org/tlog-witness): `POST /add-checkpoint` for the
//! logs it follows, and `GET /status` saying what it cosigned of each.
//!
//! | answer | when |
//! |---|---|
//! | `200` the cosignature line (`text/plain`) | the checkpoint extends what it cosigned |
//! | `409` the size it cosigned (`text/x.tlog.size`) | the log started from another size |
//! | `422` (logged as an error: `FORK`) | the checkpoint does not extend what it cosigned |
//! | `403` | an unknown log, or not signed by the log's key |
//! | `400`, `413`, `408` | a malformed, too large or too slow request |
//!
//! Plain HTTP/1.1: every message that counts is signed, by the log or by the witness,
//! so the channel needs no secrecy or authentication; what a hostile client can do is
//! bounded by the body limit, the read time-out and the state lock.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use audit::witness::{Witness, WitnessError};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Largest add-checkpoint body: a note and at most 63 proof hashes fit in far less.
const MAX_BODY: usize = 16 * 1024;
/// Time for a request's body to arrive.
const READ_TIMEOUT: Duration = crate::plain_http::HEAD_TIMEOUT;

/// A witness serving on a bound address, until [`WitnessService::shutdown`].
pub struct WitnessService {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl WitnessService {
    /// Bind `addr` and serve `witness` there.
    pub async fn start(witness: Arc<Witness>, addr: std::net::SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(witness, listener, stopped));
        Ok(Self { addr, stop, task })
    }

    /// Stop accepting and wait for the listener to close.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Serve `witness` on `listener` until `stop` flips.
pub async fn serve(witness: Arc<Witness>, listener: TcpListener, stop: watch::Receiver<bool>) {
    crate::plain_http::serve(listener, stop, move |req| handle(Arc::clone(&witness), req)).await;
}

async fn handle(
    witness: Arc<Witness>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match (req.method(), req.uri().path()) {
        (&Method::POST, "/add-checkpoint") => add_checkpoint(witness, req).await,
        (&Method::GET, "/status") => {
            let body = serde_json::json!({
                "witness": witness.name(),
                "key": witness.verifier().to_vkey(),
                "logs": witness.status(),
            });
            text(StatusCode::OK, "application/json", body.to_string())
        }
        (_, "/add-checkpoint" | "/status") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "method not allowed\n".into(),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "no such endpoint\n".into(),
        ),
    })
}

async fn add_checkpoint(witness: Arc<Witness>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let plain = "text/plain; charset=utf-8";
    let body = match tokio::time::timeout(
        READ_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await
    {
        Err(_) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                plain,
                "the body did not arrive in time\n".into(),
            )
        }
        Ok(Err(_)) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                plain,
                format!("a body of at most {MAX_BODY} bytes\n"),
            )
        }
        Ok(Ok(b)) => b.to_bytes(),
    };
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return text(
            StatusCode::BAD_REQUEST,
            plain,
            "the body is not UTF-8\n".into(),
        );
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    // Signature checks and the state file's fsync: off the async threads.
    let result = tokio::task::spawn_blocking(move || witness.add_checkpoint(&body, now)).await;
    let Ok(result) = result else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            plain,
            "the witness failed\n".into(),
        );
    };
    match result {
        Ok(line) => text(StatusCode::OK, plain, line),
        Err(WitnessError::Conflict { latest, .. }) => text(
            StatusCode::CONFLICT,
            "text/x.tlog.size",
            format!("{latest}\n"),
        ),
        Err(e @ WitnessError::Fork { .. }) => {
            tracing::error!(error = %e, "refused a checkpoint that rewrites history");
            text(StatusCode::UNPROCESSABLE_ENTITY, plain, format!("{e}\n"))
        }
        Err(e @ (WitnessError::UnknownLog(_) | WitnessError::Unsigned(_))) => {
            text(StatusCode::FORBIDDEN, plain, format!("{e}\n"))
        }
        Err(e @ WitnessError::Malformed(_)) => {
            text(StatusCode::BAD_REQUEST, plain, format!("{e}\n"))
        }
        Err(e @ WitnessError::State { .. }) => {
            tracing::error!(error = %e, "the witness cannot keep its state");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                plain,
                "the witness cannot keep its state\n".into(),
            )
        }
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
