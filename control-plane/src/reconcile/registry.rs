//! The registry bridge loop: on every runtime event and every second, it computes which
//! instances each registry connection must hold ([`crate::domain::registry::registrations`]:
//! ready ones up, draining ones out of service) and hands that to each connection's
//! [`Connector`], a level-triggered diff against what the registry holds that backs off
//! while the registry is down. It also runs the namespace's sync jobs, and takes
//! self-registering instances out of their registry when they start draining.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tideway_api_types::{
    RegistryConnectionCreate, RegistryEntry, RegistryKind, RegistrySyncCreate,
};
use tideway_registry_bridge::{
    Connector, ConsulClient, ConsulConfig, DesiredRegistration, EurekaClient, EurekaConfig,
    Registry, Remote, SyncJob, SyncSpec,
};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

use super::lock;
use crate::clock::Clock;
use crate::domain::registry::{registrations, self_drains, Directory, Planned, BUILTIN};
use crate::runtime::{RuntimeDriver, RuntimeEvent};
use crate::store::{RegistryObject, RegistryObjectKind, Store, StoreError};

const RESYNC: Duration = Duration::from_secs(1);

/// What the API shows of the bridge, and how it wakes it.
pub struct BridgeView {
    eureka_url: String,
    consul_url: String,
    registry: Arc<Registry>,
    connections: Mutex<HashMap<(String, String), Value>>,
    syncs: Mutex<HashMap<(String, String), Value>>,
    desired: Mutex<HashMap<(String, String), Vec<DesiredRegistration>>>,
    wake: Notify,
}

