//! Users, grants, table rules and API keys as resources of the metadata store (shared by the
//! cluster), and [`SecurityState`], everything loaded at one store version, which answers
//! "is this password right", "whose key is this" and "what may this user see".
//!
//! Layout (JSON resources):
//! - `/user/{name}.json`: the user with its Argon2id PHC hash, admin, disabled, groups, times;
//! - `/acl/{project}.json`: the project's grants and table rules (rule ids are stable);
//! - `/apikey/{id}.json`: the key's user, times, revoked flag and the SHA-256 of its secret.
//!
//! Every change validates first and writes one resource with check-and-put, so an error
//! changes nothing and concurrent writers never lose each other's changes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::secret;
use super::{Access, Principal, ProjectRole};
use crate::error::{Error, Result};
use crate::metadata::managers::Metadata;
use crate::model::TableDesc;
use crate::names::validate_name;

/// Longest accepted row filter (SQL text).
pub const MAX_FILTER_BYTES: usize = 4096;

/// A user as listings show it (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub name: String,
    /// A global admin (ADMIN in every project).
    pub admin: bool,
    pub disabled: bool,
    pub groups: Vec<String>,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
}

/// A project role held by a user or a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub project: String,
    pub principal: Principal,
    pub role: ProjectRole,
}

/// What a table rule does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Rule {
    DenyTable,
    DenyColumn {
        column: String,
    },
    /// A SQL predicate over the table's own columns; the principal sees only rows passing it.
    RowFilter {
        filter: String,
    },
}

/// A rule on one table of a project for a user or a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRule {
    pub id: String,
    pub project: String,
    pub table: String,
    pub principal: Principal,
    #[serde(flatten)]
    pub rule: Rule,
}

/// An API key as listings show it (the secret is shown once, at creation, and only its hash is
/// stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyInfo {
    pub id: String,
    pub user: String,
    pub created: DateTime<Utc>,
    pub expires: Option<DateTime<Utc>>,
    pub revoked: bool,
}

impl ApiKeyInfo {
    /// Usable at `now`: not revoked and not expired.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        !self.revoked && self.expires.is_none_or(|e| e > now)
    }
}

/// `/user/{name}.json`.
#[derive(Clone, Serialize, Deserialize)]
struct StoredUser {
    #[serde(flatten)]
    info: UserInfo,
    password_hash: String,
}

impl std::fmt::Debug for StoredUser {
    // Never print the hash.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.info.fmt(f)
    }
}

/// `/acl/{project}.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ProjectAcl {
    project: String,
    #[serde(default)]
    grants: Vec<Grant>,
    #[serde(default)]
    rules: Vec<TableRule>,
}

/// `/apikey/{id}.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredApiKey {
    #[serde(flatten)]
    info: ApiKeyInfo,
    secret_sha256: String,
}

pub fn user_path(name: &str) -> String {
    format!("/user/{name}.json")
}
pub fn acl_path(project: &str) -> String {
    format!("/acl/{project}.json")
}
pub fn api_key_path(id: &str) -> String {
    format!("/apikey/{id}.json")
}

/// Typed access to the security resources of the metadata store.
#[derive(Debug, Clone)]
pub struct SecurityStore {
    meta: Metadata,
}

impl SecurityStore {
    pub fn new(meta: Metadata) -> SecurityStore {
        SecurityStore { meta }
    }

    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    fn list<T: serde::de::DeserializeOwned>(&self, folder: &str) -> Result<Vec<T>> {
        let mut out = Vec::new();
        for p in self.meta.store().list(folder)? {
            if let Some((t, _)) = self.meta.get_json::<T>(&p)? {
                out.push(t);
            }
        }
        Ok(out)
    }

    fn stored_user(&self, name: &str) -> Result<StoredUser> {
        validate_name("user", name)?;
        self.meta
            .get_json::<StoredUser>(&user_path(name))?
            .map(|(u, _)| u)
            .ok_or_else(|| not_found("user", name))
    }

    /// AlreadyExists for a taken name; Invalid for a bad name or an empty/oversized password.
    pub fn create_user(&self, name: &str, password: &str, admin: bool) -> Result<UserInfo> {
        self.create_user_with_groups(name, password, admin, Vec::new())
    }

