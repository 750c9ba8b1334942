//! The cuboid as a DataFusion table: [`CuboidTable`] is the `TableProvider` a rewritten query
//! scans, over one cuboid of a cube's READY segments. Planning does no I/O: the provider
//! accepts every filter as `Inexact` (the `Filter` above it stays, so results never depend on
//! pruning) and turns the pushed filters into a [`PruningPredicate`]. [`CuboidScanExec`] reads
//! the manifests when it executes, keeps the blocks the predicate cannot rule out, and reads
//! and decodes them one at a time as the stream is polled. A cached plan therefore holds
//! segment ids and a predicate, never a block list.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DataFusionError};
use datafusion::datasource::TableType;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::pruning::{PruningPredicate, PruningPredicateBuilder};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};

use super::segments::SegmentReader;
use crate::error::{Error, Result};
use crate::model::{CubeLayout, CuboidId};
use crate::storage::BlockMeta;

/// One cuboid over a set of segments.
#[derive(Debug, Clone)]
pub(crate) struct CuboidTable {
    /// Unique per table made (EXPLAIN finds a table's scan in the physical plan by it).
    id: u64,
    /// Dimension columns first (rowkey order), then one column per measure state.
    schema: SchemaRef,
    dims: usize,
    cuboid: CuboidId,
    segments: Arc<[String]>,
    reader: Arc<dyn SegmentReader>,
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
            schema,
            dims,
            cuboid,
            segments: segments.into(),
            reader,
        }
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
        self.schema.fields()[..self.dims]
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

    /// Every filter helps pruning, none is applied exactly: the `Filter` stays above the scan.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::common::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let pruning = match conjunction(filters.iter().map(unqualified).collect::<Vec<_>>()) {
            Some(predicate) => {
                let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
                let physical = state.create_physical_expr(predicate, &df_schema)?;
                // Statistics exist for dimension columns only; measure columns read as unknown.
                PruningPredicateBuilder::new()
                    .with_file_schema(self.schema.clone())
                    .build(physical)
            }
            None => None,
        };
        let partitions = state.config().target_partitions().max(1);
        let mut scan = CuboidScanExec::new(self.clone(), projection.cloned(), pruning, partitions);
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
            partitions,
            limit: None,
            output_schema,
            properties,
        }
    }

    /// How many blocks this scan reads of how many are stored (reads manifests, no blocks).
    pub fn blocks_read(&self) -> Result<BlocksRead> {
        let (selected, total) = select(&self.table, self.pruning.as_deref())?;
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
fn select(t: &CuboidTable, pruning: Option<&PruningPredicate>) -> Result<(Vec<BlockRef>, usize)> {
    let dims = t.dimension_fields();
    let mut selected = Vec::new();
    let mut total = 0;
    for (s, segment) in t.segments.iter().enumerate() {
        let manifest = t.reader.manifest(segment, t.cuboid)?;
        total += manifest.blocks.len();
        let keep = match pruning {
            Some(p) => {
                let stats = t.reader.block_stats(segment, t.cuboid, &dims)?;
                p.prune(stats.as_ref())?
            }
            None => vec![true; manifest.blocks.len()],
        };
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
        let blocks = LazyBlocks {
            table: self.table.clone(),
            projection: self.projection.clone(),
            pending: None,
            remaining: self.limit,
            scan: ScanPlan {
                pruning: self.pruning.clone(),
                partition,
                partitions: self.partitions,
            },
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.output_schema.clone(),
            futures::stream::iter(blocks),
        )))
    }
}

/// What one partition of a scan needs to choose its blocks when first polled.
struct ScanPlan {
    pruning: Option<Arc<PruningPredicate>>,
    partition: usize,
    partitions: usize,
}

/// The blocks of one partition, chosen when first polled and read one per `next`.
struct LazyBlocks {
    table: CuboidTable,
    projection: Option<Vec<usize>>,
    pending: Option<VecDeque<BlockRef>>,
    /// Rows still wanted, when the scan has a limit.
    remaining: Option<usize>,
    scan: ScanPlan,
}

impl LazyBlocks {
    fn choose(&self) -> Result<VecDeque<BlockRef>> {
        let (selected, _) = select(&self.table, self.scan.pruning.as_deref())?;
        Ok(selected
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % self.scan.partitions == self.scan.partition)
            .map(|(_, b)| b)
            .collect())
    }

    fn read(&self, b: &BlockRef) -> Result<RecordBatch> {
        let t = &self.table;
        let batch = t
            .reader
            .block(&t.segments[b.segment], t.cuboid, b.block, &b.meta)?;
        // Stored blocks may differ from the table's schema in field nullability only.
        let batch = RecordBatch::try_new(t.schema.clone(), batch.columns().to_vec())?;
        Ok(match &self.projection {
            Some(p) => batch.project(p)?,
            None => batch,
        })
    }
}

impl Iterator for LazyBlocks {
    type Item = datafusion::common::Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pending.is_none() {
            match self.choose() {
                Ok(blocks) => self.pending = Some(blocks),
                Err(e) => {
                    self.pending = Some(VecDeque::new());
                    return Some(Err(to_datafusion(e)));
                }
            }
        }
        if self.remaining == Some(0) {
            return None;
        }
        let b = self.pending.as_mut()?.pop_front()?;
        let batch = self.read(&b).map_err(to_datafusion);
        if let (Some(r), Ok(batch)) = (self.remaining.as_mut(), &batch) {
            *r = r.saturating_sub(batch.num_rows());
        }
        Some(batch)
    }
}

/// Errors of ours travel through DataFusion as external errors and come back as themselves
/// (see `errors::classify`).
fn to_datafusion(e: Error) -> DataFusionError {
    match e {
        Error::DataFusion(e) => e,
        e => DataFusionError::External(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::segments::CachedSegments;
    use crate::storage::block::write_cuboid;
    use crate::storage::LocalSegmentStore;
    use datafusion::arrow::array::{Date32Array, Decimal128Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::DataType;
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
        fn block(&self, s: &str, c: CuboidId, b: u32, meta: &BlockMeta) -> Result<RecordBatch> {
            self.blocks.fetch_add(1, Ordering::Relaxed);
            self.inner.block(s, c, b, meta)
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
            inner: Arc::new(CachedSegments::new(store)),
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
        let segments = Arc::new(CachedSegments::new(store));
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
}
