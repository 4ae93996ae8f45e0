//! The demo department service: a small REST API over mutual TLS that serves
//! e-licences from the demo `e_license` database the way an issuing department's system
//! would, so that `tongban demo` shows the `http` connector end to end.
//!
//! It listens on loopback with its own certificate from the demo CA, accepts only the
//! gateway's client certificate (identity [`GATEWAY_SYSTEM`] of [`GATEWAY_DEPARTMENT`]),
//! and answers:
//!
//! | request | answer |
//! |---|---|
//! | `GET /api/v1/licenses/{license_id}` | `200` licence document, `404` |
//! | `GET /api/v1/licenses?holder_id=…&license_type=…` | `200` the holder's newest licence of that type, `404` |
//! | `GET /api/v1/health` | `200 {"status":"ok"}` |
//!
//! The licence document nests the fields as a department's schema would; the demo
//! config maps them back to dataset fields with [`FIELD_POINTERS`]:
//!
//! ```json
//! {"license": {"id": "1.2.156.3005.2.…", "type": "营业执照", "status": "valid",
//!              "issued_on": "2019-05-06", "valid_until": null,
//!              "holder": {"id": "…", "name": "…"}, "issuer": {"name": "…"},
//!              "content": "{…}", "file": {"sha256": "…"}},
//!  "signature": {"alg": "Ed25519", "value": "…"}}
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Row as _, SqlitePool};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// The config name of the source the demo department serves.
pub const SOURCE_NAME: &str = "e-license-api";
/// Department code in the identity of the gateway's client certificate.
pub const GATEWAY_DEPARTMENT: &str = "sz-data";
/// System id in the identity of the gateway's client certificate.
pub const GATEWAY_SYSTEM: &str = "gateway-01";
/// Path template of a licence by identifier.
pub const PATH: &str = "/api/v1/licenses/{subject}";
/// Path template of a holder's licence of a type.
pub const HOLDER_PATH: &str = "/api/v1/licenses?holder_id={holder_id}&license_type={license_type}";
/// Health probe path.
pub const HEALTH_PATH: &str = "/api/v1/health";

/// e_license field → JSON pointer into the licence document.
pub const FIELD_POINTERS: &[(&str, &str)] = &[
    ("license_type", "/license/type"),
    ("holder_id", "/license/holder/id"),
    ("holder_name", "/license/holder/name"),
    ("issuer", "/license/issuer/name"),
    ("issued_on", "/license/issued_on"),
    ("valid_until", "/license/valid_until"),
    ("status", "/license/status"),
    ("content", "/license/content"),
    ("issuer_signature", "/signature/value"),
    ("file_sha256", "/license/file/sha256"),
];

const COLUMNS: &str = "license_id, license_type, holder_id, holder_name, issuer_name, issued_on, \
                       valid_until, status, content, issuer_signature, file_sha256";

/// Why the department service could not start.
#[derive(Debug, thiserror::Error)]
pub enum DepartmentError {
    /// Certificates.
    #[error("demo department TLS: {0}")]
    Tls(#[from] certs::CertError),
    /// The licence database.
    #[error("demo department database {path}: {source}")]
    Database {
        /// The file.
        path: PathBuf,
        /// Why.
        source: sqlx::Error,
    },
    /// Binding the listener.
    #[error("demo department: listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The files the service is built from.
#[derive(Debug, Clone)]
pub struct DepartmentFiles {
    /// The e_license SQLite database (opened read-only).
    pub database: PathBuf,
    /// The service's certificate and key.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// CA whose client certificates are accepted.
    pub client_ca: PathBuf,
}

/// A running department service. Dropping it leaves the service running until the
/// runtime ends (as `tongban demo` wants); [`DepartmentService::shutdown`] stops it.
pub struct DepartmentService {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

struct Served {
    pool: SqlitePool,
    gateway: String,
}

impl DepartmentService {
    /// Starts serving on `addr` (port 0: any free port).
    pub async fn start(files: &DepartmentFiles, addr: SocketAddr) -> Result<Self, DepartmentError> {
        let tls = certs::server_config(
            &files.cert,
            &files.key,
            std::slice::from_ref(&files.client_ca),
        )?;
        let options = SqliteConnectOptions::new()
            .filename(&files.database)
            .read_only(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| DepartmentError::Database {
                path: files.database.clone(),
                source,
            })?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| DepartmentError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| DepartmentError::Bind { addr, source })?;
        let gateway = certs::Identity::new(GATEWAY_DEPARTMENT, GATEWAY_SYSTEM)?;
        let served = Arc::new(Served {
            pool,
            gateway: gateway.as_uri().to_owned(),
        });
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, TlsAcceptor::from(tls), served, stopped));
        tracing::info!(%addr, "demo department service (e-licences) serving");
        Ok(DepartmentService { addr, stop, task })
    }

