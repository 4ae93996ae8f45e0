//! The OpenAPI document against the live gateway: a bounded schemathesis run (from
//! PyPI; `.ci/run` installs it) fails on any 5xx, on any status, content type or
//! body the document does not describe, and on schema-valid data refused with a 4xx
//! other than the refusals of valid requests (`positive_data_acceptance`).

use std::path::Path;
use std::process::Command;

use tongban_tests::Gateway;

/// Pinned with `.ci/run`: a newer schemathesis may generate other cases.
/// `positive_data_acceptance` takes its expected statuses from its own settings, not
/// from the document: its defaults (2xx, 3xx, 401, 403, 404, 409, 429, 5xx) are the
/// refusals a valid request can get here (no agreement, no such record or agreement,
/// an id in use, a quota), each documented for `status_code_conformance`; 400 is not
/// among them, so a schema-valid request the server calls malformed fails the run.
const CHECKS: &str = "not_a_server_error,status_code_conformance,\
content_type_conformance,response_schema_conformance,positive_data_acceptance";

fn schemathesis_installed() -> bool {
    Command::new("python3")
        .args(["-m", "schemathesis.cli", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One run over the operations under `paths`, presenting demo certificate `cert`
/// (each part of the API is served only to its own role).
fn run(gw: &Gateway, doc: &Path, cert: &str, paths: &str) -> (bool, String) {
    let pki = gw.path().join("pki");
    let out = Command::new("python3")
        .args(["-m", "schemathesis.cli", "--config-file"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis.toml"))
        .arg("run")
        .arg(doc)
        .args(["--url", &format!("https://{}", gw.running.addr)])
        .arg("--tls-verify")
        .arg(pki.join("ca.pem"))
        .arg("--request-cert")
        .arg(pki.join(format!("{cert}.pem")))
        .arg("--request-cert-key")
        .arg(pki.join(format!("{cert}.key")))
        .args(["--include-path-regex", paths])
        .args(["--checks", CHECKS])
        // Fixed seed and few examples: the same bounded run every time.
        .args(["--seed", "14", "--max-examples", "30"])
        // No example database: it would replay earlier finds (the run would depend on
        // what ran before) and write into the source tree.
        .args(["--generation-database", "none"])
        .args(["--request-timeout", "10", "--no-color"])
        // Strategies for the identifier formats (check characters a pattern cannot
        // hold), and nothing else from the environment.
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env("PYTHONPATH", Path::new(env!("CARGO_MANIFEST_DIR")))
        // Nothing written into the source tree (no __pycache__ beside the hooks).
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(gw.path())
        .output()
        .expect("python3 runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_every_answer_of_the_live_gateway() {
    if !schemathesis_installed() {
        // CI installs it (.ci/run); a developer without it is told, not failed.
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with schemathesis is required in CI"
        );
        eprintln!("SKIPPED: pip install schemathesis==4.32.5 to check the document");
        return;
    }
    let gw = Gateway::start().await;
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let mut demo: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("docs/openapi.json"))
            .expect("docs/openapi.json is JSON");
    for_the_demo(&mut demo, &gw.path().join("tongban.toml"));
    let doc = gw.path().join("demo-openapi.json");
    std::fs::write(&doc, demo.to_string()).expect("write the demo's document");

    // The checks bite: with the statuses a wrong record number gets taken out of the
    // document, the same run fails.
    let mut narrowed = demo.clone();
    let responses = narrowed["paths"]["/audit/v1/records/{seq}"]["get"]["responses"]
        .as_object_mut()
        .expect("responses of GET /audit/v1/records/{seq}");
    responses.remove("400");
    responses.remove("404");
    let narrowed_doc = gw.path().join("narrowed-openapi.json");
    std::fs::write(&narrowed_doc, narrowed.to_string()).expect("write the narrowed document");
    let (ok, said) =
        tokio::task::block_in_place(|| run(&gw, &narrowed_doc, "auditor", "^/audit/v1/records/"));
    assert!(
        !ok && said.contains("Undocumented status code"),
        "a run against a document missing 400 and 404 passed:\n{said}"
    );

    let mut failed = Vec::new();
    for (cert, paths) in [
        ("counter-a", "^/(v1/|openapi\\.json|\\.well-known/)"),
        ("admin", "^/admin/"),
        ("auditor", "^/audit/"),
        ("portal", "^/citizen/"),
    ] {
        let (ok, said) = tokio::task::block_in_place(|| run(&gw, &doc, cert, paths));
        eprintln!("== {cert} on {paths}\n{said}");
        if !ok {
            failed.push(cert);
        }
    }
    assert!(
        failed.is_empty(),
        "schemathesis failed for {failed:?}; see above"
    );
}

/// The document as the demo's config fills it in. Bundles and the matters agreements
/// may name are each gateway's config, so the product document takes any bundle name
/// with any of the three identifiers, and any matter code; here a valid request names
/// one of the demo's two bundles with the identifier its first item reads
/// (`gateway/src/demo_department.rs`), and matters of its `[policy] matters`.
fn for_the_demo(doc: &mut serde_json::Value, config: &Path) {
    let config: toml::Table = std::fs::read_to_string(config)
        .expect("the demo's tongban.toml")
        .parse()
        .expect("the demo's tongban.toml is TOML");
    // A matter is its code, or a table naming it.
    let matters: Vec<toml::Value> = config["policy"]["matters"]
        .as_array()
        .expect("the demo's matters")
        .iter()
        .map(|m| m.get("name").unwrap_or(m).clone())
        .collect();
    doc["components"]["schemas"]["AgreementInput"]["properties"]["matters"]["items"] =
        serde_json::json!({ "enum": matters });
    let request = &mut doc["components"]["schemas"]["BundleRequest"];
    let variants =
        [("newborn", "LicenseId"), ("company-opening", "CreditCode")].map(|(bundle, id)| {
            let mut v = request.clone();
            v.as_object_mut()
                .expect("BundleRequest is an object")
                .remove("examples");
            v["properties"]["bundle"] = serde_json::json!({ "const": bundle });
            v["properties"]["subject"] =
                serde_json::json!({ "$ref": format!("#/components/schemas/{id}") });
            v
        });
    *request = serde_json::json!({ "oneOf": variants });
}
