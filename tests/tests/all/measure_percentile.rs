//! PERCENTILE measures (`lo_revenue_percentile`, a t-digest of `lo_revenue`): every accepted
//! SQL form is answered from `ssb_cube` (EXPLAIN names the cube and the merge of the
//! measure's digests), globally and grouped by a dimension, within 1 % rank of the raw values
//! (the rank of each answer among the group's raw values, computed from the oracle); across
//! two segments and after merging them; `percentile_approx` also plans on the source tables
//! (pushdown); a percentile outside [0, 1] is a clear error.

use std::collections::HashMap;
use std::path::Path;

use datafusion::arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;
use qilin_engine::metadata::managers::Metadata;
use qilin_engine::model::SegmentRange;
use qilin_engine::query::QueryEngine;
use qilin_engine::sample::ssb;
use qilin_jobs::JobStatus;
use qilin_tests::compare::{explain_text, run_query, Client};
use qilin_tests::server::{SsbServer, SCALE};
use qilin_tests::{cell, oracle, quiet, shared_ssb_source, TestEnv};

/// Allowed distance between the asked quantile and the answer's rank among the raw values.
const RANK_ERROR: f64 = 0.01;

const BY_YEAR: &str = "lineorder join dates on lo_orderdate = d_datekey";
const BY_REGION: &str = "lineorder join customer on lo_custkey = c_custkey";

/// One query shape: its SQL, the number of leading group columns, the quantile each
/// remaining column asks for, and the raw values' SQL (group key columns, then lo_revenue).
struct Case {
    sql: String,
    keys: usize,
    quantiles: Vec<f64>,
    raw: String,
}

fn cases() -> Vec<Case> {
    let global = "select lo_revenue from lineorder".to_string();
    let year = format!("select d_year, lo_revenue from {BY_YEAR}");
    let region = format!("select c_region, lo_revenue from {BY_REGION}");
    vec![
        Case {
            sql: "select approx_percentile_cont(lo_revenue, 0.5), \
                  approx_percentile_cont(lo_revenue, 0.95), \
                  approx_percentile_cont(lo_revenue, 0.99) from lineorder"
                .into(),
            keys: 0,
            quantiles: vec![0.5, 0.95, 0.99],
            raw: global.clone(),
        },
        Case {
            sql: format!(
                "select d_year, approx_percentile_cont(0.5) within group (order by lo_revenue), \
                 approx_percentile_cont(0.95) within group (order by lo_revenue), \
                 approx_percentile_cont(0.99) within group (order by lo_revenue) \
                 from {BY_YEAR} group by d_year order by d_year"
            ),
            keys: 1,
            quantiles: vec![0.5, 0.95, 0.99],
            raw: year.clone(),
        },
        Case {
            // DESC asks for the mirrored quantile.
            sql: format!(
                "select c_region, \
                 approx_percentile_cont(0.05) within group (order by lo_revenue desc) \
                 from {BY_REGION} group by c_region"
            ),
            keys: 1,
            quantiles: vec![0.95],
            raw: region.clone(),
        },
        Case {
            sql: format!(
                "select c_region, percentile_approx(lo_revenue, 0.5), \
                 percentile_approx(lo_revenue, 0.99) from {BY_REGION} group by c_region"
            ),
            keys: 1,
            quantiles: vec![0.5, 0.99],
            raw: region.clone(),
        },
        Case {
            sql: "select percentile_approx(lo_revenue, 0.95) from lineorder".into(),
            keys: 0,
            quantiles: vec![0.95],
            raw: global.clone(),
        },
        Case {
            sql: format!("select d_year, approx_median(lo_revenue) from {BY_YEAR} group by d_year"),
            keys: 1,
            quantiles: vec![0.5],
            raw: year.clone(),
        },
        Case {
            sql: "select approx_median(lo_revenue) from lineorder".into(),
            keys: 0,
            quantiles: vec![0.5],
            raw: global.clone(),
        },
        Case {
            sql: format!(
                "select c_region, percentile_cont(0.5) within group (order by lo_revenue), \
                 percentile_cont(0.99) within group (order by lo_revenue) \
                 from {BY_REGION} group by c_region"
            ),
            keys: 1,
            quantiles: vec![0.5, 0.99],
            raw: region,
        },
        Case {
            sql: "select percentile_cont(0.95) within group (order by lo_revenue) from lineorder"
                .into(),
            keys: 0,
            quantiles: vec![0.95],
            raw: global,
        },
    ]
}

