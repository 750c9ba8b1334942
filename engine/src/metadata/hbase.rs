//! The metadata store in an HBase table (`kylin.metadata.url=TABLE@hbase://HOST:PORT`).
//!
//! One row per resource path, column family `r`:
//! - `r:v` — the version cell: version (u64 BE) | write token (16 bytes) | CRC-32 of the
//!   content (u32 BE) | live flag (1 byte; 0 = deleted);
//! - `r:c.<token>` — the content written with that token.
//!
//! HBase's Thrift1 `checkAndPut` compares one cell and writes one cell, so content and version
//! cannot be written together. A write therefore puts its content under a fresh token first,
//! then moves the version cell from the value it read to (version + 1, token) with
//! `checkAndPut`; a reader fetches the whole row (atomic in HBase) and follows the version
//! cell to its content. A loser's content cell is removed again; until then readers ignore it.
//!
//! Thrift1 has no check-and-delete either, so a delete is a check-and-put of a tombstone
//! version cell (the row stays, 29 bytes; versions keep growing across delete and re-create,
//! which also rules out ABA races). The store-wide version is an `atomicIncrement` counter in
//! the row `#store_version`, bumped after each change.

use hbase_thrift::hbase::THbaseSyncClient;

use super::{validate_path, Resource, ResourceStore};
use crate::error::{Error, Result};
use crate::hbase::{delete, put, HBaseTable, HBaseUrl};

const FAMILY: &str = "r";
const VERSION_COLUMN: &[u8] = b"r:v";
const CONTENT_PREFIX: &str = "r:c.";
const STORE_VERSION_ROW: &[u8] = b"#store_version";
const STORE_VERSION_COLUMN: &[u8] = b"r:n";
const VERSION_CELL_LEN: usize = 8 + 16 + 4 + 1;

/// The decoded version cell.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VersionCell {
    version: u64,
    token: [u8; 16],
    crc32: u32,
    live: bool,
}

impl VersionCell {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(VERSION_CELL_LEN);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.token);
        out.extend_from_slice(&self.crc32.to_be_bytes());
        out.push(self.live as u8);
        out
    }

    fn decode(path: &str, bytes: &[u8]) -> Result<VersionCell> {
        if bytes.len() != VERSION_CELL_LEN || bytes[28] > 1 {
            return Err(Error::corrupt(
                format!("metadata resource {path}"),
                format!("version cell of {} bytes is malformed", bytes.len()),
            ));
        }
        Ok(VersionCell {
            version: u64::from_be_bytes(bytes[0..8].try_into().expect("8 bytes")),
            token: bytes[8..24].try_into().expect("16 bytes"),
            crc32: u32::from_be_bytes(bytes[24..28].try_into().expect("4 bytes")),
            live: bytes[28] == 1,
        })
    }

    fn content_column(&self) -> Vec<u8> {
        content_column(&self.token)
    }
}

