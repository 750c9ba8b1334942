//! Aggregation within a memory budget. When the hash table outgrows the budget its groups are
//! sorted and written to a temporary run file (Arrow IPC, LZ4) and the table starts empty; at
//! the end the runs are merged in rowkey order, equal keys re-aggregated, and the result is
//! streamed out sorted. Without spills this is the plain in-memory [`Aggregator`].
//!
//! The merge needs no heap: all runs are sorted, so every row whose key is at most the
//! smallest "last key of a run's current batch" can be aggregated and emitted at once — no
//! later row of any run can sort before it. Each step consumes at least one whole batch.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{Field, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use datafusion::arrow::ipc::CompressionType;
use datafusion::arrow::row::{OwnedRow, RowConverter, Rows, SortField};

use super::aggregate::{Aggregator, Mode};
use crate::error::{Error, Result};
use crate::model::StateKind;

/// Sorted runs written by every aggregation of this process (for tests and diagnostics).
static RUNS_WRITTEN: AtomicU64 = AtomicU64::new(0);

/// How many sorted runs aggregations of this process have spilled so far.
pub fn runs_written() -> u64 {
    RUNS_WRITTEN.load(Ordering::Relaxed)
}

/// How much memory one aggregation may hold and where it spills.
#[derive(Debug, Clone)]
pub struct SpillOptions {
    /// Budget of one aggregator's groups and states, in bytes (estimated).
    pub memory_bytes: usize,
    /// Parent directory of the temporary spill directories.
    pub dir: PathBuf,
}

/// An [`Aggregator`] that spills sorted runs to disk when it exceeds its budget.
pub struct SpillingAggregator {
    mode: Mode,
    dims: Vec<Field>,
    measures: Vec<(String, StateKind)>,
    agg: Aggregator,
    options: SpillOptions,
    batch_rows: usize,
    tmp: Option<tempfile::TempDir>,
    runs: Vec<PathBuf>,
    input_rows: u64,
}

impl SpillingAggregator {
    /// See [`Aggregator::new`]; `batch_rows` is the size of spilled and emitted batches.
    pub fn new(
        mode: Mode,
        dims: Vec<Field>,
        measures: &[(String, StateKind)],
        options: SpillOptions,
        batch_rows: usize,
    ) -> Result<Self> {
        Ok(SpillingAggregator {
            agg: Aggregator::new(mode, dims.clone(), measures)?,
            mode,
            dims,
            measures: measures.to_vec(),
            options,
            batch_rows: batch_rows.max(1),
            tmp: None,
            runs: Vec::new(),
            input_rows: 0,
        })
    }

    /// Rows fed so far.
    pub fn input_rows(&self) -> u64 {
        self.input_rows
    }

    /// Sorted runs written to disk so far.
    pub fn spills(&self) -> usize {
        self.runs.len()
    }

    /// The schema of the output (see [`Aggregator::output_schema`]).
    pub fn output_schema(&self) -> SchemaRef {
        self.agg.output_schema()
    }

    /// See [`Aggregator::update`]; spills when the estimate passes the budget. A cuboid with
    /// no dimensions has one group and never spills.
    pub fn update(
        &mut self,
        dims: &[ArrayRef],
        inputs: &[Option<ArrayRef>],
        rows: usize,
    ) -> Result<()> {
        self.input_rows += rows as u64;
        self.agg.update(dims, inputs, rows)?;
        if !self.dims.is_empty() && self.agg.approx_memory() > self.options.memory_bytes {
            self.spill()?;
        }
        Ok(())
    }

    fn fresh(&self) -> Result<Aggregator> {
        Aggregator::new(self.mode, self.dims.clone(), &self.measures)
    }

