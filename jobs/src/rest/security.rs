//! Qilin's security administration over REST (`/qilin/api/...`), served by both binaries:
//! users (global admins), project grants and table rules (ADMIN in the project), API keys
//! (one's own, or anyone's for a global admin) and the audit log (global admins). Thin over
//! `qilin_engine::security::store::SecurityStore`, which validates everything and changes
//! nothing on an error.
//!
//! Every change and every refusal is audited. After a change this instance reloads the rules
//! at once and tells its peers (`kylin.rest.servers`), which otherwise catch up by polling.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, put};
use axum::Router;
use chrono::{DateTime, NaiveDate, Utc};
use qilin_cluster::notify::Notifier;
use qilin_cluster::web::{ApiError, CallerAccess, Json, JsonBody, Params};
use qilin_engine::names::validate_name;
use qilin_engine::security::audit::AuditEvent;
use qilin_engine::security::store::{ApiKeyInfo, Grant, Rule, TableRule, UserInfo};
use qilin_engine::security::{Principal, ProjectRole};
use serde::Deserialize;
use serde_json::{json, Value};

use super::blocking;
use crate::JobEngine;

/// The longest password accepted (the store's limit, checked here first so nothing changes).
const MAX_PASSWORD_BYTES: usize = 1024;
/// Audit events one call returns at most (and by default).
const MAX_AUDIT_LIMIT: usize = 10_000;
const DEFAULT_AUDIT_LIMIT: usize = 100;

pub fn router(jobs: JobEngine) -> Router {
    Router::new()
        .route("/qilin/api/users", get(list_users).post(create_user))
        .route("/qilin/api/users/{name}", put(update_user))
        .route(
            "/qilin/api/projects/{project}/grants",
            get(list_grants).post(add_grant).delete(remove_grant),
        )
        .route(
            "/qilin/api/projects/{project}/rules",
            get(list_rules).post(add_rule),
        )
        .route("/qilin/api/rules/{id}", delete(remove_rule))
        .route("/qilin/api/apikeys", get(list_keys).post(create_key))
        .route("/qilin/api/apikeys/{id}", delete(revoke_key))
        .route("/qilin/api/audit", get(audit))
        .with_state(jobs)
}

// ---- users ---------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    groups: Vec<String>,
}

/// Every field optional: only those given change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserChange {
    password: Option<String>,
    disabled: Option<bool>,
    admin: Option<bool>,
    groups: Option<Vec<String>>,
}

fn user_json(u: &UserInfo) -> Value {
    json!({
        "name": u.name,
        "admin": u.admin,
        "disabled": u.disabled,
        "groups": u.groups,
        "created": u.created,
        "modified": u.modified,
    })
}

async fn list_users(caller: CallerAccess) -> Result<Json<Value>, ApiError> {
    caller.require_admin("user.list", "users")?;
    blocking(move || {
        let users = caller.auth.security().users()?;
        Ok(Json(Value::Array(users.iter().map(user_json).collect())))
    })
    .await
}

async fn create_user(
    caller: CallerAccess,
    State(jobs): State<JobEngine>,
    JsonBody(req): JsonBody<NewUser>,
) -> Result<Json<Value>, ApiError> {
    let target = format!("user {}", req.name);
    caller.require_admin("user.create", &target)?;
    let c = caller.clone();
    let user = blocking(move || {
        let result = (|| {
            validate_name("user", &req.name)?;
            check_password(&req.password)?;
            check_groups(&req.groups)?;
            let store = c.auth.security();
            let mut user = store.create_user(&req.name, &req.password, req.admin)?;
            if !req.groups.is_empty() {
                // Names were checked above, so this only fails if the store does.
                store.set_groups(&req.name, req.groups.clone())?;
                user.groups = req.groups.clone();
            }
            Ok(user)
        })();
        c.audited("user.create", &target, result)
    })
    .await?;
    changed(&caller, &jobs, &format!("user {} created", user.name));
    Ok(Json(user_json(&user)))
}

