//! Answers to the catalog commands (GetCatalogs, GetDbSchemas, GetTables, GetTableTypes and
//! the key commands). Clients see one catalog, each project as a schema, and each project's
//! source tables; the arrow-flight builders apply the commands' filters (SQL LIKE patterns).
//! Keys come from the models' joins (see the engine's `query::keys`).
//!
//! Every answer is what the caller sees ([`Access`]): only the projects it holds a role in,
//! without its denied tables and columns (a key on a hidden column is left out whole).

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray, UInt8Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::sql::metadata::{GetCatalogsBuilder, GetDbSchemasBuilder, GetTablesBuilder};
use arrow_flight::sql::{
    CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys,
    CommandGetPrimaryKeys, CommandGetTableTypes, CommandGetTables,
};
use qilin_engine::query::{ForeignKey, PrimaryKey, QueryEngine, CATALOG};
use qilin_engine::security::Access;
use tonic::Status;

use crate::columns::ColumnSource;
use crate::status;
use crate::wire::client_table_schema;

/// The only table type: source tables as the user sees them (cuboids stay invisible).
pub const TABLE_TYPE: &str = "TABLE";

/// Table types clients filter by that mean our tables: `TABLE` (JDBC, ADBC) and the SQL
/// standard's `BASE TABLE` (information_schema's spelling, which Grafana's plugin sends).
const TABLE_TYPE_SYNONYMS: [&str; 2] = ["TABLE", "BASE TABLE"];

/// Flight SQL's `update_rule` / `delete_rule` code for NO ACTION: the keys are declared by
/// models, nothing enforces them.
const NO_ACTION: u8 = 3;

/// The one catalog, for a caller who sees at least one project.
pub fn catalogs(access: &Access) -> Result<RecordBatch, Status> {
    let mut b = GetCatalogsBuilder::new();
    if access.admin || !access.projects.is_empty() {
        b.append(CATALOG);
    }
    b.build()
        .map_err(|e| status::internal("building GetCatalogs", e))
}

pub fn catalogs_schema() -> SchemaRef {
    GetCatalogsBuilder::new().schema()
}

pub fn db_schemas(
    engine: &QueryEngine,
    access: &Access,
    cmd: CommandGetDbSchemas,
) -> Result<RecordBatch, Status> {
    let projects: BTreeSet<String> = engine
        .tables_as(access)
        .map_err(|e| status::from_engine(&e))?
        .into_iter()
        .map(|t| t.project)
        .filter(|p| access.sees_project(p))
        .collect();
    let mut b: GetDbSchemasBuilder = cmd.into_builder();
    for p in projects {
        b.append(CATALOG, p);
    }
    b.build()
        .map_err(|e| status::internal("building GetDbSchemas", e))
}

pub fn db_schemas_schema(cmd: CommandGetDbSchemas) -> SchemaRef {
    cmd.into_builder().schema()
}

pub fn tables(
    engine: &QueryEngine,
    access: &Access,
    mut cmd: CommandGetTables,
) -> Result<RecordBatch, Status> {
    // The engine leaves out what the caller may not see (denied tables and columns).
    let tables = engine
        .tables_as(access)
        .map_err(|e| status::from_engine(&e))?;
    // The builder matches types exactly: spell our synonyms as the type we report.
    for t in &mut cmd.table_types {
        if TABLE_TYPE_SYNONYMS
            .iter()
            .any(|s| s.eq_ignore_ascii_case(t.trim()))
        {
            *t = TABLE_TYPE.to_string();
        }
    }
    let mut b: GetTablesBuilder = cmd.into_builder();
    for t in tables
        .into_iter()
        .filter(|t| access.sees_project(&t.project))
    {
        // The schema a query on the table would return (view types as clients see them),
        // with column metadata naming the table.
        let source = ColumnSource {
            catalog: CATALOG,
            db_schema: &t.project,
            table: &t.name,
        };
        b.append(
            CATALOG,
            &t.project,
            &t.name,
            TABLE_TYPE,
            &client_table_schema(&t.schema, &source),
        )
        .map_err(|e| status::internal("building GetTables", e))?;
    }
    b.build()
        .map_err(|e| status::internal("building GetTables", e))
}

