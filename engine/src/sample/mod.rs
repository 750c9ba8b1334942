//! The Star Schema Benchmark sample (data generator, project, model and cube) and the TPC-H
//! data generator.

pub mod ssb;
pub mod ssbgen;
pub mod tpch;
