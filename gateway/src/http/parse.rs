//! Parse: turn a `/v1/lookup` HTTP request into a [`LookupRequest`] for the lookup
//! path, or refuse it with 400.

use std::task::{Context, Poll};

use bytes::Bytes;
use http::Request;
use http_body::Body;
use tower::{Layer, Service};

use super::body::{read_json, BodyLimits};
use super::lookup::{Asked, LookupRequest};
use super::{take_ready, BoxFuture, Outcome, Principal, RequestMeta};
use crate::error::ApiError;

/// The header naming the clerk at the counter.
pub const OPERATOR_HEADER: &str = "x-operator-id";

/// Parses lookup requests.
#[derive(Debug, Clone)]
pub struct ParseLayer {
    limits: BodyLimits,
}

impl ParseLayer {
    /// Accept bodies within `limits`.
    pub fn new(limits: BodyLimits) -> Self {
        Self { limits }
    }
}

impl<S> Layer<S> for ParseLayer {
    type Service = Parse<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Parse {
            inner,
            limits: self.limits,
        }
    }
}

/// See [`ParseLayer`].
#[derive(Debug, Clone)]
pub struct Parse<S> {
    inner: S,
    limits: BodyLimits,
}

impl<S, B> Service<Request<B>> for Parse<S>
where
    S: Service<LookupRequest, Response = Outcome, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    type Response = Outcome;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Outcome>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let limits = self.limits;
        Box::pin(async move {
            match parse(req, limits).await {
                Ok(lookup) => inner.call(lookup).await,
                Err(refusal) => Ok(*refusal),
            }
        })
    }
}

async fn parse<B>(req: Request<B>, limits: BodyLimits) -> Result<LookupRequest, Box<Outcome>>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let refuse = |e| Box::new(Outcome::error(e));
    let (parts, body) = req.into_parts();
    let (meta, principal) = caller(&parts).map_err(refuse)?;
    let asked: Asked = read_json(&parts.headers, body, &limits, "a lookup request")
        .await
        .map_err(refuse)?;
    match operator(&parts.headers) {
        Ok(operator) => Ok(LookupRequest {
            meta,
            principal,
            operator,
            asked,
        }),
        Err(e) => Err(Box::new(asked.describe(Outcome::error(e)))),
    }
}

/// The request's envelope and caller, put there by the layers above.
pub fn caller(parts: &http::request::Parts) -> Result<(RequestMeta, Principal), ApiError> {
    let meta = parts.extensions.get::<RequestMeta>().cloned();
    let principal = parts.extensions.get::<Principal>().cloned();
    match (meta, principal) {
        (Some(meta), Some(principal)) => Ok((meta, principal)),
        _ => Err(ApiError::Internal(
            "request meta or principal missing from request".into(),
        )),
    }
}

