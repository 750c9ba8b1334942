//! Running a plan on a cluster: submitted to the scheduler as a job, which is cancelled
//! there when the caller stops waiting for it (a discarded build, a lost lease).
//!
//! Ballista's `execute_physical_plan` does the same but never gives out the job id, so a
//! caller that stops waiting leaves the job running on the executors; this submits through
//! the scheduler's gRPC API itself to keep the id.

use std::sync::Arc;
use std::time::Duration;

use ballista_core::client::BallistaClient;
use ballista_core::config::BallistaConfig;
use ballista_core::extension::SessionConfigExt;
use ballista_core::serde::protobuf::{
    execute_query_params::Query, execute_query_result, job_status,
    scheduler_grpc_client::SchedulerGrpcClient, CancelJobParams, ExecuteQueryParams,
    GetJobStatusParams, KeyValuePair, PartitionLocation,
};
use ballista_core::utils::{create_grpc_client_endpoint, GrpcClientConfig};
use ballista_core::version;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion::prelude::SessionConfig;
use datafusion_proto::physical_plan::AsExecutionPlan;
use datafusion_proto::protobuf::PhysicalPlanNode;
use tonic::transport::Channel;

use datafusion::arrow::array::RecordBatch;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use qilin_engine::build::plan::BuildPlanCodec;
use qilin_engine::build::runner::PlanRunner;
use qilin_engine::config::{BuildEngine, Config};
use qilin_engine::storage::SegmentStore;

use crate::codec::QilinCodec;
use crate::{parse_host_port, Error, Result};

/// How often a submitted job's status is asked for: each cuboid plan waits about half of it
/// after it finished.
const STATUS_POLL: Duration = Duration::from_millis(20);

/// How a plan runs on the cluster.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Read every shuffle partition over the network, even one on the reading executor's
    /// disk (`ballista.shuffle.force_remote_read`; tests use it on one host).
    pub force_remote_read: bool,
}

/// Submits `plan` (already split into partitions as it should run) to the scheduler at
/// `host:port`, waits for the job and streams its output. Dropping the future before the
/// job ended cancels the job on the scheduler.
pub async fn run_plan(
    scheduler: (&str, u16),
    plan: Arc<dyn ExecutionPlan>,
    codec: &QilinCodec,
    opts: &RunOptions,
) -> Result<SendableRecordBatchStream> {
    let session = uuid::Uuid::new_v4().to_string();
    run_in_session(scheduler, &session, plan, codec, opts).await
}

async fn run_in_session(
    scheduler: (&str, u16),
    session_id: &str,
    plan: Arc<dyn ExecutionPlan>,
    codec: &QilinCodec,
    opts: &RunOptions,
) -> Result<SendableRecordBatchStream> {
    let config = BallistaConfig::default();
    let max_message_size = config.grpc_client_max_message_size();
    let grpc = GrpcClientConfig::from(&config);
    let mut encoded = Vec::new();
    PhysicalPlanNode::try_from_physical_plan(plan.clone(), codec)?.try_encode(&mut encoded)?;
    let session = SessionConfig::new_with_ballista()
        .with_ballista_shuffle_reader_force_remote_read(opts.force_remote_read);
    let settings = session
        .options()
        .entries()
        .into_iter()
        .map(|e| KeyValuePair {
            key: e.key,
            value: e.value,
        })
        .collect();

    let url = format!("http://{}:{}", scheduler.0, scheduler.1);
    let unreachable = |e: &dyn std::fmt::Display| Error::Ballista(format!("scheduler {url}: {e}"));
    let channel = create_grpc_client_endpoint(url.clone(), Some(&grpc))
        .map_err(|e| unreachable(&e))?
        .connect()
        .await
        .map_err(|e| unreachable(&e))?;
    let mut client = SchedulerGrpcClient::new(channel)
        .max_encoding_message_size(max_message_size)
        .max_decoding_message_size(max_message_size);
    let mut request = tonic::Request::new(ExecuteQueryParams {
        query: Some(Query::PhysicalPlan(encoded)),
        settings,
        session_id: session_id.to_string(),
        operation_id: uuid::Uuid::new_v4().to_string(),
    });
    version::insert_version_header(request.metadata_mut());
    let submitted = client
        .execute_query(request)
        .await
        .map_err(|e| unreachable(&e))?
        .into_inner();
    let job_id = match submitted.result {
        Some(execute_query_result::Result::Success(ok)) => ok.job_id,
        Some(execute_query_result::Result::Failure(refused)) => {
            return Err(Error::Ballista(format!(
                "scheduler {url} refused the plan: {refused:?}"
            )))
        }
        None => return Err(unreachable(&"empty answer to the job submission")),
    };
    log::debug!("Ballista job {job_id} submitted");
    let mut job = ClusterJob {
        scheduler: client,
        id: job_id,
        ended: false,
    };
    let locations = job.wait().await?;

    let schema = plan.schema();
    let partitions = futures::stream::iter(locations)
        .then(move |location| fetch_partition(location, max_message_size, grpc.clone()))
        .try_flatten();
    Ok(Box::pin(RecordBatchStreamAdapter::new(schema, partitions)))
}

