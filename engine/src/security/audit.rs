//! The audit log: every sign-in, refused access, metadata change, grant and job action, with
//! user, time, instance and outcome, as JSON lines in the metadata store (bounded, rotated).
//!
//! SKELETON (lead): signatures are the contract between helpers; helper A implements them.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::Result;
use crate::metadata::managers::Metadata;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    /// Refused: bad credentials, a missing role, a denied table.
    Denied,
    /// Allowed but failed (bad input, a conflict).
    Failed,
}

/// One audited event (one JSON line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub time: DateTime<Utc>,
    pub user: String,
    /// `kylin.server.instance-name` or host:port of the instance that saw it.
    pub instance: String,
    /// `sign-in`, `query`, `project.create`, `model.put`, `cube.build`, `job.discard`, `grant`, …
    pub action: String,
    /// What it was done to (`project ssb`, `cube ssb_sales`, `user alice`).
    pub target: String,
    pub outcome: Outcome,
    pub detail: String,
}

pub struct AuditLog {
    meta: Metadata,
    instance: String,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    pub fn new(meta: Metadata, instance: impl Into<String>, config: &Config) -> Arc<AuditLog> {
        let _ = config;
        Arc::new(AuditLog {
            meta,
            instance: instance.into(),
        })
    }

    /// Records an event; never fails or blocks the caller (buffered, written within a second).
    pub fn record(
        &self,
        user: &str,
        action: &str,
        target: &str,
        outcome: Outcome,
        detail: impl Into<String>,
    ) {
        let _ = (&self.meta, user, action, target, outcome, detail.into());
        todo!("helper A")
    }

    /// Writes buffered events now.
    pub fn flush(&self) -> Result<()> {
        todo!("helper A")
    }

    /// The newest `limit` events (oldest first), optionally of one user.
    pub fn read(&self, limit: usize, user: Option<&str>) -> Result<Vec<AuditEvent>> {
        let _ = (limit, user);
        todo!("helper A")
    }
}
