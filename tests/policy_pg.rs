//! Two gateways sharing one PostgreSQL state database obey the same agreements: a
//! change made through either one's admin API, or by `tongban policy apply`, reaches
//! both without a restart, and a daily quota is counted across both. Uses the server
//! at 127.0.0.1:5432 in a database it creates and drops.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gateway::config::{Config, StateDb};
use http::{Method, StatusCode};
use serde_json::json;
use tongban_tests::{sample, Answer, Gateway, PgDatabase};

const COUNTER_A: &str = "urn:tongban:sz-hrss:counter-01";
const COUNTER_B: &str = "urn:tongban:sz-civil:counter-01";

/// A demo directory whose config names the PostgreSQL database, with the demo's
/// agreements and roles put there the way `tongban policy apply` would.
async fn demo_on_postgres(dir: &std::path::Path, url: &str) -> Config {
    gateway::install_crypto_provider();
    let any = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let demo = gateway::demo::prepare(dir, any, any, &tongban_tests::test_counts())
        .await
        .unwrap();
    let text = std::fs::read_to_string(dir.join("tongban.toml")).unwrap();
    let text = text.replace("state_db = \"state.db\"", &format!("state_db = \"{url}\""));
    std::fs::write(dir.join("tongban-pg.toml"), text).unwrap();
    let mut config = Config::load(&dir.join("tongban-pg.toml")).unwrap();
    assert!(matches!(config.state_db, StateDb::Postgres(_)));
    config.listen = demo.config.listen;
    config.ops_listen = demo.config.ops_listen;
    let store = gateway::policy_sync::open_store(&config).await.unwrap();
    let file = policy::AgreementFile::load(&dir.join("agreements.toml")).unwrap();
    gateway::agreements::apply_file(
        &store,
        &gateway::policy_sync::catalogue(&config),
        &file,
        false,
        false,
        "test",
        &gateway::agreements::ChangeAudit::NotAudited,
    )
    .await
    .unwrap();
    for c in gateway::demo::CLIENTS {
        let identity = format!("urn:tongban:{}:{}", c.department, c.system);
        store.bind_role_by(&identity, c.role, "test").await.unwrap();
    }
    config
}

/// A second directory holding the same certificates, for clients of the second
/// gateway.
fn copy_pki(from: &std::path::Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    for entry in std::fs::read_dir(from.join("pki")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), pki.join(entry.file_name())).unwrap();
        }
    }
    dir
}

async fn lookup(gw: &Gateway, cert: &str, subject: &str, matter: &str) -> Answer {
    let body = json!({"dataset": "population", "subject": subject, "matter": matter,
                      "case_id": "SB-2026-000888"});
    gw.client(cert)
        .lookup(Some("clerk-1"), &body)
        .await
        .unwrap()
}

