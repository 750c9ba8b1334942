//! The job-engine lease: exactly one process runs jobs against a metadata store.
//!
//! The lease is the resource [`LEASE_PATH`]: holder, epoch, time to live. Every write is a
//! check-and-put on the version read before, so two contenders never both win.
//! - The holder renews it every third of the TTL. It considers itself the holder only until
//!   (start of its last successful renewal + 4/5 of the TTL) on its own monotonic clock, and a
//!   job engine checks that before each of its writes ([`Lease::check`]), so a holder that was
//!   paused or cut off stops before a successor can have taken over.
//! - A standby watches the record's version with its own monotonic clock and takes over when
//!   it has not changed for a whole TTL (no wall-clock comparison between hosts), or at once
//!   when the holder was released or is a dead process on this host.
//! - Each takeover increments the epoch; segment commits carry it (see
//!   `qilin_jobs::JobEngine`), so a paused old holder can never commit over its successor's
//!   work.
//!
//! Hand-written on purpose: a cluster has no coordinator besides its metadata store (no
//! ZooKeeper or etcd to take a lease library from), and the store's check-and-put is all a
//! lease needs.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use qilin_engine::error::{Error, Result};
use qilin_engine::metadata::managers::Metadata;
use qilin_engine::model::now_ms;
use serde::{Deserialize, Serialize};

use crate::liveness::{current_runner, is_alive, Runner};

/// Where the lease lives in the metadata store.
pub const LEASE_PATH: &str = "/lease/job_engine.json";

/// The stored lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The holding process.
    pub holder: Runner,
    /// Unique per lease instance (a process may hold it, lose it and take it again).
    pub holder_id: String,
    pub epoch: u64,
    pub ttl_ms: u64,
    /// Wall-clock time of the last renewal, for people (expiry never compares clocks).
    pub renewed_ms: i64,
    /// Given up on purpose (clean shutdown): a standby may take over at once.
    #[serde(default)]
    pub released: bool,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: u64,
    version: u64,
    valid_until: Instant,
}

#[derive(Debug, Default)]
struct State {
    held: Option<Held>,
    /// A standby's observation: the record's version and when it was first seen.
    watch: Option<(u64, Instant)>,
}

/// One contender for the job-engine lease.
#[derive(Debug)]
pub struct Lease {
    meta: Metadata,
    me: Runner,
    id: String,
    ttl: Duration,
    orphan_timeout_seconds: u64,
    state: Mutex<State>,
}

impl Lease {
    pub fn new(meta: Metadata, ttl: Duration, orphan_timeout_seconds: u64) -> Lease {
        Lease {
            meta,
            me: current_runner(),
            id: uuid::Uuid::new_v4().to_string(),
            ttl,
            orphan_timeout_seconds,
            state: Mutex::new(State::default()),
        }
    }

