//! Department admins' agreements: list and filter, view with history, create, edit,
//! revoke. Every page and form goes through the admin API's own functions
//! (`admin::list`, `get`, `history`, `change`), so the checks, the refusals, the
//! validation errors and the audit records are the API's.

use std::collections::BTreeMap;

use askama::Template;
use chrono::Offset as _;
use policy::Edit;
use serde_json::{json, Map, Value};

use super::{param, rendered};
use crate::console::view::Chrome;
use crate::console::{body_of, see_other, Console, Viewer};
use crate::error::ApiError;
use crate::http::admin::{self as api, Admin};
use crate::http::Outcome;

/// The viewer as a dept-admin, or the API's refusal.
#[allow(clippy::result_large_err)] // the error is the outcome to answer with
pub(crate) fn as_admin(console: &Console, viewer: &Viewer) -> Result<Admin, Outcome> {
    api::admin(&console.policy, Some(&viewer.principal)).map_err(api::denied)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One agreement as the list shows it.
pub(crate) struct Item {
    pub id: String,
    pub consumer: String,
    pub dataset: String,
    pub matters: String,
    pub valid_until: String,
    pub version: String,
    pub effect: String,
}

#[derive(Template)]
#[template(path = "console/agreements.html")]
struct List<'a> {
    c: Chrome<'a>,
    dataset: String,
    consumer: String,
    items: Vec<Item>,
    policy_version: String,
}

/// `GET /console/agreements?dataset=&consumer=`: `GET /admin/v1/agreements`.
pub(crate) async fn list(
    console: &Console,
    viewer: &Viewer,
    query: &[(String, String)],
) -> Outcome {
    let admin = match as_admin(console, viewer) {
        Ok(a) => a,
        Err(o) => return o,
    };
    let o = api::list(&console.policy, &admin, &super::encode(query)).await;
    let Some(body) = body_of(&o) else { return o };
    let items = body["agreements"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let a = &s["agreement"];
            Item {
                id: text(&a["id"]),
                consumer: text(&a["consumer"]),
                dataset: text(&a["dataset"]),
                matters: strings(&a["matters"]).join(", "),
                valid_until: text(&a["valid_until"]),
                version: text(&s["version"]),
                effect: text(&a["effect"]),
            }
        })
        .collect();
    let page = List {
        c: Chrome::new(console, viewer, "agreements"),
        dataset: param(query, "dataset").unwrap_or_default().to_owned(),
        consumer: param(query, "consumer").unwrap_or_default().to_owned(),
        policy_version: text(&body["policy_version"]),
        items,
    };
    let html = page.render();
    rendered(o, html)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().map(text).collect()
}

/// One change in an agreement's history: what differed, member by member.
pub(crate) struct Change {
    pub version: String,
    pub action: String,
    pub actor: String,
    pub at: String,
    /// (member, before, after)
    pub diff: Vec<(String, String, String)>,
}

fn diff(before: &Value, after: &Value) -> Vec<(String, String, String)> {
    let empty = Map::new();
    let (b, a) = (
        before.as_object().unwrap_or(&empty),
        after.as_object().unwrap_or(&empty),
    );
    let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    keys.into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| {
            let show = |v: Option<&Value>| v.map(text).unwrap_or_else(|| "—".into());
            (
                (*k).clone(),
                show(b.get(k.as_str())),
                show(a.get(k.as_str())),
            )
        })
        .collect()
}

#[derive(Template)]
#[template(path = "console/agreement.html")]
struct View<'a> {
    c: Chrome<'a>,
    id: String,
    members: Vec<(String, String)>,
    fields: Vec<(String, String)>,
    version: String,
    updated_at: String,
    updated_by: String,
    history: Vec<Change>,
}

/// `GET /console/agreements/{id}`: `GET /admin/v1/agreements/{id}` and its
/// `/history`.
pub(crate) async fn view(console: &Console, viewer: &Viewer, id: &str) -> Outcome {
    let admin = match as_admin(console, viewer) {
        Ok(a) => a,
        Err(o) => return o,
    };
    let o = api::get(&console.policy, &admin, id).await;
    let Some(body) = body_of(&o) else { return o };
    let a = &body["agreement"];
    let members = a
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != "fields")
        .map(|(k, v)| {
            let shown = match v {
                Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
                other => text(other),
            };
            (k.clone(), shown)
        })
        .collect();
    let fields = a["fields"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), text(v)))
        .collect();
    let h = api::history(&console.policy, &admin, id).await;
    let history = body_of(&h)
        .and_then(|b| b["history"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|c| Change {
            version: text(&c["version"]),
            action: text(&c["action"]),
            actor: text(&c["actor"]),
            at: text(&c["at"]),
            diff: diff(&c["before"], &c["after"]),
        })
        .collect();
    let page = View {
        c: Chrome::new(console, viewer, "agreements"),
        id: id.to_owned(),
        members,
        fields,
        version: text(&body["version"]),
        updated_at: text(&body["updated_at"]),
        updated_by: text(&body["updated_by"]),
        history,
    };
    let html = page.render();
    rendered(o, html)
}

