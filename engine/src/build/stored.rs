//! Rows stored as they are, not aggregated, under reserved storage ids (see
//! [`crate::model::cuboid::FIRST_RESERVED_ID`]): the lookup snapshots of a segment (each lookup
//! table as it was at build time) and its table index (fact rows sorted by the index's sort
//! columns). Both use the cuboid block/manifest format with every column a "dimension", so
//! per-block min/max prunes them like cuboids.
//!
//! A merge copies the newest merged segment's snapshot blocks and merges the table indexes
//! of the merged segments in sort order; neither rereads the source.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{interleave_record_batch, SortOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::TableReference;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;

use super::{source, BuildOptions, Progress};
use crate::error::{Error, Result};
use crate::model::cuboid::{snapshot_id, TABLE_INDEX_ID};
use crate::model::{sql_type_name, ColumnDesc, CubeLayout, CuboidId, CuboidStats, LookupSnapshot};
use crate::model::{ResolvedTableIndex, SegmentRange, TableDesc};
use crate::storage::block::{decode_block, read_manifest, CuboidWriter};
use crate::storage::SegmentStore;

/// Where stored rows go: storage id `id` of `segment`, in blocks of `block_rows`.
struct Target<'a> {
    store: Arc<dyn SegmentStore>,
    segment: &'a str,
    id: CuboidId,
    block_rows: usize,
}

/// Runs `sql` in `ctx` and writes its rows, in the order they come, to `target`. The rows
/// stream from DataFusion to a writer thread (store writes block), one block in memory.
async fn write_query(
    ctx: &SessionContext,
    sql: &str,
    target: Target<'_>,
    progress: &Progress,
    what: &str,
) -> Result<(SchemaRef, CuboidStats)> {
    let Target {
        store,
        segment,
        id,
        block_rows,
    } = target;
    let df = ctx.sql(sql).await?;
    let mut stream = df.execute_stream().await?;
    let schema = stream.schema();
    let dims = schema.fields().len();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(2);
    let segment = segment.to_string();
    let writer_schema = schema.clone();
    let writer = tokio::task::spawn_blocking(move || -> Result<CuboidStats> {
        let mut w = CuboidWriter::new(
            store.as_ref(),
            &segment,
            id,
            writer_schema,
            dims,
            block_rows,
        );
        while let Some(b) = rx.blocking_recv() {
            w.write(b)?;
        }
        let m = w.finish()?;
        Ok(CuboidStats {
            id,
            rows: m.rows,
            blocks: m.blocks.len() as u32,
            bytes: m.bytes(),
        })
    });
    let mut rows = 0u64;
    let mut batches = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        batches += 1;
        if tx.send(batch).await.is_err() {
            break; // the writer failed: its error is reported below
        }
        if batches.is_multiple_of(64) {
            progress(0.0, &format!("{what}: {rows} rows written"))?;
        }
    }
    drop(tx);
    let stats = writer
        .await
        .map_err(|e| Error::Refused(format!("{what}: write task failed: {e}")))??;
    Ok((schema, stats))
}

/// Stores a snapshot of every lookup table of the model (once per table, whatever its
/// aliases) in `segment`, read through `ctx` (the build's source tables).
pub(super) async fn build_snapshots(
    layout: &CubeLayout,
    ctx: &SessionContext,
    store: &Arc<dyn SegmentStore>,
    segment: &str,
    block_rows: usize,
    progress: &Progress,
) -> Result<Vec<LookupSnapshot>> {
    let mut out: Vec<LookupSnapshot> = Vec::new();
    for j in &layout.joins {
        if out.iter().any(|s| s.table.eq_ignore_ascii_case(&j.table)) {
            continue;
        }
        let what = format!("snapshot of lookup table {}", j.table);
        progress(0.0, &what)?;
        let id = snapshot_id(out.len());
        let (schema, stats) = write_query(
            ctx,
            &source::snapshot_sql(j),
            Target {
                store: store.clone(),
                segment,
                id,
                block_rows,
            },
            progress,
            &what,
        )
        .await?;
        let columns = schema
            .fields()
            .iter()
            .map(|f| ColumnDesc {
                name: f.name().clone(),
                data_type: sql_type_name(f.data_type())
                    .unwrap_or_else(|| f.data_type().to_string()),
            })
            .collect();
        out.push(LookupSnapshot {
            table: j.table.clone(),
            stats,
            columns,
        });
    }
    Ok(out)
}

/// A session that sorts within `memory_bytes`, spilling to `dir`.
fn sorting_context(memory_bytes: usize, dir: &Path) -> Result<SessionContext> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(memory_bytes.max(16 << 20))))
        .with_disk_manager_builder(
            DiskManagerBuilder::default()
                .with_mode(DiskManagerMode::Directories(vec![dir.to_path_buf()])),
        )
        .build_arc()?;
    let mut config = SessionConfig::new();
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

