//! The wire contract of Tideway's public API: the JSON bodies of `/api/v1`, shared by the
//! server, the CLI, the web console and (later) the gRPC and IDE clients.
//!
//! This crate owns shapes and the DNS-label vocabulary, nothing else: it never does I/O,
//! never talks to a database and never holds domain rules beyond "what a valid name is".
//! Every request body rejects unknown fields so typos fail loudly instead of being ignored.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub mod name;
mod registry;
mod release;
mod scaling;

pub use registry::*;
pub use release::*;
pub use scaling::*;

/// Labels attached to namespaces and apps.
pub type Labels = BTreeMap<String, String>;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

/// A stable, machine-readable error.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorInfo {
    /// Stable snake_case code, e.g. `not_found`, `invalid_name`, `precondition_failed`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Structured context (field names, limits, current values).
    #[serde(default)]
    pub details: serde_json::Value,
}

/// One page of a list endpoint. Pass `next_cursor` back as `?cursor=` to get the next page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// An environment that groups apps (TEM's 环境); `default` always exists.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Namespace {
    pub name: String,
    pub labels: Labels,
    pub created_at: DateTime<Utc>,
    pub generation: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NamespaceCreate {
    /// A DNS label: 1–63 of `a-z`, `0-9`, `-`, starting and ending alphanumeric.
    pub name: String,
    #[serde(default)]
    pub labels: Labels,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NamespacePatch {
    #[serde(default)]
    pub labels: Option<Labels>,
}

/// An application: a named service with versions, instances and policies.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct App {
    pub namespace: String,
    pub name: String,
    pub description: String,
    pub labels: Labels,
    /// Desired instance count of the current version (when no autoscaler overrides it).
    pub replicas: u32,
    /// Custom domains that reach the app through the gateway, besides
    /// `{app}.{namespace}.localhost`.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Path prefixes that reach the app on any host without a host route.
    #[serde(default)]
    pub path_prefixes: Vec<String>,
    /// Service registries the app's instances appear in; empty means the built-in
    /// registry, registered by the platform under the app's name.
    #[serde(default)]
    pub registries: Vec<RegistryBinding>,
    /// The version serving traffic, once a release has succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Increases on every change; also served as the `ETag`.
    pub generation: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppCreate {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub labels: Labels,
    /// Defaults to 1.
    #[serde(default)]
    pub replicas: Option<u32>,
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub path_prefixes: Vec<String>,
    #[serde(default)]
    pub registries: Vec<RegistryBinding>,
}

/// Merge-style update: absent fields are left as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppPatch {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub labels: Option<Labels>,
    #[serde(default)]
    pub domains: Option<Vec<String>>,
    #[serde(default)]
    pub path_prefixes: Option<Vec<String>>,
    #[serde(default)]
    pub registries: Option<Vec<RegistryBinding>>,
}

/// How an instance is started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// Shell command run in the unpacked artifact, with `$PORT` set.
    pub command: String,
}

/// How readiness and liveness are checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// HTTP path probed with GET; 2xx/3xx is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// Probe by opening a TCP connection instead of HTTP.
    #[serde(default)]
    pub tcp: bool,
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u32,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
}

fn default_interval_ms() -> u32 {
    1000
}
fn default_timeout_ms() -> u32 {
    1000
}
fn default_healthy_threshold() -> u32 {
    1
}
fn default_unhealthy_threshold() -> u32 {
    3
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            http: None,
            tcp: true,
            interval_ms: default_interval_ms(),
            timeout_ms: default_timeout_ms(),
            healthy_threshold: default_healthy_threshold(),
            unhealthy_threshold: default_unhealthy_threshold(),
        }
    }
}

/// Resource limits per instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u32>,
}

/// Lifecycle of a version's artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    Building,
    Ready,
    BuildFailed,
}

