//! Usage and evaluation figures, computed from the audit records themselves so that
//! the figures and the log agree: per agreement, consumer, provider and matter, by
//! day (China Standard Time).
//!
//! ```text
//!  store.search(range) ─ pages of 10,000 ─▶ access? ─▶ (dimension, key, day) ─▶ Figures
//!                                              └─ scope: every record, or one department's
//! ```
//!
//! An *access* is a record of `POST /v1/lookup` or of one bundle item (a
//! `POST /v1/bundle` record without the bundle's `items` summary): what a counter
//! asked of a department's records. Each record is read once and dropped; memory
//! holds only the figures (per group and day, the latency histogram is at most a few
//! hundred buckets), so a report over millions of records runs in constant memory.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate};
use serde::{Deserialize, Serialize};

use super::chain::Decision;
use super::error::AuditError;
use super::search::{cst, Filter};
use super::store::AuditStore;

/// The lookup path.
pub const LOOKUP_PATH: &str = "/v1/lookup";
/// The bundle path.
pub const BUNDLE_PATH: &str = "/v1/bundle";

/// Records read per page of the scan.
const PAGE: usize = 10_000;

/// Whether a record is an access to a subject's records: a lookup, or one item of a
/// bundle (not the bundle request's own summary record, whose `detail` lists the
/// items, each recorded on its own).
pub fn is_access(path: &str, detail_has_items: bool) -> bool {
    path == LOOKUP_PATH || (path == BUNDLE_PATH && !detail_has_items)
}

/// Whose records a report covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every access (auditors, the operator's CLI).
    All,
    /// Accesses by this department's systems and accesses to the datasets it
    /// provides (a dept-admin).
    Department(String),
}

/// What a report is asked for.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    /// The time range (`from`, `to`); other members of the filter are ignored.
    pub range: Filter,
    /// Whose accesses.
    pub scope: Scope,
    /// Dataset → the department that provides it (from the configuration: records
    /// name the dataset, not its provider).
    pub providers: HashMap<String, String>,
}

/// The figures of one group on one day, or in total.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Accesses (lookups and bundle items), whatever their outcome.
    pub lookups: u64,
    /// Accesses an agreement allowed.
    pub allowed: u64,
    /// Accesses refused by policy (attempts).
    pub refused: u64,
    /// Accesses that failed before or without a decision (bad request, …).
    pub failed: u64,
    /// Documents not asked of citizens: allowed accesses answered with a record
    /// (status 200), lookups and bundle items alike.
    pub documents_not_asked: u64,
    /// Refusals by reason code (`no-agreement`, `field-not-allowed`, …).
    pub refusals: BTreeMap<String, u64>,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Calls to the owning department's source (records with `source_us`).
    pub source_calls: u64,
    /// Of those, the ones the source answered (a record or "no such record"):
    /// status 200 or 404.
    pub source_ok: u64,
    /// `source_ok / source_calls`; null without source calls.
    pub source_availability: Option<f64>,
    /// Median source latency (µs, within 3 %); null without source calls.
    pub source_p50_us: Option<u64>,
    /// 99th percentile source latency (µs, within 3 %).
    pub source_p99_us: Option<u64>,
    #[serde(skip)]
    latency: Histogram,
}

/// One group (an agreement, a consumer, a provider or a matter).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// The agreement id, consumer identity, provider department or matter code.
    pub key: String,
    /// Over the whole range.
    pub total: Figures,
    /// One entry per day of the report's `days`, in that order (zero where none).
    pub days: Vec<Figures>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageReport {
    /// Range start as asked (UTC), if any.
    pub from: Option<String>,
    /// Range end as asked (UTC, exclusive), if any.
    pub to: Option<String>,
    /// Whose accesses.
    pub scope: Scope,
    /// Audit records read (all kinds, in range).
    pub records_read: u64,
    /// Every day (CST, `YYYY-MM-DD`) from the first access to the last, gaps included.
    pub days: Vec<String>,
    /// Every access in scope.
    pub total: Figures,
    /// By agreement (accesses naming one).
    pub agreements: Vec<Series>,
    /// By consumer identity.
    pub consumers: Vec<Series>,
    /// By providing department (accesses to a dataset the configuration knows).
    pub providers: Vec<Series>,
    /// By matter.
    pub matters: Vec<Series>,
}

