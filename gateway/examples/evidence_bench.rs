//! Evidence CPU per answer, the receipt way beside the signature way, in one run.
//!
//! ```sh
//! taskset -c 1 cargo run --release -p gateway --example evidence_bench -- [N]
//! ```
//!
//! On N lookup answers (default 20,000) with subjects spread as a counter network
//! sends them, one core, it times three ways of turning an answer into bytes:
//!
//! - `no evidence`: the answer's canonical JSON, as the gateway renders every answer
//!   (what audit-off costs);
//! - `signature (v1)`: the answer's canonical JSON signed with Ed25519 as a detached
//!   JWS, and its audit record chained (one SHA-256), as the first version did;
//! - `receipt`: the answer's canonical JSON and its SHA-256 (which the record binds),
//!   the record's leaf hash and its share of a 64-record batch's tree append,
//!   inclusion proofs and one signed checkpoint, and the receipt spliced into the bytes.
//!
//! It prints one JSON line per way (µs per answer, the fastest of 7 rounds taken in
//! turn with the other ways) and the
//! evidence per answer — each way minus `no evidence` — side by side. `-- N receipt`
//! runs the receipt way alone, for a profiler.

mod common;

// The gateway's allocator, so the costs are the ones it pays.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::Instant;

use audit::signing::Signer;
use audit::tlog::note::NoteSigner;
use audit::tlog::tree::{self, Hash, KnownHashes};
use audit::{seal_entry, Receipt};
use base64::Engine as _;
use common::{lookup, spread_subject};
use connectors::Dataset;
use gateway::http::render::{lookup_body, Rendered};
use gateway::http::LookupAnswer;
use http::StatusCode;
use rustls_pki_types::pem::PemObject as _;
use serde_json::{json, Map};

type Error = Box<dyn std::error::Error>;

const BATCH: usize = 64;
const ROUNDS: usize = 7;
const ORIGIN: &str = "tongban.bench/audit";

fn answer(i: i64) -> LookupAnswer {
    let subject = spread_subject(i);
    let mut record = Map::new();
    record.insert("name".into(), json!(format!("张{}", i % 977)));
    record.insert("birth_date".into(), json!("1972-04-18"));
    record.insert("sex".into(), json!(if i % 2 == 0 { "男" } else { "女" }));
    record.insert(
        "household_address".into(),
        json!("广东省深圳*************8栋104"),
    );
    record.insert("status".into(), json!("active"));
    LookupAnswer {
        request_id: format!("0193a0b2-7c4e-7d1a-9f00-{i:012x}"),
        dataset: Dataset::new("population"),
        subject,
        record,
        masked: vec!["household_address".into()],
        department: "sz-psb".into(),
        connector: "population-db".into(),
        fetched_at: "2026-12-05T06:00:00.123Z".into(),
        agreement: "hrss-population-2026".into(),
        verification: None,
    }
}

fn main() -> Result<(), Error> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let pem = Signer::generate_pem()?;
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())?;
    let signer = Arc::new(Signer::from_pkcs8(der.secret_pkcs8_der())?);
    let answers: Vec<LookupAnswer> = (0..n as i64).map(answer).collect();
    let records: Vec<String> = (0..n as i64)
        .map(|i| {
            let mut e = lookup(i, spread_subject(i));
            e.answer_sha256 = Some("0".repeat(64));
            seal_entry(i + 1, audit::GENESIS, &e).map(|(r, _)| r)
        })
        .collect::<Result<_, _>>()?;

    let only_receipt = std::env::args().nth(2).as_deref() == Some("receipt");
    let plain = || {
        let mut sink = 0usize;
        for a in &answers {
            let r = Rendered::json(StatusCode::OK, "application/json", lookup_body(a));
            sink += r.into_bytes(None).len();
        }
        sink
    };

    let signed = || {
        let mut sink = 0usize;
        let mut prev = audit::GENESIS.to_owned();
        for (a, r) in answers.iter().zip(&records) {
            let mut body = lookup_body(a);
            body.insert("audit".into(), json!({"seq": 1, "hash": prev}));
            prev = audit::chain_hash(&prev, r.as_bytes());
            if let Ok(signed) = signer.sign(body) {
                sink += serde_json::to_vec(&signed).map(|b| b.len()).unwrap_or(0);
            }
        }
        sink
    };

    let receipt = || {
        let mut sink = 0usize;
        let mut known = KnownHashes::default();
        let mut size = 0u64;
        let note_signer = NoteSigner::new(ORIGIN, signer.key_pair()).ok();
        for (batch, recs) in answers.chunks(BATCH).zip(records.chunks(BATCH)) {
            // The answers rendered and digested before their records commit.
            let rendered: Vec<Rendered> = batch
                .iter()
                .map(|a| Rendered::json(StatusCode::OK, "application/json", lookup_body(a)))
                .collect();
            for r in &rendered {
                sink += r.digest().len();
            }
            // The batch's tree, proofs and one signed checkpoint.
            let leaves: Vec<Hash> = recs.iter().map(|r| tree::leaf_hash(r.as_bytes())).collect();
            let Ok(appended) = tree::append(size, &leaves, &mut known) else {
                return sink;
            };
            size = appended.size;
            let b64 = base64::engine::general_purpose::STANDARD;
            let text = format!("{ORIGIN}\n{size}\n{}\n", b64.encode(appended.root.0));
            let note = audit::BatchNote::new(
                &note_signer
                    .as_ref()
                    .and_then(|s| s.sign(&text).ok())
                    .unwrap_or_default(),
            );
            for (k, ((r, proof), record)) in rendered
                .into_iter()
                .zip(appended.proofs)
                .zip(recs)
                .enumerate()
            {
                let index = size - (recs.len() - k) as u64;
                let receipt = Receipt {
                    seq: index as i64 + 1,
                    hash: String::new(),
                    record: record.clone(),
                    index,
                    checkpoint: note.clone(),
                    inclusion: proof,
                };
                sink += r.into_bytes(Some(&receipt)).len();
            }
        }
        sink
    };

    // The ways take turns, round after round, and each keeps its fastest round: a
    // neighbour's burst on a shared host slows some rounds of every way alike, and
    // the fastest round is the one it missed.
    let mut best = [f64::INFINITY; 3];
    let mut sink = 0usize;
    for _ in 0..ROUNDS {
        let ways: [&dyn Fn() -> usize; 3] = [&plain, &signed, &receipt];
        for (k, way) in ways.iter().enumerate() {
            if only_receipt && k < 2 {
                continue;
            }
            let start = Instant::now();
            sink += way();
            best[k] = best[k].min(start.elapsed().as_secs_f64() * 1e6 / n as f64);
        }
    }
    let [plain, signed, receipt] = best.map(|b| if b.is_finite() { b } else { 0.0 });

    let line = |way: &str, us: f64| {
        println!(
            "{}",
            json!({"bench": "evidence", "way": way, "us_per_answer": round(us), "answers": n})
        );
    };
    line("no evidence", plain);
    line("signature (v1)", signed);
    line("receipt", receipt);
    println!(
        "{}",
        json!({
            "bench": "evidence",
            "evidence_us_per_answer": {"signature (v1)": round(signed - plain), "receipt": round(receipt - plain)},
            "receipt / signature": round((receipt - plain) / (signed - plain)),
            "sink": sink % 7,
        })
    );
    Ok(())
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
