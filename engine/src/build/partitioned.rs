//! The base cuboid's aggregation on every core.
//!
//! The flat table's rows are hash-partitioned by their dimension values over N aggregators,
//! each on its own thread with 1/N of the memory budget (spilling on its own). Every key lands
//! in exactly one aggregator, so no state is merged across them: each emits its groups sorted,
//! and writing interleaves the N sorted, disjoint streams into one in rowkey order — the same
//! rows and states a single aggregator would produce. With N = 1 this is the single
//! aggregator of before, on a thread of its own.

use std::sync::mpsc::{sync_channel, Receiver};

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{interleave, take};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::hash_utils::{create_hashes, RandomState};
use tokio::sync::{mpsc, oneshot};

use super::spill::SpillingAggregator;
use crate::error::{Error, Result};

/// Rows for one aggregator: dimension columns, one input per measure, the row count.
pub struct Chunk {
    pub dims: Vec<ArrayRef>,
    pub inputs: Vec<Option<ArrayRef>>,
    pub rows: usize,
}

/// Not DataFusion's repartitioning seed: rows arriving hash-partitioned by a join key must
/// not all land in one aggregator.
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// Splits `chunk` into `n` by the hash of its dimension values: equal keys always go to the
/// same part. Empty parts are `None`.
pub fn split(chunk: Chunk, n: usize) -> Result<Vec<Option<Chunk>>> {
    if n <= 1 || chunk.dims.is_empty() {
        return Ok(vec![Some(chunk)]);
    }
    let mut hashes = vec![0u64; chunk.rows];
    create_hashes(&chunk.dims, &RandomState::with_seed(SEED), &mut hashes)?;
    let mut rows_of: Vec<Vec<u32>> = vec![Vec::with_capacity(chunk.rows / n + 16); n];
    for (i, h) in hashes.iter().enumerate() {
        // The high bits: the low ones also pick the slot in each aggregator's hash table.
        rows_of[((h >> 32) % n as u64) as usize].push(i as u32);
    }
    rows_of
        .into_iter()
        .map(|rows| {
            if rows.is_empty() {
                return Ok(None);
            }
            let ix = UInt32Array::from(rows);
            let pick = |a: &ArrayRef| take(a.as_ref(), &ix, None);
            Ok(Some(Chunk {
                dims: chunk.dims.iter().map(pick).collect::<Result<_, _>>()?,
                inputs: chunk
                    .inputs
                    .iter()
                    .map(|a| a.as_ref().map(pick).transpose())
                    .collect::<Result<_, _>>()?,
                rows: ix.len(),
            }))
        })
        .collect()
}

/// N aggregators on N threads, fed through bounded channels.
pub struct Workers {
    senders: Vec<mpsc::Sender<Chunk>>,
    results: Vec<oneshot::Receiver<Result<SpillingAggregator>>>,
}

/// What a feeder gets when a worker has stopped (its error is what [`Workers::finish`]
/// returns).
fn stopped() -> Error {
    Error::Refused("a base-cuboid aggregation worker stopped".into())
}

impl Workers {
    /// Starts one thread per aggregator.
    pub fn start(aggs: Vec<SpillingAggregator>) -> Result<Workers> {
        let mut senders = Vec::with_capacity(aggs.len());
        let mut results = Vec::with_capacity(aggs.len());
        for (i, mut agg) in aggs.into_iter().enumerate() {
            let (tx, mut rx) = mpsc::channel::<Chunk>(4);
            let (done, result) = oneshot::channel();
            std::thread::Builder::new()
                .name(format!("qilin-base-agg-{i}"))
                .spawn(move || {
                    let mut run = || -> Result<()> {
                        while let Some(c) = rx.blocking_recv() {
                            agg.update(&c.dims, &c.inputs, c.rows)?;
                        }
                        Ok(())
                    };
                    // Closing the channel stops the feeders at once on an error.
                    let r = run();
                    rx.close();
                    let _ = done.send(r.map(|()| agg));
                })
                .map_err(|e| Error::io("starting an aggregation thread", e))?;
            senders.push(tx);
            results.push(result);
        }
        Ok(Workers { senders, results })
    }

    pub fn parts(&self) -> usize {
        self.senders.len()
    }

    /// A handle feeders send with; the workers end once every handle and `self` are gone
    /// (or [`Workers::finish`] is called).
    pub fn feeder(&self) -> Feeder {
        Feeder {
            senders: self.senders.clone(),
        }
    }

