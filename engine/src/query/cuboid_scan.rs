//! The cuboid as a DataFusion table: [`CuboidTable`] is the `TableProvider` a rewritten query
//! scans, over one cuboid of a cube's READY segments. Planning does no I/O: the provider
//! turns the pushed filters into a [`PruningPredicate`] and accepts them as `Inexact` (the
//! `Filter` above it stays, so results never depend on pruning), except the filters the scan
//! applies to every block's rows itself: on one string dimension through the block's
//! dictionary ([`super::string_filter`]), on stored non-string dimensions row by row
//! ([`super::dimension_filter`]), on one inner lookup's columns through its snapshot rows
//! ([`super::lookup`]). [`CuboidScanExec`] reads
//! the manifests when it executes, keeps the blocks the predicate cannot rule out, spreads
//! them over its partitions, and decodes only the projected columns of each, a few blocks
//! ahead of the consumer on tokio's blocking pool. A cached plan therefore holds segment ids
//! and a predicate, never a block list.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::compute::{filter_record_batch, take, FilterBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DataFusionError};
use datafusion::datasource::TableType;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::BinaryExpr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::pruning::{PruningPredicate, PruningPredicateBuilder};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};

use super::dimension_filter::{dimension_filter_columns, DimensionFilter};
use super::lookup::{derived_field, found_and_passing, DerivedLookup, LookupFilter};
use super::segments::SegmentReader;
use super::string_filter::{allowed, string_filter_column, StringFilter};
use super::string_ids::StringIds;
use crate::error::{Error, Result};
use crate::model::{CubeLayout, CuboidId};
use crate::storage::BlockMeta;

/// One cuboid over a set of segments.
#[derive(Debug, Clone)]
pub(crate) struct CuboidTable {
    /// Unique per table made (EXPLAIN finds a table's scan in the physical plan by it).
    id: u64,
    /// Dimension columns first (rowkey order), then one column per measure state; string
    /// dimensions read as ids (`string_ids`) are `UInt32` here.
    schema: SchemaRef,
    /// The columns as stored (what block statistics describe).
    stored: SchemaRef,
    /// String dimension columns the scan returns as ids of these numberings.
    string_ids: Arc<[(usize, Arc<StringIds>)]>,
    /// Filters on one string dimension each (unqualified, over its strings) that every scan
    /// applies through the blocks' dictionaries: how a column returned as ids is filtered.
    string_filters: Arc<[Expr]>,
    dims: usize,
    cuboid: CuboidId,
    segments: Arc<[String]>,
    reader: Arc<dyn SegmentReader>,
    /// Filters on derived columns that prune through a foreign key (see [`DerivedFilter`]).
    derived: Arc<[DerivedFilter]>,
    /// Lookups whose columns the scan derives (see [`super::lookup`]).
    lookups: Arc<[DerivedLookup]>,
    /// For each schema column past the stored ones: its lookup and snapshot column.
    derived_columns: Arc<[(usize, usize)]>,
    /// Stored rows over all segments, when the segment metadata says (no I/O at planning):
    /// the scan's statistics, so that a join builds its hash table on the smaller side.
    rows: Option<u64>,
}

/// A filter on columns of a lookup table the cube derives through a foreign key (for example
/// `d_month = 'May'` on `dates`, derived through `lo_orderdate`). The cuboid holds the key,
/// not the filtered column: when the scan runs, the key values whose lookup rows pass the
/// filter become key ranges, and blocks whose key range misses all of them are skipped.
/// Only for inner joins on one key column (a left join keeps rows without a lookup row).
#[derive(Debug, Clone)]
pub(crate) struct DerivedFilter {
    /// The lookup's snapshot.
    pub lookup: CuboidTable,
    /// Over the lookup's unqualified columns; the `Filter` above the join stays.
    pub filter: Expr,
    pub primary_key: String,
    /// The cuboid's dimension column holding the key.
    pub foreign_key: String,
}

impl CuboidTable {
    pub fn new(
        layout: &CubeLayout,
        cuboid: CuboidId,
        segments: Vec<String>,
        reader: Arc<dyn SegmentReader>,
    ) -> Self {
        let mut fields: Vec<Field> = layout
            .cuboid_columns(cuboid)
            .into_iter()
            .map(|i| {
                let r = &layout.rowkey[i];
                Field::new(&r.name, r.source.data_type.clone(), true)
            })
            .collect();
        let dims = fields.len();
        fields.extend(
            layout
                .measures
                .iter()
                .map(|m| Field::new(&m.name, m.state.data_type(), true)),
        );
        Self::with_schema(
            Arc::new(Schema::new(fields)),
            dims,
            cuboid,
            segments,
            reader,
        )
    }

    /// A cuboid whose stored blocks have `schema`, the first `dims` columns dimensions.
    pub fn with_schema(
        schema: SchemaRef,
        dims: usize,
        cuboid: CuboidId,
        segments: Vec<String>,
        reader: Arc<dyn SegmentReader>,
    ) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        CuboidTable {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            stored: schema.clone(),
            schema,
            string_ids: Arc::new([]),
            string_filters: Arc::new([]),
            dims,
            cuboid,
            segments: segments.into(),
            reader,
            derived: Arc::new([]),
            lookups: Arc::new([]),
            derived_columns: Arc::new([]),
            rows: None,
        }
    }

    /// The table with its stored row count known.
    pub fn with_rows(mut self, rows: u64) -> Self {
        self.rows = Some(rows);
        self
    }

    /// The table also pruning by `filters` on derived columns.
    pub fn with_derived_filters(mut self, filters: Vec<DerivedFilter>) -> Self {
        self.derived = filters.into();
        self
    }

    /// The table returning string dimension columns `ids` (column index, numbering) as ids
    /// of their values, `UInt32`, for grouping (see [`super::string_ids`]). A filter above
    /// the scan would see ids: filter them with [`Self::with_string_filters`] instead.
    pub fn with_string_ids(mut self, ids: Vec<(usize, Arc<StringIds>)>) -> Self {
        self.string_ids = ids.into();
        self.rebuild_schema();
        self
    }

    /// The table applying `filters` in every scan (and pruning by them): each unqualified,
    /// on one string dimension, of the form [`string_filter_column`] accepts over the
    /// column's strings, also when the scan returns the column as ids.
    pub fn with_string_filters(mut self, filters: Vec<Expr>) -> Result<Self> {
        for f in &filters {
            if string_filter_column(&self.stored, self.dims, f).is_none() {
                let message = format!("not a filter on one string dimension: {f}");
                return Err(DataFusionError::Internal(message).into());
            }
        }
        self.string_filters = filters.into();
        Ok(self)
    }

    /// The table also returning every column of each of `lookups`' snapshots, named by
    /// [`derived_field`], after its stored columns. Their keys must suit
    /// ([`super::lookup::lookup_keys`]).
    pub fn with_lookups(mut self, lookups: Vec<DerivedLookup>) -> Self {
        self.derived_columns = lookups
            .iter()
            .enumerate()
            .flat_map(|(l, lookup)| (0..lookup.snapshot.schema.fields().len()).map(move |c| (l, c)))
            .collect();
        self.lookups = lookups.into();
        self.rebuild_schema();
        self
    }

    /// The schema: the stored columns (string ids as `UInt32`), then the derived ones.
    fn rebuild_schema(&mut self) {
        let mut fields: Vec<Field> = self
            .stored
            .fields()
            .iter()
            .enumerate()
            .map(
                |(i, f)| match self.string_ids.iter().any(|(c, _)| *c == i) {
                    true => Field::new(f.name(), DataType::UInt32, true),
                    false => f.as_ref().clone(),
                },
            )
            .collect();
        for &(l, c) in self.derived_columns.iter() {
            let f = self.lookups[l].snapshot.stored.field(c);
            fields.push(Field::new(
                derived_field(l, f.name()),
                f.data_type().clone(),
                true,
            ));
        }
        self.schema = Arc::new(Schema::new(fields));
    }

    /// The filters every scan applies itself (see [`Self::with_string_filters`]).
    pub fn string_filters(&self) -> &[Expr] {
        &self.string_filters
    }

    /// The schema with the columns returned as ids in their stored type (`Utf8`).
    fn stored_types(&self) -> SchemaRef {
        if self.string_ids.is_empty() {
            return self.schema.clone();
        }
        let mut fields: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for (c, _) in self.string_ids.iter() {
            fields[*c] = self.stored.field(*c).clone();
        }
        Arc::new(Schema::new(fields))
    }

    /// Every row of every block, unfiltered (a lookup snapshot's, say).
    pub fn read_all(&self) -> Result<Vec<RecordBatch>> {
        let all: Vec<usize> = (0..self.schema.fields().len()).collect();
        let (blocks, _) = select(self, None, &[])?;
        blocks
            .iter()
            .map(|b| read_block(self, &all, &self.schema, b, &RowFilters::default()))
            .collect()
    }

    /// The lookup whose columns alone `filter` (unqualified) reads, and `filter` over the
    /// lookup's snapshot columns, when the scan can apply it exactly: an inner lookup, and a
    /// deterministic filter that cannot fail (see [`super::lookup::LookupFilter`]).
    fn lookup_filter(&self, filter: &Expr) -> Option<(usize, Expr)> {
        let stored = self.stored.fields().len();
        let mut lookup = None;
        for c in filter.column_refs() {
            let i = self.schema.index_of(&c.name).ok()?.checked_sub(stored)?;
            let l = self.derived_columns[i].0;
            if lookup.is_some_and(|other| other != l) {
                return None;
            }
            lookup = Some(l);
        }
        let l = lookup?;
        if !self.lookups[l].inner
            || filter.is_volatile()
            || filter.exists(|e| Ok(!allowed(e))).unwrap_or(true)
        {
            return None;
        }
        let snapshot = self.lookups[l].snapshot.schema_ref();
        let over_snapshot = filter
            .clone()
            .transform(|e| match e {
                Expr::Column(c) => {
                    let i = self
                        .schema
                        .index_of(&c.name)
                        .map_err(DataFusionError::from)?
                        - stored;
                    let name = snapshot.field(self.derived_columns[i].1).name();
                    Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
                        name,
                    ))))
                }
                e => Ok(Transformed::no(e)),
            })
            .ok()?
            .data;
        Some((l, over_snapshot))
    }

    /// What the table reads: its segments and storage id.
    pub fn storage_key(&self) -> String {
        format!("{}/{}", self.segments.join(","), self.cuboid)
    }

    pub fn reader(&self) -> &Arc<dyn SegmentReader> {
        &self.reader
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn schema_ref(&self) -> &SchemaRef {
        &self.schema
    }

    /// The storage id it reads (a cuboid, or a reserved id for snapshots and table indexes).
    pub fn cuboid(&self) -> CuboidId {
        self.cuboid
    }

    fn dimension_fields(&self) -> Vec<Field> {
        self.stored.fields()[..self.dims]
            .iter()
            .map(|f| f.as_ref().clone())
            .collect()
    }

    /// The scan of every block, unpruned (what a query without filters reads).
    pub fn scan_all(&self) -> CuboidScanExec {
        CuboidScanExec::new(self.clone(), None, None, 1)
    }
}

