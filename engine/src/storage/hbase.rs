//! Segment storage in ONE HBase table for all cubes (`kylin.storage.url=TABLE@hbase://HOST:PORT`),
//! not Kylin's table per segment, whose region count grows with every build.
//!
//! Row key: `salt (1 byte) | segment id | 0x00 | cuboid id (u64 BE) | block no (u32 BE)`.
//! The salt spreads a cuboid's consecutive blocks round-robin over [`SALT_BUCKETS`] key ranges,
//! starting at a bucket hashed from (segment, cuboid), so a big cuboid is read from every
//! region server and a table pre-split at the salt bytes stays balanced. Column family `b`:
//! - `b:d0`, `b:d1`, … — the block's bytes in chunks of at most [`CHUNK_BYTES`] (HBase refuses
//!   cells over `hbase.client.keyvalue.maxsize`, 10 MB by default);
//! - `b:s` — the block's stats: length (u64 BE), CRC-32 (u32 BE), chunk count (u32 BE), so a
//!   damaged or truncated cell is caught even before the manifest's checksum is consulted;
//! - the cuboid manifest (row count, per-block min/max) in `b:m` of the row whose block no is
//!   `u32::MAX`.
//!
//! Rows `0xFF | segment id` (`b:i`) register every segment that has data, written before its
//! first block, so `list_segments` finds even the leftovers of a crashed build for garbage
//! collection without scanning the blocks.
//!
//! Global dictionaries use rows `0xFE | dictionary | 0x00 | object` (column `b:x`, one cell:
//! dictionary objects are kept below [`CHUNK_BYTES`] by their writer) and the manifest row
//! `0xFE | dictionary | 0x00` (`b:m`), swapped with `checkAndPut`. The first byte is neither
//! a salt bucket nor the registry, so segment listing and deletion never see them. Dropping a segment scans its key ranges in each
//! bucket (keys only, via the small columns) and deletes those rows, the registration last.

use std::collections::HashSet;
use std::sync::Mutex;

use super::{validate_dict_name, validate_segment_id, SegmentStore};
use crate::error::{Error, Result};
use crate::hbase::{put, HBaseTable, HBaseUrl};
use crate::model::CuboidId;

/// Number of salt buckets (the first row-key byte ranges over `0..SALT_BUCKETS`). Part of the
/// storage format: changing it makes existing segments unreadable.
pub const SALT_BUCKETS: u8 = 16;
/// Largest cell Qilin writes: far below HBase's 10 MB default limit, and small enough that a
/// region server never has to buffer huge values.
pub const CHUNK_BYTES: usize = 2 * 1024 * 1024;

const FAMILY: &str = "b";
const STATS_COLUMN: &[u8] = b"b:s";
const MANIFEST_COLUMN: &[u8] = b"b:m";
const REGISTRY_COLUMN: &[u8] = b"b:i";
const REGISTRY_BYTE: u8 = 0xff;
const DICT_BYTE: u8 = 0xfe;
const DICT_OBJECT_COLUMN: &[u8] = b"b:x";
const MANIFEST_BLOCK: u32 = u32::MAX;

fn chunk_column(i: usize) -> Vec<u8> {
    format!("b:d{i}").into_bytes()
}

/// The salt bucket of a block.
pub fn salt(segment: &str, cuboid: CuboidId, block: u32) -> u8 {
    let mut key = segment.as_bytes().to_vec();
    key.extend_from_slice(&cuboid.to_be_bytes());
    let base = xxhash_rust::xxh64::xxh64(&key, 0) % SALT_BUCKETS as u64;
    ((base + block as u64 % SALT_BUCKETS as u64) % SALT_BUCKETS as u64) as u8
}

/// `salt | segment | 0x00`: the start of a segment's rows in one bucket.
fn segment_prefix(salt: u8, segment: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + segment.len());
    k.push(salt);
    k.extend_from_slice(segment.as_bytes());
    k.push(0);
    k
}

/// The row key of a block (or of the manifest, with `block == MANIFEST_BLOCK`).
pub fn row_key(segment: &str, cuboid: CuboidId, block: u32) -> Vec<u8> {
    let s = if block == MANIFEST_BLOCK {
        salt(segment, cuboid, 0)
    } else {
        salt(segment, cuboid, block)
    };
    let mut k = segment_prefix(s, segment);
    k.extend_from_slice(&cuboid.to_be_bytes());
    k.extend_from_slice(&block.to_be_bytes());
    k
}

fn registry_key(segment: &str) -> Vec<u8> {
    let mut k = vec![REGISTRY_BYTE];
    k.extend_from_slice(segment.as_bytes());
    k
}

/// `0xFE | dictionary | 0x00 | object` (the manifest: an empty object name).
fn dict_key(dict: &str, object: &str) -> Vec<u8> {
    let mut k = vec![DICT_BYTE];
    k.extend_from_slice(dict.as_bytes());
    k.push(0);
    k.extend_from_slice(object.as_bytes());
    k
}

