//! Adding cuboids to segments that are already built, from their stored cuboids: what the
//! cube planner's `--apply` runs for every READY segment when the descriptor gains cuboids
//! (`mandatory_dimension_set_list`), and what a merge runs for cuboids some merged segments
//! lack. The source is never read: each new cuboid is re-aggregated from the smallest stored
//! cuboid of the segment that covers it — the base cuboid at worst, which covers every one.
//!
//! The new blocks are written under the segment's id next to its other cuboids; nothing
//! reads them until the caller lists them in the segment's metadata (a check-and-put), so a
//! failed extension leaves only unreferenced blocks, overwritten by the next attempt.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::{cuboid, CubeLayout, CuboidId, CuboidStats};
use crate::storage::SegmentStore;

use super::{runner, BuildOptions, Progress};

/// The cuboids of `layout` that `stored` (a segment's cuboids) lacks, largest first (so a
/// new cuboid can be the parent of a smaller new one).
pub fn missing_cuboids(layout: &CubeLayout, stored: &[CuboidStats]) -> Vec<CuboidId> {
    layout
        .cuboids
        .iter()
        .copied()
        .filter(|c| !stored.iter().any(|s| s.id == *c))
        .collect()
}

/// Builds `cuboids` into `segment`, whose stored cuboids are `stored` (the base among them),
/// each from the stored or just-built cuboid covering it with the fewest rows. Returns the
/// new cuboids' stats in the order of `cuboids`; the caller syncs the segment and commits.
/// Each cuboid is a plan on `opts.runner()` that aggregates in `opts.threads` partitions
/// (one cuboid at a time: a larger one may be the parent of the next), sharing the budget.
pub async fn extend_segment(
    layout: &CubeLayout,
    store: &Arc<dyn SegmentStore>,
    segment: &str,
    stored: &[CuboidStats],
    cuboids: &[CuboidId],
    opts: &BuildOptions,
    progress: &Progress,
) -> Result<Vec<CuboidStats>> {
    let base = layout.base_cuboid();
    if !stored.iter().any(|s| s.id == base) {
        return Err(Error::Refused(format!(
            "segment {segment} has no base cuboid: its cuboids cannot be extended without \
             rereading the source (refresh it)"
        )));
    }
    let runner = opts.runner();
    let threads = opts.threads.max(1);
    let plan_opts = opts.plan_options(threads, opts.spill.memory_bytes / threads);
    let mut have: Vec<(CuboidId, u64)> = stored.iter().map(|s| (s.id, s.rows)).collect();
    let mut out = Vec::with_capacity(cuboids.len());
    // Largest first, whatever order the caller gave.
    let mut order: Vec<CuboidId> = cuboids.to_vec();
    order.sort_by(|a, b| b.count_ones().cmp(&a.count_ones()).then(b.cmp(a)));
    for (i, &child) in order.iter().enumerate() {
        let (parent_rows, parent) = have
            .iter()
            .filter(|(c, _)| *c != child && cuboid::covers(*c, child))
            .map(|&(c, r)| (r, c))
            .min()
            .unwrap_or((0, base));
        progress(
            i as f64 / order.len() as f64,
            &format!(
                "segment {segment}: cuboid {child} ({}) from cuboid {parent} ({parent_rows} rows)",
                layout.cuboid_names(child).join(", ")
            ),
        )?;
        let running = || {
            progress(
                i as f64 / order.len() as f64,
                &format!("cuboid {child}: aggregating"),
            )
        };
        let st = runner::build_child(
            runner.as_ref(),
            layout,
            store.clone(),
            segment,
            child,
            parent,
            &plan_opts,
            opts.block_rows,
            &running,
        )
        .await?;
        have.push((child, st.rows));
        out.push(st);
    }
    progress(
        1.0,
        &format!("segment {segment}: {} cuboids added", out.len()),
    )?;
    out.sort_by_key(|st| cuboids.iter().position(|&c| c == st.id));
    Ok(out)
}

