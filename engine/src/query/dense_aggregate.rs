//! Aggregation by array index instead of hashing, for GROUP BYs over small integer domains.
//!
//! A rewritten query re-aggregates cuboid rows by dimension values that are small integers:
//! string dimensions arrive as ids of their global numbering (`UInt32`), derived columns and
//! many stored dimensions are narrow integers. DataFusion groups them in a hash table keyed by
//! all the columns, which was 45–75 % of the time of the slow ad-hoc queries that aggregate the
//! whole base cuboid (6 M rows at SF 1 into up to 43,750 groups). Here the group of a row is
//! `Σ code(column) × stride(column)`, an index into an array of group numbers, where a column's
//! code is its value's offset from the column's minimum plus one (0 is NULL). The aggregate
//! functions are DataFusion's own [`GroupsAccumulator`]s, fed the group numbers exactly as
//! DataFusion's hash aggregation feeds them, so every function behaves as it does there.
//!
//! [`DenseAggregation`] is a physical optimizer rule: it wraps every `Partial` or `Single`
//! [`AggregateExec`] whose grouping keys are all integers (or dates) and whose functions have
//! groups accumulators into a [`DenseAggregateExec`]. The key ranges are learned from the
//! batches (the array grows as they widen, with headroom so a rising key does not re-lay it out
//! every batch). When the array would pass [`MAX_SLOTS`] entries (wide or sparse keys) or the
//! memory pool refuses it, the operator hands its input over to the wrapped `AggregateExec`:
//! a `Partial` emits the groups it has as partial state and DataFusion aggregates the rest;
//! a `Single` feeds its groups, as partial state, with DataFusion's partial aggregation of the
//! rest into a `Final` aggregation. Nothing is lost or counted twice, and memory limits and
//! spilling stay DataFusion's.

use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray, RecordBatch};
use datafusion::arrow::compute::{max, min};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Int16Type, Int32Type, Int64Type, Int8Type, SchemaRef,
    UInt16Type, UInt32Type, UInt8Type,
};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, Statistics};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{
    aggregate_expressions, evaluate_many, AggregateExec, AggregateMode, PhysicalGroupBy,
};
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, InputDistributionRequirements, InputOrderMode,
    PlanProperties, SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};

/// An integer type a grouping key may have, read as `i64`.
trait DenseKey: ArrowPrimitiveType {
    fn to_i64(v: Self::Native) -> i64;
    fn from_i64(v: i64) -> Self::Native;
}

macro_rules! dense_keys {
    ($($t:ty),*) => {$(
        impl DenseKey for $t {
            fn to_i64(v: Self::Native) -> i64 {
                v as i64
            }
            fn from_i64(v: i64) -> Self::Native {
                v as Self::Native
            }
        }
    )*};
}
dense_keys!(
    Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, Date32Type
);

/// Runs `$body` with `$K` the [`DenseKey`] type of `$t`, or `$other` for any other type.
macro_rules! with_key_type {
    ($t:expr, $K:ident => $body:expr, else $other:expr) => {
        match $t {
            DataType::Int8 => {
                type $K = Int8Type;
                $body
            }
            DataType::Int16 => {
                type $K = Int16Type;
                $body
            }
            DataType::Int32 => {
                type $K = Int32Type;
                $body
            }
            DataType::Int64 => {
                type $K = Int64Type;
                $body
            }
            DataType::UInt8 => {
                type $K = UInt8Type;
                $body
            }
            DataType::UInt16 => {
                type $K = UInt16Type;
                $body
            }
            DataType::UInt32 => {
                type $K = UInt32Type;
                $body
            }
            DataType::Date32 => {
                type $K = Date32Type;
                $body
            }
            _ => $other,
        }
    };
}

/// The most entries the group array may have (4 bytes each: 16 MiB). Past it the keys are too
/// wide or sparse for an array and hashing is the better tool.
pub(crate) const MAX_SLOTS: u64 = 1 << 22;

/// The physical optimizer rule (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct DenseAggregation;

