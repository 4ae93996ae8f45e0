//! Deterministic synthetic demo databases for `tongban demo`.
//!
//! [`create_demo_databases`] writes four SQLite files, one per providing
//! department, each with one table keyed by the dataset's subject identifier:
//!
//! | file | table | key column | department | connector |
//! |---|---|---|---|---|
//! | `population.db` | `residents` | `id_number` | `sz-psb` | `population-db` |
//! | `legal_person.db` | `legal_persons` | `credit_code` | `sz-amr` | `legal-person-db` |
//! | `e_license.db` | `licenses` | `license_id` | `sz-data` | `e-license-db` |
//! | `social_insurance.db` | `contributions` | `id_number` | `sz-hrss` | `social-insurance-db` |
//!
//! Column names differ from field names where a department's schema would (e.g.
//! `full_name` for `name`); [`demo_sources`] carries the queries and mappings, and
//! the declaration of each field (type, sharing class, description) that the demo
//! writes into its config's `[[datasets]]`: the datasets are configuration, this is
//! only the demo's.
//!
//! Everything is a function of the seed: names, addresses and identifiers are
//! synthetic (division codes are real GB/T 2260 codes, every credit code is made up).
//! Residents' sexes match the parity of their ID sequence and are stored as `male` /
//! `female`; legal representatives, newborns' parents and licence holders are
//! residents or legal persons of the same seed.
//!
//! # E-licence signatures
//!
//! Every licence carries `issuer_signature`: an Ed25519 signature, base64url without
//! padding, by the demo issuer key ([`demo_issuer_public_key`]), over
//! [`license_signing_input`] of the record. In the demo one key stands in for every
//! issuing department.

mod generate;
mod lists;
mod store;

use std::path::Path;

use base64::Engine as _;
use ring::digest;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};

use crate::sql::SqlBinding;
use crate::{ConnectorError, Dataset, Record};

/// How many records [`create_demo_databases`] writes per dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoCounts {
    /// Rows of `residents` (population).
    pub residents: usize,
    /// Rows of `legal_persons` (legal_person).
    pub legal_persons: usize,
    /// Rows of `licenses` (e_license).
    pub licenses: usize,
}

/// One field of a demo dataset: how the demo's config declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoField {
    /// Field name.
    pub name: &'static str,
    /// The column it is read from.
    pub column: &'static str,
    /// Its type as the config writes it (`string`, `integer`, `date`, …).
    pub kind: &'static str,
    /// Its sharing class: `open`, `conditional` or `closed`.
    pub class: &'static str,
    /// What it is, for the catalogue.
    pub description: &'static str,
}

/// One demo database and how a [`crate::sql::SqlConnector`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoSource {
    /// The dataset this database serves.
    pub dataset: &'static str,
    /// What the dataset is, for the catalogue.
    pub description: &'static str,
    /// Its subject identifier kind as the config writes it (`resident_id`, …).
    pub subject: &'static str,
    /// Code of the department that provides the dataset (owner in agreements).
    pub department: &'static str,
    /// Connector name, e.g. `population-db`.
    pub connector: &'static str,
    /// File name inside the demo directory.
    pub file: &'static str,
    /// Lookup query with one `?` parameter, the subject.
    pub query: &'static str,
    /// For e-licences: the query finding a holder's newest licence of a type (two `?`
    /// parameters, holder ID then licence type).
    pub holder_query: Option<&'static str>,
    /// Every field of the dataset, in display order.
    pub fields: &'static [DemoField],
}

