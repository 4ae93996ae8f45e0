//! TLS configs that reload without a restart, and what the TLS layer counts.
//!
//! The server config (and any outbound client config) is published through a
//! `tokio::sync::watch` channel. The accept loop takes the current value for each
//! new handshake, so a reload applies to the very next connection while open
//! connections keep the config they were accepted with. A reload happens on
//! SIGHUP, when a watched file changes (checked every [`POLL_EVERY`]), or when
//! [`Reloadable::reload`] is called. A reload that fails keeps the old config and
//! logs why. The server's reload re-reads the `[tls]` section of the config file,
//! so trusted CAs and CRLs can be added or removed without a restart.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use certs::time::OffsetDateTime;
use certs::{CertError, CertInfo, CrlInfo, HandshakeRefusal, EXPIRY_WARNING};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, TlsConfig};

/// How often watched files are checked for changes.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// How often certificates are re-checked for coming expiry (also at every reload).
const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(3600);

/// Most client fingerprints remembered as already warned about (then forgotten).
const WARNED_CLIENTS_MAX: usize = 10_000;

/// The server side of mutual TLS, reloadable.
pub type ServerTls = Reloadable<rustls::ServerConfig>;

/// An outbound mutual-TLS client config (client certificate and pinned CAs), for
/// connectors calling other departments over HTTPS, reloadable the same way.
pub type ClientTls = Reloadable<rustls::ClientConfig>;

/// What made a reload happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// A watched file changed.
    FileChange,
    /// [`Reloadable::reload`] was called.
    Api,
}

impl Trigger {
    const ALL: [Trigger; 3] = [Trigger::Signal, Trigger::FileChange, Trigger::Api];

    fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "signal",
            Trigger::FileChange => "file-change",
            Trigger::Api => "api",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A certificate that expires within 30 days (or has expired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiring {
    /// Which config it belongs to and its role, e.g. `server: client CA`.
    pub what: String,
    /// Subject, identity or name.
    pub subject: String,
    /// The file it was read from.
    pub file: PathBuf,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

/// Counters of the TLS layer, read through [`TlsMetrics::snapshot`] (for logs now,
/// for a metrics endpoint later).
#[derive(Debug, Default)]
pub struct TlsMetrics {
    handshakes: AtomicU64,
    refusals: [AtomicU64; HandshakeRefusal::ALL.len()],
    reloads: [AtomicU64; Trigger::ALL.len()],
    reload_failures: AtomicU64,
    client_certs_expiring: AtomicU64,
    expiring: Mutex<BTreeMap<&'static str, Vec<Expiring>>>,
    warned_clients: Mutex<HashSet<String>>,
}

/// The counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSnapshot {
    /// Handshakes completed with an acceptable client certificate.
    pub handshakes: u64,
    /// Handshakes refused, by reason (every reason listed, zeros included).
    pub refusals: Vec<(&'static str, u64)>,
    /// Successful reloads, by trigger (`signal`, `file-change`, `api`).
    pub reloads: Vec<(&'static str, u64)>,
    /// Reloads that failed and kept the old config.
    pub reload_failures: u64,
    /// Handshakes whose client certificate expires within 30 days.
    pub client_certs_expiring_soon: u64,
    /// Configured certificates (server, CAs, outbound client) expiring within 30 days.
    pub expiring_soon: Vec<Expiring>,
}

impl TlsSnapshot {
    /// Refusals for one reason.
    pub fn refused(&self, reason: HandshakeRefusal) -> u64 {
        self.refusals
            .iter()
            .find(|(r, _)| *r == reason.as_str())
            .map_or(0, |(_, n)| *n)
    }

    /// Successful reloads, all triggers.
    pub fn reloads_total(&self) -> u64 {
        self.reloads.iter().map(|(_, n)| n).sum()
    }

    /// Successful reloads by one trigger.
    pub fn reloads_by(&self, trigger: Trigger) -> u64 {
        self.reloads
            .iter()
            .find(|(t, _)| *t == trigger.as_str())
            .map_or(0, |(_, n)| *n)
    }
}

impl TlsMetrics {
    /// Counts a refused handshake.
    pub fn refused(&self, reason: HandshakeRefusal) {
        self.refusals[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an accepted handshake; warns (once per certificate) when the client
    /// certificate expires within 30 days.
    pub fn accepted(&self, client_cert: &[u8]) {
        self.handshakes.fetch_add(1, Ordering::Relaxed);
        let Some(end) = certs::not_after(client_cert) else {
            return;
        };
        if end - OffsetDateTime::now_utc() >= EXPIRY_WARNING {
            return;
        }
        self.client_certs_expiring.fetch_add(1, Ordering::Relaxed);
        let Ok(info) = CertInfo::from_der(client_cert) else {
            return;
        };
        let mut warned = lock(&self.warned_clients);
        if warned.len() >= WARNED_CLIENTS_MAX {
            warned.clear();
        }
        if warned.insert(info.fingerprint.clone()) {
            tracing::warn!(
                client = %info.label(),
                serial = %info.serial,
                not_after = %certs::rfc3339(info.not_after),
                "client certificate expires within 30 days"
            );
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> TlsSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TlsSnapshot {
            handshakes: load(&self.handshakes),
            refusals: HandshakeRefusal::ALL
                .iter()
                .map(|r| (r.as_str(), load(&self.refusals[r.index()])))
                .collect(),
            reloads: Trigger::ALL
                .iter()
                .map(|t| (t.as_str(), load(&self.reloads[t.index()])))
                .collect(),
            reload_failures: load(&self.reload_failures),
            client_certs_expiring_soon: load(&self.client_certs_expiring),
            expiring_soon: lock(&self.expiring).values().flatten().cloned().collect(),
        }
    }
}

/// A config as loaded, with what it was built from.
pub struct Loaded<T> {
    /// The config.
    pub value: Arc<T>,
    /// Files whose change triggers a reload.
    pub files: Vec<PathBuf>,
    /// Certificates to watch for expiry: role, file, certificate.
    pub certificates: Vec<(&'static str, PathBuf, CertInfo)>,
    /// CRLs in use, with their files.
    pub crls: Vec<(PathBuf, CrlInfo)>,
    /// What the operator should hear about this config.
    pub warnings: Vec<String>,
}

type Loader<T> = Box<dyn Fn() -> Result<Loaded<T>, String> + Send + Sync>;

fn crls_of<T>(loaded: &Loaded<T>) -> Vec<CrlInfo> {
    loaded.crls.iter().map(|(_, c)| c.clone()).collect()
}

/// A file's identity and version, to notice replacement (rename) and rewrites.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        #[cfg(unix)]
        inode: std::os::unix::fs::MetadataExt::ino(&meta),
    })
}

/// What a reloadable config currently rests on.
struct Current {
    watched: Vec<(PathBuf, Option<Stamp>)>,
    certificates: Vec<(&'static str, PathBuf, CertInfo)>,
}

/// A TLS config of type `T` published through a watch channel and rebuilt from its
/// files on demand.
pub struct Reloadable<T> {
    name: &'static str,
    tx: watch::Sender<Arc<T>>,
    /// The CRLs of the config published in `tx`, for connections to check their
    /// certificate against when they change.
    crls: watch::Sender<Arc<Vec<CrlInfo>>>,
    load: Loader<T>,
    current: Mutex<Current>,
    metrics: Arc<TlsMetrics>,
}

impl<T: Send + Sync + 'static> Reloadable<T> {
    /// Publishes `first` and remembers how to load the next one.
    fn new(
        name: &'static str,
        first: Loaded<T>,
        load: Loader<T>,
        metrics: Arc<TlsMetrics>,
    ) -> Self {
        let watched = first.files.iter().map(|f| (f.clone(), stamp(f))).collect();
        let this = Self {
            name,
            tx: watch::Sender::new(Arc::clone(&first.value)),
            crls: watch::Sender::new(Arc::new(crls_of(&first))),
            load,
            current: Mutex::new(Current {
                watched,
                certificates: first.certificates.clone(),
            }),
            metrics,
        };
        this.announce(&first, None);
        this.check_expiry();
        this
    }

    /// The config new connections should use.
    pub fn current(&self) -> Arc<T> {
        Arc::clone(&self.tx.borrow())
    }

    /// A receiver that sees every new config.
    pub fn subscribe(&self) -> watch::Receiver<Arc<T>> {
        self.tx.subscribe()
    }

    /// A receiver that sees the CRLs of every new config: an open connection whose
    /// certificate a new CRL revokes closes after its current request.
    pub fn crls(&self) -> watch::Receiver<Arc<Vec<CrlInfo>>> {
        self.crls.subscribe()
    }

    /// The counters this config reports to.
    pub fn metrics(&self) -> &Arc<TlsMetrics> {
        &self.metrics
    }

    /// Reloads now (what SIGHUP does); on failure the old config stays and the
    /// error says why.
    pub fn reload(&self) -> Result<(), String> {
        self.reload_by(Trigger::Api)
    }

    fn reload_by(&self, trigger: Trigger) -> Result<(), String> {
        // One reload at a time; stamps are taken before reading, so a change made
        // while loading triggers another reload.
        let mut current = lock(&self.current);
        let before: Vec<(PathBuf, Option<Stamp>)> = current
            .watched
            .iter()
            .map(|(f, _)| (f.clone(), stamp(f)))
            .collect();
        match (self.load)() {
            Ok(loaded) => {
                current.watched = loaded
                    .files
                    .iter()
                    .map(|f| {
                        let seen = before.iter().find(|(b, _)| b == f);
                        (f.clone(), seen.map_or_else(|| stamp(f), |(_, s)| s.clone()))
                    })
                    .collect();
                current.certificates = loaded.certificates.clone();
                self.tx.send_replace(Arc::clone(&loaded.value));
                self.crls.send_replace(Arc::new(crls_of(&loaded)));
                drop(current);
                self.metrics.reloads[trigger.index()].fetch_add(1, Ordering::Relaxed);
                self.announce(&loaded, Some(trigger));
                self.check_expiry();
                Ok(())
            }
            Err(reason) => {
                current.watched = before;
                drop(current);
                self.metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(tls = self.name, trigger = trigger.as_str(), %reason,
                    "TLS reload failed; keeping the previous configuration");
                Err(reason)
            }
        }
    }

    /// Reloads when a watched file changed since the last (attempted) load.
    fn poll(&self) {
        let changed = lock(&self.current)
            .watched
            .iter()
            .any(|(f, s)| stamp(f) != *s);
        if changed {
            let _ = self.reload_by(Trigger::FileChange);
        }
    }

    /// Logs and publishes the certificates that expire within 30 days.
    fn check_expiry(&self) {
        let now = OffsetDateTime::now_utc();
        let expiring: Vec<Expiring> = lock(&self.current)
            .certificates
            .iter()
            .filter(|(_, _, info)| info.expires_within(EXPIRY_WARNING, now))
            .map(|(role, file, info)| Expiring {
                what: format!("{}: {role}", self.name),
                subject: info.label(),
                file: file.clone(),
                not_after: info.not_after,
            })
            .collect();
        for e in &expiring {
            tracing::warn!(tls = self.name, certificate = %e.what, subject = %e.subject,
                file = %e.file.display(), not_after = %certs::rfc3339(e.not_after),
                days_left = (e.not_after - now).whole_days(),
                "certificate expires within 30 days");
        }
        lock(&self.metrics.expiring).insert(self.name, expiring);
    }

    fn announce(&self, loaded: &Loaded<T>, trigger: Option<Trigger>) {
        let revoked: usize = loaded.crls.iter().map(|(_, c)| c.revoked.len()).sum();
        tracing::info!(
            tls = self.name,
            trigger = trigger.map_or("start", Trigger::as_str),
            certificates = loaded.certificates.len(),
            crls = loaded.crls.len(),
            revoked,
            "TLS configuration loaded"
        );
        for w in &loaded.warnings {
            tracing::warn!(tls = self.name, "{w}");
        }
    }
}

impl ServerTls {
    /// Loads the server config from `config.tls`; later reloads re-read the `[tls]`
    /// section of the config file (when `config.path` is a file), with the same
    /// `TONGBAN_*` variables laid over it as at start.
    pub fn server(config: &Config, metrics: Arc<TlsMetrics>) -> Result<Self, CertError> {
        let first = load_server(config.path.is_file().then_some(&config.path), &config.tls)?;
        let config_file = config.path.is_file().then(|| config.path.clone());
        let fallback = config.tls.clone();
        let env = config.env.clone();
        let load: Loader<rustls::ServerConfig> = Box::new(move || {
            let tls = match &config_file {
                Some(path) => {
                    Config::load_with(path, &env)
                        .map_err(|e| e.to_string())?
                        .tls
                }
                None => fallback.clone(),
            };
            load_server(config_file.as_ref(), &tls).map_err(|e| e.to_string())
        });
        Ok(Self::new("server", first, load, metrics))
    }
}

fn load_server(
    config_file: Option<&PathBuf>,
    tls: &TlsConfig,
) -> Result<Loaded<rustls::ServerConfig>, CertError> {
    let trust = certs::server_trust(&tls.files())?;
    let mut files: Vec<PathBuf> = config_file.into_iter().cloned().collect();
    files.extend([tls.cert.clone(), tls.key.clone()]);
    files.extend(tls.client_cas.iter().cloned());
    files.extend(tls.crls.iter().cloned());
    let mut certificates: Vec<(&'static str, PathBuf, CertInfo)> = trust
        .server_chain
        .into_iter()
        .map(|c| ("server certificate", tls.cert.clone(), c))
        .collect();
    certificates.extend(
        trust
            .client_cas
            .into_iter()
            .map(|(file, c)| ("client CA", file, c)),
    );
    Ok(Loaded {
        value: trust.config,
        files,
        certificates,
        crls: trust.crls,
        warnings: trust.warnings,
    })
}

impl ClientTls {
    /// An outbound client config presenting `cert`/`key` and trusting only `cas`
    /// (pinned, no system roots); reloads when any of them changes. `name` tells
    /// it apart in logs, e.g. the connector's name.
    pub fn client(
        name: &'static str,
        cas: Vec<PathBuf>,
        cert: PathBuf,
        key: PathBuf,
        alpn: Vec<Vec<u8>>,
        metrics: Arc<TlsMetrics>,
    ) -> Result<Self, CertError> {
        let load_once = move || -> Result<Loaded<rustls::ClientConfig>, CertError> {
            let value = certs::client_config(&cas, Some((&cert, &key)), alpn.clone())?;
            let mut certificates =
                vec![("client certificate", cert.clone(), CertInfo::load(&cert)?)];
            for ca in &cas {
                certificates.push(("pinned CA", ca.clone(), CertInfo::load(ca)?));
            }
            let mut files = cas.clone();
            files.extend([cert.clone(), key.clone()]);
            Ok(Loaded {
                value,
                files,
                certificates,
                crls: Vec::new(),
                warnings: Vec::new(),
            })
        };
        let first = load_once()?;
        let load: Loader<rustls::ClientConfig> =
            Box::new(move || load_once().map_err(|e| e.to_string()));
        Ok(Self::new(name, first, load, metrics))
    }
}

/// Something the watcher keeps fresh.
pub trait Watched: Send + Sync {
    /// Reload now.
    fn reload_on(&self, trigger: Trigger) -> Result<(), String>;
    /// Reload if a file changed.
    fn poll_files(&self);
    /// Re-check certificates for coming expiry.
    fn check_certificates(&self);
}

impl<T: Send + Sync + 'static> Watched for Reloadable<T> {
    fn reload_on(&self, trigger: Trigger) -> Result<(), String> {
        self.reload_by(trigger)
    }
    fn poll_files(&self) {
        self.poll();
    }
    fn check_certificates(&self) {
        self.check_expiry();
    }
}

/// Keeps `items` fresh until `stop` fires: reload on SIGHUP, on file changes
/// (polled every [`POLL_EVERY`]), and re-check expiry hourly.
pub fn spawn_watcher(
    items: Vec<Arc<dyn Watched>>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut hangup = Hangup::new();
        let mut tick = tokio::time::interval(POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut expiry = tokio::time::interval(EXPIRY_CHECK_EVERY);
        expiry.tick().await; // the first tick is immediate; loading just checked
        loop {
            tokio::select! {
                _ = tick.tick() => items.iter().for_each(|i| i.poll_files()),
                _ = expiry.tick() => items.iter().for_each(|i| i.check_certificates()),
                () = hangup.recv() => {
                    tracing::info!("SIGHUP: reloading TLS configuration");
                    for i in &items {
                        let _ = i.reload_on(Trigger::Signal);
                    }
                }
                _ = stop.changed() => break,
            }
        }
    })
}

/// SIGHUP, where there is such a thing.
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn new() -> Self {
        #[cfg(unix)]
        {
            let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
            if let Err(e) = &signal {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; TLS reloads on file changes only");
            }
            Self {
                signal: signal.ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.signal {
            if s.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}

/// Locks a mutex, recovering from a poisoned lock (the data are plain counters and
/// lists, consistent at every step).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use certs::time::Duration as TimeDuration;
    use certs::{CaDir, InitOptions, IssueRequest, KeyAlg, Subject, Validity};

    fn pki(dir: &Path) -> CaDir {
        let options = InitOptions {
            common_name: "Reload CA".into(),
            alg: KeyAlg::EcdsaP256,
            validity: Validity::days(20).unwrap(),
            crl_next_update: TimeDuration::days(7),
        };
        let mut ca = CaDir::init(dir, &options, None).unwrap();
        let request = IssueRequest {
            subject: Subject::Client {
                identity: "urn:tongban:out:caller".parse().unwrap(),
                common_name: String::new(),
            },
            validity: Validity::days(10).unwrap(),
            key_alg: KeyAlg::EcdsaP256,
        };
        ca.issue(&request, dir, "out", false).unwrap();
        ca
    }

    #[test]
    fn client_config_reloads_on_change_and_keeps_old_on_failure() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        pki(dir);
        let metrics = Arc::new(TlsMetrics::default());
        let client = ClientTls::client(
            "outbound",
            vec![dir.join("ca.pem")],
            dir.join("out.pem"),
            dir.join("out.key"),
            vec![b"h2".to_vec()],
            Arc::clone(&metrics),
        )
        .unwrap();
        let first = client.current();
        let rx = client.subscribe();

        // Nothing changed: polling does not reload.
        client.poll();
        assert!(!rx.has_changed().unwrap());

        // A broken key keeps the old config.
        std::fs::write(dir.join("out.key"), "garbage").unwrap();
        client.poll();
        assert!(Arc::ptr_eq(&first, &client.current()));
        assert_eq!(metrics.snapshot().reload_failures, 1);
        // ... and is not retried until something changes again.
        client.poll();
        assert_eq!(metrics.snapshot().reload_failures, 1);

        // A fresh certificate and key are picked up.
        let mut ca = CaDir::open(dir).unwrap();
        let request = IssueRequest {
            subject: Subject::Client {
                identity: "urn:tongban:out:caller".parse().unwrap(),
                common_name: String::new(),
            },
            validity: Validity::days(90).unwrap(),
            key_alg: KeyAlg::EcdsaP256,
        };
        ca.issue(&request, dir, "out", true).unwrap();
        client.poll();
        assert!(rx.has_changed().unwrap());
        assert!(!Arc::ptr_eq(&first, &client.current()));
        let snap = metrics.snapshot();
        assert_eq!(snap.reloads_by(Trigger::FileChange), 1);
        // The CA (20 days) is reported as expiring; the new client certificate is not.
        assert_eq!(snap.expiring_soon.len(), 1, "{:?}", snap.expiring_soon);
        assert_eq!(snap.expiring_soon[0].what, "outbound: pinned CA");
    }

    #[test]
    fn accepted_counts_expiring_client_certificates() {
        let tmp = tempfile::tempdir().unwrap();
        pki(tmp.path());
        let der = certs::load_certs(&tmp.path().join("out.pem")).unwrap();
        let metrics = TlsMetrics::default();
        metrics.accepted(&der[0]);
        metrics.accepted(&der[0]);
        metrics.refused(HandshakeRefusal::Revoked);
        let snap = metrics.snapshot();
        assert_eq!(snap.handshakes, 2);
        assert_eq!(snap.client_certs_expiring_soon, 2);
        assert_eq!(snap.refused(HandshakeRefusal::Revoked), 1);
        assert_eq!(snap.refused(HandshakeRefusal::Expired), 0);
    }

    /// A reload re-reads the config file with the variables the gateway started with:
    /// here the file names a certificate that does not exist and only
    /// `TONGBAN_TLS_CERT` makes the config good.
    #[test]
    fn server_reload_applies_the_same_environment() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut ca = pki(dir);
        let request = IssueRequest {
            subject: Subject::Server {
                dns: vec!["localhost".into()],
                ips: Vec::new(),
            },
            validity: Validity::days(10).unwrap(),
            key_alg: KeyAlg::EcdsaP256,
        };
        ca.issue(&request, dir, "srv", false).unwrap();
        std::fs::write(dir.join("signing.pem"), "unused here").unwrap();
        let file = dir.join("tongban.toml");
        std::fs::write(
            &file,
            "node = \"n\"\nlisten = \"127.0.0.1:0\"\nops_listen = \"127.0.0.1:0\"\n\
             state_db = \"state.db\"\nsigning_key = \"signing.pem\"\n\
             [tls]\ncert = \"not-there.pem\"\nkey = \"srv.key\"\nclient_cas = [\"ca.pem\"]\n",
        )
        .unwrap();
        assert!(Config::load_with(&file, &crate::config::Env::default()).is_err());
        let env = crate::config::Env::from_pairs([("TONGBAN_TLS_CERT", "srv.pem")]);
        let config = Config::load_with(&file, &env).unwrap();
        let metrics = Arc::new(TlsMetrics::default());
        let server = ServerTls::server(&config, Arc::clone(&metrics)).unwrap();
        server.reload().unwrap();
        let snapshot = metrics.snapshot();
        assert_eq!(snapshot.reloads_by(Trigger::Api), 1);
        assert_eq!(snapshot.reload_failures, 0);
    }
}
