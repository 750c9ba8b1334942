//! The job engine: submits build, merge and refresh jobs, runs them, and recovers jobs left
//! RUNNING by a process that died.
//!
//! Safety rests on two rules. (1) A segment is created NEW at submission and turns READY only
//! by a check-and-put on the cube instance after all its blocks are durable; queries read only
//! READY segments. (2) Every job update checks that the job is still RUNNING and owned by this
//! process; a discarded or taken-over job stops at its next progress report and never commits.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qilin_cluster::lease::Lease;
use qilin_cluster::liveness::{self, is_alive};
use qilin_engine::build::progress::{Phase, Tracker};
use qilin_engine::build::spill::SpillOptions;
use qilin_engine::build::{self, BuildOptions, Progress};
use qilin_engine::config::Config;
use qilin_engine::error::{Error, Result};
use qilin_engine::metadata::managers::{job_path, Metadata};
use qilin_engine::model::auto_merge::{plan_auto_merge, validate_auto_merge};
use qilin_engine::model::{
    descriptor_signature, now_ms, segment_name, CubeInstance, CuboidStats, LookupSnapshot, Segment,
    SegmentRange, SegmentStatus,
};
use qilin_engine::storage::SegmentStore;

use crate::job::{Job, JobKind, JobStatus, Runner};

mod optimize;

/// Called with the job after every recorded change (for progress bars and logs).
pub type Observer = Arc<dyn Fn(&Job) + Send + Sync>;

/// What `submit_build` did.
#[derive(Debug, Clone)]
pub enum Submitted {
    New(Job),
    /// The same range was already being built by a job whose process is gone: run it again.
    Resume(Job),
}

impl Submitted {
    pub fn job(&self) -> &Job {
        match self {
            Submitted::New(j) | Submitted::Resume(j) => j,
        }
    }
}

#[derive(Clone)]
pub struct JobEngine {
    meta: Metadata,
    store: Arc<dyn SegmentStore>,
    config: Config,
    /// The job-engine lease this engine runs jobs under (cluster mode and the CLI); every
    /// write of a running job checks it first, and commits carry its epoch.
    lease: Option<Arc<Lease>>,
}

impl JobEngine {
    pub fn new(meta: Metadata, store: Arc<dyn SegmentStore>, config: Config) -> Self {
        JobEngine {
            meta,
            store,
            config,
            lease: None,
        }
    }

    /// The same engine, running jobs only while holding `lease`.
    pub fn with_lease(mut self, lease: Arc<Lease>) -> Self {
        self.lease = Some(lease);
        self
    }

    /// The same engine without a lease: for writes any process may make (submit, discard,
    /// resume), which must not depend on holding the job-engine lease.
    pub fn without_lease(mut self) -> Self {
        self.lease = None;
        self
    }

    pub fn lease(&self) -> Option<&Arc<Lease>> {
        self.lease.as_ref()
    }

