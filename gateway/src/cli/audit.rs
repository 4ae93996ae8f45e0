//! `tongban audit …`: the security officer's tools.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use audit::signing::Signer;
use audit::{
    self, merge_jwks, read_checkpoint_file, AuditStore, ExportContext, Filter, FollowError, Format,
    StoredCheckpoint, VerifyOptions,
};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use super::Failure;
use crate::config::Config;

/// `tongban audit` arguments.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub config: super::ConfigFile,
    /// Which tool.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// Text for people, JSON for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable text.
    Text,
    /// JSON.
    Json,
}

/// The search filters, shared by `search`, `report` and `subject`.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Received at or after (RFC 3339, or a date YYYY-MM-DD in China Standard Time).
    #[arg(long)]
    pub from: Option<String>,
    /// Received before (RFC 3339), or up to the end of a date.
    #[arg(long)]
    pub to: Option<String>,
    /// Consumer identity (urn:tongban:<dept>:<system>).
    #[arg(long)]
    pub consumer: Option<String>,
    /// Operator (clerk) id.
    #[arg(long)]
    pub operator: Option<String>,
    /// Dataset.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Subject identifier.
    #[arg(long)]
    pub subject: Option<String>,
    /// Matter.
    #[arg(long)]
    pub matter: Option<String>,
    /// Case id.
    #[arg(long)]
    pub case_id: Option<String>,
    /// allow, deny or error.
    #[arg(long)]
    pub decision: Option<String>,
}

/// `tongban audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain, archives, the Merkle tree and signed checkpoints; name the
    /// first bad record.
    Verify {
        /// First sequence number to check (default: the start).
        #[arg(long)]
        from: Option<i64>,
        /// Last sequence number to check (default: the end).
        #[arg(long)]
        to: Option<i64>,
        /// More checkpoint copies kept elsewhere (JSON lines), to check against.
        #[arg(long = "checkpoints")]
        checkpoints: Vec<PathBuf>,
        /// More JWKS files whose keys are trusted to sign checkpoints.
        #[arg(long)]
        jwks: Vec<PathBuf>,
    },
    /// Search records; prints one JSON record per line, or a table.
    Search {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many records.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Only records after this sequence number (the next page).
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Json)]
        format: Output,
    },
    /// Export records with their checkpoints and public keys, for verification elsewhere.
    Export {
        /// jsonl or csv.
        #[arg(long, value_enum)]
        format: Format,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// First sequence number.
        #[arg(long)]
        from: Option<i64>,
        /// Last sequence number.
        #[arg(long)]
        to: Option<i64>,
    },
    /// A citizen's access report: who looked at this subject's records, why and when.
    Subject {
        /// The subject identifier (resident ID, credit code, license id).
        id: String,
        /// Received at or after.
        #[arg(long)]
        from: Option<String>,
        /// Received before.
        #[arg(long)]
        to: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        format: Output,
    },
    /// Anomaly report: volume, hours, case fan-out, denial bursts, revoked certificates.
    Report {
        #[command(flatten)]
        filter: FilterArgs,
        /// Certificate index naming revoked certificates (default: audit.anomaly.revoked_index).
        #[arg(long)]
        revoked: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        format: Output,
    },
    /// Move records older than the retention period into compressed archive files.
    Archive {
        /// Archive records received before this time instead of audit.retention_days ago.
        #[arg(long)]
        before: Option<String>,
    },
    /// Print the latest stored checkpoint: the C2SP signed note of the Merkle tree.
    Checkpoint,
    /// Print the inclusion proof of leaf INDEX (record INDEX + 1) as JSON.
    Prove {
        /// The leaf index (a record's seq minus one).
        #[arg(long)]
        index: u64,
        /// The tree size to prove it in (default: the stored tree).
        #[arg(long)]
        size: Option<u64>,
    },
    /// Print the consistency proof from the tree of OLD records to a larger one as JSON.
    Consistency {
        /// The older tree size.
        #[arg(long)]
        old: u64,
        /// The newer tree size (default: the stored tree).
        #[arg(long)]
        size: Option<u64>,
    },
}

