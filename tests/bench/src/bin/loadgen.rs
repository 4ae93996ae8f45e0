//! A load generator for mTLS HTTP servers on loopback: N connections (keep-alive, or a
//! new TLS handshake per request), HTTP/1.1 or h2, for a bounded time and count.
//! Prints one JSON line: requests/s, latency percentiles, errors, and — given the
//! server's pid — the server's CPU time per request read from /proc.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use http::{Method, Request};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Mode {
    /// Each connection sends requests back to back on one TLS session.
    Keepalive,
    /// Every request opens a new TCP connection and a full TLS handshake.
    Handshake,
    /// Open the connections, send one request on each, then hold them idle for the
    /// duration and report the server's resident memory.
    Idle,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Proto {
    H1,
    H2,
}

#[derive(Debug, Parser)]
struct Args {
    /// Target; must be a loopback address.
    #[arg(long)]
    addr: SocketAddr,
    /// CA that signed the server certificate.
    #[arg(long)]
    ca: PathBuf,
    /// Client certificate (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Client key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds to run (after warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up, not counted.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Stop after this many requests in total.
    #[arg(long, default_value_t = 5_000_000)]
    max_requests: u64,
    #[arg(long, value_enum, default_value = "keepalive")]
    mode: Mode,
    #[arg(long, value_enum, default_value = "h1")]
    proto: Proto,
    #[arg(long, default_value = "GET")]
    method: String,
    #[arg(long, default_value = "/")]
    path: String,
    /// Request body (sent as application/json).
    #[arg(long)]
    body: Option<String>,
    /// A workload: JSON lines `{"path": …, "body": {…}}`, sent in turn (each
    /// connection from its own place in the list) instead of one request repeated —
    /// many subjects, refusals and bundles, as counters send them.
    #[arg(long)]
    workload: Option<std::path::PathBuf>,
    /// Extra header, `Name: value`; repeatable.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// pid of a server process, to report the server's CPU time per request;
    /// repeatable (e.g. nginx's worker and its upstream), the first is used for RSS.
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// A label for the output line.
    #[arg(long, default_value = "run")]
    label: String,
}

struct Shared {
    args: Args,
    tls: TlsConnector,
    /// The requests sent in turn (one when no workload is given).
    requests: Vec<Request<Full<Bytes>>>,
    /// Where the next request is taken from.
    next: AtomicU64,
    counting: AtomicBool,
    stop: AtomicBool,
    issued: AtomicU64,
}

