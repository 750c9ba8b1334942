//! The 13 SSB queries through the Python ADBC Flight SQL driver (how notebooks and BI
//! extracts reach the server), hot; and the cold first run: the 13 run once, in order, right
//! after a server start, through ADBC and through the Rust client, each on a freshly
//! started server (so neither inherits the other's warmed caches).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::procs;
use crate::workload::{self, Stats};

/// With `cold`, runs every query once in order first (timed: the first run); then, for
/// `runs` > 0, one warm-up and `runs` timed runs of each (hot) with a cursor opened and
/// closed per statement; then `runs` rounds of the 13 in order through one cursor kept open
/// (`hot_reused`, a dashboard refreshed from one DB-API cursor: each statement still differs
/// from the one before, so the driver still prepares and closes one per statement, but
/// creating and releasing the driver's statement handle, about a millisecond of the Go
/// runtime's own scheduling, is saved). Execute + fetch as an Arrow table, one connection
/// (its set-up timed apart).
const SCRIPT: &str = r#"
import json, sys, time
import adbc_driver_flightsql.dbapi as flightsql
spec = json.load(open(sys.argv[1]))
t0 = time.perf_counter()
conn = flightsql.connect(spec["uri"], db_kwargs={"username": "ADMIN", "password": "KYLIN"})
connect_ms = (time.perf_counter() - t0) * 1000.0

def run(sql):
    t0 = time.perf_counter()
    cur = conn.cursor()
    try:
        cur.execute(sql)
        rows = cur.fetch_arrow_table().num_rows
    finally:
        cur.close()
    return (time.perf_counter() - t0) * 1000.0, rows

reused = conn.cursor()

def run_reused(sql):
    t0 = time.perf_counter()
    reused.execute(sql)
    rows = reused.fetch_arrow_table().num_rows
    return (time.perf_counter() - t0) * 1000.0, rows

out = {"connect_ms": connect_ms, "first": {}, "hot": {}, "hot_reused": {}, "rows": {}}
if spec["cold"]:
    for name, sql in spec["queries"]:
        out["first"][name], out["rows"][name] = run(sql)
if spec["runs"] > 0:
    for name, sql in spec["queries"]:
        _, out["rows"][name] = run(sql)
        out["hot"][name] = [run(sql)[0] for _ in range(spec["runs"])]
    for _ in range(spec["runs"]):
        for name, sql in spec["queries"]:
            ms, rows = run_reused(sql)
            if rows != out["rows"][name]:
                sys.exit(f"{name}: {rows} rows through a kept cursor, {out['rows'][name]} before")
            out["hot_reused"].setdefault(name, []).append(ms)
reused.close()
conn.close()
print(json.dumps(out))
"#;

#[derive(Debug, Deserialize)]
struct ScriptOut {
    connect_ms: f64,
    first: BTreeMap<String, f64>,
    hot: BTreeMap<String, Vec<f64>>,
    hot_reused: BTreeMap<String, Vec<f64>>,
    rows: BTreeMap<String, u64>,
}

/// The 13 through ADBC on a warm server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdbcHot {
    pub runs: usize,
    pub connect_ms: f64,
    pub queries: BTreeMap<String, Stats>,
    pub rows: BTreeMap<String, u64>,
    /// Sum of the per-query medians.
    pub total_median_ms: f64,
    /// The same in rounds of the 13 through one cursor kept open (absent in older reports).
    #[serde(default)]
    pub reused_cursor: BTreeMap<String, Stats>,
    #[serde(default)]
    pub reused_cursor_total_median_ms: Option<f64>,
}

impl AdbcHot {
    /// The printed line.
    pub fn line(&self) -> String {
        let mut s = format!(
            "the 13 through ADBC, hot: {:.2} ms with a cursor per statement",
            self.total_median_ms
        );
        if let Some(r) = self.reused_cursor_total_median_ms {
            s.push_str(&format!(", {r:.2} ms in rounds through one kept cursor"));
        }
        s.push_str(&format!(" (sums of medians of {} runs)\n", self.runs));
        s
    }
}

/// The 13 once, in order, on a server just started, by one client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FirstRun {
    /// Sum over the 13 of their first run (connection set-up excluded).
    pub cold_first_run_ms: f64,
    /// The same client's hot total (sum of per-query medians) on the warm server.
    pub hot_ms: f64,
    /// cold / hot.
    pub ratio: f64,
    /// The connection set-up (TCP, handshake) before the first query.
    pub connect_ms: f64,
    pub per_query_ms: BTreeMap<String, f64>,
}

/// The cold first run of both clients (`cold_first_run` in the JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColdReport {
    pub rust_client: Option<FirstRun>,
    pub adbc: Option<FirstRun>,
    /// What failed, by client.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, String>,
}

