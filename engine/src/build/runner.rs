//! Where cuboid plans run. Every build, merge and cube extension plans each cuboid
//! ([`super::plan`]) and hands the plan, ending in a [`CuboidSinkExec`], to a [`PlanRunner`]:
//! [`LocalRunner`] runs it on this process's DataFusion runtime (`kylin.job.engine=local`),
//! a cluster runner on Ballista's executors (`kylin.job.engine=ballista`), which aggregate
//! and write the blocks and the manifest into the shared segment store. Either way the job
//! engine then commits the segment. One code path: the engine knows nothing of Ballista,
//! the cluster runner comes from the caller.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::UInt64Type;
use datafusion::physical_plan::ExecutionPlan;
use futures::future::BoxFuture;

use super::plan::{base_cuboid_plan, child_cuboid_plan, sink_schema, CuboidSinkExec, PlanOptions};
use crate::error::{Error, Result};
use crate::model::{CubeLayout, CuboidId, CuboidStats};
use crate::storage::SegmentStore;

/// Runs a cuboid plan to completion somewhere (here, a Ballista cluster) and returns its
/// output.
pub trait PlanRunner: Send + Sync + fmt::Debug {
    /// The plan's output. Dropping the future before it is ready must stop the plan where it
    /// runs (cancel the cluster's job): that is how a discarded job or a lost lease stops a
    /// build while a plan runs.
    fn run(&self, plan: Arc<dyn ExecutionPlan>) -> BoxFuture<'_, Result<Vec<RecordBatch>>>;
}

/// Runs plans on this process's DataFusion runtime: the default engine. Dropping the run
/// drops the plan's streams, which stops its tasks.
#[derive(Debug, Default)]
pub struct LocalRunner;

impl PlanRunner for LocalRunner {
    fn run(&self, plan: Arc<dyn ExecutionPlan>) -> BoxFuture<'_, Result<Vec<RecordBatch>>> {
        Box::pin(async move {
            let ctx = Arc::new(datafusion::execution::TaskContext::default());
            Ok(datafusion::physical_plan::collect(plan, ctx).await?)
        })
    }
}

/// Asked while a plan runs whether the build goes on: an error (a discarded job, a lost
/// lease) stops it. The build's progress callback, with a message.
pub type KeepGoing<'a> = &'a (dyn Fn() -> Result<()> + Send + Sync);

/// How often a running plan asks [`KeepGoing`].
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Runs `plan` on `runner`, asking `keep_going` every [`CHECK_EVERY`] while it runs. Its
/// error drops the running plan (which stops it, on the cluster too) and is returned: a base
/// cuboid plan runs for minutes on a large table, too long to wait for before a discarded
/// job stops.
async fn run_checked(
    runner: &dyn PlanRunner,
    plan: Arc<dyn ExecutionPlan>,
    keep_going: KeepGoing<'_>,
) -> Result<Vec<RecordBatch>> {
    let mut run = runner.run(plan);
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            out = &mut run => return out,
            _ = ticks.tick() => keep_going()?,
        }
    }
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
/// on `runner`.
#[allow(clippy::too_many_arguments)]
pub async fn build_base(
    runner: &dyn PlanRunner,
    layout: &CubeLayout,
    store: Arc<dyn SegmentStore>,
    segment: &str,
    flat: Arc<dyn ExecutionPlan>,
    opts: &PlanOptions,
    block_rows: usize,
    keep_going: KeepGoing<'_>,
) -> Result<CuboidStats> {
    let base = layout.base_cuboid();
    let plan = base_cuboid_plan(layout, store.clone(), flat, opts)?;
    let sink =
        CuboidSinkExec::try_new(plan, store, segment, base, layout.rowkey.len(), block_rows)?;
    let out = run_checked(runner, Arc::new(sink), keep_going).await?;
    expect_cuboid(base, sink_stats(&out)?)
}

/// Aggregates cuboid `child` of `segment` from its stored cuboid `parent` on `runner`.
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
    keep_going: KeepGoing<'_>,
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
    let out = run_checked(runner, Arc::new(sink), keep_going).await?;
    expect_cuboid(child, sink_stats(&out)?)
}

/// Re-aggregates cuboid `cuboid` of every segment of `sources` into `target` on `runner`.
#[allow(clippy::too_many_arguments)]
pub async fn merge_cuboid(
    runner: &dyn PlanRunner,
    layout: &CubeLayout,
    store: Arc<dyn SegmentStore>,
    sources: &[String],
    target: &str,
    cuboid: CuboidId,
    opts: &PlanOptions,
    block_rows: usize,
    keep_going: KeepGoing<'_>,
) -> Result<CuboidStats> {
    let plan = child_cuboid_plan(
        layout,
        store.clone(),
        sources.to_vec(),
        cuboid,
        cuboid,
        opts,
    )?;
    let dims = layout.cuboid_columns(cuboid).len();
    let sink = CuboidSinkExec::try_new(plan, store, target, cuboid, dims, block_rows)?;
    let out = run_checked(runner, Arc::new(sink), keep_going).await?;
    expect_cuboid(cuboid, sink_stats(&out)?)
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
pub(crate) mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, UInt64Array};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::datasource::memory::MemorySourceConfig;

    /// Writes the base cuboid of `segment` from flat-table `columns` (the dimensions in
    /// rowkey order, then one input per measure that has one), as a build does, in blocks of
    /// `block_rows` rows.
    pub(crate) async fn write_base(
        layout: &CubeLayout,
        store: &Arc<dyn SegmentStore>,
        segment: &str,
        columns: Vec<ArrayRef>,
        block_rows: usize,
    ) -> CuboidStats {
        let fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let name = layout
                    .rowkey
                    .get(i)
                    .map_or_else(|| format!("__m{i}"), |rk| rk.name.clone());
                Field::new(name, c.data_type().clone(), true)
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let flat = MemorySourceConfig::try_new_exec(&[vec![batch]], schema, None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let opts = PlanOptions {
            partitions: 2,
            memory_bytes_per_partition: 16 << 20,
            spill_dir: dir.path().into(),
            batch_rows: 1024,
        };
        build_base(
            &LocalRunner,
            layout,
            store.clone(),
            segment,
            flat,
            &opts,
            block_rows,
            &|| Ok(()),
        )
        .await
        .unwrap()
    }

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

    /// A runner whose plans never finish; it records when a running plan is dropped.
    #[derive(Debug, Default)]
    struct Stuck {
        dropped: Arc<std::sync::atomic::AtomicBool>,
    }

    struct DropFlag(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl PlanRunner for Stuck {
        fn run(&self, _: Arc<dyn ExecutionPlan>) -> BoxFuture<'_, Result<Vec<RecordBatch>>> {
            let flag = DropFlag(self.dropped.clone());
            Box::pin(async move {
                let _flag = flag;
                futures::future::pending::<()>().await;
                unreachable!()
            })
        }
    }

    #[tokio::test]
    async fn a_stopped_build_drops_its_running_plan() {
        let runner = Stuck::default();
        let plan: Arc<dyn ExecutionPlan> = Arc::new(
            datafusion::physical_plan::empty::EmptyExec::new(sink_schema()),
        );
        let asked = std::sync::atomic::AtomicUsize::new(0);
        let keep_going = || {
            if asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                Ok(())
            } else {
                Err(Error::Refused("job discarded".into()))
            }
        };
        let e = run_checked(&runner, plan, &keep_going).await.unwrap_err();
        assert!(e.to_string().contains("job discarded"), "{e}");
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert!(runner.dropped.load(std::sync::atomic::Ordering::SeqCst));
    }
}
