//! Step 7 of the rewrite: the plan that replaces an answered aggregate — a scan of the chosen
//! cuboid, joins to lookup tables for derived dimensions, the residual filters, the
//! re-aggregation of measure states, and a projection restoring the original names and types.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::provider_as_source;
use datafusion::functions::core::expr_fn::coalesce;
use datafusion::functions::math::expr_fn::trunc;
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    cast, lit, Aggregate, Case, Expr, JoinType, LogicalPlan, LogicalPlanBuilder,
};

use super::cover::{key, AggPlan, Answer, Branch, Target};
use super::flatten::resolve_scan;
use super::{detail, Realized, INTERNAL_PREFIX};
use crate::error::Result;
use crate::model::{JoinKind, StateKind};
use crate::query::cuboid_scan::{CuboidTable, DerivedFilter};
use crate::query::lookup::{derived_field, lookup_keys, DerivedLookup};
use crate::query::segments::SegmentReader;
use crate::query::string_filter::string_filter_column;
use crate::query::string_ids::{string_of, StringIds, MAX_NUMBERED_VALUES};
use crate::query::{percentile, sketch};

const CUBOID_ALIAS: &str = "__qilin_cuboid";

fn lookup_alias(table: &str) -> String {
    format!("{INTERNAL_PREFIX}lookup_{}", table.to_ascii_lowercase())
}

/// A source column → its cuboid or lookup column, `None` for columns the answer does not map.
fn map_column(answer: &Answer, c: &Column) -> Option<Column> {
    let layout = &answer.real.layout;
    let scan = resolve_scan(&answer.scans, c)?;
    match answer.targets.get(&key(&answer.aliases[scan], &c.name))? {
        Target::Rowkey(i) => Some(Column::new(
            Some(CUBOID_ALIAS),
            layout.rowkey[*i].name.as_str(),
        )),
        Target::Derived(d, col) => Some(Column::new(
            Some(lookup_alias(&layout.derived[*d].table)),
            col.as_str(),
        )),
        Target::Extended { measure, .. } => Some(Column::new(
            Some(CUBOID_ALIAS),
            layout.measures[*measure].name.as_str(),
        )),
    }
}

/// `e` over the cuboid (and lookup) columns instead of the source tables'.
pub(super) fn map_expr(answer: &Answer, e: &Expr) -> Result<Expr> {
    Ok(e.clone()
        .transform(|x| match &x {
            Expr::Column(c) => match map_column(answer, c) {
                Some(m) => Ok(Transformed::yes(Expr::Column(m))),
                None => Ok(Transformed::no(x)),
            },
            _ => Ok(Transformed::no(x)),
        })?
        .data)
}

/// The rows a replacement aggregates: the cuboid scan, joined to the lookup snapshots of
/// derived dimensions, filtered by the residual predicates.
pub(super) struct Source {
    pub builder: LogicalPlanBuilder,
    pub table: Arc<CuboidTable>,
    pub derived_tables: Vec<String>,
    /// Rowkey columns the scan returns as ids, and their numberings.
    pub numbered: HashMap<usize, Arc<StringIds>>,
}

/// A measure's state column in the cuboid scan.
pub(super) fn state_column(answer: &Answer, m: usize) -> Expr {
    Expr::Column(Column::new(
        Some(CUBOID_ALIAS),
        answer.real.layout.measures[m].name.as_str(),
    ))
}

