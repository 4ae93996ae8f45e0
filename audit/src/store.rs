//! Where the chain lives: a SQLite file (one gateway) or PostgreSQL (several gateways
//! sharing one chain). Every query of the audit tools goes through [`AuditStore`].
//!
//! Besides `seq`, `hash` and `record` (the canonical JSON the hash covers), each row
//! keeps copies of the searchable fields in indexed columns
//! ([`crate::SEARCH_COLUMN_NAMES`]). Those copies are not covered by the hash, so
//! `audit verify` checks every row's columns against its record: a column altered to
//! hide a record from search and the reports fails verification at that record.
//! Search also re-checks every hit against its record, so a column can never change
//! what a hit says.
//!
//! The schema is sqlx migrations (`audit/migrations/{sqlite,postgres}/`), applied
//! when the store opens.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, ConnectOptions as _, PgPool, SqlitePool};

use super::chain::Row;
use super::checkpoint::StoredCheckpoint;
use super::error::AuditError;
use super::search::Filter;

/// Where the audit store lives; the gateway builds it from its `state_db` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// An embedded SQLite file: one gateway.
    Sqlite(PathBuf),
    /// A PostgreSQL URL: several gateways sharing one chain.
    Postgres(String),
}

/// A stored record with its search columns as the row holds them.
pub(crate) struct IndexedRow {
    pub(crate) row: Row,
    /// In the order of [`crate::SEARCH_COLUMN_NAMES`]; `None` for a row without them
    /// (SQLite, whose search index is per segment).
    pub(crate) columns: Option<[Option<String>; 8]>,
}

/// An [`IndexedRow`] from a row selecting `seq, hash, record` and the search columns
/// in order.
pub(crate) fn indexed_row<R>(r: &R) -> Result<IndexedRow, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let columns = if r.len() > 3 {
        let mut columns: [Option<String>; 8] = Default::default();
        for (k, c) in columns.iter_mut().enumerate() {
            *c = r.try_get(3 + k)?;
        }
        Some(columns)
    } else {
        None
    };
    Ok(IndexedRow {
        row: Row {
            seq: r.try_get(0)?,
            hash: r.try_get(1)?,
            record: r.try_get(2)?,
        },
        columns,
    })
}

/// A range of records moved out of the store into an archive file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveEntry {
    /// First archived sequence number.
    pub from_seq: i64,
    /// Last archived sequence number (a checkpointed record).
    pub to_seq: i64,
    /// Chain hash of `to_seq`, the anchor of the first record left in the store.
    pub last_hash: String,
    /// The archive file, as written.
    pub file: String,
    /// SHA-256 of the file.
    pub sha256: String,
}

/// The audit store.
#[derive(Clone, Debug)]
pub enum AuditStore {
    /// Embedded SQLite file.
    Sqlite(SqlitePool),
    /// PostgreSQL shared by several gateways.
    Postgres(PgPool),
}

/// The PostgreSQL advisory lock that serializes appends to the one chain. Every
/// gateway takes it for the length of one group-commit transaction.
pub(crate) const CHAIN_LOCK: i64 = 0x746f_6e67_6261_6e01;

/// Where the audit migrations are recorded: a table of their own, so that the policy
/// store's migrations can live in the same database. Renaming it would make every
/// existing database look unmigrated.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations_audit";

/// The migration that adds the search columns on SQLite.
const SEARCH_COLUMNS: i64 = 2;

/// The audit schema on SQLite, oldest first: `audit/migrations/sqlite/`, embedded.
/// A released file never changes (sqlx refuses a database whose applied migration
/// has another checksum); a change is a new file.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "audit tables",
        include_str!("../migrations/sqlite/0001_audit_tables.sql"),
    ),
    (
        SEARCH_COLUMNS,
        "search columns",
        include_str!("../migrations/sqlite/0002_search_columns.sql"),
    ),
    (
        3,
        "merkle tree",
        include_str!("../migrations/sqlite/0003_merkle_tree.sql"),
    ),
    (
        4,
        "note checkpoints",
        include_str!("../migrations/sqlite/0004_note_checkpoints.sql"),
    ),
    (
        5,
        "segment index",
        include_str!("../migrations/sqlite/0005_segment_index.sql"),
    ),
    (
        6,
        "witness cosignatures",
        include_str!("../migrations/sqlite/0006_witness_cosignatures.sql"),
    ),
    (
        7,
        "verify runs",
        include_str!("../migrations/sqlite/0007_verify_runs.sql"),
    ),
];

