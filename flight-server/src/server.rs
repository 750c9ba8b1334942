//! Binding the socket and serving Flight SQL until Ctrl-C or SIGTERM.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arrow_flight::flight_service_server::FlightServiceServer;
use futures::TryStreamExt;
use qilin_cluster::http::{self, bind_address, Health};
use qilin_cluster::tls::Tls;
use qilin_cluster::{metrics, shutdown_signal};
use qilin_engine::config::{Config, ServerMode};
use qilin_engine::metadata::{managers::Metadata, open_store};
use qilin_engine::query::QueryEngine;
use qilin_engine::storage::{open_segment_store, SegmentStore};
use qilin_jobs::daemon::Daemon;
use qilin_jobs::JobEngine;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

use crate::auth::{Authenticator, RequireAuth};
use crate::service::QilinFlightSql;
use crate::warm::Warmer;
use crate::web;
use crate::wire::MAX_MESSAGE_BYTES;

/// What tests and scripts wait for on stdout; keep in step with `qilin_tests::server`.
pub const LISTENING_PREFIX: &str = "qilin-server listening on ";
/// Printed before [`LISTENING_PREFIX`] when the HTTP server is on, with its bound address.
pub const HTTP_PREFIX: &str = "qilin-server http on ";

/// The metadata store and the segment store of this process, opened once and shared (by the
/// first-start sample, the query engine and the job engine: one connection pool per HBase
/// store, one view of a local store).
pub struct Stores {
    pub meta: Metadata,
    pub segments: Arc<dyn SegmentStore>,
}

impl Stores {
    /// Opens the stores `kylin.metadata.url` and `kylin.storage.url` name.
    pub fn open(config: &Config) -> anyhow::Result<Stores> {
        Ok(Stores {
            meta: Metadata::new(
                open_store(&config.stores.metadata_url).context("opening the metadata store")?,
            ),
            segments: open_segment_store(&config.stores.storage_url)
                .context("opening segment storage")?,
        })
    }
}