/// An immutable version of an app.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Version {
    pub namespace: String,
    pub app: String,
    /// 1, 2, 3… per app.
    pub number: u32,
    /// `sha256:<64 hex>`.
    pub artifact_digest: String,
    pub run: RunSpec,
    pub env: BTreeMap<String, String>,
    /// Fixed port, when the app cannot take `$PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub health: HealthCheck,
    pub resources: Resources,
    /// Runs once before any instance starts, from the manifest's `[build]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_command: Option<String>,
    pub state: VersionState,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionCreate {
    /// `sha256:<64 lowercase hex>` of the artifact.
    pub artifact_digest: String,
    pub run: RunSpec,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub health: HealthCheck,
    #[serde(default)]
    pub resources: Resources,
    /// Runs once in the unpacked artifact before any instance starts.
    #[serde(default)]
    pub build_command: Option<String>,
}

/// A move from the current version(s) to a target version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Release {
    pub id: i64,
    pub namespace: String,
    pub app: String,
    pub from_versions: Vec<u32>,
    pub target_version: u32,
    pub strategy: Strategy,
    pub state: ReleaseState,
    /// Why the release is in its state.
    pub reason: String,
    /// Where the release is in its plan (absent for releases that have not started).
    #[serde(default)]
    pub progress: ReleaseProgress,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub generation: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseCreate {
    pub target_version: u32,
    /// Defaults to `{"type": "immediate"}`.
    #[serde(default)]
    pub strategy: Option<Strategy>,
    /// Take over from the app's active release (marked `superseded`) instead of failing
    /// with 409 `release_in_progress`.
    #[serde(default)]
    pub supersede: bool,
}

/// Observed lifecycle of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    Starting,
    Ready,
    Unhealthy,
    Draining,
    Stopped,
    CrashLoop,
}

/// A running (or recently stopped) copy of a version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Instance {
    pub id: String,
    pub namespace: String,
    pub app: String,
    pub version: u32,
    pub state: InstanceState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub restarts: u32,
    /// Why the instance is in its state: last exit status, failing health check, OOM kill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// CPU use over the last second, in percent of one core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    /// Resident memory (cgroup usage where limits are enforced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Whether the version's memory and CPU limits are enforced (cgroups); when false,
    /// `limits_note` says why.
    pub limits_enforced: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits_note: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One captured line of an instance's output.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    pub time: DateTime<Utc>,
    pub instance: String,
    pub version: u32,
    pub stream: LogStream,
    pub line: String,
}

/// Desired instance count.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    pub replicas: u32,
}

/// A metric the autoscaler follows, with its per-instance target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricTarget {
    #[serde(rename = "type")]
    pub kind: MetricKind,
    /// Per-instance target: in-flight requests, requests/s, or utilization percent.
    pub target: f64,
    /// Metric name, for `custom` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Concurrency,
    Rps,
    Cpu,
    Memory,
    Custom,
}

/// A time window (cron start + duration) with its own instance bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRule {
    /// Five-field cron expression for the window start.
    pub cron: String,
    /// IANA time zone, e.g. `Asia/Shanghai`.
    pub timezone: String,
    pub duration_secs: u32,
    pub min: u32,
    pub max: u32,
    #[serde(default)]
    pub priority: i32,
}

/// The scaling policy of an app (stored; applied by the autoscaler).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoscalingPolicy {
    pub min: u32,
    pub max: u32,
    #[serde(default)]
    pub metrics: Vec<MetricTarget>,
    #[serde(default = "default_stable_window")]
    pub stable_window_secs: u32,
    #[serde(default = "default_panic_window_percent")]
    pub panic_window_percent: f64,
    #[serde(default = "default_panic_threshold_percent")]
    pub panic_threshold_percent: f64,
    #[serde(default = "default_max_scale_up_rate")]
    pub max_scale_up_rate: f64,
    #[serde(default = "default_max_scale_down_rate")]
    pub max_scale_down_rate: f64,
    #[serde(default)]
    pub scale_down_delay_secs: u32,
    #[serde(default)]
    pub scale_to_zero: bool,
    /// Extra idle time after a full stable window without traffic before scaling to zero.
    #[serde(default = "default_scale_to_zero_grace")]
    pub scale_to_zero_grace_secs: u32,
    /// Instances started when a request arrives at zero.
    #[serde(default = "default_activation_scale")]
    pub activation_scale: u32,
    /// Resource metrics: relative change below this percent is ignored (HPA's tolerance).
    #[serde(default = "default_tolerance_percent")]
    pub tolerance_percent: f64,
    /// Resource metrics: scale down only to the highest recommendation of this window.
    #[serde(default = "default_resource_stabilization")]
    pub resource_stabilization_secs: u32,
    #[serde(default)]
    pub schedules: Vec<ScheduleRule>,
}

