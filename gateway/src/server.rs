//! Listeners: the mTLS counter API and the plain ops endpoints, with graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::app::App;
use crate::config::Config;
use crate::error::{ApiError, HeadRefusal};
use crate::http::respond::ResponseBody;
use crate::http::route::Router;
use crate::http::stack::{counter_service, router};
use crate::http::{ops, Principal};
use crate::parser_refusal::{ParserRefusals, RecordRefusal};
use crate::start_error::StartError;

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

/// What each mTLS connection is served with. The product's is
/// [`counter_service`]; the benchmark harness builds the same stack around another
/// audit layer ([`crate::http::stack::counter_service_with`]).
pub trait ConnectionStack: Send + Sync + 'static {
    /// The service of one connection.
    type Service: Service<
            Request<Incoming>,
            Response = Response<ResponseBody>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static;

    /// The service of a connection whose certificate gave `principal`; `over` is the
    /// identity's connection share when the connection is beyond it.
    fn build(
        &self,
        app: &App,
        router: Router<Incoming>,
        principal: Principal,
        over: Option<usize>,
    ) -> Self::Service;
}

impl<F, S> ConnectionStack for F
where
    F: Fn(&App, Router<Incoming>, Principal, Option<usize>) -> S + Send + Sync + 'static,
    S: Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Service = S;

    fn build(
        &self,
        app: &App,
        router: Router<Incoming>,
        principal: Principal,
        over: Option<usize>,
    ) -> S {
        self(app, router, principal, over)
    }
}

/// Build the gateway from `config`, bind both listeners and start serving.
pub async fn start(config: Config) -> Result<Running, StartError> {
    start_with(config, counter_service::<Incoming>).await
}

/// [`start`], each connection served by `stack`.
pub async fn start_with(
    config: Config,
    stack: impl ConnectionStack,
) -> Result<Running, StartError> {
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
    let mut tasks = vec![
        tokio::spawn(serve_counter(
            Arc::clone(&app),
            counter,
            Arc::new(stack),
            stopped.clone(),
        )),
        tokio::spawn(ops::serve(Arc::clone(&app), ops_listener, stopped.clone())),
    ];
    // Checkpoints to the witnesses, in the background.
    tasks.extend(crate::witness_submit::spawn(
        &app.config.audit,
        app.audit.clone(),
        app.witnesses.clone(),
        stopped.clone(),
    ));
    // TLS reloads on SIGHUP and file changes.
    tasks.push(crate::tls::spawn_watcher(
        vec![Arc::clone(&app.tls) as _],
        stopped,
    ));
    tracing::info!(%addr, %ops_addr, node = %app.config.node, "tongban gateway serving");
    // What a witness follows this log by (`tongban witness --log`).
    if let Ok(v) = audit::tlog::note::Verifier::new(
        &crate::audit_config::origin(&app.config),
        audit::tlog::note::TYPE_ED25519,
        app.signer.public_key(),
    ) {
        tracing::info!(vkey = %v.to_vkey(), "audit log verifier key");
    }
    Ok(Running {
        addr,
        ops_addr,
        app,
        stop,
        tasks,
    })
}

async fn serve_counter<T: ConnectionStack>(
    app: Arc<App>,
    listener: TcpListener,
    stack: Arc<T>,
    mut stop: watch::Receiver<bool>,
) {
    let router = router::<Incoming>(&app);
    // Every open connection, so that shutdown can wait for them.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    // The TLS config current now: a reload applies to the next handshake,
                    // open connections keep the config they were accepted with.
                    let conn = Connection {
                        app: Arc::clone(&app),
                        acceptor: TlsAcceptor::from(app.tls.current()),
                        router: router.clone(),
                        stack: Arc::clone(&stack),
                        tcp,
                        peer,
                    };
                    connections.spawn(conn.run(stop.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reap the connections that ended.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let grace = Duration::from_secs(app.config.limits.shutdown_grace_secs);
    tracing::info!(
        connections = connections.len(),
        grace_secs = grace.as_secs(),
        "stopped accepting; finishing open requests"
    );
    // Each connection saw the stop: HTTP/1 ones close after their current request,
    // HTTP/2 ones get GOAWAY and finish their streams. Past the grace they are left
    // to the process exit.
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "open requests did not finish within the shutdown grace; leaving them"
        );
        connections.detach_all();
    }
}

struct Connection<T> {
    app: Arc<App>,
    acceptor: TlsAcceptor,
    router: Router<Incoming>,
    stack: Arc<T>,
    tcp: TcpStream,
    peer: SocketAddr,
}