/// The raw values of each group (key = its key cells joined by `|`), sorted.
async fn raw_values(ctx: &SessionContext, sql: &str, keys: usize) -> HashMap<String, Vec<f64>> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut out: HashMap<String, Vec<f64>> = HashMap::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            let key: Vec<String> = (0..keys).map(|c| cell(b.column(c).as_ref(), r)).collect();
            let v: f64 = cell(b.column(keys).as_ref(), r).parse().unwrap();
            out.entry(key.join("|")).or_default().push(v);
        }
    }
    for v in out.values_mut() {
        v.sort_by(f64::total_cmp);
    }
    out
}

/// Checks every answer of `case` against the raw values; returns the groups checked.
fn check_answers(
    case: &Case,
    batches: &[RecordBatch],
    raw: &HashMap<String, Vec<f64>>,
    what: &str,
) -> usize {
    let mut groups = 0;
    for b in batches {
        assert_eq!(b.num_columns(), case.keys + case.quantiles.len(), "{what}");
        for r in 0..b.num_rows() {
            let key: Vec<String> = (0..case.keys)
                .map(|c| cell(b.column(c).as_ref(), r))
                .collect();
            let key = key.join("|");
            let values = raw
                .get(&key)
                .unwrap_or_else(|| panic!("{what}: group {key:?} is not in the raw data"));
            for (i, &q) in case.quantiles.iter().enumerate() {
                let text = cell(b.column(case.keys + i).as_ref(), r);
                let v: f64 = text
                    .parse()
                    .unwrap_or_else(|_| panic!("{what}: group {key:?}: answer {text:?}"));
                let n = values.len() as f64;
                let below = values.partition_point(|&x| x < v) as f64 / n;
                let upto = values.partition_point(|&x| x <= v) as f64 / n;
                assert!(
                    below - RANK_ERROR <= q && q <= upto + RANK_ERROR,
                    "{what}: group {key:?}: p{q} answered {v}, whose rank is {below:.4}..{upto:.4}"
                );
            }
            groups += 1;
        }
    }
    assert_eq!(groups, raw.len().max(1), "{what}: one answer per group");
    groups
}

