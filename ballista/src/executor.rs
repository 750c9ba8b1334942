//! A Ballista executor with Qilin's codec.

use std::path::PathBuf;
use std::sync::Arc;

use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use qilin_engine::config::Config;

use crate::codec::QilinCodec;
use crate::Result;

/// How often an executor tells the scheduler it is alive (well within
/// [`crate::scheduler::EXECUTOR_TIMEOUT_SECONDS`]).
pub const EXECUTOR_HEARTBEAT_SECONDS: u64 = 5;

/// Where an executor listens and which scheduler it joins.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    pub scheduler_host: String,
    pub scheduler_port: u16,
    /// Address to bind and to advertise to the scheduler and the other executors.
    pub host: String,
    /// The Arrow Flight port other executors fetch shuffle data from (0: a free one).
    pub port: u16,
    /// Shuffle files and spills; created when absent.
    pub work_dir: PathBuf,
}

/// A port free now on `host` (the executor binds it a moment later: Ballista advertises the
/// configured port, so 0 cannot be passed through).
pub fn free_port(host: &str) -> Result<u16> {
    Ok(std::net::TcpListener::bind((host, 0))?.local_addr()?.port())
}

/// The executor's configuration; `opts.port` must not be 0 here (see [`free_port`]).
pub fn process_config(config: &Config, opts: &ExecutorOptions) -> Result<ExecutorProcessConfig> {
    std::fs::create_dir_all(&opts.work_dir)?;
    let work_dir = opts.work_dir.canonicalize()?;
    let codec = QilinCodec::from_config(config, Some(work_dir.join("spill")))?;
    std::fs::create_dir_all(work_dir.join("spill"))?;
    Ok(ExecutorProcessConfig {
        bind_host: opts.host.clone(),
        external_host: Some(opts.host.clone()),
        port: opts.port,
        // The port the scheduler pushes tasks to.
        grpc_port: free_port(&opts.host)?,
        scheduler_host: opts.scheduler_host.clone(),
        scheduler_port: opts.scheduler_port,
        // Retry while the scheduler starts.
        scheduler_connect_timeout_seconds: 30,
        work_dir: Some(work_dir.display().to_string()),
        override_physical_codec: Some(Arc::new(codec)),
        executor_heartbeat_interval_seconds: EXECUTOR_HEARTBEAT_SECONDS,
        ..Default::default()
    })
}

/// Runs the executor until it is stopped (SIGTERM or ctrl-c).
pub async fn run(config: ExecutorProcessConfig) -> Result<()> {
    Ok(start_executor_process(Arc::new(config)).await?)
}
