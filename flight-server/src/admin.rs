//! Catalog actions (`DoAction`): projects, models and cubes as JSON documents, the same
//! operations as `qilin-jobs project|model|cube` (see `qilin_engine::admin::documents`).
//!
//! Bodies and results are JSON objects:
//!
//! | action                 | body                                                  | result |
//! |------------------------|-------------------------------------------------------|--------|
//! | `qilin.project.create` | `{"name": N, "description": D}` or `{"project": {…}}` | the project |
//! | `qilin.project.list`   | `{}` (or empty)                                       | `[{name, description, tables, models, cubes}]` |
//! | `qilin.project.drop`   | `{"name": N}`                                         | `{"dropped": N}` |
//! | `qilin.model.put`      | `{"model": {…}, "project": P}` (`project` optional)   | `{model, project, created, cubes, stale_segments}` |
//! | `qilin.model.get`      | `{"name": N}`                                         | the model's JSON exactly as stored |
//! | `qilin.model.list`     | `{"project": P}` (optional)                           | `[{name, project, fact_table, lookups, cubes}]` |
//! | `qilin.model.drop`     | `{"name": N}`                                         | `{"dropped": N}` |
//! | `qilin.cube.put`       | `{"cube": {…}}`                                       | `{cube, model, created, cuboids, signature, stale_segments}` |
//! | `qilin.cube.get`       | `{"name": N}`                                         | the cube's JSON exactly as stored |
//! | `qilin.cube.list`      | `{"project": P}` (optional)                           | `[{name, model, project, cuboids, segments, ready_segments, stale_segments, problem}]` |
//! | `qilin.cube.drop`      | `{"name": N}`                                         | `{cube, segments, leftover_data}` |
//! | `qilin.cube.plan`      | `{"cube": {…}}`                                       | the plan (`cuboids`, `aggregation_groups`, … and `text`) |
//!
//! Errors: a malformed body or descriptor is INVALID_ARGUMENT naming the field, an unknown
//! project/model/cube NOT_FOUND, an existing project ALREADY_EXISTS, a cube with a running
//! job ABORTED. Callers are authenticated like every other call (`auth::RequireAuth`); what
//! each action needs of them is `guard`'s (a missing role is PERMISSION_DENIED naming it, a
//! project they hold no role in NOT_FOUND), and listings keep only what they see. The
//! security actions (`qilin.user.*`, `qilin.grant`, `qilin.acl.*`, ...) are
//! `admin_security`'s. Every change and every refusal is audited.
//! After a change this server reloads its catalog (and its security rules) at once and tells
//! the peers in `kylin.rest.servers`, as the job engine does after a segment turns READY.

use std::path::PathBuf;
use std::sync::Arc;

use qilin_cluster::notify::Notifier;
use qilin_engine::admin::documents as docs;
use qilin_engine::config::Config;
use qilin_engine::metadata::managers::Metadata;
use qilin_engine::model::{CubeDesc, ProjectDesc};
use qilin_engine::query::QueryEngine;
use qilin_engine::security::audit::Outcome as Audited;
use qilin_engine::security::Access;
use qilin_engine::storage::SegmentStore;
use qilin_engine::Error;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use tonic::Status;

use crate::admin_security;
use crate::auth::Authenticator;
use crate::guard::{self, Refusal};
use crate::status;

/// The catalog actions and what they do (for `ListActions`).
pub const ACTIONS: &[(&str, &str)] = &[
    (
        "qilin.table.add",
        "Register a source table, schema inferred from its files. Body {\"project\", \"name\", \"location\", \"format\", \"csv_delimiter\", \"csv_header\", \"schema\"}.",
    ),
    (
        "qilin.table.reload",
        "Re-infer a table's columns; reports changes and the models/cubes they break. Body {\"project\", \"name\", \"schema\"}.",
    ),
    ("qilin.table.list", "List a project's tables. Body {\"project\": P}."),
    ("qilin.table.show", "A table as stored. Body {\"project\": P, \"name\": T}."),
    (
        "qilin.table.drop",
        "Drop a table no model uses. Body {\"project\": P, \"name\": T}.",
    ),
    (
        "qilin.project.create",
        "Create a project. Body {\"name\": N, \"description\": D}.",
    ),
    ("qilin.project.list", "List projects. Body {} or empty."),
    (
        "qilin.project.drop",
        "Drop a project without tables, models or cubes. Body {\"name\": N}.",
    ),
    (
        "qilin.model.put",
        "Create or replace a model. Body {\"model\": {...}, \"project\": P (optional)}.",
    ),
    (
        "qilin.model.get",
        "A model's JSON as stored. Body {\"name\": N}.",
    ),
    (
        "qilin.model.list",
        "List models. Body {\"project\": P} (optional).",
    ),
    (
        "qilin.model.drop",
        "Drop a model no cube uses. Body {\"name\": N}.",
    ),
    (
        "qilin.cube.put",
        "Create or replace a cube. Body {\"cube\": {...}}.",
    ),
    (
        "qilin.cube.get",
        "A cube's JSON as stored. Body {\"name\": N}.",
    ),
    (
        "qilin.cube.list",
        "List cubes. Body {\"project\": P} (optional).",
    ),
    (
        "qilin.cube.drop",
        "Drop a cube, its segments and their data. Body {\"name\": N}.",
    ),
    (
        "qilin.cube.plan",
        "Validate a cube and estimate its cuboids' rows and bytes; writes nothing. \
         Body {\"cube\": {...}}.",
    ),
];

