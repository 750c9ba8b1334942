//! Runs the built `qilin-bench` on a tiny SSB (scale 0.01, 3 runs) against the `qilin-server`
//! and `qilin-jobs` of the same target directory, and checks the JSON report, the detail scan
//! (`SELECT * FROM lineorder` through ADBC, next to DuckDB) included.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `PATH` with the test venv's bin dir first: qilin-bench runs its Python clients (the ADBC
/// driver, DuckDB) with `python3` from `PATH`.
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

/// Rows of a Parquet file, from its footer.
fn parquet_rows(path: &Path) -> u64 {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = datafusion::parquet::file::reader::SerializedFileReader::new(file)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    use datafusion::parquet::file::reader::FileReader;
    reader.metadata().file_metadata().num_rows() as u64
}

fn python_has(modules: &str) -> bool {
    Command::new(qilin_tests::python())
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn ssb_smoke() {
    let server = qilin_tests::server_exe();
    let jobs = qilin_tests::workspace_exe("qilin-jobs");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("report.json");
    let work = dir.path().join("work");
    let output = Command::new(qilin_tests::workspace_exe("qilin-bench"))
        .args(["ssb", "--scale", "0.01", "--runs", "3", "--json"])
        .arg(&out)
        .arg("--work")
        .arg(&work)
        .arg("--server")
        .arg(&server)
        .arg("--jobs")
        .arg(&jobs)
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
    let queries = report["queries"].as_array().expect("queries array");
    assert_eq!(queries.len(), 13, "13 SSB queries in {text}");
    for q in queries {
        let name = q["name"].as_str().expect("query name");
        for engine in ["qilin", "datafusion"] {
            let median = q[engine]["median_ms"].as_f64().expect("median_ms");
            assert!(median > 0.0, "{name}: {engine} median {median}");
        }
        assert!(q["rows"].as_u64().is_some(), "{name}: rows ≥ 0");
    }
    let seconds = report["build"]["seconds"].as_f64().expect("build seconds");
    assert!(seconds > 0.0, "build seconds {seconds}");
    assert!(report["cube_bytes"].as_u64().unwrap_or(0) > 0);
    assert!(report["source_bytes"].as_u64().unwrap_or(0) > 0);

    // The detail scan: present, answered (table index or pushdown, never refused), every row
    // read, the first batch no later than the end, a plausible peak RSS for the scan server.
    let scan = &report["detail_scan"];
    assert_eq!(
        scan["statement"], "SELECT * FROM lineorder",
        "detail_scan in {text}"
    );
    assert!(
        scan["errors"].as_object().is_none_or(|e| e.is_empty()),
        "detail scan errors: {}",
        scan["errors"]
    );
    let realization = scan["realization"].as_array().expect("realization rows");
    assert!(
        !realization.is_empty()
            && realization
                .iter()
                .all(|r| !r.as_str().unwrap_or("").starts_with("no realization")),
        "the scan server must answer the statement: {realization:?}"
    );
    let lineorder_rows = parquet_rows(&work.join("source/ssb/lineorder.parquet"));
    let check_times = |engine: &str| {
        let t = &scan[engine];
        let first = t["first_batch"]["median_ms"]
            .as_f64()
            .expect("first_batch median");
        let total = t["total"]["median_ms"].as_f64().expect("total median");
        assert!(
            first > 0.0 && first <= total,
            "{engine}: first batch {first} ms, total {total} ms"
        );
        assert_eq!(
            t["rows"].as_u64(),
            Some(lineorder_rows),
            "{engine}: rows read"
        );
    };
    check_times("qilin_adbc");
    let rss = scan["server_peak_rss_bytes"]
        .as_u64()
        .expect("scan server peak RSS");
    assert!(
        (1 << 20..16 << 30).contains(&rss),
        "scan server peak RSS {rss} bytes"
    );
    if python_has("duckdb, pyarrow") {
        check_times("duckdb");
    } else {
        eprintln!("python3 has no duckdb: the DuckDB scan is optional, not checked");
    }
    assert!(
        stdout.contains("SELECT * FROM lineorder"),
        "the table shows the scan:\n{stdout}"
    );
}

/// `qilin-bench ballista` at scale 0.01 with a one-executor cluster: both builds reported,
/// with the same cuboids (the bench itself fails when a cluster build wrote other rows or
/// blocks than the local one).
#[test]
fn ballista_smoke() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("ballista.json");
    let output = Command::new(qilin_tests::workspace_exe("qilin-bench"))
        .args(["ballista", "--scale", "0.01", "--executors", "1", "--json"])
        .arg(&out)
        .arg("--work")
        .arg(dir.path().join("work"))
        .output()
        .expect("run qilin-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "qilin-bench ballista failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("JSON report")).unwrap();
    let builds = report["builds"].as_array().expect("builds");
    let setups: Vec<&str> = builds
        .iter()
        .map(|b| b["setup"].as_str().unwrap())
        .collect();
    assert_eq!(setups, ["local", "ballista-1"], "{report}");
    for b in builds {
        assert!(b["seconds"].as_f64().unwrap() > 0.0, "{b}");
        assert_eq!(b["cuboids"], builds[0]["cuboids"], "{b}");
        assert!(b["cuboids"].as_u64().unwrap() > 100, "{b}");
    }
    assert_eq!(builds[0]["ratio_to_local"].as_f64(), Some(1.0));
    assert!(
        stdout.contains("every setup wrote the same cuboids"),
        "{stdout}"
    );
}
