//! Drives active releases through their state machine ([`crate::domain::release::step`]).
//! Every transition is stored with a generation check, so two control planes, or a restart
//! in the middle of a pass, can never apply the same step twice.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::event::NewEvent;
use crate::domain::name::Name;
use crate::domain::release::{state_str, step, Observed};
use crate::store::{ReleaseRecord, Store, StoreError};

const ACTOR: &str = "release-controller";
const RESYNC: Duration = Duration::from_secs(1);

pub struct ReleaseReconciler {
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
}

impl ReleaseReconciler {
    pub fn new(store: Arc<dyn Store>, wake: Arc<Notify>) -> Self {
        ReleaseReconciler { store, wake }
    }

    /// One pass over every active release; returns how many transitions were applied.
    pub async fn step(&self) -> Result<usize, StoreError> {
        let mut applied = 0;
        for record in self.store.active_releases().await? {
            match self.advance(record).await {
                Ok(n) => applied += n,
                // Someone else moved it or deleted the app; the next pass sees the new state.
                Err(StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(applied)
    }

    async fn advance(&self, record: ReleaseRecord) -> Result<usize, StoreError> {
        let mut release = record.release;
        let mut applied = 0;
        loop {
            let observed = self.observe(&release.namespace, &release.app).await?;
            let Some(transition) = step(
                &release.strategy,
                release.state,
                release.target_version,
                observed,
            ) else {
                return Ok(applied);
            };
            let kind = match transition.to {
                tideway_api_types::ReleaseState::Progressing => "ReleaseProgressing",
                tideway_api_types::ReleaseState::Succeeded => "ReleaseSucceeded",
                tideway_api_types::ReleaseState::Failed => "ReleaseFailed",
                tideway_api_types::ReleaseState::Aborted => "ReleaseAborted",
                tideway_api_types::ReleaseState::Pending => "ReleasePending",
            };
            let event = NewEvent::new(kind, ACTOR, transition.reason.clone())
                .app(&release.namespace, &release.app)
                .details(json!({
                    "release": release.id,
                    "from_state": state_str(release.state),
                    "to_state": state_str(transition.to),
                    "target_version": release.target_version,
                    "desired_instances": observed.desired_instances,
                    "ready_instances": observed.ready_instances,
                }));
            release = self
                .store
                .transition_release(release.id, release.generation, &transition, event)
                .await?;
            tracing::info!(
                release = release.id,
                app = %release.app,
                state = state_str(release.state),
                reason = %transition.reason,
                "{kind}"
            );
            applied += 1;
        }
    }

    /// What the runtime reports for the app. Until a runtime driver exists, every desired
    /// instance counts as ready, so an immediate release completes once it is switched.
    async fn observe(&self, ns: &str, app: &str) -> Result<Observed, StoreError> {
        let (ns, app) = match (Name::parse(ns), Name::parse(app)) {
            (Ok(ns), Ok(app)) => (ns, app),
            _ => return Err(StoreError::Corrupt(format!("stored name {ns}/{app}"))),
        };
        let record = self.store.get_app(&ns, &app).await?;
        Ok(Observed {
            desired_instances: record.app.replicas,
            ready_instances: record.app.replicas,
        })
    }

    /// Runs passes until `shutdown`: on every wake-up and at least every second.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.step().await {
                tracing::warn!(error = %e, "ReleaseReconcileError");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(RESYNC) => {}
            }
        }
    }
}
