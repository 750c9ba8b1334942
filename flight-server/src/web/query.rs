//! `POST /kylin/api/query`: Kylin's query endpoint over the query engine.

use std::sync::Arc;

use axum::Router;
use qilin_engine::query::QueryEngine;
use tokio::sync::Semaphore;

pub fn router(engine: Arc<QueryEngine>, slots: Arc<Semaphore>) -> Router {
    let _ = (engine, slots);
    Router::new()
}
