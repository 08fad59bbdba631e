//! The driver's persisted state of one instance (`instance.json`): enough to adopt the
//! instance after a control-plane crash, keep its port and restart history, and restart it
//! before the control plane has declared anything again.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tideway_api_types::{HealthCheck, Resources};

use super::cgroup::InstanceCgroups;
use super::layout::{ExitRecord, ProcId};
use crate::runtime::{Workload, WorkloadKey};

/// How an instance runs: the parts of a [`Workload`] an instance needs, persisted with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunTemplate {
    pub dir: PathBuf,
    pub command: String,
    pub env: BTreeMap<String, String>,
    pub health: HealthCheck,
    pub resources: Resources,
}

impl RunTemplate {
    pub fn from_workload(w: &Workload) -> Self {
        RunTemplate {
            dir: w.dir.clone(),
            command: w.command.clone(),
            env: w.env.clone(),
            health: w.health.clone(),
            resources: w.resources.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct InstanceRecord {
    pub id: String,
    pub namespace: String,
    pub app: String,
    pub version: u32,
    pub port: u16,
    pub created_at: DateTime<Utc>,
    /// Restarts in place so far.
    pub restarts: u32,
    /// Exits since the instance was last ready; drives backoff and crash-loop detection.
    pub consecutive_failures: u32,
    /// When the last run ended, while the instance waits to be restarted.
    #[serde(default)]
    pub exited_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_exit: Option<ExitRecord>,
    /// The shim of the current run.
    #[serde(default)]
    pub shim: Option<ProcId>,
    /// The app of the current run, once the shim reported it.
    #[serde(default)]
    pub app_proc: Option<ProcId>,
    pub template: RunTemplate,
    #[serde(default)]
    pub cgroups: Option<InstanceCgroups>,
    pub limits_enforced: bool,
    #[serde(default)]
    pub limits_note: Option<String>,
}

impl InstanceRecord {
    pub fn key(&self) -> WorkloadKey {
        WorkloadKey {
            namespace: self.namespace.clone(),
            app: self.app.clone(),
            version: self.version,
        }
    }
}
