//! CPU per audit record through the real group-commit writer, beside the floor of any
//! durable record measured in the same run.
//!
//! ```sh
//! taskset -c 1 cargo run --release -p gateway --example audit_write_bench -- [N] [--pg URL]
//! ```
//!
//! Pinned to one core, as the HTTP benchmark pins the gateway, 64 tasks append N
//! records each way (default 200,000) and it prints one JSON line per way:
//!
//! - `writer, as the HTTP benchmark`: one subject, one clerk, one case — what the
//!   lookup benchmark's records look like to the store.
//! - `writer, spread subjects`: 200 clerks, a case every third record, subjects
//!   scattered over 10 million: what a counter network sends. Every record then
//!   lands in an unrelated page of the subject index.
//! - `flat append (floor)`: the same canonical records and chain hashes written to a
//!   plain file, 64 to a write and one `fdatasync` each: durable, but not searchable.
//!   No store can cost less per record.
//!
//! With `--pg postgres://user@host:port` it also runs both writer ways against a
//! PostgreSQL database it creates and drops, and adds the CPU the server's processes
//! spent (all processes named `postgres` on this machine, so run it on a quiet one).

mod common;

// The gateway's allocator, so the costs are the ones it pays.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit::signing::Signer;
use audit::{seal_entry, AuditEntry, AuditLog, AuditSettings, Database, GENESIS};
use common::{cpu_seconds, lookup, spread_subject};
use rustls_pki_types::pem::PemObject as _;

type Error = Box<dyn std::error::Error + Send + Sync>;

const PRODUCERS: i64 = 64;

/// Record `i` of one way.
type Records = fn(i64) -> AuditEntry;

fn main() -> Result<(), Error> {
    let mut n: i64 = 200_000;
    let mut pg = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--pg" => pg = Some(args.next().ok_or("--pg needs a URL")?),
            _ => n = a.parse()?,
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(n, pg))
}

/// A record of the HTTP benchmark: the same lookup over and over.
fn as_http_bench(i: i64) -> AuditEntry {
    let mut e = lookup(i, "110101199003074573".into());
    e.operator = Some("bench-001".into());
    e.case_id = Some("SB-2026-000001".into());
    e
}

fn spread(i: i64) -> AuditEntry {
    lookup(i, spread_subject(i))
}

async fn run(n: i64, pg: Option<String>) -> Result<(), Error> {
    let pem = Signer::generate_pem()?;
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())?;
    let signer = Arc::new(Signer::from_pkcs8(der.secret_pkcs8_der())?);
    let ways: [(&str, Records); 2] = [
        ("writer, as the HTTP benchmark", as_http_bench),
        ("writer, spread subjects", spread),
    ];
    for (way, make) in ways {
        let dir = tempfile::tempdir()?;
        let db = Database::Sqlite(dir.path().join("state.db"));
        let measured = through_writer(&db, &signer, n, make, None).await?;
        print_line(way, n, measured);
    }
    if let Some(server) = pg {
        for (way, make) in ways {
            let name = format!("tongban_write_bench_{}", std::process::id());
            let admin = sqlx::PgPool::connect(&server).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&admin)
                .await?;
            let db = Database::Postgres(format!("{}/{name}", server.trim_end_matches('/')));
            let measured = through_writer(&db, &signer, n, make, Some(postgres_cpu)).await;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&admin)
            .await?;
            print_line(&way.replace("writer", "writer on PostgreSQL"), n, measured?);
        }
    }

    let dir = tempfile::tempdir()?;
    let measured = measure(|| async {
        let mut file = std::fs::File::create(dir.path().join("audit.log"))?;
        let mut prev = GENESIS.to_owned();
        let mut batch = Vec::with_capacity(64 * 1024);
        for i in 1..=n {
            let (record, hash) = seal_entry(i, &prev, &spread(i))?;
            writeln!(batch, "{i}\t{hash}\t{record}")?;
            prev = hash;
            if i % PRODUCERS == 0 || i == n {
                file.write_all(&batch)?;
                file.sync_data()?;
                batch.clear();
            }
        }
        Ok(())
    })
    .await?;
    print_line("flat append (floor)", n, measured);
    Ok(())
}

/// Append N records of `make` through the group-commit writer from 64 tasks. Its wall
/// and CPU time; `server_cpu` adds the CPU of a database server's processes.
async fn through_writer(
    db: &Database,
    signer: &Arc<Signer>,
    n: i64,
    make: Records,
    server_cpu: Option<fn() -> HashMap<u32, f64>>,
) -> Result<(Duration, Option<f64>), Error> {
    let settings = AuditSettings {
        node: "gw-1".into(),
        origin: "tongban.test/audit".into(),
        batch_max: 512,
        checkpoint_every: 1000,
        checkpoint_interval: Duration::from_secs(10),
        checkpoint_file: None,
        metrics: None,
    };
    let log = AuditLog::open(db, Arc::clone(signer), settings).await?;
    let next = Arc::new(AtomicI64::new(1));
    let server_before = server_cpu.map(|f| f());
    let (took, cpu) = measure(|| async {
        let producers = (0..PRODUCERS).map(|_| {
            let (log, next) = (log.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i > n {
                        return Ok::<_, Error>(());
                    }
                    log.append(make(i)).await?;
                }
            })
        });
        for p in futures_util::future::join_all(producers).await {
            p??;
        }
        Ok(())
    })
    .await?;
    let server = server_cpu
        .zip(server_before)
        .map(|(f, before)| spent(&before, &f()));
    log.close().await;
    Ok((took, cpu.map(|c| c + server.unwrap_or(0.0))))
}

/// CPU seconds spent so far by each process named `postgres`, by pid.
fn postgres_cpu() -> HashMap<u32, f64> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
        .filter_map(|(pid, path)| Some((pid, std::fs::read_to_string(path.join("stat")).ok()?)))
        .filter(|(_, stat)| stat.contains("(postgres)"))
        .filter_map(|(pid, stat)| Some((pid, common::cpu_of_stat(&stat)?)))
        .collect()
}

/// CPU the processes spent between two [`postgres_cpu`] readings; a process that
/// ended in between is not counted (its time is gone with it).
fn spent(before: &HashMap<u32, f64>, after: &HashMap<u32, f64>) -> f64 {
    after
        .iter()
        .map(|(pid, a)| a - before.get(pid).copied().unwrap_or(0.0))
        .sum()
}

/// Wall time and CPU time of `work`.
async fn measure<F, Fut>(work: F) -> Result<(Duration, Option<f64>), Error>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    let cpu = cpu_seconds();
    let began = Instant::now();
    work().await?;
    let took = began.elapsed();
    Ok((took, cpu_seconds().zip(cpu).map(|(a, b)| a - b)))
}

fn print_line(way: &str, n: i64, (took, cpu): (Duration, Option<f64>)) {
    let per = |s: f64| (s * 1e6 / n as f64 * 100.0).round() / 100.0;
    println!(
        "{}",
        serde_json::json!({
            "bench": "audit_write",
            "way": way,
            "records": n,
            "records_per_s": (n as f64 / took.as_secs_f64()).round(),
            "cpu_us_per_record": cpu.map(per),
        })
    );
}
