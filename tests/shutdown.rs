//! Graceful shutdown of the real `tongban serve` process: SIGTERM with requests in
//! flight. The gateway stops accepting, finishes what it holds, commits and seals
//! the audit log and exits 0; every answer a client received is whole, every 200 has
//! its record, and the chain verifies. The process runs with JSON logs (set through
//! `TONGBAN_*` variables), and no log line carries a subject or a record's contents.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit::{AuditStore, Database, Filter};
use http::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tongban_tests::{free_addr, test_counts, tongban_binary, Client, Served};

/// What a client got with status 200.
#[derive(Debug, Clone)]
struct Got {
    request_id: String,
    seq: i64,
    hash: String,
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    ok: Mutex<Vec<Got>>,
    /// Answers whose head arrived without their whole body.
    incomplete: Mutex<Vec<String>>,
    /// Complete answers other than 200.
    other: Mutex<Vec<(u16, Value)>>,
    /// Requests sent and not yet answered.
    in_flight: AtomicUsize,
    /// Answers (of any status) that arrived after SIGTERM was sent.
    after_term: AtomicUsize,
    /// The record values and subjects the clients were shown.
    shown: Mutex<Vec<String>>,
}

impl Tally {
    fn answered(&self, status: StatusCode, body: Value, term_sent: bool) {
        if term_sent {
            self.after_term.fetch_add(1, Ordering::Relaxed);
        }
        if status != StatusCode::OK {
            self.other.lock().unwrap().push((status.as_u16(), body));
            return;
        }
        let mut shown = self.shown.lock().unwrap();
        shown.push(body["subject"].as_str().unwrap().to_owned());
        if let Some(record) = body["record"].as_object() {
            shown.extend(
                record
                    .values()
                    .filter_map(Value::as_str)
                    // Names, addresses and identifiers; not enumerations like
                    // `active` that any log may say.
                    .filter(|v| {
                        let n = v.chars().count();
                        (n >= 2 && !v.is_ascii()) || n >= 15
                    })
                    .map(str::to_owned),
            );
        }
        assert!(body["audit"]["checkpoint"].is_string(), "{body}");
        self.ok.lock().unwrap().push(Got {
            request_id: body["request_id"].as_str().unwrap().to_owned(),
            seq: body["audit"]["seq"].as_i64().unwrap(),
            hash: body["audit"]["hash"].as_str().unwrap().to_owned(),
        });
    }
}

/// A lookup the gateway is known to be in the middle of: its head was sent with
/// `Expect: 100-continue` and the `100 Continue` came back (the gateway started
/// reading the body); the body is not sent yet.
struct Held {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    rest: Vec<u8>,
}

