//! Running `qilin-server` from tests: start a process on an ephemeral port, wait for its
//! "listening" line (no sleeps), connect a Flight SQL client with a handshake, and a shared
//! SSB installation (metadata + built cube) that every server test can point at.

use std::fmt::Display;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use qilin_engine::model::SegmentStatus;
use qilin_engine::sample::ssb;
use tonic::transport::Channel;

/// The line `qilin-server` prints once its socket is bound.
pub const LISTENING_PREFIX: &str = "qilin-server listening on ";

/// How long a server may take to start (it may build a sample first).
pub const START_TIMEOUT: Duration = Duration::from_secs(300);

/// Largest gRPC message the test clients accept or send; results and uploads in tests can
/// exceed tonic's 4 MiB default.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// A running `qilin-server`, killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// `host:port` the server bound (the actual port, never 0).
    pub addr: String,
    /// Everything the process printed so far (stdout and stderr, interleaved by line).
    output: Arc<Mutex<String>>,
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
        let (conf_dir, conf) = write_conf(properties);
        let mut child = spawn(exe, &conf, args);
        let output = Arc::new(Mutex::new(String::new()));
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        drain(stdout, output.clone(), Some(lines_tx));
        drain(stderr, output.clone(), None);

        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix(LISTENING_PREFIX) {
                        break addr.trim().to_string();
                    }
                }
                Err(e) => {
                    // Stdout closed (the process exited) or the deadline passed.
                    let _ = child.kill();
                    let status = child.wait().ok();
                    // Give the stderr drain a moment to collect the last lines.
                    std::thread::sleep(Duration::from_millis(100));
                    panic!(
                        "qilin-server did not report listening ({e:?}; exit status {status:?}); output:\n{}",
                        output.lock().unwrap_or_else(|p| p.into_inner())
                    );
                }
            }
        };
        ServerProcess {
            child,
            addr,
            output,
            _conf_dir: conf_dir,
        }
    }

    /// `grpc://host:port`, as ADBC and other Flight clients expect.
    pub fn uri(&self) -> String {
        format!("grpc://{}", self.addr)
    }

    /// The port the server bound.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("listening address has a port")
    }

    /// What the server printed so far.
    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `exe --conf FILE --port 0` expecting it to exit by itself (a refused start); returns
/// its exit status and combined output. Panics if it is still running after `timeout`.
pub fn run_server_to_exit(exe: &Path, properties: &str, timeout: Duration) -> (ExitStatus, String) {
    let (_conf_dir, conf) = write_conf(properties);
    let mut child = spawn(exe, &conf, &[]);
    let output = Arc::new(Mutex::new(String::new()));
    let out_thread = drain(child.stdout.take().expect("stdout"), output.clone(), None);
    let err_thread = drain(child.stderr.take().expect("stderr"), output.clone(), None);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for qilin-server") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "qilin-server still running after {timeout:?}; output:\n{}",
                output.lock().unwrap_or_else(|p| p.into_inner())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = out_thread.join();
    let _ = err_thread.join();
    let text = output.lock().unwrap_or_else(|p| p.into_inner()).clone();
    (status, text)
}

/// `exe --conf CONF --port 0 ARGS...` with piped output.
fn spawn(exe: &Path, conf: &Path, args: &[&str]) -> Child {
    Command::new(exe)
        .arg("--conf")
        .arg(conf)
        .args(["--port", "0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()))
}

fn write_conf(properties: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir for the server config");
    let conf = dir.path().join("kylin.properties");
    std::fs::write(&conf, properties).expect("write server config");
    (dir, conf)
}

/// Copies a child's output into `sink` line by line (and to the test's stderr, which the test
/// harness captures), optionally forwarding each line to `lines`.
fn drain(
    stream: impl Read + Send + 'static,
    sink: Arc<Mutex<String>>,
    lines: Option<mpsc::Sender<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            eprintln!("[qilin-server] {line}");
            {
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
            if let Some(tx) = &lines {
                let _ = tx.send(line);
            }
        }
    })
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

/// A directory with `meta/` and `segments/` holding the SSB sample at `scale` registered and
/// its cube built (block rows 1000), over [`shared_ssb_source_dir`]. Built once and reused by
/// every test binary and run; a file lock serializes the build between processes. Servers
/// only read it, so tests may share it.
pub async fn shared_ssb_store(scale: f64) -> PathBuf {
    let base = target_tmp_dir();
    let source = shared_ssb_source_dir(scale).await;
    let dir = base.join(format!("ssb-store-{scale}"));
    let marker = dir.join("BUILT");
    let lock =
        std::fs::File::create(base.join(format!("ssb-store-{scale}.lock"))).expect("lock file");
    lock.lock().expect("lock");
    if !marker.exists() {
        // Build under a temp name and publish by rename, so a crash never leaves a half store
        // that looks finished (metadata holds no absolute paths, so the rename is safe).
        let tmp = base.join(format!("ssb-store-{scale}.tmp"));
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
