//! The flat-table query of a cube: the fact table joined to its lookups, restricted to a
//! segment's range, projecting rowkey columns and measure inputs. (Source tables themselves
//! are registered by [`crate::source`], for builds and queries alike.)

use crate::model::{CubeLayout, JoinKind, ModelColumn, PartitionKind, ResolvedJoin, SegmentRange};

/// Double-quotes an identifier for DataFusion SQL.
pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn column_sql(c: &ModelColumn) -> String {
    match &c.expression {
        Some(e) => format!("({e})"),
        None => format!("{}.{}", quote(&c.table), quote(&c.column)),
    }
}

/// The SQL literal for a segment boundary in the partition column's format.
fn boundary_sql(kind: &PartitionKind, d: chrono::NaiveDate) -> String {
    match kind {
        PartitionKind::IntYmd => d.format("%Y%m%d").to_string(),
        PartitionKind::Date => format!("DATE '{}'", d.format("%Y-%m-%d")),
        PartitionKind::String(fmt) => format!("'{}'", d.format(fmt)),
    }
}

/// `SELECT rowkey columns, measure inputs FROM fact JOIN lookups AS aliases WHERE partition
/// in range AND the model's filter condition`.
/// Output columns: the rowkey columns in order, then one column per measure that has an input
/// (a struct `{value, by}` for TOP_N).
pub fn flat_table_sql(layout: &CubeLayout, range: Option<&SegmentRange>) -> String {
    let mut select: Vec<String> = layout
        .rowkey
        .iter()
        .map(|r| format!("{} AS {}", column_sql(&r.source), quote(&r.name)))
        .collect();
    for (i, m) in layout.measures.iter().enumerate() {
        let alias = quote(&format!("__m{i}"));
        match m.raw_inputs().as_slice() {
            [] => {}
            [input] => select.push(format!("{} AS {alias}", column_sql(input))),
            // TOP_N reads two columns: one struct column keeps one input column per measure.
            [value, by] => select.push(format!(
                "named_struct('value', {}, 'by', {}) AS {alias}",
                column_sql(value),
                column_sql(by)
            )),
            more => unreachable!("a measure reads at most two columns, not {}", more.len()),
        }
    }
    let model = &layout.model;
    let mut from = quote(&model.fact_table);
    for j in &layout.joins {
        let on: Vec<String> = j
            .foreign_key
            .iter()
            .zip(&j.primary_key)
            .map(|(f, p)| format!("{} = {}", column_sql(f), column_sql(p)))
            .collect();
        let join = match j.kind {
            JoinKind::Inner => "INNER JOIN",
            JoinKind::Left => "LEFT JOIN",
        };
        from = format!(
            "{from} {join} {} AS {} ON {}",
            quote(&j.table),
            quote(&j.alias),
            on.join(" AND ")
        );
    }
    let mut sql = format!("SELECT {} FROM {from}", select.join(", "));
    let mut filters = Vec::new();
    if let (Some(p), Some(r)) = (&layout.partition, range) {
        let col = column_sql(&p.column);
        filters.push(format!(
            "{col} >= {} AND {col} < {}",
            boundary_sql(&p.kind, r.start),
            boundary_sql(&p.kind, r.end)
        ));
    }
    if let Some(f) = &model.filter_condition {
        filters.push(format!("({f})"));
    }
    if !filters.is_empty() {
        sql.push_str(&format!(" WHERE {}", filters.join(" AND ")));
    }
    sql
}

/// A query returning one duplicated primary key of a join's lookup table, if there is one.
/// A lookup whose key is not unique would multiply fact rows in the flat table.
pub fn duplicate_key_sql(join: &ResolvedJoin) -> String {
    let keys: Vec<String> = join.primary_key.iter().map(|k| quote(&k.column)).collect();
    format!(
        "SELECT {k}, count(*) AS n FROM {t} GROUP BY {k} HAVING count(*) > 1 LIMIT 1",
        k = keys.join(", "),
        t = quote(&join.table)
    )
}

/// `SELECT columns FROM fact WHERE partition in range ORDER BY sort columns`: the rows of a
/// segment's table index. Only the partition range restricts them — not the model's filter
/// condition nor its inner joins — so they are what `SELECT … FROM fact` returns for the range.
pub fn table_index_sql(layout: &CubeLayout, range: Option<&SegmentRange>) -> Option<String> {
    let ti = layout.table_index.as_ref()?;
    let fact = quote(&layout.model.fact_table);
    let cols: Vec<String> = ti
        .columns
        .iter()
        .map(|c| format!("{fact}.{}", quote(&c.column)))
        .collect();
    let mut sql = format!("SELECT {} FROM {fact}", cols.join(", "));
    if let (Some(p), Some(r)) = (&layout.partition, range) {
        let col = column_sql(&p.column);
        sql.push_str(&format!(
            " WHERE {col} >= {} AND {col} < {}",
            boundary_sql(&p.kind, r.start),
            boundary_sql(&p.kind, r.end)
        ));
    }
    if !ti.sort.is_empty() {
        let keys: Vec<String> = ti
            .sort
            .iter()
            .map(|&i| format!("{} ASC NULLS LAST", cols[i]))
            .collect();
        sql.push_str(&format!(" ORDER BY {}", keys.join(", ")));
    }
    Some(sql)
}

/// `SELECT * FROM table ORDER BY primary key`: a lookup's snapshot (sorted by key so that
/// per-block min/max prunes lookups by key).
pub fn snapshot_sql(join: &ResolvedJoin) -> String {
    let keys: Vec<String> = join
        .primary_key
        .iter()
        .map(|k| format!("{} ASC NULLS LAST", quote(&k.column)))
        .collect();
    format!(
        "SELECT * FROM {} ORDER BY {}",
        quote(&join.table),
        keys.join(", ")
    )
}
