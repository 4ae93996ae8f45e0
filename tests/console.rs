//! The web console end to end: a real gateway on the demo PKI, requests over real
//! mutual TLS, and Debian's Chromium driven by Playwright (`console_browser.py`)
//! presenting the demo's browser bundles. Under `CI=1` a missing Chromium or
//! Playwright fails the browser test instead of skipping it.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use http::{Method, StatusCode};
use serde_json::{json, Value};
use tongban_tests::{sample, Answer, Client, Gateway};

/// Every console page, GET.
const PAGES: &[&str] = &[
    "/console/",
    "/console/records",
    "/console/records/1",
    "/console/subjects?subject=x",
    "/console/anomalies",
    "/console/charts",
    "/console/health",
    "/console/datasets",
    "/console/agreements",
    "/console/agreements/new",
    "/console/agreements/hrss-population-2026",
    "/console/agreements/hrss-population-2026/edit",
    "/console/roles",
    "/console/explain",
    "/console/requests",
    "/console/requests/no-such-request",
    "/console/usage",
];

fn header<'a>(a: &'a Answer, name: &str) -> &'a str {
    a.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The headers every console page carries.
fn assert_secure(a: &Answer, what: &str) {
    let csp = header(a, "content-security-policy");
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"),
        "{what}: {csp}"
    );
    assert_eq!(header(a, "x-frame-options"), "DENY", "{what}");
    assert_eq!(header(a, "referrer-policy"), "same-origin", "{what}");
    assert_eq!(header(a, "cache-control"), "no-store", "{what}");
    assert!(header(a, "content-type").starts_with("text/html"), "{what}");
    // Answered only once recorded: the receipt comes with the page.
    assert!(!header(a, "audit-receipt").is_empty(), "{what}: no receipt");
}

/// The last audit record, parsed.
async fn last(gw: &Gateway) -> Value {
    gw.last_audit().await
}

#[tokio::test]
async fn a_counter_gets_403_on_every_page_and_each_refusal_is_audited() {
    let gw = Gateway::start().await;
    let counter = gw.client("counter-a");
    for path in PAGES {
        let a = counter.get(path).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}");
        assert_secure(&a, path);
        assert!(a.text.contains("需要相应角色"), "{path}: Chinese title");
        let rec = last(&gw).await;
        assert_eq!(rec["path"], path.split('?').next().unwrap(), "{path}");
        assert_eq!(rec["decision"], "deny", "{path}");
        assert_eq!(rec["status"], 403, "{path}");
        assert_eq!(rec["consumer"], "urn:tongban:sz-hrss:counter-01");
    }
    // POSTs too, before anything of the form is read.
    let a = counter
        .request(
            Method::POST,
            "/console/agreements/new",
            &[("content-type", "application/x-www-form-urlencoded")],
            "id=x".into(),
        )
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // The stylesheet holds no data: any authenticated caller gets it.
    let css = counter.get("/console/assets/console.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(header(&css, "content-type").starts_with("text/css"));
}

#[tokio::test]
async fn a_page_is_the_api_call_it_stands_for_with_its_record_bound_to_the_html() {
    let gw = Gateway::start().await;
    let auditor = gw.client("auditor");
    let a = auditor
        .request(
            Method::GET,
            "/console/records?consumer=urn%3Atongban%3Asz-hrss%3Acounter-01&dataset=&lang=en",
            &[],
            String::new(),
        )
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_secure(&a, "records");
    assert!(a.text.contains("Audit search"), "?lang=en gives English");
    // The session and language cookies: host-only, secure, not for scripts, same site.
    let cookies: Vec<&str> = a
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for c in &cookies {
        assert!(c.starts_with("__Host-tongban-"), "{c}");
        for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(c.contains(attr), "{c}: {attr}");
        }
    }
    // Recorded as the auditor API's search: its filters (empty ones dropped), and the
    // digest of the HTML sent.
    let rec = last(&gw).await;
    assert_eq!(rec["path"], "/console/records");
    assert_eq!(
        rec["detail"]["audit_search"],
        json!({"consumer": "urn:tongban:sz-hrss:counter-01", "limit": "50"})
    );
    assert_eq!(rec["detail"]["console"], "/console/records");
    let sha = audit::answer_sha256(a.text.as_bytes());
    assert_eq!(rec["answer_sha256"], sha, "the record binds the page");

    // A page of an API the viewer's role may not call is that API's refusal.
    let a = auditor.get("/console/agreements").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let rec = last(&gw).await;
    assert_eq!(rec["reason"], "this endpoint requires the dept-admin role");
}

