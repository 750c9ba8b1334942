//! Steps 2–6 of the rewrite, one function each, for one aggregate against one cube: which of
//! the model's tables it reads, whether its joins are the model's, where each group-by and
//! filter column is stored, which measure state answers each aggregate, and the cheapest
//! cuboid holding them all. Each step returns the typed reason it fails for.

use std::collections::{BTreeSet, HashMap};

use datafusion::common::tree_node::TreeNode;
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::expr::{AggregateFunction, AggregateFunctionParams, Case};
use datafusion::logical_expr::{Aggregate, BinaryExpr, Expr, Operator};

use super::flatten::{Flat, ScanInfo};
use crate::model::{cuboid, CubeLayout, CuboidId, JoinKind, MeasureFunction, StateKind};
use crate::query::canonical::canonical;
use crate::query::catalog::{Realization, Snapshot};
use crate::uncovered::Uncovered;

/// Where a model column is found in a cuboid.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Target {
    /// Rowkey column `i`.
    Rowkey(usize),
    /// Derived dimension `d` of the layout: column of its lookup table.
    Derived(usize, String),
    /// A group key answered by EXTENDED_COLUMN measure `measure`, whose id (rowkey column
    /// `id`) is grouped too: the state is one value per id, so MAX of it is that value.
    Extended { measure: usize, id: usize },
}

/// How one aggregate of the query is computed from measure states.
#[derive(Debug, Clone)]
pub(super) enum AggPlan {
    /// SUM / MIN / MAX of a state column of the same function.
    Sum(usize),
    Min(usize),
    Max(usize),
    /// COUNT(*) or COUNT(col): SUM of the count state, 0 when there are no rows.
    Count(usize),
    /// SUM(k) of an integer constant: k times the row count (NULL over no rows, as SUM is).
    CountTimes {
        count: usize,
        factor: i64,
    },
    /// AVG = SUM of sums / SUM of counts.
    Avg {
        sum: usize,
        count: usize,
    },
    /// COUNT(DISTINCT): merge of the sketches.
    Distinct(usize),
    /// A percentile: the value at quantile `q` of the merged t-digests of PERCENTILE measure
    /// `state` (`approx_percentile_cont`, `percentile_approx`, `approx_median`,
    /// `percentile_cont`; always the t-digest estimate).
    Percentile {
        state: usize,
        q: f64,
    },
    /// MIN/MAX of a dimension column.
    DimMin(Target),
    DimMax(Target),
    /// SUM or COUNT of a CASE whose conditions read only dimensions: constant within a cuboid
    /// row, so each cuboid row takes one branch for all its fact rows, and the aggregate is
    /// the SUM over cuboid rows of the CASE over the branches' states.
    Case {
        /// (condition over the tables' columns, branch) in order.
        arms: Vec<(Expr, Branch)>,
        otherwise: Branch,
        /// COUNT: 0, never NULL, over no rows.
        count: bool,
    },
}

/// A CASE branch over one cuboid row's fact rows.
#[derive(Debug, Clone)]
pub(super) enum Branch {
    /// A SUM or COUNT state column.
    State(usize),
    /// An integer constant per fact row: the count state times it.
    Times { count: usize, factor: i64 },
    /// Nothing: NULL (SUM skips it, COUNT does not count it).
    Null,
    /// The constant 0 (SUM of zeros).
    Zero,
}

/// Model (table, column), lower-case → where it is stored.
pub(super) type Targets = HashMap<(String, String), Target>;

/// A decision to answer one aggregate from one cuboid.
#[derive(Debug)]
pub(super) struct Answer<'a> {
    pub real: &'a Realization,
    pub project: String,
    pub cuboid: CuboidId,
    pub cuboid_rows: u64,
    /// The exact dimension set the query needs (it may be answered from a larger cuboid):
    /// what the cube planner records as "wanted".
    pub required: CuboidId,
    pub scans: Vec<ScanInfo>,
    /// The model alias of each scan.
    pub aliases: Vec<String>,
    pub targets: Targets,
    pub residual: Vec<Expr>,
    /// The aggregate's group keys over the tables' columns (see [`Flat::inline`]).
    pub group: Vec<Expr>,
    pub aggs: Vec<AggPlan>,
    pub derived: BTreeSet<usize>,
}

pub(super) fn key(t: &str, c: &str) -> (String, String) {
    (t.to_ascii_lowercase(), c.to_ascii_lowercase())
}

