//! The one way tests run a long-lived child process (`qilin-server`, `qilin-jobs serve`,
//! `hbase-thrift-emulator`): spawn it with piped output, wait for its readiness line (never a
//! fixed sleep), and keep draining what it prints into a log (and the test's captured stderr,
//! prefixed with a label). It can be killed with SIGKILL and started again with the same
//! command line.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A command line to run: the executable, its arguments and extra environment variables.
#[derive(Debug, Clone)]
pub struct Spec {
    pub exe: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
}

impl Spec {
    pub fn new(exe: &Path) -> Spec {
        Spec {
            exe: exe.to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Spec {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Spec
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Spec {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Starts the command with stdin closed and both output streams piped into `log` (each
    /// line also to stderr, prefixed with `[label]`); stdout lines also go to the returned
    /// receiver. Returns the child and the two drain threads.
    fn spawn(
        &self,
        label: &str,
        log: &Arc<Mutex<String>>,
    ) -> (
        Child,
        mpsc::Receiver<String>,
        [std::thread::JoinHandle<()>; 2],
    ) {
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.exe.display()));
        let (tx, rx) = mpsc::channel();
        let out = drain(
            child.stdout.take().expect("piped stdout"),
            label,
            log.clone(),
            Some(tx),
        );
        let err = drain(
            child.stderr.take().expect("piped stderr"),
            label,
            log.clone(),
            None,
        );
        (child, rx, [out, err])
    }
}

/// A running child process, killed (SIGKILL) when dropped.
pub struct ChildProcess {
    pub label: String,
    spec: Spec,
    ready_prefix: String,
    timeout: Duration,
    child: Option<Child>,
    /// What follows the readiness prefix on the readiness line (e.g. the bound address).
    ready_rest: String,
    /// Everything the process printed (stdout and stderr, by line), across restarts.
    log: Arc<Mutex<String>>,
}

impl ChildProcess {
    /// Starts `spec` and waits up to `timeout` for a stdout line starting with `ready_prefix`.
    /// Panics with the collected output if the process exits or stays silent.
    pub fn start(label: &str, spec: Spec, ready_prefix: &str, timeout: Duration) -> ChildProcess {
        let mut p = ChildProcess {
            label: label.to_string(),
            spec,
            ready_prefix: ready_prefix.to_string(),
            timeout,
            child: None,
            ready_rest: String::new(),
            log: Arc::new(Mutex::new(String::new())),
        };
        p.launch();
        p
    }

    fn launch(&mut self) {
        let (mut child, lines, _drains) = self.spec.spawn(&self.label, &self.log);
        let deadline = Instant::now() + self.timeout;
        loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(&self.ready_prefix) {
                        self.ready_rest = rest.trim().to_string();
                        break;
                    }
                }
                Err(e) => {
                    // Stdout closed (the process exited) or the deadline passed.
                    let _ = child.kill();
                    let status = child.wait().ok();
                    // Give the stderr drain a moment to collect the last lines.
                    std::thread::sleep(Duration::from_millis(100));
                    panic!(
                        "{} did not print {:?} ({e:?}; exit status {status:?}); output:\n{}",
                        self.label,
                        self.ready_prefix,
                        self.output()
                    );
                }
            }
        }
        self.child = Some(child);
    }

    /// What followed the readiness prefix on the readiness line (trimmed).
    pub fn ready_rest(&self) -> &str {
        &self.ready_rest
    }

    /// SIGKILL (no chance to clean up), and wait for the process to be gone. Does nothing if
    /// it is already stopped.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // `Child::kill` sends SIGKILL on Unix.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the process if it runs, then starts the same command line again and waits for
    /// its readiness line.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Like [`ChildProcess::restart`], with another command line from now on (e.g. the port
    /// the first start was given by the kernel instead of 0).
    pub fn restart_with(&mut self, spec: Spec) {
        self.kill();
        self.spec = spec;
        self.launch();
    }

    /// Whether the process is running (false after [`ChildProcess::kill`] or a crash).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the process printed so far.
    pub fn output(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Polls the output until it contains `needle` and returns it; panics with the output
    /// after `timeout`. For stderr lines (log records): another thread drains stderr than
    /// the readiness line's stdout, so a line logged before the readiness line may arrive
    /// after it.
    pub fn wait_for_output(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let output = self.output();
            if output.contains(needle) {
                return output;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not print {needle:?} within {timeout:?}; output:\n{output}",
                self.label
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The port of a `host:port` address a process reported.
pub fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("address {addr:?} has no port"))
}

/// Runs `spec` expecting it to exit by itself; returns its exit status and combined output.
/// Panics if it is still running after `timeout`.
pub fn run_to_exit(label: &str, spec: &Spec, timeout: Duration) -> (ExitStatus, String) {
    let log = Arc::new(Mutex::new(String::new()));
    let (mut child, _lines, drains) = spec.spawn(label, &log);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{label} still running after {timeout:?}; output:\n{}",
                log.lock().unwrap_or_else(|p| p.into_inner())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for d in drains {
        let _ = d.join();
    }
    let text = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    (status, text)
}

/// Copies a child's output into `sink` line by line (and to the test's stderr, which the test
/// harness captures), optionally forwarding each line to `lines`.
fn drain(
    stream: impl Read + Send + 'static,
    label: &str,
    sink: Arc<Mutex<String>>,
    lines: Option<mpsc::Sender<String>>,
) -> std::thread::JoinHandle<()> {
    let label = label.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            eprintln!("[{label}] {line}");
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
