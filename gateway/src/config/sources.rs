//! The data-source part of the config: `[[sources]]` (SQL databases and department
//! REST APIs, each with its resilience settings), the `[[datasets]]` — each declared
//! here, with its owner, identifier kind and fields, and bound to a source — and the
//! `[[bundles]]` of datasets fetched together for one life event.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use connectors::{Dataset, IssuerKeys, SubjectKind, SubjectPattern};
use policy::SharingClass;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_inline_default::serde_inline_default;

use super::env::Origin;
use super::schema::Spanned;
use super::{Checker, ConfigError};

/// What a source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A SQL database: SQLite, PostgreSQL, MySQL/MariaDB.
    Sql,
    /// A department's REST API over mutual TLS, answering JSON.
    Http,
}

/// A data source of an owning department.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Connector name, shown in responses.
    pub name: String,
    /// `sql` or `http`.
    pub kind: SourceKind,
    /// Database URL (SQLite paths already resolved), or the API's `https://` base URL.
    pub url: String,
    /// SQL: pool size. HTTP: idle connections kept for reuse.
    pub max_connections: u32,
    /// SQL: how long (ms) to wait for a pooled connection.
    pub acquire_timeout_ms: u64,
    /// HTTP: how long (ms) opening a connection (TCP and TLS) may take.
    pub connect_timeout_ms: u64,
    /// HTTP: the pinned CA and the gateway's client certificate.
    pub tls: Option<SourceTls>,
    /// HTTP: path probed by `/readyz`.
    pub health_path: String,
    /// Time-out, concurrency, retry and circuit-breaker settings.
    pub resilience: ResilienceConfig,
}

/// Mutual TLS towards a department API.
#[derive(Debug, Clone)]
pub struct SourceTls {
    /// CA certificates the department's server certificate must chain to (pinned: no
    /// system roots).
    pub ca: Vec<PathBuf>,
    /// The gateway's client certificate (PEM) presented to the department.
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
}

/// The resilience layers around one source (`[sources.resilience]`).
#[serde_inline_default]
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResilienceConfig {
    /// A lookup not answered within this time (ms) fails with 504.
    #[serde_inline_default(2000)]
    pub timeout_ms: u64,
    /// Lookups in flight at once; more are shed with 503.
    #[serde_inline_default(256)]
    pub max_in_flight: usize,
    /// Retries of a transient failure (refused, reset, 503), inside the time-out; at
    /// most 10.
    #[serde_inline_default(2)]
    pub retries: u32,
    /// Retries allowed as a percentage of recent lookups, so that retries cannot
    /// multiply the load on a struggling source.
    #[serde_inline_default(20)]
    pub retry_budget_percent: u32,
    /// Consecutive failures that open the circuit breaker.
    #[serde_inline_default(5)]
    pub breaker_failures: u32,
    /// How long (ms) an open breaker refuses before letting one probe through.
    #[serde_inline_default(5000)]
    pub breaker_cooldown_ms: u64,
}

super::schema::default_from_serde!(ResilienceConfig);

/// A dataset served by the gateway: its declaration and its source binding.
#[derive(Debug, Clone)]
pub struct DatasetConfig {
    /// Its name, e.g. `population`.
    pub dataset: Dataset,
    /// What it is, for the catalogue.
    pub description: String,
    /// Owning department code.
    pub department: String,
    /// How its subjects are identified and checked.
    pub subject: SubjectKind,
    /// Its fields, in display order.
    pub fields: Vec<FieldConfig>,
    /// Name of the source serving it.
    pub source: String,
    /// SQL: parameterized query, the subject its one parameter (empty for HTTP).
    pub query: String,
    /// HTTP: path template holding `{subject}`.
    pub path: Option<String>,
    /// SQL, e-licences: query by holder ID then licence type.
    pub holder_query: Option<String>,
    /// HTTP, e-licences: path template holding `{holder_id}` and `{license_type}`.
    pub holder_path: Option<String>,
    /// E-licences: public keys of the issuers whose signatures verify.
    pub issuer_keys: IssuerKeys,
}

/// One declared field of a dataset.
#[derive(Debug, Clone)]
pub struct FieldConfig {
    /// Field name, as agreements and requests name it.
    pub name: String,
    /// What its values are.
    pub kind: FieldType,
    /// How it may be shared; a `closed` field is in no agreement and never answered.
    pub class: SharingClass,
    /// What it is, for the catalogue.
    pub description: String,
    /// Where the source has it: a column (sql) or a JSON pointer (http); `None` for a
    /// closed field the source does not give.
    pub from: Option<String>,
}

/// What a field's values are, as the catalogue shows it. Values are passed on as the
/// source gives them; the demo's test checks that its sources match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Text.
    String,
    /// A whole number.
    Integer,
    /// A number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// An ISO 8601 date, `YYYY-MM-DD`.
    Date,
    /// A month, `YYYY-MM`.
    Month,
    /// An RFC 3339 date and time.
    DateTime,
    /// A JSON document held as text (an e-licence's content).
    Json,
}

impl FieldType {
    const ALL: [FieldType; 8] = [
        FieldType::String,
        FieldType::Integer,
        FieldType::Number,
        FieldType::Boolean,
        FieldType::Date,
        FieldType::Month,
        FieldType::DateTime,
        FieldType::Json,
    ];

    /// The type a config word names: `string`, `integer`, …
    pub fn from_word(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == word)
    }

    /// Its config word: `string`, `integer`, …
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Integer => "integer",
            FieldType::Number => "number",
            FieldType::Boolean => "boolean",
            FieldType::Date => "date",
            FieldType::Month => "month",
            FieldType::DateTime => "datetime",
            FieldType::Json => "json",
        }
    }
}

impl DatasetConfig {
    /// The declared field called `name`.
    pub fn field(&self, name: &str) -> Option<&FieldConfig> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Whether `name` is a declared field.
    pub fn has_field(&self, name: &str) -> bool {
        self.field(name).is_some()
    }

    /// Field name → column (sql) or JSON pointer (http), for the connector: every
    /// field the source gives except the closed ones, which are never answered.
    pub fn mapping(&self) -> BTreeMap<String, String> {
        self.fields
            .iter()
            .filter(|f| f.class != SharingClass::Closed)
            .filter_map(|f| Some((f.name.clone(), f.from.clone()?)))
            .collect()
    }
}

