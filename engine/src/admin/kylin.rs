//! Import of Apache Kylin 2.x/3.x metadata, as `metastore.sh backup` writes it: `project/`,
//! `table/` (`DB.TABLE--project.json` or `DB.TABLE.json`), `model_desc/` and `cube_desc/`.
//!
//! Kylin writes names in upper case; DataFusion folds unquoted SQL identifiers to lower case,
//! so projects, tables, models, cubes, measures and dimension names are stored in lower case
//! and queries in any case find them. Column names follow the table's files when they can be
//! read (matched case-insensitively), so the declared schema reads the files as they are.
//!
//! Whatever Qilin cannot represent (TOP_N, PERCENTILE, RAW, EXTENDED_COLUMN measures,
//! streaming tables, dictionaries, ...) is reported field by field; the import fails unless
//! asked to skip those. Everything is mapped and validated before anything is written.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::metadata::managers::{self, Metadata};
use crate::model::{
    layout::{resolve_cube, sql_type_name, validate_model, PERCENTILE_COMPRESSION, TOP_N_MAX},
    AggregationGroupDesc, ColumnDesc, ComputedColumnDesc, CubeDesc, DimensionDesc, JoinKind,
    LookupDesc, MeasureDesc, MeasureFunction, ModelDesc, PartitionDesc, ProjectDesc, SourceFormat,
    TableDesc,
};
use crate::names::validate_name;

const DAY_MS: u64 = 86_400_000;
/// Kylin's source types that are streams (`ISourceAware`: streaming, Kafka, Kafka + Hive).
const STREAMING_SOURCE_TYPES: [u64; 3] = [1, 20, 21];

/// What the import needs besides the metadata directory.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// `TABLE` or `DB.TABLE` → the table's files (relative to `kylin.source.url` or absolute).
    pub locations: Vec<(String, String)>,
    /// Leave out what cannot be mapped (listed in [`KylinImport::skipped`]) instead of failing.
    pub skip_unsupported: bool,
    /// `kylin.source.url`, to read the files' schemas.
    pub source_url: PathBuf,
    /// `kylin.cube.aggrgroup.max-combination`, for validating the cubes.
    pub max_cuboids_per_group: u64,
}

/// One Kylin field Qilin cannot represent: where it is and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// The file, relative to the metadata directory (`cube_desc/ssb.json`).
    pub file: String,
    /// A JSON path into the file (`$.measures[3].function.expression`).
    pub json_path: String,
    /// The value found there (shortened).
    pub value: String,
    pub reason: String,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} = {}: {}",
            self.file, self.json_path, self.value, self.reason
        )
    }
}

/// The Qilin descriptors an import produces (validated), and what it left out.
#[derive(Debug, Clone, Default)]
pub struct KylinImport {
    pub projects: Vec<ProjectDesc>,
    pub tables: Vec<TableDesc>,
    pub models: Vec<ModelDesc>,
    pub cubes: Vec<CubeDesc>,
    /// Unsupported fields left out (only with `skip_unsupported`).
    pub skipped: Vec<Unsupported>,
    /// Other remarks (tables left out because no model uses them and no location was given).
    pub notes: Vec<String>,
}

/// Reads, maps and validates a Kylin metadata directory without writing anything.
pub fn plan(dir: &Path, opts: &ImportOptions) -> Result<KylinImport> {
    let files = KylinFiles::read(dir)?;
    let mut cx = Mapper {
        opts,
        files: &files,
        unsupported: Vec::new(),
        notes: Vec::new(),
        used_locations: BTreeSet::new(),
    };
    let mut out = cx.map_all()?;
    for (table, _) in &opts.locations {
        if !cx.used_locations.contains(&table.to_ascii_uppercase()) {
            return Err(Error::invalid(
                format!("--location {table}"),
                "no table of that name in the imported projects",
            ));
        }
    }
    if !cx.unsupported.is_empty() && !opts.skip_unsupported {
        let list: Vec<String> = cx.unsupported.iter().map(|u| format!("  {u}")).collect();
        return Err(Error::invalid(
            format!("Kylin metadata in {}", dir.display()),
            format!(
                "{} field(s) cannot be imported (skip them with --skip-unsupported):\n{}",
                cx.unsupported.len(),
                list.join("\n")
            ),
        ));
    }
    out.skipped = cx.unsupported;
    out.notes = cx.notes;
    for m in &out.models {
        let tables: Vec<TableDesc> = tables_of(&out.tables, &m.project);
        validate_model(m, &tables)?;
    }
    for c in &out.cubes {
        let model = out
            .models
            .iter()
            .find(|m| m.name == c.model)
            .expect("cubes are only mapped for mapped models");
        resolve_cube(
            c,
            model,
            &tables_of(&out.tables, &model.project),
            opts.max_cuboids_per_group,
        )?;
    }
    Ok(out)
}

/// Imports a Kylin metadata directory: [`plan`], then refuses names that exist already, then
/// writes projects, tables, models and cubes. A failed write removes what this import wrote.
pub fn import(meta: &Metadata, dir: &Path, opts: &ImportOptions) -> Result<KylinImport> {
    let out = plan(dir, opts)?;
    let store = meta.store();
    let exists = |kind: &'static str, name: String, path: String| -> Result<()> {
        match store.get(&path)? {
            Some(_) => Err(Error::AlreadyExists { kind, name }),
            None => Ok(()),
        }
    };
    for p in &out.projects {
        exists("project", p.name.clone(), managers::project_path(&p.name))?;
    }
    for t in &out.tables {
        exists(
            "table",
            format!("{}.{}", t.project, t.name),
            managers::table_path(&t.project, &t.name),
        )?;
    }
    for m in &out.models {
        exists("model", m.name.clone(), managers::model_path(&m.name))?;
    }
    for c in &out.cubes {
        exists("cube", c.name.clone(), managers::cube_desc_path(&c.name))?;
        exists("cube", c.name.clone(), managers::cube_path(&c.name))?;
    }
    let mut written: Vec<String> = Vec::new();
    let result = (|| {
        for p in &out.projects {
            written.push(managers::project_path(&p.name));
            meta.save_project(p)?;
        }
        for t in &out.tables {
            written.push(managers::table_path(&t.project, &t.name));
            meta.save_table(t)?;
        }
        for m in &out.models {
            written.push(managers::model_path(&m.name));
            meta.save_model(m)?;
        }
        for c in &out.cubes {
            written.push(managers::cube_desc_path(&c.name));
            written.push(managers::cube_path(&c.name));
            meta.save_cube(c, opts.max_cuboids_per_group)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        for path in written.iter().rev() {
            if let Err(undo) = store.check_and_delete(path, None) {
                log::error!("import failed ({e}); could not remove {path} again: {undo}");
            }
        }
        return Err(e);
    }
    Ok(out)
}

fn tables_of(tables: &[TableDesc], project: &str) -> Vec<TableDesc> {
    tables
        .iter()
        .filter(|t| t.project == project)
        .cloned()
        .collect()
}

// Reading the directory ------------------------------------------------------------------

/// A parsed JSON file of the metadata directory.
struct Doc {
    /// Relative to the metadata directory, for messages.
    file: String,
    value: Value,
}

impl Doc {
    fn root(&self) -> Node<'_> {
        Node {
            file: &self.file,
            path: "$".into(),
            v: &self.value,
        }
    }
}

