//! The release state machine: [`step`] decides the next transition of an active release
//! from the stored release, what the caller observed and the time.
//!
//! Every decision reads only the release's persisted progress (absolute times, the step
//! index, the counters), so a restarted caller continues where the store says, and a
//! transition once persisted changes the inputs so that it is never decided twice.
//!
//! A step that moves traffic has two halves, told apart by `progress.step_started_at`:
//! while it is unset the step asks for the target's instances and leaves the routing as the
//! previous step left it; once the target has them ready the routing changes (the step
//! "starts") and the step ends when the gateway reports the new weight. Traffic therefore
//! never goes to instances that are not ready, and the stable version is scaled down only
//! after the gateway has moved its traffic away.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};
use tideway_api_types::{
    Analysis, CheckFigures, CheckOutcome, Release, ReleaseProgress, ReleaseState, Strategy,
};

use crate::analysis::analyze;
use crate::plan::{self, Kind, Step};
use crate::Context;

/// Checks kept in `progress.checks`.
const KEPT_CHECKS: usize = 100;

/// Whether the target version can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetStatus {
    /// Its build has not finished; the release waits.
    Building,
    Runnable,
    /// It cannot succeed: the build failed or its instances crash-loop. Carries why.
    Failed(String),
}

/// What the caller observed about the app just now.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub target: TargetStatus,
    /// Ready instances of the target version.
    pub target_ready: u32,
    /// Ready instances of the stable version.
    pub stable_ready: u32,
    /// Percent of unmatched traffic the gateway currently sends to the target (`None` = the
    /// app is not in the gateway's table yet).
    pub gateway_weight: Option<u32>,
    /// Figures (target, stable) over the analysis interval that ended at
    /// `progress.next_check_at`; supplied by the caller only when a check is due
    /// (`now ≥ next_check_at`). Figures supplied when no check is due are ignored.
    pub analysis: Option<(CheckFigures, CheckFigures)>,
}

/// A decided change to a release. The caller stores `to` and `progress` (with a generation
/// check) and an event of `kind` with `reason` and `details`.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub to: ReleaseState,
    /// The event kind: `ReleaseStarted`, `ReleaseStepStarted`, `ReleaseWeightSet`,
    /// `ReleaseReplicasSet`, `ReleasePaused`, `ReleaseResumed`, `ReleasePromoted`,
    /// `AnalysisPassed`, `AnalysisFailed`, `AnalysisInconclusive`, `ReleaseSucceeded`,
    /// `ReleaseFailed` or `ReleaseAborted`.
    pub kind: &'static str,
    /// Why, in a sentence for people.
    pub reason: String,
    /// Make this version the app's serving version.
    pub set_current_version: Option<u32>,
    /// The release's progress after the transition.
    pub progress: ReleaseProgress,
    /// The inputs of the decision: step, weights, instance counts, figures.
    pub details: Value,
}

/// The next transition of an active release, or `None` when it must wait.
///
/// Called repeatedly (every second and on wake-ups) with the stored release; the caller
/// persists each transition and calls again until `None`. The same inputs after a persisted
/// transition never repeat it.
pub fn step(
    release: &Release,
    ctx: &Context,
    observed: &Observed,
    now: DateTime<Utc>,
) -> Option<Transition> {
    if !release.state.is_active() {
        return None;
    }
    let walk = Walk::new(release, ctx, now);
    match &observed.target {
        TargetStatus::Failed(why) => return Some(walk.failed(why, observed)),
        TargetStatus::Building => return None,
        TargetStatus::Runnable => {}
    }
    if release.state == ReleaseState::Pending {
        return Some(walk.start(observed));
    }
    let Some(current) = walk.current() else {
        return Some(walk.lost());
    };
    if let Some(t) = walk.check(observed) {
        return Some(t);
    }
    if let Some(t) = walk.resize(current, observed) {
        return Some(t);
    }
    if release.state == ReleaseState::Paused {
        return None;
    }
    walk.advance(current, observed)
}

/// A release and the plan it walks, at one instant.
pub(crate) struct Walk<'a> {
    pub release: &'a Release,
    pub replicas: u32,
    /// The version the plan compares with: the context's before the start, then the one
    /// recorded in the progress.
    pub stable_version: Option<u32>,
    pub steps: Vec<Step>,
    pub now: DateTime<Utc>,
}