/// A named set of datasets fetched in one request (`POST /v1/bundle`).
#[derive(Debug, Clone)]
pub struct BundleConfig {
    /// Bundle name, e.g. `newborn`.
    pub name: String,
    /// What it is for, shown to people.
    pub description: String,
    /// The items, each after the items it takes its subject from.
    pub items: Vec<BundleItem>,
}

/// One record of a bundle.
#[derive(Debug, Clone)]
pub struct BundleItem {
    /// Item name, unique in the bundle, e.g. `mother`.
    pub name: String,
    /// The dataset read.
    pub dataset: Dataset,
    /// Where the item's subject comes from.
    pub subject: ItemSubject,
    /// E-licences found by holder: the licence type (the subject is the holder).
    pub license_type: Option<String>,
    /// Fields asked; `None`: every field the agreement grants.
    pub fields: Option<Vec<String>>,
}

/// Where a bundle item's subject comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemSubject {
    /// The request's `subject`.
    Request,
    /// A value in an earlier item's returned record: `<item>#<JSON pointer>`. A
    /// string holding JSON (an e-licence's `content`) is looked into as well.
    Item {
        /// Index of the earlier item.
        index: usize,
        /// JSON pointer into its record; its first segment is the field.
        pointer: String,
    },
}

impl ItemSubject {
    /// The field of the earlier item the subject is read from.
    pub fn field(&self) -> Option<&str> {
        match self {
            ItemSubject::Request => None,
            ItemSubject::Item { pointer, .. } => pointer.split('/').nth(1),
        }
    }
}

/// `[[sources]]` as written.
#[serde_inline_default]
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    /// Connector name, unique, shown in responses; 1-64 of A-Z a-z 0-9 - _ .
    name: Spanned<String>,
    /// `sql` (a database) or `http` (a department's REST API over mutual TLS).
    kind: Spanned<String>,
    /// sql: a `sqlite://` (relative to the config), `postgres://` or `mysql://` URL.
    /// http: the API's `https://` base URL.
    url: Spanned<String>,
    /// sql: pool size. http: idle connections kept for reuse.
    #[serde_inline_default(8)]
    max_connections: u32,
    /// sql: how long (ms) a lookup waits for a pooled connection. (An http source
    /// that sets it and not `connect_timeout_ms` takes it as its connect time-out, as
    /// before that setting existed.)
    #[serde_inline_default(Spanned::default_value(2000))]
    acquire_timeout_ms: Spanned<u64>,
    /// http: how long (ms) opening a connection (TCP and TLS) may take.
    #[serde_inline_default(Spanned::default_value(2000))]
    connect_timeout_ms: Spanned<u64>,
    /// http: CA certificates (PEM) the department's server certificate must chain
    /// to (pinned: no system roots).
    #[serde(default)]
    ca: Vec<Spanned<String>>,
    /// http: the gateway's client certificate (PEM) presented to the department.
    #[serde(default)]
    cert: Option<Spanned<String>>,
    /// http: its key (PEM).
    #[serde(default)]
    key: Option<Spanned<String>>,
    /// http: the path `/readyz` probes.
    #[serde_inline_default(Spanned::default_value("/".to_owned()))]
    health_path: Spanned<String>,
    /// Time-out, concurrency, retry and circuit-breaker settings.
    #[serde(default)]
    resilience: Option<Spanned<RawResilience>>,
}

/// `[sources.resilience]` as written: each value keeps its place, so that an error
/// names the line or the `TONGBAN_*` variable that set it. A value left out is
/// [`ResilienceConfig`]'s default, and so is the schema (one statement of the keys,
/// their defaults and their docs).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResilience {
    timeout_ms: Option<Spanned<u64>>,
    max_in_flight: Option<Spanned<usize>>,
    retries: Option<Spanned<u32>>,
    retry_budget_percent: Option<Spanned<u32>>,
    breaker_failures: Option<Spanned<u32>>,
    breaker_cooldown_ms: Option<Spanned<u64>>,
}

impl JsonSchema for RawResilience {
    fn inline_schema() -> bool {
        ResilienceConfig::inline_schema()
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        ResilienceConfig::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        ResilienceConfig::json_schema(generator)
    }
}

/// `[[datasets]]` as written.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDataset {
    /// Dataset name, as requests and agreements name it, e.g. `population`; 1-64 of
    /// A-Z a-z 0-9 - _ .
    name: Spanned<String>,
    /// What it is, shown in the catalogue.
    #[serde(default)]
    description: String,
    /// Code of the department that owns it (its provider in agreements).
    department: Spanned<String>,
    /// How its subjects are identified, checked before anything else happens:
    /// `resident_id` (GB 11643), `credit_code` (GB 32100), `license_id` (GB/T 36904)
    /// or `pattern` (then `subject_pattern`).
    subject: Spanned<String>,
    /// subject = "pattern": a regular expression every subject must match whole, e.g.
    /// `SI[0-9]{10}`.
    #[serde(default)]
    subject_pattern: Option<Spanned<String>>,
    /// Name of the `[[sources]]` entry that serves it.
    source: Spanned<String>,
    /// sql: the parameterized query; the subject is its one parameter.
    #[serde(default)]
    query: Option<Spanned<String>>,
    /// http: path template holding `{subject}`.
    #[serde(default)]
    path: Option<Spanned<String>>,
    /// sql, subject = "license_id": query by holder id, then licence type.
    #[serde(default)]
    holder_query: Option<Spanned<String>>,
    /// http, subject = "license_id": path template holding `{holder_id}` and
    /// `{license_type}`.
    #[serde(default)]
    holder_path: Option<Spanned<String>>,
    /// subject = "license_id": public keys (base64url Ed25519) of the issuers whose
    /// signatures verify.
    #[serde(default)]
    issuer_keys: Option<Spanned<Vec<String>>>,
    /// The fields, in display order.
    fields: Spanned<Vec<RawField>>,
}

