//! Jobs, builds and the system page of Kylin's REST API: `GET /kylin/api/jobs` (newest first,
//! filtered by project, cube and status, paged), `GET /kylin/api/jobs/{id}`,
//! `PUT /kylin/api/jobs/{id}/resume` and `/cancel`, `PUT /kylin/api/cubes/{cube}/rebuild`
//! (BUILD, MERGE or REFRESH of a range), and `GET /qilin/api/system`.
//!
//! Roles: a caller sees the jobs of the projects it holds a role in (others are 404); building
//! and resuming or discarding a job need OPERATION in the cube's project (403 naming it), and
//! each of those is audited.
//!
//! Every write here only changes the metadata store (submit, resume, discard): the cluster's
//! job daemon (`qilin-jobs serve`, or `qilin-server` in mode `all`) runs what is READY, so any
//! node may serve these, whether it holds the job-engine lease or not.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, put};
use axum::Router;
use chrono::{DateTime, NaiveDate, NaiveTime};
use qilin_cluster::lease::Lease;
use qilin_cluster::web::{ApiError, CallerAccess, Json, JsonBody, Params};
use qilin_engine::model::{now_ms, SegmentRange, SegmentStatus};
use qilin_engine::security::ProjectRole;
use serde::Deserialize;
use serde_json::{json, Value};

use super::blocking;
use crate::{Job, JobEngine, JobKind, JobStatus, Submitted};

type Shared = Arc<JobEngine>;

pub fn routes(jobs: JobEngine) -> Router {
    // Submitting, resuming and discarding never need the lease (see the module doc).
    let state: Shared = Arc::new(jobs.without_lease());
    Router::new()
        .route("/kylin/api/jobs", get(list))
        .route("/kylin/api/jobs/{id}", get(show))
        .route("/kylin/api/jobs/{id}/resume", put(resume))
        .route("/kylin/api/jobs/{id}/cancel", put(cancel))
        .route("/kylin/api/cubes/{cube}/rebuild", put(rebuild))
        // Kylin's older name of the same call, which kylinpy's `build()` still uses.
        .route("/kylin/api/cubes/{cube}/build", put(rebuild))
        .route("/qilin/api/system", get(system))
        .with_state(state)
}

/// Kylin's job status names for ours.
pub fn kylin_status(s: JobStatus) -> &'static str {
    match s {
        JobStatus::Ready => "PENDING",
        JobStatus::Running => "RUNNING",
        JobStatus::Succeed => "FINISHED",
        JobStatus::Error => "ERROR",
        JobStatus::Stopped => "STOPPED",
        JobStatus::Discarded => "DISCARDED",
    }
}

fn kind_name(k: JobKind) -> &'static str {
    match k {
        JobKind::Build => "BUILD",
        JobKind::Merge => "MERGE",
        JobKind::Refresh => "REFRESH",
        JobKind::Optimize => "OPTIMIZE",
    }
}

/// A `status` filter value: a name (PENDING, RUNNING, FINISHED, ERROR, STOPPED, DISCARDED,
/// also NEW = PENDING) or Kylin's numeric code (0 NEW, 1 PENDING, 2 RUNNING, 4 FINISHED,
/// 8 ERROR, 16 DISCARDED, 32 STOPPED).
fn parse_status(v: &str) -> Result<JobStatus, ApiError> {
    Ok(match v.trim().to_ascii_uppercase().as_str() {
        "0" | "1" | "NEW" | "PENDING" | "READY" => JobStatus::Ready,
        "2" | "RUNNING" => JobStatus::Running,
        "4" | "FINISHED" | "SUCCEED" => JobStatus::Succeed,
        "8" | "ERROR" => JobStatus::Error,
        "16" | "DISCARDED" => JobStatus::Discarded,
        "32" | "STOPPED" => JobStatus::Stopped,
        other => {
            return Err(ApiError::bad_request(format!(
                "query parameter status={other:?}: expected PENDING, RUNNING, FINISHED, ERROR, \
                 STOPPED or DISCARDED (or Kylin's code 0, 1, 2, 4, 8, 16, 32)"
            )))
        }
    })
}

