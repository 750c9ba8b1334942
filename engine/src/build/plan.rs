//! Cuboid builds as DataFusion physical plans, so that the same plan runs on the job engine's
//! own DataFusion runtime or, serialised with [`BuildPlanCodec`], on a Ballista cluster.
//!
//! - Base cuboid ([`base_cuboid_plan`]): the flat table's plan → [`GlobalDictIdsExec`] (when a
//!   measure counts distinct values through a global dictionary) → `RepartitionExec` (hash of
//!   the dimensions) → [`CuboidAggregateExec`] on raw values → `SortPreservingMergeExec`.
//! - Any other cuboid, or a cuboid of merged segments ([`child_cuboid_plan`]):
//!   [`StoredCuboidExec`] (the parent's blocks) → `RepartitionExec` → [`CuboidAggregateExec`]
//!   on states → `SortPreservingMergeExec`.
//! - [`CuboidSinkExec`] on top writes the rows as blocks and the manifest.
//!
//! Each partition aggregates its groups with the build's own [`SpillingAggregator`] (the
//! stored state bytes, spilling under its share of the budget) and emits them in
//! rowkey order; the merge yields the cuboid in rowkey order. A child built in one partition
//! from a parent whose rowkey starts with the child's first dimensions is aggregated one
//! value of those dimensions at a time ([`PrefixAggregator`], `sorted_prefix` in EXPLAIN).
//! Ballista cuts stages at the repartition and the merge, so the shuffle between them
//! crosses executors.
//!
//! The aggregation is the build's aggregator behind a plan node rather than DataFusion
//! aggregates with user-defined accumulators: it already produces the stored state format for
//! every measure kind and spills within a budget, and one implementation of the states is one
//! thing to keep right.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{Field, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{
    EquivalenceProperties, LexOrdering, PhysicalExpr, PhysicalSortExpr,
};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::aggregate::Mode;
use super::spill::{SpillOptions, SpillingAggregator};
use super::streaming::PrefixAggregator;
use crate::dict::{measure_dict_name, GlobalDict};
use crate::error::{Error, Result};
use crate::model::{CubeLayout, CuboidId, StateKind};
use crate::storage::block::for_each_block;
use crate::storage::SegmentStore;

type DfResult<T> = datafusion::common::Result<T>;

/// Reads one cuboid of one or more segments from the segment store, in one partition (a
/// Ballista task runs every partition of a leaf it does not know, so more than one would be
/// read twice), keeping the stored columns `columns` in that order.
#[derive(Debug)]
pub struct StoredCuboidExec {
    spec: StoredCuboidSpec,
    schema: SchemaRef,
    store: Arc<dyn SegmentStore>,
    properties: Arc<PlanProperties>,
}

/// What a [`StoredCuboidExec`] reads (its serialised form, with the schema).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredCuboidSpec {
    segments: Vec<String>,
    cuboid: CuboidId,
    columns: Vec<usize>,
}

impl StoredCuboidExec {
    /// `schema` describes `columns` of the stored blocks (names and types).
    pub fn new(
        store: Arc<dyn SegmentStore>,
        segments: Vec<String>,
        cuboid: CuboidId,
        columns: Vec<usize>,
        schema: SchemaRef,
    ) -> Self {
        Self::from_spec(
            StoredCuboidSpec {
                segments,
                cuboid,
                columns,
            },
            schema,
            store,
        )
    }

    fn from_spec(spec: StoredCuboidSpec, schema: SchemaRef, store: Arc<dyn SegmentStore>) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        StoredCuboidExec {
            spec,
            schema,
            store,
            properties,
        }
    }
}

impl DisplayAs for StoredCuboidExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "StoredCuboidExec: cuboid={}, segments={}",
            self.spec.cuboid,
            self.spec.segments.join(",")
        )
    }
}

impl ExecutionPlan for StoredCuboidExec {
    fn name(&self) -> &'static str {
        "StoredCuboidExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "StoredCuboidExec has one partition, not {partition}"
            )));
        }
        // Blocks are read and decoded on the blocking pool, two ahead of the consumer.
        let (tx, rx) = tokio::sync::mpsc::channel::<DfResult<RecordBatch>>(2);
        let (spec, schema, store) = (self.spec.clone(), self.schema.clone(), self.store.clone());
        tokio::task::spawn_blocking(move || {
            let read = || -> Result<()> {
                for segment in &spec.segments {
                    for_each_block(store.as_ref(), segment, spec.cuboid, |b| {
                        let columns = spec
                            .columns
                            .iter()
                            .map(|&i| {
                                b.columns().get(i).cloned().ok_or_else(|| {
                                    Error::invalid(
                                        "stored cuboid",
                                        format!(
                                            "cuboid {} of segment {segment} has no column {i}",
                                            spec.cuboid
                                        ),
                                    )
                                })
                            })
                            .collect::<Result<Vec<ArrayRef>>>()?;
                        // Stored blocks may differ from the schema in nullability only.
                        let batch = RecordBatch::try_new_with_options(
                            schema.clone(),
                            columns,
                            &RecordBatchOptions::new().with_row_count(Some(b.num_rows())),
                        )?;
                        tx.blocking_send(Ok(batch)).map_err(|_| {
                            Error::Refused("the cuboid reader's consumer stopped".into())
                        })
                    })?;
                }
                Ok(())
            };
            if let Err(e) = read() {
                // The consumer may be gone: then nobody needs the error.
                let _ = tx.blocking_send(Err(e.into_datafusion()));
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            receiver_stream(rx),
        )))
    }
}

fn receiver_stream<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