fn run_script(
    addr: &str,
    queries: &[(String, String)],
    runs: usize,
    cold: bool,
) -> anyhow::Result<ScriptOut> {
    let tmp =
        std::env::temp_dir().join(format!("qilin-bench-adbc-{}-{}", std::process::id(), cold));
    std::fs::create_dir_all(&tmp)?;
    let spec = tmp.join("spec.json");
    let script = tmp.join("adbc.py");
    std::fs::write(&script, SCRIPT)?;
    std::fs::write(
        &spec,
        serde_json::to_string(&serde_json::json!({
            "uri": format!("grpc://{addr}"),
            "queries": queries,
            "runs": runs,
            "cold": cold,
        }))?,
    )?;
    let out = Command::new("python3").arg(&script).arg(&spec).output();
    let _ = std::fs::remove_dir_all(&tmp);
    let out = out.context("running python3")?;
    if !out.status.success() {
        bail!(
            "the ADBC script failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("parsing the ADBC script's output")
}

/// The 13 through ADBC against the (warm) server at `addr`: one warm-up and `runs` timed runs
/// each.
pub fn hot(addr: &str, queries: &[(String, String)], runs: usize) -> anyhow::Result<AdbcHot> {
    eprintln!("running the 13 queries through ADBC ...");
    let out = run_script(addr, queries, runs, false)?;
    let stats = |runs: &BTreeMap<String, Vec<f64>>| -> BTreeMap<String, Stats> {
        runs.iter()
            .map(|(k, v)| (k.clone(), Stats::from_ms(v)))
            .collect()
    };
    let total = |s: &BTreeMap<String, Stats>| s.values().map(|s| s.median_ms).sum::<f64>();
    let (queries, reused_cursor) = (stats(&out.hot), stats(&out.hot_reused));
    Ok(AdbcHot {
        runs,
        connect_ms: out.connect_ms,
        total_median_ms: total(&queries),
        reused_cursor_total_median_ms: (!reused_cursor.is_empty()).then(|| total(&reused_cursor)),
        queries,
        reused_cursor,
        rows: out.rows,
    })
}

fn first_run(
    connect_ms: f64,
    per_query_ms: BTreeMap<String, f64>,
    hot_ms: Option<f64>,
) -> FirstRun {
    let cold: f64 = per_query_ms.values().sum();
    let hot_ms = hot_ms.unwrap_or(0.0);
    FirstRun {
        cold_first_run_ms: cold,
        hot_ms,
        ratio: if hot_ms > 0.0 { cold / hot_ms } else { 0.0 },
        connect_ms,
        per_query_ms,
    }
}

/// The cold first run: a fresh server for the Rust client, another for ADBC; each client
/// connects right after the listening line and runs the 13 once. `rust_hot_ms` and
/// `adbc_hot_ms` are the hot totals measured before, for the ratios.
pub async fn cold(
    server_exe: &Path,
    conf: &Path,
    queries: &[(String, String)],
    rust_hot_ms: f64,
    adbc_hot_ms: Option<f64>,
    with_adbc: bool,
) -> anyhow::Result<ColdReport> {
    let mut report = ColdReport {
        rust_client: None,
        adbc: None,
        errors: BTreeMap::new(),
    };
    eprintln!("cold first run (Rust client) on a new server ...");
    {
        let server = procs::Server::start(server_exe, conf)?;
        let rust = async {
            let t0 = Instant::now();
            let mut client = workload::connect(&server.addr).await?;
            let connect_ms = t0.elapsed().as_secs_f64() * 1000.0;
            let mut per = BTreeMap::new();
            for (name, sql) in queries {
                let t = Instant::now();
                workload::qilin_query(&mut client, sql)
                    .await
                    .with_context(|| format!("cold {name}"))?;
                per.insert(name.clone(), t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok((connect_ms, per))
        };
        match rust.await {
            Ok((connect_ms, per)) => {
                report.rust_client = Some(first_run(connect_ms, per, Some(rust_hot_ms)))
            }
            Err(e) => {
                report.errors.insert("rust_client".into(), format!("{e:#}"));
            }
        }
    }
    if !with_adbc {
        return Ok(report);
    }
    eprintln!("cold first run (ADBC) on a new server ...");
    let server = procs::Server::start(server_exe, conf)?;
    match run_script(&server.addr, queries, 0, true) {
        Ok(out) => report.adbc = Some(first_run(out.connect_ms, out.first, adbc_hot_ms)),
        Err(e) => {
            report.errors.insert("adbc".into(), format!("{e:#}"));
        }
    }
    Ok(report)
}

impl ColdReport {
    /// The printed lines.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        for (name, r) in [("rust client", &self.rust_client), ("ADBC", &self.adbc)] {
            if let Some(r) = r {
                let _ = writeln!(
                    s,
                    "first run of the 13 after a server start ({name}): {:.1} ms vs hot {:.1} ms \
                     = {:.1}x (connect {:.1} ms)",
                    r.cold_first_run_ms, r.hot_ms, r.ratio, r.connect_ms
                );
            }
        }
        for (client, e) in &self.errors {
            let _ = writeln!(s, "  cold first run ({client}) failed: {e}");
        }
        s
    }
}
