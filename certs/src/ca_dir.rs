//! A CA directory: what `tongban certs` works on.
//!
//! ```text
//! DIR/ca.pem      this CA's certificate (peers trust the root's)
//! DIR/ca.key      its private key, mode 0600
//! DIR/chain.pem   only for an intermediate: the certificates above it, up to the root
//! DIR/index.json  every certificate issued, with status (see `Index`)
//! DIR/crl.pem     the current CRL, signed by this CA
//! DIR/index.lock  held while a command changes the directory
//! ```

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration as StdDuration, Instant};

use time::{Duration, OffsetDateTime};

use crate::files::{write_private_pem, write_public_pem};
use crate::index::{Index, IndexEntry, Revocation};
use crate::info::parse_serial;
use crate::{
    load_certs, Authority, CertError, CertInfo, CertifiedKey, Identity, KeyAlg, RevocationReason,
    Validity,
};

/// The CA certificate's file name.
pub const CA_CERT: &str = "ca.pem";
/// The CA key's file name.
pub const CA_KEY: &str = "ca.key";
/// The parents of an intermediate CA.
pub const CHAIN: &str = "chain.pem";
/// The issued-certificate index.
pub const INDEX: &str = "index.json";
/// The current CRL.
pub const CRL: &str = "crl.pem";
/// The lock held while the directory changes.
const LOCK: &str = "index.lock";
/// How long a command waits for another one to release the lock.
const LOCK_WAIT: StdDuration = StdDuration::from_secs(5);
/// File stems that would overwrite the CA's own files.
const RESERVED: [&str; 4] = ["ca", "chain", "crl", "index"];

/// A CA and its directory.
pub struct CaDir {
    dir: PathBuf,
    authority: Authority,
    cert: CertInfo,
}

/// How `certs init` makes a CA.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Subject common name.
    pub common_name: String,
    /// Key algorithm of the CA key.
    pub alg: KeyAlg,
    /// Validity of the CA certificate.
    pub validity: Validity,
    /// How far ahead the first (empty) CRL promises the next one.
    pub crl_next_update: Duration,
}

/// What to issue.
#[derive(Debug, Clone)]
pub enum Subject {
    /// A TLS server: DNS names and IP addresses (at least one of either).
    Server {
        /// DNS names.
        dns: Vec<String>,
        /// IP addresses.
        ips: Vec<IpAddr>,
    },
    /// A caller: its `urn:tongban:` identity and a human-readable common name
    /// (empty: the identity).
    Client {
        /// The identity URI.
        identity: Identity,
        /// Subject common name.
        common_name: String,
    },
}

/// A certificate request for [`CaDir::issue`].
#[derive(Debug, Clone)]
pub struct IssueRequest {
    /// Server or client.
    pub subject: Subject,
    /// Validity window.
    pub validity: Validity,
    /// Key algorithm of the new key.
    pub key_alg: KeyAlg,
}

/// Files written by [`CaDir::issue`].
#[derive(Debug, Clone)]
pub struct Issued {
    /// Certificate (and chain) PEM.
    pub cert: PathBuf,
    /// Private key PEM, mode 0600.
    pub key: PathBuf,
    /// What was issued.
    pub info: CertInfo,
}

/// What [`CaDir::revoke`] did.
#[derive(Debug, Clone)]
pub struct Revoked {
    /// The index entry, now revoked.
    pub entry: IndexEntry,
    /// True when it was revoked already (nothing changed but the CRL).
    pub already: bool,
    /// The CRL written afterwards.
    pub crl: CrlWritten,
}

/// A CRL written by [`CaDir::write_crl`].
#[derive(Debug, Clone)]
pub struct CrlWritten {
    /// Where.
    pub path: PathBuf,
    /// Its CRL number.
    pub number: u64,
    /// How many certificates it revokes.
    pub revoked: usize,
    /// When the next CRL is due.
    pub next_update: OffsetDateTime,
}