/// Stores the table index of `range` in `segment` (`None` when the cube has none): the fact
/// rows sorted within the build's memory budget (DataFusion's external sort spills).
pub(super) async fn build_table_index(
    layout: &CubeLayout,
    opts: &BuildOptions,
    fact: &TableDesc,
    store: &Arc<dyn SegmentStore>,
    segment: &str,
    range: Option<&SegmentRange>,
    progress: &Progress,
) -> Result<Option<CuboidStats>> {
    let Some(sql) = source::table_index_sql(layout, range) else {
        return Ok(None);
    };
    std::fs::create_dir_all(&opts.spill.dir)
        .map_err(|e| Error::io_path("create spill directory", &opts.spill.dir, e))?;
    let ctx = sorting_context(opts.spill.memory_bytes, &opts.spill.dir)?;
    ctx.register_table(
        TableReference::bare(fact.name.as_str()),
        crate::source::table_provider(fact, &opts.source_url)?,
    )?;
    let (_, stats) = write_query(
        &ctx,
        &sql,
        Target {
            store: store.clone(),
            segment,
            id: TABLE_INDEX_ID,
            block_rows: opts.block_rows,
        },
        progress,
        "table index",
    )
    .await?;
    Ok(Some(stats))
}

/// Copies stored rows (blocks and manifest, bytes unchanged) from one segment to another.
fn copy_stored(store: &dyn SegmentStore, from: &str, to: &str, id: CuboidId) -> Result<()> {
    let manifest = read_manifest(store, from, id)?;
    for i in 0..manifest.blocks.len() as u32 {
        store.put_block(to, id, i, &store.get_block(from, id, i)?)?;
    }
    store.put_manifest(to, id, &store.get_manifest(from, id)?)
}

/// Copies the snapshots of `newest` (the newest merged segment) into `target`.
pub fn copy_snapshots(
    store: &dyn SegmentStore,
    newest: &str,
    snapshots: &[LookupSnapshot],
    target: &str,
) -> Result<Vec<LookupSnapshot>> {
    for s in snapshots {
        copy_stored(store, newest, target, s.stats.id)?;
    }
    Ok(snapshots.to_vec())
}

/// The blocks of stored rows, read one at a time.
struct Blocks<'a> {
    store: &'a dyn SegmentStore,
    segment: String,
    id: CuboidId,
    manifest: crate::storage::CuboidManifest,
    next: usize,
}

impl<'a> Blocks<'a> {
    fn open(store: &'a dyn SegmentStore, segment: &str, id: CuboidId) -> Result<Self> {
        Ok(Blocks {
            manifest: read_manifest(store, segment, id)?,
            store,
            segment: segment.to_string(),
            id,
            next: 0,
        })
    }

    /// The next non-empty block.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        while let Some(meta) = self.manifest.blocks.get(self.next) {
            let i = self.next as u32;
            self.next += 1;
            let bytes = self.store.get_block(&self.segment, self.id, i)?;
            let b = decode_block(&bytes, meta, &self.segment, self.id, i)?;
            if b.num_rows() > 0 {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }
}

/// One merged segment's table index while merging: its current block and row.
struct Run<'a> {
    blocks: Blocks<'a>,
    batch: RecordBatch,
    keys: Option<Rows>,
    pos: usize,
}

