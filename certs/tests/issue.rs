//! Issuing certificates and reading them back.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};

use certs::{fingerprint, identity_from_cert, Authority, CertError, Identity, KeyAlg};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::*;

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

fn identity() -> Identity {
    "urn:tongban:sz-hrss:counter-01".parse().unwrap()
}

#[test]
fn client_cert_carries_its_identity() {
    for alg in [KeyAlg::EcdsaP256, KeyAlg::Ed25519] {
        let ca = Authority::create("Tongban Dev CA", alg).unwrap();
        let issued = ca.issue_client(&identity(), "counter 01", 30).unwrap();
        let der = der(&issued.cert_pem);
        assert_eq!(identity_from_cert(&der).unwrap(), identity());

        let (_, x509) = parse_x509_certificate(&der).unwrap();
        let eku = x509.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(!x509.is_ca());
        assert_eq!(
            x509.issuer(),
            parse_x509_certificate(ca.cert_der()).unwrap().1.subject()
        );
        assert!(issued.key_pem.contains("BEGIN PRIVATE KEY"));
    }
}

#[test]
fn server_cert_has_server_auth_only_and_its_sans() {
    let ca = Authority::create("Tongban Dev CA", KeyAlg::default()).unwrap();
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let issued = ca
        .issue_server(&["localhost".into(), "gw.example".into()], &[ip], 90)
        .unwrap();
    let der = der(&issued.cert_pem);
    let (_, x509) = parse_x509_certificate(&der).unwrap();
    let eku = x509.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth);
    assert!(
        !eku.client_auth,
        "a server certificate must not be usable as a client"
    );
    assert!(x509.key_usage().unwrap().unwrap().value.digital_signature());
    let sans = &x509
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    assert!(sans.contains(&GeneralName::DNSName("localhost")));
    assert!(sans.contains(&GeneralName::DNSName("gw.example")));
    assert!(sans.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])));
    // No identity: a server certificate cannot be used to call the gateway.
    let e = identity_from_cert(&der).unwrap_err().to_string();
    assert!(e.contains("no urn:tongban: URI SAN"), "{e}");
}

#[test]
fn ca_has_ca_constraints_and_signing_usages() {
    let ca = Authority::create("Tongban Dev CA", KeyAlg::EcdsaP256).unwrap();
    let (_, x509) = parse_x509_certificate(ca.cert_der()).unwrap();
    assert!(x509.is_ca());
    let ku = x509.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && ku.digital_signature());
    let validity = x509.validity().time_to_expiration().unwrap();
    assert!(validity.whole_days() >= 3649, "{validity:?}");
}

#[test]
fn ca_reloaded_from_pem_issues_again() {
    for alg in [KeyAlg::EcdsaP256, KeyAlg::Ed25519] {
        let ca = Authority::create("Tongban Dev CA", alg).unwrap();
        let saved = ca.certified();
        let reloaded = Authority::from_pem(&saved.cert_pem, &saved.key_pem).unwrap();
        assert_eq!(reloaded.cert_der(), ca.cert_der());
        assert_eq!(reloaded.certified().key_pem, saved.key_pem);

        let issued = reloaded.issue_client(&identity(), "", 1).unwrap();
        let leaf = der(&issued.cert_pem);
        let (_, x509) = parse_x509_certificate(&leaf).unwrap();
        let (_, ca_x509) = parse_x509_certificate(ca.cert_der()).unwrap();
        assert_eq!(x509.issuer(), ca_x509.subject());
        x509.verify_signature(Some(ca_x509.public_key())).unwrap();
        assert_eq!(identity_from_cert(&leaf).unwrap(), identity());
    }
}

#[test]
fn ca_reload_rejects_wrong_key_and_non_ca() {
    let ca = Authority::create("CA one", KeyAlg::EcdsaP256).unwrap();
    let other = Authority::create("CA two", KeyAlg::EcdsaP256).unwrap();
    let e = Authority::from_pem(&ca.certified().cert_pem, &other.certified().key_pem).unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");

    let leaf = ca.issue_client(&identity(), "x", 1).unwrap();
    let e = Authority::from_pem(&leaf.cert_pem, &leaf.key_pem).unwrap_err();
    assert!(e.to_string().contains("not a CA"), "{e}");

    let e = Authority::from_pem("garbage", &ca.certified().key_pem).unwrap_err();
    assert_eq!(e.to_string(), "CA: certificate: no certificate found");
}

