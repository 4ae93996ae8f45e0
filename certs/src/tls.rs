//! rustls server and client configurations for mutual TLS, on the ring provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{load_certs, load_key, CertError};

/// ALPN protocols the server offers, in order of preference.
pub const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// TLS 1.3 and 1.2. The ring provider's TLS 1.2 suites are all ECDHE with AEAD,
/// so both versions give forward secrecy.
static VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// rustls' ring crypto provider with its default (safe) cipher suites and key
/// exchange groups. Every config in this crate is built with it explicitly.
pub fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the server side of mutual TLS.
///
/// The server presents the chain in `cert` with the key in `key` (checked to
/// match) and requires every client to present a certificate that verifies
/// against one of the CA certificates in `client_cas` (several CAs may be trusted
/// at once). TLS 1.3 and 1.2; ALPN `h2`, `http/1.1`.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_cas: &[PathBuf],
) -> Result<Arc<ServerConfig>, CertError> {
    let provider = ring_provider();
    let roots = load_roots(client_cas)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| CertError::Tls(format!("client certificate verifier: {e}")))?;
    let (chain, private_key) = load_pair(cert, key)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(|e| CertError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, private_key)
        .map_err(|e| pair_error(cert, key, e))?;
    config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
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
    if cas.is_empty() {
        return Err(CertError::Tls("no CA certificate file given".into()));
    }
    let mut roots = RootCertStore::empty();
    for path in cas {
        for cert in load_certs(path)? {
            roots
                .add(cert)
                .map_err(|e| CertError::pem(path, format!("not a usable CA certificate: {e}")))?;
        }
    }
    Ok(roots)
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
