//! Registry-to-registry sync: a [`SyncJob`] copies the instances of selected services one
//! way (Consul → Eureka, Eureka → Consul, or to/from the built-in registry); both ways
//! are two jobs.
//!
//! One pass ([`SyncJob::run_once`]): read the selected services at the source, plan the
//! copies with the pure [`plan_copies`], and converge the destination on that plan with
//! the connector's engine, owning only entries marked `tideway-sync-job=<job>`.
//!
//! **Markers.** Every copy carries `tideway-sync-origin=<origin>` (`consul:<dc>`,
//! `eureka:<zone or host>`, `tideway:<dc>`), `tideway-sync-source-id=<original id>` and
//! `tideway-sync-job=<job>`. Its ID is `<original id>@<origin>`, so it never collides
//! with a native registration of the same instance (Eureka's `ip:app:port` IDs are often
//! reused as Consul IDs by dual-registering apps).
//!
//! **No loops, with two opposite jobs.** A job never copies an entry carrying
//! `tideway-sync-origin` (or `tideway-sync-job`), whoever made it: job A→B's copies in B
//! are invisible to job B→A, and the other way round. This also makes a chain A→B→C a
//! no-op at the second hop (configure A→C instead), and a job whose source and
//! destination are the same built-in registry (which shows every entry through both
//! protocols) copies nothing: each candidate already exists natively at the destination.
//! By default connector registrations (`tideway-managed=true`) are not copied either:
//! the platform registers its instances itself wherever a connector is configured, and a
//! copy would duplicate them (`include_managed` turns this on; the copy then loses the
//! connector's markers so no connector adopts or deletes it).
//!
//! **Ownership.** A job creates, updates and deletes only its own copies. Native
//! entries are never touched, and *native wins*: when the destination already has a
//! native entry of the same service at the same address and port, the source instance
//! is not copied (and an earlier copy is removed).
//!
//! **Health.** Up instances are copied as up; an instance going out of service (Eureka
//! `OUT_OF_SERVICE`, Consul maintenance) keeps its copy, taken out the same way; one
//! already out of service when first seen is copied once it comes up (the diff never
//! newly registers an entry that must not get traffic); down or starting instances are
//! not copied (their copy is removed), as nacos-sync does.
//! Eureka copies get lease renewals and Consul copies TTL passes on the job's behalf at
//! each pass that finds them due; run the job at least as often as the renewal interval.
//!
//! **Safety.** If the source cannot be read, nothing is written. Deletions per pass are
//! capped ([`SyncSpec::max_deletes_per_pass`]) so a source that suddenly returns nothing
//! cannot wipe the destination in one pass.
//!
//! **Lag.** When a pass first sees a source change (a new, changed or vanished
//! instance) it notes the time; when the copy is written the lag is that time to the
//! write, measured across passes with the injected `now` plus the monotonic time spent
//! in the pass. Reports carry the samples; the status keeps the last and the largest,
//! and the age of the oldest change not yet written.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::client::eureka::AppsCache;
use crate::client::ClientError;
use crate::clock::Clock;
use crate::connector::{
    datetime, requeue_after, Backoff, ConnectorConfig, Engine, ErrorInfo, HeartbeatSummary,
    OpResult, PassOutcome,
};
use crate::desired::{
    is_managed, is_sync_copy, DesiredRegistration, ObservedRegistration, Owner, META_APP,
    META_BRIDGE, META_INSTANCE, META_LANE, META_MANAGED, META_NAMESPACE, META_SYNC_ORIGIN,
    META_SYNC_SOURCE_ID, META_VERSION,
};
use crate::model::InstanceStatus;
use crate::remote::{Remote, RemoteKind};

/// Consul's limits on service Meta, and the key alphabet it accepts.
const CONSUL_META_MAX_PAIRS: usize = 64;
const CONSUL_META_KEY_MAX: usize = 128;
const CONSUL_META_VALUE_MAX: usize = 512;
/// Markers every copy carries (origin, source ID, job).
const MARKER_COUNT: usize = 3;

