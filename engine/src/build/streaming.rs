//! Aggregation of an input already sorted on its first dimensions.
//!
//! A child cuboid is read from its parent's blocks in the parent's rowkey order. When the
//! child's first `prefix` dimensions are also the parent's first ones (SSB: most children of
//! the base cuboid keep `d_year` in front), rows arrive grouped by those dimensions' values:
//! once the value changes, every group seen before is complete. [`PrefixAggregator`] emits
//! and drops them then, so its hash table holds the groups of one prefix value instead of the
//! whole cuboid. Near-base cuboids then fit their budget and stop spilling (a spilled group's
//! states are serialized, written, read back and merged a second time), the sort at the end
//! is of one prefix value's keys, and the writer encodes blocks while the parent is still
//! being read. A prefix value whose groups outgrow the budget still spills, within itself.

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::Field;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};

use super::spill::SpillingAggregator;
use crate::error::{Error, Result};

/// Where the groups of the current prefix value are and how to start the next ones.
pub struct PrefixAggregator {
    prefix: usize,
    /// The prefix columns in row format (byte order = rowkey order); `None` without a prefix.
    converter: Option<RowConverter>,
    /// The prefix value of the last row fed.
    last: Option<OwnedRow>,
    agg: SpillingAggregator,
    fresh: Box<dyn Fn() -> Result<SpillingAggregator> + Send>,
    flushes: usize,
}

impl PrefixAggregator {
    /// `fresh` makes an empty aggregator; `prefix_fields` are the input's first dimensions
    /// that it is sorted on (none: a plain [`SpillingAggregator`] that emits at the end).
    pub fn new(
        prefix_fields: &[Field],
        fresh: Box<dyn Fn() -> Result<SpillingAggregator> + Send>,
    ) -> Result<Self> {
        let converter = if prefix_fields.is_empty() {
            None
        } else {
            Some(RowConverter::new(
                prefix_fields
                    .iter()
                    .map(|f| SortField::new(f.data_type().clone()))
                    .collect(),
            )?)
        };
        Ok(PrefixAggregator {
            prefix: prefix_fields.len(),
            converter,
            last: None,
            agg: fresh()?,
            fresh,
            flushes: 0,
        })
    }

    /// How many times complete groups were emitted before the end (for tests).
    pub fn flushes(&self) -> usize {
        self.flushes
    }

    /// Adds `rows` rows (see [`SpillingAggregator::update`]); groups completed by them go to
    /// `sink` in rowkey order. Fails, emitting nothing more, when the rows are not sorted on
    /// the prefix: a child built from such input would hold one group several times.
    pub fn update(
        &mut self,
        dims: &[ArrayRef],
        inputs: &[Option<ArrayRef>],
        rows: usize,
        sink: &mut dyn FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let Some(converter) = &self.converter else {
            return self.agg.update(dims, inputs, rows);
        };
        if rows == 0 {
            return Ok(());
        }
        let keys = converter.convert_columns(&dims[..self.prefix])?;
        let out_of_order = self
            .last
            .as_ref()
            .is_some_and(|last| last.row() > keys.row(0))
            || (1..rows).any(|i| keys.row(i - 1) > keys.row(i));
        if out_of_order {
            return Err(Error::corrupt(
                "cuboid aggregation input",
                format!(
                    "rows are not in rowkey order on their first {} dimensions",
                    self.prefix
                ),
            ));
        }
        // The rows from `tail` on share the last prefix value: they may continue in the
        // next batch. Everything before them is complete once added.
        let last = keys.row(rows - 1);
        let mut tail = rows - 1;
        while tail > 0 && keys.row(tail - 1) == last {
            tail -= 1;
        }
        if tail > 0 {
            self.agg
                .update(&slice(dims, 0, tail), &slice_opt(inputs, 0, tail), tail)?;
            self.flush(sink)?;
        } else if self.last.as_ref().is_some_and(|l| l.row() != last) {
            self.flush(sink)?;
        }
        self.agg.update(
            &slice(dims, tail, rows - tail),
            &slice_opt(inputs, tail, rows - tail),
            rows - tail,
        )?;
        self.last = Some(last.owned());
        Ok(())
    }

    /// Emits the groups held so far and starts empty.
    fn flush(&mut self, sink: &mut dyn FnMut(RecordBatch) -> Result<()>) -> Result<()> {
        let done = std::mem::replace(&mut self.agg, (self.fresh)()?);
        self.flushes += 1;
        done.finish_each(sink)
    }

