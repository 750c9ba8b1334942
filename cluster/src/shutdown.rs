//! The shutdown signal both binaries stop on.

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM (what service managers and container
/// runtimes send), and logs it. Each call listens afresh, so several tasks of a process can
/// each wait for it.
pub async fn shutdown_signal() {
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
