//! Segment storage: a segment is a set of cuboids; a cuboid is a sequence of blocks (Arrow
//! record batches sorted in rowkey order, compressed IPC) plus a manifest with each block's
//! row count, checksum and per-dimension min/max for pruning.
//!
//! Lookup snapshots and table indexes are stored the same way, under reserved ids at or above
//! [`crate::model::cuboid::FIRST_RESERVED_ID`] (2^63; real cuboid ids are below it), which
//! both backends encode like any cuboid id (a directory name, a big-endian u64 in row keys).
//!
//! Backends implement [`SegmentStore`], which only moves bytes; encoding, checksums and stats
//! live in [`block`] so every backend stores exactly the same thing.

pub mod block;
pub mod hbase;
pub mod local;

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::CuboidId;

pub use block::{BlockMeta, CuboidManifest};
pub use hbase::HBaseSegmentStore;
pub use local::LocalSegmentStore;

/// Where segment bytes live. Writes of a segment become durable only at [`SegmentStore::sync_segment`];
/// nothing is visible to queries before the segment turns READY in the metadata store.
pub trait SegmentStore: Send + Sync + std::fmt::Debug {
    fn put_block(&self, segment: &str, cuboid: CuboidId, block: u32, data: &[u8]) -> Result<()>;
    /// The block's bytes, or [`Error::NotFound`] naming segment, cuboid and block.
    fn get_block(&self, segment: &str, cuboid: CuboidId, block: u32) -> Result<Vec<u8>>;
    fn put_manifest(&self, segment: &str, cuboid: CuboidId, data: &[u8]) -> Result<()>;
    fn get_manifest(&self, segment: &str, cuboid: CuboidId) -> Result<Vec<u8>>;
    /// Makes everything written for `segment` durable.
    fn sync_segment(&self, segment: &str) -> Result<()>;
    /// Removes every block and manifest of `segment` (idempotent).
    fn delete_segment(&self, segment: &str) -> Result<()>;
    /// Ids of all segments that have any stored data (for garbage collection).
    fn list_segments(&self) -> Result<Vec<String>>;
    fn describe(&self) -> String;
}

/// Opens the store named by `kylin.storage.url`: `TABLE@hbase://HOST:PORT` or a local
/// directory (`PATH` or `file://PATH`).
pub fn open_segment_store(url: &str) -> Result<Arc<dyn SegmentStore>> {
    const KEY: &str = "kylin.storage.url";
    if crate::hbase::url::is_hbase_url(url) {
        let url = crate::hbase::HBaseUrl::parse(KEY, url)?;
        return Ok(Arc::new(HBaseSegmentStore::open(url)?));
    }
    let path = crate::fsutil::local_dir_of_url(KEY, url)?;
    Ok(Arc::new(LocalSegmentStore::open(path)?))
}

/// Segment ids become file names and row keys: only hex digits and '-' are accepted.
pub fn validate_segment_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(Error::InvalidName {
            kind: "segment id",
            name: id.chars().take(40).collect(),
            reason: "must be 1-64 hex digits or '-'".into(),
        });
    }
    Ok(())
}
