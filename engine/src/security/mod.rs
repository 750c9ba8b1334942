//! Who may see and do what: users, project roles, table/column/row restrictions, API keys and
//! the audit log, all kept in the metadata store so every instance of a cluster applies the
//! same rules.
//!
//! Roles are Kylin's, per project and ordered: QUERY (query the project) < OPERATION (+ build,
//! merge, refresh, resume, discard its cubes) < MANAGEMENT (+ create and change its tables,
//! models, cubes) < ADMIN (+ grant roles in it). A global admin holds ADMIN everywhere and is
//! never restricted.
//!
//! [`Access`] is what one caller may see, resolved once per request from the stored rules; the
//! query engine plans with it and every server checks actions against it.

pub mod audit;
pub mod secret;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A project role; a higher one includes every lower one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProjectRole {
    Query,
    Operation,
    Management,
    Admin,
}

impl ProjectRole {
    pub const ALL: [ProjectRole; 4] = [
        ProjectRole::Query,
        ProjectRole::Operation,
        ProjectRole::Management,
        ProjectRole::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProjectRole::Query => "QUERY",
            ProjectRole::Operation => "OPERATION",
            ProjectRole::Management => "MANAGEMENT",
            ProjectRole::Admin => "ADMIN",
        }
    }
}

impl fmt::Display for ProjectRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProjectRole {
    type Err = Error;

    /// Case-insensitive; Kylin's permission names (READ, OPERATION, MANAGEMENT, ADMINISTRATION)
    /// are accepted too.
    fn from_str(s: &str) -> Result<ProjectRole> {
        match s.trim().to_ascii_uppercase().as_str() {
            "QUERY" | "READ" => Ok(ProjectRole::Query),
            "OPERATION" => Ok(ProjectRole::Operation),
            "MANAGEMENT" => Ok(ProjectRole::Management),
            "ADMIN" | "ADMINISTRATION" => Ok(ProjectRole::Admin),
            _ => Err(Error::invalid(
                format!("role {s:?}"),
                "expected QUERY, OPERATION, MANAGEMENT or ADMIN",
            )),
        }
    }
}

/// Who a grant or a restriction applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Principal {
    User(String),
    Group(String),
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::User(u) => write!(f, "user {u}"),
            Principal::Group(g) => write!(f, "group {g}"),
        }
    }
}

/// What one caller may not see of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct TableRestriction {
    /// The whole table is denied: a query naming it fails, metadata calls leave it out.
    pub denied: bool,
    /// Columns (as stored, compared ignoring case) a query may not read; `SELECT *` and
    /// metadata calls leave them out.
    pub denied_columns: BTreeSet<String>,
    /// SQL predicates over the table's own columns (`c_region = 'ASIA'`), ANDed: the caller
    /// sees only the rows that pass them, on every query path.
    pub row_filters: Vec<String>,
}

impl TableRestriction {
    pub fn is_empty(&self) -> bool {
        !self.denied && self.denied_columns.is_empty() && self.row_filters.is_empty()
    }

    pub fn denies_column(&self, column: &str) -> bool {
        self.denied_columns
            .iter()
            .any(|c| c.eq_ignore_ascii_case(column))
    }
}

/// What one authenticated caller may see and do, resolved from the stored rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub user: String,
    /// A global admin: ADMIN in every project, no restrictions.
    pub admin: bool,
    /// The caller's highest role in each project it holds one in (project names as stored).
    pub projects: BTreeMap<String, ProjectRole>,
    /// Restrictions by (project, table), names as stored; only non-empty ones.
    pub tables: BTreeMap<(String, String), TableRestriction>,
}

impl Access {
    /// A global admin: sees and may do everything (the loopback default user, the users of
    /// `kylin.security.users`, in-process callers such as the CLI and tests).
    pub fn unrestricted(user: impl Into<String>) -> Access {
        Access {
            user: user.into(),
            admin: true,
            projects: BTreeMap::new(),
            tables: BTreeMap::new(),
        }
    }

    /// The caller's role in `project` (name compared ignoring case), if any.
    pub fn role(&self, project: &str) -> Option<ProjectRole> {
        if self.admin {
            return Some(ProjectRole::Admin);
        }
        self.projects
            .iter()
            .find(|(p, _)| p.eq_ignore_ascii_case(project))
            .map(|(_, r)| *r)
    }

    /// Whether the caller sees `project` at all (holds any role in it).
    pub fn sees_project(&self, project: &str) -> bool {
        self.role(project).is_some()
    }