/// The audit schema on PostgreSQL: `audit/migrations/postgres/`, embedded.
const PG_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "audit tables",
        include_str!("../migrations/postgres/0001_audit_tables.sql"),
    ),
    (
        2,
        "search indexes",
        include_str!("../migrations/postgres/0002_search_indexes.sql"),
    ),
    (
        3,
        "merkle tree",
        include_str!("../migrations/postgres/0003_merkle_tree.sql"),
    ),
    (
        4,
        "note checkpoints",
        include_str!("../migrations/postgres/0004_note_checkpoints.sql"),
    ),
    (
        6,
        "witness cosignatures",
        include_str!("../migrations/postgres/0006_witness_cosignatures.sql"),
    ),
    (
        7,
        "verify runs",
        include_str!("../migrations/postgres/0007_verify_runs.sql"),
    ),
];

impl AuditStore {
    /// Open the audit store of a state database, bringing its schema up to date.
    pub async fn open(db: &Database) -> Result<Self, AuditError> {
        match db {
            Database::Sqlite(path) => {
                let pool = migrate::retry_while_locked(|| {
                    SqlitePoolOptions::new()
                        .max_connections(4)
                        .acquire_timeout(Duration::from_secs(5))
                        .connect_with(state_db_options(path))
                })
                .await?;
                // sqlx's migrator takes no lock on SQLite: an immediate transaction
                // holds the write lock instead, so processes opening the database
                // together wait for each other.
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let migrator = migrator(SQLITE_MIGRATIONS);
                baseline_sqlite(&mut tx, &migrator).await?;
                // `run_direct` is `run` on a connection we hold: sqlx's own way
                // around "`Acquire` is not general enough" for a borrowed one.
                migrator
                    .run_direct(None, &mut *tx, false)
                    .await
                    .map_err(migrate_error)?;
                tx.commit().await?;
                Ok(Self::Sqlite(pool))
            }
            Database::Postgres(url) => {
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect(url)
                    .await?;
                // Gateways starting together wait for each other: the migrator holds
                // a session advisory lock on the database while it works.
                migrator(PG_MIGRATIONS)
                    .run(&pool)
                    .await
                    .map_err(migrate_error)?;
                Ok(Self::Postgres(pool))
            }
        }
    }

    /// Open the store of a state database that must already exist (the CLI tools).
    pub async fn open_existing(db: &Database) -> Result<Self, AuditError> {
        if let Database::Sqlite(path) = db {
            if !path.is_file() {
                return Err(AuditError::Store(format!(
                    "{}: no such state database",
                    path.display()
                )));
            }
        }
        Self::open(db).await
    }

