//! Aggregate functions that merge stored COUNT(DISTINCT) states across cuboid rows and return
//! the distinct count: `qilin_hll_count` (HyperLogLog, approximate) and `qilin_bitmap_count`
//! (roaring bitmap, exact). Their intermediate state is the serialized sketch, so DataFusion
//! can run them in partial/final mode like any aggregate.
//!
//! `qilin_bitmap_count` also has a [`GroupsAccumulator`]: a base-cuboid scan merges millions
//! of one-value states into a few hundred groups, and DataFusion's per-group adapter around a
//! plain [`Accumulator`] would slice every batch per group and ask each group its size.
//!
//! `qilin_topn` merges TOP_N states the same way and returns the merged counters as a list of
//! `{by, value}` structs, largest first, which the TOP_N rewrite unnests into rows.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float64Array, Int64Array, ListArray,
    StringArray, StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    create_udaf, Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature,
    Volatility,
};

use crate::measure::bitmap::{BitmapMerge, DistinctBitmap};
use crate::measure::hll::HyperLogLog;
use crate::measure::topn::TopNCounter;

pub(crate) const HLL_COUNT: &str = "qilin_hll_count";
pub(crate) const BITMAP_COUNT: &str = "qilin_bitmap_count";
pub(crate) const TOP_N: &str = "qilin_topn";

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Merges HyperLogLog states.
#[derive(Debug, Default)]
struct HllAccumulator {
    sketch: Option<HyperLogLog>,
}

impl Accumulator for HllAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::common::Result<()> {
        let states = values[0].as_binary::<i32>();
        for bytes in states.iter().flatten() {
            HyperLogLog::merge_bytes(&mut self.sketch, bytes).map_err(external)?;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> datafusion::common::Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(
            self.sketch.as_ref().map_or(0, |s| s.estimate() as i64),
        )))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.sketch.as_ref().map_or(0, |s| s.memory_size())
    }

    fn state(&mut self) -> datafusion::common::Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(
            self.sketch.as_ref().map(|s| s.to_bytes()),
        )])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::common::Result<()> {
        self.update_batch(states)
    }
}

/// Merges roaring-bitmap states.
#[derive(Debug, Default)]
struct BitmapAccumulator {
    bitmap: Option<DistinctBitmap>,
}

impl Accumulator for BitmapAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::common::Result<()> {
        let states = values[0].as_binary::<i32>();
        for bytes in states.iter().flatten() {
            match &mut self.bitmap {
                Some(b) => b.merge_from_bytes(bytes).map_err(external)?,
                None => self.bitmap = Some(DistinctBitmap::from_bytes(bytes).map_err(external)?),
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> datafusion::common::Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(
            self.bitmap.as_ref().map_or(0, |b| b.cardinality() as i64),
        )))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.bitmap.as_ref().map_or(0, |b| b.memory_size())
    }

    fn state(&mut self) -> datafusion::common::Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(
            self.bitmap.as_ref().map(|b| b.to_bytes()),
        )])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::common::Result<()> {
        self.update_batch(states)
    }
}

/// Merges roaring-bitmap states for all groups of a grouped aggregate at once: one bitmap per
/// group, each state merged straight into its group's bitmap.
#[derive(Debug, Default)]
struct BitmapGroups {
    bitmaps: Vec<BitmapMerge>,
    /// `memory_size` of each group's bitmap when last measured, and their sum.
    sizes: Vec<usize>,
    bytes: usize,
    /// Groups merged into since their size was last measured (`touched[g]` marks membership),
    /// so a batch re-measures each group it touched once, not once per row.
    touched: Vec<bool>,
    touched_groups: Vec<usize>,
}

