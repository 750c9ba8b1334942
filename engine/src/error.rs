//! The engine's error type. Every variant names the object at fault so that a message alone
//! tells the user what to fix. [`Error::kind`] decides once whose fault an error is (the
//! user's, a missing object, load, the store, corruption, a bug); servers map kinds, not
//! variants, to protocol codes.

use datafusion::error::DataFusionError;

use crate::measure::hll::SketchError;

/// Whose fault an error is, which decides what a client should do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong (bad SQL, invalid descriptor, refused in the current state): fix it.
    User,
    /// The named object does not exist.
    NotFound,
    /// The object being created exists already.
    AlreadyExists,
    /// Someone else changed the object first, or the job lost ownership: retry from a fresh read.
    /// Also an object still in use by others (a table by a model): drop those first.
    Conflict,
    /// The caller is known but may not do this (a role it lacks, a denied table or column).
    PermissionDenied,
    /// Too much work at once: retry later.
    Overloaded,
    /// The storage backend cannot be reached: retry, here or on another instance.
    Unavailable,
    /// Stored bytes fail their checksum or cannot be decoded.
    Corrupt,
    /// A bug or an environment failure (I/O, a backend error).
    Internal,
}

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
    /// The object cannot be dropped while others use it (a table joined by a model).
    #[error("{kind} {name} is used by {used_by}; drop or change that first")]
    InUse {
        kind: &'static str,
        name: String,
        used_by: String,
    },
    /// A model, cube or table descriptor that cannot be used; `what` names it.
    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },
    /// The request is understood but refused in the current state (e.g. overlapping segment).
    #[error("{0}")]
    Refused(String),
    /// The object is in use by work in progress (a cube with an unfinished job): retry when
    /// that work is over; the message names it.
    #[error("{0}")]
    Busy(String),
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
    NoRealization(crate::uncovered::Uncovered),
    /// The caller may not do this; the message names what was refused and, for an action, the
    /// project role it needs. (A project the caller holds no role in is [`Error::NotFound`]
    /// instead, so that a refusal never confirms that it exists.)
    #[error("permission denied: {0}")]
    PermissionDenied(String),
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
    /// This error as DataFusion's, for plan nodes: ours travel as external errors and come
    /// back as themselves (see `kind`); a wrapped DataFusion error is unwrapped.
    pub fn into_datafusion(self) -> DataFusionError {
        match self {
            Error::DataFusion(e) => e,
            e => DataFusionError::External(Box::new(e)),
        }
    }

    /// Whose fault this error is. Every variant is listed (no catch-all), so a new variant
    /// must be classified where it is added; DataFusion errors by their root cause.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidName { .. }
            | Error::Invalid { .. }
            | Error::Refused(_)
            | Error::Sql(_)
            | Error::NoRealization(_)
            | Error::Config(_) => ErrorKind::User,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::Conflict { .. }
            | Error::JobStopped { .. }
            | Error::InUse { .. }
            | Error::Busy(_) => ErrorKind::Conflict,
            Error::PermissionDenied(_) => ErrorKind::PermissionDenied,
            Error::Overloaded(_) => ErrorKind::Overloaded,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::Backend { .. }
            | Error::Io { .. }
            | Error::Json { .. }
            | Error::Sketch(_)
            | Error::Arrow(_) => ErrorKind::Internal,
            Error::DataFusion(e) => datafusion_kind(e),
        }
    }

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

/// The kind of a DataFusion error, from its root cause: planning and SQL errors are the
/// user's; our own errors that travelled through DataFusion (a corrupt block read during a
/// scan) keep their kind.
pub fn datafusion_kind(e: &DataFusionError) -> ErrorKind {
    match e.find_root() {
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_) => ErrorKind::User,
        DataFusionError::ResourcesExhausted(_) => ErrorKind::Overloaded,
        DataFusionError::External(inner) => match inner.downcast_ref::<Error>() {
            Some(ours) => ours.kind(),
            None => ErrorKind::Internal,
        },
        DataFusionError::Collection(errors) => {
            errors.first().map_or(ErrorKind::Internal, datafusion_kind)
        }
        // `find_root` looks through these already; kept for exhaustiveness.
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            datafusion_kind(inner)
        }
        DataFusionError::Shared(inner) => datafusion_kind(inner),
        DataFusionError::ArrowError(..)
        | DataFusionError::ParquetError(_)
        | DataFusionError::ObjectStore(_)
        | DataFusionError::IoError(_)
        | DataFusionError::Internal(_)
        | DataFusionError::Execution(_)
        | DataFusionError::ExecutionJoin(_)
        | DataFusionError::Substrait(_)
        | DataFusionError::Ffi(_) => ErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datafusion_errors_are_classified_by_root_cause() {
        let planning =
            DataFusionError::Plan("table foo not found".into()).context("Optimizer rule x failed");
        assert_eq!(Error::DataFusion(planning).kind(), ErrorKind::User);
        let exhausted = DataFusionError::ResourcesExhausted("memory".into());
        assert_eq!(Error::DataFusion(exhausted).kind(), ErrorKind::Overloaded);
        let ours = DataFusionError::External(Box::new(Error::corrupt("block 1", "crc")));
        assert_eq!(
            Error::DataFusion(ours.context("scan")).kind(),
            ErrorKind::Corrupt
        );
        let internal = DataFusionError::Internal("oops".into());
        assert_eq!(Error::DataFusion(internal).kind(), ErrorKind::Internal);
    }
}
