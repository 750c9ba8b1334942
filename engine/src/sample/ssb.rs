//! The SSB sample project: tables `lineorder`, `customer`, `supplier`, `part`, `dates`; the
//! star model `ssb_model`; the cube `ssb_cube`.
//!
//! The cube follows the shape of the public ssb-kylin cube (date, customer, supplier and part
//! hierarchies, the measures the 13 SSB queries need) but splits its aggregation groups by
//! query family, which keeps the cuboid count at 149 instead of thousands:
//! 1. Q1.x — year > yearmonthnum, week, discount, quantity;
//! 2. Q3.x — year > yearmonth, customer and supplier region > nation > city;
//! 3. Q2.x/Q4.x — year, customer region > nation, supplier region > nation > city,
//!    part mfgr > category > brand;
//! 4. day-level dates (the `dates` columns derived through `lo_orderdate`) by region;
//! 5. supplier key by year (`lo_suppkey`, `d_year`): a small group of its own so that the
//!    EXTENDED_COLUMN measure `s_name_extended` (supplier names carried with `lo_suppkey`)
//!    answers `GROUP BY s_suppkey, s_name` without the supplier table; it adds only the
//!    cuboids {lo_suppkey} and {lo_suppkey, d_year}.

use std::fs::File;
use std::path::Path;

use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};
use crate::metadata::managers::Metadata;
use crate::model::*;

