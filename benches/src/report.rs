//! The benchmark report: JSON shape and the printed table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::scan::ScanReport;
use crate::workload::{Concurrency, Stats};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub scale: f64,
    pub runs: usize,
    pub machine: Machine,
    pub versions: Versions,
    pub build: BuildReport,
    pub server_peak_rss_bytes: Option<u64>,
    pub cube_bytes: u64,
    pub source_bytes: u64,
    pub queries: Vec<QueryReport>,
    pub totals: Totals,
    pub concurrency: Option<Concurrency>,
    /// `SELECT * FROM lineorder` through ADBC next to DuckDB (absent in older reports).
    #[serde(default)]
    pub detail_scan: Option<ScanReport>,
    /// Bytes of each measure's state column in the cube (absent in older reports).
    #[serde(default)]
    pub cube_size: Option<crate::cube_size::CubeSize>,
    /// The 13 through the Python ADBC driver, hot (absent in older reports).
    #[serde(default)]
    pub adbc: Option<crate::adbc::AdbcHot>,
    /// The first run of the 13 after a server start, by client, against hot.
    #[serde(default)]
    pub cold_first_run: Option<crate::adbc::ColdReport>,
    /// Stored bytes per row of every cuboid.
    #[serde(default)]
    pub cuboid_bytes: Option<crate::cube_size::CuboidBytesReport>,
    /// The ad-hoc mode (`--adhoc N`).
    #[serde(default)]
    pub adhoc: Option<crate::adhoc::AdhocReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub model: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Versions {
    pub qilin: String,
    pub datafusion: String,
    pub duckdb: Option<String>,
}

/// Data generation (in-process) and cube build (child `qilin-jobs sample`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildReport {
    /// Seconds spent generating the Parquet source (0 when it was already there).
    pub generate_seconds: f64,
    /// Wall seconds of `qilin-jobs sample` (register + build); null when reused.
    pub seconds: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
    /// The cube was already built in --work at this scale.
    pub reused: bool,
    /// The build baseline: seconds of DuckDB's `CREATE TABLE AS` of the base cuboid and of
    /// the largest group's top cuboid (see `workload::build_baseline`); null without DuckDB.
    pub duckdb_ctas_seconds: Option<BTreeMap<String, f64>>,
    /// Baseline statements DuckDB could not finish, with its message; no ratio then.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub duckdb_ctas_errors: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueryReport {
    pub name: String,
    pub sql: String,
    pub rows: usize,
    pub qilin: Stats,
    pub datafusion: Stats,
    pub duckdb: Option<Stats>,
    /// Through the Python ADBC driver (absent in older reports).
    #[serde(default)]
    pub adbc: Option<Stats>,
}

/// Sums of the per-query medians, and their ratios (baseline / qilin).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Totals {
    pub qilin_median_ms: f64,
    pub datafusion_median_ms: f64,
    pub duckdb_median_ms: Option<f64>,
    pub datafusion_ratio: f64,
    pub duckdb_ratio: Option<f64>,
    /// Sum of the ADBC medians (absent in older reports).
    #[serde(default)]
    pub adbc_median_ms: Option<f64>,
}

