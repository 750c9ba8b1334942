//! Cube building: flat table → base cuboid → every other cuboid from its smallest built
//! parent → blocks in the segment store. Merging segments re-aggregates their stored cuboids.
//!
//! Nothing here touches the cube instance: the job that calls these functions marks the
//! segment READY (check-and-put) only after [`SegmentStore::sync_segment`] succeeded, so a
//! failed or killed build is never visible to queries.

pub mod aggregate;
pub mod extend;
pub mod plan;
pub mod progress;
pub mod runner;
pub mod source;
pub mod spill;
pub mod stored;
pub mod streaming;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use datafusion::arrow::datatypes::Field;
use futures::StreamExt;

use crate::dict::{for_each_value, measure_dict_name, GlobalDict};
use crate::error::{Error, Result};
use crate::model::{
    cuboid, CubeLayout, CuboidId, CuboidStats, LookupSnapshot, SegmentRange, StateKind,
};
use crate::storage::SegmentStore;
use progress::{Phase, Tracker};
use spill::SpillOptions;

/// Reports progress (fraction done, what is happening). Returning an error aborts the build:
/// that is how a discarded job or a lost lease stops a running build. What
/// [`build_segment`] reports is the overall fraction and never decreases (see [`progress`]);
/// the phase callbacks inside it get the fraction of their phase (0 = only a message).
pub type Progress = Arc<dyn Fn(f64, &str) -> Result<()> + Send + Sync>;

/// What a finished build or merge wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildOutput {
    pub cuboids: Vec<CuboidStats>,
    pub source_rows: u64,
    /// Bytes of the cuboids.
    pub size_bytes: u64,
    pub snapshots: Vec<LookupSnapshot>,
    pub table_index: Option<CuboidStats>,
}

/// Where source files are, how big blocks are, how much memory one aggregation may hold.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub source_url: std::path::PathBuf,
    pub block_rows: usize,
    /// The budget of all aggregations of the build together; cuboids built at the same time
    /// share it equally.
    pub spill: SpillOptions,
    /// Cuboids built at the same time.
    pub threads: usize,
    /// Where the cuboid plans run: `None` in this process ([`runner::LocalRunner`]), or on
    /// a cluster (`kylin.job.engine=ballista`) that shares the segment store and the source
    /// files.
    pub cluster: Option<Arc<dyn runner::PlanRunner>>,
}

impl BuildOptions {
    /// Where this build's plans run: the cluster, or this process.
    pub fn runner(&self) -> Arc<dyn runner::PlanRunner> {
        self.cluster
            .clone()
            .unwrap_or_else(|| Arc::new(runner::LocalRunner))
    }

    /// Plans of `partitions` partitions with `memory` bytes each, spilling where this build
    /// spills.
    fn plan_options(&self, partitions: usize, memory: usize) -> plan::PlanOptions {
        plan::PlanOptions {
            partitions,
            memory_bytes_per_partition: memory,
            spill_dir: self.spill.dir.clone(),
            batch_rows: self.block_rows.max(1024),
        }
    }
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

/// Fails naming the table and a duplicated key when a lookup's primary key is not unique.
async fn check_lookup_keys(
    ctx: &datafusion::prelude::SessionContext,
    layout: &CubeLayout,
) -> Result<()> {
    let mut checked: Vec<(String, Vec<String>)> = Vec::new();
    for j in &layout.joins {
        let key = (
            j.table.to_ascii_lowercase(),
            j.primary_key
                .iter()
                .map(|k| k.column.to_ascii_lowercase())
                .collect(),
        );
        if checked.contains(&key) {
            continue;
        }
        checked.push(key);
        let batches = ctx
            .sql(&source::duplicate_key_sql(j))
            .await?
            .collect()
            .await?;
        if let Some(b) = batches.iter().find(|b| b.num_rows() > 0) {
            let values: Vec<String> = (0..j.primary_key.len())
                .map(|i| {
                    datafusion::arrow::util::display::array_value_to_string(b.column(i), 0)
                        .unwrap_or_default()
                })
                .collect();
            let pk: Vec<&str> = j.primary_key.iter().map(|k| k.column.as_str()).collect();
            return Err(Error::Refused(format!(
                "lookup table {} (joined as {}) has duplicate primary key {} = {}: a lookup's key must be unique",
                j.table,
                j.alias,
                pk.join(", "),
                values.join(", ")
            )));
        }
    }
    Ok(())
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
    let mut phases = vec![Phase::Snapshots, Phase::FlatTable, Phase::Cuboids];
    if layout.table_index.is_some() {
        phases.push(Phase::TableIndex);
    }
    let tracker = Tracker::new(progress, &phases);
    let flat = tracker.phase(Phase::FlatTable);
    flat(0.0, "reading the flat table")?;
    let ctx = crate::source::source_context(&layout.tables, &opts.source_url).await?;
    check_lookup_keys(&ctx, &layout).await?;
    let snapshot_progress = tracker.phase(Phase::Snapshots);
    let snapshots = stored::build_snapshots(
        &layout,
        &ctx,
        &store,
        segment,
        opts.block_rows,
        &snapshot_progress,
    )
    .await?;
    snapshot_progress(1.0, "lookup snapshots written")?;
    let sql = source::flat_table_sql(&layout, range.as_ref());
    global_dicts(&layout, &ctx, &store, &sql, &flat).await?;
    let mut out = build_cuboids_with_plans(
        &ctx,
        &sql,
        layout.clone(),
        opts,
        &store,
        segment,
        &tracker,
        flat,
    )
    .await?;
    out.snapshots = snapshots;
    if layout.table_index.is_some() {
        let index_progress = tracker.phase(Phase::TableIndex);
        index_progress(0.0, "table index")?;
        let fact = layout
            .tables
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(&layout.model.fact_table))
            .ok_or_else(|| Error::NotFound {
                kind: "table",
                name: layout.model.fact_table.clone(),
            })?;
        out.table_index = stored::build_table_index(
            &layout,
            opts,
            fact,
            &store,
            segment,
            range.as_ref(),
            &index_progress,
        )
        .await?;
        index_progress(1.0, "table index written")?;
    }
    Ok(out)
}

