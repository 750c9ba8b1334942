//! Segment lifecycle: overlapping builds refused, two halves merged equal one full build,
//! refresh replaces a segment atomically, a failed build leaves nothing behind, a corrupt block
//! is reported by name.

use std::path::Path;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use qilin_engine::measure::bitmap::DistinctBitmap;
use qilin_engine::measure::hll::HyperLogLog;
use qilin_engine::measure::tdigest::TDigest;
use qilin_engine::measure::topn::TopNCounter;
use qilin_engine::metadata::managers::Metadata;
use qilin_engine::model::{SegmentRange, SegmentStatus};
use qilin_engine::query::QueryEngine;
use qilin_engine::sample::ssb;
use qilin_engine::storage::block::read_cuboid;
use qilin_engine::Error;
use qilin_jobs::JobStatus;
use qilin_tests::{on_both_backends, quiet, shared_ssb_source, Backend, TestEnv};

const SF: f64 = 0.01;

async fn source() -> std::path::PathBuf {
    shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), SF).await
}

/// Asserts that two stored cuboids hold the same rows: dimensions and numeric states exactly,
/// sketches by their estimate / cardinality, t-digests by their value count.
fn assert_same_cuboid(a: &[RecordBatch], b: &[RecordBatch], what: &str) {
    let rows = |v: &[RecordBatch]| v.iter().map(|x| x.num_rows()).sum::<usize>();
    assert_eq!(rows(a), rows(b), "{what}: row count");
    let flat = |v: &[RecordBatch]| -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for batch in v {
            let schema = batch.schema();
            for r in 0..batch.num_rows() {
                out.push(
                    batch
                        .columns()
                        .iter()
                        .zip(schema.fields())
                        .map(|(c, f)| match c.data_type() {
                            // t-digests merged in another order differ; their counts do not.
                            DataType::Binary if f.name().ends_with("_percentile") => {
                                let bytes = c.as_binary::<i32>().value(r);
                                format!("tdigest:{}", TDigest::from_bytes(bytes).unwrap().count())
                            }
                            DataType::Binary => {
                                let bytes = c.as_binary::<i32>().value(r);
                                match HyperLogLog::from_bytes(bytes) {
                                    Ok(h) => format!("hll:{}", h.estimate()),
                                    Err(_) if TopNCounter::from_bytes(bytes).is_ok() => {
                                        format!(
                                            "topn:{:?}",
                                            TopNCounter::from_bytes(bytes).unwrap().sorted()
                                        )
                                    }
                                    Err(_) => format!(
                                        "bitmap:{}",
                                        DistinctBitmap::from_bytes(bytes).unwrap().cardinality()
                                    ),
                                }
                            }
                            _ => qilin_tests::cell(c.as_ref(), r),
                        })
                        .collect(),
                );
            }
        }
        out
    };
    assert_eq!(flat(a), flat(b), "{what}");
}

on_both_backends!(
    two_halves_merged_equal_one_full_build_and_overlaps_are_refused,
    refresh_replaces_a_segment_atomically,
    a_failed_build_leaves_no_segment_and_no_files,
    a_corrupt_block_is_named_and_a_merge_over_it_fails_cleanly,
    retention_drops_segments_older_than_the_range,
    an_unpartitioned_model_builds_one_full_segment,
);

async fn two_halves_merged_equal_one_full_build_and_overlaps_are_refused(backend: Backend) {
    let src = source().await;
    let full = TestEnv::on(backend, &src);
    full.install_sample(SF).await;
    full.build("1992-01-01..1999-01-01").await.unwrap();

    let parts = TestEnv::on(backend, &src);
    parts.install_sample(SF).await;
    parts.build("1992-01-01..1995-01-01").await.unwrap();
    parts.build("1995-01-01..1999-01-01").await.unwrap();

    for range in [
        "1992-01-01..1995-01-01",
        "1994-06-01..1996-01-01",
        "1990-01-01..2000-01-01",
    ] {
        match parts.build(range).await {
            Err(Error::Busy(msg)) => assert!(msg.contains("overlaps"), "{range}: {msg}"),
            other => panic!("building {range} again must be refused, got {other:?}"),
        }
    }
    let (inst, _) = parts.meta().cube_instance(ssb::CUBE).unwrap();
    assert_eq!(inst.segments.len(), 2, "refused builds left no segment");
    let halves: Vec<String> = inst.segments.iter().map(|s| s.id.clone()).collect();

    let range = SegmentRange::parse("1992-01-01", "1999-01-01").unwrap();
    let job = parts.engine.submit_merge(ssb::CUBE, range).unwrap();
    let job = parts.engine.run(&job.id, quiet()).await.unwrap();
    assert_eq!(job.status, JobStatus::Succeed);

    let (inst, _) = parts.meta().cube_instance(ssb::CUBE).unwrap();
    assert_eq!(inst.segments.len(), 1);
    let merged = &inst.segments[0];
    assert_eq!(merged.status, SegmentStatus::Ready);
    assert_eq!(merged.range, Some(range));
    assert_eq!(
        parts.segment_ids(),
        vec![merged.id.clone()],
        "merged halves' data is deleted"
    );
    assert!(halves.iter().all(|h| h != &merged.id));

    let (finst, _) = full.meta().cube_instance(ssb::CUBE).unwrap();
    let whole = &finst.segments[0];
    assert_eq!(merged.source_rows, whole.source_rows);
    let layout = full.meta().cube_layout(ssb::CUBE, 4096).unwrap();
    for &c in &layout.cuboids {
        let (_, a) = read_cuboid(full.engine.segment_store().as_ref(), &whole.id, c).unwrap();
        let (_, b) = read_cuboid(parts.engine.segment_store().as_ref(), &merged.id, c).unwrap();
        assert_same_cuboid(&a, &b, &format!("cuboid {:?}", layout.cuboid_names(c)));
    }
}

