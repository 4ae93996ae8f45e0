//! Security officers' pages (role `auditor`): search with proof status, one record,
//! the citizen's report, anomalies, the log's health, charts. Each is the answer of
//! an auditor API call (`/audit/v1/…`), rendered.

use askama::Template;
use serde_json::Value;

use super::proof::{Checker, Status};
use super::{encode, param, rendered};
use crate::console::view::Chrome;
use crate::console::{body_of, svg, Console, Viewer};
use crate::http::audit_api::{records as api_records, refused, RECORDS};
use crate::http::audit_reports::{ANOMALIES, HEALTH, STATS, SUBJECTS};
use crate::http::Outcome;

/// Records per search page.
const PAGE: &str = "50";

/// The search filters, in the form's order.
pub(crate) const FILTERS: &[&str] = &[
    "from", "to", "consumer", "operator", "dataset", "subject", "matter", "case_id", "decision",
];

/// One record as the search page lists it.
pub(crate) struct Row {
    pub seq: i64,
    pub time: String,
    pub consumer: String,
    pub operator: String,
    pub dataset: String,
    pub subject: String,
    pub matter: String,
    pub case_id: String,
    pub decision: String,
    pub status: String,
    pub path: String,
    pub proof: Status,
}

fn text(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

impl Row {
    fn of(v: &Value, proof: Status) -> Self {
        Self {
            seq: v.get("seq").and_then(Value::as_i64).unwrap_or_default(),
            time: text(v, "time"),
            consumer: text(v, "consumer"),
            operator: text(v, "operator"),
            dataset: text(v, "dataset"),
            subject: text(v, "subject"),
            matter: text(v, "matter"),
            case_id: text(v, "case_id"),
            decision: text(v, "decision"),
            status: text(v, "status"),
            path: text(v, "path"),
            proof,
        }
    }
}

#[derive(Template)]
#[template(path = "console/records.html")]
struct Search<'a> {
    c: Chrome<'a>,
    filters: Vec<(String, String)>,
    rows: Vec<Row>,
    next: Option<String>,
}

/// `GET /console/records?…`: `GET /audit/v1/records?…`, 50 a page, each record's
/// proof checked against the latest signed checkpoint.
pub(crate) async fn search(
    console: &Console,
    viewer: &Viewer,
    query: &[(String, String)],
) -> Outcome {
    let mut asked = query.to_vec();
    if param(&asked, "limit").is_none() {
        asked.push(("limit".into(), PAGE.into()));
    }
    let o = api_records(
        console.audit.store(),
        &console.policy.authorizer,
        Some(viewer.principal.clone()),
        RECORDS,
        &encode(&asked),
    )
    .await;
    let Some(body) = body_of(&o) else { return o };
    let checker = Checker::latest(console).await;
    let mut rows = Vec::new();
    for r in body["records"].as_array().into_iter().flatten() {
        let seq = r.get("seq").and_then(Value::as_i64).unwrap_or_default();
        rows.push(Row::of(r, checker.status(seq).await));
    }
    let next = body["next"]
        .as_str()
        .map(|n| n.replacen(RECORDS, "/console/records", 1));
    let filters = FILTERS
        .iter()
        .map(|k| {
            (
                (*k).to_owned(),
                param(query, k).unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let page = Search {
        c: Chrome::new(console, viewer, "records"),
        filters,
        rows,
        next,
    };
    let html = page.render();
    rendered(o, html)
}

#[derive(Template)]
#[template(path = "console/record.html")]
struct Detail<'a> {
    c: Chrome<'a>,
    seq: i64,
    members: Vec<(String, String)>,
    proof: Status,
}

/// `GET /console/records/{seq}`: `GET /audit/v1/records/{seq}`, every member, and
/// its proof.
pub(crate) async fn record(console: &Console, viewer: &Viewer, seq: &str) -> Outcome {
    let o = api_records(
        console.audit.store(),
        &console.policy.authorizer,
        Some(viewer.principal.clone()),
        &format!("{RECORDS}/{seq}"),
        "",
    )
    .await;
    let Some(Value::Object(body)) = body_of(&o) else {
        return o;
    };
    let seq = body.get("seq").and_then(Value::as_i64).unwrap_or_default();
    let members = body
        .iter()
        .map(|(k, v)| {
            let shown = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => serde_json::to_string_pretty(other).unwrap_or_default(),
            };
            (k.clone(), shown)
        })
        .collect();
    let proof = Checker::latest(console).await.status(seq).await;
    let html = Detail {
        c: Chrome::new(console, viewer, "records"),
        seq,
        members,
        proof,
    }
    .render();
    rendered(o, html)
}

/// One access in the citizen's report.
pub(crate) struct Access {
    pub seq: i64,
    pub time: String,
    pub department: String,
    pub system: String,
    pub operator: String,
    pub matter: String,
    pub case_id: String,
    pub dataset: String,
    pub fields: String,
    pub decision: String,
    pub agreement: String,
}

#[derive(Template)]
#[template(path = "console/subject.html")]
struct Subject<'a> {
    c: Chrome<'a>,
    subject: String,
    from: String,
    to: String,
    generated_at: String,
    disclosed: u64,
    accesses: Vec<Access>,
}