/// A job as Kylin's JobInstance JSON. `progress` is a percentage rounded down (so it reads
/// 100 only once the job finished) and never decreases while the job runs (see
/// [`Job::progress`]).
pub fn job_instance(job: &Job, resumable: bool) -> Value {
    let now = now_ms();
    let progress = if job.status == JobStatus::Succeed {
        100.0
    } else {
        ((job.progress.clamp(0.0, 1.0) * 1000.0).floor() / 10.0).min(99.9)
    };
    let duration_s = job
        .started_ms
        .map(|s| (job.ended_ms.unwrap_or(now) - s).max(0) / 1000)
        .unwrap_or(0);
    let created = DateTime::from_timestamp_millis(job.created_ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    let current = job.current_step();
    let steps: Vec<Value> = job
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut info = serde_json::Map::new();
            if i == current && !job.message.is_empty() && s.status == JobStatus::Running {
                info.insert("message".into(), Value::String(job.message.clone()));
            }
            json!({
                "id": format!("{}-{i:02}", job.id),
                "name": s.name,
                "sequence_id": i,
                "step_status": kylin_status(s.status),
                "info": info,
            })
        })
        .collect();
    let submitter = match (&job.submitter, &job.triggered_by) {
        (Some(u), _) => u.clone(),
        (None, Some(_)) => "SYSTEM".to_string(),
        (None, None) => String::new(),
    };
    json!({
        "uuid": job.id,
        "name": format!("{} CUBE - {} - {} - {created}", kind_name(job.kind), job.cube, job.segment_name),
        "type": kind_name(job.kind),
        "related_cube": job.cube,
        "related_segment": job.segment_id,
        "related_segment_name": job.segment_name,
        "job_status": kylin_status(job.status),
        "progress": progress,
        "exec_start_time": job.started_ms.unwrap_or(0),
        "exec_end_time": job.ended_ms.unwrap_or(0),
        "duration": duration_s,
        "last_modified": job.updated_ms,
        "submitter": submitter,
        "message": job.message,
        "error": job.error,
        "resumable": resumable,
        "attempts": job.attempts,
        "steps": steps,
    })
}

fn instance(engine: &JobEngine, job: &Job) -> Value {
    job_instance(job, engine.can_resume(job))
}

/// The project each cube belongs to (through its model); cubes whose model is gone map to
/// nothing.
fn cube_projects(engine: &JobEngine) -> Result<HashMap<String, String>, ApiError> {
    let meta = engine.metadata();
    let models: HashMap<String, String> = meta
        .models()?
        .into_iter()
        .map(|m| (m.name, m.project))
        .collect();
    Ok(meta
        .cube_descs()?
        .into_iter()
        .filter_map(|c| models.get(&c.model).map(|p| (c.name, p.clone())))
        .collect())
}

async fn list(
    caller: CallerAccess,
    params: Params,
    State(engine): State<Shared>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let statuses: Option<Vec<JobStatus>> = params
        .get("status")
        .map(|v| v.split(',').map(parse_status).collect())
        .transpose()?;
    let limit = params.usize("limit")?;
    let offset = params.usize("offset")?.unwrap_or(0);
    let project = params.get("projectName").map(str::to_string);
    let cube = params.get("cubeName").map(str::to_string);
    blocking(move || {
        let access = &caller.access;
        // A global admin sees every job, even of a cube whose model is gone.
        let projects = match (&project, access.admin) {
            (None, true) => None,
            _ => Some(cube_projects(&engine)?),
        };
        let project_of = |j: &Job| projects.as_ref().and_then(|m| m.get(&j.cube));
        let mut jobs = engine.list()?;
        jobs.retain(|j| {
            cube.as_deref()
                .is_none_or(|c| j.cube.eq_ignore_ascii_case(c))
                && statuses.as_ref().is_none_or(|s| s.contains(&j.status))
                && project
                    .as_deref()
                    .is_none_or(|p| project_of(j).is_some_and(|jp| jp.eq_ignore_ascii_case(p)))
                && (access.admin || project_of(j).is_some_and(|jp| access.sees_project(jp)))
        });
        // Newest first (the engine lists oldest first).
        jobs.reverse();
        Ok(Json(
            jobs.iter()
                .skip(offset)
                .take(limit.unwrap_or(usize::MAX))
                .map(|j| instance(&engine, j))
                .collect(),
        ))
    })
    .await
}