/// Run an audit command.
pub async fn run(args: AuditArgs) -> Result<(), Failure> {
    let config = args.config.path;
    match args.command {
        AuditCommand::Verify {
            from,
            to,
            checkpoints,
            jwks,
        } => verify(&config, from, to, &checkpoints, &jwks).await,
        AuditCommand::Search {
            filter,
            limit,
            after,
            format,
        } => search(&config, &filter, limit, after, format).await,
        AuditCommand::Export {
            format,
            out,
            from,
            to,
        } => export(&config, format, out.as_deref(), from, to).await,
        AuditCommand::Subject {
            id,
            from,
            to,
            format,
        } => {
            let range = FilterArgs {
                from,
                to,
                ..FilterArgs::default()
            };
            subject(&config, &id, &range, format).await
        }
        AuditCommand::Report {
            filter,
            revoked,
            format,
        } => report(&config, &filter, revoked.as_deref(), format).await,
        AuditCommand::Archive { before } => archive(&config, before.as_deref()).await,
        AuditCommand::Checkpoint => checkpoint(&config).await,
        AuditCommand::Prove { index, size } => {
            let (_, store) = open(&config).await?;
            let p = store
                .inclusion_proof(index, size)
                .await
                .map_err(follow_failure)?;
            let out = serde_json::json!({"index": index, "size": p.size, "inclusion": p.base64()});
            println!("{out}");
            Ok(())
        }
        AuditCommand::Consistency { old, size } => {
            let (_, store) = open(&config).await?;
            let p = store
                .consistency_proof(old, size)
                .await
                .map_err(follow_failure)?;
            let out = serde_json::json!({"old": old, "size": p.size, "consistency": p.base64()});
            println!("{out}");
            Ok(())
        }
    }
}

/// An argument out of range is bad usage (exit 2); anything else a failure.
fn follow_failure(e: FollowError) -> Failure {
    match e {
        FollowError::Argument { .. } | FollowError::Beyond { .. } => usage(format!("--{e}")),
        FollowError::Store(e) => failed(e),
    }
}

async fn checkpoint(config: &Path) -> Result<(), Failure> {
    let (_, store) = open(config).await?;
    match store.latest_note().await.map_err(failed)? {
        Some(note) => {
            print!("{note}");
            Ok(())
        }
        None => Err(failed("no signed checkpoint is stored yet")),
    }
}

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure::Usage(e.to_string())
}

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::Failed(e.to_string())
}

pub(super) async fn open(config: &Path) -> Result<(Config, AuditStore), Failure> {
    let config = Config::load(config).map_err(usage)?;
    let store = AuditStore::open_existing(&crate::audit_config::database(&config.state_db))
        .await
        .map_err(|e| failed(format!("{}: {e}", config.state_db)))?;
    Ok((config, store))
}

/// The keys trusted to sign checkpoints: this gateway's, `audit.trusted_jwks` and extras.
fn trusted_keys(config: &Config, extra: &[PathBuf]) -> Result<Value, Failure> {
    let own = Signer::load(&config.signing_key).map_err(usage)?.jwks();
    let mut docs = vec![own];
    for p in config.audit.trusted_jwks.iter().chain(extra) {
        let text =
            std::fs::read_to_string(p).map_err(|e| usage(format!("{}: {e}", p.display())))?;
        docs.push(
            serde_json::from_str(&text)
                .map_err(|e| usage(format!("{}: not a JWKS document: {e}", p.display())))?,
        );
    }
    Ok(merge_jwks(&docs))
}