impl BitmapGroups {
    fn merge_states(
        &mut self,
        states: &ArrayRef,
        group_indices: &[usize],
        filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> datafusion::common::Result<()> {
        if self.bitmaps.len() < total_num_groups {
            let empty = BitmapMerge::default().memory_size();
            self.bitmaps
                .resize_with(total_num_groups, BitmapMerge::default);
            self.bytes += empty * (total_num_groups - self.sizes.len());
            self.sizes.resize(total_num_groups, empty);
            self.touched.resize(total_num_groups, false);
        }
        let states = states.as_binary::<i32>();
        for (row, &group) in group_indices.iter().enumerate() {
            if states.is_null(row) || filter.is_some_and(|f| !f.is_valid(row) || !f.value(row)) {
                continue;
            }
            self.bitmaps[group]
                .merge_from_bytes(states.value(row))
                .map_err(external)?;
            if !self.touched[group] {
                self.touched[group] = true;
                self.touched_groups.push(group);
            }
        }
        for group in self.touched_groups.drain(..) {
            self.touched[group] = false;
            let size = self.bitmaps[group].memory_size();
            self.bytes = self.bytes - self.sizes[group] + size;
            self.sizes[group] = size;
        }
        Ok(())
    }

    /// Removes the emitted groups (all, or the first `n` with the rest renumbered from 0).
    fn take(&mut self, emit_to: EmitTo) -> impl Iterator<Item = DistinctBitmap> {
        let taken = emit_to.take_needed(&mut self.bitmaps);
        let sizes = emit_to.take_needed(&mut self.sizes);
        self.bytes -= sizes.iter().sum::<usize>();
        self.touched.truncate(self.bitmaps.len());
        taken.into_iter().map(BitmapMerge::finish)
    }
}

impl GroupsAccumulator for BitmapGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> datafusion::common::Result<()> {
        self.merge_states(&values[0], group_indices, opt_filter, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> datafusion::common::Result<ArrayRef> {
        let counts = self.take(emit_to).map(|b| b.cardinality() as i64);
        Ok(Arc::new(Int64Array::from_iter_values(counts)))
    }

    fn state(&mut self, emit_to: EmitTo) -> datafusion::common::Result<Vec<ArrayRef>> {
        let states = self
            .take(emit_to)
            .map(|b| (!b.is_empty()).then(|| b.to_bytes()))
            .collect::<BinaryArray>();
        Ok(vec![Arc::new(states)])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> datafusion::common::Result<()> {
        self.merge_states(&values[0], group_indices, None, total_num_groups)
    }

    /// The input already is a state: rows the filter drops become nulls (which merge as
    /// nothing).
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> datafusion::common::Result<Vec<ArrayRef>> {
        let Some(filter) = opt_filter else {
            return Ok(vec![Arc::clone(&values[0])]);
        };
        let states = values[0].as_binary::<i32>();
        let kept = states
            .iter()
            .zip(filter.iter())
            .map(|(state, keep)| state.filter(|_| keep == Some(true)))
            .collect::<BinaryArray>();
        Ok(vec![Arc::new(kept)])
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.bytes
            + (self.bitmaps.capacity() - self.bitmaps.len()) * std::mem::size_of::<BitmapMerge>()
            + self.sizes.capacity() * std::mem::size_of::<usize>()
            + self.touched.capacity()
            + self.touched_groups.capacity() * std::mem::size_of::<usize>()
    }
}

/// `qilin_bitmap_count(state)`: the exact distinct count of the union of bitmap states.
#[derive(Debug, PartialEq, Eq, Hash)]
struct BitmapCount {
    signature: Signature,
}

impl AggregateUDFImpl for BitmapCount {
    fn name(&self) -> &str {
        BITMAP_COUNT
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Int64)
    }

    fn accumulator(&self, _: AccumulatorArgs) -> datafusion::common::Result<Box<dyn Accumulator>> {
        Ok(Box::<BitmapAccumulator>::default())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> datafusion::common::Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "bitmap"),
            DataType::Binary,
            true,
        ))])
    }

    fn groups_accumulator_supported(&self, _: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _: AccumulatorArgs,
    ) -> datafusion::common::Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::<BitmapGroups>::default())
    }
}

/// Merges TOP_N states.
#[derive(Debug, Default)]
struct TopNAccumulator {
    state: Option<TopNCounter>,
}

/// The fields of one `qilin_topn` list element.
fn top_n_fields() -> Fields {
    Fields::from(vec![
        Field::new("by", DataType::Utf8, true),
        Field::new("value", DataType::Float64, false),
    ])
}

/// `qilin_topn`'s result type: `List<Struct{by, value}>`.
pub(crate) fn top_n_type() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(top_n_fields()),
        true,
    )))
}

