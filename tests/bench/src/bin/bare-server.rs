//! The limit: a bare hyper + rustls mTLS server answering a constant ~300-byte JSON,
//! or, with `--plain`, the same constant over plain HTTP (the upstream nginx proxies to).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use bytes::Bytes;
use clap::Parser;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    listen: SocketAddr,
    /// Serve plain HTTP (no TLS).
    #[arg(long)]
    plain: bool,
    #[arg(long, required_unless_present = "plain")]
    cert: Option<PathBuf>,
    #[arg(long, required_unless_present = "plain")]
    key: Option<PathBuf>,
    #[arg(long, required_unless_present = "plain")]
    client_ca: Option<PathBuf>,
}

/// About the size of a lookup answer's envelope.
const BODY: &str = r#"{"request_id":"0192f0c4-7d7e-7c3a-9d1e-1b2c3d4e5f60","dataset":"population","subject":"110101199003074573","record":{"name":"张三","birth_date":"1990-03-07","household_address":"北京市东城区****号"},"masked":["household_address"],"agreement":"hrss-population-2026","status":"ok","padding":"----------"}"#;

fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> Result<()> {
    let acceptor = match (&args.cert, &args.key, &args.client_ca) {
        (Some(c), Some(k), Some(ca)) if !args.plain => Some(TlsAcceptor::from(
            certs::server_config(c, k, std::slice::from_ref(ca))?,
        )),
        _ => None,
    };
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!("bare-server listening on {}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let svc = hyper::service::service_fn(answer);
            let builder = auto::Builder::new(TokioExecutor::new());
            match acceptor {
                Some(a) => {
                    if let Ok(tls) = a.accept(tcp).await {
                        let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                    }
                }
                None => {
                    let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                }
            }
        });
    }
}

async fn answer(
    _req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let mut r = Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}
