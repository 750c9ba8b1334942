//! Segment storage: a segment is a set of cuboids; a cuboid is a sequence of blocks (Arrow
//! record batches sorted in rowkey order, compressed IPC) plus a manifest with each block's
//! row count, checksum and per-dimension min/max for pruning.
//!
//! Lookup snapshots and table indexes are stored the same way, under reserved ids at or above
//! [`crate::model::cuboid::FIRST_RESERVED_ID`] (2^63; real cuboid ids are below it), which
//! both backends encode like any cuboid id (a directory name, a big-endian u64 in row keys).
//!
//! Global dictionaries ([`crate::dict`]) live beside the segments, in a namespace of their
//! own: [`SegmentStore::list_segments`] never lists them and [`SegmentStore::delete_segment`]
//! never removes them, because every segment of every cube that uses a dictionary relies on
//! its ids staying the same.
//!
//! Backends implement [`SegmentStore`], which only moves bytes; encoding, checksums and stats
//! live in [`block`] so every backend stores exactly the same thing.

pub mod block;
pub mod hbase;
pub mod local;
pub mod parquet_block;

use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::model::CuboidId;

pub use block::{BlockMeta, BlockSections, CuboidManifest};
pub use hbase::HBaseSegmentStore;
pub use local::LocalSegmentStore;

/// Where segment bytes live. Writes of a segment become durable only at [`SegmentStore::sync_segment`];
/// nothing is visible to queries before the segment turns READY in the metadata store.
pub trait SegmentStore: Send + Sync + std::fmt::Debug {
    fn put_block(&self, segment: &str, cuboid: CuboidId, block: u32, data: &[u8]) -> Result<()>;
    /// The block's bytes, or [`Error::NotFound`] naming segment, cuboid and block.
    fn get_block(&self, segment: &str, cuboid: CuboidId, block: u32) -> Result<Vec<u8>>;
    /// Byte ranges `(offset, length)` of one block, in the order asked; a range past the
    /// block's end comes back short (the caller's checksum fails), a missing block is
    /// [`Error::NotFound`]. This default reads the whole block: see
    /// [`SegmentStore::reads_ranges`].
    fn get_block_ranges(
        &self,
        segment: &str,
        cuboid: CuboidId,
        block: u32,
        ranges: &[(u64, u64)],
    ) -> Result<Vec<Bytes>> {
        let whole = Bytes::from(self.get_block(segment, cuboid, block)?);
        Ok(ranges
            .iter()
            .map(|&(at, len)| {
                let start = (at as usize).min(whole.len());
                let end = (at.saturating_add(len) as usize).min(whole.len());
                whole.slice(start..end)
            })
            .collect())
    }
    /// Whether [`SegmentStore::get_block_ranges`] reads only the bytes asked for; when not,
    /// readers fetch a block whole once rather than once per column.
    fn reads_ranges(&self) -> bool {
        false
    }
    fn put_manifest(&self, segment: &str, cuboid: CuboidId, data: &[u8]) -> Result<()>;
    fn get_manifest(&self, segment: &str, cuboid: CuboidId) -> Result<Vec<u8>>;
    /// Makes everything written for `segment` durable.
    fn sync_segment(&self, segment: &str) -> Result<()>;
    /// Removes every block and manifest of `segment` (idempotent).
    fn delete_segment(&self, segment: &str) -> Result<()>;
    /// Ids of all segments that have any stored data (for garbage collection).
    fn list_segments(&self) -> Result<Vec<String>>;
    /// Writes object `name` (a chunk) of global dictionary `dict`, durably before it returns.
    /// `dict` and `name` are checked with [`validate_dict_name`].
    fn put_dict_object(&self, dict: &str, name: &str, data: &[u8]) -> Result<()>;
    /// Object `name` of dictionary `dict`, or [`Error::NotFound`].
    fn get_dict_object(&self, dict: &str, name: &str) -> Result<Vec<u8>>;
    /// The manifest of dictionary `dict`; `None` when the dictionary does not exist yet.
    fn get_dict_manifest(&self, dict: &str) -> Result<Option<Vec<u8>>>;
    /// Replaces the manifest of `dict` with `data`, durably, only when the stored one is
    /// `expected` byte for byte (`None`: none stored). Returns whether it did: the
    /// dictionary's one commit point, atomic against writers in other processes.
    fn swap_dict_manifest(&self, dict: &str, expected: Option<&[u8]>, data: &[u8]) -> Result<bool>;
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

/// Dictionary and dictionary-object names become directory and file names and row keys:
/// 1-200 characters of ASCII letters, digits, '_', '-' and '.', not starting with '.'.
pub fn validate_dict_name(kind: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        return Err(Error::InvalidName {
            kind,
            name: name.chars().take(40).collect(),
            reason: "must be 1-200 ASCII letters, digits, '_', '-' or '.', not starting with '.'"
                .into(),
        });
    }
    Ok(())
}
