//! The engine's error type. Every variant names the object at fault so that a message alone
//! tells the user what to fix; the server maps variants to gRPC codes in one place.

use crate::measure::hll::SketchError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        kind: &'static str,
        name: String,
        reason: String,
    },
    #[error("{kind} {name} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} {name} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    /// A check-and-put lost a race: someone else changed the resource first.
    #[error("conflict on {path}: expected version {expected:?}, found {actual:?}")]
    Conflict {
        path: String,
        expected: Option<u64>,
        actual: Option<u64>,
    },
    /// A model, cube or table descriptor that cannot be used; `what` names it.
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    /// The request is understood but refused in the current state (e.g. overlapping segment).
    #[error("{0}")]
    Refused(String),
    /// Stored bytes that fail their checksum or cannot be decoded.
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: String, detail: String },
    /// A job was discarded or lost ownership while it ran.
    #[error("job {job} stopped: {reason}")]
    JobStopped { job: String, reason: String },
    /// SQL the user wrote that cannot be parsed or planned (unknown column, bad syntax, ...).
    #[error("{0}")]
    Sql(String),
    /// No cube can answer the query and pushdown is off (Kylin's "No realization found").
    #[error("no realization found for the query: {0}")]
    NoRealization(String),
    /// Too much work at once; the client should retry later.
    #[error("{0}")]
    Overloaded(String),
    /// The storage backend (HBase) could not be reached, even after retries.
    #[error("{what}: storage unavailable: {detail}")]
    Unavailable { what: String, detail: String },
    /// The storage backend (HBase) reported an error for a request.
    #[error("{what}: {detail}")]
    Backend { what: String, detail: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{what}: malformed JSON: {source}")]
    Json {
        what: String,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Sketch(#[from] SketchError),
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn io_path(action: &str, path: &std::path::Path, source: std::io::Error) -> Self {
        Error::io(format!("{action} {}", path.display()), source)
    }

    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            what: what.into(),
            detail: detail.into(),
        }
    }
}
