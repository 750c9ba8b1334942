//! The Ballista scheduler with Qilin's codec.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use qilin_engine::config::Config;

use crate::codec::QilinCodec;
use crate::Result;

/// Seconds without a heartbeat after which the scheduler gives up on an executor.
pub const EXECUTOR_TIMEOUT_SECONDS: u64 = 20;

/// A scheduler listening on its socket.
pub struct Scheduler {
    pub addr: SocketAddr,
    server: tokio::task::JoinHandle<ballista_core::error::Result<()>>,
}

impl Scheduler {
    /// Binds `host:port` (port 0 picks a free one) and starts scheduling. `host` is also the
    /// address executors are told to report to, so it must be one they can reach.
    pub async fn start(config: &Config, host: &str, port: u16) -> Result<Scheduler> {
        let listener = tokio::net::TcpListener::bind((host, port)).await?;
        let addr = listener.local_addr()?;
        let codec = Arc::new(QilinCodec::from_config(config, None)?);
        let scheduler_config = Arc::new(SchedulerConfig {
            bind_host: host.to_string(),
            external_host: host.to_string(),
            // Executors report task status to external_host:bind_port: the port bound.
            bind_port: addr.port(),
            override_physical_codec: Some(codec),
            // A killed executor is noticed within about half a minute (Ballista's defaults,
            // 180 s checked every 15 s, are for clusters of hundreds): its tasks run again
            // elsewhere. Executors heartbeat every EXECUTOR_HEARTBEAT_SECONDS.
            executor_timeout_seconds: EXECUTOR_TIMEOUT_SECONDS,
            expire_dead_executor_interval_seconds: 5,
            no_executors_grace_period_seconds: EXECUTOR_TIMEOUT_SECONDS,
            ..Default::default()
        });
        scheduler_config.validate()?;
        let cluster = BallistaCluster::new_from_config(&scheduler_config).await?;
        let server =
            create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, scheduler_config)
                .await?;
        let server = tokio::spawn(start_grpc_service_with_listener(listener, server));
        Ok(Scheduler { addr, server })
    }

    /// Serves until the gRPC service stops (an error) or the process ends.
    pub async fn wait(self) -> Result<()> {
        match self.server.await {
            Ok(r) => Ok(r?),
            Err(e) => Err(crate::Error::Ballista(format!(
                "scheduler task failed: {e}"
            ))),
        }
    }
}
