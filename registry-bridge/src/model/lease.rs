//! Eureka leases: renewal counting, the self-preservation threshold and eviction.
//!
//! Follows Netflix Eureka (`AbstractInstanceRegistry.evict`,
//! `PeerAwareInstanceRegistryImpl.isLeaseExpirationEnabled`, `MeasuredRate`) with two
//! documented differences: a lease expires `duration` after its last renewal (Netflix:
//! effectively `2 × duration`), and the leases evicted in one run, when capped, are the
//! longest-silent ones rather than a random pick.

use super::{Source, State};
use crate::clock::{duration_millis, Millis};
use crate::model::RegistryConfig;

const MINUTE: Millis = 60_000;

/// Renewal bookkeeping for self-preservation and the eviction schedule.
#[derive(Debug)]
pub(crate) struct LeaseBook {
    /// Eureka's `expectedNumberOfClientsSendingRenews`.
    pub expected_clients: u64,
    /// Eureka's `numberOfRenewsPerMinThreshold`.
    pub threshold: u64,
    origin: Millis,
    bucket: u64,
    current_count: u64,
    last_minute_count: u64,
    next_eviction: Millis,
    next_threshold_update: Millis,
}

impl LeaseBook {
    pub(crate) fn new(now: Millis, config: &RegistryConfig) -> Self {
        Self {
            expected_clients: 0,
            threshold: 0,
            origin: now,
            bucket: 0,
            current_count: 0,
            last_minute_count: 0,
            next_eviction: now.saturating_add(duration_millis(config.eviction_interval)),
            next_threshold_update: now
                .saturating_add(duration_millis(config.renewal_threshold_update_interval)),
        }
    }

    fn roll(&mut self, now: Millis) {
        let bucket = now.saturating_sub(self.origin) / MINUTE;
        if bucket == self.bucket {
            return;
        }
        self.last_minute_count = if bucket == self.bucket + 1 {
            self.current_count
        } else {
            0
        };
        self.current_count = 0;
        self.bucket = bucket;
    }

    pub(crate) fn record_renewal(&mut self, now: Millis) {
        self.roll(now);
        self.current_count += 1;
    }

    /// Renewals counted in the last complete minute.
    pub(crate) fn renews_last_min(&mut self, now: Millis) -> u64 {
        self.roll(now);
        self.last_minute_count
    }

    pub(crate) fn on_new_lease(&mut self, config: &RegistryConfig) {
        self.expected_clients += 1;
        self.recompute(config);
    }

    pub(crate) fn on_cancel(&mut self, config: &RegistryConfig) {
        self.expected_clients = self.expected_clients.saturating_sub(1);
        self.recompute(config);
    }

    fn recompute(&mut self, config: &RegistryConfig) {
        let interval = config.expected_renewal_interval.as_secs_f64().max(1.0);
        let per_min = self.expected_clients as f64 * (60.0 / interval);
        self.threshold = (per_min * config.renewal_percent_threshold) as u64;
    }

    /// Whether expired leases may be evicted now (false while self-preservation holds).
    pub(crate) fn expiration_enabled(&mut self, now: Millis, config: &RegistryConfig) -> bool {
        if !config.self_preservation {
            return true;
        }
        self.threshold > 0 && self.renews_last_min(now) > self.threshold
    }
}

fn lease_count(state: &State) -> usize {
    state
        .instances
        .values()
        .filter(|i| matches!(i.source, Source::Eureka(_)))
        .count()
}

/// Every `renewal_threshold_update_interval`, resets the expected clients to the number of
/// leases, as Eureka's `updateRenewalThreshold` does: only when the registry did not shrink
/// below the threshold fraction, or when self-preservation is off.
pub(crate) fn update_threshold_if_due(state: &mut State, now: Millis, config: &RegistryConfig) {
    if now < state.lease.next_threshold_update {
        return;
    }
    state.lease.next_threshold_update =
        now.saturating_add(duration_millis(config.renewal_threshold_update_interval));
    let count = lease_count(state) as u64;
    let floor = config.renewal_percent_threshold * state.lease.expected_clients as f64;
    if count as f64 > floor || !config.self_preservation {
        state.lease.expected_clients = count;
        state.lease.recompute(config);
    }
}

/// Runs eviction if its interval has passed: `Some((evicted, left))`, where `left` counts
/// expired leases kept (by self-preservation or the per-run cap).
pub(crate) fn evict_if_due(
    state: &mut State,
    now: Millis,
    config: &RegistryConfig,
) -> Option<(Vec<String>, usize)> {
    if now < state.lease.next_eviction {
        return None;
    }
    state.lease.next_eviction = now.saturating_add(duration_millis(config.eviction_interval));
    Some(evict(state, now, config))
}

/// Evicts expired leases now.
pub(crate) fn evict(
    state: &mut State,
    now: Millis,
    config: &RegistryConfig,
) -> (Vec<String>, usize) {
    let default_duration = duration_millis(config.lease_duration);
    let mut expired: Vec<(Millis, String)> = state
        .instances
        .values()
        .filter_map(|i| match &i.source {
            Source::Eureka(r) => {
                let duration = if r.duration_secs > 0 {
                    r.duration_secs.saturating_mul(1000)
                } else {
                    default_duration
                };
                (now > r.last_renewal.saturating_add(duration))
                    .then(|| (r.last_renewal, i.id.clone()))
            }
            _ => None,
        })
        .collect();
    if expired.is_empty() {
        return (Vec::new(), 0);
    }
    if !state.lease.expiration_enabled(now, config) {
        tracing::info!(
            expired = expired.len(),
            threshold = state.lease.threshold,
            "RegistrySelfPreservationEngaged"
        );
        return (Vec::new(), expired.len());
    }
    let size = lease_count(state);
    let keep = (size as f64 * config.renewal_percent_threshold) as usize;
    let limit = size.saturating_sub(keep).max(1);
    expired.sort();
    let total = expired.len();
    let mut evicted = Vec::new();
    for (_, id) in expired.into_iter().take(limit) {
        if state.remove(&id, now).is_some() {
            tracing::info!(instance_id = %id, "RegistryLeaseEvicted");
            evicted.push(id);
        }
    }
    let left = total - evicted.len();
    (evicted, left)
}