/// `name=value` pairs as a form body.
fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// The session cookie and form token of a fresh console page for `client`.
async fn session(client: &Client) -> (String, String) {
    let a = client.get("/console/agreements/new").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let cookie = header(&a, "set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let at = a.text.find("name=\"csrf\" value=\"").unwrap() + 19;
    let token = a.text[at..at + a.text[at..].find('"').unwrap()].to_owned();
    (cookie, token)
}

#[tokio::test]
async fn a_form_needs_this_sessions_token_and_this_origin() {
    let gw = Gateway::start().await;
    let admin = gw.client("admin");
    let (cookie, token) = session(&admin).await;
    let body = |token: &str| {
        form(&[
            ("csrf", token),
            ("id", "civil-population-allowance"),
            ("consumer", "urn:tongban:sz-civil:counter-01"),
            ("dataset", "population"),
            ("matters", "household-transfer"),
            ("field.name", "full"),
            ("valid_from", "2026-01-01"),
            ("valid_until", "2099-12-31"),
        ])
    };
    let post = |origin: Option<&'static str>, cookie: Option<String>, body: String| {
        let admin = admin.clone();
        async move {
            let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
            if let Some(o) = origin {
                headers.push(("origin", o));
            }
            let cookie = cookie.unwrap_or_default();
            if !cookie.is_empty() {
                headers.push(("cookie", cookie.as_str()));
            }
            admin
                .request(Method::POST, "/console/agreements/new", &headers, body)
                .await
                .unwrap()
        }
    };
    let here = Some("https://localhost");
    for (what, origin, cookie, token) in [
        ("no Origin", None, Some(cookie.clone()), token.clone()),
        (
            "another Origin",
            Some("https://evil.example"),
            Some(cookie.clone()),
            token.clone(),
        ),
        ("no session", here, None, token.clone()),
        ("no token", here, Some(cookie.clone()), String::new()),
        (
            "a token of another session",
            here,
            Some("__Host-tongban-session=other".into()),
            token.clone(),
        ),
    ] {
        let a = post(origin, cookie, body(&token)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{what}: {}", a.text);
        assert!(a.text.contains("拒绝跨站请求"), "{what}");
        let rec = last(&gw).await;
        assert_eq!(rec["decision"], "deny", "{what}");
        assert!(
            rec["reason"].as_str().unwrap().contains("form"),
            "{what}: {}",
            rec["reason"]
        );
    }
    // Nothing was created by the refused forms.
    let a = admin
        .get("/admin/v1/agreements/civil-population-allowance")
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    // The token of this session, from this origin: done, as the API would, then 303.
    let a = post(here, Some(cookie.clone()), body(&token)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text);
    assert_eq!(
        header(&a, "location"),
        "/console/agreements/civil-population-allowance"
    );
    let rec = last(&gw).await;
    assert_eq!(rec["decision"], "allow");
    assert_eq!(rec["agreement"], "civil-population-allowance");
    assert_eq!(rec["detail"]["policy_change"]["action"], "create", "{rec}");
    let a = admin
        .get("/admin/v1/agreements/civil-population-allowance")
        .await;
    assert_eq!(a.status, StatusCode::OK);

    // The API's validation error, named by its field, in the API and in the form.
    let bad = form(&[
        ("csrf", &token),
        ("id", "no-matters"),
        ("consumer", "urn:tongban:sz-civil:counter-01"),
        ("dataset", "population"),
        ("field.name", "full"),
        ("valid_from", "2026-01-01"),
        ("valid_until", "2099-12-31"),
    ]);
    let a = post(here, Some(cookie.clone()), bad).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.text.contains("data-field=\"matters\""),
        "the error beside the matters: {}",
        a.text
    );
    let api = admin
        .request(
            Method::POST,
            "/admin/v1/agreements",
            &[("content-type", "application/json")],
            json!({
                "id": "no-matters", "provider": "sz-psb", "dataset": "population",
                "consumer": "urn:tongban:sz-civil:counter-01", "matters": [],
                "fields": {"name": "full"},
                "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2099-12-31T00:00:00Z",
            })
            .to_string(),
        )
        .await
        .unwrap();
    assert_eq!(api.status, StatusCode::BAD_REQUEST);
    assert_eq!(api.body["field"], "matters");
    assert!(
        a.text.contains(api.body["detail"].as_str().unwrap()),
        "the same message"
    );
}

