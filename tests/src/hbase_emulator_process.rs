//! Running `hbase-thrift-emulator` from tests: start it (on a given port or an ephemeral
//! one), wait for its "listening" line (no sleeps), kill it with SIGKILL and restart it on
//! the same port with the same snapshot file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::{ChildProcess, Spec};

pub use crate::hbase_emulator::LISTENING_PREFIX;

/// How long the emulator may take to start (replaying a large snapshot included).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `hbase-thrift-emulator`, killed when dropped.
pub struct EmulatorProcess {
    /// `host:port` the emulator bound (the actual port, never 0).
    pub addr: String,
    process: ChildProcess,
    exe: PathBuf,
    snapshot: Option<PathBuf>,
}

impl EmulatorProcess {
    /// Starts `exe --port PORT [--snapshot PATH]` (`port` 0: an ephemeral port) and waits up
    /// to [`START_TIMEOUT`] for its "listening" line. Panics with the collected output if the
    /// emulator exits or stays silent.
    pub fn start(exe: &Path, snapshot: Option<&Path>, port: u16) -> EmulatorProcess {
        let process = ChildProcess::start(
            "hbase-thrift-emulator",
            spec(exe, snapshot, port),
            LISTENING_PREFIX,
            START_TIMEOUT,
        );
        EmulatorProcess {
            addr: process.ready_rest().to_string(),
            process,
            exe: exe.to_path_buf(),
            snapshot: snapshot.map(Path::to_path_buf),
        }
    }

    /// The port the emulator bound.
    pub fn port(&self) -> u16 {
        crate::process::port_of(&self.addr)
    }

    /// Kills the process with SIGKILL (no chance to clean up) and waits for it to exit.
    /// Does nothing if it is already stopped.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Kills the process if it runs, then starts it again on the same port with the same
    /// snapshot file (so the same `addr` reaches the same data).
    pub fn restart(&mut self) {
        let spec = spec(&self.exe, self.snapshot.as_deref(), self.port());
        self.process.restart_with(spec);
        assert_eq!(
            self.process.ready_rest(),
            self.addr,
            "the emulator came back on another address"
        );
    }

    /// Whether the process is running (false after [`EmulatorProcess::kill`] or a crash).
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// What the emulator printed so far (across restarts).
    pub fn output(&self) -> String {
        self.process.output()
    }

    /// See [`ChildProcess::wait_for_output`].
    pub fn wait_for_output(&self, needle: &str, timeout: std::time::Duration) -> String {
        self.process.wait_for_output(needle, timeout)
    }
}

fn spec(exe: &Path, snapshot: Option<&Path>, port: u16) -> Spec {
    let spec = Spec::new(exe).args(["--host", "127.0.0.1", "--port", &port.to_string()]);
    match snapshot {
        Some(s) => spec.arg("--snapshot").arg(s),
        None => spec,
    }
}
