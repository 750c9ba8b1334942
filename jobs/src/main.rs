//! `qilin-jobs`: submit and run cube builds, merges and refreshes; list, show and discard
//! jobs; create the SSB sample; `serve` runs the job daemon of a cluster; register source
//! tables (`table`); users, roles, table rules, API keys and the audit log (`user`, `grant`,
//! `acl`, `apikey`, `audit`).

mod table_command;

mod cli;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use qilin_cluster::auth::Authenticator;
use qilin_cluster::http::{self, Health};
use qilin_cluster::lease::Lease;
use qilin_cluster::notify::Notifier;
use qilin_cluster::{metrics, shutdown_signal};
use qilin_engine::config::ServerMode;
use qilin_engine::config::{Config, DEFAULT_CONF_PATH};
use qilin_engine::metadata::{managers::Metadata, open_store};
use qilin_engine::model::{SegmentRange, SegmentStatus};
use qilin_engine::sample::{ssb, tpch};
use qilin_engine::storage::open_segment_store;
use qilin_jobs::daemon::{renew_forever, Daemon};
use qilin_jobs::{progress_lines, Job, JobEngine, JobStatus, Observer, Submitted};

/// Printed (before the daemon's readiness line) with the HTTP server's bound address.
const HTTP_READY: &str = "qilin-jobs http on ";

