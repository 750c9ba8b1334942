//! Steps 2–6 of the rewrite, one function each, for one aggregate against one cube: which of
//! the model's tables it reads, whether its joins are the model's, where each group-by and
//! filter column is stored, which measure state answers each aggregate, and the cheapest
//! cuboid holding them all. Each step returns the typed reason it fails for.

use std::collections::{BTreeSet, HashMap};

use datafusion::common::Column;
use datafusion::logical_expr::expr::AggregateFunction;
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
    /// AVG = SUM of sums / SUM of counts.
    Avg {
        sum: usize,
        count: usize,
    },
    /// COUNT(DISTINCT): merge of the sketches.
    Distinct(usize),
    /// MIN/MAX of a dimension column.
    DimMin(Target),
    DimMax(Target),
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
    pub scans: Vec<ScanInfo>,
    pub targets: Targets,
    pub residual: Vec<Expr>,
    pub aggs: Vec<AggPlan>,
    pub derived: BTreeSet<usize>,
}

pub(super) fn key(t: &str, c: &str) -> (String, String) {
    (t.to_ascii_lowercase(), c.to_ascii_lowercase())
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
        let mut attempt = cover(agg, &flat, real, &project_name, false);
        if !real.layout.derived.is_empty() {
            if let Ok(b) = cover(agg, &flat, real, &project_name, true) {
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
    agg: &Aggregate,
    flat: &Flat,
    real: &'a Realization,
    project: &str,
    prefer_lookups: bool,
) -> Result<Answer<'a>, Uncovered> {
    let lookups = match_tables(flat, &real.layout)?;
    let residual = match_joins(flat, &lookups, &real.layout)?;
    let mut targets = cover_dimensions(
        flat,
        residual.iter().chain(agg.group_expr.iter()),
        real,
        prefer_lookups,
    )?;
    let aggs = cover_measures(agg, flat, real, prefer_lookups, &mut targets)?;
    let (cuboid, cuboid_rows, derived) = choose_cuboid(real, &targets)?;
    Ok(Answer {
        real,
        project: project.to_string(),
        cuboid,
        cuboid_rows,
        scans: flat.scans.clone(),
        targets,
        residual,
        aggs,
        derived,
    })
}

/// Step 2: the fact table once, lookups of the model at most once each. Returns (scan,
/// lookup index in the model) per lookup read.
fn match_tables(flat: &Flat, layout: &CubeLayout) -> Result<Vec<(usize, usize)>, Uncovered> {
    let model = &layout.model;
    let fact = &model.fact_table;
    let mut fact_read = false;
    let mut lookups: Vec<(usize, usize)> = Vec::new();
    for (i, s) in flat.scans.iter().enumerate() {
        let name = &s.table.name;
        let twice = || Uncovered::Table(format!("table {name} is read twice"));
        if name.eq_ignore_ascii_case(fact) {
            if std::mem::replace(&mut fact_read, true) {
                return Err(twice());
            }
        } else if let Some(l) = model
            .lookups
            .iter()
            .position(|l| l.table.eq_ignore_ascii_case(name))
        {
            if lookups.iter().any(|&(_, x)| x == l) {
                return Err(twice());
            }
            lookups.push((i, l));
        } else {
            return Err(Uncovered::Table(format!(
                "table {name} is not in model {}",
                model.name
            )));
        }
    }
    if !fact_read {
        return Err(Uncovered::Table(format!(
            "the query does not read fact table {fact} of model {}",
            model.name
        )));
    }
    Ok(lookups)
}

/// Step 3: each lookup must be joined on exactly the model's FK = PK, with the model's join
/// kind. Returns the predicates that are not join keys (the residual filters).
fn match_joins(
    flat: &Flat,
    lookups: &[(usize, usize)],
    layout: &CubeLayout,
) -> Result<Vec<Expr>, Uncovered> {
    let model = &layout.model;
    let fact = &model.fact_table;
    let mut satisfied: Vec<Vec<bool>> = lookups
        .iter()
        .map(|&(_, l)| vec![false; model.lookups[l].foreign_key.len()])
        .collect();
    let mut residual = Vec::new();
    for p in &flat.predicates {
        let mut used = false;
        if let Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) = p
        {
            if let (Expr::Column(a), Expr::Column(b)) = (left.as_ref(), right.as_ref()) {
                if let (Some(a), Some(b)) = (flat.model_column(a), flat.model_column(b)) {
                    for (li, &(_, l)) in lookups.iter().enumerate() {
                        let lk = &model.lookups[l];
                        for (k, (fk, pk)) in lk.foreign_key.iter().zip(&lk.primary_key).enumerate()
                        {
                            let f = (fact.as_str(), fk.as_str());
                            let t = (lk.table.as_str(), pk.as_str());
                            let eq = |x: &(String, String), y: (&str, &str)| {
                                x.0.eq_ignore_ascii_case(y.0) && x.1.eq_ignore_ascii_case(y.1)
                            };
                            if (eq(&a, f) && eq(&b, t)) || (eq(&a, t) && eq(&b, f)) {
                                satisfied[li][k] = true;
                                used = true;
                            }
                        }
                    }
                }
            }
        }
        if !used {
            residual.push(p.clone());
        }
    }
    for (li, &(_, l)) in lookups.iter().enumerate() {
        let lk = &model.lookups[l];
        if satisfied[li].iter().any(|s| !s) {
            return Err(Uncovered::Join(format!(
                "table {} must be joined on {} = {} as in model {}",
                lk.table,
                lk.foreign_key.join(", "),
                lk.primary_key.join(", "),
                model.name
            )));
        }
        if lk.join != JoinKind::Inner {
            return Err(Uncovered::Join(format!(
                "model {} joins {} with a LEFT join; the query uses an inner join",
                model.name, lk.table
            )));
        }
    }
    Ok(residual)
}

