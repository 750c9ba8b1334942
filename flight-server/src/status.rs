//! The one place where engine errors become gRPC statuses. Clients act on the code (retry on
//! ResourceExhausted, fix the query on InvalidArgument), so the mapping follows who is at
//! fault: the user's SQL or request → InvalidArgument, a missing object → NotFound, too much
//! load → ResourceExhausted, and everything else (storage, corruption, bugs) → Internal.

use qilin_engine::Error;
use tonic::Status;

/// Maps an engine error to the status a client sees. The message is the error's own text,
/// which names the object at fault.
pub fn from_engine(e: &Error) -> Status {
    let msg = e.to_string();
    match e {
        Error::Sql(_)
        | Error::NoRealization(_)
        | Error::Invalid { .. }
        | Error::InvalidName { .. }
        | Error::Refused(_)
        | Error::Config(_) => Status::invalid_argument(msg),
        Error::NotFound { .. } => Status::not_found(msg),
        Error::Overloaded(_) => Status::resource_exhausted(msg),
        // The shared store is down: the client may retry (on this or another instance).
        Error::Unavailable { .. } => Status::unavailable(msg),
        Error::DataFusion(_) if is_user_datafusion_error(&msg) => Status::invalid_argument(msg),
        Error::DataFusion(_) if msg.contains("Resources exhausted: ") => {
            Status::resource_exhausted(msg)
        }
        _ => {
            log::error!("internal error answered to a client: {msg}");
            Status::internal(msg)
        }
    }
}

/// Whether a DataFusion error (as text: this crate does not link DataFusion itself) is about
/// the query rather than the server. The engine should already report these as
/// `Error::Sql`; this is the safety net. `Context` errors put the cause on a later line,
/// hence the per-line check.
fn is_user_datafusion_error(msg: &str) -> bool {
    const USER_PREFIXES: [&str; 4] = [
        "Error during planning: ",
        "SQL error: ",
        "Schema error: ",
        "This feature is not implemented: ",
    ];
    msg.lines().any(|line| {
        USER_PREFIXES
            .iter()
            .any(|p| line.trim_start().starts_with(p))
    })
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
            Error::NoRealization("no cube has column x".into()),
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
    fn datafusion_planning_errors_are_recognised_in_context_chains() {
        assert!(is_user_datafusion_error(
            "Optimizer rule x failed\ncaused by\nError during planning: table foo not found"
        ));
        assert!(is_user_datafusion_error("SQL error: ParserError(\"x\")"));
        assert!(!is_user_datafusion_error("Internal error: oops"));
    }
}
