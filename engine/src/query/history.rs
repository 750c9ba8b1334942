//! The query history: per cube-answered aggregate of every query run, the cuboid it wanted
//! (its exact dimension set) and the cuboid it read, for the cube planner
//! (`qilin-jobs cube optimize`), which adds cuboids where many queries read far more rows than
//! they needed.
//!
//! One JSON line per aggregate ([`QueryRecord`]) under
//! `/query_history/<project>/<cube>/current.jsonl` in the metadata store, rotated like the
//! audit log (`kylin.query.history.max-bytes`, `kylin.query.history.max-files`; see
//! [`crate::metadata::jsonl`]), not moving the store version and not backed up. Recording
//! only buffers in memory; a background thread writes about once a second. Results served
//! from the result cache read no cuboid and are not recorded; snapshots and table indexes
//! are not cuboids and are not recorded either.
//!
//! The same comparison gives the fallback signal ([`CuboidUse::fallback`]): EXPLAIN, the REST
//! response and the console say when a query read a much larger cuboid than it needed.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use datafusion::arrow::array::RecordBatch;
use futures::Stream;
use serde::{Deserialize, Serialize};

use super::catalog::{Realization, Snapshot};
use super::rewrite::Realized;
use super::BatchStream;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::metadata::jsonl::{spawn_flusher, Buffered, JsonLines};
use crate::metadata::{validate_path, ResourceStore};
use crate::model::{cuboid, CuboidId};

pub const HISTORY_FOLDER: &str = "/query_history";
/// Records kept in memory while the store cannot be written; older ones are dropped.
const MAX_BUFFERED: usize = 10_000;
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// A cuboid is "much larger" than the one a query wanted when it has at least this many
/// times the rows the wanted cuboid has (or at most would have, see
/// [`CuboidUse::wanted_rows`])…
pub const FALLBACK_RATIO: u64 = 2;
/// …and at least this many rows more: below that a scan costs well under a millisecond and
/// no cuboid is worth adding for it.
pub const FALLBACK_MIN_EXTRA_ROWS: u64 = 10_000;

/// One line of the history: one cube-answered aggregate of one query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryRecord {
    /// When the query ended (RFC 3339).
    pub time: DateTime<Utc>,
    pub project: String,
    pub cube: String,
    /// The exact dimension set the aggregate needed, as a cuboid id (bits over the rowkey,
    /// see [`crate::model::cuboid::bit`]); it may be a cuboid the cube does not build.
    pub wanted: CuboidId,
    /// The rowkey columns of `wanted`, in rowkey order.
    pub wanted_dimensions: Vec<String>,
    /// The cuboid the query read (covers `wanted`).
    pub chosen: CuboidId,
    /// Rows of `chosen` over the segments read.
    pub chosen_rows: u64,
    /// The query's time from planning to its last batch, in milliseconds.
    pub millis: f64,
    /// The statement's text, for the warm start to replay the most frequent statements
    /// (absent for statements run with bound parameters, and in lines written before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
}

/// What one cuboid-answered aggregate of a query needed and what it read (see
/// [`super::Answer::cuboids`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CuboidUse {
    pub project: String,
    pub cube: String,
    pub wanted: CuboidId,
    pub wanted_dimensions: Vec<String>,
    pub chosen: CuboidId,
    pub chosen_dimensions: Vec<String>,
    pub chosen_rows: u64,
    /// Whether `chosen` is the base cuboid.
    pub chosen_is_base: bool,
    /// Rows of the wanted cuboid: exact when every segment read has it built
    /// (`wanted_built`), otherwise an upper bound estimated per segment as the product of
    /// each wanted dimension's distinct count (the rows of the smallest built cuboid holding
    /// it), capped by the chosen cuboid's rows.
    pub wanted_rows: u64,
    pub wanted_built: bool,
    /// The chosen cuboid is much larger than the wanted one: the wanted cuboid is not built
    /// in every segment, and the chosen one has at least [`FALLBACK_RATIO`] times
    /// `wanted_rows` and [`FALLBACK_MIN_EXTRA_ROWS`] more.
    pub fallback: bool,
}

