//! The errors a request can end in. Each knows its HTTP status and problem type; the
//! rendering to problem+json lives in `http::respond`, the only place that does it.

use connectors::ids::IdError;
use connectors::{ConnectorError, ErrorOrigin};
use http::StatusCode;
use policy::Denial;

/// Why a request was not answered with a record.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The request body or a header is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// A well-formed body whose member breaks a rule JSON Schema cannot state (between
    /// members, against the catalogue or the request it narrows): 422, the problem
    /// naming the member as `field`.
    #[error("{field}: {message}")]
    Invalid {
        /// The member at fault (`fields.ethnicity`, `valid_until`, `reason`, …).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// An access request is missing (404) or no longer submitted (409).
    #[error("{0}")]
    Request(policy::RequestRefusal),
    /// A member of an agreement breaks a rule (`matters`, `fields.ethnicity`, …):
    /// 400 as any bad agreement, the problem naming the member as `field`, so a
    /// form can show the error beside its input.
    #[error("{detail}")]
    InvalidField {
        /// The member at fault, as the rule names it.
        field: String,
        /// The whole message.
        detail: String,
    },
    /// A console form posted without this session's token, or from another origin:
    /// browsers send client certificates by themselves, so only the token and the
    /// `Origin` tell the console's own forms from another site's.
    #[error("{0}")]
    Csrf(&'static str),
    /// The subject identifier breaks a rule of its standard.
    #[error("subject {subject:?} is not a valid {kind}: {error}")]
    InvalidIdentifier {
        /// What kind of identifier was expected.
        kind: String,
        /// The subject as sent.
        subject: String,
        /// The rule it breaks.
        error: IdError,
    },
    /// `X-Operator-Id` missing or malformed.
    #[error("{0}")]
    Operator(String),
    /// Policy refused.
    #[error("{0}")]
    Forbidden(Denial),
    /// The subject is not in the source.
    #[error("no {dataset} record for this subject")]
    NotFound {
        /// Dataset asked.
        dataset: String,
    },
    /// No such endpoint.
    #[error("no endpoint {0}")]
    NoRoute(String),
    /// Endpoint exists, method does not; the `Allow` header lists `allow`.
    #[error("method {method} is not allowed here; allowed: {}", allowed(allow))]
    Method {
        /// The method as sent.
        method: String,
        /// The methods the path serves.
        allow: Vec<http::Method>,
    },
    /// A body that is not `application/json` on an endpoint that reads JSON.
    #[error("{0}")]
    MediaType(String),
    /// Body too large.
    #[error("request body exceeds {0} bytes")]
    TooLarge(usize),
    /// The dataset is not served by this gateway.
    #[error("dataset {0} is not served by this gateway")]
    NotServed(String),
    /// The source failed.
    #[error("source failed: {message}")]
    Upstream {
        /// Where the failure came from.
        origin: ErrorOrigin,
        /// The connector's message (audited, never sent to the caller).
        message: String,
    },
    /// A bundle item could not be tried because the item it takes its subject from
    /// failed or did not give one.
    #[error("{0}")]
    Dependency(String),
    /// The caller's identity does not hold the role the endpoint requires.
    #[error("this endpoint requires the {0} role")]
    RoleRequired(&'static str),
    /// An agreement or role change was refused: the id exists (409), it or the
    /// binding does not (404), or the caller may not act on that department's
    /// dataset or identity (403).
    #[error("{0}")]
    Refused(policy::Refusal),
    /// The audit store could not record the request: nothing is answered.
    #[error("the audit log cannot record this request now; nothing is answered without a record")]
    AuditUnavailable,
    /// Too many requests in flight.
    #[error("the gateway is overloaded; retry shortly")]
    Overloaded,
    /// The caller's identity already uses its whole share of connections or requests
    /// in flight, so that one client cannot starve the others.
    #[error("this client identity already has {limit} {what} open; retry when one ends")]
    ShareExceeded {
        /// `requests` or `connections`.
        what: &'static str,
        /// The share (`[limits] max_requests_per_identity` or
        /// `max_connections_per_identity`).
        limit: usize,
    },
    /// The request body arrived slower than the minimum rate.
    #[error("the request body arrived slower than {0} bytes per second")]
    BodyTooSlow(u64),
    /// hyper's HTTP/1 parser refused the request head; nothing of it reached a layer.
    #[error("{0}")]
    HeadRefused(HeadRefusal),
    /// A bug or an unexpected internal failure.
    #[error("internal error")]
    Internal(String),
}

/// Why the HTTP/1 parser refused a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadRefusal {
    /// A malformed request line or header: a control character, NUL or bare LF, a
    /// header name or value outside the grammar.
    #[error("the request head is malformed (a control character, NUL or bare LF, or a line outside the HTTP grammar)")]
    Malformed,
    /// The head is larger than the parser takes.
    #[error("the request head is larger than the gateway reads")]
    TooLarge,
    /// The request target is longer than the parser takes.
    #[error("the request target (URI) is longer than the gateway reads")]
    UriTooLong,
}

/// `allow` as the `Allow` header gives it: `GET, POST`.
pub fn allowed(allow: &[http::Method]) -> String {
    allow
        .iter()
        .map(http::Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<ConnectorError> for ApiError {
    fn from(e: ConnectorError) -> Self {
        ApiError::Upstream {
            origin: e.origin(),
            message: e.to_string(),
        }
    }
}

impl ApiError {
    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_)
            | ApiError::InvalidField { .. }
            | ApiError::InvalidIdentifier { .. }
            | ApiError::Operator(_) => StatusCode::BAD_REQUEST,
            // A counted limit (daily quota, operator rate): retry later.
            ApiError::Forbidden(d) if d.is_limit() => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Forbidden(_) | ApiError::RoleRequired(_) | ApiError::Csrf(_) => {
                StatusCode::FORBIDDEN
            }
            ApiError::Refused(r) => match r {
                policy::Refusal::Exists(_) => StatusCode::CONFLICT,
                policy::Refusal::Missing(_) | policy::Refusal::NoBinding { .. } => {
                    StatusCode::NOT_FOUND
                }
                policy::Refusal::NotPermitted(_) => StatusCode::FORBIDDEN,
            },
            ApiError::NotFound { .. } | ApiError::NoRoute(_) | ApiError::NotServed(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Request(r) => match r {
                policy::RequestRefusal::Missing(_) => StatusCode::NOT_FOUND,
                policy::RequestRefusal::NotPending { .. } => StatusCode::CONFLICT,
            },
            ApiError::Method { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::MediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Upstream { origin, .. } => match origin {
                ErrorOrigin::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                ErrorOrigin::Timeout => StatusCode::GATEWAY_TIMEOUT,
                ErrorOrigin::Upstream => StatusCode::BAD_GATEWAY,
                ErrorOrigin::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Dependency(_) => StatusCode::FAILED_DEPENDENCY,
            ApiError::AuditUnavailable | ApiError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ShareExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BodyTooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::HeadRefused(r) => match r {
                HeadRefusal::Malformed => StatusCode::BAD_REQUEST,
                HeadRefusal::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                HeadRefusal::UriTooLong => StatusCode::URI_TOO_LONG,
            },
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem type slug, `type` being `/problems/<slug>`.
    pub fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) | ApiError::InvalidField { .. } => "bad-request",
            ApiError::Invalid { .. } => "unprocessable",
            ApiError::Request(r) => match r {
                policy::RequestRefusal::Missing(_) => "no-such-request",
                policy::RequestRefusal::NotPending { .. } => "request-not-pending",
            },
            ApiError::Csrf(_) => "csrf-refused",
            ApiError::InvalidIdentifier { .. } => "invalid-identifier",
            ApiError::Operator(_) => "operator-required",
            ApiError::Forbidden(d) if d.is_limit() => "limit-reached",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::RoleRequired(_) => "role-required",
            ApiError::Refused(r) => match r {
                policy::Refusal::Exists(_) => "agreement-exists",
                policy::Refusal::Missing(_) => "no-such-agreement",
                policy::Refusal::NoBinding { .. } => "no-such-binding",
                policy::Refusal::NotPermitted(_) => "not-permitted",
            },
            ApiError::NotFound { .. } => "not-found",
            ApiError::NoRoute(_) => "no-such-endpoint",
            ApiError::Method { .. } => "method-not-allowed",
            ApiError::MediaType(_) => "unsupported-media-type",
            ApiError::TooLarge(_) => "payload-too-large",
            ApiError::NotServed(_) => "dataset-not-served",
            ApiError::Upstream { origin, .. } => match origin {
                ErrorOrigin::Unavailable => "upstream-unavailable",
                ErrorOrigin::Timeout => "upstream-timeout",
                ErrorOrigin::Upstream => "upstream-bad-answer",
                ErrorOrigin::Internal => "connector-misconfigured",
            },
            ApiError::Dependency(_) => "dependency-failed",
            ApiError::AuditUnavailable => "audit-unavailable",
            ApiError::Overloaded => "overloaded",
            ApiError::ShareExceeded { .. } => "share-exceeded",
            ApiError::BodyTooSlow(_) => "body-too-slow",
            ApiError::HeadRefused(r) => match r {
                HeadRefusal::Malformed => "malformed-head",
                HeadRefusal::TooLarge => "head-too-large",
                HeadRefusal::UriTooLong => "uri-too-long",
            },
            ApiError::Internal(_) => "internal",
        }
    }

    /// The short, stable title.
    pub fn title(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) | ApiError::InvalidField { .. } => "Malformed request",
            ApiError::Invalid { .. } => "A member breaks a rule",
            ApiError::Request(r) => match r {
                policy::RequestRefusal::Missing(_) => "No such access request",
                policy::RequestRefusal::NotPending { .. } => "Access request already decided",
            },
            ApiError::Csrf(_) => "Cross-site request refused",
            ApiError::InvalidIdentifier { .. } => "Invalid identifier",
            ApiError::Operator(_) => "Operator required",
            ApiError::Forbidden(d) if d.is_limit() => "Sharing agreement limit reached",
            ApiError::Forbidden(_) => "Not allowed by any sharing agreement",
            ApiError::RoleRequired(_) => "Role required",
            ApiError::Refused(r) => match r {
                policy::Refusal::Exists(_) => "Agreement exists",
                policy::Refusal::Missing(_) => "No such agreement",
                policy::Refusal::NoBinding { .. } => "No such role binding",
                policy::Refusal::NotPermitted(_) => "Not permitted",
            },
            ApiError::NotFound { .. } => "Record not found",
            ApiError::NoRoute(_) => "No such endpoint",
            ApiError::Method { .. } => "Method not allowed",
            ApiError::MediaType(_) => "Unsupported media type",
            ApiError::TooLarge(_) => "Request too large",
            ApiError::NotServed(_) => "Dataset not served",
            ApiError::Upstream { origin, .. } => match origin {
                ErrorOrigin::Unavailable => "Source unavailable",
                ErrorOrigin::Timeout => "Source timed out",
                ErrorOrigin::Upstream => "Source gave a bad answer",
                ErrorOrigin::Internal => "Source failed",
            },
            ApiError::Dependency(_) => "Depends on a failed item",
            ApiError::AuditUnavailable => "Audit log unavailable",
            ApiError::Overloaded => "Overloaded",
            ApiError::ShareExceeded { .. } => "Client over its share",
            ApiError::BodyTooSlow(_) => "Request body too slow",
            ApiError::HeadRefused(r) => match r {
                HeadRefusal::Malformed => "Malformed request head",
                HeadRefusal::TooLarge => "Request head too large",
                HeadRefusal::UriTooLong => "Request target too long",
            },
            ApiError::Internal(_) => "Internal error",
        }
    }

    /// Extra problem members: the broken rule of an identifier, the policy reason.
    pub fn extension(&self) -> Option<(&'static str, String)> {
        match self {
            ApiError::InvalidIdentifier { error, .. } => Some(("rule", error.rule().to_owned())),
            ApiError::Forbidden(d) => Some(("reason", d.code().to_owned())),
            ApiError::Invalid { field, .. } | ApiError::InvalidField { field, .. } => {
                Some(("field", field.clone()))
            }
            ApiError::Request(policy::RequestRefusal::NotPending { state, .. }) => {
                Some(("state", state.as_str().to_owned()))
            }
            _ => None,
        }
    }

    /// What the audit record gives as reason. The caller receives its own record in
    /// the answer's receipt, so a record says only what the caller may see: for
    /// upstream and internal failures the kind, not the details ([`Self::internals`]
    /// go to the gateway's log under the request id).
    pub fn audit_reason(&self) -> String {
        match self {
            ApiError::Upstream { .. } | ApiError::Internal(_) => {
                format!("{}: {}", self.slug(), self.title())
            }
            ApiError::Forbidden(d) => format!("{}: {d}", d.code()),
            other => other.to_string(),
        }
    }

    /// Details of an upstream or internal failure that neither the caller nor its
    /// record may hold: a source's address, a file, a driver's message.
    pub fn internals(&self) -> Option<&str> {
        match self {
            ApiError::Upstream { message, .. } | ApiError::Internal(message) => Some(message),
            _ => None,
        }
    }
}
