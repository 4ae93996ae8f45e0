//! Embedded sqlx migrations, recorded in a table of the store's own, so that the
//! policy store's and the audit log's schemas can share one database. Both stores
//! build their migrator here; neither depends on the other for it.

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::SqlSafeStr as _;

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
