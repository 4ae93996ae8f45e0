//! Department admins' access requests: the requests made to the department (to
//! review) and by it (their state), one request with its history, and the review
//! forms — approve (narrowed), refuse (with a reason), withdraw. Every page and form
//! calls the request API's own functions (`requests_api::list`, `show`, `decide`),
//! so the checks, the refusals, the errors and the audit records are the API's.

use std::collections::BTreeMap;

use askama::Template;
use chrono::Offset as _;
use serde_json::{json, Map, Value};

use super::agreements::as_admin;
use super::{encode, param, rendered};
use crate::console::view::Chrome;
use crate::console::{body_of, see_other, Console, Viewer};
use crate::error::ApiError;
use crate::http::requests_api::{self as api, Step};
use crate::http::Outcome;
use crate::requests::Actor;

/// The states a list can be filtered by, as the API names them.
const STATES: [&str; 5] = ["submitted", "approved", "refused", "withdrawn", "expired"];

/// The viewer as the request API's actor (a dept-admin of its department), or the
/// API's refusal.
#[allow(clippy::result_large_err)] // the error is the outcome to answer with
fn actor(console: &Console, viewer: &Viewer) -> Result<(Actor, String), Outcome> {
    let admin = as_admin(console, viewer)?;
    Ok((
        Actor::admin(&admin.uri, &admin.department),
        admin.department,
    ))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// China Standard Time, in which dates are shown and typed.
fn cst() -> chrono::FixedOffset {
    // 8 hours is always a valid offset.
    chrono::FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| chrono::Utc.fix())
}

/// An RFC 3339 time as its day in China Standard Time (empty when it is none).
fn day_of(v: &Value) -> String {
    chrono::DateTime::parse_from_rfc3339(&text(v))
        .map(|t| t.with_timezone(&cst()).format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// An RFC 3339 time to the minute in China Standard Time.
fn minute_of(v: &Value) -> String {
    chrono::DateTime::parse_from_rfc3339(&text(v))
        .map(|t| t.with_timezone(&cst()).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|_| text(v))
}

/// One request as a list shows it.
pub(crate) struct Item {
    pub id: String,
    pub state: String,
    pub overdue: bool,
    pub dataset: String,
    pub consumer: String,
    pub provider: String,
    pub submitted: String,
    pub review_by: String,
}

impl Item {
    fn of(r: &Value) -> Self {
        Self {
            id: text(&r["id"]),
            state: text(&r["state"]),
            overdue: r["overdue"].as_bool().unwrap_or_default(),
            dataset: text(&r["terms"]["dataset"]),
            consumer: text(&r["terms"]["consumer"]),
            provider: text(&r["provider"]),
            submitted: minute_of(&r["submitted_at"]),
            review_by: minute_of(&r["review_by"]),
        }
    }
}

#[derive(Template)]
#[template(path = "console/requests.html")]
struct List<'a> {
    c: Chrome<'a>,
    overdue_only: bool,
    /// (state, chosen in the filter)
    states: Vec<(&'static str, bool)>,
    to_review: Vec<Item>,
    made: Vec<Item>,
}

/// `GET /console/requests?state=&overdue=`: `GET /admin/v1/requests`, split into
/// the requests to the department and those by it.
pub(crate) async fn list(
    console: &Console,
    viewer: &Viewer,
    query: &[(String, String)],
) -> Outcome {
    let (who, department) = match actor(console, viewer) {
        Ok(a) => a,
        Err(o) => return o,
    };
    // Only the API's filters go on: the list is the API call's, nothing more.
    let asked: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| k == "state" || k == "overdue")
        .cloned()
        .collect();
    let o = api::list(&console.requests, &who, &encode(&asked)).await;
    let Some(body) = body_of(&o) else { return o };
    let all = body["requests"].as_array().cloned().unwrap_or_default();
    // A request of the department to itself is in both lists: it reviews its own.
    let to_review = all
        .iter()
        .filter(|r| r["provider"] == department.as_str())
        .map(Item::of)
        .collect();
    let made = all
        .iter()
        .filter(|r| r["consumer_department"] == department.as_str())
        .map(Item::of)
        .collect();
    let page = List {
        c: Chrome::new(console, viewer, "requests"),
        states: STATES
            .iter()
            .map(|s| (*s, param(query, "state") == Some(*s)))
            .collect(),
        overdue_only: param(query, "overdue") == Some("true"),
        to_review,
        made,
    };
    let html = page.render();
    rendered(o, html)
}

/// The request page: the request, its history, and the forms the viewer may use,
/// with what was posted and the API's errors beside their inputs.
#[derive(Template)]
#[template(path = "console/request.html")]
struct View<'a> {
    c: Chrome<'a>,
    id: String,
    state: String,
    overdue: bool,
    /// (member, value) of the request, as the API shows it.
    members: Vec<(String, String)>,
    /// (field, asked rule, rule granted in the form: "", "full" or "masked")
    fields: Vec<(String, String, String)>,
    /// (matter, ticked)
    matters: Vec<(String, bool)>,
    /// The approve form's other inputs, as shown.
    values: BTreeMap<String, String>,
    /// (seq, action, actor, at, state before (empty for the filing), state after)
    history: Vec<(String, String, String, String, String, String)>,
    /// The viewer's department reviews it (and it is still submitted).
    reviews: bool,
    /// The viewer's department filed it (and it is still submitted).
    withdraws: bool,
    errors: BTreeMap<String, String>,
    /// An error not about one input (409, 403, a malformed body).
    general: Option<(String, String)>,
}