#[tokio::test]
async fn the_history_of_an_agreement_is_its_providers_only() {
    let gw = Gateway::start().await;
    let admin = gw.client("admin");
    let a = admin
        .get("/admin/v1/agreements/hrss-population-2026/history")
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let h = &a.body["history"][0];
    assert_eq!(h["action"], "create");
    assert!(h["before"].is_null() && h["after"]["id"] == "hrss-population-2026");
    // sz-amr's agreement is not there for sz-psb's admin, as a missing one is not.
    for id in ["hrss-legal-person-2026", "no-such"] {
        let a = admin
            .get(&format!("/admin/v1/agreements/{id}/history"))
            .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(a.body["type"], "/problems/no-such-agreement", "{id}");
    }
}

#[tokio::test]
async fn the_officers_reports_are_auditor_api_calls() {
    let gw = Gateway::start().await;
    let samples = gw.samples();
    let ok = sample(&samples, "population", 200);
    let subject = ok["body"]["subject"].as_str().unwrap().to_owned();
    let counter = gw.client(ok["cert"].as_str().unwrap());
    let looked = counter
        .lookup(ok["operator"].as_str(), &ok["body"])
        .await
        .unwrap();
    assert_eq!(looked.status, StatusCode::OK);
    let auditor = gw.client("auditor");
    let report = auditor.get(&format!("/audit/v1/subjects/{subject}")).await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.text);
    assert_eq!(report.body["subject"], subject.as_str());
    assert_eq!(report.body["disclosed"], 1);
    let health = auditor.get("/audit/v1/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert!(health.body["checkpoint"]["size"].as_u64().unwrap() >= 1);
    assert!(health.body["last_verify"].is_null(), "{}", health.text);
    // A verify run is kept: the API and the health page show it.
    let config = gw.config_path().display().to_string();
    assert_eq!(
        gw.tongban(&["audit", "verify", "--config", &config]).await,
        0
    );
    let health = auditor.get("/audit/v1/health").await;
    let run = &health.body["last_verify"];
    assert_eq!(run["ok"], true, "{}", health.text);
    assert!(run["records"].as_i64().unwrap() >= 1, "{}", health.text);
    let summary = run["summary"].as_str().unwrap();
    assert!(summary.starts_with("OK: "), "{summary}");
    let page = auditor.get("/console/health").await;
    assert!(
        page.text.contains(summary) && page.text.contains("完好"),
        "{}",
        page.text
    );
    let stats = auditor.get("/audit/v1/stats").await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.text);
    assert!(stats.body["lookups"].as_u64().unwrap() >= 1);
    let anomalies = auditor.get("/audit/v1/anomalies?from=2020-01-01").await;
    assert_eq!(anomalies.status, StatusCode::OK, "{}", anomalies.text);
    // Refused to others, and recorded so.
    let a = counter.get(&format!("/audit/v1/subjects/{subject}")).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let rec = last(&gw).await;
    assert_eq!(
        rec["subject"],
        subject.as_str(),
        "the probe names its subject"
    );
    assert_eq!(rec["decision"], "deny");
    // The console's report page shows that lookup, its record verified.
    let page = auditor
        .get(&format!("/console/subjects?subject={subject}"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains(ok["body"]["case_id"].as_str().unwrap()));
    let seq = report.body["accesses"][0]["seq"].as_i64().unwrap();
    let record = auditor.get(&format!("/console/records/{seq}")).await;
    assert!(record.text.contains("已核验"), "{}", record.text);
}

