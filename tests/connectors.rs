//! Connectors end to end: the SQL connector against real PostgreSQL and MariaDB, the
//! HTTP connector against the demo department service and against an upstream the
//! test controls (slow, garbage, killed and back), verified e-licences, and bundles —
//! every request and every bundle item audited.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway::config::{Config, ResilienceConfig};
use gateway::server::start;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use sqlx::any::AnyPoolOptions;
use sqlx::AssertSqlSafe;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tongban_tests::{eventually, sample, test_counts, Answer, Client, Gateway};

/// Builds a demo gateway, lets `edit` change its config, and starts it.
async fn start_with(edit: impl FnOnce(&mut Config, &Path)) -> Gateway {
    gateway::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let any = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut demo = gateway::demo::prepare(dir.path(), any, any, &test_counts())
        .await
        .unwrap();
    gateway::demo::start_department(&mut demo).await.unwrap();
    edit(&mut demo.config, dir.path());
    let running = start(demo.config).await.unwrap();
    Gateway {
        dir,
        running,
        witness: None,
    }
}

/// The last `n` audit records, oldest first.
async fn audit_tail(gw: &Gateway, n: i64) -> Vec<Value> {
    let pool = gw.state_db().await;
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT record FROM audit_log ORDER BY seq DESC LIMIT ?")
            .bind(n)
            .fetch_all(&pool)
            .await
            .unwrap();
    rows.iter()
        .rev()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect()
}

/// The record of bundle item `item` among `records` (items finish in any order).
fn of_item<'a>(records: &'a [Value], item: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["detail"]["item"] == item)
        .unwrap_or_else(|| panic!("no audit record for item {item}"))
}

fn bundle_sample<'a>(samples: &'a [Value], bundle: &str) -> &'a Value {
    samples
        .iter()
        .find(|s| s["path"] == "/v1/bundle" && s["body"]["bundle"] == bundle)
        .unwrap_or_else(|| panic!("samples.json has no {bundle} bundle"))
}

async fn post(client: &Client, path: &str, body: &Value) -> Answer {
    client
        .request(
            Method::POST,
            path,
            &[
                ("content-type", "application/json"),
                ("x-operator-id", "clerk-009"),
            ],
            body.to_string(),
        )
        .await
        .unwrap()
}

fn license_lookup(gw: &Gateway) -> Value {
    sample(&gw.samples(), "e_license", 200)["body"].clone()
}

// ---------------------------------------------------------------- HTTP connector

#[tokio::test]
async fn demo_department_serves_verified_licences_over_mtls() {
    let gw = Gateway::start().await;
    let a = post(&gw.client("counter-b"), "/v1/lookup", &license_lookup(&gw)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["source"]["connector"], "e-license-api");
    assert_eq!(a.body["verified"], true, "{}", a.body);
    assert!(a.body.get("verification_error").is_none());
    assert!(a.body["record"]["issuer_signature"].is_string());
    let audit = gw.last_audit().await;
    assert_eq!(audit["status"], 200);
    assert_eq!(audit["detail"]["verified"], true);

    // The answer, "verified" included, is signed.
    let file = gw.path().join("answer.json");
    std::fs::write(&file, a.body.to_string()).unwrap();
    let config = gw.config_path();
    let verify = [
        "verify",
        file.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    assert_eq!(gw.tongban(&verify).await, 0);

    let ready = gw.readyz().await;
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["checks"]["source:e-license-api"]["health"], "ok");
    assert_eq!(ready["checks"]["source:e-license-api"]["breaker"], "closed");
}

#[tokio::test]
async fn tampered_licence_is_returned_unverified_and_audited() {
    let gw = Gateway::start().await;
    let body = license_lookup(&gw);
    let id = body["subject"].as_str().unwrap().to_owned();
    // Someone with write access to the department's database edits a licence.
    let db = gw.path().join("data/e_license.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let changed = sqlx::query(
        "UPDATE licenses SET holder_name = holder_name || '（改）' WHERE license_id = ?",
    )
    .bind(&id)
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(changed.rows_affected(), 1);
    pool.close().await;

    let a = post(&gw.client("counter-b"), "/v1/lookup", &body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["verified"], false, "{}", a.body);
    let reason = a.body["verification_error"].as_str().unwrap();
    assert!(reason.contains("does not verify"), "{reason}");
    assert!(a.body["record"]["holder_name"]
        .as_str()
        .unwrap()
        .ends_with("（改）"));
    let audit = gw.last_audit().await;
    assert_eq!(audit["detail"]["verified"], false, "{audit}");
    assert_eq!(audit["detail"]["verification_error"], reason);
}

