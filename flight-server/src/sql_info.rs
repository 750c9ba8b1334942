//! What the server tells clients about itself: GetSqlInfo and GetXdbcTypeInfo. BI tools and
//! the JDBC driver read these to decide how to quote, which functions to offer and how to
//! show types; a missing key makes some of them fail or show nothing, so every key of the
//! Flight SQL spec has a value here (a unit test checks that).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlOuterJoinsSupportLevel,
    SqlSupportedCaseSensitivity, SqlSupportedTransaction, SqlSupportsConvert, XdbcDataType,
    XdbcDatetimeSubcode,
};

pub const SERVER_NAME: &str = "Qilin";

/// The arrow-rs release the wire format comes from (keep in step with the workspace's arrow).
const ARROW_VERSION: &str = "59";

/// Names longer than this are refused by the metadata store (see `qilin_engine::names`).
const MAX_NAME_LENGTH: i64 = 128;

/// Words with a meaning in our SQL dialect (DataFusion's) beyond SQL:2003, as JDBC's
/// `getSQLKeywords` expects.
const KEYWORDS: &[&str] = &[
    "ANALYZE", "ARRAY", "COPY", "DESCRIBE", "EXCLUDE", "EXPLAIN", "FORMAT", "ILIKE", "LIMIT",
    "NULLS", "OFFSET", "QUALIFY", "REPLACE", "SHOW", "STRUCT", "UNNEST", "VERBOSE",
];

const NUMERIC_FUNCTIONS: &[&str] = &[
    "ABS", "ACOS", "ASIN", "ATAN", "ATAN2", "CBRT", "CEIL", "COS", "COT", "DEGREES", "EXP",
    "FLOOR", "GCD", "LCM", "LN", "LOG", "LOG10", "LOG2", "MOD", "PI", "POWER", "RADIANS", "RANDOM",
    "ROUND", "SIGN", "SIN", "SQRT", "TAN", "TRUNC",
];

const STRING_FUNCTIONS: &[&str] = &[
    "ASCII",
    "BTRIM",
    "CHAR_LENGTH",
    "CHR",
    "CONCAT",
    "CONCAT_WS",
    "INITCAP",
    "LEFT",
    "LENGTH",
    "LOWER",
    "LPAD",
    "LTRIM",
    "OCTET_LENGTH",
    "REPEAT",
    "REPLACE",
    "REVERSE",
    "RIGHT",
    "RPAD",
    "RTRIM",
    "SPLIT_PART",
    "STARTS_WITH",
    "STRPOS",
    "SUBSTR",
    "SUBSTRING",
    "TRANSLATE",
    "TRIM",
    "UPPER",
];

const SYSTEM_FUNCTIONS: &[&str] = &["ARROW_TYPEOF", "COALESCE", "NULLIF", "NVL"];

const DATETIME_FUNCTIONS: &[&str] = &[
    "CURRENT_DATE",
    "CURRENT_TIME",
    "DATE_BIN",
    "DATE_PART",
    "DATE_TRUNC",
    "EXTRACT",
    "NOW",
    "TO_DATE",
    "TO_TIMESTAMP",
];

