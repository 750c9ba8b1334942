//! The `qilin-jobs` binary end to end: the SSB sample, job listing, clear errors, and a build
//! killed with SIGKILL midway that leaves no READY segment and completes when rerun.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qilin_engine::config::Config;
use qilin_engine::metadata::{managers::Metadata, LocalResourceStore};
use qilin_engine::model::SegmentStatus;
use qilin_engine::storage::LocalSegmentStore;
use qilin_jobs::{JobEngine, JobStatus};

fn bin() -> PathBuf {
    qilin_tests::workspace_exe("qilin-jobs")
}

struct Install {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Install {
    fn new() -> Install {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("kylin.properties");
        std::fs::write(
            &conf,
            format!(
                "kylin.metadata.url={0}/meta\nkylin.storage.url={0}/segments\nkylin.source.url={0}/source\n",
                dir.path().display()
            ),
        )
        .unwrap();
        Install { dir, conf }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--conf")
            .arg(&self.conf)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn engine(&self) -> JobEngine {
        let text = std::fs::read_to_string(&self.conf).unwrap();
        let config = Config::from_parts(&text, "test", |_| None).unwrap();
        JobEngine::new(
            Metadata::new(Arc::new(
                LocalResourceStore::open(&config.stores.metadata_url).unwrap(),
            )),
            Arc::new(LocalSegmentStore::open(&config.stores.storage_url).unwrap()),
            config,
        )
    }

    fn segments_dir(&self) -> PathBuf {
        self.dir.path().join("segments")
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn ok(out: &Output) -> (String, String) {
    let (o, e) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{o}\nstderr:\n{e}",
        out.status
    );
    (o, e)
}

fn fails_with(out: &Output, needle: &str) {
    let e = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {e}");
    assert!(e.contains(needle), "expected {needle:?} in stderr: {e}");
    assert!(!e.contains("panicked"), "{e}");
}

fn dirs_in(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                // Global dictionaries live beside the segments and outlive them.
                .filter(|n| n != "_dict")
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn sample_builds_and_jobs_list_shows_it() {
    let inst = Install::new();
    let (_, err) = ok(&inst.run(&["sample", "--scale", "0.01"]));
    assert!(err.contains("SUCCEED"), "{err}");
    let (list, _) = ok(&inst.run(&["jobs", "list"]));
    assert!(
        list.contains("BUILD") && list.contains("ssb_cube") && list.contains("SUCCEED"),
        "{list}"
    );
    let (segs, _) = ok(&inst.run(&["segments", "--cube", "ssb_cube"]));
    assert!(
        segs.contains("19920101000000_19990101000000") && segs.contains("READY"),
        "{segs}"
    );

    let id = inst.engine().list().unwrap()[0].id.clone();
    let (show, _) = ok(&inst.run(&["jobs", "show", &id]));
    assert!(show.contains("\"status\": \"SUCCEED\""), "{show}");

    // Running it again is a no-op; building the same range again is refused.
    let (_, err) = ok(&inst.run(&["sample", "--scale", "0.01"]));
    assert!(err.contains("already built"), "{err}");
    fails_with(
        &inst.run(&[
            "build",
            "--cube",
            "ssb_cube",
            "--start",
            "1992-01-01",
            "--end",
            "1999-01-01",
        ]),
        "overlaps existing segment",
    );
    fails_with(&inst.run(&["jobs", "discard", &id]), "already SUCCEED");
}

#[test]
fn bad_input_gets_clear_errors() {
    let inst = Install::new();
    fails_with(&inst.run(&["jobs", "show", "../x"]), "invalid job id");
    fails_with(
        &inst.run(&["jobs", "show", "5f0c0b9e-0000-4000-8000-000000000000"]),
        "not found",
    );
    fails_with(
        &inst.run(&[
            "build",
            "--cube",
            "nope",
            "--start",
            "1992-01-01",
            "--end",
            "1993-01-01",
        ]),
        "cube nope not found",
    );
    fails_with(
        &inst.run(&[
            "build",
            "--cube",
            "../../etc",
            "--start",
            "1992-01-01",
            "--end",
            "1993-01-01",
        ]),
        "invalid cube name",
    );
    fails_with(
        &inst.run(&[
            "build",
            "--cube",
            "x",
            "--start",
            "1993-13-01",
            "--end",
            "1994-01-01",
        ]),
        "1993-13-01",
    );
    fails_with(&inst.run(&["sample", "--scale=0"]), "--scale");
    let out = Command::new(bin())
        .args(["--conf", "/nonexistent/kylin.properties", "jobs", "list"])
        .output()
        .unwrap();
    fails_with(&out, "/nonexistent/kylin.properties");
    let out = inst
        .cmd(&["jobs", "list"])
        .env("KYLIN_STORAGE_BLOCK_ROWS", "many")
        .output()
        .unwrap();
    fails_with(&out, "kylin.storage.block-rows");
}

#[test]
fn a_build_killed_midway_leaves_no_ready_segment_and_completes_on_rerun() {
    let inst = Install::new();
    let engine = inst.engine();
    let mut child = inst
        .cmd(&["sample", "--scale", "0.05"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Wait until the build is under way: the job RUNNING and some cuboid already stored.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "the build never got under way");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build finished before it could be killed"
        );
        let running = engine
            .list()
            .unwrap_or_default()
            .into_iter()
            .find(|j| j.status == JobStatus::Running);
        if let Some(job) = running {
            let seg = inst.segments_dir().join(&job.segment_id);
            let stored = dirs_in(&seg)
                .iter()
                .any(|c| seg.join(c).join("manifest.json").exists());
            if stored {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let (cube, _) = engine.metadata().cube_instance("ssb_cube").unwrap();
    assert_eq!(
        cube.ready_segments().count(),
        0,
        "a killed build must not leave a READY segment"
    );
    assert_eq!(cube.segments.len(), 1);
    assert_eq!(cube.segments[0].status, SegmentStatus::New);
    let (list, _) = ok(&inst.run(&["jobs", "list"]));
    assert!(list.contains("process gone"), "{list}");

    let (_, err) = ok(&inst.run(&["sample", "--scale", "0.05"]));
    assert!(err.contains("resuming job"), "{err}");
    let (cube, _) = engine.metadata().cube_instance("ssb_cube").unwrap();
    assert_eq!(cube.segments.len(), 1);
    let seg = &cube.segments[0];
    assert_eq!(seg.status, SegmentStatus::Ready);
    assert_eq!(
        dirs_in(&inst.segments_dir()),
        vec![seg.id.clone()],
        "no stray data"
    );
    let jobs = engine.list().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].status, JobStatus::Succeed);
    assert_eq!(jobs[0].attempts, 2);
    let layout = engine.metadata().cube_layout("ssb_cube", 4096).unwrap();
    assert_eq!(seg.cuboids.len(), layout.cuboids.len());
    for c in &layout.cuboids {
        qilin_engine::storage::block::read_cuboid(engine.segment_store().as_ref(), &seg.id, *c)
            .unwrap();
    }
}

#[test]
fn sample_tpch_writes_one_parquet_directory_per_table() {
    let inst = Install::new();
    let out = inst.dir.path().join("tpch");
    let dir = out.to_str().unwrap();
    let (listing, err) = ok(&inst.run(&[
        "sample",
        "--dataset",
        "tpch",
        "--scale",
        "0.001",
        "--dir",
        dir,
    ]));
    assert!(err.contains("wrote TPC-H at scale 0.001"), "{err}");
    assert!(
        listing.contains("region") && listing.contains("lineitem") && listing.contains(dir),
        "{listing}"
    );
    let tables = dirs_in(&out);
    assert_eq!(
        tables,
        vec!["customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"]
    );
    for t in &tables {
        assert_eq!(dirs_in(&out.join(t)), vec!["part-0.parquet"], "{t}");
    }
    // The directory now holds data: a second run refuses it and leaves it as it was.
    fails_with(
        &inst.run(&["sample", "--dataset", "tpch", "--dir", dir]),
        "not empty",
    );
    assert_eq!(dirs_in(&out), tables);
    fails_with(
        &inst.run(&["sample", "--dataset", "tpch"]),
        "--dataset tpch needs --dir",
    );
}
