//! Cuboid plans on a DataFusion Ballista cluster of Qilin's own scheduler and two executor
//! processes on loopback (`qilin-ballista`), with every shuffle read over the network: the
//! SSB sample's base cuboid aggregated on the cluster from the source files, and every other
//! cuboid aggregated there from the stored base cuboid, each written into the segment store
//! by the plan's sink. The blocks and manifest written on the cluster equal byte for byte
//! those the same plan writes in this process, and their rows equal the cuboid the local
//! build stored (t-digests there by their values: the local build merged them in another
//! order). Then the job engine with `kylin.job.engine=ballista` refreshes the segment on the
//! cluster: every cuboid's manifest and blocks equal the local build's byte for byte (one
//! build thread on both sides, so each cuboid comes from the same parent), and the 13 SSB
//! queries answered from it equal the oracle. On both segment stores: the executors read and
//! write blocks and dictionaries in the store their `--conf` names.

use std::path::Path;
use std::time::{Duration, Instant};

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::UInt64Type;
use qilin_ballista::client::{run_plan, RunOptions};
use qilin_ballista::codec::QilinCodec;
use qilin_ballista::parse_host_port;
use qilin_engine::build::plan::{base_cuboid_plan, child_cuboid_plan, CuboidSinkExec, PlanOptions};
use qilin_engine::build::source::flat_table_sql;
use qilin_engine::measure::tdigest::TDigest;
use qilin_engine::model::{CubeLayout, SegmentRange};
use qilin_engine::sample::ssb;
use qilin_engine::source::source_context;
use qilin_engine::storage::block::{read_cuboid, read_manifest, CuboidManifest};
use qilin_tests::process::{ChildProcess, Spec};
use qilin_tests::{on_both_backends, shared_ssb_source, workspace_exe, Backend, TestEnv};

on_both_backends!(cuboid_plans_on_a_cluster_equal_the_local_build);

