//! Validation and resolution of a cube against its model and source tables: which columns a
//! cuboid stores (the rowkey), which measure states, and which cuboids the aggregation groups
//! allow. Every error names the offending descriptor and column.

use std::collections::{BTreeSet, HashMap};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{Expr, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use std::ops::ControlFlow;
use std::sync::Arc;

use super::cuboid::{self, enumerate_group, CuboidId};
use super::desc::*;
use crate::error::{Error, Result};
use crate::names::validate_name;

/// A column of one of the model's tables (or a computed column of the fact table).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelColumn {
    pub table: String,
    pub column: String,
    pub data_type: DataType,
    /// For computed columns: the SQL expression over fact columns.
    pub expression: Option<String>,
}

/// A column stored in every cuboid that includes it; its field name is `name`.
#[derive(Debug, Clone, PartialEq)]
pub struct RowkeyColumn {
    pub name: String,
    pub source: ModelColumn,
}

/// Lookup columns answered through the fact table's foreign key (stored as rowkey columns).
#[derive(Debug, Clone, PartialEq)]
pub struct DerivedDimension {
    /// The lookup's alias in the model (its columns' `table`).
    pub table: String,
    /// The source table the lookup reads.
    pub lookup_table: String,
    pub kind: JoinKind,
    pub columns: Vec<ModelColumn>,
    /// Rowkey column names holding the foreign key.
    pub foreign_key: Vec<String>,
    pub primary_key: Vec<String>,
}

/// How a measure's state is stored and merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    SumInt,
    SumFloat,
    Count,
    MinInt,
    MaxInt,
    MinFloat,
    MaxFloat,
    /// HyperLogLog of the given precision, serialized (see `measure::hll`).
    Hll(u8),
    /// Roaring bitmap of the distinct values (see `measure::bitmap`); of their global
    /// dictionary ids when [`ResolvedMeasure::global_dict`] is set.
    Bitmap,
    /// TOP_N keeping `n` values (see `measure::topn`), serialized.
    TopN(u32),
    /// PERCENTILE: a t-digest of the given compression (see `measure::tdigest`), serialized.
    Percentile(u32),
    /// EXTENDED_COLUMN: the carried value, as text.
    Extended,
}

impl StateKind {
    /// The Arrow type of the state column.
    pub fn data_type(&self) -> DataType {
        match self {
            StateKind::SumInt | StateKind::Count | StateKind::MinInt | StateKind::MaxInt => {
                DataType::Int64
            }
            StateKind::SumFloat | StateKind::MinFloat | StateKind::MaxFloat => DataType::Float64,
            StateKind::Hll(_)
            | StateKind::Bitmap
            | StateKind::TopN(_)
            | StateKind::Percentile(_) => DataType::Binary,
            StateKind::Extended => DataType::Utf8,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedMeasure {
    pub name: String,
    pub function: MeasureFunction,
    /// The column the state is built from; `None` for COUNT(*). TOP_N: the value summed;
    /// EXTENDED_COLUMN: the carried column (`extended`).
    pub input: Option<ModelColumn>,
    /// The second column: TOP_N's `by` (whose top values are kept); EXTENDED_COLUMN's
    /// dimension `column` (the id, a rowkey column). `None` for the other functions.
    pub extra: Option<ModelColumn>,
    pub state: StateKind,
    /// Exact COUNT_DISTINCT of a non-integer column: the build maps values to ids of the
    /// column's global dictionary, and the bitmap holds the ids.
    pub global_dict: bool,
}

impl ResolvedMeasure {
    /// The flat-table columns a raw build reads for this measure, in order: none for COUNT(*),
    /// `[value, by]` for TOP_N, `[input]` otherwise.
    pub fn raw_inputs(&self) -> Vec<&ModelColumn> {
        let mut out: Vec<&ModelColumn> = self.input.iter().collect();
        if self.function == MeasureFunction::TopN {
            out.extend(self.extra.iter());
        }
        out
    }
}

/// How partition values compare with segment boundaries.
#[derive(Debug, Clone, PartialEq)]
pub enum PartitionKind {
    /// Integer `yyyyMMdd`.
    IntYmd,
    Date,
    /// String in the given chrono format.
    String(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedPartition {
    pub column: ModelColumn,
    pub kind: PartitionKind,
}

/// A validated cube: everything building and querying need, names resolved.
#[derive(Debug, Clone)]
pub struct CubeLayout {
    pub cube: CubeDesc,
    pub model: ModelDesc,
    pub tables: Vec<TableDesc>,
    pub rowkey: Vec<RowkeyColumn>,
    pub derived: Vec<DerivedDimension>,
    /// The model's joins, resolved, in the model's order (parents first).
    pub joins: Vec<ResolvedJoin>,
    pub measures: Vec<ResolvedMeasure>,
    /// Every cuboid to build, the base cuboid first, then by fewer dimensions: the
    /// aggregation groups' cuboids, plus `mandatory_dimension_set_list`, minus
    /// `cuboid_black_list`.
    pub cuboids: Vec<CuboidId>,
    /// The aggregation groups' cuboids (and the base), in the same order: what the
    /// descriptor signature hashes. The planner's lists change which cuboids new segments
    /// get, not what a segment's stored cuboids mean, so they leave segments valid.
    pub group_cuboids: Vec<CuboidId>,
    pub partition: Option<ResolvedPartition>,
    pub table_index: Option<ResolvedTableIndex>,
}

/// A cube's table index, resolved: the fact-table columns stored (in stored order) and the
/// indexes of `columns` the rows are sorted by.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedTableIndex {
    pub columns: Vec<ModelColumn>,
    pub sort: Vec<usize>,
}

impl ResolvedTableIndex {
    /// The schema of the stored rows (every column nullable, as source columns are).
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.column, c.data_type.clone(), true))
                .collect::<Vec<_>>(),
        ))
    }
}

