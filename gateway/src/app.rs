//! Everything a running gateway holds, built once from the config.

use std::collections::HashMap;
use std::sync::Arc;

use connectors::Dataset;
use policy::{AgreementStore, Authorizer};
use tokio::sync::Semaphore;

use crate::audit::{AuditLog, AuditSettings};
use crate::config::Config;
use crate::http::fetch::Route;
use crate::metrics::Metrics;
use crate::signing::Signer;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// TLS files.
    #[error("TLS: {0}")]
    Tls(#[from] certs::CertError),
    /// Signing key.
    #[error("signing key: {0}")]
    Signing(#[from] crate::signing::SigningError),
    /// State database.
    #[error("state database {path}: {source}")]
    State {
        /// The database file.
        path: String,
        /// Why.
        source: sqlx::Error,
    },
    /// Agreements.
    #[error("policy: {0}")]
    Policy(#[from] policy::PolicyError),
    /// Audit log.
    #[error("audit log: {0}")]
    Audit(#[from] crate::audit::AuditError),
    /// A source.
    #[error("source {name}: {source}")]
    Source {
        /// Source name.
        name: String,
        /// Why.
        source: connectors::ConnectorError,
    },
    /// The metrics exporter.
    #[error("{0}")]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    /// Binding a listener.
    #[error("listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The gateway's parts, shared by every connection.
pub struct App {
    /// The validated config.
    pub config: Config,
    /// Response signer.
    pub signer: Arc<Signer>,
    /// Policy decisions.
    pub authorizer: Arc<Authorizer>,
    /// Agreement storage.
    pub agreements: AgreementStore,
    /// Agreements: store, authorizer, quota meter, catalogue, change follower.
    pub policy: Arc<crate::policy_sync::PolicyService>,
    /// Audit chain writer.
    pub audit: AuditLog,
    /// Dataset → source.
    pub routes: Arc<HashMap<Dataset, Route>>,
    /// Server TLS config, reloaded when its files change or on SIGHUP.
    pub tls: Arc<crate::tls::ServerTls>,
    /// Requests in flight, bounded.
    pub in_flight: Arc<Semaphore>,
    /// Counters and histograms behind `/metrics` (and OTLP when configured).
    pub metrics: Metrics,
}

impl App {
    /// Build every part from `config`; fails on the first part that cannot start.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let metrics = Metrics::with_otlp(&config.telemetry.otlp_endpoint)?;
        let tls_metrics = Arc::new(crate::tls::TlsMetrics::default());
        metrics.observe_tls(Arc::clone(&tls_metrics));
        let tls = Arc::new(crate::tls::ServerTls::server(&config, tls_metrics)?);
        let signer = Arc::new(Signer::load(&config.signing_key)?);
        let policy = Arc::new(crate::policy_sync::PolicyService::open(&config).await?);
        let agreements = policy.store.clone();
        let authorizer = Arc::clone(&policy.authorizer);
        let audit = AuditLog::open(
            &config.state_db,
            Arc::clone(&signer),
            AuditSettings {
                metrics: Some(metrics.clone()),
                ..AuditSettings::from_config(&config)
            },
        )
        .await?;
        let routes = Arc::new(crate::sources::connect(&config).await?);
        metrics.observe_breakers(
            routes
                .values()
                .map(|r| (r.source.name().to_owned(), r.source.breaker().clone()))
                .collect(),
        );
        let in_flight = Arc::new(Semaphore::new(config.limits.max_concurrent_requests));
        Ok(Self {
            config,
            signer,
            authorizer,
            agreements,
            policy,
            audit,
            routes,
            tls,
            in_flight,
            metrics,
        })
    }
}