/// The agreement form: the values shown and the errors beside them.
#[derive(Template)]
#[template(path = "console/agreement_form.html")]
struct Form<'a> {
    c: Chrome<'a>,
    /// `None` for a new agreement.
    editing: Option<String>,
    values: BTreeMap<String, String>,
    datasets: Vec<String>,
    matters: Vec<(String, bool)>,
    /// (field, rule: "", "full" or "masked")
    fields: Vec<(String, String)>,
    errors: BTreeMap<String, String>,
    /// An error not about one input (409, 403, a malformed body).
    general: Option<(String, String)>,
}

impl Form<'_> {
    fn v(&self, k: &str) -> &str {
        self.values.get(k).map_or("", String::as_str)
    }

    fn err(&self, k: &str) -> Option<&str> {
        self.errors.get(k).map(String::as_str)
    }

    fn field_err(&self, field: &str) -> Option<&str> {
        self.errors
            .get(&format!("fields.{field}"))
            .map(String::as_str)
    }
}

/// The datasets the admin's department provides, with their fields.
pub(super) fn own_datasets(console: &Console, admin: &Admin) -> Vec<(String, Vec<String>)> {
    console
        .policy
        .catalogue
        .datasets()
        .filter(|(_, d)| d.provider.as_deref() == Some(admin.department.as_str()))
        .map(|(name, d)| (name.to_owned(), d.fields.keys().cloned().collect()))
        .collect()
}

impl<'a> Form<'a> {
    fn new(
        console: &'a Console,
        viewer: &Viewer,
        admin: &Admin,
        values: BTreeMap<String, String>,
    ) -> Self {
        let datasets = own_datasets(console, admin);
        let chosen = values
            .get("dataset")
            .cloned()
            .or_else(|| datasets.first().map(|(n, _)| n.clone()))
            .unwrap_or_default();
        let fields = datasets
            .iter()
            .find(|(n, _)| *n == chosen)
            .map(|(_, f)| f.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|f| {
                let rule = values
                    .get(&format!("field.{f}"))
                    .cloned()
                    .unwrap_or_default();
                (f, rule)
            })
            .collect();
        let picked: Vec<String> = values
            .get("matters")
            .map(|m| m.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        let matters = console
            .policy
            .catalogue
            .matters()
            .map(|m| (m.to_owned(), picked.iter().any(|p| p == m)))
            .collect();
        let mut values = values;
        values.insert("dataset".into(), chosen);
        Self {
            c: Chrome::new(console, viewer, "agreements"),
            editing: None,
            values,
            datasets: datasets.into_iter().map(|(n, _)| n).collect(),
            matters,
            fields,
            errors: BTreeMap::new(),
            general: None,
        }
    }
}

/// `GET /console/agreements/new[?dataset=]`: an empty form (a page of the
/// console's own, refused like the API to a viewer who is no dept-admin).
pub(crate) async fn new_form(
    console: &Console,
    viewer: &Viewer,
    query: &[(String, String)],
) -> Outcome {
    let admin = match as_admin(console, viewer) {
        Ok(a) => a,
        Err(o) => return o,
    };
    let mut values = BTreeMap::new();
    if let Some(d) = param(query, "dataset") {
        values.insert("dataset".to_owned(), d.to_owned());
    }
    let today = chrono::Utc::now().with_timezone(&cst());
    values.insert("valid_from".into(), today.format("%Y-%m-%d").to_string());
    let form = Form::new(console, viewer, &admin, values);
    rendered(super::own_outcome(), form.render())
}

/// `GET /console/agreements/{id}/edit`: the form over `GET /admin/v1/agreements/{id}`.
pub(crate) async fn edit_form(console: &Console, viewer: &Viewer, id: &str) -> Outcome {
    let admin = match as_admin(console, viewer) {
        Ok(a) => a,
        Err(o) => return o,
    };
    let o = api::get(&console.policy, &admin, id).await;
    let Some(body) = body_of(&o) else { return o };
    let values = values_of(&body["agreement"]);
    let mut form = Form::new(console, viewer, &admin, values);
    form.editing = Some(id.to_owned());
    let html = form.render();
    rendered(o, html)
}

/// The form's values of a stored agreement.
fn values_of(a: &Value) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    for k in [
        "id",
        "consumer",
        "dataset",
        "operator_rate",
        "hours",
        "approver",
    ] {
        v.insert(k.to_owned(), text(&a[k]));
    }
    v.insert("daily_quota".into(), text(&a["daily_quota"]));
    v.insert("matters".into(), strings(&a["matters"]).join(","));
    for k in ["valid_from", "valid_until"] {
        let day = chrono::DateTime::parse_from_rfc3339(&text(&a[k]))
            .map(|t| t.with_timezone(&cst()).format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        v.insert(k.to_owned(), day);
    }
    for (f, rule) in a["fields"].as_object().into_iter().flatten() {
        v.insert(format!("field.{f}"), text(rule));
    }
    v
}

fn cst() -> chrono::FixedOffset {
    // 8 hours is always a valid offset.
    chrono::FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| chrono::Utc.fix())
}

