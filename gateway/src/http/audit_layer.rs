//! Audit: no answer leaves without its record durably in the log, and every record
//! of an answered request binds the digest of the answer sent.

use std::task::{Context, Poll};
use std::time::Instant;

use audit::{AuditEntry, AuditLog, Decision, Receipt};
use http::Request;
use tower::{Layer, Service};
use tracing::Instrument as _;

use super::parse::OPERATOR_HEADER;
use super::render::{problem, rendered, Rendered};
use super::run_to_end::RunToEnd;
use super::{take_ready, BoxFuture, Outcome, Principal, RequestMeta};
use crate::error::ApiError;

/// An outcome, the answer rendered from it and, when it was recorded, where. An
/// outcome without a receipt is always the audit-unavailable error: nothing else may
/// be answered unrecorded.
#[derive(Debug, Clone)]
pub struct Audited {
    /// What the request came to.
    pub outcome: Outcome,
    /// The answer, as its record binds it.
    pub rendered: Rendered,
    /// Where its audit record is.
    pub receipt: Option<Receipt>,
    /// The request id.
    pub request_id: String,
}

/// Writes one audit record per request and waits for its commit.
#[derive(Clone)]
pub struct AuditLayer {
    log: AuditLog,
    node: String,
}

impl AuditLayer {
    /// Record into `log`, naming this gateway `node`.
    pub fn new(log: AuditLog, node: String) -> Self {
        Self { log, node }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = AuditService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuditService {
            inner,
            log: self.log.clone(),
            node: self.node.clone(),
        }
    }
}

/// See [`AuditLayer`].
#[derive(Clone)]
pub struct AuditService<S> {
    inner: S,
    log: AuditLog,
    node: String,
}

impl<S, B> Service<Request<B>> for AuditService<S>
where
    S: Service<Request<B>, Response = Outcome, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Audited;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Audited>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let envelope = Envelope::of(&req, &self.node);
        let mut inner = take_ready(&mut self.inner);
        let log = self.log.clone();
        let request_id = envelope.request_id().to_owned();
        let work = async move {
            let outcome = inner.call(req).await?;
            let id = envelope.request_id().to_owned();
            Ok(envelope.commit(&log, outcome, |o| rendered(o, &id)).await)
        };
        // A client that hangs up mid-request drops this service's future, but the
        // request may already have read a record from a source, so it runs to its
        // audit record regardless.
        let work = RunToEnd::new(work.in_current_span());
        Box::pin(async move {
            match work.await {
                Ok(audited) => audited,
                Err(_) => {
                    tracing::error!(request_id = %request_id, "request panicked");
                    // Unrecorded, so nothing but that failure is answered.
                    let e = ApiError::AuditUnavailable;
                    Ok(Audited {
                        rendered: problem(&e, &request_id),
                        outcome: Outcome::error(e),
                        receipt: None,
                        request_id,
                    })
                }
            }
        })
    }
}

/// What a request's audit record holds before the request runs: when, who, how.
/// Every record of the request (a bundle writes one per item) starts from it.
#[derive(Debug, Clone)]
pub struct Envelope {
    entry: AuditEntry,
    started: Option<Instant>,
}

impl Envelope {
    /// The envelope of `req`, recorded by gateway `node`.
    pub fn of<B>(req: &Request<B>, node: &str) -> Self {
        let meta = req.extensions().get::<RequestMeta>();
        let principal = req.extensions().get::<Principal>();
        let entry = AuditEntry {
            time: meta
                .map(|m| {
                    m.received_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                })
                .unwrap_or_default(),
            request_id: meta.map(|m| m.id.clone()).unwrap_or_default(),
            node: node.to_owned(),
            consumer: principal.map(|p| p.identity.to_string()),
            cert_fingerprint: principal.map(|p| p.fingerprint.clone()),
            operator: as_received(req.headers()),
            method: req.method().to_string(),
            path: req.uri().path().chars().take(256).collect(),
            ..AuditEntry::default()
        };
        Self {
            entry,
            started: meta.map(|m| m.started),
        }
    }

