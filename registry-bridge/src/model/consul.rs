//! The Consul side of the model: agent service and check registration, TTL updates,
//! maintenance, check results from the checker, and the catalog / health views.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::eureka::{effective_status, ChangeAction, EurekaStatus};
use super::{service_key, Instance, Origin, Registry, Source, State};
use crate::clock::{duration_millis, Millis};
use crate::error::Error;

/// Consul's minimum check interval.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Consul's default HTTP/TCP check timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Consul's limits on service Meta.
const META_MAX_PAIRS: usize = 64;
const META_KEY_MAX: usize = 128;
const META_VALUE_MAX: usize = 512;
const MAINTENANCE_DEFAULT_REASON: &str = "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.";

/// A Consul check status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckStatus {
    /// `passing`
    Passing,
    /// `warning`
    Warning,
    /// `critical`
    Critical,
}

impl CheckStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passing => "passing",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "passing" => Some(Self::Passing),
            "warning" => Some(Self::Warning),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }
}

/// Service weights for DNS SRV answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    /// Weight while passing.
    pub passing: u32,
    /// Weight while warning.
    pub warning: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            passing: 1,
            warning: 1,
        }
    }
}

/// What a check probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// An HTTP request every interval: 2xx passing, 429 warning, anything else critical.
    Http {
        /// URL to request.
        url: String,
        /// Method (GET by default).
        method: String,
        /// Extra request headers.
        headers: BTreeMap<String, Vec<String>>,
        /// Request body.
        body: Option<String>,
        /// Accept any TLS certificate.
        tls_skip_verify: bool,
    },
    /// A TCP connect every interval: success is passing.
    Tcp {
        /// `host:port`.
        address: String,
    },
    /// Critical unless updated within `ttl`.
    Ttl {
        /// How long an update holds.
        ttl: Duration,
    },
}

impl CheckKind {
    fn type_name(&self) -> &'static str {
        match self {
            Self::Http { .. } => "http",
            Self::Tcp { .. } => "tcp",
            Self::Ttl { .. } => "ttl",
        }
    }
}

/// A decoded check definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckDefinition {
    /// `CheckID` (defaults to `service:<id>[:<n>]`).
    pub id: Option<String>,
    /// `Name` (defaults to `Service '<name>' check`).
    pub name: Option<String>,
    /// `ServiceID`, for `/v1/agent/check/register`.
    pub service_id: Option<String>,
    /// `Notes`.
    pub notes: String,
    /// Initial `Status` (critical when absent).
    pub status: Option<CheckStatus>,
    /// What is probed.
    pub kind: CheckKind,
    /// `Interval` for HTTP and TCP checks.
    pub interval: Option<Duration>,
    /// `Timeout` for HTTP and TCP checks.
    pub timeout: Option<Duration>,
    /// `DeregisterCriticalServiceAfter`.
    pub deregister_critical_after: Option<Duration>,
}

/// A decoded `/v1/agent/service/register` body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceDefinition {
    /// `ID` (defaults to `Name`).
    pub id: Option<String>,
    /// `Name`.
    pub name: String,
    /// `Tags`.
    pub tags: Vec<String>,
    /// `Address`.
    pub address: String,
    /// `Port`.
    pub port: u16,
    /// `Meta`.
    pub meta: BTreeMap<String, String>,
    /// `Check` and `Checks`, in that order.
    pub checks: Vec<CheckDefinition>,
    /// `Weights`.
    pub weights: Option<Weights>,
    /// `EnableTagOverride`.
    pub enable_tag_override: bool,
    /// `TaggedAddresses`: name → (address, port).
    pub tagged_addresses: BTreeMap<String, (String, u16)>,
    /// `Kind` (empty for a typical service).
    pub kind: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Check {
    pub id: String,
    pub name: String,
    pub notes: String,
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub deregister_after: Option<Duration>,
    pub status: CheckStatus,
    pub output: String,
    pub critical_since: Option<Millis>,
    pub ttl_deadline: Option<Millis>,
    pub next_run: Millis,
    pub running: bool,
}

