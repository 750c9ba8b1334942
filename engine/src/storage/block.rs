//! Block encoding (Parquet since store version 4, zstd Arrow IPC before: both decode),
//! checksums and per-block stats,
//! and reading/writing whole cuboids through a [`SegmentStore`].

use std::io::Cursor;

use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, DictionaryArray, PrimitiveArray,
    RecordBatch, RecordBatchOptions, StringArray,
};
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::buffer::ScalarBuffer;
use datafusion::arrow::compute::{cast, concat_batches, max, max_string, min, min_string};
use datafusion::arrow::datatypes::{
    ArrowDictionaryKeyType, ArrowNativeType, ArrowPrimitiveType, DataType, Date32Type, Date64Type,
    Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, Schema,
    SchemaRef, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use datafusion::arrow::ipc::CompressionType;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::parquet_block::Footer;
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
    /// when the block has no non-null value or the type has no stats. JSON is only the
    /// manifest's wire form: readers turn a column's values into one typed Arrow array with
    /// [`stat_array`], the inverse of the writer's encoding.
    pub min: Vec<Value>,
    pub max: Vec<Value>,
    /// Per dimension column: how many of the block's rows are null (empty in manifests
    /// written before null counts were kept, which then prune no `IS [NOT] NULL`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nulls: Vec<u64>,
    /// Where the block's parts are and their checksums, so that a reader fetches and checks
    /// only the column chunks it decodes; `None` in manifests written before (and for Arrow
    /// IPC blocks), whose blocks are read whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sections: Option<BlockSections>,
}

/// The checksummed parts of a Parquet block: its footer (the last `footer_bytes` bytes) and
/// its column chunks (their byte ranges are in the footer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockSections {
    pub footer_bytes: u64,
    /// CRC-32 (IEEE) of the footer bytes.
    pub footer_crc32: u32,
    /// CRC-32 of each column chunk, in the footer's order (row group by row group).
    pub column_crc32: Vec<u32>,
}

