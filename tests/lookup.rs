//! The spine end to end: lookups over real mutual TLS against a real gateway, with
//! policy, a SQLite source, signatures and the audit chain.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use http::{Method, StatusCode};
use serde_json::{json, Value};
use tongban_tests::{sample, Gateway};

fn body(dataset: &str, subject: &str, matter: &str) -> Value {
    json!({"dataset": dataset, "subject": subject, "matter": matter, "case_id": "SB-2026-000123"})
}

#[tokio::test]
async fn every_sample_gets_its_expected_status_and_is_audited() {
    let gw = Gateway::start().await;
    let samples = gw.samples();
    assert!(samples.len() >= 8, "samples.json covers the required cases");
    // A bundle writes one record per item besides its own; the chain starts with
    // the demo's policy changes.
    let mut records = gw.audit_count().await;
    for s in &samples {
        let client = gw.client(s["cert"].as_str().unwrap());
        let headers = [
            ("content-type", "application/json"),
            ("x-operator-id", s["operator"].as_str().unwrap()),
        ];
        let path = s["path"].as_str().unwrap();
        let a = client
            .request(Method::POST, path, &headers, s["body"].to_string())
            .await
            .unwrap();
        records += 1 + a.body["items"].as_array().map_or(0, Vec::len) as i64;
        assert_eq!(
            u64::from(a.status.as_u16()),
            s["expect"].as_u64().unwrap(),
            "{s}: {:?}",
            a.body
        );
        if a.status != StatusCode::OK {
            assert_eq!(a.headers["content-type"], "application/problem+json");
            for k in ["type", "title", "status", "detail", "request_id"] {
                assert!(a.body.get(k).is_some(), "problem lacks {k}: {}", a.body);
            }
        }
        let audit = gw.last_audit().await;
        assert_eq!(audit["status"], s["expect"], "audit of {s}");
        assert_eq!(
            audit["request_id"],
            a.headers["x-request-id"].to_str().unwrap()
        );
    }
    assert_eq!(gw.audit_count().await, records);
    for dataset in ["population", "legal_person", "e_license"] {
        sample(&samples, dataset, 200);
    }
    assert!(
        samples
            .iter()
            .any(|s| s["path"] == "/v1/bundle" && s["expect"] == 200),
        "samples.json has an allowed bundle request"
    );
}

#[tokio::test]
async fn allowed_lookup_returns_only_granted_fields_masked_and_signed() {
    let gw = Gateway::start().await;
    let samples = gw.samples();
    let s = sample(&samples, "population", 200);
    let a = gw
        .client("counter-a")
        .lookup(Some("clerk-007"), &s["body"])
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let record = a.body["record"].as_object().unwrap();
    let mut keys: Vec<&str> = record.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["birth_date", "household_address", "name"]);
    assert_eq!(a.body["masked"], json!(["household_address"]));
    assert!(record["household_address"].as_str().unwrap().contains('*'));
    assert_eq!(a.body["agreement"], "hrss-population-2026");
    assert_eq!(a.body["source"]["department"], "sz-psb");
    assert_eq!(a.body["source"]["connector"], "population-db");

    // The record is in the audit chain at the receipt's position, operator bound.
    let audit = gw.last_audit().await;
    assert_eq!(audit["seq"], a.body["audit"]["seq"]);
    assert_eq!(audit["operator"], "clerk-007");
    assert_eq!(audit["consumer"], "urn:tongban:sz-hrss:counter-01");
    assert_eq!(audit["decision"], "allow");
    assert_eq!(
        audit["fields"],
        json!(["name", "birth_date", "household_address"])
    );
    assert_eq!(audit["cert_fingerprint"].as_str().unwrap().len(), 64);

    // The answer is bound to its record, proven in a tree the served key signed,
    // offline; not after a one-byte change.
    let jwks = gw
        .client("counter-a")
        .request(Method::GET, "/.well-known/jwks.json", &[], String::new())
        .await
        .unwrap()
        .body;
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    assert!(a.body.get("signature").is_none(), "no per-answer signature");
    let key =
        audit::signing::public_key_of(&jwks, jwks["keys"][0]["kid"].as_str().unwrap()).unwrap();
    let included = audit::check_answer(&a.body, &key).expect("the answer is bound and proven");
    let mut tampered = a.body.clone();
    let name = tampered["record"]["name"].as_str().unwrap().to_owned();
    let mut bytes = name.into_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    tampered["record"]["name"] = json!(String::from_utf8_lossy(&bytes));
    assert!(matches!(
        audit::check_answer(&tampered, &key),
        Err(audit::AnswerError::NotBound { .. })
    ));
    let stored: serde_json::Value = serde_json::from_str(&included.record).unwrap();
    assert_eq!(stored["request_id"], a.body["request_id"]);
    assert_eq!(stored, audit);
    let mut forged = a.body["audit"].clone();
    forged["record"] = json!(included.record.replace("clerk-007", "clerk-008"));
    assert!(audit::check_receipt(&forged, &key).is_err());

    // Offline: `tongban verify FILE`, exit 0 then 1.
    let saved = gw.path().join("answer.json");
    std::fs::write(&saved, a.body.to_string()).unwrap();
    let config = gw.config_path();
    let args = [
        "verify",
        saved.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    assert_eq!(gw.tongban(&args).await, 0);
    std::fs::write(&saved, tampered.to_string()).unwrap();
    assert_eq!(gw.tongban(&args).await, 1);
}

