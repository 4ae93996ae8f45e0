//! `tongban audit …`: the security officer's tools.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use sqlx::ConnectOptions as _;

use super::Failure;
use crate::audit::{state_db_options, verify_chain};
use crate::config::Config;

/// `tongban audit` arguments.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Which tool.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// `tongban audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain; name the first bad record.
    Verify {
        /// Config file.
        #[arg(long, env = "TONGBAN_CONFIG", default_value = "./tongban.toml")]
        config: PathBuf,
    },
}

/// Run an audit command.
pub async fn run(args: AuditArgs) -> Result<(), Failure> {
    match args.command {
        AuditCommand::Verify { config } => verify(&config).await,
    }
}

async fn verify(config: &Path) -> Result<(), Failure> {
    let config = Config::load(config).map_err(|e| Failure::Usage(e.to_string()))?;
    let path = crate::app::sqlite_path(&config).map_err(|e| Failure::Usage(e.to_string()))?;
    let mut conn = state_db_options(path)
        .create_if_missing(false)
        .connect()
        .await
        .map_err(|e| Failure::Failed(format!("{}: {e}", path.display())))?;
    let report = verify_chain(&mut conn)
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    match report.failure {
        None => {
            println!(
                "OK: audit chain verified: {} records, head seq {} hash {}",
                report.records, report.head.0, report.head.1
            );
            Ok(())
        }
        Some(f) => Err(Failure::Failed(format!(
            "FAILED: audit chain broken at seq {}: {} ({} records verified before it)",
            f.seq, f.reason, report.records
        ))),
    }
}
