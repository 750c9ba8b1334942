//! Warm start: what the first queries after a start (or after a segment turned READY) would
//! pay, paid in the background instead. In order:
//!
//! 1. the catalog snapshot (metadata read, DataFusion sessions, source table providers);
//! 2. once per process, one statement per cube through the whole query path (parser,
//!    planner, cube rewrite, optimizer, physical planner, execution), so the first client's
//!    query does not pay DataFusion's first-use costs;
//! 3. the statements the query history recorded most often (a dashboard's queries: at most
//!    64, each with a median recorded time of at most a second, within 30 s; the most runs per
//!    millisecond of replay first), run and their results dropped: their plans enter the
//!    plan caches and the blocks they read the block cache, so a repeated query after a
//!    start is as fast as before it. Replays are not recorded in the history;
//! 4. the manifests (and block statistics) of every cuboid, lookup snapshot and table index of
//!    the segments not warmed yet;
//! 5. decoded blocks of the cuboids queries most likely read: the lookup snapshots derived
//!    columns join, then the cuboids the query history says were read most (when a history
//!    is stored), then the smallest cuboids first (the rewrite picks the smallest cuboid that
//!    covers a query, so a small cuboid answers more queries than a large one), until
//!    `kylin.query.warm-up.max-bytes` of decoded blocks — never more than half the
//!    decoded-block cache, so warming neither evicts itself nor what queries read.
//!
//! [`QueryEngine::warm_up`] blocks (it reads storage) and takes seconds: run it on a thread of
//! its own. Queries are answered meanwhile: before each statement and each block the warm-up
//! waits while client statements run (at most 200 ms each time), so that it does not take
//! the cores from the first queries it is there to help; a block both want is decoded by
//! whichever comes first (the cache keeps one).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::{DataType, Field};
use futures::TryStreamExt;

use super::catalog::{Realization, Snapshot};
use super::history::{read_history_counted, QueryRecord};
use super::rewrite::{self, Outcome};
use super::segments::{CachedSegments, SegmentReader};
use super::QueryEngine;
use super::Recording;
use crate::config::Config;
use crate::error::Result;
use crate::metadata::ResourceStore;
use crate::model::{CuboidId, JoinKind};
use crate::storage::BlockMeta;

/// What has been warmed so far; one per server, handed to every [`QueryEngine::warm_up`].
#[derive(Debug)]
pub struct WarmUp {
    max_bytes: u64,
    /// Segments (by id) whose manifests and blocks were warmed.
    warmed: HashSet<String>,
    /// The warm-up statements ran (once per process: they pay first-use costs).
    statements_done: bool,
}

impl WarmUp {
    /// Bounded by `kylin.query.warm-up.max-bytes` and half the decoded-block cache
    /// (`kylin.query.block-cache-mb`): queries keep the other half.
    pub fn new(config: &Config) -> WarmUp {
        WarmUp {
            max_bytes: config
                .query
                .warm_up_max_bytes
                .min(config.query.block_cache_bytes / 2),
            warmed: HashSet::new(),
            statements_done: false,
        }
    }
}

/// What one warm-up did (logged by the server).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WarmReport {
    /// The metadata version warmed.
    pub version: u64,
    /// Segments warmed (new since the last warm-up).
    pub segments: usize,
    /// Warm-up statements run through the query path.
    pub statements: usize,
    /// Statements of the query history replayed (see [`replay_statements`]).
    pub replayed: usize,
    /// Manifests read (cuboids, lookup snapshots, table indexes).
    pub manifests: usize,
    /// Cuboids (and lookup snapshots) whose blocks were decoded, all or some.
    pub cuboids: usize,
    /// Of those, how many the query history ranked first.
    pub from_history: usize,
    pub blocks: usize,
    /// Decoded bytes of those blocks.
    pub bytes: u64,
    /// Loading the catalog snapshot (zero when it was loaded already).
    pub catalog: Duration,
    pub elapsed: Duration,
}