/// An aggregate's group keys and aggregates over the tables' columns.
struct Inlined {
    group: Vec<Expr>,
    aggr: Vec<Expr>,
}

/// Tries every cube of the project and keeps the one whose covering cuboid has fewest rows.
/// `Ok(None)`: the aggregate reads no table.
pub(super) fn match_aggregate<'a>(
    agg: &Aggregate,
    snap: &'a Snapshot,
) -> Result<Option<Answer<'a>>, Uncovered> {
    let flat = Flat::of(&agg.input, snap)?;
    if flat.scans.is_empty() {
        return Ok(None);
    }
    if agg
        .group_expr
        .iter()
        .any(|e| matches!(e, Expr::GroupingSet(_)))
    {
        return Err(Uncovered::Shape(
            "GROUPING SETS, ROLLUP and CUBE are not answered from cubes".into(),
        ));
    }
    let schema = agg.input.schema();
    let inline_all = |es: &[Expr]| -> Result<Vec<Expr>, Uncovered> {
        es.iter().map(|e| flat.inline(e, schema)).collect()
    };
    let query = Inlined {
        group: inline_all(&agg.group_expr)?,
        aggr: inline_all(&agg.aggr_expr)?,
    };
    let project_name = flat.scans[0].project.clone();
    if let Some(other) = flat.scans.iter().find(|s| s.project != project_name) {
        return Err(Uncovered::Table(format!(
            "the query reads tables of projects {project_name} and {}",
            other.project
        )));
    }
    let project = snap
        .project(&project_name)
        .ok_or_else(|| Uncovered::Table(format!("project {project_name} does not exist")))?;
    if project.realizations.is_empty() {
        return Err(Uncovered::NoCube {
            project: project_name,
        });
    }
    let mut best: Option<Answer> = None;
    let mut reasons = Vec::new();
    for real in &project.realizations {
        // Columns of a lookup table that is joined for derived dimensions anyway can also
        // come from that table, which lets a smaller cuboid (without them) answer.
        let mut attempt = cover(&query, &flat, real, &project_name, false);
        if !real.layout.derived.is_empty() {
            if let Ok(b) = cover(&query, &flat, real, &project_name, true) {
                if attempt
                    .as_ref()
                    .map_or(true, |a| b.cuboid_rows < a.cuboid_rows)
                {
                    attempt = Ok(b);
                }
            }
        }
        match attempt {
            Ok(a) => {
                if best.as_ref().is_none_or(|b| a.cuboid_rows < b.cuboid_rows) {
                    best = Some(a);
                }
            }
            Err(r) => reasons.push(r),
        }
    }
    best.map(Some).ok_or_else(|| Uncovered::each(reasons))
}

/// Answers `agg` from cube `real`, step by step.
fn cover<'a>(
    query: &Inlined,
    flat: &Flat,
    real: &'a Realization,
    project: &str,
    prefer_lookups: bool,
) -> Result<Answer<'a>, Uncovered> {
    let (bound, residual) = match_joins(flat, &real.layout)?;
    let extended = extended_keys(&bound, &query.group, real);
    let mut targets = cover_dimensions(
        &bound,
        residual.iter().chain(
            query
                .group
                .iter()
                .filter(|g| !extended.iter().any(|(e, _)| *e == *g)),
        ),
        real,
        prefer_lookups,
    )?;
    for (e, target) in extended {
        let Expr::Column(c) = e else { continue };
        let Some((t, col)) = bound.model_column(c) else {
            continue;
        };
        // A filter reading the column already decided where it comes from.
        targets.entry(key(&t, &col)).or_insert(target);
    }
    let aggs = cover_measures(&query.aggr, &bound, real, prefer_lookups, &mut targets)?;
    let CuboidChoice {
        cuboid,
        rows: cuboid_rows,
        derived,
        required,
    } = choose_cuboid(real, &targets)?;
    Ok(Answer {
        real,
        project: project.to_string(),
        cuboid,
        cuboid_rows,
        required,
        scans: flat.scans.clone(),
        aliases: bound.aliases,
        targets,
        residual,
        group: query.group.clone(),
        aggs,
        derived,
    })
}

/// The query's tables bound to the model: the model alias each scan plays.
#[derive(Debug)]
pub(super) struct Bound<'f> {
    pub flat: &'f Flat,
    pub aliases: Vec<String>,
}

