//! Scale-out: two real `tongban serve` processes on one PostgreSQL database (policy
//! and audit), from one config file, told apart by `TONGBAN_*` variables (node name,
//! listen and ops addresses). Lookups spread across both succeed; a policy change —
//! by `tongban policy apply`, or through one gateway's admin API — reaches both; the
//! shared audit chain verifies with a record for every 200 (written by the gateway
//! that answered); and SIGKILL on one leaves the other serving. Uses the server at
//! 127.0.0.1:5432 in a database it creates and drops.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit::{AuditStore, Database, Filter};
use gateway::config::{Config, StateDb};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use tongban_tests::{free_addr, test_counts, tongban_binary, Client, PgDatabase, Served};

const COUNTER_B: &str = "urn:tongban:sz-civil:counter-01";

/// A gateway: its node name and counter API address.
#[derive(Debug, Clone, Copy)]
struct Gw {
    name: &'static str,
    addr: SocketAddr,
}

/// One gateway process.
struct Node {
    gw: Gw,
    served: Served,
}

/// A 200 a client got, and from which gateway.
#[derive(Debug, Clone)]
struct Got {
    node: &'static str,
    request_id: String,
    seq: i64,
    hash: String,
}

/// `tongban ARGS` in this process; the exit code and the error, if any.
async fn tongban(args: &[&str]) -> (u8, String) {
    use clap::Parser as _;
    let cli =
        gateway::cli::Cli::try_parse_from(std::iter::once("tongban").chain(args.iter().copied()))
            .unwrap();
    match gateway::cli::run(cli).await {
        Ok(()) => (0, String::new()),
        Err(f) => (f.code(), f.to_string()),
    }
}

fn spawn(bin: &Path, dir: &Path, config: &Path, name: &'static str) -> Node {
    let (addr, ops) = (free_addr(), free_addr());
    let env = [
        ("TONGBAN_NODE", name.to_owned()),
        ("TONGBAN_LISTEN", addr.to_string()),
        ("TONGBAN_OPS_LISTEN", ops.to_string()),
        (
            "TONGBAN_AUDIT_CHECKPOINT_FILE",
            dir.join(format!("checkpoints-{name}.jsonl"))
                .display()
                .to_string(),
        ),
    ];
    let served = Served::spawn(bin, config, &env, dir.join(format!("{name}.log")));
    Node {
        gw: Gw { name, addr },
        served,
    }
}

/// A lookup of `sample` at `node`; the answer, or why there was none.
async fn lookup(
    pki: &Path,
    node: Gw,
    sample: &Value,
    got: &Mutex<Vec<Got>>,
) -> Result<StatusCode, String> {
    let client = Client::connect(pki, node.addr, sample["cert"].as_str().unwrap());
    let a = client.lookup(Some("clerk-7"), &sample["body"]).await?;
    if a.status == StatusCode::OK {
        got.lock().unwrap().push(Got {
            node: node.name,
            request_id: a.body["request_id"].as_str().unwrap().to_owned(),
            seq: a.body["audit"]["seq"].as_i64().unwrap(),
            hash: a.body["audit"]["hash"].as_str().unwrap().to_owned(),
        });
    }
    Ok(a.status)
}

