//! Search and the citizen's report over a large SQLite audit store, subjects spread as
//! a counter network sends them.
//!
//! ```sh
//! cargo run --release -p gateway --example audit_index_bench -- [N] [QUERIES]
//! ```
//!
//! Builds a store of N records (default 10 million) in a temporary directory it
//! deletes — chained, canonical records written in bulk, then the search index built
//! per segment as the writer builds it — and times QUERIES (default 200) random
//! queries of each kind, printing p50 and p99 in milliseconds:
//!
//! - `audit subject`: the citizen's report for a random subject that has records;
//! - search by operator, by case id, by a one-minute time range (limit 100 each).
//!
//! N is not a multiple of the segment size, so the unindexed tail is searched too.

mod common;

use std::time::{Duration, Instant};

use audit::{seal_entry, AuditStore, Database, Filter, GENESIS};
use common::{lookup, spread_subject};
use sqlx::Connection as _;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let n: i64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000_003);
    let queries: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(n, queries))
}

async fn run(n: i64, queries: usize) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state.db");
    let db = Database::Sqlite(path.clone());
    drop(AuditStore::open(&db).await?);

    let began = Instant::now();
    generate(&path, n).await?;
    let written = began.elapsed();
    let began = Instant::now();
    let segments = audit::index_sealed_segments(&path)?;
    let indexed = began.elapsed();
    let bytes = std::fs::metadata(&path)?.len();

    let store = AuditStore::open_existing(&db).await?;
    let mut rng = Lcg(0x2545_f491_4f6c_dd1d);
    let mut subject = Vec::new();
    let mut operator = Vec::new();
    let mut case = Vec::new();
    let mut range = Vec::new();
    for _ in 0..queries {
        let i = 1 + i64::try_from(rng.next() % u64::try_from(n)?)?;
        let began = Instant::now();
        let report = audit::subject_report(&store, &spread_subject(i), &Filter::default()).await?;
        subject.push(began.elapsed());
        assert!(
            report.accesses.iter().any(|a| a.seq == i),
            "record {i} not found"
        );

        let e = lookup(i, String::new());
        for (name, value, to, into) in [
            (
                "operator",
                e.operator.clone().unwrap_or_default(),
                None,
                &mut operator,
            ),
            (
                "case_id",
                e.case_id.clone().unwrap_or_default(),
                None,
                &mut case,
            ),
            (
                "from",
                e.time.clone(),
                Some(plus_minute(&e.time)),
                &mut range,
            ),
        ] {
            let mut f = Filter::default();
            f.set(name, &value)?;
            if let Some(t) = to {
                f.set("to", &t)?;
            }
            let began = Instant::now();
            let hits = store.search(&f, 0, 100).await?;
            into.push(began.elapsed());
            assert!(!hits.is_empty(), "no hit for {name} {value}");
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "bench": "audit_index",
            "records": n,
            "segments": segments,
            "db_bytes": bytes,
            "write_s": round(written.as_secs_f64()),
            "index_s": round(indexed.as_secs_f64()),
            "queries": queries,
            "subject_report_ms": percentiles(&mut subject),
            "search_operator_ms": percentiles(&mut operator),
            "search_case_id_ms": percentiles(&mut case),
            "search_time_range_ms": percentiles(&mut range),
        })
    );
    Ok(())
}

/// N chained records, 50,000 to a transaction, without syncs (a bench store).
async fn generate(path: &std::path::Path, n: i64) -> Result<(), Error> {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await?;
    sqlx::query("PRAGMA synchronous = OFF")
        .execute(&mut conn)
        .await?;
    let mut prev = GENESIS.to_owned();
    let mut seq = 0;
    while seq < n {
        let mut tx = conn.begin().await?;
        for _ in 0..50_000.min(n - seq) {
            seq += 1;
            let (record, hash) = seal_entry(seq, &prev, &lookup(seq, spread_subject(seq)))?;
            sqlx::query("INSERT INTO audit_log (seq, hash, record) VALUES (?1, ?2, ?3)")
                .bind(seq)
                .bind(&hash)
                .bind(record)
                .execute(&mut *tx)
                .await?;
            prev = hash;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// The records' times are `HH:MM:SS.micros` of the day; a minute later, same form.
fn plus_minute(time: &str) -> String {
    let t = chrono::DateTime::parse_from_rfc3339(time)
        .map(|t| (t + chrono::Duration::minutes(1)).to_utc())
        .unwrap_or_default();
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn percentiles(d: &mut [Duration]) -> serde_json::Value {
    d.sort_unstable();
    let at = |q: f64| {
        let k = ((d.len() as f64 - 1.0) * q).round() as usize;
        d.get(k).map_or(0.0, |x| round(x.as_secs_f64() * 1e3))
    };
    serde_json::json!({"p50": at(0.5), "p99": at(0.99), "max": at(1.0)})
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A small deterministic generator: the same keys every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}
