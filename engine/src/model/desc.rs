//! The descriptors users write (as JSON): project, source table, data model and cube.
//! They are plain data; `model::layout` validates them and resolves names and types.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A project groups tables, models and cubes; unqualified table names in SQL resolve in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectDesc {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// File format of a source table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    Parquet,
    Csv,
}

/// A source table: files under `kylin.source.url` and their columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDesc {
    pub project: String,
    pub name: String,
    /// A file, a directory of files or a glob, relative to `kylin.source.url` unless absolute.
    pub location: String,
    pub format: SourceFormat,
    /// The columns stored in the files.
    pub columns: Vec<ColumnDesc>,
    /// CSV only: the field delimiter (default `,`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv_delimiter: Option<char>,
    /// CSV only: whether the first line holds column names (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv_header: Option<bool>,
    /// Columns taken from Hive-style `key=value/` directory names, after the file columns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition_columns: Vec<ColumnDesc>,
}

/// A column and its SQL type name (`integer`, `bigint`, `double`, `varchar`, `date`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDesc {
    pub name: String,
    pub data_type: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JoinKind {
    Inner,
    Left,
}

/// A lookup table joined on `foreign_key` = `primary_key`. A bare foreign-key column is a
/// fact-table column; `alias.column` names a column of an earlier lookup (a snowflake:
/// `customer.c_nationkey` = `n_nationkey`). `alias` (default: the table name) is how the
/// model, its cubes and its computed columns refer to this join of the table, so one table
/// can be joined twice (TPC-H's `nation` as `cust_nation` and `supp_nation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupDesc {
    pub table: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    pub join: JoinKind,
    pub foreign_key: Vec<String>,
    pub primary_key: Vec<String>,
}

impl LookupDesc {
    /// The name the model uses for this join: the alias, or the table name.
    pub fn name(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.table)
    }
}

/// A column computed from model columns, e.g. `v_revenue = lo_extendedprice * lo_discount`
/// (columns of lookups qualified by their alias where the bare name is ambiguous).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputedColumnDesc {
    pub name: String,
    /// A SQL expression over columns of the model's tables.
    pub expression: String,
    pub data_type: String,
}

/// The date column that segments are cut on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionDesc {
    /// A fact-table column: an integer `yyyyMMdd`, a `date`, or a string in `format`.
    pub column: String,
    /// For string columns: `yyyy-MM-dd` (default) or `yyyyMMdd`.
    #[serde(default)]
    pub format: Option<String>,
}

/// A star model: a fact table, its lookups, computed columns and partition column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDesc {
    pub name: String,
    pub project: String,
    pub fact_table: String,
    #[serde(default)]
    pub lookups: Vec<LookupDesc>,
    #[serde(default)]
    pub computed_columns: Vec<ComputedColumnDesc>,
    #[serde(default)]
    pub partition: Option<PartitionDesc>,
    /// A SQL predicate over model columns; only rows passing it are built into cubes (Kylin's
    /// `filter_condition`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_condition: Option<String>,
}

/// A dimension: either a normal column (`column`), or lookup columns answered through the
/// fact table's foreign key (`table` + `derived`), which stores only the key in cuboids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DimensionDesc {
    /// The name of the stored column (default: the column's own name); needed when two
    /// dimensions have the same column name under different aliases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A model column: `column` or `alias.column`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// Derived dimensions: the lookup's alias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub derived: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MeasureFunction {
    Sum,
    Count,
    Min,
    Max,
    CountDistinct,
    /// The `n` values of `by` with the largest SUM of `column` (Kylin's TOP_N).
    TopN,
    /// Quantiles of `column` from a t-digest (Kylin's PERCENTILE).
    Percentile,
    /// `extended` carried next to dimension `column` (its id), so queries grouping by the id
    /// can show it without a lookup join (Kylin's EXTENDED_COLUMN).
    ExtendedColumn,
}

