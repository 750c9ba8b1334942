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

/// One cuboid's stored size over every READY segment, from the segment metadata (the
/// manifests' row, block and byte counts: bytes as stored, compressed, block framing
/// included).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CuboidBytes {
    pub id: u64,
    pub dimensions: Vec<String>,
    pub rows: u64,
    pub blocks: u64,
    pub bytes: u64,
    pub bytes_per_row: f64,
}

/// Bytes per cuboid row (`cuboid_bytes` in the JSON): every cuboid, largest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CuboidBytesReport {
    pub base_cuboid: u64,
    pub total_rows: u64,
    pub total_bytes: u64,
    pub bytes_per_row: f64,
    pub cuboids: Vec<CuboidBytes>,
}

fn per_row(bytes: u64, rows: u64) -> f64 {
    if rows > 0 {
        bytes as f64 / rows as f64
    } else {
        0.0
    }
}

/// Sizes of every cuboid of the SSB cube the configuration `conf` names, from the segment
/// metadata alone (no block is read).
pub fn cuboid_bytes(conf: &Path) -> anyhow::Result<CuboidBytesReport> {
    let config = qilin_engine::config::Config::load(Some(conf))
        .map_err(|e| anyhow::anyhow!("loading {}: {e}", conf.display()))?;
    let store = qilin_engine::metadata::open_store(&config.stores.metadata_url)
        .map_err(|e| anyhow::anyhow!("opening the metadata store: {e}"))?;
    let meta = qilin_engine::metadata::managers::Metadata::new(store);
    let layout = meta
        .cube_layout(ssb::CUBE, config.cube.max_cuboids_per_group)
        .map_err(|e| anyhow::anyhow!("cube {}: {e}", ssb::CUBE))?;
    let (inst, _) = meta
        .cube_instance(ssb::CUBE)
        .map_err(|e| anyhow::anyhow!("cube {}: {e}", ssb::CUBE))?;
    let mut by_id: std::collections::BTreeMap<u64, (u64, u64, u64)> = Default::default();
    for seg in inst.ready_segments() {
        for c in &seg.cuboids {
            let e = by_id.entry(c.id).or_default();
            e.0 += c.rows;
            e.1 += u64::from(c.blocks);
            e.2 += c.bytes;
        }
    }
    let mut cuboids: Vec<CuboidBytes> = by_id
        .into_iter()
        .map(|(id, (rows, blocks, bytes))| CuboidBytes {
            id,
            dimensions: layout.cuboid_names(id),
            rows,
            blocks,
            bytes,
            bytes_per_row: per_row(bytes, rows),
        })
        .collect();
    cuboids.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.id.cmp(&b.id)));
    let total_rows = cuboids.iter().map(|c| c.rows).sum();
    let total_bytes = cuboids.iter().map(|c| c.bytes).sum();
    Ok(CuboidBytesReport {
        base_cuboid: layout.base_cuboid(),
        total_rows,
        total_bytes,
        bytes_per_row: per_row(total_bytes, total_rows),
        cuboids,
    })
}

impl CuboidBytesReport {
    /// The printed lines: the 10 largest cuboids, the base cuboid, the total.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "bytes per cuboid row (stored, from the manifests), {} cuboids, largest first:",
            self.cuboids.len()
        );
        let _ = writeln!(
            s,
            "  {:>6} {:>11} {:>7} {:>12} {:>9}  dimensions",
            "cuboid", "rows", "blocks", "bytes", "bytes/row"
        );
        let line = |s: &mut String, label: &str, c: &CuboidBytes| {
            let _ = writeln!(
                s,
                "  {label:>6} {:>11} {:>7} {:>12} {:>9.1}  {}",
                c.rows,
                c.blocks,
                c.bytes,
                c.bytes_per_row,
                c.dimensions.join(",")
            );
        };
        for c in self.cuboids.iter().take(10) {
            line(&mut s, &c.id.to_string(), c);
        }
        if let Some(base) = self.cuboids.iter().find(|c| c.id == self.base_cuboid) {
            line(&mut s, "base", base);
        }
        let _ = writeln!(
            s,
            "  {:>6} {:>11} {:>7} {:>12} {:>9.1}",
            "total",
            self.total_rows,
            self.cuboids.iter().map(|c| c.blocks).sum::<u64>(),
            self.total_bytes,
            self.bytes_per_row
        );
        s
    }
}
