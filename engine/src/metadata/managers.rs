//! Typed access to the metadata store: projects, tables, models, cube descriptors, cube
//! instances and jobs, each a JSON resource at a fixed path. Names are validated before they
//! become paths.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::ResourceStore;
use crate::error::{Error, Result};
use crate::model::{
    desc::{from_json, to_json},
    layout::{resolve_cube, validate_model},
    CubeDesc, CubeInstance, CubeLayout, ModelDesc, ProjectDesc, TableDesc,
};
use crate::names::validate_name;

/// How many times an optimistic update re-reads and retries after losing a race.
const MAX_UPDATE_ATTEMPTS: usize = 64;

#[derive(Debug, Clone)]
pub struct Metadata {
    store: Arc<dyn ResourceStore>,
}

pub fn project_path(name: &str) -> String {
    format!("/project/{name}.json")
}
pub fn table_path(project: &str, name: &str) -> String {
    format!("/table/{project}.{name}.json")
}
pub fn model_path(name: &str) -> String {
    format!("/model_desc/{name}.json")
}
pub fn cube_desc_path(name: &str) -> String {
    format!("/cube_desc/{name}.json")
}
pub fn cube_path(name: &str) -> String {
    format!("/cube/{name}.json")
}
pub fn job_path(id: &str) -> String {
    format!("/execute/{id}.json")
}

impl Metadata {
    pub fn new(store: Arc<dyn ResourceStore>) -> Self {
        Metadata { store }
    }

    pub fn store(&self) -> &Arc<dyn ResourceStore> {
        &self.store
    }