/// A measure. `column` is a model column or computed column; COUNT takes none (or `*`).
/// - COUNT_DISTINCT's `distinct` is `hll` / `hll(P)` (approximate, precision P, default 12) or
///   `bitmap` (exact; a column of any other type than integer goes through a global
///   dictionary of stable ids).
/// - TOP_N keeps the `n` (default 100) values of `by` with the largest SUM of `column`.
/// - PERCENTILE keeps a t-digest of `column` with the given `compression` (default 100).
/// - EXTENDED_COLUMN carries `extended` with dimension `column` (the id it depends on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureDesc {
    pub name: String,
    pub function: MeasureFunction,
    #[serde(default)]
    pub column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct: Option<String>,
    /// TOP_N: the column whose top values are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// TOP_N: how many values are kept (and the largest LIMIT answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// PERCENTILE: the t-digest's compression (more is more accurate and larger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<u32>,
    /// EXTENDED_COLUMN: the column carried with dimension `column`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended: Option<String>,
}

impl MeasureDesc {
    /// A measure with only a name, function, column and distinct kind (the other options
    /// unset).
    pub fn simple(
        name: &str,
        function: MeasureFunction,
        column: Option<&str>,
        distinct: Option<&str>,
    ) -> Self {
        MeasureDesc {
            name: name.into(),
            function,
            column: column.map(String::from),
            distinct: distinct.map(String::from),
            by: None,
            n: None,
            compression: None,
            extended: None,
        }
    }
}

/// An aggregation group prunes the 2^n cuboids: only combinations of `includes` that contain
/// every `mandatory` dimension, a prefix of each hierarchy and all-or-none of each joint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregationGroupDesc {
    pub includes: Vec<String>,
    #[serde(default)]
    pub mandatory: Vec<String>,
    #[serde(default)]
    pub hierarchies: Vec<Vec<String>>,
    #[serde(default)]
    pub joints: Vec<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CubeDesc {
    pub name: String,
    pub model: String,
    pub dimensions: Vec<DimensionDesc>,
    pub measures: Vec<MeasureDesc>,
    pub aggregation_groups: Vec<AggregationGroupDesc>,
    /// Rowkey order of the stored columns; defaults to the order of `dimensions`.
    #[serde(default)]
    pub rowkey: Vec<String>,
    /// Segments ending more than this many days before the newest segment's end are dropped.
    #[serde(default)]
    pub retention_range_days: Option<u32>,
    /// Auto-merge windows in days, smallest first (Kylin's `auto_merge_time_ranges`, which
    /// Kylin writes in milliseconds): when adjacent READY segments fill a window, the job
    /// engine merges them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auto_merge_time_ranges: Vec<u32>,
    /// Fact rows stored row by row with every segment, for detail (non-aggregate) queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_index: Option<TableIndexDesc>,
    /// Cuboids built in addition to the aggregation groups' ones, each a list of dimension
    /// names (Kylin's `mandatory_dimension_set_list`); `qilin-jobs cube optimize --apply`
    /// adds the sets the query history asks for here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mandatory_dimension_set_list: Vec<Vec<String>>,
    /// Cuboids not built although an aggregation group allows them, each a list of dimension
    /// names (Kylin's `cuboid_black_list`, by names instead of ids). The base cuboid cannot
    /// be listed: every other cuboid can be built from it, and queries fall back to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cuboid_black_list: Vec<Vec<String>>,
}

/// A table index (Kylin 5): fact-table columns stored row by row, sorted by `sort_columns`
/// so that per-block min/max prunes filters on them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableIndexDesc {
    /// Fact-table columns stored, in this order; empty or omitted: every column of the fact
    /// table (computed columns are not stored: queries compute them from their inputs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Columns (of `columns`) the rows are sorted by, ascending, nulls last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sort_columns: Vec<String>,
}

/// Parses a descriptor from JSON; the error names the kind of descriptor and where it broke.
pub fn from_json<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Json {
        what: what.to_string(),
        source,
    })
}

/// Serializes a descriptor as pretty JSON (metadata files are meant to be read by people).
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(value).expect("descriptors always serialize")
}
