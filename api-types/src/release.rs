//! Release strategies, their persisted progress and the controls a user has over them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{HashRange, HeaderMatch, MatchRule, Sticky, ValueMatch};

/// How a release moves traffic and instances from the stable version to the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Strategy {
    /// Everything at once.
    Immediate,
    /// Shift a growing share of traffic, with pauses and analysis between steps.
    Canary(CanaryStrategy),
    /// Send requests matching rules (and optionally a share of the rest) to the target.
    Gray(GrayStrategy),
    /// Replace instances in batches (TEM's 分批发布).
    Batch(BatchStrategy),
    /// Bring the target up at full size behind a preview route, then switch at once.
    BlueGreen(BlueGreenStrategy),
}

/// Exactly one of `steps`, `weights` or `linear`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CanaryStrategy {
    /// Explicit steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<CanaryStep>,
    /// Shorthand: these weights in order (e.g. `[1, 2, 10, 80]`), each followed by a pause
    /// of `pause_secs` (and an analysis step when `analysis` is set), then promotion.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<u32>,
    /// Shorthand: `step`, `2 × step`, … up to `up_to`, like `weights`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear: Option<LinearSteps>,
    /// Pause after each shorthand weight; absent means wait for `promote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_secs: Option<u32>,
    /// Checks run at every interval while the target takes traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinearSteps {
    pub step: u32,
    pub up_to: u32,
}

/// One canary step: `{"set_weight": 20}`, `{"pause": {"duration_secs": 30}}`,
/// `{"pause": {}}` (until promoted) or `{"analysis": {"checks": 2}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CanaryStep {
    /// Percent of traffic to the target version.
    SetWeight(u32),
    Pause(PauseStep),
    /// Wait until this many consecutive analysis checks pass.
    Analysis(AnalysisStep),
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseStep {
    /// Absent: until promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalysisStep {
    #[serde(default = "one")]
    pub checks: u32,
}

fn one() -> u32 {
    1
}

/// Gray release by request attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrayStrategy {
    /// Requests matching any rule go to the target version.
    pub rules: Vec<GrayRule>,
    /// Percent of the other requests also sent to the target.
    #[serde(default)]
    pub weight: u32,
    /// Keep a client on one version when `weight` splits the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
    /// How long to stay in the gray phase before promoting; absent means wait for `promote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_secs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
}

/// A request test: exactly one of `header`, `cookie`, `query`, `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrayRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<ValueMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<ValueMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<HashRange>,
}

impl GrayRule {
    /// The traffic rule that sends matching requests to `version`.
    pub fn to_version(&self, version: u32) -> MatchRule {
        MatchRule {
            header: self.header.clone(),
            cookie: self.cookie.clone(),
            query: self.query.clone(),
            hash: self.hash.clone(),
            version,
        }
    }
}

/// Replace instances in `batches` steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchStrategy {
    /// 1–100.
    pub batches: u32,
    /// Wait between batches; absent means wait for `promote` after each batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_secs: Option<u32>,
    /// Ready instances (both versions together) never drop below this; defaults to the
    /// app's replica count, so new instances start before old ones stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<u32>,
    /// The first batch is a beta batch that always waits for `promote`.
    #[serde(default)]
    pub beta: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
}

/// Blue-green: the target runs at full size, reachable only through the preview route,
/// until promotion switches all traffic; the old version stays up for `keep_old_secs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlueGreenStrategy {
    /// A host name that reaches the target before promotion (besides the
    /// `x-tideway-preview: 1` header, which always does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_host: Option<String>,
    /// Promote on its own this long after the target is ready; absent means wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promote_secs: Option<u32>,
    /// How long the old version keeps running after the switch (instant rollback).
    #[serde(default = "default_keep_old")]
    pub keep_old_secs: u32,
    /// Checks run after the switch; a failure switches back to the old version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
}

fn default_keep_old() -> u32 {
    600
}

/// Comparison of the target version with the stable one, from the gateway's metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Analysis {
    /// Seconds between checks; each check looks at the last interval. 1–3600.
    #[serde(default = "default_interval")]
    pub interval_secs: u32,
    /// Minimum percent of non-5xx responses.
    #[serde(default = "default_success_rate")]
    pub success_rate_percent: f64,
    /// Absolute p99 latency bound in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_max_ms: Option<f64>,
    /// p99 latency bound relative to the stable version's p99.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_max_factor: Option<f64>,
    /// Fewer requests than this in an interval is "too little traffic".
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    #[serde(default)]
    pub insufficient: InsufficientTraffic,
    /// Failed checks (not necessarily consecutive) that abort the release.
    #[serde(default = "default_failure_limit")]
    pub failure_limit: u32,
}

fn default_interval() -> u32 {
    60
}
fn default_success_rate() -> f64 {
    99.0
}
fn default_min_requests() -> u64 {
    20
}
fn default_failure_limit() -> u32 {
    2
}

