//! `tongban demo`: a complete gateway in one directory — CA and certificates,
//! synthetic department databases, agreements, config and sample requests.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use audit::signing::Signer;
use audit::AuditLog;
use certs::{CaDir, Identity, InitOptions, IssueRequest, KeyAlg, Subject, Validity};
use connectors::demo::{create_demo_databases, DemoCounts, DemoSamples};
use connectors::IssuerKeys;
use policy::AgreementFile;
use serde_json::{json, Value};

use crate::agreements::ChangeAudit;
use crate::config::Config;
use crate::demo_department::{DepartmentError, DepartmentService};
use crate::witness_server::WitnessService;

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
    /// The demo department service.
    #[error("{0}")]
    Department(#[from] crate::demo_department::DepartmentError),
    /// The browser bundles.
    #[error("{0}")]
    Browser(#[from] crate::demo_browser::BundleError),
    /// Anything else on the way.
    #[error("{0}")]
    Other(String),
}

/// Who the demo's first agreement versions and role bindings are recorded as.
const DEMO_ACTOR: &str = "tongban-demo";

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
    DemoClient {
        name: "portal",
        department: "sz-data",
        system: "portal-01",
        role: "citizen-portal",
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
    /// The admin's and auditor's certificates as PKCS#12, for a browser.
    pub browser: crate::demo_browser::BrowserBundles,
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
    // Made on every run when missing, so a directory from before the console has them.
    let browser = crate::demo_browser::write_bundles(&dir.join("pki"))?;
    Ok(Demo {
        dir,
        config,
        created,
        browser,
    })
}

/// Starts the demo department service (e-licences over mutual TLS) where the demo
/// config's `e-license-api` source points, and points the source at the port it got
/// when that was port 0. `None` when the config names no such loopback source (an
/// operator pointed it at a real department). The service keeps running after the
/// handle is dropped, until the runtime ends; call it before serving the config.
pub async fn start_department(demo: &mut Demo) -> Result<Option<DepartmentService>, DemoError> {
    let Some(source) = demo
        .config
        .sources
        .iter_mut()
        .find(|s| s.name == crate::demo_department::SOURCE_NAME)
    else {
        return Ok(None);
    };
    let addr = source
        .url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.as_str().to_owned()))
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .filter(|a| a.ip().is_loopback());
    let Some(addr) = addr else {
        // Pointed elsewhere by its operator: a real department serves it.
        return Ok(None);
    };
    let files = crate::demo_department::files(&demo.dir);
    let service = match DepartmentService::start(&files, addr).await {
        // Its port taken (another demo, or anything else): any free one will do, the
        // gateway is told below.
        Err(DepartmentError::Bind { source, .. })
            if source.kind() == std::io::ErrorKind::AddrInUse && addr.port() != 0 =>
        {
            tracing::info!(%addr, "demo department port taken; using a free one");
            DepartmentService::start(&files, SocketAddr::new(addr.ip(), 0)).await?
        }
        started => started?,
    };
    source.url = format!("https://{}", service.addr);
    if service.addr != addr {
        note_address(
            &demo.dir.join("tongban.toml"),
            &format!("https://{addr}"),
            &format!("https://{}", service.addr),
        )?;
    }
    Ok(Some(service))
}

/// The demo witness's key, beside the gateway's signing key.
const WITNESS_KEY: &str = "keys/witness.pem";
/// The demo witness's name: the market regulator's, a department other than the one
/// running the gateway.
const WITNESS_NAME: &str = "witness.sz-amr";

fn witness_vkey(key: &Path) -> Result<String, DemoError> {
    let signer = Signer::load(key).map_err(|e| DemoError::Other(e.to_string()))?;
    audit::tlog::cosignature::verifier(WITNESS_NAME, signer.key_pair())
        .map(|v| v.to_vkey())
        .map_err(|e| DemoError::Other(e.to_string()))
}

