//! Exports a third party can verify with nothing but a JCS library, SHA-256 and
//! Ed25519: the records with their hashes, the anchor hash the first one chains onto,
//! the tree frontier the first one is appended to, the checkpoints sealing them and
//! the public keys.
//!
//! JSON Lines (`tongban-audit-export/2`), one object per line:
//!
//! ```text
//! {"type":"export","format":"tongban-audit-export/2","from":1,"to":N,"anchor":"000…",
//!  "tree":{"size":0,"frontier":[]},"jwks":{…},"exported_at":"…"}
//! {"type":"record","seq":1,"hash":"…","record":{…}}        one per record, in order
//! {"type":"note","seq":S,"hash":"…","note":"…"}              every signed note in range
//! {"type":"checkpoint","checkpoint":{…}}                     every JWS checkpoint in range
//! ```
//!
//! `tree.frontier` holds the base64 roots of the complete subtrees of the tree of the
//! `tree.size` = `from - 1` records before the export, largest first (RFC 9162), so
//! that the root at each note's size can be recomputed from the exported records
//! alone; it is absent when the store does not hold them. JWS checkpoints are what
//! stores sealed before checkpoints became signed notes (format 1 had only those).
//!
//! CSV has one row per line of the above: `type,seq,hash,time,consumer,operator,
//! dataset,subject,matter,case_id,decision,status,json`, where `json` holds the
//! record, the checkpoint, `{"note": …}` or the export header.

use std::io::Write;

use futures_util::TryStreamExt as _;
use serde_json::{json, Value};

use super::chain::Row;
use super::chain::GENESIS;
use super::checkpoint::{Seal, StoredCheckpoint};
use super::error::AuditError;
use super::store::AuditStore;

/// The export format name.
pub const EXPORT_FORMAT: &str = "tongban-audit-export/2";

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Format {
    /// JSON Lines.
    Jsonl,
    /// Comma-separated values.
    Csv,
}

/// What an export held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Records written.
    pub records: u64,
    /// Checkpoints (signed notes and JWS) written.
    pub checkpoints: usize,
    /// Last sequence number written.
    pub last_seq: i64,
    /// Its hash.
    pub last_hash: String,
}

/// Everything needed besides the records.
#[derive(Debug, Clone)]
pub struct ExportContext {
    /// Keys that sign checkpoints.
    pub jwks: Value,
    /// Checkpoints kept outside the store, added to the stored ones.
    pub external: Vec<StoredCheckpoint>,
    /// Hash the first record chains onto, when the caller knows it (archives).
    pub anchor: Option<String>,
}

fn io(e: impl std::fmt::Display) -> AuditError {
    AuditError::Store(format!("writing the export: {e}"))
}

