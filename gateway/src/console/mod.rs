//! The web console: server-rendered pages for department admins and security
//! officers under `/console/` on the counter listener, behind the same tower stack
//! as the APIs (identity from the client certificate, limits, audit before the
//! answer leaves).
//!
//! ```text
//!  GET /console/records?…  ─▶ route ─▶ Console::handle
//!     role gate (dept-admin or auditor, else 403)      ─┐
//!     the API's own function (audit_api::records, …)    ├─▶ Outcome (the API call's
//!     its answer rendered by a template (askama)       ─┘    facts) + Page (HTML)
//!  ◀─ audit layer: the record of the API call it stands for, binding the page's
//!     SHA-256; the receipt in `Audit-Receipt`; CSP, X-Frame-Options, no-store
//! ```
//!
//! A page shows only what its API call answered, so the console never shows a
//! field the viewer's role could not get from the API. Forms post back to the
//! console with a CSRF token ([`csrf`]) and answer `303 See Other` (or the form
//! again with the API's errors beside their fields).

pub mod csrf;
pub mod i18n;
mod pages;
pub mod svg;
mod view;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use audit::{AuditLog, Decision};
use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body::Body;
use tower::util::BoxCloneSyncService;

use crate::error::ApiError;
use crate::http::audit_reports::Reports;
use crate::http::body::BodyLimits;
use crate::http::route::RouteService;
use crate::http::{Answer, Outcome, Page, Principal};
use crate::policy_sync::PolicyService;
use crate::requests::Requests;
use csrf::Csrf;
use i18n::{Lang, Messages};

/// Where the console is served.
pub const CONSOLE: &str = "/console";

/// Headers of every console answer. No inline script or style anywhere: the
/// stylesheet and the one script are files of the console's own.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-frame-options", "DENY"),
    // Not `no-referrer`: under it browsers send `Origin: null` with the console's own
    // form posts, and the CSRF check needs the real origin. `same-origin` still
    // keeps page addresses (which may name a subject) from every other site.
    ("referrer-policy", "same-origin"),
    ("x-content-type-options", "nosniff"),
];

/// The cookie keeping a viewer's language switch.
const LANG_COOKIE: &str = "__Host-tongban-lang";

/// The roles that may open the console.
const ROLES: &str = "dept-admin or auditor";

/// Why the console cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// A message catalogue is broken.
    #[error(transparent)]
    Catalogue(#[from] i18n::CatalogueError),
    /// No random source for the CSRF key.
    #[error("no random source for the console's CSRF key")]
    Random,
}

/// What the console reads and who it asks; built once per gateway.
pub struct Console {
    policy: Arc<PolicyService>,
    audit: AuditLog,
    reports: Reports,
    requests: Arc<Requests>,
    /// Dataset → its providing department, as the usage API groups by.
    providers: Arc<HashMap<String, String>>,
    public_key: Vec<u8>,
    csrf: Csrf,
    messages: Messages,
    body: BodyLimits,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

/// The viewer of one request: who, in which roles and language, in which session.
pub(crate) struct Viewer {
    pub principal: Principal,
    pub admin: bool,
    pub auditor: bool,
    pub lang: Lang,
    pub session: String,
    /// A session just made: its cookie goes with the answer.
    pub new_session: bool,
    /// `?lang=` switched: its cookie goes with the answer.
    pub switched: bool,
    pub csrf_token: String,
    /// The request's id, shown on error pages.
    pub request_id: String,
}

impl Console {
    /// The console over the gateway's parts; `public_key` checks checkpoints,
    /// `providers` maps each dataset to its department (as the usage API's).
    pub fn new(
        policy: Arc<PolicyService>,
        audit: AuditLog,
        reports: Reports,
        requests: Arc<Requests>,
        providers: Arc<HashMap<String, String>>,
        public_key: Vec<u8>,
        body: BodyLimits,
    ) -> Result<Self, ConsoleError> {
        Ok(Self {
            policy,
            audit,
            reports,
            requests,
            providers,
            public_key,
            csrf: Csrf::generate().map_err(|_| ConsoleError::Random)?,
            messages: Messages::embedded()?,
            body,
        })
    }

    /// The message catalogues.
    pub fn messages(&self) -> &Messages {
        &self.messages
    }

    async fn handle<B>(&self, req: Request<B>) -> Outcome
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<tower::BoxError>,
    {
        let path = req.uri().path().to_owned();
        if let Some(name) = path.strip_prefix("/console/assets/") {
            return view::asset(name);
        }
        let Some(principal) = req.extensions().get::<Principal>().cloned() else {
            return Outcome::error(ApiError::Internal("principal missing from request".into()));
        };
        let viewer = match self.viewer(&req, principal) {
            Ok(v) => v,
            Err(e) => return Outcome::error(e),
        };
        let mut o = if !viewer.admin && !viewer.auditor {
            let mut o = Outcome::error(ApiError::RoleRequired(ROLES));
            o.facts.decision = Some(Decision::Deny);
            o
        } else {
            let page = path.strip_prefix(CONSOLE).unwrap_or_default();
            pages::dispatch(self, &viewer, page, req).await
        };
        if o.page.is_none() {
            // The role gate, an unknown page, or a page that only failed: the error
            // page, in the viewer's language.
            let page = view::error_page(self, &viewer, &o);
            o.page = Some(Box::new(page));
        }
        if let Some(page) = o.page.as_mut() {
            self.cookies(&viewer, page);
        }
        o.facts.merge_detail(serde_json::json!({"console": path}));
        o
    }

