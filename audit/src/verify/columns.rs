//! A stored row's search columns against its record. The columns are copies outside
//! the hash, and search, the citizen's report and the anomaly report find records
//! through them: a column that says something else hides a record from them. So each
//! must hold exactly what [`search_columns`] writes for the record.
//!
//! The canonical check has already found the members (their spans in the record), so
//! the usual record costs eight short comparisons and no parse. A record off that path
//! (an escaped string, a member of another type, no `time` or `decision`) is parsed as
//! the writer's [`AuditEntry`] instead, so that both paths expect the same values.

use super::canonical::{Head, Member};
use super::failure::VerifyFailure;
use crate::batch::{search_columns, SEARCH_COLUMN_NAMES};
use crate::chain::AuditEntry;

/// A search column as a row holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored<'a> {
    /// SQL NULL.
    Null,
    /// Text, as bytes.
    Text(&'a [u8]),
    /// A value of another type, by its type's name. PostgreSQL columns are text or
    /// NULL; the checker still names anything else rather than assume.
    #[allow(dead_code)]
    Other(&'static str),
}

/// A row's search columns, in the order of [`SEARCH_COLUMN_NAMES`].
pub(crate) type Columns<'a> = [Stored<'a>; 8];

const TIME: usize = 0;
const DECISION: usize = 7;

/// Check `stored` against the record `record` (whose canonical head is `head`).
pub(crate) fn check(
    seq: i64,
    record: &[u8],
    head: &Head<'_>,
    stored: &Columns<'_>,
) -> Result<(), VerifyFailure> {
    if let Some(want) = from_head(head) {
        return compare(seq, &want, stored);
    }
    let entry: AuditEntry = serde_json::from_slice(record).map_err(|e| VerifyFailure {
        seq,
        reason: format!(
            "record {seq} is not an audit record ({e}), so its search columns cannot be checked"
        ),
    })?;
    compare(
        seq,
        &search_columns(&entry).map(|c| c.map(str::as_bytes)),
        stored,
    )
}

/// The expected columns straight from the record's members, when every one is a
/// string without escapes (its spelling is its value) or absent/null where the entry
/// allows none; `None` sends the record to the full parse.
fn from_head<'a>(head: &Head<'a>) -> Option<[Option<&'a [u8]>; 8]> {
    let mut out = [None; 8];
    for (k, (m, o)) in head.columns.iter().zip(&mut out).enumerate() {
        *o = match *m {
            Member::Str(s) if !s.contains(&b'\\') => Some(s),
            Member::Absent | Member::Null if k != TIME && k != DECISION => None,
            _ => return None,
        };
    }
    // Anything else would not parse as a decision.
    matches!(out[DECISION], Some(b"allow" | b"deny" | b"error")).then_some(out)
}

fn compare(seq: i64, want: &[Option<&[u8]>; 8], stored: &Columns<'_>) -> Result<(), VerifyFailure> {
    for (k, (want, got)) in want.iter().zip(stored).enumerate() {
        let agree = match (want, got) {
            (Some(w), Stored::Text(t)) => w == t,
            (None, Stored::Null) => true,
            _ => false,
        };
        if !agree {
            return Err(mismatch(seq, k, *want, *got));
        }
    }
    Ok(())
}

fn mismatch(seq: i64, k: usize, want: Option<&[u8]>, got: Stored<'_>) -> VerifyFailure {
    let quote = |b: &[u8]| format!("{:?}", String::from_utf8_lossy(b));
    let got = match got {
        Stored::Null => "is NULL".to_owned(),
        Stored::Text(t) => format!("says {}", quote(t)),
        Stored::Other(ty) => format!("holds a {ty}"),
    };
    let want = match want {
        Some(w) => format!("says {}", quote(w)),
        None => "has none".to_owned(),
    };
    let name = SEARCH_COLUMN_NAMES.get(k).copied().unwrap_or("?");
    VerifyFailure {
        seq,
        reason: format!(
            "record {seq}: column {name} {got} but the record {want}: the search index was altered (search and reports read it)"
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::verify::canonical::Canonical;
    use crate::{seal_entry, Decision, GENESIS};

    fn entry() -> AuditEntry {
        AuditEntry {
            time: "2026-11-28T01:30:00.000000Z".into(),
            consumer: Some("urn:tongban:440300:hr".into()),
            operator: Some("clerk-001".into()),
            dataset: Some("household".into()),
            subject: Some("440304197204188910".into()),
            matter: None,
            case_id: Some("C-1".into()),
            decision: Decision::Allow,
            ..AuditEntry::default()
        }
    }

    /// Check the columns the writer would store for `e`, changed by `edit`.
    fn run(e: &AuditEntry, edit: impl FnOnce(&mut Columns<'_>)) -> Result<(), String> {
        let (record, _) = seal_entry(1, GENESIS, e).unwrap();
        let head = Canonical::default().check(record.as_bytes()).unwrap();
        let mut cols: Columns<'_> =
            search_columns(e).map(|c| c.map_or(Stored::Null, |s| Stored::Text(s.as_bytes())));
        edit(&mut cols);
        check(1, record.as_bytes(), &head, &cols).map_err(|f| f.reason)
    }

    #[test]
    fn what_the_writer_stores_agrees() {
        assert_eq!(run(&entry(), |_| {}), Ok(()));
        // Off the fast path: escapes and non-ASCII text, parsed in full.
        let mut e = entry();
        e.matter = Some("户籍 \"证明\"\n".into());
        e.operator = Some("\u{1}".into());
        assert_eq!(run(&e, |_| {}), Ok(()));
        assert_eq!(run(&AuditEntry::default(), |_| {}), Ok(()));
    }

    /// A tampering of the stored columns, and the column it must be named by.
    type Tamper = (fn(&mut Columns<'_>), &'static str);

    #[test]
    fn every_disagreement_names_the_column() {
        let cases: [Tamper; 6] = [
            (
                |c| c[4] = Stored::Text(b"110101194912310000"),
                "record 1: column subject says \"110101194912310000\" but the record says \"440304197204188910\"",
            ),
            (
                |c| c[2] = Stored::Null,
                "column operator is NULL but the record says \"clerk-001\"",
            ),
            (
                |c| c[5] = Stored::Text(b"x"),
                "column matter says \"x\" but the record has none",
            ),
            (|c| c[7] = Stored::Text(b"deny"), "column decision says \"deny\""),
            (|c| c[0] = Stored::Text(b"2026-11-28T01:30:00.000001Z"), "column time"),
            (|c| c[6] = Stored::Other("blob"), "column case_id holds a blob"),
        ];
        for (edit, want) in cases {
            let got = run(&entry(), edit).unwrap_err();
            assert!(got.contains(want), "{got}");
            // The same on the full parse.
            let mut e = entry();
            e.request_id = "\\".into();
            e.dataset = Some("é\t".into());
            let slow = run(&e, edit).unwrap_err();
            assert!(slow.contains(want), "{slow}");
        }
    }

    #[test]
    fn a_record_that_is_no_audit_entry_is_named() {
        let record = br#"{"decision":"maybe","prev_hash":"x","seq":1,"time":"t"}"#;
        let head = Canonical::default().check(record).unwrap();
        let cols = [Stored::Null; 8];
        let f = check(1, record, &head, &cols).unwrap_err();
        assert!(f.reason.contains("not an audit record"), "{f:?}");
    }
}
