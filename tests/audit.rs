//! The security officer's tools end to end: signed checkpoints and `audit verify`
//! against every kind of tampering, search over the CLI and the auditor API, export
//! checked by an independent implementation, the citizen's report, anomalies and
//! retention.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use audit::{self, seal_entry, AuditEntry, AuditStore, Database, Filter};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::SqlitePool;
use tongban_tests::{sample, test_counts, Gateway};

/// A gateway that seals a checkpoint every `every` records.
async fn start(every: u64) -> Gateway {
    gateway::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let any = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut demo = gateway::demo::prepare(dir.path(), any, any, &test_counts())
        .await
        .unwrap();
    demo.config.audit.checkpoint_every = every;
    let running = gateway::server::start(demo.config).await.unwrap();
    Gateway {
        dir,
        running,
        witness: None,
    }
}

/// `n` lookups cycling through the demo samples, one at a time (one record per batch).
async fn traffic(gw: &Gateway, n: usize) -> Vec<(i64, String)> {
    let samples = gw.samples();
    let mut receipts = Vec::new();
    for i in 0..n {
        let s = &samples[i % samples.len()];
        let a = gw
            .client(s["cert"].as_str().unwrap())
            .lookup(Some(&format!("clerk-{:03}", i % 3)), &s["body"])
            .await
            .unwrap();
        if a.status == StatusCode::OK {
            receipts.push((
                a.body["audit"]["seq"].as_i64().unwrap(),
                a.body["audit"]["hash"].as_str().unwrap().to_owned(),
            ));
        }
    }
    receipts
}

fn config_arg(gw: &Gateway) -> String {
    gw.config_path().display().to_string()
}

async fn verify(gw: &Gateway, extra: &[&str]) -> (u8, String) {
    verify_dir(gw.path(), extra).await
}

/// `tongban audit verify` over a demo directory, served or not.
async fn verify_dir(dir: &Path, extra: &[&str]) -> (u8, String) {
    use clap::Parser as _;
    let config = dir.join("tongban.toml").display().to_string();
    let mut argv = vec!["tongban", "audit", "verify", "--config", &config];
    argv.extend_from_slice(extra);
    let cli = gateway::cli::Cli::try_parse_from(argv).unwrap();
    match gateway::cli::run(cli).await {
        Ok(()) => (0, String::new()),
        Err(f) => (f.code(), f.to_string()),
    }
}

async fn pool(path: &Path) -> SqlitePool {
    SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

/// Run `sql` against a fresh copy of the untouched database and verify it.
async fn tampered(dir: &Path, pristine: &Path, sql: &str) -> (u8, String) {
    let db = dir.join("state.db");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    // A fresh file renamed into place, not a copy over the old one: a connection of
    // the previous round that sqlx is still closing in the background holds the old
    // file, and its last checkpoint must not land in this one (seen once on a loaded
    // host: a forged checkpoint reappeared after the restore).
    let fresh = dir.join("state.db.fresh");
    std::fs::copy(pristine, &fresh).unwrap();
    std::fs::rename(&fresh, &db).unwrap();
    let p = pool(&db).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&p)
        .await
        .unwrap();
    p.close().await;
    verify_dir(dir, &[]).await
}

/// Stop the gateway and keep a copy of its state database to tamper with.
async fn stopped(gw: Gateway) -> (tempfile::TempDir, PathBuf) {
    let Gateway { dir, running, .. } = gw;
    running.shutdown().await;
    let db = dir.path().join("state.db");
    // Fold the WAL into the file so that a plain copy holds everything.
    let p = pool(&db).await;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&p)
        .await
        .unwrap();
    p.close().await;
    let pristine = dir.path().join("pristine.db");
    std::fs::copy(&db, &pristine).unwrap();
    (dir, pristine)
}