    /// Writes the current groups as one sorted run and empties the table.
    fn spill(&mut self) -> Result<()> {
        let fresh = self.fresh()?;
        let agg = std::mem::replace(&mut self.agg, fresh);
        if agg.groups() == 0 {
            return Ok(());
        }
        if self.tmp.is_none() {
            std::fs::create_dir_all(&self.options.dir)
                .map_err(|e| io_error(&self.options.dir, e))?;
            self.tmp = Some(
                tempfile::Builder::new()
                    .prefix("qilin-spill-")
                    .tempdir_in(&self.options.dir)
                    .map_err(|e| io_error(&self.options.dir, e))?,
            );
        }
        let dir = self.tmp.as_ref().expect("created above").path();
        let path = dir.join(format!("run-{}.arrow", self.runs.len()));
        let groups = agg.groups();
        let schema = agg.output_schema();
        let file = File::create(&path).map_err(|e| io_error(&path, e))?;
        let options =
            IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME))?;
        let mut w = StreamWriter::try_new_with_options(BufWriter::new(file), &schema, options)?;
        agg.finish_each(self.batch_rows, |b| Ok(w.write(&b)?))?;
        w.finish()?;
        let file = w
            .into_inner()?
            .into_inner()
            .map_err(|e| io_error(&path, e.into_error()))?;
        file.sync_data().map_err(|e| io_error(&path, e))?;
        log::info!(
            "aggregation spilled run {} ({groups} groups) to {}",
            self.runs.len() + 1,
            path.display()
        );
        self.runs.push(path);
        RUNS_WRITTEN.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Emits every group in rowkey order, in batches of at most `batch_rows` rows.
    pub fn finish_each(mut self, mut sink: impl FnMut(RecordBatch) -> Result<()>) -> Result<()> {
        if self.runs.is_empty() {
            let fresh = self.fresh()?;
            let agg = std::mem::replace(&mut self.agg, fresh);
            return agg.finish_each(self.batch_rows, sink);
        }
        self.spill()?;
        let converter = RowConverter::new(
            self.dims
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        let nd = self.dims.len();
        let mut runs = self
            .runs
            .iter()
            .map(|p| Run::open(p, &converter, nd))
            .collect::<Result<Vec<_>>>()?;
        loop {
            runs.retain(|r| r.batch.is_some());
            let Some(bound) = runs
                .iter()
                .map(|r| r.last_key())
                .min_by(|a, b| a.row().cmp(&b.row()))
            else {
                break;
            };
            // Runs hold states, whatever the input was.
            let mut agg = Aggregator::new(Mode::Merge, self.dims.clone(), &self.measures)?;
            for run in &mut runs {
                let batch = run.batch.as_ref().expect("active run");
                let end = partition_point(run.offset, batch.num_rows(), |i| {
                    run.keys.row(i) <= bound.row()
                });
                if end > run.offset {
                    let slice = batch.slice(run.offset, end - run.offset);
                    let dims: Vec<ArrayRef> = slice.columns()[..nd].to_vec();
                    let states: Vec<Option<ArrayRef>> =
                        slice.columns()[nd..].iter().cloned().map(Some).collect();
                    agg.update(&dims, &states, slice.num_rows())?;
                }
                run.offset = end;
                if end == batch.num_rows() {
                    run.advance(&converter, nd)?;
                }
            }
            agg.finish_each(self.batch_rows, &mut sink)?;
        }
        Ok(())
    }
}

/// One sorted run being read back: its current batch, that batch's keys and how far it has
/// been consumed.
struct Run {
    path: PathBuf,
    reader: StreamReader<BufReader<File>>,
    batch: Option<RecordBatch>,
    keys: Rows,
    offset: usize,
}

impl Run {
    fn open(path: &Path, converter: &RowConverter, nd: usize) -> Result<Run> {
        let file = File::open(path).map_err(|e| io_error(path, e))?;
        let reader = StreamReader::try_new(BufReader::new(file), None)?;
        let mut run = Run {
            path: path.to_path_buf(),
            reader,
            batch: None,
            keys: converter.empty_rows(0, 0),
            offset: 0,
        };
        run.advance(converter, nd)?;
        Ok(run)
    }

    /// Loads the next non-empty batch (or marks the run done).
    fn advance(&mut self, converter: &RowConverter, nd: usize) -> Result<()> {
        self.batch = None;
        self.offset = 0;
        for next in self.reader.by_ref() {
            let b = next.map_err(|e| {
                Error::corrupt(
                    format!("aggregation spill {}", self.path.display()),
                    e.to_string(),
                )
            })?;
            if b.num_rows() > 0 {
                self.keys = converter.convert_columns(&b.columns()[..nd])?;
                self.batch = Some(b);
                break;
            }
        }
        Ok(())
    }

    fn last_key(&self) -> OwnedRow {
        self.keys.row(self.keys.num_rows() - 1).owned()
    }
}

/// Spill directories are `<prefix><pid>-<random>`: the pid tells whose they are.
const SPILL_PREFIX: &str = "qilin-spill-";

