//! Deterministic Star Schema Benchmark (SSB) data generator.
//!
//! SSB is a denormalised TPC-H, so instead of porting `ssb-dbgen` we derive the five SSB tables
//! from the `tpchgen` row generators: `lineorder` is TPC-H `orders ⋈ lineitem` (both generators
//! walk the same order indexes, so the join is a streaming merge), and the dimensions are the
//! first N TPC-H customers/suppliers/parts re-shaped into SSB columns. Everything that TPC-H does
//! not provide (cities, brand numbers) is a hash of the row key, so output depends only on the
//! scale factor.
//!
//! Each table is produced on a helper thread in batches and written by the calling thread, so
//! memory stays bounded (a few batches plus one Parquet row group) even at SF 10 and above.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Builder, Int64Builder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use tpchgen::dates::{TPCHDate, TOTAL_DATE_RANGE};
use tpchgen::generators::{
    CustomerGenerator, LineItem, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartGeneratorIterator, RegionGenerator, SupplierGenerator,
};
use xxhash_rust::xxh64::xxh64;

/// One Parquet file written by [`generate_ssb`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedTable {
    /// SSB table name (`lineorder`, `customer`, `supplier`, `part`, `dates`).
    pub name: String,
    /// Final location, `<out_dir>/<name>.parquet`.
    pub path: PathBuf,
    /// Number of rows written.
    pub rows: u64,
}

/// Generates lineorder, customer, supplier, part, dates as `<out_dir>/<name>.parquet` (written atomically:
/// temp file in the same dir, fsync, rename). Deterministic for a given scale.
pub async fn generate_ssb(scale: f64, out_dir: &Path) -> Result<Vec<GeneratedTable>> {
    let sizes = SsbSizes::for_scale(scale)?;
    let dir = out_dir.to_path_buf();
    // Generation is CPU-bound and uses blocking file I/O: keep it off the async workers.
    tokio::task::spawn_blocking(move || generate_all(&sizes, &dir))
        .await
        .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))?
}

/// Rows per Arrow batch handed from a generator thread to the Parquet writer.
pub(super) const BATCH_ROWS: usize = 64 * 1024;
/// Batches in flight between generator and writer: enough to overlap the two, no more.
const PIPELINE_DEPTH: usize = 2;
/// Parquet row group size: large groups compress well and keep footers small.
const ROW_GROUP_ROWS: usize = 1024 * 1024;
/// Fast zstd level: generation time matters more than the last few percent of size.
const ZSTD_LEVEL: i32 = 1;
/// Above this, customer keys would no longer be guaranteed to fit the Int32 key columns.
const MAX_SCALE: f64 = 10_000.0;
/// Smallest TPC-H scale we drive `tpchgen` with: below it TPC-H has almost no suppliers and its
/// key arithmetic degenerates, so tiny SSB scales just take a prefix of this one.
const MIN_TPCH_SCALE: f64 = 0.001;

/// TPC-H table sizes at SF 1, used to size generators so they yield at least N rows.
const TPCH_CUSTOMER_BASE: i64 = 150_000;
const TPCH_SUPPLIER_BASE: i64 = 10_000;
const TPCH_PART_BASE: i64 = 200_000;
const TPCH_ORDER_BASE: f64 = 1_500_000.0;

/// Hash seeds so that customer cities, supplier cities and part brands are independent.
const SEED_CUSTOMER_CITY: u64 = 0x5353_4243_4349_5459;
const SEED_SUPPLIER_CITY: u64 = 0x5353_4253_4349_5459;
const SEED_PART_BRAND: u64 = 0x5353_4250_4252_4e44;

/// Row counts of the SSB tables for one scale factor (as in `ssb-dbgen`).
#[derive(Debug, Clone)]
struct SsbSizes {
    customers: i64,
    suppliers: i64,
    parts: i64,
    /// TPC-H orders whose line items become lineorder rows.
    orders: i64,
    /// Scale factor the TPC-H generators run at (key ranges of orders and lineitems).
    tpch_scale: f64,
}

impl SsbSizes {
    fn for_scale(scale: f64) -> Result<Self> {
        if !scale.is_finite() || scale <= 0.0 {
            return Err(DataFusionError::Plan(format!(
                "SSB scale factor must be a finite number greater than 0, got {scale}"
            )));
        }
        if scale > MAX_SCALE {
            return Err(DataFusionError::Plan(format!(
                "SSB scale factor {scale} is too large (maximum {MAX_SCALE})"
            )));
        }
        let parts = if scale >= 1.0 {
            200_000 * (1 + scale.log2().floor() as i64)
        } else {
            ((200_000.0 * scale) as i64).max(2_000)
        };
        Ok(Self {
            customers: ((30_000.0 * scale) as i64).max(1),
            suppliers: ((2_000.0 * scale) as i64).max(1),
            parts,
            // Same formula as tpchgen, so at scale >= MIN_TPCH_SCALE this is every TPC-H order.
            orders: ((TPCH_ORDER_BASE * scale) as i64).max(1),
            tpch_scale: scale.max(MIN_TPCH_SCALE),
        })
    }
}

/// Maps a 1-based TPC-H key into `1..=n`, so foreign keys always hit an SSB dimension row.
/// `n` comes from [`SsbSizes`], which keeps every dimension below `i32::MAX` rows.
fn fold_key(key: i64, n: i64) -> i32 {
    ((key - 1).rem_euclid(n) + 1) as i32
}

/// A deterministic digit/number in `0..m` for a row key; stands in for dbgen's random draws.
fn key_hash(key: i64, seed: u64, m: u64) -> u64 {
    xxh64(&key.to_le_bytes(), seed) % m
}

/// TPC-H generator scale that yields at least `n` rows of a table with `base` rows at SF 1.
/// Dimension rows depend only on their key, so taking a prefix of a larger scale is exact.
fn generator_scale(n: i64, base: i64) -> f64 {
    (n + 1) as f64 / base as f64
}

