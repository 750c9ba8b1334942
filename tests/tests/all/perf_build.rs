//! The parallel build (the flat table hash-partitioned over several aggregating partitions of
//! the base cuboid's plan, their sorted outputs merged) writes the same cuboids as a
//! single-threaded build:
//! every cuboid of the SSB sample, compared row by row after decoding, with and without
//! spilling.

use std::path::Path;
use std::sync::Arc;

use qilin_engine::build::spill::SpillOptions;
use qilin_engine::build::{build_segment, BuildOptions, Progress};
use qilin_engine::measure::tdigest::TDigest;
use qilin_engine::model::{SegmentRange, StateKind};
use qilin_engine::sample::ssb;
use qilin_engine::storage::block::for_each_block;
use qilin_engine::storage::SegmentStore;
use qilin_tests::{shared_ssb_source, TestEnv};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::concat_batches;

const SF: f64 = 0.01;

async fn build(env: &TestEnv, segment: &str, threads: usize, memory_bytes: usize) -> Vec<u64> {
    let layout = Arc::new(env.meta().cube_layout(ssb::CUBE, 4096).unwrap());
    let progress: Progress = Arc::new(|_, _| Ok(()));
    let opts = BuildOptions {
        source_url: env.config.stores.source_url.clone().into(),
        // Small blocks: many batches meet in the interleaving merge.
        block_rows: 1000,
        spill: SpillOptions {
            memory_bytes,
            dir: env.dir.path().join("spill"),
        },
        threads,
        cluster: None,
    };
    let out = build_segment(
        layout.clone(),
        &opts,
        env.engine.segment_store().clone(),
        segment,
        Some(SegmentRange::parse("1992-01-01", "1999-01-01").unwrap()),
        progress,
    )
    .await
    .unwrap();
    assert_eq!(out.cuboids.len(), layout.cuboids.len());
    out.cuboids.iter().map(|c| c.rows).collect()
}

fn cuboid(store: &dyn SegmentStore, segment: &str, id: u64) -> RecordBatch {
    let mut batches = Vec::new();
    for_each_block(store, segment, id, |b| {
        batches.push(b);
        Ok(())
    })
    .unwrap();
    concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn same_digests(got: &ArrayRef, want: &ArrayRef, c: u64) {
    let (got, want) = (got.as_binary::<i32>(), want.as_binary::<i32>());
    for r in 0..want.len() {
        assert_eq!(got.is_valid(r), want.is_valid(r), "cuboid {c} row {r}");
        if want.is_valid(r) {
            let (g, w) = (
                TDigest::from_bytes(got.value(r)).unwrap(),
                TDigest::from_bytes(want.value(r)).unwrap(),
            );
            assert_eq!(g.count(), w.count(), "cuboid {c} row {r}");
            for q in [0.0, 1.0] {
                assert_eq!(g.quantile(q), w.quantile(q), "cuboid {c} row {r} q {q}");
            }
        }
    }
}

/// Cuboids are stored in rowkey order with one row per key, so equal content is equal
/// batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_build_writes_the_same_cuboids_as_a_single_threaded_one() {
    let source = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), SF).await;
    let env = TestEnv::new(&source);
    env.install_sample(SF).await;
    let layout = env.meta().cube_layout(ssb::CUBE, 4096).unwrap();
    let single = "0badc0de-0000-4000-8000-0000000000a1";
    let parallel = "0badc0de-0000-4000-8000-0000000000a2";
    let spilling = "0badc0de-0000-4000-8000-0000000000a3";
    let rows = build(&env, single, 1, 1 << 30).await;
    assert_eq!(
        build(&env, parallel, 3, 1 << 30).await,
        rows,
        "rows per cuboid"
    );
    let spills = qilin_engine::build::spill::runs_written();
    // A budget far below the base cuboid: every aggregating partition spills.
    assert_eq!(build(&env, spilling, 3, 1 << 20).await, rows);
    assert!(
        qilin_engine::build::spill::runs_written() > spills + 3,
        "the small budget spilled"
    );
    assert!(rows[0] > 50_000, "a base cuboid of {} rows", rows[0]);
    // A t-digest's centroids depend on the order digests are merged in, and spilled runs
    // of the child cuboids merge in another order than one hash table: there the digests
    // must hold the same values (count, extremes), not the same centroids.
    let percentile: Vec<String> = layout
        .measures
        .iter()
        .filter(|m| matches!(m.state, StateKind::Percentile(_)))
        .map(|m| m.name.clone())
        .collect();
    assert!(!percentile.is_empty());
    let store = env.engine.segment_store().clone();
    for &c in &layout.cuboids {
        let want = cuboid(store.as_ref(), single, c);
        for seg in [parallel, spilling] {
            let got = cuboid(store.as_ref(), seg, c);
            assert_eq!(got.schema(), want.schema(), "cuboid {c} in {seg}");
            assert_eq!(got.num_rows(), want.num_rows(), "cuboid {c} in {seg}");
            for (i, f) in want.schema().fields().iter().enumerate() {
                if seg == spilling && percentile.contains(f.name()) {
                    same_digests(got.column(i), want.column(i), c);
                    continue;
                }
                assert!(
                    got.column(i) == want.column(i),
                    "cuboid {c} column {} differs in {seg}",
                    f.name()
                );
            }
        }
    }
}
