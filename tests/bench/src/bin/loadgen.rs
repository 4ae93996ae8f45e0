//! A load generator for mTLS HTTP servers on loopback: N connections (keep-alive, or a
//! new TLS handshake per request), HTTP/1.1 or h2, for a bounded time and count.
//! Prints one JSON line: requests/s, latency percentiles, errors, and — given the
//! server's pid — the server's CPU time per request read from /proc.
//!
//! With `--rate R` the load is open loop instead: request k is due at start + k/R
//! whatever the server does, and its latency counts from that due time, not from when
//! a connection was free to send it (wrk2's coordinated-omission correction). A closed
//! loop waits for the server before sending more, so a slow server lowers its own
//! offered load and its queueing never shows; a fixed schedule does not wait.

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
    /// Open loop: offer this many requests per second in total, on a fixed schedule,
    /// over the keep-alive connections; latency counts from each request's due time.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: seconds after the schedule ends to let the backlog finish; what is
    /// still unsent then counts at its latency so far (a lower bound) as `unsent`.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
}

/// When request k of an open-loop run is due: start + k / rate.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    start: Instant,
    /// Requests per second.
    rate: f64,
}

impl Schedule {
    fn new(start: Instant, rate: f64) -> Result<Self> {
        if !(rate.is_finite() && rate > 0.0 && rate <= 10_000_000.0) {
            bail!("rate must be above 0 and at most 10,000,000 requests/s");
        }
        Ok(Self { start, rate })
    }

    /// The due time of request `k`. Computed from k each time rather than by adding
    /// an interval, so rounding never accumulates.
    fn due(&self, k: u64) -> Instant {
        self.start + Duration::from_secs_f64(k as f64 / self.rate)
    }

    /// The first request index due at or after `t`.
    fn index_at(&self, t: Instant) -> u64 {
        let since = t.saturating_duration_since(self.start).as_secs_f64();
        // Float-to-int `as` saturates; the rate is bounded, so this stays exact enough.
        (since * self.rate).ceil() as u64
    }

    /// How many requests are due in `[from, until)`.
    fn due_between(&self, from: Instant, until: Instant) -> u64 {
        self.index_at(until).saturating_sub(self.index_at(from))
    }
}

/// Latency of an open-loop request: from when it was due, not from when it was sent,
/// so time spent waiting behind a slow server counts.
fn latency_us(due: Instant, done: Instant) -> u64 {
    let us = done.saturating_duration_since(due).as_micros();
    u64::try_from(us).unwrap_or(u64::MAX).max(1)
}

/// An open-loop run's schedule, measurement window and queue of due requests.
struct OpenLoop {
    schedule: Schedule,
    /// Requests due before this are warm-up, not counted.
    measure_from: Instant,
    /// The schedule ends here: nothing is due at or after it.
    measure_until: Instant,
    /// Due request indices, released by the pacer; a free connection takes the next.
    due: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<u64>>,
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
    open_loop: Option<OpenLoop>,
}

#[derive(Default)]
struct Tally {
    ok: u64,
    non_2xx: u64,
    errors: u64,
    /// Open loop: due in the window but never sent before the drain ended.
    unsent: u64,
    histogram: Option<Histogram<u64>>,
}

impl Tally {
    /// Counts one finished request and, if it was answered, its latency.
    fn add(&mut self, result: Result<u16>, latency_us: u64) {
        match result {
            Ok(status) => {
                if (200..300).contains(&status) {
                    self.ok += 1;
                } else {
                    self.non_2xx += 1;
                }
                self.latency(latency_us);
            }
            Err(_) => self.errors += 1,
        }
    }

