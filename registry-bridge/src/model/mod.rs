//! The registry: one in-memory set of service instances shared by the Eureka and Consul
//! servers and by the platform's own registrations.
//!
//! Every instance has one *origin* — the protocol (or the platform) that registered it —
//! and is visible through both protocols. Writes from one protocol may also land on
//! instances of another origin (status overrides, maintenance, metadata, deregistration);
//! platform instances can only be replaced or removed by the platform.
//!
//! # Cross-protocol mapping
//!
//! * **Names.** Services are matched case-insensitively. Eureka shows every service under
//!   its upper-cased name (Eureka upper-cases app names itself); Consul shows a Consul
//!   registration under the name it was registered with and every other instance under
//!   the lower-cased name. So Consul `order` finds Eureka app `ORDER` and Eureka `ORDER`
//!   (or `order`) finds Consul service `order`.
//! * **Identity.** The Eureka instance ID is the Consul service ID. IDs are case-sensitive
//!   and unique across the whole registry (Eureka scopes them per app; we do not).
//! * **Status.** Eureka `UP` ↔ Consul passing. A Consul service whose checks include a
//!   critical one is Eureka `DOWN`; warning stays `UP` (Consul DNS still serves warning).
//!   Consul maintenance ↔ Eureka `OUT_OF_SERVICE`. An Eureka or platform instance is
//!   shown to Consul with one synthetic check (`eureka:<id>` or `tideway:<id>`) that is
//!   passing only when the status is `UP`, plus the `_service_maintenance:<id>` check when
//!   it is `OUT_OF_SERVICE`.
//! * **Metadata.** Eureka `metadata` ↔ Consul `Meta`. Consul tags have no Eureka
//!   counterpart and are kept only on the Consul side.
//!
//! # Time
//!
//! All time comes from the injected [`Clock`]; [`Registry::tick`] does every time-driven
//! state change (lease eviction, TTL expiry, critical-service reaping, delta pruning), so
//! the loops around it only decide *when* to call it.

mod consul;
mod eureka;
mod lease;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::{Clock, Millis, SystemClock};

pub use consul::{
    CheckDefinition, CheckKind, CheckStatus, CheckView, ConsulEntry, ConsulServiceView,
    ServiceDefinition, Weights,
};
pub(crate) use consul::{CheckJob, CheckResult};
pub use eureka::{
    reconcile_hash, ChangeAction, DataCenter, EurekaApp, EurekaApps, EurekaInstanceView,
    EurekaRegistration, EurekaStatus, Renewal, DEFAULT_DATA_CENTER_CLASS,
};
use lease::LeaseBook;

/// The status the platform gives its own instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceStatus {
    /// Serving.
    Up,
    /// Running but taken out of traffic on purpose.
    OutOfService,
    /// Not serving.
    Down,
    /// Not ready yet.
    Starting,
}

/// Which API (or the platform) registered an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Registered through the Eureka REST API; kept alive by lease renewals.
    Eureka,
    /// Registered through the Consul agent API; kept alive by its checks.
    Consul,
    /// Registered programmatically by the control plane; never expires.
    Platform,
}

/// A platform-owned registration. It never expires by lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformInstance {
    /// Service (Eureka app) name.
    pub service: String,
    /// Unique instance ID (Eureka instance ID, Consul service ID).
    pub instance_id: String,
    /// IP address or host name.
    pub address: String,
    /// Port the instance serves on.
    pub port: u16,
    /// Eureka metadata / Consul Meta.
    pub metadata: BTreeMap<String, String>,
    /// Consul tags.
    pub tags: Vec<String>,
    /// Current status.
    pub status: InstanceStatus,
}

/// One instance as the API and console show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredInstance {
    /// Service name as registered.
    pub service: String,
    /// Unique instance ID.
    pub instance_id: String,
    /// IP address or host name.
    pub address: String,
    /// Serving port.
    pub port: u16,
    /// Effective status, after overrides and maintenance (Eureka `UNKNOWN` shows as
    /// `Down`).
    pub status: InstanceStatus,
    /// Metadata / Meta.
    pub metadata: BTreeMap<String, String>,
    /// Consul tags.
    pub tags: Vec<String>,
    /// Who registered it.
    pub origin: Origin,
}

