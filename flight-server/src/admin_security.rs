//! Security actions (`DoAction`): users, project grants, table rules, API keys and the audit
//! log, over the cluster's [`SecurityStore`] (the same operations as `qilin-jobs user|grant|
//! acl|apikey|audit`). Bodies and results are JSON; see `ACTIONS` and the README.
//!
//! Users and the audit log need a global admin (a user may change its own password); grants
//! and table rules need ADMIN in their project; a user creates, lists and revokes its own API
//! keys, a global admin anyone's. Passwords and key secrets are never logged or audited.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use qilin_engine::names::validate_name;
use qilin_engine::security::audit::AuditLog;
use qilin_engine::security::store::{Rule, SecurityStore};
use qilin_engine::security::{Access, Principal, ProjectRole};
use qilin_engine::Error;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use crate::guard::{body_value, Refusal};

pub const USER_CREATE: &str = "qilin.user.create";
pub const USER_PASSWD: &str = "qilin.user.passwd";
pub const USER_DISABLE: &str = "qilin.user.disable";
pub const USER_LIST: &str = "qilin.user.list";
pub const GRANT: &str = "qilin.grant";
pub const REVOKE: &str = "qilin.revoke";
pub const GRANT_LIST: &str = "qilin.grant.list";
pub const ACL_ADD: &str = "qilin.acl.add";
pub const ACL_REMOVE: &str = "qilin.acl.remove";
pub const ACL_LIST: &str = "qilin.acl.list";
pub const APIKEY_CREATE: &str = "qilin.apikey.create";
pub const APIKEY_LIST: &str = "qilin.apikey.list";
pub const APIKEY_REVOKE: &str = "qilin.apikey.revoke";
pub const AUDIT: &str = "qilin.audit";

/// The security actions and what they do (for `ListActions`).
pub const ACTIONS: &[(&str, &str)] = &[
    (
        USER_CREATE,
        "Create a user (global admin). Body {\"name\", \"password\", \"admin\": false, \"groups\": []}.",
    ),
    (
        USER_PASSWD,
        "Set a user's password (global admin, or the user itself). Body {\"name\", \"password\"}.",
    ),
    (
        USER_DISABLE,
        "Disable (or with \"disabled\": false enable) a user (global admin). Body {\"name\", \"disabled\": true}.",
    ),
    (USER_LIST, "List users (global admin). Body {} or empty."),
    (
        GRANT,
        "Give a user or group a role in a project (project ADMIN). Body {\"project\", \"role\", \"user\" | \"group\"}.",
    ),
    (
        REVOKE,
        "Take a user's or group's role in a project away (project ADMIN). Body {\"project\", \"user\" | \"group\"}.",
    ),
    (
        GRANT_LIST,
        "List the grants of the projects the caller administers. Body {\"project\": P} (optional).",
    ),
    (
        ACL_ADD,
        "Add a table rule (project ADMIN). Body {\"project\", \"table\", \"user\" | \"group\", \"type\": \"deny_table\" | \"deny_column\" | \"row_filter\", \"column\", \"filter\"}.",
    ),
    (ACL_REMOVE, "Remove a table rule (project ADMIN). Body {\"id\"}."),
    (
        ACL_LIST,
        "List the table rules of the projects the caller administers. Body {\"project\": P} (optional).",
    ),
    (
        APIKEY_CREATE,
        "Create an API key, shown once (own, or anyone's for a global admin). Body {\"user\", \"expires\": \"30d\" | RFC 3339} (both optional).",
    ),
    (
        APIKEY_LIST,
        "List API keys (own, or all for a global admin). Body {\"user\": U} (optional).",
    ),
    (APIKEY_REVOKE, "Revoke an API key (own, or any for a global admin). Body {\"id\"}."),
    (
        AUDIT,
        "The newest audit events (global admin). Body {\"limit\": 100, \"user\": U} (optional).",
    ),
];

pub fn is_security_action(action_type: &str) -> bool {
    ACTIONS.iter().any(|(a, _)| *a == action_type)
}

/// A security action's result body, and what changed (`None` for reads).
pub struct Done {
    pub body: Vec<u8>,
    pub changed: Option<String>,
}

fn read(value: impl serde::Serialize) -> Result<Done, Refusal> {
    Ok(Done {
        body: to_json(&value)?,
        changed: None,
    })
}

