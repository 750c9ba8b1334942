//! Store URLs naming an HBase table behind a Thrift1 server:
//! `TABLE@hbase://HOST:PORT[,key=value...]` (Kylin's `identifier@scheme,params` form).
//!
//! Parameters: `pool-size` (idle connections kept, default 16), `timeout-ms` (per call, default
//! 30000), `connect-timeout-ms` (default 5000), `retries` (attempts after a connection
//! failure, default 8: about 16 s of backoff, enough to ride out a Thrift server restart).

use std::time::Duration;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HBaseUrl {
    pub table: String,
    pub host: String,
    pub port: u16,
    pub pool_size: usize,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retries: u32,
}

impl std::fmt::Display for HBaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@hbase://{}:{}", self.table, self.host, self.port)
    }
}

/// Whether `url` names an HBase store (as opposed to a local directory).
pub fn is_hbase_url(url: &str) -> bool {
    url.contains("@hbase://") || url.starts_with("hbase://")
}

impl HBaseUrl {
    /// Parses the value of config key `key`.
    pub fn parse(key: &str, url: &str) -> Result<HBaseUrl> {
        let bad = |reason: String| {
            Error::invalid(format!("{key}={url}"), format!("{reason}; expected TABLE@hbase://HOST:PORT, e.g. kylin_metadata@hbase://127.0.0.1:9090"))
        };
        let (table, rest) = url
            .split_once('@')
            .ok_or_else(|| bad("no table name before '@'".into()))?;
        let rest = rest
            .strip_prefix("hbase://")
            .ok_or_else(|| bad("scheme must be hbase://".into()))?;
        let mut parts = rest.split(',');
        let authority = parts.next().unwrap_or_default().trim_end_matches('/');
        if table.is_empty()
            || !table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(bad(format!(
                "table name {table:?} must be letters, digits, '_', '-' or '.'"
            )));
        }
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| bad(format!("{authority:?} has no :PORT")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("empty host".into()));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(format!("port {port:?} is not a number from 1 to 65535")))?;
        let mut out = HBaseUrl {
            table: table.to_string(),
            host: host.to_string(),
            port,
            pool_size: 16,
            timeout: Duration::from_millis(30_000),
            connect_timeout: Duration::from_millis(5_000),
            retries: 8,
        };
        for param in parts {
            let (k, v) = param
                .split_once('=')
                .ok_or_else(|| bad(format!("parameter {param:?} is not key=value")))?;
            let number = || -> Result<u64> {
                v.parse()
                    .map_err(|_| bad(format!("parameter {k}: {v:?} is not a whole number")))
            };
            match k {
                "pool-size" => out.pool_size = number()? as usize,
                "timeout-ms" => out.timeout = Duration::from_millis(number()?.max(1)),
                "connect-timeout-ms" => {
                    out.connect_timeout = Duration::from_millis(number()?.max(1))
                }
                "retries" => out.retries = number()?.min(100) as u32,
                _ => {
                    return Err(bad(format!(
                        "unknown parameter {k:?} (known: pool-size, timeout-ms, connect-timeout-ms, retries)"
                    )))
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_table_host_port_and_parameters() {
        let u = HBaseUrl::parse("k", "kylin_metadata@hbase://127.0.0.1:9090").unwrap();
        assert_eq!(
            (u.table.as_str(), u.host.as_str(), u.port, u.retries),
            ("kylin_metadata", "127.0.0.1", 9090, 8)
        );
        assert_eq!(u.to_string(), "kylin_metadata@hbase://127.0.0.1:9090");
        let u = HBaseUrl::parse("k", "t@hbase://h:1,retries=2,timeout-ms=50").unwrap();
        assert_eq!((u.retries, u.timeout), (2, Duration::from_millis(50)));
    }

    #[test]
    fn bad_urls_name_the_problem() {
        for (url, needle) in [
            ("hbase://h:1", "no table name"),
            ("t@http://h:1", "scheme"),
            ("t@hbase://h", "no :PORT"),
            ("t@hbase://h:x", "not a number"),
            ("t t@hbase://h:1", "table name"),
            ("t@hbase://h:1,foo=1", "unknown parameter"),
        ] {
            let e = HBaseUrl::parse("kylin.metadata.url", url)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(needle) && e.contains("kylin.metadata.url"),
                "{url}: {e}"
            );
        }
        assert!(is_hbase_url("t@hbase://h:1") && !is_hbase_url("/data/meta"));
    }
}