#[tokio::test]
async fn each_dataset_is_served() {
    let gw = Gateway::start().await;
    let samples = gw.samples();
    for dataset in ["population", "legal_person", "e_license"] {
        let s = sample(&samples, dataset, 200);
        let a = gw
            .client(s["cert"].as_str().unwrap())
            .lookup(Some("clerk-001"), &s["body"])
            .await
            .unwrap();
        assert_eq!(a.status, StatusCode::OK, "{dataset}: {}", a.body);
        assert_eq!(a.body["dataset"], dataset);
        assert_eq!(a.body["subject"], s["body"]["subject"]);
        assert!(!a.body["record"].as_object().unwrap().is_empty());
    }
}

#[tokio::test]
async fn refusals_are_problems_and_audited() {
    let gw = Gateway::start().await;
    let samples = gw.samples();
    let resident = sample(&samples, "population", 200)["body"]["subject"]
        .as_str()
        .unwrap()
        .to_owned();
    let a_client = gw.client("counter-a");

    // No agreement for this consumer and dataset.
    let b = gw.client("counter-b");
    let company = sample(&samples, "legal_person", 200)["body"]["subject"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = b
        .lookup(
            Some("clerk-1"),
            &body("legal_person", &company, "newborn-registration"),
        )
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.body["reason"], "no-agreement");
    let audit = gw.last_audit().await;
    assert_eq!(
        (audit["decision"].as_str(), audit["status"].as_u64()),
        (Some("deny"), Some(403))
    );
    assert_eq!(audit["subject"], company.as_str());

    // A field the agreement does not grant: refused, not dropped.
    let mut req = body("population", &resident, "social-insurance-enrollment");
    req["fields"] = json!(["name", "ethnicity"]);
    let a = a_client.lookup(Some("clerk-1"), &req).await.unwrap();
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.body["reason"], "field-not-allowed");
    assert!(a.body["detail"].as_str().unwrap().contains("ethnicity"));

    // Bad resident ID: each rule named.
    for (subject, rule) in [
        ("11010519491231002", "length"),
        ("1101051949123100AX", "characters"),
        ("110105194902300021", "birth-date"),
        ("110105194912310021", "check-character"),
    ] {
        let a = a_client
            .lookup(
                Some("clerk-1"),
                &body("population", subject, "social-insurance-enrollment"),
            )
            .await
            .unwrap();
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{subject}");
        assert_eq!(a.body["rule"], rule, "{subject}: {}", a.body);
        let audit = gw.last_audit().await;
        assert_eq!(
            (audit["decision"].as_str(), audit["status"].as_u64()),
            (Some("error"), Some(400))
        );
        assert_eq!(audit["subject"], subject);
    }

    // Bad unified social credit code.
    for (subject, rule) in [
        ("91350100M000100Y44", "check-character"),
        ("91350100M00O100Y43", "characters"),
    ] {
        let a = a_client
            .lookup(
                Some("clerk-1"),
                &body("legal_person", subject, "employer-registration"),
            )
            .await
            .unwrap();
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{subject}");
        assert_eq!(a.body["rule"], rule, "{subject}: {}", a.body);
        assert_eq!(gw.last_audit().await["status"], 400);
    }

    // Unknown subject.
    let absent = sample(&samples, "population", 404)["body"]["subject"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = a_client
        .lookup(
            Some("clerk-1"),
            &body("population", &absent, "social-insurance-enrollment"),
        )
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
    assert_eq!(gw.last_audit().await["status"], 404);

    // Missing X-Operator-Id.
    let a = a_client
        .lookup(
            None,
            &body("population", &resident, "social-insurance-enrollment"),
        )
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.body["type"], "/problems/operator-required");
    let audit = gw.last_audit().await;
    assert_eq!(audit["status"], 400);
    assert_eq!(audit["operator"], Value::Null);

    // Not JSON, not typed as JSON, unknown endpoint: still audited.
    let before = gw.audit_count().await;
    let a = a_client
        .request(
            Method::POST,
            "/v1/lookup",
            &[
                ("x-operator-id", "clerk-1"),
                ("content-type", "application/json"),
            ],
            "{not json".into(),
        )
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let lookup = body("population", &resident, "social-insurance-enrollment").to_string();
    let a = a_client
        .request(
            Method::POST,
            "/v1/lookup",
            &[("x-operator-id", "clerk-1"), ("content-type", "text/plain")],
            lookup,
        )
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", a.body);
    assert_eq!(a.body["type"], "/problems/unsupported-media-type");
    assert_eq!(gw.last_audit().await["status"], 415);
    let a = a_client
        .request(Method::GET, "/v1/nothing", &[], String::new())
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(gw.audit_count().await, before + 3);
}

