//! Search over a SQLite store: the index for indexed segments, the records
//! themselves for the rest (the unindexed tail, at most one segment long, or anything
//! whose segment is not listed). A record is found the moment its commit returns.
//!
//! Every condition is also checked on the record itself (`json_extract`), so the
//! index only chooses which records to read: an entry pointing at the wrong record
//! adds nothing, and `audit verify` names an entry that is wrong or missing.

use futures_util::TryStreamExt as _;
use sqlx::{AssertSqlSafe, SqlitePool};

use super::chain::Row;
use super::error::AuditError;
use super::search::Filter;

/// The index condition: the column's place in the search columns and the value (or
/// the time range) it must have.
enum Key {
    Eq(usize, String),
    Time(Option<String>, Option<String>),
}

/// The most selective indexed condition of `filter`.
fn key_of(filter: &Filter) -> Option<Key> {
    let eq = [
        (4, &filter.subject),
        (6, &filter.case_id),
        (2, &filter.operator),
    ];
    if let Some((col, Some(v))) = eq.into_iter().find(|(_, v)| v.is_some()) {
        return Some(Key::Eq(col, v.clone()));
    }
    (filter.from.is_some() || filter.to.is_some())
        .then(|| Key::Time(filter.from.clone(), filter.to.clone()))
}