async fn refresh_replaces_a_segment_atomically(backend: Backend) {
    let env = TestEnv::on(backend, &source().await);
    env.install_sample(SF).await;
    env.build("1992-01-01..1999-01-01").await.unwrap();
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    let old = inst.segments[0].clone();

    let job = env.engine.submit_refresh(ssb::CUBE, &old.name).unwrap();
    // Until the refresh commits, queries still see the old READY segment.
    let (during, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    let ready: Vec<_> = during.ready_segments().map(|s| s.id.clone()).collect();
    assert_eq!(ready, vec![old.id.clone()]);
    assert!(
        matches!(
            env.engine.submit_refresh(ssb::CUBE, &old.name),
            Err(Error::Busy(_))
        ),
        "a second refresh is refused"
    );
    env.engine.run(&job.id, quiet()).await.unwrap();

    let (after, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    assert_eq!(after.segments.len(), 1);
    let new = &after.segments[0];
    assert_eq!(new.status, SegmentStatus::Ready);
    assert_ne!(new.id, old.id);
    assert_eq!(
        (new.name.as_str(), new.range),
        (old.name.as_str(), old.range)
    );
    assert_eq!(
        env.segment_ids(),
        vec![new.id.clone()],
        "the replaced segment's data is deleted"
    );
    assert_eq!(new.cuboids, old.cuboids, "same source, same cuboids");
}

async fn a_failed_build_leaves_no_segment_and_no_files(backend: Backend) {
    // A private copy of the source, with one lookup table missing.
    let shared = source().await;
    let private = tempfile::tempdir().unwrap();
    let dir = private.path().join(ssb::SOURCE_DIR);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(shared.join(ssb::SOURCE_DIR)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let env = TestEnv::on(backend, private.path());
    env.install_sample(SF).await;
    std::fs::remove_file(dir.join("supplier.parquet")).unwrap();

    let err = env
        .build("1992-01-01..1999-01-01")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("supplier"), "{err}");
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    assert!(inst.segments.is_empty(), "{:?}", inst.segments);
    assert!(env.segment_ids().is_empty());
    let jobs = env.engine.list().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].status, JobStatus::Error);
    assert!(jobs[0].error.as_deref().unwrap_or("").contains("supplier"));
    // With the file back, the same range builds.
    std::fs::copy(
        shared.join(ssb::SOURCE_DIR).join("supplier.parquet"),
        dir.join("supplier.parquet"),
    )
    .unwrap();
    env.build("1992-01-01..1999-01-01").await.unwrap();
}

