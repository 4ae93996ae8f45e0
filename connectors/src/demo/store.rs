//! Writing the generated records to SQLite: one connection and one transaction per
//! file, the insert statement prepared once and reused for every row.

use std::path::{Path, PathBuf};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions as _, Connection as _};

use super::generate::{Contribution, LegalPerson, License, Resident};
use crate::{ConnectorError, Record};

const RESIDENTS_DDL: &str = "CREATE TABLE residents (
    id_number TEXT PRIMARY KEY NOT NULL,
    full_name TEXT NOT NULL,
    sex TEXT NOT NULL,
    date_of_birth TEXT NOT NULL,
    ethnic_group TEXT NOT NULL,
    hukou_address TEXT NOT NULL,
    registration_authority TEXT NOT NULL,
    status TEXT NOT NULL
)";

const RESIDENTS_INSERT: &str = "INSERT INTO residents VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

const LEGAL_PERSONS_DDL: &str = "CREATE TABLE legal_persons (
    credit_code TEXT PRIMARY KEY NOT NULL,
    entity_name TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    legal_rep_name TEXT NOT NULL,
    legal_rep_id TEXT NOT NULL,
    registered_capital_yuan INTEGER NOT NULL,
    established_on TEXT NOT NULL,
    registered_address TEXT NOT NULL,
    status TEXT NOT NULL,
    business_scope TEXT NOT NULL
)";

const LEGAL_PERSONS_INSERT: &str =
    "INSERT INTO legal_persons VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// Companies a person represents: "one go" bundles start from a resident.
const LEGAL_PERSONS_INDEX: &str = "CREATE INDEX legal_persons_rep ON legal_persons (legal_rep_id)";

const LICENSES_DDL: &str = "CREATE TABLE licenses (
    license_id TEXT PRIMARY KEY NOT NULL,
    license_type TEXT NOT NULL,
    holder_id TEXT NOT NULL,
    holder_name TEXT NOT NULL,
    issuer_name TEXT NOT NULL,
    issued_on TEXT NOT NULL,
    valid_until TEXT,
    status TEXT NOT NULL,
    content TEXT NOT NULL,
    issuer_signature TEXT NOT NULL,
    file_sha256 TEXT NOT NULL
)";

const LICENSES_INSERT: &str = "INSERT INTO licenses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

const CONTRIBUTIONS_DDL: &str = "CREATE TABLE contributions (
    id_number TEXT PRIMARY KEY NOT NULL,
    insured_status TEXT NOT NULL,
    employer TEXT,
    contribution_base_yuan INTEGER NOT NULL,
    months_paid INTEGER NOT NULL,
    last_paid_month TEXT NOT NULL,
    pension_account_balance_yuan INTEGER NOT NULL
)";

const CONTRIBUTIONS_INSERT: &str = "INSERT INTO contributions VALUES (?, ?, ?, ?, ?, ?, ?)";

/// Lookups by holder ID plus licence type (DESIGN: e_license subject key).
const LICENSES_INDEX: &str = "CREATE INDEX licenses_holder ON licenses (holder_id, license_type)";

