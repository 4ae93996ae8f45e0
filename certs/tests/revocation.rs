//! The server verifier with CRLs, over real sockets: each refusal gets its reason.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use certs::time::{Duration, OffsetDateTime};
use certs::{
    client_config, server_trust, CaDir, HandshakeRefusal, InitOptions, IssueRequest, KeyAlg,
    RevocationReason, ServerTlsFiles, Subject, UnknownRevocation, Validity,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn init(dir: &Path, parent: Option<&CaDir>) -> CaDir {
    let options = InitOptions {
        common_name: dir.file_name().unwrap().to_string_lossy().into_owned(),
        alg: KeyAlg::EcdsaP256,
        validity: Validity::days(365).unwrap(),
        crl_next_update: Duration::days(7),
    };
    CaDir::init(dir, &options, parent).unwrap()
}

fn issue_client(ca: &mut CaDir, name: &str, validity: Validity) -> (PathBuf, PathBuf) {
    let request = IssueRequest {
        subject: Subject::Client {
            identity: format!("urn:tongban:test:{name}").parse().unwrap(),
            common_name: String::new(),
        },
        validity,
        key_alg: KeyAlg::EcdsaP256,
    };
    let dir = ca.path().to_owned();
    let issued = ca.issue(&request, &dir, name, false).unwrap();
    (issued.cert, issued.key)
}

/// One handshake plus a byte each way; the server's refusal reason, if any.
async fn handshake(
    files: &ServerTlsFiles,
    ca: &Path,
    client: Option<&(PathBuf, PathBuf)>,
) -> Result<(), HandshakeRefusal> {
    let trust = server_trust(files).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = TlsAcceptor::from(trust.config)
            .accept(tcp)
            .await
            .map_err(|e| HandshakeRefusal::from_io(&e))?;
        tls.write_all(b"!").await.unwrap();
        tls.shutdown().await.unwrap();
        Ok(())
    });
    let pair = client.map(|(c, k)| (c.as_path(), k.as_path()));
    let config = client_config(&[ca.to_owned()], pair, vec![]).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let client_side = async {
        let mut tls = TlsConnector::from(config).connect(name, tcp).await?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.map(|_| buf)
    }
    .await;
    let result = server.await.unwrap();
    // The client sees the refusal too (under TLS 1.3 only on its first read).
    assert_eq!(
        result.is_ok(),
        client_side.is_ok(),
        "{result:?} {client_side:?}"
    );
    result
}

#[tokio::test]
async fn crl_revokes_and_every_reason_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ca = init(&tmp.path().join("ca"), None);
    let server_request = IssueRequest {
        subject: Subject::Server {
            dns: vec!["localhost".into()],
            ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        },
        validity: Validity::days(30).unwrap(),
        key_alg: KeyAlg::EcdsaP256,
    };
    let dir = ca.path().to_owned();
    let server = ca.issue(&server_request, &dir, "server", false).unwrap();
    let files = ServerTlsFiles {
        cert: server.cert.clone(),
        key: server.key.clone(),
        client_cas: vec![dir.join("ca.pem")],
        crls: vec![dir.join("crl.pem")],
        unknown_revocation: UnknownRevocation::Deny,
    };
    let ca_pem = dir.join("ca.pem");
    let now = OffsetDateTime::now_utc();
    let good = issue_client(&mut ca, "good", Validity::days(30).unwrap());
    let old = Validity::between(now - Duration::days(60), now - Duration::days(30)).unwrap();
    let expired = issue_client(&mut ca, "expired", old);
    let later = Validity::between(now + Duration::days(1), now + Duration::days(30)).unwrap();
    let future = issue_client(&mut ca, "future", later);

    assert_eq!(handshake(&files, &ca_pem, Some(&good)).await, Ok(()));
    assert_eq!(
        handshake(&files, &ca_pem, None).await,
        Err(HandshakeRefusal::NoCertificate)
    );
    assert_eq!(
        handshake(&files, &ca_pem, Some(&expired)).await,
        Err(HandshakeRefusal::Expired)
    );
    assert_eq!(
        handshake(&files, &ca_pem, Some(&future)).await,
        Err(HandshakeRefusal::NotYetValid)
    );
    let as_client = (server.cert.clone(), server.key.clone());
    assert_eq!(
        handshake(&files, &ca_pem, Some(&as_client)).await,
        Err(HandshakeRefusal::WrongKeyUsage)
    );

    ca.revoke(
        good.0.to_str().unwrap(),
        RevocationReason::KeyCompromise,
        Duration::days(7),
    )
    .unwrap();
    assert_eq!(
        handshake(&files, &ca_pem, Some(&good)).await,
        Err(HandshakeRefusal::Revoked)
    );
    // Without the CRL the same certificate passes: revocation is the CRL's doing.
    let no_crl = ServerTlsFiles {
        crls: vec![],
        ..files.clone()
    };
    assert_eq!(handshake(&no_crl, &ca_pem, Some(&good)).await, Ok(()));
}

