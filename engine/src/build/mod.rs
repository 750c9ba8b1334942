//! Cube building: flat table → base cuboid → every other cuboid from its smallest built
//! parent → blocks in the segment store. Merging segments re-aggregates their stored cuboids.
//!
//! Nothing here touches the cube instance: the job that calls these functions marks the
//! segment READY (check-and-put) only after [`SegmentStore::sync_segment`] succeeded, so a
//! failed or killed build is never visible to queries.

pub mod aggregate;
pub mod source;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{Field, SchemaRef};
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::model::{cuboid, CubeLayout, CuboidId, CuboidStats, SegmentRange, StateKind};
use crate::storage::block::{for_each_block, write_cuboid};
use crate::storage::SegmentStore;
use aggregate::{Aggregator, Mode};

/// Reports progress (fraction done, what is happening). Returning an error aborts the build:
/// that is how a discarded job or a lost lease stops a running build.
pub type Progress = Arc<dyn Fn(f64, &str) -> Result<()> + Send + Sync>;

/// What a finished build or merge wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildOutput {
    pub cuboids: Vec<CuboidStats>,
    pub source_rows: u64,
    pub size_bytes: u64,
}

/// Where source files are and how big blocks are.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub source_url: std::path::PathBuf,
    pub block_rows: usize,
}

fn dim_fields(layout: &CubeLayout, cuboid: CuboidId) -> Vec<Field> {
    layout
        .cuboid_columns(cuboid)
        .into_iter()
        .map(|i| {
            let rk = &layout.rowkey[i];
            Field::new(&rk.name, rk.source.data_type.clone(), true)
        })
        .collect()
}

fn measure_specs(layout: &CubeLayout) -> Vec<(String, StateKind)> {
    layout
        .measures
        .iter()
        .map(|m| (m.name.clone(), m.state))
        .collect()
}

/// Builds every cuboid of `layout` for `range` from the source tables into `segment`.
pub async fn build_segment(
    layout: Arc<CubeLayout>,
    opts: &BuildOptions,
    store: Arc<dyn SegmentStore>,
    segment: &str,
    range: Option<SegmentRange>,
    progress: Progress,
) -> Result<BuildOutput> {
    progress(0.0, "reading the flat table")?;
    let ctx = source::source_context(&layout.tables, &opts.source_url).await?;
    let sql = source::flat_table_sql(&layout, range.as_ref());
    let df = ctx.sql(&sql).await?;
    let mut stream = df.execute_stream().await?;

    let base = layout.base_cuboid();
    let ndims = layout.rowkey.len();
    let mut agg = Aggregator::new(
        Mode::Raw,
        dim_fields(&layout, base),
        &measure_specs(&layout),
    )?;
    let mut inputs_of: Vec<Option<usize>> = Vec::new();
    let mut next_input = ndims;
    for m in &layout.measures {
        inputs_of.push(m.input.as_ref().map(|_| {
            next_input += 1;
            next_input - 1
        }));
    }
    let mut batches_seen = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let dims: Vec<ArrayRef> = batch.columns()[..ndims].to_vec();
        let inputs: Vec<Option<ArrayRef>> = inputs_of
            .iter()
            .map(|i| i.map(|i| batch.column(i).clone()))
            .collect();
        agg.update(&dims, &inputs, batch.num_rows())?;
        batches_seen += 1;
        if batches_seen.is_multiple_of(64) {
            progress(0.0, &format!("flat table: {} rows read", agg.input_rows()))?;
        }
    }
    let source_rows = agg.input_rows();
    let segment = segment.to_string();
    let block_rows = opts.block_rows;
    tokio::task::spawn_blocking(move || {
        let schema = agg.output_schema();
        let base_rows = agg.finish(block_rows.max(8192))?;
        build_cuboids(
            &layout,
            store.as_ref(),
            &segment,
            schema,
            base_rows,
            block_rows,
            &progress,
            source_rows,
        )
    })
    .await
    .map_err(|e| Error::Refused(format!("build task failed: {e}")))?
}