/// The posted form as the values shown again and, when it makes one, the
/// agreement (as the API's JSON body); errors of single inputs by name.
fn parse(
    admin: &Admin,
    form: &[(String, String)],
    path_id: Option<&str>,
) -> (
    BTreeMap<String, String>,
    Result<Value, BTreeMap<String, String>>,
) {
    let mut values = BTreeMap::new();
    let mut matters = Vec::new();
    let mut fields = Map::new();
    for (k, v) in form {
        let v = v.trim().to_owned();
        if k == "matters" {
            matters.push(v.clone());
        } else if let Some(f) = k.strip_prefix("field.") {
            if !v.is_empty() {
                fields.insert(f.to_owned(), Value::String(v.clone()));
            }
            values.insert(k.clone(), v);
        } else if k != crate::console::csrf::TOKEN_FIELD {
            values.insert(k.clone(), v);
        }
    }
    if let Some(id) = path_id {
        values.insert("id".into(), id.to_owned());
    }
    values.insert("matters".into(), matters.join(","));
    let mut errors = BTreeMap::new();
    let get = |k: &str| values.get(k).cloned().unwrap_or_default();
    let mut body = json!({
        "id": get("id"),
        "provider": admin.department,
        "consumer": get("consumer"),
        "dataset": get("dataset"),
        "matters": matters,
        "fields": fields,
        "approver": get("approver"),
    });
    for (k, end) in [("valid_from", "00:00:00"), ("valid_until", "23:59:59")] {
        let v = get(k);
        match time_of(&v, end) {
            Some(t) => body[k] = json!(t),
            None => {
                errors.insert(
                    k.to_owned(),
                    format!("{k}: {v:?} is not a date (YYYY-MM-DD) or an RFC 3339 time"),
                );
            }
        }
    }
    let quota = get("daily_quota");
    if !quota.is_empty() {
        match quota.parse::<u32>() {
            Ok(n) => body["daily_quota"] = json!(n),
            Err(_) => {
                errors.insert(
                    "daily_quota".into(),
                    format!("daily_quota: {quota:?} is not a whole number"),
                );
            }
        }
    }
    for k in ["operator_rate", "hours"] {
        let v = get(k);
        if !v.is_empty() {
            body[k] = json!(v);
        }
    }
    let result = if errors.is_empty() {
        Ok(body)
    } else {
        Err(errors)
    };
    (values, result)
}

/// A date in China Standard Time at `end` of its day's bounds, or an RFC 3339 time.
fn time_of(v: &str, end: &str) -> Option<String> {
    if chrono::DateTime::parse_from_rfc3339(v).is_ok() {
        return Some(v.to_owned());
    }
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .map(|d| format!("{d}T{end}+08:00"))
}

/// `POST /console/agreements/new`: `POST /admin/v1/agreements`.
pub(crate) async fn create(
    console: &Console,
    viewer: &Viewer,
    form: &[(String, String)],
) -> Outcome {
    save(console, viewer, form, None).await
}

/// `POST /console/agreements/{id}/edit`: `PUT /admin/v1/agreements/{id}`.
pub(crate) async fn replace(
    console: &Console,
    viewer: &Viewer,
    id: &str,
    form: &[(String, String)],
) -> Outcome {
    save(console, viewer, form, Some(id)).await
}

