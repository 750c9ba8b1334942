//! The Star Schema Benchmark sample: data generator, project, model and cube.

pub mod ssb;
pub mod ssbgen;
