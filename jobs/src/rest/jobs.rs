//! Jobs, builds and the system page of the REST API (helper B fills this module).
//!
//! Interface expected by `rest::router`: `pub fn routes(jobs: JobEngine) -> Router` returning
//! a `Router<()>` (state applied with `.with_state`), no fallback. Routes (see the contract):
//! GET /kylin/api/jobs, GET /kylin/api/jobs/{id}, PUT /kylin/api/jobs/{id}/resume,
//! PUT /kylin/api/jobs/{id}/cancel, PUT /kylin/api/cubes/{cube}/rebuild, GET /qilin/api/system.
//! Handlers take `qilin_cluster::web::Caller` (401 when missing), `JsonBody<T>` for bodies
//! (400 when malformed), `Params` for query strings, return `Result<_, ApiError>`, and run
//! store calls through `super::blocking`.

use axum::Router;

use crate::JobEngine;

pub fn routes(jobs: JobEngine) -> Router {
    let _ = jobs;
    Router::new()
}
