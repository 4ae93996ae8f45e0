//! Why the gateway could not start.

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// TLS files.
    #[error("TLS: {0}")]
    Tls(#[from] certs::CertError),
    /// Signing key.
    #[error("signing key: {0}")]
    Signing(#[from] audit::signing::SigningError),
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
    Audit(#[from] audit::AuditError),
    /// A source.
    #[error("source {name}: {source}")]
    Source {
        /// Source name.
        name: String,
        /// Why.
        source: connectors::ConnectorError,
    },
    /// The web console.
    #[error("console: {0}")]
    Console(#[from] crate::console::ConsoleError),
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