/// Aggregates each partition of its input with a [`SpillingAggregator`] and emits the groups
/// in rowkey order (each partition sorted on its own). The input's first `dims` columns are
/// the dimensions; `inputs[m]` is the input column of measure `m` (`None` for COUNT(*)).
#[derive(Debug)]
pub struct CuboidAggregateExec {
    input: Arc<dyn ExecutionPlan>,
    spec: AggregateSpec,
    /// Where aggregations spill on the machine that runs the plan (not serialised).
    spill_dir: PathBuf,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

/// What a [`CuboidAggregateExec`] does (its serialised form).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AggregateSpec {
    /// `true`: the inputs are stored states (`Mode::Merge`); `false`: flat-table values.
    merge: bool,
    dims: usize,
    /// Measure name and state kind (see [`state_kind_name`]).
    measures: Vec<(String, String)>,
    inputs: Vec<Option<usize>>,
    /// Memory budget of each partition's aggregator, in bytes.
    memory_bytes: usize,
    batch_rows: usize,
    /// The input arrives sorted on its first `sorted_prefix` dimensions (one partition
    /// reading one parent): groups are emitted as each prefix value ends
    /// ([`PrefixAggregator`]). Absent in plans of older job engines: 0.
    #[serde(default)]
    sorted_prefix: usize,
}

impl AggregateSpec {
    fn mode(&self) -> Mode {
        if self.merge {
            Mode::Merge
        } else {
            Mode::Raw
        }
    }

    fn measures(&self) -> Result<Vec<(String, StateKind)>> {
        self.measures
            .iter()
            .map(|(n, k)| Ok((n.clone(), parse_state_kind(k)?)))
            .collect()
    }

    fn aggregator(&self, input: &SchemaRef, spill_dir: PathBuf) -> Result<SpillingAggregator> {
        // Nullable, as stored cuboids' dimensions are, whatever the input says.
        let dims: Vec<Field> = input.fields()[..self.dims]
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect();
        SpillingAggregator::new(
            self.mode(),
            dims,
            &self.measures()?,
            SpillOptions {
                memory_bytes: self.memory_bytes,
                dir: spill_dir,
            },
            self.batch_rows,
        )
    }

    /// The aggregation of one partition: emitting as the sorted prefix's values end.
    fn prefix_aggregator(&self, input: &SchemaRef, spill_dir: PathBuf) -> Result<PrefixAggregator> {
        let prefix: Vec<Field> = input.fields()[..self.sorted_prefix.min(self.dims)]
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let (spec, input) = (self.clone(), input.clone());
        PrefixAggregator::new(
            &prefix,
            Box::new(move || spec.aggregator(&input, spill_dir.clone())),
        )
    }
}

impl CuboidAggregateExec {
    fn try_new(
        input: Arc<dyn ExecutionPlan>,
        spec: AggregateSpec,
        spill_dir: PathBuf,
    ) -> Result<Self> {
        let in_schema = input.schema();
        let columns = in_schema.fields().len();
        if spec.dims > columns
            || spec.inputs.len() != spec.measures.len()
            || spec.inputs.iter().flatten().any(|&i| i >= columns)
        {
            return Err(Error::invalid(
                "cuboid aggregation",
                format!(
                    "{} dimensions and inputs {:?} do not fit an input of {columns} columns",
                    spec.dims, spec.inputs
                ),
            ));
        }
        let schema = spec
            .aggregator(&in_schema, spill_dir.clone())?
            .output_schema();
        let ordering = rowkey_ordering(&schema, spec.dims);
        let eq = match ordering {
            Some(o) => EquivalenceProperties::new_with_orderings(schema.clone(), [o]),
            None => EquivalenceProperties::new(schema.clone()),
        };
        let emission = if spec.sorted_prefix > 0 {
            EmissionType::Incremental
        } else {
            EmissionType::Final
        };
        let properties = Arc::new(PlanProperties::new(
            eq,
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
            emission,
            Boundedness::Bounded,
        ));
        Ok(CuboidAggregateExec {
            input,
            spec,
            spill_dir,
            schema,
            properties,
        })
    }
}

/// The first `dims` columns ascending, nulls first: the order of the aggregator's output and
/// of stored cuboids.
fn rowkey_ordering(schema: &SchemaRef, dims: usize) -> Option<LexOrdering> {
    LexOrdering::new((0..dims).map(|i| {
        PhysicalSortExpr::new_default(Arc::new(Column::new(schema.field(i).name(), i)) as _)
    }))
}

impl DisplayAs for CuboidAggregateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "CuboidAggregateExec: mode={:?}, dims={}, measures={}",
            self.spec.mode(),
            self.spec.dims,
            self.spec.measures.len()
        )?;
        if self.spec.sorted_prefix > 0 {
            write!(f, ", sorted_prefix={}", self.spec.sorted_prefix)?;
        }
        Ok(())
    }
}