#[derive(Debug)]
pub struct HBaseSegmentStore {
    table: HBaseTable,
    /// Segments this process has registered already (saves one write per block).
    registered: Mutex<HashSet<String>>,
}

impl HBaseSegmentStore {
    /// Connects and creates the table (family `b`) on first use.
    pub fn open(url: HBaseUrl) -> Result<Self> {
        let table = HBaseTable::new(url);
        table.ensure_table(&[FAMILY])?;
        Ok(HBaseSegmentStore {
            table,
            registered: Mutex::new(HashSet::new()),
        })
    }

    fn register(&self, segment: &str) -> Result<()> {
        if self
            .registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(segment)
        {
            return Ok(());
        }
        let what = || format!("register segment {segment}");
        self.table.mutate_row(
            &what,
            &registry_key(segment),
            vec![put(REGISTRY_COLUMN, vec![1])],
        )?;
        self.registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(segment.to_string());
        Ok(())
    }
}

/// Encodes the stats cell of a block.
fn stats_cell(data: &[u8], chunks: usize) -> Vec<u8> {
    let mut s = Vec::with_capacity(16);
    s.extend_from_slice(&(data.len() as u64).to_be_bytes());
    s.extend_from_slice(&crc32fast::hash(data).to_be_bytes());
    s.extend_from_slice(&(chunks as u32).to_be_bytes());
    s
}

