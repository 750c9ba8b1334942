//! TPC-H data as Parquet: the eight tables from the `tpchgen` row generators, one directory
//! per table (`DIR/lineitem/part-0.parquet`), columns named and typed as in the TPC-H
//! specification (keys BIGINT, money and quantities DECIMAL(15,2), dates DATE, the rest
//! VARCHAR or INT). Deterministic for a scale factor.
//!
//! The whole directory appears at once: the tables are written into a temp directory next to
//! `DIR`, fsynced, and renamed onto it.

use std::fmt::{Display, Write as _};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Date32Builder, Decimal128Builder, Int32Builder, Int64Builder, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result as DfResult};
use tpchgen::dates::TPCHDate;
use tpchgen::decimal::TPCHDecimal;
use tpchgen::generators::{
    Customer, CustomerGenerator, LineItem, LineItemGenerator, Nation, NationGenerator, Order,
    OrderGenerator, Part, PartGenerator, PartSupp, PartSuppGenerator, Region, RegionGenerator,
    Supplier, SupplierGenerator,
};

use super::ssbgen::{write_table, Sink, BATCH_ROWS};
use crate::error::{Error, Result};
use crate::fsutil::sync_dir;

/// The eight TPC-H tables, in the order they are written.
pub const TABLES: [&str; 8] = [
    "region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem",
];

/// Largest scale accepted (SF 1000 is about a terabyte of TBL text).
pub const MAX_SCALE: f64 = 1000.0;

/// One table written by [`generate_tpch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpchTable {
    pub name: String,
    /// The table's directory, `DIR/<name>`, holding `part-0.parquet`.
    pub dir: PathBuf,
    pub rows: u64,
}

/// Writes the TPC-H tables at `scale` into `dir` (which must not exist, or be empty).
pub async fn generate_tpch(scale: f64, dir: &Path) -> Result<Vec<TpchTable>> {
    if !scale.is_finite() || scale <= 0.0 || scale > MAX_SCALE {
        return Err(Error::invalid(
            "TPC-H scale factor",
            format!("must be greater than 0 and at most {MAX_SCALE}, got {scale}"),
        ));
    }
    let dir = dir.to_path_buf();
    // CPU-bound generation and blocking file I/O: off the async workers.
    tokio::task::spawn_blocking(move || generate_into(scale, &dir))
        .await
        .map_err(|e| Error::Refused(format!("TPC-H generator task failed: {e}")))?
}

fn generate_into(scale: f64, dir: &Path) -> Result<Vec<TpchTable>> {
    if let Ok(mut entries) = fs::read_dir(dir) {
        if entries.next().is_some() {
            return Err(Error::AlreadyExists {
                kind: "directory",
                name: format!(
                    "{} (not empty; give --dir a new or empty directory)",
                    dir.display()
                ),
            });
        }
    }
    let name = dir
        .file_name()
        .ok_or_else(|| Error::invalid("TPC-H output directory", format!("{:?} has no name", dir)))?
        .to_string_lossy()
        .to_string();
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| Error::io_path("create directory", &parent, e))?;
    let tmp = parent.join(format!(".{name}.tmp-{}", uuid::Uuid::new_v4().simple()));
    let written = write_all(scale, &tmp).and_then(|tables| {
        // An empty target directory is replaced; rename refuses a non-empty one.
        if dir.exists() {
            fs::remove_dir(dir).map_err(|e| Error::io_path("replace empty directory", dir, e))?;
        }
        fs::rename(&tmp, dir).map_err(|e| Error::io_path("rename onto", dir, e))?;
        sync_dir(&parent)?;
        Ok(tables
            .into_iter()
            .map(|t| TpchTable {
                dir: dir.join(&t.name),
                ..t
            })
            .collect())
    });
    if written.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    written
}

