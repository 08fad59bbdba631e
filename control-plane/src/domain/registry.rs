//! Service registries in the domain: what a valid connection, sync job and binding is, which
//! instances must be registered where (with their namespace, app, version and lane), and
//! what an app that registers itself is told.

use std::collections::BTreeMap;

use tideway_api_types::{
    BindingMode, Instance, InstanceState, RegistryBinding, RegistryConnectionCreate, RegistryKind,
    RegistrySyncCreate, Strategy,
};
use tideway_registry_bridge::{DesiredRegistration, InstanceStatus};

use super::name::Name;
use super::{ensure, Invalid};
use crate::store::AppRouting;

/// The name of the registry every namespace has.
pub const BUILTIN: &str = "builtin";

pub fn validate_connection(c: &RegistryConnectionCreate) -> Result<Name, Invalid> {
    let name = Name::parse(&c.name).map_err(|e| Invalid::new("name", e.reason))?;
    ensure(c.name != BUILTIN, "name", "'builtin' is reserved")?;
    ensure(
        matches!(c.kind, RegistryKind::Consul | RegistryKind::Eureka),
        "kind",
        "must be consul or eureka",
    )?;
    ensure(
        (1..=8).contains(&c.addresses.len()),
        "addresses",
        "give 1–8 base URLs",
    )?;
    for (i, a) in c.addresses.iter().enumerate() {
        let ok = reqwest::Url::parse(a)
            .ok()
            .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        ensure(
            ok,
            &format!("addresses[{i}]"),
            "must be an http(s) URL such as http://127.0.0.1:8500",
        )?;
    }
    for (field, value) in [
        ("token", &c.token),
        ("username", &c.username),
        ("password", &c.password),
        ("datacenter", &c.datacenter),
        ("zone", &c.zone),
    ] {
        ensure(
            value
                .as_ref()
                .is_none_or(|v| !v.is_empty() && v.len() <= 512),
            field,
            "must be 1–512 bytes",
        )?;
    }
    Ok(name)
}

pub fn validate_sync(s: &RegistrySyncCreate) -> Result<Name, Invalid> {
    let name = Name::parse(&s.name).map_err(|e| Invalid::new("name", e.reason))?;
    ensure(s.from != s.to, "to", "must differ from `from`")?;
    ensure(
        (1..=100).contains(&s.services.len()),
        "services",
        "give 1–100 service names",
    )?;
    for (i, svc) in s.services.iter().enumerate() {
        ensure(
            !svc.is_empty() && svc.len() <= 255,
            &format!("services[{i}]"),
            "must be 1–255 bytes",
        )?;
    }
    Ok(name)
}

pub fn validate_bindings(bindings: &[RegistryBinding]) -> Result<(), Invalid> {
    ensure(bindings.len() <= 8, "registries", "at most 8 bindings")?;
    for (i, b) in bindings.iter().enumerate() {
        let field = format!("registries[{i}]");
        ensure(
            b.registry == BUILTIN || Name::parse(&b.registry).is_ok(),
            &format!("{field}.registry"),
            "must name a registry connection of the namespace, or builtin",
        )?;
        ensure(
            b.service
                .as_ref()
                .is_none_or(|s| !s.is_empty() && s.len() <= 255),
            &format!("{field}.service"),
            "must be 1–255 bytes",
        )?;
        ensure(
            b.tags.len() <= 32,
            &format!("{field}.tags"),
            "at most 32 tags",
        )?;
        let duplicate = bindings[..i].iter().any(|o| o.registry == b.registry);
        ensure(!duplicate, &field, "each registry may be bound once")?;
    }
    Ok(())
}

/// The bindings in force: the app's own, or the built-in registry in platform mode.
pub fn bindings_of(app: &AppRouting) -> Vec<RegistryBinding> {
    if app.record.app.registries.is_empty() {
        return vec![RegistryBinding {
            registry: BUILTIN.into(),
            service: None,
            tags: Vec::new(),
            mode: BindingMode::Platform,
        }];
    }
    app.record.app.registries.clone()
}

/// The lane of a version: `canary` for the target of an active gradual release, else
/// `stable`.
pub fn lane_of(app: &AppRouting, version: u32) -> &'static str {
    match &app.release {
        Some(r)
            if r.state.is_active()
                && r.target_version == version
                && !matches!(r.strategy, Strategy::Immediate) =>
        {
            "canary"
        }
        _ => "stable",
    }
}

/// One registration the bridge must hold in one connection of a namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub namespace: String,
    pub connection: String,
    pub registration: DesiredRegistration,
}

