//! The table a rewritten query scans: the selected blocks of one cuboid across the READY
//! segments. Blocks are read through a cache of decoded batches, so a hot cuboid costs no
//! I/O or decompression.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::cache::LruCache;
use crate::error::Result;
use crate::model::{CubeLayout, CuboidId};
use crate::storage::block::decode_block;
use crate::storage::{BlockMeta, SegmentStore};

#[derive(Debug, Clone)]
pub(crate) struct BlockRef {
    pub segment: String,
    pub cuboid: CuboidId,
    pub block: u32,
    pub meta: BlockMeta,
}

type BlockKey = (String, CuboidId, u32);

/// Reads blocks from the segment store through the decoded-block cache.
#[derive(Clone)]
pub(crate) struct BlockSource {
    pub store: Arc<dyn SegmentStore>,
    pub cache: Arc<LruCache<BlockKey, RecordBatch>>,
}

impl std::fmt::Debug for BlockSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.store.describe())
    }
}

impl BlockSource {
    fn read(&self, b: &BlockRef) -> Result<RecordBatch> {
        let key = (b.segment.clone(), b.cuboid, b.block);
        if let Some(batch) = self.cache.get(&key) {
            return Ok(batch);
        }
        let bytes = self.store.get_block(&b.segment, b.cuboid, b.block)?;
        let batch = decode_block(&bytes, &b.meta, &b.segment, b.cuboid, b.block)?;
        self.cache
            .insert(key, batch.clone(), batch.get_array_memory_size() as u64);
        Ok(batch)
    }
}

#[derive(Debug)]
pub(crate) struct CuboidTable {
    schema: SchemaRef,
    blocks: Vec<BlockRef>,
    source: BlockSource,
}

impl CuboidTable {
    pub fn new(
        layout: &CubeLayout,
        cuboid: CuboidId,
        blocks: Vec<BlockRef>,
        source: BlockSource,
    ) -> Self {
        let mut fields: Vec<Field> = layout
            .cuboid_columns(cuboid)
            .into_iter()
            .map(|i| {
                let r = &layout.rowkey[i];
                Field::new(&r.name, r.source.data_type.clone(), true)
            })
            .collect();
        fields.extend(
            layout
                .measures
                .iter()
                .map(|m| Field::new(&m.name, m.state.data_type(), true)),
        );
        CuboidTable {
            schema: Arc::new(Schema::new(fields)),
            blocks,
            source,
        }
    }

    /// Decodes every selected block, re-labelled with the table's schema (stored blocks may
    /// differ in field nullability only).
    fn read_all(&self) -> Result<Vec<RecordBatch>> {
        self.blocks
            .iter()
            .map(|b| {
                let batch = self.source.read(b)?;
                Ok(RecordBatch::try_new(
                    self.schema.clone(),
                    batch.columns().to_vec(),
                )?)
            })
            .collect()
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

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let batches = self
            .read_all()
            .map_err(|e| datafusion::common::DataFusionError::External(Box::new(e)))?;
        // Spread blocks over the session's partitions so re-aggregation uses every core.
        let n = state
            .config()
            .target_partitions()
            .clamp(1, batches.len().max(1));
        let mut partitions: Vec<Vec<RecordBatch>> = vec![Vec::new(); n];
        for (i, b) in batches.into_iter().enumerate() {
            partitions[i % n].push(b);
        }
        Ok(MemorySourceConfig::try_new_exec(
            &partitions,
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}