    /// The request id the records carry.
    pub fn request_id(&self) -> &str {
        &self.entry.request_id
    }

    /// The record of `outcome`: the envelope, what the request learned, how it ended.
    pub fn record(&self, o: &Outcome) -> AuditEntry {
        let mut e = self.entry.clone();
        let f = &o.facts;
        e.matter = f.matter.clone();
        e.case_id = f.case_id.clone();
        e.dataset = f.dataset.clone();
        e.subject = f.subject.clone();
        e.agreement = f.agreement.clone();
        e.detail = f.detail.clone();
        e.source_us = f.source_us;
        e.status = o.status().as_u16();
        match &o.result {
            Ok(_) => {
                e.fields = f.fields.clone();
                e.decision = f.decision.unwrap_or(Decision::Allow);
            }
            Err(err) => {
                // The policy verdict when one was reached (a 404 after an allow is
                // still an allowed access), otherwise deny or error by the kind of
                // failure.
                e.decision = f.decision.unwrap_or(match err {
                    ApiError::Forbidden(_) => Decision::Deny,
                    _ => Decision::Error,
                });
                e.reason = Some(err.audit_reason());
            }
        }
        e.latency_us = self
            .started
            .map(|t| u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX))
            .unwrap_or_default();
        e
    }

    /// Renders the answer to `outcome` with `render`, appends the record of both and
    /// waits for its durable commit. An outcome whose record cannot be written
    /// becomes audit-unavailable: it is never answered unrecorded.
    pub async fn commit(
        &self,
        log: &AuditLog,
        outcome: Outcome,
        render: impl Fn(&Outcome) -> Rendered,
    ) -> Audited {
        let request_id = self.entry.request_id.clone();
        if let Err(e) = &outcome.result {
            if let Some(internals) = e.internals() {
                // Officers find why by the request id; the record says only the kind.
                tracing::warn!(request_id = %request_id, status = e.status().as_u16(), error = internals, "request failed");
            }
        }
        let rendered = render(&outcome);
        let mut entry = self.record(&outcome);
        entry.answer_sha256 = Some(rendered.digest());
        match log
            .append(entry)
            .instrument(tracing::info_span!("audit"))
            .await
        {
            Ok(receipt) => Audited {
                outcome,
                rendered,
                receipt: Some(receipt),
                request_id,
            },
            Err(e) => {
                tracing::error!(error = %e, status = outcome.status().as_u16(), "audit write failed; answering 503 without the record");
                // What was asked stays (a bundle reports its item by it); the policy
                // verdict goes: nothing was answered, so it counts as an error.
                let mut failed = Outcome::error(ApiError::AuditUnavailable);
                failed.facts = outcome.facts;
                failed.facts.decision = None;
                Audited {
                    rendered: render(&failed),
                    outcome: failed,
                    receipt: None,
                    request_id,
                }
            }
        }
    }
}

