//! Binding the socket and serving Flight SQL until Ctrl-C or SIGTERM.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use arrow_flight::flight_service_server::FlightServiceServer;
use futures::TryStreamExt;
use qilin_engine::config::Config;
use qilin_engine::query::QueryEngine;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

use crate::auth::{Authenticator, RequireAuth};
use crate::service::QilinFlightSql;

/// Largest request we accept. Parameter uploads (DoPut) and statement handles that carry
/// them can exceed tonic's 4 MiB default; results are split into small messages anyway.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// What tests and scripts wait for on stdout; keep in step with `qilin_tests::server`.
pub const LISTENING_PREFIX: &str = "qilin-server listening on ";

/// Serves until a shutdown signal. `auth` is checked before anything slow happens (see
/// `main`), so a misconfigured server fails at once.
pub async fn serve(config: &Config, auth: Arc<Authenticator>) -> anyhow::Result<()> {
    let engine = Arc::new(QueryEngine::open(config).context("opening the query engine")?);
    let service = QilinFlightSql::new(engine, auth.clone(), config.max_concurrent_queries);
    let flight = FlightServiceServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let addr = bind_address(&config.server_host, config.server_port);
    let listener = TcpListener::bind(&addr).await.with_context(|| {
        format!("cannot listen on {addr} (kylin.server.host / kylin.server.port)")
    })?;
    let local = listener.local_addr().context("reading the bound address")?;
    // Exactly one line, flushed: scripts and tests wait for it instead of sleeping.
    let mut out = std::io::stdout().lock();
    writeln!(out, "{LISTENING_PREFIX}{local}")?;
    out.flush()?;
    drop(out);
    log::info!("serving Flight SQL on {local}");

    // Small result messages should not wait for Nagle's algorithm.
    let incoming = TcpListenerStream::new(listener).map_ok(|s| {
        let _ = s.set_nodelay(true);
        s
    });
    Server::builder()
        .add_service(RequireAuth::new(flight, auth))
        .serve_with_incoming_shutdown(incoming, shutdown_signal())
        .await
        .context("serving Flight SQL")?;
    log::info!("stopped");
    Ok(())
}

/// `host:port`, with brackets around an IPv6 literal.
fn bind_address(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    log::info!("shutdown signal received");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_get_brackets() {
        assert_eq!(bind_address("127.0.0.1", 7070), "127.0.0.1:7070");
        assert_eq!(bind_address("::1", 0), "[::1]:0");
        assert_eq!(bind_address("[::1]", 1), "[::1]:1");
        assert_eq!(bind_address("localhost", 2), "localhost:2");
    }
}