fn generate_all(sizes: &SsbSizes, dir: &Path) -> Result<Vec<GeneratedTable>> {
    fs::create_dir_all(dir)?;
    let geo = Geography::load()?;
    let calendar = Calendar::new();
    Ok(vec![
        write_table(dir, "lineorder", lineorder_schema(), |sink| {
            produce_lineorder(sizes, &calendar, sink)
        })?,
        write_table(dir, "customer", customer_schema(), |sink| {
            produce_customers(sizes, &geo, sink)
        })?,
        write_table(dir, "supplier", supplier_schema(), |sink| {
            produce_suppliers(sizes, &geo, sink)
        })?,
        write_table(dir, "part", part_schema(), |sink| {
            produce_parts(sizes, sink)
        })?,
        write_table(dir, "dates", dates_schema(), |sink| {
            produce_dates(&calendar, sink)
        })?,
    ])
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Receives finished batches from a table producer.
pub(super) type Sink<'a> = &'a mut dyn FnMut(RecordBatch) -> Result<()>;

/// Removes a half-written temp file unless the write completed and it was renamed.
struct TempFileGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFileGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Runs `produce` on a helper thread and streams its batches into `<dir>/<name>.parquet`.
/// The file only appears (by rename) once both sides succeeded and the data is fsynced, so a
/// reader never sees a partial table.
pub(super) fn write_table<P>(
    dir: &Path,
    name: &str,
    schema: SchemaRef,
    produce: P,
) -> Result<GeneratedTable>
where
    P: FnOnce(Sink<'_>) -> Result<()> + Send,
{
    let final_path = dir.join(format!("{name}.parquet"));
    let tmp_path = dir.join(format!(
        ".{name}.parquet.{}.tmp",
        uuid::Uuid::new_v4().simple()
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp_path)?;
    let mut guard = TempFileGuard {
        path: tmp_path.clone(),
        armed: true,
    };

    let (tx, rx) = sync_channel::<RecordBatch>(PIPELINE_DEPTH);
    let (written, produced) = std::thread::scope(|scope| {
        let producer = scope.spawn(move || {
            let mut send = |batch: RecordBatch| {
                tx.send(batch).map_err(|_| {
                    DataFusionError::Execution(format!("parquet writer for {name} stopped early"))
                })
            };
            produce(&mut send)
        });
        let written = write_batches(file, &schema, rx);
        let produced = producer.join().unwrap_or_else(|_| {
            Err(DataFusionError::Internal(format!(
                "SSB generator thread for {name} panicked"
            )))
        });
        (written, produced)
    });
    // A writer failure makes the producer fail too; report the cause, not the symptom.
    let rows = written?;
    produced?;

    fs::rename(&tmp_path, &final_path)?;
    guard.armed = false;
    sync_dir(dir)?;
    Ok(GeneratedTable {
        name: name.to_string(),
        path: final_path,
        rows,
    })
}

/// Writes every received batch, then the footer, and fsyncs the file.
fn write_batches(file: File, schema: &SchemaRef, batches: Receiver<RecordBatch>) -> Result<u64> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let mut writer = ArrowWriter::try_new(file, Arc::clone(schema), Some(props))?;
    let mut rows = 0u64;
    for batch in batches {
        rows += batch.num_rows() as u64;
        writer.write(&batch)?;
    }
    let file = writer.into_inner()?;
    file.sync_all()?;
    Ok(rows)
}

/// Makes the rename durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Directories cannot be opened for fsync here; the rename is as durable as the platform allows.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<()> {
    Ok(())
}

fn schema_of(fields: &[(&str, DataType)]) -> SchemaRef {
    Arc::new(Schema::new(
        fields
            .iter()
            .map(|(name, dt)| Field::new(*name, dt.clone(), false))
            .collect::<Vec<_>>(),
    ))
}

fn batch(schema: &SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

// ---------------------------------------------------------------------------------------------
// Geography: TPC-H nations and regions, plus SSB city names

/// Nation name, region name and the ten SSB city names of each TPC-H nation key.
struct Geography {
    nations: Vec<NationInfo>,
}

struct NationInfo {
    name: &'static str,
    region: &'static str,
    cities: [String; 10],
}

impl Geography {
    fn load() -> Result<Self> {
        let regions: Vec<&'static str> = RegionGenerator::new(1.0, 1, 1)
            .iter()
            .map(|r| r.r_name)
            .collect();
        let mut nations = Vec::new();
        for (index, n) in NationGenerator::new(1.0, 1, 1).iter().enumerate() {
            if n.n_nationkey != index as i64 {
                return Err(DataFusionError::Internal(format!(
                    "TPC-H nation keys are not dense: {} at position {index}",
                    n.n_nationkey
                )));
            }
            let region = usize::try_from(n.n_regionkey)
                .ok()
                .and_then(|r| regions.get(r).copied())
                .ok_or_else(|| {
                    DataFusionError::Internal(format!(
                        "TPC-H nation {} has unknown region {}",
                        n.n_name, n.n_regionkey
                    ))
                })?;
            nations.push(NationInfo {
                name: n.n_name,
                region,
                // SSB cities: nation name padded/truncated to 9 characters plus one digit.
                cities: std::array::from_fn(|digit| format!("{:<9.9}{digit}", n.n_name)),
            });
        }
        Ok(Self { nations })
    }

    fn nation(&self, key: i64) -> Result<&NationInfo> {
        usize::try_from(key)
            .ok()
            .and_then(|k| self.nations.get(k))
            .ok_or_else(|| DataFusionError::Internal(format!("unknown TPC-H nation key {key}")))
    }
}

// ---------------------------------------------------------------------------------------------
// Calendar: the SSB date range, which is exactly the TPC-H one (1992-01-01..1998-12-31)

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
/// Indexed by weekday number, 0 = Sunday.
const WEEKDAY_NAMES: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
/// 1992-01-01 was a Wednesday.
const FIRST_WEEKDAY: u32 = 3;
/// Fixed-date holidays flagged in `d_holidayfl` (month, day).
const HOLIDAYS: [(u32, u32); 5] = [(1, 1), (7, 4), (12, 24), (12, 25), (12, 31)];

#[derive(Debug, Clone, Copy)]
struct Day {
    year: i32,
    month: u32,
    day: u32,
    /// 0 = Sunday .. 6 = Saturday.
    weekday: u32,
    day_of_year: u32,
    last_in_month: bool,
}

impl Day {
    fn datekey(&self) -> i32 {
        self.year * 10_000 + self.month as i32 * 100 + self.day as i32
    }
}

/// Every day of the TPC-H date range, indexed like `TPCHDate` (0 = 1992-01-01).
struct Calendar {
    days: Vec<Day>,
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Calendar {
    fn new() -> Self {
        let (mut year, mut month, mut day, mut day_of_year) = (1992, 1, 1, 1);
        let mut weekday = FIRST_WEEKDAY;
        let mut days = Vec::with_capacity(TOTAL_DATE_RANGE as usize);
        for _ in 0..TOTAL_DATE_RANGE {
            let month_len = days_in_month(year, month);
            days.push(Day {
                year,
                month,
                day,
                weekday,
                day_of_year,
                last_in_month: day == month_len,
            });
            weekday = (weekday + 1) % 7;
            day_of_year += 1;
            day += 1;
            if day > month_len {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                    day_of_year = 1;
                }
            }
        }
        Self { days }
    }

    /// `yyyymmdd` of a TPC-H generated date.
    fn datekey(&self, date: TPCHDate) -> Result<i32> {
        let index = date.into_inner();
        usize::try_from(index)
            .ok()
            .and_then(|i| self.days.get(i))
            .map(Day::datekey)
            .ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "TPC-H date {date} is outside the SSB date range"
                ))
            })
    }
}

