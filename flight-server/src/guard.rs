//! Who may run which action: the project role each catalog and job action needs, checked
//! before the action runs, and what listings leave out.
//!
//! Creating and dropping projects needs a global admin; adding, reloading and dropping tables
//! and putting or dropping models and cubes need MANAGEMENT in their project; building needs
//! OPERATION; reading (get, show, list, plan) needs QUERY. A project the caller holds no role
//! in is NOT_FOUND, and so is a model, cube or table in it: the answer must not confirm that
//! it exists. Listings without a project keep only what the caller sees.

use qilin_engine::metadata::managers::Metadata;
use qilin_engine::security::{Access, ProjectRole};
use qilin_engine::Error;
use serde_json::Value;

use crate::service::BUILD_ACTION;

/// Why an action did not run.
#[derive(Debug)]
pub enum Refusal {
    /// The caller may not (audited as denied).
    Denied(Error),
    /// Bad input, an unknown object, a conflict (audited as failed when it was a change).
    Failed(Error),
}

impl Refusal {
    pub fn error(&self) -> &Error {
        match self {
            Refusal::Denied(e) | Refusal::Failed(e) => e,
        }
    }
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Refusal {
        Refusal::Failed(e)
    }
}

/// An action's body as JSON (an empty body is `{}`); the action parses it properly later.
pub fn body_value(action: &str, body: &[u8]) -> Result<Value, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_slice(body)
        .map_err(|e| Error::invalid(format!("{action} body"), e.to_string()))
}

/// A string field of a body (`path` walks nested objects: `["cube", "model"]`).
pub fn string_field<'a>(action: &str, v: &'a Value, path: &[&str]) -> Result<&'a str, Error> {
    optional_string(action, v, path)?.ok_or_else(|| {
        Error::invalid(
            format!("{action} body"),
            format!("missing string field \"{}\"", path.join(".")),
        )
    })
}

/// An optional string field; present but not a string is an error.
pub fn optional_string<'a>(
    action: &str,
    v: &'a Value,
    path: &[&str],
) -> Result<Option<&'a str>, Error> {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            None | Some(Value::Null) => return Ok(None),
            Some(next) => cur = next,
        }
    }
    match cur {
        Value::String(s) => Ok(Some(s)),
        _ => Err(Error::invalid(
            format!("{action} body"),
            format!("\"{}\" must be a string", path.join(".")),
        )),
    }
}

