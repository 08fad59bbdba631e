//! Activation from zero: the gateway holds requests for an app that has no ready instance
//! and asks for capacity here. Until the autoscaler consumes these requests, an app scaled to
//! zero is given one instance.

use std::sync::Arc;

use serde_json::json;
use tideway_gateway::Activation;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::domain::event::NewEvent;
use crate::domain::name::Name;
use crate::domain::Invalid;
use crate::store::Store;

/// Instances an activation asks for (Knative's `activation-scale`).
const ACTIVATION_SCALE: u32 = 1;

pub async fn activate(
    store: Arc<dyn Store>,
    mut requests: mpsc::Receiver<Activation>,
    runtime_wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let request = tokio::select! {
            _ = shutdown.cancelled() => return,
            request = requests.recv() => match request {
                Some(r) => r,
                None => return,
            },
        };
        let (Ok(ns), Ok(app)) = (Name::parse(&request.namespace), Name::parse(&request.app)) else {
            continue;
        };
        match store.get_app(&ns, &app).await {
            Ok(record) if record.app.replicas == 0 => {}
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "ActivationError");
                continue;
            }
        }
        let change = |a: &mut tideway_api_types::App| -> Result<NewEvent, Invalid> {
            let from = a.replicas;
            a.replicas = a.replicas.max(ACTIVATION_SCALE);
            Ok(NewEvent::new(
                "AppActivated",
                "gateway",
                "a request arrived while the app had no instance",
            )
            .app(&a.namespace, &a.name)
            .details(json!({"from": from, "to": a.replicas})))
        };
        match store.update_app(&ns, &app, None, &change).await {
            Ok(_) => runtime_wake.notify_one(),
            Err(e) => tracing::warn!(error = %e, "ActivationError"),
        }
    }
}