impl Accumulator for TopNAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> datafusion::common::Result<()> {
        let states = values[0].as_binary::<i32>();
        for bytes in states.iter().flatten() {
            TopNCounter::merge_bytes(&mut self.state, bytes).map_err(external)?;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> datafusion::common::Result<ScalarValue> {
        let counters = self.state.as_ref().map(|s| s.sorted()).unwrap_or_default();
        if let Some(s) = self.state.as_ref().filter(|s| !s.is_exact()) {
            // The answer may be approximate (see `measure::topn`): say so where operators look.
            log::warn!(
                "TOP_N answer is approximate: a merged state held more than {} distinct values \
                 (sums may be overestimated by up to {})",
                s.capacity(),
                counters
                    .iter()
                    .map(|c| c.1.error)
                    .fold(s.missed(), f64::max)
            );
        }
        let by = StringArray::from_iter(counters.iter().map(|c| c.0));
        let value = Float64Array::from_iter_values(counters.iter().map(|c| c.1.sum));
        let items = StructArray::new(
            top_n_fields(),
            vec![Arc::new(by) as ArrayRef, Arc::new(value)],
            None,
        );
        let DataType::List(field) = top_n_type() else {
            unreachable!("a list type")
        };
        let list = ListArray::new(
            field,
            OffsetBuffer::from_lengths([counters.len()]),
            Arc::new(items),
            None,
        );
        Ok(ScalarValue::List(Arc::new(list)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.state.as_ref().map_or(0, |s| s.memory_size())
    }

    fn state(&mut self) -> datafusion::common::Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(
            self.state.as_ref().map(|s| s.to_bytes()),
        )])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> datafusion::common::Result<()> {
        self.update_batch(states)
    }
}

/// Merges TOP_N states into the list of their counters, largest first.
pub(crate) fn top_n() -> Arc<AggregateUDF> {
    Arc::new(create_udaf(
        TOP_N,
        vec![DataType::Binary],
        Arc::new(top_n_type()),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::<TopNAccumulator>::default())),
        Arc::new(vec![DataType::Binary]),
    ))
}

pub(crate) fn hll_count() -> Arc<AggregateUDF> {
    Arc::new(create_udaf(
        HLL_COUNT,
        vec![DataType::Binary],
        Arc::new(DataType::Int64),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::<HllAccumulator>::default())),
        Arc::new(vec![DataType::Binary]),
    ))
}