fn write_all(scale: f64, dir: &Path) -> Result<Vec<TpchTable>> {
    fs::create_dir_all(dir).map_err(|e| Error::io_path("create directory", dir, e))?;
    let mut out = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let table_dir = dir.join(table);
        fs::create_dir(&table_dir)
            .map_err(|e| Error::io_path("create directory", &table_dir, e))?;
        let schema = schema(table);
        let produce = |sink: Sink<'_>| match table {
            "region" => produce(&schema, RegionGenerator::new(scale, 1, 1), region_row, sink),
            "nation" => produce(&schema, NationGenerator::new(scale, 1, 1), nation_row, sink),
            "supplier" => produce(
                &schema,
                SupplierGenerator::new(scale, 1, 1),
                supplier_row,
                sink,
            ),
            "customer" => produce(
                &schema,
                CustomerGenerator::new(scale, 1, 1),
                customer_row,
                sink,
            ),
            "part" => produce(&schema, PartGenerator::new(scale, 1, 1), part_row, sink),
            "partsupp" => produce(
                &schema,
                PartSuppGenerator::new(scale, 1, 1),
                partsupp_row,
                sink,
            ),
            "orders" => produce(&schema, OrderGenerator::new(scale, 1, 1), order_row, sink),
            _ => produce(
                &schema,
                LineItemGenerator::new(scale, 1, 1),
                lineitem_row,
                sink,
            ),
        };
        let written = write_table(&table_dir, "part-0", schema.clone(), produce)
            .map_err(|e| Error::Refused(format!("writing TPC-H table {table}: {e}")))?;
        out.push(TpchTable {
            name: table.to_string(),
            dir: table_dir,
            rows: written.rows,
        });
    }
    sync_dir(dir)?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Schemas and rows

/// A column's type; fixes its Arrow type and how a [`Value`] is appended.
#[derive(Clone, Copy)]
enum Kind {
    Key,
    Int,
    Money,
    Date,
    Text,
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Kind::Key => DataType::Int64,
            Kind::Int => DataType::Int32,
            Kind::Money => DataType::Decimal128(15, 2),
            Kind::Date => DataType::Date32,
            Kind::Text => DataType::Utf8,
        }
    }
}

fn columns(table: &str) -> &'static [(&'static str, Kind)] {
    use Kind::*;
    match table {
        "region" => &[("r_regionkey", Key), ("r_name", Text), ("r_comment", Text)],
        "nation" => &[
            ("n_nationkey", Key),
            ("n_name", Text),
            ("n_regionkey", Key),
            ("n_comment", Text),
        ],
        "supplier" => &[
            ("s_suppkey", Key),
            ("s_name", Text),
            ("s_address", Text),
            ("s_nationkey", Key),
            ("s_phone", Text),
            ("s_acctbal", Money),
            ("s_comment", Text),
        ],
        "customer" => &[
            ("c_custkey", Key),
            ("c_name", Text),
            ("c_address", Text),
            ("c_nationkey", Key),
            ("c_phone", Text),
            ("c_acctbal", Money),
            ("c_mktsegment", Text),
            ("c_comment", Text),
        ],
        "part" => &[
            ("p_partkey", Key),
            ("p_name", Text),
            ("p_mfgr", Text),
            ("p_brand", Text),
            ("p_type", Text),
            ("p_size", Int),
            ("p_container", Text),
            ("p_retailprice", Money),
            ("p_comment", Text),
        ],
        "partsupp" => &[
            ("ps_partkey", Key),
            ("ps_suppkey", Key),
            ("ps_availqty", Int),
            ("ps_supplycost", Money),
            ("ps_comment", Text),
        ],
        "orders" => &[
            ("o_orderkey", Key),
            ("o_custkey", Key),
            ("o_orderstatus", Text),
            ("o_totalprice", Money),
            ("o_orderdate", Date),
            ("o_orderpriority", Text),
            ("o_clerk", Text),
            ("o_shippriority", Int),
            ("o_comment", Text),
        ],
        _ => &[
            ("l_orderkey", Key),
            ("l_partkey", Key),
            ("l_suppkey", Key),
            ("l_linenumber", Int),
            ("l_quantity", Money),
            ("l_extendedprice", Money),
            ("l_discount", Money),
            ("l_tax", Money),
            ("l_returnflag", Text),
            ("l_linestatus", Text),
            ("l_shipdate", Date),
            ("l_commitdate", Date),
            ("l_receiptdate", Date),
            ("l_shipinstruct", Text),
            ("l_shipmode", Text),
            ("l_comment", Text),
        ],
    }
}

/// The Arrow schema of a TPC-H table (no column is ever null).
pub fn schema(table: &str) -> SchemaRef {
    Arc::new(Schema::new(
        columns(table)
            .iter()
            .map(|(name, kind)| Field::new(*name, kind.data_type(), false))
            .collect::<Vec<_>>(),
    ))
}

