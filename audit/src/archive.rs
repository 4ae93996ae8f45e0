//! Retention: records older than the configured age move out of the store into
//! gzip-compressed export files (the JSON Lines export format), which keep verifying
//! against the chain and the checkpoints.
//!
//! An archive always ends at a checkpointed record, so every archive file is sealed
//! by a signature and the first record left in the store chains onto the archive's
//! last hash (kept in `audit_archive`, with the file's SHA-256). The file is written
//! and synced before the records are deleted, in one transaction with the archive row.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use super::chain::Row;
use super::error::AuditError;
use super::export::{export, parse_line, ExportContext, ExportLine, Format};
use super::store::{ArchiveEntry, AuditStore};

/// Move the records received before `before` (RFC 3339 UTC, as stored) into a new
/// archive file in `dir`, up to the last checkpoint among them. Returns what was
/// archived, or `None` when nothing sealed is old enough.
pub async fn archive(
    store: &AuditStore,
    before: &str,
    dir: &Path,
    ctx: &ExportContext,
) -> Result<Option<(ArchiveEntry, u64)>, AuditError> {
    let Some((first, last)) = store.bounds().await? else {
        return Ok(None);
    };
    // The archived part is a prefix of the chain: it stops before the first record
    // that is young enough to keep.
    let young = store.first_seq_from(before).await?;
    let candidate = young.map(|s| s - 1).unwrap_or(last);
    let Some(cut) = store
        .checkpoints(first, candidate)
        .await?
        .last()
        .map(|c| c.seq)
    else {
        return Ok(None);
    };
    let e = |what: &str, err: std::io::Error| AuditError::Store(format!("archive {what}: {err}"));
    std::fs::create_dir_all(dir).map_err(|err| e(&dir.display().to_string(), err))?;
    let name = format!("audit-{first:012}-{cut:012}.jsonl.gz");
    let path = dir.join(&name);
    let partial = dir.join(format!("{name}.partial"));
    let file = File::create(&partial).map_err(|err| e(&name, err))?;
    let mut gz = GzEncoder::new(
        std::io::BufWriter::new(file),
        flate2::Compression::default(),
    );
    let summary = export(store, first, cut, Format::Jsonl, ctx, &mut gz).await?;
    let file = gz
        .finish()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .map_err(|err| e(&name, err))?;
    file.sync_all().map_err(|err| e(&name, err))?;
    drop(file);
    std::fs::rename(&partial, &path).map_err(|err| e(&name, err))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    let entry = ArchiveEntry {
        from_seq: first,
        to_seq: cut,
        last_hash: summary.last_hash.clone(),
        file: name,
        sha256: file_sha256(&path).map_err(|err| e("checksum", err))?,
    };
    if summary.last_seq != cut || summary.records != u64::try_from(cut - first + 1).unwrap_or(0) {
        return Err(AuditError::Store(format!(
            "archive: records {first}..{cut} are not all in the store (found {}); run `tongban audit verify`",
            summary.records
        )));
    }
    let deleted = store.commit_archive(&entry).await?;
    Ok(Some((entry, deleted)))
}

fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex::encode(ctx.finish().as_ref()))
}

/// The records of an archive file, after checking its SHA-256.
pub fn read_archive(
    path: &Path,
    sha256: &str,
) -> Result<impl Iterator<Item = Result<Row, String>>, String> {
    let actual = file_sha256(path).map_err(|e| e.to_string())?;
    if actual != sha256 {
        return Err(format!(
            "the file's SHA-256 is {actual}, the store recorded {sha256}: the file was changed"
        ));
    }
    let file = File::open(path).map_err(|e| e.to_string())?;
    let lines = BufReader::new(GzDecoder::new(file)).lines();
    let path: PathBuf = path.to_owned();
    Ok(lines.enumerate().filter_map(move |(i, line)| {
        let at = |e: String| format!("{}:{}: {e}", path.display(), i + 1);
        match line
            .map_err(|e| at(e.to_string()))
            .and_then(|l| parse_line(&l).map_err(at))
        {
            Ok(ExportLine::Record(r)) => Some(Ok(r)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        }
    }))
}