/// Start the demo's witness (in this process) when the config names it at a
/// loopback address with the demo's witness key; the port it gets is written into
/// the config, as the department's is.
pub async fn start_witness(demo: &mut Demo) -> Result<Option<WitnessService>, DemoError> {
    let key_file = demo.dir.join(WITNESS_KEY);
    let Ok(vkey) = witness_vkey(&key_file) else {
        return Ok(None);
    };
    let signer =
        Signer::load(&demo.config.signing_key).map_err(|e| DemoError::Other(e.to_string()))?;
    let log = audit::witness::FollowedLog::new(
        &crate::audit_config::origin(&demo.config),
        signer.public_key(),
    )
    .map_err(|e| DemoError::Other(e.to_string()))?;
    let Some(configured) = demo
        .config
        .audit
        .witnesses
        .iter_mut()
        .find(|w| w.key == vkey)
    else {
        return Ok(None);
    };
    let Some(addr) = configured
        .url
        .strip_prefix("http://")
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .filter(|a| a.ip().is_loopback())
    else {
        return Ok(None);
    };
    let key = Signer::load(&key_file)
        .map_err(|e| DemoError::Other(e.to_string()))?
        .into_key_pair();
    let witness = audit::witness::Witness::open(
        WITNESS_NAME,
        key,
        vec![log],
        &demo.dir.join("witness-state.json"),
    )
    .map_err(|e| DemoError::Other(e.to_string()))?;
    let witness = std::sync::Arc::new(witness);
    let service = match WitnessService::start(std::sync::Arc::clone(&witness), addr).await {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && addr.port() != 0 => {
            WitnessService::start(witness, SocketAddr::new(addr.ip(), 0)).await
        }
        started => started,
    }
    .map_err(|source| DemoError::Io {
        path: demo.dir.join("witness-state.json"),
        source,
    })?;
    configured.url = format!("http://{}", service.addr);
    if service.addr != addr {
        note_address(
            &demo.dir.join("tongban.toml"),
            &format!("http://{addr}"),
            &format!("http://{}", service.addr),
        )?;
    }
    Ok(Some(service))
}

/// Writes the address a demo service (the department, the witness) got into the demo
/// config, so that the file says where it runs. A config whose URL was edited by
/// hand is left as it is.
fn note_address(config: &Path, was: &str, now: &str) -> Result<(), DemoError> {
    let text = std::fs::read_to_string(config).map_err(io(config))?;
    let (was, now) = (format!("\"{was}\""), format!("\"{now}\""));
    if text.matches(&was).count() == 1 {
        write(config, &text.replacen(&was, &now, 1))?;
    }
    Ok(())
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
    // The demo department listens beside the gateway on any free port; the port it
    // gets is written back here when it starts (`start_department`), so that two
    // demos, or a demo beside anything else, can run.
    let department = SocketAddr::from(([127, 0, 0, 1], 0));
    let issuer_key = IssuerKeys::new(&[&samples.issuer_public_key])?
        .to_base64url()
        .concat();
    let witness = Signer::generate_pem().map_err(|e| DemoError::Other(e.to_string()))?;
    certs::write_private_pem(&dir.join(WITNESS_KEY), &witness)?;
    let witness_key = witness_vkey(&dir.join(WITNESS_KEY))?;
    write(
        &config_path,
        &config_toml(listen, ops_listen, department, &issuer_key, &witness_key),
    )?;
    let config = Config::load(&config_path)?;
    seed_policy(dir, &config, &agreements).await
}

/// The demo's agreements and role bindings, through the same path as `tongban
/// policy apply -f agreements.toml` and `tongban policy bind`: versioned in the
/// policy history and appended to the audit chain, like every policy change.
async fn seed_policy(dir: &Path, config: &Config, agreements: &str) -> Result<(), DemoError> {
    let other = |e: crate::agreements::ManageError| DemoError::Other(e.to_string());
    let store = crate::policy_sync::open_store(config).await?;
    let signer = Signer::load(&config.signing_key).map_err(|e| DemoError::Other(e.to_string()))?;
    let log = AuditLog::open(
        &crate::audit_config::database(&config.state_db),
        std::sync::Arc::new(signer),
        crate::audit_config::settings(config),
    )
    .await
    .map_err(|e| DemoError::Other(format!("audit log: {e}")))?;
    let audit = ChangeAudit::Chain {
        log: &log,
        node: &config.node,
    };
    let file = AgreementFile::parse(&dir.join("agreements.toml"), agreements)?;
    let seeded = async {
        crate::agreements::apply_file(
            &store,
            &crate::policy_sync::catalogue(config),
            &file,
            false,
            false,
            DEMO_ACTOR,
            &audit,
        )
        .await
        .map_err(other)?;
        for c in CLIENTS {
            let identity = format!("urn:tongban:{}:{}", c.department, c.system);
            crate::agreements::bind_role(&store, &identity, c.role, DEMO_ACTOR, &audit)
                .await
                .map_err(other)?;
        }
        seed_request(config, &audit).await
    }
    .await;
    // Seal what was written with a checkpoint and stop the writer: the gateway
    // about to serve this directory appends to the same chain with its own.
    log.close().await;
    seeded
}

