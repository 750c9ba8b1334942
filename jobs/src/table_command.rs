//! `qilin-jobs table ...`: register, reload, list, show and drop source tables (the work is
//! `qilin_engine::admin::tables`; this module parses flags and prints).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use qilin_engine::admin::tables::{self, AddTable, ReloadReport, TableRef};
use qilin_engine::metadata::managers::Metadata;
use qilin_engine::model::desc::from_json;
use qilin_engine::model::{ColumnDesc, SourceFormat};

#[derive(Subcommand)]
pub enum TableCommand {
    /// Register a source table; its columns are read from the files unless --schema is given.
    Add {
        #[arg(long)]
        project: String,
        #[arg(long)]
        name: String,
        /// A file, a directory (Hive `key=value/` subdirectories become partition columns) or
        /// a glob (`*`, `?`), relative to kylin.source.url unless absolute.
        #[arg(long)]
        location: String,
        /// parquet or csv (default: from the location's extension; else parquet).
        #[arg(long)]
        format: Option<String>,
        /// CSV field delimiter: one character, or `\t` for a tab (default `,`).
        #[arg(long)]
        csv_delimiter: Option<String>,
        /// Whether the CSV files start with a header line: true (default) or false.
        #[arg(long)]
        csv_header: Option<String>,
        /// JSON file with the columns: [{"name": "id", "data_type": "bigint"}, ...].
        #[arg(long)]
        schema: Option<PathBuf>,
    },
    /// Re-read a table's files, save the new columns and report what changed and which
    /// models and cubes use a removed or changed column.
    Reload {
        #[arg(long)]
        project: String,
        #[arg(long)]
        name: String,
        /// JSON file with the new columns, instead of reading them from the files.
        #[arg(long)]
        schema: Option<PathBuf>,
    },
    /// The tables of a project.
    List {
        #[arg(long)]
        project: String,
    },
    /// One table as stored (JSON).
    Show {
        #[arg(long)]
        project: String,
        #[arg(long)]
        name: String,
    },
    /// Remove a table (refused while a model uses it).
    Drop {
        #[arg(long)]
        project: String,
        #[arg(long)]
        name: String,
    },
}

pub async fn run(meta: &Metadata, source_url: &Path, command: TableCommand) -> anyhow::Result<()> {
    match command {
        TableCommand::Add {
            project,
            name,
            location,
            format,
            csv_delimiter,
            csv_header,
            schema,
        } => {
            let request = AddTable {
                project,
                name,
                location,
                format: format.as_deref().map(parse_format).transpose()?,
                csv_delimiter: csv_delimiter.as_deref().map(parse_delimiter).transpose()?,
                csv_header: csv_header.as_deref().map(parse_header).transpose()?,
                schema: schema.as_deref().map(read_schema).transpose()?,
            };
            let t = tables::add(meta, source_url, &request).await?;
            println!("{}", serde_json::to_string_pretty(&t)?);
            eprintln!(
                "table {}.{} added: {} columns{}",
                t.project,
                t.name,
                t.columns.len(),
                match t.partition_columns.len() {
                    0 => String::new(),
                    n => format!(" and {n} partition columns"),
                }
            );
        }
        TableCommand::Reload {
            project,
            name,
            schema,
        } => {
            let request = TableRef {
                project,
                name,
                schema: schema.as_deref().map(read_schema).transpose()?,
            };
            let report = tables::reload(meta, source_url, &request).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            eprintln!("{}", summary(&report));
        }
        TableCommand::List { project } => {
            println!(
                "{:<24}  {:<7}  {:>7}  LOCATION",
                "NAME", "FORMAT", "COLUMNS"
            );
            for t in tables::list(meta, &project)? {
                println!(
                    "{:<24}  {:<7}  {:>7}  {}",
                    t.name,
                    format!("{:?}", t.format).to_lowercase(),
                    t.columns.len() + t.partition_columns.len(),
                    t.location
                );
            }
        }
        TableCommand::Show { project, name } => {
            let t = tables::show(meta, &project, &name)?;
            println!("{}", serde_json::to_string_pretty(&t)?);
        }
        TableCommand::Drop { project, name } => {
            let t = tables::drop(meta, &project, &name)?;
            eprintln!("table {}.{} dropped", t.project, t.name);
        }
    }
    Ok(())
}

/// One line for people: counts, and who uses what changed.
fn summary(r: &ReloadReport) -> String {
    let mut line = format!(
        "table {} reloaded: {} added, {} removed, {} changed",
        r.table,
        r.added.len(),
        r.removed.len(),
        r.changed.len()
    );
    if r.kept_stored_columns {
        line.push_str(" (stored columns kept: the CSV files have no header)");
    }
    let users: Vec<String> = r
        .models
        .iter()
        .map(|m| format!("model {} ({})", m.name, m.columns.join(", ")))
        .chain(
            r.cubes
                .iter()
                .map(|c| format!("cube {} ({})", c.name, c.columns.join(", "))),
        )
        .collect();
    if !users.is_empty() {
        line.push_str(&format!(
            "; check {} before the next build",
            users.join(", ")
        ));
    }
    line
}

fn parse_format(s: &str) -> anyhow::Result<SourceFormat> {
    match s.to_ascii_lowercase().as_str() {
        "parquet" => Ok(SourceFormat::Parquet),
        "csv" => Ok(SourceFormat::Csv),
        _ => bail!("--format {s:?}: expected parquet or csv"),
    }
}

fn parse_delimiter(s: &str) -> anyhow::Result<char> {
    if s == "\\t" {
        return Ok('\t');
    }
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Ok(c),
        _ => bail!("--csv-delimiter {s:?}: expected one character (or \\t for a tab)"),
    }
}

fn parse_header(s: &str) -> anyhow::Result<bool> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => bail!("--csv-header {s:?}: expected true or false"),
    }
}

/// A schema file: a JSON array of {"name", "data_type"}; errors name the file.
fn read_schema(path: &Path) -> anyhow::Result<Vec<ColumnDesc>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read --schema file {}", path.display()))?;
    Ok(from_json(
        &format!("--schema file {}", path.display()),
        &bytes,
    )?)
}