impl BlockSections {
    /// The sections of an encoded block (`None` for an Arrow IPC block).
    pub fn of(bytes: &[u8]) -> Result<Option<BlockSections>> {
        if !super::parquet_block::is_parquet(bytes) {
            return Ok(None);
        }
        let (footer_bytes, chunks) = super::parquet_block::sections(bytes)
            .map_err(|e| Error::invalid("block", format!("an encoded block's footer: {e}")))?;
        let crc = |(at, len): (u64, u64)| {
            bytes
                .get(at as usize..(at + len) as usize)
                .map(crc32fast::hash)
                .ok_or_else(|| Error::invalid("block", "a column chunk past the block's end"))
        };
        Ok(Some(BlockSections {
            footer_bytes,
            footer_crc32: crc((bytes.len() as u64 - footer_bytes, footer_bytes))?,
            column_crc32: chunks.into_iter().map(crc).collect::<Result<_>>()?,
        }))
    }
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

/// Encodes one batch as a block: a Parquet file of one row group (store version 4, see
/// [`super::parquet_block`]). [`decode_block`] reads it and the IPC blocks of older stores.
pub fn encode_block(batch: &RecordBatch) -> Result<Vec<u8>> {
    super::parquet_block::encode(batch)
}

/// Encodes one batch in the block format of store versions ≤ 3: a self-contained IPC stream
/// with zstd-compressed buffers, strings dictionary-encoded. Kept so tests and benchmarks can
/// write old blocks; the build writes [`encode_block`].
pub fn encode_block_ipc(batch: &RecordBatch) -> Result<Vec<u8>> {
    let batch = dictionary_encode_strings(batch)?;
    let options = IpcWriteOptions::default().try_with_compression(Some(CompressionType::ZSTD))?;
    let mut out = Vec::new();
    {
        let mut w = StreamWriter::try_new_with_options(&mut out, &batch.schema(), options)?;
        w.write(&batch)?;
        w.finish()?;
    }
    Ok(out)
}

fn dictionary_encode_strings(batch: &RecordBatch) -> Result<RecordBatch> {
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    recast_columns(batch, |t| (t == &DataType::Utf8).then(|| dict.clone()))
}

/// Undoes [`dictionary_encode_strings`]: dictionary columns become plain columns of their
/// value type (blocks written before dictionaries were used decode unchanged).
fn plain_columns(batch: &RecordBatch) -> Result<RecordBatch> {
    recast_columns(batch, |t| match t {
        DataType::Dictionary(_, value) => Some(value.as_ref().clone()),
        _ => None,
    })
}

/// Casts every column for which `target` names a new type (names and nullability kept);
/// returns the batch itself when no column changes.
fn recast_columns(
    batch: &RecordBatch,
    target: impl Fn(&DataType) -> Option<DataType>,
) -> Result<RecordBatch> {
    let schema = batch.schema();
    let targets: Vec<Option<DataType>> = schema
        .fields()
        .iter()
        .map(|f| target(f.data_type()))
        .collect();
    if targets.iter().all(Option::is_none) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for ((f, c), to) in schema.fields().iter().zip(batch.columns()).zip(targets) {
        match to {
            Some(t) => {
                columns.push(cast(c, &t)?);
                fields.push(f.as_ref().clone().with_data_type(t));
            }
            None => {
                fields.push(f.as_ref().clone());
                columns.push(c.clone());
            }
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// The checksum a [`BlockMeta`] keeps of a block's stored bytes (CRC-32, IEEE).
pub fn checksum(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Decodes a block after checking its checksum; errors name the segment, cuboid and block.
pub fn decode_block(
    bytes: &[u8],
    meta: &BlockMeta,
    segment: &str,
    cuboid: CuboidId,
    block: u32,
) -> Result<RecordBatch> {
    decode_block_columns(bytes, meta, segment, cuboid, block, None)
}

/// [`decode_block`] of only the block's columns `columns` (indexes into the stored schema, in
/// the order wanted; `None` = all). Unread columns are skipped without being decompressed:
/// a query that needs two dimensions and one measure never pays for the others.
pub fn decode_block_columns(
    bytes: &[u8],
    meta: &BlockMeta,
    segment: &str,
    cuboid: CuboidId,
    block: u32,
    columns: Option<&[usize]>,
) -> Result<RecordBatch> {
    decode_block_columns_as(
        bytes,
        meta,
        segment,
        cuboid,
        block,
        columns,
        StringForm::Plain,
    )
}

/// How a decoded block's string columns are typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StringForm {
    /// `Utf8`, the type the cuboid's schema declares.
    Plain,
    /// A dictionary of the block's distinct values as stored: a filter on the column is
    /// evaluated once per distinct value of the block instead of once per row. The ids are
    /// `UInt8` up to 256 values, `UInt16` up to 65,536, `Int32` past that (checked).
    Dictionary,
}

/// [`decode_block_columns`] with string columns in the form `strings`.
pub fn decode_block_columns_as(
    bytes: &[u8],
    meta: &BlockMeta,
    segment: &str,
    cuboid: CuboidId,
    block: u32,
    columns: Option<&[usize]>,
    strings: StringForm,
) -> Result<RecordBatch> {
    verify_block(bytes, meta, segment, cuboid, block)?;
    let bytes = Bytes::copy_from_slice(bytes);
    decode_verified_block_columns_as(&bytes, meta, segment, cuboid, block, columns, strings)
}

/// Checks a block's stored bytes against its manifest entry: their size and checksum.
pub fn verify_block(
    bytes: &[u8],
    meta: &BlockMeta,
    segment: &str,
    cuboid: CuboidId,
    block: u32,
) -> Result<()> {
    if bytes.len() as u64 != meta.bytes || crc32fast::hash(bytes) != meta.crc32 {
        return Err(Error::corrupt(
            format!("block {block} of cuboid {cuboid} in segment {segment}"),
            format!(
                "checksum mismatch (stored {} bytes crc {:08x}, expected {} bytes crc {:08x})",
                bytes.len(),
                crc32fast::hash(bytes),
                meta.bytes,
                meta.crc32
            ),
        ));
    }
    Ok(())
}

/// [`decode_block_columns_as`] of bytes [`verify_block`] has passed: a reader that keeps
/// checked bytes decodes more of their columns without checksumming (or copying) them again.
pub fn decode_verified_block_columns_as(
    bytes: &Bytes,
    meta: &BlockMeta,
    segment: &str,
    cuboid: CuboidId,
    block: u32,
    columns: Option<&[usize]>,
    strings: StringForm,
) -> Result<RecordBatch> {
    let dictionary = strings == StringForm::Dictionary;
    let what = || format!("block {block} of cuboid {cuboid} in segment {segment}");
    let batch = if super::parquet_block::is_parquet(bytes) {
        super::parquet_block::decode(bytes.clone(), columns, dictionary)
            .map_err(|e| Error::corrupt(what(), e))?
    } else {
        decode_ipc(bytes, columns, dictionary).map_err(|e| Error::corrupt(what(), e.to_string()))?
    };
    checked_decoded(batch, meta, dictionary, &what)
}

/// Whether reading `columns` of a block goes by column chunk (its footer and the chunks the
/// columns need, [`read_block_columns_as`]) rather than the whole block: when some columns
/// are asked for, the manifest entry has [`BlockSections`] and the store reads byte ranges.
pub fn reads_by_chunk(
    store: &dyn SegmentStore,
    meta: &BlockMeta,
    columns: Option<&[usize]>,
) -> bool {
    columns.is_some() && meta.sections.is_some() && store.reads_ranges()
}

/// The columns `columns` of one block (`None`: all), decoded and checked, read the cheapest
/// way the store and the manifest entry allow (see [`reads_by_chunk`]); nothing cached.
pub fn read_block_columns(
    store: &dyn SegmentStore,
    segment: &str,
    cuboid: CuboidId,
    block: u32,
    meta: &BlockMeta,
    columns: Option<&[usize]>,
) -> Result<RecordBatch> {
    if reads_by_chunk(store, meta, columns) {
        let footer = read_footer(store, segment, cuboid, block, meta)?;
        return read_block_columns_as(
            store,
            segment,
            cuboid,
            block,
            meta,
            &footer,
            columns,
            StringForm::Plain,
        );
    }
    let bytes = store.get_block(segment, cuboid, block)?;
    decode_block_columns(&bytes, meta, segment, cuboid, block, columns)
}

/// The footer of a block whose manifest entry has [`BlockSections`], read by range and
/// checked against its checksum; errors name the segment, cuboid and block.
pub fn read_footer(
    store: &dyn SegmentStore,
    segment: &str,
    cuboid: CuboidId,
    block: u32,
    meta: &BlockMeta,
) -> Result<Footer> {
    let what = || format!("block {block} of cuboid {cuboid} in segment {segment}");
    let sections = meta
        .sections
        .as_ref()
        .ok_or_else(|| Error::corrupt(what(), "its manifest entry has no sections"))?;
    let footer_bytes = sections.footer_bytes;
    if footer_bytes < 8 || footer_bytes > meta.bytes {
        return Err(Error::corrupt(
            what(),
            format!("a footer of {footer_bytes} bytes in {} bytes", meta.bytes),
        ));
    }
    let at = meta.bytes - footer_bytes;
    let bytes = store
        .get_block_ranges(segment, cuboid, block, &[(at, footer_bytes)])?
        .pop()
        .unwrap_or_default();
    check_part(&bytes, footer_bytes, sections.footer_crc32, "footer", &what)?;
    let footer = Footer::parse(&bytes).map_err(|e| Error::corrupt(what(), e))?;
    let chunks = footer.chunks();
    if chunks.len() != sections.column_crc32.len() {
        return Err(Error::corrupt(
            what(),
            format!(
                "{} column chunks, the manifest has {} checksums",
                chunks.len(),
                sections.column_crc32.len()
            ),
        ));
    }
    if let Some(&(o, l)) = chunks.iter().find(|&&(o, l)| o.saturating_add(l) > at) {
        return Err(Error::corrupt(
            what(),
            format!(
                "a column chunk at {o}..{} overlaps the footer at {at}",
                o.saturating_add(l)
            ),
        ));
    }
    Ok(footer)
}

/// Decodes the columns `columns` of a block (see [`decode_block_columns_as`]) reading only the
/// column chunks they need, each checked against its checksum; `footer` is the block's
/// [`read_footer`].
#[allow(clippy::too_many_arguments)]
pub fn read_block_columns_as(
    store: &dyn SegmentStore,
    segment: &str,
    cuboid: CuboidId,
    block: u32,
    meta: &BlockMeta,
    footer: &Footer,
    columns: Option<&[usize]>,
    strings: StringForm,
) -> Result<RecordBatch> {
    let what = || format!("block {block} of cuboid {cuboid} in segment {segment}");
    let crcs = meta
        .sections
        .as_ref()
        .map(|s| s.column_crc32.as_slice())
        .unwrap_or_default();
    let chunks = footer.chunks();
    let wanted = footer
        .chunks_for(columns)
        .map_err(|e| Error::corrupt(what(), e))?;
    let ranges: Vec<(u64, u64)> = wanted.iter().map(|&i| chunks[i]).collect();
    let read = store.get_block_ranges(segment, cuboid, block, &ranges)?;
    let mut parts = Vec::with_capacity(read.len());
    for ((&i, &(at, len)), bytes) in wanted.iter().zip(&ranges).zip(read) {
        let crc = crcs.get(i).copied().unwrap_or_default();
        check_part(&bytes, len, crc, &format!("column chunk {i}"), &what)?;
        parts.push((at, bytes));
    }
    let dictionary = strings == StringForm::Dictionary;
    let batch = super::parquet_block::decode_parts(footer, meta.bytes, parts, columns, dictionary)
        .map_err(|e| Error::corrupt(what(), e))?;
    checked_decoded(batch, meta, dictionary, &what)
}

fn check_part(
    bytes: &[u8],
    len: u64,
    crc: u32,
    part: &str,
    what: &dyn Fn() -> String,
) -> Result<()> {
    if bytes.len() as u64 != len || crc32fast::hash(bytes) != crc {
        return Err(Error::corrupt(
            what(),
            format!(
                "checksum mismatch in its {part} (read {} bytes crc {:08x}, expected {len} bytes crc {crc:08x})",
                bytes.len(),
                crc32fast::hash(bytes),
            ),
        ));
    }
    Ok(())
}

/// A decoded block checked against its manifest entry's row count, string dictionaries
/// narrowed (see [`StringForm::Dictionary`]).
fn checked_decoded(
    batch: RecordBatch,
    meta: &BlockMeta,
    dictionary: bool,
    what: &dyn Fn() -> String,
) -> Result<RecordBatch> {
    if batch.num_rows() as u32 != meta.rows {
        return Err(Error::corrupt(
            what(),
            format!("{} rows, manifest says {}", batch.num_rows(), meta.rows),
        ));
    }
    if dictionary {
        return narrow_dictionary_keys(&batch).map_err(|e| Error::corrupt(what(), e));
    }
    Ok(batch)
}

/// Checks the ids of a block's dictionary column against its `values` distinct values, so
/// that lookups by id stay in range: a non-null row's id past them is damaged data, an error
/// rather than a wrong answer (a null row's id slot may hold anything).
pub fn check_dictionary_ids<K: ArrowPrimitiveType>(
    keys: &PrimitiveArray<K>,
    values: usize,
) -> std::result::Result<(), String> {
    let ids = keys.values();
    // One branch-free pass over every slot (it vectorizes; a negative id becomes a large
    // one) settles the usual case; the exact pass, which skips null rows, runs only when
    // some slot is out of range.
    let largest = ids.iter().fold(0usize, |m, id| m.max(id.as_usize()));
    if largest < values {
        return Ok(());
    }
    let out_of_range = |i: usize| ids[i].as_usize() >= values;
    let bad = match keys.nulls() {
        None => (0..ids.len()).find(|&i| out_of_range(i)),
        Some(nulls) => (0..ids.len()).find(|&i| nulls.is_valid(i) && out_of_range(i)),
    };
    match bad {
        Some(i) => Err(format!("dictionary id {:?} out of {values} values", ids[i])),
        None => Ok(()),
    }
}

/// Gives every `Dictionary(Int32, _)` column of `batch` the narrowest key type its values
/// allow, `UInt8` up to 256 values and `UInt16` up to 65,536, after checking its ids. A
/// scan filtering a string dimension reads every row's id (millions on a base cuboid): a
/// quarter of the bytes to read and to keep in the block cache.
fn narrow_dictionary_keys(batch: &RecordBatch) -> std::result::Result<RecordBatch, String> {
    fn with_keys<K: ArrowDictionaryKeyType>(
        keys: &PrimitiveArray<Int32Type>,
        values: &ArrayRef,
    ) -> std::result::Result<ArrayRef, String> {
        // Checked ids fit; a null row's slot may wrap, it is never read.
        let narrow: ScalarBuffer<K::Native> = keys
            .values()
            .iter()
            .map(|&k| K::Native::usize_as(k as usize))
            .collect();
        let keys = PrimitiveArray::<K>::new(narrow, keys.nulls().cloned());
        let array =
            DictionaryArray::<K>::try_new(keys, values.clone()).map_err(|e| e.to_string())?;
        Ok(Arc::new(array))
    }
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let column = match c.as_dictionary_opt::<Int32Type>() {
            Some(d) => {
                let values = d.values();
                check_dictionary_ids(d.keys(), values.len())?;
                match values.len() {
                    0..=256 => with_keys::<UInt8Type>(d.keys(), values)?,
                    257..=65_536 => with_keys::<UInt16Type>(d.keys(), values)?,
                    _ => c.clone(),
                }
            }
            None => c.clone(),
        };
        fields.push(
            f.as_ref()
                .clone()
                .with_data_type(column.data_type().clone()),
        );
        columns.push(column);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)
        .map_err(|e| e.to_string())
}

/// Decodes an IPC block (store versions ≤ 3): the stream reader's projection skips the
/// buffers of unread columns. Strings are stored dictionary-encoded: `dictionary` keeps them so.
fn decode_ipc(bytes: &[u8], columns: Option<&[usize]>, dictionary: bool) -> Result<RecordBatch> {
    let reader = StreamReader::try_new(Cursor::new(bytes), columns.map(<[usize]>::to_vec))?;
    // The reader's schema is the stored one; its batches carry the projected one.
    let schema = match columns {
        Some(c) => Arc::new(reader.schema().project(c)?),
        None => reader.schema(),
    };
    let batches: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>()?;
    let batch = concat_batches(&schema, &batches)?;
    if dictionary {
        // Blocks written before strings were dictionary-encoded hold plain `Utf8`.
        dictionary_encode_strings(&batch)
    } else {
        plain_columns(&batch)
    }
}

/// The smallest (`want_min`) or largest non-null value of a dimension column in its manifest
/// form: integers, dates and timestamps as JSON integers, floats as numbers, decimals as the
/// unscaled integer in a string (JSON numbers cannot hold an i128), strings and booleans as
/// themselves; `null` for an all-null column or a type without stats.
fn stat(array: &ArrayRef, want_min: bool) -> Value {
    macro_rules! prim {
        ($t:ty, $to:expr) => {{
            let a = array.as_primitive::<$t>();
            let v = if want_min { min(a) } else { max(a) };
            v.map($to).unwrap_or(Value::Null)
        }};
    }
    let int = |v: i64| Value::from(v);
    match array.data_type() {
        DataType::Int8 => prim!(Int8Type, |v| int(v as i64)),
        DataType::Int16 => prim!(Int16Type, |v| int(v as i64)),
        DataType::Int32 => prim!(Int32Type, |v| int(v as i64)),
        DataType::Int64 => prim!(Int64Type, int),
        DataType::UInt8 => prim!(UInt8Type, |v| Value::from(v as u64)),
        DataType::UInt16 => prim!(UInt16Type, |v| Value::from(v as u64)),
        DataType::UInt32 => prim!(UInt32Type, |v| Value::from(v as u64)),
        DataType::UInt64 => prim!(UInt64Type, Value::from),
        DataType::Date32 => prim!(Date32Type, |v| int(v as i64)),
        DataType::Date64 => prim!(Date64Type, int),
        DataType::Timestamp(TimeUnit::Second, _) => prim!(TimestampSecondType, int),
        DataType::Timestamp(TimeUnit::Millisecond, _) => prim!(TimestampMillisecondType, int),
        DataType::Timestamp(TimeUnit::Microsecond, _) => prim!(TimestampMicrosecondType, int),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => prim!(TimestampNanosecondType, int),
        // NaN has no place in a min/max range: such a block keeps no float stats.
        DataType::Float32 | DataType::Float64 => {
            let a = cast(array, &DataType::Float64).ok();
            let Some(a) = a else { return Value::Null };
            let a = a.as_primitive::<Float64Type>();
            if a.iter().flatten().any(f64::is_nan) {
                return Value::Null;
            }
            let v = if want_min { min(a) } else { max(a) };
            v.and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .unwrap_or(Value::Null)
        }
        DataType::Decimal128(..) => prim!(Decimal128Type, |v| Value::from(v.to_string())),
        DataType::Boolean => {
            let a = array.as_boolean();
            let v = if want_min {
                datafusion::arrow::compute::min_boolean(a)
            } else {
                datafusion::arrow::compute::max_boolean(a)
            };
            v.map(Value::from).unwrap_or(Value::Null)
        }
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

/// One typed Arrow array of `data_type` from stat values written by the block writer (the
/// inverse of its encoding); a value that does not parse as that type, or `null`, becomes a
/// null entry (unknown, so pruning keeps the block).
pub fn stat_array<'a>(data_type: &DataType, values: impl Iterator<Item = &'a Value>) -> ArrayRef {
    let as_i64 = |v: &Value| v.as_i64();
    macro_rules! prim {
        ($t:ty, $f:expr) => {{
            let a: PrimitiveArray<$t> = values.map($f).collect();
            Arc::new(a.with_data_type(data_type.clone())) as ArrayRef
        }};
    }
    match data_type {
        DataType::Int8 => prim!(Int8Type, |v| as_i64(v).and_then(|x| i8::try_from(x).ok())),
        DataType::Int16 => prim!(Int16Type, |v| as_i64(v).and_then(|x| i16::try_from(x).ok())),
        DataType::Int32 => prim!(Int32Type, |v| as_i64(v).and_then(|x| i32::try_from(x).ok())),
        DataType::Int64 => prim!(Int64Type, as_i64),
        DataType::UInt8 => prim!(UInt8Type, |v| v.as_u64().and_then(|x| u8::try_from(x).ok())),
        DataType::UInt16 => prim!(UInt16Type, |v| v
            .as_u64()
            .and_then(|x| u16::try_from(x).ok())),
        DataType::UInt32 => prim!(UInt32Type, |v| v
            .as_u64()
            .and_then(|x| u32::try_from(x).ok())),
        DataType::UInt64 => prim!(UInt64Type, |v| v.as_u64()),
        DataType::Date32 => prim!(Date32Type, |v| as_i64(v)
            .and_then(|x| i32::try_from(x).ok())),
        DataType::Date64 => prim!(Date64Type, as_i64),
        DataType::Timestamp(TimeUnit::Second, _) => prim!(TimestampSecondType, as_i64),
        DataType::Timestamp(TimeUnit::Millisecond, _) => prim!(TimestampMillisecondType, as_i64),
        DataType::Timestamp(TimeUnit::Microsecond, _) => prim!(TimestampMicrosecondType, as_i64),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => prim!(TimestampNanosecondType, as_i64),
        DataType::Float32 => prim!(Float32Type, |v| v.as_f64().map(|x| x as f32)),
        DataType::Float64 => prim!(Float64Type, |v| v.as_f64()),
        DataType::Decimal128(..) => prim!(Decimal128Type, |v| v
            .as_str()
            .and_then(|s| s.parse::<i128>().ok())),
        DataType::Boolean => Arc::new(values.map(|v| v.as_bool()).collect::<BooleanArray>()),
        DataType::Utf8 => Arc::new(values.map(|v| v.as_str()).collect::<StringArray>()),
        other => new_null_array(other, values.count()),
    }
}

/// Writes one cuboid block by block as sorted batches arrive: every block but the last holds
/// exactly `block_rows` rows; [`CuboidWriter::finish`] writes the last block and the manifest.
/// Memory holds at most one block's worth of pending rows.
pub struct CuboidWriter<'a> {
    store: &'a dyn SegmentStore,
    segment: String,
    cuboid: CuboidId,
    schema: SchemaRef,
    dims: usize,
    block_rows: usize,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    blocks: Vec<BlockMeta>,
    rows: u64,
}

impl<'a> CuboidWriter<'a> {
    /// The first `dims` columns of `schema` are the dimensions.
    pub fn new(
        store: &'a dyn SegmentStore,
        segment: &str,
        cuboid: CuboidId,
        schema: SchemaRef,
        dims: usize,
        block_rows: usize,
    ) -> Self {
        CuboidWriter {
            store,
            segment: segment.to_string(),
            cuboid,
            schema,
            dims,
            block_rows: block_rows.max(1),
            pending: Vec::new(),
            pending_rows: 0,
            blocks: Vec::new(),
            rows: 0,
        }
    }

    /// Appends rows that sort after every row written so far.
    pub fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = (self.block_rows - self.pending_rows).min(batch.num_rows() - offset);
            self.pending.push(batch.slice(offset, take));
            self.pending_rows += take;
            offset += take;
            if self.pending_rows == self.block_rows {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let block = concat_batches(&self.schema, &self.pending)?;
        self.pending.clear();
        self.pending_rows = 0;
        let bytes = encode_block(&block)?;
        let cols = &block.columns()[..self.dims];
        self.blocks.push(BlockMeta {
            rows: block.num_rows() as u32,
            bytes: bytes.len() as u64,
            crc32: crc32fast::hash(&bytes),
            min: cols.iter().map(|c| stat(c, true)).collect(),
            max: cols.iter().map(|c| stat(c, false)).collect(),
            nulls: cols.iter().map(|c| c.null_count() as u64).collect(),
            sections: BlockSections::of(&bytes)?,
        });
        self.store.put_block(
            &self.segment,
            self.cuboid,
            self.blocks.len() as u32 - 1,
            &bytes,
        )?;
        self.rows += block.num_rows() as u64;
        Ok(())
    }

    /// Writes the last (possibly short; for an empty cuboid, empty) block and the manifest.
    pub fn finish(mut self) -> Result<CuboidManifest> {
        if self.pending_rows > 0 || self.blocks.is_empty() {
            self.flush()?;
        }
        let manifest = CuboidManifest {
            cuboid: self.cuboid,
            rows: self.rows,
            dimensions: self.schema.fields()[..self.dims]
                .iter()
                .map(|f| f.name().clone())
                .collect(),
            blocks: self.blocks,
        };
        self.store.put_manifest(
            &self.segment,
            self.cuboid,
            &serde_json::to_vec(&manifest).expect("manifest serializes"),
        )?;
        Ok(manifest)
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
    let mut w = CuboidWriter::new(store, segment, cuboid, schema.clone(), dims, block_rows);
    for b in batches {
        w.write(b.clone())?;
    }
    w.finish()
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
    fn a_block_decodes_only_the_columns_asked_for() {
        let b = batch(25);
        let bytes = encode_block(&b).unwrap();
        let meta = BlockMeta {
            rows: 25,
            bytes: bytes.len() as u64,
            crc32: crc32fast::hash(&bytes),
            min: vec![],
            max: vec![],
            nulls: vec![],
            sections: None,
        };
        let got = decode_block_columns(&bytes, &meta, "abc", 7, 0, Some(&[2, 1])).unwrap();
        assert_eq!(got, b.project(&[2, 1]).unwrap());
        let err = decode_block_columns(&bytes, &meta, "abc", 7, 0, Some(&[3])).unwrap_err();
        assert!(err.to_string().contains("block 0 of cuboid 7"), "{err}");
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
            nulls: vec![],
            sections: None,
        };
        let err = decode_block(b"xyz", &meta, "abc", 7, 0).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }

    fn meta_of(bytes: &[u8], rows: u32) -> BlockMeta {
        BlockMeta {
            rows,
            bytes: bytes.len() as u64,
            crc32: crc32fast::hash(bytes),
            min: vec![],
            max: vec![],
            nulls: vec![],
            sections: None,
        }
    }

    /// Every column type cuboids use, with nulls, runs and differences: dimensions (Int32,
    /// Date32, Utf8, Decimal128), measures (Int64 SUM/MIN/MAX equal in most rows, Float64,
    /// Binary sketch states).
    fn cuboid_like(n: usize) -> RecordBatch {
        use datafusion::arrow::array::{BinaryArray, Date32Array, Decimal128Array, Float64Array};
        let schema = Arc::new(Schema::new(vec![
            Field::new("d_year", DataType::Int32, false),
            Field::new("d_date", DataType::Date32, true),
            Field::new("c_city", DataType::Utf8, true),
            Field::new("price", DataType::Decimal128(15, 2), true),
            Field::new("row_count", DataType::Int64, false),
            Field::new("x_sum", DataType::Int64, false),
            Field::new("x_min", DataType::Int64, false),
            Field::new("x_max", DataType::Int64, true),
            Field::new("avg", DataType::Float64, true),
            Field::new("hll", DataType::Binary, true),
        ]));
        let x = |i: usize| ((i as i64 * 7919) % 100_003) * 13;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from_iter_values(
                (0..n).map(|i| 1992 + (i / 300) as i32),
            )),
            Arc::new(Date32Array::from_iter(
                (0..n).map(|i| (i % 17 != 0).then_some(8000 + (i / 3) as i32)),
            )),
            Arc::new(StringArray::from_iter((0..n).map(|i| {
                (i % 11 != 0).then(|| format!("CITY{:03}", (i / 40) % 250))
            }))),
            Arc::new(
                Decimal128Array::from_iter((0..n).map(|i| (i % 5 != 0).then_some(i as i128 * 101)))
                    .with_precision_and_scale(15, 2)
                    .unwrap(),
            ),
            Arc::new(Int64Array::from_iter_values(
                (0..n).map(|i| 1 + (i % 9 == 0) as i64),
            )),
            Arc::new(Int64Array::from_iter_values((0..n).map(x))),
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| {
                if i % 9 == 0 {
                    x(i) - 5
                } else {
                    x(i)
                }
            }))),
            Arc::new(Int64Array::from_iter(
                (0..n).map(|i| (i % 50 != 0).then(|| x(i))),
            )),
            Arc::new(Float64Array::from_iter(
                (0..n).map(|i| (i % 3 != 0).then_some(i as f64 / 7.0)),
            )),
            Arc::new(BinaryArray::from_iter(
                (0..n).map(|i| (i % 13 != 0).then(|| vec![(i % 7) as u8; 1 + i % 40])),
            )),
        ];
        RecordBatch::try_new(schema, cols).unwrap()
    }

    #[test]
    fn every_cuboid_column_type_round_trips_in_the_parquet_format() {
        for n in [0, 1, 9, 5000] {
            let b = cuboid_like(n);
            let bytes = encode_block(&b).unwrap();
            assert!(bytes.starts_with(b"PAR1"));
            let meta = meta_of(&bytes, n as u32);
            assert_eq!(
                decode_block(&bytes, &meta, "abc", 7, 0).unwrap(),
                b,
                "{n} rows"
            );
            // Projections in any order, including a difference without its reference.
            for cols in [vec![6], vec![9, 0], vec![2, 6, 5, 3], vec![7, 1, 8, 4]] {
                let got = decode_block_columns(&bytes, &meta, "abc", 7, 0, Some(&cols)).unwrap();
                assert_eq!(got, b.project(&cols).unwrap(), "{n} rows, {cols:?}");
            }
        }
        // MIN equals SUM in 8 of 9 rows: stored as a difference, recorded in the file.
        let b = cuboid_like(5000);
        let bytes = encode_block(&b).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("qilin.minus"), "no difference column");
        assert!(bytes.len() < encode_block_ipc(&b).unwrap().len());
    }

    #[test]
    fn old_ipc_blocks_still_decode() {
        let b = cuboid_like(3000);
        let bytes = encode_block_ipc(&b).unwrap();
        assert!(!bytes.starts_with(b"PAR1"));
        let meta = meta_of(&bytes, 3000);
        assert_eq!(decode_block(&bytes, &meta, "abc", 7, 0).unwrap(), b);
        let got = decode_block_columns(&bytes, &meta, "abc", 7, 0, Some(&[6, 2])).unwrap();
        assert_eq!(got, b.project(&[6, 2]).unwrap());
    }

    #[test]
    fn string_columns_decode_as_dictionaries_in_both_formats() {
        let b = cuboid_like(3000);
        // 250 distinct values at most: one byte per id.
        let dictionary = DataType::Dictionary(Box::new(DataType::UInt8), Box::new(DataType::Utf8));
        for bytes in [encode_block(&b).unwrap(), encode_block_ipc(&b).unwrap()] {
            let meta = meta_of(&bytes, 3000);
            let got = decode_block_columns_as(
                &bytes,
                &meta,
                "abc",
                7,
                0,
                Some(&[2, 0]),
                StringForm::Dictionary,
            )
            .unwrap();
            assert_eq!(got.column(0).data_type(), &dictionary);
            // The stored page dictionary, not one value per row.
            let values = got.column(0).as_any_dictionary().values().len();
            assert!(values <= 250, "{values} dictionary values");
            assert_eq!(&cast(got.column(0), &DataType::Utf8).unwrap(), b.column(2));
            assert_eq!(got.column(1), b.column(0));
        }
    }

    #[test]
    fn dictionary_keys_are_narrowed_to_their_values_and_checked() {
        // Every seventh row null below 1,000 rows; every value present.
        let strings = |rows: usize, distinct: usize| -> RecordBatch {
            let names = StringArray::from_iter((0..rows).map(|i| {
                (rows > 1000 || i % 7 != 3).then(|| format!("value-{:06}", i % distinct))
            }));
            RecordBatch::try_from_iter([("name", Arc::new(names) as ArrayRef)]).unwrap()
        };
        let key = |k: DataType| DataType::Dictionary(Box::new(k), Box::new(DataType::Utf8));
        for (rows, distinct, want) in [
            (1000, 256, key(DataType::UInt8)),
            (1000, 257, key(DataType::UInt16)),
            (70_000, 65_536, key(DataType::UInt16)),
            (70_000, 65_537, key(DataType::Int32)),
        ] {
            let b = strings(rows, distinct);
            for bytes in [encode_block(&b).unwrap(), encode_block_ipc(&b).unwrap()] {
                let meta = meta_of(&bytes, rows as u32);
                let got = decode_block_columns_as(
                    &bytes,
                    &meta,
                    "abc",
                    7,
                    0,
                    None,
                    StringForm::Dictionary,
                )
                .unwrap();
                assert_eq!(got.schema().field(0).data_type(), &want, "{distinct}");
                assert_eq!(got.column(0).data_type(), &want, "{distinct}");
                assert_eq!(&cast(got.column(0), &DataType::Utf8).unwrap(), b.column(0));
            }
        }
        // An id past the values is damage, found before the keys are narrowed (a narrowing
        // cast would wrap it into range or make it null).
        let values: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        let keys = PrimitiveArray::<Int32Type>::from(vec![Some(0), Some(258), None]);
        // SAFETY: only the checks below read it.
        let bad = unsafe { DictionaryArray::new_unchecked(keys, values) };
        let batch = RecordBatch::try_from_iter([("name", Arc::new(bad) as ArrayRef)]).unwrap();
        let err = narrow_dictionary_keys(&batch).unwrap_err();
        assert_eq!(err, "dictionary id 258 out of 2 values");
        let negative = PrimitiveArray::<Int32Type>::from(vec![-1]);
        assert_eq!(
            check_dictionary_ids(&negative, 2).unwrap_err(),
            "dictionary id -1 out of 2 values"
        );
        // A null row's slot may hold anything.
        let slots = PrimitiveArray::<Int32Type>::new(
            ScalarBuffer::from(vec![1, -9, 300]),
            Some(vec![true, false, false].into()),
        );
        assert_eq!(check_dictionary_ids(&slots, 2), Ok(()));
    }

    #[test]
    fn corrupt_parquet_blocks_are_errors_never_panics() {
        let b = cuboid_like(2000);
        let bytes = encode_block(&b).unwrap();
        // A wrong checksum is caught before decoding.
        let mut meta = meta_of(&bytes, 2000);
        meta.crc32 ^= 1;
        let err = decode_block(&bytes, &meta, "abc", 7, 3).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        // Bytes that pass the checksum (as if written corrupt) but are damaged: every single
        // flipped byte of a sample, truncations, and a wrong row count.
        let step = (bytes.len() / 400).max(1);
        for at in (0..bytes.len()).step_by(step) {
            let mut bad = bytes.clone();
            bad[at] ^= 0xA5;
            let meta = meta_of(&bad, 2000);
            if let Err(e) = decode_block(&bad, &meta, "abc", 7, 3) {
                assert!(matches!(e, Error::Corrupt { .. }), "byte {at}: {e}");
                assert!(e.to_string().contains("block 3 of cuboid 7"), "{e}");
            }
        }
        for len in [0, 3, 4, 12, bytes.len() / 2, bytes.len() - 1] {
            let bad = &bytes[..len];
            let err = decode_block(bad, &meta_of(bad, 2000), "abc", 7, 3).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{len}: {err}");
        }
        let err = decode_block(&bytes, &meta_of(&bytes, 1999), "abc", 7, 3).unwrap_err();
        assert!(err.to_string().contains("manifest says 1999"), "{err}");
        // A forged difference list is refused, not trusted.
        for forged in ["6:6", "6:9", "x", "5:4,6:5", "99:1"] {
            let s = super::super::parquet_block::parse_minus_for_test(forged, &b.schema());
            assert!(s.is_err(), "{forged}");
        }
    }
}