    /// Reads and parses a JSON resource with its version.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<Option<(T, u64)>> {
        match self.store.get(path)? {
            Some(r) => Ok(Some((from_json(path, &r.data)?, r.version))),
            None => Ok(None),
        }
    }

    /// Writes a JSON resource if its version is still `expected`.
    pub fn put_json<T: Serialize>(
        &self,
        path: &str,
        value: &T,
        expected: Option<u64>,
    ) -> Result<u64> {
        self.store.check_and_put(path, &to_json(value), expected)
    }

    /// Optimistic read-modify-write: `f` sees the current value (or `None`) and returns the new
    /// one; on a lost race it runs again on the fresh value. `f` re-checks its preconditions
    /// each time, so a retry never overwrites someone else's change blindly.
    pub fn update_json<T, R>(
        &self,
        path: &str,
        mut f: impl FnMut(Option<T>) -> Result<(T, R)>,
    ) -> Result<(R, u64)>
    where
        T: Serialize + DeserializeOwned,
    {
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let current = self.get_json::<T>(path)?;
            let expected = current.as_ref().map(|(_, v)| *v);
            let (next, out) = f(current.map(|(t, _)| t))?;
            match self.put_json(path, &next, expected) {
                Ok(v) => return Ok((out, v)),
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Refused(format!(
            "{path} changed {MAX_UPDATE_ATTEMPTS} times while updating it; try again"
        )))
    }

    fn list_json<T: DeserializeOwned>(&self, folder: &str) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for p in self.store.list(folder)? {
            if let Some((t, _)) = self.get_json::<T>(&p)? {
                out.push(t);
            }
        }
        Ok(out)
    }

    fn require<T: DeserializeOwned>(
        &self,
        kind: &'static str,
        name: &str,
        path: &str,
    ) -> Result<T> {
        self.get_json(path)?
            .map(|(t, _)| t)
            .ok_or_else(|| Error::NotFound {
                kind,
                name: name.to_string(),
            })
    }

    // Projects ---------------------------------------------------------------------------

    pub fn project(&self, name: &str) -> Result<Option<ProjectDesc>> {
        validate_name("project", name)?;
        Ok(self.get_json(&project_path(name))?.map(|(p, _)| p))
    }

    pub fn projects(&self) -> Result<Vec<ProjectDesc>> {
        self.list_json("/project")
    }

    /// Creates or replaces a project.
    pub fn save_project(&self, p: &ProjectDesc) -> Result<()> {
        validate_name("project", &p.name)?;
        self.store
            .put(&project_path(&p.name), &to_json(p))
            .map(|_| ())
    }

    // Tables -----------------------------------------------------------------------------

    pub fn table(&self, project: &str, name: &str) -> Result<TableDesc> {
        validate_name("project", project)?;
        validate_name("table", name)?;
        self.require(
            "table",
            &format!("{project}.{name}"),
            &table_path(project, name),
        )
    }

    pub fn tables(&self, project: &str) -> Result<Vec<TableDesc>> {
        validate_name("project", project)?;
        Ok(self
            .list_json::<TableDesc>("/table")?
            .into_iter()
            .filter(|t| t.project == project)
            .collect())
    }

    pub fn save_table(&self, t: &TableDesc) -> Result<()> {
        validate_name("project", &t.project)?;
        validate_name("table", &t.name)?;
        if self.project(&t.project)?.is_none() {
            return Err(Error::NotFound {
                kind: "project",
                name: t.project.clone(),
            });
        }
        for c in &t.columns {
            validate_name("column", &c.name)?;
            if crate::model::parse_sql_type(&c.data_type).is_none() {
                return Err(Error::invalid(
                    format!("table {}", t.name),
                    format!("column {}: unknown type {:?}", c.name, c.data_type),
                ));
            }
        }
        self.store
            .put(&table_path(&t.project, &t.name), &to_json(t))
            .map(|_| ())
    }

    // Models -----------------------------------------------------------------------------

    pub fn model(&self, name: &str) -> Result<ModelDesc> {
        validate_name("model", name)?;
        self.require("model", name, &model_path(name))
    }

    pub fn models(&self) -> Result<Vec<ModelDesc>> {
        self.list_json("/model_desc")
    }

    /// Validates the model against its project's tables, then saves it.
    pub fn save_model(&self, m: &ModelDesc) -> Result<()> {
        validate_name("model", &m.name)?;
        let tables = self.tables(&m.project)?;
        validate_model(m, &tables)?;
        self.store
            .put(&model_path(&m.name), &to_json(m))
            .map(|_| ())
    }

    // Cubes ------------------------------------------------------------------------------

    pub fn cube_desc(&self, name: &str) -> Result<CubeDesc> {
        validate_name("cube", name)?;
        self.require("cube", name, &cube_desc_path(name))
    }

    pub fn cube_descs(&self) -> Result<Vec<CubeDesc>> {
        self.list_json("/cube_desc")
    }

    /// Validates the cube against its model, saves it and creates its (empty) instance.
    /// Changing a cube that has segments is refused: its stored cuboids would no longer match.
    pub fn save_cube(&self, c: &CubeDesc, max_cuboids_per_group: u64) -> Result<CubeLayout> {
        let model = self.model(&c.model)?;
        let tables = self.tables(&model.project)?;
        let layout = resolve_cube(c, &model, &tables, max_cuboids_per_group)?;
        if let Some((inst, _)) = self.get_json::<CubeInstance>(&cube_path(&c.name))? {
            let old = self.cube_desc(&c.name).ok();
            if !inst.segments.is_empty() && old.as_ref() != Some(c) {
                return Err(Error::Refused(format!(
                    "cube {} has {} segment(s); drop them before changing its descriptor",
                    c.name,
                    inst.segments.len()
                )));
            }
        }
        self.store.put(&cube_desc_path(&c.name), &to_json(c))?;
        self.update_json::<CubeInstance, ()>(&cube_path(&c.name), |cur| {
            Ok((cur.unwrap_or_else(|| CubeInstance::new(&c.name)), ()))
        })?;
        Ok(layout)
    }

    /// The validated layout of a saved cube.
    pub fn cube_layout(&self, name: &str, max_cuboids_per_group: u64) -> Result<CubeLayout> {
        let desc = self.cube_desc(name)?;
        let model = self.model(&desc.model)?;
        let tables = self.tables(&model.project)?;
        resolve_cube(&desc, &model, &tables, max_cuboids_per_group)
    }

    /// The cube instance with its version.
    pub fn cube_instance(&self, name: &str) -> Result<(CubeInstance, u64)> {
        validate_name("cube", name)?;
        self.get_json(&cube_path(name))?
            .ok_or_else(|| Error::NotFound {
                kind: "cube",
                name: name.to_string(),
            })
    }

    /// Read-modify-write of a cube instance (see [`Metadata::update_json`]).
    pub fn update_cube<R>(
        &self,
        name: &str,
        mut f: impl FnMut(&mut CubeInstance) -> Result<R>,
    ) -> Result<R> {
        validate_name("cube", name)?;
        self.update_json::<CubeInstance, R>(&cube_path(name), |cur| {
            let mut inst = cur.ok_or_else(|| Error::NotFound {
                kind: "cube",
                name: name.to_string(),
            })?;
            let r = f(&mut inst)?;
            inst.sort_segments();
            Ok((inst, r))
        })
        .map(|(r, _)| r)
    }
}
