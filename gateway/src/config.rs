//! The gateway configuration: one TOML file, parsed and checked once at start-up.
//!
//! Relative paths are resolved against the directory of the file, so a config and the
//! files it names can move together. Errors name the file, the line and the key.
//!
//! Each setting is declared once, as a documented field of the structs the file is
//! read into (`RawConfig` and below), with its default beside it; `schema` derives
//! from them the settings `env` accepts as `TONGBAN_*` variables and the reference in
//! docs/configuration.md. `Checker` then turns the file's values into [`Config`]:
//! paths resolved, addresses and names parsed, each problem reported at its line or
//! variable.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;
use serde_inline_default::serde_inline_default;

mod departments;
mod env;
mod policy;
#[cfg(test)]
mod reference;
mod requests;
mod schema;
mod sources;

use schema::Spanned;

#[cfg(test)]
pub(crate) mod test_files;

pub use env::{Env, CONFIG_VAR};

pub use departments::DepartmentNames;
pub use policy::{MatterInfo, PolicyConfig};
pub use requests::RequestsConfig;

pub use sources::{
    BundleConfig, BundleItem, DatasetConfig, FieldConfig, FieldType, ItemSubject, ResilienceConfig,
    SourceConfig, SourceKind, SourceTls,
};

/// A configuration problem, rendered as `file:line: key: what is wrong`, or as
/// `TONGBAN_VAR (environment; config file): key: what is wrong` when the value at fault
/// came from a variable.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", where_from(path, *line, variable.as_deref()))]
pub struct ConfigError {
    /// The config file.
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The `TONGBAN_*` variable the value at fault came from.
    pub variable: Option<String>,
    /// What is wrong, starting with the key.
    pub message: String,
}

fn where_from(path: &Path, line: Option<usize>, variable: Option<&str>) -> String {
    match (variable, line) {
        (Some(var), _) => format!("{var} (environment; config {})", path.display()),
        (None, Some(line)) => format!("{}:{line}", path.display()),
        (None, None) => path.display().to_string(),
    }
}

/// The whole gateway configuration, paths resolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config was read from.
    pub path: PathBuf,
    /// Node name written into every audit record.
    pub node: String,
    /// Counter API listener (mTLS).
    pub listen: SocketAddr,
    /// Ops listener (plain HTTP, keep on loopback).
    pub ops_listen: SocketAddr,
    /// TLS files.
    pub tls: TlsConfig,
    /// Ed25519 PKCS#8 PEM key that signs responses.
    pub signing_key: PathBuf,
    /// Database holding agreements, role bindings and the audit log.
    pub state_db: StateDb,
    /// Audit batching.
    pub audit: AuditConfig,
    /// Request limits.
    pub limits: LimitsConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// Data sources.
    pub sources: Vec<SourceConfig>,
    /// Datasets and the source that serves each.
    pub datasets: Vec<DatasetConfig>,
    /// Named sets of datasets fetched together (`POST /v1/bundle`).
    pub bundles: Vec<BundleConfig>,
    /// Sharing agreements: time zone, change polling, decision cache, matters.
    pub policy: PolicyConfig,
    /// Access requests: review deadline in working days, holidays, auto-approval.
    pub requests: RequestsConfig,
    /// Department code → display names (`[[departments]]`).
    pub departments: std::collections::BTreeMap<String, DepartmentNames>,
    /// The `TONGBAN_*` variables laid over the file; a reload of the file (the TLS
    /// section) applies the same ones.
    pub env: Env,
}

/// Where the gateway keeps its own state (agreements, role bindings, audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateDb {
    /// An embedded SQLite file: one gateway.
    Sqlite(PathBuf),
    /// A PostgreSQL URL: several gateways sharing one store.
    Postgres(String),
}

