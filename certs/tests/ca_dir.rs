//! A CA directory as operators use it: init, issue, list, revoke, CRL, intermediates.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use certs::time::{Duration, OffsetDateTime};
use certs::{
    CaDir, CertError, CertInfo, CertKind, CrlInfo, InitOptions, IssueRequest, KeyAlg,
    RevocationReason, Status, Subject, Validity,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateRevocationListDer;

fn options(name: &str, alg: KeyAlg) -> InitOptions {
    InitOptions {
        common_name: name.into(),
        alg,
        validity: Validity::days(3650).unwrap(),
        crl_next_update: Duration::days(7),
    }
}

fn client(identity: &str) -> IssueRequest {
    IssueRequest {
        subject: Subject::Client {
            identity: identity.parse().unwrap(),
            common_name: String::new(),
        },
        validity: Validity::days(30).unwrap(),
        key_alg: KeyAlg::EcdsaP256,
    }
}

fn server() -> IssueRequest {
    IssueRequest {
        subject: Subject::Server {
            dns: vec!["localhost".into()],
            ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        },
        validity: Validity::days(30).unwrap(),
        key_alg: KeyAlg::EcdsaP256,
    }
}

fn crl(dir: &Path) -> CrlInfo {
    let der = CertificateRevocationListDer::from_pem_file(dir.join("crl.pem")).unwrap();
    CrlInfo::from_der(&der).unwrap()
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_issue_list_revoke_crl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let mut ca = CaDir::init(&dir, &options("Test CA", KeyAlg::EcdsaP256), None).unwrap();
    #[cfg(unix)]
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    assert_eq!(crl(&dir).crl_number, Some(1));
    assert!(crl(&dir).revoked.is_empty());

    let a = ca
        .issue(
            &client("urn:tongban:sz-hrss:counter-01"),
            &dir,
            "counter-a",
            false,
        )
        .unwrap();
    let s = ca.issue(&server(), &dir, "server", false).unwrap();
    #[cfg(unix)]
    assert_eq!(mode(&a.key), 0o600);
    assert_eq!(a.info.kind, CertKind::Client);
    assert_eq!(s.info.kind, CertKind::Server);

    // The index survives reopening and lists both.
    let ca = CaDir::open(&dir).unwrap();
    let index = ca.index().unwrap();
    let now = OffsetDateTime::now_utc();
    assert_eq!(index.certificates.len(), 2);
    assert_eq!(
        index.certificates[0].identity.as_deref(),
        Some("urn:tongban:sz-hrss:counter-01")
    );
    assert_eq!(index.certificates[1].dns, vec!["localhost".to_owned()]);
    // 30 days: valid but inside the 30-day warning window.
    assert_eq!(index.certificates[0].status(now), Status::ExpiresSoon);

    // Revoke by file, then by serial.
    let out = ca
        .revoke(
            a.cert.to_str().unwrap(),
            RevocationReason::KeyCompromise,
            Duration::days(7),
        )
        .unwrap();
    assert!(!out.already);
    assert_eq!(out.crl.number, 2);
    assert_eq!(crl(&dir).revoked, vec![a.info.serial.clone()]);
    let again = ca
        .revoke(
            &a.info.serial,
            RevocationReason::Superseded,
            Duration::days(7),
        )
        .unwrap();
    assert!(again.already, "revoking twice is reported, not an error");
    let upper = s.info.serial.to_uppercase();
    ca.revoke(&upper, RevocationReason::Superseded, Duration::days(1))
        .unwrap();
    let listed = crl(&dir);
    assert_eq!(listed.revoked.len(), 2);
    assert_eq!(listed.crl_number, Some(4), "CRL numbers only grow");
    let status = ca.index().unwrap().certificates[0].status(now);
    assert_eq!(status, Status::Revoked(RevocationReason::KeyCompromise));

    // An explicit CRL to another file keeps counting.
    let out = tmp.path().join("published.crl.pem");
    let written = ca.write_crl(Duration::days(2), Some(&out)).unwrap();
    assert_eq!(written.number, 5);
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .contains("BEGIN X509 CRL"));
    assert!(!dir.join("index.lock").exists(), "the lock is released");
}