/// Identifiers to try against the demo databases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSamples {
    /// The first few resident ID numbers written (present).
    pub residents: Vec<String>,
    /// The first few credit codes written (present).
    pub credit_codes: Vec<String>,
    /// The first few licence identifiers written (present): a business licence, a
    /// birth medical certificate, a driving licence and a food business licence,
    /// then whatever follows (when the counts allow each kind).
    pub license_ids: Vec<String>,
    /// A valid resident ID number that is not in the database.
    pub absent_resident: String,
    /// A valid credit code that is not in the database.
    pub absent_credit_code: String,
    /// A valid licence identifier that is not in the database.
    pub absent_license_id: String,
    /// The first few residents with a social insurance account (present in
    /// `social_insurance`).
    pub insured_residents: Vec<String>,
    /// Identifier of the first birth medical certificate (`出生医学证明`), whose
    /// `content` names the newborn's parents; empty when none was written.
    pub birth_certificate: String,
    /// Credit code of the holder of the first business licence (`营业执照`), a
    /// company with a legal-person record and a legal representative; empty when none
    /// was written.
    pub licensed_company: String,
    /// Raw 32-byte Ed25519 public key that verifies every `issuer_signature`.
    pub issuer_public_key: Vec<u8>,
}

/// `license_type` of a business licence, the company-opening bundle's licence.
pub const BUSINESS_LICENCE: &str = "营业执照";

/// `license_type` of a birth medical certificate, the newborn bundle's root.
pub const BIRTH_CERTIFICATE: &str = "出生医学证明";

/// How many present identifiers of each kind [`DemoSamples`] carries.
const SAMPLES_PER_KIND: usize = 5;

/// The fields covered by the issuer signature, in the e_license field order.
const SIGNED_FIELDS: [&str; 9] = [
    "license_type",
    "holder_id",
    "holder_name",
    "issuer",
    "issued_on",
    "valid_until",
    "status",
    "content",
    "file_sha256",
];

const fn field(
    name: &'static str,
    column: &'static str,
    kind: &'static str,
    class: &'static str,
    description: &'static str,
) -> DemoField {
    DemoField {
        name,
        column,
        kind,
        class,
        description,
    }
}

const POPULATION_FIELDS: &[DemoField] = &[
    field(
        "name",
        "full_name",
        "string",
        "conditional",
        "姓名 Full name",
    ),
    field(
        "sex",
        "sex",
        "string",
        "conditional",
        "性别 Sex: male or female",
    ),
    field(
        "birth_date",
        "date_of_birth",
        "date",
        "conditional",
        "出生日期 Date of birth",
    ),
    field(
        "ethnicity",
        "ethnic_group",
        "string",
        "conditional",
        "民族 Ethnic group",
    ),
    field(
        "household_address",
        "hukou_address",
        "string",
        "conditional",
        "户籍地址 Household registration address",
    ),
    field(
        "registration_authority",
        "registration_authority",
        "string",
        "open",
        "登记机关 Police station keeping the registration",
    ),
    field(
        "status",
        "status",
        "string",
        "open",
        "户籍状态 Registration status: normal, deceased or emigrated",
    ),
];

const LEGAL_PERSON_FIELDS: &[DemoField] = &[
    field(
        "name",
        "entity_name",
        "string",
        "open",
        "名称 Registered name",
    ),
    field(
        "entity_type",
        "entity_type",
        "string",
        "open",
        "类型 Entity type",
    ),
    field(
        "legal_representative",
        "legal_rep_name",
        "string",
        "open",
        "法定代表人 Legal representative's name",
    ),
    field(
        "legal_representative_id",
        "legal_rep_id",
        "string",
        "conditional",
        "法定代表人身份证号 Legal representative's resident ID number",
    ),
    field(
        "registered_capital",
        "registered_capital_yuan",
        "integer",
        "open",
        "注册资本 Registered capital, yuan",
    ),
    field(
        "established_on",
        "established_on",
        "date",
        "open",
        "成立日期 Date of establishment",
    ),
    field(
        "registered_address",
        "registered_address",
        "string",
        "open",
        "住所 Registered address",
    ),
    field(
        "status",
        "status",
        "string",
        "open",
        "登记状态 Registration status",
    ),
    field(
        "business_scope",
        "business_scope",
        "string",
        "open",
        "经营范围 Business scope",
    ),
];

