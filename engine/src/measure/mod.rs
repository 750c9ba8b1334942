//! Measures and their stored, mergeable states.

pub mod bitmap;
pub mod hll;
