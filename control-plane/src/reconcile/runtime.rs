//! Converges the runtime to the store: every app with a serving version, built and ready,
//! becomes a workload with the app's replica count, and the runtime driver is told the
//! complete set. The driver's lifecycle events are appended to the event log.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tideway_api_types::VersionState;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::event::NewEvent;
use crate::layout::Layout;
use crate::runtime::{RuntimeDriver, RuntimeEvent, Workload};
use crate::store::Store;

const RESYNC: Duration = Duration::from_secs(1);

pub struct RuntimeReconciler {
    pub store: Arc<dyn Store>,
    pub runtime: Arc<dyn RuntimeDriver>,
    pub layout: Layout,
    pub wake: Arc<Notify>,
}

impl RuntimeReconciler {
    /// The workloads the store asks for.
    pub async fn desired(&self) -> Result<Vec<Workload>, String> {
        let serving = self
            .store
            .serving_versions()
            .await
            .map_err(|e| e.to_string())?;
        Ok(serving
            .into_iter()
            .filter(|(_, v)| v.state == VersionState::Ready)
            .map(|(app, v)| Workload {
                namespace: app.app.namespace.clone(),
                app: app.app.name.clone(),
                version: v.number,
                replicas: app.app.replicas,
                dir: self.layout.version_dir(app.id, v.number),
                command: v.run.command,
                env: v.env,
                port: v.port,
                health: v.health,
                resources: v.resources,
            })
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

/// Appends every runtime event to the event log; wakes the release reconciler when an
/// instance becomes ready or starts crash-looping, since a release may be waiting on it.
pub async fn record_events(
    store: Arc<dyn Store>,
    runtime: Arc<dyn RuntimeDriver>,
    release_wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut events = runtime.subscribe();
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
