//! Access requests end to end, over mutual TLS against a real gateway: a consumer
//! department's dept-admin files, the provider's approves narrowed and a lookup is
//! allowed exactly as narrowed; refusal with a reason the requester reads;
//! withdrawal; the wrong department refused (403 problem+json); the overdue flag in
//! lists and in `/metrics`; automatic approval of open fields; renewal of an
//! agreement in place; the same flow through `tongban request …`; and the store on
//! PostgreSQL.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use chrono::{Duration, Utc};
use clap::Parser as _;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use tongban_tests::{eventually, sample, Answer, Gateway, PgDatabase};

const PSB_ADMIN: &str = "urn:tongban:sz-psb:admin-01";
const HRSS_ADMIN: &str = "urn:tongban:sz-hrss:admin-01";
const COUNTER_A: &str = "urn:tongban:sz-hrss:counter-01";
const REQUESTS: &str = "/admin/v1/requests";
/// A matter the demo's agreements do not grant counter-a on population.
const MATTER: &str = "employer-registration";

/// A gateway with a dept-admin for sz-hrss (counter-a's department) besides the
/// demo's sz-psb admin: a certificate `hrss-admin` from the demo CA and the role.
async fn gateway_with(adjust: impl FnOnce(&mut gateway::config::Config)) -> Gateway {
    let gw = Gateway::start_with(adjust).await;
    gw.add_dept_admin(HRSS_ADMIN, "hrss-admin").await;
    gw
}

async fn call(gw: &Gateway, cert: &str, method: Method, path: &str, body: Option<Value>) -> Answer {
    let headers = [("content-type", "application/json")];
    gw.client(cert)
        .request(
            method,
            path,
            &headers,
            body.map(|b| b.to_string()).unwrap_or_default(),
        )
        .await
        .unwrap()
}

/// What sz-hrss asks of population for counter-a.
fn ask(fields: Value) -> Value {
    let now = Utc::now();
    json!({
        "dataset": "population", "consumer": COUNTER_A, "fields": fields,
        "matters": [MATTER],
        "legal_basis": "Social Insurance Law art. 58: registering employees needs their identity",
        "valid_from": (now - Duration::hours(1)).to_rfc3339(),
        "valid_until": (now + Duration::days(365)).to_rfc3339(),
        "daily_quota": 1000, "contact": "HRSS data office, 0755-8888",
    })
}