impl ExecutionPlan for CuboidAggregateExec {
    fn name(&self) -> &'static str {
        "CuboidAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(
                "CuboidAggregateExec has one input".into(),
            ));
        }
        Ok(Arc::new(
            CuboidAggregateExec::try_new(
                children.remove(0),
                self.spec.clone(),
                self.spill_dir.clone(),
            )
            .map_err(Error::into_datafusion)?,
        ))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let mut input = self.input.execute(partition, context)?;
        let mut agg = self
            .spec
            .prefix_aggregator(&self.input.schema(), self.spill_dir.clone())
            .map_err(Error::into_datafusion)?;
        let spec = self.spec.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<DfResult<RecordBatch>>(2);
        // Merging states is CPU work of seconds per batch for heavy measures (TOP_N): it runs
        // on the blocking pool, never on the async workers, which must stay free for the
        // rest of the process (in a job engine: renewing its lease). The async task only
        // forwards the input; `None` marks its end, so an input that fails or is dropped
        // never finishes the aggregation. Groups complete before the end (a sorted prefix)
        // may be emitted already; then the failed input's error ends the stream, and the
        // sink writes a manifest only for a stream that ended without one.
        let (feed, mut fed_rx) = tokio::sync::mpsc::channel::<Option<RecordBatch>>(2);
        let emit = tx.clone();
        let aggregating = tokio::task::spawn_blocking(move || -> Result<()> {
            let mut sink = |b| {
                emit.blocking_send(Ok(b))
                    .map_err(|_| Error::Refused("the cuboid aggregation's consumer stopped".into()))
            };
            loop {
                match fed_rx.blocking_recv() {
                    Some(Some(batch)) => {
                        let dims: Vec<ArrayRef> = batch.columns()[..spec.dims].to_vec();
                        let inputs: Vec<Option<ArrayRef>> = spec
                            .inputs
                            .iter()
                            .map(|i| i.map(|i| batch.column(i).clone()))
                            .collect();
                        agg.update(&dims, &inputs, batch.num_rows(), &mut sink)?;
                    }
                    Some(None) => break,
                    None => {
                        return Err(Error::Refused(
                            "the cuboid aggregation's input stopped before its end".into(),
                        ))
                    }
                }
            }
            agg.finish(&mut sink)
        });
        tokio::spawn(async move {
            let forwarded = async {
                while let Some(batch) = input.next().await {
                    // The consumer is gone, or the aggregation failed (its error follows).
                    if tx.is_closed() || feed.send(Some(batch?)).await.is_err() {
                        return Ok(());
                    }
                }
                let _ = feed.send(None).await;
                Ok::<_, DataFusionError>(())
            }
            .await;
            drop(feed);
            let result = match forwarded {
                // The aggregation ends on its own: its input is gone.
                Err(e) => Err(e),
                Ok(()) => aggregating
                    .await
                    .unwrap_or_else(|e| {
                        Err(Error::Refused(format!(
                            "cuboid aggregation task failed: {e}"
                        )))
                    })
                    .map_err(Error::into_datafusion),
            };
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            receiver_stream(rx),
        )))
    }
}

/// Replaces the values of some columns by their ids in a global dictionary (exact
/// COUNT_DISTINCT of non-integer columns: the bitmap holds ids). The dictionaries are read
/// from the segment store of the machine that runs the plan, once per node, when a partition
/// first needs them; a value without an id fails the plan (the job engine grows the
/// dictionaries before it builds).
#[derive(Debug)]
pub struct GlobalDictIdsExec {
    input: Arc<dyn ExecutionPlan>,
    /// Column index and dictionary name.
    columns: Vec<(usize, String)>,
    store: Arc<dyn SegmentStore>,
    dicts: Arc<std::sync::OnceLock<Vec<Arc<GlobalDict>>>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl GlobalDictIdsExec {
    fn try_new(
        input: Arc<dyn ExecutionPlan>,
        columns: Vec<(usize, String)>,
        store: Arc<dyn SegmentStore>,
    ) -> Result<Self> {
        let in_schema = input.schema();
        let mut fields: Vec<Field> = in_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for (i, _) in &columns {
            let f = fields
                .get_mut(*i)
                .ok_or_else(|| Error::invalid("dictionary ids", format!("no input column {i}")))?;
            *f = Field::new(
                f.name(),
                datafusion::arrow::datatypes::DataType::Int64,
                true,
            );
        }
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            input.output_partitioning().clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(GlobalDictIdsExec {
            input,
            columns,
            store,
            dicts: Arc::default(),
            schema,
            properties,
        })
    }
}

impl DisplayAs for GlobalDictIdsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<&str> = self.columns.iter().map(|(_, n)| n.as_str()).collect();
        write!(f, "GlobalDictIdsExec: dictionaries={}", names.join(","))
    }
}

impl ExecutionPlan for GlobalDictIdsExec {
    fn name(&self) -> &'static str {
        "GlobalDictIdsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(
                "GlobalDictIdsExec has one input".into(),
            ));
        }
        Ok(Arc::new(
            GlobalDictIdsExec::try_new(
                children.remove(0),
                self.columns.clone(),
                self.store.clone(),
            )
            .map_err(Error::into_datafusion)?,
        ))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let (columns, store, dicts, schema) = (
            self.columns.clone(),
            self.store.clone(),
            self.dicts.clone(),
            self.schema.clone(),
        );
        let out_schema = schema.clone();
        let stream = input.then(move |batch| {
            let (columns, store, dicts, schema) = (
                columns.clone(),
                store.clone(),
                dicts.clone(),
                schema.clone(),
            );
            async move {
                let batch = batch?;
                tokio::task::spawn_blocking(move || {
                    let loaded = match dicts.get() {
                        Some(d) => d,
                        None => {
                            let mut v = Vec::with_capacity(columns.len());
                            for (_, name) in &columns {
                                v.push(Arc::new(GlobalDict::load(store.as_ref(), name)?));
                            }
                            // Another partition may have loaded them meanwhile: same content.
                            dicts.get_or_init(|| v)
                        }
                    };
                    let mut out = batch.columns().to_vec();
                    for ((i, _), dict) in columns.iter().zip(loaded) {
                        out[*i] = dict.map_ids(&out[*i])?;
                    }
                    Ok::<_, Error>(RecordBatch::try_new(schema, out)?)
                })
                .await
                .map_err(|e| DataFusionError::Execution(format!("dictionary task failed: {e}")))?
                .map_err(Error::into_datafusion)
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(out_schema, stream)))
    }
}

