//! Runtime drivers: where instances actually run.
//!
//! The control plane talks to a runtime only through [`RuntimeDriver`], and only
//! declaratively: it states the complete set of [`Workload`]s that should exist (one per app
//! version, with a replica count), and the driver converges to it on its own, reporting what
//! it observes ([`RuntimeDriver::instances`]) and what it did ([`RuntimeEvent`]). That is
//! the shape of a Kubernetes Deployment per version and its scale subresource, so a
//! Kubernetes driver can implement the same trait; nothing above this module may assume local
//! processes.

pub mod local;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tideway_api_types::{HealthCheck, Instance, LogLine, Resources};

/// One version of one app that should run `replicas` instances.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub namespace: String,
    pub app: String,
    pub version: u32,
    pub replicas: u32,
    /// The unpacked (and built) artifact; instances run with it as working directory.
    pub dir: PathBuf,
    /// Shell command, started with `$PORT` and the `TIDEWAY_*` variables set.
    pub command: String,
    pub env: BTreeMap<String, String>,
    /// Fixed port; `None` means a free port per instance.
    pub port: Option<u16>,
    pub health: HealthCheck,
    pub resources: Resources,
}

impl Workload {
    pub fn key(&self) -> WorkloadKey {
        WorkloadKey {
            namespace: self.namespace.clone(),
            app: self.app.clone(),
            version: self.version,
        }
    }
}

/// Identity of a workload: an app version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadKey {
    pub namespace: String,
    pub app: String,
    pub version: u32,
}

/// Something the runtime did or saw, for the event log. `kind` follows the event naming
/// rule (`InstanceStarted`, `InstanceReady`, `InstanceExited`, `InstanceRestarting`,
/// `InstanceCrashLoop`, `InstanceUnhealthy`, `InstanceDraining`, `InstanceStopped`,
/// `InstanceAdopted`, `InstanceOomKilled`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeEvent {
    pub namespace: String,
    pub app: String,
    pub version: u32,
    pub instance: String,
    pub kind: &'static str,
    pub reason: String,
    /// Inputs of the decision: exit status, last log lines, backoff, health result, …
    pub details: serde_json::Value,
}

/// Which captured output to read.
#[derive(Debug, Clone, PartialEq)]
pub struct LogQuery {
    pub namespace: String,
    pub app: String,
    /// Only this instance.
    pub instance: Option<String>,
    /// Only lines at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only the last N lines (per instance) of what is already captured.
    pub tail: Option<usize>,
    /// Keep streaming new lines until the receiver is dropped.
    pub follow: bool,
}

/// A stream of log lines; ends when the captured output is exhausted (no follow) or never.
pub type LogFeed = Pin<Box<dyn futures_core::Stream<Item = LogLine> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid workload {0}")]
    InvalidWorkload(String),
    #[error("runtime I/O failed: {context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

#[async_trait]
pub trait RuntimeDriver: Send + Sync + 'static {
    /// Declares every workload that should exist. Instances of workloads not listed are
    /// drained and stopped; missing ones are started. Returns once the declaration is
    /// recorded; convergence happens in the background.
    async fn apply(&self, desired: Vec<Workload>) -> Result<(), RuntimeError>;

    /// Observed instances of every app, now.
    fn instances(&self) -> Vec<Instance>;

    /// Lifecycle events from now on.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RuntimeEvent>;

    /// Captured output of an app's instances.
    async fn logs(&self, query: LogQuery) -> Result<LogFeed, RuntimeError>;
}
