//! A registry the bridge writes to or reads from ([`Remote`]), and how each
//! [`RegistryOp`] and heartbeat maps onto its protocol.
//!
//! | | Consul (agent API) | Eureka | Built-in |
//! |---|---|---|---|
//! | observe | `GET /v1/agent/services` + `/v1/agent/checks` | `GET apps/` | snapshot |
//! | register / update | `PUT …/service/register?replace-existing-checks=true` with a TTL check, then maintenance as desired | `POST apps/{APP}` (status UP, or OUT_OF_SERVICE plus an override while draining) | `put_platform` |
//! | take out | `PUT …/service/maintenance/:id?enable=true` | `PUT …/status?value=OUT_OF_SERVICE` | status `OutOfService` |
//! | put back | maintenance off, then a TTL pass | `DELETE …/status?value=UP` | status `Up` |
//! | deregister | `PUT …/service/deregister/:id` (404 is fine) | `DELETE apps/{APP}/{ID}` (404 is fine) | `remove_platform` |
//! | heartbeat | `PUT /v1/agent/check/pass/tideway-ttl:<id>`; unknown → re-register | `PUT apps/{APP}/{ID}`; 404 → re-register | none |
//!
//! **Consul health check: TTL.** Each Consul registration carries one TTL check
//! (`tideway-ttl:<id>`, TTL 90 s by default) that the connector passes every 30 s while
//! the platform reports the instance ready, with `DeregisterCriticalServiceAfter` (10 min)
//! as a dead-man switch. We chose TTL over an HTTP check against the health URL because
//! (1) the platform already probes readiness and only ready instances are desired, so the
//! TTL carries exactly the platform's verdict; (2) a Consul agent often cannot reach
//! instance addresses (another VPC, an ENI behind NAT) while the bridge always reaches
//! the agent; (3) the Eureka side already depends on the bridge renewing leases, so both
//! registries get the same liveness semantics (the bridge stops → entries expire after
//! the TTL / lease); and (4) the deregister-after timer removes entries left behind on an
//! agent we failed over from, or by a bridge that was removed, with nobody cleaning up.
//! The cost: a bridge outage longer than the TTL marks instances critical in Consul
//! (just as Eureka would evict them); size the TTL above the worst expected gap.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::client::consul::{CheckRegistration, ConsulClient, ServiceRegistration};
use crate::client::eureka::{AppsCache, EurekaClient, InstanceInfo, LeaseInfo};
use crate::client::ClientError;
use crate::connector::ConnectorConfig;
use crate::desired::{DesiredRegistration, ObservedRegistration, Owner};
use crate::diff::RegistryOp;
use crate::model::{
    CheckStatus, DataCenter, EurekaStatus, InstanceStatus, Origin, PlatformInstance, Registry,
    Renewal,
};

/// The registry a connector or sync job talks to.
#[derive(Debug, Clone)]
pub enum Remote {
    /// The built-in registry, in process.
    Builtin(Arc<Registry>),
    /// A Consul cluster through its agent API.
    Consul(ConsulClient),
    /// An Eureka cluster.
    Eureka(EurekaClient),
}

/// Which kind of registry a [`Remote`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteKind {
    /// The built-in registry.
    Builtin,
    /// Consul.
    Consul,
    /// Eureka.
    Eureka,
}

/// What a heartbeat did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Beat {
    /// The lease was renewed / the TTL check passed.
    Renewed,
    /// The registry had lost the entry; it was registered again.
    Reregistered,
}

/// The reason written on Consul maintenance while draining.
const DRAIN_REASON: &str = "tideway: instance draining";

/// The TTL check of a Consul registration.
pub(crate) fn ttl_check_id(instance_id: &str) -> String {
    format!("tideway-ttl:{instance_id}")
}