    /// Checks that the caller holds `needed` (or a higher role) in `project` for `action`
    /// (`"build cube ssb"`). A project it holds no role in is NOT_FOUND, as if it did not
    /// exist; a lower role is PERMISSION_DENIED naming the role needed.
    pub fn require(&self, project: &str, needed: ProjectRole, action: &str) -> Result<()> {
        match self.role(project) {
            None => Err(Error::NotFound {
                kind: "project",
                name: project.to_string(),
            }),
            Some(r) if r >= needed => Ok(()),
            Some(r) => Err(Error::PermissionDenied(format!(
                "{action} needs role {needed} in project {project}; user {} has {r}",
                self.user
            ))),
        }
    }

    /// Checks that the caller is a global admin (user management, creating projects).
    pub fn require_admin(&self, action: &str) -> Result<()> {
        if self.admin {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!(
                "{action} needs a global admin; user {} is not one",
                self.user
            )))
        }
    }

    /// The restriction on `project.table` (names compared ignoring case), if any.
    pub fn restriction(&self, project: &str, table: &str) -> Option<&TableRestriction> {
        if self.admin {
            return None;
        }
        self.tables
            .iter()
            .find(|((p, t), _)| p.eq_ignore_ascii_case(project) && t.eq_ignore_ascii_case(table))
            .map(|(_, r)| r)
    }

    /// Whether no table of any project is restricted (the caller may still not see every
    /// project).
    pub fn has_restrictions(&self) -> bool {
        !self.admin && self.tables.values().any(|r| !r.is_empty())
    }

    /// A text two callers share exactly when they see the same data: the projects they see and
    /// every restriction, not the user name or the roles. Part of every cache key of the query
    /// engine, so a cached plan or result never crosses callers who see different rows.
    pub fn fingerprint(&self) -> String {
        if self.admin {
            return "*".into();
        }
        #[derive(Serialize)]
        struct Seen<'a> {
            projects: Vec<&'a str>,
            tables: Vec<(&'a str, &'a str, &'a TableRestriction)>,
        }
        let seen = Seen {
            projects: self.projects.keys().map(String::as_str).collect(),
            tables: self
                .tables
                .iter()
                .filter(|(_, r)| !r.is_empty())
                .map(|((p, t), r)| (p.as_str(), t.as_str(), r))
                .collect(),
        };
        // Strings, booleans and lists only: serialization cannot fail.
        serde_json::to_string(&seen).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn query_user() -> Access {
        let mut a = Access::unrestricted("alice");
        a.admin = false;
        a.projects.insert("ssb".into(), ProjectRole::Query);
        a
    }

    #[test]
    fn roles_are_ordered_and_parse_kylin_names() {
        assert!(ProjectRole::Query < ProjectRole::Operation);
        assert!(ProjectRole::Management < ProjectRole::Admin);
        assert_eq!(
            "administration".parse::<ProjectRole>().unwrap(),
            ProjectRole::Admin
        );
        assert_eq!("read".parse::<ProjectRole>().unwrap(), ProjectRole::Query);
        let err = "owner".parse::<ProjectRole>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::User);
    }

    #[test]
    fn require_hides_unknown_projects_and_names_the_role_needed() {
        let a = query_user();
        assert!(a.require("SSB", ProjectRole::Query, "query").is_ok());
        let err = a
            .require("ssb", ProjectRole::Operation, "build cube ssb")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("OPERATION"), "{err}");
        let err = a.require("tpch", ProjectRole::Query, "query").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(a.require_admin("user add").is_err());
        assert!(Access::unrestricted("x")
            .require("any", ProjectRole::Admin, "grant")
            .is_ok());
    }

    #[test]
    fn fingerprints_ignore_names_and_roles_but_not_rows() {
        let mut a = query_user();
        let mut b = query_user();
        b.user = "bob".into();
        b.projects.insert("ssb".into(), ProjectRole::Management);
        assert_eq!(a.fingerprint(), b.fingerprint());
        let filter = |f: &str| TableRestriction {
            row_filters: vec![f.into()],
            ..Default::default()
        };
        a.tables.insert(
            ("ssb".into(), "customer".into()),
            filter("c_region = 'ASIA'"),
        );
        b.tables.insert(
            ("ssb".into(), "customer".into()),
            filter("c_region = 'EUROPE'"),
        );
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(Access::unrestricted("x").fingerprint(), "*");
        assert!(a.restriction("SSB", "CUSTOMER").is_some());
    }
}