impl View<'_> {
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

impl<'a> View<'a> {
    /// The page of request `r` (the API's JSON, with `history`) for a viewer of
    /// `department`; `posted` are the approve form's inputs sent, if any.
    fn new(
        console: &'a Console,
        viewer: &Viewer,
        department: &str,
        r: &Value,
        posted: Option<&[(String, String)]>,
    ) -> Self {
        let t = &r["terms"];
        let submitted = r["state"] == "submitted";
        // The state is the page's heading line, in the viewer's language.
        let members = [
            ("dataset", text(&t["dataset"])),
            ("consumer", text(&t["consumer"])),
            ("consumer_department", text(&r["consumer_department"])),
            ("provider", text(&r["provider"])),
            ("requester", text(&r["requester"])),
            ("legal_basis", text(&t["legal_basis"])),
            ("contact", text(&t["contact"])),
            ("valid_from", minute_of(&t["valid_from"])),
            ("valid_until", minute_of(&t["valid_until"])),
            ("daily_quota", text(&t["daily_quota"])),
            ("renews", text(&t["renews"])),
            ("submitted_at", minute_of(&r["submitted_at"])),
            ("review_by", minute_of(&r["review_by"])),
            ("decided_at", minute_of(&r["decided_at"])),
            ("decided_by", text(&r["decided_by"])),
            ("reason", text(&r["reason"])),
            ("agreement", text(&r["agreement"])),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let pick = |k: &str| -> Vec<&str> {
            posted
                .into_iter()
                .flatten()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        let fields = t["fields"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(f, asked)| {
                let asked = text(asked);
                // As asked, until the form says otherwise.
                let granted = match posted {
                    None => asked.clone(),
                    Some(_) => pick(&format!("field.{f}"))
                        .first()
                        .map(|s| (*s).to_owned())
                        .unwrap_or_default(),
                };
                (f.clone(), asked, granted)
            })
            .collect();
        let ticked = pick("matters");
        let matters = t["matters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let m = text(m);
                let on = posted.is_none() || ticked.contains(&m.as_str());
                (m, on)
            })
            .collect();
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        values.insert("daily_quota".into(), text(&t["daily_quota"]));
        values.insert("valid_from".into(), day_of(&t["valid_from"]));
        values.insert("valid_until".into(), day_of(&t["valid_until"]));
        values.insert("asked_valid_from".into(), day_of(&t["valid_from"]));
        values.insert("asked_valid_until".into(), day_of(&t["valid_until"]));
        // What was typed is shown again (the hidden asked dates are not typed).
        let typed = [
            "daily_quota",
            "valid_from",
            "valid_until",
            "agreement_id",
            "reason",
        ];
        for (k, v) in posted.into_iter().flatten() {
            if typed.contains(&k.as_str()) {
                values.insert(k.clone(), v.trim().to_owned());
            }
        }
        let history = r["history"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    text(&e["seq"]),
                    text(&e["action"]),
                    text(&e["actor"]),
                    minute_of(&e["at"]),
                    text(&e["from"]),
                    text(&e["to"]),
                )
            })
            .collect();
        Self {
            c: Chrome::new(console, viewer, "requests"),
            id: text(&r["id"]),
            state: text(&r["state"]),
            overdue: r["overdue"].as_bool().unwrap_or_default(),
            members,
            fields,
            matters,
            values,
            history,
            reviews: submitted && r["provider"] == department,
            withdraws: submitted && r["consumer_department"] == department,
            errors: BTreeMap::new(),
            general: None,
        }
    }
}

