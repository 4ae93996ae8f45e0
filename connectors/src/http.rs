//! A [`Connector`] over a department's REST API: HTTPS with mutual TLS (the gateway's
//! client certificate, the department's CA pinned), JSON answers mapped to fields by
//! JSON pointer (RFC 6901).
//!
//! Each dataset the API serves has an [`HttpBinding`]: a path template holding
//! `{subject}` (and, for e-licences found by holder, a second template holding
//! `{holder_id}` and `{license_type}`), and a map from the dataset's field names to
//! pointers into the answer. Values are percent-encoded into the path, so an
//! identifier can never change the request's shape.
//!
//! Answers: `200` with a JSON object is a record; `404` is "no such record";
//! `429`, `502`, `503`, `504` and connection failures mean the department is
//! unavailable (transient: the gateway may retry); anything else, a body that is not
//! a JSON object, or one larger than [`MAX_ANSWER_BYTES`], is a bad answer.
//!
//! Connections are pooled and reused (HTTP/1.1 keep-alive, or one HTTP/2 connection
//! when the department offers `h2`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::{Connector, ConnectorError, Dataset, Record};

/// The largest answer read from a department (1 MiB); a larger one is a bad answer.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Where an HTTP connector connects, as written in the gateway's config.
#[derive(Debug, Clone)]
pub struct HttpSource {
    /// Connector name shown in responses and audit records, e.g. `e-license-api`.
    pub name: String,
    /// Base URL, `https://host[:port][/prefix]`; binding paths are appended to it.
    pub base_url: String,
    /// Idle connections kept open for reuse (default 8).
    pub max_idle_connections: usize,
    /// How long opening a connection (TCP and TLS) may take before the department
    /// counts as unavailable (default 2000 ms).
    pub connect_timeout_ms: u64,
    /// Path probed by [`Connector::health`]: any answer below 500 means reachable
    /// (default `/`).
    pub health_path: String,
}

/// How one dataset is read from an [`HttpSource`].
#[derive(Debug, Clone)]
pub struct HttpBinding {
    /// The dataset this binding serves.
    pub dataset: Dataset,
    /// Path template with `{subject}`, e.g. `/licenses/{subject}`; it may carry a query.
    pub path: String,
    /// For e-licences: path template with `{holder_id}` and `{license_type}` that finds
    /// a holder's newest licence of a type, e.g.
    /// `/licenses?holder_id={holder_id}&license_type={license_type}`.
    pub holder_path: Option<String>,
    /// Dataset field name → JSON pointer into the answer, e.g. `/license/holder/id`.
    /// A pointer that finds nothing gives `null`.
    pub fields: BTreeMap<String, String>,
}

/// A [`Connector`] backed by pooled mutual-TLS HTTP connections.
pub struct HttpConnector {
    name: String,
    /// `https://authority` and the prefix path, without a trailing slash.
    base: String,
    health_path: String,
    client: Client<HttpsConnector<TcpConnector>, Empty<Bytes>>,
    bindings: HashMap<Dataset, Binding>,
}

struct Binding {
    path: Template,
    holder_path: Option<Template>,
    /// (field, pointer), in field-name order.
    fields: Vec<(String, String)>,
}

/// A path template split at its placeholders.
#[derive(Debug, Clone)]
struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Subject,
    HolderId,
    LicenseType,
}

impl Default for HttpSource {
    fn default() -> Self {
        HttpSource {
            name: String::new(),
            base_url: String::new(),
            max_idle_connections: 8,
            connect_timeout_ms: 2000,
            health_path: "/".to_owned(),
        }
    }
}

impl fmt::Debug for HttpConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut datasets: Vec<&str> = self.bindings.keys().map(Dataset::as_str).collect();
        datasets.sort_unstable();
        f.debug_struct("HttpConnector")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("datasets", &datasets)
            .finish_non_exhaustive()
    }
}

