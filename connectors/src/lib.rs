//! Data sources for Tongban: the [`Connector`] trait, a SQL connector (SQLite,
//! PostgreSQL, MySQL/MariaDB), an HTTP connector (a department's REST API over mutual
//! TLS), validation of the identifiers that key each [`Dataset`] ([`SubjectKind`]),
//! the check of an e-licence's issuer signature, and the synthetic demo databases.
//!
//! Which datasets exist, and what keys each, is the gateway's configuration; this
//! crate serves no HTTP: the gateway validates a subject with
//! [`SubjectKind::validate`], picks the connector bound to the dataset and calls
//! [`Connector::lookup`] (through its resilience layers, which are the gateway's).

pub mod dataset;
pub mod demo;
mod error;
pub mod http;
pub mod ids;
pub mod license;
pub mod sql;
mod sqlite_direct;

pub use dataset::{BadPattern, Dataset, SubjectKind, SubjectPattern};
pub use error::{ConnectorError, ErrorOrigin};
pub use license::{IssuerKeys, Verification};

/// A record as returned by a connector: field name → JSON value (strings, numbers,
/// null).
pub type Record = serde_json::Map<String, serde_json::Value>;

/// How a record is found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// By the dataset's subject identifier, checked with [`SubjectKind::validate`].
    Subject(String),
    /// An e-licence by its holder (resident ID number or credit code) and licence type,
    /// e.g. a company's `营业执照`: the second e_license key of the design.
    Holder {
        /// Resident ID number or unified social credit code of the holder.
        holder_id: String,
        /// The licence type, as the source names it.
        license_type: String,
    },
}

/// A key that cannot be used for the dataset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The subject breaks a rule of its identifier standard.
    #[error(transparent)]
    Identifier(#[from] ids::IdError),
    /// Holder keys only find e-licences (datasets keyed by e-license identifier).
    #[error("records keyed by {0} are not looked up by holder")]
    HolderNotSupported(&'static str),
    /// The licence type is empty, too long or holds control characters.
    #[error("license type must be 1-64 printable characters")]
    LicenseType,
}

/// One lookup: a dataset and a key. The request type of the gateway's resilience
/// layers, so it is cheap to clone for retries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Query {
    /// The dataset asked.
    pub dataset: Dataset,
    /// How to find the record.
    pub key: Key,
}

impl Key {
    /// The identifier the record is about, as audit records name it: the subject, or
    /// the holder.
    pub fn subject(&self) -> &str {
        match self {
            Key::Subject(s) => s,
            Key::Holder { holder_id, .. } => holder_id,
        }
    }

    /// Checks the key against the rules of the dataset's identifiers, `kind`. A holder
    /// must be a valid resident ID number or credit code (the resident ID's error is
    /// reported when it is neither).
    pub fn validate(&self, kind: &SubjectKind) -> Result<(), KeyError> {
        match self {
            Key::Subject(s) => Ok(kind.validate(s)?),
            Key::Holder {
                holder_id,
                license_type,
            } => {
                if !kind.has_holders() {
                    return Err(KeyError::HolderNotSupported(kind.name()));
                }
                let type_ok = !license_type.is_empty()
                    && license_type.chars().count() <= 64
                    && !license_type.chars().any(char::is_control);
                if !type_ok {
                    return Err(KeyError::LicenseType);
                }
                if ids::check_credit_code(holder_id).is_ok() {
                    return Ok(());
                }
                Ok(ids::check_resident_id(holder_id)?)
            }
        }
    }
}

impl Query {
    /// A lookup of `subject` in `dataset`.
    pub fn subject(dataset: Dataset, subject: impl Into<String>) -> Self {
        Query {
            dataset,
            key: Key::Subject(subject.into()),
        }
    }

    /// Runs the query against `connector`.
    pub async fn run(&self, connector: &dyn Connector) -> Result<Option<Record>, ConnectorError> {
        match &self.key {
            Key::Subject(s) => connector.lookup(&self.dataset, s).await,
            Key::Holder {
                holder_id,
                license_type,
            } => {
                connector
                    .lookup_by_holder(&self.dataset, holder_id, license_type)
                    .await
            }
        }
    }
}

/// A data source that serves records of one or more datasets.
///
/// `lookup` is the one required method; `lookup_by_holder` defaults to "not
/// supported" and `health` to always succeeding, for sources without a cheap probe.
/// Time-outs, retries, the circuit breaker and load shedding are the gateway's tower
/// layers, applied to every connector the same way.
#[async_trait::async_trait]
pub trait Connector: Send + Sync + 'static {
    /// Name of this connector as configured (e.g. "population-db"); shown in responses.
    fn name(&self) -> &str;

    /// Fetch the record of `subject` (already validated) in `dataset`. `Ok(None)` when
    /// absent.
    async fn lookup(
        &self,
        dataset: &Dataset,
        subject: &str,
    ) -> Result<Option<Record>, ConnectorError>;

    /// Fetch the newest licence of `license_type` held by `holder_id` (see
    /// [`Key::Holder`]). `Ok(None)` when there is none. Default: a configuration error
    /// saying this connector cannot.
    async fn lookup_by_holder(
        &self,
        dataset: &Dataset,
        holder_id: &str,
        license_type: &str,
    ) -> Result<Option<Record>, ConnectorError> {
        let _ = (holder_id, license_type);
        Err(ConnectorError::Config(format!(
            "connector {} does not look up {dataset} by holder",
            self.name()
        )))
    }

    /// Cheap reachability probe for `/readyz`. Default `Ok(())`.
    async fn health(&self) -> Result<(), ConnectorError> {
        Ok(())
    }
}
