//! Builds the gateway's route table from the store (apps, traffic policies, scale-to-zero)
//! and the runtime (ready instances), and publishes it whole on a watch channel whenever it
//! changes: on every API change, every runtime event, and at least every second.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tideway_api_types::{Instance, InstanceState};
use tideway_gateway::route::{AppRoute, Backend, RouteTable, VersionRoute};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::domain::placement::place;
use crate::runtime::{RuntimeDriver, RuntimeEvent};
use crate::store::{AppRouting, Store};

const RESYNC: Duration = Duration::from_secs(1);

/// The route table for these apps and instances. Only ready instances are backends, so a
/// draining instance stops receiving requests as soon as the runtime reports it.
pub fn build_table(apps: &[AppRouting], instances: &[Instance]) -> RouteTable {
    let apps = apps
        .iter()
        .map(|a| {
            let app = &a.record.app;
            let placement = place(a);
            let mut numbers: BTreeSet<u32> = app.current_version.into_iter().collect();
            // The placement runs every version its split names.
            numbers.extend(placement.replicas.keys().copied());
            let versions = numbers
                .into_iter()
                .map(|version| VersionRoute {
                    version,
                    backends: instances
                        .iter()
                        .filter(|i| {
                            i.namespace == app.namespace
                                && i.app == app.name
                                && i.version == version
                                && i.state == InstanceState::Ready
                        })
                        .filter_map(|i| {
                            Some(Backend {
                                instance: i.id.clone(),
                                addr: i.address.as_deref()?.parse().ok()?,
                            })
                        })
                        .collect(),
                })
                .collect();
            let mut hosts = vec![format!("{}.{}.localhost", app.name, app.namespace)];
            hosts.extend(app.domains.iter().cloned());
            hosts.extend(placement.extra_hosts);
            AppRoute {
                namespace: app.namespace.clone(),
                app: app.name.clone(),
                hosts,
                path_prefixes: app.path_prefixes.clone(),
                policy: placement.traffic,
                default_version: app.current_version,
                versions,
                scale_to_zero: a.autoscaling.as_ref().is_some_and(|p| p.scale_to_zero),
            }
        })
        .collect();
    RouteTable { apps }
}

pub struct RouteBuilder {
    pub store: Arc<dyn Store>,
    pub runtime: Arc<dyn RuntimeDriver>,
    pub wake: Arc<Notify>,
    /// Told when a new table is out: a release may be waiting for its weights to apply.
    pub release_wake: Arc<Notify>,
    pub routes: watch::Sender<Arc<RouteTable>>,
}

impl RouteBuilder {
    /// Rebuilds the table; publishes it only when it changed.
    pub async fn step(&self) -> Result<bool, String> {
        let apps = self
            .store
            .routing_state()
            .await
            .map_err(|e| e.to_string())?;
        let table = build_table(&apps, &self.runtime.instances());
        let changed = self.routes.send_if_modified(|current| {
            if **current == table {
                false
            } else {
                *current = Arc::new(table);
                true
            }
        });
        if changed {
            self.release_wake.notify_one();
        }
        Ok(changed)
    }

    /// Rebuilds on every wake-up, every runtime event, and every second.
    pub async fn run(
        self,
        mut events: broadcast::Receiver<RuntimeEvent>,
        shutdown: CancellationToken,
    ) {
        loop {
            if let Err(error) = self.step().await {
                tracing::warn!(reconciler = "routes", %error, "ReconcileError");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AppRecord;
    use chrono::Utc;
    use tideway_api_types::{App, TrafficPolicy};

    fn routing(current: Option<u32>, traffic: Option<TrafficPolicy>) -> AppRouting {
        AppRouting {
            record: AppRecord {
                id: 1,
                app: App {
                    namespace: "default".into(),
                    name: "shop".into(),
                    description: String::new(),
                    labels: Default::default(),
                    replicas: 2,
                    domains: vec!["shop.example.com".into()],
                    path_prefixes: vec!["/shop".into()],
                    registries: Vec::new(),
                    current_version: current,
                    created_at: Utc::now(),
                    updated_at: Utc::now(),
                    generation: 1,
                },
            },
            traffic,
            autoscaling: None,
            release: None,
            versions: vec![],
        }
    }

    fn instance(id: &str, version: u32, state: InstanceState, port: u16) -> Instance {
        Instance {
            id: id.into(),
            namespace: "default".into(),
            app: "shop".into(),
            version,
            state,
            address: Some(format!("127.0.0.1:{port}")),
            pid: Some(1),
            restarts: 0,
            message: None,
            cpu_percent: None,
            memory_bytes: None,
            limits_enforced: false,
            limits_note: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn only_ready_instances_of_routed_versions_are_backends() {
        let traffic: TrafficPolicy = serde_json::from_value(serde_json::json!({
            "weights": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]
        }))
        .unwrap();
        let table = build_table(
            &[routing(Some(1), Some(traffic))],
            &[
                instance("a", 1, InstanceState::Ready, 1001),
                instance("b", 1, InstanceState::Draining, 1002),
                instance("c", 2, InstanceState::Ready, 1003),
                instance("d", 2, InstanceState::Starting, 1004),
                instance("e", 3, InstanceState::Ready, 1005),
            ],
        );
        let app = &table.apps[0];
        assert_eq!(app.hosts, ["shop.default.localhost", "shop.example.com"]);
        assert_eq!(app.path_prefixes, ["/shop"]);
        assert_eq!(app.default_version, Some(1));
        let backends: Vec<(u32, Vec<&str>)> = app
            .versions
            .iter()
            .map(|v| {
                (
                    v.version,
                    v.backends.iter().map(|b| b.instance.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(backends, [(1, vec!["a"]), (2, vec!["c"])]);
    }

    #[test]
    fn an_app_without_a_release_has_no_versions() {
        let table = build_table(&[routing(None, None)], &[]);
        assert!(table.apps[0].versions.is_empty());
        assert_eq!(table.apps[0].default_version, None);
    }
}