#[test]
fn ca_load_names_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::create("CA one", KeyAlg::EcdsaP256).unwrap();
    let other = Authority::create("CA two", KeyAlg::EcdsaP256).unwrap();
    let (cert, key) = (dir.path().join("ca.pem"), dir.path().join("ca.key"));
    certs::write_public_pem(&cert, &ca.certified().cert_pem).unwrap();
    certs::write_private_pem(&key, &ca.certified().key_pem).unwrap();
    assert_eq!(
        Authority::load(&cert, &key).unwrap().cert_der(),
        ca.cert_der()
    );

    certs::write_private_pem(&key, &other.certified().key_pem).unwrap();
    let e = Authority::load(&cert, &key).unwrap_err();
    assert!(matches!(e, CertError::KeyMismatch { .. }));
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
fn serials_differ() {
    let ca = Authority::create("CA", KeyAlg::EcdsaP256).unwrap();
    let a = der(&ca.issue_client(&identity(), "a", 1).unwrap().cert_pem);
    let b = der(&ca.issue_client(&identity(), "b", 1).unwrap().cert_pem);
    let serial = |d: &[u8]| parse_x509_certificate(d).unwrap().1.raw_serial().to_vec();
    assert_ne!(serial(&a), serial(&b));
    assert_eq!(serial(&a).len(), 16);
}

#[test]
fn bad_issue_parameters_are_refused() {
    let ca = Authority::create("CA", KeyAlg::EcdsaP256).unwrap();
    assert!(ca.issue_server(&[], &[], 30).is_err());
    assert!(ca.issue_server(&["localhost".into()], &[], 0).is_err());
    assert!(ca.issue_client(&identity(), "x", 0).is_err());
    assert!(Authority::create("  ", KeyAlg::EcdsaP256).is_err());
}

#[test]
fn fingerprint_is_lowercase_hex_sha256() {
    let ca = Authority::create("CA", KeyAlg::EcdsaP256).unwrap();
    let fp = fingerprint(ca.cert_der());
    assert_eq!(fp.len(), 64);
    assert!(fp
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    assert_eq!(
        fingerprint(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn identity_from_cert_rejects_garbage_and_several_uris() {
    assert!(identity_from_cert(b"not der").is_err());

    // A certificate with two tongban URIs (built directly with rcgen).
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    for uri in ["urn:tongban:a:one", "urn:tongban:b:two"] {
        params
            .subject_alt_names
            .push(rcgen::SanType::URI(uri.try_into().unwrap()));
    }
    let two = params.self_signed(&key).unwrap();
    let e = identity_from_cert(two.der()).unwrap_err().to_string();
    assert!(e.contains("several"), "{e}");

    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![
        rcgen::SanType::URI("spiffe://example/x".try_into().unwrap()),
        rcgen::SanType::URI("urn:tongban:SZ:x".try_into().unwrap()),
    ];
    let bad = params.self_signed(&key).unwrap();
    let e = identity_from_cert(bad.der()).unwrap_err().to_string();
    assert!(e.contains("contains 'S'"), "{e}");

    let none = rcgen::CertificateParams::default()
        .self_signed(&key)
        .unwrap();
    let e = identity_from_cert(none.der()).unwrap_err().to_string();
    assert!(e.contains("no subjectAltName"), "{e}");
}

#[cfg(feature = "serde")]
#[test]
fn identity_serializes_as_its_uri() {
    let json = serde_json::to_string(&identity()).unwrap();
    assert_eq!(json, "\"urn:tongban:sz-hrss:counter-01\"");
    assert_eq!(serde_json::from_str::<Identity>(&json).unwrap(), identity());
    assert!(serde_json::from_str::<Identity>("\"urn:x\"").is_err());
}