/// Whether `action_type` is one of the catalog actions (this module's, or `qilin.table.*`).
pub fn is_admin_action(action_type: &str) -> bool {
    [
        "qilin.project.",
        "qilin.model.",
        "qilin.cube.",
        "qilin.table.",
    ]
    .iter()
    .any(|p| action_type.starts_with(p))
}

/// The audit log's name of an action (`model.put`, `grant`, `cube.build`).
pub fn audit_name(action_type: &str) -> &str {
    if action_type == crate::service::BUILD_ACTION {
        return "cube.build";
    }
    action_type.strip_prefix("qilin.").unwrap_or(action_type)
}

/// Runs catalog actions against the stores this server shares with the cluster.
pub struct Admin {
    meta: Metadata,
    /// Security rules (users, grants, keys) and the audit log.
    auth: Arc<Authenticator>,
    segments: Arc<dyn SegmentStore>,
    engine: Arc<QueryEngine>,
    notifier: Option<Notifier>,
    /// `kylin.source.url`: where table locations and plans read source files.
    source_root: PathBuf,
    max_cuboids: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NameBody {
    name: String,
}

/// The body of `qilin.project.list`: nothing.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoFields {}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ProjectFilter {
    #[serde(default)]
    project: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectCreateBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    /// The whole project descriptor instead of name and description.
    #[serde(default)]
    project: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelPutBody {
    model: Value,
    #[serde(default)]
    project: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CubeBody {
    cube: Value,
}

/// A successful action: its result body, and what changed (`None` for reads).
struct Outcome {
    body: Vec<u8>,
    changed: Option<String>,
}

impl Outcome {
    fn read(value: impl serde::Serialize) -> Result<Outcome, Error> {
        Ok(Outcome {
            body: json(&value)?,
            changed: None,
        })
    }

    fn change(value: impl serde::Serialize, what: String) -> Result<Outcome, Error> {
        Ok(Outcome {
            body: json(&value)?,
            changed: Some(what),
        })
    }
}

fn json(value: &impl serde::Serialize) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::Refused(format!("encoding the result: {e}")))
}

impl Admin {
    /// `own_addr` is this server's `host:port` in `kylin.rest.servers` (not notified).
    pub fn new(
        config: &Config,
        meta: Metadata,
        segments: Arc<dyn SegmentStore>,
        engine: Arc<QueryEngine>,
        auth: Arc<Authenticator>,
        own_addr: &str,
    ) -> Admin {
        Admin {
            meta,
            auth,
            segments,
            engine,
            notifier: Notifier::from_config(config, Some(own_addr)),
            source_root: PathBuf::from(&config.stores.source_url),
            max_cuboids: config.cube.max_cuboids_per_group,
        }
    }