/// Consul-only state of a Consul-registered service.
#[derive(Debug, Clone)]
pub(crate) struct ConsulRecord {
    pub checks: Vec<Check>,
    pub weights: Weights,
    pub enable_tag_override: bool,
    pub tagged_addresses: BTreeMap<String, (String, u16)>,
    pub kind: String,
}

impl ConsulRecord {
    /// Eureka's view of the service's own checks: any critical check is DOWN, else UP.
    pub(crate) fn eureka_status(&self) -> EurekaStatus {
        if self
            .checks
            .iter()
            .any(|c| c.status == CheckStatus::Critical)
        {
            EurekaStatus::Down
        } else {
            EurekaStatus::Up
        }
    }
}

/// A service as Consul renders it (agent, catalog and health views); the fields are
/// Consul's `AgentService` fields of the same (Pascal-cased) names.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsulServiceView {
    pub id: String,
    pub service: String,
    pub tags: Vec<String>,
    pub address: String,
    pub port: u16,
    pub meta: BTreeMap<String, String>,
    pub weights: Weights,
    pub enable_tag_override: bool,
    pub tagged_addresses: BTreeMap<String, (String, u16)>,
    pub kind: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// A check as Consul renders it; the fields are Consul's `HealthCheck` fields.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckView {
    pub check_id: String,
    pub name: String,
    pub status: CheckStatus,
    pub notes: String,
    pub output: String,
    pub service_id: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
    pub check_type: String,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// One `/v1/health/service` entry (the node is the registry's one node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsulEntry {
    /// The service.
    pub service: ConsulServiceView,
    /// Its checks, the node's `serfHealth` first.
    pub checks: Vec<CheckView>,
}

/// An HTTP or TCP check the checker should run now.
#[derive(Debug, Clone)]
pub(crate) struct CheckJob {
    pub service_id: String,
    pub check_id: String,
    pub kind: CheckKind,
    pub timeout: Duration,
}

/// What running a check found.
#[derive(Debug, Clone)]
pub(crate) struct CheckResult {
    pub status: CheckStatus,
    pub output: String,
}

/// The Consul name of an instance: as registered for Consul services, lower-cased for
/// Eureka apps and platform services.
pub(crate) fn consul_name(i: &Instance) -> String {
    match i.source {
        Source::Consul(_) => i.service.clone(),
        _ => service_key(&i.service),
    }
}

fn service_view(i: &Instance) -> ConsulServiceView {
    let (weights, enable_tag_override, tagged_addresses, kind) = match &i.source {
        Source::Consul(c) => (
            c.weights,
            c.enable_tag_override,
            c.tagged_addresses.clone(),
            c.kind.clone(),
        ),
        _ => (Weights::default(), false, BTreeMap::new(), String::new()),
    };
    ConsulServiceView {
        id: i.id.clone(),
        service: consul_name(i),
        tags: i.tags.clone(),
        address: i.address.clone(),
        port: i.port,
        meta: i.metadata.clone(),
        weights,
        enable_tag_override,
        tagged_addresses,
        kind,
        create_index: i.create_index,
        modify_index: i.modify_index,
    }
}

fn synthetic_check(
    i: &Instance,
    id: String,
    name: &str,
    status: CheckStatus,
    notes: String,
    output: String,
    check_type: &str,
) -> CheckView {
    CheckView {
        check_id: id,
        name: name.to_owned(),
        status,
        notes,
        output,
        service_id: i.id.clone(),
        service_name: consul_name(i),
        service_tags: i.tags.clone(),
        check_type: check_type.to_owned(),
        interval: None,
        timeout: None,
        create_index: i.create_index,
        modify_index: i.modify_index,
    }
}