/// What a sync job copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncSpec {
    /// Job name; its copies carry `tideway-sync-job=<name>`.
    pub name: String,
    /// Services to copy (matched case-insensitively; copies use this spelling).
    pub services: Vec<String>,
    /// Origin label for the copies; derived from the source when unset.
    pub origin: Option<String>,
    /// Also copy connector registrations (`tideway-managed=true`).
    pub include_managed: bool,
    /// At most this many copies are deleted per pass.
    pub max_deletes_per_pass: usize,
    /// How often [`SyncJob::run`] runs a pass.
    pub interval: Duration,
}

impl SyncSpec {
    /// A job copying `services`, with defaults: origin derived from the source,
    /// connector registrations not copied, at most 64 deletions per pass, a pass every 5 s.
    pub fn new(name: impl Into<String>, services: Vec<String>) -> Self {
        Self {
            name: name.into(),
            services,
            origin: None,
            include_managed: false,
            max_deletes_per_pass: 64,
            interval: Duration::from_secs(5),
        }
    }
}

/// Why source instances were not copied, by count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SkipCounts {
    /// Copies made by some sync job (the loop guard).
    pub copies: usize,
    /// Connector registrations (unless `include_managed`).
    pub managed: usize,
    /// Down or starting.
    pub not_ready: usize,
    /// A native destination entry of the same service serves the same address and port.
    pub native_at_destination: usize,
}

/// The copies a pass wants at the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyPlan {
    /// Desired copies (without the job marker, which the engine adds).
    pub copies: Vec<DesiredRegistration>,
    /// What was left out, and why.
    pub skipped: SkipCounts,
}

/// The ID of a copy.
pub fn copy_id(source_id: &str, origin: &str) -> String {
    format!("{source_id}@{origin}")
}

fn consul_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Keys kept first when Consul's pair limit forces a choice.
const PRIORITY_KEYS: &[&str] = &[
    META_LANE,
    META_VERSION,
    META_NAMESPACE,
    META_APP,
    META_INSTANCE,
    "zone",
];

/// Metadata Consul accepts: keys of `[A-Za-z0-9_-]` (others become `_`), no `consul-`
/// prefix, bounded lengths, at most 64 pairs with room for the markers; the platform's
/// keys (lane, version, …) are kept first.
fn consul_safe(meta: BTreeMap<String, String>) -> BTreeMap<String, String> {
    let valid: Vec<(String, String)> = meta
        .into_iter()
        .filter_map(|(k, v)| {
            let key: String = k
                .chars()
                .map(|c| if consul_key_char(c) { c } else { '_' })
                .collect();
            let ok = !key.is_empty()
                && !key.starts_with("consul-")
                && key.len() <= CONSUL_META_KEY_MAX
                && v.len() <= CONSUL_META_VALUE_MAX;
            ok.then_some((key, v))
        })
        .collect();
    let (first, rest): (Vec<_>, Vec<_>) = valid
        .into_iter()
        .partition(|(k, _)| PRIORITY_KEYS.contains(&k.as_str()));
    let mut out = BTreeMap::new();
    for (k, v) in first.into_iter().chain(rest) {
        if out.len() >= CONSUL_META_MAX_PAIRS - MARKER_COUNT {
            break;
        }
        out.entry(k).or_insert(v);
    }
    out
}

