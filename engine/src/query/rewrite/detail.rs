//! The second pass of the rewrite: scans of source tables the aggregate pass left in the plan
//! (detail queries, lookup-only queries, aggregates no cuboid covers) read what builds
//! stored instead of the source files:
//! - a cube's fact table → the cube's table index over all READY segments, when the cube has
//!   one, every segment has it, and it stores every column the query uses;
//! - a lookup table of a cube's model → the lookup snapshot of the cube's newest READY segment.
//!
//! Each scan becomes `SubqueryAlias <the scan's own qualifier>` over a projection restoring
//! the scan's schema (names, types, order) over a [`CuboidTable`] of the stored rows, so no
//! parent's schema changes. Filters pushed into it prune blocks by min/max when it runs; the
//! scan reads blocks lazily, so a LIMIT stops it.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{
    cast, lit, Expr, LogicalPlan, LogicalPlanBuilder, SubqueryAlias, TableScan,
};

use super::{Realized, Stored, INTERNAL_PREFIX};
use crate::error::{Error, Result};
use crate::model::cuboid::TABLE_INDEX_ID;
use crate::model::{parse_sql_type, LookupSnapshot, Segment};
use crate::query::catalog::{Realization, Snapshot, CATALOG};
use crate::query::cuboid_scan::CuboidTable;
use crate::query::segments::SegmentReader;
use crate::uncovered::Uncovered;

/// The newest of a cube's READY segments (by range, then READY time).
fn newest_segment(real: &Realization) -> Option<&Segment> {
    real.segments.iter().max_by_key(|s| (s.range, s.ready_ms))
}

/// The snapshot of lookup `table` in the newest READY segment of `real`, as a table, and
/// the segment it is read from; an error (asking for a refresh) when that segment predates
/// snapshots.
pub(super) fn snapshot_table(
    real: &Realization,
    table: &str,
    reader: &Arc<dyn SegmentReader>,
) -> std::result::Result<(CuboidTable, Segment), String> {
    let cube = &real.layout.cube.name;
    let segment = newest_segment(real)
        .ok_or_else(|| format!("cube {cube} has no READY segment holding a snapshot of {table}"))?;
    let snap = segment
        .snapshots
        .iter()
        .find(|s| s.table.eq_ignore_ascii_case(table))
        .ok_or_else(|| {
            format!(
                "segment {} of cube {cube} holds no snapshot of lookup table {table} (it was \
                 built before lookup snapshots were stored): refresh the segment",
                segment.name
            )
        })?;
    let schema = snapshot_schema(snap).map_err(|e| e.to_string())?;
    let ncols = schema.fields().len();
    Ok((
        CuboidTable::with_schema(
            schema,
            ncols,
            snap.stats.id,
            vec![segment.id.clone()],
            reader.clone(),
        ),
        segment.clone(),
    ))
}