    /// Stops accepting and waits for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    served: Arc<Served>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let (acceptor, served) = (acceptor.clone(), Arc::clone(&served));
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let caller = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| certs::identity_from_cert(c.as_ref()).ok())
                        .map(|i| i.as_uri().to_owned());
                    let svc = hyper::service::service_fn(move |req| {
                        let served = Arc::clone(&served);
                        let caller = caller.clone();
                        async move { Ok::<_, Infallible>(served.handle(caller.as_deref(), req).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
            // Only an explicit stop: a dropped handle leaves the service running.
            Ok(()) = stop.changed() => break,
        }
    }
}

impl Served {
    async fn handle(&self, caller: Option<&str>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if caller != Some(self.gateway.as_str()) {
            return answer(
                StatusCode::FORBIDDEN,
                json!({"error": "only the gateway may call"}),
            );
        }
        if req.method() != Method::GET {
            return answer(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "GET only"}));
        }
        let path = req.uri().path();
        let found = if path == HEALTH_PATH {
            return answer(StatusCode::OK, json!({"status": "ok"}));
        } else if path == "/api/v1/licenses" {
            let query = parse_query(req.uri().query().unwrap_or_default());
            match (query.get("holder_id"), query.get("license_type")) {
                (Some(holder), Some(kind)) => self.by_holder(holder, kind).await,
                _ => {
                    return answer(
                        StatusCode::BAD_REQUEST,
                        json!({"error": "holder_id and license_type are required"}),
                    )
                }
            }
        } else if let Some(id) = path.strip_prefix("/api/v1/licenses/") {
            match percent_decode(id) {
                Some(id) => self.by_id(&id).await,
                None => return answer(StatusCode::BAD_REQUEST, json!({"error": "bad id"})),
            }
        } else {
            return answer(StatusCode::NOT_FOUND, json!({"error": "no such endpoint"}));
        };
        match found {
            Ok(Some(doc)) => answer(StatusCode::OK, doc),
            Ok(None) => answer(StatusCode::NOT_FOUND, json!({"error": "no such licence"})),
            Err(e) => {
                tracing::warn!(error = %e, "demo department query failed");
                answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": "database unavailable"}),
                )
            }
        }
    }

    async fn by_id(&self, id: &str) -> Result<Option<Value>, sqlx::Error> {
        let sql = format!("SELECT {COLUMNS} FROM licenses WHERE license_id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| document(&r)).transpose()
    }

    async fn by_holder(&self, holder: &str, kind: &str) -> Result<Option<Value>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM licenses WHERE holder_id = ? AND license_type = ? \
             ORDER BY issued_on DESC, license_id DESC LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(holder)
            .bind(kind)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| document(&r)).transpose()
    }
}

/// The licence document of a `licenses` row.
fn document(r: &sqlx::sqlite::SqliteRow) -> Result<Value, sqlx::Error> {
    let text = |c: &str| r.try_get::<String, _>(c);
    Ok(json!({
        "license": {
            "id": text("license_id")?,
            "type": text("license_type")?,
            "status": text("status")?,
            "issued_on": text("issued_on")?,
            "valid_until": r.try_get::<Option<String>, _>("valid_until")?,
            "holder": {"id": text("holder_id")?, "name": text("holder_name")?},
            "issuer": {"name": text("issuer_name")?},
            "content": text("content")?,
            "file": {"sha256": text("file_sha256")?},
        },
        "signature": {"alg": "Ed25519", "value": text("issuer_signature")?},
    }))
}

