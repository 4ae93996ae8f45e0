//! Reading certificates and keys from PEM files, and writing them with the right modes.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::CertError;

/// Loads every certificate from a PEM file, in file order.
///
/// Fails, naming the file, when it cannot be read, a certificate block is
/// malformed, or it holds no certificate at all.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let bytes = fs::read(path).map_err(|e| CertError::io(path, e))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::pem(path, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(CertError::pem(path, "no certificate found"));
    }
    Ok(certs)
}

/// Loads the first private key (PKCS#8, PKCS#1 or SEC1) from a PEM file.
///
/// Fails, naming the file, when it cannot be read or holds no private key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let bytes = fs::read(path).map_err(|e| CertError::io(path, e))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => CertError::pem(path, "no private key found"),
        other => CertError::pem(path, format!("bad PEM: {other}")),
    })
}

/// Writes a private key PEM readable by its owner only (mode 0600 on Unix),
/// creating parent directories.
///
/// The file is written beside its final name and renamed into place, so a
/// reader never sees half a key and a key is never briefly world-readable.
pub fn write_private_pem(path: &Path, pem: &str) -> Result<(), CertError> {
    write_atomically(path, pem, 0o600)
}

/// Writes a certificate (or other public) PEM with mode 0644 on Unix,
/// creating parent directories.
pub fn write_public_pem(path: &Path, pem: &str) -> Result<(), CertError> {
    write_atomically(path, pem, 0o644)
}

/// Writes `contents` to a temporary sibling of `path` with `mode`, syncs it,
/// renames it over `path` and syncs the directory, so that after a crash the file
/// is either the old or the new version.
pub(crate) fn write_atomically(path: &Path, contents: &str, mode: u32) -> Result<(), CertError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| CertError::io(parent, e))?;
    }
    let tmp = temp_sibling(path);
    let written = write_new(&tmp, contents, mode).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        // Best effort: the temporary file is useless once the write failed.
        let _ = fs::remove_file(&tmp);
        return Err(CertError::io(path, e));
    }
    sync_parent(path);
    Ok(())
}

/// Makes a rename durable. Best effort: some file systems refuse to sync a directory.
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// `dir/.name.tmp-<pid>` for `dir/name`.
fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Creates (or truncates) `path` with `mode`, writes and syncs `contents`.
fn write_new(path: &Path, contents: &str, mode: u32) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(mode);
        let mut file = options.open(path)?;
        // `mode` is filtered by the umask and ignored for an existing file: set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        let mut file = options.open(path)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn load_certs_names_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.pem");
        let e = load_certs(&path).unwrap_err().to_string();
        assert!(e.starts_with(&path.display().to_string()), "{e}");
    }

    #[test]
    fn load_certs_names_a_garbage_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        fs::write(&path, "this is not a certificate\n").unwrap();
        let e = load_certs(&path).unwrap_err().to_string();
        assert_eq!(e, format!("{}: no certificate found", path.display()));
    }

    #[test]
    fn load_certs_rejects_a_broken_pem_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        fs::write(&path, "-----BEGIN CERTIFICATE-----\n!!!!\n").unwrap();
        let e = load_certs(&path).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: ", path.display())), "{e}");
    }

    #[test]
    fn load_key_names_a_file_without_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        fs::write(&path, "nothing here").unwrap();
        let e = load_key(&path).unwrap_err().to_string();
        assert_eq!(e, format!("{}: no private key found", path.display()));
    }

    #[cfg(unix)]
    #[test]
    fn private_pem_is_owner_only_and_public_pem_is_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("pki/nested/a.key");
        let cert = dir.path().join("pki/nested/a.pem");
        write_private_pem(&key, "KEY").unwrap();
        write_public_pem(&cert, "CERT").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&cert), 0o644);
        assert_eq!(fs::read_to_string(&key).unwrap(), "KEY");
        // Overwriting keeps the mode and replaces the content.
        write_private_pem(&key, "KEY2").unwrap();
        assert_eq!(mode(&key), 0o600);
        assert_eq!(fs::read_to_string(&key).unwrap(), "KEY2");
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("pki/nested"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    }
}
