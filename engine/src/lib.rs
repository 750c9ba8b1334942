//! Qilin engine: configuration, metadata store, cube model, measures, segment storage and
//! cube building. Knows nothing of command-line parsing or gRPC.

pub mod admin;
pub mod build;
pub mod config;
pub mod dict;
pub mod error;
pub mod fsutil;
pub mod hbase;
pub mod measure;
pub mod metadata;
pub mod model;
pub mod names;
pub mod planner;
pub mod query;
pub mod sample;
pub mod security;
pub mod source;
pub mod storage;
pub mod uncovered;

pub use error::{Error, Result};