impl PhysicalOptimizerRule for DenseAggregation {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            if !applies(aggregate) {
                return Ok(Transformed::no(node));
            }
            let dense = DenseAggregateExec::new(aggregate.clone());
            Ok(Transformed::yes(Arc::new(dense) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "dense_aggregation"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether `aggregate` is one this module runs: raw input to partial state or final values,
/// one plain grouping set of integer keys, unordered input, no limit or dynamic filter, and
/// functions with groups accumulators and no ordering or DISTINCT of their own.
fn applies(aggregate: &AggregateExec) -> bool {
    let group_by = aggregate.group_expr();
    let input_schema = aggregate.input().schema();
    matches!(
        aggregate.mode(),
        AggregateMode::Partial | AggregateMode::Single
    ) && group_by.is_single()
        && !group_by.expr().is_empty()
        && aggregate.limit_options().is_none()
        && aggregate.dynamic_expressions_produced().is_empty()
        && *aggregate.input_order_mode() == InputOrderMode::Linear
        && group_by.expr().iter().all(|(e, _)| {
            e.data_type(&input_schema)
                .is_ok_and(|t| is_dense_key_type(&t))
        })
        && aggregate.aggr_expr().iter().all(|a| {
            a.groups_accumulator_supported() && a.order_bys().is_empty() && !a.is_distinct()
        })
}

fn is_dense_key_type(t: &DataType) -> bool {
    with_key_type!(t, _K => true, else false)
}

/// An [`AggregateExec`] run by array index (see the module documentation).
#[derive(Debug)]
pub(crate) struct DenseAggregateExec {
    aggregate: AggregateExec,
    /// `handed_over`: partitions that went on with DataFusion's hash aggregation.
    metrics: ExecutionPlanMetricsSet,
}

impl DenseAggregateExec {
    fn new(aggregate: AggregateExec) -> Self {
        DenseAggregateExec {
            aggregate,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for DenseAggregateExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "DenseAggregateExec over ")?;
        self.aggregate.fmt_as(t, f)
    }
}

impl ExecutionPlan for DenseAggregateExec {
    fn name(&self) -> &'static str {
        "DenseAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.aggregate.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.aggregate.children()
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        self.aggregate.input_distribution_requirements()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        self.aggregate.maintains_input_order()
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        self.aggregate.child_stats_requests(partition)
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        self.aggregate.statistics_from_inputs(input_stats, args)
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.aggregate.apply_expressions(f)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let recompute = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute);
        let plan = Arc::new(self.aggregate.clone()).replace_children(children, recompute)?;
        let aggregate = plan
            .downcast_ref::<AggregateExec>()
            .ok_or_else(|| internal("AggregateExec::replace_children returned another plan"))?
            .clone();
        Ok(Arc::new(DenseAggregateExec::new(aggregate)))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.aggregate.input().execute(partition, context.clone())?;
        let aggregate = self.aggregate.clone();
        let schema = aggregate.schema();
        let handed_over = MetricBuilder::new(&self.metrics).counter("handed_over", partition);
        let output = futures::stream::once(aggregate_input(
            aggregate,
            input,
            partition,
            context,
            handed_over,
        ))
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, output)))
    }
}

fn internal(message: &str) -> DataFusionError {
    DataFusionError::Internal(format!("DenseAggregateExec: {message}"))
}

/// Aggregates a partition's input by array index, or hands it to DataFusion when it does not
/// fit (counted in `handed_over`).
async fn aggregate_input(
    aggregate: AggregateExec,
    mut input: SendableRecordBatchStream,
    partition: usize,
    context: Arc<TaskContext>,
    handed_over: Count,
) -> Result<SendableRecordBatchStream> {
    let mut groups = DenseGroups::new(&aggregate, partition, &context)?;
    while let Some(batch) = input.next().await {
        let batch = batch?;
        let pending = if !groups.add(&batch)? {
            Some(batch)
        } else if groups.reserve().is_err() {
            None
        } else {
            continue;
        };
        handed_over.add(1);
        return hand_over(aggregate, groups, pending, input, partition, context);
    }
    let final_values = matches!(aggregate.mode(), AggregateMode::Single);
    let batches = groups.emit(final_values, aggregate.schema(), &context)?;
    let stream = futures::stream::iter(batches.into_iter().map(Ok));
    Ok(Box::pin(RecordBatchStreamAdapter::new(
        aggregate.schema(),
        stream,
    )))
}