impl std::fmt::Display for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateDb::Sqlite(p) => write!(f, "{}", p.display()),
            // Never print credentials.
            StateDb::Postgres(url) => {
                let host = url.rsplit_once('@').map(|(_, h)| h).unwrap_or(url);
                write!(
                    f,
                    "postgres://…@{}",
                    host.trim_start_matches("postgres://")
                        .trim_start_matches("postgresql://")
                )
            }
        }
    }
}

/// Server certificate, key and the CAs whose client certificates are accepted.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server key (PEM).
    pub key: PathBuf,
    /// Trusted client CAs (PEM), one or more.
    pub client_cas: Vec<PathBuf>,
    /// CRLs checked at every handshake (PEM); empty: no revocation check.
    pub crls: Vec<PathBuf>,
    /// With CRLs listed: refuse (`deny`, the default) or accept (`allow`) a client
    /// whose chain has a CA no listed CRL speaks for.
    pub unknown_revocation: certs::UnknownRevocation,
}

impl TlsConfig {
    /// The files the server side of mutual TLS is built from.
    pub fn files(&self) -> certs::ServerTlsFiles {
        certs::ServerTlsFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            client_cas: self.client_cas.clone(),
            crls: self.crls.clone(),
            unknown_revocation: self.unknown_revocation,
        }
    }
}

/// The audit log: group commit, checkpoints, retention and anomaly thresholds.
#[serde_inline_default]
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Most records committed in one transaction (group commit).
    #[serde_inline_default(512)]
    pub batch_max: usize,
    /// Seal the chain's head with a signed checkpoint at least every this many records.
    #[serde_inline_default(1000)]
    pub checkpoint_every: u64,
    /// … and at least this often (seconds) while records are unsealed.
    #[serde_inline_default(10)]
    pub checkpoint_interval_secs: u64,
    /// The log's name (C2SP origin): the first line of each checkpoint of its Merkle
    /// tree and the name of the key that signs them. Empty: `tongban.<node>/audit`.
    /// Gateways sharing one PostgreSQL log set the same origin.
    #[serde(default)]
    pub origin: String,
    /// Copy of each checkpoint this gateway writes, outside the store (JSON lines;
    /// empty string: none).
    #[serde_inline_default(Some(PathBuf::from("audit-checkpoints.jsonl")))]
    pub checkpoint_file: Option<PathBuf>,
    /// JWKS files of other gateways' keys trusted to sign checkpoints (shared store).
    #[serde(default)]
    pub trusted_jwks: Vec<PathBuf>,
    /// Archive records older than this many days (0: keep everything in the store).
    #[serde(default)]
    pub retention_days: u32,
    /// Where `tongban audit archive` writes archive files.
    #[serde_inline_default(PathBuf::from("audit-archive"))]
    pub archive_dir: PathBuf,
    /// Thresholds of `tongban audit report`.
    #[serde(default)]
    pub anomaly: AnomalyConfig,
    /// Witnesses that cosign this log's checkpoints after checking that each extends
    /// the last they cosigned (c2sp.org/tlog-witness). Submitted in the background,
    /// never on a request's path; a witness that is down delays only its cosignature.
    #[serde(default)]
    pub witnesses: Vec<WitnessConfig>,
    /// How often the latest checkpoint is submitted to the witnesses (milliseconds).
    #[serde_inline_default(5000)]
    pub witness_interval_ms: u64,
    /// Time-out of one submission to one witness (milliseconds).
    #[serde_inline_default(3000)]
    pub witness_timeout_ms: u64,
}

/// The verifier of `w`'s cosignatures, once its URL and key make sense.
pub fn witness_verifier(w: &WitnessConfig) -> Result<audit::tlog::note::Verifier, String> {
    let v =
        audit::tlog::note::Verifier::parse(&w.key).map_err(|e| format!("key {:?}: {e}", w.key))?;
    if v.kind != audit::tlog::note::TYPE_COSIGNATURE {
        return Err(format!(
            "key {:?} is not a cosignature key (type 0x04): is it the log's own key?",
            w.key
        ));
    }
    let rest = w
        .url
        .strip_prefix("http://")
        .ok_or_else(|| format!("url {:?}: only http://host:port is supported", w.url))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.parse::<std::net::SocketAddr>().is_err() && !authority.contains(':') {
        return Err(format!("url {:?}: no host:port", w.url));
    }
    Ok(v)
}