fn default_stable_window() -> u32 {
    60
}
fn default_panic_window_percent() -> f64 {
    10.0
}
fn default_panic_threshold_percent() -> f64 {
    200.0
}
fn default_max_scale_up_rate() -> f64 {
    1000.0
}
fn default_max_scale_down_rate() -> f64 {
    2.0
}
fn default_scale_to_zero_grace() -> u32 {
    30
}
fn default_activation_scale() -> u32 {
    1
}
fn default_tolerance_percent() -> f64 {
    10.0
}
fn default_resource_stabilization() -> u32 {
    300
}

/// A stored policy with its concurrency token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AutoscalingPolicyState {
    pub policy: AutoscalingPolicy,
    pub generation: i64,
    pub updated_at: DateTime<Utc>,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read everything it can see.
    Viewer,
    /// Read, plus change apps, versions, releases and scaling.
    Deployer,
    /// Everything, including namespaces and tokens.
    Admin,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    pub name: String,
    pub role: Role,
    /// Restrict the token to these namespaces; absent means all.
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// `GET /api/v1/whoami`: the calling token, so clients show only what its role allows.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub name: String,
    pub role: Role,
    /// The namespaces the token is limited to; absent means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
}

/// Returned once, at creation: `token` is the secret and is never shown again.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// One entry of the append-only event log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Monotonic id; also the pagination cursor (`?after=`).
    pub id: i64,
    pub time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// `<Area><Noun><Verb>`, e.g. `AppCreated`, `ReleaseSucceeded`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Token name for API calls, component name for decisions.
    pub actor: String,
    pub reason: String,
    pub details: serde_json::Value,
}

/// Health and readiness answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthStatus {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// How an app's traffic is split between its versions (`GET/PUT .../traffic`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficPolicy {
    /// Percent of unmatched traffic per version; sums to 100. Empty: all traffic to the
    /// app's current version.
    #[serde(default)]
    pub weights: Vec<VersionWeight>,
    /// Checked in order before the weights; the first match decides the version.
    #[serde(default)]
    pub rules: Vec<MatchRule>,
    /// Keep a client on one version by hashing a header or cookie instead of rolling dice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionWeight {
    pub version: u32,
    /// 0–100.
    pub weight: u32,
}

/// Sends matching requests to `version`. Exactly one of `header`, `cookie`, `query`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<ValueMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<ValueMatch>,
    /// Matches when a hash of a header or cookie falls in a percent range (e.g. user ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<HashRange>,
    pub version: u32,
}

/// A stable bucket of clients: the FNV-1a hash of the named header or cookie, taken modulo
/// 100, is in `from..to`. Requests without it never match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HashRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// 0–99, inclusive.
    pub from: u32,
    /// 1–100, exclusive.
    pub to: u32,
}

/// A header test: exactly one of `exact`, `prefix`, `regex`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Case-insensitive header name.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// A cookie or query parameter equal to `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValueMatch {
    pub name: String,
    pub value: String,
}

/// What identifies a client for sticky assignment: exactly one of `header`, `cookie`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Sticky {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
}

/// A stored traffic policy with its concurrency token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrafficPolicyState {
    pub policy: TrafficPolicy,
    pub generation: i64,
    pub updated_at: DateTime<Utc>,
}

/// One second (or one `step`) of an app version's request metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricPoint {
    /// Start of the interval.
    pub time: DateTime<Utc>,
    pub requests: u64,
    pub responses_2xx: u64,
    pub responses_3xx: u64,
    pub responses_4xx: u64,
    pub responses_5xx: u64,
    /// Time-averaged number of requests in flight.
    pub concurrency: f64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Request metrics of one version of an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricSeries {
    pub version: u32,
    pub points: Vec<MetricPoint>,
}

/// `GET .../metrics` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AppMetrics {
    pub step_secs: u32,
    pub series: Vec<MetricSeries>,
}