/// The cuboids of a build, aggregated and written by plans on `opts.runner()`: the base
/// cuboid from the flat-table plan (which reads the source files), then each other cuboid
/// from its smallest built parent ([`build_cuboids`]), `opts.threads` plans at a time. The
/// source rows are counted here (one read of the flat table's key columns).
#[allow(clippy::too_many_arguments)]
async fn build_cuboids_with_plans(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
    layout: Arc<CubeLayout>,
    opts: &BuildOptions,
    store: &Arc<dyn SegmentStore>,
    segment: &str,
    tracker: &Arc<Tracker>,
    flat: Progress,
) -> Result<BuildOutput> {
    let runner = opts.runner();
    let threads = opts.threads.max(1);
    let place = if opts.cluster.is_some() {
        " on the cluster"
    } else {
        ""
    };
    flat(0.0, "counting the flat table's rows")?;
    let counted = ctx
        .sql(&format!("SELECT COUNT(*) FROM ({sql}) AS flat"))
        .await?
        .collect()
        .await?;
    let source_rows = counted
        .first()
        .filter(|b| b.num_rows() == 1)
        .and_then(|b| {
            datafusion::arrow::array::cast::as_primitive_array::<
                datafusion::arrow::datatypes::Int64Type,
            >(b.column(0))
            .values()
            .first()
            .copied()
        })
        .ok_or_else(|| Error::invalid("flat table", "COUNT(*) returned no row"))?
        as u64;
    flat(0.0, "base cuboid: planning")?;
    // The scan splits into one task per build thread (the cores, configured).
    let plan_ctx =
        crate::source::source_context_with(&layout.tables, &opts.source_url, Some(threads)).await?;
    let flat_plan = plan_ctx.sql(sql).await?.create_physical_plan().await?;
    let base_message = format!("base cuboid: aggregating{place}");
    let base_stats = runner::build_base(
        runner.as_ref(),
        &layout,
        store.clone(),
        segment,
        flat_plan,
        &opts.plan_options(threads, opts.spill.memory_bytes / threads),
        opts.block_rows,
        &|| flat(0.0, &base_message),
    )
    .await?;
    flat(
        1.0,
        &format!(
            "cuboid 1/{} (base, {} rows{place})",
            layout.cuboids.len(),
            base_stats.rows
        ),
    )?;
    let cuboid_progress = tracker.phase(Phase::Cuboids);
    let runtime = tokio::runtime::Handle::current();
    let (opts, store, segment) = (opts.clone(), store.clone(), segment.to_string());
    tokio::task::spawn_blocking(move || {
        build_cuboids(
            &layout,
            base_stats,
            &opts,
            &cuboid_progress,
            source_rows,
            &|child, parent, share, written| {
                written(0)?;
                runtime.block_on(runner::build_child(
                    runner.as_ref(),
                    &layout,
                    store.clone(),
                    &segment,
                    child,
                    parent,
                    &share.plan_options(1, share.spill.memory_bytes),
                    share.block_rows,
                    &|| written(0),
                ))
            },
        )
    })
    .await
    .map_err(|e| Error::Refused(format!("build task failed: {e}")))?
}