/// Writes its input (one partition, a cuboid's rows in rowkey order) into the segment store
/// as blocks of `block_rows` rows and then the manifest with [`crate::storage::block::CuboidWriter`],
/// and returns one row: `cuboid`, `rows`, `blocks`, `bytes`. Block numbers follow from
/// the rows (0, 1, … in rowkey order), so a retried task rewrites the same blocks with the
/// same bytes. The segment becomes visible only when the job engine commits it.
#[derive(Debug)]
pub struct CuboidSinkExec {
    input: Arc<dyn ExecutionPlan>,
    spec: SinkSpec,
    store: Arc<dyn SegmentStore>,
    properties: Arc<PlanProperties>,
}

/// What a [`CuboidSinkExec`] writes (its serialised form).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SinkSpec {
    segment: String,
    cuboid: CuboidId,
    dims: usize,
    block_rows: usize,
}

/// The schema of a [`CuboidSinkExec`]'s one output row.
pub fn sink_schema() -> SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Schema};
    Arc::new(Schema::new(vec![
        Field::new("cuboid", DataType::UInt64, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("blocks", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
    ]))
}

impl CuboidSinkExec {
    /// `input` must have one partition (a merge of sorted partitions, or one aggregation).
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        store: Arc<dyn SegmentStore>,
        segment: &str,
        cuboid: CuboidId,
        dims: usize,
        block_rows: usize,
    ) -> Result<Self> {
        crate::storage::validate_segment_id(segment)?;
        Self::from_spec(
            input,
            SinkSpec {
                segment: segment.to_string(),
                cuboid,
                dims,
                block_rows: block_rows.max(1),
            },
            store,
        )
    }

    fn from_spec(
        input: Arc<dyn ExecutionPlan>,
        spec: SinkSpec,
        store: Arc<dyn SegmentStore>,
    ) -> Result<Self> {
        if input.output_partitioning().partition_count() != 1 {
            return Err(Error::invalid(
                "cuboid sink",
                "the input must be one partition in rowkey order",
            ));
        }
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(sink_schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(CuboidSinkExec {
            input,
            spec,
            store,
            properties,
        })
    }
}

impl DisplayAs for CuboidSinkExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "CuboidSinkExec: segment={}, cuboid={}, block_rows={}",
            self.spec.segment, self.spec.cuboid, self.spec.block_rows
        )
    }
}

impl ExecutionPlan for CuboidSinkExec {
    fn name(&self) -> &'static str {
        "CuboidSinkExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(
                "CuboidSinkExec has one input".into(),
            ));
        }
        Ok(Arc::new(
            CuboidSinkExec::from_spec(children.remove(0), self.spec.clone(), self.store.clone())
                .map_err(Error::into_datafusion)?,
        ))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "CuboidSinkExec has one partition, not {partition}"
            )));
        }
        let mut input = self.input.execute(0, context)?;
        let schema = self.input.schema();
        let (spec, store) = (self.spec.clone(), self.store.clone());
        let written = async move {
            // Encoding and storing blocks block: one writer thread, fed through a channel.
            // `None` marks the end of the input: only then is the manifest written, so a
            // failed or cancelled input never leaves the manifest of a partial cuboid.
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<RecordBatch>>(2);
            let writer = tokio::task::spawn_blocking(move || {
                let mut w = crate::storage::block::CuboidWriter::new(
                    store.as_ref(),
                    &spec.segment,
                    spec.cuboid,
                    schema,
                    spec.dims,
                    spec.block_rows,
                );
                loop {
                    match rx.blocking_recv() {
                        Some(Some(b)) => w.write(b)?,
                        Some(None) => break,
                        None => {
                            return Err(Error::Refused(format!(
                                "cuboid {}: the input stopped before its end",
                                spec.cuboid
                            )))
                        }
                    }
                }
                let m = w.finish()?;
                Ok::<_, Error>((spec.cuboid, m))
            });
            while let Some(batch) = input.next().await {
                // A failed send means the writer failed: its error follows.
                if tx.send(Some(batch?)).await.is_err() {
                    break;
                }
            }
            let _ = tx.send(None).await;
            drop(tx);
            let (cuboid, m) = writer
                .await
                .map_err(|e| DataFusionError::Execution(format!("cuboid writer failed: {e}")))?
                .map_err(Error::into_datafusion)?;
            use datafusion::arrow::array::UInt64Array;
            let col = |v: u64| Arc::new(UInt64Array::from(vec![v])) as ArrayRef;
            Ok(RecordBatch::try_new(
                sink_schema(),
                vec![
                    col(cuboid),
                    col(m.rows),
                    col(m.blocks.len() as u64),
                    col(m.bytes()),
                ],
            )?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            sink_schema(),
            futures::stream::once(written),
        )))
    }
}

/// How to build cuboids as plans: how many partitions aggregate, the memory of each, where
/// they spill, and the rows of an emitted batch.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub partitions: usize,
    pub memory_bytes_per_partition: usize,
    pub spill_dir: PathBuf,
    pub batch_rows: usize,
}