/// A global admin changes anything; a user may change its own password only.
async fn update_user(
    caller: CallerAccess,
    State(jobs): State<JobEngine>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<UserChange>,
) -> Result<Json<Value>, ApiError> {
    let target = format!("user {name}");
    let own_password = caller.user() == name
        && req.disabled.is_none()
        && req.admin.is_none()
        && req.groups.is_none();
    if !own_password {
        caller.require_admin("user.update", &target)?;
    }
    let c = caller.clone();
    let user = blocking(move || {
        let mut changed = Vec::new();
        let result = (|| {
            // Check everything first so a refused change changes nothing.
            let store = c.auth.security();
            if !store.users()?.iter().any(|u| u.name == name) {
                return Err(qilin_engine::Error::NotFound {
                    kind: "user",
                    name: name.clone(),
                }
                .into());
            }
            if let Some(p) = &req.password {
                check_password(p)?;
            }
            if let Some(g) = &req.groups {
                check_groups(g)?;
            }
            if let Some(p) = &req.password {
                store.set_password(&name, p)?;
                changed.push("password");
            }
            if let Some(g) = &req.groups {
                store.set_groups(&name, g.clone())?;
                changed.push("groups");
            }
            if let Some(a) = req.admin {
                store.set_admin(&name, a)?;
                changed.push(if a { "admin" } else { "not admin" });
            }
            if let Some(d) = req.disabled {
                store.set_disabled(&name, d)?;
                changed.push(if d { "disabled" } else { "enabled" });
            }
            store
                .users()?
                .into_iter()
                .find(|u| u.name == name)
                .ok_or_else(|| ApiError::internal(format!("user {name} vanished")))
        })();
        match result {
            Ok(user) => {
                c.audit(
                    "user.update",
                    &target,
                    qilin_engine::security::audit::Outcome::Ok,
                    changed.join(", "),
                );
                Ok(user)
            }
            Err(e) => c.audited("user.update", &target, Err(e)),
        }
    })
    .await?;
    changed(&caller, &jobs, &format!("user {} changed", user.name));
    Ok(Json(user_json(&user)))
}

