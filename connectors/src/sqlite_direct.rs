//! The embedded fast path for SQLite sources: point lookups run in the calling task
//! on a small pool of rusqlite connections.
//!
//! sqlx runs every SQLite statement on a worker thread of its own and passes the
//! command and each row through channels; for a point lookup on a local file that
//! hand-off (two thread wake-ups, and on a loaded core two context switches) costs
//! more than the query itself. A lookup here never waits: connections are opened
//! with no busy timeout, and when the file is locked by a writer the caller falls
//! back to the pooled sqlx path, which waits on its own thread.
//!
//! rusqlite and sqlx share one `libsqlite3-sys`, so one SQLite library is linked.

use std::path::PathBuf;
use std::sync::Mutex;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::{ConnectorError, Record};

/// Why a direct lookup did not produce an answer.
pub(crate) enum DirectError {
    /// The database is locked right now: use the waiting path instead.
    Busy,
    /// Anything else, already classified.
    Failed(ConnectorError),
}

/// A few idle connections to one SQLite file.
pub(crate) struct SqliteDirect {
    name: String,
    path: PathBuf,
    flags: OpenFlags,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl SqliteDirect {
    /// For a `sqlite:` URL as [`crate::sql::SqlSource`] takes it (`?mode=ro` opens the
    /// file read-only). Nothing is opened until the first lookup.
    pub(crate) fn new(name: &str, url: &str, max_idle: usize) -> Option<Self> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let (file, query) = rest.split_once('?').unwrap_or((rest, ""));
        if file.is_empty() || file == ":memory:" || query.contains("memory") {
            // In-memory databases are per connection; only the pooled path is right.
            return None;
        }
        let read_only = query.split('&').any(|kv| kv == "mode=ro");
        let access = if read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        };
        Some(Self {
            name: name.to_owned(),
            path: PathBuf::from(percent_decode(file)),
            flags: access | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            idle: Mutex::new(Vec::new()),
            max_idle: max_idle.max(1),
        })
    }

    /// Run `sql` with `params` bound and map the first row's `fields` (field, column).
    pub(crate) fn query_one(
        &self,
        sql: &str,
        params: &[&str],
        fields: &[(String, String)],
    ) -> Result<Option<Record>, DirectError> {
        let conn = self.take()?;
        let result = run(&conn, sql, params, fields);
        // A connection that saw an error other than a lock is dropped, not reused.
        if matches!(result, Ok(_) | Err(DirectError::Busy)) {
            self.give_back(conn);
        }
        result.map_err(|e| match e {
            DirectError::Failed(ConnectorError::Query(m)) => DirectError::Failed(
                ConnectorError::Query(format!("connector {}: {m}", self.name)),
            ),
            other => other,
        })
    }

    fn take(&self) -> Result<Connection, DirectError> {
        if let Some(c) = self.lock().pop() {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(&self.path, self.flags).map_err(|e| {
            DirectError::Failed(ConnectorError::Unavailable(format!(
                "connector {}: cannot open {}: {e}",
                self.name,
                self.path.display()
            )))
        })?;
        // Never wait inside the caller's task; `Busy` sends it to the waiting path.
        conn.busy_timeout(std::time::Duration::ZERO)
            .map_err(|e| DirectError::Failed(ConnectorError::Unavailable(e.to_string())))?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // Only plain connections are inside; a panic elsewhere leaves them usable.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn run(
    conn: &Connection,
    sql: &str,
    params: &[&str],
    fields: &[(String, String)],
) -> Result<Option<Record>, DirectError> {
    let mut stmt = conn.prepare_cached(sql).map_err(classify)?;
    let indices: Vec<usize> = fields
        .iter()
        .map(|(field, column)| {
            stmt.column_index(column).map_err(|_| {
                DirectError::Failed(ConnectorError::Query(format!(
                    "query has no column {column:?} (mapped from field {field})"
                )))
            })
        })
        .collect::<Result<_, _>>()?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params.iter()))
        .map_err(classify)?;
    let Some(row) = rows.next().map_err(classify)? else {
        return Ok(None);
    };
    let mut record = Record::new();
    for ((field, _), i) in fields.iter().zip(indices) {
        let value = match row.get_ref(i).map_err(classify)? {
            ValueRef::Null => serde_json::Value::Null,
            ValueRef::Integer(n) => serde_json::Value::from(n),
            ValueRef::Real(x) => serde_json::Number::from_f64(x)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            ValueRef::Text(t) => serde_json::Value::String(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(_) => {
                return Err(DirectError::Failed(ConnectorError::Query(format!(
                    "column for field {field} is a blob; cast it to text in the query"
                ))))
            }
        };
        record.insert(field.clone(), value);
    }
    Ok(Some(record))
}

fn classify(e: rusqlite::Error) -> DirectError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => DirectError::Busy,
        Some(ErrorCode::CannotOpen | ErrorCode::NotADatabase) => {
            DirectError::Failed(ConnectorError::Unavailable(e.to_string()))
        }
        _ => DirectError::Failed(ConnectorError::Query(e.to_string())),
    }
}

/// Undo [`crate::sql::sqlite_url`]'s escapes.
fn percent_decode(s: &str) -> String {
    s.replace("%3F", "?")
        .replace("%23", "#")
        .replace("%25", "%")
}