/// Checkpoints kept outside the store: the config's copy and any extra files.
fn external_checkpoints(
    config: &Config,
    extra: &[PathBuf],
) -> Result<Vec<StoredCheckpoint>, Failure> {
    let mut out = Vec::new();
    for p in config.audit.checkpoint_file.iter().chain(extra) {
        out.extend(read_checkpoint_file(p).map_err(failed)?);
    }
    Ok(out)
}

async fn verify(
    config: &Path,
    from: Option<i64>,
    to: Option<i64>,
    checkpoints: &[PathBuf],
    jwks: &[PathBuf],
) -> Result<(), Failure> {
    let (config, store) = open(config).await?;
    let mut reached = (0, 0);
    let outcome = verify_store(&config, &store, (from, to), checkpoints, jwks, &mut reached).await;
    // Kept for the health API and console; a run that could not start is not one.
    let summary = match &outcome {
        Ok(()) => Some(format!(
            "OK: {} records verified up to seq {}",
            reached.0, reached.1
        )),
        Err(Failure::Failed(reason)) => Some(reason.clone()),
        Err(Failure::Usage(_)) => None,
    };
    if let Some(summary) = summary {
        let range = match (from, to) {
            (None, None) => String::new(),
            _ => format!(
                " (range {}..{})",
                from.map(|f| f.to_string()).unwrap_or_default(),
                to.map(|t| t.to_string()).unwrap_or_default()
            ),
        };
        let run = ::audit::VerifyRun {
            finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ok: outcome.is_ok(),
            records: reached.0,
            head_seq: reached.1,
            summary: format!("{summary}{range}"),
        };
        if let Err(e) = store.add_verify_run(&run).await {
            eprintln!("warning: this run's outcome was not kept for the health page: {e}");
        }
    }
    outcome
}

/// Verify `store`; `reached` gets the records verified and the head reached.
async fn verify_store(
    config: &Config,
    store: &AuditStore,
    (from, to): (Option<i64>, Option<i64>),
    checkpoints: &[PathBuf],
    jwks: &[PathBuf],
    reached: &mut (i64, i64),
) -> Result<(), Failure> {
    let opts = VerifyOptions {
        from,
        to,
        jwks: trusted_keys(config, jwks)?,
        external: external_checkpoints(config, checkpoints)?,
        archive_dir: Some(config.audit.archive_dir.clone()),
    };
    let total = match store.bounds().await.map_err(failed)? {
        Some((first, hi)) => {
            let lo = from.unwrap_or(1).max(first);
            u64::try_from(to.unwrap_or(hi).min(hi) - lo + 1).unwrap_or(0)
        }
        None => 0,
    };
    let bar = indicatif::ProgressBar::new(total).with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} verifying [{bar:40}] {human_pos}/{human_len} records ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let report = audit::verify(store, &opts, |n| bar.set_position(n))
        .await
        .map_err(failed)?;
    bar.finish_and_clear();
    *reached = (
        i64::try_from(report.records).unwrap_or(i64::MAX),
        report.head.0,
    );
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        report.records as f64 / secs
    } else {
        0.0
    };
    match report.failure {
        None => {
            let unsealed = report.head.0 - report.sealed;
            println!(
                "OK: audit chain verified: {} records ({} from archives), head seq {} hash {}",
                report.records, report.archived, report.head.0, report.head.1
            );
            println!(
                "    {} signed notes and {} older JWS checkpoints; sealed up to seq {}{}; {:.0} records/s",
                report.notes,
                report.checkpoints,
                report.sealed,
                if unsealed > 0 {
                    format!(" ({unsealed} newer records not sealed yet)")
                } else {
                    String::new()
                },
                rate
            );
            match &report.tree {
                Some(t) => println!(
                    "    Merkle tree: {} leaves recomputed, {} audit_tree hashes equal to them{}; signed roots met up to tree size {}",
                    t.leaves,
                    t.rows,
                    match t.stored_to {
                        Some(n) => format!(" (the stored tree covers {n} records: the gateway catches it up when it next starts)"),
                        None => String::new(),
                    },
                    t.sealed
                ),
                None => println!(
                    "    Merkle tree: not checked (no stored tree frontier where this range starts)"
                ),
            }
            witnessed(config, store, report.head.0).await
        }
        Some(f) => Err(Failure::Failed(format!(
            "FAILED: audit chain broken at seq {}: {} ({} records verified before it)",
            f.seq, f.reason, report.records
        ))),
    }
}