impl fmt::Display for WarmReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "metadata version {}: {} segment(s), {} statement(s), {} replayed, {} manifest(s), {} blocks \
             ({:.1} MiB decoded) of {} cuboid(s) ({} ranked by the query history) in {} ms \
             (catalog {} ms)",
            self.version,
            self.segments,
            self.statements,
            self.replayed,
            self.manifests,
            self.blocks,
            self.bytes as f64 / (1 << 20) as f64,
            self.cuboids,
            self.from_history,
            self.elapsed.as_millis(),
            self.catalog.as_millis()
        )
    }
}

/// Blocks of one stored id (cuboid or lookup snapshot) to warm, in the segments listed.
struct Candidate {
    segments: Vec<String>,
    id: CuboidId,
    rows: u64,
    /// Stored bytes, for estimating what decoding costs.
    stored: u64,
    /// Times the query history says this cuboid was read.
    hits: u64,
    /// Block columns worth decoding (`None`: all).
    columns: Option<Vec<usize>>,
}

/// How long the warm-up waits at most, before one of its steps, for client statements to end.
const MAX_PAUSE: Duration = Duration::from_millis(200);
/// How often it looks while waiting.
const PAUSE_POLL: Duration = Duration::from_millis(1);

impl QueryEngine {
    /// Waits (blocking, bounded by [`MAX_PAUSE`]) while client statements run: the warm-up
    /// exists to make queries faster, and on a small machine its own statements and block
    /// decodes would take the cores the first client queries need. Under constant load it
    /// still advances, one step per pause.
    pub(crate) fn pause_for_clients(&self) {
        let started = Instant::now();
        while self.clients_running() && started.elapsed() < MAX_PAUSE {
            std::thread::sleep(PAUSE_POLL);
        }
    }

    /// Warms what changed since the last call with the same `state` (see the module
    /// comment); `None` when nothing did. Blocking and slow: call it from a thread of its own.
    pub async fn warm_up(&self, state: &mut WarmUp) -> Result<Option<WarmReport>> {
        let started = Instant::now();
        let had_snapshot = self.snapshot_version().is_some();
        let snap = self.current()?;
        let catalog = if had_snapshot {
            Duration::ZERO
        } else {
            started.elapsed()
        };
        let live: HashSet<&str> = snap
            .projects
            .iter()
            .flat_map(|p| &p.realizations)
            .flat_map(|r| &r.segments)
            .map(|s| s.id.as_str())
            .collect();
        // Segments merged away are forgotten (their ids never come back).
        state.warmed.retain(|s| live.contains(s.as_str()));
        let fresh: HashSet<String> = live
            .iter()
            .filter(|s| !state.warmed.contains(**s))
            .map(|s| s.to_string())
            .collect();
        // A new version without new segments has had its catalog loaded above: nothing else.
        if fresh.is_empty() && state.statements_done {
            return Ok(None);
        }
        let mut report = WarmReport {
            version: snap.version,
            segments: fresh.len(),
            catalog,
            ..WarmReport::default()
        };
        if !state.statements_done {
            report.statements = self.warm_statements(&snap).await;
            state.statements_done = true;
        }
        let histories = histories(self.meta.store().as_ref(), &snap);
        // The statements first: they read exactly the blocks their queries will, and leave
        // their plans in the plan caches (emptied by every reload).
        report.replayed = self
            .replay(&snap, &replay_statements(&histories), REPLAY_BUDGET)
            .await;
        let mut candidates = Vec::new();
        for project in &snap.projects {
            for real in &project.realizations {
                report.manifests += self.warm_manifests(real, &fresh)?;
                let history = histories
                    .get(&(project.name.clone(), real.layout.cube.name.clone()))
                    .map_or(&[][..], Vec::as_slice);
                candidates.extend(candidates_of(history, real, &fresh));
            }
        }
        // Snapshots first (every derived-column query joins them; small), then by history,
        // then the smallest cuboids.
        candidates.sort_by_key(|c| (c.columns.is_some(), std::cmp::Reverse(c.hits), c.rows, c.id));
        self.warm_blocks(&candidates, state.max_bytes, &mut report)?;
        state.warmed.extend(fresh);
        report.elapsed = started.elapsed();
        Ok(Some(report))
    }

