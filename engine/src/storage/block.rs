//! Block encoding (Arrow IPC stream, zstd-compressed buffers), checksums and per-block stats,
//! and reading/writing whole cuboids through a [`SegmentStore`].

use std::io::Cursor;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, max, max_string, min, min_string};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Int16Type, Int32Type, Int64Type, Int8Type, SchemaRef,
};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use datafusion::arrow::ipc::CompressionType;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::SegmentStore;
use crate::error::{Error, Result};
use crate::model::CuboidId;

/// What a reader needs to know about one block without reading it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockMeta {
    pub rows: u32,
    pub bytes: u64,
    /// CRC-32 (IEEE) of the stored bytes.
    pub crc32: u32,
    /// Per dimension column (in cuboid column order): smallest and largest value, `null`
    /// when the block has no non-null value or the type has no stats.
    pub min: Vec<Value>,
    pub max: Vec<Value>,
}

/// The manifest of one stored cuboid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CuboidManifest {
    pub cuboid: CuboidId,
    pub rows: u64,
    /// Names of the dimension columns (a prefix of every block's columns).
    pub dimensions: Vec<String>,
    pub blocks: Vec<BlockMeta>,
}

impl CuboidManifest {
    pub fn bytes(&self) -> u64 {
        self.blocks.iter().map(|b| b.bytes).sum()
    }
}

/// Encodes one batch as a self-contained IPC stream with zstd-compressed buffers.
pub fn encode_block(batch: &RecordBatch) -> Result<Vec<u8>> {
    let options = IpcWriteOptions::default().try_with_compression(Some(CompressionType::ZSTD))?;
    let mut out = Vec::new();
    {
        let mut w = StreamWriter::try_new_with_options(&mut out, &batch.schema(), options)?;
        w.write(batch)?;
        w.finish()?;
    }
    Ok(out)
}

/// Decodes a block after checking its checksum; errors name the segment, cuboid and block.
pub fn decode_block(
    bytes: &[u8],
    meta: &BlockMeta,
    segment: &str,
    cuboid: CuboidId,
    block: u32,
) -> Result<RecordBatch> {
    let what = || format!("block {block} of cuboid {cuboid} in segment {segment}");
    if bytes.len() as u64 != meta.bytes || crc32fast::hash(bytes) != meta.crc32 {
        return Err(Error::corrupt(
            what(),
            format!(
                "checksum mismatch (stored {} bytes crc {:08x}, expected {} bytes crc {:08x})",
                bytes.len(),
                crc32fast::hash(bytes),
                meta.bytes,
                meta.crc32
            ),
        ));
    }
    let reader = StreamReader::try_new(Cursor::new(bytes), None)
        .map_err(|e| Error::corrupt(what(), e.to_string()))?;
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::corrupt(what(), e.to_string()))?;
    let batch = concat_batches(&schema, &batches)?;
    if batch.num_rows() as u32 != meta.rows {
        return Err(Error::corrupt(
            what(),
            format!("{} rows, manifest says {}", batch.num_rows(), meta.rows),
        ));
    }
    Ok(batch)
}

fn stat(array: &ArrayRef, want_min: bool) -> Value {
    macro_rules! prim {
        ($t:ty) => {{
            let a = array.as_primitive::<$t>();
            let v = if want_min { min(a) } else { max(a) };
            v.map(|v| Value::from(v as i64)).unwrap_or(Value::Null)
        }};
    }
    match array.data_type() {
        DataType::Int8 => prim!(Int8Type),
        DataType::Int16 => prim!(Int16Type),
        DataType::Int32 => prim!(Int32Type),
        DataType::Int64 => prim!(Int64Type),
        DataType::Date32 => prim!(Date32Type),
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            let v = if want_min {
                min_string(a)
            } else {
                max_string(a)
            };
            v.map(Value::from).unwrap_or(Value::Null)
        }
        _ => Value::Null,
    }
}

