//! `tongban config check FILE`: everything `serve` checks before it binds a port —
//! the file with its `TONGBAN_*` variables, the TLS files, the signing key, the
//! outbound certificates, the log filter and the OTLP endpoint — without serving and
//! without touching a database.

use std::path::PathBuf;

use audit::signing::Signer;
use clap::{Args, Subcommand};

use super::Failure;
use crate::config::{Config, SourceKind};

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
pub fn run(args: ConfigArgs) -> Result<(), Failure> {
    match args.command {
        ConfigCommand::Check { file } => {
            let file = super::ConfigFile {
                path: file.unwrap_or(args.config.path),
            };
            let summary = check(&file.load()?).map_err(Failure::Usage)?;
            println!("{summary}");
            Ok(())
        }
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