/// `GET /console/requests/{id}`: `GET /admin/v1/requests/{id}`.
pub(crate) async fn view(console: &Console, viewer: &Viewer, id: &str) -> Outcome {
    let (who, department) = match actor(console, viewer) {
        Ok(a) => a,
        Err(o) => return o,
    };
    let o = api::show(&console.requests, &who, id).await;
    let Some(body) = body_of(&o) else { return o };
    let html = View::new(console, viewer, &department, body, None).render();
    rendered(o, html)
}

/// The approve form as the API's narrowing: the fields and matters ticked, and
/// only the terms the admin changed (a date left as asked is not sent, so the
/// day's rounding never reads as a wider window). Inputs that make no narrowing
/// are named.
fn narrowing(form: &[(String, String)]) -> Result<Value, BTreeMap<String, String>> {
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim())
            .unwrap_or_default()
    };
    let mut errors = BTreeMap::new();
    let mut fields = Map::new();
    for (k, v) in form {
        if let Some(f) = k.strip_prefix("field.") {
            if !v.trim().is_empty() {
                fields.insert(f.to_owned(), Value::String(v.trim().to_owned()));
            }
        }
    }
    let matters: Vec<&str> = form
        .iter()
        .filter(|(k, _)| k == "matters")
        .map(|(_, v)| v.trim())
        .collect();
    let mut body = json!({"fields": fields, "matters": matters});
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
    for (k, end) in [("valid_from", "00:00:00"), ("valid_until", "23:59:59")] {
        let v = get(k);
        if v.is_empty() || v == get(&format!("asked_{k}")) {
            continue;
        }
        match chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
            Ok(d) => body[k] = json!(format!("{d}T{end}+08:00")),
            Err(_) => {
                errors.insert(
                    k.to_owned(),
                    format!("{k}: {v:?} is not a date (YYYY-MM-DD)"),
                );
            }
        }
    }
    let id = get("agreement_id");
    if !id.is_empty() {
        body["agreement_id"] = json!(id);
    }
    if errors.is_empty() {
        Ok(body)
    } else {
        Err(errors)
    }
}

/// `POST /console/requests/{id}/approve`: `POST /admin/v1/requests/{id}/approve`
/// with the narrowing the form makes.
pub(crate) async fn approve(
    console: &Console,
    viewer: &Viewer,
    id: &str,
    form: &[(String, String)],
) -> Outcome {
    // Who first: a viewer who may not review learns nothing about the form.
    if let Err(o) = actor(console, viewer) {
        return o;
    }
    match narrowing(form) {
        Ok(body) => step(console, viewer, id, Step::Approve, body, form).await,
        Err(errors) => {
            // Refused before the API is asked, as a malformed body would be.
            let (field, detail) = errors.into_iter().next().unwrap_or_default();
            let o = Outcome::error(ApiError::InvalidField { field, detail });
            again(console, viewer, id, o, form).await
        }
    }
}