/// Continues with DataFusion's hash aggregation: `pending` (a batch not yet counted) and the
/// rest of `input` go through a `Partial` aggregation; the groups so far follow as partial
/// state, merged by a `Final` aggregation when `aggregate` is `Single`.
fn hand_over(
    aggregate: AggregateExec,
    mut groups: DenseGroups,
    pending: Option<RecordBatch>,
    input: SendableRecordBatchStream,
    partition: usize,
    context: Arc<TaskContext>,
) -> Result<SendableRecordBatchStream> {
    let source = aggregate.input();
    let rest = futures::stream::iter(pending.map(Ok)).chain(input);
    let rest = HandOff::new(
        source.properties().clone(),
        Box::pin(RecordBatchStreamAdapter::new(source.schema(), rest)),
    );
    let partial = AggregateExec::try_new(
        AggregateMode::Partial,
        aggregate.group_expr().clone(),
        aggregate.aggr_expr().to_vec(),
        aggregate.filter_expr().to_vec(),
        Arc::new(rest),
        aggregate.input_schema(),
    )?;
    let so_far = groups.emit(false, partial.schema(), &context)?;
    let partial_rest = partial.execute(partition, context.clone())?;
    let states = futures::stream::iter(so_far.into_iter().map(Ok)).chain(partial_rest);
    let states: SendableRecordBatchStream =
        Box::pin(RecordBatchStreamAdapter::new(partial.schema(), states));
    match aggregate.mode() {
        AggregateMode::Single => {
            let merged = HandOff::new(partial.properties().clone(), states);
            let aggregates = aggregate.aggr_expr().to_vec();
            let no_filters = vec![None; aggregates.len()];
            let final_aggregate = AggregateExec::try_new(
                AggregateMode::Final,
                aggregate.group_expr().as_final(),
                aggregates,
                no_filters,
                Arc::new(merged),
                aggregate.input_schema(),
            )?;
            final_aggregate.execute(partition, context)
        }
        _ => Ok(states),
    }
}

/// A leaf that yields a stream already started elsewhere, once: how [`hand_over`] gives the
/// rest of an input to a DataFusion operator.
struct HandOff {
    properties: Arc<PlanProperties>,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl HandOff {
    fn new(properties: Arc<PlanProperties>, stream: SendableRecordBatchStream) -> Self {
        HandOff {
            properties,
            stream: Mutex::new(Some(stream)),
        }
    }
}

impl fmt::Debug for HandOff {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("HandOff")
    }
}

impl DisplayAs for HandOff {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("HandOff")
    }
}

impl ExecutionPlan for HandOff {
    fn name(&self) -> &'static str {
        "HandOff"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut stream = self
            .stream
            .lock()
            .map_err(|_| internal("hand-off lock poisoned"))?;
        stream
            .take()
            .ok_or_else(|| internal("hand-off stream executed twice"))
    }
}

/// One grouping column's part of the array index: codes `0..width` (0 is NULL, `c` is the
/// value `min + c - 1`), each step worth `stride` entries.
#[derive(Clone, Debug, PartialEq)]
struct KeyRange {
    min: i64,
    width: u64,
    stride: u64,
}

impl KeyRange {
    /// The largest value the range holds; `None` while it holds only NULL.
    fn max(&self) -> Option<i64> {
        (self.width > 1).then(|| self.min + self.width as i64 - 2)
    }

    fn value_at(&self, index: u64) -> Option<i64> {
        let code = (index / self.stride) % self.width;
        (code != 0).then(|| self.min + code as i64 - 1)
    }

    fn code_of(&self, value: Option<i64>) -> u64 {
        value.map_or(0, |v| (v - self.min) as u64 + 1)
    }
}

/// The groups of one partition and their accumulators.
struct DenseGroups {
    group_by: PhysicalGroupBy,
    key_types: Vec<DataType>,
    arguments: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    ranges: Vec<KeyRange>,
    /// Array index → group number + 1 (0: no group yet).
    slots: Vec<u32>,
    /// Group number → its array index under `ranges`.
    groups: Vec<u64>,
    /// Each row's array index (below [`MAX_SLOTS`], so 32 bits: twice the rows per vector).
    indices: Vec<u32>,
    group_indices: Vec<usize>,
    reservation: MemoryReservation,
}