/// Settings of the registry model.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// When set, Consul writes must carry this token (`?token=`, `X-Consul-Token` or
    /// `Authorization: Bearer`); reads without a token are allowed, reads with a wrong
    /// token are refused.
    pub consul_acl_token: Option<String>,
    /// How often expired Eureka leases are evicted (Eureka: 60 s).
    pub eviction_interval: Duration,
    /// Lease duration for Eureka registrations that do not say (`leaseInfo.durationInSecs`).
    /// A lease expires this long after its last renewal (Netflix Eureka: effectively
    /// twice as long, a bug it keeps).
    pub lease_duration: Duration,
    /// Eureka self-preservation: stop evicting while renewals in the last minute are at
    /// or below the expected threshold. Off by default: the platform knows liveness.
    pub self_preservation: bool,
    /// Fraction of expected renewals below which self-preservation engages, and the
    /// complement of which caps evictions per run (Eureka: 0.85).
    pub renewal_percent_threshold: f64,
    /// The renewal interval clients are expected to use (Eureka: 30 s).
    pub expected_renewal_interval: Duration,
    /// How often the expected-clients count is recomputed from the registry (Eureka: 15 min).
    pub renewal_threshold_update_interval: Duration,
    /// How long changes stay in the Eureka delta (Eureka: 3 min).
    pub delta_retention: Duration,
    /// Consul datacenter name.
    pub datacenter: String,
    /// Consul node name every instance appears on.
    pub node_name: String,
    /// Consul node address, and the address of services registered without one.
    pub node_address: String,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            consul_acl_token: None,
            eviction_interval: Duration::from_secs(60),
            lease_duration: Duration::from_secs(90),
            self_preservation: false,
            renewal_percent_threshold: 0.85,
            expected_renewal_interval: Duration::from_secs(30),
            renewal_threshold_update_interval: Duration::from_secs(15 * 60),
            delta_retention: Duration::from_secs(3 * 60),
            datacenter: "dc1".to_owned(),
            node_name: "tideway".to_owned(),
            node_address: "127.0.0.1".to_owned(),
        }
    }
}

/// What one [`Registry::tick`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickOutcome {
    /// Eureka instances evicted because their lease expired.
    pub evicted: Vec<String>,
    /// Expired leases left alone because self-preservation is engaged.
    pub preserved: usize,
    /// TTL checks that went critical.
    pub ttl_expired: Vec<String>,
    /// Consul services removed by `DeregisterCriticalServiceAfter`.
    pub reaped: Vec<String>,
}

/// The shared registry. Cheap to share as `Arc`; all methods take `&self`.
pub struct Registry {
    config: RegistryConfig,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    index_tx: watch::Sender<u64>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// One instance, whatever its origin.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    pub id: String,
    /// Name as registered (Eureka: upper-cased).
    pub service: String,
    pub address: String,
    pub port: u16,
    pub metadata: BTreeMap<String, String>,
    pub tags: Vec<String>,
    /// An Eureka status override on a Consul or platform instance. (On Eureka instances
    /// the override is applied to the status itself, as Eureka does.)
    pub override_status: Option<EurekaStatus>,
    /// Consul maintenance reason, when maintenance is on.
    pub maintenance: Option<String>,
    pub create_index: u64,
    pub modify_index: u64,
    pub registered_at: Millis,
    pub updated_at: Millis,
    pub source: Source,
}

/// Origin-specific state.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Eureka(Box<eureka::EurekaRecord>),
    Consul(consul::ConsulRecord),
    Platform(InstanceStatus),
}

impl Instance {
    pub(crate) fn origin(&self) -> Origin {
        match self.source {
            Source::Eureka(_) => Origin::Eureka,
            Source::Consul(_) => Origin::Consul,
            Source::Platform(_) => Origin::Platform,
        }
    }

    pub(crate) fn key(&self) -> String {
        service_key(&self.service)
    }
}

/// A change recorded for the Eureka delta.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub at: Millis,
    pub action: ChangeAction,
    pub snapshot: Instance,
}

