//! Aggregate functions that merge stored COUNT(DISTINCT) states across cuboid rows and return
//! the distinct count: `qilin_hll_count` (HyperLogLog, approximate) and `qilin_bitmap_count`
//! (roaring bitmap, exact). Their intermediate state is the serialized sketch, so DataFusion
//! can run them in partial/final mode like any aggregate.
//!
//! `qilin_topn` merges TOP_N states the same way and returns the merged counters as a list of
//! `{by, value}` structs, largest first, which the TOP_N rewrite unnests into rows.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, Float64Array, ListArray, StringArray, StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::{create_udaf, Accumulator, AggregateUDF, Volatility};

use crate::measure::bitmap::DistinctBitmap;
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
        // The serialized size is a fair proxy for the in-memory size of a roaring bitmap.
        std::mem::size_of_val(self) + self.bitmap.as_ref().map_or(0, |b| b.to_bytes().len())
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
    Arc::new(create_udaf(
        BITMAP_COUNT,
        vec![DataType::Binary],
        Arc::new(DataType::Int64),
        Volatility::Immutable,
        Arc::new(|_| Ok(Box::<BitmapAccumulator>::default())),
        Arc::new(vec![DataType::Binary]),
    ))
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
