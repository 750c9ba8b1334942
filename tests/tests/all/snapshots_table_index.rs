//! Lookup snapshots and table indexes: over two segments, after merging them, and after the
//! source files are gone, lookup-only queries are answered from the snapshots and detail
//! queries from the table index, each equal to DataFusion on the raw tables; EXPLAIN names
//! the snapshot or the table index, a filter on the sort column prunes blocks, and a cube
//! without a table index refuses detail rows saying what would answer them.

use std::path::{Path, PathBuf};

use datafusion::arrow::array::RecordBatch;
use qilin_engine::admin::documents::put_cube;
use qilin_engine::metadata::managers::Metadata;
use qilin_engine::model::SegmentRange;
use qilin_engine::query::QueryEngine;
use qilin_engine::sample::ssb;
use qilin_engine::Error;
use qilin_tests::compare::{compare, has_order_by, oracle_query, Expect};
use qilin_tests::corpus::QueryClient;
use qilin_tests::{oracle, quiet, shared_ssb_source, TestEnv};

/// Lookup-only queries of every shape.
const LOOKUP_ONLY: &[&str] = &[
    "SELECT DISTINCT d_year FROM dates",
    "SELECT count(*) FROM customer",
    "SELECT * FROM customer ORDER BY c_custkey LIMIT 10",
    "SELECT c_region, count(*) AS n FROM customer GROUP BY c_region",
    "SELECT s_nation, count(*) AS n FROM supplier s JOIN customer c ON s.s_city = c.c_city \
     GROUP BY s_nation",
    "SELECT p_brand FROM part WHERE p_size > 45 AND p_category = 'MFGR#12'",
];

/// Detail queries (and an aggregate no cuboid covers), answered from the table index.
const DETAIL: &[&str] = &[
    "SELECT * FROM lineorder WHERE lo_orderdate = 19940105",
    "SELECT x.* FROM ssb.lineorder x WHERE x.lo_orderkey < 200",
    "SELECT lo_orderkey, lo_linenumber, c_name, d_date FROM lineorder \
     JOIN customer ON lo_custkey = c_custkey JOIN dates ON lo_orderdate = d_datekey \
     WHERE lo_orderdate BETWEEN 19970101 AND 19970110",
    "SELECT lo_shipmode, sum(lo_tax) AS tax FROM lineorder GROUP BY lo_shipmode",
    "SELECT count(*) FROM lineorder",
];

/// Aggregates cuboids answer, derived columns included (derived joins read snapshots).
const CUBE: &[&str] = &[
    "SELECT d_sellingseason, sum(lo_revenue) AS r FROM lineorder JOIN dates \
     ON lo_orderdate = d_datekey GROUP BY d_sellingseason",
    "SELECT d_year, sum(lo_revenue) AS r FROM lineorder, dates \
     WHERE lo_orderdate = d_datekey GROUP BY d_year",
];

fn engine(env: &TestEnv) -> QueryEngine {
    let meta = Metadata::new(env.meta().store().clone());
    QueryEngine::new(&env.config, meta, env.engine.segment_store().clone())
}

