//! `audit verify` throughput on a generated log.
//!
//! ```sh
//! cargo run --release -p gateway --example audit_verify_bench -- [N] [--db FILE] [--runs K]
//! ```
//!
//! Builds a SQLite audit store of N realistic lookup records (default 1,000,000) with
//! their Merkle tree (`audit_tree`) and a signed note checkpoint every 1,000, then
//! verifies it exactly as `tongban audit verify` does (chain, search columns, tree
//! recomputed and compared, notes' roots) and prints one JSON line with records/s. The store is built with large
//! transactions rather than through the group-commit writer; the records and hashes
//! are the writer's own. `--db FILE` keeps the store (with its signing key beside it,
//! `FILE.key`) and reuses it on the next run, so that repeated measurements need not
//! generate it again; `--runs K` verifies it K times, one line each.

use std::path::{Path, PathBuf};
use std::time::Instant;

mod common;

use audit::signing::Signer;
use audit::tlog::checkpoint::body;
use audit::tlog::note::NoteSigner;
use audit::tlog::tree::{self, KnownHashes};
use audit::{self, seal_entry, AuditStore, Database, VerifyOptions, GENESIS};
use common::{cpu_seconds, entry};
use rustls_pki_types::pem::PemObject as _;
use sqlx::Connection as _;

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let mut n: i64 = 1_000_000;
    let mut db = None;
    let mut runs = 1;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--db" => db = Some(PathBuf::from(args.next().ok_or("--db needs a file")?)),
            "--runs" => runs = args.next().ok_or("--runs needs a number")?.parse()?,
            _ => n = a.parse()?,
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(n, db, runs))
}

async fn run(n: i64, keep: Option<PathBuf>, runs: u32) -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let path = keep.unwrap_or_else(|| dir.path().join("state.db"));
    let key = path.with_extension("key");
    let reuse = path.is_file() && key.is_file();
    let db = Database::Sqlite(path.clone());
    let store = AuditStore::open(&db).await?;
    let pem = if reuse {
        std::fs::read_to_string(&key)?
    } else {
        let pem = Signer::generate_pem()?;
        std::fs::write(&key, &pem)?;
        pem
    };
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())?;
    let signer = Signer::from_pkcs8(der.secret_pkcs8_der())?;

    let began = Instant::now();
    if !reuse {
        generate(&path, n, &signer).await?;
        // Its search index, as the writer builds it: verify checks it too.
        audit::index_sealed_segments(&path)?;
    }
    let generated = began.elapsed();

    // Reading alone, for comparison: what the store costs before any checking.
    let began = Instant::now();
    let mut rows = store.rows(1, n);
    let mut read = 0u64;
    while let Some(r) = futures_util::TryStreamExt::try_next(&mut rows).await? {
        read += u64::try_from(r.record.len())?;
    }
    drop(rows);
    let scan_s = began.elapsed().as_secs_f64();

    let opts = VerifyOptions {
        jwks: signer.jwks(),
        ..VerifyOptions::default()
    };
    for _ in 0..runs.max(1) {
        let began = Instant::now();
        let cpu_before = cpu_seconds();
        let report = audit::verify(&store, &opts, |_| {}).await?;
        let took = began.elapsed().as_secs_f64();
        let cpu = cpu_seconds()
            .zip(cpu_before)
            .map(|(after, before)| after - before);
        if let Some(f) = &report.failure {
            return Err(format!("verification failed at {}: {}", f.seq, f.reason).into());
        }
        println!(
            "{}",
            serde_json::json!({
                "bench": "audit_verify",
                "records": report.records,
                "checkpoints": report.notes + report.checkpoints,
                "tree_rows": report.tree.as_ref().map(|t| t.rows),
                "avg_record_bytes": read / report.records.max(1),
                "generate_s": (generated.as_secs_f64() * 100.0).round() / 100.0,
                "read_only_s": (scan_s * 1000.0).round() / 1000.0,
                "read_bytes": read,
                "verify_s": (took * 1000.0).round() / 1000.0,
                "records_per_s": (report.records as f64 / took).round(),
                // On a shared machine the CPU spent per record says more than the rate.
                "cpu_s": cpu.map(|s| (s * 100.0).round() / 100.0),
                "cpu_us_per_record": cpu.map(|s| (s * 1e6 / report.records.max(1) as f64 * 100.0).round() / 100.0),
            })
        );
    }
    Ok(())
}

/// N chained records, their tree and a signed note every 1,000, in transactions of
/// 10,000.
async fn generate(path: &Path, n: i64, signer: &Signer) -> Result<(), Error> {
    const ORIGIN: &str = "tongban.bench/audit";
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await?;
    let notes = NoteSigner::new(ORIGIN, signer.key_pair())?;
    let mut known = KnownHashes::default();
    let mut prev = GENESIS.to_owned();
    let mut seq = 0;
    while seq < n {
        let mut tx = conn.begin().await?;
        for _ in 0..10_000.min(n - seq) {
            seq += 1;
            let e = entry(seq);
            let (record, hash) = seal_entry(seq, &prev, &e)?;
            let leaf = tree::leaf_hash(record.as_bytes());
            let insert =
                sqlx::query("INSERT INTO audit_log (seq, hash, record) VALUES (?1, ?2, ?3)")
                    .bind(seq)
                    .bind(&hash)
                    .bind(record);
            let size = u64::try_from(seq - 1)?;
            let stored = tree::extend(size, &[leaf], &mut known)?;
            insert.execute(&mut *tx).await?;
            for (idx, h) in stored {
                sqlx::query("INSERT INTO audit_tree (idx, hash) VALUES (?1, ?2)")
                    .bind(i64::try_from(idx)?)
                    .bind(h.0.to_vec())
                    .execute(&mut *tx)
                    .await?;
            }
            if seq % 1000 == 0 {
                let size = size + 1;
                known.retain(&tree::frontier(size));
                let note = notes.sign(&body(ORIGIN, size, &tree::root(size, &known)?))?;
                sqlx::query(
                    "INSERT INTO audit_checkpoint (seq, hash, checkpoint, format) VALUES (?1, ?2, ?3, 'note')",
                )
                .bind(seq)
                .bind(&hash)
                .bind(note)
                .execute(&mut *tx)
                .await?;
            }
            prev = hash;
        }
        tx.commit().await?;
    }
    Ok(())
}