/// One cell of a generated row, in its column's [`Kind`].
enum Value<'a> {
    Key(i64),
    Int(i32),
    Money(TPCHDecimal),
    Date(TPCHDate),
    Text(&'a str),
    /// Text that tpchgen renders on demand (names, addresses, phone numbers).
    Shown(&'a dyn Display),
}

enum Builder {
    Key(Int64Builder),
    Int(Int32Builder),
    Money(Decimal128Builder),
    Date(Date32Builder),
    Text(StringBuilder),
}

impl Builder {
    fn new(kind: Kind) -> DfResult<Builder> {
        Ok(match kind {
            Kind::Key => Builder::Key(Int64Builder::with_capacity(BATCH_ROWS)),
            Kind::Int => Builder::Int(Int32Builder::with_capacity(BATCH_ROWS)),
            Kind::Money => Builder::Money(
                Decimal128Builder::with_capacity(BATCH_ROWS).with_precision_and_scale(15, 2)?,
            ),
            Kind::Date => Builder::Date(Date32Builder::with_capacity(BATCH_ROWS)),
            Kind::Text => Builder::Text(StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 16)),
        })
    }

    fn append(&mut self, value: &Value<'_>) -> DfResult<()> {
        match (self, value) {
            (Builder::Key(b), Value::Key(v)) => b.append_value(*v),
            (Builder::Int(b), Value::Int(v)) => b.append_value(*v),
            (Builder::Money(b), Value::Money(v)) => b.append_value(i128::from(v.into_inner())),
            (Builder::Date(b), Value::Date(v)) => b.append_value(v.to_unix_epoch()),
            (Builder::Text(b), Value::Text(v)) => b.append_value(v),
            (Builder::Text(b), Value::Shown(v)) => {
                write!(b, "{v}")?;
                b.append_value("");
            }
            _ => {
                return Err(DataFusionError::Internal(
                    "TPC-H row value does not match its column type".into(),
                ))
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Key(b) => Arc::new(b.finish()),
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Money(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Text(b) => Arc::new(b.finish()),
        }
    }
}

/// Streams a generator's rows, as `row` lays them out, into batches of [`BATCH_ROWS`].
fn produce<G, T, const N: usize>(
    schema: &SchemaRef,
    generator: G,
    row: for<'r> fn(&'r T) -> [Value<'r>; N],
    sink: Sink<'_>,
) -> DfResult<()>
where
    G: IntoIterator<Item = T>,
{
    let kinds = columns_of(schema);
    let mut builders = kinds
        .iter()
        .map(|k| Builder::new(*k))
        .collect::<DfResult<Vec<_>>>()?;
    let mut rows = 0;
    let mut flush = |builders: &mut Vec<Builder>| -> DfResult<()> {
        let arrays = builders.iter_mut().map(Builder::finish).collect();
        sink(RecordBatch::try_new(schema.clone(), arrays)?)
    };
    for item in generator {
        for (builder, value) in builders.iter_mut().zip(row(&item).iter()) {
            builder.append(value)?;
        }
        rows += 1;
        if rows == BATCH_ROWS {
            flush(&mut builders)?;
            rows = 0;
        }
    }
    if rows > 0 {
        flush(&mut builders)?;
    }
    Ok(())
}

fn columns_of(schema: &SchemaRef) -> Vec<Kind> {
    schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Int64 => Kind::Key,
            DataType::Int32 => Kind::Int,
            DataType::Decimal128(..) => Kind::Money,
            DataType::Date32 => Kind::Date,
            _ => Kind::Text,
        })
        .collect()
}

fn region_row<'r>(r: &'r Region<'_>) -> [Value<'r>; 3] {
    [
        Value::Key(r.r_regionkey),
        Value::Text(r.r_name),
        Value::Text(r.r_comment),
    ]
}

fn nation_row<'r>(n: &'r Nation<'_>) -> [Value<'r>; 4] {
    [
        Value::Key(n.n_nationkey),
        Value::Text(n.n_name),
        Value::Key(n.n_regionkey),
        Value::Text(n.n_comment),
    ]
}

