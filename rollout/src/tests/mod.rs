//! Tests of the whole machine on a fake clock and a fake world: instances that become ready
//! a second after they are asked for, a gateway that applies the routing a second later,
//! and analysis figures from a chosen health.

#![allow(clippy::unwrap_used)]

mod aborts;
mod controls;
mod plans;
mod restarts;
mod validation;
mod walks;

use chrono::{DateTime, TimeDelta, Utc};
use tideway_api_types::{CheckFigures, Release, ReleaseState, Strategy};

use crate::{
    control, routing, step, Context, Control, ControlError, Observed, TargetStatus, Transition,
};

/// The fake clock's start: 2025-01-01T00:00:00Z.
pub(crate) fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_735_689_600, 0).unwrap()
}

pub(crate) fn strategy(json: &str) -> Strategy {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

/// The stable version is 1 and the target 2 (or 1 on a first release).
pub(crate) fn release(strategy: Strategy, stable: Option<u32>) -> Release {
    Release {
        id: 7,
        namespace: "shop".into(),
        app: "cart".into(),
        from_versions: stable.into_iter().collect(),
        target_version: stable.map_or(1, |s| s + 1),
        strategy,
        state: ReleaseState::Pending,
        reason: "created".into(),
        progress: Default::default(),
        created_at: t0(),
        updated_at: t0(),
        generation: 1,
    }
}

/// What the analysis figures look like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Health {
    /// 1000 requests, no 5xx, p99 100ms on both versions.
    Good,
    /// The target answers this percent of its 1400 requests with 5xx.
    Errors(u64),
    /// The target's p99 (the stable's is 100ms).
    Slow(f64),
    /// The target's p99 while the stable reports none.
    SlowNoBaseline(f64),
    /// The target gets 3 requests per interval.
    Quiet,
}

impl Health {
    fn figures(self) -> (CheckFigures, CheckFigures) {
        let ok = |requests, p99| CheckFigures {
            requests,
            responses_5xx: 0,
            success_rate_percent: None,
            p99_ms: p99,
        };
        let stable = ok(1000, Some(100.0));
        match self {
            Health::Good => (ok(1000, Some(100.0)), stable),
            Health::Errors(pct) => (
                CheckFigures {
                    responses_5xx: 14 * pct,
                    ..ok(1400, Some(100.0))
                },
                stable,
            ),
            Health::Slow(p99) => (ok(1000, Some(p99)), stable),
            Health::SlowNoBaseline(p99) => (ok(1000, Some(p99)), ok(1000, None)),
            Health::Quiet => (ok(3, Some(100.0)), stable),
        }
    }
}

/// A release, its app and the world around it.
#[derive(Debug, Clone)]
pub(crate) struct World {
    pub release: Release,
    pub replicas: u32,
    /// The app's serving version.
    pub serving: Option<u32>,
    pub now: DateTime<Utc>,
    pub target: TargetStatus,
    pub target_ready: u32,
    pub stable_ready: u32,
    pub gateway: Option<u32>,
    pub health: Health,
    /// The gateway stops applying new tables.
    pub gateway_stuck: bool,
    /// At most this many target instances become ready.
    pub ready_cap: Option<u32>,
    /// Every transition, in order.
    pub log: Vec<Transition>,
    /// `(step, state, routing)` after every tick, when it changed.
    pub trail: Vec<String>,
}

impl World {
    pub fn new(strategy_json: &str, replicas: u32) -> World {
        World::with_stable(strategy(strategy_json), replicas, Some(1))
    }

    pub fn with_stable(strategy: Strategy, replicas: u32, stable: Option<u32>) -> World {
        World {
            release: release(strategy, stable),
            replicas,
            serving: stable,
            now: t0(),
            target: TargetStatus::Runnable,
            target_ready: 0,
            stable_ready: if stable.is_some() { replicas } else { 0 },
            gateway: stable.map(|_| 0),
            health: Health::Good,
            gateway_stuck: false,
            ready_cap: None,
            log: Vec::new(),
            trail: Vec::new(),
        }
    }

    pub fn ctx(&self) -> Context {
        Context {
            replicas: self.replicas,
            stable_version: self.serving,
        }
    }

    pub fn state(&self) -> ReleaseState {
        self.release.state
    }

    pub fn step_index(&self) -> u32 {
        self.release.progress.step
    }

    pub fn observed(&self) -> Observed {
        let due = self
            .release
            .progress
            .next_check_at
            .is_some_and(|at| self.now >= at);
        Observed {
            target: self.target.clone(),
            target_ready: self.target_ready,
            stable_ready: self.stable_ready,
            gateway_weight: self.gateway,
            analysis: due.then(|| self.health.figures()),
        }
    }