    /// [`SecurityStore::create_user`] with its groups.
    pub fn create_user_with_groups(
        &self,
        name: &str,
        password: &str,
        admin: bool,
        groups: Vec<String>,
    ) -> Result<UserInfo> {
        validate_name("user", name)?;
        let groups = validate_groups(groups)?;
        secret::validate_password(password)?;
        // Names differing only in case would be confusing (and collide on some file systems).
        if let Some(other) = self
            .meta
            .store()
            .list("/user")?
            .iter()
            .filter_map(|p| name_of(p, "/user/"))
            .find(|u| u.eq_ignore_ascii_case(name))
        {
            return Err(Error::AlreadyExists {
                kind: "user",
                name: other,
            });
        }
        let now = Utc::now();
        let user = StoredUser {
            info: UserInfo {
                name: name.to_string(),
                admin,
                disabled: false,
                groups,
                created: now,
                modified: now,
            },
            password_hash: secret::hash_password(password)?,
        };
        match self.meta.put_json(&user_path(name), &user, None) {
            Ok(_) => Ok(user.info),
            Err(Error::Conflict { .. }) => Err(Error::AlreadyExists {
                kind: "user",
                name: name.to_string(),
            }),
            Err(e) => Err(e),
        }
    }

    fn update_user(&self, name: &str, mut f: impl FnMut(&mut StoredUser)) -> Result<UserInfo> {
        validate_name("user", name)?;
        self.meta
            .update_json::<StoredUser, UserInfo>(&user_path(name), |cur| {
                let mut u = cur.ok_or_else(|| not_found("user", name))?;
                f(&mut u);
                u.info.modified = Utc::now();
                let info = u.info.clone();
                Ok((u, info))
            })
            .map(|(u, _)| u)
    }

    pub fn set_password(&self, name: &str, password: &str) -> Result<()> {
        let hash = secret::hash_password(password)?;
        self.update_user(name, |u| u.password_hash = hash.clone())
            .map(|_| ())
    }

    pub fn set_disabled(&self, name: &str, disabled: bool) -> Result<()> {
        self.update_user(name, |u| u.info.disabled = disabled)
            .map(|_| ())
    }

    pub fn set_admin(&self, name: &str, admin: bool) -> Result<()> {
        self.update_user(name, |u| u.info.admin = admin).map(|_| ())
    }

    pub fn set_groups(&self, name: &str, groups: Vec<String>) -> Result<()> {
        let groups = validate_groups(groups)?;
        self.update_user(name, |u| u.info.groups = groups.clone())
            .map(|_| ())
    }

    /// One user (NotFound when unknown).
    pub fn user(&self, name: &str) -> Result<UserInfo> {
        self.stored_user(name).map(|u| u.info)
    }

    pub fn users(&self) -> Result<Vec<UserInfo>> {
        Ok(self
            .list::<StoredUser>("/user")?
            .into_iter()
            .map(|u| u.info)
            .collect())
    }

    /// The project's name as stored (names compare ignoring case), or NotFound.
    fn resolve_project(&self, project: &str) -> Result<String> {
        validate_name("project", project)?;
        if self.meta.project(project)?.is_some() {
            return Ok(project.to_string());
        }
        self.meta
            .projects()?
            .into_iter()
            .map(|p| p.name)
            .find(|p| p.eq_ignore_ascii_case(project))
            .ok_or_else(|| not_found("project", project))
    }

    fn resolve_table(&self, project: &str, table: &str) -> Result<TableDesc> {
        validate_name("table", table)?;
        self.meta
            .tables(project)?
            .into_iter()
            .find(|t| t.name.eq_ignore_ascii_case(table))
            .ok_or_else(|| not_found("table", &format!("{project}.{table}")))
    }

    /// A user principal must name an existing user; a group only a valid name (groups exist
    /// through their members).
    fn check_principal(&self, principal: &Principal) -> Result<()> {
        match principal {
            Principal::User(u) => self.stored_user(u).map(|_| ()),
            Principal::Group(g) => validate_name("group", g),
        }
    }

    fn update_acl<R>(
        &self,
        project: &str,
        mut f: impl FnMut(&mut ProjectAcl) -> Result<R>,
    ) -> Result<R> {
        self.meta
            .update_json::<ProjectAcl, R>(&acl_path(project), |cur| {
                let mut acl = cur.unwrap_or_else(|| ProjectAcl {
                    project: project.to_string(),
                    ..Default::default()
                });
                let r = f(&mut acl)?;
                Ok((acl, r))
            })
            .map(|(r, _)| r)
    }

    fn acls(&self) -> Result<Vec<ProjectAcl>> {
        self.list("/acl")
    }

    /// NotFound for an unknown project or user; replaces the principal's previous role there.
    pub fn grant(&self, project: &str, principal: &Principal, role: ProjectRole) -> Result<Grant> {
        let project = self.resolve_project(project)?;
        self.check_principal(principal)?;
        let grant = Grant {
            project: project.clone(),
            principal: principal.clone(),
            role,
        };
        self.update_acl(&project, |acl| {
            acl.grants.retain(|g| g.principal != *principal);
            acl.grants.push(grant.clone());
            acl.grants.sort_by(|a, b| a.principal.cmp(&b.principal));
            Ok(())
        })?;
        Ok(grant)
    }