async fn save(
    console: &Console,
    viewer: &Viewer,
    form: &[(String, String)],
    path_id: Option<&str>,
) -> Outcome {
    let admin = match as_admin(console, viewer) {
        Ok(a) => a,
        Err(o) => return o,
    };
    let (values, parsed) = parse(&admin, form, path_id);
    let o = match parsed {
        Ok(body) => match serde_json::from_value::<policy::Agreement>(body) {
            Ok(a) => {
                let edit = if path_id.is_some() {
                    Edit::Put(a)
                } else {
                    Edit::Create(a)
                };
                api::change(&console.policy, &admin, edit).await
            }
            Err(e) => Outcome::error(ApiError::BadRequest(format!(
                "body is not an agreement: {e}"
            ))),
        },
        Err(errors) => {
            let first = errors.values().next().cloned().unwrap_or_default();
            let field = errors.keys().next().cloned().unwrap_or_default();
            Outcome::error(ApiError::InvalidField {
                field,
                detail: first,
            })
        }
    };
    if o.result.is_ok() {
        let id = values.get("id").cloned().unwrap_or_default();
        let to = format!(
            "/console/agreements/{}",
            form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
        );
        return see_other(o, &to);
    }
    // The form again, with the API's error beside its input.
    let mut page = Form::new(console, viewer, &admin, values);
    page.editing = path_id.map(str::to_owned);
    if let Err(e) = &o.result {
        match e {
            ApiError::InvalidField { field, detail } => {
                page.errors.insert(field.clone(), detail.clone());
            }
            other => {
                page.general = Some((
                    page.c.t(&format!("problem.{}", other.slug())).to_owned(),
                    other.to_string(),
                ));
            }
        }
    }
    let html = page.render();
    rendered(o, html)
}

/// `POST /console/agreements/{id}/revoke`: `DELETE /admin/v1/agreements/{id}`.
pub(crate) async fn revoke(console: &Console, viewer: &Viewer, id: &str) -> Outcome {
    let admin = match as_admin(console, viewer) {
        Ok(a) => a,
        Err(o) => return o,
    };
    let o = api::change(&console.policy, &admin, Edit::Revoke(id.to_owned())).await;
    if o.result.is_ok() {
        return see_other(o, "/console/agreements");
    }
    o
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn admin() -> Admin {
        Admin {
            uri: "urn:tongban:sz-psb:admin-01".into(),
            department: "sz-psb".into(),
        }
    }

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn a_form_becomes_the_apis_body_for_the_admins_department() {
        let f = form(&[
            ("csrf", "t"),
            ("id", " civil-population "),
            ("consumer", "urn:tongban:sz-civil:counter-01"),
            ("dataset", "population"),
            ("matters", "marriage-registration"),
            ("matters", "school-enrollment"),
            ("field.name", "full"),
            ("field.sex", ""),
            ("field.household_address", "masked"),
            ("valid_from", "2026-01-01"),
            ("valid_until", "2099-12-31"),
            ("daily_quota", "500"),
            ("hours", ""),
        ]);
        let (values, body) = parse(&admin(), &f, None);
        let body = body.unwrap();
        assert_eq!(body["provider"], "sz-psb");
        assert_eq!(body["id"], "civil-population");
        assert_eq!(
            body["matters"],
            json!(["marriage-registration", "school-enrollment"])
        );
        assert_eq!(
            body["fields"],
            json!({"name": "full", "household_address": "masked"})
        );
        assert_eq!(body["valid_from"], "2026-01-01T00:00:00+08:00");
        assert_eq!(body["valid_until"], "2099-12-31T23:59:59+08:00");
        assert_eq!(body["daily_quota"], 500);
        assert!(body.get("hours").is_none());
        assert!(
            !values.contains_key("csrf"),
            "the token is not a value to show again"
        );
        let a: policy::Agreement = serde_json::from_value(body).unwrap();
        assert_eq!(a.fields.len(), 2);
    }

    #[test]
    fn inputs_that_make_no_agreement_are_named() {
        let f = form(&[
            ("valid_from", "tomorrow"),
            ("valid_until", "2099-12-31"),
            ("daily_quota", "-1"),
        ]);
        let (_, body) = parse(&admin(), &f, Some("x"));
        let errors = body.unwrap_err();
        assert_eq!(
            errors.keys().collect::<Vec<_>>(),
            ["daily_quota", "valid_from"]
        );
    }

    #[test]
    fn history_shows_what_changed_member_by_member() {
        let before = json!({"matters": ["a"], "daily_quota": 5, "id": "x"});
        let after = json!({"matters": ["a", "b"], "id": "x", "hours": "08:00-18:00"});
        assert_eq!(
            diff(&before, &after),
            vec![
                ("daily_quota".into(), "5".into(), "—".into()),
                ("hours".into(), "—".into(), "08:00-18:00".into()),
                ("matters".into(), "[\"a\"]".into(), "[\"a\",\"b\"]".into()),
            ]
        );
        // A create has no before: every member is new.
        assert_eq!(diff(&Value::Null, &json!({"id": "x"})).len(), 1);
    }
}
