//! Tests' stores: chained records written straight into a SQLite store.

#![allow(clippy::unwrap_used)]

use crate::{seal_entry, AuditEntry, AuditStore, Database, GENESIS};

/// A SQLite store at `dir/state.db` holding `entries` as records 1.., chained, in one
/// transaction (no tree, no index: what a test wants of those it builds itself).
pub(crate) async fn chained_store(dir: &std::path::Path, entries: &[AuditEntry]) -> AuditStore {
    let store = AuditStore::open(&Database::Sqlite(dir.join("state.db")))
        .await
        .unwrap();
    let AuditStore::Sqlite(pool) = &store else {
        unreachable!()
    };
    let mut tx = pool.begin().await.unwrap();
    let mut prev = GENESIS.to_owned();
    for (seq, e) in (1..).zip(entries) {
        let (record, hash) = seal_entry(seq, &prev, e).unwrap();
        sqlx::query("INSERT INTO audit_log (seq, hash, record) VALUES (?1, ?2, ?3)")
            .bind(seq)
            .bind(&hash)
            .bind(record)
            .execute(&mut *tx)
            .await
            .unwrap();
        prev = hash;
    }
    tx.commit().await.unwrap();
    store
}
