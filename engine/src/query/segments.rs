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
    decode_block_columns, decode_verified_block_columns_as, read_manifest, verify_block, StringForm,
};
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

/// Decoded blocks kept in memory.
const BLOCK_CACHE_BYTES: u64 = 1 << 30;

/// Stored bytes of the blocks read last, checked against their manifests. A scan decodes a
/// block's filter columns, its other columns and its string ids in separate calls; without
/// these each call read the whole block file again and checksummed it again (a third of a
/// base-cuboid query's first run went to reading, page faults and checksums).
const RAW_BLOCK_CACHE_BYTES: u64 = 64 << 20;

/// A [`SegmentReader`] over a [`SegmentStore`] with caches: segments are immutable once READY,
/// so nothing cached here goes stale; [`CachedSegments::clear`] only frees memory.
pub(crate) struct CachedSegments {
    store: Arc<dyn SegmentStore>,
    manifests: Mutex<HashMap<(String, CuboidId), Arc<CuboidManifest>>>,
    stats: Mutex<HashMap<(String, CuboidId), Arc<BlockStats>>>,
    columns: LruCache<ColumnKey, (FieldRef, ArrayRef)>,
    raw: LruCache<(String, CuboidId, u32), Bytes>,
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
    pub fn new(store: Arc<dyn SegmentStore>) -> Self {
        CachedSegments {
            store,
            manifests: Mutex::new(HashMap::new()),
            stats: Mutex::new(HashMap::new()),
            columns: LruCache::new(BLOCK_CACHE_BYTES),
            raw: LruCache::new(RAW_BLOCK_CACHE_BYTES),
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
            let bytes = self.store.get_block(segment, cuboid, block)?;
            return decode_block_columns(&bytes, meta, segment, cuboid, block, columns);
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
    use datafusion::arrow::array::{Int64Array, StringArray};

    #[test]
    fn a_block_is_read_and_checked_once_for_all_its_columns() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalSegmentStore::open(dir.path()).unwrap());
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
        let reader = CachedSegments::new(store);
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
