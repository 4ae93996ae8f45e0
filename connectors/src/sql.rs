//! A [`Connector`] over a SQL database: SQLite, PostgreSQL or MySQL through one code
//! path (`sqlx::Any`).
//!
//! Each dataset the source serves has a [`SqlBinding`]: a query taking the subject as
//! its single bound parameter, and a map from the dataset's field names to the
//! query's column names. Column values become JSON: text → string, integer and real →
//! number, NULL → null, boolean → boolean. Other column types (dates, decimals,
//! blobs) are not decoded by the `Any` driver: cast them to text in the query, e.g.
//! `CAST(established_on AS TEXT)`.
//!
//! Placeholders follow the database: `?` for SQLite and MySQL, `$1` for PostgreSQL
//! (SQLite accepts `$1` as well).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow, AnyTypeInfoKind};
use sqlx::pool::PoolConnection;
use sqlx::{AnyPool, AssertSqlSafe, Decode, Row, ValueRef as _};

use crate::sqlite_direct::{DirectError, SqliteDirect};
use crate::{Connector, ConnectorError, Dataset, Record};

/// Where a SQL connector connects, as written in the gateway's config.
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlSource {
    /// Connector name shown in responses and audit records, e.g. `population-db`.
    pub name: String,
    /// Database URL: `sqlite://…`, `postgres://…` or `mysql://…`. SQLite paths are
    /// taken as given (relative to the working directory): resolve them first, see
    /// [`sqlite_url`]. Add `?mode=ro` to open a SQLite file read-only.
    pub url: String,
    /// Upper bound on pooled connections (default 8).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How long a lookup may wait for a connection before failing with
    /// [`ConnectorError::Unavailable`] (default 2000 ms). A down server shows up as
    /// this time-out, so keep it short.
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
}

/// How one dataset is read from a [`SqlSource`].
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlBinding {
    /// The dataset this binding serves.
    pub dataset: Dataset,
    /// A query with exactly one bound parameter, the subject identifier, e.g.
    /// `SELECT full_name, sex FROM residents WHERE id_number = ?`. When it returns
    /// several rows the first is used.
    pub query: String,
    /// For e-licences: a query with two bound parameters, the holder ID then the
    /// licence type, returning the holder's licences of that type newest first (the
    /// first row is used), with the same columns as `query`.
    #[serde(default)]
    pub holder_query: Option<String>,
    /// Dataset field name → result column name (the gateway's config checks the names
    /// against the dataset's declared fields); fields left out are simply never
    /// returned by this connector.
    pub fields: BTreeMap<String, String>,
}

/// A [`Connector`] backed by a pooled SQL connection.
pub struct SqlConnector {
    name: String,
    pool: AnyPool,
    bindings: HashMap<Dataset, Binding>,
    /// SQLite files only: lookups run in the caller's task, see [`crate::sqlite_direct`].
    direct: Option<SqliteDirect>,
}

/// A validated [`SqlBinding`], ready for lookups.
struct Binding {
    /// Shared so each lookup hands sqlx the text without copying it.
    query: Arc<str>,
    holder_query: Option<Arc<str>>,
    /// (field, column), in field-name order.
    fields: Vec<(String, String)>,
}

fn default_max_connections() -> u32 {
    8
}

fn default_acquire_timeout_ms() -> u64 {
    2000
}

impl fmt::Debug for SqlSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlSource")
            .field("name", &self.name)
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .finish()
    }
}

impl fmt::Debug for SqlConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut datasets: Vec<&str> = self.bindings.keys().map(Dataset::as_str).collect();
        datasets.sort_unstable();
        f.debug_struct("SqlConnector")
            .field("name", &self.name)
            .field("datasets", &datasets)
            .finish_non_exhaustive()
    }
}