const E_LICENSE_FIELDS: &[DemoField] = &[
    field(
        "license_type",
        "license_type",
        "string",
        "conditional",
        "证照类型 Licence type, e.g. 营业执照",
    ),
    field(
        "holder_id",
        "holder_id",
        "string",
        "conditional",
        "持证主体代码 Holder's resident ID number or credit code",
    ),
    field(
        "holder_name",
        "holder_name",
        "string",
        "conditional",
        "持证主体 Holder's name",
    ),
    field(
        "issuer",
        "issuer_name",
        "string",
        "conditional",
        "发证机构 Issuing department",
    ),
    field(
        "issued_on",
        "issued_on",
        "date",
        "conditional",
        "发证日期 Date of issue",
    ),
    field(
        "valid_until",
        "valid_until",
        "date",
        "conditional",
        "有效期至 Valid until (null: no end)",
    ),
    field(
        "status",
        "status",
        "string",
        "conditional",
        "证照状态 Licence status",
    ),
    field(
        "content",
        "content",
        "json",
        "conditional",
        "照面信息 The licence's content, a JSON document",
    ),
    field(
        "issuer_signature",
        "issuer_signature",
        "string",
        "conditional",
        "发证机构签名 The issuer's Ed25519 signature, base64url",
    ),
    field(
        "file_sha256",
        "file_sha256",
        "string",
        "conditional",
        "版式文件摘要 SHA-256 of the licence file",
    ),
];

const SOCIAL_INSURANCE_FIELDS: &[DemoField] = &[
    field(
        "insured_status",
        "insured_status",
        "string",
        "open",
        "参保状态 Insured status: contributing, suspended or retired",
    ),
    field(
        "employer_name",
        "employer",
        "string",
        "conditional",
        "参保单位 Employer paying the contributions (null: none)",
    ),
    field(
        "contribution_base",
        "contribution_base_yuan",
        "integer",
        "conditional",
        "缴费基数 Monthly contribution base, yuan",
    ),
    field(
        "months_paid",
        "months_paid",
        "integer",
        "conditional",
        "累计缴费月数 Months of contributions paid",
    ),
    field(
        "last_paid_month",
        "last_paid_month",
        "month",
        "open",
        "最近缴费月份 Last month paid, YYYY-MM",
    ),
    field(
        "pension_account_balance",
        "pension_account_balance_yuan",
        "integer",
        "closed",
        "个人账户余额 Personal pension account balance, yuan: never shared",
    ),
];

impl Default for DemoCounts {
    /// 10,000 residents, 2,000 legal persons, 5,000 licences.
    fn default() -> Self {
        DemoCounts {
            residents: 10_000,
            legal_persons: 2_000,
            licenses: 5_000,
        }
    }
}

impl DemoSource {
    /// The [`SqlBinding`] that reads this source.
    pub fn binding(&self) -> SqlBinding {
        SqlBinding {
            dataset: Dataset::new(self.dataset),
            query: self.query.to_owned(),
            holder_query: self.holder_query.map(str::to_owned),
            fields: self
                .fields
                .iter()
                .map(|f| (f.name.to_owned(), f.column.to_owned()))
                .collect(),
        }
    }
}