impl CaDir {
    /// Creates a CA in `dir` — a root, or an intermediate signed by `parent` — with
    /// an empty index and an empty CRL. Refuses a directory that already holds a CA.
    pub fn init(
        dir: &Path,
        options: &InitOptions,
        parent: Option<&CaDir>,
    ) -> Result<Self, CertError> {
        for existing in [CA_CERT, CA_KEY] {
            if dir.join(existing).exists() {
                return Err(CertError::Usage(format!(
                    "{}: already holds a CA; refusing to replace it",
                    dir.join(existing).display()
                )));
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| CertError::io(dir, e))?;
        let _lock = DirLock::acquire(dir)?;
        let authority = match parent {
            None => Authority::create_root(&options.common_name, options.alg, &options.validity)?,
            Some(p) => p.authority.issue_intermediate(
                &options.common_name,
                options.alg,
                &options.validity,
            )?,
        };
        let me = authority.certified();
        write_public_pem(&dir.join(CA_CERT), &me.cert_pem)?;
        write_private_pem(&dir.join(CA_KEY), &me.key_pem)?;
        if let Some(p) = parent {
            let mut above =
                String::from_utf8_lossy(&crate::authority::pem_encode(p.authority.cert_der()))
                    .into_owned();
            let parent_chain = p.dir.join(CHAIN);
            if parent_chain.exists() {
                for c in load_certs(&parent_chain)? {
                    above.push_str(&String::from_utf8_lossy(&crate::authority::pem_encode(&c)));
                }
            }
            write_public_pem(&dir.join(CHAIN), &above)?;
            let info = CertInfo::from_der(authority.cert_der()).map_err(CertError::Generate)?;
            p.record(&info, &dir.join(CA_CERT))?;
        }
        let cert = CertInfo::from_der(authority.cert_der()).map_err(CertError::Generate)?;
        let ca = Self {
            dir: dir.to_owned(),
            authority,
            cert,
        };
        Index::default().save(&ca.dir.join(INDEX))?;
        ca.write_crl_locked(options.crl_next_update, None)?;
        Ok(ca)
    }

    /// Opens the CA in `dir`; errors name the file at fault (missing, malformed,
    /// not a CA, key not matching).
    pub fn open(dir: &Path) -> Result<Self, CertError> {
        let mut authority = Authority::load(&dir.join(CA_CERT), &dir.join(CA_KEY))?;
        let chain = dir.join(CHAIN);
        if chain.exists() {
            authority = authority.with_parents(load_certs(&chain)?);
        }
        let cert = CertInfo::from_der(authority.cert_der())
            .map_err(|reason| CertError::pem(dir.join(CA_CERT), reason))?;
        Ok(Self {
            dir: dir.to_owned(),
            authority,
            cert,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The CA itself.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The CA certificate.
    pub fn certificate(&self) -> &CertInfo {
        &self.cert
    }

    /// The issued-certificate index as it is on disk.
    pub fn index(&self) -> Result<Index, CertError> {
        Index::load(&self.dir.join(INDEX))
    }

    /// Issues a certificate, writes `out/<name>.pem` (with the chain) and
    /// `out/<name>.key` (mode 0600), and records it in the index. Existing files are
    /// replaced only with `overwrite`.
    pub fn issue(
        &mut self,
        request: &IssueRequest,
        out: &Path,
        name: &str,
        overwrite: bool,
    ) -> Result<Issued, CertError> {
        check_name(name)?;
        let (cert, key) = (
            out.join(format!("{name}.pem")),
            out.join(format!("{name}.key")),
        );
        if !overwrite {
            for p in [&cert, &key] {
                if p.exists() {
                    return Err(CertError::Usage(format!(
                        "{}: exists; pass --force to replace it",
                        p.display()
                    )));
                }
            }
        }
        let _lock = DirLock::acquire(&self.dir)?;
        self.authority.set_leaf_alg(request.key_alg);
        let issued: CertifiedKey = match &request.subject {
            Subject::Server { dns, ips } => {
                self.authority
                    .issue_server_with(dns, ips, &request.validity)?
            }
            Subject::Client {
                identity,
                common_name,
            } => self
                .authority
                .issue_client_with(identity, common_name, &request.validity)?,
        };
        let der = load_first(&issued.cert_pem)?;
        let info = CertInfo::from_der(&der).map_err(CertError::Generate)?;
        write_public_pem(&cert, &issued.cert_pem)?;
        write_private_pem(&key, &issued.key_pem)?;
        // Recorded absolute, so the index means the same from any working directory.
        let recorded = std::fs::canonicalize(&cert).unwrap_or_else(|_| cert.clone());
        self.record_locked(&info, &recorded)?;
        Ok(Issued { cert, key, info })
    }

    /// Revokes a certificate named by its serial (hex) or by its certificate file,
    /// records it in the index and writes a new CRL. A file this CA did not issue is
    /// refused; a file the index does not know is added to it.
    pub fn revoke(
        &self,
        target: &str,
        reason: RevocationReason,
        crl_next_update: Duration,
    ) -> Result<Revoked, CertError> {
        let _lock = DirLock::acquire(&self.dir)?;
        let index_path = self.dir.join(INDEX);
        let mut index = Index::load(&index_path)?;
        let serial = match self.file_target(target)? {
            Some(info) => {
                if index.find(&info.serial).is_none() {
                    index
                        .certificates
                        .push(IndexEntry::new(&info, Some(Path::new(target))));
                }
                info.serial
            }
            None => {
                let serial = parse_serial(target)?;
                if index.find(&serial).is_none() {
                    return Err(CertError::Usage(format!(
                        "serial {serial} is not in {}; pass the certificate file instead to revoke a certificate the index does not know",
                        index_path.display()
                    )));
                }
                serial
            }
        };
        let entry = index
            .certificates
            .iter_mut()
            .find(|e| e.serial == serial)
            .ok_or_else(|| CertError::Usage(format!("serial {serial} vanished from the index")))?;
        let already = entry.revoked.is_some();
        if !already {
            entry.revoked = Some(Revocation {
                at: OffsetDateTime::now_utc(),
                reason,
            });
        }
        let entry = entry.clone();
        index.save(&index_path)?;
        let crl = self.write_crl_locked(crl_next_update, None)?;
        Ok(Revoked {
            entry,
            already,
            crl,
        })
    }

    /// Signs and writes a CRL of every revoked certificate, to `out` or `DIR/crl.pem`,
    /// promising the next one within `next_update`.
    pub fn write_crl(
        &self,
        next_update: Duration,
        out: Option<&Path>,
    ) -> Result<CrlWritten, CertError> {
        let _lock = DirLock::acquire(&self.dir)?;
        self.write_crl_locked(next_update, out)
    }

    fn write_crl_locked(
        &self,
        next_update: Duration,
        out: Option<&Path>,
    ) -> Result<CrlWritten, CertError> {
        let index_path = self.dir.join(INDEX);
        let mut index = Index::load(&index_path)?;
        let number = index.next_crl_number;
        let revoked = index.revoked();
        let pem = self.authority.crl(&revoked, number, next_update)?;
        // The number is spent before the CRL exists, so that a crash in between never
        // lets two different CRLs carry the same number.
        index.next_crl_number += 1;
        index.save(&index_path)?;
        let path = out.map_or_else(|| self.dir.join(CRL), Path::to_path_buf);
        write_public_pem(&path, &pem)?;
        Ok(CrlWritten {
            path,
            number,
            revoked: revoked.len(),
            next_update: OffsetDateTime::now_utc() + next_update,
        })
    }

    /// Adds a certificate to the index, under the lock.
    fn record(&self, info: &CertInfo, file: &Path) -> Result<(), CertError> {
        let _lock = DirLock::acquire(&self.dir)?;
        self.record_locked(info, file)
    }

    fn record_locked(&self, info: &CertInfo, file: &Path) -> Result<(), CertError> {
        let path = self.dir.join(INDEX);
        let mut index = Index::load(&path)?;
        index.certificates.push(IndexEntry::new(info, Some(file)));
        index.save(&path)
    }

    /// `target` read as a certificate file this CA issued; `None` when it is no file.
    fn file_target(&self, target: &str) -> Result<Option<CertInfo>, CertError> {
        let path = Path::new(target);
        let looks_like_file = path.is_file()
            || target.contains(std::path::MAIN_SEPARATOR)
            || target.ends_with(".pem")
            || target.ends_with(".crt");
        if !looks_like_file {
            return Ok(None);
        }
        let info = CertInfo::load(path)?;
        if !info.is_issued_by(&self.cert) {
            return Err(CertError::pem(
                path,
                format!(
                    "issued by {}, not by this CA ({})",
                    info.issuer, self.cert.subject
                ),
            ));
        }
        Ok(Some(info))
    }
}

impl std::fmt::Debug for CaDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaDir")
            .field("dir", &self.dir)
            .field("subject", &self.cert.subject)
            .finish_non_exhaustive()
    }
}

/// The first certificate of a PEM text.
fn load_first(pem: &str) -> Result<rustls_pki_types::CertificateDer<'static>, CertError> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| CertError::Generate(format!("issued certificate does not parse: {e}")))
}

/// A file stem for issued files: no path separators, not one of the CA's own files.
fn check_name(name: &str) -> Result<(), CertError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(CertError::Usage(format!(
            "--name `{name}`: use letters, digits, '-', '_' and '.' only (it becomes <name>.pem and <name>.key)"
        )));
    }
    if RESERVED.contains(&name) {
        return Err(CertError::Usage(format!(
            "--name `{name}` would overwrite the CA's own files"
        )));
    }
    Ok(())
}

/// An exclusive lock on a CA directory: a file created with `O_EXCL`, removed on drop.
struct DirLock {
    path: PathBuf,
}

impl DirLock {
    fn acquire(dir: &Path) -> Result<Self, CertError> {
        let path = dir.join(LOCK);
        let started = Instant::now();
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write as _;
                    // Who holds it, for an operator wondering whether it is stale.
                    let _ = writeln!(f, "{}", std::process::id());
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if started.elapsed() > LOCK_WAIT {
                        return Err(CertError::Busy { path });
                    }
                    std::thread::sleep(StdDuration::from_millis(20));
                }
                Err(e) => return Err(CertError::io(&path, e)),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
