//! Converges the runtime to the store: every app's serving version, and the versions its
//! traffic policy uses, become workloads, and the runtime driver is told the complete set. The driver's lifecycle events are appended to the event log.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tideway_api_types::VersionState;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::event::NewEvent;
use crate::domain::placement::place;
use crate::domain::registry::{self_env, Directory};
use crate::layout::Layout;
use crate::reconcile::autoscale::ScaleBoard;
use crate::reconcile::registry::BridgeView;
use crate::runtime::{RuntimeDriver, RuntimeEvent, Workload};
use crate::store::{AppRouting, Store};

const RESYNC: Duration = Duration::from_secs(1);

pub struct RuntimeReconciler {
    pub store: Arc<dyn Store>,
    pub runtime: Arc<dyn RuntimeDriver>,
    pub layout: Layout,
    pub board: Arc<ScaleBoard>,
    pub bridge: Arc<BridgeView>,
    pub wake: Arc<Notify>,
}

impl RuntimeReconciler {
    /// The workloads the store asks for.
    pub async fn desired(&self) -> Result<Vec<Workload>, String> {
        let apps = self
            .store
            .routing_state()
            .await
            .map_err(|e| e.to_string())?;
        let directory = self
            .bridge
            .directory(self.store.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        Ok(apps
            .iter()
            .flat_map(|app| workloads_of(app, &self.layout, &self.board, &directory))
            .collect())
    }

    pub async fn step(&self) -> Result<(), String> {
        let desired = self.desired().await?;
        self.runtime.apply(desired).await.map_err(|e| e.to_string())
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let wake = self.wake.clone();
        super::run_loop("runtime", wake, RESYNC, shutdown, || self.step()).await;
    }
}

/// The workloads of one app: every version its placement runs (see
/// [`crate::domain::placement`]), at the autoscaler's count where it decided one. Versions
/// still building or failed are left out.
pub fn workloads_of(
    app: &AppRouting,
    layout: &Layout,
    board: &ScaleBoard,
    registries: &Directory,
) -> Vec<Workload> {
    let placement = place(app);
    app.versions
        .iter()
        .filter(|v| v.state == VersionState::Ready)
        .filter_map(|v| {
            let baseline = *placement.replicas.get(&v.number)?;
            let replicas = board.get(app.record.id, v.number).unwrap_or(baseline);
            Some(Workload {
                namespace: app.record.app.namespace.clone(),
                app: app.record.app.name.clone(),
                version: v.number,
                replicas,
                dir: layout.version_dir(app.record.id, v.number),
                command: v.run.command.clone(),
                env: {
                    let mut env = v.env.clone();
                    env.extend(self_env(app, v.number, registries));
                    env
                },
                port: v.port,
                health: v.health.clone(),
                resources: v.resources.clone(),
            })
        })
        .collect()
}

/// Appends every runtime event to the event log; wakes the release reconciler when an
/// instance becomes ready or starts crash-looping, since a release may be waiting on it.
pub async fn record_events(
    store: Arc<dyn Store>,
    mut events: broadcast::Receiver<RuntimeEvent>,
    release_wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = events.recv() => event,
        };
        match event {
            Ok(event) => {
                if matches!(event.kind, "InstanceReady" | "InstanceCrashLoop") {
                    release_wake.notify_one();
                }
                if let Err(e) = store.append_event(to_new_event(event)).await {
                    tracing::warn!(error = %e, "RuntimeEventRecordError");
                }
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "RuntimeEventsLagged");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

fn to_new_event(event: RuntimeEvent) -> NewEvent {
    let mut details = match event.details {
        Value::Object(map) => map,
        Value::Null => serde_json::Map::new(),
        other => {
            let mut map = serde_json::Map::new();
            map.insert("detail".into(), other);
            map
        }
    };
    details.insert("instance".into(), event.instance.into());
    details.insert("version".into(), event.version.into());
    NewEvent::new(event.kind, "runtime", event.reason)
        .app(&event.namespace, &event.app)
        .details(Value::Object(details))
}
