//! `qilin-ballista`: the DataFusion Ballista scheduler and executor that run Qilin's
//! distributed builds (Ballista's stock binaries cannot decode Qilin's plan nodes).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use qilin_ballista::executor::{self, ExecutorOptions};
use qilin_ballista::parse_host_port;
use qilin_ballista::scheduler::Scheduler;
use qilin_engine::config::{Config, DEFAULT_CONF_PATH};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "qilin-ballista",
    version,
    about = "Qilin's DataFusion Ballista scheduler and executor for distributed cube builds"
)]
struct Cli {
    /// Configuration file (Java properties), the same on every machine of the cluster:
    /// decoded build plans read and write the segment store `kylin.storage.url` names.
    #[arg(long, global = true, default_value = DEFAULT_CONF_PATH)]
    conf: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scheduler the job engine submits builds to (`kylin.job.ballista.scheduler`).
    Scheduler {
        /// Port to listen on; 0 picks a free one. The bound address is printed.
        #[arg(long, default_value_t = 50050)]
        port: u16,
        /// Address to bind, also the one executors report to.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
    },
    /// Run an executor that joins a scheduler and runs build tasks.
    Executor {
        /// The scheduler, HOST:PORT.
        #[arg(long)]
        scheduler: String,
        /// Arrow Flight port other executors fetch shuffle data from; 0 picks a free one.
        /// The bound address is printed.
        #[arg(long, default_value_t = 50051)]
        port: u16,
        /// Address to bind and to advertise to the scheduler and other executors.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Directory for shuffle files and spills (default: a directory under the system
        /// temporary directory named after the port).
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,qilin_ballista=info"),
    )
    .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qilin-ballista: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load_for_cli(&cli.conf)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Scheduler { port, host } => {
                let scheduler = Scheduler::start(&config, &host, port)
                    .await
                    .with_context(|| format!("starting the scheduler on {host}:{port}"))?;
                println!("qilin-ballista scheduler on {}", scheduler.addr);
                scheduler.wait().await?;
            }
            Command::Executor {
                scheduler,
                port,
                host,
                work_dir,
            } => {
                let (scheduler_host, scheduler_port) = parse_host_port("--scheduler", &scheduler)?;
                let port = match port {
                    0 => executor::free_port(&host)?,
                    p => p,
                };
                let work_dir = work_dir.unwrap_or_else(|| {
                    std::env::temp_dir().join(format!("qilin-ballista-executor-{port}"))
                });
                let process = executor::process_config(
                    &config,
                    &ExecutorOptions {
                        scheduler_host,
                        scheduler_port,
                        host: host.clone(),
                        port,
                        work_dir,
                    },
                )?;
                println!("qilin-ballista executor on {host}:{port} (scheduler {scheduler})");
                executor::run(process).await?;
            }
        }
        Ok(())
    })
}