    /// Waits for the workers to drain their channels; their aggregators, or the first
    /// error one of them met. Every [`Feeder`] must be dropped first.
    pub async fn finish(self) -> Result<Vec<SpillingAggregator>> {
        drop(self.senders);
        let mut out = Vec::with_capacity(self.results.len());
        let mut failed = None;
        for r in self.results {
            match r.await {
                Ok(Ok(agg)) => out.push(agg),
                Ok(Err(e)) => {
                    failed.get_or_insert(e);
                }
                Err(_) => {
                    failed.get_or_insert_with(|| {
                        Error::Refused("a base-cuboid aggregation thread panicked".into())
                    });
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// Splits rows and sends each part to its worker.
#[derive(Clone)]
pub struct Feeder {
    senders: Vec<mpsc::Sender<Chunk>>,
}

impl Feeder {
    pub async fn send(&self, chunk: Chunk) -> Result<()> {
        let n = self.senders.len();
        for (part, c) in split(chunk, n)?.into_iter().enumerate() {
            if let Some(c) = c {
                self.senders[part].send(c).await.map_err(|_| stopped())?;
            }
        }
        Ok(())
    }
}

/// Emits the groups of aggregators holding disjoint keys in rowkey order: each emits its
/// own sorted stream on a thread of its own; `sink` gets the streams interleaved. Checks
/// every emitter succeeded before returning, so a failed one never leaves a silently
/// truncated output. `dims` = the number of leading dimension columns.
pub fn finish_interleaved(
    aggs: Vec<SpillingAggregator>,
    dims: usize,
    mut sink: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    if aggs.len() == 1 || dims == 0 {
        // One aggregator (or no dimensions: one group, in one aggregator).
        let mut merged = None;
        for agg in aggs {
            if agg.input_rows() > 0 || merged.is_none() {
                merged = Some(agg);
            }
        }
        return match merged {
            Some(agg) => agg.finish_each(sink),
            None => Ok(()),
        };
    }
    let schema = aggs[0].output_schema();
    let converter = RowConverter::new(
        schema.fields()[..dims]
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect(),
    )?;
    std::thread::scope(|scope| {
        let mut inputs = Vec::with_capacity(aggs.len());
        let mut emitters = Vec::with_capacity(aggs.len());
        for agg in aggs {
            let (tx, rx) = sync_channel::<RecordBatch>(2);
            emitters.push(scope.spawn(move || {
                agg.finish_each(|b| {
                    tx.send(b)
                        .map_err(|_| Error::Refused("the cuboid writer stopped".into()))
                })
            }));
            inputs.push(Sorted {
                rx,
                batch: None,
                keys: converter.empty_rows(0, 0),
                offset: 0,
            });
        }
        let merged = merge(&mut inputs, &converter, dims, &mut sink);
        // Unblock emitters still sending (the merge failed), then collect their results.
        drop(inputs);
        let mut result = merged;
        for e in emitters {
            let r = e
                .join()
                .unwrap_or_else(|_| Err(Error::Refused("a cuboid emitter thread panicked".into())));
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

/// One aggregator's sorted output being interleaved.
struct Sorted {
    rx: Receiver<RecordBatch>,
    batch: Option<RecordBatch>,
    keys: Rows,
    offset: usize,
}

impl Sorted {
    /// Makes sure a batch with unconsumed rows is current, unless the stream ended.
    fn fill(&mut self, converter: &RowConverter, dims: usize) -> Result<()> {
        while self
            .batch
            .as_ref()
            .is_none_or(|b| self.offset == b.num_rows())
        {
            self.batch = None;
            self.offset = 0;
            let Ok(b) = self.rx.recv() else {
                return Ok(());
            };
            if b.num_rows() > 0 {
                self.keys = converter.convert_columns(&b.columns()[..dims])?;
                self.batch = Some(b);
            }
        }
        Ok(())
    }
}

/// The same bound as the spill merge: every row at most the smallest "last key of a current
/// batch" can be emitted, since no later row of any stream sorts before it; each step
/// consumes at least one whole batch.
fn merge(
    inputs: &mut [Sorted],
    converter: &RowConverter,
    dims: usize,
    sink: &mut impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    loop {
        for i in inputs.iter_mut() {
            i.fill(converter, dims)?;
        }
        let Some(bound) = inputs
            .iter()
            .filter(|i| i.batch.is_some())
            .map(|i| i.keys.row(i.keys.num_rows() - 1))
            .min()
            .map(|r| r.owned())
        else {
            return Ok(());
        };
        // Picks index `active`, the inputs with a current batch.
        let active: Vec<usize> = (0..inputs.len())
            .filter(|&n| inputs[n].batch.is_some())
            .collect();
        let mut picks: Vec<(usize, usize)> = Vec::new();
        for (a, &n) in active.iter().enumerate() {
            let i = &mut inputs[n];
            let rows = i.keys.num_rows();
            let mut end = i.offset;
            while end < rows && i.keys.row(end) <= bound.row() {
                end += 1;
            }
            picks.extend((i.offset..end).map(|r| (a, r)));
            i.offset = end;
        }
        // Keys are disjoint across inputs: this order is total.
        picks.sort_unstable_by(|x, y| {
            let (kx, ky) = (&inputs[active[x.0]].keys, &inputs[active[y.0]].keys);
            kx.row(x.1).cmp(&ky.row(y.1))
        });
        let batches: Vec<&RecordBatch> = active
            .iter()
            .filter_map(|&n| inputs[n].batch.as_ref())
            .collect();
        let schema = batches[0].schema();
        let mut columns = Vec::with_capacity(schema.fields().len());
        for c in 0..schema.fields().len() {
            let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
            columns.push(interleave(&arrays, &picks)?);
        }
        sink(RecordBatch::try_new(schema, columns)?)?;
    }
}
