//! First start on an empty installation: create the SSB sample and build its cube, so that a
//! new user has something to query (Kylin's sample project). Progress goes to stdout.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use qilin_engine::config::Config;
use qilin_engine::sample::ssb;
use qilin_jobs::{progress_lines, JobEngine};

use crate::server::Stores;

/// Creates and builds the sample when `kylin.sample.auto-create` is on and the local metadata
/// store holds no project. Does nothing otherwise.
pub async fn create_if_empty(config: &Config, stores: &Stores) -> anyhow::Result<()> {
    if !config.sample.auto_create {
        return Ok(());
    }
    if config.stores.metadata_url.contains("hbase://") {
        log::info!("metadata store is not local; no sample is created");
        return Ok(());
    }
    let meta = stores.meta.clone();
    if !meta.projects().context("listing projects")?.is_empty() {
        return Ok(());
    }
    let scale = config.sample.scale;
    let source = Path::new(&config.stores.source_url);
    say(&format!(
        "empty metadata store {}: creating the SSB sample at scale {scale} \
         (kylin.sample.auto-create=false to skip)",
        config.stores.metadata_url
    ));
    let jobs = JobEngine::new(meta, stores.segments.clone(), config.clone());
    let layout = ssb::install(
        jobs.metadata(),
        source,
        scale,
        config.cube.max_cuboids_per_group,
    )
    .await
    .context("installing the SSB sample")?;
    say(&format!(
        "registered project {}, cube {} ({} cuboids); building it",
        ssb::PROJECT,
        ssb::CUBE,
        layout.cuboids.len()
    ));
    let submitted = jobs
        .submit_build(ssb::CUBE, Some(ssb::full_range()))
        .context("submitting the sample build")?;
    let job = jobs
        .run(&submitted.job().id, progress_lines(|line| say(&line)))
        .await
        .context("building the sample cube")?;
    say(&format!("sample cube {} built (job {})", ssb::CUBE, job.id));
    Ok(())
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "qilin-server: {line}");
    let _ = out.flush();
}