/// The dimensions, in the order the report lists them.
pub const DIMENSIONS: [&str; 4] = ["agreements", "consumers", "providers", "matters"];

/// The members of a record the report reads, borrowed where the text allows.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow)]
    path: Cow<'a, str>,
    #[serde(borrow, default)]
    consumer: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    agreement: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    matter: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    dataset: Option<Cow<'a, str>>,
    #[serde(default)]
    decision: Decision,
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
    #[serde(default)]
    status: u16,
    #[serde(default)]
    source_us: Option<u64>,
    #[serde(default)]
    detail: Option<DetailProbe>,
}

#[derive(Deserialize, Default)]
struct DetailProbe {
    #[serde(default)]
    items: Option<serde::de::IgnoredAny>,
}

/// The report over `store` for `query`, read a page at a time.
pub async fn usage_report(
    store: &AuditStore,
    query: &UsageQuery,
) -> Result<UsageReport, AuditError> {
    let range = Filter {
        from: query.range.from.clone(),
        to: query.range.to.clone(),
        ..Filter::default()
    };
    let mut tally = Tally::new(query);
    let mut after = 0;
    loop {
        let rows = store.search(&range, after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for r in &rows {
            tally.add(&r.record).map_err(|e| {
                AuditError::Store(format!("record {} is not an audit record: {e}", r.seq))
            })?;
        }
    }
    Ok(tally.finish())
}

/// The figures as records arrive; [`usage_report`] feeds it from the store.
pub struct Tally<'q> {
    query: &'q UsageQuery,
    records_read: u64,
    days: BTreeSet<NaiveDate>,
    total: Figures,
    /// (dimension index, key, day) → figures.
    groups: BTreeMap<(usize, String, NaiveDate), Figures>,
}

impl<'q> Tally<'q> {
    /// An empty tally for `query`.
    pub fn new(query: &'q UsageQuery) -> Self {
        Self {
            query,
            records_read: 0,
            days: BTreeSet::new(),
            total: Figures::default(),
            groups: BTreeMap::new(),
        }
    }

    /// Count one record (its canonical JSON).
    pub fn add(&mut self, record: &str) -> Result<(), serde_json::Error> {
        self.records_read += 1;
        let r: Probe<'_> = serde_json::from_str(record)?;
        let items = r.detail.as_ref().is_some_and(|d| d.items.is_some());
        if !is_access(&r.path, items) {
            return Ok(());
        }
        let provider = r
            .dataset
            .as_deref()
            .and_then(|d| self.query.providers.get(d))
            .map(String::as_str);
        let consumer = r.consumer.as_deref().unwrap_or("-");
        if let Scope::Department(dept) = &self.query.scope {
            let own_use = department_of(consumer) == Some(dept.as_str());
            if !own_use && provider != Some(dept.as_str()) {
                return Ok(());
            }
        }
        let Ok(t) = DateTime::parse_from_rfc3339(&r.time) else {
            return Ok(());
        };
        let day = t.with_timezone(&cst()).date_naive();
        self.days.insert(day);
        self.total.add(&r);
        let keys = [
            r.agreement.as_deref(),
            Some(consumer),
            provider,
            r.matter.as_deref(),
        ];
        for (dim, key) in keys.into_iter().enumerate() {
            if let Some(key) = key {
                self.groups
                    .entry((dim, key.to_owned(), day))
                    .or_default()
                    .add(&r);
            }
        }
        Ok(())
    }

    /// The report.
    pub fn finish(self) -> UsageReport {
        let days: Vec<NaiveDate> = match (self.days.first(), self.days.last()) {
            (Some(first), Some(last)) => first.iter_days().take_while(|d| d <= last).collect(),
            _ => Vec::new(),
        };
        let index: HashMap<NaiveDate, usize> =
            days.iter().enumerate().map(|(i, d)| (*d, i)).collect();
        let mut dims: [Vec<Series>; 4] = Default::default();
        for ((dim, key, day), figures) in self.groups {
            let list = &mut dims[dim];
            if list.last().is_none_or(|s| s.key != key) {
                list.push(Series {
                    key,
                    total: Figures::default(),
                    days: vec![Figures::default(); days.len()],
                });
            }
            if let (Some(series), Some(&i)) = (list.last_mut(), index.get(&day)) {
                series.total.merge(&figures);
                series.days[i] = figures;
            }
        }
        let [agreements, consumers, providers, matters] = dims.map(|list| {
            list.into_iter()
                .map(|mut s| {
                    s.total.conclude();
                    s.days.iter_mut().for_each(Figures::conclude);
                    s
                })
                .collect()
        });
        let mut total = self.total;
        total.conclude();
        UsageReport {
            from: self.query.range.from.clone(),
            to: self.query.range.to.clone(),
            scope: self.query.scope.clone(),
            records_read: self.records_read,
            days: days
                .iter()
                .map(|d| d.format("%Y-%m-%d").to_string())
                .collect(),
            total,
            agreements,
            consumers,
            providers,
            matters,
        }
    }
}

