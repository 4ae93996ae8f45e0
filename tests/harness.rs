//! End-to-end harness: a real gateway, built from a real demo directory, listening on
//! ephemeral ports, and mTLS clients that talk to it over TCP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use connectors::demo::DemoCounts;
use gateway::server::{start, Running};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Small demo data: enough rows to look things up, quick to generate.
pub fn test_counts() -> DemoCounts {
    DemoCounts {
        residents: 400,
        legal_persons: 80,
        licenses: 120,
    }
}

/// A running gateway over its own demo directory.
pub struct Gateway {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The server.
    pub running: Running,
    /// The demo's witness, cosigning the audit log's checkpoints.
    pub witness: Option<gateway::witness_server::WitnessService>,
}

impl Gateway {
    /// Create a demo directory and start serving it on ephemeral ports.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// As [`Gateway::start`], with the demo's config changed by `adjust` first.
    pub async fn start_with(adjust: impl FnOnce(&mut gateway::config::Config)) -> Self {
        gateway::install_crypto_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let any = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        let mut demo = gateway::demo::prepare(dir.path(), any, any, &test_counts())
            .await
            .expect("demo directory");
        gateway::demo::start_department(&mut demo)
            .await
            .expect("demo department service");
        let witness = gateway::demo::start_witness(&mut demo)
            .await
            .expect("demo witness");
        adjust(&mut demo.config);
        let running = start(demo.config).await.expect("gateway starts");
        Self {
            dir,
            running,
            witness,
        }
    }

    /// The demo directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Issue a client certificate `pki/<name>.pem` for `identity` from the demo CA
    /// and bind it the `dept-admin` role: a department admin besides the demo's.
    pub async fn add_dept_admin(&self, identity: &str, name: &str) {
        let pki = self.path().join("pki");
        let mut ca = certs::CaDir::open(&pki).expect("the demo CA");
        let request = certs::IssueRequest {
            subject: certs::Subject::Client {
                identity: identity.parse().expect("an identity URI"),
                common_name: name.into(),
            },
            validity: certs::Validity::days(30).expect("30 days"),
            key_alg: certs::KeyAlg::EcdsaP256,
        };
        ca.issue(&request, &pki, name, false)
            .expect("a certificate from the demo CA");
        let policy = &self.running.app.policy;
        policy
            .store
            .bind_role_by(identity, "dept-admin", "test")
            .await
            .expect("the role bound");
        policy.refresh().await.expect("policy refreshed");
    }

    /// `GET /readyz` on the ops listener, as JSON.
    pub async fn readyz(&self) -> Value {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut tcp = TcpStream::connect(self.running.ops_addr)
            .await
            .expect("ops listener");
        tcp.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .expect("request");
        let mut out = String::new();
        tcp.read_to_string(&mut out).await.expect("answer");
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body).expect("readyz JSON")
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("tongban.toml")
    }

    /// A client presenting demo certificate `name` (`counter-a`, `counter-b`, …).
    pub fn client(&self, name: &str) -> Client {
        let pki = self.path().join("pki");
        self.client_with(Some((
            pki.join(format!("{name}.pem")),
            pki.join(format!("{name}.key")),
        )))
    }

    /// A client presenting the given certificate and key, or none.
    pub fn client_with(&self, cert: Option<(PathBuf, PathBuf)>) -> Client {
        let ca = self.path().join("pki/ca.pem");
        let tls = certs::client_config(
            &[ca],
            cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
            vec![b"http/1.1".to_vec()],
        )
        .expect("client TLS config");
        Client {
            tls,
            addr: self.running.addr,
        }
    }

    /// The demo's `samples.json`.
    pub fn samples(&self) -> Vec<Value> {
        gateway::demo::load_samples(self.path()).expect("samples.json")
    }

    /// Open the state database.
    pub async fn state_db(&self) -> sqlx::SqlitePool {
        sqlx::SqlitePool::connect(&format!(
            "sqlite://{}",
            self.path().join("state.db").display()
        ))
        .await
        .expect("state db")
    }

    /// Number of audit records.
    pub async fn audit_count(&self) -> i64 {
        let pool = self.state_db().await;
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
            .fetch_one(&pool)
            .await
            .expect("count")
    }

    /// The sequence number of the last audit record (0 for an empty chain). A new
    /// demo directory's chain already holds its agreements and role bindings.
    pub async fn audit_head(&self) -> i64 {
        let pool = self.state_db().await;
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_log")
            .fetch_one(&pool)
            .await
            .expect("head")
    }

    /// The last audit record, parsed.
    pub async fn last_audit(&self) -> Value {
        let pool = self.state_db().await;
        let text: String =
            sqlx::query_scalar("SELECT record FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_one(&pool)
                .await
                .expect("an audit record");
        serde_json::from_str(&text).expect("audit JSON")
    }

    /// Run a `tongban` command line in-process; returns the exit code.
    pub async fn tongban(&self, args: &[&str]) -> u8 {
        self.tongban_output(args).await.0
    }

    /// Run a `tongban` command line in-process; returns the exit code and the error
    /// message (empty on success).
    pub async fn tongban_output(&self, args: &[&str]) -> (u8, String) {
        use clap::Parser as _;
        let mut argv = vec!["tongban"];
        argv.extend_from_slice(args);
        let cli = gateway::cli::Cli::try_parse_from(argv).expect("valid command line");
        match gateway::cli::run(cli).await {
            Ok(()) => (0, String::new()),
            Err(f) => (f.code(), f.to_string()),
        }
    }
}

/// An answer: status, headers, JSON body.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Parsed body (null when not JSON).
    pub body: Value,
    /// The body as text (lossy UTF-8), for answers that are not JSON.
    pub text: String,
}

