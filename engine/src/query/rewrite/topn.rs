//! The TOP_N rewrite: `SELECT dims.., by, SUM(value) ... GROUP BY dims.., by ORDER BY
//! SUM(value) DESC LIMIT k` answered from a TOP_N measure `TOP_N(value) BY by, n` in the
//! cuboid of `dims` alone (`by` need not be a dimension), when `k` (plus any OFFSET) is at
//! most `n`. The aggregate becomes
//!
//! ```text
//! Projection (the aggregate's names and types: dims, by cast back from text, the sum)
//!   Unnest (one row per counter)
//!     Aggregate (group by dims: qilin_topn(state), the merged counters largest first)
//!       Filter / lookup joins / TableScan __qilin_cuboid (as any replacement)
//! ```
//!
//! and the query's own Sort and Limit stay on top. Every counter of a merged state is a row,
//! so when no state in the merge dropped a key (see `measure::topn`) the rows are exactly the
//! `(dims, by, SUM)` groups and the Sort + Limit above pick the true top `k`.
//!
//! Only that shape is taken; anything else (ASC order, other aggregates, HAVING, a filter on
//! `by`, `k > n`) is left to the ordinary rewrite, with the reason it was refused here.

use std::sync::Arc;

use datafusion::common::Column;
use datafusion::functions::core::expr_fn::get_field;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{cast, Aggregate, Expr, FetchType, LogicalPlan, SkipType, SortExpr};

use super::cover::{self, Answer, Bound};
use super::flatten::Flat;
use super::replace::{self, Source};
use super::Realized;
use crate::error::Result;
use crate::measure::topn::capacity_of;
use crate::model::{MeasureFunction, StateKind};
use crate::query::canonical::canonical;
use crate::query::catalog::Snapshot;
use crate::query::segments::SegmentReader;
use crate::query::sketch;
use crate::uncovered::Uncovered;

/// A TOP_N answer: the cuboid of the dimensions, which group key is `by`, which measure.
struct TopNAnswer<'a> {
    answer: Answer<'a>,
    /// Index of `by` among the aggregate's group keys.
    by: usize,
    measure: usize,
    n: u32,
}

/// What the rewrite does with a `Limit` node.
pub(super) enum Outcome {
    /// Not `Limit → Sort(SUM DESC) → [Projection] → Aggregate`, or the ordinary rewrite
    /// answers the aggregate anyway (it is exact and needs no TOP_N).
    NotTopN,
    /// The limit's input with its aggregate replaced.
    Answered(Box<(LogicalPlan, Realized)>),
    Refused(Uncovered),
}

/// Tries to answer the aggregate under `limit` from a TOP_N measure.
pub(super) fn rewrite_limit(
    limit: &LogicalPlan,
    snap: &Snapshot,
    reader: &Arc<dyn SegmentReader>,
) -> Result<Outcome> {
    let Some((agg, sum_index, rows)) = shape(limit) else {
        return Ok(Outcome::NotTopN);
    };
    // A cuboid holding `by` as a dimension answers exactly: leave it to the ordinary path.
    if matches!(cover::match_aggregate(agg, snap), Ok(Some(_))) {
        return Ok(Outcome::NotTopN);
    }
    let found = match match_top_n(agg, sum_index, rows, snap) {
        Ok(Some(t)) => t,
        Ok(None) => return Ok(Outcome::NotTopN),
        Err(reason) => return Ok(Outcome::Refused(reason)),
    };
    let (new_agg, realized) = replacement(agg, &found, reader)?;
    // Rebuild the nodes between the limit and the aggregate over the replacement.
    let new = replace_aggregate(limit.clone(), new_agg)?;
    Ok(Outcome::Answered(Box::new((new, realized))))
}