/// Checks that `access` may run `action` with `body`, reading the project of a model or cube
/// from the store. Global admins pass without a look at the body.
pub fn check_action(
    meta: &Metadata,
    access: &Access,
    action: &str,
    body: &[u8],
) -> Result<(), Refusal> {
    if access.admin {
        return Ok(());
    }
    let v = body_value(action, body)?;
    let s = |path: &[&str]| string_field(action, &v, path).map_err(Refusal::Failed);
    use ProjectRole::*;
    match action {
        "qilin.project.create" | "qilin.project.drop" => {
            access.require_admin(action).map_err(Refusal::Denied)
        }
        "qilin.project.list" => Ok(()),
        "qilin.table.add" | "qilin.table.reload" | "qilin.table.drop" => {
            let (p, t) = (s(&["project"])?, s(&["name"])?);
            need(access, p, Management, action, "project", p)?;
            hidden_table(access, p, t)
        }
        "qilin.table.list" => need(access, s(&["project"])?, Query, action, "project", ""),
        "qilin.table.show" => {
            let (p, t) = (s(&["project"])?, s(&["name"])?);
            need(access, p, Query, action, "project", p)?;
            hidden_table(access, p, t)
        }
        "qilin.model.list" | "qilin.cube.list" => {
            match optional_string(action, &v, &["project"])? {
                Some(p) => need(access, p, Query, action, "project", p),
                None => Ok(()),
            }
        }
        "qilin.model.get" | "qilin.model.drop" => {
            let name = s(&["name"])?;
            let project = meta.model(name)?.project;
            let role = if action.ends_with(".get") {
                Query
            } else {
                Management
            };
            need(access, &project, role, action, "model", name)
        }
        "qilin.model.put" => {
            let project = match optional_string(action, &v, &["project"])? {
                Some(p) => p,
                None => s(&["model", "project"])?,
            };
            let name = s(&["model", "name"])?;
            need(access, project, Management, action, "project", project)?;
            // Replacing a model of another project moves it: the caller must manage that
            // one too, and must not learn where it is if it does not see it.
            match meta.model(name) {
                Ok(old) if !old.project.eq_ignore_ascii_case(project) => {
                    taken(access, &old.project, action, "model", name)
                }
                _ => Ok(()),
            }
        }
        "qilin.cube.get" | "qilin.cube.drop" | BUILD_ACTION => {
            let name = if action == BUILD_ACTION {
                s(&["cube"])?
            } else {
                s(&["name"])?
            };
            let project = cube_project(meta, access, name)?;
            let role = match action {
                "qilin.cube.get" => Query,
                "qilin.cube.drop" => Management,
                _ => Operation,
            };
            need(access, &project, role, action, "cube", name)
        }
        "qilin.cube.put" | "qilin.cube.plan" => {
            let (name, model) = (s(&["cube", "name"])?, s(&["cube", "model"])?);
            let project = meta.model(model)?.project;
            let role = if action.ends_with(".put") {
                Management
            } else {
                Query
            };
            need(access, &project, role, action, "model", model)?;
            if role == Management {
                if let Ok(old) = cube_project(meta, access, name) {
                    if !old.eq_ignore_ascii_case(&project) {
                        return taken(access, &old, action, "cube", name);
                    }
                }
            }
            Ok(())
        }
        // Not a catalog or job action: whoever runs it checks it.
        _ => Ok(()),
    }
}

/// `access.require`, except that a project the caller does not see is reported as the object
/// it asked for (`kind name`) not being found, so a name in another project reveals nothing.
pub fn need(
    access: &Access,
    project: &str,
    role: ProjectRole,
    action: &str,
    kind: &'static str,
    name: &str,
) -> Result<(), Refusal> {
    if !access.sees_project(project) {
        let name = if kind == "project" || name.is_empty() {
            project
        } else {
            name
        };
        return Err(Refusal::Denied(Error::NotFound {
            kind,
            name: name.to_string(),
        }));
    }
    let what = if kind == "project" {
        action.to_string()
    } else {
        format!("{action} of {kind} {name}")
    };
    access
        .require(project, role, &what)
        .map_err(Refusal::Denied)
}

/// A denied table is not found, as if it did not exist.
fn hidden_table(access: &Access, project: &str, table: &str) -> Result<(), Refusal> {
    if access.restriction(project, table).is_some_and(|r| r.denied) {
        return Err(Refusal::Denied(Error::NotFound {
            kind: "table",
            name: format!("{project}.{table}"),
        }));
    }
    Ok(())
}

/// A name already used in another project: the caller needs MANAGEMENT there too; if it does
/// not see that project, the name is simply taken.
fn taken(
    access: &Access,
    other_project: &str,
    action: &str,
    kind: &'static str,
    name: &str,
) -> Result<(), Refusal> {
    if !access.sees_project(other_project) {
        return Err(Refusal::Denied(Error::AlreadyExists {
            kind,
            name: name.to_string(),
        }));
    }
    need(
        access,
        other_project,
        ProjectRole::Management,
        action,
        kind,
        name,
    )
}

/// The project of a cube (through its model). A cube whose model is gone has none a
/// non-admin could hold a role in: not found.
pub fn cube_project(meta: &Metadata, access: &Access, cube: &str) -> Result<String, Refusal> {
    let desc = meta.cube_desc(cube)?;
    match meta.model(&desc.model) {
        Ok(m) => Ok(m.project),
        Err(Error::NotFound { .. }) if !access.admin => Err(Refusal::Denied(Error::NotFound {
            kind: "cube",
            name: cube.to_string(),
        })),
        Err(e) => Err(Refusal::Failed(e)),
    }
}

