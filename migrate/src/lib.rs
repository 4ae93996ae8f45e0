//! Embedded sqlx migrations, recorded in a table of the store's own, so that the
//! policy store's and the audit log's schemas can share one database. Both stores
//! build their migrator here; neither depends on the other for it.

use std::future::Future;
use std::time::{Duration, Instant};

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::SqlSafeStr as _;

/// How long opening a store keeps retrying a locked SQLite database: the stores'
/// busy timeout.
pub const LOCKED_PATIENCE: Duration = Duration::from_secs(5);

/// Run `open` (a pool's first connection to a SQLite database) again while SQLite
/// answers "database is locked", for up to [`LOCKED_PATIENCE`]. Switching a fresh
/// database to WAL takes its exclusive lock without calling the busy handler, so
/// stores opening one database together (gateways starting at once, a command run
/// as one starts) can be refused at once, whatever their busy timeout. For SQLite
/// only: the codes it retries are SQLite's.
pub async fn retry_while_locked<T, F, Fut>(mut open: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let deadline = Instant::now() + LOCKED_PATIENCE;
    let mut pause = Duration::from_millis(2);
    loop {
        match open().await {
            Err(e) if is_locked(&e) && Instant::now() + pause < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            opened => return opened,
        }
    }
}

/// SQLITE_BUSY or one of its extended codes.
fn is_locked(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(e) = e else {
        return false;
    };
    e.code()
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| c & 0xff == 5)
}

/// A sqlx migrator over embedded `(version, description, sql)` migrations, recording
/// them in `table`. Built at run time rather than by `sqlx::migrate!`, which needs
/// sqlx's `macros` feature and would build the database stack a second time for the
/// proc-macro.
pub fn embedded_migrator(
    table: &'static str,
    migrations: &[(i64, &'static str, &'static str)],
) -> Migrator {
    let migrations = migrations
        .iter()
        .map(|&(version, description, sql)| {
            Migration::new(
                version,
                description.into(),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    let mut migrator = Migrator::with_migrations(migrations);
    migrator.dangerous_set_table_name(table);
    migrator
}