    /// NotFound when the principal holds no role in the project.
    pub fn revoke(&self, project: &str, principal: &Principal) -> Result<Grant> {
        let project = self.resolve_project(project)?;
        let missing = || not_found("grant", &format!("of {principal} in project {project}"));
        if self
            .meta
            .get_json::<ProjectAcl>(&acl_path(&project))?
            .is_none()
        {
            return Err(missing());
        }
        self.update_acl(&project, |acl| {
            let at = acl
                .grants
                .iter()
                .position(|g| g.principal == *principal)
                .ok_or_else(missing)?;
            Ok(acl.grants.remove(at))
        })
    }

    pub fn grants(&self, project: Option<&str>) -> Result<Vec<Grant>> {
        let project = project.map(|p| self.resolve_project(p)).transpose()?;
        Ok(self
            .acls()?
            .into_iter()
            .filter(|a| project.as_deref().is_none_or(|p| a.project == p))
            .flat_map(|a| a.grants)
            .collect())
    }

    /// Validates that the project, table (and column) exist and that a row filter is a
    /// predicate over the table's columns. Adding a rule that exists already returns it.
    pub fn add_rule(
        &self,
        project: &str,
        table: &str,
        principal: &Principal,
        rule: Rule,
    ) -> Result<TableRule> {
        let project = self.resolve_project(project)?;
        let table = self.resolve_table(&project, table)?;
        self.check_principal(principal)?;
        let rule = match rule {
            Rule::DenyTable => Rule::DenyTable,
            Rule::DenyColumn { column } => {
                let found = table
                    .columns
                    .iter()
                    .chain(&table.partition_columns)
                    .find(|c| c.name.eq_ignore_ascii_case(column.trim()))
                    .ok_or_else(|| {
                        not_found("column", &format!("{project}.{}.{column}", table.name))
                    })?;
                Rule::DenyColumn {
                    column: found.name.clone(),
                }
            }
            Rule::RowFilter { filter } => {
                let filter = filter.trim().to_string();
                validate_row_filter(&table, &filter)?;
                Rule::RowFilter { filter }
            }
        };
        let new = TableRule {
            id: secret::random_id("r"),
            project: project.clone(),
            table: table.name.clone(),
            principal: principal.clone(),
            rule,
        };
        self.update_acl(&project, |acl| {
            let same = acl.rules.iter().find(|r| {
                r.table == new.table && r.principal == new.principal && r.rule == new.rule
            });
            if let Some(r) = same {
                return Ok(r.clone());
            }
            acl.rules.push(new.clone());
            Ok(new.clone())
        })
    }

    /// NotFound for an unknown id.
    pub fn remove_rule(&self, id: &str) -> Result<TableRule> {
        let missing = || not_found("rule", id);
        let project = self
            .acls()?
            .into_iter()
            .find(|a| a.rules.iter().any(|r| r.id == id))
            .map(|a| a.project)
            .ok_or_else(missing)?;
        self.update_acl(&project, |acl| {
            let at = acl
                .rules
                .iter()
                .position(|r| r.id == id)
                .ok_or_else(missing)?;
            Ok(acl.rules.remove(at))
        })
    }

    pub fn rules(&self, project: Option<&str>) -> Result<Vec<TableRule>> {
        let project = project.map(|p| self.resolve_project(p)).transpose()?;
        Ok(self
            .acls()?
            .into_iter()
            .filter(|a| project.as_deref().is_none_or(|p| a.project == p))
            .flat_map(|a| a.rules)
            .collect())
    }

    /// The key's info and its secret (shown once). NotFound for an unknown user; an expiry in
    /// the past is refused.
    pub fn create_api_key(
        &self,
        user: &str,
        expires: Option<DateTime<Utc>>,
    ) -> Result<(ApiKeyInfo, String)> {
        self.stored_user(user)?;
        let now = Utc::now();
        if let Some(e) = expires {
            if e <= now {
                return Err(Error::invalid(
                    "API key expiry",
                    format!("{} is in the past", e.to_rfc3339()),
                ));
            }
        }
        let (id, key, digest) = secret::new_api_key();
        let stored = StoredApiKey {
            info: ApiKeyInfo {
                id: id.clone(),
                user: user.to_string(),
                created: now,
                expires,
                revoked: false,
            },
            secret_sha256: digest,
        };
        self.meta.put_json(&api_key_path(&id), &stored, None)?;
        Ok((stored.info, key))
    }

