//! EXTENDED_COLUMN (issue 18): the sample's `s_name_extended` carries supplier names with
//! `lo_suppkey`, so `GROUP BY s_suppkey, s_name` is answered from the cuboid holding
//! `lo_suppkey` without the supplier table: equal to the raw tables, EXPLAIN names the measure
//! and no lookup join, one segment or two merged. Without the key grouped, `s_name` is no
//! dimension and the query is not answered from the cube.

use std::path::Path;

use qilin_engine::metadata::managers::Metadata;
use qilin_engine::model::SegmentRange;
use qilin_engine::query::QueryEngine;
use qilin_engine::sample::ssb;
use qilin_jobs::JobStatus;
use qilin_tests::compare::{compare, explain_text, has_order_by, oracle_query, Expect};
use qilin_tests::{oracle, quiet, shared_ssb_source, TestEnv};

const SF: f64 = 0.01;

const QUERIES: &[&str] = &[
    "SELECT s_suppkey, s_name, SUM(lo_revenue) FROM lineorder JOIN supplier ON lo_suppkey = s_suppkey \
     GROUP BY s_suppkey, s_name",
    // A filter on a dimension of the same cuboid, names in another order, ORDER BY the name.
    "SELECT s_name, lo_suppkey, SUM(lo_revenue) AS r, COUNT(*) AS n FROM lineorder \
     JOIN supplier ON lo_suppkey = s_suppkey JOIN dates ON lo_orderdate = d_datekey \
     WHERE d_year = 1995 GROUP BY s_name, lo_suppkey ORDER BY s_name, lo_suppkey",
    // Grouped by the year too, and a HAVING over the re-aggregation.
    "SELECT d_year, s_suppkey, s_name, SUM(lo_revenue) FROM lineorder JOIN supplier \
     ON lo_suppkey = s_suppkey JOIN dates ON lo_orderdate = d_datekey \
     WHERE s_suppkey < 50 GROUP BY d_year, s_suppkey, s_name HAVING SUM(lo_revenue) > 0",
];

async fn check(query: &QueryEngine, ctx: &datafusion::prelude::SessionContext, what: &str) {
    for sql in QUERIES {
        let got = query
            .execute(sql, None)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}\n{sql}"))
            .batches;
        let want = oracle_query(ctx, sql).await;
        compare(
            &got,
            &want,
            &Expect {
                ordered: has_order_by(sql),
                approx: vec![],
            },
        )
        .unwrap_or_else(|e| panic!("{what}: {e}\n{sql}"));
        let rows: usize = got.iter().map(|b| b.num_rows()).sum();
        assert!(rows > 10, "{what}: only {rows} rows\n{sql}");
        let text = explain_text(
            &query
                .execute(&format!("EXPLAIN {sql}"), None)
                .await
                .unwrap()
                .batches,
        );
        assert!(
            text.contains("cube ssb_cube")
                && text.contains("lo_suppkey")
                && text.contains("from measure s_name_extended")
                && text.contains("no lookup join"),
            "{what}: not answered by the extended measure:\n{text}\n{sql}"
        );
        let lower = text.to_lowercase();
        assert!(
            !lower.contains("joined lookup tables") && !lower.contains("snapshot of ssb.supplier"),
            "{what}: joins the supplier table:\n{text}"
        );
        let cuboid_line = text
            .lines()
            .find(|l| l.starts_with("cuboid"))
            .unwrap_or_else(|| panic!("{what}: no cuboid line:\n{text}"));
        assert!(cuboid_line.contains("lo_suppkey"), "{cuboid_line}");
    }
    // The name without its key is no dimension: not from the extended measure (a table
    // index, pushdown or a refusal, as for any other column).
    let sql =
        "SELECT s_name, SUM(lo_revenue) FROM lineorder JOIN supplier ON lo_suppkey = s_suppkey \
               GROUP BY s_name";
    if let Ok(out) = query.execute(&format!("EXPLAIN {sql}"), None).await {
        let text = explain_text(&out.batches);
        assert!(
            !text.contains("s_name_extended"),
            "{what}: s_name alone from the extended measure:\n{text}"
        );
    }
}

fn query_engine(env: &TestEnv) -> QueryEngine {
    QueryEngine::new(
        &env.config,
        Metadata::new(env.meta().store().clone()),
        env.engine.segment_store().clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supplier_names_come_from_the_cuboid_in_one_segment_and_two_merged() {
    let source = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), SF).await;
    let ctx = oracle(&source).await;

    let one = TestEnv::new(&source);
    one.install_sample(SF).await;
    one.build("1992-01-01..1999-01-01").await.unwrap();
    check(&query_engine(&one), &ctx, "one segment").await;

    let two = TestEnv::new(&source);
    two.install_sample(SF).await;
    two.build("1992-01-01..1995-01-01").await.unwrap();
    two.build("1995-01-01..1999-01-01").await.unwrap();
    // Across two segments before they are merged, then merged.
    check(&query_engine(&two), &ctx, "two segments").await;
    let range = SegmentRange::parse("1992-01-01", "1999-01-01").unwrap();
    let job = two.engine.submit_merge(ssb::CUBE, range).unwrap();
    let job = two.engine.run(&job.id, quiet()).await.unwrap();
    assert_eq!(job.status, JobStatus::Succeed);
    check(&query_engine(&two), &ctx, "two segments merged").await;
}