async fn cuboid_plans_on_a_cluster_equal_the_local_build(backend: Backend) {
    let source = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), 0.01).await;
    // One build thread: each cuboid from the same parent in every run (the parent of a
    // cuboid is the smallest one built when it starts).
    let env = TestEnv::with_properties(backend, &source, "kylin.job.build-threads=1\n");
    env.install_sample(0.01).await;
    let job = env.build("1992-01-01..1999-01-01").await.expect("build");
    assert_eq!(job.status, qilin_jobs::JobStatus::Succeed);
    let segments = env.segment_ids();
    assert_eq!(segments.len(), 1, "{segments:?}");
    let layout = env.meta().cube_layout(ssb::CUBE, 4096).unwrap();

    let cluster = Cluster::start(&env);
    let scheduler_addr = cluster.addr.clone();
    let (host, port) = parse_host_port("scheduler", &scheduler_addr).unwrap();

    let store = env.engine.segment_store();
    let codec = QilinCodec::from_config(&env.config, None).unwrap();
    let run = RunOptions {
        force_remote_read: true,
    };
    let plan_opts = PlanOptions {
        partitions: 4,
        memory_bytes_per_partition: 64 << 20,
        spill_dir: env.dir.path().into(),
        batch_rows: 1000,
    };
    let base = layout.base_cuboid();
    // The base cuboid from the flat table (source Parquet files read by the executors, joins,
    // global-dictionary ids), then every other cuboid from the stored base.
    let ctx = source_context(&layout.tables, Path::new(&env.config.stores.source_url))
        .await
        .unwrap();
    let range = SegmentRange::parse("1992-01-01", "1999-01-01").unwrap();
    let flat = ctx
        .sql(&flat_table_sql(&layout, Some(&range)))
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let mut checked = 0;
    for &cuboid in &layout.cuboids {
        let plan = if cuboid == base {
            base_cuboid_plan(&layout, store.clone(), flat.clone(), &plan_opts).unwrap()
        } else {
            child_cuboid_plan(
                &layout,
                store.clone(),
                segments.clone(),
                cuboid,
                base,
                &plan_opts,
            )
            .unwrap()
        };
        // The cuboid written by the plan on the cluster and by the same plan in this process.
        let dims = layout.cuboid_columns(cuboid).len();
        let sink = |segment: &str| {
            Arc::new(
                CuboidSinkExec::try_new(plan.clone(), store.clone(), segment, cuboid, dims, 1000)
                    .unwrap(),
            )
        };
        let stream = run_plan((&host, port), sink(ON_CLUSTER), &codec, &run)
            .await
            .unwrap_or_else(|e| panic!("cuboid {cuboid} on the cluster: {e}"));
        let written = datafusion::physical_plan::common::collect(stream)
            .await
            .unwrap_or_else(|e| panic!("cuboid {cuboid} on the cluster: {e}"));
        datafusion::physical_plan::collect(sink(HERE), ctx.task_ctx())
            .await
            .unwrap();
        let manifest = read_manifest(store.as_ref(), ON_CLUSTER, cuboid).unwrap();
        assert_eq!(
            manifest,
            read_manifest(store.as_ref(), HERE, cuboid).unwrap(),
            "cuboid {cuboid}: manifests"
        );
        let rows = written[0].column(1).as_primitive::<UInt64Type>().value(0);
        assert_eq!(rows, manifest.rows, "cuboid {cuboid}: rows reported");
        for b in 0..manifest.blocks.len() as u32 {
            assert_eq!(
                store.get_block(ON_CLUSTER, cuboid, b).unwrap(),
                store.get_block(HERE, cuboid, b).unwrap(),
                "cuboid {cuboid}: block {b} differs between the cluster and a local run"
            );
        }
        // Against the cuboid the local build stored, which it aggregated from its smallest
        // parent rather than the base: a t-digest's bytes depend on the order its inputs were
        // merged in, every other state's do not.
        let read = |segment: &str| {
            let (_, batches) = read_cuboid(store.as_ref(), segment, cuboid).unwrap();
            concat_batches(&batches[0].schema(), &batches).unwrap()
        };
        let (stored, on_cluster) = (read(&segments[0]), read(ON_CLUSTER));
        assert!(stored.num_rows() > 0, "cuboid {cuboid} is empty");
        assert_eq!(
            on_cluster.num_rows(),
            stored.num_rows(),
            "cuboid {cuboid}: rows"
        );
        for (i, field) in stored.schema().fields().iter().enumerate() {
            let name = field.name();
            if name == PERCENTILE {
                assert_same_digests(cuboid, on_cluster.column(i), stored.column(i));
            } else {
                assert_eq!(
                    on_cluster.column(i).to_data(),
                    stored.column(i).to_data(),
                    "cuboid {cuboid}: column {name} differs from the stored cuboid"
                );
            }
        }
        checked += 1;
    }
    assert_eq!(checked, layout.cuboids.len());

    // The job engine with `kylin.job.engine=ballista` refreshes the segment on the cluster:
    // every cuboid of the new segment equals the local build's byte for byte, and the 13 SSB
    // queries answered from it equal the oracle.
    let local = &segments[0];
    let want = stored_bytes(&env, &layout, local);
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    let old = inst.segments[0].clone();
    let (cluster_config, cluster_engine) = env.engine_with(&on_cluster(&scheduler_addr));
    let refresh = cluster_engine.submit_refresh(ssb::CUBE, &old.name).unwrap();
    let done = cluster_engine
        .run(&refresh.id, qilin_tests::quiet())
        .await
        .expect("refresh on the cluster");
    assert_eq!(done.status, qilin_jobs::JobStatus::Succeed);
    // The scheduler planned a sink of the new segment for every cuboid.
    assert_eq!(
        cluster.sinks_submitted(&refresh.segment_id),
        layout.cuboids.len(),
        "cuboid plans of the refresh the scheduler logged"
    );
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    let new = inst.segment(&old.name).expect("refreshed segment");
    assert_eq!(new.id, refresh.segment_id);
    assert_ne!(new.id, old.id);
    assert_eq!(new.source_rows, old.source_rows);
    assert_eq!(new.cuboids, old.cuboids);
    assert_same_bytes(&stored_bytes(&env, &layout, &new.id), &want);
    let mut engine =
        qilin_engine::query::QueryEngine::new(&cluster_config, env.meta().clone(), store.clone());
    let oracle = qilin_tests::oracle(&source).await;
    qilin_tests::corpus::check_ssb_queries("built on Ballista", &mut engine, &oracle).await;
    drop(cluster);
}