/// The plan that aggregates cuboid `child` from the stored cuboid `parent` of `segments`
/// (one segment: a child cuboid of a build; several: a merge, with `parent == child`). Its
/// output is the child's rows in rowkey order, dimensions then states, as they are stored
/// writes them.
pub fn child_cuboid_plan(
    layout: &CubeLayout,
    store: Arc<dyn SegmentStore>,
    segments: Vec<String>,
    child: CuboidId,
    parent: CuboidId,
    opts: &PlanOptions,
) -> Result<Arc<dyn ExecutionPlan>> {
    let parent_cols = layout.cuboid_columns(parent);
    let child_cols = layout.cuboid_columns(child);
    let mut columns = Vec::with_capacity(child_cols.len() + layout.measures.len());
    for c in &child_cols {
        columns.push(parent_cols.iter().position(|p| p == c).ok_or_else(|| {
            Error::invalid(
                "cuboid plan",
                format!("cuboid {parent} does not cover cuboid {child}"),
            )
        })?);
    }
    columns.extend((0..layout.measures.len()).map(|m| parent_cols.len() + m));
    let mut fields = super::dim_fields(layout, child);
    fields.extend(
        layout
            .measures
            .iter()
            .map(|m| Field::new(&m.name, m.state.data_type(), true)),
    );
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
    let dims = child_cols.len();
    let segments_read = segments.len();
    let scan: Arc<dyn ExecutionPlan> = Arc::new(StoredCuboidExec::new(
        store,
        segments,
        parent,
        columns,
        schema.clone(),
    ));
    let inputs = (0..layout.measures.len()).map(|m| Some(dims + m)).collect();
    // One parent's blocks arrive in its rowkey order, so sorted on the dimensions the child's
    // rowkey starts with too; several segments' blocks (a merge) are sorted each on its own.
    let sorted_prefix = if segments_read == 1 {
        child_cols
            .iter()
            .zip(&parent_cols)
            .take_while(|(c, p)| c == p)
            .count()
    } else {
        0
    };
    aggregated(layout, scan, dims, true, inputs, sorted_prefix, opts)
}

/// The plan that aggregates the base cuboid from the flat table: `flat` is the physical plan
/// of [`super::source::flat_table_sql`] (dimensions in rowkey order, then one input column
/// per measure that has one). Values of measures on a global dictionary become their ids
/// (the dictionaries must already hold every value). The output is the base cuboid's rows in
/// rowkey order, as they are stored.
pub fn base_cuboid_plan(
    layout: &CubeLayout,
    store: Arc<dyn SegmentStore>,
    flat: Arc<dyn ExecutionPlan>,
    opts: &PlanOptions,
) -> Result<Arc<dyn ExecutionPlan>> {
    let dims = layout.rowkey.len();
    let mut inputs = Vec::with_capacity(layout.measures.len());
    let mut dict_columns = Vec::new();
    let mut next = dims;
    for m in &layout.measures {
        inputs.push(m.input.as_ref().map(|_| {
            next += 1;
            next - 1
        }));
        if let (Some(i), Some(name)) = (
            inputs.last().copied().flatten(),
            measure_dict_name(layout, m),
        ) {
            dict_columns.push((i, name));
        }
    }
    if flat.schema().fields().len() != next {
        return Err(Error::invalid(
            "base cuboid plan",
            format!(
                "the flat table has {} columns, the cube needs {next}",
                flat.schema().fields().len()
            ),
        ));
    }
    let input: Arc<dyn ExecutionPlan> = if dict_columns.is_empty() {
        flat
    } else {
        Arc::new(GlobalDictIdsExec::try_new(flat, dict_columns, store)?)
    };
    aggregated(layout, input, dims, false, inputs, 0, opts)
}