async fn explain(client: &mut Client, sql: &str) -> String {
    let plan = run_query(client, &format!("EXPLAIN {sql}"))
        .await
        .unwrap_or_else(|s| panic!("EXPLAIN {sql}: {:?}: {}", s.code(), s.message()));
    explain_text(&plan)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_form_is_answered_from_the_cube_within_one_percent_rank() {
    let ssb = SsbServer::start("").await;
    let ctx = oracle(&ssb.source).await;
    let mut client = ssb.client().await;
    for case in cases() {
        let text = explain(&mut client, &case.sql).await;
        assert!(
            text.contains(ssb::CUBE)
                && text.contains("qilin_tdigest_merge")
                && text.contains("lo_revenue_percentile"),
            "EXPLAIN {} should read the cube's PERCENTILE measure:\n{text}",
            case.sql
        );
        let batches = run_query(&mut client, &case.sql)
            .await
            .unwrap_or_else(|s| panic!("{}: {:?}: {}", case.sql, s.code(), s.message()));
        let raw = raw_values(&ctx, &case.raw, case.keys).await;
        let groups = check_answers(&case, &batches, &raw, &case.sql);
        assert!(groups >= 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_percentile_outside_zero_to_one_is_a_clear_error() {
    let ssb = SsbServer::start("").await;
    let mut client = ssb.client().await;
    for sql in [
        "select approx_percentile_cont(lo_revenue, 1.5) from lineorder",
        "select percentile_cont(-0.1) within group (order by lo_revenue) from lineorder",
        "select percentile_approx(lo_revenue, 2) from lineorder",
    ] {
        let err = run_query(&mut client, sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql} must fail"));
        // The cube refuses the percentile; the table index then plans it with DataFusion's
        // check ("between 0.0 and 1.0"), which fails before reading anything.
        assert!(
            err.message().contains("between 0"),
            "{sql}: {:?}: {}",
            err.code(),
            err.message()
        );
    }
    // A percentile that is not a literal is refused with the reason.
    let sql = "select approx_percentile_cont(lo_revenue, lo_discount / 10.0) from lineorder";
    let err = run_query(&mut client, sql).await.expect_err("must fail");
    assert!(err.message().contains("literal"), "{}", err.message());
}

/// `percentile_approx` over a column without a PERCENTILE measure runs on the source tables
/// when pushdown is on (no table index to answer it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percentile_approx_plans_on_the_source_tables_with_pushdown() {
    let ssb = SsbServer::start_without_table_index("kylin.query.pushdown.enabled=true").await;
    let ctx = oracle(&ssb.source).await;
    let mut client = ssb.client().await;
    let case = Case {
        sql: "select percentile_approx(lo_supplycost, 0.9) from lineorder".into(),
        keys: 0,
        quantiles: vec![0.9],
        raw: "select lo_supplycost from lineorder".into(),
    };
    let text = explain(&mut client, &case.sql).await.to_lowercase();
    assert!(text.contains("pushdown"), "{text}");
    let batches = run_query(&mut client, &case.sql)
        .await
        .unwrap_or_else(|s| panic!("{:?}: {}", s.code(), s.message()));
    let raw = raw_values(&ctx, &case.raw, 0).await;
    check_answers(&case, &batches, &raw, &case.sql);
}

/// Percentiles across two segments, then across the segment merging them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_segments_and_their_merge_answer_within_one_percent_rank() {
    let source = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), SCALE).await;
    let env = TestEnv::new(&source);
    env.install_sample(SCALE).await;
    env.build("1992-01-01..1995-01-01").await.unwrap();
    env.build("1995-01-01..1999-01-01").await.unwrap();
    let ctx = oracle(&source).await;
    let query = || {
        QueryEngine::new(
            &env.config,
            Metadata::new(env.meta().store().clone()),
            env.engine.segment_store().clone(),
        )
    };
    let check = |engine: QueryEngine, segments: usize| {
        let ctx = &ctx;
        async move {
            for case in cases() {
                let explain = engine
                    .execute(&format!("EXPLAIN {}", case.sql), None)
                    .await
                    .unwrap_or_else(|e| panic!("EXPLAIN {}: {e}", case.sql));
                let text = explain_text(&explain.batches);
                assert!(
                    text.contains(ssb::CUBE) && text.contains("qilin_tdigest_merge"),
                    "{}:\n{text}",
                    case.sql
                );
                let out = engine
                    .execute(&case.sql, None)
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", case.sql));
                let raw = raw_values(ctx, &case.raw, case.keys).await;
                check_answers(
                    &case,
                    &out.batches,
                    &raw,
                    &format!("{segments} segment(s): {}", case.sql),
                );
            }
        }
    };
    check(query(), 2).await;

    let range = SegmentRange::parse("1992-01-01", "1999-01-01").unwrap();
    let job = env.engine.submit_merge(ssb::CUBE, range).unwrap();
    let job = env.engine.run(&job.id, quiet()).await.unwrap();
    assert_eq!(job.status, JobStatus::Succeed);
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    assert_eq!(inst.ready_segments().count(), 1);
    check(query(), 1).await;
}
