//! The web console in a real browser: `tests/python/console.py` drives headless Chromium
//! (Selenium with the system `chromedriver`) against a `qilin-server` in mode `all` whose
//! SSB SF 0.01 cube holds one READY segment, 1992-01-01..1995-01-01. In the page it signs
//! in, opens the project, the model diagram and the cube, builds the new range
//! 1995-01-01..1999-01-01 with "Build a range" and watches the job reach 100 %, then runs
//! SSB Q2.1 in Insight (result rows, EXPLAIN with the cuboid, a chart, CSV, history) and a query
//! crossing aggregation groups (the fallback warning and EXPLAIN row). This
//! side compares the rows the page shows with the oracle (the query then spans both
//! segments) and checks the metadata store for the second READY segment. As the global admin
//! it then adds user `viewer` with QUERY in the project and a row filter on the Access page,
//! reads the Audit page, and signs in as `viewer`: the admin links are hidden, the audit page
//! refused, and its query by region equals the oracle with the filter added.
//!
//! Screenshots of every page go to `$CARGO_TARGET_DIR/test-output/console/` (printed).
//! Skipped, with a message, only when Chromium or chromedriver is absent and
//! `QILIN_REQUIRE_BROWSER` is unset (CI sets it).

use std::path::{Path, PathBuf};
use std::process::Command;

use qilin_engine::model::{SegmentRange, SegmentStatus};
use qilin_engine::sample::ssb;
use qilin_tests::compare::oracle_query;
use qilin_tests::corpus::ssb_queries;
use qilin_tests::server::{shared_ssb_source_dir, ServerProcess, SCALE};
use qilin_tests::TestEnv;
use serde_json::{json, Value};

/// The row filter the browser gives user `viewer`, and the query it then runs as viewer.
const ROW_FILTER: &str = "c_region = 'ASIA'";
const REGION_SQL: &str = "select c_region, count(*) as customers from customer \
                          group by c_region order by c_region";

/// The segment the cube starts with, and the range the browser builds.
/// Dimensions of two aggregation groups: only the base cuboid has both (a fallback).
const FALLBACK_SQL: &str = "SELECT d_weeknuminyear, c_city, SUM(lo_revenue) FROM lineorder \
     JOIN dates ON lo_orderdate = d_datekey JOIN customer ON lo_custkey = c_custkey \
     GROUP BY d_weeknuminyear, c_city";
const READY: (&str, &str) = ("1992-01-01", "1995-01-01");
const NEW: (&str, &str) = ("1995-01-01", "1999-01-01");

fn executable(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

/// Where screenshots go: `$CARGO_TARGET_DIR/test-output/console` (the target dir found from
/// the test executable when the variable is unset).
fn output_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let tmp = qilin_tests::server::target_tmp_dir();
            tmp.parent().map(Path::to_path_buf).unwrap_or(tmp)
        });
    target.join("test-output").join("console")
}