/// The four demo databases: population (`sz-psb`), legal_person (`sz-amr`),
/// e_license (`sz-data`) and social_insurance (`sz-hrss`).
pub fn demo_sources() -> Vec<DemoSource> {
    vec![
        DemoSource {
            dataset: "population",
            description: "人口基础信息 Household registration records of residents",
            subject: "resident_id",
            department: "sz-psb",
            connector: "population-db",
            file: "population.db",
            query: "SELECT full_name, sex, date_of_birth, ethnic_group, hukou_address, \
                    registration_authority, status FROM residents WHERE id_number = ?",
            holder_query: None,
            fields: POPULATION_FIELDS,
        },
        DemoSource {
            dataset: "legal_person",
            description:
                "法人基础信息 Registered legal persons: companies, sole traders, organisations",
            subject: "credit_code",
            department: "sz-amr",
            connector: "legal-person-db",
            file: "legal_person.db",
            query: "SELECT entity_name, entity_type, legal_rep_name, legal_rep_id, \
                    registered_capital_yuan, established_on, registered_address, status, \
                    business_scope FROM legal_persons WHERE credit_code = ?",
            holder_query: None,
            fields: LEGAL_PERSON_FIELDS,
        },
        DemoSource {
            dataset: "e_license",
            description: "电子证照 Electronic licences and certificates, signed by their issuers",
            subject: "license_id",
            department: "sz-data",
            connector: "e-license-db",
            file: "e_license.db",
            query: "SELECT license_type, holder_id, holder_name, issuer_name, issued_on, \
                    valid_until, status, content, issuer_signature, file_sha256 \
                    FROM licenses WHERE license_id = ?",
            holder_query: Some(
                "SELECT license_type, holder_id, holder_name, issuer_name, issued_on, \
                 valid_until, status, content, issuer_signature, file_sha256 \
                 FROM licenses WHERE holder_id = ? AND license_type = ? \
                 ORDER BY issued_on DESC, license_id DESC LIMIT 1",
            ),
            fields: E_LICENSE_FIELDS,
        },
        DemoSource {
            dataset: "social_insurance",
            description: "社会保险参保缴费 Social insurance contributions of insured residents",
            subject: "resident_id",
            department: "sz-hrss",
            connector: "social-insurance-db",
            file: "social_insurance.db",
            query: "SELECT insured_status, employer, contribution_base_yuan, months_paid, \
                    last_paid_month, pension_account_balance_yuan \
                    FROM contributions WHERE id_number = ?",
            holder_query: None,
            fields: SOCIAL_INSURANCE_FIELDS,
        },
    ]
}

/// Writes the four demo databases into `dir` (created if missing; existing database
/// files are removed first) and returns identifiers to try. The same `counts` and
/// `seed` always give the same records; each table draws from its own stream of the
/// seed, so the first residents stay the same when only another count changes.
pub async fn create_demo_databases(
    dir: &Path,
    counts: &DemoCounts,
    seed: u64,
) -> Result<DemoSamples, ConnectorError> {
    let key = demo_issuer_key(seed)?;
    let data = generate::generate(counts, seed, &key)?;
    tokio::fs::create_dir_all(dir).await?;
    let sources = demo_sources();
    let file = |d: &str| {
        sources
            .iter()
            .find(|s| s.dataset == d)
            .map(|s| dir.join(s.file))
            .ok_or_else(|| ConnectorError::Config(format!("no demo source for {d}")))
    };
    let (population, legal_person, e_license, social_insurance) = (
        file("population")?,
        file("legal_person")?,
        file("e_license")?,
        file("social_insurance")?,
    );
    // Four files, four connections, each on its own SQLite worker thread.
    tokio::try_join!(
        store::write_residents(&population, &data.residents),
        store::write_legal_persons(&legal_person, &data.legal_persons),
        store::write_licenses(&e_license, &data.licenses),
        store::write_contributions(&social_insurance, &data.contributions),
    )?;
    Ok(DemoSamples {
        residents: first_ids(data.residents.iter().map(|r| &r.id)),
        credit_codes: first_ids(data.legal_persons.iter().map(|l| &l.code)),
        license_ids: first_ids(data.licenses.iter().map(|l| &l.id)),
        absent_resident: data.absent_resident,
        absent_credit_code: data.absent_credit_code,
        absent_license_id: data.absent_license_id,
        insured_residents: first_ids(data.contributions.iter().map(|c| &c.resident_id)),
        birth_certificate: first_of_kind(&data.licenses, BIRTH_CERTIFICATE)
            .map(|l| l.id.clone())
            .unwrap_or_default(),
        licensed_company: first_of_kind(&data.licenses, BUSINESS_LICENCE)
            .and_then(|l| l.record.get("holder_id"))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
        issuer_public_key: key.public_key().as_ref().to_vec(),
    })
}

