//! Connecting the configured sources: one connector per `[[sources]]` entry (a SQL
//! pool or a mutual-TLS HTTP client), each wrapped in its resilience layers, and a
//! route per dataset it serves.
//!
//! A source that is down at start does not stop the gateway: it is connected lazily,
//! logged, shown in `/readyz`, and its lookups fail with 503 until it answers. A
//! source that is misconfigured (bad URL, credentials refused at the protocol level,
//! unreadable certificates) does stop it.

use std::collections::HashMap;
use std::sync::Arc;

use connectors::http::{HttpBinding, HttpConnector, HttpSource};
use connectors::sql::{SqlBinding, SqlConnector, SqlSource};
use connectors::{Connector, ConnectorError, Dataset, IssuerKeys};

use crate::config::{Config, DatasetConfig, SourceConfig, SourceKind};
use crate::resilience::Guarded;
use crate::start_error::StartError;

/// A dataset's source and owner.
#[derive(Clone)]
pub struct Route {
    /// Owning department code.
    pub department: String,
    /// The connector serving it, behind its resilience layers.
    pub source: Guarded,
    /// E-licences: the issuer keys their signatures are checked against (`None` for
    /// datasets that carry no signature).
    pub issuer_keys: Option<IssuerKeys>,
}

/// Builds every source of `config` and routes each served dataset to its source.
pub async fn connect(config: &Config) -> Result<HashMap<Dataset, Route>, StartError> {
    let mut routes = HashMap::new();
    for s in &config.sources {
        let served: Vec<&DatasetConfig> = config
            .datasets
            .iter()
            .filter(|d| d.source == s.name)
            .collect();
        if served.is_empty() {
            tracing::warn!(source = %s.name, "source serves no dataset; not connected");
            continue;
        }
        let start_error = |source: ConnectorError| StartError::Source {
            name: s.name.clone(),
            source,
        };
        let connector: Arc<dyn Connector> = match s.kind {
            SourceKind::Sql => Arc::new(sql(s, &served).await.map_err(start_error)?),
            SourceKind::Http => Arc::new(http(s, &served).map_err(start_error)?),
        };
        let guarded = Guarded::new(connector, &s.resilience);
        for d in served {
            let issuer_keys = d.subject.has_holders().then(|| d.issuer_keys.clone());
            routes.insert(
                d.dataset.clone(),
                Route {
                    department: d.department.clone(),
                    source: guarded.clone(),
                    issuer_keys,
                },
            );
        }
    }
    Ok(routes)
}

async fn sql(s: &SourceConfig, served: &[&DatasetConfig]) -> Result<SqlConnector, ConnectorError> {
    let bindings = || -> Vec<SqlBinding> {
        served
            .iter()
            .map(|d| SqlBinding {
                dataset: d.dataset.clone(),
                query: d.query.clone(),
                holder_query: d.holder_query.clone(),
                fields: d.mapping(),
            })
            .collect()
    };
    let source = SqlSource {
        name: s.name.clone(),
        url: s.url.clone(),
        max_connections: s.max_connections,
        acquire_timeout_ms: s.acquire_timeout_ms,
    };
    match SqlConnector::connect(&source, bindings()).await {
        Ok(c) => Ok(c),
        Err(ConnectorError::Unavailable(why)) => {
            tracing::warn!(source = %s.name, reason = %why, "source unreachable at start; connecting on first use");
            SqlConnector::connect_lazy(&source, bindings())
        }
        Err(e) => Err(e),
    }
}

fn http(s: &SourceConfig, served: &[&DatasetConfig]) -> Result<HttpConnector, ConnectorError> {
    let tls = s.tls.as_ref().ok_or_else(|| {
        ConnectorError::Config("an http source needs ca, cert and key".to_owned())
    })?;
    let client = certs::client_config(
        &tls.ca,
        Some((tls.cert.as_path(), tls.key.as_path())),
        Vec::new(),
    )
    .map_err(|e| ConnectorError::Config(format!("TLS: {e}")))?;
    let bindings = served
        .iter()
        .map(|d| HttpBinding {
            dataset: d.dataset.clone(),
            path: d.path.clone().unwrap_or_default(),
            holder_path: d.holder_path.clone(),
            fields: d.mapping(),
        })
        .collect();
    let source = HttpSource {
        name: s.name.clone(),
        base_url: s.url.clone(),
        max_idle_connections: usize::try_from(s.max_connections).unwrap_or(usize::MAX),
        connect_timeout_ms: s.connect_timeout_ms,
        health_path: s.health_path.clone(),
    };
    HttpConnector::new(&source, client, bindings)
}
