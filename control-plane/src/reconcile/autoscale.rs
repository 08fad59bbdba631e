//! The autoscaler loop: every second, just after the gateway closes a second of metrics, it
//! feeds each scaled version's observations to its [`Scaler`] (a pure decision), and hands
//! the counts that changed to the runtime reconciler: the serving version's through the
//! app's stored `replicas` (durable, so a restart starts from the last decision), other
//! versions' (canaries, split versions) through the in-memory [`ScaleBoard`]. Each change is
//! an `Autoscaled` event carrying the decision's reason record. A request that reaches an
//! app at zero is decided at once, not at the next tick.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tideway_api_types::{
    AutoscalingPolicy, AutoscalingStatus, Instance, InstanceState, MetricKind, ScaleDecision,
    Strategy, VersionScaling,
};
use tideway_autoscaler::{Decision, Scaler, Second};
use tideway_custom_metrics::CustomMetrics;
use tideway_gateway::{Activation, GatewayMetrics};
use tokio::sync::{mpsc, Notify};
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{lock, stored_names};
use crate::clock::Clock;
use crate::domain::event::NewEvent;
use crate::domain::placement::place;
use crate::domain::Invalid;
use crate::runtime::RuntimeDriver;
use crate::store::{AppRouting, Store, StoreError};

const ACTOR: &str = "autoscaler";
/// The event kind of every decision that changed a count.
pub const EVENT_KIND: &str = "Autoscaled";
/// How long after a whole second the tick runs: the gateway closes the second at the
/// boundary, so its figures are there.
const TICK_OFFSET_MS: u64 = 120;
/// Custom metric values older than this are no data.
const CUSTOM_MAX_AGE_SECS: i64 = 10;

/// The autoscaler's counts for versions other than an app's serving one, by (app id,
/// version). Lost on restart by design: those versions then start from their placement's
/// baseline (their traffic share), which is safe.
#[derive(Debug, Default)]
pub struct ScaleBoard {
    counts: Mutex<HashMap<(i64, u32), u32>>,
}

impl ScaleBoard {
    pub fn get(&self, app_id: i64, version: u32) -> Option<u32> {
        lock(&self.counts).get(&(app_id, version)).copied()
    }

    fn set(&self, app_id: i64, version: u32, count: u32) {
        lock(&self.counts).insert((app_id, version), count);
    }

    fn remove(&self, app_id: i64, version: u32) {
        lock(&self.counts).remove(&(app_id, version));
    }

    fn retain(&self, keep: impl Fn(&(i64, u32)) -> bool) {
        lock(&self.counts).retain(|k, _| keep(k));
    }
}

/// What the autoscaler last saw and decided, per app, for `GET .../autoscaling/status`.
#[derive(Debug, Default)]
pub struct ScalingStatus {
    apps: Mutex<HashMap<i64, BTreeMap<u32, VersionScaling>>>,
}

impl ScalingStatus {
    pub fn versions(&self, app_id: i64) -> Vec<VersionScaling> {
        lock(&self.apps)
            .get(&app_id)
            .map(|v| v.values().cloned().collect())
            .unwrap_or_default()
    }

    fn put(&self, app_id: i64, status: VersionScaling) {
        lock(&self.apps)
            .entry(app_id)
            .or_default()
            .insert(status.version, status);
    }

    fn retain(&self, keep: impl Fn(&(i64, u32)) -> bool) {
        let mut apps = lock(&self.apps);
        for (app_id, versions) in apps.iter_mut() {
            versions.retain(|v, _| keep(&(*app_id, *v)));
        }
        apps.retain(|_, v| !v.is_empty());
    }
}

/// Builds the status answer from the live view and the recorded decisions.
pub fn status(
    policy: Option<&AutoscalingPolicy>,
    versions: Vec<VersionScaling>,
    decisions: Vec<ScaleDecision>,
) -> AutoscalingStatus {
    let stable = policy.map_or(60, |p| p.stable_window_secs);
    let panic_percent = policy.map_or(10.0, |p| p.panic_window_percent);
    AutoscalingStatus {
        enabled: policy.is_some(),
        stable_window_secs: stable,
        panic_window_secs: f64::from(stable) * panic_percent / 100.0,
        versions,
        decisions,
    }
}

