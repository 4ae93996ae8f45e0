//! rustls server and client configurations for mutual TLS, on the ring provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, RootCertStore, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use time::OffsetDateTime;

use crate::verifier::TongbanClientVerifier;
use crate::{load_certs, load_key, CertError, CertInfo, CrlInfo};

/// ALPN protocols the server offers, in order of preference.
pub const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// TLS 1.3 and 1.2 (the latter with ECDHE + AEAD suites only, see [`ring_provider`]).
static VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// rustls' ring crypto provider, restricted to forward-secret AEAD cipher suites:
/// every TLS 1.3 suite, and the TLS 1.2 suites with ECDHE key exchange and
/// AES-GCM or ChaCha20-Poly1305. (ring's defaults are already exactly these; the
/// filter keeps it so if a later provider adds others.) Every config in this crate
/// is built with it explicitly.
pub fn ring_provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.retain(forward_secret_aead);
    Arc::new(provider)
}

fn forward_secret_aead(suite: &SupportedCipherSuite) -> bool {
    match suite {
        SupportedCipherSuite::Tls13(_) => true,
        SupportedCipherSuite::Tls12(_) => suite.suite().as_str().is_some_and(|name| {
            name.starts_with("TLS_ECDHE_")
                && (name.contains("_GCM_") || name.contains("CHACHA20_POLY1305"))
        }),
    }
}

/// What to do with a client certificate no listed CRL speaks for (its issuer
/// publishes none, or its CRL is not listed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnknownRevocation {
    /// Refuse it (fail closed): every CA in a client's chain needs its CRL listed.
    #[default]
    Deny,
    /// Accept it: revocation is checked only where a CRL is listed.
    Allow,
}

/// The files the server side of mutual TLS is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA certificates whose client certificates are accepted (PEM, one or more files).
    pub client_cas: Vec<PathBuf>,
    /// CRLs checked at every handshake (PEM); none means revocation is not checked.
    pub crls: Vec<PathBuf>,
    /// Applies when `crls` is not empty.
    pub unknown_revocation: UnknownRevocation,
}

/// A server config and what it was built from, for logs and expiry checks.
#[derive(Debug, Clone)]
pub struct ServerTrust {
    /// The config to accept connections with.
    pub config: Arc<ServerConfig>,
    /// The server certificate chain presented to clients.
    pub server_chain: Vec<CertInfo>,
    /// The trusted client CAs, with the file each came from.
    pub client_cas: Vec<(PathBuf, CertInfo)>,
    /// The CRLs, with the file each came from.
    pub crls: Vec<(PathBuf, CrlInfo)>,
    /// Things an operator should know (a trusted CA without a CRL, a stale CRL, ...).
    pub warnings: Vec<String>,
}

/// Builds the server side of mutual TLS.
///
/// The server presents the chain in `cert` with the key in `key` (checked to
/// match) and requires every client to present a certificate that verifies
/// against one of the CA certificates in `client_cas` (several CAs may be trusted
/// at once), is a client certificate and carries a Tongban identity. TLS 1.3 and
/// 1.2; ALPN `h2`, `http/1.1`. No CRLs: see [`server_trust`].
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_cas: &[PathBuf],
) -> Result<Arc<ServerConfig>, CertError> {
    let files = ServerTlsFiles {
        cert: cert.to_owned(),
        key: key.to_owned(),
        client_cas: client_cas.to_vec(),
        crls: Vec::new(),
        unknown_revocation: UnknownRevocation::Deny,
    };
    Ok(server_trust(&files)?.config)
}