impl<'a> Walk<'a> {
    pub(crate) fn new(release: &'a Release, ctx: &Context, now: DateTime<Utc>) -> Self {
        // Once started, the release compares with the version it started from, whatever
        // the app serves now.
        let stable_version = if release.state == ReleaseState::Pending {
            ctx.stable_version
        } else {
            release.progress.stable_version
        };
        let ctx = Context {
            replicas: ctx.replicas.max(1),
            stable_version,
        };
        Walk {
            release,
            replicas: ctx.replicas,
            stable_version,
            steps: plan::steps(&release.strategy, release.target_version, &ctx),
            now,
        }
    }

    fn progress(&self) -> &ReleaseProgress {
        &self.release.progress
    }

    fn target(&self) -> u32 {
        self.release.target_version
    }

    pub(crate) fn index(&self) -> usize {
        usize::try_from(self.progress().step).unwrap_or(usize::MAX)
    }

    pub(crate) fn current(&self) -> Option<&Step> {
        self.steps.get(self.index())
    }

    /// Whether the plan is a plain switch (immediate, or nothing to compare with).
    pub(crate) fn is_switch(&self) -> bool {
        self.steps
            .first()
            .is_some_and(|s| s.kind == Kind::Immediate)
    }

    /// The analysis, for gradual releases that have one.
    fn analysis(&self) -> Option<&Analysis> {
        if self.is_switch() {
            return None;
        }
        crate::analysis::analysis_of(&self.release.strategy)
    }

    /// Ready instances (both versions) a batch release keeps, at most the app's replicas.
    fn min_available(&self) -> u32 {
        match &self.release.strategy {
            Strategy::Batch(b) => b.min_available.unwrap_or(self.replicas).min(self.replicas),
            _ => self.replicas,
        }
    }

    /// `set weight 20% (step 4 of 13)`.
    pub(crate) fn describe(&self, index: usize) -> String {
        match self.steps.get(index) {
            Some(s) => format!("{} (step {} of {})", s.action, index + 1, self.steps.len()),
            None => format!("step {} of {}", index + 1, self.steps.len()),
        }
    }

    /// The version traffic returns to, as people read it.
    pub(crate) fn stable_name(&self) -> String {
        match self.stable_version {
            Some(v) => format!("v{v}"),
            None => "the serving version".into(),
        }
    }

    pub(crate) fn details(&self, p: &ReleaseProgress, observed: Option<&Observed>) -> Value {
        let index = usize::try_from(p.step).unwrap_or(usize::MAX);
        let mut v = json!({
            "step": p.step,
            "steps": self.steps.len(),
            "action": self.steps.get(index).map(|s| s.action.as_str()),
            "target_version": self.target(),
            "stable_version": p.stable_version,
            "weight": p.weight,
            "target_replicas": p.target_replicas,
            "stable_replicas": p.stable_replicas,
            "replicas": self.replicas,
        });
        if let (Some(o), Value::Object(m)) = (observed, &mut v) {
            m.insert(
                "observed".into(),
                json!({
                    "target_ready": o.target_ready,
                    "stable_ready": o.stable_ready,
                    "gateway_weight": o.gateway_weight,
                }),
            );
        }
        v
    }

    pub(crate) fn transition(
        &self,
        to: ReleaseState,
        kind: &'static str,
        reason: String,
        progress: ReleaseProgress,
        observed: Option<&Observed>,
    ) -> Transition {
        let details = self.details(&progress, observed);
        Transition {
            to,
            kind,
            reason,
            set_current_version: None,
            progress,
            details,
        }
    }

    fn succeed(
        &self,
        progress: ReleaseProgress,
        reason: String,
        observed: Option<&Observed>,
    ) -> Transition {
        Transition {
            set_current_version: Some(self.target()),
            ..self.transition(
                ReleaseState::Succeeded,
                "ReleaseSucceeded",
                reason,
                progress,
                observed,
            )
        }
    }

    /// The release's success once its last step ended.
    fn success_reason(&self) -> String {
        let target = self.target();
        if self.is_switch() {
            format!("v{target} has all {} instances ready", self.replicas)
        } else {
            format!(
                "v{target} is the serving version; stopping {}",
                self.stable_name()
            )
        }
    }

    /// Any active state → Failed: the target cannot run. Traffic returns to the stable.
    fn failed(&self, why: &str, observed: &Observed) -> Transition {
        let mut t = self.transition(
            ReleaseState::Failed,
            "ReleaseFailed",
            format!("v{} failed: {why}", self.target()),
            self.progress().clone(),
            Some(observed),
        );
        if let Value::Object(m) = &mut t.details {
            m.insert("failure".into(), Value::String(why.to_string()));
        }
        t
    }

