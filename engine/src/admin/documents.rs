//! Projects, models and cubes as JSON documents: put, get, list, drop, plan.
//!
//! Every operation validates everything before it writes anything, and writes descriptors
//! with check-and-put on the version it validated against, so a concurrent change makes it
//! fail (Conflict) instead of being overwritten. The store keeps `model::desc::to_json` output, so what
//! `get` returns can be put back unchanged (`get` → `put` → `get` is byte-identical).
//!
//! Changing a model or cube whose segments were built under another layout does not touch
//! those segments: they keep the [`descriptor_signature`] they were built under, queries skip
//! them, and a refresh rebuilds them under the new descriptor. Segments from before
//! signatures existed are stamped with the old layout's signature first, so the change
//! turns them stale too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, UInt64Type};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::build::source::quote;
use crate::error::{Error, Result};
use crate::metadata::managers::{cube_desc_path, cube_path, model_path, project_path, Metadata};
use crate::model::cuboid::enumerate_group;
use crate::model::{
    descriptor_signature, resolve_cube, validate_model, CubeDesc, CubeInstance, CubeLayout,
    ModelDesc, ProjectDesc, StateKind, TableDesc,
};
use crate::names::validate_name;
use crate::storage::SegmentStore;

/// What unsigned segments are stamped with when the descriptor they were built under no
/// longer resolves: no layout has this signature, so they count as stale.
const UNKNOWN_SIGNATURE: &str = "unknown-earlier-descriptor";

// Parsing --------------------------------------------------------------------------------

/// Parses a JSON document. Errors are the user's (`Invalid`) and name the document `what`
/// (a file name, or `qilin.model.put body`), the field path (`lookups[1].join`) and where
/// the parser stopped (line and column).
pub fn parse_document<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| path_error(what, e))?;
    // Trailing text after the document is a mistake too (two documents pasted together).
    de.end().map_err(|e| Error::invalid(what, e.to_string()))?;
    Ok(value)
}

/// Like [`parse_document`] for a document already parsed into a JSON value (a part of a
/// Flight action body); no line numbers then, but the field path.
pub fn parse_value<T: DeserializeOwned>(what: &str, value: serde_json::Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| path_error(what, e))
}

fn path_error(what: &str, e: serde_path_to_error::Error<serde_json::Error>) -> Error {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if path.is_empty() || path == "." {
        Error::invalid(what, inner.to_string())
    } else {
        Error::invalid(what, format!("field {path}: {inner}"))
    }
}

/// Parses a model; with `project`, the document may leave out `"project"`, and must not
/// name another one.
pub fn parse_model(what: &str, bytes: &[u8], project: Option<&str>) -> Result<ModelDesc> {
    let Some(project) = project else {
        return parse_document(what, bytes);
    };
    let mut value: serde_json::Value = parse_document(what, bytes)?;
    set_project(what, &mut value, project)?;
    parse_value(what, value)
}

/// Puts `project` into a model document that has none, or checks that it names the same.
pub fn set_project(what: &str, model: &mut serde_json::Value, project: &str) -> Result<()> {
    let Some(obj) = model.as_object_mut() else {
        return Err(Error::invalid(what, "a model is a JSON object"));
    };
    match obj.get("project") {
        None => {
            obj.insert("project".into(), project.into());
            Ok(())
        }
        Some(serde_json::Value::String(p)) if p == project => Ok(()),
        Some(other) => Err(Error::invalid(
            what,
            format!("field project: the model says {other}, but project {project:?} was given"),
        )),
    }
}

// Projects -------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectSummary {
    pub name: String,
    pub description: String,
    pub tables: usize,
    pub models: usize,
    pub cubes: usize,
}

/// Creates a project; AlreadyExists when it exists.
pub fn create_project(meta: &Metadata, project: &ProjectDesc) -> Result<ProjectDesc> {
    validate_name("project", &project.name)?;
    match meta.put_json(&project_path(&project.name), project, None) {
        Ok(_) => Ok(project.clone()),
        Err(Error::Conflict { .. }) => Err(Error::AlreadyExists {
            kind: "project",
            name: project.name.clone(),
        }),
        Err(e) => Err(e),
    }
}

pub fn list_projects(meta: &Metadata) -> Result<Vec<ProjectSummary>> {
    let models = meta.models()?;
    let cubes = meta.cube_descs()?;
    let mut out = Vec::new();
    for p in meta.projects()? {
        let in_project: BTreeSet<&str> = models
            .iter()
            .filter(|m| m.project == p.name)
            .map(|m| m.name.as_str())
            .collect();
        out.push(ProjectSummary {
            tables: meta.tables(&p.name)?.len(),
            models: in_project.len(),
            cubes: cubes
                .iter()
                .filter(|c| in_project.contains(c.model.as_str()))
                .count(),
            name: p.name,
            description: p.description,
        });
    }
    Ok(out)
}

/// Drops an empty project; refused while it has a table, model or cube (naming one).
pub fn drop_project(meta: &Metadata, name: &str) -> Result<()> {
    validate_name("project", name)?;
    let path = project_path(name);
    let (_, version) = meta
        .get_json::<ProjectDesc>(&path)?
        .ok_or_else(|| not_found("project", name))?;
    let refuse = |kind: &str, what: &str, how: &str| {
        Err(Error::Refused(format!(
            "project {name} still has {kind} {what}; {how} first"
        )))
    };
    let models: Vec<ModelDesc> = meta
        .models()?
        .into_iter()
        .filter(|m| m.project == name)
        .collect();
    if let Some(c) = meta
        .cube_descs()?
        .iter()
        .find(|c| models.iter().any(|m| m.name == c.model))
    {
        return refuse("cube", &c.name, "drop it (qilin-jobs cube drop)");
    }
    if let Some(m) = models.first() {
        return refuse("model", &m.name, "drop it (qilin-jobs model drop)");
    }
    if let Some(t) = meta.tables(name)?.first() {
        return refuse("table", &t.name, "drop it");
    }
    meta.store().check_and_delete(&path, Some(version))
}

// Models ---------------------------------------------------------------------------------

