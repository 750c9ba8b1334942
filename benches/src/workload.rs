//! The SSB queries and the engines that run them: Qilin over Flight SQL, DataFusion in this
//! process, DuckDB through `python3`; timing statistics and the concurrent load.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::TryStreamExt;
use qilin_engine::sample::ssb;
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

/// The query file shared with the server's tests and the Python ADBC script.
const SSB_QUERIES: &str = include_str!("../../tests/ssb_queries.sql");
/// Largest gRPC message the client accepts.
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

pub type Client = FlightSqlServiceClient<Channel>;

/// The 13 SSB queries as `(name, sql)`; a `-- Qx.y` line names the statement after it.
pub fn ssb_queries() -> anyhow::Result<Vec<(String, String)>> {
    Ok(qilin_engine::sample::ssb::parse_queries(SSB_QUERIES)?)
}

/// Median and 95th percentile of a series of runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub median_ms: f64,
    pub p95_ms: f64,
}

/// Percentile `p` (0..=1) by nearest rank of sorted `v`.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Median (mean of the middle two for an even count) of sorted `v`.
pub fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

impl Stats {
    pub fn from_ms(samples: &[f64]) -> Stats {
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        Stats {
            median_ms: median(&v),
            p95_ms: percentile(&v, 0.95),
        }
    }
}

/// One query on one engine: its timing and the rows of its (last) result.
#[derive(Debug, Clone)]
pub struct Measured {
    pub stats: Stats,
    pub rows: usize,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One warm-up run of `f`, then `runs` timed runs; `f` returns the row count.
pub async fn measure<F>(runs: usize, mut f: F) -> anyhow::Result<Measured>
where
    F: AsyncFnMut() -> anyhow::Result<usize>,
{
    let mut rows = f().await?;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        rows = f().await?;
        samples.push(ms(started.elapsed()));
    }
    Ok(Measured {
        stats: Stats::from_ms(&samples),
        rows,
    })
}

/// A Flight SQL client on `addr` (`host:port`) after the ADMIN/KYLIN handshake.
pub async fn connect(addr: &str) -> anyhow::Result<Client> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .context("server address")?
        .connect()
        .await
        .with_context(|| format!("connecting to qilin-server at {addr}"))?;
    let inner = FlightServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut client = FlightSqlServiceClient::new_from_inner(inner);
    client
        .handshake("ADMIN", "KYLIN")
        .await
        .context("Flight SQL handshake as ADMIN")?;
    Ok(client)
}

/// Runs `sql` like a Flight SQL client (execute, then DoGet on every endpoint); the row count.
pub async fn qilin_query(client: &mut Client, sql: &str) -> anyhow::Result<usize> {
    let info = client.execute(sql.to_string(), None).await?;
    let mut rows = 0;
    for endpoint in info.endpoint {
        let ticket = endpoint
            .ticket
            .context("FlightInfo endpoint without a ticket")?;
        let stream = client.do_get(ticket).await?;
        let batches: Vec<_> = stream.try_collect().await?;
        rows += batches.iter().map(|b| b.num_rows()).sum::<usize>();
    }
    Ok(rows)
}

/// A default DataFusion context with each SSB table registered from `dir/<table>.parquet`.
pub async fn datafusion_context(dir: &Path) -> anyhow::Result<SessionContext> {
    let ctx = SessionContext::new();
    for table in ssb::TABLES {
        let path = dir.join(format!("{table}.parquet"));
        ctx.register_parquet(
            table,
            path.to_str().context("non-UTF-8 path")?,
            ParquetReadOptions::default(),
        )
        .await
        .with_context(|| format!("registering {}", path.display()))?;
    }
    Ok(ctx)
}