/// Poll `node` until a household-transfer lookup by counter-b gets `want`.
async fn until_status(pki: &Path, node: Gw, subject: &str, want: StatusCode) -> Duration {
    let started = Instant::now();
    let body = json!({"dataset": "population", "subject": subject,
        "matter": "household-transfer", "case_id": "HT-2026-000001", "fields": ["name"]});
    loop {
        let a = Client::connect(pki, node.addr, "counter-b")
            .lookup(Some("clerk-9"), &body)
            .await
            .unwrap();
        if a.status == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} still answers {} after 10 s, wanted {want}: {}",
            node.name,
            a.status,
            a.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The demo directory, its config pointed at PostgreSQL (`tongban-pg.toml`, with a
/// checkpoint file of its own: the demo's belongs to the SQLite chain), the demo
/// agreements applied there with `tongban policy apply` and its roles bound with
/// `tongban policy bind`.
async fn demo_on_postgres(dir: &Path, url: &str) -> PathBuf {
    gateway::install_crypto_provider();
    let any = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    gateway::demo::prepare(dir, any, any, &test_counts())
        .await
        .unwrap();
    let text = std::fs::read_to_string(dir.join("tongban.toml")).unwrap();
    assert!(text.contains("state_db = \"state.db\""));
    assert!(text.contains("[audit]\n"));
    let config = dir.join("tongban-pg.toml");
    std::fs::write(
        &config,
        text.replace("state_db = \"state.db\"", &format!("state_db = \"{url}\""))
            .replace(
                "[audit]\n",
                "[audit]\ncheckpoint_file = \"audit-checkpoints-pg.jsonl\"\n",
            ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let (code, err) = tongban(&[
        "policy",
        "apply",
        "-f",
        dir.join("agreements.toml").to_str().unwrap(),
        "--config",
        config_arg,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let loaded = Config::load(&config).unwrap();
    assert!(matches!(loaded.state_db, StateDb::Postgres(_)));
    for c in gateway::demo::CLIENTS {
        let identity = format!("urn:tongban:{}:{}", c.department, c.system);
        let (code, err) =
            tongban(&["policy", "bind", &identity, c.role, "--config", config_arg]).await;
        assert_eq!(code, 0, "{err}");
    }
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateway_processes_on_one_postgres() {
    let Some(db) = PgDatabase::create("scale").await else {
        return;
    };
    let bin = tongban_binary();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = demo_on_postgres(dir, &db.url()).await;
    let pki = dir.join("pki");
    let ok: Vec<Value> = gateway::demo::load_samples(dir)
        .unwrap()
        .into_iter()
        .filter(|s| {
            s["expect"] == 200 && s["path"] == "/v1/lookup" && s["body"]["dataset"] != "e_license"
        })
        .collect();
    let population = ok
        .iter()
        .find(|s| s["body"]["dataset"] == "population")
        .unwrap();
    let subject = population["body"]["subject"].as_str().unwrap().to_owned();

    let mut a = spawn(&bin, dir, &config, "gw-a");
    let mut b = spawn(&bin, dir, &config, "gw-b");
    for node in [&mut a, &mut b] {
        let client = Client::connect(&pki, node.gw.addr, population["cert"].as_str().unwrap());
        node.served
            .until_serving(&client, &population["body"])
            .await;
    }
    let gws = [a.gw, b.gw];
    let got: Arc<Mutex<Vec<Got>>> = Arc::default();

    // 1. Lookups spread across both: 16 clients, alternating gateways, all succeed.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let (ok, got, pki) = (ok.clone(), got.clone(), pki.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                let node = gws[(t + i) % 2];
                let status = lookup(&pki, node, &ok[i % ok.len()], &got).await;
                assert_eq!(status, Ok(StatusCode::OK), "{}", node.name);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let took = started.elapsed();
    let spread = got.lock().unwrap().clone();
    let on_a = spread.iter().filter(|g| g.node == "gw-a").count();
    println!(
        "640 lookups over 16 clients (a new mTLS connection each) in {} ms: {:.0}/s; gw-a {on_a}, gw-b {}",
        took.as_millis(),
        640.0 / took.as_secs_f64(),
        spread.len() - on_a
    );

    // 2. A policy change by `tongban policy apply` reaches both, then one revoked
    //    through A's admin API reaches B.
    for node in gws {
        until_status(&pki, node, &subject, StatusCode::FORBIDDEN).await;
    }
    let file = dir.join("transfer.toml");
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
approver = "urn:tongban:sz-psb:admin-01"
[agreement.fields]
name = "full"
"#
        ),
    )
    .unwrap();
    let (code, err) = tongban(&[
        "policy",
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let to_a = until_status(&pki, a.gw, &subject, StatusCode::OK).await;
    let to_b = until_status(&pki, b.gw, &subject, StatusCode::OK).await;
    let r = Client::connect(&pki, a.gw.addr, "admin")
        .request(
            Method::DELETE,
            "/admin/v1/agreements/civil-transfer",
            &[("content-type", "application/json")],
            String::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let revoked_a = until_status(&pki, a.gw, &subject, StatusCode::FORBIDDEN).await;
    let revoked_b = until_status(&pki, b.gw, &subject, StatusCode::FORBIDDEN).await;
    println!(
        "policy apply reached gw-a after {} ms, gw-b after {} ms; a revoke through gw-a's admin API: gw-a {} ms, gw-b {} ms",
        to_a.as_millis(),
        to_b.as_millis(),
        revoked_a.as_millis(),
        revoked_b.as_millis()
    );

    // 3. SIGKILL on B under load: A keeps answering every lookup.
    let b_killed = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (ok, got, pki, b_killed) = (ok.clone(), got.clone(), pki.clone(), b_killed.clone());
        tasks.push(tokio::spawn(async move {
            let (mut on_a, mut b_failed) = (0, 0);
            for i in 0..60 {
                let node = gws[(t + i) % 2];
                match lookup(&pki, node, &ok[i % ok.len()], &got).await {
                    Ok(StatusCode::OK) => on_a += usize::from(node.name == "gw-a"),
                    Ok(other) => panic!("{} answered {other}", node.name),
                    // Killed in the middle of the exchange, or refused after.
                    Err(_) if node.name == "gw-b" && b_killed.load(Ordering::SeqCst) => {
                        b_failed += 1;
                    }
                    Err(e) => panic!("{} failed: {e}", node.name),
                }
            }
            (on_a, b_failed)
        }));
    }
    // Kill B once the load is under way.
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.lock().unwrap().len() < spread.len() + 100 {
        assert!(Instant::now() < deadline, "the load does not advance");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b_killed.store(true, Ordering::SeqCst);
    b.served.kill();
    let (mut served_by_a, mut refused_by_b) = (0, 0);
    for t in tasks {
        let (on_a, b_failed) = t.await.unwrap();
        served_by_a += on_a;
        refused_by_b += b_failed;
    }
    assert!(refused_by_b > 0, "no lookup reached B after it was killed");
    println!(
        "SIGKILL on gw-b under load: gw-a answered all of its {served_by_a} lookups, {refused_by_b} sent to gw-b failed"
    );

    // A alone still serves, then stops cleanly.
    for sample in ok.iter().cycle().take(20) {
        assert_eq!(lookup(&pki, a.gw, sample, &got).await, Ok(StatusCode::OK));
    }
    a.served.terminate();
    let status = a.served.exit_status(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(0), "{}", a.served.log_text());

    // 4. One chain, verified; every 200 has its record, written by the gateway that
    //    answered, with the hash the client was given.
    let (code, err) = tongban(&["audit", "verify", "--config", config.to_str().unwrap()]).await;
    assert_eq!(code, 0, "audit verify: {err}");
    let store = AuditStore::open_existing(&Database::Postgres(db.url()))
        .await
        .unwrap();
    let rows = store
        .search(&Filter::default(), 0, 1_000_000)
        .await
        .unwrap();
    let by_seq: std::collections::HashMap<i64, (String, Value)> = rows
        .iter()
        .map(|r| {
            (
                r.seq,
                (r.hash.clone(), serde_json::from_str(&r.record).unwrap()),
            )
        })
        .collect();
    let got = got.lock().unwrap().clone();
    for g in &got {
        let (hash, record) = by_seq
            .get(&g.seq)
            .unwrap_or_else(|| panic!("answered request {} has no record {}", g.request_id, g.seq));
        assert_eq!(hash, &g.hash, "seq {}", g.seq);
        assert_eq!(record["request_id"], g.request_id.as_str());
        assert_eq!(record["node"], g.node, "seq {}", g.seq);
        assert_eq!(record["status"], 200);
    }
    let mut seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "no gaps");
    let count = |node: &str| {
        rows.iter()
            .filter(|r| by_seq[&r.seq].1["node"] == node)
            .count()
    };
    println!(
        "audit: {} records in one chain (gw-a {}, gw-b {}), {} answered 200s all found",
        rows.len(),
        count("gw-a"),
        count("gw-b"),
        got.len()
    );
}