/// The operator id: present once, 1–64 visible ASCII characters.
pub fn operator(headers: &http::HeaderMap) -> Result<String, ApiError> {
    let mut values = headers.get_all(OPERATOR_HEADER).iter();
    let value = values
        .next()
        .ok_or_else(|| ApiError::Operator("X-Operator-Id header is required on lookups".into()))?;
    // Two clerks named: neither is taken on trust (the first used to win silently).
    if values.next().is_some() {
        return Err(ApiError::Operator(
            "X-Operator-Id header given more than once; name one clerk".into(),
        ));
    }
    let s = value
        .to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::Operator("X-Operator-Id must be 1-64 visible ASCII characters".into())
        })?;
    Ok(s.to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http::{Method, StatusCode};
    use serde_json::json;
    use tower::ServiceExt as _;

    use super::*;
    use crate::http::test_support::{
        body_limits, recorder, stamped, Seen, CASE_ID, MATTER, OPERATOR,
    };
    use crate::http::{Answer, Outcome};

    const LIMIT: usize = 512;

    fn body() -> serde_json::Value {
        json!({"dataset": "population", "subject": "110101199003074573", "matter": MATTER,
               "case_id": CASE_ID, "fields": ["name", "birth_date"]})
    }

    /// `req` through a parse layer over a recorder that answers 200.
    async fn parse(req: Request<http_body_util::Full<Bytes>>) -> (Outcome, Seen<LookupRequest>) {
        let (inner, seen) = recorder(|_: &LookupRequest| {
            Outcome::answer(Answer::Json {
                status: StatusCode::OK,
                body: json!({}),
            })
        });
        let outcome = ParseLayer::new(body_limits(LIMIT))
            .layer(inner)
            .oneshot(req)
            .await
            .unwrap();
        (outcome, seen)
    }

    #[tokio::test]
    async fn a_good_request_reaches_the_lookup_path_as_asked() {
        let req = stamped(Method::POST, "/v1/lookup", true, body().to_string());
        let id = req.extensions().get::<RequestMeta>().unwrap().id.clone();
        let (outcome, seen) = parse(req).await;
        assert_eq!(outcome.status(), StatusCode::OK);
        let [lookup] = &seen.take()[..] else {
            panic!("one lookup expected")
        };
        assert_eq!(lookup.operator, OPERATOR);
        assert_eq!(lookup.meta.id, id);
        assert_eq!(
            lookup.principal.identity.as_uri(),
            "urn:tongban:sz-hrss:counter-01"
        );
        let a = &lookup.asked;
        assert_eq!(
            (&*a.dataset, &*a.subject, &*a.matter, &*a.case_id),
            ("population", "110101199003074573", MATTER, CASE_ID)
        );
        assert_eq!(
            a.fields.as_deref(),
            Some(&["name".into(), "birth_date".into()][..])
        );
        assert_eq!(
            a.license_type, None,
            "a lookup body cannot name a licence type"
        );
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413() {
        let big = json!({"dataset": "x".repeat(LIMIT)}).to_string();
        let (outcome, seen) = parse(stamped(Method::POST, "/v1/lookup", true, big)).await;
        assert!(matches!(outcome.result, Err(ApiError::TooLarge(LIMIT))));
        assert_eq!(outcome.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(seen.take().is_empty());
    }

    #[tokio::test]
    async fn a_body_not_typed_as_json_is_415_and_not_read() {
        let mut req = stamped(Method::POST, "/v1/lookup", true, body().to_string());
        req.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain"),
        );
        let (outcome, seen) = parse(req).await;
        assert_eq!(outcome.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(seen.take().is_empty());
    }

    #[tokio::test]
    async fn a_body_that_is_not_a_lookup_is_400() {
        let mut unknown_member = body();
        unknown_member["license_type"] = json!("营业执照");
        for text in [
            "{not json".to_owned(),
            json!({"dataset": "population"}).to_string(),
            unknown_member.to_string(),
        ] {
            let (outcome, seen) = parse(stamped(Method::POST, "/v1/lookup", true, text)).await;
            let Err(e @ ApiError::BadRequest(m)) = &outcome.result else {
                panic!("{:?}", outcome.result)
            };
            assert!(m.starts_with("body is not a lookup request"), "{m}");
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            assert!(seen.take().is_empty());
        }
    }

    #[tokio::test]
    async fn a_missing_or_bad_operator_is_400_with_the_request_facts() {
        let without = stamped(Method::POST, "/v1/lookup", false, body().to_string());
        let mut bad: Vec<_> = ["", "clerk 001", &"c".repeat(65), "职员"]
            .into_iter()
            .map(|op| {
                let mut req = stamped(Method::POST, "/v1/lookup", false, body().to_string());
                req.headers_mut().insert(
                    OPERATOR_HEADER,
                    http::HeaderValue::from_bytes(op.as_bytes()).unwrap(),
                );
                req
            })
            .collect();
        bad.push(without);
        let mut twice = stamped(Method::POST, "/v1/lookup", true, body().to_string());
        twice
            .headers_mut()
            .append(OPERATOR_HEADER, http::HeaderValue::from_static("clerk-002"));
        bad.push(twice);
        for req in bad {
            let (outcome, seen) = parse(req).await;
            let Err(e @ ApiError::Operator(_)) = &outcome.result else {
                panic!("{:?}", outcome.result)
            };
            assert_eq!(e.slug(), "operator-required");
            assert!(e.to_string().contains("X-Operator-Id"), "{e}");
            assert_eq!(outcome.status(), StatusCode::BAD_REQUEST);
            // Refused, but audited with what was asked.
            let f = &outcome.facts;
            assert_eq!(f.dataset.as_deref(), Some("population"));
            assert_eq!(f.subject.as_deref(), Some("110101199003074573"));
            assert_eq!(f.matter.as_deref(), Some(MATTER));
            assert_eq!(f.case_id.as_deref(), Some(CASE_ID));
            assert!(seen.take().is_empty());
        }
    }

    #[tokio::test]
    async fn a_request_the_layers_above_did_not_stamp_is_an_internal_error() {
        let mut req = stamped(Method::POST, "/v1/lookup", true, body().to_string());
        req.extensions_mut().remove::<Principal>();
        let (outcome, seen) = parse(req).await;
        assert_eq!(outcome.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(seen.take().is_empty());
    }
}

/// Property tests of what a client sends to `/v1/lookup`: any body bytes and any
/// `X-Operator-Id` bytes are answered with a 4xx, never a panic; a well-formed
/// lookup reaches the lookup path as asked.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod fuzz {
    use http::{Method, StatusCode};
    use proptest::prelude::*;
    use serde_json::json;
    use tower::ServiceExt as _;

    use super::*;
    use crate::http::body::fuzz_support::{json_value, shaped};
    use crate::http::test_support::{body_limits, recorder, stamped, OPERATOR};
    use crate::http::{Answer, Outcome};

    const KEYS: &[&str] = &["dataset", "subject", "matter", "case_id", "fields"];

    /// `req` through a parse layer over a recorder answering 200, and what reached it.
    fn parsed(req: Request<http_body_util::Full<Bytes>>) -> (Outcome, Vec<LookupRequest>) {
        let (inner, seen) = recorder(|_: &LookupRequest| {
            Outcome::answer(Answer::Json {
                status: StatusCode::OK,
                body: json!({}),
            })
        });
        let outcome = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(ParseLayer::new(body_limits(4096)).layer(inner).oneshot(req))
            .unwrap();
        (outcome, seen.take())
    }

    /// Refused with a 4xx and nothing passed on, or passed on with a 200.
    fn answered_or_refused(outcome: &Outcome, seen: &[LookupRequest]) -> Result<(), TestCaseError> {
        match &outcome.result {
            Ok(_) => prop_assert_eq!(seen.len(), 1),
            Err(e) => {
                prop_assert!(e.status().is_client_error(), "{:?}", e);
                prop_assert!(seen.is_empty());
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_body_bytes_are_refused_with_a_4xx(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let (outcome, seen) = parsed(stamped(Method::POST, "/v1/lookup", true, bytes));
            answered_or_refused(&outcome, &seen)?;
        }

        #[test]
        fn any_json_body_is_answered_or_refused_with_a_4xx(
            body in prop_oneof![json_value(), shaped(KEYS)],
        ) {
            let (outcome, seen) =
                parsed(stamped(Method::POST, "/v1/lookup", true, body.to_string()));
            answered_or_refused(&outcome, &seen)?;
        }

        #[test]
        fn a_well_formed_lookup_arrives_as_asked(
            dataset in "\\PC{0,20}",
            subject in "\\PC{0,30}",
            matter in "\\PC{0,20}",
            case_id in "\\PC{0,20}",
            fields in proptest::option::of(proptest::collection::vec("\\PC{0,10}", 0..4)),
        ) {
            let body = json!({"dataset": dataset, "subject": subject, "matter": matter,
                              "case_id": case_id, "fields": fields});
            let (outcome, seen) =
                parsed(stamped(Method::POST, "/v1/lookup", true, body.to_string()));
            prop_assert!(outcome.result.is_ok(), "{:?}", outcome.result);
            let [lookup] = &seen[..] else { panic!("one lookup expected") };
            let a = &lookup.asked;
            prop_assert_eq!(
                (&a.dataset, &a.subject, &a.matter, &a.case_id, &a.fields),
                (&dataset, &subject, &matter, &case_id, &fields)
            );
            prop_assert_eq!(&lookup.operator, OPERATOR);
        }

        #[test]
        fn any_operator_bytes_are_taken_only_when_visible_ascii(
            values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..3),
        ) {
            let mut headers = http::HeaderMap::new();
            for v in &values {
                // What hyper would refuse never reaches us (NUL, CR, LF...).
                if let Ok(v) = http::HeaderValue::from_bytes(v) {
                    headers.append(OPERATOR_HEADER, v);
                }
            }
            let count = headers.get_all(OPERATOR_HEADER).iter().count();
            match operator(&headers) {
                Ok(s) => {
                    prop_assert_eq!(count, 1);
                    prop_assert!((1..=64).contains(&s.len()));
                    prop_assert!(s.bytes().all(|b| b.is_ascii_graphic()), "{:?}", s);
                }
                Err(e) => {
                    prop_assert_eq!(e.status(), StatusCode::BAD_REQUEST);
                    prop_assert!(e.to_string().contains("X-Operator-Id"), "{}", e);
                }
            }
        }
    }
}