    /// The lease epoch to run under: `Ok(None)` without a lease, an error when the lease is
    /// not (or no longer) held.
    fn lease_epoch(&self, job: &str) -> Result<Option<u64>> {
        match &self.lease {
            None => Ok(None),
            Some(l) => l.check().map(Some).map_err(|e| Error::JobStopped {
                job: job.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    pub fn segment_store(&self) -> &Arc<dyn SegmentStore> {
        &self.store
    }

    pub fn get(&self, id: &str) -> Result<Job> {
        validate_job_id(id)?;
        self.meta
            .get_json::<Job>(&job_path(id))?
            .map(|(j, _)| j)
            .ok_or_else(|| Error::NotFound {
                kind: "job",
                name: id.to_string(),
            })
    }

    /// All jobs, oldest first.
    pub fn list(&self) -> Result<Vec<Job>> {
        let mut jobs = Vec::new();
        for p in self.meta.store().list("/execute")? {
            if let Some((j, _)) = self.meta.get_json::<Job>(&p)? {
                jobs.push(j);
            }
        }
        jobs.sort_by_key(|j| j.created_ms);
        Ok(jobs)
    }

    /// Whether a job can be (re)started by this process: never started, or left RUNNING or
    /// STOPPED by a process that is gone.
    pub fn is_resumable(&self, job: &Job) -> bool {
        match job.status {
            JobStatus::Ready | JobStatus::Stopped => true,
            JobStatus::Running => match &job.runner {
                // Only the lease holder runs jobs: under a held lease, a job RUNNING in any
                // other process is an orphan, even if that process lives (a paused old
                // holder is fenced off by the epoch).
                Some(r) if self.lease.as_ref().is_some_and(|l| l.epoch().is_some()) => {
                    let me = liveness::current_runner();
                    (r.host.as_str(), r.pid, r.start_ticks)
                        != (me.host.as_str(), me.pid, me.start_ticks)
                        || !is_alive(r, self.config.jobs.orphan_timeout_seconds)
                }
                Some(r) => !is_alive(r, self.config.jobs.orphan_timeout_seconds),
                None => true,
            },
            _ => false,
        }
    }

    /// Jobs that no live process is running and that can be resumed.
    pub fn orphans(&self) -> Result<Vec<Job>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|j| self.is_resumable(j))
            .collect())
    }

    /// The signature of the cube's current layout (see [`descriptor_signature`]).
    pub fn current_signature(&self, cube: &str) -> Result<String> {
        let layout = self
            .meta
            .cube_layout(cube, self.config.cube.max_cuboids_per_group)?;
        Ok(descriptor_signature(&layout))
    }

    /// The cube's READY segments built under an earlier descriptor: queries skip them until
    /// a refresh rebuilds them under the current one.
    pub fn stale_segments(&self, cube: &str) -> Result<Vec<Segment>> {
        let signature = self.current_signature(cube)?;
        let (inst, _) = self.meta.cube_instance(cube)?;
        Ok(inst
            .ready_segments()
            .filter(|s| !s.built_under(&signature))
            .cloned()
            .collect())
    }

    fn require_range(
        &self,
        cube: &str,
        range: Option<SegmentRange>,
    ) -> Result<Option<SegmentRange>> {
        let layout = self
            .meta
            .cube_layout(cube, self.config.cube.max_cuboids_per_group)?;
        match (&layout.partition, range) {
            (Some(p), None) => Err(Error::Refused(format!(
                "cube {cube} is partitioned on {}: give the segment's start and end",
                p.column.column
            ))),
            (None, Some(_)) => Err(Error::Refused(format!(
                "cube {cube}'s model has no partition column: build it without a range"
            ))),
            (_, r) => Ok(r),
        }
    }

    /// Submits a build of `range`. Refused when it overlaps an existing segment, except that
    /// a build of exactly this range abandoned by a dead process is handed back for resuming.
    pub fn submit_build(&self, cube: &str, range: Option<SegmentRange>) -> Result<Submitted> {
        let range = self.require_range(cube, range)?;
        let (inst, _) = self.meta.cube_instance(cube)?;
        for s in inst.segments.iter().filter(|s| s.overlaps(range.as_ref())) {
            if s.status == SegmentStatus::New && s.range == range && s.replaces.is_empty() {
                if let Some(job) = s.job_id.as_deref().and_then(|id| self.get(id).ok()) {
                    if self.is_resumable(&job) {
                        return Ok(Submitted::Resume(job));
                    }
                }
            }
        }
        let seg_id = uuid::Uuid::new_v4().to_string();
        let job = Job::new(
            JobKind::Build,
            cube,
            &seg_id,
            &segment_name(range.as_ref()),
            range,
        );
        self.add_segment(&job, vec![], self.current_signature(cube)?)?;
        Ok(Submitted::New(job))
    }

    /// Submits a merge of the READY segments inside `range` (at least two, contiguous).
    pub fn submit_merge(&self, cube: &str, range: SegmentRange) -> Result<Job> {
        self.merge_job(cube, range, None)
    }

    /// Submits the merge that the cube's `auto_merge_time_ranges` ask for now, if any (the
    /// rule is in [`qilin_engine::model::auto_merge`]); `after` is the job whose commit
    /// triggered the check. Segments already being merged or refreshed are never planned
    /// again, and a concurrent submission of the same merge is refused by the cube's
    /// check-and-put.
    pub fn submit_auto_merge(&self, cube: &str, after: Option<&str>) -> Result<Option<Job>> {
        let desc = self.meta.cube_desc(cube)?;
        if desc.auto_merge_time_ranges.is_empty() {
            return Ok(None);
        }
        validate_auto_merge(cube, &desc.auto_merge_time_ranges)?;
        let (inst, _) = self.meta.cube_instance(cube)?;
        match plan_auto_merge(&inst.segments, &desc.auto_merge_time_ranges) {
            Some(range) => self.merge_job(cube, range, after).map(Some),
            None => Ok(None),
        }
    }

    /// Auto-merge jobs submitted after `job` committed that are still waiting to run.
    pub fn auto_merges_after(&self, job: &str) -> Result<Vec<Job>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|j| j.triggered_by.as_deref() == Some(job) && j.status == JobStatus::Ready)
            .collect())
    }

    /// Runs, in this process, the auto-merge jobs that `job`'s commit submitted and those
    /// that their commits submitted in turn (daily segments make a week, weeks make a
    /// month). Returns each merge's id and outcome; a failed merge leaves its segments as
    /// they were and does not undo `job`.
    pub async fn run_auto_merges(
        &self,
        job: &Job,
        observer: Observer,
    ) -> Vec<(String, Result<Job>)> {
        let mut outcomes = Vec::new();
        let mut queue = vec![job.id.clone()];
        while let Some(after) = queue.pop() {
            let merges = match self.auto_merges_after(&after) {
                Ok(m) => m,
                Err(e) => {
                    outcomes.push((after, Err(e)));
                    continue;
                }
            };
            for merge in merges {
                let outcome = self.run(&merge.id, observer.clone()).await;
                if outcome.is_ok() {
                    queue.push(merge.id.clone());
                }
                outcomes.push((merge.id, outcome));
            }
        }
        outcomes
    }

    fn merge_job(&self, cube: &str, range: SegmentRange, after: Option<&str>) -> Result<Job> {
        self.require_range(cube, Some(range))?;
        let (inst, _) = self.meta.cube_instance(cube)?;
        let inside: Vec<&Segment> = inst
            .segments
            .iter()
            .filter(|s| {
                s.range
                    .map(|r| r.start >= range.start && r.end <= range.end)
                    .unwrap_or(false)
            })
            .collect();
        if let Some(s) = inside.iter().find(|s| s.status != SegmentStatus::Ready) {
            return Err(Error::Busy(format!(
                "segment {} is still being built; merge after it is READY",
                s.name
            )));
        }
        let signature = self.current_signature(cube)?;
        let stale: Vec<&str> = inside
            .iter()
            .filter(|s| !s.built_under(&signature))
            .map(|s| s.name.as_str())
            .collect();
        if !stale.is_empty() {
            return Err(Error::Refused(format!(
                "segment(s) {} of cube {cube} were built under an earlier descriptor; \
                 refresh them before merging",
                stale.join(", ")
            )));
        }
        if inside.len() < 2 {
            return Err(Error::Refused(format!(
                "merge needs at least two READY segments inside [{}, {}); found {}",
                range.start,
                range.end,
                inside.len()
            )));
        }
        for w in inside.windows(2) {
            let (a, b) = (
                w[0].range.expect("partitioned"),
                w[1].range.expect("partitioned"),
            );
            if a.end != b.start {
                return Err(Error::Refused(format!(
                    "segments {} and {} are not adjacent (gap from {} to {})",
                    w[0].name, w[1].name, a.end, b.start
                )));
            }
        }
        let merged = SegmentRange::new(
            inside[0].range.expect("partitioned").start,
            inside[inside.len() - 1].range.expect("partitioned").end,
        )?;
        let seg_id = uuid::Uuid::new_v4().to_string();
        let mut job = Job::new(
            JobKind::Merge,
            cube,
            &seg_id,
            &segment_name(Some(&merged)),
            Some(merged),
        );
        job.replaces = inside.iter().map(|s| s.id.clone()).collect();
        job.triggered_by = after.map(str::to_string);
        self.add_segment(&job, job.replaces.clone(), signature)?;
        Ok(job)
    }

    /// After `done` committed its segment: submits the auto-merge its cube asks for now, if
    /// any. Never fails the job that committed; a merge that cannot be submitted is logged.
    fn auto_merge_after(&self, done: &Job) {
        match self.submit_auto_merge(&done.cube, Some(&done.id)) {
            Ok(Some(m)) => log::info!(
                "job {}: cube {} auto-merge job {} submitted (segment {})",
                done.id,
                done.cube,
                m.id,
                m.segment_name
            ),
            Ok(None) => {}
            // Another process submitted an overlapping merge first: nothing to do.
            Err(Error::Refused(msg) | Error::Busy(msg)) => {
                log::info!(
                    "job {}: cube {} auto-merge skipped: {msg}",
                    done.id,
                    done.cube
                )
            }
            Err(e) => log::warn!(
                "job {}: cube {} auto-merge not submitted: {e}",
                done.id,
                done.cube
            ),
        }
    }

    /// Submits a rebuild of one READY segment from source; the new segment replaces it
    /// atomically when it commits.
    pub fn submit_refresh(&self, cube: &str, segment: &str) -> Result<Job> {
        let (inst, _) = self.meta.cube_instance(cube)?;
        let old = inst.segment(segment).ok_or_else(|| Error::NotFound {
            kind: "segment",
            name: format!("{segment} of cube {cube}"),
        })?;
        if old.status != SegmentStatus::Ready {
            return Err(Error::Refused(format!(
                "segment {} is not READY; only READY segments can be refreshed",
                old.name
            )));
        }
        let seg_id = uuid::Uuid::new_v4().to_string();
        let mut job = Job::new(JobKind::Refresh, cube, &seg_id, &old.name, old.range);
        job.replaces = vec![old.id.clone()];
        self.add_segment(&job, job.replaces.clone(), self.current_signature(cube)?)?;
        Ok(job)
    }

    /// Records the job, then adds its NEW segment — refused ([`Error::Busy`]: a conflict with
    /// the cube's segments) if it overlaps a segment other than those it replaces, or if one it
    /// replaces is already being replaced.
    /// `signature` is the layout's at submission; the commit records the one the job built
    /// under.
    fn add_segment(&self, job: &Job, replaces: Vec<String>, signature: String) -> Result<()> {
        self.meta.put_json(&job_path(&job.id), job, None)?;
        let added = self.add_new_segment(job, replaces, signature);
        if let Err(e) = added {
            // The refused job never had a segment: leave no record of it behind.
            let _ = self.meta.store().check_and_delete(&job_path(&job.id), None);
            return Err(e);
        }
        Ok(())
    }

    /// Adds `job`'s NEW segment to its cube (see [`Self::add_segment`]).
    fn add_new_segment(&self, job: &Job, replaces: Vec<String>, signature: String) -> Result<()> {
        let added = self.meta.update_cube(&job.cube, |inst: &mut CubeInstance| {
            for s in &inst.segments {
                if replaces.contains(&s.id) {
                    continue;
                }
                if s.status == SegmentStatus::New && s.replaces.iter().any(|r| replaces.contains(r))
                {
                    return Err(Error::Busy(format!(
                        "segment {} is already being replaced by job {}",
                        s.name,
                        s.job_id.as_deref().unwrap_or("?")
                    )));
                }
                if s.overlaps(job.range.as_ref())
                    && !s.replaces.iter().any(|r| replaces.contains(r))
                {
                    return Err(Error::Busy(format!(
                        "segment {} overlaps existing segment {} ({:?}{})",
                        job.segment_name,
                        s.name,
                        s.status,
                        s.job_id
                            .as_deref()
                            .map(|j| format!(", job {j}"))
                            .unwrap_or_default()
                    )));
                }
            }
            inst.segments.push(Segment {
                id: job.segment_id.clone(),
                name: job.segment_name.clone(),
                range: job.range,
                status: SegmentStatus::New,
                job_id: Some(job.id.clone()),
                replaces: replaces.clone(),
                created_ms: now_ms(),
                ready_ms: None,
                source_rows: 0,
                size_bytes: 0,
                cuboids: vec![],
                descriptor_signature: Some(signature.clone()),
                snapshots: vec![],
                table_index: None,
            });
            Ok(())
        });
        added.map(|_| ())
    }

    /// Read-modify-write of a job. With `owner`, refuses (JobStopped) when the job is no longer
    /// RUNNING under that runner: the job was discarded or taken over.
    fn update_job(
        &self,
        id: &str,
        owner: Option<&Runner>,
        mut f: impl FnMut(&mut Job) -> Result<()>,
    ) -> Result<Job> {
        let path = job_path(id);
        self.lease_epoch(id)?;
        self.meta
            .update_json::<Job, Job>(&path, |cur| {
                let mut j = cur.ok_or_else(|| Error::NotFound {
                    kind: "job",
                    name: id.to_string(),
                })?;
                if let Some(me) = owner {
                    if !runs_it(&j, me) {
                        return Err(Error::JobStopped {
                            job: id.to_string(),
                            reason: format!(
                                "it is now {} (discarded or taken over by another process)",
                                j.status
                            ),
                        });
                    }
                }
                f(&mut j)?;
                j.updated_ms = now_ms();
                Ok((j.clone(), j))
            })
            .map(|(j, _)| j)
    }

    /// Discards a job that has not succeeded: its segment is removed and its data deleted. A
    /// live runner notices at its next progress report and stops without committing. Any
    /// process may discard (it only writes the store); a failed (ERROR) job can be discarded
    /// too, which gives it up for good.
    pub fn discard(&self, id: &str) -> Result<Job> {
        let job = self.update_job(id, None, |j| {
            if matches!(j.status, JobStatus::Succeed | JobStatus::Discarded) {
                return Err(Error::Busy(format!(
                    "job {} is already {}; only unfinished or failed jobs can be discarded",
                    j.id, j.status
                )));
            }
            j.status = JobStatus::Discarded;
            j.ended_ms = Some(now_ms());
            Ok(())
        })?;
        self.drop_new_segment(&job)?;
        Ok(job)
    }

    /// Whether a user may resume the job: it failed (ERROR), was stopped, or was left
    /// RUNNING by a process that is gone. A job waiting to run (READY) needs no resume.
    pub fn can_resume(&self, job: &Job) -> bool {
        match job.status {
            JobStatus::Error | JobStatus::Stopped => true,
            JobStatus::Running => self.is_resumable(job),
            _ => false,
        }
    }

    /// Hands a failed, stopped or abandoned job back to the job engine: it becomes READY
    /// (waiting) and the cluster's job daemon runs it from the start — whichever process
    /// calls this (it only writes the store). A failed job left no segment behind: its NEW
    /// segment is added again first, refused ([`Error::Busy`]) when its range has been built
    /// or taken since, or when a segment a merge or refresh replaces is gone.
    pub fn resume(&self, id: &str) -> Result<Job> {
        let job = self.get(id)?;
        if !self.can_resume(&job) {
            return Err(Error::Busy(format!(
                "job {} is {}; only failed, stopped or abandoned jobs can be resumed",
                job.id,
                if job.status == JobStatus::Running {
                    "RUNNING in a live process".to_string()
                } else {
                    job.status.to_string()
                }
            )));
        }
        if job.status == JobStatus::Error {
            let (inst, _) = self.meta.cube_instance(&job.cube)?;
            if let Some(gone) = job.replaces.iter().find(|r| {
                !inst
                    .segments
                    .iter()
                    .any(|s| &s.id == *r && s.status == SegmentStatus::Ready)
            }) {
                return Err(Error::Busy(format!(
                    "job {}: segment {gone} it replaces is no longer READY in cube {}; submit a new job",
                    job.id, job.cube
                )));
            }
            // An optimize job has no segment of its own.
            if job.kind != JobKind::Optimize
                && !inst.segments.iter().any(|s| s.id == job.segment_id)
            {
                self.add_new_segment(
                    &job,
                    job.replaces.clone(),
                    self.current_signature(&job.cube)?,
                )?;
            }
        }
        let expected = job.status;
        let resumed = self.update_job(id, None, |j| {
            // Unchanged since we looked: not claimed by a job engine in between.
            if j.status != expected || j.runner != job.runner {
                return Err(Error::Busy(format!(
                    "job {} changed to {} meanwhile; not resumed",
                    j.id, j.status
                )));
            }
            j.status = JobStatus::Ready;
            j.runner = None;
            j.error = None;
            j.ended_ms = None;
            j.progress = 0.0;
            j.message = "resumed; waiting for the job engine".into();
            for s in &mut j.steps {
                if s.status != JobStatus::Succeed {
                    s.status = JobStatus::Ready;
                }
            }
            Ok(())
        });
        if resumed.is_err() && expected == JobStatus::Error {
            let _ = self.drop_new_segment(&job);
        }
        resumed
    }

    /// Records who submitted the job (the REST API's caller).
    pub fn set_submitter(&self, id: &str, user: &str) -> Result<Job> {
        self.update_job(id, None, |j| {
            j.submitter = Some(user.to_string());
            Ok(())
        })
    }

    /// Removes the job's NEW segment from the cube and deletes its stored data. Data of a
    /// segment the cube lists as READY is never deleted here: with a remote store a commit
    /// can succeed while its caller sees an error (the connection broke after the write).
    fn drop_new_segment(&self, job: &Job) -> Result<()> {
        let committed = self.meta.update_cube(&job.cube, |inst| {
            inst.segments
                .retain(|s| !(s.id == job.segment_id && s.status == SegmentStatus::New));
            Ok(inst.segments.iter().any(|s| s.id == job.segment_id))
        })?;
        if committed {
            log::warn!(
                "job {}: segment {} is READY in cube {}; keeping its data",
                job.id,
                job.segment_id,
                job.cube
            );
            return Ok(());
        }
        self.store.delete_segment(&job.segment_id)
    }

    /// Makes the claimed job's NEW segment this attempt's own: raises the cube's fence epoch
    /// to this engine's lease epoch and, on a resumed attempt, gives the segment a fresh id, so
    /// whatever an earlier attempt (possibly still running somewhere, paused) writes or
    /// commits can never mix with this one. Returns `None` when an earlier attempt already
    /// committed the segment.
    fn take_segment(&self, job: &Job) -> Result<Option<Job>> {
        let epoch = self.lease_epoch(&job.id)?;
        if job.kind == JobKind::Optimize {
            // No segment of its own: only raise the fence (its commit checks it).
            self.meta.update_cube(&job.cube, |inst| {
                if let Some(e) = epoch {
                    check_fence(inst, e, &job.id)?;
                    inst.fence_epoch = e;
                }
                Ok(())
            })?;
            return Ok(Some(job.clone()));
        }
        let fresh = if job.attempts > 1 {
            uuid::Uuid::new_v4().to_string()
        } else {
            job.segment_id.clone()
        };
        let outcome = self.meta.update_cube(&job.cube, |inst| {
            if let Some(e) = epoch {
                check_fence(inst, e, &job.id)?;
                inst.fence_epoch = e;
            }
            let mine = |s: &Segment| {
                s.job_id.as_deref() == Some(job.id.as_str()) || s.id == job.segment_id
            };
            if inst
                .segments
                .iter()
                .any(|s| mine(s) && s.status == SegmentStatus::Ready)
            {
                return Ok(None);
            }
            let seg = inst
                .segments
                .iter_mut()
                .find(|s| mine(s) && s.status == SegmentStatus::New)
                .ok_or_else(|| Error::JobStopped {
                    job: job.id.clone(),
                    reason: format!("segment {} is no longer in the cube", job.segment_name),
                })?;
            let old = std::mem::replace(&mut seg.id, fresh.clone());
            seg.job_id = Some(job.id.clone());
            Ok(Some(old))
        })?;
        let Some(old) = outcome else {
            return Ok(None);
        };
        if old == fresh {
            return Ok(Some(job.clone()));
        }
        let updated = self.update_job(&job.id, None, |j| {
            j.segment_id = fresh.clone();
            Ok(())
        })?;
        // Best effort: an earlier attempt's blocks are garbage now.
        if let Err(e) = self.store.delete_segment(&old) {
            log::warn!(
                "job {}: could not delete earlier attempt's data {old}: {e}",
                job.id
            );
        }
        Ok(Some(updated))
    }

    /// Records the job as SUCCEED (still owned by `me`).
    fn succeed(&self, id: &str, me: &Runner, message: &str, observer: &Observer) -> Result<Job> {
        let done = self.update_job(id, Some(me), |j| {
            j.status = JobStatus::Succeed;
            // Every step is done, the last one included (nothing else marks it).
            for s in &mut j.steps {
                s.status = JobStatus::Succeed;
            }
            j.progress = 1.0;
            j.message = message.to_string();
            j.ended_ms = Some(now_ms());
            Ok(())
        })?;
        observer(&done);
        Ok(done)
    }

    /// Runs (or resumes) a job to completion in this process.
    pub async fn run(&self, id: &str, observer: Observer) -> Result<Job> {
        let me = liveness::current_runner();
        let claimed = self.update_job(id, None, |j| {
            if !self.is_resumable(j) {
                return Err(Error::Refused(format!(
                    "job {} is {}{}; it cannot be started",
                    j.id,
                    j.status,
                    j.runner
                        .as_ref()
                        .map(|r| format!(" (run by pid {} on {})", r.pid, r.host))
                        .unwrap_or_default()
                )));
            }
            j.status = JobStatus::Running;
            j.runner = Some(me.clone());
            // Every attempt rebuilds the segment from the start (`execute`), so its progress
            // starts from 0 too; within the attempt it only rises.
            j.progress = 0.0;
            j.message.clear();
            j.attempts += 1;
            j.started_ms.get_or_insert(now_ms());
            j.error = None;
            for s in &mut j.steps {
                if s.status != JobStatus::Succeed {
                    s.status = JobStatus::Ready;
                }
            }
            Ok(())
        })?;
        observer(&claimed);
        let outcome = match self.take_segment(&claimed) {
            Ok(Some(job)) => {
                let heartbeat = self.spawn_heartbeat(id, &me);
                let outcome = self.execute(&job, &me, observer.clone()).await;
                heartbeat.abort();
                outcome
            }
            // An earlier attempt committed the segment before its process went away.
            Ok(None) => {
                let done =
                    self.succeed(id, &me, "done (committed by an earlier attempt)", &observer)?;
                self.auto_merge_after(&done);
                return Ok(done);
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {
                let done = self.succeed(id, &me, "done", &observer)?;
                // As Kylin on a new READY segment: retention (in `execute`), then auto-merge.
                self.auto_merge_after(&done);
                Ok(done)
            }
            Err(e) => {
                self.record_failure(id, &me, &e, &observer);
                Err(e)
            }
        }
    }

    /// After a failed attempt: when the job is still this runner's, removes its NEW segment
    /// and then records the job as ERROR. The order matters: whoever sees ERROR (and may
    /// resume the job at once) must find the segment already gone, or the late removal would
    /// take away the segment the resumed attempt needs. A job discarded or taken over meanwhile
    /// is left to its new owner; a job stopped while still ours (its segment vanished) is
    /// recorded as ERROR too, never left RUNNING.
    fn record_failure(&self, id: &str, me: &Runner, e: &Error, observer: &Observer) {
        let Ok(job) = self.get(id) else { return };
        if !runs_it(&job, me) {
            return;
        }
        // A failed build leaves nothing: no segment entry, no files.
        if let Err(drop_err) = self.drop_new_segment(&job) {
            log::warn!("job {id}: could not remove its NEW segment: {drop_err}");
        }
        let msg = e.to_string();
        if let Ok(j) = self.update_job(id, Some(me), |j| {
            j.status = JobStatus::Error;
            j.error = Some(msg.clone());
            j.ended_ms = Some(now_ms());
            let step = j.current_step();
            if let Some(s) = j.steps.get_mut(step) {
                s.status = JobStatus::Error;
            }
            Ok(())
        }) {
            observer(&j);
        }
    }

    async fn execute(&self, job: &Job, me: &Runner, observer: Observer) -> Result<()> {
        if job.kind == JobKind::Optimize {
            return self.execute_optimize(job, me, observer).await;
        }
        let layout = Arc::new(
            self.meta
                .cube_layout(&job.cube, self.config.cube.max_cuboids_per_group)?,
        );
        let signature = descriptor_signature(&layout);
        // Whatever an earlier attempt of this process wrote under this id is incomplete.
        self.store.delete_segment(&job.segment_id)?;
        self.set_step(job, me, 0, &observer)?;

        let progress = self.progress_reporter(job, me, observer.clone());
        let mut opts = build_options(&self.config);
        opts.cluster = self.build_cluster()?;
        let (cuboids, source_rows, snapshots, table_index): (
            Vec<CuboidStats>,
            u64,
            Vec<LookupSnapshot>,
            Option<CuboidStats>,
        ) = match job.kind {
            JobKind::Build | JobKind::Refresh => {
                let out = build::build_segment(
                    layout.clone(),
                    &opts,
                    self.store.clone(),
                    &job.segment_id,
                    job.range,
                    progress,
                )
                .await?;
                (out.cuboids, out.source_rows, out.snapshots, out.table_index)
            }
            JobKind::Optimize => {
                return Err(Error::Refused(format!(
                    "job {}: an optimize job creates no segment",
                    job.id
                )))
            }
            JobKind::Merge => {
                let (inst, _) = self.meta.cube_instance(&job.cube)?;
                // The descriptor may have changed since submission: merging segments of
                // another layout would mix their cuboids.
                let stale: Vec<&str> = inst
                    .segments
                    .iter()
                    .filter(|s| job.replaces.contains(&s.id) && !s.built_under(&signature))
                    .map(|s| s.name.as_str())
                    .collect();
                if !stale.is_empty() {
                    return Err(Error::Refused(format!(
                        "segment(s) {} of cube {} were built under an earlier descriptor; \
                         refresh them before merging",
                        stale.join(", "),
                        job.cube
                    )));
                }
                let source_rows = inst
                    .segments
                    .iter()
                    .filter(|s| job.replaces.contains(&s.id))
                    .map(|s| s.source_rows)
                    .sum();
                // The merged segment keeps the lookup snapshots of the newest one it
                // replaces (as Kylin does); a segment without snapshots cannot give any.
                let merged: Vec<&Segment> = inst
                    .segments
                    .iter()
                    .filter(|s| job.replaces.contains(&s.id))
                    .collect();
                let newest = merged
                    .iter()
                    .max_by_key(|s| (s.range, s.ready_ms))
                    .map(|s| (s.id.clone(), s.snapshots.clone()));
                if let Some(s) = merged
                    .iter()
                    .find(|s| layout.table_index.is_some() && s.table_index.is_none())
                {
                    return Err(Error::Refused(format!(
                        "segment {} of cube {} has no table index (built before the cube had \
                         one); refresh it before merging",
                        s.name, job.cube
                    )));
                }
                // Segments in range order: the table indexes merge in it.
                let mut sources: Vec<&Segment> = merged.clone();
                sources.sort_by_key(|s| s.range);
                // Cuboids added by the cube planner may be missing from older segments:
                // merge the common ones, then build the rest from the merged segment.
                let stored: Vec<&[CuboidStats]> =
                    sources.iter().map(|s| s.cuboids.as_slice()).collect();
                let (merge_layout, extra) = build::extend::split_for_merge(&layout, &stored);
                let sources: Vec<String> = sources.iter().map(|s| s.id.clone()).collect();
                let (store, target) = (self.store.clone(), job.segment_id.clone());
                let layout = layout.clone();
                let mut phases = vec![Phase::Cuboids];
                if layout.table_index.is_some() {
                    phases.push(Phase::TableIndex);
                }
                let tracker = Tracker::new(progress, &phases);
                let mut stats = build::merge_segments(
                    &merge_layout,
                    &store,
                    &sources,
                    &target,
                    &opts,
                    &tracker.phase(Phase::Cuboids),
                )
                .await?;
                if !extra.is_empty() {
                    let added = build::extend::extend_segment(
                        &layout,
                        &store,
                        &target,
                        &stats,
                        &extra,
                        &opts,
                        &tracker.phase(Phase::Cuboids),
                    )
                    .await?;
                    stats.extend(added);
                    stats.sort_by_key(|st| layout.cuboids.iter().position(|&c| c == st.id));
                }
                let (snapshots, table_index) = tokio::task::spawn_blocking(move || {
                    let snapshots = match &newest {
                        Some((id, snaps)) => {
                            build::stored::copy_snapshots(store.as_ref(), id, snaps, &target)?
                        }
                        None => Vec::new(),
                    };
                    let table_index = build::stored::merge_table_indexes(
                        layout.table_index.as_ref(),
                        store.as_ref(),
                        &sources,
                        &target,
                        opts.block_rows,
                        &tracker.phase(Phase::TableIndex),
                    )?;
                    tracker.report(Phase::TableIndex, 1.0, "merged")?;
                    Ok::<_, Error>((snapshots, table_index))
                })
                .await
                .map_err(|e| Error::Refused(format!("merge task failed: {e}")))??;
                (stats, source_rows, snapshots, table_index)
            }
        };
        self.store.sync_segment(&job.segment_id)?;
        self.set_step(job, me, 1, &observer)?;

        // Commit: the one check-and-put that makes the segment visible, replacing any merged
        // or refreshed segments in the same write.
        let size: u64 = cuboids.iter().map(|c| c.bytes).sum::<u64>()
            + snapshots.iter().map(|s| s.stats.bytes).sum::<u64>()
            + table_index.as_ref().map_or(0, |t| t.bytes);
        self.update_job(&job.id, Some(me), |_| Ok(()))?; // still ours, right before commit
        let epoch = self.lease_epoch(&job.id)?;
        self.meta.update_cube(&job.cube, |inst| {
            if let Some(e) = epoch {
                check_fence(inst, e, &job.id)?;
            }
            let seg = inst
                .segments
                .iter_mut()
                .find(|s| s.id == job.segment_id && s.status == SegmentStatus::New)
                .ok_or_else(|| Error::JobStopped {
                    job: job.id.clone(),
                    reason: format!("segment {} was removed while building", job.segment_name),
                })?;
            seg.status = SegmentStatus::Ready;
            seg.ready_ms = Some(now_ms());
            seg.cuboids = cuboids.clone();
            seg.source_rows = source_rows;
            seg.size_bytes = size;
            seg.descriptor_signature = Some(signature.clone());
            seg.snapshots = snapshots.clone();
            seg.table_index = table_index.clone();
            seg.replaces.clear();
            inst.segments.retain(|s| !job.replaces.contains(&s.id));
            Ok(())
        })?;
        for old in &job.replaces {
            if let Err(e) = self.store.delete_segment(old) {
                log::warn!(
                    "job {}: could not delete replaced segment {old}: {e}",
                    job.id
                );
            }
        }
        self.apply_retention(&job.cube)?;
        if job.steps.len() > 2 {
            self.set_step(job, me, 2, &observer)?;
        }
        Ok(())
    }

    /// Drops READY segments that end more than `retention_range_days` before the newest end,
    /// except those a NEW segment replaces: a pending (auto-)merge or refresh still reads
    /// them, and its own commit applies retention to the result.
    fn apply_retention(&self, cube: &str) -> Result<()> {
        let desc = self.meta.cube_desc(cube)?;
        let Some(days) = desc.retention_range_days else {
            return Ok(());
        };
        let dropped = self.meta.update_cube(cube, |inst| {
            let newest = inst
                .ready_segments()
                .filter_map(|s| s.range.map(|r| r.end))
                .max();
            let Some(newest) = newest else {
                return Ok(Vec::new());
            };
            let cutoff = newest - chrono::Duration::days(days as i64);
            let replaced: Vec<String> = inst
                .segments
                .iter()
                .filter(|s| s.status == SegmentStatus::New)
                .flat_map(|s| s.replaces.iter().cloned())
                .collect();
            let (drop, keep): (Vec<Segment>, Vec<Segment>) =
                inst.segments.drain(..).partition(|s| {
                    s.status == SegmentStatus::Ready
                        && s.range.map(|r| r.end <= cutoff).unwrap_or(false)
                        && !replaced.contains(&s.id)
                });
            inst.segments = keep;
            Ok(drop.into_iter().map(|s| s.id).collect::<Vec<_>>())
        })?;
        for id in dropped {
            self.store.delete_segment(&id)?;
        }
        Ok(())
    }

    /// Records every `kylin.job.heartbeat-seconds` that this process still runs the job, so
    /// a job engine on another host can tell a live build from an abandoned one.
    fn spawn_heartbeat(&self, id: &str, me: &Runner) -> tokio::task::JoinHandle<()> {
        let (engine, id, me) = (self.clone(), id.to_string(), me.clone());
        let every = Duration::from_secs(self.config.jobs.heartbeat_seconds.max(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let (engine, id, me) = (engine.clone(), id.clone(), me.clone());
                let beat = tokio::task::spawn_blocking(move || {
                    engine.update_job(&id, Some(&me), |j| {
                        if let Some(r) = j.runner.as_mut() {
                            r.heartbeat_ms = now_ms();
                        }
                        Ok(())
                    })
                })
                .await;
                if !matches!(beat, Ok(Ok(_))) {
                    break; // the job is no longer ours; the build notices at its next report
                }
            }
        })
    }

    fn set_step(&self, job: &Job, me: &Runner, step: usize, observer: &Observer) -> Result<()> {
        let j = self.update_job(&job.id, Some(me), |j| {
            for (i, s) in j.steps.iter_mut().enumerate() {
                if i < step {
                    s.status = JobStatus::Succeed;
                } else if i == step {
                    s.status = JobStatus::Running;
                }
            }
            j.progress = j.progress.max(j.progress_at_step(step));
            Ok(())
        })?;
        observer(&j);
        Ok(())
    }

    /// A progress callback that records progress in the job at most every 500 ms (and always
    /// checks ownership then), and heartbeats the runner. `fraction` is of the first step
    /// (building or merging cuboids); the job's progress never goes below what it recorded.
    fn progress_reporter(&self, job: &Job, me: &Runner, observer: Observer) -> Progress {
        let engine = self.clone();
        let id = job.id.clone();
        let me = me.clone();
        let last = Mutex::new(Instant::now() - Duration::from_secs(3600));
        Arc::new(move |fraction: f64, message: &str| {
            let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
            if last.elapsed() < Duration::from_millis(500) && fraction < 1.0 {
                return Ok(());
            }
            *last = Instant::now();
            let j = engine.update_job(&id, Some(&me), |j| {
                let f = if fraction.is_finite() { fraction } else { 0.0 };
                j.progress = j
                    .progress
                    .max(f.clamp(0.0, 1.0) * j.progress_at_step(1).min(1.0));
                j.message = message.to_string();
                if let Some(r) = j.runner.as_mut() {
                    r.heartbeat_ms = now_ms();
                }
                Ok(())
            })?;
            observer(&j);
            Ok(())
        })
    }
}