/// The checks Consul clients see for an instance (without the node's `serfHealth`).
pub(crate) fn check_views(i: &Instance) -> Vec<CheckView> {
    let mut views = Vec::new();
    match &i.source {
        Source::Consul(c) => {
            views.extend(c.checks.iter().map(|check| CheckView {
                check_id: check.id.clone(),
                name: check.name.clone(),
                status: check.status,
                notes: check.notes.clone(),
                output: check.output.clone(),
                service_id: i.id.clone(),
                service_name: consul_name(i),
                service_tags: i.tags.clone(),
                check_type: check.kind.type_name().to_owned(),
                interval: (!matches!(check.kind, CheckKind::Ttl { .. })).then_some(check.interval),
                timeout: (!matches!(check.kind, CheckKind::Ttl { .. })).then_some(check.timeout),
                create_index: i.create_index,
                modify_index: i.modify_index,
            }));
            match i.override_status {
                Some(EurekaStatus::Up | EurekaStatus::OutOfService) | None => {}
                Some(other) => views.push(synthetic_check(
                    i,
                    format!("_eureka_status_override:{}", i.id),
                    "Eureka status override",
                    CheckStatus::Critical,
                    String::new(),
                    format!(
                        "Status overridden to {} through the Eureka API",
                        other.as_str()
                    ),
                    "",
                )),
            }
        }
        Source::Eureka(_) | Source::Platform(_) => {
            let status = effective_status(i);
            let (id, name, what) = match i.source {
                Source::Eureka(_) => (format!("eureka:{}", i.id), "Eureka lease status", "Eureka"),
                _ => (
                    format!("tideway:{}", i.id),
                    "Tideway instance status",
                    "Tideway",
                ),
            };
            let check_status = if status == EurekaStatus::Up {
                CheckStatus::Passing
            } else {
                CheckStatus::Critical
            };
            views.push(synthetic_check(
                i,
                id,
                name,
                check_status,
                String::new(),
                format!("{what} status {}", status.as_str()),
                "",
            ));
        }
    }
    if i.maintenance.is_some() || effective_status(i) == EurekaStatus::OutOfService {
        let reason = i
            .maintenance
            .clone()
            .unwrap_or_else(|| "Instance is OUT_OF_SERVICE in Eureka".to_owned());
        views.push(synthetic_check(
            i,
            format!("_service_maintenance:{}", i.id),
            "Service Maintenance Mode",
            CheckStatus::Critical,
            reason,
            String::new(),
            "maintenance",
        ));
    }
    views
}

fn validate_meta(meta: &BTreeMap<String, String>) -> Result<(), Error> {
    if meta.len() > META_MAX_PAIRS {
        return Err(Error::Invalid(format!(
            "Invalid Service Meta: Node metadata cannot contain more than {META_MAX_PAIRS} key/value pairs"
        )));
    }
    for (k, v) in meta {
        if k.is_empty() {
            return Err(Error::Invalid(
                "Invalid Service Meta: Key cannot be blank".into(),
            ));
        }
        if k.len() > META_KEY_MAX {
            return Err(Error::Invalid(format!(
                "Invalid Service Meta: Key is too long (limit: {META_KEY_MAX} characters)"
            )));
        }
        if k.starts_with("consul-") {
            return Err(Error::Invalid(
                "Invalid Service Meta: Key prefix 'consul-' is reserved for internal use".into(),
            ));
        }
        if v.len() > META_VALUE_MAX {
            return Err(Error::Invalid(format!(
                "Invalid Service Meta: Value is too long (limit: {META_VALUE_MAX} characters)"
            )));
        }
    }
    Ok(())
}