    /// Runs one statement per cube with READY segments through the whole query path; how many
    /// ran. Only statements a cube answers run (never a pushdown scan of the source tables);
    /// a failure is only logged: warming is an optimization.
    async fn warm_statements(&self, snap: &Snapshot) -> usize {
        let mut ran = 0;
        for project in &snap.projects {
            for real in project
                .realizations
                .iter()
                .filter(|r| !r.segments.is_empty())
            {
                let sql = warm_statement(&project.name, real);
                self.pause_for_clients();
                match self.warm_statement(snap, &sql).await {
                    Ok(true) => ran += 1,
                    Ok(false) => log::debug!("warm-up: no cube answers {sql}"),
                    Err(e) => log::debug!("warm-up: {sql}: {e}"),
                }
            }
        }
        ran
    }

    /// Runs `sql` (results dropped, nothing recorded in the history) if a cube answers it;
    /// whether it ran.
    async fn warm_statement(&self, snap: &Snapshot, sql: &str) -> Result<bool> {
        let plan = self.plan(snap, None, sql).await?;
        if let Outcome::Uncovered(_) = rewrite::rewrite(plan, snap, &self.reader())? {
            return Ok(false);
        }
        let out = self
            .execute_stream_in(snap, None, sql, None, Recording::Off)
            .await?;
        let _: Vec<_> = out.batches.try_collect().await?;
        Ok(true)
    }

    /// Runs `statements` in order as the unrestricted caller until `budget` is spent; how many
    /// ran. A statement that fails or that no cube answers any more is skipped (logged).
    async fn replay(&self, snap: &Snapshot, statements: &[String], budget: Duration) -> usize {
        let started = Instant::now();
        let mut ran = 0;
        for sql in statements {
            if started.elapsed() >= budget {
                log::info!(
                    "warm-up: replay stopped after {ran} statement(s): {} s spent",
                    budget.as_secs()
                );
                break;
            }
            self.pause_for_clients();
            match self.warm_statement(snap, sql).await {
                Ok(true) => ran += 1,
                Ok(false) => log::debug!("warm-up: no cube answers the recorded {sql}"),
                Err(e) => log::debug!("warm-up: recorded statement {sql}: {e}"),
            }
        }
        ran
    }

    /// Reads the manifests (and the block statistics pruning uses) of every stored id of
    /// `real`'s segments in `fresh`; how many.
    fn warm_manifests(&self, real: &Realization, fresh: &HashSet<String>) -> Result<usize> {
        let layout = &real.layout;
        let mut read = 0;
        for seg in real.segments.iter().filter(|s| fresh.contains(&s.id)) {
            for c in &seg.cuboids {
                let dims: Vec<Field> = layout
                    .cuboid_columns(c.id)
                    .into_iter()
                    .map(|i| {
                        let r = &layout.rowkey[i];
                        Field::new(&r.name, r.source.data_type.clone(), true)
                    })
                    .collect();
                self.segments.block_stats(&seg.id, c.id, &dims)?;
                read += 1;
            }
            for id in seg
                .snapshots
                .iter()
                .map(|s| s.stats.id)
                .chain(seg.table_index.as_ref().map(|t| t.id))
            {
                self.segments.manifest(&seg.id, id)?;
                read += 1;
            }
        }
        Ok(read)
    }

