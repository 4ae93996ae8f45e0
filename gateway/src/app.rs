//! Everything a running gateway holds, built once from the config.

use std::collections::HashMap;
use std::sync::Arc;

use audit::signing::Signer;
use audit::{AuditLog, AuditSettings};
use connectors::Dataset;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::shares::Shares;
use crate::sources::Route;
use crate::start_error::StartError;

/// The gateway's parts, shared by every connection.
pub struct App {
    /// The validated config.
    pub config: Config,
    /// Response signer.
    pub signer: Arc<Signer>,
    /// Agreements: store, authorizer, quota meter, catalogue, change follower.
    pub policy: Arc<crate::policy_sync::PolicyService>,
    /// Access requests and their review, over the same policy.
    pub requests: Arc<crate::requests::Requests>,
    /// Audit chain writer.
    pub audit: AuditLog,
    /// Dataset → source.
    pub routes: Arc<HashMap<Dataset, Route>>,
    /// Server TLS config, reloaded when its files change or on SIGHUP.
    pub tls: Arc<crate::tls::ServerTls>,
    /// Requests in flight, bounded.
    pub in_flight: Arc<Semaphore>,
    /// Connections each client identity holds.
    pub connection_shares: Arc<Shares>,
    /// Requests each client identity has in flight.
    pub request_shares: Arc<Shares>,
    /// Counters and histograms behind `/metrics` (and OTLP when configured).
    pub metrics: Metrics,
    /// How far each witness has cosigned the audit log.
    pub witnesses: crate::witness_submit::Witnesses,
    /// The auditor API's reports (citizen report, anomalies, stats, health).
    pub reports: crate::http::audit_reports::Reports,
    /// The web console.
    pub console: Arc<crate::console::Console>,
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
        let requests = Arc::new(crate::requests::Requests::new(Arc::clone(&policy), &config));
        metrics.observe_overdue_requests(requests.overdue_gauge());
        let audit = AuditLog::open(
            &crate::audit_config::database(&config.state_db),
            Arc::clone(&signer),
            AuditSettings {
                metrics: Some(Arc::new(metrics.clone())),
                ..crate::audit_config::settings(&config)
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
        let connection_shares = Shares::new(config.limits.max_connections_per_identity);
        let request_shares = Shares::new(config.limits.max_requests_per_identity);
        let witnesses = crate::witness_submit::Witnesses::default();
        metrics.observe_witnesses(witnesses.clone());
        let rules = crate::audit_config::anomaly_rules(&config, None).unwrap_or_else(|e| {
            // The certificate index is optional for the report: without it the
            // revoked-certificate rule sees only refusals, as documented.
            tracing::warn!(error = %e, "anomaly rules: the revoked-certificate index is not read");
            let mut c = config.clone();
            c.audit.anomaly.revoked_index = None;
            crate::audit_config::anomaly_rules(&c, None).unwrap_or_default()
        });
        let reports = crate::http::audit_reports::Reports {
            log: audit.clone(),
            authorizer: Arc::clone(&policy.authorizer),
            rules: Arc::new(rules),
        };
        let console = Arc::new(crate::console::Console::new(
            Arc::clone(&policy),
            audit.clone(),
            reports.clone(),
            Arc::clone(&requests),
            Arc::new(crate::http::usage::providers(&config)),
            signer.public_key().to_vec(),
            crate::http::body::BodyLimits::from(&config.limits),
        )?);
        Ok(Self {
            config,
            signer,
            policy,
            requests,
            audit,
            routes,
            tls,
            in_flight,
            connection_shares,
            request_shares,
            metrics,
            witnesses,
            reports,
            console,
        })
    }
}