/// Resolves `cube.table_index` against the fact table; errors name the field and column.
fn resolve_table_index(
    cube: &CubeDesc,
    model: &ModelDesc,
    tables: &[TableDesc],
) -> Result<Option<ResolvedTableIndex>> {
    let Some(ti) = &cube.table_index else {
        return Ok(None);
    };
    let what = format!("cube {}, table_index", cube.name);
    let fact = table_of(&what, tables, &model.fact_table)?;
    let schema = table_schema(fact)?;
    let fact_column = |field: &str, name: &str| -> Result<ModelColumn> {
        let bare = match name.trim().split_once('.') {
            Some((t, c)) if t.eq_ignore_ascii_case(&fact.name) => c,
            Some(_) => {
                return Err(Error::invalid(
                    &what,
                    format!(
                        "{field}: {name:?} is not a column of the fact table {} (a table index stores fact-table columns)",
                        fact.name
                    ),
                ))
            }
            None => name.trim(),
        };
        schema
            .fields()
            .iter()
            .find(|f| f.name().eq_ignore_ascii_case(bare))
            .map(|f| ModelColumn {
                table: fact.name.clone(),
                column: f.name().clone(),
                data_type: f.data_type().clone(),
                expression: None,
            })
            .ok_or_else(|| {
                Error::invalid(
                    &what,
                    format!(
                        "{field}: {name:?} is not a column of the fact table {}",
                        fact.name
                    ),
                )
            })
    };
    let columns: Vec<ModelColumn> = if ti.columns.is_empty() {
        schema
            .fields()
            .iter()
            .map(|f| ModelColumn {
                table: fact.name.clone(),
                column: f.name().clone(),
                data_type: f.data_type().clone(),
                expression: None,
            })
            .collect()
    } else {
        let mut out: Vec<ModelColumn> = Vec::new();
        for c in &ti.columns {
            let col = fact_column("columns", c)?;
            if out.iter().any(|o| o.column == col.column) {
                return Err(Error::invalid(
                    &what,
                    format!("columns: {c:?} is listed twice"),
                ));
            }
            out.push(col);
        }
        out
    };
    let mut sort = Vec::new();
    for c in &ti.sort_columns {
        let col = fact_column("sort_columns", c)?;
        let i = columns
            .iter()
            .position(|o| o.column == col.column)
            .ok_or_else(|| {
                Error::invalid(
                    &what,
                    format!("sort_columns: {c:?} is not one of the index's columns"),
                )
            })?;
        if sort.contains(&i) {
            return Err(Error::invalid(
                &what,
                format!("sort_columns: {c:?} is listed twice"),
            ));
        }
        sort.push(i);
    }
    Ok(Some(ResolvedTableIndex { columns, sort }))
}

/// Parses a SQL type name into an Arrow type.
pub fn parse_sql_type(name: &str) -> Option<DataType> {
    let n = name.trim().to_ascii_lowercase();
    Some(match n.as_str() {
        "tinyint" => DataType::Int8,
        "smallint" => DataType::Int16,
        "int" | "integer" => DataType::Int32,
        "bigint" => DataType::Int64,
        "float" | "real" => DataType::Float32,
        "double" => DataType::Float64,
        "varchar" | "string" | "char" | "text" => DataType::Utf8,
        "date" => DataType::Date32,
        "boolean" | "bool" => DataType::Boolean,
        _ => {
            let inner = n.strip_prefix("decimal(")?.strip_suffix(')')?;
            let (p, s) = inner.split_once(',')?;
            DataType::Decimal128(p.trim().parse().ok()?, s.trim().parse().ok()?)
        }
    })
}

/// The Arrow schema a table descriptor declares (every column nullable): the file columns,
/// then the Hive partition columns (the order DataFusion's listing table gives them); an
/// unknown type names the table and column.
pub fn table_schema(t: &TableDesc) -> Result<SchemaRef> {
    let fields = t
        .columns
        .iter()
        .chain(&t.partition_columns)
        .map(|c| {
            parse_sql_type(&c.data_type)
                .map(|dt| Field::new(&c.name, dt, true))
                .ok_or_else(|| {
                    Error::invalid(
                        format!("table {}.{}", t.project, t.name),
                        format!("column {}: unknown type {}", c.name, c.data_type),
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// The SQL type name Qilin writes for an Arrow type (inverse of [`parse_sql_type`]).
pub fn sql_type_name(dt: &DataType) -> Option<String> {
    Some(match dt {
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "varchar".into(),
        DataType::Date32 => "date".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        _ => return None,
    })
}

/// Integer types whose values all fit an `i64` (join keys of different such types match).
pub(crate) fn is_int(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
    )
}

fn is_float(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _)
    )
}

/// Resolves column references (`table.column` or a unique bare `column`) within a model.
struct ModelColumns {
    columns: Vec<ModelColumn>,
    by_name: HashMap<String, Vec<usize>>,
}

impl ModelColumns {
    fn resolve(&self, what: &str, reference: &str) -> Result<ModelColumn> {
        let r = reference.trim().to_ascii_lowercase();
        let found: Vec<&ModelColumn> = match r.split_once('.') {
            Some((t, c)) => self
                .columns
                .iter()
                .filter(|m| m.table.eq_ignore_ascii_case(t) && m.column.eq_ignore_ascii_case(c))
                .collect(),
            None => self
                .by_name
                .get(&r)
                .map(|ix| ix.iter().map(|&i| &self.columns[i]).collect())
                .unwrap_or_default(),
        };
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::invalid(
                what,
                format!("unknown column {reference:?} (not in any table of the model)"),
            )),
            many => {
                Err(Error::invalid(
                    what,
                    format!(
                    "column {reference:?} is ambiguous (in tables {}); qualify it as table.column",
                    many.iter().map(|m| m.table.as_str()).collect::<Vec<_>>().join(", ")
                ),
                ))
            }
        }
    }
}

/// Validates a model against its tables (shape, joins, computed columns, partition, filter).
pub fn validate_model(model: &ModelDesc, tables: &[TableDesc]) -> Result<()> {
    resolve_model(model, tables).map(|_| ())
}

fn table_of<'a>(what: &str, tables: &'a [TableDesc], name: &str) -> Result<&'a TableDesc> {
    tables
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| Error::invalid(what, format!("unknown table {name:?}")))
}

/// One join of the model, resolved: `parent.fk = alias.pk` (the parent is the fact table or
/// an earlier lookup).
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedJoin {
    /// The name the model uses for this join of `table`.
    pub alias: String,
    /// The source table.
    pub table: String,
    pub kind: JoinKind,
    /// The fact table's name or an earlier join's alias.
    pub parent: String,
    pub foreign_key: Vec<ModelColumn>,
    pub primary_key: Vec<ModelColumn>,
}

/// A model with every name resolved.
struct ResolvedModel {
    columns: ModelColumns,
    joins: Vec<ResolvedJoin>,
}