pub const PROJECT: &str = "ssb";
pub const MODEL: &str = "ssb_model";
pub const CUBE: &str = "ssb_cube";
pub const TABLES: [&str; 5] = ["lineorder", "customer", "supplier", "part", "dates"];
/// The folder under `kylin.source.url` that holds the sample's Parquet files.
pub const SOURCE_DIR: &str = "ssb";

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Parses a file of `-- Qx.y`-labelled, `;`-terminated SSB queries (the tests' and the
/// benchmark's `ssb_queries.sql`) into `(name, sql)` pairs; there must be exactly 13.
pub fn parse_queries(text: &str) -> Result<Vec<(String, String)>> {
    let bad = |reason: String| Error::invalid("SSB query file", reason);
    let (mut out, mut name, mut sql) = (Vec::new(), None::<String>, String::new());
    for line in text.lines().map(str::trim) {
        if let Some(label) = line.strip_prefix("--") {
            let label = label.trim();
            if label.starts_with('Q') && !label.contains(' ') {
                name = Some(label.to_string());
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if !sql.is_empty() {
            sql.push(' ');
        }
        sql.push_str(line);
        if line.ends_with(';') {
            let n = name
                .take()
                .ok_or_else(|| bad(format!("statement without a '-- Qx.y' label: {sql}")))?;
            out.push((n, sql.trim_end_matches(';').trim().to_string()));
            sql.clear();
        }
    }
    if out.len() != 13 {
        return Err(bad(format!(
            "expected the 13 SSB queries, found {}",
            out.len()
        )));
    }
    Ok(out)
}

pub fn project() -> ProjectDesc {
    ProjectDesc {
        name: PROJECT.into(),
        description: "Star Schema Benchmark sample".into(),
    }
}

/// Table descriptors with the columns of the generated Parquet files.
pub fn tables(source_url: &Path) -> Result<Vec<TableDesc>> {
    TABLES
        .iter()
        .map(|name| {
            let location = format!("{SOURCE_DIR}/{name}.parquet");
            let path = source_url.join(&location);
            let file = File::open(&path).map_err(|e| Error::io_path("open", &path, e))?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| Error::corrupt(path.display().to_string(), e.to_string()))?;
            let columns = builder
                .schema()
                .fields()
                .iter()
                .map(|f| {
                    sql_type_name(f.data_type())
                        .map(|t| ColumnDesc {
                            name: f.name().clone(),
                            data_type: t,
                        })
                        .ok_or_else(|| {
                            Error::invalid(
                                format!("table {name}"),
                                format!(
                                    "column {} has unsupported type {}",
                                    f.name(),
                                    f.data_type()
                                ),
                            )
                        })
                })
                .collect::<Result<_>>()?;
            Ok(TableDesc {
                project: PROJECT.into(),
                name: name.to_string(),
                location,
                format: SourceFormat::Parquet,
                columns,
                csv_delimiter: None,
                csv_header: None,
                partition_columns: vec![],
            })
        })
        .collect()
}

pub fn model() -> ModelDesc {
    let lookup = |table: &str, fk: &str, pk: &str| LookupDesc {
        table: table.into(),
        alias: None,
        join: JoinKind::Inner,
        foreign_key: s(&[fk]),
        primary_key: s(&[pk]),
    };
    ModelDesc {
        name: MODEL.into(),
        project: PROJECT.into(),
        fact_table: "lineorder".into(),
        lookups: vec![
            lookup("dates", "lo_orderdate", "d_datekey"),
            lookup("customer", "lo_custkey", "c_custkey"),
            lookup("supplier", "lo_suppkey", "s_suppkey"),
            lookup("part", "lo_partkey", "p_partkey"),
        ],
        computed_columns: vec![
            ComputedColumnDesc {
                name: "v_revenue".into(),
                expression: "lo_extendedprice * lo_discount".into(),
                data_type: "bigint".into(),
            },
            ComputedColumnDesc {
                name: "v_profit".into(),
                expression: "lo_revenue - lo_supplycost".into(),
                data_type: "bigint".into(),
            },
        ],
        partition: Some(PartitionDesc {
            column: "lo_orderdate".into(),
            format: None,
        }),
        filter_condition: None,
    }
}

pub fn cube() -> CubeDesc {
    let dims = [
        "d_year",
        "d_yearmonthnum",
        "d_yearmonth",
        "d_weeknuminyear",
        "lo_discount",
        "lo_quantity",
        "c_region",
        "c_nation",
        "c_city",
        "s_region",
        "s_nation",
        "s_city",
        "p_mfgr",
        "p_category",
        "p_brand",
        "lo_suppkey",
    ];
    let mut dimensions: Vec<DimensionDesc> = dims
        .iter()
        .map(|d| DimensionDesc {
            name: None,
            column: Some(d.to_string()),
            table: None,
            derived: vec![],
        })
        .collect();
    dimensions.push(DimensionDesc {
        name: None,
        column: None,
        table: Some("dates".into()),
        derived: s(&[
            "d_date",
            "d_dayofweek",
            "d_month",
            "d_daynuminweek",
            "d_daynuminmonth",
            "d_daynuminyear",
            "d_monthnuminyear",
            "d_sellingseason",
            "d_lastdayinweekfl",
            "d_lastdayinmonthfl",
            "d_holidayfl",
            "d_weekdayfl",
        ]),
    });
    let measure = MeasureDesc::simple;
    use MeasureFunction::*;
    CubeDesc {
        name: CUBE.into(),
        model: MODEL.into(),
        dimensions,
        measures: vec![
            measure("row_count", Count, None, None),
            measure("lo_revenue_sum", Sum, Some("lo_revenue"), None),
            measure("lo_supplycost_sum", Sum, Some("lo_supplycost"), None),
            measure("v_revenue_sum", Sum, Some("v_revenue"), None),
            measure("v_profit_sum", Sum, Some("v_profit"), None),
            measure("lo_quantity_sum", Sum, Some("lo_quantity"), None),
            measure("lo_extendedprice_sum", Sum, Some("lo_extendedprice"), None),
            measure("lo_extendedprice_min", Min, Some("lo_extendedprice"), None),
            measure("lo_extendedprice_max", Max, Some("lo_extendedprice"), None),
            measure(
                "lo_custkey_hll",
                CountDistinct,
                Some("lo_custkey"),
                Some("hll(12)"),
            ),
            measure(
                "lo_suppkey_bitmap",
                CountDistinct,
                Some("lo_suppkey"),
                Some("bitmap"),
            ),
            MeasureDesc {
                compression: Some(100),
                ..measure(
                    "lo_revenue_percentile",
                    Percentile,
                    Some("lo_revenue"),
                    None,
                )
            },
            MeasureDesc {
                extended: Some("s_name".into()),
                ..measure("s_name_extended", ExtendedColumn, Some("lo_suppkey"), None)
            },
            // Exact distinct count of a string column, through the global dictionary.
            measure(
                "c_name_distinct",
                CountDistinct,
                Some("c_name"),
                Some("bitmap"),
            ),
            // The suppliers with the largest revenue, per cuboid row (s_name is no dimension).
            MeasureDesc {
                by: Some("s_name".into()),
                n: Some(100),
                ..measure("lo_revenue_top_sellers", TopN, Some("lo_revenue"), None)
            },
        ],
        aggregation_groups: vec![
            AggregationGroupDesc {
                includes: s(&[
                    "d_year",
                    "d_yearmonthnum",
                    "d_weeknuminyear",
                    "lo_discount",
                    "lo_quantity",
                ]),
                mandatory: vec![],
                hierarchies: vec![s(&["d_year", "d_yearmonthnum"])],
                joints: vec![],
            },
            AggregationGroupDesc {
                includes: s(&[
                    "d_year",
                    "d_yearmonth",
                    "c_region",
                    "c_nation",
                    "c_city",
                    "s_region",
                    "s_nation",
                    "s_city",
                ]),
                mandatory: vec![],
                hierarchies: vec![
                    s(&["d_year", "d_yearmonth"]),
                    s(&["c_region", "c_nation", "c_city"]),
                    s(&["s_region", "s_nation", "s_city"]),
                ],
                joints: vec![],
            },
            AggregationGroupDesc {
                includes: s(&[
                    "d_year",
                    "c_region",
                    "c_nation",
                    "s_region",
                    "s_nation",
                    "s_city",
                    "p_mfgr",
                    "p_category",
                    "p_brand",
                ]),
                mandatory: vec![],
                hierarchies: vec![
                    s(&["c_region", "c_nation"]),
                    s(&["s_region", "s_nation", "s_city"]),
                    s(&["p_mfgr", "p_category", "p_brand"]),
                ],
                joints: vec![],
            },
            AggregationGroupDesc {
                includes: s(&["lo_orderdate", "c_region", "s_region"]),
                mandatory: s(&["lo_orderdate"]),
                hierarchies: vec![],
                joints: vec![],
            },
            AggregationGroupDesc {
                includes: s(&["lo_suppkey", "d_year"]),
                mandatory: vec![],
                hierarchies: vec![],
                joints: vec![],
            },
        ],
        rowkey: vec![],
        retention_range_days: None,
        auto_merge_time_ranges: vec![],
        // Every lineorder column, sorted by order date: previews and detail rows filtered by
        // date read few blocks.
        table_index: Some(TableIndexDesc {
            columns: vec![],
            sort_columns: s(&["lo_orderdate"]),
        }),
        mandatory_dimension_set_list: vec![],
        cuboid_black_list: vec![],
    }
}

/// The range the sample's single segment covers: all of SSB's dates.
pub fn full_range() -> SegmentRange {
    SegmentRange::parse("1992-01-01", "1999-01-01").expect("valid constant range")
}

/// Generates the SSB data at `scale` under `<source_url>/ssb` (unless a generation at the same
/// scale is already there) and registers the project, tables, model and cube.
pub async fn install(
    meta: &Metadata,
    source_url: &Path,
    scale: f64,
    max_cuboids: u64,
) -> Result<CubeLayout> {
    let dir = source_url.join(SOURCE_DIR);
    let marker = dir.join("SCALE");
    let have = std::fs::read_to_string(&marker).ok();
    if have.as_deref().map(str::trim) != Some(scale.to_string().as_str()) {
        super::ssbgen::generate_ssb(scale, &dir).await?;
        crate::fsutil::write_atomic(&marker, scale.to_string().as_bytes())?;
    }
    meta.save_project(&project())?;
    for t in tables(source_url)? {
        meta.save_table(&t)?;
    }
    meta.save_model(&model())?;
    meta.save_cube(&cube(), max_cuboids)
}