/// The housing fund centre's consumer system, which the demo's pending request is
/// for.
pub const DEMO_REQUEST_CONSUMER: &str = "urn:tongban:sz-hf:counter-01";

/// One pending access request, so that a newcomer sees the review flow: the housing
/// fund centre asks the public security bureau (the admin certificate's department)
/// for residents' names, birth dates and masked addresses, to check housing-fund
/// withdrawals.
async fn seed_request(config: &Config, audit: &ChangeAudit<'_>) -> Result<(), DemoError> {
    let policy = crate::policy_sync::PolicyService::open_idle(config).await?;
    let requests = crate::requests::Requests::new(std::sync::Arc::new(policy), config);
    let now = chrono::Utc::now();
    let terms = policy::RequestTerms {
        dataset: "population".into(),
        consumer: DEMO_REQUEST_CONSUMER.into(),
        fields: [
            ("name", policy::FieldRule::Full),
            ("birth_date", policy::FieldRule::Full),
            ("household_address", policy::FieldRule::Masked),
        ]
        .into_iter()
        .map(|(f, r)| (f.to_owned(), r))
        .collect(),
        matters: vec!["housing-fund-withdrawal".into()],
        legal_basis: "住房公积金管理条例 (Housing Provident Fund Regulations), art. 24: a withdrawal is checked against the member's household registration".into(),
        valid_from: now,
        valid_until: now + chrono::Duration::days(365),
        daily_quota: Some(2000),
        contact: "Shenzhen Housing Provident Fund Centre, data office, +86 755 0000 0000".into(),
        renews: None,
    };
    let actor = crate::requests::Actor::operator(DEMO_ACTOR);
    let filed = requests
        .file(&actor, terms)
        .await
        .map_err(|e| DemoError::Other(format!("demo access request: {e}")))?;
    crate::requests::record_step(audit, DEMO_ACTOR, "file", &filed.request, None)
        .await
        .map_err(|e| DemoError::Other(e.to_string()))
}

/// How long demo certificates are valid: at most a year, as browsers and most CA
/// policies allow for leaf certificates; re-create the demo directory to renew.
const DEMO_CERT_DAYS: u32 = 365;

/// The demo CA is an ordinary CA directory (index, CRL), so `tongban certs list /
/// revoke / crl --ca-dir DIR/pki` work on it.
pub(crate) fn write_pki(pki: &Path) -> Result<(), DemoError> {
    let options = InitOptions {
        common_name: "Tongban Demo CA".into(),
        alg: KeyAlg::EcdsaP256,
        validity: Validity::days(3650)?,
        crl_next_update: certs::time::Duration::days(30),
    };
    let mut ca = CaDir::init(pki, &options, None)?;
    let server = IssueRequest {
        subject: Subject::Server {
            dns: vec!["localhost".to_owned()],
            ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        },
        validity: Validity::days(DEMO_CERT_DAYS)?,
        key_alg: KeyAlg::EcdsaP256,
    };
    ca.issue(&server, pki, "server", true)?;
    for c in CLIENTS {
        let client = IssueRequest {
            subject: Subject::Client {
                identity: Identity::new(c.department, c.system)?,
                common_name: c.name.to_owned(),
            },
            validity: Validity::days(DEMO_CERT_DAYS)?,
            key_alg: KeyAlg::EcdsaP256,
        };
        ca.issue(&client, pki, c.name, true)?;
    }
    // The demo department service's certificate, and the gateway's own client
    // certificate towards departments.
    let department = IssueRequest {
        subject: Subject::Server {
            dns: vec!["localhost".to_owned()],
            ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        },
        validity: Validity::days(DEMO_CERT_DAYS)?,
        key_alg: KeyAlg::EcdsaP256,
    };
    ca.issue(&department, pki, "department", true)?;
    let gateway = IssueRequest {
        subject: Subject::Client {
            identity: Identity::new(
                crate::demo_department::GATEWAY_DEPARTMENT,
                crate::demo_department::GATEWAY_SYSTEM,
            )?,
            common_name: "gateway".to_owned(),
        },
        validity: Validity::days(DEMO_CERT_DAYS)?,
        key_alg: KeyAlg::EcdsaP256,
    };
    ca.issue(&gateway, pki, "gateway", true)?;
    Ok(())
}

