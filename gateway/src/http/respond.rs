//! Respond: the one place outcomes become HTTP responses — signed JSON for records,
//! problem+json (RFC 9457) for errors.

use std::sync::Arc;
use std::task::{Context, Poll};

use audit::signing::Signer;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Map, Value};
use tower::{Layer, Service};

use super::audit_layer::Audited;
use super::{take_ready, Answer, BoxFuture, LookupAnswer};
use crate::error::ApiError;

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
    receipt: &audit::Receipt,
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
            body.insert("audit".into(), receipt_json(receipt));
            signer
                .sign(body)
                .map(|b| (StatusCode::OK, Value::Object(b)))
                .map_err(|e| ApiError::Internal(format!("signing failed: {e}")))
        }
    }
}

/// An answer's `audit` member: its record's receipt ([`audit::Receipt::to_json`]).
pub fn receipt_json(receipt: &audit::Receipt) -> Value {
    receipt.to_json()
}

/// The body of a lookup answer, before it is signed; bundle items reuse it.
pub fn lookup_body(l: LookupAnswer, receipt: &audit::Receipt) -> Map<String, Value> {
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
        "audit": receipt_json(receipt),
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
    let mut response = json_response(
        e.status(),
        "application/problem+json",
        problem_body(e, request_id),
    );
    // RFC 9110 §15.5.6: a 405 says which methods the path serves.
    if let ApiError::Method { allow, .. } = e {
        if let Ok(v) = HeaderValue::from_str(&crate::error::allowed(allow)) {
            response.headers_mut().insert(header::ALLOW, v);
        }
    }
    response
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use connectors::Dataset;
    use http_body_util::BodyExt as _;
    use policy::Denial;
    use tower::ServiceExt as _;

    use super::*;
    use crate::http::test_support::{lookup_answer, recorder, signer, RESIDENT};
    use crate::http::Outcome;
    use audit::Receipt;

    const ID: &str = "0192f0c1-0000-7000-8000-000000000000";

    /// `outcome`, recorded at `receipt`, through a respond layer signing with
    /// `signer`: status, headers and the body as JSON.
    async fn rendered(
        signer: &Arc<Signer>,
        outcome: Outcome,
        receipt: Option<Receipt>,
    ) -> (StatusCode, http::HeaderMap, Value) {
        let audited = Audited {
            outcome,
            receipt,
            request_id: ID.into(),
        };
        let (inner, _) = recorder(move |_: &Request<()>| audited.clone());
        let response = RespondLayer::new(Arc::clone(signer))
            .layer(inner)
            .oneshot(Request::new(()))
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    fn receipt() -> Option<Receipt> {
        Some(Receipt {
            seq: 7,
            hash: "c0ffee".into(),
            record: "{}".into(),
            index: 6,
            checkpoint: "".into(),
            inclusion: Vec::new(),
        })
    }

    #[tokio::test]
    async fn a_record_is_signed_with_its_receipt_and_verifies() {
        let signer = signer();
        let mut record = connectors::Record::new();
        record.insert("name".into(), json!("张三"));
        record.insert("household_address".into(), json!("北京市****"));
        let mut answer = lookup_answer(Dataset::Population, RESIDENT, record);
        answer.masked = vec!["household_address".into()];
        let (status, headers, body) =
            rendered(&signer, Outcome::answer(Answer::Lookup(answer)), receipt()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers["x-request-id"], ID);
        assert_eq!(body["record"]["name"], "张三");
        assert_eq!(body["masked"], json!(["household_address"]));
        assert_eq!(
            (&body["audit"]["seq"], &body["audit"]["hash"]),
            (&json!(7), &json!("c0ffee"))
        );
        assert_eq!(body["audit"]["index"], 6);
        assert_eq!(body["source"]["department"], "sz-amr");
        assert_eq!(
            audit::signing::verify(&body, &signer.jwks()).unwrap(),
            signer.kid()
        );
        // The signature covers the record: a changed field no longer verifies.
        let mut forged = body.clone();
        forged["record"]["name"] = json!("李四");
        assert!(audit::signing::verify(&forged, &signer.jwks()).is_err());
    }

    #[tokio::test]
    async fn an_error_is_problem_json_without_internals() {
        let signer = signer();
        let denied = ApiError::Forbidden(Denial::NoAgreement {
            consumer: "urn:tongban:sz-civil:counter-01".into(),
            dataset: "population".into(),
        });
        let (status, headers, body) = rendered(&signer, Outcome::error(denied), receipt()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(headers["x-request-id"], ID);
        assert_eq!(body["type"], "/problems/forbidden");
        assert_eq!(body["title"], "Not allowed by any sharing agreement");
        assert_eq!(body["status"], 403);
        assert_eq!(body["request_id"], ID);
        assert_eq!(body["reason"], "no-agreement");
        assert!(body["detail"].as_str().unwrap().contains("population"));
        assert!(body.get("signature").is_none());

        for e in [
            ApiError::Internal("sqlite file /var/lib/x is locked".into()),
            ApiError::Upstream {
                origin: connectors::ErrorOrigin::Timeout,
                message: "10.0.0.7:5432 timed out".into(),
            },
        ] {
            let (status, _, body) = rendered(&signer, Outcome::error(e.clone()), receipt()).await;
            assert_eq!(status, e.status());
            assert_eq!(body["detail"], e.title(), "internals stay in the audit log");
        }
    }

    #[tokio::test]
    async fn a_405_says_which_methods_the_path_serves() {
        let signer = signer();
        let e = ApiError::Method {
            method: "PATCH".into(),
            allow: vec![http::Method::GET, http::Method::POST],
        };
        let (status, headers, body) = rendered(&signer, Outcome::error(e), receipt()).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers[header::ALLOW], "GET, POST");
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(body["type"], "/problems/method-not-allowed");
    }

    #[tokio::test]
    async fn an_answer_without_a_receipt_is_503() {
        let signer = signer();
        let mut record = connectors::Record::new();
        record.insert("name".into(), json!("张三"));
        let answer = lookup_answer(Dataset::Population, RESIDENT, record);
        let (status, _, body) =
            rendered(&signer, Outcome::answer(Answer::Lookup(answer)), None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["type"], "/problems/audit-unavailable");
        assert!(!body.to_string().contains("张三"), "{body}");
    }

    #[tokio::test]
    async fn a_json_answer_keeps_its_status_and_is_not_signed() {
        let signer = signer();
        let answer = Answer::Json {
            status: StatusCode::CREATED,
            body: json!({"id": "a"}),
        };
        let (status, headers, body) = rendered(&signer, Outcome::answer(answer), receipt()).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(headers["x-request-id"], ID);
        assert_eq!(body, json!({"id": "a"}));
    }

    #[tokio::test]
    async fn a_bundle_answer_is_signed_with_its_own_receipt() {
        let signer = signer();
        let mut body = Map::new();
        body.insert("bundle".into(), json!("company-opening"));
        let (status, _, body) =
            rendered(&signer, Outcome::answer(Answer::Signed(body)), receipt()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (&body["audit"]["seq"], &body["audit"]["hash"]),
            (&json!(7), &json!("c0ffee"))
        );
        assert_eq!(body["audit"]["index"], 6);
        assert_eq!(
            audit::signing::verify(&body, &signer.jwks()).unwrap(),
            signer.kid()
        );
    }
}
