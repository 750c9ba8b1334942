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
//! The steps live in their own modules: [`normalize`] (equivalent shapes made one, DISTINCT
//! as GROUP BY), [`flatten`] (plan shape → tables and predicates),
//! [`cover`] (tables, joins, dimensions, measures, cuboid choice, each failing with a typed
//! [`Uncovered`] reason), and [`replace`] (the replacement plan). A second pass, [`detail`],
//! then replaces the source-table scans left over (detail and lookup-only queries) with
//! scans of table indexes and lookup snapshots. The rewrite reads nothing from storage: the
//! scans get a [`SegmentReader`] and read when they execute.

use std::sync::Arc;

use datafusion::catalog::information_schema::INFORMATION_SCHEMA;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::LogicalPlan;

mod cover;
mod detail;
mod flatten;
mod normalize;
mod replace;
mod topn;

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
    /// The exact dimension set the aggregate needed (`cuboid` covers it, and may be larger:
    /// the cube planner records both). Equal to `cuboid` for snapshots and table indexes.
    pub wanted: CuboidId,
    pub dimensions: Vec<String>,
    pub cuboid_rows: u64,
    pub segments: Vec<String>,
    /// The table the replacement scans (EXPLAIN finds its execution plan by `scan`).
    pub table: Arc<CuboidTable>,
    pub derived_tables: Vec<String>,
    /// Group keys answered by EXTENDED_COLUMN states (no lookup join), as `column from
    /// measure name`.
    pub extended: Vec<String>,
    /// `None`: a cuboid answered an aggregate; otherwise the stored rows a scan read.
    pub stored: Option<Stored>,
    /// A TOP_N measure answered the aggregate (what EXPLAIN says of it).
    pub top_n: Option<String>,
}

/// Stored rows that answered a source-table scan.
#[derive(Debug, Clone)]
pub(crate) enum Stored {
    /// The lookup snapshot of `project.table` in `segment` (its name).
    Snapshot {
        project: String,
        table: String,
        segment: String,
    },
    /// The table index of cube `Realized::cube` over `Realized::segments`.
    TableIndex,
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

/// Rewrites every answerable aggregate of `plan`, then every remaining scan stored rows
/// answer; `reader` is what the scans will read from.
pub(crate) fn rewrite(
    plan: LogicalPlan,
    snap: &Snapshot,
    reader: &Arc<dyn SegmentReader>,
) -> Result<Outcome> {
    let plan = normalize::normalize(plan)?;
    let mut walk = Walk {
        snap,
        reader,
        realized: Vec::new(),
        reasons: Vec::new(),
        failure: None,
    };
    let rewritten = walk.aggregates(plan)?;
    if let Some(e) = walk.failure {
        return Err(e);
    }
    let (mut realized, mut reasons) = (walk.realized, walk.reasons);
    let (rewritten, stored, detail_reasons) = detail::replace_scans(rewritten, snap, reader)?;
    realized.extend(stored);
    reasons.extend(detail_reasons);
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

/// The top-down walk that replaces every answerable aggregate, and what it found.
struct Walk<'s> {
    snap: &'s Snapshot,
    reader: &'s Arc<dyn SegmentReader>,
    realized: Vec<Realized>,
    reasons: Vec<Uncovered>,
    failure: Option<crate::error::Error>,
}

impl Walk<'_> {
    fn aggregates(&mut self, plan: LogicalPlan) -> datafusion::error::Result<LogicalPlan> {
        Ok(plan
            .transform_down_with_subqueries(|node| {
                if let LogicalPlan::Limit(_) = &node {
                    match topn::rewrite_limit(&node, self.snap, self.reader) {
                        Ok(topn::Outcome::Answered(answered)) => {
                            let (new, r) = *answered;
                            self.realized.push(r);
                            return Ok(Transformed::new(new, true, TreeNodeRecursion::Jump));
                        }
                        Ok(topn::Outcome::Refused(reason)) => self.reasons.push(reason),
                        Ok(topn::Outcome::NotTopN) => {}
                        Err(e) => {
                            self.failure = Some(e);
                            return Ok(Transformed::new(node, false, TreeNodeRecursion::Stop));
                        }
                    }
                    return Ok(Transformed::no(node));
                }
                let LogicalPlan::Aggregate(agg) = &node else {
                    return Ok(Transformed::no(node));
                };
                match cover::match_aggregate(agg, self.snap) {
                    Ok(Some(answer)) => match replace::replacement(agg, &answer, self.reader) {
                        Ok((new, r)) => {
                            self.realized.push(r);
                            // The walk does not descend into a replacement; the subqueries it
                            // keeps (a semi-join's `IN (SELECT ...)`) are answered here.
                            let new = new
                                .transform_up(|n| {
                                    n.map_subqueries(|sub| {
                                        self.aggregates(sub).map(Transformed::yes)
                                    })
                                })?
                                .data;
                            Ok(Transformed::new(new, true, TreeNodeRecursion::Jump))
                        }
                        Err(e) => {
                            self.failure = Some(e);
                            Ok(Transformed::new(node, false, TreeNodeRecursion::Stop))
                        }
                    },
                    Ok(None) => Ok(Transformed::no(node)),
                    Err(reason) => {
                        self.reasons.push(reason);
                        Ok(Transformed::no(node))
                    }
                }
            })?
            .data)
    }
}