#[derive(Default)]
struct Tally {
    ok: u64,
    non_2xx: u64,
    errors: u64,
    histogram: Option<Histogram<u64>>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.addr.ip().is_loopback() {
        bail!(
            "refusing to load {}: the load generator only aims at loopback",
            args.addr
        );
    }
    if args.connections == 0 || args.connections > 20_000 || args.duration > 600.0 {
        bail!("connections must be 1..=20000 and duration at most 600 s");
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let alpn = match args.proto {
        Proto::H1 => vec![b"http/1.1".to_vec()],
        Proto::H2 => vec![b"h2".to_vec()],
    };
    let tls = certs::client_config(
        std::slice::from_ref(&args.ca),
        Some((&args.cert, &args.key)),
        alpn,
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(run(args, TlsConnector::from(tls)))
}

fn build_request(
    args: &Args,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<Request<Full<Bytes>>> {
    let method: Method = method.parse().context("method")?;
    // h2 carries the authority in the URI (:authority); HTTP/1.1 in the Host header.
    let mut req = match args.proto {
        Proto::H1 => Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost"),
        Proto::H2 => Request::builder()
            .method(method)
            .uri(format!("https://localhost{path}")),
    };
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    for h in &args.headers {
        let (k, v) = h.split_once(':').context("header must be `Name: value`")?;
        req = req.header(k.trim(), v.trim());
    }
    Ok(req.body(Full::new(Bytes::from(body.unwrap_or_default())))?)
}

/// The requests to send: the workload's, or the one of `--method --path --body`.
fn build_requests(args: &Args) -> Result<Vec<Request<Full<Bytes>>>> {
    let Some(file) = &args.workload else {
        return Ok(vec![build_request(
            args,
            &args.method,
            &args.path,
            args.body.clone(),
        )?]);
    };
    let text = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
    let mut out = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", file.display(), n + 1))?;
        let path = v["path"]
            .as_str()
            .with_context(|| format!("{}:{}: no path", file.display(), n + 1))?;
        let body = v.get("body").map(|b| b.to_string());
        let method = if body.is_some() { "POST" } else { "GET" };
        out.push(build_request(args, method, path, body)?);
    }
    if out.is_empty() {
        bail!("{}: no requests", file.display());
    }
    Ok(out)
}

impl Shared {
    /// The next request of the workload (all connections share one turn, so the
    /// subjects spread as a counter network's do).
    fn request(&self) -> Request<Full<Bytes>> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let i = usize::try_from(n % self.requests.len() as u64).unwrap_or(0);
        clone_request(&self.requests[i])
    }
}

fn clone_request(r: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut out = Request::new(r.body().clone());
    *out.method_mut() = r.method().clone();
    *out.uri_mut() = r.uri().clone();
    *out.headers_mut() = r.headers().clone();
    out
}

async fn run(args: Args, tls: TlsConnector) -> Result<()> {
    let requests = build_requests(&args)?;
    let shared = Arc::new(Shared {
        requests,
        next: AtomicU64::new(0),
        tls,
        counting: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        issued: AtomicU64::new(0),
        args,
    });
    let mut tasks = Vec::new();
    for _ in 0..shared.args.connections {
        tasks.push(tokio::spawn(worker(Arc::clone(&shared))));
    }
    tokio::time::sleep(Duration::from_secs_f64(shared.args.warmup)).await;
    let cpu_before = servers_cpu_us(&shared.args.server_pids)?;
    shared.counting.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(shared.args.duration);
    while Instant::now() < deadline
        && shared.issued.load(Ordering::Relaxed) < shared.args.max_requests
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shared.counting.store(false, Ordering::SeqCst);
    let elapsed = started.elapsed().as_secs_f64();
    let rss_kib = match (shared.args.mode, shared.args.server_pids.first()) {
        (Mode::Idle, Some(pid)) => Some(server_rss_kib(*pid)?),
        _ => None,
    };
    let cpu_after = servers_cpu_us(&shared.args.server_pids)?;
    shared.stop.store(true, Ordering::SeqCst);
    let mut total = Tally::default();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        let tally = t.await?;
        total.ok += tally.ok;
        total.non_2xx += tally.non_2xx;
        total.errors += tally.errors;
        if let Some(h) = tally.histogram {
            hist.add(h)?;
        }
    }
    let done = total.ok + total.non_2xx;
    let cpu_us_per_req = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) if done > 0 => Some((b - a) as f64 / done as f64),
        _ => None,
    };
    let line = serde_json::json!({
        "label": shared.args.label,
        "mode": format!("{:?}", shared.args.mode).to_lowercase(),
        "proto": format!("{:?}", shared.args.proto).to_lowercase(),
        "connections": shared.args.connections,
        "seconds": (elapsed * 100.0).round() / 100.0,
        "requests": done,
        "ok": total.ok,
        "non_2xx": total.non_2xx,
        "errors": total.errors,
        "rps": (done as f64 / elapsed).round(),
        "p50_us": hist.value_at_quantile(0.50),
        "p90_us": hist.value_at_quantile(0.90),
        "p99_us": hist.value_at_quantile(0.99),
        "max_us": hist.max(),
        "server_cpu_us_per_req": cpu_us_per_req.map(|c| (c * 10.0).round() / 10.0),
        "server_rss_kib": rss_kib,
    });
    println!("{line}");
    Ok(())
}