fn supplier_row(s: &Supplier) -> [Value<'_>; 7] {
    [
        Value::Key(s.s_suppkey),
        Value::Shown(&s.s_name),
        Value::Shown(&s.s_address),
        Value::Key(s.s_nationkey),
        Value::Shown(&s.s_phone),
        Value::Money(s.s_acctbal),
        Value::Text(&s.s_comment),
    ]
}

fn customer_row<'r>(c: &'r Customer<'_>) -> [Value<'r>; 8] {
    [
        Value::Key(c.c_custkey),
        Value::Shown(&c.c_name),
        Value::Shown(&c.c_address),
        Value::Key(c.c_nationkey),
        Value::Shown(&c.c_phone),
        Value::Money(c.c_acctbal),
        Value::Text(c.c_mktsegment),
        Value::Text(c.c_comment),
    ]
}

fn part_row<'r>(p: &'r Part<'_>) -> [Value<'r>; 9] {
    [
        Value::Key(p.p_partkey),
        Value::Shown(&p.p_name),
        Value::Shown(&p.p_mfgr),
        Value::Shown(&p.p_brand),
        Value::Text(p.p_type),
        Value::Int(p.p_size),
        Value::Text(p.p_container),
        Value::Money(p.p_retailprice),
        Value::Text(p.p_comment),
    ]
}

fn partsupp_row<'r>(ps: &'r PartSupp<'_>) -> [Value<'r>; 5] {
    [
        Value::Key(ps.ps_partkey),
        Value::Key(ps.ps_suppkey),
        Value::Int(ps.ps_availqty),
        Value::Money(ps.ps_supplycost),
        Value::Text(ps.ps_comment),
    ]
}

fn order_row<'r>(o: &'r Order<'_>) -> [Value<'r>; 9] {
    [
        Value::Key(o.o_orderkey),
        Value::Key(o.o_custkey),
        Value::Text(o.o_orderstatus.as_str()),
        Value::Money(o.o_totalprice),
        Value::Date(o.o_orderdate),
        Value::Text(o.o_orderpriority),
        Value::Shown(&o.o_clerk),
        Value::Int(o.o_shippriority),
        Value::Text(o.o_comment),
    ]
}