/// Where one column is stored, recorded in `targets`.
fn need(
    flat: &Flat,
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

/// Step 4: every column of the filters and group keys must be a dimension.
fn cover_dimensions<'e>(
    flat: &Flat,
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
    agg: &Aggregate,
    flat: &Flat,
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
    for e in &agg.aggr_expr {
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
        if params.filter.is_some() || !params.order_by.is_empty() {
            return Err(refused(
                "FILTER and ORDER BY in aggregates are not answered from cubes".into(),
            ));
        }
        let name = func.name().to_ascii_lowercase();
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

/// Step 6: the stored cuboid with fewest rows holding every needed rowkey column (derived
/// columns need their foreign keys), present in every READY segment. Returns it, its rows
/// over all segments, and the derived dimensions to join back.
fn choose_cuboid(
    real: &Realization,
    targets: &Targets,
) -> Result<(CuboidId, u64, BTreeSet<usize>), Uncovered> {
    let layout = &real.layout;
    let cube = &layout.cube.name;
    let n = layout.rowkey.len();
    let mut required: CuboidId = 0;
    let mut derived = BTreeSet::new();
    for t in targets.values() {
        match t {
            Target::Rowkey(i) => required |= cuboid::bit(n, *i),
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
    let mut rows_of: HashMap<CuboidId, (u64, usize)> = HashMap::new();
    for s in &real.segments {
        for c in &s.cuboids {
            let e = rows_of.entry(c.id).or_default();
            e.0 += c.rows;
            e.1 += 1;
        }
    }
    let (cuboid, rows) = rows_of
        .iter()
        .filter(|(&c, &(_, segs))| segs == real.segments.len() && c & required == required)
        .map(|(&c, &(rows, _))| (c, rows))
        .min_by_key(|&(c, rows)| (rows, c.count_ones(), c))
        .ok_or_else(|| Uncovered::Cuboid {
            cube: cube.clone(),
            dimensions: (0..n)
                .filter(|&i| required & cuboid::bit(n, i) != 0)
                .map(|i| layout.rowkey[i].name.clone())
                .collect(),
        })?;
    Ok((cuboid, rows, derived))
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
    // A lookup's primary key equals the stored foreign key.
    let lk = layout.model.lookups.iter().find(|l| eq(&l.table, table))?;
    if lk.primary_key.len() == 1 && eq(&lk.primary_key[0], column) {
        let fk = &lk.foreign_key[0];
        return layout
            .rowkey
            .iter()
            .position(|r| eq(&r.source.table, &layout.model.fact_table) && eq(&r.source.column, fk))
            .map(Target::Rowkey);
    }
    None
}
