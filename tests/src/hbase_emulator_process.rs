//! Running `hbase-thrift-emulator` from tests: start it (on a given port or an ephemeral
//! one), wait for its "listening" line (no sleeps), kill it with SIGKILL and restart it on
//! the same port with the same snapshot file.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::hbase_emulator::LISTENING_PREFIX;

/// How long the emulator may take to start (replaying a large snapshot included).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `hbase-thrift-emulator`, killed when dropped.
pub struct EmulatorProcess {
    /// `host:port` the emulator bound (the actual port, never 0).
    pub addr: String,
    child: Option<Child>,
    exe: PathBuf,
    snapshot: Option<PathBuf>,
    /// Everything the process printed so far (stdout and stderr, by line), across restarts.
    output: Arc<Mutex<String>>,
}

impl EmulatorProcess {
    /// Starts `exe --port PORT [--snapshot PATH]` (`port` 0: an ephemeral port) and waits up
    /// to [`START_TIMEOUT`] for its "listening" line. Panics with the collected output if the
    /// emulator exits or stays silent.
    pub fn start(exe: &Path, snapshot: Option<&Path>, port: u16) -> EmulatorProcess {
        let output = Arc::new(Mutex::new(String::new()));
        let (child, addr) = launch(exe, snapshot, port, &output);
        EmulatorProcess {
            addr,
            child: Some(child),
            exe: exe.to_path_buf(),
            snapshot: snapshot.map(Path::to_path_buf),
            output,
        }
    }

    /// The port the emulator bound.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("listening address has a port")
    }

    /// Kills the process with SIGKILL (no chance to clean up) and waits for it to exit.
    /// Does nothing if it is already stopped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` sends SIGKILL on Unix.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process if it runs, then starts it again on the same port with the same
    /// snapshot file (so the same `addr` reaches the same data).
    pub fn restart(&mut self) {
        self.kill();
        let (child, addr) = launch(
            &self.exe,
            self.snapshot.as_deref(),
            self.port(),
            &self.output,
        );
        assert_eq!(addr, self.addr, "the emulator came back on another address");
        self.child = Some(child);
    }

    /// Whether the process is running (false after [`EmulatorProcess::kill`] or a crash).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// What the emulator printed so far.
    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn launch(
    exe: &Path,
    snapshot: Option<&Path>,
    port: u16,
    output: &Arc<Mutex<String>>,
) -> (Child, String) {
    let mut cmd = Command::new(exe);
    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()]);
    if let Some(s) = snapshot {
        cmd.arg("--snapshot").arg(s);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    drain(
        child.stdout.take().expect("piped stdout"),
        output.clone(),
        Some(lines_tx),
    );
    drain(
        child.stderr.take().expect("piped stderr"),
        output.clone(),
        None,
    );
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines_rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(addr) = line.strip_prefix(LISTENING_PREFIX) {
                    return (child, addr.trim().to_string());
                }
            }
            Err(e) => {
                // Stdout closed (the process exited) or the deadline passed.
                let _ = child.kill();
                let status = child.wait().ok();
                // Give the stderr drain a moment to collect the last lines.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "hbase-thrift-emulator did not report listening ({e:?}; exit status {status:?}); output:\n{}",
                    output.lock().unwrap_or_else(|p| p.into_inner())
                );
            }
        }
    }
}

/// Copies a child's output into `sink` line by line (and to the test's stderr, which the test
/// harness captures), optionally forwarding each line to `lines`.
fn drain(
    stream: impl Read + Send + 'static,
    sink: Arc<Mutex<String>>,
    lines: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            eprintln!("[hbase-thrift-emulator] {line}");
            {
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
            if let Some(tx) = &lines {
                let _ = tx.send(line);
            }
        }
    });
}
