//! The service layer's one error type. Messages are built from fixed text and
//! element paths only, never from request values, because they reach clients
//! and logs. The HTTP edge maps each variant to a status and an
//! OperationOutcome exactly once (`http::error_response`).

use crate::fhir::outcome::Issue;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("authentication failed: {0}")]
    Unauthenticated(&'static str),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("resource deleted")]
    Gone,
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    #[error("precondition required: {0}")]
    PreconditionRequired(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("payload too large (limit {0} bytes)")]
    PayloadTooLarge(usize),
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// A document whose content type is not allowed or does not match its bytes.
    #[error("unsupported content: {0}")]
    UnsupportedContent(String),
    /// A document too large for the way it was sent or asked for.
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("range not satisfiable")]
    RangeNotSatisfiable(u64),
    #[error("not acceptable")]
    NotAcceptable,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("invalid resource ({} issues)", .0.len())]
    Invalid(Vec<Issue>),
    /// A request that is not well formed, with each problem at its element
    /// (a Bundle's entries): 400, where an invalid resource is 422.
    #[error("malformed request ({} issues)", .0.len())]
    Malformed(Vec<Issue>),
    /// An entry of a transaction Bundle failed, and with it the whole
    /// transaction: the entry's own status and OperationOutcome, its
    /// issues located in the Bundle.
    #[error("transaction entry {index} failed with {status}")]
    EntryFailed { index: usize, status: u16, outcome: serde_json::Value },
    #[error("throttled")]
    Throttled,
    /// A request whose work would pass a configured bound (400, too-costly).
    #[error("too costly: {0}")]
    TooCostly(String),
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The HTTP status this error answers with. It lives with the error, not
    /// at the edge, because the audit records it too: a read refused inside
    /// a background function is audited with the status the API would give.
    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest(_) | Error::Malformed(_) | Error::TooCostly(_) => 400,
            Error::Unauthenticated(_) => 401,
            Error::Forbidden(_) => 403,
            Error::NotFound => 404,
            Error::MethodNotAllowed => 405,
            Error::NotAcceptable => 406,
            Error::Conflict(_) => 409,
            Error::Gone => 410,
            Error::PreconditionFailed(_) => 412,
            Error::PayloadTooLarge(_) | Error::TooLarge(_) => 413,
            Error::UnsupportedMediaType | Error::UnsupportedContent(_) => 415,
            Error::RangeNotSatisfiable(_) => 416,
            Error::Invalid(_) => 422,
            Error::PreconditionRequired(_) => 428,
            Error::Throttled => 429,
            Error::EntryFailed { status, .. } => *status,
            Error::Internal(_) => 500,
            Error::Unavailable(_) => 503,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A setting that is missing or invalid at cold start: the function refuses
/// to start rather than run misconfigured.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing required setting {0}")]
    Missing(&'static str),
    #[error("setting {0} is invalid: {1}")]
    Invalid(&'static str, String),
}

/// Errors of the ports (storage, keys). Adapters translate SDK errors into
/// these so that the service layer never sees AWS types.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// A conditional write lost: the item changed or already exists.
    #[error("condition failed on item {0}")]
    ConditionFailed(usize),
    #[error("throttled by {0}")]
    Throttled(&'static str),
    #[error("{service} call failed: {detail}")]
    Backend { service: &'static str, detail: String },
    #[error("stored data is corrupt or was tampered with: {0}")]
    Integrity(String),
    /// The changes need more items than one transaction holds.
    #[error("{items} items exceed one transaction's {limit}")]
    TooLarge { items: usize, limit: usize },
    /// An item the change needs exceeds the store's item size.
    #[error("an item exceeds the store's item size")]
    ItemTooLarge,
}

impl From<PortError> for Error {
    fn from(e: PortError) -> Self {
        match e {
            PortError::ConditionFailed(_) => Error::Conflict("concurrent modification".into()),
            PortError::Throttled(_) => Error::Throttled,
            // The detail is an error code or medrec's own words, never
            // request contents: the log line of a 503 says what failed.
            PortError::Backend { service, detail } => Error::Unavailable(format!("{service}: {detail}")),
            PortError::Integrity(what) => Error::Internal(format!("integrity check failed: {what}")),
            PortError::TooLarge { items, limit } => Error::TooCostly(format!(
                "the changes need {items} storage items and one atomic commit holds {limit}; send fewer entries"
            )),
            PortError::ItemTooLarge => Error::TooLarge(
                "a resource this large cannot be changed within a large transaction; change it alone or in a smaller one"
                    .into(),
            ),
        }
    }
}
