//! A SQLite store's search index against its records. Search and the reports find a
//! record of an indexed segment only through its entries (time, operator, subject,
//! case id), which the hash does not cover: an entry altered or deleted hides the
//! record. So every indexed segment must hold exactly the entries its records give,
//! and the first record whose entries differ is named.

use std::borrow::Cow;
use std::collections::BTreeMap;

use std::path::Path;

use rusqlite::params;
use sqlx::SqlitePool;

use super::failure::VerifyFailure;
use super::sqlite_scan::{file_of, open};
use crate::batch::SEARCH_COLUMN_NAMES;
use crate::error::AuditError;
use crate::segment_index::INDEXED;

/// The indexed members of a record, read without building the whole entry (what
/// [`crate::segment_index::keys_of`] takes from it, in the order of [`INDEXED`]).
#[derive(serde::Deserialize)]
struct IndexedMembers<'a> {
    #[serde(borrow, default)]
    time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    operator: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    subject: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    case_id: Option<Cow<'a, str>>,
}

impl IndexedMembers<'_> {
    fn values(self) -> [Option<String>; 4] {
        // An entry without a time has the empty one.
        let time = self.time.map_or_else(String::new, Cow::into_owned);
        [
            Some(time),
            self.operator.map(Cow::into_owned),
            self.subject.map(Cow::into_owned),
            self.case_id.map(Cow::into_owned),
        ]
    }
}

/// Entries by record and column: the values found there.
type Entries = BTreeMap<(i64, usize), Vec<String>>;

/// Check the indexed segments that hold records in `lo..=hi`; the first record whose
/// entries disagree with it, if any. Read with rusqlite on a blocking thread, as the
/// chain walk reads: through sqlx every row would cross to its worker thread and
/// back, which cost more than the check itself.
pub(super) async fn check(
    pool: &SqlitePool,
    lo: i64,
    hi: i64,
) -> Result<Option<VerifyFailure>, AuditError> {
    let path = file_of(pool).ok_or_else(|| {
        AuditError::Store("the search index check reads the store's file, and it has none".into())
    })?;
    tokio::task::spawn_blocking(move || check_file(&path, lo, hi))
        .await
        .map_err(|e| AuditError::Store(format!("search index check: {e}")))?
}

fn check_file(path: &Path, lo: i64, hi: i64) -> Result<Option<VerifyFailure>, AuditError> {
    let err = |e: rusqlite::Error| AuditError::Store(format!("{}: {e}", path.display()));
    let conn = open(path)?;
    let segments: Vec<(i64, i64)> = conn
        .prepare(
            "SELECT first_seq, last_seq FROM audit_segment WHERE last_seq >= ?1 AND first_seq <= ?2 ORDER BY first_seq",
        )
        .and_then(|mut q| {
            q.query_map(params![lo, hi], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .map_err(err)?;
    let mut records = conn
        .prepare("SELECT seq, record FROM audit_log WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq")
        .map_err(err)?;
    let mut entries = conn
        .prepare("SELECT col, seq, value FROM audit_index WHERE seg = ?1")
        .map_err(err)?;
    let mut covered = 0;
    for (first, last) in segments {
        if first <= covered || last < first {
            return Ok(Some(VerifyFailure {
                seq: first,
                reason: format!(
                    "record {first}: the search index lists records {first}..{last}, which overlap another indexed segment or are no range"
                ),
            }));
        }
        covered = last;
        let mut want = Entries::new();
        let mut rows = records.query(params![first, last]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let seq: i64 = row.get(0).map_err(err)?;
            let record = row.get_ref(1).map_err(err)?.as_str().unwrap_or_default();
            // The chain walk has named a record that is no audit entry already.
            let Ok(keys) = serde_json::from_str::<IndexedMembers>(record) else {
                continue;
            };
            for (col, value) in INDEXED.iter().zip(keys.values()) {
                if let Some(v) = value {
                    want.insert((seq, *col), vec![v]);
                }
            }
        }
        let mut have = Entries::new();
        let mut rows = entries.query(params![first]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let col: i64 = row.get(0).map_err(err)?;
            let seq: i64 = row.get(1).map_err(err)?;
            let value: String = row.get(2).map_err(err)?;
            let col = usize::try_from(col).unwrap_or(usize::MAX);
            have.entry((seq, col)).or_default().push(value);
        }
        // Equal maps compare in one ordered pass; only a difference is looked for.
        if want != have {
            if let Some(f) = first_difference(&want, &have) {
                return Ok(Some(f));
            }
        }
    }
    Ok(None)
}

/// The first (by seq) record whose entries differ, named with the column.
fn first_difference(want: &Entries, have: &Entries) -> Option<VerifyFailure> {
    let keys = want.keys().chain(have.keys());
    let &(seq, col) = keys.filter(|k| want.get(k) != have.get(k)).min()?;
    let name = SEARCH_COLUMN_NAMES
        .get(col)
        .copied()
        .unwrap_or("an unknown column");
    let quote = |v: &[String]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(" and ")
    };
    let reason = match (want.get(&(seq, col)), have.get(&(seq, col))) {
        (Some(w), None) => format!(
            "record {seq} is missing from the search index ({name} {}): search and reports would not find it",
            quote(w)
        ),
        (None, Some(h)) => format!(
            "record {seq}: the search index says {name} {} but the record has none: the search index was altered",
            quote(h)
        ),
        (Some(w), Some(h)) => format!(
            "record {seq}: the search index says {name} {} but the record says {}: the search index was altered (search and reports read it)",
            quote(h),
            quote(w)
        ),
        (None, None) => return None,
    };
    Some(VerifyFailure { seq, reason })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::chain::{audit_record, AuditEntry};
    use crate::segment_index::keys_of;

    #[test]
    fn the_members_read_are_the_keys_the_index_holds() {
        let full = AuditEntry {
            time: "2026-12-05T07:00:00.000001Z".into(),
            operator: Some("clerk \"七\"\n".into()),
            subject: Some("440304197204188910".into()),
            case_id: Some("SB-2026-000001".into()),
            detail: Some(serde_json::json!({"subject": "not this one"})),
            ..AuditEntry::default()
        };
        for e in [full, AuditEntry::default()] {
            let record = String::from_utf8(audit_record(3, "00", &e).unwrap()).unwrap();
            let read = serde_json::from_str::<IndexedMembers>(&record).unwrap();
            assert_eq!(read.values(), keys_of(&e), "{record}");
        }
    }
}