impl BridgeView {
    pub fn new(registry: Arc<Registry>, eureka_url: String, consul_url: String) -> Self {
        BridgeView {
            eureka_url,
            consul_url,
            registry,
            connections: Mutex::new(HashMap::new()),
            syncs: Mutex::new(HashMap::new()),
            desired: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        }
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The built-in registry's Eureka and Consul base URLs.
    pub fn builtin_addresses(&self) -> Vec<String> {
        vec![self.eureka_url.clone(), self.consul_url.clone()]
    }

    pub fn connection_status(&self, ns: &str, name: &str) -> Option<Value> {
        let key = if name == BUILTIN {
            (String::new(), BUILTIN.to_string())
        } else {
            (ns.to_string(), name.to_string())
        };
        lock(&self.connections).get(&key).cloned()
    }

    pub fn sync_status(&self, ns: &str, name: &str) -> Option<Value> {
        lock(&self.syncs)
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// What a registry holds: the built-in one in full, a connection as far as the bridge
    /// registered there.
    pub fn entries(&self, ns: &str, name: &str) -> Vec<RegistryEntry> {
        if name == BUILTIN {
            return self
                .registry
                .snapshot()
                .into_iter()
                .map(|i| RegistryEntry {
                    service: i.service,
                    instance_id: i.instance_id,
                    address: i.address,
                    port: i.port,
                    status: tideway_registry_bridge::desired::status_name(i.status).into(),
                    metadata: i.metadata,
                    origin: format!("{:?}", i.origin).to_lowercase(),
                })
                .collect();
        }
        lock(&self.desired)
            .get(&(ns.to_string(), name.to_string()))
            .map(|d| {
                d.iter()
                    .map(|r| RegistryEntry {
                        service: r.service.clone(),
                        instance_id: r.instance_id.clone(),
                        address: r.address.clone(),
                        port: r.port,
                        status: tideway_registry_bridge::desired::status_name(r.status).into(),
                        metadata: r.metadata.clone(),
                        origin: "platform".into(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Where self-registering apps find their registries.
    pub async fn directory(&self, store: &dyn Store) -> Result<Directory, StoreError> {
        let mut connections = BTreeMap::new();
        for o in store
            .list_registry_objects(None, RegistryObjectKind::Connection)
            .await?
        {
            if let Ok(spec) = serde_json::from_value::<RegistryConnectionCreate>(o.spec) {
                connections.insert((o.namespace, o.name), spec);
            }
        }
        Ok(Directory {
            builtin_eureka: self.eureka_url.clone(),
            builtin_consul: self.consul_url.clone(),
            connections,
        })
    }
}

/// A remote built from a stored connection.
fn remote_of(spec: &RegistryConnectionCreate, registry: &Arc<Registry>) -> Option<Remote> {
    match spec.kind {
        RegistryKind::Builtin => Some(Remote::Builtin(registry.clone())),
        RegistryKind::Consul => ConsulClient::new(ConsulConfig {
            addresses: spec.addresses.clone(),
            token: spec.token.clone(),
            datacenter: spec.datacenter.clone(),
        })
        .ok()
        .map(Remote::Consul),
        RegistryKind::Eureka => EurekaClient::new(EurekaConfig {
            urls: spec.addresses.clone(),
            username: spec.username.clone(),
            password: spec.password.clone(),
            zone: spec.zone.clone(),
        })
        .ok()
        .map(Remote::Eureka),
    }
}

pub struct Bridge {
    pub store: Arc<dyn Store>,
    pub runtime: Arc<dyn RuntimeDriver>,
    pub registry: Arc<Registry>,
    pub view: Arc<BridgeView>,
    pub clock: Arc<dyn Clock>,
    builtin: Connector,
    /// External connections by (namespace, name), with the spec they were built from.
    connectors: HashMap<(String, String), (Value, Connector)>,
    syncs: HashMap<(String, String), (Value, SyncJob)>,
}

impl Bridge {
    pub fn new(
        store: Arc<dyn Store>,
        runtime: Arc<dyn RuntimeDriver>,
        registry: Arc<Registry>,
        view: Arc<BridgeView>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let builtin = Connector::new(BUILTIN.into(), Remote::Builtin(registry.clone()));
        Bridge {
            store,
            runtime,
            registry,
            view,
            clock,
            builtin,
            connectors: HashMap::new(),
            syncs: HashMap::new(),
        }
    }

    /// One pass: every connection converges on what it must hold; sync jobs run once.
    pub async fn step(&mut self) -> Result<(), StoreError> {
        let apps = self.store.routing_state().await?;
        let instances = self.runtime.instances();
        let now = self.clock.now();
        let planned = registrations(&apps, &instances);
        let mut by_connection: HashMap<(String, String), Vec<DesiredRegistration>> = HashMap::new();
        for Planned {
            namespace,
            connection,
            registration,
        } in planned
        {
            // The built-in registry is one registry shared by every namespace.
            let key = if connection == BUILTIN {
                (String::new(), BUILTIN.to_string())
            } else {
                (namespace, connection)
            };
            by_connection.entry(key).or_default().push(registration);
        }

        let builtin_key = (String::new(), BUILTIN.to_string());
        let builtin_desired = by_connection.remove(&builtin_key).unwrap_or_default();
        self.builtin.converge(&builtin_desired, now).await;
        self.publish(&builtin_key, &self.builtin.status(), builtin_desired);

        let stored = self
            .store
            .list_registry_objects(None, RegistryObjectKind::Connection)
            .await?;
        let mut seen = Vec::new();
        for o in &stored {
            let key = (o.namespace.clone(), o.name.clone());
            seen.push(key.clone());
            let rebuild = self
                .connectors
                .get(&key)
                .is_none_or(|(spec, _)| *spec != o.spec);
            if rebuild {
                let Ok(spec) = serde_json::from_value::<RegistryConnectionCreate>(o.spec.clone())
                else {
                    continue;
                };
                let Some(remote) = remote_of(&spec, &self.registry) else {
                    continue;
                };
                self.connectors.insert(
                    key.clone(),
                    (o.spec.clone(), Connector::new(o.name.clone(), remote)),
                );
            }
            let desired = by_connection.remove(&key).unwrap_or_default();
            if let Some((_, connector)) = self.connectors.get_mut(&key) {
                connector.converge(&desired, now).await;
                let status = connector.status();
                self.publish(&key, &status, desired);
            }
        }
        // A deleted connection: take out what we registered there, then forget it.
        let gone: Vec<_> = self
            .connectors
            .keys()
            .filter(|k| !seen.contains(k))
            .cloned()
            .collect();
        for key in gone {
            if let Some((_, mut connector)) = self.connectors.remove(&key) {
                connector.converge(&[], now).await;
            }
            lock(&self.view.connections).remove(&key);
            lock(&self.view.desired).remove(&key);
        }

        // Self-registering instances leave their registry before they stop.
        for (_, connection, id) in self_drains(&apps, &instances) {
            if connection == BUILTIN {
                let _ = self
                    .registry
                    .consul_maintenance(&id, true, Some("draining".into()));
            }
        }

        self.run_syncs(&stored, now).await
    }

    fn publish<S: serde::Serialize>(
        &self,
        key: &(String, String),
        status: &S,
        desired: Vec<DesiredRegistration>,
    ) {
        let value = serde_json::to_value(status).unwrap_or(Value::Null);
        lock(&self.view.connections).insert(key.clone(), value);
        lock(&self.view.desired).insert(key.clone(), desired);
    }

    /// Runs every sync job once; `connections` are this pass's stored connections.
    async fn run_syncs(
        &mut self,
        connections: &[RegistryObject],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let stored = self
            .store
            .list_registry_objects(None, RegistryObjectKind::Sync)
            .await?;
        let connections: HashMap<(String, String), RegistryConnectionCreate> = connections
            .iter()
            .filter_map(|o| {
                let spec = serde_json::from_value(o.spec.clone()).ok()?;
                Some(((o.namespace.clone(), o.name.clone()), spec))
            })
            .collect();
        let mut seen = Vec::new();
        for o in stored {
            let key = (o.namespace.clone(), o.name.clone());
            seen.push(key.clone());
            let Ok(spec) = serde_json::from_value::<RegistrySyncCreate>(o.spec.clone()) else {
                continue;
            };
            let rebuild = self.syncs.get(&key).is_none_or(|(s, _)| *s != o.spec);
            if rebuild {
                let end = |name: &str| -> Option<Remote> {
                    if name == BUILTIN {
                        return Some(Remote::Builtin(self.registry.clone()));
                    }
                    remote_of(
                        connections.get(&(o.namespace.clone(), name.to_string()))?,
                        &self.registry,
                    )
                };
                let (Some(from), Some(to)) = (end(&spec.from), end(&spec.to)) else {
                    continue;
                };
                let job = SyncJob::new(
                    SyncSpec::new(format!("{}/{}", o.namespace, o.name), spec.services.clone()),
                    from,
                    to,
                );
                self.syncs.insert(key.clone(), (o.spec.clone(), job));
            }
            if let Some((_, job)) = self.syncs.get_mut(&key) {
                job.run_once(now).await;
                let value = serde_json::to_value(job.status()).unwrap_or(Value::Null);
                lock(&self.view.syncs).insert(key.clone(), value);
            }
        }
        self.syncs.retain(|k, _| seen.contains(k));
        lock(&self.view.syncs).retain(|k, _| seen.contains(k));
        Ok(())
    }

    /// Runs passes on every runtime event, every wake-up and every second, until `shutdown`.
    pub async fn run(
        mut self,
        mut events: broadcast::Receiver<RuntimeEvent>,
        shutdown: CancellationToken,
    ) {
        let view = self.view.clone();
        loop {
            if let Err(error) = self.step().await {
                tracing::warn!(reconciler = "registry", %error, "ReconcileError");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = view.wake.notified() => {}
                event = events.recv() => {
                    if let Err(RecvError::Closed) = event {
                        return;
                    }
                }
                _ = tokio::time::sleep(RESYNC) => {}
            }
        }
    }
}
