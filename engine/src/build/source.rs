//! Source tables as DataFusion sees them, and the flat-table query of a cube: the fact table
//! joined to its lookups, restricted to a segment's range, projecting rowkey columns and
//! measure inputs.

use std::path::{Path, PathBuf};

use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionConfig, SessionContext};

use crate::error::{Error, Result};
use crate::model::{
    table_schema, CubeLayout, JoinKind, ModelColumn, PartitionKind, SegmentRange, SourceFormat,
    TableDesc,
};

/// Resolves a table's location against `kylin.source.url`.
pub fn table_location(table: &TableDesc, source_url: &Path) -> PathBuf {
    let loc = Path::new(&table.location);
    if loc.is_absolute() {
        loc.to_path_buf()
    } else {
        source_url.join(loc)
    }
}

/// A session with every table of `tables` registered under its own name. Strings are read
/// as plain `Utf8` so that stored dimension columns have one string type.
pub async fn source_context(tables: &[TableDesc], source_url: &Path) -> Result<SessionContext> {
    let mut config = SessionConfig::new();
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    let ctx = SessionContext::new_with_config(config);
    for t in tables {
        let path = table_location(t, source_url);
        if !path.exists() {
            return Err(Error::NotFound {
                kind: "source file of table",
                name: format!("{} ({})", t.name, path.display()),
            });
        }
        let path_str = path.to_string_lossy().to_string();
        let name = quote(&t.name);
        match t.format {
            SourceFormat::Parquet => {
                ctx.register_parquet(&name, &path_str, ParquetReadOptions::default())
                    .await?
            }
            SourceFormat::Csv => {
                let schema = table_schema(t)?;
                let opts = CsvReadOptions::new().has_header(true).schema(&schema);
                ctx.register_csv(&name, &path_str, opts).await?
            }
        }
    }
    Ok(ctx)
}

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