fn content_column(token: &[u8; 16]) -> Vec<u8> {
    let mut c = CONTENT_PREFIX.as_bytes().to_vec();
    for b in token {
        c.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    c
}

#[derive(Debug)]
pub struct HBaseResourceStore {
    table: HBaseTable,
}

impl HBaseResourceStore {
    /// Connects and creates the table (family `r`) on first use.
    pub fn open(url: HBaseUrl) -> Result<Self> {
        let table = HBaseTable::new(url);
        table.ensure_table(&[FAMILY])?;
        Ok(HBaseResourceStore { table })
    }

    /// The raw version cell of `path` (bytes as stored) and its decoding.
    fn read_version(&self, path: &str) -> Result<Option<(Vec<u8>, VersionCell)>> {
        let what = || format!("read {path}");
        let row = self
            .table
            .get_row(&what, path.as_bytes(), &[VERSION_COLUMN])?;
        match row.and_then(|mut r| r.remove(VERSION_COLUMN)) {
            None => Ok(None),
            Some(raw) => {
                let cell = VersionCell::decode(path, &raw)?;
                Ok(Some((raw, cell)))
            }
        }
    }

    /// Moves the version cell of `path` from `from` (raw bytes; `None` = no cell) to `to`.
    /// Returns whether this call won. After a broken connection the outcome of the first
    /// attempt is unknown, so a retry first reads the cell back: our own value means we won.
    fn swap_version(&self, path: &str, from: Option<&[u8]>, to: &[u8]) -> Result<bool> {
        let what = || format!("check-and-put {path}");
        self.table
            .check_and_put(&what, path.as_bytes(), VERSION_COLUMN, from, to)
    }

    /// Best-effort removal of a content cell nobody points to any more.
    fn drop_content(&self, path: &str, column: &[u8]) {
        let what = || format!("remove stale content of {path}");
        if let Err(e) = self
            .table
            .mutate_row(&what, path.as_bytes(), vec![delete(column)])
        {
            log::warn!("{e} (harmless: readers ignore it; the next write of {path} retries)");
        }
    }

    /// Bumps the store-wide version after a change. The change itself has landed by then, so
    /// a failure (after the usual retries) is logged, not returned: reporting a write that
    /// happened as failed would mislead the caller. Servers then see the change with the next
    /// bump (or a reload).
    fn bump_store_version(&self) {
        let name = self.table.name();
        let what = || "bump the store version".to_string();
        if let Err(e) = self.table.call(&what, |c| {
            c.atomic_increment(
                name.clone(),
                STORE_VERSION_ROW.to_vec(),
                STORE_VERSION_COLUMN.to_vec(),
                1,
            )
        }) {
            log::error!("{e}; servers notice the change with the next one");
        }
    }

    fn conflict(&self, path: &str, expected: Option<u64>) -> Result<Error> {
        let actual = self
            .read_version(path)?
            .filter(|(_, c)| c.live)
            .map(|(_, c)| c.version);
        Ok(Error::Conflict {
            path: path.to_string(),
            expected,
            actual,
        })
    }
}

impl ResourceStore for HBaseResourceStore {
    fn get(&self, path: &str) -> Result<Option<Resource>> {
        validate_path(path)?;
        let what = || format!("read {path}");
        let Some(mut row) = self.table.get_row(&what, path.as_bytes(), &[])? else {
            return Ok(None);
        };
        let Some(raw) = row.remove(VERSION_COLUMN) else {
            return Ok(None);
        };
        let cell = VersionCell::decode(path, &raw)?;
        if !cell.live {
            return Ok(None);
        }
        let data = row.remove(&cell.content_column()).ok_or_else(|| {
            Error::corrupt(
                format!("metadata resource {path}"),
                format!("content of version {} is missing", cell.version),
            )
        })?;
        if crc32fast::hash(&data) != cell.crc32 {
            return Err(Error::corrupt(
                format!("metadata resource {path}"),
                "checksum mismatch",
            ));
        }
        Ok(Some(Resource {
            data,
            version: cell.version,
        }))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            validate_path(prefix)?;
        }
        let folder = format!("{prefix}/");
        let what = || format!("list {folder}");
        let rows = self
            .table
            .scan_prefix(&what, folder.as_bytes(), &[VERSION_COLUMN])?;
        let mut out = Vec::new();
        for (key, mut cols) in rows {
            let Ok(path) = String::from_utf8(key) else {
                continue;
            };
            if path[folder.len()..].contains('/') {
                continue;
            }
            let Some(raw) = cols.remove(VERSION_COLUMN) else {
                continue;
            };
            if VersionCell::decode(&path, &raw)?.live {
                out.push(path);
            }
        }
        Ok(out)
    }

    fn list_all(&self) -> Result<Vec<String>> {
        let what = || "list every resource".to_string();
        let rows = self.table.scan_prefix(&what, b"/", &[VERSION_COLUMN])?;
        let mut out = Vec::new();
        for (key, mut cols) in rows {
            let Ok(path) = String::from_utf8(key) else {
                continue;
            };
            let Some(raw) = cols.remove(VERSION_COLUMN) else {
                continue;
            };
            if VersionCell::decode(&path, &raw)?.live {
                out.push(path);
            }
        }
        out.sort();
        Ok(out)
    }

    fn check_and_put(&self, path: &str, data: &[u8], expected: Option<u64>) -> Result<u64> {
        validate_path(path)?;
        let current = self.read_version(path)?;
        let actual = current
            .as_ref()
            .filter(|(_, c)| c.live)
            .map(|(_, c)| c.version);
        if actual != expected {
            return Err(Error::Conflict {
                path: path.to_string(),
                expected,
                actual,
            });
        }
        let next = VersionCell {
            version: current.as_ref().map_or(0, |(_, c)| c.version) + 1,
            token: *uuid::Uuid::new_v4().as_bytes(),
            crc32: crc32fast::hash(data),
            live: true,
        };
        let what = || format!("write {path}");
        self.table.mutate_row(
            &what,
            path.as_bytes(),
            vec![put(&next.content_column(), data.to_vec())],
        )?;
        let from = current.as_ref().map(|(raw, _)| raw.as_slice());
        if !self.swap_version(path, from, &next.encode())? {
            self.drop_content(path, &next.content_column());
            return Err(self.conflict(path, expected)?);
        }
        if let Some((_, old)) = current.filter(|(_, c)| c.live) {
            self.drop_content(path, &old.content_column());
        }
        if super::moves_store_version(path) {
            self.bump_store_version();
        }
        Ok(next.version)
    }

    fn check_and_delete(&self, path: &str, expected: Option<u64>) -> Result<()> {
        validate_path(path)?;
        loop {
            let Some((raw, cell)) = self.read_version(path)? else {
                return Ok(());
            };
            if !cell.live {
                return Ok(());
            }
            if expected.is_some() && expected != Some(cell.version) {
                return Err(Error::Conflict {
                    path: path.to_string(),
                    expected,
                    actual: Some(cell.version),
                });
            }
            let tombstone = VersionCell {
                version: cell.version + 1,
                token: [0; 16],
                crc32: 0,
                live: false,
            };
            if self.swap_version(path, Some(&raw), &tombstone.encode())? {
                self.drop_content(path, &cell.content_column());
                if super::moves_store_version(path) {
                    self.bump_store_version();
                }
                return Ok(());
            }
            if expected.is_some() {
                return Err(self.conflict(path, expected)?);
            }
            // Unconditional delete lost a race with a writer: try again on the new version.
        }
    }

    fn store_version(&self) -> Result<u64> {
        let what = || "read the store version".to_string();
        let row = self
            .table
            .get_row(&what, STORE_VERSION_ROW, &[STORE_VERSION_COLUMN])?;
        match row.and_then(|mut r| r.remove(STORE_VERSION_COLUMN)) {
            None => Ok(0),
            Some(v) if v.len() == 8 => Ok(u64::from_be_bytes(v[..].try_into().expect("8 bytes"))),
            Some(v) => Err(Error::corrupt(
                format!("store version in {}", self.table.url()),
                format!("counter cell has {} bytes, not 8", v.len()),
            )),
        }
    }

    fn describe(&self) -> String {
        self.table.url().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_cell_round_trips_and_rejects_garbage() {
        let c = VersionCell {
            version: 7,
            token: [9; 16],
            crc32: 0xdead_beef,
            live: true,
        };
        assert_eq!(VersionCell::decode("/a", &c.encode()).unwrap(), c);
        assert!(VersionCell::decode("/a", b"short").is_err());
        assert_eq!(content_column(&[0xab; 16]).len(), 4 + 32);
    }
}
