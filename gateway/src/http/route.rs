//! Route: which endpoint a request is for. Every route answers with an [`Outcome`],
//! so unknown paths are audited like everything else.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, StatusCode};
use serde_json::Value;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt as _};

use super::{Answer, BoxFuture, Outcome};
use crate::error::ApiError;

/// The lookup path.
pub const LOOKUP: &str = "/v1/lookup";
/// The signing key set.
pub const JWKS: &str = "/.well-known/jwks.json";

/// A service answering one route.
pub type RouteService<B> = BoxCloneSyncService<Request<B>, Outcome, Infallible>;

/// One endpoint as a router serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Methods served.
    pub methods: Vec<Method>,
    /// The path.
    pub path: &'static str,
    /// Whether paths below it (`path/…`) are served too.
    pub prefix: bool,
}

/// How a route matches a path.
#[derive(Debug, Clone, Copy)]
enum PathMatch {
    Exact(&'static str),
    /// The path itself or anything below it (`/audit/v1/records/…`).
    Prefix(&'static str),
    /// Only what is below the path (`/admin/v1/agreements/{id}`), when the path itself
    /// serves other methods.
    Below(&'static str),
    /// Exactly `n` segments below the path (`/admin/v1/requests/{id}` is 1,
    /// `/admin/v1/requests/{id}/approve` 2), when depths serve different methods.
    Depth(&'static str, usize),
}

impl PathMatch {
    fn matches(self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path == p || PathMatch::Below(p).matches(path),
            PathMatch::Below(p) => path.starts_with(p) && path[p.len()..].starts_with('/'),
            PathMatch::Depth(p, n) => {
                PathMatch::Below(p).matches(path) && path[p.len() + 1..].split('/').count() == n
            }
        }
    }
}

struct Entry<B> {
    methods: Vec<Method>,
    path: PathMatch,
    service: RouteService<B>,
}

impl<B> Clone for Entry<B> {
    fn clone(&self) -> Self {
        Self {
            methods: self.methods.clone(),
            path: self.path,
            service: self.service.clone(),
        }
    }
}

/// Dispatches counter API requests. Built once with [`Router::route`] and
/// [`Router::prefix`], one line per endpoint.
pub struct Router<B> {
    routes: Arc<Vec<Entry<B>>>,
}

impl<B> Clone for Router<B> {
    fn clone(&self) -> Self {
        Self {
            routes: Arc::clone(&self.routes),
        }
    }
}

impl<B: Send + 'static> Router<B> {
    /// A router that serves `jwks` at [`JWKS`] and nothing else yet.
    pub fn new(jwks: Value) -> Self {
        let jwks = Arc::new(jwks);
        let svc = tower::service_fn(move |_req: Request<B>| {
            let body = jwks.as_ref().clone();
            std::future::ready(Ok::<_, Infallible>(Outcome::answer(Answer::Json {
                status: StatusCode::OK,
                body,
            })))
        });
        Self {
            routes: Arc::new(Vec::new()),
        }
        .route(&[Method::GET], JWKS, BoxCloneSyncService::new(svc))
    }

    /// Serve `path` exactly, for `methods`.
    pub fn route(self, methods: &[Method], path: &'static str, service: RouteService<B>) -> Self {
        self.add(methods, PathMatch::Exact(path), service)
    }

    /// Serve `path` and everything below it, for `methods`.
    pub fn prefix(self, methods: &[Method], path: &'static str, service: RouteService<B>) -> Self {
        self.add(methods, PathMatch::Prefix(path), service)
    }

    /// Serve everything below `path` (not `path` itself), for `methods`.
    pub fn below(self, methods: &[Method], path: &'static str, service: RouteService<B>) -> Self {
        self.add(methods, PathMatch::Below(path), service)
    }

    /// Serve paths exactly `depth` segments below `path`, for `methods`.
    pub fn at_depth(
        self,
        methods: &[Method],
        path: &'static str,
        depth: usize,
        service: RouteService<B>,
    ) -> Self {
        self.add(methods, PathMatch::Depth(path, depth), service)
    }

    /// What this router serves, in the order routes were added (the OpenAPI test
    /// compares it with the document).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.routes
            .iter()
            .map(|e| {
                let (path, prefix) = match e.path {
                    PathMatch::Exact(p) => (p, false),
                    PathMatch::Prefix(p) | PathMatch::Below(p) | PathMatch::Depth(p, _) => {
                        (p, true)
                    }
                };
                Endpoint {
                    methods: e.methods.clone(),
                    path,
                    prefix,
                }
            })
            .collect()
    }

    fn add(self, methods: &[Method], path: PathMatch, service: RouteService<B>) -> Self {
        let mut routes = Arc::unwrap_or_clone(self.routes);
        routes.push(Entry {
            methods: methods.to_vec(),
            path,
            service,
        });
        Self {
            routes: Arc::new(routes),
        }
    }
}

impl<B: Send + 'static> Service<Request<B>> for Router<B> {
    type Response = Outcome;
    type Error = Infallible;
    type Future = BoxFuture<Outcome>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let path = req.uri().path();
        let mut path_known = false;
        // Every method the path serves, for the `Allow` header of a 405.
        let mut allow: Vec<Method> = Vec::new();
        for entry in self.routes.iter() {
            if entry.path.matches(path) {
                path_known = true;
                if entry.methods.contains(req.method()) {
                    return Box::pin(entry.service.clone().oneshot(req));
                }
                for m in &entry.methods {
                    if !allow.contains(m) {
                        allow.push(m.clone());
                    }
                }
            }
        }
        let error = if path_known {
            ApiError::Method {
                method: req.method().to_string(),
                allow,
            }
        } else {
            ApiError::NoRoute(path.chars().take(128).collect())
        };
        Box::pin(std::future::ready(Ok(Outcome::error(error))))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::http::test_support::{recorder, Seen};