/// The department of `urn:tongban:<department>:<system>`.
pub fn department_of(identity: &str) -> Option<&str> {
    identity.strip_prefix("urn:tongban:")?.split(':').next()
}

impl Figures {
    fn add(&mut self, r: &Probe<'_>) {
        self.lookups += 1;
        match r.decision {
            Decision::Allow => {
                self.allowed += 1;
                if r.status == 200 {
                    self.documents_not_asked += 1;
                }
            }
            Decision::Deny => {
                self.refused += 1;
                let code = r
                    .reason
                    .as_deref()
                    .and_then(|why| why.split(':').next())
                    .unwrap_or("unknown");
                *self.refusals.entry(code.to_owned()).or_default() += 1;
            }
            Decision::Error => self.failed += 1,
        }
        *self.statuses.entry(r.status).or_default() += 1;
        if let Some(us) = r.source_us {
            self.source_calls += 1;
            if matches!(r.status, 200 | 404) {
                self.source_ok += 1;
            }
            self.latency.record(us);
        }
    }

    fn merge(&mut self, o: &Figures) {
        self.lookups += o.lookups;
        self.allowed += o.allowed;
        self.refused += o.refused;
        self.failed += o.failed;
        self.documents_not_asked += o.documents_not_asked;
        for (k, v) in &o.refusals {
            *self.refusals.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        self.source_calls += o.source_calls;
        self.source_ok += o.source_ok;
        self.latency.merge(&o.latency);
    }

    /// Fill in the derived figures.
    fn conclude(&mut self) {
        self.source_availability =
            (self.source_calls > 0).then(|| self.source_ok as f64 / self.source_calls as f64);
        self.source_p50_us = self.latency.quantile(0.50);
        self.source_p99_us = self.latency.quantile(0.99);
    }
}

/// A log-linear histogram of microseconds: exact below 64, then 32 buckets per
/// power of two, so a quantile is within 1/32 (about 3 %) of the true value; sparse,
/// so a group with few calls holds few buckets.
#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    buckets: BTreeMap<u32, u64>,
    count: u64,
}

impl Histogram {
    const SUB: u32 = 32;

    fn bucket(v: u64) -> u32 {
        if v < 64 {
            return v as u32;
        }
        let exp = 63 - v.leading_zeros(); // ≥ 6
        let sub = ((v >> (exp - 5)) as u32) & (Self::SUB - 1);
        64 + (exp - 6) * Self::SUB + sub
    }

    /// The middle of bucket `b`.
    fn value(b: u32) -> u64 {
        if b < 64 {
            return u64::from(b);
        }
        let exp = (b - 64) / Self::SUB + 6;
        let sub = u64::from((b - 64) % Self::SUB);
        let width = 1u64 << (exp - 5);
        (1u64 << exp) + sub * width + width / 2
    }

    fn record(&mut self, v: u64) {
        *self.buckets.entry(Self::bucket(v)).or_default() += 1;
        self.count += 1;
    }

    fn merge(&mut self, o: &Histogram) {
        for (b, n) in &o.buckets {
            *self.buckets.entry(*b).or_default() += n;
        }
        self.count += o.count;
    }

    /// The value at quantile `q` (nearest rank).
    fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (b, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return Some(Self::value(*b));
            }
        }
        None
    }
}

