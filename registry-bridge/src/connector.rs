//! The level-triggered connector: one [`Connector::converge`] pass observes the registry
//! (the entries carrying this connector's marker), diffs them against the desired
//! registrations with the pure [`diff`](crate::diff()), applies the operations, and
//! sends the heartbeats that are due (Eureka renewals, Consul TTL passes). Nothing is
//! remembered between passes except heartbeat times and the backoff, so a pass after an
//! outage converges exactly: what should not be registered is removed (including entries
//! of instances that died meanwhile), what is missing is registered.
//!
//! **Backoff.** When the registry cannot be reached (or refuses to be read), the
//! connector backs off exponentially from [`ConnectorConfig::backoff_initial`] (0.5 s) to
//! [`ConnectorConfig::backoff_max`] (30 s); passes inside the backoff window return at
//! once without I/O. Operations the registry rejects (4xx) are recorded in the report
//! and retried on the next pass without backing off: they do not block the others.
//!
//! [`Connector::run`] is the loop around the step: it converges when the desired set
//! changes, when heartbeats fall due, at the end of a backoff, and every
//! [`ConnectorConfig::resync_interval`] as the safety net for missed changes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::client::ClientError;
use crate::clock::Clock;
use crate::desired::{DesiredRegistration, ObservedRegistration, Owner};
use crate::diff::{conflicts, diff, RegistryOp};
use crate::remote::{Beat, Remote, RemoteKind};

/// Timing knobs of a connector (and of a sync job's writes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectorConfig {
    /// First backoff delay after a failed pass.
    pub backoff_initial: Duration,
    /// Largest backoff delay.
    pub backoff_max: Duration,
    /// How often Eureka leases are renewed (`leaseInfo.renewalIntervalInSecs`).
    pub eureka_renewal_interval: Duration,
    /// Eureka lease duration (`leaseInfo.durationInSecs`, whole seconds).
    pub eureka_lease_duration: Duration,
    /// TTL of the Consul check.
    pub consul_ttl: Duration,
    /// How often the Consul TTL check is passed.
    pub consul_ttl_pass_interval: Duration,
    /// `DeregisterCriticalServiceAfter` of the Consul check: how long Consul keeps an
    /// entry whose TTL nobody passes.
    pub consul_deregister_critical_after: Duration,
    /// How often [`Connector::run`] converges when nothing else asks it to.
    pub resync_interval: Duration,
}

impl Default for ConnectorConfig {
    fn default() -> Self {
        Self {
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            eureka_renewal_interval: Duration::from_secs(30),
            eureka_lease_duration: Duration::from_secs(90),
            consul_ttl: Duration::from_secs(90),
            consul_ttl_pass_interval: Duration::from_secs(30),
            consul_deregister_critical_after: Duration::from_secs(10 * 60),
            resync_interval: Duration::from_secs(30),
        }
    }
}

/// Exponential backoff with a cap, on injected time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
    next_retry: Option<DateTime<Utc>>,
}

impl Backoff {
    /// A backoff that starts at `initial` and doubles up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            failures: 0,
            next_retry: None,
        }
    }

    /// The delay after the `n`-th consecutive failure (1-based): `initial · 2ⁿ⁻¹`, capped.
    pub fn delay_after(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << shift)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// Records a failure at `now`; returns when to retry.
    pub fn failed(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.failures = self.failures.saturating_add(1);
        let delay = TimeDelta::from_std(self.delay_after(self.failures)).unwrap_or(TimeDelta::MAX);
        let at = now.checked_add_signed(delay).unwrap_or(now);
        self.next_retry = Some(at);
        at
    }

    /// Records a success: the next failure starts from `initial` again.
    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.next_retry = None;
    }

    /// Whether a pass at `now` must wait.
    pub fn blocks(&self, now: DateTime<Utc>) -> bool {
        self.next_retry.is_some_and(|at| now < at)
    }

    /// When the next attempt may run, while backing off.
    pub fn next_retry(&self) -> Option<DateTime<Utc>> {
        self.next_retry
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// An error as reports and status pages show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorInfo {
    /// Stable kind ([`ClientError::code`]).
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// When it happened.
    pub at: DateTime<Utc>,
}