/// How far each configured witness vouches for the log whose head is `head`; a
/// witness that cosigned a tree the store no longer holds fails verification.
async fn witnessed(config: &Config, store: &AuditStore, head: i64) -> Result<(), Failure> {
    if config.audit.witnesses.is_empty() {
        println!("    not witnessed: no [audit] witnesses configured");
        return Ok(());
    }
    let signer = ::audit::signing::Signer::load(&config.signing_key).map_err(usage)?;
    let log = ::audit::tlog::note::Verifier::new(
        &crate::audit_config::origin(config),
        ::audit::tlog::note::TYPE_ED25519,
        signer.public_key(),
    )
    .map_err(usage)?;
    for w in &config.audit.witnesses {
        let witness = crate::config::witness_verifier(w).map_err(usage)?;
        match ::audit::witnessed(store, &log, &witness)
            .await
            .map_err(failed)?
        {
            ::audit::Witnessed::Upto { size, time } => {
                let behind = u64::try_from(head).unwrap_or(0).saturating_sub(size);
                let when = chrono::DateTime::from_timestamp(i64::try_from(time).unwrap_or(0), 0)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default();
                println!(
                    "    witness {} cosigned the tree of {size} records at {when}{}",
                    witness.name,
                    if behind > 0 {
                        format!(" ({behind} newer records not witnessed yet)")
                    } else {
                        String::new()
                    }
                );
            }
            ::audit::Witnessed::Never => {
                println!(
                    "    witness {} has cosigned nothing kept in this store",
                    witness.name
                );
            }
            ::audit::Witnessed::Contradicted { size, reason } => {
                return Err(Failure::Failed(format!(
                    "FAILED: witness {} cosigned a tree of {size} records that this store does not hold: {reason} (history rewritten at or before record {size})",
                    witness.name
                )));
            }
        }
    }
    Ok(())
}

fn filter_of(args: &FilterArgs) -> Result<Filter, Failure> {
    let mut f = Filter::default();
    let pairs = [
        ("from", &args.from),
        ("to", &args.to),
        ("consumer", &args.consumer),
        ("operator", &args.operator),
        ("dataset", &args.dataset),
        ("subject", &args.subject),
        ("matter", &args.matter),
        ("case_id", &args.case_id),
        ("decision", &args.decision),
    ];
    for (name, value) in pairs {
        if let Some(v) = value {
            f.set(name, v).map_err(|e| usage(format!("--{e}")))?;
        }
    }
    Ok(f)
}

async fn search(
    config: &Path,
    args: &FilterArgs,
    limit: usize,
    after: i64,
    format: Output,
) -> Result<(), Failure> {
    let filter = filter_of(args)?;
    let (_, store) = open(config).await?;
    let rows = store
        .search(&filter, after, limit.max(1))
        .await
        .map_err(failed)?;
    let mut out = std::io::stdout().lock();
    for r in &rows {
        let line = match format {
            Output::Json => r.record.clone(),
            Output::Text => {
                let v: Value = serde_json::from_str(&r.record).unwrap_or(Value::Null);
                let s = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
                format!(
                    "{:>8} {} {:<5} {} {} op={} {} {} case={} matter={} status={}",
                    r.seq,
                    s("time"),
                    s("decision"),
                    s("consumer"),
                    s("path"),
                    s("operator"),
                    s("dataset"),
                    s("subject"),
                    s("case_id"),
                    s("matter"),
                    v["status"]
                )
            }
        };
        writeln!(out, "{line}").map_err(failed)?;
    }
    if rows.len() == limit.max(1) {
        if let Some(last) = rows.last() {
            eprintln!("more records: repeat with --after {}", last.seq);
        }
    }
    Ok(())
}

