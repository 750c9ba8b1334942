//! A hash aggregator over Arrow batches that produces cuboid rows: dimension columns sorted
//! in rowkey order followed by one state column per measure.
//!
//! Group keys use Arrow's row format, whose byte order equals the lexicographic order of the
//! dimension values, so sorting the keys sorts the cuboid in rowkey order for free. In `Raw`
//! mode the inputs are source values (SUM adds values, COUNT counts, HLL hashes); in `Merge`
//! mode they are states of a parent cuboid or of other segments (SUM adds sums, COUNT adds
//! counts, sketches merge).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BinaryBuilder, Float64Array, Int64Array,
    PrimitiveArray, RecordBatch,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};

use crate::error::{Error, Result};
use crate::measure::bitmap::DistinctBitmap;
use crate::measure::hll::HyperLogLog;
use crate::measure::{group_states, GroupStates};
use crate::model::StateKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Raw,
    Merge,
}

/// One measure's per-group states.
enum States {
    SumInt(Vec<Option<i64>>),
    SumFloat(Vec<Option<f64>>),
    Count(Vec<i64>),
    MinInt(Vec<Option<i64>>),
    MaxInt(Vec<Option<i64>>),
    MinFloat(Vec<Option<f64>>),
    MaxFloat(Vec<Option<f64>>),
    Hll(u8, Vec<HyperLogLog>),
    Bitmap(Vec<DistinctBitmap>),
    /// Any other kind, kept by its own module.
    Other(Box<dyn GroupStates>),
}

impl States {
    fn new(kind: StateKind) -> Result<Self> {
        if let Some(other) = group_states(kind)? {
            return Ok(States::Other(other));
        }
        Ok(match kind {
            StateKind::SumInt => States::SumInt(Vec::new()),
            StateKind::SumFloat => States::SumFloat(Vec::new()),
            StateKind::Count => States::Count(Vec::new()),
            StateKind::MinInt => States::MinInt(Vec::new()),
            StateKind::MaxInt => States::MaxInt(Vec::new()),
            StateKind::MinFloat => States::MinFloat(Vec::new()),
            StateKind::MaxFloat => States::MaxFloat(Vec::new()),
            StateKind::Hll(p) => States::Hll(p, Vec::new()),
            StateKind::Bitmap => States::Bitmap(Vec::new()),
            StateKind::TopN(_) | StateKind::Percentile(_) | StateKind::Extended => {
                unreachable!("group_states keeps {kind:?}")
            }
        })
    }

    fn push_empty(&mut self) -> Result<()> {
        match self {
            States::SumInt(v) | States::MinInt(v) | States::MaxInt(v) => v.push(None),
            States::SumFloat(v) | States::MinFloat(v) | States::MaxFloat(v) => v.push(None),
            States::Count(v) => v.push(0),
            States::Hll(p, v) => v.push(HyperLogLog::new(*p)?),
            States::Bitmap(v) => v.push(DistinctBitmap::new()),
            States::Other(o) => o.push_empty()?,
        }
        Ok(())
    }
}

/// Folds each valid value of `a` into its group's slot with `f` (the first value just lands).
fn fold_column<T: ArrowPrimitiveType>(
    slots: &mut [Option<T::Native>],
    a: &PrimitiveArray<T>,
    group_of: &[u32],
    f: impl Fn(T::Native, T::Native) -> T::Native,
) {
    for (i, &g) in group_of.iter().enumerate() {
        if a.is_valid(i) {
            let slot = &mut slots[g as usize];
            let v = a.value(i);
            *slot = Some(match *slot {
                Some(cur) => f(cur, v),
                None => v,
            });
        }
    }
}

/// Hash aggregation into cuboid rows.
pub struct Aggregator {
    mode: Mode,
    dim_fields: Vec<Field>,
    measure_names: Vec<String>,
    kinds: Vec<StateKind>,
    converter: Option<RowConverter>,
    groups: HashMap<Box<[u8]>, u32, foldhash::fast::RandomState>,
    states: Vec<States>,
    input_rows: u64,
    /// Bytes of all group keys, for [`Aggregator::approx_memory`].
    key_bytes: usize,
}