// ---------------------------------------------------------------------------------------------
// lineorder

fn lineorder_schema() -> SchemaRef {
    use DataType::{Int32, Int64, Utf8};
    schema_of(&[
        ("lo_orderkey", Int64),
        ("lo_linenumber", Int32),
        ("lo_custkey", Int32),
        ("lo_partkey", Int32),
        ("lo_suppkey", Int32),
        ("lo_orderdate", Int32),
        ("lo_orderpriority", Utf8),
        ("lo_shippriority", Int32),
        ("lo_quantity", Int32),
        ("lo_extendedprice", Int64),
        ("lo_ordtotalprice", Int64),
        ("lo_discount", Int32),
        ("lo_revenue", Int64),
        ("lo_supplycost", Int64),
        ("lo_tax", Int32),
        ("lo_commitdate", Int32),
        ("lo_shipmode", Utf8),
    ])
}

struct LineorderColumns {
    schema: SchemaRef,
    rows: usize,
    orderkey: Int64Builder,
    linenumber: Int32Builder,
    custkey: Int32Builder,
    partkey: Int32Builder,
    suppkey: Int32Builder,
    orderdate: Int32Builder,
    orderpriority: StringBuilder,
    shippriority: Int32Builder,
    quantity: Int32Builder,
    extendedprice: Int64Builder,
    ordtotalprice: Int64Builder,
    discount: Int32Builder,
    revenue: Int64Builder,
    supplycost: Int64Builder,
    tax: Int32Builder,
    commitdate: Int32Builder,
    shipmode: StringBuilder,
}

impl LineorderColumns {
    fn new(capacity: usize) -> Self {
        Self {
            schema: lineorder_schema(),
            rows: 0,
            orderkey: Int64Builder::with_capacity(capacity),
            linenumber: Int32Builder::with_capacity(capacity),
            custkey: Int32Builder::with_capacity(capacity),
            partkey: Int32Builder::with_capacity(capacity),
            suppkey: Int32Builder::with_capacity(capacity),
            orderdate: Int32Builder::with_capacity(capacity),
            orderpriority: StringBuilder::with_capacity(capacity, capacity * 10),
            shippriority: Int32Builder::with_capacity(capacity),
            quantity: Int32Builder::with_capacity(capacity),
            extendedprice: Int64Builder::with_capacity(capacity),
            ordtotalprice: Int64Builder::with_capacity(capacity),
            discount: Int32Builder::with_capacity(capacity),
            revenue: Int64Builder::with_capacity(capacity),
            supplycost: Int64Builder::with_capacity(capacity),
            tax: Int32Builder::with_capacity(capacity),
            commitdate: Int32Builder::with_capacity(capacity),
            shipmode: StringBuilder::with_capacity(capacity, capacity * 6),
        }
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        self.rows = 0;
        batch(
            &self.schema,
            vec![
                Arc::new(self.orderkey.finish()),
                Arc::new(self.linenumber.finish()),
                Arc::new(self.custkey.finish()),
                Arc::new(self.partkey.finish()),
                Arc::new(self.suppkey.finish()),
                Arc::new(self.orderdate.finish()),
                Arc::new(self.orderpriority.finish()),
                Arc::new(self.shippriority.finish()),
                Arc::new(self.quantity.finish()),
                Arc::new(self.extendedprice.finish()),
                Arc::new(self.ordtotalprice.finish()),
                Arc::new(self.discount.finish()),
                Arc::new(self.revenue.finish()),
                Arc::new(self.supplycost.finish()),
                Arc::new(self.tax.finish()),
                Arc::new(self.commitdate.finish()),
                Arc::new(self.shipmode.finish()),
            ],
        )
    }
}

/// Per-line values of the order being assembled; the order total needs all of its lines first.
struct PendingLine {
    linenumber: i32,
    partkey: i32,
    suppkey: i32,
    quantity: i32,
    extendedprice: i64,
    discount: i32,
    revenue: i64,
    supplycost: i64,
    tax: i32,
    commitdate: i32,
    shipmode: &'static str,
}

impl PendingLine {
    fn from_tpch(item: &LineItem<'static>, sizes: &SsbSizes, calendar: &Calendar) -> Result<Self> {
        let partkey = fold_key(item.l_partkey, sizes.parts);
        // Prices follow the SSB part (not the TPC-H one) so a part has one price everywhere.
        let unit_price = PartGeneratorIterator::calculate_part_price(i64::from(partkey));
        let extendedprice = unit_price * item.l_quantity;
        // TPC-H decimals are hundredths, so 0.04 is already the integer percentage 4.
        let discount = item.l_discount.into_inner();
        Ok(Self {
            linenumber: item.l_linenumber,
            partkey,
            suppkey: fold_key(item.l_suppkey, sizes.suppliers),
            quantity: item.l_quantity as i32,
            extendedprice,
            discount: discount as i32,
            revenue: extendedprice * (100 - discount) / 100,
            // As in ssb-dbgen: supply cost is 60% of the part's retail price.
            supplycost: 6 * unit_price / 10,
            tax: item.l_tax.into_inner() as i32,
            commitdate: calendar.datekey(item.l_commitdate)?,
            shipmode: item.l_shipmode,
        })
    }

    /// The line's share of the order total: discounted price plus tax (TPC-H's formula).
    fn charge(&self) -> i64 {
        self.extendedprice * i64::from(100 - self.discount) / 100 * i64::from(100 + self.tax) / 100
    }
}