/// The answer to every GetSqlInfo key.
pub static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    // Server
    b.append(SqlInfo::FlightSqlServerName, SERVER_NAME);
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, ARROW_VERSION);
    // Queries only: cubes are built by the job engine, never through SQL.
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    // Handles are stateless, so they never time out (0 = no timeout).
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    // DDL
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    // Identifiers: DataFusion folds unquoted names to lower case and keeps quoted ones as
    // written. Flight SQL has no "case sensitive" value, so quoted names report UNKNOWN.
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityUnknown as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    // DataFusion sorts NULL as the largest value: last ascending, first descending.
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlKeywords, KEYWORDS);
    b.append(SqlInfo::SqlNumericFunctions, NUMERIC_FUNCTIONS);
    b.append(SqlInfo::SqlStringFunctions, STRING_FUNCTIONS);
    b.append(SqlInfo::SqlSystemFunctions, SYSTEM_FUNCTIONS);
    b.append(SqlInfo::SqlDatetimeFunctions, DATETIME_FUNCTIONS);
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsConvert, conversions());
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    // Bit 0: GROUP BY unrelated to SELECT; bit 1: GROUP BY beyond SELECT.
    b.append(SqlInfo::SqlSupportedGroupBy, 0b11i32);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    // Minimum and core grammar; ANSI-92 entry level.
    b.append(SqlInfo::SqlSupportedGrammar, 0b011i32);
    b.append(SqlInfo::SqlAnsi92SupportedLevel, 0b001i32);
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    b.append(
        SqlInfo::SqlOuterJoinsSupportLevel,
        SqlOuterJoinsSupportLevel::SqlFullOuterJoins as i32,
    );
    // Kylin groups tables in projects; clients see each project as a schema.
    b.append(SqlInfo::SqlSchemaTerm, "project");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSchemasSupportedActions, 0i32);
    b.append(SqlInfo::SqlCatalogsSupportedActions, 0i32);
    b.append(SqlInfo::SqlSupportedPositionedCommands, 0i32);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    // Subqueries in comparisons, EXISTS and IN.
    b.append(SqlInfo::SqlSupportedSubqueries, 0b0111i32);
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    // UNION and UNION ALL.
    b.append(SqlInfo::SqlSupportedUnions, 0b11i32);
    // Limits: 0 means "no limit or unknown" (JDBC convention).
    b.append(SqlInfo::SqlMaxBinaryLiteralLength, 0i64);
    b.append(SqlInfo::SqlMaxCharLiteralLength, 0i64);
    b.append(SqlInfo::SqlMaxColumnNameLength, MAX_NAME_LENGTH);
    b.append(SqlInfo::SqlMaxColumnsInGroupBy, 0i64);
    b.append(SqlInfo::SqlMaxColumnsInIndex, 0i64);
    b.append(SqlInfo::SqlMaxColumnsInOrderBy, 0i64);
    b.append(SqlInfo::SqlMaxColumnsInSelect, 0i64);
    b.append(SqlInfo::SqlMaxColumnsInTable, 0i64);
    b.append(SqlInfo::SqlMaxConnections, 0i64);
    b.append(SqlInfo::SqlMaxCursorNameLength, 0i64);
    b.append(SqlInfo::SqlMaxIndexLength, 0i64);
    b.append(SqlInfo::SqlDbSchemaNameLength, MAX_NAME_LENGTH);
    b.append(SqlInfo::SqlMaxProcedureNameLength, 0i64);
    b.append(SqlInfo::SqlMaxCatalogNameLength, MAX_NAME_LENGTH);
    b.append(SqlInfo::SqlMaxRowSize, 0i64);
    b.append(SqlInfo::SqlMaxRowSizeIncludesBlobs, false);
    b.append(SqlInfo::SqlMaxStatementLength, 0i64);
    b.append(SqlInfo::SqlMaxStatements, 0i64);
    b.append(SqlInfo::SqlMaxTableNameLength, MAX_NAME_LENGTH);
    b.append(SqlInfo::SqlMaxTablesInSelect, 0i64);
    b.append(SqlInfo::SqlMaxUsernameLength, 0i64);
    // No transactions.
    b.append(SqlInfo::SqlDefaultTransactionIsolation, 0i32);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlSupportedTransactionsIsolationLevels, 0i32);
    b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, true);
    // Forward-only, read-only result sets.
    b.append(SqlInfo::SqlSupportedResultSetTypes, 0b010i32);
    b.append(
        SqlInfo::SqlSupportedConcurrenciesForResultSetUnspecified,
        0i32,
    );
    b.append(
        SqlInfo::SqlSupportedConcurrenciesForResultSetForwardOnly,
        0b010i32,
    );
    b.append(
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollSensitive,
        0i32,
    );
    b.append(
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollInsensitive,
        0i32,
    );
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    // The values above are constants of the right kinds; a failure here is a bug caught by
    // the unit tests, not something a client can cause.
    b.build().expect("static SqlInfo data")
});

/// CAST conversions between the types our tables use (DataFusion casts freely among them).
fn conversions() -> BTreeMap<i32, Vec<i32>> {
    use SqlSupportsConvert as C;
    let numeric = [
        C::SqlConvertBigint,
        C::SqlConvertInteger,
        C::SqlConvertSmallint,
        C::SqlConvertTinyint,
        C::SqlConvertDecimal,
        C::SqlConvertFloat,
        C::SqlConvertReal,
        C::SqlConvertNumeric,
        C::SqlConvertBit,
    ];
    let mut map = BTreeMap::new();
    let to_numeric_or_text: Vec<i32> = numeric
        .iter()
        .chain([&C::SqlConvertVarchar, &C::SqlConvertChar])
        .map(|c| *c as i32)
        .collect();
    for from in numeric {
        map.insert(from as i32, to_numeric_or_text.clone());
    }
    let mut from_text = to_numeric_or_text.clone();
    from_text.extend([C::SqlConvertDate as i32, C::SqlConvertTimestamp as i32]);
    map.insert(C::SqlConvertVarchar as i32, from_text.clone());
    map.insert(C::SqlConvertChar as i32, from_text);
    let dates = vec![
        C::SqlConvertDate as i32,
        C::SqlConvertTimestamp as i32,
        C::SqlConvertVarchar as i32,
    ];
    map.insert(C::SqlConvertDate as i32, dates.clone());
    map.insert(C::SqlConvertTimestamp as i32, dates);
    map
}