/// The string rowkey column a residual conjunct `e` filters alone, and `e` over that cuboid
/// column unqualified, when the scan can apply it through block dictionaries
/// ([`string_filter_column`]): such a filter reads the column's strings, never its ids.
fn string_filter_on(answer: &Answer, e: &Expr) -> Result<Option<(usize, Expr)>> {
    let layout = &answer.real.layout;
    let columns = e.column_refs();
    let [c] = columns.into_iter().collect::<Vec<_>>()[..] else {
        return Ok(None);
    };
    let target = resolve_scan(&answer.scans, c)
        .and_then(|scan| answer.targets.get(&key(&answer.aliases[scan], &c.name)));
    let Some(Target::Rowkey(i)) = target else {
        return Ok(None);
    };
    let column = &layout.rowkey[*i];
    if column.source.data_type != DataType::Utf8 {
        return Ok(None);
    }
    let unqualified = map_expr(answer, e)?
        .transform(|x| match x {
            Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
                c.name,
            )))),
            x => Ok(Transformed::no(x)),
        })?
        .data;
    let one = Schema::new(vec![Field::new(&column.name, DataType::Utf8, true)]);
    Ok(string_filter_column(&one, 1, &unqualified).map(|_| (*i, unqualified)))
}

/// Rowkey columns worth grouping by id (see [`crate::query::string_ids`]): string
/// dimensions that are plain group keys and that nothing else reads — no aggregate, no other
/// group key, no join, no filter but those the scan applies to the strings itself
/// ([`string_filter_on`]) — so no expression ever sees the ids.
fn grouped_by_id(answer: &Answer) -> Result<BTreeSet<usize>> {
    let layout = &answer.real.layout;
    let mut candidates = BTreeSet::new();
    let mut elsewhere: Vec<Expr> = Vec::new();
    for g in &answer.group {
        let target = match g {
            Expr::Column(c) => resolve_scan(&answer.scans, c)
                .and_then(|scan| answer.targets.get(&key(&answer.aliases[scan], &c.name))),
            _ => None,
        };
        match target {
            Some(Target::Rowkey(i)) if layout.rowkey[*i].source.data_type == DataType::Utf8 => {
                candidates.insert(*i);
            }
            _ => elsewhere.push(g.clone()),
        }
    }
    for e in answer.residual.iter().flat_map(split_conjunction) {
        match string_filter_on(answer, e)? {
            Some((i, _)) if candidates.contains(&i) => {}
            _ => elsewhere.push(e.clone()),
        }
    }
    let mut read: HashSet<String> = HashSet::new();
    for a in &answer.aggs {
        match a {
            AggPlan::Case { arms, .. } => elsewhere.extend(arms.iter().map(|(c, _)| c.clone())),
            AggPlan::DimMin(Target::Rowkey(i)) | AggPlan::DimMax(Target::Rowkey(i)) => {
                read.insert(layout.rowkey[*i].name.clone());
            }
            _ => {}
        }
    }
    for e in &elsewhere {
        for c in map_expr(answer, e)?.column_refs() {
            read.insert(c.name.clone());
        }
    }
    for &d in &answer.derived {
        read.extend(layout.derived[d].foreign_key.iter().cloned());
    }
    candidates.retain(|&i| !read.contains(&layout.rowkey[i].name));
    Ok(candidates)
}

