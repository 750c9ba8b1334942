//! Bounded, rotated JSON-lines logs in the metadata store (the audit log, the query history).
//!
//! A log is a folder: lines are appended to `<folder>/current.jsonl`; when an append would
//! pass `max_bytes` the current file is archived as `<folder>/<millis>.jsonl` and the oldest
//! archives beyond `max_files` are deleted. Appends are check-and-put retries, so several
//! processes share a log without losing lines. Such folders must be left out of the
//! store-wide version ([`super::moves_store_version`]) and of backups.
//!
//! Writers buffer in memory and flush from a background thread ([`spawn_flusher`]), so a
//! slow store never delays the caller.

use std::sync::Weak;
use std::time::Duration;

use chrono::Utc;

use super::ResourceStore;
use crate::error::{Error, Result};

const CURRENT_FILE: &str = "current.jsonl";
const MAX_APPEND_ATTEMPTS: usize = 100;

/// One rotated log: its folder in `store` and its bounds.
pub(crate) struct JsonLines<'a> {
    pub store: &'a dyn ResourceStore,
    /// `/audit`, `/query_history/ssb/ssb_cube` (no trailing `/`).
    pub folder: &'a str,
    pub max_bytes: u64,
    pub max_files: usize,
}

/// The file a log's folder appends to.
pub(crate) fn current_path(folder: &str) -> String {
    format!("{folder}/{CURRENT_FILE}")
}

impl JsonLines<'_> {
    /// Appends `lines` (whole lines, each ending in `\n`), rotating first when they would
    /// make the current file pass `max_bytes`.
    pub fn append(&self, lines: &[u8]) -> Result<()> {
        let current_path = current_path(self.folder);
        for _ in 0..MAX_APPEND_ATTEMPTS {
            let current = self.store.get(&current_path)?;
            let (mut data, version) = match current {
                Some(r) => (r.data, Some(r.version)),
                None => (Vec::new(), None),
            };
            if !data.is_empty() && (data.len() + lines.len()) as u64 > self.max_bytes {
                // Archive first, then swap: a lost race deletes the archive and retries, so
                // no line is archived twice or lost.
                let archive = self.archive(&data)?;
                match self.store.check_and_put(&current_path, lines, version) {
                    Ok(_) => {
                        self.prune()?;
                        return Ok(());
                    }
                    Err(Error::Conflict { .. }) => {
                        self.store.check_and_delete(&archive, None)?;
                        continue;
                    }
                    Err(e) => {
                        self.store.check_and_delete(&archive, None)?;
                        return Err(e);
                    }
                }
            }
            data.extend_from_slice(lines);
            match self.store.check_and_put(&current_path, &data, version) {
                Ok(_) => return Ok(()),
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Refused(format!(
            "{current_path} changed {MAX_APPEND_ATTEMPTS} times while appending to it"
        )))
    }

    /// Writes `data` as a new archive named by the time (a later millisecond if taken).
    fn archive(&self, data: &[u8]) -> Result<String> {
        let mut millis = Utc::now().timestamp_millis().max(0);
        loop {
            let path = format!("{}/{millis:013}.jsonl", self.folder);
            match self.store.check_and_put(&path, data, None) {
                Ok(_) => return Ok(path),
                Err(Error::Conflict { .. }) => millis += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Archives, oldest first.
    pub fn archives(&self) -> Result<Vec<String>> {
        let current = current_path(self.folder);
        let mut a: Vec<String> = self
            .store
            .list(self.folder)?
            .into_iter()
            .filter(|p| *p != current && p.ends_with(".jsonl"))
            .collect();
        a.sort();
        Ok(a)
    }

    /// Every file of the log, oldest first (the archives, then the current file).
    pub fn files(&self) -> Result<Vec<String>> {
        let mut files = self.archives()?;
        files.push(current_path(self.folder));
        Ok(files)
    }

    fn prune(&self) -> Result<()> {
        let archives = self.archives()?;
        let excess = archives.len().saturating_sub(self.max_files);
        for p in &archives[..excess] {
            self.store.check_and_delete(p, None)?;
        }
        Ok(())
    }
}

/// A writer that buffers lines in memory and writes them on [`Buffered::flush`].
pub(crate) trait Buffered: Send + Sync + 'static {
    /// Whether anything waits to be written.
    fn pending(&self) -> bool;
    /// Writes what is buffered (what fails stays buffered for the next attempt).
    fn flush(&self) -> Result<()>;
}

/// Starts a thread that flushes `log` every `every` while it has something buffered, until
/// `log` is dropped. `name` names the thread and the log in warnings. Returns false (and
/// warns) when no thread could be started: the writer then writes on flush and on drop only.
pub(crate) fn spawn_flusher<T: Buffered>(name: &str, log: Weak<T>, every: Duration) -> bool {
    let label = name.to_string();
    let spawned = std::thread::Builder::new()
        .name(format!("qilin-{name}"))
        .spawn(move || loop {
            std::thread::sleep(every);
            let Some(log) = log.upgrade() else { return };
            if log.pending() {
                if let Err(e) = log.flush() {
                    log::warn!("{label}: cannot write (will retry): {e}");
                }
            }
        });
    if let Err(e) = spawned {
        log::warn!("{name}: no background writer ({e}); lines are written on flush()");
        return false;
    }
    true
}