/// Removes spill directories under `dir` whose process is gone (a build killed before it
/// could clean up). Best effort, and only where `/proc` tells which processes live.
pub fn remove_stale(dir: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SPILL_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
            && std::fs::remove_dir_all(entry.path()).is_ok()
        {
            log::info!(
                "removed the spill files of dead process {pid}: {}",
                entry.path().display()
            );
        }
    }
}

/// The first index in `from..to` for which `pred` is false (`pred` holds on a prefix).
fn partition_point(from: usize, to: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (from, to);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("aggregation spill at {}", path.display()), e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::hll::HyperLogLog;
    use datafusion::arrow::array::{AsArray, Int32Array, Int64Array, StringArray};
    use datafusion::arrow::compute::concat_batches;
    use datafusion::arrow::datatypes::{DataType, Int64Type};
    use std::sync::Arc;

    fn measures() -> Vec<(String, StateKind)> {
        vec![
            ("n".to_string(), StateKind::Count),
            ("s".to_string(), StateKind::SumInt),
            ("u".to_string(), StateKind::Hll(10)),
        ]
    }

    fn dims() -> Vec<Field> {
        vec![
            Field::new("k", DataType::Int32, true),
            Field::new("c", DataType::Utf8, true),
        ]
    }

    /// Feeds the same pseudo-random rows to an aggregator with the given budget.
    fn run(budget: usize) -> (RecordBatch, usize) {
        let dir = tempfile::tempdir().unwrap();
        let options = SpillOptions {
            memory_bytes: budget,
            dir: dir.path().to_path_buf(),
        };
        let mut agg =
            SpillingAggregator::new(Mode::Raw, dims(), &measures(), options, 100).unwrap();
        let mut x: u64 = 7;
        for _ in 0..40 {
            let mut ks = Vec::new();
            let mut cs = Vec::new();
            let mut vs = Vec::new();
            for _ in 0..500 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ks.push(((x >> 33) % 300) as i32);
                cs.push(format!("c{}", (x >> 20) % 7));
                vs.push((x >> 40) as i64 % 1000);
            }
            let dims: Vec<ArrayRef> = vec![
                Arc::new(Int32Array::from(ks)),
                Arc::new(StringArray::from(cs)),
            ];
            let v: ArrayRef = Arc::new(Int64Array::from(vs));
            agg.update(&dims, &[None, Some(v.clone()), Some(v)], 500)
                .unwrap();
        }
        let spills = agg.spills();
        let schema = agg.output_schema();
        let mut out = Vec::new();
        agg.finish_each(|b| {
            assert!(b.num_rows() <= 100);
            out.push(b);
            Ok(())
        })
        .unwrap();
        // The spill directory is gone once the aggregator is.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        (concat_batches(&schema, &out).unwrap(), spills)
    }

    #[test]
    fn spill_directories_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // Pids never exceed 2^22 on Linux.
        let dead = dir.path().join(format!("{SPILL_PREFIX}999999999-abc"));
        let mine = dir
            .path()
            .join(format!("{SPILL_PREFIX}{}-abc", std::process::id()));
        let other = dir.path().join("unrelated-999999999");
        for d in [&dead, &mine, &other] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("run-0.arrow"), b"x").unwrap();
        }
        remove_stale(dir.path());
        assert!(!dead.exists());
        assert!(mine.exists() && other.exists());
    }

    #[test]
    fn spilled_aggregation_equals_in_memory_aggregation() {
        let (expected, spills) = run(usize::MAX);
        assert_eq!(spills, 0);
        let (got, spills) = run(16 * 1024);
        assert!(spills >= 3, "only {spills} spills");
        assert_eq!(got.num_rows(), expected.num_rows());
        for c in 0..4 {
            assert_eq!(got.column(c), expected.column(c), "column {c}");
        }
        // Sketches compare by their registers, not their byte form.
        let (a, b) = (
            got.column(4).as_binary::<i32>(),
            expected.column(4).as_binary::<i32>(),
        );
        for i in 0..got.num_rows() {
            assert_eq!(
                HyperLogLog::from_bytes(a.value(i)).unwrap(),
                HyperLogLog::from_bytes(b.value(i)).unwrap()
            );
        }
        let counts = got.column(2).as_primitive::<Int64Type>();
        assert_eq!(counts.iter().map(|c| c.unwrap()).sum::<i64>(), 20_000);
        assert!(got.num_rows() > 1000);
    }
}
