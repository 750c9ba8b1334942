//! What the query path reads from segment storage, behind one small interface: manifests
//! (with typed per-block statistics) and decoded blocks, both cached. The rewrite and the
//! cuboid scan take a [`SegmentReader`], not the whole query engine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{Field, FieldRef, Schema};

use super::cache::LruCache;
use super::lookup::LookupIndex;
use super::pruning::BlockStats;
use super::string_ids::{Numberings, StringIds};
use crate::error::Result;
use crate::model::cuboid::TABLE_INDEX_ID;
use crate::model::CuboidId;
use crate::storage::block::{
    decode_verified_block_columns_as, read_block_columns, read_block_columns_as, read_footer,
    read_manifest, reads_by_chunk, verify_block, StringForm,
};
use crate::storage::parquet_block::Footer;
use crate::storage::{BlockMeta, CuboidManifest, SegmentStore};

/// Reads stored cuboids for queries. Blocking (a remote store is a network call): call it
/// from execution, never from planning.
pub(crate) trait SegmentReader: Send + Sync + std::fmt::Debug {
    /// The cuboid's manifest in `segment`.
    fn manifest(&self, segment: &str, cuboid: CuboidId) -> Result<Arc<CuboidManifest>>;
    /// Typed per-block statistics of the cuboid's dimension columns `dims` (the manifest's
    /// leading columns, in order).
    fn block_stats(
        &self,
        segment: &str,
        cuboid: CuboidId,
        dims: &[Field],
    ) -> Result<Arc<BlockStats>>;
    /// The stored columns `columns` of one block (every column when `None`), in that order,
    /// decoded; its checksum verified whenever it is read from the store.
    fn block(
        &self,
        segment: &str,
        cuboid: CuboidId,
        block: u32,
        meta: &BlockMeta,
        columns: Option<&[usize]>,
    ) -> Result<RecordBatch>;
    /// The stored string column `column` of one block as a dictionary: ids into the block's
    /// distinct values, so a filter on it costs one evaluation per value. The ids have the
    /// narrowest type the values allow (`UInt8`, `UInt16`, else `Int32`; see
    /// [`crate::storage::block::decode_block_columns_as`]).
    fn string_dictionary(
        &self,
        segment: &str,
        cuboid: CuboidId,
        block: u32,
        meta: &BlockMeta,
        column: usize,
    ) -> Result<ArrayRef>;
    /// The stored string column `column` of one block as `UInt32` ids of `ids`, the numbering
    /// of its dimension's values (see [`super::string_ids`]).
    fn string_ids_of(
        &self,
        segment: &str,
        cuboid: CuboidId,
        block: u32,
        meta: &BlockMeta,
        column: usize,
        ids: &StringIds,
    ) -> Result<ArrayRef> {
        let strings = self.string_dictionary(segment, cuboid, block, meta, column)?;
        Ok(Arc::new(ids.ids_of(&strings)?))
    }
    /// The numbering of string dimension `dimension`'s values (see [`super::string_ids`]),
    /// shared by every query this reader serves; a reader without one numbers per call.
    fn string_ids(&self, dimension: &str) -> Arc<StringIds> {
        let _ = dimension;
        Arc::new(StringIds::default())
    }
    /// The index of the lookup snapshot `key` names (see [`super::lookup`]), made by `build`
    /// unless a plan still holds one, so that the plans using a snapshot share one copy; a
    /// reader without a registry builds it per call.
    fn lookup_index(
        &self,
        key: &str,
        build: &mut dyn FnMut() -> Result<Arc<LookupIndex>>,
    ) -> Result<Arc<LookupIndex>> {
        let _ = key;
        build()
    }
}

/// One decoded column of one block, in one form: queries reading different columns of the
/// same block share what they have in common, and no query decodes a column it does not read.
type ColumnKey = (String, CuboidId, u32, usize, CachedForm);

