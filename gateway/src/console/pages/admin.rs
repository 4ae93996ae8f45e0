//! Department admins' other pages: the department's datasets, role bindings, and
//! "explain" (would this consumer's lookup be allowed now, and why not).

use askama::Template;
use serde_json::{json, Value};

use super::agreements::as_admin;
use super::{encode, param, rendered};
use crate::console::view::Chrome;
use crate::console::{body_of, see_other, Console, Viewer};
use crate::error::ApiError;
use crate::http::admin as api;
use crate::http::{Answer, Outcome};

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[derive(Template)]
#[template(path = "console/datasets.html")]
struct Datasets<'a> {
    c: Chrome<'a>,
    department: String,
    datasets: Vec<(String, Vec<String>)>,
}

/// `GET /console/datasets`: the datasets the admin's department provides and their
/// fields, as the policy catalogue knows them (what agreements are checked against).
pub(crate) fn datasets(console: &Console, viewer: &Viewer) -> Outcome {
    let admin = match as_admin(console, viewer) {
        Ok(a) => a,
        Err(o) => return o,
    };
    let datasets = super::agreements::own_datasets(console, &admin);
    let mut o = Outcome::answer(Answer::Json {
        status: http::StatusCode::OK,
        body: json!({"datasets": datasets.iter().map(|(n, _)| n).collect::<Vec<_>>()}),
    });
    o.facts.decision = Some(::audit::Decision::Allow);
    let html = Datasets {
        c: Chrome::new(console, viewer, "datasets"),
        department: admin.department,
        datasets,
    }
    .render();
    rendered(o, html)
}

#[derive(Template)]
#[template(path = "console/roles.html")]
struct Roles<'a> {
    c: Chrome<'a>,
    department: String,
    own: Vec<(String, String)>,
    others: Vec<(String, String)>,
}

/// `GET /console/roles`: `GET /admin/v1/roles`, the department's identities first.
pub(crate) async fn roles(console: &Console, viewer: &Viewer) -> Outcome {
    let admin = match as_admin(console, viewer) {
        Ok(a) => a,
        Err(o) => return o,
    };
    let o = api::list_roles(&console.policy, None, None).await;
    let Some(body) = body_of(&o) else { return o };
    let prefix = format!("urn:tongban:{}:", admin.department);
    let (own, others): (Vec<_>, Vec<_>) = body["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| (text(&b["identity"]), text(&b["role"])))
        .partition(|(identity, _)| identity.starts_with(&prefix));
    let html = Roles {
        c: Chrome::new(console, viewer, "roles"),
        department: admin.department,
        own,
        others,
    }
    .render();
    rendered(o, html)
}

fn binding(form: &[(String, String)]) -> Result<policy::RoleBinding, ApiError> {
    match (param(form, "identity"), param(form, "role")) {
        (Some(identity), Some(role)) => Ok(policy::RoleBinding {
            identity: identity.trim().to_owned(),
            role: role.trim().to_owned(),
        }),
        _ => Err(ApiError::BadRequest(
            "identity and role are required".into(),
        )),
    }
}

/// `POST /console/roles`: `POST /admin/v1/roles`.
pub(crate) async fn bind(console: &Console, viewer: &Viewer, form: &[(String, String)]) -> Outcome {
    role_change(console, viewer, form, policy::Action::Bind).await
}

/// `POST /console/roles/unbind`: `DELETE /admin/v1/roles?identity=&role=`.
pub(crate) async fn unbind(
    console: &Console,
    viewer: &Viewer,
    form: &[(String, String)],
) -> Outcome {
    role_change(console, viewer, form, policy::Action::Unbind).await
}

async fn role_change(
    console: &Console,
    viewer: &Viewer,
    form: &[(String, String)],
    action: policy::Action,
) -> Outcome {
    let admin = match as_admin(console, viewer) {
        Ok(a) => a,
        Err(o) => return o,
    };
    let b = match binding(form) {
        Ok(b) => b,
        Err(e) => return Outcome::error(e),
    };
    let o = api::role_change(&console.policy, &admin, b, action).await;
    if o.result.is_ok() {
        return see_other(o, "/console/roles");
    }
    o
}

/// One agreement explain looked at.
pub(crate) struct Candidate {
    pub agreement: String,
    pub effect: String,
    pub covers: bool,
    pub failed: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "console/explain.html")]
struct Explain<'a> {
    c: Chrome<'a>,
    consumer: String,
    dataset: String,
    matter: String,
    fields: String,
    datasets: Vec<String>,
    matters: Vec<String>,
    /// `allow` or `deny`, once asked.
    decision: Option<String>,
    message: String,
    reason: String,
    granted: Vec<(String, String)>,
    candidates: Vec<Candidate>,
    local_time: String,
}

/// `GET /console/explain?consumer=&dataset=&matter=&fields=`:
/// `GET /admin/v1/explain`; without a consumer, the form alone.
pub(crate) async fn explain(
    console: &Console,
    viewer: &Viewer,
    query: &[(String, String)],
) -> Outcome {
    let admin = match as_admin(console, viewer) {
        Ok(a) => a,
        Err(o) => return o,
    };
    let value = |k: &str| param(query, k).unwrap_or_default().to_owned();
    let datasets: Vec<String> = console
        .policy
        .catalogue
        .datasets()
        .filter(|(_, d)| d.provider.as_deref() == Some(admin.department.as_str()))
        .map(|(n, _)| n.to_owned())
        .collect();
    let mut page = Explain {
        c: Chrome::new(console, viewer, "explain"),
        consumer: value("consumer"),
        dataset: value("dataset"),
        matter: value("matter"),
        fields: value("fields"),
        datasets,
        matters: console
            .policy
            .catalogue
            .matters()
            .map(str::to_owned)
            .collect(),
        decision: None,
        message: String::new(),
        reason: String::new(),
        granted: Vec::new(),
        candidates: Vec::new(),
        local_time: String::new(),
    };
    if page.consumer.is_empty() {
        return rendered(super::own_outcome(), page.render());
    }
    // The API takes each field as its own `field=`; the form has one input.
    let mut asked: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| ["consumer", "dataset", "matter", "at", "operator"].contains(&k.as_str()))
        .cloned()
        .collect();
    for f in page.fields.split([',', ' ']).filter(|f| !f.is_empty()) {
        asked.push(("field".into(), f.to_owned()));
    }
    let o = api::explain(&console.policy, Some(&viewer.principal), &encode(&asked)).await;
    if let Some(body) = body_of(&o) {
        page.decision = Some(text(&body["decision"]));
        page.message = text(&body["message"]);
        page.reason = text(&body["reason"]);
        page.local_time = text(&body["local_time"]);
        page.granted = body["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| (text(&f["name"]), text(&f["rule"])))
            .collect();
        page.candidates = body["candidates"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| Candidate {
                agreement: text(&c["agreement"]),
                effect: text(&c["effect"]),
                covers: c["covers"].as_bool().unwrap_or_default(),
                failed: text(&c["failed"]),
                detail: text(&c["detail"]),
            })
            .collect();
    } else {
        return o;
    }
    let html = page.render();
    rendered(o, html)
}
