//! Every cuboid of the SSB sample cube equals, row for row, the GROUP BY of its dimensions
//! computed by DataFusion directly on the raw joined tables: SUM/COUNT/MIN/MAX exactly, the
//! HLL estimate within three standard errors, the bitmap cardinality exactly (of integers
//! and of a string column's global dictionary ids), the t-digest's value count exactly.

use std::collections::HashMap;
use std::path::Path;

use datafusion::arrow::array::AsArray;
use qilin_engine::measure::bitmap::DistinctBitmap;
use qilin_engine::measure::hll::HyperLogLog;
use qilin_engine::measure::tdigest::TDigest;
use qilin_engine::measure::topn::TopNCounter;
use qilin_engine::sample::ssb;
use qilin_engine::storage::block::read_cuboid;
use qilin_tests::{on_both_backends, oracle, rows_by_key, shared_ssb_source, Backend, TestEnv};

/// The oracle's expression for each measure of the sample cube, written independently of
/// the cube's descriptor (the test fails if the cube's measures change).
const MEASURES: &[(&str, &str)] = &[
    ("row_count", "COUNT(*)"),
    ("lo_revenue_sum", "SUM(lo_revenue)"),
    ("lo_supplycost_sum", "SUM(lo_supplycost)"),
    ("v_revenue_sum", "SUM(lo_extendedprice * lo_discount)"),
    ("v_profit_sum", "SUM(lo_revenue - lo_supplycost)"),
    ("lo_quantity_sum", "SUM(lo_quantity)"),
    ("lo_extendedprice_sum", "SUM(lo_extendedprice)"),
    ("lo_extendedprice_min", "MIN(lo_extendedprice)"),
    ("lo_extendedprice_max", "MAX(lo_extendedprice)"),
    ("lo_custkey_hll", "COUNT(DISTINCT lo_custkey)"),
    ("lo_suppkey_bitmap", "COUNT(DISTINCT lo_suppkey)"),
    // The t-digest's value count (its quantiles are checked by measure_percentile).
    ("lo_revenue_percentile", "COUNT(lo_revenue)"),
    // The largest name of the group's suppliers: the one name when lo_suppkey is grouped.
    ("s_name_extended", "MAX(s_name)"),
    ("c_name_distinct", "COUNT(DISTINCT c_name)"),
    // Checked as: an exact state whose counters add up to the row's revenue.
    (
        "lo_revenue_top_sellers",
        "SUM(lo_revenue) AS top_sellers_total",
    ),
];

const JOINED: &str = "lineorder JOIN dates ON lo_orderdate = d_datekey \
    JOIN customer ON lo_custkey = c_custkey JOIN supplier ON lo_suppkey = s_suppkey \
    JOIN part ON lo_partkey = p_partkey";

on_both_backends!(every_cuboid_equals_group_by_on_raw_tables);

async fn every_cuboid_equals_group_by_on_raw_tables(backend: Backend) {
    check_every_cuboid(backend, "").await
}

/// A 16 MiB aggregation budget makes the base cuboid and the large cuboids spill sorted runs
/// (the SF 0.01 base cuboid alone estimates at several times that) and merge them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cuboid_equals_group_by_when_aggregations_spill() {
    let spill_dir = tempfile::tempdir().unwrap();
    let before = qilin_engine::build::spill::runs_written();
    check_every_cuboid(
        Backend::Local,
        &format!(
            "kylin.job.aggregation-memory-mb=16\nkylin.job.spill-dir={}\n",
            spill_dir.path().display()
        ),
    )
    .await;
    let runs = qilin_engine::build::spill::runs_written() - before;
    assert!(runs >= 4, "only {runs} spilled runs");
    // Every run file is gone with its aggregation.
    assert_eq!(std::fs::read_dir(spill_dir.path()).unwrap().count(), 0);
}

