//! `tongban config check` and `TONGBAN_*` variables, through the real binary: a good
//! config (with variables) passes with a summary and exit 0; a bad value names the
//! variable, or the file and line, with exit 2 — for `config check` and for `serve`
//! alike.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;
use std::process::{Command, Output};

use tongban_tests::{free_addr, test_counts, tongban_binary};

/// Variables of a test case.
type Vars<'a> = &'a [(&'a str, &'a str)];

fn run(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(bin)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn config_check_and_variables() {
    gateway::install_crypto_provider();
    let bin = tongban_binary();
    let dir = tempfile::tempdir().unwrap();
    gateway::demo::prepare(
        dir.path(),
        Some(free_addr()),
        Some(free_addr()),
        &test_counts(),
    )
    .await
    .unwrap();
    let file = dir.path().join("tongban.toml");
    let file = file.to_str().unwrap();

    // The demo's config, alone and with variables.
    let out = run(&bin, &["config", "check", file], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.starts_with(&format!("OK: {file}")), "{stdout}");
    assert!(stdout.contains("state_db "), "{stdout}");
    assert!(!stdout.contains("from the environment"), "{stdout}");
    let out = run(
        &bin,
        &["config", "check", file],
        &[
            (
                "TONGBAN_STATE_DB",
                "postgres://tongban:secret@db.internal:5432/tongban",
            ),
            ("TONGBAN_TELEMETRY_LOG_FORMAT", "json"),
            ("TONGBAN_AUDIT_BATCH_MAX", "256"),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains(
            "from the environment: TONGBAN_AUDIT_BATCH_MAX, TONGBAN_STATE_DB, TONGBAN_TELEMETRY_LOG_FORMAT"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("postgres://…@db.internal:5432/tongban"),
        "{stdout}"
    );
    assert!(!stdout.contains("secret"), "credentials printed: {stdout}");
    assert!(stdout.contains("logs json"), "{stdout}");
    // TONGBAN_CONFIG names the file.
    let out = run(&bin, &["config", "check"], &[("TONGBAN_CONFIG", file)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);

    // Bad values: exit 2, naming the variable; the same for `serve`.
    let cases: [(Vars, &str); 4] = [
        (
            &[("TONGBAN_LISTEN", "localhost")],
            "TONGBAN_LISTEN (environment; config ",
        ),
        (
            &[("TONGBAN_LISTN", "127.0.0.1:1")],
            "TONGBAN_LISTN (environment; config ",
        ),
        (
            &[("TONGBAN_AUDIT_BATCH_MAX", "many")],
            "audit.batch_max: \"many\" is not a whole number",
        ),
        (
            &[("TONGBAN_TLS_CERT", "pki/nowhere.pem")],
            "TONGBAN_TLS_CERT (environment; config ",
        ),
    ];
    for (env, want) in cases {
        for args in [
            vec!["config", "check", file],
            vec!["serve", "--config", file],
        ] {
            let out = run(&bin, &args, env);
            let (_, stderr) = text(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
            assert!(
                stderr.contains(want),
                "{args:?} {env:?}: want {want:?} in {stderr}"
            );
        }
    }

    // A mistake in the file names its line, variables or not.
    let original = std::fs::read_to_string(file).unwrap();
    let line = original
        .lines()
        .position(|l| l.starts_with("ops_listen"))
        .unwrap()
        + 1;
    std::fs::write(
        file,
        original.replacen("ops_listen = \"", "ops_listen = \"nowhere", 1),
    )
    .unwrap();
    for env in [
        &[][..],
        &[("TONGBAN_LISTEN", "127.0.0.1:0"), ("TONGBAN_NODE", "gw-9")][..],
    ] {
        let out = run(&bin, &["config", "check", file], env);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("{file}:{line}: ops_listen")),
            "{stderr}"
        );
    }
    // … unless a variable replaces the bad value.
    let out = run(
        &bin,
        &["config", "check", file],
        &[("TONGBAN_OPS_LISTEN", "127.0.0.1:0")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
}