fn ratio(base: f64, qilin: f64) -> f64 {
    if qilin > 0.0 {
        base / qilin
    } else {
        0.0
    }
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scale: f64,
        runs: usize,
        build: BuildReport,
        server_peak_rss_bytes: Option<u64>,
        cube_bytes: u64,
        source_bytes: u64,
        queries: Vec<QueryReport>,
        duckdb_version: Option<String>,
        concurrency: Option<Concurrency>,
        detail_scan: Option<ScanReport>,
    ) -> Report {
        let q: f64 = queries.iter().map(|r| r.qilin.median_ms).sum();
        let d: f64 = queries.iter().map(|r| r.datafusion.median_ms).sum();
        let adbc_total: Option<f64> = queries
            .iter()
            .map(|r| r.adbc.as_ref().map(|s| s.median_ms))
            .sum();
        let k: Option<f64> = queries
            .iter()
            .map(|r| r.duckdb.as_ref().map(|s| s.median_ms))
            .sum();
        Report {
            scale,
            runs,
            machine: machine(),
            versions: Versions {
                qilin: env!("CARGO_PKG_VERSION").to_string(),
                datafusion: datafusion::DATAFUSION_VERSION.to_string(),
                duckdb: duckdb_version,
            },
            build,
            server_peak_rss_bytes,
            cube_bytes,
            source_bytes,
            queries,
            totals: Totals {
                qilin_median_ms: q,
                datafusion_median_ms: d,
                duckdb_median_ms: k,
                datafusion_ratio: ratio(d, q),
                duckdb_ratio: k.map(|k| ratio(k, q)),
                adbc_median_ms: adbc_total,
            },
            concurrency,
            detail_scan,
            cube_size: None,
            adbc: None,
            cold_first_run: None,
            cuboid_bytes: None,
            adhoc: None,
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let duck = self.versions.duckdb.is_some();
        let adbc = self.queries.iter().any(|r| r.adbc.is_some());
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\nSSB scale {} - {} runs after 1 warm-up - {} cores, {}",
            self.scale, self.runs, self.machine.cores, self.machine.model
        );
        let _ = write!(
            s,
            "{:<6} {:>7} {:>10} {:>10} {:>10} {:>10} {:>8}",
            "query", "rows", "qilin med", "qilin p95", "df med", "df p95", "df/q"
        );
        if duck {
            let _ = write!(s, " {:>10} {:>8}", "duck med", "duck/q");
        }
        if adbc {
            let _ = write!(s, " {:>10}", "adbc med");
        }
        s.push('\n');
        for r in &self.queries {
            let _ = write!(
                s,
                "{:<6} {:>7} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>8.2}",
                r.name,
                r.rows,
                r.qilin.median_ms,
                r.qilin.p95_ms,
                r.datafusion.median_ms,
                r.datafusion.p95_ms,
                ratio(r.datafusion.median_ms, r.qilin.median_ms)
            );
            if duck {
                match &r.duckdb {
                    Some(d) => {
                        let _ = write!(
                            s,
                            " {:>10.2} {:>8.2}",
                            d.median_ms,
                            ratio(d.median_ms, r.qilin.median_ms)
                        );
                    }
                    None => {
                        let _ = write!(s, " {:>10} {:>8}", "-", "-");
                    }
                }
            }
            if adbc {
                match &r.adbc {
                    Some(a) => {
                        let _ = write!(s, " {:>10.2}", a.median_ms);
                    }
                    None => {
                        let _ = write!(s, " {:>10}", "-");
                    }
                }
            }
            s.push('\n');
        }
        let t = &self.totals;
        let _ = write!(
            s,
            "{:<6} {:>7} {:>10.2} {:>10} {:>10.2} {:>10} {:>8.2}",
            "total", "", t.qilin_median_ms, "", t.datafusion_median_ms, "", t.datafusion_ratio
        );
        if let (Some(k), Some(r)) = (t.duckdb_median_ms, t.duckdb_ratio) {
            let _ = write!(s, " {k:>10.2} {r:>8.2}");
        } else if duck && adbc {
            let _ = write!(s, " {:>10} {:>8}", "", "");
        }
        if let Some(a) = t.adbc_median_ms {
            let _ = write!(s, " {a:>10.2}");
        }
        s.push('\n');
        if !duck {
            s.push_str("duckdb not installed\n");
        }
        let mb = |b: Option<u64>| match b {
            Some(b) => format!("{:.1} MiB", b as f64 / 1048576.0),
            None => "n/a".to_string(),
        };
        let b = &self.build;
        let _ = writeln!(
            s,
            "data generation: {:.2}s; build: {} (peak RSS {}){}",
            b.generate_seconds,
            b.seconds
                .map(|x| format!("{x:.2}s"))
                .unwrap_or_else(|| "n/a".into()),
            mb(b.peak_rss_bytes),
            if b.reused {
                " - reused existing cube"
            } else {
                ""
            }
        );
        if let Some(ctas) = &b.duckdb_ctas_seconds {
            let total: f64 = ctas.values().sum();
            let parts: Vec<String> = ctas.iter().map(|(k, v)| format!("{k} {v:.2}s")).collect();
            if parts.is_empty() {
                s.push_str("duckdb CREATE TABLE AS baseline: no statement finished");
            } else {
                let _ = write!(
                    s,
                    "duckdb CREATE TABLE AS baseline: {total:.2}s ({})",
                    parts.join(", ")
                );
            }
            for (name, error) in &b.duckdb_ctas_errors {
                let _ = write!(s, "; {name} failed: {error}");
            }
            // A ratio needs every statement timed, in full or (marked) without its exact
            // distinct count.
            let complete = b.duckdb_ctas_errors.keys().all(|name| {
                ctas.contains_key(&format!(
                    "{name}{}",
                    crate::workload::WITHOUT_EXACT_DISTINCT
                ))
            });
            if let Some(q) = b.seconds.filter(|_| total > 0.0 && complete) {
                let _ = write!(s, "; qilin build / baseline = {:.2}x", q / total);
                if !b.duckdb_ctas_errors.is_empty() {
                    s.push_str(" (baseline partly without its exact distinct count)");
                }
            }
            s.push('\n');
        }
        let _ = writeln!(s, "server peak RSS: {}", mb(self.server_peak_rss_bytes));
        let _ = writeln!(
            s,
            "cube size: {} vs source Parquet {} ({:.2}x)",
            mb(Some(self.cube_bytes)),
            mb(Some(self.source_bytes)),
            if self.source_bytes > 0 {
                self.cube_bytes as f64 / self.source_bytes as f64
            } else {
                0.0
            }
        );
        if let Some(c) = &self.cube_size {
            s.push_str(&c.table());
        }
        if let Some(c) = &self.cuboid_bytes {
            s.push_str(&c.table());
        }
        if let Some(a) = &self.adbc {
            s.push_str(&a.line());
        }
        if let Some(c) = &self.cold_first_run {
            s.push_str(&c.table());
        }
        if let Some(d) = &self.detail_scan {
            let times = |t: &Option<crate::scan::ScanTimes>| match t {
                Some(t) => format!(
                    "first batch {:.2} ms, total {:.2} ms, {} rows",
                    t.first_batch.median_ms, t.total.median_ms, t.rows
                ),
                None => "n/a".to_string(),
            };
            let _ = writeln!(
                s,
                "{} (median of {}): qilin via ADBC {} (server peak RSS {}; {}); duckdb {}",
                d.statement,
                d.runs,
                times(&d.qilin_adbc),
                mb(d.server_peak_rss_bytes),
                if d.realization.is_empty() {
                    "realization n/a".to_string()
                } else {
                    d.realization.join("; ")
                },
                times(&d.duckdb)
            );
            for (engine, error) in &d.errors {
                let _ = writeln!(s, "  {engine} failed: {error}");
            }
        }
        if let Some(c) = &self.concurrency {
            let _ = writeln!(
                s,
                "concurrency {}: {} queries in {:.2}s = {:.1} QPS, p50 {:.2} ms, p99 {:.2} ms",
                c.clients, c.queries, c.seconds, c.qps, c.p50_ms, c.p99_ms
            );
        }
        if let Some(a) = &self.adhoc {
            s.push_str(&a.table());
        }
        s
    }
}

/// Cores and CPU model of this machine.
pub fn machine() -> Machine {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    Machine { cores, model }
}
