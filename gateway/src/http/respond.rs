//! Respond: the one place answers become HTTP responses — the answer the audit layer
//! rendered and bound to its record, with the record's receipt.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use http_body_util::Full;
use tower::{Layer, Service};

use super::audit_layer::Audited;
use super::{take_ready, BoxFuture};

/// The body type of every response.
pub type ResponseBody = Full<Bytes>;

/// Renders [`Audited`] outcomes.
#[derive(Clone, Copy, Default)]
pub struct RespondLayer;

impl<S> Layer<S> for RespondLayer {
    type Service = Respond<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Respond { inner }
    }
}

/// See [`RespondLayer`].
#[derive(Clone)]
pub struct Respond<S> {
    inner: S,
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
        Box::pin(async move {
            let audited = inner.call(req).await?;
            Ok(respond(audited))
        })
    }
}

/// Turn an audited answer into a response.
pub fn respond(a: Audited) -> Response<ResponseBody> {
    let Audited {
        rendered,
        receipt,
        request_id,
        ..
    } = a;
    let (status, content_type, allow, extra) = (
        rendered.status,
        rendered.content_type,
        rendered.allow.clone(),
        rendered.headers.clone(),
    );
    // A text answer has no member to hold its receipt: it goes in a header.
    let receipt_header = receipt.as_ref().filter(|_| rendered.text).and_then(|r| {
        use base64::Engine as _;
        let mut json = Vec::with_capacity(2048);
        r.write_json(&mut json);
        HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(json)).ok()
    });
    let mut r = Response::new(Full::new(Bytes::from(
        rendered.into_bytes(receipt.as_ref()),
    )));
    *r.status_mut() = status;
    let headers = r.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(allow) = allow {
        headers.insert(header::ALLOW, allow);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-request-id", v);
    }
    if let Some(v) = receipt_header {
        headers.insert(RECEIPT_HEADER, v);
    }
    for (k, v) in extra {
        headers.append(k, v);
    }
    r
}