/// Builds the server side of mutual TLS from `files`, checking client certificates
/// against the CRLs too, and reports what it loaded.
///
/// Client certificates are verified by webpki (chain to one of `client_cas`,
/// validity period, CRLs over the whole chain) and then by Tongban's rules
/// (clientAuth extended key usage present, exactly one `urn:tongban:` URI SAN).
/// A CRL past its next update is still used (and reported in `warnings`):
/// refusing every client because a CRL was not refreshed in time is an outage.
pub fn server_trust(files: &ServerTlsFiles) -> Result<ServerTrust, CertError> {
    let provider = ring_provider();
    let (roots, client_cas) = load_roots_with_info(&files.client_cas)?;
    let (crl_ders, crls) = load_crls(&files.crls)?;
    let verifier = client_verifier(roots, crl_ders, files, &provider)?;
    let (chain, private_key) = load_pair(&files.cert, &files.key)?;
    let server_chain = chain
        .iter()
        .map(|c| CertInfo::from_der(c).map_err(|reason| CertError::pem(&files.cert, reason)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(|e| CertError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, private_key)
        .map_err(|e| pair_error(&files.cert, &files.key, e))?;
    config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
    let warnings = trust_warnings(files, &client_cas, &crls);
    Ok(ServerTrust {
        config: Arc::new(config),
        server_chain,
        client_cas,
        crls,
        warnings,
    })
}

fn client_verifier(
    roots: RootCertStore,
    crls: Vec<CertificateRevocationListDer<'static>>,
    files: &ServerTlsFiles,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, CertError> {
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .with_crls(crls);
    if files.unknown_revocation == UnknownRevocation::Allow {
        builder = builder.allow_unknown_revocation_status();
    }
    let inner = builder.build().map_err(|e| {
        let names: Vec<String> = files.crls.iter().map(|p| p.display().to_string()).collect();
        CertError::Tls(format!(
            "client certificate verifier (CRLs {}): {e}",
            names.join(", ")
        ))
    })?;
    Ok(Arc::new(TongbanClientVerifier::new(inner)))
}

/// CRLs as DER for the verifier, and what each says with the file it came from.
type LoadedCrls = (
    Vec<CertificateRevocationListDer<'static>>,
    Vec<(PathBuf, CrlInfo)>,
);

/// Every CRL in every file; a file without one, or with a malformed one, is named.
fn load_crls(paths: &[PathBuf]) -> Result<LoadedCrls, CertError> {
    let mut ders = Vec::new();
    let mut infos = Vec::new();
    for path in paths {
        let bytes = std::fs::read(path).map_err(|e| CertError::io(path, e))?;
        let found = CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CertError::pem(path, format!("bad PEM: {e}")))?;
        if found.is_empty() {
            return Err(CertError::pem(
                path,
                "no CRL found (expected -----BEGIN X509 CRL-----)",
            ));
        }
        for der in found {
            let info = CrlInfo::from_der(&der).map_err(|reason| CertError::pem(path, reason))?;
            infos.push((path.clone(), info));
            ders.push(der);
        }
    }
    Ok((ders, infos))
}

/// What an operator should hear about the trust just loaded.
fn trust_warnings(
    files: &ServerTlsFiles,
    cas: &[(PathBuf, CertInfo)],
    crls: &[(PathBuf, CrlInfo)],
) -> Vec<String> {
    let mut out = Vec::new();
    let now = OffsetDateTime::now_utc();
    if !crls.is_empty() && files.unknown_revocation == UnknownRevocation::Deny {
        for (path, ca) in cas {
            if !crls.iter().any(|(_, crl)| crl.is_issued_by(ca)) {
                out.push(format!(
                    "client CA {} ({}) has no CRL in tls.crls: every certificate it issued is refused (revocation unknown); list its CRL or set tls.unknown_revocation = \"allow\"",
                    ca.subject,
                    path.display()
                ));
            }
        }
    }
    for (path, crl) in crls {
        if crl.is_stale(now) {
            out.push(format!(
                "CRL {} from {} is past its next update ({}); it is still used — publish a fresh one (tongban certs crl)",
                path.display(),
                crl.issuer,
                crl.next_update.map(crate::rfc3339).unwrap_or_default()
            ));
        }
    }
    out
}

/// Builds the client side of mutual TLS.
///
/// The client trusts only the CA certificates in `cas` (no system roots), and
/// presents the certificate and key in `client` (`(cert, key)`) when given.
/// TLS 1.3 and 1.2; ALPN as given, e.g. `vec![b"http/1.1".to_vec()]`.
pub fn client_config(
    cas: &[PathBuf],
    client: Option<(&Path, &Path)>,
    alpn: Vec<Vec<u8>>,
) -> Result<Arc<ClientConfig>, CertError> {
    let roots = load_roots(cas)?;
    let builder = ClientConfig::builder_with_provider(ring_provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| CertError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match client {
        Some((cert, key)) => {
            let (chain, private_key) = load_pair(cert, key)?;
            builder
                .with_client_auth_cert(chain, private_key)
                .map_err(|e| pair_error(cert, key, e))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

/// A root store holding every certificate of every file in `cas`.
fn load_roots(cas: &[PathBuf]) -> Result<RootCertStore, CertError> {
    Ok(load_roots_with_info(cas)?.0)
}

/// [`load_roots`], also reporting each CA.
fn load_roots_with_info(
    cas: &[PathBuf],
) -> Result<(RootCertStore, Vec<(PathBuf, CertInfo)>), CertError> {
    if cas.is_empty() {
        return Err(CertError::Tls("no CA certificate file given".into()));
    }
    let mut roots = RootCertStore::empty();
    let mut infos = Vec::new();
    for path in cas {
        for cert in load_certs(path)? {
            let info = CertInfo::from_der(&cert).map_err(|reason| CertError::pem(path, reason))?;
            roots
                .add(cert)
                .map_err(|e| CertError::pem(path, format!("not a usable CA certificate: {e}")))?;
            infos.push((path.clone(), info));
        }
    }
    Ok((roots, infos))
}

/// Reads a certificate chain and its private key.
fn load_pair(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CertError> {
    Ok((load_certs(cert)?, load_key(key)?))
}

/// Turns rustls' complaint about a certificate/key pair into an error naming both files.
fn pair_error(cert: &Path, key: &Path, e: rustls::Error) -> CertError {
    match e {
        rustls::Error::InconsistentKeys(_) => CertError::KeyMismatch {
            key: key.to_path_buf(),
            cert: cert.to_path_buf(),
        },
        other => CertError::pem(
            key,
            format!("unusable with certificate {}: {other}", cert.display()),
        ),
    }
}