/// The form a cached column is in: as decoded, or a string column as ids of the numbering
/// with this [`StringIds::id`] (ids of different numberings never mix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CachedForm {
    Decoded(StringForm),
    Ids(u64),
}

/// Stored bytes of the blocks read whole last (by stores that do not read byte ranges, or
/// with manifests written before [`crate::storage::BlockSections`]), checked against their
/// manifests. A scan decodes a block's filter columns, its other columns and its string ids
/// in separate calls; without these each call read the whole block file again and
/// checksummed it again (a third of a base-cuboid query's first run went to reading, page
/// faults and checksums).
const RAW_BLOCK_CACHE_BYTES: u64 = 64 << 20;

/// The decoded-block cache of unit tests (`kylin.query.block-cache-mb`'s floor).
#[cfg(test)]
pub(crate) const TEST_BLOCK_CACHE: u64 = 1 << 30;

/// Parsed footers of the blocks read last by byte range. A scan decodes a block's filter
/// columns, its other columns and its string ids in separate calls, each reading only the
/// column chunks it decodes (a cuboid block's sketch states are most of its bytes and few
/// queries read them); the footer that locates the chunks is read and parsed once.
const FOOTER_CACHE_BYTES: u64 = 64 << 20;

/// A [`SegmentReader`] over a [`SegmentStore`] with caches: segments are immutable once READY,
/// so nothing cached here goes stale; [`CachedSegments::clear`] only frees memory.
pub(crate) struct CachedSegments {
    store: Arc<dyn SegmentStore>,
    manifests: Mutex<HashMap<(String, CuboidId), Arc<CuboidManifest>>>,
    stats: Mutex<HashMap<(String, CuboidId), Arc<BlockStats>>>,
    columns: LruCache<ColumnKey, (FieldRef, ArrayRef)>,
    raw: LruCache<(String, CuboidId, u32), Bytes>,
    /// Parsed footers of blocks read by byte range (see [`FOOTER_CACHE_BYTES`]).
    footers: LruCache<(String, CuboidId, u32), Arc<Footer>>,
    numberings: Numberings,
    /// Lookup indexes by snapshot, while some plan holds them.
    lookups: Mutex<HashMap<String, Weak<LookupIndex>>>,
}

impl std::fmt::Debug for CachedSegments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.store.describe())
    }
}

impl CachedSegments {
    /// Keeps up to `block_cache_bytes` of decoded columns (`kylin.query.block-cache-mb`).
    pub fn new(store: Arc<dyn SegmentStore>, block_cache_bytes: u64) -> Self {
        CachedSegments {
            store,
            manifests: Mutex::new(HashMap::new()),
            stats: Mutex::new(HashMap::new()),
            columns: LruCache::new(block_cache_bytes),
            raw: LruCache::new(RAW_BLOCK_CACHE_BYTES),
            footers: LruCache::new(FOOTER_CACHE_BYTES),
            numberings: Numberings::default(),
            lookups: Mutex::default(),
        }
    }

    pub fn describe(&self) -> String {
        self.store.describe()
    }

    /// Drops cached manifests and statistics (decoded blocks age out of their LRU).
    pub fn clear(&self) {
        self.manifests.lock().expect("manifest cache").clear();
        self.stats.lock().expect("stats cache").clear();
    }
}

impl SegmentReader for CachedSegments {
    fn manifest(&self, segment: &str, cuboid: CuboidId) -> Result<Arc<CuboidManifest>> {
        let key = (segment.to_string(), cuboid);
        if let Some(m) = self.manifests.lock().expect("manifest cache").get(&key) {
            return Ok(m.clone());
        }
        let m = Arc::new(read_manifest(self.store.as_ref(), segment, cuboid)?);
        self.manifests
            .lock()
            .expect("manifest cache")
            .insert(key, m.clone());
        Ok(m)
    }