/// What the controllable upstream does.
const NORMAL: u8 = 0;
const SLOW: u8 = 1;
const GARBAGE: u8 = 2;

/// A department API on loopback with the demo department's certificate, whose
/// behaviour the test switches, and which can be killed (listener and open
/// connections) and brought back on the same port.
struct Upstream {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    tls: Arc<rustls::ServerConfig>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Upstream {
    async fn start(dir: &Path) -> Self {
        let pki = dir.join("pki");
        let tls = certs::server_config(
            &pki.join("department.pem"),
            &pki.join("department.key"),
            &[pki.join("ca.pem")],
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut up = Upstream {
            addr: listener.local_addr().unwrap(),
            mode: Arc::new(AtomicU8::new(NORMAL)),
            tls,
            task: None,
        };
        up.serve(listener);
        up
    }

    fn serve(&mut self, listener: TcpListener) {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&self.tls));
        let mode = Arc::clone(&self.mode);
        self.task = Some(tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, mode) = (acceptor.clone(), Arc::clone(&mode));
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let mode = mode.load(Ordering::SeqCst);
                            async move {
                                Ok::<_, std::convert::Infallible>(
                                    answer(mode, req.uri().path()).await,
                                )
                            }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        }));
    }

    fn kill(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    async fn revive(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn answer(mode: u8, path: &str) -> Response<Full<Bytes>> {
    let body = match mode {
        SLOW => {
            // Far beyond the gateway's time-out; the gateway gives up first.
            tokio::time::sleep(Duration::from_secs(30)).await;
            "{}".to_owned()
        }
        GARBAGE => "{\"license\": {\"type\": \"营业执照\", \"status\": ".to_owned(),
        _ => json!({
            "license": {"type": "营业执照", "status": "valid", "holder": {"id": "91350100M000100Y43", "name": "测试公司"},
                        "issuer": {"name": "深圳市市场监督管理局"}, "issued_on": "2020-01-01",
                        "valid_until": null, "content": "{}", "file": {"sha256": "00"}},
            "signature": {"alg": "Ed25519", "value": "AAAA"},
            "path": path,
        })
        .to_string(),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    r
}

/// A gateway whose e-licence source is a controllable upstream (with the demo
/// department's certificate), with a short time-out and a breaker that opens after two
/// outages and probes after a second.
async fn gateway_on_upstream() -> (Gateway, Upstream) {
    gateway::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let any = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut demo = gateway::demo::prepare(dir.path(), any, any, &test_counts())
        .await
        .unwrap();
    let upstream = Upstream::start(dir.path()).await;
    let source = demo
        .config
        .sources
        .iter_mut()
        .find(|s| s.name == "e-license-api")
        .unwrap();
    source.url = format!("https://{}", upstream.addr);
    source.resilience = ResilienceConfig {
        timeout_ms: 300,
        max_in_flight: 16,
        retries: 1,
        retry_budget_percent: 100,
        breaker_failures: 2,
        breaker_cooldown_ms: 1000,
    };
    let running = start(demo.config).await.unwrap();
    (
        Gateway {
            dir,
            running,
            witness: None,
        },
        upstream,
    )
}

fn problem_type(a: &Answer) -> &str {
    a.body["type"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn slow_upstream_is_a_504_and_garbage_a_502_both_audited() {
    let (gw, upstream) = gateway_on_upstream().await;
    let client = gw.client("counter-b");
    let body = license_lookup(&gw);

    let ok = post(&client, "/v1/lookup", &body).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    // The upstream's record is not signed by a trusted issuer.
    assert_eq!(ok.body["verified"], false);

    upstream.mode.store(SLOW, Ordering::SeqCst);
    let slow = post(&client, "/v1/lookup", &body).await;
    assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT, "{}", slow.body);
    assert_eq!(problem_type(&slow), "/problems/upstream-timeout");
    assert_eq!(slow.headers["content-type"], "application/problem+json");
    let audit = gw.last_audit().await;
    assert_eq!(audit["status"], 504);
    assert!(
        audit["reason"]
            .as_str()
            .unwrap()
            .starts_with("upstream-timeout: "),
        "{audit}"
    );
    // Upstream internals reach neither the caller nor its record (which the caller
    // holds in the receipt): they are in the gateway's log under the request id.
    assert!(!slow.body.to_string().contains("300 ms"), "{}", slow.body);

    upstream.mode.store(GARBAGE, Ordering::SeqCst);
    let bad = post(&client, "/v1/lookup", &body).await;
    assert_eq!(bad.status, StatusCode::BAD_GATEWAY, "{}", bad.body);
    assert_eq!(problem_type(&bad), "/problems/upstream-bad-answer");
    let audit = gw.last_audit().await;
    assert_eq!(audit["status"], 502);
    assert!(
        audit["reason"]
            .as_str()
            .unwrap()
            .starts_with("upstream-bad-answer: "),
        "{audit}"
    );
    assert!(!bad.body.to_string().contains("not JSON"), "{}", bad.body);
}

#[tokio::test]
async fn killed_upstream_opens_the_breaker_and_recovery_closes_it() {
    let (gw, mut upstream) = gateway_on_upstream().await;
    let client = gw.client("counter-b");
    let body = license_lookup(&gw);
    assert_eq!(
        post(&client, "/v1/lookup", &body).await.status,
        StatusCode::OK
    );

    upstream.kill();
    // Two outages open the breaker; from then on the gateway answers 503 at once.
    for _ in 0..2 {
        let a = post(&client, "/v1/lookup", &body).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
        assert_eq!(problem_type(&a), "/problems/upstream-unavailable");
    }
    let open = post(&client, "/v1/lookup", &body).await;
    assert_eq!(open.status, StatusCode::SERVICE_UNAVAILABLE);
    // The record names the kind; why (the breaker is open) is in the gateway's log.
    let audit = gw.last_audit().await;
    assert!(
        audit["reason"]
            .as_str()
            .unwrap()
            .starts_with("upstream-unavailable: "),
        "{audit}"
    );
    let ready = gw.readyz().await;
    assert_eq!(ready["ready"], false, "{ready}");
    let source = &ready["checks"]["source:e-license-api"];
    assert_ne!(source["health"], "ok");
    assert!(
        ["open", "half-open"].contains(&source["breaker"].as_str().unwrap()),
        "{ready}"
    );

    // Back on the same port: after the cool-down a probe succeeds and closes it.
    upstream.revive().await;
    eventually("the breaker to close", || async {
        post(&client, "/v1/lookup", &body).await.status == StatusCode::OK
    })
    .await;
    let ready = gw.readyz().await;
    assert_eq!(ready["checks"]["source:e-license-api"]["breaker"], "closed");
    assert_eq!(ready["ready"], true);
}

// ---------------------------------------------------------------- validation

#[tokio::test]
async fn sql_in_subjects_is_refused_before_any_source_and_audited() {
    let gw = Gateway::start().await;
    let client = gw.client("counter-a");
    let evil = [
        "110101' OR '1'='1",
        "11010519491231002X'; DROP TABLE residents; --",
        "1; DELETE FROM residents --",
        "\" OR \"\"=\"",
    ];
    for subject in evil {
        let body = json!({"dataset": "population", "subject": subject,
                          "matter": "social-insurance-enrollment", "case_id": "SB-2026-000123"});
        let a = post(&client, "/v1/lookup", &body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{subject}: {}", a.body);
        assert_eq!(problem_type(&a), "/problems/invalid-identifier");
        assert!(a.body["rule"].is_string());
        let audit = gw.last_audit().await;
        assert_eq!(audit["status"], 400);
        assert_eq!(audit["subject"], subject);
    }
    let bundle = json!({"bundle": "company-opening", "subject": "91350100M000100Y43' --",
                        "matter": "company-opening", "case_id": "SB-2026-000900"});
    let a = post(&client, "/v1/bundle", &bundle).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert_eq!(problem_type(&a), "/problems/invalid-identifier");
    assert_eq!(gw.last_audit().await["path"], "/v1/bundle");
    // The population table is intact: the first sample still answers.
    let s = sample(&gw.samples(), "population", 200)["body"].clone();
    assert_eq!(post(&client, "/v1/lookup", &s).await.status, StatusCode::OK);
}

// ---------------------------------------------------------------- bundles

#[tokio::test]
async fn newborn_bundle_fetches_certificate_and_both_parents_each_audited() {
    let gw = Gateway::start().await;
    let samples = gw.samples();
    let s = bundle_sample(&samples, "newborn");
    let before = gw.audit_count().await;
    let a = post(&gw.client("counter-b"), "/v1/bundle", &s["body"]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["complete"], true, "{}", a.body);
    let items = a.body["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|i| i["item"].as_str().unwrap()).collect();
    assert_eq!(names, ["birth_certificate", "mother", "father"]);
    let certificate = &items[0];
    assert_eq!(certificate["verified"], true);
    let content: Value =
        serde_json::from_str(certificate["record"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(items[1]["subject"], content["mother_id"]);
    assert_eq!(items[2]["subject"], content["father_id"]);
    for item in items {
        assert_eq!(item["status"], 200, "{item}");
        assert!(item["agreement"].as_str().is_some());
    }

    // One record per item, then the bundle's own, whose receipt the answer carries.
    assert_eq!(gw.audit_count().await, before + 4);
    let records = audit_tail(&gw, 4).await;
    for item in items {
        let record = of_item(&records, item["item"].as_str().unwrap());
        assert_eq!(record["detail"]["bundle"], "newborn");
        assert_eq!(record["detail"]["item"], item["item"]);
        assert_eq!(record["subject"], item["subject"]);
        assert_eq!(record["seq"], item["audit"]["seq"]);
        assert_eq!(record["path"], "/v1/bundle");
        assert_eq!(record["decision"], "allow");
        assert_eq!(record["matter"], "newborn-registration");
    }
    let own = &records[3];
    assert_eq!(own["seq"], a.body["audit"]["seq"]);
    assert_eq!(own["detail"]["complete"], true);
    assert_eq!(own["request_id"], a.body["request_id"]);

    // The whole answer is signed.
    let file = gw.path().join("bundle.json");
    std::fs::write(&file, a.body.to_string()).unwrap();
    let config = gw.config_path();
    let verify = [
        "verify",
        file.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    assert_eq!(gw.tongban(&verify).await, 0);
}

#[tokio::test]
async fn company_opening_finds_the_licence_by_holder() {
    let gw = Gateway::start().await;
    let samples = gw.samples();
    let s = bundle_sample(&samples, "company-opening");
    let a = post(&gw.client("counter-a"), "/v1/bundle", &s["body"]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["complete"], true, "{}", a.body);
    let items = a.body["items"].as_array().unwrap();
    let company = s["body"]["subject"].as_str().unwrap();
    assert_eq!(
        items[0]["record"]["legal_representative_id"],
        items[2]["subject"]
    );
    assert_eq!(items[1]["record"]["holder_id"], company);
    assert_eq!(items[1]["record"]["license_type"], "营业执照");
    assert_eq!(items[1]["verified"], true);
    let records = audit_tail(&gw, 4).await;
    let licence = of_item(&records, "business_licence");
    assert_eq!(licence["detail"]["license_type"], "营业执照");
    assert_eq!(licence["subject"], company);
}

#[tokio::test]
async fn bundle_with_one_failing_item_reports_it_in_place() {
    let gw = Gateway::start().await;
    let samples = gw.samples();
    let s = bundle_sample(&samples, "newborn");
    let client = gw.client("counter-b");
    let first = post(&client, "/v1/bundle", &s["body"]).await;
    let mother = first.body["items"][1]["subject"]
        .as_str()
        .unwrap()
        .to_owned();
    // The mother's household record disappears from the population database.
    let db = gw.path().join("data/population.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("DELETE FROM residents WHERE id_number = ?")
        .bind(&mother)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let a = post(&client, "/v1/bundle", &s["body"]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["complete"], false);
    let statuses: Vec<u64> = a.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 404, 200]);
    let failed = &a.body["items"][1];
    assert_eq!(failed["problem"]["type"], "/problems/not-found");
    assert!(failed.get("record").is_none());
    let records = audit_tail(&gw, 4).await;
    let failed = of_item(&records, "mother");
    assert_eq!(failed["status"], 404);
    assert_eq!(failed["subject"], mother);
    assert_eq!(failed["decision"], "allow");
    assert_eq!(records[3]["detail"]["complete"], false);
    assert_eq!(records[3]["detail"]["items"][1]["status"], 404);
}

#[tokio::test]
async fn bundle_refusals_and_dependencies() {
    let gw = Gateway::start().await;
    let samples = gw.samples();
    let s = bundle_sample(&samples, "company-opening");
    // counter-b has no agreement for any of it: every item refused or not tried.
    let a = post(&gw.client("counter-b"), "/v1/bundle", &s["body"]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let items = a.body["items"].as_array().unwrap();
    assert_eq!(items[0]["status"], 403);
    assert_eq!(items[0]["problem"]["reason"], "no-agreement");
    assert_eq!(items[1]["status"], 403);
    assert_eq!(items[2]["status"], 424);
    assert_eq!(items[2]["problem"]["type"], "/problems/dependency-failed");
    let records = audit_tail(&gw, 4).await;
    assert_eq!(of_item(&records, "company")["decision"], "deny");
    assert_eq!(of_item(&records, "legal_representative")["status"], 424);

    // Unknown bundles and missing operators are plain 400s, audited once.
    let before = gw.audit_count().await;
    let mut unknown = s["body"].clone();
    unknown["bundle"] = json!("wedding");
    let a = post(&gw.client("counter-a"), "/v1/bundle", &unknown).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.body["detail"].as_str().unwrap().contains("newborn"),
        "{}",
        a.body
    );
    let a = gw
        .client("counter-a")
        .request(
            Method::POST,
            "/v1/bundle",
            &[("content-type", "application/json")],
            s["body"].to_string(),
        )
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(problem_type(&a), "/problems/operator-required");
    assert_eq!(gw.audit_count().await, before + 2);
}

// ---------------------------------------------------------------- SQL servers

fn unique(kind: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("tongban_e2e_{kind}_{}_{nanos}", std::process::id())
}

async fn admin_exec(url: &str, sql: String) {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("{url} must be running: {e}"));
    sqlx::query(AssertSqlSafe(sql))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

const PG: &str = "postgres://postgres@127.0.0.1:5432";
const MARIA: &str = "mysql://root@127.0.0.1:3306";

/// Points the demo's population source at PostgreSQL and its legal-person source at
/// MariaDB, copies the demo's first resident and legal person there, and looks both
/// up over mTLS.
async fn through_real_servers(pg_db: String, my_db: String) {
    let pg_url = format!("{PG}/{pg_db}");
    let my_url = format!("{MARIA}/{my_db}");
    admin_exec(
        &pg_url,
        "CREATE TABLE residents (id_number VARCHAR(18) PRIMARY KEY, full_name TEXT, sex TEXT, \
         born DATE)"
            .into(),
    )
    .await;
    admin_exec(
        &my_url,
        "CREATE TABLE companies (code VARCHAR(18) PRIMARY KEY, name VARCHAR(200), capital BIGINT)"
            .into(),
    )
    .await;
    let gw = start_with(|config, _| {
        for s in config.sources.iter_mut() {
            match s.name.as_str() {
                "population-db" => s.url = pg_url.clone(),
                "legal-person-db" => s.url = my_url.clone(),
                _ => {}
            }
        }
        for d in config.datasets.iter_mut() {
            match d.source.as_str() {
                "population-db" => {
                    d.query = "SELECT full_name, sex, CAST(born AS TEXT) AS born FROM residents \
                               WHERE id_number = $1"
                        .into();
                    columns(
                        d,
                        &[
                            ("name", "full_name"),
                            ("sex", "sex"),
                            ("birth_date", "born"),
                        ],
                    );
                }
                "legal-person-db" => {
                    d.query = "SELECT name, capital FROM companies WHERE code = ?".into();
                    columns(d, &[("name", "name"), ("registered_capital", "capital")]);
                }
                _ => {}
            }
        }
    })
    .await;

    // The rows to copy, from the demo's own SQLite files.
    let data = gw.path().join("data");
    let read = |file: &str| format!("sqlite://{}?mode=ro", data.join(file).display());
    let population = sqlx::SqlitePool::connect(&read("population.db"))
        .await
        .unwrap();
    let resident: (String, String, String, String) =
        sqlx::query_as("SELECT id_number, full_name, sex, date_of_birth FROM residents LIMIT 1")
            .fetch_one(&population)
            .await
            .unwrap();
    let legal = sqlx::SqlitePool::connect(&read("legal_person.db"))
        .await
        .unwrap();
    let company: (String, String, i64) = sqlx::query_as(
        "SELECT credit_code, entity_name, registered_capital_yuan FROM legal_persons LIMIT 1",
    )
    .fetch_one(&legal)
    .await
    .unwrap();
    // Demo values are generated text without quotes; these rows are fixtures.
    admin_exec(
        &pg_url,
        format!(
            "INSERT INTO residents VALUES ('{}', '{}', '{}', '{}')",
            resident.0, resident.1, resident.2, resident.3
        ),
    )
    .await;
    admin_exec(
        &my_url,
        format!(
            "INSERT INTO companies VALUES ('{}', '{}', {})",
            company.0, company.1, company.2
        ),
    )
    .await;

    let client = gw.client("counter-a");
    let person = json!({"dataset": "population", "subject": resident.0,
                        "matter": "social-insurance-enrollment", "case_id": "SB-2026-000777",
                        "fields": ["name", "birth_date"]});
    let a = post(&client, "/v1/lookup", &person).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["record"]["name"], resident.1.as_str());
    assert_eq!(a.body["record"]["birth_date"], resident.3.as_str());
    let firm = json!({"dataset": "legal_person", "subject": company.0,
                      "matter": "employer-registration", "case_id": "SB-2026-000778",
                      "fields": ["name"]});
    let a = post(&client, "/v1/lookup", &firm).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["record"]["name"], company.1.as_str());
    assert_eq!(gw.last_audit().await["status"], 200);
    let ready = gw.readyz().await;
    for source in ["source:population-db", "source:legal-person-db"] {
        assert_eq!(ready["checks"][source]["health"], "ok", "{ready}");
    }
}

/// Reads `d`'s fields from the columns `pairs` name; its other fields are left
/// unmapped (never returned by the source).
fn columns(d: &mut gateway::config::DatasetConfig, pairs: &[(&str, &str)]) {
    for f in d.fields.iter_mut() {
        f.from = pairs
            .iter()
            .find(|(name, _)| *name == f.name)
            .map(|(_, column)| column.to_string());
    }
}

#[tokio::test]
async fn postgresql_and_mariadb_sources_serve_lookups() {
    let (pg_db, my_db) = (unique("pg"), unique("my"));
    admin_exec(
        &format!("{PG}/postgres"),
        format!("CREATE DATABASE {pg_db}"),
    )
    .await;
    admin_exec(
        &format!("{MARIA}/mysql"),
        format!("CREATE DATABASE {my_db}"),
    )
    .await;
    let outcome = tokio::spawn(through_real_servers(pg_db.clone(), my_db.clone())).await;
    // Dropped whatever happened; the gateway's pool may still hold connections, so
    // PostgreSQL is told to end them.
    admin_exec(
        &format!("{PG}/postgres"),
        format!("DROP DATABASE {pg_db} WITH (FORCE)"),
    )
    .await;
    admin_exec(&format!("{MARIA}/mysql"), format!("DROP DATABASE {my_db}")).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_request_is_still_audited() {
    let (gw, upstream) = gateway_on_upstream().await;
    let client = gw.client("counter-b");
    let body = license_lookup(&gw);
    upstream.mode.store(SLOW, Ordering::SeqCst);
    let before = gw.audit_count().await;
    // The client gives up long before the gateway's 300 ms source time-out and
    // drops its connection; the gateway has already asked the source.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(100),
        post(&client, "/v1/lookup", &body),
    )
    .await;
    assert!(gave_up.is_err(), "the request should still be running");
    eventually("the abandoned request's audit record", || async {
        gw.audit_count().await > before
    })
    .await;
    let audit = gw.last_audit().await;
    assert_eq!(audit["status"], 504, "{audit}");
}