/// Plans and runs `sql` on DataFusion; the row count.
pub async fn datafusion_query(ctx: &SessionContext, sql: &str) -> anyhow::Result<usize> {
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

/// DuckDB's results: its version, per-query stats and the build baseline.
#[derive(Debug, Clone)]
pub struct DuckDb {
    pub version: String,
    pub queries: BTreeMap<String, Stats>,
    /// Seconds of `CREATE TABLE AS` of each of [`build_baseline`]'s cuboids that finished.
    pub build_seconds: BTreeMap<String, f64>,
    /// Why the others did not (DuckDB's message and the seconds until it failed).
    pub build_errors: BTreeMap<String, String>,
}

const JOINED: &str = "lineorder JOIN dates ON lo_orderdate = d_datekey \
    JOIN customer ON lo_custkey = c_custkey JOIN supplier ON lo_suppkey = s_suppkey \
    JOIN part ON lo_partkey = p_partkey";

/// The sample cube's measures as DuckDB aggregates (its own sketch for the HLL one), without
/// the exact distinct count, which [`EXACT_DISTINCT`] adds.
const MEASURES: &str = "COUNT(*), SUM(lo_revenue), SUM(lo_supplycost), \
    SUM(lo_extendedprice * lo_discount), SUM(lo_revenue - lo_supplycost), SUM(lo_quantity), \
    SUM(lo_extendedprice), MIN(lo_extendedprice), MAX(lo_extendedprice), \
    approx_count_distinct(lo_custkey)";
/// The bitmap measure: DuckDB has no mergeable bitmap state, so an exact distinct count.
const EXACT_DISTINCT: &str = "COUNT(DISTINCT lo_suppkey)";
/// Suffix of a baseline timed without [`EXACT_DISTINCT`] after the full statement failed.
pub const WITHOUT_EXACT_DISTINCT: &str = "_without_exact_distinct";

/// One statement of the build baseline, and the same without the exact distinct count (run
/// only when the full one fails: at SF 10 DuckDB's distinct aggregation spills past the
/// free disk).
#[derive(Debug, Clone, Serialize)]
pub struct BaselineStatement {
    pub name: String,
    pub sql: String,
    pub without_exact_distinct: String,
}

/// The build baseline: DuckDB materializes the two cuboids every other one is aggregated
/// from — the base cuboid (all 16 dimensions) and the top of the largest aggregation group
/// (the Q2/Q4 group's 9 dimensions) — with `CREATE TABLE AS`.
pub fn build_baseline() -> Vec<BaselineStatement> {
    let base = "d_year, d_yearmonthnum, d_yearmonth, d_weeknuminyear, lo_discount, \
        lo_quantity, c_region, c_nation, c_city, s_region, s_nation, s_city, p_mfgr, \
        p_category, p_brand, lo_orderdate";
    let group = "d_year, c_region, c_nation, s_region, s_nation, s_city, p_mfgr, p_category, \
        p_brand";
    let ctas = |name: &str, dims: &str, measures: &str| {
        format!("CREATE TABLE {name} AS SELECT {dims}, {measures} FROM {JOINED} GROUP BY {dims}")
    };
    [("base_cuboid", base), ("q2_q4_group_top", group)]
        .iter()
        .map(|&(name, dims)| BaselineStatement {
            name: name.to_string(),
            sql: ctas(name, dims, &format!("{MEASURES}, {EXACT_DISTINCT}")),
            without_exact_distinct: ctas(name, dims, MEASURES),
        })
        .collect()
}

/// Queries first, then the build baseline, so that a baseline that cannot finish (at SF 10
/// its exact distinct count spills past the free disk) still leaves the query figures. A
/// failed statement is reported and timed again without the exact distinct count, on a new
/// connection (which drops the failed one's spill files). `preserve_insertion_order = false`
/// is DuckDB's advice for large `CREATE TABLE AS`; spills go under the --work directory.
const DUCKDB_SCRIPT: &str = r#"
import json, sys, time
import duckdb
spec = json.load(open(sys.argv[1]))

def connect():
    con = duckdb.connect()
    con.execute("set temp_directory = '%s'" % spec["temp"].replace("'", "''"))
    con.execute("set preserve_insertion_order = false")
    con.execute("set enable_progress_bar = false")
    for t in spec["tables"]:
        path = spec["dir"] + "/" + t + ".parquet"
        con.execute("create view %s as select * from read_parquet('%s')" % (t, path.replace("'", "''")))
    return con

def timed(con, sql):
    t0 = time.perf_counter()
    try:
        con.execute(sql)
        return time.perf_counter() - t0, None
    except duckdb.Error as e:
        return None, "%s after %.1fs" % (str(e).splitlines()[0], time.perf_counter() - t0)

con = connect()
out = {"version": duckdb.__version__, "queries": {}, "build": {}, "build_errors": {}}
for name, sql in spec["queries"]:
    rows = len(con.execute(sql).fetchall())
    times = []
    for _ in range(spec["runs"]):
        t0 = time.perf_counter()
        rows = len(con.execute(sql).fetchall())
        times.append((time.perf_counter() - t0) * 1000.0)
    out["queries"][name] = {"rows": rows, "ms": times}
for b in spec["build"]:
    name = b["name"]
    seconds, error = timed(con, b["sql"])
    if error is None:
        out["build"][name] = seconds
        con.execute("drop table %s" % name)
        continue
    out["build_errors"][name] = error
    con.close()
    con = connect()
    seconds, error = timed(con, b["without_exact_distinct"])
    if error is None:
        out["build"][name + spec["fallback_suffix"]] = seconds
        con.execute("drop table %s" % name)
    else:
        out["build_errors"][name + spec["fallback_suffix"]] = error
print(json.dumps(out))
"#;

#[derive(Deserialize)]
struct DuckOut {
    version: String,
    queries: BTreeMap<String, DuckQuery>,
    build: BTreeMap<String, f64>,
    #[serde(default)]
    build_errors: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct DuckQuery {
    ms: Vec<f64>,
}

/// Runs the queries (one warm-up, `runs` timed runs each) and then the build baseline
/// (normally [`build_baseline`]) once on DuckDB through `python3`, spilling under
/// `spill_dir` (removed afterwards), or `None` when `python3 -c "import duckdb"` fails.
pub fn duckdb(
    dir: &Path,
    queries: &[(String, String)],
    runs: usize,
    baseline: &[BaselineStatement],
    spill_dir: &Path,
) -> anyhow::Result<Option<DuckDb>> {
    let available = Command::new("python3")
        .args(["-c", "import duckdb"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !available {
        return Ok(None);
    }
    let tmp = std::env::temp_dir().join(format!("qilin-bench-duckdb-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let script = tmp.join("bench.py");
    std::fs::create_dir_all(spill_dir)?;
    let spec = tmp.join("spec.json");
    std::fs::write(&script, DUCKDB_SCRIPT)?;
    std::fs::write(
        &spec,
        serde_json::to_string(&serde_json::json!({
            "dir": dir.to_string_lossy(),
            "tables": ssb::TABLES,
            "queries": queries,
            "runs": runs,
            "build": baseline,
            "temp": spill_dir.to_string_lossy(),
            "fallback_suffix": WITHOUT_EXACT_DISTINCT,
        }))?,
    )?;
    eprintln!("running the queries and the build baseline on DuckDB ...");
    let out = Command::new("python3").arg(&script).arg(&spec).output();
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_dir_all(spill_dir);
    let out = out.context("running python3")?;
    if !out.status.success() {
        bail!(
            "the DuckDB script failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let parsed: DuckOut =
        serde_json::from_slice(&out.stdout).context("parsing the DuckDB script's output")?;
    Ok(Some(DuckDb {
        version: parsed.version,
        queries: parsed
            .queries
            .into_iter()
            .map(|(k, q)| (k, Stats::from_ms(&q.ms)))
            .collect(),
        build_seconds: parsed.build,
        build_errors: parsed.build_errors,
    }))
}

/// Result of the concurrent load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Concurrency {
    pub clients: usize,
    pub rounds_per_client: usize,
    pub queries: usize,
    pub seconds: f64,
    pub qps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// `clients` tasks, each with its own connection, each running `rounds` rounds of all
/// queries; client `i` starts at query `i` (round-robin). Latencies of every query pooled.
pub async fn concurrent(
    addr: &str,
    queries: &[(String, String)],
    clients: usize,
    rounds: usize,
) -> anyhow::Result<Concurrency> {
    eprintln!(
        "concurrent load: {clients} clients x {rounds} rounds of {} queries ...",
        queries.len()
    );
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(connect(addr).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for (i, mut client) in conns.into_iter().enumerate() {
        let queries = queries.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(rounds * queries.len());
            for k in 0..rounds * queries.len() {
                let (name, sql) = &queries[(i + k) % queries.len()];
                let t0 = Instant::now();
                qilin_query(&mut client, sql)
                    .await
                    .with_context(|| format!("concurrent {name}"))?;
                lat.push(ms(t0.elapsed()));
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.context("load task panicked")??);
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    Ok(Concurrency {
        clients,
        rounds_per_client: rounds,
        queries: all.len(),
        seconds,
        qps: all.len() as f64 / seconds,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats() {
        let s = Stats::from_ms(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(s.median_ms, 3.0);
        assert_eq!(s.p95_ms, 5.0);
        assert_eq!(Stats::from_ms(&[1.0, 2.0]).median_ms, 1.5);
    }

    #[test]
    fn queries() {
        let q = ssb_queries().unwrap();
        assert_eq!(q[0].0, "Q1.1");
        assert_eq!(q[12].0, "Q4.3");
        assert!(q.iter().all(|(_, s)| !s.ends_with(';')));
    }
}
