//! `tongban config check FILE`: everything `serve` checks before it binds a port —
//! the file with its `TONGBAN_*` variables, the TLS files, the signing key, the
//! outbound certificates, the log filter and the OTLP endpoint — without serving; and
//! the agreements already in a SQLite state database against the datasets the file
//! declares, so that a field reclassified `closed` is caught while an agreement still
//! names it. A PostgreSQL state database is not contacted.

use std::path::PathBuf;

use audit::signing::Signer;
use clap::{Args, Subcommand};

use super::Failure;
use crate::config::{Config, SourceKind, StateDb};

/// `tongban config …`
#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub(crate) config: super::ConfigFile,
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a config file (with the TONGBAN_* variables set now) without serving:
    /// exit 0 with a summary, or 2 naming the file and line, or the variable, at fault.
    Check {
        /// The config file (default: --config).
        file: Option<PathBuf>,
    },
}

/// Run `tongban config …`.
pub async fn run(args: ConfigArgs) -> Result<(), Failure> {
    match args.command {
        ConfigCommand::Check { file } => {
            let file = super::ConfigFile {
                path: file.unwrap_or(args.config.path),
            };
            let config = file.load()?;
            let summary = check(&config).map_err(Failure::Usage)?;
            let agreements = check_agreements(&config).await.map_err(Failure::Usage)?;
            println!("{summary}\n{agreements}");
            Ok(())
        }
    }
}

/// The agreements of a SQLite state database that exists, against the config's
/// datasets: one naming a `closed` field is an error naming the agreement, dataset
/// and field; one naming a dataset, field, provider or matter the config does not
/// declare is a warning (it can never allow anything). A summary line.
pub async fn check_agreements(config: &Config) -> Result<String, String> {
    let path = match &config.state_db {
        StateDb::Sqlite(path) if path.is_file() => path,
        StateDb::Sqlite(_) => return Ok("  agreements: none yet (no state database)".into()),
        StateDb::Postgres(_) => {
            return Ok("  agreements: not checked (PostgreSQL is not contacted)".into())
        }
    };
    let at = |e: &dyn std::fmt::Display| format!("{}: state_db: {e}", config.path.display());
    let store = policy::AgreementStore::connect(&policy::AgreementStore::sqlite_url(path), 1)
        .await
        .map_err(|e| at(&e))?;
    let agreements = store.agreements().await.map_err(|e| at(&e))?;
    let catalogue = crate::policy_sync::catalogue(config);
    let mut closed = Vec::new();
    let mut lines = vec![format!("  {} agreement(s) checked", agreements.len())];
    for a in &agreements {
        for field in a.fields.keys() {
            if catalogue.class_of(&a.dataset, field) == Some(policy::SharingClass::Closed) {
                closed.push(format!(
                    "agreement {} names field {field:?} of dataset {}, which the config \
                     declares closed (never shared): revoke or narrow the agreement",
                    a.id, a.dataset
                ));
            }
        }
        if let Err(e) = catalogue.check(a) {
            lines.push(format!("  warning: {e}"));
        }
    }
    if closed.is_empty() {
        Ok(lines.join("\n"))
    } else {
        Err(format!("{}: {}", config.path.display(), closed.join("; ")))
    }
}

/// What `serve` would build from `config` before binding, checked; a short summary.
pub fn check(config: &Config) -> Result<String, String> {
    let at =
        |what: &str, e: &dyn std::fmt::Display| format!("{}: {what}: {e}", config.path.display());
    let trust = certs::server_trust(&config.tls.files()).map_err(|e| at("tls", &e))?;
    let signer = Signer::load(&config.signing_key).map_err(|e| at("signing_key", &e))?;
    for s in &config.sources {
        if let (SourceKind::Http, Some(tls)) = (s.kind, &s.tls) {
            certs::client_config(
                &tls.ca,
                Some((tls.cert.as_path(), tls.key.as_path())),
                Vec::new(),
            )
            .map_err(|e| at(&format!("sources {}: TLS", s.name), &e))?;
        }
    }
    tracing_subscriber::EnvFilter::try_new(&config.telemetry.log_level)
        .map_err(|e| at("telemetry.log_level", &e))?;
    let otlp = &config.telemetry.otlp_endpoint;
    if !otlp.is_empty() {
        let uri: http::Uri = otlp
            .parse()
            .map_err(|e| at(&format!("telemetry.otlp_endpoint {otlp:?}"), &e))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(at(
                "telemetry.otlp_endpoint",
                &format!("{otlp:?} is not an http:// or https:// URL"),
            ));
        }
    }

    let mut lines = vec![format!("OK: {}", config.path.display())];
    let vars: Vec<&str> = config.env.names().collect();
    if !vars.is_empty() {
        lines.push(format!("  from the environment: {}", vars.join(", ")));
    }
    lines.push(format!(
        "  node {}; counter API https://{} (mTLS); ops http://{}",
        config.node, config.listen, config.ops_listen
    ));
    lines.push(format!("  state_db {} (not contacted)", config.state_db));
    let server = trust.server_chain.first();
    lines.push(format!(
        "  tls: {}{}; {} client CA(s); {} CRL(s)",
        server.map_or_else(|| "server certificate".to_owned(), |c| c.label()),
        server.map_or_else(String::new, |c| format!(
            " until {}",
            certs::rfc3339(c.not_after)
        )),
        trust.client_cas.len(),
        trust.crls.len(),
    ));
    for w in &trust.warnings {
        lines.push(format!("  warning: {w}"));
    }
    lines.push(format!("  signing key {}", signer.kid()));
    lines.push(format!(
        "  {} source(s), {} dataset(s), {} bundle(s); {} matter(s)",
        config.sources.len(),
        config.datasets.len(),
        config.bundles.len(),
        config.policy.matters.len()
    ));
    lines.push(format!(
        "  logs {} at {}; traces {}",
        config.telemetry.log_format,
        config.telemetry.log_level,
        if otlp.is_empty() { "off" } else { otlp },
    ));
    Ok(lines.join("\n"))
}
