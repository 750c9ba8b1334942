//! Qilin on DataFusion Ballista: the scheduler and executor Qilin ships (`qilin-ballista`),
//! which know Qilin's build plan nodes, and the client call the job engine submits build
//! plans with.
//!
//! Ballista's stock binaries cannot decode Qilin's plan nodes; these are the same scheduler
//! and executor with [`codec::QilinCodec`] in their codec hooks. The scheduler and every
//! executor read the same `kylin.properties` (`--conf`): a decoded plan binds its nodes to
//! the segment store named there, so plans carry segment and cuboid ids, never paths.

pub mod client;
pub mod codec;
pub mod executor;
pub mod scheduler;

use std::net::SocketAddr;

/// What can go wrong starting or talking to a cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] qilin_engine::config::ConfigError),
    #[error(transparent)]
    Engine(#[from] qilin_engine::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("Ballista: {0}")]
    Ballista(String),
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },
}

impl From<ballista_core::error::BallistaError> for Error {
    fn from(e: ballista_core::error::BallistaError) -> Self {
        Error::Ballista(e.to_string())
    }
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Error::Engine(e.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A `HOST:PORT` address (a host name or an IP), as `--scheduler` and
/// `kylin.job.ballista.scheduler` take it.
pub fn parse_host_port(what: &'static str, s: &str) -> Result<(String, u16)> {
    let invalid = |reason: &str| Error::Invalid {
        what,
        value: s.to_string(),
        reason: reason.to_string(),
    };
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok((addr.ip().to_string(), addr.port()));
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| invalid("expected HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid("the port is not a number from 0 to 65535"))?;
    if host.is_empty() || host.contains(['/', ' ', '[', ']']) {
        return Err(invalid("expected HOST:PORT"));
    }
    if port == 0 {
        return Err(invalid("port 0 is not an address to connect to"));
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port() {
        assert_eq!(
            parse_host_port("scheduler", "127.0.0.1:50050").unwrap(),
            ("127.0.0.1".into(), 50050)
        );
        assert_eq!(
            parse_host_port("scheduler", "sched.example:7").unwrap(),
            ("sched.example".into(), 7)
        );
        for bad in [
            "",
            "host",
            "host:",
            ":80",
            "host:x",
            "host:70000",
            "host:0",
            "a b:1",
        ] {
            let e = parse_host_port("scheduler", bad).unwrap_err().to_string();
            assert!(e.contains("invalid scheduler"), "{bad}: {e}");
        }
    }
}