#[async_trait::async_trait]
impl TableProvider for CuboidTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Every filter helps pruning. Filters the scan applies itself are exact: on one string
    /// dimension ([`super::string_filter`]), on stored non-string dimensions
    /// ([`super::dimension_filter`]), on one inner lookup's columns ([`super::lookup`]). For
    /// the others the `Filter` stays above.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::common::Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                let f = unqualified(f);
                match string_filter_column(&self.schema, self.dims, &f).is_some()
                    || dimension_filter_columns(&self.schema, &self.stored, self.dims, &f).is_some()
                    || self.lookup_filter(&f).is_some()
                {
                    true => TableProviderFilterPushDown::Exact,
                    false => TableProviderFilterPushDown::Inexact,
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let filters: Vec<Expr> = filters.iter().map(unqualified).collect();
        // DataFusion's filters are typed by the schema (ids as `UInt32`), the table's own
        // string filters by the stored types: each planned over its own, pruning over the
        // stored types, which block statistics describe.
        let stored_types = self.stored_types();
        let mut predicates: Vec<Arc<dyn PhysicalExpr>> = Vec::new();
        for (exprs, schema) in [
            (filters.clone(), &self.schema),
            (self.string_filters.to_vec(), &stored_types),
        ] {
            if let Some(predicate) = conjunction(exprs) {
                let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
                predicates.push(state.create_physical_expr(predicate, &df_schema)?);
            }
        }
        // (Without string filters of its own, exactly as DataFusion typed its filters.)
        let pruning_schema = match self.string_filters.is_empty() {
            true => self.schema.clone(),
            false => stored_types.clone(),
        };
        let pruning = predicates
            .into_iter()
            .reduce(|a, b| Arc::new(BinaryExpr::new(a, Operator::And, b)))
            .and_then(|predicate| {
                // Statistics exist for dimension columns only; measure columns read as unknown.
                PruningPredicateBuilder::new()
                    .with_file_schema(pruning_schema)
                    .build(predicate)
            });
        let mut derived = Vec::new();
        for d in self.derived.iter() {
            if let Some(keys) = DerivedKeys::plan(self, d, state)? {
                derived.push(keys);
            }
        }
        // The filters reported exact must be applied here, every one of them.
        let mut string_filters = Vec::new();
        let own = self.string_filters.iter().map(|f| (f, &stored_types));
        for (f, schema) in filters.iter().map(|f| (f, &self.schema)).chain(own) {
            if let Some(column) = string_filter_column(schema, self.dims, f) {
                let planned =
                    StringFilter::plan(schema, column, f, state).map_err(Error::into_datafusion)?;
                string_filters.push(planned);
            }
        }
        let mut dimension_filters = Vec::new();
        for f in &filters {
            if let Some(columns) =
                dimension_filter_columns(&self.schema, &self.stored, self.dims, f)
            {
                let planned = DimensionFilter::plan(&self.stored, columns, f, state)
                    .map_err(Error::into_datafusion)?;
                dimension_filters.push(planned);
            }
        }
        let mut lookup_filters = Vec::new();
        for f in &filters {
            if let Some((l, over_snapshot)) = self.lookup_filter(f) {
                let snapshot = self.lookups[l].snapshot.schema_ref();
                let planned = LookupFilter::plan(l, snapshot, &over_snapshot, state)
                    .map_err(Error::into_datafusion)?;
                lookup_filters.push(planned);
            }
        }
        let partitions = state.config().target_partitions().max(1);
        let mut scan = CuboidScanExec::new(self.clone(), projection.cloned(), pruning, partitions);
        scan.derived = derived.into();
        scan.filters = RowFilters {
            strings: string_filters.into(),
            dimensions: dimension_filters.into(),
            lookups: lookup_filters.into(),
        };
        // DataFusion passes a limit only when no filter stays above the scan: any `limit`
        // rows will do, so a partition stops reading blocks once it has them.
        scan.limit = limit;
        Ok(Arc::new(scan))
    }
}

/// The table's own columns carry the alias of the scan in the plan; the provider sees its
/// schema unqualified.
fn unqualified(e: &Expr) -> Expr {
    e.clone()
        .transform(|x| match x {
            Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(
                Column::new_unqualified(c.name),
            ))),
            x => Ok(Transformed::no(x)),
        })
        .map(|t| t.data)
        .unwrap_or_else(|_| e.clone())
}

/// Filters the scan applies to every block's rows itself (exact: no `Filter` above repeats
/// them).
#[derive(Debug, Clone, Default)]
struct RowFilters {
    /// On one string dimension each, through the block's dictionary.
    strings: Arc<[StringFilter]>,
    /// On stored non-string dimensions, row by row before anything else is taken.
    dimensions: Arc<[DimensionFilter]>,
    /// On the columns of one inner lookup each, through the snapshot rows.
    lookups: Arc<[LookupFilter]>,
}

/// A block chosen for reading.
#[derive(Debug, Clone)]
struct BlockRef {
    segment: usize,
    block: u32,
    meta: BlockMeta,
}

/// Blocks kept by the pruning predicate, and how many there were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlocksRead {
    pub read: usize,
    pub total: usize,
}