/// Builds cuboid `child` from its stored `parent` with `opts` (this builder's share of the
/// budget); `written` hears the rows written so far and stops the build with its error.
type ChildBuilder<'a> = dyn Fn(
        CuboidId,
        CuboidId,
        &BuildOptions,
        &(dyn Fn(u64) -> Result<()> + Send + Sync),
    ) -> Result<CuboidStats>
    + Sync
    + 'a;

/// Grows the global dictionary of each measure that uses one by the values of this build:
/// one `SELECT DISTINCT` of the column over the flat table, the new values committed before
/// any cuboid is written (see [`crate::dict`]); the base cuboid's plan then maps values to
/// ids ([`plan::GlobalDictIdsExec`]). Measures on the same column share one dictionary.
async fn global_dicts(
    layout: &CubeLayout,
    ctx: &datafusion::prelude::SessionContext,
    store: &Arc<dyn SegmentStore>,
    flat_sql: &str,
    progress: &Progress,
) -> Result<()> {
    let mut grown: std::collections::HashSet<String> = std::collections::HashSet::new();
    for (i, m) in layout.measures.iter().enumerate() {
        let Some(name) = measure_dict_name(layout, m) else {
            continue;
        };
        if !grown.insert(name.clone()) {
            continue;
        }
        progress(0.0, &format!("global dictionary {name}: loading"))?;
        let (s, n) = (store.clone(), name.clone());
        let mut dict = tokio::task::spawn_blocking(move || GlobalDict::load(s.as_ref(), &n))
            .await
            .map_err(|e| Error::Refused(format!("dictionary task failed: {e}")))??;
        let sql = format!(
            "SELECT DISTINCT {} FROM ({flat_sql}) AS flat",
            source::quote(&format!("__m{i}"))
        );
        let mut stream = ctx.sql(&sql).await?.execute_stream().await?;
        let mut new: Vec<Box<[u8]>> = Vec::new();
        while let Some(b) = stream.next().await {
            for_each_value(b?.column(0), |v| {
                if let Some(v) = v.filter(|v| dict.id(v).is_none()) {
                    new.push(v.into());
                }
            })?;
        }
        // A lost lease or a discarded job stops here, before the dictionary grows.
        progress(
            0.0,
            &format!("global dictionary {name}: {} new values", new.len()),
        )?;
        let s = store.clone();
        tokio::task::spawn_blocking(move || dict.grow(s.as_ref(), new.iter().map(|v| &**v)))
            .await
            .map_err(|e| Error::Refused(format!("dictionary task failed: {e}")))??;
    }
    Ok(())
}

/// Builds each cuboid but the (already written) base from its smallest built parent, on
/// `opts.threads` threads; `progress` hears the fraction of these cuboids built. Parents are streamed back from the store block by block, so memory
/// holds the cuboids being aggregated (each within its share of the spill budget), not the
/// whole cube.
fn build_cuboids(
    layout: &CubeLayout,
    base_stats: CuboidStats,
    opts: &BuildOptions,
    progress: &Progress,
    source_rows: u64,
    build_child: &ChildBuilder,
) -> Result<BuildOutput> {
    let total = layout.cuboids.len();
    let base = layout.base_cuboid();
    // The fraction of the non-base cuboids built, given how many cuboids (base included) are.
    let built_share = |built: usize| (built.saturating_sub(1)) as f64 / (total.max(2) - 1) as f64;
    let threads = opts.threads.clamp(1, total.max(1));
    let mut share = opts.clone();
    share.spill.memory_bytes = opts.spill.memory_bytes / threads;
    let plan = Mutex::new(Plan {
        todo: layout
            .cuboids
            .iter()
            .copied()
            .filter(|&c| c != base)
            .collect(),
        built: HashMap::from([(base, base_stats.rows)]),
        running: Vec::new(),
        stats: vec![base_stats],
        failed: None,
    });
    let changed = Condvar::new();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some((child, parent, parent_rows)) = next_cuboid(&plan, &changed) {
                    // Stale once other workers finish cuboids: the tracker ignores it then.
                    let fraction = built_share(plan.lock().expect("build plan").stats.len());
                    let written =
                        |rows| progress(fraction, &format!("cuboid {child}: {rows} rows written"));
                    let result = build_child(child, parent, &share, &written).and_then(|st| {
                        let done = plan.lock().expect("build plan").stats.len() + 1;
                        progress(
                            built_share(done),
                            &format!(
                                "cuboid {done}/{total} ({} rows, from {parent_rows} rows of \
                                     its parent)",
                                st.rows
                            ),
                        )?;
                        Ok(st)
                    });
                    let mut p = plan.lock().expect("build plan");
                    p.running.retain(|&c| c != child);
                    match result {
                        Ok(st) => {
                            p.built.insert(child, st.rows);
                            p.stats.push(st);
                        }
                        Err(e) => {
                            p.failed.get_or_insert(e);
                        }
                    }
                    changed.notify_all();
                }
            });
        }
    });
    let plan = plan.into_inner().expect("build plan");
    if let Some(e) = plan.failed {
        return Err(e);
    }
    progress(1.0, &format!("{total} cuboids built"))?;
    let mut stats = plan.stats;
    stats.sort_by_key(|st| layout.cuboids.iter().position(|&c| c == st.id));
    let size_bytes = stats.iter().map(|c| c.bytes).sum();
    Ok(BuildOutput {
        cuboids: stats,
        source_rows,
        size_bytes,
        snapshots: Vec::new(),
        table_index: None,
    })
}