fn new_check(
    def: &CheckDefinition,
    id: String,
    service_name: &str,
    previous: Option<&Check>,
    now: Millis,
) -> Check {
    let interval = def
        .interval
        .unwrap_or(Duration::from_secs(10))
        .max(MIN_INTERVAL);
    let timeout = def.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let carried = previous.filter(|p| p.kind == def.kind);
    let status = carried
        .map(|p| p.status)
        .or(def.status)
        .unwrap_or(CheckStatus::Critical);
    let ttl_deadline = match def.kind {
        CheckKind::Ttl { ttl } => Some(
            carried
                .and_then(|p| p.ttl_deadline)
                .unwrap_or_else(|| now.saturating_add(duration_millis(ttl))),
        ),
        _ => None,
    };
    Check {
        id,
        name: def
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("Service '{service_name}' check")),
        notes: def.notes.clone(),
        kind: def.kind.clone(),
        interval,
        timeout,
        deregister_after: def.deregister_critical_after,
        status,
        output: carried.map(|p| p.output.clone()).unwrap_or_default(),
        critical_since: match carried {
            Some(p) => p.critical_since,
            None => (status == CheckStatus::Critical).then_some(now),
        },
        ttl_deadline,
        next_run: carried.map_or(now, |p| p.next_run),
        running: carried.is_some_and(|p| p.running),
    }
}

fn unknown_check(id: &str) -> Error {
    Error::NotFound(format!(
        "Unknown check ID \"{id}\". Ensure that the check ID is passed, not the check name."
    ))
}

/// Finds the Consul service holding a check.
fn find_check<'a>(state: &'a State, check_id: &str) -> Option<(&'a Instance, usize)> {
    state.instances.values().find_map(|i| match &i.source {
        Source::Consul(c) => c
            .checks
            .iter()
            .position(|check| check.id == check_id)
            .map(|pos| (i, pos)),
        _ => None,
    })
}

fn set_status(check: &mut Check, status: CheckStatus, now: Millis) -> bool {
    let changed = check.status != status;
    if changed {
        check.status = status;
        check.critical_since = (status == CheckStatus::Critical).then_some(now);
    }
    changed
}

/// Marks TTL checks whose TTL ran out as critical; returns their IDs.
pub(crate) fn expire_ttl_checks(state: &mut State, now: Millis) -> Vec<String> {
    let mut expired = Vec::new();
    let mut updates = Vec::new();
    for i in state.instances.values() {
        let Source::Consul(c) = &i.source else {
            continue;
        };
        let due: Vec<usize> = c
            .checks
            .iter()
            .enumerate()
            .filter(|(_, check)| {
                check.ttl_deadline.is_some_and(|d| now > d) && check.status != CheckStatus::Critical
            })
            .map(|(n, _)| n)
            .collect();
        if due.is_empty() {
            continue;
        }
        let mut updated = i.clone();
        if let Source::Consul(c) = &mut updated.source {
            for n in due {
                if let Some(check) = c.checks.get_mut(n) {
                    set_status(check, CheckStatus::Critical, now);
                    check.output = "TTL expired".to_owned();
                    expired.push(check.id.clone());
                }
            }
        }
        updates.push(updated);
    }
    for updated in updates {
        state.upsert(updated, ChangeAction::Modified, now);
    }
    expired
}

/// Removes Consul services with a check critical for longer than its
/// `DeregisterCriticalServiceAfter`; returns their IDs.
pub(crate) fn reap_critical(state: &mut State, now: Millis) -> Vec<String> {
    let doomed: Vec<String> =
        state
            .instances
            .values()
            .filter(|i| match &i.source {
                Source::Consul(c) => c.checks.iter().any(|check| {
                    match (check.deregister_after, check.critical_since) {
                        (Some(after), Some(since)) => {
                            now.saturating_sub(since) > duration_millis(after)
                        }
                        _ => false,
                    }
                }),
                _ => false,
            })
            .map(|i| i.id.clone())
            .collect();
    for id in &doomed {
        tracing::info!(service_id = %id, "RegistryCriticalServiceReaped");
        state.remove(id, now);
    }
    doomed
}

