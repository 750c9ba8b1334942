//! Jobs through Kylin's REST API (`/kylin/api/jobs`, `/kylin/api/cubes/{cube}/rebuild`,
//! `/qilin/api/system`) on a real server, and the progress a build reports: one overall
//! fraction that never goes backwards while cuboids build in parallel.

use std::path::Path;
use std::sync::{Arc, Mutex};

use qilin_engine::build::spill::SpillOptions;
use qilin_engine::build::{build_segment, BuildOptions, Progress};
use qilin_engine::model::SegmentRange;
use qilin_engine::sample::ssb;
use qilin_tests::{shared_ssb_source, TestEnv};

const SF: f64 = 0.01;

async fn source() -> std::path::PathBuf {
    shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), SF).await
}

/// Every fraction a build reports, unthrottled, with four cuboid threads and small blocks
/// (many "rows written" reports from workers that started early): the sequence never
/// decreases and ends at 1. Before the overall tracker, a worker reported the fraction of
/// cuboids done when it *started* while others had finished more since (41 % → 26 %), and
/// the table index restarted at 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_progress_never_decreases_with_parallel_cuboids() {
    let env = TestEnv::new(&source().await);
    env.install_sample(SF).await;
    let layout = Arc::new(env.meta().cube_layout(ssb::CUBE, 4096).unwrap());
    assert!(
        layout.cuboids.len() > 8,
        "enough cuboids to run in parallel"
    );
    assert!(layout.table_index.is_some());
    let seen: Arc<Mutex<Vec<(f64, String)>>> = Arc::default();
    let s = seen.clone();
    let progress: Progress = Arc::new(move |f, msg| {
        s.lock().unwrap().push((f, msg.to_string()));
        Ok(())
    });
    let opts = BuildOptions {
        source_url: env.config.stores.source_url.clone().into(),
        block_rows: 256,
        spill: SpillOptions {
            memory_bytes: 64 << 20,
            dir: env.dir.path().join("spill"),
        },
        threads: 4,
    };
    let out = build_segment(
        layout.clone(),
        &opts,
        env.engine.segment_store().clone(),
        "0badc0de-0000-4000-8000-000000000001",
        Some(SegmentRange::parse("1992-01-01", "1999-01-01").unwrap()),
        progress,
    )
    .await
    .unwrap();
    assert_eq!(out.cuboids.len(), layout.cuboids.len());
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() > layout.cuboids.len(), "{} reports", seen.len());
    for w in seen.windows(2) {
        assert!(
            w[1].0 >= w[0].0,
            "progress went back from {:.4} ({}) to {:.4} ({})",
            w[0].0,
            w[0].1,
            w[1].0,
            w[1].1
        );
    }
    assert_eq!(seen.last().map(|s| s.0), Some(1.0), "{:?}", seen.last());
    // It moves through the build, not only at the end.
    let mid = seen.iter().filter(|s| s.0 > 0.2 && s.0 < 0.9).count();
    assert!(mid > 5, "only {mid} reports between 20% and 90%");
}

/// The job's recorded progress (what `/kylin/api/jobs/{id}` shows) through a build and a
/// merge: never lower than before, the commit steps after the cuboids, 1 at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_progress_rises_through_build_and_merge_steps() {
    let env = TestEnv::with_properties(
        qilin_tests::Backend::Local,
        &source().await,
        "kylin.job.build-threads=4\n",
    );
    env.install_sample(SF).await;
    let seen: Arc<Mutex<Vec<(f64, usize)>>> = Arc::default();
    let s = seen.clone();
    let observer: qilin_jobs::Observer = Arc::new(move |j: &qilin_jobs::Job| {
        s.lock().unwrap().push((j.progress, j.current_step()));
    });
    let check = |what: &str| {
        let v = std::mem::take(&mut *seen.lock().unwrap());
        for w in v.windows(2) {
            assert!(w[1].0 >= w[0].0, "{what}: progress went back: {v:?}");
        }
        assert_eq!(v.first().map(|p| p.0), Some(0.0), "{what}: {v:?}");
        assert_eq!(v.last().map(|p| p.0), Some(1.0), "{what}: {v:?}");
        // The commit step starts at the first step's share.
        assert!(
            v.iter()
                .any(|&(p, step)| step == 1 && p >= qilin_jobs::job::FIRST_STEP_SHARE),
            "{what}: {v:?}"
        );
    };
    for range in ["1992-01-01..1995-01-01", "1995-01-01..1999-01-01"] {
        let (a, b) = range.split_once("..").unwrap();
        let sub = env
            .engine
            .submit_build(ssb::CUBE, Some(SegmentRange::parse(a, b).unwrap()))
            .unwrap();
        env.engine
            .run(&sub.job().id, observer.clone())
            .await
            .unwrap();
        check(range);
    }
    let merge = env
        .engine
        .submit_merge(
            ssb::CUBE,
            SegmentRange::parse("1992-01-01", "1999-01-01").unwrap(),
        )
        .unwrap();
    let done = env.engine.run(&merge.id, observer.clone()).await.unwrap();
    assert_eq!(done.progress, 1.0);
    check("merge");
}