async fn a_corrupt_block_is_named_and_a_merge_over_it_fails_cleanly(backend: Backend) {
    let env = TestEnv::on(backend, &source().await);
    env.install_sample(SF).await;
    env.build("1992-01-01..1995-01-01").await.unwrap();
    env.build("1995-01-01..1999-01-01").await.unwrap();
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    let seg = &inst.segments[0];
    let base = seg.cuboids[0].id;
    env.corrupt_block(&seg.id, base, 0);

    let err = read_cuboid(env.engine.segment_store().as_ref(), &seg.id, base).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Corrupt { .. }), "{msg}");
    assert!(
        msg.contains(&seg.id)
            && msg.contains(&format!("cuboid {base}"))
            && msg.contains("checksum"),
        "{msg}"
    );

    let job = env
        .engine
        .submit_merge(
            ssb::CUBE,
            SegmentRange::parse("1992-01-01", "1999-01-01").unwrap(),
        )
        .unwrap();
    let err = env
        .engine
        .run(&job.id, quiet())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("checksum") && err.contains(&seg.id), "{err}");
    let (after, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    assert_eq!(
        after.segments.len(),
        2,
        "the failed merge's NEW segment is gone, both halves remain"
    );
    assert!(after
        .segments
        .iter()
        .all(|s| s.status == SegmentStatus::Ready));
    assert_eq!(env.engine.get(&job.id).unwrap().status, JobStatus::Error);

    // A query whose cuboid has a corrupt block fails with an error naming it, no panic.
    let query = QueryEngine::new(
        &env.config,
        Metadata::new(env.meta().store().clone()),
        env.engine.segment_store().clone(),
    );
    let sql = "select d_year, count(*) from lineorder, dates where lo_orderdate = d_datekey group by d_year";
    let (_, plan) = query.plan_and_rewrite(sql).await.unwrap();
    assert!(plan.is_some(), "answered from a cuboid");
    let explain = query
        .execute(&format!("EXPLAIN {sql}"), None)
        .await
        .unwrap();
    let cuboid: u64 = explain.batches[0]
        .column(1)
        .as_string::<i32>()
        .iter()
        .flatten()
        .find_map(|t| t.strip_prefix("cuboid ")?.split(' ').next()?.parse().ok())
        .expect("a cuboid row");
    env.corrupt_block(&seg.id, cuboid, 0);
    let err = query.execute(sql, None).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Corrupt { .. }), "{msg}");
    assert!(
        msg.contains(&seg.id) && msg.contains(&format!("cuboid {cuboid}")),
        "{msg}"
    );
}

#[test]
fn segment_ranges_must_be_ordered_dates() {
    assert!(SegmentRange::parse("1995-01-01", "1992-01-01").is_err());
    assert!(SegmentRange::parse("1995-01-01", "1995-01-01").is_err());
    let err = SegmentRange::parse("yesterday", "1995-01-01")
        .unwrap_err()
        .to_string();
    assert!(err.contains("yesterday"), "{err}");
}

async fn retention_drops_segments_older_than_the_range(backend: Backend) {
    let env = TestEnv::on(backend, &source().await);
    let mut cube = ssb::cube();
    cube.retention_range_days = Some(3 * 366);
    env.install_sample(SF).await;
    env.meta().save_cube(&cube, 4096).unwrap();
    env.build("1992-01-01..1994-01-01").await.unwrap();
    env.build("1994-01-01..1996-01-01").await.unwrap();
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    assert_eq!(
        inst.segments.len(),
        2,
        "both within three years of the newest end"
    );
    let oldest = inst.segments[0].id.clone();
    env.build("1996-01-01..1998-01-01").await.unwrap();
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    let names: Vec<&str> = inst.segments.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "19940101000000_19960101000000",
            "19960101000000_19980101000000"
        ]
    );
    assert!(
        !env.segment_ids().contains(&oldest),
        "the dropped segment's data is deleted"
    );
}

async fn an_unpartitioned_model_builds_one_full_segment(backend: Backend) {
    let env = TestEnv::on(backend, &source().await);
    env.install_sample(SF).await;
    let mut model = ssb::model();
    model.name = "ssb_flat".into();
    model.partition = None;
    env.meta().save_model(&model).unwrap();
    let mut cube = ssb::cube();
    cube.name = "ssb_flat_cube".into();
    cube.model = "ssb_flat".into();
    env.meta().save_cube(&cube, 4096).unwrap();

    let refused = env.engine.submit_build(
        "ssb_flat_cube",
        Some(SegmentRange::parse("1992-01-01", "1993-01-01").unwrap()),
    );
    assert!(
        matches!(refused, Err(Error::Refused(ref m)) if m.contains("no partition column")),
        "{refused:?}"
    );
    let job = env.engine.submit_build("ssb_flat_cube", None).unwrap();
    env.engine.run(&job.job().id, quiet()).await.unwrap();
    let (inst, _) = env.meta().cube_instance("ssb_flat_cube").unwrap();
    assert_eq!(inst.segments.len(), 1);
    assert_eq!(inst.segments[0].name, "FULL_BUILD");
    assert_eq!(inst.segments[0].status, SegmentStatus::Ready);
    assert!(matches!(
        env.engine.submit_build("ssb_flat_cube", None),
        Err(Error::Busy(_))
    ));
    // The partitioned sample cube insists on a range.
    assert!(
        matches!(env.engine.submit_build(ssb::CUBE, None), Err(Error::Refused(ref m)) if m.contains("lo_orderdate"))
    );
}
