//! Process identity and liveness: which process runs a job or holds the job-engine lease
//! ([`Runner`]), and is it still alive? On the same host we ask the kernel (the pid exists
//! and started at the recorded time, so a reused pid does not count); for another host we
//! trust its heartbeat up to the orphan timeout.
//!
//! Reading `/proc` by hand (two small files) instead of a process-inspection crate: only the
//! pid's start time and zombie state are needed, and Qilin runs on Linux.

use qilin_engine::model::now_ms;
use serde::{Deserialize, Serialize};

/// A process of the cluster: the runner of a job, the holder of the job-engine lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Runner {
    pub host: String,
    pub pid: u32,
    /// Start time of the process (Linux clock ticks since boot), so a reused pid is not
    /// mistaken for the runner.
    #[serde(default)]
    pub start_ticks: u64,
    pub heartbeat_ms: i64,
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat), if it exists.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after its ')' are plain.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// This process as a job runner.
pub fn current_runner() -> Runner {
    let pid = std::process::id();
    Runner {
        host: hostname(),
        pid,
        start_ticks: start_ticks(pid).unwrap_or(0),
        heartbeat_ms: now_ms(),
    }
}

/// Whether `runner` is still running.
pub fn is_alive(runner: &Runner, orphan_timeout_seconds: u64) -> bool {
    if runner.host == hostname() {
        // A zombie (killed but not yet reaped by its parent) is dead for our purposes.
        let zombie = std::fs::read_to_string(format!("/proc/{}/stat", runner.pid))
            .ok()
            .and_then(|s| {
                s.rfind(')')
                    .map(|i| s[i + 1..].trim_start().starts_with('Z'))
            })
            .unwrap_or(false);
        return !zombie && start_ticks(runner.pid) == Some(runner.start_ticks);
    }
    now_ms() - runner.heartbeat_ms < (orphan_timeout_seconds as i64) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_pid_is_not() {
        let me = current_runner();
        assert!(is_alive(&me, 60));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let gone = Runner {
            pid,
            start_ticks: 1,
            ..me.clone()
        };
        assert!(!is_alive(&gone, 60));
        let reused = Runner {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(
            !is_alive(&reused, 60),
            "a pid with another start time is another process"
        );
        let remote = Runner {
            host: "elsewhere".into(),
            heartbeat_ms: now_ms() - 120_000,
            ..me
        };
        assert!(!is_alive(&remote, 60));
    }
}