    /// The stored step is not in the plan (the strategy changed under the release).
    fn lost(&self) -> Transition {
        self.transition(
            ReleaseState::Failed,
            "ReleaseFailed",
            format!(
                "the release is at step {} but its plan has {} steps",
                self.index().saturating_add(1),
                self.steps.len()
            ),
            self.progress().clone(),
            None,
        )
    }

    /// Pending → the first step. A plain switch makes the target the serving version now.
    fn start(&self, observed: &Observed) -> Transition {
        let fresh = ReleaseProgress {
            stable_version: self.stable_version,
            stable_replicas: self.replicas,
            ..ReleaseProgress::default()
        };
        let (to, progress) = self.enter(0, &fresh, Some(observed.target_ready));
        let reason = if self.is_switch() {
            format!("switching all traffic and instances to v{}", self.target())
        } else {
            format!("v{} can run; {}", self.target(), self.describe(0))
        };
        Transition {
            set_current_version: self.is_switch().then_some(self.target()),
            ..self.transition(to, "ReleaseStarted", reason, progress, Some(observed))
        }
    }

    /// The progress and state on entering step `index` from `from`. With `ready` (the
    /// target's ready instances, when observed) a traffic step whose instances are already
    /// ready moves its traffic at once.
    pub(crate) fn enter(
        &self,
        index: usize,
        from: &ReleaseProgress,
        ready: Option<u32>,
    ) -> (ReleaseState, ReleaseProgress) {
        let mut p = from.clone();
        let Some(step) = self.steps.get(index) else {
            return (ReleaseState::Progressing, p);
        };
        p.step = u32::try_from(index).unwrap_or(u32::MAX);
        p.step_started_at = (!step.kind.moves_traffic()).then_some(self.now);
        p.pause_until = None;
        p.pause_remaining_ms = None;
        p.paused_by_user = false;
        let mut state = ReleaseState::Progressing;
        match step.kind {
            Kind::Pause(Some(secs)) => p.pause_until = Some(after_secs(self.now, secs)),
            Kind::Pause(None) => state = ReleaseState::Paused,
            Kind::Analysis(_) => p.passed_in_row = 0,
            Kind::Immediate => p.weight = 100,
            _ => {}
        }
        p.target_replicas = step.during_target;
        p.stable_replicas = if step.kind == Kind::Batch {
            // New instances first: the stable shrinks only by what `min_available` spares
            // until this batch's traffic has moved, and keeps one instance while it still
            // has traffic.
            let spare = self.replicas - self.min_available();
            let serving = u32::from(from.weight < 100);
            from.stable_replicas
                .saturating_sub(spare)
                .max(step.stable_replicas)
                .max(serving)
        } else {
            step.during_stable
        };
        if step.kind.moves_traffic() && ready.is_some_and(|r| r >= step.target_replicas) {
            self.move_traffic(&mut p, step);
        }
        (state, p)
    }

    /// The routing changes to what `step` leaves behind, and checks are armed when the
    /// target now takes traffic.
    fn move_traffic(&self, p: &mut ReleaseProgress, step: &Step) {
        p.weight = step.weight;
        p.step_started_at = Some(self.now);
        let takes_traffic = step.weight > 0 || step.rules;
        match self.analysis() {
            Some(a) if takes_traffic => {
                if p.next_check_at.is_none() {
                    p.next_check_at = Some(after_secs(self.now, a.interval_secs.max(1)));
                }
            }
            _ => p.next_check_at = None,
        }
    }

    /// The current step ended: the next one starts, or the release succeeds after the last.
    pub(crate) fn complete(
        &self,
        kind: &'static str,
        why: &str,
        observed: Option<&Observed>,
    ) -> Transition {
        let index = self.index();
        let mut p = self.progress().clone();
        if self.current().is_some_and(|s| s.kind == Kind::Switch) {
            p.switched_at = Some(self.now);
            let keep = match self.steps.get(index + 1).map(|s| s.kind) {
                Some(Kind::KeepOld(secs)) => secs,
                _ => 0,
            };
            // A full promotion already set it: the old version goes right after the switch.
            p.keep_old_until = Some(match p.keep_old_until {
                Some(until) => until.max(self.now),
                None => after_secs(self.now, keep),
            });
        }
        let next = index + 1;
        if next >= self.steps.len() {
            let reason = format!("{why}{}", self.success_reason());
            return self.succeed(p, reason, observed);
        }
        let (to, progress) = self.enter(next, &p, observed.map(|o| o.target_ready));
        let mut reason = format!("{why}{}", self.describe(next));
        let moved = self.steps.get(next).is_some_and(|s| s.kind.moves_traffic())
            && progress.step_started_at.is_some();
        if moved {
            reason.push_str(&format!(
                ": its instances are ready; sending it {}% of traffic",
                progress.weight
            ));
        }
        let kind = match kind {
            "ReleaseStepStarted" if to == ReleaseState::Paused => "ReleasePaused",
            "ReleaseStepStarted" if moved => "ReleaseWeightSet",
            other => other,
        };
        self.transition(to, kind, reason, progress, observed)
    }

