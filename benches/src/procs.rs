//! Child processes: finding the Qilin executables, the timed cube build with its peak RSS,
//! and a `qilin-server` that is stopped when dropped.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The line `qilin-server` prints once its socket is bound.
pub const LISTENING_PREFIX: &str = "qilin-server listening on ";
/// How long the server may take to start.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a server's first warm-up may take before timing starts anyway.
pub const WARM_UP_TIMEOUT: Duration = Duration::from_secs(120);
/// Log lines that end a server's first warm-up: done, off, or failed (`WARM_DONE`, the
/// "warm-up off" lines and `WARM_FAILED` of `flight-server/src/warm.rs`).
const WARM_UP_ENDS: [&str; 3] = ["warm-up done: ", "warm-up off", "warm-up failed: "];
/// Interval of the `/proc/<pid>/status` polling.
pub const POLL: Duration = Duration::from_millis(100);
const BUILD_HINT: &str = "build it with `cargo build --release -p qilin-server -p qilin-jobs`";

/// `explicit`, or `name` next to the running executable; an error saying how to build it.
pub fn locate(name: &str, explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .context("locating the qilin-bench executable")?
            .parent()
            .map(|d| d.join(name))
            .context("the qilin-bench executable has no parent directory")?,
    };
    if !path.is_file() {
        bail!(
            "{name} not found at {} ({BUILD_HINT}, or pass its path)",
            path.display()
        );
    }
    Ok(path)
}

/// A command without inherited `KYLIN_*` variables (they would override the config file).
fn command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("KYLIN_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// Peak resident set (`VmHWM`) of a live process, in bytes.
pub fn vm_hwm(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Keeps the maximum of `VmHWM` of `pid` in `peak` until `stop` is set.
fn poll_hwm(pid: u32, peak: Arc<AtomicU64>, stop: Arc<std::sync::atomic::AtomicBool>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Some(v) = vm_hwm(pid) {
                peak.fetch_max(v, Ordering::Relaxed);
            }
            std::thread::sleep(POLL);
        }
    });
}

/// Runs `jobs --conf CONF sample --scale SCALE`: wall seconds and peak RSS in bytes (from
/// GNU `/usr/bin/time -f %M` when present, else the max of `VmHWM` polled every 100 ms).
pub fn run_build(
    jobs: &Path,
    conf: &Path,
    scale: f64,
    work: &Path,
) -> anyhow::Result<(f64, Option<u64>)> {
    let time = Path::new("/usr/bin/time");
    let rss_file = work.join("build-rss.txt");
    let _ = std::fs::remove_file(&rss_file);
    let use_time = time.is_file();
    let mut cmd = if use_time {
        let mut c = command(time);
        c.args(["-f", "%M", "-o"]).arg(&rss_file).arg(jobs);
        c
    } else {
        command(jobs)
    };
    cmd.arg("--conf")
        .arg(conf)
        .args(["sample", "--scale", &scale.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", jobs.display()))?;
    let peak = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if !use_time {
        poll_hwm(child.id(), peak.clone(), stop.clone());
    }
    let out = collect(child.stdout.take().context("piped stdout")?);
    let err = collect(child.stderr.take().context("piped stderr")?);
    let status = child.wait().context("waiting for qilin-jobs")?;
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let output = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    if !status.success() {
        bail!(
            "`{} --conf {} sample --scale {scale}` failed ({status}); output:\n{output}",
            jobs.display(),
            conf.display()
        );
    }
    let rss = if use_time {
        std::fs::read_to_string(&rss_file)
            .ok()
            .and_then(|t| t.lines().last().and_then(|l| l.trim().parse::<u64>().ok()))
            .map(|kb| kb * 1024)
    } else {
        Some(peak.load(Ordering::Relaxed)).filter(|&v| v > 0)
    };
    Ok((seconds, rss))
}

fn collect(stream: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stream).read_to_string(&mut s);
        s
    })
}