/// `input` (its first `dims` columns the dimensions) hash-partitioned by the dimensions over
/// `opts.partitions` (one partition without dimensions), each partition aggregated, merged in
/// rowkey order. `merge`: the inputs are stored states; `inputs[m]`: measure `m`'s column;
/// `sorted_prefix`: how many leading dimensions the input (one partition) is sorted on, kept
/// only when no repartition reorders it.
fn aggregated(
    layout: &CubeLayout,
    input: Arc<dyn ExecutionPlan>,
    dims: usize,
    merge: bool,
    inputs: Vec<Option<usize>>,
    sorted_prefix: usize,
    opts: &PlanOptions,
) -> Result<Arc<dyn ExecutionPlan>> {
    let partitions = opts.partitions.max(1);
    let sorted_prefix = if input.output_partitioning().partition_count() == 1 && partitions == 1 {
        sorted_prefix.min(dims)
    } else {
        0
    };
    let input: Arc<dyn ExecutionPlan> = if dims > 0 && partitions > 1 {
        let schema = input.schema();
        let keys = (0..dims)
            .map(|i| Arc::new(Column::new(schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>)
            .collect();
        Arc::new(RepartitionExec::try_new(
            input,
            Partitioning::Hash(keys, partitions),
        )?)
    } else if input.output_partitioning().partition_count() > 1 {
        Arc::new(datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec::new(input))
    } else {
        input
    };
    let spec = AggregateSpec {
        merge,
        dims,
        measures: super::measure_specs(layout)
            .into_iter()
            .map(|(name, kind)| (name, state_kind_name(kind)))
            .collect(),
        inputs,
        memory_bytes: opts.memory_bytes_per_partition,
        batch_rows: opts.batch_rows.max(1),
        sorted_prefix,
    };
    sorted(
        CuboidAggregateExec::try_new(input, spec, opts.spill_dir.clone())?,
        dims,
    )
}

/// `agg`'s partitions merged in rowkey order (one partition needs no merge).
fn sorted(agg: CuboidAggregateExec, dims: usize) -> Result<Arc<dyn ExecutionPlan>> {
    let agg = Arc::new(agg);
    if agg.properties.output_partitioning().partition_count() == 1 {
        return Ok(agg);
    }
    let ordering = rowkey_ordering(&agg.schema(), dims)
        .ok_or_else(|| Error::invalid("cuboid plan", "no rowkey ordering"))?;
    Ok(Arc::new(SortPreservingMergeExec::new(ordering, agg)))
}

/// The text form of a state kind in a serialised plan.
pub fn state_kind_name(k: StateKind) -> String {
    match k {
        StateKind::SumInt => "sum_int".into(),
        StateKind::SumFloat => "sum_float".into(),
        StateKind::Count => "count".into(),
        StateKind::MinInt => "min_int".into(),
        StateKind::MaxInt => "max_int".into(),
        StateKind::MinFloat => "min_float".into(),
        StateKind::MaxFloat => "max_float".into(),
        StateKind::Hll(p) => format!("hll:{p}"),
        StateKind::Bitmap => "bitmap".into(),
        StateKind::TopN(n) => format!("top_n:{n}"),
        StateKind::Percentile(c) => format!("percentile:{c}"),
        StateKind::Extended => "extended".into(),
    }
}

/// The inverse of [`state_kind_name`].
pub fn parse_state_kind(s: &str) -> Result<StateKind> {
    let bad = || Error::invalid("plan measure state", s);
    let (name, arg) = match s.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (s, None),
    };
    Ok(match (name, arg) {
        ("sum_int", None) => StateKind::SumInt,
        ("sum_float", None) => StateKind::SumFloat,
        ("count", None) => StateKind::Count,
        ("min_int", None) => StateKind::MinInt,
        ("max_int", None) => StateKind::MaxInt,
        ("min_float", None) => StateKind::MinFloat,
        ("max_float", None) => StateKind::MaxFloat,
        ("hll", Some(p)) => StateKind::Hll(p.parse().map_err(|_| bad())?),
        ("bitmap", None) => StateKind::Bitmap,
        ("top_n", Some(n)) => StateKind::TopN(n.parse().map_err(|_| bad())?),
        ("percentile", Some(c)) => StateKind::Percentile(c.parse().map_err(|_| bad())?),
        ("extended", None) => StateKind::Extended,
        _ => return Err(bad()),
    })
}

/// Serialises Qilin's build nodes inside DataFusion's plan protobuf. Decoding binds them to
/// the decoding machine's segment store and spill directory: a plan carries segment ids and
/// cuboid ids, never paths of the machine that made it.
#[derive(Debug, Clone)]
pub struct BuildPlanCodec {
    store: Arc<dyn SegmentStore>,
    spill_dir: PathBuf,
}

/// The first byte of an encoded node: which node it is.
const STORED_CUBOID: u8 = 1;
const CUBOID_AGGREGATE: u8 = 2;
const GLOBAL_DICT_IDS: u8 = 3;
const CUBOID_SINK: u8 = 4;

impl BuildPlanCodec {
    pub fn new(store: Arc<dyn SegmentStore>, spill_dir: PathBuf) -> Self {
        BuildPlanCodec { store, spill_dir }
    }

    /// Whether `node` is one of the nodes this codec encodes.
    pub fn handles(node: &dyn ExecutionPlan) -> bool {
        node.is::<StoredCuboidExec>()
            || node.is::<CuboidAggregateExec>()
            || node.is::<GlobalDictIdsExec>()
            || node.is::<CuboidSinkExec>()
    }
}

fn json_error(e: serde_json::Error) -> DataFusionError {
    DataFusionError::Internal(format!("Qilin plan node: {e}"))
}

impl PhysicalExtensionCodec for BuildPlanCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (&kind, rest) = buf
            .split_first()
            .ok_or_else(|| DataFusionError::Internal("empty Qilin plan node".into()))?;
        match kind {
            STORED_CUBOID => {
                let (spec, schema): (StoredCuboidSpec, _) = decode_with_schema(rest)?;
                Ok(Arc::new(StoredCuboidExec::from_spec(
                    spec,
                    schema,
                    self.store.clone(),
                )))
            }
            CUBOID_AGGREGATE => {
                let spec: AggregateSpec = serde_json::from_slice(rest).map_err(json_error)?;
                let [input] = inputs else {
                    return Err(DataFusionError::Internal(
                        "CuboidAggregateExec has one input".into(),
                    ));
                };
                Ok(Arc::new(
                    CuboidAggregateExec::try_new(input.clone(), spec, self.spill_dir.clone())
                        .map_err(Error::into_datafusion)?,
                ))
            }
            GLOBAL_DICT_IDS => {
                let columns: Vec<(usize, String)> =
                    serde_json::from_slice(rest).map_err(json_error)?;
                let [input] = inputs else {
                    return Err(DataFusionError::Internal(
                        "GlobalDictIdsExec has one input".into(),
                    ));
                };
                Ok(Arc::new(
                    GlobalDictIdsExec::try_new(input.clone(), columns, self.store.clone())
                        .map_err(Error::into_datafusion)?,
                ))
            }
            CUBOID_SINK => {
                let spec: SinkSpec = serde_json::from_slice(rest).map_err(json_error)?;
                let [input] = inputs else {
                    return Err(DataFusionError::Internal(
                        "CuboidSinkExec has one input".into(),
                    ));
                };
                Ok(Arc::new(
                    CuboidSinkExec::from_spec(input.clone(), spec, self.store.clone())
                        .map_err(Error::into_datafusion)?,
                ))
            }
            k => Err(DataFusionError::Internal(format!(
                "unknown Qilin plan node kind {k}"
            ))),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        if let Some(n) = node.downcast_ref::<StoredCuboidExec>() {
            buf.push(STORED_CUBOID);
            encode_with_schema(&n.spec, &n.schema, buf)
        } else if let Some(n) = node.downcast_ref::<CuboidAggregateExec>() {
            buf.push(CUBOID_AGGREGATE);
            serde_json::to_writer(buf, &n.spec).map_err(json_error)
        } else if let Some(n) = node.downcast_ref::<CuboidSinkExec>() {
            buf.push(CUBOID_SINK);
            serde_json::to_writer(buf, &n.spec).map_err(json_error)
        } else if let Some(n) = node.downcast_ref::<GlobalDictIdsExec>() {
            buf.push(GLOBAL_DICT_IDS);
            serde_json::to_writer(buf, &n.columns).map_err(json_error)
        } else {
            Err(DataFusionError::NotImplemented(format!(
                "{} is not a Qilin build node",
                node.name()
            )))
        }
    }
}

