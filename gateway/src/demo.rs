//! `tongban demo`: a complete gateway in one directory — CA and certificates,
//! synthetic department databases, agreements, config and sample requests.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use certs::{Authority, Identity, KeyAlg};
use connectors::demo::{create_demo_databases, demo_sources, DemoCounts, DemoSamples};
use policy::{AgreementFile, AgreementStore};
use serde_json::{json, Value};

use crate::app::open_state;
use crate::config::Config;
use crate::signing::Signer;

/// Demo set-up failures.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Certificates.
    #[error("certificates: {0}")]
    Certs(#[from] certs::CertError),
    /// Demo data.
    #[error("demo data: {0}")]
    Data(#[from] connectors::ConnectorError),
    /// The written config does not load (a bug).
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// Agreements.
    #[error("{0}")]
    Policy(#[from] policy::PolicyError),
    /// Anything else on the way.
    #[error("{0}")]
    Other(String),
}

/// A demo client: file stem in `pki/`, identity and roles.
pub struct DemoClient {
    /// File stem, e.g. `counter-a`.
    pub name: &'static str,
    /// Department code.
    pub department: &'static str,
    /// System id.
    pub system: &'static str,
    /// Role bound in policy.
    pub role: &'static str,
}

/// The demo's clients, as DESIGN.md names them.
pub const CLIENTS: &[DemoClient] = &[
    DemoClient {
        name: "counter-a",
        department: "sz-hrss",
        system: "counter-01",
        role: "counter",
    },
    DemoClient {
        name: "counter-b",
        department: "sz-civil",
        system: "counter-01",
        role: "counter",
    },
    DemoClient {
        name: "admin",
        department: "sz-psb",
        system: "admin-01",
        role: "dept-admin",
    },
    DemoClient {
        name: "auditor",
        department: "sz-data",
        system: "auditor-01",
        role: "auditor",
    },
];

/// The URI identity of a demo client.
pub fn client_identity(name: &str) -> Option<String> {
    CLIENTS
        .iter()
        .find(|c| c.name == name)
        .map(|c| format!("urn:tongban:{}:{}", c.department, c.system))
}

/// What `prepare` made or found.
pub struct Demo {
    /// The demo directory.
    pub dir: PathBuf,
    /// Its config, with any listen overrides applied.
    pub config: Config,
    /// Whether the directory was created now (false: reused).
    pub created: bool,
}

/// Create the demo directory if `dir/tongban.toml` does not exist, then load its config.
pub async fn prepare(
    dir: &Path,
    listen: Option<SocketAddr>,
    ops_listen: Option<SocketAddr>,
    counts: &DemoCounts,
) -> Result<Demo, DemoError> {
    let config_path = dir.join("tongban.toml");
    let created = !config_path.exists();
    if created {
        create(
            dir,
            listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8443))),
            ops_listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9090))),
            counts,
        )
        .await?;
    }
    let mut config = Config::load(&config_path)?;
    if let Some(a) = listen {
        config.listen = a;
    }
    if let Some(a) = ops_listen {
        config.ops_listen = a;
    }
    let dir = std::fs::canonicalize(dir).map_err(|source| DemoError::Io {
        path: dir.to_owned(),
        source,
    })?;
    Ok(Demo {
        dir,
        config,
        created,
    })
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_owned(),
        source,
    }
}

fn write(path: &Path, text: &str) -> Result<(), DemoError> {
    std::fs::write(path, text).map_err(io(path))
}

async fn create(
    dir: &Path,
    listen: SocketAddr,
    ops_listen: SocketAddr,
    counts: &DemoCounts,
) -> Result<(), DemoError> {
    for sub in ["pki", "keys", "data"] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).map_err(io(&p))?;
    }
    write_pki(&dir.join("pki"))?;
    certs::write_private_pem(
        &dir.join("keys/signing.pem"),
        &Signer::generate_pem().map_err(|e| DemoError::Other(e.to_string()))?,
    )?;
    let samples = create_demo_databases(&dir.join("data"), counts, 2026).await?;
    let agreements = agreements_toml();
    write(&dir.join("agreements.toml"), &agreements)?;
    write(&dir.join("samples.json"), &samples_json(&samples))?;
    // The config goes last: its presence is what marks the directory as complete.
    let config_path = dir.join("tongban.toml");
    write(&config_path, &config_toml(listen, ops_listen))?;
    let config = Config::load(&config_path)?;
    let store = AgreementStore::open(
        open_state(&config)
            .await
            .map_err(|e| DemoError::Other(e.to_string()))?,
    )
    .await?;
    let file = AgreementFile::parse(&dir.join("agreements.toml"), &agreements)?;
    for a in &file.agreements {
        store.put(a).await?;
    }
    for c in CLIENTS {
        store
            .bind_role(
                &format!("urn:tongban:{}:{}", c.department, c.system),
                c.role,
            )
            .await?;
    }
    Ok(())
}