#[tokio::test]
async fn verify_names_the_first_bad_record_for_every_kind_of_tampering() {
    let gw = start(5).await;
    // The demo's policy changes come first, sealed: record numbers below count from
    // there, and the writer seals every 5 records after it.
    let base = gw.audit_head().await;
    let at = |n: i64| base + n;
    traffic(&gw, 22).await;
    let (code, msg) = verify(&gw, &[]).await;
    assert_eq!(code, 0, "{msg}");
    // The gateway sealed checkpoints in the store and copied them outside it.
    let copies = audit::read_checkpoint_file(&gw.path().join("audit-checkpoints.jsonl")).unwrap();
    assert!(copies.iter().any(|c| c.seq == at(20)), "{copies:?}");

    // Stopped, so that nothing writes while the database is swapped under the tools.
    let (dir, pristine) = stopped(gw).await;
    let gw = dir.path();
    let expect = |(code, msg): (u8, String), seq: i64, word: &str| {
        assert_eq!(code, 1, "{msg}");
        assert!(
            msg.contains(&format!("broken at seq {seq}:")),
            "want seq {seq}: {msg}"
        );
        assert!(msg.contains(word), "want {word:?}: {msg}");
    };
    // Edited in place.
    expect(
        tampered(
            gw,
            &pristine,
            &format!(
                "UPDATE audit_log SET record = replace(record, 'clerk-', 'clerk-9') WHERE seq = {}",
                at(7)
            ),
        )
        .await,
        at(7),
        "edited",
    );
    // Deleted.
    expect(
        tampered(
            gw,
            &pristine,
            &format!("DELETE FROM audit_log WHERE seq = {}", at(7)),
        )
        .await,
        at(7),
        "missing",
    );
    // Reordered: records 7 and 8 swap places.
    expect(
        tampered(gw, &pristine, &format!("UPDATE audit_log SET seq = -1 WHERE seq = {0}; UPDATE audit_log SET seq = {0} WHERE seq = {1}; UPDATE audit_log SET seq = {1} WHERE seq = -1", at(7), at(8))).await,
        at(7),
        "reordered",
    );
    // Inserted: a copy of record 3 appended as 23.
    expect(
        tampered(gw, &pristine, &format!("INSERT INTO audit_log (seq, hash, record) SELECT {}, hash, record FROM audit_log WHERE seq = {}", at(23), at(3))).await,
        at(23),
        "reordered",
    );
    // Inserted in the middle with a correctly chained forged record: the records after
    // it no longer follow.
    // The forged record itself is not the leaf the stored tree holds: named first.
    let forged = forged_insert(&pristine, at(8)).await;
    expect(
        tampered(gw, &pristine, &forged).await,
        at(8),
        "audit_tree row",
    );
    // Truncated after a checkpoint: the tail is gone, the seal at 20 remains.
    expect(
        tampered(
            gw,
            &pristine,
            &format!("DELETE FROM audit_log WHERE seq > {}", at(16)),
        )
        .await,
        at(17),
        "truncated",
    );
    // … and with the stored checkpoints deleted too, the copy outside the store tells.
    expect(
        tampered(
            gw,
            &pristine,
            &format!(
                "DELETE FROM audit_log WHERE seq > {0}; DELETE FROM audit_checkpoint WHERE seq > {0}",
                at(16)
            ),
        )
        .await,
        at(17),
        "truncated",
    );
    // Rewritten with every hash recomputed: the stored tree's leaf no longer matches…
    let rewritten = rewrite_from(&pristine, at(7)).await;
    expect(
        tampered(gw, &pristine, &rewritten).await,
        at(7),
        "audit_tree row",
    );
    // … and with the stored tree gone too, only the signed note can tell: its root is
    // not the recomputed one, and the note before it (at 5) still holds.
    expect(
        tampered(
            gw,
            &pristine,
            &format!("{rewritten} DELETE FROM audit_tree;"),
        )
        .await,
        at(6),
        "changed after it was signed",
    );
    // A changed audit_tree row would serve false proofs: named by index and record.
    let idx = audit::tlog::tree::stored_index(u64::try_from(at(7) - 1).unwrap());
    expect(
        tampered(
            gw,
            &pristine,
            &format!("UPDATE audit_tree SET hash = zeroblob(32) WHERE idx = {idx}"),
        )
        .await,
        at(7),
        &format!("audit_tree row {idx} (record {}", at(7)),
    );
    // A forged note (the size changed: the signature no longer matches).
    expect(
        tampered(gw, &pristine, &format!("UPDATE audit_checkpoint SET checkpoint = replace(checkpoint, char(10) || '{0}' || char(10), char(10) || '{1}' || char(10)) WHERE seq = {0}", at(10), at(11))).await,
        at(10),
        "does not verify",
    );
    // A note of a wrong root signed with the gateway's own key: its copy outside the
    // store holds another root at that size…
    let resigned = resigned_note(&pristine, &dir.path().join("tongban.toml"), at(10)).await;
    expect(
        tampered(gw, &pristine, &resigned).await,
        at(10),
        "the log forked",
    );
    // … and without the copy, its root is not the tree's: the records after the note
    // before it are named.
    let copy = dir.path().join("audit-checkpoints.jsonl");
    std::fs::rename(&copy, dir.path().join("copy.jsonl")).unwrap();
    expect(
        tampered(gw, &pristine, &resigned).await,
        at(6),
        "is not the one the signed note of tree size",
    );
    std::fs::rename(dir.path().join("copy.jsonl"), &copy).unwrap();

    // Untouched again: verifies, and a range verifies on its own.
    tampered(gw, &pristine, "SELECT 1").await;
    let (code, msg) = verify_dir(
        gw,
        &["--from", &at(6).to_string(), "--to", &at(12).to_string()],
    )
    .await;
    assert_eq!(code, 0, "{msg}");
}

