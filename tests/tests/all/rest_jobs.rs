//! Jobs through Kylin's REST API (`/kylin/api/jobs`, `/kylin/api/cubes/{cube}/rebuild`,
//! `/qilin/api/system`) on a real server, and the progress a build reports: one overall
//! fraction that never goes backwards while cuboids build in parallel.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qilin_engine::build::spill::SpillOptions;
use qilin_engine::build::{build_segment, BuildOptions, Progress};
use qilin_engine::model::{SegmentRange, SegmentStatus};
use qilin_engine::sample::ssb;
use qilin_tests::cluster::free_port;
use qilin_tests::compare::{compare, oracle_query, run_query, Expect};
use qilin_tests::http::{Http, Reply};
use qilin_tests::server::{connect, ssb_properties, ServerProcess};
use qilin_tests::{shared_ssb_source, TestEnv};
use serde_json::{json, Value};

const SF: f64 = 0.01;

async fn source() -> std::path::PathBuf {
    shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), SF).await
}

/// Every fraction a build reports, unthrottled, with four cuboid threads and small blocks
/// (many "rows written" reports from workers that started early): the sequence never
/// decreases and ends at 1. Before the overall tracker, a worker reported the fraction of
/// cuboids done when it *started* while others had finished more since (41 % → 26 %), and
/// the table index restarted at 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_progress_never_decreases_with_parallel_cuboids() {
    let env = TestEnv::new(&source().await);
    env.install_sample(SF).await;
    let layout = Arc::new(env.meta().cube_layout(ssb::CUBE, 4096).unwrap());
    assert!(
        layout.cuboids.len() > 8,
        "enough cuboids to run in parallel"
    );
    assert!(layout.table_index.is_some());
    let seen: Arc<Mutex<Vec<(f64, String)>>> = Arc::default();
    let s = seen.clone();
    let progress: Progress = Arc::new(move |f, msg| {
        s.lock().unwrap().push((f, msg.to_string()));
        Ok(())
    });
    let opts = BuildOptions {
        source_url: env.config.stores.source_url.clone().into(),
        block_rows: 256,
        spill: SpillOptions {
            memory_bytes: 64 << 20,
            dir: env.dir.path().join("spill"),
        },
        threads: 4,
        cluster: None,
    };
    let out = build_segment(
        layout.clone(),
        &opts,
        env.engine.segment_store().clone(),
        "0badc0de-0000-4000-8000-000000000001",
        Some(SegmentRange::parse("1992-01-01", "1999-01-01").unwrap()),
        progress,
    )
    .await
    .unwrap();
    assert_eq!(out.cuboids.len(), layout.cuboids.len());
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() > layout.cuboids.len(), "{} reports", seen.len());
    for w in seen.windows(2) {
        assert!(
            w[1].0 >= w[0].0,
            "progress went back from {:.4} ({}) to {:.4} ({})",
            w[0].0,
            w[0].1,
            w[1].0,
            w[1].1
        );
    }
    assert_eq!(seen.last().map(|s| s.0), Some(1.0), "{:?}", seen.last());
    // It moves through the build, not only at the end.
    let mid = seen.iter().filter(|s| s.0 > 0.2 && s.0 < 0.9).count();
    assert!(mid > 5, "only {mid} reports between 20% and 90%");
}