fn write_pki(pki: &Path) -> Result<(), DemoError> {
    let ca = Authority::create("Tongban Demo CA", KeyAlg::EcdsaP256)?;
    let ca_pem = ca.certified();
    certs::write_public_pem(&pki.join("ca.pem"), &ca_pem.cert_pem)?;
    certs::write_private_pem(&pki.join("ca.key"), &ca_pem.key_pem)?;
    let server = ca.issue_server(
        &["localhost".to_owned()],
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        825,
    )?;
    certs::write_public_pem(&pki.join("server.pem"), &server.cert_pem)?;
    certs::write_private_pem(&pki.join("server.key"), &server.key_pem)?;
    for c in CLIENTS {
        let identity = Identity::new(c.department, c.system)?;
        let issued = ca.issue_client(&identity, c.name, 825)?;
        certs::write_public_pem(&pki.join(format!("{}.pem", c.name)), &issued.cert_pem)?;
        certs::write_private_pem(&pki.join(format!("{}.key", c.name)), &issued.key_pem)?;
    }
    Ok(())
}

fn config_toml(listen: SocketAddr, ops_listen: SocketAddr) -> String {
    let mut out = format!(
        r#"# Tongban gateway configuration (written by `tongban demo`).
# Relative paths are resolved against this file's directory.

node = "demo-1"
listen = "{listen}"          # counter API, mutual TLS
ops_listen = "{ops_listen}"  # /healthz, /readyz — plain HTTP, keep on loopback
state_db = "state.db"           # agreements, role bindings and the audit log (SQLite)
signing_key = "keys/signing.pem" # Ed25519 key that signs every record returned

[tls]
cert = "pki/server.pem"
key = "pki/server.key"
client_cas = ["pki/ca.pem"]

[audit]
batch_max = 512                 # records per group commit

[limits]
max_concurrent_requests = 4096
max_body_bytes = 65536

[telemetry]
log_format = "text"             # or "json"
log_level = "info"
otlp_endpoint = ""              # e.g. "http://127.0.0.1:4317"; empty = no export
"#
    );
    for s in demo_sources() {
        out.push_str(&format!(
            "\n[[sources]]\nname = \"{}\"\nkind = \"sql\"\nurl = \"sqlite://data/{}?mode=ro\"\nmax_connections = 8\n",
            s.connector, s.file
        ));
    }
    for s in demo_sources() {
        out.push_str(&format!(
            "\n[[datasets]]\nname = \"{}\"\ndepartment = \"{}\"\nsource = \"{}\"\nquery = \"{}\"\n[datasets.fields]  # field = column\n",
            s.dataset, s.department, s.connector, s.query
        ));
        for (field, column) in s.fields {
            out.push_str(&format!("{field} = \"{column}\"\n"));
        }
    }
    out
}

fn agreements_toml() -> String {
    let window = "valid_from = \"2026-01-01T00:00:00Z\"\nvalid_until = \"2030-12-31T23:59:59Z\"";
    format!(
        r#"# Demo sharing agreements. Each grants one consumer one dataset, for named
# matters, field by field ("full" or "masked"); anything not granted is refused.

[[agreement]]
id = "hrss-population-2026"
provider = "sz-psb"
consumer = "urn:tongban:sz-hrss:counter-01"
dataset = "population"
matters = ["social-insurance-enrollment", "pension-qualification"]
{window}
approver = "urn:tongban:sz-psb:admin-01"
[agreement.fields]
name = "full"
sex = "full"
birth_date = "full"
household_address = "masked"
status = "full"

[[agreement]]
id = "hrss-legal-person-2026"
provider = "sz-amr"
consumer = "urn:tongban:sz-hrss:counter-01"
dataset = "legal_person"
matters = ["social-insurance-enrollment", "employer-registration"]
{window}
approver = "urn:tongban:sz-amr:admin-01"
[agreement.fields]
name = "full"
entity_type = "full"
legal_representative = "masked"
registered_address = "full"
established_on = "full"
status = "full"

[[agreement]]
id = "civil-population-2026"
provider = "sz-psb"
consumer = "urn:tongban:sz-civil:counter-01"
dataset = "population"
matters = ["newborn-registration", "marriage-registration"]
{window}
approver = "urn:tongban:sz-psb:admin-01"
[agreement.fields]
name = "full"
sex = "full"
birth_date = "full"
ethnicity = "full"
household_address = "full"
registration_authority = "full"
status = "full"

[[agreement]]
id = "civil-e-license-2026"
provider = "sz-data"
consumer = "urn:tongban:sz-civil:counter-01"
dataset = "e_license"
matters = ["newborn-registration"]
{window}
approver = "urn:tongban:sz-data:admin-01"
[agreement.fields]
license_type = "full"
holder_id = "full"
holder_name = "full"
issuer = "full"
issued_on = "full"
valid_until = "full"
status = "full"
content = "full"
issuer_signature = "full"
file_sha256 = "full"
"#
    )
}