impl UsageReport {
    /// One line per group and day with any access, as CSV (RFC 4180): dimension, key,
    /// day, then the figures; refusals and statuses as `code=n` lists joined by `;`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "dimension,key,day,lookups,allowed,refused,failed,documents_not_asked,source_calls,source_ok,source_availability,source_p50_us,source_p99_us,refusals,statuses\n",
        );
        let mut row = |dim: &str, key: &str, day: &str, f: &Figures| {
            let cells = [
                dim.to_owned(),
                key.to_owned(),
                day.to_owned(),
                f.lookups.to_string(),
                f.allowed.to_string(),
                f.refused.to_string(),
                f.failed.to_string(),
                f.documents_not_asked.to_string(),
                f.source_calls.to_string(),
                f.source_ok.to_string(),
                f.source_availability
                    .map(|a| format!("{a:.4}"))
                    .unwrap_or_default(),
                f.source_p50_us.map(|v| v.to_string()).unwrap_or_default(),
                f.source_p99_us.map(|v| v.to_string()).unwrap_or_default(),
                pairs(&f.refusals),
                pairs(&f.statuses),
            ];
            let cells: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
            out.push_str(&cells.join(","));
            out.push('\n');
        };
        row("total", "", "", &self.total);
        for (name, list) in self.dimensions() {
            for s in list {
                row(name, &s.key, "", &s.total);
                for (day, f) in self.days.iter().zip(&s.days) {
                    if f.lookups > 0 {
                        row(name, &s.key, day, f);
                    }
                }
            }
        }
        out
    }

    /// The report as text: totals per group over the range, one table per dimension.
    pub fn to_text(&self) -> String {
        let range = match (&self.from, &self.to) {
            (None, None) => "the whole log".to_owned(),
            (f, t) => format!(
                "{} to {}",
                f.as_deref().unwrap_or("the start"),
                t.as_deref().unwrap_or("now")
            ),
        };
        let mut out = format!(
            "Usage report, {range} ({} day(s), {} audit record(s) read)\n",
            self.days.len(),
            self.records_read
        );
        let line = |key: &str, f: &Figures| {
            format!(
                "  {key:<40} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8}\n",
                f.lookups,
                f.allowed,
                f.refused,
                f.failed,
                f.documents_not_asked,
                f.source_availability
                    .map(|a| format!("{:.1}%", a * 100.0))
                    .unwrap_or_else(|| "-".into()),
                f.source_p50_us
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
                f.source_p99_us
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
            )
        };
        let head = format!(
            "  {:<40} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8}\n",
            "",
            "lookups",
            "allowed",
            "refused",
            "failed",
            "not asked",
            "source",
            "p50 µs",
            "p99 µs"
        );
        out.push_str(&format!("\nTotal\n{head}"));
        out.push_str(&line("all", &self.total));
        for (name, list) in self.dimensions() {
            out.push_str(&format!("\nBy {}\n{head}", name.trim_end_matches('s')));
            for s in list {
                out.push_str(&line(&s.key, &s.total));
                if !s.total.refusals.is_empty() {
                    out.push_str(&format!("    refusals: {}\n", pairs(&s.total.refusals)));
                }
            }
        }
        out
    }

    fn dimensions(&self) -> [(&'static str, &Vec<Series>); 4] {
        [
            (DIMENSIONS[0], &self.agreements),
            (DIMENSIONS[1], &self.consumers),
            (DIMENSIONS[2], &self.providers),
            (DIMENSIONS[3], &self.matters),
        ]
    }
}