impl Aggregator {
    /// `dims` are the output dimension fields (in rowkey order); `measures` name and kind each
    /// state column.
    pub fn new(mode: Mode, dims: Vec<Field>, measures: &[(String, StateKind)]) -> Result<Self> {
        let converter = if dims.is_empty() {
            None
        } else {
            Some(RowConverter::new(
                dims.iter()
                    .map(|f| SortField::new(f.data_type().clone()))
                    .collect(),
            )?)
        };
        Ok(Aggregator {
            mode,
            dim_fields: dims,
            measure_names: measures.iter().map(|(n, _)| n.clone()).collect(),
            kinds: measures.iter().map(|(_, k)| *k).collect(),
            converter,
            groups: HashMap::default(),
            states: measures
                .iter()
                .map(|(_, k)| States::new(*k))
                .collect::<Result<_>>()?,
            input_rows: 0,
            key_bytes: 0,
        })
    }

    /// Groups so far.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// An estimate of the heap this aggregator holds: keys, hash-table slots and states.
    /// Sketch states are sized from a sample of at most 64 groups, so the call stays cheap
    /// enough to make after every batch.
    pub fn approx_memory(&self) -> usize {
        let groups = self.groups.len();
        if groups == 0 {
            return 0;
        }
        // A hash-table slot (boxed key pointer and length, group id, control byte) at the
        // table's worst load factor, plus the allocator's per-key overhead.
        const SLOT: usize = 2 * (16 + 4 + 1) + 16;
        let mut total = self.key_bytes + groups * SLOT;
        let step = groups.div_ceil(64);
        let sample: Vec<usize> = (0..groups).step_by(step).collect();
        for s in &self.states {
            total += match s {
                States::SumInt(v) | States::MinInt(v) | States::MaxInt(v) => v.capacity() * 16,
                States::SumFloat(v) | States::MinFloat(v) | States::MaxFloat(v) => {
                    v.capacity() * 16
                }
                States::Count(v) => v.capacity() * 8,
                States::Hll(_, v) => {
                    let sampled: usize = sample.iter().map(|&g| v[g].memory_size()).sum();
                    sampled * groups / sample.len()
                        + (v.capacity() - v.len()) * std::mem::size_of::<HyperLogLog>()
                }
                States::Bitmap(v) => {
                    let sampled: usize = sample.iter().map(|&g| v[g].memory_size()).sum();
                    sampled * groups / sample.len()
                        + (v.capacity() - v.len()) * std::mem::size_of::<DistinctBitmap>()
                }
                States::Other(o) => o.memory_of(&sample) * groups / sample.len() + o.fixed_memory(),
            };
        }
        total
    }

    pub fn input_rows(&self) -> u64 {
        self.input_rows
    }

    /// The schema of the output: dimensions then one column per measure state.
    pub fn output_schema(&self) -> SchemaRef {
        let mut fields = self.dim_fields.clone();
        for (n, k) in self.measure_names.iter().zip(&self.kinds) {
            fields.push(Field::new(n, k.data_type(), true));
        }
        Arc::new(Schema::new(fields))
    }

    /// Adds `rows` rows: `dims` are the dimension arrays (cast to the output types here),
    /// `inputs` one array per measure (`None` only for COUNT(*) in raw mode).
    pub fn update(
        &mut self,
        dims: &[ArrayRef],
        inputs: &[Option<ArrayRef>],
        rows: usize,
    ) -> Result<()> {
        self.input_rows += rows as u64;
        let mut group_of = Vec::with_capacity(rows);
        match &self.converter {
            None => {
                if self.groups.is_empty() && rows > 0 {
                    self.groups.insert(Box::from(&[][..]), 0);
                    for s in &mut self.states {
                        s.push_empty()?;
                    }
                }
                group_of.resize(rows, 0u32);
            }
            Some(conv) => {
                let dims: Vec<ArrayRef> = dims
                    .iter()
                    .zip(&self.dim_fields)
                    .map(|(a, f)| {
                        if a.data_type() == f.data_type() {
                            Ok(a.clone())
                        } else {
                            cast(a, f.data_type())
                        }
                    })
                    .collect::<std::result::Result<_, _>>()?;
                let keys = conv.convert_columns(&dims)?;
                for i in 0..rows {
                    let key = keys.row(i);
                    let next = self.groups.len() as u32;
                    let g = match self.groups.get(key.as_ref()) {
                        Some(&g) => g,
                        None => {
                            self.key_bytes += key.as_ref().len();
                            self.groups.insert(Box::from(key.as_ref()), next);
                            for s in &mut self.states {
                                s.push_empty()?;
                            }
                            next
                        }
                    };
                    group_of.push(g);
                }
            }
        }
        for (m, input) in inputs.iter().enumerate() {
            let name = self.measure_names[m].clone();
            self.update_measure(m, input.as_ref(), &group_of)
                .map_err(|e| Error::invalid(format!("measure {name}"), e.to_string()))?;
        }
        Ok(())
    }