fn config_toml(
    listen: SocketAddr,
    ops_listen: SocketAddr,
    department: SocketAddr,
    issuer_key: &str,
    witness_key: &str,
) -> String {
    let mut out = format!(
        r#"# Tongban gateway configuration (written by `tongban demo`).
# Relative paths are resolved against this file's directory.

node = "demo-1"
listen = "{listen}"          # counter API, mutual TLS
ops_listen = "{ops_listen}"  # /healthz, /readyz — plain HTTP, keep on loopback
state_db = "state.db"           # agreements, role bindings and the audit log (SQLite)
signing_key = "keys/signing.pem" # Ed25519 key that signs the audit log's checkpoints

[tls]
cert = "pki/server.pem"
key = "pki/server.key"
client_cas = ["pki/ca.pem"]     # CAs whose client certificates are accepted
crls = ["pki/crl.pem"]          # checked at every handshake; `tongban certs revoke` rewrites it
# unknown_revocation = "deny"   # a client CA with no CRL listed: "deny" (default) or "allow"
# Certificates, CAs and CRLs reload without a restart: on SIGHUP and within a second of a change.

[audit]
batch_max = 512                 # records per group commit

# A second department (sz-amr) witnesses this log: it cosigns each checkpoint after
# checking that it extends the last one it cosigned. The demo runs it in-process;
# its port is written back here when it starts.
[[audit.witnesses]]
url = "http://127.0.0.1:0"
key = "{witness_key}"

[limits]
max_concurrent_requests = 4096
max_body_bytes = 65536

[telemetry]
log_format = "text"             # or "json"
log_level = "info"
otlp_endpoint = ""              # e.g. "http://127.0.0.1:4317"; empty = no export

[policy]
time_zone = "+08:00"            # hours of service and quota days (China Standard Time)
sync_interval_ms = 250          # changes made elsewhere take effect within this
decision_cache = 1024           # (consumer, dataset) decision engines kept built
# The matters (purposes) agreements may name; an agreement naming another is refused.
# A table gives display names (the citizen portal shows them) and, for matters such
# as investigations, how many days their accesses are withheld from the citizen.
matters = [
  {{ name = "social-insurance-enrollment", display_zh = "社会保险参保登记", display_en = "Social insurance enrollment" }},
  {{ name = "pension-qualification", display_zh = "养老金资格认证", display_en = "Pension qualification" }},
  {{ name = "employer-registration", display_zh = "用人单位登记", display_en = "Employer registration" }},
  {{ name = "newborn-registration", display_zh = "新生儿出生登记", display_en = "Newborn registration" }},
  {{ name = "marriage-registration", display_zh = "婚姻登记", display_en = "Marriage registration" }},
  {{ name = "company-opening", display_zh = "企业开办", display_en = "Company opening" }},
  {{ name = "business-registration", display_zh = "商事登记", display_en = "Business registration" }},
  {{ name = "household-transfer", display_zh = "户口迁移", display_en = "Household transfer" }},
  {{ name = "housing-fund-withdrawal", display_zh = "住房公积金提取", display_en = "Housing fund withdrawal" }},
  {{ name = "minimum-living-allowance", display_zh = "最低生活保障", display_en = "Minimum living allowance" }},
  {{ name = "benefit-fraud-investigation", display_zh = "骗取社会保险待遇案件调查", display_en = "Benefit fraud investigation", disclose_after_days = 90 }},
]

[requests]
review_working_days = 10        # a provider reviews an access request within this many working days
# holidays = ["2026-10-01"]     # weekdays off; working_weekends = [...] lists weekend days worked
# auto_approve_open = ["legal_person"]   # approve at once a request for only `open` fields

# Departments' display names, shown to citizens beside each access.
[[departments]]
code = "sz-psb"
display_zh = "深圳市公安局"
display_en = "Shenzhen Public Security Bureau"

[[departments]]
code = "sz-hrss"
display_zh = "深圳市人力资源和社会保障局"
display_en = "Shenzhen Human Resources and Social Security Bureau"

[[departments]]
code = "sz-civil"
display_zh = "深圳市民政局"
display_en = "Shenzhen Civil Affairs Bureau"

[[departments]]
code = "sz-amr"
display_zh = "深圳市市场监督管理局"
display_en = "Shenzhen Administration for Market Regulation"

[[departments]]
code = "sz-data"
display_zh = "深圳市政务服务和数据管理局"
display_en = "Shenzhen Government Services and Data Administration"
"#
    );
    out.push_str(&crate::demo_department::connectors_toml(
        department, issuer_key,
    ));
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
matters = ["social-insurance-enrollment", "pension-qualification", "company-opening", "benefit-fraud-investigation"]
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
matters = ["social-insurance-enrollment", "employer-registration", "company-opening"]
{window}
approver = "urn:tongban:sz-amr:admin-01"
[agreement.fields]
name = "full"
entity_type = "full"
legal_representative = "masked"
legal_representative_id = "full"
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
id = "hrss-e-license-2026"
provider = "sz-data"
consumer = "urn:tongban:sz-hrss:counter-01"
dataset = "e_license"
matters = ["company-opening"]
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
issuer_signature = "full"
file_sha256 = "full"

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

# social_insurance is declared in tongban.toml like the others; its
# pension_account_balance is closed, so no agreement may name it.
[[agreement]]
id = "civil-social-insurance-2026"
provider = "sz-hrss"
consumer = "urn:tongban:sz-civil:counter-01"
dataset = "social_insurance"
matters = ["minimum-living-allowance"]
{window}
approver = "urn:tongban:sz-hrss:admin-01"
[agreement.fields]
insured_status = "full"
employer_name = "full"
contribution_base = "full"
months_paid = "full"
last_paid_month = "full"
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
    let insured = first(&s.insured_residents);
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
            200,
            "social_insurance (declared in the config only), allowed",
            "social_insurance",
            &insured,
            "minimum-living-allowance",
            None,
        ),
        sample(
            "counter-b",
            403,
            "pension_account_balance is closed: never shared",
            "social_insurance",
            &insured,
            "minimum-living-allowance",
            Some(&["insured_status", "pension_account_balance"][..]),
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
    let mut items: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(n, x)| x.to_json(n + 1))
        .collect();
    items.extend(bundle_samples(s));
    serde_json::to_string_pretty(&items).unwrap_or_default()
}

