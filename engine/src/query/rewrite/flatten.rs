//! Step 1 of the rewrite: the aggregate's input flattened into the tables it reads and every
//! predicate over them (join keys included), or the reason its shape is not answered.
//!
//! BI tools wrap the join tree in subqueries, CTEs and projections that rename and compute
//! columns (`SELECT ... FROM (SELECT d_year AS yr, a * b AS x FROM ...) AS t`). Flattening
//! goes bottom-up and keeps, for every output field of each node, the expression over the
//! base tables that computes it; filters, group keys and aggregates above are rewritten
//! through that mapping, so what remains is the same question asked of the tables directly.
//! Nodes that change which rows come out (LIMIT, DISTINCT, an aggregate, a window, a UNION)
//! stop the flattening: an aggregate inside is answered on its own by the rewrite's walk.

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, DataFusionError, TableReference};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Expr, JoinType, LogicalPlan, Operator, TableScan};

use super::INTERNAL_PREFIX;
use crate::model::{JoinKind, TableDesc};
use crate::query::catalog::{Snapshot, CATALOG};
use crate::uncovered::Uncovered;

/// One table the aggregate reads, and the qualifier its columns carry.
#[derive(Debug, Clone)]
pub(super) struct ScanInfo {
    pub qualifier: TableReference,
    pub project: String,
    pub table: TableDesc,
    /// `Left` when the table is the right side of a LEFT JOIN.
    pub join: JoinKind,
}

/// The aggregate's input flattened: tables, then every predicate (join keys included).
#[derive(Debug, Default)]
pub(super) struct Flat {
    pub scans: Vec<ScanInfo>,
    pub predicates: Vec<Expr>,
    /// Indexes of `predicates` that are a LEFT JOIN's ON keys: they must be the model's join
    /// keys, never filters.
    pub left_on: Vec<usize>,
    /// For each field of the flattened plan's schema, the expression over the tables'
    /// columns that computes it.
    pub outputs: Vec<Expr>,
}

impl Flat {
    pub fn of(plan: &LogicalPlan, snap: &Snapshot) -> Result<Flat, Uncovered> {
        let mut flat = Flat::default();
        flat.outputs = flatten(plan, snap, &mut flat)?;
        if let Some(p) = flat.predicates.iter().find(|p| p.is_volatile()) {
            return Err(volatile(p));
        }
        // A correlated subquery reads the fact row's columns, which a cuboid does not hold.
        if let Some(p) = flat
            .predicates
            .iter()
            .find(|p| p.exists(|x| Ok(is_correlated(x))).unwrap_or(true))
        {
            return Err(Uncovered::Shape(format!(
                "a correlated subquery in a filter ({p}) is not answered from cubes"
            )));
        }
        Ok(flat)
    }

    /// `e`, an expression over the flattened plan's output (`schema`), as an expression over
    /// the tables' columns.
    pub fn inline(&self, e: &Expr, schema: &DFSchema) -> Result<Expr, Uncovered> {
        let inlined = inline(e, schema, &self.outputs)?;
        if inlined.is_volatile() {
            return Err(volatile(&inlined));
        }
        Ok(inlined)
    }

    /// The index of the scan a column belongs to.
    pub fn scan_index(&self, c: &Column) -> Option<usize> {
        resolve_scan(&self.scans, c)
    }
}

/// The scan a column belongs to: by qualifier, or the only table with such a column.
pub(super) fn resolve_scan(scans: &[ScanInfo], c: &Column) -> Option<usize> {
    let has = |s: &ScanInfo| {
        s.table
            .columns
            .iter()
            .chain(&s.table.partition_columns)
            .any(|col| col.name.eq_ignore_ascii_case(&c.name))
    };
    match &c.relation {
        Some(r) => scans.iter().position(|s| &s.qualifier == r),
        None => {
            let mut found = (0..scans.len()).filter(|&i| has(&scans[i]));
            let first = found.next()?;
            found.next().is_none().then_some(first)
        }
    }
}

/// An expression that gives another value each time it is evaluated would be evaluated once
/// per cuboid row instead of once per fact row.
fn volatile(e: &Expr) -> Uncovered {
    Uncovered::Shape(format!(
        "{e} is volatile: evaluated over cuboid rows it would not give the answer over the fact rows"
    ))
}