fn answer(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn parse_query(query: &str) -> std::collections::HashMap<String, String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter_map(|(k, v)| Some((percent_decode(k)?, percent_decode(v)?)))
        .collect()
}

/// Decodes `%XX` escapes (and `+` as a space, as in forms); `None` when malformed or
/// not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Where the demo department's files are in a demo directory.
pub fn files(dir: &Path) -> DepartmentFiles {
    DepartmentFiles {
        database: dir.join("data/e_license.db"),
        cert: dir.join("pki/department.pem"),
        key: dir.join("pki/department.key"),
        client_ca: dir.join("pki/ca.pem"),
    }
}

/// The `[[sources]]`, `[[datasets]]` and `[[bundles]]` of the demo config: population,
/// legal persons and social insurance from their SQLite files, e-licences from the
/// demo department service at `department` (the SQLite binding left in comments as
/// the alternative), verified against `issuer_key` (base64url). Each dataset is
/// declared in full — owner, identifier kind, fields with type, sharing class and
/// description — as any operator's would be.
pub fn connectors_toml(department: SocketAddr, issuer_key: &str) -> String {
    use connectors::demo::{demo_sources, DemoField, DemoSource, BUSINESS_LICENCE};
    use std::fmt::Write as _;

    const E_LICENSE: &str = "e_license";
    let head = |out: &mut String, s: &DemoSource, source: &str| {
        let _ = write!(
            out,
            "\n[[datasets]]\nname = \"{}\"\ndescription = \"{}\"\ndepartment = \"{}\"\n\
             subject = \"{}\"\nsource = \"{source}\"\n",
            s.dataset, s.description, s.department, s.subject
        );
    };
    // One field a line: `from` is its column (sql) or pointer (http).
    let fields = |out: &mut String, fields: &[DemoField], from: &dyn Fn(&DemoField) -> String| {
        out.push_str("fields = [\n");
        for f in fields {
            let _ = writeln!(
                out,
                "  {{ name = \"{}\", {}, type = \"{}\", class = \"{}\", description = \"{}\" }},",
                f.name,
                from(f),
                f.kind,
                f.class,
                f.description
            );
        }
        out.push_str("]\n");
    };

    let mut out = String::from(
        "\n# Sources: the departments' systems. Each gets the same resilience layers; the\n\
         # defaults are shown on the first one.\n",
    );
    let sources = demo_sources();
    for (i, s) in sources
        .iter()
        .filter(|s| s.dataset != E_LICENSE)
        .enumerate()
    {
        let _ = write!(
            out,
            "\n[[sources]]\nname = \"{}\"\nkind = \"sql\"\nurl = \"sqlite://data/{}?mode=ro\"\nmax_connections = 8\n",
            s.connector, s.file
        );
        if i == 0 {
            out.push_str(
                "[sources.resilience]\n\
                 timeout_ms = 2000            # a lookup unanswered by then: 504\n\
                 max_in_flight = 256          # more lookups at once are shed: 503\n\
                 retries = 2                  # transient failures only (refused, reset, 503)\n\
                 retry_budget_percent = 20    # retries at most 20 % of recent lookups\n\
                 breaker_failures = 5         # consecutive outages that open the breaker: 503\n\
                 breaker_cooldown_ms = 5000   # then one probe; success closes it\n",
            );
        }
    }
    let _ = write!(
        out,
        r#"
# The e-licence department's REST API over mutual TLS (`tongban demo` starts a demo
# one on loopback). The gateway presents pki/gateway.pem and trusts only pki/ca.pem.
[[sources]]
name = "{SOURCE_NAME}"
kind = "http"
url = "https://{department}"
ca = ["pki/ca.pem"]
cert = "pki/gateway.pem"
key = "pki/gateway.key"
health_path = "{HEALTH_PATH}"
max_connections = 8            # idle connections kept for reuse
connect_timeout_ms = 1000      # connect (TCP + TLS) time-out

# The same licences straight from the department's database, instead:
# [[sources]]
# name = "e-license-db"
# kind = "sql"
# url = "sqlite://data/e_license.db?mode=ro"
"#
    );
    out.push_str(
        "\n# Datasets: each declared here — its owner, how its subjects are identified\n\
         # (resident_id, credit_code, license_id, or pattern with subject_pattern), its\n\
         # fields with type, sharing class (open, conditional, closed: never shared) and\n\
         # description — and bound to a source. A new dataset needs only a new entry.\n",
    );
    for s in sources.iter().filter(|s| s.dataset != E_LICENSE) {
        head(&mut out, s, s.connector);
        let _ = writeln!(out, "query = \"{}\"", s.query);
        fields(&mut out, s.fields, &|f| {
            format!("column = \"{}\"", f.column)
        });
    }
    if let Some(s) = sources.iter().find(|s| s.dataset == E_LICENSE) {
        head(&mut out, s, SOURCE_NAME);
        let _ = write!(
            out,
            "path = \"{PATH}\"\nholder_path = \"{HOLDER_PATH}\"\n\
             # Public keys (Ed25519, base64url) of the issuers whose signatures verify.\n\
             issuer_keys = [\"{issuer_key}\"]\n"
        );
        let pointer = |f: &DemoField| {
            let p = FIELD_POINTERS
                .iter()
                .find(|(name, _)| *name == f.name)
                .map_or("", |(_, p)| p);
            format!("pointer = \"{p}\"")
        };
        fields(&mut out, s.fields, &pointer);
        out.push_str("# With source = \"e-license-db\": columns instead of pointers, and\n");
        let _ = writeln!(out, "# query = \"{}\"", s.query);
        if let Some(q) = s.holder_query {
            let _ = writeln!(out, "# holder_query = \"{q}\"");
        }
        let columns: Vec<String> = s
            .fields
            .iter()
            .map(|f| format!("{} = {}", f.name, f.column))
            .collect();
        let _ = writeln!(out, "# (field = column: {})", columns.join(", "));
    }
    let _ = write!(
        out,
        r#"
# Bundles: the records of one life event in one request (POST /v1/bundle). An item's
# subject is the request's, or a value in an earlier item's record ("item#/pointer",
# looking into JSON held in a string such as an e-licence's content).
[[bundles]]
name = "newborn"
description = "Newborn registration: the birth medical certificate and both parents' household records"
[[bundles.items]]
name = "birth_certificate"
dataset = "e_license"            # subject: the certificate's licence identifier
[[bundles.items]]
name = "mother"
dataset = "population"
subject = "birth_certificate#/content/mother_id"
[[bundles.items]]
name = "father"
dataset = "population"
subject = "birth_certificate#/content/father_id"

[[bundles]]
name = "company-opening"
description = "Company opening: the legal-person record, its business licence and the legal representative's household record"
[[bundles.items]]
name = "company"
dataset = "legal_person"         # subject: the unified social credit code
[[bundles.items]]
name = "business_licence"
dataset = "e_license"
license_type = "{BUSINESS_LICENCE}"        # found by holder: the company
[[bundles.items]]
name = "legal_representative"
dataset = "population"
subject = "company#/legal_representative_id"
"#
    );
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode() {
        let q = parse_query(
            "holder_id=91350100M000100Y43&license_type=%E8%90%A5%E4%B8%9A%E6%89%A7%E7%85%A7",
        );
        assert_eq!(q["holder_id"], "91350100M000100Y43");
        assert_eq!(q["license_type"], "营业执照");
        assert_eq!(percent_decode("a%2Fb+c"), Some("a/b c".to_owned()));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }
}