impl CuboidUse {
    /// The EXPLAIN text of a fallback: `wanted {d_weeknuminyear, c_city} (not built; at most
    /// 14522 rows estimated), read cuboid 131071 (base, 60175 rows)`.
    pub fn fallback_text(&self) -> String {
        let wanted = if self.wanted_built {
            format!("{} rows", self.wanted_rows)
        } else {
            format!("not built; at most {} rows estimated", self.wanted_rows)
        };
        let base = if self.chosen_is_base { "base, " } else { "" };
        format!(
            "wanted {{{}}} ({wanted}), read cuboid {} ({base}{} rows)",
            self.wanted_dimensions.join(", "),
            self.chosen,
            self.chosen_rows
        )
    }

    fn record(&self, time: DateTime<Utc>, millis: f64, sql: Option<&str>) -> QueryRecord {
        QueryRecord {
            time,
            project: self.project.clone(),
            cube: self.cube.clone(),
            wanted: self.wanted,
            wanted_dimensions: self.wanted_dimensions.clone(),
            chosen: self.chosen,
            chosen_rows: self.chosen_rows,
            millis,
            sql: sql.map(str::to_string),
        }
    }
}

/// The cuboid-answered aggregates of `realized` (snapshots and table indexes left out).
pub(crate) fn cuboid_uses(realized: &[Realized], snap: &Snapshot) -> Vec<CuboidUse> {
    realized
        .iter()
        .filter(|r| r.stored.is_none())
        .filter_map(|r| {
            snap.projects.iter().find_map(|p| {
                p.realizations
                    .iter()
                    .find(|real| real.layout.cube.name == r.cube)
                    .map(|real| cuboid_use(&p.name, real, r))
            })
        })
        .collect()
}

fn cuboid_use(project: &str, real: &Realization, r: &Realized) -> CuboidUse {
    let layout = &real.layout;
    let n = layout.rowkey.len();
    let names = |c: CuboidId| -> Vec<String> {
        (0..n)
            .filter(|&i| c & cuboid::bit(n, i) != 0)
            .map(|i| layout.rowkey[i].name.clone())
            .collect()
    };
    let (wanted_rows, wanted_built) = wanted_rows(real, n, r.wanted, r.cuboid);
    let extra = r.cuboid_rows.saturating_sub(wanted_rows);
    let fallback = r.cuboid != r.wanted
        && !wanted_built
        && r.cuboid_rows >= wanted_rows.saturating_mul(FALLBACK_RATIO)
        && extra >= FALLBACK_MIN_EXTRA_ROWS;
    CuboidUse {
        project: project.to_string(),
        cube: r.cube.clone(),
        wanted: r.wanted,
        wanted_dimensions: names(r.wanted),
        chosen: r.cuboid,
        chosen_dimensions: names(r.cuboid),
        chosen_rows: r.cuboid_rows,
        chosen_is_base: r.cuboid == cuboid::base(n),
        wanted_rows,
        wanted_built,
        fallback,
    }
}

/// Rows of `wanted` over the segments of `real`: exact where built, else estimated (see
/// [`CuboidUse::wanted_rows`]); and whether it is built in every segment.
fn wanted_rows(real: &Realization, n: usize, wanted: CuboidId, chosen: CuboidId) -> (u64, bool) {
    let mut total = 0u64;
    let mut built_everywhere = !real.segments.is_empty();
    for s in &real.segments {
        if let Some(c) = s.cuboids.iter().find(|c| c.id == wanted) {
            total = total.saturating_add(c.rows);
            continue;
        }
        built_everywhere = false;
        let chosen_rows = s
            .cuboids
            .iter()
            .find(|c| c.id == chosen)
            .map_or(0, |c| c.rows);
        // Distinct values of a dimension are at most the rows of any cuboid holding it.
        let mut estimate = 1u64;
        for i in (0..n).filter(|&i| wanted & cuboid::bit(n, i) != 0) {
            let distinct = s
                .cuboids
                .iter()
                .filter(|c| c.id & cuboid::bit(n, i) != 0)
                .map(|c| c.rows)
                .min()
                .unwrap_or(chosen_rows);
            estimate = estimate.saturating_mul(distinct);
        }
        total = total.saturating_add(estimate.min(chosen_rows));
    }
    (total, built_everywhere)
}

/// Buffers [`QueryRecord`]s and writes them to the metadata store in the background.
pub struct QueryHistory {
    store: Arc<dyn ResourceStore>,
    max_bytes: u64,
    max_files: usize,
    buffer: Mutex<VecDeque<QueryRecord>>,
    /// Serializes flushes of this process (the store serializes processes).
    writing: Mutex<()>,
}

