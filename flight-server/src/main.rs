//! `qilin-server`: the Arrow Flight SQL query server.

mod admin;
mod admin_security;
mod admin_tables;
mod auth;
mod columns;
mod guard;
mod handle;
mod metadata;
mod sample;
mod server;
mod service;
mod sql_info;
mod status;
mod warm;
mod web;
mod wire;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use qilin_engine::config::{Config, ServerMode, DEFAULT_CONF_PATH};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "qilin-server",
    version,
    about = "Qilin query server: answers SQL from cube segments over Arrow Flight SQL"
)]
struct Cli {
    /// Configuration file (Java properties). Every key can also be set by an environment
    /// variable: KYLIN_SERVER_PORT for kylin.server.port, and so on.
    #[arg(long, default_value = DEFAULT_CONF_PATH)]
    conf: PathBuf,
    /// Port to listen on, overriding kylin.server.port (0 = any free port).
    #[arg(long)]
    port: Option<u16>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,qilin_server=info"),
    )
    .init();
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

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = Config::load_for_cli(&cli.conf)?;
    if let Some(port) = cli.port {
        config.cluster.port = port;
    }
    if config.cluster.mode == ServerMode::Job {
        anyhow::bail!(
            "kylin.server.mode=job: qilin-server only answers queries (modes all and query); \
             the job daemon is `qilin-jobs serve`"
        );
    }
    // Each store is opened once, shared by the users, the sample, the query engine and the
    // job engine.
    let stores = server::Stores::open(&config)?;
    // Security first: a server that must not start should not build a sample before saying so.
    let instance = format!(
        "qilin-server@{}:{}",
        config.cluster.host, config.cluster.port
    );
    let auth = Arc::new(auth::Authenticator::from_config(
        &config,
        stores.meta.clone(),
        &instance,
    )?);
    // TLS files checked (or plaintext refused off loopback) before anything slow, too.
    let tls = qilin_cluster::tls::Tls::for_server(&config)?;
    if config.cluster.mode == ServerMode::All {
        // Building is job work, which a query-only instance leaves to others.
        sample::create_if_empty(&config, &stores).await?;
    }
    server::serve(&config, auth, stores, tls).await
}
