//! What every page shares: the chrome (language, navigation, the viewer), the error
//! page, and the embedded assets.

use askama::Template;
use http::StatusCode;

use super::i18n::{Lang, Messages};
use super::{Console, Viewer};
use crate::http::render::problem_body;
use crate::http::{Answer, Outcome, Page};

/// The stylesheet: screen and print (`@media print` makes the citizen's report a
/// clean sheet).
const CSS: &str = include_str!("../../console/assets/console.css");
/// The one script: progressive only (a print button, a confirm before revoking).
const JS: &str = include_str!("../../console/assets/console.js");

/// The page frame's data: every template gets it as `c`.
pub(crate) struct Chrome<'a> {
    messages: &'a Messages,
    /// The language shown.
    pub lang: Lang,
    /// `zh-CN` or `en`.
    pub lang_code: &'static str,
    /// The viewer's identity.
    pub identity: String,
    /// Holds dept-admin.
    pub admin: bool,
    /// Holds auditor.
    pub auditor: bool,
    /// The form token.
    pub csrf: String,
    /// Which navigation entry is lit.
    pub here: &'static str,
}

impl<'a> Chrome<'a> {
    pub(crate) fn new(console: &'a Console, viewer: &Viewer, here: &'static str) -> Self {
        Self {
            messages: console.messages(),
            lang: viewer.lang,
            lang_code: viewer.lang.code(),
            identity: viewer.principal.identity.to_string(),
            admin: viewer.admin,
            auditor: viewer.auditor,
            csrf: viewer.csrf_token.clone(),
            here,
        }
    }

    /// The message `key` in the page's language.
    pub fn t<'k>(&'k self, key: &'k str) -> &'k str {
        self.messages.get(self.lang, key)
    }

    /// The message `key` with `{n}` replaced by `n`.
    pub fn tn(&self, key: &str, n: impl std::fmt::Display) -> String {
        self.messages
            .get(self.lang, key)
            .replace("{n}", &n.to_string())
    }

    /// Whether the page is in English (the switch offers the other one).
    pub fn english(&self) -> bool {
        self.lang == Lang::En
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    c: Chrome<'a>,
    status: u16,
    title: String,
    detail: String,
    request_id: String,
}

/// The page of an outcome that has none: the problem the API would have answered,
/// its title in the viewer's language.
pub(crate) fn error_page(console: &Console, viewer: &Viewer, o: &Outcome) -> Page {
    let c = Chrome::new(console, viewer, "");
    let (status, title, detail) = match &o.result {
        Err(e) => {
            let body = problem_body(e, "");
            let detail = body
                .get("detail")
                .and_then(|d| d.as_str())
                .unwrap_or_default()
                .to_owned();
            let title = c.t(&format!("problem.{}", e.slug())).to_owned();
            (e.status(), title, detail)
        }
        Ok(_) => (
            o.status(),
            c.t("problem.internal").to_owned(),
            String::new(),
        ),
    };
    let page = ErrorPage {
        status: status.as_u16(),
        title,
        detail,
        request_id: viewer.request_id.clone(),
        c,
    };
    Page {
        status: None,
        html: page.render().unwrap_or_else(|e| format!("{e}")),
        content_type: "text/html; charset=utf-8",
        headers: Vec::new(),
    }
}

/// An embedded asset, to any authenticated caller (it holds no data).
pub(crate) fn asset(name: &str) -> Outcome {
    let (content_type, text) = match name {
        "console.css" => ("text/css; charset=utf-8", CSS),
        "console.js" => ("text/javascript; charset=utf-8", JS),
        _ => {
            return Outcome::error(crate::error::ApiError::NoRoute(format!(
                "/console/assets/{}",
                name.chars().take(64).collect::<String>()
            )))
        }
    };
    let mut o = Outcome::answer(Answer::Text {
        status: StatusCode::OK,
        content_type,
        body: String::new(),
    });
    o.page = Some(Box::new(Page {
        status: None,
        html: text.to_owned(),
        content_type,
        headers: Vec::new(),
    }));
    o
}
