//! Flight SQL column metadata: the `ARROW:FLIGHT:SQL:*` keys on each field of a schema we
//! send (statement and prepared-statement result schemas, their streams, and GetTables'
//! `table_schema`), so drivers can describe columns in SQL terms (Power BI's connector reads
//! the type name; JDBC's `ResultSetMetaData` precision and scale). Type names are those
//! GetXdbcTypeInfo lists.

use std::collections::HashMap;

use arrow::datatypes::{DataType, Field};

pub const CATALOG_NAME: &str = "ARROW:FLIGHT:SQL:CATALOG_NAME";
pub const DB_SCHEMA_NAME: &str = "ARROW:FLIGHT:SQL:DB_SCHEMA_NAME";
pub const TABLE_NAME: &str = "ARROW:FLIGHT:SQL:TABLE_NAME";
pub const TYPE_NAME: &str = "ARROW:FLIGHT:SQL:TYPE_NAME";
pub const PRECISION: &str = "ARROW:FLIGHT:SQL:PRECISION";
pub const SCALE: &str = "ARROW:FLIGHT:SQL:SCALE";
pub const IS_READ_ONLY: &str = "ARROW:FLIGHT:SQL:IS_READ_ONLY";
pub const IS_SEARCHABLE: &str = "ARROW:FLIGHT:SQL:IS_SEARCHABLE";
pub const IS_AUTO_INCREMENT: &str = "ARROW:FLIGHT:SQL:IS_AUTO_INCREMENT";
pub const IS_CASE_SENSITIVE: &str = "ARROW:FLIGHT:SQL:IS_CASE_SENSITIVE";
/// Not among the spec's keys (the Arrow field's nullability says the same); BI connectors
/// that read only metadata ask for it.
pub const IS_NULLABLE: &str = "ARROW:FLIGHT:SQL:IS_NULLABLE";

pub use qilin_engine::model::jdbc::sql_type;

/// Where a column comes from, when it is a table's column (GetTables).
pub struct ColumnSource<'a> {
    pub catalog: &'a str,
    pub db_schema: &'a str,
    pub table: &'a str,
}

/// `field` with the Flight SQL column metadata added (existing metadata kept).
pub fn with_column_metadata(field: Field, source: Option<&ColumnSource>) -> Field {
    let (type_name, precision, scale) = sql_type(field.data_type());
    let mut meta: HashMap<String, String> = field.metadata().clone();
    let flag = |b: bool| if b { "1" } else { "0" }.to_string();
    meta.insert(TYPE_NAME.into(), type_name);
    if let Some(p) = precision {
        meta.insert(PRECISION.into(), p.to_string());
    }
    if let Some(s) = scale {
        meta.insert(SCALE.into(), s.to_string());
    }
    meta.insert(IS_NULLABLE.into(), flag(field.is_nullable()));
    meta.insert(IS_READ_ONLY.into(), flag(true));
    meta.insert(IS_SEARCHABLE.into(), flag(true));
    meta.insert(IS_AUTO_INCREMENT.into(), flag(false));
    meta.insert(
        IS_CASE_SENSITIVE.into(),
        flag(matches!(
            field.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        )),
    );
    if let Some(s) = source {
        meta.insert(CATALOG_NAME.into(), s.catalog.to_string());
        meta.insert(DB_SCHEMA_NAME.into(), s.db_schema.to_string());
        meta.insert(TABLE_NAME.into(), s.table.to_string());
    }
    field.with_metadata(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_get_sql_names_precision_and_scale() {
        let f = with_column_metadata(
            Field::new("lo_revenue", DataType::Decimal128(15, 2), false),
            None,
        );
        let m = f.metadata();
        assert_eq!(m[TYPE_NAME], "DECIMAL");
        assert_eq!(m[PRECISION], "15");
        assert_eq!(m[SCALE], "2");
        assert_eq!(m[IS_NULLABLE], "0");
        let f = with_column_metadata(Field::new("s", DataType::Utf8, true), None);
        assert_eq!(f.metadata()[TYPE_NAME], "VARCHAR");
        assert!(!f.metadata().contains_key(PRECISION));
        assert_eq!(f.metadata()[IS_NULLABLE], "1");
        assert_eq!(
            sql_type(&DataType::Int32),
            ("INTEGER".into(), Some(10), Some(0))
        );
        assert_eq!(sql_type(&DataType::Date32), ("DATE".into(), Some(10), None));
    }
}
