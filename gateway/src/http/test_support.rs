//! Fixtures for the unit tests of the http layers. What a layer talks to in a running
//! gateway is real here too — the audit log, the policy, the sources — over files in
//! a temporary directory; only the layer below the one under test is stood in for, by
//! a [`recorder`] that keeps what reached it and answers a fixed value.
#![allow(clippy::unwrap_used)] // test support: a failed set-up is a failed test

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use audit::signing::Signer;
use audit::{AuditEntry, AuditLog, StoredRecord};
use bytes::Bytes;
use connectors::demo::{create_demo_databases, demo_sources, DemoCounts, DemoSamples};
use connectors::{Dataset, Record, SubjectKind};
use futures_util::TryStreamExt as _;
use http::Request;
use http_body_util::Full;
use policy::{AgreementFile, SharingClass};
use tempfile::TempDir;
use tower::util::BoxCloneSyncService;

use super::body::BodyLimits;
use super::lookup::{validate, Asked, LookupCall, LookupRequest};
use super::{LookupAnswer, Principal, RequestMeta};
use crate::agreements::apply_file;
use crate::agreements::ChangeAudit::NotAudited;
use crate::config::{Config, DatasetConfig, FieldConfig, FieldType};
use crate::policy_sync::{catalogue, open_store, PolicyService};
use crate::sources::Route;

/// The counter system every fixture agreement is made for.
pub(crate) const COUNTER: (&str, &str) = ("sz-hrss", "counter-01");
/// A matter the population agreement allows.
pub(crate) const MATTER: &str = "social-insurance-enrollment";
/// The case id of every test lookup.
pub(crate) const CASE_ID: &str = "SB-2026-000123";
/// The clerk of every test lookup.
pub(crate) const OPERATOR: &str = "clerk-001";
/// A valid resident ID number (GB 11643); not necessarily in the demo data.
pub(crate) const RESIDENT: &str = "110101199003074573";

/// The agreements of every [`Fixture`]: [`COUNTER`] may read some population fields
/// (one masked) for [`MATTER`], and legal persons for company opening, once a day.
fn agreements() -> String {
    let of_counter = "consumer = \"urn:tongban:sz-hrss:counter-01\"\n\
                      valid_from = \"2026-01-01T00:00:00Z\"\n\
                      valid_until = \"2099-12-31T23:59:59Z\"";
    format!(
        r#"
[[agreement]]
id = "hrss-population"
dataset = "population"
matters = ["social-insurance-enrollment", "company-opening"]
{of_counter}
provider = "sz-psb"
approver = "urn:tongban:sz-psb:admin-01"
fields = {{ name = "full", birth_date = "full", household_address = "masked" }}

[[agreement]]
id = "hrss-legal-person"
dataset = "legal_person"
matters = ["company-opening"]
{of_counter}
daily_quota = 1
provider = "sz-amr"
approver = "urn:tongban:sz-amr:admin-01"
fields = {{ name = "full", legal_representative_id = "full" }}
"#
    )
}

/// A gateway's state over a temporary directory: demo data for population and
/// legal persons, a config serving both from it, and [`agreements`] in the state
/// database.
pub(crate) struct Fixture {
    _dir: TempDir,
    /// The config, as `tongban serve` would load it.
    pub config: Config,
    /// Identifiers in (and absent from) the demo data.
    pub samples: DemoSamples,
}

impl Fixture {
    pub(crate) async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let counts = DemoCounts {
            residents: 20,
            legal_persons: 10,
            licenses: 10,
        };
        let samples = create_demo_databases(dir.path(), &counts, 2026)
            .await
            .unwrap();
        // The config checks only that these exist; nothing here serves TLS or loads
        // the signing key from them.
        for f in ["signing.pem", "server.pem", "server.key", "ca.pem"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let path = dir.path().join("tongban.toml");
        let config = Config::parse(&path, &config_toml()).unwrap();
        // Seeded without a chain, so that the audit log starts empty.
        let store = open_store(&config).await.unwrap();
        let file = AgreementFile::parse(&dir.path().join("a.toml"), &agreements()).unwrap();
        let catalogue = catalogue(&config);
        apply_file(&store, &catalogue, &file, false, false, "test", &NotAudited)
            .await
            .unwrap();
        Self {
            _dir: dir,
            config,
            samples,
        }
    }

