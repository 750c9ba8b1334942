//! The Parquet block format (store version 4): one block = one Parquet file with one row
//! group, zstd pages, no statistics (the manifest keeps min/max and null counts).
//!
//! Why Parquet rather than zstd Arrow IPC: cuboid blocks are sorted by rowkey, so dimension
//! columns are long runs of few values that dictionary + RLE pages store in a fraction of a
//! byte per row, and wide integer measures shrink with delta / bit packing where IPC stores
//! every value at full width before zstd. Each integer column gets the encoding its values
//! suit (see [`plan_column`]).
//!
//! One transform on top of Parquet: an `Int64` column that equals an earlier `Int64` column
//! in most rows (SUM, MIN and MAX of the same source column over rows of one fact row each,
//! as in the base and near-base cuboids) is stored as its difference to that column, which is
//! mostly zeros and costs almost nothing. The file's key-value metadata [`MINUS_KEY`] lists
//! these pairs; the reader adds the reference column back (reading it even when only the
//! derived column was asked for).

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use bytes::{Buf, Bytes};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::compute::kernels::numeric::{add_wrapping, sub_wrapping};
use datafusion::arrow::datatypes::{DataType, Int64Type, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::{FooterTail, KeyValue, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::FOOTER_SIZE;
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result};

/// Every Parquet file starts (and ends) with these bytes; an Arrow IPC stream starts with
/// `0xFFFFFFFF` (the continuation marker), so the first four bytes tell the formats apart.
pub const MAGIC: &[u8; 4] = b"PAR1";

/// Key-value metadata entry listing `derived:reference` column index pairs (comma separated)
/// of columns stored as `derived - reference`.
pub const MINUS_KEY: &str = "qilin.minus";

/// zstd level of every page: levels above 3 gained under 3 % on SF 1 cuboids (mostly on
/// sketch states) at several times the encoding cost; decoding speed does not depend on it.
const ZSTD_LEVEL: i32 = 3;

/// Whether `bytes` are a Parquet block (else: an Arrow IPC block of store version ≤ 3).
pub fn is_parquet(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// How one column is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnPlan {
    pub dictionary: bool,
    /// The data page encoding (after a dictionary fallback, when `dictionary`).
    pub encoding: Encoding,
    /// Dictionary page size limit in bytes: past it the writer falls back to `encoding`.
    pub dictionary_limit: usize,
}

/// Chooses a column's encoding from two cheap counts over its values (measured on SF 1
/// cuboids, README "Performance"): strings and binary states are dictionary-encoded (sorted
/// dimensions become RLE runs of small ids; repeated sketch states are stored once);
/// integers with few distinct values likewise; integers in runs (a key repeated by the
/// rows of one order) compress best plain under zstd; other integers (measures, scattered
/// keys) with delta bit packing.
pub fn plan_column(array: &ArrayRef) -> ColumnPlan {
    let rows = array.len().max(1);
    let dict = |limit| ColumnPlan {
        dictionary: true,
        encoding: Encoding::PLAIN,
        dictionary_limit: limit,
    };
    let ints: Option<(usize, usize, usize)> = match array.data_type() {
        DataType::Int64 | DataType::Date64 | DataType::Timestamp(..) => {
            let a = datafusion::arrow::compute::cast(array, &DataType::Int64).ok();
            a.map(|a| int_shape(a.as_primitive::<Int64Type>().values(), rows, 8))
        }
        DataType::Int32 | DataType::Date32 | DataType::UInt32 => {
            let a = datafusion::arrow::compute::cast(array, &DataType::Int64).ok();
            a.map(|a| int_shape(a.as_primitive::<Int64Type>().values(), rows, 4))
        }
        DataType::Int8 | DataType::Int16 | DataType::UInt8 | DataType::UInt16 => {
            return dict(1 << 20)
        }
        _ => None,
    };
    match ints {
        None => dict(1 << 20),
        Some((distinct, runs, width)) => {
            let few = distinct <= rows / 8;
            if few {
                dict(distinct * width + 64)
            } else if runs * 2 <= rows {
                ColumnPlan {
                    dictionary: false,
                    encoding: Encoding::PLAIN,
                    dictionary_limit: 0,
                }
            } else {
                ColumnPlan {
                    dictionary: false,
                    encoding: Encoding::DELTA_BINARY_PACKED,
                    dictionary_limit: 0,
                }
            }
        }
    }
}

/// (distinct values up to `rows / 8 + 1`, value changes + 1, byte width) of an integer column.
fn int_shape(values: &[i64], rows: usize, width: usize) -> (usize, usize, usize) {
    let cap = rows / 8 + 1;
    let mut seen = HashSet::with_capacity(cap.min(4096));
    let mut runs = 0;
    let mut prev = None;
    for &v in values {
        if prev != Some(v) {
            runs += 1;
            prev = Some(v);
            if seen.len() <= cap {
                seen.insert(v);
            }
        }
    }
    (seen.len(), runs, width)
}

/// Columns stored as a difference: `(derived, reference)` index pairs. A non-null `Int64`
/// column equal to an earlier non-null, not itself derived `Int64` column in at least half of
/// its rows qualifies.
fn minus_pairs(batch: &RecordBatch) -> Vec<(usize, usize)> {
    let rows = batch.num_rows();
    if rows == 0 {
        return Vec::new();
    }
    let candidates: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| {
            let c = batch.column(i);
            c.data_type() == &DataType::Int64 && c.null_count() == 0
        })
        .collect();
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for (k, &d) in candidates.iter().enumerate() {
        let dv = batch.column(d).as_primitive::<Int64Type>().values();
        let best = candidates[..k]
            .iter()
            .filter(|r| !pairs.iter().any(|(x, _)| x == *r))
            .map(|&r| {
                let rv = batch.column(r).as_primitive::<Int64Type>().values();
                (dv.iter().zip(rv.iter()).filter(|(a, b)| a == b).count(), r)
            })
            .max();
        if let Some((equal, r)) = best {
            if equal * 2 >= rows {
                pairs.push((d, r));
            }
        }
    }
    pairs
}

