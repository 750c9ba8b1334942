//! Source tables: add (schema inferred from the files), reload, list, show, drop.
//!
//! A table's location is a file, a directory or a glob under `kylin.source.url` (or
//! absolute). Its columns are what DataFusion infers from the files (or a declared schema),
//! written with Qilin's SQL type names; Hive-style `key=value/` directories become partition
//! columns after the file columns. Every operation checks everything before it writes, and
//! writes one resource with check-and-put, so an error leaves the store as it was.
//!
//! `reload` re-reads the files: the file columns are inferred again, except for CSV files
//! without a header line, whose column names exist only in the stored schema: those are kept
//! (the files must still have as many columns). A reload given a `schema` takes it instead,
//! which is how a declared schema is changed (or kept, when inference would pick other types).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use datafusion::arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metadata::managers::{table_path, Metadata};
use crate::model::{
    parse_sql_type, sql_type_name, ColumnDesc, CubeDesc, ModelDesc, SourceFormat, TableDesc,
};
use crate::names::validate_name;
use crate::source::{
    self, csv_delimiter_byte, list_files, no_files_error, table_location, ListedFile,
};

/// A request to register a source table (the JSON body of `qilin.table.add`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddTable {
    pub project: String,
    pub name: String,
    /// A file, a directory of files or a glob, relative to `kylin.source.url` unless absolute.
    pub location: String,
    /// Default: from the location's extension (`.csv`, `.parquet`); for a directory holding
    /// only CSV files, csv; else parquet.
    #[serde(default)]
    pub format: Option<SourceFormat>,
    #[serde(default)]
    pub csv_delimiter: Option<char>,
    #[serde(default)]
    pub csv_header: Option<bool>,
    /// The columns, instead of inferring them. An entry named like a partition directory key
    /// gives that partition column's type.
    #[serde(default)]
    pub schema: Option<Vec<ColumnDesc>>,
}

/// A table named in its project (the body of the other `qilin.table.*` actions); `schema`
/// only for reload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableRef {
    pub project: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Vec<ColumnDesc>>,
}

/// What a reload changed, and who uses the columns that were removed or changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// `project.table`.
    pub table: String,
    pub added: Vec<ColumnDesc>,
    pub removed: Vec<ColumnDesc>,
    pub changed: Vec<TypeChange>,
    /// Models that refer to a removed or changed column.
    pub models: Vec<ColumnUsers>,
    /// Cubes that refer to a removed or changed column (or to a computed column using one).
    pub cubes: Vec<ColumnUsers>,
    /// The stored file columns were kept (CSV without a header line: names come only from
    /// the stored schema).
    pub kept_stored_columns: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypeChange {
    pub column: String,
    pub from: String,
    pub to: String,
}

/// A model or cube and the affected columns it refers to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnUsers {
    pub name: String,
    pub columns: Vec<String>,
}

