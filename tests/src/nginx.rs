//! nginx as the gRPC load balancer in tests: [`NginxProcess::start`] runs the shipped
//! `conf/cluster/nginx.conf` in a private prefix dir (pid file, logs and temp dirs inside
//! it), listening on a free port of 127.0.0.1 and balancing over the given upstreams.
//!
//! The config is the shipped file with only these changes (see [`harness_config`]): the
//! process settings (`daemon off; master_process on; worker_processes 1;` and `user root;`
//! when the tests run as root, so workers can read the temp dirs), the `listen` address,
//! and the upstream `server` lines (each given address with the shipped parameters).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::free_port;

/// The shipped load-balancer config.
pub fn shipped_config_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/cluster/nginx.conf")
}

/// How long nginx may take to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Ports tried when another process takes the chosen one first.
const PORT_ATTEMPTS: usize = 5;

/// A running nginx (master and one worker), stopped with SIGTERM when dropped.
pub struct NginxProcess {
    /// `127.0.0.1:PORT` nginx listens on (HTTP/2 cleartext, gRPC to the upstreams).
    pub addr: String,
    child: Option<Child>,
    prefix: tempfile::TempDir,
}

impl NginxProcess {
    /// Starts nginx balancing over `upstreams` (`host:port` each) and waits until it accepts
    /// connections. Panics (with nginx's error log) if it does not within [`START_TIMEOUT`].
    pub fn start(upstreams: &[String]) -> NginxProcess {
        assert!(!upstreams.is_empty(), "nginx needs at least one upstream");
        let exe = nginx_exe();
        let shipped = std::fs::read_to_string(shipped_config_path()).expect("read nginx.conf");
        let as_root = running_as_root();
        for attempt in 1..=PORT_ATTEMPTS {
            let prefix = new_prefix();
            let port = free_port();
            let conf = prefix.path().join("nginx.conf");
            std::fs::write(&conf, harness_config(&shipped, port, upstreams, as_root))
                .expect("write nginx config");
            let mut child = Command::new(&exe)
                .arg("-p")
                .arg(prefix.path())
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(prefix.path().join("logs/error.log"))
                .stdin(Stdio::null())
                .stdout(log_file(prefix.path(), "stdout.log"))
                .stderr(log_file(prefix.path(), "stderr.log"))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    // The socket is nginx's if nginx still runs and has written its pid file
                    // (it does so after binding its listening sockets).
                    let pid_file = prefix.path().join("logs/nginx.pid");
                    if matches!(child.try_wait(), Ok(None)) && read(&pid_file).ends_with('\n') {
                        return NginxProcess {
                            addr: addr.to_string(),
                            child: Some(child),
                            prefix,
                        };
                    }
                }
                if let Ok(Some(status)) = child.try_wait() {
                    let logs = startup_logs(prefix.path());
                    if logs.contains("Address already in use") && attempt < PORT_ATTEMPTS {
                        eprintln!("[nginx] port {port} taken, trying another one");
                        break;
                    }
                    panic!("nginx exited during startup ({status}):\n{logs}");
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "nginx did not accept connections on {addr} within {START_TIMEOUT:?}:\n{}",
                        startup_logs(prefix.path())
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        unreachable!("every attempt returns, retries or panics")
    }

    /// The port nginx listens on.
    pub fn port(&self) -> u16 {
        crate::process::port_of(&self.addr)
    }

    /// The prefix dir (config, logs, temp dirs).
    pub fn prefix(&self) -> &Path {
        self.prefix.path()
    }

    /// The config nginx runs with.
    pub fn config(&self) -> String {
        read(&self.prefix.path().join("nginx.conf"))
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        read(&self.prefix.path().join("logs/error.log"))
    }

    /// The access log so far: one line per call with `upstream=$upstream_addr` (every
    /// server tried, comma-separated), `$status` and `uri=$request_uri` (the gRPC method).
    /// nginx writes a line when a call ends.
    pub fn access_log(&self) -> String {
        read(&self.prefix.path().join("logs/access.log"))
    }

    /// Whether nginx still runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGTERM to the master (fast shutdown: it stops its workers, then exits) and waits;
    /// SIGKILL if it has not exited after 10 s. Does nothing once stopped.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for NginxProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The nginx binary: `nginx` on `PATH`, else `/usr/sbin/nginx` (root's `PATH` only has
/// `sbin`). Panics with how to install it when there is none.
pub fn nginx_exe() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nginx"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
        .unwrap_or_else(|| panic!("nginx is not installed: apt-get install nginx-light (or nginx)"))
}

/// `nginx -t` of `conf` with a fresh prefix dir (with a `logs/` dir): Ok(nginx's output) if
/// the config is valid, Err(output) if not.
pub fn check_config(conf: &Path) -> Result<String, String> {
    let prefix = new_prefix();
    let out = Command::new(nginx_exe())
        .arg("-t")
        .arg("-p")
        .arg(prefix.path())
        .arg("-c")
        .arg(conf)
        .arg("-e")
        .arg(prefix.path().join("logs/error.log"))
        .stdin(Stdio::null())
        .output()
        .expect("run nginx -t");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// The shipped config (`shipped`, the text of `conf/cluster/nginx.conf`) rewritten for a
/// test: process settings for a foreground master with one worker, `listen 127.0.0.1:PORT`,
/// and one upstream `server` line per entry of `upstreams`, with the parameters of the
/// shipped file's first server line. Panics if the shipped file lacks what it rewrites.
pub fn harness_config(shipped: &str, port: u16, upstreams: &[String], as_root: bool) -> String {
    let mut out = String::from(
        "# Generated by tests/src/nginx.rs from conf/cluster/nginx.conf.\n\
         daemon off;\nmaster_process on;\n",
    );
    if as_root {
        // Workers would run as `nobody` and could not use the (root-owned) temp dirs.
        out.push_str("user root;\n");
    }
    let (mut worker, mut listen, mut servers) = (false, false, false);
    for line in shipped.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let directive = trimmed.split_whitespace().next().unwrap_or("");
        match directive {
            "daemon" | "master_process" | "user" => {
                panic!("nginx.conf sets `{directive}`, which the test harness sets itself")
            }
            "worker_processes" => {
                out.push_str(indent);
                out.push_str("worker_processes 1;\n");
                worker = true;
            }
            "listen" => {
                assert!(!listen, "nginx.conf has more than one listen directive");
                out.push_str(&format!("{indent}listen 127.0.0.1:{port} http2;\n"));
                listen = true;
            }
            // An upstream member (`server ADDR [params];`), not a `server {` block.
            "server" if trimmed.trim_end().ends_with(';') => {
                if servers {
                    continue;
                }
                let params: Vec<&str> = trimmed
                    .trim_end()
                    .trim_end_matches(';')
                    .split_whitespace()
                    .skip(2)
                    .collect();
                for upstream in upstreams {
                    out.push_str(indent);
                    out.push_str("server ");
                    out.push_str(upstream);
                    for p in &params {
                        out.push(' ');
                        out.push_str(p);
                    }
                    out.push_str(";\n");
                }
                servers = true;
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    assert!(worker, "nginx.conf has no worker_processes directive");
    assert!(listen, "nginx.conf has no listen directive");
    assert!(servers, "nginx.conf has no upstream server lines");
    out
}

/// Whether this process runs as root (effective uid 0, from `/proc/self/status`).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// A temp dir laid out as an nginx prefix (with `logs/`).
fn new_prefix() -> tempfile::TempDir {
    let prefix = tempfile::Builder::new()
        .prefix("qilin-nginx-")
        .tempdir()
        .expect("nginx prefix dir");
    std::fs::create_dir(prefix.path().join("logs")).expect("nginx logs dir");
    prefix
}

fn log_file(prefix: &Path, name: &str) -> std::fs::File {
    std::fs::File::create(prefix.join("logs").join(name)).expect("create nginx output file")
}

fn startup_logs(prefix: &Path) -> String {
    let logs = prefix.join("logs");
    format!(
        "--- stderr ---\n{}--- error.log ---\n{}",
        read(&logs.join("stderr.log")),
        read(&logs.join("error.log"))
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