async fn assert_all_match(
    engine: &mut QueryEngine,
    oracle: &datafusion::prelude::SessionContext,
    queries: &[&str],
    what: &str,
) {
    for sql in queries {
        let got: Vec<RecordBatch> = engine
            .query(sql)
            .await
            .unwrap_or_else(|e| panic!("{what}: {sql}: {e}"));
        // The oracle has no project schema: `ssb.t` is its `t`.
        let want = oracle_query(oracle, &sql.replace("ssb.", "")).await;
        let expect = Expect {
            ordered: has_order_by(sql),
            approx: vec![],
        };
        compare(&got, &want, &expect).unwrap_or_else(|e| panic!("{what}: {sql}: {e}"));
    }
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

/// `read N of M` of the blocks row of an EXPLAIN.
fn blocks(explain: &str) -> (usize, usize) {
    let line = explain
        .lines()
        .find(|l| l.starts_with("blocks | read "))
        .unwrap_or_else(|| panic!("no blocks row: {explain}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    (words[3].parse().unwrap(), words[5].parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_only_and_detail_queries_are_answered_from_stored_rows() {
    let shared = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), 0.01).await;
    let private = tempfile::tempdir().unwrap();
    let source: PathBuf = private.path().join("source");
    qilin_tests::server::copy_dir(&shared, &source);
    let env = TestEnv::new(&source);
    env.install_sample(0.01).await;
    env.build("1992-01-01..1995-01-01")
        .await
        .expect("first half");
    env.build("1995-01-01..1999-01-01")
        .await
        .expect("second half");
    let ctx = oracle(&shared).await;

    // The segment records list the snapshots (one per lookup table) and the table index.
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    for s in inst.ready_segments() {
        let tables: Vec<&str> = s.snapshots.iter().map(|x| x.table.as_str()).collect();
        assert_eq!(
            tables,
            ["dates", "customer", "supplier", "part"],
            "{}",
            s.name
        );
        let ti = s.table_index.as_ref().expect("table index recorded");
        assert!(ti.rows > 0 && ti.bytes > 0);
        assert!(s.size_bytes >= s.stored_bytes() && s.size_bytes > ti.bytes);
    }

    // Everything reads stored rows: delete the source files first.
    std::fs::remove_dir_all(&source).unwrap();
    std::fs::create_dir_all(&source).unwrap();
    let mut e = engine(&env);
    assert_all_match(&mut e, &ctx, LOOKUP_ONLY, "two segments").await;
    assert_all_match(&mut e, &ctx, DETAIL, "two segments").await;
    assert_all_match(&mut e, &ctx, CUBE, "two segments").await;

    // A preview: 100 rows of lineorder, each a real row.
    let preview = e.query("SELECT * FROM lineorder LIMIT 100").await.unwrap();
    assert_eq!(rows(&preview), 100);

    let text = e
        .explain("SELECT DISTINCT d_year FROM dates")
        .await
        .unwrap();
    assert!(
        text.contains(
            "realization | snapshot of ssb.dates (segment 19950101000000_19990101000000)"
        ),
        "{text}"
    );
    let text = e
        .explain("SELECT * FROM lineorder LIMIT 100")
        .await
        .unwrap();
    assert!(
        text.contains("realization | table index of cube ssb_cube"),
        "{text}"
    );
    let (_, total) = blocks(&text);
    // lo_orderdate sorts the index: one day's rows are in one block of one segment.
    let text = e
        .explain("SELECT * FROM lineorder WHERE lo_orderdate = 19940105")
        .await
        .unwrap();
    let (read, all) = blocks(&text);
    assert_eq!(all, total);
    assert!(
        read >= 1 && read * 4 < total,
        "read {read} of {total}: {text}"
    );
    let text = e.explain(CUBE[0]).await.unwrap();
    assert!(text.contains("realization | cube ssb_cube"), "{text}");
    assert!(text.contains("snapshot of ssb.dates in segment"), "{text}");

    // Merged: the snapshots of the newer segment and both table indexes, no source read.
    let merge = env
        .engine
        .submit_merge(
            ssb::CUBE,
            SegmentRange::parse("1992-01-01", "1999-01-01").unwrap(),
        )
        .unwrap();
    env.engine.run(&merge.id, quiet()).await.expect("merge");
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    let merged = inst.ready_segments().next().unwrap().clone();
    assert_eq!(merged.snapshots.len(), 4);
    let mut e = engine(&env);
    assert_all_match(&mut e, &ctx, LOOKUP_ONLY, "merged").await;
    assert_all_match(&mut e, &ctx, DETAIL, "merged").await;
    assert_all_match(&mut e, &ctx, CUBE, "merged").await;
    let text = e.explain("SELECT count(*) FROM customer").await.unwrap();
    assert!(
        text.contains(&format!(
            "snapshot of ssb.customer (segment {})",
            merged.name
        )),
        "{text}"
    );
    let text = e
        .explain("SELECT * FROM lineorder WHERE lo_orderdate = 19940105")
        .await
        .unwrap();
    let (read, total) = blocks(&text);
    assert!(
        read >= 1 && read * 4 < total,
        "read {read} of {total}: {text}"
    );

    // A table index of some columns (the source files back for the refresh) answers queries
    // using only those, and refuses the others naming the missing columns.
    qilin_tests::server::copy_dir(&shared, &source);
    let mut cube = ssb::cube();
    cube.table_index = Some(qilin_engine::model::TableIndexDesc {
        columns: ["lo_orderkey", "lo_linenumber", "lo_orderdate", "lo_revenue"]
            .map(String::from)
            .to_vec(),
        sort_columns: vec!["lo_orderdate".into()],
    });
    put_cube(env.meta(), &cube, env.config.cube.max_cuboids_per_group).unwrap();
    let refresh = env.engine.submit_refresh(ssb::CUBE, &merged.name).unwrap();
    env.engine.run(&refresh.id, quiet()).await.expect("refresh");
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    let merged = inst.ready_segments().next().unwrap().clone();
    let mut e = engine(&env);
    let subset = "SELECT lo_orderkey, lo_linenumber, lo_revenue FROM lineorder \
                  WHERE lo_orderdate BETWEEN 19960101 AND 19960131";
    assert_all_match(&mut e, &ctx, &[subset], "subset index").await;
    let err = e
        .execute("SELECT * FROM lineorder LIMIT 5", None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoRealization(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("table index of cube ssb_cube lacks") && msg.contains("lo_custkey"),
        "{msg}"
    );

    // Without a table index: detail rows are refused, naming what would answer them;
    // lookups still come from the snapshots.
    cube.table_index = None;
    put_cube(env.meta(), &cube, env.config.cube.max_cuboids_per_group).unwrap();
    let refresh = env.engine.submit_refresh(ssb::CUBE, &merged.name).unwrap();
    env.engine.run(&refresh.id, quiet()).await.expect("refresh");
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    assert!(inst.ready_segments().all(|s| s.table_index.is_none()));
    let mut e = engine(&env);
    let err = e
        .execute("SELECT * FROM lineorder LIMIT 5", None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoRealization(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("add a table_index to cube ssb_cube")
            && msg.contains("kylin.query.pushdown.enabled"),
        "{msg}"
    );
    assert_all_match(&mut e, &ctx, LOOKUP_ONLY, "no table index").await;

    // A segment recorded without snapshots (built before they existed) never falls back to
    // the source files: derived columns and lookup-only queries ask for a refresh.
    env.meta()
        .update_cube(ssb::CUBE, |inst| {
            for s in &mut inst.segments {
                s.snapshots.clear();
            }
            Ok(())
        })
        .unwrap();
    let e = engine(&env);
    for sql in [CUBE[0], "SELECT count(*) FROM customer"] {
        let err = e.execute(sql, None).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("holds no snapshot of lookup table")
                && msg.contains("refresh the segment"),
            "{sql}: {msg}"
        );
    }
}
