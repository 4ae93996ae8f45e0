//! The `tongban` command line; one module per command group. Exit codes: 0 success, 1 the operation failed (for
//! example verification found tampering), 2 bad usage or bad configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ::audit::signing::Signer;
use clap::{Args, Parser, Subcommand};

mod audit;
mod catalogue;
pub mod certs;
pub mod config;
pub mod policy;
pub mod report;
pub mod request;
mod witness;
use connectors::demo::DemoCounts;

use crate::config::Config;
use crate::server::{start, Running};
use crate::{demo, telemetry};

/// Tongban: the gateway departments share records through.
#[derive(Debug, Parser)]
#[command(name = "tongban", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a demo directory (CA, certificates, data, agreements, config) and serve it.
    Demo {
        /// Demo directory; reused when it already holds a tongban.toml.
        #[arg(long, default_value = "./tongban-demo")]
        dir: PathBuf,
        /// Counter API address (default 127.0.0.1:8443).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Ops address (default 127.0.0.1:9090).
        #[arg(long)]
        ops_listen: Option<SocketAddr>,
    },
    /// Run the gateway from a config file.
    Serve {
        #[command(flatten)]
        config: ConfigFile,
    },
    /// Verify a saved lookup response offline.
    Verify {
        /// The saved response (JSON).
        file: PathBuf,
        /// JWKS file with the gateway's public key (else the signing key of --config).
        #[arg(long)]
        jwks: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigFile,
    },
    /// Audit log tools: verify the chain.
    Audit(audit::AuditArgs),
    /// The department CA: init, issue, revoke, crl, list.
    Certs(certs::CertsArgs),
    /// Sharing agreements: apply a file, list, explain a decision, history, revoke.
    Policy(policy::PolicyArgs),
    /// Access requests: file, list, show, approve (possibly narrowed), refuse, withdraw.
    Request(request::RequestArgs),
    /// The config file: check it (with TONGBAN_* variables) without serving.
    Config(config::ConfigArgs),
    /// The dataset catalogue: datasets, owners, fields and their sharing class,
    /// matters; with --as, what an identity may ask for today.
    Catalogue(catalogue::CatalogueArgs),
    /// Witness other gateways' audit logs: cosign each checkpoint that extends the
    /// last one cosigned, refuse any that rewrites history.
    Witness(witness::WitnessArgs),
    /// Reports computed from the audit log: usage and evaluation figures.
    Report(report::ReportArgs),
}

/// `--config FILE`, the one declaration of it: every command that reads or changes a
/// gateway's state flattens it in (`global`, so a command group takes it before or
/// after its subcommand).
#[derive(Debug, Clone, Args)]
pub struct ConfigFile {
    /// Config file, the one `tongban serve` runs from.
    #[arg(
        long = "config",
        value_name = "FILE",
        env = crate::config::CONFIG_VAR,
        default_value = "./tongban.toml",
        global = true
    )]
    pub path: PathBuf,
}

impl ConfigFile {
    /// The config, with the `TONGBAN_*` variables laid over it; a problem is bad
    /// usage (exit 2).
    pub fn load(&self) -> Result<Config, Failure> {
        Config::load(&self.path).map_err(|e| Failure::Usage(e.to_string()))
    }
}

/// How a command failed.
#[derive(Debug)]
pub enum Failure {
    /// Bad usage or configuration: exit 2.
    Usage(String),
    /// The operation failed: exit 1.
    Failed(String),
}

impl Failure {
    /// The process exit code.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Failed(_) => 1,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Failed(m) => f.write_str(m),
        }
    }
}

/// Run a parsed command line; prints results to stdout and returns the exit code.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Demo {
            dir,
            listen,
            ops_listen,
        } => run_demo(&dir, listen, ops_listen).await,
        Command::Serve { config } => {
            let config = config.load()?;
            let _telemetry = telemetry::init(&config.telemetry)
                .map_err(|e| Failure::Usage(format!("{}: {e}", config.path.display())))?;
            // Listening for SIGTERM before start: one that arrives while starting
            // stops the gateway cleanly as soon as it serves.
            let stop = Shutdown::listen();
            let running = start(config).await.map_err(start_failure)?;
            stop.wait().await;
            stop_serving(running).await;
            Ok(())
        }
        Command::Verify { file, jwks, config } => verify_file(&file, jwks.as_deref(), &config),
        Command::Audit(args) => audit::run(args).await,
        Command::Certs(args) => certs::run(args).await,
        Command::Policy(args) => policy::run(args).await,
        Command::Request(args) => request::run(args).await,
        Command::Config(args) => config::run(args).await,
        Command::Catalogue(args) => catalogue::run(args).await,
        Command::Witness(args) => witness::run(args).await,
        Command::Report(args) => report::run(args).await,
    }
}

