//! The SQL store: one implementation for SQLite and PostgreSQL through sqlx's `Any` driver.
//! Queries use only what both dialects share (`$N` placeholders, `RETURNING`, partial
//! indexes); times are unix milliseconds and JSON is TEXT.
//!
//! SQLite allows one writer at a time, so it gets a dedicated single-connection write pool
//! (writers queue in the pool instead of spinning on `SQLITE_BUSY`) and a separate read
//! pool that WAL lets run beside it. PostgreSQL uses one pool for both.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use tideway_api_types::{
    App, AppCreate, AutoscalingPolicy, AutoscalingPolicyState, Event, HealthCheck, Labels,
    MetricPoint, Namespace, Release, Resources, Role, RunSpec, Strategy, TokenInfo, TrafficPolicy,
    TrafficPolicyState, Version, VersionCreate, VersionState,
};

use super::{
    AppChange, AppRecord, AppRouting, EventFilter, MinuteMetrics, Page, PageRequest,
    RegistryObject, RegistryObjectKind, ReleaseRecord, Store, StoreError, StoreResult,
    VersionRecord,
};
use crate::clock::Clock;
use crate::domain::event::NewEvent;
use crate::domain::name::Name;
use crate::domain::release::{parse_state, state_str, Transition};
use crate::domain::token::{parse_role, role_str, Principal};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

/// How many times an unpinned update retries after losing a race.
const UPDATE_ATTEMPTS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct SqlStore {
    reader: AnyPool,
    writer: AnyPool,
    backend: Backend,
    clock: Arc<dyn Clock>,
}

fn db_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
        other => StoreError::Database(other),
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(ms: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}

fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn get<'r, T>(row: &'r AnyRow, col: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(col).map_err(db_err)
}

fn u32_col(row: &AnyRow, col: &str) -> StoreResult<u32> {
    let v: i64 = get(row, col)?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{col} = {v} out of range")))
}

/// Fetches `limit + 1` rows and turns the extra one into a cursor.
fn paginate<T>(mut items: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> String) -> Page<T> {
    let limit = limit as usize;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(cursor_of)
    } else {
        None
    };
    Page { items, next_cursor }
}

fn namespace_from_row(row: &AnyRow) -> StoreResult<Namespace> {
    Ok(Namespace {
        name: get(row, "name")?,
        labels: from_json(&get::<String>(row, "labels")?, "namespace labels")?,
        created_at: from_ms(get(row, "created_at")?)?,
        generation: get(row, "generation")?,
    })
}

const APP_COLUMNS: &str = "id, namespace, name, description, labels, replicas, current_version, created_at, updated_at, generation, routing";

/// An app's gateway routing, kept as one JSON document.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Routing {
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    path_prefixes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    registries: Vec<tideway_api_types::RegistryBinding>,
}

fn app_from_row(row: &AnyRow) -> StoreResult<AppRecord> {
    let current: Option<i64> = get(row, "current_version")?;
    let routing: Routing = from_json(&get::<String>(row, "routing")?, "app routing")?;
    Ok(AppRecord {
        id: get(row, "id")?,
        app: App {
            namespace: get(row, "namespace")?,
            name: get(row, "name")?,
            description: get(row, "description")?,
            labels: from_json(&get::<String>(row, "labels")?, "app labels")?,
            replicas: u32_col(row, "replicas")?,
            domains: routing.domains,
            path_prefixes: routing.path_prefixes,
            registries: routing.registries,
            current_version: current.and_then(|v| u32::try_from(v).ok()),
            created_at: from_ms(get(row, "created_at")?)?,
            updated_at: from_ms(get(row, "updated_at")?)?,
            generation: get(row, "generation")?,
        },
    })
}

/// The parts of a version kept as one JSON document.
#[derive(serde::Serialize, serde::Deserialize)]
struct VersionSpec {
    run: RunSpec,
    env: std::collections::BTreeMap<String, String>,
    port: Option<u16>,
    health: HealthCheck,
    resources: Resources,
    #[serde(default)]
    build_command: Option<String>,
}

fn version_state_str(s: VersionState) -> &'static str {
    match s {
        VersionState::Building => "building",
        VersionState::Ready => "ready",
        VersionState::BuildFailed => "build_failed",
    }
}

fn version_from_row(row: &AnyRow, ns: &str, app: &str) -> StoreResult<Version> {
    version_from_row_at(row, ns, app, "created_at")
}

fn version_from_row_at(
    row: &AnyRow,
    ns: &str,
    app: &str,
    created_at: &str,
) -> StoreResult<Version> {
    let spec: VersionSpec = from_json(&get::<String>(row, "spec")?, "version spec")?;
    let state = match get::<String>(row, "state")?.as_str() {
        "building" => VersionState::Building,
        "ready" => VersionState::Ready,
        "build_failed" => VersionState::BuildFailed,
        other => return Err(StoreError::Corrupt(format!("version state {other}"))),
    };
    Ok(Version {
        namespace: ns.to_owned(),
        app: app.to_owned(),
        number: u32_col(row, "number")?,
        artifact_digest: get(row, "artifact_digest")?,
        run: spec.run,
        env: spec.env,
        port: spec.port,
        health: spec.health,
        resources: spec.resources,
        build_command: spec.build_command,
        state,
        created_at: from_ms(get(row, created_at)?)?,
    })
}

/// The states of an active release, as stored (see `ReleaseState::is_active`).
const ACTIVE_STATES: &str = "('pending', 'progressing', 'paused')";

const RELEASE_SELECT: &str = "SELECT r.id, r.app_id, r.from_versions, r.target_version, r.strategy, r.state, r.reason, r.progress, r.created_at, r.updated_at, r.generation, a.namespace, a.name AS app_name FROM releases r JOIN apps a ON a.id = r.app_id";

fn release_from_row(row: &AnyRow) -> StoreResult<ReleaseRecord> {
    let state: String = get(row, "state")?;
    Ok(ReleaseRecord {
        app_id: get(row, "app_id")?,
        release: Release {
            id: get(row, "id")?,
            namespace: get(row, "namespace")?,
            app: get(row, "app_name")?,
            from_versions: from_json(&get::<String>(row, "from_versions")?, "from_versions")?,
            target_version: u32_col(row, "target_version")?,
            strategy: from_json(&get::<String>(row, "strategy")?, "strategy")?,
            state: parse_state(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("release state {state}")))?,
            reason: get(row, "reason")?,
            progress: from_json(&get::<String>(row, "progress")?, "progress")?,
            created_at: from_ms(get(row, "created_at")?)?,
            updated_at: from_ms(get(row, "updated_at")?)?,
            generation: get(row, "generation")?,
        },
    })
}

