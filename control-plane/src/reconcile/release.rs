//! Drives active releases through their state machine ([`tideway_rollout::step`]): observes
//! the target's build and instances, the stable version's instances, the weight the gateway
//! actually applies, and (when a check is due) both versions' figures over the analysis
//! interval; stores each transition with a generation check, so two control planes, or a
//! restart in the middle of a pass, never apply the same step twice.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use tideway_api_types::{CheckFigures, InstanceState, MetricSeries, Release, VersionState};
use tideway_gateway::route::RouteTable;
use tideway_gateway::GatewayMetrics;
use tideway_rollout::Observed;

use super::stored_names;
use crate::clock::Clock;
use crate::domain::event::NewEvent;
use crate::domain::placement::context_of;
use crate::domain::release::{state_str, TargetStatus};
use crate::runtime::RuntimeDriver;
use crate::store::{Store, StoreError};

const ACTOR: &str = "release-controller";
/// Short, so pauses end and analysis checks run within a quarter second of being due.
const RESYNC: Duration = Duration::from_millis(250);
/// A check's interval must be closed in the gateway's metrics before it is read; the
/// gateway closes each second at its end, and windows are read in whole seconds.
const CLOSE_MARGIN_MS: i64 = 150;

pub struct ReleaseReconciler {
    pub store: Arc<dyn Store>,
    pub runtime: Arc<dyn RuntimeDriver>,
    pub routes: watch::Receiver<Arc<RouteTable>>,
    pub metrics: Arc<GatewayMetrics>,
    pub clock: Arc<dyn Clock>,
    pub wake: Arc<Notify>,
    /// Told after every transition: weights and instance counts follow the release.
    pub runtime_wake: Arc<Notify>,
    pub routes_wake: Arc<Notify>,
}

