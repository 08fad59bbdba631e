//! The Eureka side of the model: registration with Eureka's status rules, renewals, status
//! overrides, metadata, and the applications / delta views with their reconcile hash.

use std::collections::BTreeMap;

use super::{service_key, Instance, Origin, Registry, Source, State};
use crate::clock::Millis;
use crate::error::Error;
use crate::model::InstanceStatus;

/// An Eureka instance status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EurekaStatus {
    /// `UP`
    Up,
    /// `DOWN`
    Down,
    /// `STARTING`
    Starting,
    /// `OUT_OF_SERVICE`
    OutOfService,
    /// `UNKNOWN`
    Unknown,
}

impl EurekaStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "UP",
            Self::Down => "DOWN",
            Self::Starting => "STARTING",
            Self::OutOfService => "OUT_OF_SERVICE",
            Self::Unknown => "UNKNOWN",
        }
    }

    /// Parses a wire name, case-insensitively (Eureka's `InstanceStatus.toEnum`); `None`
    /// for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "UP" => Some(Self::Up),
            "DOWN" => Some(Self::Down),
            "STARTING" => Some(Self::Starting),
            "OUT_OF_SERVICE" => Some(Self::OutOfService),
            "UNKNOWN" => Some(Self::Unknown),
            _ => None,
        }
    }
}

impl From<InstanceStatus> for EurekaStatus {
    fn from(s: InstanceStatus) -> Self {
        match s {
            InstanceStatus::Up => Self::Up,
            InstanceStatus::OutOfService => Self::OutOfService,
            InstanceStatus::Down => Self::Down,
            InstanceStatus::Starting => Self::Starting,
        }
    }
}

/// Eureka's `actionType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeAction {
    /// `ADDED`
    Added,
    /// `MODIFIED`
    Modified,
    /// `DELETED`
    Deleted,
}

impl ChangeAction {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// Eureka `dataCenterInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataCenter {
    /// The Jackson `@class` (XML `class` attribute).
    pub class: String,
    /// `MyOwn`, `Amazon` or `Netflix`.
    pub name: String,
    /// Amazon metadata (`instance-id`, `availability-zone`, …).
    pub metadata: BTreeMap<String, String>,
}

/// The default `dataCenterInfo` class.
pub const DEFAULT_DATA_CENTER_CLASS: &str =
    "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo";

impl Default for DataCenter {
    fn default() -> Self {
        Self {
            class: DEFAULT_DATA_CENTER_CLASS.to_owned(),
            name: "MyOwn".to_owned(),
            metadata: BTreeMap::new(),
        }
    }
}

/// A decoded Eureka registration (`POST apps/{APP}` body), before validation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EurekaRegistration {
    /// `instanceId` (falls back to `hostName` when empty).
    pub instance_id: String,
    /// `app`.
    pub app: String,
    /// `hostName`.
    pub host_name: String,
    /// `ipAddr`.
    pub ip_addr: String,
    /// `status` (`UP` when absent).
    pub status: Option<EurekaStatus>,
    /// `overriddenStatus` / `overriddenstatus`.
    pub overridden_status: Option<EurekaStatus>,
    /// `port.$`.
    pub port: u16,
    /// `port.@enabled`.
    pub port_enabled: bool,
    /// `securePort.$`.
    pub secure_port: u16,
    /// `securePort.@enabled`.
    pub secure_port_enabled: bool,
    /// `countryId`.
    pub country_id: u64,
    /// `dataCenterInfo`, if present.
    pub data_center: Option<DataCenter>,
    /// `leaseInfo.renewalIntervalInSecs` (0 when absent).
    pub renewal_interval_secs: u64,
    /// `leaseInfo.durationInSecs` (0 when absent).
    pub duration_secs: u64,
    /// `metadata` without the Jackson `@class` marker.
    pub metadata: BTreeMap<String, String>,
    /// `homePageUrl`.
    pub home_page_url: String,
    /// `statusPageUrl`.
    pub status_page_url: String,
    /// `healthCheckUrl`.
    pub health_check_url: String,
    /// `secureHealthCheckUrl`.
    pub secure_health_check_url: String,
    /// `vipAddress`.
    pub vip_address: String,
    /// `secureVipAddress`.
    pub secure_vip_address: String,
    /// `isCoordinatingDiscoveryServer`.
    pub coordinating: bool,
    /// `lastDirtyTimestamp` (0 when absent).
    pub last_dirty: Millis,
    /// `appGroupName`.
    pub app_group_name: String,
    /// `asgName`.
    pub asg_name: String,
    /// `sid`.
    pub sid: String,
}