/// The `X-Operator-Id` as received, even when it is refused, so officers see what a
/// refused request claimed: every value (joined as an HTTP list), decoded lossily,
/// control characters escaped, at most 64 characters.
fn as_received(headers: &http::HeaderMap) -> Option<String> {
    let values: Vec<_> = headers
        .get_all(OPERATOR_HEADER)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    if values.is_empty() {
        return None;
    }
    let mut out = String::new();
    for c in values.join(", ").chars() {
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Some(out.chars().take(64).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::Bytes;
    use http::{Method, StatusCode};
    use http_body_util::Full;
    use policy::Denial;
    use serde_json::json;
    use tower::ServiceExt as _;

    use super::*;
    use crate::http::test_support::{recorder, records, stamped, Fixture, OPERATOR};
    use crate::http::Answer;

    fn denied() -> ApiError {
        ApiError::Forbidden(Denial::FieldNotAllowed {
            agreement: "hrss-population".into(),
            field: "sex".into(),
        })
    }

    /// An allowed lookup's outcome, its facts filled as the lookup path fills them.
    fn allowed() -> Outcome {
        let mut o = Outcome::answer(Answer::Json {
            status: StatusCode::OK,
            body: json!({}),
        });
        o.facts.dataset = Some("population".into());
        o.facts.subject = Some("110101199003074573".into());
        o.facts.matter = Some("social-insurance-enrollment".into());
        o.facts.case_id = Some("SB-2026-000123".into());
        o.facts.fields = vec!["name".into()];
        o.facts.agreement = Some("hrss-population".into());
        o.facts.decision = Some(Decision::Allow);
        o
    }

    /// `req` through an audit layer over `log` whose inner service answers `outcome`.
    async fn audited(log: &AuditLog, req: Request<Full<Bytes>>, outcome: Outcome) -> Audited {
        let (inner, _) = recorder(move |_: &Request<Full<Bytes>>| outcome.clone());
        AuditLayer::new(log.clone(), "gw-test".into())
            .layer(inner)
            .oneshot(req)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn every_outcome_is_appended_with_its_envelope() {
        let f = Fixture::new().await;
        let log = f.audit().await;
        let req = stamped(Method::POST, "/v1/lookup", true, "");
        let meta = req.extensions().get::<RequestMeta>().unwrap().clone();
        let ok = audited(&log, req, allowed()).await;
        let refused = audited(
            &log,
            stamped(Method::POST, "/v1/lookup", true, ""),
            Outcome::error(denied()),
        )
        .await;
        assert_eq!(ok.receipt.as_ref().map(|r| r.seq), Some(1));
        assert_eq!(ok.request_id, meta.id);
        assert_eq!(refused.receipt.as_ref().map(|r| r.seq), Some(2));
        assert_eq!(refused.outcome.status(), StatusCode::FORBIDDEN);

        let [first, second] = &records(&log).await[..] else {
            panic!("two records expected")
        };
        for e in [first, second] {
            assert_eq!(
                e.consumer.as_deref(),
                Some("urn:tongban:sz-hrss:counter-01")
            );
            assert_eq!(e.cert_fingerprint.as_deref(), Some(&*"ab".repeat(32)));
            assert_eq!(e.operator.as_deref(), Some(OPERATOR));
            assert_eq!(
                (&*e.method, &*e.path, &*e.node),
                ("POST", "/v1/lookup", "gw-test")
            );
        }
        assert_eq!(first.request_id, meta.id);
        assert_eq!(
            first.time,
            meta.received_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        );
        assert_eq!((first.status, first.decision), (200, Decision::Allow));
        assert_eq!(first.fields, vec!["name"]);
        assert_eq!(first.subject.as_deref(), Some("110101199003074573"));
        assert_eq!(first.agreement.as_deref(), Some("hrss-population"));
        assert_eq!(first.reason, None);
        assert_eq!((second.status, second.decision), (403, Decision::Deny));
        assert!(
            second
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("field-not-allowed: ")),
            "{:?}",
            second.reason
        );
    }

    #[tokio::test]
    async fn an_outcome_the_log_cannot_take_is_audit_unavailable_without_data() {
        let f = Fixture::new().await;
        let log = f.audit().await;
        log.close().await;
        let a = audited(
            &log,
            stamped(Method::POST, "/v1/lookup", true, ""),
            allowed(),
        )
        .await;
        assert!(
            matches!(a.outcome.result, Err(ApiError::AuditUnavailable)),
            "{:?}",
            a.outcome.result
        );
        assert_eq!(a.outcome.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(a.receipt.is_none());
        // What was asked is kept; the answer and the verdict are gone.
        assert_eq!(a.outcome.facts.dataset.as_deref(), Some("population"));
        assert_eq!(a.outcome.facts.decision, None);
        assert!(records(&log).await.is_empty());
    }

    #[test]
    fn the_record_takes_its_decision_from_the_facts_or_the_failure() {
        let req = stamped(Method::POST, "/v1/lookup", true, "");
        let envelope = Envelope::of(&req, "gw-test");
        let not_found = |decision| {
            let mut o = Outcome::error(ApiError::NotFound {
                dataset: "population".into(),
            });
            o.facts.decision = decision;
            o
        };
        let cases = [
            (allowed(), Decision::Allow, None),
            // A success without a verdict (an admin answer) is an allow.
            (
                Outcome::answer(Answer::Json {
                    status: StatusCode::CREATED,
                    body: json!({}),
                }),
                Decision::Allow,
                None,
            ),
            (
                Outcome::error(denied()),
                Decision::Deny,
                Some("field-not-allowed"),
            ),
            // A 404 after an allow is still an allowed access.
            (
                not_found(Some(Decision::Allow)),
                Decision::Allow,
                Some("no population record"),
            ),
            (
                not_found(None),
                Decision::Error,
                Some("no population record"),
            ),
            (
                Outcome::error(ApiError::Internal("disk".into())),
                Decision::Error,
                Some("internal: "),
            ),
        ];
        for (o, decision, reason) in cases {
            let e = envelope.record(&o);
            assert_eq!(e.decision, decision, "{o:?}");
            assert_eq!(e.status, o.status().as_u16());
            match reason {
                None => assert_eq!(e.reason, None),
                Some(r) => assert!(
                    e.reason.as_deref().is_some_and(|x| x.starts_with(r)),
                    "{:?}",
                    e.reason
                ),
            }
            // Fields are recorded only when something was returned.
            assert_eq!(
                e.fields.is_empty(),
                o.result.is_err() || o.facts.fields.is_empty()
            );
        }
    }

    #[test]
    fn the_envelope_bounds_what_the_client_sends() {
        let mut req = stamped(Method::GET, &format!("/{}", "p".repeat(300)), false, "");
        req.headers_mut()
            .insert(OPERATOR_HEADER, "o".repeat(100).parse().unwrap());
        let e =
            Envelope::of(&req, "gw-test").record(&Outcome::error(ApiError::NoRoute(String::new())));
        assert_eq!(e.path.chars().count(), 256);
        assert_eq!(e.operator.map(|o| o.len()), Some(64));
        assert_eq!(e.method, "GET");
    }

    #[test]
    fn a_refused_operator_is_recorded_as_received() {
        let operator = |values: &[&[u8]]| {
            let mut req = stamped(Method::POST, "/v1/lookup", false, "");
            for v in values {
                req.headers_mut()
                    .append(OPERATOR_HEADER, http::HeaderValue::from_bytes(v).unwrap());
            }
            let o = Outcome::error(ApiError::Operator(String::new()));
            Envelope::of(&req, "gw-test").record(&o).operator
        };
        assert_eq!(operator(&[]), None);
        assert_eq!(operator(&["职员".as_bytes()]).as_deref(), Some("职员"));
        assert_eq!(
            operator(&[b"clerk\tone"]).as_deref(),
            Some("clerk\\u{9}one")
        );
        assert_eq!(
            operator(&[b"\xff\xfeclerk"]).as_deref(),
            Some("\u{fffd}\u{fffd}clerk")
        );
        assert_eq!(
            operator(&[b"clerk-001", b"clerk-002"]).as_deref(),
            Some("clerk-001, clerk-002")
        );
        let long = "职".repeat(100);
        assert_eq!(
            operator(&[long.as_bytes()]).map(|o| o.chars().count()),
            Some(64)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// Whatever bytes a client puts in `X-Operator-Id`, the record holds at most 64
        /// characters and no control character.
        #[test]
        fn any_operator_bytes_are_recorded_bounded_and_printable(
            values in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), 0..4),
        ) {
            let mut req = stamped(Method::POST, "/v1/lookup", false, "");
            for v in &values {
                if let Ok(v) = http::HeaderValue::from_bytes(v) {
                    req.headers_mut().append(OPERATOR_HEADER, v);
                }
            }
            let o = Outcome::error(ApiError::Operator(String::new()));
            let recorded = Envelope::of(&req, "gw-test").record(&o).operator;
            let any = req.headers().contains_key(OPERATOR_HEADER);
            proptest::prop_assert_eq!(recorded.is_some(), any);
            let recorded = recorded.unwrap_or_default();
            proptest::prop_assert!(recorded.chars().count() <= 64, "{:?}", recorded);
            proptest::prop_assert!(!recorded.chars().any(char::is_control), "{:?}", recorded);
        }
    }
}