pub(crate) fn bitmap_count() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::from(BitmapCount {
        signature: Signature::exact(vec![DataType::Binary], Volatility::Immutable),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::BinaryArray;

    #[test]
    fn bitmap_states_merge_to_the_exact_count() {
        let mut a = DistinctBitmap::new();
        (0..100).for_each(|v| a.add_i64(v));
        let mut b = DistinctBitmap::new();
        (50..150).for_each(|v| b.add_i64(v));
        let states: ArrayRef = Arc::new(BinaryArray::from_iter(vec![
            Some(a.to_bytes()),
            None,
            Some(b.to_bytes()),
        ]));
        let mut acc = BitmapAccumulator::default();
        acc.update_batch(&[states]).unwrap();
        // Partial state → merge into a second accumulator, as a two-phase aggregate does.
        let partial = acc.state().unwrap()[0].to_array().unwrap();
        let mut fin = BitmapAccumulator::default();
        fin.merge_batch(&[partial]).unwrap();
        assert_eq!(fin.evaluate().unwrap(), ScalarValue::Int64(Some(150)));
    }

    #[test]
    fn grouped_bitmap_states_merge_per_group_and_emit_in_order() {
        let bytes_of = |values: std::ops::Range<i64>| {
            let mut b = DistinctBitmap::new();
            values.for_each(|v| b.add_i64(v));
            b.to_bytes()
        };
        // Group 0: 100 one-value states (past the small-set limit) and a large state
        // overlapping them; group 1: one value and a null; group 2: filtered out.
        let mut states: Vec<Option<Vec<u8>>> = (0..100).map(|v| Some(bytes_of(v..v + 1))).collect();
        let mut groups = vec![0; 100];
        states.extend([
            Some(bytes_of(50..200)),
            Some(bytes_of(5..6)),
            None,
            Some(bytes_of(7..8)),
        ]);
        groups.extend([0, 1, 1, 2]);
        let mut keep = vec![true; states.len()];
        *keep.last_mut().unwrap() = false;
        let filter = BooleanArray::from(keep);
        let states: ArrayRef = Arc::new(BinaryArray::from_iter(states));

        let mut acc = BitmapGroups::default();
        acc.update_batch(std::slice::from_ref(&states), &groups, Some(&filter), 3)
            .unwrap();
        let full = acc.size();
        // Partial phase: emit group 0's state; groups 1 and 2 become 0 and 1.
        let partial = acc.state(EmitTo::First(1)).unwrap();
        assert!(acc.size() < full, "emitting frees the group's bitmap");
        let rest = acc.evaluate(EmitTo::All).unwrap();
        assert_eq!(
            rest.as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .values(),
            &[1, 0]
        );

        let mut fin = BitmapGroups::default();
        fin.merge_batch(&partial, &[0], 1).unwrap();
        let total = fin.evaluate(EmitTo::All).unwrap();
        assert_eq!(
            total
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .values(),
            &[200]
        );

        // Skipping the partial phase passes states through, dropping filtered rows.
        let passed = acc.convert_to_state(&[states], Some(&filter)).unwrap();
        let passed = passed[0].as_binary::<i32>();
        assert_eq!(passed.len(), 104);
        assert!(passed.is_valid(0) && passed.is_valid(101) && passed.is_null(103));

        let bad: ArrayRef = Arc::new(BinaryArray::from_iter_values([b"junk".as_slice()]));
        assert!(BitmapGroups::default()
            .update_batch(&[bad], &[0], None, 1)
            .is_err());
    }

    #[test]
    fn hll_states_merge_close_to_the_true_count() {
        let mut a = HyperLogLog::default();
        (0..5000).for_each(|v| a.add_i64(v));
        let mut b = HyperLogLog::default();
        (2500..10000).for_each(|v| b.add_i64(v));
        let states: ArrayRef =
            Arc::new(BinaryArray::from_iter_values([a.to_bytes(), b.to_bytes()]));
        let mut acc = HllAccumulator::default();
        acc.update_batch(&[states]).unwrap();
        let ScalarValue::Int64(Some(n)) = acc.evaluate().unwrap() else {
            panic!("not an Int64")
        };
        assert!((n - 10000).abs() < 500, "estimate {n}");
    }

    #[test]
    fn corrupt_state_is_an_error_not_a_panic() {
        let states: ArrayRef = Arc::new(BinaryArray::from_iter_values([b"garbage".as_slice()]));
        assert!(HllAccumulator::default()
            .update_batch(std::slice::from_ref(&states))
            .is_err());
        assert!(BitmapAccumulator::default()
            .update_batch(&[states])
            .is_err());
    }

    #[test]
    fn top_n_states_merge_into_a_sorted_list() {
        let mut a = TopNCounter::new(10);
        a.offer(Some("x"), 1.0);
        a.offer(Some("y"), 5.0);
        let mut b = TopNCounter::new(10);
        b.offer(Some("x"), 7.0);
        let states: ArrayRef = Arc::new(BinaryArray::from_iter(vec![
            Some(a.to_bytes()),
            None,
            Some(b.to_bytes()),
        ]));
        let mut acc = TopNAccumulator::default();
        acc.update_batch(&[states]).unwrap();
        let partial = acc.state().unwrap()[0].to_array().unwrap();
        let mut fin = TopNAccumulator::default();
        fin.merge_batch(&[partial]).unwrap();
        let ScalarValue::List(list) = fin.evaluate().unwrap() else {
            panic!("not a list")
        };
        let items = list.value(0);
        let items = items.as_struct();
        let by: Vec<_> = items.column(0).as_string::<i32>().iter().collect();
        assert_eq!(by, vec![Some("x"), Some("y")]);
        let bad: ArrayRef = Arc::new(BinaryArray::from_iter_values([b"junk".as_slice()]));
        assert!(TopNAccumulator::default().update_batch(&[bad]).is_err());
    }

    #[test]
    fn no_rows_count_zero() {
        assert_eq!(
            HllAccumulator::default().evaluate().unwrap(),
            ScalarValue::Int64(Some(0))
        );
        assert_eq!(
            BitmapAccumulator::default().evaluate().unwrap(),
            ScalarValue::Int64(Some(0))
        );
    }
}