/// One field of `[[datasets]]`, e.g. `{ name = "name", column = "full_name", class =
/// "conditional", description = "Full name" }`.
#[serde_inline_default]
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawField {
    /// Field name, as requests and agreements name it.
    name: Spanned<String>,
    /// What its values are: `string`, `integer`, `number`, `boolean`, `date`,
    /// `month`, `datetime` or `json`.
    #[serde(rename = "type")]
    #[serde_inline_default(Spanned::default_value("string".to_owned()))]
    kind: Spanned<String>,
    /// How it may be shared: `open` (without conditions), `conditional` (as an
    /// agreement says) or `closed` (never: no agreement may name it).
    class: Spanned<String>,
    /// What it is, shown in the catalogue.
    #[serde(default)]
    description: String,
    /// sql: the result column it is read from.
    #[serde(default)]
    column: Option<Spanned<String>>,
    /// http: the JSON pointer into the department's answer, e.g. `/license/status`.
    #[serde(default)]
    pointer: Option<Spanned<String>>,
}

/// `[[bundles]]` as written.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBundle {
    /// Bundle name (`POST /v1/bundle` names it), e.g. `newborn`.
    name: Spanned<String>,
    /// What it is for, shown to people.
    #[serde(default)]
    description: String,
    /// The records fetched, each after the items it takes its subject from.
    #[serde(default)]
    items: Vec<RawItem>,
}

/// `[[bundles.items]]` as written.
#[serde_inline_default]
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawItem {
    /// Item name, unique in the bundle, e.g. `mother`.
    name: Spanned<String>,
    /// The dataset read.
    dataset: Spanned<String>,
    /// Where the item's subject comes from: `request` (the request's subject), or
    /// `<earlier item>#<JSON pointer>` into an earlier item's record.
    #[serde_inline_default(Spanned::default_value("request".to_owned()))]
    subject: Spanned<String>,
    /// e_license found by holder: the licence type (the subject is the holder).
    #[serde(default)]
    license_type: Option<Spanned<String>>,
    /// Fields asked; left out: every field the agreement grants.
    #[serde(default)]
    fields: Option<Spanned<Vec<String>>>,
}

/// An entry of an array of tables, known by its `name`.
pub(super) trait Named {
    /// The entry's `name` as written.
    fn name(&self) -> &Spanned<String>;
}

macro_rules! named {
    ($($entry:ty),*) => {$(
        impl Named for $entry {
            fn name(&self) -> &Spanned<String> {
                &self.name
            }
        }
    )*};
}
named!(RawSource, RawDataset, RawBundle);