/// Bundle requests, allowed: a newborn's registration from the birth certificate, a
/// company's opening from its credit code.
fn bundle_samples(s: &DemoSamples) -> Vec<Value> {
    let bundle = |cert: &str, bundle: &str, subject: &str, matter: &str, case: &str, note: &str| {
        json!({"cert": cert, "path": "/v1/bundle", "operator": "clerk-001",
               "body": {"bundle": bundle, "subject": subject, "matter": matter, "case_id": case},
               "expect": 200, "note": note})
    };
    let mut out = Vec::new();
    if !s.birth_certificate.is_empty() {
        out.push(bundle(
            "counter-b",
            "newborn",
            &s.birth_certificate,
            "newborn-registration",
            "MZ-2026-000001",
            "bundle newborn: the birth certificate, then both parents' records found through it",
        ));
    }
    if !s.licensed_company.is_empty() {
        out.push(bundle(
            "counter-a",
            "company-opening",
            &s.licensed_company,
            "company-opening",
            "SB-2026-000900",
            "bundle company-opening: the company, its business licence (by holder) and its legal representative",
        ));
    }
    out
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn small() -> DemoCounts {
        DemoCounts {
            residents: 10,
            legal_persons: 5,
            licenses: 5,
        }
    }

    #[test]
    fn demo_certificates_are_valid_for_at_most_a_year() {
        let dir = tempfile::tempdir().unwrap();
        write_pki(dir.path()).unwrap();
        let mut names: Vec<String> = CLIENTS.iter().map(|c| c.name.to_owned()).collect();
        names.extend(["server", "department", "gateway"].map(String::from));
        for name in names {
            let info = certs::CertInfo::load(&dir.path().join(format!("{name}.pem"))).unwrap();
            let valid = info.not_after - info.not_before;
            // Validity starts a few minutes back, for clocks that run behind.
            assert!(
                valid <= certs::time::Duration::days(365) + certs::time::Duration::hours(1),
                "{name}: valid for {valid}"
            );
        }
    }

    #[tokio::test]
    async fn a_demo_starts_beside_another_on_its_department_port() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // Whatever held the old fixed port: held here if free, or by someone already.
        let _held = std::net::TcpListener::bind(("127.0.0.1", 8444));
        let mut first = prepare(a.path(), None, None, &small()).await.unwrap();
        let first_dept = start_department(&mut first).await.unwrap().unwrap();
        assert_ne!(first_dept.addr.port(), 8444);
        // The config says where it went.
        let written = Config::load(&a.path().join("tongban.toml")).unwrap();
        let url = |c: &Config| {
            c.sources
                .iter()
                .find(|s| s.name == crate::demo_department::SOURCE_NAME)
                .map(|s| s.url.clone())
                .unwrap()
        };
        assert_eq!(url(&written), format!("https://{}", first_dept.addr));
        // `audit report` knows the demo CA's revocations without being told.
        let index = written.audit.anomaly.revoked_index.clone().unwrap();
        assert!(
            index.ends_with("pki/index.json") && index.is_file(),
            "{index:?}"
        );
        // A second demo starts while the first runs.
        let mut second = prepare(b.path(), None, None, &small()).await.unwrap();
        let second_dept = start_department(&mut second).await.unwrap().unwrap();
        assert_ne!(second_dept.addr, first_dept.addr);
        // Re-running the first directory while its department still holds the port
        // written in its config: another free port, noted in the config.
        let mut again = prepare(a.path(), None, None, &small()).await.unwrap();
        assert!(!again.created);
        let again_dept = start_department(&mut again).await.unwrap().unwrap();
        assert_ne!(again_dept.addr, first_dept.addr);
        assert_eq!(url(&again.config), format!("https://{}", again_dept.addr));
        let rewritten = Config::load(&a.path().join("tongban.toml")).unwrap();
        assert_eq!(url(&rewritten), format!("https://{}", again_dept.addr));
        for d in [first_dept, second_dept, again_dept] {
            d.shutdown().await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod browser_tests {
    use p12_keystore::Pkcs12ImportPolicy;

    use super::*;
    use crate::demo_browser::{write_bundles, BROWSER_CLIENTS};
    use p12_keystore::KeyStore;
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    #[test]
    fn a_bundle_holds_the_key_and_chain_and_opens_only_with_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path();
        write_pki(pki).unwrap();
        let made = write_bundles(pki).unwrap();
        assert_eq!(made.password.len(), 16);
        assert_eq!(made.files.len(), 2);
        for (name, file) in BROWSER_CLIENTS.iter().zip(&made.files) {
            let bytes = std::fs::read(file).unwrap();
            let store =
                KeyStore::from_pkcs12(&bytes, &made.password, Pkcs12ImportPolicy::Relaxed).unwrap();
            let (_, chain) = store.private_key_chain().unwrap();
            let want_key = PrivateKeyDer::from_pem_file(pki.join(format!("{name}.key"))).unwrap();
            assert_eq!(chain.key().as_der(), want_key.secret_der(), "{name}");
            let leaf = CertificateDer::from_pem_file(pki.join(format!("{name}.pem"))).unwrap();
            let ca = CertificateDer::from_pem_file(pki.join("ca.pem")).unwrap();
            let got: Vec<&[u8]> = chain.certs().iter().map(|c| c.as_der()).collect();
            assert_eq!(got, vec![leaf.as_ref(), ca.as_ref()], "{name}");
            assert!(
                KeyStore::from_pkcs12(&bytes, "wrong", Pkcs12ImportPolicy::Relaxed).is_err(),
                "{name} opens with another password"
            );
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = std::fs::metadata(file).unwrap().permissions().mode();
                assert_eq!(mode & 0o077, 0, "{name}.p12 is the owner's only");
            }
        }
        // A second run keeps the files and prints the same password.
        let again = write_bundles(pki).unwrap();
        assert_eq!(again.password, made.password);
    }
}