/// Job `id`, once the caller is known to hold `role` in its cube's project for `action`
/// (a job of a project it does not see is 404, like an unknown one).
fn job_for(
    engine: &JobEngine,
    caller: &CallerAccess,
    id: &str,
    role: ProjectRole,
    action: &str,
) -> Result<Job, ApiError> {
    let job = engine.get(id).map_err(job_error)?;
    if caller.access.admin {
        return Ok(job);
    }
    match cube_projects(engine)?.get(&job.cube) {
        Some(project) => caller.require_object(project, role, action, "job", id)?,
        // The cube or its model is gone: only a global admin still sees the job.
        None => {
            return Err(caller.refused(
                action,
                &format!("job {id}"),
                qilin_engine::Error::NotFound {
                    kind: "job",
                    name: id.to_string(),
                },
            ))
        }
    }
    Ok(job)
}

async fn show(
    caller: CallerAccess,
    Path(id): Path<String>,
    State(engine): State<Shared>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let job = job_for(&engine, &caller, &id, ProjectRole::Query, "job.read")?;
        Ok(Json(instance(&engine, &job)))
    })
    .await
}

async fn resume(
    caller: CallerAccess,
    Path(id): Path<String>,
    State(engine): State<Shared>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        job_for(&engine, &caller, &id, ProjectRole::Operation, "job.resume")?;
        let target = format!("job {id}");
        let job = caller.audited("job.resume", &target, engine.resume(&id).map_err(job_error))?;
        log::info!(
            "job {} resumed over REST by {}; the job engine runs it",
            job.id,
            caller.user()
        );
        Ok(Json(instance(&engine, &job)))
    })
    .await
}

async fn cancel(
    caller: CallerAccess,
    Path(id): Path<String>,
    State(engine): State<Shared>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        job_for(&engine, &caller, &id, ProjectRole::Operation, "job.discard")?;
        let target = format!("job {id}");
        let job = caller.audited(
            "job.discard",
            &target,
            engine.discard(&id).map_err(job_error),
        )?;
        log::info!("job {} discarded over REST by {}", job.id, caller.user());
        Ok(Json(instance(&engine, &job)))
    })
    .await
}

/// An id that is not a job id names no job: 404 rather than the engine's "invalid name".
fn job_error(e: qilin_engine::Error) -> ApiError {
    match e {
        qilin_engine::Error::InvalidName { kind: "job id", .. } => {
            ApiError::not_found(e.to_string())
        }
        e => e.into(),
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
enum BuildType {
    #[default]
    Build,
    Merge,
    Refresh,
}

/// Kylin's JobBuildRequest (other fields Kylin clients send are ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RebuildRequest {
    start_time: i64,
    end_time: i64,
    #[serde(default)]
    build_type: BuildType,
}

/// A millisecond epoch as the day it starts: segment boundaries are whole days (UTC).
fn day_of(field: &str, ms: i64) -> Result<NaiveDate, ApiError> {
    let t = DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| ApiError::bad_request(format!("{field}={ms} is out of range")))?;
    if t.time() != NaiveTime::MIN {
        return Err(ApiError::bad_request(format!(
            "{field}={ms} ({}) is not at midnight UTC: segments cover whole days",
            t.format("%Y-%m-%d %H:%M:%S")
        )));
    }
    Ok(t.date_naive())
}

async fn rebuild(
    caller: CallerAccess,
    Path(cube): Path<String>,
    State(engine): State<Shared>,
    JsonBody(req): JsonBody<RebuildRequest>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let action = match req.build_type {
            BuildType::Build => "cube.build",
            BuildType::Merge => "cube.merge",
            BuildType::Refresh => "cube.refresh",
        };
        crate::rest::catalog::require_cube(
            &engine,
            &caller,
            &cube,
            ProjectRole::Operation,
            action,
        )?;
        let target = format!("cube {cube}");
        let job = caller.audited(action, &target, submit(&engine, &cube, &req))?;
        let user = caller.user();
        let job = engine.set_submitter(&job.id, user).unwrap_or(job);
        log::info!(
            "job {} submitted over REST by {user}: {:?} {} of cube {cube}",
            job.id,
            req.build_type,
            job.segment_name
        );
        Ok(Json(instance(&engine, &job)))
    })
    .await
}

