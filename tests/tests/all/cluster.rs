//! Cluster mode on loopback: the HBase emulator as the shared store, `qilin-jobs serve` job
//! engines, `qilin-server` query nodes, nginx (from Debian) balancing gRPC in front.

use std::time::{Duration, Instant};

use arrow_flight::Action;
use futures::TryStreamExt;
use qilin_cluster::notify::{sign, Notification, NOTIFY_ACTION, SIGNATURE_HEADER};
use qilin_engine::model::SegmentStatus;
use qilin_engine::sample::ssb;
use qilin_engine::storage::block::read_cuboid;
use qilin_jobs::{Job, JobStatus};
use qilin_tests::cluster::{eventually, free_port, node_metric, Node, SharedStore, SECRET};
use qilin_tests::compare::{run_query, Client};
use qilin_tests::corpus::{check_random_queries, check_ssb_queries, RANDOM_QUERIES_SMALL};
use qilin_tests::nginx::NginxProcess;
use qilin_tests::server::connect;

const YEARS_SQL: &str = "select d_year, count(*) as n from lineorder, dates \
                         where lo_orderdate = d_datekey group by d_year order by d_year";

fn server_exe() -> std::path::PathBuf {
    qilin_tests::server_exe()
}

/// Ports of one query node.
#[derive(Clone, Copy)]
struct Ports {
    flight: u16,
    metrics: u16,
}

fn ports() -> Ports {
    Ports {
        flight: free_port(),
        metrics: free_port(),
    }
}

