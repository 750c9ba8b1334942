//! `qilin-jobs metadata backup` of a local store holding the built SSB sample, `metadata
//! restore` into the HBase emulator (refused a second time: the store is not empty), and a
//! `qilin-server` on the restored metadata (segments: the same local segment store) answering
//! the 13 SSB queries like the oracle.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use qilin_engine::metadata::{backup::MANIFEST_FILE, open_store};
use qilin_tests::corpus::check_ssb_queries;
use qilin_tests::hbase_emulator_process::EmulatorProcess;
use qilin_tests::server::{
    connect, shared_ssb_source_dir, shared_ssb_store, ssb_properties, ServerProcess, SCALE,
};

fn jobs(conf: &Path, args: &[&str]) -> Output {
    Command::new(qilin_tests::workspace_exe("qilin-jobs"))
        .arg("--conf")
        .arg(conf)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run qilin-jobs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_backup_restored_into_hbase_answers_the_ssb_queries() {
    let store = shared_ssb_store(SCALE).await;
    let source = shared_ssb_source_dir(SCALE).await;
    let dir = tempfile::tempdir().unwrap();
    let local_conf = dir.path().join("local.properties");
    std::fs::write(&local_conf, ssb_properties(&store, &source, "")).unwrap();

    let backup = dir.path().join("backup");
    let out = jobs(
        &local_conf,
        &["metadata", "backup", backup.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "backup failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(backup.join(MANIFEST_FILE).is_file());
    assert!(backup.join("resources/cube_desc/ssb_cube.json").is_file());
    // No temp directory left next to it.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let emulator = EmulatorProcess::start(&qilin_tests::emulator_exe(), None, 0);
    let hbase_props = format!(
        "kylin.metadata.url=restored_metadata@hbase://{}\n\
         kylin.storage.url={}\n\
         kylin.source.url={}\n\
         kylin.sample.auto-create=false\n\
         kylin.server.mode=query\n",
        emulator.addr,
        store.join("segments").display(),
        source.display()
    );
    let hbase_conf = dir.path().join("hbase.properties");
    std::fs::write(&hbase_conf, &hbase_props).unwrap();
    let out = jobs(
        &hbase_conf,
        &["metadata", "restore", backup.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "restore failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every resource arrived with the same bytes (the lease, the audit log and the query
    // history are runtime state, not copied).
    let src = open_store(store.join("meta").to_str().unwrap()).unwrap();
    let dst = open_store(&format!("restored_metadata@hbase://{}", emulator.addr)).unwrap();
    let src_paths: Vec<String> = src
        .list_all()
        .unwrap()
        .into_iter()
        .filter(|p| {
            !p.starts_with("/lease/")
                && !p.starts_with("/audit/")
                && !p.starts_with("/query_history/")
        })
        .collect();
    assert_eq!(dst.list_all().unwrap(), src_paths);
    for p in &src_paths {
        assert_eq!(
            dst.get(p).unwrap().unwrap().data,
            src.get(p).unwrap().unwrap().data,
            "{p}"
        );
    }

    // A second restore would mix two stores: refused, naming a resource.
    let out = jobs(
        &hbase_conf,
        &["metadata", "restore", backup.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("not empty") && stderr.contains("/cube"),
        "{stderr}"
    );

    let exe = qilin_tests::server_exe();
    let server = tokio::task::spawn_blocking(move || ServerProcess::start(&exe, &hbase_props))
        .await
        .unwrap();
    let mut client = connect(&server.addr, "ADMIN", "KYLIN").await;
    let ctx = qilin_tests::oracle(&source).await;
    check_ssb_queries("restored on hbase", &mut client, &ctx).await;
}
