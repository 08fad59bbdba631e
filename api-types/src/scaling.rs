//! What the autoscaler decided and why: the reason record of every scaling decision and the
//! status a user reads to answer "why did it scale?".

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::MetricKind;

/// Which window drove a request-metric decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScaleMode {
    Stable,
    /// The panic window's demand reached the panic threshold: scale up fast, never down.
    Panic,
}

/// One metric's contribution to a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricReading {
    #[serde(rename = "type")]
    pub kind: MetricKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Per-instance target.
    pub target: f64,
    /// Stable-window value (total over instances for request and custom metrics, average
    /// utilization percent for cpu and memory); absent without data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<f64>,
    /// Panic-window value (request metrics only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic: Option<f64>,
    /// Instances this metric asks for; absent when it has no data (no action).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<u32>,
    /// Why the metric asks for what it does, e.g. `within 10% tolerance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A bound that changed the recommendation, in the order applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Clamp {
    /// E.g. `max`, `min`, `max_scale_up_rate`, `max_scale_down_rate`, `scale_down_delay`,
    /// `panic_no_scale_down`, `resource_stabilization`, `schedule:<cron>`, `restart_hold`,
    /// `scale_to_zero_grace`.
    pub by: String,
    pub from: u32,
    pub to: u32,
}

/// The inputs and steps of one decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScaleReason {
    pub mode: ScaleMode,
    pub ready: u32,
    pub metrics: Vec<MetricReading>,
    /// The largest metric recommendation, before clamps; absent when no metric had data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clamps: Vec<Clamp>,
    /// The schedule rule in force, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// One line for people, e.g. `panic: concurrency 41.0 / target 5 → 9 (max 10)`.
    pub summary: String,
}

/// A decision that changed a version's desired instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScaleDecision {
    pub version: u32,
    pub at: DateTime<Utc>,
    pub from: u32,
    pub to: u32,
    pub reason: ScaleReason,
}

/// `GET .../apps/{app}/autoscaling/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AutoscalingStatus {
    /// Whether the app has a policy the autoscaler follows.
    pub enabled: bool,
    pub stable_window_secs: u32,
    pub panic_window_secs: f64,
    pub versions: Vec<VersionScaling>,
    /// Latest decisions that changed something, newest first.
    pub decisions: Vec<ScaleDecision>,
}

/// The autoscaler's view of one version right now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VersionScaling {
    pub version: u32,
    pub desired: u32,
    pub ready: u32,
    pub mode: ScaleMode,
    /// The latest evaluation, whether or not it changed anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<ScaleReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluated_at: Option<DateTime<Utc>>,
}