/// `GET /console/subjects?subject=…`: `GET /audit/v1/subjects/{subject}`; without a
/// subject, the form alone.
pub(crate) async fn subject(
    console: &Console,
    viewer: &Viewer,
    query: &[(String, String)],
) -> Outcome {
    let c = Chrome::new(console, viewer, "subjects");
    let (from, to) = (
        param(query, "from").unwrap_or_default().to_owned(),
        param(query, "to").unwrap_or_default().to_owned(),
    );
    let Some(subject) = param(query, "subject").map(str::to_owned) else {
        let page = Subject {
            c,
            subject: String::new(),
            from,
            to,
            generated_at: String::new(),
            disclosed: 0,
            accesses: Vec::new(),
        };
        // Refused like the API when the viewer is no auditor.
        if let Some(refusal) = refused(&console.policy.authorizer, Some(&viewer.principal)) {
            return refusal;
        }
        return rendered(super::own_outcome(), page.render());
    };
    let range: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| k == "from" || k == "to")
        .cloned()
        .collect();
    let path = format!(
        "{SUBJECTS}/{}",
        form_urlencoded::byte_serialize(subject.as_bytes()).collect::<String>()
    );
    let o = console
        .reports
        .answer(Some(&viewer.principal), &path, &encode(&range))
        .await;
    let Some(body) = body_of(&o) else { return o };
    let accesses = body["accesses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| Access {
            seq: a["seq"].as_i64().unwrap_or_default(),
            time: text(a, "time"),
            department: text(a, "department"),
            system: text(a, "system"),
            operator: text(a, "operator"),
            matter: text(a, "matter"),
            case_id: text(a, "case_id"),
            dataset: text(a, "dataset"),
            fields: a["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            decision: text(a, "decision"),
            agreement: text(a, "agreement"),
        })
        .collect();
    let page = Subject {
        c,
        subject,
        from,
        to,
        generated_at: text(body, "generated_at"),
        disclosed: body["disclosed"].as_u64().unwrap_or_default(),
        accesses,
    };
    let html = page.render();
    rendered(o, html)
}

/// One anomaly finding.
pub(crate) struct Finding {
    pub rule: String,
    pub who: String,
    pub count: u64,
    pub first: String,
    pub last: String,
    pub seqs: Vec<i64>,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "console/anomalies.html")]
struct Anomalies<'a> {
    c: Chrome<'a>,
    from: String,
    to: String,
    findings: Vec<Finding>,
}

/// `GET /console/anomalies?from=&to=`: `GET /audit/v1/anomalies`.
pub(crate) async fn anomalies(
    console: &Console,
    viewer: &Viewer,
    query: &[(String, String)],
) -> Outcome {
    let range: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| k == "from" || k == "to")
        .cloned()
        .collect();
    let o = console
        .reports
        .answer(Some(&viewer.principal), ANOMALIES, &encode(&range))
        .await;
    let Some(body) = body_of(&o) else { return o };
    let findings = body["anomalies"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| Finding {
            rule: text(a, "rule"),
            who: text(a, "who"),
            count: a["count"].as_u64().unwrap_or_default(),
            first: text(a, "first"),
            last: text(a, "last"),
            seqs: a["seqs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_i64)
                .collect(),
            detail: text(a, "detail"),
        })
        .collect();
    let page = Anomalies {
        c: Chrome::new(console, viewer, "anomalies"),
        from: param(query, "from").unwrap_or_default().to_owned(),
        to: param(query, "to").unwrap_or_default().to_owned(),
        findings,
    };
    let html = page.render();
    rendered(o, html)
}

#[derive(Template)]
#[template(path = "console/health.html")]
struct Health<'a> {
    c: Chrome<'a>,
    checkpoint_size: String,
    checkpoint_root: String,
    checkpoint_note: String,
    signature_ok: bool,
    tree_size: String,
    first: String,
    last: String,
    witnesses: Vec<(String, String)>,
    archives: Vec<(String, String, String)>,
    /// The last `audit verify` run: when (empty: none recorded), whether it passed,
    /// its summary.
    verify_at: String,
    verify_ok: bool,
    verify_summary: String,
}

