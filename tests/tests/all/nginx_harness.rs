//! The shipped load-balancer configs (conf/cluster/) and the nginx test harness: the nginx
//! config is valid as shipped and as the harness rewrites it, nginx starts from it, speaks
//! gRPC on its port, and tries a second upstream when the first cannot be reached.

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use qilin_tests::nginx::{
    check_config, harness_config, nginx_exe, shipped_config_path, NginxProcess,
};

/// Two addresses nothing listens on (bound and released a moment ago: connections are
/// refused).
fn dead_upstreams() -> Vec<String> {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    vec![
        a.local_addr().unwrap().to_string(),
        b.local_addr().unwrap().to_string(),
    ]
}

#[test]
fn shipped_nginx_conf_is_valid() {
    let out = check_config(&shipped_config_path())
        .unwrap_or_else(|e| panic!("nginx -t rejects conf/cluster/nginx.conf:\n{e}"));
    assert!(out.contains("syntax is ok"), "{out}");
}

#[test]
fn harness_config_is_valid_and_keeps_the_shipped_settings() {
    let shipped = std::fs::read_to_string(shipped_config_path()).unwrap();
    let upstreams = vec!["127.0.0.1:17071".to_string(), "127.0.0.1:17072".to_string()];
    let text = harness_config(&shipped, 17070, &upstreams, true);
    for line in [
        "daemon off;",
        "master_process on;",
        "user root;",
        "worker_processes 1;",
        "listen 127.0.0.1:17070 http2;",
        "server 127.0.0.1:17071 max_fails=1 fail_timeout=5s;",
        "server 127.0.0.1:17072 max_fails=1 fail_timeout=5s;",
        "grpc_pass grpc://qilin;",
        "grpc_next_upstream_tries 2;",
    ] {
        assert!(
            text.lines().any(|l| l.trim() == line),
            "missing {line:?} in:\n{text}"
        );
    }
    assert!(
        !text.lines().any(|l| {
            let l = l.trim();
            l.starts_with("server 127.0.0.1:707") || l.starts_with("listen 7070")
        }),
        "shipped addresses remain:\n{text}"
    );
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, &text).unwrap();
    check_config(&conf).unwrap_or_else(|e| panic!("nginx -t rejects:\n{text}\n{e}"));
}

#[test]
fn nginx_starts_accepts_and_stops() {
    let mut nginx = NginxProcess::start(&dead_upstreams());
    assert!(nginx.is_running());
    TcpStream::connect_timeout(&nginx.addr.parse().unwrap(), Duration::from_secs(5))
        .expect("nginx accepts connections");
    let prefix = nginx.prefix().to_path_buf();
    // Everything nginx writes stays in the prefix.
    for p in [
        "logs/nginx.pid",
        "logs/error.log",
        "logs/access.log",
        "client_body_temp",
    ] {
        assert!(
            prefix.join(p).exists(),
            "{p} missing in {}",
            prefix.display()
        );
    }
    let pid = std::fs::read_to_string(prefix.join("logs/nginx.pid")).unwrap();
    assert!(Path::new(&format!("/proc/{}", pid.trim())).exists());
    nginx.stop();
    assert!(!nginx.is_running());
    assert!(
        !Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "nginx master {pid} still runs after stop"
    );
}

/// A gRPC call through nginx when no upstream is reachable: nginx tries both servers
/// (grpc_next_upstream error + tries 2), then answers with a gRPC UNAVAILABLE status (the
/// config's @grpc_unavailable, not an HTML 502 page that clients would report as
/// INTERNAL); the access log names both upstreams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_through_nginx_tries_the_next_upstream() {
    let upstreams = dead_upstreams();
    let nginx = NginxProcess::start(&upstreams);
    let err = handshake(&nginx.addr)
        .await
        .expect_err("no upstream is reachable");
    assert_eq!(err.message(), "no Qilin query server available", "{err:?}");
    assert_eq!(
        err.code(),
        tonic::Code::Unavailable,
        "{err:?}\nerror log:\n{}",
        nginx.error_log()
    );
    // nginx writes the access-log line when the call ends; it has ended for the client.
    let mut log = String::new();
    for _ in 0..250 {
        log = nginx.access_log();
        if !log.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let line = log
        .lines()
        .find(|l| l.contains("/arrow.flight.protocol.FlightService/Handshake"))
        .unwrap_or_else(|| panic!("no Handshake call in the access log:\n{log}"));
    // Both tries failed (502 each); the client got the gRPC-shaped answer (HTTP 200).
    assert!(line.contains("upstream_status=502, 502 "), "{line}");
    assert!(line.contains("\" 200 "), "{line}");
    for u in &upstreams {
        assert!(line.contains(u.as_str()), "upstream {u} not tried: {line}");
    }
    assert!(
        nginx.error_log().contains("Connection refused"),
        "{}",
        nginx.error_log()
    );
}

/// A Flight handshake; the error nginx answers with shows when the response is read (tonic
/// hands out a streaming response on its headers).
async fn handshake(addr: &str) -> Result<(), tonic::Status> {
    let channel = qilin_tests::server::channel(addr).await;
    let mut client = arrow_flight::flight_service_client::FlightServiceClient::new(channel);
    let request = futures::stream::iter(vec![arrow_flight::HandshakeRequest::default()]);
    let mut stream = client.handshake(request).await?.into_inner();
    while stream.message().await?.is_some() {}
    Ok(())
}

#[test]
fn nginx_binary_is_found() {
    let exe = nginx_exe();
    let out = Command::new(&exe).arg("-V").output().unwrap();
    let build = String::from_utf8_lossy(&out.stderr);
    assert!(
        build.contains("--with-http_v2_module"),
        "{} lacks HTTP/2:\n{build}",
        exe.display()
    );
    assert!(
        !build.contains("--without-http_grpc_module"),
        "{} lacks the gRPC module:\n{build}",
        exe.display()
    );
}

/// `haproxy -c` on the shipped HAProxy config, when haproxy is installed (CI does not
/// install it).
#[test]
fn shipped_haproxy_cfg_is_valid_if_haproxy_is_installed() {
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/cluster/haproxy.cfg");
    let out = match Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipped: haproxy is not installed (apt-get install haproxy to check it)");
            return;
        }
        Err(e) => panic!("cannot run haproxy: {e}"),
    };
    assert!(
        out.status.success(),
        "haproxy -c rejects {}:\n{}{}",
        cfg.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The three cluster examples are valid Qilin configs with the documented roles.
#[test]
fn cluster_properties_parse() {
    use qilin_engine::config::{Config, ServerMode};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/cluster");
    let load = |name: &str| {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        Config::from_parts(&text, name, |_| None).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let job = load("job.properties");
    let q1 = load("query1.properties");
    let q2 = load("query2.properties");
    assert_eq!(job.cluster.mode, ServerMode::Job);
    assert_eq!(q1.cluster.mode, ServerMode::Query);
    assert_eq!(q2.cluster.mode, ServerMode::Query);
    assert_eq!((q1.cluster.port, q2.cluster.port), (7071, 7072));
    assert_eq!(
        (
            job.cluster.http_port,
            q1.cluster.http_port,
            q2.cluster.http_port
        ),
        (9100, 9101, 9102)
    );
    for c in [&job, &q1, &q2] {
        assert_eq!(c.stores.metadata_url, job.stores.metadata_url);
        assert_eq!(c.stores.storage_url, job.stores.storage_url);
        assert_eq!(c.security.token_secret, job.security.token_secret);
    }
}