#[derive(Debug)]
pub(crate) struct State {
    /// The raft-like modify index; every visible change increments it.
    pub index: u64,
    pub instances: BTreeMap<String, Instance>,
    /// Service key → index of the last change to any of its instances (removals too).
    pub service_index: BTreeMap<String, u64>,
    /// Index of the last change to the set of services or their tags.
    pub catalog_index: u64,
    /// The Eureka delta queue.
    pub changes: VecDeque<Change>,
    pub lease: LeaseBook,
}

/// How services are matched across protocols: case-insensitively.
pub(crate) fn service_key(name: &str) -> String {
    name.to_lowercase()
}

impl State {
    fn bump(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    /// Inserts or replaces an instance and records the change everywhere it is observed:
    /// the modify index, the service and catalog indexes and the Eureka delta.
    pub(crate) fn upsert(&mut self, mut instance: Instance, action: ChangeAction, now: Millis) {
        let index = self.bump();
        let old = self.instances.get(&instance.id);
        let catalog_changed = match old {
            None => true,
            Some(old) => old.key() != instance.key() || old.tags != instance.tags,
        };
        if let Some(old) = old {
            if old.key() != instance.key() {
                self.service_index.insert(old.key(), index);
            }
        }
        if old.is_none() {
            instance.create_index = index;
        }
        instance.modify_index = index;
        self.service_index.insert(instance.key(), index);
        if catalog_changed {
            self.catalog_index = index;
        }
        self.changes.push_back(Change {
            at: now,
            action,
            snapshot: instance.clone(),
        });
        self.instances.insert(instance.id.clone(), instance);
    }

    /// Removes an instance, recording a `DELETED` change.
    pub(crate) fn remove(&mut self, id: &str, now: Millis) -> Option<Instance> {
        let removed = self.instances.remove(id)?;
        let index = self.bump();
        self.service_index.insert(removed.key(), index);
        self.catalog_index = index;
        self.changes.push_back(Change {
            at: now,
            action: ChangeAction::Deleted,
            snapshot: removed.clone(),
        });
        Some(removed)
    }

    /// Index of one service (never below 1).
    pub(crate) fn service_index_of(&self, key: &str) -> u64 {
        self.service_index.get(key).copied().unwrap_or(1).max(1)
    }

    fn prune_changes(&mut self, now: Millis, retention: Duration) {
        let keep_after = now.saturating_sub(crate::clock::duration_millis(retention));
        while self.changes.front().is_some_and(|c| c.at < keep_after) {
            self.changes.pop_front();
        }
    }
}

impl Registry {
    /// A registry on the system clock.
    pub fn new(config: RegistryConfig) -> Arc<Self> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A registry on the given clock.
    pub fn with_clock(config: RegistryConfig, clock: Arc<dyn Clock>) -> Arc<Self> {
        let now = clock.now_millis();
        // Seeded from the wall clock so the index does not go backwards across restarts
        // (registrations do not survive one; clients must see a fresh, higher index).
        let seed = now.max(1);
        let (index_tx, _) = watch::channel(seed);
        Arc::new(Self {
            state: Mutex::new(State {
                index: seed,
                instances: BTreeMap::new(),
                service_index: BTreeMap::new(),
                catalog_index: seed,
                changes: VecDeque::new(),
                lease: LeaseBook::new(now, &config),
            }),
            config,
            clock,
            index_tx,
        })
    }

    /// The configuration the registry runs with.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The current time on the registry's clock.
    pub fn now_millis(&self) -> Millis {
        self.clock.now_millis()
    }

    /// The current raft-like index.
    pub fn index(&self) -> u64 {
        self.lock().index
    }

    /// A receiver that is notified whenever the index moves.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.index_tx.subscribe()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the state at the current time and notifies watchers if the index moved.
    pub(crate) fn write<R>(&self, f: impl FnOnce(&mut State, Millis) -> R) -> R {
        let now = self.clock.now_millis();
        let mut state = self.lock();
        let before = state.index;
        let result = f(&mut state, now);
        state.prune_changes(now, self.config.delta_retention);
        if state.index != before {
            self.index_tx.send_replace(state.index);
        }
        result
    }