/// Merges the table indexes of `sources` (in range order) into `target`, keeping the sort
/// order; memory holds one block per source and one output block.
pub fn merge_table_indexes(
    table_index: Option<&ResolvedTableIndex>,
    store: &dyn SegmentStore,
    sources: &[String],
    target: &str,
    block_rows: usize,
    progress: &Progress,
) -> Result<Option<CuboidStats>> {
    let Some(ti) = table_index else {
        return Ok(None);
    };
    let schema = ti.schema();
    let converter = RowConverter::new(
        ti.sort
            .iter()
            .map(|&i| {
                SortField::new_with_options(
                    ti.columns[i].data_type.clone(),
                    SortOptions {
                        descending: false,
                        nulls_first: false,
                    },
                )
            })
            .collect(),
    )?;
    // Without sort columns the runs are concatenated in range order.
    let keys_of = |b: &RecordBatch| -> Result<Option<Rows>> {
        if ti.sort.is_empty() {
            return Ok(None);
        }
        let cols: Vec<_> = ti.sort.iter().map(|&i| b.column(i).clone()).collect();
        Ok(Some(converter.convert_columns(&cols)?))
    };
    let mut runs: Vec<Run> = Vec::new();
    for s in sources {
        let mut blocks = Blocks::open(store, s, TABLE_INDEX_ID)?;
        if let Some(batch) = blocks.next_batch()? {
            let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())?;
            runs.push(Run {
                keys: keys_of(&batch)?,
                blocks,
                batch,
                pos: 0,
            });
        }
    }
    let dims = schema.fields().len();
    let mut w = CuboidWriter::new(
        store,
        target,
        TABLE_INDEX_ID,
        schema.clone(),
        dims,
        block_rows,
    );
    let mut pending: Vec<(usize, usize)> = Vec::new();
    let mut written = 0u64;
    let flush = |runs: &[Run], pending: &mut Vec<(usize, usize)>, w: &mut CuboidWriter| {
        if pending.is_empty() {
            return Ok::<_, Error>(());
        }
        let batches: Vec<&RecordBatch> = runs.iter().map(|r| &r.batch).collect();
        w.write(interleave_record_batch(&batches, pending)?)?;
        pending.clear();
        Ok(())
    };
    // Few segments are merged at once: a linear scan for the smallest key is enough. Equal
    // keys take the earlier segment first.
    while let Some(min) = (0..runs.len())
        .filter(|&r| runs[r].pos < runs[r].batch.num_rows())
        .min_by(|&a, &b| {
            let (ra, rb) = (&runs[a], &runs[b]);
            match (&ra.keys, &rb.keys) {
                (Some(ka), Some(kb)) => ka.row(ra.pos).cmp(&kb.row(rb.pos)),
                _ => std::cmp::Ordering::Equal,
            }
            .then(a.cmp(&b))
        })
    {
        pending.push((min, runs[min].pos));
        runs[min].pos += 1;
        if pending.len() >= block_rows.max(1) {
            written += pending.len() as u64;
            flush(&runs, &mut pending, &mut w)?;
            progress(0.0, &format!("merging table index: {written} rows written"))?;
        }
        if runs[min].pos == runs[min].batch.num_rows() {
            // The block is used up: write what refers to it before replacing it.
            flush(&runs, &mut pending, &mut w)?;
            if let Some(next) = runs[min].blocks.next_batch()? {
                let next = RecordBatch::try_new(schema.clone(), next.columns().to_vec())?;
                runs[min].keys = keys_of(&next)?;
                runs[min].batch = next;
                runs[min].pos = 0;
            }
        }
    }
    flush(&runs, &mut pending, &mut w)?;
    let m = w.finish()?;
    Ok(Some(CuboidStats {
        id: TABLE_INDEX_ID,
        rows: m.rows,
        blocks: m.blocks.len() as u32,
        bytes: m.bytes(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelColumn;
    use crate::storage::block::{read_cuboid, write_cuboid};
    use crate::storage::LocalSegmentStore;
    use datafusion::arrow::array::{Int32Array, StringArray};
    use datafusion::arrow::compute::concat_batches;
    use datafusion::arrow::datatypes::DataType;

    fn column(name: &str, data_type: DataType) -> ModelColumn {
        ModelColumn {
            table: "fact".into(),
            column: name.into(),
            data_type,
            expression: None,
        }
    }

    #[test]
    fn merged_table_indexes_keep_the_sort_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalSegmentStore::open(dir.path()).unwrap();
        let ti = ResolvedTableIndex {
            columns: vec![column("k", DataType::Int32), column("s", DataType::Utf8)],
            sort: vec![0],
        };
        let schema = ti.schema();
        // Two segments whose keys interleave (sorted within each, nulls last).
        let segment = |id: &str, keys: Vec<Option<i32>>| {
            let names: Vec<String> = keys.iter().map(|k| format!("{id}{k:?}")).collect();
            let b = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int32Array::from(keys)),
                    Arc::new(StringArray::from(names)),
                ],
            )
            .unwrap();
            write_cuboid(&store, id, TABLE_INDEX_ID, &schema, &[b], 2, 3).unwrap();
        };
        segment("aa", vec![Some(1), Some(4), Some(4), Some(9), None]);
        segment(
            "bb",
            vec![Some(2), Some(3), Some(4), Some(10), Some(11), Some(12)],
        );
        let progress: Progress = Arc::new(|_, _| Ok(()));
        let sources = ["aa".to_string(), "bb".to_string()];
        let stats = merge_table_indexes(Some(&ti), &store, &sources, "cc", 4, &progress)
            .unwrap()
            .unwrap();
        assert_eq!((stats.rows, stats.blocks), (11, 3));
        let (_, blocks) = read_cuboid(&store, "cc", TABLE_INDEX_ID).unwrap();
        let all = concat_batches(&schema, &blocks).unwrap();
        let keys: Vec<Option<i32>> = all
            .column(0)
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap()
            .iter()
            .collect();
        let want = [1, 2, 3, 4, 4, 4, 9, 10, 11, 12].map(Some);
        assert_eq!(keys[..10], want);
        assert_eq!(keys[10], None);
        // Equal keys: the earlier segment's rows first, each row whole.
        let names = all
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(names.value(3), "aaSome(4)");
        assert_eq!(names.value(5), "bbSome(4)");
        assert_eq!(names.value(10), "aaNone");
    }
}
