//! The cube planner's job (`qilin-jobs cube optimize --apply`): after the descriptor gained
//! cuboids, build them into every READY segment from the segment's stored cuboids (never the
//! source), then list them in the segments' metadata in one check-and-put under the
//! job-engine fence. Queries use a cuboid only once every READY segment lists it, so the
//! commit makes the new cuboids visible to all of them at once.

use std::sync::Arc;

use qilin_engine::build::extend::{extend_segment, missing_cuboids};
use qilin_engine::build::Progress;
use qilin_engine::error::{Error, Result};
use qilin_engine::model::{descriptor_signature, CuboidStats, SegmentStatus};

use super::{build_options, check_fence, JobEngine, Observer};
use crate::job::{Job, JobKind, Runner};

/// What the optimize job's record names instead of a segment.
pub const ALL_SEGMENTS: &str = "READY segments";

impl JobEngine {
    /// Submits the job that builds the cube's new cuboids into its READY segments. Refused
    /// while another optimize job of the cube is unfinished (both would write the same
    /// blocks).
    pub fn submit_optimize(&self, cube: &str) -> Result<Job> {
        self.meta.cube_instance(cube)?;
        if let Some(j) = self
            .list()?
            .into_iter()
            .find(|j| j.kind == JobKind::Optimize && j.cube == cube && !j.status.is_final())
        {
            return Err(Error::Busy(format!(
                "optimize job {} of cube {cube} is {}; resume or discard it first",
                j.id, j.status
            )));
        }
        // A segment id no segment has: the job owns no segment, and the generic clean-up of
        // a failed job (removing its NEW segment) finds nothing to remove.
        let id = uuid::Uuid::new_v4().to_string();
        let job = Job::new(JobKind::Optimize, cube, &id, ALL_SEGMENTS, None);
        self.meta.put_json(
            &qilin_engine::metadata::managers::job_path(&job.id),
            &job,
            None,
        )?;
        Ok(job)
    }

    pub(super) async fn execute_optimize(
        &self,
        job: &Job,
        me: &Runner,
        observer: Observer,
    ) -> Result<()> {
        let layout = Arc::new(
            self.meta
                .cube_layout(&job.cube, self.config.cube.max_cuboids_per_group)?,
        );
        let signature = descriptor_signature(&layout);
        self.set_step(job, me, 0, &observer)?;
        let progress = self.progress_reporter(job, me, observer.clone());
        let (inst, _) = self.meta.cube_instance(&job.cube)?;
        let segments: Vec<_> = inst
            .ready_segments()
            .filter(|s| s.built_under(&signature))
            .cloned()
            .collect();
        let mut opts = build_options(&self.config);
        opts.cluster = self.build_cluster()?;
        let total = segments.len().max(1) as f64;
        let mut built: Vec<(String, Vec<CuboidStats>)> = Vec::new();
        for (i, seg) in segments.into_iter().enumerate() {
            let missing = missing_cuboids(&layout, &seg.cuboids);
            if missing.is_empty() {
                continue;
            }
            let outer = progress.clone();
            let sub: Progress = Arc::new(move |f, m| outer((i as f64 + f) / total, m));
            let stats = extend_segment(
                &layout,
                &self.store,
                &seg.id,
                &seg.cuboids,
                &missing,
                &opts,
                &sub,
            )
            .await?;
            self.store.sync_segment(&seg.id)?;
            built.push((seg.id.clone(), stats));
        }
        self.set_step(job, me, 1, &observer)?;
        self.update_job(&job.id, Some(me), |_| Ok(()))?; // still ours, right before commit
        let epoch = self.lease_epoch(&job.id)?;
        let added = self.meta.update_cube(&job.cube, |inst| {
            if let Some(e) = epoch {
                check_fence(inst, e, &job.id)?;
            }
            let mut added = 0usize;
            for (id, stats) in &built {
                // A segment merged or refreshed away meanwhile: its replacement was built
                // under the new descriptor (with the cuboids) or is extended next time.
                let Some(seg) = inst
                    .segments
                    .iter_mut()
                    .find(|s| s.id == *id && s.status == SegmentStatus::Ready)
                else {
                    log::warn!(
                        "job {}: segment {id} is gone; its new cuboids are not listed",
                        job.id
                    );
                    continue;
                };
                for st in stats {
                    if !seg.cuboids.iter().any(|c| c.id == st.id) {
                        seg.size_bytes += st.bytes;
                        seg.cuboids.push(st.clone());
                        added += 1;
                    }
                }
                seg.cuboids
                    .sort_by_key(|c| layout.cuboids.iter().position(|&l| l == c.id));
            }
            Ok(added)
        })?;
        log::info!(
            "job {}: {added} cuboid(s) added to {} segment(s) of cube {}",
            job.id,
            built.len(),
            job.cube
        );
        Ok(())
    }
}
