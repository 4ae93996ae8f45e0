//! Parse: turn an HTTP request into a [`LookupCall`], or refuse it with 400.
//!
//! Identifiers are validated here, before policy or any source sees them.

use std::task::{Context, Poll};

use bytes::Bytes;
use connectors::Dataset;
use http::Request;
use http_body::Body;
use http_body_util::{BodyExt as _, Limited};
use serde::Deserialize;
use tower::{Layer, Service};

use super::{take_ready, BoxFuture, Outcome, Principal, RequestMeta};
use crate::error::ApiError;

/// The header naming the clerk at the counter.
pub const OPERATOR_HEADER: &str = "x-operator-id";

/// A lookup that passed validation.
#[derive(Debug, Clone)]
pub struct LookupCall {
    /// Request envelope.
    pub meta: RequestMeta,
    /// Who asks.
    pub principal: Principal,
    /// The clerk.
    pub operator: String,
    /// Dataset.
    pub dataset: Dataset,
    /// Validated subject identifier.
    pub subject: String,
    /// Matter.
    pub matter: String,
    /// Case id.
    pub case_id: String,
    /// Fields asked for; `None` = all the agreement grants.
    pub fields: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupBody {
    dataset: String,
    subject: String,
    matter: String,
    case_id: String,
    #[serde(default)]
    fields: Option<Vec<String>>,
}

/// Parses and validates lookups.
#[derive(Debug, Clone)]
pub struct ParseLayer {
    max_body: usize,
}

impl ParseLayer {
    /// Accept bodies up to `max_body` bytes.
    pub fn new(max_body: usize) -> Self {
        Self { max_body }
    }
}

impl<S> Layer<S> for ParseLayer {
    type Service = Parse<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Parse {
            inner,
            max_body: self.max_body,
        }
    }
}

/// See [`ParseLayer`].
#[derive(Debug, Clone)]
pub struct Parse<S> {
    inner: S,
    max_body: usize,
}

impl<S, B> Service<Request<B>> for Parse<S>
where
    S: Service<LookupCall, Response = Outcome, Error = std::convert::Infallible>
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
        let max_body = self.max_body;
        Box::pin(async move {
            let call = match parse(req, max_body).await {
                Ok(call) => call,
                Err((e, body)) => return Ok(with_request_facts(Outcome::error(e), body.as_ref())),
            };
            let facts_src = FactsSource::from(&call);
            let outcome = inner.call(call).await?;
            Ok(facts_src.apply(outcome))
        })
    }
}

/// The request facts the audit wants even when the request is refused.
struct FactsSource {
    dataset: String,
    subject: String,
    matter: String,
    case_id: String,
}

impl From<&LookupCall> for FactsSource {
    fn from(c: &LookupCall) -> Self {
        Self {
            dataset: c.dataset.as_str().to_owned(),
            subject: c.subject.clone(),
            matter: c.matter.clone(),
            case_id: c.case_id.clone(),
        }
    }
}

impl FactsSource {
    fn apply(self, mut o: Outcome) -> Outcome {
        o.facts.dataset = Some(self.dataset);
        o.facts.subject = Some(self.subject);
        o.facts.matter = Some(self.matter);
        o.facts.case_id = Some(self.case_id);
        o
    }
}

fn with_request_facts(mut o: Outcome, body: Option<&LookupBody>) -> Outcome {
    if let Some(b) = body {
        o.facts.dataset = Some(b.dataset.clone());
        o.facts.subject = Some(b.subject.clone());
        o.facts.matter = Some(b.matter.clone());
        o.facts.case_id = Some(b.case_id.clone());
    }
    o
}

type Refusal = (ApiError, Option<LookupBody>);

async fn parse<B>(req: Request<B>, max_body: usize) -> Result<LookupCall, Refusal>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let (parts, body) = req.into_parts();
    let internal = |what: &str| {
        (
            ApiError::Internal(format!("{what} missing from request")),
            None,
        )
    };
    let meta = parts
        .extensions
        .get::<RequestMeta>()
        .cloned()
        .ok_or_else(|| internal("request meta"))?;
    let principal = parts
        .extensions
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| internal("principal"))?;
    let bytes = Limited::new(body, max_body)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                (ApiError::TooLarge(max_body), None)
            } else {
                (
                    ApiError::BadRequest(format!("reading the body failed: {e}")),
                    None,
                )
            }
        })?
        .to_bytes();
    let body: LookupBody = serde_json::from_slice(&bytes).map_err(|e| {
        (
            ApiError::BadRequest(format!("body is not a lookup request: {e}")),
            None,
        )
    })?;
    match validate(&parts.headers, &body) {
        Ok((operator, dataset, fields)) => Ok(LookupCall {
            meta,
            principal,
            operator,
            dataset,
            subject: body.subject,
            matter: body.matter,
            case_id: body.case_id,
            fields,
        }),
        Err(e) => Err((e, Some(body))),
    }
}

/// Check everything but policy; the order is the order errors are reported in.
fn validate(
    headers: &http::HeaderMap,
    body: &LookupBody,
) -> Result<(String, Dataset, Option<Vec<String>>), ApiError> {
    let operator = operator(headers)?;
    let dataset: Dataset = body
        .dataset
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("dataset: {e}")))?;
    dataset
        .validate_subject(&body.subject)
        .map_err(|error| ApiError::InvalidIdentifier {
            kind: subject_kind(dataset),
            subject: body.subject.clone(),
            error,
        })?;
    token("matter", &body.matter)?;
    token("case_id", &body.case_id)?;
    let fields = match &body.fields {
        None => None,
        Some(f) if f.is_empty() => {
            return Err(ApiError::BadRequest(
                "fields: must name at least one field, or be left out for all granted fields"
                    .into(),
            ))
        }
        Some(f) => {
            if let Some(unknown) = f.iter().find(|x| !dataset.fields().contains(&x.as_str())) {
                return Err(ApiError::BadRequest(format!(
                    "fields: {dataset} has no field {unknown:?}"
                )));
            }
            Some(f.clone())
        }
    };
    Ok((operator, dataset, fields))
}

fn subject_kind(d: Dataset) -> &'static str {
    match d {
        Dataset::Population => "resident ID number (GB 11643)",
        Dataset::LegalPerson => "unified social credit code (GB 32100)",
        Dataset::ELicense => "e-license identifier (GB/T 36904)",
    }
}

/// The operator id: present, 1–64 visible ASCII characters.
pub fn operator(headers: &http::HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(OPERATOR_HEADER)
        .ok_or_else(|| ApiError::Operator("X-Operator-Id header is required on lookups".into()))?;
    let s = value
        .to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::Operator("X-Operator-Id must be 1-64 visible ASCII characters".into())
        })?;
    Ok(s.to_owned())
}

fn token(name: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{name}: must be 1-64 characters of A-Z a-z 0-9 - _ . /"
        )))
    }
}
