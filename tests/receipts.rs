//! Receipts checked from outside: every kind of answer the live gateway gives is
//! bound to its audit record and proven in a signed checkpoint, by `tongban verify`
//! and by `tests/verify_receipt.py` (hashlib, rfc8785 and cryptography only, written
//! from docs/audit.md); a consistency proof between two checkpoints the answers
//! carried checks in Python too. A changed byte fails both.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use audit::tlog::tree::{self, KnownHashes};
use audit::{AuditStore, Database};
use http::Method;
use serde_json::{json, Value};
use tongban_tests::{sample, Answer, Client, Gateway};

fn python_ready() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import rfc8785, cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    // CI installs them (.ci/run); a developer without them is told, not failed.
    assert!(
        ok || std::env::var_os("CI").is_none(),
        "python3 with rfc8785 and cryptography is required in CI"
    );
    ok
}

/// `verify_receipt.py ARGS`: success and what it printed.
fn python(args: &[&Path]) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("verify_receipt.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn send(client: &Client, method: Method, path: &str, body: Option<&Value>) -> Answer {
    let headers = [
        ("content-type", "application/json"),
        ("x-operator-id", "clerk-021"),
    ];
    let body = body.map(Value::to_string).unwrap_or_default();
    client.request(method, path, &headers, body).await.unwrap()
}

fn save(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, v.to_string()).unwrap();
    p
}

/// The same answer with one character of its first string at `pointer` changed.
fn one_changed(answer: &Value, pointer: &str) -> Value {
    let mut v = answer.clone();
    let s = v
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in {answer}"));
    let mut text: Vec<char> = s.as_str().unwrap().chars().collect();
    let last = text.len() - 1;
    text[last] = if text[last] == 'X' { 'Y' } else { 'X' };
    *s = json!(text.into_iter().collect::<String>());
    v
}

#[tokio::test]
async fn every_kind_of_answer_is_bound_and_proven_for_outside_checkers() {
    let gw = Gateway::start().await;
    let counter = gw.client("counter-a");
    let samples = gw.samples();
    let jwks = send(&counter, Method::GET, "/.well-known/jwks.json", None)
        .await
        .body;
    let dir = gw.path();
    let jwks_file = save(dir, "jwks.json", &jwks);
    let config = gw.config_path();
    let config = config.to_str().unwrap();

    let lookup = sample(&samples, "population", 200);
    let refused = sample(&samples, "population", 403);
    let bundle = samples
        .iter()
        .find(|s| s["path"] == "/v1/bundle")
        .expect("a bundle sample");
    let mut answers = vec![
        (
            "lookup",
            send(&counter, Method::POST, "/v1/lookup", Some(&lookup["body"])).await,
            "/record/name",
        ),
        (
            "refusal",
            send(&counter, Method::POST, "/v1/lookup", Some(&refused["body"])).await,
            "/detail",
        ),
        (
            "bundle",
            send(&counter, Method::POST, "/v1/bundle", Some(&bundle["body"])).await,
            "/items/0/audit/record/request_id",
        ),
        (
            "admin",
            send(
                &gw.client("admin"),
                Method::GET,
                "/admin/v1/agreements",
                None,
            )
            .await,
            "/agreements/0/agreement/id",
        ),
        (
            "auditor",
            send(
                &gw.client("auditor"),
                Method::GET,
                "/audit/v1/records?limit=2",
                None,
            )
            .await,
            "/records/0/request_id",
        ),
    ];
    answers.push((
        "jwks",
        send(&counter, Method::GET, "/.well-known/jwks.json", None).await,
        "/keys/0/x",
    ));
    let independent = python_ready();

    for (what, a, pointer) in &answers {
        assert!(
            a.body["audit"]["checkpoint"].is_string(),
            "{what}: {}",
            a.body
        );
        let file = save(dir, &format!("{what}.json"), &a.body);
        let (code, out) = gw
            .tongban_output(&["verify", file.to_str().unwrap(), "--config", config])
            .await;
        assert_eq!(code, 0, "{what}: tongban verify: {out}");
        if independent {
            let (ok, out) = python(&[Path::new("answer"), &file, &jwks_file]);
            assert!(ok, "{what}: verify_receipt.py: {out}");
            assert!(out.starts_with("OK "), "{what}: {out}");
        }

        // One changed character anywhere in what was answered: both refuse it.
        let forged = save(
            dir,
            &format!("{what}-forged.json"),
            &one_changed(&a.body, pointer),
        );
        let (code, out) = gw
            .tongban_output(&["verify", forged.to_str().unwrap(), "--config", config])
            .await;
        assert_eq!(code, 1, "{what}: a forged answer verified: {out}");
        if independent {
            let (ok, out) = python(&[Path::new("answer"), &forged, &jwks_file]);
            assert!(!ok && out.starts_with("FAILED"), "{what}: {out}");
        }
    }
    // The bundle's items were checked on their own: one line each.
    let bundle_file = dir.join("bundle.json");
    if independent {
        let (_, out) = python(&[Path::new("answer"), &bundle_file, &jwks_file]);
        let items = answers[2].1.body["items"].as_array().unwrap().len();
        assert_eq!(
            out.lines().filter(|l| l.starts_with("OK item")).count(),
            items,
            "{out}"
        );
    }

    // A consistency proof between the first answer's checkpoint and the last's, from
    // the stored tree, checks in Python; the same proof for the wrong sizes does not.
    let first = answers[0].1.body["audit"]["checkpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    let last = answers.last().unwrap().1.body["audit"]["checkpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    let size = |note: &str| note.lines().nth(1).unwrap().parse::<u64>().unwrap();
    let (old, new) = (size(&first), size(&last));
    assert!(old < new, "{old} {new}");
    let store = AuditStore::open_existing(&Database::Sqlite(dir.join("state.db")))
        .await
        .unwrap();
    let mut known = KnownHashes::default();
    for (i, h) in store
        .tree_hashes(&tree::consistency_needs(new, old))
        .await
        .unwrap()
    {
        known.insert(i, h);
    }
    let proof: Vec<String> = tree::prove_consistency(new, old, &known)
        .unwrap()
        .iter()
        .map(|h| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, h.0))
        .collect();
    let (old_file, new_file) = (dir.join("old.note"), dir.join("new.note"));
    std::fs::write(&old_file, &first).unwrap();
    std::fs::write(&new_file, &last).unwrap();
    let proof_file = save(dir, "proof.json", &json!({"consistency": proof}));
    if independent {
        let cons = Path::new("consistency");
        let (ok, out) = python(&[cons, &old_file, &new_file, &proof_file, &jwks_file]);
        assert!(ok, "{out}");
        // Swapped, or with a hash changed, it fails.
        let (ok, out) = python(&[cons, &new_file, &old_file, &proof_file, &jwks_file]);
        assert!(!ok, "{out}");
        let mut bad = proof.clone();
        bad[0] = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]);
        let bad_file = save(dir, "bad-proof.json", &json!(bad));
        let (ok, out) = python(&[cons, &old_file, &new_file, &bad_file, &jwks_file]);
        assert!(!ok, "{out}");
    }
    gw.running.shutdown().await;
}