impl ErrorInfo {
    pub(crate) fn new(error: &ClientError, at: DateTime<Utc>) -> Self {
        Self {
            code: error.code().to_owned(),
            message: error.to_string(),
            at,
        }
    }
}

/// How a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PassOutcome {
    /// Observed, every operation and heartbeat succeeded.
    Converged,
    /// Observed, but some operations or heartbeats were refused; retried next pass.
    Partial,
    /// The registry could not be observed or went away mid-pass; backing off.
    Failed,
    /// Skipped without I/O: still inside the backoff window.
    BackingOff,
}

/// One applied operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpResult {
    /// The operation.
    pub op: RegistryOp,
    /// Its error, if it failed.
    pub error: Option<String>,
    /// Milliseconds from the start of the pass to when it finished.
    pub finished_after_ms: u64,
}

/// Heartbeats sent in a pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HeartbeatSummary {
    /// Renewals / TTL passes that succeeded.
    pub renewed: usize,
    /// Entries the registry had lost and that were registered again.
    pub reregistered: usize,
    /// Heartbeats that failed.
    pub failed: usize,
}

/// What one [`Connector::converge`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConvergeReport {
    /// The connector.
    pub connector: String,
    /// The pass time (`now`).
    pub at: DateTime<Utc>,
    /// How it ended.
    pub outcome: PassOutcome,
    /// Owned entries found in the registry before applying.
    pub observed: usize,
    /// Owned entries in the registry after applying (as far as we know).
    pub registered: usize,
    /// Operations attempted, in order.
    pub ops: Vec<OpResult>,
    /// Operations not attempted because the registry went away (or deletes over a cap).
    pub skipped_ops: usize,
    /// Heartbeats.
    pub heartbeats: HeartbeatSummary,
    /// Desired instance IDs held by entries we do not own (not registered).
    pub conflicts: Vec<String>,
    /// The error that ended or degraded the pass.
    pub error: Option<ErrorInfo>,
    /// When the next attempt may run, while backing off.
    pub next_retry: Option<DateTime<Utc>>,
    /// When to run next at the latest (backoff end, next heartbeat, or the resync).
    pub requeue_after_ms: u64,
    /// How long the pass took.
    pub elapsed_ms: u64,
}

/// A connector's state for the control plane's API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectorStatus {
    /// The connector.
    pub name: String,
    /// The registry kind.
    pub kind: RemoteKind,
    /// The address requests go to.
    pub endpoint: String,
    /// Whether the last pass converged.
    pub healthy: bool,
    /// The last pass outcome (none before the first pass).
    pub last_outcome: Option<PassOutcome>,
    /// The last error (kept after recovery, with its time).
    pub last_error: Option<ErrorInfo>,
    /// When a pass last converged.
    pub last_success: Option<DateTime<Utc>>,
    /// When a pass last ran (not counting skipped ones).
    pub last_attempt: Option<DateTime<Utc>>,
    /// Owned entries in the registry, as of the last pass.
    pub registered: usize,
    /// Consecutive failed passes.
    pub consecutive_failures: u32,
    /// When the next attempt may run, while backing off.
    pub next_retry: Option<DateTime<Utc>>,
    /// Desired instance IDs blocked by entries we do not own.
    pub conflicts: Vec<String>,
}

/// The result of one engine pass (shared by the connector and sync jobs).
#[derive(Debug, Default)]
pub(crate) struct Pass {
    pub observed: usize,
    pub registered: usize,
    pub ops: Vec<OpResult>,
    pub skipped_ops: usize,
    pub heartbeats: HeartbeatSummary,
    pub conflicts: Vec<String>,
    /// A transient error, or any observation failure: the pass stopped.
    pub fatal: Option<ClientError>,
    /// The first refused operation or heartbeat.
    pub refused: Option<ClientError>,
}

impl Pass {
    pub(crate) fn outcome(&self) -> PassOutcome {
        if self.fatal.is_some() {
            PassOutcome::Failed
        } else if self.refused.is_some() || self.skipped_ops > 0 {
            PassOutcome::Partial
        } else {
            PassOutcome::Converged
        }
    }
}

