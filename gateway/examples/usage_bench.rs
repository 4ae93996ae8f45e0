//! `tongban report usage` over a generated log: how long the report takes and how
//! much memory it holds.
//!
//! ```sh
//! cargo run --release -p gateway --example usage_bench -- [N] [--db FILE]
//! ```
//!
//! Builds a SQLite audit store of N records (default 1,000,000) spread over 30 days:
//! lookups and bundle items of four consumers under four agreements and six matters,
//! one in ten refused, some not found, some timed out, each with its source time; a
//! bundle summary every 50. Its search index is built as the writer builds it. Then
//! it runs the report over the whole log and over one week, as the CLI does, and
//! prints one JSON line each with the time, the CPU and the process's peak RSS.
//! `--db FILE` keeps the store and reuses it on the next run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

mod common;

use audit::{self, seal_entry, AuditEntry, AuditStore, Database, Decision, Filter, GENESIS};
use common::{cpu_seconds, spread_subject};
use sqlx::Connection as _;

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let mut n: i64 = 1_000_000;
    let mut db = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--db" => db = Some(PathBuf::from(args.next().ok_or("--db needs a file")?)),
            _ => n = a.parse()?,
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(n, db))
}

const CONSUMERS: [&str; 4] = [
    "urn:tongban:sz-hrss:counter-01",
    "urn:tongban:sz-hrss:counter-02",
    "urn:tongban:sz-civil:counter-01",
    "urn:tongban:sz-amr:counter-01",
];
const MATTERS: [&str; 6] = [
    "social-insurance-enrollment",
    "pension-qualification",
    "newborn-registration",
    "marriage-registration",
    "company-opening",
    "household-transfer",
];
const DATASETS: [&str; 3] = ["population", "legal_person", "e_license"];

/// Record `i` of `n`, 30 days from 2026-11-01 (UTC) in order.
fn record(i: i64, n: i64) -> AuditEntry {
    let secs = 30 * 86_400 * i / n.max(1);
    let time = chrono::DateTime::from_timestamp(
        1_793_491_200 + secs,
        u32::try_from(i % 1_000_000).unwrap_or(0) * 1000,
    )
    .unwrap_or_default()
    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut e = common::lookup(i, spread_subject(i));
    e.time = time;
    let c = usize::try_from(i % 4).unwrap_or(0);
    e.consumer = Some(CONSUMERS[c].into());
    e.agreement = Some(format!("agreement-{c}"));
    e.matter = Some(MATTERS[usize::try_from(i % 6).unwrap_or(0)].into());
    e.dataset = Some(DATASETS[usize::try_from(i % 3).unwrap_or(0)].into());
    if i % 7 == 0 {
        e.path = "/v1/bundle".into();
        e.detail = Some(serde_json::json!({"bundle": "newborn", "item": "mother"}));
    }
    if i % 50 == 0 {
        e.detail = Some(serde_json::json!({"bundle": "newborn", "items": []}));
        e.path = "/v1/bundle".into();
    }
    if i % 10 == 3 {
        e.decision = Decision::Deny;
        e.status = 403;
        e.reason = Some("no-agreement: no agreement allows this".into());
        e.fields.clear();
        e.source_us = None;
    } else if i % 40 == 1 {
        e.status = 404;
        e.fields.clear();
    } else if i % 200 == 5 {
        e.status = 504;
        e.fields.clear();
        e.source_us = Some(2_000_000);
    }
    e
}

async fn run(n: i64, keep: Option<PathBuf>) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let path = keep.unwrap_or_else(|| dir.path().join("state.db"));
    let reuse = path.is_file();
    let store = AuditStore::open(&Database::Sqlite(path.clone())).await?;
    let began = Instant::now();
    if !reuse {
        generate(&path, n).await?;
        audit::index_sealed_segments(&path)?;
    }
    let generated = began.elapsed().as_secs_f64();
    let providers: HashMap<String, String> = [
        ("population", "sz-psb"),
        ("legal_person", "sz-amr"),
        ("e_license", "sz-data"),
    ]
    .iter()
    .map(|(d, p)| ((*d).to_owned(), (*p).to_owned()))
    .collect();
    let mut week = Filter::default();
    week.set("from", "2026-11-10")?;
    week.set("to", "2026-11-16")?;
    for (name, range) in [("whole log", Filter::default()), ("one week", week)] {
        let query = audit::UsageQuery {
            range,
            scope: audit::Scope::All,
            providers: providers.clone(),
        };
        let began = Instant::now();
        let cpu_before = cpu_seconds();
        let report = audit::usage_report(&store, &query).await?;
        let took = began.elapsed().as_secs_f64();
        let cpu = cpu_seconds()
            .zip(cpu_before)
            .map(|(after, before)| after - before);
        println!(
            "{}",
            serde_json::json!({
                "bench": "usage_report",
                "range": name,
                "records_read": report.records_read,
                "accesses": report.total.lookups,
                "days": report.days.len(),
                "generate_s": (generated * 100.0).round() / 100.0,
                "report_s": (took * 1000.0).round() / 1000.0,
                "records_per_s": (report.records_read as f64 / took).round(),
                "cpu_s": cpu.map(|s| (s * 100.0).round() / 100.0),
                "peak_rss_mib": peak_rss_mib(),
            })
        );
    }
    Ok(())
}

/// N chained records in transactions of 10,000.
async fn generate(path: &Path, n: i64) -> Result<(), Error> {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await?;
    let mut prev = GENESIS.to_owned();
    let mut seq = 0;
    while seq < n {
        let mut tx = conn.begin().await?;
        for _ in 0..10_000.min(n - seq) {
            seq += 1;
            let (text, hash) = seal_entry(seq, &prev, &record(seq, n))?;
            sqlx::query("INSERT INTO audit_log (seq, hash, record) VALUES (?1, ?2, ?3)")
                .bind(seq)
                .bind(&hash)
                .bind(text)
                .execute(&mut *tx)
                .await?;
            prev = hash;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// The process's peak resident set (Linux `VmHWM`), MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((kib / 1024.0 * 10.0).round() / 10.0)
}