/// Plans the copies of one pass: which source instances to copy, under which ID and
/// metadata, and in which state. Pure.
pub fn plan_copies(
    spec: &SyncSpec,
    origin: &str,
    source: &[ObservedRegistration],
    destination: &[ObservedRegistration],
    destination_kind: RemoteKind,
) -> CopyPlan {
    let mut skipped = SkipCounts::default();
    let native: BTreeSet<(String, &str, u16)> = destination
        .iter()
        .filter(|d| !is_sync_copy(&d.metadata))
        .map(|d| (d.service.to_lowercase(), d.address.as_str(), d.port))
        .collect();
    let mut copies = Vec::new();
    let mut seen = BTreeSet::new();
    for s in source {
        let Some(service) = spec
            .services
            .iter()
            .find(|name| name.eq_ignore_ascii_case(&s.service))
        else {
            continue;
        };
        if is_sync_copy(&s.metadata) {
            skipped.copies += 1;
            continue;
        }
        if is_managed(&s.metadata) && !spec.include_managed {
            skipped.managed += 1;
            continue;
        }
        if !matches!(s.status, InstanceStatus::Up | InstanceStatus::OutOfService) {
            skipped.not_ready += 1;
            continue;
        }
        if native.contains(&(service.to_lowercase(), s.address.as_str(), s.port)) {
            skipped.native_at_destination += 1;
            continue;
        }
        let id = copy_id(&s.instance_id, origin);
        if !seen.insert(id.clone()) {
            continue;
        }
        let mut metadata = s.metadata.clone();
        metadata.remove(META_MANAGED);
        metadata.remove(META_BRIDGE);
        if let Some(tags) = &s.tags {
            // Spring Cloud Consul's legacy `key=value` tags carry metadata too.
            for tag in tags {
                if let Some((k, v)) = tag.split_once('=') {
                    if !k.is_empty() {
                        metadata.entry(k.to_owned()).or_insert_with(|| v.to_owned());
                    }
                }
            }
        }
        if destination_kind == RemoteKind::Consul {
            metadata = consul_safe(metadata);
        }
        metadata.insert(META_SYNC_ORIGIN.to_owned(), origin.to_owned());
        metadata.insert(META_SYNC_SOURCE_ID.to_owned(), s.instance_id.clone());
        let tags = match destination_kind {
            RemoteKind::Eureka => Vec::new(),
            _ => s.tags.clone().unwrap_or_default(),
        };
        copies.push(DesiredRegistration {
            service: service.clone(),
            instance_id: id,
            address: s.address.clone(),
            port: s.port,
            metadata,
            tags,
            status: s.status,
            health_url: None,
        });
    }
    CopyPlan { copies, skipped }
}

/// One lag sample: a source change and the write that carried it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LagSample {
    /// The copy's ID.
    pub instance_id: String,
    /// What was written.
    pub op: &'static str,
    /// Milliseconds from the pass that first saw the change to the write.
    pub lag_ms: u64,
}

/// What one [`SyncJob::run_once`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// The job.
    pub job: String,
    /// The pass time (`now`).
    pub at: DateTime<Utc>,
    /// How it ended.
    pub outcome: PassOutcome,
    /// Instances of the selected services at the source.
    pub source_instances: usize,
    /// Copies wanted at the destination.
    pub planned_copies: usize,
    /// Source instances left out, and why.
    pub skipped: SkipCounts,
    /// This job's copies at the destination after the pass.
    pub copies: usize,
    /// Writes at the destination.
    pub ops: Vec<OpResult>,
    /// Writes not attempted (registry went away, or deletions over the cap).
    pub skipped_ops: usize,
    /// Lease renewals / TTL passes on behalf of copies.
    pub heartbeats: HeartbeatSummary,
    /// Lag samples of the changes written in this pass.
    pub lags: Vec<LagSample>,
    /// The error that ended or degraded the pass.
    pub error: Option<ErrorInfo>,
    /// When the next attempt may run, while backing off.
    pub next_retry: Option<DateTime<Utc>>,
    /// How long the pass took.
    pub elapsed_ms: u64,
}

/// A sync job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    /// No pass yet.
    Starting,
    /// The last pass converged.
    Healthy,
    /// The last pass ran but some writes were refused or deferred.
    Degraded,
    /// The last pass failed (a registry is unreachable); waiting for the backoff.
    BackingOff,
}

