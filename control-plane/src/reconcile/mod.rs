//! Level-triggered reconcilers: each pass rereads desired and observed state from the store,
//! decides with a pure domain function, applies the decision and records it as an event.
//! A wake-up only shortens the wait; a periodic pass catches anything a wake-up missed.

pub mod autoscale;
pub mod build;
pub mod metrics;
pub mod registry;
pub mod release;
pub mod routes;
pub mod runtime;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::name::Name;
use crate::store::StoreError;

/// Locks shared loop state; a panic elsewhere does not make it unreadable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A stored namespace and app name, parsed again; a name the store holds is always valid.
pub(crate) fn stored_names(ns: &str, app: &str) -> Result<(Name, Name), StoreError> {
    match (Name::parse(ns), Name::parse(app)) {
        (Ok(ns), Ok(app)) => Ok((ns, app)),
        _ => Err(StoreError::Corrupt(format!("stored name {ns}/{app}"))),
    }
}

/// Runs `pass` on every wake-up and at least every `resync`, until `shutdown`.
pub async fn run_loop<F, Fut>(
    name: &'static str,
    wake: Arc<Notify>,
    resync: Duration,
    shutdown: CancellationToken,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    loop {
        if let Err(error) = pass().await {
            tracing::warn!(reconciler = name, %error, "ReconcileError");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(resync) => {}
        }
    }
}
