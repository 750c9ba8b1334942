//! A Qilin cluster on loopback for tests: the HBase emulator as the shared store (with the SSB
//! sample registered), `qilin-server` and `qilin-jobs serve` processes on fixed ports (so
//! `kylin.rest.servers` can name them before they start), their metrics endpoints, and
//! in-process access to the shared store.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use qilin_engine::config::Config;
use qilin_engine::metadata::{managers::Metadata, open_store};
use qilin_engine::sample::ssb;
use qilin_engine::storage::open_segment_store;
use qilin_jobs::JobEngine;

use crate::hbase_emulator_process::EmulatorProcess;
use crate::server::ServerProcess;

/// The cluster secret every node shares in tests.
pub const SECRET: &str = "test-cluster-secret-0123456789abcdef";
/// Scale of the SSB data the cluster tests use.
pub const SF: f64 = 0.01;

/// A free TCP port on 127.0.0.1, for ports that must be written into configuration before
/// the process that binds them starts. Taken below the kernel's ephemeral range, so neither
/// an outgoing connection nor a port-0 bind of a parallel test can take it in between (a
/// port-0 probe could be handed out again at once), and never twice in one test process.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u32, u32::from(ephemeral_low));
    let mut given = GIVEN.lock().expect("given ports");
    if high > low + 1_000 {
        let span = high - low;
        let seed = std::process::id().wrapping_mul(2_654_435_761)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
        for i in 0..span {
            // 7_919 is prime, hence coprime with any span that is not a multiple of it.
            let port = (low + (seed.wrapping_add(i.wrapping_mul(7_919))) % span) as u16;
            if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                given.push(port);
                return port;
            }
        }
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    given.push(port);
    port
}

/// The shared store: an emulator with the SSB sample registered (no segment built yet).
pub struct SharedStore {
    pub emulator: EmulatorProcess,
    pub source: PathBuf,
    pub dir: tempfile::TempDir,
}

impl SharedStore {
    pub async fn new() -> SharedStore {
        let source = crate::server::shared_ssb_source_dir(SF).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let emulator = EmulatorProcess::start(
            &crate::emulator_exe(),
            Some(&dir.path().join("hbase.snapshot")),
            0,
        );
        let store = SharedStore {
            emulator,
            source,
            dir,
        };
        let config = store.config("");
        ssb::install(
            &store.meta(),
            &store.source,
            SF,
            config.cube.max_cuboids_per_group,
        )
        .await
        .expect("install the SSB sample");
        store
    }

    /// `kylin.properties` lines naming the shared store, the source and the secret.
    pub fn base_properties(&self) -> String {
        format!(
            "kylin.metadata.url=kylin_metadata@hbase://{addr}\n\
             kylin.storage.url=qilin_segments@hbase://{addr}\n\
             kylin.source.url={}\n\
             kylin.storage.block-rows=1000\n\
             kylin.sample.auto-create=false\n\
             kylin.security.token-secret={SECRET}\n",
            self.source.display(),
            addr = self.emulator.addr
        )
    }

    pub fn config(&self, extra: &str) -> Config {
        Config::from_parts(
            &format!("{}{extra}", self.base_properties()),
            "test",
            |_| None,
        )
        .expect("test config")
    }

    /// In-process access to the shared metadata.
    pub fn meta(&self) -> Metadata {
        Metadata::new(open_store(&self.config("").stores.metadata_url).expect("metadata store"))
    }

    /// An in-process job engine on the shared store (no lease: for setup and inspection).
    pub fn jobs(&self) -> JobEngine {
        let config = self.config("");
        JobEngine::new(
            self.meta(),
            open_segment_store(&config.stores.storage_url).expect("segment store"),
            config,
        )
    }
}

/// One node process (`qilin-server` via [`ServerProcess::on_port`], or `qilin-jobs serve` via
/// [`ServerProcess::job_daemon`]) with its config file; it can be killed and restarted with
/// the same configuration.
pub type Node = ServerProcess;

/// `GET path` on `127.0.0.1:port`: (status code, body). Panics if the endpoint is down.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to metrics port {port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read response");
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The value of one sample (`name` with its labels exactly as rendered, e.g.
/// `qilin_queries_total{outcome="ok"}`) in Prometheus text, or 0 when absent.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == sample).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

/// A metric of the node whose metrics endpoint is on `port`.
pub fn node_metric(port: u16, sample: &str) -> f64 {
    metric(&http_get(port, "/metrics").1, sample)
}

/// Polls `f` every 50 ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
