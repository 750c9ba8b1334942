//! Users, grants, table rules and API keys as resources of the metadata store (shared by the
//! cluster), and [`SecurityState`], everything loaded at one store version, which answers
//! "is this password right", "whose key is this" and "what may this user see".
//!
//! SKELETON (lead): signatures are the contract between helpers; helper A implements them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Access, Principal, ProjectRole};
use crate::error::Result;
use crate::metadata::managers::Metadata;

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

    /// AlreadyExists for a taken name; Invalid for a bad name or an empty/oversized password.
    pub fn create_user(&self, name: &str, password: &str, admin: bool) -> Result<UserInfo> {
        let _ = (name, password, admin);
        todo!("helper A")
    }

    pub fn set_password(&self, name: &str, password: &str) -> Result<()> {
        let _ = (name, password);
        todo!("helper A")
    }

    pub fn set_disabled(&self, name: &str, disabled: bool) -> Result<()> {
        let _ = (name, disabled);
        todo!("helper A")
    }

    pub fn set_admin(&self, name: &str, admin: bool) -> Result<()> {
        let _ = (name, admin);
        todo!("helper A")
    }

    pub fn set_groups(&self, name: &str, groups: Vec<String>) -> Result<()> {
        let _ = (name, groups);
        todo!("helper A")
    }

    pub fn users(&self) -> Result<Vec<UserInfo>> {
        todo!("helper A")
    }

    /// NotFound for an unknown project or user; replaces the principal's previous role there.
    pub fn grant(&self, project: &str, principal: &Principal, role: ProjectRole) -> Result<Grant> {
        let _ = (project, principal, role);
        todo!("helper A")
    }

    /// NotFound when the principal holds no role in the project.
    pub fn revoke(&self, project: &str, principal: &Principal) -> Result<Grant> {
        let _ = (project, principal);
        todo!("helper A")
    }

    pub fn grants(&self, project: Option<&str>) -> Result<Vec<Grant>> {
        let _ = project;
        todo!("helper A")
    }

    /// Validates that the project, table (and column) exist and that a row filter is a
    /// predicate over the table's columns.
    pub fn add_rule(
        &self,
        project: &str,
        table: &str,
        principal: &Principal,
        rule: Rule,
    ) -> Result<TableRule> {
        let _ = (project, table, principal, rule);
        todo!("helper A")
    }

    pub fn remove_rule(&self, id: &str) -> Result<TableRule> {
        let _ = id;
        todo!("helper A")
    }

    pub fn rules(&self, project: Option<&str>) -> Result<Vec<TableRule>> {
        let _ = project;
        todo!("helper A")
    }

    /// The key's info and its secret (shown once).
    pub fn create_api_key(
        &self,
        user: &str,
        expires: Option<DateTime<Utc>>,
    ) -> Result<(ApiKeyInfo, String)> {
        let _ = (user, expires);
        todo!("helper A")
    }

    pub fn api_keys(&self, user: Option<&str>) -> Result<Vec<ApiKeyInfo>> {
        let _ = user;
        todo!("helper A")
    }

    pub fn revoke_api_key(&self, id: &str) -> Result<ApiKeyInfo> {
        let _ = id;
        todo!("helper A")
    }

    /// Every security resource at the store's current version.
    pub fn load(&self) -> Result<SecurityState> {
        todo!("helper A")
    }
}

/// The security resources at one store version.
#[derive(Debug, Clone, Default)]
pub struct SecurityState {
    pub version: u64,
}

impl SecurityState {
    pub fn user(&self, name: &str) -> Option<UserInfo> {
        let _ = name;
        todo!("helper A")
    }

    /// Whether `password` is the stored user's (enabled) password. Argon2id: slow on purpose.
    pub fn verify_password(&self, user: &str, password: &str) -> bool {
        let _ = (user, password);
        todo!("helper A")
    }

    /// The user an API key belongs to, if it is well-formed, known, not revoked, not expired
    /// and its user is enabled.
    pub fn verify_api_key(&self, key: &str) -> Option<String> {
        let _ = key;
        todo!("helper A")
    }

    /// What `user` may see and do (its grants and its groups' grants, the rules on it and its
    /// groups); a global admin is [`Access::unrestricted`].
    pub fn access(&self, user: &str) -> Access {
        Access::unrestricted(user)
    }
}