/// `Limit → Sort → [Projection] → Aggregate` where the first sort key is the aggregate's
/// one aggregate, descending: the aggregate, that aggregate's index among its outputs, and
/// the rows the limit needs (offset + fetch).
fn shape(limit: &LogicalPlan) -> Option<(&Aggregate, usize, usize)> {
    let LogicalPlan::Limit(l) = limit else {
        return None;
    };
    let skip = match l.get_skip_type().ok()? {
        SkipType::Literal(s) => s,
        SkipType::UnsupportedExpr => return None,
    };
    let fetch = match l.get_fetch_type().ok()? {
        FetchType::Literal(Some(f)) => f,
        _ => return None,
    };
    let LogicalPlan::Sort(sort) = l.input.as_ref() else {
        return None;
    };
    let SortExpr { expr, asc, .. } = sort.expr.first()?;
    let Expr::Column(sorted) = expr else {
        return None;
    };
    let (agg, column) = match sort.input.as_ref() {
        LogicalPlan::Aggregate(a) => (a, sorted.clone()),
        LogicalPlan::Projection(p) => {
            let LogicalPlan::Aggregate(a) = p.input.as_ref() else {
                return None;
            };
            let i = p.schema.index_of_column(sorted).ok()?;
            match p.expr.get(i)?.clone().unalias() {
                Expr::Column(c) => (a, c),
                _ => return None,
            }
        }
        _ => return None,
    };
    let index = agg.schema.index_of_column(&column).ok()?;
    if index < agg.group_expr.len() {
        return None;
    }
    // Ascending order is refused with its reason by `match_top_n` (`usize::MAX` rows).
    let rows = if *asc {
        usize::MAX
    } else {
        skip.saturating_add(fetch)
    };
    Some((agg, index - agg.group_expr.len(), rows))
}

/// The TOP_N answer of `agg`, whose aggregate `sum_index` is sorted by and of which the
/// query needs `rows` rows (`usize::MAX`: ascending order).
fn match_top_n<'a>(
    agg: &Aggregate,
    sum_index: usize,
    rows: usize,
    snap: &'a Snapshot,
) -> std::result::Result<Option<TopNAnswer<'a>>, Uncovered> {
    let flat = Flat::of(&agg.input, snap)?;
    if flat.scans.is_empty() {
        return Ok(None);
    }
    let schema = agg.input.schema();
    let group: Vec<Expr> = agg
        .group_expr
        .iter()
        .map(|e| flat.inline(e, schema))
        .collect::<std::result::Result<_, _>>()?;
    let aggr: Vec<Expr> = agg
        .aggr_expr
        .iter()
        .map(|e| flat.inline(e, schema))
        .collect::<std::result::Result<_, _>>()?;
    let refused = |detail: String| Uncovered::Measure {
        expr: agg.aggr_expr[sum_index].to_string(),
        detail: format!("TOP_N: {detail}"),
    };
    if aggr.len() != 1 {
        return Err(refused(
            "a TOP_N measure answers one SUM ordered descending, with no other aggregate".into(),
        ));
    }
    let Expr::AggregateFunction(AggregateFunction { func, params }) = aggr[0].clone().unalias()
    else {
        return Ok(None);
    };
    if !func.name().eq_ignore_ascii_case("sum")
        || params.distinct
        || params.filter.is_some()
        || !params.order_by.is_empty()
        || params.args.len() != 1
    {
        return Err(refused("a TOP_N measure answers only SUM(value)".into()));
    }
    if rows == usize::MAX {
        return Err(refused(
            "ORDER BY SUM(...) ASC is not answered by a TOP_N measure (it keeps the largest)"
                .into(),
        ));
    }
    let project_name = flat.scans[0].project.clone();
    let Some(project) = snap.project(&project_name) else {
        return Ok(None);
    };
    let mut best: Option<TopNAnswer> = None;
    let mut reasons = Vec::new();
    for real in &project.realizations {
        match cover_top_n(&flat, &group, &params.args[0], rows, real, &project_name) {
            Ok(Some(t)) => {
                if best
                    .as_ref()
                    .is_none_or(|b| t.answer.cuboid_rows < b.answer.cuboid_rows)
                {
                    best = Some(t);
                }
            }
            Ok(None) => {}
            Err(r) => reasons.push(r),
        }
    }
    match best {
        Some(b) => Ok(Some(b)),
        None if reasons.is_empty() => Ok(None),
        None => Err(Uncovered::each(reasons)),
    }
}

