//! Drives active releases through their state machine ([`crate::domain::release::step`]).
//! Every transition is stored with a generation check, so two control planes, or a restart
//! in the middle of a pass, can never apply the same step twice.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use tideway_api_types::{InstanceState, Release, VersionState};

use crate::domain::event::NewEvent;
use crate::domain::name::Name;
use crate::domain::release::{state_str, step, Observed, TargetStatus};
use crate::runtime::RuntimeDriver;
use crate::store::{ReleaseRecord, Store, StoreError};

const ACTOR: &str = "release-controller";
const RESYNC: Duration = Duration::from_secs(1);

pub struct ReleaseReconciler {
    store: Arc<dyn Store>,
    runtime: Arc<dyn RuntimeDriver>,
    wake: Arc<Notify>,
    /// Told when a release changed the serving version.
    runtime_wake: Arc<Notify>,
    routes_wake: Arc<Notify>,
}

impl ReleaseReconciler {
    pub fn new(
        store: Arc<dyn Store>,
        runtime: Arc<dyn RuntimeDriver>,
        wake: Arc<Notify>,
        runtime_wake: Arc<Notify>,
        routes_wake: Arc<Notify>,
    ) -> Self {
        ReleaseReconciler {
            store,
            runtime,
            wake,
            runtime_wake,
            routes_wake,
        }
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
            let observed = self.observe(&release).await?;
            let Some(transition) = step(
                &release.strategy,
                release.state,
                release.target_version,
                &observed,
            ) else {
                return Ok(applied);
            };
            let kind = match transition.to {
                tideway_api_types::ReleaseState::Progressing => "ReleaseProgressing",
                tideway_api_types::ReleaseState::Succeeded => "ReleaseSucceeded",
                tideway_api_types::ReleaseState::Failed => "ReleaseFailed",
                tideway_api_types::ReleaseState::Aborted => "ReleaseAborted",
                tideway_api_types::ReleaseState::Pending => "ReleasePending",
                tideway_api_types::ReleaseState::Paused => "ReleasePaused",
                tideway_api_types::ReleaseState::Superseded => "ReleaseSuperseded",
            };
            let event = NewEvent::new(kind, ACTOR, transition.reason.clone())
                .app(&release.namespace, &release.app)
                .details(json!({
                    "release": release.id,
                    "from_state": state_str(release.state),
                    "to_state": state_str(transition.to),
                    "target_version": release.target_version,
                    "target": format!("{:?}", observed.target),
                    "desired_instances": observed.desired_instances,
                    "ready_instances": observed.ready_instances,
                }));
            release = self
                .store
                .transition_release(release.id, release.generation, &transition, event)
                .await?;
            if transition.set_current_version.is_some() {
                self.runtime_wake.notify_one();
                self.routes_wake.notify_one();
            }
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

    /// The target version's build state and its instances as the runtime reports them.
    async fn observe(&self, release: &Release) -> Result<Observed, StoreError> {
        let (ns, app) = match (Name::parse(&release.namespace), Name::parse(&release.app)) {
            (Ok(ns), Ok(app)) => (ns, app),
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "stored name {}/{}",
                    release.namespace, release.app
                )))
            }
        };
        let record = self.store.get_app(&ns, &app).await?;
        let version = self
            .store
            .get_version(&ns, &app, release.target_version)
            .await?;
        let instances: Vec<_> = self
            .runtime
            .instances()
            .into_iter()
            .filter(|i| {
                i.namespace == release.namespace
                    && i.app == release.app
                    && i.version == release.target_version
            })
            .collect();
        let ready = instances
            .iter()
            .filter(|i| i.state == InstanceState::Ready)
            .count();
        let crash_looping = instances
            .iter()
            .find(|i| i.state == InstanceState::CrashLoop);
        let target = match (version.state, crash_looping) {
            (VersionState::BuildFailed, _) => TargetStatus::Failed("the build failed".into()),
            (VersionState::Building, _) => TargetStatus::Building,
            (VersionState::Ready, Some(i)) => TargetStatus::Failed(format!(
                "instance {} is crash-looping: {}",
                i.id,
                i.message.as_deref().unwrap_or("no exit status")
            )),
            (VersionState::Ready, None) => TargetStatus::Runnable,
        };
        Ok(Observed {
            target,
            desired_instances: record.app.replicas,
            ready_instances: u32::try_from(ready).unwrap_or(u32::MAX),
        })
    }

    /// Runs passes until `shutdown`: on every wake-up and at least every second.
    pub async fn run(self, shutdown: CancellationToken) {
        let wake = self.wake.clone();
        super::run_loop("release", wake, RESYNC, shutdown, || async {
            self.step().await.map(|_| ()).map_err(|e| e.to_string())
        })
        .await;
    }
}