/// Names of sources, items and bundles: what an operator can type and a URL can hold.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Checker<'_> {
    /// Each entry of `[[what]]` checked in file order; one named as an earlier one
    /// is an error at its name.
    pub(super) fn each_once<R: Named, T>(
        &self,
        raw: &[R],
        what: &str,
        check: impl Fn(&R) -> Result<T, ConfigError>,
    ) -> Result<Vec<T>, ConfigError> {
        let mut out = Vec::new();
        for (i, r) in raw.iter().enumerate() {
            out.push(check(r)?);
            let name = r.name();
            if raw[..i]
                .iter()
                .any(|x| x.name().get_ref() == name.get_ref())
            {
                return Err(self.err(
                    name.span(),
                    format!("{what}.name: {:?} is configured twice", name.get_ref()),
                ));
            }
        }
        Ok(out)
    }

    pub(super) fn source(&self, s: &RawSource) -> Result<SourceConfig, ConfigError> {
        if !is_name(s.name.get_ref()) {
            return Err(self.err(
                s.name.span(),
                "sources.name: must be 1-64 characters of A-Z a-z 0-9 - _ .".into(),
            ));
        }
        let kind = match s.kind.get_ref().as_str() {
            "sql" => SourceKind::Sql,
            "http" => SourceKind::Http,
            other => {
                return Err(self.err(
                    s.kind.span(),
                    format!("sources.kind: {other:?} is not a known kind (sql, http)"),
                ))
            }
        };
        let (url, tls) = match kind {
            SourceKind::Sql => (self.sql_url(s)?, None),
            SourceKind::Http => (self.http_url(s)?, Some(self.source_tls(s)?)),
        };
        // Point at the TLS setting given, not at `kind`: if a TONGBAN_* variable set
        // it, the error then names that variable.
        let tls_given = s.ca.first().or(s.cert.as_ref()).or(s.key.as_ref());
        if let (SourceKind::Sql, Some(given)) = (kind, tls_given) {
            return Err(self.err(
                given.span(),
                "sources: ca, cert and key are for kind = \"http\"; a SQL source puts TLS \
                 settings in its url"
                    .into(),
            ));
        }
        if !s.health_path.get_ref().starts_with('/') {
            return Err(self.err(
                s.health_path.span(),
                "sources.health_path: must start with /".into(),
            ));
        }
        let connect_timeout_ms = self.connect_timeout(s, kind)?;
        let resilience = match &s.resilience {
            Some(r) => self.resilience(r)?,
            None => ResilienceConfig::default(),
        };
        Ok(SourceConfig {
            name: s.name.get_ref().clone(),
            kind,
            url,
            max_connections: s.max_connections.max(1),
            acquire_timeout_ms: *s.acquire_timeout_ms.get_ref(),
            connect_timeout_ms,
            tls,
            health_path: s.health_path.get_ref().clone(),
            resilience,
        })
    }

    /// The connect time-out of an http source. `acquire_timeout_ms` once set it too,
    /// so an http source that sets only that keeps what it meant.
    fn connect_timeout(&self, s: &RawSource, kind: SourceKind) -> Result<u64, ConfigError> {
        let (acquire, connect) = (&s.acquire_timeout_ms, &s.connect_timeout_ms);
        match kind {
            SourceKind::Sql if connect.given() => Err(self.err(
                connect.span(),
                format!(
                    "sources.connect_timeout_ms: not used by sql source {:?} (acquire_timeout_ms \
                     is how long a lookup waits for a pooled connection)",
                    s.name.get_ref()
                ),
            )),
            SourceKind::Http if acquire.given() && connect.given() => Err(self.err(
                acquire.span(),
                format!(
                    "sources.acquire_timeout_ms: not used by http source {:?}; its \
                     connect_timeout_ms is the connect time-out",
                    s.name.get_ref()
                ),
            )),
            SourceKind::Http if acquire.given() => Ok(*acquire.get_ref()),
            _ => Ok(*connect.get_ref()),
        }
    }

    fn sql_url(&self, s: &RawSource) -> Result<String, ConfigError> {
        let url = s.url.get_ref();
        if let Some(rest) = url.strip_prefix("sqlite://") {
            let (file, query) = rest.split_once('?').unwrap_or((rest, ""));
            let file = self.resolve(file);
            if !file.is_file() {
                return Err(self.err(
                    s.url.span(),
                    format!("sources.url: no such SQLite file {}", file.display()),
                ));
            }
            let sep = if query.is_empty() { "" } else { "?" };
            Ok(format!("sqlite://{}{sep}{query}", file.display()))
        } else if ["postgres://", "postgresql://", "mysql://", "mariadb://"]
            .iter()
            .any(|p| url.starts_with(p))
        {
            Ok(url.clone())
        } else {
            Err(self.err(
                s.url.span(),
                "sources.url: a sql source's url starts with sqlite://, postgres:// or mysql://"
                    .into(),
            ))
        }
    }

    fn http_url(&self, s: &RawSource) -> Result<String, ConfigError> {
        let url = s.url.get_ref();
        let ok = url
            .parse::<http::Uri>()
            .ok()
            .filter(|u| u.scheme_str() == Some("https") && u.host().is_some())
            .filter(|u| u.query().is_none());
        if ok.is_none() {
            return Err(self.err(
                s.url.span(),
                format!(
                    "sources.url: {url:?} is not an https:// base URL (departments are reached \
                     over mutual TLS)"
                ),
            ));
        }
        Ok(url.clone())
    }

    fn source_tls(&self, s: &RawSource) -> Result<SourceTls, ConfigError> {
        let missing = |key: &str| {
            self.err(
                s.kind.span(),
                format!(
                    "sources.{key}: an http source needs ca (the department's CA), cert and key \
                     (the gateway's client certificate)"
                ),
            )
        };
        if s.ca.is_empty() {
            return Err(missing("ca"));
        }
        let ca =
            s.ca.iter()
                .map(|c| self.existing_file("sources.ca", c))
                .collect::<Result<_, _>>()?;
        let cert = s.cert.as_ref().ok_or_else(|| missing("cert"))?;
        let key = s.key.as_ref().ok_or_else(|| missing("key"))?;
        Ok(SourceTls {
            ca,
            cert: self.existing_file("sources.cert", cert)?,
            key: self.existing_file("sources.key", key)?,
        })
    }

    fn resilience(&self, r: &Spanned<RawResilience>) -> Result<ResilienceConfig, ConfigError> {
        let (raw, d) = (r.get_ref(), ResilienceConfig::default());
        let v = ResilienceConfig {
            timeout_ms: value(&raw.timeout_ms, d.timeout_ms),
            max_in_flight: value(&raw.max_in_flight, d.max_in_flight),
            retries: value(&raw.retries, d.retries),
            retry_budget_percent: value(&raw.retry_budget_percent, d.retry_budget_percent),
            breaker_failures: value(&raw.breaker_failures, d.breaker_failures),
            breaker_cooldown_ms: value(&raw.breaker_cooldown_ms, d.breaker_cooldown_ms),
        };
        let span = |s: Option<Range<usize>>| s.unwrap_or_else(|| r.span());
        let problem = if v.timeout_ms == 0 {
            Some((
                span(place(&raw.timeout_ms)),
                "timeout_ms must be at least 1",
            ))
        } else if v.max_in_flight == 0 {
            Some((
                span(place(&raw.max_in_flight)),
                "max_in_flight must be at least 1",
            ))
        } else if v.retries > 10 {
            Some((span(place(&raw.retries)), "retries must be at most 10"))
        } else if v.retry_budget_percent > 1000 {
            Some((
                span(place(&raw.retry_budget_percent)),
                "retry_budget_percent must be at most 1000",
            ))
        } else if v.breaker_failures == 0 {
            Some((
                span(place(&raw.breaker_failures)),
                "breaker_failures must be at least 1",
            ))
        } else if v.breaker_cooldown_ms == 0 {
            Some((
                span(place(&raw.breaker_cooldown_ms)),
                "breaker_cooldown_ms must be at least 1",
            ))
        } else {
            None
        };
        match problem {
            Some((at, p)) => Err(self.err(at, format!("sources.resilience.{p}"))),
            None => Ok(v),
        }
    }

    pub(super) fn dataset(
        &self,
        d: &RawDataset,
        sources: &[SourceConfig],
        raw_sources: &[RawSource],
    ) -> Result<DatasetConfig, ConfigError> {
        let name = d.name.get_ref();
        if !is_name(name) {
            return Err(self.err(
                d.name.span(),
                "datasets.name: must be 1-64 characters of A-Z a-z 0-9 - _ .".into(),
            ));
        }
        let department = d.department.get_ref();
        if !is_name(department) {
            return Err(self.err(
                d.department.span(),
                format!("datasets.department: {department:?} is not a department code"),
            ));
        }
        let dataset = Dataset::new(name);
        let source = sources
            .iter()
            .find(|s| &s.name == d.source.get_ref())
            .ok_or_else(|| self.no_such_source(d, raw_sources))?;
        let subject = self.subject_kind(d)?;
        let fields = self.fields(d, source.kind)?;
        self.dataset_access(d, &dataset, &subject, source)?;
        let issuer_keys = match &d.issuer_keys {
            None => IssuerKeys::default(),
            Some(k) if !subject.has_holders() => {
                return Err(self.err(
                    k.span(),
                    format!(
                        "datasets.issuer_keys: only e-licences (subject = \"license_id\") are \
                         signed, not {dataset}"
                    ),
                ))
            }
            Some(k) => IssuerKeys::from_base64url(k.get_ref())
                .map_err(|e| self.err(k.span(), format!("datasets.issuer_keys: {e}")))?,
        };
        let text = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.get_ref().clone());
        Ok(DatasetConfig {
            dataset,
            description: d.description.clone(),
            department: department.clone(),
            subject,
            fields,
            source: source.name.clone(),
            query: text(&d.query).unwrap_or_default(),
            path: text(&d.path),
            holder_query: text(&d.holder_query),
            holder_path: text(&d.holder_path),
            issuer_keys,
        })
    }

    /// `subject`, and `subject_pattern` with it when it is `pattern`.
    fn subject_kind(&self, d: &RawDataset) -> Result<SubjectKind, ConfigError> {
        let word = d.subject.get_ref();
        match (SubjectKind::builtin(word), &d.subject_pattern) {
            (Some(kind), None) => Ok(kind),
            (Some(_), Some(p)) => Err(self.err(
                p.span(),
                format!("datasets.subject_pattern: only for subject = \"pattern\", not {word:?}"),
            )),
            (None, Some(p)) if word == "pattern" => SubjectPattern::new(p.get_ref())
                .map(SubjectKind::Pattern)
                .map_err(|e| self.err(p.span(), format!("datasets.subject_pattern: {e}"))),
            (None, None) if word == "pattern" => Err(self.err(
                d.subject.span(),
                "datasets.subject_pattern: subject = \"pattern\" needs the pattern".into(),
            )),
            (None, _) => Err(self.err(
                d.subject.span(),
                format!(
                    "datasets.subject: {word:?} is not one of {}",
                    SubjectKind::NAMES.join(", ")
                ),
            )),
        }
    }

    /// The declared fields: each named once, of a known type and class, and found in
    /// the source the way its kind finds things (a column, or a JSON pointer).
    fn fields(&self, d: &RawDataset, kind: SourceKind) -> Result<Vec<FieldConfig>, ConfigError> {
        let raw = d.fields.get_ref();
        if raw.is_empty() {
            return Err(self.err(
                d.fields.span(),
                format!("datasets.fields: {} declares no field", d.name.get_ref()),
            ));
        }
        let mut out: Vec<FieldConfig> = Vec::new();
        for f in raw {
            let name = f.name.get_ref();
            if !is_name(name) {
                return Err(self.err(
                    f.name.span(),
                    "datasets.fields.name: must be 1-64 characters of A-Z a-z 0-9 - _ .".into(),
                ));
            }
            if out.iter().any(|x| &x.name == name) {
                return Err(self.err(
                    f.name.span(),
                    format!("datasets.fields.name: {name:?} is declared twice"),
                ));
            }
            let field_kind = FieldType::from_word(f.kind.get_ref()).ok_or_else(|| {
                let known: Vec<&str> = FieldType::ALL.iter().map(|t| t.as_str()).collect();
                self.err(
                    f.kind.span(),
                    format!(
                        "datasets.fields.type: {:?} is not one of {}",
                        f.kind.get_ref(),
                        known.join(", ")
                    ),
                )
            })?;
            let class = match f.class.get_ref().as_str() {
                "open" => SharingClass::Open,
                "conditional" => SharingClass::Conditional,
                "closed" => SharingClass::Closed,
                other => {
                    return Err(self.err(
                        f.class.span(),
                        format!(
                        "datasets.fields.class: {other:?} is not one of open, conditional, closed"
                    ),
                    ))
                }
            };
            let from = self.field_source(f, class, kind)?;
            out.push(FieldConfig {
                name: name.clone(),
                kind: field_kind,
                class,
                description: f.description.clone(),
                from,
            });
        }
        Ok(out)
    }

    /// Where the source has field `f`: `column` for a sql source, `pointer` for an
    /// http one; a closed field, never answered, may say neither.
    fn field_source(
        &self,
        f: &RawField,
        class: SharingClass,
        kind: SourceKind,
    ) -> Result<Option<String>, ConfigError> {
        let (needed, wrong) = match kind {
            SourceKind::Sql => (("column", &f.column), ("pointer", &f.pointer)),
            SourceKind::Http => (("pointer", &f.pointer), ("column", &f.column)),
        };
        if let Some(v) = wrong.1 {
            return Err(self.err(
                v.span(),
                format!(
                    "datasets.fields.{}: field {:?} is read from a {} source, by {}",
                    wrong.0,
                    f.name.get_ref(),
                    if kind == SourceKind::Sql {
                        "sql"
                    } else {
                        "http"
                    },
                    needed.0
                ),
            ));
        }
        match needed.1 {
            None if class == SharingClass::Closed => Ok(None),
            None => Err(self.err(
                f.name.span(),
                format!(
                    "datasets.fields.{}: field {:?} needs one (only a closed field, never \
                     answered, may leave it out)",
                    needed.0,
                    f.name.get_ref()
                ),
            )),
            Some(v) if v.get_ref().trim().is_empty() => Err(self.err(
                v.span(),
                format!("datasets.fields.{}: must not be empty", needed.0),
            )),
            Some(v) if kind == SourceKind::Http && !v.get_ref().starts_with('/') => Err(self.err(
                v.span(),
                format!(
                    "datasets.fields.pointer: {:?} is not a JSON pointer (an http source \
                         maps fields by pointers like \"/license/status\")",
                    v.get_ref()
                ),
            )),
            Some(v) => Ok(Some(v.get_ref().clone())),
        }
    }

    /// A dataset names no source: at its `source`, or — when a variable renamed a
    /// source, most likely the one it means — at that variable.
    fn no_such_source(&self, d: &RawDataset, raw_sources: &[RawSource]) -> ConfigError {
        let renamed = raw_sources
            .iter()
            .map(|s| &s.name)
            .find(|name| matches!(self.source.origin(name.span()), Origin::Variable(_)));
        match renamed {
            Some(name) => self.err(
                name.span(),
                format!(
                    "datasets.source: no source named {:?} (this variable renamed a source \
                     to {:?})",
                    d.source.get_ref(),
                    name.get_ref()
                ),
            ),
            None => self.err(
                d.source.span(),
                format!("datasets.source: no source named {:?}", d.source.get_ref()),
            ),
        }
    }

    /// The keys saying how a dataset is read must fit its source's kind.
    fn dataset_access(
        &self,
        d: &RawDataset,
        dataset: &Dataset,
        subject: &SubjectKind,
        source: &SourceConfig,
    ) -> Result<(), ConfigError> {
        let (needed, wrong) = match source.kind {
            SourceKind::Sql => (
                ("query", &d.query),
                [("path", &d.path), ("holder_path", &d.holder_path)],
            ),
            SourceKind::Http => (
                ("path", &d.path),
                [("query", &d.query), ("holder_query", &d.holder_query)],
            ),
        };
        let kind = match source.kind {
            SourceKind::Sql => "sql",
            SourceKind::Http => "http",
        };
        if needed
            .1
            .as_ref()
            .is_none_or(|v| v.get_ref().trim().is_empty())
        {
            return Err(self.err(
                d.source.span(),
                format!(
                    "datasets.{}: {dataset} is served by {kind} source {:?} and needs a {}",
                    needed.0, source.name, needed.0
                ),
            ));
        }
        if let Some((key, v)) = wrong.iter().find_map(|(k, v)| v.as_ref().map(|v| (*k, v))) {
            return Err(self.err(
                v.span(),
                format!(
                    "datasets.{key}: not used by {kind} source {:?}",
                    source.name
                ),
            ));
        }
        let holder = d.holder_query.as_ref().or(d.holder_path.as_ref());
        if let Some(h) = holder.filter(|_| !subject.has_holders()) {
            return Err(self.err(
                h.span(),
                format!(
                    "datasets: only e-licences (subject = \"license_id\") are looked up by \
                     holder, not {dataset}"
                ),
            ));
        }
        Ok(())
    }

    pub(super) fn bundle(
        &self,
        b: &RawBundle,
        datasets: &[DatasetConfig],
    ) -> Result<BundleConfig, ConfigError> {
        let name = b.name.get_ref();
        if !is_name(name) {
            return Err(self.err(
                b.name.span(),
                "bundles.name: must be 1-64 characters of A-Z a-z 0-9 - _ .".into(),
            ));
        }
        if b.items.is_empty() {
            return Err(self.err(b.name.span(), format!("bundles: {name:?} has no items")));
        }
        let mut items: Vec<BundleItem> = Vec::new();
        for raw in &b.items {
            let item = self.bundle_item(raw, &items, datasets)?;
            if items.iter().any(|x| x.name == item.name) {
                return Err(self.err(
                    raw.name.span(),
                    format!(
                        "bundles.items.name: {:?} appears twice in {name}",
                        item.name
                    ),
                ));
            }
            items.push(item);
        }
        if !items.iter().any(|i| i.subject == ItemSubject::Request) {
            return Err(self.err(
                b.name.span(),
                format!("bundles: no item of {name:?} takes the request's subject"),
            ));
        }
        Ok(BundleConfig {
            name: name.clone(),
            description: b.description.clone(),
            items,
        })
    }

    fn bundle_item(
        &self,
        raw: &RawItem,
        earlier: &[BundleItem],
        datasets: &[DatasetConfig],
    ) -> Result<BundleItem, ConfigError> {
        if !is_name(raw.name.get_ref()) {
            return Err(self.err(
                raw.name.span(),
                "bundles.items.name: must be 1-64 characters of A-Z a-z 0-9 - _ .".into(),
            ));
        }
        let served = datasets
            .iter()
            .find(|d| d.dataset.as_str() == raw.dataset.get_ref())
            .ok_or_else(|| {
                let known: Vec<&str> = datasets.iter().map(|d| d.dataset.as_str()).collect();
                self.err(
                    raw.dataset.span(),
                    format!(
                        "bundles.items.dataset: {:?} is not a dataset of this gateway ({})",
                        raw.dataset.get_ref(),
                        known.join(", ")
                    ),
                )
            })?;
        let dataset = served.dataset.clone();
        let subject = self.item_subject(raw, earlier, datasets)?;
        let license_type = match &raw.license_type {
            None => None,
            Some(t) => {
                let holder_lookup = served.holder_query.is_some() || served.holder_path.is_some();
                if !served.subject.has_holders() || !holder_lookup {
                    return Err(self.err(
                        t.span(),
                        format!(
                            "bundles.items.license_type: finds an e-licence by holder; {dataset} \
                             needs holder_query or holder_path in its [[datasets]] entry"
                        ),
                    ));
                }
                let valid = connectors::Key::Holder {
                    holder_id: "91350100M000100Y43".to_owned(),
                    license_type: t.get_ref().clone(),
                }
                .validate(&served.subject);
                if let Err(e) = valid {
                    return Err(self.err(t.span(), format!("bundles.items.license_type: {e}")));
                }
                Some(t.get_ref().clone())
            }
        };
        let fields = match &raw.fields {
            None => None,
            Some(f) => {
                if f.get_ref().is_empty() {
                    return Err(self.err(
                        f.span(),
                        "bundles.items.fields: name at least one field, or leave it out".into(),
                    ));
                }
                for x in f.get_ref() {
                    let problem = match served.field(x) {
                        None => "has no field",
                        Some(d) if d.class == SharingClass::Closed => {
                            "never shares (closed) the field"
                        }
                        Some(_) => continue,
                    };
                    return Err(self.err(
                        f.span(),
                        format!("bundles.items.fields: {dataset} {problem} {x:?}"),
                    ));
                }
                Some(f.get_ref().clone())
            }
        };
        Ok(BundleItem {
            name: raw.name.get_ref().clone(),
            dataset,
            subject,
            license_type,
            fields,
        })
    }

    fn item_subject(
        &self,
        raw: &RawItem,
        earlier: &[BundleItem],
        datasets: &[DatasetConfig],
    ) -> Result<ItemSubject, ConfigError> {
        let text = raw.subject.get_ref();
        if text == "request" {
            return Ok(ItemSubject::Request);
        }
        let bad =
            |msg: String| self.err(raw.subject.span(), format!("bundles.items.subject: {msg}"));
        let (item, pointer) = text.split_once('#').ok_or_else(|| {
            bad(format!(
                "{text:?} is neither \"request\" nor \"<earlier item>#<JSON pointer>\""
            ))
        })?;
        let index = earlier
            .iter()
            .position(|i| i.name == item)
            .ok_or_else(|| bad(format!("no earlier item named {item:?}")))?;
        if !pointer.starts_with('/') || pointer.len() < 2 {
            return Err(bad(format!(
                "{pointer:?} is not a JSON pointer like /content/mother_id"
            )));
        }
        let subject = ItemSubject::Item {
            index,
            pointer: pointer.to_owned(),
        };
        let source = &earlier[index];
        let field = subject.field().unwrap_or_default();
        let declared = datasets
            .iter()
            .find(|d| d.dataset == source.dataset)
            .is_some_and(|d| d.has_field(field));
        if !declared {
            return Err(bad(format!("{} has no field {field:?}", source.dataset)));
        }
        if let Some(f) = source
            .fields
            .as_ref()
            .filter(|f| !f.iter().any(|x| x == field))
        {
            return Err(bad(format!(
                "item {item:?} asks only for {} and not for {field:?}, which this subject is read from",
                f.join(", ")
            )));
        }
        Ok(subject)
    }
}