/// Serves until a shutdown signal. `auth` and `tls` are checked before anything slow happens
/// (see `main`), so a misconfigured server fails at once. With `tls` both Flight SQL and the
/// HTTP server accept TLS connections only. Alongside Flight SQL: the store-version
/// poller (remote stores), the HTTP server (`kylin.server.http-port`: console, REST
/// API, health, metrics), and in
/// mode `all` the job daemon.
pub async fn serve(
    config: &Config,
    auth: Arc<Authenticator>,
    stores: Stores,
    tls: Option<Arc<Tls>>,
) -> anyhow::Result<()> {
    let Stores { meta, segments } = stores;
    let engine = Arc::new(QueryEngine::new(config, meta.clone(), segments.clone()));
    let jobs = JobEngine::new(meta, segments, config.clone());
    let addr = bind_address(&config.cluster.host, config.cluster.port);
    let listener = TcpListener::bind(&addr).await.with_context(|| {
        format!("cannot listen on {addr} (kylin.server.host / kylin.server.port)")
    })?;
    let local = listener.local_addr().context("reading the bound address")?;
    // How this instance appears in kylin.rest.servers (skipped when notifying).
    let own_addr = format!("{}:{}", config.cluster.host, local.port());
    metrics::global().set_instance(&config.cluster.mode.to_string(), &own_addr);
    // Warming runs on a thread of its own: queries are answered from the first moment.
    let warmer = Warmer::start(engine.clone(), config);
    let service = QilinFlightSql::new(
        engine.clone(),
        auth.clone(),
        jobs.clone(),
        config,
        &own_addr,
        warmer.clone(),
    );
    let query_slots = service.query_slots();
    let flight = FlightServiceServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let healthy = Arc::new(AtomicBool::new(true));
    if engine.follows_version() {
        tokio::spawn(poll_store_version(
            engine.clone(),
            Duration::from_secs(config.cluster.poll_seconds),
            healthy.clone(),
            warmer.clone(),
        ));
    }
    if config.cluster.http_port != 0 {
        let haddr = bind_address(&config.cluster.host, config.cluster.http_port);
        let hlistener = TcpListener::bind(&haddr)
            .await
            .with_context(|| format!("cannot listen on {haddr} (kylin.server.http-port)"))?;
        let hlocal = hlistener.local_addr()?;
        let (health_engine, healthy, mode) = (
            engine.clone(),
            healthy.clone(),
            config.cluster.mode.to_string(),
        );
        let health = Arc::new(move || {
            let ok = healthy.load(Ordering::Relaxed);
            let planning = health_engine.planning();
            Health {
                ok,
                detail: format!(
                    "{{\"status\":\"{}\",\"mode\":\"{mode}\",\"metadata_version\":{},\
                     \"planning\":{{\"statements\":{},\"rewrites\":{}}}}}",
                    if ok { "ok" } else { "store unreachable" },
                    health_engine
                        .snapshot_version()
                        .map_or("null".to_string(), |v| v.to_string()),
                    planning.statements,
                    planning.rewrites
                ),
            }
        });
        let router = web::router(web::Web {
            auth: auth.clone(),
            health,
            engine: engine.clone(),
            jobs: jobs.clone(),
            query_slots,
        });
        let (http_tls, scheme) = (tls.clone(), if tls.is_some() { "https" } else { "http" });
        tokio::spawn(async move {
            if let Err(e) = http::serve_with(hlistener, http_tls, router, shutdown_signal()).await {
                log::error!("HTTP server stopped: {e}");
            }
        });
        // Before the "listening" line, so whoever waits for that one has seen this one too.
        let mut out = std::io::stdout().lock();
        writeln!(out, "{HTTP_PREFIX}{hlocal}")?;
        out.flush()?;
        log::info!("console, REST API, health and metrics on {scheme}://{hlocal}");
    }
    if config.cluster.mode == ServerMode::All {
        // The embedded job engine: it runs jobs only while it holds the cluster's lease.
        let (reload, warmer) = (engine.clone(), warmer.clone());
        let daemon = Daemon::new(jobs, config, Some(&own_addr)).on_change(Arc::new(move || {
            if let Err(e) = reload.refresh() {
                log::warn!("reloading after a build: {e}");
            }
            warmer.wake();
        }));
        tokio::spawn(daemon.run(shutdown_signal()));
    }

    // Exactly one line, flushed: scripts and tests wait for it instead of sleeping.
    let mut out = std::io::stdout().lock();
    writeln!(out, "{LISTENING_PREFIX}{local}")?;
    out.flush()?;
    drop(out);
    log::info!(
        "decoded-block cache: {} MiB (kylin.query.block-cache-mb)",
        config.query.block_cache_bytes >> 20
    );
    log::info!(
        "serving Flight SQL on {local}{}",
        match &tls {
            Some(t) if t.mutual() => " (TLS, node certificates accepted)",
            Some(_) => " (TLS)",
            None => "",
        }
    );

    // Small result messages should not wait for Nagle's algorithm.
    let incoming = TcpListenerStream::new(listener).map_ok(|s| {
        let _ = s.set_nodelay(true);
        s
    });
    let mut builder = Server::builder();
    if let Some(tls) = &tls {
        builder = builder
            .tls_config(tls.flight_server())
            .context("kylin.server.tls.*")?;
    }
    builder
        .add_service(RequireAuth::new(flight, auth))
        .serve_with_incoming_shutdown(incoming, shutdown_signal())
        .await
        .context("serving Flight SQL")?;
    log::info!("stopped");
    Ok(())
}

/// Follows a remote store: every `every`, reloads the catalog when the store-wide version
/// moved on, so a server that missed a notification catches up by itself.
async fn poll_store_version(
    engine: Arc<QueryEngine>,
    every: Duration,
    healthy: Arc<AtomicBool>,
    warmer: Warmer,
) {
    loop {
        let e = engine.clone();
        match tokio::task::spawn_blocking(move || e.refresh()).await {
            Ok(Ok(reloaded)) => {
                healthy.store(true, Ordering::Relaxed);
                if reloaded {
                    metrics::global().reload();
                    warmer.wake();
                    log::info!(
                        "metadata version {}: reloaded",
                        engine.snapshot_version().unwrap_or(0)
                    );
                }
                if let Some(v) = engine.snapshot_version() {
                    metrics::global().set_store_version(v);
                }
            }
            Ok(Err(e)) => {
                healthy.store(false, Ordering::Relaxed);
                log::warn!("polling the metadata store: {e}");
            }
            Err(_) => {}
        }
        tokio::time::sleep(every).await;
    }
}