fn index_by_name(columns: &[ModelColumn]) -> HashMap<String, Vec<usize>> {
    let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, c) in columns.iter().enumerate() {
        by_name
            .entry(c.column.to_ascii_lowercase())
            .or_default()
            .push(i);
    }
    by_name
}

fn resolve_model(model: &ModelDesc, tables: &[TableDesc]) -> Result<ResolvedModel> {
    let what = format!("model {}", model.name);
    validate_name("model", &model.name)?;
    let fact = table_of(&what, tables, &model.fact_table)?;
    // Every join of a table has its own name (alias); column identity is (alias, column).
    let mut aliases: Vec<(String, &TableDesc)> = vec![(fact.name.clone(), fact)];
    for lk in &model.lookups {
        let t = table_of(&format!("{what}, lookup {}", lk.table), tables, &lk.table)?;
        let alias = lk.name();
        validate_name("alias", alias)?;
        if aliases.iter().any(|(a, _)| a.eq_ignore_ascii_case(alias)) {
            return Err(Error::invalid(
                &what,
                format!(
                    "duplicate alias {alias}: a table joined twice needs a distinct \"alias\" per join"
                ),
            ));
        }
        aliases.push((alias.to_string(), t));
    }
    let mut columns = Vec::new();
    for (alias, t) in &aliases {
        let schema = table_schema(t)?;
        for f in schema.fields() {
            columns.push(ModelColumn {
                table: alias.clone(),
                column: f.name().clone(),
                data_type: f.data_type().clone(),
                expression: None,
            });
        }
    }
    let tables_only = ModelColumns {
        by_name: index_by_name(&columns),
        columns: columns.clone(),
    };
    for cc in &model.computed_columns {
        let ccwhat = format!("{what}, computed column {}", cc.name);
        validate_name("computed column", &cc.name)?;
        let data_type = parse_sql_type(&cc.data_type)
            .ok_or_else(|| Error::invalid(&ccwhat, format!("unknown type {:?}", cc.data_type)))?;
        for ident in expression_identifiers(&ccwhat, &cc.expression)? {
            tables_only.resolve(&ccwhat, &ident)?;
        }
        if tables_only
            .by_name
            .contains_key(&cc.name.to_ascii_lowercase())
        {
            return Err(Error::invalid(&ccwhat, "a table column has the same name"));
        }
        // Computed columns belong to the fact table: one value per fact row.
        columns.push(ModelColumn {
            table: fact.name.clone(),
            column: cc.name.clone(),
            data_type,
            expression: Some(cc.expression.clone()),
        });
    }
    let all = ModelColumns {
        by_name: index_by_name(&columns),
        columns,
    };
    let mut joins: Vec<ResolvedJoin> = Vec::new();
    for lk in &model.lookups {
        let alias = lk.name();
        let lwhat = format!("{what}, join of {alias}");
        if lk.foreign_key.is_empty() || lk.foreign_key.len() != lk.primary_key.len() {
            return Err(Error::invalid(
                &lwhat,
                "foreign_key and primary_key must be non-empty and of equal length",
            ));
        }
        let mut parent: Option<String> = None;
        let mut foreign_key = Vec::new();
        let mut primary_key = Vec::new();
        for (fk, pk) in lk.foreign_key.iter().zip(&lk.primary_key) {
            // A bare foreign key is a fact column; `alias.column` a column of an earlier join.
            let (fk_alias, fk_col) = match fk.trim().split_once('.') {
                Some((a, c)) => (a.to_string(), c.to_string()),
                None => (fact.name.clone(), fk.trim().to_string()),
            };
            let known = fk_alias.eq_ignore_ascii_case(&fact.name)
                || joins
                    .iter()
                    .any(|j| j.alias.eq_ignore_ascii_case(&fk_alias));
            if !known {
                let later = model
                    .lookups
                    .iter()
                    .any(|l| l.name().eq_ignore_ascii_case(&fk_alias));
                return Err(Error::invalid(
                    &lwhat,
                    if later {
                        format!("foreign key {fk} refers to {fk_alias}, which is not joined before {alias} (joins must form a tree from the fact table, listed parents first; a cycle is refused)")
                    } else {
                        format!("foreign key {fk} refers to {fk_alias}, which is neither the fact table nor a lookup of the model")
                    },
                ));
            }
            let f = all.resolve(&lwhat, &format!("{fk_alias}.{fk_col}"))?;
            if f.expression.is_some() {
                return Err(Error::invalid(
                    &lwhat,
                    format!("foreign key {fk} is a computed column"),
                ));
            }
            match &parent {
                Some(p) if !p.eq_ignore_ascii_case(&f.table) => {
                    return Err(Error::invalid(
                        &lwhat,
                        format!("foreign keys come from two tables, {p} and {}", f.table),
                    ))
                }
                _ => parent = Some(f.table.clone()),
            }
            let pk_col = match pk.trim().split_once('.') {
                Some((a, c))
                    if a.eq_ignore_ascii_case(alias) || a.eq_ignore_ascii_case(&lk.table) =>
                {
                    c
                }
                Some(_) => {
                    return Err(Error::invalid(
                        &lwhat,
                        format!("primary key {pk} must be a column of {alias}"),
                    ))
                }
                None => pk.trim(),
            };
            let p = all
                .resolve(&lwhat, &format!("{alias}.{pk_col}"))
                .map_err(|_| {
                    Error::invalid(
                        &lwhat,
                        format!("primary key {pk} must be a column of {alias}"),
                    )
                })?;
            if f.data_type != p.data_type && !(is_int(&f.data_type) && is_int(&p.data_type)) {
                return Err(Error::invalid(
                    &lwhat,
                    format!(
                        "foreign key {fk} ({}) and primary key {pk} ({}) have different types",
                        f.data_type, p.data_type
                    ),
                ));
            }
            foreign_key.push(f);
            primary_key.push(p);
        }
        joins.push(ResolvedJoin {
            alias: alias.to_string(),
            table: lk.table.clone(),
            kind: lk.join,
            parent: parent.expect("at least one key"),
            foreign_key,
            primary_key,
        });
    }
    if let Some(f) = &model.filter_condition {
        let fwhat = format!("{what}, filter_condition");
        for ident in expression_identifiers(&fwhat, f)? {
            all.resolve(&fwhat, &ident)?;
        }
    }
    if let Some(p) = &model.partition {
        partition_of(&what, &all, p, &fact.name)?;
    }
    Ok(ResolvedModel {
        columns: all,
        joins,
    })
}

