//! Witnesses end to end: the demo's in-process witness (a second department's key)
//! cosigns the gateway's checkpoints in the background; `audit verify` says how far
//! the log is witnessed; a history rewritten by whoever holds the gateway's key and
//! its database is refused by the witness as a fork and shown in `/readyz`, and a
//! witness that is down never stops a lookup.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use audit::tlog::note::{Verifier, TYPE_ED25519};
use serde_json::Value;
use tongban_tests::{eventually, sample, Gateway};

async fn lookups(gw: &Gateway, n: usize) {
    let client = gw.client("counter-a");
    let body = sample(&gw.samples(), "population", 200)["body"].clone();
    for _ in 0..n {
        let a = client.lookup(Some("clerk-031"), &body).await.unwrap();
        assert_eq!(a.status, 200, "{}", a.body);
    }
}

fn witness_check(ready: &Value) -> Value {
    ready["checks"]["witness:witness.sz-amr"].clone()
}

async fn start() -> Gateway {
    Gateway::start_with(|c| c.audit.witness_interval_ms = 50).await
}

#[tokio::test]
async fn the_witness_cosigns_and_verify_reports_it() {
    let gw = start().await;
    lookups(&gw, 3).await;
    let head = gw.audit_head().await;
    eventually("the witness to cosign the head", || async {
        witness_check(&gw.readyz().await)["cosigned"].as_i64() >= Some(head)
    })
    .await;
    let ready = gw.readyz().await;
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(witness_check(&ready)["fork"], false);

    let config = gw.config_path();
    let (code, out) = gw
        .tongban_output(&["audit", "verify", "--config", config.to_str().unwrap()])
        .await;
    assert_eq!(code, 0, "{out}");
    // What `audit verify` reports: the kept cosignature holds and matches the tree.
    let app = &gw.running.app;
    let log = Verifier::new(
        &gateway::audit_config::origin(&app.config),
        TYPE_ED25519,
        app.signer.public_key(),
    )
    .unwrap();
    let witness = gateway::config::witness_verifier(&app.config.audit.witnesses[0]).unwrap();
    let witnessed = audit::witnessed(app.audit.store(), &log, &witness)
        .await
        .unwrap();
    assert!(
        matches!(witnessed, audit::Witnessed::Upto { size, .. } if size >= u64::try_from(head).unwrap()),
        "{witnessed:?}"
    );
    gw.running.shutdown().await;
}

#[tokio::test]
async fn a_rewritten_history_is_refused_by_the_witness_and_shown() {
    let gw = start().await;
    lookups(&gw, 4).await;
    let head = gw.audit_head().await;
    eventually("the witness to cosign the head", || async {
        witness_check(&gw.readyz().await)["cosigned"].as_i64() >= Some(head)
    })
    .await;
    let Gateway {
        dir,
        running,
        witness,
    } = gw;
    let config = running.app.config.clone();
    running.shutdown().await;

    // Whoever holds the key and the database starts the log again, cosignatures
    // and checkpoint copies gone, and lets the gateway sign the new history.
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    for table in [
        "audit_log",
        "audit_tree",
        "audit_checkpoint",
        "audit_cosignature",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
            .execute(&db)
            .await
            .unwrap();
    }
    db.close().await;
    let _ = std::fs::remove_file(dir.path().join("audit-checkpoints.jsonl"));
    let running = gateway::server::start(config).await.unwrap();
    let gw = Gateway {
        dir,
        running,
        witness,
    };
    // Longer than what was witnessed, so the witness is asked to extend it.
    lookups(&gw, usize::try_from(head).unwrap() + 2).await;
    eventually("the witness to refuse the rewrite", || async {
        witness_check(&gw.readyz().await)["fork"] == true
    })
    .await;
    let ready = gw.readyz().await;
    // Shown, and never in the way of lookups.
    assert_eq!(ready["ready"], true, "{ready}");
    assert!(
        witness_check(&ready)["last_error"]
            .as_str()
            .unwrap()
            .contains("FORK"),
        "{ready}"
    );
    let state: Value =
        serde_json::from_slice(&std::fs::read(gw.path().join("witness-state.json")).unwrap())
            .unwrap();
    let cosigned = state["logs"].as_object().unwrap().values().next().unwrap()["size"].clone();
    assert_eq!(
        cosigned.as_i64(),
        Some(head),
        "the witness kept the honest size: {state}"
    );
    lookups(&gw, 1).await;
    gw.running.shutdown().await;
}

#[tokio::test]
async fn a_witness_that_is_down_delays_only_its_cosignature() {
    let gw = start().await;
    let Gateway {
        dir,
        running,
        witness,
    } = gw;
    witness.unwrap().shutdown().await;
    let gw = Gateway {
        dir,
        running,
        witness: None,
    };
    lookups(&gw, 3).await;
    eventually("the failures to show", || async {
        witness_check(&gw.readyz().await)["failures"].as_i64() > Some(0)
    })
    .await;
    let ready = gw.readyz().await;
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(witness_check(&ready)["cosigned"], 0, "{ready}");
    gw.running.shutdown().await;
}