fn lineitem_row<'r>(l: &'r LineItem<'_>) -> [Value<'r>; 16] {
    [
        Value::Key(l.l_orderkey),
        Value::Key(l.l_partkey),
        Value::Key(l.l_suppkey),
        Value::Int(l.l_linenumber),
        // TPC-H declares L_QUANTITY a decimal; tpchgen yields whole units.
        Value::Money(TPCHDecimal::new(l.l_quantity * 100)),
        Value::Money(l.l_extendedprice),
        Value::Money(l.l_discount),
        Value::Money(l.l_tax),
        Value::Text(l.l_returnflag),
        Value::Text(l.l_linestatus),
        Value::Date(l.l_shipdate),
        Value::Date(l.l_commitdate),
        Value::Date(l.l_receiptdate),
        Value::Text(l.l_shipinstruct),
        Value::Text(l.l_shipmode),
        Value::Text(l.l_comment),
    ]
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{ParquetReadOptions, SessionContext};

    use super::*;

    async fn context(dir: &Path) -> SessionContext {
        let ctx = SessionContext::new();
        for t in TABLES {
            let path = dir.join(t);
            ctx.register_parquet(t, path.to_str().unwrap(), ParquetReadOptions::default())
                .await
                .unwrap();
        }
        ctx
    }

    async fn strings(ctx: &SessionContext, sql: &str) -> Vec<String> {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let mut out = Vec::new();
        for b in &batches {
            for r in 0..b.num_rows() {
                let cells: Vec<String> = b
                    .columns()
                    .iter()
                    .map(|c| datafusion::arrow::util::display::array_value_to_string(c, r).unwrap())
                    .collect();
                out.push(cells.join("|"));
            }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sf001_row_counts_follow_the_spec_and_values_match_dbgen() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("tpch");
        let tables = generate_tpch(0.01, &dir).await.unwrap();
        let rows: Vec<(&str, u64)> = tables.iter().map(|t| (t.name.as_str(), t.rows)).collect();
        let sf = 0.01;
        let orders = (1_500_000.0 * sf) as u64;
        assert_eq!(
            &rows[..7],
            &[
                ("region", 5),
                ("nation", 25),
                ("supplier", (10_000.0 * sf) as u64),
                ("customer", (150_000.0 * sf) as u64),
                ("part", (200_000.0 * sf) as u64),
                ("partsupp", 4 * (200_000.0 * sf) as u64),
                ("orders", orders),
            ]
        );
        // One to seven lines per order, four on average.
        let (name, lines) = rows[7];
        assert_eq!(name, "lineitem");
        assert!(
            (lines as f64 - 4.0 * orders as f64).abs() < 0.02 * 4.0 * orders as f64,
            "{lines} line items for {orders} orders"
        );

        // Only the table directories, one Parquet file each; no temp directory left.
        let mut listed: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        listed.sort();
        let mut want: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
        want.sort();
        assert_eq!(listed, want);
        assert_eq!(fs::read_dir(base.path()).unwrap().count(), 1);
        for t in &tables {
            let files: Vec<_> = fs::read_dir(&t.dir).unwrap().collect();
            assert_eq!(files.len(), 1, "{}", t.name);
            assert!(t.dir.join("part-0.parquet").is_file());
        }

        let ctx = context(&dir).await;
        // The first line of TPC-H's lineitem.tbl (part and supplier keys depend on the scale).
        assert_eq!(
            strings(
                &ctx,
                "select l_quantity, l_discount, l_tax, l_returnflag, l_linestatus, l_shipdate, \
                 l_commitdate, l_receiptdate, l_shipinstruct, l_shipmode \
                 from lineitem where l_orderkey = 1 and l_linenumber = 1"
            )
            .await,
            vec!["17.00|0.04|0.02|N|O|1996-03-13|1996-02-12|1996-03-22|DELIVER IN PERSON|TRUCK"]
        );
        // L_EXTENDEDPRICE = L_QUANTITY * P_RETAILPRICE, for every line.
        assert_eq!(
            strings(
                &ctx,
                "select count(*) from lineitem join part on l_partkey = p_partkey \
                 where l_extendedprice <> l_quantity * p_retailprice"
            )
            .await,
            vec!["0"]
        );
        assert_eq!(
            strings(&ctx, "select n_name, r_name from nation join region on n_regionkey = r_regionkey where n_nationkey = 0").await,
            vec!["ALGERIA|AFRICA"]
        );
        assert_eq!(
            strings(&ctx, "select c_name from customer where c_custkey = 1").await,
            vec!["Customer#000000001"]
        );
        // Types as the specification declares them.
        let schema = ctx
            .table("lineitem")
            .await
            .unwrap()
            .schema()
            .as_arrow()
            .clone();
        assert_eq!(
            schema.field_with_name("l_orderkey").unwrap().data_type(),
            &DataType::Int64
        );
        assert_eq!(
            schema
                .field_with_name("l_extendedprice")
                .unwrap()
                .data_type(),
            &DataType::Decimal128(15, 2)
        );
        assert_eq!(
            schema.field_with_name("l_shipdate").unwrap().data_type(),
            &DataType::Date32
        );
        // Every line item's order exists, and every partsupp row names a real part and supplier.
        assert_eq!(
            strings(
                &ctx,
                "select count(*) from lineitem left join orders on l_orderkey = o_orderkey \
                 where o_orderkey is null"
            )
            .await,
            vec!["0"]
        );
        assert_eq!(
            strings(
                &ctx,
                "select count(*) from partsupp join part on ps_partkey = p_partkey \
                 join supplier on ps_suppkey = s_suppkey"
            )
            .await,
            vec![(4.0 * 200_000.0 * sf).to_string()]
        );
    }

    #[tokio::test]
    async fn refuses_bad_scales_and_a_non_empty_directory() {
        let base = tempfile::tempdir().unwrap();
        for bad in [0.0, -1.0, f64::NAN, 5000.0] {
            let err = generate_tpch(bad, base.path()).await.unwrap_err();
            assert!(matches!(err, Error::Invalid { .. }), "{bad}: {err}");
        }
        let full = base.path().join("full");
        fs::create_dir(&full).unwrap();
        fs::write(full.join("keep.txt"), "x").unwrap();
        let err = generate_tpch(0.001, &full).await.unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
        assert!(err.to_string().contains("not empty"), "{err}");
        assert_eq!(fs::read_to_string(full.join("keep.txt")).unwrap(), "x");
        // Nothing else was written next to it.
        assert_eq!(fs::read_dir(base.path()).unwrap().count(), 1);
    }
}
