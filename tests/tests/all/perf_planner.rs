//! The cube planner end to end: history records of a dimension set that crosses aggregation
//! groups (d_weeknuminyear with c_city, which only the base cuboid covers), `qilin-jobs cube
//! optimize` proposing that cuboid, and `--apply` building it into the READY segment from
//! its base cuboid — with the source moved away, so a reread would fail — after which the
//! query reads the new cuboid (fewer rows) and still equals the oracle.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use datafusion::arrow::array::AsArray;
use qilin_engine::metadata::managers::Metadata;
use qilin_engine::model::cuboid;
use qilin_engine::planner::history_folder;
use qilin_engine::query::QueryEngine;
use qilin_engine::sample::ssb;
use qilin_tests::compare::{compare, oracle_query, Expect};
use qilin_tests::{oracle, shared_ssb_source, TestEnv};

const SF: f64 = 0.01;

const SQL: &str = "select d_weeknuminyear, c_city, sum(lo_revenue) as revenue, count(*) as n \
    from lineorder, dates, customer \
    where lo_orderdate = d_datekey and lo_custkey = c_custkey \
    group by d_weeknuminyear, c_city";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn jobs(conf: &Path, args: &[&str]) -> Output {
    Command::new(qilin_tests::workspace_exe("qilin-jobs"))
        .arg("--conf")
        .arg(conf)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{what} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The cuboid EXPLAIN names for `sql`, and its rows.
async fn explained(query: &QueryEngine, sql: &str) -> (u64, u64) {
    let explain = query
        .execute(&format!("EXPLAIN {sql}"), None)
        .await
        .unwrap();
    explain.batches[0]
        .column(1)
        .as_string::<i32>()
        .iter()
        .flatten()
        .find_map(|t| {
            let rest = t.strip_prefix("cuboid ")?;
            let id = rest.split(' ').next()?.parse().ok()?;
            let rows = rest
                .rsplit(" with ")
                .next()?
                .strip_suffix(" rows")?
                .parse()
                .ok()?;
            Some((id, rows))
        })
        .expect("a cuboid row in EXPLAIN")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimize_proposes_and_builds_a_cross_group_cuboid_from_the_base_cuboid() {
    let shared = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), SF).await;
    // A private copy of the source: it is moved away before --apply.
    let tmp = tempfile::tempdir().unwrap();
    let source: PathBuf = tmp.path().join("source");
    copy_dir(&shared, &source);
    let env = TestEnv::new(&source);
    env.install_sample(SF).await;
    env.build("1992-01-01..1999-01-01").await.expect("build");
    let conf = env.dir.path().join("kylin.properties");
    std::fs::write(
        &conf,
        format!(
            "kylin.metadata.url={}\nkylin.storage.url={}\nkylin.source.url={}\nkylin.storage.block-rows=1000\n",
            env.config.stores.metadata_url,
            env.config.stores.storage_url,
            env.config.stores.source_url
        ),
    )
    .unwrap();

    let layout = env
        .meta()
        .cube_layout(ssb::CUBE, env.config.cube.max_cuboids_per_group)
        .unwrap();
    let n = layout.rowkey.len();
    let bit = |d: &str| cuboid::bit(n, layout.rowkey.iter().position(|r| r.name == d).unwrap());
    let wanted = bit("d_weeknuminyear") | bit("c_city");
    assert!(
        !layout.cuboids.contains(&wanted),
        "the set must cross aggregation groups"
    );
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    let seg = inst.ready_segments().next().unwrap().clone();
    assert!(!seg.cuboids.iter().any(|c| c.id == wanted));

    let query = || {
        QueryEngine::new(
            &env.config,
            Metadata::new(env.meta().store().clone()),
            env.engine.segment_store().clone(),
        )
    };
    let (before, before_rows) = explained(&query(), SQL).await;
    assert_ne!(before, wanted);

    // History: eight queries of the cross-group set, two of d_year alone.
    let year = bit("d_year");
    let mut lines = String::new();
    for i in 0..10 {
        let (w, names, chosen) = if i < 8 {
            (wanted, vec!["d_weeknuminyear", "c_city"], before)
        } else {
            (year, vec!["d_year"], year)
        };
        lines.push_str(&format!(
            "{}\n",
            serde_json::json!({
                "time": "2026-12-03T01:00:00Z", "project": "ssb", "cube": ssb::CUBE,
                "wanted": w, "wanted_dimensions": names, "chosen": chosen,
                "chosen_rows": before_rows, "millis": 25.0
            })
        ));
    }
    lines.push_str("{\"torn\": \n");
    let folder = history_folder(ssb::PROJECT, ssb::CUBE);
    env.meta()
        .store()
        .put(&format!("{folder}/test.jsonl"), lines.as_bytes())
        .unwrap();

    // Without --apply: the proposal, nothing changed.
    let text = ok(
        &jobs(&conf, &["cube", "optimize", "--cube", ssb::CUBE]),
        "optimize",
    );
    let add = text.split("DROP").next().unwrap();
    assert!(
        add.lines()
            .any(|l| l.starts_with("d_weeknuminyear,c_city ")),
        "the proposal names the wanted set:\n{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(
        &jobs(&conf, &["cube", "optimize", "--cube", ssb::CUBE, "--json"]),
        "optimize --json",
    ))
    .unwrap();
    assert_eq!(json["records"], 10, "{json}");
    let first = &json["add"][0];
    assert_eq!(first["cuboid"], wanted, "{json}");
    assert_eq!(first["queries"], 8, "{json}");
    let est_rows = first["est_rows"].as_u64().unwrap();
    assert!(est_rows > 0 && est_rows < before_rows, "{json}");
    assert!(!json["drop"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["cuboid"] == layout.base_cuboid() || d["cuboid"] == year));
    assert!(env
        .meta()
        .cube_desc(ssb::CUBE)
        .unwrap()
        .mandatory_dimension_set_list
        .is_empty());
    // A budget too small for it: nothing proposed.
    let json: serde_json::Value = serde_json::from_str(&ok(
        &jobs(
            &conf,
            &[
                "cube",
                "optimize",
                "--cube",
                ssb::CUBE,
                "--json",
                "--budget-bytes",
                "10",
            ],
        ),
        "optimize --budget-bytes 10",
    ))
    .unwrap();
    assert_eq!(json["add"].as_array().unwrap().len(), 0, "{json}");

    // --apply with the source moved away: the new cuboid comes from the stored base cuboid.
    let moved = tmp.path().join("source.moved");
    std::fs::rename(&source, &moved).unwrap();
    let started = std::time::Instant::now();
    let out = jobs(&conf, &["cube", "optimize", "--cube", ssb::CUBE, "--apply"]);
    let apply_secs = started.elapsed().as_secs_f64();
    let text = ok(&out, "optimize --apply");
    let job = text
        .lines()
        .find_map(|l| l.strip_prefix("job "))
        .unwrap_or_else(|| panic!("a job id:\n{text}"))
        .trim()
        .to_string();
    let listed = ok(&jobs(&conf, &["jobs", "list"]), "jobs list");
    let row = listed
        .lines()
        .find(|l| l.starts_with(&job))
        .unwrap_or_else(|| panic!("job {job} listed:\n{listed}"));
    assert!(row.contains("OPTIMIZE") && row.contains("SUCCEED"), "{row}");
    std::fs::rename(&moved, &source).unwrap();

    let desc = env.meta().cube_desc(ssb::CUBE).unwrap();
    assert_eq!(desc.mandatory_dimension_set_list.len(), 1);
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    let after = inst.segment(&seg.id).expect("the same segment");
    let stats = after
        .cuboids
        .iter()
        .find(|c| c.id == wanted)
        .expect("the segment lists the new cuboid");
    assert_eq!(stats.rows, est_rows, "the estimate is exact at this size");
    assert_eq!(after.size_bytes, seg.size_bytes + stats.bytes);
    assert_eq!(
        after.descriptor_signature, seg.descriptor_signature,
        "the segment stays valid"
    );

    // The query now reads the new cuboid, fewer rows, same answer as the raw tables.
    let q = query();
    let (now, now_rows) = explained(&q, SQL).await;
    assert_eq!(now, wanted);
    assert!(now_rows < before_rows, "{now_rows} < {before_rows}");
    eprintln!(
        "perf_planner (SF {SF}): cuboid {wanted} {} rows, {} bytes (segment {} -> {} bytes), \
         built by --apply in {apply_secs:.2}s; the query read {before_rows} rows of cuboid \
         {before} before, {now_rows} after",
        stats.rows, stats.bytes, seg.size_bytes, after.size_bytes
    );
    let got = q.execute(SQL, None).await.unwrap().batches;
    let want = oracle_query(&oracle(&shared).await, SQL).await;
    compare(&got, &want, &Expect::default()).unwrap();

    // Applying again: nothing new to add or build.
    let out = jobs(&conf, &["cube", "optimize", "--cube", ssb::CUBE, "--apply"]);
    ok(&out, "second --apply");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing to build"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