fn elapsed_ms(start: tokio::time::Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn since(now: DateTime<Utc>, then: DateTime<Utc>) -> Duration {
    now.signed_duration_since(then).to_std().unwrap_or_default()
}

/// Observe, diff, apply, heartbeat — for one owner in one registry.
#[derive(Debug)]
pub(crate) struct Engine {
    pub remote: Remote,
    pub owner: Owner,
    pub config: ConnectorConfig,
    /// Instance ID → last successful registration or heartbeat.
    beats: BTreeMap<String, DateTime<Utc>>,
}

impl Engine {
    pub(crate) fn new(remote: Remote, owner: Owner, config: ConnectorConfig) -> Self {
        Self {
            remote,
            owner,
            config,
            beats: BTreeMap::new(),
        }
    }

    /// The desired registrations as the registry will show them: with the owner's
    /// markers (and, for Eureka, the zone).
    pub(crate) fn decorate(&self, desired: &[DesiredRegistration]) -> Vec<DesiredRegistration> {
        desired
            .iter()
            .map(|d| {
                let mut d = d.clone();
                for (k, v) in self.owner.markers() {
                    d.metadata.insert(k.to_owned(), v);
                }
                self.remote.decorate(&mut d.metadata);
                d
            })
            .collect()
    }

    /// When the next heartbeat falls due, if any registration needs one.
    pub(crate) fn next_heartbeat(&self) -> Option<DateTime<Utc>> {
        let interval = TimeDelta::from_std(self.remote.heartbeat_interval(&self.config)?).ok()?;
        self.beats
            .values()
            .min()
            .and_then(|t| t.checked_add_signed(interval))
    }

    /// One pass over already-decorated desired registrations. `delete_budget` caps
    /// deregistrations (the rest wait for the next pass).
    pub(crate) async fn pass(
        &mut self,
        desired: &[DesiredRegistration],
        now: DateTime<Utc>,
        delete_budget: Option<usize>,
    ) -> Pass {
        let start = tokio::time::Instant::now();
        let mut pass = Pass::default();
        let observed = match self.remote.observe(&self.owner).await {
            Ok(o) => o,
            Err(e) => {
                pass.fatal = Some(e);
                return pass;
            }
        };
        let owned: Vec<&ObservedRegistration> = observed.iter().filter(|o| o.owned).collect();
        pass.observed = owned.len();
        pass.conflicts = conflicts(desired, &observed);
        let mut present: BTreeSet<String> = owned.iter().map(|o| o.instance_id.clone()).collect();

        let ops = diff(desired, &observed);
        let mut deletes_left = delete_budget.unwrap_or(usize::MAX);
        let mut ops = ops.into_iter();
        for op in ops.by_ref() {
            if matches!(op, RegistryOp::Deregister { .. }) {
                if deletes_left == 0 {
                    pass.skipped_ops += 1;
                    continue;
                }
                deletes_left -= 1;
            }
            let result = self.remote.apply(&op, &self.config, now).await;
            let error = result.as_ref().err().map(ToString::to_string);
            match (&op, &result) {
                (
                    RegistryOp::Register { registration } | RegistryOp::Update { registration, .. },
                    Ok(()),
                ) => {
                    present.insert(registration.instance_id.clone());
                    self.beats.insert(registration.instance_id.clone(), now);
                }
                // A deregistration under an old service name leaves the ID present.
                (RegistryOp::Deregister { instance_id, .. }, Ok(()))
                    if !desired.iter().any(|d| &d.instance_id == instance_id) =>
                {
                    present.remove(instance_id);
                    self.beats.remove(instance_id);
                }
                _ => {}
            }
            tracing::info!(
                op = op.kind(),
                service = op.service(),
                instance_id = op.instance_id(),
                error = error.as_deref().unwrap_or(""),
                "RegistryOpApplied"
            );
            pass.ops.push(OpResult {
                op,
                error,
                finished_after_ms: elapsed_ms(start),
            });
            match result {
                Err(e) if e.is_transient() => {
                    pass.fatal = Some(e);
                    break;
                }
                Err(e) => {
                    pass.refused.get_or_insert(e);
                }
                Ok(()) => {}
            }
        }
        pass.skipped_ops += ops.count();
        if pass.fatal.is_some() {
            pass.registered = present.len();
            return pass;
        }

        // Heartbeats for what is registered and still desired.
        self.beats
            .retain(|id, _| desired.iter().any(|d| &d.instance_id == id));
        if let Some(interval) = self.remote.heartbeat_interval(&self.config) {
            for d in desired {
                if !present.contains(&d.instance_id) {
                    continue;
                }
                let due = self
                    .beats
                    .get(&d.instance_id)
                    .is_none_or(|last| since(now, *last) >= interval);
                if !due {
                    continue;
                }
                match self.remote.heartbeat(d, &self.config, now).await {
                    Ok(beat) => {
                        self.beats.insert(d.instance_id.clone(), now);
                        match beat {
                            Beat::Renewed => pass.heartbeats.renewed += 1,
                            Beat::Reregistered => {
                                tracing::info!(instance_id = %d.instance_id, "RegistryEntryReregistered");
                                pass.heartbeats.reregistered += 1;
                            }
                        }
                    }
                    Err(e) => {
                        pass.heartbeats.failed += 1;
                        tracing::warn!(instance_id = %d.instance_id, error = %e, "RegistryHeartbeatError");
                        if e.is_transient() {
                            pass.fatal = Some(e);
                            break;
                        }
                        pass.refused.get_or_insert(e);
                    }
                }
            }
        }
        pass.registered = present.len();
        pass
    }
}

/// Registers the platform's instances in one registry and keeps them converged.
#[derive(Debug)]
pub struct Connector {
    name: String,
    engine: Engine,
    backoff: Backoff,
    last_outcome: Option<PassOutcome>,
    last_error: Option<ErrorInfo>,
    last_success: Option<DateTime<Utc>>,
    last_attempt: Option<DateTime<Utc>>,
    registered: usize,
    conflicts: Vec<String>,
}

impl Connector {
    /// A connector with the default timing ([`ConnectorConfig::default`]). Its entries
    /// carry `tideway-managed=true` and `tideway-bridge=<name>`.
    pub fn new(name: String, remote: Remote) -> Self {
        Self::with_config(name, remote, ConnectorConfig::default())
    }

    /// A connector with explicit timing.
    pub fn with_config(name: String, remote: Remote, config: ConnectorConfig) -> Self {
        let backoff = Backoff::new(config.backoff_initial, config.backoff_max);
        Self {
            engine: Engine::new(remote, Owner::Bridge(name.clone()), config),
            name,
            backoff,
            last_outcome: None,
            last_error: None,
            last_success: None,
            last_attempt: None,
            registered: 0,
            conflicts: Vec::new(),
        }
    }

    /// The connector's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One level-triggered pass: observe the registry (our entries only), diff against
    /// `desired`, apply, and send the heartbeats that are due. Inside the backoff window
    /// it returns at once without I/O.
    pub async fn converge(
        &mut self,
        desired: &[DesiredRegistration],
        now: DateTime<Utc>,
    ) -> ConvergeReport {
        let start = tokio::time::Instant::now();
        if self.backoff.blocks(now) {
            return ConvergeReport {
                connector: self.name.clone(),
                at: now,
                outcome: PassOutcome::BackingOff,
                observed: 0,
                registered: self.registered,
                ops: Vec::new(),
                skipped_ops: 0,
                heartbeats: HeartbeatSummary::default(),
                conflicts: self.conflicts.clone(),
                error: self.last_error.clone(),
                next_retry: self.backoff.next_retry(),
                requeue_after_ms: self.requeue_after(now),
                elapsed_ms: elapsed_ms(start),
            };
        }
        let desired = self.engine.decorate(desired);
        let pass = self.engine.pass(&desired, now, None).await;
        let outcome = pass.outcome();
        self.last_attempt = Some(now);
        self.last_outcome = Some(outcome);
        let error = pass.fatal.as_ref().or(pass.refused.as_ref());
        let error = error.map(|e| ErrorInfo::new(e, now));
        if let Some(e) = &error {
            self.last_error = Some(e.clone());
        }
        if let Some(fatal) = &pass.fatal {
            let retry = self.backoff.failed(now);
            tracing::warn!(
                connector = %self.name,
                error = %fatal,
                failures = self.backoff.failures(),
                next_retry = %retry,
                "RegistryConnectorBackingOff"
            );
        } else {
            self.backoff.succeeded();
            self.registered = pass.registered;
            self.conflicts.clone_from(&pass.conflicts);
            if outcome == PassOutcome::Converged {
                self.last_success = Some(now);
            }
        }
        ConvergeReport {
            connector: self.name.clone(),
            at: now,
            outcome,
            observed: pass.observed,
            registered: pass.registered,
            ops: pass.ops,
            skipped_ops: pass.skipped_ops,
            heartbeats: pass.heartbeats,
            conflicts: pass.conflicts,
            error,
            next_retry: self.backoff.next_retry(),
            requeue_after_ms: self.requeue_after(now),
            elapsed_ms: elapsed_ms(start),
        }
    }

    fn requeue_after(&self, now: DateTime<Utc>) -> u64 {
        requeue_after(
            now,
            self.backoff.next_retry(),
            self.engine.next_heartbeat(),
            self.engine.config.resync_interval,
        )
    }

    /// The connector's state for the API.
    pub fn status(&self) -> ConnectorStatus {
        ConnectorStatus {
            name: self.name.clone(),
            kind: self.engine.remote.kind(),
            endpoint: self.engine.remote.endpoint(),
            healthy: self.last_outcome == Some(PassOutcome::Converged),
            last_outcome: self.last_outcome,
            last_error: self.last_error.clone(),
            last_success: self.last_success,
            last_attempt: self.last_attempt,
            registered: self.registered,
            consecutive_failures: self.backoff.failures(),
            next_retry: self.backoff.next_retry(),
            conflicts: self.conflicts.clone(),
        }
    }

    /// Runs until `shutdown`: converges on every change of `desired`, when heartbeats
    /// or the backoff fall due, and every resync interval; publishes its status after
    /// each pass. Returns the connector so the caller can inspect or deregister.
    pub async fn run(
        mut self,
        mut desired: watch::Receiver<Vec<DesiredRegistration>>,
        status: watch::Sender<ConnectorStatus>,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Self {
        loop {
            let snapshot = desired.borrow_and_update().clone();
            let report = self.converge(&snapshot, datetime(clock.now_millis())).await;
            status.send_replace(self.status());
            let wait = Duration::from_millis(report.requeue_after_ms.max(1));
            tokio::select! {
                () = shutdown.cancelled() => break,
                changed = desired.changed() => if changed.is_err() { break },
                () = tokio::time::sleep(wait) => {}
            }
        }
        self
    }
}

/// The time a loop should wait: until the backoff ends if backing off, else until the
/// next heartbeat, at most the resync interval.
pub(crate) fn requeue_after(
    now: DateTime<Utc>,
    next_retry: Option<DateTime<Utc>>,
    next_heartbeat: Option<DateTime<Utc>>,
    resync: Duration,
) -> u64 {
    let wait = match next_retry {
        Some(at) => since(at, now),
        None => next_heartbeat
            .map(|at| since(at, now))
            .unwrap_or(resync)
            .min(resync),
    };
    u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since the epoch as a UTC time.
pub(crate) fn datetime(millis: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(i64::try_from(millis).unwrap_or(i64::MAX)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_to_thirty() {
        let b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let delays: Vec<u64> = (1..=9)
            .map(|n| u64::try_from(b.delay_after(n).as_millis()).unwrap())
            .collect();
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(b.delay_after(200), Duration::from_secs(30));
    }

    #[test]
    fn backoff_blocks_until_retry_and_resets_on_success() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let t0 = datetime(1_700_000_000_000);
        let retry = b.failed(t0);
        assert_eq!(retry, datetime(1_700_000_000_500));
        assert!(b.blocks(t0));
        assert!(!b.blocks(retry));
        assert_eq!(b.failed(retry), datetime(1_700_000_001_500));
        b.succeeded();
        assert!(!b.blocks(t0));
        assert_eq!(b.failed(t0), datetime(1_700_000_000_500));
    }

    #[test]
    fn requeue_prefers_backoff_then_heartbeat_then_resync() {
        let now = datetime(1_000_000);
        let resync = Duration::from_secs(30);
        assert_eq!(
            requeue_after(now, Some(datetime(1_002_000)), None, resync),
            2000
        );
        assert_eq!(
            requeue_after(now, None, Some(datetime(1_010_000)), resync),
            10_000
        );
        assert_eq!(
            requeue_after(now, None, Some(datetime(1_100_000)), resync),
            30_000
        );
        assert_eq!(requeue_after(now, None, None, resync), 30_000);
        assert_eq!(requeue_after(now, None, Some(datetime(10)), resync), 0);
    }
}