fn token_from_row(row: &AnyRow) -> StoreResult<TokenInfo> {
    let role: String = get(row, "role")?;
    let namespaces: Option<String> = get(row, "namespaces")?;
    let revoked: Option<i64> = get(row, "revoked_at")?;
    Ok(TokenInfo {
        id: get(row, "id")?,
        name: get(row, "name")?,
        role: parse_role(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?,
        namespaces: namespaces
            .map(|n| from_json(&n, "token namespaces"))
            .transpose()?,
        created_at: from_ms(get(row, "created_at")?)?,
        revoked_at: revoked.map(from_ms).transpose()?,
    })
}

fn event_from_row(row: &AnyRow) -> StoreResult<Event> {
    Ok(Event {
        id: get(row, "id")?,
        time: from_ms(get(row, "time")?)?,
        namespace: get(row, "namespace")?,
        app: get(row, "app")?,
        kind: get(row, "kind")?,
        actor: get(row, "actor")?,
        reason: get(row, "reason")?,
        details: from_json(&get::<String>(row, "details")?, "event details")?,
    })
}

impl SqlStore {
    /// Inserts a pending release; with `superseded`, first marks the app's active release
    /// superseded (recording that event), in the same transaction.
    async fn insert_release(
        &self,
        ns: &Name,
        app: &Name,
        target_version: u32,
        strategy: &Strategy,
        event: NewEvent,
        superseded: Option<NewEvent>,
    ) -> StoreResult<Release> {
        let mut tx = self.begin().await?;
        let rec = Self::app_in(&mut *tx, ns, app, self.for_update()).await?;
        if let Some(superseded) = superseded {
            let now = self.now();
            let sql = format!(
                "UPDATE releases SET state = 'superseded', reason = $1, updated_at = $2, \
                 generation = generation + 1 WHERE app_id = $3 AND state IN {ACTIVE_STATES}"
            );
            let replaced = sqlx::query(&sql)
                .bind(&superseded.reason)
                .bind(now)
                .bind(rec.id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
            if replaced > 0 {
                self.insert_event(&mut tx, &superseded).await?;
            }
        }
        let exists = sqlx::query("SELECT number FROM versions WHERE app_id = $1 AND number = $2")
            .bind(rec.id)
            .bind(i64::from(target_version))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .is_some();
        if !exists {
            return Err(StoreError::NotFound {
                kind: "version",
                name: format!("{ns}/{app}/v{target_version}"),
            });
        }
        let from: Vec<u32> = rec.app.current_version.into_iter().collect();
        let now = self.now();
        let result = sqlx::query(
            "INSERT INTO releases (app_id, from_versions, target_version, strategy, state, reason, \
             created_at, updated_at, generation) VALUES ($1, $2, $3, $4, 'pending', $5, $6, $6, 1) \
             RETURNING id",
        )
        .bind(rec.id)
        .bind(to_json(&from)?)
        .bind(i64::from(target_version))
        .bind(to_json(strategy)?)
        .bind("waiting for the release reconciler")
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let id: i64 = match result {
            Ok(row) => get(&row, "id")?,
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict {
                    code: "release_in_progress",
                    message: format!(
                        "app '{ns}/{app}' already has an active release; wait for it or abort it"
                    ),
                })
            }
            Err(e) => return Err(db_err(e)),
        };
        let mut event = event;
        if let serde_json::Value::Object(map) = &mut event.details {
            map.insert("release".into(), id.into());
            map.insert("from_versions".into(), serde_json::json!(from));
        }
        self.insert_event(&mut tx, &event).await?;
        let release = Self::release_by_id(&mut *tx, id, "").await?.release;
        tx.commit().await.map_err(db_err)?;
        Ok(release)
    }

    /// Connects to `url` (`sqlite://…` or `postgres://…`), applies pending migrations and
    /// refuses a database written by a newer Tideway.
    pub async fn connect(url: &str, clock: Arc<dyn Clock>) -> StoreResult<SqlStore> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Corrupt(format!(
                "unsupported database URL scheme in '{}': use sqlite:// or postgres://",
                url.split(':').next().unwrap_or("")
            )));
        };
        let options = AnyConnectOptions::from_str(url).map_err(db_err)?;
        let (reader, writer) = match backend {
            Backend::Sqlite => {
                let pool = |max| {
                    AnyPoolOptions::new()
                        .max_connections(max)
                        .acquire_timeout(Duration::from_secs(10))
                        .after_connect(|conn, _meta| {
                            Box::pin(async move {
                                conn.execute(
                                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
                                )
                                .await?;
                                Ok(())
                            })
                        })
                };
                let writer = pool(1)
                    .connect_with(options.clone())
                    .await
                    .map_err(db_err)?;
                let reader = pool(4).connect_with(options).await.map_err(db_err)?;
                (reader, writer)
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await
                    .map_err(db_err)?;
                (pool.clone(), pool)
            }
        };
        let store = SqlStore {
            reader,
            writer,
            backend,
            clock,
        };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn migrate(&self) -> StoreResult<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let supported = migrator.iter().map(|m| m.version).max().unwrap_or(0);
        // A missing table just means a fresh database.
        let applied: Option<i64> =
            sqlx::query("SELECT MAX(version) AS v FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.writer)
                .await
                .ok()
                .and_then(|row| row.try_get::<Option<i64>, _>("v").ok().flatten());
        if let Some(found) = applied {
            if found > supported {
                return Err(StoreError::SchemaTooNew { found, supported });
            }
        }
        migrator.run(&self.writer).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => db_err(e),
            other => StoreError::Corrupt(format!("migration failed: {other}")),
        })
    }

    fn now(&self) -> i64 {
        ms(self.clock.now())
    }

    async fn begin(&self) -> StoreResult<Transaction<'static, Any>> {
        self.writer.begin().await.map_err(db_err)
    }

    async fn insert_event(
        &self,
        tx: &mut Transaction<'static, Any>,
        event: &NewEvent,
    ) -> StoreResult<i64> {
        let row = sqlx::query(
            "INSERT INTO events (time, namespace, app, kind, actor, reason, details) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(self.now())
        .bind(event.namespace.clone())
        .bind(event.app.clone())
        .bind(event.kind)
        .bind(&event.actor)
        .bind(&event.reason)
        .bind(to_json(&event.details)?)
        .fetch_one(&mut **tx)
        .await
        .map_err(db_err)?;
        get(&row, "id")
    }

    /// Row-lock suffix for reads that precede a write in the same transaction. PostgreSQL
    /// queues concurrent writers on the row instead of letting them race and retry; SQLite
    /// needs none because its single write connection already serializes writers.
    fn for_update(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    async fn app_in<'e, E>(
        executor: E,
        ns: &Name,
        name: &Name,
        lock: &str,
    ) -> StoreResult<AppRecord>
    where
        E: Executor<'e, Database = Any>,
    {
        let sql =
            format!("SELECT {APP_COLUMNS} FROM apps WHERE namespace = $1 AND name = $2{lock}");
        let row = sqlx::query(&sql)
            .bind(ns.as_str())
            .bind(name.as_str())
            .fetch_optional(executor)
            .await
            .map_err(db_err)?;
        found(row, "app", || format!("{ns}/{name}"), app_from_row)
    }

    async fn namespace_in<'e, E>(executor: E, name: &Name, lock: &str) -> StoreResult<Namespace>
    where
        E: Executor<'e, Database = Any>,
    {
        let sql = format!(
            "SELECT name, labels, created_at, generation FROM namespaces WHERE name = $1{lock}"
        );
        let row = sqlx::query(&sql)
            .bind(name.as_str())
            .fetch_optional(executor)
            .await
            .map_err(db_err)?;
        found(row, "namespace", || name.to_string(), namespace_from_row)
    }

    async fn release_by_id<'e, E>(executor: E, id: i64, lock: &str) -> StoreResult<ReleaseRecord>
    where
        E: Executor<'e, Database = Any>,
    {
        // `OF r`: lock the release row only, not the joined app.
        let lock = if lock.is_empty() {
            ""
        } else {
            " FOR UPDATE OF r"
        };
        let sql = format!("{RELEASE_SELECT} WHERE r.id = $1{lock}");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(executor)
            .await
            .map_err(db_err)?;
        found(row, "release", || id.to_string(), release_from_row)
    }

    async fn get_app_doc<T: serde::de::DeserializeOwned>(
        &self,
        table: PolicyTable,
        ns: &Name,
        app: &Name,
    ) -> StoreResult<Option<(T, i64, DateTime<Utc>)>> {
        let rec = Self::app_in(&self.reader, ns, app, "").await?;
        let sql = format!(
            "SELECT policy, generation, updated_at FROM {} WHERE app_id = $1",
            table.name()
        );
        let row = sqlx::query(&sql)
            .bind(rec.id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        row.map(|row| {
            Ok((
                from_json(&get::<String>(&row, "policy")?, table.name())?,
                get(&row, "generation")?,
                from_ms(get(&row, "updated_at")?)?,
            ))
        })
        .transpose()
    }

    /// Stores a per-app policy document; `expected` 0 means "none is set yet".
    async fn put_app_doc<T: serde::Serialize>(
        &self,
        table: PolicyTable,
        ns: &Name,
        app: &Name,
        doc: &T,
        expected: Option<i64>,
        event: NewEvent,
    ) -> StoreResult<(i64, DateTime<Utc>)> {
        let mut tx = self.begin().await?;
        // The app row lock serializes writers of its policies on PostgreSQL.
        let rec = Self::app_in(&mut *tx, ns, app, self.for_update()).await?;
        let sql = format!("SELECT generation FROM {} WHERE app_id = $1", table.name());
        let current: i64 = sqlx::query(&sql)
            .bind(rec.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .map(|row| get(&row, "generation"))
            .transpose()?
            .unwrap_or(0);
        check_generation(expected, current)?;
        let generation = current + 1;
        let now = self.now();
        let sql = format!(
            "INSERT INTO {t} (app_id, policy, generation, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (app_id) DO UPDATE SET policy = $2, generation = $3, updated_at = $4 \
             WHERE {t}.generation = $5",
            t = table.name()
        );
        let updated = sqlx::query(&sql)
            .bind(rec.id)
            .bind(to_json(doc)?)
            .bind(generation)
            .bind(now)
            .bind(current)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict {
                        code: "write_contention",
                        message: format!("the {} changed concurrently; retry", table.what()),
                    }
                } else {
                    db_err(e)
                }
            })?
            .rows_affected();
        lost_race(updated, table.what(), &format!("{ns}/{app}"))?;
        self.insert_event(&mut tx, &event).await?;
        tx.commit().await.map_err(db_err)?;
        Ok((generation, from_ms(now)?))
    }

    async fn all_app_docs<T: serde::de::DeserializeOwned>(
        &self,
        table: PolicyTable,
    ) -> StoreResult<HashMap<i64, T>> {
        let sql = format!("SELECT app_id, policy FROM {}", table.name());
        let rows = sqlx::query(&sql)
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                Ok((
                    get(row, "app_id")?,
                    from_json(&get::<String>(row, "policy")?, table.name())?,
                ))
            })
            .collect()
    }

    async fn token_by_id<'e, E>(executor: E, id: i64, lock: &str) -> StoreResult<TokenInfo>
    where
        E: Executor<'e, Database = Any>,
    {
        let sql = format!(
            "SELECT id, name, role, namespaces, created_at, revoked_at FROM tokens WHERE id = $1{lock}"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(executor)
            .await
            .map_err(db_err)?;
        found(row, "token", || id.to_string(), token_from_row)
    }
}