/// Reads the blocks of a cuboid that may hold matching rows, lazily, spread round-robin over
/// `partitions` output partitions.
#[derive(Debug)]
pub(crate) struct CuboidScanExec {
    table: CuboidTable,
    projection: Option<Vec<usize>>,
    pruning: Option<Arc<PruningPredicate>>,
    /// Pruning through foreign keys, resolved against the lookup snapshots when it runs.
    derived: Arc<[DerivedKeys]>,
    filters: RowFilters,
    partitions: usize,
    /// Rows after which each partition stops reading blocks.
    limit: Option<usize>,
    output_schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl CuboidScanExec {
    fn new(
        table: CuboidTable,
        projection: Option<Vec<usize>>,
        pruning: Option<Arc<PruningPredicate>>,
        partitions: usize,
    ) -> Self {
        let output_schema = match &projection {
            Some(p) => Arc::new(
                table
                    .schema
                    .project(p)
                    .expect("projection of the table's own schema"),
            ),
            None => table.schema.clone(),
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(output_schema.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        CuboidScanExec {
            table,
            projection,
            pruning,
            derived: Arc::new([]),
            filters: RowFilters::default(),
            partitions,
            limit: None,
            output_schema,
            properties,
        }
    }

    /// How many blocks this scan reads of how many are stored (reads manifests, no blocks).
    pub fn blocks_read(&self) -> Result<BlocksRead> {
        let (selected, total) = select(&self.table, self.pruning.as_deref(), &self.derived)?;
        Ok(BlocksRead {
            read: selected.len(),
            total,
        })
    }

    /// The [`CuboidTable::id`] of the table this scan reads.
    pub fn table_id(&self) -> u64 {
        self.table.id
    }
}

/// Reads the manifests and prunes: the blocks to read, in segment and block order, and how
/// many blocks there are in all.
fn select(
    t: &CuboidTable,
    pruning: Option<&PruningPredicate>,
    derived: &[DerivedKeys],
) -> Result<(Vec<BlockRef>, usize)> {
    let dims = t.dimension_fields();
    let mut ranges = Vec::new();
    for d in derived {
        match d.predicate(t)? {
            KeyRanges::Any => {}
            // No lookup row passes the filter: no cuboid row joins one.
            KeyRanges::None => return Ok((Vec::new(), total_blocks(t)?)),
            KeyRanges::Ranges(p) => ranges.push(p),
        }
    }
    let mut selected = Vec::new();
    let mut total = 0;
    for (s, segment) in t.segments.iter().enumerate() {
        let manifest = t.reader.manifest(segment, t.cuboid)?;
        total += manifest.blocks.len();
        let mut keep = vec![true; manifest.blocks.len()];
        for p in pruning.into_iter().chain(ranges.iter()) {
            let stats = t.reader.block_stats(segment, t.cuboid, &dims)?;
            for (k, p) in keep.iter_mut().zip(p.prune(stats.as_ref())?) {
                *k &= p;
            }
        }
        for (i, (meta, keep)) in manifest.blocks.iter().zip(keep).enumerate() {
            if keep && meta.rows > 0 {
                selected.push(BlockRef {
                    segment: s,
                    block: i as u32,
                    meta: meta.clone(),
                });
            }
        }
    }
    Ok((selected, total))
}

impl DisplayAs for CuboidScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(
                    f,
                    "CuboidScanExec: cuboid={}, segments={}",
                    self.table.cuboid,
                    self.table.segments.len()
                )?;
                if let Some(p) = &self.pruning {
                    write!(f, ", pruning_predicate={}", p.predicate_expr())?;
                }
                for d in self.derived.iter() {
                    write!(
                        f,
                        ", derived_pruning={} through {}",
                        d.display, d.foreign_key
                    )?;
                }
                for s in self.filters.strings.iter() {
                    write!(f, ", filter={}", s.display())?;
                }
                for s in self.filters.dimensions.iter() {
                    write!(f, ", filter={}", s.display())?;
                }
                for s in self.filters.lookups.iter() {
                    write!(f, ", lookup_filter={}", s.display())?;
                }
                if let Some(l) = self.limit {
                    write!(f, ", limit={l}")?;
                }
                Ok(())
            }
            DisplayFormatType::TreeRender => write!(f, "cuboid={}", self.table.cuboid),
        }
    }
}

impl ExecutionPlan for CuboidScanExec {
    fn name(&self) -> &'static str {
        "CuboidScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<datafusion::common::Statistics>],
        args: &datafusion::physical_plan::statistics::StatisticsArgs,
    ) -> datafusion::common::Result<Arc<datafusion::common::Statistics>> {
        let mut stats = datafusion::common::Statistics::new_unknown(&self.output_schema);
        if let Some(rows) = self.table.rows {
            let rows = match args.partition() {
                Some(_) => rows.div_ceil(self.partitions as u64),
                None => rows,
            };
            // Inexact: pruning and the limit only ever read fewer.
            stats.num_rows = datafusion::common::stats::Precision::Inexact(rows as usize);
        }
        Ok(Arc::new(stats))
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::common::Result<TreeNodeRecursion>,
    ) -> datafusion::common::Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> datafusion::common::Result<SendableRecordBatchStream> {
        if partition >= self.partitions {
            return Err(DataFusionError::Internal(format!(
                "CuboidScanExec: partition {partition} of {}",
                self.partitions
            )));
        }
        let columns: Arc<[usize]> = match &self.projection {
            Some(p) => p.as_slice().into(),
            None => (0..self.table.schema.fields().len()).collect(),
        };
        let blocks = PartitionBlocks {
            table: self.table.clone(),
            columns,
            schema: self.output_schema.clone(),
            pending: None,
            in_flight: VecDeque::new(),
            read_blocks: 0,
            read_rows: 0,
            ready: VecDeque::new(),
            remaining: self.limit,
            scan: ScanPlan {
                pruning: self.pruning.clone(),
                derived: self.derived.clone(),
                filters: self.filters.clone(),
                partition,
                partitions: self.partitions,
            },
        };
        let stream = futures::stream::unfold(blocks, |mut b| async move {
            let next = b.next().await?;
            Some((next, b))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.output_schema.clone(),
            stream,
        )))
    }
}

/// What one partition of a scan needs to choose its blocks when first polled.
struct ScanPlan {
    pruning: Option<Arc<PruningPredicate>>,
    derived: Arc<[DerivedKeys]>,
    filters: RowFilters,
    partition: usize,
    partitions: usize,
}

/// Reads a partition has under way ahead of the batch it returns: decoding runs on tokio's
/// blocking pool while the partition's consumer (usually a partial aggregation) works on the
/// batches before, so decode and aggregation overlap on every core. Bounded: at most this
/// many reads (of [`blocks_per_read`] blocks each) wait per partition.
const READ_AHEAD: usize = 2;

/// Blocks the first read of a partition on the blocking pool decodes in turn, and the fewest
/// any read does. Each read costs two thread hand-offs; a selective filter leaves little work
/// per block (a base cuboid has ~730 blocks at SF 1), and one block per read spent a third of
/// such a query switching threads.
const MIN_BLOCKS_PER_READ: usize = 4;

/// The most blocks one read decodes.
const MAX_BLOCKS_PER_READ: usize = 64;

/// Rows a read aims to return: later reads take as many blocks as the partition's reads so
/// far needed per this many rows, so a scan whose filters pass few rows hands off a few
/// large reads instead of many small ones (`s_city IN (3 cities)` on the base cuboid spent a
/// fifth of its time in thread switches with four blocks per read).
const ROWS_PER_READ: usize = 4 * 8192;

/// The blocks of one partition, chosen when first polled and decoded ahead of the consumer.
struct PartitionBlocks {
    table: CuboidTable,
    /// The stored columns to decode (the scan's projection).
    columns: Arc<[usize]>,
    /// The output schema (the table's, projected).
    schema: SchemaRef,
    pending: Option<VecDeque<BlockRef>>,
    /// Reads under way, with how many blocks each decodes.
    in_flight: VecDeque<(usize, tokio::task::JoinHandle<Result<Vec<RecordBatch>>>)>,
    /// Blocks and rows the finished reads decoded and returned, for the size of the next.
    read_blocks: usize,
    read_rows: usize,
    /// Batches of a finished read not returned yet.
    ready: VecDeque<RecordBatch>,
    /// Rows still wanted, when the scan has a limit.
    remaining: Option<usize>,
    scan: ScanPlan,
}