/// A witness of the audit log.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// Where it takes `POST /add-checkpoint`: `http://host:port` (the exchange is
    /// signed both ways, so it needs no TLS to be trusted).
    pub url: String,
    /// Its cosignature verifier key, `<name>+<key id hex>+<base64 of 0x04 ‖ Ed25519
    /// key>` (what `tongban witness` prints); the name is the witness's.
    pub key: String,
}

/// Thresholds of the anomaly rules.
#[serde_inline_default]
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnomalyConfig {
    /// Lookups by one operator in one hour above which it is reported.
    #[serde_inline_default(100)]
    pub operator_lookups_per_hour: u64,
    /// Hours of service, China Standard Time, `HH:MM-HH:MM`; lookups outside them
    /// are reported.
    #[serde_inline_default("08:00-18:00".to_owned())]
    pub service_hours: String,
    /// Distinct subjects under one case id above which it is reported.
    #[serde_inline_default(20)]
    pub subjects_per_case: usize,
    /// Denials of one system within `denials_window_secs` at which it is reported.
    #[serde_inline_default(10)]
    pub denials_burst: usize,
    /// The window of `denials_burst` (seconds).
    #[serde_inline_default(60)]
    pub denials_window_secs: u64,
    /// The CA's certificate index (JSON) naming revoked certificates; lookups by
    /// them are reported. Default: the `index.json` of the CA directory holding a
    /// `[tls] client_cas` file (the demo's `pki/`, or any `tongban certs` CA
    /// directory), when there is one; `""` turns it off (only records refused as
    /// revoked are then reported).
    #[serde(default)]
    pub revoked_index: Option<PathBuf>,
}

/// Limits on the counter listener.
#[serde_inline_default]
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Requests processed at once; more are shed with 503.
    #[serde_inline_default(4096)]
    pub max_concurrent_requests: usize,
    /// Largest request body accepted (bytes).
    #[serde_inline_default(64 * 1024)]
    pub max_body_bytes: usize,
    /// On SIGTERM, how long open requests may take to finish before the gateway exits
    /// anyway (seconds).
    #[serde_inline_default(25)]
    pub shutdown_grace_secs: u64,
    /// How long a client has to finish the TLS handshake (milliseconds).
    #[serde_inline_default(10_000)]
    pub handshake_timeout_ms: u64,
    /// How long a client has to send a request's head (method, path, headers). On
    /// HTTP/1.1 the clock also runs while a kept-alive connection waits for its next
    /// request, so it bounds HTTP/1.1 idleness too (milliseconds).
    #[serde_inline_default(10_000)]
    pub request_head_timeout_ms: u64,
    /// A request body must arrive at least this fast once its grace has passed
    /// (bytes per second); a slower one is answered 408 and audited.
    #[serde_inline_default(1_024)]
    pub body_min_bytes_per_sec: u64,
    /// How long a body may take before the minimum rate applies (milliseconds).
    #[serde_inline_default(5_000)]
    pub body_grace_ms: u64,
    /// A connection with no request in flight for this long is closed (milliseconds).
    #[serde_inline_default(60_000)]
    pub idle_timeout_ms: u64,
    /// A connection is closed after its current request once it is this old
    /// (seconds); clients reconnect, and a reloaded certificate or CRL applies.
    #[serde_inline_default(3_600)]
    pub max_connection_age_secs: u64,
    /// HTTP/2: how often to ping a connection to see that its peer is alive
    /// (milliseconds).
    #[serde_inline_default(20_000)]
    pub http2_keepalive_interval_ms: u64,
    /// HTTP/2: a ping not answered within this closes the connection (milliseconds).
    #[serde_inline_default(10_000)]
    pub http2_keepalive_timeout_ms: u64,
    /// HTTP/2: streams one connection may have open at once.
    #[serde_inline_default(64)]
    pub http2_max_concurrent_streams: u32,
    /// Connections one client identity may hold open at once; a connection beyond
    /// them is answered 503 and closed.
    #[serde_inline_default(256)]
    pub max_connections_per_identity: usize,
    /// Requests one client identity may have in flight at once (a share of
    /// `max_concurrent_requests`); more are answered 503 and audited.
    #[serde_inline_default(512)]
    pub max_requests_per_identity: usize,
}

