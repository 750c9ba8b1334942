//! The catalog of Kylin's REST API: sign-in, projects, tables and columns, models, cubes and
//! cube descriptors, with Kylin's paths and field names (what kylinpy, Superset's Kylin
//! connector and the console read). Read-only; every route needs a [`CallerAccess`]: lists
//! show only the projects the caller holds a role in (and leave out tables and columns denied
//! to it), any other project's objects are 404 as if they did not exist.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::routing::get;
use axum::{Extension, Router};
use qilin_cluster::auth::{parse_basic, AuthError, Authenticator};
use qilin_cluster::web::{ApiError, CallerAccess, Json, Params};
use qilin_engine::metadata::managers::{cube_desc_path, model_path};
use qilin_engine::model::jdbc::{java_sql_type, sql_type};
use qilin_engine::model::{
    descriptor_signature, table_schema, CubeInstance, Segment, SegmentStatus,
};
use qilin_engine::security::{Access, ProjectRole};
use qilin_engine::Error;
use serde_json::{json, Value};
use std::sync::Arc;

use super::blocking;
use crate::JobEngine;

/// The catalog routes (GET and POST `/kylin/api/user/authentication` need no prior token).
pub fn router(jobs: JobEngine) -> Router {
    Router::new()
        .route(
            "/kylin/api/user/authentication",
            get(authentication).post(authentication),
        )
        .route("/kylin/api/projects", get(projects))
        .route("/kylin/api/tables_and_columns", get(tables_and_columns))
        .route("/kylin/api/models", get(models))
        .route("/kylin/api/cubes", get(cubes))
        .route("/kylin/api/cubes/{cube}", get(cube))
        .route("/kylin/api/cube_desc/{cube}", get(cube_desc))
        .route("/kylin/api/cube_desc/{cube}/desc", get(cube_desc_object))
        .with_state(jobs)
}

/// Sign-in: Basic credentials (a password or an API key; or a bearer token, renewed) → the
/// user, its roles and a fresh token the console sends as `Authorization: Bearer` from then on.
async fn authentication(
    Extension(auth): Extension<Arc<Authenticator>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // `login` checks the password (Argon2: slow on purpose) and audits the sign-in.
    let signed_in = tokio::task::spawn_blocking(move || {
        let (user, token) = match value.as_deref().and_then(parse_basic) {
            Some((user, password)) => {
                let token = auth.login(&user, &password)?;
                (user, token)
            }
            None => {
                let user = auth.authenticate(value.as_deref())?;
                let token = auth.renew(&user);
                (user, token)
            }
        };
        Ok::<_, AuthError>((auth.access(&user)?, token))
    })
    .await
    .map_err(|e| ApiError::internal(format!("sign-in failed: {e}")))?;
    let (access, token) = signed_in.map_err(|e| ApiError::unauthorized(e.to_string(), &headers))?;
    Ok(Json(user_details(&access, &token)))
}

/// Kylin's sign-in answer (`userDetails.authorities`: ROLE_ADMIN for a global admin, else
/// ROLE_ANALYST; ALL_USERS always), plus the caller's roles by project for the console.
fn user_details(access: &Access, token: &str) -> Value {
    let role = if access.admin {
        "ROLE_ADMIN"
    } else {
        "ROLE_ANALYST"
    };
    let projects: BTreeMap<&str, &str> = access
        .projects
        .iter()
        .map(|(p, r)| (p.as_str(), r.as_str()))
        .collect();
    json!({
        "userDetails": {
            "username": access.user,
            "authorities": [{"authority": role}, {"authority": "ALL_USERS"}],
        },
        "token": token,
        // OPERATION somewhere: the console offers builds and job actions.
        "can_operate": access.admin
            || access.projects.values().any(|r| *r >= ProjectRole::Operation),
        "admin": access.admin,
        "projects": projects,
    })
}