fn eureka_status(status: EurekaStatus) -> InstanceStatus {
    match status {
        EurekaStatus::Up => InstanceStatus::Up,
        EurekaStatus::OutOfService => InstanceStatus::OutOfService,
        EurekaStatus::Starting => InstanceStatus::Starting,
        EurekaStatus::Down | EurekaStatus::Unknown => InstanceStatus::Down,
    }
}

fn observed_from_eureka(i: &InstanceInfo, owner: Option<&Owner>) -> ObservedRegistration {
    ObservedRegistration {
        service: i.app.clone(),
        instance_id: i.instance_id.clone(),
        address: if i.ip_addr.is_empty() {
            i.host_name.clone()
        } else {
            i.ip_addr.clone()
        },
        port: i.port,
        metadata: i.metadata.clone(),
        tags: None,
        status: eureka_status(i.status),
        owned: owner.is_some_and(|o| o.owns(&i.metadata)),
    }
}

fn millis(now: DateTime<Utc>) -> u64 {
    u64::try_from(now.timestamp_millis()).unwrap_or(0)
}

impl Remote {
    /// Which kind of registry this is.
    pub fn kind(&self) -> RemoteKind {
        match self {
            Self::Builtin(_) => RemoteKind::Builtin,
            Self::Consul(_) => RemoteKind::Consul,
            Self::Eureka(_) => RemoteKind::Eureka,
        }
    }

    /// Where it is, for status pages.
    pub fn endpoint(&self) -> String {
        match self {
            Self::Builtin(_) => "builtin".to_owned(),
            Self::Consul(c) => c.current_address(),
            Self::Eureka(e) => e.current_url(),
        }
    }

    /// Adds what the registry will show on top of what we send, so the diff does not
    /// see a change that is not one (Eureka: the configured `zone`).
    pub(crate) fn decorate(&self, metadata: &mut BTreeMap<String, String>) {
        if let Self::Eureka(client) = self {
            if let Some(zone) = client.zone() {
                metadata
                    .entry("zone".to_owned())
                    .or_insert_with(|| zone.to_owned());
            }
        }
    }

    /// The label sync copies taken from this registry carry (`consul:<dc>`,
    /// `eureka:<zone or host>`, `tideway:<dc>`).
    pub(crate) async fn origin(&self) -> Result<String, ClientError> {
        match self {
            Self::Builtin(r) => Ok(format!("tideway:{}", r.config().datacenter)),
            Self::Consul(c) => {
                let dc = match c.datacenter() {
                    Some(dc) => dc.to_owned(),
                    None => c.agent_self().await?.config.datacenter,
                };
                Ok(format!("consul:{dc}"))
            }
            Self::Eureka(e) => Ok(match e.zone() {
                Some(zone) => format!("eureka:{zone}"),
                None => {
                    let url = reqwest::Url::parse(&e.current_url())
                        .map_err(|err| ClientError::Config(err.to_string()))?;
                    let host = url.host_str().unwrap_or("unknown");
                    match url.port() {
                        Some(p) => format!("eureka:{host}:{p}"),
                        None => format!("eureka:{host}"),
                    }
                }
            }),
        }
    }

