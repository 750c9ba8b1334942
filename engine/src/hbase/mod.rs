//! HBase over its Thrift1 API (`hbase thrift start`, buffered transport, binary protocol), the
//! shared plumbing of [`crate::metadata::hbase`] and [`crate::storage::hbase`]: store URLs,
//! a connection pool, timeouts, retries on connection errors, and keeping the blocking Thrift
//! calls off the async runtime's worker threads.
//!
//! Retries: only a broken connection (transport or protocol error, timeout) is retried, with
//! exponential backoff on a fresh connection. An error HBase itself reports (`IOError`,
//! `IllegalArgument`: unknown table, disabled table, ...) is returned at once. Callers make
//! every retried call safe to repeat; the one that is not naturally idempotent, check-and-put,
//! verifies after a broken connection whether its own write landed (see the metadata store).

pub mod url;

use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Duration;

use hbase_thrift::hbase::{
    ColumnDescriptor, HbaseSyncClient, IOError, IllegalArgument, Mutation, THbaseSyncClient,
    TRowResult, TScan,
};
use thrift::protocol::{TBinaryInputProtocol, TBinaryOutputProtocol};
use thrift::transport::{
    ReadHalf, TBufferedReadTransport, TBufferedWriteTransport, TIoChannel, TTcpChannel, WriteHalf,
};

use crate::error::{Error, Result};
pub use url::HBaseUrl;

type Client = HbaseSyncClient<
    TBinaryInputProtocol<TBufferedReadTransport<ReadHalf<TTcpChannel>>>,
    TBinaryOutputProtocol<TBufferedWriteTransport<WriteHalf<TTcpChannel>>>,
>;

/// A row's cells: `family:qualifier` → value.
pub type Cells = BTreeMap<Vec<u8>, Vec<u8>>;

/// Rows fetched per `scannerGetList` call.
const SCAN_BATCH: i32 = 256;

/// A pool of Thrift connections to one HBase Thrift server, bound to one table.
pub struct HBaseTable {
    url: HBaseUrl,
    idle: Mutex<Vec<Client>>,
}

impl std::fmt::Debug for HBaseTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HBaseTable")
            .field("url", &self.url)
            .finish()
    }
}

/// How a failed call is classified.
enum Failure {
    /// The connection broke (or never opened): retry on a new one.
    Connection(String),
    /// HBase answered with an error: do not retry.
    Server(String),
}

fn classify(e: thrift::Error) -> Failure {
    match e {
        thrift::Error::Transport(t) => Failure::Connection(t.to_string()),
        thrift::Error::Protocol(p) => Failure::Connection(p.to_string()),
        thrift::Error::User(u) => {
            if let Some(io) = u.downcast_ref::<IOError>() {
                Failure::Server(format!(
                    "IOError: {}",
                    io.message.as_deref().unwrap_or("(no message)")
                ))
            } else if let Some(ia) = u.downcast_ref::<IllegalArgument>() {
                Failure::Server(format!(
                    "IllegalArgument: {}",
                    ia.message.as_deref().unwrap_or("(no message)")
                ))
            } else {
                Failure::Server(u.to_string())
            }
        }
        thrift::Error::Application(a) => Failure::Server(a.to_string()),
    }
}