/// Write records `from..=to` of `store` to `out`.
pub async fn export(
    store: &AuditStore,
    from: i64,
    to: i64,
    format: Format,
    ctx: &ExportContext,
    out: &mut dyn Write,
) -> Result<ExportSummary, AuditError> {
    let from = match store.bounds().await? {
        Some((first, _)) => from.max(first),
        None => from,
    };
    let anchor = match &ctx.anchor {
        Some(a) => a.clone(),
        None if from <= 1 => GENESIS.to_owned(),
        None => match store.hash_of(from - 1).await? {
            Some(h) => h,
            None => store
                .archives()
                .await?
                .into_iter()
                .find(|a| a.to_seq == from - 1)
                .map(|a| a.last_hash)
                .unwrap_or_else(|| GENESIS.to_owned()),
        },
    };
    let mut header = json!({
        "type": "export", "format": EXPORT_FORMAT, "from": from, "to": to,
        "anchor": anchor, "jwks": ctx.jwks,
        "exported_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    });
    if let Some(tree) = frontier_before(store, from).await? {
        header["tree"] = tree;
    }
    let mut sink = Sink::new(format, out)?;
    sink.line("export", None, &header)?;
    let mut summary = ExportSummary::default();
    let mut rows = store.rows(from, to);
    while let Some(r) = rows.try_next().await? {
        sink.record(&r)?;
        summary.records += 1;
        summary.last_seq = r.seq;
        summary.last_hash = r.hash;
    }
    drop(rows);
    let last = if summary.records > 0 {
        summary.last_seq
    } else {
        to
    };
    let mut seals = store.checkpoints(from, last).await?;
    for c in ctx
        .external
        .iter()
        .filter(|c| c.seq >= from && c.seq <= last)
    {
        if !seals.contains(c) {
            seals.push(c.clone());
        }
    }
    seals.sort_by_key(|c| c.seq);
    for c in &seals {
        match &c.seal {
            Seal::Jws(jws) => {
                let v = serde_json::to_value(jws).map_err(io)?;
                sink.line("checkpoint", Some((c.seq, &c.hash)), &v)?;
            }
            Seal::Note(note) => {
                let v = json!({"type": "note", "seq": c.seq, "hash": c.hash, "note": note});
                sink.line("note", Some((c.seq, &c.hash)), &v)?;
            }
        }
    }
    summary.checkpoints = seals.len();
    sink.finish()?;
    Ok(summary)
}

/// The header's `tree`: the frontier of the tree of the records before `from`, if
/// the store holds it.
async fn frontier_before(store: &AuditStore, from: i64) -> Result<Option<Value>, AuditError> {
    use base64::Engine as _;
    let size = u64::try_from(from - 1).unwrap_or(0);
    let indexes = crate::tlog::tree::frontier(size);
    let stored: std::collections::BTreeMap<u64, _> =
        store.tree_hashes(&indexes).await?.into_iter().collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    let frontier: Option<Vec<String>> = indexes
        .iter()
        .map(|i| stored.get(i).map(|h| b64.encode(h.0)))
        .collect();
    Ok(frontier.map(|f| json!({"size": size, "frontier": f})))
}

enum Sink<'a> {
    Jsonl(&'a mut dyn Write),
    // Boxed: the CSV writer carries its buffer inline.
    Csv(Box<csv::Writer<&'a mut dyn Write>>),
}

const CSV_COLUMNS: [&str; 13] = [
    "type", "seq", "hash", "time", "consumer", "operator", "dataset", "subject", "matter",
    "case_id", "decision", "status", "json",
];

impl<'a> Sink<'a> {
    fn new(format: Format, out: &'a mut dyn Write) -> Result<Self, AuditError> {
        Ok(match format {
            Format::Jsonl => Sink::Jsonl(out),
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                w.write_record(CSV_COLUMNS).map_err(io)?;
                Sink::Csv(Box::new(w))
            }
        })
    }

    fn line(&mut self, kind: &str, seq: Option<(i64, &str)>, v: &Value) -> Result<(), AuditError> {
        match self {
            Sink::Jsonl(w) => {
                let line = if kind == "checkpoint" {
                    json!({"type": "checkpoint", "checkpoint": v})
                } else {
                    v.clone()
                };
                writeln!(w, "{line}").map_err(io)
            }
            Sink::Csv(w) if kind == "note" => {
                let (s, h) = seq
                    .map(|(s, h)| (s.to_string(), h.to_owned()))
                    .unwrap_or_default();
                let mut row = vec![kind.to_owned(), s, h];
                row.extend(std::iter::repeat_n(String::new(), 9));
                row.push(json!({"note": v["note"]}).to_string());
                w.write_record(&row).map_err(io)
            }
            Sink::Csv(w) => {
                let (s, h) = seq
                    .map(|(s, h)| (s.to_string(), h.to_owned()))
                    .unwrap_or_default();
                let mut row = vec![kind.to_owned(), s, h];
                row.extend(std::iter::repeat_n(String::new(), 9));
                row.push(v.to_string());
                w.write_record(&row).map_err(io)
            }
        }
    }

    fn record(&mut self, r: &Row) -> Result<(), AuditError> {
        match self {
            // The stored canonical JSON is written as it is: no re-serialization.
            Sink::Jsonl(w) => writeln!(
                w,
                "{{\"type\":\"record\",\"seq\":{},\"hash\":\"{}\",\"record\":{}}}",
                r.seq, r.hash, r.record
            )
            .map_err(io),
            Sink::Csv(w) => {
                let v: Value = serde_json::from_str(&r.record).unwrap_or(Value::Null);
                let s = |k: &str| match &v[k] {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                w.write_record([
                    "record".to_owned(),
                    r.seq.to_string(),
                    r.hash.clone(),
                    s("time"),
                    s("consumer"),
                    s("operator"),
                    s("dataset"),
                    s("subject"),
                    s("matter"),
                    s("case_id"),
                    s("decision"),
                    s("status"),
                    r.record.clone(),
                ])
                .map_err(io)
            }
        }
    }

    fn finish(self) -> Result<(), AuditError> {
        match self {
            Sink::Jsonl(w) => w.flush().map_err(io),
            Sink::Csv(mut w) => w.flush().map_err(io),
        }
    }
}

/// One line of a JSON Lines export, parsed.
#[derive(Debug, Clone)]
pub enum ExportLine {
    /// The header.
    Header(Value),
    /// A record: seq, hash and the record's canonical JSON (re-canonicalized).
    Record(Row),
    /// A checkpoint: a signed note, or a JWS checkpoint.
    Checkpoint(StoredCheckpoint),
}

/// Parse one line of a JSON Lines export.
pub fn parse_line(line: &str) -> Result<ExportLine, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    match v["type"].as_str() {
        Some("export") => Ok(ExportLine::Header(v)),
        Some("record") => {
            let record = crate::canonical::canonical(&v["record"]).map_err(|e| e.to_string())?;
            Ok(ExportLine::Record(Row {
                seq: v["seq"].as_i64().ok_or("record without seq")?,
                hash: v["hash"].as_str().ok_or("record without hash")?.to_owned(),
                record: String::from_utf8(record).map_err(|e| e.to_string())?,
            }))
        }
        Some("checkpoint") => {
            let jws: crate::Checkpoint = serde_json::from_value(v["checkpoint"].clone())
                .map_err(|e| format!("bad checkpoint: {e}"))?;
            Ok(ExportLine::Checkpoint(StoredCheckpoint {
                seq: jws.seq,
                hash: jws.hash.clone(),
                seal: Seal::Jws(jws),
            }))
        }
        Some("note") => Ok(ExportLine::Checkpoint(StoredCheckpoint::note(
            v["seq"].as_i64().ok_or("note without seq")?,
            v["hash"].as_str().ok_or("note without hash")?,
            v["note"].as_str().ok_or("note without its text")?,
        ))),
        other => Err(format!("unknown line type {other:?}")),
    }
}

/// Property tests: any line of an export given to `verify` is read or refused,
/// never a panic.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::test_support::json_value;

    /// Lines shaped like an export's, with any values in them.
    fn line() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\PC{0,200}",
            any::<String>(),
            json_value().prop_map(|v| v.to_string()),
            (json_value(), json_value(), json_value()).prop_map(|(seq, hash, record)| {
                json!({"type": "record", "seq": seq, "hash": hash, "record": record}).to_string()
            }),
            json_value().prop_map(|c| json!({"type": "checkpoint", "checkpoint": c}).to_string()),
            json_value().prop_map(|t| json!({"type": t}).to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_line_is_read_or_refused(line in line()) {
            if let Err(e) = parse_line(&line) {
                prop_assert!(!e.is_empty());
            }
        }
    }
}
