//! SQL type names, precision and scale of Arrow types as JDBC and Kylin's clients see them
//! (Flight SQL column metadata, the REST API's column metadata), and their `java.sql.Types`.

use datafusion::arrow::datatypes::DataType;

/// The SQL type of an Arrow type, with its precision (decimal digits; characters for dates
/// and times) and scale where the type has them. Strings and binaries have no declared length.
pub fn sql_type(t: &DataType) -> (String, Option<u32>, Option<i32>) {
    let (name, precision, scale) = match t {
        DataType::Boolean => ("BOOLEAN", Some(1), None),
        DataType::Int8 => ("TINYINT", Some(3), Some(0)),
        DataType::Int16 | DataType::UInt8 => ("SMALLINT", Some(5), Some(0)),
        DataType::Int32 | DataType::UInt16 => ("INTEGER", Some(10), Some(0)),
        DataType::Int64 | DataType::UInt32 => ("BIGINT", Some(19), Some(0)),
        DataType::UInt64 => ("DECIMAL", Some(20), Some(0)),
        DataType::Float16 | DataType::Float32 => ("FLOAT", Some(7), None),
        DataType::Float64 => ("DOUBLE", Some(15), None),
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => ("DECIMAL", Some(u32::from(*p)), Some(i32::from(*s))),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ("VARCHAR", None, None),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => ("VARBINARY", None, None),
        DataType::Date32 | DataType::Date64 => ("DATE", Some(10), None),
        DataType::Time32(_) | DataType::Time64(_) => ("TIME", Some(8), None),
        DataType::Timestamp(_, None) => ("TIMESTAMP", Some(29), None),
        DataType::Timestamp(_, Some(_)) => ("TIMESTAMP WITH TIME ZONE", Some(35), None),
        DataType::Interval(_) | DataType::Duration(_) => ("INTERVAL", None, None),
        DataType::Null => ("NULL", None, None),
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::ListView(_)
        | DataType::LargeListView(_)
        | DataType::FixedSizeList(..) => ("ARRAY", None, None),
        DataType::Struct(_) => ("STRUCT", None, None),
        DataType::Map(..) => ("MAP", None, None),
        DataType::Dictionary(_, value) => return sql_type(value),
        DataType::RunEndEncoded(_, value) => return sql_type(value.data_type()),
        DataType::Union(..) => ("UNION", None, None),
    };
    (name.to_string(), precision, scale)
}

/// The `java.sql.Types` code of a type name [`sql_type`] returns (Kylin's `data_TYPE` and
/// `columnType`); `OTHER` (1111) for types JDBC has no code for.
pub fn java_sql_type(name: &str) -> i32 {
    match name {
        "BOOLEAN" => 16,
        "TINYINT" => -6,
        "SMALLINT" => 5,
        "INTEGER" => 4,
        "BIGINT" => -5,
        "FLOAT" => 6,
        "DOUBLE" => 8,
        "DECIMAL" => 3,
        "VARCHAR" => 12,
        "VARBINARY" => -3,
        "DATE" => 91,
        "TIME" => 92,
        "TIMESTAMP" => 93,
        "TIMESTAMP WITH TIME ZONE" => 2014,
        "NULL" => 0,
        "ARRAY" => 2003,
        "STRUCT" => 2002,
        _ => 1111,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes() {
        assert_eq!(
            sql_type(&DataType::Decimal128(15, 2)),
            ("DECIMAL".into(), Some(15), Some(2))
        );
        assert_eq!(java_sql_type(&sql_type(&DataType::Int64).0), -5);
        assert_eq!(java_sql_type(&sql_type(&DataType::Utf8).0), 12);
        assert_eq!(java_sql_type(&sql_type(&DataType::Date32).0), 91);
        assert_eq!(java_sql_type("MAP"), 1111);
    }
}