/// A `qilin-ballista` scheduler and two executors on loopback over the stores of `env`.
struct Cluster {
    // Executors first: dropped (killed) before the scheduler.
    executors: Vec<ChildProcess>,
    scheduler: ChildProcess,
    /// The scheduler's `HOST:PORT`.
    addr: String,
}

impl Cluster {
    fn start(env: &TestEnv) -> Cluster {
        // The cluster reads the same stores as this installation.
        let conf = env.dir.path().join("kylin.properties");
        std::fs::write(
            &conf,
            format!(
                "kylin.metadata.url={}\nkylin.storage.url={}\nkylin.source.url={}\n",
                env.config.stores.metadata_url,
                env.config.stores.storage_url,
                env.config.stores.source_url
            ),
        )
        .unwrap();
        let exe = workspace_exe("qilin-ballista");
        let timeout = Duration::from_secs(60);
        let scheduler = ChildProcess::start(
            "scheduler",
            Spec::new(&exe)
                .arg("--conf")
                .arg(&conf)
                .args(["scheduler", "--port", "0"])
                // Ballista logs each job's plan when it is submitted, and a cancelled job.
                .env(
                    "RUST_LOG",
                    "warn,qilin_ballista=info,ballista_scheduler::state::task_manager=info,\
                     ballista_scheduler::scheduler_server::query_stage_scheduler=info",
                ),
            "qilin-ballista scheduler on ",
            timeout,
        );
        let addr = scheduler.ready_rest().to_string();
        let executors: Vec<ChildProcess> = (0..2)
            .map(|i| {
                ChildProcess::start(
                    &format!("executor{i}"),
                    Spec::new(&exe)
                        .arg("--conf")
                        .arg(&conf)
                        .args(["executor", "--scheduler", &addr, "--port", "0"])
                        .arg("--work-dir")
                        .arg(env.dir.path().join(format!("executor{i}"))),
                    "qilin-ballista executor on ",
                    timeout,
                )
            })
            .collect();
        let ports: Vec<&str> = executors.iter().map(|e| e.ready_rest()).collect();
        assert_ne!(ports[0], ports[1]);
        Cluster {
            executors,
            scheduler,
            addr,
        }
    }

    /// The plan the scheduler logged when job `id` was submitted.
    fn job_plan(&self, id: &str) -> String {
        let log = self.scheduler.output();
        let marker = "Submitting execution graph for job_id [";
        let Some(start) = log.find(&format!("{marker}{id}]")) else {
            return String::new();
        };
        let rest = &log[start + marker.len()..];
        rest[..rest.find(marker).unwrap_or(rest.len())].to_string()
    }