/// Encodes one batch as a Parquet file of one row group.
pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>> {
    let pairs = minus_pairs(batch);
    let mut columns = batch.columns().to_vec();
    for &(d, r) in &pairs {
        columns[d] = sub_wrapping(&batch.column(d), &batch.column(r))?;
    }
    let stored = RecordBatch::try_new(batch.schema(), columns)?;
    let mut props = WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_2_0)
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(ZSTD_LEVEL).expect("valid zstd level"),
        ))
        .set_statistics_enabled(EnabledStatistics::None)
        .set_offset_index_disabled(true)
        .set_max_row_group_row_count(Some(stored.num_rows().max(1)))
        .set_data_page_row_count_limit(usize::MAX)
        .set_created_by(String::new());
    if !pairs.is_empty() {
        let list: Vec<String> = pairs.iter().map(|(d, r)| format!("{d}:{r}")).collect();
        props = props.set_key_value_metadata(Some(vec![KeyValue::new(
            MINUS_KEY.to_string(),
            list.join(","),
        )]));
    }
    for (field, column) in stored.schema().fields().iter().zip(stored.columns()) {
        let plan = plan_column(column);
        let path = ColumnPath::from(field.name().as_str());
        props = props
            .set_column_dictionary_enabled(path.clone(), plan.dictionary)
            .set_column_encoding(path.clone(), plan.encoding);
        if plan.dictionary {
            props = props.set_column_dictionary_page_size_limit(path, plan.dictionary_limit);
        }
    }
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, stored.schema(), Some(props.build()))
        .map_err(|e| Error::invalid("block", e.to_string()))?;
    w.write(&stored)
        .map_err(|e| Error::invalid("block", e.to_string()))?;
    w.close()
        .map_err(|e| Error::invalid("block", e.to_string()))?;
    Ok(out)
}

/// Decodes the columns `columns` (stored schema indexes, in the order wanted; `None` = all) of
/// a Parquet block. Columns not asked for (and not needed as a difference's reference) are
/// neither read nor decompressed. Errors are plain strings: the caller names the block. The
/// reader shares `bytes` (a reference count), never copies them.
/// With `strings_as_dictionary`, string columns come back as `Dictionary(Int32, Utf8)`: the
/// page's dictionary and its ids as stored, no string copied per row.
pub fn decode(
    bytes: Bytes,
    columns: Option<&[usize]>,
    strings_as_dictionary: bool,
) -> std::result::Result<RecordBatch, String> {
    // The Parquet and Arrow readers check what they parse but are not proven panic-free on
    // every damaged input (a block is CRC-checked before, so this takes bytes written
    // corrupt): a panic becomes a corrupt-block error, never a crashed query.
    guarded(|| {
        let arrow = ArrowReaderMetadata::load(&bytes, ArrowReaderOptions::new())
            .map_err(|e| e.to_string())?;
        decode_with(&Footer::of(arrow)?, bytes, columns, strings_as_dictionary)
    })
}

