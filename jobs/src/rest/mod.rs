//! Kylin's REST API over the job engine's metadata, served by both a job node
//! (`qilin-jobs serve`) and a query node (`qilin-server`, which adds `/kylin/api/query` and the
//! console): [`catalog`] (projects, tables, models, cubes, sign-in), [`jobs`] (jobs, builds,
//! the system page) and [`security`] (users, grants, table rules, API keys, the audit log). Errors, authentication and bodies: `qilin_cluster::web`.

pub mod catalog;
pub mod jobs;
pub mod security;

use axum::Router;
use qilin_cluster::web::ApiError;

use crate::JobEngine;

/// Every REST route of this crate, with no fallback (the composing binary keeps its own).
/// The binary must add the `Arc<Authenticator>` extension for `qilin_cluster::web::CallerAccess`.
pub fn router(jobs: JobEngine) -> Router {
    catalog::router(jobs.clone())
        .merge(security::router(jobs.clone()))
        .merge(jobs::routes(jobs))
}

/// Runs `f` (metadata store reads and writes block: HBase round trips) on the blocking pool;
/// a panic becomes a 500 instead of a dropped connection.
pub async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("request handler failed: {e}")))?
}