#[tokio::test]
async fn identity_comes_from_the_certificate_not_headers() {
    let gw = Gateway::start().await;
    let samples = gw.samples();
    let s = sample(&samples, "population", 200);
    // counter-b claims to be counter-a in every header a proxy might use.
    let headers = [
        ("content-type", "application/json"),
        ("x-operator-id", "clerk-1"),
        ("x-tongban-identity", "urn:tongban:sz-hrss:counter-01"),
        ("x-client-identity", "urn:tongban:sz-hrss:counter-01"),
        (
            "x-forwarded-client-cert",
            "URI=urn:tongban:sz-hrss:counter-01",
        ),
    ];
    let a = gw
        .client("counter-b")
        .request(Method::POST, "/v1/lookup", &headers, s["body"].to_string())
        .await
        .unwrap();
    // counter-b's own agreement does not cover this matter: refused as counter-b.
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert_eq!(
        gw.last_audit().await["consumer"],
        "urn:tongban:sz-civil:counter-01"
    );
}

#[tokio::test]
async fn handshake_refuses_no_certificate_and_foreign_ca() {
    let gw = Gateway::start().await;
    let seeded = gw.audit_count().await;
    let samples = gw.samples();
    let s = sample(&samples, "population", 200);

    let none = gw.client_with(None);
    let err = none.lookup(Some("clerk-1"), &s["body"]).await.unwrap_err();
    assert!(!err.is_empty());

    // A certificate with the same identity, from a CA the gateway does not trust.
    let other = certs::Authority::create("Some Other CA", certs::KeyAlg::EcdsaP256).unwrap();
    let identity: certs::Identity = "urn:tongban:sz-hrss:counter-01".parse().unwrap();
    let issued = other.issue_client(&identity, "impostor", 30).unwrap();
    let (cert, key) = (
        gw.path().join("impostor.pem"),
        gw.path().join("impostor.key"),
    );
    std::fs::write(&cert, issued.cert_pem).unwrap();
    std::fs::write(&key, issued.key_pem).unwrap();
    let impostor = gw.client_with(Some((cert, key)));
    let err = impostor
        .lookup(Some("clerk-1"), &s["body"])
        .await
        .unwrap_err();
    assert!(!err.is_empty());

    // Refused handshakes never reach HTTP, so they leave no audit record.
    assert_eq!(gw.audit_count().await, seeded);
    // And a trusted client still works.
    let a = gw
        .client("counter-a")
        .lookup(Some("clerk-1"), &s["body"])
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn audit_chain_verifies_and_names_an_edited_row() {
    let gw = Gateway::start().await;
    // The third lookup's record, after the demo's policy changes.
    let third = gw.audit_head().await + 3;
    let samples = gw.samples();
    for s in &samples {
        let _ = gw
            .client(s["cert"].as_str().unwrap())
            .lookup(Some("clerk-1"), &s["body"])
            .await
            .unwrap();
    }
    let config = gw.config_path();
    let args = ["audit", "verify", "--config", config.to_str().unwrap()];
    assert_eq!(gw.tongban(&args).await, 0);

    // Edit that record in place, as someone with database access might.
    let pool = gw.state_db().await;
    sqlx::query(
        "UPDATE audit_log SET record = replace(record, 'clerk-1', 'clerk-2') WHERE seq = ?1",
    )
    .bind(third)
    .execute(&pool)
    .await
    .unwrap();
    let (code, message) = gw.tongban_output(&args).await;
    assert_eq!(code, 1);
    assert!(
        message.contains(&format!("broken at seq {third}")),
        "{message}"
    );
    let mut conn = pool.acquire().await.unwrap();
    let report = audit::verify_chain(&mut conn).await.unwrap();
    assert_eq!(report.failure.unwrap().seq, third);
}

#[tokio::test]
async fn no_answer_without_an_audit_record() {
    let gw = Gateway::start().await;
    let seeded = gw.audit_head().await;
    let samples = gw.samples();
    let s = sample(&samples, "population", 200);
    let client = gw.client("counter-a");
    assert_eq!(
        client
            .lookup(Some("clerk-1"), &s["body"])
            .await
            .unwrap()
            .status,
        StatusCode::OK
    );

    // The audit store starts refusing writes.
    let pool = gw.state_db().await;
    sqlx::query("CREATE TRIGGER refuse BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        .execute(&pool)
        .await
        .unwrap();
    let a = client.lookup(Some("clerk-1"), &s["body"]).await.unwrap();
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.body["type"], "/problems/audit-unavailable");
    assert!(a.body.get("record").is_none());
    assert_eq!(gw.audit_count().await, seeded + 1);

    // When the store recovers, so does the gateway, and the chain is whole.
    sqlx::query("DROP TRIGGER refuse")
        .execute(&pool)
        .await
        .unwrap();
    let a = client.lookup(Some("clerk-1"), &s["body"]).await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["audit"]["seq"], seeded + 2);
    let config = gw.config_path();
    assert_eq!(
        gw.tongban(&["audit", "verify", "--config", config.to_str().unwrap()])
            .await,
        0
    );
}