#[tokio::test]
async fn intermediate_chain_and_unknown_revocation_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let mut root = init(&tmp.path().join("root"), None);
    let mut dept = init(&tmp.path().join("dept"), Some(&root));
    let root_dir = root.path().to_owned();
    let server = root
        .issue(
            &IssueRequest {
                subject: Subject::Server {
                    dns: vec!["localhost".into()],
                    ips: vec![],
                },
                validity: Validity::days(30).unwrap(),
                key_alg: KeyAlg::EcdsaP256,
            },
            &root_dir,
            "server",
            false,
        )
        .unwrap();
    let client = issue_client(&mut dept, "via-dept", Validity::days(30).unwrap());
    let root_pem = root_dir.join("ca.pem");
    let files = ServerTlsFiles {
        cert: server.cert,
        key: server.key,
        client_cas: vec![root_pem.clone()],
        crls: vec![root_dir.join("crl.pem")],
        unknown_revocation: UnknownRevocation::Deny,
    };
    // Only the root's CRL: the leaf's issuer (the intermediate) has none listed.
    assert_eq!(
        handshake(&files, &root_pem, Some(&client)).await,
        Err(HandshakeRefusal::RevocationUnknown)
    );
    let allow = ServerTlsFiles {
        unknown_revocation: UnknownRevocation::Allow,
        ..files.clone()
    };
    assert_eq!(handshake(&allow, &root_pem, Some(&client)).await, Ok(()));
    let both = ServerTlsFiles {
        crls: vec![root_dir.join("crl.pem"), dept.path().join("crl.pem")],
        ..files.clone()
    };
    assert_eq!(handshake(&both, &root_pem, Some(&client)).await, Ok(()));
    assert!(server_trust(&both).unwrap().warnings.is_empty());

    // Revoking the intermediate at the root refuses what it issued.
    root.revoke(
        dept.path().join("ca.pem").to_str().unwrap(),
        RevocationReason::CaCompromise,
        Duration::days(7),
    )
    .unwrap();
    assert_eq!(
        handshake(&both, &root_pem, Some(&client)).await,
        Err(HandshakeRefusal::Revoked)
    );

    // A trusted CA without a listed CRL is reported when loading.
    let other = init(&tmp.path().join("other"), None);
    let two_cas = ServerTlsFiles {
        client_cas: vec![root_pem.clone(), other.path().join("ca.pem")],
        ..both.clone()
    };
    let warnings = server_trust(&two_cas).unwrap().warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("has no CRL"), "{warnings:?}");
}

#[test]
fn bad_crl_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ca = init(&tmp.path().join("ca"), None);
    let dir = ca.path().to_owned();
    let server = ca
        .issue(
            &IssueRequest {
                subject: Subject::Server {
                    dns: vec!["localhost".into()],
                    ips: vec![],
                },
                validity: Validity::days(30).unwrap(),
                key_alg: KeyAlg::EcdsaP256,
            },
            &dir,
            "server",
            false,
        )
        .unwrap();
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a crl").unwrap();
    let files = ServerTlsFiles {
        cert: server.cert,
        key: server.key,
        client_cas: vec![dir.join("ca.pem")],
        crls: vec![garbage.clone()],
        unknown_revocation: UnknownRevocation::Deny,
    };
    let e = server_trust(&files).unwrap_err().to_string();
    assert!(e.starts_with(&garbage.display().to_string()), "{e}");
    assert!(e.contains("no CRL found"), "{e}");
}