/// The SQL types our tables use, for GetXdbcTypeInfo (JDBC `getTypeInfo`).
pub static XDBC_TYPE_INFO: LazyLock<XdbcTypeInfoData> = LazyLock::new(|| {
    let mut b = XdbcTypeInfoDataBuilder::new();
    let integer = |name: &str, t: XdbcDataType, bits: i32| XdbcTypeInfo {
        type_name: name.into(),
        data_type: t,
        column_size: Some(bits),
        nullable: Nullable::NullabilityNullable,
        searchable: Searchable::Full,
        unsigned_attribute: Some(false),
        auto_increment: Some(false),
        local_type_name: Some(name.into()),
        minimum_scale: Some(0),
        maximum_scale: Some(0),
        sql_data_type: t,
        num_prec_radix: Some(2),
        ..Default::default()
    };
    b.append(integer("BIGINT", XdbcDataType::XdbcBigint, 64));
    b.append(integer("INTEGER", XdbcDataType::XdbcInteger, 32));
    b.append(integer("SMALLINT", XdbcDataType::XdbcSmallint, 16));
    b.append(integer("TINYINT", XdbcDataType::XdbcTinyint, 8));
    let float = |name: &str, t: XdbcDataType, bits: i32| XdbcTypeInfo {
        type_name: name.into(),
        data_type: t,
        column_size: Some(bits),
        nullable: Nullable::NullabilityNullable,
        searchable: Searchable::Full,
        unsigned_attribute: Some(false),
        auto_increment: Some(false),
        local_type_name: Some(name.into()),
        sql_data_type: t,
        num_prec_radix: Some(2),
        ..Default::default()
    };
    b.append(float("DOUBLE", XdbcDataType::XdbcDouble, 53));
    b.append(float("FLOAT", XdbcDataType::XdbcFloat, 24));
    b.append(XdbcTypeInfo {
        type_name: "DECIMAL".into(),
        data_type: XdbcDataType::XdbcDecimal,
        column_size: Some(38),
        create_params: Some(vec!["precision".into(), "scale".into()]),
        nullable: Nullable::NullabilityNullable,
        searchable: Searchable::Full,
        unsigned_attribute: Some(false),
        fixed_prec_scale: true,
        auto_increment: Some(false),
        local_type_name: Some("DECIMAL".into()),
        minimum_scale: Some(0),
        maximum_scale: Some(38),
        sql_data_type: XdbcDataType::XdbcDecimal,
        num_prec_radix: Some(10),
        ..Default::default()
    });
    b.append(XdbcTypeInfo {
        type_name: "VARCHAR".into(),
        data_type: XdbcDataType::XdbcVarchar,
        column_size: Some(i32::MAX),
        literal_prefix: Some("'".into()),
        literal_suffix: Some("'".into()),
        nullable: Nullable::NullabilityNullable,
        case_sensitive: true,
        searchable: Searchable::Full,
        local_type_name: Some("VARCHAR".into()),
        sql_data_type: XdbcDataType::XdbcVarchar,
        ..Default::default()
    });
    b.append(XdbcTypeInfo {
        type_name: "DATE".into(),
        data_type: XdbcDataType::XdbcDate,
        column_size: Some(10),
        literal_prefix: Some("DATE '".into()),
        literal_suffix: Some("'".into()),
        nullable: Nullable::NullabilityNullable,
        searchable: Searchable::Full,
        local_type_name: Some("DATE".into()),
        // ODBC's SQL_DATETIME with subcode DATE.
        sql_data_type: XdbcDataType::XdbcDatetime,
        datetime_subcode: Some(XdbcDatetimeSubcode::XdbcSubcodeYear),
        ..Default::default()
    });
    b.append(XdbcTypeInfo {
        type_name: "BOOLEAN".into(),
        data_type: XdbcDataType::XdbcBit,
        column_size: Some(1),
        nullable: Nullable::NullabilityNullable,
        searchable: Searchable::Full,
        local_type_name: Some("BOOLEAN".into()),
        sql_data_type: XdbcDataType::XdbcBit,
        ..Default::default()
    });
    b.build().expect("static XDBC type info")
});

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};

    #[test]
    fn every_sql_info_key_has_a_value() {
        // Substrait version bounds are null when Substrait is unsupported (the spec's way).
        let no_value = [
            SqlInfo::FlightSqlServerSubstraitMinVersion as i32,
            SqlInfo::FlightSqlServerSubstraitMaxVersion as i32,
        ];
        let mut missing = vec![];
        for id in 0..1000 {
            let Ok(info) = SqlInfo::try_from(id) else {
                continue;
            };
            if no_value.contains(&id) {
                continue;
            }
            let batch = SQL_INFO.record_batch([id as u32]).unwrap();
            if batch.num_rows() != 1 {
                missing.push(format!("{info:?}"));
            }
        }
        assert!(
            missing.is_empty(),
            "SqlInfo keys without a value: {missing:?}"
        );
    }

    #[test]
    fn server_name_and_read_only() {
        let batch = SQL_INFO
            .record_batch([SqlInfo::FlightSqlServerName as u32])
            .unwrap();
        let value = batch.column(1).as_union();
        let name = value.value(0);
        assert_eq!(name.as_string::<i32>().value(0), SERVER_NAME);
        assert!(!name.is_null(0));
    }

    #[test]
    fn xdbc_types_cover_our_column_types() {
        let batch = XDBC_TYPE_INFO.record_batch(None).unwrap();
        let names = batch.column(0).as_string::<i32>();
        let names: Vec<&str> = (0..names.len()).map(|i| names.value(i)).collect();
        for t in [
            "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "DOUBLE", "FLOAT", "VARCHAR", "DATE",
            "BOOLEAN", "DECIMAL",
        ] {
            assert!(names.contains(&t), "{t} missing from {names:?}");
        }
    }
}