    const RECORDS: &str = "/audit/v1/records";

    /// A route service answering 200 with `name`, keeping the paths it was asked.
    fn endpoint(name: &'static str) -> (RouteService<()>, Seen<Request<()>>) {
        recorder(move |_: &Request<()>| {
            Outcome::answer(Answer::Json {
                status: StatusCode::OK,
                body: json!(name),
            })
        })
    }

    fn router() -> (Router<()>, Seen<Request<()>>, Seen<Request<()>>) {
        let (lookup, lookups) = endpoint("lookup");
        let (records, searches) = endpoint("records");
        let router = Router::new(json!({"keys": []}))
            .route(&[Method::POST], LOOKUP, lookup)
            .prefix(&[Method::GET], RECORDS, records);
        (router, lookups, searches)
    }

    async fn call(router: &Router<()>, method: Method, path: &str) -> Outcome {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap();
        router.clone().oneshot(req).await.unwrap()
    }

    fn answered_by(o: &Outcome) -> Value {
        match &o.result {
            Ok(Answer::Json { body, .. }) => body.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn exact_and_prefix_routes_reach_their_service() {
        let (router, lookups, searches) = router();
        let o = call(&router, Method::POST, LOOKUP).await;
        assert_eq!(answered_by(&o), "lookup");
        for path in [
            RECORDS,
            "/audit/v1/records/42",
            "/audit/v1/records?subject=x",
        ] {
            let o = call(&router, Method::GET, path).await;
            assert_eq!(answered_by(&o), "records", "{path}");
        }
        assert_eq!(lookups.take().len(), 1);
        assert_eq!(searches.take().len(), 3);
        // Exact means exact; a prefix is a whole path segment.
        for path in ["/v1/lookup/x", "/v1/lookups", "/audit/v1/recordsX"] {
            let o = call(&router, Method::POST, path).await;
            assert_eq!(o.status(), StatusCode::NOT_FOUND, "{path}");
        }
        assert!(lookups.take().is_empty() && searches.take().is_empty());
    }

    #[tokio::test]
    async fn a_known_path_with_another_method_is_405() {
        let (router, lookups, _) = router();
        let o = call(&router, Method::GET, LOOKUP).await;
        let Err(e @ ApiError::Method { method, allow }) = &o.result else {
            panic!("{:?}", o.result)
        };
        assert_eq!(method, "GET");
        assert_eq!(allow, &[Method::POST], "the methods the path serves");
        assert_eq!(e.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(lookups.take().is_empty());
    }

    #[tokio::test]
    async fn a_405_allows_what_that_path_serves_not_its_neighbours() {
        let (things, _) = endpoint("things");
        let router = Router::new(json!({"keys": []}))
            .route(&[Method::GET, Method::POST], "/things", things.clone())
            .below(&[Method::GET, Method::DELETE], "/things", things);
        for (method, path, allow) in [
            (Method::PUT, "/things", vec![Method::GET, Method::POST]),
            (Method::POST, "/things/1", vec![Method::GET, Method::DELETE]),
        ] {
            let o = call(&router, method, path).await;
            let Err(ApiError::Method { allow: got, .. }) = &o.result else {
                panic!("{:?}", o.result)
            };
            assert_eq!(got, &allow, "{path}");
        }
        assert_eq!(
            answered_by(&call(&router, Method::DELETE, "/things/1").await),
            "things"
        );
        // Depths below one path serve their own methods.
        let (steps, _) = endpoint("steps");
        let router = Router::new(json!({"keys": []}))
            .at_depth(&[Method::GET], "/things", 1, steps.clone())
            .at_depth(&[Method::POST], "/things", 2, steps);
        for (method, path, allow) in [
            (Method::POST, "/things/1", vec![Method::GET]),
            (Method::GET, "/things/1/approve", vec![Method::POST]),
        ] {
            let o = call(&router, method, path).await;
            let Err(ApiError::Method { allow: got, .. }) = &o.result else {
                panic!("{:?}", o.result)
            };
            assert_eq!(got, &allow, "{path}");
        }
        assert_eq!(
            answered_by(&call(&router, Method::POST, "/things/1/approve").await),
            "steps"
        );
        let o = call(&router, Method::GET, "/things/1/approve/x").await;
        assert_eq!(o.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn an_unknown_path_is_404_no_such_endpoint_naming_it_briefly() {
        let (router, _, _) = router();
        let long = format!("/{}", "x".repeat(500));
        let o = call(&router, Method::GET, &long).await;
        let Err(e @ ApiError::NoRoute(path)) = &o.result else {
            panic!("{:?}", o.result)
        };
        assert_eq!(e.slug(), "no-such-endpoint");
        assert_eq!(path.len(), 128);
    }

    #[tokio::test]
    async fn the_key_set_is_always_served() {
        let (router, _, _) = router();
        let o = call(&router, Method::GET, JWKS).await;
        assert_eq!(answered_by(&o), json!({"keys": []}));
        assert_eq!(
            router
                .endpoints()
                .iter()
                .map(|e| (e.path, e.prefix))
                .collect::<Vec<_>>(),
            vec![(JWKS, false), (LOOKUP, false), (RECORDS, true)]
        );
    }
}
