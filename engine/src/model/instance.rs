//! A cube instance: the cube's segments and their state. Stored at `/cube/<name>.json` and
//! changed only by check-and-put, so a segment turns READY exactly once and never while
//! someone else rewrote the list.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

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
}

impl Segment {
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

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