impl HttpConnector {
    /// Checks the source and bindings and builds the client. Nothing is connected
    /// until the first lookup: a department that is down at start shows in
    /// [`Connector::health`] and in lookups.
    ///
    /// `tls` must trust only the department's CA and carry the gateway's client
    /// certificate (see `certs::client_config`); its ALPN list is replaced by
    /// `h2, http/1.1`.
    pub fn new(
        source: &HttpSource,
        tls: Arc<rustls::ClientConfig>,
        bindings: Vec<HttpBinding>,
    ) -> Result<Self, ConnectorError> {
        let config_err =
            |msg: String| ConnectorError::Config(format!("connector {}: {msg}", source.name));
        if source.name.trim().is_empty() {
            return Err(ConnectorError::Config("connector name is empty".to_owned()));
        }
        let base = base_url(&source.base_url).map_err(config_err)?;
        if !source.health_path.starts_with('/') {
            return Err(config_err("health_path must start with /".to_owned()));
        }
        if bindings.is_empty() {
            return Err(config_err("no dataset bindings".to_owned()));
        }
        let mut prepared = HashMap::new();
        for binding in bindings {
            let dataset = binding.dataset.clone();
            let ready = validate_binding(binding).map_err(config_err)?;
            if prepared.insert(dataset.clone(), ready).is_some() {
                return Err(config_err(format!("dataset {dataset} is bound twice")));
            }
        }
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(Duration::from_millis(source.connect_timeout_ms)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_only()
            .enable_all_versions()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(source.max_idle_connections)
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(HttpConnector {
            name: source.name.clone(),
            base,
            health_path: source.health_path.clone(),
            client,
            bindings: prepared,
        })
    }

    fn binding(&self, dataset: &Dataset) -> Result<&Binding, ConnectorError> {
        self.bindings.get(dataset).ok_or_else(|| {
            ConnectorError::Config(format!(
                "connector {} has no binding for dataset {dataset}",
                self.name
            ))
        })
    }

    /// GETs `path` (already expanded) and returns the status and, for 200, the body.
    async fn get(&self, path: &str) -> Result<(StatusCode, Bytes), ConnectorError> {
        let uri: Uri = format!("{}{path}", self.base).parse().map_err(|e| {
            ConnectorError::Config(format!("connector {}: bad request URI: {e}", self.name))
        })?;
        let request = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(header::ACCEPT, HeaderValue::from_static("application/json"))
            .header(
                header::USER_AGENT,
                HeaderValue::from_static("tongban-gateway"),
            )
            .body(Empty::new())
            .map_err(|e| ConnectorError::Config(format!("connector {}: {e}", self.name)))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| self.unavailable(&e))?;
        let status = response.status();
        if status != StatusCode::OK {
            return Ok((status, Bytes::new()));
        }
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    ConnectorError::Query(format!(
                        "connector {}: answer larger than {MAX_ANSWER_BYTES} bytes",
                        self.name
                    ))
                } else {
                    ConnectorError::Unavailable(format!(
                        "connector {}: reading the answer failed: {e}",
                        self.name
                    ))
                }
            })?
            .to_bytes();
        Ok((status, body))
    }

    fn unavailable(&self, e: &hyper_util::client::legacy::Error) -> ConnectorError {
        // The chain of sources says why (refused, TLS alert, reset); keep it for the
        // audit record.
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        ConnectorError::Unavailable(format!("connector {}: {detail}", self.name))
    }

    async fn fetch(&self, path: &str, binding: &Binding) -> Result<Option<Record>, ConnectorError> {
        let (status, body) = self.get(path).await?;
        match status {
            StatusCode::OK => to_record(&body, &binding.fields)
                .map(Some)
                .map_err(|e| ConnectorError::Query(format!("connector {}: {e}", self.name))),
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => Err(ConnectorError::Unavailable(format!(
                "connector {}: the department answered {status}",
                self.name
            ))),
            other => Err(ConnectorError::Query(format!(
                "connector {}: the department answered {other}",
                self.name
            ))),
        }
    }
}

#[async_trait::async_trait]
impl Connector for HttpConnector {
    fn name(&self) -> &str {
        &self.name
    }

    async fn lookup(
        &self,
        dataset: &Dataset,
        subject: &str,
    ) -> Result<Option<Record>, ConnectorError> {
        let binding = self.binding(dataset)?;
        let path = binding.path.expand(subject, "", "");
        self.fetch(&path, binding).await
    }