/// Reads and decodes block `b`'s `columns` as a batch of `schema`, only its rows passing
/// every one of `filters`. The filters' columns are read first, as dictionaries: a block none
/// of whose rows pass is not decoded.
fn read_block(
    table: &CuboidTable,
    columns: &[usize],
    schema: &SchemaRef,
    b: &BlockRef,
    filters: &RowFilters,
) -> Result<RecordBatch> {
    let mut passing: Option<(BooleanBuffer, usize)> = None;
    for f in filters.strings.iter() {
        let column = table.reader.string_dictionary(
            &table.segments[b.segment],
            table.cuboid,
            b.block,
            &b.meta,
            f.column,
        )?;
        if !narrow(&mut passing, f.rows(&column)?) {
            return Ok(RecordBatch::new_empty(schema.clone()));
        }
    }
    let numbering = |c: usize| {
        table
            .string_ids
            .iter()
            .find(|(i, _)| *i == c)
            .map(|(_, ids)| ids)
    };
    // The lookups this block needs: those of projected derived columns, and every inner one
    // (it drops the rows whose key has no snapshot row).
    let stored_len = table.stored.fields().len();
    let derived = |c: usize| (c >= stored_len).then(|| table.derived_columns[c - stored_len]);
    let used: Vec<usize> = (0..table.lookups.len())
        .filter(|&l| {
            table.lookups[l].inner
                || columns
                    .iter()
                    .any(|&c| derived(c).is_some_and(|d| d.0 == l))
        })
        .collect();
    // Stored columns to read: the projected ones, in order, then missing foreign keys.
    let mut read: Vec<usize> = columns
        .iter()
        .copied()
        .filter(|&c| c < stored_len)
        .collect();
    let projected = read.len();
    // Where stored column `c` is in `read`, added when missing.
    let mut position = |c: usize| match read.iter().position(|&r| r == c) {
        Some(p) => p,
        None => {
            read.push(c);
            read.len() - 1
        }
    };
    let mut foreign_keys = Vec::with_capacity(used.len());
    for &l in &used {
        foreign_keys.push(position(
            table.stored.index_of(&table.lookups[l].foreign_key)?,
        ));
    }
    let dimension_inputs: Vec<Vec<usize>> = filters
        .dimensions
        .iter()
        .map(|f| f.columns.iter().map(|&c| position(c)).collect())
        .collect();
    let plain: Vec<usize> = read
        .iter()
        .copied()
        .filter(|&c| numbering(c).is_none())
        .collect();
    let batch = table.reader.block(
        &table.segments[b.segment],
        table.cuboid,
        b.block,
        &b.meta,
        Some(&plain),
    )?;
    let rows = batch.num_rows();
    let mut plain_columns = batch.columns().iter();
    let mut stored: Vec<ArrayRef> = Vec::with_capacity(read.len());
    for &c in &read {
        stored.push(match numbering(c) {
            Some(ids) => table.reader.string_ids_of(
                &table.segments[b.segment],
                table.cuboid,
                b.block,
                &b.meta,
                c,
                ids,
            )?,
            None => plain_columns
                .next()
                .expect("one decoded column per plain column")
                .clone(),
        });
    }
    for (f, inputs) in filters.dimensions.iter().zip(&dimension_inputs) {
        let arrays = inputs.iter().map(|&p| stored[p].clone()).collect();
        if !narrow(&mut passing, f.rows(arrays, rows)?) {
            return Ok(RecordBatch::new_empty(schema.clone()));
        }
    }
    // The filtered rows first: lookups and the rest see only the rows that pass.
    let mut rows = rows;
    if let Some((keep, count)) = passing {
        if count < rows || keep.len() != rows {
            let keep = FilterBuilder::new(&BooleanArray::new(keep, None))
                .optimize()
                .build();
            stored = stored
                .iter()
                .map(|a| keep.filter(a))
                .collect::<std::result::Result<_, _>>()?;
            rows = count;
        }
    }
    // Each needed lookup's snapshot row per row; an inner one drops the rows without one,
    // and those whose snapshot row fails its filters.
    let mut found = Vec::with_capacity(used.len());
    let mut keep: Option<BooleanBuffer> = None;
    for (&l, &fk) in used.iter().zip(&foreign_keys) {
        let index = table.lookups[l].index()?;
        let at = index.rows_of(&stored[fk])?;
        let mut passing = None;
        for f in filters.lookups.iter().filter(|f| f.lookup == l) {
            let p = f.passing(&index)?;
            passing = Some(match passing {
                Some(before) => &before & p.as_ref(),
                None => p.as_ref().clone(),
            });
        }
        if table.lookups[l].inner && (at.nulls().is_some() || passing.is_some()) {
            let rows = found_and_passing(&at, passing.as_ref());
            keep = Some(match keep {
                Some(before) => &before & &rows,
                None => rows,
            });
        }
        found.push((index, at));
    }
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    let mut stored = stored.into_iter().take(projected);
    for &c in columns {
        arrays.push(match derived(c) {
            None => stored
                .next()
                .expect("one stored array per projected stored column"),
            Some((l, column)) => {
                let (index, at) = &found[used.iter().position(|&u| u == l).expect("used")];
                take(index.rows.column(column), at, None)?
            }
        });
    }
    // Stored blocks may differ from the table's schema in field nullability only.
    let batch = RecordBatch::try_new_with_options(
        schema.clone(),
        arrays,
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )?;
    match keep {
        Some(keep) if keep.count_set_bits() < rows => {
            Ok(filter_record_batch(&batch, &BooleanArray::new(keep, None))?)
        }
        _ => Ok(batch),
    }
}

/// ANDs `rows` into a block's `passing` rows (kept with their count); false when none pass.
fn narrow(passing: &mut Option<(BooleanBuffer, usize)>, rows: BooleanBuffer) -> bool {
    let rows = match passing.take() {
        Some((before, _)) => &before & &rows,
        None => rows,
    };
    let count = rows.count_set_bits();
    *passing = Some((rows, count));
    count > 0
}

impl PartitionBlocks {
    fn choose(&self) -> Result<VecDeque<BlockRef>> {
        let (selected, _) = select(
            &self.table,
            self.scan.pruning.as_deref(),
            &self.scan.derived,
        )?;
        Ok(selected
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % self.scan.partitions == self.scan.partition)
            .map(|(_, b)| b)
            .collect())
    }

    /// Starts decoding pending blocks on the blocking pool until `READ_AHEAD` are under way.
    /// A scan with a limit reads one block at a time (it may stop after any of them), and
    /// outside a tokio runtime every block is read on the polling thread.
    fn read_ahead(&mut self) {
        if self.remaining.is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(pending) = self.pending.as_mut() else {
            return;
        };
        let size = blocks_per_read(self.read_blocks, self.read_rows);
        while self.in_flight.len() < READ_AHEAD && !pending.is_empty() {
            let blocks: Vec<BlockRef> = pending.drain(..size.min(pending.len())).collect();
            let count = blocks.len();
            let (table, columns, schema, filters) = (
                self.table.clone(),
                self.columns.clone(),
                self.schema.clone(),
                self.scan.filters.clone(),
            );
            let read = runtime.spawn_blocking(move || {
                let mut batches = Vec::with_capacity(blocks.len());
                for b in &blocks {
                    let batch = read_block(&table, &columns, &schema, b, &filters)?;
                    // A block none of whose rows pass adds nothing downstream.
                    if batch.num_rows() > 0 {
                        batches.push(batch);
                    }
                }
                Ok(batches)
            });
            self.in_flight.push_back((count, read));
        }
    }

    async fn next(&mut self) -> Option<datafusion::common::Result<RecordBatch>> {
        if self.pending.is_none() {
            match self.choose() {
                Ok(blocks) => self.pending = Some(blocks),
                Err(e) => {
                    self.pending = Some(VecDeque::new());
                    return Some(Err(e.into_datafusion()));
                }
            }
        }
        if self.remaining == Some(0) {
            return None;
        }
        self.read_ahead();
        let batch = loop {
            if let Some(batch) = self.ready.pop_front() {
                break Ok(batch);
            }
            match self.in_flight.pop_front() {
                Some((blocks, handle)) => match handle.await {
                    Ok(Ok(batches)) => {
                        self.read_blocks += blocks;
                        self.read_rows += batches.iter().map(|b| b.num_rows()).sum::<usize>();
                        self.ready.extend(batches);
                        // Keep reads under way while the consumer works on these.
                        self.read_ahead();
                    }
                    Ok(Err(e)) => break Err(e),
                    // The read panicked or the runtime is shutting down.
                    Err(e) => break Err(Error::DataFusion(DataFusionError::External(Box::new(e)))),
                },
                None => {
                    let b = self.pending.as_mut()?.pop_front()?;
                    break read_block(
                        &self.table,
                        &self.columns,
                        &self.schema,
                        &b,
                        &self.scan.filters,
                    );
                }
            }
        };
        let batch = batch.map_err(Error::into_datafusion);
        if let (Some(r), Ok(batch)) = (self.remaining.as_mut(), &batch) {
            *r = r.saturating_sub(batch.num_rows());
        }
        Some(batch)
    }
}

/// How many blocks the next read of a partition decodes, after its finished reads decoded
/// `blocks` blocks into `rows` rows: about [`ROWS_PER_READ`] rows' worth, within
/// [`MIN_BLOCKS_PER_READ`]..=[`MAX_BLOCKS_PER_READ`].
fn blocks_per_read(blocks: usize, rows: usize) -> usize {
    if blocks == 0 {
        return MIN_BLOCKS_PER_READ;
    }
    let wanted = ROWS_PER_READ.saturating_mul(blocks) / rows.max(1);
    wanted.clamp(MIN_BLOCKS_PER_READ, MAX_BLOCKS_PER_READ)
}

/// Key ranges past which the foreign-key pruning predicate merges neighbouring ranges (each
/// range is two comparisons per block).
const MAX_KEY_RANGES: usize = 32;