impl DenseGroups {
    fn new(aggregate: &AggregateExec, partition: usize, context: &TaskContext) -> Result<Self> {
        let input_schema = aggregate.input().schema();
        let group_by = aggregate.group_expr().clone();
        let key_types = group_by
            .expr()
            .iter()
            .map(|(e, _)| e.data_type(&input_schema))
            .collect::<Result<Vec<_>>>()?;
        let accumulators = aggregate
            .aggr_expr()
            .iter()
            .map(|a| a.create_groups_accumulator())
            .collect::<Result<Vec<_>>>()?;
        let ranges = key_types
            .iter()
            .map(|_| KeyRange {
                min: 0,
                width: 1,
                stride: 1,
            })
            .collect();
        let reservation = MemoryConsumer::new(format!("DenseAggregate[{partition}]"))
            .register(context.memory_pool());
        Ok(DenseGroups {
            group_by,
            key_types,
            arguments: aggregate_expressions(aggregate.aggr_expr(), aggregate.mode(), 0)?,
            filters: aggregate.filter_expr().to_vec(),
            accumulators,
            ranges,
            slots: vec![0; 1],
            groups: Vec::new(),
            indices: Vec::new(),
            group_indices: Vec::new(),
            reservation,
        })
    }

    /// Counts `batch` into its groups; `false` (and nothing counted) when its keys would need
    /// more than [`MAX_SLOTS`] entries or more memory than the pool grants.
    fn add(&mut self, batch: &RecordBatch) -> Result<bool> {
        let rows = batch.num_rows();
        let keys = self
            .group_by
            .expr()
            .iter()
            .map(|(e, _)| e.evaluate(batch).and_then(|v| v.into_array(rows)))
            .collect::<Result<Vec<_>>>()?;
        let mut bounds = Vec::with_capacity(keys.len());
        for (key, data_type) in keys.iter().zip(&self.key_types) {
            bounds.push(with_key_type!(data_type, K => key_bounds::<K>(key)?,
                else return Err(internal("unsupported key type"))));
        }
        if let Some((roomy, exact)) = self.widened(&bounds) {
            if !self.lay_out(roomy) && !self.lay_out(exact) {
                return Ok(false);
            }
        }
        self.indices.clear();
        self.indices.resize(rows, 0);
        for ((key, data_type), range) in keys.iter().zip(&self.key_types).zip(&self.ranges) {
            with_key_type!(data_type, K => add_codes::<K>(key, range, &mut self.indices)?,
                else return Err(internal("unsupported key type")));
        }
        self.group_indices.clear();
        self.group_indices.reserve(rows);
        for &index in &self.indices {
            let slot = &mut self.slots[index as usize];
            if *slot == 0 {
                self.groups.push(u64::from(index));
                *slot = self.groups.len() as u32;
            }
            self.group_indices.push(*slot as usize - 1);
        }
        let arguments = evaluate_many(&self.arguments, batch)?;
        for ((accumulator, values), filter) in self
            .accumulators
            .iter_mut()
            .zip(&arguments)
            .zip(&self.filters)
        {
            let filter = match filter {
                Some(f) => Some(f.evaluate(batch)?.into_array(rows)?),
                None => None,
            };
            let filter = match &filter {
                Some(f) => Some(
                    f.as_boolean_opt()
                        .ok_or_else(|| internal("aggregate filter is not boolean"))?,
                ),
                None => None,
            };
            accumulator.update_batch(values, &self.group_indices, filter, self.groups.len())?;
        }
        Ok(true)
    }