    pub fn api_keys(&self, user: Option<&str>) -> Result<Vec<ApiKeyInfo>> {
        let mut keys: Vec<ApiKeyInfo> = self
            .list::<StoredApiKey>("/apikey")?
            .into_iter()
            .map(|k| k.info)
            .filter(|k| user.is_none_or(|u| k.user == u))
            .collect();
        keys.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(keys)
    }

    /// One key (NotFound when unknown).
    pub fn api_key(&self, id: &str) -> Result<ApiKeyInfo> {
        validate_name("API key", id)?;
        self.meta
            .get_json::<StoredApiKey>(&api_key_path(id))?
            .map(|(k, _)| k.info)
            .ok_or_else(|| not_found("API key", id))
    }

    /// Marks the key revoked (kept for the record); NotFound for an unknown id.
    pub fn revoke_api_key(&self, id: &str) -> Result<ApiKeyInfo> {
        validate_name("API key", id)?;
        self.meta
            .update_json::<StoredApiKey, ApiKeyInfo>(&api_key_path(id), |cur| {
                let mut k = cur.ok_or_else(|| not_found("API key", id))?;
                k.info.revoked = true;
                let info = k.info.clone();
                Ok((k, info))
            })
            .map(|(k, _)| k)
    }

    /// Every security resource at the store's current version. A resource that cannot be
    /// decoded is skipped (and logged) rather than locking everyone out.
    pub fn load(&self) -> Result<SecurityState> {
        // The version first: the state is at least as new as it says.
        let version = self.meta.store().store_version()?;
        let mut state = SecurityState {
            version,
            ..Default::default()
        };
        for p in self.meta.store().list("/user")? {
            match self.meta.get_json::<StoredUser>(&p) {
                Ok(Some((u, _))) => {
                    state.users.insert(u.info.name.clone(), u);
                }
                Ok(None) => {}
                Err(e) => log::warn!("security: skipping {p}: {e}"),
            }
        }
        for p in self.meta.store().list("/acl")? {
            match self.meta.get_json::<ProjectAcl>(&p) {
                Ok(Some((a, _))) => state.acls.push(a),
                Ok(None) => {}
                Err(e) => log::warn!("security: skipping {p}: {e}"),
            }
        }
        for p in self.meta.store().list("/apikey")? {
            match self.meta.get_json::<StoredApiKey>(&p) {
                Ok(Some((k, _))) => {
                    state.keys.insert(k.info.id.clone(), k);
                }
                Ok(None) => {}
                Err(e) => log::warn!("security: skipping {p}: {e}"),
            }
        }
        Ok(state)
    }
}

fn not_found(kind: &'static str, name: &str) -> Error {
    Error::NotFound {
        kind,
        name: name.chars().take(200).collect(),
    }
}

/// `/user/alice.json` → `alice`.
fn name_of(path: &str, folder: &str) -> Option<String> {
    path.strip_prefix(folder)?
        .strip_suffix(".json")
        .map(str::to_string)
}

fn validate_groups(groups: Vec<String>) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for g in groups {
        let g = g.trim().to_string();
        validate_name("group", &g)?;
        if !out.contains(&g) {
            out.push(g);
        }
    }
    out.sort();
    Ok(out)
}

/// A row filter must be one boolean SQL expression over the table's own columns: no
/// subqueries, aggregates or window functions (it is put above every scan of the table).
pub fn validate_row_filter(table: &TableDesc, filter: &str) -> Result<()> {
    use datafusion::common::tree_node::TreeNode;
    use datafusion::common::DFSchema;
    use datafusion::logical_expr::{Expr, ExprSchemable};
    use datafusion::prelude::SessionContext;

    let what = || format!("row filter on {}.{}", table.project, table.name);
    if filter.is_empty() {
        return Err(Error::invalid(what(), "must not be empty"));
    }
    if filter.len() > MAX_FILTER_BYTES {
        return Err(Error::invalid(
            what(),
            format!("longer than {MAX_FILTER_BYTES} bytes"),
        ));
    }
    let schema = crate::model::table_schema(table)?;
    let df_schema = DFSchema::try_from_qualified_schema(table.name.as_str(), &schema)?;
    let expr = SessionContext::new()
        .parse_sql_expr(filter, &df_schema)
        .map_err(|e| Error::invalid(what(), e.to_string()))?;
    let forbidden = expr
        .exists(|e| {
            Ok(matches!(
                e,
                Expr::AggregateFunction(_)
                    | Expr::WindowFunction(_)
                    | Expr::ScalarSubquery(_)
                    | Expr::Exists(_)
                    | Expr::InSubquery(_)
                    | Expr::Placeholder(_)
            ))
        })
        .unwrap_or(true);
    if forbidden {
        return Err(Error::invalid(
            what(),
            "only a predicate over the table's columns is allowed (no subqueries, aggregates, window functions or parameters)",
        ));
    }
    let ty = expr
        .get_type(&df_schema)
        .map_err(|e| Error::invalid(what(), e.to_string()))?;
    if ty != datafusion::arrow::datatypes::DataType::Boolean {
        return Err(Error::invalid(
            what(),
            format!("{filter:?} is of type {ty}, not a boolean predicate"),
        ));
    }
    Ok(())
}

