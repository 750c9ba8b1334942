//! The audit log: every sign-in, refused access, metadata change, grant and job action, with
//! user, time, instance and outcome, as JSON lines in the metadata store (bounded, rotated).
//!
//! Events go to `/audit/current.jsonl`; when it would pass `kylin.security.audit.max-bytes`
//! it is archived as `/audit/<millis>.jsonl` and the oldest archives beyond
//! `kylin.security.audit.max-files` are deleted. Appends are check-and-put retries, so
//! several processes share the log safely. Writes under `/audit/` do not move the store-wide
//! version (that would reload every server's caches on each sign-in).
//!
//! [`AuditLog::record`] only buffers: a background thread writes within about a second, so a
//! slow store never delays a caller.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::Result;
use crate::metadata::jsonl::{spawn_flusher, Buffered, JsonLines};
use crate::metadata::managers::Metadata;

pub const AUDIT_FOLDER: &str = "/audit";
pub const CURRENT_PATH: &str = "/audit/current.jsonl";
/// Events kept in memory while the store cannot be written; older ones are dropped (logged).
const MAX_BUFFERED: usize = 10_000;
const FLUSH_EVERY: Duration = Duration::from_millis(500);
const MAX_FIELD_CHARS: usize = 256;
const MAX_DETAIL_CHARS: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    /// Refused: bad credentials, a missing role, a denied table.
    Denied,
    /// Allowed but failed (bad input, a conflict).
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }
}

/// One audited event (one JSON line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub time: DateTime<Utc>,
    pub user: String,
    /// `kylin.server.instance-name` or host:port of the instance that saw it.
    pub instance: String,
    /// `sign-in`, `query`, `project.create`, `model.put`, `cube.build`, `job.discard`, `grant`, …
    pub action: String,
    /// What it was done to (`project ssb`, `cube ssb_sales`, `user alice`).
    pub target: String,
    pub outcome: Outcome,
    pub detail: String,
}

pub struct AuditLog {
    meta: Metadata,
    instance: String,
    max_bytes: u64,
    max_files: usize,
    buffer: Mutex<Vec<AuditEvent>>,
    /// Serializes flushes of this process (the store serializes processes).
    writing: Mutex<()>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    pub fn new(meta: Metadata, instance: impl Into<String>, config: &Config) -> Arc<AuditLog> {
        let log = Arc::new(AuditLog {
            meta,
            instance: instance.into(),
            max_bytes: config.security.audit_max_bytes,
            max_files: config.security.audit_max_files,
            buffer: Mutex::new(Vec::new()),
            writing: Mutex::new(()),
        });
        spawn_flusher("audit", Arc::downgrade(&log), FLUSH_EVERY);
        log
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Records an event; never fails or blocks the caller (buffered, written within a second).
    pub fn record(
        &self,
        user: &str,
        action: &str,
        target: &str,
        outcome: Outcome,
        detail: impl Into<String>,
    ) {
        let event = AuditEvent {
            time: Utc::now(),
            user: clip(user, MAX_FIELD_CHARS),
            instance: self.instance.clone(),
            action: clip(action, MAX_FIELD_CHARS),
            target: clip(target, MAX_FIELD_CHARS),
            outcome,
            detail: clip(&detail.into(), MAX_DETAIL_CHARS),
        };
        let mut buf = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        if buf.len() >= MAX_BUFFERED {
            buf.remove(0);
            log::warn!("audit: buffer full (store not writable?), dropping the oldest event");
        }
        buf.push(event);
    }

    /// Writes buffered events now.
    pub fn flush(&self) -> Result<()> {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let events = std::mem::take(&mut *self.buffer.lock().unwrap_or_else(|p| p.into_inner()));
        if events.is_empty() {
            return Ok(());
        }
        let mut lines = Vec::new();
        for e in &events {
            // Strings, an enum and a time only: serialization cannot fail.
            lines.extend(serde_json::to_vec(e).unwrap_or_default());
            lines.push(b'\n');
        }
        match self.append(&lines) {
            Ok(()) => Ok(()),
            Err(e) => {
                // Put them back in front of anything recorded meanwhile; retried next time.
                let mut buf = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
                let newer = std::mem::replace(&mut *buf, events);
                buf.extend(newer);
                let excess = buf.len().saturating_sub(MAX_BUFFERED);
                buf.drain(..excess);
                Err(e)
            }
        }
    }

    fn log(&self) -> JsonLines<'_> {
        JsonLines {
            store: self.meta.store().as_ref(),
            folder: AUDIT_FOLDER,
            max_bytes: self.max_bytes,
            max_files: self.max_files,
        }
    }

    fn append(&self, lines: &[u8]) -> Result<()> {
        self.log().append(lines)
    }

    /// Archives, oldest first.
    #[cfg(test)]
    fn archives(&self) -> Result<Vec<String>> {
        self.log().archives()
    }