/// Runs a blocking call. Inside a multi-threaded Tokio runtime the worker thread is handed
/// over first (`block_in_place`), so a slow HBase never stalls other tasks on that worker.
pub(crate) fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl HBaseTable {
    pub fn new(url: HBaseUrl) -> HBaseTable {
        HBaseTable {
            url,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn url(&self) -> &HBaseUrl {
        &self.url
    }

    /// The table name as bytes, for Thrift calls.
    pub fn name(&self) -> Vec<u8> {
        self.url.table.as_bytes().to_vec()
    }

    fn connect(&self) -> std::result::Result<Client, String> {
        let addr = (self.url.host.as_str(), self.url.port)
            .to_socket_addrs()
            .map_err(|e| format!("resolve {}:{}: {e}", self.url.host, self.url.port))?
            .next()
            .ok_or_else(|| format!("{}:{} resolves to no address", self.url.host, self.url.port))?;
        let stream = TcpStream::connect_timeout(&addr, self.url.connect_timeout)
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let io = |e: std::io::Error| format!("configure socket to {addr}: {e}");
        stream
            .set_read_timeout(Some(self.url.timeout))
            .map_err(io)?;
        stream
            .set_write_timeout(Some(self.url.timeout))
            .map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let (read, write) = TTcpChannel::with_stream(stream)
            .split()
            .map_err(|e| format!("split channel to {addr}: {e}"))?;
        Ok(HbaseSyncClient::new(
            TBinaryInputProtocol::new(TBufferedReadTransport::new(read), true),
            TBinaryOutputProtocol::new(TBufferedWriteTransport::new(write), true),
        ))
    }

    fn take(&self) -> std::result::Result<Client, String> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match pooled {
            Some(c) => Ok(c),
            None => self.connect(),
        }
    }

    fn give_back(&self, client: Client) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.url.pool_size {
            idle.push(client);
        }
    }

    /// Drops every pooled connection (after one broke, the others are suspect too: the
    /// server may have restarted).
    fn drain(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Runs `call` on a pooled connection, retrying on connection failures with exponential
    /// backoff (100 ms doubling, at most 5 s apart) up to the URL's `retries`. `what` names the
    /// operation for error messages. `call` may run more than once: it must be idempotent, or
    /// the caller must make it so.
    pub fn call<T>(
        &self,
        what: &dyn Fn() -> String,
        mut call: impl FnMut(&mut Client) -> thrift::Result<T>,
    ) -> Result<T> {
        off_runtime(|| {
            let mut delay = Duration::from_millis(100);
            let mut attempt = 0u32;
            loop {
                let outcome = match self.take() {
                    Ok(mut client) => match call(&mut client) {
                        Ok(v) => {
                            self.give_back(client);
                            return Ok(v);
                        }
                        Err(e) => match classify(e) {
                            Failure::Server(msg) => {
                                // The connection is still in a clean state after a reply.
                                self.give_back(client);
                                return Err(Error::Backend {
                                    what: format!("{} in {}", what(), self.url),
                                    detail: msg,
                                });
                            }
                            Failure::Connection(msg) => msg,
                        },
                    },
                    Err(msg) => msg,
                };
                self.drain();
                if attempt >= self.url.retries {
                    return Err(Error::Unavailable {
                        what: format!("{} in {}", what(), self.url),
                        detail: format!("{outcome} (gave up after {} attempts)", attempt + 1),
                    });
                }
                log::warn!(
                    "{} in {}: {outcome}; retrying in {delay:?}",
                    what(),
                    self.url
                );
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        })
    }

    /// Creates the table with `families` when it does not exist; checks that an existing one
    /// is enabled and has the families. Safe to race with another process doing the same.
    pub fn ensure_table(&self, families: &[&str]) -> Result<()> {
        let name = self.name();
        let what = || format!("create table {}", self.url.table);
        let exists = self.call(&what, |c| Ok(c.get_table_names()?.contains(&name)))?;
        if !exists {
            let descriptors: Vec<ColumnDescriptor> =
                families.iter().map(|f| family_descriptor(f)).collect();
            let created = self.call(&what, |c| {
                match c.create_table(name.clone(), descriptors.clone()) {
                    Ok(()) => Ok(true),
                    // Someone else created it first (or our first attempt landed).
                    Err(thrift::Error::User(u)) if u.is::<hbase_thrift::hbase::AlreadyExists>() => {
                        Ok(false)
                    }
                    Err(e) => Err(e),
                }
            })?;
            if created {
                log::info!("created HBase table {}", self.url);
            }
        }
        let enabled = self.call(&what, |c| c.is_table_enabled(name.clone()))?;
        if !enabled {
            return Err(Error::Refused(format!(
                "HBase table {} is disabled; enable it in the HBase shell (enable '{}')",
                self.url, self.url.table
            )));
        }
        let present = self.call(&what, |c| c.get_column_descriptors(name.clone()))?;
        for f in families {
            let key = format!("{f}:").into_bytes();
            if !present.contains_key(&key) && !present.contains_key(f.as_bytes()) {
                return Err(Error::Refused(format!(
                    "HBase table {} has no column family '{f}' (it has {}); \
                     was it created by something else?",
                    self.url,
                    present
                        .keys()
                        .map(|k| String::from_utf8_lossy(k).to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The row `key` restricted to `columns` (all columns when empty); `None` when absent.
    pub fn get_row(
        &self,
        what: &dyn Fn() -> String,
        key: &[u8],
        columns: &[&[u8]],
    ) -> Result<Option<Cells>> {
        let name = self.name();
        let columns: Vec<Vec<u8>> = columns.iter().map(|c| c.to_vec()).collect();
        let rows = self.call(what, |c| {
            if columns.is_empty() {
                c.get_row(name.clone(), key.to_vec(), BTreeMap::new())
            } else {
                c.get_row_with_columns(name.clone(), key.to_vec(), columns.clone(), BTreeMap::new())
            }
        })?;
        Ok(rows
            .into_iter()
            .next()
            .map(cells_of)
            .filter(|c| !c.is_empty()))
    }

    /// Applies `mutations` to row `key` atomically (puts are idempotent, so this is retried).
    pub fn mutate_row(
        &self,
        what: &dyn Fn() -> String,
        key: &[u8],
        mutations: Vec<Mutation>,
    ) -> Result<()> {
        let name = self.name();
        self.call(what, |c| {
            c.mutate_row(
                name.clone(),
                key.to_vec(),
                mutations.clone(),
                BTreeMap::new(),
            )
        })
    }

    /// Puts `to` into `column` of row `key` only when the cell holds `from` (`None`: no
    /// cell). Returns whether this call wrote it. After a broken connection the first
    /// attempt's outcome is unknown, so a retry first reads the cell back: `to` there means
    /// this call won (callers make `to` unique to the writer).
    pub fn check_and_put(
        &self,
        what: &dyn Fn() -> String,
        key: &[u8],
        column: &[u8],
        from: Option<&[u8]>,
        to: &[u8],
    ) -> Result<bool> {
        let name = self.name();
        let mut first = true;
        self.call(what, |c| {
            if !first {
                let now = c
                    .get_row_with_columns(
                        name.clone(),
                        key.to_vec(),
                        vec![column.to_vec()],
                        BTreeMap::new(),
                    )?
                    .into_iter()
                    .next()
                    .and_then(|r| r.columns)
                    .and_then(|mut cols| cols.remove(column))
                    .and_then(|cell| cell.value);
                if now.as_deref() == Some(to) {
                    return Ok(true);
                }
                if now.as_deref() != from {
                    return Ok(false);
                }
            }
            first = false;
            // An empty expected value means "the cell must not exist" (HBase semantics).
            c.check_and_put(
                name.clone(),
                key.to_vec(),
                column.to_vec(),
                from.map(|f| f.to_vec()).unwrap_or_default(),
                put(column, to.to_vec()),
                BTreeMap::new(),
            )
        })
    }

    pub fn delete_row(&self, what: &dyn Fn() -> String, key: &[u8]) -> Result<()> {
        let name = self.name();
        self.call(what, |c| {
            c.delete_all_row(name.clone(), key.to_vec(), BTreeMap::new())
        })
    }

    /// Every row whose key starts with `prefix`, restricted to `columns`, in key order. The
    /// whole scan is one retry unit: a broken connection restarts it from the beginning.
    pub fn scan_prefix(
        &self,
        what: &dyn Fn() -> String,
        prefix: &[u8],
        columns: &[&[u8]],
    ) -> Result<Vec<(Vec<u8>, Cells)>> {
        let name = self.name();
        let scan = TScan {
            start_row: Some(prefix.to_vec()),
            stop_row: prefix_end(prefix),
            timestamp: None,
            columns: Some(columns.iter().map(|c| c.to_vec()).collect()),
            caching: Some(SCAN_BATCH),
            filter_string: None,
            batch_size: None,
            sort_columns: None,
            reversed: None,
            cache_blocks: None,
        };
        self.call(what, |c| {
            let id = c.scanner_open_with_scan(name.clone(), scan.clone(), BTreeMap::new())?;
            let mut out = Vec::new();
            let result = (|| loop {
                let batch = c.scanner_get_list(id, SCAN_BATCH)?;
                if batch.is_empty() {
                    return Ok(());
                }
                for row in batch {
                    let key = row.row.clone().unwrap_or_default();
                    out.push((key, cells_of(row)));
                }
            })();
            // Close even after an error HBase reported; a broken connection leaves the
            // scanner to the server's lease timeout.
            if !matches!(result, Err(thrift::Error::Transport(_))) {
                let _ = c.scanner_close(id);
            }
            result.map(|()| std::mem::take(&mut out))
        })
    }
}

/// A column family as Qilin creates it: one version, no compression (blocks are already
/// zstd-compressed), no TTL.
fn family_descriptor(family: &str) -> ColumnDescriptor {
    ColumnDescriptor {
        name: Some(format!("{family}:").into_bytes()),
        max_versions: Some(1),
        compression: Some("NONE".into()),
        in_memory: Some(false),
        bloom_filter_type: Some("ROW".into()),
        bloom_filter_vector_size: Some(0),
        bloom_filter_nb_hashes: Some(0),
        block_cache_enabled: Some(true),
        time_to_live: Some(i32::MAX),
    }
}

/// `column → value` of a row result.
fn cells_of(row: TRowResult) -> Cells {
    row.columns
        .unwrap_or_default()
        .into_iter()
        .map(|(k, cell)| (k, cell.value.unwrap_or_default()))
        .collect()
}

/// The smallest key greater than every key starting with `prefix` (`None`: scan to the end).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A put of `value` into `column` (`family:qualifier`), written to the WAL.
pub fn put(column: &[u8], value: Vec<u8>) -> Mutation {
    Mutation {
        is_delete: Some(false),
        column: Some(column.to_vec()),
        value: Some(value),
        write_to_w_a_l: Some(true),
    }
}

/// A delete of `column`.
pub fn delete(column: &[u8]) -> Mutation {
    Mutation {
        is_delete: Some(true),
        column: Some(column.to_vec()),
        value: None,
        write_to_w_a_l: Some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_range() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }
}