    /// Records `from..=to` in sequence order, streamed.
    pub fn rows(&self, from: i64, to: i64) -> BoxStream<'_, Result<Row, AuditError>> {
        let map = |(seq, hash, record): (i64, String, String)| Row { seq, hash, record };
        match self {
            Self::Sqlite(p) => sqlx::query_as::<_, (i64, String, String)>(
                "SELECT seq, hash, record FROM audit_log WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq",
            )
            .bind(from)
            .bind(to)
            .fetch(p)
            .map_ok(map)
            .map_err(AuditError::from)
            .boxed(),
            Self::Postgres(p) => sqlx::query_as::<_, (i64, String, String)>(
                "SELECT seq, hash, record FROM audit_log WHERE seq >= $1 AND seq <= $2 ORDER BY seq",
            )
            .bind(from)
            .bind(to)
            .fetch(p)
            .map_ok(map)
            .map_err(AuditError::from)
            .boxed(),
        }
    }

    /// Records `from..=to` in sequence order with their search columns, streamed.
    pub(crate) fn indexed_rows(
        &self,
        from: i64,
        to: i64,
    ) -> BoxStream<'_, Result<IndexedRow, AuditError>> {
        match self {
            // No search columns on SQLite: `audit verify` checks its segment index.
            Self::Sqlite(p) => sqlx::query(
                "SELECT seq, hash, record FROM audit_log WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq",
            )
            .bind(from)
            .bind(to)
            .fetch(p)
            .map(|r| Ok(indexed_row(&r?)?))
            .boxed(),
            Self::Postgres(p) => sqlx::query(
                "SELECT seq, hash, record, time, consumer, operator, dataset, subject, matter, case_id, decision
                 FROM audit_log WHERE seq >= $1 AND seq <= $2 ORDER BY seq",
            )
            .bind(from)
            .bind(to)
            .fetch(p)
            .map(|r| Ok(indexed_row(&r?)?))
            .boxed(),
        }
    }

    /// Lowest and highest sequence number in the store, if any.
    pub async fn bounds(&self) -> Result<Option<(i64, i64)>, AuditError> {
        let sql = "SELECT MIN(seq), MAX(seq) FROM audit_log";
        let (lo, hi): (Option<i64>, Option<i64>) = match self {
            Self::Sqlite(p) => sqlx::query_as(sql).fetch_one(p).await?,
            Self::Postgres(p) => sqlx::query_as(sql).fetch_one(p).await?,
        };
        Ok(lo.zip(hi))
    }

    /// The first record received at or after `time` (RFC 3339 UTC, as stored).
    pub async fn first_seq_from(&self, time: &str) -> Result<Option<i64>, AuditError> {
        Ok(match self {
            // The first record by seq at or after `time`, through the index.
            Self::Sqlite(p) => {
                let from = Filter {
                    from: Some(time.to_owned()),
                    ..Filter::default()
                };
                super::segment_search::search(p, &from, 0, 1)
                    .await?
                    .first()
                    .map(|r| r.seq)
            }
            Self::Postgres(p) => {
                sqlx::query_scalar("SELECT MIN(seq) FROM audit_log WHERE time >= $1")
                    .bind(time)
                    .fetch_one(p)
                    .await?
            }
        })
    }

    /// The stored hash of record `seq`.
    pub async fn hash_of(&self, seq: i64) -> Result<Option<String>, AuditError> {
        Ok(match self {
            Self::Sqlite(p) => {
                sqlx::query_scalar("SELECT hash FROM audit_log WHERE seq = ?1")
                    .bind(seq)
                    .fetch_optional(p)
                    .await?
            }
            Self::Postgres(p) => {
                sqlx::query_scalar("SELECT hash FROM audit_log WHERE seq = $1")
                    .bind(seq)
                    .fetch_optional(p)
                    .await?
            }
        })
    }

    /// Stored checkpoints sealing `from..=to`, in order: signed notes, and the JWS
    /// checkpoints of a store written before them. A row that does not parse is an
    /// error naming its seq.
    pub async fn checkpoints(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<StoredCheckpoint>, AuditError> {
        let rows: Vec<(i64, String, String, String)> = match self {
            Self::Sqlite(p) => sqlx::query_as(
                "SELECT seq, hash, checkpoint, format FROM audit_checkpoint WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq",
            )
            .bind(from)
            .bind(to)
            .fetch_all(p)
            .await?,
            Self::Postgres(p) => sqlx::query_as(
                "SELECT seq, hash, checkpoint, format FROM audit_checkpoint WHERE seq >= $1 AND seq <= $2 ORDER BY seq",
            )
            .bind(from)
            .bind(to)
            .fetch_all(p)
            .await?,
        };
        rows.into_iter()
            .map(|(seq, hash, text, format)| {
                StoredCheckpoint::from_row(seq, hash, &text, &format).map_err(|e| {
                    AuditError::Store(format!("checkpoint at seq {seq} is not valid: {e}"))
                })
            })
            .collect()
    }

    /// The latest stored signed note, if any.
    pub async fn latest_note(&self) -> Result<Option<String>, AuditError> {
        let sql = "SELECT checkpoint FROM audit_checkpoint WHERE format = 'note' ORDER BY seq DESC LIMIT 1";
        Ok(match self {
            Self::Sqlite(p) => sqlx::query_scalar(sql).fetch_optional(p).await?,
            Self::Postgres(p) => sqlx::query_scalar(sql).fetch_optional(p).await?,
        })
    }

    /// Archived ranges, oldest first.
    pub async fn archives(&self) -> Result<Vec<ArchiveEntry>, AuditError> {
        let sql =
            "SELECT from_seq, to_seq, last_hash, file, sha256 FROM audit_archive ORDER BY from_seq";
        let rows: Vec<(i64, i64, String, String, String)> = match self {
            Self::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await?,
            Self::Postgres(p) => sqlx::query_as(sql).fetch_all(p).await?,
        };
        Ok(rows
            .into_iter()
            .map(|(from_seq, to_seq, last_hash, file, sha256)| ArchiveEntry {
                from_seq,
                to_seq,
                last_hash,
                file,
                sha256,
            })
            .collect())
    }

    /// Record an archive and delete its records from the store, in one transaction.
    pub async fn commit_archive(&self, a: &ArchiveEntry) -> Result<u64, AuditError> {
        macro_rules! run {
            ($pool:expr, $ins:literal, $del:literal $(, $also:literal)*) => {{
                let mut tx = $pool.begin().await?;
                sqlx::query($ins)
                    .bind(a.from_seq)
                    .bind(a.to_seq)
                    .bind(&a.last_hash)
                    .bind(&a.file)
                    .bind(&a.sha256)
                    .execute(&mut *tx)
                    .await?;
                let n = sqlx::query($del)
                    .bind(a.from_seq)
                    .bind(a.to_seq)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                $(
                    sqlx::query($also)
                        .bind(a.from_seq)
                        .bind(a.to_seq)
                        .execute(&mut *tx)
                        .await?;
                )*
                tx.commit().await?;
                n
            }};
        }
        Ok(match self {
            Self::Sqlite(p) => run!(
                p,
                "INSERT INTO audit_archive (from_seq, to_seq, last_hash, file, sha256) VALUES (?1, ?2, ?3, ?4, ?5)",
                "DELETE FROM audit_log WHERE seq >= ?1 AND seq <= ?2",
                // Their index entries leave with them, and the segments left empty.
                "DELETE FROM audit_index WHERE seg IN (SELECT first_seq FROM audit_segment WHERE last_seq >= ?1 AND first_seq <= ?2) AND seq >= ?1 AND seq <= ?2",
                "DELETE FROM audit_segment WHERE first_seq >= ?1 AND last_seq <= ?2"
            ),
            Self::Postgres(p) => run!(
                p,
                "INSERT INTO audit_archive (from_seq, to_seq, last_hash, file, sha256) VALUES ($1, $2, $3, $4, $5)",
                "DELETE FROM audit_log WHERE seq >= $1 AND seq <= $2"
            ),
        })
    }

    /// Up to `limit` records matching `filter` with seq greater than `after`, in
    /// sequence order. Hits whose record disagrees with its index columns are dropped.
    pub async fn search(
        &self,
        filter: &Filter,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Row>, AuditError> {
        let pool = match self {
            Self::Sqlite(p) => return super::segment_search::search(p, filter, after, limit).await,
            Self::Postgres(p) => p,
        };
        let ph = |i: usize| format!("${i}");
        let mut sql = format!(
            "SELECT seq, hash, record FROM audit_log WHERE seq > {}",
            ph(1)
        );
        let mut binds: Vec<String> = Vec::new();
        for (column, op, value) in filter.conditions() {
            binds.push(value);
            let name = column.name();
            sql.push_str(&format!(" AND {name} {op} {}", ph(binds.len() + 1)));
        }
        sql.push_str(&format!(" ORDER BY seq LIMIT {}", limit.min(100_000)));
        macro_rules! fetch {
            ($pool:expr) => {{
                let mut q =
                    sqlx::query_as::<_, (i64, String, String)>(AssertSqlSafe(sql)).bind(after);
                for b in binds {
                    q = q.bind(b);
                }
                q.fetch_all($pool).await?
            }};
        }
        let rows = fetch!(pool);
        Ok(rows
            .into_iter()
            .map(|(seq, hash, record)| Row { seq, hash, record })
            .filter(|r| {
                let ok = filter.matches_record(&r.record);
                if !ok {
                    tracing::warn!(seq = r.seq, "audit search: index columns disagree with the record; run `tongban audit verify`");
                }
                ok
            })
            .collect())
    }
}

fn migrator(migrations: &[(i64, &'static str, &'static str)]) -> Migrator {
    migrate::embedded_migrator(MIGRATIONS_TABLE, migrations)
}

fn migrate_error(e: MigrateError) -> AuditError {
    AuditError::Store(format!("schema migration: {e}"))
}

/// A SQLite database made before migrations (no migrations table) whose `audit_log`
/// already has the search columns is at [`SEARCH_COLUMNS`]: record the migrations up
/// to it as applied without running them, since SQLite has no `ADD COLUMN IF NOT
/// EXISTS`. One without the columns needs no help: the first migration finds its
/// tables there, the second adds and fills the columns.
async fn baseline_sqlite(
    conn: &mut SqliteConnection,
    migrator: &Migrator,
) -> Result<(), AuditError> {
    let (tracked, searchable): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1),
            EXISTS (SELECT 1 FROM pragma_table_info('audit_log') WHERE name = 'subject')",
    )
    .bind(MIGRATIONS_TABLE)
    .fetch_one(&mut *conn)
    .await?;
    if !tracked && searchable {
        migrator
            .run_direct(Some(SEARCH_COLUMNS), conn, true)
            .await
            .map_err(migrate_error)?;
    }
    Ok(())
}

/// Connection options for the state database: WAL, and `synchronous=FULL` so a
/// commit is on disk when it returns.
pub fn state_db_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5))
        .log_statements(tracing::log::LevelFilter::Trace)
}