/// One cube's TOP_N answer: `Ok(None)` when it has no TOP_N measure of this value and `by`.
fn cover_top_n<'a>(
    flat: &Flat,
    group: &[Expr],
    value: &Expr,
    rows: usize,
    real: &'a crate::query::catalog::Realization,
    project: &str,
) -> std::result::Result<Option<TopNAnswer<'a>>, Uncovered> {
    let layout = &real.layout;
    let cube = &layout.cube.name;
    let (bound, residual) = cover::match_joins(flat, layout)?;
    let canon = |e: &Expr| canonical(e, &|c| bound.model_column(c));
    let value_canon = canon(value);
    let measure_by = |m: usize| {
        layout.measures[m].extra.as_ref().map(|c| {
            format!(
                "{}.{}",
                c.table.to_ascii_lowercase(),
                c.column.to_ascii_lowercase()
            )
        })
    };
    // The group key that is a TOP_N measure's `by`, with that measure.
    let found = group.iter().enumerate().find_map(|(g, e)| {
        let Expr::Column(_) = e else { return None };
        let by = canon(e)?;
        (0..layout.measures.len())
            .find(|&m| {
                layout.measures[m].function == MeasureFunction::TopN
                    && real.measure_inputs[m] == value_canon
                    && measure_by(m).as_deref() == Some(by.as_str())
            })
            .map(|m| (g, m))
    });
    let Some((by, measure)) = found else {
        return Ok(None);
    };
    let StateKind::TopN(n) = layout.measures[measure].state else {
        return Ok(None);
    };
    let name = &layout.measures[measure].name;
    if rows > n as usize {
        return Err(Uncovered::Measure {
            expr: format!("LIMIT {rows}"),
            detail: format!(
                "TOP_N measure {name} of cube {cube} keeps the top {n}; the query needs {rows} rows"
            ),
        });
    }
    let by_column = &group[by];
    if let Some(p) = residual.iter().find(|p| {
        p.column_refs()
            .iter()
            .any(|c| Expr::Column((*c).clone()) == *by_column)
    }) {
        return Err(Uncovered::Measure {
            expr: p.to_string(),
            detail: format!(
                "TOP_N measure {name}: a filter on its by column {by_column} is not answered \
                 (the states hold only the top values)"
            ),
        });
    }
    let dims: Vec<Expr> = group
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != by)
        .map(|(_, e)| e.clone())
        .collect();
    let targets = cover::cover_dimensions(&bound, residual.iter().chain(dims.iter()), real, false)?;
    let cover::CuboidChoice {
        cuboid,
        rows: cuboid_rows,
        derived,
        required,
    } = cover::choose_cuboid(real, &targets)?;
    let Bound { aliases, .. } = bound;
    Ok(Some(TopNAnswer {
        answer: Answer {
            real,
            project: project.to_string(),
            cuboid,
            cuboid_rows,
            required,
            scans: flat.scans.clone(),
            aliases,
            targets,
            residual,
            group: dims,
            aggs: Vec::new(),
            derived,
        },
        by,
        measure,
        n,
    }))
}

/// The plan replacing `agg` (same output schema), and what EXPLAIN says of it.
fn replacement(
    agg: &Aggregate,
    t: &TopNAnswer,
    reader: &Arc<dyn SegmentReader>,
) -> Result<(LogicalPlan, Realized)> {
    let answer = &t.answer;
    let Source {
        builder,
        table,
        derived_tables,
        ..
    } = replace::source(answer, reader, &Default::default())?;
    let group: Vec<Expr> = answer
        .group
        .iter()
        .enumerate()
        .map(|(i, g)| Ok(replace::map_expr(answer, g)?.alias(format!("__g{i}"))))
        .collect::<Result<_>>()?;
    let merged = sketch::top_n()
        .call(vec![replace::state_column(answer, t.measure)])
        .alias("__topn");
    let builder = builder
        .aggregate(group, vec![merged])?
        .unnest_column(Column::from_name("__topn"))?;
    let counter = Expr::Column(Column::from_name("__topn"));
    let mut out = Vec::new();
    let mut dim = 0;
    for (i, (qualifier, field)) in agg.schema.iter().enumerate() {
        let e = if i == t.by {
            get_field(counter.clone(), "by")
        } else if i < agg.group_expr.len() {
            dim += 1;
            Expr::Column(Column::from_name(format!("__g{}", dim - 1)))
        } else {
            get_field(counter.clone(), "value")
        };
        out.push(
            cast(e, field.data_type().clone()).alias_qualified(qualifier.cloned(), field.name()),
        );
    }
    let plan = builder.project(out)?.build()?;
    let m = &answer.real.layout.measures[t.measure];
    let by = m
        .extra
        .as_ref()
        .map(|c| format!("{}.{}", c.table, c.column))
        .unwrap_or_default();
    let what = format!(
        "top_n measure {} (TOP_N {} by {by}, {} counters per state)",
        m.name,
        t.n,
        capacity_of(t.n)
    );
    Ok((
        plan,
        replace::realized(answer, table, derived_tables, Vec::new(), Some(what)),
    ))
}

/// `plan` (Limit → Sort → [Projection] → Aggregate) with the aggregate replaced by `new`.
fn replace_aggregate(plan: LogicalPlan, new: LogicalPlan) -> Result<LogicalPlan> {
    Ok(match plan {
        LogicalPlan::Aggregate(_) => new,
        p => {
            let input = p.inputs()[0].clone();
            let input = replace_aggregate(input, new)?;
            p.with_new_exprs(p.expressions(), vec![input])?
        }
    })
}