impl std::fmt::Debug for QueryHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryHistory")
            .field("store", &self.store.describe())
            .finish_non_exhaustive()
    }
}

/// The folder of one cube's history in the metadata store.
pub fn folder(project: &str, cube: &str) -> String {
    format!("{HISTORY_FOLDER}/{project}/{cube}")
}

impl QueryHistory {
    /// A history writing to `store` with the bounds of `config`, flushed about once a second
    /// by a background thread while it lives.
    pub fn new(store: Arc<dyn ResourceStore>, config: &Config) -> Arc<QueryHistory> {
        let history = Arc::new(QueryHistory {
            store,
            max_bytes: config.query.history_max_bytes,
            max_files: config.query.history_max_files,
            buffer: Mutex::new(VecDeque::new()),
            writing: Mutex::new(()),
        });
        spawn_flusher("query-history", Arc::downgrade(&history), FLUSH_EVERY);
        history
    }

    /// Records one query's cuboid-answered aggregates (with its text when it is given: see
    /// [`QueryRecord::sql`]); never fails or blocks on the store.
    pub fn record(&self, uses: &[CuboidUse], elapsed: Duration, sql: Option<&str>) {
        if uses.is_empty() {
            return;
        }
        let time = Utc::now();
        let millis = elapsed.as_secs_f64() * 1000.0;
        let mut buf = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        for u in uses {
            if buf.len() >= MAX_BUFFERED {
                buf.pop_front();
                log::warn!("query history: buffer full (store not writable?), dropping a record");
            }
            buf.push_back(u.record(time, millis, sql));
        }
    }

    /// Writes buffered records now, each cube's to its own file.
    pub fn flush(&self) -> Result<()> {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let records = std::mem::take(&mut *self.buffer.lock().unwrap_or_else(|p| p.into_inner()));
        if records.is_empty() {
            return Ok(());
        }
        let mut by_cube: BTreeMap<(String, String), Vec<QueryRecord>> = BTreeMap::new();
        for r in records {
            by_cube
                .entry((r.project.clone(), r.cube.clone()))
                .or_default()
                .push(r);
        }
        let mut failed: Vec<QueryRecord> = Vec::new();
        let mut first_error = None;
        for ((project, cube), records) in by_cube {
            let folder = folder(&project, &cube);
            if let Err(e) = validate_path(&folder) {
                // Names the store cannot hold would never be written: drop them.
                log::warn!("query history: {e}; {} records dropped", records.len());
                continue;
            }
            let mut lines = Vec::new();
            for r in &records {
                // Strings, numbers and a time only: serialization cannot fail.
                lines.extend(serde_json::to_vec(r).unwrap_or_default());
                lines.push(b'\n');
            }
            let log = JsonLines {
                store: self.store.as_ref(),
                folder: &folder,
                max_bytes: self.max_bytes,
                max_files: self.max_files,
            };
            if let Err(e) = log.append(&lines) {
                failed.extend(records);
                first_error.get_or_insert(e);
            }
        }
        let Some(e) = first_error else {
            return Ok(());
        };
        // Put them back in front of anything recorded meanwhile; retried next time.
        let mut buf = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        let newer = std::mem::replace(&mut *buf, failed.into());
        buf.extend(newer);
        let excess = buf.len().saturating_sub(MAX_BUFFERED);
        buf.drain(..excess);
        Err(e)
    }
}

impl Buffered for QueryHistory {
    fn pending(&self) -> bool {
        !self
            .buffer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    fn flush(&self) -> Result<()> {
        QueryHistory::flush(self)
    }
}

impl Drop for QueryHistory {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            log::warn!("query history: records lost at exit: {e}");
        }
    }
}

/// One cube's history as read by [`read_history_counted`].
#[derive(Debug, Clone, Default)]
pub struct HistoryRead {
    /// Oldest first (rotated files, then the current one).
    pub records: Vec<QueryRecord>,
    /// Lines that were not a [`QueryRecord`] (torn or foreign) and were skipped.
    pub skipped: usize,
}

