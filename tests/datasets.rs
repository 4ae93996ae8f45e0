//! Datasets are configuration, end to end: a dataset no code knows of — residence
//! permits, kept by the public security department in a SQLite table of this test's
//! own, keyed by an identifier pattern it declares — is added to the demo's
//! `tongban.toml` and nothing else, then served by `/v1/lookup`, listed in
//! `/v1/catalogue` (with the caller's agreements and their state), requested by the
//! consumer's department, approved narrowed by the provider's, and audited; its
//! `closed` field is refused by the admin API, a request, `tongban policy apply` and
//! `tongban config check`, each naming the field.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;

use http::Method;
use serde_json::{json, Value};
use tongban_tests::{tongban_binary, Gateway};

const COUNTER_A: &str = "urn:tongban:sz-hrss:counter-01";
const COUNTER_B: &str = "urn:tongban:sz-civil:counter-01";
const HRSS_ADMIN: &str = "urn:tongban:sz-hrss:admin-01";
const REQUESTS: &str = "/admin/v1/requests";
const PERMIT: &str = "JZZ4403000001";
const ABSENT_PERMIT: &str = "JZZ4403999999";

/// What an operator appends to the demo's config to share residence permits.
const PERMITS_TOML: &str = r#"
[[sources]]
name = "permits-db"
kind = "sql"
url = "sqlite://data/permits.db?mode=ro"

[[datasets]]
name = "residence_permit"
description = "居住证 Residence permits of non-local residents"
department = "sz-psb"
subject = "pattern"
subject_pattern = "JZZ[0-9]{10}"
source = "permits-db"
query = "SELECT holder, kind, issued, expires, address FROM permits WHERE permit_no = ?"
fields = [
  { name = "holder_name", column = "holder", class = "conditional", description = "持证人 Holder" },
  { name = "permit_type", column = "kind", class = "open", description = "类型 Permit type" },
  { name = "issued_on", column = "issued", type = "date", class = "open", description = "签发日期 Issued on" },
  { name = "valid_until", column = "expires", type = "date", class = "conditional", description = "有效期至 Valid until" },
  { name = "address", column = "address", class = "conditional", description = "居住地址 Address of residence" },
  { name = "biometrics", type = "json", class = "closed", description = "生物特征 Never shared" },
]
"#;

/// The permits table, in the demo's data directory: a department's own database.
fn permits_db(dir: &Path) {
    let conn = rusqlite::Connection::open(dir.join("data/permits.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE permits (permit_no TEXT PRIMARY KEY, holder TEXT, kind TEXT, \
         issued TEXT, expires TEXT, address TEXT, biometrics TEXT);
         INSERT INTO permits VALUES ('JZZ4403000001', '王小明', '居住证', '2025-03-01', \
         '2028-02-29', '深圳市南山区科技园路1号', '{\"face\":\"...\"}');",
    )
    .unwrap();
}

/// The demo gateway with [`PERMITS_TOML`] appended to its config file, the config
/// then read from the file alone.
async fn gateway() -> Gateway {
    Gateway::start_with(|config| {
        let path = config.path.clone();
        permits_db(path.parent().unwrap());
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(PERMITS_TOML);
        std::fs::write(&path, text).unwrap();
        *config = gateway::config::Config::load(&path).unwrap();
    })
    .await
}

fn permit_agreement(id: &str, fields: Value) -> Value {
    json!({
        "id": id, "provider": "sz-psb", "consumer": COUNTER_A, "dataset": "residence_permit",
        "matters": ["household-transfer"], "daily_quota": 5,
        "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2099-12-31T23:59:59Z",
        "fields": fields,
    })
}

async fn send(gw: &Gateway, cert: &str, method: Method, path: &str, body: Option<&Value>) -> Value {
    let headers = [("content-type", "application/json")];
    let a = gw
        .client(cert)
        .request(
            method,
            path,
            &headers,
            body.map(Value::to_string).unwrap_or_default(),
        )
        .await
        .unwrap();
    json!({"status": a.status.as_u16(), "body": a.body})
}

async fn lookup(gw: &Gateway, subject: &str, fields: Option<&[&str]>) -> Value {
    let mut body = json!({"dataset": "residence_permit", "subject": subject,
                          "matter": "household-transfer", "case_id": "HJ-2026-000042"});
    if let Some(f) = fields {
        body["fields"] = json!(f);
    }
    let a = gw
        .client("counter-a")
        .lookup(Some("clerk-042"), &body)
        .await
        .unwrap();
    json!({"status": a.status.as_u16(), "body": a.body})
}

/// The caller's agreement `id` in a catalogue answer.
fn held<'a>(catalogue: &'a Value, id: &str) -> Option<&'a Value> {
    catalogue["caller"]["agreements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
}

