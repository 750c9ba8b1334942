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
    let (format, default_ext): (Arc<dyn FileFormat>, &str) = match t.format {
        SourceFormat::Parquet => (Arc::new(ParquetFormat::default()), ".parquet"),
        SourceFormat::Csv => (Arc::new(CsvFormat::default().with_has_header(true)), ".csv"),
    };
    // A single file is listed by its own name, whatever its extension.
    let ext = if path.is_file() {
        path.extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default()
    } else {
        default_ext.to_string()
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
        if !path.exists() {
            return Err(Error::NotFound {
                kind: "source file of table",
                name: format!("{} ({})", t.name, path.display()),
            });
        }
        ctx.register_table(
            TableReference::bare(t.name.as_str()),
            table_provider(t, source_url)?,
        )?;
    }
    Ok(ctx)
}