async fn check_every_cuboid(backend: Backend, properties: &str) {
    let source = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), 0.01).await;
    let env = TestEnv::with_properties(backend, &source, properties);
    env.install_sample(0.01).await;
    let job = env.build("1992-01-01..1999-01-01").await.expect("build");
    assert_eq!(job.status, qilin_jobs::JobStatus::Succeed);

    let layout = env.meta().cube_layout(ssb::CUBE, 4096).unwrap();
    let names: Vec<&str> = layout.measures.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, MEASURES.iter().map(|m| m.0).collect::<Vec<_>>());
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    let seg = inst.ready_segments().next().expect("a READY segment");
    assert!(
        layout.cuboids.len() > 100,
        "{} cuboids",
        layout.cuboids.len()
    );
    assert_eq!(seg.cuboids.len(), layout.cuboids.len());

    let ctx = oracle(&source).await;
    let raw_rows: i64 = ctx
        .sql("SELECT COUNT(*) FROM lineorder")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()[0]
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
        .value(0);
    assert_eq!(seg.source_rows as i64, raw_rows);

    let hll_col = MEASURES
        .iter()
        .position(|m| m.0 == "lo_custkey_hll")
        .unwrap();
    // Bitmaps of integers and of global dictionary ids (c_name).
    let bitmap_cols: Vec<usize> = ["lo_suppkey_bitmap", "c_name_distinct"]
        .iter()
        .map(|n| MEASURES.iter().position(|m| m.0 == *n).unwrap())
        .collect();
    let percentile_col = MEASURES
        .iter()
        .position(|m| m.0 == "lo_revenue_percentile")
        .unwrap();
    let top_n_col = MEASURES
        .iter()
        .position(|m| m.0 == "lo_revenue_top_sellers")
        .unwrap();
    let mut checked_rows = 0usize;
    for &cuboid in &layout.cuboids {
        let dims = layout.cuboid_names(cuboid);
        let select: Vec<String> = dims
            .iter()
            .cloned()
            .chain(MEASURES.iter().map(|m| m.1.to_string()))
            .collect();
        let mut sql = format!("SELECT {} FROM {JOINED}", select.join(", "));
        if !dims.is_empty() {
            sql.push_str(&format!(" GROUP BY {}", dims.join(", ")));
        }
        let expected = rows_by_key(
            &ctx.sql(&sql).await.unwrap().collect().await.unwrap(),
            dims.len(),
        );
        let (_, batches) =
            read_cuboid(env.engine.segment_store().as_ref(), &seg.id, cuboid).unwrap();
        let stored = rows_by_key(&batches, dims.len());
        assert_eq!(stored.len(), expected.len(), "cuboid {dims:?}: row count");
        let mut position = HashMap::new();
        for (bi, b) in batches.iter().enumerate() {
            for r in 0..b.num_rows() {
                let k: Vec<String> = (0..dims.len())
                    .map(|c| qilin_tests::cell(b.column(c).as_ref(), r))
                    .collect();
                position.insert(k, (bi, r));
            }
        }
        let state = |key: &Vec<String>, measure: usize| -> Vec<u8> {
            let (bi, r) = position[key];
            batches[bi]
                .column(dims.len() + measure)
                .as_binary::<i32>()
                .value(r)
                .to_vec()
        };
        for (key, want) in &expected {
            let got = stored
                .get(key)
                .unwrap_or_else(|| panic!("cuboid {dims:?}: group {key:?} missing"));
            for (i, (name, _)) in MEASURES.iter().enumerate() {
                if i == hll_col {
                    let exact: f64 = want[i].parse().unwrap();
                    let bytes = state(key, i);
                    let h = HyperLogLog::from_bytes(&bytes).unwrap();
                    let bound = 3.0 * h.relative_error() * exact + 1.0;
                    assert!(
                        (h.estimate() as f64 - exact).abs() <= bound,
                        "cuboid {dims:?} {key:?}: HLL {} vs exact {exact}",
                        h.estimate()
                    );
                } else if bitmap_cols.contains(&i) {
                    let bytes = state(key, i);
                    let b = DistinctBitmap::from_bytes(&bytes).unwrap();
                    assert_eq!(
                        b.cardinality().to_string(),
                        want[i],
                        "cuboid {dims:?} {key:?}: bitmap"
                    );
                } else if i == percentile_col {
                    let d = TDigest::from_bytes(&state(key, i)).unwrap();
                    assert_eq!(
                        d.count().to_string(),
                        want[i],
                        "cuboid {dims:?} {key:?}: t-digest count"
                    );
                } else if i == top_n_col {
                    // SF 0.01 has 20 suppliers, far below the 5000 counters a state keeps.
                    let t = TopNCounter::from_bytes(&state(key, i)).unwrap();
                    assert!(t.is_exact(), "cuboid {dims:?} {key:?}: TOP_N not exact");
                    let total: f64 = t.sorted().iter().map(|c| c.1.sum).sum();
                    assert_eq!(
                        (total as i64).to_string(),
                        want[i],
                        "cuboid {dims:?} {key:?}: TOP_N total"
                    );
                } else {
                    assert_eq!(
                        &got[i], &want[i],
                        "cuboid {dims:?} group {key:?} measure {name}"
                    );
                }
            }
        }
        checked_rows += stored.len();
    }
    assert!(checked_rows > 10_000, "only {checked_rows} rows compared");
}