/// Midnight UTC of `day` in ms since the epoch (what the REST API and the console use).
fn day_ms(day: &str) -> i64 {
    let range = SegmentRange::parse(day, "9999-12-31").expect("a day");
    range
        .start
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

/// Two cells agree: equal text, or equal numbers (the page shows what the REST API sent).
fn same_cell(page: &str, oracle: &str) -> bool {
    page == oracle
        || matches!((page.parse::<f64>(), oracle.parse::<f64>()),
            (Ok(a), Ok(b)) if (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_signs_in_builds_a_range_and_charts_q21_in_headless_chromium() {
    let chromium = executable("QILIN_CHROMIUM", "/usr/bin/chromium");
    let chromedriver = executable("QILIN_CHROMEDRIVER", "/usr/bin/chromedriver");
    if !chromium.exists() || !chromedriver.exists() {
        let what = format!(
            "{} or {} is missing (Debian packages chromium and chromium-driver)",
            chromium.display(),
            chromedriver.display()
        );
        if std::env::var_os("QILIN_REQUIRE_BROWSER").is_some() {
            panic!("QILIN_REQUIRE_BROWSER is set but {what}");
        }
        eprintln!(
            "SKIPPED console browser test: {what}; set QILIN_REQUIRE_BROWSER=1 to fail instead"
        );
        return;
    }

    // A private installation: the browser adds a segment, so the shared store is no use.
    let source = shared_ssb_source_dir(SCALE).await;
    let env = TestEnv::new(&source);
    env.install_sample(SCALE).await;
    env.build(&format!("{}..{}", READY.0, READY.1))
        .await
        .expect("build the first range");
    let (name, q21) = ssb_queries().into_iter().nth(3).expect("Q2.1");
    assert_eq!(name, "Q2.1");
    let ctx = qilin_tests::oracle(&source).await;
    let want = oracle_query(&ctx, &q21).await;
    let want: Vec<Vec<String>> = want
        .iter()
        .flat_map(|b| {
            (0..b.num_rows()).map(move |r| {
                b.columns()
                    .iter()
                    .map(|c| qilin_tests::cell(c.as_ref(), r))
                    .collect()
            })
        })
        .collect();
    assert!(want.len() > 10, "Q2.1 oracle: {} rows", want.len());

    let http_port = qilin_tests::cluster::free_port();
    let props = format!(
        "kylin.metadata.url={}\nkylin.storage.url={}\nkylin.source.url={}\n\
         kylin.storage.block-rows=1000\nkylin.sample.auto-create=false\n\
         kylin.server.mode=all\nkylin.server.http-port={http_port}\n",
        env.config.stores.metadata_url,
        env.config.stores.storage_url,
        source.display()
    );
    let exe = qilin_tests::server_exe();
    let server = tokio::task::spawn_blocking(move || ServerProcess::start(&exe, &props))
        .await
        .expect("start qilin-server");
    // Printed before the "listening" line the launcher waited for.
    let http_addr = server
        .http_addr()
        .unwrap_or_else(|| panic!("no HTTP readiness line:\n{}", server.output()));
    let page = qilin_tests::http::Http::new(&http_addr).get("/");
    assert_eq!(page.status, 200, "GET / on {http_addr}: {}", page.text());
    let url = format!("http://{http_addr}/");

    let out = output_dir();
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("create the screenshot dir");
    println!("console screenshots: {}", out.display());
    let config = json!({
        "url": url,
        "user": "ADMIN",
        "password": "KYLIN",
        "out": out,
        "project": ssb::PROJECT,
        "model": ssb::MODEL,
        "cube": ssb::CUBE,
        "ready": [day_ms(READY.0), day_ms(READY.1)],
        "build": [NEW.0, NEW.1],
        "sql": q21,
        "fallback_sql": FALLBACK_SQL,
        "rows": want.len(),
        "row_filter": ROW_FILTER,
        "region_sql": REGION_SQL,
        "chromium": chromium,
        "chromedriver": chromedriver,
    });
    let config_file = out.join("config.json");
    std::fs::write(&config_file, config.to_string()).expect("write config.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/console.py");
    let python = qilin_tests::python();
    let mut cmd = Command::new(&python);
    cmd.arg(&script).arg(&config_file);
    let run = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    println!("{stdout}");
    assert_ne!(
        run.status.code(),
        Some(3),
        "selenium is missing ({}): ./scripts/test installs tests/requirements.txt\n{stderr}",
        qilin_tests::python()
    );
    assert!(
        run.status.success(),
        "the console browser test failed ({}); screenshots in {}:\n{stderr}\n--- server output ---\n{}",
        run.status,
        out.display(),
        server.output()
    );

    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("report.json")).expect("report.json"),
    )
    .expect("report.json is JSON");
    let columns: Vec<String> = serde_json::from_value(report["columns"].clone()).unwrap();
    assert_eq!(
        columns.iter().map(|c| c.to_lowercase()).collect::<Vec<_>>(),
        ["lo_revenue", "d_year", "p_brand"],
        "Q2.1 columns in the page"
    );
    let rows: Vec<Vec<String>> = serde_json::from_value(report["rows"].clone()).unwrap();
    assert_eq!(rows.len(), want.len(), "Q2.1 rows in the page");
    // Q2.1 orders by (d_year, p_brand): row for row.
    for (i, (got, exp)) in rows.iter().zip(&want).enumerate() {
        assert!(
            got.len() == exp.len() && got.iter().zip(exp).all(|(g, e)| same_cell(g, e)),
            "Q2.1 row {i}: the page shows {got:?}, the oracle {exp:?}"
        );
    }
    let explain = &report["explain"];
    assert!(
        explain["cuboid"]
            .as_str()
            .unwrap_or("")
            .starts_with("cuboid "),
        "EXPLAIN in the page: {explain}"
    );
    let fallback = report["fallback"].as_str().unwrap_or("");
    assert!(
        fallback.contains("c_city"),
        "fallback warning: {fallback:?}"
    );
    let shots = report["screenshots"].as_array().expect("screenshots");
    assert!(shots.len() >= 10, "screenshots: {shots:?}");
    for s in shots {
        let p = Path::new(s.as_str().unwrap());
        let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "{} is not a PNG",
            p.display()
        );
    }

    // viewer's query by region: the oracle's answer with the filter added.
    let viewer_rows: Vec<Vec<String>> =
        serde_json::from_value(report["viewer_rows"].clone()).unwrap();
    let filtered = REGION_SQL.replace(" group by", &format!(" where {ROW_FILTER} group by"));
    let want_viewer: Vec<Vec<String>> = oracle_query(&ctx, &filtered)
        .await
        .iter()
        .flat_map(|b| {
            (0..b.num_rows()).map(move |r| {
                b.columns()
                    .iter()
                    .map(|c| qilin_tests::cell(c.as_ref(), r))
                    .collect()
            })
        })
        .collect();
    assert_eq!(want_viewer.len(), 1, "{want_viewer:?}");
    assert_eq!(viewer_rows, want_viewer, "viewer's rows in the page");
    // What the Access page did is in the store.
    let security = qilin_engine::security::store::SecurityStore::new(env.meta().clone());
    let users = security.users().expect("users");
    assert!(
        users
            .iter()
            .any(|u| u.name == "viewer" && u.groups == ["analysts"] && !u.admin),
        "{users:?}"
    );
    assert_eq!(security.rules(Some(ssb::PROJECT)).expect("rules").len(), 1);

    // The build the browser started is in the store: two READY segments, the new range last.
    let (inst, _) = env.meta().cube_instance(ssb::CUBE).expect("cube");
    let ready: Vec<_> = inst
        .segments
        .iter()
        .filter(|s| s.status == SegmentStatus::Ready)
        .collect();
    let new = SegmentRange::parse(NEW.0, NEW.1).unwrap();
    assert!(
        ready.len() == 2 && ready.iter().any(|s| s.range.as_ref() == Some(&new)),
        "segments after the browser's build: {:?}",
        inst.segments
    );
    println!(
        "console: {} Q2.1 rows match the oracle; progress seen {}; {} screenshots in {}",
        rows.len(),
        report["progress_seen"],
        shots.len(),
        out.display()
    );
}
