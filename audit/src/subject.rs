//! A citizen's access report: who looked at records about this person, from which
//! department and system, which clerk, for which matter and case, when, and which
//! fields they received — refusals included, so attempts show too.

use serde::Serialize;

use super::chain::{Decision, StoredRecord};
use super::error::AuditError;
use super::search::{cst, Filter};
use super::store::AuditStore;

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
