//! Trust at the handshake, end to end: a real gateway from the harness, real TLS
//! clients (ours, curl and openssl), the `tongban certs` commands, and trust that
//! changes while the gateway runs — no restart anywhere in this file.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use certs::HandshakeRefusal;
use gateway::tls::{TlsSnapshot, Trigger};
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio_rustls::TlsConnector;
use tongban_tests::{Client, Gateway};

/// How long a condition may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// The demo's allowed population lookup (counter-a).
fn allowed(gw: &Gateway) -> Value {
    gw.samples()
        .into_iter()
        .find(|s| s["cert"] == "counter-a" && s["expect"] == 200)
        .unwrap()
}

fn pki(gw: &Gateway) -> PathBuf {
    gw.path().join("pki")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A client presenting `dir/<name>.pem` and `.key`.
fn client_from(gw: &Gateway, dir: &Path, name: &str) -> Client {
    gw.client_with(Some((
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )))
}

/// The lookup's status, or the connection-level error.
async fn lookup(client: &Client, sample: &Value) -> Result<StatusCode, String> {
    client
        .lookup(Some("clerk-001"), &sample["body"])
        .await
        .map(|a| a.status)
}

fn tls(gw: &Gateway) -> TlsSnapshot {
    gw.running.app.tls.metrics().snapshot()
}

/// Polls `check` until it holds; returns how long that took.
async fn eventually<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < PATIENCE {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within {PATIENCE:?}");
}

/// Runs `tongban` in-process and expects success.
async fn tongban(gw: &Gateway, args: &[&str]) {
    let (code, message) = gw.tongban_output(args).await;
    assert_eq!(code, 0, "tongban {args:?}: {message}");
}

/// Asserts that `client` is refused at the handshake for `reason`: the request
/// fails (under TLS 1.3 connect may succeed and the refusal arrive on the first
/// read) and the gateway counts exactly one more refusal for that reason.
async fn assert_refused(gw: &Gateway, client: &Client, reason: HandshakeRefusal) {
    let before = tls(gw).refused(reason);
    let sample = allowed(gw);
    let outcome = lookup(client, &sample).await;
    assert!(
        outcome.is_err(),
        "{reason}: expected a refusal, got {outcome:?}"
    );
    eventually(&format!("refusal counted as {reason}"), || async {
        tls(gw).refused(reason) == before + 1
    })
    .await;
}

/// A certificate signed by the demo CA, made directly with rcgen (the CLI will
/// not make such broken ones): `sans` as given, clientAuth EKU unless `no_eku`.
fn odd_client_cert(gw: &Gateway, name: &str, sans: Vec<rcgen::SanType>, no_eku: bool) -> Client {
    let dir = pki(gw);
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).unwrap()).unwrap();
    let ca_pem = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = sans;
    if !no_eku {
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let out = gw.path().join("odd");
    certs::write_public_pem(&out.join(format!("{name}.pem")), &cert.pem()).unwrap();
    certs::write_private_pem(&out.join(format!("{name}.key")), &key.serialize_pem()).unwrap();
    client_from(gw, &out, name)
}

