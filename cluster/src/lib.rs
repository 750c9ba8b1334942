//! Qilin's cluster plumbing: what every process of a cluster needs besides its own job.
//!
//! - [`lease`]: the job-engine lease (exactly one process of a cluster runs jobs);
//! - [`liveness`]: process identity ([`Runner`]: host, pid, start time) and whether a
//!   process is still alive;
//! - [`notify`]: signed metadata-change notifications between instances (a Flight
//!   `DoAction`), sending and checking them;
//! - [`metrics`]: the process's Prometheus metrics, recorded through one [`metrics::Metrics`];
//! - [`http`]: the health/metrics HTTP endpoint (an `axum` router that later routes can
//!   join) and [`shutdown_signal`].
//!
//! It is a crate of its own so that the engine (`qilin-engine`) knows nothing of tonic or
//! axum, the query server (`qilin-server`) gets its metrics, health endpoint and
//! notifications without depending on the job engine, and the job engine (`qilin-jobs`)
//! gets the lease and notifications without pulling in Flight itself. Both binaries depend
//! on this crate.

pub mod http;
pub mod lease;
pub mod liveness;
pub mod metrics;
pub mod notify;
mod shutdown;

pub use liveness::Runner;
pub use metrics::Metrics;
pub use shutdown::shutdown_signal;
