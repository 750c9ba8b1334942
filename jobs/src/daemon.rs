//! The job daemon: the one job engine of a cluster (`qilin-jobs serve`, or inside
//! `qilin-server` in mode `all`). It contends for the job-engine lease; while it holds it, it
//! runs the jobs written into the store (by `qilin-jobs build`, by a query server's
//! `qilin.build` action, or left behind by a job engine that died) one at a time, and after
//! each committed segment notifies the instances in `kylin.rest.servers`. Without the lease it
//! is a standby and runs nothing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use qilin_cluster::lease::Lease;
use qilin_cluster::metrics;
use qilin_cluster::notify::Notifier;
use qilin_engine::config::Config;

use crate::{progress_lines, JobEngine, JobStatus};

/// How often the daemon looks for jobs to run.
pub const JOB_POLL: Duration = Duration::from_millis(500);

/// Called after a job committed a change (e.g. the in-process query engine reloads).
pub type OnChange = Arc<dyn Fn() + Send + Sync>;

pub struct Daemon {
    engine: JobEngine,
    lease: Arc<Lease>,
    notifier: Option<Notifier>,
    on_change: Option<OnChange>,
}

impl Daemon {
    /// A daemon over `engine`'s stores. `own_addr` is this process's Flight address when it
    /// has one (skipped when notifying).
    pub fn new(engine: JobEngine, config: &Config, own_addr: Option<&str>) -> Daemon {
        let lease = Arc::new(Lease::new(
            engine.metadata().clone(),
            Duration::from_secs(config.jobs.lease_seconds),
            config.jobs.orphan_timeout_seconds,
        ));
        Daemon {
            engine: engine.with_lease(lease.clone()),
            lease,
            notifier: Notifier::from_config(config, own_addr),
            on_change: None,
        }
    }

    pub fn on_change(mut self, f: OnChange) -> Self {
        self.on_change = Some(f);
        self
    }

    pub fn lease(&self) -> &Arc<Lease> {
        &self.lease
    }

    /// Runs until `shutdown` completes, then releases the lease.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let renewer = tokio::spawn(renew_forever(self.lease.clone()));
        tokio::select! {
            _ = self.work_forever() => {}
            _ = shutdown => {}
        }
        renewer.abort();
        let lease = self.lease.clone();
        let _ = tokio::task::spawn_blocking(move || lease.release()).await;
        metrics::global().set_lease_held(false);
    }

    async fn work_forever(&self) {
        loop {
            self.record_job_counts().await;
            if self.lease.epoch().is_some() {
                match self.next_job().await {
                    Ok(Some(id)) => self.run_one(&id).await,
                    Ok(None) => {}
                    Err(e) => log::warn!("listing jobs: {e}"),
                }
            }
            tokio::time::sleep(JOB_POLL).await;
        }
    }

    async fn next_job(&self) -> qilin_engine::Result<Option<String>> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.orphans())
            .await
            .map_err(|e| qilin_engine::Error::Refused(format!("job listing task: {e}")))?
            .map(|jobs| jobs.into_iter().next().map(|j| j.id))
    }

    async fn run_one(&self, id: &str) {
        log::info!("job engine: running job {id}");
        let observer = progress_lines(|line| log::info!("{line}"));
        match self.engine.run(id, observer).await {
            Ok(job) => {
                metrics::global().job_finished("SUCCEED");
                log::info!("job {} SUCCEED: segment {} READY", job.id, job.segment_name);
                if let Some(f) = &self.on_change {
                    f();
                }
                if let Some(n) = &self.notifier {
                    let version = self.engine.metadata().store().store_version().unwrap_or(0);
                    n.notify(
                        &format!("segment READY {}/{}", job.cube, job.segment_id),
                        version,
                    );
                }
            }
            Err(qilin_engine::Error::JobStopped { job, reason }) => {
                log::warn!("job {job} stopped: {reason}");
            }
            Err(e) => {
                metrics::global().job_finished("ERROR");
                log::error!("job {id} failed: {e}");
            }
        }
    }

    async fn record_job_counts(&self) {
        let engine = self.engine.clone();
        if let Ok(Ok(jobs)) = tokio::task::spawn_blocking(move || engine.list()).await {
            let mut counts: Vec<(String, u64)> = Vec::new();
            for status in [
                JobStatus::Ready,
                JobStatus::Running,
                JobStatus::Succeed,
                JobStatus::Error,
                JobStatus::Stopped,
                JobStatus::Discarded,
            ] {
                let n = jobs.iter().filter(|j| j.status == status).count() as u64;
                counts.push((status.to_string(), n));
            }
            let refs: Vec<(&str, u64)> = counts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
            metrics::global().set_job_counts(&refs);
        }
    }
}

/// Renews (or contends for) the lease every third of its TTL, for as long as the task lives.
pub async fn renew_forever(lease: Arc<Lease>) {
    let mut was_held = None;
    loop {
        let l = lease.clone();
        let held = match tokio::task::spawn_blocking(move || l.tick()).await {
            Ok(Ok(held)) => held,
            Ok(Err(e)) => {
                log::warn!("job-engine lease: {e}");
                lease.epoch().is_some()
            }
            Err(_) => false,
        };
        metrics::global().set_lease_held(held);
        if let Some(epoch) = lease.epoch() {
            metrics::global().set_lease_epoch(epoch);
        }
        if was_held != Some(held) {
            if held {
                log::info!(
                    "job engine active (lease epoch {})",
                    lease.epoch().unwrap_or(0)
                );
            } else {
                log::info!("job engine on standby (another process holds the lease)");
            }
            was_held = Some(held);
        }
        tokio::time::sleep(lease.renew_period()).await;
    }
}
