//! Usage: lookups per day by consumer and by matter, refusals by reason, each
//! source's latency and availability — as SVG charts with the numbers in tables
//! beside them. The page is `GET /admin/v1/usage` (`usage::answer`): the same
//! scope (a dept-admin sees its department's use, an auditor every use), the same
//! figures, the same record.

use askama::Template;
use serde_json::Value;

use super::{param, rendered};
use crate::console::svg;
use crate::console::view::Chrome;
use crate::console::{body_of, Console, Viewer};
use crate::http::Outcome;

/// Series classes of the stacked charts, coloured by the stylesheet; a seventh
/// consumer takes the first colour again (the table beside names each exactly).
const SERIES: [&str; 6] = ["s0", "s1", "s2", "s3", "s4", "s5"];

/// One dimension's figures by day: its keys (columns) and, per day, each key's
/// lookups.
pub(crate) struct ByDay {
    pub keys: Vec<(String, &'static str)>,
    /// (day, lookups per key in `keys`' order)
    pub days: Vec<(String, Vec<u64>)>,
    /// (key, lookups, allowed, refused, failed) over the range
    pub totals: Vec<(String, u64, u64, u64, u64)>,
    pub svg: String,
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_default()
}

impl ByDay {
    fn of(title: &str, days: &[String], series: &[Value]) -> Self {
        let keys: Vec<(String, &'static str)> = series
            .iter()
            .enumerate()
            .map(|(i, s)| (text(&s["key"]), SERIES[i % SERIES.len()]))
            .collect();
        let days: Vec<(String, Vec<u64>)> = days
            .iter()
            .enumerate()
            .map(|(i, day)| {
                let counts = series.iter().map(|s| n(&s["days"][i]["lookups"])).collect();
                (day.clone(), counts)
            })
            .collect();
        let totals = series
            .iter()
            .map(|s| {
                let t = &s["total"];
                (
                    text(&s["key"]),
                    n(&t["lookups"]),
                    n(&t["allowed"]),
                    n(&t["refused"]),
                    n(&t["failed"]),
                )
            })
            .collect();
        let named: Vec<(&str, &str)> = keys.iter().map(|(k, c)| (*c, k.as_str())).collect();
        let columns: Vec<(String, Vec<u64>)> = days
            .iter()
            // `MM-DD` under a column: the year is in the table.
            .map(|(d, c)| (d.get(5..).unwrap_or(d).to_owned(), c.clone()))
            .collect();
        Self {
            svg: svg::stacked_named(title, &named, &columns),
            keys,
            days,
            totals,
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// One source (providing department): calls, answered share, latency.
pub(crate) struct Source {
    pub provider: String,
    pub calls: u64,
    pub ok: u64,
    /// `99.50 %`, or `—` without calls.
    pub availability: String,
    /// Milliseconds, `—` without calls.
    pub p50_ms: String,
    pub p99_ms: String,
}

#[derive(Template)]
#[template(path = "console/usage.html")]
struct Usage<'a> {
    c: Chrome<'a>,
    from: String,
    to: String,
    scope: String,
    lookups: u64,
    allowed: u64,
    refused: u64,
    failed: u64,
    /// (id, title, figures): by consumer, by matter.
    dims: Vec<(&'static str, String, ByDay)>,
    refusals: Vec<(String, u64)>,
    refusals_svg: String,
    sources: Vec<Source>,
    latency_svg: String,
    availability_svg: String,
}

/// `v` µs as milliseconds with two decimals.
fn ms(v: &Value) -> String {
    v.as_u64()
        .map(|us| format!("{:.2}", us as f64 / 1000.0))
        .unwrap_or_else(|| "—".into())
}

/// `GET /console/usage?from=&to=`: `GET /admin/v1/usage`.
pub(crate) async fn usage(
    console: &Console,
    viewer: &Viewer,
    query: &[(String, String)],
) -> Outcome {
    // The API takes from and to only; the page passes nothing else on.
    let range: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| k == "from" || k == "to")
        .cloned()
        .collect();
    let o = crate::http::usage::answer(
        console.audit.store(),
        &console.policy.authorizer,
        &console.providers,
        Some(&viewer.principal),
        &range,
    )
    .await;
    let Some(body) = body_of(&o) else { return o };
    let c = Chrome::new(console, viewer, "usage");
    let days: Vec<String> = body["days"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let list = |k: &str| body[k].as_array().cloned().unwrap_or_default();
    let consumers = ByDay::of(c.t("usage.by_consumer"), &days, &list("consumers"));
    let matters = ByDay::of(c.t("usage.by_matter"), &days, &list("matters"));
    let total = &body["total"];
    let refusals: Vec<(String, u64)> = total["refusals"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), n(v)))
        .collect();
    let providers = list("providers");
    let sources: Vec<Source> = providers
        .iter()
        .map(|p| {
            let t = &p["total"];
            Source {
                provider: text(&p["key"]),
                calls: n(&t["source_calls"]),
                ok: n(&t["source_ok"]),
                availability: t["source_availability"]
                    .as_f64()
                    .map(|a| format!("{:.2} %", a * 100.0))
                    .unwrap_or_else(|| "—".into()),
                p50_ms: ms(&t["source_p50_us"]),
                p99_ms: ms(&t["source_p99_us"]),
            }
        })
        .collect();
    // Bars take whole numbers: latency in microseconds, availability in basis
    // points; each printed as the table prints it.
    let latency: Vec<(String, u64, String)> = providers
        .iter()
        .flat_map(|p| {
            let key = text(&p["key"]);
            let t = &p["total"];
            [("p50", "source_p50_us"), ("p99", "source_p99_us")]
                .map(|(q, k)| (format!("{key} {q}"), n(&t[k]), format!("{} ms", ms(&t[k]))))
        })
        .collect();
    let availability: Vec<(String, u64, String)> = providers
        .iter()
        .filter_map(|p| {
            let a = p["total"]["source_availability"].as_f64()?;
            let bp = (a * 10_000.0).round() as u64;
            Some((text(&p["key"]), bp, format!("{:.2} %", a * 100.0)))
        })
        .collect();
    let page = Usage {
        refusals_svg: svg::bars(c.t("usage.refusals"), "deny", &refusals),
        latency_svg: svg::bars_shown(c.t("usage.latency"), "bar", &latency),
        availability_svg: svg::bars_shown(c.t("usage.availability"), "allow", &availability),
        from: param(query, "from").unwrap_or_default().to_owned(),
        to: param(query, "to").unwrap_or_default().to_owned(),
        scope: match &body["scope"] {
            Value::Object(o) => o.values().map(text).collect::<Vec<_>>().join(", "),
            other => text(other),
        },
        lookups: n(&total["lookups"]),
        allowed: n(&total["allowed"]),
        refused: n(&total["refused"]),
        failed: n(&total["failed"]),
        dims: vec![
            ("consumers", c.t("usage.by_consumer").to_owned(), consumers),
            ("matters", c.t("usage.by_matter").to_owned(), matters),
        ],
        refusals,
        sources,
        c,
    };
    let html = page.render();
    rendered(o, html)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_dimension_by_day_is_one_column_per_day_one_series_per_key() {
        let days = vec!["2026-12-04".to_owned(), "2026-12-05".to_owned()];
        let series = vec![
            json!({"key": "urn:a", "total": {"lookups": 3, "allowed": 2, "refused": 1, "failed": 0},
                   "days": [{"lookups": 1}, {"lookups": 2}]}),
            json!({"key": "urn:b", "total": {"lookups": 4, "allowed": 4, "refused": 0, "failed": 0},
                   "days": [{"lookups": 0}, {"lookups": 4}]}),
        ];
        let d = ByDay::of("t", &days, &series);
        assert_eq!(d.keys, vec![("urn:a".into(), "s0"), ("urn:b".into(), "s1")]);
        assert_eq!(
            d.days,
            vec![
                ("2026-12-04".into(), vec![1, 0]),
                ("2026-12-05".into(), vec![2, 4])
            ]
        );
        assert_eq!(d.totals[0], ("urn:a".into(), 3, 2, 1, 0));
        assert_eq!(d.svg.matches("class=\"s0\"").count(), 2);
        assert_eq!(
            d.svg.matches("class=\"s1\"").count(),
            1,
            "zero is not drawn"
        );
        assert!(d.svg.contains("<title>12-05 urn:b: 4</title>"), "{}", d.svg);
    }
}