/// Submits the job a rebuild request asks for.
fn submit(engine: &JobEngine, cube: &str, req: &RebuildRequest) -> Result<Job, ApiError> {
    let meta = engine.metadata();
    let desc = meta.cube_desc(cube)?;
    let partitioned = meta.model(&desc.model)?.partition.is_some();
    // An unpartitioned cube has one segment over everything: Kylin's clients send 0 and
    // some end for it, which mean nothing here.
    let range = if partitioned {
        let (start, end) = (
            day_of("startTime", req.start_time)?,
            day_of("endTime", req.end_time)?,
        );
        if start >= end {
            return Err(ApiError::bad_request(format!(
                "startTime ({start}) must be before endTime ({end})"
            )));
        }
        Some(SegmentRange::new(start, end)?)
    } else {
        None
    };
    let job = match (req.build_type, range) {
        (BuildType::Build, r) => match engine.submit_build(cube, r)? {
            Submitted::New(j) | Submitted::Resume(j) => j,
        },
        (BuildType::Merge, Some(r)) => engine.submit_merge(cube, r)?,
        (BuildType::Merge, None) => {
            return Err(ApiError::bad_request(format!(
                "cube {cube} is not partitioned: it has one segment, nothing to merge"
            )))
        }
        (BuildType::Refresh, r) => {
            let (inst, _) = meta.cube_instance(cube)?;
            let seg = inst
                .segments
                .iter()
                .find(|s| s.range == r && s.status == SegmentStatus::Ready)
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "cube {cube} has no READY segment {}; REFRESH rebuilds a segment \
                         with exactly the given startTime and endTime",
                        qilin_engine::model::segment_name(r.as_ref())
                    ))
                })?;
            engine.submit_refresh(cube, &seg.id)?
        }
    };
    Ok(job)
}

async fn system(_: CallerAccess, State(engine): State<Shared>) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let meta = engine.metadata();
        let lease = match Lease::read(meta)? {
            Some((r, _)) if !r.released => json!({
                "holder": format!("{}:{}", r.holder.host, r.holder.pid),
                "expires_ms": r.renewed_ms + r.ttl_ms as i64,
                "epoch": r.epoch,
            }),
            _ => Value::Null,
        };
        Ok(Json(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "mode": engine.config().cluster.mode.to_string(),
            "metadata_version": meta.store().store_version()?,
            "lease": lease,
        })))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kylin_names_and_back() {
        for s in [
            JobStatus::Ready,
            JobStatus::Running,
            JobStatus::Succeed,
            JobStatus::Error,
            JobStatus::Stopped,
            JobStatus::Discarded,
        ] {
            assert_eq!(parse_status(kylin_status(s)).unwrap(), s);
        }
        assert_eq!(parse_status("8").unwrap(), JobStatus::Error);
        assert!(parse_status("LOST").is_err());
    }

    #[test]
    fn days_must_be_whole() {
        assert_eq!(
            day_of("startTime", 883_612_800_000).unwrap(),
            NaiveDate::from_ymd_opt(1998, 1, 1).unwrap()
        );
        let e = day_of("endTime", 883_612_800_001).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(e.message.contains("midnight"), "{}", e.message);
    }

    #[test]
    fn progress_reads_100_only_when_finished() {
        let mut j = Job::new(JobKind::Build, "c", "s", "n", None);
        j.progress = 0.99999;
        j.status = JobStatus::Running;
        assert_eq!(job_instance(&j, false)["progress"], 99.9);
        j.status = JobStatus::Succeed;
        assert_eq!(job_instance(&j, false)["progress"], 100.0);
        assert_eq!(job_instance(&j, false)["job_status"], "FINISHED");
    }
}