/// What the build threads share: cuboids not started (parents before children: the layout
/// lists cuboids by descending dimension count), built ones with their row counts, the ones
/// being built, what was written, and the first error.
struct Plan {
    todo: std::collections::VecDeque<CuboidId>,
    built: HashMap<CuboidId, u64>,
    running: Vec<CuboidId>,
    stats: Vec<CuboidStats>,
    failed: Option<Error>,
}

/// Takes the next cuboid and its parent: the built cuboid covering it with the fewest rows.
/// When a cuboid still being built covers it with fewer dimensions than the best built
/// parent, waits for that one (it is almost always smaller). `None` when all are taken or a
/// build failed.
fn next_cuboid(plan: &Mutex<Plan>, changed: &Condvar) -> Option<(CuboidId, CuboidId, u64)> {
    let mut p = plan.lock().expect("build plan");
    loop {
        if p.failed.is_some() {
            return None;
        }
        let &child = p.todo.front()?;
        let best = p
            .built
            .iter()
            .filter(|(&c, _)| cuboid::covers(c, child))
            .map(|(&c, &rows)| (rows, c.count_ones(), c))
            .min();
        let pending = p
            .running
            .iter()
            .filter(|&&c| cuboid::covers(c, child))
            .map(|c| c.count_ones())
            .min();
        match (best, pending) {
            (Some((_, dims, _)), Some(pending)) if pending < dims => {}
            (Some((rows, _, parent)), _) => {
                p.todo.pop_front();
                p.running.push(child);
                return Some((child, parent, rows));
            }
            (None, Some(_)) => {}
            (None, None) => {
                p.failed = Some(Error::invalid(
                    "cuboid plan",
                    format!("no parent for cuboid {child}"),
                ));
                changed.notify_all();
                return None;
            }
        }
        p = changed.wait(p).expect("build plan");
    }
}

/// Merges the stored cuboids of `sources` (adjacent READY segments) into `target`,
/// re-aggregating each cuboid by a plan on `opts.runner()`; reads verify block checksums.
/// Cuboids are merged `opts.threads` at a time (they are independent), largest first,
/// sharing the memory budget. `progress` hears the fraction of cuboids merged; a running
/// merge may repeat an older one, so report through a [`progress::Tracker`] phase.
pub async fn merge_segments(
    layout: &CubeLayout,
    store: &Arc<dyn SegmentStore>,
    sources: &[String],
    target: &str,
    opts: &BuildOptions,
    progress: &Progress,
) -> Result<Vec<CuboidStats>> {
    let total = layout.cuboids.len();
    let threads = opts.threads.clamp(1, total.max(1));
    let runner = opts.runner();
    let plan_opts = opts.plan_options(1, opts.spill.memory_bytes / threads);
    let merged = AtomicUsize::new(0);
    // The layout lists cuboids by descending dimension count: the big ones start first.
    let merges: Vec<futures::future::BoxFuture<'_, Result<CuboidStats>>> = layout
        .cuboids
        .iter()
        .map(|&c| {
            let (runner, plan_opts, merged) = (runner.clone(), &plan_opts, &merged);
            Box::pin(async move {
                let fraction = || merged.load(Ordering::Relaxed) as f64 / total as f64;
                let st = runner::merge_cuboid(
                    runner.as_ref(),
                    layout,
                    store.clone(),
                    sources,
                    target,
                    c,
                    plan_opts,
                    opts.block_rows,
                    &|| progress(fraction(), &format!("merging cuboid {c}")),
                )
                .await?;
                let done = merged.fetch_add(1, Ordering::Relaxed) + 1;
                progress(
                    done as f64 / total as f64,
                    &format!("merged cuboid {done}/{total} ({} rows)", st.rows),
                )?;
                Ok::<_, Error>(st)
            }) as _
        })
        .collect();
    let mut merges = futures::stream::iter(merges).buffer_unordered(threads);
    let mut stats = Vec::with_capacity(total);
    // The first error ends the merge; dropping the stream stops the other running plans.
    while let Some(st) = merges.next().await {
        stats.push(st?);
    }
    stats.sort_by_key(|st| layout.cuboids.iter().position(|&c| c == st.id));
    Ok(stats)
}
