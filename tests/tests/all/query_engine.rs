//! The query engine in-process: the query corpus (the 13 SSB queries answered from cuboids,
//! the seeded random queries) over two segments equals DataFusion on the raw tables, EXPLAIN
//! names the cuboid, uncovered queries fail with the column named, and parameters bind.

use std::path::Path;

use datafusion::arrow::array::{Int32Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use qilin_engine::metadata::managers::Metadata;
use qilin_engine::query::QueryEngine;
use qilin_engine::Error;
use qilin_tests::compare::{compare, explain_text, has_order_by, oracle_query, Expect};
use qilin_tests::corpus::{
    check_random_queries, check_ssb_queries, ssb_queries, QueryClient, RANDOM_QUERIES,
};
use qilin_tests::{cell, oracle, shared_ssb_source, TestEnv};

/// Equal to the oracle's result (in order when `ordered`), or a panic naming the difference.
fn assert_matches(got: &[RecordBatch], want: &[RecordBatch], ordered: bool, what: &str) {
    let expect = Expect {
        ordered,
        approx: vec![],
    };
    compare(got, want, &expect).unwrap_or_else(|e| panic!("{what}: {e}"));
}

/// One installation with the cube built as two segments, shared by the tests of this file
/// (built once, on its own runtime, by whichever test comes first).
fn two_segments() -> &'static (TestEnv, std::path::PathBuf) {
    static ENV: std::sync::OnceLock<(TestEnv, std::path::PathBuf)> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        std::thread::spawn(|| {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async {
                let source = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), 0.01).await;
                let env = TestEnv::new(&source);
                env.install_sample(0.01).await;
                // Without a table index, what no cuboid covers is refused (or pushed down):
                // these tests are about cuboid answers.
                let mut cube = qilin_engine::sample::ssb::cube();
                cube.table_index = None;
                qilin_engine::admin::documents::put_cube(
                    env.meta(),
                    &cube,
                    env.config.cube.max_cuboids_per_group,
                )
                .expect("cube without a table index");
                env.build("1992-01-01..1995-01-01")
                    .await
                    .expect("build first half");
                env.build("1995-01-01..1999-01-01")
                    .await
                    .expect("build second half");
                (env, source)
            })
        })
        .join()
        .expect("build thread")
    })
}

async fn engine_over_two_segments() -> (QueryEngine, std::path::PathBuf) {
    engine_with(|_| {}).await
}