/// What every connection must hold for the platform-mode bindings: each ready instance
/// `Up`, each draining one `OutOfService` (taken out before it stops), nothing else.
pub fn registrations(apps: &[AppRouting], instances: &[Instance]) -> Vec<Planned> {
    let mut out = Vec::new();
    for app in apps {
        let a = &app.record.app;
        let own: Vec<&Instance> = instances
            .iter()
            .filter(|i| i.namespace == a.namespace && i.app == a.name)
            .collect();
        for binding in bindings_of(app) {
            if binding.mode != BindingMode::Platform {
                continue;
            }
            for i in &own {
                let status = match i.state {
                    InstanceState::Ready => InstanceStatus::Up,
                    InstanceState::Draining => InstanceStatus::OutOfService,
                    _ => continue,
                };
                let Some(addr) = i
                    .address
                    .as_deref()
                    .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
                else {
                    continue;
                };
                let (address, port) = (addr.ip().to_string(), addr.port());
                let metadata: BTreeMap<String, String> = [
                    ("tideway-namespace", a.namespace.clone()),
                    ("tideway-app", a.name.clone()),
                    ("tideway-instance", i.id.clone()),
                    ("version", i.version.to_string()),
                    ("lane", lane_of(app, i.version).to_string()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
                let health_path = app
                    .versions
                    .iter()
                    .find(|v| v.number == i.version)
                    .and_then(|v| v.health.http.clone());
                out.push(Planned {
                    namespace: a.namespace.clone(),
                    connection: binding.registry.clone(),
                    registration: DesiredRegistration {
                        service: binding.service.clone().unwrap_or_else(|| a.name.clone()),
                        instance_id: i.id.clone(),
                        health_url: health_path.map(|p| format!("http://{address}:{port}{p}")),
                        address,
                        port,
                        metadata,
                        tags: binding.tags.clone(),
                        status,
                    },
                });
            }
        }
    }
    out
}

/// Self-registering instances that are draining: (namespace, connection, instance id). The
/// bridge takes them out of their registry before they stop.
pub fn self_drains(apps: &[AppRouting], instances: &[Instance]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for app in apps {
        let a = &app.record.app;
        for binding in bindings_of(app) {
            if binding.mode != BindingMode::SelfRegistration {
                continue;
            }
            out.extend(
                instances
                    .iter()
                    .filter(|i| i.namespace == a.namespace && i.app == a.name)
                    .filter(|i| i.state == InstanceState::Draining)
                    .map(|i| (a.namespace.clone(), binding.registry.clone(), i.id.clone())),
            );
        }
    }
    out
}

/// Where a self-registering app finds a registry.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    /// The built-in registry's Eureka base URL and Consul address.
    pub builtin_eureka: String,
    pub builtin_consul: String,
    /// Connections by (namespace, name).
    pub connections: BTreeMap<(String, String), RegistryConnectionCreate>,
}

/// The variables an app's registry client reads, for each `self` binding: the registry's
/// address, the instance id the platform knows it by (`$(TIDEWAY_INSTANCE)` is expanded by
/// the runtime) and its lane.
pub fn self_env(app: &AppRouting, version: u32, dir: &Directory) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let lane = lane_of(app, version);
    for binding in bindings_of(app) {
        if binding.mode != BindingMode::SelfRegistration {
            continue;
        }
        let (kind, addresses) = if binding.registry == BUILTIN {
            (
                RegistryKind::Builtin,
                vec![dir.builtin_eureka.clone(), dir.builtin_consul.clone()],
            )
        } else {
            let key = (app.record.app.namespace.clone(), binding.registry.clone());
            match dir.connections.get(&key) {
                Some(c) => (c.kind, c.addresses.clone()),
                None => continue,
            }
        };
        let eureka = match kind {
            RegistryKind::Builtin => Some(dir.builtin_eureka.clone()),
            RegistryKind::Eureka => Some(addresses.join(",")),
            RegistryKind::Consul => None,
        };
        let consul = match kind {
            RegistryKind::Builtin => Some(dir.builtin_consul.clone()),
            RegistryKind::Consul => addresses.first().cloned(),
            RegistryKind::Eureka => None,
        };
        if let Some(url) = eureka {
            env.insert("EUREKA_CLIENT_SERVICEURL_DEFAULTZONE".into(), url);
            env.insert(
                "EUREKA_INSTANCE_INSTANCE_ID".into(),
                "$(TIDEWAY_INSTANCE)".into(),
            );
            env.insert("EUREKA_INSTANCE_METADATA_MAP_LANE".into(), lane.into());
        }
        if let Some(url) = consul {
            if let Some((host, port)) = reqwest::Url::parse(&url)
                .ok()
                .and_then(|u| Some((u.host_str()?.to_string(), u.port_or_known_default()?)))
            {
                env.insert("SPRING_CLOUD_CONSUL_HOST".into(), host.clone());
                env.insert("SPRING_CLOUD_CONSUL_PORT".into(), port.to_string());
                env.insert("CONSUL_HTTP_ADDR".into(), format!("{host}:{port}"));
            }
            env.insert(
                "SPRING_CLOUD_CONSUL_DISCOVERY_INSTANCE_ID".into(),
                "$(TIDEWAY_INSTANCE)".into(),
            );
        }
        env.insert("TIDEWAY_LANE".into(), lane.into());
    }
    env
}