/// Resident set size of a process, KiB.
fn server_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?)
}

/// Total CPU time of the server processes, or None when none is given.
fn servers_cpu_us(pids: &[u32]) -> Result<Option<u64>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut total = 0;
    for pid in pids {
        total += server_cpu_us(*pid)?;
    }
    Ok(Some(total))
}

/// utime + stime of a process in microseconds.
fn server_cpu_us(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are 14th and 15th.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("stat format")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    let hz = 100; // USER_HZ on Linux
    Ok((utime + stime) * 1_000_000 / hz)
}

async fn worker(shared: Arc<Shared>) -> Tally {
    let mut tally = Tally {
        histogram: Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
        ..Tally::default()
    };
    while !shared.stop.load(Ordering::Relaxed) {
        match shared.args.mode {
            Mode::Keepalive => {
                if let Err(_e) = keepalive(&shared, &mut tally).await {
                    tally.errors += u64::from(shared.counting.load(Ordering::Relaxed));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            Mode::Idle => {
                idle(&shared, &mut tally).await;
                break;
            }
            Mode::Handshake => {
                let started = Instant::now();
                let result = async {
                    let mut sender = connect(&shared).await?;
                    sender.send(shared.request()).await
                }
                .await;
                record(&shared, &mut tally, started, result);
            }
        }
        if shared.issued.load(Ordering::Relaxed) >= shared.args.max_requests {
            break;
        }
    }
    tally
}

async fn keepalive(shared: &Shared, tally: &mut Tally) -> Result<()> {
    let mut sender = connect(shared).await?;
    while !shared.stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let result = sender.send(shared.request()).await;
        let failed = result.is_err();
        record(shared, tally, started, result);
        if failed {
            bail!("connection failed");
        }
        if shared.issued.load(Ordering::Relaxed) >= shared.args.max_requests {
            break;
        }
    }
    Ok(())
}

/// One request to prove the connection is up, then hold it until told to stop.
async fn idle(shared: &Shared, tally: &mut Tally) {
    let mut sender = match connect(shared).await {
        Ok(s) => s,
        Err(_) => {
            tally.errors += 1;
            return;
        }
    };
    let started = Instant::now();
    let result = sender.send(shared.request()).await;
    // Count it whether or not the warm-up is over: every connection is one request.
    match result {
        Ok(s) if (200..300).contains(&s) => tally.ok += 1,
        Ok(_) => tally.non_2xx += 1,
        Err(_) => tally.errors += 1,
    }
    if let Some(h) = tally.histogram.as_mut() {
        let _ = h.record(
            u64::try_from(started.elapsed().as_micros())
                .unwrap_or(1)
                .max(1),
        );
    }
    while !shared.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(sender);
}

fn record(shared: &Shared, tally: &mut Tally, started: Instant, result: Result<u16>) {
    if !shared.counting.load(Ordering::Relaxed) {
        return;
    }
    shared.issued.fetch_add(1, Ordering::Relaxed);
    match result {
        Ok(status) => {
            if (200..300).contains(&status) {
                tally.ok += 1;
            } else {
                tally.non_2xx += 1;
            }
            if let Some(h) = tally.histogram.as_mut() {
                let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                let _ = h.record(us.max(1));
            }
        }
        Err(_) => tally.errors += 1,
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<u16> {
        let resp = match self {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        Ok(status)
    }
}

async fn connect(shared: &Shared) -> Result<Sender> {
    let tcp = TcpStream::connect(shared.args.addr).await?;
    tcp.set_nodelay(true)?;
    let tls = shared
        .tls
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let io = TokioIo::new(tls);
    Ok(match shared.args.proto {
        Proto::H1 => {
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            Sender::H1(sender)
        }
        Proto::H2 => {
            let (sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            Sender::H2(sender)
        }
    })
}
