//! Qilin on HBase end to end: `qilin-jobs sample` with both store URLs pointing at an HBase
//! Thrift server (the emulator) builds the SSB sample; `qilin-server` on the same URLs answers
//! the 13 SSB queries with the oracle's rows, from cuboids.

mod common;

use std::path::Path;
use std::process::Command;

use common::{
    compare, explain_text, has_order_by, oracle_query, run_query, ssb_queries, Expect, SCALE,
};
use qilin_tests::hbase_emulator_process::EmulatorProcess;
use qilin_tests::server::{connect, shared_ssb_source_dir, ServerProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_built_into_hbase_answers_the_ssb_queries() {
    let source = shared_ssb_source_dir(SCALE).await;
    let dir = tempfile::tempdir().unwrap();
    let emulator = EmulatorProcess::start(&qilin_tests::emulator_exe(), None, 0);
    let props = format!(
        "kylin.metadata.url=kylin_metadata@hbase://{addr}\n\
         kylin.storage.url=qilin_segments@hbase://{addr}\n\
         kylin.source.url={}\n\
         kylin.sample.auto-create=false\n\
         kylin.server.mode=query\n",
        source.display(),
        addr = emulator.addr
    );
    let conf = dir.path().join("kylin.properties");
    std::fs::write(&conf, &props).unwrap();

    let jobs = qilin_tests::workspace_exe("qilin-jobs");
    let conf2 = conf.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(jobs)
            .arg("--conf")
            .arg(&conf2)
            .args(["sample", "--scale", &SCALE.to_string()])
            .output()
            .expect("run qilin-jobs sample")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "qilin-jobs sample failed:\n{stderr}");

    let exe = Path::new(env!("CARGO_BIN_EXE_qilin-server"));
    let server = tokio::task::spawn_blocking(move || ServerProcess::start(exe, &props))
        .await
        .unwrap();
    let mut client = connect(&server.addr, "ADMIN", "KYLIN").await;
    let ctx = qilin_tests::oracle(&source).await;
    let mut failures = Vec::new();
    for (name, sql) in ssb_queries() {
        let want = oracle_query(&ctx, &sql).await;
        match run_query(&mut client, &sql).await {
            Ok(got) => {
                let expect = Expect {
                    ordered: has_order_by(&sql),
                    approx: vec![],
                };
                if let Err(e) = compare(&got, &want, &expect) {
                    failures.push(format!("{name}: {e}"));
                }
            }
            Err(s) => failures.push(format!("{name}: {:?}: {}", s.code(), s.message())),
        }
        let plan = run_query(&mut client, &format!("EXPLAIN {sql}"))
            .await
            .map(|p| explain_text(&p).to_lowercase())
            .unwrap_or_else(|s| s.message().to_string());
        if !plan.contains("cuboid") || plan.contains("pushdown") {
            failures.push(format!("{name}: EXPLAIN should show a cuboid:\n{plan}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
