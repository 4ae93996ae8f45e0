//! Mutual TLS over real sockets with the configs this crate builds.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use certs::{
    client_config, identity_from_cert, server_config, Authority, CertError, CertifiedKey, Identity,
    KeyAlg,
};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Two CAs on disk, with a server certificate from the first and clients from both.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = Self { dir };
        let ca = Authority::create("Tongban Test CA", KeyAlg::EcdsaP256).unwrap();
        let other = Authority::create("Other CA", KeyAlg::Ed25519).unwrap();
        pki.save("ca", &ca.certified());
        pki.save("other-ca", &other.certified());
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        pki.save(
            "server",
            &ca.issue_server(&["localhost".into()], &[localhost], 30)
                .unwrap(),
        );
        pki.save(
            "counter-a",
            &ca.issue_client(&id_a(), "counter a", 30).unwrap(),
        );
        let other_id: Identity = "urn:tongban:sz-psb:intruder".parse().unwrap();
        pki.save("stranger", &other.issue_client(&other_id, "x", 30).unwrap());
        pki
    }

    fn save(&self, name: &str, ck: &CertifiedKey) {
        certs::write_public_pem(&self.path(&format!("{name}.pem")), &ck.cert_pem).unwrap();
        certs::write_private_pem(&self.path(&format!("{name}.key")), &ck.key_pem).unwrap();
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn server(&self, cas: &[&str]) -> Arc<rustls::ServerConfig> {
        let cas: Vec<_> = cas.iter().map(|c| self.path(&format!("{c}.pem"))).collect();
        server_config(&self.path("server.pem"), &self.path("server.key"), &cas).unwrap()
    }

    fn client(&self, ca: &str, cert: Option<&str>) -> Arc<rustls::ClientConfig> {
        let pair = cert.map(|c| {
            (
                self.path(&format!("{c}.pem")),
                self.path(&format!("{c}.key")),
            )
        });
        let pair_ref = pair.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        client_config(
            &[self.path(&format!("{ca}.pem"))],
            pair_ref,
            vec![b"http/1.1".to_vec()],
        )
        .unwrap()
    }
}

fn id_a() -> Identity {
    Identity::new("sz-hrss", "counter-01").unwrap()
}

/// What each side saw of one connection.
struct Outcome {
    /// The identity the server read from the client certificate, or its error.
    server: Result<Identity, String>,
    /// What the client read back, or its error.
    client: Result<String, String>,
}

/// Serves one connection: reads "ping", answers with the caller's identity URI.
async fn serve_one(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> Result<Identity, String> {
    let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
    let mut tls = TlsAcceptor::from(config)
        .accept(tcp)
        .await
        .map_err(|e| e.to_string())?;
    let der = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no peer certificate")?
        .clone();
    let identity = identity_from_cert(&der).map_err(|e| e.to_string())?;
    let mut ping = [0u8; 4];
    tls.read_exact(&mut ping).await.map_err(|e| e.to_string())?;
    let reply = format!(
        "{identity} {}",
        String::from_utf8_lossy(tls.get_ref().1.alpn_protocol().unwrap_or(b"-"))
    );
    tls.write_all(reply.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    tls.shutdown().await.map_err(|e| e.to_string())?;
    Ok(identity)
}

/// Connects, sends "ping" and reads the answer to the end.
async fn call(port: u16, config: Arc<rustls::ClientConfig>) -> Result<String, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tls.write_all(b"ping")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    tls.read_to_string(&mut answer)
        .await
        .map_err(|e| format!("read: {e}"))?;
    Ok(answer)
}

async fn exchange(server: Arc<rustls::ServerConfig>, client: Arc<rustls::ClientConfig>) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server_task = tokio::spawn(serve_one(listener, server));
    let client = call(port, client).await;
    let server = server_task.await.unwrap();
    Outcome { server, client }
}

#[tokio::test]
async fn client_with_cert_is_identified() {
    let pki = Pki::new();
    let out = exchange(pki.server(&["ca"]), pki.client("ca", Some("counter-a"))).await;
    assert_eq!(out.server.unwrap(), id_a());
    assert_eq!(
        out.client.unwrap(),
        "urn:tongban:sz-hrss:counter-01 http/1.1"
    );
}

#[tokio::test]
async fn h2_is_offered() {
    let pki = Pki::new();
    let ca = [pki.path("ca.pem")];
    let pair = (pki.path("counter-a.pem"), pki.path("counter-a.key"));
    let client = client_config(&ca, Some((&pair.0, &pair.1)), vec![b"h2".to_vec()]).unwrap();
    let out = exchange(pki.server(&["ca"]), client).await;
    assert!(out.client.unwrap().ends_with(" h2"));
}