    fn latency(&mut self, us: u64) {
        if let Some(h) = self.histogram.as_mut() {
            // Beyond the histogram's 60 s bound it saturates rather than vanish.
            let _ = h.record(us.clamp(1, 60_000_000));
        }
    }
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
    if args.rate.is_some() && args.mode != Mode::Keepalive {
        bail!("--rate (open loop) works with --mode keepalive only");
    }
    if !(0.0..=600.0).contains(&args.drain) || !(0.0..=600.0).contains(&args.warmup) {
        bail!("warm-up and drain must be 0..=600 s");
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
    let (due_tx, open_loop) = match args.rate {
        Some(rate) => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let start = Instant::now();
            let measure_from = start + Duration::from_secs_f64(args.warmup);
            let open = OpenLoop {
                schedule: Schedule::new(start, rate)?,
                measure_from,
                measure_until: measure_from + Duration::from_secs_f64(args.duration),
                due: tokio::sync::Mutex::new(rx),
            };
            (Some(tx), Some(open))
        }
        None => (None, None),
    };
    let shared = Arc::new(Shared {
        requests,
        next: AtomicU64::new(0),
        tls,
        counting: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        issued: AtomicU64::new(0),
        open_loop,
        args,
    });
    if let Some(tx) = due_tx {
        tokio::spawn(pace(Arc::clone(&shared), tx));
    }
    let mut tasks = Vec::new();
    for _ in 0..shared.args.connections {
        tasks.push(tokio::spawn(worker(Arc::clone(&shared))));
    }
    let measured = match &shared.open_loop {
        Some(open) => measure_open_loop(&shared, open, &tasks).await?,
        None => measure_closed_loop(&shared).await?,
    };
    shared.stop.store(true, Ordering::SeqCst);
    let mut total = Tally::default();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        let tally = t.await?;
        total.ok += tally.ok;
        total.non_2xx += tally.non_2xx;
        total.errors += tally.errors;
        total.unsent += tally.unsent;
        if let Some(h) = tally.histogram {
            hist.add(h)?;
        }
    }
    let done = total.ok + total.non_2xx;
    let cpu_us_per_req = match (measured.cpu_before, measured.cpu_after) {
        (Some(a), Some(b)) if done > 0 => Some((b - a) as f64 / done as f64),
        _ => None,
    };
    let elapsed = measured.seconds;
    let mode = match shared.open_loop {
        Some(_) => "open".to_string(),
        None => format!("{:?}", shared.args.mode).to_lowercase(),
    };
    let line = serde_json::json!({
        "label": shared.args.label,
        "mode": mode,
        "proto": format!("{:?}", shared.args.proto).to_lowercase(),
        "connections": shared.args.connections,
        "rate_offered": shared.args.rate,
        "seconds": (elapsed * 100.0).round() / 100.0,
        "requests": done,
        "ok": total.ok,
        "non_2xx": total.non_2xx,
        "errors": total.errors,
        // Open loop: requests due in the measured window, and those never sent.
        "scheduled": shared
            .open_loop
            .as_ref()
            .map(|o| o.schedule.due_between(o.measure_from, o.measure_until)),
        "unsent": shared.open_loop.as_ref().map(|_| total.unsent),
        "rps": (done as f64 / elapsed).round(),
        "p50_us": hist.value_at_quantile(0.50),
        "p90_us": hist.value_at_quantile(0.90),
        "p99_us": hist.value_at_quantile(0.99),
        "p999_us": hist.value_at_quantile(0.999),
        "max_us": hist.max(),
        "server_cpu_us_per_req": cpu_us_per_req.map(|c| (c * 10.0).round() / 10.0),
        "server_rss_kib": measured.rss_kib,
    });
    println!("{line}");
    Ok(())
}

/// What a run's measurement window gave, besides the tallies.
struct Measured {
    /// Length of the window the rate is computed over.
    seconds: f64,
    cpu_before: Option<u64>,
    cpu_after: Option<u64>,
    rss_kib: Option<u64>,
}

/// Closed loop: count what completes between the end of the warm-up and the deadline.
async fn measure_closed_loop(shared: &Shared) -> Result<Measured> {
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
    let seconds = started.elapsed().as_secs_f64();
    let rss_kib = match (shared.args.mode, shared.args.server_pids.first()) {
        (Mode::Idle, Some(pid)) => Some(server_rss_kib(*pid)?),
        _ => None,
    };
    let cpu_after = servers_cpu_us(&shared.args.server_pids)?;
    Ok(Measured {
        seconds,
        cpu_before,
        cpu_after,
        rss_kib,
    })
}

/// Open loop: the window is the schedule's measured part; requests due in it are
/// counted wherever they complete, so the run lasts until the backlog is served (or
/// the drain time ends, when the workers count what is left as unsent).
async fn measure_open_loop(
    shared: &Shared,
    open: &OpenLoop,
    tasks: &[tokio::task::JoinHandle<Tally>],
) -> Result<Measured> {
    tokio::time::sleep_until(open.measure_from.into()).await;
    let cpu_before = servers_cpu_us(&shared.args.server_pids)?;
    let drain_end = open.measure_until + Duration::from_secs_f64(shared.args.drain);
    // Workers end when the schedule is over and its queue is empty.
    while !tasks.iter().all(|t| t.is_finished()) && Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The rate achieved is what was served of the window's requests over the time it
    // took: a server that keeps up ends with the window, one that does not, later.
    let seconds = open
        .measure_from
        .elapsed()
        .as_secs_f64()
        .max(shared.args.duration);
    let cpu_after = servers_cpu_us(&shared.args.server_pids)?;
    Ok(Measured {
        seconds,
        cpu_before,
        cpu_after,
        rss_kib: None,
    })
}

