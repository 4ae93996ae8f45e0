//! The served API against its OpenAPI document (`docs/openapi.json`): the document
//! served is the file; every route the router serves is documented and every
//! documented operation is served; and real answers — the demo's samples, admin and
//! auditor calls, refusals and problems — validate against the documented schemas.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use serde_json::{json, Value};
use tongban_tests::{Answer, Client, Gateway};

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

fn document_file() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let text = std::fs::read_to_string(path).expect("docs/openapi.json");
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

/// Every documented operation: (path template, lower-case method).
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                out.push((path.clone(), m.to_owned()));
            }
        }
    }
    out
}

/// Follows a `$ref` to `#/components/...`.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {r}")),
        None => v,
    }
}

/// A validator for `schema`, with the document's components reachable by `$ref`.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    });
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("schema does not compile: {e}\n{schema:#}"))
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Checks an answer against what the document says `method template` answers with
/// its status: the status is documented, the content type is, the body validates, and
/// documented headers are present.
fn check_answer(doc: &Value, template: &str, method: &str, a: &Answer) {
    let op = &doc["paths"][template][method];
    assert!(op.is_object(), "{method} {template} is not documented");
    let status = a.status.as_u16().to_string();
    let response = op["responses"]
        .get(&status)
        .map(|r| resolve(doc, r))
        .unwrap_or_else(|| {
            panic!(
                "{method} {template} answered {status}, which is not documented: {:#}",
                a.body
            )
        });
    let content_type = a
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let schema = response["content"]
        .get(&content_type)
        .map(|c| &c["schema"])
        .unwrap_or_else(|| {
            panic!("{method} {template} {status}: content type {content_type:?} not documented")
        });
    // A text answer (the signed checkpoint note) is checked as the string it is.
    let body = if content_type.ends_with("json") {
        a.body.clone()
    } else {
        Value::String(a.text.clone())
    };
    let errs = errors(&validator(doc, schema), &body);
    assert!(
        errs.is_empty(),
        "{method} {template} {status} does not match the document:\n  {}\nbody: {:#}",
        errs.join("\n  "),
        a.body
    );
    if let Some(headers) = response["headers"].as_object() {
        for name in headers.keys() {
            assert!(
                a.headers.contains_key(name.as_str()),
                "{method} {template} {status}: header {name} missing"
            );
        }
    }
}

/// Validates a request body against the documented request schema.
fn check_request(doc: &Value, template: &str, method: &str, body: &Value) {
    let schema =
        &doc["paths"][template][method]["requestBody"]["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {template}: no request body documented"
    );
    let errs = errors(&validator(doc, schema), body);
    assert!(
        errs.is_empty(),
        "{method} {template} request {body} does not match the document: {errs:?}"
    );
}

/// Which demo certificate a tag's callers hold.
fn cert_for(doc: &Value, template: &str, method: &str) -> &'static str {
    let tag = doc["paths"][template][method]["tags"][0].as_str();
    match tag {
        Some("admin") => "admin",
        Some("auditor") => "auditor",
        Some("citizen") => "portal",
        _ => "counter-a",
    }
}