#[tokio::test]
async fn ops_endpoints_answer() {
    let gw = Gateway::start().await;
    let ops = gw.running.ops_addr;
    // Something to count: an allowed lookup and a refused one.
    let samples = gw.samples();
    for expect in [200, 403] {
        let s = samples.iter().find(|s| s["expect"] == expect).unwrap();
        let a = gw
            .client(s["cert"].as_str().unwrap())
            .lookup(Some("clerk-1"), &s["body"])
            .await
            .unwrap();
        assert_eq!(a.status.as_u16(), expect);
    }
    for (path, want) in [
        ("/healthz", "\"status\":\"ok\""),
        ("/readyz", "\"ready\":true"),
        ("/metrics", "# TYPE tongban_requests_total counter"),
        (
            "/metrics",
            "decision=\"allow\",route=\"/v1/lookup\",status=\"200\"",
        ),
        (
            "/metrics",
            "decision=\"deny\",route=\"/v1/lookup\",status=\"403\"",
        ),
        ("/metrics", "tongban_audit_batch_records_count"),
        ("/metrics", "tongban_tls_handshakes_total 2"),
        (
            "/metrics",
            "tongban_connector_breaker_state{source=\"population-db\"} 0",
        ),
    ] {
        let mut tcp = tokio::net::TcpStream::connect(ops).await.unwrap();
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        tcp.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        tcp.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{path}: {out}");
        assert!(out.contains(want), "{path}: {out}");
    }
}

#[tokio::test]
async fn bad_usage_exits_2() {
    use clap::Parser as _;
    let err = gateway::cli::Cli::try_parse_from(["tongban", "audit", "frobnicate"]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let gw = Gateway::start().await;
    let missing = gw.path().join("nope.toml");
    assert_eq!(
        gw.tongban(&["audit", "verify", "--config", missing.to_str().unwrap()])
            .await,
        2
    );
}

#[tokio::test]
async fn demo_directory_is_reused() {
    gateway::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let counts = tongban_tests::test_counts();
    let first = gateway::demo::prepare(dir.path(), None, None, &counts)
        .await
        .unwrap();
    assert!(first.created);
    let ca = std::fs::read(dir.path().join("pki/ca.pem")).unwrap();
    let again = gateway::demo::prepare(dir.path(), None, None, &counts)
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(std::fs::read(dir.path().join("pki/ca.pem")).unwrap(), ca);
    for name in ["counter-a", "counter-b", "admin", "auditor"] {
        for ext in ["pem", "key"] {
            assert!(
                dir.path().join(format!("pki/{name}.{ext}")).is_file(),
                "{name}.{ext}"
            );
        }
    }
    assert!(dir.path().join("samples.json").is_file());
}