/// One version the autoscaler decides for, this tick.
struct Target<'a> {
    app: &'a AppRouting,
    version: u32,
    policy: AutoscalingPolicy,
    /// The serving version outside a release: its count is the app's stored `replicas`.
    serving: bool,
    current: u32,
}

pub struct Autoscaler {
    pub store: Arc<dyn Store>,
    pub runtime: Arc<dyn RuntimeDriver>,
    pub gateway: Arc<GatewayMetrics>,
    pub custom: Arc<CustomMetrics>,
    pub board: Arc<ScaleBoard>,
    pub status: Arc<ScalingStatus>,
    pub clock: Arc<dyn Clock>,
    pub runtime_wake: Arc<Notify>,
    /// Releases wait on instance counts; a decision may unblock one.
    pub release_wake: Arc<Notify>,
    scalers: HashMap<(i64, u32), Scaler>,
    /// Whether each version had requests in the last recorded second.
    busy: HashMap<(i64, u32), bool>,
    started: i64,
}

impl Autoscaler {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        runtime: Arc<dyn RuntimeDriver>,
        gateway: Arc<GatewayMetrics>,
        custom: Arc<CustomMetrics>,
        board: Arc<ScaleBoard>,
        status: Arc<ScalingStatus>,
        clock: Arc<dyn Clock>,
        runtime_wake: Arc<Notify>,
        release_wake: Arc<Notify>,
    ) -> Self {
        let started = clock.now().timestamp();
        Autoscaler {
            store,
            runtime,
            gateway,
            custom,
            board,
            status,
            clock,
            runtime_wake,
            release_wake,
            scalers: HashMap::new(),
            busy: HashMap::new(),
            started,
        }
    }

    /// One evaluation of every app with a policy, for the second that closed before `now`.
    pub async fn tick(&mut self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let apps = self.store.routing_state().await?;
        let instances = self.runtime.instances();
        let second = now.timestamp() - 1;
        let requests = self.request_seconds(second);
        let mut targets = Vec::new();
        for app in &apps {
            targets.extend(targets_of(app, &self.board));
        }
        let live: std::collections::HashSet<(i64, u32)> = targets
            .iter()
            .map(|t| (t.app.record.id, t.version))
            .collect();
        // Versions no longer scaled lose their history and their overrides.
        self.scalers.retain(|k, _| live.contains(k));
        self.busy.retain(|k, _| live.contains(k));
        self.board.retain(|k| live.contains(k));
        self.status.retain(|k| live.contains(k));

        let mut changed = 0;
        for target in targets {
            let app = &target.app.record.app;
            let own: Vec<&Instance> = instances
                .iter()
                .filter(|i| {
                    i.namespace == app.namespace && i.app == app.name && i.version == target.version
                })
                .collect();
            let key = (target.app.record.id, target.version);
            let this_second = requests
                .get(&app.namespace)
                .and_then(|apps| apps.get(&app.name))
                .and_then(|versions| versions.get(&target.version));
            let mut observed = observe(&target, &own, this_second, &self.custom, second);
            // A load that starts within an idle second is diluted by the idle part of it;
            // the requests in flight right now say what the new level is.
            let was_idle = self.busy.get(&key).is_none_or(|b| !*b);
            let busy = this_second.is_some_and(|r| r.requests > 0.0);
            if was_idle && busy {
                let live = self
                    .gateway
                    .inflight(&app.namespace, &app.name)
                    .get(&target.version)
                    .copied()
                    .unwrap_or(0) as f64;
                observed.concurrency = observed.concurrency.map(|c| c.max(live));
            }
            self.busy.insert(key, busy);
            let ready = count(own.iter().filter(|i| i.state == InstanceState::Ready));
            let started = self.started;
            let scaler = self
                .scalers
                .entry((target.app.record.id, target.version))
                .or_insert_with(|| Scaler::new(started));
            scaler.record(second, &observed);
            let decision = scaler.decide(&target.policy, ready, target.current, now);
            self.status.put(
                target.app.record.id,
                VersionScaling {
                    version: target.version,
                    desired: decision.desired,
                    ready,
                    mode: decision.reason.mode,
                    last: Some(decision.reason.clone()),
                    evaluated_at: Some(now),
                },
            );
            if decision.desired != target.current {
                self.apply(&target, decision, now).await?;
                changed += 1;
            }
        }
        if changed > 0 {
            self.runtime_wake.notify_one();
            self.release_wake.notify_one();
        }
        Ok(changed)
    }

    /// Request metrics of every (namespace, app, version) in the closed second, instances
    /// summed.
    /// Keyed by namespace, then app, so the tick looks each app up without allocating.
    fn request_seconds(&self, second: i64) -> RequestSeconds {
        let mut out = RequestSeconds::new();
        for s in self.gateway.export_second(second) {
            let entry = out
                .entry(s.namespace)
                .or_default()
                .entry(s.app)
                .or_default()
                .entry(s.version)
                .or_default();
            entry.requests += s.requests as f64;
            entry.concurrency += s.busy_ns as f64 / 1e9;
        }
        out
    }

    async fn apply(
        &self,
        target: &Target<'_>,
        decision: Decision,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let app = &target.app.record.app;
        let record = ScaleDecision {
            version: target.version,
            at: now,
            from: target.current,
            to: decision.desired,
            reason: decision.reason,
        };
        let event = NewEvent::new(EVENT_KIND, ACTOR, record.reason.summary.clone())
            .app(&app.namespace, &app.name)
            .details(json!({ "decision": record }));
        tracing::info!(
            app = %app.name,
            version = target.version,
            from = record.from,
            to = record.to,
            reason = %record.reason.summary,
            "Autoscaled"
        );
        if !target.serving {
            self.board
                .set(target.app.record.id, target.version, decision.desired);
            return self.store.append_event(event).await.map(|_| ());
        }
        let (ns, name) = stored_names(&app.namespace, &app.name)?;
        let desired = decision.desired;
        let change = move |a: &mut tideway_api_types::App| -> Result<NewEvent, Invalid> {
            a.replicas = desired;
            Ok(event.clone())
        };
        self.store.update_app(&ns, &name, None, &change).await?;
        // The stored count is now the decision; an override would shadow later ones.
        self.board.remove(target.app.record.id, target.version);
        Ok(())
    }

    /// A request arrived for an app with no ready instance.
    pub async fn activate(&mut self, request: &Activation) -> Result<(), StoreError> {
        let (ns, name) = match stored_names(&request.namespace, &request.app) {
            Ok(n) => n,
            Err(_) => return Ok(()),
        };
        let record = self.store.get_app(&ns, &name).await?;
        if record.app.replicas > 0 {
            return Ok(());
        }
        let now = self.clock.now();
        let policy = self.store.get_policy(&ns, &name).await?;
        let (to, reason) = match (&policy, record.app.current_version) {
            (Some(state), Some(version)) => {
                let started = self.started;
                let decision = self
                    .scalers
                    .entry((record.id, version))
                    .or_insert_with(|| Scaler::new(started))
                    .activate(&state.policy, 0, now);
                (decision.desired, Some(decision.reason))
            }
            // Without a policy an app at zero gets one instance (Knative's activation scale).
            _ => (1, None),
        };
        let summary = reason.as_ref().map_or_else(
            || "a request arrived while the app had no instance".to_string(),
            |r| r.summary.clone(),
        );
        let details = json!({
            "decision": reason.map(|reason| ScaleDecision {
                version: record.app.current_version.unwrap_or(0),
                at: now,
                from: 0,
                to,
                reason,
            }),
            "from": 0,
            "to": to,
        });
        let change = move |a: &mut tideway_api_types::App| -> Result<NewEvent, Invalid> {
            a.replicas = a.replicas.max(to);
            Ok(NewEvent::new("AppActivated", ACTOR, summary.clone())
                .app(&a.namespace, &a.name)
                .details(details.clone()))
        };
        self.store.update_app(&ns, &name, None, &change).await?;
        self.runtime_wake.notify_one();
        Ok(())
    }

    /// Ticks every second (just after the gateway closes it) and answers activations at
    /// once, until `shutdown`.
    pub async fn run(
        mut self,
        mut activations: mpsc::Receiver<Activation>,
        shutdown: CancellationToken,
    ) {
        let into_second = u64::from(self.clock.now().timestamp_subsec_millis().min(999));
        let first = Instant::now() + Duration::from_millis(1000 - into_second + TICK_OFFSET_MS);
        let mut ticks = interval_at(first, Duration::from_secs(1));
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {
                    let now = self.clock.now();
                    if let Err(error) = self.tick(now).await {
                        tracing::warn!(reconciler = "autoscaler", %error, "ReconcileError");
                    }
                }
                request = activations.recv() => match request {
                    Some(request) => {
                        if let Err(error) = self.activate(&request).await {
                            tracing::warn!(%error, "ActivationError");
                        }
                    }
                    None => return,
                },
            }
        }
    }
}