    /// Every entry the connector may own, marked with `owner`: the Consul agent's
    /// services, every Eureka instance, the built-in registry's platform instances.
    pub(crate) async fn observe(
        &self,
        owner: &Owner,
    ) -> Result<Vec<ObservedRegistration>, ClientError> {
        match self {
            Self::Builtin(registry) => Ok(registry
                .snapshot()
                .into_iter()
                .map(|i| ObservedRegistration {
                    owned: i.origin == Origin::Platform && owner.owns(&i.metadata),
                    service: i.service,
                    instance_id: i.instance_id,
                    address: i.address,
                    port: i.port,
                    metadata: i.metadata,
                    tags: Some(i.tags),
                    status: i.status,
                })
                .collect()),
            Self::Consul(client) => {
                let services = client.agent_services(None).await?;
                let checks = client.agent_checks().await?;
                let mut by_service: BTreeMap<&str, Vec<_>> = BTreeMap::new();
                for check in checks.values() {
                    by_service
                        .entry(check.service_id.as_str())
                        .or_default()
                        .push(check);
                }
                Ok(services
                    .values()
                    .map(|s| {
                        let own_checks = by_service.get(s.id.as_str());
                        let maintenance =
                            own_checks.is_some_and(|c| c.iter().any(|c| c.is_maintenance()));
                        let critical = own_checks
                            .is_some_and(|c| c.iter().any(|c| c.status() == CheckStatus::Critical));
                        ObservedRegistration {
                            service: s.service.clone(),
                            instance_id: s.id.clone(),
                            address: s.address.clone(),
                            port: s.port,
                            metadata: s.meta.clone(),
                            tags: Some(s.tags.clone()),
                            status: if maintenance {
                                InstanceStatus::OutOfService
                            } else if critical {
                                InstanceStatus::Down
                            } else {
                                InstanceStatus::Up
                            },
                            owned: owner.owns(&s.meta),
                        }
                    })
                    .collect())
            }
            Self::Eureka(client) => Ok(client
                .apps()
                .await?
                .instances()
                .map(|i| observed_from_eureka(i, Some(owner)))
                .collect()),
        }
    }