/// Eureka-only state of an Eureka-registered instance.
#[derive(Debug, Clone)]
pub(crate) struct EurekaRecord {
    pub host_name: String,
    /// The status after Eureka's override rules.
    pub status: EurekaStatus,
    pub port_enabled: bool,
    pub secure_port: u16,
    pub secure_port_enabled: bool,
    pub country_id: u64,
    pub data_center: DataCenter,
    pub renewal_interval_secs: u64,
    pub duration_secs: u64,
    pub last_renewal: Millis,
    pub service_up_at: Millis,
    pub last_dirty: Millis,
    pub home_page_url: String,
    pub status_page_url: String,
    pub health_check_url: String,
    pub secure_health_check_url: String,
    pub vip_address: String,
    pub secure_vip_address: String,
    pub coordinating: bool,
    pub app_group_name: String,
    pub asg_name: String,
    pub sid: String,
}

/// An instance as the Eureka API renders it; the fields are Eureka's `InstanceInfo`
/// fields of the same (camel-cased) names.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EurekaInstanceView {
    pub instance_id: String,
    pub host_name: String,
    pub app: String,
    pub ip_addr: String,
    pub status: EurekaStatus,
    pub overridden_status: EurekaStatus,
    pub port: u16,
    pub port_enabled: bool,
    pub secure_port: u16,
    pub secure_port_enabled: bool,
    pub country_id: u64,
    pub data_center: DataCenter,
    pub renewal_interval_secs: u64,
    pub duration_secs: u64,
    pub registration_timestamp: Millis,
    pub last_renewal_timestamp: Millis,
    pub eviction_timestamp: Millis,
    pub service_up_timestamp: Millis,
    pub metadata: BTreeMap<String, String>,
    pub home_page_url: String,
    pub status_page_url: String,
    pub health_check_url: String,
    pub secure_health_check_url: String,
    pub vip_address: String,
    pub secure_vip_address: String,
    pub coordinating: bool,
    pub last_updated_timestamp: Millis,
    pub last_dirty_timestamp: Millis,
    pub action_type: ChangeAction,
    pub app_group_name: Option<String>,
    pub asg_name: Option<String>,
    pub sid: Option<String>,
}

/// One application: a name and at least one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EurekaApp {
    /// Upper-cased app name.
    pub name: String,
    /// Its instances.
    pub instances: Vec<EurekaInstanceView>,
}

/// An applications document (full, delta or VIP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EurekaApps {
    /// `versions__delta`.
    pub version: u64,
    /// `apps__hashcode` of the whole registry.
    pub hashcode: String,
    /// Applications with at least one instance each.
    pub apps: Vec<EurekaApp>,
}

/// Outcome of a renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// 200.
    Renewed,
    /// 404: unknown, status `UNKNOWN`, or the client's copy is newer; the client re-registers.
    NotFound,
}

