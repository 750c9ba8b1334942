//! The one place where engine errors become gRPC statuses: the engine decides whose fault an
//! error is ([`Error::kind`]), this table gives each kind its code. Clients act on the code
//! (retry on ResourceExhausted and Unavailable, fix the query on InvalidArgument).

use qilin_engine::error::ErrorKind;
use qilin_engine::Error;
use tonic::{Code, Status};

/// The gRPC code of each kind of error.
pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::User => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::Conflict => Code::Aborted,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Overloaded => Code::ResourceExhausted,
        // The shared store is down: the client may retry (on this or another instance).
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Corrupt | ErrorKind::Internal => Code::Internal,
    }
}

/// Maps an engine error to the status a client sees. The message is the error's own text,
/// which names the object at fault.
pub fn from_engine(e: &Error) -> Status {
    let msg = e.to_string();
    let code = code(e.kind());
    if code == Code::Internal {
        log::error!("internal error answered to a client: {msg}");
    }
    Status::new(code, msg)
}

/// An Arrow error while encoding or decoding client data: the client sent something we
/// cannot read (decode) — InvalidArgument — unless it happened on our side of the wire.
pub fn bad_request(what: &str, e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{what}: {e}"))
}

/// A failure on the server's side that is not the engine's (encoding results, for example).
pub fn internal(what: &str, e: impl std::fmt::Display) -> Status {
    log::error!("{what}: {e}");
    Status::internal(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn user_mistakes_are_invalid_argument() {
        for e in [
            Error::Sql("column x not found".into()),
            Error::NoRealization(qilin_engine::query::Uncovered::Column {
                column: "x".into(),
                cube: None,
            }),
            Error::invalid("model m", "bad"),
            Error::Refused("no".into()),
        ] {
            assert_eq!(from_engine(&e).code(), Code::InvalidArgument, "{e}");
        }
    }

    #[test]
    fn other_variants_map_by_fault() {
        let nf = Error::NotFound {
            kind: "table",
            name: "ssb.nope".into(),
        };
        let s = from_engine(&nf);
        assert_eq!(s.code(), Code::NotFound);
        assert!(s.message().contains("ssb.nope"));
        assert_eq!(
            from_engine(&Error::Overloaded("busy".into())).code(),
            Code::ResourceExhausted
        );
        assert_eq!(
            from_engine(&Error::corrupt("block 3", "crc")).code(),
            Code::Internal
        );
    }

    #[test]
    fn every_kind_has_its_code() {
        assert_eq!(code(ErrorKind::Unavailable), Code::Unavailable);
        assert_eq!(code(ErrorKind::Conflict), Code::Aborted);
        assert_eq!(code(ErrorKind::AlreadyExists), Code::AlreadyExists);
        assert_eq!(code(ErrorKind::Corrupt), Code::Internal);
    }
}