    fn update_measure(
        &mut self,
        m: usize,
        input: Option<&ArrayRef>,
        group_of: &[u32],
    ) -> Result<()> {
        let raw = self.mode == Mode::Raw;
        let as_i64 = |a: &ArrayRef| -> Result<Int64Array> {
            Ok(cast(a, &DataType::Int64)?
                .as_primitive::<Int64Type>()
                .clone())
        };
        let as_f64 = |a: &ArrayRef| -> Result<Float64Array> {
            Ok(cast(a, &DataType::Float64)?
                .as_primitive::<Float64Type>()
                .clone())
        };
        let need = || -> Result<&ArrayRef> {
            input.ok_or_else(|| Error::invalid("aggregation", "missing measure input"))
        };
        match &mut self.states[m] {
            States::SumInt(v) => {
                let a = as_i64(need()?)?;
                for (i, &g) in group_of.iter().enumerate() {
                    if a.is_valid(i) {
                        let slot = &mut v[g as usize];
                        let x = a.value(i);
                        *slot = Some(match *slot {
                            Some(cur) => cur.checked_add(x).ok_or_else(|| {
                                Error::invalid("SUM", "overflows a 64-bit integer")
                            })?,
                            None => x,
                        });
                    }
                }
            }
            States::SumFloat(v) => fold_column(v, &as_f64(need()?)?, group_of, |x, y| x + y),
            States::MinInt(v) | States::MaxInt(v) => {
                let min = matches!(self.kinds[m], StateKind::MinInt);
                fold_column(v, &as_i64(need()?)?, group_of, |x, y| {
                    if min {
                        x.min(y)
                    } else {
                        x.max(y)
                    }
                })
            }
            States::MinFloat(v) | States::MaxFloat(v) => {
                let min = matches!(self.kinds[m], StateKind::MinFloat);
                fold_column(v, &as_f64(need()?)?, group_of, |x, y| {
                    if min {
                        x.min(y)
                    } else {
                        x.max(y)
                    }
                })
            }
            States::Count(v) => match (raw, input) {
                (true, None) => {
                    for &g in group_of {
                        v[g as usize] += 1;
                    }
                }
                (true, Some(a)) => {
                    for (i, &g) in group_of.iter().enumerate() {
                        if a.is_valid(i) {
                            v[g as usize] += 1;
                        }
                    }
                }
                (false, _) => {
                    let a = as_i64(need()?)?;
                    for (i, &g) in group_of.iter().enumerate() {
                        if a.is_valid(i) {
                            v[g as usize] += a.value(i);
                        }
                    }
                }
            },
            States::Hll(_, v) => {
                let a = need()?;
                if raw {
                    add_to_hll(v, a, group_of)?;
                } else {
                    let b = a.as_binary_opt::<i32>().ok_or_else(|| {
                        Error::invalid(
                            "HLL state",
                            format!("expected binary, got {}", a.data_type()),
                        )
                    })?;
                    for (i, &g) in group_of.iter().enumerate() {
                        if b.is_valid(i) {
                            v[g as usize].merge_from_bytes(b.value(i))?;
                        }
                    }
                }
            }
            States::Bitmap(v) => {
                let a = need()?;
                if raw {
                    let ints = as_i64(a)?;
                    for (i, &g) in group_of.iter().enumerate() {
                        if ints.is_valid(i) {
                            v[g as usize].add_i64(ints.value(i));
                        }
                    }
                } else {
                    let b = a.as_binary_opt::<i32>().ok_or_else(|| {
                        Error::invalid(
                            "bitmap state",
                            format!("expected binary, got {}", a.data_type()),
                        )
                    })?;
                    for (i, &g) in group_of.iter().enumerate() {
                        if b.is_valid(i) {
                            v[g as usize].merge_from_bytes(b.value(i))?;
                        }
                    }
                }
            }
            States::Other(o) => {
                if raw {
                    o.update_raw(need()?, group_of)?;
                } else {
                    o.merge(need()?, group_of)?;
                }
            }
        }
        Ok(())
    }