struct KylinFiles {
    projects: Vec<Doc>,
    /// By upper-case `DB.TABLE`: the global file and the per-project files (project → doc).
    tables: BTreeMap<String, (Option<Doc>, BTreeMap<String, Doc>)>,
    models: Vec<Doc>,
    cubes: Vec<Doc>,
    /// Files of streaming sources (`kafka/`, `streaming/`), reported as unsupported.
    streaming: Vec<String>,
}

impl KylinFiles {
    fn read(dir: &Path) -> Result<KylinFiles> {
        if !dir.join("project").is_dir() {
            return Err(Error::invalid(
                format!("Kylin metadata directory {}", dir.display()),
                "has no project/ folder (expected what `metastore.sh backup` writes: project/, table/, model_desc/, cube_desc/)",
            ));
        }
        let projects = read_folder(dir, "project")?;
        if projects.is_empty() {
            return Err(Error::invalid(
                format!("Kylin metadata directory {}", dir.display()),
                "project/ holds no project file",
            ));
        }
        let mut tables: BTreeMap<String, (Option<Doc>, BTreeMap<String, Doc>)> = BTreeMap::new();
        for doc in read_folder(dir, "table")? {
            let stem = doc
                .file
                .trim_start_matches("table/")
                .trim_end_matches(".json")
                .to_string();
            let (identity, project) = match stem.split_once("--") {
                Some((t, p)) => (t.to_ascii_uppercase(), Some(p.to_string())),
                None => (stem.to_ascii_uppercase(), None),
            };
            let entry = tables.entry(identity).or_default();
            match project {
                Some(p) => {
                    entry.1.insert(p.to_ascii_lowercase(), doc);
                }
                None => entry.0 = Some(doc),
            }
        }
        let mut streaming = Vec::new();
        for folder in ["kafka", "streaming", "streaming_v2"] {
            for doc in read_folder(dir, folder)? {
                streaming.push(doc.file);
            }
        }
        Ok(KylinFiles {
            projects,
            tables,
            models: read_folder(dir, "model_desc")?,
            cubes: read_folder(dir, "cube_desc")?,
            streaming,
        })
    }

    /// The table file for `identity` (`DB.TABLE`) as `project` sees it.
    fn table(&self, identity: &str, project: &str) -> Option<&Doc> {
        let (global, per_project) = self.tables.get(&identity.to_ascii_uppercase())?;
        per_project
            .get(&project.to_ascii_lowercase())
            .or(global.as_ref())
    }
}

/// The `*.json` files of `dir/folder`, sorted by name (none when the folder is missing).
fn read_folder(dir: &Path, folder: &str) -> Result<Vec<Doc>> {
    let path = dir.join(folder);
    let entries = match std::fs::read_dir(&path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io_path("list", &path, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io_path("list", &path, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".json") && entry.path().is_file() {
            names.push(name);
        }
    }
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let file = path.join(&name);
            let bytes = std::fs::read(&file).map_err(|e| Error::io_path("read", &file, e))?;
            let rel = format!("{folder}/{name}");
            let value = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
                what: format!("Kylin metadata file {rel}"),
                source,
            })?;
            Ok(Doc { file: rel, value })
        })
        .collect()
}

/// A value inside a Kylin JSON file, with its file and JSON path for messages.
#[derive(Clone)]
struct Node<'a> {
    file: &'a str,
    path: String,
    v: &'a Value,
}

static NULL: Value = Value::Null;

impl<'a> Node<'a> {
    fn field(&self, key: &str) -> Node<'a> {
        Node {
            file: self.file,
            path: format!("{}.{key}", self.path),
            v: self.v.get(key).unwrap_or(&NULL),
        }
    }

    fn is_empty(&self) -> bool {
        match self.v {
            Value::Null => true,
            Value::String(s) => s.trim().is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        }
    }

    fn error(&self, reason: impl Into<String>) -> Error {
        Error::invalid(
            format!("Kylin metadata {} {}", self.file, self.path),
            reason,
        )
    }

    fn str(&self) -> Result<&'a str> {
        match self.v {
            Value::String(s) if !s.trim().is_empty() => Ok(s.trim()),
            other => Err(self.error(format!(
                "expected a non-empty string, found {}",
                short(other)
            ))),
        }
    }

    fn opt_str(&self) -> Result<Option<&'a str>> {
        if self.is_empty() {
            Ok(None)
        } else {
            self.str().map(Some)
        }
    }

    fn items(&self) -> Result<Vec<Node<'a>>> {
        match self.v {
            Value::Null => Ok(Vec::new()),
            Value::Array(a) => Ok(a
                .iter()
                .enumerate()
                .map(|(i, v)| Node {
                    file: self.file,
                    path: format!("{}[{i}]", self.path),
                    v,
                })
                .collect()),
            other => Err(self.error(format!("expected an array, found {}", short(other)))),
        }
    }

    fn strings(&self) -> Result<Vec<&'a str>> {
        self.items()?.iter().map(|n| n.str()).collect()
    }

    fn opt_u64(&self) -> Result<Option<u64>> {
        match self.v {
            Value::Null => Ok(None),
            Value::Number(n) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.error(format!("expected a non-negative integer, found {n}"))),
            Value::String(s) => {
                s.trim().parse().map(Some).map_err(|_| {
                    self.error(format!("expected a non-negative integer, found {s:?}"))
                })
            }
            other => Err(self.error(format!("expected a number, found {}", short(other)))),
        }
    }

    fn unsupported(&self, reason: impl Into<String>) -> Unsupported {
        Unsupported {
            file: self.file.to_string(),
            json_path: self.path.clone(),
            value: short(self.v),
            reason: reason.into(),
        }
    }
}

/// A JSON value as compact text, at most 80 characters.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(79).collect::<String>())
    } else {
        s
    }
}

/// A Kylin name as Qilin stores it: lower case, checked.
fn qilin_name(node: &Node, kind: &'static str, name: &str) -> Result<String> {
    let lower = name.trim().to_ascii_lowercase();
    validate_name(kind, &lower).map_err(|e| node.error(e.to_string()))?;
    Ok(lower)
}

/// `DB.TABLE` → `TABLE`.
fn short_table_name(identity: &str) -> &str {
    identity.rsplit('.').next().unwrap_or(identity)
}

