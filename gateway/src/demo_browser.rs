//! The demo's browser certificates: the admin's and the auditor's certificate, key
//! and CA in one PKCS#12 file each (`pki/admin.p12`, `pki/auditor.p12`), ready to
//! import into a browser to open the console. One random password protects both;
//! it is kept in `pki/browser.password` so that every run prints the same one.
//!
//! Written with `p12-keystore` (pure Rust): PBES2 with AES-256-CBC and
//! PBKDF2-HMAC-SHA-256 for the key and certificates, HMAC-SHA-256 for the MAC —
//! what current Chromium, Firefox, macOS and Windows import. No OpenSSL.

use std::path::{Path, PathBuf};

use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, LocalKeyId, PrivateKey, PrivateKeyChain};
use ring::rand::{SecureRandom as _, SystemRandom};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a bundle could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key or certificate that does not go into a bundle, or no randomness.
    #[error("browser bundle: {0}")]
    Other(String),
}

/// The demo clients that get a browser bundle: the ones the console serves.
pub const BROWSER_CLIENTS: &[&str] = &["admin", "auditor"];

/// The password file, beside the bundles.
const PASSWORD_FILE: &str = "browser.password";

/// What [`write_bundles`] made or found.
#[derive(Debug)]
pub struct BrowserBundles {
    /// The bundles' password.
    pub password: String,
    /// `pki/<name>.p12`, in [`BROWSER_CLIENTS`] order.
    pub files: Vec<PathBuf>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Write `pki/<name>.p12` for each browser client that lacks one, under the
/// password of `pki/browser.password` (made now if missing).
pub fn write_bundles(pki: &Path) -> Result<BrowserBundles, BundleError> {
    let password = password(pki)?;
    let mut files = Vec::new();
    for name in BROWSER_CLIENTS {
        let file = pki.join(format!("{name}.p12"));
        if !file.exists() {
            let der = bundle(pki, name, &password)?;
            write_private(&file, &der)?;
        }
        files.push(file);
    }
    Ok(BrowserBundles { password, files })
}

/// The bundle of client `name`: its key, its certificate, then the CA.
pub fn bundle(pki: &Path, name: &str, password: &str) -> Result<Vec<u8>, BundleError> {
    let key_path = pki.join(format!("{name}.key"));
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| BundleError::Other(format!("{}: {e}", key_path.display())))?;
    let PrivateKeyDer::Pkcs8(key) = key else {
        return Err(BundleError::Other(format!(
            "{}: not a PKCS#8 key",
            key_path.display()
        )));
    };
    let mut chain = Vec::new();
    for file in [pki.join(format!("{name}.pem")), pki.join("ca.pem")] {
        let der = CertificateDer::from_pem_file(&file)
            .map_err(|e| BundleError::Other(format!("{}: {e}", file.display())))?;
        chain.push(
            Certificate::from_der(der.as_ref())
                .map_err(|e| BundleError::Other(format!("{}: {e}", file.display())))?,
        );
    }
    let key = PrivateKey::from_der(key.secret_pkcs8_der())
        .map_err(|e| BundleError::Other(format!("{}: {e}", key_path.display())))?;
    // The local key id ties the key to its certificate inside the file.
    let id = ring::digest::digest(&ring::digest::SHA256, chain[0].as_der());
    let mut store = KeyStore::new();
    store.add_entry(
        name,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(
            LocalKeyId(id.as_ref().to_vec()),
            key,
            chain,
        )),
    );
    store
        .writer(password)
        .write()
        .map_err(|e| BundleError::Other(format!("PKCS#12 of {name}: {e}")))
}

/// The bundles' password: read from `pki/browser.password`, or made (16 letters
/// and digits without look-alikes) and written there.
fn password(pki: &Path) -> Result<String, BundleError> {
    let file = pki.join(PASSWORD_FILE);
    if file.exists() {
        let text = std::fs::read_to_string(&file).map_err(io(&file))?;
        return Ok(text.trim().to_owned());
    }
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY346789";
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| BundleError::Other("no random source for the bundle password".into()))?;
    let password: String = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    write_private(&file, format!("{password}\n").as_bytes())?;
    Ok(password)
}

/// Write `bytes` readable by the owner only (a key is inside).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))
}