impl SqlConnector {
    /// Validates the bindings and connects, opening one connection and running
    /// `SELECT 1` so that a wrong URL, a missing SQLite file or bad credentials fail
    /// at start-up. Use [`SqlConnector::connect_lazy`] to start while the database is
    /// still down.
    pub async fn connect(
        source: &SqlSource,
        bindings: Vec<SqlBinding>,
    ) -> Result<Self, ConnectorError> {
        let (options, bindings) = prepare(source, bindings)?;
        let pool = options
            .connect(&source.url)
            .await
            .map_err(|e| connect_error(source, e))?;
        let connector = SqlConnector {
            name: source.name.clone(),
            pool,
            bindings,
            direct: direct_path(source),
        };
        connector.health().await?;
        Ok(connector)
    }

    /// Validates the bindings and builds the pool without connecting: connections are
    /// opened on first use, and an unreachable database shows up in
    /// [`Connector::health`] and lookups rather than here.
    pub fn connect_lazy(
        source: &SqlSource,
        bindings: Vec<SqlBinding>,
    ) -> Result<Self, ConnectorError> {
        let (options, bindings) = prepare(source, bindings)?;
        let pool = options
            .connect_lazy(&source.url)
            .map_err(|e| connect_error(source, e))?;
        Ok(SqlConnector {
            name: source.name.clone(),
            pool,
            bindings,
            direct: direct_path(source),
        })
    }

    /// The datasets this connector serves.
    pub fn datasets(&self) -> impl Iterator<Item = &Dataset> + '_ {
        self.bindings.keys()
    }

    /// Takes a pooled connection. Every failure here — time-out, refused connection,
    /// missing SQLite file, rejected credentials — means the source is unavailable,
    /// as opposed to a failing query on a working connection.
    async fn acquire(&self) -> Result<PoolConnection<sqlx::Any>, ConnectorError> {
        self.pool
            .acquire()
            .await
            .map_err(|e| ConnectorError::Unavailable(format!("connector {}: {e}", self.name)))
    }

    fn binding(&self, dataset: &Dataset) -> Result<&Binding, ConnectorError> {
        self.bindings.get(dataset).ok_or_else(|| {
            ConnectorError::Config(format!(
                "connector {} has no binding for dataset {dataset}",
                self.name
            ))
        })
    }

    /// Closes the pool, waiting for checked-out connections to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait::async_trait]
impl Connector for SqlConnector {
    fn name(&self) -> &str {
        &self.name
    }

    async fn lookup(
        &self,
        dataset: &Dataset,
        subject: &str,
    ) -> Result<Option<Record>, ConnectorError> {
        let binding = self.binding(dataset)?;
        if let Some(direct) = &self.direct {
            match direct.query_one(&binding.query, &[subject], &binding.fields) {
                Ok(found) => return Ok(found),
                Err(DirectError::Failed(e)) => return Err(e),
                // Locked by a writer: wait for it on sqlx's thread, below.
                Err(DirectError::Busy) => {}
            }
        }
        let mut conn = self.acquire().await?;
        // The query text is operator configuration, reviewed like code, never built
        // from request data; the subject travels only as a bound parameter.
        let row = sqlx::query(AssertSqlSafe(Arc::clone(&binding.query)))
            .bind(subject.to_owned())
            .fetch_optional(&mut *conn)
            .await?;
        row.map(|row| to_record(&row, &binding.fields)).transpose()
    }

    async fn lookup_by_holder(
        &self,
        dataset: &Dataset,
        holder_id: &str,
        license_type: &str,
    ) -> Result<Option<Record>, ConnectorError> {
        let binding = self.binding(dataset)?;
        let query = binding.holder_query.as_ref().ok_or_else(|| {
            ConnectorError::Config(format!(
                "connector {}: dataset {dataset} has no holder_query",
                self.name
            ))
        })?;
        if let Some(direct) = &self.direct {
            match direct.query_one(query, &[holder_id, license_type], &binding.fields) {
                Ok(found) => return Ok(found),
                Err(DirectError::Failed(e)) => return Err(e),
                Err(DirectError::Busy) => {}
            }
        }
        let mut conn = self.acquire().await?;
        // As in `lookup`: both values are bound parameters, never spliced.
        let row = sqlx::query(AssertSqlSafe(Arc::clone(query)))
            .bind(holder_id.to_owned())
            .bind(license_type.to_owned())
            .fetch_optional(&mut *conn)
            .await?;
        row.map(|row| to_record(&row, &binding.fields)).transpose()
    }