/// The job's recorded progress (what `/kylin/api/jobs/{id}` shows) through a build and a
/// merge: never lower than before, the commit steps after the cuboids, 1 at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_progress_rises_through_build_and_merge_steps() {
    let env = TestEnv::with_properties(
        qilin_tests::Backend::Local,
        &source().await,
        "kylin.job.build-threads=4\n",
    );
    env.install_sample(SF).await;
    let seen: Arc<Mutex<Vec<(f64, usize)>>> = Arc::default();
    let s = seen.clone();
    let observer: qilin_jobs::Observer = Arc::new(move |j: &qilin_jobs::Job| {
        s.lock().unwrap().push((j.progress, j.current_step()));
    });
    let check = |what: &str| {
        let v = std::mem::take(&mut *seen.lock().unwrap());
        for w in v.windows(2) {
            assert!(w[1].0 >= w[0].0, "{what}: progress went back: {v:?}");
        }
        assert_eq!(v.first().map(|p| p.0), Some(0.0), "{what}: {v:?}");
        assert_eq!(v.last().map(|p| p.0), Some(1.0), "{what}: {v:?}");
        // The commit step starts at the first step's share.
        assert!(
            v.iter()
                .any(|&(p, step)| step == 1 && p >= qilin_jobs::job::FIRST_STEP_SHARE),
            "{what}: {v:?}"
        );
    };
    for range in ["1992-01-01..1995-01-01", "1995-01-01..1999-01-01"] {
        let (a, b) = range.split_once("..").unwrap();
        let sub = env
            .engine
            .submit_build(ssb::CUBE, Some(SegmentRange::parse(a, b).unwrap()))
            .unwrap();
        env.engine
            .run(&sub.job().id, observer.clone())
            .await
            .unwrap();
        check(range);
    }
    let merge = env
        .engine
        .submit_merge(
            ssb::CUBE,
            SegmentRange::parse("1992-01-01", "1999-01-01").unwrap(),
        )
        .unwrap();
    let done = env.engine.run(&merge.id, observer.clone()).await.unwrap();
    assert_eq!(done.progress, 1.0);
    check("merge");
}

/// How long a build of one year of SSB SF 0.01 may take through the daemon (it polls every
/// 500 ms; builds take seconds).
const JOB_DEADLINE: Duration = Duration::from_secs(180);

/// The sample cube built over 1992–1997 in a fresh store (the REST tests then build 1998,
/// which SSB's dates cover up to 1998-08-02).
async fn installed(source: &Path) -> TestEnv {
    let env = TestEnv::new(source);
    env.install_sample(SF).await;
    env.build("1992-01-01..1998-01-01").await.unwrap();
    env
}