    /// Decodes the candidates' blocks in order until `max_bytes` of decoded blocks. A
    /// candidate whose estimated size does not fit in what is left is skipped (a later,
    /// smaller one may fit); the estimate scales its stored bytes by what decoding has
    /// yielded per stored byte so far.
    fn warm_blocks(
        &self,
        candidates: &[Candidate],
        max_bytes: u64,
        report: &mut WarmReport,
    ) -> Result<()> {
        let (mut stored_seen, mut decoded_seen) = (0u64, 0u64);
        for c in candidates {
            let left = max_bytes.saturating_sub(report.bytes);
            if left == 0 {
                break;
            }
            let per_stored = if stored_seen == 0 {
                1.0
            } else {
                decoded_seen as f64 / stored_seen as f64
            };
            if c.stored as f64 * per_stored > left as f64 {
                continue;
            }
            let mut any = false;
            'segments: for seg in &c.segments {
                let manifest = self.segments.manifest(seg, c.id)?;
                for (i, meta) in manifest.blocks.iter().enumerate() {
                    if report.bytes >= max_bytes {
                        break 'segments;
                    }
                    if meta.rows == 0 {
                        continue;
                    }
                    self.pause_for_clients();
                    let bytes = warm_block(
                        &self.segments,
                        seg,
                        c.id,
                        i as u32,
                        meta,
                        c.columns.as_deref(),
                    )?;
                    report.blocks += 1;
                    report.bytes += bytes;
                    stored_seen += meta.bytes;
                    decoded_seen += bytes;
                    any = true;
                }
            }
            if any {
                report.cuboids += 1;
                if c.hits > 0 {
                    report.from_history += 1;
                }
            }
        }
        Ok(())
    }
}

/// Decodes one block into the decoded-block cache; its decoded bytes. `columns` are the block
/// columns worth keeping decoded (dimensions and the small measure states; `None`: all).
fn warm_block(
    reader: &CachedSegments,
    segment: &str,
    cuboid: CuboidId,
    block: u32,
    meta: &BlockMeta,
    columns: Option<&[usize]>,
) -> Result<u64> {
    let batch = reader.block(segment, cuboid, block, meta, columns)?;
    Ok(batch.get_array_memory_size() as u64)
}