/// A running `qilin-server`, killed when dropped.
pub struct Server {
    child: Child,
    /// `host:port` it listens on.
    pub addr: String,
    peak: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Its log lines, until [`Server::wait_for_warm_up`] stops listening.
    log: Mutex<Option<mpsc::Receiver<String>>>,
}

impl Server {
    /// Starts `exe --conf CONF --port 0` and waits for its listening line.
    pub fn start(exe: &Path, conf: &Path) -> anyhow::Result<Server> {
        let conf = conf.as_os_str();
        Server::spawn(
            exe,
            &[conf, "--port".as_ref(), "0".as_ref()],
            LISTENING_PREFIX,
        )
    }

    /// Starts `exe --conf ARGS…` (a Qilin process) and waits for the stdout line starting
    /// with `ready_prefix`; `addr` is the rest of that line.
    pub fn spawn(
        exe: &Path,
        args: &[&std::ffi::OsStr],
        ready_prefix: &str,
    ) -> anyhow::Result<Server> {
        let name = exe.file_name().unwrap_or_default().to_string_lossy();
        let mut child = command(exe)
            .arg("--conf")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        drain(
            child.stdout.take().context("piped stdout")?,
            tail.clone(),
            Some(tx),
        );
        let (log_tx, log_rx) = mpsc::channel();
        drain(
            child.stderr.take().context("piped stderr")?,
            tail.clone(),
            Some(log_tx),
        );
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(a) = line.strip_prefix(ready_prefix) {
                        break a.trim().to_string();
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    std::thread::sleep(Duration::from_millis(100));
                    let tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                    let text: Vec<&str> = tail.iter().map(String::as_str).collect();
                    bail!(
                        "{name} did not print {ready_prefix:?} ({e}; exit status {status:?}); last output:\n{}",
                        text.join("\n")
                    );
                }
            }
        };
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        poll_hwm(child.id(), peak.clone(), stop.clone());
        Ok(Server {
            child,
            addr,
            peak,
            stop,
            log: Mutex::new(Some(log_rx)),
        })
    }

    /// Waits until the server's first background warm-up ended (it answers queries before
    /// that, but its warm-up shares the cores with them): hot figures are then hot. Returns
    /// how long it waited; gives up after [`WARM_UP_TIMEOUT`] with a warning. The first run
    /// after a start is measured on servers of its own (`adbc::cold`), without waiting.
    pub fn wait_for_warm_up(&self) -> Duration {
        let start = Instant::now();
        let deadline = start + WARM_UP_TIMEOUT;
        // Taken: once the wait is over nobody reads the log, and its lines are dropped.
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(log) = log else {
            return Duration::ZERO;
        };
        loop {
            match log.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if WARM_UP_ENDS.iter().any(|end| line.contains(end)) => break,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    eprintln!(
                        "qilin-server's warm-up did not end within {WARM_UP_TIMEOUT:?}: timing anyway"
                    );
                    break;
                }
                // The server's log closed: it exited, and the first query will say why.
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        start.elapsed()
    }

    /// The server's peak RSS so far (its `VmHWM`, and the polled maximum).
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        let now = vm_hwm(self.child.id()).unwrap_or(0);
        Some(now.max(self.peak.load(Ordering::Relaxed))).filter(|&v| v > 0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards lines to `lines` and keeps the last 50 in `tail` (for error messages); logged at
/// debug level.
fn drain(
    stream: impl Read + Send + 'static,
    tail: Arc<Mutex<VecDeque<String>>>,
    lines: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            log::debug!("[qilin-server] {line}");
            {
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                if t.len() == 50 {
                    t.pop_front();
                }
                t.push_back(line.clone());
            }
            if let Some(tx) = &lines {
                let _ = tx.send(line);
            }
        }
    });
}

/// Total size of the files under `dir`, recursively (0 if missing).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Total size of `dir/*.parquet`.
pub fn parquet_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}