/// The rows to aggregate; rowkey columns `by_id` (see [`grouped_by_id`]) come as ids of
/// their values where their numbering is not too large.
pub(super) fn source(
    answer: &Answer,
    reader: &Arc<dyn SegmentReader>,
    by_id: &BTreeSet<usize>,
) -> Result<Source> {
    let layout = &answer.real.layout;

    // The cuboid over every READY segment; it prunes blocks by the filters pushed into it
    // when it runs, not here.
    let segment_ids = answer.real.segments.iter().map(|s| s.id.clone()).collect();
    let mut table = CuboidTable::new(layout, answer.cuboid, segment_ids, reader.clone())
        .with_rows(answer.cuboid_rows);
    let mut numbered = HashMap::new();
    let mut id_columns = Vec::new();
    for (position, i) in layout.cuboid_columns(answer.cuboid).into_iter().enumerate() {
        if !by_id.contains(&i) {
            continue;
        }
        let ids = reader.string_ids(&format!(
            "{}/{}/{}",
            answer.project, layout.cube.name, layout.rowkey[i].name
        ));
        if ids.len() <= MAX_NUMBERED_VALUES {
            id_columns.push((position, ids.clone()));
            numbered.insert(i, ids);
        }
    }
    if !id_columns.is_empty() {
        table = table.with_string_ids(id_columns);
    }
    // Filters on a column returned as ids go into the scan, which applies them to the
    // strings; the others stay above it.
    let mut residual = Vec::new();
    let mut on_ids = Vec::new();
    for e in answer.residual.iter().flat_map(split_conjunction) {
        match string_filter_on(answer, e)? {
            Some((i, filter)) if numbered.contains_key(&i) => on_ids.push(filter),
            _ => residual.push(map_expr(answer, e)?),
        }
    }
    if !on_ids.is_empty() {
        table = table.with_string_filters(on_ids)?;
    }

    // Derived columns come from the lookup's snapshot in the newest READY segment, never
    // from the source files.
    let mut lookups = Vec::new();
    let mut derived_filters = Vec::new();
    for &d in &answer.derived {
        let dd = &layout.derived[d];
        let (snapshot, segment) = detail::snapshot_table(answer.real, &dd.lookup_table, reader)
            .map_err(crate::error::Error::Refused)?;
        let snapshot = match segment
            .snapshots
            .iter()
            .find(|s| s.table.eq_ignore_ascii_case(&dd.lookup_table))
        {
            Some(s) => snapshot.with_rows(s.stats.rows),
            None => snapshot,
        };
        let alias = lookup_alias(&dd.table);
        // Residual filters on this lookup's columns alone also prune the cuboid's blocks
        // through the foreign key (an inner join drops rows whose lookup row fails them).
        if let ([fk], [pk], JoinKind::Inner) = (
            dd.foreign_key.as_slice(),
            dd.primary_key.as_slice(),
            dd.kind,
        ) {
            let own: Vec<Expr> = residual
                .iter()
                .flat_map(|e| split_conjunction(e).into_iter().cloned())
                .filter(|e| {
                    let cols = e.column_refs();
                    !cols.is_empty()
                        && cols
                            .iter()
                            .all(|c| c.relation.as_ref().is_some_and(|r| r.table() == alias))
                })
                .collect();
            if let Some(filter) = conjunction(own) {
                derived_filters.push(DerivedFilter {
                    lookup: snapshot.clone(),
                    filter,
                    primary_key: pk.clone(),
                    foreign_key: fk.clone(),
                });
            }
        }
        lookups.push((dd, snapshot, segment, alias));
    }
    table = table.with_derived_filters(derived_filters);

    // Lookups on one integer key the scan derives itself (see [`crate::query::lookup`]); the
    // others are joined.
    let mut derived_tables = Vec::new();
    let mut in_scan = Vec::new();
    let mut joined = Vec::new();
    for (dd, snapshot, segment, alias) in lookups {
        derived_tables.push(format!(
            "{} (snapshot of {}.{} in segment {})",
            dd.table, answer.project, dd.lookup_table, segment.name
        ));
        let key_type = |t: &CuboidTable, k: &str| {
            t.schema_ref()
                .field_with_name(k)
                .map(|f| f.data_type().clone())
                .ok()
        };
        match (dd.foreign_key.as_slice(), dd.primary_key.as_slice()) {
            ([fk], [pk])
                if key_type(&table, fk)
                    .zip(key_type(&snapshot, pk))
                    .is_some_and(|(f, p)| lookup_keys(&f, &p)) =>
            {
                let inner = dd.kind == JoinKind::Inner;
                in_scan.push((alias, DerivedLookup::new(snapshot, pk, fk, inner)));
            }
            _ => joined.push((dd, snapshot, alias)),
        }
    }
    // The scan's derived columns renamed to the lookup's columns the answer maps to.
    let mut renamed = Vec::new();
    if !in_scan.is_empty() {
        renamed = table
            .schema_ref()
            .fields()
            .iter()
            .map(|f| Expr::Column(Column::new(Some(CUBOID_ALIAS), f.name().as_str())))
            .collect();
        for (l, (alias, lookup)) in in_scan.iter().enumerate() {
            for f in lookup.snapshot.schema_ref().fields() {
                renamed.push(
                    Expr::Column(Column::new(Some(CUBOID_ALIAS), derived_field(l, f.name())))
                        .alias_qualified(Some(alias.as_str()), f.name()),
                );
            }
        }
        table = table.with_lookups(in_scan.into_iter().map(|(_, lookup)| lookup).collect());
    }
    let table = Arc::new(table);

    let mut builder =
        LogicalPlanBuilder::scan(CUBOID_ALIAS, provider_as_source(table.clone()), None)?;
    if !renamed.is_empty() {
        builder = builder.project(renamed)?;
    }
    for (dd, snapshot, alias) in joined {
        let right =
            LogicalPlanBuilder::scan(alias.as_str(), provider_as_source(Arc::new(snapshot)), None)?
                .build()?;
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
        let join = match dd.kind {
            JoinKind::Inner => JoinType::Inner,
            JoinKind::Left => JoinType::Left,
        };
        builder = builder.join(right, join, (left_keys, right_keys), None)?;
    }
    if let Some(p) = conjunction(residual) {
        builder = builder.filter(p)?;
    }
    Ok(Source {
        builder,
        table,
        derived_tables,
        numbered,
    })
}

