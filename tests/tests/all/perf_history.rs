//! The query history and the fallback signal (issue 19): a query whose dimensions cross the
//! sample cube's aggregation groups (`d_weeknuminyear` with `c_city`) reads the base cuboid;
//! its answer equals the raw tables, EXPLAIN names the fallback, the REST response carries it,
//! and the server's history in the metadata store gets a record with the wanted dimensions
//! (what `qilin-jobs cube optimize` reads). A query a small cuboid answers is no fallback.

use std::time::{Duration, Instant};

use qilin_engine::metadata::open_store;
use qilin_engine::query::history::{read_history, QueryRecord};
use qilin_engine::sample::ssb;
use qilin_tests::compare::{compare, explain_text, oracle_query, run_query, Expect};
use qilin_tests::server::SsbServer;
use serde_json::{json, Value};

const CROSSING: &str = "SELECT d_weeknuminyear, c_city, SUM(lo_revenue) AS revenue, COUNT(*) AS n \
     FROM lineorder JOIN dates ON lo_orderdate = d_datekey \
     JOIN customer ON lo_custkey = c_custkey GROUP BY d_weeknuminyear, c_city";

const SMALL: &str = "SELECT d_year, SUM(lo_revenue) FROM lineorder \
     JOIN dates ON lo_orderdate = d_datekey GROUP BY d_year";

async fn call<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("HTTP exchange")
}

/// The explain row `plan_type` = `kind`, if any.
fn explain_row(text: &str, kind: &str) -> Option<String> {
    text.lines()
        .find(|l| l.trim_start().starts_with(kind))
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_crossing_groups_is_flagged_and_recorded() {
    let port = qilin_tests::cluster::free_port();
    let (server, _dir, meta) =
        SsbServer::start_private(&format!("kylin.server.http-port={port}\n")).await;
    // The private store is a copy of the shared one, which other tests' servers add history
    // to: only records from now on are this test's.
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let oracle = qilin_tests::oracle(&server.source).await;
    let mut client = server.client().await;

    // The answer equals the raw tables.
    let got = run_query(&mut client, CROSSING).await.expect("query");
    let want = oracle_query(&oracle, CROSSING).await;
    compare(
        &got,
        &want,
        &Expect {
            ordered: false,
            approx: vec![],
        },
    )
    .expect("equal to the oracle");
    let rows: usize = got.iter().map(|b| b.num_rows()).sum();
    assert!(rows > 100, "only {rows} rows");

    // EXPLAIN names the fallback: the wanted dimensions and the base cuboid read.
    let explain = explain_text(
        &run_query(&mut client, &format!("EXPLAIN {CROSSING}"))
            .await
            .expect("explain"),
    );
    let fallback =
        explain_row(&explain, "fallback").unwrap_or_else(|| panic!("no fallback row:\n{explain}"));
    assert!(
        fallback.contains("c_city")
            && fallback.contains("(base, ")
            && fallback.contains("not built"),
        "{fallback}"
    );
    let small = explain_text(
        &run_query(&mut client, &format!("EXPLAIN {SMALL}"))
            .await
            .expect("explain"),
    );
    assert!(explain_row(&small, "fallback").is_none(), "{small}");

    // The REST response carries it (and null for the small query).
    let http = server.http();
    let body = json!({"sql": CROSSING, "project": ssb::PROJECT});
    let h = http.clone();
    let v: Value = call(move || h.post_json("/kylin/api/query", &body).expect(200)).await;
    assert_eq!(v["isException"], false, "{v}");
    let f = &v["fallback"];
    assert_eq!(f["cube"], ssb::CUBE, "{v}");
    assert_eq!(f["chosenIsBase"], true, "{f}");
    assert_eq!(f["wantedBuilt"], false, "{f}");
    let wanted_dims: Vec<String> = f["wantedDimensions"]
        .as_array()
        .unwrap_or_else(|| panic!("{f}"))
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    assert!(wanted_dims.iter().any(|d| d == "c_city"), "{f}");
    assert!(
        f["chosenRows"].as_u64().unwrap() >= 2 * f["wantedRows"].as_u64().unwrap(),
        "{f}"
    );
    assert!(
        fallback.contains(&wanted_dims.join(", ")),
        "{fallback} vs {f}"
    );
    let body = json!({"sql": SMALL, "project": ssb::PROJECT});
    let h = http.clone();
    let v: Value = call(move || h.post_json("/kylin/api/query", &body).expect(200)).await;
    assert_eq!(v["isException"], false, "{v}");
    assert_eq!(v["fallback"], Value::Null, "{v}");

    // The history in the metadata store gets the record (flushed in the background: poll).
    let store = open_store(meta.to_str().unwrap()).expect("open the private store");
    let version = store.store_version().unwrap();
    let wanted_id = f["wanted"].as_u64().unwrap();
    let chosen_id = f["chosen"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let records: Vec<QueryRecord> = loop {
        let all = read_history(store.as_ref(), ssb::PROJECT, ssb::CUBE).expect("read history");
        let ours: Vec<QueryRecord> = all
            .into_iter()
            .filter(|r| r.time.timestamp_millis() >= started && r.wanted == wanted_id)
            .collect();
        if !ours.is_empty() {
            break ours;
        }
        assert!(Instant::now() < deadline, "no history record within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let r = &records[0];
    assert_eq!(r.project, ssb::PROJECT);
    assert_eq!(r.cube, ssb::CUBE);
    assert_eq!(r.wanted_dimensions, wanted_dims);
    assert_eq!(r.chosen, chosen_id);
    assert_eq!(r.chosen_rows, f["chosenRows"].as_u64().unwrap());
    assert!(r.millis > 0.0, "{r:?}");
    // EXPLAIN runs nothing and is not recorded: the Flight run and the REST run (a result-cache
    // hit is not recorded either) are at most two records.
    assert!(records.len() <= 2, "{records:?}");
    // The small query is recorded too, with what it wanted covered by what it read.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = read_history(store.as_ref(), ssb::PROJECT, ssb::CUBE).expect("read history");
        if let Some(s) = all
            .iter()
            .find(|r| r.time.timestamp_millis() >= started && r.wanted_dimensions == ["d_year"])
        {
            assert_eq!(s.chosen & s.wanted, s.wanted, "{s:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no record of the small query within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Writing the history does not move the store version (servers would reload on it).
    assert_eq!(store.store_version().unwrap(), version);
}