    /// Waits until the scheduler has logged `n` sink plans of `segment`, while `run` (the job
    /// building it) goes on.
    async fn wait_for_sinks<T>(&self, segment: &str, n: usize, run: &tokio::task::JoinHandle<T>) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.sinks_submitted(segment) < n {
            assert!(
                Instant::now() < deadline && !run.is_finished(),
                "the job did not reach its cuboid plan number {n}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sink plans of `segment` the scheduler has logged as submitted.
    fn sinks_submitted(&self, segment: &str) -> usize {
        self.scheduler
            .output()
            .matches(&format!("CuboidSinkExec: segment={segment},"))
            .count()
    }
}

/// Runs job `id` on `engine` in the background.
fn spawn_run(
    engine: &qilin_jobs::JobEngine,
    id: &str,
) -> tokio::task::JoinHandle<qilin_engine::Result<qilin_jobs::Job>> {
    let (engine, id) = (engine.clone(), id.to_string());
    tokio::spawn(async move { engine.run(&id, qilin_tests::quiet()).await })
}

/// Properties of a job engine that builds on the cluster at `addr`.
fn on_cluster(addr: &str) -> String {
    format!(
        "kylin.job.engine=ballista\nkylin.job.ballista.scheduler={addr}\n\
         kylin.job.ballista.force-remote-read=true\n"
    )
}

/// Every cuboid of `segment`: its manifest and its blocks' bytes.
type SegmentBytes = Vec<(u64, CuboidManifest, Vec<Vec<u8>>)>;

fn stored_bytes(env: &TestEnv, layout: &CubeLayout, segment: &str) -> SegmentBytes {
    let store = env.engine.segment_store();
    layout
        .cuboids
        .iter()
        .map(|&c| {
            let manifest = read_manifest(store.as_ref(), segment, c).unwrap();
            let blocks: Vec<_> = (0..manifest.blocks.len() as u32)
                .map(|b| store.get_block(segment, c, b).unwrap())
                .collect();
            (c, manifest, blocks)
        })
        .collect()
}

/// Two segments' cuboids are equal byte for byte.
fn assert_same_bytes(got: &SegmentBytes, want: &SegmentBytes) {
    assert_eq!(got.len(), want.len());
    for ((c, want_manifest, want_blocks), (_, got_manifest, got_blocks)) in want.iter().zip(got) {
        assert_eq!(got_manifest, want_manifest, "cuboid {c}: manifest");
        for (b, (g, w)) in got_blocks.iter().zip(want_blocks).enumerate() {
            assert!(
                g == w,
                "cuboid {c}: block {b} built on the cluster differs from the local build"
            );
        }
    }
}

const PERCENTILE: &str = "lo_revenue_percentile";
/// Segments the plans write into (never committed: only their blocks are compared).
const ON_CLUSTER: &str = "ba11157a";
const HERE: &str = "10ca1";

/// Two columns of t-digests summarise the same values: equal counts, minimums and maximums,
/// medians within 2 % of the value range.
fn assert_same_digests(cuboid: u64, got: &dyn Array, want: &dyn Array) {
    let (got, want) = (got.as_binary::<i32>(), want.as_binary::<i32>());
    assert_eq!(got.len(), want.len());
    for r in 0..got.len() {
        let g = TDigest::from_bytes(got.value(r)).unwrap();
        let w = TDigest::from_bytes(want.value(r)).unwrap();
        assert_eq!(
            g.count(),
            w.count(),
            "cuboid {cuboid} row {r}: digest count"
        );
        let (lo, hi) = (w.quantile(0.0).unwrap(), w.quantile(1.0).unwrap());
        assert_eq!(
            g.quantile(0.0),
            Some(lo),
            "cuboid {cuboid} row {r}: minimum"
        );
        assert_eq!(
            g.quantile(1.0),
            Some(hi),
            "cuboid {cuboid} row {r}: maximum"
        );
        let (gm, wm) = (g.quantile(0.5).unwrap(), w.quantile(0.5).unwrap());
        assert!(
            (gm - wm).abs() <= 0.02 * (hi - lo),
            "cuboid {cuboid} row {r}: median {gm} against {wm}"
        );
    }
}

/// `kill -9` of one of the two executors while the job engine refreshes the segment on the
/// cluster: the refresh completes (Ballista runs the lost tasks again on the other executor)
/// or fails cleanly, leaving nothing behind, and `resume` completes it. Either way the
/// committed segment equals the local build byte for byte (no missing or duplicate block)
/// and answers the 13 SSB queries as the oracle does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_executor_loses_no_block() {
    let source = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), 0.01).await;
    let env = TestEnv::with_properties(Backend::Local, &source, "kylin.job.build-threads=1\n");
    env.install_sample(0.01).await;
    let built = env.build("1992-01-01..1999-01-01").await.expect("build");
    assert_eq!(built.status, qilin_jobs::JobStatus::Succeed);
    let layout = env.meta().cube_layout(ssb::CUBE, 4096).unwrap();
    let want = stored_bytes(&env, &layout, &built.segment_id);

    let mut cluster = Cluster::start(&env);
    let (config, engine) = env.engine_with(&on_cluster(&cluster.addr));
    let refresh = engine
        .submit_refresh(ssb::CUBE, &built.segment_name)
        .unwrap();
    let run = spawn_run(&engine, &refresh.id);
    // Mid-build: once the scheduler has planned 20 of the 148 cuboids.
    cluster.wait_for_sinks(&refresh.segment_id, 20, &run).await;
    cluster.executors[1].kill();
    let first = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the refresh neither finished nor failed within 300 s of the kill")
        .unwrap();
    let job = match first {
        Ok(job) if job.status == qilin_jobs::JobStatus::Succeed => {
            println!("the refresh completed despite the killed executor");
            job
        }
        failed => {
            println!("the refresh failed: {failed:?}; resuming it");
            // A failed attempt leaves no blocks of its segment behind.
            assert!(
                !env.segment_ids().contains(&refresh.segment_id),
                "the failed refresh left its segment's data"
            );
            engine.resume(&refresh.id).expect("resume");
            engine
                .run(&refresh.id, qilin_tests::quiet())
                .await
                .expect("the resumed refresh")
        }
    };
    assert_eq!(job.status, qilin_jobs::JobStatus::Succeed);
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    let new = inst
        .segment(&built.segment_name)
        .expect("refreshed segment");
    assert_eq!(new.id, refresh.segment_id);
    assert_same_bytes(&stored_bytes(&env, &layout, &new.id), &want);
    let mut query = qilin_engine::query::QueryEngine::new(
        &config,
        env.meta().clone(),
        env.engine.segment_store().clone(),
    );
    let oracle = qilin_tests::oracle(&source).await;
    qilin_tests::corpus::check_ssb_queries("after a killed executor", &mut query, &oracle).await;
}

