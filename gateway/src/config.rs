//! The gateway configuration: one TOML file, parsed and checked once at start-up.
//!
//! Relative paths are resolved against the directory of the file, so a config and the
//! files it names can move together. Errors name the file, the line and the key.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use connectors::Dataset;
use serde::Deserialize;
use toml::Spanned;

/// A configuration problem, rendered as `file:line: key: what is wrong`.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    /// The config file.
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong, starting with the key.
    pub message: String,
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
}

/// Group-commit settings of the audit writer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Most records committed in one transaction.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
}

/// Limits on the counter listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Requests processed at once; more are shed with 503.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_requests: usize,
    /// Largest request body accepted.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

/// Logging and OpenTelemetry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `text` or `json`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// tracing filter, e.g. `info` or `gateway=debug`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// OTLP/gRPC endpoint for traces; empty (the default) exports nothing.
    #[serde(default)]
    pub otlp_endpoint: String,
}

/// A data source of the owning department.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Connector name, shown in responses.
    pub name: String,
    /// Database URL; SQLite paths already resolved.
    pub url: String,
    /// Pool size.
    pub max_connections: u32,
    /// How long to wait for a pooled connection.
    pub acquire_timeout_ms: u64,
}

/// A dataset served by the gateway.
#[derive(Debug, Clone)]
pub struct DatasetConfig {
    /// Which dataset.
    pub dataset: Dataset,
    /// Owning department code.
    pub department: String,
    /// Name of the source serving it.
    pub source: String,
    /// Parameterized query, the subject its one parameter.
    pub query: String,
    /// field name → column name.
    pub fields: std::collections::BTreeMap<String, String>,
}

fn default_batch_max() -> usize {
    512
}
fn default_max_concurrent() -> usize {
    4096
}
fn default_max_body() -> usize {
    64 * 1024
}
fn default_log_format() -> String {
    "text".to_owned()
}
fn default_log_level() -> String {
    "info".to_owned()
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            batch_max: default_batch_max(),
        }
    }
}
impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_concurrent_requests: default_max_concurrent(),
            max_body_bytes: default_max_body(),
        }
    }
}
impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: default_log_format(),
            log_level: default_log_level(),
            otlp_endpoint: String::new(),
        }
    }
}

// The file as written: spans kept on the values checked after parsing, so that those
// errors can name a line too.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: Spanned<String>,
    listen: Spanned<String>,
    ops_listen: Spanned<String>,
    state_db: Spanned<String>,
    signing_key: Spanned<String>,
    tls: RawTls,
    #[serde(default)]
    audit: AuditConfig,
    #[serde(default)]
    limits: LimitsConfig,
    #[serde(default)]
    telemetry: TelemetryConfig,
    #[serde(default)]
    sources: Vec<RawSource>,
    #[serde(default)]
    datasets: Vec<RawDataset>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Spanned<String>,
    key: Spanned<String>,
    client_cas: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: Spanned<String>,
    kind: Spanned<String>,
    url: Spanned<String>,
    #[serde(default = "default_pool")]
    max_connections: u32,
    #[serde(default = "default_acquire_ms")]
    acquire_timeout_ms: u64,
}

fn default_pool() -> u32 {
    8
}
fn default_acquire_ms() -> u64 {
    2000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    name: Spanned<String>,
    department: String,
    source: Spanned<String>,
    query: String,
    fields: std::collections::BTreeMap<String, String>,
}

