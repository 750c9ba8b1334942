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
//!         TableScan __qilin_cuboid (blocks of the chosen cuboid, pruned by min/max)
//! ```
//!
//! so only the small plan that remains goes through DataFusion's analyzer and optimizer. The
//! output keeps the original schema, and rewriting a rewritten plan changes nothing (it no
//! longer reads source tables).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::functions::core::expr_fn::coalesce;
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    cast, lit, Aggregate, BinaryExpr, Expr, JoinType, LogicalPlan, LogicalPlanBuilder, Operator,
};

use super::catalog::{Realization, Snapshot};
use super::cuboid_scan::{BlockRef, CuboidTable};
use super::prune::block_may_match;
use super::{sketch, QueryEngine, CATALOG};
use crate::error::Result;
use crate::model::{cuboid, CuboidId, JoinKind, MeasureFunction, StateKind, TableDesc};

/// Scans the rewrite introduces are named with this prefix; any other scan reads a source table.
pub(crate) const INTERNAL_PREFIX: &str = "__qilin_";
const CUBOID_ALIAS: &str = "__qilin_cuboid";

/// What served one aggregate of the query (for EXPLAIN).
#[derive(Debug, Clone)]
pub(crate) struct Realized {
    pub cube: String,
    pub cuboid: CuboidId,
    pub dimensions: Vec<String>,
    pub cuboid_rows: u64,
    pub segments: Vec<String>,
    pub blocks_read: usize,
    pub blocks_total: usize,
    pub derived_tables: Vec<String>,
}

pub(crate) enum Outcome {
    /// Every source table the query reads is answered from cuboids (or it reads none).
    Answered {
        plan: LogicalPlan,
        realized: Vec<Realized>,
    },
    /// Some part of the query needs the raw tables; `reason` says which column or measure.
    Uncovered { reason: String },
}

/// Canonical text of an expression over model columns (`resolve` maps a column to its model
/// table and column), used to match aggregate arguments with measure inputs. `None` for
/// expressions outside the small grammar measures use.
pub(crate) fn canonical(
    expr: &Expr,
    resolve: &dyn Fn(&Column) -> Option<(String, String)>,
) -> Option<String> {
    Some(match expr {
        Expr::Column(c) => {
            let (t, c) = resolve(c)?;
            format!("{}.{}", t.to_ascii_lowercase(), c.to_ascii_lowercase())
        }
        Expr::Literal(v, _) => v.to_string(),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => format!(
            "({} {op} {})",
            canonical(left, resolve)?,
            canonical(right, resolve)?
        ),
        // Casts differ between a query and a model's declared types; the values do not.
        Expr::Cast(c) => canonical(&c.expr, resolve)?,
        Expr::TryCast(c) => canonical(&c.expr, resolve)?,
        Expr::Negative(e) => format!("(-{})", canonical(e, resolve)?),
        Expr::Alias(a) => canonical(&a.expr, resolve)?,
        _ => return None,
    })
}

/// One table the aggregate reads, and the qualifier its columns carry.
#[derive(Debug, Clone)]
struct ScanInfo {
    qualifier: TableReference,
    project: String,
    table: TableDesc,
}

/// The aggregate's input flattened: tables, then every predicate (join keys included).
#[derive(Debug, Default)]
struct Flat {
    scans: Vec<ScanInfo>,
    predicates: Vec<Expr>,
}