    /// The policy, as the gateway opens it (without the follower task).
    pub(crate) async fn policy(&self) -> Arc<PolicyService> {
        Arc::new(PolicyService::open_idle(&self.config).await.unwrap())
    }

    /// The demo sources, connected as the gateway connects them.
    pub(crate) async fn routes(&self) -> Arc<HashMap<Dataset, Route>> {
        Arc::new(crate::sources::connect(&self.config).await.unwrap())
    }

    /// The audit log of the state database, its chain empty.
    pub(crate) async fn audit(&self) -> AuditLog {
        self.audit_signed_by(signer()).await
    }

    /// The audit log, its checkpoints signed by `signer`.
    pub(crate) async fn audit_signed_by(&self, signer: Arc<Signer>) -> AuditLog {
        AuditLog::open(
            &crate::audit_config::database(&self.config.state_db),
            signer,
            crate::audit_config::settings(&self.config),
        )
        .await
        .unwrap()
    }
}

/// Population, legal persons and social insurance from the demo databases beside the
/// config (no e-licences: a dataset declared but not served here is the fetch test's
/// `NotServed`).
fn config_toml() -> String {
    let mut out = String::from(
        "node = \"gw-test\"\nlisten = \"127.0.0.1:0\"\nops_listen = \"127.0.0.1:0\"\n\
         state_db = \"state.db\"\nsigning_key = \"signing.pem\"\n\n\
         [tls]\ncert = \"server.pem\"\nkey = \"server.key\"\nclient_cas = [\"ca.pem\"]\n",
    );
    for s in demo_sources().iter().filter(|s| s.dataset != "e_license") {
        let _ = write!(
            out,
            "\n[[sources]]\nname = \"{}\"\nkind = \"sql\"\nurl = \"sqlite://{}?mode=ro\"\n\
             \n[[datasets]]\nname = \"{}\"\ndepartment = \"{}\"\nsubject = \"{}\"\n\
             source = \"{}\"\nquery = \"{}\"\n",
            s.connector, s.file, s.dataset, s.department, s.subject, s.connector, s.query
        );
        for f in s.fields {
            let _ = write!(
                out,
                "[[datasets.fields]]\nname = \"{}\"\ncolumn = \"{}\"\ntype = \"{}\"\nclass = \"{}\"\n",
                f.name, f.column, f.kind, f.class
            );
        }
    }
    out
}

/// A receipt for record `seq`, as the respond layer adds it (its proof is not real).
pub(crate) fn receipt(seq: i64) -> audit::Receipt {
    audit::Receipt {
        seq,
        hash: "c0ffee".into(),
        record: "{}".into(),
        index: u64::try_from(seq - 1).unwrap_or_default(),
        checkpoint: "".into(),
        inclusion: Vec::new(),
    }
}

/// A fresh Ed25519 response signer.
pub(crate) fn signer() -> Arc<Signer> {
    use rustls_pki_types::pem::PemObject as _;
    let pem = Signer::generate_pem().unwrap();
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).unwrap();
    Arc::new(Signer::from_pkcs8(der.secret_pkcs8_der()).unwrap())
}

/// Every record in `log`'s chain, in order.
pub(crate) async fn records(log: &AuditLog) -> Vec<AuditEntry> {
    log.store()
        .rows(1, i64::MAX)
        .map_ok(|r| {
            serde_json::from_str::<StoredRecord>(&r.record)
                .unwrap()
                .entry
        })
        .try_collect()
        .await
        .unwrap()
}

/// What the meta layer puts on a request.
pub(crate) fn meta() -> RequestMeta {
    RequestMeta {
        id: uuid::Uuid::now_v7().to_string(),
        started: Instant::now(),
        received_at: chrono::Utc::now(),
    }
}

/// The caller `urn:tongban:<department>:<system>` as the TLS layer gives it.
pub(crate) fn principal((department, system): (&str, &str)) -> Principal {
    Principal {
        identity: certs::Identity::new(department, system).unwrap(),
        fingerprint: "ab".repeat(32),
    }
}