fn guarded<T>(
    f: impl FnOnce() -> std::result::Result<T, String>,
) -> std::result::Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err("the Parquet reader failed on damaged bytes".to_string()))
}

/// A block's footer (its Parquet metadata), parsed: what reading only some of its column
/// chunks by byte range needs (see [`Footer::chunks_for`] and [`decode_parts`]).
///
/// It keeps the Arrow readers' view of the block too: converting the Arrow schema embedded in
/// the metadata and building the readers' field tree cost more than decoding a small column
/// chunk (a tenth of an uncached base-cuboid scan at SF 10), so they happen once per footer,
/// not once per read.
#[derive(Debug)]
pub struct Footer {
    metadata: Arc<ParquetMetaData>,
    /// The columns as stored.
    plain: ArrowView,
    /// String columns as dictionaries (`strings_as_dictionary`), built on first use.
    as_dictionary: OnceLock<std::result::Result<ArrowView, String>>,
    pairs: Vec<(usize, usize)>,
}

/// One way of reading a block into Arrow: the reader's metadata and the schema it gives.
#[derive(Debug, Clone)]
struct ArrowView {
    arrow: ArrowReaderMetadata,
    schema: SchemaRef,
}

impl ArrowView {
    fn of(arrow: ArrowReaderMetadata) -> ArrowView {
        // The reader copies the file's key-value metadata into the schema: the stored schema
        // had none (cuboid schemas carry no metadata), so none is given back.
        let schema: SchemaRef = Arc::new(Schema::new(arrow.schema().fields().clone()));
        ArrowView { arrow, schema }
    }
}

impl Footer {
    /// Parses a block's last bytes: the Thrift metadata, its 4-byte length and the magic.
    pub fn parse(footer: &[u8]) -> std::result::Result<Footer, String> {
        guarded(|| {
            let split = footer
                .len()
                .checked_sub(FOOTER_SIZE)
                .ok_or_else(|| format!("a footer of {} bytes", footer.len()))?;
            let tail: &[u8; FOOTER_SIZE] = footer[split..].try_into().expect("8 bytes");
            let tail = FooterTail::try_new(tail).map_err(|e| e.to_string())?;
            if tail.is_encrypted_footer() || tail.metadata_length() != split {
                return Err(format!(
                    "the footer says {} bytes of metadata, {split} stored",
                    tail.metadata_length()
                ));
            }
            let metadata = Arc::new(
                ParquetMetaDataReader::decode_metadata(&footer[..split])
                    .map_err(|e| e.to_string())?,
            );
            let arrow = ArrowReaderMetadata::try_new(metadata, ArrowReaderOptions::new())
                .map_err(|e| e.to_string())?;
            Footer::of(arrow)
        })
    }

    /// The footer of a block whose metadata the Arrow reader parsed.
    fn of(arrow: ArrowReaderMetadata) -> std::result::Result<Footer, String> {
        let metadata = arrow.metadata().clone();
        let plain = ArrowView::of(arrow);
        let pairs = minus_of(&metadata, &plain.schema)?;
        Ok(Footer {
            metadata,
            plain,
            as_dictionary: OnceLock::new(),
            pairs,
        })
    }