#[tokio::test]
async fn every_refusal_happens_at_the_handshake_for_its_reason() {
    let gw = Gateway::start().await;
    let sample = allowed(&gw);
    let audited = gw.audit_count().await;
    let dir = pki(&gw);

    // Accepted first, so the refusals below are about certificates, not the setup.
    assert_eq!(
        lookup(&gw.client("counter-a"), &sample).await,
        Ok(StatusCode::OK)
    );

    assert_refused(&gw, &gw.client_with(None), HandshakeRefusal::NoCertificate).await;

    // Another department's CA the gateway does not trust.
    let other = gw.path().join("other-ca");
    tongban(
        &gw,
        &[
            "certs",
            "init",
            "--ca-dir",
            s(&other),
            "--cn",
            "Other Dept CA",
        ],
    )
    .await;
    let id = "urn:tongban:sz-hrss:counter-01";
    tongban(
        &gw,
        &[
            "certs",
            "issue",
            "client",
            "--ca-dir",
            s(&other),
            "--identity",
            id,
            "--name",
            "stranger",
        ],
    )
    .await;
    let stranger = client_from(&gw, &other, "stranger");
    assert_refused(&gw, &stranger, HandshakeRefusal::UnknownCa).await;

    // Validity windows in the past and in the future, issued by the trusted CA.
    for (name, from, to) in [
        ("expired", "2020-01-01T00:00:00Z", "2020-06-30T00:00:00Z"),
        ("future", "2099-01-01T00:00:00Z", "2099-06-30T00:00:00Z"),
    ] {
        let args = [
            "certs",
            "issue",
            "client",
            "--ca-dir",
            s(&dir),
            "--identity",
            id,
            "--name",
            name,
            "--not-before",
            from,
            "--not-after",
            to,
        ];
        tongban(&gw, &args).await;
    }
    assert_refused(
        &gw,
        &client_from(&gw, &dir, "expired"),
        HandshakeRefusal::Expired,
    )
    .await;
    assert_refused(
        &gw,
        &client_from(&gw, &dir, "future"),
        HandshakeRefusal::NotYetValid,
    )
    .await;

    // The gateway's own server certificate presented as a client certificate.
    let server_as_client = client_from(&gw, &dir, "server");
    assert_refused(&gw, &server_as_client, HandshakeRefusal::WrongKeyUsage).await;

    // Trusted CA, clientAuth, but no urn:tongban: identity.
    let dns_only = odd_client_cert(
        &gw,
        "dns-only",
        vec![rcgen::SanType::DnsName(
            "counter.example".try_into().unwrap(),
        )],
        false,
    );
    assert_refused(&gw, &dns_only, HandshakeRefusal::NoIdentity).await;
    let other_uri = odd_client_cert(
        &gw,
        "spiffe",
        vec![rcgen::SanType::URI(
            "spiffe://sz/counter".try_into().unwrap(),
        )],
        false,
    );
    assert_refused(&gw, &other_uri, HandshakeRefusal::NoIdentity).await;
    // An identity but no extended key usage at all: not a client certificate.
    let no_eku = odd_client_cert(
        &gw,
        "no-eku",
        vec![rcgen::SanType::URI(id.try_into().unwrap())],
        true,
    );
    assert_refused(&gw, &no_eku, HandshakeRefusal::WrongKeyUsage).await;

    // None of them reached HTTP: nothing was audited for them.
    assert_eq!(gw.audit_count().await, audited + 1);
    let snap = tls(&gw);
    assert_eq!(snap.handshakes, 1, "{snap:?}");
}

/// An HTTP/1.1 connection kept open across requests.
struct KeepAlive {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl KeepAlive {
    async fn open(gw: &Gateway, name: &str) -> Self {
        let dir = pki(gw);
        let config = certs::client_config(
            &[dir.join("ca.pem")],
            Some((
                &dir.join(format!("{name}.pem")),
                &dir.join(format!("{name}.key")),
            )),
            vec![b"http/1.1".to_vec()],
        )
        .unwrap();
        let io = connect(gw, config).await;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(conn);
        Self { sender }
    }

    async fn lookup(&mut self, sample: &Value) -> StatusCode {
        self.try_lookup(sample).await.unwrap()
    }