impl ReleaseReconciler {
    /// One pass over every active release; returns how many transitions were applied.
    pub async fn step(&self) -> Result<usize, StoreError> {
        let mut applied = 0;
        for record in self.store.active_releases().await? {
            match self.advance(record.release).await {
                Ok(n) => applied += n,
                // Someone else moved it or deleted the app; the next pass sees the new state.
                Err(StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(applied)
    }

    async fn advance(&self, mut release: Release) -> Result<usize, StoreError> {
        let mut applied = 0;
        // Bounded: a release has at most a few hundred steps, and each pass re-observes.
        for _ in 0..64 {
            let (ns, app) = stored_names(&release.namespace, &release.app)?;
            let record = self.store.get_app(&ns, &app).await?;
            let ctx = context_of(&record.app, Some(&release));
            let now = self.clock.now();
            let observed = self.observe(&release, ctx.stable_version, now).await?;
            let Some(transition) = tideway_rollout::step(&release, &ctx, &observed, now) else {
                return Ok(applied);
            };
            let event = NewEvent::new(transition.kind, ACTOR, transition.reason.clone())
                .app(&release.namespace, &release.app)
                .details(json!({
                    "release": release.id,
                    "from_state": state_str(release.state),
                    "to_state": state_str(transition.to),
                    "target_version": release.target_version,
                    "step": transition.progress.step,
                    "weight": transition.progress.weight,
                    "inputs": transition.details,
                    "observed": {
                        "target": format!("{:?}", observed.target),
                        "target_ready": observed.target_ready,
                        "stable_ready": observed.stable_ready,
                        "gateway_weight": observed.gateway_weight,
                    },
                }));
            release = self
                .store
                .transition_release(release.id, release.generation, &transition, event)
                .await?;
            self.runtime_wake.notify_one();
            self.routes_wake.notify_one();
            tracing::info!(
                release = release.id,
                app = %release.app,
                state = state_str(release.state),
                reason = %transition.reason,
                "{}",
                transition.kind
            );
            applied += 1;
        }
        Ok(applied)
    }

    async fn observe(
        &self,
        release: &Release,
        stable_version: Option<u32>,
        now: DateTime<Utc>,
    ) -> Result<Observed, StoreError> {
        let (ns, app) = stored_names(&release.namespace, &release.app)?;
        let version = self
            .store
            .get_version(&ns, &app, release.target_version)
            .await?;
        let instances: Vec<_> = self
            .runtime
            .instances()
            .into_iter()
            .filter(|i| i.namespace == release.namespace && i.app == release.app)
            .collect();
        let ready_of = |v: u32| {
            let n = instances
                .iter()
                .filter(|i| i.version == v && i.state == InstanceState::Ready)
                .count();
            u32::try_from(n).unwrap_or(u32::MAX)
        };
        let crash_looping = instances
            .iter()
            .find(|i| i.version == release.target_version && i.state == InstanceState::CrashLoop);
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
            target_ready: ready_of(release.target_version),
            stable_ready: stable_version.map_or(0, ready_of),
            gateway_weight: self.gateway_weight(release),
            analysis: self.figures(release, stable_version, now),
        })
    }

    /// Percent of unmatched traffic the gateway's current table sends to the target.
    fn gateway_weight(&self, release: &Release) -> Option<u32> {
        let table = self.routes.borrow().clone();
        let route = table
            .apps
            .iter()
            .find(|a| a.namespace == release.namespace && a.app == release.app)?;
        if route.policy.weights.is_empty() {
            return Some(if route.default_version == Some(release.target_version) {
                100
            } else {
                0
            });
        }
        Some(
            route
                .policy
                .weights
                .iter()
                .find(|w| w.version == release.target_version)
                .map_or(0, |w| w.weight),
        )
    }

    /// Both versions' figures over the interval ending at the due check, once that interval
    /// is closed in the gateway's metrics.
    fn figures(
        &self,
        release: &Release,
        stable_version: Option<u32>,
        now: DateTime<Utc>,
    ) -> Option<(CheckFigures, CheckFigures)> {
        let due = release.progress.next_check_at?;
        let spec = tideway_rollout::analysis_of(&release.strategy)?;
        if (now - due).num_milliseconds() < CLOSE_MARGIN_MS {
            return None;
        }
        // Whole seconds: the last one ends by `due`, so it is already closed.
        let to = DateTime::<Utc>::from_timestamp(due.timestamp(), 0).unwrap_or(due);
        let from = to - chrono::Duration::seconds(i64::from(spec.interval_secs));
        let series = self.metrics.window(
            &release.namespace,
            &release.app,
            from,
            to,
            spec.interval_secs,
        );
        let of = |v: Option<u32>| v.map(|v| figures_of(&series, v)).unwrap_or_default();
        Some((of(Some(release.target_version)), of(stable_version)))
    }

    /// Runs passes until `shutdown`: on every wake-up and at least every [`RESYNC`].
    pub async fn run(self, shutdown: CancellationToken) {
        let wake = self.wake.clone();
        super::run_loop("release", wake, RESYNC, shutdown, || async {
            self.step().await.map(|_| ()).map_err(|e| e.to_string())
        })
        .await;
    }
}

/// One version's figures summed over the window's points (one point per interval).
fn figures_of(series: &[MetricSeries], version: u32) -> CheckFigures {
    let Some(s) = series.iter().find(|s| s.version == version) else {
        return CheckFigures::default();
    };
    let requests: u64 = s.points.iter().map(|p| p.requests).sum();
    let errors: u64 = s.points.iter().map(|p| p.responses_5xx).sum();
    let p99 = s
        .points
        .iter()
        .filter(|p| p.requests > 0)
        .filter_map(|p| p.p99_ms)
        .fold(None, |acc: Option<f64>, p| {
            Some(acc.map_or(p, |a| a.max(p)))
        });
    CheckFigures {
        requests,
        responses_5xx: errors,
        success_rate_percent: (requests > 0)
            .then(|| (requests - errors.min(requests)) as f64 * 100.0 / requests as f64),
        p99_ms: p99,
    }
}
