//! A cube instance: the cube's segments and their state. Stored at `/cube/<name>.json` and
//! changed only by check-and-put, so a segment turns READY exactly once and never while
//! someone else rewrote the list.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::layout::{sql_type_name, CubeLayout, ModelColumn, StateKind};
use super::CuboidId;
use crate::error::{Error, Result};

/// `[start, end)` of the partition column, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SegmentRange {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl SegmentRange {
    pub fn new(start: NaiveDate, end: NaiveDate) -> Result<Self> {
        if start >= end {
            return Err(Error::Refused(format!(
                "segment range [{start}, {end}) is empty: start must be before end"
            )));
        }
        Ok(SegmentRange { start, end })
    }

    /// Parses `YYYY-MM-DD` boundaries.
    pub fn parse(start: &str, end: &str) -> Result<Self> {
        let p = |s: &str| {
            NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .map_err(|e| Error::Refused(format!("{s:?} is not a date in YYYY-MM-DD form: {e}")))
        };
        Self::new(p(start)?, p(end)?)
    }

    pub fn overlaps(&self, other: &SegmentRange) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// Segment name as Kylin shows it: `yyyyMMdd000000_yyyyMMdd000000`, or `FULL_BUILD`.
pub fn segment_name(range: Option<&SegmentRange>) -> String {
    match range {
        Some(r) => format!(
            "{}000000_{}000000",
            r.start.format("%Y%m%d"),
            r.end.format("%Y%m%d")
        ),
        None => "FULL_BUILD".into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SegmentStatus {
    /// Being built, merged or refreshed; never visible to queries.
    New,
    /// Complete and durable; queries read it.
    Ready,
}

/// Size of one stored cuboid of a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CuboidStats {
    pub id: CuboidId,
    pub rows: u64,
    pub blocks: u32,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Unique id; also names the segment's storage.
    pub id: String,
    pub name: String,
    /// `None`: the whole table (model without partition column, or a full build).
    pub range: Option<SegmentRange>,
    pub status: SegmentStatus,
    /// The job building it (while NEW).
    #[serde(default)]
    pub job_id: Option<String>,
    /// For merges and refreshes: the READY segments this one replaces when it commits.
    #[serde(default)]
    pub replaces: Vec<String>,
    pub created_ms: i64,
    #[serde(default)]
    pub ready_ms: Option<i64>,
    #[serde(default)]
    pub source_rows: u64,
    #[serde(default)]
    pub size_bytes: u64,
    #[serde(default)]
    pub cuboids: Vec<CuboidStats>,
    /// [`descriptor_signature`] of the layout the segment was built under. Queries read a
    /// segment only while it matches the cube's current layout; a refresh rebuilds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub descriptor_signature: Option<String>,
    /// The lookup tables as they were when the segment was built (one per table, whatever
    /// the aliases); empty for segments built before snapshots were taken.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<LookupSnapshot>,
    /// The segment's table index, when the cube has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_index: Option<CuboidStats>,
}

/// A lookup table's rows stored with a segment (under a reserved storage id, see
/// [`super::cuboid::snapshot_id`]) and the columns they were stored with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookupSnapshot {
    pub table: String,
    /// The storage id (`stats.id` and this are the same).
    pub stats: CuboidStats,
    pub columns: Vec<super::desc::ColumnDesc>,
}

impl Segment {
    /// Bytes stored for the segment: cuboids, lookup snapshots and table index.
    pub fn stored_bytes(&self) -> u64 {
        self.cuboids.iter().map(|c| c.bytes).sum::<u64>()
            + self.snapshots.iter().map(|s| s.stats.bytes).sum::<u64>()
            + self.table_index.as_ref().map_or(0, |t| t.bytes)
    }

    /// Whether the segment's stored data has the layout whose signature is `current`.
    ///
    /// A segment without a signature predates signatures. Until then a cube's descriptor
    /// could not change while it had segments (`Metadata::save_cube` refused), so such a
    /// segment was built under the descriptor still stored: it matches. Whoever changes a
    /// descriptor stamps unsigned segments with the old signature first
    /// (`admin::documents`), so they turn stale with the change instead of matching the new
    /// layout too.
    pub fn built_under(&self, current: &str) -> bool {
        self.descriptor_signature
            .as_deref()
            .is_none_or(|s| s == current)
    }

    pub fn overlaps(&self, range: Option<&SegmentRange>) -> bool {
        match (&self.range, range) {
            (Some(a), Some(b)) => a.overlaps(b),
            _ => true,
        }
    }
}

/// The cube instance: its segments, sorted by range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CubeInstance {
    pub name: String,
    #[serde(default)]
    pub segments: Vec<Segment>,
    /// Highest job-engine lease epoch that has written this cube's segments. A commit from a
    /// lower epoch (a paused, superseded job engine) is refused: the fencing token.
    #[serde(default)]
    pub fence_epoch: u64,
}