    /// The instances of the named services (matched case-insensitively), cluster-wide,
    /// none marked owned: Consul `/v1/health/service/:name` per service, Eureka through
    /// `cache` (deltas) when given, else `GET apps/`.
    pub(crate) async fn read_services(
        &self,
        services: &[String],
        cache: Option<&mut AppsCache>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ObservedRegistration>, ClientError> {
        let wanted = |name: &str| services.iter().any(|s| s.eq_ignore_ascii_case(name));
        match self {
            Self::Builtin(registry) => Ok(registry
                .snapshot()
                .into_iter()
                .filter(|i| wanted(&i.service))
                .map(|i| ObservedRegistration {
                    service: i.service,
                    instance_id: i.instance_id,
                    address: i.address,
                    port: i.port,
                    metadata: i.metadata,
                    tags: Some(i.tags),
                    status: i.status,
                    owned: false,
                })
                .collect()),
            Self::Consul(client) => {
                let mut out = Vec::new();
                for service in services {
                    let entries = client
                        .health_service(service, false, &Default::default())
                        .await?
                        .value;
                    out.extend(entries.iter().map(|e| ObservedRegistration {
                        service: e.service.service.clone(),
                        instance_id: e.service.id.clone(),
                        address: e.address().to_owned(),
                        port: e.service.port,
                        metadata: e.service.meta.clone(),
                        tags: Some(e.service.tags.clone()),
                        status: if e.in_maintenance() {
                            InstanceStatus::OutOfService
                        } else if e.aggregated_status() == CheckStatus::Critical {
                            InstanceStatus::Down
                        } else {
                            InstanceStatus::Up
                        },
                        owned: false,
                    }));
                }
                Ok(out)
            }
            Self::Eureka(client) => {
                let fresh;
                let apps = match cache {
                    Some(cache) => cache.refresh(client, now).await?,
                    None => {
                        fresh = client.apps().await?;
                        &fresh
                    }
                };
                Ok(apps
                    .applications
                    .iter()
                    .filter(|a| wanted(&a.name))
                    .flat_map(|a| a.instances.iter())
                    .map(|i| observed_from_eureka(i, None))
                    .collect())
            }
        }
    }

    /// Applies one operation.
    pub(crate) async fn apply(
        &self,
        op: &RegistryOp,
        config: &ConnectorConfig,
        now: DateTime<Utc>,
    ) -> Result<(), ClientError> {
        match op {
            RegistryOp::Register { registration } => self.register(registration, config, now).await,
            RegistryOp::Update {
                registration,
                previous_status,
                ..
            } => {
                self.register(registration, config, now).await?;
                if registration.is_up() && *previous_status == InstanceStatus::OutOfService {
                    self.put_back(&registration.service, &registration.instance_id, now)
                        .await?;
                }
                Ok(())
            }
            RegistryOp::TakeOut {
                service,
                instance_id,
            } => self.take_out(service, instance_id, now).await,
            RegistryOp::PutBack {
                service,
                instance_id,
            } => self.put_back(service, instance_id, now).await,
            RegistryOp::Deregister {
                service,
                instance_id,
                ..
            } => self.deregister(service, instance_id).await,
        }
    }

    /// Registers (or re-registers) one instance in its desired state.
    async fn register(
        &self,
        d: &DesiredRegistration,
        config: &ConnectorConfig,
        now: DateTime<Utc>,
    ) -> Result<(), ClientError> {
        match self {
            Self::Builtin(registry) => {
                registry.put_platform(PlatformInstance {
                    service: d.service.clone(),
                    instance_id: d.instance_id.clone(),
                    address: d.address.clone(),
                    port: d.port,
                    metadata: d.metadata.clone(),
                    tags: d.tags.clone(),
                    status: d.status,
                });
                Ok(())
            }
            Self::Consul(client) => {
                let registration = ServiceRegistration {
                    id: d.instance_id.clone(),
                    name: d.service.clone(),
                    tags: d.tags.clone(),
                    address: d.address.clone(),
                    port: d.port,
                    meta: d.metadata.clone(),
                    check: Some(CheckRegistration {
                        check_id: ttl_check_id(&d.instance_id),
                        name: "Tideway readiness".to_owned(),
                        notes: "Passed by the Tideway registry bridge while the platform reports the instance ready".to_owned(),
                        ttl: Some(config.consul_ttl),
                        http: None,
                        interval: None,
                        timeout: None,
                        // Draining instances start critical so they never flash passing.
                        status: Some(
                            if d.is_up() {
                                CheckStatus::Passing
                            } else {
                                CheckStatus::Critical
                            }
                            .as_str()
                            .to_owned(),
                        ),
                        deregister_critical_after: Some(config.consul_deregister_critical_after),
                    }),
                };
                client.register_service(&registration, true).await?;
                if !d.is_up() {
                    client
                        .set_maintenance(&d.instance_id, true, Some(DRAIN_REASON))
                        .await?;
                    // Keep the TTL alive so the dead-man switch does not reap it mid-drain.
                    client
                        .update_ttl(&ttl_check_id(&d.instance_id), CheckStatus::Passing, None)
                        .await?;
                }
                Ok(())
            }
            Self::Eureka(client) => {
                let instance = eureka_instance(d, config, client.zone(), now);
                client.register(&instance).await?;
                if !d.is_up() {
                    client
                        .set_status_override(
                            &d.service,
                            &d.instance_id,
                            EurekaStatus::OutOfService,
                            Some(millis(now)),
                        )
                        .await?;
                }
                Ok(())
            }
        }
    }

    async fn take_out(
        &self,
        service: &str,
        instance_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ClientError> {
        match self {
            Self::Builtin(registry) => {
                if registry.set_platform_status(instance_id, InstanceStatus::OutOfService) {
                    Ok(())
                } else {
                    Err(ClientError::NotFound(instance_id.to_owned()))
                }
            }
            Self::Consul(client) => {
                client
                    .set_maintenance(instance_id, true, Some(DRAIN_REASON))
                    .await
            }
            Self::Eureka(client) => {
                client
                    .set_status_override(
                        service,
                        instance_id,
                        EurekaStatus::OutOfService,
                        Some(millis(now)),
                    )
                    .await
            }
        }
    }

    async fn put_back(
        &self,
        service: &str,
        instance_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ClientError> {
        match self {
            Self::Builtin(registry) => {
                if registry.set_platform_status(instance_id, InstanceStatus::Up) {
                    Ok(())
                } else {
                    Err(ClientError::NotFound(instance_id.to_owned()))
                }
            }
            Self::Consul(client) => {
                client.set_maintenance(instance_id, false, None).await?;
                client
                    .update_ttl(&ttl_check_id(instance_id), CheckStatus::Passing, None)
                    .await
            }
            Self::Eureka(client) => {
                client
                    .delete_status_override(
                        service,
                        instance_id,
                        Some(EurekaStatus::Up),
                        Some(millis(now)),
                    )
                    .await
            }
        }
    }

    async fn deregister(&self, service: &str, instance_id: &str) -> Result<(), ClientError> {
        match self {
            Self::Builtin(registry) => {
                registry.remove_platform(instance_id);
                Ok(())
            }
            Self::Consul(client) => client.deregister_service(instance_id).await.map(|_| ()),
            Self::Eureka(client) => client.cancel(service, instance_id).await.map(|_| ()),
        }
    }

    /// How often this registry needs a heartbeat per registration, if at all.
    pub(crate) fn heartbeat_interval(
        &self,
        config: &ConnectorConfig,
    ) -> Option<std::time::Duration> {
        match self {
            Self::Builtin(_) => None,
            Self::Consul(_) => Some(config.consul_ttl_pass_interval),
            Self::Eureka(_) => Some(config.eureka_renewal_interval),
        }
    }

    /// Renews an Eureka lease or passes a Consul TTL check; when the registry lost the
    /// entry (renewal 404, unknown check), registers it again.
    pub(crate) async fn heartbeat(
        &self,
        d: &DesiredRegistration,
        config: &ConnectorConfig,
        now: DateTime<Utc>,
    ) -> Result<Beat, ClientError> {
        let lost = match self {
            Self::Builtin(_) => return Ok(Beat::Renewed),
            Self::Consul(client) => match client
                .update_ttl(&ttl_check_id(&d.instance_id), CheckStatus::Passing, None)
                .await
            {
                Ok(()) => false,
                Err(ClientError::NotFound(_)) => true,
                Err(e) => return Err(e),
            },
            Self::Eureka(client) => {
                client.renew(&d.service, &d.instance_id).await? == Renewal::NotFound
            }
        };
        if lost {
            self.register(d, config, now).await?;
            return Ok(Beat::Reregistered);
        }
        Ok(Beat::Renewed)
    }
}

/// The Eureka `InstanceInfo` for a desired registration.
pub(crate) fn eureka_instance(
    d: &DesiredRegistration,
    config: &ConnectorConfig,
    zone: Option<&str>,
    now: DateTime<Utc>,
) -> InstanceInfo {
    let mut metadata = d.metadata.clone();
    if let Some(zone) = zone {
        metadata
            .entry("zone".to_owned())
            .or_insert_with(|| zone.to_owned());
    }
    let vip = d.service.to_lowercase();
    let at = millis(now);
    InstanceInfo {
        instance_id: d.instance_id.clone(),
        app: d.service.to_uppercase(),
        host_name: d.address.clone(),
        ip_addr: d.address.clone(),
        status: if d.is_up() {
            EurekaStatus::Up
        } else {
            EurekaStatus::OutOfService
        },
        overridden_status: EurekaStatus::Unknown,
        port: d.port,
        port_enabled: true,
        secure_port: 443,
        secure_port_enabled: false,
        country_id: 1,
        data_center: DataCenter::default(),
        lease: LeaseInfo {
            renewal_interval_secs: config.eureka_renewal_interval.as_secs().max(1),
            duration_secs: config.eureka_lease_duration.as_secs().max(1),
            ..LeaseInfo::default()
        },
        metadata,
        home_page_url: format!("http://{}:{}/", d.address, d.port),
        status_page_url: String::new(),
        health_check_url: d.health_url.clone().unwrap_or_default(),
        vip_address: vip.clone(),
        secure_vip_address: vip,
        last_updated_timestamp: at,
        last_dirty_timestamp: at,
        action_type: None,
    }
}