fn change(value: impl serde::Serialize, what: String) -> Result<Done, Refusal> {
    Ok(Done {
        body: to_json(&value)?,
        changed: Some(what),
    })
}

fn to_json(value: &impl serde::Serialize) -> Result<Vec<u8>, Refusal> {
    serde_json::to_vec(value)
        .map_err(|e| Refusal::Failed(Error::Refused(format!("encoding the result: {e}"))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserCreate {
    name: String,
    password: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPasswd {
    name: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserDisable {
    name: String,
    #[serde(default)]
    disabled: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Nothing {}

/// `user` or `group`, exactly one.
fn principal(
    action: &str,
    user: Option<String>,
    group: Option<String>,
) -> Result<Principal, Error> {
    match (user, group) {
        (Some(u), None) => Ok(Principal::User(u)),
        (None, Some(g)) => Ok(Principal::Group(g)),
        _ => Err(Error::invalid(
            format!("{action} body"),
            "give exactly one of \"user\" and \"group\"",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    project: String,
    role: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    group: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    project: String,
    /// Accepted for symmetry with `grant` (a principal holds one role per project).
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    group: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ProjectFilter {
    #[serde(default)]
    project: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AclAdd {
    project: String,
    table: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    column: Option<String>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    group: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdBody {
    id: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KeyCreate {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    expires: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KeyList {
    #[serde(default)]
    user: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    user: Option<String>,
}

/// Most audit events one call returns.
const MAX_AUDIT_EVENTS: usize = 10_000;
const DEFAULT_AUDIT_EVENTS: usize = 100;

/// Parses a body (empty means `{}`); errors name the action and the field.
fn parse<T: DeserializeOwned>(action: &str, body: &[u8]) -> Result<T, Refusal> {
    let v = body_value(action, body)?;
    serde_json::from_value(v)
        .map_err(|e| Refusal::Failed(Error::invalid(format!("{action} body"), e.to_string())))
}

fn denied(r: qilin_engine::Result<()>) -> Result<(), Refusal> {
    r.map_err(Refusal::Denied)
}

/// Checks that the caller administers `project` (not seeing it at all is NOT_FOUND).
fn project_admin(access: &Access, project: &str, action: &str) -> Result<(), Refusal> {
    denied(access.require(project, ProjectRole::Admin, action))
}

/// Runs a security action as `access`.
pub fn run(
    store: &SecurityStore,
    audit: &AuditLog,
    access: &Access,
    action: &str,
    body: &[u8],
) -> Result<Done, Refusal> {
    match action {
        USER_CREATE => {
            let b: UserCreate = parse(action, body)?;
            denied(access.require_admin(action))?;
            // Checked before the user is written, so a bad group changes nothing.
            for g in &b.groups {
                validate_name("group", g)?;
            }
            let mut user = store.create_user(&b.name, &b.password, b.admin)?;
            if !b.groups.is_empty() {
                store.set_groups(&b.name, b.groups.clone())?;
                user.groups = b.groups;
            }
            let what = format!("user created {}", user.name);
            change(user, what)
        }
        USER_PASSWD => {
            let b: UserPasswd = parse(action, body)?;
            if b.name != access.user {
                denied(access.require_admin("setting another user's password"))?;
            }
            store.set_password(&b.name, &b.password)?;
            change(json!({"user": b.name}), format!("password set {}", b.name))
        }
        USER_DISABLE => {
            let b: UserDisable = parse(action, body)?;
            denied(access.require_admin(action))?;
            let disabled = b.disabled.unwrap_or(true);
            store.set_disabled(&b.name, disabled)?;
            let verb = if disabled { "disabled" } else { "enabled" };
            change(
                json!({"user": b.name, "disabled": disabled}),
                format!("user {verb} {}", b.name),
            )
        }
        USER_LIST => {
            let _: Nothing = parse(action, body)?;
            denied(access.require_admin(action))?;
            read(store.users()?)
        }
        GRANT => {
            let b: GrantBody = parse(action, body)?;
            let role: ProjectRole = b.role.parse()?;
            let principal = principal(action, b.user, b.group)?;
            project_admin(access, &b.project, action)?;
            let grant = store.grant(&b.project, &principal, role)?;
            let what = format!("granted {role} in project {} to {principal}", grant.project);
            change(grant, what)
        }
        REVOKE => {
            let b: RevokeBody = parse(action, body)?;
            if let Some(r) = &b.role {
                r.parse::<ProjectRole>()?;
            }
            let principal = principal(action, b.user, b.group)?;
            project_admin(access, &b.project, action)?;
            let grant = store.revoke(&b.project, &principal)?;
            let what = format!(
                "revoked {} in project {} from {principal}",
                grant.role, grant.project
            );
            change(grant, what)
        }
        GRANT_LIST => {
            let f: ProjectFilter = parse(action, body)?;
            if let Some(p) = &f.project {
                project_admin(access, p, action)?;
            }
            let grants: Vec<_> = store
                .grants(f.project.as_deref())?
                .into_iter()
                .filter(|g| access.role(&g.project) == Some(ProjectRole::Admin))
                .collect();
            read(grants)
        }
        ACL_ADD => {
            let b: AclAdd = parse(action, body)?;
            let principal = principal(action, b.user, b.group)?;
            let what = format!("{action} body");
            let rule = match b.kind.as_str() {
                "deny_table" if b.column.is_none() && b.filter.is_none() => Rule::DenyTable,
                "deny_column" if b.filter.is_none() => Rule::DenyColumn {
                    column: b
                        .column
                        .ok_or_else(|| Error::invalid(&what, "deny_column needs \"column\""))?,
                },
                "row_filter" if b.column.is_none() => Rule::RowFilter {
                    filter: b
                        .filter
                        .ok_or_else(|| Error::invalid(&what, "row_filter needs \"filter\""))?,
                },
                "deny_table" | "deny_column" | "row_filter" => {
                    return Err(Refusal::Failed(Error::invalid(
                        &what,
                        "deny_table takes no column or filter, deny_column a column, \
                         row_filter a filter",
                    )))
                }
                other => {
                    return Err(Refusal::Failed(Error::invalid(
                        &what,
                        format!("type {other:?}: expected deny_table, deny_column or row_filter"),
                    )))
                }
            };
            project_admin(access, &b.project, action)?;
            let rule = store.add_rule(&b.project, &b.table, &principal, rule)?;
            let what = format!(
                "rule {} added on {}.{} for {}",
                rule.id, rule.project, rule.table, rule.principal
            );
            change(rule, what)
        }
        ACL_REMOVE => {
            let b: IdBody = parse(action, body)?;
            let rule = store
                .rules(None)?
                .into_iter()
                .find(|r| r.id == b.id)
                .ok_or_else(|| Error::NotFound {
                    kind: "rule",
                    name: b.id.clone(),
                })?;
            if !access.sees_project(&rule.project) {
                // As if it did not exist.
                return Err(Refusal::Denied(Error::NotFound {
                    kind: "rule",
                    name: b.id,
                }));
            }
            project_admin(access, &rule.project, action)?;
            let removed = store.remove_rule(&b.id)?;
            let what = format!(
                "rule {} removed from {}.{}",
                removed.id, removed.project, removed.table
            );
            change(removed, what)
        }
        ACL_LIST => {
            let f: ProjectFilter = parse(action, body)?;
            if let Some(p) = &f.project {
                project_admin(access, p, action)?;
            }
            let rules: Vec<_> = store
                .rules(f.project.as_deref())?
                .into_iter()
                .filter(|r| access.role(&r.project) == Some(ProjectRole::Admin))
                .collect();
            read(rules)
        }
        APIKEY_CREATE => {
            let b: KeyCreate = parse(action, body)?;
            let user = b.user.unwrap_or_else(|| access.user.clone());
            if user != access.user {
                denied(access.require_admin("creating another user's API key"))?;
            }
            let expires = b
                .expires
                .as_deref()
                .map(|e| parse_expiry(e, Utc::now()))
                .transpose()?;
            let (info, key) = store.create_api_key(&user, expires)?;
            let what = format!("api key created {} for user {}", info.id, info.user);
            let mut v = serde_json::to_value(&info)
                .map_err(|e| Refusal::Failed(Error::Refused(format!("encoding the key: {e}"))))?;
            // The only time the secret leaves the server.
            v["key"] = key.into();
            change(v, what)
        }
        APIKEY_LIST => {
            let b: KeyList = parse(action, body)?;
            let user = match b.user {
                Some(u) if u != access.user => {
                    denied(access.require_admin("listing another user's API keys"))?;
                    Some(u)
                }
                Some(u) => Some(u),
                None if access.admin => None,
                None => Some(access.user.clone()),
            };
            read(store.api_keys(user.as_deref())?)
        }
        APIKEY_REVOKE => {
            let b: IdBody = parse(action, body)?;
            let key = store
                .api_keys(None)?
                .into_iter()
                .find(|k| k.id == b.id)
                .ok_or_else(|| Error::NotFound {
                    kind: "api key",
                    name: b.id.clone(),
                })?;
            if key.user != access.user && !access.admin {
                // Another user's key: as if it did not exist.
                return Err(Refusal::Denied(Error::NotFound {
                    kind: "api key",
                    name: b.id,
                }));
            }
            let revoked = store.revoke_api_key(&b.id)?;
            let what = format!("api key revoked {} of user {}", revoked.id, revoked.user);
            change(revoked, what)
        }
        AUDIT => {
            let q: AuditQuery = parse(action, body)?;
            denied(access.require_admin(action))?;
            let limit = q
                .limit
                .unwrap_or(DEFAULT_AUDIT_EVENTS)
                .min(MAX_AUDIT_EVENTS);
            // What this instance saw a moment ago is part of the answer.
            audit.flush()?;
            read(audit.read(limit, q.user.as_deref())?)
        }
        other => Err(Refusal::Failed(Error::invalid(
            format!("action {other:?}"),
            "not a security action",
        ))),
    }
}

/// An expiry as a duration from `now` (`30d`, `12h`, `45m`), an RFC 3339 time or a date
/// (`2027-01-01`, midnight UTC); it must be in the future.
pub fn parse_expiry(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, Error> {
    let bad = |why: &str| Error::invalid(format!("expires {text:?}"), why.to_string());
    let t = text.trim();
    let at = if let Ok(at) = DateTime::parse_from_rfc3339(t) {
        at.with_timezone(&Utc)
    } else if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        d.and_hms_opt(0, 0, 0)
            .map(|dt| dt.and_utc())
            .ok_or_else(|| bad("not a date"))?
    } else {
        let split = t.len().saturating_sub(1);
        let (n, unit) = (t.get(..split).unwrap_or(""), t.get(split..).unwrap_or(""));
        let n: i64 = n
            .parse()
            .ok()
            .filter(|n| *n > 0 && *n <= 100_000)
            .ok_or_else(|| {
                bad("expected a duration such as 30d, 12h or 45m, or a time such as 2027-01-01T00:00:00Z")
            })?;
        let d = match unit {
            "d" => Duration::days(n),
            "h" => Duration::hours(n),
            "m" => Duration::minutes(n),
            "s" => Duration::seconds(n),
            _ => return Err(bad("a duration ends in d, h, m or s")),
        };
        now + d
    };
    if at <= now {
        return Err(bad("is not in the future"));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use qilin_engine::error::ErrorKind;

    use super::*;

    #[test]
    fn expiry_accepts_durations_times_and_dates() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_expiry("30d", now).unwrap(), now + Duration::days(30));
        assert_eq!(parse_expiry("2h", now).unwrap(), now + Duration::hours(2));
        assert_eq!(
            parse_expiry("2027-01-01T00:00:00Z", now)
                .unwrap()
                .to_rfc3339(),
            "2027-01-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_expiry("2027-01-01", now).unwrap().to_rfc3339(),
            "2027-01-01T00:00:00+00:00"
        );
        for bad in [
            "",
            "d",
            "0d",
            "-3d",
            "30x",
            "2025-01-01",
            "soon",
            "99999999999d",
        ] {
            let e = parse_expiry(bad, now).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::User, "{bad}: {e}");
        }
    }

    #[test]
    fn principals_need_exactly_one_of_user_and_group() {
        assert_eq!(
            principal("a", Some("u".into()), None).unwrap(),
            Principal::User("u".into())
        );
        assert_eq!(
            principal("a", None, Some("g".into())).unwrap(),
            Principal::Group("g".into())
        );
        assert!(principal("a", Some("u".into()), Some("g".into())).is_err());
        assert!(principal("a", None, None).is_err());
        let e = parse::<GrantBody>(GRANT, br#"{"project": "p", "role": "QUERY", "usr": "u"}"#)
            .err()
            .unwrap();
        assert!(e.error().to_string().contains("usr"), "{:?}", e);
        assert!(is_security_action(GRANT) && !is_security_action("qilin.cube.put"));
    }
}
