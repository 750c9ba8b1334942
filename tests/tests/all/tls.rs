//! TLS (`kylin.server.tls.*`): Flight SQL through the Python ADBC driver over `grpc+tls://`
//! with the test's own CA (SSB answers equal to the oracle), plaintext and untrusting clients
//! refused, HTTPS REST, a cluster whose nodes notify each other over mutual TLS, and the
//! start-up refusals (plaintext off loopback, unusable certificate files).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::ipc::reader::FileReader;
use arrow_flight::Action;
use futures::TryStreamExt;
use qilin_cluster::notify::{sign, Notification, NOTIFY_ACTION, SIGNATURE_HEADER};
use qilin_tests::cluster::{free_port, metric, SharedStore, SECRET};
use qilin_tests::compare::{compare, has_order_by, oracle_query, run_query, Expect};
use qilin_tests::corpus::ssb_queries;
use qilin_tests::http::Http;
use qilin_tests::process::{run_to_exit, Spec};
use qilin_tests::server::{run_server_to_exit, ServerProcess, SsbServer};
use qilin_tests::tls::{self, TestPki};
use serde_json::json;

const INSTALL_HINT: &str =
    "./scripts/test installs tests/requirements.txt (adbc-driver-flightsql, pyarrow) into its venv";

fn read_ipc(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    FileReader::try_new(file, None)
        .unwrap_or_else(|e| panic!("{}: not an Arrow IPC file: {e}", path.display()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs a blocking exchange off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// The 13 SSB queries through ADBC over TLS equal the oracle; a plaintext client and one
/// that does not trust the CA are refused; the Rust Flight client and HTTPS REST work with
/// the CA and fail without TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_over_tls_matches_the_oracle_and_plaintext_clients_are_refused() {
    let probe = Command::new(qilin_tests::python())
        .args(["-c", "import adbc_driver_flightsql.dbapi, pyarrow"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}); {INSTALL_HINT}", qilin_tests::python()));
    assert!(
        probe.status.success(),
        "the Python ADBC Flight SQL driver is missing: {INSTALL_HINT}\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let pki = TestPki::new();
    let ssb = SsbServer::start_with_http(&pki.server_properties(false)).await;
    let addr = ssb.process.addr.clone();
    // The readiness lines are unchanged by TLS.
    assert!(
        ssb.process.output().contains("qilin-server listening on "),
        "{}",
        ssb.process.output()
    );

    let out = tempfile::tempdir().expect("temp dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/tls_adbc.py");
    let (a, ca, o) = (addr.clone(), pki.ca.clone(), out.path().to_path_buf());
    let run = blocking(move || {
        Command::new(qilin_tests::python())
            .arg(&script)
            .arg(&a)
            .arg(&ca)
            .arg(&o)
            .output()
            .expect("run tls_adbc.py")
    })
    .await;
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_ne!(run.status.code(), Some(3), "{INSTALL_HINT}: {stderr}");
    assert!(run.status.success(), "tls_adbc.py failed: {stderr}");
    assert!(
        out.path().join("done.txt").exists(),
        "tls_adbc.py did not finish"
    );

    let ctx = qilin_tests::oracle(&ssb.source).await;
    let mut failures = Vec::new();
    let queries = ssb_queries();
    assert_eq!(queries.len(), 13);
    for (name, sql) in &queries {
        let error = out.path().join(format!("{name}.error.txt"));
        if error.exists() {
            failures.push(format!(
                "{name}: ADBC error over TLS: {}",
                std::fs::read_to_string(&error).unwrap()
            ));
            continue;
        }
        let got = read_ipc(&out.path().join(format!("{name}.arrow")));
        let want = oracle_query(&ctx, sql).await;
        let expect = Expect {
            ordered: has_order_by(sql),
            approx: vec![],
        };
        if let Err(e) = compare(&got, &want, &expect) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for client in ["plaintext", "untrusted"] {
        let outcome = std::fs::read_to_string(out.path().join(format!("{client}.txt"))).unwrap();
        assert!(outcome.starts_with("refused"), "{client} client: {outcome}");
    }

    // The Rust Flight client: over TLS with the CA it queries; in plaintext it is refused.
    let mut c = tls::connect(&addr, &pki.ca_pem, "ADMIN", "KYLIN").await;
    let sql = "select count(*) as n from lineorder";
    let got = run_query(&mut c, sql).await.unwrap();
    compare(&got, &oracle_query(&ctx, sql).await, &Default::default()).unwrap();
    let plain = tokio::time::timeout(
        Duration::from_secs(30),
        qilin_tests::server::raw_handshake(&addr, "ADMIN", "KYLIN"),
    )
    .await
    .expect("a plaintext handshake fails promptly");
    assert!(plain.is_err(), "plaintext handshake accepted: {plain:?}");
    let wrong_ca = pki.untrusted("stranger");
    let e = tls::try_channel(&addr, &wrong_ca.cert_pem, None)
        .await
        .expect_err("a client trusting another CA connects");
    assert!(e.contains("certificate"), "{e}");

    // HTTPS: REST with the CA equals the oracle; plain HTTP and an untrusting client fail.
    let http_addr = ssb.http_addr();
    let https = Http::basic(&http_addr, "ADMIN", "KYLIN").with_tls(&pki.ca_pem);
    let h = https.clone();
    let health = blocking(move || h.get("/health")).await;
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(health.json()["status"], "ok");
    let h = https.clone();
    let v = blocking(move || {
        h.post_json("/kylin/api/query", &json!({"sql": sql, "project": "ssb"}))
            .expect(200)
    })
    .await;
    let want = oracle_query(&ctx, sql).await;
    let want_n = qilin_tests::cell(want[0].column(0).as_ref(), 0);
    assert_eq!(v["results"][0][0].as_str(), Some(want_n.as_str()), "{v}");
    let h = Http::basic(&http_addr, "ADMIN", "KYLIN");
    let plain = blocking(move || h.try_request("GET", "/kylin/api/projects", None)).await;
    assert!(
        plain.is_err() || plain.as_ref().is_ok_and(|r| r.status >= 400),
        "plain HTTP on the TLS port answered: {plain:?}"
    );
    let h = Http::new(&http_addr).with_tls(&wrong_ca.cert_pem);
    let untrusted = blocking(move || h.try_request("GET", "/health", None)).await;
    let e = untrusted.expect_err("an untrusting HTTPS client got a reply");
    assert!(e.to_string().contains("certificate"), "{e}");
}

/// qilin-server and `qilin-jobs serve` refuse a non-loopback host without TLS, naming both
/// ways out; `kylin.security.allow-plaintext=true`, or TLS, lets them start; unusable
/// certificate files stop start-up naming the key at fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_off_loopback_is_refused_unless_allowed_and_bad_files_are_named() {
    let exe = qilin_tests::server_exe();
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        "kylin.sample.auto-create=false\nkylin.metadata.url={}\nkylin.storage.url={}\n\
         kylin.server.mode=query\nkylin.security.users=ADMIN:s3cret-pass\n\
         kylin.security.token-secret=0123456789abcdef0123456789abcdef\n",
        dir.path().join("meta").display(),
        dir.path().join("segments").display()
    );
    let public = format!("{base}kylin.server.host=0.0.0.0\n");
    let (status, output) = run_server_to_exit(&exe, &public, Duration::from_secs(60));
    assert!(!status.success(), "{output}");
    for needle in [
        "kylin.server.tls.cert",
        "kylin.security.allow-plaintext",
        "0.0.0.0",
    ] {
        assert!(output.contains(needle), "{needle}: {output}");
    }
    assert!(!output.contains("panicked"), "{output}");

    // The job daemon's HTTP server follows the same rule.
    let conf = pki.file(
        "job.properties",
        &format!(
            "{public}kylin.server.mode=job\nkylin.server.http-port={}\n",
            free_port()
        ),
    );
    let spec = Spec::new(&qilin_tests::workspace_exe("qilin-jobs"))
        .arg("--conf")
        .arg(&conf)
        .arg("serve");
    let (status, output) = run_to_exit("qilin-jobs", &spec, Duration::from_secs(60));
    assert!(!status.success(), "{output}");
    assert!(
        output.contains("kylin.security.allow-plaintext"),
        "{output}"
    );

    // Allowed explicitly, or with TLS, both start (and answer on loopback).
    for extra in [
        "kylin.security.allow-plaintext=true\n".to_string(),
        pki.server_properties(false),
    ] {
        let props = format!("{public}{extra}");
        let exe2 = exe.clone();
        let server = blocking(move || ServerProcess::start(&exe2, &props)).await;
        let addr = format!("127.0.0.1:{}", server.port());
        let mut c = if extra.contains("tls") {
            tls::connect(&addr, &pki.ca_pem, "ADMIN", "s3cret-pass").await
        } else {
            qilin_tests::server::connect(&addr, "ADMIN", "s3cret-pass").await
        };
        let got = run_query(&mut c, "select 41 + 1 as x").await.unwrap();
        assert_eq!(qilin_tests::cell(got[0].column(0).as_ref(), 0), "42");
    }

    // Unusable files: each refusal names the key (and the file) at fault.
    let other = pki.issue("other");
    let garbage = pki.file("garbage.pem", "not a certificate\n");
    let missing = dir.path().join("missing.pem");
    let cases = [
        (
            tls::tls_properties(&pki.node.cert, &other.key),
            "kylin.server.tls.key",
            "does not match",
        ),
        (
            tls::tls_properties(&missing, &pki.node.key),
            "kylin.server.tls.cert",
            "missing.pem",
        ),
        (
            tls::tls_properties(&garbage, &pki.node.key),
            "kylin.server.tls.cert",
            "no PEM certificate",
        ),
        (
            tls::tls_properties(&pki.node.cert, &garbage),
            "kylin.server.tls.key",
            "no PEM private key",
        ),
        (
            format!(
                "{}kylin.server.tls.client-ca={}\n",
                pki.server_properties(false),
                garbage.display()
            ),
            "kylin.server.tls.client-ca",
            "garbage.pem",
        ),
        (
            format!("kylin.server.tls.cert={}\n", pki.node.cert.display()),
            "kylin.server.tls.key",
            "both or neither",
        ),
    ];
    for (extra, key, detail) in cases {
        let (status, output) =
            run_server_to_exit(&exe, &format!("{base}{extra}"), Duration::from_secs(60));
        assert!(!status.success(), "{extra}: {output}");
        assert!(output.contains(key), "{extra}: {key}: {output}");
        assert!(output.contains(detail), "{extra}: {detail}: {output}");
        assert!(!output.contains("panicked"), "{output}");
    }
}

/// Two query nodes and a job daemon on a shared (HBase emulator) store, all with TLS and
/// the cluster CA: a table added through A reaches B at once through a notification over
/// mutual TLS (B polls once a minute), and B answers it like the oracle; a notification
/// signed with the right secret but sent without a node certificate is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_cluster_notifies_over_mutual_tls_and_refuses_notifications_without_a_node_cert() {
    let pki = TestPki::new();
    let store = SharedStore::new().await;
    let (a, b) = (free_port(), free_port());
    let rest = format!("127.0.0.1:{a},127.0.0.1:{b}");
    let node_props = |port: u16, mode: &str| {
        format!(
            "{}kylin.server.mode={mode}\nkylin.server.port={port}\nkylin.server.http-port={}\n\
             kylin.rest.servers={rest}\nkylin.server.poll-seconds=60\n\
             kylin.query.pushdown.enabled=true\n{}",
            store.base_properties(),
            free_port(),
            pki.server_properties(true)
        )
    };
    let exe = qilin_tests::server_exe();
    let (pa, pb) = (node_props(a, "query"), node_props(b, "query"));
    let (e1, e2) = (exe.clone(), exe.clone());
    let node_a = blocking(move || ServerProcess::on_port("a", &e1, &pa, a)).await;
    let node_b = blocking(move || ServerProcess::on_port("b", &e2, &pb, b)).await;
    let job_props = node_props(free_port(), "job");
    let job = blocking(move || ServerProcess::job_daemon("job", &job_props)).await;

    // Every HTTP server of the cluster speaks HTTPS (the job daemon's too).
    for node in [&node_a, &node_b, &job] {
        let h = Http::new(&node.http_addr().expect("HTTP on")).with_tls(&pki.ca_pem);
        let r = blocking(move || h.get("/health")).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }

    let (addr_a, addr_b) = (format!("127.0.0.1:{a}"), format!("127.0.0.1:{b}"));
    let mut ca = tls::connect(&addr_a, &pki.ca_pem, "ADMIN", "KYLIN").await;
    let mut cb = tls::connect(&addr_b, &pki.ca_pem, "ADMIN", "KYLIN").await;
    let sql = "select d_year, count(*) as n from tls_probe.dates group by d_year order by d_year";
    let before = run_query(&mut cb, sql).await.unwrap_err();
    assert_eq!(before.code(), tonic::Code::NotFound, "{before}");

    for (kind, body) in [
        ("qilin.project.create", json!({"name": "tls_probe"})),
        (
            "qilin.table.add",
            json!({"project": "tls_probe", "name": "dates",
                   "location": store.source.join("ssb/dates.parquet").display().to_string()}),
        ),
    ] {
        let mut results = ca
            .do_action(Action {
                r#type: kind.into(),
                body: body.to_string().into_bytes().into(),
            })
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        while results.try_next().await.unwrap().is_some() {}
    }
    // B reloads within seconds: only the notification (over mutual TLS) can have told it.
    let mut got = None;
    let started = std::time::Instant::now();
    while got.is_none() {
        match run_query(&mut cb, sql).await {
            Ok(batches) => got = Some(batches),
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(20),
                "B never saw tls_probe.dates: {e}\nA: {}\nB: {}",
                node_a.output(),
                node_b.output()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ctx = qilin_tests::oracle(&store.source).await;
    let want = oracle_query(&ctx, &sql.replace("tls_probe.", "")).await;
    compare(
        &got.unwrap(),
        &want,
        &Expect {
            ordered: true,
            approx: vec![],
        },
    )
    .unwrap();
    let metrics_b = Http::new(&node_b.http_addr().unwrap()).with_tls(&pki.ca_pem);
    let m = metrics_b.clone();
    let accepted = blocking(move || m.get("/metrics").text()).await;
    assert!(
        metric(
            &accepted,
            "qilin_notifications_received_total{result=\"accepted\"}"
        ) >= 1.0,
        "{accepted}"
    );

    // A correctly signed notification: refused without a node certificate, accepted with one.
    let notify = |from: &str| {
        let body = serde_json::to_vec(&Notification {
            from: from.into(),
            what: "tls test".into(),
            store_version: 0,
            sent_ms: qilin_engine::model::now_ms(),
        })
        .unwrap();
        let signature = sign(SECRET.as_bytes(), &body);
        let mut request = tonic::Request::new(Action {
            r#type: NOTIFY_ACTION.into(),
            body: body.into(),
        });
        request
            .metadata_mut()
            .insert(SIGNATURE_HEADER, signature.parse().unwrap());
        request
    };
    let anonymous = tls::try_channel(&addr_b, &pki.ca_pem, None).await.unwrap();
    let e = arrow_flight::flight_service_client::FlightServiceClient::new(anonymous)
        .do_action(notify("anonymous"))
        .await
        .expect_err("a notification without a node certificate was accepted");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    assert!(e.message().contains("node certificate"), "{e}");
    let node = tls::try_channel(&addr_b, &pki.ca_pem, Some(&pki.node))
        .await
        .unwrap();
    let mut results = arrow_flight::flight_service_client::FlightServiceClient::new(node)
        .do_action(notify("test-node"))
        .await
        .unwrap_or_else(|e| panic!("a node's notification was refused: {e}"))
        .into_inner();
    while results.try_next().await.unwrap().is_some() {}
    let m = metrics_b.clone();
    let text = blocking(move || m.get("/metrics").text()).await;
    assert!(
        metric(
            &text,
            "qilin_notifications_received_total{result=\"refused\"}"
        ) >= 1.0,
        "{text}"
    );
    // A client certificate from another CA does not even complete the handshake.
    let stranger = pki.untrusted("stranger");
    let refused = match tls::try_channel(&addr_b, &pki.ca_pem, Some(&stranger)).await {
        Err(_) => true,
        Ok(ch) => arrow_flight::flight_service_client::FlightServiceClient::new(ch)
            .do_action(notify("stranger"))
            .await
            .is_err(),
    };
    assert!(refused, "a certificate from another CA was accepted");
}