/// Leaves out of a table as JSON (a `TableDesc`) the columns denied to the caller; `false`
/// when the whole table is hidden from it.
pub fn visible_table_json(access: &Access, table: &mut Value) -> bool {
    if access.admin {
        return true;
    }
    let (Some(project), Some(name)) = (
        table.get("project").and_then(Value::as_str),
        table.get("name").and_then(Value::as_str),
    ) else {
        return true;
    };
    if !access.sees_project(project) {
        return false;
    }
    let Some(r) = access.restriction(project, name).cloned() else {
        return true;
    };
    if r.denied {
        return false;
    }
    if let Some(Value::Array(columns)) = table.get_mut("columns") {
        columns.retain(|c| {
            c.get("name")
                .and_then(Value::as_str)
                .is_none_or(|n| !r.denies_column(n))
        });
    }
    true
}

/// What an action was done to, for the audit log (`cube ssb_sales`, `table ssb.customer`).
pub fn target(action: &str, body: &[u8]) -> String {
    let Ok(v) = body_value(action, body) else {
        return String::new();
    };
    let get = |path: &[&str]| {
        optional_string(action, &v, path)
            .ok()
            .flatten()
            .map(str::to_string)
    };
    let kind = action
        .strip_prefix("qilin.")
        .and_then(|a| a.split('.').next())
        .unwrap_or(action);
    let name = match kind {
        "table" => match (get(&["project"]), get(&["name"])) {
            (Some(p), Some(n)) => Some(format!("{p}.{n}")),
            (Some(p), None) => Some(p),
            _ => None,
        },
        "model" => get(&["name"])
            .or_else(|| get(&["model", "name"]))
            .or_else(|| get(&["project"]).map(|p| format!("in project {p}"))),
        "cube" => get(&["name"])
            .or_else(|| get(&["cube", "name"]))
            .or_else(|| get(&["project"]).map(|p| format!("in project {p}"))),
        "build" => return get(&["cube"]).map_or_else(String::new, |c| format!("cube {c}")),
        "project" => get(&["name"])
            .or_else(|| get(&["project", "name"]))
            .or_else(|| get(&["project"])),
        "user" => get(&["name"]),
        "apikey" => get(&["id"]).or_else(|| get(&["user"])),
        "acl" => get(&["id"]).or_else(|| match (get(&["project"]), get(&["table"])) {
            (Some(p), Some(t)) => Some(format!("{p}.{t}")),
            (p, _) => p,
        }),
        "grant" | "revoke" => get(&["project"]),
        _ => None,
    };
    let kind = match kind {
        "grant" | "revoke" => "project",
        "acl" if get(&["id"]).is_some() => "rule",
        "acl" => "table",
        "apikey" if get(&["id"]).is_some() => "api key",
        "apikey" => "user",
        k => k,
    };
    name.map_or_else(String::new, |n| format!("{kind} {n}"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use qilin_engine::error::ErrorKind;
    use qilin_engine::security::TableRestriction;

    use super::*;

    fn user(role: ProjectRole) -> Access {
        let mut a = Access::unrestricted("bob");
        a.admin = false;
        a.projects.insert("ssb".into(), role);
        a
    }

    fn meta() -> (tempfile::TempDir, Metadata) {
        let dir = tempfile::tempdir().unwrap();
        let meta = Metadata::new(std::sync::Arc::new(
            qilin_engine::metadata::LocalResourceStore::open(dir.path().join("meta")).unwrap(),
        ));
        (dir, meta)
    }

    fn kind(r: Result<(), Refusal>) -> (bool, ErrorKind) {
        match r.unwrap_err() {
            Refusal::Denied(e) => (true, e.kind()),
            Refusal::Failed(e) => (false, e.kind()),
        }
    }

    #[test]
    fn roles_by_action_and_hidden_projects() {
        let (_d, meta) = meta();
        let q = user(ProjectRole::Query);
        let m = user(ProjectRole::Management);
        let add = br#"{"project": "ssb", "name": "t", "location": "x"}"#;
        assert_eq!(
            kind(check_action(&meta, &q, "qilin.table.add", add)),
            (true, ErrorKind::PermissionDenied)
        );
        assert!(check_action(&meta, &m, "qilin.table.add", add).is_ok());
        let other = br#"{"project": "tpch", "name": "t", "location": "x"}"#;
        let r = check_action(&meta, &m, "qilin.table.add", other);
        let Err(Refusal::Denied(e)) = r else {
            panic!("expected a denial")
        };
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("tpch"), "{e}");
        assert_eq!(
            kind(check_action(
                &meta,
                &m,
                "qilin.project.create",
                br#"{"name": "x"}"#
            )),
            (true, ErrorKind::PermissionDenied)
        );
        assert!(check_action(&meta, &q, "qilin.project.list", b"").is_ok());
        assert!(check_action(&meta, &q, "qilin.cube.list", b"").is_ok());
        assert_eq!(
            kind(check_action(
                &meta,
                &q,
                "qilin.cube.list",
                br#"{"project": "tpch"}"#
            )),
            (true, ErrorKind::NotFound)
        );
        // What the check cannot read is the client's mistake, not a pass.
        assert_eq!(
            kind(check_action(
                &meta,
                &m,
                "qilin.table.drop",
                br#"{"name": 1}"#
            )),
            (false, ErrorKind::User)
        );
        assert_eq!(
            kind(check_action(&meta, &m, "qilin.table.drop", b"{nope")),
            (false, ErrorKind::User)
        );
        // A cube that does not exist is simply not found.
        assert_eq!(
            kind(check_action(&meta, &m, BUILD_ACTION, br#"{"cube": "c"}"#)),
            (false, ErrorKind::NotFound)
        );
        assert!(check_action(&meta, &Access::unrestricted("a"), BUILD_ACTION, b"{x").is_ok());
    }

    #[test]
    fn denied_tables_and_columns_are_left_out_of_listings() {
        let mut a = user(ProjectRole::Query);
        a.tables.insert(
            ("ssb".into(), "customer".into()),
            TableRestriction {
                denied_columns: BTreeSet::from(["C_PHONE".to_string()]),
                ..Default::default()
            },
        );
        a.tables.insert(
            ("ssb".into(), "supplier".into()),
            TableRestriction {
                denied: true,
                ..Default::default()
            },
        );
        let mut t = serde_json::json!({"project": "ssb", "name": "customer",
            "columns": [{"name": "c_name"}, {"name": "c_phone"}]});
        assert!(visible_table_json(&a, &mut t));
        assert_eq!(t["columns"], serde_json::json!([{"name": "c_name"}]));
        let mut s = serde_json::json!({"project": "ssb", "name": "supplier", "columns": []});
        assert!(!visible_table_json(&a, &mut s));
        let mut o = serde_json::json!({"project": "tpch", "name": "x", "columns": []});
        assert!(!visible_table_json(&a, &mut o));
        assert!(visible_table_json(&Access::unrestricted("x"), &mut o));
        let (_d, meta) = meta();
        assert_eq!(
            kind(check_action(
                &meta,
                &a,
                "qilin.table.show",
                br#"{"project": "ssb", "name": "SUPPLIER"}"#
            )),
            (true, ErrorKind::NotFound)
        );
    }

    #[test]
    fn audit_targets_name_the_object() {
        assert_eq!(target(BUILD_ACTION, br#"{"cube": "c"}"#), "cube c");
        assert_eq!(
            target("qilin.table.add", br#"{"project": "p", "name": "t"}"#),
            "table p.t"
        );
        assert_eq!(
            target("qilin.model.put", br#"{"model": {"name": "m"}}"#),
            "model m"
        );
        assert_eq!(target("qilin.grant", br#"{"project": "p"}"#), "project p");
        assert_eq!(target("qilin.acl.remove", br#"{"id": "r1"}"#), "rule r1");
        assert_eq!(target("qilin.user.create", br#"{"name": "u"}"#), "user u");
        assert_eq!(target("qilin.project.list", b""), "");
        assert_eq!(target("qilin.cube.get", b"{garbage"), "");
    }
}