/// `GET /console/health`: `GET /audit/v1/health`, the checkpoint's signature
/// checked with the gateway's public key.
pub(crate) async fn health(console: &Console, viewer: &Viewer) -> Outcome {
    let o = console
        .reports
        .answer(Some(&viewer.principal), HEALTH, "")
        .await;
    let Some(body) = body_of(&o) else { return o };
    let cp = &body["checkpoint"];
    let note = text(cp, "note");
    let signature_ok = !note.is_empty() && note_signed(&note, &console.public_key);
    let page = Health {
        c: Chrome::new(console, viewer, "health"),
        checkpoint_size: text(cp, "size"),
        checkpoint_root: text(cp, "root"),
        checkpoint_note: note,
        signature_ok,
        tree_size: text(body, "tree_size"),
        first: text(&body["records"], "first"),
        last: text(&body["records"], "last"),
        witnesses: body["witnesses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| (text(w, "witness"), text(w, "cosigned_size")))
            .collect(),
        archives: body["archives"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    format!("{} – {}", text(a, "from_seq"), text(a, "to_seq")),
                    text(a, "file"),
                    text(a, "sha256"),
                )
            })
            .collect(),
        verify_at: text(&body["last_verify"], "finished_at"),
        verify_ok: body["last_verify"]["ok"].as_bool() == Some(true),
        verify_summary: text(&body["last_verify"], "summary"),
    };
    let html = page.render();
    rendered(o, html)
}

/// Whether `note` carries the gateway's signature over its text.
fn note_signed(note: &str, public_key: &[u8]) -> bool {
    use audit::tlog::note::{Note, Verifier, TYPE_ED25519};
    let Ok(n) = Note::parse(note) else {
        return false;
    };
    let Some(origin) = n.text.lines().next() else {
        return false;
    };
    Verifier::new(origin, TYPE_ED25519, public_key)
        .ok()
        .is_some_and(|k| n.verify(&k).is_ok())
}

#[derive(Template)]
#[template(path = "console/charts.html")]
struct Charts<'a> {
    c: Chrome<'a>,
    from: String,
    to: String,
    lookups: u64,
    truncated: bool,
    hours_svg: String,
    hours: Vec<(String, u64, u64, u64)>,
    reasons_svg: String,
    reasons: Vec<(String, u64)>,
    operators_svg: String,
    operators: Vec<(String, String, u64)>,
}

/// `GET /console/charts?from=&to=`: `GET /audit/v1/stats`, drawn.
pub(crate) async fn charts(
    console: &Console,
    viewer: &Viewer,
    query: &[(String, String)],
) -> Outcome {
    let range: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| k == "from" || k == "to")
        .cloned()
        .collect();
    let o = console
        .reports
        .answer(Some(&viewer.principal), STATS, &encode(&range))
        .await;
    let Some(body) = body_of(&o) else { return o };
    let c = Chrome::new(console, viewer, "charts");
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or_default();
    let list = |k: &str| body[k].as_array().cloned().unwrap_or_default();
    let hours: Vec<(String, u64, u64, u64)> = list("per_hour")
        .iter()
        .map(|h| {
            let hour = text(h, "hour");
            (hour, n(h, "allow"), n(h, "deny"), n(h, "error"))
        })
        .collect();
    let columns: Vec<(String, Vec<u64>)> = hours
        .iter()
        .map(|(h, a, d, e)| (h.get(11..13).unwrap_or(h).to_owned(), vec![*a, *d, *e]))
        .collect();
    let reasons: Vec<(String, u64)> = list("denials_by_reason")
        .iter()
        .map(|r| (text(r, "reason"), n(r, "count")))
        .collect();
    let operators: Vec<(String, String, u64)> = list("top_operators")
        .iter()
        .map(|r| (text(r, "consumer"), text(r, "operator"), n(r, "count")))
        .collect();
    let operator_bars: Vec<(String, u64)> = operators
        .iter()
        .map(|(_, op, count)| (op.clone(), *count))
        .collect();
    let page = Charts {
        hours_svg: svg::stacked(
            c.t("charts.per_hour"),
            &["allow", "deny", "error"],
            &columns,
        ),
        reasons_svg: svg::bars(c.t("charts.denials"), "deny", &reasons),
        operators_svg: svg::bars(c.t("charts.operators"), "bar", &operator_bars),
        from: param(query, "from").unwrap_or_default().to_owned(),
        to: param(query, "to").unwrap_or_default().to_owned(),
        lookups: n(body, "lookups"),
        truncated: body["truncated"].as_bool().unwrap_or_default(),
        hours,
        reasons,
        operators,
        c,
    };
    let html = page.render();
    rendered(o, html)
}
