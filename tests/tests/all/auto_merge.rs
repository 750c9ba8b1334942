//! Auto-merge through the job engine: daily builds of the SSB cube (partitioned on
//! lo_orderdate) with `auto_merge_time_ranges` [7, 28] become a week, four weeks become 28
//! days, queries answer as the raw tables do, retention later drops the merged segment; the
//! job daemon runs the merge a build triggered, and so does the `qilin-jobs build` command.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use qilin_engine::config::Config;
use qilin_engine::metadata::managers::Metadata;
use qilin_engine::metadata::LocalResourceStore;
use qilin_engine::model::{SegmentRange, SegmentStatus};
use qilin_engine::query::QueryEngine;
use qilin_engine::sample::ssb;
use qilin_engine::storage::LocalSegmentStore;
use qilin_jobs::{Job, JobEngine, JobKind, JobStatus};
use qilin_tests::{oracle, quiet, rows_by_key, shared_ssb_source, Backend, TestEnv};

const SF: f64 = 0.01;

fn segment_names(env: &TestEnv) -> Vec<String> {
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    inst.segments.iter().map(|s| s.name.clone()).collect()
}

fn merge_jobs(engine: &JobEngine) -> Vec<Job> {
    engine
        .list()
        .unwrap()
        .into_iter()
        .filter(|j| j.kind == JobKind::Merge)
        .collect()
}

/// Runs the auto-merges `build` submitted and asserts they all succeeded.
async fn run_merges(env: &TestEnv, build: &Job) -> Vec<Job> {
    env.engine
        .run_auto_merges(build, quiet())
        .await
        .into_iter()
        .map(|(id, r)| r.unwrap_or_else(|e| panic!("auto-merge job {id}: {e}")))
        .collect()
}