    /// Runs a catalog or security action as `access`; `None` when `action_type` is neither.
    pub async fn run(
        self: &Arc<Self>,
        action_type: &str,
        body: &[u8],
        access: &Access,
    ) -> Option<Result<Vec<u8>, Status>> {
        let security = admin_security::is_security_action(action_type);
        if !security && !is_admin_action(action_type) {
            return None;
        }
        let this = self.clone();
        let (action, body_bytes, who) = (action_type.to_string(), body.to_vec(), access.clone());
        // Store I/O blocks (HBase); the plan's DataFusion scan runs on this blocking thread's
        // own handle of the runtime.
        let handle = tokio::runtime::Handle::current();
        let outcome = tokio::task::spawn_blocking(move || -> Option<Result<Outcome, Refusal>> {
            if security {
                let done = admin_security::run(
                    this.auth.security(),
                    this.auth.audit(),
                    &who,
                    &action,
                    &body_bytes,
                );
                return Some(done.map(|d| Outcome {
                    body: d.body,
                    changed: d.changed,
                }));
            }
            if let Err(refusal) = guard::check_action(&this.meta, &who, &action, &body_bytes) {
                return Some(Err(refusal));
            }
            handle
                .block_on(async { this.dispatch(&action, &body_bytes, &who).await })
                .map(|r| r.map_err(Refusal::Failed))
        })
        .await;
        let user = access.user.as_str();
        let audit = |outcome: Audited, detail: String| {
            self.auth.audit().record(
                user,
                audit_name(action_type),
                &guard::target(action_type, body),
                outcome,
                detail,
            )
        };
        let outcome = match outcome {
            Ok(Some(Ok(o))) => o,
            Ok(Some(Err(refusal))) => {
                match &refusal {
                    Refusal::Denied(e) => {
                        log::info!("user {user}: refused {action_type}: {e}");
                        audit(Audited::Denied, e.to_string());
                    }
                    Refusal::Failed(e) if !is_read_only(action_type) => {
                        audit(Audited::Failed, e.to_string())
                    }
                    Refusal::Failed(_) => {}
                }
                return Some(Err(status::from_engine(refusal.error())));
            }
            Ok(None) => {
                return Some(Err(Status::invalid_argument(format!(
                    "unknown action {action_type:?} (catalog actions: {})",
                    ACTIONS
                        .iter()
                        .map(|(a, _)| *a)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))))
            }
            Err(e) => return Some(Err(status::internal("catalog action task", e))),
        };
        if let Some(what) = &outcome.changed {
            log::info!("user {user}: {what}");
            audit(Audited::Ok, what.clone());
            if security {
                // Whatever the change, this instance applies it to the next call.
                let auth = self.auth.clone();
                let _ = tokio::task::spawn_blocking(move || auth.refresh()).await;
            }
            self.changed(what).await;
        }
        Some(Ok(outcome.body))
    }

    /// After a change: reload this server's catalog now and tell the peers.
    async fn changed(&self, what: &str) {
        let engine = self.engine.clone();
        match tokio::task::spawn_blocking(move || engine.refresh()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => log::warn!("reloading the catalog after {what}: {e}"),
            Err(e) => log::warn!("reloading the catalog after {what}: {e}"),
        }
        if let Some(n) = &self.notifier {
            let version = self.meta.store().store_version().unwrap_or(0);
            n.notify(what, version);
        }
    }

    /// Runs a catalog action `guard` allowed; listings keep what `access` sees.
    async fn dispatch(
        &self,
        action: &str,
        body: &[u8],
        access: &Access,
    ) -> Option<Result<Outcome, Error>> {
        // Source tables: `admin_tables` (the same operations as `qilin-jobs table`).
        if let Some(result) =
            crate::admin_tables::table_action(&self.meta, &self.source_root, action, body).await
        {
            return Some(result.and_then(|mut v| {
                if let Value::Array(tables) = &mut v {
                    tables.retain_mut(|t| guard::visible_table_json(access, t));
                } else if action == crate::admin_tables::TABLE_SHOW {
                    // `guard` refused a denied table already; this leaves out denied columns.
                    guard::visible_table_json(access, &mut v);
                }
                if is_read_only(action) {
                    Outcome::read(v)
                } else {
                    Outcome::change(v, action.to_string())
                }
            }));
        }
        let meta = &self.meta;
        let max = self.max_cuboids;
        let what = format!("{action} body");
        Some(match action {
            "qilin.project.create" => self.project_create(&what, body),
            "qilin.project.list" => parse_or_default::<NoFields>(&what, body)
                .and_then(|_| docs::list_projects(meta))
                .map(|mut ps| {
                    ps.retain(|p| access.sees_project(&p.name));
                    ps
                })
                .and_then(Outcome::read),
            "qilin.project.drop" => parse::<NameBody>(&what, body).and_then(|b| {
                docs::drop_project(meta, &b.name)?;
                Outcome::change(
                    serde_json::json!({"dropped": b.name}),
                    format!("project dropped {}", b.name),
                )
            }),
            "qilin.model.put" => parse::<ModelPutBody>(&what, body).and_then(|b| {
                let mut model = b.model;
                if let Some(p) = &b.project {
                    docs::set_project(&what, &mut model, p)?;
                }
                let model = docs::parse_value(&format!("{action} model"), model)?;
                let put = docs::put_model(meta, &model, max)?;
                let changed = format!("model put {}", put.model);
                Outcome::change(put, changed)
            }),
            "qilin.model.get" => parse::<NameBody>(&what, body).and_then(|b| {
                Ok(Outcome {
                    body: docs::get_model(meta, &b.name)?,
                    changed: None,
                })
            }),
            "qilin.model.list" => parse_or_default::<ProjectFilter>(&what, body)
                .and_then(|f| docs::list_models(meta, f.project.as_deref()))
                .map(|mut ms| {
                    ms.retain(|m| access.sees_project(&m.project));
                    ms
                })
                .and_then(Outcome::read),
            "qilin.model.drop" => parse::<NameBody>(&what, body).and_then(|b| {
                docs::drop_model(meta, &b.name)?;
                Outcome::change(
                    serde_json::json!({"dropped": b.name}),
                    format!("model dropped {}", b.name),
                )
            }),
            "qilin.cube.put" => parse::<CubeBody>(&what, body).and_then(|b| {
                let cube: CubeDesc = docs::parse_value(&format!("{action} cube"), b.cube)?;
                let put = docs::put_cube(meta, &cube, max)?;
                let changed = format!("cube put {}", put.cube);
                Outcome::change(put, changed)
            }),
            "qilin.cube.get" => parse::<NameBody>(&what, body).and_then(|b| {
                Ok(Outcome {
                    body: docs::get_cube(meta, &b.name)?,
                    changed: None,
                })
            }),
            "qilin.cube.list" => parse_or_default::<ProjectFilter>(&what, body)
                .and_then(|f| docs::list_cubes(meta, f.project.as_deref(), max))
                .map(|mut cs| {
                    // A cube whose model is gone belongs to no project: admins only.
                    cs.retain(|c| {
                        access.admin || c.project.as_deref().is_some_and(|p| access.sees_project(p))
                    });
                    cs
                })
                .and_then(Outcome::read),
            "qilin.cube.drop" => parse::<NameBody>(&what, body).and_then(|b| {
                let dropped = docs::drop_cube(meta, self.segments.as_ref(), &b.name)?;
                Outcome::change(dropped, format!("cube dropped {}", b.name))
            }),
            "qilin.cube.plan" => match parse::<CubeBody>(&what, body)
                .and_then(|b| docs::parse_value::<CubeDesc>(&format!("{action} cube"), b.cube))
            {
                Ok(cube) => docs::plan_cube(meta, &self.source_root, &cube, max)
                    .await
                    .and_then(|plan| {
                        let mut v = serde_json::to_value(&plan)
                            .map_err(|e| Error::Refused(format!("encoding the plan: {e}")))?;
                        v["text"] = Value::String(plan.to_text());
                        Outcome::read(v)
                    }),
                Err(e) => Err(e),
            },
            _ => return None,
        })
    }