    async fn health(&self) -> Result<(), ConnectorError> {
        let mut conn = self.acquire().await?;
        sqlx::query("SELECT 1")
            .execute(&mut *conn)
            .await
            .map_err(|e| ConnectorError::Unavailable(format!("connector {}: {e}", self.name)))?;
        Ok(())
    }
}

/// Turns a file path into a `sqlite://` URL that [`SqlSource::url`] accepts,
/// escaping the characters sqlx would otherwise read as URL syntax (`%`, `?`, `#`).
/// `read_only` appends `?mode=ro`. Relative paths stay relative.
pub fn sqlite_url(path: &Path, read_only: bool) -> String {
    let mut url = String::from("sqlite://");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => url.push_str("%25"),
            '?' => url.push_str("%3F"),
            '#' => url.push_str("%23"),
            _ => url.push(c),
        }
    }
    if read_only {
        url.push_str("?mode=ro");
    }
    url
}

/// The direct path for a SQLite source, sized like its pool.
fn direct_path(source: &SqlSource) -> Option<SqliteDirect> {
    let idle = usize::try_from(source.max_connections).unwrap_or(1);
    SqliteDirect::new(&source.name, &source.url, idle)
}

/// Checks the source and bindings, and builds the pool options.
fn prepare(
    source: &SqlSource,
    bindings: Vec<SqlBinding>,
) -> Result<(AnyPoolOptions, HashMap<Dataset, Binding>), ConnectorError> {
    sqlx::any::install_default_drivers();
    let config_err =
        |msg: String| ConnectorError::Config(format!("connector {}: {msg}", source.name));
    if source.name.trim().is_empty() {
        return Err(ConnectorError::Config("connector name is empty".to_owned()));
    }
    let scheme = source.url.split(':').next().unwrap_or_default();
    if !matches!(
        scheme,
        "sqlite" | "postgres" | "postgresql" | "mysql" | "mariadb"
    ) {
        return Err(config_err(format!(
            "url must start with sqlite:, postgres: or mysql:, got {}",
            redact_url(&source.url)
        )));
    }
    if source.max_connections == 0 {
        return Err(config_err("max_connections must be at least 1".to_owned()));
    }
    if bindings.is_empty() {
        return Err(config_err("no dataset bindings".to_owned()));
    }
    let mut prepared = HashMap::new();
    for binding in bindings {
        let dataset = binding.dataset.clone();
        let ready = validate_binding(binding).map_err(config_err)?;
        if prepared.insert(dataset.clone(), ready).is_some() {
            return Err(config_err(format!("dataset {dataset} is bound twice")));
        }
    }
    let options = AnyPoolOptions::new()
        .max_connections(source.max_connections)
        .acquire_timeout(Duration::from_millis(source.acquire_timeout_ms));
    Ok((options, prepared))
}

fn validate_binding(binding: SqlBinding) -> Result<Binding, String> {
    let dataset = &binding.dataset;
    if binding.query.trim().is_empty() {
        return Err(format!("dataset {dataset}: query is empty"));
    }
    if binding
        .holder_query
        .as_ref()
        .is_some_and(|q| q.trim().is_empty())
    {
        return Err(format!("dataset {dataset}: holder_query is empty"));
    }
    if binding.fields.is_empty() {
        return Err(format!("dataset {dataset}: no fields mapped"));
    }
    if let Some((field, _)) = binding.fields.iter().find(|(_, c)| c.trim().is_empty()) {
        return Err(format!(
            "dataset {dataset}: field {field} maps to an empty column"
        ));
    }
    Ok(Binding {
        query: Arc::from(binding.query),
        holder_query: binding.holder_query.map(Arc::from),
        fields: binding.fields.into_iter().collect(),
    })
}