fn start_failure(e: crate::start_error::StartError) -> Failure {
    use crate::start_error::StartError::*;
    match e {
        Tls(_) | Signing(_) | Policy(_) => Failure::Usage(e.to_string()),
        _ => Failure::Failed(e.to_string()),
    }
}

async fn run_demo(
    dir: &Path,
    listen: Option<SocketAddr>,
    ops_listen: Option<SocketAddr>,
) -> Result<(), Failure> {
    let began = std::time::Instant::now();
    let stop = Shutdown::listen();
    let mut demo = demo::prepare(dir, listen, ops_listen, &DemoCounts::default())
        .await
        .map_err(|e| Failure::Failed(format!("demo: {e}")))?;
    let _telemetry =
        telemetry::init(&demo.config.telemetry).map_err(|e| Failure::Usage(e.to_string()))?;
    // The e-licence department the demo config's http source points at.
    let department = demo::start_department(&mut demo)
        .await
        .map_err(|e| Failure::Failed(format!("demo: {e}")))?;
    // The second department's witness, cosigning the log's checkpoints.
    let witness = demo::start_witness(&mut demo)
        .await
        .map_err(|e| Failure::Failed(format!("demo: {e}")))?;
    let running = start(demo.config).await.map_err(start_failure)?;
    let verb = if demo.created { "created" } else { "reused" };
    println!(
        "Tongban demo {verb} in {} and serving after {} ms",
        demo.dir.display(),
        began.elapsed().as_millis()
    );
    println!("  counter API (mTLS): https://{}", running.addr);
    println!(
        "  ops:                http://{}/healthz  /readyz",
        running.ops_addr
    );
    if let Some(d) = &department {
        println!(
            "  demo department:    https://{} (e-licences, mTLS)",
            d.addr
        );
    }
    if let Some(w) = &witness {
        println!(
            "  demo witness:       http://{}/status (cosigns the audit log)",
            w.addr
        );
    }
    println!(
        "  samples:            {}",
        demo.dir.join("samples.json").display()
    );
    let shown = curl_address(running.addr);
    println!(
        "\nThe web console, in a browser: import {} (dept-admin) or {} (auditor), password {}, \
         trust {} as a certificate authority, then open https://{shown}/console/",
        demo.browser
            .files
            .first()
            .map(|f| f.display().to_string())
            .unwrap_or_default(),
        demo.browser
            .files
            .get(1)
            .map(|f| f.display().to_string())
            .unwrap_or_default(),
        demo.browser.password,
        demo.dir.join("pki/ca.pem").display(),
    );
    let samples = demo::load_samples(&demo.dir).unwrap_or_default();
    if let Some(ok) = samples.iter().find(|s| s["expect"] == 200) {
        println!(
            "\nA lookup that succeeds:\n{}",
            demo::curl_command(&demo.dir, shown, ok)
        );
    }
    if let Some(bundle) = samples.iter().find(|s| s["path"] == "/v1/bundle") {
        println!(
            "\nA bundle, one thing in one go (each item audited on its own):\n{}",
            demo::curl_command(&demo.dir, shown, bundle)
        );
    }
    if let Some(denied) = samples.iter().find(|s| s["expect"] == 403) {
        println!(
            "\nA lookup that is denied (403):\n{}",
            demo::curl_command(&demo.dir, shown, denied)
        );
    }
    println!(
        "\nVerify a saved answer: tongban verify answer.json --config {}",
        demo.dir.join("tongban.toml").display()
    );
    println!(
        "Check the audit chain:  tongban audit verify --config {}",
        demo.dir.join("tongban.toml").display()
    );
    println!(
        "Access requests:        tongban request list --config {}  (one waits for sz-psb's review: the admin certificate)",
        demo.dir.join("tongban.toml").display()
    );
    println!(
        "Certificates:           tongban certs list --ca-dir {}  (revoke takes effect within a second)\n",
        demo.dir.join("pki").display()
    );
    stop.wait().await;
    stop_serving(running).await;
    if let Some(d) = department {
        d.shutdown().await;
    }
    if let Some(w) = witness {
        w.shutdown().await;
    }
    Ok(())
}