    fn project_create(&self, what: &str, body: &[u8]) -> Result<Outcome, Error> {
        let b: ProjectCreateBody = parse(what, body)?;
        let project = match (b.project, b.name) {
            (Some(p), None) if b.description.is_none() => {
                docs::parse_value::<ProjectDesc>(&format!("{what}: project"), p)?
            }
            (None, Some(name)) => ProjectDesc {
                name,
                description: b.description.unwrap_or_default(),
            },
            _ => {
                return Err(Error::invalid(
                    what,
                    "give either \"name\" (and \"description\") or \"project\": {...}",
                ))
            }
        };
        let created = docs::create_project(&self.meta, &project)?;
        let changed = format!("project created {}", created.name);
        Outcome::change(created, changed)
    }
}

/// Actions that only read (no reload, no notification after them).
pub fn is_read_only(action_type: &str) -> bool {
    [".list", ".get", ".show", ".plan"]
        .iter()
        .any(|s| action_type.ends_with(s))
}

fn parse<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, Error> {
    docs::parse_document(what, body)
}

/// Like [`parse`], with an empty body meaning `{}`.
fn parse_or_default<T: DeserializeOwned + Default>(what: &str, body: &[u8]) -> Result<T, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse(what, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_actions_are_recognized_and_classified() {
        for (a, _) in ACTIONS {
            assert!(is_admin_action(a), "{a}");
        }
        assert!(is_admin_action("qilin.table.add"));
        assert!(!is_admin_action("qilin.build") && !is_admin_action("qilin.notify"));
        assert!(is_read_only("qilin.cube.plan") && is_read_only("qilin.table.show"));
        assert!(!is_read_only("qilin.cube.put") && !is_read_only("qilin.project.drop"));
    }

    #[test]
    fn bodies_are_checked_field_by_field() {
        let e = parse::<NameBody>("qilin.cube.get body", br#"{"nmae": "x"}"#).unwrap_err();
        assert!(e.to_string().contains("nmae"), "{e}");
        assert_eq!(status::from_engine(&e).code(), tonic::Code::InvalidArgument);
        assert!(parse_or_default::<ProjectFilter>("b", b"  ")
            .unwrap()
            .project
            .is_none());
        let f: ProjectFilter = parse_or_default("b", br#"{"project": "ssb"}"#).unwrap();
        assert_eq!(f.project.as_deref(), Some("ssb"));
    }
}