    /// Emits the remaining groups in rowkey order.
    pub fn finish(self, sink: &mut dyn FnMut(RecordBatch) -> Result<()>) -> Result<()> {
        self.agg.finish_each(sink)
    }
}

fn slice(columns: &[ArrayRef], offset: usize, len: usize) -> Vec<ArrayRef> {
    columns.iter().map(|c| c.slice(offset, len)).collect()
}

fn slice_opt(columns: &[Option<ArrayRef>], offset: usize, len: usize) -> Vec<Option<ArrayRef>> {
    columns
        .iter()
        .map(|c| c.as_ref().map(|c| c.slice(offset, len)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::aggregate::Mode;
    use crate::build::spill::SpillOptions;
    use crate::model::StateKind;
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::compute::concat_batches;
    use datafusion::arrow::datatypes::{DataType, Int64Type};
    use std::sync::Arc;

    fn fields() -> Vec<Field> {
        vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Int64, true),
        ]
    }

    fn aggregator(
        dir: &std::path::Path,
        memory: usize,
    ) -> Box<dyn Fn() -> Result<SpillingAggregator> + Send> {
        let dir = dir.to_path_buf();
        Box::new(move || {
            SpillingAggregator::new(
                Mode::Merge,
                fields(),
                &[("n".to_string(), StateKind::Count)],
                SpillOptions {
                    memory_bytes: memory,
                    dir: dir.clone(),
                },
                7,
            )
        })
    }

    /// Rows of (a, b, n) sorted on `a` only, in batches of `batch`.
    fn batches(rows: i64, batch: i64) -> Vec<[ArrayRef; 3]> {
        (0..rows)
            .step_by(batch as usize)
            .map(|start| {
                let r = start..(start + batch).min(rows);
                let col = |f: &dyn Fn(i64) -> Option<i64>| {
                    Arc::new(r.clone().map(f).collect::<Int64Array>()) as ArrayRef
                };
                // NULL sorts first: rows of a = NULL come before a = 0.
                [
                    col(&|i| (i >= 37).then_some(i / 37)),
                    col(&|i| Some((i * 7) % 5)),
                    col(&|i| Some(i % 3 + 1)),
                ]
            })
            .collect()
    }

    fn run(prefix: usize, memory: usize, batch: i64) -> (RecordBatch, usize) {
        let dir = tempfile::tempdir().unwrap();
        let mut agg =
            PrefixAggregator::new(&fields()[..prefix], aggregator(dir.path(), memory)).unwrap();
        let mut out = Vec::new();
        let mut sink = |b: RecordBatch| {
            out.push(b);
            Ok(())
        };
        for [a, b, n] in batches(1000, batch) {
            let rows = a.len();
            agg.update(&[a, b], &[Some(n)], rows, &mut sink).unwrap();
        }
        let flushes = agg.flushes();
        agg.finish(&mut sink).unwrap();
        (concat_batches(&out[0].schema(), &out).unwrap(), flushes)
    }

    /// Streaming on the sorted prefix gives the rows of a plain aggregation, whatever the
    /// batches and budget, and emits groups before the end.
    #[test]
    fn a_sorted_prefix_streams_the_same_groups() {
        let (want, none) = run(0, 64 << 20, 100);
        assert_eq!(none, 0);
        let counts = want.column(2).as_primitive::<Int64Type>();
        assert_eq!(
            counts.values().iter().sum::<i64>(),
            (0..1000).map(|i| i % 3 + 1).sum::<i64>()
        );
        for (batch, memory) in [(100, 64 << 20), (1, 64 << 20), (37, 64 << 20), (1000, 512)] {
            let (got, flushes) = run(1, memory, batch);
            assert_eq!(got.columns(), want.columns(), "batch {batch}");
            assert!(flushes > 0, "batch {batch}");
        }
    }

    /// Input not sorted on the prefix is refused, not aggregated into duplicate groups.
    #[test]
    fn unsorted_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for rows in [vec![vec![2, 1]], vec![vec![1, 2], vec![1]]] {
            let mut agg =
                PrefixAggregator::new(&fields()[..1], aggregator(dir.path(), 1 << 20)).unwrap();
            let mut sink = |_: RecordBatch| Ok(());
            let mut result = Ok(());
            for a in rows {
                let n = a.len();
                let a = Arc::new(Int64Array::from(a)) as ArrayRef;
                let ones = Arc::new(Int64Array::from(vec![1; n])) as ArrayRef;
                result =
                    result.and_then(|_| agg.update(&[a.clone(), a], &[Some(ones)], n, &mut sink));
            }
            let e = result.unwrap_err().to_string();
            assert!(e.contains("not in rowkey order"), "{e}");
        }
    }
}
