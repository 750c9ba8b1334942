//! Derived columns looked up by key inside the cuboid scan.
//!
//! A derived dimension (`d_month` of `dates`, derived through `lo_orderdate`) is not stored in
//! the cuboid: the query joins the cuboid's foreign key to the lookup table's snapshot. As a
//! hash join over a base cuboid that costs a hash, a probe and a key comparison per row — a
//! quarter of an ad-hoc query's time. A snapshot is small and its primary key unique (the
//! build refuses duplicates), so when both keys are integers (or dates) the scan itself maps each row's
//! key to its snapshot row through an array indexed by key (a hash map when the keys are too
//! sparse) and takes the derived columns from it: the join's result, without the join. An
//! inner join's rows whose key has no snapshot row are dropped, a left join's get nulls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, PrimitiveArray, RecordBatch, UInt32Array,
};
use datafusion::arrow::buffer::{BooleanBuffer, NullBuffer, ScalarBuffer};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type,
    UInt32Type, UInt8Type,
};
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, DataFusionError};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;

use super::cuboid_scan::CuboidTable;
use super::string_filter::passing_rows;
use crate::error::{Error, Result};
use crate::model::layout::is_int;

/// A key range at most this many times the snapshot's rows (or [`DENSE_FLOOR`]) is indexed
/// by an array: 4 bytes per possible key, one load per row.
const DENSE_FACTOR: i64 = 8;
const DENSE_FLOOR: i64 = 1 << 20;

/// Whether a foreign key of type `fk` can be looked up in a primary key of type `pk`:
/// integers that fit an `i64`, or dates of the same type.
pub(crate) fn lookup_keys(fk: &DataType, pk: &DataType) -> bool {
    (is_int(fk) && is_int(pk)) || (fk == pk && key_type(fk))
}

fn key_type(t: &DataType) -> bool {
    is_int(t) || matches!(t, DataType::Date32 | DataType::Date64)
}

/// One lookup table's columns, derived through a foreign key of the cuboid.
#[derive(Debug, Clone)]
pub(crate) struct DerivedLookup {
    /// The lookup's snapshot.
    pub snapshot: CuboidTable,
    /// The snapshot's key column.
    pub primary_key: String,
    /// The cuboid's dimension column holding the key.
    pub foreign_key: String,
    /// An inner join (rows without a snapshot row are dropped) or a left join (their
    /// derived columns are null).
    pub inner: bool,
    /// Built when a scan first needs it, then shared by the scan's partitions and by later
    /// runs of a cached plan (a snapshot never changes).
    index: Arc<Mutex<Option<Arc<LookupIndex>>>>,
}

/// The snapshot's rows and where each key's row is.
#[derive(Debug)]
pub(crate) struct LookupIndex {
    pub rows: RecordBatch,
    keys: KeyIndex,
}

#[derive(Debug)]
enum KeyIndex {
    /// `rows[key - min]`, [`NO_ROW`] for keys without a row.
    Dense {
        min: i64,
        rows: Vec<u32>,
    },
    Sparse(HashMap<i64, u32>),
}

const NO_ROW: u32 = u32::MAX;

impl DerivedLookup {
    pub fn new(snapshot: CuboidTable, primary_key: &str, foreign_key: &str, inner: bool) -> Self {
        DerivedLookup {
            snapshot,
            primary_key: primary_key.to_string(),
            foreign_key: foreign_key.to_string(),
            inner,
            index: Arc::default(),
        }
    }

    /// The snapshot's rows and key index, read on first use (or shared with the other plans
    /// over the same snapshot, through the segment reader).
    pub fn index(&self) -> Result<Arc<LookupIndex>> {
        let mut slot = self.index.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = slot.as_ref() {
            return Ok(index.clone());
        }
        let key = format!("{}/{}", self.snapshot.storage_key(), self.primary_key);
        let index = self
            .snapshot
            .reader()
            .lookup_index(&key, &mut || self.build().map(Arc::new))?;
        *slot = Some(index.clone());
        Ok(index)
    }

    fn build(&self) -> Result<LookupIndex> {
        let schema = self.snapshot.schema_ref().clone();
        let rows = concat_batches(&schema, &self.snapshot.read_all()?)?;
        let key = schema.index_of(&self.primary_key)?;
        LookupIndex::new(rows, key).map_err(|detail| Error::Corrupt {
            what: format!("the lookup snapshot keyed by {}", self.primary_key),
            detail,
        })
    }
}