    /// The key bounds to lay the array out for when `bounds` (this batch's, per column) fall
    /// outside the current ones: the union with a rising maximum given as much headroom again
    /// as the range already spans (so a key rising batch by batch re-lays the array out a
    /// logarithmic number of times), and the exact union.
    #[allow(clippy::type_complexity)]
    fn widened(
        &self,
        bounds: &[Option<(i64, i64)>],
    ) -> Option<(Vec<Option<(i64, i64)>>, Vec<Option<(i64, i64)>>)> {
        let mut grown = false;
        let mut roomy = Vec::with_capacity(bounds.len());
        let mut exact = Vec::with_capacity(bounds.len());
        for (range, batch) in self.ranges.iter().zip(bounds) {
            let (with_room, union) = match (range.max(), *batch) {
                (None, batch) => {
                    grown |= batch.is_some();
                    (batch, batch)
                }
                (Some(max), None) => (Some((range.min, max)), Some((range.min, max))),
                (Some(max), Some((lo, hi))) if lo >= range.min && hi <= max => {
                    (Some((range.min, max)), Some((range.min, max)))
                }
                (Some(max), Some((lo, hi))) => {
                    grown = true;
                    let span = max - range.min + 1;
                    let lo = lo.min(range.min);
                    let room = if hi > max {
                        hi.max(max.saturating_add(span))
                    } else {
                        max
                    };
                    (Some((lo, room)), Some((lo, hi.max(max))))
                }
            };
            roomy.push(with_room);
            exact.push(union);
        }
        grown.then_some((roomy, exact))
    }

    /// Re-lays the array out for `bounds`, moving every group to its new index; `false`
    /// (nothing changed) when it would pass [`MAX_SLOTS`] entries even without headroom, or the
    /// memory pool refuses it.
    fn lay_out(&mut self, bounds: Vec<Option<(i64, i64)>>) -> bool {
        let Some(ranges) = ranges_for(&bounds) else {
            return false;
        };
        let entries = ranges.first().map_or(1, |r| r.width * r.stride);
        let needed = self.size() - self.slots.capacity() * 4 + entries as usize * 4;
        if self.reservation.try_resize(needed).is_err() {
            return false;
        }
        let mut slots = vec![0u32; entries as usize];
        for (group, index) in self.groups.iter_mut().enumerate() {
            let moved: u64 = self
                .ranges
                .iter()
                .zip(&ranges)
                .map(|(old, new)| new.code_of(old.value_at(*index)) * new.stride)
                .sum();
            *index = moved;
            slots[moved as usize] = group as u32 + 1;
        }
        self.slots = slots;
        self.ranges = ranges;
        true
    }

    /// Bytes held: the array, the groups, the accumulators.
    fn size(&self) -> usize {
        self.slots.capacity() * 4
            + self.groups.capacity() * 8
            + self.indices.capacity() * 4
            + self.group_indices.capacity() * 8
            + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
    }

    /// Grows the memory reservation to what the groups hold now.
    fn reserve(&mut self) -> Result<()> {
        let size = self.size();
        self.reservation.try_resize(size)
    }

    /// The groups as batches of `schema`: keys, then each function's final value
    /// (`final_values`) or partial state, at most a session batch size per batch.
    fn emit(
        &mut self,
        final_values: bool,
        schema: SchemaRef,
        context: &TaskContext,
    ) -> Result<Vec<RecordBatch>> {
        if self.groups.is_empty() {
            return Ok(Vec::new());
        }
        let mut columns = Vec::with_capacity(schema.fields().len());
        for (range, data_type) in self.ranges.iter().zip(&self.key_types) {
            columns.push(
                with_key_type!(data_type, K => keys_of::<K>(&self.groups, range, data_type),
                else return Err(internal("unsupported key type"))),
            );
        }
        for accumulator in &mut self.accumulators {
            if final_values {
                columns.push(accumulator.evaluate(EmitTo::All)?);
            } else {
                columns.extend(accumulator.state(EmitTo::All)?);
            }
        }
        let batch = RecordBatch::try_new(schema, columns)?;
        self.groups = Vec::new();
        self.slots = Vec::new();
        let _ = self.reservation.try_resize(0);
        let size = context.session_config().batch_size().max(1);
        Ok((0..batch.num_rows())
            .step_by(size)
            .map(|start| batch.slice(start, size.min(batch.num_rows() - start)))
            .collect())
    }
}