    /// The newest `limit` events (oldest first), optionally of one user. Buffered events are
    /// written first.
    pub fn read(&self, limit: usize, user: Option<&str>) -> Result<Vec<AuditEvent>> {
        if let Err(e) = self.flush() {
            log::warn!("audit: {e}");
        }
        let files = self.log().files()?;
        let mut out: Vec<AuditEvent> = Vec::new();
        // Newest file first, each file's lines newest first.
        for path in files.iter().rev() {
            if out.len() >= limit {
                break;
            }
            let Some(r) = self.meta.store().get(path)? else {
                continue;
            };
            for line in r.data.split(|b| *b == b'\n').rev() {
                if out.len() >= limit {
                    break;
                }
                if line.is_empty() {
                    continue;
                }
                // A torn or foreign line is skipped, not fatal.
                let Ok(e) = serde_json::from_slice::<AuditEvent>(line) else {
                    continue;
                };
                if user.is_none_or(|u| e.user == u) {
                    out.push(e);
                }
            }
        }
        out.reverse();
        Ok(out)
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            log::warn!("audit: events lost at exit: {e}");
        }
    }
}

impl Buffered for AuditLog {
    fn pending(&self) -> bool {
        !self
            .buffer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    fn flush(&self) -> Result<()> {
        AuditLog::flush(self)
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(props: &str) -> (Arc<AuditLog>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let meta =
            Metadata::new(crate::metadata::open_store(dir.path().to_str().unwrap()).unwrap());
        let config = Config::from_parts(props, "test", |_| None).unwrap();
        (AuditLog::new(meta, "test:1", &config), dir)
    }

    #[test]
    fn records_flush_read_and_do_not_move_the_store_version() {
        let (log, _dir) = log_with("");
        let v0 = log.meta.store().store_version().unwrap();
        log.record("alice", "sign-in", "", Outcome::Ok, "");
        log.record("bob", "sign-in", "", Outcome::Denied, "bad password");
        log.record("alice", "cube.build", "cube ssb", Outcome::Ok, "");
        log.flush().unwrap();
        assert_eq!(log.meta.store().store_version().unwrap(), v0);
        let all = log.read(10, None).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].user, "alice");
        assert_eq!(all[1].outcome, Outcome::Denied);
        assert_eq!(all[2].action, "cube.build");
        assert_eq!(all[2].instance, "test:1");
        let alice = log.read(1, Some("alice")).unwrap();
        assert_eq!(alice.len(), 1);
        assert_eq!(alice[0].action, "cube.build");
    }

    #[test]
    fn the_background_thread_writes_within_a_second() {
        let (log, _dir) = log_with("");
        log.record("x", "sign-in", "", Outcome::Ok, "");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if log.meta.store().get(CURRENT_PATH).unwrap().is_some() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "not written");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn rotates_and_keeps_a_bounded_number_of_archives() {
        let (log, _dir) =
            log_with("kylin.security.audit.max-bytes=1024\nkylin.security.audit.max-files=2\n");
        for i in 0..60 {
            log.record(&format!("u{i}"), "sign-in", "", Outcome::Ok, "x".repeat(50));
            log.flush().unwrap();
        }
        let archives = log.archives().unwrap();
        assert_eq!(archives.len(), 2, "{archives:?}");
        let current = log.meta.store().get(CURRENT_PATH).unwrap().unwrap();
        assert!(current.data.len() <= 1024);
        let events = log.read(1000, None).unwrap();
        // The newest events survive in order; the oldest were rotated away.
        assert!(events.len() < 60 && events.len() >= 10, "{}", events.len());
        assert_eq!(events.last().unwrap().user, "u59");
        let users: Vec<usize> = events
            .iter()
            .map(|e| e.user[1..].parse().unwrap())
            .collect();
        assert!(users.windows(2).all(|w| w[1] == w[0] + 1), "{users:?}");
    }

    #[test]
    fn oversized_fields_are_clipped() {
        let (log, _dir) = log_with("");
        log.record(
            &"u".repeat(100_000),
            "sign-in",
            "",
            Outcome::Denied,
            "d".repeat(100_000),
        );
        let e = log.read(1, None).unwrap().pop().unwrap();
        assert!(e.user.chars().count() <= MAX_FIELD_CHARS + 1);
        assert!(e.detail.chars().count() <= MAX_DETAIL_CHARS + 1);
    }

    #[test]
    fn processes_appending_at_once_lose_nothing() {
        let (a, dir) = log_with("");
        let meta =
            Metadata::new(crate::metadata::open_store(dir.path().to_str().unwrap()).unwrap());
        let config = Config::from_parts("", "test", |_| None).unwrap();
        let b = AuditLog::new(meta, "test:2", &config);
        let threads: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .map(|log| {
                std::thread::spawn(move || {
                    for i in 0..20 {
                        log.record("u", "sign-in", &i.to_string(), Outcome::Ok, "");
                        log.flush().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(a.read(1000, None).unwrap().len(), 40);
    }
}
