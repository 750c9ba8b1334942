//! Qilin's cluster plumbing: what every process of a cluster needs besides its own job.
//!
//! - [`lease`]: the job-engine lease (exactly one process of a cluster runs jobs);
//! - [`liveness`]: process identity ([`Runner`]: host, pid, start time) and whether a
//!   process is still alive;
//! - [`notify`]: signed metadata-change notifications between instances (a Flight
//!   `DoAction`), sending and checking them;
//! - [`metrics`]: the process's Prometheus metrics, recorded through one [`metrics::Metrics`];
//! - [`auth`]: users and bearer tokens ([`auth::Authenticator`]), shared by Flight SQL and HTTP;
//! - [`http`]: the instance's HTTP server: `/health` and `/metrics` (an `axum` router the
//!   REST API and the console join) and [`shutdown_signal`];
//! - [`tls`]: `kylin.server.tls.*` read and checked once, for Flight SQL, HTTP and
//!   notifications;
//! - [`web`]: what every REST handler uses: [`web::ApiError`] (the one engine-error → HTTP
//!   status mapping), the [`web::Caller`] and [`web::JsonBody`] extractors, [`web::Params`].
//!
//! It is a crate of its own so that the engine (`qilin-engine`) knows nothing of tonic or
//! axum, the query server (`qilin-server`) gets its metrics, health endpoint and
//! notifications without depending on the job engine, and the job engine (`qilin-jobs`)
//! gets the lease and notifications without pulling in Flight itself. Both binaries depend
//! on this crate.

pub mod auth;
pub mod http;
pub mod lease;
pub mod liveness;
pub mod metrics;
pub mod notify;
mod shutdown;
pub mod tls;
pub mod web;

pub use liveness::Runner;
pub use metrics::Metrics;
pub use shutdown::shutdown_signal;
