//! Running `qilin-server` from tests: start a process on an ephemeral port, wait for its
//! "listening" line (no sleeps), connect a Flight SQL client with a handshake, and a shared
//! SSB installation (metadata + built cube) that every server test can point at.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use qilin_engine::model::SegmentStatus;
use qilin_engine::sample::ssb;
use tonic::transport::Channel;

use crate::process::{run_to_exit, ChildProcess, Spec};

/// The line `qilin-server` prints once its socket is bound.
pub const LISTENING_PREFIX: &str = "qilin-server listening on ";

/// The line `qilin-server` prints (before [`LISTENING_PREFIX`]) when its HTTP server is on.
pub const HTTP_PREFIX: &str = "qilin-server http on ";

/// The line `qilin-jobs serve` prints (before [`JOB_DAEMON_READY`]) when its HTTP server is on.
pub const JOB_HTTP_PREFIX: &str = "qilin-jobs http on ";

/// The line `qilin-jobs serve` prints once its job daemon runs.
pub const JOB_DAEMON_READY: &str = "qilin-jobs serve: job daemon started";

/// How long a server may take to start (it may build a sample first).
pub const START_TIMEOUT: Duration = Duration::from_secs(300);

/// Largest gRPC message the test clients accept or send; results and uploads in tests can
/// exceed tonic's 4 MiB default.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// A running Qilin binary (`qilin-server`, or `qilin-jobs serve` in cluster tests) with its
/// temp `kylin.properties`, killed when dropped; it can be killed and restarted with the same
/// configuration. The one launcher every server test uses.
pub struct ServerProcess {
    process: ChildProcess,
    /// `host:port` the server bound (the actual port, never 0; empty for a job daemon).
    pub addr: String,
    _conf_dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Writes `properties` to a temp conf file, starts `exe --conf FILE --port 0` and waits
    /// (up to [`START_TIMEOUT`]) for its "listening" line. Panics with the collected output if
    /// the server exits or stays silent.
    pub fn start(exe: &Path, properties: &str) -> ServerProcess {
        Self::start_with_args(exe, properties, &[])
    }

    /// Like [`ServerProcess::start`], with extra command-line arguments.
    pub fn start_with_args(exe: &Path, properties: &str, args: &[&str]) -> ServerProcess {
        Self::launch("qilin-server", exe, properties, 0, args, &[])
    }

    /// A `qilin-server` on a fixed `port` (named in other nodes' configuration before it
    /// starts), logging at `info`, labelled `label` in the captured output.
    pub fn on_port(label: &str, exe: &Path, properties: &str, port: u16) -> ServerProcess {
        Self::launch(label, exe, properties, port, &[], &[("RUST_LOG", "info")])
    }

    /// `qilin-jobs serve` with `properties` (ready once it prints that its daemon started).
    pub fn job_daemon(label: &str, properties: &str) -> ServerProcess {
        let (conf_dir, conf) = write_conf(properties);
        let spec = Spec::new(&crate::workspace_exe("qilin-jobs"))
            .arg("--conf")
            .arg(&conf)
            .arg("serve")
            .env("RUST_LOG", "info");
        let process = ChildProcess::start(label, spec, JOB_DAEMON_READY, START_TIMEOUT);
        ServerProcess {
            process,
            addr: String::new(),
            _conf_dir: conf_dir,
        }
    }

