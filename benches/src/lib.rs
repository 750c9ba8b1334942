//! Benchmark harness for Qilin on the Star Schema Benchmark.
//!
//! `qilin-bench ssb --scale SF --runs N --json OUT --work DIR [--concurrency C]
//! [--adhoc [N] [--seed S] [--adhoc-runs R]] [--server PATH] [--jobs PATH]`:
//!
//! 1. generates SSB at `SF` into `DIR/source/ssb` (in-process, skipped when its `SCALE` marker
//!    already says `SF`), then registers the sample and builds the cube into `DIR/meta` and
//!    `DIR/segments` by running `qilin-jobs --conf DIR/kylin.properties sample --scale SF` as a
//!    child process (skipped when a READY segment exists at that scale), timing it and taking
//!    its peak RSS;
//! 2. starts `qilin-server --conf DIR/kylin.properties --port 0` (query mode, result cache off)
//!    and runs the 13 SSB queries over Flight SQL: one warm-up, then `N` timed runs each;
//! 3. runs the same queries on DataFusion in this process over the raw Parquet files, and on
//!    DuckDB (through `python3`) when it is installed, where it also times `CREATE TABLE AS`
//!    of the two cuboids the build starts from (the build baseline);
//! 4. optionally runs a concurrent load (`--concurrency C`);
//! 5. reads `SELECT * FROM lineorder` to the end through the Python ADBC driver on a server
//!    started for it alone (time to the first batch, total time, that server's peak RSS), and
//!    the same statement on DuckDB over the raw Parquet file (see [`scan`]);
//! 6. sizes every measure's state column in the built cube (see [`cube_size`]: what issue 18's
//!    TOP_N, PERCENTILE, EXTENDED_COLUMN and global-dictionary COUNT DISTINCT cost);
//! 7. runs the 13 through the Python ADBC driver on the warm server (the `adbc` column), and
//!    times the first run of the 13 right after a server start, through the Rust client and
//!    through ADBC, each on a new server (see [`adbc`]);
//! 8. reads every cuboid's rows and stored bytes from the segment metadata (bytes per row);
//! 9. with `--adhoc N`, runs N seeded random cube-shaped queries through ADBC and on DuckDB,
//!    compares their answers and reports the latency percentiles of both (see [`adhoc`]);
//! 10. prints a table and writes the same numbers as JSON.

pub mod adbc;
pub mod adhoc;
pub mod cluster_build;
pub mod cube_size;
pub mod procs;
pub mod report;
pub mod scan;
pub mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use qilin_engine::sample::ssb;

use crate::report::{BuildReport, QueryReport, Report};

#[derive(Parser, Debug)]
#[command(
    name = "qilin-bench",
    version,
    about = "Benchmark Qilin against DataFusion and DuckDB"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Star Schema Benchmark: build the cube, run the 13 queries on qilin-server, DataFusion
    /// and DuckDB, report latencies, build cost and sizes.
    Ssb(SsbArgs),
    /// The SSB cube build locally and on a Qilin Ballista cluster of 1, 2, … executors on
    /// this machine: build times against the local build, same cuboids checked.
    Ballista(cluster_build::BallistaArgs),
}