/// The security resources at one store version.
#[derive(Debug, Clone, Default)]
pub struct SecurityState {
    pub version: u64,
    users: BTreeMap<String, StoredUser>,
    acls: Vec<ProjectAcl>,
    keys: BTreeMap<String, StoredApiKey>,
}

impl SecurityState {
    pub fn user(&self, name: &str) -> Option<UserInfo> {
        self.users.get(name).map(|u| u.info.clone())
    }

    pub fn users(&self) -> Vec<UserInfo> {
        self.users.values().map(|u| u.info.clone()).collect()
    }

    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    /// A digest of what a successful password check of `user` depended on (its stored hash):
    /// a cached verification is valid while this is unchanged.
    pub fn password_stamp(&self, user: &str) -> Option<String> {
        self.users
            .get(user)
            .map(|u| secret::sha256_hex(u.password_hash.as_bytes()))
    }

    /// Whether `password` is the stored user's (enabled) password. Argon2id: slow on purpose.
    pub fn verify_password(&self, user: &str, password: &str) -> bool {
        self.users.get(user).is_some_and(|u| !u.info.disabled)
            && self.password_matches(user, password)
    }

    /// Whether `password` is the stored user's password, enabled or not (so that a disabled
    /// user learns it is disabled only with the right password).
    pub fn password_matches(&self, user: &str, password: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| secret::verify_password(&u.password_hash, password))
    }

    /// The user an API key belongs to, if it is well-formed, known, not revoked, not expired
    /// and its user is enabled.
    pub fn verify_api_key(&self, key: &str) -> Option<String> {
        let (id, given) = secret::split_api_key(key)?;
        let k = self.keys.get(id)?;
        let digest = secret::sha256_hex(given.as_bytes());
        if !secret::constant_time_eq(digest.as_bytes(), k.secret_sha256.as_bytes()) {
            return None;
        }
        if !k.info.is_active(Utc::now()) {
            return None;
        }
        let user = self.users.get(&k.info.user)?;
        (!user.info.disabled).then(|| user.info.name.clone())
    }

    /// The key's info (any state) for messages, if the id part of `key` is known.
    pub fn api_key_info(&self, key: &str) -> Option<ApiKeyInfo> {
        let (id, _) = secret::split_api_key(key)?;
        self.keys.get(id).map(|k| k.info.clone())
    }

    /// What `user` may see and do (its grants and its groups' grants, the rules on it and its
    /// groups); a global admin is [`Access::unrestricted`]. An unknown or disabled user sees
    /// nothing.
    pub fn access(&self, user: &str) -> Access {
        let mut access = Access::unrestricted(user);
        access.admin = false;
        let Some(u) = self.users.get(user).filter(|u| !u.info.disabled) else {
            return access;
        };
        if u.info.admin {
            return Access::unrestricted(user);
        }
        let applies = |p: &Principal| match p {
            Principal::User(name) => name == user,
            Principal::Group(g) => u.info.groups.iter().any(|m| m == g),
        };
        for acl in &self.acls {
            let role = acl
                .grants
                .iter()
                .filter(|g| applies(&g.principal))
                .map(|g| g.role)
                .max();
            let Some(role) = role else { continue };
            access.projects.insert(acl.project.clone(), role);
            for r in acl.rules.iter().filter(|r| applies(&r.principal)) {
                let t = access
                    .tables
                    .entry((acl.project.clone(), r.table.clone()))
                    .or_default();
                match &r.rule {
                    Rule::DenyTable => t.denied = true,
                    Rule::DenyColumn { column } => {
                        t.denied_columns.insert(column.clone());
                    }
                    Rule::RowFilter { filter } => {
                        if !t.row_filters.contains(filter) {
                            t.row_filters.push(filter.clone());
                        }
                    }
                }
            }
        }
        access.tables.retain(|_, r| !r.is_empty());
        access
    }
}