#[tokio::test]
async fn client_from_another_ca_is_refused() {
    let pki = Pki::new();
    let out = exchange(pki.server(&["ca"]), pki.client("ca", Some("stranger"))).await;
    let server = out.server.unwrap_err();
    assert!(server.contains("UnknownIssuer"), "{server}");
    // Under TLS 1.3 connect() may succeed; the refusal shows on the first read.
    let client = out.client.unwrap_err();
    assert!(client.contains("UnknownCA"), "{client}");
}

#[tokio::test]
async fn client_without_cert_is_refused() {
    let pki = Pki::new();
    let out = exchange(pki.server(&["ca"]), pki.client("ca", None)).await;
    let server = out.server.unwrap_err();
    assert!(server.contains("no certificates"), "{server}");
    let client = out.client.unwrap_err();
    assert!(client.contains("CertificateRequired"), "{client}");
}

#[tokio::test]
async fn server_certificate_cannot_be_used_as_client_certificate() {
    let pki = Pki::new();
    let out = exchange(pki.server(&["ca"]), pki.client("ca", Some("server"))).await;
    let server = out.server.unwrap_err();
    assert!(server.contains("extended key usage"), "{server}");
    assert!(out.client.is_err());
}

#[tokio::test]
async fn several_client_cas_may_be_trusted() {
    let pki = Pki::new();
    let server = pki.server(&["ca", "other-ca"]);
    let out = exchange(server.clone(), pki.client("ca", Some("stranger"))).await;
    assert_eq!(out.server.unwrap().as_uri(), "urn:tongban:sz-psb:intruder");
    let out = exchange(server, pki.client("ca", Some("counter-a"))).await;
    assert_eq!(out.server.unwrap(), id_a());
}

#[tokio::test]
async fn client_pins_its_ca() {
    let pki = Pki::new();
    // The client trusts only the other CA, so it refuses the server.
    let out = exchange(
        pki.server(&["ca"]),
        pki.client("other-ca", Some("counter-a")),
    )
    .await;
    let client = out.client.unwrap_err();
    assert!(
        client.starts_with("connect") && client.contains("UnknownIssuer"),
        "{client}"
    );
    assert!(out.server.is_err());
}

#[tokio::test]
async fn tls12_with_client_cert_works() {
    let pki = Pki::new();
    let roots = {
        let mut r = rustls::RootCertStore::empty();
        for c in certs::load_certs(&pki.path("ca.pem")).unwrap() {
            r.add(c).unwrap();
        }
        r
    };
    let client = rustls::ClientConfig::builder_with_provider(certs::ring_provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            certs::load_certs(&pki.path("counter-a.pem")).unwrap(),
            certs::load_key(&pki.path("counter-a.key")).unwrap(),
        )
        .unwrap();
    let out = exchange(pki.server(&["ca"]), Arc::new(client)).await;
    assert_eq!(out.server.unwrap(), id_a());
}

#[test]
fn server_key_mismatch_names_both_files() {
    let pki = Pki::new();
    let (cert, key) = (pki.path("server.pem"), pki.path("counter-a.key"));
    let e = server_config(&cert, &key, &[pki.path("ca.pem")]).unwrap_err();
    assert!(matches!(e, CertError::KeyMismatch { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "{}: key does not match certificate {}",
            key.display(),
            cert.display()
        )
    );
}

#[test]
fn client_key_mismatch_names_both_files() {
    let pki = Pki::new();
    let (cert, key) = (pki.path("counter-a.pem"), pki.path("stranger.key"));
    let e = client_config(&[pki.path("ca.pem")], Some((&cert, &key)), vec![]).unwrap_err();
    assert!(matches!(e, CertError::KeyMismatch { .. }), "{e:?}");
}

#[test]
fn config_errors_name_the_file() {
    let pki = Pki::new();
    let missing = pki.path("nope.pem");
    let e = server_config(
        &pki.path("server.pem"),
        &pki.path("server.key"),
        std::slice::from_ref(&missing),
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with(&missing.display().to_string()),
        "{e}"
    );

    let garbage = pki.path("garbage.pem");
    std::fs::write(&garbage, "hello").unwrap();
    let e = client_config(std::slice::from_ref(&garbage), None, vec![]).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: no certificate found", garbage.display())
    );

    let e = server_config(&pki.path("server.pem"), &pki.path("server.key"), &[]).unwrap_err();
    assert!(matches!(e, CertError::Tls(_)));
}