/// Milliseconds since the epoch of a day's midnight (UTC), as Kylin's clients send.
fn ms(day: &str) -> i64 {
    SegmentRange::parse(day, "9999-01-01")
        .unwrap()
        .start
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

/// `kylin.properties` for a node over `env`'s store with `source` and HTTP on a free port.
fn node_properties(env: &TestEnv, source: &Path, mode: &str) -> String {
    ssb_properties(
        env.dir.path(),
        source,
        &format!(
            "kylin.storage.block-rows=1000\nkylin.server.mode={mode}\nkylin.server.http-port={}\n",
            free_port()
        ),
    )
}

async fn start_server(props: String) -> ServerProcess {
    let exe = qilin_tests::server_exe();
    tokio::task::spawn_blocking(move || ServerProcess::start(&exe, &props))
        .await
        .unwrap()
}

async fn start_job_daemon(props: String) -> ServerProcess {
    tokio::task::spawn_blocking(move || ServerProcess::job_daemon("qilin-jobs", &props))
        .await
        .unwrap()
}

fn http(p: &ServerProcess) -> Http {
    let addr = p
        .http_addr()
        .unwrap_or_else(|| panic!("no HTTP server; output:\n{}", p.output()));
    Http::basic(&addr, "ADMIN", "KYLIN")
}

/// Runs a blocking HTTP exchange off the async runtime.
async fn call(h: &Http, method: &'static str, path: &str, body: Option<Value>) -> Reply {
    let (h, path) = (h.clone(), path.to_string());
    tokio::task::spawn_blocking(move || match (method, body) {
        ("GET", _) => h.get(&path),
        ("PUT", Some(b)) => h.put_json(&path, &b),
        (m, b) => h.request(m, &path, b.map(|b| b.to_string().into_bytes()).as_deref()),
    })
    .await
    .unwrap()
}

fn rebuild_body(start: &str, end: &str, kind: &str) -> Value {
    json!({"startTime": ms(start), "endTime": ms(end), "buildType": kind})
}

/// Polls `GET /kylin/api/jobs/{id}` until its status is `until` (failing on another final
/// status or after the deadline); returns every progress value seen, in order, and the last
/// JobInstance.
async fn follow(h: &Http, id: &str, until: &str) -> (Vec<f64>, Value) {
    let deadline = Instant::now() + JOB_DEADLINE;
    let mut seen = Vec::new();
    loop {
        let job = call(h, "GET", &format!("/kylin/api/jobs/{id}"), None)
            .await
            .expect(200);
        seen.push(job["progress"].as_f64().expect("numeric progress"));
        let status = job["job_status"].as_str().unwrap().to_string();
        if status == until {
            return (seen, job);
        }
        assert!(
            !["FINISHED", "ERROR", "DISCARDED"].contains(&status.as_str()),
            "job {id} ended {status}, expected {until}: {job:#}"
        );
        assert!(
            Instant::now() < deadline,
            "job {id} not {until} after {JOB_DEADLINE:?}: {job:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_rising_to_100(seen: &[f64]) {
    for w in seen.windows(2) {
        assert!(w[1] >= w[0], "progress went back: {seen:?}");
    }
    assert_eq!(seen.last().copied(), Some(100.0), "{seen:?}");
}

/// Revenue per year and region over 1997 (old segment) and 1998 (the REST-built one).
const NEW_RANGE_SQL: &str = "select d_year, c_region, sum(lo_revenue) as revenue, count(*) as n \
     from dates, customer, lineorder where lo_custkey = c_custkey and lo_orderdate = d_datekey \
     and d_year >= 1997 group by d_year, c_region order by d_year, c_region";

/// Queries `server` over Flight SQL until the answer equals the oracle's (a query node
/// picks up a new segment when it notices the metadata changed).
async fn answers_like_oracle(server: &ServerProcess, source: &Path) {
    let oracle = qilin_tests::oracle(source).await;
    let want = oracle_query(&oracle, NEW_RANGE_SQL).await;
    let years: usize = want.iter().map(|b| b.num_rows()).sum();
    assert!(years >= 10, "the oracle has 1997 and 1998 rows: {years}");
    let mut client = connect(&server.addr, "ADMIN", "KYLIN").await;
    let expect = Expect {
        ordered: true,
        approx: vec![],
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = run_query(&mut client, NEW_RANGE_SQL).await.unwrap();
        match compare(&got, &want, &expect) {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("query over the new range: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// On a `qilin-server` in mode `all`: a REST rebuild of 1998 runs to FINISHED with progress
/// rising to 100, the segment is READY in the cube, and queries over it equal the oracle;
/// overlapping (409), malformed (400), unknown (404) and unauthenticated (401) requests are
/// refused with Kylin's error JSON; the job list filters and pages; the system page names
/// the lease holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_over_rest_finishes_and_bad_requests_are_refused() {
    let source = source().await;
    let env = installed(&source).await;
    let server = start_server(node_properties(&env, &source, "all")).await;
    let h = http(&server);

    let job = call(
        &h,
        "PUT",
        &format!("/kylin/api/cubes/{}/rebuild", ssb::CUBE),
        Some(rebuild_body("1998-01-01", "1999-01-01", "BUILD")),
    )
    .await
    .expect(200);
    let id = job["uuid"].as_str().unwrap().to_string();
    assert_eq!(job["type"], "BUILD");
    assert_eq!(job["related_cube"], ssb::CUBE);
    assert_eq!(job["submitter"], "ADMIN");
    assert!(
        ["PENDING", "RUNNING"].contains(&job["job_status"].as_str().unwrap()),
        "{job:#}"
    );
    for key in [
        "name",
        "related_segment",
        "exec_start_time",
        "exec_end_time",
        "duration",
        "last_modified",
        "message",
        "error",
        "resumable",
        "steps",
    ] {
        assert!(job.get(key).is_some(), "JobInstance lacks {key}: {job:#}");
    }

    // The same range again, or one overlapping it, while it builds or after: 409.
    let overlap = call(
        &h,
        "PUT",
        &format!("/kylin/api/cubes/{}/rebuild", ssb::CUBE),
        Some(rebuild_body("1997-06-01", "1998-06-01", "BUILD")),
    )
    .await;
    let err = overlap.expect(409);
    assert!(err["msg"].as_str().unwrap().contains("overlaps"), "{err:#}");
    assert_eq!(err["exception"], err["msg"]);
    // Kylin's older path (kylinpy's `build()`) is the same call.
    let overlap = call(
        &h,
        "PUT",
        &format!("/kylin/api/cubes/{}/build", ssb::CUBE),
        Some(rebuild_body("1997-06-01", "1998-06-01", "BUILD")),
    )
    .await;
    let err = overlap.expect(409);
    assert!(err["msg"].as_str().unwrap().contains("overlaps"), "{err:#}");

    let (seen, done) = follow(&h, &id, "FINISHED").await;
    assert_rising_to_100(&seen);
    assert_eq!(done["resumable"], false);
    assert!(done["exec_end_time"].as_i64().unwrap() >= done["exec_start_time"].as_i64().unwrap());
    let steps = done["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{done:#}");
    assert!(
        steps.iter().all(|s| s["step_status"] == "FINISHED"),
        "{done:#}"
    );

    // The segment as the store has it, and as the cube page shows it.
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    let seg = inst
        .segments
        .iter()
        .find(|s| s.range == Some(SegmentRange::parse("1998-01-01", "1999-01-01").unwrap()))
        .expect("the 1998 segment");
    assert_eq!(seg.status, SegmentStatus::Ready);
    assert_eq!(done["related_segment"], seg.id.as_str());
    let cube = call(&h, "GET", &format!("/kylin/api/cubes/{}", ssb::CUBE), None)
        .await
        .expect(200);
    let shown = cube["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["date_range_start"] == ms("1998-01-01"))
        .unwrap_or_else(|| panic!("no 1998 segment in {cube:#}"));
    assert_eq!(shown["status"], "READY", "{cube:#}");
    assert_eq!(shown["date_range_end"], ms("1999-01-01"));
    answers_like_oracle(&server, &source).await;

    // REFRESH needs a segment with exactly that range; MERGE needs two adjacent READY ones.
    let missing = call(
        &h,
        "PUT",
        &format!("/kylin/api/cubes/{}/rebuild", ssb::CUBE),
        Some(rebuild_body("1998-01-01", "1998-07-01", "REFRESH")),
    )
    .await;
    assert!(missing.expect(404)["msg"]
        .as_str()
        .unwrap()
        .contains("REFRESH"));

    // Malformed bodies and ranges: 400 naming the problem.
    for (body, says) in [
        (
            json!({"startTime": "soon", "endTime": 1, "buildType": "BUILD"}),
            "startTime",
        ),
        (
            json!({"endTime": ms("1999-01-01"), "buildType": "BUILD"}),
            "startTime",
        ),
        (
            json!({"startTime": 0, "endTime": 1, "buildType": "REBUILD"}),
            "buildType",
        ),
        (rebuild_body("1999-01-01", "1999-01-01", "BUILD"), "before"),
        (
            json!({"startTime": ms("1999-01-01") + 1, "endTime": ms("2000-01-01")}),
            "midnight",
        ),
    ] {
        let r = call(
            &h,
            "PUT",
            &format!("/kylin/api/cubes/{}/rebuild", ssb::CUBE),
            Some(body.clone()),
        )
        .await;
        let err = r.expect(400);
        assert!(
            err["msg"].as_str().unwrap().contains(says),
            "{body}: {err:#}"
        );
    }
    let raw = call(
        &h,
        "PUT",
        &format!("/kylin/api/cubes/{}/rebuild", ssb::CUBE),
        None,
    )
    .await;
    assert_eq!(raw.status, 400, "{}", raw.text());

    // Unknown cube and job: 404.
    call(
        &h,
        "PUT",
        "/kylin/api/cubes/no_such_cube/rebuild",
        Some(rebuild_body("1998-01-01", "1999-01-01", "BUILD")),
    )
    .await
    .expect(404);
    for path in [
        "/kylin/api/jobs/00000000-0000-4000-8000-000000000000".to_string(),
        "/kylin/api/jobs/not-a-job".to_string(),
    ] {
        call(&h, "GET", &path, None).await.expect(404);
    }
    call(
        &h,
        "PUT",
        "/kylin/api/jobs/00000000-0000-4000-8000-000000000000/resume",
        Some(json!({})),
    )
    .await
    .expect(404);
    // A finished job cannot be resumed or discarded.
    for action in ["resume", "cancel"] {
        call(
            &h,
            "PUT",
            &format!("/kylin/api/jobs/{id}/{action}"),
            Some(json!({})),
        )
        .await
        .expect(409);
    }

    // Wrong or missing credentials: 401.
    let addr = h.addr.clone();
    for client in [Http::basic(&addr, "ADMIN", "wrong"), Http::new(&addr)] {
        for (method, path) in [
            ("GET", "/kylin/api/jobs".to_string()),
            ("GET", format!("/kylin/api/jobs/{id}")),
            ("GET", "/qilin/api/system".to_string()),
        ] {
            let r = call(&client, method, &path, None).await;
            assert_eq!(r.status, 401, "{path}: {}", r.text());
        }
        let r = call(
            &client,
            "PUT",
            &format!("/kylin/api/cubes/{}/rebuild", ssb::CUBE),
            Some(rebuild_body("1999-01-01", "2000-01-01", "BUILD")),
        )
        .await;
        assert_eq!(r.status, 401, "{}", r.text());
    }

    // The list: newest first, filtered, paged.
    let all = call(&h, "GET", "/kylin/api/jobs", None).await.expect(200);
    let all = all.as_array().unwrap();
    assert_eq!(
        all.len(),
        2,
        "the installation's build and the REST one: {all:#?}"
    );
    assert_eq!(all[0]["uuid"], id.as_str(), "newest first");
    let created: Vec<i64> = all
        .iter()
        .map(|j| j["last_modified"].as_i64().unwrap())
        .collect();
    assert!(created.iter().all(|&t| t > 0));
    for (query, want) in [
        (
            format!("projectName={}&cubeName={}", ssb::PROJECT, ssb::CUBE),
            2,
        ),
        ("projectName=no_such_project".to_string(), 0),
        ("cubeName=other".to_string(), 0),
        ("status=FINISHED".to_string(), 2),
        ("status=ERROR,PENDING".to_string(), 0),
        ("status=4".to_string(), 2),
        ("limit=1".to_string(), 1),
        ("limit=1&offset=1".to_string(), 1),
        ("offset=2".to_string(), 0),
    ] {
        let got = call(&h, "GET", &format!("/kylin/api/jobs?{query}"), None)
            .await
            .expect(200);
        assert_eq!(got.as_array().unwrap().len(), want, "{query}: {got:#}");
    }
    let second = call(&h, "GET", "/kylin/api/jobs?limit=1&offset=1", None)
        .await
        .expect(200);
    assert_eq!(second[0]["uuid"], all[1]["uuid"]);
    call(&h, "GET", "/kylin/api/jobs?status=LOST", None)
        .await
        .expect(400);
    call(&h, "GET", "/kylin/api/jobs?limit=-1", None)
        .await
        .expect(400);

    let system = call(&h, "GET", "/qilin/api/system", None).await.expect(200);
    assert_eq!(system["mode"], "all", "{system:#}");
    assert!(system["version"].as_str().is_some_and(|v| !v.is_empty()));
    assert!(system["metadata_version"].as_u64().unwrap() > 0);
    let holder = system["lease"]["holder"].as_str().unwrap();
    assert!(
        holder.ends_with(&format!(":{}", server.pid().unwrap())),
        "this server runs the jobs: {system:#}"
    );
    assert!(system["lease"]["expires_ms"].as_i64().unwrap() > 0);
}

/// Through a query node (mode `query`, no job daemon in it) and a separate job node: a job
/// submitted while no daemon runs stays PENDING and is discarded (its NEW segment removed);
/// a build that fails (its fact table file gone) is ERROR with the reason; once the file is
/// back, resuming it through the query node hands it to the job node, which finishes it
/// (progress restarts from 0 and rises to 100); the job node serves the jobs and the system
/// page itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_and_resume_from_a_query_node_are_run_by_the_job_node() {
    // A private copy of the source: the test hides the fact table for a while.
    let shared = source().await;
    let private = tempfile::tempdir().unwrap();
    let dir = private.path().join(ssb::SOURCE_DIR);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(shared.join(ssb::SOURCE_DIR)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let source: PathBuf = private.path().to_path_buf();
    let env = installed(&source).await;
    let query = start_server(node_properties(&env, &source, "query")).await;
    let q = http(&query);
    let rebuild = format!("/kylin/api/cubes/{}/rebuild", ssb::CUBE);

    // No job daemon yet: the job waits, and is discarded.
    let pending = call(
        &q,
        "PUT",
        &rebuild,
        Some(rebuild_body("1998-01-01", "1999-01-01", "BUILD")),
    )
    .await
    .expect(200);
    assert_eq!(pending["job_status"], "PENDING", "{pending:#}");
    let pid = pending["uuid"].as_str().unwrap().to_string();
    let seg = pending["related_segment"].as_str().unwrap().to_string();
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    assert!(inst
        .segments
        .iter()
        .any(|s| s.id == seg && s.status == SegmentStatus::New));
    let discarded = call(
        &q,
        "PUT",
        &format!("/kylin/api/jobs/{pid}/cancel"),
        Some(json!({})),
    )
    .await
    .expect(200);
    assert_eq!(discarded["job_status"], "DISCARDED", "{discarded:#}");
    assert_eq!(discarded["resumable"], false);
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).unwrap();
    assert!(
        !inst.segments.iter().any(|s| s.id == seg),
        "the NEW segment is removed"
    );
    call(
        &q,
        "PUT",
        &format!("/kylin/api/jobs/{pid}/cancel"),
        Some(json!({})),
    )
    .await
    .expect(409);

    // With the fact table gone, the job node's build fails.
    let fact = dir.join("lineorder.parquet");
    let hidden = dir.join("lineorder.parquet.hidden");
    std::fs::rename(&fact, &hidden).unwrap();
    let failing = call(
        &q,
        "PUT",
        &rebuild,
        Some(rebuild_body("1998-01-01", "1999-01-01", "BUILD")),
    )
    .await
    .expect(200);
    let fid = failing["uuid"].as_str().unwrap().to_string();
    let job_node = start_job_daemon(node_properties(&env, &source, "job")).await;
    let j = http(&job_node);
    let (_, failed) = follow(&q, &fid, "ERROR").await;
    assert!(
        failed["error"].as_str().unwrap().contains("lineorder"),
        "{failed:#}"
    );
    assert_eq!(failed["resumable"], true);
    assert!(failed["steps"][0]["step_status"] == "ERROR", "{failed:#}");

    // The job node serves the job API and the system page itself.
    let listed = call(&j, "GET", "/kylin/api/jobs?status=ERROR", None)
        .await
        .expect(200);
    assert_eq!(listed[0]["uuid"], fid.as_str(), "{listed:#}");
    let system = call(&j, "GET", "/qilin/api/system", None).await.expect(200);
    assert_eq!(system["mode"], "job", "{system:#}");
    assert!(
        system["lease"]["holder"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{}", job_node.pid().unwrap())),
        "{system:#}"
    );
    let on_query_node = call(&q, "GET", "/qilin/api/system", None).await.expect(200);
    assert_eq!(on_query_node["mode"], "query");
    assert_eq!(on_query_node["lease"]["holder"], system["lease"]["holder"]);

    // File back; resumed through the query node, the job node runs it from the start.
    std::fs::rename(&hidden, &fact).unwrap();
    let resumed = call(
        &q,
        "PUT",
        &format!("/kylin/api/jobs/{fid}/resume"),
        Some(json!({})),
    )
    .await
    .expect(200);
    assert!(
        ["PENDING", "RUNNING", "FINISHED"].contains(&resumed["job_status"].as_str().unwrap()),
        "{resumed:#}"
    );
    assert_eq!(resumed["error"], Value::Null);
    let (seen, done) = follow(&j, &fid, "FINISHED").await;
    assert_rising_to_100(&seen);
    assert_eq!(done["attempts"], 2, "{done:#}");
    answers_like_oracle(&query, &source).await;
}
