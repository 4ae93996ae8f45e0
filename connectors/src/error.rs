//! The crate's one error type.

/// Where a [`ConnectorError`] came from, for mapping to a response status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorOrigin {
    /// The data source could not be reached in time (pool time-out, connection refused):
    /// usually a gateway time-out or "service unavailable" for the caller.
    Unavailable,
    /// The data source did not answer within the time allowed: a gateway time-out.
    Timeout,
    /// The data source answered with an error, or with an answer that cannot be read
    /// (bad query, unsupported column type, malformed JSON): a bad gateway.
    Upstream,
    /// Configuration or local problems (bad URL, missing binding, file system).
    Internal,
}

/// Failure of a connector or of the demo-data generator.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The source could not be reached: connect failure, pool closed, or time-out
    /// acquiring a connection (how a down server shows).
    #[error("data source unavailable: {0}")]
    Unavailable(String),
    /// The source did not answer in time (the gateway's time-out, or the connector's
    /// own connect time-out).
    #[error("data source timed out: {0}")]
    Timeout(String),
    /// The source answered with an error, or its answer could not be mapped to a record.
    #[error("query failed: {0}")]
    Query(String),
    /// The connector is misconfigured (bad URL, unknown field, dataset not bound).
    #[error("connector configuration: {0}")]
    Config(String),
    /// A record could not be encoded (e.g. for signing).
    #[error("record encoding: {0}")]
    Data(String),
    /// File-system failure (demo databases).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl ConnectorError {
    /// Where the failure came from.
    pub fn origin(&self) -> ErrorOrigin {
        match self {
            ConnectorError::Unavailable(_) => ErrorOrigin::Unavailable,
            ConnectorError::Timeout(_) => ErrorOrigin::Timeout,
            ConnectorError::Query(_) => ErrorOrigin::Upstream,
            ConnectorError::Config(_) | ConnectorError::Data(_) | ConnectorError::Io(_) => {
                ErrorOrigin::Internal
            }
        }
    }

    /// Whether trying again may succeed: the source could not be reached or said it
    /// is briefly unavailable. Time-outs are not transient in this sense — retrying a
    /// slow source only adds load to it — and neither are bad answers or
    /// configuration errors.
    pub fn is_transient(&self) -> bool {
        matches!(self, ConnectorError::Unavailable(_))
    }
}

impl From<sqlx::Error> for ConnectorError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match e {
            E::PoolTimedOut => {
                ConnectorError::Unavailable("timed out acquiring a connection".to_owned())
            }
            E::PoolClosed => ConnectorError::Unavailable("connection pool closed".to_owned()),
            E::Io(_) | E::Tls(_) | E::WorkerCrashed | E::Protocol(_) => {
                ConnectorError::Unavailable(e.to_string())
            }
            E::Configuration(_) => ConnectorError::Config(e.to_string()),
            _ => ConnectorError::Query(e.to_string()),
        }
    }
}