/// `POST /console/requests/{id}/refuse`: `POST /admin/v1/requests/{id}/refuse`;
/// an empty reason goes to the API, which names it.
pub(crate) async fn refuse(
    console: &Console,
    viewer: &Viewer,
    id: &str,
    form: &[(String, String)],
) -> Outcome {
    let reason = param(form, "reason").unwrap_or_default().trim();
    let body = json!({ "reason": reason });
    step(console, viewer, id, Step::Refuse, body, form).await
}

/// `POST /console/requests/{id}/withdraw`: `POST /admin/v1/requests/{id}/withdraw`.
pub(crate) async fn withdraw(
    console: &Console,
    viewer: &Viewer,
    id: &str,
    form: &[(String, String)],
) -> Outcome {
    let body = match param(form, "reason").map(str::trim) {
        Some(r) if !r.is_empty() => json!({ "reason": r }),
        _ => json!({}),
    };
    step(console, viewer, id, Step::Withdraw, body, form).await
}

/// Take `step` through the API's function: `303` to the request's page when done,
/// else its page again with the API's error beside the input it names.
async fn step(
    console: &Console,
    viewer: &Viewer,
    id: &str,
    step: Step,
    body: Value,
    form: &[(String, String)],
) -> Outcome {
    let (who, _) = match actor(console, viewer) {
        Ok(a) => a,
        Err(o) => return o,
    };
    let o = api::decide(&console.requests, &who, id, step, body).await;
    if o.result.is_ok() {
        return see_other(o, &location(id));
    }
    again(console, viewer, id, o, form).await
}

fn location(id: &str) -> String {
    format!(
        "/console/requests/{}",
        form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
    )
}

/// The request's page again after the failed outcome `o` (kept: it is what the
/// record says), its error shown beside its input.
async fn again(
    console: &Console,
    viewer: &Viewer,
    id: &str,
    o: Outcome,
    form: &[(String, String)],
) -> Outcome {
    let (who, department) = match actor(console, viewer) {
        Ok(a) => a,
        Err(o) => return o,
    };
    // Read to show it again; this read's outcome is not the answer's.
    let shown = console.requests.show(&who, id).await;
    let Ok((r, history)) = shown else { return o };
    let mut r = crate::requests::request_json(&r, chrono::Utc::now());
    r["history"] = history.iter().map(crate::requests::event_json).collect();
    let mut page = View::new(console, viewer, &department, &r, Some(form));
    if let Err(e) = &o.result {
        match e {
            ApiError::InvalidField { field, detail } => {
                page.errors.insert(field.clone(), detail.clone());
            }
            ApiError::Invalid { field, message } => {
                page.errors
                    .insert(field.clone(), format!("{field}: {message}"));
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn the_approve_form_sends_what_is_ticked_and_only_the_dates_changed() {
        let f = form(&[
            ("csrf", "t"),
            ("field.name", "full"),
            ("field.birth_date", ""),
            ("field.household_address", "masked"),
            ("matters", "housing-fund-withdrawal"),
            ("daily_quota", "100"),
            ("valid_from", "2026-12-05"),
            ("asked_valid_from", "2026-12-05"),
            ("valid_until", "2027-06-30"),
            ("asked_valid_until", "2027-12-05"),
            ("agreement_id", ""),
        ]);
        let body = narrowing(&f).unwrap();
        assert_eq!(
            body,
            json!({
                "fields": {"name": "full", "household_address": "masked"},
                "matters": ["housing-fund-withdrawal"],
                "daily_quota": 100,
                "valid_until": "2027-06-30T23:59:59+08:00",
            })
        );
        let n: policy::Narrowing = serde_json::from_value(body).unwrap();
        assert_eq!(n.fields.unwrap().len(), 2);
        assert!(n.valid_from.is_none());
    }

    #[test]
    fn inputs_that_make_no_narrowing_are_named() {
        let f = form(&[("daily_quota", "lots"), ("valid_until", "soon")]);
        let errors = narrowing(&f).unwrap_err();
        assert_eq!(
            errors.keys().collect::<Vec<_>>(),
            ["daily_quota", "valid_until"]
        );
    }
}