async fn export(
    config: &Path,
    format: Format,
    out: Option<&Path>,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<(), Failure> {
    let (config, store) = open(config).await?;
    let ctx = ExportContext {
        jwks: trusted_keys(&config, &[])?,
        external: external_checkpoints(&config, &[])?,
        anchor: None,
    };
    let (from, to) = (from.unwrap_or(1), to.unwrap_or(i64::MAX));
    let summary = match out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| usage(format!("{}: {e}", path.display())))?;
            let mut w = std::io::BufWriter::new(file);
            let s = audit::export(&store, from, to, format, &ctx, &mut w)
                .await
                .map_err(failed)?;
            w.into_inner()
                .map_err(|e| failed(e.into_error()))?
                .sync_all()
                .map_err(failed)?;
            s
        }
        None => {
            let mut w = std::io::BufWriter::new(std::io::stdout().lock());
            audit::export(&store, from, to, format, &ctx, &mut w)
                .await
                .map_err(failed)?
        }
    };
    eprintln!(
        "exported {} records (to seq {}) and {} checkpoints",
        summary.records, summary.last_seq, summary.checkpoints
    );
    Ok(())
}

async fn subject(
    config: &Path,
    id: &str,
    range: &FilterArgs,
    format: Output,
) -> Result<(), Failure> {
    let range = filter_of(range)?;
    let (_, store) = open(config).await?;
    let report = audit::subject_report(&store, id, &range)
        .await
        .map_err(failed)?;
    match format {
        Output::Text => print!("{}", report.to_text()),
        Output::Json => println!("{}", serde_json::to_string_pretty(&report).map_err(failed)?),
    }
    Ok(())
}

async fn report(
    config: &Path,
    args: &FilterArgs,
    revoked: Option<&Path>,
    format: Output,
) -> Result<(), Failure> {
    let filter = filter_of(args)?;
    let (config, store) = open(config).await?;
    let rules = crate::audit_config::anomaly_rules(&config, revoked).map_err(usage)?;
    let found = audit::anomalies(&store, &filter, &rules)
        .await
        .map_err(failed)?;
    match format {
        Output::Json => println!("{}", serde_json::to_string_pretty(&found).map_err(failed)?),
        Output::Text if found.is_empty() => println!("No anomalies."),
        Output::Text => {
            println!("{} anomalies:", found.len());
            for f in &found {
                println!(
                    "\n[{}] {}\n  {}\n  {} .. {}; records {:?}",
                    f.rule, f.who, f.detail, f.first, f.last, f.seqs
                );
            }
        }
    }
    Ok(())
}

async fn archive(config: &Path, before: Option<&str>) -> Result<(), Failure> {
    let (config, store) = open(config).await?;
    let before = match before {
        Some(b) => audit::parse_time(b, false).map_err(|e| usage(format!("--before: {e}")))?,
        None if config.audit.retention_days == 0 => {
            return Err(usage(
                "audit.retention_days is 0 (keep everything); set it or pass --before",
            ))
        }
        None => (chrono::Utc::now()
            - chrono::Duration::days(i64::from(config.audit.retention_days)))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    };
    let ctx = ExportContext {
        jwks: trusted_keys(&config, &[])?,
        external: external_checkpoints(&config, &[])?,
        anchor: None,
    };
    match audit::archive(&store, &before, &config.audit.archive_dir, &ctx)
        .await
        .map_err(failed)?
    {
        Some((entry, deleted)) => println!(
            "archived records {}..{} ({deleted} removed from the store) into {}",
            entry.from_seq,
            entry.to_seq,
            config.audit.archive_dir.join(&entry.file).display()
        ),
        None => println!("nothing to archive: no sealed records received before {before}"),
    }
    Ok(())
}