/// Cube queries over 1992-01-01..1992-01-29 and the same aggregates on the raw tables
/// restricted to those days (the oracle's extra predicate).
const QUERIES: [(&str, &str, usize); 4] = [
    (
        "select d_year, count(*), sum(lo_revenue) from lineorder, dates where lo_orderdate = d_datekey",
        "group by d_year",
        1,
    ),
    (
        "select lo_orderdate, c_region, count(*), sum(lo_revenue), max(lo_extendedprice) from lineorder, customer where lo_custkey = c_custkey",
        "group by lo_orderdate, c_region",
        2,
    ),
    (
        "select d_weeknuminyear, sum(lo_quantity), min(lo_extendedprice) from lineorder, dates where lo_orderdate = d_datekey",
        "group by d_weeknuminyear",
        1,
    ),
    (
        "select c_region, count(distinct lo_suppkey) from lineorder, customer where lo_custkey = c_custkey",
        "group by c_region",
        1,
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_builds_merge_into_weeks_then_28_days_and_retention_drops_them() {
    let source = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), SF).await;
    let env = TestEnv::on(Backend::Local, &source);
    env.install_sample(SF).await;
    let mut cube = ssb::cube();
    cube.auto_merge_time_ranges = vec![7, 28];
    cube.retention_range_days = Some(35);
    env.meta().save_cube(&cube, 4096).unwrap();

    // Six days fill no window; the seventh fills [Jan 1, Jan 8).
    let mut last = None;
    for day in 1..=7 {
        let range = format!("1992-01-{day:02}..1992-01-{:02}", day + 1);
        let job = env.build(&range).await.unwrap();
        if day < 7 {
            assert!(merge_jobs(&env.engine).is_empty(), "after {range}");
        }
        last = Some(job);
    }
    let seventh = last.unwrap();
    let merges = merge_jobs(&env.engine);
    assert_eq!(merges.len(), 1, "{merges:?}");
    let week = &merges[0];
    assert_eq!(week.status, JobStatus::Ready);
    assert_eq!(week.triggered_by.as_deref(), Some(seventh.id.as_str()));
    assert_eq!(week.segment_name, "19920101000000_19920108000000");
    assert_eq!(week.replaces.len(), 7);
    // Planned again before it ran: the seven days are being merged, nothing new to submit.
    assert!(env
        .engine
        .submit_auto_merge(ssb::CUBE, None)
        .unwrap()
        .is_none());

    let (before, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    let daily_rows: u64 = before.ready_segments().map(|s| s.source_rows).sum();
    let ran = run_merges(&env, &seventh).await;
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].status, JobStatus::Succeed);
    assert_eq!(segment_names(&env), vec!["19920101000000_19920108000000"]);

    // Whole weeks are one segment per 7-day window: no merge until four of them fill 28 days.
    env.build("1992-01-08..1992-01-15").await.unwrap();
    env.build("1992-01-15..1992-01-22").await.unwrap();
    assert_eq!(merge_jobs(&env.engine).len(), 1, "only the first merge");
    let fourth = env.build("1992-01-22..1992-01-29").await.unwrap();
    let ran = run_merges(&env, &fourth).await;
    assert_eq!(ran.len(), 1);
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    assert_eq!(segment_names(&env), vec!["19920101000000_19920129000000"]);
    let merged = &inst.segments[0];
    assert_eq!(merged.status, SegmentStatus::Ready);
    assert!(
        merged.source_rows > daily_rows,
        "four weeks hold more rows than the first"
    );
    assert_eq!(
        env.segment_ids(),
        vec![merged.id.clone()],
        "the merged segments' data is deleted"
    );

    // Queries over the merged segment answer as the raw tables over those 28 days.
    let query = QueryEngine::new(
        &env.config,
        Metadata::new(env.meta().store().clone()),
        env.engine.segment_store().clone(),
    );
    let raw = oracle(&source).await;
    for (select, group, keys) in QUERIES {
        let sql = format!("{select} {group}");
        let (_, plan) = query.plan_and_rewrite(&sql).await.unwrap();
        assert!(plan.is_some(), "answered from the cube: {sql}");
        let got = query.execute(&sql, None).await.unwrap().batches;
        let want = raw
            .sql(&format!(
                "{select} and lo_orderdate >= 19920101 and lo_orderdate < 19920129 {group}"
            ))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let (got, want) = (rows_by_key(&got, keys), rows_by_key(&want, keys));
        assert!(!want.is_empty(), "{sql}");
        assert_eq!(got, want, "{sql}");
    }

    // Retention (35 days) drops the merged segment once a build ends 35 days after it.
    let long = env.build("1992-01-29..1992-03-04").await.unwrap();
    assert!(
        run_merges(&env, &long).await.is_empty(),
        "one segment, nothing to merge"
    );
    assert_eq!(segment_names(&env), vec!["19920129000000_19920304000000"]);
    assert!(!env.segment_ids().contains(&merged.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_build_command_runs_the_merge_it_triggered() {
    let source = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), SF).await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("kylin.properties");
    std::fs::write(
        &conf,
        format!(
            "kylin.metadata.url={0}/meta\nkylin.storage.url={0}/segments\nkylin.source.url={1}\n",
            dir.path().display(),
            source.display()
        ),
    )
    .unwrap();
    let config =
        Config::from_parts(&std::fs::read_to_string(&conf).unwrap(), "test", |_| None).unwrap();
    let meta = Metadata::new(Arc::new(
        LocalResourceStore::open(&config.stores.metadata_url).unwrap(),
    ));
    ssb::install(&meta, &source, SF, 4096).await.unwrap();
    let mut cube = ssb::cube();
    cube.auto_merge_time_ranges = vec![2];
    meta.save_cube(&cube, 4096).unwrap();

    let build = |start: &str, end: &str| {
        let out = Command::new(qilin_tests::workspace_exe("qilin-jobs"))
            .arg("--conf")
            .arg(&conf)
            .args(["build", "--cube", ssb::CUBE, "--start", start, "--end", end])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{err}");
        err
    };
    let first = build("1992-02-01", "1992-02-02");
    assert!(!first.contains("auto-merge"), "{first}");
    let second = build("1992-02-02", "1992-02-03");
    assert!(
        second.contains("auto-merge: job")
            && second.contains("19920201000000_19920203000000 READY"),
        "{second}"
    );

    let engine = JobEngine::new(
        meta,
        Arc::new(LocalSegmentStore::open(&config.stores.storage_url).unwrap()),
        config,
    );
    let (inst, _) = engine.metadata().cube_instance(ssb::CUBE).unwrap();
    let ranges: Vec<_> = inst.segments.iter().map(|s| (s.range, s.status)).collect();
    assert_eq!(
        ranges,
        vec![(
            Some(SegmentRange::parse("1992-02-01", "1992-02-03").unwrap()),
            SegmentStatus::Ready
        )]
    );
    let merges = merge_jobs(&engine);
    assert_eq!(merges.len(), 1);
    assert_eq!(merges[0].status, JobStatus::Succeed);
    assert!(merges[0].triggered_by.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_spares_the_segments_a_pending_merge_reads() {
    let source = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), SF).await;
    let env = TestEnv::on(Backend::Local, &source);
    env.install_sample(SF).await;
    let mut cube = ssb::cube();
    cube.auto_merge_time_ranges = vec![2];
    cube.retention_range_days = Some(5);
    env.meta().save_cube(&cube, 4096).unwrap();

    env.build("1992-01-01..1992-01-02").await.unwrap();
    let second = env.build("1992-01-02..1992-01-03").await.unwrap();
    assert_eq!(merge_jobs(&env.engine).len(), 1, "two days fill the window");
    // Before the merge runs, a build ending more than five days after both days commits:
    // retention keeps them, since the pending merge reads them.
    env.build("1992-01-03..1992-01-10").await.unwrap();
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    let states: Vec<(&str, SegmentStatus)> = inst
        .segments
        .iter()
        .map(|s| (s.name.as_str(), s.status))
        .collect();
    assert_eq!(states.len(), 4, "{states:?}");
    assert_eq!(inst.ready_segments().count(), 3, "{states:?}");

    // The merge succeeds, and its own commit applies retention to the merged segment.
    let ran = run_merges(&env, &second).await;
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].status, JobStatus::Succeed);
    assert_eq!(segment_names(&env), vec!["19920103000000_19920110000000"]);
    assert_eq!(env.segment_ids().len(), 1, "dropped segments' data deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_daemon_runs_the_merge_a_build_triggered() {
    let source = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), SF).await;
    let env = TestEnv::on(Backend::Local, &source);
    env.install_sample(SF).await;
    let mut cube = ssb::cube();
    cube.auto_merge_time_ranges = vec![2];
    env.meta().save_cube(&cube, 4096).unwrap();
    let day = |d: u32| {
        SegmentRange::parse(&format!("1992-01-{d:02}"), &format!("1992-01-{:02}", d + 1)).unwrap()
    };
    // Written into the store for the daemon, as `qilin.build` does.
    env.engine.submit_build(ssb::CUBE, Some(day(1))).unwrap();
    let second = env.engine.submit_build(ssb::CUBE, Some(day(2))).unwrap();

    let daemon = qilin_jobs::daemon::Daemon::new(env.engine.clone(), &env.config, None);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(daemon.run(async {
        let _ = stopped.await;
    }));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let merge = loop {
        let done = merge_jobs(&env.engine)
            .into_iter()
            .find(|j| j.status.is_final());
        if let Some(m) = done {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no merge finished: {:?}",
            env.engine.list().unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let _ = stop.send(());
    running.await.unwrap();

    assert_eq!(merge.status, JobStatus::Succeed, "{:?}", merge.error);
    assert_eq!(
        merge.triggered_by.as_deref(),
        Some(second.job().id.as_str())
    );
    assert_eq!(segment_names(&env), vec!["19920101000000_19920103000000"]);
}