/// `e` over `schema` with every column replaced by the expression `outputs` holds for it.
fn inline(e: &Expr, schema: &DFSchema, outputs: &[Expr]) -> Result<Expr, Uncovered> {
    e.clone()
        .transform(|x| match &x {
            Expr::Column(c) => match schema.maybe_index_of_column(c) {
                Some(i) => outputs
                    .get(i)
                    .map(|o| Transformed::yes(o.clone()))
                    .ok_or_else(|| DataFusionError::Internal(format!("no output for {c}"))),
                None => Ok(Transformed::no(x)),
            },
            _ => Ok(Transformed::no(x)),
        })
        .map(|t| t.data)
        .map_err(|err| Uncovered::Shape(format!("cannot look through {e}: {err}")))
}

/// The columns of a table read under `qualifier`.
fn scan_outputs(schema: &DFSchema, qualifier: &TableReference) -> Vec<Expr> {
    schema
        .fields()
        .iter()
        .map(|f| Expr::Column(Column::new(Some(qualifier.clone()), f.name())))
        .collect()
}

/// Flattens `plan` into `out` and returns its outputs (see [`Flat::outputs`]).
fn flatten(plan: &LogicalPlan, snap: &Snapshot, out: &mut Flat) -> Result<Vec<Expr>, Uncovered> {
    match plan {
        LogicalPlan::Filter(f) => {
            let outputs = flatten(&f.input, snap, out)?;
            for p in split_conjunction(&f.predicate) {
                out.predicates.push(inline(p, f.input.schema(), &outputs)?);
            }
            Ok(outputs)
        }
        LogicalPlan::Join(j) if j.join_type == JoinType::Inner => {
            let left = flatten(&j.left, snap, out)?;
            let right = flatten(&j.right, snap, out)?;
            for (l, r) in &j.on {
                let l = inline(l, j.left.schema(), &left)?;
                let r = inline(r, j.right.schema(), &right)?;
                out.predicates.push(l.eq(r));
            }
            let outputs = [left, right].concat();
            if let Some(f) = &j.filter {
                for p in split_conjunction(f) {
                    out.predicates.push(inline(p, &j.schema, &outputs)?);
                }
            }
            Ok(outputs)
        }
        // `A LEFT JOIN lookup ON keys`: answered when the model joins the lookup the same way.
        LogicalPlan::Join(j) if j.join_type == JoinType::Left => {
            let left = flatten(&j.left, snap, out)?;
            let (scans, predicates) = (out.scans.len(), out.predicates.len());
            let right = flatten(&j.right, snap, out)?;
            if out.scans.len() != scans + 1 || out.predicates.len() != predicates {
                return Err(Uncovered::Shape(
                    "the right side of a LEFT JOIN must be one table to be answered from cubes"
                        .into(),
                ));
            }
            // An expression computed inside the right side is NULL for a fact row without a
            // match; computed after the join it could be anything (`coalesce(x, 0)`).
            if let Some(e) = right.iter().find(|e| !matches!(e, Expr::Column(_))) {
                return Err(Uncovered::Shape(format!(
                    "the right side of a LEFT JOIN computes {e}; only its columns are answered from cubes"
                )));
            }
            out.scans[scans].join = JoinKind::Left;
            // Before the optimizer the ON condition is still the join's filter.
            let mut on = Vec::new();
            for (l, r) in &j.on {
                on.push(inline(l, j.left.schema(), &left)?.eq(inline(
                    r,
                    j.right.schema(),
                    &right,
                )?));
            }
            let outputs = [left, right].concat();
            if let Some(f) = &j.filter {
                for p in split_conjunction(f) {
                    on.push(inline(p, &j.schema, &outputs)?);
                }
            }
            for p in on {
                let is_key = matches!(&p, Expr::BinaryExpr(b)
                    if b.op == Operator::Eq
                        && matches!(b.left.as_ref(), Expr::Column(_))
                        && matches!(b.right.as_ref(), Expr::Column(_)));
                if !is_key {
                    return Err(Uncovered::Shape(format!(
                        "a LEFT JOIN whose ON holds more than key equalities ({p}) is not answered from cubes"
                    )));
                }
                out.left_on.push(out.predicates.len());
                out.predicates.push(p);
            }
            Ok(outputs)
        }
        LogicalPlan::Join(j) => Err(Uncovered::Shape(format!(
            "{} joins are not answered from cubes (models join lookups with INNER or LEFT joins)",
            j.join_type
        ))),
        LogicalPlan::SubqueryAlias(a) => match a.input.as_ref() {
            LogicalPlan::TableScan(t) => {
                let mut info = scan_info(t, snap)?;
                info.qualifier = a.alias.clone();
                out.scans.push(info);
                Ok(scan_outputs(&a.schema, &a.alias))
            }
            // A subquery or CTE: the same fields under another name.
            input => flatten(input, snap, out),
        },
        LogicalPlan::Projection(p) => {
            let inputs = flatten(&p.input, snap, out)?;
            p.expr
                .iter()
                .map(|e| {
                    if e.exists(|x| Ok(is_subquery(x))).unwrap_or(true) {
                        return Err(Uncovered::Shape(format!(
                            "a subquery in a select list inside FROM ({e}) is not answered from cubes"
                        )));
                    }
                    inline(&e.clone().unalias(), p.input.schema(), &inputs)
                })
                .collect()
        }
        // Order does not change which rows an aggregate sees.
        LogicalPlan::Sort(s) if s.fetch.is_none() => flatten(&s.input, snap, out),
        LogicalPlan::TableScan(t) => {
            out.scans.push(scan_info(t, snap)?);
            Ok(scan_outputs(&t.projected_schema, &t.table_name))
        }
        other => Err(Uncovered::Shape(format!(
            "a {} between the aggregate and the tables changes the rows the aggregate sees; \
             it is not answered from cubes",
            other.display()
        ))),
    }
}

