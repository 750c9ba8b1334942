//! A job as stored at `/execute/<id>.json`: what it builds, its steps, state, progress and
//! error, and which process runs it (so a job left RUNNING by a dead process is found).

use qilin_engine::model::{now_ms, SegmentRange};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobKind {
    Build,
    Merge,
    Refresh,
    /// Adds the descriptor's new cuboids to every READY segment from its stored cuboids (the
    /// cube planner's `cube optimize --apply`); creates no segment.
    Optimize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Submitted, not started.
    Ready,
    Running,
    Succeed,
    Error,
    /// Interrupted; can be resumed.
    Stopped,
    /// Given up by the user; its segment is gone.
    Discarded,
}

impl JobStatus {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeed | JobStatus::Error | JobStatus::Discarded
        )
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self).ok();
        f.write_str(s.as_ref().and_then(|v| v.as_str()).unwrap_or("?"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStep {
    pub name: String,
    pub status: JobStatus,
}

/// The share of a job's progress that its first step makes (see [`Job::progress_at_step`]).
pub const FIRST_STEP_SHARE: f64 = 0.95;

/// The process running a job (defined with the lease, which records one too).
pub use qilin_cluster::liveness::Runner;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub kind: JobKind,
    pub cube: String,
    /// The NEW segment this job produces.
    pub segment_id: String,
    pub segment_name: String,
    pub range: Option<SegmentRange>,
    /// Merge and refresh: READY segments replaced on commit.
    #[serde(default)]
    pub replaces: Vec<String>,
    pub status: JobStatus,
    pub steps: Vec<JobStep>,
    /// 0 to 1 over all steps; never decreases during an attempt (a resumed job rebuilds
    /// from the start, so its progress restarts at 0).
    pub progress: f64,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub error: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    #[serde(default)]
    pub started_ms: Option<i64>,
    #[serde(default)]
    pub ended_ms: Option<i64>,
    #[serde(default)]
    pub runner: Option<Runner>,
    #[serde(default)]
    pub attempts: u32,
    /// An auto-merge: the job whose committed segment filled the merge window (Kylin
    /// records such jobs as submitted by SYSTEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggered_by: Option<String>,
    /// The user who submitted the job through the REST API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitter: Option<String>,
}

impl Job {
    pub fn new(
        kind: JobKind,
        cube: &str,
        segment_id: &str,
        segment_name: &str,
        range: Option<SegmentRange>,
    ) -> Job {
        let steps: &[&str] = match kind {
            JobKind::Build => &["Build cuboids", "Commit segment"],
            JobKind::Merge => &["Merge cuboids", "Commit segment", "Drop merged segments"],
            JobKind::Refresh => &["Build cuboids", "Commit segment", "Drop replaced segment"],
            JobKind::Optimize => &["Build new cuboids", "Commit segments"],
        };
        let now = now_ms();
        Job {
            id: uuid::Uuid::new_v4().to_string(),
            kind,
            cube: cube.to_string(),
            segment_id: segment_id.to_string(),
            segment_name: segment_name.to_string(),
            range,
            replaces: Vec::new(),
            status: JobStatus::Ready,
            steps: steps
                .iter()
                .map(|s| JobStep {
                    name: s.to_string(),
                    status: JobStatus::Ready,
                })
                .collect(),
            progress: 0.0,
            message: String::new(),
            error: None,
            created_ms: now,
            updated_ms: now,
            started_ms: None,
            ended_ms: None,
            runner: None,
            attempts: 0,
            triggered_by: None,
            submitter: None,
        }
    }

    /// The job's progress when step `step` starts: the first step (building or merging the
    /// cuboids) makes [`FIRST_STEP_SHARE`] of it, the commit steps share the rest.
    pub fn progress_at_step(&self, step: usize) -> f64 {
        let later = self.steps.len().saturating_sub(1).max(1) as f64;
        match step {
            0 => 0.0,
            s => FIRST_STEP_SHARE + (1.0 - FIRST_STEP_SHARE) * (s - 1) as f64 / later,
        }
    }

    /// Index of the step in progress (or the last one).
    pub fn current_step(&self) -> usize {
        self.steps
            .iter()
            .position(|s| s.status != JobStatus::Succeed)
            .unwrap_or(self.steps.len().saturating_sub(1))
    }
}