/// A Kylin (Hive) column type as a Qilin SQL type name, or `None` when Qilin has no such type.
pub fn map_kylin_type(kylin: &str) -> Option<String> {
    let t = kylin.trim().to_ascii_lowercase();
    let base = t.split('(').next().unwrap_or(&t).trim();
    Some(match base {
        "tinyint" | "byte" => "tinyint".into(),
        "smallint" | "short" => "smallint".into(),
        "int" | "integer" => "integer".into(),
        "bigint" | "long" => "bigint".into(),
        "float" | "real" => "float".into(),
        "double" => "double".into(),
        "string" | "varchar" | "char" => "varchar".into(),
        "date" => "date".into(),
        "boolean" => "boolean".into(),
        "decimal" | "numeric" => match t.split_once('(') {
            None => "decimal(19,4)".into(),
            Some((_, rest)) => {
                let inner = rest.strip_suffix(')')?;
                let (p, s) = match inner.split_once(',') {
                    Some((p, s)) => (p.trim().parse::<u8>().ok()?, s.trim().parse::<i8>().ok()?),
                    None => (inner.trim().parse::<u8>().ok()?, 0),
                };
                if p == 0 || p > 38 || s < 0 || s as u8 > p {
                    return None;
                }
                format!("decimal({p},{s})")
            }
        },
        _ => return None,
    })
}

/// Kylin milliseconds as whole days, or `None` when not a whole number of days.
pub fn ms_to_days(ms: u64) -> Option<u32> {
    if !ms.is_multiple_of(DAY_MS) {
        return None;
    }
    u32::try_from(ms / DAY_MS).ok()
}