async fn hold(client: &Client, body: &Value) -> Held {
    let body = body.to_string().into_bytes();
    let head = format!(
        "POST /v1/lookup HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         x-operator-id: clerk-held\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = client.tls_stream().await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert!(
            stream.read(&mut byte).await.unwrap() == 1,
            "closed before 100 Continue"
        );
        got.push(byte[0]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    Held { stream, rest: body }
}

/// Send the rest of a held request and read its answer: status and body, checked to
/// be as long as its `content-length` says.
async fn finish(mut held: Held) -> (StatusCode, Value) {
    held.stream.write_all(&held.rest).await.unwrap();
    held.stream.flush().await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .expect("an answer with content-length");
            if buf.len() >= end + 4 + length {
                let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
                let body = serde_json::from_slice(&buf[end + 4..end + 4 + length]).unwrap();
                return (StatusCode::from_u16(status).unwrap(), body);
            }
        }
        let n = held.stream.read(&mut chunk).await.unwrap_or(0);
        assert!(
            n > 0,
            "the connection closed before a whole answer: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One lookup after another, each on a new connection, until connections fail.
async fn load(client: Client, body: Value, tally: Arc<Tally>, term: Arc<AtomicBool>, t: usize) {
    loop {
        tally.in_flight.fetch_add(1, Ordering::Relaxed);
        let r = client.lookup(Some(&format!("clerk-{t}")), &body).await;
        tally.in_flight.fetch_sub(1, Ordering::Relaxed);
        match r {
            Ok(a) => tally.answered(a.status, a.body, term.load(Ordering::Relaxed)),
            Err(e) if e.starts_with("body:") => tally.incomplete.lock().unwrap().push(e),
            // No answer at all: refused, or closed before the head (shutting down).
            Err(_) if term.load(Ordering::Relaxed) => return,
            Err(e) => panic!("lookup failed before SIGTERM: {e}"),
        }
    }
}

/// Lookups on one keep-alive connection (a new one when the server closes it), until
/// no connection can be opened.
async fn load_keep_alive(
    client: Client,
    body: Value,
    tally: Arc<Tally>,
    term: Arc<AtomicBool>,
    t: usize,
) {
    use http_body_util::BodyExt as _;
    loop {
        let Ok(stream) = client.tls_stream().await else {
            assert!(
                term.load(Ordering::Relaxed),
                "connect failed before SIGTERM"
            );
            return;
        };
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await
        else {
            continue;
        };
        tokio::spawn(conn);
        loop {
            if sender.ready().await.is_err() {
                break;
            }
            let req = http::Request::builder()
                .method(Method::POST)
                .uri("/v1/lookup")
                .header("host", "localhost")
                .header("content-type", "application/json")
                .header("x-operator-id", format!("clerk-ka-{t}"))
                .body(http_body_util::Full::new(bytes::Bytes::from(
                    body.to_string(),
                )))
                .unwrap();
            tally.in_flight.fetch_add(1, Ordering::Relaxed);
            let resp = sender.send_request(req).await;
            let Ok(resp) = resp else {
                // Closed before an answer's head: the server ended the connection
                // between requests.
                tally.in_flight.fetch_sub(1, Ordering::Relaxed);
                break;
            };
            let status = resp.status();
            let bytes = resp.into_body().collect().await;
            tally.in_flight.fetch_sub(1, Ordering::Relaxed);
            match bytes {
                Ok(b) => tally.answered(
                    status,
                    serde_json::from_slice(&b.to_bytes()).unwrap_or(Value::Null),
                    term.load(Ordering::Relaxed),
                ),
                Err(e) => tally
                    .incomplete
                    .lock()
                    .unwrap()
                    .push(format!("keep-alive body: {e}")),
            }
        }
    }
}

/// Wait until nothing accepts connections at `addr` any more.
async fn until_refused(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting 30 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_open_requests_flushes_the_audit_and_exits_0() {
    gateway::install_crypto_provider();
    let bin = tongban_binary();
    let dir = tempfile::tempdir().unwrap();
    let (listen, ops) = (free_addr(), free_addr());
    gateway::demo::prepare(dir.path(), Some(listen), Some(ops), &test_counts())
        .await
        .unwrap();
    // `tongban serve` alone (no demo department): population and legal-person lookups.
    let ok: Vec<Value> = gateway::demo::load_samples(dir.path())
        .unwrap()
        .into_iter()
        .filter(|s| {
            s["expect"] == 200 && s["path"] == "/v1/lookup" && s["body"]["dataset"] != "e_license"
        })
        .collect();
    assert!(ok.len() >= 2);
    let pki = dir.path().join("pki");
    let client = |s: &Value| Client::connect(&pki, listen, s["cert"].as_str().unwrap());

    // Settings from the environment: JSON logs at debug level, and checkpoints only
    // when the audit log is closed, so the final seal is the shutdown's.
    let env = [
        ("TONGBAN_TELEMETRY_LOG_FORMAT", "json".to_owned()),
        ("TONGBAN_TELEMETRY_LOG_LEVEL", "debug".to_owned()),
        ("TONGBAN_AUDIT_CHECKPOINT_EVERY", "1000000".to_owned()),
        ("TONGBAN_AUDIT_CHECKPOINT_INTERVAL_SECS", "3600".to_owned()),
        ("TONGBAN_LIMITS_SHUTDOWN_GRACE_SECS", "20".to_owned()),
    ];
    let mut served = Served::spawn(
        &bin,
        &dir.path().join("tongban.toml"),
        &env,
        dir.path().join("serve.log"),
    );
    served.until_serving(&client(&ok[0]), &ok[0]["body"]).await;

    // Load: 24 clients on new connections, 8 on keep-alive ones.
    let tally = Arc::new(Tally::default());
    let term = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..32 {
        let s = &ok[t % ok.len()];
        let (c, b, tally, term) = (client(s), s["body"].clone(), tally.clone(), term.clone());
        tasks.push(if t < 24 {
            tokio::spawn(load(c, b, tally, term, t))
        } else {
            tokio::spawn(load_keep_alive(c, b, tally, term, t))
        });
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while tally.ok.lock().unwrap().len() < 300 {
        assert!(
            Instant::now() < deadline,
            "the load did not get 300 answers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Eight requests the gateway is certainly in the middle of, waiting for their body.
    let mut held = Vec::new();
    for i in 0..8 {
        let s = &ok[i % ok.len()];
        held.push(hold(&client(s), &s["body"]).await);
    }

    let in_flight = tally.in_flight.load(Ordering::Relaxed);
    term.store(true, Ordering::Relaxed);
    let sent = Instant::now();
    served.terminate();
    until_refused(listen).await;
    let refused_after = sent.elapsed();
    // Draining now: the held requests still get their whole answers.
    for h in held {
        let (status, body) = finish(h).await;
        tally.answered(status, body, true);
        assert_eq!(status, StatusCode::OK);
    }
    let status = served.exit_status(Duration::from_secs(60)).await;
    let exited_after = sent.elapsed();
    assert_eq!(status.code(), Some(0), "{}", served.log_text());
    for t in tasks {
        t.await.unwrap();
    }

    let incomplete = tally.incomplete.lock().unwrap().clone();
    assert!(incomplete.is_empty(), "answers cut short: {incomplete:?}");
    let other = tally.other.lock().unwrap().clone();
    assert!(other.is_empty(), "answers other than 200: {other:?}");
    let got = tally.ok.lock().unwrap().clone();

    // Every 200 has its record, with the hash the client was given.
    let store = AuditStore::open_existing(&Database::Sqlite(dir.path().join("state.db")))
        .await
        .unwrap();
    let rows = store
        .search(&Filter::default(), 0, 1_000_000)
        .await
        .unwrap();
    let by_seq: std::collections::HashMap<i64, (String, Value)> = rows
        .iter()
        .map(|r| {
            (
                r.seq,
                (r.hash.clone(), serde_json::from_str(&r.record).unwrap()),
            )
        })
        .collect();
    for g in &got {
        let (hash, record) = by_seq
            .get(&g.seq)
            .unwrap_or_else(|| panic!("answered request {} has no record {}", g.request_id, g.seq));
        assert_eq!(hash, &g.hash, "seq {}", g.seq);
        assert_eq!(record["request_id"], g.request_id.as_str());
        assert_eq!(record["status"], 200);
    }
    // The head was sealed at shutdown (no other checkpoint was due since the demo
    // sealed its own policy changes).
    let head = rows.iter().map(|r| r.seq).max().unwrap();
    let seeded = by_seq
        .iter()
        .filter(|(_, (_, r))| r["consumer"] == "cli:tongban-demo")
        .map(|(seq, _)| *seq)
        .max()
        .unwrap_or(0);
    let checkpoints = store.checkpoints(seeded + 1, head).await.unwrap();
    assert_eq!(
        checkpoints.iter().map(|c| c.seq).collect::<Vec<_>>(),
        [head],
        "one checkpoint, at the head"
    );
    // And the chain verifies.
    use clap::Parser as _;
    let config = dir.path().join("tongban.toml").display().to_string();
    let cli =
        gateway::cli::Cli::try_parse_from(["tongban", "audit", "verify", "--config", &config])
            .unwrap();
    if let Err(f) = gateway::cli::run(cli).await {
        panic!("audit verify after shutdown: {f}");
    }

    // Logs: every line JSON; none carries a subject or a value of a record shown.
    let log = served.log_text();
    let shown = tally.shown.lock().unwrap().clone();
    let mut drain_ms = None;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        if let Some(leak) = shown.iter().find(|v| line.contains(v.as_str())) {
            panic!("a log line carries {leak:?}: {line}");
        }
        if entry["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("stopped: open requests finished"))
        {
            drain_ms = entry["fields"]["drain_ms"].as_u64();
        }
    }
    let drain_ms = drain_ms.unwrap_or_else(|| panic!("no shutdown line in the log: {log}"));
    println!(
        "SIGTERM with {in_flight} requests in flight plus 8 held: listener closed after {} ms, \
         requests drained in {drain_ms} ms, exit 0 after {} ms; {} answers after SIGTERM, \
         {} answered 200 in all, {} audit records, {} log lines checked",
        refused_after.as_millis(),
        exited_after.as_millis(),
        tally.after_term.load(Ordering::Relaxed),
        got.len(),
        rows.len(),
        log.lines().count(),
    );
}
