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
    pub table: String,
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
    /// Roaring bitmap of the distinct values (see `measure::bitmap`).
    Bitmap,
}

impl StateKind {
    /// The Arrow type of the state column.
    pub fn data_type(&self) -> DataType {
        match self {
            StateKind::SumInt | StateKind::Count | StateKind::MinInt | StateKind::MaxInt => {
                DataType::Int64
            }
            StateKind::SumFloat | StateKind::MinFloat | StateKind::MaxFloat => DataType::Float64,
            StateKind::Hll(_) | StateKind::Bitmap => DataType::Binary,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedMeasure {
    pub name: String,
    pub function: MeasureFunction,
    /// `None` for COUNT(*).
    pub input: Option<ModelColumn>,
    pub state: StateKind,
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
    pub measures: Vec<ResolvedMeasure>,
    /// Every cuboid to build, the base cuboid first, then by fewer dimensions.
    pub cuboids: Vec<CuboidId>,
    pub partition: Option<ResolvedPartition>,
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

fn is_int(dt: &DataType) -> bool {
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

/// Validates a model against its tables (shape, joins, computed columns, partition).
pub fn validate_model(model: &ModelDesc, tables: &[TableDesc]) -> Result<()> {
    model_columns(model, tables).map(|_| ())
}

fn table_of<'a>(what: &str, tables: &'a [TableDesc], name: &str) -> Result<&'a TableDesc> {
    tables
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| Error::invalid(what, format!("unknown table {name:?}")))
}

fn model_columns(model: &ModelDesc, tables: &[TableDesc]) -> Result<ModelColumns> {
    let what = format!("model {}", model.name);
    validate_name("model", &model.name)?;
    let fact = table_of(&what, tables, &model.fact_table)?;
    let mut seen_tables = BTreeSet::new();
    seen_tables.insert(fact.name.to_ascii_lowercase());
    let mut used: Vec<&TableDesc> = vec![fact];
    for lk in &model.lookups {
        let t = table_of(&what, tables, &lk.table)?;
        if !seen_tables.insert(t.name.to_ascii_lowercase()) {
            return Err(Error::invalid(
                &what,
                format!("table {} is joined twice", t.name),
            ));
        }
        used.push(t);
    }
    let mut columns = Vec::new();
    for t in &used {
        for c in &t.columns {
            let data_type = parse_sql_type(&c.data_type).ok_or_else(|| {
                Error::invalid(
                    format!("table {}", t.name),
                    format!("column {}: unknown type {:?}", c.name, c.data_type),
                )
            })?;
            columns.push(ModelColumn {
                table: t.name.clone(),
                column: c.name.clone(),
                data_type,
                expression: None,
            });
        }
    }
    let index = |columns: &[ModelColumn]| {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, c) in columns.iter().enumerate() {
            by_name
                .entry(c.column.to_ascii_lowercase())
                .or_default()
                .push(i);
        }
        by_name
    };
    let fact_only = ModelColumns {
        by_name: index(&columns),
        columns: columns.clone(),
    };
    for cc in &model.computed_columns {
        let ccwhat = format!("{what}, computed column {}", cc.name);
        validate_name("computed column", &cc.name)?;
        let data_type = parse_sql_type(&cc.data_type)
            .ok_or_else(|| Error::invalid(&ccwhat, format!("unknown type {:?}", cc.data_type)))?;
        for ident in expression_identifiers(&ccwhat, &cc.expression)? {
            let col = fact_only.resolve(&ccwhat, &ident)?;
            if !col.table.eq_ignore_ascii_case(&fact.name) {
                return Err(Error::invalid(
                    &ccwhat,
                    format!(
                        "column {ident} is not a column of the fact table {}",
                        fact.name
                    ),
                ));
            }
        }
        if fact_only
            .by_name
            .contains_key(&cc.name.to_ascii_lowercase())
        {
            return Err(Error::invalid(&ccwhat, "a table column has the same name"));
        }
        columns.push(ModelColumn {
            table: fact.name.clone(),
            column: cc.name.clone(),
            data_type,
            expression: Some(cc.expression.clone()),
        });
    }
    let all = ModelColumns {
        by_name: index(&columns),
        columns,
    };
    for lk in &model.lookups {
        let lwhat = format!("{what}, join of {}", lk.table);
        if lk.foreign_key.is_empty() || lk.foreign_key.len() != lk.primary_key.len() {
            return Err(Error::invalid(
                &lwhat,
                "foreign_key and primary_key must be non-empty and of equal length",
            ));
        }
        for (fk, pk) in lk.foreign_key.iter().zip(&lk.primary_key) {
            let f = all.resolve(&lwhat, fk)?;
            let p = all.resolve(&lwhat, pk)?;
            if !f.table.eq_ignore_ascii_case(&fact.name) || f.expression.is_some() {
                return Err(Error::invalid(
                    &lwhat,
                    format!("foreign key {fk} must be a column of the fact table"),
                ));
            }
            if !p.table.eq_ignore_ascii_case(&lk.table) {
                return Err(Error::invalid(
                    &lwhat,
                    format!("primary key {pk} must be a column of {}", lk.table),
                ));
            }
        }
    }
    if let Some(p) = &model.partition {
        partition_of(&what, &all, p, &fact.name)?;
    }
    Ok(all)
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

/// The column names a SQL expression refers to; a syntax error names the expression.
fn expression_identifiers(what: &str, sql: &str) -> Result<Vec<String>> {
    let expr = Parser::new(&GenericDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| Error::invalid(what, format!("cannot parse expression {sql:?}: {e}")))?;
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
    if v.0.is_empty() {
        return Err(Error::invalid(
            what,
            format!("expression {sql:?} uses no column"),
        ));
    }
    Ok(v.0)
}

fn distinct_state(what: &str, m: &MeasureDesc, input: &ModelColumn) -> Result<StateKind> {
    let spec = m
        .distinct
        .as_deref()
        .unwrap_or("hll")
        .trim()
        .to_ascii_lowercase();
    if spec == "bitmap" {
        if !is_int(&input.data_type) {
            return Err(Error::invalid(
                what,
                format!(
                    "exact COUNT_DISTINCT (bitmap) needs an integer column; {} is {}",
                    input.column, input.data_type
                ),
            ));
        }
        return Ok(StateKind::Bitmap);
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
    Ok(StateKind::Hll(precision))
}

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
    let state = match m.function {
        MeasureFunction::Sum => numeric_state(StateKind::SumInt, StateKind::SumFloat)?,
        MeasureFunction::Min => numeric_state(StateKind::MinInt, StateKind::MinFloat)?,
        MeasureFunction::Max => numeric_state(StateKind::MaxInt, StateKind::MaxFloat)?,
        MeasureFunction::Count => StateKind::Count,
        MeasureFunction::CountDistinct => {
            distinct_state(&what, m, input.as_ref().expect("checked above"))?
        }
    };
    if m.distinct.is_some() && m.function != MeasureFunction::CountDistinct {
        return Err(Error::invalid(&what, "distinct is only for COUNT_DISTINCT"));
    }
    Ok(ResolvedMeasure {
        name: m.name.clone(),
        function: m.function,
        input,
        state,
    })
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
    if !cube.model.eq_ignore_ascii_case(&model.name) {
        return Err(Error::invalid(
            &what,
            format!("refers to model {}, not {}", cube.model, model.name),
        ));
    }
    let cols = model_columns(model, tables)?;

    // Dimensions → rowkey columns (derived dimensions store their foreign key).
    let mut stored: Vec<ModelColumn> = Vec::new();
    let mut derived = Vec::new();
    let push = |stored: &mut Vec<ModelColumn>, c: ModelColumn| {
        if !stored
            .iter()
            .any(|s| s.column.eq_ignore_ascii_case(&c.column))
        {
            stored.push(c);
        }
    };
    if cube.dimensions.is_empty() {
        return Err(Error::invalid(&what, "has no dimensions"));
    }
    for d in &cube.dimensions {
        match (&d.column, &d.table, d.derived.is_empty()) {
            (Some(c), None, true) => {
                let col = cols.resolve(&what, c)?;
                if stored
                    .iter()
                    .any(|s| s.column.eq_ignore_ascii_case(&col.column) && s.table != col.table)
                {
                    return Err(Error::invalid(
                        &what,
                        format!("two dimensions are named {}", col.column),
                    ));
                }
                push(&mut stored, col);
            }
            (None, Some(t), false) => {
                let lk = model
                    .lookups
                    .iter()
                    .find(|l| l.table.eq_ignore_ascii_case(t))
                    .ok_or_else(|| {
                        Error::invalid(
                            &what,
                            format!(
                                "derived dimension table {t} is not a lookup of model {}",
                                model.name
                            ),
                        )
                    })?;
                let mut fk_names = Vec::new();
                for fk in &lk.foreign_key {
                    let col = cols.resolve(&what, fk)?;
                    fk_names.push(col.column.clone());
                    push(&mut stored, col);
                }
                let mut dcols = Vec::new();
                for c in &d.derived {
                    let col = cols.resolve(&what, &format!("{t}.{c}"))?;
                    dcols.push(col);
                }
                derived.push(DerivedDimension {
                    table: lk.table.clone(),
                    columns: dcols,
                    foreign_key: fk_names,
                    primary_key: lk.primary_key.clone(),
                });
            }
            _ => return Err(Error::invalid(
                &what,
                "each dimension is either {\"column\": C} or {\"table\": T, \"derived\": [C, ...]}",
            )),
        }
    }
    for c in &stored {
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
        ) {
            return Err(Error::invalid(
                &what,
                format!(
                    "dimension {} has type {}, which cannot be a dimension",
                    c.column, c.data_type
                ),
            ));
        }
    }

    // Rowkey order: explicit, or the order of the dimensions.
    let rowkey: Vec<RowkeyColumn> = if cube.rowkey.is_empty() {
        stored
            .iter()
            .map(|c| RowkeyColumn {
                name: c.column.clone(),
                source: c.clone(),
            })
            .collect()
    } else {
        let mut out = Vec::new();
        for r in &cube.rowkey {
            let c = stored
                .iter()
                .find(|s| {
                    s.column.eq_ignore_ascii_case(r)
                        || format!("{}.{}", s.table, s.column).eq_ignore_ascii_case(r)
                })
                .ok_or_else(|| {
                    Error::invalid(&what, format!("rowkey column {r} is not a dimension"))
                })?;
            if out.iter().any(|o: &RowkeyColumn| o.name == c.column) {
                return Err(Error::invalid(
                    &what,
                    format!("rowkey column {r} is listed twice"),
                ));
            }
            out.push(RowkeyColumn {
                name: c.column.clone(),
                source: c.clone(),
            });
        }
        if let Some(missing) = stored
            .iter()
            .find(|s| !out.iter().any(|o| o.name == s.column))
        {
            return Err(Error::invalid(
                &what,
                format!("dimension {} is missing from the rowkey", missing.column),
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
        measures.push(resolve_measure(&cube.name, &cols, m)?);
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
        let group = enumerate_group(&gwhat, g, &names, max_cuboids_per_group)?;
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
    let mut cuboids: Vec<CuboidId> = all.into_iter().collect();
    cuboids.sort_by(|a, b| b.count_ones().cmp(&a.count_ones()).then(b.cmp(a)));

    let partition = match &model.partition {
        Some(p) => Some(partition_of(
            &format!("model {}", model.name),
            &cols,
            p,
            &model.fact_table,
        )?),
        None => None,
    };
    Ok(CubeLayout {
        cube: cube.clone(),
        model: model.clone(),
        tables: tables.to_vec(),
        rowkey,
        derived,
        measures,
        cuboids,
        partition,
    })
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