    /// Stores a transition as the control plane does.
    pub fn apply(&mut self, t: &Transition) {
        self.release.state = t.to;
        self.release.progress = t.progress.clone();
        self.release.reason = t.reason.clone();
        self.release.generation += 1;
        self.release.updated_at = self.now;
        if let Some(v) = t.set_current_version {
            self.serving = Some(v);
        }
        self.log.push(t.clone());
    }

    /// Calls `step` until it waits, storing each transition. Every decision is checked to be
    /// the same for the release read back from its JSON (a restarted control plane), and no
    /// transition is decided twice from the same inputs once stored.
    pub fn settle(&mut self) {
        for _ in 0..20 {
            let ctx = self.ctx();
            let observed = self.observed();
            let decided = step(&self.release, &ctx, &observed, self.now);
            let stored = stored(&self.release);
            assert_eq!(
                step(&stored, &ctx, &observed, self.now),
                decided,
                "the stored release decides the same at {}",
                self.release.progress.step
            );
            let Some(t) = decided else {
                return;
            };
            self.apply(&t);
            let again = step(&self.release, &ctx, &observed, self.now);
            assert_ne!(
                again.as_ref(),
                Some(&t),
                "a stored transition is never repeated"
            );
        }
        panic!("step never waits: {:#?}", &self.log[self.log.len() - 5..]);
    }

    /// The world catches up with the routing: asked-for instances become ready, and the
    /// gateway applies the table.
    pub fn converge(&mut self) {
        let ctx = self.ctx();
        match routing(&self.release, &ctx) {
            Some(r) => {
                self.target_ready = self
                    .ready_cap
                    .map_or(r.target_replicas, |c| c.min(r.target_replicas));
                self.stable_ready = r.stable_replicas;
                if !self.gateway_stuck {
                    self.gateway = Some(r.weight);
                }
            }
            None => {
                let target_serves = self.serving == Some(self.release.target_version);
                self.target_ready = if target_serves { self.replicas } else { 0 };
                self.stable_ready = if target_serves { 0 } else { self.replicas };
                if !self.gateway_stuck {
                    self.gateway = Some(if target_serves { 100 } else { 0 });
                }
            }
        }
    }

    /// One second (or more) passes: the world converges, then the machine decides.
    pub fn tick(&mut self, secs: i64) {
        self.now += TimeDelta::seconds(secs);
        self.converge();
        self.settle();
        let line = self.describe();
        if self.trail.last() != Some(&line) {
            self.trail.push(line);
        }
    }

    /// `3 progressing w10 t1 s10` (step, state, weight, target and stable instances, and
    /// `rules`/`preview` when on); `succeeded` etc. without routing.
    pub fn describe(&self) -> String {
        let state = format!("{:?}", self.state()).to_lowercase();
        match routing(&self.release, &self.ctx()) {
            Some(r) => {
                let mut s = format!(
                    "{} {state} w{} t{} s{}",
                    self.release.progress.step, r.weight, r.target_replicas, r.stable_replicas
                );
                if !r.rules.is_empty() {
                    s.push_str(" rules");
                }
                if r.preview {
                    s.push_str(" preview");
                }
                s
            }
            None => state,
        }
    }

    pub fn control(&mut self, c: Control) -> Result<Transition, ControlError> {
        let t = control(&self.release, &self.ctx(), c, self.now)?;
        self.apply(&t);
        Ok(t)
    }

    /// Ticks until the release ends, promoting every step pause; at most `limit` ticks.
    pub fn run(&mut self, limit: u32) {
        for _ in 0..limit {
            if !self.state().is_active() {
                return;
            }
            if self.state() == ReleaseState::Paused && !self.release.progress.paused_by_user {
                self.control(Control::Promote { full: false }).unwrap();
            }
            self.tick(1);
        }
        panic!("not finished after {limit} ticks: {}", self.describe());
    }

    /// Ticks until `done` holds; at most `limit` ticks.
    pub fn run_until(&mut self, limit: u32, done: impl Fn(&World) -> bool) {
        for _ in 0..limit {
            if done(self) {
                return;
            }
            self.tick(1);
        }
        panic!("condition not met after {limit} ticks: {}", self.describe());
    }

    /// Ticks until the release has started and stands at step `index`, promoting the step
    /// pauses before it.
    pub fn run_to_step(&mut self, limit: u32, index: u32) {
        for _ in 0..limit {
            if self.state() != ReleaseState::Pending && self.step_index() == index {
                return;
            }
            if self.state() == ReleaseState::Paused && !self.release.progress.paused_by_user {
                self.control(Control::Promote { full: false }).unwrap();
            }
            self.tick(1);
        }
        panic!(
            "step {index} not reached after {limit} ticks: {}",
            self.describe()
        );
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        self.log.iter().map(|t| t.kind).collect()
    }
}

/// The release as a restarted control plane reads it back from the store.
pub(crate) fn stored(release: &Release) -> Release {
    serde_json::from_str(&serde_json::to_string(release).unwrap()).unwrap()
}