/// The header that carries a text answer's receipt: the receipt's JSON (as a JSON
/// answer's `audit` member holds it), standard base64.
pub const RECEIPT_HEADER: &str = "audit-receipt";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use http::Method;
    use http_body_util::BodyExt as _;
    use policy::Denial;
    use tower::ServiceExt as _;

    use http::StatusCode;
    use serde_json::{json, Value};

    use super::*;
    use crate::error::ApiError;
    use crate::http::audit_layer::Envelope;
    use crate::http::render::rendered;
    use crate::http::test_support::{lookup_answer, recorder, signer, stamped, Fixture, RESIDENT};
    use crate::http::{Answer, Outcome};

    /// `outcome` committed to a real audit log and rendered by the respond layer:
    /// status, headers, the body, and the public key that signed its checkpoint.
    async fn answered(outcome: Outcome) -> (StatusCode, http::HeaderMap, Value, Vec<u8>) {
        let f = Fixture::new().await;
        let signer = signer();
        let log = f.audit_signed_by(Arc::clone(&signer)).await;
        let req = stamped(Method::POST, "/v1/lookup", true, "");
        let envelope = Envelope::of(&req, "gw-test");
        let id = envelope.request_id().to_owned();
        let audited = envelope.commit(&log, outcome, |o| rendered(o, &id)).await;
        let (inner, _) = recorder(move |_: &Request<()>| audited.clone());
        let response = RespondLayer
            .layer(inner)
            .oneshot(Request::new(()))
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let public = audit::signing::public_key_of(&signer.jwks(), signer.kid()).unwrap();
        (
            parts.status,
            parts.headers,
            serde_json::from_slice(&bytes).unwrap(),
            public,
        )
    }

    fn lookup() -> Outcome {
        let mut record = connectors::Record::new();
        record.insert("name".into(), json!("张三"));
        record.insert("household_address".into(), json!("北京市****"));
        let mut answer = lookup_answer("population", RESIDENT, record);
        answer.masked = vec!["household_address".into()];
        Outcome::answer(Answer::Lookup(answer))
    }

    #[tokio::test]
    async fn a_record_is_answered_bound_to_its_audit_record() {
        let (status, headers, body, public) = answered(lookup()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(body["record"]["name"], "张三");
        assert_eq!(body["masked"], json!(["household_address"]));
        assert_eq!(body["source"]["department"], "sz-amr");
        assert!(body.get("signature").is_none(), "no per-answer signature");
        let included = audit::check_answer(&body, &public).unwrap();
        assert_eq!(
            (included.index, body["audit"]["seq"].clone()),
            (0, json!(1))
        );
        assert!(headers.contains_key("x-request-id"));

        // Any change to what was answered unbinds it from the record.
        let mut forged = body.clone();
        forged["record"]["name"] = json!("李四");
        assert!(matches!(
            audit::check_answer(&forged, &public),
            Err(audit::AnswerError::NotBound { seq: 1, .. })
        ));
        let mut dropped = body.clone();
        dropped["masked"] = json!([]);
        assert!(audit::check_answer(&dropped, &public).is_err());
        // And a receipt checked with another key fails.
        let other = signer();
        let other = audit::signing::public_key_of(&other.jwks(), other.kid()).unwrap();
        assert!(audit::check_answer(&body, &other).is_err());
    }

    #[tokio::test]
    async fn a_refusal_is_problem_json_with_its_receipt_and_without_internals() {
        let denied = ApiError::Forbidden(Denial::NoAgreement {
            consumer: "urn:tongban:sz-civil:counter-01".into(),
            dataset: "population".into(),
        });
        let (status, headers, body, public) = answered(Outcome::error(denied)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(body["type"], "/problems/forbidden");
        assert_eq!(body["title"], "Not allowed by any sharing agreement");
        assert_eq!(body["status"], 403);
        assert_eq!(
            body["request_id"],
            headers["x-request-id"].to_str().unwrap()
        );
        assert_eq!(body["reason"], "no-agreement");
        assert!(body["detail"].as_str().unwrap().contains("population"));
        audit::check_answer(&body, &public).unwrap();

        for e in [
            ApiError::Internal("sqlite file /var/lib/x is locked".into()),
            ApiError::Upstream {
                origin: connectors::ErrorOrigin::Timeout,
                message: "10.0.0.7:5432 timed out".into(),
            },
        ] {
            let (status, _, body, _) = answered(Outcome::error(e.clone())).await;
            assert_eq!(status, e.status());
            assert_eq!(body["detail"], e.title(), "internals stay in the audit log");
        }
    }

    #[tokio::test]
    async fn a_405_says_which_methods_the_path_serves() {
        let e = ApiError::Method {
            method: "PATCH".into(),
            allow: vec![http::Method::GET, http::Method::POST],
        };
        let (status, headers, body, _) = answered(Outcome::error(e)).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers[header::ALLOW], "GET, POST");
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(body["type"], "/problems/method-not-allowed");
    }

    #[tokio::test]
    async fn an_answer_without_a_receipt_is_503_without_data() {
        let f = Fixture::new().await;
        let log = f.audit().await;
        log.close().await;
        let req = stamped(Method::POST, "/v1/lookup", true, "");
        let envelope = Envelope::of(&req, "gw-test");
        let id = envelope.request_id().to_owned();
        let audited = envelope.commit(&log, lookup(), |o| rendered(o, &id)).await;
        let response = respond(audited);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["type"], "/problems/audit-unavailable");
        assert!(body.get("audit").is_none());
        assert!(!body.to_string().contains("张三"), "{body}");
    }

    #[tokio::test]
    async fn a_json_answer_keeps_its_status_and_gets_its_receipt() {
        let answer = Answer::Json {
            status: StatusCode::CREATED,
            body: json!({"id": "a"}),
        };
        let (status, _, body, public) = answered(Outcome::answer(answer)).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body["id"], "a");
        audit::check_answer(&body, &public).unwrap();
    }
}