    fn viewer<B>(&self, req: &Request<B>, principal: Principal) -> Result<Viewer, ApiError> {
        let uri = principal.identity.as_uri();
        let authorizer = &self.policy.authorizer;
        let admin = authorizer.has_role(uri, crate::http::admin::DEPT_ADMIN);
        let auditor = authorizer.has_role(uri, crate::http::audit_api::AUDITOR_ROLE);
        let query_lang = form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .find(|(k, _)| k == "lang")
            .map(|(_, v)| v.into_owned());
        let accept = req
            .headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        let lang = Lang::choose(
            query_lang.as_deref(),
            cookie(req.headers(), LANG_COOKIE).as_deref(),
            accept,
        );
        let (session, new_session) = match cookie(req.headers(), csrf::SESSION_COOKIE) {
            Some(s) if !s.is_empty() && s.len() <= 64 => (s, false),
            _ => (
                self.csrf
                    .new_session()
                    .ok_or_else(|| ApiError::Internal("no random source for a session".into()))?,
                true,
            ),
        };
        let csrf_token = self.csrf.token(uri, &session);
        Ok(Viewer {
            principal,
            admin,
            auditor,
            lang,
            session,
            new_session,
            switched: query_lang.as_deref().and_then(Lang::parse).is_some(),
            csrf_token,
            request_id: req
                .extensions()
                .get::<crate::http::RequestMeta>()
                .map(|m| m.id.clone())
                .unwrap_or_default(),
        })
    }

    fn cookies(&self, viewer: &Viewer, page: &mut Page) {
        let mut set = |value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                page.headers.push((header::SET_COOKIE, v));
            }
        };
        if viewer.new_session {
            set(csrf::session_cookie(&viewer.session));
        }
        if viewer.switched {
            set(format!(
                "{LANG_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict",
                viewer.lang.code()
            ));
        }
    }

    /// Refuses a POST that is not from the console's own form of this session.
    pub(crate) fn check_form<B>(
        &self,
        viewer: &Viewer,
        req: &Request<B>,
        form: &[(String, String)],
    ) -> Result<(), ApiError> {
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            });
        let expected = host.map(|h| format!("https://{h}"));
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        let token = form
            .iter()
            .find(|(k, _)| k == csrf::TOKEN_FIELD)
            .map(|(_, v)| v.as_str());
        // A session made by this very request was never given to a form.
        let session = (!viewer.new_session).then_some(viewer.session.as_str());
        self.csrf
            .check(
                viewer.principal.identity.as_uri(),
                expected.as_deref(),
                origin,
                session,
                token,
            )
            .map_err(|r| {
                ApiError::Csrf(match r {
                    csrf::CsrfRefusal::Origin => "the form was not sent from this gateway's own pages (Origin missing or foreign)",
                    csrf::CsrfRefusal::Token => "the form's token is missing or not this session's; reload the page and try again",
                })
            })
    }
}

/// The console service over `console`.
pub fn console_service<B>(console: Arc<Console>) -> RouteService<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    BoxCloneSyncService::new(tower::service_fn(move |req: Request<B>| {
        let console = Arc::clone(&console);
        async move { Ok::<_, Infallible>(console.handle(req).await) }
    }))
}

/// The methods the console serves.
pub const METHODS: &[Method] = &[Method::GET, Method::POST];

/// The value of cookie `name`, if the request sent it.
fn cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A page answer: the API's outcome with its HTML.
pub(crate) fn with_page(mut o: Outcome, html: String) -> Outcome {
    o.page = Some(Box::new(Page {
        status: None,
        html,
        content_type: "text/html; charset=utf-8",
        headers: Vec::new(),
    }));
    o
}

/// `303 See Other` to `location` after a form did what the API call did.
pub(crate) fn see_other(mut o: Outcome, location: &str) -> Outcome {
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    if let Ok(v) = HeaderValue::from_str(location) {
        headers.push((header::LOCATION, v));
    }
    o.page = Some(Box::new(Page {
        status: Some(StatusCode::SEE_OTHER),
        html: String::new(),
        content_type: "text/html; charset=utf-8",
        headers,
    }));
    o
}

/// The JSON body of a successful API outcome.
pub(crate) fn body_of(o: &Outcome) -> Option<&serde_json::Value> {
    match &o.result {
        Ok(Answer::Json { body, .. }) => Some(body),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = http::HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-tongban-lang=en"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, LANG_COOKIE).as_deref(), Some("en"));
        assert_eq!(cookie(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn the_policy_forbids_inline_script_style_and_framing() {
        let csp = SECURITY_HEADERS[0].1;
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        for directive in [
            "default-src 'none'",
            "frame-ancestors 'none'",
            "script-src 'self'",
            "style-src 'self'",
        ] {
            assert!(csp.contains(directive), "{directive}");
        }
    }
}