/// The demo's pending request: the housing fund centre's, to sz-psb (the admin's
/// department).
async fn pending_request(admin: &Client) -> String {
    let a = admin.get("/admin/v1/requests?state=submitted").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.body["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["terms"]["consumer"] == gateway::demo::DEMO_REQUEST_CONSUMER)
        .expect("the demo's pending request")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A request of sz-hf to sz-psb for `consumer` whose review deadline passed
/// yesterday, written to the store as filed ten days ago.
async fn overdue_request(gw: &Gateway, consumer: &str) -> String {
    let now = chrono::Utc::now();
    let r = policy::AccessRequest {
        id: "overdue-0001".into(),
        state: policy::RequestState::Submitted,
        provider: "sz-psb".into(),
        consumer_department: "sz-hf".into(),
        requester: "urn:tongban:sz-hf:admin-01".into(),
        terms: policy::RequestTerms {
            dataset: "population".into(),
            consumer: consumer.into(),
            fields: [("name".to_owned(), policy::FieldRule::Full)].into(),
            matters: vec!["housing-fund-withdrawal".into()],
            legal_basis: "a test of the overdue mark".into(),
            valid_from: now,
            valid_until: now + chrono::Duration::days(30),
            daily_quota: None,
            contact: "test".into(),
            renews: None,
        },
        submitted_at: now - chrono::Duration::days(10),
        review_by: now - chrono::Duration::days(1),
        decided_at: None,
        decided_by: None,
        reason: None,
        agreement: None,
    };
    gw.running
        .app
        .policy
        .store
        .file_request(&r, "test")
        .await
        .unwrap();
    r.id
}

#[tokio::test]
async fn an_admin_reviews_a_request_through_the_console_as_through_the_api() {
    let gw = Gateway::start().await;
    let admin = gw.client("admin");
    let id = pending_request(&admin).await;
    let overdue = overdue_request(&gw, gateway::demo::DEMO_REQUEST_CONSUMER).await;

    // The list: the request to review, the overdue one marked; recorded as the
    // API's list with its filter.
    let list = admin.get("/console/requests?state=submitted").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert_secure(&list, "requests");
    assert!(list.text.contains(&format!("/console/requests/{id}")));
    assert!(
        list.text.contains(&format!(
            "<tr class=\"overdue\"><td><a href=\"/console/requests/{overdue}\">"
        )),
        "the overdue request stands out: {}",
        list.text
    );
    assert!(list.text.contains("超期"));
    let rec = last(&gw).await;
    assert_eq!(rec["path"], "/console/requests");
    assert_eq!(rec["detail"]["request_list"], json!({"state": "submitted"}));

    let page = admin.get(&format!("/console/requests/{id}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    for t in [
        "id=\"approve-form\"",
        "id=\"approve\"",
        "name=\"reason\"",
        "housing-fund-withdrawal",
    ] {
        assert!(page.text.contains(t), "{t}");
    }
    assert_eq!(
        last(&gw).await["detail"]["access_request"]["action"],
        "show"
    );

    let (cookie, token) = session(&admin).await;
    let post = |path: String, origin: &'static str, body: String| {
        let (admin, cookie) = (admin.clone(), cookie.clone());
        async move {
            let headers = [
                ("content-type", "application/x-www-form-urlencoded"),
                ("origin", origin),
                ("cookie", cookie.as_str()),
            ];
            admin
                .request(Method::POST, &path, &headers, body)
                .await
                .unwrap()
        }
    };
    let here = "https://localhost";
    let approve = format!("/console/requests/{id}/approve");
    let narrowed = form(&[
        ("csrf", &token),
        ("field.name", "full"),
        ("field.birth_date", ""),
        ("field.household_address", "masked"),
        ("matters", "housing-fund-withdrawal"),
        ("daily_quota", "100"),
        ("agreement_id", "hf-population-console"),
    ]);

    // From another origin, with this session's token: refused, nothing approved.
    let a = post(approve.clone(), "https://evil.example", narrowed.clone()).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
    assert!(a.text.contains("拒绝跨站请求"));
    assert_eq!(last(&gw).await["decision"], "deny");

    // Refusing without a reason: the API's error, beside the reason input.
    let refuse = format!("/console/requests/{id}/refuse");
    let a = post(refuse, here, form(&[("csrf", &token), ("reason", " ")])).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert!(
        a.text.contains("<p class=\"error\" data-field=\"reason\">"),
        "{}",
        a.text
    );
    let rec = last(&gw).await;
    assert_eq!(rec["detail"]["access_request"]["action"], "refuse");
    let api = admin
        .request(
            Method::POST,
            &format!("/admin/v1/requests/{id}/refuse"),
            &[("content-type", "application/json")],
            json!({"reason": ""}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(api.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(api.body["field"], "reason");
    let message = api.body["detail"].as_str().unwrap().replace('"', "&#34;");
    assert!(a.text.contains(&message), "the API's message: {message}");

    // Approved narrowed, with this session's token from this origin: 303 to the
    // request, recorded as the API's approval with its agreement change.
    let a = post(approve, here, narrowed).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text);
    assert_eq!(header(&a, "location"), format!("/console/requests/{id}"));
    let rec = last(&gw).await;
    assert_eq!(rec["decision"], "allow");
    assert_eq!(rec["path"], format!("/console/requests/{id}/approve"));
    assert_eq!(rec["detail"]["access_request"]["action"], "approve");
    assert_eq!(rec["detail"]["policy_change"]["action"], "create", "{rec}");
    assert_eq!(rec["agreement"], "hf-population-console");
    let agreement = admin
        .get("/admin/v1/agreements/hf-population-console")
        .await;
    assert_eq!(agreement.status, StatusCode::OK, "{}", agreement.text);
    let g = &agreement.body["agreement"];
    assert_eq!(
        g["fields"],
        json!({"name": "full", "household_address": "masked"})
    );
    assert_eq!(g["daily_quota"], 100);
    assert_eq!(g["request"], id.as_str());
    assert_eq!(g["approver"], "urn:tongban:sz-psb:admin-01");
    let shown = admin.get(&format!("/console/requests/{id}")).await;
    assert!(shown.text.contains("已批准") && !shown.text.contains("approve-form"));
}

#[tokio::test]
async fn the_usage_page_shows_the_apis_numbers() {
    let gw = Gateway::start().await;
    for s in &gw.samples() {
        let a = gw
            .client(s["cert"].as_str().unwrap())
            .request(
                Method::POST,
                s["path"].as_str().unwrap(),
                &[
                    ("content-type", "application/json"),
                    (
                        "x-operator-id",
                        s["operator"].as_str().unwrap_or("clerk-001"),
                    ),
                ],
                s["body"].to_string(),
            )
            .await
            .unwrap();
        assert_eq!(u64::from(a.status.as_u16()), s["expect"], "{s}");
    }
    let admin = gw.client("admin");
    let api = admin.get("/admin/v1/usage").await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.text);
    let page = admin.get("/console/usage").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_secure(&page, "usage");
    assert!(page.text.contains("<svg") && page.text.contains("每日查询量（按调用方）"));
    let rec = last(&gw).await;
    assert_eq!(rec["path"], "/console/usage");
    assert_eq!(rec["detail"]["usage_query"], json!({}));
    assert_eq!(rec["decision"], "allow");

    let total = &api.body["total"];
    assert!(total["lookups"].as_u64().unwrap() > 0, "{}", api.body);
    for k in ["lookups", "allowed", "refused", "failed"] {
        let cell = format!("<td data-total=\"{k}\">{}</td>", total[k]);
        assert!(page.text.contains(&cell), "{cell}");
    }
    for dim in ["consumers", "matters"] {
        let series = api.body[dim].as_array().unwrap();
        assert!(!series.is_empty(), "{dim}");
        for s in series {
            let key = s["key"].as_str().unwrap();
            let row = format!(
                "<tr data-key=\"{key}\"><td>{key}</td><td data-n=\"lookups\">{}</td><td data-n=\"allowed\">{}</td><td data-n=\"refused\">{}</td>",
                s["total"]["lookups"], s["total"]["allowed"], s["total"]["refused"]
            );
            assert!(page.text.contains(&row), "{dim}: {row}");
        }
    }
    for (reason, n) in total["refusals"].as_object().unwrap() {
        let row =
            format!("<tr data-key=\"{reason}\"><td>{reason}</td><td data-n=\"refused\">{n}</td>");
        assert!(page.text.contains(&row), "{row}");
    }
    for p in api.body["providers"].as_array().unwrap() {
        let key = p["key"].as_str().unwrap();
        let row = format!(
            "<tr data-key=\"{key}\"><td>{key}</td><td data-n=\"source_calls\">{}</td>",
            p["total"]["source_calls"]
        );
        assert!(page.text.contains(&row), "{row}");
    }
    // A counter is refused, as by the API.
    let a = gw.client("counter-a").get("/console/usage").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
}

fn browser_ready() -> bool {
    let chromium = Path::new("/usr/bin/chromium").exists();
    let playwright = std::process::Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .output()
        .is_ok_and(|o| o.status.success());
    // CI installs both (.ci/run); a developer without them is told, not failed.
    assert!(
        (chromium && playwright) || std::env::var_os("CI").is_none(),
        "Debian's chromium and Playwright for Python are required in CI"
    );
    if !(chromium && playwright) {
        eprintln!("skipped: /usr/bin/chromium or python3 playwright missing");
    }
    chromium && playwright
}

/// Where the browser test's screenshots go: target/console-screenshots/.
fn shots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
}

/// One phase of `console_browser.py` against `gw`.
fn browser(gw: &Gateway, phase: &str, args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("console_browser.py");
    let pki = gw.path().join("pki");
    let password = std::fs::read_to_string(pki.join("browser.password")).unwrap();
    let base = format!("https://127.0.0.1:{}", gw.running.addr.port());
    let out = std::process::Command::new("python3")
        .arg(script)
        .args([phase, &base, pki.to_str().unwrap(), password.trim()])
        .arg(shots())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{phase}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn in_chromium_an_admins_agreement_lets_a_counter_look_up_and_the_officer_finds_it() {
    if !browser_ready() {
        return;
    }
    let gw = Gateway::start().await;
    let counter = gw.client("counter-b");
    let (agreement, consumer, matter) = (
        "civil-population-allowance",
        "urn:tongban:sz-civil:counter-01",
        "household-transfer",
    );
    let samples = gw.samples();
    let subject = sample(&samples, "population", 200)["body"]["subject"]
        .as_str()
        .unwrap()
        .to_owned();
    let case_id = "HT-2026-004242";
    let lookup = json!({
        "dataset": "population", "subject": subject, "matter": matter,
        "case_id": case_id, "fields": ["name", "birth_date"],
    });
    // Before: no agreement covers the matter.
    let a = counter.lookup(Some("clerk-207"), &lookup).await.unwrap();
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);

    // A request past its review deadline, for the list to mark.
    overdue_request(&gw, "urn:tongban:sz-hf:archive-01").await;
    let g = &gw;
    tokio::task::block_in_place(|| {
        browser(g, "forbidden", &[]);
        browser(g, "admin", &[agreement, consumer, matter]);
    });
    // The counter's lookup over mTLS, allowed by the agreement made in the browser.
    let a = counter.lookup(Some("clerk-207"), &lookup).await.unwrap();
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["agreement"], agreement);
    // Some traffic for the officer's pages: every sample, allowed and refused.
    for s in &samples {
        let client = gw.client(s["cert"].as_str().unwrap());
        let path = s["path"].as_str().unwrap();
        let a = client
            .request(
                Method::POST,
                path,
                &[
                    ("content-type", "application/json"),
                    (
                        "x-operator-id",
                        s["operator"].as_str().unwrap_or("clerk-001"),
                    ),
                ],
                s["body"].to_string(),
            )
            .await
            .unwrap();
        assert_eq!(
            a.status.as_u16(),
            s["expect"].as_u64().unwrap() as u16,
            "{s}"
        );
    }
    tokio::task::block_in_place(|| {
        browser(g, "auditor", &[&subject, case_id, consumer]);
        browser(g, "usage", &[]);
        browser(g, "english", &[]);
    });
}