fn connect_error(source: &SqlSource, e: sqlx::Error) -> ConnectorError {
    let detail = format!(
        "connector {} ({}): {e}",
        source.name,
        redact_url(&source.url)
    );
    let server = !source.url.starts_with("sqlite:");
    match e {
        sqlx::Error::Configuration(_) => ConnectorError::Config(detail),
        // A database server answered and refused (credentials, unknown database): a
        // configuration problem, not an outage. SQLite's refusals are about the file
        // (missing, unreadable), which may come back.
        sqlx::Error::Database(_) if server => ConnectorError::Config(detail),
        _ => ConnectorError::Unavailable(detail),
    }
}

fn to_record(row: &AnyRow, fields: &[(String, String)]) -> Result<Record, ConnectorError> {
    let mut record = Record::new();
    for (field, column) in fields {
        let value = column_value(row, column)
            .map_err(|e| ConnectorError::Query(format!("field {field} (column {column}): {e}")))?;
        record.insert(field.clone(), value);
    }
    Ok(record)
}

fn column_value(row: &AnyRow, column: &str) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    let raw = row.try_get_raw(column).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let kind = raw.type_info().kind();
    let decoded = match kind {
        AnyTypeInfoKind::Null => Ok(Value::Null),
        AnyTypeInfoKind::Bool => <bool as Decode<sqlx::Any>>::decode(raw).map(Value::Bool),
        AnyTypeInfoKind::SmallInt | AnyTypeInfoKind::Integer | AnyTypeInfoKind::BigInt => {
            <i64 as Decode<sqlx::Any>>::decode(raw).map(Value::from)
        }
        AnyTypeInfoKind::Real | AnyTypeInfoKind::Double => <f64 as Decode<sqlx::Any>>::decode(raw)
            .map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        AnyTypeInfoKind::Text => <String as Decode<sqlx::Any>>::decode(raw).map(Value::String),
        AnyTypeInfoKind::Blob => {
            return Err("binary column; cast it to text in the query".to_owned());
        }
    };
    decoded.map_err(|e| format!("cannot decode {} value: {e}", raw_type_name(kind)))
}

fn raw_type_name(kind: AnyTypeInfoKind) -> &'static str {
    match kind {
        AnyTypeInfoKind::Null => "NULL",
        AnyTypeInfoKind::Bool => "BOOLEAN",
        AnyTypeInfoKind::SmallInt | AnyTypeInfoKind::Integer | AnyTypeInfoKind::BigInt => "INTEGER",
        AnyTypeInfoKind::Real | AnyTypeInfoKind::Double => "REAL",
        AnyTypeInfoKind::Text => "TEXT",
        AnyTypeInfoKind::Blob => "BLOB",
    }
}

