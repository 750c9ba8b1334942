//! The query engine in-process: the 13 SSB queries answered from cuboids over two segments
//! equal DataFusion on the raw tables, EXPLAIN names the cuboid, uncovered queries fail with
//! the column named, and parameters bind.

use std::path::Path;

use datafusion::arrow::array::{Array, AsArray, Int32Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use qilin_engine::metadata::managers::Metadata;
use qilin_engine::query::QueryEngine;
use qilin_engine::Error;
use qilin_tests::{cell, oracle, shared_ssb_source, TestEnv};

fn ssb_queries() -> Vec<(String, String)> {
    let text = include_str!("../../flight-server/tests/ssb_queries.sql");
    let mut out = Vec::new();
    let mut name = String::new();
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("-- Q") {
            name = format!("Q{}", n.trim());
        } else if !line.starts_with("--") && !line.trim().is_empty() {
            out.push((name.clone(), line.trim().trim_end_matches(';').to_string()));
        }
    }
    assert_eq!(out.len(), 13);
    out
}

/// Rows as text; floats rounded to 6 significant digits; sorted unless `ordered`.
fn rows(batches: &[RecordBatch], ordered: bool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            out.push(
                b.columns()
                    .iter()
                    .map(|c| match c.data_type() {
                        DataType::Float64 if !c.is_null(r) => {
                            format!(
                                "{:.6e}",
                                c.as_primitive::<datafusion::arrow::datatypes::Float64Type>()
                                    .value(r)
                            )
                        }
                        _ => cell(c.as_ref(), r),
                    })
                    .collect(),
            );
        }
    }
    if !ordered {
        out.sort();
    }
    out
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
    let (env, source) = two_segments();
    let meta = Metadata::new(env.meta().store().clone());
    let engine = QueryEngine::new(&env.config, meta, env.engine.segment_store().clone());
    (engine, source.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssb_queries_match_the_raw_tables_and_explain_names_a_cuboid() {
    let (engine, source) = engine_over_two_segments().await;
    let ctx = oracle(&source).await;
    let mut non_empty = 0;
    for (name, sql) in ssb_queries() {
        let got = engine
            .execute(&sql, None)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        let ordered = sql.contains("order by");
        let (g, w) = (rows(&got.batches, ordered), rows(&want, ordered));
        assert_eq!(g, w, "{name}: cube result differs from the raw tables");
        if let Some(first) = want.first() {
            assert_eq!(
                got.schema.fields().len(),
                first.schema().fields().len(),
                "{name}"
            );
        }
        non_empty += usize::from(!w.is_empty());

        let explain = engine
            .execute(&format!("EXPLAIN {sql}"), None)
            .await
            .unwrap();
        let text: Vec<String> = rows(&explain.batches, true)
            .into_iter()
            .map(|r| r.join(": "))
            .collect();
        let text = text.join("\n");
        assert!(text.contains("cuboid "), "{name}: {text}");
        assert!(text.contains("cube ssb_cube"), "{name}: {text}");
        assert!(!text.contains("pushdown"), "{name}: {text}");
        if name == "Q1.1" {
            println!("{text}");
            // d_year leads the chosen cuboid's rowkey, so `d_year = 1993` skips blocks.
            let blocks = text
                .lines()
                .find(|l| l.starts_with("blocks: read "))
                .expect("blocks row");
            let nums: Vec<usize> = blocks.split(' ').filter_map(|w| w.parse().ok()).collect();
            assert!(
                nums.len() == 2 && nums[0] < nums[1],
                "{name}: no block pruned: {blocks}"
            );
        }
    }
    // At SF 0.01 a few selective queries (one nation's cities) find no rows; most must.
    assert!(
        non_empty >= 10,
        "only {non_empty} of 13 queries returned rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncovered_parameters_joins_and_errors() {
    let (engine, source) = engine_over_two_segments().await;
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
    let want = ctx
        .sql(&sql.replace('?', "1994"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(rows(&got.batches, false), rows(&want, false));
    // d_year comes from the joined dates table, so a cuboid without d_year (far smaller than
    // the base cuboid, the only one with both d_year and lo_orderdate) answers.
    let explain = engine
        .execute(&format!("EXPLAIN {}", sql.replace('?', "1994")), None)
        .await
        .unwrap();
    let text = rows(&explain.batches, true)
        .into_iter()
        .map(|r| r.join(": "))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("joined lookup tables dates"), "{text}");
    let cuboid_line = text.lines().find(|l| l.starts_with("cuboid: ")).unwrap();
    assert!(!cuboid_line.contains("d_year"), "{cuboid_line}");
    let prepared = engine.prepare(sql).await.unwrap();
    assert_eq!(prepared.parameters.fields().len(), 1);
    assert_eq!(prepared.schema.fields().len(), 7);

    // The result cache answers a repeat (whitespace differences aside).
    let q = "select d_year, sum(lo_revenue) from lineorder, dates where lo_orderdate = d_datekey group by d_year";
    let first = engine.execute(q, None).await.unwrap();
    let again = engine.execute(&q.replace(' ', "  "), None).await.unwrap();
    assert!(!first.cached && again.cached);
    assert_eq!(rows(&first.batches, false), rows(&again.batches, false));

    // Queries that read no table run as they are.
    let one = engine.execute("select 1 + 1 as two", None).await.unwrap();
    assert_eq!(rows(&one.batches, true), vec![vec!["2".to_string()]]);
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
    let want = rows(&ctx.sql(sql).await.unwrap().collect().await.unwrap(), true);
    assert_eq!(want.len(), 7, "{want:?}");

    let first_half: Vec<Vec<String>> = want
        .iter()
        .filter(|r| r[0].as_str() < "1995")
        .cloned()
        .collect();
    for run in 0..3 {
        let got = engine.execute(sql, None).await.expect("query");
        assert!(!got.cached, "run {run} came from the result cache");
        assert_eq!(rows(&got.batches, true), first_half, "run {run}");
    }
    env.build("1995-01-01..1999-01-01")
        .await
        .expect("build second half");
    for run in 0..2 {
        let got = engine.execute(sql, None).await.expect("query");
        assert_eq!(
            rows(&got.batches, true),
            want,
            "after the new segment, run {run}"
        );
    }
    // Every SSB query, twice (the second from the plan cache), equals the raw tables.
    for (name, sql) in ssb_queries() {
        let want = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        let ordered = sql.contains("order by");
        for run in 0..2 {
            let got = engine
                .execute(&sql, None)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                rows(&got.batches, ordered),
                rows(&want, ordered),
                "{name} run {run}"
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
        let text = rows(&explain.batches, true).concat().join(" ");
        assert!(text.contains("cuboid"), "not answered by a cuboid: {text}");
        let want = rows(&ctx.sql(sql).await.unwrap().collect().await.unwrap(), false);
        assert!(!want.is_empty(), "{sql}");
        for run in 0..2 {
            let got = engine
                .execute(sql, None)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert_eq!(rows(&got.batches, false), want, "{sql} run {run}");
        }
    }
}
