//! Qilin's job engine: build, merge and refresh jobs persisted in the metadata store, run by
//! the `qilin-jobs` CLI or by the job daemon (`qilin-jobs serve`, `qilin-server` in mode
//! `all`) under the cluster's one job-engine lease; and the cluster plumbing both binaries
//! share: notifications, metrics, the health endpoint.

pub mod daemon;
pub mod engine;
pub mod http;
pub mod job;
pub mod lease;
pub mod liveness;
pub mod metrics;
pub mod notify;
pub mod progress;

pub use engine::{JobEngine, Observer, Submitted};
pub use job::{Job, JobKind, JobStatus};
pub use progress::progress_lines;
