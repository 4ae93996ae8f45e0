//! `tongban witness`: follow other gateways' audit logs and cosign their checkpoints
//! (c2sp.org/tlog-witness), refusing any that does not extend what it cosigned.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ::audit::signing::Signer;
use ::audit::tlog::note::{Verifier, TYPE_ED25519};
use ::audit::witness::{FollowedLog, Witness};
use clap::Args;

use super::{Failure, Shutdown};
use crate::witness_server::WitnessService;

/// `tongban witness`.
#[derive(Debug, Args)]
pub struct WitnessArgs {
    /// The witness's name: its cosignatures' key name (e.g. `witness.sz-amr`).
    #[arg(long)]
    pub name: String,
    /// Its Ed25519 key, PKCS#8 PEM (`tongban certs signing-key` makes one).
    #[arg(long)]
    pub key: PathBuf,
    /// A log it follows, as the log's verifier key `<origin>+<key id>+<base64 key>`
    /// (a gateway logs it at start: "audit log verifier key"); repeat for several.
    #[arg(long = "log", required = true)]
    pub logs: Vec<String>,
    /// Where to take `POST /add-checkpoint`.
    #[arg(long, default_value = "127.0.0.1:8446")]
    pub listen: SocketAddr,
    /// What it cosigned of each log, kept across restarts.
    #[arg(long, default_value = "./witness-state.json")]
    pub state: PathBuf,
}

/// Serve until SIGINT or SIGTERM.
pub async fn run(args: WitnessArgs) -> Result<(), Failure> {
    let stop = Shutdown::listen();
    let witness = Arc::new(open(&args)?);
    let service = WitnessService::start(Arc::clone(&witness), args.listen)
        .await
        .map_err(|e| Failure::Failed(format!("{}: {e}", args.listen)))?;
    println!(
        "witness {} serving on http://{}",
        witness.name(),
        service.addr
    );
    println!(
        "  its key, for [audit] witnesses: {}",
        witness.verifier().to_vkey()
    );
    stop.wait().await;
    service.shutdown().await;
    Ok(())
}

fn open(args: &WitnessArgs) -> Result<Witness, Failure> {
    let usage = |e: &dyn std::fmt::Display| Failure::Usage(e.to_string());
    let key = Signer::load(&args.key)
        .map_err(|e| usage(&e))?
        .into_key_pair();
    let logs = args
        .logs
        .iter()
        .map(|vkey| {
            let v = Verifier::parse(vkey).map_err(|e| usage(&format!("--log {vkey:?}: {e}")))?;
            if v.kind != TYPE_ED25519 {
                return Err(usage(&format!(
                    "--log {vkey:?}: not a log's Ed25519 key (type 0x01)"
                )));
            }
            Ok(FollowedLog { verifier: v })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Witness::open(&args.name, key, logs, &args.state).map_err(|e| usage(&e))
}