#[derive(Args, Debug, Clone)]
pub struct SsbArgs {
    /// SSB scale factor (1 = 6 million lineorder rows).
    #[arg(long)]
    pub scale: f64,
    /// Timed runs per query and engine (after one warm-up run).
    #[arg(long)]
    pub runs: usize,
    /// Where to write the JSON report.
    #[arg(long)]
    pub json: PathBuf,
    /// Working directory: source data, metadata, segments and config live here and are reused
    /// by later runs at the same scale.
    #[arg(long)]
    pub work: PathBuf,
    /// Also run a concurrent load: C clients, each on its own connection, each running N
    /// rounds of the 13 queries (client i starts at query i, round-robin).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Also run the ad-hoc mode: N seeded random cube-shaped queries (100 when N is left out)
    /// through the Python ADBC driver and on DuckDB over the raw Parquet files.
    #[arg(long, num_args = 0..=1, default_missing_value = "100")]
    pub adhoc: Option<usize>,
    /// Seed of the ad-hoc queries (the same seed gives the same queries at every scale).
    #[arg(long, default_value_t = adhoc::DEFAULT_SEED)]
    pub seed: u64,
    /// Timed runs per ad-hoc query and engine, after one untimed run whose answers are
    /// compared.
    #[arg(long, default_value_t = 1)]
    pub adhoc_runs: usize,
    /// Only the Qilin side and the ad-hoc mode: the 13 hot (Rust client and ADBC), the cold
    /// first run, bytes per cuboid row, `--adhoc` (100 by default) and `--concurrency` when
    /// given; no DataFusion, no DuckDB run of the 13, no build baseline, no detail scan, no
    /// per-measure sizes. For quick before/after figures; the JSON has `build` (timed when
    /// this run built the cube), `concurrency`, `adbc`, `cold_first_run`, `cuboid_bytes`,
    /// `adhoc`.
    #[arg(long)]
    pub adhoc_only: bool,
    /// The qilin-server executable (default: next to qilin-bench).
    #[arg(long)]
    pub server: Option<PathBuf>,
    /// The qilin-jobs executable (default: next to qilin-bench).
    #[arg(long)]
    pub jobs: Option<PathBuf>,
}

/// Runs the command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Ssb(args) => ssb_bench(args).await,
        Command::Ballista(args) => cluster_build::run(args).await,
    }
}

/// `DIR/kylin.properties` for both the build and the server (HTTP server off: the benchmark
/// speaks Flight SQL only, and the default port could clash with another server).
pub fn properties(work: &Path) -> String {
    format!(
        "kylin.metadata.url={}\nkylin.storage.url={}\nkylin.source.url={}\n\
         kylin.server.mode=query\nkylin.query.cache-enabled=false\nkylin.sample.auto-create=false\n\
         kylin.server.http-port=0\n",
        work.join("meta").display(),
        work.join("segments").display(),
        work.join("source").display()
    )
}