impl CubeInstance {
    pub fn new(name: &str) -> Self {
        CubeInstance {
            name: name.to_string(),
            segments: Vec::new(),
            fence_epoch: 0,
        }
    }

    pub fn ready_segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments
            .iter()
            .filter(|s| s.status == SegmentStatus::Ready)
    }

    pub fn segment(&self, id_or_name: &str) -> Option<&Segment> {
        self.segments
            .iter()
            .find(|s| s.id == id_or_name || s.name == id_or_name)
    }

    pub fn sort_segments(&mut self) {
        self.segments
            .sort_by(|a, b| a.range.cmp(&b.range).then(a.created_ms.cmp(&b.created_ms)));
    }
}

/// A signature of everything that decides what a segment stores: the rowkey columns (name,
/// source column, type), the measures (function, input, state kind), the aggregation
/// groups' cuboid list, and
/// the model's joins, filter and partition column (which rows the build reads). Two layouts
/// with the same signature store interchangeable segments. It is a hash (xxh64, stable
/// across releases) of a canonical text, so it never depends on Debug output of other
/// crates' types.
pub fn descriptor_signature(layout: &CubeLayout) -> String {
    fn column(c: &ModelColumn) -> String {
        let ty = sql_type_name(&c.data_type).unwrap_or_else(|| c.data_type.to_string());
        match &c.expression {
            Some(e) => format!("{}.{}:{ty}=({e})", c.table, c.column),
            None => format!("{}.{}:{ty}", c.table, c.column),
        }
    }
    fn state(s: StateKind) -> String {
        match s {
            StateKind::SumInt => "sum_int".into(),
            StateKind::SumFloat => "sum_float".into(),
            StateKind::Count => "count".into(),
            StateKind::MinInt => "min_int".into(),
            StateKind::MaxInt => "max_int".into(),
            StateKind::MinFloat => "min_float".into(),
            StateKind::MaxFloat => "max_float".into(),
            StateKind::Hll(p) => format!("hll{p}"),
            StateKind::Bitmap => "bitmap".into(),
            StateKind::TopN(n) => format!("topn{n}"),
            StateKind::Percentile(c) => format!("percentile{c}"),
            StateKind::Extended => "extended".into(),
        }
    }
    let mut text = String::from("qilin-layout-1\n");
    for r in &layout.rowkey {
        text.push_str(&format!("rowkey {} {}\n", r.name, column(&r.source)));
    }
    for m in &layout.measures {
        let input = m.input.as_ref().map(column).unwrap_or_else(|| "*".into());
        // Appended only when set, so the signatures of cubes built before these options
        // existed do not change.
        let extra = m
            .extra
            .as_ref()
            .map(|c| format!(" with {}", column(c)))
            .unwrap_or_default();
        let dict = if m.global_dict { " global_dict" } else { "" };
        text.push_str(&format!(
            "measure {} {:?} {input} {}{extra}{dict}\n",
            m.name,
            m.function,
            state(m.state)
        ));
    }
    // The aggregation groups' cuboids only: the planner's added and black-listed cuboids
    // change which cuboids segments have (queries use a cuboid only when every READY
    // segment has it), not what any stored cuboid holds.
    let cuboids: Vec<String> = layout.group_cuboids.iter().map(|c| c.to_string()).collect();
    text.push_str(&format!("cuboids {}\n", cuboids.join(",")));
    let model = &layout.model;
    text.push_str(&format!("fact {}\n", model.fact_table));
    for l in &model.lookups {
        text.push_str(&format!(
            "join {:?} {} as {} on {} = {}\n",
            l.join,
            l.table,
            l.name(),
            l.foreign_key.join(","),
            l.primary_key.join(",")
        ));
    }
    if let Some(f) = &model.filter_condition {
        text.push_str(&format!("filter {f}\n"));
    }
    if let Some(p) = &layout.partition {
        text.push_str(&format!("partition {}\n", column(&p.column)));
    }
    // Only when present, so cubes without one keep the signatures their segments carry.
    if let Some(ti) = &layout.table_index {
        let cols: Vec<String> = ti.columns.iter().map(column).collect();
        let sort: Vec<String> = ti
            .sort
            .iter()
            .map(|&i| ti.columns[i].column.clone())
            .collect();
        text.push_str(&format!(
            "table_index {} sorted by {}\n",
            cols.join(","),
            sort.join(",")
        ));
    }
    format!(
        "{:016x}",
        xxhash_rust::xxh64::xxh64(text.as_bytes(), 0x5149_4c49_4e00_0001)
    )
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
