//! Render: what an outcome is answered with, before its audit record is written —
//! JSON answers, and problem+json (RFC 9457) for errors.
//!
//! The record binds the SHA-256 of the answer's canonical JSON (`answer_sha256`);
//! the receipt, which only the commit can give, is added afterwards as the last
//! member, `audit` ([`Rendered::into_bytes`]). The bytes sent are the canonical JSON
//! with that member spliced in, so binding an answer costs one canonical
//! serialization and a hash.

use audit::Receipt;
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{json, Map, Value};

use super::{Answer, LookupAnswer, Outcome};
use crate::error::ApiError;

const JSON: &str = "application/json";
const PROBLEM: &str = "application/problem+json";

/// An answer as it will be sent, before its receipt is added.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The status sent.
    pub status: StatusCode,
    /// `application/json` or `application/problem+json`.
    pub content_type: &'static str,
    /// The `Allow` header of a 405.
    pub allow: Option<HeaderValue>,
    /// The body without its receipt.
    pub body: Map<String, Value>,
    /// Its RFC 8785 canonical JSON: what the record's `answer_sha256` covers (for a
    /// text answer, the text's bytes).
    pub canonical: Vec<u8>,
    /// A text answer (the auditor API's signed checkpoint note, a console page): sent
    /// as it is, its receipt in the `Audit-Receipt` header; its record binds the
    /// text's SHA-256.
    pub text: bool,
    /// More headers (a console page's security headers and cookies).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Rendered {
    /// `body` answered with `status` as `content_type`. A body without a canonical
    /// form cannot be bound to its record; it becomes a 500.
    pub fn json(status: StatusCode, content_type: &'static str, body: Map<String, Value>) -> Self {
        match audit::canonical_answer(&body) {
            Ok(canonical) => Self {
                status,
                content_type,
                allow: None,
                body,
                canonical,
                text: false,
                headers: Vec::new(),
            },
            Err(e) => {
                let e = ApiError::Internal(format!("the answer has no canonical JSON: {e}"));
                let body = problem_body(&e, "");
                // The problem document is strings and a number: always canonical.
                let canonical = audit::canonical_answer(&body).unwrap_or_default();
                Self {
                    status: e.status(),
                    content_type: PROBLEM,
                    allow: None,
                    body,
                    canonical,
                    text: false,
                    headers: Vec::new(),
                }
            }
        }
    }

    /// `text` answered as it is with `status` as `content_type`.
    pub fn text(status: StatusCode, content_type: &'static str, text: &str) -> Self {
        Self {
            status,
            content_type,
            allow: None,
            body: Map::new(),
            canonical: text.as_bytes().to_vec(),
            text: true,
            headers: Vec::new(),
        }
    }

    /// A console page: HTML (or an asset) sent as it is, with the console's
    /// security headers and the page's own.
    pub fn page(status: StatusCode, page: &super::Page) -> Self {
        let mut r = Self::text(status, page.content_type, &page.html);
        r.headers = crate::console::SECURITY_HEADERS
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .chain(page.headers.iter().cloned())
            .collect();
        r
    }

    /// SHA-256 of the canonical body, for the audit record.
    pub fn digest(&self) -> String {
        audit::answer_sha256(&self.canonical)
    }

    /// The body with its receipt as `audit` (a bundle's items are answered so).
    pub fn with_receipt(&self, receipt: Option<&Receipt>) -> Value {
        let mut body = self.body.clone();
        if let Some(r) = receipt {
            body.insert(audit::RECEIPT_MEMBER.into(), r.to_json());
        }
        Value::Object(body)
    }

    /// The bytes sent: the canonical body with the receipt spliced in as its last
    /// member.
    pub fn into_bytes(self, receipt: Option<&Receipt>) -> Vec<u8> {
        let mut out = self.canonical;
        let Some(r) = receipt.filter(|_| !self.text) else {
            return out;
        };
        // `{...}` → `{...,"audit":{...}}`; `{}` → `{"audit":{...}}`.
        if out.pop() != Some(b'}') {
            return out;
        }
        // One allocation for the receipt: the record and note, escaped, and the proof.
        out.reserve(r.record.len() * 9 / 8 + r.checkpoint.len() + 48 * r.inclusion.len() + 160);
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(b"\"audit\":");
        r.write_json(&mut out);
        out.push(b'}');
        out
    }
}

/// How `outcome` is answered, before its receipt.
pub fn rendered(outcome: &Outcome, request_id: &str) -> Rendered {
    if let Some(page) = &outcome.page {
        return Rendered::page(outcome.status(), page);
    }
    match &outcome.result {
        Ok(Answer::Lookup(l)) => Rendered::json(StatusCode::OK, JSON, lookup_body(l)),
        Ok(Answer::Json { status, body }) => match body {
            Value::Object(m) => Rendered::json(*status, JSON, m.clone()),
            // Every answer is an object, so that it can carry its receipt.
            other => Rendered::json(
                *status,
                JSON,
                Map::from_iter([("value".to_owned(), other.clone())]),
            ),
        },
        Ok(Answer::Text {
            status,
            content_type,
            body,
        }) => Rendered::text(*status, content_type, body),
        Err(e) => problem(e, request_id),
    }
}

/// The body of a lookup answer, before its receipt; bundle items reuse it.
pub fn lookup_body(l: &LookupAnswer) -> Map<String, Value> {
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
    });
    if let Some(check) = &l.verification {
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

/// An RFC 9457 problem answer. Internal and upstream details stay in the logs and
/// the audit record; the caller gets the title and a safe detail.
pub fn problem(e: &ApiError, request_id: &str) -> Rendered {
    let mut r = Rendered::json(e.status(), PROBLEM, problem_body(e, request_id));
    // RFC 9110 §15.5.6: a 405 says which methods the path serves.
    if let ApiError::Method { allow, .. } = e {
        r.allow = HeaderValue::from_str(&crate::error::allowed(allow)).ok();
    }
    r
}

/// The RFC 9457 problem document for `e` (also the `problem` of a failed bundle
/// item).
pub fn problem_body(e: &ApiError, request_id: &str) -> Map<String, Value> {
    let detail = match e {
        ApiError::Internal(_) | ApiError::Upstream { .. } => e.title().to_owned(),
        other => other.to_string(),
    };
    let mut body = Map::new();
    body.insert("type".into(), format!("/problems/{}", e.slug()).into());
    body.insert("title".into(), e.title().into());
    body.insert("status".into(), e.status().as_u16().into());
    body.insert("detail".into(), detail.into());
    body.insert("request_id".into(), request_id.into());
    if let Some((k, v)) = e.extension() {
        body.insert(k.into(), Value::String(v));
    }
    body
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::http::test_support::receipt;

    #[test]
    fn the_receipt_is_spliced_in_as_the_last_member() {
        let r = receipt(7);
        for body in [json!({}), json!({"b": [1, {"x": "}"}], "a": "张三"})] {
            let Value::Object(m) = body.clone() else {
                panic!()
            };
            let rendered = Rendered::json(StatusCode::OK, JSON, m);
            let sent: Value =
                serde_json::from_slice(&rendered.clone().into_bytes(Some(&r))).unwrap();
            let mut want = body.clone();
            want["audit"] = r.to_json();
            assert_eq!(sent, want);
            assert_eq!(rendered.with_receipt(Some(&r)), want);
            // Without a receipt, the canonical body as it is.
            assert_eq!(
                serde_json::from_slice::<Value>(&rendered.into_bytes(None)).unwrap(),
                body
            );
        }
    }
}
