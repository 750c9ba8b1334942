//! The cube rewrite. It runs on the plan the SQL planner produced, before the analyzer and
//! optimizer, because there both join syntaxes still have one simple shape: an `Aggregate`
//! over `Filter`s and `Join`s (comma joins are joins without keys) of `TableScan`s. Flattening
//! that subtree gives the set of tables, the equalities and the residual predicates; the
//! equalities are compared with the model's FK→PK edges, every other column must be a
//! dimension of a cube and every aggregate must map onto a measure state. The matched
//! `Aggregate` becomes
//!
//! ```text
//! Projection (the original output names and types)
//!   Aggregate (re-aggregation: SUM of sums, MIN of mins, merge of sketches, ...)
//!     Filter (the residual predicates over cuboid columns)
//!       [Join lookup tables for derived dimensions, on the stored foreign key]
//!         TableScan __qilin_cuboid (the chosen cuboid: a `CuboidTable`, pruned when it runs)
//! ```
//!
//! so only the small plan that remains goes through DataFusion's analyzer and optimizer. The
//! output keeps the original schema, and rewriting a rewritten plan changes nothing (it no
//! longer reads source tables).

//!
//! The steps live in their own modules: [`flatten`] (plan shape → tables and predicates),
//! [`cover`] (tables, joins, dimensions, measures, cuboid choice, each failing with a typed
//! [`Uncovered`] reason), and [`replace`] (the replacement plan). The rewrite reads nothing
//! from storage: the cuboid scan gets a [`SegmentReader`] and reads when it executes.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::catalog::information_schema::INFORMATION_SCHEMA;
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::LogicalPlan;

mod cover;
mod flatten;
mod replace;

use super::catalog::Snapshot;
use super::cuboid_scan::CuboidTable;
use super::segments::SegmentReader;
use crate::error::Result;
use crate::model::CuboidId;
use crate::uncovered::Uncovered;

/// Scans the rewrite introduces are named with this prefix; any other scan reads a source table.
pub(crate) const INTERNAL_PREFIX: &str = "__qilin_";

/// What served one aggregate of the query (for EXPLAIN).
#[derive(Debug, Clone)]
pub(crate) struct Realized {
    pub cube: String,
    pub cuboid: CuboidId,
    pub dimensions: Vec<String>,
    pub cuboid_rows: u64,
    pub segments: Vec<String>,
    /// The table the replacement scans (EXPLAIN finds its execution plan by `scan`).
    pub table: Arc<CuboidTable>,
    pub derived_tables: Vec<String>,
}

pub(crate) enum Outcome {
    /// Every source table the query reads is answered from cuboids (or it reads none).
    Answered {
        plan: LogicalPlan,
        realized: Vec<Realized>,
    },
    /// Some part of the query needs the raw tables.
    Uncovered(Uncovered),
}

/// Lookup tables read into memory for derived dimensions, by (project, table).
pub(crate) type Lookups = HashMap<(String, String), Arc<MemTable>>;

/// Resources the rewrite needs loaded before it can build plans (lookup tables are read
/// asynchronously, the rewrite itself is synchronous).
pub(crate) fn lookups_needed(plan: &LogicalPlan, snap: &Snapshot) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Aggregate(agg) = node {
            if let Ok(Some(a)) = cover::match_aggregate(agg, snap) {
                for &d in &a.derived {
                    out.push((
                        a.project.clone(),
                        a.real.layout.derived[d].lookup_table.clone(),
                    ));
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out.sort();
    out.dedup();
    out
}

/// Rewrites every answerable aggregate of `plan`. `lookups` holds the tables named by
/// [`lookups_needed`]; `reader` is what the cuboid scans will read from.
pub(crate) fn rewrite(
    plan: LogicalPlan,
    snap: &Snapshot,
    reader: &Arc<dyn SegmentReader>,
    lookups: &Lookups,
) -> Result<Outcome> {
    let mut realized = Vec::new();
    let mut reasons: Vec<Uncovered> = Vec::new();
    let mut failure: Option<crate::error::Error> = None;
    let rewritten = plan
        .transform_down_with_subqueries(|node| {
            let LogicalPlan::Aggregate(agg) = &node else {
                return Ok(Transformed::no(node));
            };
            match cover::match_aggregate(agg, snap) {
                Ok(Some(answer)) => match replace::replacement(agg, &answer, reader, lookups) {
                    Ok((new, r)) => {
                        realized.push(r);
                        Ok(Transformed::new(new, true, TreeNodeRecursion::Jump))
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
    // Whatever still reads a source table was not answered (`information_schema` reads the
    // catalog, not source data).
    let mut unanswered: Vec<String> = Vec::new();
    rewritten.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(t) = node {
            let name = t.table_name.to_string();
            let catalog_view = t.table_name.schema() == Some(INFORMATION_SCHEMA);
            if !name.starts_with(INTERNAL_PREFIX) && !catalog_view {
                unanswered.push(name);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if unanswered.is_empty() {
        return Ok(Outcome::Answered {
            plan: rewritten,
            realized,
        });
    }
    Ok(Outcome::Uncovered(if reasons.is_empty() {
        Uncovered::Outside {
            table: unanswered.swap_remove(0),
        }
    } else {
        Uncovered::each(reasons)
    }))
}
