//! `qilin-bench ssb --adhoc`: a tiny run (scale 0.01, 10 ad-hoc queries) of the built
//! `qilin-bench` against the `qilin-server` and `qilin-jobs` of the same target directory;
//! checks that every ad-hoc answer equals DuckDB's on the raw Parquet, and that the report has
//! the ad-hoc percentiles, the ADBC column of the 13 SSB queries, the cold first run of both
//! clients and the bytes per cuboid row.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;

/// `PATH` with the test venv's bin dir first: qilin-bench runs its Python clients with
/// `python3` from `PATH`.
fn path_with_test_python() -> std::ffi::OsString {
    let python = PathBuf::from(qilin_tests::python());
    let mut dirs: Vec<PathBuf> = python
        .parent()
        .filter(|d| python.is_absolute() && d.is_dir())
        .map(|d| vec![d.to_path_buf()])
        .unwrap_or_default();
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).expect("PATH entries")
}

fn ms(v: &serde_json::Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is no number: {v}"));
    assert!(x > 0.0 && x.is_finite(), "{what} = {x}");
    x
}

#[test]
fn adhoc_mode() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("report.json");
    let output = Command::new(qilin_tests::workspace_exe("qilin-bench"))
        .args(["ssb", "--scale", "0.01", "--runs", "1", "--adhoc", "10"])
        .args(["--seed", "5", "--json"])
        .arg(&out)
        .arg("--work")
        .arg(dir.path().join("work"))
        .arg("--server")
        .arg(qilin_tests::server_exe())
        .arg("--jobs")
        .arg(qilin_tests::workspace_exe("qilin-jobs"))
        .env("PATH", path_with_test_python())
        .output()
        .expect("run qilin-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "qilin-bench failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    eprintln!("{stdout}");
    let text = std::fs::read_to_string(&out).expect("JSON report written");
    let report: serde_json::Value = serde_json::from_str(&text).expect("report is JSON");

    // The ad-hoc mode: 10 distinct queries, all answered, all equal to DuckDB's answers.
    let adhoc = &report["adhoc"];
    assert_eq!(adhoc["queries"], 10, "adhoc in {text}");
    assert_eq!(adhoc["seed"], 5);
    let results = adhoc["results"].as_array().expect("adhoc results");
    assert_eq!(results.len(), 10);
    for r in results {
        let id = r["id"].as_str().expect("id");
        assert!(
            r["error"].is_null() && r["mismatch"].is_null(),
            "{id} failed: {} {}\n{}",
            r["error"],
            r["mismatch"],
            r["sql"]
        );
        assert_eq!(r["rows"], r["duckdb_rows"], "{id}: row counts");
        ms(&r["qilin_ms"], "qilin_ms");
        ms(&r["duckdb_ms"], "duckdb_ms");
        let cuboid = r["cuboid"].as_str().unwrap_or("");
        assert!(
            cuboid.starts_with("cuboid ") || cuboid.starts_with("table index"),
            "{id}: EXPLAIN names the cuboid read: {cuboid:?}"
        );
    }
    let sqls: HashSet<&str> = results.iter().filter_map(|r| r["sql"].as_str()).collect();
    assert_eq!(sqls.len(), 10, "every ad-hoc query differs");
    assert_eq!(adhoc["mismatches"], 0);
    assert_eq!(adhoc["errors"], 0);
    for engine in ["qilin", "duckdb"] {
        let p = &adhoc[engine];
        let (p50, p99, max) = (
            ms(&p["p50_ms"], "p50"),
            ms(&p["p99_ms"], "p99"),
            ms(&p["max_ms"], "max"),
        );
        assert!(p50 <= p99 && p99 <= max, "{engine}: {p}");
    }
    ms(&adhoc["ratio"]["p50_ms"], "ratio p50");
    assert!(!adhoc["worst"].as_array().expect("worst").is_empty());
    assert!(stdout.contains("ad-hoc mode: 10 queries"), "{stdout}");

    // The ADBC column of the 13 SSB queries.
    let adbc = &report["adbc"];
    assert_eq!(
        adbc["queries"].as_object().map(|q| q.len()),
        Some(13),
        "adbc in {text}"
    );
    ms(&adbc["total_median_ms"], "adbc total");
    // The same 13 in rounds through one kept cursor.
    assert_eq!(
        adbc["reused_cursor"].as_object().map(|q| q.len()),
        Some(13),
        "adbc.reused_cursor in {text}"
    );
    let kept = ms(&adbc["reused_cursor_total_median_ms"], "kept cursor total");
    assert!(stdout.contains(&format!("{kept:.2} ms in rounds through one kept cursor")));
    for q in report["queries"].as_array().expect("queries") {
        ms(&q["adbc"]["median_ms"], "adbc median");
        assert_eq!(adbc["rows"][q["name"].as_str().unwrap()], q["rows"]);
    }

    // The cold first run of both clients, against their hot totals.
    let cold = &report["cold_first_run"];
    for client in ["rust_client", "adbc"] {
        let c = &cold[client];
        ms(&c["cold_first_run_ms"], "cold first run");
        ms(&c["hot_ms"], "hot");
        assert_eq!(
            c["per_query_ms"].as_object().map(|q| q.len()),
            Some(13),
            "{c}"
        );
    }

    // Bytes per cuboid row: every cuboid of the sample cube, the base among them.
    let cb = &report["cuboid_bytes"];
    let cuboids = cb["cuboids"].as_array().expect("cuboids");
    assert_eq!(cuboids.len(), 149, "the sample cube's cuboids");
    let base = cb["base_cuboid"].as_u64().expect("base cuboid");
    let b = cuboids
        .iter()
        .find(|c| c["id"].as_u64() == Some(base))
        .expect("the base cuboid is listed");
    // 15 dimensions, lo_suppkey and lo_orderdate (the day-level group's mandatory one).
    assert_eq!(b["dimensions"].as_array().map(|d| d.len()), Some(17));
    let total: u64 = cuboids.iter().filter_map(|c| c["bytes"].as_u64()).sum();
    assert_eq!(cb["total_bytes"].as_u64(), Some(total));
    for c in cuboids {
        assert!(c["rows"].as_u64().unwrap_or(0) > 0, "{c}");
        ms(&c["bytes_per_row"], "bytes per row");
    }
    assert!(stdout.contains("bytes per cuboid row"), "{stdout}");
}