/// A sync job's state for the control plane's API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncStatus {
    /// The job.
    pub name: String,
    /// State.
    pub state: SyncState,
    /// Source kind and address.
    pub source: String,
    /// Destination kind and address.
    pub destination: String,
    /// The origin label on its copies (once known).
    pub origin: Option<String>,
    /// Its copies at the destination, as of the last pass.
    pub copies: usize,
    /// Source instances the last pass left out, and why (the loop guard shows here).
    pub skipped: SkipCounts,
    /// When a pass last ran.
    pub last_pass: Option<DateTime<Utc>>,
    /// When a pass last converged; its age is the staleness bound of the copies.
    pub last_success: Option<DateTime<Utc>>,
    /// The last error (kept after recovery, with its time).
    pub last_error: Option<ErrorInfo>,
    /// The most recent lag sample, in ms.
    pub last_lag_ms: Option<u64>,
    /// The largest lag sample since the job started, in ms.
    pub max_lag_ms: Option<u64>,
    /// Source changes seen but not written yet.
    pub pending_changes: usize,
    /// When the oldest of those was first seen.
    pub oldest_pending_since: Option<DateTime<Utc>>,
    /// Consecutive failed passes.
    pub consecutive_failures: u32,
    /// When the next attempt may run, while backing off.
    pub next_retry: Option<DateTime<Utc>>,
}

/// A one-way copy of selected services from one registry to another.
#[derive(Debug)]
pub struct SyncJob {
    spec: SyncSpec,
    source: Remote,
    engine: Engine,
    backoff: Backoff,
    origin: Option<String>,
    cache: AppsCache,
    /// The last planned copy per ID, to notice source changes.
    last_plan: BTreeMap<String, DesiredRegistration>,
    /// Copy ID → when the pending change was first seen.
    pending: BTreeMap<String, DateTime<Utc>>,
    state: SyncState,
    copies: usize,
    skipped: SkipCounts,
    last_pass: Option<DateTime<Utc>>,
    last_success: Option<DateTime<Utc>>,
    last_error: Option<ErrorInfo>,
    last_lag_ms: Option<u64>,
    max_lag_ms: Option<u64>,
}

fn describe(remote: &Remote) -> String {
    let kind = match remote.kind() {
        RemoteKind::Builtin => "builtin",
        RemoteKind::Consul => "consul",
        RemoteKind::Eureka => "eureka",
    };
    format!("{kind} {}", remote.endpoint())
}

impl SyncJob {
    /// A job with the default write timing ([`ConnectorConfig::default`]).
    pub fn new(spec: SyncSpec, from: Remote, to: Remote) -> Self {
        Self::with_config(spec, from, to, ConnectorConfig::default())
    }

    /// A job with explicit write timing (lease renewal, TTL, backoff).
    pub fn with_config(spec: SyncSpec, from: Remote, to: Remote, config: ConnectorConfig) -> Self {
        let backoff = Backoff::new(config.backoff_initial, config.backoff_max);
        Self {
            engine: Engine::new(to, Owner::SyncJob(spec.name.clone()), config),
            origin: spec.origin.clone(),
            spec,
            source: from,
            backoff,
            cache: AppsCache::new(),
            last_plan: BTreeMap::new(),
            pending: BTreeMap::new(),
            state: SyncState::Starting,
            copies: 0,
            skipped: SkipCounts::default(),
            last_pass: None,
            last_success: None,
            last_error: None,
            last_lag_ms: None,
            max_lag_ms: None,
        }
    }

    /// The job's spec.
    pub fn spec(&self) -> &SyncSpec {
        &self.spec
    }