impl Config {
    /// Read, parse and check a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_owned(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parse and check config text; `path` names it in errors and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
            path: path.to_owned(),
            line: e.span().map(|s| line_of(text, s.start)),
            message: e.message().to_owned(),
        })?;
        Checker { path, text }.check(raw)
    }

    /// The dataset entry for `dataset`, if served.
    pub fn dataset(&self, dataset: Dataset) -> Option<&DatasetConfig> {
        self.datasets.iter().find(|d| d.dataset == dataset)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Checker<'_> {
    fn err(&self, span: Range<usize>, message: String) -> ConfigError {
        ConfigError {
            path: self.path.to_owned(),
            line: Some(line_of(self.text, span.start)),
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
        };
        if tls.client_cas.is_empty() {
            return Err(self.err(
                raw.tls.cert.span(),
                "tls.client_cas: at least one trusted client CA is required".into(),
            ));
        }
        if !["text", "json"].contains(&raw.telemetry.log_format.as_str()) {
            return Err(ConfigError {
                path: self.path.to_owned(),
                line: None,
                message: format!(
                    "telemetry.log_format: {:?} is not one of text, json",
                    raw.telemetry.log_format
                ),
            });
        }
        let sources = raw
            .sources
            .iter()
            .map(|s| self.source(s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut datasets: Vec<DatasetConfig> = Vec::new();
        for d in &raw.datasets {
            let dataset = self.dataset(d, &sources)?;
            if datasets.iter().any(|x| x.dataset == dataset.dataset) {
                return Err(self.err(
                    d.name.span(),
                    format!("datasets.name: {} is configured twice", dataset.dataset),
                ));
            }
            datasets.push(dataset);
        }
        Ok(Config {
            path: self.path.to_owned(),
            node,
            listen: self.addr("listen", &raw.listen)?,
            ops_listen: self.addr("ops_listen", &raw.ops_listen)?,
            tls,
            signing_key: self.existing_file("signing_key", &raw.signing_key)?,
            state_db: self.state_db(&raw.state_db),
            audit: raw.audit,
            limits: raw.limits,
            telemetry: raw.telemetry,
            sources,
            datasets,
        })
    }

    fn state_db(&self, v: &Spanned<String>) -> StateDb {
        let v = v.get_ref();
        if v.starts_with("postgres://") || v.starts_with("postgresql://") {
            StateDb::Postgres(v.clone())
        } else {
            StateDb::Sqlite(self.resolve(v.strip_prefix("sqlite://").unwrap_or(v)))
        }
    }

    fn source(&self, s: &RawSource) -> Result<SourceConfig, ConfigError> {
        if s.kind.get_ref() != "sql" {
            return Err(self.err(
                s.kind.span(),
                format!(
                    "sources.kind: {:?} is not a known kind (sql)",
                    s.kind.get_ref()
                ),
            ));
        }
        let url = s.url.get_ref();
        let url = if let Some(rest) = url.strip_prefix("sqlite://") {
            let (file, query) = rest.split_once('?').unwrap_or((rest, ""));
            let file = self.resolve(file);
            if !file.is_file() {
                return Err(self.err(
                    s.url.span(),
                    format!("sources.url: no such SQLite file {}", file.display()),
                ));
            }
            let sep = if query.is_empty() { "" } else { "?" };
            format!("sqlite://{}{sep}{query}", file.display())
        } else if url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("mysql://")
        {
            url.clone()
        } else {
            return Err(self.err(
                s.url.span(),
                "sources.url: must start with sqlite://, postgres:// or mysql://".into(),
            ));
        };
        Ok(SourceConfig {
            name: s.name.get_ref().clone(),
            url,
            max_connections: s.max_connections.max(1),
            acquire_timeout_ms: s.acquire_timeout_ms,
        })
    }

    fn dataset(
        &self,
        d: &RawDataset,
        sources: &[SourceConfig],
    ) -> Result<DatasetConfig, ConfigError> {
        let dataset: Dataset = d
            .name
            .get_ref()
            .parse()
            .map_err(|e| self.err(d.name.span(), format!("datasets.name: {e}")))?;
        if !sources.iter().any(|s| &s.name == d.source.get_ref()) {
            return Err(self.err(
                d.source.span(),
                format!("datasets.source: no source named {:?}", d.source.get_ref()),
            ));
        }
        if let Some(unknown) = d
            .fields
            .keys()
            .find(|f| !dataset.fields().contains(&f.as_str()))
        {
            return Err(self.err(
                d.name.span(),
                format!("datasets.fields: {dataset} has no field {unknown:?}"),
            ));
        }
        Ok(DatasetConfig {
            dataset,
            department: d.department.clone(),
            source: d.source.get_ref().clone(),
            query: d.query.clone(),
            fields: d.fields.clone(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = r#"node = "gw-1"
listen = "127.0.0.1:8443"
ops_listen = "127.0.0.1:9090"
state_db = "state.db"
signing_key = "signing.pem"

[tls]
cert = "server.pem"
key = "server.key"
client_cas = ["ca.pem"]

[[sources]]
name = "population-db"
kind = "sql"
url = "sqlite://population.db"

[[datasets]]
name = "population"
department = "sz-psb"
source = "population-db"
query = "SELECT full_name FROM residents WHERE id_number = ?"
[datasets.fields]
name = "full_name"
"#;

    fn dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "signing.pem",
            "server.pem",
            "server.key",
            "ca.pem",
            "population.db",
        ] {
            std::fs::write(d.path().join(f), "x").unwrap();
        }
        d
    }

    fn parse(d: &tempfile::TempDir, text: &str) -> Result<Config, String> {
        Config::parse(&d.path().join("tongban.toml"), text).map_err(|e| e.to_string())
    }

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
        assert!(c.dataset(Dataset::Population).is_some());
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
                GOOD.replace("name = \"population\"", "name = \"people\""),
                ":18: datasets.name: unknown dataset",
            ),
            (
                GOOD.replace("name = \"full_name\"", "nickname = \"full_name\""),
                ":18: datasets.fields",
            ),
            (
                GOOD.replace("source = \"population-db\"", "source = \"nope\""),
                ":20: datasets.source",
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
        for (text, want) in cases {
            let err = parse(&d, &text).unwrap_err();
            assert!(err.contains("tongban.toml"), "{err}");
            assert!(err.contains(want), "want {want:?} in {err}");
        }
    }
}
