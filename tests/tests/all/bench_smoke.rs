//! Runs the built `qilin-bench` on a tiny SSB (scale 0.01, 3 runs) against the `qilin-server`
//! and `qilin-jobs` of the same target directory, and checks the JSON report.

use std::process::Command;

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
}
