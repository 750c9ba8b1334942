//! The query paths of `qilin-server` on the SSB SF 0.01 sample, through the Rust Flight SQL
//! client: the 13 SSB queries answered from cuboids, a query no cube covers refused with
//! InvalidArgument naming the column (pushdown off, the default), the same query answered
//! on the raw tables when pushdown is on (and EXPLAIN saying so), and repeated queries
//! returning identical results.

use std::time::Instant;

use qilin_tests::compare::{compare, explain_text, oracle_query, run_query, Expect};
use qilin_tests::corpus::{check_ssb_queries, ssb_queries};
use qilin_tests::server::SsbServer;

/// A group-by on a customer column that is no dimension of `ssb_cube`.
const UNCOVERED: &str = "select c_phone, sum(lo_revenue) from lineorder, customer \
    where lo_custkey = c_custkey group by c_phone";

/// A measure `ssb_cube` does not have (no SUM of lo_tax), on a covered dimension.
const UNCOVERED_MEASURE: &str =
    "select d_year, sum(lo_tax) from lineorder join dates on lo_orderdate = d_datekey group by d_year";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssb_queries_through_rust_client_match_the_oracle_from_cuboids() {
    let ssb = SsbServer::start("").await;
    let ctx = qilin_tests::oracle(&ssb.source).await;
    check_ssb_queries("local server", &mut ssb.client().await, &ctx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncovered_queries_are_refused_naming_the_column_or_measure() {
    // A cube with a table index answers these from it: this one has none.
    let ssb = SsbServer::start_without_table_index("").await;
    let mut client = ssb.client().await;
    for (sql, culprit) in [(UNCOVERED, "c_phone"), (UNCOVERED_MEASURE, "lo_tax")] {
        let status = match run_query(&mut client, sql).await {
            Ok(batches) => panic!(
                "pushdown is off, yet the server answered {sql} with {} rows",
                batches.iter().map(|b| b.num_rows()).sum::<usize>()
            ),
            Err(s) => s,
        };
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{sql}: {}",
            status.message()
        );
        let msg = status.message().to_lowercase();
        assert!(
            msg.contains("no realization"),
            "{sql}: the message should say no realization was found: {}",
            status.message()
        );
        assert!(
            msg.contains(culprit),
            "{sql}: the message should name {culprit}: {}",
            status.message()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushdown_answers_uncovered_queries_from_raw_tables() {
    let ssb = SsbServer::start_without_table_index("kylin.query.pushdown.enabled=true\n").await;
    let ctx = qilin_tests::oracle(&ssb.source).await;
    let mut client = ssb.client().await;
    for sql in [UNCOVERED, UNCOVERED_MEASURE] {
        let want = oracle_query(&ctx, sql).await;
        assert!(!want.is_empty() && want[0].num_rows() > 0, "{sql}: no rows");
        let got = run_query(&mut client, sql)
            .await
            .unwrap_or_else(|s| panic!("{sql} with pushdown: {:?}: {}", s.code(), s.message()));
        compare(&got, &want, &Expect::default()).unwrap_or_else(|e| panic!("{sql}: {e}"));

        let plan = run_query(&mut client, &format!("EXPLAIN {sql}"))
            .await
            .unwrap_or_else(|s| panic!("EXPLAIN {sql}: {:?}: {}", s.code(), s.message()));
        let text = explain_text(&plan);
        assert!(
            text.to_lowercase().contains("pushdown"),
            "EXPLAIN {sql} should say pushdown:\n{text}"
        );
    }
    // A covered query still comes from a cuboid when pushdown is allowed.
    let (name, q21) = ssb_queries().into_iter().nth(3).unwrap();
    assert_eq!(name, "Q2.1");
    let plan = run_query(&mut client, &format!("EXPLAIN {q21}"))
        .await
        .unwrap_or_else(|s| panic!("EXPLAIN Q2.1: {:?}: {}", s.code(), s.message()));
    let text = explain_text(&plan).to_lowercase();
    assert!(
        text.contains("cuboid") && !text.contains("pushdown"),
        "Q2.1 with pushdown enabled should still read a cuboid:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_queries_return_identical_results() {
    let ssb = SsbServer::start("").await;
    let ctx = qilin_tests::oracle(&ssb.source).await;
    let mut client = ssb.client().await;
    let queries = ssb_queries();
    for (name, sql) in queries
        .iter()
        .filter(|(n, _)| ["Q1.1", "Q3.2"].contains(&n.as_str()))
    {
        let first = run_query(&mut client, sql)
            .await
            .unwrap_or_else(|s| panic!("{name}: {:?}: {}", s.code(), s.message()));
        let t = Instant::now();
        let second = run_query(&mut client, sql)
            .await
            .unwrap_or_else(|s| panic!("{name} again: {:?}: {}", s.code(), s.message()));
        println!("{name}: repeated in {:.1?}", t.elapsed());
        // Same rows in the same order, bit for bit (no tolerance).
        let render = |b: &[arrow::array::RecordBatch]| {
            arrow::util::pretty::pretty_format_batches(b)
                .unwrap()
                .to_string()
        };
        assert_eq!(
            render(&first),
            render(&second),
            "{name}: repeated result differs"
        );
        let want = oracle_query(&ctx, sql).await;
        let expect = Expect {
            ordered: true,
            approx: vec![],
        };
        compare(&second, &want, &expect).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
