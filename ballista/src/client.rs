//! Running a plan on a cluster.

use std::sync::Arc;

use ballista_core::config::BallistaConfig;
use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::PhysicalPlanNode;

use crate::codec::QilinCodec;
use crate::Result;

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