    /// Inserts or replaces a platform instance.
    pub fn put_platform(&self, instance: PlatformInstance) {
        let config = self.config.clone();
        self.write(|state, now| {
            let existing = state.instances.get(&instance.instance_id);
            if existing.is_some_and(|i| i.origin() == Origin::Eureka) {
                state.lease.on_cancel(&config);
            }
            let (registered_at, maintenance, override_status) = match existing {
                Some(old) if old.origin() == Origin::Platform => (
                    old.registered_at,
                    old.maintenance.clone(),
                    old.override_status,
                ),
                _ => (now, None, None),
            };
            let action = if existing.is_some() {
                ChangeAction::Modified
            } else {
                ChangeAction::Added
            };
            let record = Instance {
                id: instance.instance_id,
                service: instance.service,
                address: instance.address,
                port: instance.port,
                metadata: instance.metadata,
                tags: instance.tags,
                override_status,
                maintenance,
                create_index: 0,
                modify_index: 0,
                registered_at,
                updated_at: now,
                source: Source::Platform(instance.status),
            };
            state.upsert(record, action, now);
        });
    }

    /// Changes a platform instance's status; false if there is no such platform instance.
    pub fn set_platform_status(&self, instance_id: &str, status: InstanceStatus) -> bool {
        self.write(|state, now| {
            let Some(existing) = state.instances.get(instance_id) else {
                return false;
            };
            let Source::Platform(current) = existing.source else {
                return false;
            };
            if current != status {
                let mut updated = existing.clone();
                updated.source = Source::Platform(status);
                updated.updated_at = now;
                state.upsert(updated, ChangeAction::Modified, now);
            }
            true
        })
    }

    /// Removes a platform instance; false if there is no such platform instance.
    pub fn remove_platform(&self, instance_id: &str) -> bool {
        self.write(|state, now| {
            let is_platform = state
                .instances
                .get(instance_id)
                .is_some_and(|i| i.origin() == Origin::Platform);
            is_platform && state.remove(instance_id, now).is_some()
        })
    }

    /// Every platform instance, as last put (status overrides not applied).
    pub fn platform_instances(&self) -> Vec<PlatformInstance> {
        self.lock()
            .instances
            .values()
            .filter_map(|i| match i.source {
                Source::Platform(status) => Some(PlatformInstance {
                    service: i.service.clone(),
                    instance_id: i.id.clone(),
                    address: i.address.clone(),
                    port: i.port,
                    metadata: i.metadata.clone(),
                    tags: i.tags.clone(),
                    status,
                }),
                _ => None,
            })
            .collect()
    }

    /// Every instance, for the API and console.
    pub fn snapshot(&self) -> Vec<RegisteredInstance> {
        self.lock()
            .instances
            .values()
            .map(|i| RegisteredInstance {
                service: i.service.clone(),
                instance_id: i.id.clone(),
                address: i.address.clone(),
                port: i.port,
                status: match eureka::effective_status(i) {
                    EurekaStatus::Up => InstanceStatus::Up,
                    EurekaStatus::OutOfService => InstanceStatus::OutOfService,
                    EurekaStatus::Starting => InstanceStatus::Starting,
                    EurekaStatus::Down | EurekaStatus::Unknown => InstanceStatus::Down,
                },
                metadata: i.metadata.clone(),
                tags: i.tags.clone(),
                origin: i.origin(),
            })
            .collect()
    }

    /// Does every time-driven change that is due at the clock's current time: TTL check
    /// expiry, reaping of services critical for longer than their
    /// `DeregisterCriticalServiceAfter`, Eureka lease eviction (every
    /// `eviction_interval`, subject to self-preservation) and delta pruning.
    pub fn tick(&self) -> TickOutcome {
        let config = self.config.clone();
        self.write(|state, now| {
            let mut outcome = TickOutcome {
                ttl_expired: consul::expire_ttl_checks(state, now),
                ..TickOutcome::default()
            };
            outcome.reaped = consul::reap_critical(state, now);
            lease::update_threshold_if_due(state, now, &config);
            if let Some((evicted, preserved)) = lease::evict_if_due(state, now, &config) {
                outcome.evicted = evicted;
                outcome.preserved = preserved;
            }
            outcome
        })
    }
}