/// A job on the scheduler. Dropped before it ended, it is cancelled there: its tasks stop
/// on the executors.
struct ClusterJob {
    scheduler: SchedulerGrpcClient<Channel>,
    id: String,
    ended: bool,
}

impl ClusterJob {
    /// Waits for the job to end; returns where its output partitions are.
    async fn wait(&mut self) -> Result<Vec<PartitionLocation>> {
        loop {
            let answer = self
                .scheduler
                .get_job_status(GetJobStatusParams {
                    job_id: self.id.clone(),
                })
                .await
                .map_err(|e| Error::Ballista(format!("status of job {}: {e}", self.id)))?
                .into_inner();
            match answer.status.and_then(|s| s.status) {
                None
                | Some(job_status::Status::Queued(_))
                | Some(job_status::Status::Running(_)) => tokio::time::sleep(STATUS_POLL).await,
                Some(job_status::Status::Failed(failed)) => {
                    self.ended = true;
                    return Err(Error::Ballista(format!(
                        "job {} failed: {}",
                        self.id, failed.error
                    )));
                }
                Some(job_status::Status::Successful(done)) => {
                    self.ended = true;
                    return Ok(done.partition_location);
                }
            }
        }
    }
}

impl Drop for ClusterJob {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let (mut scheduler, id) = (self.scheduler.clone(), std::mem::take(&mut self.id));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    match scheduler
                        .cancel_job(CancelJobParams { job_id: id.clone() })
                        .await
                    {
                        Ok(_) => log::info!("Ballista job {id} cancelled"),
                        Err(e) => log::warn!("could not cancel Ballista job {id}: {e}"),
                    }
                });
            }
            Err(_) => log::warn!("Ballista job {id} left running: no runtime to cancel it from"),
        }
    }
}

/// Streams one output partition of a finished job from the executor that holds it.
async fn fetch_partition(
    location: PartitionLocation,
    max_message_size: usize,
    grpc: GrpcClientConfig,
) -> datafusion::error::Result<SendableRecordBatchStream> {
    let missing = |what: &str| {
        datafusion::error::DataFusionError::Execution(format!("Ballista job output without {what}"))
    };
    let layout = location.layout();
    let executor = location
        .executor_meta
        .ok_or_else(|| missing("an executor"))?;
    let partition = location
        .partition_id
        .ok_or_else(|| missing("a partition id"))?;
    let port = u16::try_from(executor.port).map_err(|_| missing("a valid executor port"))?;
    let mut client = BallistaClient::try_new(
        &executor.host,
        port,
        max_message_size,
        grpc.use_tls,
        None,
        grpc.io_retries_times,
        grpc.io_retry_wait_time_ms,
        0,
        0,
    )
    .await
    .map_err(|e| e.into_datafusion())?;
    client
        .fetch_partition(
            &executor.id,
            &partition.into(),
            location.file_id,
            layout,
            true,
        )
        .await
        .map_err(|e| e.into_datafusion())
}

/// The cluster a job engine builds on (`kylin.job.engine=ballista`): runs the engine's
/// cuboid plans through the scheduler at `kylin.job.ballista.scheduler`.
#[derive(Debug)]
pub struct Cluster {
    scheduler: (String, u16),
    /// One scheduler session for all plans of this job engine (the same settings).
    session: String,
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
            session: uuid::Uuid::new_v4().to_string(),
            codec,
            opts: RunOptions {
                force_remote_read: config.jobs.ballista_force_remote_read,
            },
        })))
    }

    async fn collect(&self, plan: Arc<dyn ExecutionPlan>) -> Result<Vec<RecordBatch>> {
        let (host, port) = (&self.scheduler.0, self.scheduler.1);
        let stream =
            run_in_session((host, port), &self.session, plan, &self.codec, &self.opts).await?;
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