impl Registry {
    /// `PUT /v1/agent/service/register`.
    pub fn consul_register(
        &self,
        def: ServiceDefinition,
        replace_existing_checks: bool,
    ) -> Result<(), Error> {
        if def.name.trim().is_empty() {
            return Err(Error::Invalid("Missing service name".into()));
        }
        if matches!(def.address.as_str(), "0.0.0.0" | "::" | "[::]") {
            return Err(Error::Invalid("Invalid service address".into()));
        }
        validate_meta(&def.meta)?;
        let id = def
            .id
            .clone()
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| def.name.clone());
        let config = self.config.clone();
        self.write(|state, now| {
            let existing = state.instances.get(&id);
            if existing.is_some_and(|i| i.origin() == Origin::Platform) {
                return Err(Error::PlatformOwned(id.clone()));
            }
            let previous: Vec<Check> = match existing.map(|i| &i.source) {
                Some(Source::Consul(c)) => c.checks.clone(),
                _ => Vec::new(),
            };
            let many = def.checks.len() > 1;
            let mut checks: Vec<Check> = Vec::new();
            for (n, check_def) in def.checks.iter().enumerate() {
                let check_id = check_def
                    .id
                    .clone()
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| {
                        if many {
                            format!("service:{id}:{}", n + 1)
                        } else {
                            format!("service:{id}")
                        }
                    });
                let prev = previous.iter().find(|p| p.id == check_id);
                checks.retain(|c: &Check| c.id != check_id);
                checks.push(new_check(check_def, check_id, &def.name, prev, now));
            }
            if !replace_existing_checks {
                for p in previous {
                    if !checks.iter().any(|c| c.id == p.id) {
                        checks.push(p);
                    }
                }
            }
            if existing.is_some_and(|i| i.origin() == Origin::Eureka) {
                state.lease.on_cancel(&config);
            }
            let instance = Instance {
                id: id.clone(),
                service: def.name.clone(),
                address: def.address.clone(),
                port: def.port,
                metadata: def.meta.clone(),
                tags: def.tags.clone(),
                override_status: existing.and_then(|i| i.override_status),
                maintenance: existing.and_then(|i| i.maintenance.clone()),
                create_index: 0,
                modify_index: 0,
                registered_at: existing.map_or(now, |i| i.registered_at),
                updated_at: now,
                source: Source::Consul(ConsulRecord {
                    checks,
                    weights: def.weights.unwrap_or_default(),
                    enable_tag_override: def.enable_tag_override,
                    tagged_addresses: def.tagged_addresses.clone(),
                    kind: def.kind.clone(),
                }),
            };
            let action = if existing.is_some() {
                ChangeAction::Modified
            } else {
                ChangeAction::Added
            };
            tracing::debug!(service_id = %id, service = %def.name, "RegistryConsulRegistered");
            state.upsert(instance, action, now);
            Ok(())
        })
    }

    /// `PUT /v1/agent/service/deregister/:id`.
    pub fn consul_deregister(&self, id: &str) -> Result<(), Error> {
        let config = self.config.clone();
        self.write(|state, now| {
            let Some(instance) = state.instances.get(id) else {
                return Err(Error::NotFound(format!(
                    "Unknown service ID \"{id}\". Ensure that the service ID is passed, not the service name."
                )));
            };
            match instance.origin() {
                Origin::Platform => return Err(Error::PlatformOwned(id.to_owned())),
                Origin::Eureka => state.lease.on_cancel(&config),
                Origin::Consul => {}
            }
            state.remove(id, now);
            Ok(())
        })
    }

    /// `PUT /v1/agent/service/maintenance/:id?enable=&reason=`.
    pub fn consul_maintenance(
        &self,
        id: &str,
        enable: bool,
        reason: Option<String>,
    ) -> Result<(), Error> {
        self.write(|state, now| {
            let Some(instance) = state.instances.get(id) else {
                return Err(Error::NotFound(format!(
                    "No service registered with ID \"{id}\""
                )));
            };
            let wanted = enable.then(|| {
                reason
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| MAINTENANCE_DEFAULT_REASON.to_owned())
            });
            if instance.maintenance != wanted {
                let mut updated = instance.clone();
                updated.maintenance = wanted;
                updated.updated_at = now;
                state.upsert(updated, ChangeAction::Modified, now);
            }
            Ok(())
        })
    }

    /// `PUT /v1/agent/check/{pass,warn,fail}/:id?note=` and `/v1/agent/check/update/:id`:
    /// sets a TTL check's status and restarts its TTL.
    pub fn consul_ttl_update(
        &self,
        check_id: &str,
        status: CheckStatus,
        output: String,
    ) -> Result<(), Error> {
        self.write(|state, now| {
            let Some((instance, pos)) = find_check(state, check_id) else {
                return Err(unknown_check(check_id));
            };
            let mut updated = instance.clone();
            let Source::Consul(c) = &mut updated.source else {
                return Err(unknown_check(check_id));
            };
            let Some(check) = c.checks.get_mut(pos) else {
                return Err(unknown_check(check_id));
            };
            let CheckKind::Ttl { ttl } = check.kind else {
                return Err(Error::NotTtlCheck(check_id.to_owned()));
            };
            check.ttl_deadline = Some(now.saturating_add(duration_millis(ttl)));
            check.output = output;
            if set_status(check, status, now) {
                updated.updated_at = now;
                state.upsert(updated, ChangeAction::Modified, now);
            } else {
                state.instances.insert(updated.id.clone(), updated);
            }
            Ok(())
        })
    }

    /// `PUT /v1/agent/check/register` for a check attached to a Consul service.
    pub fn consul_check_register(&self, def: CheckDefinition) -> Result<(), Error> {
        let Some(service_id) = def.service_id.clone().filter(|s| !s.is_empty()) else {
            return Err(Error::Invalid(
                "ServiceID is required: the built-in registry has no node-level checks".into(),
            ));
        };
        let Some(check_id) = def
            .id
            .clone()
            .or_else(|| def.name.clone())
            .filter(|s| !s.is_empty())
        else {
            return Err(Error::Invalid("Missing check name".into()));
        };
        self.write(|state, now| {
            let Some(instance) = state.instances.get(&service_id) else {
                return Err(Error::Invalid(format!(
                    "ServiceID \"{service_id}\" does not exist"
                )));
            };
            let mut updated = instance.clone();
            let Source::Consul(c) = &mut updated.source else {
                return Err(Error::Invalid(format!(
                    "ServiceID \"{service_id}\" is not a Consul-registered service"
                )));
            };
            let previous = c.checks.iter().find(|p| p.id == check_id).cloned();
            let check = new_check(
                &def,
                check_id.clone(),
                &updated.service,
                previous.as_ref(),
                now,
            );
            c.checks.retain(|p| p.id != check_id);
            c.checks.push(check);
            updated.updated_at = now;
            state.upsert(updated, ChangeAction::Modified, now);
            Ok(())
        })
    }

    /// `PUT /v1/agent/check/deregister/:id`.
    pub fn consul_check_deregister(&self, check_id: &str) -> Result<(), Error> {
        self.write(|state, now| {
            let Some((instance, pos)) = find_check(state, check_id) else {
                return Err(unknown_check(check_id));
            };
            let mut updated = instance.clone();
            if let Source::Consul(c) = &mut updated.source {
                c.checks.remove(pos);
            }
            updated.updated_at = now;
            state.upsert(updated, ChangeAction::Modified, now);
            Ok(())
        })
    }

    /// Claims the HTTP and TCP checks due now, scheduling their next run.
    pub(crate) fn due_checks(&self) -> Vec<CheckJob> {
        let now = self.clock.now_millis();
        let mut state = self.lock();
        let mut jobs = Vec::new();
        for instance in state.instances.values_mut() {
            let Source::Consul(c) = &mut instance.source else {
                continue;
            };
            for check in &mut c.checks {
                if matches!(check.kind, CheckKind::Ttl { .. })
                    || check.running
                    || check.next_run > now
                {
                    continue;
                }
                check.running = true;
                check.next_run = now.saturating_add(duration_millis(check.interval));
                jobs.push(CheckJob {
                    service_id: instance.id.clone(),
                    check_id: check.id.clone(),
                    kind: check.kind.clone(),
                    timeout: check.timeout,
                });
            }
        }
        jobs
    }

    /// Records a check result from the checker. Only a status change moves the index
    /// (Consul likewise suppresses output-only updates).
    pub(crate) fn record_check_result(
        &self,
        service_id: &str,
        check_id: &str,
        result: CheckResult,
    ) {
        self.write(|state, now| {
            let Some(instance) = state.instances.get(service_id) else {
                return;
            };
            let mut updated = instance.clone();
            let Source::Consul(c) = &mut updated.source else {
                return;
            };
            let Some(check) = c.checks.iter_mut().find(|c| c.id == check_id) else {
                return;
            };
            check.running = false;
            check.output = result.output;
            if set_status(check, result.status, now) {
                tracing::info!(
                    service_id,
                    check_id,
                    status = result.status.as_str(),
                    "RegistryCheckStatusChanged"
                );
                updated.updated_at = now;
                state.upsert(updated, ChangeAction::Modified, now);
            } else {
                state.instances.insert(updated.id.clone(), updated);
            }
        });
    }

    /// `GET /v1/catalog/services`: (index, name → tags).
    pub fn consul_catalog_services(&self) -> (u64, BTreeMap<String, Vec<String>>) {
        let state = self.lock();
        let mut groups: BTreeMap<String, (Option<String>, BTreeSet<String>)> = BTreeMap::new();
        for i in state.instances.values() {
            let entry = groups.entry(i.key()).or_default();
            if matches!(i.source, Source::Consul(_)) && entry.0.is_none() {
                entry.0 = Some(i.service.clone());
            }
            entry.1.extend(i.tags.iter().cloned());
        }
        let services = groups
            .into_iter()
            .map(|(key, (name, tags))| (name.unwrap_or(key), tags.into_iter().collect()))
            .collect();
        (state.catalog_index.max(1), services)
    }

    /// `GET /v1/health/service/:name` and `/v1/catalog/service/:name`: (index, entries).
    pub fn consul_service_entries(&self, name: &str) -> (u64, Vec<ConsulEntry>) {
        let state = self.lock();
        let key = service_key(name);
        let entries = state
            .instances
            .values()
            .filter(|i| i.key() == key)
            .map(|i| ConsulEntry {
                service: service_view(i),
                checks: check_views(i),
            })
            .collect();
        (state.service_index_of(&key), entries)
    }

    /// Index of one service, for blocking queries.
    pub fn consul_service_index(&self, name: &str) -> u64 {
        self.lock().service_index_of(&service_key(name))
    }

    /// Index of the service list, for blocking queries.
    pub fn consul_catalog_index(&self) -> u64 {
        self.lock().catalog_index.max(1)
    }

    /// `GET /v1/agent/services`: every instance, whatever its origin.
    pub fn consul_agent_services(&self) -> Vec<ConsulServiceView> {
        self.lock().instances.values().map(service_view).collect()
    }

    /// `GET /v1/agent/service/:id`.
    pub fn consul_agent_service(&self, id: &str) -> Option<ConsulServiceView> {
        self.lock().instances.get(id).map(service_view)
    }

    /// `GET /v1/agent/checks`: every service check (synthetic ones included).
    pub fn consul_agent_checks(&self) -> Vec<CheckView> {
        self.lock()
            .instances
            .values()
            .flat_map(check_views)
            .collect()
    }
}
