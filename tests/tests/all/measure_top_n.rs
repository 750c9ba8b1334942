//! TOP_N: `SELECT dims.., s_name, SUM(lo_revenue) ... GROUP BY dims.., s_name ORDER BY the sum
//! DESC LIMIT k` answered from the sample cube's `lo_revenue_top_sellers` (TOP_N lo_revenue by
//! s_name, n 100) in the cuboid of the dimensions alone (s_name is no dimension), equal to the
//! oracle, through Flight SQL and across two segments.
//!
//! The answers are exact, not merely close: at SF 0.01 SSB has 20 suppliers, so no state ever
//! holds more distinct s_name values than its 5000 counters (100 × Kylin's extra-space rate 50),
//! nothing is dropped, and every counter is the true SUM of its (dimensions, s_name) group.

use std::path::Path;

use datafusion::arrow::array::RecordBatch;
use qilin_engine::metadata::managers::Metadata;
use qilin_engine::model::SegmentRange;
use qilin_engine::query::QueryEngine;
use qilin_engine::sample::ssb;
use qilin_jobs::JobStatus;
use qilin_tests::compare::{compare, explain_text, oracle_query, run_query, Expect};
use qilin_tests::server::SsbServer;
use qilin_tests::{quiet, shared_ssb_source, Backend, TestEnv};

const SF: f64 = 0.01;

const BY_REGION: &str = "SELECT s_region, s_name, SUM(lo_revenue) FROM lineorder \
    JOIN supplier ON lo_suppkey = s_suppkey GROUP BY s_region, s_name ORDER BY 3 DESC LIMIT 10";
const NO_DIMS: &str = "SELECT s_name, SUM(lo_revenue) AS revenue FROM lineorder \
    JOIN supplier ON lo_suppkey = s_suppkey GROUP BY s_name ORDER BY revenue DESC LIMIT 5";
const FILTERED: &str = "SELECT s_region, s_name, SUM(lo_revenue) FROM lineorder \
    JOIN dates ON lo_orderdate = d_datekey JOIN supplier ON lo_suppkey = s_suppkey \
    WHERE d_year = 1997 GROUP BY s_region, s_name ORDER BY SUM(lo_revenue) DESC LIMIT 10";
const OFFSET: &str = "SELECT s_name, SUM(lo_revenue) FROM lineorder \
    JOIN supplier ON lo_suppkey = s_suppkey GROUP BY s_name ORDER BY 2 DESC LIMIT 3 OFFSET 2";
/// LIMIT 101 > n = 100: the measure cannot answer it (20 rows come back at SF 0.01).
const TOO_MANY: &str = "SELECT s_name, SUM(lo_revenue) FROM lineorder \
    JOIN supplier ON lo_suppkey = s_suppkey GROUP BY s_name ORDER BY 2 DESC LIMIT 101";
/// The smallest sums: a TOP_N measure keeps the largest.
const ASCENDING: &str = "SELECT s_name, SUM(lo_revenue) FROM lineorder \
    JOIN supplier ON lo_suppkey = s_suppkey GROUP BY s_name ORDER BY 2 ASC LIMIT 5";

const ANSWERED: [&str; 4] = [BY_REGION, NO_DIMS, FILTERED, OFFSET];

fn ordered() -> Expect {
    Expect {
        ordered: true,
        ..Expect::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_sellers_through_flight_sql_equal_the_oracle() {
    let ssb = SsbServer::start("").await;
    let ctx = qilin_tests::oracle(&ssb.source).await;
    let mut client = ssb.client().await;
    for sql in ANSWERED {
        let got = run_query(&mut client, sql)
            .await
            .unwrap_or_else(|s| panic!("{sql}: {:?}: {}", s.code(), s.message()));
        let want = oracle_query(&ctx, sql).await;
        compare(&got, &want, &ordered()).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let explain = explain_text(
            &run_query(&mut client, &format!("EXPLAIN {sql}"))
                .await
                .unwrap(),
        );
        assert!(
            explain.contains("top_n measure lo_revenue_top_sellers")
                && explain.contains("cube ssb_cube"),
            "{sql}: {explain}"
        );
        // The cuboid of the dimensions alone: s_name is no dimension.
        assert!(!explain.contains("s_name]"), "{explain}");
    }
    // What TOP_N cannot answer falls back to the next path, here the cube's table index
    // (exact); EXPLAIN names it instead of the measure.
    for sql in [TOO_MANY, ASCENDING] {
        let got = run_query(&mut client, sql).await.unwrap();
        let want = oracle_query(&ctx, sql).await;
        compare(&got, &want, &ordered()).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let explain = explain_text(
            &run_query(&mut client, &format!("EXPLAIN {sql}"))
                .await
                .unwrap(),
        );
        assert!(
            !explain.contains("top_n") && explain.contains("table index of cube ssb_cube"),
            "{sql}: {explain}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_another_path_the_refusal_names_the_top_n_limit() {
    let ssb = SsbServer::start_without_table_index("").await;
    let mut client = ssb.client().await;
    for (sql, reason) in [
        (TOO_MANY, "keeps the top 100; the query needs 101 rows"),
        (ASCENDING, "ASC is not answered by a TOP_N measure"),
    ] {
        let status = run_query(&mut client, sql)
            .await
            .expect_err("refused without pushdown");
        assert!(
            status.message().contains(reason),
            "{sql}: {}",
            status.message()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_sellers_across_two_segments_and_their_merge() {
    let src = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), SF).await;
    let env = TestEnv::on(Backend::Local, &src);
    env.install_sample(SF).await;
    env.build("1992-01-01..1995-01-01").await.unwrap();
    env.build("1995-01-01..1999-01-01").await.unwrap();
    let ctx = qilin_tests::oracle(&src).await;

    let check = |label: &'static str| {
        let ctx = &ctx;
        let env = &env;
        async move {
            // A fresh engine sees the current segments.
            let query = QueryEngine::new(
                &env.config,
                Metadata::new(env.meta().store().clone()),
                env.engine.segment_store().clone(),
            );
            for sql in ANSWERED {
                let got = query
                    .execute(sql, None)
                    .await
                    .unwrap_or_else(|e| panic!("{label}: {sql}: {e}"));
                let want: Vec<RecordBatch> = oracle_query(ctx, sql).await;
                compare(&got.batches, &want, &ordered())
                    .unwrap_or_else(|e| panic!("{label}: {sql}: {e}"));
                let explain = query
                    .execute(&format!("EXPLAIN {sql}"), None)
                    .await
                    .unwrap();
                let text = explain_text(&explain.batches);
                assert!(text.contains("top_n measure"), "{label}: {text}");
            }
        }
    };
    check("two segments").await;

    let range = SegmentRange::parse("1992-01-01", "1999-01-01").unwrap();
    let job = env.engine.submit_merge(ssb::CUBE, range).unwrap();
    let job = env.engine.run(&job.id, quiet()).await.unwrap();
    assert_eq!(job.status, JobStatus::Succeed);
    check("merged").await;
}