async fn ssb_bench(args: SsbArgs) -> anyhow::Result<()> {
    if !(args.scale > 0.0 && args.scale <= 1000.0) {
        bail!("--scale must be in (0, 1000], got {}", args.scale);
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if args.concurrency == Some(0) {
        bail!("--concurrency must be at least 1");
    }
    if args.adhoc == Some(0) || args.adhoc_runs == 0 {
        bail!("--adhoc and --adhoc-runs must be at least 1");
    }
    let adhoc_queries = match args.adhoc.or(args.adhoc_only.then_some(100)) {
        Some(n) => Some(adhoc::generate(args.seed, n)?),
        None => None,
    };
    let server_exe = procs::locate("qilin-server", args.server.as_deref())?;
    let jobs_exe = procs::locate("qilin-jobs", args.jobs.as_deref())?;
    std::fs::create_dir_all(&args.work)
        .with_context(|| format!("creating --work {}", args.work.display()))?;
    let work = args
        .work
        .canonicalize()
        .with_context(|| format!("resolving --work {}", args.work.display()))?;
    let conf = work.join("kylin.properties");
    std::fs::write(&conf, properties(&work))
        .with_context(|| format!("writing {}", conf.display()))?;
    let source_dir = work.join("source").join(ssb::SOURCE_DIR);

    // 1. Data and cube.
    let generate_seconds = generate(&source_dir, args.scale).await?;
    let mut build = if already_built(&conf, &source_dir, args.scale)? {
        eprintln!(
            "cube {} already built at scale {}: reusing it (build not measured)",
            ssb::CUBE,
            args.scale
        );
        BuildReport {
            generate_seconds,
            seconds: None,
            peak_rss_bytes: None,
            reused: true,
            duckdb_ctas_seconds: None,
            duckdb_ctas_errors: BTreeMap::new(),
        }
    } else {
        eprintln!("building cube {} at scale {} ...", ssb::CUBE, args.scale);
        let (seconds, rss) = procs::run_build(&jobs_exe, &conf, args.scale, &work)?;
        eprintln!("built in {seconds:.2}s");
        BuildReport {
            generate_seconds,
            seconds: Some(seconds),
            peak_rss_bytes: rss,
            reused: false,
            duckdb_ctas_seconds: None,
            duckdb_ctas_errors: BTreeMap::new(),
        }
    };

    let queries = workload::ssb_queries()?;
    let cuboid_bytes = cube_size::cuboid_bytes(&conf)?;
    let has_adbc = scan::python_has("adbc_driver_flightsql.dbapi, pyarrow");
    if !has_adbc {
        eprintln!("python3 cannot import adbc_driver_flightsql and pyarrow: no ADBC figures");
    }

    // 2-3. Qilin through its server.
    let server = procs::Server::start(&server_exe, &conf)?;
    eprintln!("qilin-server listening on {}", server.addr);
    let waited = server.wait_for_warm_up();
    eprintln!("qilin-server warmed up in {:.1}s", waited.as_secs_f64());
    if args.adhoc_only {
        let list = adhoc_queries.unwrap_or_default();
        return adhoc_only(
            &args,
            build,
            server,
            &server_exe,
            &conf,
            &source_dir,
            &work,
            &queries,
            list,
            cuboid_bytes,
            has_adbc,
        )
        .await;
    }
    let mut client = workload::connect(&server.addr).await?;
    let mut qilin = Vec::new();
    for (name, sql) in &queries {
        let m = workload::measure(args.runs, async || {
            workload::qilin_query(&mut client, sql).await
        })
        .await
        .with_context(|| format!("qilin {name}"))?;
        eprintln!("qilin      {name}: median {:.2} ms", m.stats.median_ms);
        qilin.push(m);
    }

    // 6. Concurrent load (before the server stops, after the single-client runs).
    let concurrency = match args.concurrency {
        Some(c) => Some(workload::concurrent(&server.addr, &queries, c, args.runs).await?),
        None => None,
    };
    let server_peak_rss_bytes = server.peak_rss_bytes();

    // 7. The 13 through ADBC on the warm server.
    let adbc_hot = if has_adbc {
        match adbc::hot(&server.addr, &queries, args.runs) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("ADBC run of the 13 failed: {e:#}");
                None
            }
        }
    } else {
        None
    };

    // 9. The ad-hoc mode, on the same server (result cache off).
    let adhoc = match &adhoc_queries {
        Some(list) => Some(adhoc::run(
            &server.addr,
            &source_dir,
            list,
            args.seed,
            args.adhoc_runs,
            cuboid_bytes.base_cuboid,
            &work.join("duckdb-adhoc-tmp"),
        )?),
        None => None,
    };
    drop(server);

    // 4. DataFusion baseline.
    let ctx = workload::datafusion_context(&source_dir).await?;
    let mut datafusion = Vec::new();
    for (name, sql) in &queries {
        let m = workload::measure(args.runs, async || {
            workload::datafusion_query(&ctx, sql).await
        })
        .await
        .with_context(|| format!("datafusion {name}"))?;
        eprintln!("datafusion {name}: median {:.2} ms", m.stats.median_ms);
        datafusion.push(m);
    }
    drop(ctx);

    // 5. DuckDB, when python3 has it.
    let duckdb = workload::duckdb(
        &source_dir,
        &queries,
        args.runs,
        &workload::build_baseline(),
        &work.join("duckdb-tmp"),
    )?;
    match &duckdb {
        Some(d) => {
            for (name, error) in &d.build_errors {
                eprintln!("duckdb CREATE TABLE AS {name} failed: {error}");
            }
            build.duckdb_ctas_seconds = Some(d.build_seconds.clone());
            build.duckdb_ctas_errors = d.build_errors.clone();
        }
        None => {
            eprintln!("duckdb not installed (python3 -c 'import duckdb' failed): column omitted")
        }
    }

    // The detail scan, on a server of its own.
    let detail_scan = scan::run(&server_exe, &work, &source_dir, args.runs).await?;
    for (engine, error) in &detail_scan.errors {
        eprintln!("detail scan ({engine}) failed: {error}");
    }

    // 7. The first run after a start, each client on a new server.
    let rust_hot_ms: f64 = qilin.iter().map(|m| m.stats.median_ms).sum();
    let cold = adbc::cold(
        &server_exe,
        &conf,
        &queries,
        rust_hot_ms,
        adbc_hot.as_ref().map(|a| a.total_median_ms),
        has_adbc,
    )
    .await?;
    for (client, e) in &cold.errors {
        eprintln!("cold first run ({client}) failed: {e}");
    }

    // Correctness: same row counts.
    let mut reports = Vec::new();
    for (i, (name, sql)) in queries.iter().enumerate() {
        if qilin[i].rows != datafusion[i].rows {
            bail!(
                "row count mismatch on {name}: qilin returned {} rows, DataFusion {}",
                qilin[i].rows,
                datafusion[i].rows
            );
        }
        reports.push(QueryReport {
            name: name.clone(),
            sql: sql.clone(),
            rows: qilin[i].rows,
            qilin: qilin[i].stats.clone(),
            datafusion: datafusion[i].stats.clone(),
            duckdb: duckdb.as_ref().and_then(|d| d.queries.get(name).cloned()),
            adbc: adbc_hot.as_ref().and_then(|a| a.queries.get(name).cloned()),
        });
    }

    let cube_size = cube_size::measure(&conf)?;
    let mut report = Report::new(
        args.scale,
        args.runs,
        build,
        server_peak_rss_bytes,
        procs::dir_size(&work.join("segments")),
        procs::parquet_size(&source_dir),
        reports,
        duckdb.map(|d| d.version),
        concurrency,
        Some(detail_scan),
    );
    report.cube_size = Some(cube_size);
    report.adbc = adbc_hot;
    report.cold_first_run = Some(cold);
    report.cuboid_bytes = Some(cuboid_bytes);
    report.adhoc = adhoc;
    print!("{}", report.table());
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(&args.json, json)
        .with_context(|| format!("writing --json {}", args.json.display()))?;
    eprintln!("wrote {}", args.json.display());
    Ok(())
}