pub fn tables_schema(cmd: CommandGetTables) -> SchemaRef {
    cmd.into_builder().schema()
}

pub fn table_types(cmd: CommandGetTableTypes) -> Result<RecordBatch, Status> {
    let mut b = cmd.into_builder();
    b.append(TABLE_TYPE);
    b.build()
        .map_err(|e| status::internal("building GetTableTypes", e))
}

pub fn table_types_schema(cmd: CommandGetTableTypes) -> SchemaRef {
    cmd.into_builder().schema()
}

/// Whether a command's optional catalog and schema filters admit `project` (an empty string
/// is taken as no filter, as several drivers send it so).
fn admits(catalog: Option<&str>, db_schema: Option<&str>, project: &str) -> bool {
    catalog.is_none_or(|c| c.is_empty() || c == CATALOG)
        && db_schema.is_none_or(|s| s.is_empty() || s == project)
}

/// Whether the caller sees `project.table` and every one of `columns`.
fn sees(access: &Access, project: &str, table: &str, columns: &[String]) -> bool {
    if !access.sees_project(project) {
        return false;
    }
    match access.restriction(project, table) {
        None => true,
        Some(r) => !r.denied && !columns.iter().any(|c| r.denies_column(c)),
    }
}

/// The foreign keys the caller sees: both ends visible.
fn engine_keys(engine: &QueryEngine, access: &Access) -> Result<Vec<ForeignKey>, Status> {
    let keys = engine.foreign_keys().map_err(|e| status::from_engine(&e))?;
    Ok(keys
        .into_iter()
        .filter(|k| {
            sees(access, &k.project, &k.pk_table, &k.pk_columns)
                && sees(access, &k.project, &k.fk_table, &k.fk_columns)
        })
        .collect())
}

/// GetPrimaryKeys: the key each model joins a lookup table on.
pub fn primary_keys(
    engine: &QueryEngine,
    access: &Access,
    cmd: CommandGetPrimaryKeys,
) -> Result<RecordBatch, Status> {
    let keys: Vec<PrimaryKey> = engine
        .primary_keys()
        .map_err(|e| status::from_engine(&e))?
        .into_iter()
        .filter(|k| sees(access, &k.project, &k.table, &k.columns))
        .collect();
    let (mut schemas, mut tables, mut columns, mut names, mut seqs) =
        (vec![], vec![], vec![], vec![], vec![]);
    for k in keys.iter().filter(|k| {
        admits(cmd.catalog.as_deref(), cmd.db_schema.as_deref(), &k.project)
            && k.table.eq_ignore_ascii_case(&cmd.table)
    }) {
        for (i, c) in k.columns.iter().enumerate() {
            schemas.push(k.project.clone());
            tables.push(k.table.clone());
            columns.push(c.clone());
            names.push(k.name());
            seqs.push(i as i32 + 1);
        }
    }
    let n = tables.len();
    RecordBatch::try_new(
        PRIMARY_KEYS_SCHEMA.clone(),
        vec![
            Arc::new(StringArray::from(vec![CATALOG; n])) as ArrayRef,
            Arc::new(StringArray::from(schemas)),
            Arc::new(StringArray::from(tables)),
            Arc::new(StringArray::from(columns)),
            Arc::new(StringArray::from(names)),
            Arc::new(Int32Array::from(seqs)),
        ],
    )
    .map_err(|e| status::internal("building GetPrimaryKeys", e))
}

/// GetImportedKeys: the foreign keys of a table (the keys it references).
pub fn imported_keys(
    engine: &QueryEngine,
    access: &Access,
    cmd: CommandGetImportedKeys,
) -> Result<RecordBatch, Status> {
    let mut keys: Vec<ForeignKey> = engine_keys(engine, access)?
        .into_iter()
        .filter(|k| {
            admits(cmd.catalog.as_deref(), cmd.db_schema.as_deref(), &k.project)
                && k.fk_table.eq_ignore_ascii_case(&cmd.table)
        })
        .collect();
    // The spec's order: by the referenced table, then key sequence.
    keys.sort_by(|a, b| {
        (&a.project, &a.pk_table, &a.fk_columns).cmp(&(&b.project, &b.pk_table, &b.fk_columns))
    });
    foreign_keys_batch(&keys)
}