impl LookupIndex {
    /// The index of `rows` by their column `key`; a key found twice is an error.
    fn new(rows: RecordBatch, key: usize) -> std::result::Result<Self, String> {
        let keys = map_keys(rows.column(key), None, Some).map_err(|e| e.to_string())?;
        if keys.len() >= NO_ROW as usize {
            return Err(format!("{} rows are too many to index", keys.len()));
        }
        let present = keys.iter().flatten();
        let (min, max) = match (present.clone().min(), present.max()) {
            (Some(min), Some(max)) => (*min, *max),
            _ => (0, -1),
        };
        let range = max.saturating_sub(min).saturating_add(1);
        let duplicate = |key: i64| format!("key {key} appears twice");
        let index = if range <= DENSE_FLOOR.max(DENSE_FACTOR.saturating_mul(keys.len() as i64)) {
            let mut rows = vec![NO_ROW; range.max(0) as usize];
            for (row, key) in keys.iter().enumerate() {
                if let Some(key) = key {
                    let slot = &mut rows[(key - min) as usize];
                    if *slot != NO_ROW {
                        return Err(duplicate(*key));
                    }
                    *slot = row as u32;
                }
            }
            KeyIndex::Dense { min, rows }
        } else {
            let mut map = HashMap::with_capacity(keys.len());
            for (row, key) in keys.iter().enumerate() {
                if let Some(key) = key {
                    if map.insert(*key, row as u32).is_some() {
                        return Err(duplicate(*key));
                    }
                }
            }
            KeyIndex::Sparse(map)
        };
        Ok(LookupIndex { rows, keys: index })
    }

    /// The snapshot row of each foreign key in `keys`, null where there is none (a null key
    /// has none).
    pub fn rows_of(&self, keys: &ArrayRef) -> Result<UInt32Array> {
        let rows = map_keys(keys, NO_ROW, |key| match &self.keys {
            KeyIndex::Dense { min, rows } => key
                .checked_sub(*min)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| rows.get(i).copied())
                .unwrap_or(NO_ROW),
            KeyIndex::Sparse(map) => map.get(&key).copied().unwrap_or(NO_ROW),
        })?;
        let found = BooleanBuffer::collect_bool(rows.len(), |i| rows[i] != NO_ROW);
        let nulls = (found.count_set_bits() < rows.len()).then(|| NullBuffer::new(found));
        Ok(UInt32Array::new(ScalarBuffer::from(rows), nulls))
    }
}

/// `f` of each key of a key column (see [`lookup_keys`]) as an `i64`, `null` for null keys;
/// compiled per key type, so no per-row dispatch or copy.
fn map_keys<R: Copy>(keys: &ArrayRef, null: R, f: impl Fn(i64) -> R) -> Result<Vec<R>> {
    fn each<T: ArrowPrimitiveType, R: Copy>(
        keys: &PrimitiveArray<T>,
        null: R,
        f: impl Fn(i64) -> R,
    ) -> Vec<R>
    where
        T::Native: Into<i64>,
    {
        match keys.nulls() {
            None => keys.values().iter().map(|&k| f(k.into())).collect(),
            Some(_) => keys
                .iter()
                .map(|k| k.map_or(null, |k| f(k.into())))
                .collect(),
        }
    }
    Ok(match keys.data_type() {
        DataType::Int8 => each(keys.as_primitive::<Int8Type>(), null, f),
        DataType::Int16 => each(keys.as_primitive::<Int16Type>(), null, f),
        DataType::Int32 => each(keys.as_primitive::<Int32Type>(), null, f),
        DataType::Int64 => each(keys.as_primitive::<Int64Type>(), null, f),
        DataType::UInt8 => each(keys.as_primitive::<UInt8Type>(), null, f),
        DataType::UInt16 => each(keys.as_primitive::<UInt16Type>(), null, f),
        DataType::UInt32 => each(keys.as_primitive::<UInt32Type>(), null, f),
        DataType::Date32 => each(keys.as_primitive::<Date32Type>(), null, f),
        DataType::Date64 => each(keys.as_primitive::<Date64Type>(), null, f),
        other => {
            return Err(Error::DataFusion(DataFusionError::Internal(format!(
                "a lookup key of type {other}"
            ))))
        }
    })
}

/// A filter on the columns of one inner lookup, which the scan applies exactly: evaluated
/// once per snapshot row, then each cuboid row passes as its snapshot row does (a row
/// without one is dropped by the inner join anyway). Like [`super::string_filter`]'s, such
/// filters are deterministic and cannot fail on a snapshot row no cuboid row references.
#[derive(Debug)]
pub(crate) struct LookupFilter {
    /// The lookup's position in the table's lookups.
    pub lookup: usize,
    /// Over the snapshot's columns.
    predicate: Arc<dyn PhysicalExpr>,
    display: String,
    /// Whether each snapshot row passes, computed when first needed.
    passing: Mutex<Option<Arc<BooleanBuffer>>>,
}

impl LookupFilter {
    /// Plans `filter`, over the unqualified columns of `snapshot`, for lookup `lookup`.
    pub fn plan(
        lookup: usize,
        snapshot: &SchemaRef,
        filter: &Expr,
        state: &dyn Session,
    ) -> Result<Self> {
        let df_schema = DFSchema::try_from(snapshot.as_ref().clone())?;
        Ok(LookupFilter {
            lookup,
            predicate: state.create_physical_expr(filter.clone(), &df_schema)?,
            display: filter.to_string(),
            passing: Mutex::default(),
        })
    }