/// A build discarded while its plan runs on the cluster stops at once: the job engine
/// cancels the Ballista job. Both executors are frozen (SIGSTOP), so the plan cannot end by
/// itself and the scheduler would not give up on them for 20 s; the run must return well
/// before that, the scheduler must have cancelled a job of the build's segment, and the
/// discarded build leaves no segment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discarded_build_cancels_its_ballista_job() {
    let source = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), 0.01).await;
    let env = TestEnv::with_properties(Backend::Local, &source, "kylin.job.build-threads=1\n");
    env.install_sample(0.01).await;
    let cluster = Cluster::start(&env);
    let (_, engine) = env.engine_with(&on_cluster(&cluster.addr));
    let range = SegmentRange::parse("1992-01-01", "1999-01-01").unwrap();
    let build = engine
        .submit_build(ssb::CUBE, Some(range))
        .unwrap()
        .job()
        .clone();
    let run = spawn_run(&engine, &build.id);
    cluster.wait_for_sinks(&build.segment_id, 2, &run).await;
    let signal = |sig: &str| {
        for e in &cluster.executors {
            let pid = e.pid().expect("executor pid").to_string();
            let status = std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap();
            assert!(status.success(), "kill {sig} {pid}");
        }
    };
    signal("-STOP");
    engine.discard(&build.id).expect("discard");
    let stopped = tokio::time::timeout(Duration::from_secs(12), run)
        .await
        .expect("the discarded build still waits for its frozen plan 12 s later")
        .unwrap();
    signal("-CONT");
    assert!(
        !matches!(&stopped, Ok(j) if j.status == qilin_jobs::JobStatus::Succeed),
        "a discarded build succeeded: {stopped:?}"
    );
    let log = cluster
        .scheduler
        .wait_for_output("Job cancelled: [", Duration::from_secs(10));
    let cancelled = log
        .split("Job cancelled: [")
        .skip(1)
        .map(|rest| rest[..rest.find(']').unwrap_or(0)].to_string())
        .collect::<Vec<_>>();
    assert_eq!(cancelled.len(), 1, "cancelled jobs: {cancelled:?}");
    let sink = format!("CuboidSinkExec: segment={},", build.segment_id);
    assert!(
        cluster.job_plan(&cancelled[0]).contains(&sink),
        "the cancelled job {} is not a cuboid plan of the discarded build",
        cancelled[0]
    );
    assert_eq!(
        engine.get(&build.id).unwrap().status,
        qilin_jobs::JobStatus::Discarded
    );
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    assert!(
        inst.segments.iter().all(|s| s.id != build.segment_id),
        "the discarded build left its segment in the cube"
    );
}