/// Blocks of a stored table, pruned or not.
fn total_blocks(t: &CuboidTable) -> Result<usize> {
    t.segments.iter().try_fold(0, |n, segment| {
        Ok(n + t.reader.manifest(segment, t.cuboid)?.blocks.len())
    })
}

/// What a derived filter allows of the foreign key.
enum KeyRanges {
    /// It cannot prune.
    Any,
    /// No key.
    None,
    Ranges(PruningPredicate),
}

/// A [`DerivedFilter`] planned: its filter as a physical expression over the snapshot.
#[derive(Debug)]
struct DerivedKeys {
    lookup: CuboidTable,
    filter: Arc<dyn PhysicalExpr>,
    primary_key: usize,
    foreign_key: String,
    display: String,
}

impl DerivedKeys {
    /// `None` when the filter cannot prune: volatile, or a key that is no column of either.
    fn plan(
        table: &CuboidTable,
        d: &DerivedFilter,
        state: &dyn Session,
    ) -> datafusion::common::Result<Option<Self>> {
        let Ok(primary_key) = d.lookup.schema.index_of(&d.primary_key) else {
            return Ok(None);
        };
        if d.filter.is_volatile() || table.schema.index_of(&d.foreign_key).is_err() {
            return Ok(None);
        }
        let filter = unqualified(&d.filter);
        let df_schema = DFSchema::try_from(d.lookup.schema.as_ref().clone())?;
        let Ok(physical) = state.create_physical_expr(filter.clone(), &df_schema) else {
            return Ok(None);
        };
        Ok(Some(DerivedKeys {
            lookup: d.lookup.clone(),
            filter: physical,
            primary_key,
            foreign_key: d.foreign_key.clone(),
            display: filter.to_string(),
        }))
    }

    /// The pruning predicate over `t`'s foreign key: the keys whose lookup rows pass the
    /// filter, as at most [`MAX_KEY_RANGES`] ranges of the snapshot's sorted keys (a range
    /// spans keys that pass with no failing key between, so it is exact until ranges merge).
    fn predicate(&self, t: &CuboidTable) -> Result<KeyRanges> {
        use datafusion::logical_expr::Operator;
        use datafusion::physical_expr::expressions::{BinaryExpr, Column as PhysColumn, Literal};

        let fk = t.schema.index_of(&self.foreign_key)?;
        let fk_type = t.schema.field(fk).data_type().clone();
        // Every key of the snapshot with whether its row passes.
        let mut keys: Vec<(datafusion::common::ScalarValue, bool)> = Vec::new();
        for batch in self.lookup.read_all()? {
            let passes = self.filter.evaluate(&batch)?.into_array(batch.num_rows())?;
            let Some(passes) = passes
                .as_any()
                .downcast_ref::<datafusion::arrow::array::BooleanArray>()
            else {
                return Ok(KeyRanges::Any);
            };
            let pk = batch.column(self.primary_key);
            for row in 0..batch.num_rows() {
                if pk.is_null(row) {
                    continue;
                }
                let key = datafusion::common::ScalarValue::try_from_array(pk, row)?;
                let Ok(key) = key.cast_to(&fk_type) else {
                    return Ok(KeyRanges::Any);
                };
                keys.push((key, passes.is_valid(row) && passes.value(row)));
            }
        }
        keys.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        // Runs of passing keys: (first, last, failing keys before the run).
        let mut runs: Vec<(usize, usize, usize)> = Vec::new();
        let mut failing = 0;
        for (i, (_, pass)) in keys.iter().enumerate() {
            match (pass, runs.last_mut()) {
                (true, Some(run)) if failing == 0 && run.1 + 1 == i => run.1 = i,
                (true, _) => {
                    runs.push((i, i, failing));
                    failing = 0;
                }
                (false, _) => failing += 1,
            }
        }
        // Too many runs: merge across the smallest gaps (a superset, still safe).
        if runs.len() > MAX_KEY_RANGES {
            let mut gaps: Vec<(usize, usize)> = runs
                .iter()
                .enumerate()
                .skip(1)
                .map(|(i, r)| (r.2, i))
                .collect();
            gaps.sort_unstable_by(|a, b| b.cmp(a));
            let mut splits: Vec<usize> = gaps[..MAX_KEY_RANGES - 1].iter().map(|g| g.1).collect();
            splits.sort_unstable();
            let mut merged = Vec::with_capacity(MAX_KEY_RANGES);
            let mut start = 0;
            for end in splits.into_iter().chain([runs.len()]) {
                merged.push((runs[start].0, runs[end - 1].1, 0));
                start = end;
            }
            runs = merged;
        }
        let column: Arc<dyn PhysicalExpr> = Arc::new(PhysColumn::new(&self.foreign_key, fk));
        let literal =
            |i: usize| -> Arc<dyn PhysicalExpr> { Arc::new(Literal::new(keys[i].0.clone())) };
        let binary = |l: Arc<dyn PhysicalExpr>, op, r: Arc<dyn PhysicalExpr>| {
            Arc::new(BinaryExpr::new(l, op, r)) as Arc<dyn PhysicalExpr>
        };
        let Some(((first, last, _), rest)) = runs.split_first() else {
            return Ok(KeyRanges::None);
        };
        let range = |first: usize, last: usize| {
            binary(
                binary(column.clone(), Operator::GtEq, literal(first)),
                Operator::And,
                binary(column.clone(), Operator::LtEq, literal(last)),
            )
        };
        let mut expr = range(*first, *last);
        for (first, last, _) in rest {
            expr = binary(expr, Operator::Or, range(*first, *last));
        }
        let schema = Arc::new(Schema::new(t.dimension_fields()));
        Ok(
            match PruningPredicateBuilder::new()
                .with_file_schema(schema)
                .build(expr)
            {
                Some(p) => KeyRanges::Ranges(Arc::unwrap_or_clone(p)),
                None => KeyRanges::Any,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::segments::CachedSegments;
    use crate::storage::block::write_cuboid;
    use crate::storage::LocalSegmentStore;
    use datafusion::arrow::array::{
        AsArray, Date32Array, Decimal128Array, Int64Array, StringArray,
    };
    use datafusion::arrow::datatypes::{DataType, Int64Type};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    const ROWS: i64 = 400;
    const BLOCK_ROWS: usize = 50;

    /// 400 rows sorted by day (2020-01-01 + i), amounts rising with the day, a name that is
    /// null in block 3 only and otherwise starts with a letter that changes per block.
    fn rows() -> RecordBatch {
        let day0 = 18262; // 2020-01-01
        let schema = Arc::new(Schema::new(vec![
            Field::new("day", DataType::Date32, true),
            Field::new("amount", DataType::Decimal128(12, 2), true),
            Field::new("name", DataType::Utf8, true),
            Field::new("revenue", DataType::Int64, true),
        ]));
        let block = |i: i64| i / BLOCK_ROWS as i64;
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Date32Array::from_iter_values(
                    (0..ROWS).map(|i| day0 + i as i32),
                )),
                Arc::new(
                    Decimal128Array::from_iter_values((0..ROWS).map(|i| 1000 + i as i128 * 250))
                        .with_precision_and_scale(12, 2)
                        .unwrap(),
                ),
                Arc::new(StringArray::from_iter((0..ROWS).map(|i| {
                    (block(i) != 3).then(|| format!("{}-{i:04}", (b'a' + block(i) as u8) as char))
                }))),
                Arc::new(Int64Array::from_iter_values(0..ROWS)),
            ],
        )
        .unwrap()
    }

    /// Runs `sql` over the cuboid and over the same rows in memory; returns the blocks the
    /// scan read after checking both answers are equal.
    async fn read(sql: &str, store: &Arc<CachedSegments>, data: &RecordBatch) -> BlocksRead {
        let table = CuboidTable::with_schema(
            data.schema(),
            3,
            7,
            vec!["aa".into(), "bb".into()],
            store.clone(),
        );
        let cube = SessionContext::new();
        cube.register_table("t", Arc::new(table)).unwrap();
        let oracle = SessionContext::new();
        let both = vec![vec![data.clone()], vec![data.clone()]];
        oracle
            .register_table(
                "t",
                Arc::new(MemTable::try_new(data.schema(), both).unwrap()),
            )
            .unwrap();
        let df = cube.sql(sql).await.unwrap();
        let plan = df.clone().create_physical_plan().await.unwrap();
        let got =
            datafusion::arrow::util::pretty::pretty_format_batches(&df.collect().await.unwrap())
                .unwrap()
                .to_string();
        let want = datafusion::arrow::util::pretty::pretty_format_batches(
            &oracle.sql(sql).await.unwrap().collect().await.unwrap(),
        )
        .unwrap()
        .to_string();
        assert_eq!(got, want, "{sql}");
        let mut stack = vec![&plan];
        while let Some(p) = stack.pop() {
            if let Some(scan) = p.downcast_ref::<CuboidScanExec>() {
                return scan.blocks_read().unwrap();
            }
            stack.extend(p.children());
        }
        panic!("no cuboid scan in the plan of {sql}");
    }

