//! What a daily quota or operator rate costs a lookup: one atomic
//! insert-or-increment of a counter row in the state database.
//!
//! ```sh
//! cargo run --release -p policy --example counter_bench                 # SQLite in a temp dir
//! cargo run --release -p policy --example counter_bench -- postgres://postgres@127.0.0.1:5432/DB
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark, not a service

use std::time::{Duration, Instant};

use policy::AgreementStore;

const CALLS: usize = 2_000;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| AgreementStore::sqlite_url(&dir.path().join("state.db")));
    let store = AgreementStore::connect(&url, 4).await.unwrap();
    let mut times: Vec<Duration> = Vec::with_capacity(CALLS);
    for k in 0..CALLS {
        // A handful of consumers, as at a busy gateway.
        let key = format!("quota|bench|urn:tongban:sz-x:counter-{}", k % 8);
        let t = Instant::now();
        store.count(&key, "2026-06-03", i64::MAX).await.unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    let us = |p: f64| times[((times.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    let backend = if url.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite (WAL, synchronous=NORMAL)"
    };
    println!(
        "{backend}: counter increment p50 {:.0} µs, p99 {:.0} µs over {CALLS} calls",
        us(0.5),
        us(0.99)
    );
}
