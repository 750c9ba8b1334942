//! Filters the cuboid scan applies itself, exactly, on its stored non-string dimensions.
//!
//! `lo_quantity = 26` or `lo_discount BETWEEN 1 AND 3` over a base cuboid: as a `Filter` above
//! the scan it runs after the scan has looked up every row's derived columns and numbered its
//! strings, only to drop most of those rows. A [`DimensionFilter`] is evaluated on the block's
//! own columns first, so lookups, string ids and the projected columns are taken for the rows
//! that pass only; the provider reports it `Exact` and the `Filter` above goes.
//!
//! The qualifying rule is the string filters' ([`super::string_filter::allowed`]: deterministic,
//! built from operators that cannot fail), plus casts of a column that cannot fail (a widening
//! of a number): the scan evaluates the filter on rows a `Filter` above the scan would not
//! have seen (those an inner lookup drops), which must not turn a query into an error.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNode;
use datafusion::common::DFSchema;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;

use super::string_filter::{allowed, passing_rows};
use crate::error::Result;

/// The stored columns a filter may be applied on by the scan, in schema order: every column
/// it reads is a dimension (one of the first `dims` columns of `schema`) stored as `schema`
/// shows it (not a string read as ids, nor a derived column) and not a string (those are
/// [`super::string_filter`]'s); `None` when the filter does not qualify.
pub(crate) fn dimension_filter_columns(
    schema: &Schema,
    stored: &Schema,
    dims: usize,
    filter: &Expr,
) -> Option<Vec<usize>> {
    let mut columns = Vec::new();
    for c in filter.column_refs() {
        let i = schema.index_of(&c.name).ok()?;
        let t = schema.field(i).data_type();
        if i >= dims || stored.field(i).data_type() != t || !plain_type(t) {
            return None;
        }
        columns.push(i);
    }
    if columns.is_empty() || filter.is_volatile() {
        return None;
    }
    let cannot_fail = |e: &Expr| allowed(e) || widening_cast(e, schema);
    if filter.exists(|e| Ok(!cannot_fail(e))).unwrap_or(true) {
        return None;
    }
    columns.sort_unstable();
    columns.dedup();
    Some(columns)
}

/// Numbers, dates, times and booleans: stored as themselves, compared without a dictionary.
fn plain_type(t: &DataType) -> bool {
    t.is_numeric() || t.is_temporal() || t == &DataType::Boolean
}

/// A cast of a column to a type that holds every value of the column's type.
fn widening_cast(e: &Expr, schema: &Schema) -> bool {
    let Expr::Cast(c) = e else {
        return false;
    };
    let Expr::Column(column) = c.expr.as_ref() else {
        return false;
    };
    let Ok(field) = schema.field_with_name(&column.name) else {
        return false;
    };
    widens(field.data_type(), c.field.data_type())
}

/// Whether every value of `from` casts to `to` without an error.
fn widens(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if from == to {
        return true;
    }
    if let (Some(a), Some(b)) = (integer(from), integer(to)) {
        return match (a.signed, b.signed) {
            (true, true) | (false, false) => a.bits <= b.bits,
            (false, true) => a.bits < b.bits,
            (true, false) => false,
        };
    }
    // Digits left of the point `from` needs.
    let whole_digits = match (integer(from), decimal(from)) {
        (Some(i), _) => Some((i.digits, 0, false)),
        (None, Some((p, s, wide))) => Some((p - s, s, wide)),
        (None, None) => None,
    };
    match (from, to) {
        (Float32, Float64) | (Date32, Date64) => true,
        (_, Float32 | Float64) => integer(from).is_some(),
        _ => match (whole_digits, decimal(to)) {
            (Some((digits, scale, wide)), Some((p, s, to_wide))) => {
                (to_wide || !wide) && s >= scale && p - s >= digits
            }
            _ => false,
        },
    }
}

struct Integer {
    bits: u8,
    /// Decimal digits of its widest value.
    digits: i32,
    signed: bool,
}

fn integer(t: &DataType) -> Option<Integer> {
    use DataType::*;
    let (bits, digits, signed) = match t {
        Int8 => (8, 3, true),
        Int16 => (16, 5, true),
        Int32 => (32, 10, true),
        Int64 => (64, 19, true),
        UInt8 => (8, 3, false),
        UInt16 => (16, 5, false),
        UInt32 => (32, 10, false),
        UInt64 => (64, 20, false),
        _ => return None,
    };
    Some(Integer {
        bits,
        digits,
        signed,
    })
}

/// Precision, scale and whether it is 256 bits wide.
fn decimal(t: &DataType) -> Option<(i32, i32, bool)> {
    match t {
        DataType::Decimal128(p, s) => Some((*p as i32, *s as i32, false)),
        DataType::Decimal256(p, s) => Some((*p as i32, *s as i32, true)),
        _ => None,
    }
}