/// What EXPLAIN says of a replacement reading `table`.
pub(super) fn realized(
    answer: &Answer,
    table: Arc<CuboidTable>,
    derived_tables: Vec<String>,
    extended: Vec<String>,
    top_n: Option<String>,
) -> Realized {
    let layout = &answer.real.layout;
    Realized {
        cube: layout.cube.name.clone(),
        cuboid: answer.cuboid,
        wanted: answer.required,
        dimensions: layout
            .cuboid_columns(answer.cuboid)
            .iter()
            .map(|&i| layout.rowkey[i].name.clone())
            .collect(),
        cuboid_rows: answer.cuboid_rows,
        segments: answer
            .real
            .segments
            .iter()
            .map(|s| s.name.clone())
            .collect(),
        table,
        derived_tables,
        extended,
        stored: None,
        top_n,
    }
}

/// The replacement of `agg` answered by `answer`, and what EXPLAIN says of it.
pub(super) fn replacement(
    agg: &Aggregate,
    answer: &Answer,
    reader: &Arc<dyn SegmentReader>,
) -> Result<(LogicalPlan, Realized)> {
    let layout = &answer.real.layout;
    let map = |e: &Expr| map_expr(answer, e);
    let Source {
        mut builder,
        table,
        derived_tables,
        numbered,
    } = source(answer, reader, &grouped_by_id(answer)?)?;

    // Re-aggregation: group keys, then partial aggregates over the states.
    let state = |m: usize| {
        Expr::Column(Column::new(
            Some(CUBOID_ALIAS),
            layout.measures[m].name.as_str(),
        ))
    };
    let mut partials: Vec<Expr> = Vec::new();
    let mut partial = |e: Expr| -> Expr {
        let name = format!("__a{}", partials.len());
        partials.push(e.alias(name.as_str()));
        Expr::Column(Column::from_name(name))
    };
    // A group key an EXTENDED_COLUMN state answers is no key of the re-aggregation: its id
    // is grouped, so MAX of the state is the one value of each group.
    let mut group: Vec<Expr> = Vec::new();
    let mut group_out: Vec<Expr> = Vec::new();
    let mut extended = Vec::new();
    for (i, g) in answer.group.iter().enumerate() {
        let target = match g {
            Expr::Column(c) => resolve_scan(&answer.scans, c)
                .and_then(|scan| answer.targets.get(&key(&answer.aliases[scan], &c.name))),
            _ => None,
        };
        if let Some(Target::Extended { measure, .. }) = target {
            group_out.push(partial(max(state(*measure))));
            extended.push(format!(
                "{g} from measure {}",
                layout.measures[*measure].name
            ));
        } else {
            group.push(map(g)?.alias(format!("__g{i}")));
            let key = Expr::Column(Column::from_name(format!("__g{i}")));
            group_out.push(match target {
                // Grouped by the ids of its values: back to strings after the aggregate.
                Some(Target::Rowkey(r)) if numbered.contains_key(r) => {
                    string_of(numbered[r].clone()).call(vec![key])
                }
                _ => key,
            });
        }
    }
    let target_col = |t: &Target| match t {
        Target::Rowkey(i) => Expr::Column(Column::new(
            Some(CUBOID_ALIAS),
            layout.rowkey[*i].name.as_str(),
        )),
        Target::Derived(d, c) => Expr::Column(Column::new(
            Some(lookup_alias(&layout.derived[*d].table)),
            c.as_str(),
        )),
        Target::Extended { measure, .. } => state(*measure),
    };
    let mut finals: Vec<Expr> = Vec::new();
    let mut merged_digests: std::collections::HashMap<usize, Expr> = Default::default();
    for a in &answer.aggs {
        finals.push(match a {
            AggPlan::Sum(m) => partial(sum(state(*m))),
            AggPlan::Min(m) => partial(min(state(*m))),
            AggPlan::Max(m) => partial(max(state(*m))),
            AggPlan::Count(m) => coalesce(vec![partial(sum(state(*m))), lit(0i64)]),
            AggPlan::CountTimes { count, factor } => partial(sum(state(*count))) * lit(*factor),
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
                // COUNT(DISTINCT) is never NULL (0 over no rows): keep the field non-nullable
                // as the original plan declares it (clients check the announced schema).
                coalesce(vec![partial(f.call(vec![state(*m)])), lit(0i64)])
            }
            AggPlan::Case {
                arms,
                otherwise,
                count,
            } => {
                let branch = |b: &Branch| match b {
                    Branch::State(m) => state(*m),
                    Branch::Times { count, factor } => state(*count) * lit(*factor),
                    Branch::Null => lit(ScalarValue::Null),
                    Branch::Zero => lit(0i64),
                };
                let when_then = arms
                    .iter()
                    .map(|(c, b)| Ok((Box::new(map(c)?), Box::new(branch(b)))))
                    .collect::<Result<_>>()?;
                let case = Expr::Case(Case::new(
                    None,
                    when_then,
                    Some(Box::new(branch(otherwise))),
                ));
                let total = partial(sum(case));
                if *count {
                    coalesce(vec![total, lit(0i64)])
                } else {
                    total
                }
            }
            AggPlan::Percentile { state: m, q } => {
                // One merge per measure serves all its percentiles.
                let merged = match merged_digests.get(m) {
                    Some(e) => e.clone(),
                    None => {
                        let e = partial(percentile::tdigest_merge().call(vec![state(*m)]));
                        merged_digests.insert(*m, e.clone());
                        e
                    }
                };
                percentile::tdigest_quantile().call(vec![merged, lit(*q)])
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
            group_out[i].clone()
        } else {
            let a = i - agg.group_expr.len();
            match (&answer.aggs[a], field.data_type()) {
                // DataFusion's decimal AVG truncates to the result's scale; a cast rounds.
                (AggPlan::Avg { .. }, DataType::Decimal128(_, scale)) => {
                    trunc(vec![finals[a].clone(), lit(i64::from(*scale))])
                }
                _ => finals[a].clone(),
            }
        };
        out.push(
            cast(e, field.data_type().clone()).alias_qualified(qualifier.cloned(), field.name()),
        );
    }
    let plan = builder.project(out)?.build()?;
    let realized = realized(answer, table, derived_tables, extended, None);
    Ok((plan, realized))
}