    /// The Arrow view a read asks for.
    fn view(&self, strings_as_dictionary: bool) -> std::result::Result<&ArrowView, String> {
        if !strings_as_dictionary {
            return Ok(&self.plain);
        }
        self.as_dictionary
            .get_or_init(|| {
                let hint = Schema::new(
                    self.plain
                        .schema
                        .fields()
                        .iter()
                        .map(|f| match f.data_type() {
                            DataType::Utf8 => {
                                Arc::new(f.as_ref().clone().with_data_type(DataType::Dictionary(
                                    Box::new(DataType::Int32),
                                    Box::new(DataType::Utf8),
                                )))
                            }
                            _ => f.clone(),
                        })
                        .collect::<Vec<_>>(),
                );
                let options = ArrowReaderOptions::new().with_schema(Arc::new(hint));
                ArrowReaderMetadata::try_new(self.metadata.clone(), options)
                    .map(ArrowView::of)
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Heap bytes the parsed footer holds (for cache accounting).
    pub fn memory_size(&self) -> usize {
        self.metadata.memory_size()
    }

    /// Byte ranges `(offset, length)` of every column chunk: row group by row group, column
    /// by column (a block has one row group, or none when it has no rows).
    pub fn chunks(&self) -> Vec<(u64, u64)> {
        self.metadata
            .row_groups()
            .iter()
            .flat_map(|rg| rg.columns().iter().map(|c| c.byte_range()))
            .collect()
    }

    /// Indexes into [`Footer::chunks`] of the chunks decoding `columns` reads (their own and
    /// those of the references of columns stored as differences).
    pub fn chunks_for(&self, columns: Option<&[usize]>) -> std::result::Result<Vec<usize>, String> {
        let (_, read) = columns_to_read(&self.plain.schema, &self.pairs, columns)?;
        let per_group = self.plain.schema.fields().len();
        // Blocks hold flat columns: one chunk per column and row group.
        if let Some(rg) = self
            .metadata
            .row_groups()
            .iter()
            .find(|rg| rg.num_columns() != per_group)
        {
            return Err(format!(
                "a row group of {} column chunks for {per_group} columns",
                rg.num_columns()
            ));
        }
        Ok((0..self.metadata.num_row_groups())
            .flat_map(|rg| read.iter().map(move |&c| rg * per_group + c))
            .collect())
    }
}

/// Decodes `columns` of a block of `len` bytes of which only `parts` (`(offset, bytes)`, the
/// chunks [`Footer::chunks_for`] names) were read; see [`decode`].
pub fn decode_parts(
    footer: &Footer,
    len: u64,
    parts: Vec<(u64, Bytes)>,
    columns: Option<&[usize]>,
    strings_as_dictionary: bool,
) -> std::result::Result<RecordBatch, String> {
    guarded(|| decode_with(footer, Parts { len, parts }, columns, strings_as_dictionary))
}

/// The byte ranges of a block that were read: the Parquet reader asks only for the column
/// chunks of its projection, each inside one part; anything else is an error, never a read.
struct Parts {
    len: u64,
    parts: Vec<(u64, Bytes)>,
}

impl Parts {
    fn part(&self, start: u64, length: u64) -> parquet::errors::Result<Bytes> {
        let end = start.saturating_add(length);
        self.parts
            .iter()
            .find(|(at, b)| *at <= start && end <= at + b.len() as u64)
            .map(|(at, b)| b.slice((start - at) as usize..(end - at) as usize))
            .ok_or_else(|| {
                ParquetError::General(format!("bytes {start}..{end} of the block were not read"))
            })
    }
}

impl Length for Parts {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for Parts {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let (at, b) = self
            .parts
            .iter()
            .find(|(at, b)| *at <= start && start < at + b.len() as u64)
            .ok_or_else(|| {
                ParquetError::General(format!("byte {start} of the block was not read"))
            })?;
        Ok(b.slice((start - at) as usize..).reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.part(start, length as u64)
    }
}

/// The footer length and column chunk ranges of an encoded block (what its manifest entry
/// records so that readers can fetch only the chunks they decode).
pub fn sections(bytes: &[u8]) -> std::result::Result<(u64, Vec<(u64, u64)>), String> {
    let split = bytes
        .len()
        .checked_sub(FOOTER_SIZE)
        .ok_or("a block shorter than a footer")?;
    let tail: &[u8; FOOTER_SIZE] = bytes[split..].try_into().expect("8 bytes");
    let footer = (FooterTail::try_new(tail)
        .map_err(|e| e.to_string())?
        .metadata_length()
        + FOOTER_SIZE) as u64;
    if footer > bytes.len() as u64 {
        return Err(format!(
            "a footer of {footer} bytes in {} bytes",
            bytes.len()
        ));
    }
    let parsed = Footer::parse(&bytes[bytes.len() - footer as usize..])?;
    Ok((footer, parsed.chunks()))
}

/// The stored columns `columns` asks for (all when `None`), checked, and the columns reading
/// them decodes, in file order (the differences' references added).
fn columns_to_read(
    schema: &SchemaRef,
    pairs: &[(usize, usize)],
    columns: Option<&[usize]>,
) -> std::result::Result<(Vec<usize>, Vec<usize>), String> {
    let n = schema.fields().len();
    let wanted: Vec<usize> = match columns {
        Some(c) => c.to_vec(),
        None => (0..n).collect(),
    };
    if let Some(bad) = wanted.iter().find(|&&i| i >= n) {
        return Err(format!("column {bad} asked for, the block has {n}"));
    }
    let mut read: Vec<usize> = wanted.clone();
    for &w in &wanted {
        if let Some(&(_, r)) = pairs.iter().find(|(d, _)| *d == w) {
            read.push(r);
        }
    }
    read.sort_unstable();
    read.dedup();
    Ok((wanted, read))
}

fn minus_of(
    metadata: &ParquetMetaData,
    schema: &SchemaRef,
) -> std::result::Result<Vec<(usize, usize)>, String> {
    parse_minus(
        metadata
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|kv| kv.key == MINUS_KEY))
            .and_then(|kv| kv.value.as_deref()),
        schema,
    )
}

fn decode_with<R: ChunkReader + 'static>(
    footer: &Footer,
    input: R,
    columns: Option<&[usize]>,
    strings_as_dictionary: bool,
) -> std::result::Result<RecordBatch, String> {
    let ArrowView { arrow, schema } = footer.view(strings_as_dictionary)?;
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(input, arrow.clone());
    let pairs = &footer.pairs;
    // What to read: the wanted columns and the references of wanted differences, in file order.
    let (wanted, read) = columns_to_read(schema, pairs, columns)?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), read.iter().copied());
    // Bounded: a damaged footer must not make the reader reserve memory for its row count.
    let rows = footer.metadata.file_metadata().num_rows().clamp(1, 1 << 20) as usize;
    let reader = builder
        .with_projection(mask)
        .with_batch_size(rows)
        .build()
        .map_err(|e| e.to_string())?;
    let projected = Arc::new(schema.project(&read).map_err(|e| e.to_string())?);
    let batches: Vec<RecordBatch> = reader
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let got = concat_batches(&projected, &batches).map_err(|e| e.to_string())?;
    let at = |i: usize| -> &ArrayRef { got.column(read.binary_search(&i).expect("read column")) };
    let mut out: Vec<ArrayRef> = Vec::with_capacity(wanted.len());
    for &w in &wanted {
        let column = match pairs.iter().find(|(d, _)| *d == w) {
            Some(&(_, r)) => add_wrapping(at(w), at(r)).map_err(|e| e.to_string())?,
            None => at(w).clone(),
        };
        out.push(column);
    }
    let out_schema = Arc::new(schema.project(&wanted).map_err(|e| e.to_string())?);
    RecordBatch::try_new_with_options(
        out_schema,
        out,
        &RecordBatchOptions::new().with_row_count(Some(got.num_rows())),
    )
    .map_err(|e| e.to_string())
}