impl<T: ConnectionStack> Connection<T> {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let _ = self.tcp.set_nodelay(true);
        let limits = &self.app.config.limits;
        let handshake = Duration::from_millis(limits.handshake_timeout_ms.max(1));
        let tls = match tokio::time::timeout(handshake, self.acceptor.accept(self.tcp)).await {
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
        // Kept to check against CRLs loaded while the connection is open; read only
        // when one is, not on every handshake.
        let cert: Option<Vec<u8>> = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec());
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
        // A connection beyond its identity's share is answered once (429, audited)
        // and closed, so the client learns why.
        let share = self
            .app
            .connection_shares
            .try_take(principal.identity.as_uri());
        let over = share.is_none().then(|| self.app.connection_shares.limit());
        if over.is_some() {
            tracing::info!(peer = %self.peer, identity = %principal.identity, "connection beyond its identity's share");
        }
        let activity = Activity::new();
        let caller = principal.clone();
        let svc = Tracked {
            inner: self.stack.build(&self.app, self.router, principal, over),
            activity: Arc::clone(&activity),
        };
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // Also runs while a kept-alive connection waits for its next request.
            .header_read_timeout(Duration::from_millis(limits.request_head_timeout_ms.max(1)))
            .keep_alive(over.is_none());
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_millis(
                limits.http2_keepalive_interval_ms.max(1),
            ))
            .keep_alive_timeout(Duration::from_millis(
                limits.http2_keepalive_timeout_ms.max(1),
            ))
            .max_concurrent_streams(limits.http2_max_concurrent_streams.max(1));
        let record = {
            let app = Arc::clone(&self.app);
            let caller = caller.clone();
            let record: RecordRefusal = Box::new(move |refusal, request_id, digest| {
                Box::pin(async move {
                    audit_refused_head(&app, &caller, refusal, request_id, digest).await
                })
            });
            record
        };
        let io = TokioIo::new(ParserRefusals::new(tls, record));
        let conn = builder.serve_connection(io, TowerToHyperService::new(svc));
        let mut conn = std::pin::pin!(conn);
        let idle = if over.is_some() {
            Duration::ZERO
        } else {
            Duration::from_millis(limits.idle_timeout_ms.max(1))
        };
        let age = tokio::time::sleep(Duration::from_secs(limits.max_connection_age_secs.max(1)));
        let mut age = std::pin::pin!(age);
        let mut closing = false;
        let mut crls = self.app.tls.crls();
        let mut watching_crls = cert.is_some();
        // Drive the connection; on stop, old age, idleness or its certificate
        // revoked, ask it to close after what is in flight (HTTP/1: after the current
        // request; HTTP/2: GOAWAY).
        let ended = loop {
            let close = tokio::select! {
                ended = conn.as_mut() => break ended,
                _ = stop.changed(), if !closing => true,
                _ = &mut age, if !closing => true,
                _ = activity.idle(idle, usize::from(over.is_some())), if !closing => true,
                changed = crls.changed(), if !closing && watching_crls => match (changed, &cert) {
                    (Ok(()), Some(der)) => {
                        let current = Arc::clone(&crls.borrow_and_update());
                        let revoked = certs::CertInfo::from_der(der)
                            .ok()
                            .filter(|cert| current.iter().any(|c| c.revokes(cert)));
                        if let Some(cert) = &revoked {
                            tracing::info!(peer = %self.peer, serial = %cert.serial,
                                "client certificate revoked; closing its connection after the current request");
                        }
                        revoked.is_some()
                    }
                    _ => {
                        watching_crls = false;
                        false
                    }
                },
            };
            if close {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        };
        if let Err(e) = ended {
            tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
        }
        drop(share);
    }
}

/// Requests in flight on one connection, and how many were served.
struct Activity {
    in_flight: AtomicUsize,
    served: AtomicUsize,
    changed: Notify,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            changed: Notify::new(),
        })
    }

    /// Resolves once the connection has served at least `served` requests and had
    /// none in flight for `after`.
    async fn idle(&self, after: Duration, served: usize) {
        loop {
            let changed = self.changed.notified();
            let quiet = self.in_flight.load(Ordering::SeqCst) == 0
                && self.served.load(Ordering::SeqCst) >= served;
            if quiet {
                tokio::select! {
                    _ = tokio::time::sleep(after) => return,
                    _ = changed => {}
                }
            } else {
                changed.await;
            }
        }
    }
}

/// Counts a connection's requests in flight for [`Activity`].
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

/// Gives a request back to [`Activity`] when its response is ready or it is dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.served.fetch_add(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

impl<S, R> Service<R> for Tracked<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
    S::Response: 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.activity.in_flight.fetch_add(1, Ordering::SeqCst);
        self.activity.changed.notify_waiters();
        let guard = InFlight(Arc::clone(&self.activity));
        let fut = self.inner.call(req);
        Box::pin(async move {
            let out = fut.await;
            drop(guard);
            out
        })
    }
}

/// Record a request head hyper's parser refused, under the connection's identity,
/// bound to the digest of its answer; the receipt once durable. Its answer waits for
/// this (see [`ParserRefusals`]).
async fn audit_refused_head(
    app: &App,
    caller: &Principal,
    refusal: HeadRefusal,
    request_id: String,
    answer_sha256: String,
) -> Option<audit::Receipt> {
    let error = ApiError::HeadRefused(refusal);
    let entry = audit::AuditEntry {
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        request_id,
        node: app.config.node.clone(),
        consumer: Some(caller.identity.to_string()),
        cert_fingerprint: Some(caller.fingerprint.clone()),
        status: error.status().as_u16(),
        decision: audit::Decision::Error,
        reason: Some(format!(
            "refused by the HTTP parser: {}",
            error.audit_reason()
        )),
        answer_sha256: Some(answer_sha256),
        ..audit::AuditEntry::default()
    };
    match app.audit.append(entry).await {
        Ok(receipt) => Some(receipt),
        Err(e) => {
            tracing::error!(error = %e, "audit write failed for a refused request head");
            None
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
