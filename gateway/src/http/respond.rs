//! Respond: the one place outcomes become HTTP responses — signed JSON for records,
//! problem+json (RFC 9457) for errors.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Map, Value};
use tower::{Layer, Service};

use super::audit_layer::Audited;
use super::{take_ready, Answer, BoxFuture, LookupAnswer};
use crate::error::ApiError;
use crate::signing::Signer;

/// The body type of every response.
pub type ResponseBody = Full<Bytes>;

/// Renders [`Audited`] outcomes.
#[derive(Clone)]
pub struct RespondLayer {
    signer: Arc<Signer>,
}

impl RespondLayer {
    /// Sign with `signer`.
    pub fn new(signer: Arc<Signer>) -> Self {
        Self { signer }
    }
}

impl<S> Layer<S> for RespondLayer {
    type Service = Respond<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Respond {
            inner,
            signer: Arc::clone(&self.signer),
        }
    }
}

/// See [`RespondLayer`].
#[derive(Clone)]
pub struct Respond<S> {
    inner: S,
    signer: Arc<Signer>,
}

impl<S, B> Service<Request<B>> for Respond<S>
where
    S: Service<Request<B>, Response = Audited, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Response<ResponseBody>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let signer = Arc::clone(&self.signer);
        Box::pin(async move {
            let audited = inner.call(req).await?;
            Ok(render(&signer, audited))
        })
    }
}

/// Turn an audited outcome into a response.
pub fn render(signer: &Signer, a: Audited) -> Response<ResponseBody> {
    let Audited {
        outcome,
        receipt,
        request_id,
    } = a;
    let result = match (outcome.result, receipt) {
        (Ok(answer), Some(receipt)) => answer_body(signer, answer, &receipt),
        (Ok(_), None) => Err(ApiError::AuditUnavailable),
        (Err(e), _) => Err(e),
    };
    let mut response = match result {
        Ok((status, body)) => json_response(status, "application/json", body),
        Err(e) => problem(&e, &request_id),
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

fn answer_body(
    signer: &Signer,
    answer: Answer,
    receipt: &crate::audit::Receipt,
) -> Result<(StatusCode, Value), ApiError> {
    match answer {
        Answer::Json { status, body } => Ok((status, body)),
        Answer::Lookup(l) => {
            let body = lookup_body(l, receipt);
            signer
                .sign(body)
                .map(|b| (StatusCode::OK, Value::Object(b)))
                .map_err(|e| ApiError::Internal(format!("signing failed: {e}")))
        }
        Answer::Signed(mut body) => {
            body.insert(
                "audit".into(),
                json!({"seq": receipt.seq, "hash": receipt.hash}),
            );
            signer
                .sign(body)
                .map(|b| (StatusCode::OK, Value::Object(b)))
                .map_err(|e| ApiError::Internal(format!("signing failed: {e}")))
        }
    }
}

/// The body of a lookup answer, before it is signed; bundle items reuse it.
pub fn lookup_body(l: LookupAnswer, receipt: &crate::audit::Receipt) -> Map<String, Value> {
    let verification = l.verification.clone();
    let mut v = json!({
        "request_id": l.request_id,
        "dataset": l.dataset.as_str(),
        "subject": l.subject,
        "record": l.record,
        "masked": l.masked,
        "source": {
            "department": l.department,
            "connector": l.connector,
            "fetched_at": l.fetched_at,
        },
        "agreement": l.agreement,
        "audit": {"seq": receipt.seq, "hash": receipt.hash},
    });
    if let Some(check) = verification {
        v["verified"] = Value::Bool(check.is_verified());
        if let Some(reason) = check.error() {
            v["verification_error"] = Value::String(reason.to_owned());
        }
    }
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// An RFC 9457 problem response. Internal and upstream details stay in the logs and
/// the audit record; the caller gets the title and a safe detail.
pub fn problem(e: &ApiError, request_id: &str) -> Response<ResponseBody> {
    json_response(
        e.status(),
        "application/problem+json",
        problem_body(e, request_id),
    )
}

/// The RFC 9457 problem document for `e` (also the `problem` of a failed bundle
/// item).
pub fn problem_body(e: &ApiError, request_id: &str) -> Value {
    let detail = match e {
        ApiError::Internal(_) | ApiError::Upstream { .. } => e.title().to_owned(),
        other => other.to_string(),
    };
    let mut body = json!({
        "type": format!("/problems/{}", e.slug()),
        "title": e.title(),
        "status": e.status().as_u16(),
        "detail": detail,
        "request_id": request_id,
    });
    if let Some((k, v)) = e.extension() {
        body[k] = Value::String(v);
    }
    body
}

fn json_response(
    status: StatusCode,
    content_type: &'static str,
    body: Value,
) -> Response<ResponseBody> {
    // serde_json never fails to serialize a Value.
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
