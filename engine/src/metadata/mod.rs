//! The metadata store: a versioned key-value store of resources (path → bytes + version) and
//! the typed managers above it.
//!
//! Paths look like `/cube/ssb.json`. Every resource carries a version that starts at 1 and
//! grows by one on each write; `check_and_put` writes only when the stored version is the one
//! the caller read, which is how concurrent writers (two job engines, a CLI and a server)
//! avoid lost updates. A store-wide version grows on every change, so a server can see
//! cheaply that it is behind.

pub mod backup;
pub mod hbase;
pub(crate) mod jsonl;
pub mod local;
pub mod managers;

use std::sync::Arc;

use crate::error::{Error, Result};

pub use hbase::HBaseResourceStore;
pub use local::LocalResourceStore;

/// One stored resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub data: Vec<u8>,
    pub version: u64,
}

/// Path → bytes + version, with check-and-put. Implementations must be safe to share between
/// threads and between processes that open the same store.
pub trait ResourceStore: Send + Sync + std::fmt::Debug {
    /// The resource at `path`, or `None`.
    fn get(&self, path: &str) -> Result<Option<Resource>>;
    /// Paths of the resources directly under the folder `prefix` (e.g. `/cube`), sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Paths of every resource in the store, in any folder, sorted (backups read them all).
    fn list_all(&self) -> Result<Vec<String>>;
    /// Writes `data` when the stored version equals `expected` (`None`: must not exist).
    /// Returns the new version, or [`Error::Conflict`].
    fn check_and_put(&self, path: &str, data: &[u8], expected: Option<u64>) -> Result<u64>;
    /// Deletes the resource when its version equals `expected`; deleting nothing is fine when
    /// `expected` is `None`.
    fn check_and_delete(&self, path: &str, expected: Option<u64>) -> Result<()>;
    /// The store-wide version: grows on every change.
    fn store_version(&self) -> Result<u64>;
    /// A short description for messages (`local:/path`).
    fn describe(&self) -> String;

    /// Unconditional write (last writer wins). Returns the new version.
    fn put(&self, path: &str, data: &[u8]) -> Result<u64> {
        loop {
            let current = self.get(path)?.map(|r| r.version);
            match self.check_and_put(path, data, current) {
                Err(Error::Conflict { .. }) => continue,
                other => return other,
            }
        }
    }
}

/// Opens the store named by `kylin.metadata.url`: `TABLE@hbase://HOST:PORT` or a local
/// directory (`PATH` or `file://PATH`).
pub fn open_store(url: &str) -> Result<Arc<dyn ResourceStore>> {
    const KEY: &str = "kylin.metadata.url";
    if crate::hbase::url::is_hbase_url(url) {
        let url = crate::hbase::HBaseUrl::parse(KEY, url)?;
        return Ok(Arc::new(HBaseResourceStore::open(url)?));
    }
    let path = crate::fsutil::local_dir_of_url(KEY, url)?;
    Ok(Arc::new(LocalResourceStore::open(path)?))
}

/// Whether a change of `path` moves the store-wide version. The audit log (`/audit/…`) and
/// the query history (`/query_history/…`) do not: servers reload their caches when the
/// version moves, and a sign-in or a query must not cause that.
pub fn moves_store_version(path: &str) -> bool {
    !(path.starts_with("/audit/") || path.starts_with("/query_history/"))
}

/// Checks a resource path: `/folder/name.ext` segments of safe characters only.
pub fn validate_path(path: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidName {
            kind: "resource path",
            name: path.chars().take(60).collect(),
            reason: reason.into(),
        })
    };
    if !path.starts_with('/') || path.len() < 2 {
        return bad("must start with '/' and name a resource");
    }
    if path.len() > 512 {
        return bad("longer than 512 bytes");
    }
    for part in path[1..].split('/') {
        if part.is_empty() || part == "." || part == ".." || part.starts_with('.') {
            return bad("empty, '.' or '..' path segment");
        }
        if !part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return bad("only letters, digits, '_', '-' and '.' are allowed");
        }
    }
    Ok(())
}