    pub fn display(&self) -> &str {
        &self.display
    }

    /// Whether each row of the snapshot `index` passes (null = no).
    pub fn passing(&self, index: &LookupIndex) -> Result<Arc<BooleanBuffer>> {
        let mut slot = self.passing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let p = Arc::new(passing_rows(
            self.predicate.as_ref(),
            &index.rows,
            &self.display,
        )?);
        *slot = Some(p.clone());
        Ok(p)
    }
}

/// The rows that found a snapshot row (`at` not null) that passes (`passing`, by snapshot
/// row; every one when `None`).
pub(crate) fn found_and_passing(
    at: &UInt32Array,
    passing: Option<&BooleanBuffer>,
) -> BooleanBuffer {
    let rows = at.values();
    match (at.nulls(), passing) {
        (None, None) => BooleanBuffer::new_set(rows.len()),
        (Some(nulls), None) => nulls.inner().clone(),
        (None, Some(p)) => BooleanBuffer::collect_bool(rows.len(), |i| p.value(rows[i] as usize)),
        (Some(nulls), Some(p)) => BooleanBuffer::collect_bool(rows.len(), |i| {
            nulls.is_valid(i) && p.value(rows[i] as usize)
        }),
    }
}

/// The name of snapshot column `column` of the scan's `lookup`th lookup in the scan's
/// schema (a cuboid's own columns may share the snapshot's names).
pub(crate) fn derived_field(lookup: usize, column: &str) -> String {
    format!("__qilin_derived{lookup}_{column}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int16Array, Int32Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    fn snapshot(keys: Vec<Option<i32>>) -> RecordBatch {
        let names: Vec<String> = (0..keys.len()).map(|i| format!("row{i}")).collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("name", DataType::Utf8, true),
                Field::new("key", DataType::Int32, true),
            ])),
            vec![
                Arc::new(StringArray::from(names)),
                Arc::new(Int32Array::from(keys)),
            ],
        )
        .unwrap()
    }

    /// Looks `keys` up in an index of `rows` keyed by `rows`' column 1.
    fn rows_of(index: &LookupIndex, keys: Vec<Option<i16>>) -> Vec<Option<u32>> {
        let keys: ArrayRef = Arc::new(Int16Array::from(keys));
        index.rows_of(&keys).unwrap().iter().collect()
    }

    #[test]
    fn keys_find_their_row_dense_or_sparse() {
        let keys = vec![Some(7), None, Some(3), Some(-2)];
        let dense = LookupIndex::new(snapshot(keys.clone()), 1).unwrap();
        assert!(matches!(dense.keys, KeyIndex::Dense { min: -2, .. }));
        // Keys far apart: a map, not a 2^31-slot array.
        let mut far = keys.clone();
        far.push(Some(i32::MAX));
        let sparse = LookupIndex::new(snapshot(far), 1).unwrap();
        assert!(matches!(sparse.keys, KeyIndex::Sparse(_)));
        for index in [&dense, &sparse] {
            // A key without a row, a null key and keys outside the range find none.
            assert_eq!(
                rows_of(
                    index,
                    vec![Some(3), Some(7), Some(-2), Some(4), None, Some(-3), Some(8)]
                ),
                vec![Some(2), Some(0), Some(3), None, None, None, None]
            );
        }
        let none = LookupIndex::new(snapshot(vec![None]), 1).unwrap();
        assert_eq!(rows_of(&none, vec![Some(0), None]), vec![None, None]);
    }

    #[test]
    fn a_duplicated_key_is_an_error() {
        let err = LookupIndex::new(snapshot(vec![Some(1), Some(5), Some(1)]), 1).unwrap_err();
        assert_eq!(err, "key 1 appears twice");
        let mut sparse = vec![Some(i32::MIN), Some(i32::MAX), Some(i32::MAX)];
        sparse.insert(1, Some(0));
        let err = LookupIndex::new(snapshot(sparse), 1).unwrap_err();
        assert_eq!(err, format!("key {} appears twice", i32::MAX));
    }

    #[test]
    fn only_integer_or_equal_date_keys_qualify() {
        assert!(lookup_keys(&DataType::Int32, &DataType::Int64));
        assert!(lookup_keys(&DataType::UInt16, &DataType::Int8));
        assert!(lookup_keys(&DataType::Date32, &DataType::Date32));
        assert!(!lookup_keys(&DataType::Date32, &DataType::Int32));
        assert!(!lookup_keys(&DataType::UInt64, &DataType::UInt64));
        assert!(!lookup_keys(&DataType::Utf8, &DataType::Utf8));
    }
}
