//! `GET /v1/catalogue`: the datasets this gateway shares, their owners and fields
//! (type, sharing class, description), the matters, the bundles — and, for the
//! caller, the agreements it holds and what each allows now (see
//! [`crate::catalogue`]). Any authenticated identity may read it; like every route
//! it answers an [`Outcome`], so the reading is audited and carries a receipt.

use std::sync::Arc;

use http::{Request, StatusCode};
use serde_json::json;
use tower::util::BoxCloneSyncService;

use super::route::RouteService;
use super::{Answer, Outcome, Principal, RequestMeta};
use crate::catalogue::Catalogue;
use crate::error::ApiError;
use crate::policy_sync::PolicyService;

/// The catalogue path.
pub const CATALOGUE: &str = "/v1/catalogue";

/// The catalogue service over `catalogue` and the agreements of `policy`.
pub fn catalogue_service<B: Send + 'static>(
    catalogue: Catalogue,
    policy: Arc<PolicyService>,
) -> RouteService<B> {
    BoxCloneSyncService::new(tower::service_fn(move |req: Request<B>| {
        let (catalogue, policy) = (catalogue.clone(), Arc::clone(&policy));
        let principal = req.extensions().get::<Principal>().cloned();
        let at = req
            .extensions()
            .get::<RequestMeta>()
            .map_or_else(chrono::Utc::now, |m| m.received_at);
        async move {
            let Some(principal) = principal else {
                return Ok(Outcome::error(ApiError::Internal(
                    "principal missing from request".into(),
                )));
            };
            let identity = principal.identity.as_uri();
            let outcome = match catalogue.for_caller(&policy, Some(identity), at).await {
                Ok(body) => {
                    let held = body["caller"]["agreements"].as_array().map_or(0, Vec::len);
                    let mut o = Outcome::answer(Answer::Json {
                        status: StatusCode::OK,
                        body,
                    });
                    o.facts.detail = Some(json!({"catalogue": {"agreements_held": held}}));
                    o
                }
                Err(e) => Outcome::error(ApiError::Internal(format!("catalogue: {e}"))),
            };
            Ok::<_, std::convert::Infallible>(outcome)
        }
    }))
}
