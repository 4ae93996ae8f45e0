//! The request path, stacked in one place.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use connectors::Dataset;
use http::{Method, Request, Response};
use http_body::Body;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceBuilder};

use super::admin::{
    agreements_service, explain_service, roles_service, AGREEMENTS, EXPLAIN, ROLES,
};
use super::audit_api::{
    log_service, records_service, CHECKPOINT, CONSISTENCY, ENTRIES, INCLUSION, RECORDS,
};
use super::audit_layer::{AuditLayer, Audited};
use super::audit_reports::{reports_service, ANOMALIES, HEALTH, STATS, SUBJECTS};
use super::authorize::AuthorizeLayer;
use super::body::BodyLimits;
use super::bundle::{bundle_service, BUNDLE};
use super::catalogue::{catalogue_service, CATALOGUE};
use super::citizen::{accesses_service, Names, ACCESSES};
use super::fetch::Fetch;
use super::identity::IdentityLayer;
use super::limit::{IdentityShare, IdentityShareLayer, Shed, ShedLayer};
use super::lookup::{Datasets, LookupService, ValidateLayer};
use super::meta::MetaLayer;
use super::metrics_layer::MetricsLayer;
use super::openapi::{openapi_service, OPENAPI};
use super::parse::ParseLayer;
use super::requests_api::{requests_service, REQUESTS};
use super::respond::{RespondLayer, ResponseBody};
use super::route::{RouteService, Router, LOOKUP};
use super::usage::{providers, usage_service, USAGE};
use super::Principal;
use crate::app::App;
use crate::console::{console_service, CONSOLE};
use crate::policy_sync::PolicyService;
use crate::sources::Route;

/// The lookup path: validate, authorize, fetch. Built once per gateway and shared by
/// every endpoint that looks records up.
pub fn lookup_service(
    datasets: Datasets,
    policy: Arc<PolicyService>,
    routes: Arc<HashMap<Dataset, Route>>,
) -> LookupService {
    let svc = ServiceBuilder::new()
        // Unknown datasets and malformed identifiers stop here, before policy or any source.
        .layer(ValidateLayer::new(datasets))
        // Default deny: only an agreement lets a lookup through; quotas and rates counted.
        .layer(AuthorizeLayer::new(policy))
        // The owning department's source, fields filtered and masked.
        .service(Fetch::new(routes));
    BoxCloneSyncService::new(svc)
}

/// `/v1/lookup`: the body parsed, then the lookup path.
fn lookup_route<B>(body: BodyLimits, lookup: LookupService) -> RouteService<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let svc = ServiceBuilder::new()
        // Malformed bodies and a missing operator stop here.
        .layer(ParseLayer::new(body))
        .service(lookup);
    BoxCloneSyncService::new(svc)
}

