//! Crash safety: the real `tongban serve` process killed with SIGKILL under load.
//! Every answer the clients received with status 200 must have its audit record,
//! and the chain must verify after a restart.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit::{AuditStore, Database, Filter};
use http::StatusCode;
use serde_json::Value;
use tongban_tests::{free_addr, test_counts, tongban_binary};

fn serve(bin: &Path, dir: &Path, run: usize) -> Child {
    let log = std::fs::File::create(dir.join(format!("serve-{run}.log"))).unwrap();
    Command::new(bin)
        .args(["serve", "--config"])
        .arg(dir.join("tongban.toml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Wait until the gateway answers a lookup.
async fn until_serving(client: &Client, body: &Value, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((status, _)) = client.lookup(Some("clerk-0"), body).await {
            if status == StatusCode::OK {
                return;
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "tongban serve exited");
        assert!(
            Instant::now() < deadline,
            "tongban serve did not start serving"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An mTLS client of the gateway at `addr`, with demo certificate `name` of `dir`.
#[derive(Clone)]
struct Client {
    tls: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
}

impl Client {
    fn new(dir: &Path, addr: SocketAddr, name: &str) -> Self {
        let pki = dir.join("pki");
        let (cert, key) = (
            pki.join(format!("{name}.pem")),
            pki.join(format!("{name}.key")),
        );
        let tls = certs::client_config(
            &[pki.join("ca.pem")],
            Some((cert.as_path(), key.as_path())),
            vec![b"http/1.1".to_vec()],
        )
        .unwrap();
        Self { tls, addr }
    }

    /// One lookup on a new connection; `Err` when the connection fails.
    async fn lookup(
        &self,
        operator: Option<&str>,
        body: &Value,
    ) -> Result<(StatusCode, Value), String> {
        use http_body_util::BodyExt as _;
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let name =
            rustls_pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = http::Request::post("/v1/lookup")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .header("x-operator-id", operator.unwrap_or_default())
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }
}

/// What a client got with status 200.
#[derive(Debug, Clone)]
struct Got {
    request_id: String,
    seq: i64,
    hash: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_answered_record() {
    gateway::install_crypto_provider();
    let bin = tongban_binary();
    let dir = tempfile::tempdir().unwrap();
    let (listen, ops) = (free_addr(), free_addr());
    let demo = gateway::demo::prepare(dir.path(), Some(listen), Some(ops), &test_counts())
        .await
        .unwrap();
    let samples = gateway::demo::load_samples(&demo.dir).unwrap();
    let ok: Vec<Value> = samples.into_iter().filter(|s| s["expect"] == 200).collect();
    let path = dir.path().to_owned();
    let gw = move |cert: &Value| Client::new(&path, listen, cert.as_str().unwrap());

    let mut child = serve(&bin, dir.path(), 1);
    until_serving(&gw(&ok[0]["cert"]), &ok[0]["body"], &mut child).await;

    // Load: eight clients, each one lookup after another, until told to stop.
    let got: Arc<Mutex<Vec<Got>>> = Arc::default();
    let answered = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (got, answered, stop, ok) = (got.clone(), answered.clone(), stop.clone(), ok.clone());
        let clients: Vec<Client> = ok.iter().map(|s| gw(&s["cert"])).collect();
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            while !stop.load(Ordering::Relaxed) {
                let k = i % ok.len();
                i += 1;
                let Ok((status, body)) = clients[k]
                    .lookup(Some(&format!("clerk-{t}")), &ok[k]["body"])
                    .await
                else {
                    continue;
                };
                if status == StatusCode::OK {
                    got.lock().unwrap().push(Got {
                        request_id: body["request_id"].as_str().unwrap().to_owned(),
                        seq: body["audit"]["seq"].as_i64().unwrap(),
                        hash: body["audit"]["hash"].as_str().unwrap().to_owned(),
                    });
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while answered.load(Ordering::Relaxed) < 300 {
        assert!(
            Instant::now() < deadline,
            "the load did not get 300 answers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGKILL, with requests in flight.
    child.kill().unwrap();
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let got = got.lock().unwrap().clone();
    assert!(got.len() >= 300);

    // Restart on the same state: the chain goes on.
    let mut child = serve(&bin, dir.path(), 2);
    until_serving(&gw(&ok[0]["cert"]), &ok[0]["body"], &mut child).await;
    child.kill().unwrap();
    child.wait().unwrap();

    // Every answer the clients got has its record, with the hash they were given.
    let store = AuditStore::open_existing(&Database::Sqlite(dir.path().join("state.db")))
        .await
        .unwrap();
    let rows = store.search(&Filter::default(), 0, 100_000).await.unwrap();
    let by_seq: std::collections::HashMap<i64, (String, Value)> = rows
        .into_iter()
        .map(|r| (r.seq, (r.hash, serde_json::from_str(&r.record).unwrap())))
        .collect();
    for g in &got {
        let (hash, record) = by_seq.get(&g.seq).unwrap_or_else(|| {
            panic!(
                "answered request {} has no audit record {}",
                g.request_id, g.seq
            )
        });
        assert_eq!(hash, &g.hash, "seq {}", g.seq);
        assert_eq!(record["request_id"], g.request_id.as_str());
        assert_eq!(record["status"], 200);
    }

    // And the whole chain verifies, checkpoints included.
    use clap::Parser as _;
    let config = dir.path().join("tongban.toml").display().to_string();
    let cli =
        gateway::cli::Cli::try_parse_from(["tongban", "audit", "verify", "--config", &config])
            .unwrap();
    if let Err(f) = gateway::cli::run(cli).await {
        panic!("audit verify after the crash: {f}");
    }
}