    fn block_stats(
        &self,
        segment: &str,
        cuboid: CuboidId,
        dims: &[Field],
    ) -> Result<Arc<BlockStats>> {
        let key = (segment.to_string(), cuboid);
        if let Some(s) = self.stats.lock().expect("stats cache").get(&key) {
            if s.describes(dims) {
                return Ok(s.clone());
            }
        }
        let manifest = self.manifest(segment, cuboid)?;
        let s = Arc::new(BlockStats::new(&manifest, dims));
        self.stats
            .lock()
            .expect("stats cache")
            .insert(key, s.clone());
        Ok(s)
    }

    fn block(
        &self,
        segment: &str,
        cuboid: CuboidId,
        block: u32,
        meta: &BlockMeta,
        columns: Option<&[usize]>,
    ) -> Result<RecordBatch> {
        // Table-index blocks stream through: a detail scan reads the whole fact table once,
        // and caching it would hold the table in memory and evict the cuboid blocks that
        // repeated queries reuse.
        if cuboid == TABLE_INDEX_ID {
            return read_block_columns(self.store.as_ref(), segment, cuboid, block, meta, columns);
        }
        let Some(columns) = columns else {
            return self.whole_block(segment, cuboid, block, meta);
        };
        let key = |c: usize| {
            (
                segment.to_string(),
                cuboid,
                block,
                c,
                CachedForm::Decoded(StringForm::Plain),
            )
        };
        let mut found: HashMap<usize, (FieldRef, ArrayRef)> = HashMap::new();
        let mut missing: Vec<usize> = Vec::new();
        for &c in columns {
            if found.contains_key(&c) || missing.contains(&c) {
                continue;
            }
            match self.columns.get(&key(c)) {
                Some(v) => {
                    found.insert(c, v);
                }
                None => missing.push(c),
            }
        }
        if !missing.is_empty() {
            missing.sort_unstable();
            let batch = self.decode(
                segment,
                cuboid,
                block,
                meta,
                Some(&missing),
                StringForm::Plain,
            )?;
            for (i, &c) in missing.iter().enumerate() {
                let field = batch.schema().fields()[i].clone();
                let array = batch.column(i).clone();
                self.columns.insert(
                    key(c),
                    (field.clone(), array.clone()),
                    array.get_array_memory_size() as u64,
                );
                found.insert(c, (field, array));
            }
        }
        let (fields, arrays): (Vec<FieldRef>, Vec<ArrayRef>) =
            columns.iter().map(|c| found[c].clone()).unzip();
        // A projection of no columns (COUNT(*)) still has the block's rows.
        Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(meta.rows as usize)),
        )?)
    }

    fn string_dictionary(
        &self,
        segment: &str,
        cuboid: CuboidId,
        block: u32,
        meta: &BlockMeta,
        column: usize,
    ) -> Result<ArrayRef> {
        let key = (
            segment.to_string(),
            cuboid,
            block,
            column,
            CachedForm::Decoded(StringForm::Dictionary),
        );
        if let Some((_, array)) = self.columns.get(&key) {
            return Ok(array);
        }
        let batch = self.decode(
            segment,
            cuboid,
            block,
            meta,
            Some(&[column]),
            StringForm::Dictionary,
        )?;
        let (field, array) = (batch.schema().fields()[0].clone(), batch.column(0).clone());
        // Table-index blocks stream through uncached, as in `block`.
        if cuboid != TABLE_INDEX_ID {
            let bytes = array.get_array_memory_size() as u64;
            self.columns.insert(key, (field, array.clone()), bytes);
        }
        Ok(array)
    }

    /// Cached: a block's ids in one numbering never change, as a numbering never renumbers.
    fn string_ids_of(
        &self,
        segment: &str,
        cuboid: CuboidId,
        block: u32,
        meta: &BlockMeta,
        column: usize,
        ids: &StringIds,
    ) -> Result<ArrayRef> {
        let key = (
            segment.to_string(),
            cuboid,
            block,
            column,
            CachedForm::Ids(ids.id()),
        );
        if let Some((_, array)) = self.columns.get(&key) {
            return Ok(array);
        }
        let strings = self.string_dictionary(segment, cuboid, block, meta, column)?;
        let array: ArrayRef = Arc::new(ids.ids_of(&strings)?);
        if cuboid != TABLE_INDEX_ID {
            let field = Arc::new(Field::new("ids", array.data_type().clone(), true));
            let bytes = array.get_array_memory_size() as u64;
            self.columns.insert(key, (field, array.clone()), bytes);
        }
        Ok(array)
    }

    fn string_ids(&self, dimension: &str) -> Arc<StringIds> {
        self.numberings.of(dimension)
    }

    fn lookup_index(
        &self,
        key: &str,
        build: &mut dyn FnMut() -> Result<Arc<LookupIndex>>,
    ) -> Result<Arc<LookupIndex>> {
        // Held while building: a second query wanting the same index waits for it.
        let mut indexes = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = indexes.get(key).and_then(Weak::upgrade) {
            return Ok(index);
        }
        let index = build()?;
        indexes.retain(|_, w| w.strong_count() > 0);
        indexes.insert(key.to_string(), Arc::downgrade(&index));
        Ok(index)
    }
}