async fn file(gw: &Gateway, body: Value) -> Value {
    let a = call(gw, "hrss-admin", Method::POST, REQUESTS, Some(body)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    a.body
}

fn step(id: &str, step: &str) -> String {
    format!("{REQUESTS}/{id}/{step}")
}

async fn lookup(gw: &Gateway, fields: Option<&[&str]>) -> Answer {
    let subject = sample(&gw.samples(), "population", 200)["body"]["subject"].clone();
    let mut body = json!({"dataset": "population", "subject": subject, "matter": MATTER,
                          "case_id": "ER-2026-000042"});
    if let Some(f) = fields {
        body["fields"] = json!(f);
    }
    gw.client("counter-a")
        .lookup(Some("clerk-007"), &body)
        .await
        .unwrap()
}

fn assert_problem(a: &Answer, status: StatusCode, slug: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(
        a.headers["content-type"], "application/problem+json",
        "{}",
        a.body
    );
    assert_eq!(a.body["type"], format!("/problems/{slug}"), "{}", a.body);
}

#[tokio::test]
async fn a_narrowed_approval_allows_lookups_exactly_as_narrowed() {
    let gw = gateway_with(|_| {}).await;
    assert_eq!(
        lookup(&gw, Some(&["name"])).await.status,
        StatusCode::FORBIDDEN
    );

    let asked = ask(json!({"name": "full", "birth_date": "full",
                           "household_address": "full", "ethnicity": "full"}));
    let filed = file(&gw, asked).await;
    let id = filed["id"].as_str().unwrap().to_owned();
    assert_eq!(filed["state"], "submitted");
    assert_eq!(filed["overdue"], false);
    assert_eq!(filed["provider"], "sz-psb");
    assert_eq!(filed["requester"], HRSS_ADMIN, "the certificate's identity");

    // Only the provider reviews: sz-hrss's own admin cannot approve it.
    let own = call(
        &gw,
        "hrss-admin",
        Method::POST,
        &step(&id, "approve"),
        Some(json!({})),
    )
    .await;
    assert_problem(&own, StatusCode::FORBIDDEN, "not-permitted");
    // Narrowing never widens; the error names the field.
    let wider = json!({"fields": {"sex": "full"}});
    let a = call(
        &gw,
        "admin",
        Method::POST,
        &step(&id, "approve"),
        Some(wider),
    )
    .await;
    assert_problem(&a, StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
    assert_eq!(a.body["field"], "fields.sex");

    let narrowing = json!({
        "fields": {"name": "full", "household_address": "masked"},
        "daily_quota": 10,
        "agreement_id": "hrss-population-employers",
    });
    let approved = call(
        &gw,
        "admin",
        Method::POST,
        &step(&id, "approve"),
        Some(narrowing),
    )
    .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_eq!(approved.body["state"], "approved");
    assert_eq!(approved.body["decided_by"], PSB_ADMIN);
    assert_eq!(approved.body["agreement"], "hrss-population-employers");
    // Audited before answered, the agreement change beside the transition.
    let record = gw.last_audit().await;
    assert_eq!(record["detail"]["access_request"]["action"], "approve");
    assert_eq!(record["detail"]["policy_change"]["action"], "create");
    assert_eq!(record["consumer"], PSB_ADMIN);
    assert!(
        approved.body["audit"].is_object(),
        "the answer carries its receipt"
    );

    // The agreement names the request and the approver's certificate identity.
    let agreement = call(
        &gw,
        "admin",
        Method::GET,
        "/admin/v1/agreements/hrss-population-employers",
        None,
    )
    .await;
    let a = &agreement.body["agreement"];
    assert_eq!(a["request"], id.as_str());
    assert_eq!(a["approver"], PSB_ADMIN);
    assert_eq!(a["daily_quota"], 10);
    assert_eq!(
        a["fields"],
        json!({"name": "full", "household_address": "masked"})
    );

    // Lookups: as narrowed, applied before the approval was answered.
    let ok = lookup(&gw, Some(&["name", "household_address"])).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["agreement"], "hrss-population-employers");
    assert_eq!(ok.body["masked"], json!(["household_address"]));
    let all = lookup(&gw, None).await;
    let mut granted: Vec<&String> = all.body["record"].as_object().unwrap().keys().collect();
    granted.sort();
    assert_eq!(granted, ["household_address", "name"]);
    for narrowed_away in ["birth_date", "ethnicity"] {
        let refused = lookup(&gw, Some(&["name", narrowed_away])).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{narrowed_away}: {}",
            refused.body
        );
        assert_eq!(refused.body["reason"], "field-not-allowed");
    }

    // The requester reads the decision and the history: who, when, before -> after.
    let shown = call(
        &gw,
        "hrss-admin",
        Method::GET,
        &format!("{REQUESTS}/{id}"),
        None,
    )
    .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    let history = shown.body["history"].as_array().unwrap();
    let steps: Vec<(&str, &str, &str)> = history
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
                e["to"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("file", HRSS_ADMIN, "submitted"),
            ("approve", PSB_ADMIN, "approved")
        ]
    );
    assert_eq!(history[1]["from"], "submitted");
    // Decided once: a second approval is a conflict.
    let again = call(
        &gw,
        "admin",
        Method::POST,
        &step(&id, "approve"),
        Some(json!({})),
    )
    .await;
    assert_problem(&again, StatusCode::CONFLICT, "request-not-pending");
    assert_eq!(again.body["state"], "approved");
}