fn peers(list: &[u16]) -> String {
    list.iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Properties of a node: mode, its ports, peers to notify, fast lease, slow polling (so
/// that freshness within a second can only come from notifications, unless `extra` says
/// otherwise).
fn props(store: &SharedStore, mode: &str, p: Ports, rest: &str, extra: &str) -> String {
    let mut s = store.base_properties();
    s.push_str(&format!(
        "kylin.server.mode={mode}\nkylin.server.port={}\nkylin.server.metrics-port={}\n\
         kylin.rest.servers={rest}\nkylin.job.lease-seconds=3\nkylin.job.heartbeat-seconds=1\n",
        p.flight, p.metrics
    ));
    if !extra.contains("kylin.server.poll-seconds") {
        s.push_str("kylin.server.poll-seconds=60\n");
    }
    s.push_str(extra);
    s
}

fn query_node(label: &str, store: &SharedStore, p: Ports, rest: &str, extra: &str) -> Node {
    Node::on_port(
        label,
        &server_exe(),
        &props(store, "query", p, rest, extra),
        p.flight,
    )
}

fn job_node(label: &str, store: &SharedStore, p: Ports, rest: &str) -> Node {
    Node::job_daemon(label, &props(store, "job", p, rest, ""))
}

/// Years present in the cube as seen through `client`.
async fn years(client: &mut Client) -> Result<Vec<i64>, tonic::Status> {
    let batches = run_query(client, YEARS_SQL).await?;
    let mut out = Vec::new();
    for b in &batches {
        let col = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Int64)
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        let col = col
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .expect("int64");
        out.extend(col.iter().flatten());
    }
    Ok(out)
}

/// Submits a build through a node's `qilin.build` action; returns the job.
async fn submit_build(client: &mut Client, start: &str, end: &str) -> Job {
    let body = format!(
        r#"{{"cube":"{}","start":"{start}","end":"{end}"}}"#,
        ssb::CUBE
    );
    let mut results = client
        .do_action(Action {
            r#type: "qilin.build".into(),
            body: body.into_bytes().into(),
        })
        .await
        .unwrap_or_else(|e| panic!("qilin.build: {e}"));
    let first = results
        .try_next()
        .await
        .expect("qilin.build result")
        .expect("one result");
    serde_json::from_slice(&first.body).expect("job JSON")
}

async fn wait_for_job(store: &SharedStore, id: &str, timeout: Duration) -> Job {
    let jobs = store.jobs();
    eventually(timeout, &format!("job {id} to finish"), || {
        let j = jobs.get(id).ok()?;
        j.status.is_final().then_some(j)
    })
    .await
}

/// Builds the first segment (1992–1995) in-process, before any job engine runs.
async fn first_segment(store: &SharedStore) {
    let jobs = store.jobs();
    let sub = jobs
        .submit_build(
            ssb::CUBE,
            Some(qilin_engine::model::SegmentRange::parse("1992-01-01", "1995-01-01").unwrap()),
        )
        .unwrap();
    jobs.run(&sub.job().id, qilin_tests::quiet()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_segments_reach_every_query_node_behind_nginx_and_a_missed_notification_heals() {
    let store = SharedStore::new().await;
    first_segment(&store).await;
    let (q1, q2, j) = (ports(), ports(), ports());
    // q2's entry names a port nobody listens on: its notifications are lost, and it must
    // catch up by polling (every 2 s); q1 polls only every 60 s, so it relies on them.
    let rest = peers(&[q1.flight, free_port()]);
    let _n1 = query_node("query1", &store, q1, &rest, "");
    let _n2 = query_node("query2", &store, q2, &rest, "kylin.server.poll-seconds=2\n");
    let _job = job_node("job", &store, j, &rest);
    let nginx = NginxProcess::start(&[
        format!("127.0.0.1:{}", q1.flight),
        format!("127.0.0.1:{}", q2.flight),
    ]);

    let mut lb = connect(&nginx.addr, "ADMIN", "KYLIN").await;
    let before = years(&mut lb).await.expect("query through nginx");
    assert_eq!(before, vec![1992, 1993, 1994]);

    let job = submit_build(&mut lb, "1995-01-01", "1999-01-01").await;
    assert_eq!(
        job.status,
        JobStatus::Ready,
        "query nodes only write the job"
    );
    let done = wait_for_job(&store, &job.id, Duration::from_secs(120)).await;
    assert_eq!(done.status, JobStatus::Succeed, "{:?}", done.error);
    let finished = Instant::now();

    // q1 hears about it at once.
    let mut direct1 = connect(&format!("127.0.0.1:{}", q1.flight), "ADMIN", "KYLIN").await;
    let all_years = vec![1992, 1993, 1994, 1995, 1996, 1997, 1998];
    eventually(Duration::from_secs(2), "query1 notified", || {
        (node_metric(
            q1.metrics,
            r#"qilin_notifications_received_total{result="accepted"}"#,
        ) >= 1.0)
            .then_some(())
    })
    .await;
    assert_eq!(years(&mut direct1).await.unwrap(), all_years);
    // q2 missed it and catches up within its poll interval.
    let mut direct2 = connect(&format!("127.0.0.1:{}", q2.flight), "ADMIN", "KYLIN").await;
    loop {
        let y = years(&mut direct2).await.unwrap();
        if y == all_years {
            break;
        }
        assert!(
            finished.elapsed() < Duration::from_secs(2 + 3),
            "query2 still serves {y:?} after its 2 s poll interval"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        node_metric(
            q2.metrics,
            r#"qilin_notifications_received_total{result="accepted"}"#
        ),
        0.0
    );
    assert!(node_metric(q2.metrics, "qilin_metadata_reloads_total") >= 1.0);
    // Through nginx every answer now has the new years, and both nodes served traffic.
    for _ in 0..20 {
        assert_eq!(years(&mut lb).await.unwrap(), all_years);
        let mut fresh = connect(&nginx.addr, "ADMIN", "KYLIN").await;
        assert_eq!(years(&mut fresh).await.unwrap(), all_years);
    }
    for (name, p) in [("query1", q1), ("query2", q2)] {
        let served = node_metric(p.metrics, r#"qilin_queries_total{outcome="ok"}"#);
        assert!(served >= 3.0, "{name} served {served} queries");
    }
    // The job engine reported the notification it could not deliver.
    assert!(node_metric(j.metrics, "qilin_notifications_sent_total") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_standby_job_engine_takes_over_a_killed_leader_and_the_job_completes_once() {
    let store = SharedStore::new().await;
    let (ja, jb, q) = (ports(), ports(), ports());
    let rest = peers(&[q.flight]);
    let mut leader = job_node("job-a", &store, ja, &rest);
    eventually(Duration::from_secs(10), "job-a holds the lease", || {
        (node_metric(ja.metrics, "qilin_job_engine_lease_held") == 1.0).then_some(())
    })
    .await;
    let _standby = job_node("job-b", &store, jb, &rest);
    let _query = query_node("query", &store, q, &rest, "");
    assert_eq!(node_metric(jb.metrics, "qilin_job_engine_lease_held"), 0.0);

    // A reader that checks every READY segment it sees can be read whole.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (stop, config) = (stop.clone(), store.config(""));
        std::thread::spawn(move || {
            let meta = qilin_engine::metadata::managers::Metadata::new(
                qilin_engine::metadata::open_store(&config.stores.metadata_url).unwrap(),
            );
            let seg_store =
                qilin_engine::storage::open_segment_store(&config.stores.storage_url).unwrap();
            let mut problems = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((inst, _)) = meta.cube_instance(ssb::CUBE) {
                    for s in inst.ready_segments() {
                        for c in &s.cuboids {
                            if let Err(e) = read_cuboid(seg_store.as_ref(), &s.id, c.id) {
                                problems.push(format!("READY segment {}: {e}", s.id));
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            problems
        })
    };

    let mut client = connect(&format!("127.0.0.1:{}", q.flight), "ADMIN", "KYLIN").await;
    let job = submit_build(&mut client, "1992-01-01", "1999-01-01").await;
    // Kill the leader once it is building.
    let jobs = store.jobs();
    let leader_pid = leader.pid().unwrap();
    eventually(Duration::from_secs(60), "job-a builds the segment", || {
        let j = jobs.get(&job.id).ok()?;
        (j.status == JobStatus::Running
            && j.runner.as_ref().map(|r| r.pid) == Some(leader_pid)
            && j.progress > 0.0)
            .then_some(())
    })
    .await;
    leader.kill();
    let killed = Instant::now();
    eventually(
        Duration::from_secs(3 + 1 + 2),
        "job-b takes over within lease + renew period",
        || (node_metric(jb.metrics, "qilin_job_engine_lease_held") == 1.0).then_some(()),
    )
    .await;
    let takeover = killed.elapsed();
    let done = wait_for_job(&store, &job.id, Duration::from_secs(120)).await;
    assert_eq!(done.status, JobStatus::Succeed, "{:?}", done.error);
    assert_eq!(
        done.attempts, 2,
        "run by the leader, then once by the standby"
    );
    assert_ne!(done.runner.as_ref().map(|r| r.pid), Some(leader_pid));
    let (inst, _) = store.meta().cube_instance(ssb::CUBE).unwrap();
    assert_eq!(
        inst.segments.len(),
        1,
        "exactly one segment: {:?}",
        inst.segments
    );
    assert_eq!(inst.segments[0].status, SegmentStatus::Ready);
    assert_eq!(inst.segments[0].id, done.segment_id);
    assert!(
        inst.fence_epoch >= 2,
        "the commit carries the new lease epoch"
    );
    // The first attempt's blocks are gone: only the committed segment has data.
    assert_eq!(
        store.jobs().segment_store().list_segments().unwrap(),
        vec![done.segment_id.clone()]
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let problems = watcher.join().unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    // The query node was notified and answers from the new segment.
    eventually(Duration::from_secs(2), "query node notified", || {
        (node_metric(
            q.metrics,
            r#"qilin_notifications_received_total{result="accepted"}"#,
        ) >= 1.0)
            .then_some(())
    })
    .await;
    assert_eq!(
        years(&mut client).await.unwrap(),
        vec![1992, 1993, 1994, 1995, 1996, 1997, 1998]
    );
    println!("takeover after {takeover:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn query_nodes_never_run_jobs_and_a_second_all_node_stays_standby() {
    let store = SharedStore::new().await;
    let (q, a, j) = (ports(), ports(), ports());
    let rest = peers(&[q.flight, a.flight]);
    let _query = query_node("query", &store, q, &rest, "");
    let mut client = connect(&format!("127.0.0.1:{}", q.flight), "ADMIN", "KYLIN").await;
    let first = submit_build(&mut client, "1992-01-01", "1995-01-01").await;
    // No job engine yet: the job waits (well past a lease period) and nothing runs it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        store.jobs().get(&first.id).unwrap().status,
        JobStatus::Ready,
        "a query node must not run jobs"
    );
    assert_eq!(node_metric(q.metrics, "qilin_job_engine_lease_held"), 0.0);

    let job_daemon = job_node("job", &store, j, &rest);
    let done = wait_for_job(&store, &first.id, Duration::from_secs(120)).await;
    assert_eq!(done.status, JobStatus::Succeed, "{:?}", done.error);
    assert_eq!(done.runner.unwrap().pid, job_daemon.pid().unwrap());

    // A second `all` node on the same store while the daemon holds the lease: standby.
    let all = Node::on_port(
        "all",
        &server_exe(),
        &props(&store, "all", a, &rest, ""),
        a.flight,
    );
    let mut via_all = connect(&format!("127.0.0.1:{}", a.flight), "ADMIN", "KYLIN").await;
    let second = submit_build(&mut via_all, "1995-01-01", "1999-01-01").await;
    let done = wait_for_job(&store, &second.id, Duration::from_secs(120)).await;
    assert_eq!(done.status, JobStatus::Succeed, "{:?}", done.error);
    assert_eq!(
        done.runner.unwrap().pid,
        job_daemon.pid().unwrap(),
        "the lease holder ran it, not the `all` node (pid {:?})",
        all.pid()
    );
    assert_eq!(node_metric(a.metrics, "qilin_job_engine_lease_held"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unsigned_or_forged_notifications_are_refused_and_change_nothing() {
    let store = SharedStore::new().await;
    let q = ports();
    let _query = query_node("query", &store, q, "", "");
    let mut user = connect(&format!("127.0.0.1:{}", q.flight), "ADMIN", "KYLIN").await;
    years(&mut user).await.ok(); // loads the catalog
                                 // The node's first poll of the store version runs in the background after its
                                 // "listening" line (and may count a reload): the baseline is taken after it, once the
                                 // poll has published the version it follows.
    eventually(
        Duration::from_secs(30),
        "the node's first store poll",
        || (node_metric(q.metrics, "qilin_metadata_store_version") > 0.0).then_some(()),
    )
    .await;
    let reloads = node_metric(q.metrics, "qilin_metadata_reloads_total");

    let n = Notification {
        from: "attacker:1".into(),
        what: "segment READY x/y".into(),
        store_version: 999,
        sent_ms: qilin_engine::model::now_ms(),
    };
    let body = serde_json::to_vec(&n).unwrap();
    let cases: [(&str, Option<String>); 3] = [
        ("unsigned", None),
        ("forged", Some(sign(b"not-the-cluster-secret", &body))),
        ("garbage", Some("zz".into())),
    ];
    for (what, signature) in cases {
        // Without any credentials at all, as a peer would call.
        let mut raw = arrow_flight::flight_service_client::FlightServiceClient::new(
            qilin_tests::server::channel(format!("127.0.0.1:{}", q.flight)).await,
        );
        let mut request = tonic::Request::new(Action {
            r#type: NOTIFY_ACTION.into(),
            body: body.clone().into(),
        });
        if let Some(s) = &signature {
            request
                .metadata_mut()
                .insert(SIGNATURE_HEADER, s.parse().unwrap());
        }
        let status = raw.do_action(request).await.expect_err(what);
        assert_eq!(
            status.code(),
            tonic::Code::PermissionDenied,
            "{what}: {status}"
        );
    }
    // A signed one is accepted (and shows the refusals were about the signature only).
    let mut raw = arrow_flight::flight_service_client::FlightServiceClient::new(
        qilin_tests::server::channel(format!("127.0.0.1:{}", q.flight)).await,
    );
    let mut request = tonic::Request::new(Action {
        r#type: NOTIFY_ACTION.into(),
        body: body.clone().into(),
    });
    request.metadata_mut().insert(
        SIGNATURE_HEADER,
        sign(SECRET.as_bytes(), &body).parse().unwrap(),
    );
    raw.do_action(request)
        .await
        .expect("a signed notification is accepted");
    assert_eq!(
        node_metric(
            q.metrics,
            r#"qilin_notifications_received_total{result="refused"}"#
        ),
        3.0
    );
    assert_eq!(
        node_metric(q.metrics, "qilin_metadata_reloads_total"),
        reloads,
        "nothing changed in the store, so nothing was reloaded"
    );
    // Other actions still need a bearer token.
    let mut raw = arrow_flight::flight_service_client::FlightServiceClient::new(
        qilin_tests::server::channel(format!("127.0.0.1:{}", q.flight)).await,
    );
    let status = raw
        .do_action(Action {
            r#type: "qilin.build".into(),
            body: b"{}".to_vec().into(),
        })
        .await
        .expect_err("unauthenticated build");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_query_node_killed_under_load_costs_no_query_and_rejoins() {
    let store = SharedStore::new().await;
    first_segment(&store).await;
    let (q1, q2) = (ports(), ports());
    let rest = peers(&[q1.flight, q2.flight]);
    let mut n1 = query_node("query1", &store, q1, &rest, "");
    let _n2 = query_node("query2", &store, q2, &rest, "");
    let nginx = NginxProcess::start(&[
        format!("127.0.0.1:{}", q1.flight),
        format!("127.0.0.1:{}", q2.flight),
    ]);
    let addr = nginx.addr.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (addr, stop) = (addr.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut c = connect(&addr, "ADMIN", "KYLIN").await;
            let (mut ok, mut retried, mut failed) = (0u32, 0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match years(&mut c).await {
                    Ok(y) if y == [1992, 1993, 1994] => ok += 1,
                    first => {
                        // One client retry, on a new connection.
                        retried += 1;
                        c = connect(&addr, "ADMIN", "KYLIN").await;
                        match years(&mut c).await {
                            Ok(y) if y == [1992, 1993, 1994] => ok += 1,
                            second => failed.push(format!("{first:?} then {second:?}")),
                        }
                    }
                }
            }
            (ok, retried, failed)
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    n1.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let served_before = 0.0; // the restarted process starts its counters at zero
    n1.restart();
    tokio::time::sleep(Duration::from_secs(8)).await; // nginx's fail_timeout is 5 s
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut retried, mut failed) = (0, 0, Vec::new());
    for c in clients {
        let (o, r, f) = c.await.unwrap();
        ok += o;
        retried += r;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "{} failed after a retry: {failed:#?}",
        failed.len()
    );
    assert!(ok > 100, "only {ok} queries");
    let rejoined = node_metric(q1.metrics, r#"qilin_queries_total{outcome="ok"}"#);
    assert!(
        rejoined > served_before,
        "the restarted query1 served no queries"
    );
    println!("{ok} queries, {retried} retried once; restarted query1 served {rejoined}");
}

/// The query corpus through nginx in front of two query nodes on the shared store (one client
/// connection, so nginx may route it to either node; `new_segments_reach_every_query_node...`
/// checks that both serve): the 13 SSB
/// queries and the first [`RANDOM_QUERIES_SMALL`] random queries equal the oracle (or are
/// refused as on one server; refused ones equal the oracle on a third node with pushdown on).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_query_corpus_through_nginx_matches_the_oracle() {
    let store = SharedStore::new().await;
    let jobs = store.jobs();
    let sub = jobs
        .submit_build(ssb::CUBE, Some(ssb::full_range()))
        .unwrap();
    jobs.run(&sub.job().id, qilin_tests::quiet()).await.unwrap();
    let (q1, q2, qp) = (ports(), ports(), ports());
    let rest = peers(&[q1.flight, q2.flight, qp.flight]);
    let _n1 = query_node("query1", &store, q1, &rest, "");
    let _n2 = query_node("query2", &store, q2, &rest, "");
    let _np = query_node(
        "pushdown",
        &store,
        qp,
        &rest,
        "kylin.query.pushdown.enabled=true\n",
    );
    let nginx = NginxProcess::start(&[
        format!("127.0.0.1:{}", q1.flight),
        format!("127.0.0.1:{}", q2.flight),
    ]);
    let ctx = qilin_tests::oracle(&store.source).await;
    let mut lb = connect(&nginx.addr, "ADMIN", "KYLIN").await;
    check_ssb_queries("cluster", &mut lb, &ctx).await;
    let mut pushdown = connect(&format!("127.0.0.1:{}", qp.flight), "ADMIN", "KYLIN").await;
    check_random_queries(
        "cluster",
        &mut lb,
        &mut pushdown,
        &ctx,
        RANDOM_QUERIES_SMALL,
    )
    .await;
}

/// One catalog action through `client`; its JSON result.
async fn admin(client: &mut Client, kind: &str, body: serde_json::Value) -> serde_json::Value {
    let mut results = client
        .do_action(Action {
            r#type: kind.into(),
            body: body.to_string().into_bytes().into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
    let first = results
        .try_next()
        .await
        .unwrap_or_else(|e| panic!("{kind}: {e}"))
        .expect("one result");
    serde_json::from_slice(&first.body).unwrap_or_else(|e| panic!("{kind}: {e}"))
}

/// Bring-your-own-schema through the balancer's view of a cluster: TPC-H tables, the
/// snowflake model and the cube of `conf/examples/tpch/` created with Flight actions on node
/// A, on the HBase emulator; node B (polling once a minute) sees each change at once through
/// the notification, and answers TPC-H Q6 from the cube that the job daemon built after a
/// `qilin.build` sent to A, equal to DataFusion on the raw files.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schema_defined_through_flight_actions_reaches_the_other_node_at_once() {
    let store = SharedStore::new().await;
    let tpch = store.dir.path().join("tpch");
    qilin_engine::sample::tpch::generate_tpch(0.01, &tpch)
        .await
        .unwrap();
    let (a, b, j) = (ports(), ports(), ports());
    let rest = peers(&[a.flight, b.flight]);
    let _a = query_node("a", &store, a, &rest, "");
    let _b = query_node("b", &store, b, &rest, "");
    let _job = job_node("job", &store, j, &rest);
    let mut ca = connect(&format!("127.0.0.1:{}", a.flight), "ADMIN", "KYLIN").await;
    let mut cb = connect(&format!("127.0.0.1:{}", b.flight), "ADMIN", "KYLIN").await;
    const Q6: &str = "select sum(l_extendedprice * l_discount) as revenue from tpch.lineitem \
        where l_shipdate >= date '1994-01-01' and l_shipdate < date '1995-01-01' \
        and l_discount between 0.05 and 0.07 and l_quantity < 24";
    let before = run_query(&mut cb, Q6).await.unwrap_err();
    assert_eq!(before.code(), tonic::Code::NotFound, "{before}");

    admin(
        &mut ca,
        "qilin.project.create",
        serde_json::json!({"name": "tpch"}),
    )
    .await;
    for t in [
        "region", "nation", "supplier", "customer", "part", "orders", "lineitem",
    ] {
        let added = admin(
            &mut ca,
            "qilin.table.add",
            serde_json::json!({"project": "tpch", "name": t,
                "location": tpch.join(t).display().to_string()}),
        )
        .await;
        assert_eq!(added["name"], t, "{added}");
    }
    let example = |f: &str| -> serde_json::Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../conf/examples/tpch")
            .join(f);
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    admin(
        &mut ca,
        "qilin.model.put",
        serde_json::json!({"model": example("model.json")}),
    )
    .await;
    admin(
        &mut ca,
        "qilin.cube.put",
        serde_json::json!({"cube": example("cube.json")}),
    )
    .await;
    // B knows the cube within seconds (its own poll is a minute away): the query now fails
    // for want of a segment, not of a table.
    let started = Instant::now();
    loop {
        let e = run_query(&mut cb, Q6).await.unwrap_err();
        if e.message().contains("tpch_cube") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "B never saw the cube: {e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut results = ca
        .do_action(Action {
            r#type: "qilin.build".into(),
            body: r#"{"cube":"tpch_cube","start":"1992-01-01","end":"1999-01-01"}"#
                .as_bytes()
                .to_vec()
                .into(),
        })
        .await
        .unwrap();
    let job: Job =
        serde_json::from_slice(&results.try_next().await.unwrap().unwrap().body).unwrap();
    let done = wait_for_job(&store, &job.id, Duration::from_secs(300)).await;
    assert_eq!(done.status, JobStatus::Succeed, "{done:?}");
    // The job daemon notified B of the READY segment.
    let started = Instant::now();
    let got = loop {
        match run_query(&mut cb, Q6).await {
            Ok(got) => break got,
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(15),
                "B never answered Q6: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let oracle = datafusion::prelude::SessionContext::new();
    oracle
        .register_parquet(
            "lineitem",
            tpch.join("lineitem").to_str().unwrap(),
            Default::default(),
        )
        .await
        .unwrap();
    let want = qilin_tests::compare::oracle_query(&oracle, &Q6.replace("tpch.", "")).await;
    qilin_tests::compare::compare(&got, &want, &Default::default()).unwrap();
}

/// A query node whose `kylin.source.url` is an empty directory (a second machine without the
/// source files) answers the 13 SSB queries, a derived column and lookup-only queries from
/// the HBase store alone (lookup snapshots, table index), equal to the oracle on the files.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_query_node_without_source_files_answers_from_snapshots_and_the_table_index() {
    let store = SharedStore::new().await;
    let jobs = store.jobs();
    let sub = jobs
        .submit_build(ssb::CUBE, Some(ssb::full_range()))
        .unwrap();
    jobs.run(&sub.job().id, qilin_tests::quiet()).await.unwrap();
    let empty = tempfile::tempdir().unwrap();
    let p = ports();
    let properties = props(&store, "query", p, "", "").replace(
        &format!("kylin.source.url={}\n", store.source.display()),
        &format!("kylin.source.url={}\n", empty.path().display()),
    );
    assert!(properties.contains(&empty.path().display().to_string()));
    let _node = Node::on_port("no-source", &server_exe(), &properties, p.flight);
    let ctx = qilin_tests::oracle(&store.source).await;
    let mut client = connect(&format!("127.0.0.1:{}", p.flight), "ADMIN", "KYLIN").await;
    check_ssb_queries("no source files", &mut client, &ctx).await;
    for sql in [
        "SELECT d_sellingseason, sum(lo_revenue) AS r FROM lineorder JOIN dates \
         ON lo_orderdate = d_datekey GROUP BY d_sellingseason",
        "SELECT DISTINCT d_year FROM dates",
        "SELECT count(*) FROM customer",
        "SELECT c_region, count(*) AS n FROM customer GROUP BY c_region",
        "SELECT * FROM supplier ORDER BY s_suppkey LIMIT 10",
        "SELECT lo_orderkey, lo_linenumber, lo_revenue FROM lineorder WHERE lo_orderdate = 19940105",
    ] {
        let got = run_query(&mut client, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let want = qilin_tests::compare::oracle_query(&ctx, sql).await;
        let expect = qilin_tests::compare::Expect {
            ordered: qilin_tests::compare::has_order_by(sql),
            approx: vec![],
        };
        assert!(
            want.iter().map(|b| b.num_rows()).sum::<usize>() > 0,
            "{sql}: the oracle has rows"
        );
        qilin_tests::compare::compare(&got, &want, &expect)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}