mod cli_kylin;
mod cli_metadata;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "qilin-jobs",
    version,
    about = "Qilin job engine: build cube segments and manage jobs"
)]
struct Cli {
    /// Configuration file (Java properties). Every key can also be set by an environment
    /// variable: KYLIN_METADATA_URL for kylin.metadata.url, and so on.
    #[arg(long, global = true, default_value = DEFAULT_CONF_PATH)]
    conf: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a segment of a cube from the source tables.
    Build {
        #[arg(long)]
        cube: String,
        /// First day of the segment (YYYY-MM-DD), for partitioned cubes.
        #[arg(long, requires = "end")]
        start: Option<String>,
        /// Day after the last day of the segment (exclusive).
        #[arg(long, requires = "start")]
        end: Option<String>,
    },
    /// Merge the adjacent READY segments inside [start, end) into one.
    Merge {
        #[arg(long)]
        cube: String,
        #[arg(long)]
        start: String,
        #[arg(long)]
        end: String,
    },
    /// Rebuild one segment from source; the new one replaces it atomically.
    Refresh {
        #[arg(long)]
        cube: String,
        /// Segment name (e.g. 19920101000000_19990101000000) or id.
        #[arg(long)]
        segment: String,
    },
    /// List, show or discard jobs.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// List the segments of a cube.
    Segments {
        #[arg(long)]
        cube: String,
    },
    /// Run the job daemon: hold the cluster's job-engine lease (or wait as a standby) and run
    /// every job written into the store. The process for `kylin.server.mode=job`.
    Serve,
    /// Register, reload, list, show or drop source tables.
    Table {
        #[command(subcommand)]
        command: table_command::TableCommand,
    },
    /// Projects, models and cubes as JSON documents (`project`, `model`, `cube`).
    #[command(flatten)]
    Documents(cli::documents::DocumentsCommand),
    /// Generate the Star Schema Benchmark data, register project `ssb` and build its cube;
    /// with `--dataset tpch`, only write the eight TPC-H tables as Parquet into --dir.
    Sample {
        #[arg(long, value_enum, default_value_t = Dataset::Ssb)]
        dataset: Dataset,
        /// Scale factor (SSB 1 = 6 million lineorder rows, TPC-H 1 = 6 million lineitem
        /// rows); default kylin.sample.scale.
        #[arg(long)]
        scale: Option<f64>,
        /// TPC-H only: a new (or empty) directory to write `<table>/part-0.parquet` into.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Import Kylin 2.x/3.x metadata (projects, tables, models, cubes) from a directory.
    ImportKylin(cli_kylin::ImportKylinArgs),
    /// Back up the metadata store into a directory, or restore a backup into an empty store.
    Metadata {
        #[command(subcommand)]
        command: cli_metadata::MetadataCommand,
    },
    /// Users, project roles, table rules, API keys and the audit log.
    #[command(flatten)]
    Security(cli::security::SecurityCommand),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Dataset {
    /// The SSB sample project, built into its cube.
    Ssb,
    /// TPC-H data files only.
    Tpch,
}

#[derive(Subcommand)]
enum JobsCommand {
    /// All jobs, oldest first.
    List {
        #[arg(long)]
        cube: Option<String>,
    },
    /// One job with its steps and error.
    Show { id: String },
    /// Give up an unfinished job; its segment and data are removed.
    Discard { id: String },
    /// Run a job that was submitted or left behind by a process that died.
    Resume { id: String },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn open_engine(config: &Config) -> anyhow::Result<JobEngine> {
    let store = open_store(&config.stores.metadata_url).context("opening the metadata store")?;
    let segments =
        open_segment_store(&config.stores.storage_url).context("opening segment storage")?;
    Ok(JobEngine::new(
        Metadata::new(store),
        segments,
        config.clone(),
    ))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load_for_cli(&cli.conf)?;
    let engine = open_engine(&config)?;
    match cli.command {
        Command::Build { cube, start, end } => {
            let range = match (start, end) {
                (Some(s), Some(e)) => Some(SegmentRange::parse(&s, &e)?),
                _ => None,
            };
            let job = submit_build(&engine, &cube, range)?;
            run_job(&engine, &config, &job.id).await
        }
        Command::Merge { cube, start, end } => {
            let job = engine.submit_merge(&cube, SegmentRange::parse(&start, &end)?)?;
            eprintln!(
                "submitted job {} (merge into {} of cube {cube})",
                job.id, job.segment_name
            );
            run_job(&engine, &config, &job.id).await
        }
        Command::Refresh { cube, segment } => {
            let job = engine.submit_refresh(&cube, &segment)?;
            eprintln!(
                "submitted job {} (refresh {} of cube {cube})",
                job.id, job.segment_name
            );
            run_job(&engine, &config, &job.id).await
        }
        Command::Jobs { command } => jobs_command(&engine, &config, command).await,
        Command::Serve => serve(engine, &config).await,
        Command::Segments { cube } => {
            let (inst, _) = engine.metadata().cube_instance(&cube)?;
            let stale: Vec<String> = engine
                .stale_segments(&cube)
                .map(|v| v.into_iter().map(|s| s.id).collect())
                .unwrap_or_default();
            println!(
                "{:<36}  {:<30}  {:<5}  {:>12}  {:>8}  {:>12}",
                "ID", "NAME", "STATUS", "SOURCE_ROWS", "CUBOIDS", "BYTES"
            );
            for s in &inst.segments {
                println!(
                    "{:<36}  {:<30}  {:<5}  {:>12}  {:>8}  {:>12}",
                    s.id,
                    s.name,
                    if stale.contains(&s.id) {
                        "STALE"
                    } else if s.status == SegmentStatus::Ready {
                        "READY"
                    } else {
                        "NEW"
                    },
                    s.source_rows,
                    s.cuboids.len(),
                    s.size_bytes
                );
            }
            if !stale.is_empty() {
                eprintln!(
                    "STALE: READY but built under an earlier descriptor of the cube; queries \
                     skip it until `qilin-jobs refresh --cube {cube} --segment NAME` rebuilds it"
                );
            }
            Ok(())
        }
        Command::Table { command } => {
            let source = PathBuf::from(&config.stores.source_url);
            table_command::run(engine.metadata(), &source, command).await
        }
        Command::Documents(command) => cli::documents::run(&engine, &config, command).await,
        Command::Sample {
            dataset,
            scale,
            dir,
        } => {
            let scale = scale.unwrap_or(config.sample.scale);
            match (dataset, dir) {
                (Dataset::Ssb, None) => sample(&engine, &config, scale).await,
                (Dataset::Ssb, Some(_)) => {
                    bail!("--dir is for --dataset tpch; the SSB sample goes under kylin.source.url")
                }
                (Dataset::Tpch, None) => bail!("--dataset tpch needs --dir DIR (a new directory)"),
                (Dataset::Tpch, Some(dir)) => sample_tpch(scale, &dir).await,
            }
        }
        Command::ImportKylin(args) => cli_kylin::run(engine.metadata(), &config, args),
        Command::Metadata { command } => cli_metadata::run(engine.metadata(), command),
        Command::Security(command) => cli::security::run(&engine, &config, command).await,
    }
}

async fn jobs_command(
    engine: &JobEngine,
    config: &Config,
    command: JobsCommand,
) -> anyhow::Result<()> {
    match command {
        JobsCommand::List { cube } => {
            println!(
                "{:<36}  {:<7}  {:<16}  {:<30}  {:<9}  {:>5}",
                "ID", "TYPE", "CUBE", "SEGMENT", "STATUS", "PROG"
            );
            for j in engine.list()? {
                if cube.as_deref().is_some_and(|c| c != j.cube) {
                    continue;
                }
                let status = if j.status == JobStatus::Running && engine.is_resumable(&j) {
                    "RUNNING (process gone; resume it)".to_string()
                } else {
                    j.status.to_string()
                };
                println!(
                    "{:<36}  {:<7}  {:<16}  {:<30}  {:<9}  {:>4.0}%",
                    j.id,
                    format!("{:?}", j.kind).to_uppercase(),
                    j.cube,
                    j.segment_name,
                    status,
                    j.progress * 100.0
                );
            }
            Ok(())
        }
        JobsCommand::Show { id } => {
            let j = engine.get(&id)?;
            println!("{}", serde_json::to_string_pretty(&j)?);
            Ok(())
        }
        JobsCommand::Discard { id } => {
            let j = engine.discard(&id)?;
            eprintln!("job {} discarded; segment {} removed", j.id, j.segment_name);
            Ok(())
        }
        JobsCommand::Resume { id } => run_job(engine, config, &id).await,
    }
}

/// Submits a build (or finds the abandoned one for the same range) and says which.
fn submit_build(
    engine: &JobEngine,
    cube: &str,
    range: Option<SegmentRange>,
) -> anyhow::Result<Job> {
    Ok(match engine.submit_build(cube, range)? {
        Submitted::New(j) => {
            eprintln!(
                "submitted job {} (build {} of cube {cube})",
                j.id, j.segment_name
            );
            j
        }
        Submitted::Resume(j) => {
            eprintln!(
                "resuming job {} (build {} of cube {cube}), left unfinished by a process that is gone",
                j.id, j.segment_name
            );
            j
        }
    })
}

/// Runs a job with a progress bar on a terminal, plain lines otherwise. Only the holder of
/// the job-engine lease runs jobs: when a job daemon holds it, the job is left to it and
/// watched; otherwise this process takes the lease for the duration of the job.
async fn run_job(engine: &JobEngine, config: &Config, id: &str) -> anyhow::Result<()> {
    let observer = progress_observer();
    let meta = engine.metadata().clone();
    if tokio::task::spawn_blocking(move || Lease::held_elsewhere(&meta)).await?? {
        return watch_job(engine, id, observer).await;
    }
    let lease = Arc::new(Lease::new(
        engine.metadata().clone(),
        Duration::from_secs(config.jobs.lease_seconds),
        config.jobs.orphan_timeout_seconds,
    ));
    let l = lease.clone();
    if !tokio::task::spawn_blocking(move || l.tick()).await?? {
        return watch_job(engine, id, observer).await;
    }
    let renewer = tokio::spawn(renew_forever(lease.clone()));
    let leased = engine.clone().with_lease(lease.clone());
    let result = leased.run(id, observer.clone()).await;
    // Merges the commit asked for (the cube's auto_merge_time_ranges) run under the same lease.
    let merges = match &result {
        Ok(job) => leased.run_auto_merges(job, observer).await,
        Err(_) => Vec::new(),
    };
    renewer.abort();
    tokio::task::spawn_blocking(move || lease.release()).await?;
    let job = result.with_context(|| format!("job {id} failed"))?;
    if let Some(n) = Notifier::from_config(config, None) {
        let version = engine.metadata().store().store_version().unwrap_or(0);
        let failed = n
            .notify_all(
                &format!("segment READY {}/{}", job.cube, job.segment_id),
                version,
            )
            .await;
        for (peer, e) in failed {
            eprintln!("warning: could not notify {peer} ({e}); it catches up by polling");
        }
    }
    report_success(engine, &job)?;
    for (merge, outcome) in merges {
        match outcome {
            Ok(m) => {
                eprint!("auto-merge: ");
                report_success(engine, &m)?;
            }
            // The build the user asked for stands; the segments stay unmerged.
            Err(e) => eprintln!(
                "warning: auto-merge job {merge} failed: {e}; its segments stay as they were (see `qilin-jobs jobs show {merge}`)"
            ),
        }
    }
    Ok(())
}

/// Follows a job that the job daemon runs, until it ends.
async fn watch_job(engine: &JobEngine, id: &str, observer: Observer) -> anyhow::Result<()> {
    eprintln!("job {id} is left to the cluster's job engine (it holds the job-engine lease); following it");
    loop {
        let job = engine.get(id)?;
        observer(&job);
        match job.status {
            JobStatus::Succeed => return report_success(engine, &job),
            s if s.is_final() => bail!(
                "job {id} {s}: {}",
                job.error.as_deref().unwrap_or("(no error recorded)")
            ),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

fn report_success(engine: &JobEngine, job: &Job) -> anyhow::Result<()> {
    let (inst, _) = engine.metadata().cube_instance(&job.cube)?;
    if job.kind == qilin_jobs::JobKind::Optimize {
        let cuboids: Vec<String> = inst
            .ready_segments()
            .map(|s| format!("{} {}", s.name, s.cuboids.len()))
            .collect();
        eprintln!(
            "job {} SUCCEED: cuboids per READY segment: {}",
            job.id,
            cuboids.join(", ")
        );
        return Ok(());
    }
    let seg = inst.segment(&job.segment_id);
    eprintln!(
        "job {} SUCCEED: segment {} READY ({} source rows, {} cuboids, {} bytes)",
        job.id,
        job.segment_name,
        seg.map(|s| s.source_rows).unwrap_or(0),
        seg.map(|s| s.cuboids.len()).unwrap_or(0),
        seg.map(|s| s.size_bytes).unwrap_or(0)
    );
    Ok(())
}

/// `qilin-jobs serve`: the job daemon, with the HTTP server (`/health`, `/metrics`, the REST
/// API) when `kylin.server.http-port` is not 0. Stops on Ctrl-C or SIGTERM, releasing the lease.
async fn serve(engine: JobEngine, config: &Config) -> anyhow::Result<()> {
    if config.cluster.mode == ServerMode::Query {
        bail!(
            "kylin.server.mode=query: this instance must not run jobs; \
             run `qilin-jobs serve` with kylin.server.mode=job (or all)"
        );
    }
    metrics::global().set_instance("job", &config.cluster.host);
    let rest_engine = engine.clone();
    let daemon = Daemon::new(engine, config, None);
    let mut endpoint = String::from("off");
    if config.cluster.http_port != 0 {
        // The REST API needs users and tokens: the same rules as the query server's.
        let instance = format!(
            "qilin-jobs@{}:{}",
            config.cluster.host, config.cluster.http_port
        );
        let auth = Arc::new(Authenticator::from_config(
            config,
            rest_engine.metadata().clone(),
            &instance,
        )?);
        let tls = qilin_cluster::tls::Tls::for_server(config)?;
        let addr = http::bind_address(&config.cluster.host, config.cluster.http_port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (kylin.server.http-port)"))?;
        endpoint = listener.local_addr()?.to_string();
        let lease = daemon.lease().clone();
        let health = Arc::new(move || {
            let epoch = lease.epoch();
            Health {
                ok: true,
                detail: format!(
                    "{{\"status\":\"ok\",\"mode\":\"job\",\"lease_held\":{},\"lease_epoch\":{}}}",
                    epoch.is_some(),
                    epoch.unwrap_or(0)
                ),
            }
        });
        let router = http::router(health)
            .merge(qilin_jobs::rest::router(rest_engine))
            .layer(axum::Extension(auth));
        tokio::spawn(async move {
            if let Err(e) = http::serve_with(listener, tls, router, shutdown_signal()).await {
                log::error!("HTTP server stopped: {e}");
            }
        });
        println!("{HTTP_READY}{endpoint}");
    }
    // One line, flushed: scripts and tests wait for it.
    println!(
        "qilin-jobs serve: job daemon started (metadata {}, http {endpoint})",
        config.stores.metadata_url
    );
    use std::io::Write;
    std::io::stdout().flush()?;
    daemon.run(shutdown_signal()).await;
    println!("qilin-jobs serve: stopped");
    Ok(())
}

fn progress_observer() -> Observer {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(1000);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {percent:>3}% {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Arc::new(move |j: &Job| {
            bar.set_position((j.progress * 1000.0) as u64);
            let step = j
                .steps
                .get(j.current_step())
                .map(|s| s.name.as_str())
                .unwrap_or("");
            bar.set_message(format!("{step}: {}", j.message));
            if j.status.is_final() {
                bar.finish_and_clear();
            }
        })
    } else {
        // Plain lines: one per step change and per 10% of progress.
        progress_lines(|line| eprintln!("{line}"))
    }
}

/// Writes the TPC-H tables into `dir` and says where.
async fn sample_tpch(scale: f64, dir: &std::path::Path) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let tables = tpch::generate_tpch(scale, dir).await?;
    for t in &tables {
        println!("{:<9} {:>12} rows  {}", t.name, t.rows, t.dir.display());
    }
    eprintln!(
        "wrote TPC-H at scale {scale} into {} in {:.1}s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Generates SSB, registers the sample and builds its single segment (idempotent).
async fn sample(engine: &JobEngine, config: &Config, scale: f64) -> anyhow::Result<()> {
    if !(scale > 0.0 && scale <= 1000.0) {
        bail!("--scale must be in (0, 1000], got {scale}");
    }
    let meta = engine.metadata();
    let source = PathBuf::from(&config.stores.source_url);
    if let Ok((inst, _)) = meta.cube_instance(ssb::CUBE) {
        let marker =
            std::fs::read_to_string(source.join(ssb::SOURCE_DIR).join("SCALE")).unwrap_or_default();
        let ready = inst.ready_segments().count() > 0;
        if ready && marker.trim() == scale.to_string() {
            eprintln!(
                "the SSB sample at scale {scale} is already built (cube {})",
                ssb::CUBE
            );
            return Ok(());
        }
        if !inst.segments.is_empty() && marker.trim() != scale.to_string() {
            bail!(
                "the SSB sample exists at scale {} in this store; use another kylin.metadata.url / kylin.storage.url / kylin.source.url for scale {scale}",
                marker.trim()
            );
        }
    }
    eprintln!(
        "preparing the SSB sample at scale {scale} under {}",
        source.join(ssb::SOURCE_DIR).display()
    );
    let started = std::time::Instant::now();
    let layout = ssb::install(meta, &source, scale, config.cube.max_cuboids_per_group).await?;
    eprintln!(
        "registered project {}, model {}, cube {} ({} cuboids) in {:.1}s",
        ssb::PROJECT,
        ssb::MODEL,
        ssb::CUBE,
        layout.cuboids.len(),
        started.elapsed().as_secs_f64()
    );
    let job = submit_build(engine, ssb::CUBE, Some(ssb::full_range()))?;
    run_job(engine, config, &job.id).await
}