/// The per-app policy documents, which share one table shape.
#[derive(Debug, Clone, Copy)]
enum PolicyTable {
    Autoscaling,
    Traffic,
}

impl PolicyTable {
    fn name(self) -> &'static str {
        match self {
            PolicyTable::Autoscaling => "autoscaling_policies",
            PolicyTable::Traffic => "traffic_policies",
        }
    }

    fn what(self) -> &'static str {
        match self {
            PolicyTable::Autoscaling => "autoscaling policy",
            PolicyTable::Traffic => "traffic policy",
        }
    }
}

/// A counter as the database stores it.
fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A conditional write that touched no row lost a race the row lock should have prevented;
/// refuse rather than write over the winner.
fn lost_race(rows: u64, kind: &str, name: &str) -> StoreResult<()> {
    if rows == 0 {
        return Err(StoreError::Conflict {
            code: "write_contention",
            message: format!("{kind} '{name}' changed concurrently; retry"),
        });
    }
    Ok(())
}

/// Decodes the row a lookup found, or names what was not found.
fn found<T>(
    row: Option<AnyRow>,
    kind: &'static str,
    name: impl FnOnce() -> String,
    decode: impl FnOnce(&AnyRow) -> StoreResult<T>,
) -> StoreResult<T> {
    match row {
        Some(row) => decode(&row),
        None => Err(StoreError::NotFound { kind, name: name() }),
    }
}

