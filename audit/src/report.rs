//! Anomaly rules over the access log, thresholds from `[audit.anomaly]`:
//!
//! - `operator-volume`: a clerk's lookups in one clock hour above the threshold;
//! - `outside-hours`: lookups outside the hours of service (China Standard Time);
//! - `case-fan-out`: many distinct subjects looked up under one case id;
//! - `denial-burst`: a system refused many times within a short window;
//! - `revoked-certificate`: requests made with a certificate that is revoked (at or
//!   after its revocation), or refused because it was.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use chrono::{DateTime, Timelike as _};
use serde::Serialize;

use super::chain::{Decision, StoredRecord};
use super::error::AuditError;
use super::search::{cst, Filter};
use super::store::AuditStore;

/// Thresholds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnomalyRules {
    /// Lookups by one operator in one hour above which it is reported.
    pub operator_lookups_per_hour: u64,
    /// Hours of service, minutes after midnight CST: `[start, end)`.
    pub service_hours: (u32, u32),
    /// Distinct subjects under one case id above which it is reported.
    pub subjects_per_case: usize,
    /// Denials of one system within the window at which it is reported.
    pub denials_burst: usize,
    /// The denial window, seconds.
    pub denials_window_secs: i64,
    /// Revoked certificate fingerprints and when they were revoked (RFC 3339; empty
    /// when unknown).
    pub revoked: HashMap<String, String>,
}

impl Default for AnomalyRules {
    fn default() -> Self {
        Self {
            operator_lookups_per_hour: 100,
            service_hours: (8 * 60, 18 * 60),
            subjects_per_case: 20,
            denials_burst: 10,
            denials_window_secs: 60,
            revoked: HashMap::new(),
        }
    }
}

/// One finding.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Anomaly {
    /// Rule name.
    pub rule: &'static str,
    /// Who: a system, `system / operator`, or a case id.
    pub who: String,
    /// How many records.
    pub count: usize,
    /// First and last time involved (UTC, as stored).
    pub first: String,
    /// Last time.
    pub last: String,
    /// Audit sequence numbers involved (the first 20).
    pub seqs: Vec<i64>,
    /// What was found, in words.
    pub detail: String,
}

#[derive(Default)]
struct Group {
    count: usize,
    first: String,
    last: String,
    seqs: Vec<i64>,
}

impl Group {
    fn add(&mut self, seq: i64, time: &str) {
        if self.count == 0 {
            self.first = time.to_owned();
        }
        self.count += 1;
        self.last = time.to_owned();
        if self.seqs.len() < 20 {
            self.seqs.push(seq);
        }
    }
}

#[derive(Default)]
struct Scan {
    per_hour: BTreeMap<(String, String, String), Group>,
    outside: BTreeMap<(String, String), Group>,
    cases: BTreeMap<String, (HashSet<String>, Group)>,
    denials: HashMap<String, VecDeque<(i64, i64, String)>>,
    bursts: BTreeMap<String, Group>,
    revoked: BTreeMap<String, Group>,
}

/// Run every rule over the records matching `range` (its time range and any other
/// filters), oldest first.
pub async fn anomalies(
    store: &AuditStore,
    range: &Filter,
    rules: &AnomalyRules,
) -> Result<Vec<Anomaly>, AuditError> {
    let mut scan = Scan::default();
    let mut after = 0;
    loop {
        let rows = store.search(range, after, 10_000).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for r in rows {
            match serde_json::from_str::<StoredRecord>(&r.record) {
                Ok(rec) => scan.add(&rec, rules),
                Err(e) => tracing::warn!(seq = r.seq, error = %e, "not an audit record"),
            }
        }
    }
    Ok(scan.finish(rules))
}

impl Scan {
    fn add(&mut self, r: &StoredRecord, rules: &AnomalyRules) {
        let e = &r.entry;
        let Ok(t) = DateTime::parse_from_rfc3339(&e.time) else {
            return;
        };
        let local = t.with_timezone(&cst());
        let system = e.consumer.clone().unwrap_or_default();
        let operator = e.operator.clone().unwrap_or_default();
        let lookup = e.path == "/v1/lookup";
        if lookup {
            let hour = local.format("%Y-%m-%d %H:00").to_string();
            self.per_hour
                .entry((system.clone(), operator.clone(), hour))
                .or_default()
                .add(r.seq, &e.time);
            let minute = local.hour() * 60 + local.minute();
            let (open, close) = rules.service_hours;
            if minute < open || minute >= close {
                self.outside
                    .entry((system.clone(), operator.clone()))
                    .or_default()
                    .add(r.seq, &e.time);
            }
        }
        if let (Some(case), Some(subject)) = (&e.case_id, &e.subject) {
            let (subjects, g) = self.cases.entry(case.clone()).or_default();
            subjects.insert(subject.clone());
            g.add(r.seq, &e.time);
        }
        if e.decision == Decision::Deny {
            let window = self.denials.entry(system.clone()).or_default();
            let now = t.timestamp();
            window.push_back((now, r.seq, e.time.clone()));
            while window
                .front()
                .is_some_and(|(t0, _, _)| now - t0 >= rules.denials_window_secs)
            {
                window.pop_front();
            }
            if window.len() >= rules.denials_burst {
                let g = self.bursts.entry(system.clone()).or_default();
                for (_, seq, time) in window.drain(..) {
                    g.add(seq, &time);
                }
            }
        }
        let fp = e.cert_fingerprint.as_deref().unwrap_or_default();
        let revoked_then = rules.revoked.get(fp).is_some_and(|at| {
            at.is_empty() || chrono::DateTime::parse_from_rfc3339(at).is_ok_and(|at| t >= at)
        });
        let refused_as_revoked = e.reason.as_deref().is_some_and(|r| r.contains("revoked"));
        if revoked_then || refused_as_revoked {
            self.revoked
                .entry(format!("{system} (certificate {fp})"))
                .or_default()
                .add(r.seq, &e.time);
        }
    }

