//! `GET /openapi.json`: the OpenAPI 3.1 document of the counter, admin and auditor
//! APIs. It is kept in the repository (`docs/openapi.json`) and compiled in, so the
//! document served is the document reviewed; `tests/openapi.rs` checks the served API
//! against it.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, StatusCode};
use serde_json::Value;
use tower::util::BoxCloneSyncService;

use super::route::RouteService;
use super::{Answer, Outcome};
use crate::error::ApiError;

/// The path the document is served at.
pub const OPENAPI: &str = "/openapi.json";

/// The document as kept in the repository.
pub const DOCUMENT: &str = include_str!("../../../docs/openapi.json");

/// The document service. The document is parsed once; were it broken (the tests rule
/// that out) it would answer 500 rather than keep the gateway from starting.
pub fn openapi_service<B: Send + 'static>() -> RouteService<B> {
    let document: Result<Arc<Value>, String> = serde_json::from_str(DOCUMENT)
        .map(Arc::new)
        .map_err(|e| format!("the embedded docs/openapi.json is not JSON: {e}"));
    BoxCloneSyncService::new(tower::service_fn(move |_req: Request<B>| {
        let outcome = match &document {
            Ok(d) => Outcome::answer(Answer::Json {
                status: StatusCode::OK,
                body: d.as_ref().clone(),
            }),
            Err(e) => Outcome::error(ApiError::Internal(e.clone())),
        };
        std::future::ready(Ok::<_, Infallible>(outcome))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_document_is_openapi_3_1() {
        let doc: Value = serde_json::from_str(DOCUMENT).unwrap_or(Value::Null);
        assert!(doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")));
        assert!(doc["paths"][OPENAPI]["get"].is_object());
    }
}