/// The raw Ed25519 public key of the demo issuer for `seed`, the key that verifies
/// the `issuer_signature` of every licence [`create_demo_databases`] writes with that
/// seed. Lets a re-run reuse existing demo databases without regenerating them.
pub fn demo_issuer_public_key(seed: u64) -> Result<Vec<u8>, ConnectorError> {
    Ok(demo_issuer_key(seed)?.public_key().as_ref().to_vec())
}

/// The bytes an e-licence's `issuer_signature` signs: the RFC 8785 (JCS) canonical
/// JSON of an object holding exactly these members of `record`, with their values as
/// returned by the connector (strings, `valid_until` may be `null`):
///
/// `license_type`, `holder_id`, `holder_name`, `issuer`, `issued_on`, `valid_until`,
/// `status`, `content`, `file_sha256`
///
/// — every e_license field except `issuer_signature` itself. JCS sorts the members, so
/// the order above does not matter. Other members of `record` are ignored; a missing
/// one is an error, so verify a full record before fields are filtered or masked.
pub fn license_signing_input(record: &Record) -> Result<Vec<u8>, ConnectorError> {
    let mut signed = Record::new();
    for field in SIGNED_FIELDS {
        let value = record.get(field).ok_or_else(|| {
            ConnectorError::Data(format!("e-licence record lacks signed field {field}"))
        })?;
        signed.insert(field.to_owned(), value.clone());
    }
    serde_json_canonicalizer::to_vec(&signed)
        .map_err(|e| ConnectorError::Data(format!("canonical JSON: {e}")))
}

/// Checks a record's `issuer_signature` (base64url, no padding) against a raw
/// Ed25519 public key over [`license_signing_input`]. `false` when the signature is
/// missing, malformed or does not verify.
pub fn verify_license_signature(record: &Record, public_key: &[u8]) -> bool {
    let Some(signature) = record.get("issuer_signature").and_then(|v| v.as_str()) else {
        return false;
    };
    let Ok(signature) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    let Ok(input) = license_signing_input(record) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&input, &signature)
        .is_ok()
}

/// The demo issuer's key pair: its 32-byte Ed25519 seed is
/// SHA-256(`"tongban demo e-licence issuer v1"` ‖ seed as 8 little-endian bytes).
fn demo_issuer_key(seed: u64) -> Result<Ed25519KeyPair, ConnectorError> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"tongban demo e-licence issuer v1");
    ctx.update(&seed.to_le_bytes());
    let key_seed = ctx.finish();
    Ed25519KeyPair::from_seed_unchecked(key_seed.as_ref())
        .map_err(|e| ConnectorError::Data(format!("demo issuer key: {e}")))
}

/// `file_sha256` of a licence: hex SHA-256 of the stand-in for its OFD file, the
/// UTF-8 text `"%OFD-DEMO\n" + license_id + "\n" + content + "\n"`.
fn fake_file_sha256(license_id: &str, content: &str) -> String {
    let file = format!("%OFD-DEMO\n{license_id}\n{content}\n");
    hex::encode(digest::digest(&digest::SHA256, file.as_bytes()))
}

fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn first_of_kind<'a>(
    licenses: &'a [generate::License],
    kind: &str,
) -> Option<&'a generate::License> {
    licenses
        .iter()
        .find(|l| l.record.get("license_type").and_then(|v| v.as_str()) == Some(kind))
}

fn first_ids<'a>(ids: impl Iterator<Item = &'a String>) -> Vec<String> {
    ids.take(SAMPLES_PER_KIND).cloned().collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
