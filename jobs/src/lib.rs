//! Qilin's job engine: build, merge and refresh jobs persisted in the metadata store, run by
//! the `qilin-jobs` CLI or by the job daemon (`qilin-jobs serve`, `qilin-server` in mode
//! `all`) under the cluster's one job-engine lease. The lease, liveness, notifications,
//! metrics and the health endpoint are in `qilin-cluster`, shared with the query server.

pub mod daemon;
pub mod engine;
pub mod job;
pub mod progress;
pub mod rest;

pub use engine::{JobEngine, Observer, Submitted};
pub use job::{Job, JobKind, JobStatus, Runner};
pub use progress::progress_lines;
