//! Filters the cuboid scan applies itself, exactly, on string dimension columns.
//!
//! A cuboid block stores each string dimension as a dictionary of its distinct values and one
//! small id per row. DataFusion's `Filter` above a scan compares the decoded strings of every
//! row (on a base cuboid: millions of `memcmp`s for `s_city IN (...)`); a [`StringFilter`]
//! evaluates the same predicate once per distinct value of the block and maps the result to
//! the rows through their ids. The provider reports such filters as `Exact`, so the `Filter`
//! above the scan no longer evaluates them, and a block in which no value passes is not
//! decoded at all.
//!
//! Only predicates over one string dimension column, deterministic and built from operators
//! that are defined on every string (comparisons, `IN`, `LIKE`, `IS NULL`, string functions)
//! qualify: they give every row the answer the `Filter` would have given it, and evaluating
//! them on a value no row holds cannot fail where the `Filter` would not.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, DictionaryArray, PrimitiveArray, RecordBatch,
    StringArray,
};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::datatypes::{
    ArrowDictionaryKeyType, ArrowNativeType, ArrowPrimitiveType, DataType, Field, Int32Type,
    Schema, SchemaRef, UInt16Type, UInt8Type,
};
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{DFSchema, DataFusionError};
use datafusion::logical_expr::{Expr, Operator};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{Error, Result};

/// Scalar functions that are deterministic and total on strings.
const STRING_FUNCTIONS: &[&str] = &[
    "upper",
    "lower",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "starts_with",
    "ends_with",
    "strpos",
    "concat",
    "coalesce",
    "nullif",
];

/// The schema column a filter may be applied on by the scan: its only column, a dimension
/// (one of the first `dims` columns of `schema`) of type `Utf8`; `None` when the filter does
/// not qualify.
pub(crate) fn string_filter_column(schema: &Schema, dims: usize, filter: &Expr) -> Option<usize> {
    let columns = filter.column_refs();
    let [column] = columns.into_iter().collect::<Vec<_>>()[..] else {
        return None;
    };
    let index = schema.index_of(&column.name).ok()?;
    if index >= dims || schema.field(index).data_type() != &DataType::Utf8 {
        return None;
    }
    if filter.is_volatile() || filter.exists(|e| Ok(!allowed(e))).unwrap_or(true) {
        return None;
    }
    Some(index)
}