async fn projects(
    caller: CallerAccess,
    State(jobs): State<JobEngine>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let access = &caller.access;
        let meta = jobs.metadata();
        let models = meta.models()?;
        let cubes = meta.cube_descs()?;
        let mut out = Vec::new();
        for p in meta.projects()? {
            if !access.sees_project(&p.name) {
                continue;
            }
            let tables: Vec<String> = meta
                .tables(&p.name)?
                .into_iter()
                .filter(|t| !table_denied(access, &p.name, &t.name))
                .map(|t| t.name)
                .collect();
            let model_names: Vec<&str> = models
                .iter()
                .filter(|m| m.project == p.name)
                .map(|m| m.name.as_str())
                .collect();
            let realizations: Vec<Value> = cubes
                .iter()
                .filter(|c| model_names.contains(&c.model.as_str()))
                .map(|c| json!({"type": "CUBE", "realization": c.name}))
                .collect();
            out.push(json!({
                "name": p.name,
                "description": p.description,
                "tables": tables,
                "models": model_names,
                "realizations": realizations,
            }));
        }
        Ok(Json(Value::Array(out)))
    })
    .await
}

/// The projects a `project`/`projectName` parameter selects among those the caller sees:
/// that one (404 if unknown or not visible to the caller), or all it sees.
fn selected_projects(
    jobs: &JobEngine,
    caller: &CallerAccess,
    project: Option<&str>,
) -> Result<Vec<String>, ApiError> {
    let meta = jobs.metadata();
    match project {
        Some(p) => match meta.project(p)? {
            Some(found) => {
                caller.require(
                    &found.name,
                    ProjectRole::Query,
                    "project.read",
                    &format!("project {p}"),
                )?;
                Ok(vec![found.name])
            }
            None => Err(Error::NotFound {
                kind: "project",
                name: p.to_string(),
            }
            .into()),
        },
        None => Ok(meta
            .projects()?
            .into_iter()
            .map(|p| p.name)
            .filter(|p| caller.access.sees_project(p))
            .collect()),
    }
}

/// Whether the whole table is denied to the caller (lists leave it out).
fn table_denied(access: &Access, project: &str, table: &str) -> bool {
    access.restriction(project, table).is_some_and(|r| r.denied)
}

/// Kylin's `TableMeta` list: each table (schema = its project) with its columns' JDBC types.
async fn tables_and_columns(
    caller: CallerAccess,
    State(jobs): State<JobEngine>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let mut out = Vec::new();
        for project in selected_projects(&jobs, &caller, params.get("project"))? {
            for t in jobs.metadata().tables(&project)? {
                let restriction = caller.access.restriction(&project, &t.name);
                if restriction.is_some_and(|r| r.denied) {
                    continue;
                }
                let schema = table_schema(&t)?;
                let columns: Vec<Value> = schema
                    .fields()
                    .iter()
                    // Denied columns are left out, as from `SELECT *`.
                    .filter(|f| !restriction.is_some_and(|r| r.denies_column(f.name())))
                    .enumerate()
                    .map(|(i, f)| {
                        let (name, precision, scale) = sql_type(f.data_type());
                        let nullable = f.is_nullable();
                        json!({
                            "table_CAT": "defaultCatalog",
                            "table_SCHEM": project,
                            "table_NAME": t.name,
                            "column_NAME": f.name(),
                            "data_TYPE": java_sql_type(&name),
                            "type_NAME": name,
                            "column_SIZE": precision.unwrap_or(0),
                            "buffer_LENGTH": -1,
                            "decimal_DIGITS": scale.unwrap_or(0),
                            "num_PREC_RADIX": 10,
                            "nullable": i32::from(nullable),
                            "remarks": null,
                            "column_DEF": null,
                            "sql_DATA_TYPE": -1,
                            "sql_DATETIME_SUB": -1,
                            "char_OCTET_LENGTH": -1,
                            "ordinal_POSITION": i + 1,
                            "is_NULLABLE": if nullable { "YES" } else { "NO" },
                            "scope_CATLOG": null,
                            "scope_SCHEMA": null,
                            "scope_TABLE": null,
                            "source_DATA_TYPE": -1,
                            "iS_AUTOINCREMENT": null,
                        })
                    })
                    .collect();
                out.push(json!({
                    "table_CAT": "defaultCatalog",
                    "table_SCHEM": project,
                    "table_NAME": t.name,
                    "table_TYPE": "TABLE",
                    "remarks": null,
                    "type_CAT": null,
                    "type_SCHEM": null,
                    "type_NAME": null,
                    "self_REFERENCING_COL_NAME": null,
                    "ref_GENERATION": null,
                    "columns": columns,
                }));
            }
        }
        Ok(Json(Value::Array(out)))
    })
    .await
}