/// SQL that replaces the stored note of tree size `size` by one of a wrong root,
/// signed with the gateway's own key.
async fn resigned_note(db: &Path, config: &Path, size: i64) -> String {
    use audit::tlog::checkpoint::{body, SignedCheckpoint};
    let p = pool(db).await;
    let text: String = sqlx::query_scalar("SELECT checkpoint FROM audit_checkpoint WHERE seq = ?1")
        .bind(size)
        .fetch_one(&p)
        .await
        .unwrap();
    let note = SignedCheckpoint::parse(&text).unwrap();
    let config = gateway::config::Config::load(config).unwrap();
    let key = audit::signing::Signer::load(&config.signing_key).unwrap();
    let signer = audit::tlog::note::NoteSigner::new(&note.origin, key.key_pair()).unwrap();
    let forged = body(&note.origin, note.size, &audit::tlog::tree::Hash([7; 32]));
    let forged = signer.sign(&forged).unwrap();
    format!(
        "UPDATE audit_checkpoint SET checkpoint = {} WHERE seq = {size}",
        sql_text(Some(&forged))
    )
}

/// SQL that renumbers records `at..` up by one and puts a well-chained forged record at `at`.
async fn forged_insert(db: &Path, at: i64) -> String {
    let p = pool(db).await;
    let prev: String = sqlx::query_scalar("SELECT hash FROM audit_log WHERE seq = ?1")
        .bind(at - 1)
        .fetch_one(&p)
        .await
        .unwrap();
    let entry = AuditEntry {
        request_id: "forged".into(),
        status: 200,
        ..AuditEntry::default()
    };
    let (record, hash) = seal_entry(at, &prev, &entry).unwrap();
    // As the writer would append it: only the chain tells.
    format!(
        "UPDATE audit_log SET seq = -seq WHERE seq >= {at};
         UPDATE audit_log SET seq = 1 - seq WHERE seq < 0;
         INSERT INTO audit_log (seq, hash, record) VALUES ({at}, '{hash}', {});",
        sql_text(Some(&record)),
    )
}

/// A SQL literal: a quoted string or NULL.
fn sql_text(v: Option<&str>) -> String {
    v.map_or_else(
        || "NULL".to_owned(),
        |v| format!("'{}'", v.replace('\'', "''")),
    )
}

/// SQL that edits record `from` and recomputes the hash of every record from there on.
async fn rewrite_from(db: &Path, from: i64) -> String {
    let p = pool(db).await;
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, record FROM audit_log WHERE seq >= ?1 ORDER BY seq")
            .bind(from - 1)
            .fetch_all(&p)
            .await
            .unwrap();
    let mut prev: String = sqlx::query_scalar("SELECT hash FROM audit_log WHERE seq = ?1")
        .bind(from - 1)
        .fetch_one(&p)
        .await
        .unwrap();
    let mut sql = String::new();
    for (seq, record) in rows.into_iter().filter(|(s, _)| *s >= from) {
        let mut stored: audit::StoredRecord = serde_json::from_str(&record).unwrap();
        if seq == from {
            stored.entry.operator = Some("someone-else".into());
        }
        let (record, hash) = seal_entry(seq, &prev, &stored.entry).unwrap();
        // Past the last indexed segment: no index entry to follow the record, so
        // only the checkpoint tells.
        sql.push_str(&format!(
            "UPDATE audit_log SET hash = '{hash}', record = {} WHERE seq = {seq};\n",
            sql_text(Some(&record)),
        ));
        prev = hash;
    }
    sql
}

