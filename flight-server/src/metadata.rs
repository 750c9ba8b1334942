//! Answers to the catalog commands (GetCatalogs, GetDbSchemas, GetTables, GetTableTypes and
//! the key commands). Clients see one catalog, each project as a schema, and each project's
//! source tables; the arrow-flight builders apply the commands' filters (SQL LIKE patterns).

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::sql::metadata::{GetCatalogsBuilder, GetDbSchemasBuilder, GetTablesBuilder};
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTableTypes, CommandGetTables};
use qilin_engine::query::{QueryEngine, CATALOG};
use tonic::Status;

use crate::status;
use crate::wire::client_schema;

/// The only table type: source tables as the user sees them (cuboids stay invisible).
pub const TABLE_TYPE: &str = "TABLE";

pub fn catalogs() -> Result<RecordBatch, Status> {
    let mut b = GetCatalogsBuilder::new();
    b.append(CATALOG);
    b.build()
        .map_err(|e| status::internal("building GetCatalogs", e))
}

pub fn catalogs_schema() -> SchemaRef {
    GetCatalogsBuilder::new().schema()
}

pub fn db_schemas(engine: &QueryEngine, cmd: CommandGetDbSchemas) -> Result<RecordBatch, Status> {
    let projects: BTreeSet<String> = engine
        .tables()
        .map_err(|e| status::from_engine(&e))?
        .into_iter()
        .map(|t| t.project)
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

pub fn tables(engine: &QueryEngine, cmd: CommandGetTables) -> Result<RecordBatch, Status> {
    let tables = engine.tables().map_err(|e| status::from_engine(&e))?;
    let mut b: GetTablesBuilder = cmd.into_builder();
    for t in tables {
        // The schema a query on the table would return (view types as clients see them).
        b.append(
            CATALOG,
            &t.project,
            &t.name,
            TABLE_TYPE,
            &client_schema(&t.schema),
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

/// GetPrimaryKeys: source tables declare no keys, so the result is always empty.
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

/// GetExportedKeys, GetImportedKeys and GetCrossReference share this schema (always empty).
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