/// A qualifying filter planned over its stored columns.
#[derive(Debug)]
pub(crate) struct DimensionFilter {
    /// The stored columns it reads, in the order of `schema`.
    pub columns: Vec<usize>,
    schema: SchemaRef,
    predicate: Arc<dyn PhysicalExpr>,
    display: String,
}

impl DimensionFilter {
    /// Plans `filter` (unqualified, reading exactly `columns` of `stored`, as given by
    /// [`dimension_filter_columns`]).
    pub fn plan(
        stored: &Schema,
        columns: Vec<usize>,
        filter: &Expr,
        state: &dyn Session,
    ) -> Result<Self> {
        let fields: Vec<Field> = columns
            .iter()
            .map(|&c| {
                let f = stored.field(c);
                Field::new(f.name(), f.data_type().clone(), true)
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        Ok(DimensionFilter {
            predicate: state.create_physical_expr(filter.clone(), &df_schema)?,
            columns,
            schema,
            display: filter.to_string(),
        })
    }

    /// Which of `rows` rows pass (null = no), given the block's arrays of `columns`.
    pub fn rows(&self, arrays: Vec<ArrayRef>, rows: usize) -> Result<BooleanBuffer> {
        let batch = RecordBatch::try_new_with_options(
            self.schema.clone(),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        passing_rows(self.predicate.as_ref(), &batch, &self.display)
    }

    pub fn display(&self) -> &str {
        &self.display
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Date32Array, Int16Array, Int64Array};
    use datafusion::logical_expr::{cast, col, lit};
    use datafusion::prelude::SessionContext;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("qty", DataType::Int16, true),
            Field::new("day", DataType::Date32, true),
            Field::new("city", DataType::Utf8, true),
            Field::new("ids", DataType::UInt32, true),
            Field::new("revenue", DataType::Int64, true),
        ])
    }

    #[test]
    fn only_deterministic_filters_on_plain_dimensions_qualify() {
        let s = schema();
        // Column 3 is a string dimension the table reads as ids.
        let mut stored: Vec<Field> = s.fields().iter().map(|f| f.as_ref().clone()).collect();
        stored[3] = Field::new("ids", DataType::Utf8, true);
        let stored = Schema::new(stored);
        let q = |e: Expr| dimension_filter_columns(&s, &stored, 4, &e);
        assert_eq!(q(col("qty").eq(lit(26i16))), Some(vec![0]));
        assert_eq!(
            q(col("day")
                .gt(lit(datafusion::common::ScalarValue::Date32(Some(5))))
                .or(col("qty").in_list(vec![lit(1i16), lit(2i16)], false))),
            Some(vec![0, 1])
        );
        assert_eq!(q(col("qty").between(lit(1i16), lit(3i16))), Some(vec![0]));
        // Widening casts cannot fail; narrowing ones and arithmetic can.
        assert_eq!(
            q(cast(col("qty"), DataType::Int64).eq(lit(26i64))),
            Some(vec![0])
        );
        assert_eq!(
            q(cast(col("qty"), DataType::Decimal128(7, 2)).eq(lit(1i64))),
            Some(vec![0])
        );
        assert_eq!(q(cast(col("qty"), DataType::Int8).eq(lit(1i8))), None);
        assert_eq!(
            q(cast(col("qty"), DataType::Decimal128(5, 2)).eq(lit(1i64))),
            None
        );
        assert_eq!(q((col("qty") + lit(1i16)).eq(lit(3i16))), None);
        // A string, a string read as ids, a measure, a mix with a string, a volatile filter.
        assert_eq!(q(col("city").eq(lit("x"))), None);
        assert_eq!(q(col("ids").eq(lit(1u32))), None);
        assert_eq!(q(col("revenue").gt(lit(1i64))), None);
        assert_eq!(
            q(col("qty").eq(lit(1i16)).or(col("city").eq(lit("x")))),
            None
        );
        assert_eq!(
            q(cast(col("qty"), DataType::Float64)
                .lt(datafusion::functions::math::expr_fn::random())),
            None
        );
    }

    #[test]
    fn rows_pass_as_the_filter_says_and_null_never_passes() {
        let ctx = SessionContext::new();
        let stored = schema();
        let filter = col("qty")
            .gt(lit(2i16))
            .and(col("day").lt(lit(datafusion::common::ScalarValue::Date32(Some(4)))));
        let f = DimensionFilter::plan(&stored, vec![0, 1], &filter, &ctx.state()).unwrap();
        let qty: ArrayRef = Arc::new(Int16Array::from(vec![
            Some(1),
            Some(3),
            None,
            Some(5),
            Some(9),
        ]));
        let day: ArrayRef = Arc::new(Date32Array::from(vec![
            Some(0),
            Some(1),
            Some(2),
            None,
            Some(3),
        ]));
        let got: Vec<bool> = f.rows(vec![qty, day], 5).unwrap().iter().collect();
        assert_eq!(got, vec![false, true, false, false, true]);
        // A type the plan did not expect is an error, not a wrong answer.
        let wrong: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
        assert!(f.rows(vec![wrong.clone(), wrong], 2).is_err());
    }
}