/// Whether `job` is RUNNING in the process `me`.
fn runs_it(job: &Job, me: &Runner) -> bool {
    job.status == JobStatus::Running
        && job
            .runner
            .as_ref()
            .map(|r| (r.host.as_str(), r.pid, r.start_ticks))
            == Some((me.host.as_str(), me.pid, me.start_ticks))
}

/// Refuses a write to `inst` from lease epoch `epoch` when a newer job engine has written it
/// (the fencing token; see [`Lease`]).
fn check_fence(inst: &qilin_engine::model::CubeInstance, epoch: u64, job: &str) -> Result<()> {
    if inst.fence_epoch > epoch {
        return Err(Error::JobStopped {
            job: job.to_string(),
            reason: format!(
                "cube {} is fenced by a newer job engine (lease epoch {} > {epoch})",
                inst.name, inst.fence_epoch
            ),
        });
    }
    Ok(())
}

/// Job ids are UUIDs; anything else would be a path component we did not create.
fn validate_job_id(id: &str) -> Result<()> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(Error::InvalidName {
            kind: "job id",
            name: id.chars().take(40).collect(),
            reason: "not a job id (a UUID such as 5f0c…); see `qilin-jobs jobs list`".into(),
        });
    }
    Ok(())
}

impl JobEngine {
    /// The Ballista cluster the plans of builds, merges and `cube optimize` run on
    /// (`kylin.job.engine=ballista`), `None` to run them in this process.
    fn build_cluster(&self) -> Result<Option<Arc<dyn build::runner::PlanRunner>>> {
        let cluster =
            qilin_ballista::client::Cluster::from_config(&self.config, self.store.clone())
                .map_err(|e| match e {
                    qilin_ballista::Error::Engine(e) => e,
                    e => Error::Refused(e.to_string()),
                })?;
        Ok(cluster.map(|c| c as Arc<dyn build::runner::PlanRunner>))
    }
}

/// How builds and merges read sources, cut blocks and bound their memory.
fn build_options(config: &Config) -> BuildOptions {
    BuildOptions {
        source_url: config.stores.source_url.clone().into(),
        block_rows: config.stores.block_rows,
        spill: SpillOptions {
            memory_bytes: (config.jobs.aggregation_memory_mb as usize) << 20,
            dir: if config.jobs.spill_dir.is_empty() {
                std::env::temp_dir()
            } else {
                config.jobs.spill_dir.clone().into()
            },
        },
        threads: match config.jobs.build_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        },
        cluster: None,
    }
}
