//! The detail scan: `SELECT * FROM lineorder` read to the end through the Python ADBC Flight
//! SQL driver (how a notebook or a BI extract reads a table), against a `qilin-server` started
//! for it alone, so that its peak RSS (`VmHWM`) is the scan's; next to DuckDB reading the same
//! statement over the raw Parquet file. Both report the time to the first record batch and the
//! total time, per run.
//!
//! The scan server has `kylin.query.pushdown.enabled=true`, so the statement is answered
//! whichever way this build can: from the cube's table index when it has one, else by
//! pushdown to the source; the report carries the EXPLAIN `realization` row that says which.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::procs;
use crate::workload::{self, Stats};

/// The statement measured.
pub const STATEMENT: &str = "SELECT * FROM lineorder";

/// Timings of one engine over the runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanTimes {
    /// From sending the statement to holding the first record batch.
    pub first_batch: Stats,
    /// From sending the statement to the end of the result.
    pub total: Stats,
    /// Rows read (the last run).
    pub rows: u64,
}

/// The detail scan's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanReport {
    pub statement: String,
    pub runs: usize,
    /// The `realization` rows of the statement's EXPLAIN on the scan server.
    pub realization: Vec<String>,
    /// Through the Python ADBC driver; null when that failed (see `errors`).
    pub qilin_adbc: Option<ScanTimes>,
    /// Peak RSS (`VmHWM`) of the server that ran only this statement, start-up included.
    pub server_peak_rss_bytes: Option<u64>,
    /// DuckDB on the raw Parquet file, through `python3`; null without DuckDB.
    pub duckdb: Option<ScanTimes>,
    /// What failed, by engine.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub errors: std::collections::BTreeMap<String, String>,
}

/// Reads the statement `runs` times through `adbc_driver_flightsql`, batch by batch (the client
/// never holds more than one batch), timing the first batch and the end.
const ADBC_SCRIPT: &str = r#"
import json, sys, time
import adbc_driver_flightsql.dbapi as flightsql
uri, sql, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = flightsql.connect(uri, db_kwargs={"username": "ADMIN", "password": "KYLIN"})
first_ms, total_ms, rows = [], [], 0
for _ in range(runs):
    cursor = conn.cursor()
    t0 = time.perf_counter()
    cursor.execute(sql)
    first, rows = None, 0
    for batch in cursor.fetch_record_batch():
        if first is None:
            first = time.perf_counter() - t0
        rows += batch.num_rows
    total = time.perf_counter() - t0
    cursor.close()
    first_ms.append((total if first is None else first) * 1000.0)
    total_ms.append(total * 1000.0)
conn.close()
print(json.dumps({"first_batch_ms": first_ms, "total_ms": total_ms, "rows": rows}))
"#;

/// The same on DuckDB over the raw Parquet file, read as Arrow batches.
const DUCKDB_SCRIPT: &str = r#"
import json, sys, time
import duckdb
path, sql, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = duckdb.connect()
# DuckDB 2 draws a progress bar on stdout for long statements, which is where the JSON goes.
con.execute("set enable_progress_bar = false")
con.execute("create view lineorder as select * from read_parquet('%s')" % path.replace("'", "''"))
first_ms, total_ms, rows = [], [], 0
for _ in range(runs):
    t0 = time.perf_counter()
    first, rows = None, 0
    relation = con.sql(sql)
    # A streaming Arrow reader: to_arrow_reader in DuckDB 2, fetch_arrow_reader in 1.x.
    read = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
    reader = read(122880)
    for batch in reader:
        if first is None:
            first = time.perf_counter() - t0
        rows += batch.num_rows
    total = time.perf_counter() - t0
    first_ms.append((total if first is None else first) * 1000.0)
    total_ms.append(total * 1000.0)
print(json.dumps({"first_batch_ms": first_ms, "total_ms": total_ms, "rows": rows, "version": duckdb.__version__}))
"#;

#[derive(Deserialize)]
struct ScriptOut {
    first_batch_ms: Vec<f64>,
    total_ms: Vec<f64>,
    rows: u64,
}