/// The `derived:reference` pairs of [`MINUS_KEY`], checked: both `Int64` columns of the
/// file, the reference before the derived column and not itself derived.
fn parse_minus(
    value: Option<&str>,
    schema: &SchemaRef,
) -> std::result::Result<Vec<(usize, usize)>, String> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for item in value.split(',').filter(|s| !s.is_empty()) {
        let bad = || format!("bad {MINUS_KEY} entry {item:?}");
        let (d, r) = item.split_once(':').ok_or_else(bad)?;
        let d: usize = d.parse().map_err(|_| bad())?;
        let r: usize = r.parse().map_err(|_| bad())?;
        let int64 = |i: usize| {
            schema
                .fields()
                .get(i)
                .is_some_and(|f| f.data_type() == &DataType::Int64)
        };
        if r >= d || !int64(d) || !int64(r) || pairs.iter().any(|&(x, _)| x == d || x == r) {
            return Err(bad());
        }
        pairs.push((d, r));
    }
    if pairs
        .iter()
        .any(|&(_, r)| pairs.iter().any(|&(d, _)| d == r))
    {
        return Err(format!("bad {MINUS_KEY} {value:?}: a reference is derived"));
    }
    Ok(pairs)
}

#[cfg(test)]
pub(crate) fn parse_minus_for_test(
    value: &str,
    schema: &SchemaRef,
) -> std::result::Result<Vec<(usize, usize)>, String> {
    parse_minus(Some(value), schema)
}