    /// A due analysis check, when the caller brought its figures.
    fn check(&self, observed: &Observed) -> Option<Transition> {
        let spec = self.analysis()?;
        let due = self.progress().next_check_at?;
        if self.now < due {
            return None;
        }
        let (target, stable) = observed.analysis.as_ref()?;
        let check = analyze(spec, target, stable, due);
        let mut p = self.progress().clone();
        let interval = spec.interval_secs.max(1);
        let next = after_secs(due, interval);
        // Late by less than an interval: the next window is (nearly) closed, so keep the
        // cadence; later than that, start a fresh interval instead of a burst of catch-ups.
        p.next_check_at = Some(if after_secs(next, interval) <= self.now {
            after_secs(self.now, interval)
        } else {
            next
        });
        match check.outcome {
            CheckOutcome::Passed => p.passed_in_row = p.passed_in_row.saturating_add(1),
            CheckOutcome::Failed => {
                p.failed_checks = p.failed_checks.saturating_add(1);
                p.passed_in_row = 0;
            }
            CheckOutcome::Inconclusive => {}
        }
        let summary = check.failures.join("; ");
        let check_json = serde_json::to_value(&check).unwrap_or(Value::Null);
        let outcome = check.outcome;
        p.checks.push(check);
        if p.checks.len() > KEPT_CHECKS {
            let extra = p.checks.len() - KEPT_CHECKS;
            p.checks.drain(..extra);
        }
        let tally = format!(
            "failed checks: {} (limit {})",
            p.failed_checks, spec.failure_limit
        );
        let (to, kind, reason) = match outcome {
            CheckOutcome::Failed if p.failed_checks >= spec.failure_limit => (
                ReleaseState::Aborted,
                "ReleaseAborted",
                format!(
                    "analysis failed: {summary}; {tally}; all traffic back to {}",
                    self.stable_name()
                ),
            ),
            CheckOutcome::Failed => (
                self.release.state,
                "AnalysisFailed",
                format!("analysis check failed: {summary}; {tally}"),
            ),
            CheckOutcome::Passed => (
                self.release.state,
                "AnalysisPassed",
                format!(
                    "analysis check passed ({} in a row): v{} {}",
                    p.passed_in_row,
                    self.target(),
                    figures(target)
                ),
            ),
            CheckOutcome::Inconclusive => (
                self.release.state,
                "AnalysisInconclusive",
                format!("analysis check inconclusive: {summary}"),
            ),
        };
        let mut t = self.transition(to, kind, reason, p, Some(observed));
        if let Value::Object(m) = &mut t.details {
            m.insert("check".into(), check_json);
        }
        Some(t)
    }

    /// The instance counts of the current step, recomputed for the app's replica count
    /// now; a change (the app was rescaled) is stored before anything else happens.
    fn resize(&self, step: &Step, observed: &Observed) -> Option<Transition> {
        let p = self.progress();
        let target = step.during_target;
        let stable = if step.kind == Kind::Batch {
            p.stable_replicas.max(step.stable_replicas)
        } else {
            step.during_stable
        };
        if (p.target_replicas, p.stable_replicas) == (target, stable) {
            return None;
        }
        let mut progress = p.clone();
        progress.target_replicas = target;
        progress.stable_replicas = stable;
        let reason = format!(
            "{} instances of v{} and {stable} of {} for {} replicas",
            target,
            self.target(),
            self.stable_name(),
            self.replicas
        );
        Some(self.transition(
            self.release.state,
            "ReleaseReplicasSet",
            reason,
            progress,
            Some(observed),
        ))
    }

