//! Source tables as DataFusion sees them: where a table's files are (relative to
//! `kylin.source.url`) and the provider that reads them with the table's declared schema.
//! Builds (the flat table) and queries (the catalog, pushdown, lookup tables) both register
//! tables through this one module.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::TryStreamExt;

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

/// Whether a location is a glob (`*`, `?` or `[...]` in it) rather than a file or directory.
pub fn is_glob(location: &str) -> bool {
    location.contains(['*', '?', '['])
}

/// Where and how DataFusion lists a table's files: the listing URL (a directory ends with
/// `/`; a glob keeps its pattern) and the extension every listed file must end with (a single
/// file: its own; a directory: the format's; a glob: none, the pattern selects).
fn listing_url(t: &TableDesc, source_url: &Path) -> Result<(ListingTableUrl, String)> {
    let path = table_location(t, source_url);
    let mut location = path.to_string_lossy().to_string();
    let ext = if is_glob(&t.location) {
        String::new()
    } else if path.is_file() {
        path.extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default()
    } else {
        if path.is_dir() && !location.ends_with('/') {
            location.push('/');
        }
        default_extension(t).to_string()
    };
    Ok((ListingTableUrl::parse(&location)?, ext))
}

/// The file format with the table's CSV options; a delimiter must be one ASCII character.
fn file_format(t: &TableDesc) -> Result<Arc<dyn FileFormat>> {
    Ok(match t.format {
        SourceFormat::Parquet => Arc::new(ParquetFormat::default()),
        SourceFormat::Csv => {
            let mut csv = CsvFormat::default().with_has_header(t.csv_header.unwrap_or(true));
            if let Some(d) = t.csv_delimiter {
                csv = csv.with_delimiter(csv_delimiter_byte(t, d)?);
            }
            Arc::new(csv)
        }
    })
}

/// A CSV delimiter as the byte the CSV reader takes; anything but one printable ASCII
/// character (or tab) other than a quote is refused.
pub fn csv_delimiter_byte(t: &TableDesc, d: char) -> Result<u8> {
    if d == '\t' || (d.is_ascii_graphic() && d != '"') || d == ' ' {
        Ok(d as u8)
    } else {
        Err(Error::invalid(
            format!("table {}.{}", t.project, t.name),
            format!("csv_delimiter {d:?} must be one ASCII character other than '\"' (or a tab)"),
        ))
    }
}

/// Listing options: format, file extension and the Hive partition columns with their types.
fn listing_options(t: &TableDesc, ext: String) -> Result<ListingOptions> {
    let partitions = table_schema(&TableDesc {
        columns: t.partition_columns.clone(),
        partition_columns: vec![],
        ..t.clone()
    })?
    .fields()
    .iter()
    .map(|f| (f.name().clone(), f.data_type().clone()))
    .collect();
    Ok(ListingOptions::new(file_format(t)?)
        .with_file_extension(ext)
        .with_table_partition_cols(partitions))
}

/// A listing table over the table's file(s) with the declared schema (file columns, then
/// partition columns taken from `key=value/` directory names): no I/O until scanned.
pub fn table_provider(t: &TableDesc, source_url: &Path) -> Result<Arc<dyn TableProvider>> {
    let (url, ext) = listing_url(t, source_url)?;
    let file_schema = table_schema(&TableDesc {
        partition_columns: vec![],
        ..t.clone()
    })?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(listing_options(t, ext)?)
        .with_schema(file_schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// The schema DataFusion infers from the table's files: the file columns only.
pub async fn infer_file_schema(t: &TableDesc, source_url: &Path) -> Result<SchemaRef> {
    let (url, ext) = listing_url(t, source_url)?;
    let options = ListingOptions::new(file_format(t)?).with_file_extension(ext);
    Ok(options
        .infer_schema(&SessionContext::new().state(), &url)
        .await?)
}

/// A file of a table as DataFusion lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedFile {
    /// The file's path.
    pub path: String,
    /// The directories between the table's location (or a glob's fixed prefix) and the file.
    pub dirs: Vec<String>,
}

/// The files a scan of the table reads, in listing order: those of the table's format
/// directly in a directory location or in its `key=value/` subdirectories, the files a glob
/// matches, or the one file.
pub async fn list_files(t: &TableDesc, source_url: &Path) -> Result<Vec<ListedFile>> {
    list_files_in(&SessionContext::new(), t, source_url).await
}

async fn list_files_in(
    ctx: &SessionContext,
    t: &TableDesc,
    source_url: &Path,
) -> Result<Vec<ListedFile>> {
    let (url, ext) = listing_url(t, source_url)?;
    let state = ctx.state();
    let store = state.runtime_env().object_store(&url)?;
    let metas: Vec<_> = url
        .list_all_files(&state, store.as_ref(), &ext)
        .await?
        .try_collect()
        .await?;
    let mut files: Vec<ListedFile> = metas
        .into_iter()
        .map(|m| {
            let mut dirs: Vec<String> = url
                .strip_prefix(&m.location)
                .map(|segments| segments.map(str::to_string).collect())
                .unwrap_or_default();
            dirs.pop();
            ListedFile {
                path: format!("/{}", m.location),
                dirs,
            }
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// The extension of a table's files when its location is a directory.
fn default_extension(t: &TableDesc) -> &'static str {
    match t.format {
        SourceFormat::Parquet => ".parquet",
        SourceFormat::Csv => ".csv",
    }
}

/// The error for a location without a file to read, naming the table and the location.
pub fn no_files_error(t: &TableDesc, source_url: &Path) -> Error {
    let path = table_location(t, source_url);
    let what = if is_glob(&t.location) {
        "no file matches".to_string()
    } else {
        format!("no *{} file", default_extension(t))
    };
    Error::NotFound {
        kind: "source file of table",
        name: format!("{} ({}, {what})", t.name, path.display()),
    }
}

/// A session with every table of `tables` registered under its own name, each read with
/// its declared schema through [`table_provider`] (the same providers queries use). Strings
/// are read as plain `Utf8` so that stored dimension columns have one string type.
pub async fn source_context(tables: &[TableDesc], source_url: &Path) -> Result<SessionContext> {
    source_context_with(tables, source_url, None).await
}

/// [`source_context`] whose scans split into `partitions` (default: one per core here). A
/// plan for a cluster is split for the cluster's cores, not the planning machine's.
pub async fn source_context_with(
    tables: &[TableDesc],
    source_url: &Path,
    partitions: Option<usize>,
) -> Result<SessionContext> {
    let mut config = SessionConfig::new();
    if let Some(n) = partitions {
        config = config.with_target_partitions(n.max(1));
    }
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    let ctx = SessionContext::new_with_config(config);
    for t in tables {
        // A build must not read a missing table as an empty one: the location lists at
        // least one file (the same listing the scan uses).
        if list_files_in(&ctx, t, source_url).await?.is_empty() {
            return Err(no_files_error(t, source_url));
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