/// A resilience value as written, or its default.
fn value<T: Copy>(v: &Option<Spanned<T>>, default: T) -> T {
    v.as_ref().map_or(default, |v| *v.get_ref())
}

/// Where a resilience value was written, if it was.
fn place<T>(v: &Option<Spanned<T>>) -> Option<Range<usize>> {
    v.as_ref().map(|v| v.span())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const BASE: &str = concat!(
        crate::config::test_files::head!(),
        r#"
[[sources]]
name = "population-db"
kind = "sql"
url = "sqlite://population.db"

[[sources]]
name = "licences"
kind = "http"
url = "https://127.0.0.1:8444/api"
ca = ["ca.pem"]
cert = "gw.pem"
key = "gw.key"
[sources.resilience]
timeout_ms = 800
breaker_failures = 3

[[datasets]]
name = "population"
department = "sz-psb"
subject = "resident_id"
source = "population-db"
query = "SELECT full_name FROM residents WHERE id_number = ?"
fields = [
  { name = "name", column = "full_name", class = "conditional", description = "Full name" },
  { name = "religion", class = "closed" },
]

[[datasets]]
name = "e_license"
department = "sz-data"
subject = "license_id"
source = "licences"
path = "/licenses/{subject}"
holder_path = "/licenses?holder={holder_id}&type={license_type}"
issuer_keys = ["11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"]
fields = [
  { name = "license_type", pointer = "/type", class = "open" },
  { name = "content", pointer = "/content", type = "json", class = "conditional" },
]

[[bundles]]
name = "newborn"
[[bundles.items]]
name = "certificate"
dataset = "e_license"
[[bundles.items]]
name = "mother"
dataset = "population"
subject = "certificate#/content/mother_id"
[[bundles.items]]
name = "licence"
dataset = "e_license"
license_type = "营业执照"
"#
    );

    fn dir() -> tempfile::TempDir {
        crate::config::test_files::dir_with(&["gw.pem", "gw.key", "population.db"])
    }

    use crate::config::test_files::parse_in as parse;

    #[test]
    fn http_sources_resilience_and_bundles_parse() {
        let d = dir();
        let c = parse(&d, BASE).unwrap();
        let sql = &c.sources[0];
        assert_eq!(sql.kind, SourceKind::Sql);
        assert_eq!(sql.resilience.timeout_ms, 2000, "defaults");
        let http = &c.sources[1];
        assert_eq!(http.kind, SourceKind::Http);
        assert_eq!(http.resilience.timeout_ms, 800);
        assert_eq!(http.resilience.breaker_failures, 3);
        assert_eq!(http.resilience.retries, 2);
        assert_eq!(http.tls.as_ref().unwrap().cert, d.path().join("gw.pem"));
        let lic = c.dataset("e_license").unwrap();
        assert!(lic.subject.has_holders());
        assert_eq!(lic.field("content").unwrap().kind, FieldType::Json);
        assert_eq!(lic.field("license_type").unwrap().class, SharingClass::Open);
        let pop = c.dataset("population").unwrap();
        assert_eq!(pop.subject.name(), "resident_id");
        // The closed field is declared, and never mapped for the connector.
        assert_eq!(pop.field("religion").unwrap().class, SharingClass::Closed);
        assert_eq!(
            pop.mapping().into_iter().collect::<Vec<_>>(),
            [("name".to_owned(), "full_name".to_owned())]
        );
        assert_eq!(lic.path.as_deref(), Some("/licenses/{subject}"));
        assert!(!lic.issuer_keys.is_empty());
        let b = c.bundle("newborn").unwrap();
        assert_eq!(b.items.len(), 3);
        assert_eq!(
            b.items[1].subject,
            ItemSubject::Item {
                index: 0,
                pointer: "/content/mother_id".into()
            }
        );
        assert_eq!(b.items[1].subject.field(), Some("content"));
        assert_eq!(b.items[2].license_type.as_deref(), Some("营业执照"));
    }

    #[test]
    fn mistakes_name_line_and_key() {
        let d = dir();
        let cases = [
            (BASE.replace("kind = \"http\"", "kind = \"ftp\""), ":19: sources.kind"),
            (
                BASE.replace("https://127.0.0.1:8444/api", "http://127.0.0.1:8444"),
                ":20: sources.url",
            ),
            (BASE.replace("ca = [\"ca.pem\"]\n", ""), "sources.ca: an http source needs"),
            (BASE.replace("cert = \"gw.pem\"", "cert = \"nope.pem\""), ":22: sources.cert: no such file"),
            (BASE.replace("timeout_ms = 800", "timeout_ms = 0"), "sources.resilience.timeout_ms"),
            (BASE.replace("breaker_failures = 3", "breaker_fail = 3"), "unknown field `breaker_fail`"),
            (
                BASE.replace("path = \"/licenses/{subject}\"\n", ""),
                ":43: datasets.path: e_license is served by http source \"licences\" and needs a path",
            ),
            (
                BASE.replace("query = \"SELECT full_name", "path = \"/p/{subject}\"\nquery = \"SELECT full_name"),
                "datasets.path: not used by sql source",
            ),
            (BASE.replace("pointer = \"/content\"", "pointer = \"content\""), "datasets.fields.pointer: \"content\" is not a JSON pointer"),
            (BASE.replace("issuer_keys = [\"11qY", "issuer_keys = [\"!!"), ":46: datasets.issuer_keys"),
            (
                BASE.replace("subject = \"certificate#/content/mother_id\"", "subject = \"mother#/x\""),
                "bundles.items.subject: no earlier item named \"mother\"",
            ),
            (
                BASE.replace("subject = \"certificate#/content/mother_id\"", "subject = \"certificate#/shoe\""),
                "e_license has no field \"shoe\"",
            ),
            (
                BASE.replace("name = \"licence\"\ndataset = \"e_license\"", "name = \"licence\"\ndataset = \"population\""),
                "bundles.items.license_type: finds an e-licence by holder",
            ),
            (
                BASE.replace("name = \"mother\"", "name = \"certificate\""),
                "bundles.items.name: \"certificate\" appears twice",
            ),
            (
                BASE.replace("[[bundles.items]]\nname = \"certificate\"\ndataset = \"e_license\"\n", "")
                    .replace("subject = \"certificate#/content/mother_id\"", "subject = \"licence#/x\""),
                "no earlier item",
            ),
            (
                BASE.replace("name = \"population-db\"\nkind", "name = \"licences\"\nkind"),
                "sources.name: \"licences\" is configured twice",
            ),
            (
                format!(
                    "{BASE}[[datasets]]\nname = \"population\"\ndepartment = \"x\"\n\
                     subject = \"resident_id\"\nsource = \"population-db\"\n\
                     query = \"SELECT 1\"\nfields = [{{ name = \"a\", column = \"a\", class = \"open\" }}]\n"
                ),
                "datasets.name: \"population\" is configured twice",
            ),
            (
                format!(
                    "{BASE}[[bundles]]\nname = \"newborn\"\n\
                     [[bundles.items]]\nname = \"p\"\ndataset = \"population\"\n"
                ),
                "bundles.name: \"newborn\" is configured twice",
            ),
        ];
        crate::config::test_files::assert_errors(&d, cases);
    }

    /// A dataset keyed by a declared pattern, and the rules of a declaration.
    #[test]
    fn declarations_subject_kinds_and_classes() {
        let d = dir();
        let permits = BASE
            .replace(
                "name = \"population\"\ndepartment = \"sz-psb\"\nsubject = \"resident_id\"",
                "name = \"permits\"\ndepartment = \"sz-psb\"\nsubject = \"pattern\"\n\
             subject_pattern = \"JZZ[0-9]{10}\"",
            )
            .replace("dataset = \"population\"", "dataset = \"permits\"");
        let c = parse(&d, &permits).unwrap();
        let p = c.dataset("permits").unwrap();
        assert!(p.subject.validate("JZZ0123456789").is_ok());
        assert_eq!(p.subject.validate("JZZ01").unwrap_err().rule(), "pattern");
        assert!(c.dataset("population").is_none());

        let cases = [
            (
                BASE.replace("subject = \"resident_id\"", "subject = \"pattern\""),
                ":31: datasets.subject_pattern: subject = \"pattern\" needs the pattern",
            ),
            (
                BASE.replace(
                    "subject = \"resident_id\"",
                    "subject = \"resident_id\"\nsubject_pattern = \"x\"",
                ),
                ":32: datasets.subject_pattern: only for subject = \"pattern\"",
            ),
            (
                BASE.replace(
                    "subject = \"resident_id\"",
                    "subject = \"pattern\"\nsubject_pattern = \"(\"",
                ),
                ":32: datasets.subject_pattern: subject pattern \"(\"",
            ),
            (
                BASE.replace("{ name = \"religion\", class = \"closed\" }", "{ name = \"religion\", class = \"open\" }"),
                ":36: datasets.fields.column: field \"religion\" needs one",
            ),
            (
                BASE.replace("column = \"full_name\"", "pointer = \"/name\""),
                ":35: datasets.fields.pointer: field \"name\" is read from a sql source, by column",
            ),
            (
                BASE.replace("type = \"json\"", "type = \"blob\""),
                "datasets.fields.type: \"blob\" is not one of string, integer",
            ),
            (
                BASE.replace("{ name = \"religion\"", "{ name = \"name\""),
                ":36: datasets.fields.name: \"name\" is declared twice",
            ),
            (
                BASE.replace("subject = \"license_id\"", "subject = \"credit_code\""),
                "datasets: only e-licences (subject = \"license_id\") are looked up by holder, not e_license",
            ),
            (
                BASE.replace(
                    "dataset = \"population\"\nsubject = \"certificate#/content/mother_id\"",
                    "dataset = \"population\"\nsubject = \"certificate#/content/mother_id\"\n\
                     fields = [\"name\", \"religion\"]",
                ),
                "bundles.items.fields: population never shares (closed) the field \"religion\"",
            ),
            (
                BASE.replace("dataset = \"population\"", "dataset = \"people\""),
                "bundles.items.dataset: \"people\" is not a dataset of this gateway (population, e_license)",
            ),
        ];
        crate::config::test_files::assert_errors(&d, cases);
    }

    #[test]
    fn an_item_with_chosen_fields_must_ask_for_the_link() {
        let d = dir();
        let text = BASE.replace(
            "name = \"certificate\"\ndataset = \"e_license\"\n",
            "name = \"certificate\"\ndataset = \"e_license\"\nfields = [\"license_type\"]\n",
        );
        let err = parse(&d, &text).unwrap_err();
        assert!(err.contains("asks only for license_type"), "{err}");
    }

    /// An http source has its own connect time-out; `acquire_timeout_ms`, which once
    /// set it, still does when it is all an http source gives.
    #[test]
    fn connect_and_acquire_time_outs() {
        let d = dir();
        let timeouts = |text: &str| {
            let c = parse(&d, text).unwrap();
            let (sql, http) = (&c.sources[0], &c.sources[1]);
            (sql.acquire_timeout_ms, http.connect_timeout_ms)
        };
        assert_eq!(timeouts(BASE), (2000, 2000), "defaults");
        let http = "key = \"gw.key\"\n";
        let with = |lines: &str| BASE.replacen(http, &format!("{http}{lines}"), 1);
        assert_eq!(timeouts(&with("connect_timeout_ms = 300\n")), (2000, 300));
        assert_eq!(timeouts(&with("acquire_timeout_ms = 700\n")), (2000, 700));
        let sql = "url = \"sqlite://population.db\"\n";
        let sql_with = BASE.replacen(sql, &format!("{sql}acquire_timeout_ms = 50\n"), 1);
        assert_eq!(timeouts(&sql_with), (50, 2000));

        let e = parse(
            &d,
            &with("acquire_timeout_ms = 700\nconnect_timeout_ms = 300\n"),
        );
        let e = e.unwrap_err();
        assert!(
            e.contains(":24: sources.acquire_timeout_ms: not used by http source \"licences\""),
            "{e}"
        );
        let e = parse(
            &d,
            &BASE.replacen(sql, &format!("{sql}connect_timeout_ms = 5\n"), 1),
        );
        let e = e.unwrap_err();
        assert!(
            e.contains(":16: sources.connect_timeout_ms: not used by sql source"),
            "{e}"
        );
        // A variable gives it as the file would.
        let c = crate::config::Config::parse_with(
            &d.path().join("tongban.toml"),
            BASE,
            &crate::config::Env::from_pairs([("TONGBAN_SOURCES_1_CONNECT_TIMEOUT_MS", "400")]),
        )
        .unwrap();
        assert_eq!(c.sources[1].connect_timeout_ms, 400);
    }
}