/// Logging and OpenTelemetry.
#[serde_inline_default]
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Log lines as `text` or `json`.
    #[serde_inline_default("text".to_owned())]
    pub log_format: String,
    /// tracing filter, e.g. `info` or `info,gateway=debug`.
    #[serde_inline_default("info".to_owned())]
    pub log_level: String,
    /// OTLP/gRPC endpoint for traces, e.g. `http://127.0.0.1:4317`; empty exports
    /// nothing.
    #[serde(default)]
    pub otlp_endpoint: String,
}

schema::default_from_serde!(AuditConfig, AnomalyConfig, LimitsConfig, TelemetryConfig);

impl AnomalyConfig {
    /// The hours of service as minutes after midnight, `[open, close)`.
    pub fn service_minutes(&self) -> Result<(u32, u32), String> {
        let minutes = |hm: &str| -> Option<u32> {
            let (h, m) = hm.trim().split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
        };
        self.service_hours
            .split_once('-')
            .and_then(|(a, b)| Some((minutes(a)?, minutes(b)?)))
            .filter(|(a, b)| a < b)
            .ok_or_else(|| {
                format!(
                    "audit.anomaly.service_hours: {:?} is not HH:MM-HH:MM with the start before the end",
                    self.service_hours
                )
            })
    }
}

// The file as written, and the one declaration of each setting (see `schema`): spans
// kept on the values checked after parsing, so that those errors can name a line too.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Node name written into every audit record.
    node: Spanned<String>,
    /// Counter API listener (mutual TLS), e.g. `0.0.0.0:8443`.
    listen: Spanned<String>,
    /// Ops listener (plain HTTP: `/healthz`, `/readyz`, `/metrics`); keep it on
    /// loopback.
    ops_listen: Spanned<String>,
    /// Where agreements, role bindings and the audit log are kept: a SQLite file (one
    /// gateway), or a `postgres://` URL (several gateways sharing one store).
    state_db: Spanned<String>,
    /// Ed25519 key (PKCS#8 PEM) that signs the audit log's checkpoints (every answer's receipt).
    signing_key: Spanned<String>,
    /// Server certificate and the client CAs of mutual TLS.
    tls: RawTls,
    /// Audit batching, checkpoints and retention.
    #[serde(default)]
    audit: AuditConfig,
    /// Request limits.
    #[serde(default)]
    limits: LimitsConfig,
    /// Logs and traces.
    #[serde(default)]
    telemetry: TelemetryConfig,
    /// Data sources.
    #[serde(default)]
    sources: Vec<sources::RawSource>,
    /// Datasets and the source that serves each.
    #[serde(default)]
    datasets: Vec<sources::RawDataset>,
    /// Named sets of datasets fetched together.
    #[serde(default)]
    bundles: Vec<sources::RawBundle>,
    /// Sharing agreements.
    #[serde(default)]
    policy: policy::RawPolicy,
    /// Access requests: review deadlines, automatic approval.
    #[serde(default)]
    requests: requests::RawRequests,
    /// Departments' display names, shown to citizens beside each access.
    #[serde(default)]
    departments: Vec<departments::RawDepartment>,
}