/// An mTLS client; one connection per request.
#[derive(Clone)]
pub struct Client {
    tls: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
}

impl Client {
    /// POST /v1/lookup with an operator.
    pub async fn lookup(&self, operator: Option<&str>, body: &Value) -> Result<Answer, String> {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(op) = operator {
            headers.push(("x-operator-id", op));
        }
        self.request(Method::POST, "/v1/lookup", &headers, body.to_string())
            .await
    }

    /// A client of the gateway at `addr`, presenting certificate `name` of the demo
    /// PKI directory `pki` (`<dir>/pki`) — for gateways this process did not start.
    pub fn connect(pki: &Path, addr: SocketAddr, name: &str) -> Client {
        let (cert, key) = (
            pki.join(format!("{name}.pem")),
            pki.join(format!("{name}.key")),
        );
        let tls = certs::client_config(
            &[pki.join("ca.pem")],
            Some((cert.as_path(), key.as_path())),
            vec![b"http/1.1".to_vec()],
        )
        .expect("client TLS config");
        Client { tls, addr }
    }

    /// A bare mutual-TLS connection (ALPN http/1.1), for speaking HTTP by hand.
    pub async fn tls_stream(&self) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        TlsConnector::from(Arc::clone(&self.tls))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))
    }

    /// `GET path`, which must get an answer.
    pub async fn get(&self, path: &str) -> Answer {
        self.request(Method::GET, path, &[], String::new())
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Any request. Errors are connection-level (TLS refused, reset); one starting
    /// with `body:` means the answer's head arrived but its body did not, whole.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: String,
    ) -> Result<Answer, String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let tls = TlsConnector::from(Arc::clone(&self.tls))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("http: {e}"))?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            headers,
            body,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }
}

/// The `tongban` binary of the profile these tests were built in, built (or brought
/// up to date) by cargo first.
pub fn tongban_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // <target>/<profile>/deps/<this test>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory")
        .to_owned();
    let target = profile_dir.parent().expect("target directory").to_owned();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build
        .current_dir(workspace)
        .args([
            "build",
            "--quiet",
            "-p",
            "gateway",
            "--bin",
            "tongban",
            "--target-dir",
        ])
        .arg(&target);
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("cargo runs");
    assert!(
        status.success(),
        "cargo build -p gateway --bin tongban failed"
    );
    let bin = profile_dir.join("tongban");
    assert!(bin.is_file(), "{} was not built", bin.display());
    bin
}

/// A free loopback address (bound, read and released: good for a child process).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// A `tongban serve` process, its output in a log file.
pub struct Served {
    /// The process.
    pub child: std::process::Child,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

impl Served {
    /// `bin serve --config config` with `env` added to the environment.
    pub fn spawn(bin: &Path, config: &Path, env: &[(&str, String)], log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).expect("log file");
        let child = std::process::Command::new(bin)
            .args(["serve", "--config"])
            .arg(config)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("tongban serve starts");
        Self { child, log }
    }

    /// Wait until `client` gets a 200 for `body` (panics if the process exits or a
    /// minute passes).
    pub async fn until_serving(&mut self, client: &Client, body: &Value) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Ok(a) = client.lookup(Some("clerk-0"), body).await {
                if a.status == StatusCode::OK {
                    return;
                }
            }
            assert!(
                self.child.try_wait().expect("process status").is_none(),
                "tongban serve exited: {}",
                self.log_text()
            );
            assert!(
                std::time::Instant::now() < deadline,
                "tongban serve did not start serving: {}",
                self.log_text()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Send SIGTERM.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// Wait (polling) for the process to exit, at most `limit`.
    pub async fn exit_status(&mut self, limit: std::time::Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("process status") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tongban serve did not exit: {}",
                self.log_text()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// What it printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The PostgreSQL server tests use: 127.0.0.1:5432, user postgres, trust auth.
pub const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// A PostgreSQL database of a test's own, dropped when it goes out of scope (even
/// by panic).
pub struct PgDatabase {
    name: String,
}

impl PgDatabase {
    /// Create `tongban_<purpose>_<pid>_<nanos>`; `None` (the test skips) when no
    /// server answers — except under CI, where PostgreSQL is required.
    pub async fn create(purpose: &str) -> Option<Self> {
        use sqlx::Connection as _;
        let Ok(mut conn) = sqlx::PgConnection::connect(&format!("{PG_SERVER}/postgres")).await
        else {
            assert!(
                std::env::var_os("CI").is_none(),
                "PostgreSQL at 127.0.0.1:5432 is required in CI"
            );
            eprintln!("SKIPPED: no PostgreSQL at 127.0.0.1:5432");
            return None;
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let name = format!("tongban_{purpose}_{}_{nanos}", std::process::id());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        Some(Self { name })
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("{PG_SERVER}/{}", self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        use sqlx::Connection as _;
        let name = self.name.clone();
        // Drop runs outside async; a small runtime of its own does the cleanup.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut conn =
                    sqlx::PgConnection::connect(&format!("{PG_SERVER}/postgres")).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .map(|_| ())
            })
            .map_err(std::io::Error::other)
        })
        .join();
    }
}

/// The first of the demo's `samples` asking `dataset` and expecting `expect`.
pub fn sample<'a>(samples: &'a [Value], dataset: &str, expect: u16) -> &'a Value {
    samples
        .iter()
        .find(|s| s["body"]["dataset"] == dataset && s["expect"] == expect)
        .unwrap_or_else(|| panic!("samples.json has no {dataset} sample expecting {expect}"))
}

/// Lets `check` run until it returns true, for at most 10 s of polling.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}