    /// The aggregated rows sorted in rowkey order, as batches of at most `batch_rows` rows.
    pub fn finish(self, batch_rows: usize) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        self.finish_each(batch_rows, |b| {
            out.push(b);
            Ok(())
        })?;
        Ok(out)
    }

    /// Like [`Aggregator::finish`] but hands each batch to `sink` as soon as it is built, so
    /// the sorted output never exists in memory as a whole next to the hash table.
    pub fn finish_each(
        self,
        batch_rows: usize,
        mut sink: impl FnMut(RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let schema = self.output_schema();
        let mut entries: Vec<(Box<[u8]>, u32)> = self.groups.into_iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for chunk in entries.chunks_mut(batch_rows.max(1)) {
            let mut columns: Vec<ArrayRef> = match &self.converter {
                Some(conv) => {
                    let parser = conv.parser();
                    conv.convert_rows(chunk.iter().map(|(k, _)| parser.parse(k)))?
                }
                None => Vec::new(),
            };
            let ix: Vec<usize> = chunk.iter().map(|(_, g)| *g as usize).collect();
            // The keys of this chunk are no longer needed: free them as we go.
            for (k, _) in chunk.iter_mut() {
                *k = Box::default();
            }
            for s in &self.states {
                columns.push(state_array(s, &ix)?);
            }
            sink(RecordBatch::try_new(schema.clone(), columns)?)?;
        }
        Ok(())
    }
}

fn add_to_hll(v: &mut [HyperLogLog], a: &ArrayRef, group_of: &[u32]) -> Result<()> {
    match a.data_type() {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::Date32 => {
            // Dates hash as their day number, like any integer: cast through Int32.
            let a = if a.data_type() == &DataType::Date32 {
                cast(a, &DataType::Int32)?
            } else {
                a.clone()
            };
            let ints = cast(&a, &DataType::Int64)?;
            let ints = ints.as_primitive::<Int64Type>();
            for (i, &g) in group_of.iter().enumerate() {
                if ints.is_valid(i) {
                    v[g as usize].add_i64(ints.value(i));
                }
            }
        }
        _ => {
            let s = cast(a, &DataType::Utf8)?;
            let s = s.as_string::<i32>();
            for (i, &g) in group_of.iter().enumerate() {
                if s.is_valid(i) {
                    v[g as usize].add_bytes(s.value(i).as_bytes());
                }
            }
        }
    }
    Ok(())
}

fn state_array(s: &States, ix: &[usize]) -> Result<ArrayRef> {
    Ok(match s {
        States::SumInt(v) | States::MinInt(v) | States::MaxInt(v) => {
            Arc::new(Int64Array::from_iter(ix.iter().map(|&i| v[i])))
        }
        States::SumFloat(v) | States::MinFloat(v) | States::MaxFloat(v) => {
            Arc::new(Float64Array::from_iter(ix.iter().map(|&i| v[i])))
        }
        States::Count(v) => Arc::new(Int64Array::from_iter_values(ix.iter().map(|&i| v[i]))),
        States::Hll(_, v) => {
            let mut b = BinaryBuilder::new();
            for &i in ix {
                b.append_value(v[i].to_bytes());
            }
            Arc::new(b.finish())
        }
        States::Bitmap(v) => {
            let mut b = BinaryBuilder::new();
            for &i in ix {
                b.append_value(v[i].to_bytes());
            }
            Arc::new(b.finish())
        }
        States::Other(o) => o.finish(ix)?,
    })
}