fn check_password(password: &str) -> Result<(), ApiError> {
    if password.is_empty() {
        return Err(ApiError::bad_request("password: must not be empty"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::bad_request(format!(
            "password: longer than {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

fn check_groups(groups: &[String]) -> Result<(), ApiError> {
    for g in groups {
        validate_name("group", g)?;
    }
    Ok(())
}

// ---- grants --------------------------------------------------------------------------------

/// `{"user": U}` or `{"group": G}`: exactly one.
#[derive(Debug, Default, Deserialize)]
struct Who {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    group: Option<String>,
}

impl Who {
    fn principal(&self) -> Result<Principal, ApiError> {
        match (&self.user, &self.group) {
            (Some(u), None) if !u.is_empty() => Ok(Principal::User(u.clone())),
            (None, Some(g)) if !g.is_empty() => Ok(Principal::Group(g.clone())),
            _ => Err(ApiError::bad_request(
                "name exactly one of user and group (who the grant or rule is for)",
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGrant {
    role: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    group: Option<String>,
}

fn principal_fields(p: &Principal, into: &mut serde_json::Map<String, Value>) {
    match p {
        Principal::User(u) => into.insert("user".into(), json!(u)),
        Principal::Group(g) => into.insert("group".into(), json!(g)),
    };
}

fn grant_json(g: &Grant) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("project".into(), json!(g.project));
    principal_fields(&g.principal, &mut o);
    o.insert("role".into(), json!(g.role.as_str()));
    Value::Object(o)
}

async fn list_grants(
    caller: CallerAccess,
    Path(project): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(
        &project,
        ProjectRole::Admin,
        "grant.list",
        &format!("project {project}"),
    )?;
    blocking(move || {
        let grants = caller.auth.security().grants(Some(&project))?;
        Ok(Json(Value::Array(grants.iter().map(grant_json).collect())))
    })
    .await
}

async fn add_grant(
    caller: CallerAccess,
    State(jobs): State<JobEngine>,
    Path(project): Path<String>,
    JsonBody(req): JsonBody<NewGrant>,
) -> Result<Json<Value>, ApiError> {
    let target = format!("project {project}");
    caller.require(&project, ProjectRole::Admin, "grant", &target)?;
    let c = caller.clone();
    let grant = blocking(move || {
        let result = (|| {
            let role: ProjectRole = req.role.parse()?;
            let who = Who {
                user: req.user.clone(),
                group: req.group.clone(),
            }
            .principal()?;
            Ok(c.auth.security().grant(&project, &who, role)?)
        })();
        c.audited("grant", &target, result)
    })
    .await?;
    changed(
        &caller,
        &jobs,
        &format!(
            "{} granted {} in {}",
            grant.principal, grant.role, grant.project
        ),
    );
    Ok(Json(grant_json(&grant)))
}

async fn remove_grant(
    caller: CallerAccess,
    State(jobs): State<JobEngine>,
    Path(project): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let target = format!("project {project}");
    caller.require(&project, ProjectRole::Admin, "revoke", &target)?;
    let who = Who {
        user: params.get("user").map(str::to_string),
        group: params.get("group").map(str::to_string),
    };
    let c = caller.clone();
    let grant = blocking(move || {
        let result = who
            .principal()
            .and_then(|p| Ok(c.auth.security().revoke(&project, &p)?));
        c.audited("revoke", &target, result)
    })
    .await?;
    changed(
        &caller,
        &jobs,
        &format!("{} revoked in {}", grant.principal, grant.project),
    );
    Ok(Json(grant_json(&grant)))
}

// ---- table rules ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRule {
    table: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    group: Option<String>,
    /// deny_table, deny_column or row_filter.
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    column: Option<String>,
    #[serde(default)]
    filter: Option<String>,
}

impl NewRule {
    fn rule(&self) -> Result<Rule, ApiError> {
        let given = |v: &Option<String>| v.as_deref().filter(|s| !s.trim().is_empty()).is_some();
        match self.kind.as_str() {
            "deny_table" if !given(&self.column) && !given(&self.filter) => Ok(Rule::DenyTable),
            "deny_column" if !given(&self.filter) => match &self.column {
                Some(c) if given(&self.column) => Ok(Rule::DenyColumn { column: c.clone() }),
                _ => Err(ApiError::bad_request("a deny_column rule needs column")),
            },
            "row_filter" if !given(&self.column) => match &self.filter {
                Some(f) if given(&self.filter) => Ok(Rule::RowFilter { filter: f.clone() }),
                _ => Err(ApiError::bad_request(
                    "a row_filter rule needs filter (a SQL predicate over the table's columns)",
                )),
            },
            "deny_table" | "deny_column" | "row_filter" => Err(ApiError::bad_request(format!(
                "a {} rule takes {}",
                self.kind,
                match self.kind.as_str() {
                    "deny_table" => "neither column nor filter",
                    "deny_column" => "column, not filter",
                    _ => "filter, not column",
                }
            ))),
            other => Err(ApiError::bad_request(format!(
                "rule type {other:?}: expected deny_table, deny_column or row_filter"
            ))),
        }
    }
}

fn rule_json(r: &TableRule) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("id".into(), json!(r.id));
    o.insert("project".into(), json!(r.project));
    o.insert("table".into(), json!(r.table));
    principal_fields(&r.principal, &mut o);
    match &r.rule {
        Rule::DenyTable => {
            o.insert("type".into(), json!("deny_table"));
        }
        Rule::DenyColumn { column } => {
            o.insert("type".into(), json!("deny_column"));
            o.insert("column".into(), json!(column));
        }
        Rule::RowFilter { filter } => {
            o.insert("type".into(), json!("row_filter"));
            o.insert("filter".into(), json!(filter));
        }
    }
    Value::Object(o)
}

async fn list_rules(
    caller: CallerAccess,
    Path(project): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(
        &project,
        ProjectRole::Admin,
        "acl.list",
        &format!("project {project}"),
    )?;
    blocking(move || {
        let rules = caller.auth.security().rules(Some(&project))?;
        Ok(Json(Value::Array(rules.iter().map(rule_json).collect())))
    })
    .await
}

async fn add_rule(
    caller: CallerAccess,
    State(jobs): State<JobEngine>,
    Path(project): Path<String>,
    JsonBody(req): JsonBody<NewRule>,
) -> Result<Json<Value>, ApiError> {
    let target = format!("table {project}.{}", req.table);
    caller.require(&project, ProjectRole::Admin, "acl.add", &target)?;
    let c = caller.clone();
    let rule = blocking(move || {
        let result = (|| {
            let rule = req.rule()?;
            let who = Who {
                user: req.user.clone(),
                group: req.group.clone(),
            }
            .principal()?;
            Ok(c.auth
                .security()
                .add_rule(&project, &req.table, &who, rule)?)
        })();
        c.audited("acl.add", &target, result)
    })
    .await?;
    changed(
        &caller,
        &jobs,
        &format!("rule {} on {}.{}", rule.id, rule.project, rule.table),
    );
    Ok(Json(rule_json(&rule)))
}

async fn remove_rule(
    caller: CallerAccess,
    State(jobs): State<JobEngine>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = caller.clone();
    let rule = blocking(move || {
        let store = c.auth.security();
        let rule = store
            .rules(None)?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| qilin_engine::Error::NotFound {
                kind: "rule",
                name: id.clone(),
            })?;
        c.require_object(&rule.project, ProjectRole::Admin, "acl.remove", "rule", &id)?;
        let result = store.remove_rule(&id).map_err(ApiError::from);
        c.audited("acl.remove", &format!("rule {id}"), result)
    })
    .await?;
    changed(&caller, &jobs, &format!("rule {} removed", rule.id));
    Ok(Json(rule_json(&rule)))
}

// ---- API keys ------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    /// Whose key (default: the caller's; another user's needs a global admin).
    #[serde(default)]
    user: Option<String>,
    /// `30d`, `12h`, `90m`, `3600s`, a date (`2027-01-01`, midnight UTC) or an RFC 3339 time;
    /// absent: never expires.
    #[serde(default)]
    expires: Option<String>,
}

fn key_json(k: &ApiKeyInfo) -> Value {
    json!({
        "id": k.id,
        "user": k.user,
        "created": k.created,
        "expires": k.expires,
        "revoked": k.revoked,
    })
}

/// The caller's keys (a global admin: everyone's, or `?user=`'s).
async fn list_keys(caller: CallerAccess, params: Params) -> Result<Json<Value>, ApiError> {
    let user = params.get("user").map(str::to_string);
    let own = user.as_deref().is_none_or(|u| u == caller.user());
    if !own {
        caller.require_admin(
            "apikey.list",
            &format!("user {}", user.as_deref().unwrap_or("")),
        )?;
    }
    blocking(move || {
        let filter = match (&user, caller.access.admin) {
            (Some(u), _) => Some(u.as_str()),
            (None, true) => None,
            (None, false) => Some(caller.user()),
        };
        let keys = caller.auth.security().api_keys(filter)?;
        Ok(Json(Value::Array(keys.iter().map(key_json).collect())))
    })
    .await
}

/// A key for the caller (or, for a global admin, for anyone); its secret is in the answer
/// (`key`) and nowhere else.
async fn create_key(
    caller: CallerAccess,
    State(jobs): State<JobEngine>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    // An empty body asks for a key of one's own that never expires.
    let req: NewKey = if body.iter().all(u8::is_ascii_whitespace) {
        NewKey::default()
    } else {
        qilin_cluster::web::parse_json(&body)?
    };
    let user = req
        .user
        .clone()
        .unwrap_or_else(|| caller.user().to_string());
    let target = format!("user {user}");
    if user != caller.user() {
        caller.require_admin("apikey.create", &target)?;
    }
    let c = caller.clone();
    let (info, key) = blocking(move || {
        let result = (|| {
            let expires = req
                .expires
                .as_deref()
                .map(|e| parse_expires(e, Utc::now()))
                .transpose()?;
            Ok(c.auth.security().create_api_key(&user, expires)?)
        })();
        c.audited("apikey.create", &target, result)
    })
    .await?;
    changed(&caller, &jobs, &format!("API key {} created", info.id));
    let mut v = key_json(&info);
    v["key"] = json!(key);
    Ok((StatusCode::OK, Json(v)))
}

async fn revoke_key(
    caller: CallerAccess,
    State(jobs): State<JobEngine>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = caller.clone();
    let info = blocking(move || {
        let store = c.auth.security();
        let target = format!("API key {id}");
        let not_found = || qilin_engine::Error::NotFound {
            kind: "API key",
            name: id.clone(),
        };
        let key = store.api_keys(None)?.into_iter().find(|k| k.id == id);
        match key {
            // Someone else's key is as unknown as a missing one, unless one is an admin.
            Some(k) if k.user == c.user() || c.access.admin => {}
            Some(_) => return Err(c.refused("apikey.revoke", &target, not_found())),
            None => return Err(not_found().into()),
        }
        let result = store.revoke_api_key(&id).map_err(ApiError::from);
        c.audited("apikey.revoke", &target, result)
    })
    .await?;
    changed(&caller, &jobs, &format!("API key {} revoked", info.id));
    Ok(Json(key_json(&info)))
}

/// When a key expires: `<n>d|h|m|s` from `now`, a date (midnight UTC) or an RFC 3339 time;
/// it must be in the future.
pub fn parse_expires(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let t = text.trim();
    let bad = || {
        ApiError::bad_request(format!(
            "expires {t:?}: expected a duration (30d, 12h, 90m, 3600s), a date (2027-01-01) or \
             an RFC 3339 time (2027-01-01T00:00:00Z)"
        ))
    };
    let at = if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        at.with_timezone(&Utc)
    } else if let Ok(day) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        day.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc()
    } else {
        let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (n, unit) = t.split_at(split);
        let n: i64 = n.parse().map_err(|_| bad())?;
        let seconds = match unit {
            "s" => Some(n),
            "m" => n.checked_mul(60),
            "h" => n.checked_mul(3600),
            "d" => n.checked_mul(86_400),
            _ => None,
        }
        .ok_or_else(bad)?;
        chrono::TimeDelta::try_seconds(seconds)
            .and_then(|d| now.checked_add_signed(d))
            .ok_or_else(bad)?
    };
    if at <= now {
        return Err(ApiError::bad_request(format!(
            "expires {t:?} is not in the future"
        )));
    }
    Ok(at)
}

// ---- audit ---------------------------------------------------------------------------------

/// The newest events (oldest first): `limit` (default 100, at most 10000), `user`.
async fn audit(caller: CallerAccess, params: Params) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    caller.require_admin("audit.read", "audit log")?;
    let limit = params
        .usize("limit")?
        .unwrap_or(DEFAULT_AUDIT_LIMIT)
        .min(MAX_AUDIT_LIMIT);
    let user = params.get("user").map(str::to_string);
    blocking(move || {
        let log = caller.auth.audit();
        // Include what was recorded just before this call.
        log.flush()?;
        Ok(Json(log.read(limit, user.as_deref())?))
    })
    .await
}

// ---- after a change ------------------------------------------------------------------------

/// Reloads this instance's rules now and tells the peers (who otherwise poll).
fn changed(caller: &CallerAccess, jobs: &JobEngine, what: &str) {
    log::info!("user {} (REST): {what}", caller.user());
    caller.auth.refresh();
    if let Some(n) = Notifier::from_config(jobs.config(), None) {
        let version = jobs.metadata().store().store_version().unwrap_or(0);
        n.notify(what, version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_texts() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |t: &str| parse_expires(t, now).map(|d| d.to_rfc3339());
        assert_eq!(at("30d").unwrap(), "2026-01-31T00:00:00+00:00");
        assert_eq!(at("12h").unwrap(), "2026-01-01T12:00:00+00:00");
        assert_eq!(at("90m").unwrap(), "2026-01-01T01:30:00+00:00");
        assert_eq!(at("2027-01-01").unwrap(), "2027-01-01T00:00:00+00:00");
        assert_eq!(
            at("2027-01-01T10:00:00+02:00").unwrap(),
            "2027-01-01T08:00:00+00:00"
        );
        for bad in ["", "d", "30", "30y", "-1d", "99999999999999999999d", "soon"] {
            let e = at(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
        assert!(at("2025-01-01").unwrap_err().message.contains("future"));
    }

    #[test]
    fn rule_bodies() {
        let rule = |v: Value| serde_json::from_value::<NewRule>(v).unwrap().rule();
        assert_eq!(
            rule(json!({"table": "t", "user": "u", "type": "deny_table"})).unwrap(),
            Rule::DenyTable
        );
        assert_eq!(
            rule(json!({"table": "t", "user": "u", "type": "deny_column", "column": "c"})).unwrap(),
            Rule::DenyColumn { column: "c".into() }
        );
        assert_eq!(
            rule(json!({"table": "t", "group": "g", "type": "row_filter", "filter": "a = 1"}))
                .unwrap(),
            Rule::RowFilter {
                filter: "a = 1".into()
            }
        );
        for bad in [
            json!({"table": "t", "type": "deny_column"}),
            json!({"table": "t", "type": "row_filter", "filter": " "}),
            json!({"table": "t", "type": "deny_table", "column": "c"}),
            json!({"table": "t", "type": "hide"}),
        ] {
            assert!(rule(bad.clone()).is_err(), "{bad}");
        }
        assert!(serde_json::from_value::<NewRule>(
            json!({"table": "t", "type": "x", "colum": "c"})
        )
        .is_err());
        let who = |u: Option<&str>, g: Option<&str>| {
            Who {
                user: u.map(Into::into),
                group: g.map(Into::into),
            }
            .principal()
        };
        assert_eq!(who(Some("a"), None).unwrap(), Principal::User("a".into()));
        assert_eq!(who(None, Some("g")).unwrap(), Principal::Group("g".into()));
        assert!(who(Some("a"), Some("g")).is_err());
        assert!(who(None, None).is_err());
        assert!(who(Some(""), None).is_err());
    }
}