#[test]
fn refusals_name_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let mut ca = CaDir::init(&dir, &options("Test CA", KeyAlg::EcdsaP256), None).unwrap();

    let e = CaDir::init(&dir, &options("Again", KeyAlg::EcdsaP256), None).unwrap_err();
    assert!(e.to_string().contains("already holds a CA"), "{e}");
    assert!(e.is_bad_input());

    ca.issue(&client("urn:tongban:a:b"), &dir, "a", false)
        .unwrap();
    let e = ca
        .issue(&client("urn:tongban:a:b"), &dir, "a", false)
        .unwrap_err();
    assert!(e.to_string().contains("pass --force"), "{e}");
    ca.issue(&client("urn:tongban:a:b"), &dir, "a", true)
        .unwrap();
    for bad in ["ca", "../x", "", "crl"] {
        assert!(
            ca.issue(&client("urn:tongban:a:b"), &dir, bad, true)
                .is_err(),
            "{bad}"
        );
    }

    let e = ca
        .revoke("00ff00", RevocationReason::Unspecified, Duration::days(1))
        .unwrap_err();
    assert!(e.to_string().contains("is not in"), "{e}");
    let e = ca
        .revoke(
            "not-a-serial",
            RevocationReason::Unspecified,
            Duration::days(1),
        )
        .unwrap_err();
    assert!(e.to_string().contains("neither a certificate file"), "{e}");
    let missing = tmp.path().join("missing.pem");
    let e = ca
        .revoke(
            missing.to_str().unwrap(),
            RevocationReason::Unspecified,
            Duration::days(1),
        )
        .unwrap_err();
    assert!(
        e.to_string().starts_with(&missing.display().to_string()),
        "{e}"
    );
    assert!(e.is_bad_input());

    // A certificate from another CA cannot be revoked here.
    let other_dir = tmp.path().join("other");
    let mut other = CaDir::init(&other_dir, &options("Other CA", KeyAlg::Ed25519), None).unwrap();
    let foreign = other
        .issue(&client("urn:tongban:x:y"), &other_dir, "x", false)
        .unwrap();
    let e = ca
        .revoke(
            foreign.cert.to_str().unwrap(),
            RevocationReason::Unspecified,
            Duration::days(1),
        )
        .unwrap_err();
    assert!(e.to_string().contains("not by this CA"), "{e}");

    // A key that does not belong to the CA certificate names both files.
    std::fs::copy(other_dir.join("ca.key"), dir.join("ca.key")).unwrap();
    let e = CaDir::open(&dir).unwrap_err();
    assert!(matches!(e, CertError::KeyMismatch { .. }), "{e}");
    // A malformed CA certificate names the file.
    std::fs::write(dir.join("ca.pem"), "-----BEGIN CERTIFICATE-----\n@@\n").unwrap();
    let e = CaDir::open(&dir).unwrap_err().to_string();
    assert!(
        e.starts_with(&dir.join("ca.pem").display().to_string()),
        "{e}"
    );
    // A malformed index names the file and line.
    std::fs::write(other_dir.join("index.json"), "{\n\"version\": 1,\n}").unwrap();
    let e = other.index().unwrap_err().to_string();
    assert!(e.contains("index.json: line 3"), "{e}");
}

#[test]
fn intermediate_issues_certificates_that_carry_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let root = CaDir::init(
        &tmp.path().join("root"),
        &options("Root", KeyAlg::Ed25519),
        None,
    )
    .unwrap();
    let idir = tmp.path().join("dept");
    let mut inter =
        CaDir::init(&idir, &options("Dept CA", KeyAlg::EcdsaP256), Some(&root)).unwrap();
    assert!(!inter.authority().is_root());
    // The root records the intermediate it signed.
    let listed = root.index().unwrap();
    assert_eq!(listed.certificates.len(), 1);
    assert_eq!(listed.certificates[0].kind, CertKind::Ca);

    let issued = inter
        .issue(
            &client("urn:tongban:sz-civil:counter-02"),
            &idir,
            "c",
            false,
        )
        .unwrap();
    let chain = certs::load_certs(&issued.cert).unwrap();
    assert_eq!(chain.len(), 2, "leaf and intermediate, not the root");
    let leaf = CertInfo::from_der(&chain[0]).unwrap();
    let mid = CertInfo::from_der(&chain[1]).unwrap();
    assert!(leaf.is_issued_by(&mid));
    assert!(mid.is_issued_by(root.certificate()));

    // Reopened from disk, it still sends the chain.
    let mut reopened = CaDir::open(&idir).unwrap();
    let again = reopened
        .issue(
            &client("urn:tongban:sz-civil:counter-03"),
            &idir,
            "d",
            false,
        )
        .unwrap();
    assert_eq!(certs::load_certs(&again.cert).unwrap().len(), 2);

    // An intermediate cannot sign further CAs.
    let e = CaDir::init(
        &tmp.path().join("deeper"),
        &options("Deeper", KeyAlg::EcdsaP256),
        Some(&inter),
    )
    .unwrap_err();
    assert!(e.to_string().contains("pathlen"), "{e}");

    // The root can revoke the intermediate.
    root.revoke(
        idir.join("ca.pem").to_str().unwrap(),
        RevocationReason::CaCompromise,
        Duration::days(1),
    )
    .unwrap();
    assert_eq!(crl(&tmp.path().join("root")).revoked, vec![mid.serial]);
}