/// Streams `orders ⋈ lineitem`: tpchgen emits line items grouped by order, in order-key order,
/// so a one-order look-ahead replaces the join.
fn produce_lineorder(sizes: &SsbSizes, calendar: &Calendar, sink: Sink<'_>) -> Result<()> {
    let orders = OrderGenerator::new(sizes.tpch_scale, 1, 1);
    let items = LineItemGenerator::new(sizes.tpch_scale, 1, 1);
    let mut items = items.iter().peekable();
    let mut cols = LineorderColumns::new(BATCH_ROWS + OrderGenerator::LINE_COUNT_MAX as usize);
    let mut pending: Vec<PendingLine> = Vec::with_capacity(OrderGenerator::LINE_COUNT_MAX as usize);
    let mut seen_orders = 0i64;

    for order in orders.iter().take(sizes.orders as usize) {
        seen_orders += 1;
        pending.clear();
        while let Some(item) = items.next_if(|l| l.l_orderkey == order.o_orderkey) {
            pending.push(PendingLine::from_tpch(&item, sizes, calendar)?);
        }
        if pending.is_empty() {
            return Err(DataFusionError::Internal(format!(
                "TPC-H order {} has no line items: orders and lineitem generators diverged",
                order.o_orderkey
            )));
        }
        let custkey = fold_key(order.o_custkey, sizes.customers);
        let orderdate = calendar.datekey(order.o_orderdate)?;
        let total: i64 = pending.iter().map(PendingLine::charge).sum();
        for line in &pending {
            cols.orderkey.append_value(order.o_orderkey);
            cols.linenumber.append_value(line.linenumber);
            cols.custkey.append_value(custkey);
            cols.partkey.append_value(line.partkey);
            cols.suppkey.append_value(line.suppkey);
            cols.orderdate.append_value(orderdate);
            cols.orderpriority.append_value(order.o_orderpriority);
            cols.shippriority.append_value(order.o_shippriority);
            cols.quantity.append_value(line.quantity);
            cols.extendedprice.append_value(line.extendedprice);
            cols.ordtotalprice.append_value(total);
            cols.discount.append_value(line.discount);
            cols.revenue.append_value(line.revenue);
            cols.supplycost.append_value(line.supplycost);
            cols.tax.append_value(line.tax);
            cols.commitdate.append_value(line.commitdate);
            cols.shipmode.append_value(line.shipmode);
        }
        cols.rows += pending.len();
        if cols.rows >= BATCH_ROWS {
            sink(cols.finish()?)?;
        }
    }
    if seen_orders != sizes.orders {
        return Err(DataFusionError::Internal(format!(
            "TPC-H produced {seen_orders} orders, expected {}",
            sizes.orders
        )));
    }
    if cols.rows > 0 {
        sink(cols.finish()?)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// customer

fn customer_schema() -> SchemaRef {
    use DataType::{Int32, Utf8};
    schema_of(&[
        ("c_custkey", Int32),
        ("c_name", Utf8),
        ("c_address", Utf8),
        ("c_city", Utf8),
        ("c_nation", Utf8),
        ("c_region", Utf8),
        ("c_phone", Utf8),
        ("c_mktsegment", Utf8),
    ])
}

fn produce_customers(sizes: &SsbSizes, geo: &Geography, sink: Sink<'_>) -> Result<()> {
    let schema = customer_schema();
    let generator =
        CustomerGenerator::new(generator_scale(sizes.customers, TPCH_CUSTOMER_BASE), 1, 1);
    let mut key = Int32Builder::with_capacity(BATCH_ROWS);
    let mut text = [(); 7].map(|_| StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 16));
    let mut rows = 0usize;
    let mut total = 0i64;
    for c in generator.iter().take(sizes.customers as usize) {
        let nation = geo.nation(c.c_nationkey)?;
        let [name, address, city, nation_col, region, phone, segment] = &mut text;
        key.append_value(c.c_custkey as i32);
        write!(name, "{}", c.c_name)?;
        name.append_value("");
        write!(address, "{}", c.c_address)?;
        address.append_value("");
        city.append_value(&nation.cities[key_hash(c.c_custkey, SEED_CUSTOMER_CITY, 10) as usize]);
        nation_col.append_value(nation.name);
        region.append_value(nation.region);
        write!(phone, "{}", c.c_phone)?;
        phone.append_value("");
        segment.append_value(c.c_mktsegment);
        rows += 1;
        total += 1;
        if rows == BATCH_ROWS {
            sink(finish_dimension(&schema, &mut key, &mut text)?)?;
            rows = 0;
        }
    }
    check_count("customer", total, sizes.customers)?;
    if rows > 0 {
        sink(finish_dimension(&schema, &mut key, &mut text)?)?;
    }
    Ok(())
}

/// Finishes a dimension batch laid out as one Int32 key followed by string columns.
fn finish_dimension<const N: usize>(
    schema: &SchemaRef,
    key: &mut Int32Builder,
    text: &mut [StringBuilder; N],
) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(N + 1);
    columns.push(Arc::new(key.finish()));
    columns.extend(text.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    batch(schema, columns)
}

fn check_count(table: &str, got: i64, expected: i64) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(DataFusionError::Internal(format!(
            "TPC-H generator produced {got} rows for SSB {table}, expected {expected}"
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// supplier

fn supplier_schema() -> SchemaRef {
    use DataType::{Int32, Utf8};
    schema_of(&[
        ("s_suppkey", Int32),
        ("s_name", Utf8),
        ("s_address", Utf8),
        ("s_city", Utf8),
        ("s_nation", Utf8),
        ("s_region", Utf8),
        ("s_phone", Utf8),
    ])
}

fn produce_suppliers(sizes: &SsbSizes, geo: &Geography, sink: Sink<'_>) -> Result<()> {
    let schema = supplier_schema();
    let generator =
        SupplierGenerator::new(generator_scale(sizes.suppliers, TPCH_SUPPLIER_BASE), 1, 1);
    let mut key = Int32Builder::with_capacity(BATCH_ROWS);
    let mut text = [(); 6].map(|_| StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 16));
    let mut rows = 0usize;
    let mut total = 0i64;
    for s in generator.iter().take(sizes.suppliers as usize) {
        let nation = geo.nation(s.s_nationkey)?;
        let [name, address, city, nation_col, region, phone] = &mut text;
        key.append_value(s.s_suppkey as i32);
        write!(name, "{}", s.s_name)?;
        name.append_value("");
        write!(address, "{}", s.s_address)?;
        address.append_value("");
        city.append_value(&nation.cities[key_hash(s.s_suppkey, SEED_SUPPLIER_CITY, 10) as usize]);
        nation_col.append_value(nation.name);
        region.append_value(nation.region);
        write!(phone, "{}", s.s_phone)?;
        phone.append_value("");
        rows += 1;
        total += 1;
        if rows == BATCH_ROWS {
            sink(finish_dimension(&schema, &mut key, &mut text)?)?;
            rows = 0;
        }
    }
    check_count("supplier", total, sizes.suppliers)?;
    if rows > 0 {
        sink(finish_dimension(&schema, &mut key, &mut text)?)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// part

fn part_schema() -> SchemaRef {
    use DataType::{Int32, Utf8};
    schema_of(&[
        ("p_partkey", Int32),
        ("p_name", Utf8),
        ("p_mfgr", Utf8),
        ("p_category", Utf8),
        ("p_brand", Utf8),
        ("p_color", Utf8),
        ("p_type", Utf8),
        ("p_size", Int32),
        ("p_container", Utf8),
    ])
}

/// Reads the trailing number of a TPC-H label such as `Brand#23`.
fn label_number(label: &str) -> Option<u32> {
    label.rsplit_once('#').and_then(|(_, n)| n.parse().ok())
}

fn produce_parts(sizes: &SsbSizes, sink: Sink<'_>) -> Result<()> {
    let schema = part_schema();
    let generator = PartGenerator::new(generator_scale(sizes.parts, TPCH_PART_BASE), 1, 1);
    let new_text = || StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 12);
    let mut key = Int32Builder::with_capacity(BATCH_ROWS);
    let (mut name, mut mfgr, mut category, mut brand, mut color, mut ptype) = (
        new_text(),
        new_text(),
        new_text(),
        new_text(),
        new_text(),
        new_text(),
    );
    let mut size = Int32Builder::with_capacity(BATCH_ROWS);
    let mut container = new_text();
    let mut rows = 0usize;
    let mut total = 0i64;
    let mut scratch = String::new();
    let mut finish = |key: &mut Int32Builder,
                      strings: [&mut StringBuilder; 6],
                      size: &mut Int32Builder,
                      container: &mut StringBuilder|
     -> Result<()> {
        let [name, mfgr, category, brand, color, ptype] = strings;
        sink(batch(
            &schema,
            vec![
                Arc::new(key.finish()),
                Arc::new(name.finish()),
                Arc::new(mfgr.finish()),
                Arc::new(category.finish()),
                Arc::new(brand.finish()),
                Arc::new(color.finish()),
                Arc::new(ptype.finish()),
                Arc::new(size.finish()),
                Arc::new(container.finish()),
            ],
        )?)
    };

    for p in generator.iter().take(sizes.parts as usize) {
        // TPC-H brands are `Brand#<mfgr><1..5>`: that pair becomes the SSB category.
        scratch.clear();
        write!(scratch, "{}", p.p_brand)?;
        let tpch_brand = label_number(&scratch)
            .filter(|b| (11..=55).contains(b))
            .ok_or_else(|| {
                DataFusionError::Internal(format!("unexpected TPC-H part brand {scratch:?}"))
            })?;
        let (m, c) = (tpch_brand / 10, tpch_brand % 10);
        // SSB has 40 brands per category; TPC-H has none, so pick one from the key.
        let b = key_hash(p.p_partkey, SEED_PART_BRAND, 40) + 1;

        key.append_value(p.p_partkey as i32);
        // TPC-H names are five colour words: SSB keeps two as the name and one as the colour.
        scratch.clear();
        write!(scratch, "{}", p.p_name)?;
        let mut words = scratch.split(' ');
        let first = words.next().unwrap_or_default();
        match words.next() {
            Some(second) => write!(name, "{first} {second}")?,
            None => name.write_str(first)?,
        }
        name.append_value("");
        color.append_value(words.next().unwrap_or(first));
        write!(mfgr, "MFGR#{m}")?;
        mfgr.append_value("");
        write!(category, "MFGR#{m}{c}")?;
        category.append_value("");
        write!(brand, "MFGR#{m}{c}{b}")?;
        brand.append_value("");
        ptype.append_value(p.p_type);
        size.append_value(p.p_size);
        container.append_value(p.p_container);
        rows += 1;
        total += 1;
        if rows == BATCH_ROWS {
            finish(
                &mut key,
                [
                    &mut name,
                    &mut mfgr,
                    &mut category,
                    &mut brand,
                    &mut color,
                    &mut ptype,
                ],
                &mut size,
                &mut container,
            )?;
            rows = 0;
        }
    }
    check_count("part", total, sizes.parts)?;
    if rows > 0 {
        finish(
            &mut key,
            [
                &mut name,
                &mut mfgr,
                &mut category,
                &mut brand,
                &mut color,
                &mut ptype,
            ],
            &mut size,
            &mut container,
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// dates

fn dates_schema() -> SchemaRef {
    use DataType::{Int32, Utf8};
    schema_of(&[
        ("d_datekey", Int32),
        ("d_date", Utf8),
        ("d_dayofweek", Utf8),
        ("d_month", Utf8),
        ("d_year", Int32),
        ("d_yearmonthnum", Int32),
        ("d_yearmonth", Utf8),
        ("d_daynuminweek", Int32),
        ("d_daynuminmonth", Int32),
        ("d_daynuminyear", Int32),
        ("d_monthnuminyear", Int32),
        ("d_weeknuminyear", Int32),
        ("d_sellingseason", Utf8),
        ("d_lastdayinweekfl", Int32),
        ("d_lastdayinmonthfl", Int32),
        ("d_holidayfl", Int32),
        ("d_weekdayfl", Int32),
    ])
}

fn selling_season(month: u32) -> &'static str {
    match month {
        12 => "Christmas",
        1 | 2 => "Winter",
        3..=5 => "Spring",
        6..=8 => "Summer",
        _ => "Fall",
    }
}

/// One row per calendar day; week numbers count 7-day blocks from 1 January (1..53), and
/// weeks run Sunday (1) to Saturday (7), as in the SSB specification's US calendar.
fn produce_dates(calendar: &Calendar, sink: Sink<'_>) -> Result<()> {
    let n = calendar.days.len();
    let int = || Int32Builder::with_capacity(n);
    let text = || StringBuilder::with_capacity(n, n * 12);
    let (mut datekey, mut date, mut dayofweek, mut month_name, mut year) =
        (int(), text(), text(), text(), int());
    let (mut yearmonthnum, mut yearmonth, mut daynuminweek, mut daynuminmonth) =
        (int(), text(), int(), int());
    let (mut daynuminyear, mut monthnuminyear, mut weeknuminyear, mut season) =
        (int(), int(), int(), text());
    let (mut lastdayinweek, mut lastdayinmonth, mut holiday, mut weekday) =
        (int(), int(), int(), int());

    for d in &calendar.days {
        let month = MONTH_NAMES[(d.month - 1) as usize];
        datekey.append_value(d.datekey());
        write!(date, "{month} {}, {}", d.day, d.year)?;
        date.append_value("");
        dayofweek.append_value(WEEKDAY_NAMES[d.weekday as usize]);
        month_name.append_value(month);
        year.append_value(d.year);
        yearmonthnum.append_value(d.year * 100 + d.month as i32);
        write!(yearmonth, "{}{}", &month[..3], d.year)?;
        yearmonth.append_value("");
        daynuminweek.append_value(d.weekday as i32 + 1);
        daynuminmonth.append_value(d.day as i32);
        daynuminyear.append_value(d.day_of_year as i32);
        monthnuminyear.append_value(d.month as i32);
        weeknuminyear.append_value((d.day_of_year as i32 - 1) / 7 + 1);
        season.append_value(selling_season(d.month));
        lastdayinweek.append_value(i32::from(d.weekday == 6));
        lastdayinmonth.append_value(i32::from(d.last_in_month));
        holiday.append_value(i32::from(HOLIDAYS.contains(&(d.month, d.day))));
        weekday.append_value(i32::from((1..=5).contains(&d.weekday)));
    }
    sink(batch(
        &dates_schema(),
        vec![
            Arc::new(datekey.finish()),
            Arc::new(date.finish()),
            Arc::new(dayofweek.finish()),
            Arc::new(month_name.finish()),
            Arc::new(year.finish()),
            Arc::new(yearmonthnum.finish()),
            Arc::new(yearmonth.finish()),
            Arc::new(daynuminweek.finish()),
            Arc::new(daynuminmonth.finish()),
            Arc::new(daynuminyear.finish()),
            Arc::new(monthnuminyear.finish()),
            Arc::new(weeknuminyear.finish()),
            Arc::new(season.finish()),
            Arc::new(lastdayinweek.finish()),
            Arc::new(lastdayinmonth.finish()),
            Arc::new(holiday.finish()),
            Arc::new(weekday.finish()),
        ],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Instant;

    const TABLES: [&str; 5] = ["lineorder", "customer", "supplier", "part", "dates"];

    async fn context(tables: &[GeneratedTable]) -> SessionContext {
        let ctx = SessionContext::new();
        for t in tables {
            ctx.register_parquet(
                &t.name,
                t.path.to_str().expect("utf-8 path"),
                ParquetReadOptions::default(),
            )
            .await
            .expect("register parquet");
        }
        ctx
    }

    async fn int(ctx: &SessionContext, sql: &str) -> i64 {
        let batches = ctx.sql(sql).await.expect(sql).collect().await.expect(sql);
        let col = cast(batches[0].column(0), &DataType::Int64).expect("cast");
        col.as_primitive::<Int64Type>().value(0)
    }

    async fn strings(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
        let batches = ctx.sql(sql).await.expect(sql).collect().await.expect(sql);
        let mut rows = Vec::new();
        for b in batches {
            let cols: Vec<_> = b
                .columns()
                .iter()
                .map(|c| cast(c, &DataType::Utf8).expect("cast"))
                .collect();
            for i in 0..b.num_rows() {
                rows.push(
                    cols.iter()
                        .map(|c| c.as_string::<i32>().value(i).to_string())
                        .collect(),
                );
            }
        }
        rows
    }

    fn rows_of(tables: &[GeneratedTable]) -> BTreeMap<&str, u64> {
        tables.iter().map(|t| (t.name.as_str(), t.rows)).collect()
    }

    fn tpch_lineitems(orders: i64, scale: f64) -> u64 {
        let mut n = 0u64;
        let mut last_key = None;
        let mut seen = 0i64;
        for l in LineItemGenerator::new(scale, 1, 1).iter() {
            if last_key != Some(l.l_orderkey) {
                seen += 1;
                if seen > orders {
                    break;
                }
                last_key = Some(l.l_orderkey);
            }
            n += 1;
        }
        n
    }

    fn is_city(city: &str, nation: &str) -> bool {
        city.len() == 10
            && city[..9] == format!("{nation:<9.9}")
            && city.as_bytes()[9].is_ascii_digit()
    }

    fn tpch_region(nation: &str) -> &'static str {
        match nation {
            "ALGERIA" | "ETHIOPIA" | "KENYA" | "MOROCCO" | "MOZAMBIQUE" => "AFRICA",
            "ARGENTINA" | "BRAZIL" | "CANADA" | "PERU" | "UNITED STATES" => "AMERICA",
            "INDIA" | "INDONESIA" | "JAPAN" | "CHINA" | "VIETNAM" => "ASIA",
            "FRANCE" | "GERMANY" | "ROMANIA" | "RUSSIA" | "UNITED KINGDOM" => "EUROPE",
            "EGYPT" | "IRAN" | "IRAQ" | "JORDAN" | "SAUDI ARABIA" => "MIDDLE EAST",
            _ => "?",
        }
    }

    #[tokio::test]
    async fn rejects_invalid_scale() {
        let dir = tempfile::tempdir().expect("tempdir");
        for scale in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e9] {
            let err = generate_ssb(scale, dir.path())
                .await
                .expect_err("invalid scale must fail");
            assert!(err.to_string().contains("scale factor"), "{err}");
        }
        assert_eq!(fs::read_dir(dir.path()).expect("read dir").count(), 0);
    }

    #[test]
    fn sizes_follow_ssb_dbgen() {
        let s = SsbSizes::for_scale(1.0).expect("sf1");
        assert_eq!(
            (s.customers, s.suppliers, s.parts, s.orders),
            (30_000, 2_000, 200_000, 1_500_000)
        );
        let s = SsbSizes::for_scale(10.0).expect("sf10");
        assert_eq!(
            (s.customers, s.suppliers, s.parts),
            (300_000, 20_000, 800_000)
        );
        let s = SsbSizes::for_scale(0.1).expect("sf0.1");
        assert_eq!((s.customers, s.suppliers, s.parts), (3_000, 200, 20_000));
        let s = SsbSizes::for_scale(1e-7).expect("tiny");
        assert_eq!(
            (s.customers, s.suppliers, s.parts, s.orders),
            (1, 1, 2_000, 1)
        );
    }

    #[test]
    fn calendar_matches_tpch_dates() {
        let cal = Calendar::new();
        assert_eq!(cal.days.len(), 2557);
        for (i, d) in cal.days.iter().enumerate() {
            let tpch = TPCHDate::new(tpchgen::dates::MIN_GENERATE_DATE + i as i32).to_string();
            let mine = format!("{:04}-{:02}-{:02}", d.year, d.month, d.day);
            assert_eq!(tpch, mine);
        }
        assert_eq!(cal.days[0].datekey(), 19920101);
        assert_eq!(cal.days[2556].datekey(), 19981231);
    }

    #[tokio::test]
    async fn tiny_scale_still_has_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tables = generate_ssb(1e-7, dir.path()).await.expect("generate");
        let rows = rows_of(&tables);
        assert!(rows.values().all(|&n| n >= 1), "{rows:?}");
        assert_eq!(rows["customer"], 1);
        let ctx = context(&tables).await;
        assert_eq!(
            int(
                &ctx,
                "select count(*) from lineorder where lo_custkey <> 1 or lo_suppkey <> 1"
            )
            .await,
            0
        );
    }

    #[tokio::test]
    async fn sf001_counts_integrity_and_formats() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tables = generate_ssb(0.01, dir.path()).await.expect("generate");
        assert_eq!(
            tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            TABLES
        );
        for t in &tables {
            assert_eq!(t.path, dir.path().join(format!("{}.parquet", t.name)));
            assert!(t.path.is_file());
        }
        // Only the five tables remain: temp files were renamed away.
        assert_eq!(fs::read_dir(dir.path()).expect("read dir").count(), 5);

        let rows = rows_of(&tables);
        eprintln!("SSB SF 0.01 rows: {rows:?}");
        assert_eq!(rows["customer"], 300);
        assert_eq!(rows["supplier"], 20);
        assert_eq!(rows["part"], 2_000);
        assert_eq!(rows["dates"], 2_557);
        assert_eq!(rows["lineorder"], tpch_lineitems(15_000, 0.01));
        assert!((55_000..65_000).contains(&rows["lineorder"]), "{rows:?}");

        let ctx = context(&tables).await;
        for (table, key) in [
            ("lineorder", "lo_orderkey, lo_linenumber"),
            ("customer", "c_custkey"),
            ("supplier", "s_suppkey"),
            ("part", "p_partkey"),
            ("dates", "d_datekey"),
        ] {
            let sql = format!("select count(*) from (select distinct {key} from {table})");
            let n = int(&ctx, &sql).await;
            assert_eq!(n as u64, rows[table], "primary key of {table}");
        }

        // Foreign keys.
        for (fk, table, pk) in [
            ("lo_custkey", "customer", "c_custkey"),
            ("lo_partkey", "part", "p_partkey"),
            ("lo_suppkey", "supplier", "s_suppkey"),
            ("lo_orderdate", "dates", "d_datekey"),
            ("lo_commitdate", "dates", "d_datekey"),
        ] {
            let sql =
                format!("select count(*) from lineorder left anti join {table} on {fk} = {pk}");
            assert_eq!(int(&ctx, &sql).await, 0, "dangling {fk}");
        }

        // Measures.
        let bad = int(
            &ctx,
            "select count(*) from lineorder where lo_discount not between 0 and 10 \
             or lo_quantity not between 1 and 50 or lo_tax not between 0 and 8 \
             or lo_revenue <> lo_extendedprice * (100 - lo_discount) / 100 \
             or lo_extendedprice <= 0 or lo_supplycost <= 0 or lo_shippriority <> 0 \
             or lo_linenumber not between 1 and 7 or lo_ordtotalprice < lo_revenue",
        )
        .await;
        assert_eq!(bad, 0);
        assert_eq!(
            int(&ctx, "select count(distinct lo_discount) from lineorder").await,
            11
        );
        let priorities = strings(
            &ctx,
            "select distinct lo_orderpriority from lineorder order by 1",
        )
        .await;
        assert_eq!(
            priorities.concat(),
            ["1-URGENT", "2-HIGH", "3-MEDIUM", "4-NOT SPECIFIED", "5-LOW"]
        );
        let modes = strings(
            &ctx,
            "select distinct lo_shipmode from lineorder order by 1",
        )
        .await;
        assert_eq!(
            modes.concat(),
            ["AIR", "FOB", "MAIL", "RAIL", "REG AIR", "SHIP", "TRUCK"]
        );
        // The order total is the sum of its lines' charges.
        assert_eq!(
            int(
                &ctx,
                "select count(*) from (select lo_orderkey from lineorder \
                 group by lo_orderkey having count(distinct lo_ordtotalprice) <> 1)"
            )
            .await,
            0
        );

        // Customer and supplier geography.
        let regions: BTreeSet<&str> = ["AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"].into();
        for (prefix, table) in [("c", "customer"), ("s", "supplier")] {
            let sql = format!("select {prefix}_city, {prefix}_nation, {prefix}_region, {prefix}_name, {prefix}_phone from {table}");
            for row in strings(&ctx, &sql).await {
                let [city, nation, region, name, phone] = &row[..] else {
                    panic!("row shape {row:?}")
                };
                assert!(is_city(city, nation), "{city:?} / {nation:?}");
                assert!(regions.contains(region.as_str()), "{region}");
                assert_eq!(tpch_region(nation), region.as_str(), "{nation}");
                assert_eq!(name.len(), 18, "{name}");
                assert_eq!(phone.len(), 15, "{phone}");
            }
        }
        let cities = strings(
            &ctx,
            "select c_city from customer where c_nation = 'UNITED KINGDOM' limit 1",
        )
        .await;
        assert!(cities[0][0].starts_with("UNITED KI"));
        assert_eq!(
            int(&ctx, "select count(distinct c_nation) from customer").await,
            25
        );

        // Part hierarchy: MFGR#m, MFGR#mc, MFGR#mcb with b in 1..40.
        let parts = strings(
            &ctx,
            "select p_mfgr, p_category, p_brand, p_name, p_color from part",
        )
        .await;
        for row in &parts {
            let [mfgr, category, brand, name, color] = &row[..] else {
                panic!("row shape {row:?}")
            };
            let m = mfgr.strip_prefix("MFGR#").expect("mfgr prefix");
            assert!(matches!(m, "1" | "2" | "3" | "4" | "5"), "{mfgr}");
            let c = category
                .strip_prefix(mfgr.as_str())
                .expect("category extends mfgr");
            assert!(matches!(c, "1" | "2" | "3" | "4" | "5"), "{category}");
            let b: u32 = brand
                .strip_prefix(category.as_str())
                .expect("brand extends category")
                .parse()
                .expect("brand number");
            assert!((1..=40).contains(&b), "{brand}");
            assert_eq!(name.split(' ').count(), 2, "{name}");
            assert!(!color.is_empty() && !color.contains(' '), "{color}");
        }
        assert_eq!(
            int(&ctx, "select count(distinct p_category) from part").await,
            25
        );
        assert!(int(&ctx, "select count(distinct p_brand) from part").await > 600);

        // Dates.
        let first = strings(
            &ctx,
            "select d_date, d_dayofweek, d_month, d_yearmonth, d_sellingseason from dates where d_datekey = 19920101",
        )
        .await;
        assert_eq!(
            first[0],
            [
                "January 1, 1992",
                "Wednesday",
                "January",
                "Jan1992",
                "Winter"
            ]
        );
        assert_eq!(
            int(
                &ctx,
                "select count(*) from dates where d_yearmonth = 'Dec1997'"
            )
            .await,
            31
        );
        assert_eq!(
            int(
                &ctx,
                "select count(*) from dates where d_yearmonthnum = 199712"
            )
            .await,
            31
        );
        assert_eq!(
            int(&ctx, "select min(d_datekey) from dates").await,
            19920101
        );
        assert_eq!(
            int(&ctx, "select max(d_datekey) from dates").await,
            19981231
        );
        assert_eq!(
            int(&ctx, "select max(d_weeknuminyear) from dates").await,
            53
        );
        assert_eq!(
            int(&ctx, "select count(*) from dates where d_year = 1996").await,
            366
        );
        assert_eq!(
            int(
                &ctx,
                "select count(*) from dates where d_daynuminyear = 366"
            )
            .await,
            2
        );
        assert_eq!(
            int(
                &ctx,
                "select count(*) from dates where d_lastdayinmonthfl = 1"
            )
            .await,
            84
        );
        assert_eq!(
            int(
                &ctx,
                "select count(*) from dates where d_weekdayfl = 1 and d_daynuminweek in (1, 7)"
            )
            .await,
            0
        );
        assert_eq!(
            int(
                &ctx,
                "select count(*) from dates where d_date = 'December 25, 1995' and d_holidayfl = 1"
            )
            .await,
            1
        );
        // SSB Q1.1 shape returns a non-empty result.
        assert!(
            int(
                &ctx,
                "select count(*) from lineorder, dates where lo_orderdate = d_datekey \
                 and d_year = 1993 and lo_discount between 1 and 3 and lo_quantity < 25"
            )
            .await
                > 0
        );
    }

    #[tokio::test]
    async fn deterministic_output() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let ta = generate_ssb(0.01, a.path()).await.expect("generate a");
        let tb = generate_ssb(0.01, b.path()).await.expect("generate b");
        assert_eq!(rows_of(&ta), rows_of(&tb));
        for name in TABLES {
            let fa = fs::read(a.path().join(format!("{name}.parquet"))).expect("read a");
            let fb = fs::read(b.path().join(format!("{name}.parquet"))).expect("read b");
            assert!(fa == fb, "{name}.parquet differs between runs");
        }
        // Regenerating over existing files replaces them in place.
        let again = generate_ssb(0.01, a.path()).await.expect("regenerate");
        assert_eq!(rows_of(&again), rows_of(&ta));
        assert_eq!(fs::read_dir(a.path()).expect("read dir").count(), 5);
    }

    #[tokio::test]
    async fn sf01_supports_ssb_queries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let started = Instant::now();
        let tables = generate_ssb(0.1, dir.path()).await.expect("generate");
        eprintln!(
            "SSB SF 0.1 generated in {:?}: {:?}",
            started.elapsed(),
            rows_of(&tables)
        );
        let rows = rows_of(&tables);
        assert_eq!(rows["customer"], 3_000);
        assert_eq!(rows["supplier"], 200);
        assert_eq!(rows["part"], 20_000);
        assert_eq!(rows["dates"], 2_557);
        assert!((580_000..620_000).contains(&rows["lineorder"]), "{rows:?}");

        let ctx = context(&tables).await;
        assert!(
            int(
                &ctx,
                "select count(*) from part where p_brand = 'MFGR#2239'"
            )
            .await
                > 0
        );
        assert_eq!(
            int(&ctx, "select count(distinct p_brand) from part").await,
            1000
        );
        assert_eq!(
            int(&ctx, "select count(distinct c_city) from customer").await,
            250
        );
        assert_eq!(
            int(
                &ctx,
                "select count(*) from lineorder left anti join part on lo_partkey = p_partkey"
            )
            .await,
            0
        );
        // Q2.1: one group per (year, brand) of category MFGR#12.
        let q21 = int(
            &ctx,
            "select count(*) from (select d_year, p_brand from lineorder, dates, part, supplier \
             where lo_orderdate = d_datekey and lo_partkey = p_partkey and lo_suppkey = s_suppkey \
             and p_category = 'MFGR#12' and s_region = 'AMERICA' group by d_year, p_brand)",
        )
        .await;
        assert!((200..=280).contains(&q21), "Q2.1 groups: {q21}");
        // Q3.1: (c_nation, s_nation, year) within ASIA, 1992..1997.
        let q31 = int(
            &ctx,
            "select count(*) from (select c_nation, s_nation, d_year from customer, lineorder, supplier, dates \
             where lo_custkey = c_custkey and lo_suppkey = s_suppkey and lo_orderdate = d_datekey \
             and c_region = 'ASIA' and s_region = 'ASIA' and d_year >= 1992 and d_year <= 1997 \
             group by c_nation, s_nation, d_year)",
        )
        .await;
        assert!((100..=150).contains(&q31), "Q3.1 groups: {q31}");
        // Q4.1: (year, c_nation) in AMERICA for MFGR#1/2.
        let q41 = int(
            &ctx,
            "select count(*) from (select d_year, c_nation from dates, customer, supplier, part, lineorder \
             where lo_custkey = c_custkey and lo_suppkey = s_suppkey and lo_partkey = p_partkey \
             and lo_orderdate = d_datekey and c_region = 'AMERICA' and s_region = 'AMERICA' \
             and (p_mfgr = 'MFGR#1' or p_mfgr = 'MFGR#2') group by d_year, c_nation)",
        )
        .await;
        assert_eq!(q41, 35);
    }
}