    fn launch(
        label: &str,
        exe: &Path,
        properties: &str,
        port: u16,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> ServerProcess {
        let (conf_dir, conf) = write_conf(properties);
        let mut spec = server_spec(exe, &conf, port, args);
        for (k, v) in env {
            spec = spec.env(k, v);
        }
        let process = ChildProcess::start(label, spec, LISTENING_PREFIX, START_TIMEOUT);
        let addr = process.ready_rest().to_string();
        ServerProcess {
            process,
            addr,
            _conf_dir: conf_dir,
        }
    }

    /// `grpc://host:port`, as ADBC and other Flight clients expect.
    pub fn uri(&self) -> String {
        format!("grpc://{}", self.addr)
    }

    /// The port the server bound.
    pub fn port(&self) -> u16 {
        crate::process::port_of(&self.addr)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the process again with the same configuration and command line.
    pub fn restart(&mut self) {
        self.process.restart();
        if !self.addr.is_empty() {
            self.addr = self.process.ready_rest().to_string();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// What the server printed so far.
    pub fn output(&self) -> String {
        self.process.output()
    }

    /// See [`ChildProcess::wait_for_output`].
    pub fn wait_for_output(&self, needle: &str, timeout: Duration) -> String {
        self.process.wait_for_output(needle, timeout)
    }

    /// `host:port` of the HTTP server (console, REST, health, metrics) as the last start
    /// printed it (`qilin-server http on …` / `qilin-jobs http on …`), or `None` when
    /// `kylin.server.http-port` is 0 (the harness default: see [`write_conf`]).
    pub fn http_addr(&self) -> Option<String> {
        let out = self.output();
        out.lines()
            .rev()
            .find_map(|l| {
                l.strip_prefix(HTTP_PREFIX)
                    .or_else(|| l.strip_prefix(JOB_HTTP_PREFIX))
            })
            .map(|a| a.trim().to_string())
    }
}

/// Runs `exe --conf FILE --port 0` expecting it to exit by itself (a refused start); returns
/// its exit status and combined output. Panics if it is still running after `timeout`.
pub fn run_server_to_exit(exe: &Path, properties: &str, timeout: Duration) -> (ExitStatus, String) {
    let (_conf_dir, conf) = write_conf(properties);
    run_to_exit("qilin-server", &server_spec(exe, &conf, 0, &[]), timeout)
}

/// `exe --conf CONF --port PORT ARGS...`.
fn server_spec(exe: &Path, conf: &Path, port: u16, args: &[&str]) -> Spec {
    Spec::new(exe)
        .arg("--conf")
        .arg(conf)
        .args(["--port", &port.to_string()])
        .args(args)
}

/// Writes `properties` to a temp `kylin.properties`, after `kylin.server.http-port=0`: the
/// HTTP server's default port (7080) would clash between tests running in parallel, so a test
/// turns it on by naming a port (e.g. [`crate::cluster::free_port`], as
/// [`SsbServer::start_with_http`] does); later keys win.
fn write_conf(properties: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir for the server config");
    let conf = dir.path().join("kylin.properties");
    std::fs::write(&conf, format!("kylin.server.http-port=0\n{properties}"))
        .expect("write server config");
    (dir, conf)
}

/// A gRPC channel to `addr` (`host:port`).
pub async fn channel(addr: impl Display) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("valid server address")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"))
}

/// A Flight SQL client on `addr` without credentials (accepting large messages).
pub async fn client(addr: impl Display) -> FlightSqlServiceClient<Channel> {
    let inner = FlightServiceClient::new(channel(addr).await)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    FlightSqlServiceClient::new_from_inner(inner)
}

/// A client that performed the Basic-auth handshake, or the handshake's error.
pub async fn try_connect(
    addr: impl Display,
    user: &str,
    pass: &str,
) -> Result<FlightSqlServiceClient<Channel>, FlightError> {
    let mut c = client(addr).await;
    c.handshake(user, pass).await?;
    Ok(c)
}

/// A client that performed the Basic-auth handshake (and so carries a bearer token).
pub async fn connect(
    addr: impl Display,
    user: &str,
    pass: &str,
) -> FlightSqlServiceClient<Channel> {
    let addr = addr.to_string();
    let c = try_connect(&addr, user, pass)
        .await
        .unwrap_or_else(|e| panic!("handshake with {addr} as {user} failed: {e}"));
    assert!(c.token().is_some(), "the server returned no bearer token");
    c
}

/// The gRPC status inside a Flight client error, if it kept one (the handshake helper of
/// `FlightSqlServiceClient` keeps only the text; use [`raw_handshake`] to see its code).
pub fn status_of(e: &FlightError) -> Option<tonic::Status> {
    match e {
        FlightError::Tonic(s) => Some(s.as_ref().clone()),
        FlightError::ExternalError(inner) => inner
            .downcast_ref::<FlightError>()
            .and_then(status_of)
            .or_else(|| inner.downcast_ref::<tonic::Status>().cloned()),
        _ => None,
    }
}

/// A Basic-auth handshake on a raw Flight client: the bearer token from the `authorization`
/// response header, or the gRPC status the server answered with.
pub async fn raw_handshake(
    addr: impl Display,
    user: &str,
    pass: &str,
) -> Result<String, tonic::Status> {
    let mut c = FlightServiceClient::new(channel(addr).await);
    let basic = base64_standard(format!("{user}:{pass}").as_bytes());
    let mut req = tonic::Request::new(futures::stream::iter(vec![
        arrow_flight::HandshakeRequest::default(),
    ]));
    req.metadata_mut().insert(
        "authorization",
        format!("Basic {basic}").parse().expect("ascii header"),
    );
    let resp = c.handshake(req).await?;
    let token = resp
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .ok_or_else(|| tonic::Status::internal("no bearer token in the handshake response"))?;
    Ok(token)
}

/// Standard padded base64 (what a Basic `authorization` header carries); written out here
/// to keep this test library's dependencies to the ones the workspace already builds.
pub fn base64_standard(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The temp dir of test binaries (`<target>/tmp`, what `CARGO_TARGET_TMPDIR` names for
/// integration tests), found from the running test executable (`<target>/<profile>/deps/x`)
/// because this library is not compiled with that variable.
pub fn target_tmp_dir() -> PathBuf {
    if let Some(dir) = option_env!("CARGO_TARGET_TMPDIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current test executable");
    match exe.parent().and_then(Path::parent).and_then(Path::parent) {
        Some(target) => target.join("tmp"),
        None => std::env::temp_dir().join("qilin-tests"),
    }
}

/// The shared SSB source directory at `scale` (see [`crate::shared_ssb_source`]).
pub async fn shared_ssb_source_dir(scale: f64) -> PathBuf {
    crate::shared_ssb_source(&target_tmp_dir(), scale).await
}

/// Bumped whenever what a build stores changes (v2: lookup snapshots and the table index), so
/// a store built by an older checkout in the same target dir is not reused.
const STORE_VERSION: u32 = 4;

/// A directory with `meta/` and `segments/` holding the SSB sample at `scale` registered and
/// its cube built (block rows 1000), over [`shared_ssb_source_dir`]. Built once and reused by
/// every test binary and run; a file lock serializes the build between processes. Servers
/// only read it, so tests may share it.
pub async fn shared_ssb_store(scale: f64) -> PathBuf {
    shared_store(scale, true).await
}

/// [`shared_ssb_store`] with the sample cube stripped of its table index: detail queries
/// (and aggregates no cuboid covers) are refused there unless pushdown is on.
pub async fn shared_ssb_store_without_table_index(scale: f64) -> PathBuf {
    shared_store(scale, false).await
}

async fn shared_store(scale: f64, table_index: bool) -> PathBuf {
    let base = target_tmp_dir();
    let source = shared_ssb_source_dir(scale).await;
    let name = if table_index {
        format!("ssb-store-v{STORE_VERSION}-{scale}")
    } else {
        format!("ssb-store-v{STORE_VERSION}-no-table-index-{scale}")
    };
    let dir = base.join(&name);
    let marker = dir.join("BUILT");
    let lock = std::fs::File::create(base.join(format!("{name}.lock"))).expect("lock file");
    lock.lock().expect("lock");
    if !marker.exists() {
        // Build under a temp name and publish by rename, so a crash never leaves a half store
        // that looks finished (metadata holds no absolute paths, so the rename is safe).
        let tmp = base.join(format!("{name}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).expect("create store dir");
        {
            let props = ssb_properties(&tmp, &source, "kylin.storage.block-rows=1000\n");
            let config = qilin_engine::config::Config::from_parts(&props, "test", |_| None)
                .expect("test config");
            let meta = qilin_engine::metadata::managers::Metadata::new(
                qilin_engine::metadata::open_store(&config.stores.metadata_url)
                    .expect("meta store"),
            );
            let segments = qilin_engine::storage::open_segment_store(&config.stores.storage_url)
                .expect("segment store");
            let engine = qilin_jobs::JobEngine::new(meta, segments, config.clone());
            ssb::install(
                engine.metadata(),
                &source,
                scale,
                config.cube.max_cuboids_per_group,
            )
            .await
            .expect("install SSB sample");
            if !table_index {
                let mut cube = ssb::cube();
                cube.table_index = None;
                qilin_engine::admin::documents::put_cube(
                    engine.metadata(),
                    &cube,
                    config.cube.max_cuboids_per_group,
                )
                .expect("put the cube without a table index");
            }
            let sub = engine
                .submit_build(ssb::CUBE, Some(ssb::full_range()))
                .expect("submit SSB build");
            engine
                .run(&sub.job().id, crate::quiet())
                .await
                .expect("build SSB cube");
            let (inst, _) = engine.metadata().cube_instance(ssb::CUBE).expect("cube");
            assert!(
                inst.segments
                    .iter()
                    .any(|s| s.status == SegmentStatus::Ready),
                "SSB segment not READY after the build"
            );
        }
        std::fs::write(tmp.join("BUILT"), scale.to_string()).expect("marker");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir).expect("publish built store");
    }
    dir
}

/// `kylin.properties` text for a server over `store_dir` (`meta/`, `segments/`) and
/// `source_dir`, with sample auto-creation off, followed by `extra` (later keys win).
pub fn ssb_properties(store_dir: &Path, source_dir: &Path, extra: &str) -> String {
    format!(
        "kylin.metadata.url={}\nkylin.storage.url={}\nkylin.source.url={}\nkylin.sample.auto-create=false\n{extra}\n",
        store_dir.join("meta").display(),
        store_dir.join("segments").display(),
        source_dir.display()
    )
}

/// Scale factor of the SSB sample the query tests run on.
pub const SCALE: f64 = 0.01;

/// A `qilin-server` (mode `query`) over the shared SSB SF 0.01 store with its cube built.
pub struct SsbServer {
    pub process: ServerProcess,
    /// The raw Parquet files' directory (what the oracle reads).
    pub source: PathBuf,
}

impl SsbServer {
    /// Starts a server; `extra` is appended to its `kylin.properties`.
    pub async fn start(extra: &str) -> SsbServer {
        Self::start_on(shared_ssb_store(SCALE).await, extra).await
    }

    /// Like [`SsbServer::start`], with the HTTP server (REST API, console) on a free port:
    /// [`SsbServer::http_addr`] is its `host:port`.
    pub async fn start_with_http(extra: &str) -> SsbServer {
        let port = crate::cluster::free_port();
        Self::start(&format!("kylin.server.http-port={port}\n{extra}")).await
    }

    /// `host:port` of the HTTP server; panics unless started by [`SsbServer::start_with_http`]
    /// (or with `kylin.server.http-port` set in `extra`).
    pub fn http_addr(&self) -> String {
        self.process.http_addr().unwrap_or_else(|| {
            panic!(
                "the server's HTTP server is off; output:\n{}",
                self.process.output()
            )
        })
    }

    /// An HTTP client of this server with the sample's ADMIN user (Basic auth).
    pub fn http(&self) -> crate::http::Http {
        crate::http::Http::basic(&self.http_addr(), "ADMIN", "KYLIN")
    }

    /// A server over [`shared_ssb_store_without_table_index`]: what cuboids do not answer is
    /// refused (or pushed down).
    pub async fn start_without_table_index(extra: &str) -> SsbServer {
        Self::start_on(shared_ssb_store_without_table_index(SCALE).await, extra).await
    }

    /// A private copy of the shared SSB store's metadata (`meta/`) in a new temp directory,
    /// for tests that write to it (users, grants, rules): the segments stay shared (read only).
    /// Returns the properties text for a server over the copy (plus `extra`) and the copy's
    /// `meta/` directory (what `qilin-jobs` commands and `Metadata` open).
    pub async fn private_meta_properties(extra: &str) -> (String, tempfile::TempDir, PathBuf) {
        let store = shared_ssb_store(SCALE).await;
        let source = shared_ssb_source_dir(SCALE).await;
        let dir = tempfile::tempdir_in(target_tmp_dir()).expect("temp dir");
        let meta = dir.path().join("meta");
        copy_dir(&store.join("meta"), &meta);
        let props = format!(
            "kylin.metadata.url={}\nkylin.storage.url={}\nkylin.source.url={}\nkylin.sample.auto-create=false\nkylin.server.mode=query\n{extra}\n",
            meta.display(),
            store.join("segments").display(),
            source.display()
        );
        (props, dir, meta)
    }

    /// A server over [`SsbServer::private_meta_properties`]: the returned `TempDir` must live
    /// as long as the server; the path is the private `meta/` directory.
    pub async fn start_private(extra: &str) -> (SsbServer, tempfile::TempDir, PathBuf) {
        let (props, dir, meta) = Self::private_meta_properties(extra).await;
        let source = shared_ssb_source_dir(SCALE).await;
        let exe = crate::server_exe();
        let process = tokio::task::spawn_blocking(move || ServerProcess::start(&exe, &props))
            .await
            .expect("start qilin-server");
        (SsbServer { process, source }, dir, meta)
    }

    async fn start_on(store: PathBuf, extra: &str) -> SsbServer {
        let source = shared_ssb_source_dir(SCALE).await;
        let props = ssb_properties(
            &store,
            &source,
            &format!("kylin.server.mode=query\n{extra}"),
        );
        let exe = crate::server_exe();
        let process = tokio::task::spawn_blocking(move || ServerProcess::start(&exe, &props))
            .await
            .expect("start qilin-server");
        SsbServer { process, source }
    }

    /// A client logged in as the sample's ADMIN user.
    pub async fn client(&self) -> crate::compare::Client {
        connect(&self.process.addr, "ADMIN", "KYLIN").await
    }
}

/// Copies a directory tree (regular files and directories only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}
