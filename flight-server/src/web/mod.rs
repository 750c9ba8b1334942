//! `qilin-server`'s one HTTP server (`kylin.server.http-port`): `/health` and `/metrics`
//! (`qilin_cluster::http`), the Kylin REST API over the catalog and jobs
//! (`qilin_jobs::rest`), `POST /kylin/api/query` ([`query`]) and the web console
//! ([`console`]). Every REST route authenticates through `qilin_cluster::web::CallerAccess`, which
//! finds the shared [`Authenticator`] in the request extensions added here.

pub mod console;
pub mod query;

use std::sync::Arc;

use axum::{Extension, Router};
use qilin_cluster::auth::Authenticator;
use qilin_cluster::http::{self, HealthFn};
use qilin_engine::query::QueryEngine;
use qilin_jobs::JobEngine;
use tokio::sync::Semaphore;

/// What the HTTP server's routes use.
pub struct Web {
    pub auth: Arc<Authenticator>,
    pub health: HealthFn,
    pub engine: Arc<QueryEngine>,
    pub jobs: JobEngine,
    /// `kylin.query.max-concurrent`, shared with Flight SQL.
    pub query_slots: Arc<Semaphore>,
}

/// Every route of the instance; only `http::router` has a fallback (404).
pub fn router(web: Web) -> Router {
    http::router(web.health)
        .merge(qilin_jobs::rest::router(web.jobs))
        .merge(query::router(web.engine, web.query_slots))
        .merge(console::router())
        .layer(Extension(web.auth))
}