    async fn lookup_by_holder(
        &self,
        dataset: &Dataset,
        holder_id: &str,
        license_type: &str,
    ) -> Result<Option<Record>, ConnectorError> {
        let binding = self.binding(dataset)?;
        let template = binding.holder_path.as_ref().ok_or_else(|| {
            ConnectorError::Config(format!(
                "connector {}: dataset {dataset} has no holder_path",
                self.name
            ))
        })?;
        let path = template.expand("", holder_id, license_type);
        self.fetch(&path, binding).await
    }

    async fn health(&self) -> Result<(), ConnectorError> {
        let (status, _) = self.get(&self.health_path).await?;
        if status.is_server_error() {
            return Err(ConnectorError::Unavailable(format!(
                "connector {}: health probe answered {status}",
                self.name
            )));
        }
        Ok(())
    }
}

impl Template {
    fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!("path {text:?} must start with /"));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .map(|c| open + c)
                .ok_or_else(|| format!("path {text:?} has an unclosed {{"))?;
            if rest[..open].contains('}') {
                return Err(format!("path {text:?} has a stray }}"));
            }
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            parts.push(match &rest[open + 1..close] {
                "subject" => Part::Subject,
                "holder_id" => Part::HolderId,
                "license_type" => Part::LicenseType,
                other => {
                    return Err(format!(
                        "path {text:?}: unknown placeholder {{{other}}}; known: {{subject}}, \
                         {{holder_id}}, {{license_type}}"
                    ))
                }
            });
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("path {text:?} has a stray }}"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    fn has(&self, wanted: fn(&Part) -> bool) -> bool {
        self.parts.iter().any(wanted)
    }

    fn expand(&self, subject: &str, holder_id: &str, license_type: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Subject => percent_encode(subject, &mut out),
                Part::HolderId => percent_encode(holder_id, &mut out),
                Part::LicenseType => percent_encode(license_type, &mut out),
            }
        }
        out
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so a value stays one
/// path segment or one query value whatever it holds.
fn percent_encode(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Checks `https://authority[/prefix]` and returns it without a trailing slash.
fn base_url(url: &str) -> Result<String, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("url {url:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!(
            "url {url:?} must start with https:// (departments are reached over mutual TLS)"
        ));
    }
    if uri.authority().is_none() {
        return Err(format!("url {url:?} names no host"));
    }
    if uri.query().is_some() {
        return Err(format!("url {url:?} must not carry a query"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn validate_binding(binding: HttpBinding) -> Result<Binding, String> {
    let dataset = &binding.dataset;
    let path = Template::parse(&binding.path).map_err(|e| format!("dataset {dataset}: {e}"))?;
    if !path.has(|p| matches!(p, Part::Subject)) {
        return Err(format!("dataset {dataset}: path must hold {{subject}}"));
    }
    let holder_path = match &binding.holder_path {
        None => None,
        Some(text) => {
            let t = Template::parse(text).map_err(|e| format!("dataset {dataset}: {e}"))?;
            if !t.has(|p| matches!(p, Part::HolderId)) || !t.has(|p| matches!(p, Part::LicenseType))
            {
                return Err(format!(
                    "dataset {dataset}: holder_path must hold {{holder_id}} and {{license_type}}"
                ));
            }
            Some(t)
        }
    };
    if binding.fields.is_empty() {
        return Err(format!("dataset {dataset}: no fields mapped"));
    }
    if let Some((field, pointer)) = binding
        .fields
        .iter()
        .find(|(_, p)| !p.is_empty() && !p.starts_with('/'))
    {
        return Err(format!(
            "dataset {dataset}: field {field}: {pointer:?} is not a JSON pointer (it starts with /)"
        ));
    }
    Ok(Binding {
        path,
        holder_path,
        fields: binding.fields.into_iter().collect(),
    })
}

fn to_record(body: &[u8], fields: &[(String, String)]) -> Result<Record, String> {
    let answer: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("answer is not JSON: {e}"))?;
    if !answer.is_object() {
        return Err("answer is not a JSON object".to_owned());
    }
    let mut record = Record::new();
    for (field, pointer) in fields {
        let value = answer
            .pointer(pointer)
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        record.insert(field.clone(), value);
    }
    Ok(record)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_with_encoding() {
        let t = Template::parse("/v1/licenses/{subject}").unwrap();
        assert_eq!(t.expand("1.2.156", "", ""), "/v1/licenses/1.2.156");
        assert_eq!(
            t.expand("x/../y?z=1#' OR 1=1 --", "", ""),
            "/v1/licenses/x%2F..%2Fy%3Fz%3D1%23%27%20OR%201%3D1%20--"
        );
        let h = Template::parse("/licenses?holder={holder_id}&type={license_type}").unwrap();
        assert_eq!(
            h.expand("", "91350100M000100Y43", "营业执照"),
            "/licenses?holder=91350100M000100Y43&type=%E8%90%A5%E4%B8%9A%E6%89%A7%E7%85%A7"
        );
        for bad in [
            "licenses/{subject}",
            "/a/{subj}",
            "/a/{subject",
            "/a}/{subject}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_map_by_pointer() {
        let fields = vec![
            ("holder_id".to_owned(), "/license/holder/id".to_owned()),
            ("status".to_owned(), "/license/status".to_owned()),
            ("valid_until".to_owned(), "/license/valid_until".to_owned()),
        ];
        let body = br#"{"license": {"holder": {"id": "H"}, "status": "valid"}}"#;
        let r = to_record(body, &fields).unwrap();
        assert_eq!(
            serde_json::Value::Object(r),
            serde_json::json!({"holder_id": "H", "status": "valid", "valid_until": null})
        );
        assert!(to_record(b"{not json", &fields)
            .unwrap_err()
            .contains("not JSON"));
        assert!(to_record(b"[1, 2]", &fields)
            .unwrap_err()
            .contains("not a JSON object"));
    }

    fn binding() -> HttpBinding {
        HttpBinding {
            dataset: Dataset::new("e_license"),
            path: "/licenses/{subject}".to_owned(),
            holder_path: None,
            fields: [("status".to_owned(), "/status".to_owned())].into(),
        }
    }

    #[test]
    fn bad_sources_and_bindings_are_refused() {
        let tls = crate::http::tests::tls();
        let source = |url: &str| HttpSource {
            name: "api".to_owned(),
            base_url: url.to_owned(),
            ..HttpSource::default()
        };
        for url in [
            "http://127.0.0.1:1",
            "https://",
            "not a url",
            "https://h/?q=1",
        ] {
            let e = HttpConnector::new(&source(url), tls.clone(), vec![binding()]).unwrap_err();
            assert!(matches!(e, ConnectorError::Config(_)), "{url}: {e:?}");
        }
        let ok = source("https://127.0.0.1:1/api/");
        let mut no_subject = binding();
        no_subject.path = "/licenses".to_owned();
        let mut bad_pointer = binding();
        bad_pointer.fields = [("status".to_owned(), "status".to_owned())].into();
        let mut unmapped = binding();
        unmapped.fields.clear();
        let mut holder_half = binding();
        holder_half.holder_path = Some("/l?h={holder_id}".to_owned());
        for b in [
            vec![no_subject],
            vec![bad_pointer],
            vec![unmapped],
            vec![holder_half],
            vec![binding(), binding()],
            vec![],
        ] {
            let e = HttpConnector::new(&ok, tls.clone(), b).unwrap_err();
            assert!(matches!(e, ConnectorError::Config(_)), "{e:?}");
        }
        let c = HttpConnector::new(&ok, tls, vec![binding()]).unwrap();
        assert_eq!(c.base, "https://127.0.0.1:1/api");
    }

    #[tokio::test]
    async fn unreachable_department_is_unavailable() {
        // A port nothing listens on: bind, note the port, close.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let source = HttpSource {
            name: "api".to_owned(),
            base_url: format!("https://127.0.0.1:{port}"),
            ..HttpSource::default()
        };
        let c = HttpConnector::new(&source, tls(), vec![binding()]).unwrap();
        let e = c.lookup(&Dataset::new("e_license"), "x").await.unwrap_err();
        assert!(matches!(e, ConnectorError::Unavailable(_)), "{e:?}");
        assert!(e.is_transient());
        assert!(matches!(
            c.health().await,
            Err(ConnectorError::Unavailable(_))
        ));
    }

    pub(crate) fn tls() -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        )
    }
}