/// Every endpoint of the counter listener, one line each.
pub fn router<B>(app: &App) -> Router<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    // One lookup path, shared by lookups and every bundle item.
    let datasets: Datasets = app.config.datasets.clone().into();
    let lookup = lookup_service(
        Arc::clone(&datasets),
        Arc::clone(&app.policy),
        Arc::clone(&app.routes),
    );
    let body = BodyLimits::from(&app.config.limits);
    let bundles = bundle_service(
        &app.config.bundles,
        datasets,
        lookup.clone(),
        app.audit.clone(),
        app.config.node.clone(),
        body,
    );
    let agreements = agreements_service(Arc::clone(&app.policy), body);
    let requests = requests_service(Arc::clone(&app.requests), body);
    // Auditors and monitors following the Merkle tree.
    let follow = log_service(app.audit.clone(), Arc::clone(&app.policy.authorizer));
    let reports = reports_service(app.reports.clone());
    Router::new(app.signer.jwks())
        .route(&[Method::POST], LOOKUP, lookup_route(body, lookup))
        .route(&[Method::POST], BUNDLE, bundles)
        // What is shared, and what the caller may ask of it today.
        .route(
            &[Method::GET],
            CATALOGUE,
            catalogue_service(
                crate::catalogue::Catalogue::new(&app.config),
                Arc::clone(&app.policy),
            ),
        )
        .route(
            &[Method::GET],
            OPENAPI,
            openapi_service(&app.config.datasets),
        )
        .prefix(
            &[Method::GET],
            RECORDS,
            records_service(
                app.audit.store().clone(),
                Arc::clone(&app.policy.authorizer),
            ),
        )
        .route(&[Method::GET], CHECKPOINT, follow.clone())
        .route(&[Method::GET], INCLUSION, follow.clone())
        .route(&[Method::GET], CONSISTENCY, follow.clone())
        .route(&[Method::GET], ENTRIES, follow)
        // Reports over the log: citizen report, anomalies, chart counts, health.
        .below(&[Method::GET], SUBJECTS, reports.clone())
        .route(&[Method::GET], ANOMALIES, reports.clone())
        .route(&[Method::GET], STATS, reports.clone())
        .route(&[Method::GET], HEALTH, reports)
        // The collection and one agreement serve different methods (each 405's Allow).
        .route(&[Method::GET, Method::POST], AGREEMENTS, agreements.clone())
        .at_depth(
            &[Method::GET, Method::PUT, Method::DELETE],
            AGREEMENTS,
            1,
            agreements.clone(),
        )
        // One agreement's history.
        .at_depth(&[Method::GET], AGREEMENTS, 2, agreements)
        .route(
            &[Method::GET],
            EXPLAIN,
            explain_service(Arc::clone(&app.policy)),
        )
        .route(
            &[Method::GET, Method::POST, Method::DELETE],
            ROLES,
            roles_service(Arc::clone(&app.policy), body),
        )
        // Access requests: the collection, one request, its review steps.
        .route(&[Method::GET, Method::POST], REQUESTS, requests.clone())
        .at_depth(&[Method::GET], REQUESTS, 1, requests.clone())
        .at_depth(&[Method::POST], REQUESTS, 2, requests)
        // Usage figures from the audit records, scoped by the caller's role.
        .route(
            &[Method::GET],
            USAGE,
            usage_service(
                app.audit.store().clone(),
                Arc::clone(&app.policy.authorizer),
                Arc::new(providers(&app.config)),
            ),
        )
        // The citizen portal: who looked at a citizen's records.
        .route(
            &[Method::GET],
            ACCESSES,
            accesses_service(
                app.audit.store().clone(),
                Arc::clone(&app.policy.authorizer),
                Arc::new(Names::of(&app.config)),
            ),
        )
        // The web console: HTML pages over the same functions, audited the same way.
        .prefix(
            crate::console::METHODS,
            CONSOLE,
            console_service(Arc::clone(&app.console)),
        )
}

/// The whole counter API for one mTLS connection whose certificate gave `principal`;
/// `over_connections` is the identity's connection share when this connection is
/// beyond it (its requests are refused, audited).
pub fn counter_service<B>(
    app: &App,
    router: Router<B>,
    principal: Principal,
    over_connections: Option<usize>,
) -> impl Service<Request<B>, Response = Response<ResponseBody>, Error = Infallible, Future: Send>
       + Clone
       + Send
       + Sync
       + 'static
where
    B: Send + 'static,
{
    // Fail-closed: nothing is answered that is not durably recorded.
    let audit = AuditLayer::new(app.audit.clone(), app.config.node.clone());
    counter_service_with(app, router, principal, over_connections, audit)
}

/// The layers below audit, as [`counter_service`] stacks them over `router`.
pub type BelowAudit<B> = IdentityShare<Shed<Router<B>>>;

/// [`counter_service`] with `audit` in the audit layer's place, every other layer
/// the same. The product always passes [`AuditLayer`]; the benchmark harness passes
/// one that records nothing, to measure what durable audit costs.
pub fn counter_service_with<B, A>(
    app: &App,
    router: Router<B>,
    principal: Principal,
    over_connections: Option<usize>,
    audit: A,
) -> impl Service<Request<B>, Response = Response<ResponseBody>, Error = Infallible, Future: Send>
       + Clone
       + Send
       + Sync
       + 'static
where
    B: Send + 'static,
    A: Layer<BelowAudit<B>>,
    A::Service: Service<Request<B>, Response = Audited, Error = Infallible, Future: Send>
        + Clone
        + Send
        + Sync
        + 'static,
{
    ServiceBuilder::new()
        // Request id, clock and the request span come first, so everything is inside them.
        .layer(MetaLayer)
        // Identity is the certificate's; client-sent identity headers are dropped.
        .layer(IdentityLayer::new(principal))
        // Bytes on the wire: the answer audit rendered and bound, with its receipt.
        .layer(RespondLayer)
        // Counted once recorded: the figures match the audit log.
        .layer(MetricsLayer::new(
            app.metrics.clone(),
            app.config.datasets.iter().map(|d| d.dataset.to_string()),
        ))
        .layer(audit)
        // Each identity its share, below the global limit: one client cannot starve
        // the others. An outcome, so it is audited.
        .layer(IdentityShareLayer::new(
            Arc::clone(&app.request_shares),
            over_connections,
        ))
        // Shed beyond the concurrency limit, as an outcome so it is audited.
        .layer(ShedLayer::new(Arc::clone(&app.in_flight)))
        .service(router)
}
