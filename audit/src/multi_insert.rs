//! Inserting many rows with few statements: `INSERT … VALUES (…), (…), …`.
//!
//! Each executed statement costs SQLite a VDBE program run and rusqlite a bind, step
//! and reset; a group commit inserts a row per record, about two tree hashes per
//! record, and a sealed segment four index entries per record. Rows go in chunks
//! whose sizes are powers of two up to [`MAX_ROWS`], so a table needs at most seven
//! statement shapes, each prepared once and kept in the connection's cache.

use rusqlite::{Connection, ToSql};

/// Most rows in one statement (SQLite allows 32,766 parameters).
const MAX_ROWS: usize = 64;

/// Statements a writer's connection keeps prepared: seven shapes per table written in
/// chunks, and the writer's other statements.
pub(crate) const STATEMENT_CACHE: usize = 64;

/// Insert `rows` (each `N` values for the columns in `head`, which is
/// `INSERT INTO t (a, b, …)`), in as few statements as [`MAX_ROWS`] allows.
pub(crate) fn insert_rows<const N: usize>(
    conn: &Connection,
    head: &str,
    rows: &[[&dyn ToSql; N]],
) -> rusqlite::Result<()> {
    let mut rest = rows;
    while !rest.is_empty() {
        let take = chunk_len(rest.len());
        let (chunk, after) = rest.split_at(take);
        let mut stmt = conn.prepare_cached(&values_sql(head, N, take))?;
        let params: Vec<&dyn ToSql> = chunk.iter().flat_map(|r| r.iter().copied()).collect();
        stmt.execute(params.as_slice())?;
        rest = after;
    }
    Ok(())
}

/// The largest power of two up to [`MAX_ROWS`] that is at most `left`.
fn chunk_len(left: usize) -> usize {
    let cap = left.min(MAX_ROWS);
    1 << (usize::BITS - 1 - cap.leading_zeros())
}

/// `head VALUES (?,…),(?,…)…` for `rows` rows of `columns` values.
fn values_sql(head: &str, columns: usize, rows: usize) -> String {
    let one = format!("({})", vec!["?"; columns].join(","));
    format!("{head} VALUES {}", vec![one; rows].join(","))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_covering_every_row() {
        for n in 1..300 {
            let (mut left, mut sizes) = (n, Vec::new());
            while left > 0 {
                let c = chunk_len(left);
                assert!(c.is_power_of_two() && c <= MAX_ROWS && c <= left);
                sizes.push(c);
                left -= c;
            }
            assert_eq!(sizes.iter().sum::<usize>(), n);
        }
        assert_eq!(
            values_sql("INSERT INTO t (a, b)", 2, 2),
            "INSERT INTO t (a, b) VALUES (?,?),(?,?)"
        );
    }

    #[test]
    fn every_row_is_inserted_in_order() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
            .unwrap();
        let values: Vec<(i64, String)> = (0..203).map(|i| (i, format!("v{i}"))).collect();
        let rows: Vec<[&dyn ToSql; 2]> = values.iter().map(|(a, b)| [a as &dyn ToSql, b]).collect();
        insert_rows(&conn, "INSERT INTO t (a, b)", &rows).unwrap();
        let got: Vec<(i64, String)> = conn
            .prepare("SELECT a, b FROM t ORDER BY a")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, values);
    }
}
