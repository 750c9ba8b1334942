//! Running a plan on a cluster.

use std::sync::Arc;

use ballista_core::config::BallistaConfig;
use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::PhysicalPlanNode;

use datafusion::arrow::array::RecordBatch;
use futures::future::BoxFuture;
use futures::TryStreamExt;
use qilin_engine::build::plan::BuildPlanCodec;
use qilin_engine::build::remote::PlanRunner;
use qilin_engine::config::{BuildEngine, Config};
use qilin_engine::storage::SegmentStore;

use crate::codec::QilinCodec;
use crate::{parse_host_port, Error, Result};

/// How a plan runs on the cluster.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Read every shuffle partition over the network, even one on the reading executor's
    /// disk (`ballista.shuffle.force_remote_read`; tests use it on one host).
    pub force_remote_read: bool,
}

/// Submits `plan` (already split into partitions as it should run) to the scheduler at
/// `host:port` and streams its output.
pub async fn run_plan(
    scheduler: (&str, u16),
    plan: Arc<dyn ExecutionPlan>,
    codec: &QilinCodec,
    opts: &RunOptions,
) -> Result<SendableRecordBatchStream> {
    let session = SessionConfig::new_with_ballista()
        .with_ballista_shuffle_reader_force_remote_read(opts.force_remote_read);
    Ok(execute_physical_plan::<PhysicalPlanNode>(
        format!("http://{}:{}", scheduler.0, scheduler.1),
        &BallistaConfig::default(),
        plan,
        codec,
        uuid::Uuid::new_v4().to_string(),
        session,
    )
    .await?)
}

/// The cluster a job engine builds on (`kylin.job.engine=ballista`): runs the engine's
/// cuboid plans through the scheduler at `kylin.job.ballista.scheduler`.
#[derive(Debug)]
pub struct Cluster {
    scheduler: (String, u16),
    codec: QilinCodec,
    opts: RunOptions,
}

impl Cluster {
    /// The cluster `config` names, with plans bound to `store` (the job engine's segment
    /// store, the same one the executors open); `None` when builds run locally.
    pub fn from_config(
        config: &Config,
        store: Arc<dyn SegmentStore>,
    ) -> Result<Option<Arc<Cluster>>> {
        if config.jobs.engine != BuildEngine::Ballista {
            return Ok(None);
        }
        let scheduler = parse_host_port(
            "kylin.job.ballista.scheduler",
            &config.jobs.ballista_scheduler,
        )?;
        // Decoding on this side happens only for plans the scheduler sends back (none):
        // the spill directory is the executors' business.
        let codec = QilinCodec::new(BuildPlanCodec::new(store, std::env::temp_dir()));
        Ok(Some(Arc::new(Cluster {
            scheduler,
            codec,
            opts: RunOptions {
                force_remote_read: config.jobs.ballista_force_remote_read,
            },
        })))
    }

    async fn collect(&self, plan: Arc<dyn ExecutionPlan>) -> Result<Vec<RecordBatch>> {
        let (host, port) = (&self.scheduler.0, self.scheduler.1);
        let stream = run_plan((host, port), plan, &self.codec, &self.opts).await?;
        Ok(stream.try_collect().await?)
    }
}

impl PlanRunner for Cluster {
    fn run(
        &self,
        plan: Arc<dyn ExecutionPlan>,
    ) -> BoxFuture<'_, qilin_engine::Result<Vec<RecordBatch>>> {
        Box::pin(async move {
            self.collect(plan).await.map_err(|e| match e {
                Error::Engine(e) => e,
                e => qilin_engine::Error::Unavailable {
                    what: format!(
                        "Ballista scheduler {}:{}",
                        self.scheduler.0, self.scheduler.1
                    ),
                    detail: e.to_string(),
                },
            })
        })
    }
}