fn partition_of(
    what: &str,
    cols: &ModelColumns,
    p: &PartitionDesc,
    fact: &str,
) -> Result<ResolvedPartition> {
    let column = cols.resolve(what, &p.column)?;
    if !column.table.eq_ignore_ascii_case(fact) || column.expression.is_some() {
        return Err(Error::invalid(
            what,
            format!("partition column {} must be a fact table column", p.column),
        ));
    }
    let kind = match (&column.data_type, p.format.as_deref()) {
        (dt, None | Some("yyyyMMdd")) if is_int(dt) => PartitionKind::IntYmd,
        (DataType::Date32, None) => PartitionKind::Date,
        (DataType::Utf8, None | Some("yyyy-MM-dd")) => PartitionKind::String("%Y-%m-%d".into()),
        (DataType::Utf8, Some("yyyyMMdd")) => PartitionKind::String("%Y%m%d".into()),
        (dt, f) => {
            return Err(Error::invalid(
                what,
                format!("partition column {} of type {dt} cannot use format {f:?}; use an integer yyyyMMdd, a date, or a string yyyy-MM-dd / yyyyMMdd", p.column),
            ))
        }
    };
    Ok(ResolvedPartition { column, kind })
}

/// The column references (`col`, `alias.col`) of a SQL expression, or the parser's error.
pub fn sql_identifiers(sql: &str) -> std::result::Result<Vec<String>, String> {
    let expr = Parser::new(&GenericDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| e.to_string())?;
    struct Idents(Vec<String>);
    impl Visitor for Idents {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::Identifier(i) => self.0.push(i.value.clone()),
                Expr::CompoundIdentifier(parts) => self.0.push(
                    parts
                        .iter()
                        .map(|p| p.value.as_str())
                        .collect::<Vec<_>>()
                        .join("."),
                ),
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut v = Idents(Vec::new());
    let _ = expr.visit(&mut v);
    Ok(v.0)
}

/// The column names a SQL expression refers to; a syntax error names the expression.
fn expression_identifiers(what: &str, sql: &str) -> Result<Vec<String>> {
    let idents = sql_identifiers(sql)
        .map_err(|e| Error::invalid(what, format!("cannot parse expression {sql:?}: {e}")))?;
    if idents.is_empty() {
        return Err(Error::invalid(
            what,
            format!("expression {sql:?} uses no column"),
        ));
    }
    Ok(idents)
}

/// The state of a COUNT_DISTINCT, and whether it goes through a global dictionary (exact
/// distinct counts of anything but integers).
fn distinct_state(what: &str, m: &MeasureDesc, input: &ModelColumn) -> Result<(StateKind, bool)> {
    let spec = m
        .distinct
        .as_deref()
        .unwrap_or("hll")
        .trim()
        .to_ascii_lowercase();
    if spec == "bitmap" {
        return Ok((StateKind::Bitmap, !is_int(&input.data_type)));
    }
    let precision = if spec == "hll" {
        crate::measure::hll::DEFAULT_PRECISION
    } else {
        spec.strip_prefix("hll(")
            .and_then(|s| s.strip_suffix(')'))
            .and_then(|s| s.trim().parse::<u8>().ok())
            .ok_or_else(|| {
                Error::invalid(
                    what,
                    format!("distinct must be hll, hll(P) or bitmap, not {spec:?}"),
                )
            })?
    };
    if !(4..=16).contains(&precision) {
        return Err(Error::invalid(
            what,
            format!("HLL precision {precision} outside 4..=16"),
        ));
    }
    Ok((StateKind::Hll(precision), false))
}

/// An option in a range, or its default.
fn bounded(
    what: &str,
    option: &str,
    value: Option<u32>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32> {
    let v = value.unwrap_or(default);
    if !range.contains(&v) {
        return Err(Error::invalid(
            what,
            format!(
                "{option} {v} is outside {}..={}",
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(v)
}

/// TOP_N keeps at most this many values.
pub const TOP_N_MAX: u32 = 10_000;
/// PERCENTILE's compression range.
pub const PERCENTILE_COMPRESSION: std::ops::RangeInclusive<u32> = 10..=10_000;

fn resolve_measure(cube: &str, cols: &ModelColumns, m: &MeasureDesc) -> Result<ResolvedMeasure> {
    let what = format!("cube {cube}, measure {}", m.name);
    validate_name("measure", &m.name)?;
    let input = match m.column.as_deref().map(str::trim) {
        None | Some("*") | Some("1") if m.function == MeasureFunction::Count => None,
        None | Some("*") => {
            return Err(Error::invalid(
                &what,
                format!("{:?} needs a column", m.function),
            ));
        }
        Some(c) => Some(cols.resolve(&what, c)?),
    };
    let numeric_state = |int: StateKind, float: StateKind| -> Result<StateKind> {
        let col = input.as_ref().expect("checked above");
        if is_int(&col.data_type) {
            Ok(int)
        } else if is_float(&col.data_type) {
            Ok(float)
        } else {
            Err(Error::invalid(
                &what,
                format!(
                    "{:?} needs a numeric column; {} is {}",
                    m.function, col.column, col.data_type
                ),
            ))
        }
    };
    // Options of other functions are mistakes, not silently ignored.
    let only_for = |set: bool, option: &str, f: MeasureFunction| -> Result<()> {
        if set && m.function != f {
            return Err(Error::invalid(
                &what,
                format!("{option} is only for {}", function_name(f)),
            ));
        }
        Ok(())
    };
    only_for(
        m.distinct.is_some(),
        "distinct",
        MeasureFunction::CountDistinct,
    )?;
    only_for(m.by.is_some(), "by", MeasureFunction::TopN)?;
    only_for(m.n.is_some(), "n", MeasureFunction::TopN)?;
    only_for(
        m.compression.is_some(),
        "compression",
        MeasureFunction::Percentile,
    )?;
    only_for(
        m.extended.is_some(),
        "extended",
        MeasureFunction::ExtendedColumn,
    )?;
    let second = |option: &str| -> Result<ModelColumn> {
        let c = match option {
            "by" => m.by.as_deref(),
            _ => m.extended.as_deref(),
        };
        let c = c.map(str::trim).filter(|c| !c.is_empty()).ok_or_else(|| {
            Error::invalid(
                &what,
                format!("{} needs \"{option}\"", function_name(m.function)),
            )
        })?;
        cols.resolve(&what, c)
    };
    let (mut extra, mut global_dict, mut carried) = (None, false, None);
    let state = match m.function {
        MeasureFunction::Sum => numeric_state(StateKind::SumInt, StateKind::SumFloat)?,
        MeasureFunction::Min => numeric_state(StateKind::MinInt, StateKind::MinFloat)?,
        MeasureFunction::Max => numeric_state(StateKind::MaxInt, StateKind::MaxFloat)?,
        MeasureFunction::Count => StateKind::Count,
        MeasureFunction::CountDistinct => {
            let (state, dict) = distinct_state(&what, m, input.as_ref().expect("checked above"))?;
            global_dict = dict;
            state
        }
        MeasureFunction::TopN => {
            numeric_state(StateKind::SumInt, StateKind::SumFloat)?;
            extra = Some(second("by")?);
            StateKind::TopN(bounded(&what, "n", m.n, 100, 1..=TOP_N_MAX)?)
        }
        MeasureFunction::Percentile => {
            numeric_state(StateKind::SumInt, StateKind::SumFloat)?;
            StateKind::Percentile(bounded(
                &what,
                "compression",
                m.compression,
                100,
                PERCENTILE_COMPRESSION,
            )?)
        }
        MeasureFunction::ExtendedColumn => {
            // The id (a dimension, checked by `resolve_cube`) and the column carried with it.
            extra = input.clone();
            carried = Some(second("extended")?);
            StateKind::Extended
        }
    };
    Ok(ResolvedMeasure {
        name: m.name.clone(),
        function: m.function,
        input: carried.or(input),
        extra,
        state,
        global_dict,
    })
}

/// A function's name as descriptors spell it.
pub fn function_name(f: MeasureFunction) -> &'static str {
    match f {
        MeasureFunction::Sum => "SUM",
        MeasureFunction::Count => "COUNT",
        MeasureFunction::Min => "MIN",
        MeasureFunction::Max => "MAX",
        MeasureFunction::CountDistinct => "COUNT_DISTINCT",
        MeasureFunction::TopN => "TOP_N",
        MeasureFunction::Percentile => "PERCENTILE",
        MeasureFunction::ExtendedColumn => "EXTENDED_COLUMN",
    }
}

/// Validates `cube` against `model` and `tables` and resolves it. `max_cuboids_per_group` is
/// `kylin.cube.aggrgroup.max-combination`.
pub fn resolve_cube(
    cube: &CubeDesc,
    model: &ModelDesc,
    tables: &[TableDesc],
    max_cuboids_per_group: u64,
) -> Result<CubeLayout> {
    let what = format!("cube {}", cube.name);
    validate_name("cube", &cube.name)?;
    super::auto_merge::validate_auto_merge(&cube.name, &cube.auto_merge_time_ranges)?;
    if !cube.model.eq_ignore_ascii_case(&model.name) {
        return Err(Error::invalid(
            &what,
            format!("refers to model {}, not {}", cube.model, model.name),
        ));
    }
    let ResolvedModel {
        columns: cols,
        joins,
    } = resolve_model(model, tables)?;

    // Dimensions → stored columns (derived dimensions store their foreign key), each with
    // the name it is stored under.
    let mut stored: Vec<(ModelColumn, Option<String>)> = Vec::new();
    let same = |a: &ModelColumn, b: &ModelColumn| {
        a.table.eq_ignore_ascii_case(&b.table) && a.column.eq_ignore_ascii_case(&b.column)
    };
    let store = |stored: &mut Vec<(ModelColumn, Option<String>)>,
                 c: ModelColumn,
                 name: Option<String>|
     -> Result<()> {
        match stored.iter_mut().find(|(s, _)| same(s, &c)) {
            Some((_, n)) if name.is_some() && n.is_some() && *n != name => Err(Error::invalid(
                &what,
                format!(
                    "column {}.{} is a dimension under two names",
                    c.table, c.column
                ),
            )),
            Some((_, n)) => {
                if name.is_some() {
                    *n = name;
                }
                Ok(())
            }
            None => {
                stored.push((c, name));
                Ok(())
            }
        }
    };
    if cube.dimensions.is_empty() {
        return Err(Error::invalid(&what, "has no dimensions"));
    }
    // (alias, lookup table, kind, columns, foreign-key columns, primary key)
    let mut derived_cols = Vec::new();
    for d in &cube.dimensions {
        if let Some(n) = &d.name {
            validate_name("dimension", n)?;
        }
        match (&d.column, &d.table, d.derived.is_empty()) {
            (Some(c), None, true) => {
                let col = cols.resolve(&what, c)?;
                store(&mut stored, col, d.name.clone())?;
            }
            (None, Some(t), false) => {
                let j = joins
                    .iter()
                    .find(|j| j.alias.eq_ignore_ascii_case(t))
                    .ok_or_else(|| {
                        Error::invalid(
                            &what,
                            format!(
                                "derived dimension table {t} is not a lookup of model {}",
                                model.name
                            ),
                        )
                    })?;
                for fk in &j.foreign_key {
                    store(&mut stored, fk.clone(), None)?;
                }
                let mut dcols = Vec::new();
                for c in &d.derived {
                    dcols.push(cols.resolve(&what, &format!("{}.{c}", j.alias))?);
                }
                derived_cols.push((j, dcols));
            }
            _ => return Err(Error::invalid(
                &what,
                "each dimension is either {\"column\": C} (optionally with \"name\") or {\"table\": T, \"derived\": [C, ...]}",
            )),
        }
    }
    let mut named: Vec<RowkeyColumn> = Vec::new();
    for (c, name) in stored {
        let name = name.unwrap_or_else(|| c.column.clone());
        if let Some(other) = named.iter().find(|r| r.name.eq_ignore_ascii_case(&name)) {
            return Err(Error::invalid(
                &what,
                format!(
                    "two dimensions are named {name} ({}.{} and {}.{}); give one a \"name\"",
                    other.source.table, other.source.column, c.table, c.column
                ),
            ));
        }
        if c.expression.is_some() {
            return Err(Error::invalid(
                &what,
                format!("computed column {} cannot be a dimension", c.column),
            ));
        }
        if !matches!(
            c.data_type,
            DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::Utf8
                | DataType::Date32
                | DataType::Boolean
                | DataType::Decimal128(_, _)
                | DataType::Float64
        ) {
            return Err(Error::invalid(
                &what,
                format!(
                    "dimension {} has type {}, which cannot be a dimension",
                    c.column, c.data_type
                ),
            ));
        }
        named.push(RowkeyColumn { name, source: c });
    }
    let name_of = |c: &ModelColumn| {
        named
            .iter()
            .find(|r| same(&r.source, c))
            .map(|r| r.name.clone())
            .expect("foreign keys are stored")
    };
    let derived: Vec<DerivedDimension> = derived_cols
        .into_iter()
        .map(|(j, columns)| DerivedDimension {
            table: j.alias.clone(),
            lookup_table: j.table.clone(),
            kind: j.kind,
            columns,
            foreign_key: j.foreign_key.iter().map(name_of).collect(),
            primary_key: j.primary_key.iter().map(|p| p.column.clone()).collect(),
        })
        .collect();

    // Rowkey order: explicit, or the order of the dimensions.
    let rowkey: Vec<RowkeyColumn> = if cube.rowkey.is_empty() {
        named
    } else {
        let mut out = Vec::new();
        for r in &cube.rowkey {
            let c = named.iter().find(|s| refers_to(s, r)).ok_or_else(|| {
                Error::invalid(&what, format!("rowkey column {r} is not a dimension"))
            })?;
            if out.iter().any(|o: &RowkeyColumn| o.name == c.name) {
                return Err(Error::invalid(
                    &what,
                    format!("rowkey column {r} is listed twice"),
                ));
            }
            out.push(c.clone());
        }
        if let Some(missing) = named.iter().find(|s| !out.iter().any(|o| o.name == s.name)) {
            return Err(Error::invalid(
                &what,
                format!("dimension {} is missing from the rowkey", missing.name),
            ));
        }
        out
    };
    if rowkey.len() > 63 {
        return Err(Error::invalid(
            &what,
            format!("{} rowkey columns; at most 63 are supported", rowkey.len()),
        ));
    }

    // Measures.
    if cube.measures.is_empty() {
        return Err(Error::invalid(&what, "has no measures"));
    }
    let mut measures = Vec::new();
    for m in &cube.measures {
        if measures
            .iter()
            .any(|x: &ResolvedMeasure| x.name.eq_ignore_ascii_case(&m.name))
        {
            return Err(Error::invalid(
                &what,
                format!("measure {} is defined twice", m.name),
            ));
        }
        if rowkey.iter().any(|r| r.name.eq_ignore_ascii_case(&m.name)) {
            return Err(Error::invalid(
                &what,
                format!("measure {} has the name of a dimension", m.name),
            ));
        }
        let resolved = resolve_measure(&cube.name, &cols, m)?;
        if let (MeasureFunction::ExtendedColumn, Some(id)) = (resolved.function, &resolved.extra) {
            if !rowkey.iter().any(|r| same(&r.source, id)) {
                return Err(Error::invalid(
                    &what,
                    format!(
                        "EXTENDED_COLUMN {}: column {}.{} must be a dimension (the id the \
                         extended column depends on)",
                        m.name, id.table, id.column
                    ),
                ));
            }
        }
        measures.push(resolved);
    }

    // Aggregation groups → cuboids.
    let names: Vec<String> = rowkey.iter().map(|r| r.name.clone()).collect();
    if cube.aggregation_groups.is_empty() {
        return Err(Error::invalid(&what, "has no aggregation group"));
    }
    let mut all: BTreeSet<CuboidId> = BTreeSet::new();
    let mut covered: u64 = 0;
    for (i, g) in cube.aggregation_groups.iter().enumerate() {
        let gwhat = format!("{what}, aggregation group {}", i + 1);
        let group = enumerate_group(
            &gwhat,
            &group_by_names(g, &rowkey),
            &names,
            max_cuboids_per_group,
        )?;
        for c in group {
            covered |= c;
            all.insert(c);
        }
    }
    let base = cuboid::base(names.len());
    if let Some(i) = (0..names.len()).find(|&i| covered & cuboid::bit(names.len(), i) == 0) {
        return Err(Error::invalid(
            &what,
            format!("dimension {} is in no aggregation group", names[i]),
        ));
    }
    all.insert(base);
    let by_size = |v: &mut Vec<CuboidId>| {
        v.sort_by(|a, b| b.count_ones().cmp(&a.count_ones()).then(b.cmp(a)))
    };
    let mut group_cuboids: Vec<CuboidId> = all.iter().copied().collect();
    by_size(&mut group_cuboids);
    let (added, dropped) = planner_sets(&what, cube, &rowkey, &all)?;
    all.extend(added);
    for c in dropped {
        all.remove(&c);
    }
    let mut cuboids: Vec<CuboidId> = all.into_iter().collect();
    by_size(&mut cuboids);

    let partition = match &model.partition {
        Some(p) => Some(partition_of(
            &format!("model {}", model.name),
            &cols,
            p,
            &model.fact_table,
        )?),
        None => None,
    };
    let table_index = resolve_table_index(cube, model, tables)?;
    Ok(CubeLayout {
        cube: cube.clone(),
        model: model.clone(),
        tables: tables.to_vec(),
        rowkey,
        derived,
        joins,
        measures,
        cuboids,
        group_cuboids,
        partition,
        table_index,
    })
}

/// The cuboids of the cube's `mandatory_dimension_set_list` (to add) and
/// `cuboid_black_list` (to leave out of `group` cuboids), validated: every name a
/// dimension, no set empty or naming a dimension twice, the base cuboid never black-listed
/// (every cuboid can be built from it and queries fall back to it), a black-listed cuboid
/// one the aggregation groups build, and no cuboid both added and black-listed.
fn planner_sets(
    what: &str,
    cube: &CubeDesc,
    rowkey: &[RowkeyColumn],
    group: &BTreeSet<CuboidId>,
) -> Result<(Vec<CuboidId>, Vec<CuboidId>)> {
    let n = rowkey.len();
    let set_of = |field: &str, i: usize, names: &[String]| -> Result<CuboidId> {
        let at = format!("{what}, {field}[{i}]");
        if names.is_empty() {
            return Err(Error::invalid(&at, "names no dimension"));
        }
        let mut id: CuboidId = 0;
        for name in names {
            let Some(r) = rowkey.iter().position(|r| refers_to(r, name)) else {
                let known: Vec<&str> = rowkey.iter().map(|r| r.name.as_str()).collect();
                return Err(Error::invalid(
                    &at,
                    format!(
                        "{name} is not a dimension of the cube (its dimensions: {})",
                        known.join(", ")
                    ),
                ));
            };
            let b = cuboid::bit(n, r);
            if id & b != 0 {
                return Err(Error::invalid(&at, format!("{name} is named twice")));
            }
            id |= b;
        }
        Ok(id)
    };
    let mut added = Vec::new();
    for (i, set) in cube.mandatory_dimension_set_list.iter().enumerate() {
        added.push(set_of("mandatory_dimension_set_list", i, set)?);
    }
    let mut dropped = Vec::new();
    for (i, set) in cube.cuboid_black_list.iter().enumerate() {
        let id = set_of("cuboid_black_list", i, set)?;
        let at = format!("{what}, cuboid_black_list[{i}]");
        if id == cuboid::base(n) {
            return Err(Error::invalid(
                &at,
                "is the base cuboid, which is always built: every other cuboid is built from \
                 it and queries that no other cuboid covers read it",
            ));
        }
        if !group.contains(&id) {
            return Err(Error::invalid(
                &at,
                format!(
                    "[{}] is not a cuboid of the aggregation groups; nothing to leave out",
                    set.join(", ")
                ),
            ));
        }
        if added.contains(&id) {
            return Err(Error::invalid(
                &at,
                format!(
                    "[{}] is also in mandatory_dimension_set_list",
                    set.join(", ")
                ),
            ));
        }
        dropped.push(id);
    }
    Ok((added, dropped))
}

/// Whether a reference (a stored name, or `alias.column`) names rowkey column `r`.
fn refers_to(r: &RowkeyColumn, reference: &str) -> bool {
    let reference = reference.trim();
    r.name.eq_ignore_ascii_case(reference)
        || format!("{}.{}", r.source.table, r.source.column).eq_ignore_ascii_case(reference)
}

/// `g` with every dimension reference replaced by the stored name it refers to (unknown
/// references are left for `enumerate_group` to report).
fn group_by_names(g: &AggregationGroupDesc, rowkey: &[RowkeyColumn]) -> AggregationGroupDesc {
    let name = |d: &String| {
        rowkey
            .iter()
            .find(|r| refers_to(r, d))
            .map_or_else(|| d.clone(), |r| r.name.clone())
    };
    let names = |v: &Vec<String>| v.iter().map(name).collect::<Vec<_>>();
    AggregationGroupDesc {
        includes: names(&g.includes),
        mandatory: names(&g.mandatory),
        hierarchies: g.hierarchies.iter().map(names).collect(),
        joints: g.joints.iter().map(names).collect(),
    }
}

impl CubeLayout {
    pub fn base_cuboid(&self) -> CuboidId {
        cuboid::base(self.rowkey.len())
    }

    /// Rowkey indexes of the dimensions in `cuboid`, in rowkey order.
    pub fn cuboid_columns(&self, cuboid: CuboidId) -> Vec<usize> {
        (0..self.rowkey.len())
            .filter(|&i| cuboid & cuboid::bit(self.rowkey.len(), i) != 0)
            .collect()
    }

    /// Dimension names of `cuboid`, for messages and EXPLAIN.
    pub fn cuboid_names(&self, cuboid: CuboidId) -> Vec<String> {
        self.cuboid_columns(cuboid)
            .into_iter()
            .map(|i| self.rowkey[i].name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TPC-H's tables, as `table add` infers them from the generated Parquet files.
    fn tpch_tables() -> Vec<TableDesc> {
        let t = |name: &str, cols: &[(&str, &str)]| TableDesc {
            project: "tpch".into(),
            name: name.into(),
            location: name.into(),
            format: SourceFormat::Parquet,
            columns: cols
                .iter()
                .map(|(n, t)| ColumnDesc {
                    name: n.to_string(),
                    data_type: t.to_string(),
                })
                .collect(),
            csv_delimiter: None,
            csv_header: None,
            partition_columns: vec![],
        };
        let money = "decimal(15,2)";
        vec![
            t(
                "lineitem",
                &[
                    ("l_orderkey", "bigint"),
                    ("l_partkey", "bigint"),
                    ("l_suppkey", "bigint"),
                    ("l_linenumber", "integer"),
                    ("l_quantity", money),
                    ("l_extendedprice", money),
                    ("l_discount", money),
                    ("l_tax", money),
                    ("l_returnflag", "varchar"),
                    ("l_linestatus", "varchar"),
                    ("l_shipdate", "date"),
                    ("l_commitdate", "date"),
                    ("l_receiptdate", "date"),
                    ("l_shipinstruct", "varchar"),
                    ("l_shipmode", "varchar"),
                    ("l_comment", "varchar"),
                ],
            ),
            t(
                "orders",
                &[
                    ("o_orderkey", "bigint"),
                    ("o_custkey", "bigint"),
                    ("o_orderdate", "date"),
                    ("o_shippriority", "integer"),
                ],
            ),
            t(
                "customer",
                &[
                    ("c_custkey", "bigint"),
                    ("c_nationkey", "bigint"),
                    ("c_mktsegment", "varchar"),
                ],
            ),
            t(
                "supplier",
                &[("s_suppkey", "bigint"), ("s_nationkey", "bigint")],
            ),
            t(
                "nation",
                &[
                    ("n_nationkey", "bigint"),
                    ("n_name", "varchar"),
                    ("n_regionkey", "bigint"),
                ],
            ),
            t(
                "region",
                &[("r_regionkey", "bigint"), ("r_name", "varchar")],
            ),
            t("part", &[("p_partkey", "bigint"), ("p_type", "varchar")]),
        ]
    }

    fn example<T: serde::de::DeserializeOwned>(file: &str) -> T {
        let path = format!(
            "{}/../conf/examples/tpch/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        from_json(&path, &std::fs::read(&path).expect("example file")).expect("example parses")
    }

    fn refused(model: &ModelDesc, words: &[&str]) {
        let err = validate_model(model, &tpch_tables()).expect_err("refused");
        let text = err.to_string();
        for w in words {
            assert!(text.contains(w), "{text:?} lacks {w:?}");
        }
    }

    #[test]
    fn the_tpch_snowflake_example_resolves_with_aliases_and_parents() {
        let model: ModelDesc = example("model.json");
        let cube: CubeDesc = example("cube.json");
        let layout = resolve_cube(&cube, &model, &tpch_tables(), 4096).expect("resolves");
        let join = |alias: &str| layout.joins.iter().find(|j| j.alias == alias).unwrap();
        assert_eq!(join("cust_nation").parent, "customer");
        assert_eq!(join("cust_nation").table, "nation");
        assert_eq!(join("supp_region").parent, "supp_nation");
        assert_eq!(join("supp_region").foreign_key[0].column, "n_regionkey");
        let stored = |name: &str| {
            let r = layout.rowkey.iter().find(|r| r.name == name).unwrap();
            (r.source.table.clone(), r.source.column.clone())
        };
        assert_eq!(
            stored("supp_nation_name"),
            ("supp_nation".into(), "n_name".into())
        );
        assert_eq!(
            stored("cust_nation_name"),
            ("cust_nation".into(), "n_name".into())
        );
        // 2^6 cuboids in the first group, 2^3 * 3 * 3 in the second (the empty cuboid is in
        // both), plus the base cuboid.
        assert_eq!(layout.cuboids.len(), 64 + 72 - 1 + 1);
    }

    #[test]
    fn planner_sets_add_and_leave_out_cuboids_without_changing_the_signature() {
        let model: ModelDesc = example("model.json");
        let mut cube: CubeDesc = example("cube.json");
        let plain = resolve_cube(&cube, &model, &tpch_tables(), 4096).expect("resolves");
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // l_shipmode (group 1) with o_orderdate (group 2): no group builds it.
        cube.mandatory_dimension_set_list = vec![names(&["l_shipmode", "o_orderdate"])];
        cube.cuboid_black_list = vec![names(&["l_returnflag", "l_linestatus"])];
        let planned = resolve_cube(&cube, &model, &tpch_tables(), 4096).expect("resolves");
        let id = |l: &CubeLayout, dims: &[&str]| {
            let n = l.rowkey.len();
            dims.iter()
                .map(|d| cuboid::bit(n, l.rowkey.iter().position(|r| r.name == *d).unwrap()))
                .fold(0, |a, b| a | b)
        };
        let added = id(&planned, &["l_shipmode", "o_orderdate"]);
        let gone = id(&planned, &["l_returnflag", "l_linestatus"]);
        assert!(!plain.cuboids.contains(&added) && planned.cuboids.contains(&added));
        assert!(plain.cuboids.contains(&gone) && !planned.cuboids.contains(&gone));
        assert_eq!(planned.cuboids.len(), plain.cuboids.len());
        assert_eq!(planned.cuboids[0], planned.base_cuboid());
        assert_eq!(planned.group_cuboids, plain.cuboids);
        assert_eq!(
            crate::model::descriptor_signature(&planned),
            crate::model::descriptor_signature(&plain)
        );
        // The JSON round trip keeps both lists.
        let back: CubeDesc = from_json("cube", &crate::model::desc::to_json(&cube)).unwrap();
        assert_eq!(back, cube);
    }

    #[test]
    fn bad_planner_sets_are_refused_naming_the_field_and_dimension() {
        let model: ModelDesc = example("model.json");
        let base: CubeDesc = example("cube.json");
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all: Vec<String> = resolve_cube(&base, &model, &tpch_tables(), 4096)
            .unwrap()
            .rowkey
            .iter()
            .map(|r| r.name.clone())
            .collect();
        type Sets = Vec<Vec<String>>;
        let cases: Vec<(Sets, Sets, &[&str])> = vec![
            (
                vec![names(&["l_shipmode", "nope"])],
                vec![],
                &["mandatory_dimension_set_list[0]", "nope is not a dimension"],
            ),
            (
                vec![vec![]],
                vec![],
                &["mandatory_dimension_set_list[0]", "names no dimension"],
            ),
            (
                vec![names(&["l_shipmode", "l_shipmode"])],
                vec![],
                &["named twice"],
            ),
            (
                vec![],
                vec![all.clone()],
                &["cuboid_black_list[0]", "base cuboid"],
            ),
            (
                vec![],
                vec![names(&["l_shipmode", "o_orderdate"])],
                &[
                    "cuboid_black_list[0]",
                    "not a cuboid of the aggregation groups",
                ],
            ),
            (
                vec![names(&["l_shipmode"])],
                vec![names(&["l_shipmode"])],
                &["also in mandatory_dimension_set_list"],
            ),
        ];
        for (add, drop, words) in cases {
            let mut cube = base.clone();
            cube.mandatory_dimension_set_list = add;
            cube.cuboid_black_list = drop;
            let text = resolve_cube(&cube, &model, &tpch_tables(), 4096)
                .expect_err("refused")
                .to_string();
            for w in words {
                assert!(text.contains(w), "{text:?} lacks {w:?}");
            }
        }
    }

    #[test]
    fn bad_joins_are_refused_naming_what_is_wrong() {
        let model: ModelDesc = example("model.json");
        // A join cycle: cust_region hangs from a lookup listed after it.
        let mut m = model.clone();
        m.lookups[3].foreign_key = vec!["supp_nation.n_regionkey".into()];
        refused(
            &m,
            &["join of cust_region", "supp_nation", "not joined before"],
        );
        let mut m = model.clone();
        m.lookups[2].foreign_key = vec!["cust_nation.n_regionkey".into()];
        refused(&m, &["join of cust_nation", "not joined before"]);
        // The same alias twice.
        let mut m = model.clone();
        m.lookups[5].alias = Some("cust_nation".into());
        refused(&m, &["duplicate alias cust_nation"]);
        // An alias that does not exist, a key of the wrong table.
        let mut m = model.clone();
        m.lookups[2].foreign_key = vec!["buyer.c_nationkey".into()];
        refused(&m, &["buyer", "neither the fact table nor a lookup"]);
        let mut m = model.clone();
        m.lookups[2].primary_key = vec!["r_regionkey".into()];
        refused(
            &m,
            &["primary key r_regionkey must be a column of cust_nation"],
        );
        let mut m = model;
        m.filter_condition = Some("l_nosuch > 1".into());
        refused(&m, &["filter_condition", "l_nosuch"]);
    }

    #[test]
    fn two_dimensions_of_one_column_name_need_names() {
        let model: ModelDesc = example("model.json");
        let mut cube: CubeDesc = example("cube.json");
        for d in &mut cube.dimensions {
            d.name = None;
        }
        let err = resolve_cube(&cube, &model, &tpch_tables(), 4096).expect_err("refused");
        assert!(
            err.to_string().contains("two dimensions are named n_name"),
            "{err}"
        );
    }
}