/// Every recorded query of `cube` in `project`, oldest first, from the rotated files and the
/// current one. Malformed lines are skipped (and logged), not fatal. Records still buffered
/// in a running server are not seen until it flushes (within about a second).
pub fn read_history(
    store: &dyn ResourceStore,
    project: &str,
    cube: &str,
) -> Result<Vec<QueryRecord>> {
    let read = read_history_counted(store, project, cube)?;
    if read.skipped > 0 {
        log::warn!(
            "query history of {project}.{cube}: {} malformed lines skipped",
            read.skipped
        );
    }
    Ok(read.records)
}

/// [`read_history`], with the number of malformed lines skipped.
pub fn read_history_counted(
    store: &dyn ResourceStore,
    project: &str,
    cube: &str,
) -> Result<HistoryRead> {
    let folder = folder(project, cube);
    validate_path(&folder).map_err(|e| Error::invalid("query history", e.to_string()))?;
    let log = JsonLines {
        store,
        folder: &folder,
        max_bytes: u64::MAX,
        max_files: usize::MAX,
    };
    let mut out = HistoryRead::default();
    for path in log.files()? {
        let Some(r) = store.get(&path)? else {
            continue;
        };
        for line in r.data.split(|b| *b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<QueryRecord>(line) {
                Ok(rec) => out.records.push(rec),
                Err(_) => out.skipped += 1,
            }
        }
    }
    Ok(out)
}

/// A query's batch stream that records its cuboid uses (and `sql`, its text) once it ends
/// (last batch, error, or dropped early), with the time since `started`.
pub(crate) fn recorded(
    inner: BatchStream,
    history: Arc<QueryHistory>,
    uses: Vec<CuboidUse>,
    started: Instant,
    sql: Option<String>,
) -> BatchStream {
    Box::pin(Recorded {
        inner,
        history,
        uses,
        started,
        sql,
        done: false,
    })
}

struct Recorded {
    inner: BatchStream,
    history: Arc<QueryHistory>,
    uses: Vec<CuboidUse>,
    started: Instant,
    sql: Option<String>,
    done: bool,
}

impl Recorded {
    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            self.history
                .record(&self.uses, self.started.elapsed(), self.sql.as_deref());
        }
    }
}