    async fn try_lookup(&mut self, sample: &Value) -> Result<StatusCode, hyper::Error> {
        let req = Request::post("/v1/lookup")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .header("x-operator-id", "clerk-001")
            .body(Full::new(Bytes::from(sample["body"].to_string())))
            .unwrap();
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        resp.into_body().collect().await?;
        Ok(status)
    }
}

async fn connect(
    gw: &Gateway,
    config: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(gw.running.addr).await.unwrap();
    TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn revoked_certificate_is_refused_after_revoke_without_restart() {
    // Idle connections kept open, so that only the revocation can close one.
    let gw = Gateway::start_with(|c| {
        c.limits.request_head_timeout_ms = 600_000;
        c.limits.idle_timeout_ms = 600_000;
    })
    .await;
    let sample = allowed(&gw);
    let dir = pki(&gw);
    let addr = gw.running.addr;
    let counter_a = gw.client("counter-a");
    assert_eq!(lookup(&counter_a, &sample).await, Ok(StatusCode::OK));
    let mut open = KeepAlive::open(&gw, "counter-a").await;
    assert_eq!(open.lookup(&sample).await, StatusCode::OK);

    // `certs revoke` rewrites pki/crl.pem; the gateway notices the file change.
    let cert = dir.join("counter-a.pem");
    tongban(
        &gw,
        &[
            "certs",
            "revoke",
            s(&cert),
            "--reason",
            "key-compromise",
            "--ca-dir",
            s(&dir),
        ],
    )
    .await;
    let took = eventually("counter-a refused after revocation", || async {
        lookup(&counter_a, &sample).await.is_err()
    })
    .await;
    eprintln!("reload latency (revoke → first refused handshake, file watch): {took:?}");
    // The gateway counts a refusal once the alert is sent, so the client can see it
    // first: the count may trail by a moment.
    eventually("the revoked handshake counted", || async {
        tls(&gw).refused(HandshakeRefusal::Revoked) >= 1
    })
    .await;
    let snap = tls(&gw);
    assert!(snap.reloads_by(Trigger::FileChange) >= 1, "{snap:?}");
    assert_eq!(gw.running.addr, addr, "same listener, no restart");

    // The connection opened before the revocation is closed too (issue 14: before,
    // it kept answering): it gets no answer after its current request.
    eventually(
        "counter-a's open connection closed after revocation",
        || {
            let closed = open.sender.is_closed();
            async move { closed }
        },
    )
    .await;
    assert!(open.try_lookup(&sample).await.is_err());
    // Other certificates of the same CA are unaffected.
    let b = gw
        .samples()
        .into_iter()
        .find(|s| s["cert"] == "counter-b" && s["expect"] == 200);
    assert_eq!(
        lookup(&gw.client("counter-b"), &b.unwrap()).await,
        Ok(StatusCode::OK)
    );

    // The index says so.
    let index = certs::CaDir::open(&dir).unwrap().index().unwrap();
    let entry = index
        .certificates
        .iter()
        .find(|e| e.identity.as_deref() == Some("urn:tongban:sz-hrss:counter-01"))
        .unwrap();
    assert_eq!(
        entry.revoked.map(|r| r.reason),
        Some(certs::RevocationReason::KeyCompromise)
    );
    tongban(&gw, &["certs", "list", "--ca-dir", s(&dir)]).await;
}

#[tokio::test]
async fn reload_api_applies_to_the_next_handshake_at_once() {
    let gw = Gateway::start().await;
    let b = gw
        .samples()
        .into_iter()
        .find(|s| s["cert"] == "counter-b" && s["expect"] == 200)
        .unwrap();
    let dir = pki(&gw);
    let counter_b = gw.client("counter-b");
    assert_eq!(lookup(&counter_b, &b).await, Ok(StatusCode::OK));

    // By serial, as `certs list` shows it.
    let serial = certs::CertInfo::load(&dir.join("counter-b.pem"))
        .unwrap()
        .serial;
    tongban(
        &gw,
        &[
            "certs",
            "revoke",
            &serial,
            "--reason",
            "cessation-of-operation",
            "--ca-dir",
            s(&dir),
        ],
    )
    .await;
    // What SIGHUP does, called directly: when it returns, the next handshake uses it.
    gw.running.app.tls.reload().unwrap();
    assert!(lookup(&counter_b, &b).await.is_err());
    assert!(tls(&gw).reloads_by(Trigger::Api) >= 1);
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_tls() {
    // Registering a handler first makes SIGHUP harmless to this test process
    // whatever the gateway's watcher has done so far.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();
    let gw = Gateway::start().await;
    let before = tls(&gw).reloads_by(Trigger::Signal);
    // Sent again now and then, in case the watcher was not listening yet the first time.
    let started = Instant::now();
    loop {
        let status = Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .await
            .unwrap();
        assert!(status.success());
        hup.recv().await;
        let asked = Instant::now();
        while asked.elapsed() < Duration::from_secs(2) {
            if tls(&gw).reloads_by(Trigger::Signal) > before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(started.elapsed() < PATIENCE, "SIGHUP did not reload TLS");
    }
}

#[tokio::test]
async fn intermediates_other_cas_and_bad_reloads_without_restart() {
    let gw = Gateway::start().await;
    let sample = allowed(&gw);
    let root = pki(&gw);
    let config = gw.config_path();
    let original = std::fs::read_to_string(&config).unwrap();
    let id = "urn:tongban:sz-hrss:counter-01";

    // An intermediate CA under the demo root; its client sends leaf + intermediate.
    let dept = gw.path().join("pki-dept");
    tongban(
        &gw,
        &[
            "certs",
            "init",
            "--ca-dir",
            s(&dept),
            "--parent",
            s(&root),
            "--cn",
            "HRSS Dept CA",
        ],
    )
    .await;
    tongban(
        &gw,
        &[
            "certs",
            "issue",
            "client",
            "--ca-dir",
            s(&dept),
            "--identity",
            id,
            "--name",
            "via-dept",
        ],
    )
    .await;
    assert_eq!(
        certs::load_certs(&dept.join("via-dept.pem")).unwrap().len(),
        2
    );
    let via_dept = client_from(&gw, &dept, "via-dept");
    // Its CRL is not listed yet: revocation status unknown, refused (fail closed).
    assert_refused(&gw, &via_dept, HandshakeRefusal::RevocationUnknown).await;

    // List the intermediate's CRL: the config file change is picked up.
    let with_dept = original.replace(
        r#"crls = ["pki/crl.pem"]"#,
        r#"crls = ["pki/crl.pem", "pki-dept/crl.pem"]"#,
    );
    assert_ne!(with_dept, original);
    std::fs::write(&config, &with_dept).unwrap();
    let took = eventually("intermediate chain accepted", || async {
        lookup(&via_dept, &sample).await == Ok(StatusCode::OK)
    })
    .await;
    eprintln!("reload latency (config edit → accepted): {took:?}");

    // A second trusted CA (another department's root), added the same way.
    let other = gw.path().join("pki-other");
    tongban(
        &gw,
        &[
            "certs",
            "init",
            "--ca-dir",
            s(&other),
            "--cn",
            "Other Root",
            "--alg",
            "ed25519",
        ],
    )
    .await;
    tongban(
        &gw,
        &[
            "certs",
            "issue",
            "client",
            "--ca-dir",
            s(&other),
            "--identity",
            id,
            "--name",
            "other",
        ],
    )
    .await;
    let from_other = client_from(&gw, &other, "other");
    assert_refused(&gw, &from_other, HandshakeRefusal::UnknownCa).await;
    let two_roots = with_dept
        .replace(
            r#"client_cas = ["pki/ca.pem"]"#,
            r#"client_cas = ["pki/ca.pem", "pki-other/ca.pem"]"#,
        )
        .replace(
            r#""pki-dept/crl.pem"]"#,
            r#""pki-dept/crl.pem", "pki-other/crl.pem"]"#,
        );
    std::fs::write(&config, &two_roots).unwrap();
    eventually("second root trusted", || async {
        lookup(&from_other, &sample).await == Ok(StatusCode::OK)
    })
    .await;

    // A reload that fails keeps the old trust (and says why, in the log).
    let failures = tls(&gw).reload_failures;
    std::fs::write(&config, "this is [not toml").unwrap();
    eventually("failed reload counted", || async {
        tls(&gw).reload_failures > failures
    })
    .await;
    assert_eq!(lookup(&from_other, &sample).await, Ok(StatusCode::OK));
    assert_eq!(lookup(&via_dept, &sample).await, Ok(StatusCode::OK));
    // A CRL that does not parse: also kept.
    let failures = tls(&gw).reload_failures;
    std::fs::write(&config, &two_roots).unwrap();
    std::fs::write(other.join("crl.pem"), "-----BEGIN X509 CRL-----\n@@@\n").unwrap();
    eventually("bad CRL refused", || async {
        tls(&gw).reload_failures > failures
    })
    .await;
    assert_eq!(lookup(&from_other, &sample).await, Ok(StatusCode::OK));

    // Dropping the other root again: its clients are refused at once.
    tongban(&gw, &["certs", "crl", "--ca-dir", s(&other)]).await;
    std::fs::write(&config, &with_dept).unwrap();
    eventually("other root no longer trusted", || async {
        lookup(&from_other, &sample).await.is_err()
    })
    .await;
    assert_eq!(lookup(&via_dept, &sample).await, Ok(StatusCode::OK));
}

#[tokio::test]
async fn h2_and_http1_are_both_served() {
    let gw = Gateway::start().await;
    let sample = allowed(&gw);
    let dir = pki(&gw);
    let config = certs::client_config(
        &[dir.join("ca.pem")],
        Some((&dir.join("counter-a.pem"), &dir.join("counter-a.key"))),
        vec![b"h2".to_vec()],
    )
    .unwrap();
    let io = connect(&gw, config).await;
    assert_eq!(io.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    // Two requests over the one h2 connection.
    for _ in 0..2 {
        let req = Request::post("https://localhost/v1/lookup")
            .header("content-type", "application/json")
            .header("x-operator-id", "clerk-001")
            .body(Full::new(Bytes::from(sample["body"].to_string())))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.version(), Version::HTTP_2);
        assert_eq!(resp.status(), StatusCode::OK);
        resp.into_body().collect().await.unwrap();
    }
    // And HTTP/1.1 (the harness client).
    assert_eq!(
        lookup(&gw.client("counter-a"), &sample).await,
        Ok(StatusCode::OK)
    );
}

/// `curl` against the gateway: `(exit code, stdout, stderr)`.
async fn curl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new("curl")
        .args(args)
        .output()
        .await
        .expect("curl is installed (.ci/run installs it)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn curl_and_openssl_are_served_and_refused_like_anyone() {
    let gw = Gateway::start().await;
    let sample = allowed(&gw);
    let dir = pki(&gw);
    let url = format!("https://localhost:{}/v1/lookup", gw.running.addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", gw.running.addr.port());
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("counter-a.pem"),
        dir.join("counter-a.key"),
    );
    let body = sample["body"].to_string();
    let common = [
        "-sS",
        "--resolve",
        &resolve,
        "--cacert",
        s(&ca),
        "-H",
        "X-Operator-Id: clerk-001",
        "-H",
        "Content-Type: application/json",
        "-d",
        &body,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{http_version}",
    ];
    let with_cert = |extra: &'static [&'static str]| {
        let mut v: Vec<&str> = common.to_vec();
        v.extend(["--cert", s(&cert), "--key", s(&key)]);
        v.extend_from_slice(extra);
        v.push(&url);
        v
    };
    let (code, out, err) = curl(&with_cert(&["--http2"])).await;
    assert_eq!((code, out.as_str()), (0, "200 2"), "{err}");
    let (code, out, err) = curl(&with_cert(&["--http1.1"])).await;
    assert_eq!((code, out.as_str()), (0, "200 1.1"), "{err}");
    let (code, out, err) = curl(&with_cert(&["--tlsv1.2", "--tls-max", "1.2"])).await;
    assert_eq!((code, out.as_str()), (0, "200 2"), "TLS 1.2: {err}");

    // No client certificate: curl's request fails, nothing is answered.
    let mut no_cert: Vec<&str> = common.to_vec();
    no_cert.push(&url);
    let refusals = tls(&gw).refused(HandshakeRefusal::NoCertificate);
    let (code, out, _) = curl(&no_cert).await;
    assert_ne!(code, 0);
    assert!(!out.starts_with("200"), "{out}");
    eventually("curl without certificate counted", || async {
        tls(&gw).refused(HandshakeRefusal::NoCertificate) > refusals
    })
    .await;

    if which("openssl").await {
        openssl_checks(&gw, &ca, &cert, &key).await;
    } else {
        eprintln!("note: openssl not installed; s_client checks skipped");
    }
}

async fn which(program: &str) -> bool {
    Command::new("which")
        .arg(program)
        .output()
        .await
        .is_ok_and(|o| o.status.success())
}

/// `openssl s_client`: TLS 1.2 with an ECDHE+AEAD suite and ALPN h2 works; a
/// non-forward-secret or CBC suite is refused.
async fn openssl_checks(gw: &Gateway, ca: &Path, cert: &Path, key: &Path) {
    let connect = format!("127.0.0.1:{}", gw.running.addr.port());
    let run = |cipher: &'static str| {
        let connect = connect.clone();
        async move {
            let out = Command::new("openssl")
                .args([
                    "s_client",
                    "-connect",
                    &connect,
                    "-servername",
                    "localhost",
                    "-tls1_2",
                    "-cipher",
                    cipher,
                    "-alpn",
                    "h2",
                    "-CAfile",
                    s(ca),
                    "-cert",
                    s(cert),
                    "-key",
                    s(key),
                    "-verify_return_error",
                ])
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.success(), text)
        }
    };
    let (ok, text) = run("ECDHE-ECDSA-AES128-GCM-SHA256").await;
    assert!(ok, "{text}");
    assert!(text.contains("TLSv1.2"), "{text}");
    assert!(text.contains("ECDHE-ECDSA-AES128-GCM-SHA256"), "{text}");
    assert!(text.contains("ALPN protocol: h2"), "{text}");
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    for weak in ["ECDHE-ECDSA-AES128-SHA", "AES128-GCM-SHA256"] {
        let (ok, text) = run(weak).await;
        assert!(!ok, "{weak} must be refused: {text}");
    }
}

#[tokio::test]
async fn certs_commands_exit_2_naming_the_file_and_the_problem() {
    let gw = Gateway::start().await;
    let dir = pki(&gw);
    // The demo's CA directory is a complete one: index with every certificate, a CRL.
    let index = certs::CaDir::open(&dir).unwrap().index().unwrap();
    for who in [
        "urn:tongban:sz-hrss:counter-01",
        "urn:tongban:sz-civil:counter-01",
        "urn:tongban:sz-psb:admin-01",
        "urn:tongban:sz-data:auditor-01",
    ] {
        assert!(
            index
                .certificates
                .iter()
                .any(|e| e.identity.as_deref() == Some(who)),
            "{who}"
        );
    }
    assert!(
        index.certificates.iter().any(|e| e.dns == ["localhost"]),
        "server"
    );
    assert!(dir.join("crl.pem").is_file());
    // --ca-dir defaults to `pki` beside --config.
    let config = gw.config_path();
    tongban(&gw, &["certs", "list", "--config", s(&config)]).await;
    tongban(&gw, &["certs", "list", "--json", "--config", s(&config)]).await;

    let missing = gw.path().join("nowhere");
    let (code, e) = gw
        .tongban_output(&["certs", "list", "--ca-dir", s(&missing)])
        .await;
    assert_eq!(code, 2);
    assert!(e.contains(s(&missing.join("ca.pem"))), "{e}");

    let (code, e) = gw
        .tongban_output(&[
            "certs",
            "issue",
            "client",
            "--ca-dir",
            s(&dir),
            "--identity",
            "urn:tongban:SZ:x",
        ])
        .await;
    assert_eq!(code, 2);
    assert!(e.starts_with("--identity: ") && e.contains("'S'"), "{e}");
    let (code, e) = gw
        .tongban_output(&[
            "certs",
            "issue",
            "client",
            "--ca-dir",
            s(&dir),
            "--identity",
            "https://x",
        ])
        .await;
    assert_eq!(code, 2);
    assert!(e.contains("does not start with `urn:tongban:`"), "{e}");

    let garbage = gw.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let (code, e) = gw
        .tongban_output(&[
            "certs",
            "revoke",
            s(&garbage),
            "--reason",
            "superseded",
            "--ca-dir",
            s(&dir),
        ])
        .await;
    assert_eq!(code, 2);
    assert!(e.starts_with(s(&garbage)), "{e}");
    let (code, e) = gw
        .tongban_output(&[
            "certs",
            "revoke",
            "abcd",
            "--reason",
            "lost-it",
            "--ca-dir",
            s(&dir),
        ])
        .await;
    assert_eq!(code, 2);
    assert!(e.starts_with("--reason: "), "{e}");

    // A CA key that does not match its certificate.
    let copy = gw.path().join("pki-copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(dir.join("ca.pem"), copy.join("ca.pem")).unwrap();
    std::fs::copy(dir.join("counter-a.key"), copy.join("ca.key")).unwrap();
    let (code, e) = gw
        .tongban_output(&["certs", "crl", "--ca-dir", s(&copy)])
        .await;
    assert_eq!(code, 2);
    assert!(e.contains("key does not match certificate"), "{e}");
    assert!(e.contains(s(&copy.join("ca.key"))), "{e}");

    // init refuses to replace a CA.
    let (code, e) = gw
        .tongban_output(&["certs", "init", "--ca-dir", s(&dir)])
        .await;
    assert_eq!(code, 2);
    assert!(e.contains("already holds a CA"), "{e}");
}