/// Lower-cases the identifiers of a Kylin SQL expression (not string literals or quoted
/// identifiers) and drops the fact table's qualifier where `unqualify` says the bare name is
/// unambiguous.
fn lower_identifiers(sql: &str, fact_alias: &str, unqualify: &dyn Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(sql.len());
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' || c == '`' {
            let quote = c;
            out.push(c);
            i += 1;
            while i < chars.len() {
                out.push(chars[i]);
                i += 1;
                if chars[i - 1] == quote {
                    break;
                }
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
            let word: String = chars[start..i]
                .iter()
                .collect::<String>()
                .to_ascii_lowercase();
            match word.split_once('.') {
                Some((q, col))
                    if q.eq_ignore_ascii_case(fact_alias)
                        && !col.contains('.')
                        && unqualify(col) =>
                {
                    out.push_str(col)
                }
                _ => out.push_str(&word),
            }
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

// Mapping ---------------------------------------------------------------------------------

struct Mapper<'a> {
    opts: &'a ImportOptions,
    files: &'a KylinFiles,
    unsupported: Vec<Unsupported>,
    notes: Vec<String>,
    /// Upper-case table names (`TABLE` and `DB.TABLE`) that were looked up, to catch typos in
    /// `--location`.
    used_locations: BTreeSet<String>,
}

/// A model's column as Kylin refers to it (`ALIAS.COLUMN`), resolved.
#[derive(Debug, Clone)]
struct ModelColumn {
    /// Lower-case alias (the fact table's name for fact columns).
    alias: String,
    /// The column name Qilin stores (the file's spelling).
    column: String,
    is_fact: bool,
}

/// One mapped model with what its cubes need to resolve Kylin references.
struct MappedModel {
    desc: ModelDesc,
    fact_alias: String,
    /// Upper-case alias → lookup index (None for the fact table).
    aliases: HashMap<String, Option<usize>>,
    /// Every column (tables' and computed), by lower-case alias.
    columns: Vec<ModelColumn>,
}

impl MappedModel {
    /// Resolves `ALIAS.COLUMN`, `DB.TABLE.COLUMN` or a bare unique `COLUMN`.
    fn resolve(&self, node: &Node, reference: &str) -> Result<ModelColumn> {
        let parts: Vec<&str> = reference.trim().split('.').collect();
        let (alias, column) = match parts.as_slice() {
            [c] => (None, *c),
            [a, c] => (Some(*a), *c),
            [_, a, c] => (Some(*a), *c),
            _ => return Err(node.error(format!("cannot read column reference {reference:?}"))),
        };
        let found: Vec<&ModelColumn> = self
            .columns
            .iter()
            .filter(|m| {
                m.column.eq_ignore_ascii_case(column)
                    && alias.is_none_or(|a| m.alias.eq_ignore_ascii_case(a))
            })
            .collect();
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(node.error(format!(
                "column {reference:?} is not a column of model {}",
                self.desc.name
            ))),
            _ => Err(node.error(format!(
                "column {reference:?} is ambiguous in model {}",
                self.desc.name
            ))),
        }
    }

    fn is_unique(&self, column: &str) -> bool {
        self.columns
            .iter()
            .filter(|m| m.column.eq_ignore_ascii_case(column))
            .count()
            == 1
    }

    /// How a Qilin descriptor names the column: bare when unique in the model.
    fn reference(&self, c: &ModelColumn) -> String {
        if self.is_unique(&c.column) {
            c.column.clone()
        } else {
            format!("{}.{}", c.alias, c.column)
        }
    }
}

impl<'a> Mapper<'a> {
    fn skip(&mut self, u: Unsupported) {
        self.unsupported.push(u);
    }

    fn map_all(&mut self) -> Result<KylinImport> {
        let files: &'a KylinFiles = self.files;
        let mut out = KylinImport::default();
        for file in &files.streaming {
            self.unsupported.push(Unsupported {
                file: file.clone(),
                json_path: "$".into(),
                value: "(streaming source configuration)".into(),
                reason: "streaming sources are not supported; only files are".into(),
            });
        }
        let mut mapped_models: Vec<MappedModel> = Vec::new();
        for pdoc in &files.projects {
            let p = pdoc.root();
            let kylin_name = p.field("name").str()?;
            let project = qilin_name(&p.field("name"), "project", kylin_name)?;
            if out.projects.iter().any(|x| x.name == project) {
                return Err(p
                    .field("name")
                    .error(format!("a second project is named {project}")));
            }
            out.projects.push(ProjectDesc {
                name: project.clone(),
                description: p
                    .field("description")
                    .opt_str()
                    .ok()
                    .flatten()
                    .unwrap_or("")
                    .to_string(),
            });
            let model_names: Vec<&str> = p.field("models").strings()?;
            let model_docs: Vec<&Doc> = files
                .models
                .iter()
                .filter(|d| {
                    d.value
                        .get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| {
                            model_names.iter().any(|m| m.eq_ignore_ascii_case(n))
                                || (model_names.is_empty() && files.projects.len() == 1)
                        })
                })
                .collect();
            // Tables: the project's list, plus any a model of the project uses.
            let mut identities: Vec<(String, Node)> = Vec::new();
            for t in p.field("tables").items()? {
                identities.push((t.str()?.to_ascii_uppercase(), t.clone()));
            }
            for d in &model_docs {
                let m = d.root();
                let mut refs = vec![m.field("fact_table")];
                for lk in m.field("lookups").items()? {
                    refs.push(lk.field("table"));
                }
                for r in refs {
                    let id = r.str()?.to_ascii_uppercase();
                    if !identities.iter().any(|(i, _)| *i == id) {
                        identities.push((id, r));
                    }
                }
            }
            let used_by_models: BTreeSet<String> = model_docs
                .iter()
                .flat_map(|d| {
                    let m = &d.value;
                    let mut v = vec![m.get("fact_table").and_then(Value::as_str)];
                    if let Some(Value::Array(lks)) = m.get("lookups") {
                        v.extend(lks.iter().map(|l| l.get("table").and_then(Value::as_str)));
                    }
                    v.into_iter()
                        .flatten()
                        .map(|s| s.to_ascii_uppercase())
                        .collect::<Vec<_>>()
                })
                .collect();
            // Kylin identity (DB.TABLE) → Qilin table name, for this project.
            let mut table_names: HashMap<String, String> = HashMap::new();
            let mut skipped_tables: BTreeSet<String> = BTreeSet::new();
            for (identity, node) in identities {
                match self.map_table(
                    &project,
                    &identity,
                    &node,
                    used_by_models.contains(&identity),
                )? {
                    TableOutcome::Mapped(t) => {
                        if let Some(other) = out
                            .tables
                            .iter()
                            .find(|x| x.project == t.project && x.name == t.name)
                        {
                            return Err(node.error(format!(
                                "table {identity} and another database's table of the same name both become {}.{}",
                                other.project, other.name
                            )));
                        }
                        table_names.insert(identity, t.name.clone());
                        out.tables.push(t);
                    }
                    TableOutcome::Skipped => {
                        skipped_tables.insert(identity);
                    }
                }
            }
            for d in model_docs {
                let root = d.root();
                let uses_skipped = std::iter::once(root.field("fact_table"))
                    .chain(
                        root.field("lookups")
                            .items()?
                            .iter()
                            .map(|l| l.field("table")),
                    )
                    .find(|r| {
                        r.str()
                            .is_ok_and(|s| skipped_tables.contains(&s.to_ascii_uppercase()))
                    });
                if let Some(r) = uses_skipped {
                    let u = r.unsupported("the model uses a table that is not imported");
                    self.skip(u);
                    continue;
                }
                let project_tables = tables_of(&out.tables, &project);
                if let Some(m) = self.map_model(&project, d, &table_names, &project_tables)? {
                    if mapped_models.iter().any(|x| x.desc.name == m.desc.name) {
                        return Err(root
                            .field("name")
                            .error(format!("a second model is named {}", m.desc.name)));
                    }
                    mapped_models.push(m);
                }
            }
        }
        for d in &files.cubes {
            let root = d.root();
            let model_name = root.field("model_name").str()?;
            let Some(model) = mapped_models
                .iter()
                .find(|m| m.desc.name.eq_ignore_ascii_case(model_name))
            else {
                let exists = files.models.iter().any(|m| {
                    m.value
                        .get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.eq_ignore_ascii_case(model_name))
                });
                if exists {
                    let u = root
                        .field("model_name")
                        .unsupported("the cube's model is not imported");
                    self.skip(u);
                    continue;
                }
                return Err(root
                    .field("model_name")
                    .error(format!("no model_desc file defines model {model_name}")));
            };
            let cube = self.map_cube(d, model)?;
            if out.cubes.iter().any(|c: &CubeDesc| c.name == cube.name) {
                return Err(root
                    .field("name")
                    .error(format!("a second cube is named {}", cube.name)));
            }
            out.cubes.push(cube);
        }
        out.models = mapped_models.into_iter().map(|m| m.desc).collect();
        Ok(out)
    }

    fn location_of(&mut self, identity: &str) -> Option<String> {
        let short = short_table_name(identity).to_ascii_uppercase();
        let found = self
            .opts
            .locations
            .iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(identity))
            .or_else(|| {
                self.opts
                    .locations
                    .iter()
                    .find(|(t, _)| t.eq_ignore_ascii_case(&short))
            })
            .map(|(_, l)| l.clone());
        self.used_locations.insert(identity.to_ascii_uppercase());
        self.used_locations.insert(short);
        found
    }

    fn map_table(
        &mut self,
        project: &str,
        identity: &str,
        at: &Node,
        used: bool,
    ) -> Result<TableOutcome> {
        let files: &'a KylinFiles = self.files;
        let Some(doc) = files.table(identity, project) else {
            return Err(at.error(format!(
                "no table file for {identity} (expected table/{identity}--{project}.json or table/{identity}.json)"
            )));
        };
        let root = doc.root();
        let source_type = root.field("source_type").opt_u64()?.unwrap_or(0);
        if STREAMING_SOURCE_TYPES.contains(&source_type) {
            let u = root
                .field("source_type")
                .unsupported("streaming tables are not supported; only files are");
            self.skip(u);
            return Ok(TableOutcome::Skipped);
        }
        let name_node = root.field("name");
        let name = qilin_name(&name_node, "table", name_node.str()?)?;
        let Some(location) = self.location_of(identity) else {
            if used {
                return Err(Error::invalid(
                    format!("table {identity}"),
                    format!(
                        "a model uses it but no --location was given; add --location {}=PATH",
                        short_table_name(identity)
                    ),
                ));
            }
            self.notes.push(format!(
                "table {identity} ({}) not imported: no model uses it and no --location was given",
                doc.file
            ));
            return Ok(TableOutcome::Skipped);
        };
        let path = crate::source::table_location(
            &TableDesc {
                project: project.into(),
                name: name.clone(),
                location: location.clone(),
                format: SourceFormat::Parquet,
                columns: vec![],
                csv_delimiter: None,
                csv_header: None,
                partition_columns: vec![],
            },
            &self.opts.source_url,
        );
        let format = guess_format(&path);
        let file_schema = match format {
            SourceFormat::Parquet => parquet_schema(&path)?,
            SourceFormat::Csv => None,
        };
        let mut columns = Vec::new();
        for col in root.field("columns").items()? {
            let cname = col.field("name").str()?;
            let ctype = col.field("datatype").str()?;
            let mapped = match &file_schema {
                Some((file, fields)) => {
                    let Some((fname, ftype)) =
                        fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(cname))
                    else {
                        return Err(col.field("name").error(format!(
                            "column {cname} is not in {} (its columns: {})",
                            file.display(),
                            fields
                                .iter()
                                .map(|(n, _)| n.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    };
                    ftype.clone().map(|t| (fname.clone(), t))
                }
                None => map_kylin_type(ctype).map(|t| (cname.to_ascii_lowercase(), t)),
            };
            match mapped {
                Some((name, data_type)) => {
                    validate_name("column", &name).map_err(|e| col.error(e.to_string()))?;
                    columns.push(ColumnDesc { name, data_type });
                }
                None => {
                    let u = col
                        .field("datatype")
                        .unsupported(format!("column {cname}: Qilin has no such column type"));
                    self.skip(u);
                }
            }
        }
        if columns.is_empty() {
            return Err(root
                .field("columns")
                .error("the table has no usable column"));
        }
        Ok(TableOutcome::Mapped(TableDesc {
            project: project.into(),
            name,
            location,
            format,
            columns,
            csv_delimiter: None,
            csv_header: None,
            partition_columns: vec![],
        }))
    }

    fn map_model(
        &mut self,
        project: &str,
        doc: &Doc,
        table_names: &HashMap<String, String>,
        tables: &[TableDesc],
    ) -> Result<Option<MappedModel>> {
        let root = doc.root();
        let name = qilin_name(&root.field("name"), "model", root.field("name").str()?)?;
        let table_of = |node: &Node| -> Result<&TableDesc> {
            let id = node.str()?.to_ascii_uppercase();
            let qname = table_names.get(&id).ok_or_else(|| {
                node.error(format!("table {id} is not a table of project {project}"))
            })?;
            Ok(tables
                .iter()
                .find(|t| &t.name == qname)
                .expect("mapped tables are in the project"))
        };
        let fact = table_of(&root.field("fact_table"))?;
        let fact_alias = fact.name.clone();
        let mut aliases: HashMap<String, Option<usize>> = HashMap::new();
        aliases.insert(fact_alias.to_ascii_uppercase(), None);
        let mut columns: Vec<ModelColumn> = fact
            .columns
            .iter()
            .map(|c| ModelColumn {
                alias: fact_alias.clone(),
                column: c.name.clone(),
                is_fact: true,
            })
            .collect();
        // Lookups first (aliases and columns), joins after: a snowflake key may name a later
        // lookup's alias in Kylin's file order.
        let lookup_nodes = root.field("lookups").items()?;
        let mut lookups: Vec<(LookupDesc, Node)> = Vec::new();
        for (i, lk) in lookup_nodes.iter().enumerate() {
            let t = table_of(&lk.field("table"))?;
            let alias = match lk.field("alias").opt_str()? {
                Some(a) => qilin_name(&lk.field("alias"), "alias", a)?,
                None => t.name.clone(),
            };
            if aliases
                .insert(alias.to_ascii_uppercase(), Some(i))
                .is_some()
            {
                return Err(lk
                    .field("alias")
                    .error(format!("alias {alias} is used twice in the model")));
            }
            columns.extend(t.columns.iter().map(|c| ModelColumn {
                alias: alias.clone(),
                column: c.name.clone(),
                is_fact: false,
            }));
            let join = lk.field("join");
            let kind = match join.field("type").opt_str()?.map(str::to_ascii_lowercase) {
                None => JoinKind::Inner,
                Some(k) if k == "inner" => JoinKind::Inner,
                Some(k) if k == "left" => JoinKind::Left,
                Some(k) => {
                    return Err(join.field("type").error(format!(
                        "{k} joins cannot be imported; Qilin joins lookups with inner or left joins"
                    )))
                }
            };
            lookups.push((
                LookupDesc {
                    table: t.name.clone(),
                    alias: (alias != t.name).then(|| alias.clone()),
                    join: kind,
                    foreign_key: vec![],
                    primary_key: vec![],
                },
                join,
            ));
        }
        // Computed columns (Qilin's are over the fact table).
        let mut computed = Vec::new();
        for cc in root.field("computed_columns").items()? {
            let cname = qilin_name(
                &cc.field("columnName"),
                "computed column",
                cc.field("columnName").str()?,
            )?;
            let owner = cc
                .field("tableAlias")
                .opt_str()?
                .or(cc.field("tableIdentity").opt_str()?.map(short_table_name))
                .unwrap_or(&fact_alias);
            if !owner.eq_ignore_ascii_case(&fact_alias) {
                let u = cc.field("tableAlias").unsupported(format!(
                    "computed column {cname} is on lookup {owner}; Qilin's computed columns are on the fact table"
                ));
                self.skip(u);
                continue;
            }
            let data_type = match map_kylin_type(cc.field("datatype").str()?) {
                Some(t) => t,
                None => {
                    let u = cc
                        .field("datatype")
                        .unsupported(format!("computed column {cname}: Qilin has no such type"));
                    self.skip(u);
                    continue;
                }
            };
            computed.push((cname, cc.field("expression"), data_type));
        }
        for (cname, _, _) in &computed {
            columns.push(ModelColumn {
                alias: fact_alias.clone(),
                column: cname.clone(),
                is_fact: true,
            });
        }
        let mut mapped = MappedModel {
            desc: ModelDesc {
                name,
                project: project.into(),
                fact_table: fact.name.clone(),
                lookups: vec![],
                computed_columns: vec![],
                partition: None,
                filter_condition: None,
            },
            fact_alias: fact_alias.clone(),
            aliases,
            columns,
        };
        for (mut lk, join) in lookups {
            let fks = join.field("foreign_key");
            let pks = join.field("primary_key");
            for (i, fk) in fks.strings()?.iter().enumerate() {
                let at = Node {
                    file: fks.file,
                    path: format!("{}[{i}]", fks.path),
                    v: &NULL,
                };
                let c = mapped.resolve(&at, fk)?;
                lk.foreign_key.push(if c.is_fact {
                    c.column
                } else {
                    format!("{}.{}", c.alias, c.column)
                });
            }
            for (i, pk) in pks.strings()?.iter().enumerate() {
                let at = Node {
                    file: pks.file,
                    path: format!("{}[{i}]", pks.path),
                    v: &NULL,
                };
                let c = mapped.resolve(&at, pk)?;
                if !c.alias.eq_ignore_ascii_case(lk.name()) {
                    return Err(
                        at.error(format!("primary key {pk} is not a column of {}", lk.name()))
                    );
                }
                lk.primary_key.push(c.column);
            }
            mapped.desc.lookups.push(lk);
        }
        let unqualify = |c: &str| mapped.is_unique(c);
        let mut computed_columns = Vec::new();
        for (cname, expr, data_type) in &computed {
            computed_columns.push(ComputedColumnDesc {
                name: cname.clone(),
                expression: lower_identifiers(expr.str()?, &fact_alias, &unqualify),
                data_type: data_type.clone(),
            });
        }
        let filter_condition = root
            .field("filter_condition")
            .opt_str()?
            .map(|f| lower_identifiers(f, &fact_alias, &unqualify));
        mapped.desc.computed_columns = computed_columns;
        mapped.desc.filter_condition = filter_condition;
        let pd = root.field("partition_desc");
        if let Some(time) = pd.field("partition_time_column").opt_str()? {
            let u = pd.field("partition_time_column").unsupported(format!(
                "partitioning by time of day ({time}) is not supported; segments are cut on days"
            ));
            self.skip(u);
        }
        if let Some(col) = pd.field("partition_date_column").opt_str()? {
            let c = mapped.resolve(&pd.field("partition_date_column"), col)?;
            let fmt_node = pd.field("partition_date_format");
            let format = fmt_node.opt_str()?;
            let data_type = fact
                .columns
                .iter()
                .find(|x| x.name == c.column)
                .map(|x| x.data_type.as_str());
            let qilin_format = match (data_type, format) {
                _ if !c.is_fact => {
                    return Err(pd
                        .field("partition_date_column")
                        .error("the partition column must be a fact table column"))
                }
                (Some("date"), _) => Some(None),
                (Some("tinyint" | "smallint" | "integer" | "bigint"), None | Some("yyyyMMdd")) => {
                    Some(None)
                }
                (Some("varchar"), None | Some("yyyy-MM-dd")) => Some(Some("yyyy-MM-dd")),
                (Some("varchar"), Some("yyyyMMdd")) => Some(Some("yyyyMMdd")),
                _ => None,
            };
            match qilin_format {
                Some(f) => {
                    mapped.desc.partition = Some(PartitionDesc {
                        column: c.column.clone(),
                        format: f.map(String::from),
                    })
                }
                None => {
                    let u = fmt_node.unsupported(format!(
                        "partition column {} of type {} with this format; Qilin partitions on a date, an integer yyyyMMdd or a string yyyy-MM-dd / yyyyMMdd (the model is imported unpartitioned)",
                        c.column,
                        data_type.unwrap_or("?")
                    ));
                    self.skip(u);
                }
            }
        }
        Ok(Some(mapped))
    }

    fn map_cube(&mut self, doc: &Doc, model: &MappedModel) -> Result<CubeDesc> {
        let root = doc.root();
        let name = qilin_name(&root.field("name"), "cube", root.field("name").str()?)?;
        for (field, reason) in [
            (
                "dictionaries",
                "dictionary settings do not apply: Qilin stores values without global dictionaries",
            ),
            (
                "override_kylin_properties",
                "cube-level Kylin properties are not imported",
            ),
        ] {
            let n = root.field(field);
            if !n.is_empty() {
                let u = n.unsupported(reason);
                self.skip(u);
            }
        }

        // Dimensions: normal ones one by one; derived ones grouped by lookup alias.
        let mut dimensions: Vec<DimensionDesc> = Vec::new();
        // (lower alias, lower column) → stored dimension name, for rowkey and groups.
        let mut stored: HashMap<(String, String), String> = HashMap::new();
        let mut derived_at: HashMap<String, usize> = HashMap::new();
        let mut normal: Vec<ModelColumn> = Vec::new();
        for d in root.field("dimensions").items()? {
            let derived = d.field("derived").strings()?;
            let table = d.field("table").opt_str()?;
            if !derived.is_empty() {
                let Some(alias) = table else {
                    return Err(d
                        .field("table")
                        .error("a derived dimension names its lookup table"));
                };
                let alias = alias
                    .rsplit('.')
                    .next()
                    .unwrap_or(alias)
                    .to_ascii_uppercase();
                let Some(Some(ix)) = model.aliases.get(&alias) else {
                    return Err(d.field("table").error(format!(
                        "{alias} is not a lookup of model {}",
                        model.desc.name
                    )));
                };
                let lk = &model.desc.lookups[*ix];
                let lk_name = lk.name().to_string();
                let mut cols = Vec::new();
                for (i, c) in derived.iter().enumerate() {
                    let at = Node {
                        file: d.file,
                        path: format!("{}.derived[{i}]", d.path),
                        v: &NULL,
                    };
                    cols.push(model.resolve(&at, &format!("{lk_name}.{c}"))?.column);
                }
                // The foreign key is what a derived dimension stores.
                for (fk, pk) in lk.foreign_key.iter().zip(&lk.primary_key) {
                    let (fa, fc) = match fk.split_once('.') {
                        Some((a, c)) => (a.to_string(), c.to_string()),
                        None => (model.fact_alias.clone(), fk.clone()),
                    };
                    let stored_name = fc.to_ascii_lowercase();
                    stored.insert(
                        (fa.to_ascii_lowercase(), fc.to_ascii_lowercase()),
                        stored_name.clone(),
                    );
                    stored.insert(
                        (lk_name.to_ascii_lowercase(), pk.to_ascii_lowercase()),
                        stored_name,
                    );
                }
                match derived_at.get(&lk_name) {
                    Some(&i) => dimensions[i].derived.extend(cols),
                    None => {
                        derived_at.insert(lk_name.clone(), dimensions.len());
                        dimensions.push(DimensionDesc {
                            name: None,
                            column: None,
                            table: Some(lk_name.clone()),
                            derived: cols,
                        });
                    }
                }
                continue;
            }
            let column = d.field("column");
            let col = match column.v {
                Value::Array(a) if a.len() == 1 => column.items()?[0].str()?,
                _ => column.str()?,
            };
            let reference = match table {
                Some(t) => format!("{}.{col}", t.rsplit('.').next().unwrap_or(t)),
                None => col.to_string(),
            };
            let c = model.resolve(&column, &reference)?;
            if !normal
                .iter()
                .any(|n| n.alias == c.alias && n.column == c.column)
            {
                normal.push(c);
            }
        }
        for c in &normal {
            let clash = normal
                .iter()
                .any(|o| o.column.eq_ignore_ascii_case(&c.column) && o.alias != c.alias);
            let stored_name = if clash {
                format!("{}_{}", c.alias, c.column).to_ascii_lowercase()
            } else {
                c.column.to_ascii_lowercase()
            };
            stored.insert(
                (c.alias.to_ascii_lowercase(), c.column.to_ascii_lowercase()),
                stored_name.clone(),
            );
            dimensions.push(DimensionDesc {
                name: clash.then(|| stored_name.clone()),
                column: Some(model.reference(c)),
                table: None,
                derived: vec![],
            });
        }
        // Normal dimensions first, as Kylin lists them; derived ones after.
        dimensions.sort_by_key(|d| d.column.is_none());

        let dim_name = |node: &Node, reference: &str| -> Result<String> {
            let c = model.resolve(node, reference)?;
            stored
                .get(&(c.alias.to_ascii_lowercase(), c.column.to_ascii_lowercase()))
                .cloned()
                .ok_or_else(|| node.error(format!("{reference} is not a dimension of the cube")))
        };
        let names_of = |node: &Node| -> Result<Vec<String>> {
            node.items()?
                .iter()
                .map(|n| dim_name(n, n.str()?))
                .collect()
        };

        let mut rowkey = Vec::new();
        let kylin_rowkey = root.field("rowkey").field("rowkey_columns").items()?;
        for r in &kylin_rowkey {
            let n = dim_name(&r.field("column"), r.field("column").str()?)?;
            if !rowkey.contains(&n) {
                rowkey.push(n);
            }
        }

        // Cube-planner fields: mandatory sets by column names, black-listed cuboids by Kylin
        // cuboid ids (bits over Kylin's rowkey, the first column the most significant),
        // turned into dimension names.
        let mut mandatory_dimension_set_list = Vec::new();
        for set in root.field("mandatory_dimension_set_list").items()? {
            mandatory_dimension_set_list.push(names_of(&set)?);
        }
        let mut cuboid_black_list = Vec::new();
        for id_node in root.field("cuboid_black_list").items()? {
            let n = kylin_rowkey.len();
            let id = id_node.opt_u64()?.unwrap_or(0);
            if n != rowkey.len() || n >= 64 || id >> n != 0 || id == (1u64 << n) - 1 {
                let u = id_node.unsupported(
                    "not a cuboid id over the cube's rowkey columns other than the base \
                     cuboid's; the cuboid stays built",
                );
                self.skip(u);
                continue;
            }
            let dims: Vec<String> = (0..n)
                .filter(|&i| id & (1u64 << (n - 1 - i)) != 0)
                .map(|i| rowkey[i].clone())
                .collect();
            cuboid_black_list.push(dims);
        }

        let mut aggregation_groups = Vec::new();
        for g in root.field("aggregation_groups").items()? {
            let rule = g.field("select_rule");
            if let Some(cap) = rule.field("dim_cap").opt_u64()? {
                if cap > 0 {
                    let u = rule.field("dim_cap").unsupported(
                        "dimension caps are not supported (all combinations are built)",
                    );
                    self.skip(u);
                }
            }
            let mut hierarchies = Vec::new();
            for h in rule.field("hierarchy_dims").items()? {
                hierarchies.push(names_of(&h)?);
            }
            let mut joints = Vec::new();
            for j in rule.field("joint_dims").items()? {
                joints.push(names_of(&j)?);
            }
            aggregation_groups.push(AggregationGroupDesc {
                includes: names_of(&g.field("includes"))?,
                mandatory: names_of(&rule.field("mandatory_dims"))?,
                hierarchies,
                joints,
            });
        }

        let mut measures = Vec::new();
        for m in root.field("measures").items()? {
            if let Some(measure) = self.map_measure(&m, model)? {
                measures.push(measure);
            }
        }

        let retention_node = root.field("retention_range");
        let retention_range_days = match retention_node.opt_u64()? {
            None | Some(0) => None,
            Some(ms) => match ms_to_days(ms) {
                Some(d) => Some(d),
                None => {
                    let u = retention_node.unsupported("not a whole number of days");
                    self.skip(u);
                    None
                }
            },
        };
        let mut auto_merge_time_ranges = Vec::new();
        for r in root.field("auto_merge_time_ranges").items()? {
            match r.opt_u64()?.and_then(ms_to_days) {
                Some(d) if d > 0 => auto_merge_time_ranges.push(d),
                _ => {
                    let u = r.unsupported(
                        "an auto-merge range is a positive whole number of days in milliseconds",
                    );
                    self.skip(u);
                }
            }
        }
        auto_merge_time_ranges.sort_unstable();
        auto_merge_time_ranges.dedup();

        Ok(CubeDesc {
            name,
            model: model.desc.name.clone(),
            dimensions,
            measures,
            aggregation_groups,
            rowkey,
            retention_range_days,
            auto_merge_time_ranges,
            // Kylin 4 cubes have no table index; add one to answer detail queries.
            table_index: None,
            mandatory_dimension_set_list,
            cuboid_black_list,
        })
    }

    fn map_measure(&mut self, m: &Node, model: &MappedModel) -> Result<Option<MeasureDesc>> {
        let name = qilin_name(&m.field("name"), "measure", m.field("name").str()?)?;
        let f = m.field("function");
        let expression_node = f.field("expression");
        let expression = expression_node.str()?.to_ascii_uppercase();
        let param = f.field("parameter");
        let returntype = f.field("returntype");
        let function = match expression.as_str() {
            "SUM" => MeasureFunction::Sum,
            "MIN" => MeasureFunction::Min,
            "MAX" => MeasureFunction::Max,
            "COUNT" => MeasureFunction::Count,
            "COUNT_DISTINCT" => MeasureFunction::CountDistinct,
            "TOP_N" => MeasureFunction::TopN,
            "PERCENTILE" | "PERCENTILE_APPROX" => MeasureFunction::Percentile,
            "EXTENDED_COLUMN" => MeasureFunction::ExtendedColumn,
            other => {
                let reason = match other {
                    "RAW" => "RAW measures are not supported",
                    _ => {
                        "this measure function is not supported (SUM, MIN, MAX, COUNT, \
                          COUNT_DISTINCT, TOP_N, PERCENTILE, EXTENDED_COLUMN are)"
                    }
                };
                let u = expression_node.unsupported(format!("measure {name}: {reason}"));
                self.skip(u);
                return Ok(None);
            }
        };
        // TOP_N's `by` column and EXTENDED_COLUMN's carried column come second; no measure
        // reads a third.
        let next = param.field("next_parameter");
        let two_columns = matches!(
            function,
            MeasureFunction::TopN | MeasureFunction::ExtendedColumn
        );
        let bad_next = if two_columns {
            if next.is_empty() {
                Some((&param, "needs a second column (next_parameter)"))
            } else if !next.field("next_parameter").is_empty() {
                Some((&next, "over more than two columns is not supported"))
            } else {
                None
            }
        } else if !next.is_empty() {
            Some((&param, "over several columns is not supported"))
        } else {
            None
        };
        if let Some((node, why)) = bad_next {
            let u = node
                .field("next_parameter")
                .unsupported(format!("measure {name}: {expression} {why}"));
            self.skip(u);
            return Ok(None);
        }
        let second = if two_columns {
            let ntype = next
                .field("type")
                .opt_str()?
                .unwrap_or("column")
                .to_ascii_lowercase();
            if ntype != "column" {
                let u = next.field("type").unsupported(format!(
                    "measure {name}: {expression} of a {ntype} is not supported"
                ));
                self.skip(u);
                return Ok(None);
            }
            let v = next.field("value");
            Some(model.reference(&model.resolve(&v, v.str()?)?))
        } else {
            None
        };
        let ptype = param
            .field("type")
            .opt_str()?
            .unwrap_or("column")
            .to_ascii_lowercase();
        let column = match (function, ptype.as_str()) {
            (MeasureFunction::Count, "constant") => None,
            (_, "column") => {
                let v = param.field("value");
                Some(model.reference(&model.resolve(&v, v.str()?)?))
            }
            _ => {
                let u = param.field("type").unsupported(format!(
                    "measure {name}: {expression} of a {ptype} is not supported"
                ));
                self.skip(u);
                return Ok(None);
            }
        };
        if function == MeasureFunction::Count && column.is_some() {
            let u = param.field("value").unsupported(format!(
                "measure {name}: COUNT of a column is not supported (COUNT(1) is)"
            ));
            self.skip(u);
            return Ok(None);
        }
        let distinct = if function == MeasureFunction::CountDistinct {
            let rt = returntype.str()?.to_ascii_lowercase().replace(' ', "");
            if rt == "bitmap" {
                Some("bitmap".to_string())
            } else if let Some(p) = rt
                .strip_prefix("hllc(")
                .and_then(|s| s.strip_suffix(')'))
                .or_else(|| rt.strip_prefix("hllc"))
                .and_then(|s| s.parse::<u8>().ok())
            {
                // Kylin's hllc(N) keeps 2^N registers, as Qilin's hll(N) does.
                Some(format!("hll({p})"))
            } else {
                let u = returntype.unsupported(format!(
                    "measure {name}: COUNT_DISTINCT return type must be hllc(N) or bitmap"
                ));
                self.skip(u);
                return Ok(None);
            }
        } else {
            None
        };
        // `topn(N)` / `topn(N,encoding length)`, `percentile(C)`, `extendedcolumn(L)`: the
        // first number inside the parentheses.
        let rt_number = |prefix: &str| -> Option<u32> {
            let rt = returntype
                .opt_str()
                .ok()??
                .to_ascii_lowercase()
                .replace(' ', "");
            let inner = rt
                .strip_prefix(prefix)?
                .strip_prefix('(')?
                .strip_suffix(')')?;
            inner.split(',').next()?.parse().ok()
        };
        let mut desc = MeasureDesc {
            distinct,
            ..MeasureDesc::simple(&name, function, column.as_deref(), None)
        };
        match function {
            MeasureFunction::TopN => {
                let Some(n) = rt_number("topn").filter(|n| (1..=TOP_N_MAX).contains(n)) else {
                    let u = returntype.unsupported(format!(
                        "measure {name}: TOP_N return type must be topn(N) with N in 1..={TOP_N_MAX}"
                    ));
                    self.skip(u);
                    return Ok(None);
                };
                desc.n = Some(n);
                desc.by = second;
            }
            MeasureFunction::Percentile => {
                // Kylin's return type is `percentile(C)`, C its t-digest compression; Qilin's
                // range bounds what is out of it.
                let c = rt_number("percentile").unwrap_or(100);
                if !PERCENTILE_COMPRESSION.contains(&c) {
                    let u = returntype.unsupported(format!(
                        "measure {name}: PERCENTILE compression {c} is outside {}..={}",
                        PERCENTILE_COMPRESSION.start(),
                        PERCENTILE_COMPRESSION.end()
                    ));
                    self.skip(u);
                    return Ok(None);
                }
                desc.compression = Some(c);
            }
            // Kylin's `extendedcolumn(L)` is a maximum length in bytes; Qilin keeps the text
            // whole.
            MeasureFunction::ExtendedColumn => desc.extended = second,
            _ => {}
        }
        Ok(Some(desc))
    }
}

enum TableOutcome {
    Mapped(TableDesc),
    Skipped,
}

/// Parquet unless the location (or a file in it) ends in `.csv`.
fn guess_format(path: &Path) -> SourceFormat {
    let is_csv = |p: &Path| p.to_string_lossy().to_ascii_lowercase().ends_with(".csv");
    if is_csv(path) {
        return SourceFormat::Csv;
    }
    if path.is_dir() && first_file(path, ".parquet").is_none() && first_file(path, ".csv").is_some()
    {
        return SourceFormat::Csv;
    }
    SourceFormat::Parquet
}

/// The first file (by name, depth first) under `dir` ending in `ext`.
fn first_file(dir: &Path, ext: &str) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if let Some(f) = first_file(&p, ext) {
                return Some(f);
            }
        } else if p.to_string_lossy().ends_with(ext) {
            return Some(p);
        }
    }
    None
}

/// The columns of a table's Parquet files: (file read, [(name, Qilin type or None)]), or
/// `None` when there is no file to read yet.
#[allow(clippy::type_complexity)]
fn parquet_schema(path: &Path) -> Result<Option<(PathBuf, Vec<(String, Option<String>)>)>> {
    let file = if path.is_dir() {
        match first_file(path, ".parquet") {
            Some(f) => f,
            None => return Ok(None),
        }
    } else if path.is_file() {
        path.to_path_buf()
    } else {
        return Ok(None);
    };
    let f = File::open(&file).map_err(|e| Error::io_path("open", &file, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| Error::invalid(format!("Parquet file {}", file.display()), e.to_string()))?;
    let fields = builder
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), sql_type_name(f.data_type())))
        .collect();
    Ok(Some((file, fields)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kylin_types_map_to_qilin_types() {
        for (k, q) in [
            ("int", Some("integer")),
            ("INTEGER", Some("integer")),
            ("bigint", Some("bigint")),
            ("varchar(256)", Some("varchar")),
            ("string", Some("varchar")),
            ("char(2)", Some("varchar")),
            ("decimal(19,4)", Some("decimal(19,4)")),
            ("decimal", Some("decimal(19,4)")),
            ("decimal(10)", Some("decimal(10,0)")),
            ("date", Some("date")),
            ("timestamp", None),
            ("array<int>", None),
            ("decimal(5,9)", None),
        ] {
            assert_eq!(map_kylin_type(k).as_deref(), q, "{k}");
        }
    }

    #[test]
    fn milliseconds_become_days_only_when_whole() {
        assert_eq!(ms_to_days(604_800_000), Some(7));
        assert_eq!(ms_to_days(2_419_200_000), Some(28));
        assert_eq!(ms_to_days(1000), None);
    }

    #[test]
    fn identifiers_are_lowered_outside_literals_and_fact_qualifiers_dropped() {
        let unique = |c: &str| c != "dup";
        assert_eq!(
            lower_identifiers(
                "LINEORDER.LO_A * LINEORDER.DUP + DATES.D_X where NAME = 'MiXed' and \"Q\" = 1",
                "lineorder",
                &unique
            ),
            "lo_a * lineorder.dup + dates.d_x where name = 'MiXed' and \"Q\" = 1"
        );
    }
}
