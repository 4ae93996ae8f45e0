//! Sharing agreements end to end: the admin API over mutual TLS, each condition of an
//! agreement allowing and refusing real lookups, quotas that survive a restart,
//! `tongban policy apply/list/explain/history`, a CLI change reaching a running
//! gateway without a restart, role bindings managed by the CLI and the admin API,
//! and the demo's own agreements and roles on the audit chain.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::{Duration, Instant};

use chrono::{Timelike as _, Utc};
use clap::Parser as _;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use tongban_tests::{sample, Answer, Gateway};

const COUNTER_A: &str = "urn:tongban:sz-hrss:counter-01";
const COUNTER_B: &str = "urn:tongban:sz-civil:counter-01";
const PSB_ADMIN: &str = "urn:tongban:sz-psb:admin-01";

/// A resident every population agreement can see.
fn resident(gw: &Gateway) -> String {
    sample(&gw.samples(), "population", 200)["body"]["subject"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn admin(
    gw: &Gateway,
    cert: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Answer {
    let headers = [("content-type", "application/json")];
    gw.client(cert)
        .request(
            method,
            path,
            &headers,
            body.map(Value::to_string).unwrap_or_default(),
        )
        .await
        .unwrap()
}

async fn lookup(
    gw: &Gateway,
    cert: &str,
    operator: &str,
    subject: &str,
    matter: &str,
    fields: Option<&[&str]>,
) -> Answer {
    let mut body = json!({"dataset": "population", "subject": subject, "matter": matter,
                          "case_id": "SB-2026-000777"});
    if let Some(f) = fields {
        body["fields"] = json!(f);
    }
    gw.client(cert).lookup(Some(operator), &body).await.unwrap()
}

/// An agreement of sz-psb granting counter-b `name` of population for `matter`.
fn grant(id: &str, matter: &str) -> Value {
    json!({
        "id": id, "provider": "sz-psb", "consumer": COUNTER_B, "dataset": "population",
        "matters": [matter],
        "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2099-12-31T23:59:59Z",
        "fields": {"name": "full", "birth_date": "masked"},
    })
}

fn reason(a: &Answer) -> &str {
    a.body["reason"].as_str().unwrap_or_default()
}

/// Run `tongban policy …` in-process; its printed output, or the failure and code.
async fn policy_cli(args: &[&str]) -> Result<String, (u8, String)> {
    let mut argv = vec!["tongban", "policy"];
    argv.extend_from_slice(args);
    let cli = gateway::cli::Cli::try_parse_from(argv).unwrap();
    let gateway::cli::Command::Policy(args) = cli.command else {
        panic!("not a policy command")
    };
    gateway::cli::policy::output(args)
        .await
        .map_err(|f| (f.code(), f.to_string()))
}

/// Poll `check` until it holds or `limit` passes; the time it took.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test]
async fn admin_api_manages_its_departments_agreements_and_they_apply_at_once() {
    let gw = Gateway::start().await;
    let subject = resident(&gw);
    let path = "/admin/v1/agreements";

    // No agreement yet for this matter.
    let a = lookup(
        &gw,
        "counter-b",
        "clerk-1",
        &subject,
        "household-transfer",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert_eq!(reason(&a), "matter-not-allowed");

    let created = admin(
        &gw,
        "admin",
        Method::POST,
        path,
        Some(&grant("civil-transfer", "household-transfer")),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["action"], "create");
    assert_eq!(
        created.body["agreement"]["approver"], PSB_ADMIN,
        "the caller approves when none is named"
    );
    // The gateway obeys the change before the answer leaves.
    let a = lookup(
        &gw,
        "counter-b",
        "clerk-1",
        &subject,
        "household-transfer",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["agreement"], "civil-transfer");
    assert_eq!(a.body["masked"], json!(["birth_date"]));

    // The change is in the audit chain with its after.
    let list = admin(&gw, "admin", Method::GET, path, None).await;
    assert_eq!(list.status, StatusCode::OK);
    let ids: Vec<&str> = list.body["agreements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["agreement"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "civil-population-2026",
            "civil-transfer",
            "hrss-population-2026"
        ],
        "only sz-psb's own agreements"
    );

    // Update: drop a field; a lookup asking it is refused at once.
    let mut changed = grant("civil-transfer", "household-transfer");
    changed["fields"] = json!({"birth_date": "masked"});
    changed.as_object_mut().unwrap().remove("id");
    let put = admin(
        &gw,
        "admin",
        Method::PUT,
        &format!("{path}/civil-transfer"),
        Some(&changed),
    )
    .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.body["action"], "update");
    let audit = gw.last_audit().await;
    assert_eq!(audit["method"], "PUT");
    assert_eq!(audit["consumer"], PSB_ADMIN);
    assert_eq!(audit["agreement"], "civil-transfer");
    let change = &audit["detail"]["policy_change"];
    assert_eq!(change["action"], "update");
    assert_eq!(change["before"]["fields"]["name"], "full");
    assert!(change["after"]["fields"].get("name").is_none());
    let a = lookup(
        &gw,
        "counter-b",
        "clerk-1",
        &subject,
        "household-transfer",
        Some(&["name"]),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(reason(&a), "field-not-allowed");

    let one = admin(
        &gw,
        "admin",
        Method::GET,
        &format!("{path}/civil-transfer"),
        None,
    )
    .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body["version"], put.body["version"]);
    assert_eq!(one.body["updated_by"], PSB_ADMIN);

    // Revoke: refused again at once.
    let del = admin(
        &gw,
        "admin",
        Method::DELETE,
        &format!("{path}/civil-transfer"),
        None,
    )
    .await;
    assert_eq!(del.status, StatusCode::OK, "{}", del.body);
    assert_eq!(del.body["action"], "revoke");
    let a = lookup(
        &gw,
        "counter-b",
        "clerk-1",
        &subject,
        "household-transfer",
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);

    // Every version, who and what, in the history.
    let config = gw.config_path();
    let history = policy_cli(&[
        "history",
        "--id",
        "civil-transfer",
        "--config",
        config.to_str().unwrap(),
    ])
    .await
    .unwrap();
    let lines: Vec<&str> = history.lines().filter(|l| l.starts_with('v')).collect();
    assert_eq!(lines.len(), 3, "{history}");
    assert!(
        lines[0].contains("revoke") && lines[1].contains("update") && lines[2].contains("create"),
        "{history}"
    );
    assert!(lines.iter().all(|l| l.contains(PSB_ADMIN)), "{history}");
    assert!(
        history.contains("fields.name: \"full\" → (none)"),
        "{history}"
    );

    // Conflicts and unknown ids.
    let again = admin(
        &gw,
        "admin",
        Method::POST,
        path,
        Some(&grant("hrss-population-2026", "household-transfer")),
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(again.body["type"], "/problems/agreement-exists");
    let gone = admin(
        &gw,
        "admin",
        Method::DELETE,
        &format!("{path}/civil-transfer"),
        None,
    )
    .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(
        admin(&gw, "admin", Method::GET, &format!("{path}/nope"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bad_agreements_are_refused_naming_the_field() {
    let gw = Gateway::start().await;
    let path = "/admin/v1/agreements";
    type Change = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Change, &str)> = vec![
        (
            Box::new(|v| v["fields"]["shoe_size"] = json!("full")),
            "fields.shoe_size",
        ),
        (
            Box::new(|v| v["matters"] = json!(["marketing"])),
            "matters: unknown matter \"marketing\"",
        ),
        (
            Box::new(|v| v["consumer"] = json!("counter-01")),
            "consumer: \"counter-01\" is neither an identity",
        ),
        (
            Box::new(|v| v["consumer"] = json!("urn:tongban:SZ_CIVIL:x")),
            "consumer:",
        ),
        (
            Box::new(|v| v["dataset"] = json!("people")),
            "dataset: unknown dataset",
        ),
        (
            Box::new(|v| v["valid_until"] = json!("2025-01-01T00:00:00Z")),
            "valid_until: is before valid_from",
        ),
        (
            Box::new(|v| v["fields"]["name"] = json!("partial")),
            "unknown variant `partial`",
        ),
        (Box::new(|v| v["hours"] = json!("9-5")), "not a window like"),
    ];
    for (change, want) in cases {
        let mut body = grant("bad-one", "household-transfer");
        change(&mut body);
        let a = admin(&gw, "admin", Method::POST, path, Some(&body)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{want}: {}", a.body);
        assert_eq!(a.headers["content-type"], "application/problem+json");
        let detail = a.body["detail"].as_str().unwrap();
        assert!(detail.contains(want), "want {want:?} in {detail}");
    }
    // Nothing was stored, and every refusal is audited.
    assert_eq!(
        admin(&gw, "admin", Method::GET, &format!("{path}/bad-one"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        gw.last_audit().await["path"],
        "/admin/v1/agreements/bad-one"
    );
}

#[tokio::test]
async fn only_the_providers_dept_admin_may_grant_or_revoke() {
    let gw = Gateway::start().await;
    let path = "/admin/v1/agreements";

    // Not a dept-admin at all.
    let a = admin(
        &gw,
        "counter-a",
        Method::POST,
        path,
        Some(&grant("x1", "household-transfer")),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.body["type"], "/problems/role-required");
    assert_eq!(gw.last_audit().await["decision"], "deny");

    // sz-psb's admin may not grant sz-amr's legal_person, whatever provider it names.
    let mut lp = grant("psb-grants-lp", "employer-registration");
    lp["dataset"] = json!("legal_person");
    lp["fields"] = json!({"name": "full"});
    for provider in ["sz-amr", "sz-psb"] {
        lp["provider"] = json!(provider);
        let a = admin(&gw, "admin", Method::POST, path, Some(&lp)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
        assert_eq!(a.body["type"], "/problems/not-permitted");
        assert!(
            a.body["detail"]
                .as_str()
                .unwrap()
                .contains("legal_person is provided by sz-amr"),
            "{}",
            a.body
        );
    }

    // A dept-admin of sz-amr: a certificate from the demo CA and the role bound in
    // the store, which the running gateway picks up by itself.
    let pki = gw.path().join("pki");
    let mut ca = certs::CaDir::open(&pki).unwrap();
    let request = certs::IssueRequest {
        subject: certs::Subject::Client {
            identity: "urn:tongban:sz-amr:admin-01".parse().unwrap(),
            common_name: "amr-admin".into(),
        },
        validity: certs::Validity::days(30).unwrap(),
        key_alg: certs::KeyAlg::EcdsaP256,
    };
    ca.issue(&request, &pki, "amr-admin", false).unwrap();
    let config = gateway::config::Config::load(&gw.config_path()).unwrap();
    let store = gateway::policy_sync::open_store(&config).await.unwrap();
    store
        .bind_role_by("urn:tongban:sz-amr:admin-01", "dept-admin", "test")
        .await
        .unwrap();
    let auth = &gw.running.app.policy.authorizer;
    let took = eventually(Duration::from_secs(10), || async {
        auth.has_role("urn:tongban:sz-amr:admin-01", "dept-admin")
    })
    .await;
    assert!(
        took.is_some(),
        "the role binding reached the running gateway"
    );

    // It may not grant population (sz-psb's), nor touch sz-psb's agreements.
    let mut pop = grant("amr-grants-pop", "household-transfer");
    pop["provider"] = json!("sz-amr");
    let a = admin(&gw, "amr-admin", Method::POST, path, Some(&pop)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    for method in [Method::DELETE, Method::GET] {
        let a = admin(
            &gw,
            "amr-admin",
            method,
            &format!("{path}/hrss-population-2026"),
            None,
        )
        .await;
        // As if it did not exist, so another department's ids cannot be probed.
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
        assert_eq!(a.body["type"], "/problems/no-such-agreement");
    }
    let mut steal = grant("hrss-population-2026", "household-transfer");
    steal["provider"] = json!("sz-amr");
    steal["dataset"] = json!("legal_person");
    steal["fields"] = json!({"name": "full"});
    let a = admin(
        &gw,
        "amr-admin",
        Method::PUT,
        &format!("{path}/hrss-population-2026"),
        Some(&steal),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::CONFLICT,
        "an agreement of sz-psb cannot be taken over (its id is taken): {}",
        a.body
    );
    let subject = resident(&gw);
    let still = lookup(
        &gw,
        "counter-a",
        "clerk-1",
        &subject,
        "social-insurance-enrollment",
        None,
    )
    .await;
    assert_eq!(still.status, StatusCode::OK, "{}", still.body);
    // But it may grant its own legal_person.
    lp["provider"] = json!("sz-amr");
    lp["id"] = json!("amr-grants-lp");
    let a = admin(&gw, "amr-admin", Method::POST, path, Some(&lp)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
}

/// Local (China Standard Time) hour now, and an hour-long window that does not
/// include it and one that does.
fn windows() -> (String, String) {
    let local = Utc::now() + chrono::Duration::hours(8);
    let h = local.hour();
    let closed = format!("{:02}:00-{:02}:00", (h + 2) % 24, (h + 3) % 24);
    let open = format!("{:02}:00-{:02}:00", (h + 23) % 24, (h + 2) % 24);
    (closed, open)
}

#[tokio::test]
async fn each_condition_allows_and_refuses() {
    let gw = Gateway::start().await;
    let subject = resident(&gw);
    let path = "/admin/v1/agreements";
    let create = |body: Value| {
        let gw = &gw;
        async move {
            let a = admin(
                gw,
                "admin",
                Method::PUT,
                &format!("{path}/{}", body["id"].as_str().unwrap()),
                Some(&body),
            )
            .await;
            assert!(a.status.is_success(), "{}", a.body);
        }
    };

    // Matter and field, from the demo's agreements.
    let a = lookup(
        &gw,
        "counter-a",
        "clerk-1",
        &subject,
        "marriage-registration",
        None,
    )
    .await;
    assert_eq!(
        (a.status, reason(&a)),
        (StatusCode::FORBIDDEN, "matter-not-allowed")
    );
    let a = lookup(
        &gw,
        "counter-a",
        "clerk-1",
        &subject,
        "social-insurance-enrollment",
        Some(&["ethnicity"]),
    )
    .await;
    assert_eq!(
        (a.status, reason(&a)),
        (StatusCode::FORBIDDEN, "field-not-allowed")
    );
    let a = lookup(
        &gw,
        "counter-a",
        "clerk-1",
        &subject,
        "social-insurance-enrollment",
        Some(&["name"]),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);

    // Validity window: not yet in force, then in force.
    let mut v = grant("future", "company-opening");
    v["valid_from"] = json!("2099-01-01T00:00:00Z");
    create(v.clone()).await;
    let a = lookup(
        &gw,
        "counter-b",
        "clerk-1",
        &subject,
        "company-opening",
        None,
    )
    .await;
    assert_eq!(
        (a.status, reason(&a)),
        (StatusCode::FORBIDDEN, "agreement-not-in-force")
    );
    assert_eq!(gw.last_audit().await["agreement"], "future");
    v["valid_from"] = json!("2026-01-01T00:00:00Z");
    create(v).await;
    assert_eq!(
        lookup(
            &gw,
            "counter-b",
            "clerk-1",
            &subject,
            "company-opening",
            None
        )
        .await
        .status,
        StatusCode::OK
    );

    // Hours of service (local time): closed now, then open now.
    let (closed, open) = windows();
    let mut h = grant("hours", "business-registration");
    h["hours"] = json!(closed);
    create(h.clone()).await;
    let a = lookup(
        &gw,
        "counter-b",
        "clerk-1",
        &subject,
        "business-registration",
        None,
    )
    .await;
    assert_eq!(
        (a.status, reason(&a)),
        (StatusCode::FORBIDDEN, "outside-service-hours"),
        "{}",
        a.body
    );
    assert!(
        a.body["detail"].as_str().unwrap().contains(&closed),
        "{}",
        a.body
    );
    h["hours"] = json!(open);
    create(h).await;
    assert_eq!(
        lookup(
            &gw,
            "counter-b",
            "clerk-1",
            &subject,
            "business-registration",
            None
        )
        .await
        .status,
        StatusCode::OK
    );

    // Explicit deny overrides the demo's allow for counter-a; revoking it restores.
    let deny = json!({"id": "deny-hrss", "provider": "sz-psb", "consumer": COUNTER_A, "dataset": "population",
        "matters": ["social-insurance-enrollment"], "effect": "deny",
        "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2099-12-31T23:59:59Z"});
    create(deny).await;
    let a = lookup(
        &gw,
        "counter-a",
        "clerk-1",
        &subject,
        "social-insurance-enrollment",
        None,
    )
    .await;
    assert_eq!(
        (a.status, reason(&a)),
        (StatusCode::FORBIDDEN, "explicit-deny")
    );
    assert_eq!(gw.last_audit().await["agreement"], "deny-hrss");
    // The deny names one matter: the allow still serves the other.
    assert_eq!(
        lookup(
            &gw,
            "counter-a",
            "clerk-1",
            &subject,
            "pension-qualification",
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    admin(
        &gw,
        "admin",
        Method::DELETE,
        &format!("{path}/deny-hrss"),
        None,
    )
    .await;
    assert_eq!(
        lookup(
            &gw,
            "counter-a",
            "clerk-1",
            &subject,
            "social-insurance-enrollment",
            None
        )
        .await
        .status,
        StatusCode::OK
    );

    // Operator rate: two per hour for clerk-1; another clerk has its own count.
    let mut r = grant("rate", "housing-fund-withdrawal");
    r["operator_rate"] = json!("2/h");
    create(r).await;
    let hour = || Utc::now().timestamp() / 3600;
    loop {
        let started = hour();
        let statuses = [
            lookup(
                &gw,
                "counter-b",
                "clerk-r1",
                &subject,
                "housing-fund-withdrawal",
                None,
            )
            .await,
            lookup(
                &gw,
                "counter-b",
                "clerk-r1",
                &subject,
                "housing-fund-withdrawal",
                None,
            )
            .await,
            lookup(
                &gw,
                "counter-b",
                "clerk-r1",
                &subject,
                "housing-fund-withdrawal",
                None,
            )
            .await,
        ];
        if hour() != started {
            continue; // the window rolled over mid-way: count again in the new one
        }
        assert_eq!(statuses[0].status, StatusCode::OK);
        assert_eq!(statuses[1].status, StatusCode::OK);
        let third = &statuses[2];
        assert_eq!(
            third.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            third.body
        );
        assert_eq!(reason(third), "operator-rate-exceeded");
        assert_eq!(third.body["type"], "/problems/limit-reached");
        break;
    }
    assert_eq!(
        lookup(
            &gw,
            "counter-b",
            "clerk-r2",
            &subject,
            "housing-fund-withdrawal",
            None
        )
        .await
        .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn daily_quota_holds_across_a_restart() {
    let gw = Gateway::start().await;
    let subject = resident(&gw);
    let mut q = grant("quota", "household-transfer");
    q["daily_quota"] = json!(2);
    let a = admin(&gw, "admin", Method::POST, "/admin/v1/agreements", Some(&q)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    // The quota is the consumer's, whichever clerk asks.
    for clerk in ["clerk-1", "clerk-2"] {
        let a = lookup(
            &gw,
            "counter-b",
            clerk,
            &subject,
            "household-transfer",
            None,
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    let a = lookup(
        &gw,
        "counter-b",
        "clerk-3",
        &subject,
        "household-transfer",
        None,
    )
    .await;
    assert_eq!(
        (a.status, reason(&a)),
        (StatusCode::TOO_MANY_REQUESTS, "daily-quota-exhausted")
    );
    let audit = gw.last_audit().await;
    assert_eq!(audit["decision"], "deny");
    assert_eq!(audit["agreement"], "quota");
    assert!(
        audit["reason"]
            .as_str()
            .unwrap()
            .starts_with("daily-quota-exhausted"),
        "{audit}"
    );

    // Stop the gateway and start a new one on the same directory.
    let Gateway { dir, running, .. } = gw;
    running.shutdown().await;
    let any = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let demo = gateway::demo::prepare(dir.path(), any, any, &tongban_tests::test_counts())
        .await
        .unwrap();
    let running = gateway::server::start(demo.config).await.unwrap();
    let gw = Gateway {
        dir,
        running,
        witness: None,
    };
    let a = lookup(
        &gw,
        "counter-b",
        "clerk-4",
        &subject,
        "household-transfer",
        None,
    )
    .await;
    assert_eq!(
        (a.status, reason(&a)),
        (StatusCode::TOO_MANY_REQUESTS, "daily-quota-exhausted"),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn cli_apply_is_idempotent_and_reaches_a_running_gateway() {
    let gw = Gateway::start().await;
    let subject = resident(&gw);
    let config = gw.config_path();
    let config = config.to_str().unwrap();
    let file = gw.path().join("civil.toml");
    let text = format!(
        r#"[[agreement]]
id = "civil-transfer-cli"
provider = "sz-psb"
consumer = "{COUNTER_B}"
dataset = "population"
matters = ["household-transfer"]
valid_from = "2026-01-01T00:00:00Z"
valid_until = "2099-12-31T23:59:59Z"
approver = "{PSB_ADMIN}"
[agreement.fields]
name = "full"
birth_date = "full"
"#
    );
    std::fs::write(&file, &text).unwrap();
    let f = file.to_str().unwrap();

    let dry = policy_cli(&["apply", "-f", f, "--dry-run", "--config", config])
        .await
        .unwrap();
    assert!(dry.contains("+ civil-transfer-cli"), "{dry}");
    assert!(dry.contains("dry run: 1 change(s)"), "{dry}");
    let audited_before = gw.audit_count().await;

    let applied = policy_cli(&["apply", "-f", f, "--actor", "ops-li", "--config", config])
        .await
        .unwrap();
    assert!(applied.contains("+ civil-transfer-cli"), "{applied}");
    assert!(applied.contains("applied 1 change(s)"), "{applied}");
    // The CLI appended its record to the chain behind the running gateway's back: the
    // gateway's writer must continue after it, not fail its next batch.
    let next = lookup(
        &gw,
        "counter-b",
        "clerk-1",
        &subject,
        "household-transfer",
        None,
    )
    .await;
    assert_ne!(
        next.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        next.body
    );
    // The running gateway obeys it without a restart.
    let took = eventually(Duration::from_secs(10), || async {
        lookup(
            &gw,
            "counter-b",
            "clerk-1",
            &subject,
            "household-transfer",
            None,
        )
        .await
        .status
            == StatusCode::OK
    })
    .await
    .expect("the change reached the running gateway");
    println!(
        "CLI change took effect on the running gateway after {} ms",
        took.as_millis()
    );

    // The change is in the audit chain, by the CLI's actor.
    assert!(gw.audit_count().await > audited_before);
    let pool = gw.state_db().await;
    let records: Vec<String> = sqlx::query_scalar("SELECT record FROM audit_log ORDER BY seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    let cli: Vec<Value> = records
        .iter()
        .map(|r| serde_json::from_str::<Value>(r).unwrap())
        .filter(|r| r["method"] == "CLI" && r["consumer"] == "cli:ops-li")
        .collect();
    assert_eq!(cli.len(), 1, "{cli:?}");
    assert_eq!(cli[0]["consumer"], "cli:ops-li");
    assert_eq!(cli[0]["detail"]["policy_change"]["action"], "create");
    assert_eq!(
        cli[0]["detail"]["policy_change"]["after"]["id"],
        "civil-transfer-cli"
    );

    // Applying it again changes nothing.
    let again = policy_cli(&["apply", "-f", f, "--config", config])
        .await
        .unwrap();
    assert!(
        again.contains("applied 0 change(s), 1 agreement(s) unchanged"),
        "{again}"
    );

    // An edit shows as a diff and takes effect too.
    std::fs::write(&file, text.replace("birth_date = \"full\"\n", "")).unwrap();
    let edited = policy_cli(&["apply", "-f", f, "--config", config])
        .await
        .unwrap();
    assert!(edited.contains("~ civil-transfer-cli"), "{edited}");
    assert!(
        edited.contains("fields.birth_date: \"full\" → (none)"),
        "{edited}"
    );
    eventually(Duration::from_secs(10), || async {
        reason(
            &lookup(
                &gw,
                "counter-b",
                "clerk-1",
                &subject,
                "household-transfer",
                Some(&["birth_date"]),
            )
            .await,
        ) == "field-not-allowed"
    })
    .await
    .expect("the edit reached the running gateway");

    // list shows it; history has both versions by the actors.
    let list = policy_cli(&["list", "--dataset", "population", "--config", config])
        .await
        .unwrap();
    assert!(list.contains("civil-transfer-cli"), "{list}");
    assert!(!list.contains("hrss-legal-person-2026"), "{list}");
    let toml = policy_cli(&["list", "--format", "toml", "--config", config])
        .await
        .unwrap();
    assert!(toml.contains("[[agreement]]"), "{toml}");
    let history = policy_cli(&["history", "--config", config]).await.unwrap();
    assert!(
        history.contains("update civil-transfer-cli")
            || history.contains("update  civil-transfer-cli"),
        "{history}"
    );
    assert!(history.contains("by ops-li"), "{history}");
    assert!(
        history.contains("by tongban-demo"),
        "the demo's agreements went the same way: {history}"
    );
}

#[tokio::test]
async fn bad_agreement_files_name_file_line_and_field() {
    let gw = Gateway::start().await;
    let config = gw.config_path();
    let config = config.to_str().unwrap();
    let good = std::fs::read_to_string(gw.path().join("agreements.toml")).unwrap();
    // (file text, what the error says, what the named line holds)
    let cases = [
        (
            good.replacen("\"pension-qualification\"", "\"marketing\"", 1),
            "matters: unknown matter \"marketing\"",
            "matters =",
        ),
        (
            good.replacen("sex = \"full\"", "shoe_size = \"full\"", 1),
            "fields.shoe_size",
            "shoe_size =",
        ),
        (
            good.replacen("urn:tongban:sz-hrss:counter-01", "sz-hrss-counter", 1),
            "consumer:",
            "consumer =",
        ),
        (
            good.replacen("dataset = \"population\"", "dataset = \"people\"", 1),
            "dataset: unknown dataset",
            "dataset =",
        ),
        (
            good.replacen(
                "household_address = \"masked\"",
                "household_address = \"blurred\"",
                1,
            ),
            "unknown variant `blurred`",
            "household_address =",
        ),
        (
            good.replacen("provider = \"sz-psb\"", "provider = \"sz-amr\"", 1),
            "provider: population is provided by sz-psb",
            "provider =",
        ),
    ];
    let file = gw.path().join("bad.toml");
    for (text, want, on_line) in cases {
        std::fs::write(&file, &text).unwrap();
        let (code, message) =
            policy_cli(&["apply", "-f", file.to_str().unwrap(), "--config", config])
                .await
                .unwrap_err();
        assert_eq!(code, 2, "{message}");
        assert!(message.contains(want), "want {want:?} in {message}");
        // `<file>:<line>: …`, the line being where the field is written.
        let rest = message
            .split("bad.toml:")
            .nth(1)
            .unwrap_or_else(|| panic!("no file in {message}"));
        let line: usize = rest.split(':').next().unwrap().parse().unwrap();
        let at = text.lines().nth(line - 1).unwrap();
        assert!(
            at.trim_start().starts_with(on_line),
            "line {line} is {at:?} for {message}"
        );
    }
    // Nothing was applied.
    let list = policy_cli(&["list", "--config", config]).await.unwrap();
    assert!(
        !list.contains("people") && !list.contains("sz-hrss-counter"),
        "{list}"
    );
}

#[tokio::test]
async fn explain_says_which_agreement_allows_or_which_condition_fails() {
    let gw = Gateway::start().await;
    let config = gw.config_path();
    let config = config.to_str().unwrap();
    let at = "2026-06-03T02:00:00Z";
    let explain = |extra: Vec<&'static str>| async move {
        let mut args = vec![
            "explain",
            "--consumer",
            COUNTER_A,
            "--dataset",
            "population",
            "--at",
            at,
            "--config",
            config,
        ];
        args.extend(extra);
        policy_cli(&args).await.unwrap()
    };
    let allow = explain(vec![
        "--matter",
        "social-insurance-enrollment",
        "--field",
        "name",
    ])
    .await;
    assert!(
        allow.contains("ALLOW by agreement hrss-population-2026: name (full)"),
        "{allow}"
    );
    let field = explain(vec![
        "--matter",
        "social-insurance-enrollment",
        "--field",
        "ethnicity",
    ])
    .await;
    assert!(field.contains("DENY [field-not-allowed]"), "{field}");
    assert!(
        field.contains("hrss-population-2026") && field.contains("does not grant field ethnicity"),
        "{field}"
    );
    let matter = explain(vec!["--matter", "marriage-registration"]).await;
    assert!(matter.contains("DENY [matter-not-allowed]"), "{matter}");
    assert!(matter.contains("matter marriage-registration is not one of: social-insurance-enrollment, pension-qualification"), "{matter}");
    let later = policy_cli(&[
        "explain",
        "--consumer",
        COUNTER_A,
        "--dataset",
        "population",
        "--matter",
        "social-insurance-enrollment",
        "--at",
        "2031-06-01T00:00:00Z",
        "--config",
        config,
    ])
    .await
    .unwrap();
    assert!(
        later.contains("DENY [agreement-not-in-force]") && later.contains("is after it"),
        "{later}"
    );
    let nobody = policy_cli(&[
        "explain",
        "--consumer",
        "urn:tongban:sz-x:y",
        "--dataset",
        "population",
        "--matter",
        "household-transfer",
        "--config",
        config,
    ])
    .await
    .unwrap();
    assert!(
        nobody.contains("DENY [no-agreement]") && nobody.contains("No agreement names"),
        "{nobody}"
    );

    // The same over the admin API, as JSON.
    let path = format!("/admin/v1/explain?consumer={}&dataset=population&matter=social-insurance-enrollment&field=ethnicity&at={at}",
        COUNTER_A.replace(':', "%3A"));
    let a = admin(&gw, "admin", Method::GET, &path, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["decision"], "deny");
    assert_eq!(a.body["reason"], "field-not-allowed");
    assert_eq!(a.body["candidates"][0]["agreement"], "hrss-population-2026");
    assert_eq!(a.body["candidates"][0]["failed"], "fields");
    assert_eq!(
        gw.last_audit().await["detail"]["policy_explain"]["matter"],
        "social-insurance-enrollment"
    );
    // Not for another department's dataset, not for non-admins.
    let lp = "/admin/v1/explain?consumer=urn%3Atongban%3Asz-hrss%3Acounter-01&dataset=legal_person&matter=employer-registration";
    assert_eq!(
        admin(&gw, "admin", Method::GET, lp, None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        admin(&gw, "counter-a", Method::GET, &path, None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

/// Every audit record, parsed, in chain order.
async fn audit_records(gw: &Gateway) -> Vec<Value> {
    let pool = gw.state_db().await;
    let records: Vec<String> = sqlx::query_scalar("SELECT record FROM audit_log ORDER BY seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    records
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect()
}

#[tokio::test]
async fn the_demos_agreements_and_roles_are_on_the_audit_chain() {
    let gw = Gateway::start().await;
    let config = gw.config_path();
    let config = config.to_str().unwrap();
    let records = audit_records(&gw).await;
    let seeded: Vec<&Value> = records
        .iter()
        .filter(|r| r["consumer"] == "cli:tongban-demo")
        .collect();

    // One record per agreement of the demo's file, each with its after image and
    // the version the policy history gave it…
    let config_text = gateway::config::Config::load(&gw.config_path()).unwrap();
    let store = gateway::policy_sync::open_store(&config_text)
        .await
        .unwrap();
    let stored = store.list().await.unwrap();
    assert_eq!(stored.len(), 6, "the demo's agreements");
    for s in &stored {
        let id = &s.agreement.id;
        let r = seeded
            .iter()
            .find(|r| r["agreement"] == id.as_str())
            .unwrap_or_else(|| panic!("no audit record of agreement {id}: {seeded:#?}"));
        let change = &r["detail"]["policy_change"];
        assert_eq!(change["action"], "create");
        assert_eq!(change["version"], s.version);
        assert_eq!(change["after"]["id"], id.as_str());
        assert_eq!(r["method"], "CLI");
        assert_eq!(r["dataset"], s.agreement.dataset.as_str());
    }
    // …and one per role binding.
    let roles = store.roles().await.unwrap();
    assert_eq!(roles.len(), gateway::demo::CLIENTS.len(), "{roles:?}");
    for b in &roles {
        assert!(
            seeded.iter().any(|r| {
                let c = &r["detail"]["policy_change"];
                c["kind"] == "role"
                    && c["action"] == "bind"
                    && c["identity"] == b.identity.as_str()
                    && c["role"] == b.role.as_str()
            }),
            "no audit record binding {} to {}: {seeded:#?}",
            b.identity,
            b.role
        );
    }
    // …and one for the access request the demo leaves pending.
    let filed: Vec<&&Value> = seeded
        .iter()
        .filter(|r| r["detail"]["access_request"]["action"] == "file")
        .collect();
    assert_eq!(filed.len(), 1, "{seeded:#?}");
    assert_eq!(filed[0]["path"], "tongban request file");
    assert_eq!(seeded.len(), stored.len() + roles.len() + 1);
    // Every version in the policy history has its record.
    assert_eq!(
        store.history(None, 100).await.unwrap().len(),
        seeded.len() - 1
    );
    // The chain, seeded records included, verifies, and the gateway went on after
    // them (its first record follows the seeding).
    let s = gw
        .samples()
        .into_iter()
        .find(|s| s["expect"] == 200 && s["path"] == "/v1/lookup")
        .unwrap();
    let a = gw
        .client(s["cert"].as_str().unwrap())
        .lookup(Some("clerk-1"), &s["body"])
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        a.body["audit"]["seq"].as_i64().unwrap(),
        i64::try_from(seeded.len()).unwrap() + 1
    );
    assert_eq!(
        gw.tongban(&["audit", "verify", "--config", config]).await,
        0
    );
}

#[tokio::test]
async fn roles_are_bound_and_unbound_by_the_cli_and_the_admin_api() {
    let gw = Gateway::start().await;
    let config = gw.config_path();
    let config = config.to_str().unwrap();
    let path = "/admin/v1/roles";
    const DESK: &str = "urn:tongban:sz-psb:desk-01";

    // The demo's bindings, from the CLI and the admin API alike.
    let listed = policy_cli(&["roles", "--config", config]).await.unwrap();
    for line in [
        "urn:tongban:sz-hrss:counter-01",
        "urn:tongban:sz-psb:admin-01",
        "dept-admin",
        "auditor",
    ] {
        assert!(listed.contains(line), "{listed}");
    }
    let a = admin(
        &gw,
        "admin",
        Method::GET,
        &format!("{path}?role=counter"),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["roles"].as_array().unwrap().len(), 2, "{}", a.body);
    // Only dept-admins.
    let a = admin(&gw, "counter-a", Method::GET, path, None).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.body["type"], "/problems/role-required");

    // sz-psb grants population to a role; nobody holds it yet.
    let mut to_role = grant("psb-desk-population", "household-transfer");
    to_role["consumer"] = json!("role:psb-desk");
    let a = admin(
        &gw,
        "admin",
        Method::POST,
        "/admin/v1/agreements",
        Some(&to_role),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let explain =
        format!("/admin/v1/explain?consumer={DESK}&dataset=population&matter=household-transfer");
    let allowed = |a: &Answer| a.body["decision"] == "allow";
    let a = admin(&gw, "admin", Method::GET, &explain, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(!allowed(&a), "{}", a.body);

    // sz-psb's admin binds one of its own systems: it applies at once.
    let bind = json!({"identity": DESK, "role": "psb-desk"});
    let a = admin(&gw, "admin", Method::POST, path, Some(&bind)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["action"], "bind");
    let version = a.body["version"].as_i64().unwrap();
    let audit = gw.last_audit().await;
    assert_eq!(audit["path"], path);
    assert_eq!(audit["consumer"], PSB_ADMIN);
    assert_eq!(audit["detail"]["policy_change"]["kind"], "role");
    assert_eq!(audit["detail"]["policy_change"]["action"], "bind");
    assert_eq!(audit["detail"]["policy_change"]["identity"], DESK);
    assert_eq!(audit["detail"]["policy_change"]["version"], version);
    let a = admin(&gw, "admin", Method::GET, &explain, None).await;
    assert!(allowed(&a), "{}", a.body);
    // Binding it again changes nothing.
    let a = admin(&gw, "admin", Method::POST, path, Some(&bind)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["action"], "unchanged");

    // What a dept-admin may not do: another department's identity, the auditor
    // role, removing its own dept-admin role; and bad input.
    for (body, status, problem) in [
        (
            json!({"identity": "urn:tongban:sz-hrss:counter-09", "role": "counter"}),
            StatusCode::FORBIDDEN,
            "/problems/not-permitted",
        ),
        (
            json!({"identity": DESK, "role": "auditor"}),
            StatusCode::FORBIDDEN,
            "/problems/not-permitted",
        ),
        (
            json!({"identity": "desk-01", "role": "counter"}),
            StatusCode::BAD_REQUEST,
            "/problems/bad-request",
        ),
        (
            json!({"identity": DESK, "role": "Desk Staff"}),
            StatusCode::BAD_REQUEST,
            "/problems/bad-request",
        ),
        (
            json!({"identity": DESK}),
            StatusCode::BAD_REQUEST,
            "/problems/bad-request",
        ),
    ] {
        let a = admin(&gw, "admin", Method::POST, path, Some(&body)).await;
        assert_eq!(a.status, status, "{body}: {}", a.body);
        assert_eq!(a.body["type"], problem, "{body}: {}", a.body);
    }
    let a = admin(
        &gw,
        "admin",
        Method::DELETE,
        &format!("{path}?identity={PSB_ADMIN}&role=dept-admin"),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert!(gw
        .running
        .app
        .policy
        .authorizer
        .has_role(PSB_ADMIN, "dept-admin"));
    assert_eq!(gw.last_audit().await["decision"], "deny");
    assert_eq!(
        gw.last_audit().await["detail"]["role_binding"]["identity"],
        PSB_ADMIN
    );

    // Unbinding applies at once too; unbinding what is not bound is a 404.
    let unbind = format!("{path}?identity={DESK}&role=psb-desk");
    let a = admin(&gw, "admin", Method::DELETE, &unbind, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["action"], "unbind");
    let a = admin(&gw, "admin", Method::GET, &explain, None).await;
    assert!(!allowed(&a), "{}", a.body);
    let a = admin(&gw, "admin", Method::DELETE, &unbind, None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
    assert_eq!(a.body["type"], "/problems/no-such-binding");

    // The operator binds anything with the CLI, auditor included; audited as CLI
    // changes and reaching the running gateway without a restart.
    const OFFICER: &str = "urn:tongban:sz-data:auditor-02";
    let out = policy_cli(&[
        "bind", OFFICER, "auditor", "--actor", "ops-wang", "--config", config,
    ])
    .await
    .unwrap();
    assert!(
        out.starts_with(&format!("+ {OFFICER}  role auditor")),
        "{out}"
    );
    let again = policy_cli(&["bind", OFFICER, "auditor", "--config", config])
        .await
        .unwrap();
    assert!(again.contains("nothing changed"), "{again}");
    let auth = &gw.running.app.policy.authorizer;
    eventually(Duration::from_secs(10), || async {
        auth.has_role(OFFICER, "auditor")
    })
    .await
    .expect("the CLI binding reached the running gateway");
    let out = policy_cli(&[
        "unbind", OFFICER, "auditor", "--actor", "ops-wang", "--config", config,
    ])
    .await
    .unwrap();
    assert!(
        out.starts_with(&format!("- {OFFICER}  role auditor")),
        "{out}"
    );
    eventually(Duration::from_secs(10), || async {
        !auth.has_role(OFFICER, "auditor")
    })
    .await
    .expect("the CLI unbinding reached the running gateway");
    let (code, message) = policy_cli(&["unbind", OFFICER, "auditor", "--config", config])
        .await
        .unwrap_err();
    assert_eq!(code, 2, "{message}");
    assert!(message.contains("does not hold role auditor"), "{message}");
    let (code, message) = policy_cli(&["bind", "officer-02", "auditor", "--config", config])
        .await
        .unwrap_err();
    assert_eq!(code, 2, "{message}");
    assert!(message.contains("identity"), "{message}");

    let cli: Vec<Value> = audit_records(&gw)
        .await
        .into_iter()
        .filter(|r| r["consumer"] == "cli:ops-wang")
        .collect();
    let actions: Vec<&Value> = cli
        .iter()
        .map(|r| &r["detail"]["policy_change"]["action"])
        .collect();
    assert_eq!(actions, [&json!("bind"), &json!("unbind")], "{cli:#?}");
    assert!(cli
        .iter()
        .all(|r| r["method"] == "CLI" && r["detail"]["policy_change"]["identity"] == OFFICER));

    // Every change is a version in the history, who and when.
    let history = policy_cli(&["history", "--id", OFFICER, "--config", config])
        .await
        .unwrap();
    assert!(
        history.contains("unbind  urn:tongban:sz-data:auditor-02  by ops-wang"),
        "{history}"
    );
    assert!(
        history.contains("bind    urn:tongban:sz-data:auditor-02  by ops-wang"),
        "{history}"
    );
    let history = policy_cli(&["history", "--id", DESK, "--config", config])
        .await
        .unwrap();
    assert!(history.contains(&format!("by {PSB_ADMIN}")), "{history}");
    assert!(history.contains("role psb-desk"), "{history}");
    assert_eq!(
        gw.tongban(&["audit", "verify", "--config", config]).await,
        0
    );
}