/// Key ranges for per-column bounds (`None`: only NULLs), last column fastest; `None` when
/// they need more than [`MAX_SLOTS`] entries.
fn ranges_for(bounds: &[Option<(i64, i64)>]) -> Option<Vec<KeyRange>> {
    let mut ranges = Vec::with_capacity(bounds.len());
    let mut stride: u64 = 1;
    for bound in bounds.iter().rev() {
        let (min, width) = match *bound {
            None => (0, 1),
            Some((lo, hi)) => {
                let width = hi as i128 - lo as i128 + 2;
                if width > MAX_SLOTS as i128 {
                    return None;
                }
                (lo, width as u64)
            }
        };
        ranges.push(KeyRange { min, width, stride });
        stride = stride.checked_mul(width).filter(|s| *s <= MAX_SLOTS)?;
    }
    ranges.reverse();
    Some(ranges)
}

fn primitive<K: DenseKey>(key: &ArrayRef) -> Result<&PrimitiveArray<K>> {
    key.as_primitive_opt::<K>()
        .ok_or_else(|| internal("grouping key of an unexpected type"))
}

/// The smallest and largest non-null value of `key`.
fn key_bounds<K: DenseKey>(key: &ArrayRef) -> Result<Option<(i64, i64)>> {
    let key = primitive::<K>(key)?;
    Ok(min(key)
        .zip(max(key))
        .map(|(lo, hi)| (K::to_i64(lo), K::to_i64(hi))))
}

/// Adds each row's code in `range`, times its stride, to `indices`.
fn add_codes<K: DenseKey>(key: &ArrayRef, range: &KeyRange, indices: &mut [u32]) -> Result<()> {
    let key = primitive::<K>(key)?;
    // Every value is within the range and the array has at most MAX_SLOTS (< 2^32) entries:
    // codes, strides and indices fit in 32 bits.
    let (lo, stride) = (range.min, range.stride as u32);
    let values = key.values().iter();
    match key.nulls().filter(|n| n.null_count() > 0) {
        None => {
            for (index, &v) in indices.iter_mut().zip(values) {
                *index += ((K::to_i64(v) - lo) as u32 + 1) * stride;
            }
        }
        Some(nulls) => {
            for ((index, &v), valid) in indices.iter_mut().zip(values).zip(nulls.iter()) {
                if valid {
                    *index += ((K::to_i64(v) - lo) as u32 + 1) * stride;
                }
            }
        }
    }
    Ok(())
}