async fn until_status(
    gw: &Gateway,
    cert: &str,
    subject: &str,
    matter: &str,
    want: StatusCode,
) -> Duration {
    let started = Instant::now();
    loop {
        let a = lookup(gw, cert, subject, matter).await;
        if a.status == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still {} after 10 s, wanted {want}: {}",
            a.status,
            a.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_gateways_on_one_postgres_obey_every_change() {
    let Some(db) = PgDatabase::create("policy").await else {
        return;
    };
    let dir_a = tempfile::tempdir().unwrap();
    let config = demo_on_postgres(dir_a.path(), &db.url()).await;
    let a = Gateway {
        running: gateway::server::start(config.clone()).await.unwrap(),
        dir: dir_a,
        witness: None,
    };
    let b = Gateway {
        running: gateway::server::start(config.clone()).await.unwrap(),
        dir: copy_pki(a.path()),
        witness: None,
    };
    let subject = {
        let samples = gateway::demo::load_samples(a.path()).unwrap();
        sample(&samples, "population", 200)["body"]["subject"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // Both allow what the demo agreements allow.
    for gw in [&a, &b] {
        let r = lookup(gw, "counter-a", &subject, "social-insurance-enrollment").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }

    // An explicit deny made through A's admin API: A at once, B within its sync.
    let deny = json!({"id": "deny-hrss", "provider": "sz-psb", "consumer": COUNTER_A,
        "dataset": "population", "matters": ["social-insurance-enrollment"], "effect": "deny",
        "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2099-12-31T23:59:59Z"});
    let headers = [("content-type", "application/json")];
    let r = a
        .client("admin")
        .request(
            Method::POST,
            "/admin/v1/agreements",
            &headers,
            deny.to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = lookup(&a, "counter-a", &subject, "social-insurance-enrollment").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["reason"], "explicit-deny");
    let took = until_status(
        &b,
        "counter-a",
        &subject,
        "social-insurance-enrollment",
        StatusCode::FORBIDDEN,
    )
    .await;
    println!("admin change on A reached B after {} ms", took.as_millis());

    // Revoked through B: both allow again.
    let r = b
        .client("admin")
        .request(
            Method::DELETE,
            "/admin/v1/agreements/deny-hrss",
            &headers,
            String::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        lookup(&b, "counter-a", &subject, "social-insurance-enrollment")
            .await
            .status,
        StatusCode::OK
    );
    until_status(
        &a,
        "counter-a",
        &subject,
        "social-insurance-enrollment",
        StatusCode::OK,
    )
    .await;

    // `tongban policy apply` against the shared database: both obey, no restart.
    let file = a.path().join("transfer.toml");
    std::fs::write(
        &file,
        format!(
            r#"[[agreement]]
id = "civil-transfer"
provider = "sz-psb"
consumer = "{COUNTER_B}"
dataset = "population"
matters = ["household-transfer"]
valid_from = "2026-01-01T00:00:00Z"
valid_until = "2099-12-31T23:59:59Z"
daily_quota = 3
approver = "urn:tongban:sz-psb:admin-01"
[agreement.fields]
name = "full"
"#
        ),
    )
    .unwrap();
    let config_path = a.path().join("tongban-pg.toml");
    let code = a
        .tongban(&[
            "policy",
            "apply",
            "-f",
            file.to_str().unwrap(),
            "--config",
            config_path.to_str().unwrap(),
        ])
        .await;
    assert_eq!(code, 0);
    let took_a = until_status(
        &a,
        "counter-b",
        &subject,
        "household-transfer",
        StatusCode::OK,
    )
    .await;
    let took_b = until_status(
        &b,
        "counter-b",
        &subject,
        "household-transfer",
        StatusCode::OK,
    )
    .await;
    println!(
        "CLI change reached A after {} ms and B after {} ms",
        took_a.as_millis(),
        took_b.as_millis()
    );

    // The quota of 3 a day is one count across both gateways: two used above.
    assert_eq!(
        lookup(&a, "counter-b", &subject, "household-transfer")
            .await
            .status,
        StatusCode::OK
    );
    for gw in [&b, &a] {
        let r = lookup(gw, "counter-b", &subject, "household-transfer").await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
        assert_eq!(r.body["reason"], "daily-quota-exhausted");
    }

    // The history in the shared store has every change, by whom.
    let store = gateway::policy_sync::open_store(&config).await.unwrap();
    let history = store.history(None, 100).await.unwrap();
    let actions: Vec<(String, String)> = history
        .iter()
        .filter(|h| h.kind == "agreement" && h.actor != "test")
        .map(|h| (h.subject.clone(), h.action.as_str().to_owned()))
        .collect();
    assert_eq!(
        actions,
        [
            ("civil-transfer".to_owned(), "create".to_owned()),
            ("deny-hrss".to_owned(), "revoke".to_owned()),
            ("deny-hrss".to_owned(), "create".to_owned()),
        ]
    );
    let actors: Vec<&str> = history.iter().map(|h| h.actor.as_str()).collect();
    assert!(
        actors.contains(&"urn:tongban:sz-psb:admin-01"),
        "{actors:?}"
    );

    a.running.shutdown().await;
    b.running.shutdown().await;
}
