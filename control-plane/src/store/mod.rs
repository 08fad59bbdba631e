//! Persistence of desired state, observed state and the event log, behind one narrow
//! interface ([`Store`]) with one implementation ([`sql::SqlStore`]) that serves SQLite and
//! PostgreSQL from the same SQL. Every mutation appends its event in the same transaction,
//! so the log can never miss a change that happened or record one that did not.

pub mod sql;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tideway_api_types::{
    App, AppCreate, AutoscalingPolicy, AutoscalingPolicyState, Event, Labels, MetricPoint,
    Namespace, Release, Role, Strategy, TokenInfo, TrafficPolicy, TrafficPolicyState, Version,
    VersionCreate, VersionState,
};

use crate::domain::event::NewEvent;
use crate::domain::name::Name;
use crate::domain::release::Transition;
use crate::domain::token::Principal;
use crate::domain::Invalid;

/// Failures of the store, as kinds the API maps to statuses.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} '{name}' not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} '{name}' already exists")]
    AlreadyExists { kind: &'static str, name: String },
    /// The caller's `If-Match` generation is not the current one.
    #[error("generation {expected} does not match the current generation {current}")]
    PreconditionFailed { expected: i64, current: i64 },
    /// The change is valid in itself but not in the current state.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("the database schema is version {found}, newer than this Tideway understands ({supported}); run a newer Tideway")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Keyset pagination: at most `limit` items after the opaque `cursor`.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<String>,
}

/// A page of results and the cursor of the next one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// An app with its internal id.
#[derive(Debug, Clone)]
pub struct AppRecord {
    pub id: i64,
    pub app: App,
}

/// A version with its app's internal id.
#[derive(Debug, Clone)]
pub struct VersionRecord {
    pub app_id: i64,
    pub version: Version,
}

/// An app as routing and the runtime see it.
#[derive(Debug, Clone)]
pub struct AppRouting {
    pub record: AppRecord,
    pub traffic: Option<TrafficPolicy>,
    pub autoscaling: Option<AutoscalingPolicy>,
    /// The app's active release, if any.
    pub release: Option<Release>,
    /// The serving version, the versions the traffic policy names and the active release's
    /// target and stable versions, by number.
    pub versions: Vec<Version>,
}

/// One minute of one app version's request metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct MinuteMetrics {
    pub app_id: i64,
    pub version: u32,
    /// `time` is the start of the minute.
    pub point: MetricPoint,
}

/// A release with its internal app id, as the reconciler needs it.
#[derive(Debug, Clone)]
pub struct ReleaseRecord {
    pub app_id: i64,
    pub release: Release,
}

/// Which registry objects a row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryObjectKind {
    Connection,
    Sync,
}

impl RegistryObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryObjectKind::Connection => "connection",
            RegistryObjectKind::Sync => "sync",
        }
    }
}

/// A stored registry connection or sync job, as created (secrets included).
#[derive(Debug, Clone)]
pub struct RegistryObject {
    pub namespace: String,
    pub name: String,
    pub spec: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// What to filter the event log by.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub namespace: Option<String>,
    pub app: Option<String>,
    pub kind: Option<String>,
    pub after: Option<i64>,
    pub limit: u32,
    /// Restrict to these namespaces (a namespace-scoped token); `None` sees all.
    pub visible_namespaces: Option<Vec<String>>,
    /// The latest `limit` events, newest first (no cursor).
    pub newest_first: bool,
}

/// A mutation of an app: changes it in place and returns the event that records the change.
pub type AppChange<'a> = &'a (dyn Fn(&mut App) -> Result<NewEvent, Invalid> + Send + Sync);