/// A segment that queries skip until it is refreshed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StaleSegment {
    pub cube: String,
    pub segment: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelPut {
    pub model: String,
    pub project: String,
    pub created: bool,
    /// The model's cubes, each re-validated against the new model.
    pub cubes: Vec<String>,
    /// READY segments built under an earlier descriptor (including those this change made
    /// stale): refresh them.
    pub stale_segments: Vec<StaleSegment>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSummary {
    pub name: String,
    pub project: String,
    pub fact_table: String,
    pub lookups: usize,
    pub cubes: Vec<String>,
}

/// Validates a model against its project's tables and every cube built on it, then saves
/// it. Refused, naming the cube, when the new model would break one of its cubes.
pub fn put_model(meta: &Metadata, model: &ModelDesc, max_cuboids: u64) -> Result<ModelPut> {
    validate_name("model", &model.name)?;
    validate_name("project", &model.project)?;
    if meta.project(&model.project)?.is_none() {
        return Err(not_found("project", &model.project));
    }
    let tables = meta.tables(&model.project)?;
    validate_model(model, &tables)?;
    let path = model_path(&model.name);
    let old = meta.get_json::<ModelDesc>(&path)?;
    let cubes = cubes_of_model(meta, &model.name)?;
    let mut changes = Vec::new();
    for cube in &cubes {
        let layout = resolve_cube(cube, model, &tables, max_cuboids).map_err(|e| {
            Error::invalid(
                format!("model {}", model.name),
                format!("cube {} would no longer be valid: {e}", cube.name),
            )
        })?;
        let old_signature = match &old {
            Some((old_model, _)) => meta
                .tables(&old_model.project)
                .and_then(|t| resolve_cube(cube, old_model, &t, max_cuboids))
                .map(|l| descriptor_signature(&l))
                .unwrap_or_else(|_| UNKNOWN_SIGNATURE.into()),
            None => UNKNOWN_SIGNATURE.into(),
        };
        changes.push((
            cube.name.clone(),
            old_signature,
            descriptor_signature(&layout),
        ));
    }
    for (cube, old_signature, _) in &changes {
        stamp_unsigned_segments(meta, cube, old_signature)?;
    }
    meta.put_json(&path, model, old.as_ref().map(|(_, v)| *v))?;
    let mut stale_segments = Vec::new();
    for (cube, _, signature) in &changes {
        stale_segments.extend(stale_of(meta, cube, signature)?);
    }
    Ok(ModelPut {
        model: model.name.clone(),
        project: model.project.clone(),
        created: old.is_none(),
        cubes: cubes.into_iter().map(|c| c.name).collect(),
        stale_segments,
    })
}

/// The model's JSON exactly as stored.
pub fn get_model(meta: &Metadata, name: &str) -> Result<Vec<u8>> {
    validate_name("model", name)?;
    stored_bytes(meta, &model_path(name), "model", name)
}

/// Models, optionally of one project (which must exist).
pub fn list_models(meta: &Metadata, project: Option<&str>) -> Result<Vec<ModelSummary>> {
    if let Some(p) = project {
        if meta.project(p)?.is_none() {
            return Err(not_found("project", p));
        }
    }
    let cubes = meta.cube_descs()?;
    Ok(meta
        .models()?
        .into_iter()
        .filter(|m| project.is_none_or(|p| m.project == p))
        .map(|m| ModelSummary {
            cubes: cubes
                .iter()
                .filter(|c| c.model == m.name)
                .map(|c| c.name.clone())
                .collect(),
            lookups: m.lookups.len(),
            name: m.name,
            project: m.project,
            fact_table: m.fact_table,
        })
        .collect())
}

/// Drops a model no cube uses.
pub fn drop_model(meta: &Metadata, name: &str) -> Result<()> {
    validate_name("model", name)?;
    let path = model_path(name);
    let (_, version) = meta
        .get_json::<ModelDesc>(&path)?
        .ok_or_else(|| not_found("model", name))?;
    if let Some(c) = cubes_of_model(meta, name)?.first() {
        return Err(Error::Refused(format!(
            "model {name} is used by cube {}; drop the cube first",
            c.name
        )));
    }
    meta.store().check_and_delete(&path, Some(version))
}

fn cubes_of_model(meta: &Metadata, model: &str) -> Result<Vec<CubeDesc>> {
    Ok(meta
        .cube_descs()?
        .into_iter()
        .filter(|c| c.model == model)
        .collect())
}

// Cubes ----------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CubePut {
    pub cube: String,
    pub model: String,
    pub created: bool,
    pub cuboids: usize,
    pub signature: String,
    /// READY segments built under an earlier descriptor: refresh them.
    pub stale_segments: Vec<StaleSegment>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CubeSummary {
    pub name: String,
    pub model: String,
    pub project: Option<String>,
    /// `None` when the cube does not resolve any more (see `problem`).
    pub cuboids: Option<usize>,
    pub segments: usize,
    pub ready_segments: usize,
    pub stale_segments: usize,
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CubeDropped {
    pub cube: String,
    /// Segments whose stored data was deleted.
    pub segments: Vec<String>,
    /// Segments whose data could not be deleted (the cube is gone; the data is garbage).
    pub leftover_data: Vec<String>,
}

/// Validates a cube against its model (`kylin.cube.aggrgroup.max-combination` =
/// `max_cuboids`), saves it and creates its instance when new.
pub fn put_cube(meta: &Metadata, cube: &CubeDesc, max_cuboids: u64) -> Result<CubePut> {
    let layout = resolve(meta, cube, max_cuboids)?;
    let signature = descriptor_signature(&layout);
    let path = cube_desc_path(&cube.name);
    let old = meta.get_json::<CubeDesc>(&path)?;
    let old_signature = match &old {
        Some((o, _)) => resolve(meta, o, max_cuboids)
            .map(|l| descriptor_signature(&l))
            .unwrap_or_else(|_| UNKNOWN_SIGNATURE.into()),
        None => UNKNOWN_SIGNATURE.into(),
    };
    if old_signature != signature {
        stamp_unsigned_segments(meta, &cube.name, &old_signature)?;
    }
    meta.put_json(&path, cube, old.as_ref().map(|(_, v)| *v))?;
    match meta.put_json(&cube_path(&cube.name), &CubeInstance::new(&cube.name), None) {
        Ok(_) | Err(Error::Conflict { .. }) => {} // created, or it exists already
        Err(e) => return Err(e),
    }
    Ok(CubePut {
        cube: cube.name.clone(),
        model: cube.model.clone(),
        created: old.is_none(),
        cuboids: layout.cuboids.len(),
        stale_segments: stale_of(meta, &cube.name, &signature)?,
        signature,
    })
}

/// The cube's JSON exactly as stored.
pub fn get_cube(meta: &Metadata, name: &str) -> Result<Vec<u8>> {
    validate_name("cube", name)?;
    stored_bytes(meta, &cube_desc_path(name), "cube", name)
}

/// Cubes, optionally of one project (which must exist).
pub fn list_cubes(
    meta: &Metadata,
    project: Option<&str>,
    max_cuboids: u64,
) -> Result<Vec<CubeSummary>> {
    if let Some(p) = project {
        if meta.project(p)?.is_none() {
            return Err(not_found("project", p));
        }
    }
    let models: BTreeMap<String, String> = meta
        .models()?
        .into_iter()
        .map(|m| (m.name, m.project))
        .collect();
    let mut out = Vec::new();
    for c in meta.cube_descs()? {
        let cube_project = models.get(&c.model).cloned();
        if project.is_some() && cube_project.as_deref() != project {
            continue;
        }
        let (cuboids, signature, problem) = match resolve(meta, &c, max_cuboids) {
            Ok(l) => (Some(l.cuboids.len()), Some(descriptor_signature(&l)), None),
            Err(e) => (None, None, Some(e.to_string())),
        };
        let inst = match meta.cube_instance(&c.name) {
            Ok((i, _)) => i,
            Err(Error::NotFound { .. }) => CubeInstance::new(&c.name),
            Err(e) => return Err(e),
        };
        let ready: Vec<_> = inst.ready_segments().collect();
        out.push(CubeSummary {
            segments: inst.segments.len(),
            ready_segments: ready.len(),
            stale_segments: signature.map_or(0, |sig| {
                ready.iter().filter(|s| !s.built_under(&sig)).count()
            }),
            name: c.name,
            model: c.model,
            project: cube_project,
            cuboids,
            problem,
        });
    }
    Ok(out)
}

/// Drops a cube: its instance, its descriptor, then its segments' stored data. Refused
/// (Busy) while one of its jobs is unfinished, naming the job.
pub fn drop_cube(meta: &Metadata, store: &dyn SegmentStore, name: &str) -> Result<CubeDropped> {
    validate_name("cube", name)?;
    let desc = meta.get_json::<CubeDesc>(&cube_desc_path(name))?;
    let inst = meta.get_json::<CubeInstance>(&cube_path(name))?;
    if desc.is_none() && inst.is_none() {
        return Err(not_found("cube", name));
    }
    if let Some(job) = unfinished_job(meta, name)? {
        return Err(Error::Busy(format!(
            "cube {name} has an unfinished job {} ({} of segment {}, {}); wait for it to end \
             or discard it (qilin-jobs jobs discard {}) before dropping the cube",
            job.id, job.kind, job.segment_name, job.status, job.id
        )));
    }
    // The instance goes first, on the version read after the job check: a job submitted
    // since then changed it, and this delete fails instead of orphaning that job.
    let mut segments = Vec::new();
    if let Some((inst, version)) = inst {
        meta.store()
            .check_and_delete(&cube_path(name), Some(version))?;
        segments = inst.segments.into_iter().map(|s| s.id).collect();
    }
    if let Some((_, version)) = desc {
        meta.store()
            .check_and_delete(&cube_desc_path(name), Some(version))?;
    }
    let mut leftover_data = Vec::new();
    for id in &segments {
        if let Err(e) = store.delete_segment(id) {
            log::warn!("cube {name} dropped, but the data of segment {id} stays: {e}");
            leftover_data.push(id.clone());
        }
    }
    Ok(CubeDropped {
        cube: name.to_string(),
        segments,
        leftover_data,
    })
}

/// The fields of a job (`/execute/ID.json`, written by the job engine) that decide whether
/// it still works on a cube.
#[derive(Debug, Deserialize)]
struct JobHeader {
    id: String,
    kind: String,
    cube: String,
    segment_name: String,
    status: String,
}

fn unfinished_job(meta: &Metadata, cube: &str) -> Result<Option<JobHeader>> {
    for path in meta.store().list("/execute")? {
        if let Some((job, _)) = meta.get_json::<JobHeader>(&path)? {
            let finished = matches!(job.status.as_str(), "SUCCEED" | "ERROR" | "DISCARDED");
            if job.cube == cube && !finished {
                return Ok(Some(job));
            }
        }
    }
    Ok(None)
}

fn resolve(meta: &Metadata, cube: &CubeDesc, max_cuboids: u64) -> Result<CubeLayout> {
    validate_name("cube", &cube.name)?;
    let model = meta.model(&cube.model)?;
    let tables = meta.tables(&model.project)?;
    resolve_cube(cube, &model, &tables, max_cuboids)
}

/// Gives the cube's segments without a signature the one they were built under.
fn stamp_unsigned_segments(meta: &Metadata, cube: &str, signature: &str) -> Result<()> {
    let unsigned = match meta.cube_instance(cube) {
        Ok((inst, _)) => inst
            .segments
            .iter()
            .any(|s| s.descriptor_signature.is_none()),
        Err(Error::NotFound { .. }) => false,
        Err(e) => return Err(e),
    };
    if !unsigned {
        return Ok(());
    }
    meta.update_cube(cube, |inst| {
        for s in &mut inst.segments {
            if s.descriptor_signature.is_none() {
                s.descriptor_signature = Some(signature.to_string());
            }
        }
        Ok(())
    })
}

fn stale_of(meta: &Metadata, cube: &str, signature: &str) -> Result<Vec<StaleSegment>> {
    match meta.cube_instance(cube) {
        Ok((inst, _)) => Ok(inst
            .ready_segments()
            .filter(|s| !s.built_under(signature))
            .map(|s| StaleSegment {
                cube: cube.to_string(),
                segment: s.name.clone(),
            })
            .collect()),
        Err(Error::NotFound { .. }) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn stored_bytes(meta: &Metadata, path: &str, kind: &'static str, name: &str) -> Result<Vec<u8>> {
    meta.store()
        .get(path)?
        .map(|r| r.data)
        .ok_or_else(|| not_found(kind, name))
}

fn not_found(kind: &'static str, name: &str) -> Error {
    Error::NotFound {
        kind,
        name: name.to_string(),
    }
}

// Plan -----------------------------------------------------------------------------------

/// A dry run of a cube: how many cuboids each aggregation group gives, and for each cuboid
/// an estimate of its rows and bytes from source statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CubePlan {
    pub cube: String,
    pub model: String,
    pub project: String,
    pub fact_table: String,
    pub fact_rows: u64,
    pub dimensions: Vec<DimensionEstimate>,
    pub aggregation_groups: Vec<GroupPlan>,
    /// Distinct cuboids of all groups plus the base cuboid.
    pub total_cuboids: usize,
    pub total_rows: u64,
    pub total_bytes: u64,
    /// The base cuboid first, then by fewer dimensions.
    pub cuboids: Vec<CuboidEstimate>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DimensionEstimate {
    pub name: String,
    /// `table.column` in the source (the lookup's table, not its alias).
    pub source: String,
    /// Distinct values (DataFusion's `approx_distinct` over the source table).
    pub cardinality: u64,
    /// Bytes per stored value.
    pub width: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupPlan {
    pub includes: Vec<String>,
    pub cuboids: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CuboidEstimate {
    pub id: u64,
    pub dimensions: Vec<String>,
    pub rows: u64,
    pub bytes: u64,
}

/// Plans `cube` without writing anything: validates it against the stored model and
/// tables, then estimates sizes from the source files under `source_url`. Rows of a cuboid
/// ≈ min(fact rows, product of its dimensions' cardinalities) — an upper bound, as
/// dimensions correlate (city determines nation); bytes ≈ rows × the stored row width
/// (dimension values plus measure states), before compression.
pub async fn plan_cube(
    meta: &Metadata,
    source_url: &Path,
    cube: &CubeDesc,
    max_cuboids: u64,
) -> Result<CubePlan> {
    let layout = resolve(meta, cube, max_cuboids)?;
    let model = &layout.model;
    let names: Vec<String> = layout.rowkey.iter().map(|r| r.name.clone()).collect();
    let mut groups = Vec::new();
    for (i, g) in cube.aggregation_groups.iter().enumerate() {
        let what = format!("cube {}, aggregation group {}", cube.name, i + 1);
        groups.push(GroupPlan {
            includes: g.includes.clone(),
            cuboids: enumerate_group(&what, g, &names, max_cuboids)?.len(),
        });
    }

    // The real table behind a model table name (a lookup's alias names its table).
    let table_of = |name: &str| -> String {
        model
            .lookups
            .iter()
            .find(|l| l.name().eq_ignore_ascii_case(name))
            .map(|l| l.table.clone())
            .unwrap_or_else(|| name.to_string())
    };
    let mut by_table: BTreeMap<String, Vec<(String, DataType)>> = BTreeMap::new();
    let mut note = |table: String, column: &str, dt: &DataType| {
        let cols = by_table.entry(table).or_default();
        if !cols.iter().any(|(c, _)| c == column) {
            cols.push((column.to_string(), dt.clone()));
        }
    };
    for r in &layout.rowkey {
        note(
            table_of(&r.source.table),
            &r.source.column,
            &r.source.data_type,
        );
    }
    for m in &layout.measures {
        if let (Some(input), StateKind::Hll(_) | StateKind::Bitmap) = (&m.input, m.state) {
            if input.expression.is_none() {
                note(table_of(&input.table), &input.column, &input.data_type);
            }
        }
    }
    let used: Vec<TableDesc> = layout
        .tables
        .iter()
        .filter(|t| {
            t.name.eq_ignore_ascii_case(&model.fact_table) || by_table.contains_key(&t.name)
        })
        .cloned()
        .collect();
    let ctx = crate::source::source_context(&used, source_url).await?;

    let fact_rows = {
        let sql = format!("SELECT count(*) FROM {}", quote(&model.fact_table));
        let batches = ctx.sql(&sql).await?.collect().await?;
        batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .map(|b| b.column(0).as_primitive::<Int64Type>().value(0).max(0) as u64)
            .unwrap_or(0)
    };
    // (table, column) → (cardinality, width)
    let mut stats: BTreeMap<(String, String), (u64, f64)> = BTreeMap::new();
    for (table, columns) in &by_table {
        let mut select = Vec::new();
        for (c, dt) in columns {
            select.push(format!("approx_distinct({})", quote(c)));
            if is_string(dt) {
                select.push(format!("avg(octet_length({}))", quote(c)));
            }
        }
        let sql = format!("SELECT {} FROM {}", select.join(", "), quote(table));
        let batches = ctx.sql(&sql).await?.collect().await?;
        let row = batches.iter().find(|b| b.num_rows() > 0);
        let mut i = 0;
        for (c, dt) in columns {
            let cardinality = row.map_or(0, |b| {
                let col = b.column(i);
                if col.is_null(0) {
                    0
                } else {
                    col.as_primitive::<UInt64Type>().value(0)
                }
            });
            i += 1;
            let width = if is_string(dt) {
                let avg = row.map_or(0.0, |b| {
                    let col = b.column(i);
                    if col.is_null(0) {
                        0.0
                    } else {
                        col.as_primitive::<Float64Type>().value(0)
                    }
                });
                i += 1;
                avg + 4.0 // the value plus its offset
            } else {
                fixed_width(dt)
            };
            stats.insert((table.clone(), c.clone()), (cardinality, width));
        }
    }

    let dimensions: Vec<DimensionEstimate> = layout
        .rowkey
        .iter()
        .map(|r| {
            let table = table_of(&r.source.table);
            let (cardinality, width) = stats
                .get(&(table.clone(), r.source.column.clone()))
                .copied()
                .unwrap_or((0, fixed_width(&r.source.data_type)));
            DimensionEstimate {
                name: r.name.clone(),
                source: format!("{table}.{}", r.source.column),
                cardinality,
                width,
            }
        })
        .collect();
    let distinct_inputs: Vec<Option<u64>> = layout
        .measures
        .iter()
        .map(|m| {
            // TOP_N keeps one counter per distinct `by` value.
            let input = match m.state {
                StateKind::TopN(_) => m.extra.as_ref()?,
                _ => m.input.as_ref()?,
            };
            stats
                .get(&(table_of(&input.table), input.column.clone()))
                .map(|s| s.0)
        })
        .collect();

    let mut cuboids = Vec::new();
    for &id in &layout.cuboids {
        let dims = layout.cuboid_columns(id);
        let product = dims
            .iter()
            .map(|&i| dimensions[i].cardinality as f64)
            .product::<f64>();
        let rows = (fact_rows as f64).min(product).round() as u64;
        // Source rows aggregated into one cuboid row, bounding the distinct values a
        // COUNT(DISTINCT) state holds.
        let per_row = if rows == 0 {
            0.0
        } else {
            fact_rows as f64 / rows as f64
        };
        let dims_width: f64 = dims.iter().map(|&i| dimensions[i].width).sum();
        let measures_width: f64 = layout
            .measures
            .iter()
            .zip(&distinct_inputs)
            .map(|(m, card)| {
                let distinct = card.map_or(per_row, |c| per_row.min(c as f64));
                match m.state {
                    StateKind::Hll(p) => ((1u64 << p) as f64).min(4.0 * distinct) + 8.0,
                    StateKind::Bitmap => 8.0 + 2.0 * distinct,
                    // Header, extremes, and a mean plus a one- or two-byte weight per
                    // centroid: one per value while few, at most about `compression`.
                    StateKind::Percentile(c) => 25.0 + 10.0 * per_row.min(f64::from(c)),
                    // Header, then per counter two varints, the part of the key text not
                    // shared with the key before it (the text guessed at 16 bytes, half
                    // shared) and a varint sum; at most the capacity (`measure::topn`).
                    StateKind::TopN(n) => {
                        14.0 + 15.0 * distinct.min(crate::measure::topn::capacity_of(n) as f64)
                    }
                    _ => 8.0,
                }
            })
            .sum();
        cuboids.push(CuboidEstimate {
            id,
            dimensions: layout.cuboid_names(id),
            rows,
            bytes: (rows as f64 * (dims_width + measures_width)).round() as u64,
        });
    }
    Ok(CubePlan {
        cube: cube.name.clone(),
        model: model.name.clone(),
        project: model.project.clone(),
        fact_table: model.fact_table.clone(),
        fact_rows,
        dimensions,
        aggregation_groups: groups,
        total_cuboids: cuboids.len(),
        total_rows: cuboids.iter().map(|c| c.rows).sum(),
        total_bytes: cuboids.iter().map(|c| c.bytes).sum(),
        cuboids,
    })
}

fn is_string(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// Bytes of a fixed-width dimension value.
fn fixed_width(dt: &DataType) -> f64 {
    dt.primitive_width().map_or(8.0, |w| w as f64).max(1.0)
}

impl CubePlan {
    /// The plan for people: groups, dimensions, totals, then one line per cuboid.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "cube {} (model {}, project {}): {} cuboids\n",
            self.cube, self.model, self.project, self.total_cuboids
        );
        s.push_str(&format!(
            "fact table {}: {} rows\n\naggregation groups:\n",
            self.fact_table, self.fact_rows
        ));
        for (i, g) in self.aggregation_groups.iter().enumerate() {
            s.push_str(&format!(
                "  {:>2}. {:>6} cuboids  ({})\n",
                i + 1,
                g.cuboids,
                g.includes.join(", ")
            ));
        }
        s.push_str(&format!(
            "  total {} cuboids (distinct cuboids of all groups and the base cuboid)\n\n",
            self.total_cuboids
        ));
        s.push_str("dimensions (rowkey order):\n");
        s.push_str(&format!(
            "  {:<24} {:<36} {:>12} {:>8}\n",
            "NAME", "SOURCE", "CARDINALITY", "BYTES"
        ));
        for d in &self.dimensions {
            s.push_str(&format!(
                "  {:<24} {:<36} {:>12} {:>8.1}\n",
                d.name, d.source, d.cardinality, d.width
            ));
        }
        s.push_str(&format!(
            "\nestimated size: {} rows, {} before compression \
             (rows per cuboid <= min(fact rows, product of cardinalities))\n\n",
            self.total_rows,
            human_bytes(self.total_bytes)
        ));
        s.push_str(&format!(
            "  {:>20} {:>12} {:>12}  DIMENSIONS\n",
            "CUBOID", "ROWS", "BYTES"
        ));
        for c in &self.cuboids {
            s.push_str(&format!(
                "  {:>20} {:>12} {:>12}  {}\n",
                c.id,
                c.rows,
                human_bytes(c.bytes),
                c.dimensions.join(", ")
            ));
        }
        s
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;
    use crate::metadata::managers::{job_path, table_path};
    use crate::metadata::LocalResourceStore;
    use crate::model::desc::{from_json, to_json};
    use crate::model::{Segment, SegmentRange, SegmentStatus};
    use crate::storage::LocalSegmentStore;

    const MAX: u64 = 4096;

    const MODEL: &str = r#"{
  "name": "sales_model",
  "project": "shop",
  "fact_table": "sales",
  "lookups": [
    {"table": "store", "join": "inner", "foreign_key": ["store_id"], "primary_key": ["s_id"]}
  ],
  "partition": {"column": "day"}
}"#;

    const CUBE: &str = r#"{
  "name": "sales_cube",
  "model": "sales_model",
  "dimensions": [{"column": "item"}, {"column": "city"}, {"column": "region"}],
  "measures": [
    {"name": "n", "function": "COUNT"},
    {"name": "qty_sum", "function": "SUM", "column": "qty"}
  ],
  "aggregation_groups": [
    {"includes": ["item", "city", "region"], "hierarchies": [["region", "city"]]}
  ],
  "table_index": {"columns": ["day", "item", "qty"], "sort_columns": ["day"]}
}"#;

    /// A store with project `shop`: `sales(day, store_id, item, qty)` with 6 rows over 3
    /// items and 3 stores; `store(s_id, city, region)` with 3 cities in 2 regions.
    struct Shop {
        dir: tempfile::TempDir,
        meta: Metadata,
    }

    impl Shop {
        fn new() -> Shop {
            let dir = tempfile::tempdir().unwrap();
            let source = dir.path().join("source");
            std::fs::create_dir_all(&source).unwrap();
            std::fs::write(
                source.join("sales.csv"),
                "day,store_id,item,qty\n20240101,1,apple,3\n20240101,2,pear,1\n\
                 20240102,3,apple,2\n20240102,1,plum,5\n20240103,2,plum,1\n20240103,3,pear,4\n",
            )
            .unwrap();
            std::fs::write(
                source.join("store.csv"),
                "s_id,city,region\n1,Lyon,south\n2,Nice,south\n3,Lille,north\n",
            )
            .unwrap();
            let meta = Metadata::new(Arc::new(
                LocalResourceStore::open(dir.path().join("meta")).unwrap(),
            ));
            create_project(
                &meta,
                &ProjectDesc {
                    name: "shop".into(),
                    description: String::new(),
                },
            )
            .unwrap();
            let table = |name: &str, cols: &[(&str, &str)]| TableDesc {
                project: "shop".into(),
                name: name.into(),
                location: format!("{name}.csv"),
                format: crate::model::SourceFormat::Csv,
                columns: cols
                    .iter()
                    .map(|(n, t)| crate::model::ColumnDesc {
                        name: n.to_string(),
                        data_type: t.to_string(),
                    })
                    .collect(),
                csv_delimiter: None,
                csv_header: None,
                partition_columns: vec![],
            };
            meta.save_table(&table(
                "sales",
                &[
                    ("day", "integer"),
                    ("store_id", "integer"),
                    ("item", "varchar"),
                    ("qty", "bigint"),
                ],
            ))
            .unwrap();
            meta.save_table(&table(
                "store",
                &[
                    ("s_id", "integer"),
                    ("city", "varchar"),
                    ("region", "varchar"),
                ],
            ))
            .unwrap();
            Shop { dir, meta }
        }

        fn source(&self) -> std::path::PathBuf {
            self.dir.path().join("source")
        }

        fn with_cube(self) -> Shop {
            put_model(&self.meta, &model(), MAX).unwrap();
            put_cube(&self.meta, &cube(), MAX).unwrap();
            self
        }

        fn config(&self) -> Config {
            let text = format!(
                "kylin.metadata.url={0}/meta\nkylin.storage.url={0}/segments\nkylin.source.url={0}/source\n",
                self.dir.path().display()
            );
            Config::from_parts(&text, "test", |_| None).unwrap()
        }

        /// Adds a READY segment for `[start, end)` with the given signature.
        fn add_ready(&self, id: &str, start: &str, end: &str, signature: Option<String>) {
            self.meta
                .update_cube("sales_cube", |inst| {
                    let range = SegmentRange::parse(start, end)?;
                    inst.segments.push(Segment {
                        id: id.into(),
                        name: crate::model::segment_name(Some(&range)),
                        range: Some(range),
                        status: SegmentStatus::Ready,
                        job_id: None,
                        replaces: vec![],
                        created_ms: 1,
                        ready_ms: Some(2),
                        source_rows: 6,
                        size_bytes: 0,
                        cuboids: vec![],
                        descriptor_signature: signature.clone(),
                        snapshots: vec![],
                        table_index: None,
                    });
                    Ok(())
                })
                .unwrap();
        }
    }

    fn model() -> ModelDesc {
        parse_document("model.json", MODEL.as_bytes()).unwrap()
    }

    fn cube() -> CubeDesc {
        parse_document("cube.json", CUBE.as_bytes()).unwrap()
    }

    fn message(e: Error) -> String {
        e.to_string()
    }

    #[test]
    fn a_bad_table_index_is_refused_naming_the_field_and_column() {
        let shop = Shop::new().with_cube();
        let bad = |columns: &[&str], sort: &[&str]| {
            let mut c = cube();
            c.table_index = Some(crate::model::TableIndexDesc {
                columns: columns.iter().map(|s| s.to_string()).collect(),
                sort_columns: sort.iter().map(|s| s.to_string()).collect(),
            });
            message(put_cube(&shop.meta, &c, MAX).unwrap_err())
        };
        let e = bad(&["day", "nope"], &[]);
        assert!(
            e.contains("table_index") && e.contains("columns") && e.contains("nope"),
            "{e}"
        );
        let e = bad(&["day", "item"], &["qty"]);
        assert!(e.contains("sort_columns") && e.contains("qty"), "{e}");
        let e = bad(&["day", "day"], &[]);
        assert!(e.contains("listed twice") && e.contains("day"), "{e}");
        // A lookup's column is not a fact-table column.
        let e = bad(&["store.city"], &[]);
        assert!(e.contains("store.city") && e.contains("fact table"), "{e}");
        // Omitted columns: every fact column, sortable by any.
        let mut c = cube();
        c.table_index = Some(crate::model::TableIndexDesc {
            columns: vec![],
            sort_columns: vec!["qty".into()],
        });
        put_cube(&shop.meta, &c, MAX).unwrap();
        let layout = shop.meta.cube_layout("sales_cube", MAX).unwrap();
        let ti = layout.table_index.unwrap();
        let names: Vec<&str> = ti.columns.iter().map(|c| c.column.as_str()).collect();
        assert_eq!(names, ["day", "store_id", "item", "qty"]);
        assert_eq!(ti.sort, [3]);
    }

    #[test]
    fn get_put_get_is_byte_identical() {
        let shop = Shop::new().with_cube();
        let model_bytes = get_model(&shop.meta, "sales_model").unwrap();
        assert_eq!(
            model_bytes,
            to_json(&model()),
            "the store keeps to_json output"
        );
        let again: ModelDesc = parse_document("got.json", &model_bytes).unwrap();
        let put = put_model(&shop.meta, &again, MAX).unwrap();
        assert!(!put.created);
        assert_eq!(put.cubes, vec!["sales_cube"]);
        assert_eq!(get_model(&shop.meta, "sales_model").unwrap(), model_bytes);

        let cube_bytes = get_cube(&shop.meta, "sales_cube").unwrap();
        let again: CubeDesc = parse_document("got.json", &cube_bytes).unwrap();
        let put = put_cube(&shop.meta, &again, MAX).unwrap();
        assert!(!put.created);
        // (item, city, region) with hierarchy region > city: 2 × 3 = 6 cuboids, base included.
        assert_eq!(put.cuboids, 6);
        assert_eq!(get_cube(&shop.meta, "sales_cube").unwrap(), cube_bytes);

        let cubes = list_cubes(&shop.meta, Some("shop"), MAX).unwrap();
        assert_eq!(cubes.len(), 1);
        assert_eq!(cubes[0].cuboids, Some(6));
        assert_eq!(cubes[0].project.as_deref(), Some("shop"));
        let models = list_models(&shop.meta, None).unwrap();
        assert_eq!(models[0].cubes, vec!["sales_cube"]);
        let projects = list_projects(&shop.meta).unwrap();
        assert_eq!(
            (projects[0].tables, projects[0].models, projects[0].cubes),
            (2, 1, 1)
        );
    }

    #[test]
    fn malformed_json_and_unknown_fields_name_the_document_and_field() {
        let e = message(
            parse_document::<ModelDesc>("m.json", b"{\"name\": \"x\",\n  \"project\": }")
                .unwrap_err(),
        );
        assert!(e.contains("m.json") && e.contains("line 2"), "{e}");

        let bad = MODEL.replace("\"join\": \"inner\"", "\"join\": \"inner\", \"colour\": 1");
        let e = message(parse_document::<ModelDesc>("m.json", bad.as_bytes()).unwrap_err());
        assert!(
            e.contains("m.json") && e.contains("lookups[0]") && e.contains("colour"),
            "{e}"
        );
        let bad = CUBE.replace("\"COUNT\"", "\"AVERAGE\"");
        let e = message(parse_document::<CubeDesc>("c.json", bad.as_bytes()).unwrap_err());
        assert!(
            e.contains("measures[0].function") && e.contains("AVERAGE"),
            "{e}"
        );
        let e = message(
            parse_document::<CubeDesc>("c.json", format!("{CUBE} {{}}").as_bytes()).unwrap_err(),
        );
        assert!(e.contains("c.json") && e.contains("trailing"), "{e}");

        // --project fills in a missing project and refuses another one.
        let without = MODEL.replace("\"project\": \"shop\",", "");
        let m = parse_model("m.json", without.as_bytes(), Some("shop")).unwrap();
        assert_eq!(m, model());
        let e = message(parse_model("m.json", MODEL.as_bytes(), Some("other")).unwrap_err());
        assert!(e.contains("\"shop\"") && e.contains("other"), "{e}");
    }

    #[test]
    fn invalid_cubes_are_refused_and_nothing_is_written() {
        let shop = Shop::new();
        put_model(&shop.meta, &model(), MAX).unwrap();
        let mut c = cube();
        c.dimensions[1].column = Some("town".into());
        let e = message(put_cube(&shop.meta, &c, MAX).unwrap_err());
        assert!(e.contains("cube sales_cube") && e.contains("town"), "{e}");
        assert!(shop
            .meta
            .store()
            .get(&cube_desc_path("sales_cube"))
            .unwrap()
            .is_none());
        assert!(shop
            .meta
            .store()
            .get(&cube_path("sales_cube"))
            .unwrap()
            .is_none());

        // Three free dimensions make 8 cuboids in one group; the limit is 4.
        let mut c = cube();
        c.aggregation_groups[0].hierarchies.clear();
        let e = message(put_cube(&shop.meta, &c, 4).unwrap_err());
        assert!(e.contains("aggregation group 1"), "{e}");
        assert!(shop
            .meta
            .store()
            .get(&cube_desc_path("sales_cube"))
            .unwrap()
            .is_none());

        let mut c = cube();
        c.model = "no_model".into();
        let e = put_cube(&shop.meta, &c, MAX).unwrap_err();
        assert!(matches!(e, Error::NotFound { kind: "model", .. }), "{e}");
    }

    #[test]
    fn a_model_change_that_breaks_a_cube_is_refused_naming_it() {
        let shop = Shop::new().with_cube();
        let before = get_model(&shop.meta, "sales_model").unwrap();
        let mut m = model();
        m.lookups.clear(); // city and region are no longer in the model
        let e = message(put_model(&shop.meta, &m, MAX).unwrap_err());
        assert!(e.contains("cube sales_cube") && e.contains("city"), "{e}");
        assert_eq!(get_model(&shop.meta, "sales_model").unwrap(), before);

        let mut m = model();
        m.fact_table = "nope".into();
        let e = message(put_model(&shop.meta, &m, MAX).unwrap_err());
        assert!(e.contains("nope"), "{e}");
        m.project = "elsewhere".into();
        let e = put_model(&shop.meta, &m, MAX).unwrap_err();
        assert!(
            matches!(
                e,
                Error::NotFound {
                    kind: "project",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn drops_are_refused_while_something_depends_on_them() {
        let shop = Shop::new().with_cube();
        let e = message(drop_model(&shop.meta, "sales_model").unwrap_err());
        assert!(e.contains("used by cube sales_cube"), "{e}");
        let e = message(drop_project(&shop.meta, "shop").unwrap_err());
        assert!(e.contains("cube sales_cube"), "{e}");
        let e = create_project(
            &shop.meta,
            &ProjectDesc {
                name: "shop".into(),
                description: String::new(),
            },
        )
        .unwrap_err();
        assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");

        // A segment with stored data, and an unfinished job of the cube.
        let segments = LocalSegmentStore::open(shop.dir.path().join("segments")).unwrap();
        let seg = "0000aaaa-0000-4000-8000-000000000001";
        segments.put_block(seg, 7, 0, b"block").unwrap();
        segments.sync_segment(seg).unwrap();
        shop.add_ready(seg, "2024-01-01", "2024-01-04", None);
        let job = "5f0c0b9e-0000-4000-8000-000000000000";
        let job_json = |status: &str| {
            serde_json::json!({"id": job, "kind": "BUILD", "cube": "sales_cube",
                "segment_name": "x", "status": status, "other": "fields"})
        };
        shop.meta
            .put_json(&job_path(job), &job_json("RUNNING"), None)
            .unwrap();
        let e = drop_cube(&shop.meta, &segments, "sales_cube").unwrap_err();
        assert!(matches!(e, Error::Busy(_)), "{e}");
        assert!(e.to_string().contains(job), "{e}");
        assert!(shop.meta.cube_instance("sales_cube").is_ok());

        shop.meta
            .store()
            .put(&job_path(job), &to_json(&job_json("SUCCEED")))
            .unwrap();
        let dropped = drop_cube(&shop.meta, &segments, "sales_cube").unwrap();
        assert_eq!(dropped.segments, vec![seg]);
        assert!(dropped.leftover_data.is_empty());
        assert!(segments.list_segments().unwrap().is_empty());
        assert!(shop
            .meta
            .store()
            .get(&cube_path("sales_cube"))
            .unwrap()
            .is_none());
        assert!(shop
            .meta
            .store()
            .get(&cube_desc_path("sales_cube"))
            .unwrap()
            .is_none());
        assert!(matches!(
            drop_cube(&shop.meta, &segments, "sales_cube").unwrap_err(),
            Error::NotFound { .. }
        ));

        // Then the model, then the tables (still there), then the project.
        drop_model(&shop.meta, "sales_model").unwrap();
        let e = message(drop_project(&shop.meta, "shop").unwrap_err());
        assert!(e.contains("table sales"), "{e}");
        for t in ["sales", "store"] {
            shop.meta
                .store()
                .check_and_delete(&table_path("shop", t), None)
                .unwrap();
        }
        drop_project(&shop.meta, "shop").unwrap();
        assert!(list_projects(&shop.meta).unwrap().is_empty());
    }

    #[test]
    fn segments_of_an_earlier_descriptor_are_not_queried() {
        let shop = Shop::new().with_cube();
        let config = shop.config();
        let layout = shop.meta.cube_layout("sales_cube", MAX).unwrap();
        let old_signature = descriptor_signature(&layout);
        // One segment from before signatures, one signed.
        shop.add_ready(
            "0000aaaa-0000-4000-8000-000000000001",
            "2024-01-01",
            "2024-01-02",
            None,
        );
        shop.add_ready(
            "0000aaaa-0000-4000-8000-000000000002",
            "2024-01-02",
            "2024-01-03",
            Some(old_signature.clone()),
        );
        let queried = |shop: &Shop| -> Vec<String> {
            let version = shop.meta.store().store_version().unwrap();
            let snap = crate::query::load_catalog(&shop.meta, &config, version).unwrap();
            snap.projects[0].realizations[0]
                .segments
                .iter()
                .map(|s| s.id.clone())
                .collect()
        };
        assert_eq!(queried(&shop).len(), 2, "both match the current descriptor");

        // Same descriptor again: nothing turns stale, nothing is stamped.
        let put = put_cube(&shop.meta, &cube(), MAX).unwrap();
        assert!(put.stale_segments.is_empty());
        assert_eq!(put.signature, old_signature);

        // A new measure changes what segments store.
        let mut c = cube();
        c.measures.push(
            parse_value(
                "measure",
                serde_json::json!(
            {"name": "qty_max", "function": "MAX", "column": "qty"}),
            )
            .unwrap(),
        );
        let put = put_cube(&shop.meta, &c, MAX).unwrap();
        assert_ne!(put.signature, old_signature);
        assert_eq!(put.stale_segments.len(), 2, "{put:?}");
        let (inst, _) = shop.meta.cube_instance("sales_cube").unwrap();
        assert!(inst
            .segments
            .iter()
            .all(|s| s.descriptor_signature.as_deref() == Some(old_signature.as_str())));
        assert!(queried(&shop).is_empty(), "stale segments are skipped");
        shop.add_ready(
            "0000aaaa-0000-4000-8000-000000000003",
            "2024-01-03",
            "2024-01-04",
            Some(put.signature.clone()),
        );
        assert_eq!(queried(&shop), vec!["0000aaaa-0000-4000-8000-000000000003"]);
        let listed = list_cubes(&shop.meta, None, MAX).unwrap();
        assert_eq!((listed[0].ready_segments, listed[0].stale_segments), (3, 2));

        // A model change that keeps the cube valid but changes its rows (a filter) makes
        // every segment stale too.
        let mut m = model();
        m.filter_condition = Some("qty > 1".into());
        let put = put_model(&shop.meta, &m, MAX).unwrap();
        assert_eq!(put.stale_segments.len(), 3, "{put:?}");
        assert!(queried(&shop).is_empty());
    }

    #[tokio::test]
    async fn plan_estimates_cuboids_from_source_statistics() {
        let shop = Shop::new();
        put_model(&shop.meta, &model(), MAX).unwrap();
        let plan = plan_cube(&shop.meta, &shop.source(), &cube(), MAX)
            .await
            .unwrap();
        assert!(
            shop.meta
                .store()
                .get(&cube_desc_path("sales_cube"))
                .unwrap()
                .is_none(),
            "a plan writes nothing"
        );
        assert_eq!(plan.fact_rows, 6);
        let card: Vec<(String, u64)> = plan
            .dimensions
            .iter()
            .map(|d| (d.name.clone(), d.cardinality))
            .collect();
        assert_eq!(
            card,
            vec![("item".into(), 3), ("city".into(), 3), ("region".into(), 2)]
        );
        assert_eq!(plan.dimensions[1].source, "store.city");
        assert_eq!(plan.aggregation_groups[0].cuboids, 6);
        assert_eq!(plan.total_cuboids, 6);
        let rows = |dims: &[&str]| {
            plan.cuboids
                .iter()
                .find(|c| c.dimensions == dims)
                .unwrap_or_else(|| panic!("no cuboid {dims:?}"))
                .rows
        };
        assert_eq!(
            rows(&["item", "city", "region"]),
            6,
            "capped by the fact rows"
        );
        assert_eq!(rows(&["region"]), 2);
        assert_eq!(rows(&["item", "region"]), 6);
        assert_eq!(rows(&[]), 1);
        assert_eq!(
            plan.total_rows,
            plan.cuboids.iter().map(|c| c.rows).sum::<u64>()
        );
        assert!(
            plan.cuboids.iter().all(|c| c.bytes >= c.rows * 16),
            "{plan:?}"
        );
        let text = plan.to_text();
        assert!(
            text.contains("6 cuboids") && text.contains("store.city"),
            "{text}"
        );
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["fact_rows"], 6);

        // Validation comes first.
        let mut c = cube();
        c.dimensions[0].column = Some("nope".into());
        let e = message(
            plan_cube(&shop.meta, &shop.source(), &c, MAX)
                .await
                .unwrap_err(),
        );
        assert!(e.contains("nope"), "{e}");
    }

    /// `QILIN_WRITE_EXAMPLES=1 cargo test -p qilin-engine shipped_ssb_example` rewrites them.
    #[test]
    fn the_shipped_ssb_example_matches_the_sample() {
        use crate::sample::ssb;
        if std::env::var_os("QILIN_WRITE_EXAMPLES").is_some() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/examples/ssb");
            std::fs::write(dir.join("ssb_model.json"), to_json(&ssb::model())).unwrap();
            std::fs::write(dir.join("ssb_cube.json"), to_json(&ssb::cube())).unwrap();
            std::fs::write(dir.join("ssb_project.json"), to_json(&ssb::project())).unwrap();
            return;
        }
        let model = include_bytes!("../../../conf/examples/ssb/ssb_model.json");
        let cube = include_bytes!("../../../conf/examples/ssb/ssb_cube.json");
        assert_eq!(
            String::from_utf8_lossy(model),
            String::from_utf8_lossy(&to_json(&ssb::model())),
            "regenerate conf/examples/ssb/ssb_model.json from sample::ssb::model()"
        );
        assert_eq!(
            String::from_utf8_lossy(cube),
            String::from_utf8_lossy(&to_json(&ssb::cube())),
            "regenerate conf/examples/ssb/ssb_cube.json from sample::ssb::cube()"
        );
        let parsed: CubeDesc = from_json("ssb_cube.json", cube).unwrap();
        assert_eq!(parsed, ssb::cube());
    }
}
