//! A citizen's access report: who looked at records about this person, from which
//! department and system, which clerk, for which matter and case, when, and which
//! fields they received — refusals included, so attempts show too.

use std::collections::HashMap;

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::Serialize;

use super::chain::{Decision, StoredRecord};
use super::error::AuditError;
use super::search::{cst, Filter};
use super::store::AuditStore;
use super::usage::is_access;

/// One access to the subject's records.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Access {
    /// Audit sequence number (the evidence).
    pub seq: i64,
    /// When, China Standard Time.
    pub time: String,
    /// Department code of the asking system.
    pub department: String,
    /// The asking system (`urn:tongban:<department>:<system>`).
    pub system: String,
    /// The clerk.
    pub operator: Option<String>,
    /// Matter.
    pub matter: Option<String>,
    /// Case id.
    pub case_id: Option<String>,
    /// Dataset.
    pub dataset: Option<String>,
    /// Fields the caller received (empty when nothing was returned).
    pub fields: Vec<String>,
    /// allow / deny / error.
    pub decision: Decision,
    /// HTTP status.
    pub status: u16,
    /// The agreement under which it was shared.
    pub agreement: Option<String>,
}

/// The report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SubjectReport {
    /// The subject identifier.
    pub subject: String,
    /// When the report was made (China Standard Time).
    pub generated_at: String,
    /// Accesses that returned data.
    pub disclosed: usize,
    /// Every access, oldest first.
    pub accesses: Vec<Access>,
}

/// Build the report for `subject` within the time range of `range` (its other
/// members are ignored).
pub async fn subject_report(
    store: &AuditStore,
    subject: &str,
    range: &Filter,
) -> Result<SubjectReport, AuditError> {
    let filter = Filter {
        from: range.from.clone(),
        to: range.to.clone(),
        subject: Some(subject.to_owned()),
        ..Filter::default()
    };
    let mut accesses = Vec::new();
    let mut after = 0;
    loop {
        let rows = store.search(&filter, after, 5_000).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for r in rows {
            let rec: StoredRecord = serde_json::from_str(&r.record).map_err(|e| {
                AuditError::Store(format!("record {} is not an audit record: {e}", r.seq))
            })?;
            accesses.push(access(rec));
        }
    }
    Ok(SubjectReport {
        subject: subject.to_owned(),
        generated_at: chrono::Utc::now()
            .with_timezone(&cst())
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        disclosed: accesses.iter().filter(|a| !a.fields.is_empty()).count(),
        accesses,
    })
}

/// Accesses held back from the person they concern, and when the first of them will
/// be shown.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Withheld {
    /// How many.
    pub count: usize,
    /// The earliest day (China Standard Time, `YYYY-MM-DD`) on which one of them will
    /// be shown; null when none is withheld.
    pub earliest_disclosure: Option<String>,
}

/// One page of what a person may see of the accesses to their records.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CitizenPage {
    /// Accesses shown, oldest first, after the page's cursor.
    pub accesses: Vec<Access>,
    /// Accesses shown in all (every page).
    pub total: usize,
    /// Accesses withheld for now (every page).
    pub withheld: Withheld,
    /// The sequence number to ask the next page after; null on the last page.
    pub next_after: Option<i64>,
}

/// How accesses are disclosed to the person they concern: an access under a matter
/// with a delay of N days (an investigation, say) is shown from the start of the day
/// (CST) N days after the day of the access; every other access at once.
#[derive(Debug, Clone, Default)]
pub struct Disclosure {
    /// Matter → days its accesses are withheld.
    pub delays: HashMap<String, u32>,
    /// Today (CST): an access whose day of disclosure is later is withheld.
    pub today: Option<NaiveDate>,
}

impl Disclosure {
    /// The day (CST) on which an access at `time` under `matter` may be shown.
    pub fn disclosed_on(&self, time: &str, matter: Option<&str>) -> Option<NaiveDate> {
        let day = DateTime::parse_from_rfc3339(time)
            .ok()?
            .with_timezone(&cst())
            .date_naive();
        let delay = matter
            .and_then(|m| self.delays.get(m))
            .copied()
            .unwrap_or(0);
        day.checked_add_days(Days::new(u64::from(delay)))
    }

    fn today(&self) -> NaiveDate {
        self.today
            .unwrap_or_else(|| Utc::now().with_timezone(&cst()).date_naive())
    }
}

/// What the person `subject` may see of the accesses to their records: lookups and
/// bundle items naming them (refusals included, as attempts), read through the
/// subject search that `audit verify` vouches for. Requests that are not accesses —
/// a portal's own query of this list, a bundle's summary record — are left out.
/// Accesses `disclosure` withholds are counted, never listed; the page holds at most
/// `limit` accesses with seq above `after`.
pub async fn citizen_page(
    store: &AuditStore,
    subject: &str,
    disclosure: &Disclosure,
    after: i64,
    limit: usize,
) -> Result<CitizenPage, AuditError> {
    let filter = Filter {
        subject: Some(subject.to_owned()),
        ..Filter::default()
    };
    let today = disclosure.today();
    let mut page = CitizenPage {
        accesses: Vec::new(),
        total: 0,
        withheld: Withheld::default(),
        next_after: None,
    };
    let mut earliest: Option<NaiveDate> = None;
    let mut cursor = 0;
    loop {
        let rows = store.search(&filter, cursor, 5_000).await?;
        let Some(last) = rows.last() else { break };
        cursor = last.seq;
        for r in rows {
            let rec: StoredRecord = serde_json::from_str(&r.record).map_err(|e| {
                AuditError::Store(format!("record {} is not an audit record: {e}", r.seq))
            })?;
            let items = rec
                .entry
                .detail
                .as_ref()
                .is_some_and(|d| d.get("items").is_some());
            if !is_access(&rec.entry.path, items) {
                continue;
            }
            let on = disclosure.disclosed_on(&rec.entry.time, rec.entry.matter.as_deref());
            if let Some(on) = on.filter(|on| *on > today) {
                page.withheld.count += 1;
                earliest = Some(earliest.map_or(on, |e| e.min(on)));
                continue;
            }
            page.total += 1;
            if rec.seq <= after {
                continue;
            }
            if page.accesses.len() < limit {
                page.accesses.push(access(rec));
            } else if page.next_after.is_none() {
                page.next_after = page.accesses.last().map(|a| a.seq);
            }
        }
    }
    page.withheld.earliest_disclosure = earliest.map(|d| d.format("%Y-%m-%d").to_string());
    Ok(page)
}