/// Every model of a project (or all), as stored plus `project`.
async fn models(
    caller: CallerAccess,
    State(jobs): State<JobEngine>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let projects = selected_projects(&jobs, &caller, params.get("projectName"))?;
        let meta = jobs.metadata();
        let mut out = Vec::new();
        for m in meta.models()? {
            if !projects.contains(&m.project) {
                continue;
            }
            if let Some((mut stored, _)) = meta.get_json::<Value>(&model_path(&m.name))? {
                if let Value::Object(o) = &mut stored {
                    o.insert("project".into(), Value::String(m.project.clone()));
                }
                out.push(stored);
            }
        }
        Ok(Json(Value::Array(out)))
    })
    .await
}

/// Every cube of a project (or all; `cubeName` narrows to one) as Kylin's CubeInstance.
async fn cubes(
    caller: CallerAccess,
    State(jobs): State<JobEngine>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let projects = selected_projects(&jobs, &caller, params.get("projectName"))?;
        let meta = jobs.metadata();
        let project_of: BTreeMap<String, String> = meta
            .models()?
            .into_iter()
            .map(|m| (m.name, m.project))
            .collect();
        let mut out = Vec::new();
        for c in meta.cube_descs()? {
            let Some(project) = project_of.get(&c.model) else {
                continue;
            };
            if !projects.contains(project) {
                continue;
            }
            if params.get("cubeName").is_some_and(|n| n != c.name) {
                continue;
            }
            out.push(cube_instance(&jobs, &c.name)?);
        }
        Ok(Json(Value::Array(out)))
    })
    .await
}

async fn cube(
    caller: CallerAccess,
    State(jobs): State<JobEngine>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        require_cube(&jobs, &caller, &name, ProjectRole::Query, "cube.read")?;
        cube_instance(&jobs, &name).map(Json)
    })
    .await
}

/// The project of cube `name` (through its model); 404 for an unknown cube.
pub fn cube_project(jobs: &JobEngine, name: &str) -> Result<String, ApiError> {
    let meta = jobs.metadata();
    let desc = meta.cube_desc(name)?;
    Ok(meta.model(&desc.model)?.project)
}

/// Checks that the caller holds `role` in the project of cube `name` for `action`; a cube
/// of a project it does not see is 404 like an unknown one.
pub fn require_cube(
    jobs: &JobEngine,
    caller: &CallerAccess,
    name: &str,
    role: ProjectRole,
    action: &str,
) -> Result<(), ApiError> {
    let project = cube_project(jobs, name)?;
    caller.require_object(&project, role, action, "cube", name)
}

/// `[<cube descriptor as stored> + "cuboid_count"]`: Kylin answers a list.
async fn cube_desc(
    caller: CallerAccess,
    State(jobs): State<JobEngine>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        require_cube(&jobs, &caller, &name, ProjectRole::Query, "cube.read")?;
        Ok(Json(Value::Array(vec![cube_desc_json(&jobs, &name)?])))
    })
    .await
}

/// The same descriptor as one object (kylinpy's `cube_desc/{cube}/desc`), with
/// `model_name` as Kylin names the model.
async fn cube_desc_object(
    caller: CallerAccess,
    State(jobs): State<JobEngine>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        require_cube(&jobs, &caller, &name, ProjectRole::Query, "cube.read")?;
        let mut desc = cube_desc_json(&jobs, &name)?;
        if let Value::Object(o) = &mut desc {
            let model = o.get("model").cloned().unwrap_or(Value::Null);
            o.insert("model_name".into(), model);
        }
        Ok(Json(desc))
    })
    .await
}

