//! Search filters shared by `tongban audit search` and `GET /audit/v1/records`.
//!
//! Times are RFC 3339 (any offset) or a plain date `YYYY-MM-DD`, read in China
//! Standard Time (UTC+8) — the service's own day. `from` is inclusive, `to`
//! exclusive; a plain date as `to` means the end of that day.

use chrono::{DateTime, NaiveDate, Offset as _, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use super::chain::Decision;

/// China Standard Time, the offset the service's days and hours are read in.
pub fn cst() -> chrono::FixedOffset {
    // 8 hours is always a valid offset.
    chrono::FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| Utc.fix())
}

/// Which records to return; every set member must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Filter {
    /// Received at or after (UTC, RFC 3339, microseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Received before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Consumer identity (`urn:tongban:…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    /// Operator (clerk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Dataset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// Subject identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Matter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matter: Option<String>,
    /// Case id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_id: Option<String>,
    /// Decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
}

/// A searchable column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchColumn {
    /// `time`
    Time,
    /// `consumer`
    Consumer,
    /// `operator`
    Operator,
    /// `dataset`
    Dataset,
    /// `subject`
    Subject,
    /// `matter`
    Matter,
    /// `case_id`
    CaseId,
    /// `decision`
    Decision,
}

impl SearchColumn {
    /// The record member (and PostgreSQL column) it reads.
    pub fn name(self) -> &'static str {
        match self {
            SearchColumn::Time => "time",
            SearchColumn::Consumer => "consumer",
            SearchColumn::Operator => "operator",
            SearchColumn::Dataset => "dataset",
            SearchColumn::Subject => "subject",
            SearchColumn::Matter => "matter",
            SearchColumn::CaseId => "case_id",
            SearchColumn::Decision => "decision",
        }
    }
}

impl Filter {
    /// Set a filter by its name (`from`, `to`, `consumer`, …), as the CLI and the API
    /// take them. Errors name the parameter.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let v = Some(value.to_owned());
        match name {
            "from" => self.from = Some(parse_time(value, false).map_err(|e| format!("from: {e}"))?),
            "to" => self.to = Some(parse_time(value, true).map_err(|e| format!("to: {e}"))?),
            "consumer" => self.consumer = v,
            "operator" => self.operator = v,
            "dataset" => self.dataset = v,
            "subject" => self.subject = v,
            "matter" => self.matter = v,
            "case_id" => self.case_id = v,
            "decision" => {
                self.decision = Some(value.parse().map_err(|e| format!("decision: {e}"))?)
            }
            other => return Err(format!("unknown filter {other:?}")),
        }
        Ok(())
    }

    /// The filter's SQL conditions: column, operator, value.
    pub fn conditions(&self) -> Vec<(SearchColumn, &'static str, String)> {
        let mut out = Vec::new();
        if let Some(v) = &self.from {
            out.push((SearchColumn::Time, ">=", v.clone()));
        }
        if let Some(v) = &self.to {
            out.push((SearchColumn::Time, "<", v.clone()));
        }
        let eq = [
            (SearchColumn::Consumer, &self.consumer),
            (SearchColumn::Operator, &self.operator),
            (SearchColumn::Dataset, &self.dataset),
            (SearchColumn::Subject, &self.subject),
            (SearchColumn::Matter, &self.matter),
            (SearchColumn::CaseId, &self.case_id),
        ];
        for (c, v) in eq {
            if let Some(v) = v {
                out.push((c, "=", v.clone()));
            }
        }
        if let Some(d) = self.decision {
            out.push((SearchColumn::Decision, "=", d.as_str().to_owned()));
        }
        out
    }

    /// Whether a record's canonical JSON matches (the check behind the index).
    pub fn matches_record(&self, record: &str) -> bool {
        let Ok(r) = serde_json::from_str::<Value>(record) else {
            return false;
        };
        self.matches(&r)
    }

    /// Whether a parsed record matches.
    pub fn matches(&self, r: &Value) -> bool {
        let time = r["time"].as_str().unwrap_or_default();
        if self.from.as_deref().is_some_and(|f| time < f)
            || self.to.as_deref().is_some_and(|t| time >= t)
        {
            return false;
        }
        let eq = [
            ("consumer", &self.consumer),
            ("operator", &self.operator),
            ("dataset", &self.dataset),
            ("subject", &self.subject),
            ("matter", &self.matter),
            ("case_id", &self.case_id),
        ];
        eq.iter()
            .all(|(k, v)| v.as_deref().is_none_or(|v| r[*k].as_str() == Some(v)))
            && self
                .decision
                .is_none_or(|d| r["decision"].as_str() == Some(d.as_str()))
    }
}

/// Normalize a time given by a user to the stored form (UTC, microseconds, `Z`).
pub fn parse_time(s: &str, end_of_day: bool) -> Result<String, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t
            .with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Micros, true));
    }
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        format!(
            "{s:?} is neither an RFC 3339 time (2026-11-28T09:30:00+08:00) nor a date (2026-11-28)"
        )
    })?;
    let date = if end_of_day {
        date.succ_opt().unwrap_or(date)
    } else {
        date
    };
    let midnight = date
        .and_hms_opt(0, 0, 0)
        .and_then(|t| t.and_local_timezone(cst()).single())
        .ok_or_else(|| format!("{s:?} is not a representable date"))?;
    Ok(midnight
        .with_timezone(&Utc)
        .to_rfc3339_opts(SecondsFormat::Micros, true))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_china_standard_time_days() {
        assert_eq!(
            parse_time("2026-11-28", false).unwrap(),
            "2026-11-27T16:00:00.000000Z"
        );
        assert_eq!(
            parse_time("2026-11-28", true).unwrap(),
            "2026-11-28T16:00:00.000000Z"
        );
        assert_eq!(
            parse_time("2026-11-28T09:30:00+08:00", false).unwrap(),
            "2026-11-28T01:30:00.000000Z"
        );
        assert!(parse_time("yesterday", false)
            .unwrap_err()
            .contains("RFC 3339"));
    }

    #[test]
    fn filter_matches_records() {
        let mut f = Filter::default();
        f.set("subject", "X1").unwrap();
        f.set("decision", "deny").unwrap();
        assert!(f
            .set("decision", "maybe")
            .unwrap_err()
            .starts_with("decision:"));
        assert!(f.set("colour", "red").is_err());
        let r = serde_json::json!({"subject": "X1", "decision": "deny", "time": "2026-01-01T00:00:00.000000Z"});
        assert!(f.matches(&r));
        f.set("from", "2026-02-01").unwrap();
        assert!(!f.matches(&r));
    }
}