/// GetExportedKeys: the foreign keys that reference a table's primary key.
pub fn exported_keys(
    engine: &QueryEngine,
    access: &Access,
    cmd: CommandGetExportedKeys,
) -> Result<RecordBatch, Status> {
    let mut keys: Vec<ForeignKey> = engine_keys(engine, access)?
        .into_iter()
        .filter(|k| {
            admits(cmd.catalog.as_deref(), cmd.db_schema.as_deref(), &k.project)
                && k.pk_table.eq_ignore_ascii_case(&cmd.table)
        })
        .collect();
    // The spec's order: by the referencing table, then key sequence.
    keys.sort_by(|a, b| {
        (&a.project, &a.fk_table, &a.fk_columns).cmp(&(&b.project, &b.fk_table, &b.fk_columns))
    });
    foreign_keys_batch(&keys)
}

/// GetCrossReference: the foreign keys of one table that reference another.
pub fn cross_reference(
    engine: &QueryEngine,
    access: &Access,
    cmd: CommandGetCrossReference,
) -> Result<RecordBatch, Status> {
    let keys: Vec<ForeignKey> = engine_keys(engine, access)?
        .into_iter()
        .filter(|k| {
            admits(
                cmd.pk_catalog.as_deref(),
                cmd.pk_db_schema.as_deref(),
                &k.project,
            ) && admits(
                cmd.fk_catalog.as_deref(),
                cmd.fk_db_schema.as_deref(),
                &k.project,
            ) && k.pk_table.eq_ignore_ascii_case(&cmd.pk_table)
                && k.fk_table.eq_ignore_ascii_case(&cmd.fk_table)
        })
        .collect();
    foreign_keys_batch(&keys)
}

/// One row per column of each key, in [`FOREIGN_KEYS_SCHEMA`].
fn foreign_keys_batch(keys: &[ForeignKey]) -> Result<RecordBatch, Status> {
    let mut cols: [Vec<String>; 6] = Default::default();
    let (mut fk_names, mut pk_names, mut seqs) = (vec![], vec![], vec![]);
    for k in keys {
        for (i, (pk, fk)) in k.pk_columns.iter().zip(&k.fk_columns).enumerate() {
            cols[0].push(k.project.clone());
            cols[1].push(k.pk_table.clone());
            cols[2].push(pk.clone());
            cols[3].push(k.project.clone());
            cols[4].push(k.fk_table.clone());
            cols[5].push(fk.clone());
            fk_names.push(k.fk_name());
            pk_names.push(k.pk_name());
            seqs.push(i as i32 + 1);
        }
    }
    let n = seqs.len();
    let [pk_schema, pk_table, pk_column, fk_schema, fk_table, fk_column] = cols;
    let catalog = || Arc::new(StringArray::from(vec![CATALOG; n])) as ArrayRef;
    let strings = |v: Vec<String>| Arc::new(StringArray::from(v)) as ArrayRef;
    RecordBatch::try_new(
        FOREIGN_KEYS_SCHEMA.clone(),
        vec![
            catalog(),
            strings(pk_schema),
            strings(pk_table),
            strings(pk_column),
            catalog(),
            strings(fk_schema),
            strings(fk_table),
            strings(fk_column),
            Arc::new(Int32Array::from(seqs)),
            strings(fk_names),
            strings(pk_names),
            Arc::new(UInt8Array::from(vec![NO_ACTION; n])),
            Arc::new(UInt8Array::from(vec![NO_ACTION; n])),
        ],
    )
    .map_err(|e| status::internal("building a foreign-key result", e))
}

/// GetPrimaryKeys' result schema.
pub static PRIMARY_KEYS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
});

/// GetExportedKeys, GetImportedKeys and GetCrossReference share this schema.
pub static FOREIGN_KEYS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
});