fn count<'a>(it: impl Iterator<Item = &'a &'a Instance>) -> u32 {
    u32::try_from(it.count()).unwrap_or(u32::MAX)
}

/// The versions of an app the autoscaler decides for, with the policy each follows.
fn targets_of<'a>(app: &'a AppRouting, board: &ScaleBoard) -> Vec<Target<'a>> {
    let Some(policy) = &app.autoscaling else {
        return Vec::new();
    };
    if policy.metrics.is_empty() && policy.schedules.is_empty() {
        return Vec::new();
    }
    let placement = place(app);
    let serving = app.record.app.current_version;
    // Batch and blue-green releases size both versions themselves.
    if let Some(release) = &app.release {
        if placement.release_owned
            && matches!(
                release.strategy,
                Strategy::Batch(_) | Strategy::BlueGreen(_)
            )
        {
            return Vec::new();
        }
    }
    placement
        .replicas
        .iter()
        .map(|(&version, &baseline)| {
            let is_serving = Some(version) == serving;
            let mut own = policy.clone();
            if !is_serving {
                // A canary or split version follows its own traffic, from one instance up;
                // schedules and scale to zero are the serving version's.
                own.min = own.min.max(1);
                own.scale_to_zero = false;
                own.schedules.clear();
            }
            let through_store = is_serving && !placement.release_owned;
            let current = if through_store {
                app.record.app.replicas
            } else {
                board.get(app.record.id, version).unwrap_or(baseline)
            };
            Target {
                app,
                version,
                policy: own,
                serving: through_store,
                current,
            }
        })
        .collect()
}