/// Up to `limit` records matching `filter` with seq greater than `after`, in
/// sequence order. Hits whose record disagrees with the filter are dropped.
pub(crate) async fn search(
    pool: &SqlitePool,
    filter: &Filter,
    after: i64,
    limit: usize,
) -> Result<Vec<Row>, AuditError> {
    let limit = limit.min(100_000);
    let key = key_of(filter);
    let segments: Vec<(i64, i64)> = if key.is_some() {
        sqlx::query_as(
            "SELECT first_seq, last_seq FROM audit_segment WHERE last_seq > ?1 ORDER BY first_seq",
        )
        .bind(after)
        .fetch_all(pool)
        .await?
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    let mut cursor = after;
    let mut i = 0;
    while out.len() < limit {
        while segments.get(i).is_some_and(|(_, last)| *last <= cursor) {
            i += 1;
        }
        let want = limit - out.len();
        let (end, rows) = match (segments.get(i), &key) {
            (Some(&(first, last)), Some(key)) if first <= cursor + 1 => {
                // The stretch of adjacent indexed segments from here: one statement
                // finds the next of them with a hit (a seek per segment), a second
                // reads that segment's hits.
                let mut j = i;
                let mut end = last;
                while segments.get(j + 1).is_some_and(|s| s.0 == end + 1) {
                    j += 1;
                    end = segments[j].1;
                }
                match next_hit(pool, key, (first, segments[j].0), cursor).await? {
                    None => (end, Vec::new()),
                    Some((seg, seg_last)) => (
                        seg_last,
                        indexed(pool, filter, key, seg, cursor, want).await?,
                    ),
                }
            }
            (Some(&(first, _)), _) => (
                first - 1,
                scan(pool, filter, cursor, first - 1, want).await?,
            ),
            (None, _) => (i64::MAX, scan(pool, filter, cursor, i64::MAX, want).await?),
        };
        let full = rows.len() >= want;
        let last_seen = rows.last().map(|r| r.seq);
        out.extend(rows.into_iter().filter(|r| {
            let ok = filter.matches_record(&r.record);
            if !ok {
                tracing::warn!(
                    seq = r.seq,
                    "audit search: a hit disagrees with its record; run `tongban audit verify`"
                );
            }
            ok
        }));
        cursor = match (full, last_seen) {
            (true, Some(seq)) => seq,
            _ if end == i64::MAX => break,
            _ => end,
        };
    }
    Ok(out)
}

/// A value bound to a placeholder.
enum Bind {
    Int(i64),
    Text(String),
}

/// The filter's conditions on the record itself, adding their values to `binds`.
fn on_record(filter: &Filter, table: &str, binds: &mut Vec<Bind>) -> String {
    let mut sql = String::new();
    for (column, op, value) in filter.conditions() {
        let name = column.name();
        binds.push(Bind::Text(value));
        sql.push_str(&format!(
            " AND json_extract({table}record, '$.{name}') {op} ?{}",
            binds.len()
        ));
    }
    sql
}

/// Records `cursor+1..=end` read one by one.
async fn scan(
    pool: &SqlitePool,
    filter: &Filter,
    cursor: i64,
    end: i64,
    want: usize,
) -> Result<Vec<Row>, AuditError> {
    let mut binds = vec![Bind::Int(cursor), Bind::Int(end)];
    let conditions = on_record(filter, "", &mut binds);
    let sql = format!(
        "SELECT seq, hash, record FROM audit_log WHERE seq > ?1 AND seq <= ?2{conditions} ORDER BY seq LIMIT {want}"
    );
    fetch(pool, sql, binds).await
}

/// The index condition for `key` on `audit_index i`, adding its values to `binds`.
fn on_key(key: &Key, binds: &mut Vec<Bind>) -> String {
    match key {
        Key::Eq(col, value) => {
            binds.push(Bind::Text(value.clone()));
            format!(" AND i.col = {col} AND i.value = ?{}", binds.len())
        }
        Key::Time(from, to) => {
            let mut sql = " AND i.col = 0".to_owned();
            for (op, v) in [(">=", from), ("<", to)] {
                if let Some(v) = v {
                    binds.push(Bind::Text(v.clone()));
                    sql.push_str(&format!(" AND i.value {op} ?{}", binds.len()));
                }
            }
            sql
        }
    }
}

/// The first indexed segment with first seq in `segs` holding an entry for `key`
/// past `cursor`: its first and last seq.
async fn next_hit(
    pool: &SqlitePool,
    key: &Key,
    segs: (i64, i64),
    cursor: i64,
) -> Result<Option<(i64, i64)>, AuditError> {
    let mut binds = vec![Bind::Int(segs.0), Bind::Int(segs.1), Bind::Int(cursor)];
    let on_key = on_key(key, &mut binds);
    let sql = format!(
        "SELECT first_seq, last_seq FROM audit_segment s WHERE first_seq >= ?1 AND first_seq <= ?2
           AND EXISTS (SELECT 1 FROM audit_index i WHERE i.seg = s.first_seq{on_key} AND i.seq > ?3)
         ORDER BY first_seq LIMIT 1"
    );
    let mut q = sqlx::query_as::<_, (i64, i64)>(AssertSqlSafe(sql));
    for b in binds {
        q = match b {
            Bind::Int(i) => q.bind(i),
            Bind::Text(t) => q.bind(t),
        };
    }
    Ok(q.fetch_optional(pool).await?)
}

/// Records after `cursor` in the indexed segment `seg` through its entries for `key`.
async fn indexed(
    pool: &SqlitePool,
    filter: &Filter,
    key: &Key,
    seg: i64,
    cursor: i64,
    want: usize,
) -> Result<Vec<Row>, AuditError> {
    let mut binds = vec![Bind::Int(seg), Bind::Int(cursor)];
    let on_key = on_key(key, &mut binds);
    let conditions = on_record(filter, "l.", &mut binds);
    // The hits of one segment, at most its size, in seq order.
    let sql = format!(
        "SELECT l.seq, l.hash, l.record FROM audit_index i JOIN audit_log l ON l.seq = i.seq
         WHERE i.seg = ?1{on_key} AND i.seq > ?2{conditions}
         ORDER BY i.seq LIMIT {want}"
    );
    fetch(pool, sql, binds).await
}

async fn fetch(pool: &SqlitePool, sql: String, binds: Vec<Bind>) -> Result<Vec<Row>, AuditError> {
    let mut q = sqlx::query_as::<_, (i64, String, String)>(AssertSqlSafe(sql));
    for b in binds {
        q = match b {
            Bind::Int(i) => q.bind(i),
            Bind::Text(t) => q.bind(t),
        };
    }
    Ok(q.fetch(pool)
        .map_ok(|(seq, hash, record)| Row { seq, hash, record })
        .try_collect()
        .await?)
}