/// Hides the password in `scheme://user:password@host/...` for logs and errors.
fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..authority_start],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const RESIDENT: &str = "11010519491231002X";

    fn pop() -> Dataset {
        Dataset::new("population")
    }

    async fn temp_db() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pop ulation?.db");
        let url = sqlite_url(&path, false);
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&format!("{url}?mode=rwc"))
            .await
            .unwrap();
        for sql in [
            "CREATE TABLE residents (id_number TEXT PRIMARY KEY, full_name TEXT NOT NULL, \
             height REAL, children INTEGER, note TEXT, photo BLOB)",
            "INSERT INTO residents VALUES ('11010519491231002X', '张三', 1.72, 2, NULL, x'00')",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
        (dir, url)
    }

    fn source(name: &str, url: &str) -> SqlSource {
        SqlSource {
            name: name.to_owned(),
            url: url.to_owned(),
            max_connections: 2,
            acquire_timeout_ms: 500,
        }
    }

    fn binding(fields: &[(&str, &str)]) -> SqlBinding {
        SqlBinding {
            dataset: pop(),
            query: "SELECT * FROM residents WHERE id_number = ?".to_owned(),
            holder_query: None,
            fields: fields
                .iter()
                .map(|(f, c)| (f.to_string(), c.to_string()))
                .collect(),
        }
    }

    fn population_binding() -> SqlBinding {
        binding(&[
            ("name", "full_name"),
            ("birth_date", "note"),
            ("ethnicity", "height"),
            ("status", "children"),
        ])
    }

    async fn connector() -> (tempfile::TempDir, SqlConnector) {
        let (dir, url) = temp_db().await;
        let ro = format!("{url}?mode=ro");
        let c = SqlConnector::connect(&source("population-db", &ro), vec![population_binding()])
            .await
            .unwrap();
        (dir, c)
    }

    #[tokio::test]
    async fn lookup_found_maps_columns_and_types() {
        let (_dir, c) = connector().await;
        assert_eq!(c.name(), "population-db");
        let record = c.lookup(&pop(), RESIDENT).await.unwrap().unwrap();
        assert_eq!(
            serde_json::Value::Object(record),
            serde_json::json!({
                "name": "张三", "birth_date": null, "ethnicity": 1.72, "status": 2
            })
        );
        c.health().await.unwrap();
    }

    #[tokio::test]
    async fn lookup_absent_is_none() {
        let (_dir, c) = connector().await;
        let r = c.lookup(&pop(), "34052419800101001X").await.unwrap();
        assert!(r.is_none());
    }

    #[tokio::test]
    async fn subject_is_bound_not_spliced() {
        let (_dir, c) = connector().await;
        for evil in ["' OR 1=1 --", "x' OR '1'='1", "1; DROP TABLE residents; --"] {
            assert!(c.lookup(&pop(), evil).await.unwrap().is_none());
        }
        assert!(c.lookup(&pop(), RESIDENT).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn dataset_without_binding_is_a_config_error() {
        let (_dir, c) = connector().await;
        let e = c
            .lookup(&Dataset::new("legal_person"), "91350100M000100Y43")
            .await
            .unwrap_err();
        assert!(matches!(e, ConnectorError::Config(_)), "{e:?}");
        assert!(e.to_string().contains("legal_person"), "{e}");
    }

    #[tokio::test]
    async fn read_only_refuses_writes() {
        let (_dir, url) = temp_db().await;
        let pool = AnyPoolOptions::new()
            .connect(&format!("{url}?mode=ro"))
            .await
            .unwrap();
        let e = sqlx::query("DELETE FROM residents").execute(&pool).await;
        assert!(e.is_err());
    }

    #[tokio::test]
    async fn blob_and_missing_columns_are_query_errors() {
        let (_dir, url) = temp_db().await;
        for fields in [[("name", "photo")], [("name", "no_such_column")]] {
            let c = SqlConnector::connect(&source("db", &url), vec![binding(&fields)])
                .await
                .unwrap();
            let e = c.lookup(&pop(), RESIDENT).await.unwrap_err();
            assert!(matches!(e, ConnectorError::Query(_)), "{e:?}");
        }
    }

    #[tokio::test]
    async fn bad_bindings_are_refused() {
        let (_dir, url) = temp_db().await;
        let src = source("db", &url);
        let unmapped = binding(&[]);
        let twice = vec![population_binding(), population_binding()];
        for bindings in [vec![unmapped], twice, vec![]] {
            let e = SqlConnector::connect(&src, bindings).await.unwrap_err();
            assert!(matches!(e, ConnectorError::Config(_)), "{e:?}");
        }
        let e = SqlConnector::connect(&source("db", "oracle://x"), vec![population_binding()])
            .await
            .unwrap_err();
        assert!(matches!(e, ConnectorError::Config(_)), "{e:?}");
    }

    #[tokio::test]
    async fn missing_file_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_url(&dir.path().join("absent.db"), true);
        let e = SqlConnector::connect(&source("db", &url), vec![population_binding()])
            .await
            .unwrap_err();
        assert!(matches!(e, ConnectorError::Unavailable(_)), "{e:?}");
        // Lazily, the same failure surfaces in health and lookups.
        let c =
            SqlConnector::connect_lazy(&source("db", &url), vec![population_binding()]).unwrap();
        assert!(matches!(
            c.health().await,
            Err(ConnectorError::Unavailable(_))
        ));
    }

    #[test]
    fn config_deserializes_with_defaults() {
        let src: SqlSource =
            serde_json::from_str(r#"{"name": "population-db", "url": "sqlite://x.db"}"#).unwrap();
        assert_eq!((src.max_connections, src.acquire_timeout_ms), (8, 2000));
        let unknown = serde_json::from_str::<SqlSource>(
            r#"{"name": "a", "url": "sqlite://x.db", "pool": 3}"#,
        );
        assert!(unknown.is_err());
        let b: SqlBinding = serde_json::from_str(
            r#"{"dataset": "e_license", "query": "SELECT 1", "fields": {"status": "state"}}"#,
        )
        .unwrap();
        assert_eq!(b.dataset, Dataset::new("e_license"));
        let bad = serde_json::from_str::<SqlBinding>(r#"{"dataset": "tax", "query": "SELECT 1"}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn urls() {
        assert_eq!(
            redact_url("postgres://tongban:s3cret@db:5432/pop"),
            "postgres://tongban:***@db:5432/pop"
        );
        assert_eq!(redact_url("sqlite://a.db"), "sqlite://a.db");
        let src = source("db", "mysql://u:pw@h/d");
        assert!(!format!("{src:?}").contains("pw"));
        assert_eq!(
            sqlite_url(Path::new("/tmp/a?b#c%.db"), true),
            "sqlite:///tmp/a%3Fb%23c%25.db?mode=ro"
        );
    }

    /// The same connector with the direct SQLite path switched off.
    fn pooled_only(mut c: SqlConnector) -> SqlConnector {
        c.direct = None;
        c
    }

    #[tokio::test]
    async fn direct_and_pooled_paths_answer_alike() {
        let (_dir, url) = temp_db().await;
        let ro = format!("{url}?mode=ro");
        let fields = binding(&[
            ("name", "full_name"),
            ("birth_date", "note"),
            ("ethnicity", "height"),
            ("status", "children"),
        ]);
        let direct = SqlConnector::connect(&source("p", &ro), vec![fields.clone()])
            .await
            .unwrap();
        assert!(direct.direct.is_some());
        let pooled = pooled_only(
            SqlConnector::connect(&source("p", &ro), vec![fields])
                .await
                .unwrap(),
        );
        for subject in [RESIDENT, "110105194912310021", "' OR 1=1 --"] {
            let a = direct.lookup(&pop(), subject).await.unwrap();
            let b = pooled.lookup(&pop(), subject).await.unwrap();
            assert_eq!(a, b, "{subject}");
        }
        assert!(direct.lookup(&pop(), RESIDENT).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_locked_file_falls_back_to_the_waiting_path() {
        let (dir, url) = temp_db().await;
        let c = SqlConnector::connect(&source("p", &url), vec![population_binding()])
            .await
            .unwrap();
        // A writer holds the file exclusively (rollback journal: readers are locked out).
        let path = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "db"))
            .unwrap();
        let writer = rusqlite::Connection::open(&path).unwrap();
        // EXCLUSIVE locking mode keeps readers out even of a WAL database.
        writer
            .execute_batch(
                "PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE; UPDATE residents SET note = note",
            )
            .unwrap();
        let b = c.binding(&pop()).unwrap();
        let direct = c
            .direct
            .as_ref()
            .unwrap()
            .query_one(&b.query, &[RESIDENT], &b.fields);
        assert!(
            matches!(direct, Err(DirectError::Busy)),
            "the direct path must not wait"
        );
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            writer.execute_batch("COMMIT").unwrap();
            drop(writer);
        });
        // The direct path sees the lock and hands over; the pooled path waits for it.
        let found = c.lookup(&pop(), RESIDENT).await.unwrap();
        release.join().unwrap();
        assert_eq!(found.unwrap()["name"], "张三");
    }
}