/// A statement the cube answers (when its model's joins match): the fact table joined to every
/// lookup as the model joins them, counted per value of the first rowkey column.
fn warm_statement(project: &str, real: &Realization) -> String {
    let layout = &real.layout;
    let fact = &layout.model.fact_table;
    let mut sql = String::from("SELECT ");
    if let Some(first) = layout.rowkey.first() {
        sql += &format!(
            "{}.{}, ",
            quote(&first.source.table),
            quote(&first.source.column)
        );
    }
    sql += &format!(
        "COUNT(*) FROM {}.{} AS {}",
        quote(project),
        quote(fact),
        quote(fact)
    );
    for j in &layout.joins {
        let on: Vec<String> = j
            .foreign_key
            .iter()
            .zip(&j.primary_key)
            .map(|(f, p)| {
                format!(
                    "{}.{} = {}.{}",
                    quote(&f.table),
                    quote(&f.column),
                    quote(&p.table),
                    quote(&p.column)
                )
            })
            .collect();
        let kind = match j.kind {
            JoinKind::Inner => "JOIN",
            JoinKind::Left => "LEFT JOIN",
        };
        sql += &format!(
            " {kind} {}.{} AS {} ON {}",
            quote(project),
            quote(&j.table),
            quote(&j.alias),
            on.join(" AND ")
        );
    }
    if !layout.rowkey.is_empty() {
        sql += " GROUP BY 1";
    }
    sql
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The stored ids of `real` worth decoding, over its segments in `fresh`: the lookup
/// snapshots of its newest READY segment (what derived columns join), and every cuboid that
/// all its READY segments hold (what a query can read).
fn candidates_of(
    history: &[QueryRecord],
    real: &Realization,
    fresh: &HashSet<String>,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    // The segment queries read snapshots from (as `rewrite::detail` picks it).
    let newest = real.segments.iter().max_by_key(|s| (s.range, s.ready_ms));
    if let Some(newest) = newest.filter(|s| fresh.contains(&s.id)) {
        out.extend(newest.snapshots.iter().map(|s| Candidate {
            segments: vec![newest.id.clone()],
            id: s.stats.id,
            rows: s.stats.rows,
            stored: s.stats.bytes,
            hits: 0,
            columns: None,
        }));
    }
    let hits = history_hits(history);
    let mut cuboids: HashMap<CuboidId, Candidate> = HashMap::new();
    let mut held: HashMap<CuboidId, usize> = HashMap::new();
    for seg in &real.segments {
        for c in &seg.cuboids {
            *held.entry(c.id).or_default() += 1;
            if !fresh.contains(&seg.id) {
                continue;
            }
            let e = cuboids.entry(c.id).or_insert_with(|| Candidate {
                segments: Vec::new(),
                id: c.id,
                rows: 0,
                stored: 0,
                hits: hits.get(&c.id).copied().unwrap_or(0),
                columns: Some(warm_columns(real, c.id)),
            });
            e.segments.push(seg.id.clone());
            e.rows += c.rows;
            e.stored += c.bytes;
        }
    }
    // A cuboid some READY segment lacks answers no query (see `choose_cuboid`).
    out.extend(
        cuboids
            .into_values()
            .filter(|c| held.get(&c.id) == Some(&real.segments.len())),
    );
    out
}

/// The block columns of `cuboid` worth keeping decoded: its dimensions and the measure states
/// of fixed width (sums, counts, min/max); sketches (HLL, bitmaps, TOP_N, percentiles) are
/// large and only the queries that ask for them should pay for decoding them.
fn warm_columns(real: &Realization, cuboid: CuboidId) -> Vec<usize> {
    let dims = real.layout.cuboid_columns(cuboid).len();
    (0..dims)
        .chain(
            real.layout
                .measures
                .iter()
                .enumerate()
                .filter(|(_, m)| m.state.data_type() != DataType::Binary)
                .map(|(i, _)| dims + i),
        )
        .collect()
}

/// Statements of the history replayed at most per warm-up (a dashboard's worth and more).
const REPLAYED_STATEMENTS: usize = 64;
/// The most recent records of each cube's history that choose what to replay.
const REPLAY_RECENT_RECORDS: usize = 20_000;
/// A statement whose median recorded time is above this is not replayed: warming must stay
/// cheap next to the queries it serves.
const REPLAY_MAX_MILLIS: f64 = 1_000.0;
/// What replaying a statement costs beyond its recorded (warm) time, for the replay order:
/// planning a text the plan caches have not seen and decoding its first blocks.
const REPLAY_FIXED_MILLIS: f64 = 5.0;
/// The time one warm-up spends replaying at most.
const REPLAY_BUDGET: Duration = Duration::from_secs(30);

/// The query history of every cube with READY segments, by (project, cube). Anything
/// unreadable is left out (warming is an optimization; the history may not exist).
fn histories(
    store: &dyn ResourceStore,
    snap: &Snapshot,
) -> HashMap<(String, String), Vec<QueryRecord>> {
    let mut out = HashMap::new();
    for project in &snap.projects {
        for real in project
            .realizations
            .iter()
            .filter(|r| !r.segments.is_empty())
        {
            let cube = &real.layout.cube.name;
            match read_history_counted(store, &project.name, cube) {
                Ok(read) => {
                    out.insert((project.name.clone(), cube.clone()), read.records);
                }
                Err(e) => log::debug!("warm-up: no query history of {}.{cube}: {e}", project.name),
            }
        }
    }
    out
}

/// How often `history` names each cuboid as the one read.
fn history_hits(history: &[QueryRecord]) -> HashMap<CuboidId, u64> {
    let mut hits = HashMap::new();
    for r in history {
        *hits.entry(r.chosen).or_default() += 1;
    }
    hits
}

/// The statements to replay at a warm start: the texts recorded most often in the recent
/// history of every cube (at most [`REPLAYED_STATEMENTS`], ties to the most recent), leaving
/// out those whose median recorded time exceeds [`REPLAY_MAX_MILLIS`]. A statement recorded
/// for several aggregates of one query counts once per query.
///
/// They are replayed by queries per millisecond of replay, highest first (Smith's rule:
/// runs / (median + [`REPLAY_FIXED_MILLIS`])): a statement stays cold until its replay ends,
/// so one frequent slow statement replayed first would keep a dashboard's cheap ones cold
/// for its whole run (in a history where 100–250 ms statements were recorded 400–735 times
/// each and 13 dashboard queries of a few ms about 600 times each, the dashboard's first run
/// after a start took a median of 420 ms in that order, 235 ms in this one).
fn replay_statements(histories: &HashMap<(String, String), Vec<QueryRecord>>) -> Vec<String> {
    struct Seen {
        runs: HashSet<chrono::DateTime<chrono::Utc>>,
        millis: Vec<f64>,
        last: chrono::DateTime<chrono::Utc>,
    }
    let mut by_text: HashMap<&str, Seen> = HashMap::new();
    for records in histories.values() {
        let recent = &records[records.len().saturating_sub(REPLAY_RECENT_RECORDS)..];
        for r in recent {
            let Some(sql) = r.sql.as_deref() else {
                continue;
            };
            let seen = by_text.entry(sql).or_insert_with(|| Seen {
                runs: HashSet::new(),
                millis: Vec::new(),
                last: r.time,
            });
            // One query's aggregates share its end time.
            if seen.runs.insert(r.time) {
                seen.millis.push(r.millis);
            }
            seen.last = seen.last.max(r.time);
        }
    }
    struct Ranked<'a> {
        sql: &'a str,
        runs: usize,
        median: f64,
        last: chrono::DateTime<chrono::Utc>,
    }
    let mut chosen: Vec<Ranked> = by_text
        .into_iter()
        .filter_map(|(sql, mut seen)| {
            seen.millis.sort_by(f64::total_cmp);
            let median = seen.millis[seen.millis.len() / 2];
            (median <= REPLAY_MAX_MILLIS).then_some(Ranked {
                sql,
                runs: seen.runs.len(),
                median,
                last: seen.last,
            })
        })
        .collect();
    chosen.sort_by(|a, b| {
        (b.runs.cmp(&a.runs))
            .then(b.last.cmp(&a.last))
            .then(a.sql.cmp(b.sql))
    });
    chosen.truncate(REPLAYED_STATEMENTS);
    let per_milli = |r: &Ranked| r.runs as f64 / (r.median.max(0.0) + REPLAY_FIXED_MILLIS);
    chosen.sort_by(|a, b| {
        per_milli(b)
            .total_cmp(&per_milli(a))
            .then(b.last.cmp(&a.last))
            .then(a.sql.cmp(b.sql))
    });
    chosen.into_iter().map(|r| r.sql.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::LocalResourceStore;

    #[test]
    fn history_counts_chosen_cuboids_and_skips_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalResourceStore::open(dir.path()).unwrap();
        let line = |chosen: u64| {
            format!(
                "{{\"time\":\"2026-12-03T01:00:00Z\",\"project\":\"ssb\",\"cube\":\"c\",\
                 \"wanted\":1,\"wanted_dimensions\":[\"d_year\"],\"chosen\":{chosen},\
                 \"chosen_rows\":7,\"millis\":1.5}}"
            )
        };
        let one = format!("{}\n{}\nnot json\n{}\n", line(7), line(7), line(12));
        store
            .put("/query_history/ssb/c/0001.jsonl", one.as_bytes())
            .unwrap();
        store
            .put("/query_history/ssb/c/0002.jsonl", line(12).as_bytes())
            .unwrap();
        store
            .put("/query_history/ssb/other/0001.jsonl", line(99).as_bytes())
            .unwrap();
        let records = read_history_counted(&store, "ssb", "c").unwrap().records;
        let hits = history_hits(&records);
        assert_eq!(hits.get(&7), Some(&2));
        assert_eq!(hits.get(&12), Some(&2));
        assert_eq!(hits.len(), 2);
        assert!(history_hits(&[]).is_empty());
    }

    fn record(second: u32, sql: Option<&str>, millis: f64) -> QueryRecord {
        QueryRecord {
            time: chrono::DateTime::from_timestamp(1_800_000_000 + i64::from(second), 0).unwrap(),
            project: "ssb".into(),
            cube: "c".into(),
            wanted: 1,
            wanted_dimensions: vec!["d_year".into()],
            chosen: 3,
            chosen_rows: 10,
            millis,
            sql: sql.map(str::to_string),
        }
    }

    #[test]
    fn replays_the_most_frequent_cheap_statements_counting_queries_not_aggregates() {
        let mut c = Vec::new();
        // "a": three queries, each with two aggregates (two records of one end time).
        for t in [1, 2, 3] {
            c.push(record(t, Some("a"), 2.0));
            c.push(record(t, Some("a"), 2.0));
        }
        // "b": four queries; "slow": five, too slow to replay; parameterized runs: no text.
        for t in [4, 5, 6, 7] {
            c.push(record(t, Some("b"), 3.0));
        }
        for t in [8, 9, 10, 11, 12] {
            c.push(record(t, Some("slow"), 5_000.0));
        }
        c.push(record(13, None, 1.0));
        // "d" and "e" once each: the more recent first.
        let mut other = vec![record(14, Some("d"), 1.0)];
        other.push(record(15, Some("e"), 1.0));
        let histories = HashMap::from([
            (("ssb".to_string(), "c".to_string()), c),
            (("ssb".to_string(), "o".to_string()), other),
        ]);
        assert_eq!(replay_statements(&histories), ["b", "a", "e", "d"]);
        assert!(replay_statements(&HashMap::new()).is_empty());
    }

    #[test]
    fn replays_cheap_dashboard_statements_before_a_more_frequent_slow_one() {
        let mut c = Vec::new();
        // "slow": 10 runs of 200 ms; "cheap1", "cheap2": 3 runs of 2 ms each.
        for t in 0..10 {
            c.push(record(t, Some("slow"), 200.0));
        }
        for t in 10..13 {
            c.push(record(t, Some("cheap1"), 2.0));
            c.push(record(t + 100, Some("cheap2"), 2.0));
        }
        let histories = HashMap::from([(("ssb".to_string(), "c".to_string()), c)]);
        // Equal rates: the more recent first.
        assert_eq!(replay_statements(&histories), ["cheap2", "cheap1", "slow"]);
    }

    #[test]
    fn chooses_the_most_frequent_statements_however_slow() {
        let mut c = Vec::new();
        // One more cheap statement than are replayed, each run once; "slow" twice.
        for i in 0..=REPLAYED_STATEMENTS {
            c.push(record(i as u32, Some(&format!("cheap{i}")), 1.0));
        }
        c.push(record(500, Some("slow"), 900.0));
        c.push(record(501, Some("slow"), 900.0));
        let histories = HashMap::from([(("ssb".to_string(), "c".to_string()), c)]);
        let replayed = replay_statements(&histories);
        assert_eq!(replayed.len(), REPLAYED_STATEMENTS);
        // "slow" is chosen (the most frequent) and replayed last (the fewest runs per ms);
        // of the cheap ones the oldest is left out.
        assert_eq!(replayed.last().map(String::as_str), Some("slow"));
        assert!(!replayed.iter().any(|s| s == "cheap0"));
        assert_eq!(replayed[0], format!("cheap{REPLAYED_STATEMENTS}"));
    }
}