/// A wildcard listen address is reached on loopback.
fn curl_address(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

async fn stop_serving(running: Running) {
    tracing::info!("shutting down: no new connections; finishing open requests");
    running.shutdown().await;
}

/// SIGTERM or Ctrl-C, listened for from creation on.
struct Shutdown {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Shutdown {
    fn listen() -> Self {
        Self {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        if let Some(term) = self.term.as_mut() {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn verify_file(file: &Path, jwks: Option<&Path>, config: &ConfigFile) -> Result<(), Failure> {
    let read_json = |p: &Path| -> Result<serde_json::Value, Failure> {
        let text = std::fs::read_to_string(p)
            .map_err(|e| Failure::Usage(format!("{}: {e}", p.display())))?;
        serde_json::from_str(&text)
            .map_err(|e| Failure::Usage(format!("{}: not JSON: {e}", p.display())))
    };
    let document = read_json(file)?;
    let jwks = match jwks {
        Some(p) => read_json(p)?,
        None => {
            let config = config.load()?;
            Signer::load(&config.signing_key)
                .map_err(|e| Failure::Usage(e.to_string()))?
                .jwks()
        }
    };
    let keys = ::audit::signing::public_keys(&jwks);
    if keys.is_empty() {
        return Err(Failure::Usage("the JWKS holds no Ed25519 key".into()));
    }
    let failed =
        |e: &dyn std::fmt::Display| Failure::Failed(format!("FAILED: {}: {e}", file.display()));
    // The answer, and each bundle item (an answer of its own, with its own record).
    let items = document["items"].as_array().into_iter().flatten();
    for (n, answer) in std::iter::once(&document).chain(items).enumerate() {
        let (kid, inc) = check_with_any(answer, &keys).map_err(|e| {
            let what = if n == 0 {
                "the answer".to_owned()
            } else {
                format!("item {n}")
            };
            failed(&format!("{what}: {e}"))
        })?;
        println!(
            "OK: {} is bound to audit record {} (request {}), leaf {} of the tree of {} records of {} signed by key {kid}",
            if n == 0 { "the answer".to_owned() } else { format!("item {}", answer["item"].as_str().unwrap_or("?")) },
            inc.index + 1,
            answer["request_id"].as_str().or(document["request_id"].as_str()).unwrap_or("?"),
            inc.index,
            inc.size,
            inc.origin
        );
    }
    Ok(())
}

/// Check `answer` with each key until one signed its checkpoint; the error worth
/// reporting is one past the signature (a broken binding or proof), when there is one.
fn check_with_any(
    answer: &serde_json::Value,
    keys: &[(String, Vec<u8>)],
) -> Result<(String, ::audit::Included), ::audit::AnswerError> {
    let mut worst = ::audit::AnswerError::NoReceipt;
    for (kid, key) in keys {
        match ::audit::check_answer(answer, key) {
            Ok(inc) => return Ok((kid.clone(), inc)),
            Err(e @ ::audit::AnswerError::Receipt(::audit::ReceiptError::Checkpoint(_))) => {
                if matches!(worst, ::audit::AnswerError::NoReceipt) {
                    worst = e;
                }
            }
            Err(e) => worst = e,
        }
    }
    Err(worst)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// The `--config` a parsed command line names, for each command that has one.
    fn config_of(cli: &Cli) -> Option<&Path> {
        let file = match &cli.command {
            Command::Serve { config } | Command::Verify { config, .. } => config,
            Command::Audit(a) => &a.config,
            Command::Certs(a) => &a.config,
            Command::Policy(a) => &a.config,
            Command::Request(a) => &a.config,
            Command::Config(a) => &a.config,
            Command::Catalogue(a) => &a.config,
            Command::Report(a) => &a.config,
            Command::Demo { .. } | Command::Witness(_) => return None,
        };
        Some(&file.path)
    }

    /// Every command that reads or changes state takes the one `--config`; a command
    /// group takes it before or after its subcommand.
    #[test]
    fn every_state_command_takes_the_shared_config_argument() {
        let commands: [&[&str]; 10] = [
            &["serve"],
            &["verify", "answer.json"],
            &["audit", "verify"],
            &["audit", "search"],
            &["policy", "list"],
            &["policy", "revoke", "a-1"],
            &["certs", "list"],
            &["config", "check"],
            &["catalogue"],
            &["report", "usage"],
        ];
        for command in commands {
            let after = [&["tongban"], command, &["--config", "x/t.toml"]].concat();
            let cli = Cli::try_parse_from(&after).unwrap_or_else(|e| panic!("{after:?}: {e}"));
            assert_eq!(config_of(&cli), Some(Path::new("x/t.toml")), "{after:?}");
            if command.len() > 1 {
                let before = [
                    &["tongban", command[0], "--config", "x/t.toml"],
                    &command[1..],
                ]
                .concat();
                let cli =
                    Cli::try_parse_from(&before).unwrap_or_else(|e| panic!("{before:?}: {e}"));
                assert_eq!(config_of(&cli), Some(Path::new("x/t.toml")), "{before:?}");
            }
        }
        // Bad usage is still clap's error, which exits 2.
        let e = Cli::try_parse_from(["tongban", "serve", "--config"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }
}
