//! `qilin-jobs metadata backup DIR` / `qilin-jobs metadata restore DIR`.

use std::path::PathBuf;

use qilin_engine::metadata::{backup, managers::Metadata};

#[derive(clap::Subcommand)]
pub enum MetadataCommand {
    /// Copy every metadata resource, as of one consistent moment, into a new directory (with a
    /// manifest of versions and SHA-256 checksums). Segment data is not copied.
    Backup { dir: PathBuf },
    /// Load a backup into this (empty) metadata store, after verifying its checksums.
    Restore { dir: PathBuf },
}

pub fn run(meta: &Metadata, command: MetadataCommand) -> anyhow::Result<()> {
    let store = meta.store().as_ref();
    match command {
        MetadataCommand::Backup { dir } => {
            let s = backup::backup(store, &dir)?;
            println!(
                "backed up {} resources ({} bytes) of {} at store version {} into {}",
                s.resources,
                s.bytes,
                store.describe(),
                s.store_version,
                dir.display()
            );
        }
        MetadataCommand::Restore { dir } => {
            let s = backup::restore(store, &dir)?;
            println!(
                "restored {} resources ({} bytes, backed up at store version {}) into {}",
                s.resources,
                s.bytes,
                s.store_version,
                store.describe()
            );
        }
    }
    Ok(())
}