fn check_generation(expected: Option<i64>, current: i64) -> StoreResult<()> {
    match expected {
        Some(expected) if expected != current => {
            Err(StoreError::PreconditionFailed { expected, current })
        }
        _ => Ok(()),
    }
}

/// `$first, $first+1, …` for an `IN (…)` list of `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Keyset cursor over names: the cursor is the last name served.
fn name_cursor(page: &PageRequest) -> String {
    page.cursor.clone().unwrap_or_default()
}

/// Keyset cursor over descending numeric ids: the cursor is the last id served.
fn desc_cursor(page: &PageRequest) -> StoreResult<i64> {
    match &page.cursor {
        None => Ok(i64::MAX),
        Some(c) => c.parse().map_err(|_| {
            StoreError::Invalid(crate::domain::Invalid::new(
                "cursor",
                "not a cursor returned by this endpoint",
            ))
        }),
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn ensure_namespace(&self, name: &Name, event: NewEvent) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO namespaces (name, labels, created_at, generation) VALUES ($1, '{}', $2, 1) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name.as_str())
        .bind(self.now())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected()
            > 0;
        if inserted {
            self.insert_event(&mut tx, &event).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(inserted)
    }

    async fn create_namespace(
        &self,
        name: &Name,
        labels: &Labels,
        event: NewEvent,
    ) -> StoreResult<Namespace> {
        let mut tx = self.begin().await?;
        let result = sqlx::query(
            "INSERT INTO namespaces (name, labels, created_at, generation) VALUES ($1, $2, $3, 1)",
        )
        .bind(name.as_str())
        .bind(to_json(labels)?)
        .bind(self.now())
        .execute(&mut *tx)
        .await;
        if let Err(e) = result {
            return Err(if is_unique_violation(&e) {
                StoreError::AlreadyExists {
                    kind: "namespace",
                    name: name.to_string(),
                }
            } else {
                db_err(e)
            });
        }
        self.insert_event(&mut tx, &event).await?;
        let ns = Self::namespace_in(&mut *tx, name, "").await?;
        tx.commit().await.map_err(db_err)?;
        Ok(ns)
    }

    async fn get_namespace(&self, name: &Name) -> StoreResult<Namespace> {
        Self::namespace_in(&self.reader, name, "").await
    }

    async fn list_namespaces(
        &self,
        page: &PageRequest,
        visible: Option<&[String]>,
    ) -> StoreResult<Page<Namespace>> {
        let mut sql = String::from(
            "SELECT name, labels, created_at, generation FROM namespaces WHERE name > $1",
        );
        if visible.is_some_and(<[String]>::is_empty) {
            return Ok(Page {
                items: vec![],
                next_cursor: None,
            });
        }
        let visible = visible.unwrap_or_default();
        if !visible.is_empty() {
            sql.push_str(&format!(
                " AND name IN ({})",
                placeholders(3, visible.len())
            ));
        }
        sql.push_str(" ORDER BY name LIMIT $2");
        let mut query = sqlx::query(&sql)
            .bind(name_cursor(page))
            .bind(i64::from(page.limit) + 1);
        for ns in visible {
            query = query.bind(ns.as_str());
        }
        let rows = query.fetch_all(&self.reader).await.map_err(db_err)?;
        let items = rows
            .iter()
            .map(namespace_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(paginate(items, page.limit, |n| n.name.clone()))
    }

    async fn update_namespace(
        &self,
        name: &Name,
        expected: Option<i64>,
        labels: &Labels,
        event: NewEvent,
    ) -> StoreResult<Namespace> {
        let mut tx = self.begin().await?;
        let current = Self::namespace_in(&mut *tx, name, self.for_update()).await?;
        check_generation(expected, current.generation)?;
        let updated = sqlx::query(
            "UPDATE namespaces SET labels = $1, generation = generation + 1 \
             WHERE name = $2 AND generation = $3",
        )
        .bind(to_json(labels)?)
        .bind(name.as_str())
        .bind(current.generation)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        lost_race(updated, "namespace", name.as_str())?;
        self.insert_event(&mut tx, &event).await?;
        let ns = Self::namespace_in(&mut *tx, name, "").await?;
        tx.commit().await.map_err(db_err)?;
        Ok(ns)
    }

    async fn delete_namespace(
        &self,
        name: &Name,
        expected: Option<i64>,
        event: NewEvent,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let current = Self::namespace_in(&mut *tx, name, self.for_update()).await?;
        check_generation(expected, current.generation)?;
        let apps: i64 = get(
            &sqlx::query("SELECT COUNT(*) AS n FROM apps WHERE namespace = $1")
                .bind(name.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?,
            "n",
        )?;
        if apps > 0 {
            return Err(StoreError::Conflict {
                code: "namespace_not_empty",
                message: format!("namespace '{name}' still has {apps} app(s); delete them first"),
            });
        }
        let deleted = sqlx::query("DELETE FROM namespaces WHERE name = $1 AND generation = $2")
            .bind(name.as_str())
            .bind(current.generation)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        lost_race(deleted, "namespace", name.as_str())?;
        self.insert_event(&mut tx, &event).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn create_app(&self, ns: &Name, app: &AppCreate, event: NewEvent) -> StoreResult<App> {
        let mut tx = self.begin().await?;
        Self::namespace_in(&mut *tx, ns, "").await?;
        let now = self.now();
        let sql = format!(
            "INSERT INTO apps (namespace, name, description, labels, replicas, current_version, \
             created_at, updated_at, generation, routing) \
             VALUES ($1, $2, $3, $4, $5, NULL, $6, $6, 1, $7) RETURNING {APP_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(ns.as_str())
            .bind(&app.name)
            .bind(&app.description)
            .bind(to_json(&app.labels)?)
            .bind(i64::from(app.replicas.unwrap_or(1)))
            .bind(now)
            .bind(to_json(&Routing {
                domains: app.domains.clone(),
                path_prefixes: app.path_prefixes.clone(),
                registries: app.registries.clone(),
            })?)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists {
                        kind: "app",
                        name: format!("{ns}/{}", app.name),
                    }
                } else if matches!(&e, sqlx::Error::Database(d) if d.is_foreign_key_violation()) {
                    // The namespace was deleted while we were inserting.
                    StoreError::NotFound {
                        kind: "namespace",
                        name: ns.to_string(),
                    }
                } else {
                    db_err(e)
                }
            })?;
        let created = app_from_row(&row)?.app;
        self.insert_event(&mut tx, &event).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(created)
    }

    async fn get_app(&self, ns: &Name, name: &Name) -> StoreResult<AppRecord> {
        Self::app_in(&self.reader, ns, name, "").await
    }

    async fn list_apps(&self, ns: &Name, page: &PageRequest) -> StoreResult<Page<App>> {
        Self::namespace_in(&self.reader, ns, "").await?;
        let sql = format!(
            "SELECT {APP_COLUMNS} FROM apps WHERE namespace = $1 AND name > $2 ORDER BY name LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(ns.as_str())
            .bind(name_cursor(page))
            .bind(i64::from(page.limit) + 1)
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        let items = rows
            .iter()
            .map(|r| app_from_row(r).map(|rec| rec.app))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(paginate(items, page.limit, |a| a.name.clone()))
    }

    async fn update_app(
        &self,
        ns: &Name,
        name: &Name,
        expected: Option<i64>,
        change: AppChange<'_>,
    ) -> StoreResult<App> {
        for _ in 0..UPDATE_ATTEMPTS {
            let mut tx = self.begin().await?;
            let current = Self::app_in(&mut *tx, ns, name, self.for_update()).await?;
            check_generation(expected, current.app.generation)?;
            let mut app = current.app.clone();
            let event = change(&mut app)?;
            app.generation = current.app.generation + 1;
            app.updated_at = from_ms(self.now())?;
            let updated = sqlx::query(
                "UPDATE apps SET description = $1, labels = $2, replicas = $3, current_version = $4, \
                 updated_at = $5, generation = $6, routing = $9 WHERE id = $7 AND generation = $8",
            )
            .bind(&app.description)
            .bind(to_json(&app.labels)?)
            .bind(i64::from(app.replicas))
            .bind(app.current_version.map(i64::from))
            .bind(ms(app.updated_at))
            .bind(app.generation)
            .bind(current.id)
            .bind(current.app.generation)
            .bind(to_json(&Routing {
                domains: app.domains.clone(),
                path_prefixes: app.path_prefixes.clone(),
                registries: app.registries.clone(),
            })?)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            if updated == 0 {
                // Another writer got there first; re-read and apply on top of its change.
                tx.rollback().await.map_err(db_err)?;
                continue;
            }
            self.insert_event(&mut tx, &event).await?;
            tx.commit().await.map_err(db_err)?;
            return Ok(app);
        }
        Err(StoreError::Conflict {
            code: "write_contention",
            message: format!("app '{ns}/{name}' is changing too fast; retry"),
        })
    }

    async fn delete_app(
        &self,
        ns: &Name,
        name: &Name,
        expected: Option<i64>,
        event: NewEvent,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let current = Self::app_in(&mut *tx, ns, name, self.for_update()).await?;
        check_generation(expected, current.app.generation)?;
        let deleted = sqlx::query("DELETE FROM apps WHERE id = $1 AND generation = $2")
            .bind(current.id)
            .bind(current.app.generation)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        lost_race(deleted, "app", &current.app.name)?;
        self.insert_event(&mut tx, &event).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn create_version(
        &self,
        ns: &Name,
        app: &Name,
        version: &VersionCreate,
        state: VersionState,
        event: NewEvent,
    ) -> StoreResult<Version> {
        let spec = VersionSpec {
            run: version.run.clone(),
            env: version.env.clone(),
            port: version.port,
            health: version.health.clone(),
            resources: version.resources.clone(),
            build_command: version.build_command.clone(),
        };
        for _ in 0..UPDATE_ATTEMPTS {
            let mut tx = self.begin().await?;
            let rec = Self::app_in(&mut *tx, ns, app, self.for_update()).await?;
            let result = sqlx::query(
                "INSERT INTO versions (app_id, number, artifact_digest, spec, state, created_at) \
                 SELECT $1, COALESCE(MAX(number), 0) + 1, $2, $3, $4, $5 FROM versions WHERE app_id = $1 \
                 RETURNING number, artifact_digest, spec, state, created_at",
            )
            .bind(rec.id)
            .bind(&version.artifact_digest)
            .bind(to_json(&spec)?)
            .bind(version_state_str(state))
            .bind(self.now())
            .fetch_one(&mut *tx)
            .await;
            let row = match result {
                Ok(row) => row,
                // Two uploads raced for the same number; take the next one.
                Err(e) if is_unique_violation(&e) => {
                    tx.rollback().await.map_err(db_err)?;
                    continue;
                }
                Err(e) => return Err(db_err(e)),
            };
            let created = version_from_row(&row, ns.as_str(), app.as_str())?;
            let mut event = event.clone();
            if let serde_json::Value::Object(map) = &mut event.details {
                map.insert("version".into(), created.number.into());
            }
            self.insert_event(&mut tx, &event).await?;
            tx.commit().await.map_err(db_err)?;
            return Ok(created);
        }
        Err(StoreError::Conflict {
            code: "write_contention",
            message: format!("versions of '{ns}/{app}' are being created too fast; retry"),
        })
    }

    async fn get_version(&self, ns: &Name, app: &Name, number: u32) -> StoreResult<Version> {
        let rec = Self::app_in(&self.reader, ns, app, "").await?;
        let row = sqlx::query(
            "SELECT number, artifact_digest, spec, state, created_at FROM versions \
             WHERE app_id = $1 AND number = $2",
        )
        .bind(rec.id)
        .bind(i64::from(number))
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?;
        found(
            row,
            "version",
            || format!("{ns}/{app}/v{number}"),
            |row| version_from_row(row, ns.as_str(), app.as_str()),
        )
    }

    async fn list_versions(
        &self,
        ns: &Name,
        app: &Name,
        page: &PageRequest,
    ) -> StoreResult<Page<Version>> {
        let rec = Self::app_in(&self.reader, ns, app, "").await?;
        let rows = sqlx::query(
            "SELECT number, artifact_digest, spec, state, created_at FROM versions \
             WHERE app_id = $1 AND number < $2 ORDER BY number DESC LIMIT $3",
        )
        .bind(rec.id)
        .bind(desc_cursor(page)?)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        let items = rows
            .iter()
            .map(|r| version_from_row(r, ns.as_str(), app.as_str()))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(paginate(items, page.limit, |v| v.number.to_string()))
    }

    async fn create_release(
        &self,
        ns: &Name,
        app: &Name,
        target_version: u32,
        strategy: &Strategy,
        event: NewEvent,
    ) -> StoreResult<Release> {
        self.insert_release(ns, app, target_version, strategy, event, None)
            .await
    }

    async fn replace_release(
        &self,
        ns: &Name,
        app: &Name,
        target_version: u32,
        strategy: &Strategy,
        event: NewEvent,
        superseded: NewEvent,
    ) -> StoreResult<Release> {
        self.insert_release(ns, app, target_version, strategy, event, Some(superseded))
            .await
    }

    async fn get_release(&self, ns: &Name, app: &Name, id: i64) -> StoreResult<Release> {
        let rec = Self::release_by_id(&self.reader, id, "").await?;
        if rec.release.namespace != ns.as_str() || rec.release.app != app.as_str() {
            return Err(StoreError::NotFound {
                kind: "release",
                name: format!("{ns}/{app}/{id}"),
            });
        }
        Ok(rec.release)
    }

    async fn list_releases(
        &self,
        ns: &Name,
        app: &Name,
        page: &PageRequest,
    ) -> StoreResult<Page<Release>> {
        let rec = Self::app_in(&self.reader, ns, app, "").await?;
        let sql = format!(
            "{RELEASE_SELECT} WHERE r.app_id = $1 AND r.id < $2 ORDER BY r.id DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(rec.id)
            .bind(desc_cursor(page)?)
            .bind(i64::from(page.limit) + 1)
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        let items = rows
            .iter()
            .map(|r| release_from_row(r).map(|rec| rec.release))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(paginate(items, page.limit, |r| r.id.to_string()))
    }

    async fn active_releases(&self) -> StoreResult<Vec<ReleaseRecord>> {
        let sql = format!("{RELEASE_SELECT} WHERE r.state IN {ACTIVE_STATES} ORDER BY r.id");
        let rows = sqlx::query(&sql)
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(release_from_row).collect()
    }

    async fn transition_release(
        &self,
        id: i64,
        expected: i64,
        transition: &Transition,
        event: NewEvent,
    ) -> StoreResult<Release> {
        let mut tx = self.begin().await?;
        let current = Self::release_by_id(&mut *tx, id, self.for_update()).await?;
        check_generation(Some(expected), current.release.generation)?;
        let now = self.now();
        let updated = sqlx::query(
            "UPDATE releases SET state = $1, reason = $2, progress = $3, updated_at = $4, \
             generation = generation + 1 WHERE id = $5 AND generation = $6",
        )
        .bind(state_str(transition.to))
        .bind(&transition.reason)
        .bind(to_json(&transition.progress)?)
        .bind(now)
        .bind(id)
        .bind(expected)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if updated == 0 {
            // Another reconciler applied a step since we read the release.
            let current = Self::release_by_id(&self.reader, id, "").await?;
            return Err(StoreError::PreconditionFailed {
                expected,
                current: current.release.generation,
            });
        }
        if let Some(version) = transition.set_current_version {
            sqlx::query(
                "UPDATE apps SET current_version = $1, updated_at = $2, generation = generation + 1 \
                 WHERE id = $3",
            )
            .bind(i64::from(version))
            .bind(now)
            .bind(current.app_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        self.insert_event(&mut tx, &event).await?;
        let release = Self::release_by_id(&mut *tx, id, "").await?.release;
        tx.commit().await.map_err(db_err)?;
        Ok(release)
    }

    async fn versions_in_state(&self, state: VersionState) -> StoreResult<Vec<VersionRecord>> {
        let rows = sqlx::query(
            "SELECT v.app_id, v.number, v.artifact_digest, v.spec, v.state, v.created_at, \
             a.namespace, a.name AS app_name FROM versions v JOIN apps a ON a.id = v.app_id \
             WHERE v.state = $1 ORDER BY v.created_at, v.app_id, v.number",
        )
        .bind(version_state_str(state))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                let ns: String = get(row, "namespace")?;
                let app: String = get(row, "app_name")?;
                Ok(VersionRecord {
                    app_id: get(row, "app_id")?,
                    version: version_from_row(row, &ns, &app)?,
                })
            })
            .collect()
    }

    async fn set_version_state(
        &self,
        app_id: i64,
        number: u32,
        from: VersionState,
        to: VersionState,
        event: NewEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let updated = sqlx::query(
            "UPDATE versions SET state = $1 WHERE app_id = $2 AND number = $3 AND state = $4",
        )
        .bind(version_state_str(to))
        .bind(app_id)
        .bind(i64::from(number))
        .bind(version_state_str(from))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if updated == 0 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        self.insert_event(&mut tx, &event).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn referenced_digests(&self) -> StoreResult<Vec<String>> {
        let rows = sqlx::query("SELECT DISTINCT artifact_digest FROM versions")
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| get(r, "artifact_digest")).collect()
    }

    async fn get_policy(
        &self,
        ns: &Name,
        app: &Name,
    ) -> StoreResult<Option<AutoscalingPolicyState>> {
        Ok(self
            .get_app_doc(PolicyTable::Autoscaling, ns, app)
            .await?
            .map(|(policy, generation, updated_at)| AutoscalingPolicyState {
                policy,
                generation,
                updated_at,
            }))
    }

    async fn put_policy(
        &self,
        ns: &Name,
        app: &Name,
        policy: &AutoscalingPolicy,
        expected: Option<i64>,
        event: NewEvent,
    ) -> StoreResult<AutoscalingPolicyState> {
        let (generation, updated_at) = self
            .put_app_doc(PolicyTable::Autoscaling, ns, app, policy, expected, event)
            .await?;
        Ok(AutoscalingPolicyState {
            policy: policy.clone(),
            generation,
            updated_at,
        })
    }

    async fn get_traffic(&self, ns: &Name, app: &Name) -> StoreResult<Option<TrafficPolicyState>> {
        Ok(self.get_app_doc(PolicyTable::Traffic, ns, app).await?.map(
            |(policy, generation, updated_at)| TrafficPolicyState {
                policy,
                generation,
                updated_at,
            },
        ))
    }

    async fn put_traffic(
        &self,
        ns: &Name,
        app: &Name,
        policy: &TrafficPolicy,
        expected: Option<i64>,
        event: NewEvent,
    ) -> StoreResult<TrafficPolicyState> {
        let (generation, updated_at) = self
            .put_app_doc(PolicyTable::Traffic, ns, app, policy, expected, event)
            .await?;
        Ok(TrafficPolicyState {
            policy: policy.clone(),
            generation,
            updated_at,
        })
    }

    async fn routing_state(&self) -> StoreResult<Vec<AppRouting>> {
        let sql = format!("SELECT {APP_COLUMNS} FROM apps ORDER BY id");
        let apps = sqlx::query(&sql)
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?
            .iter()
            .map(app_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let traffic: HashMap<i64, TrafficPolicy> = self.all_app_docs(PolicyTable::Traffic).await?;
        let autoscaling: HashMap<i64, AutoscalingPolicy> =
            self.all_app_docs(PolicyTable::Autoscaling).await?;
        let mut releases: HashMap<i64, Release> = self
            .active_releases()
            .await?
            .into_iter()
            .map(|r| (r.app_id, r.release))
            .collect();
        // Only the versions something refers to: the serving one and those the traffic
        // policy names.
        let mut wanted: Vec<(i64, u32)> = Vec::new();
        for app in &apps {
            let mut numbers: Vec<u32> = app.app.current_version.into_iter().collect();
            if let Some(policy) = traffic.get(&app.id) {
                numbers.extend(crate::domain::traffic::referenced_versions(policy));
            }
            if let Some(release) = releases.get(&app.id) {
                numbers.push(release.target_version);
                numbers.extend(release.progress.stable_version);
            }
            numbers.sort_unstable();
            numbers.dedup();
            wanted.extend(numbers.into_iter().map(|n| (app.id, n)));
        }
        let mut versions: HashMap<(i64, u32), Version> = HashMap::new();
        let names: HashMap<i64, (String, String)> = apps
            .iter()
            .map(|a| (a.id, (a.app.namespace.clone(), a.app.name.clone())))
            .collect();
        for chunk in wanted.chunks(200) {
            let clauses: Vec<String> = (0..chunk.len())
                .map(|i| format!("(app_id = ${} AND number = ${})", 2 * i + 1, 2 * i + 2))
                .collect();
            let sql = format!(
                "SELECT app_id, number, artifact_digest, spec, state, created_at FROM versions WHERE {}",
                clauses.join(" OR ")
            );
            let mut query = sqlx::query(&sql);
            for (app_id, number) in chunk {
                query = query.bind(*app_id).bind(i64::from(*number));
            }
            for row in query.fetch_all(&self.reader).await.map_err(db_err)? {
                let app_id: i64 = get(&row, "app_id")?;
                let Some((ns, app)) = names.get(&app_id) else {
                    continue;
                };
                let version = version_from_row(&row, ns, app)?;
                versions.insert((app_id, version.number), version);
            }
        }
        Ok(apps
            .into_iter()
            .map(|record| {
                let mut own: Vec<Version> = versions
                    .iter()
                    .filter(|((id, _), _)| *id == record.id)
                    .map(|(_, v)| v.clone())
                    .collect();
                own.sort_by_key(|v| v.number);
                AppRouting {
                    traffic: traffic.get(&record.id).cloned(),
                    autoscaling: autoscaling.get(&record.id).cloned(),
                    release: releases.remove(&record.id),
                    versions: own,
                    record,
                }
            })
            .collect())
    }

    async fn record_metrics(&self, rows: &[MinuteMetrics]) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for m in rows {
            let p = &m.point;
            sqlx::query(
                "INSERT INTO metrics_minutely (app_id, version, minute, requests, responses_2xx, \
                 responses_3xx, responses_4xx, responses_5xx, concurrency, p50_ms, p90_ms, p99_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (app_id, version, minute) DO UPDATE SET requests = $4, \
                 responses_2xx = $5, responses_3xx = $6, responses_4xx = $7, responses_5xx = $8, \
                 concurrency = $9, p50_ms = $10, p90_ms = $11, p99_ms = $12",
            )
            .bind(m.app_id)
            .bind(i64::from(m.version))
            .bind(p.time.timestamp() / 60)
            .bind(count(p.requests))
            .bind(count(p.responses_2xx))
            .bind(count(p.responses_3xx))
            .bind(count(p.responses_4xx))
            .bind(count(p.responses_5xx))
            .bind(p.concurrency)
            .bind(p.p50_ms)
            .bind(p.p90_ms)
            .bind(p.p99_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn metrics_rollups(
        &self,
        app_id: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<MinuteMetrics>> {
        let rows = sqlx::query(
            "SELECT version, minute, requests, responses_2xx, responses_3xx, responses_4xx, \
             responses_5xx, concurrency, p50_ms, p90_ms, p99_ms FROM metrics_minutely \
             WHERE app_id = $1 AND minute >= $2 AND minute < $3 ORDER BY version, minute",
        )
        .bind(app_id)
        .bind(from.timestamp().div_euclid(60))
        .bind(to.timestamp().div_euclid(60))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                let minute: i64 = get(row, "minute")?;
                let counter = |col: &str| -> StoreResult<u64> {
                    Ok(u64::try_from(get::<i64>(row, col)?).unwrap_or(0))
                };
                Ok(MinuteMetrics {
                    app_id,
                    version: u32_col(row, "version")?,
                    point: MetricPoint {
                        time: from_ms(minute * 60_000)?,
                        requests: counter("requests")?,
                        responses_2xx: counter("responses_2xx")?,
                        responses_3xx: counter("responses_3xx")?,
                        responses_4xx: counter("responses_4xx")?,
                        responses_5xx: counter("responses_5xx")?,
                        concurrency: get(row, "concurrency")?,
                        p50_ms: get(row, "p50_ms")?,
                        p90_ms: get(row, "p90_ms")?,
                        p99_ms: get(row, "p99_ms")?,
                    },
                })
            })
            .collect()
    }

    async fn prune_metrics(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM metrics_minutely WHERE minute < $1")
            .bind(before.timestamp().div_euclid(60))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok(n)
    }

    async fn create_token(
        &self,
        name: &Name,
        role: Role,
        namespaces: Option<&[String]>,
        secret_hash: &str,
        event: NewEvent,
    ) -> StoreResult<TokenInfo> {
        let mut tx = self.begin().await?;
        let namespaces = namespaces.map(to_json).transpose()?;
        let row = sqlx::query(
            "INSERT INTO tokens (name, role, namespaces, secret_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(name.as_str())
        .bind(role_str(role))
        .bind(namespaces)
        .bind(secret_hash)
        .bind(self.now())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::AlreadyExists {
                    kind: "token",
                    name: name.to_string(),
                }
            } else {
                db_err(e)
            }
        })?;
        let id: i64 = get(&row, "id")?;
        self.insert_event(&mut tx, &event).await?;
        let info = Self::token_by_id(&mut *tx, id, "").await?;
        tx.commit().await.map_err(db_err)?;
        Ok(info)
    }

    async fn list_tokens(&self, page: &PageRequest) -> StoreResult<Page<TokenInfo>> {
        let rows = sqlx::query(
            "SELECT id, name, role, namespaces, created_at, revoked_at FROM tokens \
             WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(desc_cursor(page)?)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        let items = rows
            .iter()
            .map(token_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(paginate(items, page.limit, |t| t.id.to_string()))
    }

    async fn revoke_token(&self, id: i64, event: NewEvent) -> StoreResult<TokenInfo> {
        let mut tx = self.begin().await?;
        let current = Self::token_by_id(&mut *tx, id, self.for_update()).await?;
        if current.revoked_at.is_some() {
            // Revoking twice is harmless and records nothing new.
            return Ok(current);
        }
        let updated =
            sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(self.now())
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
        if updated == 0 {
            // A concurrent revocation won and recorded the event.
            tx.rollback().await.map_err(db_err)?;
            return Self::token_by_id(&self.reader, id, "").await;
        }
        self.insert_event(&mut tx, &event).await?;
        let info = Self::token_by_id(&mut *tx, id, "").await?;
        tx.commit().await.map_err(db_err)?;
        Ok(info)
    }

    async fn principal_by_hash(&self, secret_hash: &str) -> StoreResult<Option<Principal>> {
        let row = sqlx::query(
            "SELECT id, name, role, namespaces, created_at, revoked_at FROM tokens \
             WHERE secret_hash = $1 AND revoked_at IS NULL",
        )
        .bind(secret_hash)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?;
        row.map(|row| {
            let info = token_from_row(&row)?;
            Ok(Principal {
                token_id: info.id,
                name: info.name,
                role: info.role,
                namespaces: info.namespaces,
            })
        })
        .transpose()
    }

    async fn count_tokens(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM tokens")
            .fetch_one(&self.writer)
            .await
            .map_err(db_err)?;
        get(&row, "n")
    }

    async fn create_registry_object(
        &self,
        ns: &Name,
        kind: RegistryObjectKind,
        name: &Name,
        spec: &serde_json::Value,
        event: NewEvent,
    ) -> StoreResult<RegistryObject> {
        let mut tx = self.begin().await?;
        Self::namespace_in(&mut *tx, ns, "").await?;
        let now = self.now();
        let result = sqlx::query(
            "INSERT INTO registry_objects (namespace, kind, name, spec, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(ns.as_str())
        .bind(kind.as_str())
        .bind(name.as_str())
        .bind(to_json(spec)?)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::AlreadyExists {
                    kind: "registry object",
                    name: format!("{ns}/{name}"),
                })
            }
            Err(e) => return Err(db_err(e)),
        }
        self.insert_event(&mut tx, &event).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(RegistryObject {
            namespace: ns.to_string(),
            name: name.to_string(),
            spec: spec.clone(),
            created_at: from_ms(now)?,
        })
    }

    async fn list_registry_objects(
        &self,
        ns: Option<&Name>,
        kind: RegistryObjectKind,
    ) -> StoreResult<Vec<RegistryObject>> {
        let rows = sqlx::query(
            "SELECT namespace, name, spec, created_at FROM registry_objects \
             WHERE kind = $1 AND ($2 = '' OR namespace = $2) ORDER BY namespace, name",
        )
        .bind(kind.as_str())
        .bind(ns.map_or("", |n| n.as_str()))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                Ok(RegistryObject {
                    namespace: get(row, "namespace")?,
                    name: get(row, "name")?,
                    spec: from_json(&get::<String>(row, "spec")?, "registry object")?,
                    created_at: from_ms(get(row, "created_at")?)?,
                })
            })
            .collect()
    }

    async fn delete_registry_object(
        &self,
        ns: &Name,
        kind: RegistryObjectKind,
        name: &Name,
        event: NewEvent,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query(
            "DELETE FROM registry_objects WHERE namespace = $1 AND kind = $2 AND name = $3",
        )
        .bind(ns.as_str())
        .bind(kind.as_str())
        .bind(name.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound {
                kind: "registry object",
                name: format!("{ns}/{name}"),
            });
        }
        self.insert_event(&mut tx, &event).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn append_event(&self, event: NewEvent) -> StoreResult<i64> {
        let mut tx = self.begin().await?;
        let id = self.insert_event(&mut tx, &event).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(id)
    }

    async fn list_events(&self, filter: &EventFilter) -> StoreResult<Page<Event>> {
        let mut sql = String::from(
            "SELECT id, time, namespace, app, kind, actor, reason, details FROM events WHERE id > $1",
        );
        let mut args: Vec<String> = Vec::new();
        let mut push = |sql: &mut String, clause: &str, value: &str| {
            args.push(value.to_owned());
            sql.push_str(&format!(" AND {clause} ${}", args.len() + 1));
        };
        if let Some(ns) = &filter.namespace {
            push(&mut sql, "namespace =", ns);
        }
        if let Some(app) = &filter.app {
            push(&mut sql, "app =", app);
        }
        if let Some(kind) = &filter.kind {
            push(&mut sql, "kind =", kind);
        }
        if let Some(visible) = &filter.visible_namespaces {
            if visible.is_empty() {
                return Ok(Page {
                    items: vec![],
                    next_cursor: None,
                });
            }
            sql.push_str(&format!(
                " AND namespace IN ({})",
                placeholders(args.len() + 2, visible.len())
            ));
            args.extend(visible.iter().cloned());
        }
        let order = if filter.newest_first { "DESC" } else { "ASC" };
        sql.push_str(&format!(" ORDER BY id {order} LIMIT ${}", args.len() + 2));
        let mut query = sqlx::query(&sql).bind(filter.after.unwrap_or(0));
        for arg in args {
            query = query.bind(arg);
        }
        let rows = query
            .bind(i64::from(filter.limit) + 1)
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?;
        let items = rows
            .iter()
            .map(event_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(paginate(items, filter.limit, |e| e.id.to_string()))
    }
}