/// One entry of `samples.json`, before rendering.
struct Sample<'a> {
    cert: &'a str,
    expect: u16,
    note: &'a str,
    dataset: &'a str,
    subject: String,
    matter: &'a str,
    fields: Option<&'a [&'a str]>,
}

impl Sample<'_> {
    fn to_json(&self, n: usize) -> Value {
        let mut body = json!({
            "dataset": self.dataset, "subject": self.subject, "matter": self.matter,
            "case_id": format!("SB-2026-{:06}", 100 + n),
        });
        if let Some(f) = self.fields {
            body["fields"] = json!(f);
        }
        json!({"cert": self.cert, "path": "/v1/lookup", "operator": "clerk-001", "body": body,
               "expect": self.expect, "note": self.note})
    }
}

fn bad_check_char(id: &str) -> String {
    let mut chars: Vec<char> = id.chars().collect();
    if let Some(last) = chars.last_mut() {
        *last = if *last == '1' { '2' } else { '1' };
    }
    chars.into_iter().collect()
}

fn samples_json(s: &DemoSamples) -> String {
    let first = |v: &[String]| v.first().cloned().unwrap_or_default();
    let resident = first(&s.residents);
    let company = first(&s.credit_codes);
    let license = first(&s.license_ids);
    let sample = |cert, expect, note, dataset, subject: &str, matter, fields| Sample {
        cert,
        expect,
        note,
        dataset,
        subject: subject.to_owned(),
        matter,
        fields,
    };
    let items = [
        sample(
            "counter-a",
            200,
            "population, allowed; household_address comes masked",
            "population",
            &resident,
            "social-insurance-enrollment",
            Some(&["name", "birth_date", "household_address"][..]),
        ),
        sample(
            "counter-a",
            200,
            "legal_person, allowed",
            "legal_person",
            &company,
            "employer-registration",
            None,
        ),
        sample(
            "counter-b",
            200,
            "e_license, allowed",
            "e_license",
            &license,
            "newborn-registration",
            None,
        ),
        sample(
            "counter-b",
            403,
            "no agreement gives counter-b legal_person",
            "legal_person",
            &company,
            "newborn-registration",
            None,
        ),
        sample(
            "counter-a",
            403,
            "ethnicity is not granted to counter-a",
            "population",
            &resident,
            "social-insurance-enrollment",
            Some(&["name", "ethnicity"][..]),
        ),
        sample(
            "counter-a",
            403,
            "matter not covered by the agreement",
            "population",
            &resident,
            "marketing",
            None,
        ),
        sample(
            "counter-a",
            400,
            "resident ID with a wrong check character",
            "population",
            &bad_check_char(&resident),
            "social-insurance-enrollment",
            None,
        ),
        sample(
            "counter-a",
            400,
            "credit code with a wrong check character",
            "legal_person",
            &bad_check_char(&company),
            "employer-registration",
            None,
        ),
        sample(
            "counter-a",
            404,
            "valid resident ID with no record",
            "population",
            &s.absent_resident,
            "social-insurance-enrollment",
            None,
        ),
    ];
    let items: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(n, x)| x.to_json(n + 1))
        .collect();
    serde_json::to_string_pretty(&items).unwrap_or_default()
}

/// A ready-to-paste curl command for a sample request.
pub fn curl_command(dir: &Path, addr: SocketAddr, sample: &Value) -> String {
    let cert = sample["cert"].as_str().unwrap_or("counter-a");
    let pki = dir.join("pki");
    format!(
        "curl --cacert {ca} --cert {pki}/{cert}.pem --key {pki}/{cert}.key \\\n  -H 'X-Operator-Id: {op}' -H 'Content-Type: application/json' \\\n  -d '{body}' \\\n  https://{addr}{path}",
        ca = pki.join("ca.pem").display(),
        pki = pki.display(),
        op = sample["operator"].as_str().unwrap_or("clerk-001"),
        body = sample["body"],
        path = sample["path"].as_str().unwrap_or("/v1/lookup"),
    )
}

/// Load `samples.json` from a demo directory.
pub fn load_samples(dir: &Path) -> Result<Vec<Value>, DemoError> {
    let path = dir.join("samples.json");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text).map_err(|e| DemoError::Other(format!("{}: {e}", path.display())))
}
