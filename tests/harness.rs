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
}

impl Gateway {
    /// Create a demo directory and start serving it on ephemeral ports.
    pub async fn start() -> Self {
        gateway::install_crypto_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let any = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        let mut demo = gateway::demo::prepare(dir.path(), any, any, &test_counts())
            .await
            .expect("demo directory");
        gateway::demo::start_department(&mut demo)
            .await
            .expect("demo department service");
        let running = start(demo.config).await.expect("gateway starts");
        Self { dir, running }
    }

    /// The demo directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
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
}

/// An mTLS client; one connection per request.
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

    /// Any request. Errors are connection-level (TLS refused, reset).
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
        })
    }
}
