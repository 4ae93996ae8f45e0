//! The counter API: the request path as tower layers over a hyper connection.
//!
//! ```text
//!  TLS accept ─▶ Principal (from the client certificate's URI SAN)
//!   └▶ meta       request id, clock, tracing span
//!    └▶ identity  puts the Principal on the request, drops identity headers
//!     └▶ respond  signs records, renders problem+json — the only place that does
//!      └▶ audit   appends the record and waits for its durable commit (fail-closed)
//!       └▶ limit  each identity its share of requests (429), then the global limit (503), audited
//!        └▶ route  /v1/lookup, /v1/bundle, /v1/catalogue, /.well-known/jwks.json, /openapi.json, admin (agreements, requests, usage),
//!                  auditor, citizen, the console (HTML pages over the admin and auditor functions)
//!         └▶ parse (lookup) or bundle   body, X-Operator-Id (400)
//!          └▶ the lookup path, once per lookup or bundle item (lookup.rs):
//!             validate   dataset, identifier rules, matter, case id, fields (400)
//!             authorize  sharing agreement via the policy crate (403/429)
//!             fetch      connector lookup, field filter and masking (404/5xx)
//! ```

pub mod admin;
pub mod audit_api;
pub mod audit_layer;
pub mod audit_reports;
pub mod authorize;
pub mod body;
pub mod bundle;
pub mod catalogue;
pub mod citizen;
pub mod fetch;
pub mod identity;
pub mod limit;
pub mod lookup;
pub mod meta;
pub mod metrics_layer;
pub mod openapi;
pub mod ops;
pub mod parse;
pub mod render;
pub mod requests_api;
pub mod respond;
pub mod route;
pub mod run_to_end;
pub mod stack;
#[cfg(test)]
pub(crate) mod test_support;
pub mod usage;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use connectors::{Dataset, Record};
use serde_json::Value;

use audit::Decision;

use crate::error::ApiError;

pub use identity::Principal;
pub use meta::RequestMeta;

/// The future type of the layers in this module: they never fail, an error is an
/// [`Outcome`] like any other, so that it gets audited.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

/// What the audit log needs to know about a request beyond its envelope, filled in by
/// the layers that learn it.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Matter named.
    pub matter: Option<String>,
    /// Case id named.
    pub case_id: Option<String>,
    /// Dataset asked.
    pub dataset: Option<String>,
    /// Subject asked.
    pub subject: Option<String>,
    /// Fields returned.
    pub fields: Vec<String>,
    /// Agreement that decided.
    pub agreement: Option<String>,
    /// Policy verdict, when one was reached.
    pub decision: Option<Decision>,
    /// Microseconds the source took to answer or fail, when one was called.
    pub source_us: Option<u64>,
    /// Anything else worth recording for non-lookup requests (an agreement change's
    /// before and after, an audit search's filters). Never record contents.
    pub detail: Option<Value>,
}

impl Facts {
    /// Adds the members of `more` (an object) to `detail`, creating it if needed.
    pub fn merge_detail(&mut self, more: Value) {
        let Value::Object(more) = more else { return };
        match &mut self.detail {
            Some(Value::Object(d)) => d.extend(more),
            _ => self.detail = Some(Value::Object(more)),
        }
    }
}

/// A successful answer before it is audited and rendered.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A record lookup.
    Lookup(LookupAnswer),
    /// A JSON document (bundle, JWKS, admin and auditor API answers); like every
    /// answer it gets its receipt as `audit`.
    Json {
        /// 200, 201, …
        status: http::StatusCode,
        /// The document.
        body: Value,
    },
    /// A text answered as it is (the auditor API's signed checkpoint note).
    Text {
        /// 200, …
        status: http::StatusCode,
        /// Its `Content-Type`.
        content_type: &'static str,
        /// The text.
        body: String,
    },
}

/// The record and where it came from.
#[derive(Debug, Clone)]
pub struct LookupAnswer {
    /// Request id.
    pub request_id: String,
    /// Dataset.
    pub dataset: Dataset,
    /// Subject.
    pub subject: String,
    /// Fields returned.
    pub record: Record,
    /// Which of them are masked.
    pub masked: Vec<String>,
    /// Owning department.
    pub department: String,
    /// Connector name.
    pub connector: String,
    /// RFC 3339 time of the fetch.
    pub fetched_at: String,
    /// Agreement that allowed it.
    pub agreement: String,
    /// E-licences: whether the issuer signature holds (checked before filtering).
    pub verification: Option<connectors::Verification>,
}

/// An HTML page of the console: how it shows an outcome instead of JSON or
/// problem+json. The outcome underneath is the one the API would have given (same
/// facts, decision and reason), so the page's audit record is the API call's.
#[derive(Debug, Clone)]
pub struct Page {
    /// The status sent when it is not the outcome's (a 303 after a form).
    pub status: Option<http::StatusCode>,
    /// The document.
    pub html: String,
    /// `text/html; charset=utf-8`, or the type of an embedded asset.
    pub content_type: &'static str,
    /// More headers: `Set-Cookie`, `Location`.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// The result of a request, on its way up the stack to be audited and rendered.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Facts for the audit record.
    pub facts: Facts,
    /// The answer or the error.
    pub result: Result<Answer, ApiError>,
    /// The console's page of it; `None` for the APIs.
    pub page: Option<Box<Page>>,
}

impl Outcome {
    /// An error outcome with no facts yet.
    pub fn error(e: ApiError) -> Self {
        Self {
            facts: Facts::default(),
            result: Err(e),
            page: None,
        }
    }

    /// A successful outcome with no facts yet.
    pub fn answer(a: Answer) -> Self {
        Self {
            facts: Facts::default(),
            result: Ok(a),
            page: None,
        }
    }

    /// The HTTP status it will be answered with.
    pub fn status(&self) -> http::StatusCode {
        if let Some(status) = self.page.as_ref().and_then(|p| p.status) {
            return status;
        }
        match &self.result {
            Ok(Answer::Json { status, .. } | Answer::Text { status, .. }) => *status,
            Ok(Answer::Lookup(_)) => http::StatusCode::OK,
            Err(e) => e.status(),
        }
    }
}

/// Swap a ready inner service out of `slot`, the tower idiom for calling a cloned
/// service inside a `'static` future.
pub(crate) fn take_ready<S: Clone>(slot: &mut S) -> S {
    let clone = slot.clone();
    std::mem::replace(slot, clone)
}