pub(super) async fn write_residents(path: &Path, rows: &[Resident]) -> Result<(), ConnectorError> {
    let mut conn = create(path).await?;
    let mut tx = conn.begin().await?;
    sqlx::query(RESIDENTS_DDL).execute(&mut *tx).await?;
    for r in rows {
        sqlx::query(RESIDENTS_INSERT)
            .bind(&r.id)
            .bind(&r.name)
            .bind(if r.male { "male" } else { "female" })
            .bind(r.birth.to_string())
            .bind(r.ethnicity)
            .bind(&r.address)
            .bind(r.authority)
            .bind(r.status)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    finish(conn).await?;
    Ok(())
}

pub(super) async fn write_legal_persons(
    path: &Path,
    rows: &[LegalPerson],
) -> Result<(), ConnectorError> {
    let mut conn = create(path).await?;
    let mut tx = conn.begin().await?;
    sqlx::query(LEGAL_PERSONS_DDL).execute(&mut *tx).await?;
    for l in rows {
        sqlx::query(LEGAL_PERSONS_INSERT)
            .bind(&l.code)
            .bind(&l.name)
            .bind(l.entity_type)
            .bind(&l.rep_name)
            .bind(&l.rep_id)
            .bind(l.capital_yuan)
            .bind(l.established.to_string())
            .bind(&l.address)
            .bind(l.status)
            .bind(&l.scope)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(LEGAL_PERSONS_INDEX).execute(&mut *tx).await?;
    tx.commit().await?;
    finish(conn).await?;
    Ok(())
}

pub(super) async fn write_licenses(path: &Path, rows: &[License]) -> Result<(), ConnectorError> {
    let mut conn = create(path).await?;
    let mut tx = conn.begin().await?;
    sqlx::query(LICENSES_DDL).execute(&mut *tx).await?;
    for l in rows {
        let r = &l.record;
        sqlx::query(LICENSES_INSERT)
            .bind(&l.id)
            .bind(text(r, "license_type")?)
            .bind(text(r, "holder_id")?)
            .bind(text(r, "holder_name")?)
            .bind(text(r, "issuer")?)
            .bind(text(r, "issued_on")?)
            .bind(optional_text(r, "valid_until")?)
            .bind(text(r, "status")?)
            .bind(text(r, "content")?)
            .bind(text(r, "issuer_signature")?)
            .bind(text(r, "file_sha256")?)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(LICENSES_INDEX).execute(&mut *tx).await?;
    tx.commit().await?;
    finish(conn).await?;
    Ok(())
}

pub(super) async fn write_contributions(
    path: &Path,
    rows: &[Contribution],
) -> Result<(), ConnectorError> {
    let mut conn = create(path).await?;
    let mut tx = conn.begin().await?;
    sqlx::query(CONTRIBUTIONS_DDL).execute(&mut *tx).await?;
    for c in rows {
        sqlx::query(CONTRIBUTIONS_INSERT)
            .bind(&c.resident_id)
            .bind(c.status)
            .bind(c.employer.as_deref())
            .bind(c.base_yuan)
            .bind(c.months_paid)
            .bind(&c.last_paid_month)
            .bind(c.account_balance_yuan)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    finish(conn).await?;
    Ok(())
}

fn text(record: &Record, field: &str) -> Result<String, ConnectorError> {
    optional_text(record, field)?
        .ok_or_else(|| ConnectorError::Data(format!("licence field {field} is null")))
}

fn optional_text(record: &Record, field: &str) -> Result<Option<String>, ConnectorError> {
    match record.get(field) {
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Null) => Ok(None),
        _ => Err(ConnectorError::Data(format!(
            "licence field {field} is not text"
        ))),
    }
}

/// Leave the file in WAL mode, as a department database serving lookups would be:
/// a read then costs no file-lock and journal-check system calls per transaction,
/// which in rollback-journal mode were a tenth of a demo lookup's CPU.
async fn finish(mut conn: SqliteConnection) -> Result<(), ConnectorError> {
    sqlx::query("PRAGMA journal_mode = WAL")
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// Removes any earlier database at `path` (and its journal files) and opens a new
/// one. Durability is the commit's job here: the file is rebuilt on every run, so
/// `synchronous = OFF` costs nothing and saves the fsyncs.
async fn create(path: &Path) -> Result<SqliteConnection, ConnectorError> {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut file: PathBuf = path.to_owned();
        file.as_mut_os_string().push(suffix);
        match tokio::fs::remove_file(&file).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    let conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Delete)
        .synchronous(SqliteSynchronous::Off)
        .connect()
        .await
        .map_err(|e| ConnectorError::Unavailable(format!("{}: {e}", path.display())))?;
    Ok(conn)
}