/// The key column of `groups` (array indices under `range`), of type `data_type`.
fn keys_of<K: DenseKey>(groups: &[u64], range: &KeyRange, data_type: &DataType) -> ArrayRef {
    let keys: PrimitiveArray<K> = groups
        .iter()
        .map(|&index| range.value_at(index).map(K::from_i64))
        .collect();
    Arc::new(keys.with_data_type(data_type.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        Date32Array, Float64Array, Int32Array, Int64Array, Int8Array, StringArray, UInt32Array,
    };
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::{SessionConfig, SessionContext};

    const ROWS: usize = 20_000;

    /// `ROWS` rows in batches of 1,000 over two partitions: small keys of several types with
    /// NULLs and negatives, a key rising through the whole table far from zero, a key that is
    /// narrow for the first half and spread past [`MAX_SLOTS`] in the second, and measures.
    fn table() -> Arc<MemTable> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k8", DataType::Int8, false),
            Field::new("k32", DataType::Int32, true),
            Field::new("id", DataType::UInt32, false),
            Field::new("day", DataType::Date32, true),
            Field::new("rising", DataType::Int64, false),
            Field::new("wide", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
            Field::new("v", DataType::Int64, true),
            Field::new("f", DataType::Float64, false),
        ]));
        let batch = |start: usize| {
            let rows = start..start + 1_000;
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int8Array::from_iter_values(
                    rows.clone().map(|i| (i % 5) as i8 - 2),
                )),
                Arc::new(Int32Array::from_iter(
                    rows.clone()
                        .map(|i| (i % 11 != 0).then_some((i % 13) as i32 - 6)),
                )),
                Arc::new(UInt32Array::from_iter_values(
                    rows.clone().map(|i| (i * 7 % 250) as u32),
                )),
                Arc::new(Date32Array::from_iter(
                    rows.clone()
                        .map(|i| (i % 17 != 0).then_some(8_000 + (i % 40) as i32)),
                )),
                Arc::new(Int64Array::from_iter_values(
                    rows.clone().map(|i| 1_000_000_000_000 + (i / 3) as i64),
                )),
                Arc::new(Int64Array::from_iter_values(rows.clone().map(|i| {
                    let group = (i % 9) as i64;
                    if i < ROWS / 2 {
                        group
                    } else {
                        group * 1_000_003
                    }
                }))),
                Arc::new(StringArray::from_iter_values(
                    rows.clone().map(|i| format!("s{}", i % 4)),
                )),
                Arc::new(Int64Array::from_iter(
                    rows.clone()
                        .map(|i| (i % 7 != 0).then_some((i % 100) as i64 - 20)),
                )),
                Arc::new(Float64Array::from_iter_values(
                    rows.map(|i| (i % 31) as f64 * 0.5),
                )),
            ];
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        };
        let half = ROWS / 1_000 / 2;
        let partitions = (0..2)
            .map(|p| (0..half).map(|b| batch((p * half + b) * 1_000)).collect())
            .collect();
        Arc::new(MemTable::try_new(schema.clone(), partitions).unwrap())
    }

    fn context(partitions: usize, dense: bool, memory: Option<usize>) -> SessionContext {
        let config = SessionConfig::new()
            .with_target_partitions(partitions)
            .with_batch_size(4_096);
        let mut config = config;
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(limit) = memory {
            runtime = runtime.with_memory_limit(limit, 1.0);
            // The ORDER BY's sort would reserve 10 MiB for merging spills by default.
            config.options_mut().execution.sort_spill_reservation_bytes = limit / 16;
        }
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime.build_arc().unwrap())
            .with_default_features();
        if dense {
            state = state.with_physical_optimizer_rule(Arc::new(DenseAggregation));
        }
        let ctx = SessionContext::new_with_state(state.build());
        ctx.register_table("t", table()).unwrap();
        ctx
    }

    /// The query's rows (ordered by the SQL), its plan, and how many partitions of the dense
    /// operators in it handed over to DataFusion.
    async fn run(ctx: &SessionContext, sql: &str) -> (String, String, usize) {
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let batches = collect(plan.clone(), ctx.task_ctx()).await.unwrap();
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert!(rows > 0, "{sql} returned no rows");
        let mut handed_over = 0;
        let mut stack = vec![plan.clone()];
        while let Some(p) = stack.pop() {
            if p.is::<DenseAggregateExec>() {
                let metrics = p.metrics().unwrap();
                handed_over += metrics
                    .sum_by_name("handed_over")
                    .map_or(0, |m| m.as_usize());
            }
            stack.extend(p.children().into_iter().cloned());
        }
        let shown = displayable(plan.as_ref()).indent(false).to_string();
        (
            pretty_format_batches(&batches).unwrap().to_string(),
            shown,
            handed_over,
        )
    }

    #[tokio::test]
    async fn answers_as_hash_aggregation_does() {
        // (query, hands over): every query orders by all its output columns.
        let cases = [
            (
                "SELECT k8, id, SUM(v), COUNT(v), COUNT(*), MIN(v), MAX(v), AVG(f) FROM t \
              GROUP BY k8, id ORDER BY 1, 2",
                false,
            ),
            (
                "SELECT k32, day, SUM(v) FILTER (WHERE v > 10) AS big, COUNT(*) FROM t \
              GROUP BY k32, day ORDER BY 1, 2, 3, 4",
                false,
            ),
            (
                "SELECT k32, COUNT(DISTINCT v) FROM t GROUP BY k32 ORDER BY 1, 2",
                false,
            ),
            (
                "SELECT rising, SUM(v), MAX(f) FROM t GROUP BY rising ORDER BY 1, 2, 3",
                false,
            ),
            (
                "SELECT k8 * 2 AS k, day FROM t GROUP BY k8 * 2, day ORDER BY 1, 2",
                false,
            ),
            (
                "SELECT k8, SUM(v) FROM t WHERE k8 > 100 GROUP BY k8 \
              UNION ALL SELECT -1, SUM(v) FROM t ORDER BY 1, 2",
                false,
            ),
            (
                "SELECT wide, k8, SUM(v), COUNT(*), AVG(f) FROM t GROUP BY wide, k8 \
              ORDER BY 1, 2, 3, 4, 5",
                true,
            ),
        ];
        for partitions in [1, 3] {
            let (dense, hashed) = (
                context(partitions, true, None),
                context(partitions, false, None),
            );
            for (sql, hands_over) in cases {
                let (got, plan, handed_over) = run(&dense, sql).await;
                let (want, hashed_plan, _) = run(&hashed, sql).await;
                assert_eq!(got, want, "{sql} with {partitions} partitions\n{plan}");
                if !sql.contains("k8 > 100") {
                    assert!(plan.contains("DenseAggregateExec"), "{sql}\n{plan}");
                }
                assert!(!hashed_plan.contains("DenseAggregateExec"));
                assert_eq!(
                    handed_over > 0,
                    hands_over,
                    "{sql} with {partitions} partitions\n{plan}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_refused_reservation_hands_over() {
        // Keys 0 and 1,000,000 need a 4 MB array (1,000,002 entries); the pool has 2 MB.
        let sql = "SELECT CASE WHEN k8 > 0 THEN 1000000 ELSE 0 END AS k, SUM(v), COUNT(*) \
                   FROM t GROUP BY 1 ORDER BY 1";
        for partitions in [1, 3] {
            let (got, plan, handed_over) =
                run(&context(partitions, true, Some(2 << 20)), sql).await;
            let (want, ..) = run(&context(partitions, false, None), sql).await;
            assert_eq!(got, want, "{plan}");
            assert!(handed_over > 0, "{plan}");
            // With room for the array, the same query stays dense.
            let (got, _, handed_over) = run(&context(partitions, true, None), sql).await;
            assert_eq!((got, handed_over), (want, 0));
        }
    }

    #[tokio::test]
    async fn only_integer_keys_and_grouped_accumulators_are_dense() {
        let ctx = context(1, true, None);
        for (sql, dense) in [
            ("SELECT s, SUM(v) FROM t GROUP BY s ORDER BY 1", false),
            ("SELECT f, COUNT(*) FROM t GROUP BY f ORDER BY 1", false),
            ("SELECT SUM(v) FROM t", false),
            (
                "SELECT k8, s, SUM(v) FROM t GROUP BY k8, s ORDER BY 1, 2",
                false,
            ),
            (
                "SELECT k8, array_agg(v ORDER BY v) FROM t GROUP BY k8 ORDER BY 1",
                false,
            ),
            (
                "SELECT k8, id, SUM(v) FROM t GROUP BY k8, id ORDER BY 1, 2",
                true,
            ),
        ] {
            let (_, plan, _) = run(&ctx, sql).await;
            assert_eq!(plan.contains("DenseAggregateExec"), dense, "{sql}\n{plan}");
        }
    }

    #[test]
    fn ranges_lay_keys_out_last_column_fastest_and_refuse_past_the_limit() {
        let ranges = ranges_for(&[Some((-2, 2)), None, Some((10, 12))]).unwrap();
        let widths: Vec<u64> = ranges.iter().map(|r| r.width).collect();
        let strides: Vec<u64> = ranges.iter().map(|r| r.stride).collect();
        assert_eq!((widths, strides), (vec![6, 1, 4], vec![4, 4, 1]));
        let index: u64 = ranges
            .iter()
            .zip([Some(-2), None, Some(12)])
            .map(|(r, v)| r.code_of(v) * r.stride)
            .sum();
        let back: Vec<Option<i64>> = ranges.iter().map(|r| r.value_at(index)).collect();
        assert_eq!(back, vec![Some(-2), None, Some(12)]);
        assert!(ranges_for(&[Some((0, MAX_SLOTS as i64))]).is_none());
        assert!(ranges_for(&[Some((0, 2_999)), Some((0, 2_999))]).is_none());
        assert!(ranges_for(&[Some((i64::MIN, i64::MAX))]).is_none());
        assert!(ranges_for(&[Some((0, 2_046)), Some((0, 2_046))]).is_some());
    }
}
