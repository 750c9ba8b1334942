//! The flat-table query of a cube: the fact table joined to its lookups, restricted to a
//! segment's range, projecting rowkey columns and measure inputs. (Source tables themselves
//! are registered by [`crate::source`], for builds and queries alike.)

use crate::model::{CubeLayout, JoinKind, ModelColumn, PartitionKind, SegmentRange};

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

/// `SELECT rowkey columns, measure inputs FROM fact JOIN lookups WHERE partition in range`.
/// Output columns: the rowkey columns in order, then one column per measure that has an input.
pub fn flat_table_sql(layout: &CubeLayout, range: Option<&SegmentRange>) -> String {
    let mut select: Vec<String> = layout
        .rowkey
        .iter()
        .map(|r| format!("{} AS {}", column_sql(&r.source), quote(&r.name)))
        .collect();
    for (i, m) in layout.measures.iter().enumerate() {
        if let Some(input) = &m.input {
            select.push(format!(
                "{} AS {}",
                column_sql(input),
                quote(&format!("__m{i}"))
            ));
        }
    }
    let model = &layout.model;
    let mut from = quote(&model.fact_table);
    for lk in &model.lookups {
        let on: Vec<String> = lk
            .foreign_key
            .iter()
            .zip(&lk.primary_key)
            .map(|(f, p)| {
                let col = |r: &str| r.rsplit('.').next().unwrap_or(r).to_string();
                format!(
                    "{}.{} = {}.{}",
                    quote(&model.fact_table),
                    quote(&col(f)),
                    quote(&lk.table),
                    quote(&col(p))
                )
            })
            .collect();
        let join = match lk.join {
            JoinKind::Inner => "INNER JOIN",
            JoinKind::Left => "LEFT JOIN",
        };
        from = format!("{from} {join} {} ON {}", quote(&lk.table), on.join(" AND "));
    }
    let mut sql = format!("SELECT {} FROM {from}", select.join(", "));
    if let (Some(p), Some(r)) = (&layout.partition, range) {
        let col = column_sql(&p.column);
        sql.push_str(&format!(
            " WHERE {col} >= {} AND {col} < {}",
            boundary_sql(&p.kind, r.start),
            boundary_sql(&p.kind, r.end)
        ));
    }
    sql
}