/// The search index is outside the hash, and search, the citizen's report and the
/// anomaly report find records of indexed segments through it: altering an entry hid
/// an access while `audit verify` said OK. Now verify checks every indexed segment's
/// entries against its records.
#[tokio::test]
async fn verify_names_a_search_index_entry_altered_to_hide_an_access() {
    let gw = start(1000).await;
    let samples = gw.samples();
    let s = sample(&samples, "population", 200);
    let subject = s["body"]["subject"].as_str().unwrap().to_owned();
    let a = gw
        .client(s["cert"].as_str().unwrap())
        .lookup(Some("clerk-042"), &s["body"])
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::OK);
    let seq = a.body["audit"]["seq"].as_i64().unwrap();
    traffic(&gw, 3).await;
    let (code, msg) = verify(&gw, &[]).await;
    assert_eq!(code, 0, "{msg}");

    let (dir, pristine) = stopped(gw).await;
    let gw = dir.path();
    let accesses = |db: PathBuf, subject: String| async move {
        let store = AuditStore::open_existing(&Database::Sqlite(db))
            .await
            .unwrap();
        let report = audit::subject_report(&store, &subject, &Filter::default())
            .await
            .unwrap();
        report.accesses.iter().map(|x| x.seq).collect::<Vec<_>>()
    };
    assert!(accesses(pristine.clone(), subject.clone())
        .await
        .contains(&seq));

    // Its record is past the last indexed segment: search reads it itself, so no
    // index entry can hide it. Index the store in segments of 2, as a busy gateway
    // would have, then tamper with the index.
    let p = pool(&pristine).await;
    sqlx::query("UPDATE audit_index_segment SET records = 2")
        .execute(&p)
        .await
        .unwrap();
    p.close().await;
    assert!(audit::index_sealed_segments(&pristine).unwrap() > 0);
    assert!(accesses(pristine.clone(), subject.clone())
        .await
        .contains(&seq));

    // The repro: the access is moved to another (made-up) subject's index entry.
    let hide = format!(
        "UPDATE audit_index SET value = '110101194912310000' WHERE col = 4 AND value = '{subject}'"
    );
    let (code, msg) = tampered(gw, &pristine, &hide).await;
    // The report no longer finds it: only verify can tell.
    assert!(!accesses(gw.join("state.db"), subject.clone())
        .await
        .contains(&seq));
    assert_eq!(code, 1, "{msg}");
    assert!(
        msg.contains(&format!("broken at seq {seq}: record {seq}: the search index says subject \"110101194912310000\" but the record says \"{subject}\"")),
        "{msg}"
    );
    // The failed run is kept for the health page, with where it stopped.
    let store = audit::AuditStore::open(&audit::Database::Sqlite(gw.join("state.db")))
        .await
        .unwrap();
    let run = store
        .last_verify_run()
        .await
        .unwrap()
        .expect("the run is kept");
    assert!(!run.ok && msg.contains(&run.summary), "{run:?} vs {msg}");
    assert!(
        run.summary.contains(&format!("broken at seq {seq}")),
        "{run:?}"
    );
    assert!(
        run.summary
            .contains(&format!("({} records verified before it)", run.records)),
        "{run:?}"
    );
    if let audit::AuditStore::Sqlite(p) = &store {
        // Closed before the next round replaces the file under it.
        p.close().await;
    }

    // Every other kind of index tampering, at that record.
    let cases = [
        (
            format!("DELETE FROM audit_index WHERE col = 2 AND seq = {seq}"),
            format!("record {seq} is missing from the search index (operator \"clerk-042\")"),
        ),
        (
            format!("UPDATE audit_index SET value = '2020-01-01T00:00:00.000000Z' WHERE col = 0 AND seq = {seq}"),
            format!("record {seq}: the search index says time \"2020-01-01T00:00:00.000000Z\" but the record says"),
        ),
        // Moved to the next record; when that record has the same subject in the
        // same segment, its own entry gives way first (the key is unique).
        (
            format!(
                "DELETE FROM audit_index WHERE col = 4 AND seq = {next} AND value = '{subject}';
                 UPDATE audit_index SET seq = {next} WHERE col = 4 AND seq = {seq}",
                next = seq + 1
            ),
            format!("record {seq} is missing from the search index (subject \"{subject}\")"),
        ),
    ];
    for (sql, want) in cases {
        let (code, msg) = tampered(gw, &pristine, &sql).await;
        assert_eq!(code, 1, "{sql}: {msg}");
        assert!(
            msg.contains(&format!("broken at seq {seq}: {want}")),
            "{sql}: {msg}"
        );
    }
    // Untouched: verifies.
    let (code, msg) = tampered(gw, &pristine, "SELECT 1").await;
    assert_eq!(code, 0, "{msg}");
}

