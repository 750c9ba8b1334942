//! `qilin-bench ballista --scale SF --work DIR --json OUT [--executors 1,2]`: the SSB cube
//! build on the job engine's own threads (`kylin.job.engine=local`), then on a Qilin Ballista
//! cluster (`kylin.job.engine=ballista`) of one scheduler and each number of executor
//! processes in `--executors`, all on this machine. Each build starts from empty stores under
//! `DIR/ballista/<setup>/` over the same source files (`DIR/source`, generated when missing),
//! is timed around `qilin-jobs sample --scale SF` (registering the sample and building it),
//! and its cuboids (rows and blocks of each) must equal the local build's. On one machine
//! the cluster cannot be faster: the figures show what distribution costs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;

use crate::cube_size::cuboid_bytes;
use crate::procs::{self, Server};

#[derive(Args, Debug, Clone)]
pub struct BallistaArgs {
    /// SSB scale factor (1 = 6 million lineorder rows).
    #[arg(long)]
    pub scale: f64,
    /// Working directory: the source data (reused at the same scale) and one directory of
    /// stores per setup (rebuilt every run).
    #[arg(long)]
    pub work: PathBuf,
    /// Where to write the JSON report.
    #[arg(long)]
    pub json: PathBuf,
    /// Cluster sizes to build on, after the local build.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub executors: Vec<usize>,
    /// The qilin-jobs executable (default: next to qilin-bench).
    #[arg(long)]
    pub jobs: Option<PathBuf>,
    /// The qilin-ballista executable (default: next to qilin-bench).
    #[arg(long)]
    pub ballista: Option<PathBuf>,
}