/// `spec` as JSON behind its length, then the schema in Arrow IPC.
fn encode_with_schema<T: Serialize>(
    spec: &T,
    schema: &SchemaRef,
    buf: &mut Vec<u8>,
) -> DfResult<()> {
    let json = serde_json::to_vec(spec).map_err(json_error)?;
    buf.extend_from_slice(&(json.len() as u32).to_le_bytes());
    buf.extend_from_slice(&json);
    let mut w = datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut *buf, schema)?;
    w.finish()?;
    Ok(())
}

fn decode_with_schema<T: for<'a> Deserialize<'a>>(buf: &[u8]) -> DfResult<(T, SchemaRef)> {
    let bad = || DataFusionError::Internal("truncated Qilin plan node".into());
    let len = u32::from_le_bytes(
        buf.get(..4)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    ) as usize;
    let json = buf.get(4..4 + len).ok_or_else(bad)?;
    let spec = serde_json::from_slice(json).map_err(json_error)?;
    let reader = datafusion::arrow::ipc::reader::StreamReader::try_new(&buf[4 + len..], None)?;
    Ok((spec, reader.schema()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray, Int64Array};
    use datafusion::arrow::compute::concat_batches;
    use datafusion::arrow::datatypes::{Int64Type, UInt64Type};
    use datafusion::prelude::SessionContext;
    use datafusion_proto::bytes::{
        physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
    };

    use crate::build::extend::tests::layout_with;
    use crate::model::desc::{MeasureDesc, MeasureFunction};
    use crate::storage::LocalSegmentStore;

    /// A child cuboid aggregated by its plan has the same rows and state bytes whatever the
    /// partitions and the budget (spilling or not), locally and after a trip through
    /// DataFusion's plan protobuf with the codec; its counts and sums are those of the flat
    /// rows; its sink writes the same blocks and manifest.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn child_cuboid_plans_agree_whatever_their_partitions_and_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn SegmentStore> =
            Arc::new(LocalSegmentStore::open(dir.path().join("store")).unwrap());
        let layout = layout_with(vec![
            MeasureDesc::simple("n", MeasureFunction::Count, None, None),
            MeasureDesc::simple("s", MeasureFunction::Sum, Some("v"), None),
            MeasureDesc::simple("mx", MeasureFunction::Max, Some("v"), None),
            MeasureDesc::simple("u", MeasureFunction::CountDistinct, Some("v"), Some("hll")),
            MeasureDesc::simple(
                "e",
                MeasureFunction::CountDistinct,
                Some("v"),
                Some("bitmap"),
            ),
        ]);
        // The base cuboid (a, b, c) of 5,000 flat rows, some with NULL dimensions.
        let rows = 5_000i64;
        let col = |f: &dyn Fn(i64) -> Option<i64>| {
            Arc::new((0..rows).map(f).collect::<Int64Array>()) as ArrayRef
        };
        let v = |i: i64| (i * 7919) % 1000;
        let vs = col(&|i| Some(v(i)));
        let segment = "5e6";
        crate::build::runner::tests::write_base(
            &layout,
            &store,
            segment,
            vec![
                col(&|i| (i % 13 != 0).then_some(i % 17)),
                col(&|i| Some(i % 29)),
                col(&|i| (i % 11 != 0).then_some(i % 5)),
                vs.clone(),
                vs.clone(),
                vs.clone(),
                vs,
            ],
            64,
        )
        .await;
        let plan_opts = |partitions, memory| PlanOptions {
            partitions,
            memory_bytes_per_partition: memory,
            spill_dir: dir.path().into(),
            batch_rows: 100,
        };
        let ctx = SessionContext::new();
        let run = |plan: Arc<dyn ExecutionPlan>| {
            let task = ctx.task_ctx();
            async move {
                let batches = datafusion::physical_plan::collect(plan, task)
                    .await
                    .unwrap();
                concat_batches(&batches[0].schema(), &batches).unwrap()
            }
        };
        for child in [0b101, 0b001, 0] {
            // The reference: one partition, no spilling.
            let want = run(child_cuboid_plan(
                &layout,
                store.clone(),
                vec![segment.into()],
                child,
                0b111,
                &plan_opts(1, 64 << 20),
            )
            .unwrap())
            .await;
            assert!(want.num_rows() > 0);
            let ints = |c: usize| want.column(c).as_primitive::<Int64Type>().values().to_vec();
            let ndims = child.count_ones() as usize;
            // Counts and sums against the flat rows.
            assert_eq!(ints(ndims).iter().sum::<i64>(), rows, "cuboid {child}");
            assert_eq!(
                ints(ndims + 1).iter().sum::<i64>(),
                (0..rows).map(v).sum::<i64>(),
                "cuboid {child}"
            );
            if child == 0b001 {
                // Cuboid (c): c = i % 5, NULL when i % 11 == 0, rowkey order (NULL last).
                let c = want.column(0).as_primitive::<Int64Type>();
                for (r, n) in ints(1).iter().enumerate() {
                    let key = c.is_valid(r).then(|| c.value(r));
                    let expected = (0..rows)
                        .filter(|i| (i % 11 != 0).then_some(i % 5) == key)
                        .count() as i64;
                    assert_eq!(*n, expected, "cuboid (c) row {r}");
                }
            }
            // 4 KiB per partition spills runs; 64 MiB does not. One partition streams the
            // child (a, c) on its parent's sorted prefix (a), spilling within a value of a.
            for (partitions, memory) in [(3, 4 << 10), (3, 64 << 20), (1, 4 << 10)] {
                let runs_before = crate::build::spill::runs_written();
                let plan = child_cuboid_plan(
                    &layout,
                    store.clone(),
                    vec![segment.into()],
                    child,
                    0b111,
                    &plan_opts(partitions, memory),
                )
                .unwrap();
                let shown = datafusion::physical_plan::displayable(plan.as_ref())
                    .indent(false)
                    .to_string();
                assert_eq!(
                    shown.contains("sorted_prefix=1"),
                    child == 0b101 && partitions == 1,
                    "{shown}"
                );
                let codec = BuildPlanCodec::new(store.clone(), dir.path().into());
                let bytes =
                    physical_plan_to_bytes_with_extension_codec(plan.clone(), &codec).unwrap();
                let decoded =
                    physical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), &codec)
                        .unwrap();
                for p in [plan, decoded] {
                    let got = run(p).await;
                    assert_eq!(got.num_rows(), want.num_rows(), "cuboid {child}");
                    assert_eq!(
                        got.columns(),
                        want.columns(),
                        "cuboid {child}, memory {memory}"
                    );
                }
                // The small budget spills (but not the one-group apex); the large one does
                // not. Other tests of this process spill too: only "spilled" is certain.
                if memory < 1 << 20 && child != 0 && partitions > 1 {
                    assert!(
                        crate::build::spill::runs_written() > runs_before,
                        "cuboid {child}"
                    );
                }
            }
        }
        // The sink writes the same blocks and manifest from one partition or three.
        for child in [0b101, 0b001, 0] {
            let mut manifests = Vec::new();
            for (target, partitions) in [("7e7", 1), ("7e9", 3)] {
                let plan = child_cuboid_plan(
                    &layout,
                    store.clone(),
                    vec![segment.into()],
                    child,
                    0b111,
                    &plan_opts(partitions, 64 << 20),
                )
                .unwrap();
                let sink = Arc::new(
                    CuboidSinkExec::try_new(
                        plan,
                        store.clone(),
                        target,
                        child,
                        child.count_ones() as usize,
                        64,
                    )
                    .unwrap(),
                );
                let out = run(sink).await;
                let m =
                    crate::storage::block::read_manifest(store.as_ref(), target, child).unwrap();
                let rows = out.column(1).as_primitive::<UInt64Type>();
                assert_eq!(rows.value(0), m.rows);
                manifests.push(m);
            }
            assert_eq!(manifests[0], manifests[1]);
            if child == 0b101 {
                assert!(manifests[0].blocks.len() > 1, "several blocks compared");
            }
            for b in 0..manifests[0].blocks.len() as u32 {
                assert_eq!(
                    store.get_block("7e7", child, b).unwrap(),
                    store.get_block("7e9", child, b).unwrap()
                );
            }
        }
        // A parent whose tenth block is damaged fails a streaming child (one partition, the
        // sorted prefix a) part-way, after the groups of whole values of a may have gone to
        // the sink.
        let manifest = store.get_manifest(segment, 0b111).unwrap();
        let blocks = crate::storage::block::read_manifest(store.as_ref(), segment, 0b111)
            .unwrap()
            .blocks
            .len() as u32;
        assert!(blocks > 10, "{blocks} blocks");
        for b in 0..blocks {
            let mut data = store.get_block(segment, 0b111, b).unwrap();
            if b == 9 {
                let last = data.len() - 1;
                data[last] ^= 0xff;
            }
            store.put_block("6e6", 0b111, b, &data).unwrap();
        }
        store.put_manifest("6e6", 0b111, &manifest).unwrap();
        // A failed input leaves no manifest: the cuboid was not written. A missing parent
        // fails before anything is read; the damaged one part-way.
        for (source, target, partitions, block_rows) in
            [("dead", "7e8", 3, 64), ("6e6", "7e6", 1, 8)]
        {
            let plan = child_cuboid_plan(
                &layout,
                store.clone(),
                vec![source.into()],
                0b101,
                0b111,
                &plan_opts(partitions, 64 << 20),
            )
            .unwrap();
            let sink = Arc::new(
                CuboidSinkExec::try_new(plan, store.clone(), target, 0b101, 2, block_rows).unwrap(),
            );
            let e = datafusion::physical_plan::collect(sink, ctx.task_ctx())
                .await
                .unwrap_err()
                .to_string();
            if source == "6e6" {
                assert!(e.contains("checksum") || e.contains("corrupt"), "{e}");
            }
            assert!(
                crate::storage::block::read_manifest(store.as_ref(), target, 0b101).is_err(),
                "{source}"
            );
        }
        // A cuboid the parent does not cover is refused when the plan is made.
        let e = child_cuboid_plan(
            &layout,
            store.clone(),
            vec![segment.into()],
            0b111,
            0b101,
            &PlanOptions {
                partitions: 2,
                memory_bytes_per_partition: 1 << 20,
                spill_dir: dir.path().into(),
                batch_rows: 100,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("does not cover"), "{e}");
    }

    #[test]
    fn state_kinds_round_trip_and_bad_names_are_refused() {
        for k in [
            StateKind::SumInt,
            StateKind::SumFloat,
            StateKind::Count,
            StateKind::MinInt,
            StateKind::MaxInt,
            StateKind::MinFloat,
            StateKind::MaxFloat,
            StateKind::Hll(14),
            StateKind::Bitmap,
            StateKind::TopN(100),
            StateKind::Percentile(200),
            StateKind::Extended,
        ] {
            assert_eq!(parse_state_kind(&state_kind_name(k)).unwrap(), k);
        }
        for bad in ["", "hll", "hll:x", "top_n:", "sum", "count:1"] {
            assert!(parse_state_kind(bad).is_err(), "{bad}");
        }
    }
}
