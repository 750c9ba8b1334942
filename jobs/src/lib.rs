//! Qilin's job engine: build, merge and refresh jobs persisted in the metadata store, run by
//! the `qilin-jobs` CLI (and later by servers in `all`/`job` mode).

pub mod engine;
pub mod job;
pub mod liveness;
pub mod progress;

pub use engine::{JobEngine, Observer, Submitted};
pub use job::{Job, JobKind, JobStatus};
pub use progress::progress_lines;
