//! Subcommands of `qilin-jobs` that edit the catalog (each family in its own module).

pub mod documents;
pub mod optimize;
pub mod security;