/// Releases each request of the schedule when it is due; the first free connection
/// takes it. When none is free the request waits in the queue, and that wait counts
/// in its latency.
async fn pace(shared: Arc<Shared>, due_tx: tokio::sync::mpsc::UnboundedSender<u64>) {
    let Some(open) = &shared.open_loop else {
        return;
    };
    let mut k = 0u64;
    loop {
        let due = open.schedule.due(k);
        if due >= open.measure_until || shared.stop.load(Ordering::Relaxed) {
            // Dropping the sender tells the workers the schedule is over.
            return;
        }
        wait_until(due).await;
        // A late wake-up releases every request due by now at once.
        let now = Instant::now();
        while open.schedule.due(k) <= now && open.schedule.due(k) < open.measure_until {
            if due_tx.send(k).is_err() {
                return;
            }
            k += 1;
        }
    }
}

/// Waits until `t` closer than tokio's millisecond timer would: sleeps to within 2 ms,
/// then yields until due. Otherwise requests would leave in 1 ms bursts and every one
/// would carry up to a millisecond of the generator's own lateness.
async fn wait_until(t: Instant) {
    const SPIN: Duration = Duration::from_millis(2);
    loop {
        let now = Instant::now();
        if now >= t {
            return;
        }
        if t - now > SPIN {
            tokio::time::sleep_until((t - SPIN).into()).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
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
            Mode::Keepalive if shared.open_loop.is_some() => {
                match open_loop(&shared, &mut tally).await {
                    Ok(()) => break,
                    Err(_e) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
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

/// One connection of an open-loop run: takes each due request as it comes free and
/// times it from its due time. Returns when the schedule is over; an error when the
/// connection fails (the worker then reconnects).
async fn open_loop(shared: &Shared, tally: &mut Tally) -> Result<()> {
    let Some(open) = &shared.open_loop else {
        return Ok(());
    };
    let mut sender = match connect(shared).await {
        Ok(s) => s,
        Err(e) => {
            tally.errors += u64::from(Instant::now() >= open.measure_from);
            return Err(e);
        }
    };
    loop {
        let next = open.due.lock().await.recv().await;
        let Some(k) = next else {
            return Ok(());
        };
        let due = open.schedule.due(k);
        let counted = due >= open.measure_from;
        if shared.stop.load(Ordering::Relaxed) {
            // The drain time is over: what is left counts, at its latency so far.
            if counted {
                tally.unsent += 1;
                tally.latency(latency_us(due, Instant::now()));
            }
            continue;
        }
        let result = sender.send(shared.request()).await;
        let done = Instant::now();
        let failed = result.is_err();
        if counted {
            tally.add(result, latency_us(due, done));
        }
        if failed {
            bail!("connection failed");
        }
    }
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
    let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    tally.add(result, us);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn request_k_is_due_at_start_plus_k_over_rate() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 1000.0).expect("rate");
        assert_eq!(schedule.due(0), start);
        assert_eq!(schedule.due(5), at(start, 5));
        assert_eq!(schedule.due(2500), at(start, 2500));
    }

    #[test]
    fn a_late_send_counts_from_its_due_time() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 1000.0).expect("rate");
        // Request 5 is due at 5 ms; the connection was busy until 12 ms and the answer
        // came at 13 ms: 8 ms of latency, not the 1 ms the send-to-answer time shows.
        assert_eq!(latency_us(schedule.due(5), at(start, 13)), 8_000);
    }

    #[test]
    fn an_answer_before_its_due_time_counts_as_the_minimum() {
        let start = Instant::now();
        assert_eq!(latency_us(at(start, 10), at(start, 9)), 1);
    }

    #[test]
    fn the_window_holds_rate_times_seconds_requests() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 250.0).expect("rate");
        // Warm-up of 1 s, then 2 s measured: requests 250..750.
        assert_eq!(schedule.index_at(at(start, 1000)), 250);
        assert_eq!(schedule.due_between(at(start, 1000), at(start, 3000)), 500);
    }

    #[test]
    fn a_rate_that_is_not_a_positive_number_is_refused() {
        let start = Instant::now();
        for rate in [0.0, -5.0, f64::NAN, f64::INFINITY] {
            assert!(Schedule::new(start, rate).is_err(), "{rate}");
        }
    }
}