    /// What the current step waits for, when it is there.
    fn advance(&self, step: &Step, observed: &Observed) -> Option<Transition> {
        let p = self.progress();
        let ready = observed.target_ready;
        let target = self.target();
        match step.kind {
            Kind::Immediate => (ready >= self.replicas)
                .then(|| self.succeed(p.clone(), self.success_reason(), Some(observed))),
            kind if kind.moves_traffic() => {
                let need = step.target_replicas;
                if p.step_started_at.is_none() {
                    if ready < need {
                        return None;
                    }
                    let mut progress = p.clone();
                    self.move_traffic(&mut progress, step);
                    let reason = format!(
                        "{}: v{target} has {ready}/{need} instances ready; sending it {}% of traffic{}",
                        self.describe(self.index()),
                        step.weight,
                        if step.rules { " and the rules' requests" } else { "" }
                    );
                    return Some(self.transition(
                        self.release.state,
                        "ReleaseWeightSet",
                        reason,
                        progress,
                        Some(observed),
                    ));
                }
                let applied = observed.gateway_weight == Some(step.weight);
                let available = kind != Kind::Batch || {
                    let kept = observed.stable_ready.min(step.stable_replicas);
                    ready.saturating_add(kept) >= self.min_available()
                };
                (ready >= need && applied && available).then(|| {
                    let why = format!("the gateway sends {}% to v{target}; ", step.weight);
                    self.complete("ReleaseStepStarted", &why, Some(observed))
                })
            }
            Kind::Pause(Some(secs)) => match p.pause_until {
                Some(until) if self.now >= until => {
                    Some(self.complete("ReleaseStepStarted", "pause over; ", Some(observed)))
                }
                Some(_) => None,
                None => {
                    // A timed pause always has its end stored; re-arm one that lost it.
                    let mut progress = p.clone();
                    let ms = p.pause_remaining_ms.unwrap_or(i64::from(secs) * 1000);
                    progress.pause_until = Some(after_ms(self.now, ms));
                    progress.pause_remaining_ms = None;
                    Some(self.transition(
                        self.release.state,
                        "ReleaseStepStarted",
                        self.describe(self.index()),
                        progress,
                        Some(observed),
                    ))
                }
            },
            Kind::Pause(None) => Some(self.transition(
                ReleaseState::Paused,
                "ReleasePaused",
                self.describe(self.index()),
                p.clone(),
                Some(observed),
            )),
            Kind::Analysis(checks) => (p.passed_in_row >= checks).then(|| {
                let plural = if p.passed_in_row == 1 { "" } else { "s" };
                let why = format!("{} passing check{plural} in a row; ", p.passed_in_row);
                self.complete("ReleaseStepStarted", &why, Some(observed))
            }),
            Kind::Preview => (ready >= step.target_replicas).then(|| {
                let why = format!("v{target} has {ready} instances ready for preview; ");
                self.complete("ReleaseStepStarted", &why, Some(observed))
            }),
            Kind::KeepOld(secs) => match p.keep_old_until {
                Some(until) if self.now >= until => Some(self.complete(
                    "ReleaseSucceeded",
                    &format!("kept {} for {secs}s after the switch; ", self.stable_name()),
                    Some(observed),
                )),
                Some(_) => None,
                None => {
                    let mut progress = p.clone();
                    progress.keep_old_until = Some(after_secs(self.now, secs));
                    Some(self.transition(
                        self.release.state,
                        "ReleaseStepStarted",
                        self.describe(self.index()),
                        progress,
                        Some(observed),
                    ))
                }
            },
            // `moves_traffic` covers the rest.
            Kind::SetWeight | Kind::Gray | Kind::Promote | Kind::Batch | Kind::Switch => None,
        }
    }
}

/// `1400 requests, 99.9% ok, p99 80ms`.
fn figures(f: &CheckFigures) -> String {
    let mut s = format!("{} requests", f.requests);
    if let Some(rate) = f.success_rate_percent {
        s.push_str(&format!(", {rate:.1}% ok"));
    } else {
        s.push_str(&format!(", {} 5xx", f.responses_5xx));
    }
    if let Some(p99) = f.p99_ms {
        s.push_str(&format!(", p99 {p99:.0}ms"));
    }
    s
}

/// `now + secs`, saturating at the end of time.
pub(crate) fn after_secs(now: DateTime<Utc>, secs: u32) -> DateTime<Utc> {
    after_ms(now, i64::from(secs) * 1000)
}

/// `now + ms`, saturating at the end of time.
pub(crate) fn after_ms(now: DateTime<Utc>, ms: i64) -> DateTime<Utc> {
    now.checked_add_signed(TimeDelta::milliseconds(ms))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