/// An engine over the two segments whose configuration `adjust` changed.
pub(crate) async fn engine_with(
    adjust: impl FnOnce(&mut qilin_engine::config::Config),
) -> (QueryEngine, std::path::PathBuf) {
    let (env, source) = two_segments();
    let mut config = env.config.clone();
    adjust(&mut config);
    let meta = Metadata::new(env.meta().store().clone());
    let engine = QueryEngine::new(&config, meta, env.engine.segment_store().clone());
    (engine, source.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssb_queries_match_the_raw_tables_and_explain_names_a_cuboid() {
    let (mut engine, source) = engine_over_two_segments().await;
    let ctx = oracle(&source).await;
    let outcomes = check_ssb_queries("in-process", &mut engine, &ctx).await;
    // d_year leads the chosen cuboid's rowkey, so Q1.1's `d_year = 1993` skips blocks.
    let q11 = &outcomes[0];
    assert_eq!(q11.name, "Q1.1");
    println!("{}", q11.explain);
    let blocks = q11
        .explain
        .lines()
        .find(|l| l.starts_with("blocks | read "))
        .expect("blocks row");
    let nums: Vec<usize> = blocks.split(' ').filter_map(|w| w.parse().ok()).collect();
    assert!(
        nums.len() == 2 && nums[0] < nums[1],
        "Q1.1: no block pruned: {blocks}"
    );
    // At SF 0.01 a few selective queries (one nation's cities) find no rows; most must.
    let non_empty = outcomes.iter().filter(|o| o.rows > 0).count();
    assert!(
        non_empty >= 10,
        "only {non_empty} of 13 queries returned rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_queries_match_the_raw_tables() {
    let (mut engine, source) = engine_over_two_segments().await;
    let (mut pushdown, _) = engine_with(|c| c.query.pushdown_enabled = true).await;
    let ctx = oracle(&source).await;
    check_random_queries(
        "in-process",
        &mut engine,
        &mut pushdown,
        &ctx,
        RANDOM_QUERIES,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncovered_parameters_joins_and_errors() {
    let (mut engine, source) = engine_over_two_segments().await;
    let ctx = oracle(&source).await;

    // A column that is no dimension: refused with the column named.
    let err = engine
        .execute("select c_phone, sum(lo_revenue) from lineorder, customer where lo_custkey = c_custkey group by c_phone", None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoRealization(_)), "{err}");
    assert!(err.to_string().contains("c_phone"), "{err}");

    // A measure the cube lacks.
    let err = engine
        .execute("select sum(lo_tax) from lineorder", None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("lo_tax"), "{err}");

    // Unknown table: named.
    let err = engine
        .execute("select count(*) from nosuch", None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("nosuch"), "{err}");

    // Malformed SQL.
    let err = engine.execute("selec 1", None).await.unwrap_err();
    assert!(matches!(err, Error::Sql(_)), "{err}");

    // JOIN ... ON, derived columns, AVG, COUNT(DISTINCT) and a bound parameter.
    let sql = "select d_sellingseason, c_region, avg(lo_quantity) as q, count(distinct lo_suppkey) as s, \
               count(*) as n, min(lo_extendedprice) as lo, max(lo_extendedprice) as hi \
               from lineorder join dates on lo_orderdate = d_datekey join customer on lo_custkey = c_custkey \
               where d_year = ? group by d_sellingseason, c_region";
    let params = RecordBatch::try_from_iter(vec![(
        "$1",
        std::sync::Arc::new(Int32Array::from(vec![1994])) as _,
    )])
    .unwrap();
    let got = engine.execute(sql, Some(&params)).await.unwrap();
    let want = oracle_query(&ctx, &sql.replace('?', "1994")).await;
    assert_matches(&got.batches, &want, false, sql);
    // d_year comes from the joined dates table, so a cuboid without d_year (far smaller than
    // the base cuboid, the only one with both d_year and lo_orderdate) answers.
    let text = engine.explain(&sql.replace('?', "1994")).await.unwrap();
    assert!(text.contains("joined lookup tables dates"), "{text}");
    let cuboid_line = text.lines().find(|l| l.starts_with("cuboid | ")).unwrap();
    assert!(!cuboid_line.contains("d_year"), "{cuboid_line}");
    let prepared = engine.prepare(sql).await.unwrap();
    assert_eq!(prepared.parameters.fields().len(), 1);
    assert_eq!(prepared.schema.fields().len(), 7);

    // The result cache answers a repeat (whitespace differences aside).
    let q = "select d_year, sum(lo_revenue) from lineorder, dates where lo_orderdate = d_datekey group by d_year";
    let first = engine.execute(q, None).await.unwrap();
    let again = engine.execute(&q.replace(' ', "  "), None).await.unwrap();
    assert!(!first.cached && again.cached);
    assert_matches(&again.batches, &first.batches, false, "cached repeat");

    // Queries that read no table run as they are.
    let one = engine.execute("select 1 + 1 as two", None).await.unwrap();
    assert_eq!(one.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    assert_eq!(cell(one.batches[0].column(0).as_ref(), 0), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_keeps_the_schema_and_is_idempotent() {
    let (engine, _source) = engine_over_two_segments().await;
    for (name, sql) in ssb_queries() {
        let (original, rewritten) = engine.plan_and_rewrite(&sql).await.unwrap();
        let rewritten = rewritten.unwrap_or_else(|| panic!("{name} was not rewritten"));
        let names_and_types =
            |p: &datafusion::logical_expr::LogicalPlan| -> Vec<(Option<String>, String, DataType)> {
                p.schema()
                    .iter()
                    .map(|(q, f)| {
                        (
                            q.map(|q| q.to_string()),
                            f.name().clone(),
                            f.data_type().clone(),
                        )
                    })
                    .collect()
            };
        assert_eq!(
            names_and_types(&original),
            names_and_types(&rewritten),
            "{name}"
        );
        assert!(
            !format!("{}", rewritten.display_indent()).contains("TableScan: lineorder"),
            "{name}: still reads the fact table"
        );
        let again = engine
            .rewrite_plan(rewritten.clone())
            .await
            .unwrap()
            .expect("a rewritten plan stays answered");
        assert_eq!(
            format!("{}", again.display_indent()),
            format!("{}", rewritten.display_indent()),
            "{name}: rewriting twice changed the plan"
        );
    }
}

/// With the result cache off every execution computes its result: the repeats of a statement
/// take their rewritten plan from the plan cache and must still equal the raw tables, and a
/// segment committed in between (a new metadata version) must be read, not an old plan's
/// segment list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_statements_reuse_plans_and_see_new_segments() {
    let source = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), 0.01).await;
    let env = TestEnv::with_properties(
        qilin_tests::Backend::Local,
        &source,
        "kylin.query.cache-enabled=false\nkylin.query.plan-cache-enabled=true\n",
    );
    env.install_sample(0.01).await;
    env.build("1992-01-01..1995-01-01")
        .await
        .expect("build first half");
    let engine = QueryEngine::new(
        &env.config,
        Metadata::new(env.meta().store().clone()),
        env.engine.segment_store().clone(),
    );
    let sql = "SELECT d_year, SUM(lo_revenue) AS revenue FROM lineorder \
               JOIN dates ON lo_orderdate = d_datekey GROUP BY d_year ORDER BY d_year";
    let ctx = oracle(&source).await;
    let want = oracle_query(&ctx, sql).await;
    assert_eq!(want.iter().map(|b| b.num_rows()).sum::<usize>(), 7);
    // The first segment holds the years before 1995.
    let first_half = oracle_query(
        &ctx,
        &sql.replace("GROUP BY", "WHERE d_year < 1995 GROUP BY"),
    )
    .await;
    assert_eq!(first_half.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    for run in 0..3 {
        let got = engine.execute(sql, None).await.expect("query");
        assert!(!got.cached, "run {run} came from the result cache");
        assert_matches(&got.batches, &first_half, true, &format!("run {run}"));
    }
    env.build("1995-01-01..1999-01-01")
        .await
        .expect("build second half");
    for run in 0..2 {
        let got = engine.execute(sql, None).await.expect("query");
        assert_matches(
            &got.batches,
            &want,
            true,
            &format!("after the new segment, run {run}"),
        );
    }
    // Every SSB query, twice (the second from the plan cache), equals the raw tables.
    for (name, sql) in ssb_queries() {
        let want = oracle_query(&ctx, &sql).await;
        for run in 0..2 {
            let got = engine
                .execute(&sql, None)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_matches(
                &got.batches,
                &want,
                has_order_by(&sql),
                &format!("{name} run {run}"),
            );
        }
    }
}

/// Functions evaluated at planning time (`now()`, `current_date`) work in queries a cube
/// answers, in the projection and in filters, and equal the raw tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_functions_in_cube_answered_queries() {
    let (engine, source) = engine_over_two_segments().await;
    let ctx = oracle(&source).await;
    for sql in [
        "SELECT d_year, SUM(lo_revenue) AS revenue, now() > TIMESTAMP '2000-01-01' AS later \
         FROM lineorder JOIN dates ON lo_orderdate = d_datekey GROUP BY d_year",
        "SELECT d_year, SUM(lo_revenue) AS revenue FROM lineorder \
         JOIN dates ON lo_orderdate = d_datekey \
         WHERE d_year < date_part('year', current_date()) GROUP BY d_year",
        "SELECT d_year, COUNT(*) AS n FROM lineorder JOIN dates ON lo_orderdate = d_datekey \
         WHERE CAST(d_year AS DOUBLE) < date_part('year', now()) - 30 GROUP BY d_year",
    ] {
        let explain = engine
            .execute(&format!("EXPLAIN {sql}"), None)
            .await
            .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"));
        let text = explain_text(&explain.batches);
        assert!(text.contains("cuboid"), "not answered by a cuboid: {text}");
        let want = oracle_query(&ctx, sql).await;
        assert!(want.iter().any(|b| b.num_rows() > 0), "{sql}");
        for run in 0..2 {
            let got = engine
                .execute(sql, None)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert_matches(&got.batches, &want, false, &format!("{sql} run {run}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_columns_without_source_files_come_from_the_lookup_snapshots() {
    // A query node whose kylin.source.url lacks the lookup files (a second machine of a
    // cluster) used to answer derived columns with zero rows and no error; they now come from
    // the snapshots the builds stored, equal to the raw tables.
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().display().to_string();
    let (engine, source) = engine_with(|c| c.stores.source_url = dir).await;
    let ctx = oracle(&source).await;
    for sql in [
        "select d_sellingseason, count(*) from lineorder, dates \
         where lo_orderdate = d_datekey group by d_sellingseason",
        "select d_year, count(*) from lineorder, dates where lo_orderdate = d_datekey group by d_year",
    ] {
        let got = engine
            .execute(sql, None)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let want = oracle_query(&ctx, sql).await;
        assert!(want.iter().any(|b| b.num_rows() > 0), "{sql}");
        assert_matches(&got.batches, &want, false, sql);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cube_answers_keep_the_announced_schema_nullability_included() {
    // The ADBC driver refuses a stream whose schema differs from the FlightInfo's ("endpoint 0
    // returned inconsistent schema"): COUNT(DISTINCT) used to turn nullable in the rewrite.
    let (engine, _) = engine_over_two_segments().await;
    for sql in [
        "select count(distinct lo_suppkey) from lineorder",
        "select d_year, count(distinct lo_custkey), count(*) from lineorder, dates \
         where lo_orderdate = d_datekey group by d_year",
    ] {
        let announced = engine.prepare(sql).await.unwrap().schema;
        let out = engine.execute(sql, None).await.unwrap();
        assert_eq!(out.schema.fields(), announced.fields(), "{sql}");
        for b in &out.batches {
            assert_eq!(b.schema().fields(), announced.fields(), "{sql}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_streamed_results_bypass_the_result_cache() {
    // Cache bound 4 MB: results up to an eighth of it (500 kB) are cached.
    let (engine, source) = engine_with(|c| {
        c.query.pushdown_enabled = true;
        c.query.cache_enabled = true;
        c.query.cache_max_bytes = 4_000_000;
    })
    .await;
    let ctx = oracle(&source).await;
    for (sql, cached_again) in [
        ("select * from lineorder", false),
        (
            "select d_year, count(*) from lineorder, dates where lo_orderdate = d_datekey \
             group by d_year",
            true,
        ),
    ] {
        let want = oracle_query(&ctx, sql).await;
        // Streamed: the schema comes before any batch, and every batch has it.
        let stream = engine.execute_stream(sql, None).await.expect(sql);
        assert!(!stream.cached, "{sql}");
        let announced = engine.prepare(sql).await.unwrap().schema;
        assert_eq!(stream.schema.fields(), announced.fields(), "{sql}");
        let batches: Vec<RecordBatch> = futures::TryStreamExt::try_collect(stream.batches)
            .await
            .expect(sql);
        for b in &batches {
            assert_eq!(b.schema().fields(), announced.fields(), "{sql}");
        }
        assert_matches(&batches, &want, false, sql);
        let again = engine.execute(sql, None).await.expect(sql);
        assert_eq!(again.cached, cached_again, "{sql}");
        assert_matches(&again.batches, &want, false, sql);
    }
    // A stream dropped before its end leaves nothing in the cache.
    let sql = "select lo_orderkey from lineorder where lo_quantity < 3";
    let mut stream = engine.execute_stream(sql, None).await.unwrap();
    let first = futures::StreamExt::next(&mut stream.batches).await;
    assert!(matches!(first, Some(Ok(_))));
    drop(stream);
    assert!(!engine.execute(sql, None).await.unwrap().cached);
    assert!(engine.execute(sql, None).await.unwrap().cached);
}
