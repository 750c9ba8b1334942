//! Warm start and the per-query Flight SQL path (issue 19): a server warms its caches in the
//! background at start (its log says what it decoded) while answering queries correctly from
//! the first moment, warms a segment that turns READY later, and a statement prepared,
//! described and run the way ADBC does it (CreatePreparedStatement, GetFlightInfo, DoGet,
//! ClosePreparedStatement) is parsed and rewritten once, a repetition not at all.

use std::path::Path;
use std::time::{Duration, Instant};

use qilin_engine::sample::ssb;
use qilin_tests::compare::{compare, oracle_query, Client, Expect};
use qilin_tests::corpus::{check_ssb_queries, ssb_queries};
use qilin_tests::server::{ServerProcess, SsbServer};
use qilin_tests::{shared_ssb_source, TestEnv};

/// What the server logs when a warm-up finished (flight-server `warm::WARM_DONE`).
const WARM_DONE: &str = "warm-up done: ";

/// The warm-up lines a server has logged so far.
fn warm_lines(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| {
            l.find(WARM_DONE)
                .map(|i| l[i + WARM_DONE.len()..].to_string())
        })
        .collect()
}

/// Waits (polling the log, no fixed sleep) until the server has logged `n` warm-ups.
fn wait_for_warm_ups(process: &ServerProcess, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let lines = warm_lines(&process.output());
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "no {n} warm-up line(s) within 240 s; output:\n{}",
            process.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The number before `what` in a warm-up line ("… 12 blocks …").
fn count_before(line: &str, what: &str) -> u64 {
    let at = line
        .find(what)
        .unwrap_or_else(|| panic!("no {what:?} in warm-up line {line}"));
    line[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.trim_start_matches('(').parse().ok())
        .unwrap_or_else(|| panic!("no count before {what:?} in {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_decodes_blocks_in_the_background_and_queries_match_meanwhile() {
    let ssb = SsbServer::start("kylin.query.cache-enabled=false\n").await;
    // Straight after the listening line: the server answers while it warms.
    let ctx = qilin_tests::oracle(&ssb.source).await;
    check_ssb_queries("during warm-up", &mut ssb.client().await, &ctx).await;
    let process = &ssb.process;
    let lines = tokio::task::block_in_place(|| wait_for_warm_ups(process, 1));
    let first = &lines[0];
    assert_eq!(count_before(first, "segment(s)"), 1, "{first}");
    assert!(count_before(first, "statement(s)") >= 1, "{first}");
    assert!(count_before(first, "manifest(s)") >= 100, "{first}");
    assert!(count_before(first, "blocks") > 0, "{first}");
    assert!(count_before(first, "cuboid(s)") > 0, "{first}");
    // And after it, from warm caches.
    check_ssb_queries("after warm-up", &mut ssb.client().await, &ctx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_can_be_turned_off() {
    let ssb = SsbServer::start("kylin.query.warm-up.enabled=false\n").await;
    // Logged (stderr) before the listening line (stdout); the two are drained apart.
    ssb.process
        .wait_for_output("warm-up off", Duration::from_secs(10));
    let ctx = qilin_tests::oracle(&ssb.source).await;
    check_ssb_queries("warm-up off", &mut ssb.client().await, &ctx).await;
    assert!(warm_lines(&ssb.process.output()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_turning_ready_is_warmed() {
    let source = shared_ssb_source(Path::new(env!("CARGO_TARGET_TMPDIR")), 0.01).await;
    let env = TestEnv::new(&source);
    env.install_sample(0.01).await;
    env.build("1992-01-01..1995-01-01").await.unwrap();
    let props = format!(
        "kylin.metadata.url={}\nkylin.storage.url={}\nkylin.source.url={}\n\
         kylin.sample.auto-create=false\nkylin.server.mode=query\nkylin.server.poll-seconds=1\n\
         kylin.storage.block-rows=1000\nkylin.query.cache-enabled=false\n",
        env.config.stores.metadata_url,
        env.config.stores.storage_url,
        source.display()
    );
    let exe = qilin_tests::server_exe();
    let server = tokio::task::spawn_blocking(move || ServerProcess::start(&exe, &props))
        .await
        .unwrap();
    let lines = tokio::task::block_in_place(|| wait_for_warm_ups(&server, 1));
    assert_eq!(count_before(&lines[0], "segment(s)"), 1, "{}", lines[0]);
    // The second half turns READY behind the server's back; it warms that segment alone.
    env.build("1995-01-01..1999-01-01").await.unwrap();
    let lines = tokio::task::block_in_place(|| wait_for_warm_ups(&server, 2));
    let second = &lines[1];
    assert_eq!(count_before(second, "segment(s)"), 1, "{second}");
    assert_eq!(count_before(second, "statement(s)"), 0, "{second}");
    assert!(count_before(second, "blocks") > 0, "{second}");
    // Both segments answer, equal to the oracle.
    let ctx = qilin_tests::oracle(&source).await;
    let mut client = qilin_tests::server::connect(&server.addr, "ADMIN", "KYLIN").await;
    check_ssb_queries("two segments", &mut client, &ctx).await;
}

/// One statement as ADBC runs it: CreatePreparedStatement, GetFlightInfo on the handle,
/// DoGet on every endpoint, ClosePreparedStatement.
async fn run_prepared(
    client: &mut Client,
    sql: &str,
) -> Vec<datafusion::arrow::array::RecordBatch> {
    use futures::TryStreamExt;
    let mut prepared = client
        .prepare(sql.to_string(), None)
        .await
        .unwrap_or_else(|e| panic!("prepare {sql}: {e}"));
    let info = prepared
        .execute()
        .await
        .unwrap_or_else(|e| panic!("GetFlightInfo {sql}: {e}"));
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.expect("ticket");
        let stream = client
            .do_get(ticket)
            .await
            .unwrap_or_else(|e| panic!("DoGet {sql}: {e}"));
        batches.extend(
            stream
                .try_collect::<Vec<_>>()
                .await
                .unwrap_or_else(|e| panic!("reading {sql}: {e}")),
        );
    }
    prepared
        .close()
        .await
        .unwrap_or_else(|e| panic!("close {sql}: {e}"));
    batches
}

/// `queries` with a comment unique to this test run in front of each text (plans and the
/// query history are keyed by the text).
fn marked(queries: Vec<(String, String)>, what: &str) -> Vec<(String, String)> {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    queries
        .into_iter()
        .map(|(name, sql)| (name, format!("/* {what} {nonce} */ {sql}")))
        .collect()
}

/// (statements parsed, plans rewritten) so far, from `/health`.
fn planning(ssb: &SsbServer) -> (u64, u64) {
    let body = ssb.http().get("/health").json();
    let p = &body["planning"];
    (
        p["statements"].as_u64().unwrap_or_else(|| panic!("{body}")),
        p["rewrites"].as_u64().unwrap_or_else(|| panic!("{body}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adbc_statement_path_plans_each_statement_once() {
    // Result cache off: a repeated statement really runs again.
    let ssb = SsbServer::start_with_http("kylin.query.cache-enabled=false\n").await;
    // The warm-up's own statement counts too: start from after it.
    let process = &ssb.process;
    tokio::task::block_in_place(|| wait_for_warm_ups(process, 1));
    let ctx = qilin_tests::oracle(&ssb.source).await;
    let mut client = ssb.client().await;
    // Texts of this run only: the warm-up replays what other tests' servers recorded in the
    // shared store's history, and a replayed statement is planned before the test starts.
    let queries = marked(ssb_queries(), "adbc path");
    let n = queries.len() as u64;
    let before = planning(&ssb);
    for round in 0..2 {
        for (name, sql) in &queries {
            let got = run_prepared(&mut client, sql).await;
            let want = oracle_query(&ctx, sql).await;
            let expect = Expect {
                ordered: sql.to_lowercase().contains("order by"),
                approx: vec![],
            };
            compare(&got, &want, &expect).unwrap_or_else(|e| panic!("round {round} {name}: {e}"));
        }
        let now = planning(&ssb);
        assert_eq!(
            (now.0 - before.0, now.1 - before.1),
            (n, n),
            "after round {round}: each of the {n} statements parsed once and rewritten once \
             (prepare, describe and run share the plan; a repetition reuses it)"
        );
    }
}

/// Runs `queries` through the ADBC call sequence and checks each against the oracle.
async fn run_checked(
    client: &mut Client,
    ctx: &datafusion::prelude::SessionContext,
    queries: &[(String, String)],
    label: &str,
) {
    for (name, sql) in queries {
        let got = run_prepared(client, sql).await;
        let want = oracle_query(ctx, sql).await;
        let expect = Expect {
            ordered: sql.to_lowercase().contains("order by"),
            approx: vec![],
        };
        compare(&got, &want, &expect).unwrap_or_else(|e| panic!("{label} {name}: {e}"));
    }
}

/// A server with `props` and the HTTP server on a free port.
async fn start_with_http(props: &str, source: &Path) -> SsbServer {
    let port = qilin_tests::cluster::free_port();
    let props = format!("{props}kylin.server.http-port={port}\n");
    let exe = qilin_tests::server_exe();
    let process = tokio::task::spawn_blocking(move || ServerProcess::start(&exe, &props))
        .await
        .unwrap();
    SsbServer {
        process,
        source: source.to_path_buf(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_replays_the_recorded_statements_into_the_plan_caches() {
    let (props, _dir, meta) =
        SsbServer::private_meta_properties("kylin.query.cache-enabled=false\n").await;
    let source = qilin_tests::server::shared_ssb_source_dir(qilin_tests::server::SCALE).await;
    let ctx = qilin_tests::oracle(&source).await;
    let queries = marked(ssb_queries(), "replay");
    // The copy carries the shared store's history (other tests' statements, which could
    // outrank these): start from none.
    let store = qilin_engine::metadata::open_store(meta.to_str().unwrap()).unwrap();
    let folder = qilin_engine::query::history::folder(ssb::PROJECT, ssb::CUBE);
    for path in store.list(&folder).unwrap() {
        store.check_and_delete(&path, None).unwrap();
    }
    assert!(store.list(&folder).unwrap().is_empty());

    // A first server runs the statements; its history reaches the store (flushed in the
    // background: poll for this run's texts).
    let first = start_with_http(&props, &source).await;
    run_checked(&mut first.client().await, &ctx, &queries, "first server").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let records =
            qilin_engine::query::history::read_history(store.as_ref(), ssb::PROJECT, ssb::CUBE)
                .unwrap();
        let recorded = queries
            .iter()
            .filter(|(_, sql)| {
                records
                    .iter()
                    .any(|r| r.sql.as_deref() == Some(sql.as_str()))
            })
            .count();
        if recorded == queries.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{recorded} of {} statements in the history after 60 s",
            queries.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(first);

    // A new server replays them while it warms: afterwards the same statements are neither
    // parsed nor rewritten again, and still equal the oracle.
    let second = start_with_http(&props, &source).await;
    let process = &second.process;
    let lines = tokio::task::block_in_place(|| wait_for_warm_ups(process, 1));
    assert!(
        count_before(&lines[0], "replayed") >= queries.len() as u64,
        "{}",
        lines[0]
    );
    let before = planning(&second);
    run_checked(
        &mut second.client().await,
        &ctx,
        &queries,
        "after the restart",
    )
    .await;
    assert_eq!(
        planning(&second),
        before,
        "the replayed statements come from the plan caches"
    );
}
