//! Listeners: the mTLS counter API and the plain ops endpoints, with graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::app::App;
use crate::config::Config;
use crate::http::route::Router;
use crate::http::stack::{counter_service, router};
use crate::http::{ops, Principal};
use crate::start_error::StartError;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A gateway that is serving.
pub struct Running {
    /// Bound counter API address (useful with port 0).
    pub addr: SocketAddr,
    /// Bound ops address.
    pub ops_addr: SocketAddr,
    /// The gateway's parts.
    pub app: Arc<App>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stop accepting, let open requests finish (for at most `[limits]
    /// shutdown_grace_secs`), then commit and seal what the audit writer still holds.
    pub async fn shutdown(self) {
        let began = std::time::Instant::now();
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let drained = began.elapsed();
        self.app.audit.close().await;
        tracing::info!(
            drain_ms = u64::try_from(drained.as_millis()).unwrap_or(u64::MAX),
            total_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
            "stopped: open requests finished, audit log committed and sealed"
        );
    }
}

/// Build the gateway from `config`, bind both listeners and start serving.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let app = Arc::new(App::build(config).await?);
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    };
    let counter = bind(app.config.listen).await?;
    let ops_listener = bind(app.config.ops_listen).await?;
    let addr = counter.local_addr().map_err(|source| StartError::Bind {
        addr: app.config.listen,
        source,
    })?;
    let ops_addr = ops_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: app.config.ops_listen,
            source,
        })?;
    let (stop, stopped) = watch::channel(false);
    let tasks = vec![
        tokio::spawn(serve_counter(Arc::clone(&app), counter, stopped.clone())),
        tokio::spawn(ops::serve(Arc::clone(&app), ops_listener, stopped.clone())),
        // TLS reloads on SIGHUP and file changes.
        crate::tls::spawn_watcher(vec![Arc::clone(&app.tls) as _], stopped),
    ];
    tracing::info!(%addr, %ops_addr, node = %app.config.node, "tongban gateway serving");
    Ok(Running {
        addr,
        ops_addr,
        app,
        stop,
        tasks,
    })
}

async fn serve_counter(app: Arc<App>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let router = router::<Incoming>(&app);
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    // The TLS config current now: a reload applies to the next handshake,
                    // open connections keep the config they were accepted with.
                    let acceptor = TlsAcceptor::from(app.tls.current());
                    let conn = connection(Arc::clone(&app), acceptor, router.clone(), tcp, peer);
                    let watcher = graceful.watcher();
                    tokio::spawn(async move { conn.run(watcher).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let grace = Duration::from_secs(app.config.limits.shutdown_grace_secs);
    tracing::info!(
        connections = graceful.count(),
        grace_secs = grace.as_secs(),
        "stopped accepting; finishing open requests"
    );
    // HTTP/1 connections close after their current request, HTTP/2 ones get GOAWAY
    // and finish their streams. Past the grace they are left to the process exit.
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "open requests did not finish within the shutdown grace; leaving them"
        );
    }
}

struct Connection {
    app: Arc<App>,
    acceptor: TlsAcceptor,
    router: Router<Incoming>,
    tcp: TcpStream,
    peer: SocketAddr,
}

fn connection(
    app: Arc<App>,
    acceptor: TlsAcceptor,
    router: Router<Incoming>,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Connection {
    Connection {
        app,
        acceptor,
        router,
        tcp,
        peer,
    }
}

impl Connection {
    async fn run(self, watcher: hyper_util::server::graceful::Watcher) {
        let _ = self.tcp.set_nodelay(true);
        let tls =
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(self.tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    let reason = certs::HandshakeRefusal::from_io(&e);
                    self.app.tls.metrics().refused(reason);
                    tracing::info!(peer = %self.peer, %reason, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    let reason = certs::HandshakeRefusal::Timeout;
                    self.app.tls.metrics().refused(reason);
                    tracing::info!(peer = %self.peer, %reason, "TLS handshake refused");
                    return;
                }
            };
        let principal = match peer_principal(tls.get_ref().1, self.app.tls.metrics()) {
            Ok(p) => p,
            Err(error) => {
                // The verifier refuses such certificates already; kept as a safety net.
                let reason = certs::HandshakeRefusal::NoIdentity;
                self.app.tls.metrics().refused(reason);
                tracing::info!(peer = %self.peer, %reason, %error, "TLS handshake refused");
                return;
            }
        };
        let svc = counter_service(&self.app, self.router, principal);
        let builder = auto::Builder::new(TokioExecutor::new());
        let conn = builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(svc));
        if let Err(e) = watcher.watch(conn.into_owned()).await {
            tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
        }
    }
}

fn peer_principal(
    conn: &rustls::ServerConnection,
    metrics: &crate::tls::TlsMetrics,
) -> Result<Principal, String> {
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no client certificate")?;
    let identity = certs::identity_from_cert(cert.as_ref()).map_err(|e| e.to_string())?;
    metrics.accepted(cert.as_ref());
    Ok(Principal {
        identity,
        fingerprint: certs::fingerprint(cert.as_ref()),
    })
}
