//! The 13 SSB queries through the Python ADBC Flight SQL driver (what data scientists use),
//! against `qilin-server` on the SSB SF 0.01 sample: every result must equal the oracle's
//! (DataFusion on the raw Parquet files) and every `EXPLAIN` must show a cuboid, not pushdown.
//!
//! `tests/python/ssb_adbc.py` runs the queries and writes the results as Arrow IPC files;
//! both sides read the queries from `tests/ssb_queries.sql`. Needs the packages of
//! `tests/requirements.txt` (`scripts/test` installs them into its virtual environment).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::ipc::reader::FileReader;
use qilin_tests::compare::{compare, explain_text, has_order_by, oracle_query, Expect};
use qilin_tests::corpus::ssb_queries;
use qilin_tests::server::SsbServer;

const INSTALL_HINT: &str =
    "./scripts/test installs tests/requirements.txt (adbc-driver-flightsql, pyarrow) into its venv";

fn read_ipc(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    FileReader::try_new(file, None)
        .unwrap_or_else(|e| panic!("{}: not an Arrow IPC file: {e}", path.display()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssb_queries_through_python_adbc_match_the_oracle() {
    let started = Instant::now();
    // Fail early, and say what to install, when the driver is missing.
    let probe = Command::new(qilin_tests::python())
        .args(["-c", "import adbc_driver_flightsql.dbapi, pyarrow"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}); {INSTALL_HINT}", qilin_tests::python()));
    assert!(
        probe.status.success(),
        "the Python ADBC Flight SQL driver is missing: {INSTALL_HINT}\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );

    let ssb = SsbServer::start("").await;
    let ctx = qilin_tests::oracle(&ssb.source).await;
    let out = tempfile::tempdir().expect("temp dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/ssb_adbc.py");
    let uri = ssb.process.uri();
    let out_path = out.path().to_path_buf();
    let t = Instant::now();
    let run = tokio::task::spawn_blocking(move || {
        Command::new(qilin_tests::python())
            .arg(&script)
            .arg(&uri)
            .arg(&out_path)
            .output()
            .expect("run ssb_adbc.py")
    })
    .await
    .unwrap();
    let python_time = t.elapsed();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_ne!(run.status.code(), Some(3), "{INSTALL_HINT}: {stderr}");
    assert!(
        run.status.success(),
        "ssb_adbc.py failed ({}):\n{stderr}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stdout)
    );
    assert!(
        out.path().join("done.txt").exists(),
        "ssb_adbc.py did not finish"
    );

    let mut failures = Vec::new();
    let queries = ssb_queries();
    for (name, sql) in &queries {
        let error = out.path().join(format!("{name}.error.txt"));
        if error.exists() {
            let text = std::fs::read_to_string(&error).unwrap();
            // The driver's traceback is long; its last lines carry the server's message.
            let tail: Vec<&str> = text.lines().rev().take(4).collect();
            failures.push(format!(
                "{name}: ADBC error: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ));
        }
        let result = out.path().join(format!("{name}.arrow"));
        if result.exists() {
            let got = read_ipc(&result);
            let want = oracle_query(&ctx, sql).await;
            let rows: usize = want.iter().map(|b| b.num_rows()).sum();
            let expect = Expect {
                ordered: has_order_by(sql),
                approx: vec![],
            };
            match compare(&got, &want, &expect) {
                Ok(()) => println!("{name}: {rows} rows match the oracle"),
                Err(e) => failures.push(format!("{name}: {e}\n    {sql}")),
            }
        }
        let explain = out.path().join(format!("{name}.explain.arrow"));
        if explain.exists() {
            let batches = read_ipc(&explain);
            let fields: Vec<String> = batches
                .first()
                .map(|b| {
                    b.schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect()
                })
                .unwrap_or_default();
            let text = explain_text(&batches);
            let lower = text.to_lowercase();
            if fields != ["plan_type", "plan"] {
                failures.push(format!(
                    "{name}: EXPLAIN columns {fields:?}, expected [plan_type, plan]"
                ));
            }
            if !lower.contains("cuboid") || lower.contains("pushdown") {
                failures.push(format!(
                    "{name}: EXPLAIN should show a cuboid and no pushdown:\n{text}"
                ));
            }
            if !lower.contains("ssb_cube") {
                failures.push(format!("{name}: EXPLAIN does not name ssb_cube:\n{text}"));
            }
        }
    }
    println!(
        "ssb_adbc: {} queries via ADBC in {python_time:.1?} (incl. Python start-up), test total {:.1?}",
        queries.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
