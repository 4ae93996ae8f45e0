//! Data sources for Tongban: the [`Connector`] trait, a SQL connector, validation of
//! the identifiers that key each [`Dataset`], and the synthetic demo databases.
//!
//! This crate knows nothing of HTTP: the gateway validates a subject with
//! [`Dataset::validate_subject`], picks the connector bound to the dataset and calls
//! [`Connector::lookup`].

pub mod dataset;
pub mod demo;
mod error;
pub mod ids;
pub mod sql;

pub use dataset::Dataset;
pub use error::{ConnectorError, ErrorOrigin};

/// A record as returned by a connector: field name → JSON value (strings, numbers,
/// null).
pub type Record = serde_json::Map<String, serde_json::Value>;

/// A data source that serves records of one or more datasets.
///
/// `lookup` is the one required method; `health` has a default that always
/// succeeds, for sources without a cheap probe. Time-outs, retries and load shedding
/// are the gateway's layers, applied to every connector the same way.
#[async_trait::async_trait]
pub trait Connector: Send + Sync + 'static {
    /// Name of this connector as configured (e.g. "population-db"); shown in responses.
    fn name(&self) -> &str;

    /// Fetch the record of `subject` (already validated) in `dataset`. `Ok(None)` when
    /// absent.
    async fn lookup(
        &self,
        dataset: Dataset,
        subject: &str,
    ) -> Result<Option<Record>, ConnectorError>;

    /// Cheap reachability probe for `/readyz`. Default `Ok(())`.
    async fn health(&self) -> Result<(), ConnectorError> {
        Ok(())
    }
}
