//! Block pruning with DataFusion's own [`PruningPredicate`]: a cuboid's blocks are the
//! containers, and [`BlockStats`] hands it each dimension's per-block min, max and null count
//! as typed Arrow arrays (decoded once per manifest from its JSON form). Everything DataFusion
//! can prune on min/max/null counts prunes here: comparisons, `BETWEEN`, `IN`, `IS [NOT] NULL`,
//! `LIKE 'prefix%'`, over integers, dates, timestamps, decimals, floats, booleans and strings.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, UInt64Array};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::create_physical_expr;
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;

use crate::error::Result;
use crate::storage::block::stat_array;
use crate::storage::CuboidManifest;

/// Which blocks of a stored cuboid may hold rows matching `predicate` (an expression over
/// the unqualified dimension columns `dims`, the manifest's leading columns), as the cuboid
/// scan judges them. For benchmarks and tests of pruning by itself.
pub fn prune_blocks(
    manifest: &CuboidManifest,
    dims: &[Field],
    predicate: &Expr,
) -> Result<Vec<bool>> {
    let schema = Arc::new(Schema::new(dims.to_vec()));
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let physical = create_physical_expr(
        predicate,
        &df_schema,
        &ExecutionProps::new(),
        &PhysicalPlanningContext::default(),
    )?;
    let Some(pruning) = PruningPredicateBuilder::new()
        .with_file_schema(schema)
        .build(physical)
    else {
        return Ok(vec![true; manifest.blocks.len()]);
    };
    Ok(pruning.prune(&BlockStats::new(manifest, dims))?)
}

/// Typed statistics of one stored cuboid's blocks, for its dimension columns.
#[derive(Debug)]
pub(crate) struct BlockStats {
    fields: Vec<Field>,
    min: Vec<ArrayRef>,
    max: Vec<ArrayRef>,
    /// `None` for a column whose manifest kept no null counts.
    nulls: Vec<Option<ArrayRef>>,
    rows: ArrayRef,
    blocks: usize,
}

impl BlockStats {
    /// Decodes the manifest's stats of the dimension columns `dims` (its leading columns).
    pub fn new(manifest: &CuboidManifest, dims: &[Field]) -> Self {
        let blocks = &manifest.blocks;
        let mut min = Vec::with_capacity(dims.len());
        let mut max = Vec::with_capacity(dims.len());
        let mut nulls = Vec::with_capacity(dims.len());
        for (i, f) in dims.iter().enumerate() {
            let null = serde_json::Value::Null;
            min.push(stat_array(
                f.data_type(),
                blocks.iter().map(|b| b.min.get(i).unwrap_or(&null)),
            ));
            max.push(stat_array(
                f.data_type(),
                blocks.iter().map(|b| b.max.get(i).unwrap_or(&null)),
            ));
            nulls.push(blocks.iter().all(|b| b.nulls.len() > i).then(|| {
                Arc::new(UInt64Array::from_iter_values(
                    blocks.iter().map(|b| b.nulls[i]),
                )) as ArrayRef
            }));
        }
        BlockStats {
            fields: dims.to_vec(),
            min,
            max,
            nulls,
            rows: Arc::new(UInt64Array::from_iter_values(
                blocks.iter().map(|b| b.rows as u64),
            )),
            blocks: blocks.len(),
        }
    }

    /// Whether these stats were decoded for columns of exactly these names and types.
    pub fn describes(&self, dims: &[Field]) -> bool {
        self.fields.len() == dims.len()
            && self
                .fields
                .iter()
                .zip(dims)
                .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type())
    }

    fn index(&self, column: &Column) -> Option<usize> {
        self.fields.iter().position(|f| f.name() == &column.name)
    }
}

impl PruningStatistics for BlockStats {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.index(column).map(|i| self.min[i].clone())
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.index(column).map(|i| self.max[i].clone())
    }

    fn num_containers(&self) -> usize {
        self.blocks
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        self.index(column).and_then(|i| self.nulls[i].clone())
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(self.rows.clone())
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}