fn access(r: StoredRecord) -> Access {
    let e = r.entry;
    let system = e.consumer.unwrap_or_default();
    let department = system
        .strip_prefix("urn:tongban:")
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_default()
        .to_owned();
    let time = chrono::DateTime::parse_from_rfc3339(&e.time)
        .map(|t| {
            t.with_timezone(&cst())
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .unwrap_or(e.time);
    Access {
        seq: r.seq,
        time,
        department,
        system,
        operator: e.operator,
        matter: e.matter,
        case_id: e.case_id,
        dataset: e.dataset,
        fields: e.fields,
        decision: e.decision,
        status: e.status,
        agreement: e.agreement,
    }
}

impl SubjectReport {
    /// The report as text for a letter or a screen.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "Access report for subject {}\nGenerated {} (China Standard Time)\n{} access(es), {} returned data\n",
            self.subject,
            self.generated_at,
            self.accesses.len(),
            self.disclosed
        );
        for a in &self.accesses {
            let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "\n{}  {}  {}\n  department {}, system {}, operator {}\n  matter {}, case {}, agreement {}\n  fields: {}\n  audit record #{}\n",
                a.time,
                dash(&a.dataset),
                match a.decision {
                    Decision::Allow if a.fields.is_empty() => format!("allowed, nothing returned (status {})", a.status),
                    Decision::Allow => "disclosed".to_owned(),
                    Decision::Deny => format!("refused (status {})", a.status),
                    Decision::Error => format!("failed (status {})", a.status),
                },
                a.department,
                a.system,
                dash(&a.operator),
                dash(&a.matter),
                dash(&a.case_id),
                dash(&a.agreement),
                if a.fields.is_empty() { "none".to_owned() } else { a.fields.join(", ") },
                a.seq,
            ));
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::AuditEntry;

    const PERSON: &str = "110101199003074573";

    use crate::chained_store::chained_store as store;

    fn lookup(day: u32, matter: &str, decision: Decision) -> AuditEntry {
        AuditEntry {
            time: format!("2026-12-{day:02}T02:00:00.000000Z"),
            consumer: Some("urn:tongban:sz-hrss:counter-01".into()),
            path: "/v1/lookup".into(),
            subject: Some(PERSON.into()),
            matter: Some(matter.into()),
            dataset: Some("population".into()),
            fields: if decision == Decision::Allow {
                vec!["name".into()]
            } else {
                Vec::new()
            },
            status: if decision == Decision::Allow {
                200
            } else {
                403
            },
            decision,
            ..AuditEntry::default()
        }
    }

    #[tokio::test]
    async fn delayed_matters_are_counted_until_their_day_and_shown_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut portal = lookup(5, "x", Decision::Allow);
        portal.path = "/citizen/v1/accesses".into();
        let mut summary = lookup(5, "x", Decision::Allow);
        summary.path = "/v1/bundle".into();
        summary.detail = Some(serde_json::json!({"bundle": "b", "items": []}));
        let entries = [
            lookup(1, "social-insurance-enrollment", Decision::Allow),
            lookup(2, "social-insurance-enrollment", Decision::Deny),
            lookup(3, "investigation", Decision::Allow),
            lookup(4, "investigation", Decision::Allow),
            portal,
            summary,
        ];
        let store = store(dir.path(), &entries).await;
        let on = |today: &str| Disclosure {
            delays: [("investigation".to_owned(), 30)].into(),
            today: Some(today.parse().unwrap()),
        };
        let page = citizen_page(&store, PERSON, &on("2026-12-10"), 0, 100)
            .await
            .unwrap();
        assert_eq!(page.total, 2, "{page:#?}");
        assert_eq!(
            page.accesses.iter().map(|a| a.decision).collect::<Vec<_>>(),
            [Decision::Allow, Decision::Deny],
            "the refusal is shown as an attempt"
        );
        assert_eq!(page.withheld.count, 2);
        assert_eq!(
            page.withheld.earliest_disclosure.as_deref(),
            Some("2027-01-02")
        );
        // On the day the first is due it is shown; the second still waits.
        let page = citizen_page(&store, PERSON, &on("2027-01-02"), 0, 100)
            .await
            .unwrap();
        assert_eq!((page.total, page.withheld.count), (3, 1));
        assert_eq!(
            page.withheld.earliest_disclosure.as_deref(),
            Some("2027-01-03")
        );
        // Pages.
        let first = citizen_page(&store, PERSON, &on("2027-02-01"), 0, 2)
            .await
            .unwrap();
        assert_eq!((first.total, first.accesses.len()), (4, 2));
        assert_eq!(first.withheld, Withheld::default());
        let next = first.next_after.unwrap();
        let second = citizen_page(&store, PERSON, &on("2027-02-01"), next, 2)
            .await
            .unwrap();
        assert_eq!(
            second.accesses.iter().map(|a| a.seq).collect::<Vec<_>>(),
            [3, 4]
        );
        assert_eq!(second.next_after, None);
    }
}