async fn send(client: &Client, method: &str, path: &str, body: Option<&Value>) -> Answer {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    client
        .request(
            method,
            path,
            &[
                ("x-operator-id", "clerk-001"),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await
        .expect("request")
}

fn problem_type(a: &Answer) -> &str {
    a.body["type"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn the_served_document_is_the_file() {
    let gw = Gateway::start().await;
    let file = document_file();
    let a = send(&gw.client("counter-b"), "get", "/openapi.json", None).await;
    assert_eq!(a.status, 200, "{:#}", a.body);
    // The document, with the receipt of this request's audit record.
    let mut served = a.body.clone();
    assert!(served["audit"]["checkpoint"].is_string(), "{served:#}");
    served.as_object_mut().unwrap().remove("audit");
    assert_eq!(
        served, file,
        "GET /openapi.json differs from docs/openapi.json"
    );
    check_answer(&file, "/openapi.json", "get", &a);
    // The document's own schemas all compile as JSON Schema 2020-12.
    for (name, schema) in file["components"]["schemas"].as_object().unwrap() {
        let _ = validator(&file, schema);
        assert!(!name.is_empty());
    }
    assert_eq!(
        file["components"]["securitySchemes"]["mTLS"]["type"],
        "mutualTLS"
    );
    assert_eq!(file["security"], json!([{"mTLS": []}]));
    // Served like every request: audited.
    assert_eq!(gw.last_audit().await["path"], "/openapi.json");
    gw.running.shutdown().await;
}

#[tokio::test]
async fn routes_and_document_agree() {
    let gw = Gateway::start().await;
    let doc = document_file();
    let ops = operations(&doc);
    let endpoints = gateway::http::stack::router::<Full<Bytes>>(&gw.running.app).endpoints();

    // Every route the router serves is documented, for every method it serves.
    let documented = |path: &str, prefix: bool, m: &str| {
        ops.iter()
            .any(|(p, om)| om == m && (p == path || (prefix && p.starts_with(&format!("{path}/")))))
    };
    // The console's HTML pages are for browsers, not part of the API document
    // (docs/console.md); tests/console.rs checks them.
    for e in endpoints
        .iter()
        .filter(|e| e.path != gateway::console::CONSOLE)
    {
        for m in &e.methods {
            let m = m.as_str().to_lowercase();
            assert!(
                documented(e.path, e.prefix, &m),
                "the router serves {} {}{} but docs/openapi.json does not document it",
                m.to_uppercase(),
                e.path,
                if e.prefix { "[/…]" } else { "" }
            );
        }
    }

    // Every documented operation is served: a real request to it answers something
    // other than "no such endpoint" or "method not allowed". Path parameters get
    // values that exist (seq 1) or are harmless (an agreement id no one has).
    let concrete = |template: &str| {
        template
            .replace("{id}", "no-such-agreement-probe")
            .replace("{seq}", "1")
            .replace("{subject}", "110101199003074573")
    };
    for (template, m) in &ops {
        let client = gw.client(cert_for(&doc, template, m));
        let body = matches!(m.as_str(), "post" | "put").then(|| json!({}));
        let a = send(&client, m, &concrete(template), body.as_ref()).await;
        assert!(
            a.status != 405 && problem_type(&a) != "/problems/no-such-endpoint",
            "{} {template} is documented but not served: {} {:#}",
            m.to_uppercase(),
            a.status,
            a.body
        );
        assert!(
            endpoints.iter().any(
                |e| e.methods.iter().any(|x| x.as_str().eq_ignore_ascii_case(m))
                    && (e.path == template
                        || (e.prefix && template.starts_with(&format!("{}/", e.path))))
            ),
            "{} {template} answered but no router entry claims it",
            m.to_uppercase()
        );
        check_answer(&doc, template, m, &a);
    }

    // And nothing more: methods a documented path does not list are refused with 405.
    let paths: BTreeSet<&str> = ops.iter().map(|(p, _)| p.as_str()).collect();
    for template in paths {
        for m in METHODS {
            if doc["paths"][template].get(m).is_some() {
                continue;
            }
            let client = gw.client(cert_for(&doc, template, "get"));
            let a = send(&client, m, &concrete(template), Some(&json!({}))).await;
            assert_eq!(
                a.status,
                405,
                "{} {template} is not documented but answered {} {:#}",
                m.to_uppercase(),
                a.status,
                a.body
            );
            assert_eq!(problem_type(&a), "/problems/method-not-allowed");
            // RFC 9110 §15.5.6: the 405 lists what the path does serve.
            let mut allow: Vec<String> = a.headers[http::header::ALLOW]
                .to_str()
                .unwrap()
                .split(", ")
                .map(str::to_lowercase)
                .collect();
            allow.sort();
            let mut served: Vec<String> = METHODS
                .iter()
                .filter(|m| doc["paths"][template].get(**m).is_some())
                .map(|m| m.to_string())
                .collect();
            served.sort();
            assert_eq!(allow, served, "Allow of {} {template}", m.to_uppercase());
        }
    }

    // The check can tell: an undocumented path is no endpoint.
    let a = send(&gw.client("counter-a"), "get", "/v1/nothing-here", None).await;
    assert_eq!(a.status, 404);
    assert_eq!(problem_type(&a), "/problems/no-such-endpoint");
    gw.running.shutdown().await;
}

#[tokio::test]
async fn answers_match_the_documented_schemas() {
    let gw = Gateway::start().await;
    let doc = document_file();

    // Every demo sample: allowed lookups of each dataset, refusals, bad identifiers,
    // an unknown subject and the bundles — request and answer both as documented.
    let samples = gw.samples();
    let mut seen = BTreeSet::new();
    for s in &samples {
        let path = s["path"].as_str().unwrap();
        check_request(&doc, path, "post", &s["body"]);
        let client = gw.client(s["cert"].as_str().unwrap());
        let a = send(&client, "post", path, Some(&s["body"])).await;
        assert_eq!(
            u64::from(a.status.as_u16()),
            s["expect"].as_u64().unwrap(),
            "sample {s}: {:#}",
            a.body
        );
        check_answer(&doc, path, "post", &a);
        seen.insert((path.to_owned(), a.status.as_u16()));
    }
    for want in [
        ("/v1/lookup", 200),
        ("/v1/lookup", 400),
        ("/v1/lookup", 403),
        ("/v1/lookup", 404),
        ("/v1/bundle", 200),
    ] {
        assert!(
            seen.contains(&(want.0.to_owned(), want.1)),
            "no sample answered {want:?}"
        );
    }

    let counter = gw.client("counter-a");
    // Malformed body, missing operator: 400 problems.
    let a = send(
        &counter,
        "post",
        "/v1/lookup",
        Some(&json!({"dataset": "population"})),
    )
    .await;
    assert_eq!(a.status, 400);
    check_answer(&doc, "/v1/lookup", "post", &a);
    let a = counter
        .request(
            Method::POST,
            "/v1/lookup",
            &[("content-type", "application/json")],
            samples[0]["body"].to_string(),
        )
        .await
        .unwrap();
    assert_eq!(problem_type(&a), "/problems/operator-required");
    check_answer(&doc, "/v1/lookup", "post", &a);
    let a = send(&counter, "get", "/.well-known/jwks.json", None).await;
    check_answer(&doc, "/.well-known/jwks.json", "get", &a);

    // Admin: list, one, explain, a change and its revocation; a counter is refused.
    let admin = gw.client("admin");
    let a = send(
        &admin,
        "get",
        "/admin/v1/agreements?dataset=population",
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{:#}", a.body);
    check_answer(&doc, "/admin/v1/agreements", "get", &a);
    let id = a.body["agreements"][0]["agreement"]["id"]
        .as_str()
        .expect("the demo's admin owns an agreement")
        .to_owned();
    let a = send(&admin, "get", &format!("/admin/v1/agreements/{id}"), None).await;
    assert_eq!(a.status, 200, "{:#}", a.body);
    check_answer(&doc, "/admin/v1/agreements/{id}", "get", &a);
    let a = send(
        &admin,
        "get",
        "/admin/v1/explain?consumer=urn:tongban:sz-hrss:counter-01&dataset=population&matter=social-insurance-enrollment&field=name",
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{:#}", a.body);
    check_answer(&doc, "/admin/v1/explain", "get", &a);
    let a = send(
        &admin,
        "get",
        "/admin/v1/explain?consumer=urn:tongban:sz-civil:counter-01&dataset=population&matter=marketing",
        None,
    )
    .await;
    assert_eq!(a.body["decision"], "deny", "{:#}", a.body);
    check_answer(&doc, "/admin/v1/explain", "get", &a);
    let agreement = json!({
        "provider": "sz-psb", "consumer": "urn:tongban:sz-civil:counter-01",
        "dataset": "population", "matters": ["marriage-registration"],
        "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z",
        "hours": "08:30-17:30", "days": ["mon", "tue", "wed", "thu", "fri"],
        "daily_quota": 100, "operator_rate": "30/min",
        "fields": {"name": "full", "household_address": "masked"}
    });
    check_request(&doc, "/admin/v1/agreements/{id}", "put", &agreement);
    let path = "/admin/v1/agreements/openapi-probe";
    let a = send(&admin, "put", path, Some(&agreement)).await;
    assert_eq!(a.status, 201, "{:#}", a.body);
    check_answer(&doc, "/admin/v1/agreements/{id}", "put", &a);
    let a = send(&admin, "put", path, Some(&agreement)).await;
    assert_eq!(a.body["action"], "unchanged", "{:#}", a.body);
    check_answer(&doc, "/admin/v1/agreements/{id}", "put", &a);
    let mut create = agreement.clone();
    create["id"] = json!("openapi-probe");
    check_request(&doc, "/admin/v1/agreements", "post", &create);
    let a = send(&admin, "post", "/admin/v1/agreements", Some(&create)).await;
    assert_eq!(a.status, 409, "{:#}", a.body);
    check_answer(&doc, "/admin/v1/agreements", "post", &a);
    let a = send(&admin, "delete", path, None).await;
    assert_eq!(a.status, 200, "{:#}", a.body);
    check_answer(&doc, "/admin/v1/agreements/{id}", "delete", &a);
    let a = send(&counter, "get", "/admin/v1/agreements", None).await;
    assert_eq!(problem_type(&a), "/problems/role-required");
    check_answer(&doc, "/admin/v1/agreements", "get", &a);

    // Access requests: the demo's pending one listed, shown with its history and
    // refused; one filed for a system of sz-psb, withdrawn, then a conflict.
    let requests = "/admin/v1/requests";
    let a = send(&admin, "get", &format!("{requests}?state=submitted"), None).await;
    assert_eq!(a.status, 200, "{:#}", a.body);
    check_answer(&doc, requests, "get", &a);
    let pending = a.body["requests"][0]["id"].as_str().unwrap().to_owned();
    let one = format!("{requests}/{pending}");
    let a = send(&admin, "get", &one, None).await;
    assert_eq!(a.body["history"][0]["action"], "file", "{:#}", a.body);
    check_answer(&doc, "/admin/v1/requests/{id}", "get", &a);
    let refusal = json!({"reason": "no legal basis shown"});
    check_request(&doc, "/admin/v1/requests/{id}/refuse", "post", &refusal);
    let a = send(&admin, "post", &format!("{one}/refuse"), Some(&refusal)).await;
    assert_eq!(a.body["state"], "refused", "{:#}", a.body);
    check_answer(&doc, "/admin/v1/requests/{id}/refuse", "post", &a);
    let ask = json!({
        "dataset": "legal_person", "consumer": "urn:tongban:sz-psb:counter-09",
        "fields": {"name": "full", "registered_address": "masked"},
        "matters": ["household-transfer"], "legal_basis": "Hukou Regulations art. 10",
        "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2099-01-01T00:00:00Z",
        "daily_quota": 50, "contact": "PSB data office",
    });
    check_request(&doc, requests, "post", &ask);
    let a = send(&admin, "post", requests, Some(&ask)).await;
    assert_eq!(a.status, 201, "{:#}", a.body);
    check_answer(&doc, requests, "post", &a);
    let filed = format!("{requests}/{}", a.body["id"].as_str().unwrap());
    let a = send(
        &admin,
        "post",
        &format!("{filed}/withdraw"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(a.body["state"], "withdrawn", "{:#}", a.body);
    check_answer(&doc, "/admin/v1/requests/{id}/withdraw", "post", &a);
    let narrowing = json!({"fields": {"name": "full"}, "daily_quota": 10});
    check_request(&doc, "/admin/v1/requests/{id}/approve", "post", &narrowing);
    let a = send(
        &admin,
        "post",
        &format!("{filed}/approve"),
        Some(&narrowing),
    )
    .await;
    // sz-amr reviews legal_person, not sz-psb.
    assert_eq!(problem_type(&a), "/problems/not-permitted");
    check_answer(&doc, "/admin/v1/requests/{id}/approve", "post", &a);
    let a = send(
        &admin,
        "post",
        &format!("{filed}/withdraw"),
        Some(&json!({})),
    )
    .await;
    assert_eq!(problem_type(&a), "/problems/request-not-pending");
    assert_eq!(a.body["state"], "withdrawn");
    check_answer(&doc, "/admin/v1/requests/{id}/withdraw", "post", &a);
    let a = send(
        &admin,
        "post",
        requests,
        Some(&json!({"dataset": "population"})),
    )
    .await;
    assert_eq!(a.status, 400, "{:#}", a.body);
    check_answer(&doc, requests, "post", &a);

    // Auditor: a search page, one record, a bad filter; a counter is refused.
    let auditor = gw.client("auditor");
    let a = send(
        &auditor,
        "get",
        "/audit/v1/records?dataset=population&limit=3",
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{:#}", a.body);
    assert_eq!(a.body["count"], 3);
    assert!(a.body["next"].is_string());
    check_answer(&doc, "/audit/v1/records", "get", &a);
    let a = send(&auditor, "get", "/audit/v1/records?limit=1000", None).await;
    assert!(a.body["count"].as_u64().unwrap() > 20, "{:#}", a.body);
    check_answer(&doc, "/audit/v1/records", "get", &a);
    let a = send(&auditor, "get", "/audit/v1/records/2", None).await;
    assert_eq!(a.status, 200, "{:#}", a.body);
    check_answer(&doc, "/audit/v1/records/{seq}", "get", &a);
    let a = send(&auditor, "get", "/audit/v1/records?decision=maybe", None).await;
    assert_eq!(a.status, 400, "{:#}", a.body);
    check_answer(&doc, "/audit/v1/records", "get", &a);
    let a = send(&counter, "get", "/audit/v1/records", None).await;
    assert_eq!(a.status, 403);
    check_answer(&doc, "/audit/v1/records", "get", &a);

    // Usage: an auditor's and a dept-admin's report, a bad range, a counter refused.
    for client in [&auditor, &admin] {
        let a = send(client, "get", "/admin/v1/usage?from=2026-01-01", None).await;
        assert_eq!(a.status, 200, "{:#}", a.body);
        assert!(
            a.body["total"]["lookups"].as_u64() > Some(0),
            "{:#}",
            a.body
        );
        check_answer(&doc, "/admin/v1/usage", "get", &a);
    }
    for (client, status) in [(&auditor, 400), (&counter, 403)] {
        let a = send(client, "get", "/admin/v1/usage?from=soon", None).await;
        assert_eq!(a.status, status, "{:#}", a.body);
        check_answer(&doc, "/admin/v1/usage", "get", &a);
    }

    // Citizen: the portal's page of a subject the samples looked up, a bad subject,
    // a counter refused.
    let portal = gw.client("portal");
    let subject = samples[0]["body"]["subject"].as_str().unwrap();
    // A second access to that subject, so the page of one has a next.
    let again = send(&counter, "post", "/v1/lookup", Some(&samples[0]["body"])).await;
    assert_eq!(again.status, 200, "{:#}", again.body);
    let path = format!("/citizen/v1/accesses?subject={subject}&limit=1");
    let a = send(&portal, "get", &path, None).await;
    assert_eq!(a.status, 200, "{:#}", a.body);
    assert!(a.body["next"].is_string(), "{:#}", a.body);
    check_answer(&doc, "/citizen/v1/accesses", "get", &a);
    let a = send(&portal, "get", "/citizen/v1/accesses?subject=123", None).await;
    assert_eq!(a.status, 400, "{:#}", a.body);
    check_answer(&doc, "/citizen/v1/accesses", "get", &a);
    let a = send(&counter, "get", &path, None).await;
    assert_eq!(a.status, 403, "{:#}", a.body);
    check_answer(&doc, "/citizen/v1/accesses", "get", &a);
    gw.running.shutdown().await;
}

#[test]
fn the_check_can_fail() {
    // A body the document does not allow is caught: the lookup answer without its
    // receipt, and a problem with an undocumented member.
    let doc = document_file();
    let lookup = resolve(
        &doc,
        &doc["paths"]["/v1/lookup"]["post"]["responses"]["200"],
    )["content"]["application/json"]["schema"]
        .clone();
    let v = validator(&doc, &lookup);
    let answer = json!({
        "request_id": "r", "dataset": "population", "subject": "s", "record": {"name": "x"},
        "masked": [], "source": {"department": "d", "connector": "c", "fetched_at": "2026-01-01T00:00:00Z"},
        "agreement": "a", "audit": {"seq": 1, "hash": "0".repeat(64), "index": 0, "record": {"seq": 1},
            "checkpoint": format!("o\n1\n{}=\n\n— o AAAA\n", "A".repeat(43)), "inclusion": []}
    });
    assert!(errors(&v, &answer).is_empty(), "{:?}", errors(&v, &answer));
    let mut unproven = answer.clone();
    unproven.as_object_mut().unwrap().remove("audit");
    assert!(!errors(&v, &unproven).is_empty());
    let mut extra = answer;
    extra["debug"] = json!("leak");
    assert!(!errors(&v, &extra).is_empty());
    let problem = validator(&doc, &json!({"$ref": "#/components/schemas/Problem"}));
    let p = json!({"type": "/problems/forbidden", "title": "t", "status": 403, "detail": "d", "request_id": "r", "reason": "no-agreement"});
    assert!(errors(&problem, &p).is_empty());
    let mut bad = p;
    bad["upstream"] = json!("10.0.0.5:5432 refused");
    assert!(!errors(&problem, &bad).is_empty());
}

/// The schema of query parameter `name` of `method template`.
fn parameter<'a>(doc: &'a Value, template: &str, method: &str, name: &str) -> &'a Value {
    doc["paths"][template][method]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| resolve(doc, p))
        .find(|p| p["name"] == name)
        .map(|p| &p["schema"])
        .unwrap_or_else(|| panic!("{method} {template}: no parameter {name}"))
}

#[tokio::test]
async fn the_document_refuses_what_the_server_refuses() {
    let gw = Gateway::start().await;
    let doc = document_file();
    let samples = gw.samples();
    let body_of = |path: &str| {
        samples
            .iter()
            .find(|s| s["path"] == path && s["expect"] == 200)
            .map(|s| s["body"].clone())
            .unwrap()
    };
    let request_schema = |template: &str| {
        validator(
            &doc,
            &doc["paths"][template]["post"]["requestBody"]["content"]["application/json"]["schema"],
        )
    };
    let agreement = json!({
        "id": "openapi-probe", "provider": "sz-psb", "dataset": "population",
        "consumer": "urn:tongban:sz-civil:counter-01", "matters": ["household-transfer"],
        "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2099-12-31T23:59:59Z",
        "fields": {"name": "full"},
    });
    let with = |base: &Value, key: &str, v: Value| {
        let mut b = base.clone();
        b[key] = v;
        b
    };
    // What each schema accepts stays accepted.
    for hours in ["08:00-17:30", "22:00-06:00", "00:00-24:00"] {
        let ok = with(&agreement, "hours", json!(hours));
        assert!(
            errors(&request_schema("/admin/v1/agreements"), &ok).is_empty(),
            "{hours}"
        );
    }
    let binding = json!({"identity": "urn:tongban:sz-psb:counter-02", "role": "counter"});
    assert!(errors(&request_schema("/admin/v1/roles"), &binding).is_empty());

    // Refused by the document, and by the server (4xx) when sent.
    let lookup = body_of("/v1/lookup");
    let bundle = body_of("/v1/bundle");
    let mut refused: Vec<(&str, Value)> = [("subject", ""), ("case_id", ""), ("matter", "a b")]
        .map(|(k, v)| ("/v1/lookup", with(&lookup, k, json!(v))))
        .to_vec();
    refused.extend(
        [
            ("bundle", ""),
            ("subject", ""),
            ("subject", "not-an-identifier"),
        ]
        .map(|(k, v)| ("/v1/bundle", with(&bundle, k, json!(v)))),
    );
    // Each dataset's subject standard and fields: another dataset's are refused.
    let credit_code = json!("91350100M000100Y43");
    assert_eq!(lookup["dataset"], "population", "{lookup}");
    refused.push(("/v1/lookup", with(&lookup, "subject", credit_code)));
    refused.push((
        "/v1/lookup",
        with(&lookup, "fields", json!(["license_type"])),
    ));
    for hours in [
        "00:00-00:00",
        "09:30-09:30",
        "24:00-08:00",
        "25:00-08:00",
        "8:00-17:00",
    ] {
        refused.push((
            "/admin/v1/agreements",
            with(&agreement, "hours", json!(hours)),
        ));
    }
    let upper = json!("urn:tongban:SZ-CIVIL:counter-01");
    refused.push(("/admin/v1/agreements", with(&agreement, "consumer", upper)));
    for identity in ["", "urn:tongban:sz-psb", "urn:tongban:SZ-PSB:counter-02"] {
        refused.push((
            "/admin/v1/roles",
            with(&binding, "identity", json!(identity)),
        ));
    }
    for (path, body) in &refused {
        let cert = if path.starts_with("/admin/") {
            "admin"
        } else {
            "counter-a"
        };
        assert!(
            !errors(&request_schema(path), body).is_empty(),
            "the document accepts {body} for {path}"
        );
        let a = send(&gw.client(cert), "post", path, Some(body)).await;
        assert!(
            a.status.is_client_error(),
            "{path} {body}: the server answered {} {:#}",
            a.status,
            a.body
        );
    }
    for name in ["from", "to"] {
        let schema = parameter(&doc, "/audit/v1/records", "get", name);
        let v = validator(&doc, schema);
        for ok in ["2026-11-28", "2026-11-28T09:30:00+08:00"] {
            assert!(errors(&v, &json!(ok)).is_empty(), "{name}={ok}");
        }
        for value in ["", "yesterday", "2026-13-01"] {
            assert!(!errors(&v, &json!(value)).is_empty(), "{name}={value}");
            let a = send(
                &gw.client("auditor"),
                "get",
                &format!("/audit/v1/records?{name}={value}"),
                None,
            )
            .await;
            assert_eq!(a.status, 400, "{name}={value} {:#}", a.body);
        }
    }
    gw.running.shutdown().await;
}