/// A merge with `kylin.job.engine=ballista` re-aggregates every cuboid of the two segments
/// on the cluster: the scheduler runs one sink plan of the merged segment per cuboid, whose
/// blocks and manifests equal byte for byte the same merge run in this process, and the
/// merged segment answers the 13 SSB queries as the oracle does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_runs_on_the_cluster() {
    let source = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), 0.01).await;
    let env = TestEnv::with_properties(Backend::Local, &source, "kylin.job.build-threads=1\n");
    env.install_sample(0.01).await;
    for range in ["1992-01-01..1995-01-01", "1995-01-01..1999-01-01"] {
        let job = env.build(range).await.expect("build");
        assert_eq!(job.status, qilin_jobs::JobStatus::Succeed);
    }
    let sources = env.segment_ids();
    assert_eq!(sources.len(), 2, "{sources:?}");
    let layout = env.meta().cube_layout(ssb::CUBE, 4096).unwrap();
    let store = env.engine.segment_store().clone();

    // The same merge in this process, into a segment never committed.
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    let mut in_range: Vec<_> = inst.segments.iter().collect();
    in_range.sort_by_key(|s| s.range);
    let ordered: Vec<String> = in_range.iter().map(|s| s.id.clone()).collect();
    let opts = qilin_engine::build::BuildOptions {
        source_url: env.config.stores.source_url.clone().into(),
        block_rows: env.config.stores.block_rows,
        spill: qilin_engine::build::spill::SpillOptions {
            memory_bytes: 1 << 30,
            dir: env.dir.path().join("spill"),
        },
        threads: 2,
        cluster: None,
    };
    let progress: qilin_engine::build::Progress = Arc::new(|_, _| Ok(()));
    qilin_engine::build::merge_segments(&layout, &store, &ordered, HERE, &opts, &progress)
        .await
        .expect("merge in this process");
    let want = stored_bytes(&env, &layout, HERE);

    let cluster = Cluster::start(&env);
    let (cluster_config, cluster_engine) = env.engine_with(&on_cluster(&cluster.addr));
    let range = SegmentRange::parse("1992-01-01", "1999-01-01").unwrap();
    let merge = cluster_engine.submit_merge(ssb::CUBE, range).unwrap();
    let done = cluster_engine
        .run(&merge.id, qilin_tests::quiet())
        .await
        .expect("merge on the cluster");
    assert_eq!(done.status, qilin_jobs::JobStatus::Succeed);
    assert_eq!(
        cluster.sinks_submitted(&merge.segment_id),
        layout.cuboids.len(),
        "cuboid plans of the merge the scheduler logged"
    );
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    assert_eq!(inst.segments.len(), 1);
    let merged = &inst.segments[0];
    assert_eq!(merged.id, merge.segment_id);
    assert_eq!(
        merged.source_rows,
        in_range.iter().map(|s| s.source_rows).sum::<u64>()
    );
    assert_same_bytes(&stored_bytes(&env, &layout, &merged.id), &want);
    let mut engine =
        qilin_engine::query::QueryEngine::new(&cluster_config, env.meta().clone(), store.clone());
    let oracle = qilin_tests::oracle(&source).await;
    qilin_tests::corpus::check_ssb_queries("merged on Ballista", &mut engine, &oracle).await;
    drop(cluster);
}