/// `[tls]` as written.
#[serde_inline_default]
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawTls {
    /// Server certificate chain (PEM). Certificates, CAs and CRLs reload without a
    /// restart: on SIGHUP and within a second of a change.
    cert: Spanned<String>,
    /// Server key (PEM).
    key: Spanned<String>,
    /// CAs (PEM) whose client certificates are accepted; at least one.
    client_cas: Vec<Spanned<String>>,
    /// CRLs (PEM) checked at every handshake; none: no revocation check.
    #[serde(default)]
    crls: Vec<Spanned<String>>,
    /// With CRLs listed: refuse (`deny`) or accept (`allow`) a client whose chain has
    /// a CA no listed CRL speaks for.
    #[serde_inline_default(Spanned::default_value("deny".to_owned()))]
    unknown_revocation: Spanned<String>,
}

impl Config {
    /// Read, parse and check a config file, with the `TONGBAN_*` variables of this
    /// process laid over it (what every command does).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, &Env::from_process())
    }

    /// Read, parse and check a config file with the variables `env` laid over it.
    pub fn load_with(path: &Path, env: &Env) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_owned(),
            line: None,
            variable: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse_with(path, &text, env)
    }

    /// Parse and check config text alone; `path` names it in errors and anchors
    /// relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::parse_with(path, text, &Env::default())
    }

    /// Parse and check config text with the variables `env` laid over it.
    pub fn parse_with(path: &Path, text: &str, env: &Env) -> Result<Self, ConfigError> {
        let source = env::Overlay::build(path, text, env)?;
        let checker = Checker {
            path,
            source: &source,
        };
        let raw: RawConfig = toml::from_str(&source.text).map_err(|e| {
            checker.err(
                e.span().unwrap_or(usize::MAX..usize::MAX),
                e.message().to_owned(),
            )
        })?;
        let mut config = checker.check(raw)?;
        config.env = env.clone();
        Ok(config)
    }

    /// The dataset called `name`, if served.
    pub fn dataset(&self, name: &str) -> Option<&DatasetConfig> {
        self.datasets.iter().find(|d| d.dataset.as_str() == name)
    }

    /// The bundle named `name`, if configured.
    pub fn bundle(&self, name: &str) -> Option<&BundleConfig> {
        self.bundles.iter().find(|b| b.name == name)
    }
}

struct Checker<'a> {
    path: &'a Path,
    /// The file with the variables laid over it.
    source: &'a env::Overlay,
}