fn flatten(plan: &LogicalPlan, snap: &Snapshot, out: &mut Flat) -> std::result::Result<(), String> {
    match plan {
        LogicalPlan::Filter(f) => {
            out.predicates
                .extend(split_conjunction(&f.predicate).into_iter().cloned());
            flatten(&f.input, snap, out)
        }
        LogicalPlan::Join(j) => {
            if j.join_type != JoinType::Inner {
                return Err(format!(
                    "{} joins are not answered from cubes (the model's joins are inner)",
                    j.join_type
                ));
            }
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
        LogicalPlan::SubqueryAlias(a) => match a.input.as_ref() {
            LogicalPlan::TableScan(t) => {
                let mut info = scan_info(t, snap)?;
                info.qualifier = a.alias.clone();
                out.scans.push(info);
                Ok(())
            }
            _ => Err("subqueries in FROM are not answered from cubes".into()),
        },
        LogicalPlan::TableScan(t) => {
            out.scans.push(scan_info(t, snap)?);
            Ok(())
        }
        other => Err(format!(
            "a {} between the aggregate and the tables is not answered from cubes",
            other.display()
        )),
    }
}

fn scan_info(
    t: &datafusion::logical_expr::TableScan,
    snap: &Snapshot,
) -> std::result::Result<ScanInfo, String> {
    let name = t.table_name.to_string();
    if name.starts_with(INTERNAL_PREFIX) {
        return Err("already rewritten".into());
    }
    if !t.filters.is_empty() || t.fetch.is_some() {
        return Err(format!("scan of {name} carries pushed-down filters"));
    }
    let resolved = t.table_name.clone().resolve(CATALOG, &snap.default_project);
    let project = snap
        .project(&resolved.schema)
        .ok_or_else(|| format!("project {} does not exist", resolved.schema))?;
    let table = project
        .tables
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(&resolved.table))
        .ok_or_else(|| format!("table {name} is not a source table"))?;
    Ok(ScanInfo {
        qualifier: t.table_name.clone(),
        project: project.name.clone(),
        table: table.clone(),
    })
}

/// Where a model column is found in a cuboid.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    /// Rowkey column `i`.
    Rowkey(usize),
    /// Derived dimension `d` of the layout: column of its lookup table.
    Derived(usize, String),
}

/// How one aggregate of the query is computed from measure states.
#[derive(Debug, Clone)]
enum AggPlan {
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

/// A decision to answer one aggregate from one cuboid.
#[derive(Debug)]
struct Answer<'a> {
    real: &'a Realization,
    project: String,
    cuboid: CuboidId,
    cuboid_rows: u64,
    scans: Vec<ScanInfo>,
    /// Model (table, column), lower-case → where it is stored.
    targets: HashMap<(String, String), Target>,
    residual: Vec<Expr>,
    aggs: Vec<AggPlan>,
    derived: BTreeSet<usize>,
}

impl Answer<'_> {
    fn scan_of(&self, c: &Column) -> Option<&ScanInfo> {
        resolve_scan(&self.scans, c)
    }
}

fn resolve_scan<'s>(scans: &'s [ScanInfo], c: &Column) -> Option<&'s ScanInfo> {
    match &c.relation {
        Some(r) => scans.iter().find(|s| &s.qualifier == r),
        None => {
            let mut found = scans.iter().filter(|s| {
                s.table
                    .columns
                    .iter()
                    .any(|col| col.name.eq_ignore_ascii_case(&c.name))
            });
            let first = found.next()?;
            found.next().is_none().then_some(first)
        }
    }
}

fn key(t: &str, c: &str) -> (String, String) {
    (t.to_ascii_lowercase(), c.to_ascii_lowercase())
}

/// Tries every cube of the project and keeps the one whose covering cuboid has fewest rows.
fn match_aggregate<'a>(
    agg: &Aggregate,
    snap: &'a Snapshot,
) -> std::result::Result<Option<Answer<'a>>, String> {
    let mut flat = Flat::default();
    flatten(&agg.input, snap, &mut flat)?;
    if flat.scans.is_empty() {
        return Ok(None);
    }
    if agg
        .group_expr
        .iter()
        .any(|e| matches!(e, Expr::GroupingSet(_)))
    {
        return Err("GROUPING SETS, ROLLUP and CUBE are not answered from cubes".into());
    }
    let project_name = flat.scans[0].project.clone();
    if let Some(other) = flat.scans.iter().find(|s| s.project != project_name) {
        return Err(format!(
            "the query reads tables of projects {project_name} and {}",
            other.project
        ));
    }
    let project = snap
        .project(&project_name)
        .ok_or_else(|| format!("project {project_name} does not exist"))?;
    if project.realizations.is_empty() {
        return Err(format!("project {project_name} has no cube"));
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
    match best {
        Some(b) => Ok(Some(b)),
        None => Err(reasons.join("; ")),
    }
}

