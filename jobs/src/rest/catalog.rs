//! The catalog of Kylin's REST API: sign-in, projects, tables and columns, models, cubes.

use axum::Router;

use crate::JobEngine;

pub fn router(jobs: JobEngine) -> Router {
    let _ = jobs;
    Router::new()
}
