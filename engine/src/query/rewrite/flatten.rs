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
use std::sync::Arc;

use datafusion::logical_expr::expr::InSubquery;
use datafusion::logical_expr::{
    Expr, Join, JoinType, LogicalPlan, LogicalPlanBuilder, Operator, Subquery, TableScan,
};

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
        LogicalPlan::Join(j) if j.join_type == JoinType::Inner && is_grouped(&j.right) => {
            semi_join(j, snap, out)
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

/// Whether `plan` is a subquery whose rows come from an aggregate: `Projection`, `Sort`,
/// `Limit` and aliases over an `Aggregate` (Superset's series limit, a top-N by a metric).
fn is_grouped(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::SubqueryAlias(a) => is_grouped(&a.input),
        LogicalPlan::Projection(p) => is_grouped(&p.input),
        LogicalPlan::Sort(s) => is_grouped(&s.input),
        LogicalPlan::Limit(l) => is_grouped(&l.input),
        LogicalPlan::Aggregate(_) => true,
        _ => false,
    }
}

/// Whether field `i` of `plan` (see [`is_grouped`]) is unique in it: it passes the group
/// key of an aggregate with exactly that one key (or none: one row) through unchanged.
fn is_unique_key(plan: &LogicalPlan, i: usize) -> bool {
    match plan {
        LogicalPlan::SubqueryAlias(a) => is_unique_key(&a.input, i),
        LogicalPlan::Sort(s) => is_unique_key(&s.input, i),
        LogicalPlan::Limit(l) => is_unique_key(&l.input, i),
        LogicalPlan::Projection(p) => match p.expr.get(i).map(|e| e.clone().unalias()) {
            Some(Expr::Column(c)) => p
                .input
                .schema()
                .maybe_index_of_column(&c)
                .is_some_and(|k| is_unique_key(&p.input, k)),
            _ => false,
        },
        LogicalPlan::Aggregate(a) => {
            let plain = !a
                .group_expr
                .iter()
                .any(|e| matches!(e, Expr::GroupingSet(_)));
            plain && (a.group_expr.is_empty() || (a.group_expr.len() == 1 && i == 0))
        }
        _ => false,
    }
}

/// `tables JOIN (grouped subquery) AS s ON key = s.k`, the subquery's other columns unused:
/// when `s.k` is unique in `s`, every row of the tables matches at most once, so the join only
/// keeps the rows whose key is in `s` — the filter `key IN (SELECT s.k FROM s)`. The
/// subquery's other columns come out as columns of no table, so using them above is refused.
fn semi_join(j: &Join, snap: &Snapshot, out: &mut Flat) -> Result<Vec<Expr>, Uncovered> {
    let refused = |why: &str| {
        Uncovered::Shape(format!(
            "a join with an aggregated subquery is answered from cubes only as a filter on one \
             unique key of it; {why}"
        ))
    };
    let left = flatten(&j.left, snap, out)?;
    let right_schema = j.right.schema();
    let right_field = |e: &Expr| match e {
        Expr::Column(c) => right_schema.maybe_index_of_column(c),
        _ => None,
    };
    let left_schema = j.left.schema();
    let on_left = |e: &Expr| e.column_refs().iter().all(|c| left_schema.has_column(c));
    let mut keys: Vec<(Expr, usize)> = Vec::new();
    let mut conditions: Vec<Expr> = j.on.iter().map(|(l, r)| l.clone().eq(r.clone())).collect();
    if let Some(f) = &j.filter {
        conditions.extend(split_conjunction(f).into_iter().cloned());
    }
    for p in conditions {
        if on_left(&p) {
            out.predicates.push(inline(&p, left_schema, &left)?);
            continue;
        }
        let key = match &p {
            Expr::BinaryExpr(b) if b.op == Operator::Eq => {
                match (right_field(&b.left), right_field(&b.right)) {
                    (None, Some(k)) if on_left(&b.left) => Some((b.left.as_ref().clone(), k)),
                    (Some(k), None) if on_left(&b.right) => Some((b.right.as_ref().clone(), k)),
                    _ => None,
                }
            }
            _ => None,
        };
        keys.push(key.ok_or_else(|| refused(&format!("the ON condition {p} is not one")))?);
    }
    let [(left_key, k)] = keys.as_slice() else {
        return Err(refused(&format!("it is joined on {} keys", keys.len())));
    };
    if !is_unique_key(&j.right, *k) {
        return Err(refused(&format!(
            "{} is not provably unique in the subquery (the only group key of its aggregate)",
            right_schema.field(*k).name()
        )));
    }
    let left_key = inline(left_key, left_schema, &left)?;
    let (qualifier, field) = right_schema.qualified_field(*k);
    let key_column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
    let subquery = LogicalPlanBuilder::from(j.right.as_ref().clone())
        .project(vec![key_column])
        .and_then(|b| b.build())
        .map_err(|e| refused(&e.to_string()))?;
    out.predicates.push(Expr::InSubquery(InSubquery::new(
        Box::new(left_key.clone()),
        Subquery {
            subquery: Arc::new(subquery),
            outer_ref_columns: vec![],
            spans: Default::default(),
        },
        false,
    )));
    let right = right_schema.iter().enumerate().map(|(i, (_, f))| {
        if i == *k {
            left_key.clone()
        } else {
            Expr::Column(Column::new(Some(SEMI_JOINED), f.name()))
        }
    });
    Ok(left.into_iter().chain(right).collect())
}

/// The qualifier of a semi-joined subquery's columns other than its key: no table's.
const SEMI_JOINED: &str = "__qilin_semi_joined_subquery";

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
    fn only_the_one_group_key_of_a_top_n_subquery_is_unique() {
        use datafusion::functions_aggregate::expr_fn::sum;
        use datafusion::logical_expr::{table_scan, SortExpr};
        let schema = Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Int64, true),
            Field::new("c", DataType::Utf8, true),
        ]);
        let top_n = |group: Vec<Expr>| {
            table_scan(Some("t"), &schema, None)
                .unwrap()
                .aggregate(group, vec![sum(col("b")).alias("m")])
                .unwrap()
                .sort(vec![SortExpr::new(col("m"), false, false)])
                .unwrap()
                .limit(0, Some(5))
                .unwrap()
                .build()
                .unwrap()
        };
        let one_key = LogicalPlanBuilder::from(top_n(vec![col("a")]))
            .project(vec![col("m").alias("m2"), col("a").alias("k")])
            .unwrap()
            .alias("s")
            .unwrap()
            .build()
            .unwrap();
        assert!(is_grouped(&one_key));
        assert!(is_unique_key(&one_key, 1));
        assert!(!is_unique_key(&one_key, 0));
        let two_keys = top_n(vec![col("a"), col("c")]);
        assert!(!is_unique_key(&two_keys, 0));
        assert!(!is_unique_key(&two_keys, 1));
        let computed = LogicalPlanBuilder::from(top_n(vec![col("a")]))
            .project(vec![datafusion::functions::expr_fn::upper(col("a"))])
            .unwrap()
            .build()
            .unwrap();
        assert!(!is_unique_key(&computed, 0));
    }

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