    /// How often [`Lease::tick`] should run.
    pub fn renew_period(&self) -> Duration {
        self.ttl / 3
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lease epoch while this instance holds a valid lease.
    pub fn epoch(&self) -> Option<u64> {
        let st = self.state();
        st.held
            .filter(|h| Instant::now() < h.valid_until)
            .map(|h| h.epoch)
    }

    /// Ok(epoch) while the lease is held and not expired by this instance's own clock; an
    /// error naming the loss otherwise. Job engines call it before every write.
    pub fn check(&self) -> Result<u64> {
        self.epoch().ok_or_else(|| {
            Error::Refused(
                "this job engine does not hold the job-engine lease (lost or expired)".into(),
            )
        })
    }

    /// The lease record and its version, if any.
    pub fn read(meta: &Metadata) -> Result<Option<(LeaseRecord, u64)>> {
        meta.get_json::<LeaseRecord>(LEASE_PATH)
    }

    /// Whether another live process holds the lease right now, as far as this host can tell:
    /// a holder on this host must be a live process; one elsewhere must have renewed within
    /// its TTL (by the wall clock: good enough to decide whether to hand a job over).
    pub fn held_elsewhere(meta: &Metadata) -> Result<bool> {
        let me = current_runner();
        Ok(match Self::read(meta)? {
            None => false,
            Some((r, _)) if r.released => false,
            Some((r, _)) if r.holder.host == me.host => {
                r.holder.pid != me.pid && is_alive(&r.holder, 0)
            }
            Some((r, _)) => now_ms() - r.renewed_ms < r.ttl_ms as i64,
        })
    }

    fn record(&self, epoch: u64) -> LeaseRecord {
        LeaseRecord {
            holder: Runner {
                heartbeat_ms: now_ms(),
                ..self.me.clone()
            },
            holder_id: self.id.clone(),
            epoch,
            ttl_ms: self.ttl.as_millis() as u64,
            renewed_ms: now_ms(),
            released: false,
        }
    }

    /// Renews the lease when held, otherwise tries to take it. Returns whether this instance
    /// holds it afterwards. Store errors while holding do not drop the lease at once: it
    /// stays valid until its local deadline, and a later tick may still renew it.
    pub fn tick(&self) -> Result<bool> {
        let held = self.state().held;
        match held {
            Some(h) => self.renew(h),
            None => self.try_take(),
        }
    }

    fn renew(&self, h: Held) -> Result<bool> {
        let started = Instant::now();
        match self
            .meta
            .put_json(LEASE_PATH, &self.record(h.epoch), Some(h.version))
        {
            Ok(version) => {
                self.state().held = Some(Held {
                    epoch: h.epoch,
                    version,
                    valid_until: started + self.ttl * 4 / 5,
                });
                Ok(true)
            }
            Err(Error::Conflict { .. }) => {
                log::warn!("job-engine lease (epoch {}) was taken over", h.epoch);
                self.state().held = None;
                Ok(false)
            }
            Err(e) => {
                let mut st = self.state();
                if Instant::now() >= h.valid_until {
                    log::warn!("job-engine lease (epoch {}) expired: {e}", h.epoch);
                    st.held = None;
                    return Ok(false);
                }
                Err(e)
            }
        }
    }

    fn try_take(&self) -> Result<bool> {
        let current = Self::read(&self.meta)?;
        let (expected, epoch) = match &current {
            None => (None, 1),
            Some((r, v)) => {
                let free = r.released
                    || r.holder_id == self.id
                    || (r.holder.host == self.me.host
                        && !is_alive(&r.holder, self.orphan_timeout_seconds));
                if !free {
                    let mut st = self.state();
                    match st.watch {
                        Some((seen, since)) if seen == *v => {
                            if since.elapsed() < self.ttl {
                                return Ok(false);
                            }
                            log::warn!(
                                "job-engine lease of pid {} on {} not renewed for {:?}: taking over",
                                r.holder.pid,
                                r.holder.host,
                                self.ttl
                            );
                        }
                        _ => {
                            st.watch = Some((*v, Instant::now()));
                            return Ok(false);
                        }
                    }
                }
                (Some(*v), r.epoch + 1)
            }
        };
        let started = Instant::now();
        match self
            .meta
            .put_json(LEASE_PATH, &self.record(epoch), expected)
        {
            Ok(version) => {
                let mut st = self.state();
                st.held = Some(Held {
                    epoch,
                    version,
                    valid_until: started + self.ttl * 4 / 5,
                });
                st.watch = None;
                log::info!("holding the job-engine lease (epoch {epoch})");
                Ok(true)
            }
            Err(Error::Conflict { .. }) => {
                self.state().watch = None;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (clean shutdown), so a standby takes over without waiting.
    pub fn release(&self) {
        let held = self.state().held.take();
        if let Some(h) = held {
            let mut rec = self.record(h.epoch);
            rec.released = true;
            if let Err(e) = self.meta.put_json(LEASE_PATH, &rec, Some(h.version)) {
                log::warn!("could not release the job-engine lease: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qilin_engine::metadata::LocalResourceStore;
    use std::sync::Arc;

    fn meta(dir: &std::path::Path) -> Metadata {
        Metadata::new(Arc::new(LocalResourceStore::open(dir).unwrap()))
    }

    #[test]
    fn one_holder_and_takeover_after_the_ttl_or_release() {
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_millis(300);
        let a = Lease::new(meta(dir.path()), ttl, 60);
        let b = Lease::new(meta(dir.path()), ttl, 60);
        assert!(a.tick().unwrap());
        assert_eq!(a.check().unwrap(), 1);
        assert!(!b.tick().unwrap(), "held by a, freshly renewed");
        assert!(b.check().is_err());
        // a keeps renewing: b never gets it.
        for _ in 0..4 {
            std::thread::sleep(ttl / 3);
            assert!(a.tick().unwrap());
            assert!(!b.tick().unwrap());
        }
        // a stops renewing (paused): its own view expires first, then b takes over.
        std::thread::sleep(ttl * 4 / 5);
        assert!(
            a.check().is_err(),
            "a no longer believes it holds the lease"
        );
        let deadline = Instant::now() + ttl * 3;
        while !b.tick().unwrap() {
            assert!(Instant::now() < deadline, "b never took over");
            std::thread::sleep(ttl / 10);
        }
        assert_eq!(b.check().unwrap(), 2, "a takeover bumps the epoch");
        // a resumes: its renewal conflicts and it knows it lost.
        assert!(!a.tick().unwrap());
        assert!(a.check().is_err());
        // A clean release lets a standby in without waiting.
        b.release();
        assert!(a.tick().unwrap());
        assert_eq!(a.check().unwrap(), 3);
    }
}