impl SegmentStore for HBaseSegmentStore {
    fn put_block(&self, segment: &str, cuboid: CuboidId, block: u32, data: &[u8]) -> Result<()> {
        validate_segment_id(segment)?;
        if block == MANIFEST_BLOCK {
            return Err(Error::invalid(
                format!("block {block} of cuboid {cuboid}"),
                "block number out of range",
            ));
        }
        self.register(segment)?;
        let chunks: Vec<&[u8]> = if data.is_empty() {
            vec![data]
        } else {
            data.chunks(CHUNK_BYTES).collect()
        };
        let mut mutations: Vec<_> = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| put(&chunk_column(i), c.to_vec()))
            .collect();
        mutations.push(put(STATS_COLUMN, stats_cell(data, chunks.len())));
        let what = || format!("write block {block} of cuboid {cuboid} in segment {segment}");
        // One row, one atomic mutation: a reader sees the whole block or none of it.
        self.table
            .mutate_row(&what, &row_key(segment, cuboid, block), mutations)
    }

    fn get_block(&self, segment: &str, cuboid: CuboidId, block: u32) -> Result<Vec<u8>> {
        validate_segment_id(segment)?;
        let name = || format!("block {block} of cuboid {cuboid} in segment {segment}");
        let what = || format!("read {}", name());
        let Some(mut row) = self
            .table
            .get_row(&what, &row_key(segment, cuboid, block), &[])?
        else {
            return Err(Error::NotFound {
                kind: "stored",
                name: name(),
            });
        };
        let corrupt = |detail: String| Error::corrupt(name(), detail);
        let stats = row
            .remove(STATS_COLUMN)
            .ok_or_else(|| corrupt("stats cell b:s is missing".into()))?;
        if stats.len() != 16 {
            return Err(corrupt(format!(
                "stats cell has {} bytes, not 16",
                stats.len()
            )));
        }
        let len = u64::from_be_bytes(stats[0..8].try_into().expect("8 bytes"));
        let crc = u32::from_be_bytes(stats[8..12].try_into().expect("4 bytes"));
        let chunks = u32::from_be_bytes(stats[12..16].try_into().expect("4 bytes")) as usize;
        let mut data = Vec::with_capacity(len.min(1 << 32) as usize);
        for i in 0..chunks {
            let chunk = row
                .remove(&chunk_column(i))
                .ok_or_else(|| corrupt(format!("chunk {i} of {chunks} is missing")))?;
            data.extend_from_slice(&chunk);
        }
        if data.len() as u64 != len || crc32fast::hash(&data) != crc {
            return Err(corrupt(format!(
                "checksum mismatch (read {} bytes crc {:08x}, stats say {len} bytes crc {crc:08x})",
                data.len(),
                crc32fast::hash(&data)
            )));
        }
        Ok(data)
    }

    fn put_manifest(&self, segment: &str, cuboid: CuboidId, data: &[u8]) -> Result<()> {
        validate_segment_id(segment)?;
        self.register(segment)?;
        let what = || format!("write manifest of cuboid {cuboid} in segment {segment}");
        self.table.mutate_row(
            &what,
            &row_key(segment, cuboid, MANIFEST_BLOCK),
            vec![put(MANIFEST_COLUMN, data.to_vec())],
        )
    }

    fn get_manifest(&self, segment: &str, cuboid: CuboidId) -> Result<Vec<u8>> {
        validate_segment_id(segment)?;
        let what = || format!("read manifest of cuboid {cuboid} in segment {segment}");
        self.table
            .get_row(
                &what,
                &row_key(segment, cuboid, MANIFEST_BLOCK),
                &[MANIFEST_COLUMN],
            )?
            .and_then(|mut r| r.remove(MANIFEST_COLUMN))
            .ok_or_else(|| Error::NotFound {
                kind: "stored",
                name: format!("manifest of cuboid {cuboid} in segment {segment}"),
            })
    }

    /// Every mutation was acknowledged by HBase after its WAL write: nothing left to do.
    fn sync_segment(&self, segment: &str) -> Result<()> {
        validate_segment_id(segment)
    }

    fn delete_segment(&self, segment: &str) -> Result<()> {
        validate_segment_id(segment)?;
        let what = || format!("delete segment {segment}");
        for bucket in 0..SALT_BUCKETS {
            let rows = self.table.scan_prefix(
                &what,
                &segment_prefix(bucket, segment),
                &[STATS_COLUMN, MANIFEST_COLUMN],
            )?;
            for (key, _) in rows {
                self.table.delete_row(&what, &key)?;
            }
        }
        self.table.delete_row(&what, &registry_key(segment))?;
        self.registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(segment);
        Ok(())
    }

    fn list_segments(&self) -> Result<Vec<String>> {
        let what = || "list segments".to_string();
        let rows = self
            .table
            .scan_prefix(&what, &[REGISTRY_BYTE], &[REGISTRY_COLUMN])?;
        let mut out: Vec<String> = rows
            .into_iter()
            .filter_map(|(k, _)| String::from_utf8(k[1..].to_vec()).ok())
            .filter(|id| validate_segment_id(id).is_ok())
            .collect();
        out.sort();
        Ok(out)
    }

    fn put_dict_object(&self, dict: &str, name: &str, data: &[u8]) -> Result<()> {
        validate_dict_name("dictionary", dict)?;
        validate_dict_name("dictionary object", name)?;
        if data.len() > CHUNK_BYTES {
            return Err(Error::invalid(
                format!("object {name} of dictionary {dict}"),
                format!("{} bytes, more than a cell's {CHUNK_BYTES}", data.len()),
            ));
        }
        let what = || format!("write object {name} of dictionary {dict}");
        self.table.mutate_row(
            &what,
            &dict_key(dict, name),
            vec![put(DICT_OBJECT_COLUMN, data.to_vec())],
        )
    }

    fn get_dict_object(&self, dict: &str, name: &str) -> Result<Vec<u8>> {
        validate_dict_name("dictionary", dict)?;
        validate_dict_name("dictionary object", name)?;
        let what = || format!("read object {name} of dictionary {dict}");
        self.table
            .get_row(&what, &dict_key(dict, name), &[DICT_OBJECT_COLUMN])?
            .and_then(|mut r| r.remove(DICT_OBJECT_COLUMN))
            .ok_or_else(|| Error::NotFound {
                kind: "stored",
                name: format!("object {name} of dictionary {dict}"),
            })
    }

    fn get_dict_manifest(&self, dict: &str) -> Result<Option<Vec<u8>>> {
        validate_dict_name("dictionary", dict)?;
        let what = || format!("read manifest of dictionary {dict}");
        Ok(self
            .table
            .get_row(&what, &dict_key(dict, ""), &[MANIFEST_COLUMN])?
            .and_then(|mut r| r.remove(MANIFEST_COLUMN)))
    }

    fn swap_dict_manifest(&self, dict: &str, expected: Option<&[u8]>, data: &[u8]) -> Result<bool> {
        validate_dict_name("dictionary", dict)?;
        if data.len() > CHUNK_BYTES {
            return Err(Error::invalid(
                format!("manifest of dictionary {dict}"),
                format!("{} bytes, more than a cell's {CHUNK_BYTES}", data.len()),
            ));
        }
        let what = || format!("commit manifest of dictionary {dict}");
        self.table
            .check_and_put(&what, &dict_key(dict, ""), MANIFEST_COLUMN, expected, data)
    }

    fn describe(&self) -> String {
        self.table.url().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_bucket_segment_cuboid_block() {
        let a = row_key("ab", 3, 0);
        assert_eq!(a[0], salt("ab", 3, 0));
        assert_eq!(&a[1..4], b"ab\0");
        assert_eq!(&a[4..12], &3u64.to_be_bytes());
        // Consecutive blocks go round-robin over the buckets.
        let buckets: HashSet<u8> = (0..SALT_BUCKETS as u32).map(|b| salt("ab", 3, b)).collect();
        assert_eq!(buckets.len(), SALT_BUCKETS as usize);
        // A segment id that is a prefix of another never shares its key range.
        assert!(!row_key("abc", 3, 0).starts_with(&segment_prefix(salt("abc", 3, 0), "ab")));
        assert!(salt("x", 1, 0) < SALT_BUCKETS);
    }
}