    fn finish(self, rules: &AnomalyRules) -> Vec<Anomaly> {
        let mut out = Vec::new();
        let mut push = |rule, who: String, g: Group, detail: String| {
            out.push(Anomaly {
                rule,
                who,
                count: g.count,
                first: g.first,
                last: g.last,
                seqs: g.seqs,
                detail,
            });
        };
        for ((system, operator, hour), g) in self.per_hour {
            if g.count as u64 > rules.operator_lookups_per_hour {
                let d = format!(
                    "{} lookups in the hour from {hour} (threshold {})",
                    g.count, rules.operator_lookups_per_hour
                );
                push("operator-volume", format!("{system} / {operator}"), g, d);
            }
        }
        for ((system, operator), g) in self.outside {
            let (o, c) = rules.service_hours;
            let d = format!(
                "{} lookups outside the hours of service {:02}:{:02}-{:02}:{:02} CST",
                g.count,
                o / 60,
                o % 60,
                c / 60,
                c % 60
            );
            push("outside-hours", format!("{system} / {operator}"), g, d);
        }
        for (case, (subjects, g)) in self.cases {
            if subjects.len() > rules.subjects_per_case {
                let d = format!(
                    "{} distinct subjects under one case id (threshold {})",
                    subjects.len(),
                    rules.subjects_per_case
                );
                push("case-fan-out", case, g, d);
            }
        }
        for (system, g) in self.bursts {
            let d = format!(
                "{} denials in bursts of at least {} within {} s",
                g.count, rules.denials_burst, rules.denials_window_secs
            );
            push("denial-burst", system, g, d);
        }
        for (who, g) in self.revoked {
            let d = format!("{} requests with a revoked certificate", g.count);
            push("revoked-certificate", who, g, d);
        }
        out
    }
}

/// Revoked fingerprints from a certificate index (`certificates[]` with
/// `fingerprint` and `revoked.at`), as `tongban certs` keeps it.
pub fn revoked_from_index(index: &serde_json::Value) -> HashMap<String, String> {
    index["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| !c["revoked"].is_null())
        .filter_map(|c| {
            Some((
                c["fingerprint"].as_str()?.to_owned(),
                c["revoked"]["at"].as_str().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::AuditEntry;

    fn rec(seq: i64, time: &str, f: impl FnOnce(&mut AuditEntry)) -> StoredRecord {
        let mut entry = AuditEntry {
            time: time.into(),
            consumer: Some("urn:tongban:sz-hrss:counter-01".into()),
            operator: Some("clerk-1".into()),
            path: "/v1/lookup".into(),
            decision: Decision::Allow,
            ..AuditEntry::default()
        };
        f(&mut entry);
        StoredRecord {
            seq,
            prev_hash: String::new(),
            entry,
        }
    }

    #[test]
    fn each_rule_fires_above_its_threshold_only() {
        let rules = AnomalyRules {
            operator_lookups_per_hour: 3,
            subjects_per_case: 2,
            denials_burst: 3,
            denials_window_secs: 60,
            revoked: [("fp-bad".to_owned(), "2026-03-02T00:00:00Z".to_owned())].into(),
            ..AnomalyRules::default()
        };
        let mut scan = Scan::default();
        // 10:00 CST = 02:00 UTC: inside hours; four lookups by clerk-1, three subjects in case C1.
        for (i, s) in ["A", "B", "C", "A"].iter().enumerate() {
            scan.add(
                &rec(i as i64 + 1, &format!("2026-03-02T02:0{i}:00Z"), |e| {
                    e.case_id = Some("C1".into());
                    e.subject = Some((*s).into());
                }),
                &rules,
            );
        }
        // 23:30 CST: outside hours.
        scan.add(&rec(5, "2026-03-02T15:30:00Z", |_| {}), &rules);
        // Three denials within a minute, then one an hour later.
        for (i, t) in ["03:00:00", "03:00:20", "03:00:40", "04:00:00"]
            .iter()
            .enumerate()
        {
            scan.add(
                &rec(6 + i as i64, &format!("2026-03-02T{t}Z"), |e| {
                    e.decision = Decision::Deny;
                    e.consumer = Some("urn:tongban:sz-civil:counter-01".into());
                }),
                &rules,
            );
        }
        // A revoked certificate, before and after revocation.
        scan.add(
            &rec(10, "2026-03-01T03:00:00Z", |e| {
                e.cert_fingerprint = Some("fp-bad".into())
            }),
            &rules,
        );
        scan.add(
            &rec(11, "2026-03-02T03:00:00Z", |e| {
                e.cert_fingerprint = Some("fp-bad".into())
            }),
            &rules,
        );
        let found = scan.finish(&rules);
        let rules_found: Vec<&str> = found.iter().map(|a| a.rule).collect();
        assert!(rules_found.contains(&"operator-volume"), "{found:#?}");
        assert!(rules_found.contains(&"case-fan-out"), "{found:#?}");
        let outside: Vec<_> = found.iter().filter(|a| a.rule == "outside-hours").collect();
        assert_eq!(outside.len(), 1);
        assert_eq!(outside[0].seqs, vec![5]);
        let bursts: Vec<_> = found.iter().filter(|a| a.rule == "denial-burst").collect();
        assert_eq!(bursts.len(), 1);
        assert_eq!(bursts[0].seqs, vec![6, 7, 8]);
        let revoked: Vec<_> = found
            .iter()
            .filter(|a| a.rule == "revoked-certificate")
            .collect();
        assert_eq!(revoked[0].seqs, vec![11]);
    }
}
