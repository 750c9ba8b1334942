//! Source tables as DataFusion sees them: where a table's files are (relative to
//! `kylin.source.url`) and the provider that reads them with the table's declared schema.
//! Builds (the flat table) and queries (the catalog, pushdown, lookup tables) both register
//! tables through this one module.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::error::{Error, Result};
use crate::model::{table_schema, SourceFormat, TableDesc};

/// Resolves a table's location against `kylin.source.url`.
pub fn table_location(table: &TableDesc, source_url: &Path) -> PathBuf {
    let loc = Path::new(&table.location);
    if loc.is_absolute() {
        loc.to_path_buf()
    } else {
        source_url.join(loc)
    }
}

/// A listing table over the table's file(s) with the declared schema: no I/O until scanned.
pub fn table_provider(t: &TableDesc, source_url: &Path) -> Result<Arc<dyn TableProvider>> {
    let path = table_location(t, source_url);
    let schema = table_schema(t)?;
    let format: Arc<dyn FileFormat> = match t.format {
        SourceFormat::Parquet => Arc::new(ParquetFormat::default()),
        SourceFormat::Csv => Arc::new(CsvFormat::default().with_has_header(true)),
    };
    // A single file is listed by its own name, whatever its extension.
    let ext = if path.is_file() {
        path.extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default()
    } else {
        default_extension(t).to_string()
    };
    let mut location = path.to_string_lossy().to_string();
    if path.is_dir() && !location.ends_with('/') {
        location.push('/');
    }
    let url = ListingTableUrl::parse(&location)?;
    let options = ListingOptions::new(format).with_file_extension(ext);
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// The extension of a table's files when its location is a directory.
fn default_extension(t: &TableDesc) -> &'static str {
    match t.format {
        SourceFormat::Parquet => ".parquet",
        SourceFormat::Csv => ".csv",
    }
}

/// Whether `dir` (or a directory below it) holds a file ending in `ext`.
fn has_data_file(dir: &Path, ext: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            has_data_file(&p, ext)
        } else {
            p.to_string_lossy().ends_with(ext)
        }
    })
}

/// A session with every table of `tables` registered under its own name, each read with
/// its declared schema through [`table_provider`] (the same providers queries use). Strings
/// are read as plain `Utf8` so that stored dimension columns have one string type.
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
        // A build must not read a missing table as an empty one: a directory holds at least
        // one file of the table's format.
        let ext = default_extension(t);
        if !path.exists() || (path.is_dir() && !has_data_file(&path, ext)) {
            return Err(Error::NotFound {
                kind: "source file of table",
                name: format!("{} ({}, no *{ext} file)", t.name, path.display()),
            });
        }
        ctx.register_table(
            TableReference::bare(t.name.as_str()),
            table_provider(t, source_url)?,
        )?;
    }
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::desc::ColumnDesc;

    #[tokio::test]
    async fn a_build_refuses_a_missing_or_empty_table_location() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("empty/part=1")).unwrap();
        for location in ["missing", "empty"] {
            let t = TableDesc {
                location: location.into(),
                ..table()
            };
            let Err(err) = source_context(&[t], dir.path()).await else {
                panic!("{location}: registered");
            };
            assert!(
                matches!(err, Error::NotFound { .. }) && err.to_string().contains("lineorder"),
                "{location}: {err}"
            );
        }
    }

    fn table() -> TableDesc {
        TableDesc {
            project: "ssb".into(),
            name: "lineorder".into(),
            location: String::new(),
            format: SourceFormat::Parquet,
            columns: vec![ColumnDesc {
                name: "lo_orderkey".into(),
                data_type: "bigint".into(),
            }],
            csv_delimiter: None,
            csv_header: None,
            partition_columns: vec![],
        }
    }
}
