//! The physical plan codec of Qilin's scheduler, executors and client: Qilin's build nodes
//! through the engine's [`BuildPlanCodec`], everything else (Ballista's shuffle nodes) through
//! Ballista's own codec. Ballista's codec cannot wrap another, so this one wraps it and puts a
//! tag byte in front of each node saying which of the two wrote it.

use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use qilin_engine::build::plan::BuildPlanCodec;
use qilin_engine::config::Config;
use qilin_engine::storage::open_segment_store;

const BALLISTA: u8 = 0;
const QILIN: u8 = 1;

#[derive(Debug)]
pub struct QilinCodec {
    ballista: BallistaPhysicalExtensionCodec,
    qilin: BuildPlanCodec,
}

impl QilinCodec {
    pub fn new(qilin: BuildPlanCodec) -> Self {
        QilinCodec {
            ballista: BallistaPhysicalExtensionCodec::default(),
            qilin,
        }
    }

    /// The codec of a process configured by `config`: decoded build nodes read the segment
    /// store `kylin.storage.url` names and spill under `kylin.job.spill-dir` (or `spill_dir`,
    /// an executor's work directory, when that key is empty).
    pub fn from_config(config: &Config, spill_dir: Option<PathBuf>) -> crate::Result<Self> {
        let store = open_segment_store(&config.stores.storage_url)?;
        let spill = if config.jobs.spill_dir.is_empty() {
            spill_dir.unwrap_or_else(std::env::temp_dir)
        } else {
            config.jobs.spill_dir.clone().into()
        };
        Ok(QilinCodec::new(BuildPlanCodec::new(store, spill)))
    }
}

impl PhysicalExtensionCodec for QilinCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match buf.split_first() {
            Some((&BALLISTA, rest)) => self.ballista.try_decode(rest, inputs, ctx, proto_converter),
            Some((&QILIN, rest)) => self.qilin.try_decode(rest, inputs, ctx, proto_converter),
            _ => Err(DataFusionError::Internal(
                "a plan node not written by Qilin's codec (is this a stock Ballista scheduler \
                 or executor? Qilin's builds need `qilin-ballista`)"
                    .into(),
            )),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if BuildPlanCodec::handles(node.as_ref()) {
            buf.push(QILIN);
            self.qilin.try_encode(node, buf, proto_converter)
        } else {
            buf.push(BALLISTA);
            self.ballista.try_encode(node, buf, proto_converter)
        }
    }
}
