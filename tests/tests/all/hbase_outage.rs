//! The HBase Thrift server killed (SIGKILL) and restarted during a build: a short outage is
//! ridden out by the client's retries and the build completes with correct data; an outage
//! longer than the retry budget fails the build with a clear "unavailable" error. Either way,
//! a reader polling the cube throughout never sees a READY segment it cannot read in full.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qilin_engine::metadata::{managers::Metadata, open_store};
use qilin_engine::model::SegmentStatus;
use qilin_engine::sample::ssb;
use qilin_engine::storage::block::read_cuboid;
use qilin_engine::storage::open_segment_store;
use qilin_engine::Error;
use qilin_jobs::{JobEngine, JobStatus};
use qilin_tests::{oracle, quiet, shared_ssb_source, Backend, TestEnv};

const SF: f64 = 0.01;
const RANGE: &str = "1992-01-01..1999-01-01";

/// Reads the cube over and over from its own connections until told to stop; for every
/// READY segment it sees, every cuboid must read back whole (checksums verified). Errors
/// while HBase is down are expected and skipped; a partial READY segment is recorded.
/// `seen` counts the cuboids read back whole so far.
fn watch_ready_segments(
    meta_url: String,
    storage_url: String,
    stop: Arc<AtomicBool>,
    seen: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        // Short retry budget: the watcher must keep looking, not wait out the outage.
        let meta = Metadata::new(open_store(&format!("{meta_url},retries=0")).unwrap());
        let store = open_segment_store(&format!("{storage_url},retries=0")).unwrap();
        let (mut checks, mut problems) = (0usize, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            let Ok((inst, _)) = meta.cube_instance(ssb::CUBE) else {
                continue;
            };
            for seg in inst.ready_segments() {
                for c in &seg.cuboids {
                    match read_cuboid(store.as_ref(), &seg.id, c.id) {
                        Ok((m, _)) if m.rows == c.rows => {
                            checks += 1;
                            seen.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok((m, _)) => problems.push(format!(
                            "READY segment {} cuboid {}: {} rows stored, {} recorded",
                            seg.id, c.id, m.rows, c.rows
                        )),
                        Err(Error::Unavailable { .. }) => {}
                        Err(e) => problems.push(format!("READY segment {}: {e}", seg.id)),
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (checks, problems)
    })
}

/// Waits until the build has started writing blocks of its segment.
async fn wait_for_first_blocks(env: &TestEnv) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while env.segment_ids().is_empty() {
        assert!(Instant::now() < deadline, "the build never wrote a block");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn checked_sum_of_revenue(env: &TestEnv, source: &Path) {
    let query = qilin_engine::query::QueryEngine::new(
        &env.config,
        Metadata::new(env.meta().store().clone()),
        env.engine.segment_store().clone(),
    );
    let sql = "select d_year, sum(lo_revenue) as r from lineorder, dates \
               where lo_orderdate = d_datekey group by d_year order by d_year";
    let got = query.execute(sql, None).await.expect("query the cube");
    let want = oracle(source)
        .await
        .sql(sql)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let text = |b: &[datafusion::arrow::array::RecordBatch]| {
        datafusion::arrow::util::pretty::pretty_format_batches(b)
            .unwrap()
            .to_string()
    };
    assert_eq!(text(&got.batches), text(&want));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_outage_during_a_build_is_ridden_out() {
    let source = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), SF).await;
    let mut env = TestEnv::on(Backend::HBase, &source);
    env.install_sample(SF).await;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    let watcher = watch_ready_segments(
        env.config.stores.metadata_url.clone(),
        env.config.stores.storage_url.clone(),
        stop.clone(),
        seen.clone(),
    );

    let engine = env.engine.clone();
    let (s, e) = RANGE.split_once("..").unwrap();
    let sub = engine
        .submit_build(
            ssb::CUBE,
            Some(qilin_engine::model::SegmentRange::parse(s, e).unwrap()),
        )
        .unwrap();
    let id = sub.job().id.clone();
    let build = tokio::spawn(async move { engine.run(&id, quiet()).await });

    wait_for_first_blocks(&env).await;
    assert!(!build.is_finished(), "the outage must hit a running build");
    let emulator = env.hbase.as_mut().unwrap();
    emulator.kill();
    // Down for a second: well inside the client's retry budget (about 16 s).
    tokio::time::sleep(Duration::from_secs(1)).await;
    emulator.restart();

    let job = build
        .await
        .unwrap()
        .expect("the build rides out the outage");
    assert_eq!(job.status, JobStatus::Succeed);
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    assert_eq!(inst.segments.len(), 1);
    assert_eq!(inst.segments[0].status, SegmentStatus::Ready);
    checked_sum_of_revenue(&env, &source).await;

    // On a loaded machine the watcher may not have read the new segment yet: give it time
    // (it reads the READY segment within one pass once it gets the CPU).
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (checks, problems) = watcher.join().unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(checks > 0, "the watcher saw the READY segment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_fails_the_build_clearly_and_leaves_nothing_visible() {
    let source = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), SF).await;
    let mut env = TestEnv::on(Backend::HBase, &source);
    env.install_sample(SF).await;
    // A job engine whose stores give up after two quick retries.
    let impatient = JobEngine::new(
        Metadata::new(
            open_store(&format!("{},retries=2", env.config.stores.metadata_url)).unwrap(),
        ),
        open_segment_store(&format!("{},retries=2", env.config.stores.storage_url)).unwrap(),
        env.config.clone(),
    );
    let (s, e) = RANGE.split_once("..").unwrap();
    let sub = impatient
        .submit_build(
            ssb::CUBE,
            Some(qilin_engine::model::SegmentRange::parse(s, e).unwrap()),
        )
        .unwrap();
    let id = sub.job().id.clone();
    let runner = impatient.clone();
    let job_id = id.clone();
    let build = tokio::spawn(async move { runner.run(&job_id, quiet()).await });

    wait_for_first_blocks(&env).await;
    assert!(!build.is_finished(), "the outage must hit a running build");
    env.hbase.as_mut().unwrap().kill();
    let err = build.await.unwrap().expect_err("the build cannot finish");
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Unavailable { .. }) && msg.contains("unavailable"),
        "{msg}"
    );
    assert!(msg.contains(&env.hbase.as_ref().unwrap().addr), "{msg}");

    env.hbase.as_mut().unwrap().restart();
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    assert_eq!(
        inst.ready_segments().count(),
        0,
        "no READY segment after a failed build: {:?}",
        inst.segments
    );
    // The operator discards the stuck job (its runner, this process, could not record the
    // failure while HBase was down); the range then builds.
    let job = env.engine.get(&id).unwrap();
    if !job.status.is_final() {
        env.engine.discard(&id).unwrap();
    }
    assert!(
        env.segment_ids().is_empty(),
        "the failed build's blocks are gone"
    );
    let job = env.build(RANGE).await.unwrap();
    assert_eq!(job.status, JobStatus::Succeed);
    checked_sum_of_revenue(&env, &source).await;
}
