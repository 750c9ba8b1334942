//! How many bytes each measure's state column takes in the built SSB cube, so that the cost
//! of issue 18's measures (TOP_N, PERCENTILE, EXTENDED_COLUMN and exact COUNT DISTINCT of
//! non-integer columns through the global dictionary) is visible next to the others.
//!
//! Every cuboid of every READY segment is read back; a column's size is the bytes of its
//! Arrow buffers (values, offsets, validity) as stored, before the block files' compression:
//! stored block sizes are per block, not per column. "Without issue 18's measures" is the
//! total less their columns: the same cuboids, the same rows.

use std::path::Path;

use anyhow::Context;
use datafusion::arrow::array::Array;
use qilin_engine::model::{function_name, MeasureFunction, StateKind};
use qilin_engine::sample::ssb;
use qilin_engine::storage::block::read_cuboid;
use serde::{Deserialize, Serialize};

/// One measure's state column over the whole cube.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeasureSize {
    pub name: String,
    /// As descriptors spell it, with the state (e.g. `COUNT_DISTINCT bitmap global_dict`).
    pub function: String,
    pub bytes: u64,
    /// One of issue 18's measure kinds.
    pub issue18: bool,
}

/// The cube's columns by kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CubeSize {
    pub cuboids: usize,
    pub rows: u64,
    /// Every column: dimensions and measures.
    pub total_bytes: u64,
    pub dimension_bytes: u64,
    pub measures: Vec<MeasureSize>,
    /// The issue-18 measures' columns together, and the cube without them.
    pub issue18_bytes: u64,
    pub without_issue18_bytes: u64,
}

fn is_issue18(function: MeasureFunction, global_dict: bool) -> bool {
    matches!(
        function,
        MeasureFunction::TopN | MeasureFunction::Percentile | MeasureFunction::ExtendedColumn
    ) || global_dict
}

/// Reads the SSB cube the configuration `conf` names and sizes its columns.
pub fn measure(conf: &Path) -> anyhow::Result<CubeSize> {
    let config = qilin_engine::config::Config::load(Some(conf))
        .map_err(|e| anyhow::anyhow!("loading {}: {e}", conf.display()))?;
    let store = qilin_engine::metadata::open_store(&config.stores.metadata_url)
        .map_err(|e| anyhow::anyhow!("opening the metadata store: {e}"))?;
    let meta = qilin_engine::metadata::managers::Metadata::new(store);
    let segments = qilin_engine::storage::open_segment_store(&config.stores.storage_url)
        .map_err(|e| anyhow::anyhow!("opening the segment store: {e}"))?;
    let layout = meta
        .cube_layout(ssb::CUBE, config.cube.max_cuboids_per_group)
        .map_err(|e| anyhow::anyhow!("cube {}: {e}", ssb::CUBE))?;
    let (inst, _) = meta
        .cube_instance(ssb::CUBE)
        .map_err(|e| anyhow::anyhow!("cube {}: {e}", ssb::CUBE))?;
    let mut measure_bytes = vec![0u64; layout.measures.len()];
    let (mut total, mut dims, mut rows, mut cuboids) = (0u64, 0u64, 0u64, 0usize);
    for seg in inst.ready_segments() {
        for c in &seg.cuboids {
            let (_, batches) = read_cuboid(segments.as_ref(), &seg.id, c.id)
                .map_err(|e| anyhow::anyhow!("reading cuboid {} of {}: {e}", c.id, seg.name))
                .context("sizing the cube's columns")?;
            let n_dims = layout.cuboid_columns(c.id).len();
            cuboids += 1;
            for b in &batches {
                rows += b.num_rows() as u64;
                for (i, col) in b.columns().iter().enumerate() {
                    let bytes = col.to_data().get_slice_memory_size()? as u64;
                    total += bytes;
                    match i.checked_sub(n_dims) {
                        None => dims += bytes,
                        Some(m) if m < measure_bytes.len() => measure_bytes[m] += bytes,
                        Some(_) => {}
                    }
                }
            }
        }
    }
    let measures: Vec<MeasureSize> = layout
        .measures
        .iter()
        .zip(&measure_bytes)
        .map(|(m, &bytes)| {
            let state = match m.state {
                StateKind::Bitmap if m.global_dict => " bitmap global_dict".to_string(),
                StateKind::Bitmap => " bitmap".to_string(),
                StateKind::Hll(p) => format!(" hll({p})"),
                StateKind::TopN(n) => format!(" n={n}"),
                StateKind::Percentile(c) => format!(" compression={c}"),
                _ => String::new(),
            };
            MeasureSize {
                name: m.name.clone(),
                function: format!("{}{state}", function_name(m.function)),
                bytes,
                issue18: is_issue18(m.function, m.global_dict),
            }
        })
        .collect();
    let issue18: u64 = measures.iter().filter(|m| m.issue18).map(|m| m.bytes).sum();
    Ok(CubeSize {
        cuboids,
        rows,
        total_bytes: total,
        dimension_bytes: dims,
        measures,
        issue18_bytes: issue18,
        without_issue18_bytes: total - issue18,
    })
}

impl CubeSize {
    /// The printed lines.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mib = |b: u64| b as f64 / 1048576.0;
        let pct = |b: u64| {
            if self.total_bytes > 0 {
                100.0 * b as f64 / self.total_bytes as f64
            } else {
                0.0
            }
        };
        let mut s = String::new();
        let _ = writeln!(
            s,
            "cube columns (Arrow bytes before compression): {:.2} MiB in {} cuboids, {} rows; \
             dimensions {:.2} MiB",
            mib(self.total_bytes),
            self.cuboids,
            self.rows,
            mib(self.dimension_bytes)
        );
        for m in &self.measures {
            let _ = writeln!(
                s,
                "  {}{:<22} {:<36} {:>10.2} MiB {:>6.2}%",
                if m.issue18 { "*" } else { " " },
                m.name,
                m.function,
                mib(m.bytes),
                pct(m.bytes)
            );
        }
        let _ = writeln!(
            s,
            "  issue-18 measures (*): {:.2} MiB ({:.2}%); cube without them {:.2} MiB",
            mib(self.issue18_bytes),
            pct(self.issue18_bytes),
            mib(self.without_issue18_bytes)
        );
        s
    }
}