/// Cuts `batches` (already sorted in rowkey order; the first `dims` columns are dimensions)
/// into blocks of at most `block_rows` rows, writes them and the manifest. Returns the manifest.
pub fn write_cuboid(
    store: &dyn SegmentStore,
    segment: &str,
    cuboid: CuboidId,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    dims: usize,
    block_rows: usize,
) -> Result<CuboidManifest> {
    let mut blocks = Vec::new();
    let mut rows = 0u64;
    let mut write = |slice: &RecordBatch| -> Result<()> {
        let bytes = encode_block(slice)?;
        let cols = &slice.columns()[..dims];
        blocks.push(BlockMeta {
            rows: slice.num_rows() as u32,
            bytes: bytes.len() as u64,
            crc32: crc32fast::hash(&bytes),
            min: cols.iter().map(|c| stat(c, true)).collect(),
            max: cols.iter().map(|c| stat(c, false)).collect(),
        });
        store.put_block(segment, cuboid, blocks.len() as u32 - 1, &bytes)?;
        rows += slice.num_rows() as u64;
        Ok(())
    };
    // Re-slice so every block but the last is exactly `block_rows` rows.
    let all = concat_batches(schema, batches)?;
    let mut offset = 0;
    while offset < all.num_rows() {
        let len = block_rows.min(all.num_rows() - offset);
        write(&all.slice(offset, len))?;
        offset += len;
    }
    if all.num_rows() == 0 {
        write(&RecordBatch::new_empty(schema.clone()))?;
    }
    let manifest = CuboidManifest {
        cuboid,
        rows,
        dimensions: schema.fields()[..dims]
            .iter()
            .map(|f| f.name().clone())
            .collect(),
        blocks,
    };
    store.put_manifest(
        segment,
        cuboid,
        &serde_json::to_vec(&manifest).expect("manifest serializes"),
    )?;
    Ok(manifest)
}

/// Reads a cuboid's manifest.
pub fn read_manifest(
    store: &dyn SegmentStore,
    segment: &str,
    cuboid: CuboidId,
) -> Result<CuboidManifest> {
    let bytes = store.get_manifest(segment, cuboid)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::corrupt(
            format!("manifest of cuboid {cuboid} in segment {segment}"),
            e.to_string(),
        )
    })
}

/// Calls `f` with each non-empty block of a cuboid in order, verifying checksums; holds one
/// block in memory at a time.
pub fn for_each_block(
    store: &dyn SegmentStore,
    segment: &str,
    cuboid: CuboidId,
    mut f: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<CuboidManifest> {
    let manifest = read_manifest(store, segment, cuboid)?;
    for (i, meta) in manifest.blocks.iter().enumerate() {
        let bytes = store.get_block(segment, cuboid, i as u32)?;
        let batch = decode_block(&bytes, meta, segment, cuboid, i as u32)?;
        if batch.num_rows() > 0 {
            f(batch)?;
        }
    }
    Ok(manifest)
}

/// Reads every block of a cuboid, verifying checksums.
pub fn read_cuboid(
    store: &dyn SegmentStore,
    segment: &str,
    cuboid: CuboidId,
) -> Result<(CuboidManifest, Vec<RecordBatch>)> {
    let mut batches = Vec::new();
    let manifest = for_each_block(store, segment, cuboid, |b| {
        batches.push(b);
        Ok(())
    })?;
    Ok((manifest, batches))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalSegmentStore;
    use datafusion::arrow::array::{Int32Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn batch(n: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("d_year", DataType::Int32, true),
            Field::new("c_city", DataType::Utf8, true),
            Field::new("revenue", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from_iter_values(
                    (0..n as i32).map(|i| 1992 + i / 10),
                )),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("CITY{:04}", i)),
                )),
                Arc::new(Int64Array::from_iter_values(0..n as i64)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn cuboid_round_trip_with_stats() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSegmentStore::open(dir.path()).unwrap();
        let b = batch(25);
        let m = write_cuboid(
            &store,
            "abc",
            7,
            &b.schema(),
            std::slice::from_ref(&b),
            2,
            10,
        )
        .unwrap();
        assert_eq!(m.rows, 25);
        assert_eq!(m.blocks.len(), 3);
        assert_eq!(
            m.blocks[0].min,
            vec![Value::from(1992), Value::from("CITY0000")]
        );
        assert_eq!(
            m.blocks[2].max,
            vec![Value::from(1994), Value::from("CITY0024")]
        );
        let (m2, got) = read_cuboid(&store, "abc", 7).unwrap();
        assert_eq!(m, m2);
        assert_eq!(concat_batches(&b.schema(), &got).unwrap(), b);
    }

    #[test]
    fn corrupt_block_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSegmentStore::open(dir.path()).unwrap();
        let b = batch(25);
        write_cuboid(&store, "abc", 7, &b.schema(), &[b], 2, 10).unwrap();
        let f = dir.path().join("abc/7/1.arrow");
        let mut bytes = std::fs::read(&f).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        std::fs::write(&f, bytes).unwrap();
        let err = read_cuboid(&store, "abc", 7).unwrap_err().to_string();
        assert!(
            err.contains("block 1 of cuboid 7 in segment abc") && err.contains("checksum"),
            "{err}"
        );
        // Garbage that happens to match size and checksum of nothing decodes to an error too.
        let meta = BlockMeta {
            rows: 1,
            bytes: 3,
            crc32: crc32fast::hash(b"xyz"),
            min: vec![],
            max: vec![],
        };
        let err = decode_block(b"xyz", &meta, "abc", 7, 0).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }
}