impl Stream for Recorded {
    type Item = Result<RecordBatch>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let item = match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item,
        };
        if matches!(item, None | Some(Err(_))) {
            this.finish();
        }
        Poll::Ready(item)
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history_with(props: &str) -> (Arc<QueryHistory>, Arc<dyn ResourceStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::metadata::open_store(dir.path().to_str().unwrap()).unwrap();
        let config = Config::from_parts(props, "test", |_| None).unwrap();
        (QueryHistory::new(store.clone(), &config), store, dir)
    }

    fn use_of(cube: &str, wanted: CuboidId, dims: &[&str]) -> CuboidUse {
        CuboidUse {
            project: "ssb".into(),
            cube: cube.into(),
            wanted,
            wanted_dimensions: dims.iter().map(|d| d.to_string()).collect(),
            chosen: 0b1111,
            chosen_dimensions: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            chosen_rows: 60_000,
            chosen_is_base: true,
            wanted_rows: 1_000,
            wanted_built: false,
            fallback: true,
        }
    }

    #[test]
    fn records_flush_and_read_back_without_moving_the_store_version() {
        let (h, store, _dir) = history_with("");
        let v0 = store.store_version().unwrap();
        h.record(
            &[
                use_of("c1", 0b0101, &["b", "d"]),
                use_of("c2", 0b0001, &["d"]),
            ],
            Duration::from_micros(2500),
            None,
        );
        h.record(
            &[use_of("c1", 0b0011, &["c", "d"])],
            Duration::from_millis(7),
            Some("SELECT 1"),
        );
        h.flush().unwrap();
        assert_eq!(store.store_version().unwrap(), v0);
        let c1 = read_history(store.as_ref(), "ssb", "c1").unwrap();
        assert_eq!(c1.len(), 2);
        assert_eq!(c1[0].wanted, 0b0101);
        assert_eq!(c1[0].wanted_dimensions, vec!["b", "d"]);
        assert_eq!(c1[0].chosen, 0b1111);
        assert_eq!(c1[0].chosen_rows, 60_000);
        assert!((c1[0].millis - 2.5).abs() < 1e-9, "{}", c1[0].millis);
        assert_eq!(c1[1].wanted_dimensions, vec!["c", "d"]);
        assert_eq!(c1[0].sql, None);
        assert_eq!(c1[1].sql.as_deref(), Some("SELECT 1"));
        let c2 = read_history(store.as_ref(), "ssb", "c2").unwrap();
        assert_eq!(c2.len(), 1);
        assert!(read_history(store.as_ref(), "ssb", "none")
            .unwrap()
            .is_empty());
        // The line has exactly the contract's fields (`sql` only when the text was given).
        let raw = store
            .get("/query_history/ssb/c2/current.jsonl")
            .unwrap()
            .unwrap()
            .data;
        let v: serde_json::Value = serde_json::from_slice(raw.trim_ascii_end()).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "chosen",
                "chosen_rows",
                "cube",
                "millis",
                "project",
                "time",
                "wanted",
                "wanted_dimensions"
            ]
        );
        assert!(DateTime::parse_from_rfc3339(v["time"].as_str().unwrap()).is_ok());
    }

    #[test]
    fn the_background_thread_writes_within_seconds() {
        let (h, store, _dir) = history_with("");
        h.record(&[use_of("c", 1, &["d"])], Duration::from_millis(1), None);
        let deadline = Instant::now() + Duration::from_secs(10);
        while read_history(store.as_ref(), "ssb", "c").unwrap().is_empty() {
            assert!(Instant::now() < deadline, "not written");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn rotates_keeps_bounded_files_and_reads_them_in_order() {
        let (h, store, _dir) =
            history_with("kylin.query.history.max-bytes=1024\nkylin.query.history.max-files=2\n");
        for i in 0..60u64 {
            h.record(&[use_of("c", i, &["d"])], Duration::from_millis(1), None);
            h.flush().unwrap();
        }
        let files = store.list("/query_history/ssb/c").unwrap();
        assert_eq!(files.len(), 3, "{files:?}");
        let records = read_history(store.as_ref(), "ssb", "c").unwrap();
        assert!(
            records.len() < 60 && records.len() >= 8,
            "{}",
            records.len()
        );
        let wanted: Vec<u64> = records.iter().map(|r| r.wanted).collect();
        assert_eq!(*wanted.last().unwrap(), 59);
        assert!(wanted.windows(2).all(|w| w[1] == w[0] + 1), "{wanted:?}");
    }

    #[test]
    fn malformed_lines_are_skipped_and_counted() {
        let (h, store, _dir) = history_with("");
        store
            .put(
                "/query_history/ssb/c/0000000000001.jsonl",
                b"not json\n{\"time\":\"2026-01-01T00:00:00Z\",\"project\":\"ssb\"}\n\n",
            )
            .unwrap();
        h.record(
            &[use_of("c", 3, &["c", "d"])],
            Duration::from_millis(1),
            None,
        );
        h.flush().unwrap();
        let mut current = store
            .get("/query_history/ssb/c/current.jsonl")
            .unwrap()
            .unwrap()
            .data;
        current.extend_from_slice(b"{\"torn\":");
        store
            .put("/query_history/ssb/c/current.jsonl", &current)
            .unwrap();
        let read = read_history_counted(store.as_ref(), "ssb", "c").unwrap();
        assert_eq!(read.skipped, 3);
        assert_eq!(read.records.len(), 1);
        assert_eq!(read.records[0].wanted, 3);
        assert_eq!(read_history(store.as_ref(), "ssb", "c").unwrap().len(), 1);
        assert!(read_history(store.as_ref(), "ssb", "../x").is_err());
    }

    #[test]
    fn writers_appending_at_once_lose_nothing() {
        let (a, store, dir) = history_with("");
        let config = Config::from_parts("", "test", |_| None).unwrap();
        let other = crate::metadata::open_store(dir.path().to_str().unwrap()).unwrap();
        let b = QueryHistory::new(other, &config);
        let threads: Vec<_> = [a, b]
            .into_iter()
            .map(|h| {
                std::thread::spawn(move || {
                    for i in 0..20 {
                        h.record(&[use_of("c", i, &["d"])], Duration::from_millis(1), None);
                        h.flush().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(read_history(store.as_ref(), "ssb", "c").unwrap().len(), 40);
    }

    #[test]
    fn fallback_text_names_wanted_and_chosen() {
        let u = use_of("c", 0b0101, &["d_weeknuminyear", "c_city"]);
        assert_eq!(
            u.fallback_text(),
            "wanted {d_weeknuminyear, c_city} (not built; at most 1000 rows estimated), \
             read cuboid 15 (base, 60000 rows)"
        );
    }
}
