//! The console's pages, one line each: which page a path is, and which API function
//! it stands for. A page calls the API's function and renders its answer.

mod admin;
mod agreements;
mod audit;
mod proof;
mod requests;
mod usage;

use askama::Template;
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body::Body;
use serde_json::json;

use super::view::Chrome;
use super::{with_page, Console, Viewer};
use crate::error::ApiError;
use crate::http::body::read_body;
use crate::http::{Answer, Outcome};

/// The page for `path` (below `/console`).
pub(crate) async fn dispatch<B>(
    console: &Console,
    viewer: &Viewer,
    path: &str,
    req: Request<B>,
) -> Outcome
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let query = query_of(&req);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let get = req.method() == Method::GET;
    match (get, segments.as_slice()) {
        (true, [""]) => home(console, viewer),
        // Security officers (auditor).
        (true, ["records"]) => audit::search(console, viewer, &query).await,
        (true, ["records", seq]) => audit::record(console, viewer, seq).await,
        (true, ["subjects"]) => audit::subject(console, viewer, &query).await,
        (true, ["anomalies"]) => audit::anomalies(console, viewer, &query).await,
        (true, ["health"]) => audit::health(console, viewer).await,
        (true, ["charts"]) => audit::charts(console, viewer, &query).await,
        // Department admins (dept-admin).
        (true, ["datasets"]) => admin::datasets(console, viewer),
        (true, ["agreements"]) => agreements::list(console, viewer, &query).await,
        (true, ["agreements", "new"]) => agreements::new_form(console, viewer, &query).await,
        (true, ["agreements", id]) => agreements::view(console, viewer, id).await,
        (true, ["agreements", id, "edit"]) => agreements::edit_form(console, viewer, id).await,
        (true, ["roles"]) => admin::roles(console, viewer).await,
        (true, ["explain"]) => admin::explain(console, viewer, &query).await,
        (true, ["requests"]) => requests::list(console, viewer, &query).await,
        (true, ["requests", id]) => requests::view(console, viewer, id).await,
        // Department admins and security officers, each in the API's scope.
        (true, ["usage"]) => usage::usage(console, viewer, &query).await,
        (false, _) if req.method() == Method::POST => {
            let segments: Vec<String> = segments.iter().map(|s| (*s).to_owned()).collect();
            let form = match form_of(console, viewer, req).await {
                Ok(f) => f,
                Err(e) => return refused(e),
            };
            let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
            match segments.as_slice() {
                ["agreements", "new"] => agreements::create(console, viewer, &form).await,
                ["agreements", id, "edit"] => agreements::replace(console, viewer, id, &form).await,
                ["agreements", id, "revoke"] => agreements::revoke(console, viewer, id).await,
                ["roles"] => admin::bind(console, viewer, &form).await,
                ["roles", "unbind"] => admin::unbind(console, viewer, &form).await,
                ["requests", id, "approve"] => requests::approve(console, viewer, id, &form).await,
                ["requests", id, "refuse"] => requests::refuse(console, viewer, id, &form).await,
                ["requests", id, "withdraw"] => {
                    requests::withdraw(console, viewer, id, &form).await
                }
                _ => Outcome::error(ApiError::NoRoute(format!("/console{path}"))),
            }
        }
        (false, _) => Outcome::error(ApiError::Method {
            method: req.method().to_string(),
            allow: super::METHODS.to_vec(),
        }),
        _ => Outcome::error(ApiError::NoRoute(
            format!("/console{path}").chars().take(128).collect(),
        )),
    }
}

/// A refused form: 403 (CSRF) or 4xx (the body), recorded as a deny when it is
/// the CSRF check.
fn refused(e: ApiError) -> Outcome {
    let csrf = matches!(e, ApiError::Csrf(_));
    let mut o = Outcome::error(e);
    if csrf {
        o.facts.decision = Some(::audit::Decision::Deny);
    }
    o
}

/// The posted form, once it passed the CSRF checks.
async fn form_of<B>(
    console: &Console,
    viewer: &Viewer,
    req: Request<B>,
) -> Result<Vec<(String, String)>, ApiError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let form_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    // The origin first: a foreign page learns nothing about the body's fate.
    console.check_form(viewer, &req, &[]).or_else(|e| match e {
        ApiError::Csrf(m) if m.starts_with("the form's token") => Ok(()),
        e => Err(e),
    })?;
    if !form_type {
        return Err(ApiError::MediaType(
            "a console form is application/x-www-form-urlencoded".into(),
        ));
    }
    let (parts, body) = req.into_parts();
    let bytes = read_body(body, &console.body).await?;
    let form: Vec<(String, String)> = form_urlencoded::parse(&bytes).into_owned().collect();
    let req = Request::from_parts(parts, ());
    console.check_form(viewer, &req, &form)?;
    Ok(form)
}

/// The query's parameters, without the language switch and empty fields (a form
/// sends every input, filled or not).
fn query_of<B>(req: &Request<B>) -> Vec<(String, String)> {
    form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .into_owned()
        .filter(|(k, v)| k != "lang" && !v.trim().is_empty())
        .collect()
}

/// `params` as a query string.
fn encode(params: &[(String, String)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        q.append_pair(k, v.trim());
    }
    q.finish()
}

/// The one value of `name`.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The outcome of a page of the console's own (no API call behind it: the home
/// page, an empty form): answered and recorded as allowed.
fn own_outcome() -> Outcome {
    let mut o = Outcome::answer(Answer::Json {
        status: StatusCode::OK,
        body: json!({}),
    });
    o.facts.decision = Some(::audit::Decision::Allow);
    o
}

/// A page of the console's own.
fn own_page(html: Result<String, askama::Error>) -> Outcome {
    rendered(own_outcome(), html)
}

/// `o` with its page, or the failure to render it.
fn rendered(o: Outcome, html: Result<String, askama::Error>) -> Outcome {
    match html {
        Ok(html) => with_page(o, html),
        Err(e) => Outcome::error(ApiError::Internal(format!("console template: {e}"))),
    }
}

#[derive(Template)]
#[template(path = "console/home.html")]
struct Home<'a> {
    c: Chrome<'a>,
}

fn home(console: &Console, viewer: &Viewer) -> Outcome {
    own_page(
        Home {
            c: Chrome::new(console, viewer, "home"),
        }
        .render(),
    )
}
