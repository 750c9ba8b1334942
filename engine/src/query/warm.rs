//! Warm start: what the first queries after a start (or after a segment turned READY) would
//! pay, paid in the background instead. In order:
//!
//! 1. the catalog snapshot (metadata read, DataFusion sessions, source table providers);
//! 2. once per process, one statement per cube through the whole query path (parser,
//!    planner, cube rewrite, optimizer, physical planner, execution), so the first client's
//!    query does not pay DataFusion's first-use costs;
//! 3. the manifests (and block statistics) of every cuboid, lookup snapshot and table index of
//!    the segments not warmed yet;
//! 4. decoded blocks of the cuboids queries most likely read: the lookup snapshots derived
//!    columns join, then the cuboids the query history says were read most (when a history
//!    is stored), then the smallest cuboids first (the rewrite picks the smallest cuboid that
//!    covers a query, so a small cuboid answers more queries than a large one), until
//!    `kylin.query.warm-up.max-bytes` of decoded blocks — never more than half the
//!    decoded-block cache, so warming neither evicts itself nor what queries read.
//!
//! [`QueryEngine::warm_up`] blocks (it reads storage) and takes seconds: run it on a thread of
//! its own. Queries are answered meanwhile; a block both want is decoded by whichever comes
//! first (the cache keeps one).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::{DataType, Field};
use futures::TryStreamExt;

use super::catalog::{Realization, Snapshot};
use super::rewrite::{self, Outcome};
use super::segments::{CachedSegments, SegmentReader};
use super::QueryEngine;
use crate::config::Config;
use crate::error::Result;
use crate::metadata::ResourceStore;
use crate::model::{CuboidId, JoinKind};
use crate::storage::BlockMeta;

/// The decoded-block cache's bound (see `segments`); warming takes at most half of it.
const BLOCK_CACHE_SHARE: u64 = (1 << 30) / 2;

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
    /// Bounded by `kylin.query.warm-up.max-bytes` (and half the decoded-block cache).
    pub fn new(config: &Config) -> WarmUp {
        WarmUp {
            max_bytes: config.query.warm_up_max_bytes.min(BLOCK_CACHE_SHARE),
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
            "metadata version {}: {} segment(s), {} statement(s), {} manifest(s), {} blocks \
             ({:.1} MiB decoded) of {} cuboid(s) ({} ranked by the query history) in {} ms \
             (catalog {} ms)",
            self.version,
            self.segments,
            self.statements,
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

impl QueryEngine {
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
        let mut candidates = Vec::new();
        for project in &snap.projects {
            for real in &project.realizations {
                report.manifests += self.warm_manifests(real, &fresh)?;
                candidates.extend(candidates_of(
                    self.meta.store().as_ref(),
                    &project.name,
                    real,
                    &fresh,
                ));
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
                match self.warm_statement(snap, &sql).await {
                    Ok(true) => ran += 1,
                    Ok(false) => log::debug!("warm-up: no cube answers {sql}"),
                    Err(e) => log::debug!("warm-up: {sql}: {e}"),
                }
            }
        }
        ran
    }

    async fn warm_statement(&self, snap: &Snapshot, sql: &str) -> Result<bool> {
        let plan = self.plan(snap, None, sql).await?;
        if let Outcome::Uncovered(_) = rewrite::rewrite(plan, snap, &self.reader())? {
            return Ok(false);
        }
        let out = self.execute_stream(sql, None).await?;
        let _: Vec<_> = out.batches.try_collect().await?;
        Ok(true)
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
    store: &dyn ResourceStore,
    project: &str,
    real: &Realization,
    fresh: &HashSet<String>,
) -> Vec<Candidate> {
    let layout = &real.layout;
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
    let hits = history_hits(store, project, &layout.cube.name);
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

/// How often the query history of `cube` names each cuboid as the one read. Anything
/// unreadable counts nothing (warming is an optimization; the history may not exist).
fn history_hits(store: &dyn ResourceStore, project: &str, cube: &str) -> HashMap<CuboidId, u64> {
    let mut hits = HashMap::new();
    match crate::query::history::read_history_counted(store, project, cube) {
        Ok(read) => {
            for r in read.records {
                *hits.entry(r.chosen).or_default() += 1;
            }
        }
        Err(e) => log::debug!("warm-up: no query history of {project}.{cube}: {e}"),
    }
    hits
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
        let hits = history_hits(&store, "ssb", "c");
        assert_eq!(hits.get(&7), Some(&2));
        assert_eq!(hits.get(&12), Some(&2));
        assert_eq!(hits.len(), 2);
        assert!(history_hits(&store, "ssb", "none").is_empty());
    }
}