    /// A reader counting the blocks it reads.
    #[derive(Debug)]
    struct Counting {
        inner: Arc<CachedSegments>,
        blocks: AtomicU64,
    }

    impl SegmentReader for Counting {
        fn manifest(&self, s: &str, c: CuboidId) -> Result<Arc<crate::storage::CuboidManifest>> {
            self.inner.manifest(s, c)
        }
        fn block_stats(
            &self,
            s: &str,
            c: CuboidId,
            dims: &[Field],
        ) -> Result<Arc<crate::query::pruning::BlockStats>> {
            self.inner.block_stats(s, c, dims)
        }
        fn block(
            &self,
            s: &str,
            c: CuboidId,
            b: u32,
            meta: &BlockMeta,
            columns: Option<&[usize]>,
        ) -> Result<RecordBatch> {
            self.blocks.fetch_add(1, Ordering::Relaxed);
            self.inner.block(s, c, b, meta, columns)
        }
        fn string_dictionary(
            &self,
            s: &str,
            c: CuboidId,
            b: u32,
            meta: &BlockMeta,
            column: usize,
        ) -> Result<datafusion::arrow::array::ArrayRef> {
            self.inner.string_dictionary(s, c, b, meta, column)
        }
    }

    #[tokio::test]
    async fn a_limit_stops_reading_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalSegmentStore::open(dir.path()).unwrap());
        let data = rows();
        write_cuboid(
            store.as_ref(),
            "aa",
            7,
            &data.schema(),
            std::slice::from_ref(&data),
            3,
            BLOCK_ROWS,
        )
        .unwrap();
        let reader = Arc::new(Counting {
            inner: Arc::new(CachedSegments::new(
                store,
                crate::query::segments::TEST_BLOCK_CACHE,
            )),
            blocks: AtomicU64::new(0),
        });
        let table =
            CuboidTable::with_schema(data.schema(), 4, 7, vec!["aa".into()], reader.clone());
        let config = datafusion::prelude::SessionConfig::new().with_target_partitions(1);
        let ctx = SessionContext::new_with_config(config);
        ctx.register_table("t", Arc::new(table)).unwrap();
        for (sql, rows, most_blocks) in [
            ("SELECT * FROM t LIMIT 10", 10, 1),
            ("SELECT * FROM t LIMIT 120", 120, 3),
            // Only block 6 holds these names; the pruned scan stops after its first match.
            ("SELECT * FROM t WHERE name LIKE 'g-%' LIMIT 5", 5, 1),
        ] {
            reader.blocks.store(0, Ordering::Relaxed);
            let got = ctx.sql(sql).await.unwrap().collect().await.unwrap();
            assert_eq!(
                got.iter().map(|b| b.num_rows()).sum::<usize>(),
                rows,
                "{sql}"
            );
            let read = reader.blocks.load(Ordering::Relaxed);
            assert!(
                read as usize <= most_blocks,
                "{sql}: read {read} of 8 blocks"
            );
        }
    }

    #[tokio::test]
    async fn pushed_filters_prune_blocks_of_every_type() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalSegmentStore::open(dir.path()).unwrap());
        let data = rows();
        for segment in ["aa", "bb"] {
            write_cuboid(
                store.as_ref(),
                segment,
                7,
                &data.schema(),
                std::slice::from_ref(&data),
                3,
                BLOCK_ROWS,
            )
            .unwrap();
        }
        let segments = Arc::new(CachedSegments::new(
            store,
            crate::query::segments::TEST_BLOCK_CACHE,
        ));
        let all = BlocksRead {
            read: 16,
            total: 16,
        };
        let one_per_segment = BlocksRead { read: 2, total: 16 };
        let sum = "SELECT sum(revenue), count(*) FROM t";
        assert_eq!(read(sum, &segments, &data).await, all);
        // A date range inside block 1 (days 50..99 = 2020-02-20 .. 2020-04-09).
        let dates = format!("{sum} WHERE day >= DATE '2020-02-21' AND day < DATE '2020-03-01'");
        assert_eq!(read(&dates, &segments, &data).await, one_per_segment);
        // A decimal range inside block 2 (amounts 260.00 .. 382.50).
        let decimals = format!("{sum} WHERE amount BETWEEN 300.00 AND 310.00");
        assert_eq!(read(&decimals, &segments, &data).await, one_per_segment);
        // IS NULL: only block 3 has nulls; IS NOT NULL skips it.
        let nulls = format!("{sum} WHERE name IS NULL");
        assert_eq!(read(&nulls, &segments, &data).await, one_per_segment);
        let not_null = format!("{sum} WHERE name IS NOT NULL");
        assert_eq!(
            read(&not_null, &segments, &data).await,
            BlocksRead {
                read: 14,
                total: 16
            }
        );
        // A LIKE prefix: names of block 5 start with 'f'.
        let like = format!("{sum} WHERE name LIKE 'f-02%'");
        assert_eq!(read(&like, &segments, &data).await, one_per_segment);
        // A filter on a measure column cannot prune (no stats) and stays correct.
        let measure = format!("{sum} WHERE revenue < 10");
        assert_eq!(read(&measure, &segments, &data).await, all);
    }

    #[tokio::test]
    async fn dimension_filters_are_applied_by_the_scan_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalSegmentStore::open(dir.path()).unwrap());
        let data = rows();
        for segment in ["aa", "bb"] {
            write_cuboid(
                store.as_ref(),
                segment,
                7,
                &data.schema(),
                std::slice::from_ref(&data),
                3,
                BLOCK_ROWS,
            )
            .unwrap();
        }
        let segments = Arc::new(CachedSegments::new(
            store,
            crate::query::segments::TEST_BLOCK_CACHE,
        ));
        let sum = "SELECT name, sum(revenue), count(*) FROM t";
        // (filter, whether a Filter stays above the scan)
        for (filter, filter_above) in [
            ("name IN ('b-0051', 'g-0399', 'x')", false),
            ("name NOT IN ('b-0051', 'g-0399')", false),
            ("name <> 'c-0100' OR name IS NULL", false),
            ("upper(name) LIKE 'E-02%'", false),
            ("name > 'h'", false),
            ("name IS NULL", false),
            ("name = 'nothing'", false),
            ("name IN ('b-0051', 'c-0100') AND revenue > 60", true),
            ("name = 'b-0051' OR revenue < 3", true),
            // Non-string dimensions, one or several per filter, alone or with a string one.
            ("day >= DATE '2020-03-01' AND amount < 500", false),
            ("day = DATE '2020-02-01' OR amount > 900.5", false),
            ("amount BETWEEN 100 AND 200 AND name LIKE 'b%'", false),
            (
                "day IN (DATE '2020-01-07', DATE '2021-01-01') OR day IS NULL",
                false,
            ),
            ("name = 'b-0051' OR day < DATE '2020-01-05'", true),
            ("amount * 2 > 100", true),
            ("day > DATE '2020-01-10' AND revenue > 60", true),
        ] {
            let sql = format!("{sum} WHERE {filter} GROUP BY name ORDER BY name");
            read(&sql, &segments, &data).await;
            let table = CuboidTable::with_schema(
                data.schema(),
                3,
                7,
                vec!["aa".into(), "bb".into()],
                segments.clone(),
            );
            let ctx = SessionContext::new();
            ctx.register_table("t", Arc::new(table)).unwrap();
            let plan = ctx
                .sql(&format!("EXPLAIN {sql}"))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let plan = datafusion::arrow::util::pretty::pretty_format_batches(&plan)
                .unwrap()
                .to_string();
            assert_eq!(plan.contains("FilterExec"), filter_above, "{plan}");
        }
        // With every filter exact, DataFusion hands the limit to the scan: it counts the rows
        // that pass, not the rows read.
        let ctx = SessionContext::new();
        let table =
            CuboidTable::with_schema(data.schema(), 3, 7, vec!["aa".into()], segments.clone());
        ctx.register_table("t", Arc::new(table)).unwrap();
        let got = ctx
            .sql("SELECT name FROM t WHERE name LIKE '%7' LIMIT 30")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let names: Vec<String> = got
            .iter()
            .flat_map(|b| {
                let c = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8).unwrap();
                let c = c.as_any().downcast_ref::<StringArray>().unwrap().clone();
                (0..c.len()).map(move |i| c.value(i).to_string())
            })
            .collect();
        assert_eq!(names.len(), 30);
        assert!(names.iter().all(|n| n.ends_with('7')), "{names:?}");
    }

    /// Writes `data` as cuboid 7 of segment "aa" in a fresh store.
    fn stored(
        data: &RecordBatch,
        dims: usize,
    ) -> (
        tempfile::TempDir,
        Arc<LocalSegmentStore>,
        Arc<CachedSegments>,
    ) {
        stored_in_blocks(data, dims, BLOCK_ROWS)
    }

    fn stored_in_blocks(
        data: &RecordBatch,
        dims: usize,
        block_rows: usize,
    ) -> (
        tempfile::TempDir,
        Arc<LocalSegmentStore>,
        Arc<CachedSegments>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalSegmentStore::open(dir.path()).unwrap());
        write_cuboid(
            store.as_ref(),
            "aa",
            7,
            &data.schema(),
            std::slice::from_ref(data),
            dims,
            block_rows,
        )
        .unwrap();
        (
            dir,
            store.clone(),
            Arc::new(CachedSegments::new(
                store,
                crate::query::segments::TEST_BLOCK_CACHE,
            )),
        )
    }

    /// Writes `lookup` (key first, two dimension columns) as storage id 9 of segment "aa".
    fn store_snapshot(store: &LocalSegmentStore, lookup: &RecordBatch) {
        write_cuboid(
            store,
            "aa",
            9,
            &lookup.schema(),
            std::slice::from_ref(lookup),
            2,
            BLOCK_ROWS,
        )
        .unwrap();
    }

    #[test]
    fn projected_reads_equal_full_reads() {
        let data = rows();
        let (_dir, _, segments) = stored(&data, 3);
        let manifest = segments.manifest("aa", 7).unwrap();
        for (b, meta) in manifest.blocks.iter().enumerate() {
            let b = b as u32;
            // Part of the block first (cached per column), then more columns in another
            // order, then everything: each equals the same columns of a full decode.
            let first = segments.block("aa", 7, b, meta, Some(&[1])).unwrap();
            let mixed = segments.block("aa", 7, b, meta, Some(&[3, 1, 0])).unwrap();
            let none = segments.block("aa", 7, b, meta, Some(&[])).unwrap();
            let full = segments.block("aa", 7, b, meta, None).unwrap();
            let want = data.slice(b as usize * BLOCK_ROWS, BLOCK_ROWS);
            assert_eq!(full.columns(), want.columns());
            assert_eq!(first.columns(), want.project(&[1]).unwrap().columns());
            assert_eq!(mixed.columns(), want.project(&[3, 1, 0]).unwrap().columns());
            assert_eq!(mixed.schema().field(0).name(), "revenue");
            assert_eq!((none.num_columns(), none.num_rows()), (0, BLOCK_ROWS));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_decode_returns_every_block_once() {
        let data = rows();
        let multiples_of_ten_or_null: Vec<i64> = (0..ROWS)
            .filter(|i| i % 10 == 0 || (150..200).contains(i))
            .collect();
        // (rows per block, partitions, query, revenues returned, blocks decoded past the
        // filter's column). 200 blocks of two rows under a filter passing few rows make
        // later reads larger (see `blocks_per_read`); every passing row is still returned
        // once. Decoded there: the 35 blocks holding a multiple of ten outside rows 150..200,
        // and the 25 blocks of rows 150..200 (null names).
        let cases = [
            (
                BLOCK_ROWS,
                &[1, 3, 8, 13][..],
                "SELECT revenue FROM t",
                (0..ROWS).collect(),
                8,
            ),
            (
                2,
                &[1, 3][..],
                "SELECT revenue FROM t WHERE name LIKE '%0' OR name IS NULL",
                multiples_of_ten_or_null,
                60,
            ),
        ];
        for (block_rows, partitions, sql, want, decoded) in cases {
            let (_dir, _, segments) = stored_in_blocks(&data, 3, block_rows);
            let reader = Arc::new(Counting {
                inner: segments,
                blocks: AtomicU64::new(0),
            });
            for &partitions in partitions {
                let table = CuboidTable::with_schema(
                    data.schema(),
                    3,
                    7,
                    vec!["aa".into()],
                    reader.clone(),
                );
                let config =
                    datafusion::prelude::SessionConfig::new().with_target_partitions(partitions);
                let ctx = SessionContext::new_with_config(config);
                ctx.register_table("t", Arc::new(table)).unwrap();
                reader.blocks.store(0, Ordering::Relaxed);
                let got = ctx.sql(sql).await.unwrap().collect().await.unwrap();
                let mut revenue: Vec<i64> = got
                    .iter()
                    .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
                    .collect();
                revenue.sort_unstable();
                assert_eq!(revenue, want, "{sql} in {partitions}");
                assert_eq!(
                    reader.blocks.load(Ordering::Relaxed),
                    decoded,
                    "{sql} in {partitions}"
                );
            }
        }
    }

    #[test]
    fn reads_grow_as_filters_pass_fewer_rows() {
        assert_eq!(blocks_per_read(0, 0), MIN_BLOCKS_PER_READ);
        // Whole blocks of 8,192 rows: the first size stays.
        assert_eq!(blocks_per_read(8, 8 * 8192), 4);
        // One row in a hundred passes: as many blocks as allowed.
        assert_eq!(blocks_per_read(8, 8 * 82), MAX_BLOCKS_PER_READ);
        assert_eq!(blocks_per_read(8, 0), MAX_BLOCKS_PER_READ);
        // In between: about `ROWS_PER_READ` rows' worth.
        assert_eq!(blocks_per_read(10, 10 * 1024), 32);
        // Blocks larger than a read's rows: never fewer than the minimum.
        assert_eq!(blocks_per_read(4, 4 * 1_000_000), MIN_BLOCKS_PER_READ);
    }

    /// A lookup of the 400 days: `key` (the fact rows' `day`) and its month `2020-MM`.
    fn months() -> RecordBatch {
        let day0 = 18262; // 2020-01-01
        let schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Date32, true),
            Field::new("month", DataType::Utf8, true),
        ]));
        let days: Vec<i32> = (0..ROWS as i32).map(|i| day0 + i).collect();
        let month = |d: i32| {
            let date = chrono::NaiveDate::from_num_days_from_ce_opt(d + 719_163).unwrap();
            date.format("%Y-%m").to_string()
        };
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Date32Array::from_iter_values(days.iter().copied())),
                Arc::new(StringArray::from_iter_values(
                    days.iter().map(|&d| month(d)),
                )),
            ],
        )
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn derived_filters_prune_through_the_foreign_key() {
        let data = rows();
        let lookup = months();
        let (_dir, store, segments) = stored(&data, 3);
        store_snapshot(&store, &lookup);
        let snapshot =
            CuboidTable::with_schema(lookup.schema(), 2, 9, vec!["aa".into()], segments.clone());
        let counting = Arc::new(Counting {
            inner: segments.clone(),
            blocks: AtomicU64::new(0),
        });
        let oracle = SessionContext::new();
        oracle.register_batch("t", data.clone()).unwrap();
        oracle.register_batch("l", lookup.clone()).unwrap();
        let lookup_schema = DFSchema::try_from(lookup.schema().as_ref().clone()).unwrap();
        for (filter, blocks) in [
            // March 2020: days 60..90, all in block 1 (days 50..99).
            ("month = '2020-03'", 1),
            // January and December: blocks 0, 6 and 7 (two key ranges).
            ("month IN ('2020-01', '2020-12')", 3),
            // January to September 2020: days 0..273, blocks 0..5.
            ("month LIKE '2020-0%'", 6),
            ("month = '1999-01'", 0),
            // Not on the lookup alone: no derived filter, still the right answer.
            ("month = '2020-03' OR revenue < 3", 8),
        ] {
            let sql = format!(
                "SELECT month, sum(revenue), count(*) FROM t JOIN l ON day = key \
                 WHERE {filter} GROUP BY month ORDER BY month"
            );
            let derived = match filter.contains("revenue") {
                true => vec![],
                false => vec![DerivedFilter {
                    lookup: snapshot.clone(),
                    filter: oracle.parse_sql_expr(filter, &lookup_schema).unwrap(),
                    primary_key: "key".into(),
                    foreign_key: "day".into(),
                }],
            };
            let table =
                CuboidTable::with_schema(data.schema(), 3, 7, vec!["aa".into()], counting.clone())
                    .with_derived_filters(derived);
            let id = table.id();
            let cube = SessionContext::new_with_config(
                datafusion::prelude::SessionConfig::new().with_target_partitions(2),
            );
            cube.register_table("t", Arc::new(table)).unwrap();
            cube.register_table("l", Arc::new(snapshot.clone()))
                .unwrap();
            counting.blocks.store(0, Ordering::Relaxed);
            let df = cube.sql(&sql).await.unwrap();
            let plan = df.clone().create_physical_plan().await.unwrap();
            let got = datafusion::arrow::util::pretty::pretty_format_batches(
                &datafusion::physical_plan::collect(plan.clone(), cube.task_ctx())
                    .await
                    .unwrap(),
            )
            .unwrap()
            .to_string();
            let want = datafusion::arrow::util::pretty::pretty_format_batches(
                &oracle.sql(&sql).await.unwrap().collect().await.unwrap(),
            )
            .unwrap()
            .to_string();
            assert_eq!(got, want, "{sql}");
            assert_eq!(
                counting.blocks.load(Ordering::Relaxed),
                blocks,
                "blocks read for {filter}"
            );
            let mut stack = vec![&plan];
            let mut explained = None;
            while let Some(p) = stack.pop() {
                if let Some(scan) = p.downcast_ref::<CuboidScanExec>() {
                    if scan.table_id() == id {
                        explained = Some(scan.blocks_read().unwrap());
                    }
                }
                stack.extend(p.children());
            }
            assert_eq!(
                explained,
                Some(BlocksRead {
                    read: blocks as usize,
                    total: 8
                }),
                "{filter}"
            );
        }
    }

    /// A lookup the scan derives itself gives what a join to the snapshot gives: an inner
    /// lookup drops the rows whose key has no snapshot row, a left one gives them nulls;
    /// blocks are pruned by filters on stored columns as before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn derived_columns_equal_a_join() {
        let data = rows();
        // Every third day has no snapshot row.
        let all = months();
        let keep = BooleanArray::from_iter((0..all.num_rows()).map(|i| Some(i % 3 != 1)));
        let lookup = filter_record_batch(&all, &keep).unwrap();
        let (_dir, store, segments) = stored(&data, 3);
        store_snapshot(&store, &lookup);
        let oracle = SessionContext::new();
        oracle
            .register_table(
                "t",
                Arc::new(MemTable::try_new(data.schema(), vec![vec![data.clone()]]).unwrap()),
            )
            .unwrap();
        oracle
            .register_table(
                "l",
                Arc::new(MemTable::try_new(lookup.schema(), vec![vec![lookup.clone()]]).unwrap()),
            )
            .unwrap();
        for (inner, join) in [(true, "JOIN"), (false, "LEFT JOIN")] {
            let snapshot = CuboidTable::with_schema(
                lookup.schema(),
                2,
                9,
                vec!["aa".into()],
                segments.clone(),
            );
            let fact =
                CuboidTable::with_schema(data.schema(), 3, 7, vec!["aa".into()], segments.clone())
                    .with_lookups(vec![DerivedLookup::new(snapshot, "key", "day", inner)]);
            let ctx = SessionContext::new();
            ctx.register_table("t", Arc::new(fact)).unwrap();
            let month = derived_field(0, "month");
            let key = derived_field(0, "key");
            for (ours, theirs) in [
                (
                    format!(
                        "SELECT \"{month}\" AS m, count(*) AS n, sum(revenue) AS r FROM t \
                         GROUP BY 1 ORDER BY 1 NULLS FIRST"
                    ),
                    format!(
                        "SELECT month AS m, count(*) AS n, sum(revenue) AS r FROM t {join} l \
                         ON day = key GROUP BY 1 ORDER BY 1 NULLS FIRST"
                    ),
                ),
                (
                    "SELECT count(*) AS n FROM t WHERE amount > 50".to_string(),
                    format!("SELECT count(*) AS n FROM t {join} l ON day = key WHERE amount > 50"),
                ),
                (
                    format!(
                        "SELECT name, \"{key}\" AS k FROM t WHERE \"{month}\" LIKE '2020-03' \
                         OR name < 'b' ORDER BY name"
                    ),
                    format!(
                        "SELECT name, key AS k FROM t {join} l ON day = key \
                         WHERE month LIKE '2020-03' OR name < 'b' ORDER BY name"
                    ),
                ),
            ] {
                let got = ctx.sql(&ours).await.unwrap().collect().await.unwrap();
                let want = oracle.sql(&theirs).await.unwrap().collect().await.unwrap();
                let text = |b: &[RecordBatch]| {
                    datafusion::arrow::util::pretty::pretty_format_batches(b)
                        .unwrap()
                        .to_string()
                };
                assert_eq!(text(&got), text(&want), "{ours}");
                assert!(
                    got.iter().map(|b| b.num_rows()).sum::<usize>() > 0,
                    "{ours}"
                );
            }
            // A filter on the lookup's columns alone: applied by the scan of an inner lookup,
            // per snapshot row, with no `Filter` above it.
            let ours = format!(
                "SELECT count(*) AS n, sum(revenue) AS r FROM t WHERE \"{month}\" IN \
                 ('2020-02', '2020-05') AND upper(\"{month}\") <> 'X'"
            );
            let theirs = format!(
                "SELECT count(*) AS n, sum(revenue) AS r FROM t {join} l ON day = key \
                 WHERE month IN ('2020-02', '2020-05') AND upper(month) <> 'X'"
            );
            let df = ctx.sql(&ours).await.unwrap();
            let plan = df.clone().create_physical_plan().await.unwrap();
            let plan = datafusion::physical_plan::displayable(plan.as_ref())
                .indent(true)
                .to_string();
            assert_eq!(plan.contains("lookup_filter="), inner, "{plan}");
            assert_eq!(plan.contains("FilterExec"), !inner, "{plan}");
            let got = df.collect().await.unwrap();
            let want = oracle.sql(&theirs).await.unwrap().collect().await.unwrap();
            let text = |b: &[RecordBatch]| {
                datafusion::arrow::util::pretty::pretty_format_batches(b)
                    .unwrap()
                    .to_string()
            };
            assert_eq!(text(&got), text(&want), "{ours}");
            assert!(!text(&got).contains("| 0 "), "{}", text(&got));
        }
    }

    /// Plans over the same snapshot share one index while one of them holds it.
    #[test]
    fn plans_share_a_lookup_index() {
        let lookup = months();
        let (_dir, store, segments) = stored(&lookup, 2);
        let _ = store;
        let snapshot =
            || CuboidTable::with_schema(lookup.schema(), 2, 7, vec!["aa".into()], segments.clone());
        let first = DerivedLookup::new(snapshot(), "key", "day", true);
        let second = DerivedLookup::new(snapshot(), "key", "day", true);
        let index = first.index().unwrap();
        assert_eq!(index.rows.num_rows(), lookup.num_rows());
        assert!(Arc::ptr_eq(&index, &second.index().unwrap()));
        // Once no plan holds it, it is freed and read again.
        drop((index, first, second));
        let third = DerivedLookup::new(snapshot(), "key", "day", true);
        assert_eq!(Arc::strong_count(&third.index().unwrap()), 2);
    }

    /// With row counts known, a join to a lookup builds its hash table on the lookup and the
    /// cuboid's partitions stream through it, each aggregated partially before a final
    /// aggregation: every partition of the scan is decoded and aggregated in parallel.
    #[tokio::test]
    async fn the_cuboid_streams_through_a_join_into_partial_aggregates() {
        let data = rows();
        let lookup = months();
        let (_dir, store, segments) = stored(&data, 3);
        store_snapshot(&store, &lookup);
        let fact =
            CuboidTable::with_schema(data.schema(), 3, 7, vec!["aa".into()], segments.clone())
                .with_rows(6_000_000);
        let snapshot =
            CuboidTable::with_schema(lookup.schema(), 2, 9, vec!["aa".into()], segments.clone())
                .with_rows(2_556);
        let ctx = SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new().with_target_partitions(4),
        );
        ctx.register_table("t", Arc::new(fact)).unwrap();
        ctx.register_table("l", Arc::new(snapshot)).unwrap();
        let plan = ctx
            .sql("SELECT month, name, sum(revenue) FROM t JOIN l ON day = key GROUP BY 1, 2")
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let text = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        assert!(text.contains("mode=CollectLeft"), "{text}");
        assert!(text.contains("AggregateExec: mode=Partial"), "{text}");
        assert!(
            text.contains("AggregateExec: mode=FinalPartitioned"),
            "{text}"
        );
        // The lookup is the build side (the join's first input), the cuboid the probe side.
        let join = text.find("HashJoinExec").unwrap();
        let lookup_scan = text[join..].find("cuboid=9").unwrap();
        let fact_scan = text[join..].find("cuboid=7").unwrap();
        assert!(lookup_scan < fact_scan, "{text}");
        assert!(
            text.contains("cuboid=7, segments=1")
                && !text.contains("RepartitionExec: partitioning=Hash([day"),
            "{text}"
        );
    }
}