impl Checker<'_> {
    /// An error about the value at `span` (`usize::MAX..` when there is none): its
    /// line, or the variable it came from.
    fn err(&self, span: Range<usize>, message: String) -> ConfigError {
        let (line, variable) = match span.start {
            usize::MAX => (None, None),
            _ => match self.source.origin(span) {
                env::Origin::Line(line) => (Some(line), None),
                env::Origin::Variable(var) => (None, Some(var)),
            },
        };
        ConfigError {
            path: self.path.to_owned(),
            line,
            variable,
            message,
        }
    }

    /// An error about `key` (dotted) where no position is kept: the variable that set
    /// it, if one did.
    fn at_key(&self, key: &str, message: String) -> ConfigError {
        ConfigError {
            path: self.path.to_owned(),
            line: None,
            variable: self.source.variable_of(key).map(str::to_owned),
            message,
        }
    }

    fn base(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base().join(p)
        }
    }

    fn addr(&self, key: &str, v: &Spanned<String>) -> Result<SocketAddr, ConfigError> {
        v.get_ref().parse().map_err(|_| {
            self.err(
                v.span(),
                format!(
                    "{key}: {:?} is not an address like 127.0.0.1:8443",
                    v.get_ref()
                ),
            )
        })
    }

    fn existing_file(&self, key: &str, v: &Spanned<String>) -> Result<PathBuf, ConfigError> {
        let p = self.resolve(v.get_ref());
        if !p.is_file() {
            return Err(self.err(v.span(), format!("{key}: no such file {}", p.display())));
        }
        Ok(p)
    }

    fn unknown_revocation(
        &self,
        v: &Spanned<String>,
    ) -> Result<certs::UnknownRevocation, ConfigError> {
        match v.get_ref().as_str() {
            "deny" => Ok(certs::UnknownRevocation::Deny),
            "allow" => Ok(certs::UnknownRevocation::Allow),
            other => Err(self.err(
                v.span(),
                format!("tls.unknown_revocation: {other:?} is not one of deny, allow"),
            )),
        }
    }

    fn check(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let node = raw.node.get_ref().trim().to_owned();
        if node.is_empty() {
            return Err(self.err(raw.node.span(), "node: must not be empty".into()));
        }
        let tls = TlsConfig {
            cert: self.existing_file("tls.cert", &raw.tls.cert)?,
            key: self.existing_file("tls.key", &raw.tls.key)?,
            client_cas: raw
                .tls
                .client_cas
                .iter()
                .map(|ca| self.existing_file("tls.client_cas", ca))
                .collect::<Result<_, _>>()?,
            crls: raw
                .tls
                .crls
                .iter()
                .map(|crl| self.existing_file("tls.crls", crl))
                .collect::<Result<_, _>>()?,
            unknown_revocation: self.unknown_revocation(&raw.tls.unknown_revocation)?,
        };
        if tls.client_cas.is_empty() {
            return Err(self.err(
                raw.tls.cert.span(),
                "tls.client_cas: at least one trusted client CA is required".into(),
            ));
        }
        if !["text", "json"].contains(&raw.telemetry.log_format.as_str()) {
            return Err(self.at_key(
                "telemetry.log_format",
                format!(
                    "telemetry.log_format: {:?} is not one of text, json",
                    raw.telemetry.log_format
                ),
            ));
        }
        let sources = self.each_once(&raw.sources, "sources", |s| self.source(s))?;
        let datasets = self.each_once(&raw.datasets, "datasets", |d| {
            self.dataset(d, &sources, &raw.sources)
        })?;
        let bundles = self.each_once(&raw.bundles, "bundles", |b| self.bundle(b, &datasets))?;
        let policy = self.policy(&raw.policy)?;
        let requests = self.requests(&raw.requests, &datasets)?;
        let audit = self.audit(raw.audit, &tls.client_cas)?;
        Ok(Config {
            path: self.path.to_owned(),
            node,
            listen: self.addr("listen", &raw.listen)?,
            ops_listen: self.addr("ops_listen", &raw.ops_listen)?,
            tls,
            signing_key: self.existing_file("signing_key", &raw.signing_key)?,
            state_db: self.state_db(&raw.state_db),
            audit,
            limits: raw.limits,
            telemetry: raw.telemetry,
            sources,
            datasets,
            bundles,
            policy,
            requests,
            departments: self.departments(&raw.departments)?,
            env: Env::default(),
        })
    }

    /// Resolve the audit paths against the config's directory; check the thresholds.
    fn audit(
        &self,
        mut a: AuditConfig,
        client_cas: &[PathBuf],
    ) -> Result<AuditConfig, ConfigError> {
        a.anomaly
            .service_minutes()
            .map_err(|m| self.at_key("audit.anomaly.service_hours", m))?;
        if a.origin.chars().any(|c| c.is_whitespace() || c == '+') {
            return Err(self.at_key(
                "audit.origin",
                format!(
                    "audit.origin: {:?} names a signing key: no spaces and no '+'",
                    a.origin
                ),
            ));
        }
        a.checkpoint_file = a
            .checkpoint_file
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| self.resolve(&p.to_string_lossy()));
        a.trusted_jwks = a
            .trusted_jwks
            .iter()
            .map(|p| {
                let resolved = self.resolve(&p.to_string_lossy());
                if resolved.is_file() {
                    Ok(resolved)
                } else {
                    Err(self.at_key(
                        "audit.trusted_jwks",
                        format!("audit.trusted_jwks: no such file {}", resolved.display()),
                    ))
                }
            })
            .collect::<Result<_, _>>()?;
        for w in &a.witnesses {
            witness_verifier(w)
                .map_err(|e| self.at_key("audit.witnesses", format!("audit.witnesses: {e}")))?;
        }
        if a.witness_interval_ms == 0 || a.witness_timeout_ms == 0 {
            return Err(self.at_key(
                "audit.witness_interval_ms",
                "audit.witness_interval_ms and witness_timeout_ms: must be above 0".into(),
            ));
        }
        a.archive_dir = self.resolve(&a.archive_dir.to_string_lossy());
        a.anomaly.revoked_index = match a.anomaly.revoked_index {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(self.resolve(&p.to_string_lossy())),
            // Whoever issued the trusted client certificates knows which are revoked.
            None => client_cas
                .iter()
                .filter_map(|ca| ca.parent())
                .map(|dir| dir.join(certs::INDEX))
                .find(|index| index.is_file()),
        };
        Ok(a)
    }

    fn state_db(&self, v: &Spanned<String>) -> StateDb {
        let v = v.get_ref();
        if v.starts_with("postgres://") || v.starts_with("postgresql://") {
            StateDb::Postgres(v.clone())
        } else {
            StateDb::Sqlite(self.resolve(v.strip_prefix("sqlite://").unwrap_or(v)))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = concat!(
        crate::config::test_files::head!(),
        r#"
[[sources]]
name = "population-db"
kind = "sql"
url = "sqlite://population.db"

[[datasets]]
name = "population"
department = "sz-psb"
subject = "resident_id"
source = "population-db"
query = "SELECT full_name FROM residents WHERE id_number = ?"
fields = [
  { name = "name", column = "full_name", class = "conditional" },
]
"#
    );

    fn dir() -> tempfile::TempDir {
        super::test_files::dir_with(&["population.db"])
    }

    use super::test_files::parse_in as parse;

    #[test]
    fn good_config_resolves_paths() {
        let d = dir();
        let c = parse(&d, GOOD).unwrap();
        assert_eq!(c.tls.cert, d.path().join("server.pem"));
        assert_eq!(
            c.sources[0].url,
            format!("sqlite://{}", d.path().join("population.db").display())
        );
        assert_eq!(c.audit.batch_max, 512);
        assert!(c.dataset("population").is_some());
    }

    #[test]
    fn revoked_index_defaults_to_the_client_cas_index() {
        let d = dir();
        // No CA directory beside the client CA: no index.
        assert_eq!(parse(&d, GOOD).unwrap().audit.anomaly.revoked_index, None);
        std::fs::write(d.path().join(certs::INDEX), "{}").unwrap();
        let c = parse(&d, GOOD).unwrap();
        assert_eq!(
            c.audit.anomaly.revoked_index,
            Some(d.path().join(certs::INDEX))
        );
        // Named: that one; "": none.
        let named = format!("{GOOD}\n[audit.anomaly]\nrevoked_index = \"other.json\"\n");
        let c = parse(&d, &named).unwrap();
        assert_eq!(
            c.audit.anomaly.revoked_index,
            Some(d.path().join("other.json"))
        );
        let off = named.replace("other.json", "");
        assert_eq!(parse(&d, &off).unwrap().audit.anomaly.revoked_index, None);
    }

    #[test]
    fn tls_crls_and_unknown_revocation() {
        let d = dir();
        let c = parse(&d, GOOD).unwrap();
        assert!(c.tls.crls.is_empty());
        assert_eq!(c.tls.unknown_revocation, certs::UnknownRevocation::Deny);
        std::fs::write(d.path().join("crl.pem"), "x").unwrap();
        let with = GOOD.replace(
            "client_cas = [\"ca.pem\"]\n",
            "client_cas = [\"ca.pem\"]\ncrls = [\"crl.pem\"]\nunknown_revocation = \"allow\"\n",
        );
        let c = parse(&d, &with).unwrap();
        assert_eq!(c.tls.crls, vec![d.path().join("crl.pem")]);
        assert_eq!(c.tls.unknown_revocation, certs::UnknownRevocation::Allow);
        let e = parse(&d, &with.replace("crl.pem", "gone.pem")).unwrap_err();
        assert!(e.contains(":11: tls.crls: no such file"), "{e}");
        let e = parse(&d, &with.replace("\"allow\"", "\"maybe\"")).unwrap_err();
        assert!(e.contains(":12: tls.unknown_revocation: \"maybe\""), "{e}");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let d = dir();
        let cases = [
            (
                GOOD.replace("127.0.0.1:9090", "localhost"),
                ":3: ops_listen",
            ),
            (
                GOOD.replace("cert = \"server.pem\"", "cert = \"missing.pem\""),
                ":8: tls.cert: no such file",
            ),
            (
                GOOD.replace("kind = \"sql\"", "kind = \"ftp\""),
                ":14: sources.kind",
            ),
            (
                GOOD.replace("name = \"population\"", "name = \"peo ple\""),
                ":18: datasets.name: must be",
            ),
            (
                GOOD.replace("name = \"name\"", "nickname = \"name\""),
                ":24: unknown field `nickname`",
            ),
            (
                GOOD.replace("class = \"conditional\"", "class = \"secret\""),
                ":24: datasets.fields.class: \"secret\" is not one of open, conditional, closed",
            ),
            (
                GOOD.replace("subject = \"resident_id\"", "subject = \"passport\""),
                ":20: datasets.subject: \"passport\" is not one of",
            ),
            (
                GOOD.replace("source = \"population-db\"", "source = \"nope\""),
                ":21: datasets.source",
            ),
            (
                GOOD.replace("node = \"gw-1\"", "node = \"gw-1\"\nspeed = 3"),
                ":2: unknown field `speed`",
            ),
            (
                GOOD.replace("[tls]", "[tls]\nextra = 1"),
                ":8: unknown field `extra`",
            ),
        ];
        crate::config::test_files::assert_errors(&d, cases);
    }

    /// Every example config shipped in deploy/ parses (its absolute paths moved into
    /// a temp dir holding a placeholder for each file named); the systemd one also
    /// with the variables its environment file shows. (The demo's generated config is
    /// checked through the binary in tests/config_env.rs.)
    #[test]
    fn deploy_examples_parse() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let read = |p: &str| std::fs::read_to_string(deploy.join(p)).unwrap();
        let configmap = read("k8s/configmap.yaml");
        let k8s: String = configmap
            .lines()
            .skip_while(|l| !l.contains("tongban.toml: |"))
            .skip(1)
            .take_while(|l| l.is_empty() || l.starts_with("    "))
            .map(|l| format!("{}\n", l.get(4..).unwrap_or_default()))
            .collect();
        let env_file = read("systemd/tongban.env");
        let systemd = Env::from_pairs(
            env_file
                .lines()
                .filter_map(|l| l.trim_start_matches(['#', ' ']).split_once('='))
                .filter(|(k, _)| k.starts_with("TONGBAN_")),
        );
        assert!(systemd.names().count() >= 3, "{systemd:?}");
        let examples = [
            ("config/tongban.toml", read("config/tongban.toml"), systemd),
            (
                "config/compose.toml",
                read("config/compose.toml"),
                Env::default(),
            ),
            ("k8s/configmap.yaml", k8s, Env::default()),
        ];
        for (name, text, env) in examples {
            let d = tempfile::tempdir().unwrap();
            let root = d.path().display().to_string();
            let text = text
                .replace("\"/etc/", &format!("\"{root}/etc/"))
                .replace("\"/var/", &format!("\"{root}/var/"));
            let doc: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            super::test_files::touch_paths_under(&doc, &root);
            let c = Config::parse_with(&d.path().join("tongban.toml"), &text, &env)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!c.datasets.is_empty(), "{name}");
        }
    }
}