    fn report(
        &self,
        now: DateTime<Utc>,
        outcome: PassOutcome,
        start: tokio::time::Instant,
    ) -> SyncReport {
        SyncReport {
            job: self.spec.name.clone(),
            at: now,
            outcome,
            source_instances: 0,
            planned_copies: 0,
            skipped: SkipCounts::default(),
            copies: self.copies,
            ops: Vec::new(),
            skipped_ops: 0,
            heartbeats: HeartbeatSummary::default(),
            lags: Vec::new(),
            error: None,
            next_retry: self.backoff.next_retry(),
            elapsed_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn fail(
        &mut self,
        error: &ClientError,
        now: DateTime<Utc>,
        mut report: SyncReport,
    ) -> SyncReport {
        let info = ErrorInfo::new(error, now);
        let retry = self.backoff.failed(now);
        tracing::warn!(job = %self.spec.name, %error, next_retry = %retry, "RegistrySyncError");
        self.state = SyncState::BackingOff;
        self.last_error = Some(info.clone());
        report.outcome = PassOutcome::Failed;
        report.error = Some(info);
        report.next_retry = Some(retry);
        report
    }

    /// One pass: read the source, plan, converge the destination, renew copies. Inside
    /// the backoff window it returns at once without I/O.
    pub async fn run_once(&mut self, now: DateTime<Utc>) -> SyncReport {
        let start = tokio::time::Instant::now();
        if self.backoff.blocks(now) {
            let mut report = self.report(now, PassOutcome::BackingOff, start);
            report.error.clone_from(&self.last_error);
            return report;
        }
        self.last_pass = Some(now);
        let report = self.report(now, PassOutcome::Converged, start);

        let origin = match &self.origin {
            Some(o) => o.clone(),
            None => match self.source.origin().await {
                Ok(o) => self.origin.insert(o).clone(),
                Err(e) => return self.fail(&e, now, report),
            },
        };
        let cache = matches!(self.source, Remote::Eureka(_)).then_some(&mut self.cache);
        let source = match self
            .source
            .read_services(&self.spec.services, cache, now)
            .await
        {
            Ok(s) => s,
            Err(e) => return self.fail(&e, now, report),
        };
        let destination = match self
            .engine
            .remote
            .read_services(&self.spec.services, None, now)
            .await
        {
            Ok(d) => d,
            Err(e) => return self.fail(&e, now, report),
        };
        let plan = plan_copies(
            &self.spec,
            &origin,
            &source,
            &destination,
            self.engine.remote.kind(),
        );
        self.skipped = plan.skipped;

        // Note source changes for the lag.
        let planned: BTreeMap<String, DesiredRegistration> = plan
            .copies
            .iter()
            .map(|c| (c.instance_id.clone(), c.clone()))
            .collect();
        for (id, copy) in &planned {
            if self.last_plan.get(id) != Some(copy) {
                self.pending.entry(id.clone()).or_insert(now);
            }
        }
        for id in self.last_plan.keys() {
            if !planned.contains_key(id) {
                self.pending.entry(id.clone()).or_insert(now);
            }
        }
        self.last_plan = planned;

        let desired = self.engine.decorate(&plan.copies);
        let pass = self
            .engine
            .pass(&desired, now, Some(self.spec.max_deletes_per_pass))
            .await;

        let mut lags = Vec::new();
        let mut unfinished: BTreeSet<&str> = BTreeSet::new();
        for result in &pass.ops {
            let id = result.op.instance_id();
            if result.error.is_some() {
                unfinished.insert(id);
                continue;
            }
            if let Some(seen) = self.pending.remove(id) {
                let across = now.signed_duration_since(seen).num_milliseconds();
                let lag_ms = u64::try_from(across).unwrap_or(0) + result.finished_after_ms;
                lags.push(LagSample {
                    instance_id: id.to_owned(),
                    op: result.op.kind(),
                    lag_ms,
                });
            }
        }
        let mut report = SyncReport {
            source_instances: source.len(),
            planned_copies: plan.copies.len(),
            skipped: plan.skipped,
            copies: pass.registered,
            skipped_ops: pass.skipped_ops,
            heartbeats: pass.heartbeats,
            ..report
        };
        if pass.fatal.is_none() && pass.skipped_ops == 0 {
            // Everything not failed is written or already matched.
            let unfinished: BTreeSet<String> = unfinished.iter().map(|s| (*s).to_owned()).collect();
            self.pending.retain(|id, _| unfinished.contains(id));
        }
        if let Some(lag) = lags.iter().map(|l| l.lag_ms).max() {
            self.max_lag_ms = Some(self.max_lag_ms.map_or(lag, |m| m.max(lag)));
        }
        if let Some(last) = lags.last() {
            self.last_lag_ms = Some(last.lag_ms);
        }
        let outcome = pass.outcome();
        report.ops = pass.ops;
        report.lags = lags;
        report.outcome = outcome;
        report.elapsed_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        if let Some(fatal) = &pass.fatal {
            return self.fail(fatal, now, report);
        }
        self.backoff.succeeded();
        self.copies = pass.registered;
        if let Some(refused) = &pass.refused {
            let info = ErrorInfo::new(refused, now);
            self.last_error = Some(info.clone());
            report.error = Some(info);
        }
        self.state = if outcome == PassOutcome::Converged {
            self.last_success = Some(now);
            SyncState::Healthy
        } else {
            SyncState::Degraded
        };
        report.copies = self.copies;
        report.next_retry = None;
        if !report.ops.is_empty() {
            tracing::info!(
                job = %self.spec.name,
                ops = report.ops.len(),
                copies = report.copies,
                max_lag_ms = report.lags.iter().map(|l| l.lag_ms).max().unwrap_or(0),
                "RegistrySyncPassApplied"
            );
        }
        report
    }

    /// The job's state for the API.
    pub fn status(&self) -> SyncStatus {
        SyncStatus {
            name: self.spec.name.clone(),
            state: self.state,
            source: describe(&self.source),
            destination: describe(&self.engine.remote),
            origin: self.origin.clone(),
            copies: self.copies,
            skipped: self.skipped,
            last_pass: self.last_pass,
            last_success: self.last_success,
            last_error: self.last_error.clone(),
            last_lag_ms: self.last_lag_ms,
            max_lag_ms: self.max_lag_ms,
            pending_changes: self.pending.len(),
            oldest_pending_since: self.pending.values().min().copied(),
            consecutive_failures: self.backoff.failures(),
            next_retry: self.backoff.next_retry(),
        }
    }

    /// Runs a pass every [`SyncSpec::interval`] (sooner when a backoff or a renewal falls
    /// due) until `shutdown`, publishing the status after each pass.
    pub async fn run(
        mut self,
        status: watch::Sender<SyncStatus>,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Self {
        loop {
            let now = datetime(clock.now_millis());
            self.run_once(now).await;
            status.send_replace(self.status());
            let wait = requeue_after(
                now,
                self.backoff.next_retry(),
                self.engine.next_heartbeat(),
                self.spec.interval,
            );
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(wait.max(1))) => {}
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{META_SYNC_JOB, META_SYNC_ORIGIN};

    fn source(id: &str, service: &str, port: u16) -> ObservedRegistration {
        ObservedRegistration {
            service: service.into(),
            instance_id: id.into(),
            address: "10.0.0.1".into(),
            port,
            metadata: BTreeMap::from([
                ("lane".to_owned(), "canary".to_owned()),
                ("version".to_owned(), "1.2.0".to_owned()),
            ]),
            tags: Some(vec!["zone=a".into(), "primary".into()]),
            status: InstanceStatus::Up,
            owned: false,
        }
    }

    fn spec() -> SyncSpec {
        SyncSpec::new("c2e", vec!["order".into()])
    }

    #[test]
    fn copies_carry_origin_and_source_id_and_keep_lane_and_version() {
        let plan = plan_copies(
            &spec(),
            "consul:dc1",
            &[source("web-1", "order", 8080), source("x", "other", 1)],
            &[],
            RemoteKind::Eureka,
        );
        assert_eq!(plan.copies.len(), 1);
        let c = &plan.copies[0];
        assert_eq!(c.instance_id, "web-1@consul:dc1");
        assert_eq!(c.metadata[META_SYNC_ORIGIN], "consul:dc1");
        assert_eq!(c.metadata[META_SYNC_SOURCE_ID], "web-1");
        assert_eq!(c.metadata["lane"], "canary");
        assert_eq!(c.metadata["version"], "1.2.0");
        assert_eq!(c.metadata["zone"], "a", "k=v tags become metadata");
        assert!(c.tags.is_empty(), "Eureka has no tags");
        assert!(
            !c.metadata.contains_key(META_SYNC_JOB),
            "the engine adds the job marker"
        );
    }

    #[test]
    fn never_copies_a_copy_or_a_managed_entry_by_default() {
        let mut copy = source("c", "order", 1);
        copy.metadata
            .insert(META_SYNC_ORIGIN.into(), "eureka:z".into());
        let mut managed = source("m", "order", 2);
        managed.metadata.insert(META_MANAGED.into(), "true".into());
        managed.metadata.insert(META_BRIDGE.into(), "tem".into());
        let plan = plan_copies(
            &spec(),
            "consul:dc1",
            &[copy, managed.clone()],
            &[],
            RemoteKind::Eureka,
        );
        assert!(plan.copies.is_empty());
        assert_eq!((plan.skipped.copies, plan.skipped.managed), (1, 1));

        let mut with_managed = spec();
        with_managed.include_managed = true;
        let plan = plan_copies(
            &with_managed,
            "consul:dc1",
            &[managed],
            &[],
            RemoteKind::Eureka,
        );
        let meta = &plan.copies[0].metadata;
        assert!(!meta.contains_key(META_MANAGED) && !meta.contains_key(META_BRIDGE));
    }

    #[test]
    fn carries_out_of_service_and_drops_down_instances() {
        let mut oos = source("a", "order", 1);
        oos.status = InstanceStatus::OutOfService;
        let mut down = source("b", "order", 2);
        down.status = InstanceStatus::Down;
        let plan = plan_copies(&spec(), "o", &[oos, down], &[], RemoteKind::Eureka);
        assert_eq!(plan.copies.len(), 1);
        assert_eq!(plan.copies[0].status, InstanceStatus::OutOfService);
        assert_eq!(plan.skipped.not_ready, 1);
    }

    #[test]
    fn native_destination_entries_win() {
        let mut native = source("n", "ORDER", 8080);
        native.tags = None;
        let mut other_copy = source("o", "ORDER", 9090);
        other_copy
            .metadata
            .insert(META_SYNC_ORIGIN.into(), "x".into());
        let plan = plan_copies(
            &spec(),
            "o",
            &[source("a", "order", 8080), source("b", "order", 9090)],
            &[native, other_copy],
            RemoteKind::Eureka,
        );
        let ids: Vec<_> = plan.copies.iter().map(|c| c.instance_id.as_str()).collect();
        assert_eq!(ids, ["b@o"]);
        assert_eq!(plan.skipped.native_at_destination, 1);
    }

    #[test]
    fn consul_destinations_get_valid_meta() {
        let mut s = source("a", "order", 1);
        s.tags = None;
        s.metadata.insert("management.port".into(), "8081".into());
        s.metadata.insert("consul-x".into(), "no".into());
        s.metadata.insert("long".into(), "v".repeat(600));
        let plan = plan_copies(
            &spec(),
            "eureka:z",
            std::slice::from_ref(&s),
            &[],
            RemoteKind::Consul,
        );
        let meta = &plan.copies[0].metadata;
        assert!(meta.keys().all(|k| k.chars().all(consul_key_char)));
        assert!(!meta.contains_key("consul-x") && !meta.contains_key("long"));
        assert_eq!(meta["management_port"], "8081");
        assert_eq!(meta[META_SYNC_SOURCE_ID], "a");

        for i in 0..100 {
            s.metadata.insert(format!("k{i:03}"), "v".into());
        }
        let plan = plan_copies(&spec(), "eureka:z", &[s], &[], RemoteKind::Consul);
        let meta = &plan.copies[0].metadata;
        assert_eq!(
            meta.len() + 1,
            CONSUL_META_MAX_PAIRS,
            "room for the job marker"
        );
        assert_eq!(meta["lane"], "canary");
        assert_eq!(meta["version"], "1.2.0");
        assert_eq!(meta[META_SYNC_ORIGIN], "eureka:z");
    }
}