#[tokio::test]
async fn auditor_api_searches_with_pages_and_refuses_other_roles() {
    let gw = start(1000).await;
    traffic(&gw, 12).await;
    let auditor = gw.client("auditor");

    // All lookups by clerk-001, two per page, followed to the end.
    let store = AuditStore::open_existing(&Database::Sqlite(gw.path().join("state.db")))
        .await
        .unwrap();
    let mut want = Filter::default();
    want.set("operator", "clerk-001").unwrap();
    let expected: Vec<i64> = store
        .search(&want, 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert!(expected.len() >= 4, "{expected:?}");
    let mut seen = Vec::new();
    let mut next = Some("/audit/v1/records?operator=clerk-001&limit=2".to_owned());
    while let Some(path) = next {
        let a = auditor.get(&path).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        for r in a.body["records"].as_array().unwrap() {
            assert_eq!(r["operator"], "clerk-001");
            assert_eq!(r["hash"].as_str().unwrap().len(), 64);
            seen.push(r["seq"].as_i64().unwrap());
        }
        next = a.body["next"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, expected);

    // Several filters at once, and one record by its number.
    let mut allowed = Filter::default();
    allowed.set("decision", "allow").unwrap();
    // A lookup's record (the demo's policy changes come first, and name no subject).
    allowed.set("operator", "clerk-001").unwrap();
    let first = store.search(&allowed, 0, 1).await.unwrap().remove(0);
    let rec: Value = serde_json::from_str(&first.record).unwrap();
    let seq = first.seq;
    let path = format!(
        "/audit/v1/records?subject={}&dataset={}&decision={}&consumer={}&matter={}&case_id={}&from=2000-01-01&to=2999-01-01",
        rec["subject"].as_str().unwrap(),
        rec["dataset"].as_str().unwrap(),
        rec["decision"].as_str().unwrap(),
        rec["consumer"].as_str().unwrap(),
        rec["matter"].as_str().unwrap(),
        rec["case_id"].as_str().unwrap(),
    );
    let a = auditor.get(&path).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["seq"] == seq));
    let a = auditor.get(&format!("/audit/v1/records/{seq}")).await;
    assert_eq!(a.body["request_id"], rec["request_id"]);
    let a = auditor.get("/audit/v1/records?to=2000-01-01").await;
    assert_eq!(a.body["count"], 0);

    // Bad parameters name themselves.
    let a = auditor.get("/audit/v1/records?decision=maybe").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.body["detail"].as_str().unwrap().starts_with("decision:"),
        "{}",
        a.body
    );
    let a = auditor.get("/audit/v1/records?limit=0").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    // A counter system is not an auditor; the refusal and the search are both audited.
    let a = gw
        .client("counter-a")
        .request(
            Method::GET,
            "/audit/v1/records?subject=X1",
            &[],
            String::new(),
        )
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.body["type"], "/problems/role-required");
    let last = gw.last_audit().await;
    assert_eq!(last["decision"], "deny");
    assert_eq!(last["status"], 403);
    assert_eq!(last["detail"]["audit_search"]["subject"], "X1");
    assert_eq!(last["consumer"], "urn:tongban:sz-hrss:counter-01");

    // The CLI takes the same filters; bad ones are usage errors.
    let config = config_arg(&gw);
    let c = config.as_str();
    assert_eq!(
        gw.tongban(&[
            "audit",
            "search",
            "--config",
            c,
            "--operator",
            "clerk-001",
            "--format",
            "text"
        ])
        .await,
        0
    );
    let (code, msg) = gw
        .tongban_output(&["audit", "search", "--config", c, "--from", "last tuesday"])
        .await;
    assert_eq!(code, 2);
    assert!(msg.contains("--from"), "{msg}");
}