impl Bound<'_> {
    /// A column's model (alias, column).
    pub fn model_column(&self, c: &Column) -> Option<(String, String)> {
        self.flat
            .scan_index(c)
            .map(|i| (self.aliases[i].clone(), c.name.clone()))
    }
}

/// A column as (scan index, lower-case name).
type ScanColumn = (usize, String);

/// Steps 2 and 3: binds every table the query reads to the model: the fact table once, and
/// each lookup through its parent on exactly the model's keys (`parent.fk = lookup.pk`), with
/// the model's join kind. Walks the model's joins parents first, so snowflakes and one table
/// under two aliases bind by the join path, whatever the query calls them. Returns the
/// binding and the predicates that are not join keys (the residual filters).
pub(super) fn match_joins<'f>(
    flat: &'f Flat,
    layout: &CubeLayout,
) -> Result<(Bound<'f>, Vec<Expr>), Uncovered> {
    let model = &layout.model;
    let fact = &model.fact_table;
    let mut aliases: Vec<Option<String>> = vec![None; flat.scans.len()];
    let mut fact_scans = flat
        .scans
        .iter()
        .enumerate()
        .filter(|(_, s)| s.table.name.eq_ignore_ascii_case(fact));
    let Some((fact_scan, _)) = fact_scans.next() else {
        return Err(Uncovered::Table(format!(
            "the query does not read fact table {fact} of model {}",
            model.name
        )));
    };
    if fact_scans.next().is_some() {
        return Err(Uncovered::Table(format!("table {fact} is read twice")));
    }
    aliases[fact_scan] = Some(fact.clone());
    let mut used = vec![false; flat.predicates.len()];
    // `a = b` between columns of scans `x` and `y`, as (predicate, x.a, y.b) both ways.
    let column_of = |e: &Expr| match e {
        Expr::Column(c) => flat.scan_index(c).map(|i| (i, c.name.to_ascii_lowercase())),
        _ => None,
    };
    let equalities: Vec<(usize, ScanColumn, ScanColumn)> = flat
        .predicates
        .iter()
        .enumerate()
        .filter_map(|(p, e)| match e {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) => Some((p, column_of(left)?, column_of(right)?)),
            _ => None,
        })
        .flat_map(|(p, a, b)| [(p, a.clone(), b.clone()), (p, b, a)])
        .collect();
    for j in &layout.joins {
        let Some(parent) = aliases.iter().position(|a| {
            a.as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case(&j.parent))
        }) else {
            continue;
        };
        let keys_of = |s: usize| -> Option<Vec<usize>> {
            j.foreign_key
                .iter()
                .zip(&j.primary_key)
                .map(|(fk, pk)| {
                    equalities
                        .iter()
                        .find(|(_, a, b)| {
                            a.0 == parent
                                && a.1.eq_ignore_ascii_case(&fk.column)
                                && b.0 == s
                                && b.1.eq_ignore_ascii_case(&pk.column)
                        })
                        .map(|(p, _, _)| *p)
                })
                .collect()
        };
        let found = (0..flat.scans.len()).find_map(|s| {
            (aliases[s].is_none() && flat.scans[s].table.name.eq_ignore_ascii_case(&j.table))
                .then(|| keys_of(s).map(|k| (s, k)))
                .flatten()
        });
        let Some((scan, keys)) = found else { continue };
        if flat.scans[scan].join != j.kind {
            let kind = |k: JoinKind| match k {
                JoinKind::Inner => "an INNER",
                JoinKind::Left => "a LEFT",
            };
            return Err(Uncovered::Join(format!(
                "model {} joins {} ({}) with {} join; the query uses {} join",
                model.name,
                j.alias,
                j.table,
                kind(j.kind),
                kind(flat.scans[scan].join)
            )));
        }
        for p in keys {
            used[p] = true;
        }
        aliases[scan] = Some(j.alias.clone());
    }
    if let Some(s) = aliases.iter().position(Option::is_none) {
        let name = &flat.scans[s].table.name;
        let ways: Vec<String> = layout
            .joins
            .iter()
            .filter(|j| j.table.eq_ignore_ascii_case(name))
            .map(|j| {
                let keys: Vec<String> = j
                    .foreign_key
                    .iter()
                    .zip(&j.primary_key)
                    .map(|(f, p)| format!("{}.{} = {}", f.table, f.column, p.column))
                    .collect();
                keys.join(" AND ")
            })
            .collect();
        return Err(if name.eq_ignore_ascii_case(fact) {
            Uncovered::Table(format!("table {name} is read twice"))
        } else if ways.is_empty() {
            Uncovered::Table(format!("table {name} is not in model {}", model.name))
        } else {
            Uncovered::Join(format!(
                "table {name} must be joined on {} as in model {} (through its parent tables)",
                ways.join(", or on "),
                model.name
            ))
        });
    }
    if flat.left_on.iter().any(|&p| !used[p]) {
        return Err(Uncovered::Join(format!(
            "a LEFT JOIN's ON must be exactly the keys of a join of model {}",
            model.name
        )));
    }
    let residual = flat
        .predicates
        .iter()
        .zip(&used)
        .filter(|(_, &u)| !u)
        .map(|(p, _)| p.clone())
        .collect();
    let aliases = aliases.into_iter().map(|a| a.expect("all bound")).collect();
    Ok((Bound { flat, aliases }, residual))
}