impl CachedSegments {
    /// Decodes `columns` of a block in the form `strings`, from its stored bytes checked
    /// against `meta`: those of the raw-block cache, else read, checked and kept there (see
    /// [`RAW_BLOCK_CACHE_BYTES`]).
    fn decode(
        &self,
        segment: &str,
        cuboid: CuboidId,
        block: u32,
        meta: &BlockMeta,
        columns: Option<&[usize]>,
        strings: StringForm,
    ) -> Result<RecordBatch> {
        let key = (segment.to_string(), cuboid, block);
        if reads_by_chunk(self.store.as_ref(), meta, columns) {
            let footer = self.footer(segment, cuboid, block, meta)?;
            return read_block_columns_as(
                self.store.as_ref(),
                segment,
                cuboid,
                block,
                meta,
                &footer,
                columns,
                strings,
            );
        }
        let bytes = match self.raw.get(&key) {
            Some(bytes) => bytes,
            None => {
                let bytes = self.store.get_block(segment, cuboid, block)?;
                verify_block(&bytes, meta, segment, cuboid, block)?;
                let bytes = Bytes::from(bytes);
                // Table-index blocks stream through, as in `block`.
                if cuboid != TABLE_INDEX_ID {
                    self.raw.insert(key, bytes.clone(), bytes.len() as u64);
                }
                bytes
            }
        };
        decode_verified_block_columns_as(&bytes, meta, segment, cuboid, block, columns, strings)
    }

    /// A block's parsed footer: from the footer cache, else read, checked and kept there.
    fn footer(
        &self,
        segment: &str,
        cuboid: CuboidId,
        block: u32,
        meta: &BlockMeta,
    ) -> Result<Arc<Footer>> {
        let key = (segment.to_string(), cuboid, block);
        if let Some(footer) = self.footers.get(&key) {
            return Ok(footer);
        }
        let footer = Arc::new(read_footer(
            self.store.as_ref(),
            segment,
            cuboid,
            block,
            meta,
        )?);
        let bytes = footer.memory_size() as u64;
        self.footers.insert(key, footer.clone(), bytes);
        Ok(footer)
    }

