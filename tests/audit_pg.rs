//! Several gateways sharing one PostgreSQL audit store: one chain, appended under an
//! advisory lock, every record kept, checkpoints signed by each gateway's own key.
//! Uses the server at 127.0.0.1:5432 in a database it creates and drops.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use audit::signing::Signer;
use audit::{
    self, merge_jwks, AuditEntry, AuditLog, AuditSettings, AuditStore, Database, Decision, Filter,
    VerifyOptions,
};
use rustls_pki_types::pem::PemObject as _;
use tongban_tests::PgDatabase;

fn signer() -> Arc<Signer> {
    let pem = Signer::generate_pem().unwrap();
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).unwrap();
    Arc::new(Signer::from_pkcs8(der.secret_pkcs8_der()).unwrap())
}

fn settings(node: &str) -> AuditSettings {
    AuditSettings {
        node: node.into(),
        origin: "tongban.test/audit".into(),
        batch_max: 32,
        checkpoint_every: 50,
        checkpoint_interval: Duration::from_secs(3600),
        checkpoint_file: None,
        metrics: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_gateways_share_one_verifiable_chain() {
    let Some(db) = PgDatabase::create("audit").await else {
        return;
    };
    let state = Database::Postgres(db.url());
    let (key_a, key_b) = (signer(), signer());
    let a = AuditLog::open(&state, Arc::clone(&key_a), settings("gw-a"))
        .await
        .unwrap();
    let b = AuditLog::open(&state, Arc::clone(&key_b), settings("gw-b"))
        .await
        .unwrap();

    // Both gateways append at once.
    let mut tasks = Vec::new();
    for i in 0..400 {
        let (log, node) = if i % 2 == 0 {
            (a.clone(), "gw-a")
        } else {
            (b.clone(), "gw-b")
        };
        tasks.push(tokio::spawn(async move {
            let entry = AuditEntry {
                time: format!("2026-11-28T08:00:{:02}.000000Z", i % 60),
                request_id: format!("r{i}"),
                node: node.into(),
                subject: Some(format!("S{}", i % 7)),
                operator: Some(format!("clerk-{}", i % 3)),
                decision: if i % 5 == 0 {
                    Decision::Deny
                } else {
                    Decision::Allow
                },
                status: 200,
                ..AuditEntry::default()
            };
            log.append(entry).await.unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().seq);
    }
    seqs.sort();
    assert_eq!(
        seqs,
        (1..=400).collect::<Vec<_>>(),
        "one chain, no gaps, no duplicates"
    );

    // Then each alone, one record at a time, long enough to cross a checkpoint:
    // which node seals during the concurrent phase is up to the scheduler.
    for (log, node) in [(&a, "gw-a"), (&b, "gw-b")] {
        for i in 0..60 {
            let entry = AuditEntry {
                request_id: format!("{node}-solo-{i}"),
                node: node.into(),
                status: 200,
                ..AuditEntry::default()
            };
            log.append(entry).await.unwrap();
        }
    }

    let store = a.store().clone();
    let jwks = merge_jwks(&[key_a.jwks(), key_b.jwks()]);
    let opts = VerifyOptions {
        jwks: jwks.clone(),
        ..VerifyOptions::default()
    };
    let report = audit::verify(&store, &opts, |_| {}).await.unwrap();
    assert!(report.failure.is_none(), "{report:?}");
    assert_eq!(report.records, 520);
    // Sealed once 50 or more are unsealed, at the end of a batch of up to 32.
    assert!(
        report.notes >= 5 && report.sealed > 520 - 50 - 32,
        "{report:?}"
    );
    // Each gateway's notes are signed with its own key.
    let cps = store.checkpoints(1, 520).await.unwrap();
    let signed_by = |key: &Signer| {
        cps.iter().any(|c| match &c.seal {
            audit::Seal::Note(n) => audit::tlog::checkpoint::SignedCheckpoint::parse(n)
                .unwrap()
                .verify(key.public_key())
                .is_ok(),
            audit::Seal::Jws(_) => false,
        })
    };
    assert!(signed_by(&key_a) && signed_by(&key_b), "{cps:?}");

    // A checkpoint signed by a key that is not trusted is a failure.
    let only_a = VerifyOptions {
        jwks: key_a.jwks(),
        ..VerifyOptions::default()
    };
    let report = audit::verify(&store, &only_a, |_| {}).await.unwrap();
    let f = report.failure.unwrap();
    assert!(f.reason.contains("does not verify"), "{f:?}");

    // Search works the same on PostgreSQL.
    let mut filter = Filter::default();
    filter.set("subject", "S3").unwrap();
    filter.set("decision", "allow").unwrap();
    let hits = store.search(&filter, 0, 1000).await.unwrap();
    assert!(!hits.is_empty());
    assert!(hits
        .iter()
        .all(|r| r.record.contains("\"subject\":\"S3\"")
            && r.record.contains("\"decision\":\"allow\"")));

    // Editing a record through the shared store is caught at that record.
    let AuditStore::Postgres(pool) = &store else {
        unreachable!()
    };
    // A search column altered, which would hide the record from search and the
    // reports, is caught at its record; then put back from the record.
    let cases = [
        (
            "UPDATE audit_log SET subject = 'S9' WHERE seq = 77",
            77,
            "record 77: column subject says \"S9\" but the record says",
        ),
        (
            "UPDATE audit_log SET operator = NULL WHERE seq = 78",
            78,
            "record 78: column operator is NULL but the record says",
        ),
    ];
    for (sql, seq, want) in cases {
        sqlx::query(sql).execute(pool).await.unwrap();
        let report = audit::verify(&store, &opts, |_| {}).await.unwrap();
        let f = report.failure.unwrap();
        assert_eq!(f.seq, seq, "{f:?}");
        assert!(f.reason.contains(want), "{f:?}");
        sqlx::query("UPDATE audit_log SET subject = record::jsonb->>'subject', operator = record::jsonb->>'operator'")
            .execute(pool)
            .await
            .unwrap();
    }
    let report = audit::verify(&store, &opts, |_| {}).await.unwrap();
    assert!(report.failure.is_none(), "{report:?}");
    sqlx::query("UPDATE audit_log SET record = replace(record, '\"status\":200', '\"status\":500') WHERE seq = 123")
        .execute(pool)
        .await
        .unwrap();
    let report = audit::verify(&store, &opts, |_| {}).await.unwrap();
    let f = report.failure.unwrap();
    assert_eq!(f.seq, 123, "{f:?}");

    drop((a, b, store));
}

/// `tongban audit verify` keeps its outcome on PostgreSQL as on SQLite: the health
/// API's `last_verify` is the latest run.
#[tokio::test]
async fn verify_runs_are_kept_on_postgres() {
    let Some(pg) = PgDatabase::create("verify_runs").await else {
        return;
    };
    let store = AuditStore::open(&Database::Postgres(pg.url()))
        .await
        .unwrap();
    assert_eq!(store.last_verify_run().await.unwrap(), None);
    let mut run = audit::VerifyRun {
        finished_at: "2026-12-05T10:00:00Z".into(),
        ok: true,
        records: 3,
        head_seq: 3,
        summary: "OK: 3 records verified up to seq 3".into(),
    };
    store.add_verify_run(&run).await.unwrap();
    run.ok = false;
    run.summary = "FAILED: audit chain broken at seq 2".into();
    store.add_verify_run(&run).await.unwrap();
    assert_eq!(store.last_verify_run().await.unwrap(), Some(run));
    if let AuditStore::Postgres(p) = &store {
        p.close().await;
    }
}