fn cover<'a>(
    agg: &Aggregate,
    flat: &Flat,
    real: &'a Realization,
    project: &str,
    prefer_lookups: bool,
) -> std::result::Result<Answer<'a>, String> {
    let layout = &real.layout;
    let model = &layout.model;
    let cube = &layout.cube.name;
    let fact = &model.fact_table;

    // Tables: the fact table once, lookups of the model at most once each.
    let mut fact_idx = None;
    let mut lookups: Vec<(usize, usize)> = Vec::new(); // (scan, lookup index in the model)
    for (i, s) in flat.scans.iter().enumerate() {
        let name = &s.table.name;
        if name.eq_ignore_ascii_case(fact) {
            if fact_idx.replace(i).is_some() {
                return Err(format!("table {name} is read twice"));
            }
        } else if let Some(l) = model
            .lookups
            .iter()
            .position(|l| l.table.eq_ignore_ascii_case(name))
        {
            if lookups.iter().any(|&(_, x)| x == l) {
                return Err(format!("table {name} is read twice"));
            }
            lookups.push((i, l));
        } else {
            return Err(format!("table {name} is not in model {}", model.name));
        }
    }
    if fact_idx.is_none() {
        return Err(format!(
            "the query does not read fact table {fact} of model {}",
            model.name
        ));
    }
    let scan_of = |c: &Column| resolve_scan(&flat.scans, c);
    let model_col = |c: &Column| scan_of(c).map(|s| (s.table.name.clone(), c.name.clone()));

    // Join keys: each lookup must be joined on exactly the model's FK = PK.
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
                if let (Some(a), Some(b)) = (model_col(a), model_col(b)) {
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
        if satisfied[li].iter().any(|s| !s) {
            let lk = &model.lookups[l];
            return Err(format!(
                "table {} must be joined on {} = {} as in model {}",
                lk.table,
                lk.foreign_key.join(", "),
                lk.primary_key.join(", "),
                model.name
            ));
        }
        if model.lookups[l].join != JoinKind::Inner {
            return Err(format!(
                "model {} joins {} with a LEFT join; the query uses an inner join",
                model.name, model.lookups[l].table
            ));
        }
    }

    // Columns of predicates and group keys must be dimensions.
    let mut targets: HashMap<(String, String), Target> = HashMap::new();
    let need = |c: &Column,
                targets: &mut HashMap<(String, String), Target>|
     -> std::result::Result<Target, String> {
        let (t, col) = model_col(c)
            .ok_or_else(|| format!("column {c} cannot be resolved to a model table"))?;
        let target = target_of(real, &t, &col, prefer_lookups)
            .ok_or_else(|| format!("column {t}.{col} is not a dimension of cube {cube}"))?;
        targets.insert(key(&t, &col), target.clone());
        Ok(target)
    };
    for e in residual.iter().chain(agg.group_expr.iter()) {
        for c in e.column_refs() {
            need(c, &mut targets)?;
        }
    }

    // Aggregates → measure states.
    let canon = |e: &Expr| canonical(e, &model_col);
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
        let inner = match e {
            Expr::Alias(a) => a.expr.as_ref(),
            e => e,
        };
        let Expr::AggregateFunction(AggregateFunction { func, params }) = inner else {
            return Err(format!("{e} is not an aggregate function"));
        };
        if params.filter.is_some() || !params.order_by.is_empty() {
            return Err(format!(
                "{e}: FILTER and ORDER BY in aggregates are not answered from cubes"
            ));
        }
        let name = func.name().to_ascii_lowercase();
        let arg = params.args.first();
        let arg_canon = arg.and_then(&canon);
        let missing = |what: &str| {
            format!(
                "{e}: cube {cube} has no {what} measure on {}",
                arg_canon
                    .clone()
                    .unwrap_or_else(|| arg.map(|a| a.to_string()).unwrap_or_default())
            )
        };
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
            ("count", false) if is_row_count => AggPlan::Count(
                count_rows.ok_or_else(|| format!("{e}: cube {cube} has no COUNT(*) measure"))?,
            ),
            ("count", false) => AggPlan::Count(
                find(MeasureFunction::Count, &arg_canon, None).ok_or_else(|| missing("COUNT"))?,
            ),
            ("sum", false) => AggPlan::Sum(
                find(MeasureFunction::Sum, &arg_canon, None).ok_or_else(|| missing("SUM"))?,
            ),
            ("avg", false) => {
                let s = find(MeasureFunction::Sum, &arg_canon, None)
                    .ok_or_else(|| missing("SUM (for AVG)"))?;
                let c = count_rows
                    .ok_or_else(|| format!("{e}: cube {cube} has no COUNT(*) measure (for AVG)"))?;
                AggPlan::Avg { sum: s, count: c }
            }
            (f @ ("min" | "max"), false) => {
                let func = if f == "min" {
                    MeasureFunction::Min
                } else {
                    MeasureFunction::Max
                };
                match find(func, &arg_canon, None) {
                    Some(m) if f == "min" => AggPlan::Min(m),
                    Some(m) => AggPlan::Max(m),
                    None => {
                        // MIN/MAX of a dimension needs no measure.
                        let Some(Expr::Column(c)) = arg else {
                            return Err(missing(&f.to_ascii_uppercase()));
                        };
                        let t =
                            need(c, &mut targets).map_err(|_| missing(&f.to_ascii_uppercase()))?;
                        if f == "min" {
                            AggPlan::DimMin(t)
                        } else {
                            AggPlan::DimMax(t)
                        }
                    }
                }
            }
            _ => {
                return Err(format!(
                    "{e}: aggregate function {name}{} is not answered from cubes",
                    if params.distinct { " DISTINCT" } else { "" }
                ))
            }
        };
        aggs.push(plan);
    }

    // The cheapest stored cuboid holding every needed rowkey column.
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
                        .ok_or_else(|| format!("cube {cube}: foreign key {fk} is not stored"))?;
                    required |= cuboid::bit(n, i);
                }
            }
        }
    }
    if real.segments.is_empty() {
        return Err(format!("cube {cube} has no READY segment"));
    }
    let mut rows_of: HashMap<CuboidId, (u64, usize)> = HashMap::new();
    for s in &real.segments {
        for c in &s.cuboids {
            let e = rows_of.entry(c.id).or_default();
            e.0 += c.rows;
            e.1 += 1;
        }
    }
    let (cuboid, cuboid_rows) = rows_of
        .iter()
        .filter(|(&c, &(_, segs))| segs == real.segments.len() && c & required == required)
        .map(|(&c, &(rows, _))| (c, rows))
        .min_by_key(|&(c, rows)| (rows, c.count_ones(), c))
        .ok_or_else(|| {
            let names: Vec<String> = (0..n)
                .filter(|&i| required & cuboid::bit(n, i) != 0)
                .map(|i| layout.rowkey[i].name.clone())
                .collect();
            format!(
                "no cuboid of cube {cube} holds dimensions {} together (they are in different aggregation groups)",
                names.join(", ")
            )
        })?;
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

