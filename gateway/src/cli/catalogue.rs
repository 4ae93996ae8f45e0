//! `tongban catalogue`: the datasets the config declares (owners, fields with type,
//! sharing class and description), the matters and bundles, and with `--as` the
//! agreements an identity holds and what each allows today — the document
//! `GET /v1/catalogue` answers, read from the config and the state database.

use clap::{Args, ValueEnum};

use super::Failure;
use crate::catalogue::{to_text, Catalogue};
use crate::policy_sync::PolicyService;

/// `tongban catalogue …`
#[derive(Debug, Args)]
pub struct CatalogueArgs {
    #[command(flatten)]
    pub(crate) config: super::ConfigFile,
    /// Also show what this identity (`urn:tongban:<dept>:<system>`) may ask for:
    /// the agreements it holds, directly or through a role, and their state today.
    #[arg(long = "as", value_name = "IDENTITY")]
    identity: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// For people.
    Text,
    /// The document `GET /v1/catalogue` answers.
    Json,
}

/// Run `tongban catalogue`.
pub async fn run(args: CatalogueArgs) -> Result<(), Failure> {
    let config = args.config.load()?;
    if let Some(identity) = &args.identity {
        identity
            .parse::<certs::Identity>()
            .map_err(|e| Failure::Usage(format!("--as {identity:?}: {e}")))?;
    }
    let catalogue = Catalogue::new(&config);
    let doc = match &args.identity {
        None => catalogue.public(),
        Some(identity) => {
            let policy = PolicyService::open_idle(&config)
                .await
                .map_err(|e| Failure::Failed(format!("{}: {e}", config.state_db)))?;
            catalogue
                .for_caller(&policy, Some(identity), chrono::Utc::now())
                .await
                .map_err(|e| Failure::Failed(format!("{}: {e}", config.state_db)))?
        }
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default()),
        Format::Text => print!("{}", to_text(&doc)),
    }
    Ok(())
}