fn snapshot_schema(s: &LookupSnapshot) -> Result<SchemaRef> {
    let fields = s
        .columns
        .iter()
        .map(|c| {
            parse_sql_type(&c.data_type)
                .map(|t| Field::new(&c.name, t, true))
                .ok_or_else(|| {
                    Error::corrupt(
                        format!("snapshot of {}", s.table),
                        format!("column {} has unknown type {}", c.name, c.data_type),
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// Every column name the plan refers to anywhere (lower case): a conservative view of what a
/// query uses from each table.
fn referenced_names(plan: &LogicalPlan) -> HashSet<String> {
    let mut names = HashSet::new();
    let _ = plan.apply_with_subqueries(|node| {
        for e in node.expressions() {
            for c in e.column_refs() {
                names.insert(c.name.to_ascii_lowercase());
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names
}

/// What replaces one scan.
struct Replacement {
    table: Arc<CuboidTable>,
    scan_name: String,
    realized: Realized,
}

/// Replaces every remaining source-table scan that stored rows answer. Returns the plan, what
/// answered each replaced scan, and why the others were not replaced.
pub(super) fn replace_scans(
    plan: LogicalPlan,
    snap: &Snapshot,
    reader: &Arc<dyn SegmentReader>,
) -> Result<(LogicalPlan, Vec<Realized>, Vec<Uncovered>)> {
    let used = referenced_names(&plan);
    let mut realized = Vec::new();
    let mut reasons = Vec::new();
    let mut failure: Option<Error> = None;
    let plan = plan
        .transform_up_with_subqueries(|node| {
            let LogicalPlan::TableScan(scan) = &node else {
                return Ok(Transformed::no(node));
            };
            if scan.table_name.table().starts_with(INTERNAL_PREFIX) {
                return Ok(Transformed::no(node));
            }
            match choose(scan, snap, reader, &used) {
                Ok(Some(r)) => match replacement_plan(scan, &r) {
                    Ok(p) => {
                        realized.push(r.realized);
                        Ok(Transformed::yes(p))
                    }
                    Err(e) => {
                        failure = Some(e);
                        Ok(Transformed::new(node, false, TreeNodeRecursion::Stop))
                    }
                },
                Ok(None) => Ok(Transformed::no(node)),
                Err(reason) => {
                    reasons.push(reason);
                    Ok(Transformed::no(node))
                }
            }
        })?
        .data;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok((plan, realized, reasons))
}

/// The stored rows that answer `scan`: the table index of a cube whose fact table it is, or
/// else the snapshot of a cube whose lookup it is. `Ok(None)`: no cube knows the table.
fn choose(
    scan: &TableScan,
    snap: &Snapshot,
    reader: &Arc<dyn SegmentReader>,
    used: &HashSet<String>,
) -> std::result::Result<Option<Replacement>, Uncovered> {
    let resolved = scan
        .table_name
        .clone()
        .resolve(CATALOG, &snap.default_project);
    let Some(project) = snap.project(&resolved.schema) else {
        return Ok(None);
    };
    let table = resolved.table.to_string();
    let is = |name: &str| name.eq_ignore_ascii_case(&table);
    let mut reasons = Vec::new();
    let facts: Vec<&Realization> = project
        .realizations
        .iter()
        .filter(|r| is(&r.layout.model.fact_table))
        .collect();
    for real in &facts {
        match table_index(real, scan, reader, used) {
            Ok(r) => return Ok(Some(r)),
            Err(reason) => reasons.push(reason),
        }
    }
    for real in project
        .realizations
        .iter()
        .filter(|r| r.layout.joins.iter().any(|j| is(&j.table)))
    {
        match snapshot_table(real, &table, reader) {
            Ok((t, segment)) => {
                let stored: HashSet<String> = t
                    .schema_ref()
                    .fields()
                    .iter()
                    .map(|f| f.name().to_ascii_lowercase())
                    .collect();
                if let Some(missing) = missing_columns(scan, &stored, used) {
                    reasons.push(Uncovered::Table(format!(
                        "the snapshot of {table} in segment {} of cube {} lacks column(s) {missing} \
                         (the table changed since the build): refresh the segment",
                        segment.name, real.layout.cube.name
                    )));
                    continue;
                }
                let table_ref = Arc::new(t);
                let realized = Realized {
                    cube: real.layout.cube.name.clone(),
                    cuboid: table_ref.cuboid(),
                    wanted: table_ref.cuboid(),
                    dimensions: Vec::new(),
                    cuboid_rows: 0,
                    segments: vec![segment.name.clone()],
                    table: table_ref.clone(),
                    derived_tables: Vec::new(),
                    extended: Vec::new(),
                    top_n: None,
                    stored: Some(Stored::Snapshot {
                        project: project.name.clone(),
                        table: table.clone(),
                        segment: segment.name.clone(),
                    }),
                };
                return Ok(Some(Replacement {
                    table: table_ref,
                    scan_name: format!("{INTERNAL_PREFIX}snapshot_{}", table.to_ascii_lowercase()),
                    realized,
                }));
            }
            Err(reason) => reasons.push(Uncovered::Table(reason)),
        }
    }
    if reasons.is_empty() {
        return Ok(None);
    }
    Err(Uncovered::each(reasons))
}

/// The fact columns `scan` yields that the stored columns lack and the query uses, if any.
fn missing_columns(
    scan: &TableScan,
    stored: &HashSet<String>,
    used: &HashSet<String>,
) -> Option<String> {
    let missing: Vec<String> = scan
        .projected_schema
        .fields()
        .iter()
        .map(|f| f.name().to_ascii_lowercase())
        .filter(|n| !stored.contains(n) && used.contains(n))
        .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

fn table_index(
    real: &Realization,
    scan: &TableScan,
    reader: &Arc<dyn SegmentReader>,
    used: &HashSet<String>,
) -> std::result::Result<Replacement, Uncovered> {
    let layout = &real.layout;
    let cube = &layout.cube.name;
    let fact = &layout.model.fact_table;
    let Some(ti) = &layout.table_index else {
        return Err(Uncovered::NoDetail {
            table: fact.clone(),
            cube: cube.clone(),
        });
    };
    if real.segments.is_empty() {
        return Err(Uncovered::Segments {
            cube: cube.clone(),
            detail: "no READY segment holds its table index".into(),
        });
    }
    if let Some(s) = real.segments.iter().find(|s| s.table_index.is_none()) {
        return Err(Uncovered::Segments {
            cube: cube.clone(),
            detail: format!(
                "segment {} has no table index (built before the cube had one): refresh it",
                s.name
            ),
        });
    }
    let stored: HashSet<String> = ti
        .columns
        .iter()
        .map(|c| c.column.to_ascii_lowercase())
        .collect();
    if let Some(missing) = missing_columns(scan, &stored, used) {
        return Err(Uncovered::Table(format!(
            "the table index of cube {cube} lacks column(s) {missing} of {fact} that the query uses"
        )));
    }
    let schema = ti.schema();
    let ncols = schema.fields().len();
    let table = Arc::new(CuboidTable::with_schema(
        schema,
        ncols,
        TABLE_INDEX_ID,
        real.segments.iter().map(|s| s.id.clone()).collect(),
        reader.clone(),
    ));
    let rows = real
        .segments
        .iter()
        .filter_map(|s| s.table_index.as_ref())
        .map(|t| t.rows)
        .sum();
    Ok(Replacement {
        scan_name: format!("{INTERNAL_PREFIX}table_index_{}", cube.to_ascii_lowercase()),
        realized: Realized {
            cube: cube.clone(),
            cuboid: TABLE_INDEX_ID,
            wanted: TABLE_INDEX_ID,
            dimensions: Vec::new(),
            cuboid_rows: rows,
            segments: real.segments.iter().map(|s| s.name.clone()).collect(),
            table: table.clone(),
            derived_tables: Vec::new(),
            extended: Vec::new(),
            top_n: None,
            stored: Some(Stored::TableIndex),
        },
        table,
    })
}

/// `SubqueryAlias <scan's qualifier>` over a projection giving the scan's exact fields (a
/// column the stored rows lack, and the query does not use, is a typed NULL) over the stored
/// rows.
fn replacement_plan(scan: &TableScan, r: &Replacement) -> Result<LogicalPlan> {
    let stored = r.table.schema_ref();
    let source = LogicalPlanBuilder::scan(
        r.scan_name.as_str(),
        provider_as_source(r.table.clone()),
        None,
    )?
    .build()?;
    let exprs: Vec<Expr> = scan
        .projected_schema
        .fields()
        .iter()
        .map(|f| {
            let e = match stored
                .fields()
                .iter()
                .find(|s| s.name().eq_ignore_ascii_case(f.name()))
            {
                Some(s) => Expr::Column(Column::new(Some(r.scan_name.as_str()), s.name())),
                None => lit(ScalarValue::Null),
            };
            cast(e, f.data_type().clone()).alias(f.name())
        })
        .collect();
    let projected = LogicalPlanBuilder::from(source).project(exprs)?.build()?;
    Ok(LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(
        Arc::new(projected),
        scan.table_name.clone(),
    )?))
}