#[tokio::test]
async fn a_dataset_added_by_config_alone_is_served_listed_requested_approved_and_audited() {
    let gw = gateway().await;

    // Listed in the catalogue, declared as the config says; any identity reads it.
    let c = send(&gw, "counter-a", Method::GET, "/v1/catalogue", None).await;
    assert_eq!(c["status"], 200, "{c}");
    let catalogue = &c["body"];
    let permits = catalogue["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "residence_permit")
        .expect("the new dataset is listed");
    assert_eq!(permits["department"], "sz-psb");
    assert_eq!(permits["subject"]["kind"], "pattern");
    assert_eq!(permits["subject"]["pattern"], "JZZ[0-9]{10}");
    let classes: Vec<(&str, &str, &str)> = permits["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap(),
                f["type"].as_str().unwrap(),
                f["class"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(classes[2], ("issued_on", "date", "open"));
    assert_eq!(classes[5], ("biometrics", "json", "closed"));
    assert!(
        catalogue["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "social_insurance" && d["department"] == "sz-hrss"),
        "the demo's fourth dataset, configuration too"
    );
    assert!(catalogue["matters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["code"] == "household-transfer"));
    // The caller's own agreements, and nobody else's.
    assert_eq!(catalogue["caller"]["identity"], COUNTER_A);
    assert_eq!(catalogue["caller"]["roles"], json!(["counter"]));
    let population = held(catalogue, "hrss-population-2026").expect("counter-a's own");
    assert_eq!(population["state"], "active");
    assert_eq!(population["fields"]["household_address"], "masked");
    assert_eq!(population["valid_until"], "2030-12-31T23:59:59Z");
    assert!(held(catalogue, "civil-population-2026").is_none());
    // Reading the catalogue is audited like any request.
    let record = gw.last_audit().await;
    assert_eq!(record["path"], "/v1/catalogue");
    assert_eq!(record["consumer"], COUNTER_A);
    assert_eq!(record["status"], 200);

    // No agreement yet: refused, audited.
    let a = lookup(&gw, PERMIT, None).await;
    assert_eq!(a["status"], 403, "{a}");

    // The closed field cannot be granted, through the admin API...
    let closed = permit_agreement("psb-permit-bad", json!({"biometrics": "full"}));
    let r = send(
        &gw,
        "admin",
        Method::POST,
        "/admin/v1/agreements",
        Some(&closed),
    )
    .await;
    assert_eq!(r["status"], 400, "{r}");
    let detail = r["body"]["detail"].as_str().unwrap();
    for part in [
        "psb-permit-bad",
        "residence_permit",
        "\"biometrics\"",
        "closed",
    ] {
        assert!(detail.contains(part), "{part} in {detail}");
    }
    let record = gw.last_audit().await;
    assert_eq!(
        (record["path"].as_str(), record["status"].as_u64()),
        (Some("/admin/v1/agreements"), Some(400))
    );

    // ... nor asked for: a request naming it is refused, naming the field ...
    gw.add_dept_admin(HRSS_ADMIN, "hrss-admin").await;
    let ask = |fields: Value| {
        json!({
            "dataset": "residence_permit", "consumer": COUNTER_A, "fields": fields,
            "matters": ["household-transfer"],
            "legal_basis": "Household registration regulations art. 16: a transfer checks the permit",
            "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2099-12-31T23:59:59Z",
            "daily_quota": 5, "contact": "HRSS data office, 0755-8888",
        })
    };
    let closed = ask(json!({"holder_name": "full", "biometrics": "full"}));
    let r = send(&gw, "hrss-admin", Method::POST, REQUESTS, Some(&closed)).await;
    assert_eq!(r["status"], 422, "{r}");
    assert_eq!(r["body"]["field"], "fields.biometrics");

    // ... while the others can: sz-hrss's admin files a request for counter-a, and
    // the provider's admin, sz-psb's, approves it narrowed (the address masked).
    let all = json!({"holder_name": "full", "permit_type": "full", "valid_until": "full",
                     "address": "full"});
    let r = send(&gw, "hrss-admin", Method::POST, REQUESTS, Some(&ask(all))).await;
    assert_eq!(r["status"], 201, "{r}");
    assert_eq!(r["body"]["provider"], "sz-psb", "the dataset's department");
    let id = r["body"]["id"].as_str().unwrap().to_owned();
    let narrowing = json!({
        "fields": {"holder_name": "full", "permit_type": "full", "valid_until": "full",
                   "address": "masked"},
        "agreement_id": "psb-permit-hrss",
    });
    let approve = format!("{REQUESTS}/{id}/approve");
    let r = send(&gw, "admin", Method::POST, &approve, Some(&narrowing)).await;
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["body"]["state"], "approved");
    assert_eq!(r["body"]["agreement"], "psb-permit-hrss");
    let record = gw.last_audit().await;
    assert_eq!(record["detail"]["access_request"]["action"], "approve");
    assert_eq!(record["detail"]["policy_change"]["action"], "create");

    // Served from the department's table, masked as granted, audited.
    let a = lookup(&gw, PERMIT, None).await;
    assert_eq!(a["status"], 200, "{a}");
    let answer = &a["body"];
    assert_eq!(answer["record"]["holder_name"], "王小明");
    assert_eq!(answer["record"]["valid_until"], "2028-02-29");
    assert_eq!(answer["masked"], json!(["address"]));
    assert!(answer["record"].get("biometrics").is_none());
    assert_eq!(answer["source"]["connector"], "permits-db");
    assert_eq!(answer["source"]["department"], "sz-psb");
    let record = gw.last_audit().await;
    assert_eq!(record["seq"], answer["audit"]["seq"]);
    assert_eq!(record["dataset"], "residence_permit");
    assert_eq!(record["subject"], PERMIT);
    assert_eq!(record["decision"], "allow");
    assert_eq!(record["agreement"], "psb-permit-hrss");
    // Not there: 404; not an identifier of the declared pattern: 400 naming the rule;
    // the closed field asked by name: refused.
    let a = lookup(&gw, ABSENT_PERMIT, None).await;
    assert_eq!(a["status"], 404, "{a}");
    let a = lookup(&gw, "JZZ12", None).await;
    assert_eq!(a["status"], 400, "{a}");
    assert_eq!(a["body"]["rule"], "pattern");
    assert_eq!(gw.last_audit().await["subject"], "JZZ12");
    let a = lookup(&gw, PERMIT, Some(&["holder_name", "biometrics"])).await;
    assert_eq!(a["status"], 403, "{a}");

    // The catalogue now shows the agreement and today's use of its quota: the two
    // allowed lookups (found and not found) counted.
    let c = send(&gw, "counter-a", Method::GET, "/v1/catalogue", None).await;
    let permit = held(&c["body"], "psb-permit-hrss").expect("the new agreement is held");
    assert_eq!(permit["state"], "active");
    assert_eq!(permit["dataset"], "residence_permit");
    assert_eq!(permit["matters"], json!(["household-transfer"]));
    assert_eq!(permit["fields"]["address"], "masked");
    assert_eq!(permit["daily_quota"]["max"], 5);
    assert_eq!(permit["daily_quota"]["used"], 2);
    assert_eq!(permit["daily_quota"]["remaining"], 3);
    // counter-b holds its own, not this one.
    let c = send(&gw, "counter-b", Method::GET, "/v1/catalogue", None).await;
    assert_eq!(c["body"]["caller"]["identity"], COUNTER_B);
    assert!(held(&c["body"], "psb-permit-hrss").is_none());
    assert!(held(&c["body"], "civil-social-insurance-2026").is_some());

    // `tongban policy apply` refuses the closed field too, and changes nothing.
    let file = gw.path().join("closed.toml");
    std::fs::write(
        &file,
        r#"[[agreement]]
id = "psb-permit-file"
provider = "sz-psb"
consumer = "urn:tongban:sz-civil:counter-01"
dataset = "residence_permit"
matters = ["household-transfer"]
valid_from = "2026-01-01T00:00:00Z"
valid_until = "2099-12-31T23:59:59Z"
approver = "urn:tongban:sz-psb:admin-01"
fields = { holder_name = "full", biometrics = "masked" }
"#,
    )
    .unwrap();
    let config = gw.config_path();
    let (code, message) = gw
        .tongban_output(&[
            "policy",
            "apply",
            "-f",
            file.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ])
        .await;
    assert_eq!(code, 2, "{message}");
    for part in [
        "closed.toml:",
        "psb-permit-file",
        "residence_permit",
        "fields.biometrics",
        "closed",
    ] {
        assert!(message.contains(part), "{part} in {message}");
    }

    // The config as the binary checks it and prints the catalogue.
    let bin = tongban_binary();
    let out = std::process::Command::new(&bin)
        .args(["config", "check"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("5 dataset(s)"), "{stdout}");
    assert!(stdout.contains("agreement(s) checked"), "{stdout}");
    let out = std::process::Command::new(&bin)
        .args([
            "catalogue",
            "--as",
            COUNTER_A,
            "--format",
            "json",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        printed["datasets"], c["body"]["datasets"],
        "the same document"
    );
    assert_eq!(
        held(&printed, "psb-permit-hrss").unwrap()["daily_quota"]["used"],
        2
    );
    let out = std::process::Command::new(&bin)
        .args(["catalogue", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("residence_permit") && text.contains("biometrics"),
        "{text}"
    );
    let out = std::process::Command::new(&bin)
        .args(["catalogue", "--as", "not-an-identity", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // Reclassify `address` closed while an agreement still grants it: `config
    // check` names the agreement, the dataset and the field, exit 2.
    let reclassified = gw.path().join("reclassified.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        r#"{ name = "address", column = "address", class = "conditional""#,
        r#"{ name = "address", column = "address", class = "closed""#,
    );
    std::fs::write(&reclassified, text).unwrap();
    let out = std::process::Command::new(&bin)
        .args(["config", "check"])
        .arg(&reclassified)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for part in [
        "reclassified.toml",
        "psb-permit-hrss",
        "residence_permit",
        "\"address\"",
        "closed",
    ] {
        assert!(stderr.contains(part), "{part} in {stderr}");
    }
}