fn lookup_alias(table: &str) -> String {
    format!("{INTERNAL_PREFIX}lookup_{}", table.to_ascii_lowercase())
}

/// Resources the rewrite needs loaded before it can build plans (lookup tables are read
/// asynchronously, the rewrite itself is synchronous).
pub(crate) fn lookups_needed(plan: &LogicalPlan, snap: &Snapshot) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Aggregate(agg) = node {
            if let Ok(Some(a)) = match_aggregate(agg, snap) {
                for &d in &a.derived {
                    out.push((a.project.clone(), a.real.layout.derived[d].table.clone()));
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
/// [`lookups_needed`].
pub(crate) fn rewrite(
    plan: LogicalPlan,
    snap: &Snapshot,
    engine: &QueryEngine,
    lookups: &HashMap<(String, String), Arc<datafusion::datasource::MemTable>>,
) -> Result<Outcome> {
    let mut realized = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    let mut failure: Option<crate::error::Error> = None;
    let rewritten = plan
        .transform_down_with_subqueries(|node| {
            let LogicalPlan::Aggregate(agg) = &node else {
                return Ok(Transformed::no(node));
            };
            match match_aggregate(agg, snap) {
                Ok(Some(answer)) => match build(agg, &answer, engine, lookups) {
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
    // Whatever still reads a source table was not answered.
    let mut unanswered: Vec<String> = Vec::new();
    rewritten.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(t) = node {
            let name = t.table_name.to_string();
            if !name.starts_with(INTERNAL_PREFIX) {
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
    let reason = if reasons.is_empty() {
        format!(
            "table {} is read outside an aggregate query (cubes answer aggregates over the model's joins)",
            unanswered[0]
        )
    } else {
        reasons.join("; ")
    };
    Ok(Outcome::Uncovered { reason })
}

/// Builds the replacement of `agg` from `answer`.
fn build(
    agg: &Aggregate,
    answer: &Answer,
    engine: &QueryEngine,
    lookups: &HashMap<(String, String), Arc<datafusion::datasource::MemTable>>,
) -> Result<(LogicalPlan, Realized)> {
    let layout = &answer.real.layout;
    let cube = &layout.cube.name;
    let cuboid_cols = layout.cuboid_columns(answer.cuboid);
    let dim_names: Vec<String> = cuboid_cols
        .iter()
        .map(|&i| layout.rowkey[i].name.clone())
        .collect();

    // Column mapping: source column → cuboid or lookup column.
    let map_column = |c: &Column| -> Option<Column> {
        let scan = answer.scan_of(c)?;
        match answer.targets.get(&key(&scan.table.name, &c.name))? {
            Target::Rowkey(i) => Some(Column::new(
                Some(CUBOID_ALIAS),
                layout.rowkey[*i].name.as_str(),
            )),
            Target::Derived(d, col) => Some(Column::new(
                Some(lookup_alias(&layout.derived[*d].table)),
                col.as_str(),
            )),
        }
    };
    let map = |e: &Expr| -> Result<Expr> {
        Ok(e.clone()
            .transform(|x| match &x {
                Expr::Column(c) => match map_column(c) {
                    Some(m) => Ok(Transformed::yes(Expr::Column(m))),
                    None => Ok(Transformed::no(x)),
                },
                _ => Ok(Transformed::no(x)),
            })?
            .data)
    };
    let residual: Vec<Expr> = answer.residual.iter().map(map).collect::<Result<_>>()?;

    // Blocks of every segment, pruned by the residual predicates on stored dimensions.
    let dim_pos: HashMap<String, usize> = dim_names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i))
        .collect();
    let mut blocks = Vec::new();
    let mut total = 0usize;
    for seg in &answer.real.segments {
        let manifest = engine.manifest(&seg.id, answer.cuboid)?;
        total += manifest.blocks.len();
        for (i, meta) in manifest.blocks.iter().enumerate() {
            if meta.rows > 0
                && residual
                    .iter()
                    .all(|p| block_may_match(p, CUBOID_ALIAS, &dim_pos, meta))
            {
                blocks.push(BlockRef {
                    segment: seg.id.clone(),
                    cuboid: answer.cuboid,
                    block: i as u32,
                    meta: meta.clone(),
                });
            }
        }
    }
    let blocks_read = blocks.len();
    let table = CuboidTable::new(layout, answer.cuboid, blocks, engine.block_source());

    let mut builder =
        LogicalPlanBuilder::scan(CUBOID_ALIAS, provider_as_source(Arc::new(table)), None)?;
    let mut derived_tables = Vec::new();
    for &d in &answer.derived {
        let dd = &layout.derived[d];
        let mem = lookups
            .get(&(answer.project.clone(), dd.table.clone()))
            .cloned()
            .ok_or_else(|| crate::error::Error::NotFound {
                kind: "lookup table",
                name: dd.table.clone(),
            })?;
        let alias = lookup_alias(&dd.table);
        let right =
            LogicalPlanBuilder::scan(alias.as_str(), provider_as_source(mem), None)?.build()?;
        let left_keys: Vec<Column> = dd
            .foreign_key
            .iter()
            .map(|k| Column::new(Some(CUBOID_ALIAS), k.as_str()))
            .collect();
        let right_keys: Vec<Column> = dd
            .primary_key
            .iter()
            .map(|k| Column::new(Some(alias.as_str()), k.as_str()))
            .collect();
        builder = builder.join(right, JoinType::Inner, (left_keys, right_keys), None)?;
        derived_tables.push(dd.table.clone());
    }
    if let Some(p) = conjunction(residual) {
        builder = builder.filter(p)?;
    }

    // Re-aggregation: group keys, then partial aggregates over the states.
    let state = |m: usize| {
        Expr::Column(Column::new(
            Some(CUBOID_ALIAS),
            layout.measures[m].name.as_str(),
        ))
    };
    let group: Vec<Expr> = agg
        .group_expr
        .iter()
        .enumerate()
        .map(|(i, g)| Ok(map(g)?.alias(format!("__g{i}"))))
        .collect::<Result<_>>()?;
    let mut partials: Vec<Expr> = Vec::new();
    let mut partial = |e: Expr| -> Expr {
        let name = format!("__a{}", partials.len());
        partials.push(e.alias(name.as_str()));
        Expr::Column(Column::from_name(name))
    };
    let target_col = |t: &Target| match t {
        Target::Rowkey(i) => Expr::Column(Column::new(
            Some(CUBOID_ALIAS),
            layout.rowkey[*i].name.as_str(),
        )),
        Target::Derived(d, c) => Expr::Column(Column::new(
            Some(lookup_alias(&layout.derived[*d].table)),
            c.as_str(),
        )),
    };
    let mut finals: Vec<Expr> = Vec::new();
    for a in &answer.aggs {
        finals.push(match a {
            AggPlan::Sum(m) => partial(sum(state(*m))),
            AggPlan::Min(m) => partial(min(state(*m))),
            AggPlan::Max(m) => partial(max(state(*m))),
            AggPlan::Count(m) => coalesce(vec![partial(sum(state(*m))), lit(0i64)]),
            AggPlan::Avg { sum: s, count: c } => {
                let s = partial(sum(state(*s)));
                let c = partial(sum(state(*c)));
                cast(s, DataType::Float64) / cast(c, DataType::Float64)
            }
            AggPlan::Distinct(m) => {
                let f = match layout.measures[*m].state {
                    StateKind::Bitmap => sketch::bitmap_count(),
                    _ => sketch::hll_count(),
                };
                partial(f.call(vec![state(*m)]))
            }
            AggPlan::DimMin(t) => partial(min(target_col(t))),
            AggPlan::DimMax(t) => partial(max(target_col(t))),
        });
    }
    builder = builder.aggregate(group, partials)?;

    // The original output: same qualifiers, names and types.
    let mut out = Vec::new();
    for (i, (qualifier, field)) in agg.schema.iter().enumerate() {
        let e = if i < agg.group_expr.len() {
            Expr::Column(Column::from_name(format!("__g{i}")))
        } else {
            finals[i - agg.group_expr.len()].clone()
        };
        out.push(
            cast(e, field.data_type().clone()).alias_qualified(qualifier.cloned(), field.name()),
        );
    }
    let plan = builder.project(out)?.build()?;
    let realized = Realized {
        cube: cube.clone(),
        cuboid: answer.cuboid,
        dimensions: dim_names,
        cuboid_rows: answer.cuboid_rows,
        segments: answer
            .real
            .segments
            .iter()
            .map(|s| s.name.clone())
            .collect(),
        blocks_read,
        blocks_total: total,
        derived_tables,
    };
    Ok((plan, realized))
}
