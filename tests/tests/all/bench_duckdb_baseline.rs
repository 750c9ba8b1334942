//! The DuckDB side of the harness: a baseline statement DuckDB cannot finish is reported with
//! DuckDB's message and timed again without its exact distinct count, and the query figures
//! survive it. Skipped (with a message) when python3 has no `duckdb` package.

use std::path::Path;
use std::process::Command;

use qilin_bench::workload::{self, BaselineStatement, WITHOUT_EXACT_DISTINCT};

#[test]
fn a_failed_baseline_statement_is_reported_and_retried_without_the_distinct_count() {
    let has_duckdb = Command::new(qilin_tests::python())
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_duckdb {
        eprintln!(
            "{} has no duckdb package: the DuckDB column is optional, skipping",
            qilin_tests::python()
        );
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("ssb");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(qilin_engine::sample::ssbgen::generate_ssb(0.01, &source))
        .expect("generate SSB");
    let queries = vec![(
        "count".to_string(),
        "SELECT COUNT(*) FROM lineorder".to_string(),
    )];
    let baseline = vec![
        BaselineStatement {
            name: "fine".into(),
            sql: "CREATE TABLE fine AS SELECT lo_orderdate, COUNT(DISTINCT lo_suppkey) \
                  FROM lineorder GROUP BY lo_orderdate"
                .into(),
            without_exact_distinct: "CREATE TABLE fine AS SELECT 1".into(),
        },
        BaselineStatement {
            name: "broken".into(),
            sql: "CREATE TABLE broken AS SELECT no_such_column FROM lineorder".into(),
            without_exact_distinct: "CREATE TABLE broken AS SELECT lo_orderdate, COUNT(*) \
                                     FROM lineorder GROUP BY lo_orderdate"
                .into(),
        },
    ];
    let spill = dir.path().join("duckdb-tmp");
    let out = workload::duckdb(&source, &queries, 2, &baseline, &spill)
        .expect("the harness survives a failed baseline statement")
        .expect("duckdb is installed");
    assert!(out.queries["count"].median_ms > 0.0, "{:?}", out.queries);
    assert!(out.build_seconds["fine"] > 0.0, "{:?}", out.build_seconds);
    assert!(!out.build_errors.contains_key("fine"));
    let error = &out.build_errors["broken"];
    assert!(error.contains("no_such_column"), "{error}");
    let fallback = format!("broken{WITHOUT_EXACT_DISTINCT}");
    assert!(
        out.build_seconds[&fallback] > 0.0,
        "{:?}",
        out.build_seconds
    );
    assert!(!out.build_seconds.contains_key("broken"));
    assert!(!Path::new(&spill).exists(), "spill dir left behind");
}
