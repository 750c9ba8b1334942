//! Building cuboids on a cluster (`kylin.job.engine=ballista`): the job engine plans each
//! cuboid ([`super::plan`]) and hands the plan, ending in a [`CuboidSinkExec`], to a
//! [`PlanRunner`]; the cluster's executors aggregate and write the blocks and the manifest
//! into the shared segment store, and the job engine commits the segment as after a local
//! build. The engine knows nothing of Ballista: the runner comes from the caller.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::UInt64Type;
use datafusion::physical_plan::ExecutionPlan;
use futures::future::BoxFuture;

use super::plan::{base_cuboid_plan, child_cuboid_plan, sink_schema, CuboidSinkExec, PlanOptions};
use crate::error::{Error, Result};
use crate::model::{CubeLayout, CuboidId, CuboidStats};
use crate::storage::SegmentStore;

/// Runs a cuboid plan to completion somewhere (a Ballista cluster) and returns its output.
pub trait PlanRunner: Send + Sync + fmt::Debug {
    fn run(&self, plan: Arc<dyn ExecutionPlan>) -> BoxFuture<'_, Result<Vec<RecordBatch>>>;
}

/// The stats of the one cuboid a [`CuboidSinkExec`] wrote (its one output row).
pub fn sink_stats(batches: &[RecordBatch]) -> Result<CuboidStats> {
    let rows: Vec<[u64; 4]> = batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| {
            if b.schema().fields() != sink_schema().fields() {
                return Err(Error::invalid(
                    "cuboid sink output",
                    format!("unexpected schema {:?}", b.schema()),
                ));
            }
            let col = |i: usize| b.column(i).as_primitive::<UInt64Type>().value(0);
            Ok([col(0), col(1), col(2), col(3)])
        })
        .collect::<Result<_>>()?;
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    match (rows.as_slice(), total) {
        ([[id, rows, blocks, bytes]], 1) => Ok(CuboidStats {
            id: *id,
            rows: *rows,
            blocks: u32::try_from(*blocks)
                .map_err(|_| Error::invalid("cuboid sink output", "too many blocks"))?,
            bytes: *bytes,
        }),
        _ => Err(Error::invalid(
            "cuboid sink output",
            format!("expected one stats row, got {total}"),
        )),
    }
}

/// Aggregates the base cuboid of `segment` from `flat` (the physical plan of the flat table)
/// on the cluster.
pub async fn build_base(
    runner: &dyn PlanRunner,
    layout: &CubeLayout,
    store: Arc<dyn SegmentStore>,
    segment: &str,
    flat: Arc<dyn ExecutionPlan>,
    opts: &PlanOptions,
    block_rows: usize,
) -> Result<CuboidStats> {
    let base = layout.base_cuboid();
    let plan = base_cuboid_plan(layout, store.clone(), flat, opts)?;
    let sink =
        CuboidSinkExec::try_new(plan, store, segment, base, layout.rowkey.len(), block_rows)?;
    expect_cuboid(base, sink_stats(&runner.run(Arc::new(sink)).await?)?)
}

/// Aggregates cuboid `child` of `segment` from its stored cuboid `parent` on the cluster.
#[allow(clippy::too_many_arguments)]
pub async fn build_child(
    runner: &dyn PlanRunner,
    layout: &CubeLayout,
    store: Arc<dyn SegmentStore>,
    segment: &str,
    child: CuboidId,
    parent: CuboidId,
    opts: &PlanOptions,
    block_rows: usize,
) -> Result<CuboidStats> {
    let plan = child_cuboid_plan(
        layout,
        store.clone(),
        vec![segment.to_string()],
        child,
        parent,
        opts,
    )?;
    let dims = layout.cuboid_columns(child).len();
    let sink = CuboidSinkExec::try_new(plan, store, segment, child, dims, block_rows)?;
    expect_cuboid(child, sink_stats(&runner.run(Arc::new(sink)).await?)?)
}

fn expect_cuboid(want: CuboidId, got: CuboidStats) -> Result<CuboidStats> {
    if got.id != want {
        return Err(Error::invalid(
            "cuboid sink output",
            format!("asked for cuboid {want}, the sink wrote {}", got.id),
        ));
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::UInt64Array;

    fn row(values: [u64; 4]) -> RecordBatch {
        RecordBatch::try_new(
            sink_schema(),
            values
                .iter()
                .map(|&v| Arc::new(UInt64Array::from(vec![v])) as _)
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn sink_stats_take_exactly_one_row() {
        let st = sink_stats(&[row([7, 100, 2, 4096])]).unwrap();
        assert_eq!(
            st,
            CuboidStats {
                id: 7,
                rows: 100,
                blocks: 2,
                bytes: 4096
            }
        );
        let empty = RecordBatch::new_empty(sink_schema());
        assert_eq!(
            sink_stats(&[empty.clone(), row([7, 1, 1, 1])]).unwrap().id,
            7
        );
        for bad in [
            vec![],
            vec![empty],
            vec![row([1, 1, 1, 1]), row([2, 1, 1, 1])],
        ] {
            let e = sink_stats(&bad).unwrap_err().to_string();
            assert!(e.contains("one stats row"), "{e}");
        }
        assert!(expect_cuboid(3, st).is_err());
    }
}