/// Whether `e` is a node a qualifying filter may contain: evaluated on a value no row holds,
/// it cannot fail (the scan's lookup filters use it too).
pub(super) fn allowed(e: &Expr) -> bool {
    match e {
        // Arithmetic can fail (division by zero) on a value whose rows another conjunct
        // would have ruled out first: only operators that cannot fail.
        Expr::BinaryExpr(b) => matches!(
            b.op,
            Operator::Eq
                | Operator::NotEq
                | Operator::Lt
                | Operator::LtEq
                | Operator::Gt
                | Operator::GtEq
                | Operator::And
                | Operator::Or
                | Operator::IsDistinctFrom
                | Operator::IsNotDistinctFrom
                | Operator::LikeMatch
                | Operator::ILikeMatch
                | Operator::NotLikeMatch
                | Operator::NotILikeMatch
                | Operator::StringConcat
        ),
        Expr::Column(_)
        | Expr::Literal(..)
        | Expr::Not(_)
        | Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsUnknown(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNotFalse(_)
        | Expr::IsNotUnknown(_)
        | Expr::Between(_)
        | Expr::Like(_)
        | Expr::InList(_) => true,
        // A cast of a string to a string type cannot fail; a cast of a literal fails (if at
        // all) for every row alike.
        Expr::Cast(c) => {
            matches!(c.expr.as_ref(), Expr::Literal(..))
                || matches!(
                    c.field.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                )
        }
        Expr::TryCast(_) => true,
        Expr::ScalarFunction(f) => STRING_FUNCTIONS.contains(&f.func.name()),
        _ => false,
    }
}

/// A qualifying filter planned for one column: the predicate over a one-column batch of
/// values.
#[derive(Debug)]
pub(crate) struct StringFilter {
    /// The column's index in the table's schema.
    pub column: usize,
    schema: SchemaRef,
    predicate: Arc<dyn PhysicalExpr>,
    /// Whether a row whose value is null passes.
    null_passes: bool,
    display: String,
}

impl StringFilter {
    /// Plans `filter` (unqualified, qualifying by [`string_filter_column`]) on `schema`'s
    /// column `column`.
    pub fn plan(
        schema: &Schema,
        column: usize,
        filter: &Expr,
        state: &dyn Session,
    ) -> Result<Self> {
        let field = Field::new(schema.field(column).name(), DataType::Utf8, true);
        let one = Arc::new(Schema::new(vec![field]));
        let df_schema = DFSchema::try_from(one.as_ref().clone())?;
        let predicate = state.create_physical_expr(filter.clone(), &df_schema)?;
        let mut f = StringFilter {
            column,
            schema: one,
            predicate,
            null_passes: false,
            display: filter.to_string(),
        };
        let null: ArrayRef = Arc::new(StringArray::from(vec![None::<&str>]));
        f.null_passes = f.passes(&null)?.value(0);
        Ok(f)
    }

    /// Whether each of `values` passes (null = no).
    fn passes(&self, values: &ArrayRef) -> Result<BooleanBuffer> {
        let batch = RecordBatch::try_new(self.schema.clone(), vec![values.clone()])?;
        passing_rows(self.predicate.as_ref(), &batch, &self.display)
    }

    /// Which rows of a block pass, given the block's column: one evaluation per distinct
    /// value when it is a dictionary, per row otherwise.
    pub fn rows(&self, column: &ArrayRef) -> Result<BooleanBuffer> {
        match dictionary_key(column) {
            Some(DataType::UInt8) => self.rows_by_id(column.as_dictionary::<UInt8Type>()),
            Some(DataType::UInt16) => self.rows_by_id(column.as_dictionary::<UInt16Type>()),
            Some(DataType::Int32) => self.rows_by_id(column.as_dictionary::<Int32Type>()),
            _ => {
                let plain = datafusion::arrow::compute::cast(column, &DataType::Utf8)?;
                self.passes(&plain)
            }
        }
    }

    fn rows_by_id<K: ArrowDictionaryKeyType>(
        &self,
        dictionary: &DictionaryArray<K>,
    ) -> Result<BooleanBuffer> {
        let values = datafusion::arrow::compute::cast(dictionary.values(), &DataType::Utf8)?;
        let pass = self.passes(&values)?;
        let keys = dictionary.keys();
        let rows = keys.len();
        let passing = pass.count_set_bits();
        let by_id = if passing == 0 || passing == pass.len() {
            check_dictionary_ids(keys, pass.len())?;
            if passing == 0 {
                BooleanBuffer::new_unset(rows)
            } else {
                BooleanBuffer::new_set(rows)
            }
        } else {
            let pass: Vec<bool> = pass.iter().collect();
            let ids = keys.values();
            // The ids are checked in the same pass that reads them (a base cuboid's column
            // is millions of ids, read from memory once instead of twice). A null row's id
            // slot may hold anything: `get` keeps it from panicking, its answer is replaced
            // below, and the exact check tells it from damage.
            let mut out_of_range = false;
            let by_id = BooleanBuffer::collect_bool(rows, |i| match pass.get(ids[i].as_usize()) {
                Some(&p) => p,
                None => {
                    out_of_range = true;
                    false
                }
            });
            if out_of_range {
                check_dictionary_ids(keys, pass.len())?;
            }
            by_id
        };
        Ok(match keys.nulls() {
            None => by_id,
            Some(nulls) if self.null_passes => &(&by_id & nulls.inner()) | &!nulls.inner(),
            Some(nulls) => &by_id & nulls.inner(),
        })
    }

    pub fn display(&self) -> &str {
        &self.display
    }
}

/// Which rows of `batch` pass `predicate` (a filter displayed as `display`); null = no.
pub(super) fn passing_rows(
    predicate: &dyn PhysicalExpr,
    batch: &RecordBatch,
    display: &str,
) -> Result<BooleanBuffer> {
    let result = predicate.evaluate(batch)?.into_array(batch.num_rows())?;
    let Some(result) = result.as_any().downcast_ref::<BooleanArray>() else {
        return Err(Error::DataFusion(DataFusionError::Internal(format!(
            "filter {display} is {}, not boolean",
            result.data_type()
        ))));
    };
    Ok(match result.nulls() {
        Some(nulls) => result.values() & nulls.inner(),
        None => result.values().clone(),
    })
}

/// [`crate::storage::block::check_dictionary_ids`] as this module's error.
pub(super) fn check_dictionary_ids<K: ArrowPrimitiveType>(
    keys: &PrimitiveArray<K>,
    values: usize,
) -> Result<()> {
    crate::storage::block::check_dictionary_ids(keys, values).map_err(|detail| Error::Corrupt {
        what: "a block's string column".into(),
        detail,
    })
}

/// The key type of a block's string column read as a dictionary (the segment reader gives
/// the narrowest: `UInt8`, `UInt16` or `Int32`); `None` for a plain column.
pub(super) fn dictionary_key(column: &ArrayRef) -> Option<&DataType> {
    match column.data_type() {
        DataType::Dictionary(key, _) => Some(key.as_ref()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int32Array;
    use datafusion::arrow::buffer::{NullBuffer, ScalarBuffer};
    use datafusion::logical_expr::{col, lit};
    use datafusion::prelude::SessionContext;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("city", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("measure", DataType::Utf8, true),
        ])
    }

    #[test]
    fn only_deterministic_filters_on_one_string_dimension_qualify() {
        let s = schema();
        let q = |e: Expr| string_filter_column(&s, 2, &e);
        assert_eq!(q(col("city").eq(lit("x"))), Some(0));
        assert_eq!(
            q(col("city").in_list(vec![lit("a"), lit("b")], true)),
            Some(0)
        );
        assert_eq!(
            q(col("city").like(lit("a%")).or(col("city").is_null())),
            Some(0)
        );
        assert_eq!(
            q(datafusion::functions::string::expr_fn::upper(col("city")).eq(lit("X"))),
            Some(0)
        );
        // Two columns, a non-string column, a measure column (not a dimension).
        assert_eq!(q(col("city").eq(lit("x")).or(col("n").eq(lit(1)))), None);
        assert_eq!(q(col("n").eq(lit(1))), None);
        assert_eq!(q(col("measure").eq(lit("x"))), None);
        // Arithmetic that can fail per value, a cast that can, and a volatile function.
        assert_eq!(
            q(
                (datafusion::functions::unicode::expr_fn::character_length(col("city")) / lit(0))
                    .eq(lit(1))
            ),
            None
        );
        assert_eq!(
            q(datafusion::logical_expr::cast(col("city"), DataType::Int64).eq(lit(3i64))),
            None
        );
        assert_eq!(
            q(col("city").eq(datafusion::functions::math::expr_fn::random())),
            None
        );
    }

    #[test]
    fn rows_pass_as_their_values_do() {
        let ctx = SessionContext::new();
        let state = ctx.state();
        let s = schema();
        let values = StringArray::from(vec![Some("JORDAN   1"), Some("PERU"), None]);
        // Rows: ids into the values, one null id.
        let keys = datafusion::arrow::array::Int32Array::from(vec![
            Some(0),
            Some(1),
            None,
            Some(2),
            Some(0),
            Some(1),
        ]);
        let column: ArrayRef = Arc::new(DictionaryArray::new(keys, Arc::new(values)));
        let plain = datafusion::arrow::compute::cast(&column, &DataType::Utf8).unwrap();
        let cases: Vec<(Expr, Vec<bool>)> = vec![
            (
                col("city").in_list(vec![lit("JORDAN   1"), lit("CHINA")], false),
                vec![true, false, false, false, true, false],
            ),
            (
                col("city").not_eq(lit("PERU")),
                vec![true, false, false, false, true, false],
            ),
            (
                col("city").is_null().or(col("city").like(lit("P%"))),
                vec![false, true, true, true, false, true],
            ),
        ];
        for (expr, want) in cases {
            let f = StringFilter::plan(&s, 0, &expr, &state).unwrap();
            let got: Vec<bool> = f.rows(&column).unwrap().iter().collect();
            assert_eq!(got, want, "{expr}");
            // A plain column gives the same answer row by row.
            let got: Vec<bool> = f.rows(&plain).unwrap().iter().collect();
            assert_eq!(got, want, "{expr} over plain strings");
        }
        // An id past the values (damaged data) is an error, never a wrong answer or a panic.
        let keys = datafusion::arrow::array::Int32Array::from(vec![0, 7]);
        let values = Arc::new(StringArray::from(vec!["a", "b"]));
        // SAFETY: the array is only read by `rows`, which checks every id before using it.
        let bad: ArrayRef = Arc::new(unsafe { DictionaryArray::new_unchecked(keys, values) });
        let f = StringFilter::plan(&s, 0, &col("city").eq(lit("a")), &state).unwrap();
        let err = f.rows(&bad).unwrap_err().to_string();
        assert!(err.contains("dictionary id 7 out of 2 values"), "{err}");
        // A negative id too; a null row's slot may hold any id and gets the null's answer.
        let values: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        let negative = Int32Array::from(vec![0, -3]);
        // SAFETY: as above.
        let bad: ArrayRef =
            Arc::new(unsafe { DictionaryArray::new_unchecked(negative, values.clone()) });
        let err = f.rows(&bad).unwrap_err().to_string();
        assert!(err.contains("dictionary id -3 out of 2 values"), "{err}");
        let slots = ScalarBuffer::from(vec![1, 99, 0, -5, 1]);
        let nulls = NullBuffer::from(vec![true, false, true, false, true]);
        let keys = Int32Array::new(slots, Some(nulls));
        // SAFETY: as above.
        let column: ArrayRef = Arc::new(unsafe { DictionaryArray::new_unchecked(keys, values) });
        for (expr, want) in [
            (col("city").eq(lit("b")), [true, false, false, false, true]),
            (col("city").is_null(), [false, true, false, true, false]),
            (
                col("city").is_null().or(col("city").eq(lit("a"))),
                [false, true, true, true, false],
            ),
            (
                col("city").is_null().or(col("city").is_not_null()),
                [true; 5],
            ),
        ] {
            let f = StringFilter::plan(&s, 0, &expr, &state).unwrap();
            let got: Vec<bool> = f.rows(&column).unwrap().iter().collect();
            assert_eq!(got, want, "{expr}");
        }
    }
}