fn pairs<K: std::fmt::Display>(m: &BTreeMap<K, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// A CSV cell, quoted when it holds a comma, quote or line break.
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn query(scope: Scope) -> UsageQuery {
        UsageQuery {
            range: Filter::default(),
            scope,
            providers: [("population".to_owned(), "sz-psb".to_owned())].into(),
        }
    }

    fn record(time: &str, f: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut r = json!({
            "time": time, "path": "/v1/lookup", "consumer": "urn:tongban:sz-hrss:counter-01",
            "agreement": "hrss-population", "matter": "social-insurance-enrollment",
            "dataset": "population", "decision": "allow", "reason": null, "status": 200,
            "source_us": 1000, "detail": null, "fields": ["name"],
        });
        f(&mut r);
        r.to_string()
    }

    #[test]
    fn accesses_are_counted_by_group_and_day() {
        let q = query(Scope::All);
        let mut t = Tally::new(&q);
        // Day 1 (CST): an allowed lookup, a refusal, a source timeout.
        t.add(&record("2026-12-01T01:00:00Z", |_| {})).unwrap();
        t.add(&record("2026-12-01T02:00:00Z", |r| {
            r["decision"] = json!("deny");
            r["status"] = json!(403);
            r["reason"] = json!("field-not-allowed: sex");
            r["source_us"] = json!(null);
        }))
        .unwrap();
        t.add(&record("2026-12-01T03:00:00Z", |r| {
            r["status"] = json!(504);
            r["source_us"] = json!(2_000_000);
        }))
        .unwrap();
        // Day 3: a bundle item, and the bundle's summary (not an access).
        t.add(&record("2026-12-02T17:00:00Z", |r| {
            r["path"] = json!("/v1/bundle");
            r["detail"] = json!({"bundle": "newborn", "item": "mother"});
        }))
        .unwrap();
        t.add(&record("2026-12-02T17:00:00Z", |r| {
            r["path"] = json!("/v1/bundle");
            r["dataset"] = json!(null);
            r["detail"] = json!({"bundle": "newborn", "items": []});
        }))
        .unwrap();
        // Not an access at all.
        t.add(&record("2026-12-02T17:00:00Z", |r| {
            r["path"] = json!("/audit/v1/records")
        }))
        .unwrap();
        let rep = t.finish();
        assert_eq!(rep.records_read, 6);
        assert_eq!(rep.days, ["2026-12-01", "2026-12-02", "2026-12-03"]);
        let tot = &rep.total;
        assert_eq!((tot.lookups, tot.allowed, tot.refused), (4, 3, 1));
        assert_eq!(tot.documents_not_asked, 2);
        assert_eq!(tot.refusals, [("field-not-allowed".to_owned(), 1)].into());
        assert_eq!(tot.statuses, [(200, 2), (403, 1), (504, 1)].into());
        assert_eq!((tot.source_calls, tot.source_ok), (3, 2));
        assert_eq!(tot.source_availability, Some(2.0 / 3.0));
        let [p] = &rep.providers[..] else {
            panic!("{:?}", rep.providers)
        };
        assert_eq!(p.key, "sz-psb");
        assert_eq!(p.days.len(), 3);
        assert_eq!(
            p.days.iter().map(|f| f.lookups).collect::<Vec<_>>(),
            [3, 0, 1],
            "dense per day, zero on the gap"
        );
        assert_eq!(p.total, *tot);
        // A record without source time is refused, so the agreement's day 1 shows it.
        assert_eq!(rep.agreements[0].days[0].refused, 1);
        let csv = rep.to_csv();
        assert!(
            csv.contains("providers,sz-psb,2026-12-01,3,2,1,0,1,2,1,0.5000,"),
            "{csv}"
        );
        assert!(csv.contains("\"field-not-allowed=1\"") || csv.contains(",field-not-allowed=1,"));
        assert!(rep.to_text().contains("sz-psb"));
    }

    #[test]
    fn a_department_sees_its_own_use_and_the_use_of_what_it_provides() {
        let recs = [
            record("2026-12-01T01:00:00Z", |_| {}),
            record("2026-12-01T01:00:00Z", |r| {
                r["consumer"] = json!("urn:tongban:sz-civil:counter-01");
                r["dataset"] = json!("legal_person");
            }),
        ];
        let count = |scope: Scope| {
            let q = query(scope);
            let mut t = Tally::new(&q);
            for r in &recs {
                t.add(r).unwrap();
            }
            t.finish().total.lookups
        };
        assert_eq!(count(Scope::All), 2);
        assert_eq!(count(Scope::Department("sz-psb".into())), 1, "provider");
        assert_eq!(count(Scope::Department("sz-hrss".into())), 1, "consumer");
        assert_eq!(count(Scope::Department("sz-civil".into())), 1);
        assert_eq!(count(Scope::Department("sz-amr".into())), 0);
    }

    #[test]
    fn quantiles_are_within_three_percent() {
        let mut h = Histogram::default();
        let values: Vec<u64> = (1..=10_000u64).map(|i| i * 37 % 100_003 + 1).collect();
        for v in &values {
            h.record(*v);
        }
        let mut sorted = values.clone();
        sorted.sort_unstable();
        for q in [0.5, 0.99] {
            let exact = sorted[(q * sorted.len() as f64).ceil() as usize - 1] as f64;
            let got = h.quantile(q).unwrap() as f64;
            assert!(
                (got - exact).abs() / exact <= 1.0 / 32.0,
                "q{q}: {got} vs {exact}"
            );
        }
        for v in [0, 1, 63] {
            let mut h = Histogram::default();
            h.record(v);
            assert_eq!(h.quantile(0.5), Some(v), "exact below 64");
        }
        assert_eq!(Histogram::default().quantile(0.5), None);
    }
}
