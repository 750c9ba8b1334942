//! Step 1 of the rewrite: the aggregate's input flattened into the tables it reads and every
//! predicate over them (join keys included), or the reason its shape is not answered.

use datafusion::common::{Column, TableReference};
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
}

impl Flat {
    pub fn of(plan: &LogicalPlan, snap: &Snapshot) -> Result<Flat, Uncovered> {
        let mut flat = Flat::default();
        flatten(plan, snap, &mut flat)?;
        Ok(flat)
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

fn flatten(plan: &LogicalPlan, snap: &Snapshot, out: &mut Flat) -> Result<(), Uncovered> {
    match plan {
        LogicalPlan::Filter(f) => {
            out.predicates
                .extend(split_conjunction(&f.predicate).into_iter().cloned());
            flatten(&f.input, snap, out)
        }
        LogicalPlan::Join(j) if j.join_type == JoinType::Inner => {
            for (l, r) in &j.on {
                out.predicates.push(l.clone().eq(r.clone()));
            }
            if let Some(f) = &j.filter {
                out.predicates
                    .extend(split_conjunction(f).into_iter().cloned());
            }
            flatten(&j.left, snap, out)?;
            flatten(&j.right, snap, out)
        }
        // `A LEFT JOIN lookup ON keys`: answered when the model joins the lookup the same way.
        LogicalPlan::Join(j) if j.join_type == JoinType::Left => {
            // Before the optimizer the ON condition is still the join's filter.
            let on = j.on.iter().map(|(l, r)| l.clone().eq(r.clone()));
            let filter = j
                .filter
                .iter()
                .flat_map(|f| split_conjunction(f).into_iter().cloned());
            for p in on.chain(filter) {
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
            flatten(&j.left, snap, out)?;
            let (scans, predicates) = (out.scans.len(), out.predicates.len());
            flatten(&j.right, snap, out)?;
            if out.scans.len() != scans + 1 || out.predicates.len() != predicates {
                return Err(Uncovered::Shape(
                    "the right side of a LEFT JOIN must be one table to be answered from cubes"
                        .into(),
                ));
            }
            out.scans[scans].join = JoinKind::Left;
            Ok(())
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
                Ok(())
            }
            _ => Err(Uncovered::Shape(
                "subqueries in FROM are not answered from cubes".into(),
            )),
        },
        LogicalPlan::TableScan(t) => {
            out.scans.push(scan_info(t, snap)?);
            Ok(())
        }
        other => Err(Uncovered::Shape(format!(
            "a {} between the aggregate and the tables is not answered from cubes",
            other.display()
        ))),
    }
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