impl ReloadReport {
    pub fn is_unchanged(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

fn what(project: &str, name: &str) -> String {
    format!("table {project}.{name}")
}

/// Registers a table: checks the request and the files, infers the columns, writes the
/// table (refused if it exists).
pub async fn add(meta: &Metadata, source_url: &Path, req: &AddTable) -> Result<TableDesc> {
    validate_name("project", &req.project)?;
    validate_name("table", &req.name)?;
    let what = what(&req.project, &req.name);
    if meta.project(&req.project)?.is_none() {
        return Err(Error::NotFound {
            kind: "project",
            name: req.project.clone(),
        });
    }
    let path = table_path(&req.project, &req.name);
    if meta.get_json::<TableDesc>(&path)?.is_some() {
        return Err(already_exists(req));
    }
    if req.location.trim().is_empty() {
        return Err(Error::invalid(&what, "location is empty"));
    }
    let mut table = TableDesc {
        project: req.project.clone(),
        name: req.name.clone(),
        location: req.location.clone(),
        format: SourceFormat::Parquet,
        columns: vec![],
        csv_delimiter: req.csv_delimiter,
        csv_header: req.csv_header,
        partition_columns: vec![],
    };
    table.format = match req.format {
        Some(f) => f,
        None => default_format(&table, source_url).await?,
    };
    if table.format != SourceFormat::Csv
        && (req.csv_delimiter.is_some() || req.csv_header.is_some())
    {
        return Err(Error::invalid(
            &what,
            "csv_delimiter and csv_header apply to CSV tables only; this table's format is parquet",
        ));
    }
    if let Some(d) = table.csv_delimiter {
        csv_delimiter_byte(&table, d)?;
    }
    let (columns, partition_columns) =
        read_columns(&table, source_url, req.schema.as_deref(), None).await?;
    table.columns = columns;
    table.partition_columns = partition_columns;
    match meta.put_json(&path, &table, None) {
        Ok(_) => Ok(table),
        Err(Error::Conflict { .. }) => Err(already_exists(req)),
        Err(e) => Err(e),
    }
}

fn already_exists(req: &AddTable) -> Error {
    Error::AlreadyExists {
        kind: "table",
        name: format!("{}.{}", req.project, req.name),
    }
}

/// The format a location's extension names; for a directory without an extension, csv when
/// it holds CSV files and no Parquet files; else parquet.
async fn default_format(t: &TableDesc, source_url: &Path) -> Result<SourceFormat> {
    let last = t.location.trim_end_matches('/').rsplit('/').next();
    let ext = last.and_then(|s| s.rsplit_once('.')).map(|(_, e)| e);
    match ext.map(str::to_ascii_lowercase).as_deref() {
        Some("csv") => return Ok(SourceFormat::Csv),
        Some("parquet" | "parq") => return Ok(SourceFormat::Parquet),
        _ => {}
    }
    if table_location(t, source_url).is_dir() {
        let as_format = |format| TableDesc {
            format,
            ..t.clone()
        };
        if list_files(&as_format(SourceFormat::Parquet), source_url)
            .await?
            .is_empty()
            && !list_files(&as_format(SourceFormat::Csv), source_url)
                .await?
                .is_empty()
        {
            return Ok(SourceFormat::Csv);
        }
    }
    Ok(SourceFormat::Parquet)
}

/// The file columns and partition columns of `t`'s files: the files must exist; file
/// columns are `declared`, else `keep` (checked against the files' column count), else
/// inferred; partition columns come from the directories (typed by `declared` if it names
/// them).
async fn read_columns(
    t: &TableDesc,
    source_url: &Path,
    declared: Option<&[ColumnDesc]>,
    keep: Option<&[ColumnDesc]>,
) -> Result<(Vec<ColumnDesc>, Vec<ColumnDesc>)> {
    let what = what(&t.project, &t.name);
    let files = list_files(t, source_url).await?;
    if files.is_empty() {
        return Err(no_files_error(t, source_url));
    }
    let mut partitions = partition_columns(t, &files)?;
    let columns = match (declared, keep) {
        (Some(declared), _) => {
            let mut file_columns = Vec::new();
            for c in declared {
                match partitions.iter_mut().find(|p| p.name == c.name) {
                    Some(p) => p.data_type = c.data_type.clone(),
                    None => file_columns.push(c.clone()),
                }
            }
            if file_columns.is_empty() {
                return Err(Error::invalid(&what, "the schema declares no file column"));
            }
            file_columns
        }
        (None, Some(kept)) => {
            let found = infer_file_schema(t, source_url).await?.fields().len();
            if found != kept.len() {
                return Err(Error::invalid(
                    &what,
                    format!(
                        "the files have {found} columns, the stored schema {}; give the new schema",
                        kept.len()
                    ),
                ));
            }
            kept.to_vec()
        }
        (None, None) => {
            let schema = infer_file_schema(t, source_url).await?;
            let mut columns = Vec::new();
            for f in schema.fields() {
                let data_type = sql_type_name(f.data_type()).ok_or_else(|| {
                    Error::invalid(
                        &what,
                        format!(
                            "column {} has type {}, which Qilin has no SQL type for; \
                             declare the schema with a supported type",
                            f.name(),
                            f.data_type()
                        ),
                    )
                })?;
                columns.push(ColumnDesc {
                    name: f.name().clone(),
                    data_type,
                });
            }
            columns
        }
    };
    check_columns(&what, &columns, &partitions)?;
    Ok((columns, partitions))
}

/// Names valid and unique (file and partition columns together), types known.
fn check_columns(what: &str, columns: &[ColumnDesc], partitions: &[ColumnDesc]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for c in columns.iter().chain(partitions) {
        validate_name("column", &c.name).map_err(|e| Error::invalid(what, e.to_string()))?;
        if !seen.insert(c.name.to_ascii_lowercase()) {
            return Err(Error::invalid(
                what,
                format!(
                    "column {} appears twice (in the files or as a partition directory key)",
                    c.name
                ),
            ));
        }
        if parse_sql_type(&c.data_type).is_none() {
            return Err(Error::invalid(
                what,
                format!("column {}: unknown type {:?}", c.name, c.data_type),
            ));
        }
    }
    Ok(())
}

/// The file schema DataFusion infers; a failure names the table and location.
async fn infer_file_schema(t: &TableDesc, source_url: &Path) -> Result<SchemaRef> {
    let location = || table_location(t, source_url).display().to_string();
    let schema = source::infer_file_schema(t, source_url)
        .await
        .map_err(|e| {
            Error::invalid(
                what(&t.project, &t.name),
                format!("cannot read the schema of {}: {e}", location()),
            )
        })?;
    if schema.fields().is_empty() {
        return Err(Error::invalid(
            what(&t.project, &t.name),
            format!("the files at {} have no columns", location()),
        ));
    }
    Ok(schema)
}

/// Partition columns from Hive-style `key=value` directories: every file must sit under the
/// same keys in the same order (a scan skips files that do not). Typed integer when every
/// value is one, date when every value is YYYY-MM-DD, else varchar.
fn partition_columns(t: &TableDesc, files: &[ListedFile]) -> Result<Vec<ColumnDesc>> {
    let keys_of = |f: &ListedFile| -> Option<Vec<(String, String)>> {
        f.dirs
            .iter()
            .map(|d| {
                d.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect()
    };
    let first = &files[0];
    let first_keys = keys_of(first).unwrap_or_default();
    let mut values: Vec<Vec<String>> = vec![Vec::new(); first_keys.len()];
    for f in files {
        let keys = keys_of(f);
        let same = keys.as_ref().is_some_and(|k| {
            k.len() == first_keys.len() && k.iter().zip(&first_keys).all(|(a, b)| a.0 == b.0)
        });
        if !same {
            return Err(Error::invalid(
                what(&t.project, &t.name),
                format!(
                    "files {} and {} are not under the same key=value partition directories",
                    first.path, f.path
                ),
            ));
        }
        for (i, (_, v)) in keys.unwrap_or_default().into_iter().enumerate() {
            values[i].push(v);
        }
    }
    Ok(first_keys
        .into_iter()
        .zip(values)
        .map(|((name, _), values)| ColumnDesc {
            name,
            data_type: partition_type(&values).to_string(),
        })
        .collect())
}

fn partition_type(values: &[String]) -> &'static str {
    if values.iter().all(|v| v.parse::<i32>().is_ok()) {
        "integer"
    } else if values.iter().all(|v| v.parse::<i64>().is_ok()) {
        "bigint"
    } else if values
        .iter()
        .all(|v| v.len() == 10 && chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok())
    {
        "date"
    } else {
        "varchar"
    }
}

/// Re-reads a table's files, saves the new columns and reports what changed and which models
/// and cubes use a removed or changed column.
pub async fn reload(meta: &Metadata, source_url: &Path, req: &TableRef) -> Result<ReloadReport> {
    validate_name("project", &req.project)?;
    validate_name("table", &req.name)?;
    let path = table_path(&req.project, &req.name);
    let (old, version) = meta
        .get_json::<TableDesc>(&path)?
        .ok_or_else(|| Error::NotFound {
            kind: "table",
            name: format!("{}.{}", req.project, req.name),
        })?;
    let headerless = old.format == SourceFormat::Csv && old.csv_header == Some(false);
    let keep = (headerless && req.schema.is_none()).then_some(old.columns.as_slice());
    let (columns, partition_columns) =
        read_columns(&old, source_url, req.schema.as_deref(), keep).await?;
    let new = TableDesc {
        columns,
        partition_columns,
        ..old.clone()
    };
    let mut report = diff(&old, &new);
    report.kept_stored_columns = keep.is_some();
    let affected: BTreeSet<String> = report
        .removed
        .iter()
        .map(|c| c.name.clone())
        .chain(report.changed.iter().map(|c| c.column.clone()))
        .collect();
    if !affected.is_empty() {
        let (models, cubes) = users_of_columns(meta, &old, &affected)?;
        report.models = models;
        report.cubes = cubes;
    }
    meta.put_json(&path, &new, Some(version))?;
    Ok(report)
}

fn diff(old: &TableDesc, new: &TableDesc) -> ReloadReport {
    let all = |t: &TableDesc| -> Vec<ColumnDesc> {
        t.columns
            .iter()
            .chain(&t.partition_columns)
            .cloned()
            .collect()
    };
    let (before, after) = (all(old), all(new));
    let find = |cols: &[ColumnDesc], name: &str| cols.iter().find(|c| c.name == name).cloned();
    let mut report = ReloadReport {
        table: format!("{}.{}", old.project, old.name),
        added: after
            .iter()
            .filter(|c| find(&before, &c.name).is_none())
            .cloned()
            .collect(),
        removed: before
            .iter()
            .filter(|c| find(&after, &c.name).is_none())
            .cloned()
            .collect(),
        changed: vec![],
        models: vec![],
        cubes: vec![],
        kept_stored_columns: false,
    };
    for c in &before {
        if let Some(n) = find(&after, &c.name) {
            if !same_type(&c.data_type, &n.data_type) {
                report.changed.push(TypeChange {
                    column: c.name.clone(),
                    from: c.data_type.clone(),
                    to: n.data_type.clone(),
                });
            }
        }
    }
    report
}

/// Type names are compared as types (`int` is `integer`).
fn same_type(a: &str, b: &str) -> bool {
    match (parse_sql_type(a), parse_sql_type(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// The models (of the table's project) and cubes that refer to one of `columns` of table `t`.
fn users_of_columns(
    meta: &Metadata,
    t: &TableDesc,
    columns: &BTreeSet<String>,
) -> Result<(Vec<ColumnUsers>, Vec<ColumnUsers>)> {
    let mut models = Vec::new();
    let mut cubes = Vec::new();
    let cube_descs = meta.cube_descs()?;
    for m in meta.models()? {
        if m.project != t.project {
            continue;
        }
        let Some(refs) = TableRefs::of(&m, &t.name) else {
            continue;
        };
        let (hits, computed) = model_hits(&m, &refs, columns);
        if !hits.is_empty() {
            models.push(ColumnUsers {
                name: m.name.clone(),
                columns: hits.into_iter().collect(),
            });
        }
        for c in cube_descs.iter().filter(|c| c.model == m.name) {
            let hits = cube_hits(c, &refs, columns, &computed);
            if !hits.is_empty() {
                cubes.push(ColumnUsers {
                    name: c.name.clone(),
                    columns: hits.into_iter().collect(),
                });
            }
        }
    }
    Ok((models, cubes))
}

/// How a model names one table: as its fact table and/or through lookup aliases.
struct TableRefs {
    is_fact: bool,
    /// Lowercase names a qualified reference may use (table name, aliases).
    qualifiers: BTreeSet<String>,
    /// Lookup aliases of this table (their primary keys are bare columns of the table).
    aliases: Vec<String>,
}

impl TableRefs {
    fn of(m: &ModelDesc, table: &str) -> Option<TableRefs> {
        let is_fact = m.fact_table.eq_ignore_ascii_case(table);
        let aliases: Vec<String> = m
            .lookups
            .iter()
            .filter(|l| l.table.eq_ignore_ascii_case(table))
            .map(|l| l.name().to_ascii_lowercase())
            .collect();
        if !is_fact && aliases.is_empty() {
            return None;
        }
        let mut qualifiers: BTreeSet<String> = aliases.iter().cloned().collect();
        qualifiers.insert(table.to_ascii_lowercase());
        Some(TableRefs {
            is_fact,
            qualifiers,
            aliases,
        })
    }

    /// The affected column `reference` names, if any: `q.col` with `q` naming this table, or a
    /// bare `col` (a column of any table of the model).
    fn hit(&self, reference: &str, columns: &BTreeSet<String>) -> Option<String> {
        let r = reference.trim();
        let (qualifier, column) = match r.rsplit_once('.') {
            Some((q, c)) => (Some(q.to_ascii_lowercase()), c),
            None => (None, r),
        };
        if qualifier.is_some_and(|q| !self.qualifiers.contains(&q)) {
            return None;
        }
        columns
            .iter()
            .find(|c| c.eq_ignore_ascii_case(column))
            .cloned()
    }
}

/// The affected columns a model refers to, and its computed columns that use one.
fn model_hits(
    m: &ModelDesc,
    refs: &TableRefs,
    columns: &BTreeSet<String>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut hits = BTreeSet::new();
    let mut computed = BTreeSet::new();
    let check = |r: &str, hits: &mut BTreeSet<String>| -> bool {
        match refs.hit(r, columns) {
            Some(c) => {
                hits.insert(c);
                true
            }
            None => false,
        }
    };
    for l in &m.lookups {
        for fk in &l.foreign_key {
            // A bare foreign key is a fact-table column.
            if fk.contains('.') || refs.is_fact {
                check(fk, &mut hits);
            }
        }
        if refs.aliases.contains(&l.name().to_ascii_lowercase()) {
            for pk in &l.primary_key {
                check(pk, &mut hits);
            }
        }
    }
    if let Some(p) = &m.partition {
        if refs.is_fact {
            check(&p.column, &mut hits);
        }
    }
    for cc in &m.computed_columns {
        for ident in identifiers(&cc.expression) {
            if check(&ident, &mut hits) {
                computed.insert(cc.name.to_ascii_lowercase());
            }
        }
    }
    if let Some(f) = &m.filter_condition {
        for ident in identifiers(f) {
            check(&ident, &mut hits);
        }
    }
    (hits, computed)
}

/// The affected columns (and affected computed columns) a cube refers to.
fn cube_hits(
    c: &CubeDesc,
    refs: &TableRefs,
    columns: &BTreeSet<String>,
    computed: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut hits = BTreeSet::new();
    let mut check = |r: &str| {
        if let Some(col) = refs.hit(r, columns) {
            hits.insert(col);
        } else if computed.contains(&r.trim().to_ascii_lowercase()) {
            hits.insert(r.trim().to_string());
        }
    };
    for d in &c.dimensions {
        if let Some(col) = &d.column {
            check(col);
        }
        if let Some(alias) = &d.table {
            for col in &d.derived {
                check(&format!("{alias}.{col}"));
            }
        }
    }
    for m in &c.measures {
        if let Some(col) = &m.column {
            check(col);
        }
    }
    for r in &c.rowkey {
        check(r);
    }
    hits
}

/// The column references of a SQL expression (`col`, `alias.col`); an expression that does
/// not parse falls back to its identifier-like words, so a reference is never missed.
fn identifiers(sql: &str) -> Vec<String> {
    crate::model::sql_identifiers(sql).unwrap_or_else(|_| {
        sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    })
}

/// The tables of a project, by name.
pub fn list(meta: &Metadata, project: &str) -> Result<Vec<TableDesc>> {
    if meta.project(project)?.is_none() {
        return Err(Error::NotFound {
            kind: "project",
            name: project.to_string(),
        });
    }
    let mut tables = meta.tables(project)?;
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tables)
}

/// One table as stored.
pub fn show(meta: &Metadata, project: &str, name: &str) -> Result<TableDesc> {
    meta.table(project, name)
}

/// Removes a table; refused while a model of its project joins it (as fact or lookup).
/// Returns what was removed.
pub fn drop(meta: &Metadata, project: &str, name: &str) -> Result<TableDesc> {
    validate_name("project", project)?;
    validate_name("table", name)?;
    let path = table_path(project, name);
    let (table, version) = meta
        .get_json::<TableDesc>(&path)?
        .ok_or_else(|| Error::NotFound {
            kind: "table",
            name: format!("{project}.{name}"),
        })?;
    let users: BTreeMap<String, &'static str> = meta
        .models()?
        .into_iter()
        .filter(|m| m.project == project)
        .filter_map(|m| {
            let role = if m.fact_table.eq_ignore_ascii_case(name) {
                "fact table"
            } else if m.lookups.iter().any(|l| l.table.eq_ignore_ascii_case(name)) {
                "lookup table"
            } else {
                return None;
            };
            Some((m.name, role))
        })
        .collect();
    if !users.is_empty() {
        return Err(Error::InUse {
            kind: "table",
            name: format!("{project}.{name}"),
            used_by: users
                .iter()
                .map(|(m, role)| format!("model {m} (as {role})"))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    meta.store().check_and_delete(&path, Some(version))?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampSecondArray,
    };
    use datafusion::parquet::arrow::ArrowWriter;

    use super::*;
    use crate::error::ErrorKind;
    use crate::metadata::managers::model_path;
    use crate::metadata::LocalResourceStore;
    use crate::model::{
        table_schema, AggregationGroupDesc, ComputedColumnDesc, DimensionDesc, JoinKind,
        LookupDesc, MeasureDesc, MeasureFunction, ProjectDesc,
    };
    use crate::source::source_context;

    struct Env {
        dir: tempfile::TempDir,
        meta: Metadata,
    }

    impl Env {
        fn new() -> Env {
            let dir = tempfile::tempdir().unwrap();
            let store = LocalResourceStore::open(dir.path().join("meta")).unwrap();
            let meta = Metadata::new(Arc::new(store));
            meta.save_project(&ProjectDesc {
                name: "p".into(),
                description: String::new(),
            })
            .unwrap();
            std::fs::create_dir_all(dir.path().join("source")).unwrap();
            Env { dir, meta }
        }

        fn source(&self) -> std::path::PathBuf {
            self.dir.path().join("source")
        }

        /// Writes a file under the source directory, creating its directories.
        fn write(&self, rel: &str, bytes: &[u8]) {
            let path = self.source().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }

        fn parquet(&self, rel: &str, columns: Vec<(&str, ArrayRef)>) {
            let batch = RecordBatch::try_from_iter(columns).unwrap();
            let mut bytes = Vec::new();
            let mut w = ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
            self.write(rel, &bytes);
        }

        fn sales(&self, rel: &str, ids: Vec<i64>) {
            let n = ids.len();
            self.parquet(
                rel,
                vec![
                    ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
                    (
                        "name",
                        Arc::new(StringArray::from(vec!["x"; n])) as ArrayRef,
                    ),
                    (
                        "amount",
                        Arc::new(Float64Array::from(vec![1.5; n])) as ArrayRef,
                    ),
                ],
            );
        }

        async fn add(&self, name: &str, location: &str) -> Result<TableDesc> {
            add(&self.meta, &self.source(), &request(name, location)).await
        }

        /// Runs SQL over the stored tables of project p as builds read them.
        async fn query(&self, sql: &str) -> Vec<Vec<String>> {
            let tables = self.meta.tables("p").unwrap();
            let ctx = source_context(&tables, &self.source()).await.unwrap();
            let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
            let mut rows = Vec::new();
            for b in &batches {
                for r in 0..b.num_rows() {
                    rows.push(
                        b.columns()
                            .iter()
                            .map(|c| {
                                datafusion::arrow::util::display::array_value_to_string(c, r)
                                    .unwrap()
                            })
                            .collect(),
                    );
                }
            }
            rows
        }
    }

    fn request(name: &str, location: &str) -> AddTable {
        AddTable {
            project: "p".into(),
            name: name.into(),
            location: location.into(),
            format: None,
            csv_delimiter: None,
            csv_header: None,
            schema: None,
        }
    }

    fn col(name: &str, data_type: &str) -> ColumnDesc {
        ColumnDesc {
            name: name.into(),
            data_type: data_type.into(),
        }
    }

    #[tokio::test]
    async fn a_parquet_file_is_added_with_inferred_columns() {
        let env = Env::new();
        env.sales("sales.parquet", vec![1, 2, 3]);
        let t = env.add("sales", "sales.parquet").await.unwrap();
        assert_eq!(t.format, SourceFormat::Parquet);
        assert_eq!(
            t.columns,
            vec![
                col("id", "bigint"),
                col("name", "varchar"),
                col("amount", "double")
            ]
        );
        assert!(t.partition_columns.is_empty());
        assert_eq!(show(&env.meta, "p", "sales").unwrap(), t);
        assert_eq!(list(&env.meta, "p").unwrap(), vec![t]);
        assert_eq!(
            env.query("SELECT count(*), sum(id), sum(amount) FROM sales")
                .await,
            vec![vec!["3", "6", "4.5"]]
        );
        let again = env.add("sales", "sales.parquet").await.unwrap_err();
        assert_eq!(again.kind(), ErrorKind::AlreadyExists, "{again}");
        assert!(again.to_string().contains("p.sales"), "{again}");
    }

    #[tokio::test]
    async fn hive_directories_become_typed_partition_columns() {
        let env = Env::new();
        env.sales(
            "orders/year=2020/day=2020-01-01/region=eu/a.parquet",
            vec![1],
        );
        env.sales(
            "orders/year=2020/day=2020-01-02/region=us/a.parquet",
            vec![2, 3],
        );
        env.sales(
            "orders/year=2021/day=2021-06-30/region=7x/b.parquet",
            vec![4],
        );
        // Not of the table's format: not listed, like a scan would not read it.
        env.write("orders/_SUCCESS", b"");
        let t = env.add("orders", "orders").await.unwrap();
        assert_eq!(t.columns.len(), 3);
        assert_eq!(
            t.partition_columns,
            vec![
                col("year", "integer"),
                col("day", "date"),
                col("region", "varchar")
            ]
        );
        let names: Vec<String> = table_schema(&t)
            .unwrap()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["id", "name", "amount", "year", "day", "region"]);
        assert_eq!(
            env.query(
                "SELECT year, day, region, sum(id) FROM orders \
                 WHERE year = 2020 GROUP BY 1, 2, 3 ORDER BY 2"
            )
            .await,
            vec![
                vec!["2020", "2020-01-01", "eu", "1"],
                vec!["2020", "2020-01-02", "us", "5"]
            ]
        );

        // A file outside the partition directories would be skipped by scans: refused.
        env.sales("mixed/k=1/a.parquet", vec![1]);
        env.sales("mixed/b.parquet", vec![2]);
        let err = env.add("mixed", "mixed").await.unwrap_err();
        assert!(
            err.to_string().contains("not under the same key=value")
                && err.to_string().contains("b.parquet"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_glob_selects_the_files_it_matches() {
        let env = Env::new();
        env.write("logs/2020.csv", b"id,host\n1,a\n2,b\n");
        env.write("logs/2021.csv", b"id,host\n3,c\n");
        env.write("logs/other.csv", b"x\n9\n");
        env.write("logs/readme.txt", b"not data");
        let t = env.add("logs", "logs/20?*.csv").await.unwrap();
        assert_eq!(t.format, SourceFormat::Csv);
        assert_eq!(t.columns, vec![col("id", "bigint"), col("host", "varchar")]);
        assert_eq!(
            env.query("SELECT count(*), sum(id), max(host) FROM logs")
                .await,
            vec![vec!["3", "6", "c"]]
        );
        let err = env.add("none", "logs/*.json").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(
            err.to_string().contains("*.json") && err.to_string().contains("no file matches"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_headerless_pipe_delimited_csv_takes_a_declared_schema() {
        let env = Env::new();
        env.write("raw/part-0.dat", b"1|alpha|2.5\n2|beta|4\n");
        let req = AddTable {
            format: Some(SourceFormat::Csv),
            csv_delimiter: Some('|'),
            csv_header: Some(false),
            schema: Some(vec![
                col("k", "integer"),
                col("label", "varchar"),
                col("v", "double"),
            ]),
            ..request("raw", "raw/part-0.dat")
        };
        let t = add(&env.meta, &env.source(), &req).await.unwrap();
        assert_eq!(t.csv_delimiter, Some('|'));
        assert_eq!(t.csv_header, Some(false));
        assert_eq!(t.columns, req.schema.clone().unwrap());
        assert_eq!(
            env.query("SELECT k, label, v FROM raw ORDER BY k").await,
            vec![vec!["1", "alpha", "2.5"], vec!["2", "beta", "4.0"]]
        );

        // Reload keeps the declared names (the files have none) while the column count holds.
        let reloaded = reload(&env.meta, &env.source(), &table_ref("raw"))
            .await
            .unwrap();
        assert!(reloaded.kept_stored_columns && reloaded.is_unchanged());
        env.write("raw/part-0.dat", b"1|alpha|2.5|x\n");
        let err = reload(&env.meta, &env.source(), &table_ref("raw"))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("4 columns") && err.to_string().contains("stored schema 3"),
            "{err}"
        );
        assert_eq!(show(&env.meta, "p", "raw").unwrap(), t, "nothing written");
    }

    fn table_ref(name: &str) -> TableRef {
        TableRef {
            project: "p".into(),
            name: name.into(),
            schema: None,
        }
    }

    fn model(lookups: Vec<LookupDesc>) -> ModelDesc {
        ModelDesc {
            name: "m".into(),
            project: "p".into(),
            fact_table: "sales".into(),
            lookups,
            computed_columns: vec![ComputedColumnDesc {
                name: "double_amount".into(),
                expression: "amount * 2".into(),
                data_type: "double".into(),
            }],
            partition: None,
            filter_condition: None,
        }
    }

    #[tokio::test]
    async fn reload_reports_changed_columns_and_their_users() {
        let env = Env::new();
        env.sales("sales/a.parquet", vec![1, 2]);
        env.add("sales", "sales").await.unwrap();
        env.meta.save_model(&model(vec![])).unwrap();
        let cube = CubeDesc {
            name: "c".into(),
            model: "m".into(),
            dimensions: vec![DimensionDesc {
                name: None,
                column: Some("name".into()),
                table: None,
                derived: vec![],
            }],
            measures: vec![
                MeasureDesc::simple("n", MeasureFunction::Count, None, None),
                MeasureDesc::simple("total", MeasureFunction::Sum, Some("double_amount"), None),
            ],
            aggregation_groups: vec![AggregationGroupDesc {
                includes: vec!["name".into()],
                mandatory: vec![],
                hierarchies: vec![],
                joints: vec![],
            }],
            rowkey: vec![],
            retention_range_days: None,
            auto_merge_time_ranges: vec![],
            table_index: None,
            mandatory_dimension_set_list: vec![],
            cuboid_black_list: vec![],
        };
        env.meta.save_cube(&cube, 4096).unwrap();

        // Unchanged files: nothing to report.
        let same = reload(&env.meta, &env.source(), &table_ref("sales"))
            .await
            .unwrap();
        assert!(same.is_unchanged() && same.models.is_empty(), "{same:?}");

        // `name` gone, `amount` now an integer, `qty` new, and a partition directory.
        std::fs::remove_dir_all(env.source().join("sales")).unwrap();
        env.parquet(
            "sales/region=eu/a.parquet",
            vec![
                ("id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
                ("amount", Arc::new(Int64Array::from(vec![5])) as ArrayRef),
                ("qty", Arc::new(Int64Array::from(vec![2])) as ArrayRef),
            ],
        );
        let report = reload(&env.meta, &env.source(), &table_ref("sales"))
            .await
            .unwrap();
        assert_eq!(report.table, "p.sales");
        assert_eq!(
            report.added,
            vec![col("qty", "bigint"), col("region", "varchar")]
        );
        assert_eq!(report.removed, vec![col("name", "varchar")]);
        assert_eq!(
            report.changed,
            vec![TypeChange {
                column: "amount".into(),
                from: "double".into(),
                to: "bigint".into()
            }]
        );
        assert_eq!(
            report.models,
            vec![ColumnUsers {
                name: "m".into(),
                columns: vec!["amount".into()]
            }]
        );
        assert_eq!(
            report.cubes,
            vec![ColumnUsers {
                name: "c".into(),
                columns: vec!["double_amount".into(), "name".into()]
            }]
        );
        let stored = show(&env.meta, "p", "sales").unwrap();
        assert_eq!(
            stored.columns,
            vec![
                col("id", "bigint"),
                col("amount", "bigint"),
                col("qty", "bigint")
            ]
        );
        assert_eq!(stored.partition_columns, vec![col("region", "varchar")]);
    }

    #[tokio::test]
    async fn drop_is_refused_while_a_model_joins_the_table() {
        let env = Env::new();
        env.sales("sales.parquet", vec![1]);
        env.parquet(
            "people.parquet",
            vec![
                ("pid", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
                ("pname", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
            ],
        );
        env.add("sales", "sales.parquet").await.unwrap();
        env.add("people", "people.parquet").await.unwrap();
        env.meta
            .save_model(&model(vec![LookupDesc {
                table: "people".into(),
                alias: None,
                join: JoinKind::Inner,
                foreign_key: vec!["id".into()],
                primary_key: vec!["pid".into()],
            }]))
            .unwrap();
        for name in ["people", "sales"] {
            let err = drop(&env.meta, "p", name).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
            assert!(
                err.to_string()
                    .contains(&format!("table p.{name} is used by model m")),
                "{err}"
            );
        }
        assert_eq!(list(&env.meta, "p").unwrap().len(), 2);

        env.meta
            .store()
            .check_and_delete(&model_path("m"), None)
            .unwrap();
        assert_eq!(drop(&env.meta, "p", "people").unwrap().name, "people");
        let err = show(&env.meta, "p", "people").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let err = drop(&env.meta, "p", "people").unwrap_err();
        assert!(
            err.to_string().contains("table p.people not found"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn bad_requests_name_what_is_wrong_and_write_nothing() {
        let env = Env::new();
        env.sales("sales.parquet", vec![1]);
        env.parquet(
            "events.parquet",
            vec![(
                "at",
                Arc::new(TimestampSecondArray::from(vec![0])) as ArrayRef,
            )],
        );
        std::fs::create_dir_all(env.source().join("empty/k=1")).unwrap();
        let cases: Vec<(AddTable, ErrorKind, Vec<&str>)> = vec![
            (
                AddTable {
                    project: "nope".into(),
                    ..request("t", "sales.parquet")
                },
                ErrorKind::NotFound,
                vec!["project nope"],
            ),
            (
                request("bad-name", "sales.parquet"),
                ErrorKind::User,
                vec!["bad-name"],
            ),
            (
                request("t", "missing.parquet"),
                ErrorKind::NotFound,
                vec!["missing.parquet"],
            ),
            (
                request("t", "empty"),
                ErrorKind::NotFound,
                vec!["empty", "no *.parquet file"],
            ),
            (
                AddTable {
                    csv_delimiter: Some(';'),
                    ..request("t", "sales.parquet")
                },
                ErrorKind::User,
                vec!["CSV tables only"],
            ),
            (
                AddTable {
                    format: Some(SourceFormat::Csv),
                    csv_delimiter: Some('é'),
                    ..request("t", "sales.parquet")
                },
                ErrorKind::User,
                vec!["csv_delimiter 'é'"],
            ),
            (
                AddTable {
                    schema: Some(vec![col("id", "bigint"), col("when", "timestamp")]),
                    ..request("t", "sales.parquet")
                },
                ErrorKind::User,
                vec!["column when", "\"timestamp\""],
            ),
            (
                AddTable {
                    schema: Some(vec![col("id", "bigint"), col("id", "integer")]),
                    ..request("t", "sales.parquet")
                },
                ErrorKind::User,
                vec!["column id appears twice"],
            ),
            (
                request("t", "events.parquet"),
                ErrorKind::User,
                vec!["column at", "Timestamp(", "declare the schema"],
            ),
        ];
        for (req, kind, needles) in cases {
            let err = add(&env.meta, &env.source(), &req).await.unwrap_err();
            let msg = err.to_string();
            assert_eq!(err.kind(), kind, "{req:?}: {msg}");
            for n in needles {
                assert!(msg.contains(n), "{req:?}: {n:?} not in {msg}");
            }
        }
        assert!(list(&env.meta, "p").unwrap().is_empty());
        let err = list(&env.meta, "nope").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }
}