/// The control plane's storage contract. Implementations must make each call atomic, and
/// updates must never lose a concurrent write: they either apply on top of it or fail with
/// [`StoreError::PreconditionFailed`] when the caller pinned a generation.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks the database answers.
    async fn ping(&self) -> StoreResult<()>;

    /// Creates the namespace unless it exists; true when it was created.
    async fn ensure_namespace(&self, name: &Name, event: NewEvent) -> StoreResult<bool>;
    async fn create_namespace(
        &self,
        name: &Name,
        labels: &Labels,
        event: NewEvent,
    ) -> StoreResult<Namespace>;
    async fn get_namespace(&self, name: &Name) -> StoreResult<Namespace>;
    async fn list_namespaces(
        &self,
        page: &PageRequest,
        visible: Option<&[String]>,
    ) -> StoreResult<Page<Namespace>>;
    async fn update_namespace(
        &self,
        name: &Name,
        expected: Option<i64>,
        labels: &Labels,
        event: NewEvent,
    ) -> StoreResult<Namespace>;
    /// Refuses while the namespace still has apps.
    async fn delete_namespace(
        &self,
        name: &Name,
        expected: Option<i64>,
        event: NewEvent,
    ) -> StoreResult<()>;

    async fn create_app(&self, ns: &Name, app: &AppCreate, event: NewEvent) -> StoreResult<App>;
    async fn get_app(&self, ns: &Name, name: &Name) -> StoreResult<AppRecord>;
    async fn list_apps(&self, ns: &Name, page: &PageRequest) -> StoreResult<Page<App>>;
    /// Applies `change` to the current app atomically; retries on a concurrent write unless
    /// `expected` pins the generation.
    async fn update_app(
        &self,
        ns: &Name,
        name: &Name,
        expected: Option<i64>,
        change: AppChange<'_>,
    ) -> StoreResult<App>;
    async fn delete_app(
        &self,
        ns: &Name,
        name: &Name,
        expected: Option<i64>,
        event: NewEvent,
    ) -> StoreResult<()>;

    /// Creates the next version number of the app.
    async fn create_version(
        &self,
        ns: &Name,
        app: &Name,
        version: &VersionCreate,
        state: VersionState,
        event: NewEvent,
    ) -> StoreResult<Version>;
    async fn get_version(&self, ns: &Name, app: &Name, number: u32) -> StoreResult<Version>;
    async fn list_versions(
        &self,
        ns: &Name,
        app: &Name,
        page: &PageRequest,
    ) -> StoreResult<Page<Version>>;

    /// Starts a release; refuses while another release of the app is active.
    async fn create_release(
        &self,
        ns: &Name,
        app: &Name,
        target_version: u32,
        strategy: &Strategy,
        event: NewEvent,
    ) -> StoreResult<Release>;
    /// Starts a release that takes over from the app's active release, if any: that one
    /// becomes `superseded` (with `superseded` as its event) in the same transaction.
    async fn replace_release(
        &self,
        ns: &Name,
        app: &Name,
        target_version: u32,
        strategy: &Strategy,
        event: NewEvent,
        superseded: NewEvent,
    ) -> StoreResult<Release>;
    async fn get_release(&self, ns: &Name, app: &Name, id: i64) -> StoreResult<Release>;
    async fn list_releases(
        &self,
        ns: &Name,
        app: &Name,
        page: &PageRequest,
    ) -> StoreResult<Page<Release>>;
    /// Every pending or progressing release, for the release reconciler.
    async fn active_releases(&self) -> StoreResult<Vec<ReleaseRecord>>;
    /// Applies a decided transition if the release is still at `expected` generation.
    async fn transition_release(
        &self,
        id: i64,
        expected: i64,
        transition: &Transition,
        event: NewEvent,
    ) -> StoreResult<Release>;

    /// Every version in `state`, oldest first (the build reconciler's queue).
    async fn versions_in_state(&self, state: VersionState) -> StoreResult<Vec<VersionRecord>>;
    /// Moves a version from `from` to `to`; false when it was no longer in `from`.
    async fn set_version_state(
        &self,
        app_id: i64,
        number: u32,
        from: VersionState,
        to: VersionState,
        event: NewEvent,
    ) -> StoreResult<bool>;
    /// Artifact digests that some version still refers to.
    async fn referenced_digests(&self) -> StoreResult<Vec<String>>;

    async fn get_policy(
        &self,
        ns: &Name,
        app: &Name,
    ) -> StoreResult<Option<AutoscalingPolicyState>>;
    async fn put_policy(
        &self,
        ns: &Name,
        app: &Name,
        policy: &AutoscalingPolicy,
        expected: Option<i64>,
        event: NewEvent,
    ) -> StoreResult<AutoscalingPolicyState>;

    async fn get_traffic(&self, ns: &Name, app: &Name) -> StoreResult<Option<TrafficPolicyState>>;
    async fn put_traffic(
        &self,
        ns: &Name,
        app: &Name,
        policy: &TrafficPolicy,
        expected: Option<i64>,
        event: NewEvent,
    ) -> StoreResult<TrafficPolicyState>;

    /// Every app with what routing and the runtime need: its traffic policy, whether it may
    /// scale to zero, and the versions it serves or its traffic policy names.
    async fn routing_state(&self) -> StoreResult<Vec<AppRouting>>;

    /// Upserts per-minute request metrics.
    async fn record_metrics(&self, rows: &[MinuteMetrics]) -> StoreResult<()>;
    /// An app's per-minute metrics in `[from, to)`, by version then time.
    async fn metrics_rollups(
        &self,
        app_id: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<MinuteMetrics>>;
    /// Deletes per-minute metrics older than `before`; returns how many.
    async fn prune_metrics(&self, before: DateTime<Utc>) -> StoreResult<u64>;

    async fn create_token(
        &self,
        name: &Name,
        role: Role,
        namespaces: Option<&[String]>,
        secret_hash: &str,
        event: NewEvent,
    ) -> StoreResult<TokenInfo>;
    async fn list_tokens(&self, page: &PageRequest) -> StoreResult<Page<TokenInfo>>;
    async fn revoke_token(&self, id: i64, event: NewEvent) -> StoreResult<TokenInfo>;
    /// The live (unrevoked) token with this secret hash.
    async fn principal_by_hash(&self, secret_hash: &str) -> StoreResult<Option<Principal>>;
    async fn count_tokens(&self) -> StoreResult<i64>;

    /// Creates a registry connection or sync job; `AlreadyExists` when the name is taken.
    async fn create_registry_object(
        &self,
        ns: &Name,
        kind: RegistryObjectKind,
        name: &Name,
        spec: &serde_json::Value,
        event: NewEvent,
    ) -> StoreResult<RegistryObject>;
    /// Every object of `kind`, in `ns` or in all namespaces.
    async fn list_registry_objects(
        &self,
        ns: Option<&Name>,
        kind: RegistryObjectKind,
    ) -> StoreResult<Vec<RegistryObject>>;
    async fn delete_registry_object(
        &self,
        ns: &Name,
        kind: RegistryObjectKind,
        name: &Name,
        event: NewEvent,
    ) -> StoreResult<()>;

    async fn append_event(&self, event: NewEvent) -> StoreResult<i64>;
    async fn list_events(&self, filter: &EventFilter) -> StoreResult<Page<Event>>;
}