/// `--adhoc-only`: the Qilin-side figures and the ad-hoc mode, nothing else.
#[allow(clippy::too_many_arguments)]
async fn adhoc_only(
    args: &SsbArgs,
    build: BuildReport,
    server: procs::Server,
    server_exe: &Path,
    conf: &Path,
    source_dir: &Path,
    work: &Path,
    queries: &[(String, String)],
    list: Vec<adhoc::AdhocQuery>,
    cuboid_bytes: cube_size::CuboidBytesReport,
    has_adbc: bool,
) -> anyhow::Result<()> {
    if !has_adbc {
        bail!("--adhoc-only needs python3 with adbc_driver_flightsql, pyarrow and duckdb");
    }
    let mut client = workload::connect(&server.addr).await?;
    let mut rust_hot_ms = 0.0;
    for (name, sql) in queries {
        let m = workload::measure(args.runs, async || {
            workload::qilin_query(&mut client, sql).await
        })
        .await
        .with_context(|| format!("qilin {name}"))?;
        rust_hot_ms += m.stats.median_ms;
    }
    let concurrency = match args.concurrency {
        Some(c) => Some(workload::concurrent(&server.addr, queries, c, args.runs).await?),
        None => None,
    };
    let adbc_hot = adbc::hot(&server.addr, queries, args.runs)?;
    let adhoc = adhoc::run(
        &server.addr,
        source_dir,
        &list,
        args.seed,
        args.adhoc_runs,
        cuboid_bytes.base_cuboid,
        &work.join("duckdb-adhoc-tmp"),
    )?;
    drop(server);
    let cold = adbc::cold(
        server_exe,
        conf,
        queries,
        rust_hot_ms,
        Some(adbc_hot.total_median_ms),
        true,
    )
    .await?;
    let machine = report::machine();
    println!(
        "\nSSB scale {} (--adhoc-only) - {} cores, {}\nthe 13 hot, rust client: {:.2} ms (sum of medians of {} runs)\n{}",
        args.scale,
        machine.cores,
        machine.model,
        rust_hot_ms,
        args.runs,
        adbc_hot.line()
    );
    if let Some(s) = build.seconds {
        println!(
            "build: {s:.1} s, peak RSS {}",
            build
                .peak_rss_bytes
                .map_or("unknown".to_string(), |b| format!(
                    "{:.2} GiB",
                    b as f64 / (1u64 << 30) as f64
                ))
        );
    }
    if let Some(c) = &concurrency {
        println!(
            "concurrency {}: {} queries in {:.2}s = {:.1} QPS, p50 {:.2} ms, p99 {:.2} ms",
            c.clients, c.queries, c.seconds, c.qps, c.p50_ms, c.p99_ms
        );
    }
    print!("{}{}{}", cuboid_bytes.table(), cold.table(), adhoc.table());
    let json = serde_json::json!({
        "scale": args.scale,
        "runs": args.runs,
        "machine": machine,
        "qilin_version": env!("CARGO_PKG_VERSION"),
        "build": build,
        "concurrency": concurrency,
        "rust_client_hot_total_median_ms": rust_hot_ms,
        "adbc": adbc_hot,
        "cold_first_run": cold,
        "cuboid_bytes": cuboid_bytes,
        "adhoc": adhoc,
    });
    std::fs::write(&args.json, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing --json {}", args.json.display()))?;
    eprintln!("wrote {}", args.json.display());
    Ok(())
}

/// Generates the SSB tables unless `SCALE` already says `scale`; returns the seconds spent
/// (0 when skipped). Refuses a directory holding another scale.
pub(crate) async fn generate(source_dir: &Path, scale: f64) -> anyhow::Result<f64> {
    let marker = source_dir.join("SCALE");
    match std::fs::read_to_string(&marker) {
        Ok(have) if have.trim() == scale.to_string() => {
            eprintln!(
                "SSB data at scale {scale} already in {}",
                source_dir.display()
            );
            return Ok(0.0);
        }
        Ok(have) => bail!(
            "{} holds SSB at scale {}; use another --work directory for scale {scale}",
            source_dir.display(),
            have.trim()
        ),
        Err(_) => {}
    }
    eprintln!(
        "generating SSB at scale {scale} into {} ...",
        source_dir.display()
    );
    std::fs::create_dir_all(source_dir)?;
    let started = Instant::now();
    qilin_engine::sample::ssbgen::generate_ssb(scale, source_dir)
        .await
        .map_err(|e| anyhow::anyhow!("generating SSB data: {e}"))?;
    std::fs::write(&marker, scale.to_string())
        .with_context(|| format!("writing {}", marker.display()))?;
    Ok(started.elapsed().as_secs_f64())
}

/// Whether the cube already has a READY segment built from data at `scale`.
fn already_built(conf: &Path, source_dir: &Path, scale: f64) -> anyhow::Result<bool> {
    let marker = std::fs::read_to_string(source_dir.join("SCALE")).unwrap_or_default();
    if marker.trim() != scale.to_string() {
        return Ok(false);
    }
    let config = qilin_engine::config::Config::load(Some(conf))
        .map_err(|e| anyhow::anyhow!("loading {}: {e}", conf.display()))?;
    let store = qilin_engine::metadata::open_store(&config.stores.metadata_url)
        .map_err(|e| anyhow::anyhow!("opening the metadata store: {e}"))?;
    let meta = qilin_engine::metadata::managers::Metadata::new(store);
    Ok(match meta.cube_instance(ssb::CUBE) {
        Ok((inst, _)) => inst.ready_segments().count() > 0,
        Err(_) => false,
    })
}