impl From<ScriptOut> for ScanTimes {
    fn from(o: ScriptOut) -> ScanTimes {
        ScanTimes {
            first_batch: Stats::from_ms(&o.first_batch_ms),
            total: Stats::from_ms(&o.total_ms),
            rows: o.rows,
        }
    }
}

/// Whether `python3` imports `modules`.
pub(crate) fn python_has(modules: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs `script ARGS...` with `python3`; its JSON line.
fn run_script(script: &str, args: &[&str]) -> anyhow::Result<ScriptOut> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .context("running python3")?;
    if !out.status.success() {
        bail!(
            "exit status {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("parsing the script's output")
}

/// The `realization` rows of `EXPLAIN sql` on the server at `addr`.
async fn realization(addr: &str, sql: &str) -> anyhow::Result<Vec<String>> {
    let mut client = workload::connect(addr).await?;
    let info = client.execute(format!("EXPLAIN {sql}"), None).await?;
    let mut rows = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint
            .ticket
            .context("FlightInfo endpoint without a ticket")?;
        let batches: Vec<_> = client.do_get(ticket).await?.try_collect().await?;
        for b in &batches {
            let text = |c: usize, r: usize| {
                arrow::util::display::array_value_to_string(b.column(c), r).unwrap_or_default()
            };
            for r in 0..b.num_rows() {
                if text(0, r) == "realization" {
                    rows.push(text(1, r));
                }
            }
        }
    }
    Ok(rows)
}

/// Measures the detail scan: a server of its own over `work` (see the module doc), then
/// DuckDB over `source_dir/lineorder.parquet`. Failures are recorded in the report.
pub async fn run(
    server_exe: &Path,
    work: &Path,
    source_dir: &Path,
    runs: usize,
) -> anyhow::Result<ScanReport> {
    let conf = work.join("kylin-scan.properties");
    std::fs::write(
        &conf,
        format!(
            "{}kylin.query.pushdown.enabled=true\n",
            crate::properties(work)
        ),
    )
    .with_context(|| format!("writing {}", conf.display()))?;
    let mut report = ScanReport {
        statement: STATEMENT.to_string(),
        runs,
        realization: Vec::new(),
        qilin_adbc: None,
        server_peak_rss_bytes: None,
        duckdb: None,
        errors: Default::default(),
    };

    let server = procs::Server::start(server_exe, &conf)?;
    server.wait_for_warm_up();
    match realization(&server.addr, STATEMENT).await {
        Ok(rows) => report.realization = rows,
        Err(e) => {
            report.errors.insert("explain".into(), format!("{e:#}"));
        }
    }
    if python_has("adbc_driver_flightsql.dbapi, pyarrow") {
        eprintln!("reading {STATEMENT} through ADBC ...");
        let uri = format!("grpc://{}", server.addr);
        let runs_arg = runs.to_string();
        match run_script(ADBC_SCRIPT, &[&uri, STATEMENT, &runs_arg]) {
            Ok(out) => report.qilin_adbc = Some(out.into()),
            Err(e) => {
                report.errors.insert("qilin_adbc".into(), format!("{e:#}"));
            }
        }
    } else {
        report.errors.insert(
            "qilin_adbc".into(),
            "python3 cannot import adbc_driver_flightsql and pyarrow (pip install -r tests/requirements.txt)".into(),
        );
    }
    report.server_peak_rss_bytes = server.peak_rss_bytes();
    drop(server);

    if python_has("duckdb, pyarrow") {
        eprintln!("reading {STATEMENT} on DuckDB ...");
        let path = source_dir.join("lineorder.parquet");
        let runs_arg = runs.to_string();
        match run_script(
            DUCKDB_SCRIPT,
            &[&path.to_string_lossy(), STATEMENT, &runs_arg],
        ) {
            Ok(out) => report.duckdb = Some(out.into()),
            Err(e) => {
                report.errors.insert("duckdb".into(), format!("{e:#}"));
            }
        }
    }
    Ok(report)
}
