//! Tongban with the audit layer taken out — the same stack as the product in every
//! other layer. This exists only in the benchmark harness, to measure what durable
//! audit costs; the product has no setting that turns audit off.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use audit::Receipt;
use clap::Parser;
use gateway::app::App;
use gateway::config::Config;
use gateway::http::audit_layer::Audited;
use gateway::http::identity::IdentityLayer;
use gateway::http::limit::ShedLayer;
use gateway::http::meta::MetaLayer;
use gateway::http::metrics_layer::MetricsLayer;
use gateway::http::render::rendered;
use gateway::http::respond::RespondLayer;
use gateway::http::stack::router;
use gateway::http::{Outcome, Principal};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceBuilder;

#[derive(Debug, Parser)]
struct Args {
    /// The gateway config (e.g. a demo directory's tongban.toml).
    #[arg(long)]
    config: PathBuf,
    /// Listen here instead of the config's address.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
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
    let app = Arc::new(App::build(config).await?);
    let tls = certs::server_config(
        &app.config.tls.cert,
        &app.config.tls.key,
        &app.config.tls.client_cas,
    )?;
    let acceptor = TlsAcceptor::from(tls);
    let router = router::<Incoming>(&app);
    let listener = TcpListener::bind(app.config.listen).await?;
    eprintln!("tongban-noaudit listening on {}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let (app, acceptor, router) = (Arc::clone(&app), acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
                return;
            };
            let Ok(identity) = certs::identity_from_cert(cert.as_ref()) else {
                return;
            };
            let principal = Principal {
                identity,
                fingerprint: certs::fingerprint(cert.as_ref()),
            };
            let svc = ServiceBuilder::new()
                .layer(MetaLayer)
                .layer(IdentityLayer::new(principal))
                .layer(RespondLayer)
                // As in the gateway's stack, so that only the audit layer differs.
                .layer(MetricsLayer::new(
                    app.metrics.clone(),
                    app.config.datasets.iter().map(|d| d.dataset.to_string()),
                ))
                // In place of the audit layer: a receipt that records nothing.
                .map_response(no_audit)
                .layer(ShedLayer::new(Arc::clone(&app.in_flight)))
                .service(router);
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(svc))
                .await;
        });
    }
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