/// One build: where it ran, how long it took, what it wrote.
#[derive(Debug, Serialize)]
pub struct SetupReport {
    /// `local`, or `ballista-N` (N executors).
    pub setup: String,
    pub executors: usize,
    pub seconds: f64,
    /// `seconds` over the local build's.
    pub ratio_to_local: f64,
    /// Peak RSS of the `qilin-jobs` process (the job engine).
    pub job_engine_peak_rss_bytes: Option<u64>,
    pub cuboids: usize,
    pub cube_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct BallistaReport {
    pub scale: f64,
    pub machine: crate::report::Machine,
    pub builds: Vec<SetupReport>,
}

pub async fn run(args: BallistaArgs) -> anyhow::Result<()> {
    if !(args.scale > 0.0 && args.scale <= 1000.0) {
        bail!("--scale must be in (0, 1000], got {}", args.scale);
    }
    if args.executors.contains(&0) {
        bail!("--executors: a cluster needs at least one executor");
    }
    let jobs_exe = procs::locate("qilin-jobs", args.jobs.as_deref())?;
    let ballista_exe = procs::locate("qilin-ballista", args.ballista.as_deref())?;
    std::fs::create_dir_all(&args.work)
        .with_context(|| format!("creating --work {}", args.work.display()))?;
    let work = args.work.canonicalize()?;
    let source = work.join("source");
    crate::generate(
        &source.join(qilin_engine::sample::ssb::SOURCE_DIR),
        args.scale,
    )
    .await?;

    let mut builds: Vec<SetupReport> = Vec::new();
    let mut local_cuboids = None;
    for executors in std::iter::once(0).chain(args.executors.iter().copied()) {
        let setup = match executors {
            0 => "local".to_string(),
            n => format!("ballista-{n}"),
        };
        let dir = work.join("ballista").join(&setup);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("kylin.properties");
        let mut props = format!(
            "kylin.metadata.url={}\nkylin.storage.url={}\nkylin.source.url={}\n\
             kylin.sample.auto-create=false\nkylin.server.http-port=0\n",
            dir.join("meta").display(),
            dir.join("segments").display(),
            source.display()
        );
        std::fs::write(&conf, &props)?;
        // Scheduler first, executors after (dropped in reverse: executors, then scheduler).
        let mut cluster: Vec<Server> = Vec::new();
        if executors > 0 {
            let scheduler = Server::spawn(
                &ballista_exe,
                &[
                    conf.as_os_str(),
                    "scheduler".as_ref(),
                    "--port".as_ref(),
                    "0".as_ref(),
                ],
                "qilin-ballista scheduler on ",
            )?;
            let addr = scheduler.addr.clone();
            cluster.push(scheduler);
            for i in 0..executors {
                let work_dir = dir.join(format!("executor{i}"));
                cluster.push(Server::spawn(
                    &ballista_exe,
                    &[
                        conf.as_os_str(),
                        "executor".as_ref(),
                        "--scheduler".as_ref(),
                        addr.as_ref(),
                        "--port".as_ref(),
                        "0".as_ref(),
                        "--work-dir".as_ref(),
                        work_dir.as_os_str(),
                    ],
                    "qilin-ballista executor on ",
                )?);
            }
            props.push_str(&format!(
                "kylin.job.engine=ballista\nkylin.job.ballista.scheduler={addr}\n"
            ));
            std::fs::write(&conf, &props)?;
        }
        eprintln!("building at scale {} ({setup}) ...", args.scale);
        let (seconds, rss) = procs::run_build(&jobs_exe, &conf, args.scale, &dir)?;
        while let Some(p) = cluster.pop() {
            drop(p);
        }
        let cube = cuboid_bytes(&conf)?;
        // Rows and blocks must match; bytes may not: with more than one build thread, which
        // built parent a cuboid is aggregated from depends on timing, and t-digest
        // (PERCENTILE) states depend on the order they are merged in.
        let stats: Vec<(u64, u64, u64)> = cube
            .cuboids
            .iter()
            .map(|c| (c.id, c.rows, c.blocks))
            .collect();
        match &local_cuboids {
            None => local_cuboids = Some(stats),
            Some(local) => {
                if let Some((want, got)) = local.iter().zip(&stats).find(|(a, b)| a != b) {
                    bail!(
                        "the {setup} build wrote other cuboids than the local build: \
                         (cuboid, rows, blocks) {got:?}, locally {want:?}"
                    );
                }
                if local.len() != stats.len() {
                    bail!(
                        "the {setup} build wrote {} cuboids, the local build {}",
                        stats.len(),
                        local.len()
                    );
                }
            }
        }
        let local_seconds = builds.first().map_or(seconds, |b| b.seconds);
        eprintln!("{setup}: built in {seconds:.2}s");
        builds.push(SetupReport {
            setup,
            executors,
            seconds,
            ratio_to_local: seconds / local_seconds,
            job_engine_peak_rss_bytes: rss,
            cuboids: cube.cuboids.len(),
            cube_bytes: cube.total_bytes,
        });
    }
    let report = BallistaReport {
        scale: args.scale,
        machine: crate::report::machine(),
        builds,
    };
    print_table(&report);
    write_json(&args.json, &report)
}

fn print_table(r: &BallistaReport) {
    println!(
        "SSB cube build at scale {} on {} cores ({}): local vs Qilin Ballista on this machine",
        r.scale, r.machine.cores, r.machine.model
    );
    println!(
        "{:<12} {:>10} {:>10} {:>12} {:>9} {:>14}",
        "setup", "seconds", "x local", "job RSS MiB", "cuboids", "cube bytes"
    );
    for b in &r.builds {
        println!(
            "{:<12} {:>10.2} {:>10.2} {:>12} {:>9} {:>14}",
            b.setup,
            b.seconds,
            b.ratio_to_local,
            b.job_engine_peak_rss_bytes
                .map_or("-".to_string(), |v| (v >> 20).to_string()),
            b.cuboids,
            b.cube_bytes
        );
    }
    println!("every setup wrote the same cuboids (rows and blocks of each)");
}

fn write_json(path: &Path, report: &BallistaReport) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