/// The status Eureka clients see, after overrides and Consul maintenance.
pub(crate) fn effective_status(i: &Instance) -> EurekaStatus {
    if i.maintenance.is_some() {
        return EurekaStatus::OutOfService;
    }
    match &i.source {
        Source::Eureka(r) => r.status,
        Source::Consul(c) => i.override_status.unwrap_or_else(|| c.eureka_status()),
        Source::Platform(s) => i.override_status.unwrap_or((*s).into()),
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

pub(crate) fn view(i: &Instance, node_address: &str, action: ChangeAction) -> EurekaInstanceView {
    let status = effective_status(i);
    let overridden_status = i.override_status.unwrap_or(EurekaStatus::Unknown);
    let app = i.service.to_uppercase();
    match &i.source {
        Source::Eureka(r) => EurekaInstanceView {
            instance_id: i.id.clone(),
            host_name: r.host_name.clone(),
            app,
            ip_addr: i.address.clone(),
            status,
            overridden_status,
            port: i.port,
            port_enabled: r.port_enabled,
            secure_port: r.secure_port,
            secure_port_enabled: r.secure_port_enabled,
            country_id: r.country_id,
            data_center: r.data_center.clone(),
            renewal_interval_secs: r.renewal_interval_secs,
            duration_secs: r.duration_secs,
            registration_timestamp: i.registered_at,
            last_renewal_timestamp: r.last_renewal,
            eviction_timestamp: 0,
            service_up_timestamp: r.service_up_at,
            metadata: i.metadata.clone(),
            home_page_url: r.home_page_url.clone(),
            status_page_url: r.status_page_url.clone(),
            health_check_url: r.health_check_url.clone(),
            secure_health_check_url: r.secure_health_check_url.clone(),
            vip_address: r.vip_address.clone(),
            secure_vip_address: r.secure_vip_address.clone(),
            coordinating: r.coordinating,
            last_updated_timestamp: i.updated_at,
            last_dirty_timestamp: r.last_dirty,
            action_type: action,
            app_group_name: non_empty(&r.app_group_name),
            asg_name: non_empty(&r.asg_name),
            sid: non_empty(&r.sid).filter(|s| s != "na" && s != "unknown"),
        },
        Source::Consul(_) | Source::Platform(_) => {
            let host = if i.address.is_empty() {
                node_address.to_owned()
            } else {
                i.address.clone()
            };
            let vip = service_key(&i.service);
            EurekaInstanceView {
                instance_id: i.id.clone(),
                host_name: host.clone(),
                app,
                ip_addr: host.clone(),
                status,
                overridden_status,
                port: i.port,
                port_enabled: true,
                secure_port: 443,
                secure_port_enabled: false,
                country_id: 1,
                data_center: DataCenter::default(),
                renewal_interval_secs: 30,
                duration_secs: 90,
                registration_timestamp: i.registered_at,
                last_renewal_timestamp: i.updated_at,
                eviction_timestamp: 0,
                service_up_timestamp: i.registered_at,
                metadata: i.metadata.clone(),
                home_page_url: format!("http://{host}:{}/", i.port),
                status_page_url: String::new(),
                health_check_url: String::new(),
                secure_health_check_url: String::new(),
                vip_address: vip.clone(),
                secure_vip_address: vip,
                coordinating: false,
                last_updated_timestamp: i.updated_at,
                last_dirty_timestamp: i.updated_at,
                action_type: action,
                app_group_name: None,
                asg_name: None,
                sid: None,
            }
        }
    }
}

/// Eureka's `getReconcileHashCode`: `STATUS_count_` per status, statuses sorted by name.
pub fn reconcile_hash(statuses: impl IntoIterator<Item = EurekaStatus>) -> String {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for s in statuses {
        *counts.entry(s.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(status, count)| format!("{status}_{count}_"))
        .collect()
}

fn state_hash(state: &State) -> String {
    reconcile_hash(state.instances.values().map(effective_status))
}

fn group(views: impl IntoIterator<Item = EurekaInstanceView>) -> Vec<EurekaApp> {
    let mut apps: BTreeMap<String, Vec<EurekaInstanceView>> = BTreeMap::new();
    for v in views {
        apps.entry(v.app.clone()).or_default().push(v);
    }
    apps.into_iter()
        .map(|(name, instances)| EurekaApp { name, instances })
        .collect()
}

/// Eureka's rules for the status a (re-)registered instance gets: a reported DOWN,
/// STARTING or UNKNOWN is trusted; otherwise an override wins; otherwise an existing
/// lease's UP or OUT_OF_SERVICE is kept; otherwise the reported status.
fn ruled_status(
    reported: EurekaStatus,
    override_status: Option<EurekaStatus>,
    existing: Option<EurekaStatus>,
) -> EurekaStatus {
    if !matches!(reported, EurekaStatus::Up | EurekaStatus::OutOfService) {
        return reported;
    }
    if let Some(o) = override_status {
        return o;
    }
    if let Some(e) = existing.filter(|e| matches!(e, EurekaStatus::Up | EurekaStatus::OutOfService))
    {
        return e;
    }
    reported
}

impl EurekaRegistration {
    /// Checks the fields Eureka requires, with Eureka's messages (400 bodies).
    pub fn validate(&mut self, path_app: &str) -> Result<(), Error> {
        self.app = self.app.to_uppercase();
        if self.instance_id.is_empty() {
            self.instance_id = self.host_name.clone();
        }
        let path_app = path_app.to_uppercase();
        if self.instance_id.is_empty() {
            return Err(Error::Invalid("Missing instanceId".into()));
        }
        if self.host_name.is_empty() {
            return Err(Error::Invalid("Missing hostname".into()));
        }
        if self.ip_addr.is_empty() {
            return Err(Error::Invalid("Missing ip address".into()));
        }
        if self.app.is_empty() {
            return Err(Error::Invalid("Missing appName".into()));
        }
        if self.app != path_app {
            return Err(Error::Invalid(format!(
                "Mismatched appName, expecting {path_app} but was {}",
                self.app
            )));
        }
        match &self.data_center {
            None => return Err(Error::Invalid("Missing dataCenterInfo".into())),
            Some(dc) if dc.name.is_empty() => {
                return Err(Error::Invalid("Missing dataCenterInfo Name".into()))
            }
            Some(_) => {}
        }
        Ok(())
    }
}

impl Registry {
    fn find_in_app<'a>(state: &'a State, app: &str, id: &str) -> Option<&'a Instance> {
        state
            .instances
            .get(id)
            .filter(|i| i.key() == service_key(app))
    }

    /// `POST apps/{APP}`: registers (or re-registers) an instance; the lease starts now.
    pub fn eureka_register(
        &self,
        path_app: &str,
        mut reg: EurekaRegistration,
    ) -> Result<(), Error> {
        reg.validate(path_app)?;
        let config = self.config.clone();
        self.write(|state, now| {
            let existing = state.instances.get(&reg.instance_id);
            if existing.is_some_and(|i| i.origin() == Origin::Platform) {
                return Err(Error::PlatformOwned(reg.instance_id.clone()));
            }
            let existing_eureka = existing.and_then(|i| match &i.source {
                Source::Eureka(r) => Some((i, r)),
                _ => None,
            });
            // Eureka keeps the stored InstanceInfo when its lastDirtyTimestamp is newer.
            let keep_existing = existing_eureka
                .is_some_and(|(_, r)| reg.last_dirty != 0 && r.last_dirty > reg.last_dirty);
            let mut override_status = existing.and_then(|i| i.override_status);
            if override_status.is_none() {
                override_status = reg
                    .overridden_status
                    .filter(|s| *s != EurekaStatus::Unknown);
            }
            let reported = reg.status.unwrap_or(EurekaStatus::Up);
            let mut instance = match (keep_existing, existing_eureka) {
                (true, Some((old, _))) => old.clone(),
                _ => Instance {
                    id: reg.instance_id.clone(),
                    service: reg.app.clone(),
                    address: reg.ip_addr.clone(),
                    port: reg.port,
                    metadata: reg.metadata.clone(),
                    tags: existing.map(|i| i.tags.clone()).unwrap_or_default(),
                    override_status: None,
                    maintenance: None,
                    create_index: 0,
                    modify_index: 0,
                    registered_at: now,
                    updated_at: now,
                    source: Source::Eureka(Box::new(EurekaRecord {
                        host_name: reg.host_name.clone(),
                        status: reported,
                        port_enabled: reg.port_enabled,
                        secure_port: reg.secure_port,
                        secure_port_enabled: reg.secure_port_enabled,
                        country_id: reg.country_id,
                        data_center: reg.data_center.clone().unwrap_or_default(),
                        renewal_interval_secs: reg.renewal_interval_secs,
                        duration_secs: reg.duration_secs,
                        last_renewal: now,
                        service_up_at: 0,
                        last_dirty: if reg.last_dirty == 0 { now } else { reg.last_dirty },
                        home_page_url: reg.home_page_url.clone(),
                        status_page_url: reg.status_page_url.clone(),
                        health_check_url: reg.health_check_url.clone(),
                        secure_health_check_url: reg.secure_health_check_url.clone(),
                        vip_address: reg.vip_address.clone(),
                        secure_vip_address: reg.secure_vip_address.clone(),
                        coordinating: reg.coordinating,
                        app_group_name: reg.app_group_name.clone(),
                        asg_name: reg.asg_name.clone(),
                        sid: reg.sid.clone(),
                    })),
                },
            };
            instance.maintenance = existing.and_then(|i| i.maintenance.clone());
            instance.override_status = override_status;
            instance.registered_at = now;
            instance.updated_at = now;
            let old_status = existing_eureka.map(|(_, r)| r.status);
            let old_up_at = existing_eureka.map(|(_, r)| r.service_up_at).unwrap_or(0);
            if let Source::Eureka(r) = &mut instance.source {
                let reported = if keep_existing { r.status } else { reported };
                r.status = ruled_status(reported, override_status, old_status);
                r.last_renewal = now;
                r.service_up_at = if old_up_at != 0 {
                    old_up_at
                } else if r.status == EurekaStatus::Up {
                    now
                } else {
                    0
                };
            }
            if existing_eureka.is_none() {
                state.lease.on_new_lease(&config);
            }
            tracing::debug!(instance_id = %instance.id, app = %instance.service, "RegistryEurekaRegistered");
            state.upsert(instance, ChangeAction::Added, now);
            Ok(())
        })
    }

    /// `PUT apps/{APP}/{ID}`: renews a lease. `client_last_dirty` is the client's
    /// `lastDirtyTimestamp`; when it is newer than ours the answer is 404 so the client
    /// re-registers.
    pub fn eureka_renew(&self, app: &str, id: &str, client_last_dirty: Option<Millis>) -> Renewal {
        self.write(|state, now| {
            let Some(instance) = Self::find_in_app(state, app, id) else {
                return Renewal::NotFound;
            };
            let Source::Eureka(record) = &instance.source else {
                // Consul and platform instances have no lease; nothing to renew.
                return Renewal::Renewed;
            };
            let ruled = ruled_status(record.status, instance.override_status, Some(record.status));
            if ruled == EurekaStatus::Unknown {
                return Renewal::NotFound;
            }
            let server_dirty = record.last_dirty;
            let mut updated = instance.clone();
            let status_changed = ruled != record.status;
            if let Source::Eureka(r) = &mut updated.source {
                r.last_renewal = now;
                r.status = ruled;
            }
            state.lease.record_renewal(now);
            if status_changed {
                updated.updated_at = now;
                state.upsert(updated, ChangeAction::Modified, now);
            } else {
                state.instances.insert(updated.id.clone(), updated);
            }
            match client_last_dirty {
                Some(client) if client > server_dirty => Renewal::NotFound,
                _ => Renewal::Renewed,
            }
        })
    }

    /// `DELETE apps/{APP}/{ID}`.
    pub fn eureka_cancel(&self, app: &str, id: &str) -> Result<(), Error> {
        let config = self.config.clone();
        self.write(|state, now| {
            let Some(instance) = Self::find_in_app(state, app, id) else {
                return Err(Error::NotFound(format!("instance {id} not found in {app}")));
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

    fn eureka_modify(
        &self,
        app: &str,
        id: &str,
        f: impl FnOnce(&mut Instance, Millis),
    ) -> Result<(), Error> {
        self.write(|state, now| {
            let Some(instance) = Self::find_in_app(state, app, id) else {
                return Err(Error::NotFound(format!("instance {id} not found in {app}")));
            };
            let mut updated = instance.clone();
            f(&mut updated, now);
            updated.updated_at = now;
            state.upsert(updated, ChangeAction::Modified, now);
            Ok(())
        })
    }

    /// `PUT apps/{APP}/{ID}/status?value=`: records a status override.
    pub fn eureka_status_override(
        &self,
        app: &str,
        id: &str,
        status: EurekaStatus,
        client_last_dirty: Option<Millis>,
    ) -> Result<(), Error> {
        self.eureka_modify(app, id, |i, _| {
            i.override_status = Some(status);
            if let Source::Eureka(r) = &mut i.source {
                r.status = status;
                if status == EurekaStatus::Up && r.service_up_at == 0 {
                    r.service_up_at = i.updated_at;
                }
                if let Some(d) = client_last_dirty.filter(|d| *d > r.last_dirty) {
                    r.last_dirty = d;
                }
            }
        })
    }

    /// `DELETE apps/{APP}/{ID}/status[?value=]`: removes the override; an Eureka instance
    /// falls back to `value`, or `UNKNOWN` (its next renewal then gets 404 and the client
    /// re-registers).
    pub fn eureka_delete_override(
        &self,
        app: &str,
        id: &str,
        value: Option<EurekaStatus>,
        client_last_dirty: Option<Millis>,
    ) -> Result<(), Error> {
        self.eureka_modify(app, id, |i, _| {
            i.override_status = None;
            if let Source::Eureka(r) = &mut i.source {
                r.status = value.unwrap_or(EurekaStatus::Unknown);
                if let Some(d) = client_last_dirty.filter(|d| *d > r.last_dirty) {
                    r.last_dirty = d;
                }
            }
        })
    }

    /// `PUT apps/{APP}/{ID}/metadata?k=v`: merges into the metadata.
    pub fn eureka_update_metadata(
        &self,
        app: &str,
        id: &str,
        pairs: Vec<(String, String)>,
    ) -> Result<(), Error> {
        self.eureka_modify(app, id, |i, now| {
            i.metadata.extend(pairs);
            if let Source::Eureka(r) = &mut i.source {
                r.last_dirty = now;
            }
        })
    }

    /// `GET apps`: every application with its instances; version 1 as Eureka sends.
    pub fn eureka_apps(&self) -> EurekaApps {
        let state = self.lock();
        let views = state
            .instances
            .values()
            .map(|i| view(i, &self.config.node_address, ChangeAction::Added));
        EurekaApps {
            version: 1,
            hashcode: state_hash(&state),
            apps: group(views),
        }
    }

    /// `GET apps/delta`: instances changed within the delta retention, each once with its
    /// latest action; the hash is the full registry's, the version the registry index.
    pub fn eureka_delta(&self) -> EurekaApps {
        let now = self.clock.now_millis();
        let mut state = self.lock();
        state.prune_changes(now, self.config.delta_retention);
        let mut latest: BTreeMap<&str, ChangeAction> = BTreeMap::new();
        let mut snapshots: BTreeMap<&str, &Instance> = BTreeMap::new();
        for change in &state.changes {
            latest.insert(&change.snapshot.id, change.action);
            snapshots.insert(&change.snapshot.id, &change.snapshot);
        }
        let views: Vec<EurekaInstanceView> = latest
            .iter()
            .filter_map(|(id, action)| {
                let current = state.instances.get(*id);
                let instance = match action {
                    ChangeAction::Deleted => snapshots.get(id).copied(),
                    _ => current.or_else(|| snapshots.get(id).copied()),
                }?;
                let action = match (action, current) {
                    (ChangeAction::Deleted, _) | (_, Some(_)) => *action,
                    (_, None) => ChangeAction::Deleted,
                };
                Some(view(instance, &self.config.node_address, action))
            })
            .collect();
        EurekaApps {
            version: state.index,
            hashcode: state_hash(&state),
            apps: group(views),
        }
    }

    /// `GET apps/{APP}`: `None` when the app has no instances.
    pub fn eureka_app(&self, app: &str) -> Option<EurekaApp> {
        let state = self.lock();
        let key = service_key(app);
        let instances: Vec<_> = state
            .instances
            .values()
            .filter(|i| i.key() == key)
            .map(|i| view(i, &self.config.node_address, ChangeAction::Added))
            .collect();
        (!instances.is_empty()).then(|| EurekaApp {
            name: app.to_uppercase(),
            instances,
        })
    }

    /// `GET apps/{APP}/{ID}`, or `GET instances/{ID}` when `app` is `None`.
    pub fn eureka_instance(&self, app: Option<&str>, id: &str) -> Option<EurekaInstanceView> {
        let state = self.lock();
        let instance = match app {
            Some(app) => Self::find_in_app(&state, app, id),
            None => state.instances.get(id),
        }?;
        Some(view(
            instance,
            &self.config.node_address,
            ChangeAction::Added,
        ))
    }

    /// `GET vips/{vip}` (or `svips/{svip}` when `secure`): instances whose (comma-separated)
    /// VIP list contains `vip`, case-insensitively.
    pub fn eureka_vip(&self, vip: &str, secure: bool) -> EurekaApps {
        let state = self.lock();
        let wanted = vip.to_lowercase();
        let views = state
            .instances
            .values()
            .map(|i| view(i, &self.config.node_address, ChangeAction::Added))
            .filter(|v| {
                let list = if secure {
                    &v.secure_vip_address
                } else {
                    &v.vip_address
                };
                list.split(',').any(|x| x.trim().to_lowercase() == wanted)
            });
        EurekaApps {
            version: 1,
            hashcode: state_hash(&state),
            apps: group(views),
        }
    }
}