fn is_correlated(e: &Expr) -> bool {
    let subquery = match e {
        Expr::ScalarSubquery(s) => s,
        Expr::Exists(x) => &x.subquery,
        Expr::InSubquery(x) => &x.subquery,
        Expr::SetComparison(x) => &x.subquery,
        _ => return false,
    };
    !subquery.outer_ref_columns.is_empty()
}

fn is_subquery(e: &Expr) -> bool {
    matches!(
        e,
        Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) | Expr::SetComparison(_)
    )
}

fn scan_info(t: &TableScan, snap: &Snapshot) -> Result<ScanInfo, Uncovered> {
    let name = t.table_name.to_string();
    if name.starts_with(INTERNAL_PREFIX) {
        return Err(Uncovered::Shape("already rewritten".into()));
    }
    if !t.filters.is_empty() || t.fetch.is_some() {
        return Err(Uncovered::Shape(format!(
            "scan of {name} carries pushed-down filters"
        )));
    }
    let resolved = t.table_name.clone().resolve(CATALOG, &snap.default_project);
    let project = snap
        .project(&resolved.schema)
        .ok_or_else(|| Uncovered::Table(format!("project {} does not exist", resolved.schema)))?;
    let table = project
        .tables
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(&resolved.table))
        .ok_or_else(|| Uncovered::Table(format!("table {name} is not a source table")))?;
    Ok(ScanInfo {
        qualifier: t.table_name.clone(),
        project: project.name.clone(),
        table: table.clone(),
        join: JoinKind::Inner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::{col, lit};

    #[test]
    fn columns_are_replaced_by_what_computes_them() {
        let schema = DFSchema::try_from_qualified_schema(
            "t",
            &Schema::new(vec![
                Field::new("yr", DataType::Int32, true),
                Field::new("x", DataType::Int64, true),
            ]),
        )
        .unwrap();
        let outputs = vec![
            col("dates.d_year"),
            col("lineorder.lo_extendedprice") * col("lineorder.lo_discount"),
        ];
        let e = col("t.x").gt(lit(1)).and(col("yr").eq(lit(1994)));
        let want = (col("lineorder.lo_extendedprice") * col("lineorder.lo_discount"))
            .gt(lit(1))
            .and(col("dates.d_year").eq(lit(1994)));
        assert_eq!(inline(&e, &schema, &outputs).unwrap(), want);
        // Columns of another relation are left alone; a missing output is an error, not a panic.
        assert_eq!(inline(&col("s.z"), &schema, &outputs).unwrap(), col("s.z"));
        assert!(matches!(
            inline(&col("t.x"), &schema, &outputs[..1]),
            Err(Uncovered::Shape(_))
        ));
    }
}