/// The observations of one version in one closed second.
fn observe(
    target: &Target<'_>,
    instances: &[&Instance],
    requests: Option<&RequestSecond>,
    custom: &CustomMetrics,
    second: i64,
) -> Second {
    let wants = |kind: MetricKind| target.policy.metrics.iter().any(|m| m.kind == kind);
    let version = target
        .app
        .versions
        .iter()
        .find(|v| v.number == target.version);
    let ready: Vec<&&Instance> = instances
        .iter()
        .filter(|i| i.state == InstanceState::Ready)
        .collect();
    let average = |values: Vec<f64>| -> Option<f64> {
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    let cpu_percent = if wants(MetricKind::Cpu) {
        // Percent of the instance's CPU limit, or of one core without a limit.
        let cores = version
            .and_then(|v| v.resources.cpu_millis)
            .map_or(1.0, |m| f64::from(m) / 1000.0);
        average(
            ready
                .iter()
                .filter_map(|i| i.cpu_percent)
                .map(|p| p / cores)
                .collect(),
        )
    } else {
        None
    };
    let memory_percent = match version.and_then(|v| v.resources.memory_mb) {
        Some(limit_mb) if wants(MetricKind::Memory) && limit_mb > 0 => average(
            ready
                .iter()
                .filter_map(|i| i.memory_bytes)
                .map(|b| b as f64 * 100.0 / (f64::from(limit_mb) * 1024.0 * 1024.0))
                .collect(),
        ),
        _ => None,
    };
    let ids: Vec<&str> = ready.iter().map(|i| i.id.as_str()).collect();
    let custom = target
        .policy
        .metrics
        .iter()
        .filter(|m| m.kind == MetricKind::Custom)
        .filter_map(|m| {
            let name = m.name.as_deref()?;
            let total = custom.total(&ids, name, second, CUSTOM_MAX_AGE_SECS)?;
            Some((name.to_string(), total))
        })
        .collect();
    // The gateway sees every request: a second without a sample had no traffic.
    let (concurrency, rps) = requests.map_or((0.0, 0.0), |r| (r.concurrency, r.requests));
    Second {
        concurrency: Some(concurrency),
        rps: Some(rps),
        cpu_percent,
        memory_percent,
        custom,
    }
}

/// Request figures of one closed second by namespace, app and version.
type RequestSeconds = HashMap<String, HashMap<String, BTreeMap<u32, RequestSecond>>>;

/// One version's gateway figures in one second.
#[derive(Debug, Default, Clone, Copy)]
struct RequestSecond {
    requests: f64,
    concurrency: f64,
}
