//! Qilin on HBase end to end: `qilin-jobs sample` with both store URLs pointing at an HBase
//! Thrift server (the emulator) builds the SSB sample; `qilin-server` on the same URLs answers
//! the query corpus (the 13 SSB queries from cuboids, and the first
//! [`RANDOM_QUERIES_SMALL`] random queries) like the oracle.

use std::process::Command;

use qilin_tests::corpus::{check_random_queries, check_ssb_queries, RANDOM_QUERIES_SMALL};
use qilin_tests::hbase_emulator_process::EmulatorProcess;
use qilin_tests::server::{connect, shared_ssb_source_dir, ServerProcess, SCALE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_built_into_hbase_answers_the_query_corpus() {
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

    let exe = qilin_tests::server_exe();
    let pushdown_props = format!("{props}kylin.query.pushdown.enabled=true\n");
    let (server, pushdown) = tokio::task::spawn_blocking(move || {
        (
            ServerProcess::start(&exe, &props),
            ServerProcess::start(&exe, &pushdown_props),
        )
    })
    .await
    .unwrap();
    let mut client = connect(&server.addr, "ADMIN", "KYLIN").await;
    let ctx = qilin_tests::oracle(&source).await;
    check_ssb_queries("hbase server", &mut client, &ctx).await;
    check_random_queries(
        "hbase server",
        &mut client,
        &mut connect(&pushdown.addr, "ADMIN", "KYLIN").await,
        &ctx,
        RANDOM_QUERIES_SMALL,
    )
    .await;
}