/// What a check with too little traffic counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InsufficientTraffic {
    /// Neither pass nor fail; the release waits for traffic.
    #[default]
    Wait,
    /// Counts as a failed check.
    Fail,
}

/// Persisted state of a release's state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseState {
    Pending,
    Progressing,
    /// Waiting for `promote` or `resume` (an indefinite pause step, a manual pause, a batch
    /// confirmation).
    Paused,
    Succeeded,
    Failed,
    Aborted,
    /// A newer release of the same app took over.
    Superseded,
}

impl ReleaseState {
    /// Whether the release can still change state.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            ReleaseState::Pending | ReleaseState::Progressing | ReleaseState::Paused
        )
    }
}

/// Where a release is: persisted with every step, with absolute times, so a restarted
/// control plane resumes exactly here.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct ReleaseProgress {
    /// Index of the current step in the plan.
    #[serde(default)]
    pub step: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<DateTime<Utc>>,
    /// End of a timed pause or batch interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_until: Option<DateTime<Utc>>,
    /// Remaining pause of a timed pause interrupted by a manual `pause`, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_remaining_ms: Option<i64>,
    /// Paused by the user (not by a step).
    #[serde(default)]
    pub paused_by_user: bool,
    /// The version serving before the release (the one traffic returns to on abort).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_version: Option<u32>,
    /// Percent of unmatched traffic currently sent to the target.
    #[serde(default)]
    pub weight: u32,
    /// Target instances asked for by the current step.
    #[serde(default)]
    pub target_replicas: u32,
    /// Stable instances asked for by the current step.
    #[serde(default)]
    pub stable_replicas: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_check_at: Option<DateTime<Utc>>,
    /// Consecutive passing checks (for analysis steps).
    #[serde(default)]
    pub passed_in_row: u32,
    #[serde(default)]
    pub failed_checks: u32,
    /// Latest checks, oldest first (at most 100 kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<AnalysisCheck>,
    /// Blue-green: when traffic switched; the old version is kept until `keep_old_until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_old_until: Option<DateTime<Utc>>,
}

/// One analysis check and its figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AnalysisCheck {
    pub at: DateTime<Utc>,
    pub outcome: CheckOutcome,
    pub target: CheckFigures,
    pub stable: CheckFigures,
    /// Each failed condition, e.g. `success rate 70.0% < 99.0%`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    Passed,
    Failed,
    /// Too little traffic, and the analysis says to wait.
    Inconclusive,
}

/// A version's figures over one analysis interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckFigures {
    pub requests: u64,
    pub responses_5xx: u64,
    /// Percent non-5xx; absent without requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
}

/// `POST .../releases/{id}/promote` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// Skip every remaining step and finish now.
    #[serde(default)]
    pub full: bool,
}

/// `POST .../apps/{app}/rollback` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// Defaults to the version that served before the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// The plan of a release (`?dry_run=true`), nothing changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReleasePlan {
    pub target_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_version: Option<u32>,
    pub strategy: Strategy,
    pub steps: Vec<PlannedStep>,
}

/// One step of a plan: what it does and the state it leaves behind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PlannedStep {
    pub index: u32,
    /// E.g. `set weight 20%`, `pause 60s`, `pause until promoted`, `analysis (2 checks)`,
    /// `batch 2/3`, `switch all traffic`.
    pub action: String,
    /// Percent of unmatched traffic to the target.
    pub weight: u32,
    /// Rules sending matching requests to the target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<MatchRule>,
    /// Whether the preview route reaches the target.
    #[serde(default)]
    pub preview: bool,
    pub target_replicas: u32,
    pub stable_replicas: u32,
    /// What ends the step: `ready`, `timer 60s`, `promote`, `analysis`.
    pub waits_for: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_read_as_users_write_them() {
        let s: Strategy = serde_json::from_str(
            r#"{"type":"canary","steps":[{"set_weight":20},{"pause":{"duration_secs":30}},{"pause":{}},{"analysis":{"checks":2}}],"analysis":{"interval_secs":5}}"#,
        )
        .unwrap();
        let Strategy::Canary(c) = &s else {
            panic!("{s:?}")
        };
        assert_eq!(c.steps.len(), 4);
        assert_eq!(c.analysis.as_ref().unwrap().success_rate_percent, 99.0);
        let again: Strategy = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(again, s);
        let typo = serde_json::from_str::<Strategy>(r#"{"type":"canary","wieghts":[1]}"#);
        assert!(typo.is_err(), "unknown fields are rejected");
        let bg: Strategy = serde_json::from_str(r#"{"type":"blue_green"}"#).unwrap();
        assert!(matches!(bg, Strategy::BlueGreen(b) if b.keep_old_secs == 600));
    }
}