/// A request as the layers above the router hand it on: meta and [`COUNTER`]'s
/// principal on it, its body typed as JSON, and [`OPERATOR`] named when `operator`.
pub(crate) fn stamped(
    method: http::Method,
    path: &str,
    operator: bool,
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, "application/json");
    if operator {
        req = req.header("x-operator-id", OPERATOR);
    }
    let mut req = req.body(Full::new(body.into())).unwrap();
    req.extensions_mut().insert(meta());
    req.extensions_mut().insert(principal(COUNTER));
    req
}

/// `subject` of `dataset` asked for [`MATTER`] and [`CASE_ID`], all granted fields.
pub(crate) fn asked(dataset: &str, subject: &str) -> Asked {
    Asked {
        dataset: dataset.to_owned(),
        subject: subject.to_owned(),
        license_type: None,
        matter: MATTER.to_owned(),
        case_id: CASE_ID.to_owned(),
        fields: None,
    }
}

/// `asked` by `caller`'s clerk [`OPERATOR`].
pub(crate) fn lookup_request(caller: (&str, &str), asked: Asked) -> LookupRequest {
    LookupRequest {
        meta: meta(),
        principal: principal(caller),
        operator: OPERATOR.to_owned(),
        asked,
    }
}

/// `asked` by `caller`, validated against [`datasets`]: what authorize receives.
pub(crate) fn lookup_call(caller: (&str, &str), asked: Asked) -> LookupCall {
    validate(&datasets(), lookup_request(caller, asked)).unwrap()
}

/// The demo's four datasets, declared as its config declares them and in its order
/// (the SQL ones, then e-licences; sources bound by name only: nothing is connected).
pub(crate) fn datasets() -> Arc<[DatasetConfig]> {
    let mut sources = demo_sources();
    sources.sort_by_key(|s| s.dataset == "e_license");
    sources
        .iter()
        .map(|s| DatasetConfig {
            dataset: Dataset::new(s.dataset),
            description: s.description.to_owned(),
            department: s.department.to_owned(),
            subject: SubjectKind::builtin(s.subject).unwrap(),
            fields: s
                .fields
                .iter()
                .map(|f| FieldConfig {
                    name: f.name.to_owned(),
                    kind: FieldType::from_word(f.kind).unwrap(),
                    class: match f.class {
                        "open" => SharingClass::Open,
                        "closed" => SharingClass::Closed,
                        _ => SharingClass::Conditional,
                    },
                    description: f.description.to_owned(),
                    from: Some(f.column.to_owned()),
                })
                .collect(),
            source: s.connector.to_owned(),
            query: s.query.to_owned(),
            path: None,
            holder_query: s.holder_query.map(str::to_owned),
            holder_path: None,
            issuer_keys: Default::default(),
        })
        .collect()
}

/// A record of `dataset` about `subject`, as fetch gives it.
pub(crate) fn lookup_answer(dataset: &str, subject: &str, record: Record) -> LookupAnswer {
    LookupAnswer {
        request_id: "r".into(),
        dataset: Dataset::new(dataset),
        subject: subject.to_owned(),
        record,
        masked: Vec::new(),
        department: "sz-amr".into(),
        connector: "db".into(),
        fetched_at: String::new(),
        agreement: "a".into(),
        verification: None,
    }
}

/// What reached a [`recorder`], in order.
pub(crate) struct Seen<R>(Arc<Mutex<Vec<R>>>);

impl<R> Seen<R> {
    /// Everything so far, leaving none.
    pub(crate) fn take(&self) -> Vec<R> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// The layer below the one under test: keeps every request that reaches it and
/// answers each with `answer` of it.
pub(crate) fn recorder<R, T>(
    answer: impl Fn(&R) -> T + Send + Sync + 'static,
) -> (BoxCloneSyncService<R, T, Infallible>, Seen<R>)
where
    R: Send + 'static,
    T: Send + 'static,
{
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (kept, answer) = (Arc::clone(&seen), Arc::new(answer));
    let svc = tower::service_fn(move |req: R| {
        let reply = answer(&req);
        kept.lock().unwrap().push(req);
        std::future::ready(Ok::<_, Infallible>(reply))
    });
    (BoxCloneSyncService::new(svc), Seen(seen))
}

/// Bodies up to `max_bytes`, at a rate no test body is slower than.
pub(crate) fn body_limits(max_bytes: usize) -> BodyLimits {
    BodyLimits {
        max_bytes,
        min_bytes_per_sec: 1024,
        grace: std::time::Duration::from_secs(5),
    }
}