fn python_has(modules: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn independent_check(file: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("verify_export.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn export_verifies_with_an_independent_implementation() {
    if !python_has("rfc8785, cryptography") {
        // CI installs them (.ci/run); a developer without them is told, not failed.
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with rfc8785 and cryptography is required in CI"
        );
        eprintln!("SKIPPED: pip install rfc8785 cryptography to run the independent check");
        return;
    }
    let gw = start(4).await;
    // The demo's policy changes come first.
    let records = gw.audit_head().await + 14;
    traffic(&gw, 14).await;
    let config = config_arg(&gw);
    for (format, name) in [("jsonl", "export.jsonl"), ("csv", "export.csv")] {
        let out = gw.path().join(name);
        let code = gw
            .tongban(&[
                "audit",
                "export",
                "--config",
                &config,
                "--format",
                format,
                "--out",
                out.to_str().unwrap(),
            ])
            .await;
        assert_eq!(code, 0);
        let (ok, said) = independent_check(&out);
        assert!(ok, "{format}: {said}");
        assert!(said.starts_with(&format!("OK {records} records")), "{said}");
    }

    // One changed character in a record is caught by the independent check.
    let jsonl = gw.path().join("export.jsonl");
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let tampered = text.replacen("clerk-001", "clerk-101", 1);
    assert_ne!(text, tampered);
    let bad = gw.path().join("tampered.jsonl");
    std::fs::write(&bad, tampered).unwrap();
    let (ok, said) = independent_check(&bad);
    assert!(!ok, "{said}");
    assert!(said.contains("FAILED at seq"), "{said}");

    // A range starts from the hash of the record before it.
    let part = gw.path().join("part.jsonl");
    let code = gw
        .tongban(&[
            "audit",
            "export",
            "--config",
            &config,
            "--format",
            "jsonl",
            "--from",
            "5",
            "--to",
            "12",
            "--out",
            part.to_str().unwrap(),
        ])
        .await;
    assert_eq!(code, 0);
    let (ok, said) = independent_check(&part);
    assert!(ok && said.starts_with("OK 8 records"), "{said}");
}

#[tokio::test]
async fn subject_report_tells_who_looked_and_why() {
    let gw = start(1000).await;
    let samples = gw.samples();
    let s = sample(&samples, "population", 200);
    let subject = s["body"]["subject"].as_str().unwrap();
    let a = gw
        .client("counter-a")
        .lookup(Some("clerk-042"), &s["body"])
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::OK);
    // A refused attempt (a matter the agreement does not cover) shows too.
    let mut marketing = s["body"].clone();
    marketing["matter"] = json!("marketing");
    let denied = gw
        .client("counter-a")
        .lookup(Some("clerk-7"), &marketing)
        .await
        .unwrap();
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    traffic(&gw, 6).await;

    let store = AuditStore::open_existing(&Database::Sqlite(gw.path().join("state.db")))
        .await
        .unwrap();
    let report = audit::subject_report(&store, subject, &Filter::default())
        .await
        .unwrap();
    let mine: Vec<_> = report
        .accesses
        .iter()
        .filter(|x| x.operator.as_deref() == Some("clerk-042"))
        .collect();
    assert_eq!(mine.len(), 1, "{report:#?}");
    let x = mine[0];
    assert_eq!(x.department, "sz-hrss");
    assert_eq!(x.system, "urn:tongban:sz-hrss:counter-01");
    assert_eq!(x.dataset.as_deref(), Some("population"));
    assert_eq!(x.matter, s["body"]["matter"].as_str().map(str::to_owned));
    assert_eq!(x.case_id, s["body"]["case_id"].as_str().map(str::to_owned));
    assert!(x.time.ends_with("+08:00"), "{}", x.time);
    let mut fields = a.body["record"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect::<Vec<_>>();
    fields.sort();
    let mut got = x.fields.clone();
    got.sort();
    assert_eq!(got, fields);
    assert!(report
        .accesses
        .iter()
        .any(|x| x.operator.as_deref() == Some("clerk-7")
            && x.decision == audit::Decision::Deny
            && x.fields.is_empty()));
    assert!(report.accesses.iter().all(|x| x.seq > 0));
    let text = report.to_text();
    assert!(
        text.contains("clerk-042") && text.contains("refused"),
        "{text}"
    );

    let config = config_arg(&gw);
    for format in ["text", "json"] {
        assert_eq!(
            gw.tongban(&["audit", "subject", subject, "--config", &config, "--format", format])
                .await,
            0
        );
    }
}

#[tokio::test]
async fn report_finds_denial_bursts_and_case_fan_out() {
    let gw = start(1000).await;
    let samples = gw.samples();
    let s = samples
        .iter()
        .find(|s| s["cert"] == "counter-b" && s["expect"] == 403)
        .unwrap();
    for _ in 0..4 {
        let a = gw
            .client("counter-b")
            .lookup(Some("clerk-7"), &s["body"])
            .await
            .unwrap();
        assert_eq!(a.status, StatusCode::FORBIDDEN);
    }
    // One case id, a subject from each dataset.
    for sample in samples.iter().filter(|x| x["expect"] == 200) {
        let mut body = sample["body"].clone();
        body["case_id"] = json!("SB-2026-FANOUT");
        gw.client(sample["cert"].as_str().unwrap())
            .lookup(Some("clerk-8"), &body)
            .await
            .unwrap();
    }
    let store = AuditStore::open_existing(&Database::Sqlite(gw.path().join("state.db")))
        .await
        .unwrap();
    let rules = audit::AnomalyRules {
        denials_burst: 4,
        denials_window_secs: 3600,
        subjects_per_case: 2,
        ..audit::AnomalyRules::default()
    };
    let found = audit::anomalies(&store, &Filter::default(), &rules)
        .await
        .unwrap();
    let burst = found.iter().find(|a| a.rule == "denial-burst").unwrap();
    assert_eq!(burst.who, "urn:tongban:sz-civil:counter-01");
    assert_eq!(burst.count, 4);
    assert!(
        found
            .iter()
            .any(|a| a.rule == "case-fan-out" && a.who == "SB-2026-FANOUT"),
        "{found:#?}"
    );

    // Thresholds come from the config; a bad one is a usage error naming it.
    let config = config_arg(&gw);
    assert_eq!(
        gw.tongban(&["audit", "report", "--config", &config]).await,
        0
    );
    assert_eq!(
        gw.tongban(&["audit", "report", "--config", &config, "--format", "json"])
            .await,
        0
    );
    let text = std::fs::read_to_string(gw.config_path()).unwrap();
    std::fs::write(
        gw.config_path(),
        format!("{text}\n[audit.anomaly]\nservice_hours = \"18:00-08:00\"\n"),
    )
    .unwrap();
    let (code, msg) = gw
        .tongban_output(&["audit", "report", "--config", &config])
        .await;
    assert_eq!(code, 2);
    assert!(msg.contains("audit.anomaly.service_hours"), "{msg}");
}

#[tokio::test]
async fn archived_records_still_verify_and_the_chain_goes_on() {
    let gw = start(5).await;
    // The demo's policy changes come first, sealed; the writer seals every 5 after.
    let base = gw.audit_head().await;
    traffic(&gw, 13).await;
    let config = config_arg(&gw);
    // Everything so far is old enough; the archive stops at the last checkpoint
    // (the 10th lookup).
    let (code, msg) = gw
        .tongban_output(&[
            "audit",
            "archive",
            "--config",
            &config,
            "--before",
            "2999-01-01",
        ])
        .await;
    assert_eq!(code, 0, "{msg}");
    let archive = gw.path().join(format!(
        "audit-archive/audit-000000000001-{:012}.jsonl.gz",
        base + 10
    ));
    assert!(archive.is_file());
    assert_eq!(gw.audit_count().await, 3);
    traffic(&gw, 3).await;
    let (code, msg) = verify(&gw, &[]).await;
    assert_eq!(code, 0, "{msg}");

    // Nothing sealed is old enough now: a second run archives nothing.
    let (code, _) = gw
        .tongban_output(&[
            "audit",
            "archive",
            "--config",
            &config,
            "--before",
            "2000-01-01",
        ])
        .await;
    assert_eq!(code, 0);

    // A changed archive file is caught.
    let bytes = std::fs::read(&archive).unwrap();
    let mut changed = bytes.clone();
    let n = changed.len();
    changed[n / 2] ^= 1;
    std::fs::write(&archive, changed).unwrap();
    let (code, msg) = verify(&gw, &[]).await;
    assert_eq!(code, 1);
    assert!(
        msg.contains("broken at seq 1:") && msg.contains("archive"),
        "{msg}"
    );
    std::fs::write(&archive, bytes).unwrap();

    // Without retention configured and no --before, archiving is a usage error.
    let (code, msg) = gw
        .tongban_output(&["audit", "archive", "--config", &config])
        .await;
    assert_eq!(code, 2);
    assert!(msg.contains("retention_days"), "{msg}");
}

/// The tree of `records` (exact bytes), recomputed: its root.
fn root_of(records: &[String]) -> audit::tlog::tree::Hash {
    use audit::tlog::tree;
    let mut known = tree::KnownHashes::default();
    let leaves: Vec<_> = records
        .iter()
        .map(|r| tree::leaf_hash(r.as_bytes()))
        .collect();
    tree::append(0, &leaves, &mut known).unwrap().root
}

fn hashes_of(v: &Value) -> Vec<audit::tlog::tree::Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| audit::tlog::tree::hash_from_base64(h.as_str().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn auditors_follow_the_tree_with_signed_checkpoints_proofs_and_entries() {
    use audit::tlog::checkpoint::SignedCheckpoint;
    use audit::tlog::tree;
    let gw = start(1000).await;
    let samples = gw.samples();
    let s = samples.iter().find(|s| s["expect"] == 200).unwrap();
    let counter = gw.client(s["cert"].as_str().unwrap());
    let looked = counter.lookup(Some("clerk-001"), &s["body"]).await.unwrap();
    assert_eq!(looked.status, StatusCode::OK, "{}", looked.body);
    let receipt = &looked.body["audit"];
    let index = receipt["index"].as_u64().unwrap();
    // The receipt holds the record as an object; its canonical JSON is the leaf's bytes.
    let record = audit::canonical::map_to_vec(receipt["record"].as_object().unwrap()).unwrap();
    let record = String::from_utf8(record).unwrap();

    let auditor = gw.client("auditor");
    // The key from the well-known JWKS verifies the served checkpoint.
    let jwks = auditor.get("/.well-known/jwks.json").await.body;
    let kid = jwks["keys"][0]["kid"].as_str().unwrap();
    let key = audit::signing::public_key_of(&jwks, kid).unwrap();
    let checkpoint = |at: String| {
        let auditor = &auditor;
        let key = &key;
        async move {
            let a = auditor.get(&at).await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.text);
            assert_eq!(a.headers["content-type"], "text/plain; charset=utf-8");
            let c = SignedCheckpoint::parse(&a.text).unwrap();
            c.verify(key).unwrap();
            // The text answer's receipt is in its header: its record binds the text.
            use base64::Engine as _;
            let header = a.headers["audit-receipt"].to_str().unwrap();
            let json = base64::engine::general_purpose::STANDARD
                .decode(header)
                .unwrap();
            let receipt: serde_json::Value = serde_json::from_slice(&json).unwrap();
            let included = audit::check_receipt(&receipt, key).unwrap();
            let record: serde_json::Value = serde_json::from_str(&included.record).unwrap();
            assert_eq!(
                record["answer_sha256"].as_str(),
                Some(audit::answer_sha256(a.text.as_bytes()).as_str())
            );
            c
        }
    };
    let first = checkpoint("/audit/v1/checkpoint".into()).await;
    assert!(
        first.size > index,
        "the lookup is in the tree of {}",
        first.size
    );

    // The lookup's record is proven in it by the served inclusion proof.
    let p = auditor
        .get(&format!(
            "/audit/v1/proof/inclusion?index={index}&size={}",
            first.size
        ))
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert_eq!(
        (p.body["index"].as_u64(), p.body["size"].as_u64()),
        (Some(index), Some(first.size))
    );
    let proof = hashes_of(&p.body["inclusion"]);
    let leaf = tree::leaf_hash(record.as_bytes());
    tree::check_inclusion(&proof, first.size, first.root, index, leaf).unwrap();
    let edited = tree::leaf_hash(record.replace("clerk-001", "clerk-002").as_bytes());
    assert!(tree::check_inclusion(&proof, first.size, first.root, index, edited).is_err());

    // The log grows; the new checkpoint is consistent with the first, a wrong proof is not.
    traffic(&gw, 5).await;
    let second = checkpoint("/audit/v1/checkpoint".into()).await;
    assert!(second.size > first.size);
    let consistency = |old: u64| {
        let auditor = &auditor;
        let size = second.size;
        async move {
            let a = auditor
                .get(&format!(
                    "/audit/v1/proof/consistency?old={old}&size={size}"
                ))
                .await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.body);
            assert_eq!(a.body["old"].as_u64(), Some(old));
            hashes_of(&a.body["consistency"])
        }
    };
    let good = consistency(first.size).await;
    tree::check_consistency(&good, second.size, second.root, first.size, first.root).unwrap();
    let wrong = consistency(first.size - 1).await;
    assert!(
        tree::check_consistency(&wrong, second.size, second.root, first.size, first.root).is_err()
    );
    assert!(
        tree::check_consistency(&good, second.size, second.root, first.size, second.root).is_err()
    );

    // The entries give the exact bytes: the tree recomputed from them has the signed root.
    let mut records = Vec::new();
    let mut next = Some("/audit/v1/entries?from=1&limit=3".to_owned());
    while let Some(path) = next.filter(|_| (records.len() as u64) < second.size) {
        let a = auditor.get(&path).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        for e in a.body["entries"].as_array().unwrap() {
            assert_eq!(e["seq"].as_u64(), Some(records.len() as u64 + 1));
            records.push(e["record"].as_str().unwrap().to_owned());
        }
        next = a.body["next"].as_str().map(str::to_owned);
    }
    assert_eq!(root_of(&records[..second.size as usize]), second.root);
    assert_eq!(records[index as usize], record);

    // Malformed numbers are 400s naming the parameter; well-formed ones beyond the
    // tree are 404s, as a missing record is, naming it too.
    for (path, status, name) in [
        ("/audit/v1/proof/inclusion?index=x".to_owned(), 400, "index"),
        ("/audit/v1/proof/inclusion?size=3".to_owned(), 400, "index"),
        (
            format!("/audit/v1/proof/inclusion?index={}", second.size + 100),
            404,
            "index",
        ),
        (
            "/audit/v1/proof/inclusion?index=0&size=999999".to_owned(),
            404,
            "size",
        ),
        ("/audit/v1/proof/consistency?old=0".to_owned(), 400, "old"),
        ("/audit/v1/proof/consistency?old=-1".to_owned(), 400, "old"),
        (
            "/audit/v1/proof/consistency?old=3&size=2".to_owned(),
            404,
            "old",
        ),
        ("/audit/v1/entries?from=0".to_owned(), 400, "from"),
        (
            "/audit/v1/entries?from=1&limit=5000".to_owned(),
            400,
            "limit",
        ),
        ("/audit/v1/checkpoint?x=1".to_owned(), 400, "x"),
    ] {
        let a = auditor.get(&path).await;
        assert_eq!(a.status.as_u16(), status, "{path}: {}", a.body);
        let detail = a.body["detail"].as_str().unwrap();
        if status == 400 {
            assert_eq!(a.body["type"], "/problems/bad-request", "{path}");
            assert!(detail.starts_with(&format!("{name}:")), "{path}: {detail}");
        } else {
            assert_eq!(a.body["type"], "/problems/no-such-endpoint", "{path}");
            assert!(detail.contains(&format!("({name}:")), "{path}: {detail}");
        }
    }

    // Not an auditor: refused, and the refusal is audited with what was asked.
    for path in [
        "/audit/v1/checkpoint",
        "/audit/v1/proof/inclusion?index=0",
        "/audit/v1/proof/consistency?old=1",
        "/audit/v1/entries?from=1",
    ] {
        let a = counter
            .request(Method::GET, path, &[], String::new())
            .await
            .unwrap();
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(a.body["type"], "/problems/role-required");
    }
    let last = gw.last_audit().await;
    assert_eq!(
        (last["decision"].as_str(), last["status"].as_u64()),
        (Some("deny"), Some(403))
    );
    assert_eq!(last["detail"]["audit_follow"]["from"], "1");

    // The CLI reads the same from the store; bad numbers are usage errors.
    let config = config_arg(&gw);
    let c = config.as_str();
    assert_eq!(gw.tongban(&["audit", "checkpoint", "--config", c]).await, 0);
    assert_eq!(
        gw.tongban(&["audit", "prove", "--config", c, "--index", "0"])
            .await,
        0
    );
    assert_eq!(
        gw.tongban(&["audit", "consistency", "--config", c, "--old", "1"])
            .await,
        0
    );
    assert_eq!(
        gw.tongban(&["audit", "prove", "--config", c, "--index", "99999"])
            .await,
        2
    );
    assert_eq!(
        gw.tongban(&["audit", "consistency", "--config", c, "--old", "0"])
            .await,
        2
    );
    let (code, msg) = verify(&gw, &[]).await;
    assert_eq!(code, 0, "{msg}");
}