/// Where one column is stored, recorded in `targets`.
fn need(
    flat: &Bound,
    c: &Column,
    real: &Realization,
    prefer_lookups: bool,
    targets: &mut Targets,
) -> Result<Target, Uncovered> {
    let (t, col) = flat.model_column(c).ok_or_else(|| Uncovered::Column {
        column: c.to_string(),
        cube: None,
    })?;
    let target = target_of(real, &t, &col, prefer_lookups).ok_or_else(|| Uncovered::Column {
        column: format!("{t}.{col}"),
        cube: Some(real.layout.cube.name.clone()),
    })?;
    targets.insert(key(&t, &col), target.clone());
    Ok(target)
}

/// Group keys that are the `extended` column of an EXTENDED_COLUMN measure (and not a stored
/// dimension) while the measure's id is grouped too: those are answered from the measure's
/// state, without joining the lookup table. Without the id grouped, the column is no
/// dimension and the usual rules apply.
fn extended_keys<'e>(
    flat: &Bound,
    group: &'e [Expr],
    real: &Realization,
) -> Vec<(&'e Expr, Target)> {
    let layout = &real.layout;
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let grouped_rowkeys: Vec<usize> = group
        .iter()
        .filter_map(|g| match g {
            Expr::Column(c) => {
                let (t, col) = flat.model_column(c)?;
                match target_of(real, &t, &col, false)? {
                    Target::Rowkey(i) => Some(i),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for g in group {
        let Expr::Column(c) = g else { continue };
        let Some((t, col)) = flat.model_column(c) else {
            continue;
        };
        if matches!(target_of(real, &t, &col, false), Some(Target::Rowkey(_))) {
            continue;
        }
        let found = layout.measures.iter().enumerate().find_map(|(m, rm)| {
            if rm.function != MeasureFunction::ExtendedColumn {
                return None;
            }
            let carried = rm.input.as_ref()?;
            if !(eq(&carried.table, &t) && eq(&carried.column, &col)) {
                return None;
            }
            let id_col = rm.extra.as_ref()?;
            let id = layout.rowkey.iter().position(|r| {
                eq(&r.source.table, &id_col.table) && eq(&r.source.column, &id_col.column)
            })?;
            grouped_rowkeys
                .contains(&id)
                .then_some(Target::Extended { measure: m, id })
        });
        if let Some(target) = found {
            out.push((g, target));
        }
    }
    out
}

/// Step 4: every column of the filters and group keys must be a dimension.
pub(super) fn cover_dimensions<'e>(
    flat: &Bound,
    exprs: impl Iterator<Item = &'e Expr>,
    real: &Realization,
    prefer_lookups: bool,
) -> Result<Targets, Uncovered> {
    let mut targets = Targets::new();
    for e in exprs {
        for c in e.column_refs() {
            need(flat, c, real, prefer_lookups, &mut targets)?;
        }
    }
    Ok(targets)
}

/// Step 5: every aggregate onto a measure state (MIN/MAX of a dimension onto the dimension,
/// recorded in `targets`).
fn cover_measures(
    aggr_expr: &[Expr],
    flat: &Bound,
    real: &Realization,
    prefer_lookups: bool,
    targets: &mut Targets,
) -> Result<Vec<AggPlan>, Uncovered> {
    let layout = &real.layout;
    let cube = &layout.cube.name;
    let canon = |e: &Expr| canonical(e, &|c| flat.model_column(c));
    let find = |f: MeasureFunction, input: &Option<String>, state: Option<StateKind>| {
        layout.measures.iter().enumerate().position(|(i, m)| {
            m.function == f
                && &real.measure_inputs[i] == input
                && state.is_none_or(|s| s == m.state)
        })
    };
    let count_rows = find(MeasureFunction::Count, &None, None);
    let mut aggs = Vec::new();
    for e in aggr_expr {
        let refused = |detail: String| Uncovered::Measure {
            expr: e.to_string(),
            detail,
        };
        let inner = match e {
            Expr::Alias(a) => a.expr.as_ref(),
            e => e,
        };
        let Expr::AggregateFunction(AggregateFunction { func, params }) = inner else {
            return Err(refused("not an aggregate function".into()));
        };
        let name = func.name().to_ascii_lowercase();
        if PERCENTILE_FUNCTIONS.contains(&name.as_str()) {
            aggs.push(cover_percentile(&name, params, flat, real).map_err(&refused)?);
            continue;
        }
        if params.filter.is_some() || !params.order_by.is_empty() {
            return Err(refused(
                "FILTER and ORDER BY in aggregates are not answered from cubes".into(),
            ));
        }
        let arg = params.args.first();
        let arg_canon = arg.and_then(&canon);
        let missing = |what: &str| {
            refused(format!(
                "cube {cube} has no {what} measure on {}",
                arg_canon
                    .clone()
                    .unwrap_or_else(|| arg.map(|a| a.to_string()).unwrap_or_default())
            ))
        };
        let no_row_count = |why: &str| refused(format!("cube {cube} has no COUNT(*) measure{why}"));
        let is_row_count =
            matches!(arg, Some(Expr::Literal(v, _)) if !v.is_null()) || arg.is_none();
        if let (Some(Expr::Case(case)), false, "sum" | "count") =
            (arg, params.distinct, name.as_str())
        {
            aggs.push(
                cover_case(
                    case,
                    name == "count",
                    flat,
                    real,
                    prefer_lookups,
                    targets,
                    count_rows,
                )
                .map_err(&refused)?,
            );
            continue;
        }
        let plan = match (name.as_str(), params.distinct) {
            ("count", true) => {
                let m = find(
                    MeasureFunction::CountDistinct,
                    &arg_canon,
                    Some(StateKind::Bitmap),
                )
                .or_else(|| find(MeasureFunction::CountDistinct, &arg_canon, None))
                .ok_or_else(|| missing("COUNT_DISTINCT"))?;
                AggPlan::Distinct(m)
            }
            ("count", false) if is_row_count => {
                AggPlan::Count(count_rows.ok_or_else(|| no_row_count(""))?)
            }
            ("count", false) => AggPlan::Count(
                find(MeasureFunction::Count, &arg_canon, None).ok_or_else(|| missing("COUNT"))?,
            ),
            // Tableau's "Number of Records" is `SUM(1)`: the row count times the constant.
            ("sum", false) if integer_literal(arg).is_some() => AggPlan::CountTimes {
                count: count_rows.ok_or_else(|| no_row_count(" (for SUM of a constant)"))?,
                factor: integer_literal(arg).unwrap_or(1),
            },
            ("sum", false) => AggPlan::Sum(
                find(MeasureFunction::Sum, &arg_canon, None).ok_or_else(|| missing("SUM"))?,
            ),
            ("avg", false) => {
                let s = find(MeasureFunction::Sum, &arg_canon, None)
                    .ok_or_else(|| missing("SUM (for AVG)"))?;
                let c = count_rows.ok_or_else(|| no_row_count(" (for AVG)"))?;
                AggPlan::Avg { sum: s, count: c }
            }
            (f @ ("min" | "max"), false) => {
                let is_min = f == "min";
                let func = if is_min {
                    MeasureFunction::Min
                } else {
                    MeasureFunction::Max
                };
                match find(func, &arg_canon, None) {
                    Some(m) if is_min => AggPlan::Min(m),
                    Some(m) => AggPlan::Max(m),
                    None => {
                        // MIN/MAX of a dimension needs no measure.
                        let what = f.to_ascii_uppercase();
                        let Some(Expr::Column(c)) = arg else {
                            return Err(missing(&what));
                        };
                        let t = need(flat, c, real, prefer_lookups, targets)
                            .map_err(|_| missing(&what))?;
                        if is_min {
                            AggPlan::DimMin(t)
                        } else {
                            AggPlan::DimMax(t)
                        }
                    }
                }
            }
            _ => {
                return Err(refused(format!(
                    "aggregate function {name}{} is not answered from cubes",
                    if params.distinct { " DISTINCT" } else { "" }
                )))
            }
        };
        aggs.push(plan);
    }
    Ok(aggs)
}

/// The aggregate functions a PERCENTILE measure answers (by DataFusion's names:
/// `percentile_approx` and `quantile_cont` are aliases).
const PERCENTILE_FUNCTIONS: [&str; 3] =
    ["approx_percentile_cont", "approx_median", "percentile_cont"];

/// A percentile aggregate onto [`AggPlan::Percentile`], or why not. The planner gives
/// `f(p) WITHIN GROUP (ORDER BY x)` as `f(x, p)` ordered by `x`; a descending order asks
/// for quantile `1 - p`. `approx_percentile_cont`'s third argument (centroids) is ignored:
/// the measure's compression decides the accuracy.
fn cover_percentile(
    name: &str,
    params: &AggregateFunctionParams,
    flat: &Bound,
    real: &Realization,
) -> Result<AggPlan, String> {
    let layout = &real.layout;
    let cube = &layout.cube.name;
    let canon = |e: &Expr| canonical(e, &|c| flat.model_column(c));
    if params.filter.is_some() || params.distinct {
        return Err(format!(
            "{name} with FILTER or DISTINCT is not answered from cubes"
        ));
    }
    let x = params
        .args
        .first()
        .ok_or_else(|| format!("{name} without an argument"))?;
    let mut q = if name == "approx_median" {
        0.5
    } else {
        let p = params
            .args
            .get(1)
            .ok_or_else(|| format!("{name} needs a percentile"))?;
        let q = float_literal(p).ok_or_else(|| {
            format!("the percentile of {name} must be a numeric literal, not {p}")
        })?;
        if !(0.0..=1.0).contains(&q) {
            return Err(format!(
                "the percentile of {name} must be between 0 and 1, {q} is not"
            ));
        }
        q
    };
    let x_canon = canon(x);
    match params.order_by.as_slice() {
        [] => {}
        [sort] if canon(&sort.expr) == x_canon => {
            if !sort.asc {
                q = 1.0 - q;
            }
        }
        _ => {
            return Err(format!(
                "{name} ordered by another expression than its value"
            ))
        }
    }
    let m = (0..layout.measures.len())
        .find(|&i| {
            matches!(layout.measures[i].state, StateKind::Percentile(_))
                && real.measure_inputs[i] == x_canon
        })
        .ok_or_else(|| {
            format!(
                "cube {cube} has no PERCENTILE measure on {}",
                x_canon.clone().unwrap_or_else(|| x.to_string())
            )
        })?;
    Ok(AggPlan::Percentile { state: m, q })
}

/// The value of a non-null numeric literal as a float (casts and negation aside).
fn float_literal(e: &Expr) -> Option<f64> {
    match e {
        Expr::Literal(v, _) if !v.is_null() && v.data_type().is_numeric() => {
            match v
                .cast_to(&datafusion::arrow::datatypes::DataType::Float64)
                .ok()?
            {
                ScalarValue::Float64(f) => f,
                _ => None,
            }
        }
        Expr::Cast(c) => float_literal(&c.expr),
        Expr::TryCast(c) => float_literal(&c.expr),
        Expr::Negative(inner) => float_literal(inner).map(|f| -f),
        _ => None,
    }
}

/// SUM(CASE ...) or COUNT(CASE ...) onto [`AggPlan::Case`], or why not.
fn cover_case(
    case: &Case,
    count: bool,
    flat: &Bound,
    real: &Realization,
    prefer_lookups: bool,
    targets: &mut Targets,
    count_rows: Option<usize>,
) -> Result<AggPlan, String> {
    let layout = &real.layout;
    let cube = &layout.cube.name;
    let canon = |e: &Expr| canonical(e, &|c| flat.model_column(c));
    let find = |f: MeasureFunction, input: &Option<String>| {
        (0..layout.measures.len())
            .find(|&i| layout.measures[i].function == f && &real.measure_inputs[i] == input)
    };
    let no_row_count = || format!("cube {cube} has no COUNT(*) measure (for a CASE branch)");
    let branch = |e: Option<&Expr>| -> Result<Branch, String> {
        let Some(e) = e else { return Ok(Branch::Null) };
        if matches!(e, Expr::Literal(v, _) if v.is_null()) {
            return Ok(Branch::Null);
        }
        if count {
            // COUNT counts the fact rows whose branch is not NULL.
            if matches!(e, Expr::Literal(..)) {
                return count_rows.map(Branch::State).ok_or_else(no_row_count);
            }
            return find(MeasureFunction::Count, &canon(e))
                .map(Branch::State)
                .ok_or_else(|| format!("cube {cube} has no COUNT measure on {e} (a CASE branch)"));
        }
        match integer_literal(Some(e)) {
            Some(0) => Ok(Branch::Zero),
            Some(factor) => Ok(Branch::Times {
                count: count_rows.ok_or_else(no_row_count)?,
                factor,
            }),
            None => find(MeasureFunction::Sum, &canon(e))
                .map(Branch::State)
                .ok_or_else(|| format!("cube {cube} has no SUM measure on {e} (a CASE branch)")),
        }
    };
    let mut arms = Vec::new();
    for (when, then) in &case.when_then_expr {
        // `CASE x WHEN v THEN ...` tests `x = v`.
        let condition = match &case.expr {
            Some(x) => x.as_ref().clone().eq(when.as_ref().clone()),
            None => when.as_ref().clone(),
        };
        for c in condition.column_refs() {
            need(flat, c, real, prefer_lookups, targets).map_err(|_| {
                format!(
                    "the CASE condition {condition} reads {c}, which is not a dimension of cube \
                     {cube} (a cuboid row would mix fact rows on both sides of it)"
                )
            })?;
        }
        if condition.is_volatile() || condition.exists(|x| Ok(is_subquery(x))).unwrap_or(true) {
            return Err(format!(
                "the CASE condition {condition} is not answered from cubes"
            ));
        }
        arms.push((condition, branch(Some(then))?));
    }
    let otherwise = branch(case.else_expr.as_deref())?;
    Ok(AggPlan::Case {
        arms,
        otherwise,
        count,
    })
}

fn is_subquery(e: &Expr) -> bool {
    matches!(
        e,
        Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) | Expr::SetComparison(_)
    )
}

/// The value of a non-null integer literal (casts aside).
fn integer_literal(e: Option<&Expr>) -> Option<i64> {
    match e? {
        Expr::Literal(v, _) if v.data_type().is_integer() => v.to_string().parse().ok(),
        Expr::Cast(c) => integer_literal(Some(&c.expr)),
        Expr::TryCast(c) => integer_literal(Some(&c.expr)),
        _ => None,
    }
}

/// The cuboid a query reads, and what it needed.
#[derive(Debug, Clone)]
pub(super) struct CuboidChoice {
    pub cuboid: CuboidId,
    /// Rows of `cuboid` over all READY segments.
    pub rows: u64,
    /// Derived dimensions answered through a lookup join.
    pub derived: BTreeSet<usize>,
    /// The exact dimension set the query needs (a subset of `cuboid`).
    pub required: CuboidId,
}

/// Step 6: the stored cuboid cheapest to read ([`read_cost`]; ties to fewer rows, then fewer
/// dimensions) holding every needed rowkey column (derived columns need their foreign keys),
/// present in every READY segment.
pub(super) fn choose_cuboid(
    real: &Realization,
    targets: &Targets,
) -> Result<CuboidChoice, Uncovered> {
    let layout = &real.layout;
    let cube = &layout.cube.name;
    let n = layout.rowkey.len();
    let mut required: CuboidId = 0;
    let mut derived = BTreeSet::new();
    for t in targets.values() {
        match t {
            Target::Rowkey(i) | Target::Extended { id: i, .. } => required |= cuboid::bit(n, *i),
            Target::Derived(d, _) => {
                derived.insert(*d);
                for fk in &layout.derived[*d].foreign_key {
                    let i = layout
                        .rowkey
                        .iter()
                        .position(|r| r.name == *fk)
                        .ok_or_else(|| Uncovered::Segments {
                            cube: cube.clone(),
                            detail: format!("foreign key {fk} is not stored"),
                        })?;
                    required |= cuboid::bit(n, i);
                }
            }
        }
    }
    if real.segments.is_empty() {
        return Err(Uncovered::Segments {
            cube: cube.clone(),
            detail: "no READY segment".into(),
        });
    }
    // Per cuboid: rows and segments holding it (it must be in all of them).
    let mut stats_of: HashMap<CuboidId, (u64, usize)> = HashMap::new();
    for s in &real.segments {
        for c in &s.cuboids {
            let e = stats_of.entry(c.id).or_default();
            e.0 += c.rows;
            e.1 += 1;
        }
    }
    let (cuboid, rows) = stats_of
        .iter()
        .filter(|(&c, &(_, segs))| segs == real.segments.len() && c & required == required)
        .map(|(&c, &(rows, _))| (c, rows, read_cost(layout.measures.len(), required, rows)))
        .min_by_key(|&(c, rows, cost)| (cost, rows, c.count_ones(), c))
        .map(|(c, rows, _)| (c, rows))
        .ok_or_else(|| Uncovered::Cuboid {
            cube: cube.clone(),
            dimensions: (0..n)
                .filter(|&i| required & cuboid::bit(n, i) != 0)
                .map(|i| layout.rowkey[i].name.clone())
                .collect(),
        })?;
    Ok(CuboidChoice {
        cuboid,
        rows,
        derived,
        required,
    })
}

/// The estimated cost of answering from a cuboid of `rows` rows a query needing the
/// dimensions `required` and (at most) `measures` measure columns: the values it decodes and
/// aggregates, rows × columns read. A scan decodes only the columns it reads, so a cuboid's
/// other columns cost nothing, however wide. Its stored bytes are no better guide: they are
/// mostly sketch states (TOP_N, percentiles, bitmaps, HLL) most queries never read, and
/// counting them chose the 6 M-row base cuboid over a 3.9 M-row one for SSB Q4.3 (36 ms
/// against 1–3 ms at SF 1).
pub(super) fn read_cost(measures: usize, required: CuboidId, rows: u64) -> u128 {
    u128::from(rows) * (u128::from(required.count_ones()) + measures as u128)
}

/// Where `table.column` is stored in `real`'s cuboids, if anywhere.
fn target_of(
    real: &Realization,
    table: &str,
    column: &str,
    prefer_lookups: bool,
) -> Option<Target> {
    let layout = &real.layout;
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    if prefer_lookups {
        if let Some(d) = layout.derived.iter().position(|d| eq(&d.table, table)) {
            let stored = layout
                .rowkey
                .iter()
                .find(|r| eq(&r.source.table, table) && eq(&r.source.column, column));
            if let Some(r) = stored {
                return Some(Target::Derived(d, r.source.column.clone()));
            }
        }
    }
    if let Some(i) = layout
        .rowkey
        .iter()
        .position(|r| eq(&r.source.table, table) && eq(&r.source.column, column))
    {
        return Some(Target::Rowkey(i));
    }
    if let Some(d) = layout
        .derived
        .iter()
        .position(|d| eq(&d.table, table) && d.columns.iter().any(|c| eq(&c.column, column)))
    {
        let c = layout.derived[d]
            .columns
            .iter()
            .find(|c| eq(&c.column, column))?;
        return Some(Target::Derived(d, c.column.clone()));
    }
    // An inner-joined lookup's primary key equals the stored foreign key.
    let j = layout.joins.iter().find(|j| eq(&j.alias, table))?;
    if j.kind == JoinKind::Inner && j.primary_key.len() == 1 && eq(&j.primary_key[0].column, column)
    {
        let fk = &j.foreign_key[0];
        return layout
            .rowkey
            .iter()
            .position(|r| eq(&r.source.table, &fk.table) && eq(&r.source.column, &fk.column))
            .map(Target::Rowkey);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::read_cost;

    #[test]
    fn read_cost_counts_rows_times_the_columns_read() {
        // Two dimensions and 10 measures read: 12 columns a row.
        assert_eq!(read_cost(10, 0b101, 1_000), 12_000);
        // The same query ranks cuboids by rows: columns it does not read cost nothing.
        assert!(read_cost(10, 0b101, 3_900_000) < read_cost(10, 0b101, 6_000_000));
        // A query needing more dimensions reads more values from the same rows.
        assert!(read_cost(10, 0b001, 1_000) < read_cost(10, 0b111, 1_000));
    }
}
