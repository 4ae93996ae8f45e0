//! `tongban report usage`: usage and evaluation figures computed from the audit log
//! (the same figures as `GET /admin/v1/usage`), as text, JSON or CSV.

use std::path::Path;

use audit::{Scope, UsageQuery};
use clap::{Args, Subcommand, ValueEnum};

use super::Failure;
use crate::http::usage::providers;

/// `tongban report` arguments.
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub config: super::ConfigFile,
    /// Which report.
    #[command(subcommand)]
    pub command: ReportCommand,
}

/// The reports.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Per agreement, consumer, provider and matter, by day: lookups, refusals by
    /// reason, answers by status, source latency and availability, documents not
    /// asked of citizens.
    Usage {
        /// Received at or after (RFC 3339, or a date YYYY-MM-DD in China Standard Time).
        #[arg(long)]
        from: Option<String>,
        /// Received before (RFC 3339), or up to the end of a date.
        #[arg(long)]
        to: Option<String>,
        /// Only this department's use and the use of the datasets it provides (what
        /// its dept-admin sees through the API).
        #[arg(long)]
        department: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = UsageFormat::Text)]
        format: UsageFormat,
    },
}

/// How `report usage` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UsageFormat {
    /// Tables per dimension, totals over the range.
    Text,
    /// The whole report, every group with its daily series (the API's answer).
    Json,
    /// One row per group and day with accesses, plus each group's total.
    Csv,
}

/// Run a report command.
pub async fn run(args: ReportArgs) -> Result<(), Failure> {
    match args.command {
        ReportCommand::Usage {
            from,
            to,
            department,
            format,
        } => {
            let out = usage(&args.config.path, from, to, department, format).await?;
            print!("{out}");
            Ok(())
        }
    }
}

/// The usage report of the gateway configured in `config`, formatted.
pub async fn usage(
    config: &Path,
    from: Option<String>,
    to: Option<String>,
    department: Option<String>,
    format: UsageFormat,
) -> Result<String, Failure> {
    let mut range = audit::Filter::default();
    for (name, value) in [("from", from), ("to", to)] {
        if let Some(v) = value {
            range
                .set(name, &v)
                .map_err(|e| Failure::Usage(format!("--{e}")))?;
        }
    }
    let (config, store) = super::audit::open(config).await?;
    let query = UsageQuery {
        range,
        scope: department.map_or(Scope::All, Scope::Department),
        providers: providers(&config),
    };
    let report = audit::usage_report(&store, &query)
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    Ok(match format {
        UsageFormat::Text => report.to_text(),
        UsageFormat::Csv => report.to_csv(),
        UsageFormat::Json => {
            let mut s = serde_json::to_string_pretty(&report)
                .map_err(|e| Failure::Failed(e.to_string()))?;
            s.push('\n');
            s
        }
    })
}