/// Writes the base cuboid, then each other cuboid aggregated from its smallest built parent.
/// Parents are streamed back from the store block by block, so memory holds one cuboid being
/// aggregated at a time, not the whole cube.
#[allow(clippy::too_many_arguments)]
fn build_cuboids(
    layout: &CubeLayout,
    store: &dyn SegmentStore,
    segment: &str,
    base_schema: SchemaRef,
    base_rows: Vec<RecordBatch>,
    block_rows: usize,
    progress: &Progress,
    source_rows: u64,
) -> Result<BuildOutput> {
    let total = layout.cuboids.len();
    let base = layout.base_cuboid();
    let mut built: HashMap<CuboidId, u64> = HashMap::new();
    let mut stats = Vec::new();
    let mut write =
        |c: CuboidId, schema: &SchemaRef, rows: &[RecordBatch], dims: usize| -> Result<u64> {
            let m = write_cuboid(store, segment, c, schema, rows, dims, block_rows)?;
            stats.push(CuboidStats {
                id: c,
                rows: m.rows,
                blocks: m.blocks.len() as u32,
                bytes: m.bytes(),
            });
            Ok(m.rows)
        };
    let rows = write(base, &base_schema, &base_rows, layout.rowkey.len())?;
    drop(base_rows);
    built.insert(base, rows);
    progress(
        1.0 / total as f64,
        &format!("cuboid 1/{total} (base, {rows} rows)"),
    )?;

    let specs = measure_specs(layout);
    for (done, &child) in layout.cuboids.iter().filter(|&&c| c != base).enumerate() {
        let (&parent, &parent_rows) = built
            .iter()
            .filter(|(&p, _)| cuboid::covers(p, child))
            .min_by_key(|(&p, &rows)| (rows, p.count_ones(), p))
            .ok_or_else(|| {
                Error::invalid("cuboid plan", format!("no parent for cuboid {child}"))
            })?;
        let parent_cols = layout.cuboid_columns(parent);
        let positions: Vec<usize> = layout
            .cuboid_columns(child)
            .iter()
            .map(|c| {
                parent_cols
                    .iter()
                    .position(|p| p == c)
                    .expect("parent covers child")
            })
            .collect();
        let mut agg = Aggregator::new(Mode::Merge, dim_fields(layout, child), &specs)?;
        for_each_block(store, segment, parent, |b| {
            let dims: Vec<ArrayRef> = positions.iter().map(|&i| b.column(i).clone()).collect();
            let inputs: Vec<Option<ArrayRef>> = (0..specs.len())
                .map(|m| Some(b.column(parent_cols.len() + m).clone()))
                .collect();
            agg.update(&dims, &inputs, b.num_rows())
        })?;
        let schema = agg.output_schema();
        let out = agg.finish(block_rows.max(8192))?;
        let rows = write(child, &schema, &out, positions.len())?;
        progress(
            (done + 2) as f64 / total as f64,
            &format!(
                "cuboid {}/{total} ({rows} rows, from {parent_rows} rows of its parent)",
                done + 2
            ),
        )?;
        built.insert(child, rows);
    }
    let size_bytes = stats.iter().map(|c| c.bytes).sum();
    Ok(BuildOutput {
        cuboids: stats,
        source_rows,
        size_bytes,
    })
}

/// Merges the stored cuboids of `sources` (adjacent READY segments) into `target`,
/// re-aggregating each cuboid; reads verify block checksums. Synchronous: run it off the
/// async runtime.
pub fn merge_segments(
    layout: &CubeLayout,
    store: &dyn SegmentStore,
    sources: &[String],
    target: &str,
    block_rows: usize,
    progress: &Progress,
) -> Result<Vec<CuboidStats>> {
    let specs = measure_specs(layout);
    let total = layout.cuboids.len();
    let mut stats = Vec::new();
    for (i, &c) in layout.cuboids.iter().enumerate() {
        let dims = dim_fields(layout, c);
        let nd = dims.len();
        let mut agg = Aggregator::new(Mode::Merge, dims, &specs)?;
        for s in sources {
            for_each_block(store, s, c, |b| {
                let d: Vec<ArrayRef> = b.columns()[..nd].to_vec();
                let inputs: Vec<Option<ArrayRef>> = (0..specs.len())
                    .map(|m| Some(b.column(nd + m).clone()))
                    .collect();
                agg.update(&d, &inputs, b.num_rows())
            })?;
        }
        let schema = agg.output_schema();
        let rows = agg.finish(block_rows.max(8192))?;
        let m = write_cuboid(store, target, c, &schema, &rows, nd, block_rows)?;
        stats.push(CuboidStats {
            id: c,
            rows: m.rows,
            blocks: m.blocks.len() as u32,
            bytes: m.bytes(),
        });
        progress(
            (i + 1) as f64 / total as f64,
            &format!("merged cuboid {}/{total} ({} rows)", i + 1, m.rows),
        )?;
    }
    Ok(stats)
}