    /// Every column of a block (how many there are is known once it is decoded), cached
    /// column by column.
    fn whole_block(
        &self,
        segment: &str,
        cuboid: CuboidId,
        block: u32,
        meta: &BlockMeta,
    ) -> Result<RecordBatch> {
        let batch = self.decode(segment, cuboid, block, meta, None, StringForm::Plain)?;
        for (c, (field, array)) in batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .enumerate()
        {
            self.columns.insert(
                (
                    segment.to_string(),
                    cuboid,
                    block,
                    c,
                    CachedForm::Decoded(StringForm::Plain),
                ),
                (field.clone(), array.clone()),
                array.get_array_memory_size() as u64,
            );
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::block::write_cuboid;
    use crate::storage::LocalSegmentStore;
    use datafusion::arrow::array::{BinaryArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::DataType;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A local store that counts the block bytes it returns and reads byte ranges or not.
    #[derive(Debug)]
    struct Counting {
        inner: LocalSegmentStore,
        ranges: bool,
        read: AtomicU64,
    }

    impl Counting {
        fn open(dir: &std::path::Path, ranges: bool) -> Arc<Counting> {
            Arc::new(Counting {
                inner: LocalSegmentStore::open(dir).unwrap(),
                ranges,
                read: AtomicU64::new(0),
            })
        }

        fn taken(&self) -> u64 {
            self.read.swap(0, Ordering::SeqCst)
        }
    }

    impl SegmentStore for Counting {
        fn put_block(&self, s: &str, c: CuboidId, b: u32, data: &[u8]) -> Result<()> {
            self.inner.put_block(s, c, b, data)
        }
        fn get_block(&self, s: &str, c: CuboidId, b: u32) -> Result<Vec<u8>> {
            let bytes = self.inner.get_block(s, c, b)?;
            self.read.fetch_add(bytes.len() as u64, Ordering::SeqCst);
            Ok(bytes)
        }
        fn get_block_ranges(
            &self,
            s: &str,
            c: CuboidId,
            b: u32,
            ranges: &[(u64, u64)],
        ) -> Result<Vec<Bytes>> {
            assert!(
                self.ranges,
                "a store that reads no ranges was asked for some"
            );
            let parts = self.inner.get_block_ranges(s, c, b, ranges)?;
            let n: usize = parts.iter().map(Bytes::len).sum();
            self.read.fetch_add(n as u64, Ordering::SeqCst);
            Ok(parts)
        }
        fn reads_ranges(&self) -> bool {
            self.ranges
        }
        fn put_manifest(&self, s: &str, c: CuboidId, data: &[u8]) -> Result<()> {
            self.inner.put_manifest(s, c, data)
        }
        fn get_manifest(&self, s: &str, c: CuboidId) -> Result<Vec<u8>> {
            self.inner.get_manifest(s, c)
        }
        fn sync_segment(&self, s: &str) -> Result<()> {
            self.inner.sync_segment(s)
        }
        fn delete_segment(&self, s: &str) -> Result<()> {
            self.inner.delete_segment(s)
        }
        fn list_segments(&self) -> Result<Vec<String>> {
            self.inner.list_segments()
        }
        fn put_dict_object(&self, d: &str, n: &str, data: &[u8]) -> Result<()> {
            self.inner.put_dict_object(d, n, data)
        }
        fn get_dict_object(&self, d: &str, n: &str) -> Result<Vec<u8>> {
            self.inner.get_dict_object(d, n)
        }
        fn get_dict_manifest(&self, d: &str) -> Result<Option<Vec<u8>>> {
            self.inner.get_dict_manifest(d)
        }
        fn swap_dict_manifest(&self, d: &str, old: Option<&[u8]>, new: &[u8]) -> Result<bool> {
            self.inner.swap_dict_manifest(d, old, new)
        }
        fn describe(&self) -> String {
            self.inner.describe()
        }
    }

    /// Two blocks of 500 rows: a string dimension, `n`, `m` (equal to `n` in most rows:
    /// stored as a difference to it) and a large binary state no query below reads.
    fn sketch_cuboid(store: &dyn SegmentStore) -> RecordBatch {
        let rows = 1000i64;
        let names = StringArray::from_iter_values((0..rows).map(|i| format!("n{}", i % 9)));
        let n = Int64Array::from_iter_values((0..rows).map(|i| i * 7));
        let m = Int64Array::from_iter_values((0..rows).map(|i| i * 7 + i64::from(i % 4 == 0)));
        // Incompressible: a sketch state's bytes.
        let mut x = 0x9e37_79b9_u64;
        let states = BinaryArray::from_iter_values((0..rows).map(|_| {
            (0..512)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect::<Vec<u8>>()
        }));
        let batch = RecordBatch::try_from_iter([
            ("name", Arc::new(names) as ArrayRef),
            ("n", Arc::new(n) as ArrayRef),
            ("m", Arc::new(m) as ArrayRef),
            ("state", Arc::new(states) as ArrayRef),
        ])
        .unwrap();
        write_cuboid(
            store,
            "bb",
            9,
            &batch.schema(),
            std::slice::from_ref(&batch),
            1,
            500,
        )
        .unwrap();
        batch
    }

    #[test]
    fn columns_are_read_by_range_and_checked_chunk_by_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let store = Counting::open(dir.path(), true);
        let batch = sketch_cuboid(store.as_ref());
        let reader = CachedSegments::new(store.clone(), TEST_BLOCK_CACHE);
        let manifest = reader.manifest("bb", 9).unwrap();
        let meta = manifest.blocks[1].clone();
        let sections = meta.sections.clone().expect("a new manifest has sections");
        assert_eq!(sections.column_crc32.len(), 4);
        let expected = batch.slice(500, 500);

        // `m` alone reads its chunk, `n`'s (its reference) and the footer: a small part.
        let m = reader.block("bb", 9, 1, &meta, Some(&[2])).unwrap();
        assert_eq!(m.column(0), expected.column(2));
        let read = store.taken();
        assert!(
            read > 0 && read * 20 < meta.bytes,
            "{read} of {}",
            meta.bytes
        );
        // The footer is parsed once: `n` then reads its chunk only.
        let n = reader.block("bb", 9, 1, &meta, Some(&[1])).unwrap();
        assert_eq!(n.column(0), expected.column(1));
        let n_chunk = store.taken();
        assert!(n_chunk > 0 && n_chunk < read, "{n_chunk} then {read}");
        let names = reader.string_dictionary("bb", 9, 1, &meta, 0).unwrap();
        let names = datafusion::arrow::compute::cast(&names, &DataType::Utf8).unwrap();
        assert_eq!(&names, expected.column(0));
        // Everything, in another order, equals what was written.
        let all = reader
            .block("bb", 9, 1, &meta, Some(&[3, 0, 2, 1]))
            .unwrap();
        for (got, want) in all.columns().iter().zip([3, 0, 2, 1]) {
            assert_eq!(got, expected.column(want));
        }
        assert!(store.taken() > meta.bytes / 2);

        // Damage inside the state chunk fails only the reads of that chunk, as corrupt.
        let file = dir.path().join("bb/9/0.arrow");
        let stored = std::fs::read(&file).unwrap();
        let meta0 = manifest.blocks[0].clone();
        let (at, _) = Footer::parse(
            &stored[stored.len() - meta0.sections.as_ref().unwrap().footer_bytes as usize..],
        )
        .unwrap()
        .chunks()[3];
        let mut damaged = stored.clone();
        damaged[at as usize + 100] ^= 1;
        std::fs::write(&file, &damaged).unwrap();
        let reader = CachedSegments::new(store.clone(), TEST_BLOCK_CACHE);
        let n = reader.block("bb", 9, 0, &meta0, Some(&[0, 1, 2])).unwrap();
        assert_eq!(n.num_rows(), 500);
        let err = reader.block("bb", 9, 0, &meta0, Some(&[3])).unwrap_err();
        assert!(matches!(err, crate::Error::Corrupt { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("checksum mismatch in its column chunk 3"),
            "{err}"
        );
        // Damage in the footer fails every read of the block, and is never cached.
        let mut damaged = stored.clone();
        let last = damaged.len() - 20;
        damaged[last] ^= 1;
        std::fs::write(&file, &damaged).unwrap();
        let reader = CachedSegments::new(store.clone(), TEST_BLOCK_CACHE);
        for _ in 0..2 {
            let err = reader.block("bb", 9, 0, &meta0, Some(&[1])).unwrap_err();
            assert!(
                err.to_string().contains("checksum mismatch in its footer"),
                "{err}"
            );
        }
        std::fs::write(&file, &stored).unwrap();
        assert_eq!(
            reader
                .block("bb", 9, 0, &meta0, Some(&[1]))
                .unwrap()
                .column(0),
            batch.slice(0, 500).column(1)
        );
        // A truncated block: its chunks come back short, a checksum error rather than a
        // wrong answer.
        std::fs::write(&file, &stored[..stored.len() / 2]).unwrap();
        let err = CachedSegments::new(store.clone(), TEST_BLOCK_CACHE)
            .block("bb", 9, 0, &meta0, Some(&[1]))
            .unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");

        // A manifest entry written before sections: the block is read whole, same answer.
        let old = BlockMeta {
            sections: None,
            ..meta.clone()
        };
        store.taken();
        let m = CachedSegments::new(store.clone(), TEST_BLOCK_CACHE)
            .block("bb", 9, 1, &old, Some(&[2]))
            .unwrap();
        assert_eq!(m.column(0), expected.column(2));
        assert_eq!(store.taken(), meta.bytes);
    }

    #[test]
    fn a_block_is_read_and_checked_once_for_all_its_columns() {
        let dir = tempfile::tempdir().unwrap();
        // A store that reads blocks whole (HBase's cells).
        let store = Counting::open(dir.path(), false);
        let names = StringArray::from_iter_values((0..100).map(|i| format!("n{}", i % 9)));
        let batch = RecordBatch::try_from_iter([
            ("name", Arc::new(names) as ArrayRef),
            (
                "n",
                Arc::new(Int64Array::from_iter_values(0..100)) as ArrayRef,
            ),
        ])
        .unwrap();
        write_cuboid(store.as_ref(), "aa", 7, &batch.schema(), &[batch], 1, 50).unwrap();
        let file = dir.path().join("aa/7/1.arrow");
        let stored = std::fs::read(&file).unwrap();

        // A damaged block is an error every time it is read, never kept.
        let mut damaged = stored.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        std::fs::write(&file, &damaged).unwrap();
        let reader = CachedSegments::new(store, TEST_BLOCK_CACHE);
        let meta = reader.manifest("aa", 7).unwrap().blocks[1].clone();
        for _ in 0..2 {
            let err = reader.string_dictionary("aa", 7, 1, &meta, 0).unwrap_err();
            assert!(err.to_string().contains("checksum mismatch"), "{err}");
        }
        std::fs::write(&file, &stored).unwrap();
        let names = reader.string_dictionary("aa", 7, 1, &meta, 0).unwrap();
        assert_eq!(names.len(), 50);
        // Its other columns come from the bytes already read and checked: the file is gone.
        std::fs::remove_file(&file).unwrap();
        let n = reader.block("aa", 7, 1, &meta, Some(&[1])).unwrap();
        let n = n.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(n.values().to_vec(), (50..100).collect::<Vec<i64>>());
        let whole = reader.block("aa", 7, 1, &meta, None).unwrap();
        assert_eq!(whole.num_columns(), 2);
        // Another block still reads its own file.
        assert_eq!(
            reader
                .block("aa", 7, 0, &meta_of(&reader, 0), Some(&[1]))
                .unwrap()
                .num_rows(),
            50
        );
    }

    fn meta_of(reader: &CachedSegments, block: usize) -> BlockMeta {
        reader.manifest("aa", 7).unwrap().blocks[block].clone()
    }
}
