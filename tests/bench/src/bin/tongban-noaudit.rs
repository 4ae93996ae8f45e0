//! Tongban with the audit layer taken out — the same gateway in every other part:
//! its config and telemetry, its connection server (handshake and phase timeouts,
//! per-identity shares, the parser-refusal wrapper, the CRL watch) and every other
//! layer of the request stack. This exists only in the benchmark harness, to measure
//! what durable audit costs; the product has no setting that turns audit off.

use std::path::PathBuf;

use anyhow::Result;
use audit::Receipt;
use clap::Parser;
use gateway::config::Config;
use gateway::http::audit_layer::Audited;
use gateway::http::render::rendered;
use gateway::http::stack::counter_service_with;
use gateway::http::Outcome;
use tower::util::MapResponseLayer;

// As the `tongban` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    /// The gateway config (e.g. a demo directory's tongban.toml).
    #[arg(long)]
    config: PathBuf,
    /// Listen here instead of the config's address.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Serve the ops endpoints here instead of the config's address.
    #[arg(long)]
    ops_listen: Option<std::net::SocketAddr>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    gateway::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> Result<()> {
    let mut config = Config::load(&args.config)?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(ops) = args.ops_listen {
        config.ops_listen = ops;
    }
    let _telemetry = gateway::telemetry::init(&config.telemetry)?;
    let no_audit: fn(Outcome) -> Audited = no_audit;
    let running = gateway::server::start_with(config, move |app: &_, router, principal, over| {
        counter_service_with(
            app,
            router,
            principal,
            over,
            MapResponseLayer::new(no_audit),
        )
    })
    .await?;
    eprintln!("tongban-noaudit listening on {}", running.addr);
    tokio::signal::ctrl_c().await?;
    running.shutdown().await;
    Ok(())
}

/// Rendered as the audit layer renders it, but neither digested nor recorded.
fn no_audit(outcome: Outcome) -> Audited {
    Audited {
        rendered: rendered(&outcome, ""),
        outcome,
        receipt: Some(Receipt {
            seq: 0,
            hash: "audit-off".to_owned(),
            record: String::new(),
            index: 0,
            checkpoint: "".into(),
            inclusion: Vec::new(),
        }),
        request_id: String::new(),
    }
}