#[tokio::test]
async fn refusal_withdrawal_and_who_may_do_what() {
    let gw = gateway_with(|_| {}).await;

    // Refused with a reason the requester reads.
    let filed = file(&gw, ask(json!({"name": "full", "ethnicity": "full"}))).await;
    let id = filed["id"].as_str().unwrap();
    let no_reason = call(
        &gw,
        "admin",
        Method::POST,
        &step(id, "refuse"),
        Some(json!({})),
    )
    .await;
    assert_problem(&no_reason, StatusCode::BAD_REQUEST, "bad-request");
    assert!(no_reason.body["detail"]
        .as_str()
        .unwrap()
        .starts_with("reason:"));
    let blank = call(
        &gw,
        "admin",
        Method::POST,
        &step(id, "refuse"),
        Some(json!({"reason": " "})),
    )
    .await;
    assert_problem(&blank, StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
    assert_eq!(blank.body["field"], "reason");
    let why = "ethnicity is not needed to register an employee (data minimisation)";
    let refused = call(
        &gw,
        "admin",
        Method::POST,
        &step(id, "refuse"),
        Some(json!({"reason": why})),
    )
    .await;
    assert_eq!(refused.status, StatusCode::OK, "{}", refused.body);
    let seen = call(
        &gw,
        "hrss-admin",
        Method::GET,
        &format!("{REQUESTS}/{id}"),
        None,
    )
    .await;
    assert_eq!(seen.body["state"], "refused");
    assert_eq!(seen.body["reason"], why);
    assert_eq!(seen.body["decided_by"], PSB_ADMIN);
    let late = call(
        &gw,
        "hrss-admin",
        Method::POST,
        &step(id, "withdraw"),
        Some(json!({})),
    )
    .await;
    assert_problem(&late, StatusCode::CONFLICT, "request-not-pending");

    // Withdrawn by the requesting department only, while submitted.
    let filed = file(&gw, ask(json!({"name": "full"}))).await;
    let id = filed["id"].as_str().unwrap();
    let by_provider = call(
        &gw,
        "admin",
        Method::POST,
        &step(id, "withdraw"),
        Some(json!({})),
    )
    .await;
    assert_problem(&by_provider, StatusCode::FORBIDDEN, "not-permitted");
    let withdrawn = call(
        &gw,
        "hrss-admin",
        Method::POST,
        &step(id, "withdraw"),
        Some(json!({"reason": "filed twice"})),
    )
    .await;
    assert_eq!(withdrawn.status, StatusCode::OK, "{}", withdrawn.body);
    assert_eq!(withdrawn.body["state"], "withdrawn");
    let approve = call(
        &gw,
        "admin",
        Method::POST,
        &step(id, "approve"),
        Some(json!({})),
    )
    .await;
    assert_problem(&approve, StatusCode::CONFLICT, "request-not-pending");
    assert_eq!(approve.body["state"], "withdrawn");
    let record = gw.last_audit().await;
    assert_eq!(record["status"], 409, "{record}");
    assert_eq!(record["detail"]["access_request"]["action"], "approve");

    // A department files for its own systems only, and only dept-admins file.
    let mut for_civil = ask(json!({"name": "full"}));
    for_civil["consumer"] = json!("urn:tongban:sz-civil:counter-01");
    let a = call(&gw, "hrss-admin", Method::POST, REQUESTS, Some(for_civil)).await;
    assert_problem(&a, StatusCode::FORBIDDEN, "not-permitted");
    let a = call(
        &gw,
        "counter-a",
        Method::POST,
        REQUESTS,
        Some(ask(json!({"name": "full"}))),
    )
    .await;
    assert_problem(&a, StatusCode::FORBIDDEN, "role-required");
    // Bad requests name the field at fault.
    for (body, field) in [
        (ask(json!({"shoe_size": "full"})), "fields.shoe_size"),
        (ask(json!({})), "fields"),
        (
            {
                let mut b = ask(json!({"name": "full"}));
                b["matters"] = json!(["marketing"]);
                b
            },
            "matters",
        ),
        (
            {
                let mut b = ask(json!({"name": "full"}));
                b["renews"] = json!("hrss-legal-person");
                b
            },
            "renews",
        ),
        (
            {
                let mut b = ask(json!({"name": "full"}));
                b["valid_until"] = json!("2020-01-01T00:00:00Z");
                b
            },
            "valid_until",
        ),
    ] {
        let a = call(&gw, "hrss-admin", Method::POST, REQUESTS, Some(body)).await;
        assert_problem(&a, StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
        assert_eq!(a.body["field"], field, "{}", a.body);
    }

    // Each side lists what it is a party to: sz-psb sees the demo's pending request
    // from the housing fund centre too, sz-hrss only its own.
    let psb = call(
        &gw,
        "admin",
        Method::GET,
        &format!("{REQUESTS}?state=submitted"),
        None,
    )
    .await;
    let consumers: Vec<&str> = psb.body["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["consumer_department"].as_str().unwrap())
        .collect();
    assert_eq!(consumers, ["sz-hf"], "{}", psb.body);
    let hrss = call(&gw, "hrss-admin", Method::GET, REQUESTS, None).await;
    let states: Vec<&str> = hrss.body["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["withdrawn", "refused"]);
    let demo_id = psb.body["requests"][0]["id"].as_str().unwrap();
    let hidden = call(
        &gw,
        "hrss-admin",
        Method::GET,
        &format!("{REQUESTS}/{demo_id}"),
        None,
    )
    .await;
    assert_problem(&hidden, StatusCode::NOT_FOUND, "no-such-request");
    let bad = call(
        &gw,
        "admin",
        Method::GET,
        &format!("{REQUESTS}?state=pending"),
        None,
    )
    .await;
    assert_problem(&bad, StatusCode::BAD_REQUEST, "bad-request");
    assert!(bad.body["detail"].as_str().unwrap().starts_with("state:"));
    let wrong = call(&gw, "admin", Method::DELETE, REQUESTS, None).await;
    assert_problem(&wrong, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed");
}

/// `GET /metrics` on the ops listener.
async fn metrics(gw: &Gateway) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(gw.running.ops_addr)
        .await
        .unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    out
}

fn overdue_metric(text: &str, provider: &str) -> Option<String> {
    let prefix = format!("tongban_requests_overdue{{provider=\"{provider}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
}

#[tokio::test]
async fn a_request_past_its_review_deadline_is_flagged_overdue() {
    let gw = gateway_with(|_| {}).await;
    assert_eq!(
        overdue_metric(&metrics(&gw).await, "sz-psb"),
        None,
        "none overdue yet"
    );
    // Filed through the API, then back-dated in the store: submitted 30 days ago,
    // review deadline 16 days ago (no sleeping, no clock to set).
    let filed = file(&gw, ask(json!({"name": "full"}))).await;
    let id = filed["id"].as_str().unwrap();
    let store = &gw.running.app.policy.store;
    let r = store.request(id).await.unwrap().unwrap();
    let old = policy::AccessRequest {
        id: format!("{id}-old"),
        submitted_at: Utc::now() - Duration::days(30),
        review_by: Utc::now() - Duration::days(16),
        ..r.clone()
    };
    store.file_request(&old, HRSS_ADMIN).await.unwrap();

    let overdue = call(
        &gw,
        "admin",
        Method::GET,
        &format!("{REQUESTS}?overdue=true"),
        None,
    )
    .await;
    let items = overdue.body["requests"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", overdue.body);
    assert_eq!(items[0]["id"], old.id.as_str());
    assert_eq!(items[0]["overdue"], true);
    assert_eq!(items[0]["state"], "submitted", "overdue stays submitted");
    let on_time = call(
        &gw,
        "hrss-admin",
        Method::GET,
        &format!("{REQUESTS}?overdue=false"),
        None,
    )
    .await;
    assert_eq!(on_time.body["requests"][0]["id"], id);
    assert_eq!(
        overdue_metric(&metrics(&gw).await, "sz-psb").as_deref(),
        Some("1")
    );

    // Still reviewable; once decided it is no longer overdue.
    let a = call(
        &gw,
        "admin",
        Method::POST,
        &step(&old.id, "refuse"),
        Some(json!({"reason": "superseded"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["overdue"], false);
    assert_eq!(overdue_metric(&metrics(&gw).await, "sz-psb"), None);

    // A request whose asked validity ended unreviewed is expired, by the system.
    let lapsed = policy::AccessRequest {
        id: format!("{id}-lapsed"),
        terms: policy::RequestTerms {
            valid_until: Utc::now() - Duration::days(1),
            ..old.terms.clone()
        },
        ..old.clone()
    };
    store.file_request(&lapsed, HRSS_ADMIN).await.unwrap();
    let shown = call(
        &gw,
        "hrss-admin",
        Method::GET,
        &format!("{REQUESTS}/{}", lapsed.id),
        None,
    )
    .await;
    assert_eq!(shown.body["state"], "expired", "{}", shown.body);
    assert_eq!(shown.body["decided_by"], "system:validity-ended");
}

#[tokio::test]
async fn open_fields_are_approved_at_once_and_a_renewal_replaces_its_agreement() {
    let gw = gateway_with(|c| {
        c.requests.auto_approve_open.insert("legal_person".into());
    })
    .await;
    let now = Utc::now();
    let open = json!({
        "dataset": "legal_person", "consumer": COUNTER_A,
        "fields": {"name": "full", "status": "full"}, "matters": ["employer-registration"],
        "legal_basis": "public register", "contact": "HRSS data office",
        "valid_from": now.to_rfc3339(), "valid_until": (now + Duration::days(30)).to_rfc3339(),
    });
    let filed = file(&gw, open).await;
    assert_eq!(filed["state"], "approved", "{filed}");
    assert_eq!(filed["decided_by"], "system:auto-approve-open");
    let agreement = filed["agreement"].as_str().unwrap();
    let stored = gw
        .running
        .app
        .policy
        .store
        .get(agreement)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.agreement.approver, "system:auto-approve-open");
    // The representative's ID number is not open: that request waits for review.
    let mut id_number = json!({
        "dataset": "legal_person", "consumer": COUNTER_A,
        "fields": {"legal_representative_id": "masked"}, "matters": ["employer-registration"],
        "legal_basis": "x", "contact": "y",
        "valid_from": now.to_rfc3339(), "valid_until": (now + Duration::days(30)).to_rfc3339(),
    });
    assert_eq!(file(&gw, id_number.clone()).await["state"], "submitted");
    id_number["dataset"] = json!("population");
    id_number["fields"] = json!({"name": "full"});
    assert_eq!(
        file(&gw, id_number).await["state"],
        "submitted",
        "population is not in the list"
    );

    // Renewal: approval replaces hrss-population-2026 rather than adding another.
    let before = gw.running.app.policy.store.list().await.unwrap().len();
    let store = &gw.running.app.policy.store;
    let mut old = store
        .get("hrss-population-2026")
        .await
        .unwrap()
        .unwrap()
        .agreement;
    // The provider's own terms, which a renewal keeps.
    old.hours = Some("08:30-17:30".parse().unwrap());
    old.operator_rate = Some("60/min".parse().unwrap());
    store
        .edit(policy::Edit::Put(old.clone()), "test", |_| Ok(()))
        .await
        .unwrap();
    let mut renew =
        ask(json!({"name": "full", "birth_date": "full", "household_address": "masked"}));
    renew["matters"] = json!(["social-insurance-enrollment"]);
    renew["valid_until"] = json!("2032-12-31T23:59:59Z");
    renew["renews"] = json!("hrss-population-2026");
    let filed = file(&gw, renew).await;
    let id = filed["id"].as_str().unwrap();
    let approved = call(
        &gw,
        "admin",
        Method::POST,
        &step(id, "approve"),
        Some(json!({})),
    )
    .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    assert_eq!(approved.body["agreement"], "hrss-population-2026");
    let store = &gw.running.app.policy.store;
    assert_eq!(
        store.list().await.unwrap().len(),
        before,
        "replaced, not added"
    );
    let renewed = store
        .get("hrss-population-2026")
        .await
        .unwrap()
        .unwrap()
        .agreement;
    assert_eq!(
        renewed.valid_until.to_rfc3339(),
        "2032-12-31T23:59:59+00:00"
    );
    assert_eq!(renewed.request.as_deref(), Some(id));
    // The provider's own terms (hours, days, operator rate) are kept.
    assert_eq!(
        (renewed.hours, renewed.days, renewed.operator_rate),
        (old.hours, old.days, old.operator_rate)
    );
    let history = store
        .history(Some("hrss-population-2026"), 10)
        .await
        .unwrap();
    assert_eq!(history[0].action, policy::Action::Update);
    assert_eq!(history[0].actor, PSB_ADMIN);
}

/// Run `tongban request …` in-process against `gw`'s config: what it prints, or
/// the failure and exit code.
async fn request_cli(gw: &Gateway, args: &[&str]) -> Result<String, (u8, String)> {
    let config = gw.config_path();
    let mut argv = vec!["tongban", "request", "--config", config.to_str().unwrap()];
    argv.extend_from_slice(args);
    let cli = gateway::cli::Cli::try_parse_from(argv).unwrap();
    let gateway::cli::Command::Request(args) = cli.command else {
        panic!("not a request command")
    };
    gateway::cli::request::output(args)
        .await
        .map_err(|f| (f.code(), f.to_string()))
}

#[tokio::test]
async fn the_cli_drives_the_same_flow() {
    let gw = gateway_with(|_| {}).await;
    let until = (Utc::now() + Duration::days(90)).to_rfc3339();
    let filed = request_cli(
        &gw,
        &[
            "file",
            "--dataset",
            "population",
            "--consumer",
            COUNTER_A,
            "--field",
            "name",
            "--field",
            "birth_date",
            "--field",
            "household_address=masked",
            "--matter",
            MATTER,
            "--legal-basis",
            "Social Insurance Law art. 58",
            "--valid-until",
            &until,
            "--contact",
            "HRSS data office",
            "--actor",
            "ops",
            "--format",
            "json",
        ],
    )
    .await
    .unwrap();
    let filed: Value = serde_json::from_str(&filed).unwrap();
    let id = filed["id"].as_str().unwrap().to_owned();
    assert_eq!(filed["requester"], "cli:ops");

    let list = request_cli(
        &gw,
        &["list", "--state", "submitted", "--provider", "sz-psb"],
    )
    .await
    .unwrap();
    assert!(list.contains(&id) && list.contains("sz-hf"), "{list}");
    // Widening is bad usage (exit 2), naming the field.
    let (code, message) = request_cli(&gw, &["approve", &id, "--field", "household_address=full"])
        .await
        .unwrap_err();
    assert_eq!(code, 2, "{message}");
    assert!(message.contains("fields.household_address"), "{message}");

    let approved = request_cli(
        &gw,
        &[
            "approve",
            &id,
            "--field",
            "name",
            "--daily-quota",
            "5",
            "--actor",
            "ops",
        ],
    )
    .await
    .unwrap();
    assert!(
        approved.contains("approved") && approved.contains("policy version"),
        "{approved}"
    );
    let shown = request_cli(&gw, &["show", &id]).await.unwrap();
    assert!(shown.contains("state:        approved"), "{shown}");
    assert!(
        shown.contains("approve by cli:ops (submitted -> approved)"),
        "{shown}"
    );
    // On the audit chain as a CLI change.
    let record = gw.last_audit().await;
    assert_eq!(record["method"], "CLI");
    assert_eq!(record["path"], "tongban request approve");
    assert_eq!(record["detail"]["access_request"]["id"], id.as_str());

    // The running gateway follows within its sync interval: name only.
    eventually("the CLI's agreement reaches the gateway", || async {
        lookup(&gw, Some(&["name"])).await.status == StatusCode::OK
    })
    .await;
    let refused = lookup(&gw, Some(&["name", "birth_date"])).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);

    // Refuse and withdraw; a decided request cannot be decided again (exit 1).
    let list = request_cli(&gw, &["list", "--format", "json", "--consumer", "sz-hf"])
        .await
        .unwrap();
    let demo: Value = serde_json::from_str(&list).unwrap();
    let demo_id = demo["requests"][0]["id"].as_str().unwrap().to_owned();
    let out = request_cli(
        &gw,
        &["refuse", &demo_id, "--reason", "no legal basis shown"],
    )
    .await
    .unwrap();
    assert!(out.contains("refused"), "{out}");
    let (code, message) = request_cli(&gw, &["withdraw", &demo_id]).await.unwrap_err();
    assert_eq!(code, 1, "{message}");
    assert!(message.contains("refused"), "{message}");
    let (code, _) = request_cli(&gw, &["show", "no-such-id"]).await.unwrap_err();
    assert_eq!(code, 1);
}

#[tokio::test]
async fn requests_live_in_postgresql_too() {
    let Some(db) = PgDatabase::create("requests").await else {
        return;
    };
    let store = policy::AgreementStore::connect(&db.url(), 2).await.unwrap();
    let now = Utc::now();
    let terms: policy::RequestTerms = serde_json::from_value(ask(json!({"name": "full"}))).unwrap();
    let r = policy::AccessRequest {
        id: "0193a0b0-0000-7000-8000-00000000pg01".into(),
        state: policy::RequestState::Submitted,
        provider: "sz-psb".into(),
        consumer_department: "sz-hrss".into(),
        requester: HRSS_ADMIN.into(),
        terms,
        submitted_at: now - Duration::days(20),
        review_by: now - Duration::days(5),
        decided_at: None,
        decided_by: None,
        reason: None,
        agreement: None,
    };
    store.file_request(&r, HRSS_ADMIN).await.unwrap();
    let mine = policy::RequestFilter {
        party: Some("sz-hrss".into()),
        state: Some(policy::RequestState::Submitted),
        ..policy::RequestFilter::default()
    };
    assert_eq!(
        store.requests(&mine).await.unwrap(),
        std::slice::from_ref(&r)
    );
    assert_eq!(
        store.overdue_requests(now).await.unwrap(),
        [("sz-psb".to_owned(), 1)]
    );
    let grant = r.grant(&policy::Narrowing::default(), PSB_ADMIN).unwrap();
    let (after, applied) = store
        .approve_request(
            &r.id,
            PSB_ADMIN,
            policy::Edit::Create(grant.clone()),
            |_| Ok(()),
        )
        .await
        .unwrap();
    assert_eq!(after.state, policy::RequestState::Approved);
    assert_eq!(applied.unwrap().version, store.version().await.unwrap());
    assert_eq!(
        store.get(&grant.id).await.unwrap().unwrap().agreement,
        grant
    );
    let again = store
        .decide_request(
            &r.id,
            policy::RequestState::Refused,
            "refuse",
            PSB_ADMIN,
            |_| {},
        )
        .await;
    assert!(matches!(
        again,
        Err(policy::PolicyError::Request(
            policy::RequestRefusal::NotPending { .. }
        ))
    ));
    let h = store.request_history(&r.id).await.unwrap();
    assert_eq!(
        h.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["file", "approve"]
    );
    assert!(store.overdue_requests(now).await.unwrap().is_empty());
    assert!(store.lapsed_requests(now).await.unwrap().is_empty());
}