fn cube_desc_json(jobs: &JobEngine, name: &str) -> Result<Value, ApiError> {
    let meta = jobs.metadata();
    meta.cube_desc(name)?; // validates the name; NotFound → 404
    let (mut stored, _) = meta
        .get_json::<Value>(&cube_desc_path(name))?
        .ok_or_else(|| Error::NotFound {
            kind: "cube",
            name: name.to_string(),
        })?;
    let cuboids = meta
        .cube_layout(name, jobs.config().cube.max_cuboids_per_group)
        .map(|l| l.cuboids.len())
        .ok();
    if let Value::Object(o) = &mut stored {
        o.insert("cuboid_count".into(), json!(cuboids));
    }
    Ok(stored)
}

/// Kylin's CubeInstance of cube `name`: READY when a segment is, sizes and rows over READY
/// segments, and every segment.
fn cube_instance(jobs: &JobEngine, name: &str) -> Result<Value, ApiError> {
    let meta = jobs.metadata();
    let desc = meta.cube_desc(name)?;
    let model = meta.model(&desc.model)?;
    let inst = match meta.cube_instance(name) {
        Ok((i, _)) => i,
        Err(Error::NotFound { .. }) => CubeInstance::new(name),
        Err(e) => return Err(e.into()),
    };
    let layout = meta
        .cube_layout(name, jobs.config().cube.max_cuboids_per_group)
        .ok();
    let signature = layout.as_ref().map(descriptor_signature);
    let ready: Vec<&Segment> = inst.ready_segments().collect();
    let size_bytes: u64 = ready.iter().map(|s| s.size_bytes).sum();
    let input_records: u64 = ready.iter().map(|s| s.source_rows).sum();
    let created = inst
        .segments
        .iter()
        .map(|s| s.created_ms)
        .min()
        .unwrap_or(0);
    let segments: Vec<Value> = inst
        .segments
        .iter()
        .map(|s| segment_json(s, signature.as_deref()))
        .collect();
    Ok(json!({
        "uuid": name,
        "name": name,
        "display_name": name,
        "project": model.project,
        "model": desc.model,
        "descriptor": name,
        "owner": "ADMIN",
        "status": if ready.is_empty() { "DISABLED" } else { "READY" },
        "size_kb": size_bytes / 1024,
        "input_records_count": input_records,
        "input_records_size": 0,
        "cuboid_count": layout.as_ref().map(|l| l.cuboids.len()),
        "create_time_utc": created,
        "segments": segments,
    }))
}

fn segment_json(s: &Segment, signature: Option<&str>) -> Value {
    let (start, end) = match &s.range {
        Some(r) => (day_ms(r.start), day_ms(r.end)),
        None => (0, 0),
    };
    let status = match s.status {
        SegmentStatus::Ready => "READY",
        SegmentStatus::New => "NEW",
    };
    let cuboid_rows: u64 = s.cuboids.iter().map(|c| c.rows).sum();
    json!({
        "uuid": s.id,
        "name": s.name,
        "status": status,
        "date_range_start": start,
        "date_range_end": end,
        "size_kb": s.size_bytes / 1024,
        "size_bytes": s.size_bytes,
        "input_records": s.source_rows,
        "cuboid_rows": cuboid_rows,
        "cuboid_count": s.cuboids.len(),
        "create_time_utc": s.created_ms,
        "last_build_time": s.ready_ms.unwrap_or(0),
        "build_duration_ms": s.ready_ms.map_or(0, |r| (r - s.created_ms).max(0)),
        "last_build_job_id": s.job_id,
        "stale": s.status == SegmentStatus::Ready
            && signature.is_some_and(|sig| !s.built_under(sig)),
    })
}

/// Midnight UTC of `d` in milliseconds since the epoch (Kylin's segment range unit).
fn day_ms(d: chrono::NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp_millis())
}
