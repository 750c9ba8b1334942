//! The background warm-up (`kylin.query.warm-up.*`, see `qilin_engine::query::warm`): a thread
//! of its own warms at start and whenever the metadata version moves (a segment turned READY,
//! a merge, a refresh), woken by whoever reloads the catalog (the store-version poller,
//! notifications, the embedded job daemon) and otherwise looking every
//! `kylin.server.poll-seconds`. The server answers queries from the first moment; warming
//! only makes the first ones faster. Each warm-up is logged ("warm-up done: ...").

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use qilin_engine::config::Config;
use qilin_engine::query::{QueryEngine, WarmUp};

/// What the log line of a finished warm-up starts with (tests wait for it).
pub const WARM_DONE: &str = "warm-up done: ";
/// What the log line of a failed warm-up starts with (the server keeps answering queries).
pub const WARM_FAILED: &str = "warm-up failed: ";

/// Wakes the warm-up thread; cheap to clone and call from anywhere. A no-op when warming is
/// off.
#[derive(Clone, Default)]
pub struct Warmer {
    wake: Option<Sender<()>>,
}

impl Warmer {
    /// Starts the warm-up thread (it warms at once), unless `kylin.query.warm-up.enabled` is
    /// false.
    pub fn start(engine: Arc<QueryEngine>, config: &Config) -> Warmer {
        if !config.query.warm_up_enabled {
            log::info!("warm-up off (kylin.query.warm-up.enabled=false)");
            return Warmer::default();
        }
        let (tx, rx) = mpsc::channel::<()>();
        let every = Duration::from_secs(config.cluster.poll_seconds);
        let mut state = WarmUp::new(config);
        let spawned = std::thread::Builder::new()
            .name("qilin-warm-up".into())
            .spawn(move || {
                // Warm-up statements run through DataFusion, which wants a runtime; this one
                // is the thread's own, so warming never holds a worker of the server's.
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        log::warn!("warm-up off: cannot start its runtime: {e}");
                        return;
                    }
                };
                loop {
                    match runtime.block_on(engine.warm_up(&mut state)) {
                        Ok(Some(report)) => log::info!("{WARM_DONE}{report}"),
                        Ok(None) => {}
                        Err(e) => log::warn!("{WARM_FAILED}{e}"),
                    }
                    match rx.recv_timeout(every) {
                        Ok(()) => while rx.try_recv().is_ok() {},
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            });
        match spawned {
            Ok(_) => Warmer { wake: Some(tx) },
            Err(e) => {
                log::warn!("warm-up off: cannot start its thread: {e}");
                Warmer::default()
            }
        }
    }

    /// Asks for a warm-up now (after a reload: new segments may be READY).
    pub fn wake(&self) {
        if let Some(tx) = &self.wake {
            let _ = tx.send(());
        }
    }
}