/// For a merge of segments whose stored cuboids differ (some built before the descriptor
/// gained cuboids): `layout` restricted to the cuboids every source has (the merge
/// re-aggregates those), and the rest, which [`extend_segment`] then builds in the merged
/// segment from its merged cuboids.
pub fn split_for_merge(
    layout: &CubeLayout,
    sources: &[&[CuboidStats]],
) -> (CubeLayout, Vec<CuboidId>) {
    let base = layout.base_cuboid();
    let (common, missing): (Vec<CuboidId>, Vec<CuboidId>) = layout
        .cuboids
        .iter()
        .copied()
        .partition(|&c| c == base || sources.iter().all(|s| s.iter().any(|st| st.id == c)));
    let mut merged = layout.clone();
    merged.cuboids = common;
    (merged, missing)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use datafusion::arrow::array::Int64Array;

    use crate::model::desc::{
        AggregationGroupDesc, ColumnDesc, CubeDesc, DimensionDesc, MeasureDesc, MeasureFunction,
        ModelDesc, SourceFormat, TableDesc,
    };
    use crate::model::resolve_cube;
    use crate::storage::block::read_cuboid;
    use crate::storage::LocalSegmentStore;

    fn layout() -> CubeLayout {
        layout_with(vec![
            MeasureDesc::simple("n", MeasureFunction::Count, None, None),
            MeasureDesc::simple("s", MeasureFunction::Sum, Some("v"), None),
        ])
    }

    /// A fact table `f(a, b, c, v)` of bigints; a cube on dimensions a, b, c with `measures`,
    /// groups (a, b) and (c), and the mandatory set (a, c) that crosses them.
    pub(crate) fn layout_with(measures: Vec<MeasureDesc>) -> CubeLayout {
        let col = |n: &str| ColumnDesc {
            name: n.into(),
            data_type: "bigint".into(),
        };
        let table = TableDesc {
            project: "p".into(),
            name: "f".into(),
            location: "f".into(),
            format: SourceFormat::Parquet,
            columns: vec![col("a"), col("b"), col("c"), col("v")],
            csv_delimiter: None,
            csv_header: None,
            partition_columns: vec![],
        };
        let model = ModelDesc {
            name: "m".into(),
            project: "p".into(),
            fact_table: "f".into(),
            lookups: vec![],
            computed_columns: vec![],
            partition: None,
            filter_condition: None,
        };
        let dim = |c: &str| DimensionDesc {
            name: None,
            column: Some(c.into()),
            table: None,
            derived: vec![],
        };
        let group = |inc: &[&str]| AggregationGroupDesc {
            includes: inc.iter().map(|s| s.to_string()).collect(),
            mandatory: vec![],
            hierarchies: vec![],
            joints: vec![],
        };
        let cube = CubeDesc {
            name: "c".into(),
            model: "m".into(),
            dimensions: vec![dim("a"), dim("b"), dim("c")],
            measures,
            aggregation_groups: vec![group(&["a", "b"]), group(&["c"])],
            rowkey: vec![],
            retention_range_days: None,
            auto_merge_time_ranges: vec![],
            table_index: None,
            // a + c crosses the groups.
            mandatory_dimension_set_list: vec![vec!["a".into(), "c".into()]],
            cuboid_black_list: vec![],
        };
        resolve_cube(&cube, &model, &[table], 4096).expect("resolves")
    }

    fn opts(dir: &std::path::Path) -> BuildOptions {
        BuildOptions {
            source_url: dir.into(),
            block_rows: 2,
            spill: super::super::spill::SpillOptions {
                memory_bytes: 16 << 20,
                dir: dir.into(),
            },
            threads: 1,
            cluster: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn new_cuboids_are_aggregated_from_the_stored_base() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn SegmentStore> =
            Arc::new(LocalSegmentStore::open(dir.path().join("store")).unwrap());
        let layout = layout();
        let o = opts(dir.path());
        // The base cuboid (a, b, c; n, s) of a segment, from flat rows (a, b, c, v).
        let i = |v: &[i64]| Arc::new(Int64Array::from(v.to_vec())) as _;
        let base = crate::build::runner::tests::write_base(
            &layout,
            &store,
            "5e6",
            vec![
                i(&[1, 1, 2, 2, 1]),
                i(&[1, 2, 1, 2, 1]),
                i(&[7, 7, 8, 7, 8]),
                i(&[10, 20, 30, 40, 50]),
            ],
            2,
        )
        .await;
        assert_eq!((base.id, base.rows), (0b111, 5));
        let missing = missing_cuboids(&layout, std::slice::from_ref(&base));
        assert!(missing.contains(&0b101), "{missing:?}");
        let progress: Progress = Arc::new(|_, _| Ok(()));
        let added = extend_segment(
            &layout,
            &store,
            "5e6",
            std::slice::from_ref(&base),
            &[0b101],
            &o,
            &progress,
        )
        .await
        .unwrap();
        assert_eq!(added.len(), 1);
        assert_eq!((added[0].id, added[0].rows), (0b101, 4));
        let (_, batches) = read_cuboid(store.as_ref(), "5e6", 0b101).unwrap();
        let b = datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        let col = |k: usize| {
            b.column(k)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        };
        // (a, c) → count, sum: (1,7) 2/30, (1,8) 1/50, (2,7) 1/40, (2,8) 1/30.
        assert_eq!(col(0), vec![1, 1, 2, 2]);
        assert_eq!(col(1), vec![7, 8, 7, 8]);
        assert_eq!(col(3), vec![30, 50, 40, 30]);
        // Without a base cuboid the segment cannot be extended.
        let e = extend_segment(&layout, &store, "5e6", &[], &[0b101], &o, &progress)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("no base cuboid"), "{e}");
        // A merge of a segment with the new cuboid and one without merges the common ones.
        let with: Vec<CuboidStats> = vec![base.clone(), added[0].clone()];
        let (merge_layout, rest) = split_for_merge(&layout, &[&with, std::slice::from_ref(&base)]);
        assert!(rest.contains(&0b101) && !merge_layout.cuboids.contains(&0b101));
        assert_eq!(merge_layout.cuboids[0], 0b111);
    }
}
